//! The confirm window of `sinkhole firewall apply --confirm`, made to outlive the process
//! that opened it. Before the new rules go in, the previous ones ([`Snapshot`]) are written
//! and fsynced to `firewall.saved` in the run dir, and a rollback is armed apart from
//! `apply`: a transient `systemd-run --on-active` timer where systemd is PID 1 in our
//! network and mount namespaces, else a detached `sinkhole firewall rollback --after …` in
//! its own process group. So SIGKILL, an OOM kill, SIGHUP or SIGTERM of `apply` still ends
//! in a rollback. Who decides is settled by one atomic rename of `firewall.saved`: to
//! `firewall.confirmed` (`confirm`) or to `firewall.rolling-back` (a rollback); the loser
//! finds the file gone. Runs no firewall tool itself: [`system::restore`] does.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::system::{self, Snapshot, ToolError};
pub use super::timer::watch;
use super::timer::{start_guard, stop_timer};

/// The guard fires this long after the window, so that a live `apply` rolls back (and
/// reports it) itself; the guard acts only when `apply` is gone or stuck.
pub const GRACE: Duration = Duration::from_secs(1);

/// Why the confirm window could not be opened, decided or closed.
#[derive(Debug, Error)]
pub enum GuardError {
    /// A state file could not be written, read or renamed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Another `apply --confirm` is still undecided.
    #[error(
        "{0}: a rollback is armed for an `apply --confirm` that is not confirmed yet; run `sinkhole firewall confirm` to keep its rules or `sinkhole firewall rollback` to restore the earlier ones, then try again"
    )]
    Armed(String),
    /// The saved state cannot be read back.
    #[error("{path}: not a saved rule set: {msg}; check the rules by hand, then delete it")]
    Parse {
        /// The file.
        path: String,
        /// The JSON error.
        msg: String,
    },
    /// Neither systemd-run nor a detached process could be started.
    #[error("cannot start the rollback guard {exe}: {source}")]
    Spawn {
        /// The program.
        exe: String,
        /// Why.
        source: std::io::Error,
    },
    /// Restoring the saved rules failed.
    #[error(transparent)]
    Tool(#[from] ToolError),
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GuardError + '_ {
    move |source| GuardError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The folder of the state files: `$SINKHOLE_RUN_DIR`, else `/run/sinkhole`.
pub fn run_dir() -> PathBuf {
    std::env::var_os("SINKHOLE_RUN_DIR")
        .map_or_else(|| PathBuf::from("/run/sinkhole"), PathBuf::from)
}

/// The state files, all in one folder.
#[derive(Debug, Clone)]
pub struct Files {
    /// The previous rules while undecided (what `rollback` reads).
    pub saved: PathBuf,
    confirmed: PathBuf,
    rolling: PathBuf,
    /// Exists while `apply` waits, holding its pid.
    pub pending: PathBuf,
    /// The detached guard's output.
    pub log: PathBuf,
}

impl Files {
    /// The files beside `saved` (normally `RUN_DIR/firewall.saved`).
    pub fn at(saved: PathBuf) -> Self {
        let sibling = |n: &str| saved.with_file_name(n);
        Self {
            confirmed: sibling("firewall.confirmed"),
            rolling: sibling("firewall.rolling-back"),
            pending: sibling("firewall.pending"),
            log: sibling("firewall.guard.log"),
            saved,
        }
    }

    /// The files in a run dir.
    pub fn in_dir(dir: &Path) -> Self {
        Self::at(dir.join("firewall.saved"))
    }
}

/// What `firewall.saved` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// Which `apply` armed it: a guard acts only on its own.
    pub id: String,
    /// When it was armed (seconds since the epoch) and for how long, for whoever reads it.
    pub armed_unix: u64,
    /// The confirm window in milliseconds.
    pub window_ms: u64,
    /// The rules to put back.
    pub previous: Snapshot,
}

pub(super) fn inode(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.ino())
}

pub(super) fn read_saved(p: &Path) -> Result<Saved, GuardError> {
    let text = std::fs::read_to_string(p).map_err(io_err(p))?;
    serde_json::from_str(&text).map_err(|e| GuardError::Parse {
        path: p.display().to_string(),
        msg: e.to_string(),
    })
}

/// Which saved state a caller may take: any, the one with this id, or this very file.
#[derive(Debug, Clone, Copy)]
pub enum Expect<'a> {
    /// Whatever is saved (the administrator's `rollback`).
    Any,
    /// The state armed by the `apply` with this id (the systemd timer).
    Id(&'a str),
    /// The file with this inode (the `apply` process, the detached guard).
    Inode(u64),
}

/// Renames `from` to `to` if it is the expected state; `Ok(None)`: it is not there, or
/// not ours (then it is put back).
fn take(from: &Path, to: &Path, expect: Expect<'_>) -> Result<Option<Saved>, GuardError> {
    match std::fs::rename(from, to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(from)(e)),
    }
    let put_back = || {
        let _ = std::fs::rename(to, from);
    };
    if let Expect::Inode(i) = expect
        && inode(to) != Some(i)
    {
        put_back();
        return Ok(None);
    }
    let saved = match read_saved(to) {
        Ok(s) => s,
        Err(e) => {
            put_back();
            // Name the file where it is now.
            return Err(match e {
                GuardError::Parse { msg, .. } => GuardError::Parse {
                    path: from.display().to_string(),
                    msg,
                },
                other => other,
            });
        }
    };
    if let Expect::Id(id) = expect
        && saved.id != id
    {
        put_back();
        return Ok(None);
    }
    Ok(Some(saved))
}

