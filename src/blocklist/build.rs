//! [`BlocklistBuilder`]: rules written straight into the frozen layout as the lines are
//! parsed, so that building a list never holds two copies of it.
//!
//! Each new name is appended to the arena as its final record (an 8-byte header, then the
//! name) and its offset put in the final [`Table`] at once; a duplicate is found by that
//! same lookup and its record's header updated in place (allow/block merges), and a
//! `$badfilter` leaves a tombstone in the table (its record stays, unreachable). Freezing
//! only moves the two regions into the [`Blocklist`]: nothing is copied or rehashed, unless
//! the table, sized by line counts, turned out more than an eighth too large (comments,
//! duplicates), when it is rebuilt at its right size. Both regions are mappings that the
//! loader reserves up front from the files' sizes (untouched pages cost nothing), so a big
//! list does not grow by doubling copies either. A reload therefore peaks at the serving
//! list plus the new one, where a builder with its own hash tables held about twice that.

use std::hash::BuildHasher;
use std::sync::Arc;

use super::Blocklist;
use super::parse::{Kind, PatternKind};
use super::patterns::PatternSetBuilder;
use super::table::Table;
use super::words::Words;
use super::{ALLOW, BuildStats, HEADER, IMPORTANT, Inserted, record_name};

/// The records of the list being built, in the frozen layout: `len` bytes used of a
/// zeroed region that grows (by copying) only when a reservation fell short.
#[derive(Debug, Default)]
struct Arena {
    words: Words,
    len: usize,
}

impl Arena {
    /// Room for `more` bytes after the used ones.
    fn reserve(&mut self, more: usize) {
        let need = self.len.saturating_add(more);
        let have = self.words.size();
        if need <= have {
            return;
        }
        let bytes = need.max(have.saturating_mul(2)).max(4096);
        let mut words = Words::zeroed(bytes.div_ceil(8));
        if let (Some(to), Some(from)) = (
            words.bytes_mut().get_mut(..self.len),
            self.words.bytes().get(..self.len),
        ) {
            to.copy_from_slice(from);
        }
        self.words = words;
    }
}

/// Collects rules from several sources; [`BlocklistBuilder::build`] freezes them.
#[derive(Debug, Default)]
pub struct BlocklistBuilder {
    arena: Arena,
    subtree: Table,
    exact: Table,
    hasher: foldhash::fast::FixedState,
    has_important: bool,
    sources: Vec<Arc<str>>,
    stats: BuildStats,
    patterns: PatternSetBuilder,
}

impl BlocklistBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `n` more rules of `bytes` name bytes in all (avoids rehashing and copying
    /// while a big list loads). Untouched reserved pages cost no memory; a table reserved
    /// for more rules than came is rebuilt to size by `build`.
    pub fn reserve(&mut self, n: usize, bytes: usize) {
        self.arena
            .reserve(bytes.saturating_add(n.saturating_mul(HEADER)));
        let (arena, hasher) = (&self.arena, &self.hasher);
        self.subtree.reserve(n, |off| {
            hasher.hash_one(record_name(arena.words.bytes(), off))
        });
    }

    /// Registers a source (list path or URL) and returns its index for [`Self::insert`].
    pub fn add_source(&mut self, name: &str) -> u16 {
        self.sources.push(Arc::from(name));
        u16::try_from(self.sources.len() - 1).unwrap_or(u16::MAX)
    }

    /// Adds one name rule (subtree unless `exact`). `name` must already be normalised
    /// (`domain::normalize`). At the same name an allow wins over a block unless the block
    /// is `important`.
    pub fn insert(
        &mut self,
        name: &str,
        kind: Kind,
        exact: bool,
        important: bool,
        source: u16,
        line: u32,
    ) -> Inserted {
        let Ok(len) = u8::try_from(name.len()) else {
            return Inserted::Duplicate;
        };
        let flags = (u8::from(kind == Kind::Allow) * ALLOW)
            | (u8::from(important && kind == Kind::Block) * IMPORTANT);
        // The offsets are u32: a list stops growing at 4 GiB of records (far above the
        // largest list file allowed).
        let Ok(off) = u32::try_from(self.arena.len) else {
            return Inserted::Duplicate;
        };
        let size = HEADER + name.len();
        // The record is written after the used bytes first, and kept only if the name is
        // new.
        self.arena.reserve(size);
        let at = self.arena.len;
        let Some(rec) = self.arena.words.bytes_mut().get_mut(at..at + size) else {
            return Inserted::Duplicate;
        };
        write_header(rec, len, flags, source, line);
        rec[HEADER..].copy_from_slice(name.as_bytes());
        let hash = self.hasher.hash_one(name.as_bytes());
        let (arena, hasher) = (&mut self.arena, &self.hasher);
        let table = if exact {
            &mut self.exact
        } else {
            &mut self.subtree
        };
        table.reserve(1, |o| hasher.hash_one(record_name(arena.words.bytes(), o)));
        let bytes = arena.words.bytes();
        let Some(at) =
            table.find_or_insert(hash, off, |o| record_name(bytes, o) == name.as_bytes())
        else {
            arena.len += size;
            self.has_important |= flags & IMPORTANT != 0;
            return Inserted::New;
        };
        self.stats.duplicates += 1;
        let at = at as usize;
        let Some(rec) = arena.words.bytes_mut().get_mut(at..at + HEADER) else {
            return Inserted::Duplicate;
        };
        let (was_allow, was_important) = (rec[1] & ALLOW != 0, rec[1] & IMPORTANT != 0);
        if was_allow == (kind == Kind::Allow) {
            rec[1] |= flags;
            self.has_important |= flags & IMPORTANT != 0;
            return Inserted::Duplicate;
        }
        // Block vs allow at the same name: allow wins unless the block is important.
        let new_wins = if kind == Kind::Allow {
            !was_important
        } else {
            important
        };
        if new_wins {
            write_header(rec, len, flags, source, line);
            self.has_important |= flags & IMPORTANT != 0;
        }
        Inserted::Merged
    }

    /// Adds a glob or regex rule (already checked to compile by the parser).
    pub fn insert_pattern(
        &mut self,
        pattern: PatternKind,
        text: &str,
        kind: Kind,
        source: u16,
        line: u32,
    ) {
        self.patterns.add(pattern, text, kind, source, line);
    }

    /// Removes the subtree rule `name` of `kind` (a `$badfilter`); true when it was there.
    pub fn remove(&mut self, name: &str, kind: Kind) -> bool {
        let hash = self.hasher.hash_one(name.as_bytes());
        let arena = self.arena.words.bytes();
        let removed = self.subtree.remove(hash, |off| {
            record_name(arena, off) == name.as_bytes()
                && arena.get(off as usize + 1).is_some_and(|f| f & ALLOW != 0)
                    == (kind == Kind::Allow)
        });
        if removed {
            self.stats.badfiltered += 1;
        }
        removed
    }

    /// Freezes the rules into a [`Blocklist`]. A pattern set that does not compile as a
    /// whole (each pattern was checked alone) is logged and left out.
    pub fn build(self) -> Blocklist {
        let Self {
            arena,
            subtree,
            exact,
            hasher,
            has_important,
            sources,
            stats,
            patterns,
        } = self;
        let hash_of = |off| hasher.hash_one(record_name(arena.words.bytes(), off));
        let (subtree, exact) = (subtree.fit(hash_of), exact.fit(hash_of));
        Blocklist {
            arena: arena.words,
            arena_len: arena.len,
            subtree,
            exact,
            hasher,
            has_important,
            patterns: patterns.build(),
            sources,
            stats,
        }
    }
}

