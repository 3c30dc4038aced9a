//! Service-wide counters: queries by action, type and transport; cache hits and misses; per
//! upstream queries, errors and latency. Read as a plain-number [`Snapshot`] (with the gauges
//! the caller knows: cache size, query-log totals, lists) and rendered one line per counter
//! in the Prometheus text style ([`Snapshot::lines`], in `render`).
//!
//! The per-query counters are on the hot path: two UDP listener threads and the tokio
//! workers all bump them. One shared set of atomics would make every query move the same
//! cache lines between cores, so the counters are split into [`SHARDS`] shards, each on
//! cache lines of its own; a thread picks its shard once (round robin, a thread-local
//! index) and only ever adds to it; reading sums the shards. Adds are relaxed atomic
//! `fetch_add`s, not plain stores: more threads than shards may share one.
//!
//! Not here: where the counts come from (the handler, the cache, the upstream stage call
//! in) and where they are shown (`sinkhole serve` at exit and on SIGUSR1, later `/metrics`).

mod limits;
mod render;

pub use limits::LimitEvent;

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::pipeline::Action;

/// Shards of the per-query counters. A power of two well above the threads that answer
/// queries on a small LAN box (two UDP threads plus one tokio worker per core).
pub const SHARDS: usize = 16;

pub use crate::pipeline::Transport;

/// Every action, in rendering order (the order of [`Snapshot::by_action`]).
pub const ACTIONS: [Action; 8] = [
    Action::Allowed,
    Action::Cached,
    Action::Blocked,
    Action::Local,
    Action::Failed,
    Action::Rejected,
    Action::Stale,
    Action::FailedCached,
];

fn action_index(a: Action) -> usize {
    match a {
        Action::Allowed => 0,
        Action::Cached => 1,
        Action::Blocked => 2,
        Action::Local => 3,
        Action::Failed => 4,
        Action::Rejected => 5,
        Action::Stale => 6,
        Action::FailedCached => 7,
    }
}

/// The query types counted by name (type code, mnemonic); every other type is `other`, the
/// last slot of the counts.
pub const QTYPES: [(u16, &str); 16] = [
    (1, "A"),
    (28, "AAAA"),
    (5, "CNAME"),
    (15, "MX"),
    (16, "TXT"),
    (2, "NS"),
    (6, "SOA"),
    (12, "PTR"),
    (33, "SRV"),
    (65, "HTTPS"),
    (64, "SVCB"),
    (255, "ANY"),
    (43, "DS"),
    (48, "DNSKEY"),
    (257, "CAA"),
    (35, "NAPTR"),
];
/// Slots of the query-type counts: the named types and `other`.
const QTYPE_SLOTS: usize = QTYPES.len() + 1;

/// The slot of a query type: a `match`, so a jump table and no hashing on the hot path.
fn qtype_index(t: u16) -> usize {
    match t {
        1 => 0,
        28 => 1,
        5 => 2,
        15 => 3,
        16 => 4,
        2 => 5,
        6 => 6,
        12 => 7,
        33 => 8,
        65 => 9,
        64 => 10,
        255 => 11,
        43 => 12,
        48 => 13,
        257 => 14,
        35 => 15,
        _ => QTYPES.len(),
    }
}

/// Upper bounds of the upstream latency histogram's buckets, in microseconds (1 ms … 5 s;
/// the last bucket, `+Inf`, is implied).
pub const LATENCY_BUCKETS_US: [u64; 11] = [
    1_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000,
];
/// Histogram slots: the bounded buckets and `+Inf`.
pub const LATENCY_SLOTS: usize = LATENCY_BUCKETS_US.len() + 1;

/// Slots of the blocked-by-list counts: the first `LIST_SLOTS - 1` list names registered
/// ([`Counters::list_slot`]) get one each; later ones share the last, rendered `other`.
pub const LIST_SLOTS: usize = 32;
/// The shared slot of the lists registered after the others were taken.
const OTHER_LIST: usize = LIST_SLOTS - 1;

