//! AdBlock-style DNS rules, as AdGuard Home and uBlock lists write them: `||a.com^` (the name
//! and its subtree), `|a.com^` (the name only), `.a.com^`, `@@` exceptions (read by
//! `parse_line` for every format), `$important` and `$badfilter`, and `/regex/` rules.
//!
//! A rule with a modifier that only means something in a browser, or a DNS modifier that
//! sinkhole does not implement, is skipped whole: applied without its condition it would
//! block more than its author meant. Cosmetic rules (`##`) and URL or path rules are
//! recognised so that they are reported as what they are, not as bad names.

use super::{Kind, Line, SkipReason, name_line, pattern};

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

/// True for a cosmetic (element hiding) rule such as `example.com##.banner`.
pub(super) fn is_cosmetic(s: &str) -> bool {
    s.contains("##") || s.contains("#@#") || s.contains("#$#") || s.contains("#?#")
}

/// An AdBlock regex rule `/…/`, optionally with modifiers after the closing slash (neither
/// `$important` nor `$badfilter` is taken on a regex); `None` when `s` is not one.
pub(super) fn regex_rule(s: &str, kind: Kind) -> Option<Line<'static>> {
    if s.len() > 2
        && s.starts_with('/')
        && let Some(end) = s.rfind('/')
        && end > 0
        && (end == s.len() - 1 || s[end + 1..].starts_with('$'))
    {
        if end < s.len() - 1 {
            let (important, badfilter) = match modifiers(&s[end + 2..]) {
                Ok(m) => m,
                Err(skip) => return Some(skip),
            };
            if badfilter || important {
                return Some(Line::Skip(
                    SkipReason::UnsupportedModifier,
                    "$important/$badfilter on a regex rule".into(),
                ));
            }
        }
        return Some(pattern::regex_line(&s[1..end], kind));
    }
    None
}

/// Splits `rule$modifiers` into the rule and its `(important, badfilter)` flags; a line
/// without `$` has neither. `Err` is the skip for a rule with any other modifier.
pub(super) fn split_modifiers(s: &str) -> Result<(&str, bool, bool), Line<'static>> {
    match s.split_once('$') {
        Some((rule, mods)) => {
            let (important, badfilter) = modifiers(mods)?;
            Ok((rule, important, badfilter))
        }
        None => Ok((s, false, false)),
    }
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

/// `||rest` (what follows the `||`, modifiers already split off): the name and its subtree,
/// or a glob when the name holds one, or a URL rule.
pub(super) fn domain_rule<'b>(
    rest: &str,
    kind: Kind,
    important: bool,
    badfilter: bool,
    buf: &'b mut String,
) -> Line<'b> {
    let rest = rest.strip_suffix('|').unwrap_or(rest);
    let rest = rest.strip_suffix('^').unwrap_or(rest);
    if rest.contains(['/', ':', '^', '|', '&', '=', '?']) {
        return Line::Skip(SkipReason::UrlRule, "URL or path rule".into());
    }
    if rest.contains(['*', '[']) {
        // `||ads*.x.com^`: the name or any name below it matches the glob.
        return pattern::glob_line(&format!("{{{rest},*.{rest}}}"), kind);
    }
    if let Some(label) = rest.strip_suffix('.')
        && !label.is_empty()
        && !label.contains('.')
    {
        // `||tracker.`: the label under any top-level domain.
        return pattern::glob_line(&format!("{{{label}.*,*.{label}.*}}"), kind);
    }
    name_line(rest, kind, false, important, badfilter, buf)
}

/// `|name^`: a name anchored at both ends, i.e. this name only.
pub(super) fn anchored_name(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('|')?;
    let name = rest.strip_suffix('|').unwrap_or(rest).strip_suffix('^')?;
    (!name.contains(['/', ':', '^', '|', '&', '=', '?', '*', '['])).then_some(name)
}

/// AdGuard `.example.com^`: every name below example.com.
pub(super) fn subtree_name(s: &str) -> Option<&str> {
    let name = s.strip_prefix('.')?.strip_suffix('^')?;
    (!name.contains(['/', '^', '|', '*'])).then_some(name)
}

/// True for a URL, path or URL-fragment rule (one field with `/`, `&`, `^`, `|`, `=`, or a
/// `:` that is not part of an IPv6 address): browsers match these, DNS cannot.
pub(super) fn is_url_rule(s: &str) -> bool {
    !s.contains(char::is_whitespace)
        && (s.starts_with('|')
            || s.contains(['/', '&', '^', '|', '='])
            || s.contains(':') && s.parse::<std::net::IpAddr>().is_err())
}

#[cfg(test)]
mod tests {
    use super::super::parse_line;
    use super::super::tests::{block, one, reason};
    use super::*;

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
}
