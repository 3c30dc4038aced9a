//! The log writer: one OS thread that takes [`Record`]s off the queue, places them in their
//! client's session, renders them as JSON lines and appends them to `log.path`, rotating by
//! size. A thread rather than a tokio task: a slow or stuck disk must not hold a runtime
//! worker that forwards queries.
//!
//! Every line is handed to the buffered file in one piece, and the buffer is only ever
//! written out whole lines at a time, so a reader (`tail -f`) sees whole lines. When the file
//! cannot be opened or written (folder not writable, disk full) the records are dropped and
//! counted, the reason is logged once, and opening is retried every few seconds.
//!
//! New settings (a reload) arrive on the queue like records, with their file opened by the
//! caller: what was queued before them is written and flushed to the old file, what comes
//! after goes to the new one.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read as _, Seek as _, SeekFrom, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant, SystemTime};

use super::sessions::Sessions;
use super::{Msg, Reconfigure, Record, Stats, action_name, qtype_name};
use crate::blocklist::Kind;
use crate::config::LogConfig;
use crate::dns::wire::rcode;
use crate::pipeline::upstream::RECURSIVE;
use crate::pipeline::{Action, Detail};

/// How long a failed open waits before the next try.
const RETRY: Duration = Duration::from_secs(2);
/// Records written between two flushes at most, under load.
const FLUSH_EVERY: usize = 4096;
/// Pause between two looks at the queue while records are coming in.
pub const POLL_BUSY: Duration = Duration::from_millis(10);
/// Pause between two looks at the queue when it was empty.
pub const POLL_IDLE: Duration = Duration::from_millis(50);

/// `2026-11-21T10:00:01.532Z`
pub fn format_ts(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.millisecond()
    )
}

/// Unix time in milliseconds.
pub fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The client as logged: with anonymizing, its /24 (IPv4) or /48 (IPv6) network address.
pub fn client_text(ip: IpAddr, anonymize: bool) -> String {
    client_logged(ip, anonymize).to_string()
}

/// The client address as logged: itself, or with anonymizing its /24 or /48 network.
pub fn client_logged(ip: IpAddr, anonymize: bool) -> IpAddr {
    if !anonymize {
        return ip;
    }
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
        }
    }
}

/// The fields of a record that the file and the database both show, worked out once.
pub struct Shown<'r> {
    /// The query name.
    pub qname: &'r str,
    /// The rule and where it is (`shown_rule`).
    pub rule: Option<(&'r str, Cow<'r, str>)>,
    /// The upstream that answered (`upstream_text`).
    pub upstream: Option<Cow<'static, str>>,
}

impl<'r> Shown<'r> {
    /// The shown fields of `r`.
    pub fn of(r: &'r Record) -> Self {
        let qname = r.asked.qname.as_str();
        Self {
            qname,
            rule: shown_rule(r, qname),
            upstream: upstream_text(r),
        }
    }
}

/// The rule the log shows for `r` and where it is (`file:line`, or `builtin`): a forwarded
/// or cached name shows only the allow rule that let it through; a local answer its record
/// or private zone.
pub(crate) fn shown_rule<'r>(r: &'r Record, qname: &'r str) -> Option<(&'r str, Cow<'r, str>)> {
    let m = r.outcome.rule.as_ref().and_then(|x| x.get(qname))?;
    let blocked = r.outcome.action == Action::Blocked;
    let local = r.outcome.action == Action::Local;
    if !(local || (m.kind == Kind::Block) == blocked) {
        return None;
    }
    let list = if m.source.is_empty() {
        Cow::Borrowed("builtin")
    } else {
        let mut line = itoa::Buffer::new();
        let line = line.format(m.line);
        let mut at = String::with_capacity(m.source.len() + 1 + line.len());
        at.push_str(m.source);
        at.push(':');
        at.push_str(line);
        Cow::Owned(at)
    };
    Some((m.rule, list))
}

