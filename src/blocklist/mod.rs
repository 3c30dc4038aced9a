//! The suffix matcher: an immutable set of block and allow rules, each meaning "this name and
//! everything below it", looked up by walking the query name's suffixes.
//!
//! Layout: the builder keeps names in a byte arena indexed by two `hashbrown` tables
//! (subtree rules, exact rules), where duplicates, allow/block merges and `$badfilter`
//! removals are cheap. [`BlocklistBuilder::build`] freezes that into one arena of records
//! (an 8-byte header, then the name) and two read-only tables of 64-byte buckets (`table.rs`),
//! so that a lookup touches one cache line per suffix and one more for the rule that
//! matches. A million rules cost about 40 MiB and no allocation happens per lookup. Globs
//! and regexes live in `patterns.rs`, behind a literal prefilter. The frozen list is shared
//! as `Arc<Blocklist>`; a reload builds a new one. Parsing list files is `parse/` (a file per
//! format family); reading them (files, embedded lists, cached downloads) is `source.rs`;
//! loading them into a list is `load.rs`; downloading URL lists is `fetch.rs`.

pub mod domain;
pub mod edit;
pub mod explain;
pub mod fetch;
pub mod http;
pub mod load;
pub mod parse;
pub mod patterns;
pub mod rewrite;
pub mod source;
mod table;
pub mod tools;
mod words;

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;

pub use parse::{Kind, LineError, PatternKind, SkipReason};
use patterns::{PatternSet, PatternSetBuilder};
use table::Table;
use words::Words;

const ALLOW: u8 = 1;
const IMPORTANT: u8 = 2;

/// One rule in the builder, 12 bytes: where its name is in the arena, where it came from,
/// its flags.
#[derive(Debug, Clone, Copy)]
struct Entry {
    off: u32,
    line: u32,
    source: u16,
    len: u8,
    flags: u8,
}

impl Entry {
    fn allow(&self) -> bool {
        self.flags & ALLOW != 0
    }
    fn important(&self) -> bool {
        self.flags & IMPORTANT != 0
    }
}

/// A rule that matched a name, borrowed from the [`Blocklist`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match<'a> {
    /// Block or allow.
    pub kind: Kind,
    /// The rule's domain (a suffix of the name looked up), or the glob / regex text.
    pub rule: &'a str,
    /// The list the rule came from, as written in the config.
    pub source: &'a str,
    /// 1-based line in that list.
    pub line: u32,
    /// The index of `source` among the list's sources ([`Blocklist::sources`]);
    /// [`NO_SOURCE`] for a rule that no list holds.
    pub source_id: u16,
}

/// The `source_id` of a rule that no list holds (builtin rules).
pub const NO_SOURCE: u16 = u16::MAX;

/// Counts from building a [`Blocklist`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// Rules dropped because the same name was already present with the same kind.
    pub duplicates: usize,
    /// Rules disabled by a `$badfilter` rule.
    pub badfiltered: usize,
}

/// What [`BlocklistBuilder::insert`] did with a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A new name.
    New,
    /// The same name and kind was already there.
    Duplicate,
    /// The name was there with the other kind; the winner at equal specificity stays.
    Merged,
}

/// The hash tables of one builder or list: subtree rules and exact-name rules.
#[derive(Debug, Default)]
struct Tables {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    subtree: HashTable<u32>,
    exact: HashTable<u32>,
    hasher: foldhash::fast::FixedState,
}

fn name_of<'a>(arena: &'a [u8], e: &Entry) -> &'a [u8] {
    &arena[e.off as usize..e.off as usize + e.len as usize]
}

