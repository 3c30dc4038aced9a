//! The frozen hash table of a [`super::Blocklist`]: open addressing over 64-byte buckets,
//! built once and only read afterwards.
//!
//! A lookup in a million-rule list misses the CPU caches on every line it touches, and on
//! a busy server the kernel's network work evicts the list between two queries. So one
//! probe reads one cache line: a bucket of 8 slots, each holding a 32-bit tag (the hash's
//! high half) and the 32-bit offset of the rule's record in the arena. Only a matching tag
//! costs a second line (the record, to compare the name); a miss costs one. Buckets are
//! filled to at most 60%, so that a probe rarely spills into the next bucket. And because
//! a bucket's place depends only on the hash, a batch of queries can touch all its lines
//! first ([`Table::prefetch`]) and let the memory system fetch them in parallel.
//!
//! The builder fills this same table while the lists load ([`Table::find_or_insert`]; a
//! `$badfilter` leaves a tombstone), so that freezing copies nothing: a reload holds the
//! serving list and one new list, never a second copy of the new one.

use super::words::Words;

/// Slots per bucket: 8 words, one cache line (a mapped table is page-aligned, so every
/// bucket is line-aligned). A slot is `tag << 32 | offset`, 0 when empty, or
/// [`TOMBSTONE`] when removed.
const SLOTS: usize = 8;

/// A removed slot: not empty (a probe goes on past it), and its tag (0) matches no hash's
/// (tags are odd).
const TOMBSTONE: u64 = 1;

/// A read-only map from a 64-bit hash to the arena offsets of the names with that hash.
#[derive(Default)]
pub(super) struct Table {
    slots: Words,
    buckets: usize,
    /// Live entries.
    len: usize,
    /// Slots taken, tombstones included.
    used: usize,
    /// Slots that may be taken before the table is more than 60% full.
    cap: usize,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("len", &self.len)
            .field("buckets", &self.buckets)
            .finish()
    }
}

/// The tag kept in a slot: the hash's high half, never 0 (0 marks an empty slot).
fn tag(hash: u64) -> u64 {
    (hash >> 32) | 1
}

impl Table {
    /// A table for `n` entries; fill it with [`Table::insert`].
    pub(super) fn with_capacity(n: usize) -> Self {
        let buckets = Self::buckets_for(n);
        Self {
            slots: Words::zeroed(buckets * SLOTS),
            buckets,
            len: 0,
            used: 0,
            cap: buckets * SLOTS * 3 / 5,
        }
    }