/// Calls `f` with each answer the log shows for `r`, in order.
pub(crate) fn each_answer(r: &Record, mut f: impl FnMut(&str)) {
    match &r.outcome.detail {
        Detail::None | Detail::Local(None) | Detail::Truncated => {}
        Detail::Local(Some(a)) => f(ip_text(*a, &mut [0; 48])),
        Detail::Records(p) => p.texts().iter().for_each(|t| f(t)),
        Detail::Response(resp) => resp.answers().iter().for_each(|t| f(t)),
    }
}

/// `ip` as text, written into `buf` (no allocation: a blocked answer's address is logged
/// for every blocked query).
fn ip_text(ip: IpAddr, buf: &mut [u8; 48]) -> &str {
    let mut w = std::io::Cursor::new(buf.as_mut_slice());
    match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    let _ = w.write_all(b".");
                }
                let _ = w.write_all(itoa::Buffer::new().format(o).as_bytes());
            }
        }
        IpAddr::V6(_) => {
            let _ = write!(w, "{ip}");
        }
    }
    let n = usize::try_from(w.position()).unwrap_or(0);
    buf.get(..n)
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or("")
}

/// The `upstream` field: the server that answered, or `recursive`.
pub(crate) fn upstream_text(r: &Record) -> Option<Cow<'static, str>> {
    match r.outcome.upstream {
        Some(RECURSIVE) => Some(Cow::Borrowed("recursive")),
        Some(u) => Some(Cow::Owned(u.to_string())),
        None => None,
    }
}

/// The rotated file number `n` of `path` (`queries.jsonl.1` is the newest).
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The writer's state; [`Writer::run`] is its thread.
#[derive(Debug)]
pub struct Writer {
    cfg: LogConfig,
    stats: Arc<Stats>,
    sessions: Sessions,
    out: Option<BufWriter<File>>,
    size: u64,
    /// Records in the buffer, not yet known to be on disk.
    pending: u64,
    retry_at: Option<Instant>,
    failing: bool,
    line: Vec<u8>,
    reported_drops: u64,
    last_ts: (SystemTime, String),
    last_client: (IpAddr, String),
    /// `[log.postgres]`: rows for the database's writer.
    pg: Option<crate::postgres::writer::Sink>,
    /// Where emptied batch vectors go back to the query path.
    spares: super::Spares,
}

