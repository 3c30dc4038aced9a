//! `[log.postgres]`: the query log's records written to PostgreSQL in batches.
//!
//! Two halves. [`Sink`] lives on the query log's writer thread: each record, already placed
//! in its client's session, is encoded there into a `COPY` row ([`super::copy`]), and the
//! rows of one pass of that thread are handed over as one chunk to a bounded queue
//! ([`QUEUE_ROWS`]); when the queue is full the chunk is dropped and counted, so answering
//! never waits on the database. The database thread ([`start`]) owns the connection: every
//! `batch_ms` it sends what is queued with one `COPY … FROM STDIN (FORMAT binary)`. When the
//! database is down, slow or refuses the batch for a reason that may pass (disk full), the
//! rows stay queued and the batch is retried; a warning says so once, and an info line says
//! when writing resumed and how many rows were dropped meanwhile. A batch the database
//! rejects as data (it never will be accepted) is dropped and counted.
//!
//! The same thread keeps the day partitions (today's and tomorrow's made ahead, those older
//! than `retention_days` dropped every minute) and the `instances` row of this instance (a
//! second live instance with the same name is warned about).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio_postgres::Client;

use super::copy::{self, Row};
use super::{DbError, migrate};
use crate::config::postgres::PostgresLog;
use crate::querylog::sessions::Mark;
use crate::querylog::writer::Shown;
use crate::querylog::writer::client_logged;
use crate::querylog::{Record, action_name, qtype_name};

/// Rows waiting for the database at most; past it, new rows are dropped and counted.
pub const QUEUE_ROWS: usize = 262_144;

/// Rows sent in one `COPY` at most.
pub const BATCH_ROWS: usize = 65_536;

/// Room a chunk's buffer starts with (a hand-off every 10 ms at 50,000 queries a second
/// is about 75 KB).
const CHUNK_BYTES: usize = 128 * 1024;
/// Emptied chunk buffers kept for reuse, at most.
const SPARE_CHUNKS: usize = 8;
/// The longest wait between two connection attempts.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// How often old partitions are dropped and this instance's `last_seen` updated.
const HOUSEKEEPING: Duration = Duration::from_secs(60);

/// An instance seen this recently under our name is another live one.
const LIVE: Duration = Duration::from_secs(120);

/// Counters of the database writer, for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct PgStats {
    /// Rows the database accepted.
    pub written: AtomicU64,
    /// Rows dropped: queue full, or refused as data.
    pub dropped: AtomicU64,
    /// Rows waiting in the queue now.
    pub queued: AtomicU64,
    /// True while the database is reachable and its schema usable.
    pub connected: AtomicBool,
}

/// One pass of the log writer's rows, encoded (`Bytes`: sent, and kept for a retry,
/// without a copy).
#[derive(Debug, Clone)]
struct Chunk {
    bytes: bytes::Bytes,
    rows: usize,
}

/// What the two halves share.
#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Buffers of written chunks, emptied, for the log writer to fill again: a fresh
    /// buffer per hand-off costs page faults on every page it touches.
    spares: Mutex<Vec<Vec<u8>>>,
    /// Rows the queue holds at most ([`QUEUE_ROWS`]).
    bound: usize,
    stats: Arc<PgStats>,
    stop: AtomicBool,
}

impl Shared {
    fn new(bound: usize) -> Self {
        Self {
            queue: Mutex::default(),
            spares: Mutex::default(),
            bound,
            stats: Arc::default(),
            stop: AtomicBool::new(false),
        }
    }
}

#[derive(Debug, Default)]
struct Queue {
    chunks: VecDeque<Chunk>,
    rows: usize,
    /// Rows dropped since the last report (the database thread reports them).
    dropping: bool,
}

/// The log writer thread's half: encodes rows, hands them over in chunks.
#[derive(Debug)]
pub struct Sink {
    shared: Arc<Shared>,
    instance: String,
    buf: Vec<u8>,
    rows: usize,
    /// Rows not encoded since the last hand-off because the queue was full.
    skipped: usize,
}

