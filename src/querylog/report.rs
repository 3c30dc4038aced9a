//! `sinkhole log first|top|suggest|heartbeats`: reports over the whole log (rotated files
//! included), each one pass over the records.
//!
//! Sessions are read back from `session`/`seq`: a client's records belong to one session
//! until its `session` number changes or its `seq` starts again (a server restart counts
//! sessions from 1 again, and this still splits them); read from the database, as
//! [`Split`] says. Sessions are numbered per instance, so a session is keyed on instance
//! and client: a client that used two resolvers has sessions on each.
//!
//! Each report is an accumulator fed one record at a time ([`Openings`], [`Suggestions`],
//! [`Beats`]) from any [`Records`]: the files or the database.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use std::cell::RefCell;

use memchr::memmem::Finder;

use super::brief::Brief;
use super::filter::{peek_str, peek_ts};
use super::read::{Warnings, for_each};
use super::sessions::registrable;
use super::source::{Records, Split};
use crate::postgres::DbError;

pub use super::heartbeats::{Beats, Heartbeat, heartbeats, ts_ms};
use super::tail::Filter;

/// One session's opening, for `first`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    /// The instance that answered it (empty in the files).
    pub instance: String,
    /// The client.
    pub client: String,
    /// Its session number.
    pub session: u64,
    /// The earliest record's time.
    pub start: String,
    /// Queries in the session (all of them, not only those shown).
    pub queries: u64,
    /// The first distinct names, in the order they were asked.
    pub names: Vec<FirstName>,
}

/// A name of a session's opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstName {
    /// The query name.
    pub name: String,
    /// Its `new` mark.
    pub new: bool,
    /// The action of its first query.
    pub action: String,
    /// When it was first asked (`ts`).
    pub ts: String,
}

/// Tracks where each client's current session is, while reading.
#[derive(Default)]
struct SessionSplit {
    /// "instance client" → (session, last seq or time, index of its opening)
    current: HashMap<String, (u64, i64, usize), foldhash::fast::RandomState>,
    split: Split,
    key: String,
}

impl SessionSplit {
    fn new(split: Split) -> Self {
        Self {
            split,
            ..Self::default()
        }
    }

    /// The index of the session `e` belongs to (`next` when it opens one), and whether it
    /// is new.
    fn place(&mut self, e: &Brief<'_>, next: usize) -> (usize, bool) {
        // Log order: `seq` grows within a session. Grouped: the time, which is within the
        // session gap of the previous record's within a session.
        let split = self.split;
        let mark = match split {
            Split::LogOrder => i64::try_from(e.seq).unwrap_or(i64::MAX),
            Split::Grouped { .. } => ts_ms(e.ts).unwrap_or(0),
        };
        let same = |last: i64| match split {
            Split::LogOrder => mark > last,
            Split::Grouped { gap_ms } => mark.saturating_sub(last) < gap_ms,
        };
        self.key.clear();
        self.key.push_str(e.instance);
        self.key.push(' ');
        self.key.push_str(e.client);
        match self.current.get_mut(self.key.as_str()) {
            Some((s, last, idx)) if *s == e.session && same(*last) => {
                *last = (*last).max(mark);
                (*idx, false)
            }
            Some(v) => {
                *v = (e.session, mark, next);
                (next, true)
            }
            None => {
                self.current
                    .insert(self.key.clone(), (e.session, mark, next));
                (next, true)
            }
        }
    }
}

/// Each session's first `count` distinct names, per client, in the order they were asked.
/// With `only_new`, only names marked `new` are shown (sessions without any are left out).
///
/// The log holds records in the order they were answered, which is not the order they were
/// asked: an application starting asks many names at once, and a cached one is answered
/// (and logged) before a forwarded one asked earlier. So the names kept are the `count`
/// earliest by their `ts` (the arrival time), not the first `count` lines.
pub fn first<R: Records + ?Sized>(
    src: &R,
    filter: &Filter,
    count: usize,
    only_new: bool,
) -> Result<Vec<Opening>, DbError> {
    let mut o = Openings::new(count, only_new, usize::MAX).with_split(src.split());
    src.briefs(filter, &mut |e| o.add(e))?;
    Ok(o.finish())
}

/// [`first`] fed one record at a time, so that one pass over the log can serve several
/// reports (the dashboard's discovery view). Keeps at most `keep` sessions, the latest
/// (with `only_new`, the latest that have a new name: those without go first).
#[derive(Default)]
pub struct Openings {
    /// The kept sessions by their number in order of appearance.
    kept: std::collections::BTreeMap<usize, Opening>,
    /// Sessions seen.
    seen: usize,
    split: SessionSplit,
    count: usize,
    only_new: bool,
    keep: usize,
}