impl Writer {
    /// A writer for `cfg`, counting into `stats`.
    pub fn new(
        cfg: LogConfig,
        stats: Arc<Stats>,
        pg: Option<crate::postgres::writer::Sink>,
        spares: super::Spares,
    ) -> Self {
        Self {
            sessions: Sessions::new(gap_ms(&cfg)),
            cfg,
            stats,
            out: None,
            size: 0,
            pending: 0,
            retry_at: None,
            failing: false,
            line: Vec::with_capacity(512),
            reported_drops: 0,
            last_ts: (SystemTime::UNIX_EPOCH, String::new()),
            last_client: (IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), String::new()),
            pg,
            spares,
        }
    }

    /// Writes records until [`Msg::Stop`] (then what is still queued) or until every sender
    /// is gone; flushes at the end.
    ///
    /// The writer polls the queue (every [`POLL_BUSY`] under load, [`POLL_IDLE`] when quiet)
    /// instead of sleeping on it: a sleeping receiver would make every `try_send` on the
    /// query path pay for a wake-up (a futex call and a context switch).
    pub fn run(mut self, rx: &Receiver<Msg>) {
        tracing::info!(path = %shown(&self.cfg), "query log on");
        self.open();
        let mut last_report = Instant::now();
        loop {
            let mut n = 0usize;
            let mut unflushed = 0usize;
            let mut stopping = false;
            let mut gone = false;
            loop {
                match rx.try_recv() {
                    Ok(Msg::Record(r)) => {
                        self.write(&r);
                        n += 1;
                        unflushed += 1;
                    }
                    Ok(Msg::Batch(mut v)) => {
                        for r in &v {
                            self.write(r);
                        }
                        n += v.len();
                        unflushed += v.len();
                        // The records are dropped here (not kept: they hold list
                        // snapshots), the vector goes back for another batch.
                        v.clear();
                        self.spare(v);
                    }
                    Ok(Msg::Stop) => stopping = true,
                    Ok(Msg::Reconfigure(r)) => {
                        self.reconfigure(*r);
                        unflushed = 0;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        gone = true;
                        break;
                    }
                }
                if unflushed >= FLUSH_EVERY {
                    self.flush();
                    unflushed = 0;
                }
            }
            self.flush();
            if let Some(pg) = self.pg.as_mut() {
                pg.hand_off();
            }
            if stopping || gone {
                break;
            }
            if last_report.elapsed() >= Duration::from_secs(1) {
                self.report_drops();
                last_report = Instant::now();
            }
            std::thread::sleep(if n > 0 { POLL_BUSY } else { POLL_IDLE });
        }
        self.report_drops();
        tracing::info!(
            written = self.stats.written.load(Ordering::Relaxed),
            dropped = self.stats.dropped.load(Ordering::Relaxed),
            "query log closed"
        );
    }

    /// Switches to new settings and their file, between two records: what was written
    /// so far is flushed to the old file first. Sessions and `new` marks are kept.
    fn reconfigure(&mut self, r: Reconfigure) {
        let Reconfigure { cfg, file, done } = r;
        self.flush();
        // Flushed (or, when that failed, lost and counted): the old file is closed.
        self.out = None;
        // Measured now, not when the caller opened it: on the same path, the records just
        // flushed are in it too.
        self.size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        self.out = file.map(|f| BufWriter::with_capacity(64 * 1024, f));
        self.failing = false;
        self.retry_at = None;
        self.sessions.set_gap(gap_ms(&cfg));
        // The cached client text may be anonymized differently now.
        self.last_client.1.clear();
        let previous = std::mem::replace(&mut self.cfg, cfg);
        tracing::info!(
            path = %shown(&self.cfg),
            previous = %shown(&previous),
            max_bytes = self.cfg.max_bytes,
            keep = self.cfg.keep,
            anonymize_clients = self.cfg.anonymize_clients,
            session_gap_ms = gap_ms(&self.cfg),
            "query log: settings applied"
        );
        let _ = done.send(());
    }

    /// Returns an emptied batch vector to the query path, unless enough are waiting.
    fn spare(&self, v: Vec<Record>) {
        if v.capacity() <= super::SPARE_CAPACITY
            && let Ok(mut s) = self.spares.lock()
            && s.len() < super::SPARES
        {
            s.push(v);
        }
    }

    fn report_drops(&mut self) {
        let d = self.stats.dropped.load(Ordering::Relaxed);
        if d != self.reported_drops {
            tracing::warn!(
                dropped = d,
                since_last = d - self.reported_drops,
                "query log: records dropped (queue full or file not writable)"
            );
            self.reported_drops = d;
        }
    }

    fn drop_records(&self, n: u64) {
        self.stats.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// Opens (or re-opens) the current file for appending. On failure the reason is logged
    /// once per failure spell and the next try waits [`RETRY`].
    fn open(&mut self) -> bool {
        if self.out.is_some() {
            return true;
        }
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        let Some(path) = self.cfg.path.clone() else {
            return false;
        };
        match open_append(&path) {
            Ok((f, size)) => {
                if self.failing {
                    tracing::info!(path = %path.display(), "query log: writing again");
                }
                self.failing = false;
                self.retry_at = None;
                self.size = size;
                self.out = Some(BufWriter::with_capacity(64 * 1024, f));
                true
            }
            Err(e) => {
                self.fail(&format!("cannot open {}: {e}", path.display()));
                false
            }
        }
    }

    fn fail(&mut self, why: &str) {
        if !self.failing {
            tracing::warn!(
                "query log: {why}; queries are still answered, records are dropped and counted until it works again"
            );
        }
        self.failing = true;
        self.retry_at = Some(Instant::now() + RETRY);
        if let Some(w) = self.out.take() {
            // Whatever is still buffered is lost with the failed file.
            let (_f, _lost) = w.into_parts();
        }
        self.drop_records(self.pending);
        self.pending = 0;
    }

    fn flush(&mut self) {
        let Some(w) = self.out.as_mut() else { return };
        match w.flush() {
            Ok(()) => {
                self.stats
                    .written
                    .fetch_add(self.pending, Ordering::Relaxed);
                self.pending = 0;
            }
            Err(e) => self.fail(&format!("cannot write {}: {e}", shown(&self.cfg))),
        }
    }

    /// Places `r` in its client's session, hands it to the database writer (with
    /// `[log.postgres]`) and renders its JSON line (with a file).
    fn render(&mut self, r: &Record) {
        // Worked out once for the file and the database.
        let shown = Shown::of(r);
        let mark = self.sessions.mark(r.client, unix_ms(r.ts), shown.qname);
        if let Some(pg) = self.pg.as_mut() {
            pg.push(r, &mark, &shown, self.cfg.anonymize_clients);
        }
        // With no file, the JSON line is not needed.
        if self.cfg.path.is_some() {
            self.render_json(r, &mark, &shown);
        }
    }

    /// Renders `r`, placed in its session as `mark`, as one JSON line into `self.line`.
    /// Written by hand rather than through serde: this is most of the writer's work per
    /// query. The timestamp and client text are reused from the previous record when equal
    /// (a UDP batch shares its arrival time).
    fn render_json(&mut self, r: &Record, mark: &super::sessions::Mark, shown: &Shown<'_>) {
        if self.last_ts.0 != r.ts || self.last_ts.1.is_empty() {
            self.last_ts = (r.ts, format_ts(r.ts));
        }
        if self.last_client.0 != r.client || self.last_client.1.is_empty() {
            self.last_client = (r.client, client_text(r.client, self.cfg.anonymize_clients));
        }
        let l = &mut self.line;
        l.clear();
        l.extend_from_slice(b"{\"ts\":");
        json_plain(l, &self.last_ts.1);
        l.extend_from_slice(b",\"client\":");
        json_plain(l, &self.last_client.1);
        l.extend_from_slice(b",\"proto\":");
        json_plain(l, r.transport.name());
        l.extend_from_slice(b",\"qname\":");
        json_str(l, shown.qname);
        l.extend_from_slice(b",\"qtype\":");
        json_plain(l, &qtype_name(r.asked.qtype));
        l.extend_from_slice(b",\"action\":");
        json_plain(l, action_name(r.outcome.action));
        match &shown.rule {
            Some((rule, list)) => {
                l.extend_from_slice(b",\"rule\":");
                json_str(l, rule);
                l.extend_from_slice(b",\"list\":");
                json_str(l, list);
            }
            None => l.extend_from_slice(b",\"rule\":null,\"list\":null"),
        }
        if let Some(g) = &r.outcome.group {
            l.extend_from_slice(b",\"group\":");
            json_str(l, g);
        }
        // The name of the CNAME chain that the rule blocked, when not the query name.
        if let Some(target) = r.outcome.rule.as_ref().and_then(|x| x.cname()) {
            l.extend_from_slice(b",\"cname\":");
            json_str(l, &target);
        }
        l.extend_from_slice(b",\"rcode\":");
        json_plain(l, rcode::name(r.outcome.rcode));
        // What DNSSEC validation found; absent when the answer was not validated.
        if let Some(s) = r.outcome.dnssec {
            l.extend_from_slice(b",\"dnssec\":");
            json_str(l, s.as_str());
        }
        l.extend_from_slice(b",\"answers\":[");
        let mut first = true;
        each_answer(r, |t| {
            if !std::mem::take(&mut first) {
                l.push(b',');
            }
            json_str(l, t);
        });
        l.push(b']');
        // Only on truncated replies: the client was sent no answers (and will retry over
        // TCP, which is logged with them).
        if matches!(r.outcome.detail, Detail::Truncated) {
            l.extend_from_slice(b",\"tc\":true");
        }
        l.extend_from_slice(b",\"upstream\":");
        match &shown.upstream {
            Some(u) => json_str(l, u),
            None => l.extend_from_slice(b"null"),
        }
        let mut n = itoa::Buffer::new();
        l.extend_from_slice(b",\"elapsed_us\":");
        let us = u64::try_from(r.elapsed.as_micros()).unwrap_or(u64::MAX);
        l.extend_from_slice(n.format(us).as_bytes());
        l.extend_from_slice(b",\"session\":");
        l.extend_from_slice(n.format(mark.session).as_bytes());
        l.extend_from_slice(b",\"seq\":");
        l.extend_from_slice(n.format(mark.seq).as_bytes());
        l.extend_from_slice(if mark.new {
            b",\"new\":true}\n"
        } else {
            b",\"new\":false}\n"
        });
    }

    fn write(&mut self, r: &Record) {
        // Sessions count every record, also those that cannot be written.
        self.render(r);
        if self.cfg.path.is_none() {
            return;
        }
        if !self.open() {
            self.drop_records(1);
            return;
        }
        let len = self.line.len() as u64;
        if self.size > 0 && self.size + len > self.cfg.max_bytes {
            self.rotate();
            if !self.open() {
                self.drop_records(1);
                return;
            }
        }
        let Some(w) = self.out.as_mut() else {
            self.drop_records(1);
            return;
        };
        match w.write_all(&self.line) {
            Ok(()) => {
                self.size += len;
                self.pending += 1;
            }
            Err(e) => {
                self.pending += 1;
                self.fail(&format!("cannot write {}: {e}", shown(&self.cfg)));
            }
        }
    }

    /// `path` → `path.1` → … → `path.keep`; the oldest beyond `keep` is removed, and so
    /// are older ones left by a larger `keep` (before a reload or restart), which the
    /// readers would otherwise still read.
    fn rotate(&mut self) {
        self.flush();
        self.out = None;
        let Some(path) = self.cfg.path.clone() else {
            return;
        };
        let keep = self.cfg.keep;
        // Only a regular file is rotated (never /dev/null or a FIFO someone pointed us at).
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            self.size = 0;
            return;
        }
        let mut n = keep.saturating_add(1);
        while n < u32::MAX && std::fs::remove_file(rotated(&path, n)).is_ok() {
            n += 1;
        }
        let res = if keep == 0 {
            std::fs::remove_file(&path)
        } else {
            let _ = std::fs::remove_file(rotated(&path, keep));
            for i in (1..keep).rev() {
                let from = rotated(&path, i);
                if from.exists() {
                    let _ = std::fs::rename(&from, rotated(&path, i + 1));
                }
            }
            std::fs::rename(&path, rotated(&path, 1))
        };
        if let Err(e) = res {
            tracing::warn!(path = %path.display(), error = %e, "query log: rotation failed; appending to the current file");
        }
        self.size = 0;
    }
}

