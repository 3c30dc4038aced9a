//! `Table`: the fixed-size table of per-key token buckets behind the rate limits. It never
//! grows: a spoofed flood from millions of source addresses reuses the same slots.
//!
//! Layout: [`SHARDS`] shards, each a mutex over a flat array of sets of [`WAYS`] slots (a
//! set-associative cache, as in a CPU). A key's keyed hash picks its shard and set; a new
//! key takes the slot with the smallest `stamp` in its set. Every user of the table keeps
//! `stamp` as "last seen" (at most now), except a banned client, whose stamp is the end of
//! its ban (in the future): so a new key evicts an empty slot first, then the longest idle
//! entry, and a ban only when its whole set is banned (the one ending soonest). Fresh
//! spoofed sources therefore cannot push a real client's ban out of the table, and an
//! active client, seen more recently than the flood's one-shot sources, keeps its bucket.
//! The hash is keyed per process, so an attacker cannot aim addresses at one set.
//!
//! Each shard's array is allocated on its first use; a lock is held for one short scan of
//! eight slots (256 bytes), so the UDP threads and tokio workers rarely meet on one.

use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};

/// Slots per set.
pub const WAYS: usize = 8;
/// Shards (a power of two: the top bits of the hash pick one).
pub const SHARDS: usize = 64;

/// One entry: whose it is, when it was last seen (or until when it is banned), and what
/// its user keeps (a bucket's milli-tokens and a mark).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slot {
    /// The key (an address, or a hash of what RRL counts).
    pub key: u128,
    /// Milliseconds since the table's clock base, plus one; 0 = an empty slot.
    pub stamp: u64,
    /// Tokens left, in thousandths.
    pub tokens: u32,
    /// The user's flags or counter.
    pub mark: u32,
}

/// One shard, alone on its cache line.
#[repr(align(64))]
#[derive(Debug, Default)]
struct Shard(Mutex<Vec<Slot>>);

/// The table: a fixed number of slots, in shards.
#[derive(Debug)]
pub struct Table {
    shards: Box<[Shard]>,
    /// Sets per shard (a power of two).
    sets: usize,
    /// Keyed per process, and of the quality kind: addresses differ in a few low bits, and
    /// the fast kind spreads such keys unevenly over the sets.
    hasher: foldhash::quality::RandomState,
}

