//! What one table slot counts: a client's token bucket and ban ([`take`]), and the bucket
//! of one (client network, answer) pair for response-rate limiting, with its slip counter
//! ([`respond`]). Pure functions of a slot and the time in milliseconds, so they are tested
//! without a clock.
//!
//! Tokens are kept in thousandths, so that a rate of `r` per second refills exactly `r`
//! thousandths per millisecond, with no floating point.

use super::table::Slot;

/// One token, in thousandths.
const TOKEN: u64 = 1000;
/// `Slot::mark` bit: the client went over its rate and has not had a query through since.
const OVER: u32 = 1;

/// What a client's query gets from its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Within its rate.
    Pass,
    /// Within its rate, the first time since a ban (or a spell over the rate) ended.
    PassAgain,
    /// Over its rate: this query starts a ban (or, without bans, a spell over the rate).
    Started,
    /// Refused: banned, or still over its rate.
    Refused,
}

/// A bucket of `rate` per second holding at most `size` tokens, as thousandths.
fn full(size: u32) -> u64 {
    u64::from(size) * TOKEN
}

/// The slot's tokens refilled up to `now` (at most `cap`).
fn refilled(s: &Slot, now: u64, rate: u32, cap: u64) -> u64 {
    let gained = now.saturating_sub(s.stamp).saturating_mul(u64::from(rate));
    u64::from(s.tokens).saturating_add(gained).min(cap)
}

/// Stores `t` thousandths (at most `u32::MAX`; buckets are at most 10^9).
fn store(s: &mut Slot, t: u64) {
    s.tokens = u32::try_from(t).unwrap_or(u32::MAX);
}

/// A client's query at `now` (ms), against a bucket of `burst` refilled at `qps` per
/// second. Going over starts a ban of `ban_ms` (its end is kept as the slot's stamp, so
/// the table keeps the entry over idle ones, and the client comes back to a full bucket);
/// with `ban_ms` 0 only the queries over the rate are refused.
pub fn take(s: &mut Slot, fresh: bool, now: u64, qps: u32, burst: u32, ban_ms: u64) -> Take {
    let cap = full(burst);
    if fresh {
        s.stamp = now;
        store(s, cap);
        s.mark = 0;
    }
    if s.stamp > now {
        return Take::Refused;
    }
    let tokens = refilled(s, now, qps, cap);
    s.stamp = now;
    if tokens >= TOKEN {
        store(s, tokens - TOKEN);
        if s.mark & OVER != 0 {
            s.mark &= !OVER;
            return Take::PassAgain;
        }
        return Take::Pass;
    }
    store(s, tokens);
    if ban_ms > 0 {
        s.stamp = now.saturating_add(ban_ms);
        store(s, cap);
        s.mark |= OVER;
        return Take::Started;
    }
    if s.mark & OVER != 0 {
        return Take::Refused;
    }
    s.mark |= OVER;
    Take::Started
}

/// What response-rate limiting does with one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rrl {
    /// Send it.
    Send,
    /// Send nothing.
    Drop,
    /// Send it truncated (TC, no records): a real client retries over TCP.
    Slip,
}

/// One answer at `now` (ms) for a (client network, answer) pair allowed `rps` per second
/// (one second's worth at once). Of the answers over it, every `slip`-th is sent truncated
/// and the others dropped (`slip` 0: all dropped), as BIND, Knot and NSD do.
pub fn respond(s: &mut Slot, fresh: bool, now: u64, rps: u32, slip: u32) -> Rrl {
    let cap = full(rps);
    if fresh {
        s.stamp = now;
        store(s, cap);
        s.mark = 0;
    }
    let tokens = refilled(s, now, rps, cap);
    s.stamp = s.stamp.max(now);
    if tokens >= TOKEN {
        store(s, tokens - TOKEN);
        return Rrl::Send;
    }
    store(s, tokens);
    s.mark = s.mark.wrapping_add(1);
    if slip > 0 && s.mark.is_multiple_of(slip) {
        Rrl::Slip
    } else {
        Rrl::Drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh_take(now: u64, qps: u32, burst: u32, ban: u64) -> (Slot, Take) {
        let mut s = Slot::default();
        let t = take(&mut s, true, now, qps, burst, ban);
        (s, t)
    }

    #[test]
    fn the_bucket_allows_its_burst_then_its_rate() {
        // 2 per second, 5 at once.
        let (mut s, t) = fresh_take(1, 2, 5, 0);
        assert_eq!(t, Take::Pass);
        for _ in 0..4 {
            assert_eq!(take(&mut s, false, 1, 2, 5, 0), Take::Pass);
        }
        assert_eq!(take(&mut s, false, 1, 2, 5, 0), Take::Started, "the 6th");
        assert_eq!(
            take(&mut s, false, 2, 2, 5, 0),
            Take::Refused,
            "once per spell"
        );
        // Half a second later one token is back (2/s).
        assert_eq!(take(&mut s, false, 501, 2, 5, 0), Take::PassAgain);
        assert_eq!(take(&mut s, false, 502, 2, 5, 0), Take::Started);
        // A long pause refills the bucket to its size, not beyond.
        let mut passed = 0;
        while take(&mut s, false, 1_000_000, 2, 5, 0) != Take::Started {
            passed += 1;
        }
        assert_eq!(passed, 5);
    }

    #[test]
    fn a_ban_lasts_its_time_on_the_injected_clock_and_ends_with_a_full_bucket() {
        let ban = 60_000;
        let (mut s, _) = fresh_take(10, 1, 3, ban);
        for _ in 0..2 {
            assert_eq!(take(&mut s, false, 10, 1, 3, ban), Take::Pass);
        }
        assert_eq!(take(&mut s, false, 10, 1, 3, ban), Take::Started);
        assert_eq!(s.stamp, 60_010, "the ban's end is the slot's stamp");
        for now in [11, 30_000, 60_009] {
            assert_eq!(take(&mut s, false, now, 1, 3, ban), Take::Refused, "{now}");
        }
        assert_eq!(take(&mut s, false, 60_010, 1, 3, ban), Take::PassAgain);
        for _ in 0..2 {
            assert_eq!(take(&mut s, false, 60_010, 1, 3, ban), Take::Pass);
        }
        assert_eq!(take(&mut s, false, 60_010, 1, 3, ban), Take::Started);
    }

    #[test]
    fn rrl_sends_its_rate_then_slips_every_nth() {
        let mut s = Slot::default();
        let mut got = vec![respond(&mut s, true, 1, 3, 2)];
        for _ in 0..9 {
            got.push(respond(&mut s, false, 1, 3, 2));
        }
        use Rrl::{Drop, Send, Slip};
        assert_eq!(
            got,
            [Send, Send, Send, Drop, Slip, Drop, Slip, Drop, Slip, Drop]
        );
        // A second later the rate is available again.
        assert_eq!(respond(&mut s, false, 1_001, 3, 2), Send);
        // slip 1: every limited answer truncated; slip 0: none.
        let mut s = Slot::default();
        respond(&mut s, true, 1, 1, 1);
        assert_eq!(respond(&mut s, false, 1, 1, 1), Slip);
        let mut s = Slot::default();
        respond(&mut s, true, 1, 1, 0);
        assert!((0..10).all(|_| respond(&mut s, false, 1, 1, 0) == Drop));
    }
}
