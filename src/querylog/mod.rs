//! The query log: one JSON object per answered query, appended to `log.path` (JSON Lines),
//! and the `sinkhole log` commands that read it back.
//!
//! The query path only builds a compact [`Record`] (the question, the [`Outcome`], the
//! times) and hands it to [`QueryLog::record`], which is a `try_send` on a bounded queue:
//! it never waits, and a full queue drops the record and counts it. The writer task
//! ([`writer`]) does everything else: client sessions and `new` marks ([`sessions`]),
//! rendering the answer, JSON, rotation, flushing. The file format is [`Entry`];
//! [`read`] reads the current and rotated files back, [`tail`] and [`report`] are the
//! commands.

pub mod filter;
pub mod read;
pub mod report;
pub mod sessions;
pub mod tail;
pub mod writer;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use serde::{Deserialize, Serialize};

use crate::config::LogConfig;
use crate::handler::Asked;
use crate::pipeline::{Action, Outcome};

/// Messages (records, or UDP batches of records) waiting for the writer at most; past it
/// they are dropped and counted.
pub const QUEUE: usize = 16_384;

/// What the query path hands to the log: small, no formatting done yet.
#[derive(Debug)]
pub struct Record {
    /// When the query arrived.
    pub ts: SystemTime,
    /// The client's address.
    pub client: IpAddr,
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
    /// Query name, lower case, no trailing dot.
    #[serde(borrow)]
    pub qname: Cow<'a, str>,
    /// Query type mnemonic (`A`, `AAAA`, `TYPE65280`).
    #[serde(borrow)]
    pub qtype: Cow<'a, str>,
    /// `allowed`, `cached`, `blocked`, `local`, `refused` or `failed`.
    #[serde(borrow)]
    pub action: Cow<'a, str>,
    /// The deciding rule (block rule, or the allow rule that let a listed name through).
    #[serde(borrow, default)]
    pub rule: Option<Cow<'a, str>>,
    /// Where the rule is: `file:line`, or `builtin`.
    #[serde(borrow, default)]
    pub list: Option<Cow<'a, str>>,
    /// Response code mnemonic.
    #[serde(borrow)]
    pub rcode: Cow<'a, str>,
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
}

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
}

/// The query path's handle on the log: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct QueryLog {
    tx: SyncSender<Msg>,
    stats: Arc<Stats>,
    last_warn: Arc<std::sync::Mutex<Option<Instant>>>,
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

    /// Records dropped so far.
    pub fn dropped(&self) -> u64 {
        self.stats.dropped.load(Ordering::Relaxed)
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.stats.written.load(Ordering::Relaxed)
    }
}

/// The writer thread and how to stop it.
#[derive(Debug)]
pub struct LogTask {
    tx: SyncSender<Msg>,
    done: Receiver<()>,
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
    }
}

/// Starts the writer thread; returns the query path's handle and the thread's handle.
pub fn start(cfg: &LogConfig) -> std::io::Result<(QueryLog, LogTask)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    let (done_tx, done) = std::sync::mpsc::channel();
    let stats = Arc::new(Stats::default());
    let w = writer::Writer::new(cfg.clone(), Arc::clone(&stats));
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
        },
        LogTask { tx, done },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Outcome;

    fn rec() -> Record {
        Record {
            ts: SystemTime::now(),
            client: "192.0.2.1".parse().unwrap(),
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

    #[test]
    fn names() {
        assert_eq!(action_name(Action::Rejected), "refused");
        assert_eq!(action_name(Action::Local), "local");
        assert_eq!(qtype_name(28), "AAAA");
        assert_eq!(qtype_name(65280), "TYPE65280");
    }
}