/// One shard of the per-query counters, alone on its cache lines (128 bytes: two lines, as
/// the adjacent-line prefetcher of x86 pulls pairs).
#[repr(align(128))]
#[derive(Default)]
struct Shard {
    actions: [AtomicU64; ACTIONS.len()],
    qtypes: [AtomicU64; QTYPE_SLOTS],
    transports: [AtomicU64; Transport::ALL.len()],
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    limits: [AtomicU64; LimitEvent::ALL.len()],
    /// Blocked queries by the list of the deciding rule (a slot of [`Counters::list_slot`]).
    blocked_by_list: [AtomicU64; LIST_SLOTS],
}

/// Hands out shard indices to threads, round robin.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard; `usize::MAX` until the thread first counts.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The calling thread's shard index: picked on its first call, then one thread-local read.
fn shard() -> usize {
    SHARD.with(|s| {
        let i = s.get();
        if i < SHARDS {
            return i;
        }
        let i = NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS;
        s.set(i);
        i
    })
}

/// The service's counters; shared as `Arc<Counters>`.
pub struct Counters {
    shards: [Shard; SHARDS],
    /// Per-upstream stats, in the order upstreams were first seen; never removed, so an
    /// upstream that a reload drops keeps its history.
    upstreams: Mutex<Vec<Arc<UpstreamStats>>>,
    /// Set on each list load (not per query).
    lists: Mutex<Vec<ListStat>>,
    /// The list name of each blocked-by-list slot, in the order first registered; never
    /// removed, so a list that a reload drops keeps its count (as upstreams do).
    list_names: Mutex<Vec<Arc<str>>>,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters").finish_non_exhaustive()
    }
}

impl Default for Counters {
    fn default() -> Self {
        Self::new()
    }
}

/// Adds one to a counter (`None` cannot happen: indices come from fixed tables).
fn bump(counter: Option<&AtomicU64>) {
    if let Some(c) = counter {
        c.fetch_add(1, Relaxed);
    }
}

impl Counters {
    /// All counters at zero.
    pub fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Shard::default()),
            upstreams: Mutex::default(),
            lists: Mutex::default(),
            list_names: Mutex::default(),
        }
    }

    fn mine(&self) -> &Shard {
        let [first, ..] = &self.shards;
        self.shards.get(shard() % SHARDS).unwrap_or(first)
    }

    /// One answered query. Hot path: three relaxed atomic adds on this thread's shard, no
    /// lock, no allocation.
    pub fn query(&self, action: Action, qtype: u16, transport: Transport) {
        let s = self.mine();
        bump(s.actions.get(action_index(action)));
        bump(s.qtypes.get(qtype_index(qtype)));
        bump(s.transports.get(transport as usize));
    }

    /// A cache lookup that found an answer.
    pub fn cache_hit(&self) {
        self.mine().cache_hits.fetch_add(1, Relaxed);
    }

    /// A cache lookup that found nothing usable.
    pub fn cache_miss(&self) {
        self.mine().cache_misses.fetch_add(1, Relaxed);
    }

    /// A rate-limit event (`[limits]`).
    pub fn limit(&self, e: LimitEvent) {
        bump(self.mine().limits.get(e as usize));
    }

    /// The stats of the upstream at `addr`, created on first use. Look it up when an
    /// upstream set is built (start, reload) and keep the `Arc`: this takes a lock and
    /// scans. The same address always gets the same stats, across reloads.
    pub fn upstream(&self, addr: SocketAddr) -> Arc<UpstreamStats> {
        let mut all = self
            .upstreams
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(u) = all.iter().find(|u| u.addr == addr) {
            return Arc::clone(u);
        }
        let u = Arc::new(UpstreamStats::new(addr));
        all.push(Arc::clone(&u));
        u
    }

    /// The blocked-by-list slot of the list `name` (as written in the config), registered
    /// on first use. Look it up when a policy is installed, not per query: this takes a
    /// lock and scans. The same name always gets the same slot; past [`LIST_SLOTS`]` - 1`
    /// names, the shared `other` slot.
    pub fn list_slot(&self, name: &str) -> u16 {
        let mut all = self
            .list_names
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let i = match all.iter().position(|n| &**n == name) {
            Some(i) => i,
            None if all.len() < OTHER_LIST => {
                all.push(Arc::from(name));
                all.len() - 1
            }
            None => OTHER_LIST,
        };
        u16::try_from(i).unwrap_or(OTHER_LIST as u16)
    }

    /// A query blocked by a rule of the list in `slot` (from [`Self::list_slot`]). Hot
    /// path, blocked queries only: one relaxed add on this thread's shard.
    pub fn blocked_by(&self, slot: u16) {
        bump(self.mine().blocked_by_list.get(usize::from(slot)));
    }

    /// Replaces the lists' figures; call after each (re)load.
    pub fn set_lists(&self, lists: Vec<ListStat>) {
        *self.lists.lock().unwrap_or_else(PoisonError::into_inner) = lists;
    }

    /// The counters as plain numbers, with the caller's `gauges`. Shards are summed one
    /// counter at a time while queries go on, so the figures are each exact but not
    /// taken at one instant (a query may be in `queries` and not yet in `by_qtype`).
    pub fn snapshot(&self, gauges: Gauges) -> Snapshot {
        let sum = |f: &dyn Fn(&Shard) -> Option<&AtomicU64>| -> u64 {
            self.shards
                .iter()
                .filter_map(|s| f(s).map(|c| c.load(Relaxed)))
                .sum()
        };
        let upstreams = self
            .upstreams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|u| u.snapshot())
            .collect();
        Snapshot {
            by_action: std::array::from_fn(|i| sum(&|s| s.actions.get(i))),
            by_qtype: std::array::from_fn(|i| sum(&|s| s.qtypes.get(i))),
            by_transport: std::array::from_fn(|i| sum(&|s| s.transports.get(i))),
            cache_hits: sum(&|s| Some(&s.cache_hits)),
            cache_misses: sum(&|s| Some(&s.cache_misses)),
            limits: std::array::from_fn(|i| sum(&|s| s.limits.get(i))),
            blocked_by_list: {
                let names = self
                    .list_names
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                let count = |i: usize| sum(&|s| s.blocked_by_list.get(i));
                let mut v: Vec<(String, u64)> = names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.to_string(), count(i)))
                    .collect();
                let other = count(OTHER_LIST);
                if other > 0 {
                    v.push(("other".into(), other));
                }
                v
            },
            upstreams,
            lists: self
                .lists
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            gauges,
        }
    }
}

