//! `Cache`: upstream answers by (name, type, class, DO, CD), kept for their TTL (clamped to
//! `cache.min_ttl`/`max_ttl`), served with TTLs counted down by their age, bounded both by
//! `cache.max_entries` and by `cache.max_bytes` with least-recently-used eviction (recency
//! counted in 1/16 s: a hit moves an entry to the front at most 16 times a second).
//!
//! Only upstream answers go in (blocked answers never do, so a list change applies at once).
//! Sharded `std::sync::Mutex`es, never held across an `.await`; `now` is a parameter so that
//! tests control time. Each shard owns 1/16 of both bounds; an answer larger than a shard's
//! byte budget is not cached at all. A reload may change both bounds ([`Cache::resize`]):
//! what no longer fits is evicted, least recently used first; the rest stays.
//!
//! Two things the entries remember besides the answer, for resilience (see `stale.rs` for
//! the why): with `cache.serve_stale`, an expired entry stays (still bounded, still evicted
//! least recently used first) until that long past its expiry, to be served stale once the
//! upstreams have failed ([`Cache::after_failure`]); and a hit in the last tenth of the
//! TTL asks for one background refresh per entry (`cache.prefetch`). The prefetch check is
//! one comparison of the entry's age under the lock the hit takes anyway.
//!
//! An entry keeps one instant and counts the rest in seconds from it: each cached answer
//! costs an LRU node of its own, and at 100,000 answers the three instants it held before
//! were 3 MB (see `Entry`).

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use smallvec::SmallVec;

use super::Action;
use super::flow::{Answer, Flow, Reply};
use super::request::Request;
use crate::dns::wire::Response;

const SHARDS: usize = 16;

/// Bytes charged per entry besides the answer itself: the `Arc` header and `Response`
/// struct, the LRU node (key, value, two links), the key's box when it is too long to sit
/// in the node, and its hash-table slot.
/// An estimate of the allocator's real cost, on the generous side.
pub const ENTRY_OVERHEAD: usize = 192;

/// One cached answer. Its fields are packed (one instant, the rest seconds from it, the
/// recheck mark in a niche): 40 bytes, so that the LRU node holding it, its key inline
/// ([`Key`]) and two links is a 112-byte allocation (see [`Key`]).
struct Entry {
    resp: Arc<Response>,
    stored: Instant,
    /// The TTL in seconds: it expires `ttl` after `stored`; a hit in its last tenth asks for
    /// a prefetch.
    ttl: u32,
    /// What this entry is charged against the byte budget (an answer is at most 64 KiB).
    size: u32,
    /// Expired, and the upstreams failed for it: until this many seconds after `stored` it
    /// is served stale at once; a hit after it is served stale too and asks for one
    /// background retry (RFC 8767's failure recheck timer). `None` while no failure has
    /// been seen (a mark is never 0: it is at least [`RECHECK`]).
    recheck: Option<NonZeroU32>,
    /// A prefetch was asked for: not another for this entry.
    prefetching: bool,
    /// The tick of its age (counted modulo 2^16) in which it was last moved to the front of
    /// the LRU (see [`Entry::moved_this_tick`]).
    moved: u16,
}

impl Entry {
    /// What it is charged against the byte budget.
    fn charged(&self) -> usize {
        usize::try_from(self.size).unwrap_or(usize::MAX)
    }

    /// Its age at `now` (zero before it was stored).
    fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.stored)
    }

    /// Whether a hit at `age` should move it to the front of the LRU: only on the first
    /// hit in each [`MOVE_TICKS_PER_SEC`]th of a second of its age (a stored entry starts
    /// at the front, in tick 0).
    ///
    /// A move rewrites the links of the entry, of its neighbours and of the shard's head.
    /// Two UDP threads hitting the same hot names then kept taking those lines from each
    /// other's cache: after the lab's miss workload had filled the cache, the lookup was
    /// 9 % of a cached answer's CPU, half of it waiting for the entry's line
    /// (`docs/performance.md`). Moved at most once a tick, a hot entry's line is read, not
    /// written, by most hits; eviction still takes the least recently used entry first,
    /// to the tick. The tick is short so that a hot name still moves before a flood of
    /// new names (a random-subdomain attack) pushes it out: that takes
    /// `max_entries` × [`MOVE_TICKS_PER_SEC`] misses a second.
    fn moved_this_tick(&mut self, age: Duration) -> bool {
        let ticks = age
            .as_secs()
            .wrapping_mul(MOVE_TICKS_PER_SEC)
            .wrapping_add(u64::from(age.subsec_nanos() / NANOS_PER_TICK));
        // The low 16 bits (4,096 s): a hit exactly a multiple of that after the last move,
        // with no hit between, skips one move; harmless.
        let tick = (ticks & 0xffff) as u16;
        // Written only when it changes: a store on every hit would take the line from the
        // other core's cache just the same.
        if tick == self.moved {
            return false;
        }
        self.moved = tick;
        true
    }

    /// The recheck mark for a failure seen at age `age`: [`RECHECK`] later, in whole
    /// seconds rounded up (never early).
    fn recheck_after(age: Duration) -> Option<NonZeroU32> {
        let secs = age
            .as_secs()
            .saturating_add(u64::from(age.subsec_nanos() > 0))
            .saturating_add(RECHECK.as_secs());
        NonZeroU32::new(u32::try_from(secs).unwrap_or(u32::MAX))
    }
}

