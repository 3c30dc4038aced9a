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

use std::fmt;

use super::domain::{DomainError, is_public_suffix, normalize_into};

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

/// Host names that hosts files list for the machine itself; they are ignored, not blocked.
const SELF_ENTRIES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// AdBlock modifiers that only make sense in a browser (the rule is skipped).
const BROWSER_MODIFIERS: &[&str] = &[
    "third-party",
    "~third-party",
    "3p",
    "1p",
    "first-party",
    "script",
    "image",
    "stylesheet",
    "css",
    "xmlhttprequest",
    "xhr",
    "subdocument",
    "document",
    "doc",
    "popup",
    "object",
    "media",
    "font",
    "websocket",
    "ping",
    "other",
    "domain",
    "redirect",
    "redirect-rule",
    "csp",
    "method",
    "removeparam",
    "header",
    "match-case",
    "elemhide",
    "generichide",
    "genericblock",
    "all",
    "from",
    "to",
];

/// AdGuard Home DNS modifiers that sinkhole does not implement (the rule is skipped, since
/// applying it without its condition would block more than the author meant).
const DNS_MODIFIERS: &[&str] = &["client", "ctag", "denyallow", "dnstype", "dnsrewrite"];

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
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        if is_self_entry(s) && !s.eq_ignore_ascii_case("local") {
            return Line::Empty;
        }
        if let Some(rest) = s.strip_prefix('.') {
            return name_line(rest, kind, false, false, false, buf);
        }
        return name_line(s, kind, exact_default, false, false, buf);
    }
    if hash && (s.contains("##") || s.contains("#@#") || s.contains("#$#") || s.contains("#?#")) {
        return Line::Skip(
            SkipReason::Cosmetic,
            "cosmetic (element hiding) rule".into(),
        );
    }
    // AdBlock regex `/…/` (optionally with modifiers after the closing slash).
    if s.len() > 2
        && s.starts_with('/')
        && let Some(end) = s.rfind('/')
        && end > 0
        && (end == s.len() - 1 || s[end + 1..].starts_with('$'))
    {
        if end < s.len() - 1 {
            let (important, badfilter) = match modifiers(&s[end + 2..]) {
                Ok(m) => m,
                Err(skip) => return skip,
            };
            if badfilter || important {
                return Line::Skip(
                    SkipReason::UnsupportedModifier,
                    "$important/$badfilter on a regex rule".into(),
                );
            }
        }
        return regex_line(&s[1..end], kind);
    }
    // A bare Pi-hole style regex.
    if !s.starts_with('|') && looks_like_regex(s) {
        return regex_line(s, kind);
    }
    // Modifiers.
    let (mut important, mut badfilter) = (false, false);
    if let Some((rule, mods)) = s.split_once('$') {
        match modifiers(mods) {
            Ok(m) => (important, badfilter) = m,
            Err(skip) => return skip,
        }
        s = rule;
    }
    if let Some(rest) = s.strip_prefix("||") {
        let rest = rest.strip_suffix('|').unwrap_or(rest);
        let rest = rest.strip_suffix('^').unwrap_or(rest);
        if rest.contains(['/', ':', '^', '|', '&', '=', '?']) {
            return Line::Skip(SkipReason::UrlRule, "URL or path rule".into());
        }
        if rest.contains(['*', '[']) {
            // `||ads*.x.com^`: the name or any name below it matches the glob.
            return glob_line(&format!("{{{rest},*.{rest}}}"), kind);
        }
        if let Some(label) = rest.strip_suffix('.')
            && !label.is_empty()
            && !label.contains('.')
        {
            // `||tracker.`: the label under any top-level domain.
            return glob_line(&format!("{{{label}.*,*.{label}.*}}"), kind);
        }
        return name_line(rest, kind, false, important, badfilter, buf);
    }
    // `|name^`: a name anchored at both ends, i.e. this name only.
    if let Some(rest) = s.strip_prefix('|')
        && let Some(name) = rest.strip_suffix('|').unwrap_or(rest).strip_suffix('^')
        && !name.contains(['/', ':', '^', '|', '&', '=', '?', '*', '['])
    {
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
    for key in ["address=", "server=", "local="] {
        if let Some(rest) = s.strip_prefix(key) {
            return dnsmasq_line(key, rest, kind, exact_default);
        }
    }
    if let Some(rest) = s.strip_prefix('.')
        && let Some(name) = rest.strip_suffix('^')
        && !name.contains(['/', '^', '|', '*'])
    {
        // AdGuard `.example.com^`: every name below example.com.
        return name_line(name, kind, false, false, false, buf);
    }
    if !s.contains(char::is_whitespace)
        && (s.starts_with('|')
            || s.contains(['/', '&', '^', '|', '='])
            || s.contains(':') && s.parse::<std::net::IpAddr>().is_err())
    {
        return Line::Skip(SkipReason::UrlRule, "URL or path rule".into());
    }
    let mut fields = s.split_whitespace();
    let first = fields.next().unwrap_or("");
    let second = fields.next();
    // hosts: `ADDRESS name [alias…]`.
    if let Some(second) = second {
        if first.parse::<std::net::IpAddr>().is_err() {
            return Line::Skip(
                SkipReason::Unrecognised,
                "more than one field, and not a hosts line".into(),
            );
        }
        let mut hosts = std::iter::once(second)
            .chain(fields)
            .filter(|n| !is_self_entry(n));
        let Some(one) = hosts.next() else {
            return Line::Empty;
        };
        let Some(two) = hosts.next() else {
            // The usual hosts line: one name, no allocation.
            return name_line(one, kind, exact_default, false, false, buf);
        };
        let mut names = Vec::new();
        for name in [one, two].into_iter().chain(hosts) {
            if let Err(skip) = normalized(name, buf) {
                return skip;
            }
            names.push(buf.clone());
        }
        return Line::Names {
            names,
            kind,
            exact: exact_default,
        };
    }
    if let Some(rest) = first.strip_prefix("*.") {
        if rest.contains(['*', '?', '[']) {
            return glob_line(first, kind);
        }
        return name_line(rest, kind, false, false, false, buf);
    }
    if first.contains(['*', '?', '[', '{']) {
        return glob_line(first, kind);
    }
    if let Some(rest) = first.strip_prefix('.') {
        return name_line(rest, kind, false, false, false, buf);
    }
    if is_self_entry(first) && !first.eq_ignore_ascii_case("local") {
        return Line::Empty;
    }
    name_line(first, kind, exact_default, false, false, buf)
}

