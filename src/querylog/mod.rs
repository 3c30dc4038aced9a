//! The query log: one JSON object per answered query, appended to `log.path` (JSON Lines),
//! and the `sinkhole log` commands that read it back.
//!
//! The query path only builds a compact [`Record`] (the question, the [`Outcome`], the
//! times) and hands it to [`QueryLog::record`], which is a `try_send` on a bounded queue:
//! it never waits, and a full queue drops the record and counts it. The writer task
//! ([`writer`]) does everything else: client sessions and `new` marks ([`sessions`]),
//! rendering the answer, JSON, rotation, flushing. A reload's new `[log]` settings travel
//! on the same queue ([`QueryLog::reconfigure`]), so the writer switches between two
//! records and none is lost. The file format is [`Entry`];
//! [`read`] reads the current and rotated files back, [`tail`], [`report`] and
//! [`heartbeats`] are the commands, [`page`] reads them newest first for the HTTP API, and
//! [`discovery`] runs the commands' reports for one client in one pass (the dashboard).

pub mod brief;
pub mod discovery;
pub mod filter;
pub mod heartbeats;
pub mod page;
pub mod read;
pub mod report;
pub mod sessions;
pub mod source;
pub mod tail;
pub mod writer;

use std::borrow::Cow;
use std::fs::File;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use serde::{Deserialize, Serialize};

use crate::config::LogConfig;
use crate::handler::Asked;
use crate::pipeline::{Action, Outcome, Transport};

/// Messages (records, or UDP batches of records) waiting for the writer at most; past it
/// they are dropped and counted.
pub const QUEUE: usize = 16_384;

/// Emptied batch vectors kept for the query path to fill again, at most.
const SPARES: usize = 64;
/// A batch vector with more room than this is not kept (one large batch, seldom again).
const SPARE_CAPACITY: usize = 1024;

/// Emptied batch vectors, returned by the writer: a UDP thread fills one per receive
/// batch, and allocating it anew each time (and freeing it on the other thread) costs
/// more than the lock taken once per batch.
pub type Spares = Arc<std::sync::Mutex<Vec<Vec<Record>>>>;

/// How long [`QueryLog::reconfigure`] waits for room in the queue and for the writer to
/// switch.
pub const RECONFIGURE_WAIT: Duration = Duration::from_secs(5);

/// What the query path hands to the log: small, no formatting done yet.
#[derive(Debug)]
pub struct Record {
    /// When the query arrived.
    pub ts: SystemTime,
    /// The client's address.
    pub client: IpAddr,
    /// What carried the query (`proto` in the file).
    pub transport: Transport,
    /// The question.
    pub asked: Asked,
    /// What was answered.
    pub outcome: Outcome,
    /// From arrival to the answer being sent.
    pub elapsed: Duration,
}

/// One line of the log file. Field names are the contract of the query-log issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry<'a> {
    /// Arrival time, RFC 3339 UTC with milliseconds (`2026-11-21T10:00:01.532Z`).
    #[serde(borrow)]
    pub ts: Cow<'a, str>,
    /// Client address (its network when `log.anonymize_clients` is on).
    #[serde(borrow)]
    pub client: Cow<'a, str>,
    /// What carried the query: `udp`, `tcp`, `tls`, `https` or `quic`; absent in
    /// files written before it was recorded.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<Cow<'a, str>>,
    /// Query name, lower case, no trailing dot.
    #[serde(borrow)]
    pub qname: Cow<'a, str>,
    /// Query type mnemonic (`A`, `AAAA`, `TYPE65280`).
    #[serde(borrow)]
    pub qtype: Cow<'a, str>,
    /// `allowed`, `cached`, `blocked`, `local`, `refused`, `failed`, `stale` (an expired
    /// answer served because no upstream answered) or `failed_cached` (SERVFAIL from the
    /// failure cache).
    #[serde(borrow)]
    pub action: Cow<'a, str>,
    /// The deciding rule (block rule, or the allow rule that let a listed name through).
    #[serde(borrow, default)]
    pub rule: Option<Cow<'a, str>>,
    /// Where the rule is: `file:line`, or `builtin`.
    #[serde(borrow, default)]
    pub list: Option<Cow<'a, str>>,
    /// The client group whose policy decided; absent for the default policy.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Cow<'a, str>>,
    /// The name of the answer's CNAME chain that `rule` blocked (the query name itself
    /// was not blocked); absent otherwise.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub cname: Option<Cow<'a, str>>,
    /// Response code mnemonic.
    #[serde(borrow)]
    pub rcode: Cow<'a, str>,
    /// What DNSSEC validation found: `secure`, `insecure`, `bogus` or `indeterminate`;
    /// absent when the answer was not validated (validation off, a local answer, CD).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub dnssec: Option<Cow<'a, str>>,
    /// Addresses and targets answered: at most 16, each at most 256 bytes (cut ones end
    /// in `…`), then `…+N more` for the rest.
    #[serde(default)]
    pub answers: Vec<Cow<'a, str>>,
    /// True when the client was sent a truncated reply (TC, no answers); absent otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tc: bool,
    /// The upstream that answered (`ip:port`), for `allowed`.
    #[serde(borrow, default)]
    pub upstream: Option<Cow<'a, str>>,
    /// Microseconds from arrival to the answer being sent.
    pub elapsed_us: u64,
    /// The client's session number (per client, from 1).
    pub session: u64,
    /// Position of the query within its session (from 1).
    pub seq: u64,
    /// First time this client asked for this registrable domain (as far as the server
    /// remembers).
    #[serde(default)]
    pub new: bool,
    /// The instance that answered: set on records read from PostgreSQL when more than one
    /// instance writes there; never written to the files.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<Cow<'a, str>>,
}