/// How often a hit may move an entry to the front of the LRU, per second of its age.
const MOVE_TICKS_PER_SEC: u64 = 16;

/// One tick in nanoseconds.
const NANOS_PER_TICK: u32 = 1_000_000_000 / MOVE_TICKS_PER_SEC as u32;

/// How long after a failure an expired answer is served stale without asking an upstream
/// again: RFC 8767 §5's failure recheck timer (30 s).
pub const RECHECK: Duration = Duration::from_secs(30);

/// What a lookup found in an entry.
enum Judged {
    /// An answer to serve.
    Hit(Hit),
    /// Expired, and no failure seen: the upstreams are asked.
    Miss,
    /// Past the stale window: the entry goes.
    Gone,
}

/// A cached answer found for a key.
#[derive(Debug, Clone)]
pub enum Hit {
    /// Not expired: its TTLs are counted down by `age` seconds.
    Fresh {
        /// The answer.
        resp: Arc<Response>,
        /// Seconds since it was stored.
        age: u32,
        /// This hit asks for a background refresh (a prefetch).
        refresh: bool,
    },
    /// Expired within `cache.serve_stale`, after the upstreams failed for it: served stale.
    Stale {
        /// The answer.
        resp: Arc<Response>,
        /// This hit asks for a background retry (the recheck timer ran out).
        refresh: bool,
    },
}

/// A cache key (name, type, class and flags; see `Query::cache_key`), inline in the LRU
/// node when it is at most 40 bytes: 96 % of the names in the Pi-hole log of
/// `../shared/data/observed` and 82 % of Umbrella's top 100,000. Boxed, it cost a second
/// allocation (48 bytes for a typical name) and, on every hit, a wait for the line it sat
/// on before the key could be compared.
type Key = SmallVec<[u8; 40]>;

/// One shard: its LRU and the bytes its entries are charged.
///
/// The LRU's table grows with its entries instead of being sized for its bound up front
/// (`lru`'s bounded constructors preallocate): at the default `max_entries` of 100,000, a
/// shard's table was 8,192 buckets from the start, so a thousand hot names were scattered
/// over 2 MB, and a hit waited for lines that the kernel's work between batches had pushed
/// out of the core's cache. Grown to fit, they share a few pages (`docs/performance.md`).
struct ShardInner {
    lru: LruCache<Key, Entry, foldhash::fast::RandomState>,
    bytes: usize,
}

impl ShardInner {
    fn remove(&mut self, key: &[u8]) {
        if let Some(e) = self.lru.pop(key) {
            self.bytes = self.bytes.saturating_sub(e.charged());
        }
    }
}

/// Keys come from clients, so the hash is seeded per process (foldhash: fast and
/// flood-resistant enough for a bounded LRU).
type Shard = Mutex<ShardInner>;

/// The answer cache.
pub struct Cache {
    shards: Box<[Shard]>,
    /// Byte budget of one shard; 0 when caching is off.
    shard_bytes: AtomicUsize,
    /// `cache.serve_stale`, seconds (0: expired entries go at once).
    stale_secs: AtomicU64,
    /// `cache.prefetch`.
    prefetch: AtomicBool,
}

/// Entries one shard may hold for a `max_entries` bound (at least 1: a shard always has
/// room for one, and `shard_bytes` 0 turns the cache off).
fn per_shard(max_entries: usize) -> NonZeroUsize {
    NonZeroUsize::new(max_entries.div_ceil(SHARDS)).unwrap_or(NonZeroUsize::MIN)
}

/// A shard's byte budget for the bounds (0 = off).
fn shard_budget(max_entries: usize, max_bytes: usize) -> usize {
    if max_entries == 0 {
        0
    } else {
        max_bytes / SHARDS
    }
}

