//! `Cache`: upstream answers by (name, type, class, DO, CD), kept for their TTL (clamped to
//! `cache.min_ttl`/`max_ttl`), served with TTLs counted down by their age, bounded by
//! `cache.max_entries` with least-recently-used eviction.
//!
//! Only upstream answers go in (blocked answers never do, so a list change applies at once).
//! Sharded `std::sync::Mutex`es, never held across an `.await`; `now` is a parameter so that
//! tests control time.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::dns::wire::Response;

const SHARDS: usize = 16;

struct Entry {
    resp: Arc<Response>,
    stored: Instant,
    expires: Instant,
}

/// Keys come from clients, so the hash is seeded per process (foldhash: fast and
/// flood-resistant enough for a bounded LRU).
type Shard = Mutex<LruCache<Box<[u8]>, Entry, foldhash::fast::RandomState>>;

/// The answer cache.
pub struct Cache {
    shards: Option<Box<[Shard]>>,
}

impl Cache {
    /// A cache holding at most `max_entries` answers (0 = no caching).
    pub fn new(max_entries: usize) -> Self {
        let shards = NonZeroUsize::new(max_entries.div_ceil(SHARDS)).map(|per| {
            (0..SHARDS)
                .map(|_| Mutex::new(LruCache::with_hasher(per, Default::default())))
                .collect::<Vec<_>>()
                .into_boxed_slice()
        });
        Self { shards }
    }

    fn shard(&self, key: &[u8]) -> Option<&Shard> {
        let shards = self.shards.as_ref()?;
        // FNV-1a: cheap, and the shard index needs no quality beyond spreading names.
        let h = key.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Some(&shards[(h % SHARDS as u64) as usize])
    }

    /// The cached answer for `key` and its age in whole seconds, if it has not expired.
    pub fn get(&self, key: &[u8], now: Instant) -> Option<(Arc<Response>, u32)> {
        let mut shard = self.shard(key)?.lock().unwrap_or_else(|p| p.into_inner());
        let e = shard.get(key)?;
        if now >= e.expires {
            shard.pop(key);
            return None;
        }
        let age = u32::try_from(now.duration_since(e.stored).as_secs()).unwrap_or(u32::MAX);
        Some((Arc::clone(&e.resp), age))
    }

    /// Stores an answer when it is cacheable (`cache_ttl` > 0).
    pub fn put(&self, key: &[u8], resp: &Arc<Response>, now: Instant) {
        let Some(ttl) = resp.cache_ttl else { return };
        let Some(shard) = self.shard(key) else { return };
        let entry = Entry {
            resp: Arc::clone(resp),
            stored: now,
            expires: now + Duration::from_secs(u64::from(ttl)),
        };
        shard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(key.into(), entry);
    }

    /// Number of entries held (expired ones included until they are touched or evicted).
    pub fn len(&self) -> usize {
        self.shards.as_ref().map_or(0, |s| {
            s.iter()
                .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).len())
                .sum()
        })
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
    use hickory_proto::rr::{Name, RData, Record, RecordType, rdata::A};

    fn answer(ttl: u32) -> (crate::dns::wire::Query, Arc<Response>) {
        let name = Name::from_ascii("www.test.").unwrap();
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.add_query(HQuery::query(name.clone(), RecordType::A));
        let q = parse_query(&m.to_vec().unwrap()).unwrap();
        m.metadata.message_type = MessageType::Response;
        m.answers.push(Record::from_rdata(
            name,
            ttl,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        let r = Response::from_upstream(&m.to_vec().unwrap(), &q, 7, 0, 86400).unwrap();
        (q, Arc::new(r))
    }

    #[test]
    fn hit_within_ttl_ages_and_expires() {
        let c = Cache::new(10);
        let (q, r) = answer(30);
        let mut k = [0; 262];
        let key = q.cache_key(&mut k).to_vec();
        let t0 = Instant::now();
        c.put(&key, &r, t0);
        let (_, age) = c.get(&key, t0 + Duration::from_secs(12)).unwrap();
        assert_eq!(age, 12);
        assert!(c.get(&key, t0 + Duration::from_secs(30)).is_none());
    }

    #[test]
    fn bounded_by_max_entries() {
        let c = Cache::new(SHARDS);
        let (_, r) = answer(300);
        let now = Instant::now();
        for i in 0..1000u32 {
            c.put(&i.to_be_bytes(), &r, now);
        }
        assert!(c.len() <= SHARDS, "{}", c.len());
    }

    #[test]
    fn zero_ttl_and_disabled_cache_store_nothing() {
        let (q, r0) = answer(0);
        let c = Cache::new(10);
        let mut k = [0; 262];
        let key = q.cache_key(&mut k).to_vec();
        c.put(&key, &r0, Instant::now());
        assert!(c.is_empty());
        let off = Cache::new(0);
        let (_, r) = answer(60);
        off.put(&key, &r, Instant::now());
        assert!(off.get(&key, Instant::now()).is_none());
    }
}
