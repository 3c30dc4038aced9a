//! Glob and regex rules: the slow path, kept off the lookups of names no pattern can match.
//!
//! Each glob contributes its longest literal run (at least [`MIN_LITERAL`] bytes, e.g.
//! `rtpdn` in `clk.rtpdn*.com`) to one Aho-Corasick automaton; a name is run through the
//! `GlobSet` only when the automaton finds one of those literals in it. Globs without such a
//! literal (`*ad?.*`) are checked for every name, and so are regexes (the `regex` crate's
//! `RegexSet` does its own literal prefiltering; regexes run on bytes without Unicode classes,
//! since names are ASCII, which keeps `.{100,}` small). The cost is measured by the bench.

use std::sync::Arc;

use aho_corasick::AhoCorasick;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use regex::bytes::RegexSet;

use super::{Kind, Match, PatternKind};

/// Shortest literal run used as a prefilter key.
pub const MIN_LITERAL: usize = 3;

#[derive(Debug, Clone)]
struct Rule {
    text: Box<str>,
    source: u16,
    line: u32,
}

#[derive(Debug, Default)]
struct KindBuilder {
    filtered: Vec<(Rule, String)>,
    always: Vec<Rule>,
    regexes: Vec<Rule>,
}

/// Collects patterns; [`PatternSetBuilder::build`] compiles them.
#[derive(Debug, Default)]
pub struct PatternSetBuilder {
    block: KindBuilder,
    allow: KindBuilder,
}

impl PatternSetBuilder {
    /// Adds a pattern that the parser has already checked to compile.
    pub fn add(&mut self, pattern: PatternKind, text: &str, kind: Kind, source: u16, line: u32) {
        let k = match kind {
            Kind::Block => &mut self.block,
            Kind::Allow => &mut self.allow,
        };
        let rule = Rule {
            text: text.into(),
            source,
            line,
        };
        match pattern {
            PatternKind::Regex => k.regexes.push(rule),
            PatternKind::Glob => match required_literal(text) {
                Some(lit) => k.filtered.push((rule, lit)),
                None => k.always.push(rule),
            },
        }
    }

    /// Compiles the sets. A pattern that fails here (it compiled alone) is dropped with a
    /// warning rather than failing the load.
    pub fn build(self) -> PatternSet {
        PatternSet {
            block: self.block.build(),
            allow: self.allow.build(),
        }
    }
}

impl KindBuilder {
    fn build(self) -> Option<Box<Compiled>> {
        if self.filtered.is_empty() && self.always.is_empty() && self.regexes.is_empty() {
            return None;
        }
        let (filtered_rules, literals): (Vec<Rule>, Vec<String>) =
            self.filtered.into_iter().unzip();
        let prefilter = if literals.is_empty() {
            None
        } else {
            aho_corasick::AhoCorasickBuilder::new()
                .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                .build(&literals)
                .map_err(|e| tracing::warn!("glob prefilter not built: {e}"))
                .ok()
        };
        let (filtered, filtered_rules) = globs(filtered_rules);
        let (always, always_rules) = globs(self.always);
        Some(Box::new(Compiled {
            filtered,
            filtered_rules,
            prefilter,
            always,
            always_rules,
            regex: regexes(&self.regexes),
            regex_rules: self.regexes,
        }))
    }
}

/// The set of `rules`' globs, and the rules it holds (set index = rule index). The parser
/// already compiled each glob, so none is expected to fail here; one that does is dropped
/// with its rule, keeping the indexes aligned.
fn globs(rules: Vec<Rule>) -> (GlobSet, Vec<Rule>) {
    let mut b = GlobSetBuilder::new();
    let mut kept = Vec::with_capacity(rules.len());
    for r in rules {
        match GlobBuilder::new(&r.text).literal_separator(false).build() {
            Ok(g) => {
                b.add(g);
                kept.push(r);
            }
            Err(e) => tracing::warn!(glob = %r.text, "glob dropped: {e}"),
        }
    }
    match b.build() {
        Ok(set) => (set, kept),
        Err(e) => {
            tracing::warn!("glob set not built, globs ignored: {e}");
            (GlobSet::empty(), Vec::new())
        }
    }
}

fn regexes(rules: &[Rule]) -> Option<RegexSet> {
    if rules.is_empty() {
        return None;
    }
    regex::bytes::RegexSetBuilder::new(rules.iter().map(|r| &*r.text))
        .case_insensitive(true)
        .unicode(false)
        .size_limit(64 << 20)
        .nest_limit(super::parse::REGEX_NEST_LIMIT)
        .build()
        .map_err(|e| tracing::warn!("regex set not built, regexes ignored: {e}"))
        .ok()
}

#[derive(Debug)]
struct Compiled {
    prefilter: Option<AhoCorasick>,
    filtered: GlobSet,
    filtered_rules: Vec<Rule>,
    always: GlobSet,
    always_rules: Vec<Rule>,
    regex: Option<RegexSet>,
    regex_rules: Vec<Rule>,
}

impl Compiled {
    fn find(&self, name: &str) -> Option<&Rule> {
        // Without a prefilter (none built) every filtered glob is tried. `matches` allocates
        // only on a hit.
        if self.prefilter.as_ref().is_none_or(|p| p.is_match(name))
            && let Some(&i) = self.filtered.matches(name).first()
        {
            return self.filtered_rules.get(i);
        }
        if !self.always.is_empty() && self.always.is_match(name) {
            let i = *self.always.matches(name).first()?;
            return self.always_rules.get(i);
        }
        if let Some(re) = &self.regex
            && re.is_match(name.as_bytes())
        {
            let i = re.matches(name.as_bytes()).iter().next()?;
            return self.regex_rules.get(i);
        }
        None
    }