/// Restores the saved rules now, if they are the expected ones. `Ok(false)`: nothing
/// (of ours) was armed. On failure the state goes back to `firewall.saved` for a retry.
pub fn rollback(files: &Files, expect: Expect<'_>) -> Result<bool, GuardError> {
    let mut claimed = take(&files.saved, &files.rolling, expect)?;
    if claimed.is_none() && matches!(expect, Expect::Any) && files.rolling.exists() {
        // A rollback that was killed half-way: restoring is idempotent, so finish it.
        claimed = Some(read_saved(&files.rolling)?);
    }
    let Some(saved) = claimed else {
        return Ok(false);
    };
    if let Err(e) = system::restore(&saved.previous) {
        let _ = std::fs::rename(&files.rolling, &files.saved);
        return Err(e.into());
    }
    let _ = std::fs::remove_file(&files.rolling);
    let _ = std::fs::remove_file(&files.pending);
    stop_timer(&saved.id);
    Ok(true)
}

/// Keeps the applied rules: disarms the rollback. `Ok(false)`: nothing was armed (never,
/// or already rolled back).
pub fn confirm(files: &Files, expect: Expect<'_>) -> Result<bool, GuardError> {
    match take(&files.saved, &files.confirmed, expect)? {
        Some(saved) => {
            // `apply`, if it still waits, learns it from `firewall.confirmed`.
            let _ = std::fs::remove_file(&files.pending);
            stop_timer(&saved.id);
            Ok(true)
        }
        None => Ok(false),
    }
}

/// How an armed window ended, as far as the `apply` process can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still undecided.
    Waiting,
    /// `sinkhole firewall confirm` kept the rules.
    Confirmed,
    /// Someone else rolled back (the guard, or `sinkhole firewall rollback`).
    RolledBack,
}

/// How the rollback is armed, for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// A transient systemd timer unit.
    Systemd(String),
    /// A detached `sinkhole firewall rollback --after` process.
    Detached(u32),
}

/// An armed rollback, held by the `apply` process while it waits. Dropping it removes
/// `firewall.pending` but leaves the armed state to the guard.
#[derive(Debug)]
pub struct Armed {
    files: Files,
    inode: u64,
    /// How the rollback is armed.
    pub guard: Guard,
}

impl Armed {
    /// Saves `previous` durably and arms the rollback to fire `window` + [`GRACE`] from
    /// now. Fails, changing nothing, if another rollback is armed.
    pub fn arm(dir: &Path, previous: Snapshot, window: Duration) -> Result<Self, GuardError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let dir = std::path::absolute(dir).map_err(io_err(dir))?;
        let files = Files::in_dir(&dir);
        if files.saved.exists() || files.rolling.exists() {
            return Err(GuardError::Armed(files.saved.display().to_string()));
        }
        let _ = std::fs::remove_file(&files.confirmed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let saved = Saved {
            id: format!("{}-{:x}", std::process::id(), now.as_nanos()),
            armed_unix: now.as_secs(),
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
            previous,
        };
        let text = serde_json::to_string_pretty(&saved).map_err(|e| GuardError::Parse {
            path: files.saved.display().to_string(),
            msg: e.to_string(),
        })?;
        write_new(&files.saved, text.as_bytes())?;
        let inode = std::fs::metadata(&files.saved)
            .map_err(io_err(&files.saved))?
            .ino();
        let after = window.saturating_add(GRACE);
        let guard = match start_guard(&files, &saved.id, after) {
            Ok(g) => g,
            Err(e) => {
                let _ = std::fs::remove_file(&files.saved);
                return Err(e);
            }
        };
        Ok(Self {
            files,
            inode,
            guard,
        })
    }

    /// The state files.
    pub fn files(&self) -> &Files {
        &self.files
    }

    /// Marks the rules as applied and waiting: writes our pid to `firewall.pending`.
    pub fn mark_pending(&self) -> Result<(), GuardError> {
        let p = &self.files.pending;
        std::fs::write(p, format!("{}\n", std::process::id())).map_err(io_err(p))
    }

    /// Whether the window is still open, or how it was closed by someone else.
    pub fn outcome(&self) -> Outcome {
        if inode(&self.files.saved) == Some(self.inode) {
            Outcome::Waiting
        } else if inode(&self.files.confirmed) == Some(self.inode) {
            Outcome::Confirmed
        } else {
            Outcome::RolledBack
        }
    }

    /// Keeps the new rules (answered on the terminal).
    pub fn confirm(&self) -> Result<bool, GuardError> {
        confirm(&self.files, Expect::Inode(self.inode))
    }

    /// Restores the previous rules now.
    pub fn rollback(&self) -> Result<bool, GuardError> {
        rollback(&self.files, Expect::Inode(self.inode))
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.files.pending);
        if self.outcome() == Outcome::Confirmed {
            let _ = std::fs::remove_file(&self.files.confirmed);
        }
    }
}

/// Writes a new file durably, failing if it exists: a temporary file, fsync, a hard link
/// to `path` (atomic, and refused if `path` exists), fsync of the folder.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), GuardError> {
    use std::io::Write as _;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        std::fs::hard_link(&tmp, path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                GuardError::Armed(path.display().to_string())
            } else {
                io_err(path)(e)
            }
        })
    })();
    let _ = std::fs::remove_file(&tmp);
    result?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "guard_tests.rs"]
mod tests;
