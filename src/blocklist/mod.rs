//! The suffix matcher: an immutable set of block and allow rules, each meaning "this name and
//! everything below it", looked up by walking the query name's suffixes.
//!
//! Layout: one arena of records (an 8-byte header, then the name) and two tables of 64-byte
//! buckets (`table.rs`; subtree rules, exact rules), so that a lookup touches one cache line
//! per suffix and one more for the rule that matches. The builder (`build.rs`) writes rules
//! straight into that layout as lines are parsed (duplicates, allow/block merges and
//! `$badfilter` removals in place), and freezing copies nothing. A million rules cost about
//! 35 MiB, also while they load, and no allocation happens per lookup. Globs and regexes
//! live in `patterns.rs`, behind a literal prefilter. The frozen list is shared as
//! `Arc<Blocklist>`; a reload builds a new one beside it. Parsing list files is `parse/` (a
//! file per format family); reading them (files, embedded lists, cached downloads) is
//! `source.rs`; loading them into a list is `load.rs`; downloading URL lists is `fetch.rs`.

mod build;
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

pub use build::BlocklistBuilder;
pub use parse::{Kind, LineError, PatternKind, SkipReason};
use patterns::PatternSet;
use table::Table;
use words::Words;

const ALLOW: u8 = 1;
const IMPORTANT: u8 = 2;

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
    /// Where the rule is in its list, to name it again without a lookup
    /// ([`Blocklist::rule_at`]).
    pub at: RuleAt,
}

/// The `source_id` of a rule that no list holds (builtin rules).
pub const NO_SOURCE: u16 = u16::MAX;

/// Where a [`Match`]'s rule is in the [`Blocklist`] that found it: the query path keeps
/// this (a few bytes, no lookup) so that the log writer names the rule without walking the
/// name's suffixes through the tables a second time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAt {
    /// A name rule. Its name is the last `len` bytes of the name looked up (a rule matches
    /// a suffix of the name), so nothing of the list's arena is read again.
    Named {
        /// Length of the rule's name.
        len: u8,
        /// True for an allow rule.
        allow: bool,
        /// Index of its list among [`Blocklist::sources`].
        source: u16,
        /// 1-based line in that list.
        line: u32,
    },
    /// A glob or regex: found again by matching the name (patterns are few and rare).
    Pattern,
    /// A rule that no list holds (builtin or written in the config).
    Unlisted,
}

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
    /// Bytes of `arena` holding records (the rest was reserved and never touched).
    arena_len: usize,
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
            at: RuleAt::Named {
                // A record's length is one byte (`record_name`).
                len: u8::try_from(e.name.len()).unwrap_or(u8::MAX),
                allow: e.allow(),
                source: e.source,
                line: e.line,
            },
        }
    }

    /// The rule a [`Match`] of this list for `name` found, named again from `at` alone:
    /// no lookup and no read of the arena for a name rule. `at` must come from a match of
    /// this list for this `name` (other values give a wrong rule, never a panic).
    pub fn rule_at<'a>(&'a self, at: RuleAt, name: &'a str) -> Option<Match<'a>> {
        match at {
            RuleAt::Named {
                len,
                allow,
                source,
                line,
            } => {
                let rule = name
                    .len()
                    .checked_sub(usize::from(len))
                    .and_then(|i| name.get(i..))
                    .unwrap_or("");
                Some(Match {
                    kind: if allow { Kind::Allow } else { Kind::Block },
                    rule,
                    source: self.sources.get(usize::from(source)).map_or("", |s| s),
                    line,
                    source_id: source,
                    at,
                })
            }
            RuleAt::Pattern => self.find(name.as_bytes()),
            RuleAt::Unlisted => None,
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
        self.arena_len + self.subtree.heap_bytes() + self.exact.heap_bytes()
    }

    /// Asks for the table lines that [`Blocklist::find`] of each name will look at first,
    /// then for the records those lines point at, and returns a value made from them (pass
    /// it to `std::hint::black_box`). `hashes` is scratch space, kept by the caller between
    /// batches.
    ///
    /// A server calls this for a whole batch of queries before looking any up. The hash of
    /// every suffix is computed (the names are in the packets just received, so this only
    /// computes) and its bucket's line asked for with a prefetch instruction, which does
    /// not wait: the memory system fetches dozens of lines at once, where lookups one after
    /// another would wait for each miss in turn. Then each bucket is read (by now its line
    /// is on its way or here) and the record whose tag matched (mostly the rule that will
    /// match) is asked for the same way: that second round arrives while the first queries
    /// of the batch are answered, instead of being waited for here.
    pub fn prefetch<'n>(
        &self,
        names: impl IntoIterator<Item = &'n [u8]>,
        hashes: &mut Vec<u64>,
    ) -> u64 {
        if self.subtree.is_empty() && self.exact.is_empty() {
            return 0;
        }
        hashes.clear();
        let exact = !self.exact.is_empty();
        for name in names {
            for (depth, s) in domain::suffixes(name).enumerate() {
                let h = self.hasher.hash_one(s);
                if depth == 0 && exact {
                    self.exact.prefetch(h);
                }
                self.subtree.prefetch(h);
                hashes.push(h);
            }
        }
        let arena = self.arena.bytes();
        hashes.iter().fold(0, |seen, &h| {
            self.subtree.candidate(h).map_or(seen, |off| {
                // The header's line, and the name's when it runs into the next one (a
                // record is packed after the one before it; names are mostly under 24
                // bytes).
                let off = off as usize;
                prefetch_index::prefetch_index(arena, off);
                prefetch_index::prefetch_index(arena, off + HEADER + 23);
                seen ^ off as u64
            })
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

    #[test]
    fn a_rule_named_from_where_it_is_equals_the_rule_found() {
        // The log writer names the deciding rule with `rule_at` instead of a second lookup:
        // for every kind of rule (subtree, exact, allow, important, glob, regex, two lists)
        // it must name exactly what `find` found.
        let mut b = BlocklistBuilder::new();
        let s1 = b.add_source("one.txt");
        let s2 = b.add_source("two.txt");
        b.insert("example.com", Kind::Block, false, false, s1, 3);
        b.insert("mail.example.com", Kind::Allow, false, false, s2, 9);
        b.insert("exact.example.com", Kind::Block, true, false, s2, 11);
        b.insert("ads.test", Kind::Block, false, true, s1, 5);
        b.insert("x.ads.test", Kind::Allow, false, false, s1, 6);
        b.insert_pattern(PatternKind::Glob, "*.track*.net", Kind::Block, s2, 20);
        b.insert_pattern(PatternKind::Regex, "^ok[0-9]+\\.track", Kind::Allow, s2, 21);
        let l = b.build();
        let names = [
            "example.com",
            "www.example.com",
            "a.mail.example.com",
            "exact.example.com",
            "a.exact.example.com",
            "y.x.ads.test",
            "a.tracker.net",
            "ok1.tracker.net",
            "nothing.org",
            "",
        ];
        let mut found = 0;
        for name in names {
            let m = l.find(name.as_bytes());
            assert_eq!(m.and_then(|m| l.rule_at(m.at, name)), m, "{name:?}");
            found += usize::from(m.is_some());
        }
        assert_eq!(found, 8);
        // A wrong length never panics.
        let at = RuleAt::Named {
            len: 200,
            allow: false,
            source: 9,
            line: 1,
        };
        assert_eq!(
            l.rule_at(at, "a.b").map(|m| (m.rule, m.source)),
            Some(("", ""))
        );
    }
}