/// Every value of the `action` field, in the order reports list them (what `--action` and
/// the API's `action=` accept).
pub const ACTION_NAMES: [&str; 8] = [
    "allowed",
    "cached",
    "blocked",
    "local",
    "refused",
    "failed",
    "stale",
    "failed_cached",
];

/// The `action` field for an outcome. Rejected queries (FORMERR, NOTIMP, BADVERS) are
/// logged as `refused`: the server refused to serve them, and `rcode` says why.
pub fn action_name(a: Action) -> &'static str {
    match a {
        Action::Allowed => "allowed",
        Action::Cached => "cached",
        Action::Blocked => "blocked",
        Action::Local => "local",
        Action::Failed => "failed",
        Action::Rejected => "refused",
        Action::Stale => "stale",
        Action::FailedCached => "failed_cached",
    }
}

/// The mnemonic of a record type (RFC 3597 `TYPEn` for unknown ones).
pub fn qtype_name(t: u16) -> Cow<'static, str> {
    use hickory_proto::rr::RecordType;
    match RecordType::from(t) {
        RecordType::Unknown(n) => Cow::Owned(format!("TYPE{n}")),
        rt => Cow::Borrowed(<&'static str>::from(rt)),
    }
}

/// Counters shared by the query path and the writer.
#[derive(Debug, Default)]
pub struct Stats {
    /// Records dropped: queue full, or lost to a write error.
    pub dropped: AtomicU64,
    /// Records written to the file.
    pub written: AtomicU64,
}

/// What travels on the queue to the writer.
#[derive(Debug)]
pub enum Msg {
    /// A query to log.
    Record(Box<Record>),
    /// The queries of one UDP receive batch, in order.
    Batch(Vec<Record>),
    /// Write what is queued, flush, and stop.
    Stop,
    /// Switch to new settings and an already opened file (see [`QueryLog::reconfigure`]).
    Reconfigure(Box<Reconfigure>),
}

/// New settings for the writer, with their file already opened by the caller (so that a
/// path that cannot be used is an error for the caller, not a drop spell in the writer).
#[derive(Debug)]
pub struct Reconfigure {
    cfg: LogConfig,
    file: Option<File>,
    /// Told when the writer has switched.
    done: std::sync::mpsc::Sender<()>,
}

/// The query path's handle on the log: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct QueryLog {
    tx: SyncSender<Msg>,
    stats: Arc<Stats>,
    last_warn: Arc<std::sync::Mutex<Option<Instant>>>,
    /// `[log.postgres]`'s counters.
    pg: Option<Arc<crate::postgres::writer::PgStats>>,
    spares: Spares,
}

impl QueryLog {
    /// Hands a record to the writer; drops and counts it when the queue is full.
    pub fn record(&self, r: Record) {
        if self.tx.try_send(Msg::Record(Box::new(r))).is_err() {
            let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            self.warn_dropped(n);
        }
    }

    /// Hands a batch of records to the writer in one queue operation; drops and counts
    /// them all when the queue is full.
    pub fn record_batch(&self, rs: Vec<Record>) {
        let n = rs.len() as u64;
        if n > 0 && self.tx.try_send(Msg::Batch(rs)).is_err() {
            let total = self.stats.dropped.fetch_add(n, Ordering::Relaxed) + n;
            self.warn_dropped(total);
        }
    }

    /// An empty vector for the next batch's records: one the writer returned, or a new one
    /// with room for `n`.
    pub fn batch_vec(&self, n: usize) -> Vec<Record> {
        self.spares
            .try_lock()
            .ok()
            .and_then(|mut s| s.pop())
            .unwrap_or_else(|| Vec::with_capacity(n))
    }

