//! `[[groups]]`: client groups, each with its own lists, answer mode and schedule. The TOML
//! mirror and its validation into [`GroupConfig`].
//!
//! A group names its clients by address, CIDR, MAC address (matched through the kernel's
//! neighbour table), or files of them (one per line, `#` comments), relative to the config.
//! A client in several groups gets the first that matches, in file order; overlaps are
//! allowed and reported as warnings so that the precedence is never a surprise.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::access::parse_cidr;
use super::raw::RawList;
use super::schedule::Schedule;
use super::{BlockMode, ConfigError};
use crate::blocklist::Kind;
use crate::blocklist::load::ListSource;

/// One `[[groups]]` table, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    /// Shown in the query log's `group` field.
    pub name: Spanned<String>,
    /// Addresses, CIDRs, MAC addresses, files of them.
    pub clients: Spanned<Vec<Spanned<String>>>,
    /// Block lists of the group (added to `blocking.lists` unless `inherit = false`).
    #[serde(default)]
    pub lists: Vec<Spanned<RawList>>,
    /// Allow lists of the group (added to `blocking.allow` unless `inherit = false`).
    #[serde(default)]
    pub allow: Vec<Spanned<RawList>>,
    /// How the group's blocked names are answered (default: `blocking.mode`).
    pub mode: Option<Spanned<String>>,
    /// When the group applies (default: always).
    pub schedule: Option<Spanned<Vec<String>>>,
    /// `false`: the group's lists replace the default lists instead of adding to them.
    pub inherit: Option<bool>,
}