/// One upstream's counters. Not sharded: forwards are far fewer than queries (the cache
/// answers most) and each costs a socket round trip anyway; aligned so that two upstreams'
/// counters never share a cache line.
#[repr(align(128))]
#[derive(Debug)]
pub struct UpstreamStats {
    addr: SocketAddr,
    queries: AtomicU64,
    errors: AtomicU64,
    answered: AtomicU64,
    latency_us: AtomicU64,
    /// Answers per latency bucket (not cumulative; rendering accumulates).
    buckets: [AtomicU64; LATENCY_SLOTS],
}

impl UpstreamStats {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            queries: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            latency_us: AtomicU64::new(0),
            buckets: Default::default(),
        }
    }

    /// The upstream's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A query sent to this upstream (retries and failovers count again).
    pub fn sent(&self) {
        self.queries.fetch_add(1, Relaxed);
    }

    /// A query to this upstream that failed: timeout, transport error, unusable answer.
    pub fn error(&self) {
        self.errors.fetch_add(1, Relaxed);
    }

    /// An answer from this upstream, `latency` after its query was sent.
    pub fn answered(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let slot = LATENCY_BUCKETS_US.partition_point(|&le| le < us);
        self.answered.fetch_add(1, Relaxed);
        self.latency_us.fetch_add(us, Relaxed);
        bump(self.buckets.get(slot));
    }

    fn snapshot(&self) -> UpstreamSnapshot {
        UpstreamSnapshot {
            addr: self.addr,
            queries: self.queries.load(Relaxed),
            errors: self.errors.load(Relaxed),
            answered: self.answered.load(Relaxed),
            latency_us: self.latency_us.load(Relaxed),
            buckets: std::array::from_fn(|i| self.buckets.get(i).map_or(0, |b| b.load(Relaxed))),
        }
    }
}

/// One list's figures, set on each load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListStat {
    /// The list's name as configured (file name or URL).
    pub name: String,
    /// Rules in the list.
    pub entries: u64,
    /// When it was last loaded successfully.
    pub loaded: SystemTime,
}