/// Parses `$a,b=c` modifiers: `Ok((important, badfilter))` or the skip for the rule.
fn modifiers(mods: &str) -> Result<(bool, bool), Line<'static>> {
    let (mut important, mut badfilter) = (false, false);
    for m in mods.split(',') {
        let m = m.trim();
        let key = m.split('=').next().unwrap_or("").trim_start_matches('~');
        match key {
            "important" => important = true,
            "badfilter" => badfilter = true,
            _ if DNS_MODIFIERS.contains(&key) => {
                return Err(Line::Skip(
                    SkipReason::UnsupportedModifier,
                    format!("DNS modifier ${key} is not supported"),
                ));
            }
            _ if BROWSER_MODIFIERS.contains(&key) || BROWSER_MODIFIERS.contains(&m) => {
                return Err(Line::Skip(
                    SkipReason::BrowserModifier,
                    format!("${m} only has a meaning in a browser"),
                ));
            }
            _ => {
                return Err(Line::Skip(
                    SkipReason::BrowserModifier,
                    format!("unknown modifier ${m}"),
                ));
            }
        }
    }
    Ok((important, badfilter))
}

fn is_self_entry(name: &str) -> bool {
    SELF_ENTRIES.iter().any(|e| e.eq_ignore_ascii_case(name))
}

fn looks_like_regex(s: &str) -> bool {
    // Names never hold `/`, `:` or `&`; lines with them are URL rules, not name regexes.
    if s.contains(['/', '&', '='])
        || s.contains(':') && s.replace("[:", "").replace(":]", "").contains(':')
    {
        return false;
    }
    s.starts_with('^')
        || s.ends_with('$')
        || s.starts_with("(^")
        || s.contains(['\\', '(', ')', '+'])
        || s.contains('{') && s.contains(|c: char| c.is_ascii_digit()) && !s.contains(",*")
        || s.contains('|') && !s.starts_with('|')
}

/// Deepest nesting of groups and repetitions a list regex may have. Real lists stay far
/// below it; a line of ~200 stacked repetitions (`c****…`) used to overflow a 2 MiB thread
/// stack (the reload thread's) while compiling, an abort that takes the process down (#10,
/// found by the `list_lines` fuzz target).
pub const REGEX_NEST_LIMIT: u32 = 32;

fn regex_line(re: &str, kind: Kind) -> Line<'static> {
    if re.contains("\\/") || re.contains("://") {
        return Line::Skip(
            SkipReason::UrlRule,
            "regex over URLs (needs a /), which no DNS name matches".into(),
        );
    }
    match regex::bytes::RegexBuilder::new(re)
        .case_insensitive(true)
        .unicode(false)
        .size_limit(1 << 20)
        .nest_limit(REGEX_NEST_LIMIT)
        .build()
    {
        Ok(r) if r.is_match(b"") => Line::Skip(
            SkipReason::BadRegex,
            "regex matches the empty string, so every name".into(),
        ),
        Ok(_) => Line::Pattern {
            pattern: PatternKind::Regex,
            text: re.to_string(),
            kind,
        },
        Err(e) => Line::Skip(
            SkipReason::BadRegex,
            format!("regex does not compile: {}", last_line(&e.to_string())),
        ),
    }
}

