//! `Cache`: upstream answers by (name, type, class, DO, CD), kept for their TTL (clamped to
//! `cache.min_ttl`/`max_ttl`), served with TTLs counted down by their age, bounded both by
//! `cache.max_entries` and by `cache.max_bytes` with least-recently-used eviction.
//!
//! Only upstream answers go in (blocked answers never do, so a list change applies at once).
//! Sharded `std::sync::Mutex`es, never held across an `.await`; `now` is a parameter so that
//! tests control time. Each shard owns 1/16 of both bounds; an answer larger than a shard's
//! byte budget is not cached at all. A reload may change both bounds ([`Cache::resize`]):
//! what no longer fits is evicted, least recently used first; the rest stays.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;

use super::Action;
use super::flow::{Answer, Flow, Reply};
use super::request::Request;
use crate::dns::wire::Response;

const SHARDS: usize = 16;

/// Bytes charged per entry besides the answer itself: the key's box, the `Arc` header and
/// `Response` struct, the LRU node (key, value, two links) and its hash-table slot.
/// An estimate of the allocator's real cost, on the generous side.
pub const ENTRY_OVERHEAD: usize = 192;

struct Entry {
    resp: Arc<Response>,
    stored: Instant,
    expires: Instant,
    /// What this entry is charged against the byte budget.
    size: usize,
}

/// One shard: its LRU and the bytes its entries are charged.
struct ShardInner {
    lru: LruCache<Box<[u8]>, Entry, foldhash::fast::RandomState>,
    bytes: usize,
}

