//! `Pause`: blocking paused for everyone until a deadline (`sinkhole pause 5m`, the HTTP
//! API's `/api/v1/pause`). While paused, the blocking stage answers only the bypass signals,
//! and the answer checks skip the CNAME chain and `response_ips`; access control, rate
//! limits, local records and rebinding protection still apply.
//!
//! The deadline is one atomic, read with one relaxed load per query: zero (the common case)
//! means not paused, and nothing else is computed. It is a point on the monotonic clock,
//! compared with `req.now`, so the pause ends by itself at the first query after it, tests
//! move through it with the service's [`Clock`](super::Clock), and a wall-clock step does
//! not shorten or stretch it. Not part of the policy snapshot: a reload keeps a pause.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::request::Now;

/// The longest pause accepted: a week. A longer "pause" is turning blocking off, which
/// belongs in the config.
pub const MAX_PAUSE: Duration = Duration::from_secs(7 * 86_400);

/// Blocking paused until a deadline, or not paused.
#[derive(Debug)]
pub struct Pause {
    /// Nanoseconds after `epoch` at which the pause ends; 0 = not paused.
    until: AtomicU64,
    /// The zero of `until` (before any `req.now`: clocks only move forward).
    epoch: Instant,
}

impl Default for Pause {
    fn default() -> Self {
        Self {
            until: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl Pause {
    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// True while paused at `now`. One relaxed load when not paused.
    #[inline]
    pub fn active(&self, now: &Now) -> bool {
        let until = self.until.load(Relaxed);
        until != 0 && self.nanos(now.mono) < until
    }

    /// Pauses blocking from `now` for `d` (at most [`MAX_PAUSE`]), replacing any pause
    /// running. Returns the length applied.
    pub fn pause(&self, now: &Now, d: Duration) -> Duration {
        let d = d.min(MAX_PAUSE);
        let until = self
            .nanos(now.mono)
            .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.until.store(until.max(1), Relaxed);
        d
    }

    /// Ends a pause now; returns whether one was running.
    pub fn resume(&self, now: &Now) -> bool {
        let was = self.active(now);
        self.until.store(0, Relaxed);
        was
    }

    /// What is left of the pause at `now`; `None` when not paused.
    pub fn remaining(&self, now: &Now) -> Option<Duration> {
        let until = self.until.load(Relaxed);
        let at = self.nanos(now.mono);
        (until != 0 && at < until).then(|| Duration::from_nanos(until - at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::request::test_support::fixed_now;

    #[test]
    fn a_pause_ends_by_itself_and_resume_ends_it_early() {
        let p = Pause::default();
        let now = fixed_now();
        assert!(!p.active(&now));
        assert_eq!(p.remaining(&now), None);
        p.pause(&now, Duration::from_secs(300));
        assert!(p.active(&now));
        assert!(p.active(&now.after(Duration::from_secs(299))));
        assert_eq!(
            p.remaining(&now.after(Duration::from_secs(100))),
            Some(Duration::from_secs(200))
        );
        assert!(!p.active(&now.after(Duration::from_secs(300))));
        assert_eq!(p.remaining(&now.after(Duration::from_secs(301))), None);
        p.pause(&now, Duration::from_secs(60));
        assert!(p.resume(&now));
        assert!(!p.active(&now));
        assert!(!p.resume(&now), "nothing to resume");
    }

    #[test]
    fn a_pause_is_bounded_and_never_zero() {
        let p = Pause::default();
        let now = fixed_now();
        assert_eq!(p.pause(&now, Duration::MAX), MAX_PAUSE);
        assert!(p.active(&now.after(MAX_PAUSE - Duration::from_secs(1))));
        assert!(!p.active(&now.after(MAX_PAUSE)));
        // A zero-length pause at the epoch stores 1 ns, not the "not paused" zero: harmless.
        p.pause(&now, Duration::ZERO);
        assert!(!p.active(&now.after(Duration::from_secs(1))));
    }
}