impl Openings {
    /// Shows `count` names per session (only `new` ones with `only_new`), keeps the latest
    /// `keep` sessions.
    pub fn new(count: usize, only_new: bool, keep: usize) -> Self {
        Self {
            count,
            only_new,
            keep: keep.max(1),
            ..Self::default()
        }
    }

    /// Reads sessions from records in the order `split` says.
    pub fn with_split(mut self, split: Split) -> Self {
        self.split = SessionSplit::new(split);
        self
    }

    /// Takes the next record (in log order).
    pub fn add(&mut self, e: &Brief<'_>) {
        let (idx, fresh) = self.split.place(e, self.seen);
        if fresh {
            self.seen += 1;
            if self.kept.len() >= self.keep {
                self.evict();
            }
            self.kept.insert(
                idx,
                Opening {
                    instance: e.instance.to_string(),
                    client: e.client.to_string(),
                    session: e.session,
                    start: e.ts.to_string(),
                    queries: 0,
                    names: Vec::new(),
                },
            );
        }
        // A session already let go (an older one) is not shown.
        let Some(o) = self.kept.get_mut(&idx) else {
            return;
        };
        o.queries += 1;
        if *e.ts < *o.start {
            o.start = e.ts.to_string();
        }
        if self.only_new && !e.new {
            return;
        }
        if let Some(n) = o.names.iter_mut().find(|n| *n.name == *e.qname) {
            // Logged before an earlier query for it (answered later): that one counts.
            if *e.ts < *n.ts {
                n.ts = e.ts.to_string();
                n.action = e.action.to_string();
            }
            return;
        }
        let name = || FirstName {
            name: e.qname.to_string(),
            new: e.new,
            action: e.action.to_string(),
            ts: e.ts.to_string(),
        };
        if o.names.len() < self.count {
            o.names.push(name());
        } else if let Some(latest) = o.names.iter_mut().max_by(|a, b| a.ts.cmp(&b.ts))
            && *e.ts < *latest.ts
        {
            // Asked before one kept, though logged after it.
            *latest = name();
        }
    }

    /// Lets the oldest session go (with `only_new`, the oldest without a new name first):
    /// the one that started first (the database hands sessions out grouped, not in time
    /// order), the first seen among equals.
    fn evict(&mut self) {
        let oldest = |empty_only: bool| {
            self.kept
                .iter()
                .filter(|(_, o)| !empty_only || o.names.is_empty())
                .min_by(|a, b| a.1.start.cmp(&b.1.start).then(a.0.cmp(b.0)))
                .map(|(k, _)| *k)
        };
        let k = if self.only_new { oldest(true) } else { None }.or_else(|| oldest(false));
        if let Some(k) = k {
            self.kept.remove(&k);
        }
    }

    /// The sessions, oldest first (by their start, then instance, client and number; with
    /// `only_new`, those that had a new name), each one's names in the order they were
    /// asked.
    pub fn finish(self) -> Vec<Opening> {
        let mut out: Vec<Opening> = self.kept.into_values().collect();
        for o in &mut out {
            o.names.sort_by(|a, b| a.ts.cmp(&b.ts));
        }
        out.sort_by(|a, b| {
            (&a.start, &a.instance, &a.client, a.session).cmp(&(
                &b.start,
                &b.instance,
                &b.client,
                b.session,
            ))
        });
        if self.only_new {
            out.retain(|o| !o.names.is_empty());
        }
        out
    }
}

