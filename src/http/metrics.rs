//! `/metrics`: the service's counters ([`crate::counters`]) in the Prometheus text format
//! (0.0.4), with `# HELP` and `# TYPE` for each family and each family's samples together
//! (the counters print per upstream and per list, which interleaves families). No token:
//! bind `http.listen` to a trusted address.
//!
//! A scrape reads the sharded counters once (a sum over 16 shards per counter) and takes
//! two short locks (upstreams, lists): nothing on the query path waits for it.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State as Extract;
use axum::http::header;
use axum::response::IntoResponse;

use super::State;

/// Each family: name, type, help. A family the counters print that is not here is
/// rendered `untyped`.
const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "sinkhole_queries_total",
        "counter",
        "Queries answered, by action.",
    ),
    (
        "sinkhole_queries_by_qtype_total",
        "counter",
        "Queries by query type.",
    ),
    (
        "sinkhole_queries_by_transport_total",
        "counter",
        "Queries by transport.",
    ),
    (
        "sinkhole_blocked_by_list_total",
        "counter",
        "Queries blocked by a rule of this list (names the lists block; CNAME, response-IP and builtin blocks are counted in sinkhole_queries_total only).",
    ),
    (
        "sinkhole_cache_hits_total",
        "counter",
        "Cache lookups that found an answer.",
    ),
    (
        "sinkhole_cache_misses_total",
        "counter",
        "Cache lookups that found nothing usable.",
    ),
    ("sinkhole_cache_entries", "gauge", "Answers in the cache."),
    (
        "sinkhole_cache_bytes",
        "gauge",
        "Bytes the cache holds (estimate).",
    ),
    (
        "sinkhole_upstream_queries_total",
        "counter",
        "Queries sent to an upstream, retries included.",
    ),
    (
        "sinkhole_upstream_errors_total",
        "counter",
        "Queries to an upstream that failed.",
    ),
    (
        "sinkhole_upstream_latency_seconds",
        "histogram",
        "Upstream answer latency.",
    ),
    (
        "sinkhole_querylog_written_total",
        "counter",
        "Query-log records written.",
    ),
    (
        "sinkhole_querylog_dropped_total",
        "counter",
        "Query-log records dropped (queue full).",
    ),
    (
        "sinkhole_querylog_postgres_written_total",
        "counter",
        "Query-log records PostgreSQL accepted ([log.postgres]).",
    ),
    (
        "sinkhole_querylog_postgres_dropped_total",
        "counter",
        "Query-log records dropped before PostgreSQL took them (its queue full while the database was away, or refused).",
    ),
    (
        "sinkhole_querylog_postgres_queued",
        "gauge",
        "Query-log records waiting for PostgreSQL.",
    ),
    (
        "sinkhole_list_entries",
        "gauge",
        "Rules read from a list at its last load.",
    ),
    (
        "sinkhole_list_loaded_timestamp_seconds",
        "gauge",
        "When a list was last loaded (Unix time).",
    ),
    (
        "sinkhole_last_reload_timestamp_seconds",
        "gauge",
        "When the last reload (SIGHUP, a changed list file, the API) ended (Unix time); 0 before the first.",
    ),
    (
        "sinkhole_last_reload_success",
        "gauge",
        "1 if the last reload succeeded (or none ran yet), 0 if it failed and the previous lists are still served.",
    ),
    (
        "sinkhole_ratelimit_bans_total",
        "counter",
        "Clients banned for going over limits.qps.",
    ),
    (
        "sinkhole_ratelimit_refused_total",
        "counter",
        "Queries refused or dropped during a ban.",
    ),
    (
        "sinkhole_ratelimit_evictions_total",
        "counter",
        "Clients evicted from the full rate-limit table.",
    ),
    (
        "sinkhole_rrl_dropped_total",
        "counter",
        "Answers dropped by response-rate limiting.",
    ),
    (
        "sinkhole_rrl_slipped_total",
        "counter",
        "Answers sent truncated by response-rate limiting.",
    ),
    (
        "sinkhole_rrl_evictions_total",
        "counter",
        "Entries evicted from the full RRL table.",
    ),
    (
        "sinkhole_blocking_paused",
        "gauge",
        "1 while blocking is paused, else 0.",
    ),
    (
        "sinkhole_blocking_pause_remaining_seconds",
        "gauge",
        "Seconds left of a pause of blocking.",
    ),
];