/// Appends `s`, which this program wrote (a time, an address, a mnemonic) and which needs
/// no escaping, as a JSON string.
fn json_plain(out: &mut Vec<u8>, s: &str) {
    debug_assert!(!s.bytes().any(escaped));
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// True for a byte that a JSON string cannot hold as it is.
#[inline]
fn escaped(c: u8) -> bool {
    (c < 0x20) | (c == b'"') | (c == b'\\')
}

/// Appends `s` as a JSON string (RFC 8259 escaping).
fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let b = s.as_bytes();
    // A fold rather than `any`: without the early exit the check is vectorised (SSE2 byte
    // compares in the release build), and the common case reads every byte anyway.
    let plain = !b.iter().fold(false, |esc, &c| esc | escaped(c));
    if plain {
        out.extend_from_slice(b);
    } else {
        for &c in b {
            match c {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b'\r' => out.extend_from_slice(b"\\r"),
                c if c < 0x20 => {
                    out.extend_from_slice(format!("\\u{c:04x}").as_bytes());
                }
                c => out.push(c),
            }
        }
    }
    out.push(b'"');
}

/// The log file's path for messages; `-` when the log has no file.
fn shown(cfg: &LogConfig) -> String {
    cfg.path
        .as_deref()
        .map_or_else(|| "-".to_string(), |p| p.display().to_string())
}