    /// A rate-limited warning (at most one per 10 s) when records are dropped.
    fn warn_dropped(&self, total: u64) {
        let Ok(mut last) = self.last_warn.try_lock() else {
            return;
        };
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(
                dropped = total,
                "query log: queue full, records dropped (the disk cannot keep up); queries are still answered"
            );
        }
    }

    /// Applies a reload's `[log]`: path, rotation (`max_bytes`, `keep`), `anonymize_clients`
    /// and `session_gap`, without losing a record.
    ///
    /// The new file is opened (its folder created) here, before anything changes: when that
    /// fails, the error is returned and the writer keeps its file and settings. Otherwise the
    /// settings are queued behind the records already waiting; the writer writes and flushes
    /// those to the old file, then switches, so every record after the switch goes to the new
    /// one. Client sessions and `new` marks are kept. The same path is reopened too (after an
    /// outside `mv`, the log follows the name again).
    ///
    /// Blocking (opens a file, waits for the writer for at most [`RECONFIGURE_WAIT`]): call it
    /// off the async workers, as a reload does. Errors: the file cannot be opened; the writer
    /// has stopped; or the queue stayed full until the deadline (nothing changes then).
    pub fn reconfigure(&self, cfg: LogConfig) -> std::io::Result<()> {
        use std::io::{Error, ErrorKind};
        let file = match &cfg.path {
            Some(path) => Some(writer::open_append(path).map(|(f, _)| f).map_err(|e| {
                Error::new(
                    e.kind(),
                    format!("{}: cannot open for the query log: {e}", path.display()),
                )
            })?),
            None => None,
        };
        let path = cfg.path.clone().unwrap_or_default();
        let (done_tx, done) = std::sync::mpsc::channel();
        let deadline = Instant::now() + RECONFIGURE_WAIT;
        let mut msg = Msg::Reconfigure(Box::new(Reconfigure {
            cfg,
            file,
            done: done_tx,
        }));
        // `send` would wait forever on a writer stuck on its disk; a reload must end.
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TrySendError::Full(_)) => {
                    return Err(Error::new(
                        ErrorKind::TimedOut,
                        "query log: queue full (the writer is not keeping up); settings unchanged",
                    ));
                }
                Err(TrySendError::Disconnected(_)) => {
                    return Err(Error::other("query log: the writer has stopped"));
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match done.recv_timeout(left) {
            Ok(()) => Ok(()),
            // Queued behind records the writer is still writing: the switch happens when it
            // gets there, in order, so this is no failure.
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!(path = %path.display(), "query log: the writer is behind; the new settings apply when it catches up");
                Ok(())
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err(Error::other("query log: the writer has stopped"))
            }
        }
    }

    /// Records dropped so far.
    pub fn dropped(&self) -> u64 {
        self.stats.dropped.load(Ordering::Relaxed)
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.stats.written.load(Ordering::Relaxed)
    }

    /// `[log.postgres]`: records the database accepted, dropped, and waiting now.
    pub fn postgres(&self) -> Option<(u64, u64, u64)> {
        self.pg.as_ref().map(|p| {
            (
                p.written.load(Ordering::Relaxed),
                p.dropped.load(Ordering::Relaxed),
                p.queued.load(Ordering::Relaxed),
            )
        })
    }
}

/// The writer thread and how to stop it.
#[derive(Debug)]
pub struct LogTask {
    tx: SyncSender<Msg>,
    done: Receiver<()>,
    /// `[log.postgres]`'s database thread.
    pg: Option<crate::postgres::writer::PgTask>,
}