/// A MAC (Ethernet) address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = ();

    /// `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff`, either case.
    fn from_str(s: &str) -> Result<Self, ()> {
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for b in &mut out {
            let p = parts.next().ok_or(())?;
            if p.len() != 2 {
                return Err(());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| ())?;
        }
        if parts.next().is_some() {
            return Err(());
        }
        Ok(Self(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// The clients of a group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Clients {
    /// Addresses and networks.
    pub nets: Vec<IpNet>,
    /// MAC addresses.
    pub macs: Vec<MacAddr>,
}

/// One `[[groups]]` table, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// The group's name.
    pub name: String,
    /// Who is in it.
    pub clients: Clients,
    /// The group's own block and allow lists.
    pub lists: Vec<ListSource>,
    /// True when the group's lists add to the default lists (`inherit`, default true).
    pub inherit: bool,
    /// Answer mode for the group's blocked names, when not `blocking.mode`.
    pub mode: Option<BlockMode>,
    /// When the group applies; `None` = always.
    pub schedule: Option<Schedule>,
}

/// One client entry: a network, a MAC address, or neither (a file name).
fn client_entry(s: &str) -> Option<Result<Result<IpNet, MacAddr>, String>> {
    if let Ok(m) = s.parse::<MacAddr>() {
        return Some(Ok(Err(m)));
    }
    let net = s
        .split('/')
        .next()
        .is_some_and(|a| a.parse::<std::net::IpAddr>().is_ok());
    net.then(|| parse_cidr(s).map(Ok))
}

/// The `[[groups]]` part of the config's validator.
impl super::Validator<'_> {
    pub(super) fn groups(&mut self, raw: Vec<RawGroup>, base: Option<&Path>) -> Vec<GroupConfig> {
        let mut out: Vec<GroupConfig> = Vec::new();
        let mut spans = Vec::new();
        for g in raw {
            let name = g.name.get_ref().trim().to_string();
            let ok_name = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !ok_name {
                self.err(
                    g.name.span(),
                    "groups.name",
                    format!("{name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"),
                );
            } else if out.iter().any(|o| o.name == name) {
                self.err(
                    g.name.span(),
                    "groups.name",
                    format!("{name:?}: another group has this name"),
                );
            }
            let clients = self.clients(&g.clients, base);
            if g.clients.get_ref().is_empty() {
                self.err(
                    g.clients.span(),
                    "groups.clients",
                    format!("group {name:?} has no clients: name addresses, CIDRs, MAC addresses or files of them"),
                );
            }
            let mut lists = self.lists(&g.lists, "groups.lists", Kind::Block, base);
            lists.extend(self.lists(&g.allow, "groups.allow", Kind::Allow, base));
            let mode = g.mode.as_ref().map(|m| self.mode(m, "groups.mode"));
            let schedule = g
                .schedule
                .as_ref()
                .and_then(|s| self.schedule(s, "groups.schedule"));
            spans.push(g.clients.span());
            out.push(GroupConfig {
                name,
                clients,
                lists,
                inherit: g.inherit.unwrap_or(true),
                mode,
                schedule,
            });
        }
        for (j, span) in spans.into_iter().enumerate() {
            let Some(later) = out.get(j) else { continue };
            for earlier in out.iter().take(j) {
                if let Some(what) = overlap(&earlier.clients, &later.clients) {
                    let w = ConfigError::at(
                        self.text,
                        self.file,
                        span.clone(),
                        "groups.clients",
                        format!(
                            "group {:?} overlaps group {:?} on {what}: such a client gets {:?}, the first match in file order",
                            later.name, earlier.name, earlier.name
                        ),
                    );
                    self.warnings.push(w.to_string());
                }
            }
        }
        out
    }

    fn clients(&mut self, entries: &Spanned<Vec<Spanned<String>>>, base: Option<&Path>) -> Clients {
        const KEY: &str = "groups.clients";
        let mut c = Clients::default();
        for e in entries.get_ref() {
            let s = e.get_ref().trim();
            match client_entry(s) {
                Some(Ok(Ok(n))) => c.nets.push(n),
                Some(Ok(Err(m))) => c.macs.push(m),
                Some(Err(m)) => self.err(e.span(), KEY, format!("{s:?}: {m}")),
                None => {
                    let Some((display, text)) = self.read_file(e, KEY, base) else {
                        if base.is_none() {
                            self.err(
                                e.span(),
                                KEY,
                                format!("{s:?}: files are read only from a config file"),
                            );
                        }
                        continue;
                    };
                    let read = self.file_lines(&display, &text, KEY, |line, _| {
                        let field = line.split_whitespace().next().unwrap_or(line);
                        match client_entry(field) {
                            Some(Ok(v)) => Ok(v),
                            Some(Err(m)) => Err(format!("{field:?}: {m}")),
                            None => Err(format!("{field:?}: not an address, CIDR or MAC address")),
                        }
                    });
                    for v in read {
                        match v {
                            Ok(n) => c.nets.push(n),
                            Err(m) => c.macs.push(m),
                        }
                    }
                }
            }
        }
        c.nets = IpNet::aggregate(&c.nets);
        c.macs.sort_unstable();
        c.macs.dedup();
        c
    }

    /// A `schedule` key: its windows parsed, or an error at the key.
    pub(super) fn schedule(&mut self, s: &Spanned<Vec<String>>, key: &str) -> Option<Schedule> {
        Schedule::parse(s.get_ref())
            .map_err(|m| self.err(s.span(), key, m))
            .ok()
    }
}

