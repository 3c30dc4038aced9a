//! The suffix matcher: an immutable set of block and allow rules, each meaning "this name and
//! everything below it", looked up by walking the query name's suffixes.
//!
//! Layout: every rule name lives in one byte arena; a `hashbrown::HashTable<u32>` maps the
//! hash of a name to its entry. A million rules cost about 40 MiB and no allocation happens
//! per lookup. Built once by [`BlocklistBuilder`], then shared frozen as `Arc<Blocklist>`; a
//! reload builds a new one. Parsing list files is `parse.rs`; loading them from disk is
//! `load.rs`.

pub mod domain;
pub mod load;
pub mod parse;

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;

pub use parse::{Kind, LineError, ParsedRule};

/// One stored rule, 12 bytes: where its name is in the arena, where it came from.
#[derive(Debug, Clone, Copy)]
struct Entry {
    off: u32,
    line: u32,
    source: u16,
    len: u8,
    allow: bool,
}

/// A rule that matched a name, borrowed from the [`Blocklist`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match<'a> {
    /// Block or allow.
    pub kind: Kind,
    /// The rule's domain (a suffix of the name looked up).
    pub rule: &'a str,
    /// The list the rule came from, as written in the config.
    pub source: &'a str,
    /// 1-based line in that list.
    pub line: u32,
    /// The rule's index in its [`Blocklist`], for [`Blocklist::rule`].
    pub id: u32,
}

/// Counts from building a [`Blocklist`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// Block rules stored.
    pub blocks: usize,
    /// Allow rules stored.
    pub allows: usize,
    /// Rules dropped because the same name was already present with the same kind.
    pub duplicates: usize,
}

/// Collects rules from several sources; [`BlocklistBuilder::build`] freezes them.
#[derive(Debug, Default)]
pub struct BlocklistBuilder {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    table: HashTable<u32>,
    hasher: foldhash::fast::FixedState,
    sources: Vec<Arc<str>>,
    stats: BuildStats,
}

impl BlocklistBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a source (list path or name) and returns its index for [`Self::insert`].
    pub fn add_source(&mut self, name: &str) -> u16 {
        self.sources.push(Arc::from(name));
        u16::try_from(self.sources.len() - 1).unwrap_or(u16::MAX)
    }

    /// Adds one rule. `name` must already be normalised (`domain::normalize`). An allow rule
    /// replaces a block rule for the same name (allow wins at equal specificity); an exact
    /// duplicate is counted and dropped.
    pub fn insert(&mut self, name: &str, kind: Kind, source: u16, line: u32) {
        let Ok(len) = u8::try_from(name.len()) else {
            return;
        };
        let allow = kind == Kind::Allow;
        let hash = self.hasher.hash_one(name.as_bytes());
        let (arena, entries) = (&self.arena, &mut self.entries);
        let found = self.table.find(hash, |&i| {
            let e = &entries[i as usize];
            &arena[e.off as usize..e.off as usize + e.len as usize] == name.as_bytes()
        });
        if let Some(&i) = found {
            let e = &mut entries[i as usize];
            if e.allow == allow || e.allow {
                self.stats.duplicates += 1;
            } else {
                // A block entry is replaced by an allow for the same name.
                e.allow = true;
                e.source = source;
                e.line = line;
                self.stats.blocks -= 1;
                self.stats.allows += 1;
            }
            return;
        }
        let Ok(off) = u32::try_from(self.arena.len()) else {
            return;
        };
        self.arena.extend_from_slice(name.as_bytes());
        let idx = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        self.entries.push(Entry {
            off,
            line,
            source,
            len,
            allow,
        });
        if allow {
            self.stats.allows += 1;
        } else {
            self.stats.blocks += 1;
        }
        let (arena, entries, hasher) = (&self.arena, &self.entries, &self.hasher);
        self.table.insert_unique(hash, idx, |&i| {
            let e = &entries[i as usize];
            hasher.hash_one(&arena[e.off as usize..e.off as usize + e.len as usize])
        });
    }

    /// Number of rules stored so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no rule has been stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Freezes the rules into a [`Blocklist`].
    pub fn build(mut self) -> Blocklist {
        self.arena.shrink_to_fit();
        self.entries.shrink_to_fit();
        self.table.shrink_to_fit(|&i| {
            let e = &self.entries[i as usize];
            self.hasher
                .hash_one(&self.arena[e.off as usize..e.off as usize + e.len as usize])
        });
        Blocklist {
            arena: self.arena.into_boxed_slice(),
            entries: self.entries.into_boxed_slice(),
            table: self.table,
            hasher: self.hasher,
            sources: self.sources,
            stats: self.stats,
        }
    }
}