impl LogTask {
    /// Stops the writer after it has written what is queued and flushed; waits at most
    /// `timeout`. Call after the listeners have stopped.
    pub fn finish(self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            match self.tx.try_send(Msg::Stop) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => break,
                Err(TrySendError::Full(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TrySendError::Full(_)) => break,
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if self.done.recv_timeout(left).is_err() {
            tracing::warn!("query log: writer did not finish in time; some records may be lost");
        }
        if let Some(pg) = self.pg {
            pg.finish(deadline.saturating_duration_since(Instant::now()));
        }
    }

    /// The PostgreSQL writer's counters, when `[log.postgres]` is on.
    pub fn postgres(&self) -> Option<Arc<crate::postgres::writer::PgStats>> {
        self.pg.as_ref().map(crate::postgres::writer::PgTask::stats)
    }
}

/// Starts the writer thread; returns the query path's handle and the thread's handle.
pub fn start(cfg: &LogConfig) -> std::io::Result<(QueryLog, LogTask)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    let (done_tx, done) = std::sync::mpsc::channel();
    let stats = Arc::new(Stats::default());
    let (sink, pg) = match &cfg.postgres {
        Some(p) => {
            let (sink, task) = crate::postgres::writer::start(p)?;
            (Some(sink), Some(task))
        }
        None => (None, None),
    };
    let spares = Spares::default();
    let w = writer::Writer::new(cfg.clone(), Arc::clone(&stats), sink, Arc::clone(&spares));
    std::thread::Builder::new()
        .name("querylog".into())
        .spawn(move || {
            w.run(&rx);
            let _ = done_tx.send(());
        })?;
    Ok((
        QueryLog {
            tx: tx.clone(),
            stats,
            last_warn: Arc::default(),
            pg: pg.as_ref().map(crate::postgres::writer::PgTask::stats),
            spares,
        },
        LogTask { tx, done, pg },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Outcome;

    #[test]
    fn every_action_has_its_name_among_the_filters_names() {
        let all = [
            Action::Allowed,
            Action::Cached,
            Action::Blocked,
            Action::Local,
            Action::Failed,
            Action::Stale,
            Action::FailedCached,
            Action::Rejected,
        ];
        // A new variant fails to compile here until it is added to `all` above.
        for a in all {
            match a {
                Action::Allowed
                | Action::Cached
                | Action::Blocked
                | Action::Local
                | Action::Failed
                | Action::Stale
                | Action::FailedCached
                | Action::Rejected => {}
            }
        }
        let mut names: Vec<&str> = all.iter().map(|a| action_name(*a)).collect();
        names.sort_unstable();
        let mut listed = ACTION_NAMES.to_vec();
        listed.sort_unstable();
        assert_eq!(names, listed);
    }

    fn rec() -> Record {
        Record {
            ts: SystemTime::now(),
            client: "192.0.2.1".parse().unwrap(),
            transport: Transport::Udp,
            asked: Asked {
                qname: "example.com".into(),
                qtype: 1,
            },
            outcome: Outcome::new(Action::Cached, 0, None),
            elapsed: Duration::from_micros(5),
        }
    }

    #[test]
    fn full_queue_drops_and_counts_without_waiting() {
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        let log = QueryLog {
            tx,
            stats: Arc::default(),
            last_warn: Arc::default(),
            pg: None,
            spares: Spares::default(),
        };
        for _ in 0..5 {
            log.record(rec());
        }
        assert_eq!(log.dropped(), 3);
        log.record_batch(vec![rec(), rec(), rec()]);
        assert_eq!(log.dropped(), 6, "a batch is dropped and counted whole");
        drop(rx);
        log.record(rec());
        assert_eq!(log.dropped(), 7, "a stopped writer counts as a drop too");
    }

    /// The real writer thread on `path`, rotating at 1 MiB, one rotated file kept.
    fn cfg(path: &std::path::Path) -> LogConfig {
        LogConfig {
            path: Some(path.into()),
            postgres: None,
            max_bytes: 1 << 20,
            keep: 1,
            anonymize_clients: false,
            session_gap: Duration::from_secs(30),
        }
    }

    fn named(qname: &str) -> Record {
        let mut r = rec();
        r.client = "192.0.2.7".parse().unwrap();
        r.asked.qname = qname.into();
        r
    }

    /// The entries of a log file, as (qname, client, session, new).
    fn entries(path: &std::path::Path) -> Vec<(String, String, u64, bool)> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .map(|l| {
                let e: Entry<'_> = serde_json::from_str(l).unwrap();
                (e.qname.into(), e.client.into(), e.session, e.new)
            })
            .collect()
    }

    fn qnames(path: &std::path::Path) -> Vec<String> {
        entries(path).into_iter().map(|e| e.0).collect()
    }

    fn seq(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}.example")).collect()
    }