/// Figures the caller reads at snapshot time (they are state, not events).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Answers in the cache.
    pub cache_entries: u64,
    /// Bytes the cache holds.
    pub cache_bytes: u64,
    /// Query-log records written (0 with the log off).
    pub querylog_written: u64,
    /// Query-log records dropped (0 with the log off).
    pub querylog_dropped: u64,
    /// `[log.postgres]`: rows the database accepted, dropped, and waiting; `None` when it
    /// is off.
    pub querylog_postgres: Option<(u64, u64, u64)>,
}

/// One upstream's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSnapshot {
    /// The upstream's address.
    pub addr: SocketAddr,
    /// Queries sent.
    pub queries: u64,
    /// Queries that failed.
    pub errors: u64,
    /// Answers received (the latency histogram's count).
    pub answered: u64,
    /// Sum of the answers' latencies, in microseconds.
    pub latency_us: u64,
    /// Answers per latency bucket ([`LATENCY_BUCKETS_US`], then `+Inf`); not cumulative.
    pub buckets: [u64; LATENCY_SLOTS],
}

/// All counters and gauges as plain numbers; [`Snapshot::lines`] renders them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Queries per action, indexed like [`ACTIONS`].
    pub by_action: [u64; ACTIONS.len()],
    /// Queries per type, indexed like [`QTYPES`], then `other`.
    pub by_qtype: [u64; QTYPE_SLOTS],
    /// Queries per transport, indexed like [`Transport::ALL`].
    pub by_transport: [u64; Transport::ALL.len()],
    /// Cache lookups that hit.
    pub cache_hits: u64,
    /// Cache lookups that missed.
    pub cache_misses: u64,
    /// Rate-limit events, indexed like [`LimitEvent::ALL`].
    pub limits: [u64; LimitEvent::ALL.len()],
    /// Blocked queries per list (as named in the config), in the order the lists were
    /// first installed; then `other` when lists past [`LIST_SLOTS`] blocked some.
    pub blocked_by_list: Vec<(String, u64)>,
    /// Per upstream, in the order they were first seen.
    pub upstreams: Vec<UpstreamSnapshot>,
    /// Per list, as last set.
    pub lists: Vec<ListStat>,
    /// What the caller passed in.
    pub gauges: Gauges,
}

impl Snapshot {
    /// Queries answered with `a`.
    pub fn queries(&self, a: Action) -> u64 {
        self.by_action.get(action_index(a)).copied().unwrap_or(0)
    }

    /// Queries of type `t` (types not in [`QTYPES`] all count as `other`).
    pub fn queries_by_qtype(&self, t: u16) -> u64 {
        self.by_qtype.get(qtype_index(t)).copied().unwrap_or(0)
    }

    /// Rate-limit events of kind `e`.
    pub fn limit_events(&self, e: LimitEvent) -> u64 {
        self.limits.get(e as usize).copied().unwrap_or(0)
    }

