//! List-file parsing: text in, rules and per-line errors out. Parsing never fails as a whole;
//! a bad line becomes a [`LineError`] and the rest of the file loads.
//!
//! Formats understood per line (a file may mix them): a plain domain `example.com`, a
//! wildcard `*.example.com`, a hosts line `0.0.0.0 example.com [alias…]`, and the AdBlock
//! DNS rule `||example.com^` (with `@@` for an exception). Each means "this name and every
//! name below it". `#` and `!` start comments; a `#` after an entry is an inline comment.

use super::domain::{DomainError, normalize};

/// What a rule does to the names it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The name and its subtree are blocked.
    Block,
    /// The name and its subtree are allowed, whatever a less specific block says.
    Allow,
}

/// One usable rule read from a list line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRule {
    /// The normalised domain the rule is about.
    pub name: String,
    /// Block or allow.
    pub kind: Kind,
    /// 1-based line number in the file.
    pub line: u32,
}

/// A line that was skipped, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number in the file.
    pub line: u32,
    /// The offending text (trimmed, cut to 80 characters).
    pub text: String,
    /// Why the line was skipped.
    pub reason: String,
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

/// Everything read from one list: the rules, the skipped lines, and the number of comment or
/// blank lines (for the load summary).
#[derive(Debug, Default)]
pub struct ParsedList {
    /// The usable rules, in file order.
    pub rules: Vec<ParsedRule>,
    /// Lines that were skipped, with reasons.
    pub errors: Vec<LineError>,
}

/// Parses a whole list. `default_kind` is what a plain entry means: `Block` in a blocklist,
/// `Allow` in an allowlist; `@@` lines are allow entries wherever they appear.
pub fn parse_list(text: &str, default_kind: Kind) -> ParsedList {
    let mut out = ParsedList::default();
    for (i, raw) in text.lines().enumerate() {
        let line = u32::try_from(i + 1).unwrap_or(u32::MAX);
        parse_line(raw, line, default_kind, &mut out);
    }
    out
}

fn parse_line(raw: &str, line: u32, default_kind: Kind, out: &mut ParsedList) {
    // Strip a BOM (some lists carry one mid-file), CR and surrounding blanks.
    let mut s = raw.trim_start_matches('\u{feff}').trim();
    if s.is_empty() || s.starts_with('#') || s.starts_with('!') || s.starts_with("[Adblock") {
        return;
    }
    if let Some(i) = s.find(" #").or_else(|| s.find("\t#")) {
        s = s[..i].trim_end();
    }
    let mut kind = default_kind;
    if let Some(rest) = s.strip_prefix("@@") {
        kind = Kind::Allow;
        s = rest;
    }
    let err = |out: &mut ParsedList, reason: String| {
        out.errors.push(LineError {
            line,
            text: raw.trim().chars().take(80).collect(),
            reason,
        })
    };
    // AdBlock `||name^`.
    if let Some(rest) = s.strip_prefix("||") {
        let Some(name) = rest.strip_suffix('^') else {
            return err(out, "adblock rule without a closing ^".into());
        };
        return push(name, kind, line, out, err);
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    // hosts: `ADDRESS name [alias…]`.
    if fields.len() >= 2 && fields[0].parse::<std::net::IpAddr>().is_ok() {
        for name in &fields[1..] {
            if SELF_ENTRIES.contains(&name.to_ascii_lowercase().as_str()) {
                continue;
            }
            match normalize(name) {
                Ok(n) => out.rules.push(ParsedRule {
                    name: n,
                    kind,
                    line,
                }),
                Err(e) => err(out, format!("invalid domain {name:?}: {e}")),
            }
        }
        return;
    }
    if fields.len() != 1 {
        return err(out, "more than one field, and not a hosts line".into());
    }
    let name = s.strip_prefix("*.").unwrap_or(s);
    push(name, kind, line, out, err)
}

fn push(
    name: &str,
    kind: Kind,
    line: u32,
    out: &mut ParsedList,
    err: impl Fn(&mut ParsedList, String),
) {
    match normalize(name) {
        Ok(n) => out.rules.push(ParsedRule {
            name: n,
            kind,
            line,
        }),
        Err(DomainError::IpAddress) => err(out, format!("{name:?} is an IP address, not a domain")),
        Err(e) => err(out, format!("invalid domain {name:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &ParsedList) -> Vec<(&str, Kind)> {
        p.rules.iter().map(|r| (r.name.as_str(), r.kind)).collect()
    }

    #[test]
    fn plain_comments_blanks_and_inline_comments() {
        let p = parse_list(
            "# header\n\nexample.com\nAds.Example.NET.  # tracker\r\n  ! note\n",
            Kind::Block,
        );
        assert_eq!(
            names(&p),
            vec![
                ("example.com", Kind::Block),
                ("ads.example.net", Kind::Block)
            ]
        );
        assert_eq!(p.rules[1].line, 4);
        assert!(p.errors.is_empty());
    }

    #[test]
    fn hosts_wildcard_and_adblock_forms() {
        let p = parse_list(
            "127.0.0.1  localhost\n0.0.0.0 a.com b.com\n*.c.com\n||d.com^\n@@||e.com^\n",
            Kind::Block,
        );
        assert_eq!(
            names(&p),
            vec![
                ("a.com", Kind::Block),
                ("b.com", Kind::Block),
                ("c.com", Kind::Block),
                ("d.com", Kind::Block),
                ("e.com", Kind::Allow)
            ]
        );
    }

    #[test]
    fn bad_lines_are_reported_with_line_and_reason() {
        let p = parse_list("good.com\nbad..com\nx y z\n1.2.3.4\n", Kind::Block);
        assert_eq!(names(&p), vec![("good.com", Kind::Block)]);
        let lines: Vec<u32> = p.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4]);
        assert!(
            p.errors[0].reason.contains("empty label"),
            "{:?}",
            p.errors[0]
        );
    }
}