impl ShardInner {
    fn remove(&mut self, key: &[u8]) {
        if let Some(e) = self.lru.pop(key) {
            self.bytes -= e.size;
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
                Mutex::new(ShardInner {
                    lru: LruCache::with_hasher(per, Default::default()),
                    bytes: 0,
                })
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Self {
            shards,
            shard_bytes: AtomicUsize::new(shard_budget(max_entries, max_bytes)),
        }
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
                    Some((_, old)) => s.bytes -= old.size,
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

    /// The stage: the cached answer for `req`, its TTLs counted down to `req.now`, or
    /// [`Flow::Next`] on a miss.
    pub fn check(&self, req: &Request<'_>) -> Flow {
        let mut key = [0u8; 262];
        match self.get(req.query.cache_key(&mut key), req.now.mono) {
            Some((resp, age)) => Flow::Answer(Answer::new(
                Action::Cached,
                Reply::Upstream {
                    resp,
                    age,
                    server: None,
                },
            )),
            None => Flow::Next,
        }
    }

    /// Stores an upstream answer for `req`, as of `req.now` (see [`Cache::put`]).
    pub fn store(&self, req: &Request<'_>, resp: &Arc<Response>) {
        let mut key = [0u8; 262];
        self.put(req.query.cache_key(&mut key), resp, req.now.mono);
    }

    /// The cached answer for `key` and its age in whole seconds, if it has not expired.
    pub fn get(&self, key: &[u8], now: Instant) -> Option<(Arc<Response>, u32)> {
        let mut shard = self.shard(key)?.lock().unwrap_or_else(|p| p.into_inner());
        let e = shard.lru.get(key)?;
        if now >= e.expires {
            shard.remove(key);
            return None;
        }
        let age = u32::try_from(now.duration_since(e.stored).as_secs()).unwrap_or(u32::MAX);
        Some((Arc::clone(&e.resp), age))
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
        let entry = Entry {
            resp: Arc::clone(resp),
            stored: now,
            expires: now + Duration::from_secs(u64::from(ttl)),
            size,
        };
        // `push` hands back the old entry for this key, or the one evicted for room.
        if let Some((_, old)) = shard.lru.push(key.into(), entry) {
            shard.bytes -= old.size;
        }
        shard.bytes += size;
        while shard.bytes > budget {
            match shard.lru.pop_lru() {
                Some((_, old)) => shard.bytes -= old.size,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::wire::{Response, parse_query};
    use hickory_proto::op::{Message, MessageType, OpCode, Query as HQuery};
    use hickory_proto::rr::rdata::{A, TXT};
    use hickory_proto::rr::{Name, RData, Record};

    const MIB: usize = 1 << 20;

    fn answer_with(ttl: u32, rdata: RData) -> (crate::dns::wire::Query, Arc<Response>) {
        let name = Name::from_ascii("www.test.").unwrap();
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.add_query(HQuery::query(name.clone(), rdata.record_type()));
        let q = parse_query(&m.to_vec().unwrap()).unwrap();
        m.metadata.message_type = MessageType::Response;
        m.answers.push(Record::from_rdata(name, ttl, rdata));
        let r = Response::from_upstream(&m.to_vec().unwrap(), &q, 7, 0, 86400).unwrap();
        (q, Arc::new(r))
    }

    fn answer(ttl: u32) -> (crate::dns::wire::Query, Arc<Response>) {
        answer_with(ttl, RData::A(A::new(192, 0, 2, 1)))
    }

    /// A TXT answer of about `kib` KiB.
    fn big(kib: usize) -> Arc<Response> {
        let strings = vec!["x".repeat(250); kib * 1024 / 251];
        answer_with(300, RData::TXT(TXT::new(strings))).1
    }

    #[test]
    fn hit_within_ttl_ages_and_expires() {
        let c = Cache::new(10, MIB);
        let (q, r) = answer(30);
        let mut k = [0; 262];
        let key = q.cache_key(&mut k).to_vec();
        let t0 = Instant::now();
        c.put(&key, &r, t0);
        let (_, age) = c.get(&key, t0 + Duration::from_secs(12)).unwrap();
        assert_eq!(age, 12);
        assert!(c.get(&key, t0 + Duration::from_secs(30)).is_none());
        assert_eq!(
            (c.len(), c.bytes()),
            (0, 0),
            "an expired entry is no longer charged"
        );
    }

    #[test]
    fn bounded_by_max_entries() {
        let c = Cache::new(SHARDS, MIB);
        let (_, r) = answer(300);
        let now = Instant::now();
        for i in 0..1000u32 {
            c.put(&i.to_be_bytes(), &r, now);
        }
        assert!(c.len() <= SHARDS, "{}", c.len());
        assert_eq!(c.bytes(), c.len() * Cache::entry_size(&[0; 4], &r));
    }

    // See: #10 (600 names with 60 KB TXT answers took RSS from 8 to 82 MiB).
    #[test]
    fn r10_bounded_by_max_bytes() {
        let c = Cache::new(100_000, 4 * MIB);
        let r = big(60);
        let now = Instant::now();
        for i in 0..600u32 {
            c.put(&i.to_be_bytes(), &r, now);
        }
        let (n, bytes) = (c.len(), c.bytes());
        assert!(bytes <= 4 * MIB, "{bytes} bytes in {n} entries");
        assert!(n >= 16, "the budget still holds some large answers: {n}");
        // Small answers are evicted least recently used first, and replacing a key does
        // not count it twice.
        let (_, small) = answer(300);
        for _ in 0..3 {
            c.put(b"small", &small, now);
        }
        assert!(c.get(b"small", now).is_some());
        assert!(c.bytes() <= 4 * MIB);
    }

    #[test]
    fn r10_answer_larger_than_a_shard_is_not_cached() {
        // 16 shards of 32 KiB: a 60 KiB answer never fits, and an older answer for the
        // same key is dropped rather than served instead.
        let c = Cache::new(100, 512 * 1024);
        let (_, small) = answer(300);
        let now = Instant::now();
        c.put(b"k", &small, now);
        c.put(b"k", &big(60), now);
        assert!(c.get(b"k", now).is_none());
        assert_eq!((c.len(), c.bytes()), (0, 0));
    }

    #[test]
    fn resize_evicts_what_no_longer_fits_and_can_turn_the_cache_off_and_on() {
        let c = Cache::new(1000, MIB);
        let (_, r) = answer(300);
        let now = Instant::now();
        for i in 0..500u32 {
            c.put(&i.to_be_bytes(), &r, now);
        }
        assert_eq!(c.len(), 500);
        c.resize(SHARDS * 2, MIB);
        assert!(c.len() <= SHARDS * 2, "{}", c.len());
        assert_eq!(c.bytes(), c.len() * Cache::entry_size(&[0; 4], &r));
        c.clear();
        assert_eq!((c.len(), c.bytes()), (0, 0));
        c.put(b"k", &r, now);
        assert_eq!(c.len(), 1, "still on after a clear");
        c.resize(0, MIB);
        assert_eq!((c.len(), c.bytes()), (0, 0));
        c.put(b"k", &r, now);
        assert!(c.get(b"k", now).is_none(), "off");
        c.resize(100, MIB);
        c.put(b"k", &r, now);
        assert!(c.get(b"k", now).is_some(), "on again");
    }

    #[test]
    fn the_stage_answers_from_the_cache_as_of_the_requests_now() {
        use super::super::request::test_support::{fixed_now, request};
        let c = Cache::new(10, MIB);
        let (q, r) = answer(30);
        let now = fixed_now();
        let mut req = request("www.test", q.qtype, false, now);
        req.query = std::borrow::Cow::Owned(q);
        assert!(matches!(c.check(&req), Flow::Next));
        c.store(&req, &r);
        req.now = now.after(Duration::from_secs(12));
        match c.check(&req) {
            Flow::Answer(Answer {
                action: Action::Cached,
                reply: Reply::Upstream { age, .. },
                ..
            }) => assert_eq!(age, 12),
            other => panic!("{other:?}"),
        }
        req.now = now.after(Duration::from_secs(30));
        assert!(matches!(c.check(&req), Flow::Next), "expired");
    }

    #[test]
    fn zero_ttl_and_disabled_cache_store_nothing() {
        let (q, r0) = answer(0);
        let c = Cache::new(10, MIB);
        let mut k = [0; 262];
        let key = q.cache_key(&mut k).to_vec();
        c.put(&key, &r0, Instant::now());
        assert!(c.is_empty());
        let (_, r) = answer(60);
        for off in [Cache::new(0, MIB), Cache::new(10, 0)] {
            off.put(&key, &r, Instant::now());
            assert!(off.get(&key, Instant::now()).is_none());
        }
    }
}