impl Table {
    /// A table of at least `slots` slots (rounded up to a power of two, at least
    /// `SHARDS * WAYS`); nothing is allocated for the slots until they are used.
    pub fn new(slots: usize) -> Self {
        let per_shard = slots.div_ceil(SHARDS).max(WAYS).next_power_of_two();
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            sets: per_shard / WAYS,
            hasher: foldhash::quality::RandomState::default(),
        }
    }

    /// How many slots the table has.
    pub fn capacity(&self) -> usize {
        SHARDS * self.sets * WAYS
    }

    /// Bytes the table holds now: itself, its shards, and the slot arrays allocated so far.
    pub fn bytes(&self) -> usize {
        let arrays: usize = self
            .shards
            .iter()
            .map(|s| {
                s.0.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .capacity()
            })
            .sum();
        std::mem::size_of::<Self>()
            + SHARDS * std::mem::size_of::<Shard>()
            + arrays * std::mem::size_of::<Slot>()
    }

    /// Bytes the table can ever hold: every slot array allocated.
    pub fn max_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + SHARDS * std::mem::size_of::<Shard>()
            + self.capacity() * std::mem::size_of::<Slot>()
    }

    /// Runs `f` on `key`'s slot under its shard's lock: the slot already holding `key`
    /// (`f` gets `false`), or one just taken for it, zeroed but for the key (`f` gets
    /// `true`). `f` must set `stamp` (non-zero). Also says whether taking the slot evicted
    /// another key.
    pub fn with<R>(&self, key: u128, f: impl FnOnce(&mut Slot, bool) -> R) -> (R, bool) {
        let h = self.hasher.hash_one(key);
        let shard = (h >> (64 - SHARDS.trailing_zeros())) as usize;
        let set = (h as usize) & (self.sets - 1);
        let mut slots = self
            .shards
            .get(shard)
            .map(|s| s.0.lock().unwrap_or_else(PoisonError::into_inner));
        let ways = slots.as_deref_mut().and_then(|slots| {
            if slots.is_empty() {
                slots.resize(self.sets * WAYS, Slot::default());
            }
            slots.get_mut(set * WAYS..(set + 1) * WAYS)
        });
        // Shard and set are masked into range; were they not, a slot of its own (never
        // kept) lets the caller go on.
        let detached = || Slot {
            key,
            ..Slot::default()
        };
        let Some(ways) = ways else {
            return (f(&mut detached(), true), false);
        };
        // An empty slot has key 0 and stamp 0: no address is 0 (`::` never sends), and a
        // hashed key that is 0 would only find a bucket with nothing in it to refill.
        if let Some(s) = ways.iter_mut().find(|s| s.key == key) {
            return (f(s, false), false);
        }
        let Some(victim) = ways.iter_mut().min_by_key(|s| s.stamp) else {
            return (f(&mut detached(), true), false);
        };
        let evicted = victim.stamp != 0;
        *victim = detached();
        (f(victim, true), evicted)
    }

    /// Slots in use now (a scan: for tests and measurements, not the query path).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let slots = s.0.lock().unwrap_or_else(PoisonError::into_inner);
                slots.iter().filter(|s| s.stamp != 0).count()
            })
            .sum()
    }

    /// True when no slot is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stamps `key` with `stamp` (a new or the existing slot).
    fn put(t: &Table, key: u128, stamp: u64) -> bool {
        t.with(key, |s, _| s.stamp = stamp).1
    }

    #[test]
    fn a_slot_is_found_again_and_sizes_round_up() {
        let t = Table::new(1000);
        assert_eq!(t.capacity(), 1024, "64 shards of 16");
        assert_eq!(Table::new(1).capacity(), SHARDS * WAYS);
        assert!(t.is_empty());
        let (fresh, _) = t.with(7, |s, fresh| {
            s.stamp = 5;
            s.tokens = 42;
            fresh
        });
        assert!(fresh);
        let (seen, _) = t.with(7, |s, fresh| (fresh, s.tokens));
        assert_eq!(seen, (false, 42));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_full_set_evicts_the_idlest_entry_and_keeps_bans() {
        // The smallest table: one set of 8 per shard. Fill it far past its size, with a
        // "ban" (a stamp in the future) put in first, then many fresh one-shot keys.
        let t = Table::new(1);
        let now = 1_000;
        let banned = 0xBAD_u128;
        put(&t, banned, now + 60_000);
        let mut evictions = 0;
        for k in 1..100_000u128 {
            evictions += usize::from(put(&t, k << 32, now + (k as u64 % 7)));
        }
        assert_eq!(t.len(), t.capacity(), "full, and never larger");
        assert_eq!(evictions, 100_000 - t.capacity());
        let (stamp, _) = t.with(banned, |s, fresh| {
            assert!(!fresh, "the ban was evicted by fresh keys");
            s.stamp
        });
        assert_eq!(stamp, now + 60_000);
        // A set full of bans gives up the one ending soonest.
        let t = Table::new(1);
        for k in 0..100_000u128 {
            put(&t, k, 1_000_000 + k as u64);
        }
        // The latest-ending bans of each set survive: key 99_999 (latest) is still there.
        assert!(!t.with(99_999, |_, fresh| fresh).0);
        assert!(
            t.with(0, |s, fresh| {
                s.stamp = 1;
                fresh
            })
            .0
        );
    }

    #[test]
    fn memory_stays_bounded_for_a_million_spoofed_sources() {
        // The default size, fed one query from each of 1,000,000 distinct addresses.
        let t = Table::new(1 << 17);
        for i in 0..1_000_000u32 {
            let ip = u128::from(std::net::Ipv4Addr::from(0x0A00_0000 + i).to_ipv6_mapped());
            t.with(ip, |s, _| s.stamp = u64::from(i) + 1);
        }
        let bytes = t.bytes();
        assert_eq!(t.len(), t.capacity());
        assert_eq!(
            bytes,
            t.max_bytes(),
            "every shard allocated exactly its slots"
        );
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        assert!(bytes < 4 * 1024 * 1024 + 8192, "{bytes} bytes");
        // The largest allowed size, for both tables together, is under 64 MiB.
        let largest = Table::new(*crate::config::limits::CLIENTS_RANGE.end() as usize);
        assert!(
            2 * largest.max_bytes() < 64 << 20,
            "{}",
            largest.max_bytes()
        );
    }
}
