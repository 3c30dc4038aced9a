//! `sinkhole log first|top|suggest|heartbeats`: reports over the whole log (rotated files
//! included), each one pass over the records.
//!
//! Sessions are read back from `session`/`seq`: a client's records belong to one session
//! until its `session` number changes or its `seq` starts again (a server restart counts
//! sessions from 1 again, and this still splits them).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use std::cell::RefCell;

use memchr::memmem::Finder;

use super::filter::{peek_str, peek_ts};
use super::read::{Warnings, for_each, for_each_match};
use super::sessions::registrable;
use super::tail::Filter;

/// One session's opening, for `first`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    /// The client.
    pub client: String,
    /// Its session number.
    pub session: u64,
    /// The first record's time.
    pub start: String,
    /// Queries in the session (all of them, not only those shown).
    pub queries: u64,
    /// The first distinct names, with their `new` mark and the action of their first query.
    pub names: Vec<(String, bool, String)>,
}

/// Tracks where each client's current session is, while reading.
#[derive(Default)]
struct SessionSplit {
    /// client → (session, last seq, index of its opening)
    current: HashMap<String, (u64, u64, usize)>,
}

impl SessionSplit {
    /// The index of the session `(client, session, seq)` belongs to, and whether it is new.
    fn place(&mut self, client: &str, session: u64, seq: u64, next: usize) -> (usize, bool) {
        match self.current.get_mut(client) {
            Some((s, last, idx)) if *s == session && seq > *last => {
                *last = seq;
                (*idx, false)
            }
            Some(v) => {
                *v = (session, seq, next);
                (next, true)
            }
            None => {
                self.current
                    .insert(client.to_string(), (session, seq, next));
                (next, true)
            }
        }
    }
}

/// Each session's first `count` distinct names, per client, in log order. With `only_new`,
/// only names marked `new` are shown (sessions without any are left out).
pub fn first(path: &Path, filter: &Filter, count: usize, only_new: bool) -> Vec<Opening> {
    let mut out: Vec<Opening> = Vec::new();
    let mut split = SessionSplit::default();
    for_each_match(path, filter, |e| {
        let (idx, fresh) = split.place(&e.client, e.session, e.seq, out.len());
        if fresh {
            out.push(Opening {
                client: e.client.to_string(),
                session: e.session,
                start: e.ts.to_string(),
                queries: 0,
                names: Vec::new(),
            });
        }
        let o = &mut out[idx];
        o.queries += 1;
        if o.names.len() < count
            && (!only_new || e.new)
            && !o.names.iter().any(|(n, _, _)| *n == *e.qname)
        {
            o.names
                .push((e.qname.to_string(), e.new, e.action.to_string()));
        }
    });
    if only_new {
        out.retain(|o| !o.names.is_empty());
    }
    out
}

/// Prints [`first`]'s result.
pub fn print_first(out: &mut dyn Write, openings: &[Opening]) -> std::io::Result<()> {
    for o in openings {
        writeln!(
            out,
            "{}  session {}  started {}  ({} queries)",
            o.client, o.session, o.start, o.queries
        )?;
        for (i, (name, new, action)) in o.names.iter().enumerate() {
            let new = if *new { "  new" } else { "" };
            let action = if action == "blocked" {
                "  (blocked)"
            } else {
                ""
            };
            writeln!(out, "  {:>3}  {name}{new}{action}", i + 1)?;
        }
    }
    Ok(())
}

/// What `top` counts (also the values of its `--by` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    /// Query names.
    Name,
    /// Registrable domains.
    Domain,
    /// Clients.
    Client,
    /// Blocked names.
    Blocked,
}