    /// Queries that arrived over `t`.
    pub fn queries_by_transport(&self, t: Transport) -> u64 {
        self.by_transport.get(t as usize).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_several_threads_add_up_exactly() {
        let c = Arc::new(Counters::new());
        let up = c.upstream("192.0.2.1:53".parse().unwrap());
        // More threads than shards, so that some share one.
        let threads = SHARDS + 4;
        let n = 10_000u64;
        std::thread::scope(|s| {
            for t in 0..threads {
                let (c, up) = (&c, &up);
                s.spawn(move || {
                    for i in 0..n {
                        let action = ACTIONS[(t + i as usize) % ACTIONS.len()];
                        let qtype = if i.is_multiple_of(2) { 1 } else { 65280 };
                        c.query(action, qtype, Transport::ALL[t % 5]);
                        if i.is_multiple_of(4) {
                            c.cache_hit();
                        } else {
                            c.cache_miss();
                        }
                        up.sent();
                        up.answered(Duration::from_micros(i % 7_000));
                    }
                });
            }
        });
        let s = c.snapshot(Gauges::default());
        let total = threads as u64 * n;
        assert_eq!(s.by_action.iter().sum::<u64>(), total);
        assert_eq!(s.by_transport.iter().sum::<u64>(), total);
        assert_eq!(s.queries_by_qtype(1), total / 2);
        assert_eq!(s.queries_by_qtype(65280), total / 2);
        assert_eq!(s.queries_by_qtype(12345), total / 2, "`other` holds all");
        assert_eq!(s.cache_hits, total / 4);
        assert_eq!(s.cache_hits + s.cache_misses, total);
        // Each thread's actions cycle through all of them; the count is exact whatever their number.
        let per_action: u64 = (0..threads)
            .map(|t| {
                (0..n)
                    .filter(|i| (t + *i as usize) % ACTIONS.len() == 2)
                    .count() as u64
            })
            .sum();
        assert_eq!(s.queries(Action::Blocked), per_action);
        // 20 threads over 5 transports: 4 threads each.
        assert_eq!(s.queries_by_transport(Transport::Tls), 4 * n);
        let u = &s.upstreams[0];
        assert_eq!((u.queries, u.answered), (total, total));
        assert_eq!(u.buckets.iter().sum::<u64>(), total);
        let per_thread_us: u64 = (0..n).map(|i| i % 7_000).sum();
        assert_eq!(u.latency_us, per_thread_us * threads as u64);
    }

    #[test]
    fn latency_buckets_include_their_upper_bound() {
        let c = Counters::new();
        let u = c.upstream("192.0.2.1:53".parse().unwrap());
        for ms in [0, 1, 2, 5, 6, 5_000, 5_001, 60_000] {
            u.answered(Duration::from_millis(ms));
        }
        u.answered(Duration::MAX);
        let s = &c.snapshot(Gauges::default()).upstreams[0];
        assert_eq!(s.buckets, [2, 2, 1, 0, 0, 0, 0, 0, 0, 0, 1, 3]);
        assert_eq!(s.answered, 9);
    }

    #[test]
    fn upstream_registry_returns_the_same_stats_for_an_address() {
        let c = Counters::new();
        let a: SocketAddr = "192.0.2.1:53".parse().unwrap();
        let b: SocketAddr = "[2001:db8::1]:53".parse().unwrap();
        let ua = c.upstream(a);
        let ub = c.upstream(b);
        assert!(Arc::ptr_eq(&ua, &c.upstream(a)));
        assert!(!Arc::ptr_eq(&ua, &ub));
        ua.sent();
        c.upstream(a).error();
        let s = c.snapshot(Gauges::default());
        let addrs: Vec<_> = s.upstreams.iter().map(|u| u.addr).collect();
        assert_eq!(addrs, [a, b], "first seen, first rendered");
        assert_eq!((s.upstreams[0].queries, s.upstreams[0].errors), (1, 1));
    }

    #[test]
    fn list_slots_are_stable_and_overflow_into_other() {
        let c = Counters::new();
        let a = c.list_slot("a.txt");
        assert_eq!(c.list_slot("b.txt"), a + 1);
        assert_eq!(c.list_slot("a.txt"), a, "the same name, the same slot");
        for i in 0..LIST_SLOTS {
            c.list_slot(&format!("more-{i}.txt"));
        }
        let late = c.list_slot("late.txt");
        assert_eq!(usize::from(late), OTHER_LIST);
        c.blocked_by(a);
        c.blocked_by(a);
        c.blocked_by(late);
        c.blocked_by(u16::MAX); // out of range: ignored, no panic
        let s = c.snapshot(Gauges::default());
        assert_eq!(s.blocked_by_list.len(), LIST_SLOTS);
        assert_eq!(s.blocked_by_list[0], ("a.txt".to_string(), 2));
        assert_eq!(s.blocked_by_list.last().unwrap(), &("other".to_string(), 1));
    }

    #[test]
    fn qtype_table_matches_the_index_and_the_log_names() {
        for (i, (code, name)) in QTYPES.iter().enumerate() {
            assert_eq!(qtype_index(*code), i, "{name}");
            assert_eq!(crate::querylog::qtype_name(*code), *name);
        }
        assert_eq!(qtype_index(0), QTYPES.len());
        for (i, a) in ACTIONS.iter().enumerate() {
            assert_eq!(action_index(*a), i);
        }
        for (i, t) in Transport::ALL.iter().enumerate() {
            assert_eq!(*t as usize, i);
        }
    }
}
