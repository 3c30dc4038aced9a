//! A [`Snapshot`] as text, one line per counter in the Prometheus exposition style
//! (`name{label="value"} number`), so that the same text can later be served as `/metrics`.
//! Action and transport lines are printed for every label value, zero or not, so the set of
//! lines is stable; query types only when non-zero, plus `other` always.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::{ACTIONS, LATENCY_BUCKETS_US, QTYPES, Snapshot, Transport};
use crate::querylog::action_name;

impl Snapshot {
    /// The snapshot as text, one `name{labels} value` line per counter, each ending in `\n`.
    pub fn lines(&self) -> String {
        let mut o = String::with_capacity(4096);
        for (a, n) in ACTIONS.iter().zip(self.by_action) {
            line(
                &mut o,
                "sinkhole_queries_total",
                &[("action", action_name(*a))],
                n,
            );
        }
        for ((_, name), n) in QTYPES.iter().zip(self.by_qtype) {
            if n > 0 {
                line(
                    &mut o,
                    "sinkhole_queries_by_qtype_total",
                    &[("qtype", name)],
                    n,
                );
            }
        }
        let other = self.by_qtype.get(QTYPES.len()).copied().unwrap_or(0);
        line(
            &mut o,
            "sinkhole_queries_by_qtype_total",
            &[("qtype", "other")],
            other,
        );
        for (t, n) in Transport::ALL.iter().zip(self.by_transport) {
            let labels = [("transport", t.name())];
            line(&mut o, "sinkhole_queries_by_transport_total", &labels, n);
        }
        for (list, n) in &self.blocked_by_list {
            let labels = [("list", list.as_str())];
            line(&mut o, "sinkhole_blocked_by_list_total", &labels, n);
        }
        line(&mut o, "sinkhole_cache_hits_total", &[], self.cache_hits);
        line(
            &mut o,
            "sinkhole_cache_misses_total",
            &[],
            self.cache_misses,
        );
        let g = &self.gauges;
        line(&mut o, "sinkhole_cache_entries", &[], g.cache_entries);
        line(&mut o, "sinkhole_cache_bytes", &[], g.cache_bytes);
        for u in &self.upstreams {
            let addr = u.addr.to_string();
            let up = [("upstream", addr.as_str())];
            line(&mut o, "sinkhole_upstream_queries_total", &up, u.queries);
            line(&mut o, "sinkhole_upstream_errors_total", &up, u.errors);
            let mut cumulative = 0;
            for (i, n) in u.buckets.iter().enumerate() {
                cumulative += n;
                let le = LATENCY_BUCKETS_US
                    .get(i)
                    .map_or("+Inf".into(), |&us| secs(us));
                let labels = [("upstream", addr.as_str()), ("le", &le)];
                line(
                    &mut o,
                    "sinkhole_upstream_latency_seconds_bucket",
                    &labels,
                    cumulative,
                );
            }
            let sum = secs(u.latency_us);
            line(&mut o, "sinkhole_upstream_latency_seconds_sum", &up, sum);
            line(
                &mut o,
                "sinkhole_upstream_latency_seconds_count",
                &up,
                u.answered,
            );
        }
        line(
            &mut o,
            "sinkhole_querylog_written_total",
            &[],
            g.querylog_written,
        );
        line(
            &mut o,
            "sinkhole_querylog_dropped_total",
            &[],
            g.querylog_dropped,
        );
        if let Some((written, dropped, queued)) = g.querylog_postgres {
            line(
                &mut o,
                "sinkhole_querylog_postgres_written_total",
                &[],
                written,
            );
            line(
                &mut o,
                "sinkhole_querylog_postgres_dropped_total",
                &[],
                dropped,
            );
            line(&mut o, "sinkhole_querylog_postgres_queued", &[], queued);
        }
        for l in &self.lists {
            let labels = [("list", l.name.as_str())];
            line(&mut o, "sinkhole_list_entries", &labels, l.entries);
            let loaded = l
                .loaded
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            line(
                &mut o,
                "sinkhole_list_loaded_timestamp_seconds",
                &labels,
                loaded,
            );
        }
        super::limits::render(&mut o, &self.limits);
        o
    }
}

/// Appends `name{k="v",…} n\n`.
pub(super) fn line(o: &mut String, name: &str, labels: &[(&str, &str)], n: impl std::fmt::Display) {
    o.push_str(name);
    if !labels.is_empty() {
        o.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            let _ = write!(o, "{k}=\"{}\"", escape(v));
        }
        o.push('}');
    }
    let _ = writeln!(o, " {n}");
}

/// A label value with `\`, `"` and newlines escaped, as the text format requires.
fn escape(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return v.into();
    }
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