/// The `limit` most frequent keys, most frequent first (ties by name).
///
/// Most lines are counted from their raw text (the key field found by its `"qname":"`
/// prefix, which no escaped string can hold), without parsing; a line that shortcut cannot
/// read for sure (an escape in the key, another shape, a filter the prefilter does not
/// decide) is parsed.
pub fn top(path: &Path, filter: &Filter, by: By, limit: usize) -> Vec<(u64, String)> {
    let counts: RefCell<HashMap<String, u64>> = RefCell::new(HashMap::new());
    let add = |key: &str| {
        let mut counts = counts.borrow_mut();
        if let Some(c) = counts.get_mut(key) {
            *c += 1;
        } else {
            counts.insert(key.to_string(), 1);
        }
    };
    let field = match by {
        By::Client => "\"client\":\"",
        By::Name | By::Domain | By::Blocked => "\"qname\":\"",
    };
    let field = Finder::new(field.as_bytes()).into_owned();
    let blocked = Finder::new(b"\"action\":\"blocked\"");
    let exact = filter.prefilter_is_exact();
    let pre = filter.prefilter();
    // True when the line was counted (or left out) from its raw text.
    let fast = |line: &[u8]| -> bool {
        if !exact || peek_ts(line).is_none() {
            return false;
        }
        let Some(value) = peek_str(line, &field) else {
            return false;
        };
        match by {
            By::Blocked if blocked.find(line).is_none() => {}
            By::Domain => add(registrable(value)),
            _ => add(value),
        }
        true
    };
    let mut warnings = Warnings::default();
    for_each(
        path,
        &mut warnings,
        &|line| pre(line) && !fast(line),
        &mut |e| {
            if !filter.matches(&e) {
                return;
            }
            match by {
                By::Name => add(&e.qname),
                By::Domain => add(registrable(&e.qname)),
                By::Client => add(&e.client),
                By::Blocked if e.action == "blocked" => add(&e.qname),
                By::Blocked => {}
            }
        },
    );
    warnings.finish();
    sorted(counts.into_inner(), limit)
}

fn sorted(counts: HashMap<String, u64>, limit: usize) -> Vec<(u64, String)> {
    let mut v: Vec<(u64, String)> = counts.into_iter().map(|(k, c)| (c, k)).collect();
    v.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    v.truncate(limit);
    v
}

/// A registrable domain that opens sessions, for `suggest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    /// The registrable domain.
    pub domain: String,
    /// Sessions in whose first 3 queries it appears.
    pub sessions: u64,
    /// Clients it was seen from.
    pub clients: u64,
}

/// Queries of a session's opening that `suggest` looks at.
pub const OPENING: u64 = 3;

/// Registrable domains that most often appear in the first [`OPENING`] queries of a session
/// and that `is_blocked` says are not blocked yet; most frequent first.
pub fn suggest(
    path: &Path,
    filter: &Filter,
    is_blocked: &dyn Fn(&str) -> bool,
    limit: usize,
) -> (Vec<Suggestion>, u64) {
    // domain → (sessions, clients); a session counts once per domain.
    let mut counts: HashMap<String, (u64, Vec<String>)> = HashMap::new();
    let mut split = SessionSplit::default();
    let mut sessions = 0usize;
    let mut counted: Vec<(usize, String)> = Vec::new();
    for_each_match(path, filter, |e| {
        let (idx, fresh) = split.place(&e.client, e.session, e.seq, sessions);
        if fresh {
            sessions += 1;
        }
        if e.seq > OPENING || e.action == "blocked" || e.qname.is_empty() {
            return;
        }
        let d = registrable(&e.qname);
        // At most 3 entries per session: a linear look is cheapest.
        if counted.iter().any(|(i, n)| *i == idx && n == d) {
            return;
        }
        if counted.len() > 64 {
            counted.drain(..32);
        }
        counted.push((idx, d.to_string()));
        let c = counts.entry(d.to_string()).or_default();
        c.0 += 1;
        if !c.1.iter().any(|x| *x == *e.client) && c.1.len() < 1000 {
            c.1.push(e.client.to_string());
        }
    });
    let mut v: Vec<Suggestion> = counts
        .into_iter()
        .filter(|(d, _)| !is_blocked(d))
        .map(|(domain, (s, c))| Suggestion {
            domain,
            sessions: s,
            clients: c.len() as u64,
        })
        .collect();
    v.sort_unstable_by(|a, b| {
        b.sessions
            .cmp(&a.sessions)
            .then_with(|| a.domain.cmp(&b.domain))
    });
    v.truncate(limit);
    (v, sessions as u64)
}

