//! How a rollback is armed apart from `apply --confirm` (see [`super::guard`]): a transient
//! `systemd-run --on-active` timer where systemd can guard us, else a detached
//! `sinkhole firewall rollback --after …` in its own process group, and that detached
//! guard's wait ([`watch`]). The state files and who decides live in `guard`.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::guard::{Expect, Files, Guard, GuardError, inode, io_err, read_saved, rollback};

/// The transient systemd units are named this, then `-ID`.
const UNIT_PREFIX: &str = "sinkhole-firewall-rollback";

/// Whether a systemd timer can guard us: systemd is PID 1 and shares our network and
/// mount namespaces (else its rollback would run on other rules, or miss our files).
fn systemd_usable() -> bool {
    let same = |ns: &str| match (
        std::fs::read_link(format!("/proc/self/ns/{ns}")),
        std::fs::read_link(format!("/proc/1/ns/{ns}")),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    Path::new("/run/systemd/system").is_dir()
        && std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd")
        && same("net")
        && same("mnt")
}

/// The arguments of `systemd-run` that arm a transient timer running
/// `EXE firewall rollback --state STATE --id ID` once, `after` from now.
pub(super) fn systemd_run_args(
    exe: &Path,
    state: &Path,
    id: &str,
    after: Duration,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        format!("--unit={UNIT_PREFIX}-{id}"),
        "--description=sinkhole: roll back firewall rules unless confirmed".to_string(),
        format!("--on-active={}ms", after.as_millis()),
        // The default accuracy of a timer is a minute.
        "--timer-property=AccuracySec=100ms".to_string(),
        "--collect".to_string(),
        "--quiet".to_string(),
        "--".to_string(),
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    args.push(exe.into());
    args.extend(["firewall", "rollback", "--state"].map(OsString::from));
    args.push(state.into());
    args.extend([OsString::from("--id"), OsString::from(id)]);
    args
}

/// Arms the rollback: a systemd timer if usable and it starts, else a detached process.
pub(super) fn start_guard(files: &Files, id: &str, after: Duration) -> Result<Guard, GuardError> {
    let exe = std::env::current_exe().map_err(|source| GuardError::Spawn {
        exe: "sinkhole".into(),
        source,
    })?;
    if systemd_usable() {
        let ok = Command::new("systemd-run")
            .args(systemd_run_args(&exe, &files.saved, id, after))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(Guard::Systemd(format!("{UNIT_PREFIX}-{id}.timer")));
        }
    }
    let spawn_err = |source| GuardError::Spawn {
        exe: exe.display().to_string(),
        source,
    };
    let log = std::fs::File::create(&files.log).map_err(io_err(&files.log))?;
    let log2 = log.try_clone().map_err(io_err(&files.log))?;
    // Its own process group: the terminal's SIGHUP and Ctrl-C, sent to the foreground
    // group, do not reach it; `apply`'s death does not either.
    let child = Command::new(&exe)
        .args(["firewall", "rollback", "--after"])
        .arg(format!("{}ms", after.as_millis()))
        .arg("--state")
        .arg(&files.saved)
        .args(["--id", id])
        .current_dir("/")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(spawn_err)?;
    Ok(Guard::Detached(child.id()))
}

/// Stops the systemd timer of a decided window (best effort: the state file already says
/// the window is closed, so a timer that still fires finds nothing to do).
pub(super) fn stop_timer(id: &str) {
    if systemd_usable() {
        let _ = Command::new("systemctl")
            .args(["stop", &format!("{UNIT_PREFIX}-{id}.timer")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The detached guard: waits `after`, giving up as soon as the window is decided, then
/// rolls back. SIGHUP and SIGINT are ignored; SIGTERM rolls back at once. `Ok(true)`: it
/// rolled back; `Ok(false)`: the window was decided without it.
pub fn watch(files: &Files, id: &str, after: Duration) -> Result<bool, GuardError> {
    let deadline = Instant::now() + after;
    let saved_inode = match read_saved(&files.saved) {
        Ok(s) if s.id == id => inode(&files.saved),
        Ok(_) => None,
        Err(GuardError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let Some(ino) = saved_inode else {
        return Ok(false);
    };
    // Without a runtime or signal handlers the guard still guards, only deaf to signals.
    let fire = wait_with_signals(files, ino, deadline).unwrap_or_else(|_| {
        loop {
            if inode(&files.saved) != Some(ino) {
                break false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break true;
            }
            std::thread::sleep(left.min(TICK));
        }
    });
    if !fire {
        return Ok(false);
    }
    rollback(files, Expect::Inode(ino))
}

/// How often the guard looks whether the window was decided.
const TICK: Duration = Duration::from_millis(100);

/// The guard's wait: whether to roll back (`false`: the window was decided).
fn wait_with_signals(files: &Files, ino: u64, deadline: Instant) -> std::io::Result<bool> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut hup = signal(SignalKind::hangup())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        loop {
            if inode(&files.saved) != Some(ino) {
                return Ok(false);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(true);
            }
            tokio::select! {
                () = tokio::time::sleep(left.min(TICK)) => {}
                _ = hup.recv() => {}
                _ = int.recv() => {}
                _ = term.recv() => return Ok(true),
            }
        }
    })
}