/// `GET /metrics`.
pub(super) async fn metrics(Extract(state): Extract<Arc<State>>) -> impl IntoResponse {
    let text = crate::service::snapshot(&state.pipeline, state.log.as_ref()).lines();
    let now = state.clock.now();
    let left = state.pipeline.pause().remaining(&now);
    let mut extra = String::new();
    let last = state.reloader.last_reload();
    let _ = writeln!(
        extra,
        "sinkhole_last_reload_timestamp_seconds {}",
        last.as_ref().map_or(0, |(at, _)| {
            at.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        })
    );
    let _ = writeln!(
        extra,
        "sinkhole_last_reload_success {}",
        u8::from(last.is_none_or(|(_, e)| e.is_none()))
    );
    let _ = writeln!(
        extra,
        "sinkhole_blocking_paused {}",
        u8::from(left.is_some())
    );
    let _ = writeln!(
        extra,
        "sinkhole_blocking_pause_remaining_seconds {}",
        left.map_or(0, |d| d.as_secs())
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        exposition(&format!("{text}{extra}")),
    )
}

/// The family a sample line belongs to: its metric name, without a histogram's `_bucket`,
/// `_sum` or `_count`.
fn family(line: &str) -> &str {
    let name = line.split(['{', ' ']).next().unwrap_or(line);
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && FAMILIES
                .iter()
                .any(|(n, t, _)| *n == base && *t == "histogram")
        {
            return base;
        }
    }
    name
}

/// Sample lines (`name{labels} value`), regrouped by family in order of first appearance,
/// each family after its `# HELP` and `# TYPE`.
pub(super) fn exposition(lines: &str) -> String {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let f = family(line);
        match groups.iter_mut().find(|(n, _)| *n == f) {
            Some((_, v)) => v.push(line),
            None => groups.push((f, vec![line])),
        }
    }
    let mut out = String::with_capacity(lines.len() * 2);
    for (f, samples) in groups {
        let (kind, help) = FAMILIES
            .iter()
            .find(|(n, _, _)| *n == f)
            .map_or(("untyped", "A sinkhole counter."), |(_, t, h)| (*t, *h));
        let _ = writeln!(out, "# HELP {f} {help}");
        let _ = writeln!(out, "# TYPE {f} {kind}");
        for s in samples {
            out.push_str(s);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_grouped_and_typed() {
        let text = "sinkhole_upstream_queries_total{upstream=\"a\"} 1\n\
                    sinkhole_upstream_latency_seconds_bucket{upstream=\"a\",le=\"+Inf\"} 1\n\
                    sinkhole_upstream_latency_seconds_sum{upstream=\"a\"} 0.5\n\
                    sinkhole_upstream_latency_seconds_count{upstream=\"a\"} 1\n\
                    sinkhole_upstream_queries_total{upstream=\"b\"} 2\n\
                    sinkhole_new_thing 3\n";
        let out = exposition(text);
        let want = "# HELP sinkhole_upstream_queries_total Queries sent to an upstream, retries included.\n\
                    # TYPE sinkhole_upstream_queries_total counter\n\
                    sinkhole_upstream_queries_total{upstream=\"a\"} 1\n\
                    sinkhole_upstream_queries_total{upstream=\"b\"} 2\n\
                    # HELP sinkhole_upstream_latency_seconds Upstream answer latency.\n\
                    # TYPE sinkhole_upstream_latency_seconds histogram\n\
                    sinkhole_upstream_latency_seconds_bucket{upstream=\"a\",le=\"+Inf\"} 1\n\
                    sinkhole_upstream_latency_seconds_sum{upstream=\"a\"} 0.5\n\
                    sinkhole_upstream_latency_seconds_count{upstream=\"a\"} 1\n\
                    # HELP sinkhole_new_thing A sinkhole counter.\n\
                    # TYPE sinkhole_new_thing untyped\n\
                    sinkhole_new_thing 3\n";
        assert_eq!(out, want);
    }

    #[test]
    fn every_family_the_counters_print_is_described() {
        use crate::counters::{Counters, Gauges};
        let c = Counters::new();
        c.upstream("192.0.2.1:53".parse().unwrap());
        c.list_slot("ads.txt");
        c.set_lists(vec![crate::counters::ListStat {
            name: "ads.txt".into(),
            entries: 1,
            loaded: std::time::SystemTime::now(),
        }]);
        let text = c.snapshot(Gauges::default()).lines();
        for line in text.lines() {
            let f = family(line);
            assert!(
                FAMILIES.iter().any(|(n, _, _)| *n == f),
                "{f} has no HELP/TYPE"
            );
        }
    }
}
