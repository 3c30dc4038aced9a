//! List-file parsing: text in, rules and per-line skip reasons out. Parsing never fails as a
//! whole; a bad line becomes a [`LineError`] and the rest of the file loads.
//!
//! Each line is read in whatever format it is written in, so a file may mix them:
//! - plain `example.com`, wildcard `*.example.com`, leading-dot `.example.com`;
//! - hosts `0.0.0.0 a.com b.com` (self entries such as `localhost` are ignored);
//! - AdBlock DNS `||a.com^`, `@@||a.com^` (an exception), with `$important` and `$badfilter`
//!   honoured; a rule with a browser-only modifier (`$third-party`, `$script`…) or a DNS
//!   modifier that sinkhole does not implement (`$client`, `$dnsrewrite`…) is skipped whole;
//! - dnsmasq `address=/a.com/`, `address=/a.com/0.0.0.0`, `address=/a.com/#`, `server=/a.com/`,
//!   `local=/a.com/`;
//! - `=a.com` (this name only, not its subtree);
//! - globs (`ads*.example.*`, matched against the whole name) and regexes (`/…/` as AdBlock
//!   writes them, or a bare Pi-hole style regex such as `(^|\.)lgsmartad\.com$`).
//!
//! Every name rule means "this name and everything below it" unless it is exact.
//!
//! This file holds the types of a parsed line and [`parse_line`], which tries the formats
//! in a fixed order (the order decides lines that several formats could claim). Each format
//! family has its own file: `hosts.rs` (plain names, hosts lines, `*.x` wildcards),
//! `adblock.rs` (`||x^`, `|x^`, `@@`, `$modifiers`, `/regex/`, cosmetic and URL rules),
//! `dnsmasq.rs` (`address=`, `server=`, `local=`) and `pattern.rs` (globs and regexes, and
//! the checks that they compile).

mod adblock;
mod dnsmasq;
mod hosts;
mod pattern;

use std::fmt;

use super::domain::{DomainError, is_public_suffix, normalize_into};

pub use hosts::SELF_ENTRIES;
pub use pattern::REGEX_NEST_LIMIT;

/// What a rule does to the names it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The name (and its subtree, unless exact) is blocked.
    Block,
    /// The name (and its subtree, unless exact) is allowed, whatever a less specific block says.
    Allow,
}

/// Why a line was skipped. The load summary counts lines per reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// Not a valid domain name (bad character, empty label, too long…).
    InvalidName,
    /// An IP address where a domain name was expected.
    IpAddress,
    /// A block or allow entry for a public suffix (`com`, `co.uk`): refused as a guard.
    PublicSuffix,
    /// An AdBlock rule with a modifier that only means something in a browser.
    BrowserModifier,
    /// An AdBlock DNS modifier that sinkhole does not implement (`$client`, `$dnsrewrite`…).
    UnsupportedModifier,
    /// A URL, path or URL-fragment rule: browsers match these, DNS cannot.
    UrlRule,
    /// A cosmetic (element hiding) rule such as `example.com##.banner`.
    Cosmetic,
    /// A dnsmasq line that forwards or rewrites instead of blocking.
    DnsmasqNotBlock,
    /// A glob that does not compile.
    BadGlob,
    /// A regex that does not compile.
    BadRegex,
    /// A line longer than [`MAX_LINE`] bytes.
    TooLong,
    /// More than one field and not a hosts line, or otherwise not a rule in any format.
    Unrecognised,
}

impl SkipReason {
    /// A short stable key for logs and summaries (`invalid_name`, `public_suffix`…).
    pub fn key(self) -> &'static str {
        match self {
            Self::InvalidName => "invalid_name",
            Self::IpAddress => "ip_address",
            Self::PublicSuffix => "public_suffix",
            Self::BrowserModifier => "browser_modifier",
            Self::UnsupportedModifier => "unsupported_modifier",
            Self::UrlRule => "url_rule",
            Self::Cosmetic => "cosmetic",
            Self::DnsmasqNotBlock => "dnsmasq_not_block",
            Self::BadGlob => "bad_glob",
            Self::BadRegex => "bad_regex",
            Self::TooLong => "too_long",
            Self::Unrecognised => "unrecognised",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Longest line read; longer lines are skipped as [`SkipReason::TooLong`].
pub const MAX_LINE: usize = 4096;

/// A skipped line, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number in the file.
    pub line: u32,
    /// The offending text (trimmed, cut to 80 characters).
    pub text: String,
    /// Why, as a countable category.
    pub reason: SkipReason,
    /// Why, in words (names the bad character, the modifier…).
    pub detail: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {:?}", self.reason, self.detail, self.text)
    }
}

/// Glob or regex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatternKind {
    /// A globset glob matched against the whole name.
    Glob,
    /// A regex searched in the name (anchor it with `^…$` to match the whole name).
    Regex,
}