/// The last line of a (multi-line) regex error: the line that says what is wrong.
fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or(s)
}

fn glob_line(glob: &str, kind: Kind) -> Line<'static> {
    let text = glob.to_ascii_lowercase();
    if !text
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"-_.*?[]{},!^".contains(&c))
    {
        return Line::Skip(
            SkipReason::BadGlob,
            "character no host name or glob contains".into(),
        );
    }
    match globset::GlobBuilder::new(&text)
        .literal_separator(false)
        .build()
    {
        Ok(_) => Line::Pattern {
            pattern: PatternKind::Glob,
            text,
            kind,
        },
        Err(e) => Line::Skip(SkipReason::BadGlob, format!("glob does not compile: {e}")),
    }
}

fn dnsmasq_line(key: &str, rest: &str, kind: Kind, exact: bool) -> Line<'static> {
    let Some(body) = rest.strip_prefix('/') else {
        return Line::Skip(
            SkipReason::Unrecognised,
            format!("dnsmasq {key} without /domain/"),
        );
    };
    let Some((domains, target)) = body.rsplit_once('/') else {
        return Line::Skip(
            SkipReason::Unrecognised,
            format!("dnsmasq {key} without a closing /"),
        );
    };
    let target = target.trim();
    let blocks = match key {
        "address=" => {
            target.is_empty()
                || target == "#"
                || target
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_unspecified() || ip.is_loopback())
        }
        // `server=/x/` and `local=/x/` with no server answer NXDOMAIN.
        _ => target.is_empty(),
    };
    if !blocks {
        return Line::Skip(
            SkipReason::DnsmasqNotBlock,
            format!("dnsmasq {key} to {target:?} forwards or rewrites, it does not block"),
        );
    }
    let mut names = Vec::new();
    let mut buf = String::new();
    for d in domains.split('/').filter(|d| !d.is_empty()) {
        if let Err(skip) = normalized(d, &mut buf) {
            return skip;
        }
        names.push(buf.clone());
    }
    if names.is_empty() {
        return Line::Skip(
            SkipReason::InvalidName,
            "dnsmasq rule without a name".into(),
        );
    }
    Line::Names { names, kind, exact }
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

    fn one(line: &str) -> Line<'static> {
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

    // See: #10 (found by the list_lines fuzz target: an abort, which no test can catch, so
    // this runs on a thread with the reload thread's 2 MiB stack and must come back)
    #[test]
    fn r10_deeply_nested_regex_is_skipped_not_a_stack_overflow() {
        let line = format!("/c{}(x)/", "*".repeat(200));
        let r = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || reason(&line))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(r, SkipReason::BadRegex);
        // Real nesting stays well within the limit.
        assert!(matches!(
            one("/^(a(b(c(d(e)+)+)+)+)+\\.example$/"),
            Line::Pattern { .. }
        ));
    }

    fn reason(line: &str) -> SkipReason {
        match one(line) {
            Line::Skip(r, _) => r,
            other => panic!("{line:?} was not skipped: {other:?}"),
        }
    }

    fn block(name: &str) -> Line<'static> {
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
    fn hosts_line_with_one_name_is_a_name_rule() {
        let mut buf = String::new();
        assert!(matches!(
            parse_line("0.0.0.0 A.com", Kind::Block, true, &mut buf),
            Line::Name {
                name: "a.com",
                kind: Kind::Block,
                exact: true,
                important: false
            }
        ));
        assert!(matches!(
            parse_line("127.0.0.1 localhost a.com", Kind::Block, false, &mut buf),
            Line::Name { name: "a.com", .. }
        ));
        assert_eq!(one("::1 localhost ip6-localhost"), Line::Empty);
        assert_eq!(
            one("0.0.0.0 a.com localhost b.com"),
            Line::Names {
                names: vec!["a.com".into(), "b.com".into()],
                kind: Kind::Block,
                exact: false
            }
        );
        assert_eq!(reason("0.0.0.0 a..com"), SkipReason::InvalidName);
        assert_eq!(reason("0.0.0.0 a.com b..com"), SkipReason::InvalidName);
    }

    #[test]
    fn adblock_variants() {
        assert_eq!(one("||x.com"), block("x.com"));
        assert_eq!(one("||x.com^|"), block("x.com"));
        assert_eq!(one("||X.com.^"), block("x.com"));
        assert_eq!(one(".doublepimp.com^"), block("doublepimp.com"));
        assert_eq!(one(".hpyrdr.com"), block("hpyrdr.com"));
        assert_eq!(reason("||x.com^$third-party"), SkipReason::BrowserModifier);
        assert_eq!(
            reason("||x.com^$script,domain=y.com"),
            SkipReason::BrowserModifier
        );
        assert_eq!(
            reason("||x.com^$client=10.0.0.1"),
            SkipReason::UnsupportedModifier
        );
        assert_eq!(
            reason("||x.com^$dnsrewrite=1.2.3.4"),
            SkipReason::UnsupportedModifier
        );
        assert_eq!(reason("||x.com/ads.js"), SkipReason::UrlRule);
        assert_eq!(reason("|http://x.com"), SkipReason::UrlRule);
        assert_eq!(reason("&action=js_stats"), SkipReason::UrlRule);
        assert_eq!(reason("x.com##.banner"), SkipReason::Cosmetic);
        let mut buf = String::new();
        assert!(matches!(
            parse_line("||a.com^$important", Kind::Block, false, &mut buf),
            Line::Name {
                important: true,
                ..
            }
        ));
        assert!(matches!(
            parse_line("||rcdn.pro^$badfilter", Kind::Block, false, &mut buf),
            Line::BadFilter {
                name: "rcdn.pro",
                kind: Kind::Block
            }
        ));
        assert!(matches!(
            parse_line("@@||a.com^$important", Kind::Block, false, &mut buf),
            Line::Name {
                kind: Kind::Allow,
                important: false,
                ..
            }
        ));
    }

    #[test]
    fn dnsmasq_forms() {
        assert_eq!(one("address=/a.com/"), block("a.com"));
        assert_eq!(one("address=/a.com/0.0.0.0"), block("a.com"));
        assert_eq!(one("address=/a.com/#"), block("a.com"));
        assert_eq!(one("server=/a.com/"), block("a.com"));
        assert_eq!(
            one("address=/a.com/b.com/::"),
            Line::Names {
                names: vec!["a.com".into(), "b.com".into()],
                kind: Kind::Block,
                exact: false
            }
        );
        assert_eq!(reason("server=/a.com/1.1.1.1"), SkipReason::DnsmasqNotBlock);
        assert_eq!(
            reason("address=/a.com/10.0.0.5"),
            SkipReason::DnsmasqNotBlock
        );
        assert_eq!(reason("address=/com/"), SkipReason::PublicSuffix);
    }

    #[test]
    fn exact_globs_regexes_and_idn() {
        let mut buf = String::new();
        assert!(matches!(
            parse_line("=A.com", Kind::Block, false, &mut buf),
            Line::Name {
                name: "a.com",
                exact: true,
                ..
            }
        ));
        assert!(matches!(
            parse_line("a.com", Kind::Block, true, &mut buf),
            Line::Name { exact: true, .. }
        ));
        assert!(matches!(
            parse_line("||a.com^", Kind::Block, true, &mut buf),
            Line::Name { exact: false, .. }
        ));
        let glob = |t: &str| Line::Pattern {
            pattern: PatternKind::Glob,
            text: t.into(),
            kind: Kind::Block,
        };
        assert_eq!(one("ads*.Example.*"), glob("ads*.example.*"));
        assert_eq!(one("*.ads?.com"), glob("*.ads?.com"));
        assert_eq!(
            one("||clk.rtpdn*.com^"),
            glob("{clk.rtpdn*.com,*.clk.rtpdn*.com}")
        );
        assert_eq!(one("||tracker."), glob("{tracker.*,*.tracker.*}"));
        assert_eq!(one("{a.x*.com,*.a.x*.com}"), glob("{a.x*.com,*.a.x*.com}"));
        assert_eq!(
            one("@@|core.crazyegg.com^|"),
            Line::Names {
                names: vec!["core.crazyegg.com".into()],
                kind: Kind::Allow,
                exact: true
            }
        );
        assert!(matches!(
            one("/^ad[sx]\\./"),
            Line::Pattern {
                pattern: PatternKind::Regex,
                ..
            }
        ));
        assert!(matches!(
            one("(^|\\.)lgsmartad\\.com$"),
            Line::Pattern {
                pattern: PatternKind::Regex,
                ..
            }
        ));
        assert!(matches!(
            one(
                "^ad([sxv]?[0-9]*|system)[_.-]([^.[:space:]]+\\.){1,}|[_.-]ad([sxv]?[0-9]*|system)[_.-]"
            ),
            Line::Pattern {
                pattern: PatternKind::Regex,
                ..
            }
        ));
        assert_eq!(reason("/(unclosed/"), SkipReason::BadRegex);
        assert_eq!(reason("/a|/"), SkipReason::BadRegex);
        assert_eq!(
            reason("/(https?:\\/\\/)213\\.32\\.115\\..{100,}/"),
            SkipReason::UrlRule
        );
        assert_eq!(reason("/api/cmp_tracker|"), SkipReason::UrlRule);
        assert_eq!(one("bücher.de"), block("xn--bcher-kva.de"));
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