/// Collects rules from several sources; [`BlocklistBuilder::build`] freezes them.
#[derive(Debug, Default)]
pub struct BlocklistBuilder {
    t: Tables,
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
    /// while a big list loads). Untouched reserved pages cost no memory; `build` trims.
    pub fn reserve(&mut self, n: usize, bytes: usize) {
        let t = &mut self.t;
        t.entries.reserve_exact(n);
        t.arena.reserve_exact(bytes);
        let (arena, entries, hasher) = (&t.arena, &t.entries, &t.hasher);
        t.subtree.reserve(n, |&i| {
            hasher.hash_one(name_of(arena, &entries[i as usize]))
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
        let t = &mut self.t;
        let hash = t.hasher.hash_one(name.as_bytes());
        let table = if exact { &mut t.exact } else { &mut t.subtree };
        let (arena, entries) = (&t.arena, &mut t.entries);
        if let Some(&i) = table.find(hash, |&i| {
            name_of(arena, &entries[i as usize]) == name.as_bytes()
        }) {
            let e = &mut entries[i as usize];
            if e.allow() == (kind == Kind::Allow) {
                e.flags |= flags;
                self.stats.duplicates += 1;
                return Inserted::Duplicate;
            }
            // Block vs allow at the same name: allow wins unless the block is important.
            let new_wins = if kind == Kind::Allow {
                !e.important()
            } else {
                important
            };
            if new_wins {
                *e = Entry {
                    off: e.off,
                    len: e.len,
                    line,
                    source,
                    flags,
                };
            }
            self.stats.duplicates += 1;
            return Inserted::Merged;
        }
        let Ok(off) = u32::try_from(t.arena.len()) else {
            return Inserted::Duplicate;
        };
        t.arena.extend_from_slice(name.as_bytes());
        let idx = u32::try_from(t.entries.len()).unwrap_or(u32::MAX);
        t.entries.push(Entry {
            off,
            line,
            source,
            len,
            flags,
        });
        let (arena, entries, hasher) = (&t.arena, &t.entries, &t.hasher);
        let table = if exact { &mut t.exact } else { &mut t.subtree };
        table.insert_unique(hash, idx, |&i| {
            hasher.hash_one(name_of(arena, &entries[i as usize]))
        });
        Inserted::New
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
        let t = &mut self.t;
        let hash = t.hasher.hash_one(name.as_bytes());
        let (arena, entries) = (&t.arena, &t.entries);
        let Ok(found) = t.subtree.find_entry(hash, |&i| {
            let e = &entries[i as usize];
            name_of(arena, e) == name.as_bytes() && e.allow() == (kind == Kind::Allow)
        }) else {
            return false;
        };
        found.remove();
        self.stats.badfiltered += 1;
        true
    }

    /// Freezes the rules into a [`Blocklist`]. A pattern set that does not compile as a
    /// whole (each pattern was checked alone) is logged and left out.
    pub fn build(self) -> Blocklist {
        let Tables {
            arena,
            entries,
            subtree,
            exact,
            hasher,
        } = self.t;
        let has_important = entries.iter().any(Entry::important);
        // Frees the builder's tables before the frozen arena grows beside the old one.
        let mut subtree: Vec<u32> = subtree.into_iter().collect();
        let mut exact: Vec<u32> = exact.into_iter().collect();
        // File order in the arena (the tables iterate in hash order).
        subtree.sort_unstable();
        exact.sort_unstable();
        let bytes = subtree
            .iter()
            .chain(&exact)
            .map(|&i| HEADER + entries[i as usize].len as usize)
            .sum();
        let mut frozen = Words::zeroed(usize::div_ceil(bytes, 8));
        let mut at = 0;
        let out = frozen.bytes_mut();
        for i in subtree.iter_mut().chain(exact.iter_mut()) {
            let e = &entries[*i as usize];
            let name = name_of(&arena, e);
            // The arena stays below 4 GiB: names are at most 255 bytes and rules are
            // counted in u32.
            *i = u32::try_from(at).unwrap_or(u32::MAX);
            let rec = &mut out[at..at + HEADER + name.len()];
            rec[0] = e.len;
            rec[1] = e.flags;
            rec[2..4].copy_from_slice(&e.source.to_le_bytes());
            rec[4..8].copy_from_slice(&e.line.to_le_bytes());
            rec[HEADER..].copy_from_slice(name);
            at += rec.len();
        }
        drop((arena, entries));
        let freeze = |offsets: Vec<u32>| {
            let mut t = Table::with_capacity(offsets.len());
            for off in offsets {
                t.insert(hasher.hash_one(record_name(frozen.bytes(), off)), off);
            }
            t
        };
        let (subtree, exact) = (freeze(subtree), freeze(exact));
        Blocklist {
            arena: frozen,
            subtree,
            exact,
            hasher,
            has_important,
            patterns: self.patterns.build(),
            sources: self.sources,
            stats: self.stats,
        }
    }
}

/// Bytes before the name in a frozen record: length, flags, source (u16), line (u32).
const HEADER: usize = 8;

/// The name of the frozen record at `off`.
#[inline]
fn record_name(arena: &[u8], off: u32) -> &[u8] {
    let o = off as usize;
    let len = arena[o] as usize;
    &arena[o + HEADER..o + HEADER + len]
}

/// A rule read from the frozen arena.
#[derive(Debug, Clone, Copy)]
struct Rule<'a> {
    name: &'a [u8],
    flags: u8,
    source: u16,
    line: u32,
}

impl<'a> Rule<'a> {
    fn at(arena: &'a [u8], off: u32) -> Self {
        let o = off as usize;
        let h = &arena[o..o + HEADER];
        Self {
            name: record_name(arena, off),
            flags: h[1],
            source: u16::from_le_bytes([h[2], h[3]]),
            line: u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
        }
    }
    fn allow(&self) -> bool {
        self.flags & ALLOW != 0
    }
    fn important(&self) -> bool {
        self.flags & IMPORTANT != 0
    }
}

/// An immutable rule set. [`Blocklist::find`] answers "which rule decides this name?".
#[derive(Debug, Default)]
pub struct Blocklist {
    arena: Words,
    subtree: Table,
    exact: Table,
    hasher: foldhash::fast::FixedState,
    has_important: bool,
    patterns: PatternSet,
    sources: Vec<Arc<str>>,
    stats: BuildStats,
}

impl Blocklist {
    #[inline]
    fn get(&self, table: &Table, name: &[u8], hash: u64) -> Option<Rule<'_>> {
        let arena = self.arena.bytes();
        table
            .find(hash, |off| record_name(arena, off) == name)
            .map(|off| Rule::at(arena, off))
    }