    #[test]
    fn reconfigure_switches_files_between_two_records() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl");
        let b = dir.path().join("new/sub/b.jsonl");
        let (log, task) = start(&cfg(&a)).unwrap();
        for (i, n) in seq("a", 100).iter().enumerate() {
            if i % 10 == 0 {
                log.record_batch(vec![named(n)]);
            } else {
                log.record(named(n));
            }
        }
        log.reconfigure(LogConfig {
            anonymize_clients: true,
            session_gap: Duration::ZERO,
            ..cfg(&b)
        })
        .unwrap();
        // Written and flushed before the switch returned.
        assert_eq!(qnames(&a), seq("a", 100));
        log.record(named("a0.example"));
        for n in seq("b", 100) {
            log.record(named(&n));
        }
        task.finish(Duration::from_secs(5));
        let old = entries(&a);
        assert!(old.iter().all(|e| e.1 == "192.0.2.7" && e.2 == 1));
        let new = entries(&b);
        let mut want = vec!["a0.example".to_string()];
        want.extend(seq("b", 100));
        assert_eq!(new.iter().map(|e| e.0.clone()).collect::<Vec<_>>(), want);
        assert!(new.iter().all(|e| e.1 == "192.0.2.0"), "now anonymized");
        // A zero gap: every record opens a session. Sessions and `new` marks carried over.
        assert_eq!(
            (new[0].2, new[0].3),
            (2, false),
            "a0 was seen before the switch"
        );
        assert_eq!((new[100].2, new[100].3), (102, true));
        assert_eq!((log.written(), log.dropped()), (201, 0));
    }

    #[test]
    fn records_racing_a_reconfigure_are_all_kept_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl");
        let b = dir.path().join("b.jsonl");
        // ~1.1 MB of records: no rotation.
        let big = |p| LogConfig {
            max_bytes: 1 << 30,
            ..cfg(p)
        };
        let (log, task) = start(&big(&a)).unwrap();
        let n = 5_000;
        let sent = AtomicU64::new(0);
        std::thread::scope(|s| {
            s.spawn(|| {
                for name in seq("r", n) {
                    log.record(named(&name));
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            });
            while sent.load(Ordering::Relaxed) < 1_000 {
                std::thread::yield_now();
            }
            log.reconfigure(big(&b)).unwrap();
        });
        task.finish(Duration::from_secs(5));
        let (old, new) = (qnames(&a), qnames(&b));
        assert!(old.len() >= 1_000, "{}", old.len());
        // One sender: the old file holds a prefix, the new one the rest (all of it, or none
        // when the sender was faster than the switch), nothing lost.
        assert_eq!([old, new].concat(), seq("r", n));
        assert_eq!((log.written(), log.dropped()), (n as u64, 0));
    }

    #[test]
    fn unusable_path_is_refused_and_the_old_file_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl");
        let (log, task) = start(&cfg(&a)).unwrap();
        log.record(named("x1.example"));
        let file = dir.path().join("plain");
        std::fs::write(&file, "").unwrap();
        let bad = file.join("q.jsonl");
        let err = log
            .reconfigure(LogConfig {
                max_bytes: 1,
                ..cfg(&bad)
            })
            .unwrap_err();
        assert!(
            err.to_string().starts_with(&bad.display().to_string()),
            "{err}"
        );
        log.record(named("x2.example"));
        log.record(named("x3.example"));
        task.finish(Duration::from_secs(5));
        assert_eq!(qnames(&a), ["x1.example", "x2.example", "x3.example"]);
        assert!(!writer::rotated(&a, 1).exists(), "old max_bytes kept");
        assert!(log.reconfigure(cfg(&a)).is_err(), "the writer has stopped");
    }

    #[test]
    fn new_rotation_limits_apply() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.jsonl");
        let (log, task) = start(&LogConfig { keep: 5, ..cfg(&p) }).unwrap();
        for n in seq("r", 5) {
            log.record(named(&n));
        }
        // Rotated files from the larger `keep`.
        for i in 1..=4 {
            std::fs::write(writer::rotated(&p, i), "").unwrap();
        }
        log.reconfigure(cfg(&p)).unwrap();
        let line = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .len() as u64;
        // Two lines per file (later lines are a few bytes longer: `r10`, `seq`).
        let max_bytes = 2 * line + 10;
        log.reconfigure(LogConfig {
            max_bytes,
            keep: 2,
            ..cfg(&p)
        })
        .unwrap();
        for n in seq("r", 15).split_off(5) {
            log.record(named(&n));
        }
        task.finish(Duration::from_secs(5));
        let files = [writer::rotated(&p, 2), writer::rotated(&p, 1), p.clone()];
        let mut kept = Vec::new();
        for f in &files {
            let names = qnames(f);
            assert!(matches!(names.len(), 1 | 2), "{}: {names:?}", f.display());
            assert!(std::fs::metadata(f).unwrap().len() <= max_bytes);
            kept.extend(names);
        }
        assert!(seq("r", 15).ends_with(&kept), "{kept:?}");
        assert!(!writer::rotated(&p, 3).exists() && !writer::rotated(&p, 4).exists());
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn names() {
        assert_eq!(action_name(Action::Rejected), "refused");
        assert_eq!(action_name(Action::Local), "local");
        assert_eq!(qtype_name(28), "AAAA");
        assert_eq!(qtype_name(65280), "TYPE65280");
    }
}
