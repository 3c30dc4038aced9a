//! How long a UDP thread pauses after a batch before its next receive (interrupt
//! moderation, as a NIC does it): the pause follows the rate at which datagrams arrive.
//!
//! Every wake-up of a UDP thread costs the kernel's scheduling work whatever the batch it
//! brings, so under load the CPU per query falls as batches fill; the price is latency, so
//! the pause is only as long as the load makes worthwhile. The rate is the batch just taken
//! over the time since the last receive before it that took any: when the whole of
//! `server.udp_batch_wait_us` would gather [`FULL_AT`] datagrams or more (from 80,000
//! queries per second with the default 200 µs), the thread pauses all of it; below, a
//! share in proportion (two queries that came together on a quiet LAN: none). A lone
//! query, and a full batch (more is already waiting), never wait.

use std::time::Duration;

/// The datagrams a whole pause must be expected to gather for the thread to take it all.
const FULL_AT: u32 = 16;

/// Shorter pauses are not taken: they would gather hardly a datagram, for a system call
/// and a wake-up of their own.
const SHORTEST: Duration = Duration::from_micros(5);

/// The pause after a receive that took `got` datagrams (of at most `batch`) `since` the
/// last receive before it that took any returned, with `most` the configured longest
/// pause; `None`: receive again at once.
pub(super) fn after(got: usize, batch: usize, since: Duration, most: Duration) -> Option<Duration> {
    if got < 2 || got >= batch || most.is_zero() {
        return None;
    }
    // Datagrams expected during `most` at this rate: got × most / since; the pause is
    // `most` scaled by that over FULL_AT, at most `most`. In nanoseconds, u128: no
    // overflow for any input.
    let most_ns = most.as_nanos();
    let share = (got as u128)
        .saturating_mul(most_ns)
        .saturating_mul(most_ns)
        .checked_div(since.as_nanos().saturating_mul(u128::from(FULL_AT)))
        .map_or(most_ns, |p| p.min(most_ns));
    let pause = Duration::from_nanos(u64::try_from(share).unwrap_or(u64::MAX));
    (pause >= SHORTEST).then_some(pause)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOST: Duration = Duration::from_micros(200);

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn a_lone_query_a_full_batch_and_a_zero_setting_never_wait() {
        for since in [us(0), us(10), us(1_000_000)] {
            assert_eq!(after(0, 32, since, MOST), None);
            assert_eq!(after(1, 32, since, MOST), None);
            assert_eq!(after(32, 32, since, MOST), None);
            assert_eq!(after(5, 32, since, Duration::ZERO), None);
        }
    }

    #[test]
    fn under_heavy_load_the_whole_pause_is_taken() {
        // 3 datagrams in the 16 µs a full batch took to answer: 190,000 a second.
        assert_eq!(after(3, 32, us(16), MOST), Some(MOST));
        // 16 in 200 µs (80,000 a second): just enough for all of it.
        assert_eq!(after(16, 32, us(200), MOST), Some(MOST));
        // Several at once after no time at all.
        assert_eq!(after(2, 32, Duration::ZERO, MOST), Some(MOST));
    }

    #[test]
    fn a_lighter_load_pauses_in_proportion() {
        // 2 in 500 µs (4,000 a second): 0.8 expected in 200 µs, a twentieth of 16.
        assert_eq!(after(2, 32, us(500), MOST), Some(us(10)));
        // 2 in 100 µs (20,000 a second): 4 expected, a quarter.
        assert_eq!(after(2, 32, us(100), MOST), Some(us(50)));
        // After a quiet spell, two that came together do not wait: so short a pause would
        // cost more than it saves.
        assert_eq!(after(2, 32, us(1_100), MOST), None);
        assert_eq!(after(2, 32, Duration::from_secs(1), MOST), None);
    }

    #[test]
    fn the_pause_never_passes_the_setting_and_grows_with_the_rate() {
        let mut last = Duration::ZERO;
        for since in (0..=2_000).rev().step_by(50) {
            let p = after(4, 32, us(since), MOST).unwrap_or_default();
            assert!(p <= MOST && p >= last, "{since} µs: {p:?} after {last:?}");
            last = p;
        }
        assert_eq!(
            after(31, 32, Duration::ZERO, Duration::from_millis(10)),
            Some(Duration::from_millis(10))
        );
    }
}