/// The first client two groups share: a network both cover, or a MAC address.
fn overlap(a: &Clients, b: &Clients) -> Option<String> {
    if let Some(m) = a.macs.iter().find(|m| b.macs.contains(m)) {
        return Some(m.to_string());
    }
    // Both lists are aggregated: sorted, disjoint. Walk them together.
    let key = |n: &IpNet| (n.addr().is_ipv6(), n.network(), n.broadcast());
    let (mut x, mut y): (Vec<_>, Vec<_>) = (a.nets.iter().collect(), b.nets.iter().collect());
    x.sort_by_key(|n| key(n));
    y.sort_by_key(|n| key(n));
    let (mut i, mut j) = (0, 0);
    while let (Some(p), Some(q)) = (x.get(i), y.get(j)) {
        if p.contains(*q) {
            return Some(q.to_string());
        }
        if q.contains(*p) {
            return Some(p.to_string());
        }
        if key(p) < key(q) {
            i += 1;
        } else {
            j += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn mac_addresses_parse_in_both_spellings() {
        let m: MacAddr = "AA-bb-0c-dd-ee-0F".parse().unwrap();
        assert_eq!(m.to_string(), "aa:bb:0c:dd:ee:0f");
        assert_eq!("aa:bb:0c:dd:ee:0f".parse::<MacAddr>(), Ok(m));
        for bad in [
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "aabb:cc:dd:ee:ff",
            "zz:bb:cc:dd:ee:ff",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn groups_read_addresses_macs_and_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("sales.txt"),
            "# sales\n10.2.0.0/24\n02:00:00:00:00:07 laptop\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("social.txt"), "facebook.com\n").unwrap();
        let c = Config::parse(
            "[[groups]]\nname = \"sales\"\nclients = [\"192.168.5.7\", \"sales.txt\", \"02:00:00:00:00:01\"]\n\
             lists = [\"social.txt\"]\nmode = \"nxdomain\"\nschedule = [\"mon-fri 09:00-17:30\"]\ninherit = false\n",
            "t.toml",
            Some(dir.path()),
        )
        .unwrap();
        let g = &c.groups[0];
        assert_eq!(g.name, "sales");
        let nets: Vec<String> = g.clients.nets.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["10.2.0.0/24", "192.168.5.7/32"]);
        assert_eq!(g.clients.macs.len(), 2);
        assert_eq!(g.lists.len(), 1);
        assert!(!g.inherit);
        assert_eq!(g.mode, Some(BlockMode::NxDomain));
        assert!(g.schedule.is_some());
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    use crate::config::error::test_support::errs;

    #[test]
    fn bad_groups_name_file_line_and_key() {
        let e = errs("[[groups]]\nname = \"a\"\nclients = [\"10.0.0.1/8\"]\n");
        assert!(
            e[0].starts_with("t.toml:3:12: groups.clients: \"10.0.0.1/8\": host bits set"),
            "{e:?}"
        );
        let e = errs(
            "[[groups]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\nschedule = [\"mon-fri 25:00\"]\n",
        );
        assert!(
            e[0].starts_with("t.toml:4:12: groups.schedule: \"mon-fri 25:00\""),
            "{e:?}"
        );
        let e = errs("[[groups]]\nname = \"a b\"\nclients = [\"10.0.0.0/8\"]\n");
        assert!(e[0].contains("t.toml:2:8: groups.name"), "{e:?}");
        let e = errs("[[groups]]\nname = \"a\"\nclients = []\n");
        assert!(
            e[0].contains("groups.clients: group \"a\" has no clients"),
            "{e:?}"
        );
        let e = errs("[[groups]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\nmode = \"loud\"\n");
        assert!(e[0].contains("t.toml:4:8: groups.mode"), "{e:?}");
        let e = errs(
            "[[groups]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\n[[groups]]\nname = \"a\"\nclients = [\"10.1.0.0/16\"]\n",
        );
        assert!(
            e[0].contains("t.toml:5:8: groups.name: \"a\": another group"),
            "{e:?}"
        );
    }

    #[test]
    fn overlapping_groups_are_a_warning_naming_the_winner() {
        let c = Config::parse(
            "[[groups]]\nname = \"office\"\nclients = [\"10.0.0.0/16\", \"02:00:00:00:00:01\"]\n\
             [[groups]]\nname = \"lab\"\nclients = [\"10.0.5.0/24\"]\n\
             [[groups]]\nname = \"boss\"\nclients = [\"02:00:00:00:00:01\"]\n\
             [[groups]]\nname = \"guests\"\nclients = [\"10.1.0.0/16\", \"fd00::/8\"]\n",
            "t.toml",
            None,
        )
        .unwrap();
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.warnings[0].starts_with("t.toml:6:11: groups.clients: group \"lab\" overlaps group \"office\" on 10.0.5.0/24"), "{:?}", c.warnings);
        assert!(
            c.warnings[1].contains("group \"boss\" overlaps group \"office\" on 02:00:00:00:00:01"),
            "{:?}",
            c.warnings
        );
    }
}
