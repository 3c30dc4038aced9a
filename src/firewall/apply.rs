//! `apply` and its confirm window, as a state machine: [`prepare`] checks that no rollback
//! is armed and records the current rules; then either [`apply_now`], or [`Window::open`]
//! arms the rollback ([`guard::Armed`]), applies and marks the window pending;
//! [`Window::wait`] polls until something decides (`sinkhole firewall confirm` or a rollback
//! from elsewhere, seen in the state files; an answer typed on the terminal; an
//! interruption; the deadline); [`Window::settle`] acts on that [`Decision`]: confirm, or
//! roll back. What a person sees is not here: the CLI prints, reads the terminal into a
//! channel, turns Ctrl-C / SIGTERM into a flag, and chooses the exit code.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::guard::{self, Armed, Files, GuardError, Outcome};
use super::system::{self, Snapshot, ToolError};
use super::{Backend, Family, Ruleset};

/// How often [`Window::wait`] looks at the state files, the terminal and the flag.
const POLL: Duration = Duration::from_millis(100);

/// Why `apply` failed. Each message is the step that failed; the cause follows as the error's
/// source.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// Another `apply --confirm` is undecided (its guard would undo this one), or the state
    /// files cannot be read.
    #[error(transparent)]
    Guard(#[from] GuardError),
    /// The current rules could not be read.
    #[error("recording the current rules")]
    Snapshot(#[source] ToolError),
    /// The rule set could not be loaded (without a confirm window: nothing to roll back).
    #[error("applying the rule set")]
    Apply(#[source] ToolError),
    /// The rollback could not be armed: nothing was changed.
    #[error("not applied: cannot arm the rollback")]
    Arm(#[source] GuardError),
    /// The rule set could not be loaded; the previous rules were put back.
    #[error("applying the rule set (rolled back)")]
    ApplyRolledBack(#[source] ToolError),
    /// The rule set could not be loaded, and putting the previous rules back failed too.
    #[error("ROLLBACK FAILED after a failed apply: check the rules by hand")]
    RollbackAfterFailedApply(#[source] GuardError),
    /// `firewall.pending` could not be written; the previous rules were put back.
    #[error("rolled back: cannot wait for confirmation")]
    Pending(#[source] GuardError),
    /// `firewall.pending` could not be written, and putting the previous rules back failed.
    #[error("rolling back")]
    RollbackAfterPending(#[source] GuardError),
    /// A `yes` on the terminal could not disarm the rollback.
    #[error("confirming")]
    Confirm(#[source] GuardError),
    /// The window closed without a confirmation and the previous rules could not be put back.
    #[error("ROLLBACK FAILED: check the rules by hand")]
    Rollback(#[source] GuardError),
}

/// Refuses to change the rules while a rollback is armed in `run_dir`: the guard would undo
/// the change.
pub fn not_armed(run_dir: &Path) -> Result<(), GuardError> {
    let files = Files::in_dir(run_dir);
    if files.saved.exists() {
        return Err(GuardError::Armed(files.saved.display().to_string()));
    }
    Ok(())
}

/// Records the current rules, after checking that no rollback is armed: the first step of
/// every `apply`.
pub fn prepare(
    run_dir: &Path,
    backend: Backend,
    family: Option<Family>,
) -> Result<Snapshot, ApplyError> {
    not_armed(run_dir)?;
    system::snapshot(backend, family).map_err(ApplyError::Snapshot)
}

/// Applies `rs` with no confirm window (`before`: the rules [`prepare`] recorded).
pub fn apply_now(rs: &Ruleset, before: &Snapshot) -> Result<(), ApplyError> {
    system::apply(rs, before).map_err(ApplyError::Apply)
}

/// How the wait of a confirm window ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// `sinkhole firewall confirm` from another shell.
    Kept,
    /// `yes` (or `y`) on the terminal.
    Yes,
    /// Another answer on the terminal.
    No,
    /// The window passed.
    Timeout,
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// The state was taken by a rollback that is not ours.
    RolledBackElsewhere,
}

/// Why a window ended with the previous rules back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolledBack {
    /// `yes` came after the rollback had already taken the state.
    TooLate,
    /// The answer on the terminal was not `yes`.
    NotConfirmed,
    /// No confirmation within the window.
    Timeout,
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// The guard or `sinkhole firewall rollback` did it.
    Elsewhere,
}

impl fmt::Display for RolledBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooLate => "too late",
            Self::NotConfirmed => "not confirmed",
            Self::Timeout => "no confirmation in time",
            Self::Interrupted => "interrupted",
            Self::Elsewhere => "rolled back by the guard or `sinkhole firewall rollback`",
        })
    }
}

/// How a window was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The new rules stay.
    Kept,
    /// The previous rules are back.
    RolledBack(RolledBack),
}

/// An open confirm window: the new rules are applied and the rollback is armed apart from
/// this process. Dropping it without [`Window::settle`] leaves the rollback to the guard.
#[derive(Debug)]
pub struct Window {
    armed: Armed,
    timeout: Duration,
}

impl Window {
    /// Arms the rollback (the previous rules `before` go to disk first: from here on, any
    /// death of this process still ends in a rollback), applies `rs` and marks the window
    /// pending. A failed apply is rolled back at once.
    pub fn open(
        run_dir: &Path,
        rs: &Ruleset,
        before: Snapshot,
        timeout: Duration,
    ) -> Result<Self, ApplyError> {
        let armed = Armed::arm(run_dir, before.clone(), timeout).map_err(ApplyError::Arm)?;
        if let Err(e) = system::apply(rs, &before) {
            armed
                .rollback()
                .map_err(ApplyError::RollbackAfterFailedApply)?;
            return Err(ApplyError::ApplyRolledBack(e));
        }
        if let Err(e) = armed.mark_pending() {
            armed.rollback().map_err(ApplyError::RollbackAfterPending)?;
            return Err(ApplyError::Pending(e));
        }
        Ok(Self { armed, timeout })
    }

    /// The state files.
    pub fn files(&self) -> &Files {
        self.armed.files()
    }

    /// How the rollback is armed.
    pub fn guard(&self) -> &guard::Guard {
        &self.armed.guard
    }

    /// The length of the window.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Waits, from now until the window's length has passed, for what decides: the state
    /// files (confirmed or rolled back elsewhere), then an answer on `answers` (the
    /// terminal's lines, lowercased and trimmed), then `interrupted`, then the deadline.
    pub async fn wait(
        &self,
        answers: Option<&Receiver<String>>,
        interrupted: &AtomicBool,
    ) -> Decision {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.armed.outcome() {
                Outcome::Waiting => {}
                Outcome::Confirmed => return Decision::Kept,
                Outcome::RolledBack => return Decision::RolledBackElsewhere,
            }
            if let Some(rx) = answers
                && let Ok(a) = rx.try_recv()
            {
                return if a == "y" || a == "yes" {
                    Decision::Yes
                } else {
                    Decision::No
                };
            }
            if interrupted.load(Ordering::SeqCst) {
                return Decision::Interrupted;
            }
            if Instant::now() >= deadline {
                return Decision::Timeout;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Acts on `decision`: a `yes` confirms (unless a rollback came first); no answer but
    /// `yes`, the deadline or an interruption roll back, unless a confirmation from
    /// elsewhere wins that race.
    pub fn settle(self, decision: Decision) -> Result<Settled, ApplyError> {
        let armed = &self.armed;
        let why = match decision {
            Decision::Kept => return Ok(Settled::Kept),
            Decision::Yes => match armed.confirm() {
                Ok(true) => return Ok(Settled::Kept),
                Ok(false) if armed.outcome() == Outcome::Confirmed => return Ok(Settled::Kept),
                // The state is gone: rolled back already, nothing left for us to do.
                Ok(false) => return Ok(Settled::RolledBack(RolledBack::TooLate)),
                Err(e) => return Err(ApplyError::Confirm(e)),
            },
            Decision::RolledBackElsewhere => return Ok(Settled::RolledBack(RolledBack::Elsewhere)),
            Decision::No => RolledBack::NotConfirmed,
            Decision::Timeout => RolledBack::Timeout,
            Decision::Interrupted => RolledBack::Interrupted,
        };
        let done = armed.rollback().map_err(ApplyError::Rollback)?;
        if !done && armed.outcome() == Outcome::Confirmed {
            return Ok(Settled::Kept);
        }
        Ok(Settled::RolledBack(why))
    }
}