impl Sink {
    fn new(shared: &Arc<Shared>, instance: &str) -> Self {
        Self {
            shared: Arc::clone(shared),
            instance: instance.to_string(),
            buf: Vec::with_capacity(CHUNK_BYTES),
            rows: 0,
            skipped: 0,
        }
    }

    /// Encodes the row of `r`, placed in its session as `mark`; while the queue is full,
    /// only counts it as dropped (no work for a row that cannot be kept).
    pub fn push(&mut self, r: &Record, mark: &Mark, shown: &Shown<'_>, anonymize: bool) {
        if self.shared.stats.queued.load(Ordering::Relaxed) as usize >= self.shared.bound {
            self.skipped += 1;
            return;
        }
        encode_row(r, mark, shown, &self.instance, anonymize, &mut self.buf);
        self.rows += 1;
    }

    /// Hands the rows encoded so far to the database thread, or drops and counts them
    /// when its queue is full.
    pub fn hand_off(&mut self) {
        let skipped = std::mem::take(&mut self.skipped);
        if skipped > 0 {
            self.drop_rows(skipped);
        }
        if self.rows == 0 {
            return;
        }
        let rows = std::mem::take(&mut self.rows);
        let next = self
            .shared
            .spares
            .lock()
            .ok()
            .and_then(|mut s| s.pop())
            .unwrap_or_else(|| Vec::with_capacity(CHUNK_BYTES));
        let bytes = bytes::Bytes::from(std::mem::replace(&mut self.buf, next));
        let Ok(mut q) = self.shared.queue.lock() else {
            self.drop_rows(rows);
            return;
        };
        if q.rows + rows > self.shared.bound {
            drop(q);
            self.drop_rows(rows);
            return;
        }
        q.rows += rows;
        self.shared
            .stats
            .queued
            .store(q.rows as u64, Ordering::Relaxed);
        q.chunks.push_back(Chunk { bytes, rows });
    }

    /// Counts `rows` as dropped; warns at the first drop of a spell.
    fn drop_rows(&self, rows: usize) {
        self.shared
            .stats
            .dropped
            .fetch_add(rows as u64, Ordering::Relaxed);
        let Ok(mut q) = self.shared.queue.lock() else {
            return;
        };
        if !q.dropping {
            q.dropping = true;
            tracing::warn!(
                queued = q.rows,
                "query log: PostgreSQL is not taking records and its queue is full; records are dropped and counted (sinkhole_querylog_postgres_dropped_total) until it catches up; queries are still answered"
            );
        }
    }
}

/// Appends the `COPY` row of `r` (placed in its session as `mark`, its shown fields
/// `shown`), written by `instance`, to `out`: what [`Sink::push`] queues.
pub fn encode_row(
    r: &Record,
    mark: &Mark,
    shown: &Shown<'_>,
    instance: &str,
    anonymize: bool,
    out: &mut Vec<u8>,
) {
    let cname = r.outcome.rule.as_ref().and_then(|x| x.cname());
    let qtype = qtype_name(r.asked.qtype);
    let row = Row {
        ts: r.ts,
        instance,
        client: client_logged(r.client, anonymize),
        proto: r.transport.name(),
        qname: shown.qname,
        domain: shown.qname.get(mark.domain_at..).unwrap_or(shown.qname),
        qtype: &qtype,
        action: action_name(r.outcome.action),
        rule: shown.rule.as_ref().map(|(a, b)| (*a, b.as_ref())),
        group: r.outcome.group.as_deref(),
        cname: cname.as_deref(),
        rcode: crate::dns::wire::rcode::name(r.outcome.rcode),
        dnssec: r.outcome.dnssec.map(|s| s.as_str()),
        tc: matches!(r.outcome.detail, crate::pipeline::Detail::Truncated),
        upstream: shown.upstream.as_deref(),
        elapsed_us: u64::try_from(r.elapsed.as_micros()).unwrap_or(u64::MAX),
        session: mark.session,
        seq: mark.seq,
        new: mark.new,
    };
    copy::encode(&row, |f| crate::querylog::writer::each_answer(r, f), out);
}

/// The database thread and how to stop it.
#[derive(Debug)]
pub struct PgTask {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PgTask {
    /// The writer's counters.
    pub fn stats(&self) -> Arc<PgStats> {
        Arc::clone(&self.shared.stats)
    }

