//! The rate limits' counters (`[limits]`): bans, refused queries, table evictions, and the
//! answers response-rate limiting dropped or sent truncated. Per-query events (a flood
//! refused during a ban) are counted on the caller's shard like every query counter.

use super::render::line;

/// What the rate limits count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitEvent {
    /// A client went over `limits.qps`/`burst`: a ban started.
    Ban,
    /// A query refused (or dropped) because its client is over its rate.
    Refused,
    /// A tracked client was evicted from the full table for a new one.
    Evicted,
    /// An answer not sent by response-rate limiting.
    RrlDropped,
    /// An answer sent truncated (TC) by response-rate limiting, instead of being dropped.
    RrlSlipped,
    /// An RRL entry was evicted from the full table for a new one.
    RrlEvicted,
}

impl LimitEvent {
    /// Every event, in rendering order.
    pub const ALL: [Self; 6] = [
        Self::Ban,
        Self::Refused,
        Self::Evicted,
        Self::RrlDropped,
        Self::RrlSlipped,
        Self::RrlEvicted,
    ];

    /// The counter's name.
    pub fn metric(self) -> &'static str {
        match self {
            Self::Ban => "sinkhole_ratelimit_bans_total",
            Self::Refused => "sinkhole_ratelimit_refused_total",
            Self::Evicted => "sinkhole_ratelimit_evictions_total",
            Self::RrlDropped => "sinkhole_rrl_dropped_total",
            Self::RrlSlipped => "sinkhole_rrl_slipped_total",
            Self::RrlEvicted => "sinkhole_rrl_evictions_total",
        }
    }
}

/// Appends one line per limit counter.
pub(super) fn render(o: &mut String, counts: &[u64; LimitEvent::ALL.len()]) {
    for (e, n) in LimitEvent::ALL.iter().zip(counts) {
        line(o, e.metric(), &[], n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{Counters, Gauges};

    #[test]
    fn events_are_counted_and_rendered_by_name() {
        let c = Counters::new();
        for e in [LimitEvent::Ban, LimitEvent::Refused, LimitEvent::Refused] {
            c.limit(e);
        }
        c.limit(LimitEvent::RrlSlipped);
        let s = c.snapshot(Gauges::default());
        assert_eq!(s.limit_events(LimitEvent::Refused), 2);
        let text = s.lines();
        for want in [
            "sinkhole_ratelimit_bans_total 1\n",
            "sinkhole_ratelimit_refused_total 2\n",
            "sinkhole_ratelimit_evictions_total 0\n",
            "sinkhole_rrl_dropped_total 0\n",
            "sinkhole_rrl_slipped_total 1\n",
            "sinkhole_rrl_evictions_total 0\n",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    }
}