impl Cache {
    /// A cache holding at most `max_entries` answers and, by [`Cache::bytes`], at most
    /// `max_bytes` (either 0 = no caching).
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        let per = per_shard(max_entries);
        let shards = (0..SHARDS)
            .map(|_| {
                let mut lru = LruCache::unbounded_with_hasher(Default::default());
                // Bounded without preallocating (see `ShardInner`).
                lru.resize(per);
                Mutex::new(ShardInner { lru, bytes: 0 })
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Self {
            shards,
            shard_bytes: AtomicUsize::new(shard_budget(max_entries, max_bytes)),
            stale_secs: AtomicU64::new(0),
            prefetch: AtomicBool::new(false),
        }
    }

    /// Sets how long expired answers are kept to be served stale (zero: not at all) and
    /// whether hits late in an answer's TTL ask for a prefetch; a reload may change both.
    pub fn set_resilience(&self, serve_stale: Duration, prefetch: bool) {
        self.stale_secs
            .store(serve_stale.as_secs(), Ordering::Relaxed);
        self.prefetch.store(prefetch, Ordering::Relaxed);
    }

    /// How long past expiry an entry may still be served stale.
    fn stale_window(&self) -> Duration {
        Duration::from_secs(self.stale_secs.load(Ordering::Relaxed))
    }

    /// Applies new bounds (a reload): entries beyond them are evicted, least recently used
    /// first; bounds of 0 empty the cache and turn it off.
    pub fn resize(&self, max_entries: usize, max_bytes: usize) {
        let budget = shard_budget(max_entries, max_bytes);
        let per = per_shard(max_entries);
        self.shard_bytes.store(budget, Ordering::Relaxed);
        for shard in &self.shards {
            let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
            while s.lru.len() > per.get() || (s.bytes > budget && !s.lru.is_empty()) {
                match s.lru.pop_lru() {
                    Some((_, old)) => s.bytes = s.bytes.saturating_sub(old.charged()),
                    None => break,
                }
            }
            s.lru.resize(per);
        }
    }

    /// Drops every entry (a reload that changes how upstream answers are judged before
    /// they are stored: `blocking.response_ips`, rebinding protection).
    pub fn clear(&self) {
        for shard in &self.shards {
            let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
            s.lru.clear();
            s.bytes = 0;
        }
    }

    fn shard(&self, key: &[u8]) -> Option<&Shard> {
        if self.shard_bytes.load(Ordering::Relaxed) == 0 {
            return None;
        }
        // FNV-1a: cheap, and the shard index needs no quality beyond spreading names.
        let h = key.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        self.shards.get((h % SHARDS as u64) as usize)
    }

    /// The stage: the cached answer for `req`, its TTLs counted down to `req.now` (or
    /// stale, while the upstreams fail for it), or [`Flow::Next`] on a miss; and whether
    /// this hit asks for a background refresh (prefetch, or a stale entry's retry).
    pub fn check(&self, req: &Request<'_>) -> (Flow, bool) {
        let mut key = [0u8; 262];
        match self.lookup(req.query.cache_key(&mut key), req.now.mono, false) {
            Some(hit) => {
                let refresh = match &hit {
                    Hit::Fresh { refresh, .. } | Hit::Stale { refresh, .. } => *refresh,
                };
                (Flow::Answer(hit.answer()), refresh)
            }
            None => (Flow::Next, false),
        }
    }

    /// After every upstream failed for `req` (at `now`): the answer to serve instead of
    /// SERVFAIL, if any. An expired one within `cache.serve_stale` comes back
    /// [`Hit::Stale`], and is served stale at once for [`RECHECK`] from `now`; a fresh one
    /// (stored by another query meanwhile) as it is.
    pub fn after_failure(&self, req: &Request<'_>, now: Instant) -> Option<Hit> {
        let mut key = [0u8; 262];
        self.lookup(req.query.cache_key(&mut key), now, true)
    }

    /// Stores an upstream answer for `req`, as of `req.now` (see [`Cache::put`]).
    pub fn store(&self, req: &Request<'_>, resp: &Arc<Response>) {
        let mut key = [0u8; 262];
        self.put(req.query.cache_key(&mut key), resp, req.now.mono);
    }

    /// The cached answer for `key` and its age in whole seconds, if it has not expired.
    pub fn get(&self, key: &[u8], now: Instant) -> Option<(Arc<Response>, u32)> {
        match self.lookup(key, now, false)? {
            Hit::Fresh { resp, age, .. } => Some((resp, age)),
            Hit::Stale { .. } => None,
        }
    }

    /// The entry for `key` as of `now`. `failed`: the upstreams just failed for it, so an
    /// expired entry within the stale window is served stale from now on (its recheck timer
    /// starts). An entry past the stale window goes.
    pub fn lookup(&self, key: &[u8], now: Instant, failed: bool) -> Option<Hit> {
        let mut shard = self.shard(key)?.lock().unwrap_or_else(|p| p.into_inner());
        let e = shard.lru.peek_mut(key)?;
        let age = e.age(now);
        let to_front = e.moved_this_tick(age);
        let judged = self.judge(e, age, failed);
        if matches!(judged, Judged::Gone) {
            shard.remove(key);
        } else if to_front {
            shard.lru.promote(key);
        }
        match judged {
            Judged::Hit(hit) => Some(hit),
            Judged::Miss | Judged::Gone => None,
        }
    }

    /// What entry `e`, `age` old, makes of a lookup (see [`Cache::lookup`]).
    fn judge(&self, e: &mut Entry, age: Duration, failed: bool) -> Judged {
        let ttl = Duration::from_secs(u64::from(e.ttl));
        if age < ttl {
            // The hot path: one more comparison, usually false.
            let refresh = age >= ttl - ttl / 10
                && !e.prefetching
                && !failed
                && self.prefetch.load(Ordering::Relaxed);
            if refresh {
                e.prefetching = true;
            }
            let age = u32::try_from(age.as_secs()).unwrap_or(u32::MAX);
            let resp = Arc::clone(&e.resp);
            return Judged::Hit(Hit::Fresh { resp, age, refresh });
        }
        let window = self.stale_window();
        if ttl.checked_add(window).is_none_or(|end| age >= end) {
            return Judged::Gone;
        }
        let refresh = match (e.recheck, failed) {
            (_, true) => {
                e.recheck = Entry::recheck_after(age);
                false
            }
            // Expired, and no failure seen: a miss, which asks the upstreams.
            (None, false) => return Judged::Miss,
            (Some(t), false) if age >= Duration::from_secs(u64::from(t.get())) => {
                e.recheck = Entry::recheck_after(age);
                true
            }
            (Some(_), false) => false,
        };
        let resp = Arc::clone(&e.resp);
        Judged::Hit(Hit::Stale { resp, refresh })
    }

    /// What an entry for `key` holding `resp` is charged against `cache.max_bytes`.
    pub fn entry_size(key: &[u8], resp: &Response) -> usize {
        key.len() + resp.size_estimate() + ENTRY_OVERHEAD
    }

    /// Stores an answer when it is cacheable (`cache_ttl` > 0) and fits a shard's byte
    /// budget; evicts least recently used entries until the shard is within both bounds.
    pub fn put(&self, key: &[u8], resp: &Arc<Response>, now: Instant) {
        let Some(ttl) = resp.cache_ttl else { return };
        let Some(shard) = self.shard(key) else { return };
        let size = Self::entry_size(key, resp);
        let budget = self.shard_bytes.load(Ordering::Relaxed);
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        if size > budget {
            // Too large to ever fit: not cached, and an older answer for the key goes too
            // (it would be served instead of the newer one).
            shard.remove(key);
            return;
        }
        // Within the budget, which a u32 of bytes per entry always is in practice; an entry
        // that would not fit one is not cached.
        let Ok(charged) = u32::try_from(size) else {
            shard.remove(key);
            return;
        };
        let entry = Entry {
            resp: Arc::clone(resp),
            stored: now,
            ttl,
            size: charged,
            recheck: None,
            prefetching: false,
            moved: 0,
        };
        // `push` hands back the old entry for this key, or the one evicted for room.
        if let Some((_, old)) = shard.lru.push(Key::from_slice(key), entry) {
            shard.bytes = shard.bytes.saturating_sub(old.charged());
        }
        shard.bytes = shard.bytes.saturating_add(size);
        while shard.bytes > budget {
            match shard.lru.pop_lru() {
                Some((_, old)) => shard.bytes = shard.bytes.saturating_sub(old.charged()),
                None => break,
            }
        }
    }

    /// Number of entries held (expired ones included until they are touched or evicted).
    pub fn len(&self) -> usize {
        self.sum(|s| s.lru.len())
    }

    /// Bytes the entries held are charged (see [`Cache::entry_size`]); at most
    /// `cache.max_bytes`.
    pub fn bytes(&self) -> usize {
        self.sum(|s| s.bytes)
    }

    fn sum(&self, f: impl Fn(&ShardInner) -> usize) -> usize {
        self.shards
            .iter()
            .map(|m| f(&m.lock().unwrap_or_else(|p| p.into_inner())))
            .sum()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Hit {
    /// The answer this hit makes: [`Action::Cached`], or [`Action::Stale`] (TTL 30, EDE 3).
    pub fn answer(self) -> Answer {
        match self {
            Self::Fresh { resp, age, .. } => Answer::new(
                Action::Cached,
                Reply::Upstream {
                    resp,
                    age,
                    server: None,
                    stale: false,
                },
            ),
            Self::Stale { resp, .. } => Answer::new(
                Action::Stale,
                Reply::Upstream {
                    resp,
                    age: 0,
                    server: None,
                    stale: true,
                },
            ),
        }
    }
}

#[cfg(test)]
mod tests;
