//! The process's open-file budget: [`raise_nofile_limit`] lifts the soft `RLIMIT_NOFILE` to
//! the hard limit at start (a common soft limit is 1,024), and [`warn_if_exhausted`] turns
//! "too many open files" (EMFILE/ENFILE) from a socket or accept call into a WARN, at most
//! one per [`WARN_EVERY`], so that running out of descriptors is visible at the default log
//! level without a log line per query. This module does not decide how many sockets anyone
//! opens; the upstream pool and the listeners bound their own.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};

/// Shortest time between two "out of file descriptors" warnings.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Raised to when the hard limit is "unlimited" (Linux refuses more than `fs.nr_open`,
/// 1,048,576 by default).
const UNLIMITED_TARGET: u64 = 1 << 20;

/// Raises the soft open-file limit to the hard limit and logs both values. Returns the
/// (old, new) soft limits, or `None` when the limit could not be read or set (logged).
pub fn raise_nofile_limit() -> Option<(u64, u64)> {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit (RLIMIT_NOFILE)");
            return None;
        }
    };
    let target = if hard == RLIM_INFINITY {
        UNLIMITED_TARGET
    } else {
        hard
    };
    if soft >= target {
        tracing::debug!(soft, hard, "open-file limit already at its hard limit");
        return Some((soft, soft));
    }
    match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
        Ok(()) => {
            tracing::info!(old = soft, new = target, hard, "raised the open-file limit");
            Some((soft, target))
        }
        Err(e) => {
            tracing::warn!(
                soft,
                hard,
                error = %e,
                "cannot raise the open-file limit; many concurrent clients may exhaust it"
            );
            None
        }
    }
}

/// True when `e` means the process or the system ran out of file descriptors.
pub fn is_exhausted(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(c) if c == Errno::EMFILE as i32 || c == Errno::ENFILE as i32)
}

/// When `e` is EMFILE/ENFILE, logs a WARN naming `what` failed (rate-limited to one per
/// [`WARN_EVERY`], with the number of failures not logged since) and returns true.
pub fn warn_if_exhausted(what: &str, e: &std::io::Error) -> bool {
    if !is_exhausted(e) {
        return false;
    }
    static LIMIT: RateLimit = RateLimit::new();
    if let Some(suppressed) = LIMIT.allow_now() {
        tracing::warn!(
            error = %e,
            suppressed,
            "{what}: out of file descriptors; raise the open-file limit (LimitNOFILE= in \
             the systemd unit, or ulimit -n) or lower the load"
        );
    }
    true
}

/// At most one event per [`WARN_EVERY`]; counts the others. Lock-free, usable as a
/// `static` by any thread (the query path's WARNs use it too).
pub(crate) struct RateLimit {
    /// When the last event was let through, in ms since the start, plus one (0 = never).
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    /// A limit that lets the first event through.
    pub(crate) const fn new() -> Self {
        Self {
            last_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// As [`RateLimit::allow`], at the current time.
    pub(crate) fn allow_now(&self) -> Option<u64> {
        static START: OnceLock<Instant> = OnceLock::new();
        self.allow(START.get_or_init(Instant::now).elapsed())
    }

    /// `Some(events suppressed since the last one let through)` when this one may be logged.
    fn allow(&self, now: Duration) -> Option<u64> {
        let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        let every = WARN_EVERY.as_millis() as u64;
        if last != 0 && now_ms < last.saturating_add(every) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // One caller wins the slot; a concurrent one counts as suppressed.
        if self
            .last_ms
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_period_and_the_rest_counted() {
        let r = RateLimit::new();
        assert_eq!(r.allow(Duration::ZERO), Some(0));
        assert_eq!(r.allow(Duration::from_millis(1)), None);
        assert_eq!(r.allow(WARN_EVERY / 2), None);
        assert_eq!(r.allow(WARN_EVERY), Some(2));
        assert_eq!(r.allow(WARN_EVERY + Duration::from_secs(1)), None);
        assert_eq!(r.allow(WARN_EVERY * 3), Some(1));
    }

    #[test]
    fn only_descriptor_exhaustion_counts() {
        let emfile = std::io::Error::from_raw_os_error(Errno::EMFILE as i32);
        let enfile = std::io::Error::from_raw_os_error(Errno::ENFILE as i32);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(is_exhausted(&emfile) && is_exhausted(&enfile));
        assert!(!is_exhausted(&refused));
        assert!(!warn_if_exhausted("test", &refused));
        assert!(warn_if_exhausted("test", &emfile));
    }
}
