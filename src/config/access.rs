//! `[access]`: who may ask. The TOML mirror and its validation into [`AccessConfig`].
//!
//! `allow` and `deny` take addresses and CIDRs; `deny` also takes files of them (one per
//! line, `#` comments; a country zone file is one), named relative to the config. A CIDR
//! with host bits set is an error (`10.0.0.1/8` is almost always a typo for a host or for
//! `10.0.0.0/8`), with the file and line it came from.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

/// `[access]`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAccess {
    /// Clients that may ask (addresses, CIDRs).
    pub allow: Spanned<Vec<Spanned<String>>>,
    /// Clients that may not, even inside `allow` (addresses, CIDRs, files of them).
    pub deny: Vec<Spanned<String>>,
    /// `refuse` (REFUSED) or `drop` (no answer).
    pub deny_action: Spanned<String>,
}

/// The default `access.allow`: loopback, the private IPv4 ranges (RFC 1918), IPv6 unique
/// local addresses, and link-local addresses of both families. Never the whole internet.
pub const DEFAULT_ALLOW: &[&str] = &[
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

impl Default for RawAccess {
    fn default() -> Self {
        Self {
            allow: Spanned::new(
                0..0,
                DEFAULT_ALLOW
                    .iter()
                    .map(|s| Spanned::new(0..0, (*s).to_string()))
                    .collect(),
            ),
            deny: Vec::new(),
            deny_action: Spanned::new(0..0, "refuse".into()),
        }
    }
}

/// What a denied client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyAction {
    /// REFUSED, so that a misconfigured client learns it is not served.
    Refuse,
    /// No answer at all, so that a scanner learns nothing.
    Drop,
}

/// `[access]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessConfig {
    /// Clients that may ask.
    pub allow: Vec<IpNet>,
    /// Clients that may not (also inside `allow`).
    pub deny: Vec<IpNet>,
    /// What a denied client gets.
    pub deny_action: DenyAction,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            allow: IpNet::aggregate(
                &DEFAULT_ALLOW
                    .iter()
                    .filter_map(|s| s.parse().ok())
                    .collect::<Vec<IpNet>>(),
            ),
            deny: Vec::new(),
            deny_action: DenyAction::Refuse,
        }
    }
}

/// An address (a host net) or a CIDR without host bits.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(n) = s.parse::<IpNet>() {
        if n.trunc() != n {
            return Err(format!("host bits set (the network is {})", n.trunc()));
        }
        return Ok(n);
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| "not an IP address or CIDR".into())
}

/// True when `s` is meant as an address or CIDR rather than a file name.
pub(super) fn looks_like_net(s: &str) -> bool {
    s.split('/')
        .next()
        .is_some_and(|a| a.parse::<IpAddr>().is_ok())
}

/// The `[access]` part of the config's validator.
impl super::Validator<'_> {
    pub(super) fn access(&mut self, raw: RawAccess, base: Option<&Path>) -> AccessConfig {
        let allow = self.each(raw.allow.get_ref(), "access.allow", parse_cidr);
        let mut deny = Vec::new();
        for entry in &raw.deny {
            let s = entry.get_ref();
            if looks_like_net(s) {
                match parse_cidr(s) {
                    Ok(n) => deny.push(n),
                    Err(m) => self.err(entry.span(), "access.deny", format!("{s:?}: {m}")),
                }
                continue;
            }
            let Some((display, text)) = self.read_file(entry, "access.deny", base) else {
                if base.is_none() {
                    self.err(
                        entry.span(),
                        "access.deny",
                        format!("{s:?}: files are read only from a config file"),
                    );
                }
                continue;
            };
            deny.extend(self.file_lines(&display, &text, "access.deny", |line, _| {
                let field = line.split_whitespace().next().unwrap_or(line);
                parse_cidr(field).map_err(|m| format!("{field:?}: {m}"))
            }));
        }
        let deny_action = match raw.deny_action.get_ref().as_str() {
            "refuse" => DenyAction::Refuse,
            "drop" => DenyAction::Drop,
            other => {
                self.err(
                    raw.deny_action.span(),
                    "access.deny_action",
                    format!("{other:?}: expected \"refuse\" or \"drop\""),
                );
                DenyAction::Refuse
            }
        };
        AccessConfig {
            allow: IpNet::aggregate(&allow),
            deny: IpNet::aggregate(&deny),
            deny_action,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_with_host_bits_are_refused_and_addresses_are_hosts() {
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert_eq!(
            parse_cidr("2001:db8::1").unwrap().to_string(),
            "2001:db8::1/128"
        );
        let e = parse_cidr("10.0.0.1/8").unwrap_err();
        assert!(e.contains("10.0.0.0/8"), "{e}");
        assert!(parse_cidr("ten").is_err());
    }

    use crate::config::error::test_support::errs_in as errs;

    #[test]
    fn bad_access_values_name_file_line_and_key() {
        let e = errs(
            "[access]\nallow = [\"10.0.0.1/8\", \"192.168.0.0/16\"]\n",
            None,
        );
        assert!(
            e[0].starts_with("t.toml:2:10: access.allow: \"10.0.0.1/8\": host bits set"),
            "{e:?}"
        );
        let e = errs("[access]\ndeny_action = \"ignore\"\n", None);
        assert!(
            e[0].starts_with("t.toml:2:15: access.deny_action: \"ignore\": expected"),
            "{e:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cn.zone"), "1.0.1.0/24\n# x\n1.0.2.1/23\n").unwrap();
        let e = errs("[access]\ndeny = [\"cn.zone\"]\n", Some(dir.path()));
        assert!(e[0].contains("cn.zone:3:"), "{e:?}");
        assert!(
            e[0].contains("access.deny: \"1.0.2.1/23\": host bits set"),
            "{e:?}"
        );
    }

    #[test]
    fn deny_reads_nets_and_files_and_the_default_allows_the_lan() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cn.zone"),
            "1.0.1.0/24\n1.0.2.0/23 # comment\n",
        )
        .unwrap();
        let c = crate::config::Config::parse(
            "[access]\ndeny = [\"cn.zone\", \"192.168.1.66\"]\ndeny_action = \"drop\"\n",
            "t.toml",
            Some(dir.path()),
        )
        .unwrap();
        let deny: Vec<String> = c.access.deny.iter().map(ToString::to_string).collect();
        assert_eq!(deny, ["1.0.1.0/24", "1.0.2.0/23", "192.168.1.66/32"]);
        assert_eq!(c.access.deny_action, DenyAction::Drop);
        assert_eq!(c.access.allow, AccessConfig::default().allow);
        let d = crate::config::Config::parse("", "t.toml", None).unwrap();
        assert_eq!(d.access, AccessConfig::default());
    }

    #[test]
    fn entries_are_told_from_file_names() {
        for net in [
            "10.0.0.0/8",
            "192.0.2.1",
            "::1",
            "2001:db8::/32",
            "10.0.0.1/8",
        ] {
            assert!(looks_like_net(net), "{net}");
        }
        for file in ["cn.zone", "lists/deny.txt", "/etc/sinkhole/country/ru.zone"] {
            assert!(!looks_like_net(file), "{file}");
        }
    }
}