/// Prints [`first`]'s result. When the sessions come from more than one instance, each
/// names its own (`session 3 on dns2`): session numbers are per instance.
pub fn print_first(out: &mut dyn Write, openings: &[Opening]) -> std::io::Result<()> {
    let several = openings
        .iter()
        .any(|o| openings.first().is_some_and(|f| f.instance != o.instance));
    for o in openings {
        let on = if several {
            format!(" on {}", o.instance)
        } else {
            String::new()
        };
        writeln!(
            out,
            "{}  session {}{on}  started {}  ({} queries)",
            o.client, o.session, o.start, o.queries
        )?;
        for (i, n) in o.names.iter().enumerate() {
            let (name, new) = (&n.name, if n.new { "  new" } else { "" });
            let action = if n.action == "blocked" {
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
    /// Client groups (`(default)` for the default policy).
    Group,
}

/// The key `top --by group` counts the default policy's queries under.
pub const DEFAULT_GROUP: &str = "(default)";

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
        By::Group => "\"group\":\"",
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
        // No group field at all: the default policy (no string can hold the prefix).
        if by == By::Group && field.find(line).is_none() {
            add(DEFAULT_GROUP);
            return true;
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
                By::Group => add(e.group.as_deref().unwrap_or(DEFAULT_GROUP)),
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
/// and that `is_blocked` says are not blocked yet; most frequent first. Also returns the
/// number of sessions read.
pub fn suggest<R: Records + ?Sized>(
    src: &R,
    filter: &Filter,
    is_blocked: &dyn Fn(&str) -> bool,
    limit: usize,
) -> Result<(Vec<Suggestion>, u64), DbError> {
    let mut s = Suggestions::new(src.split());
    src.openings(filter, OPENING, &mut |e| s.add(e))?;
    Ok(s.finish(is_blocked, limit))
}

/// [`suggest`] fed one record at a time (see [`Openings`]).
#[derive(Default)]
pub struct Suggestions {
    /// domain → (sessions, clients); a session counts once per domain.
    counts: HashMap<String, (u64, Vec<String>)>,
    split: SessionSplit,
    sessions: usize,
    /// (session, domain) pairs counted lately: a session's opening counts a domain once.
    counted: Vec<(usize, String)>,
}

impl Suggestions {
    /// Reads sessions from records in the order `split` says.
    pub fn new(split: Split) -> Self {
        Self {
            split: SessionSplit::new(split),
            ..Self::default()
        }
    }

    /// Takes the next record (in the order of [`Suggestions::new`]'s `split`).
    pub fn add(&mut self, e: &Brief<'_>) {
        let (idx, fresh) = self.split.place(e, self.sessions);
        if fresh {
            self.sessions += 1;
        }
        if e.seq > OPENING || e.action == "blocked" || e.qname.is_empty() {
            return;
        }
        let d = registrable(e.qname);
        // At most 3 entries per session: a linear look is cheapest.
        if self.counted.iter().any(|(i, n)| *i == idx && n == d) {
            return;
        }
        if self.counted.len() > 64 {
            self.counted.drain(..32);
        }
        self.counted.push((idx, d.to_string()));
        let c = self.counts.entry(d.to_string()).or_default();
        c.0 += 1;
        if !c.1.iter().any(|x| *x == *e.client) && c.1.len() < 1000 {
            c.1.push(e.client.to_string());
        }
    }

    /// The `limit` domains not blocked, most frequent first, and the sessions read.
    pub fn finish(self, is_blocked: &dyn Fn(&str) -> bool, limit: usize) -> (Vec<Suggestion>, u64) {
        let mut v: Vec<Suggestion> = self
            .counts
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
        (v, self.sessions as u64)
    }
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
        // Two records of group "kids", one of them with an escape in another field.
        text.push_str("{\"ts\":\"2026-11-21T10:00:01.532Z\",\"client\":\"192.0.2.4\",\"qname\":\"k.example\",\"qtype\":\"A\",\"action\":\"blocked\",\"group\":\"kids\",\"rcode\":\"NOERROR\",\"elapsed_us\":1,\"session\":1,\"seq\":1}\n");
        text.push_str("{\"ts\":\"2026-11-21T10:00:01.532Z\",\"client\":\"192.0.2.4\",\"qname\":\"k\\\"x\",\"qtype\":\"A\",\"action\":\"allowed\",\"group\":\"kids\",\"rcode\":\"NOERROR\",\"elapsed_us\":1,\"session\":1,\"seq\":2}\n");
        text.push_str("{\"client\":\"192.0.2.9\",\"qname\":\"odd.shape\",\"ts\":\"2026-11-21T10:00:01.532Z\",\"qtype\":\"A\",\"action\":\"blocked\",\"rcode\":\"NOERROR\",\"elapsed_us\":1,\"session\":1,\"seq\":1}\n");
        std::fs::write(&p, text).unwrap();
        let raw = Filter::default();
        // A name glob matching everything turns the raw-line count off.
        let parsed = Filter {
            name: Some(globset::Glob::new("*").unwrap().compile_matcher()),
            ..Filter::default()
        };
        for by in [By::Name, By::Domain, By::Client, By::Blocked, By::Group] {
            assert_eq!(top(&p, &raw, by, 10), top(&p, &parsed, by, 10), "{by:?}");
        }
        assert_eq!(
            top(&p, &raw, By::Group, 10),
            [(6, DEFAULT_GROUP.to_string()), (2, "kids".to_string())]
        );
        let evil = r#"q"name":"evil"#.to_string();
        assert_eq!(
            top(&p, &raw, By::Blocked, 10),
            [
                (2, "a.x.example".to_string()),
                (1, "k.example".into()),
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
