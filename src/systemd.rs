//! Running under systemd: readiness and watchdog messages (`sd_notify(3)`: one datagram
//! per message to the Unix socket named by `$NOTIFY_SOCKET`), the watchdog interval
//! (`$WATCHDOG_USEC`, for this process when `$WATCHDOG_PID` says so), and log lines in the
//! journal's format when stderr is the journal (`$JOURNAL_STREAM`: no timestamp of our
//! own, the level as a `<N>` priority prefix, `sd-daemon(3)`).
//!
//! Written here rather than taken from a crate: the protocol is a few lines on
//! `std::os::unix::net::UnixDatagram`, and every part is tested against a socket of the
//! test's own. Without `$NOTIFY_SOCKET` (not under systemd, or `Type=simple`) every call is
//! a no-op.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Sends `sd_notify` messages to the service manager.
#[derive(Debug)]
pub struct Notifier {
    sock: UnixDatagram,
    to: SocketAddr,
}

impl Notifier {
    /// The notifier for `$NOTIFY_SOCKET`, `None` when it is unset or empty. A socket that
    /// cannot be used is an error (systemd would wait for a READY that never comes).
    pub fn from_env() -> io::Result<Option<Self>> {
        match std::env::var_os("NOTIFY_SOCKET") {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => Self::to(&v.to_string_lossy()).map(Some),
        }
    }

    /// A notifier for the socket `path`: a file system path, or `@name` for an abstract one.
    pub fn to(path: &str) -> io::Result<Self> {
        let to = match path.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes())?
            }
            None => SocketAddr::from_pathname(path)?,
        };
        Ok(Self {
            sock: UnixDatagram::unbound()?,
            to,
        })
    }

    /// Sends one message (`KEY=value` lines).
    pub fn send(&self, msg: &str) -> io::Result<()> {
        self.sock.send_to_addr(msg.as_bytes(), &self.to).map(|_| ())
    }

    /// Every listener answers and the lists are loaded (or a reload is over); `status` is
    /// what `systemctl status` shows.
    pub fn ready(&self, status: &str) {
        self.log(self.send(&format!("READY=1\nSTATUS={status}")));
    }

    /// A reload began (READY follows when it is over).
    pub fn reloading(&self) {
        self.log(self.send("RELOADING=1\nSTATUS=reloading"));
    }

    /// The service is stopping.
    pub fn stopping(&self) {
        self.log(self.send("STOPPING=1\nSTATUS=stopping"));
    }

    /// The service is alive (the watchdog's keep-alive).
    pub fn watchdog(&self) {
        self.log(self.send("WATCHDOG=1"));
    }

    fn log(&self, r: io::Result<()>) {
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
        }
    }
}

/// The watchdog interval systemd expects keep-alives within, `None` without one (or when
/// it is meant for another process).
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_from(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// [`watchdog_interval`] from the variables' values and this process's ID.
pub fn watchdog_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(me)
    {
        return None;
    }
    let us: u64 = usec?.trim().parse().ok()?;
    (us > 0).then(|| Duration::from_micros(us))
}

/// True when stderr is the journal: `$JOURNAL_STREAM` names its device and inode.
pub fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    journal_stream_matches(&v.to_string_lossy(), st.st_dev, st.st_ino)
}

/// Whether a `$JOURNAL_STREAM` value (`DEVICE:INODE`) names the file `dev`/`ino`.
pub fn journal_stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.split_once(':') else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

/// The `sd-daemon(3)` priority of a level: err 3, warning 4, info 6, debug 7.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// A log line format for the journal: `<N>` and then what `F` writes (set up `F` without
/// timestamps, level or colours; the journal records all three).
#[derive(Debug)]
pub struct JournalFormat<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for JournalFormat<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::to(path.to_str().unwrap()).unwrap();
        n.ready("serving");
        n.reloading();
        n.watchdog();
        n.stopping();
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        for _ in 0..4 {
            let len = server.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
        assert_eq!(
            got,
            [
                "READY=1\nSTATUS=serving",
                "RELOADING=1\nSTATUS=reloading",
                "WATCHDOG=1",
                "STOPPING=1\nSTATUS=stopping"
            ]
        );
        use std::os::linux::net::SocketAddrExt;
        let name = format!("sinkhole-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::to(&format!("@{name}")).unwrap().watchdog();
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }

    #[test]
    fn the_watchdog_is_ours_only_when_its_pid_is_ours_or_unset() {
        let s = Some(Duration::from_secs(30));
        assert_eq!(watchdog_from(Some("30000000"), None, 7), s);
        assert_eq!(watchdog_from(Some("30000000"), Some("7"), 7), s);
        assert_eq!(watchdog_from(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_from(Some("soon"), None, 7), None);
        assert_eq!(watchdog_from(None, Some("7"), 7), None);
    }

    #[test]
    fn journal_stream_must_name_stderrs_device_and_inode() {
        assert!(journal_stream_matches("8:1234", 8, 1234));
        assert!(!journal_stream_matches("8:1235", 8, 1234));
        assert!(!journal_stream_matches("8", 8, 1234));
        assert!(!journal_stream_matches("x:y", 8, 1234));
        assert_eq!(
            [
                Level::ERROR,
                Level::WARN,
                Level::INFO,
                Level::DEBUG,
                Level::TRACE
            ]
            .map(|l| priority(&l)),
            [3, 4, 6, 7, 7]
        );
    }
}