    fn to_match<'a>(&'a self, e: &Rule<'a>) -> Match<'a> {
        Match {
            kind: if e.allow() { Kind::Allow } else { Kind::Block },
            rule: std::str::from_utf8(e.name).unwrap_or(""),
            source: self.sources.get(e.source as usize).map_or("", |s| s),
            line: e.line,
            source_id: e.source,
        }
    }

    /// The most specific name rule covering `name`, ignoring globs and regexes.
    pub fn find_named(&self, name: &[u8]) -> Option<Match<'_>> {
        if self.subtree.is_empty() && self.exact.is_empty() {
            return None;
        }
        let mut decided: Option<Rule<'_>> = None;
        for (depth, s) in domain::suffixes(name).enumerate() {
            let hash = self.hasher.hash_one(s);
            let sub = self.get(&self.subtree, s, hash);
            let here = if depth == 0 && !self.exact.is_empty() {
                match (sub, self.get(&self.exact, s, hash)) {
                    (Some(a), Some(b)) => Some(if a.important() || (a.allow() && !b.important()) {
                        a
                    } else {
                        b
                    }),
                    (a, b) => a.or(b),
                }
            } else {
                sub
            };
            match (decided, here) {
                (None, Some(e)) => {
                    if !e.allow() || !self.has_important {
                        return Some(self.to_match(&e));
                    }
                    // An allow: an important block above still wins.
                    decided = Some(e);
                }
                (Some(_), Some(e)) if e.important() => return Some(self.to_match(&e)),
                _ => {}
            }
        }
        decided.map(|e| self.to_match(&e))
    }

    /// The rule deciding `name` (lower case, dotted, no trailing dot), if any.
    ///
    /// Name rules first: the most specific wins, an allow beats a block at the same name
    /// (unless the block is `$important`), an exact rule applies only to the name itself.
    /// Then patterns: an allow glob/regex overrides a block; a block glob/regex decides only
    /// names that no name rule covers. No allocation unless a pattern matches.
    pub fn find(&self, name: &[u8]) -> Option<Match<'_>> {
        let named = self.find_named(name);
        if self.patterns.is_empty() {
            return named;
        }
        // Patterns match text; a name with bytes that are not UTF-8 matches none.
        let Ok(name) = std::str::from_utf8(name) else {
            return named;
        };
        match named {
            Some(m) if m.kind == Kind::Allow => Some(m),
            Some(m) => Some(
                self.patterns
                    .find(name, Kind::Allow, &self.sources)
                    .unwrap_or(m),
            ),
            None => self
                .patterns
                .find(name, Kind::Allow, &self.sources)
                .or_else(|| self.patterns.find(name, Kind::Block, &self.sources)),
        }
    }

    /// True when `name` is blocked.
    pub fn is_blocked(&self, name: &[u8]) -> bool {
        matches!(self.find(name), Some(m) if m.kind == Kind::Block)
    }

    /// Number of name rules (block + allow).
    pub fn len(&self) -> usize {
        self.subtree.len() + self.exact.len()
    }

    /// True when there are no rules at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.patterns.is_empty()
    }

    /// The names of the lists the rules came from, as written in the config; a
    /// [`Match`]'s `source_id` indexes them.
    pub fn sources(&self) -> &[Arc<str>] {
        &self.sources
    }

    /// Counts from the build.
    pub fn stats(&self) -> BuildStats {
        self.stats
    }

    /// The patterns (globs and regexes).
    pub fn patterns(&self) -> &PatternSet {
        &self.patterns
    }

    /// Approximate heap bytes held (arena and tables).
    pub fn heap_bytes(&self) -> usize {
        self.arena.size() + self.subtree.heap_bytes() + self.exact.heap_bytes()
    }

    /// Reads the table lines that [`Blocklist::find`] of each name will look at first,
    /// and returns a value made from them (pass it to `std::hint::black_box`). `hashes` is
    /// scratch space, kept by the caller between batches.
    ///
    /// A server calls this for a whole batch of queries before looking any up. The hashes
    /// of every suffix are computed first (the names are in the packets just received, so
    /// this only computes), then one short loop reads one word of every bucket: the reads
    /// are independent and few instructions apart, so the memory system fetches dozens of
    /// lines at once, where lookups one after another would wait for each miss in turn.
    pub fn prefetch<'n>(
        &self,
        names: impl IntoIterator<Item = &'n [u8]>,
        hashes: &mut Vec<u64>,
    ) -> u64 {
        if self.subtree.is_empty() && self.exact.is_empty() {
            return 0;
        }
        hashes.clear();
        let mut exact = 0;
        for name in names {
            let whole = hashes.len();
            hashes.extend(domain::suffixes(name).map(|s| self.hasher.hash_one(s)));
            if !self.exact.is_empty() {
                exact ^= self.exact.touch(hashes[whole]);
            }
        }
        let seen = hashes
            .iter()
            .fold(exact, |seen, &h| seen ^ self.subtree.touch(h));
        // Then the records whose tag matched (mostly the rules that will match): the
        // bucket lines are arriving by now, and these reads are independent too.
        let arena = self.arena.bytes();
        hashes.iter().fold(seen, |seen, &h| {
            self.subtree
                .candidate(h)
                .map_or(seen, |off| seen ^ u64::from(arena[off as usize]))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(rules: &[(&str, Kind)]) -> Blocklist {
        let mut b = BlocklistBuilder::new();
        let src = b.add_source("test.txt");
        for (i, (n, k)) in rules.iter().enumerate() {
            b.insert(n, *k, false, false, src, i as u32 + 1);
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
        assert_eq!(a.stats().duplicates + b.stats().duplicates, 2);
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

    #[test]
    fn exact_rules_cover_the_name_only() {
        let mut b = BlocklistBuilder::new();
        let src = b.add_source("t.txt");
        b.insert("a.com", Kind::Block, true, false, src, 1);
        b.insert("b.com", Kind::Block, false, false, src, 2);
        b.insert("x.b.com", Kind::Allow, true, false, src, 3);
        let l = b.build();
        assert!(l.is_blocked(b"a.com"));
        assert!(!l.is_blocked(b"www.a.com"));
        assert!(!l.is_blocked(b"x.b.com"));
        assert!(
            l.is_blocked(b"y.x.b.com"),
            "an exact allow does not cover the subtree"
        );
    }

    #[test]
    fn important_block_beats_allow_and_badfilter_removes() {
        let mut b = BlocklistBuilder::new();
        let src = b.add_source("t.txt");
        b.insert("t.net", Kind::Block, false, true, src, 1);
        b.insert("t.net", Kind::Allow, false, false, src, 2);
        b.insert("ok.t.net", Kind::Allow, false, false, src, 3);
        b.insert("gone.com", Kind::Block, false, false, src, 4);
        assert!(b.remove("gone.com", Kind::Block));
        let l = b.build();
        assert!(l.is_blocked(b"t.net"));
        assert!(
            l.is_blocked(b"ok.t.net"),
            "an important parent beats a child allow"
        );
        assert!(!l.is_blocked(b"gone.com"));
        assert_eq!(l.stats().badfiltered, 1);
    }

    #[test]
    fn patterns_decide_after_names_and_allow_patterns_override() {
        let mut b = BlocklistBuilder::new();
        let src = b.add_source("t.txt");
        b.insert("ads.example.com", Kind::Block, false, false, src, 1);
        b.insert("good.org", Kind::Allow, false, false, src, 2);
        b.insert_pattern(PatternKind::Glob, "ads*.*", Kind::Block, src, 3);
        b.insert_pattern(
            PatternKind::Regex,
            "^ads\\.example\\.com$",
            Kind::Allow,
            src,
            4,
        );
        let l = b.build();
        let m = l.find(b"ads1.good.net").unwrap();
        assert_eq!((m.kind, m.rule, m.line), (Kind::Block, "ads*.*", 3));
        assert!(
            !l.is_blocked(b"ads.example.com"),
            "allow regex overrides a name block"
        );
        assert!(l.is_blocked(b"x.ads.example.com"));
        assert!(
            !l.is_blocked(b"ads2.good.org"),
            "a name allow beats a block pattern"
        );
        assert!(l.find(b"www.example.net").is_none());
    }

    #[test]
    fn a_big_list_in_mapped_memory_finds_every_rule_and_prefetch_changes_nothing() {
        // 300k rules: the subtree table and the arena are past the size that is mapped.
        let n = 300_000u32;
        let mut b = BlocklistBuilder::new();
        let src = b.add_source("big.txt");
        for i in 0..n {
            let kind = if i % 10 == 0 {
                Kind::Allow
            } else {
                Kind::Block
            };
            b.insert(
                &format!("n{i}.example{}.com", i % 7),
                kind,
                i % 3 == 0,
                false,
                src,
                i + 1,
            );
        }
        let l = b.build();
        assert_eq!(l.len(), n as usize);
        assert!(l.subtree.mapped(), "{:?}", l.subtree);
        assert!(matches!(l.arena, Words::Map(_)), "{:?}", l.arena);
        let names: Vec<String> = (0..n + 1000)
            .step_by(7)
            .map(|i| format!("www.n{i}.example{}.com", i % 7))
            .collect();
        let mut hashes = Vec::new();
        let before: Vec<_> = names.iter().map(|x| l.find(x.as_bytes())).collect();
        std::hint::black_box(l.prefetch(names.iter().map(|x| x.as_bytes()), &mut hashes));
        assert!(hashes.len() >= names.len() * 4, "every suffix is hashed");
        for (name, was) in names.iter().zip(&before) {
            assert_eq!(l.find(name.as_bytes()), *was, "{name}");
            let digits = &name["www.n".len()..];
            let i: u32 = digits[..digits.find('.').unwrap()].parse().unwrap();
            // Exact rules (every third) do not cover `www.`; allows (every tenth) allow.
            let want = if i >= n || i.is_multiple_of(3) {
                None
            } else if i.is_multiple_of(10) {
                Some((Kind::Allow, i + 1))
            } else {
                Some((Kind::Block, i + 1))
            };
            assert_eq!(was.map(|m| (m.kind, m.line)), want, "{name}");
            if let Some(m) = was {
                assert_eq!(m.rule, &name[4..]);
                assert_eq!(m.source, "big.txt");
            }
        }
        // The exact rule itself matches its own name only.
        assert_eq!(l.find(b"n3.example3.com").map(|m| m.line), Some(4));
    }

    #[test]
    fn prefetch_takes_any_names() {
        let l = list(&[("example.com", Kind::Block)]);
        let mut hashes = Vec::new();
        let names: [&[u8]; 4] = [b"", b".", b"a..b", b"x.example.com"];
        std::hint::black_box(l.prefetch(names, &mut hashes));
        assert_eq!(hashes.len(), 1 + 2 + 3 + 3);
        assert_eq!(Blocklist::default().prefetch(names, &mut hashes), 0);
    }
}