/// A name asked at a steady interval, for `heartbeats`.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    /// The client.
    pub client: String,
    /// The name.
    pub qname: String,
    /// The interval, seconds (least-squares fit over the beats).
    pub period_s: f64,
    /// How far beats fall from the fitted schedule on average, seconds.
    pub jitter_s: f64,
    /// Times asked (queries within 2 s of each other count once: A and AAAA together).
    pub times: usize,
}

/// Parses the `ts` field into Unix milliseconds.
pub fn ts_ms(ts: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Names a client asks at a steady interval: at least `min_times` times, the median
/// interval at least 10 s, and the intervals within 10% (at least 2 s) of it on average.
pub fn heartbeats(path: &Path, filter: &Filter, min_times: usize) -> Vec<Heartbeat> {
    // "client name" → times; one key string per pair, looked up without allocating.
    let mut seen: HashMap<String, Vec<i64>> = HashMap::new();
    let mut key = String::new();
    for_each_match(path, filter, |e| {
        let Some(t) = ts_ms(&e.ts) else { return };
        key.clear();
        key.push_str(&e.client);
        key.push(' ');
        key.push_str(&e.qname);
        let times = match seen.get_mut(key.as_str()) {
            Some(v) => v,
            None => seen.entry(key.clone()).or_default(),
        };
        if times.last().is_none_or(|&l| t - l >= 2_000) {
            times.push(t);
        }
    });
    let mut out = Vec::new();
    for (key, mut times) in seen {
        let (client, qname) = key.split_once(' ').unwrap_or((&key, ""));
        let (client, qname) = (client.to_string(), qname.to_string());
        if times.len() < min_times.max(3) {
            continue;
        }
        times.sort_unstable();
        let mut iv: Vec<i64> = times.windows(2).map(|p| p[1] - p[0]).collect();
        iv.sort_unstable();
        let median = iv[iv.len() / 2] as f64;
        if median < 10_000.0 {
            continue;
        }
        let jitter = iv.iter().map(|&x| (x as f64 - median).abs()).sum::<f64>() / iv.len() as f64;
        if jitter > (median * 0.1).max(2_000.0) {
            continue;
        }
        // Period and jitter from a least-squares line through (beat number, time): the
        // jitter is how far beats fall from that line on average.
        let n = times.len() as f64;
        let t0 = times[0];
        let ys: Vec<f64> = times.iter().map(|&t| (t - t0) as f64).collect();
        let mean_k = (n - 1.0) / 2.0;
        let mean_y = ys.iter().sum::<f64>() / n;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (k, y) in ys.iter().enumerate() {
            let dk = k as f64 - mean_k;
            sxy += dk * (y - mean_y);
            sxx += dk * dk;
        }
        let period = if sxx > 0.0 { sxy / sxx } else { median };
        let resid = ys
            .iter()
            .enumerate()
            .map(|(k, y)| (y - (mean_y + period * (k as f64 - mean_k))).abs())
            .sum::<f64>()
            / n;
        out.push(Heartbeat {
            client,
            qname,
            period_s: period / 1000.0,
            jitter_s: resid / 1000.0,
            times: times.len(),
        });
    }
    out.sort_by(|a, b| {
        b.times
            .cmp(&a.times)
            .then_with(|| a.client.cmp(&b.client))
            .then_with(|| a.qname.cmp(&b.qname))
    });
    out
}

/// `--since`: RFC 3339 (`2026-11-21T10:00:00Z`, any offset), a date (`2026-11-21`, UTC
/// midnight), or an age (`90s`, `15m`, `2h`, `7d`) before `now`. Returns the `ts` text to
/// compare with.
pub fn parse_since(s: &str, now: std::time::SystemTime) -> Result<String, String> {
    use time::format_description::well_known::Rfc3339;
    let s = s.trim();
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(super::writer::format_ts(t.into()));
    }
    if let Ok(t) = time::OffsetDateTime::parse(&format!("{s}T00:00:00Z"), &Rfc3339) {
        return Ok(super::writer::format_ts(t.into()));
    }
    match crate::config::parse_secs(s) {
        Some(n) => {
            let ago = std::time::Duration::from_secs(n);
            let t = now.checked_sub(ago).unwrap_or(std::time::UNIX_EPOCH);
            Ok(super::writer::format_ts(t))
        }
        _ => Err(format!(
            "{s:?}: write a time such as 2026-11-21T10:00:00Z, 2026-11-21, or an age such as 15m, 2h, 7d"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn since_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_since("2023-11-14T23:13:20+01:00", now).unwrap(),
            "2023-11-14T22:13:20.000Z"
        );
        assert_eq!(
            parse_since("2023-11-14", now).unwrap(),
            "2023-11-14T00:00:00.000Z"
        );
        assert_eq!(parse_since("2h", now).unwrap(), "2023-11-14T20:13:20.000Z");
        assert!(parse_since("yesterday", now).is_err());
    }

    #[test]
    fn top_counts_the_same_from_raw_lines_and_parsed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.jsonl");
        let line = |n: &str, c: &str, a: &str| {
            format!(
                "{{\"ts\":\"2026-11-21T10:00:01.532Z\",\"client\":\"{c}\",\"qname\":\"{n}\",\"qtype\":\"A\",\"action\":\"{a}\",\"rcode\":\"NOERROR\",\"elapsed_us\":1,\"session\":1,\"seq\":1}}\n"
            )
        };
        let mut text = String::new();
        for (n, c, a) in [
            ("a.x.example", "192.0.2.1", "blocked"),
            ("b.x.example", "192.0.2.2", "allowed"),
            ("a.x.example", "192.0.2.1", "blocked"),
            (r#"q\"name\":\"evil"#, "192.0.2.1", "blocked"),
            (r#"q\"name\":\"evil"#, "192.0.2.3", "allowed"),
        ] {
            text.push_str(&line(n, c, a));
        }
        text.push_str("{\"client\":\"192.0.2.9\",\"qname\":\"odd.shape\",\"ts\":\"2026-11-21T10:00:01.532Z\",\"qtype\":\"A\",\"action\":\"blocked\",\"rcode\":\"NOERROR\",\"elapsed_us\":1,\"session\":1,\"seq\":1}\n");
        std::fs::write(&p, text).unwrap();
        let raw = Filter::default();
        // A name glob matching everything turns the raw-line count off.
        let parsed = Filter {
            name: Some(globset::Glob::new("*").unwrap().compile_matcher()),
            ..Filter::default()
        };
        for by in [By::Name, By::Domain, By::Client, By::Blocked] {
            assert_eq!(top(&p, &raw, by, 10), top(&p, &parsed, by, 10), "{by:?}");
        }
        let evil = r#"q"name":"evil"#.to_string();
        assert_eq!(
            top(&p, &raw, By::Blocked, 10),
            [
                (2, "a.x.example".to_string()),
                (1, "odd.shape".into()),
                (1, evil)
            ]
        );
    }

    #[test]
    fn ts_round_trip() {
        assert_eq!(ts_ms("2023-11-14T22:13:20.123Z"), Some(1_700_000_000_123));
        assert_eq!(
            ts_ms("2023-11-14T23:13:20.123+01:00"),
            Some(1_700_000_000_123)
        );
        assert_eq!(ts_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(ts_ms("nonsense"), None);
    }
}