    /// Writes what is queued (waiting at most `timeout` for the database) and stops.
    pub fn finish(mut self, timeout: Duration) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + timeout;
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                let left = self.shared.queue.lock().map_or(0, |q| q.rows);
                tracing::warn!(
                    rows = left,
                    "query log: PostgreSQL did not take the last records in time; they are lost"
                );
            }
        }
    }
}

/// Starts the database thread for `cfg`, writing as `cfg.instance`; returns the log writer's
/// half and the thread.
pub fn start(cfg: &PostgresLog) -> std::io::Result<(Sink, PgTask)> {
    let instance = cfg.instance.as_str();
    let shared = Arc::new(Shared::new(QUEUE_ROWS));
    let sink = Sink::new(&shared, instance);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let db = Db {
        cfg: cfg.clone(),
        shared: Arc::clone(&shared),
        client: None,
        failing: None,
        dropped_seen: 0,
        days_made: None,
        housekeeping_at: Instant::now(),
    };
    let thread = std::thread::Builder::new()
        .name("querylog-pg".into())
        .spawn(move || rt.block_on(db.run()))?;
    Ok((
        sink,
        PgTask {
            shared,
            thread: Some(thread),
        },
    ))
}

/// The database thread's state.
struct Db {
    cfg: PostgresLog,
    shared: Arc<Shared>,
    client: Option<Client>,
    /// Why writing stopped, while it is stopped (reported once per spell).
    failing: Option<String>,
    /// The dropped counter when writing last resumed.
    dropped_seen: u64,
    /// The UTC day whose partitions (that day and the next) exist.
    days_made: Option<i64>,
    housekeeping_at: Instant,
}

