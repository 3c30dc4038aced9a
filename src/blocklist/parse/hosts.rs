//! Plain and hosts lines: a bare name (`example.com`), a leading-dot or wildcard subtree
//! (`.example.com`, `*.example.com`), and hosts-file lines (`0.0.0.0 a.com b.com`), whose
//! address is ignored and whose entries for the machine itself (`localhost`…) are dropped.
//! A plain entry means what the list's kind and `match` setting say.

use super::{Kind, Line, SkipReason, name_line, normalized, pattern};

/// Host names that hosts files list for the machine itself; they are ignored, not blocked.
pub const SELF_ENTRIES: &[&str] = &[
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

fn is_self_entry(name: &str) -> bool {
    SELF_ENTRIES.iter().any(|e| e.eq_ignore_ascii_case(name))
}

/// True when `s` holds only the bytes of a plain host name (the fast path: most lines of
/// most lists).
pub(super) fn is_bare_name(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// A line that [`is_bare_name`]: a self entry, a leading-dot subtree, or a plain name.
pub(super) fn bare_name<'b>(
    s: &str,
    kind: Kind,
    exact_default: bool,
    buf: &'b mut String,
) -> Line<'b> {
    if is_self_entry(s) && !s.eq_ignore_ascii_case("local") {
        return Line::Empty;
    }
    if let Some(rest) = s.strip_prefix('.') {
        return name_line(rest, kind, false, false, false, buf);
    }
    name_line(s, kind, exact_default, false, false, buf)
}

/// A line that no other format claimed, read as whitespace-separated fields: a hosts line
/// (`ADDRESS name [alias…]`), or one field that is a wildcard, a glob, a leading-dot subtree
/// or a plain name.
pub(super) fn fields<'b>(
    s: &str,
    kind: Kind,
    exact_default: bool,
    buf: &'b mut String,
) -> Line<'b> {
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
            return pattern::glob_line(first, kind);
        }
        return name_line(rest, kind, false, false, false, buf);
    }
    if first.contains(['*', '?', '[', '{']) {
        return pattern::glob_line(first, kind);
    }
    if let Some(rest) = first.strip_prefix('.') {
        return name_line(rest, kind, false, false, false, buf);
    }
    if is_self_entry(first) && !first.eq_ignore_ascii_case("local") {
        return Line::Empty;
    }
    name_line(first, kind, exact_default, false, false, buf)
}

#[cfg(test)]
mod tests {
    use super::super::parse_line;
    use super::super::tests::{one, reason};
    use super::*;

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
}