/// Microseconds as exact decimal seconds, without trailing zeros: `12000` → `0.012`.
fn secs(us: u64) -> String {
    let (s, frac) = (us / 1_000_000, us % 1_000_000);
    if frac == 0 {
        return s.to_string();
    }
    let f = format!("{frac:06}");
    format!("{s}.{}", f.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::counters::{Counters, Gauges, ListStat};
    use crate::pipeline::Action;

    #[test]
    fn seconds_are_exact_decimals() {
        assert_eq!(secs(0), "0");
        assert_eq!(secs(12_000), "0.012");
        assert_eq!(secs(2_500_000), "2.5");
        assert_eq!(secs(3_000_001), "3.000001");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn known_snapshot_renders_exactly() {
        let c = Counters::new();
        for _ in 0..12 {
            c.query(Action::Blocked, 1, Transport::Udp);
        }
        for _ in 0..3 {
            c.query(Action::Allowed, 28, Transport::Udp);
        }
        c.query(Action::Cached, 65280, Transport::Tcp);
        c.query(Action::Rejected, 1, Transport::Quic);
        for _ in 0..4 {
            c.cache_hit();
        }
        for _ in 0..7 {
            c.cache_miss();
        }
        let up = c.upstream("127.0.0.1:5353".parse().unwrap());
        for ms in [1, 2, 3, 4, 100, 900, 6_000] {
            up.sent();
            up.answered(Duration::from_millis(ms));
        }
        up.sent();
        up.error();
        let slot = c.list_slot("ads \"x\".txt");
        c.list_slot("allow.txt");
        for _ in 0..5 {
            c.blocked_by(slot);
        }
        c.set_lists(vec![ListStat {
            name: "ads \"x\".txt".into(),
            entries: 1000,
            loaded: SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_900_000_750),
        }]);
        let s = c.snapshot(Gauges {
            cache_entries: 7,
            cache_bytes: 2048,
            querylog_written: 15,
            querylog_dropped: 2,
            querylog_postgres: None,
        });
        let expected = r#"sinkhole_queries_total{action="allowed"} 3
sinkhole_queries_total{action="cached"} 1
sinkhole_queries_total{action="blocked"} 12
sinkhole_queries_total{action="local"} 0
sinkhole_queries_total{action="failed"} 0
sinkhole_queries_total{action="refused"} 1
sinkhole_queries_total{action="stale"} 0
sinkhole_queries_total{action="failed_cached"} 0
sinkhole_queries_by_qtype_total{qtype="A"} 13
sinkhole_queries_by_qtype_total{qtype="AAAA"} 3
sinkhole_queries_by_qtype_total{qtype="other"} 1
sinkhole_queries_by_transport_total{transport="udp"} 15
sinkhole_queries_by_transport_total{transport="tcp"} 1
sinkhole_queries_by_transport_total{transport="tls"} 0
sinkhole_queries_by_transport_total{transport="https"} 0
sinkhole_queries_by_transport_total{transport="quic"} 1
sinkhole_blocked_by_list_total{list="ads \"x\".txt"} 5
sinkhole_blocked_by_list_total{list="allow.txt"} 0
sinkhole_cache_hits_total 4
sinkhole_cache_misses_total 7
sinkhole_cache_entries 7
sinkhole_cache_bytes 2048
sinkhole_upstream_queries_total{upstream="127.0.0.1:5353"} 8
sinkhole_upstream_errors_total{upstream="127.0.0.1:5353"} 1
sinkhole_upstream_latency_seconds_bucket{upstream="127.0.0.1:5353",le="0.001"} 1
sinkhole_upstream_latency_seconds_bucket{upstream="127.0.0.1:5353",le="0.005"} 4
sinkhole_upstream_latency_seconds_bucket{upstream="127.0.0.1:5353",le="0.01"} 4
sinkhole_upstream_latency_seconds_bucket{upstream="127.0.0.1:5353",le="0.025"} 4
sinkhole_upstream_latency_seconds_bucket{upstream="127.0.0.1:5353",le="0.05"} 4
sinkhole_upstream_latency_seconds_bucket{upstream="127.0.0.1:5353",le="0.1"} 5
sinkhole_upstream_latency_seconds_bucket{upstream="127.0.0.1:5353",le="0.25"} 5
sinkhole_upstream_latency_seconds_bucket{upstream="127.0.0.1:5353",le="0.5"} 5
sinkhole_upstream_latency_seconds_bucket{upstream="127.0.0.1:5353",le="1"} 6
sinkhole_upstream_latency_seconds_bucket{upstream="127.0.0.1:5353",le="2.5"} 6
sinkhole_upstream_latency_seconds_bucket{upstream="127.0.0.1:5353",le="5"} 6
sinkhole_upstream_latency_seconds_bucket{upstream="127.0.0.1:5353",le="+Inf"} 7
sinkhole_upstream_latency_seconds_sum{upstream="127.0.0.1:5353"} 7.01
sinkhole_upstream_latency_seconds_count{upstream="127.0.0.1:5353"} 7
sinkhole_querylog_written_total 15
sinkhole_querylog_dropped_total 2
sinkhole_list_entries{list="ads \"x\".txt"} 1000
sinkhole_list_loaded_timestamp_seconds{list="ads \"x\".txt"} 1764900000
sinkhole_ratelimit_bans_total 0
sinkhole_ratelimit_refused_total 0
sinkhole_ratelimit_evictions_total 0
sinkhole_rrl_dropped_total 0
sinkhole_rrl_slipped_total 0
sinkhole_rrl_evictions_total 0
"#;
        assert_eq!(s.lines(), expected);
    }
}