impl Db {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let stopping = self.shared.stop.load(Ordering::Relaxed);
            if self.client.is_none() {
                match self.connect().await {
                    Ok(c) => {
                        self.client = Some(c);
                        backoff = Duration::from_millis(200);
                    }
                    Err(e) => {
                        self.fail(&e);
                        if stopping {
                            return;
                        }
                        self.pause(backoff).await;
                        backoff = (backoff * 2).min(RECONNECT_MAX);
                        continue;
                    }
                }
            }
            if let Err(e) = self.write_queued().await {
                self.fail(&e);
                if e.is_closed() {
                    self.client = None;
                }
                if stopping {
                    return;
                }
                self.pause(backoff).await;
                backoff = (backoff * 2).min(RECONNECT_MAX);
                continue;
            }
            self.resumed();
            if stopping {
                return;
            }
            if self.housekeeping_at.elapsed() >= HOUSEKEEPING {
                self.housekeeping_at = Instant::now();
                if let Err(e) = self.housekeeping().await {
                    tracing::warn!(error = %e, "query log: PostgreSQL housekeeping failed; tried again in a minute");
                }
            }
            self.pause(self.cfg.batch).await;
        }
    }

    /// Sleeps `d`, or less when asked to stop.
    async fn pause(&self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end && !self.shared.stop.load(Ordering::Relaxed) {
            tokio::time::sleep((end - Instant::now()).min(Duration::from_millis(50))).await;
        }
    }

    /// Connects, checks the schema, registers the instance, makes today's partitions.
    async fn connect(&mut self) -> Result<Client, DbError> {
        let client = super::connect(&self.cfg.url).await?;
        migrate::check(&client).await?;
        self.register(&client).await?;
        let today = day_of(SystemTime::now());
        make_partitions(&client, today).await?;
        self.days_made = Some(today);
        Ok(client)
    }

    /// Reports a failure once per spell.
    fn fail(&mut self, e: &DbError) {
        self.shared.stats.connected.store(false, Ordering::Relaxed);
        let why = e.to_string();
        if self.failing.as_deref() != Some(why.as_str()) {
            let queued = self.shared.queue.lock().map_or(0, |q| q.rows);
            tracing::warn!(
                queued,
                bound = QUEUE_ROWS,
                "query log: {why}; records wait in a queue (dropped and counted once it is full) and are written when the database is back; queries are still answered"
            );
            self.failing = Some(why);
        }
    }

    /// After a successful write: says so when it ends a spell of failures or drops.
    fn resumed(&mut self) {
        self.shared.stats.connected.store(true, Ordering::Relaxed);
        let dropped = self.shared.stats.dropped.load(Ordering::Relaxed);
        let was_dropping = self
            .shared
            .queue
            .lock()
            .map(|mut q| std::mem::take(&mut q.dropping))
            .unwrap_or(false);
        if self.failing.take().is_some() || was_dropping {
            tracing::info!(
                dropped_meanwhile = dropped - self.dropped_seen,
                dropped_total = dropped,
                "query log: writing to PostgreSQL again"
            );
        }
        self.dropped_seen = dropped;
    }

    /// Sends the queued rows, [`BATCH_ROWS`] at a time; on failure the unsent chunks are
    /// put back first in the queue.
    async fn write_queued(&mut self) -> Result<(), DbError> {
        loop {
            let batch = self.take_batch();
            if batch.is_empty() {
                return Ok(());
            }
            let rows: usize = batch.iter().map(|c| c.rows).sum();
            let res = match self.client.as_ref() {
                Some(client) => {
                    let today = day_of(SystemTime::now());
                    if self.days_made != Some(today) {
                        make_partitions(client, today).await?;
                        self.days_made = Some(today);
                    }
                    copy_batch(client, &batch).await
                }
                None => return Ok(()),
            };
            match res {
                Ok(()) => {
                    self.shared
                        .stats
                        .written
                        .fetch_add(rows as u64, Ordering::Relaxed);
                    self.spare(batch);
                }
                Err(e) if is_data_error(&e) => {
                    tracing::error!(error = %e, rows, "query log: PostgreSQL refused a batch as data; it is dropped and counted");
                    self.shared
                        .stats
                        .dropped
                        .fetch_add(rows as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    self.put_back(batch);
                    return Err(e);
                }
            }
        }
    }

    fn take_batch(&self) -> Vec<Chunk> {
        let Ok(mut q) = self.shared.queue.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut rows = 0;
        while rows < BATCH_ROWS {
            let Some(c) = q.chunks.pop_front() else { break };
            rows += c.rows;
            out.push(c);
        }
        q.rows -= rows;
        self.shared
            .stats
            .queued
            .store(q.rows as u64, Ordering::Relaxed);
        out
    }

    /// Returns the buffers of written chunks to the log writer (those no one else holds,
    /// a few at most).
    fn spare(&self, batch: Vec<Chunk>) {
        let Ok(mut spares) = self.shared.spares.lock() else {
            return;
        };
        for c in batch {
            if spares.len() >= SPARE_CHUNKS {
                break;
            }
            if let Ok(b) = c.bytes.try_into_mut() {
                let mut v = Vec::from(b);
                if v.capacity() <= 4 * CHUNK_BYTES {
                    v.clear();
                    spares.push(v);
                }
            }
        }
    }

    fn put_back(&self, batch: Vec<Chunk>) {
        let Ok(mut q) = self.shared.queue.lock() else {
            return;
        };
        for c in batch.into_iter().rev() {
            q.rows += c.rows;
            q.chunks.push_front(c);
        }
        self.shared
            .stats
            .queued
            .store(q.rows as u64, Ordering::Relaxed);
    }

    /// Registers this instance; warns when another live one has the same name.
    async fn register(&self, client: &Client) -> Result<(), DbError> {
        let host = super::host_name();
        let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        let live = LIVE.as_secs_f64();
        let other = client
            .query_opt(
                "SELECT host, pid FROM instances WHERE name = $1
                   AND last_seen > now() - make_interval(secs => $2)",
                &[&self.cfg.instance, &live],
            )
            .await
            .map_err(DbError::query("reading instances"))?;
        if let Some(row) = other {
            let (h, p): (String, i32) = (row.get(0), row.get(1));
            if (h.as_str(), p) != (host.as_str(), pid) {
                tracing::warn!(
                    instance = %self.cfg.instance,
                    other_host = %h,
                    other_pid = p,
                    "query log: another instance named {:?} wrote to this database in the last {} s; their records cannot be told apart: give each its own server.name",
                    self.cfg.instance,
                    LIVE.as_secs()
                );
            }
        }
        client
            .execute(
                "INSERT INTO instances (name, host, pid, started_at, last_seen)
                 VALUES ($1, $2, $3, now(), now())
                 ON CONFLICT (name) DO UPDATE SET host = $2, pid = $3, started_at = now(), last_seen = now()",
                &[&self.cfg.instance, &host, &pid],
            )
            .await
            .map_err(DbError::query("registering the instance"))?;
        Ok(())
    }

    /// Drops partitions older than the retention, and old rows of the default partition;
    /// updates `last_seen`.
    async fn housekeeping(&mut self) -> Result<(), DbError> {
        let Some(client) = self.client.as_ref() else {
            return Ok(());
        };
        client
            .execute(
                "UPDATE instances SET last_seen = now() WHERE name = $1",
                &[&self.cfg.instance],
            )
            .await
            .map_err(DbError::query("updating last_seen"))?;
        let oldest_kept = day_of(SystemTime::now()) - i64::from(self.cfg.retention_days) + 1;
        drop_old_partitions(client, oldest_kept).await
    }
}

