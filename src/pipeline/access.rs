//! `Access`: who may ask. First in the chain: a client outside `access.allow`, or inside
//! `access.deny`, learns nothing, not even whether a name is blocked or cached. It gets
//! REFUSED, or no answer at all with `access.deny_action = "drop"`; either way the query is
//! counted and logged (action `refused`).
//!
//! The default allows loopback and the private, unique-local and link-local ranges, so that
//! a default install is never an open resolver that strangers can use against others.
//! Lookups are a binary search over merged address ranges: a country's zone file of
//! thousands of CIDRs costs a few comparisons per query.

use std::net::IpAddr;

use ipnet::IpNet;

use super::Action;
use super::flow::{Answer, Flow, Reply};
use super::request::Request;
use crate::config::{AccessConfig, DenyAction};
use crate::dns::wire::rcode;

/// Extended DNS Error: prohibited (RFC 8914 §4.19).
pub const EDE_PROHIBITED: u16 = 18;

/// A set of networks as sorted, merged, inclusive address ranges, per family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetTable {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl NetTable {
    /// The table of `nets` (overlapping and adjacent ones merged).
    pub fn new(nets: &[IpNet]) -> Self {
        let mut t = Self::default();
        for n in IpNet::aggregate(&nets.to_vec()) {
            match n {
                IpNet::V4(n) => t.v4.push((n.network().into(), n.broadcast().into())),
                IpNet::V6(n) => t.v6.push((n.network().into(), n.broadcast().into())),
            }
        }
        t.v4 = merged(t.v4);
        t.v6 = merged(t.v6);
        t
    }

    /// True when `ip` is in one of the networks. An IPv4-mapped IPv6 address counts as
    /// its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        fn within<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
            // The last range starting at or below `x` is the only one that can hold it.
            let i = ranges.partition_point(|&(start, _)| start <= x);
            i.checked_sub(1)
                .and_then(|i| ranges.get(i))
                .is_some_and(|&(_, end)| x <= end)
        }
        match ip.to_canonical() {
            IpAddr::V4(a) => within(&self.v4, u32::from(a)),
            IpAddr::V6(a) => within(&self.v6, u128::from(a)),
        }
    }

    /// Number of ranges held.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// True when no network is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `ranges` sorted, with overlapping and adjacent ones joined (CIDR aggregation cannot
/// join 192.168.1.0/24 and 192.168.2.0/24; ranges can).
fn merged<T: Ord + Copy>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)>
where
    u128: From<T>,
{
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if u128::from(start) <= u128::from(last.1).saturating_add(1) => {
                if end > last.1 {
                    last.1 = end;
                }
            }
            _ => out.push((start, end)),
        }
    }
    out
}

/// The access stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    allow: NetTable,
    deny: NetTable,
    action: DenyAction,
}

impl Access {
    /// The stage for `[access]`.
    pub fn new(cfg: &AccessConfig) -> Self {
        Self {
            allow: NetTable::new(&cfg.allow),
            deny: NetTable::new(&cfg.deny),
            action: cfg.deny_action,
        }
    }

    /// True when `ip` may ask.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow.contains(ip) && !self.deny.contains(ip)
    }

    /// The stage: a client that may ask goes on; any other gets REFUSED (with EDE
    /// "Prohibited" when it asked with EDNS) or, with `deny_action = "drop"`, nothing.
    pub fn check(&self, req: &Request<'_>) -> Flow {
        if self.allows(req.client.ip()) {
            return Flow::Next;
        }
        let reply = match self.action {
            DenyAction::Refuse => Reply::Error {
                rcode: rcode::REFUSED,
                ede: Some((EDE_PROHIBITED, "client not allowed".into())),
                dnssec: None,
            },
            DenyAction::Drop => Reply::Nothing {
                rcode: rcode::REFUSED,
            },
        };
        Flow::Answer(Answer::new(Action::Rejected, reply))
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::test_support::{fixed_now, request};
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_table_finds_addresses_at_range_edges_and_merges_overlaps() {
        let t = NetTable::new(&nets(&[
            "10.0.0.0/8",
            "10.1.0.0/16",
            "192.168.1.0/24",
            "192.168.2.0/24",
            "2001:db8::/32",
        ]));
        assert_eq!(t.len(), 3, "10.1/16 inside 10/8; the two /24s adjacent");
        for yes in [
            "10.0.0.0",
            "10.255.255.255",
            "192.168.1.0",
            "192.168.2.255",
            "2001:db8::1",
        ] {
            assert!(t.contains(ip(yes)), "{yes}");
        }
        for no in [
            "9.255.255.255",
            "11.0.0.0",
            "192.168.3.0",
            "2001:db9::",
            "::1",
        ] {
            assert!(!t.contains(ip(no)), "{no}");
        }
        assert!(t.contains(ip("::ffff:10.2.3.4")), "v4-mapped counts as v4");
        assert!(!NetTable::default().contains(ip("10.0.0.1")));
    }

    #[test]
    fn the_default_allows_the_lan_and_not_the_internet() {
        let a = Access::new(&AccessConfig::default());
        for lan in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.0.1",
            "192.168.1.10",
            "169.254.1.1",
        ] {
            assert!(a.allows(ip(lan)), "{lan}");
        }
        for lan in ["::1", "fd12:3456::1", "fe80::1"] {
            assert!(a.allows(ip(lan)), "{lan}");
        }
        for public in [
            "8.8.8.8",
            "172.32.0.1",
            "100.64.0.1",
            "2001:db8::1",
            "192.0.2.1",
        ] {
            assert!(!a.allows(ip(public)), "{public}");
        }
    }

    #[test]
    fn deny_wins_inside_allow_and_the_action_is_chosen() {
        let mut cfg = AccessConfig {
            deny: nets(&["192.0.2.7/32"]),
            ..AccessConfig::default()
        };
        cfg.allow.push("192.0.2.0/24".parse().unwrap());
        let a = Access::new(&cfg);
        let req = |now| request("example.test", 1, false, now);
        // The test request comes from 192.0.2.7.
        let f = a.check(&req(fixed_now()));
        assert!(
            matches!(
                f,
                Flow::Answer(Answer {
                    action: Action::Rejected,
                    reply: Reply::Error {
                        rcode: rcode::REFUSED,
                        ..
                    },
                    ..
                })
            ),
            "{f:?}"
        );
        cfg.deny_action = DenyAction::Drop;
        let f = Access::new(&cfg).check(&req(fixed_now()));
        assert!(
            matches!(
                f,
                Flow::Answer(Answer {
                    reply: Reply::Nothing { .. },
                    ..
                })
            ),
            "{f:?}"
        );
        cfg.deny.clear();
        assert!(matches!(
            Access::new(&cfg).check(&req(fixed_now())),
            Flow::Next
        ));
    }
}