    fn len(&self) -> usize {
        self.filtered_rules.len() + self.always_rules.len() + self.regex_rules.len()
    }
}

/// Compiled glob and regex rules, split by kind.
#[derive(Debug, Default)]
pub struct PatternSet {
    block: Option<Box<Compiled>>,
    allow: Option<Box<Compiled>>,
}

impl PatternSet {
    /// True when there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.block.is_none() && self.allow.is_none()
    }

    /// Number of patterns of `kind`.
    pub fn len(&self, kind: Kind) -> usize {
        match kind {
            Kind::Block => self.block.as_ref().map_or(0, |c| c.len()),
            Kind::Allow => self.allow.as_ref().map_or(0, |c| c.len()),
        }
    }

    /// Globs of `kind` that have no prefilter literal and run for every name.
    pub fn unfiltered_globs(&self, kind: Kind) -> usize {
        let c = match kind {
            Kind::Block => &self.block,
            Kind::Allow => &self.allow,
        };
        c.as_ref().map_or(0, |c| c.always_rules.len())
    }

    /// The first pattern of `kind` matching `name`.
    pub fn find<'a>(
        &'a self,
        name: &str,
        kind: Kind,
        sources: &'a [Arc<str>],
    ) -> Option<Match<'a>> {
        let c = match kind {
            Kind::Block => self.block.as_deref()?,
            Kind::Allow => self.allow.as_deref()?,
        };
        let r = c.find(name)?;
        Some(Match {
            kind,
            rule: &r.text,
            source: sources.get(r.source as usize).map_or("", |s| s),
            line: r.line,
            source_id: r.source,
            at: super::RuleAt::Pattern,
        })
    }
}

/// The longest literal run of a glob that every match must contain, if one is at least
/// [`MIN_LITERAL`] bytes. For the `{X,*.X}` form the parser writes, the literals of `X`.
/// Other brace alternations and negated classes have none (checked for every name).
pub fn required_literal(glob: &str) -> Option<String> {
    let body = match glob.strip_prefix('{').and_then(|g| g.strip_suffix('}')) {
        Some(inner) => {
            let (a, b) = inner.split_once(',')?;
            if b.contains([',', '{']) || !b.contains(a.trim_start_matches("*.")) {
                return None;
            }
            a
        }
        None if glob.contains(['{', '}']) => return None,
        None => glob,
    };
    let mut best = "";
    let mut start = None;
    let mut in_class = false;
    let bytes = body.as_bytes();
    for (i, &c) in bytes.iter().enumerate() {
        let literal = !in_class && !matches!(c, b'*' | b'?' | b'[' | b']');
        match (literal, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s > best.len() {
                    best = &body[s..i];
                }
                start = None;
            }
            _ => {}
        }
        if c == b'[' {
            in_class = true;
        } else if c == b']' {
            in_class = false;
        }
    }
    if let Some(s) = start
        && bytes.len() - s > best.len()
    {
        best = &body[s..];
    }
    (best.len() >= MIN_LITERAL).then(|| best.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_extraction() {
        assert_eq!(
            required_literal("ads*.example.*").as_deref(),
            Some(".example.")
        );
        assert_eq!(
            required_literal("{clk.rtpdn*.com,*.clk.rtpdn*.com}").as_deref(),
            Some("clk.rtpdn")
        );
        assert_eq!(required_literal("ad[0-9abcdefgh].c*"), None);
        assert_eq!(required_literal("*ad?.*"), None);
        assert_eq!(required_literal("{a*,b*}"), None);
    }

    #[test]
    fn globs_and_regexes_match_whole_names() {
        let mut b = PatternSetBuilder::default();
        b.add(PatternKind::Glob, "ads*.example.*", Kind::Block, 0, 1);
        b.add(PatternKind::Glob, "*ad?.*", Kind::Block, 0, 2);
        b.add(
            PatternKind::Regex,
            r"(^|\.)lgsmartad\.com$",
            Kind::Block,
            0,
            3,
        );
        b.add(PatternKind::Glob, "adsok.example.*", Kind::Allow, 0, 4);
        let p = b.build();
        let src: Vec<Arc<str>> = vec![Arc::from("p.txt")];
        let find = |n: &str, k| p.find(n, k, &src).map(|m| (m.rule, m.line));
        assert_eq!(
            find("ads1.example.org", Kind::Block),
            Some(("ads*.example.*", 1))
        );
        assert_eq!(find("x.ads1.example.org", Kind::Block), None);
        assert_eq!(find("bad1.x", Kind::Block), Some(("*ad?.*", 2)));
        assert_eq!(
            find("tv.lgsmartad.com", Kind::Block),
            Some((r"(^|\.)lgsmartad\.com$", 3))
        );
        assert_eq!(find("lgsmartad.com.evil", Kind::Block), None);
        assert_eq!(find("example.com", Kind::Block), None);
        assert_eq!(
            find("adsok.example.net", Kind::Allow),
            Some(("adsok.example.*", 4))
        );
        assert_eq!(p.unfiltered_globs(Kind::Block), 1);
    }
}