/// Sends `batch` with one binary `COPY`.
async fn copy_batch(client: &Client, batch: &[Chunk]) -> Result<(), DbError> {
    use futures_util::SinkExt as _;
    let stmt = format!(
        "COPY queries ({}) FROM STDIN (FORMAT binary)",
        copy::COLUMNS
    );
    let sink = client
        .copy_in::<_, bytes::Bytes>(&stmt)
        .await
        .map_err(DbError::query("writing records (COPY)"))?;
    futures_util::pin_mut!(sink);
    // COPY data may be cut anywhere: the chunks go as they are, between header and trailer.
    let parts = std::iter::once(bytes::Bytes::from_static(copy::HEADER))
        .chain(batch.iter().map(|c| c.bytes.clone()))
        .chain(std::iter::once(bytes::Bytes::from_static(copy::TRAILER)));
    for part in parts {
        sink.feed(part)
            .await
            .map_err(DbError::query("writing records (COPY)"))?;
    }
    sink.finish()
        .await
        .map_err(DbError::query("writing records (COPY)"))?;
    Ok(())
}

/// Creates the partitions of `today` and the next day (UTC) when missing.
pub async fn make_partitions(client: &Client, today: i64) -> Result<(), DbError> {
    for day in [today, today + 1] {
        let sql = format!(
            "DO $$ BEGIN
               PERFORM pg_advisory_xact_lock(7564367);
               IF to_regclass('{name}') IS NULL THEN
                 CREATE TABLE {name} PARTITION OF queries
                   FOR VALUES FROM ('{from}') TO ('{to}');
               END IF;
             END $$",
            name = partition_name(day),
            from = day_start(day),
            to = day_start(day + 1),
        );
        if let Err(e) = client.batch_execute(&sql).await {
            let e = DbError::Query {
                what: format!("creating partition {}", partition_name(day)),
                source: e,
            };
            if e.is_closed() {
                return Err(e);
            }
            // Rows of that day go to queries_default meanwhile: nothing is lost.
            tracing::warn!(error = %e, "query log: a day partition could not be made; that day's rows go to queries_default");
        }
    }
    Ok(())
}

/// Drops the day partitions before day `oldest_kept` (days since the Unix epoch), and the
/// rows before it in `queries_default`. Returns when done.
pub async fn drop_old_partitions(client: &Client, oldest_kept: i64) -> Result<(), DbError> {
    let rows = client
        .query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'queries'::regclass",
            &[],
        )
        .await
        .map_err(DbError::query("listing partitions"))?;
    for r in rows {
        let name: String = r.get(0);
        if let Some(day) = partition_day(&name)
            && day < oldest_kept
        {
            client
                .batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
                .await
                .map_err(DbError::query(format!("dropping partition {name}")))?;
            tracing::info!(partition = %name, "query log: PostgreSQL partition past the retention dropped");
        }
    }
    let cutoff = day_start(oldest_kept);
    client
        .execute(
            &format!("DELETE FROM queries_default WHERE ts < '{cutoff}'"),
            &[],
        )
        .await
        .map_err(DbError::query("trimming queries_default"))?;
    Ok(())
}