    /// Buckets for `n` entries: 8 slots per bucket at most 60% full (n / 4.8 buckets), and
    /// always one empty slot so that every probe ends.
    fn buckets_for(n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (n * 5).div_ceil(24).max(1)
        }
    }

    /// A table for `n` entries holding this one's, each rehashed with `hash_of(offset)`
    /// (tombstones are left behind).
    pub(super) fn rebuilt(&self, n: usize, hash_of: impl Fn(u32) -> u64) -> Self {
        let mut t = Self::with_capacity(n.max(self.len));
        for &s in self.slots.as_slice() {
            if s != 0 && s != TOMBSTONE {
                t.insert(hash_of(s as u32), s as u32);
            }
        }
        t
    }

    /// Makes room for `more` new entries, rebuilding (at least doubling) when the table
    /// would pass 60% full.
    pub(super) fn reserve(&mut self, more: usize, hash_of: impl Fn(u32) -> u64) {
        if self.used.saturating_add(more) > self.cap {
            let n = self.len.saturating_add(more).max(self.len * 2).max(16);
            *self = self.rebuilt(n, hash_of);
        }
    }

    /// This table, or a rebuilt one when it has more than an eighth more buckets than its
    /// entries need (it was sized by line counts, and the lists held comments or
    /// duplicates).
    pub(super) fn fit(self, hash_of: impl Fn(u32) -> u64) -> Self {
        let ideal = Self::buckets_for(self.len);
        if self.buckets.saturating_sub(ideal) > ideal / 8 {
            self.rebuilt(self.len, hash_of)
        } else {
            self
        }
    }

    /// The bucket where `hash` starts probing (the low half, scaled to the table).
    fn home(&self, hash: u64) -> usize {
        (((hash & 0xffff_ffff) * self.buckets as u64) >> 32) as usize
    }

    /// Adds `offset` under `hash`. The caller inserts each name once and no more than the
    /// capacity given.
    pub(super) fn insert(&mut self, hash: u64, offset: u32) {
        let found = self.find_or_insert(hash, offset, |_| false);
        debug_assert!(found.is_none());
    }

    /// The offset stored under `hash` for which `is` holds; when there is none, `offset` is
    /// stored under `hash` and `None` returned. The caller keeps room ([`Table::reserve`]).
    pub(super) fn find_or_insert(
        &mut self,
        hash: u64,
        offset: u32,
        mut is: impl FnMut(u32) -> bool,
    ) -> Option<u32> {
        debug_assert!(self.used < self.cap);
        let tag = tag(hash);
        let mut b = self.home(hash);
        let slots = self.slots.as_mut_slice();
        loop {
            for s in &mut slots[b * SLOTS..][..SLOTS] {
                if *s == 0 {
                    *s = tag << 32 | u64::from(offset);
                    self.len += 1;
                    self.used += 1;
                    return None;
                }
                if *s >> 32 == tag && is(*s as u32) {
                    return Some(*s as u32);
                }
            }
            b = if b + 1 == self.buckets { 0 } else { b + 1 };
        }
    }

    /// Removes the entry under `hash` for which `is` holds; true when there was one.
    pub(super) fn remove(&mut self, hash: u64, mut is: impl FnMut(u32) -> bool) -> bool {
        if self.buckets == 0 {
            return false;
        }
        let tag = tag(hash);
        let mut b = self.home(hash);
        let slots = self.slots.as_mut_slice();
        loop {
            for s in &mut slots[b * SLOTS..][..SLOTS] {
                if *s == 0 {
                    return false;
                }
                if *s >> 32 == tag && is(*s as u32) {
                    *s = TOMBSTONE;
                    self.len -= 1;
                    return true;
                }
            }
            b = if b + 1 == self.buckets { 0 } else { b + 1 };
        }
    }

    /// The offset stored under `hash` for which `is` (comparing the name at an offset)
    /// holds.
    #[inline]
    pub(super) fn find(&self, hash: u64, mut is: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.buckets == 0 {
            return None;
        }
        let tag = tag(hash);
        let mut b = self.home(hash);
        let slots = self.slots.as_slice();
        loop {
            for &s in &slots[b * SLOTS..][..SLOTS] {
                if s == 0 {
                    return None;
                }
                if s >> 32 == tag && is(s as u32) {
                    return Some(s as u32);
                }
            }
            b = if b + 1 == self.buckets { 0 } else { b + 1 };
        }
    }

    /// Asks for the line of the bucket where `hash` would be found, without waiting for it,
    /// so that it is in the cache by the time [`Table::find`] looks.
    #[inline]
    pub(super) fn prefetch(&self, hash: u64) {
        if self.buckets != 0 {
            prefetch_index::prefetch_index(self.slots.as_slice(), self.home(hash) * SLOTS);
        }
    }

    /// The offset in the first slot of `hash`'s home bucket whose tag matches, if any: what
    /// [`Table::find`] will most likely compare, for a prefetch of the record.
    #[inline]
    pub(super) fn candidate(&self, hash: u64) -> Option<u32> {
        if self.buckets == 0 {
            return None;
        }
        let tag = tag(hash);
        self.slots.as_slice()[self.home(hash) * SLOTS..][..SLOTS]
            .iter()
            .find(|&&s| s >> 32 == tag)
            .map(|&s| s as u32)
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// True when the table holds nothing.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when the slots live in a mapping (asked for huge pages).
    #[cfg(test)]
    pub(super) fn mapped(&self) -> bool {
        matches!(self.slots, Words::Map(_))
    }

    /// Heap bytes held.
    pub(super) fn heap_bytes(&self) -> usize {
        self.slots.size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_was_inserted_and_nothing_else() {
        let n = 10_000u32;
        let mut t = Table::with_capacity(n as usize);
        let hash = |i: u32| u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for i in 0..n {
            t.insert(hash(i), i);
        }
        assert_eq!(t.len(), n as usize);
        for i in 0..n {
            assert_eq!(t.find(hash(i), |o| o == i), Some(i));
        }
        for i in n..2 * n {
            assert_eq!(t.find(hash(i), |o| o == i), None);
        }
    }

    #[test]
    fn colliding_hashes_probe_on_and_wrap_around() {
        // Every entry has the same hash: they fill the home bucket, then the next ones,
        // wrapping past the end; the comparison picks the right one.
        let n = 30u32;
        let mut t = Table::with_capacity(n as usize);
        let h = u64::MAX; // home = last bucket
        for i in 0..n {
            t.insert(h, i);
        }
        for i in 0..n {
            assert_eq!(t.find(h, |o| o == i), Some(i));
        }
        assert_eq!(t.find(h, |o| o == n), None);
    }

    #[test]
    fn removed_slots_keep_the_probe_going_and_a_rebuild_drops_them() {
        // 20 entries under one hash: the home bucket and two more. Removing the first ones
        // leaves tombstones that a probe passes over to find the later ones.
        let (n, h) = (20u32, 7u64 << 32);
        let mut t = Table::with_capacity(n as usize);
        for i in 0..n {
            assert_eq!(t.find_or_insert(h, i, |o| o == i), None);
        }
        assert_eq!(
            t.find_or_insert(h, 99, |o| o == 5),
            Some(5),
            "found, not added"
        );
        for i in 0..10 {
            assert!(t.remove(h, |o| o == i));
        }
        assert!(!t.remove(h, |o| o == 3), "already gone");
        assert_eq!(t.len(), 10);
        for i in 0..n {
            assert_eq!(t.find(h, |o| o == i), (i >= 10).then_some(i));
        }
        assert_eq!(t.candidate(h), None, "a tombstone is no candidate");
        let r = t.rebuilt(10, |_| h);
        assert_eq!((r.len(), r.used), (10, 10));
        assert!((10..n).all(|i| r.find(h, |o| o == i) == Some(i)));
        // Room for more: rebuilt once past 60% full, every entry kept.
        let mut t = Table::with_capacity(0);
        for i in 0..1000u32 {
            t.reserve(1, |o| u64::from(o).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            t.insert(u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15), i);
        }
        assert!(t.used <= t.cap && t.len() == 1000);
        let fitted = t.fit(|o| u64::from(o).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let ideal = Table::buckets_for(1000);
        assert!(fitted.buckets >= ideal && fitted.buckets - ideal <= ideal / 8);
        assert!((0..1000u32).all(|i| {
            fitted.find(u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15), |o| o == i) == Some(i)
        }));
    }

    #[test]
    fn empty_table_finds_nothing() {
        let t = Table::with_capacity(0);
        assert!(t.is_empty());
        assert_eq!(t.find(42, |_| true), None);
        t.prefetch(42);
        assert_eq!(t.candidate(42), None);
    }
}