/// Writes a record's header: name length, flags, source (u16), line (u32).
fn write_header(rec: &mut [u8], len: u8, flags: u8, source: u16, line: u32) {
    rec[0] = len;
    rec[1] = flags;
    rec[2..4].copy_from_slice(&source.to_le_bytes());
    rec[4..8].copy_from_slice(&line.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreserved_builder_grows_and_a_reserved_one_is_fitted() {
        // No reservation: the arena and the table grow as rules come.
        let mut b = BlocklistBuilder::new();
        let src = b.add_source("t.txt");
        for i in 0..5000u32 {
            b.insert(&format!("n{i}.com"), Kind::Block, false, false, src, i + 1);
        }
        let l = b.build();
        assert_eq!(l.len(), 5000);
        assert!((0..5000).all(|i| l.is_blocked(format!("x.n{i}.com").as_bytes())));

        // Reserved for 100k, 1000 came: the table is rebuilt to the size of 1000.
        let mut b = BlocklistBuilder::new();
        b.reserve(100_000, 1_000_000);
        let src = b.add_source("t.txt");
        for i in 0..1000u32 {
            b.insert(&format!("n{i}.com"), Kind::Block, false, false, src, i + 1);
        }
        let l = b.build();
        assert_eq!(l.len(), 1000);
        assert!(l.subtree.heap_bytes() <= Table::with_capacity(1000).heap_bytes());
        assert_eq!(l.find(b"n999.com").map(|m| m.line), Some(1000));
        assert!(l.heap_bytes() < 100_000, "{}", l.heap_bytes());
    }

    #[test]
    fn a_removed_rule_is_gone_and_one_behind_it_is_still_found() {
        // Same hash bucket or not, the names after a tombstone stay reachable.
        let mut b = BlocklistBuilder::new();
        let src = b.add_source("t.txt");
        for i in 0..200u32 {
            b.insert(&format!("n{i}.com"), Kind::Block, false, false, src, i + 1);
        }
        assert!(!b.remove("n5.com", Kind::Allow), "the kind must match");
        for i in (0..200).step_by(2) {
            assert!(b.remove(&format!("n{i}.com"), Kind::Block));
        }
        assert!(!b.remove("n0.com", Kind::Block), "removed once");
        // Re-added after its removal: a new record.
        b.insert("n0.com", Kind::Allow, false, false, src, 999);
        let l = b.build();
        assert_eq!(l.len(), 101);
        assert_eq!(l.stats().badfiltered, 100);
        for i in 1..200u32 {
            assert_eq!(l.is_blocked(format!("n{i}.com").as_bytes()), i % 2 == 1);
        }
        let m = l.find(b"n0.com").unwrap();
        assert_eq!((m.kind, m.line), (Kind::Allow, 999));
    }
}