/// True for errors of the batch's data (SQLSTATE class 22, data exception): sending it
/// again cannot succeed.
fn is_data_error(e: &DbError) -> bool {
    match e {
        DbError::Query { source, .. } => source
            .as_db_error()
            .is_some_and(|d| d.code().code().starts_with("22")),
        _ => false,
    }
}

/// Days since the Unix epoch (UTC) of `t`.
pub fn day_of(t: SystemTime) -> i64 {
    let s = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    s.div_euclid(86_400)
}

fn civil(day: i64) -> time::Date {
    time::Date::from_julian_day(i32::try_from(day + 2_440_588).unwrap_or(2_440_588))
        .unwrap_or(time::Date::MIN)
}

/// `queries_p20261205`: the partition of a day.
pub fn partition_name(day: i64) -> String {
    let d = civil(day);
    format!(
        "queries_p{:04}{:02}{:02}",
        d.year(),
        u8::from(d.month()),
        d.day()
    )
}

/// The day of a partition's name.
pub fn partition_day(name: &str) -> Option<i64> {
    let digits = name.strip_prefix("queries_p")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, rest) = digits.split_at(4);
    let (m, d) = rest.split_at(2);
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()?;
    Some(i64::from(date.to_julian_day()) - 2_440_588)
}

/// `2026-12-05 00:00:00+00`: the start of a day, as SQL text.
fn day_start(day: i64) -> String {
    let d = civil(day);
    format!(
        "{:04}-{:02}-{:02} 00:00:00+00",
        d.year(),
        u8::from(d.month()),
        d.day()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(qname: &str) -> Record {
        use crate::handler::Asked;
        use crate::pipeline::{Action, Outcome, Transport};
        Record {
            ts: SystemTime::now(),
            client: "192.0.2.7".parse().unwrap(),
            transport: Transport::Udp,
            asked: Asked {
                qname: qname.into(),
                qtype: 1,
            },
            outcome: Outcome::new(Action::Cached, 0, None),
            elapsed: Duration::from_micros(5),
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_whole_chunks_and_keeps_the_rest() {
        let shared = Arc::new(Shared::new(10));
        let mut sink = Sink::new(&shared, "dns1.lan");
        let mark = Mark {
            session: 1,
            seq: 1,
            new: true,
            domain_at: 0,
        };
        let (a, b) = (record("a.example"), record("b.example"));
        for _ in 0..6 {
            sink.push(&a, &mark, &Shown::of(&a), false);
        }
        sink.hand_off();
        for _ in 0..6 {
            sink.push(&b, &mark, &Shown::of(&b), true);
        }
        sink.hand_off();
        let stats = &shared.stats;
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 6);
        assert_eq!(stats.queued.load(Ordering::Relaxed), 6);
        sink.hand_off();
        assert_eq!(
            stats.dropped.load(Ordering::Relaxed),
            6,
            "nothing to hand off"
        );
        let q = shared.queue.lock().unwrap();
        assert!(q.dropping);
        assert_eq!((q.chunks.len(), q.rows), (1, 6));
        // Each row starts with the field count; the queued chunk holds a.example's rows.
        let c = &q.chunks[0];
        assert_eq!(c.bytes.windows(9).filter(|w| w == b"a.example").count(), 12);
        assert!(!c.bytes.windows(9).any(|w| w == b"b.example"));
    }

    #[test]
    fn partition_names_and_days_round_trip() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_515_199); // 2026-12-05 23:59:59
        let day = day_of(t);
        assert_eq!(partition_name(day), "queries_p20261205");
        assert_eq!(partition_day("queries_p20261205"), Some(day));
        assert_eq!(day_start(day + 1), "2026-12-06 00:00:00+00");
        assert_eq!(partition_day("queries_default"), None);
        assert_eq!(partition_day("queries_p2026120x"), None);
        assert_eq!(day_of(SystemTime::UNIX_EPOCH - Duration::from_secs(1)), -1);
    }
}
