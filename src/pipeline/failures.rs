//! `Failures`: names every upstream failed for, remembered for `cache.failure_ttl_s`
//! (RFC 9520), so that repeated queries for a dead name answer SERVFAIL at once instead of
//! each costing a full upstream timeout.
//!
//! A failure is a forward that ended in an error (timeouts, transport errors, SERVFAIL or
//! REFUSED from every server), never NXDOMAIN or NODATA, which are answers and go through
//! the negative cache. Keyed by (name, type, class): the cache key without its flag bits.
//! Bounded ([`MAX_FAILURES`], least recently used go first); one mutex, taken only on a
//! cache miss while some failure is remembered (an atomic count says when none is). `now`
//! is passed in, as for the cache.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lru::LruCache;

use super::request::Request;

/// Most failures remembered at once.
pub const MAX_FAILURES: usize = 8192;

/// The failure cache.
pub struct Failures {
    /// Key → until when the failure stands.
    map: Mutex<LruCache<Box<[u8]>, Instant, foldhash::fast::RandomState>>,
    /// Entries in `map`: a miss looks no further while it is 0.
    len: AtomicUsize,
    /// `cache.failure_ttl_s` in milliseconds (0: off).
    ttl_ms: AtomicU64,
}

impl std::fmt::Debug for Failures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failures")
            .field("len", &self.len.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The failure key of a cache key: (name, type, class) without the flag byte.
fn failure_key(cache_key: &[u8]) -> &[u8] {
    cache_key.split_last().map_or(cache_key, |(_, k)| k)
}

impl Failures {
    /// A failure cache remembering each failure for `ttl` (zero: off).
    pub fn new(ttl: Duration) -> Self {
        let cap = NonZeroUsize::new(MAX_FAILURES).unwrap_or(NonZeroUsize::MIN);
        let f = Self {
            map: Mutex::new(LruCache::with_hasher(cap, Default::default())),
            len: AtomicUsize::new(0),
            ttl_ms: AtomicU64::new(0),
        };
        f.set_ttl(ttl);
        f
    }

    /// Changes how long failures are remembered (a reload); zero forgets them all.
    pub fn set_ttl(&self, ttl: Duration) {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.ttl_ms.store(ms, Ordering::Relaxed);
        if ms == 0 {
            let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
            m.clear();
            self.len.store(0, Ordering::Relaxed);
        }
    }

    /// True when every upstream failed for `req`'s question less than the failure TTL
    /// before `req.now`.
    pub fn check(&self, req: &Request<'_>) -> bool {
        if self.len.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let mut buf = [0u8; 262];
        self.contains(failure_key(req.query.cache_key(&mut buf)), req.now.mono)
    }

    /// Remembers that every upstream failed for `req`'s question at `now`.
    pub fn record(&self, req: &Request<'_>, now: Instant) {
        let mut buf = [0u8; 262];
        self.insert(failure_key(req.query.cache_key(&mut buf)), now);
    }

    /// True when a failure for `key` stands at `now`; a lapsed one is forgotten.
    pub fn contains(&self, key: &[u8], now: Instant) -> bool {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(key) {
            Some(&until) if now < until => true,
            Some(_) => {
                m.pop(key);
                self.len.store(m.len(), Ordering::Relaxed);
                false
            }
            None => false,
        }
    }

    /// Remembers a failure for `key` at `now`, for the failure TTL (nothing when off).
    pub fn insert(&self, key: &[u8], now: Instant) {
        let ms = self.ttl_ms.load(Ordering::Relaxed);
        if ms == 0 {
            return;
        }
        let until = now + Duration::from_millis(ms);
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.push(key.into(), until);
        self.len.store(m.len(), Ordering::Relaxed);
    }

    /// Failures remembered (lapsed ones included until they are looked at or evicted).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// True when no failure is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_stands_for_its_ttl_then_lapses() {
        let f = Failures::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert!(!f.contains(b"k", t0));
        f.insert(b"k", t0);
        assert!(f.contains(b"k", t0 + Duration::from_millis(4999)));
        assert!(!f.contains(b"other", t0));
        assert!(!f.contains(b"k", t0 + Duration::from_secs(5)), "lapsed");
        assert!(f.is_empty(), "a lapsed failure is forgotten");
    }

    #[test]
    fn off_remembers_nothing_and_turning_off_forgets() {
        let f = Failures::new(Duration::ZERO);
        let t0 = Instant::now();
        f.insert(b"k", t0);
        assert!(!f.contains(b"k", t0));
        f.set_ttl(Duration::from_secs(5));
        f.insert(b"k", t0);
        assert!(f.contains(b"k", t0));
        f.set_ttl(Duration::ZERO);
        assert!(f.is_empty());
        assert!(!f.contains(b"k", t0));
    }

    #[test]
    fn bounded() {
        let f = Failures::new(Duration::from_secs(5));
        let t0 = Instant::now();
        for i in 0..(MAX_FAILURES as u32 + 100) {
            f.insert(&i.to_be_bytes(), t0);
        }
        assert_eq!(f.len(), MAX_FAILURES);
    }

    #[test]
    fn the_key_is_name_type_and_class_whatever_the_flags() {
        use super::super::request::test_support::{fixed_now, request};
        let f = Failures::new(Duration::from_secs(5));
        let now = fixed_now();
        let plain = request("dead.test", 1, false, now);
        let with_edns = request("dead.test", 1, true, now);
        f.record(&plain, now.mono);
        assert!(f.check(&with_edns));
        assert!(
            !f.check(&request("dead.test", 28, false, now)),
            "another type"
        );
        assert!(!f.check(&request(
            "dead.test",
            1,
            false,
            now.after(Duration::from_secs(5))
        )));
    }
}