/// An immutable suffix-rule set. [`Blocklist::find`] answers "which rule decides this name?".
#[derive(Debug, Default)]
pub struct Blocklist {
    arena: Box<[u8]>,
    entries: Box<[Entry]>,
    table: HashTable<u32>,
    hasher: foldhash::fast::FixedState,
    sources: Vec<Arc<str>>,
    stats: BuildStats,
}

impl Blocklist {
    fn name_of(&self, e: &Entry) -> &[u8] {
        &self.arena[e.off as usize..e.off as usize + e.len as usize]
    }

    fn get(&self, name: &[u8]) -> Option<u32> {
        let hash = self.hasher.hash_one(name);
        self.table
            .find(hash, |&i| self.name_of(&self.entries[i as usize]) == name)
            .copied()
    }

    /// The rule with index `id` (from [`Match::id`]).
    pub fn rule(&self, id: u32) -> Option<Match<'_>> {
        let e = self.entries.get(id as usize)?;
        Some(Match {
            kind: if e.allow { Kind::Allow } else { Kind::Block },
            rule: std::str::from_utf8(self.name_of(e)).unwrap_or(""),
            source: self.sources.get(e.source as usize).map_or("", |s| s),
            line: e.line,
            id,
        })
    }

    /// The most specific rule covering `name` (lower case, dotted, no trailing dot), if any.
    ///
    /// Walks the suffixes from the whole name up to the last label; the first stored one
    /// decides. Allow beats block at the same name because the builder keeps only the allow.
    pub fn find(&self, name: &[u8]) -> Option<Match<'_>> {
        if self.entries.is_empty() {
            return None;
        }
        let mut s = name;
        loop {
            if let Some(id) = self.get(s) {
                return self.rule(id);
            }
            let dot = s.iter().position(|&b| b == b'.')?;
            s = &s[dot + 1..];
        }
    }

    /// True when `name` is blocked (a block rule is the most specific match).
    pub fn is_blocked(&self, name: &[u8]) -> bool {
        matches!(self.find(name), Some(m) if m.kind == Kind::Block)
    }

    /// Number of rules (block + allow).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Counts from the build.
    pub fn stats(&self) -> BuildStats {
        self.stats
    }

    /// Approximate heap bytes held (arena, entries, hash table).
    pub fn heap_bytes(&self) -> usize {
        self.arena.len()
            + self.entries.len() * std::mem::size_of::<Entry>()
            + self.table.capacity() * (std::mem::size_of::<u32>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(rules: &[(&str, Kind)]) -> Blocklist {
        let mut b = BlocklistBuilder::new();
        let src = b.add_source("test.txt");
        for (i, (n, k)) in rules.iter().enumerate() {
            b.insert(n, *k, src, i as u32 + 1);
        }
        b.build()
    }

    #[test]
    fn suffix_blocks_name_and_subtree_not_parent_or_lookalike() {
        let l = list(&[("example.com", Kind::Block)]);
        assert!(l.is_blocked(b"example.com"));
        assert!(l.is_blocked(b"a.b.example.com"));
        assert!(!l.is_blocked(b"com"));
        assert!(!l.is_blocked(b"notexample.com"));
        assert!(!l.is_blocked(b"example.com.evil"));
        let m = l.find(b"x.example.com").unwrap();
        assert_eq!((m.rule, m.source, m.line), ("example.com", "test.txt", 1));
    }

    #[test]
    fn more_specific_allow_wins_and_block_below_allow_wins_again() {
        let l = list(&[
            ("example.com", Kind::Block),
            ("mail.example.com", Kind::Allow),
            ("ads.mail.example.com", Kind::Block),
        ]);
        assert!(l.is_blocked(b"www.example.com"));
        assert!(!l.is_blocked(b"mail.example.com"));
        assert!(!l.is_blocked(b"x.mail.example.com"));
        assert!(l.is_blocked(b"ads.mail.example.com"));
    }

    #[test]
    fn allow_beats_block_at_equal_specificity_in_either_order() {
        let a = list(&[("x.com", Kind::Block), ("x.com", Kind::Allow)]);
        let b = list(&[("x.com", Kind::Allow), ("x.com", Kind::Block)]);
        assert!(!a.is_blocked(b"x.com"));
        assert!(!b.is_blocked(b"www.x.com"));
        assert_eq!(a.stats().duplicates + b.stats().duplicates, 1);
    }

    #[test]
    fn duplicates_counted_once() {
        let l = list(&[("x.com", Kind::Block), ("x.com", Kind::Block)]);
        assert_eq!(l.len(), 1);
        assert_eq!(l.stats().duplicates, 1);
    }

    #[test]
    fn empty_list_matches_nothing() {
        let l = Blocklist::default();
        assert!(l.find(b"example.com").is_none());
        assert!(l.find(b"").is_none());
    }
}