/// One parsed line, borrowing the normalised name from the caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// Blank line or comment.
    Empty,
    /// A name rule.
    Name {
        /// The normalised name.
        name: &'a str,
        /// Block or allow.
        kind: Kind,
        /// The name only, not its subtree.
        exact: bool,
        /// `$important`: beats allow rules.
        important: bool,
    },
    /// The names of a hosts line with aliases, or of a dnsmasq `/a/b/` rule (one or more), all
    /// subtree rules unless `exact`; each is already normalised. A hosts line with one name is
    /// a [`Line::Name`].
    Names {
        /// The names.
        names: Vec<String>,
        /// Block or allow.
        kind: Kind,
        /// The names only, not their subtrees.
        exact: bool,
    },
    /// `$badfilter`: disables the same rule without the modifier, wherever it is.
    BadFilter {
        /// The rule's name.
        name: &'a str,
        /// The rule's kind.
        kind: Kind,
    },
    /// A glob or regex rule (checked to compile).
    Pattern {
        /// Glob or regex.
        pattern: PatternKind,
        /// The pattern text, lower case for globs.
        text: String,
        /// Block or allow.
        kind: Kind,
    },
    /// A skipped line.
    Skip(SkipReason, String),
}

/// Parses one line. `default_kind` is what a plain entry means (`Block` in a blocklist,
/// `Allow` in an allowlist); `exact_default` is the list's `match = "exact"`. A normalised
/// name is written into `buf`.
pub fn parse_line<'b>(
    raw: &str,
    default_kind: Kind,
    exact_default: bool,
    buf: &'b mut String,
) -> Line<'b> {
    if raw.len() > MAX_LINE {
        return Line::Skip(
            SkipReason::TooLong,
            format!("line longer than {MAX_LINE} bytes"),
        );
    }
    // A BOM may sit at the start of any line (joined files), CR ends CRLF lines.
    let mut s = raw.trim().trim_start_matches('\u{feff}').trim();
    if s.is_empty() || s.starts_with('#') || s.starts_with('!') || s.starts_with('[') {
        return Line::Empty;
    }
    let hash = s.contains('#');
    if hash && let Some(i) = s.find(" #").or_else(|| s.find("\t#")) {
        s = s[..i].trim_end();
    }
    let mut kind = default_kind;
    if let Some(rest) = s.strip_prefix("@@") {
        kind = Kind::Allow;
        s = rest;
    }
    // Fast path: a bare name (most lines of most lists).
    if hosts::is_bare_name(s) {
        return hosts::bare_name(s, kind, exact_default, buf);
    }
    if hash && adblock::is_cosmetic(s) {
        return Line::Skip(
            SkipReason::Cosmetic,
            "cosmetic (element hiding) rule".into(),
        );
    }
    if let Some(line) = adblock::regex_rule(s, kind) {
        return line;
    }
    // A bare Pi-hole style regex.
    if !s.starts_with('|') && pattern::looks_like_regex(s) {
        return pattern::regex_line(s, kind);
    }
    // AdBlock modifiers, then the rules they may modify.
    let (rule, important, badfilter) = match adblock::split_modifiers(s) {
        Ok(split) => split,
        Err(skip) => return skip,
    };
    s = rule;
    if let Some(rest) = s.strip_prefix("||") {
        return adblock::domain_rule(rest, kind, important, badfilter, buf);
    }
    if let Some(name) = adblock::anchored_name(s) {
        return name_line(name, kind, true, important, badfilter, buf);
    }
    if important || badfilter {
        return Line::Skip(
            SkipReason::UnsupportedModifier,
            "$important/$badfilter outside an ||name^ rule".into(),
        );
    }
    if let Some(rest) = s.strip_prefix('=')
        && !rest.contains('/')
    {
        return name_line(rest, kind, true, false, false, buf);
    }
    if let Some(line) = dnsmasq::directive(s, kind, exact_default) {
        return line;
    }
    if let Some(name) = adblock::subtree_name(s) {
        return name_line(name, kind, false, false, false, buf);
    }
    if adblock::is_url_rule(s) {
        return Line::Skip(SkipReason::UrlRule, "URL or path rule".into());
    }
    hosts::fields(s, kind, exact_default, buf)
}

/// Normalises `name` into `buf` and applies the public-suffix guard.
fn normalized(name: &str, buf: &mut String) -> Result<(), Line<'static>> {
    match normalize_into(name, buf) {
        Ok(()) if is_public_suffix(buf) => Err(Line::Skip(
            SkipReason::PublicSuffix,
            format!("{buf:?} is a public suffix; refusing to block or allow all of it"),
        )),
        Ok(()) => Ok(()),
        Err(DomainError::IpAddress) => Err(Line::Skip(
            SkipReason::IpAddress,
            format!("{name:?} is an IP address, not a domain"),
        )),
        Err(e) => Err(Line::Skip(
            SkipReason::InvalidName,
            format!("invalid domain {name:?}: {e}"),
        )),
    }
}

/// A name rule for `name`, normalised into `buf` (a `$badfilter` rule when `badfilter`), or
/// the skip saying why the name is not one.
fn name_line<'b>(
    name: &str,
    kind: Kind,
    exact: bool,
    important: bool,
    badfilter: bool,
    buf: &'b mut String,
) -> Line<'b> {
    if let Err(skip) = normalized(name, buf) {
        return skip;
    }
    if badfilter {
        return Line::BadFilter { name: buf, kind };
    }
    Line::Name {
        name: buf,
        kind,
        exact,
        important: important && kind == Kind::Block,
    }
}