/// `session_gap` in milliseconds, as [`Sessions`] takes it.
fn gap_ms(cfg: &LogConfig) -> i64 {
    i64::try_from(cfg.session_gap.as_millis()).unwrap_or(i64::MAX)
}

/// Opens `path` for appending (creating its folders); when its last line is torn (a crash,
/// a full disk), ends it first so that the next record starts on a line of its own.
pub(super) fn open_append(path: &Path) -> std::io::Result<(File, u64)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    let mut size = f.metadata()?.len();
    if size > 0 {
        let mut last = [0u8; 1];
        f.seek(SeekFrom::Start(size - 1))?;
        f.read_exact(&mut last)?;
        if last[0] != b'\n' {
            f.write_all(b"\n")?;
            size += 1;
        }
    }
    Ok((f, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_millis() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(format_ts(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(unix_ms(t), 1_700_000_000_123);
    }

    #[test]
    fn answer_addresses_are_written_as_std_writes_them() {
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "::",
            "2001:db8::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip, &mut [0; 48]), ip.to_string());
        }
    }

    #[test]
    fn anonymized_clients_keep_their_network() {
        let v4: IpAddr = "192.168.1.77".parse().unwrap();
        let v6: IpAddr = "2001:db8:1:2:3::9".parse().unwrap();
        assert_eq!(client_text(v4, false), "192.168.1.77");
        assert_eq!(client_text(v4, true), "192.168.1.0");
        assert_eq!(client_text(v6, true), "2001:db8:1::");
    }

    #[test]
    fn rendered_lines_are_json_entries() {
        use crate::handler::Asked;
        use crate::pipeline::{Action, Detail, Outcome};
        let cfg = LogConfig {
            path: Some(PathBuf::from("/nonexistent/q.jsonl")),
            postgres: None,
            max_bytes: 1 << 20,
            keep: 1,
            anonymize_clients: false,
            session_gap: Duration::from_secs(30),
        };
        let mut w = Writer::new(cfg, Arc::default(), None, Arc::default());
        let mut o = Outcome::new(Action::Blocked, 3, Some("9.9.9.9:53".parse().unwrap()));
        o.detail = Detail::Local(Some("0.0.0.0".parse().unwrap()));
        let r = Record {
            ts: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            client: "192.0.2.7".parse().unwrap(),
            transport: crate::pipeline::Transport::Tls,
            asked: Asked {
                qname: "we\"ird\\na\tme.example".into(),
                qtype: 65,
            },
            outcome: o,
            elapsed: Duration::from_micros(42),
        };
        w.render(&r);
        let line = std::str::from_utf8(&w.line).unwrap();
        assert!(line.ends_with("}\n"));
        let e: super::super::Entry<'_> = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(e.ts, "2023-11-14T22:13:20.123Z");
        assert_eq!(e.client, "192.0.2.7");
        assert_eq!(e.proto.as_deref(), Some("tls"));
        assert_eq!(e.qname, "we\"ird\\na\tme.example");
        assert_eq!(e.qtype, "HTTPS");
        assert_eq!(e.action, "blocked");
        assert_eq!((e.rule, e.list), (None, None));
        assert_eq!(e.rcode, "NXDOMAIN");
        assert_eq!(e.answers, ["0.0.0.0"]);
        assert_eq!(e.upstream.as_deref(), Some("9.9.9.9:53"));
        assert_eq!((e.elapsed_us, e.session, e.seq, e.new), (42, 1, 1, true));
        assert_eq!(e.cname, None);
        assert!(!line.contains("cname"), "absent unless a chain was blocked");
    }

    #[test]
    fn a_blocked_cname_target_is_logged_with_its_rule() {
        use crate::blocklist::{BlocklistBuilder, Kind};
        use crate::handler::Asked;
        use crate::pipeline::{Action, Outcome, RuleRef};
        let mut b = BlocklistBuilder::new();
        let src = b.add_source("lists/trackers.txt");
        b.insert("tracker.example", Kind::Block, false, false, src, 7);
        let cfg = LogConfig {
            path: Some(PathBuf::from("/nonexistent/q.jsonl")),
            postgres: None,
            max_bytes: 1 << 20,
            keep: 1,
            anonymize_clients: false,
            session_gap: Duration::from_secs(30),
        };
        let mut w = Writer::new(cfg, Arc::default(), None, Arc::default());
        let mut o = Outcome::new(Action::Blocked, 0, None);
        o.rule = Some(RuleRef::Cname {
            list: Arc::new(b.build()),
            target: (*b"x.tracker.example").into(),
        });
        w.render(&Record {
            ts: SystemTime::UNIX_EPOCH,
            client: "192.0.2.7".parse().unwrap(),
            transport: crate::pipeline::Transport::Udp,
            asked: Asked {
                qname: "metrics.shop.example".into(),
                qtype: 1,
            },
            outcome: o,
            elapsed: Duration::from_micros(42),
        });
        let line = std::str::from_utf8(&w.line).unwrap();
        let e: super::super::Entry<'_> = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(e.qname, "metrics.shop.example");
        assert_eq!(e.rule.as_deref(), Some("tracker.example"));
        assert_eq!(e.list.as_deref(), Some("lists/trackers.txt:7"));
        assert_eq!(e.cname.as_deref(), Some("x.tracker.example"));
        let shown = super::super::tail::render(
            &e,
            super::super::tail::Style {
                color: false,
                json: false,
            },
        );
        assert!(
            shown.ends_with("tracker.example (lists/trackers.txt:7) via CNAME x.tracker.example"),
            "{shown}"
        );
    }

    #[test]
    fn a_batch_vector_goes_back_empty_for_the_next_batch() {
        use crate::handler::Asked;
        use crate::pipeline::{Action, Outcome, RuleRef};
        let list = Arc::new(crate::blocklist::BlocklistBuilder::new().build());
        let cfg = LogConfig {
            path: None,
            postgres: None,
            max_bytes: 1 << 20,
            keep: 1,
            anonymize_clients: false,
            session_gap: Duration::from_secs(30),
        };
        let spares = super::super::Spares::default();
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let rec = || {
            let mut o = Outcome::new(Action::Blocked, 0, None);
            o.rule = Some(RuleRef::List(
                Arc::clone(&list),
                crate::blocklist::RuleAt::Unlisted,
            ));
            Record {
                ts: SystemTime::UNIX_EPOCH,
                client: "192.0.2.7".parse().unwrap(),
                transport: crate::pipeline::Transport::Udp,
                asked: Asked {
                    qname: "a.example".into(),
                    qtype: 1,
                },
                outcome: o,
                elapsed: Duration::ZERO,
            }
        };
        let mut batch = Vec::with_capacity(32);
        batch.extend((0..3).map(|_| rec()));
        tx.send(Msg::Batch(batch)).unwrap();
        // A vector too large to keep is let go.
        let mut big = Vec::with_capacity(super::super::SPARE_CAPACITY + 1);
        big.push(rec());
        tx.send(Msg::Batch(big)).unwrap();
        tx.send(Msg::Stop).unwrap();
        Writer::new(cfg, Arc::default(), None, Arc::clone(&spares)).run(&rx);
        let kept = std::mem::take(&mut *spares.lock().unwrap());
        assert_eq!(kept.len(), 1);
        assert!(kept[0].is_empty() && kept[0].capacity() == 32);
        // The records (and the list snapshots they held) are gone, not kept with it.
        assert_eq!(Arc::strong_count(&list), 1);
    }

    #[test]
    fn torn_last_line_is_ended_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.jsonl");
        std::fs::write(&p, "{\"a\":1}\n{\"b\":").unwrap();
        let (_f, size) = open_append(&p).unwrap();
        assert_eq!(size, 14);
        assert!(std::fs::read_to_string(&p).unwrap().ends_with("{\"b\":\n"));
    }
}
