//! dnsmasq configuration lines as blocklists ship them: `address=/a.com/b.com/` with no
//! address, `#`, or an unspecified or loopback address, and `server=/a.com/` or
//! `local=/a.com/` with no server, all mean "answer nothing for these names and below".
//! A line that forwards or rewrites (`server=/a.com/1.1.1.1`) is skipped: it does not block.

use super::{Kind, Line, SkipReason, normalized};

/// A dnsmasq `address=`, `server=` or `local=` line; `None` when `s` is not one.
pub(super) fn directive(s: &str, kind: Kind, exact: bool) -> Option<Line<'static>> {
    ["address=", "server=", "local="]
        .into_iter()
        .find_map(|key| Some(dnsmasq_line(key, s.strip_prefix(key)?, kind, exact)))
}

/// The names after `key` (`address=`, `server=` or `local=`), or the skip saying why not.
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

#[cfg(test)]
mod tests {
    use super::super::tests::{block, one, reason};
    use super::*;

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
}