/// Parses every line of `text` and calls `f(line_number, raw_line, parsed)` (1-based; `\n` or
/// `\r\n` endings), reusing one name buffer.
pub fn for_each_line(
    text: &str,
    default_kind: Kind,
    exact_default: bool,
    mut f: impl FnMut(u32, &str, Line<'_>),
) {
    let mut buf = String::with_capacity(256);
    for (i, raw) in text.split('\n').enumerate() {
        let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let parsed = parse_line(raw, default_kind, exact_default, &mut buf);
        f(n, raw, parsed);
    }
}

/// Cuts a line for a report.
pub fn excerpt(raw: &str) -> String {
    raw.trim().chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::tools::{ReadList, read_list};

    fn names(p: &ReadList) -> Vec<(&str, Kind)> {
        p.rules.iter().map(|r| (r.name.as_str(), r.kind)).collect()
    }

    /// The line parsed and owned: a name rule becomes a one-name [`Line::Names`].
    pub(super) fn one(line: &str) -> Line<'static> {
        let mut buf = String::new();
        match parse_line(line, Kind::Block, false, &mut buf) {
            Line::Name { kind, exact, .. } => Line::Names {
                names: vec![buf.clone()],
                kind,
                exact,
            },
            Line::BadFilter { .. } => Line::Skip(SkipReason::Unrecognised, "badfilter".into()),
            Line::Empty => Line::Empty,
            Line::Names { names, kind, exact } => Line::Names { names, kind, exact },
            Line::Pattern {
                pattern,
                text,
                kind,
            } => Line::Pattern {
                pattern,
                text,
                kind,
            },
            Line::Skip(r, d) => Line::Skip(r, d),
        }
    }

    /// Why the line is skipped; panics when it is not.
    pub(super) fn reason(line: &str) -> SkipReason {
        match one(line) {
            Line::Skip(r, _) => r,
            other => panic!("{line:?} was not skipped: {other:?}"),
        }
    }

    /// A subtree block of `name`, as [`one`] returns it.
    pub(super) fn block(name: &str) -> Line<'static> {
        Line::Names {
            names: vec![name.into()],
            kind: Kind::Block,
            exact: false,
        }
    }

    #[test]
    fn plain_comments_blanks_and_inline_comments() {
        let p = read_list(
            "t.txt",
            "# header\n\nexample.com\nAds.Example.NET.  # tracker\r\n  ! note\n\u{feff}bom.com\r\n",
            Kind::Block,
            false,
        );
        assert_eq!(
            names(&p),
            vec![
                ("example.com", Kind::Block),
                ("ads.example.net", Kind::Block),
                ("bom.com", Kind::Block)
            ]
        );
        assert_eq!(p.rules[1].line, 4);
        assert_eq!(p.rules[2].line, 6);
        assert!(p.errors.is_empty());
    }

    #[test]
    fn hosts_wildcard_and_adblock_forms() {
        let p = read_list(
            "t.txt",
            "127.0.0.1  localhost\n::1 localhost ip6-localhost\n0.0.0.0 a.com b.com\n*.c.com\n||d.com^\n@@||e.com^\n::1 f.com\n127.0.0.1\tg.com\n",
            Kind::Block,
            false,
        );
        assert_eq!(
            names(&p),
            vec![
                ("a.com", Kind::Block),
                ("b.com", Kind::Block),
                ("c.com", Kind::Block),
                ("d.com", Kind::Block),
                ("e.com", Kind::Allow),
                ("f.com", Kind::Block),
                ("g.com", Kind::Block),
            ]
        );
        assert!(p.errors.is_empty(), "{:?}", p.errors);
    }

    #[test]
    fn bad_lines_are_reported_with_line_and_reason() {
        let p = read_list(
            "t.txt",
            "good.com\nbad..com\nx y z\n1.2.3.4\ncom\n@@||co.uk^\n",
            Kind::Block,
            false,
        );
        assert_eq!(names(&p), vec![("good.com", Kind::Block)]);
        let got: Vec<(u32, SkipReason)> = p.errors.iter().map(|e| (e.line, e.reason)).collect();
        assert_eq!(
            got,
            vec![
                (2, SkipReason::InvalidName),
                (3, SkipReason::Unrecognised),
                (4, SkipReason::IpAddress),
                (5, SkipReason::PublicSuffix),
                (6, SkipReason::PublicSuffix),
            ]
        );
        assert!(
            p.errors[0].detail.contains("empty label"),
            "{:?}",
            p.errors[0]
        );
    }

    #[test]
    fn huge_and_binary_lines_do_not_panic() {
        let long = "a".repeat(1 << 20);
        assert_eq!(reason(&long), SkipReason::TooLong);
        assert_eq!(reason("\u{fffd}\u{fffd}.com"), SkipReason::InvalidName);
    }
}
