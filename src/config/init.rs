//! `sinkhole config init`: a first config for this machine's LAN, from what the kernel
//! says about its interfaces and routes ([`discover`]). The LAN is every interface with a
//! private address (RFC 1918, IPv6 unique-local); the WAN, the default route's interface
//! when it has none. The config listens on the LAN addresses (and loopback), lets only
//! the LAN subnets ask (never an open resolver), forwards to Quad9, blocks with the shipped
//! lists, logs queries in the state directory, and carries a `[firewall]` section for
//! those interfaces: active on a router (LAN and WAN interfaces here), commented out on a
//! LAN host (the rules then belong on the router). [`plan`] decides, [`render`] writes;
//! both pure.

pub mod discover;

use std::fmt::Write as _;
use std::net::IpAddr;

pub use discover::{Host, Interface};

/// The LAN as seen from this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lan {
    /// Interfaces with a private address, each with those addresses and prefixes.
    pub lan: Vec<Interface>,
    /// Default-route interfaces without a private address (this host routes to them).
    pub wan: Vec<String>,
}

impl Lan {
    /// The addresses to listen on: the LAN ones.
    pub fn listen(&self) -> Vec<IpAddr> {
        self.lan
            .iter()
            .flat_map(|i| i.addrs.iter().map(|a| a.0))
            .collect()
    }

    /// The LAN subnets, as `NETWORK/PREFIX`, each once.
    pub fn subnets(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for &(ip, prefix) in self.lan.iter().flat_map(|i| i.addrs.iter()) {
            let s = format!("{}/{prefix}", network(ip, prefix));
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }

    /// True when this host is the router (a WAN interface besides the LAN ones).
    pub fn gateway(&self) -> bool {
        !self.wan.is_empty()
    }
}

/// An address a LAN uses: RFC 1918 IPv4, IPv6 unique-local (fc00::/7).
pub fn private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private(),
        IpAddr::V6(v6) => v6.segments().first().is_some_and(|s| s & 0xfe00 == 0xfc00),
    }
}

/// `ip` with the host bits below `prefix` cleared.
pub fn network(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

/// The LAN of `host`; `None` when no interface has a private address.
pub fn plan(host: &Host) -> Option<Lan> {
    let lan: Vec<Interface> = host
        .interfaces
        .iter()
        .filter(|i| i.name != "lo")
        .filter_map(|i| {
            let addrs: Vec<(IpAddr, u8)> =
                i.addrs.iter().copied().filter(|a| private(a.0)).collect();
            (!addrs.is_empty()).then(|| Interface {
                name: i.name.clone(),
                addrs,
            })
        })
        .collect();
    if lan.is_empty() {
        return None;
    }
    let wan = host
        .default_routes
        .iter()
        .filter(|r| !lan.iter().any(|i| &i.name == *r))
        .cloned()
        .collect();
    Some(Lan { lan, wan })
}

/// Where the written config points.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Block lists, as the config names them.
    pub lists: Vec<String>,
    /// The DoH resolver names list (`blocking.doh_names`).
    pub doh_names: String,
    /// The DoH server addresses file (`firewall.doh_servers`), if there is one.
    pub doh_servers: Option<String>,
    /// The query log.
    pub log: String,
}

fn quoted(items: &[String]) -> String {
    let q: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", q.join(", "))
}

fn socket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:53"),
        IpAddr::V6(v6) => format!("[{v6}]:53"),
    }
}

/// The commented config for `lan`.
pub fn render(lan: &Lan, p: &Paths) -> String {
    let names: Vec<String> = lan.lan.iter().map(|i| i.name.clone()).collect();
    let mut listen: Vec<String> = lan.listen().into_iter().map(socket).collect();
    listen.push("127.0.0.1:53".into());
    let mut allow = vec!["127.0.0.0/8".to_string(), "::1/128".to_string()];
    allow.extend(lan.subnets());
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# sinkhole: a config for this machine's LAN, written by `sinkhole config init`."
    );
    let detected: Vec<String> = lan
        .lan
        .iter()
        .map(|i| {
            let a: Vec<String> = i.addrs.iter().map(|(ip, n)| format!("{ip}/{n}")).collect();
            format!("{} ({})", i.name, a.join(", "))
        })
        .collect();
    let _ = writeln!(s, "# LAN interfaces: {}.", detected.join("; "));
    if lan.gateway() {
        let _ = writeln!(
            s,
            "# WAN interfaces (default route): {}: this host is the router.",
            lan.wan.join(", ")
        );
    } else {
        let _ = writeln!(
            s,
            "# The default route leaves by a LAN interface: this host is a LAN host, not the router."
        );
    }
    let _ = writeln!(
        s,
        "# Every key, its default and meaning: `man sinkhole.toml` (sinkhole.example.toml)."
    );
    let _ = writeln!(
        s,
        "# Check: sinkhole config check THIS_FILE; apply: systemctl reload sinkhole.\n"
    );
    let _ = writeln!(s, "[server]");
    let _ = writeln!(
        s,
        "# This host's LAN addresses, and loopback for the host itself."
    );
    let _ = writeln!(s, "listen = {}", quoted(&listen));
    let _ = writeln!(
        s,
        "# Started as root, `serve` becomes this user once its sockets are bound."
    );
    let _ = writeln!(s, "# user = \"sinkhole\"\n");
    let _ = writeln!(s, "[upstream]");
    let _ = writeln!(
        s,
        "# Quad9 (malware-filtering, no logging of client addresses). Encrypted instead:"
    );
    let _ = writeln!(
        s,
        "# servers = [\"tls://9.9.9.9:853#dns.quad9.net\", \"tls://149.112.112.112:853#dns.quad9.net\"]"
    );
    let _ = writeln!(s, "servers = [\"9.9.9.9:53\", \"149.112.112.112:53\"]\n");
    let _ = writeln!(s, "[blocking]");
    let _ = writeln!(
        s,
        "# The shipped lists; add your own files or URLs (`sinkhole lists add`)."
    );
    let _ = writeln!(s, "lists = {}", quoted(&p.lists));
    let _ = writeln!(s, "doh_names = {:?}\n", p.doh_names);
    let _ = writeln!(s, "[access]");
    let _ = writeln!(
        s,
        "# Only the LAN and this host may ask: never an open resolver."
    );
    let _ = writeln!(s, "allow = {}\n", quoted(&allow));
    let _ = writeln!(s, "[log]");
    let _ = writeln!(
        s,
        "# Every query, per client: `sinkhole log first --client IP` shows what an app asks."
    );
    let _ = writeln!(s, "path = {:?}\n", p.log);
    let subnets = lan.subnets();
    if lan.gateway() {
        let _ = writeln!(s, "[firewall]");
        let _ = writeln!(
            s,
            "# `sinkhole firewall apply` makes this resolver the LAN's only way out for DNS."
        );
        let _ = writeln!(s, "topology = \"gateway\"");
        let _ = writeln!(s, "lan_interfaces = {}", quoted(&names));
        let _ = writeln!(s, "wan_interfaces = {}", quoted(&lan.wan));
        let _ = writeln!(s, "lan_subnets = {}", quoted(&subnets));
        match &p.doh_servers {
            Some(d) => {
                let _ = writeln!(s, "doh_servers = {d:?}");
            }
            None => {
                let _ = writeln!(s, "# doh_servers = \"doh-servers.txt\"");
            }
        }
    } else {
        let _ = writeln!(
            s,
            "# The firewall rules belong on the router: fill in its interfaces and run"
        );
        let _ = writeln!(s, "# `sinkhole firewall apply` there with this section.");
        let _ = writeln!(s, "# [firewall]");
        let _ = writeln!(s, "# topology = \"lan-host\"");
        let addrs: Vec<String> = lan.listen().iter().map(ToString::to_string).collect();
        let _ = writeln!(s, "# resolver = {}", quoted(&addrs));
        let _ = writeln!(s, "# lan_interfaces = [\"ROUTER-LAN\"]");
        let _ = writeln!(s, "# wan_interfaces = [\"ROUTER-WAN\"]");
        let _ = writeln!(s, "# lan_subnets = {}", quoted(&subnets));
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn iface(name: &str, addrs: &[(&str, u8)]) -> Interface {
        Interface {
            name: name.into(),
            addrs: addrs
                .iter()
                .map(|(a, n)| (a.parse().unwrap(), *n))
                .collect(),
        }
    }

    fn paths() -> Paths {
        Paths {
            lists: vec!["/usr/share/sinkhole/messaging.txt".into()],
            doh_names: "/usr/share/sinkhole/doh-names.txt".into(),
            doh_servers: Some("/usr/share/sinkhole/doh-servers.txt".into()),
            log: "/var/lib/sinkhole/queries.jsonl".into(),
        }
    }

    #[test]
    fn a_router_gets_its_lan_side_and_an_active_firewall_section() {
        let host = Host {
            interfaces: vec![
                iface("lo", &[("127.0.0.1", 8), ("::1", 128)]),
                iface("eth0", &[("203.0.113.7", 24), ("fe80::1", 64)]),
                iface(
                    "eth1",
                    &[("192.168.1.1", 24), ("fd00:1::1", 64), ("fe80::2", 64)],
                ),
            ],
            default_routes: vec!["eth0".into()],
        };
        let lan = plan(&host).unwrap();
        assert!(lan.gateway());
        assert_eq!(lan.subnets(), ["192.168.1.0/24", "fd00:1::/64"]);
        let text = render(&lan, &paths());
        assert!(
            text.contains("listen = [\"192.168.1.1:53\", \"[fd00:1::1]:53\", \"127.0.0.1:53\"]"),
            "{text}"
        );
        assert!(
            text.contains(
                "allow = [\"127.0.0.0/8\", \"::1/128\", \"192.168.1.0/24\", \"fd00:1::/64\"]"
            ),
            "{text}"
        );
        assert!(
            text.contains("\n[firewall]\ntopology = \"gateway\"")
                || text.contains("topology = \"gateway\"")
        );
        assert!(
            text.contains("lan_interfaces = [\"eth1\"]")
                && text.contains("wan_interfaces = [\"eth0\"]"),
            "{text}"
        );
        // It parses as TOML with those values.
        let v: toml::Table = text.parse().unwrap();
        assert_eq!(v["access"]["allow"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn a_lan_host_listens_on_its_address_and_leaves_the_firewall_to_the_router() {
        let host = Host {
            interfaces: vec![
                iface("lo", &[("127.0.0.1", 8)]),
                iface("enp3s0", &[("10.20.30.40", 22)]),
            ],
            default_routes: vec!["enp3s0".into()],
        };
        let lan = plan(&host).unwrap();
        assert!(!lan.gateway());
        assert_eq!(lan.subnets(), ["10.20.28.0/22"]);
        let text = render(&lan, &paths());
        let v: toml::Table = text.parse().unwrap();
        assert!(v.get("firewall").is_none());
        assert!(text.contains("# resolver = [\"10.20.30.40\"]"));
        // No private address anywhere: nothing to write.
        let public = Host {
            interfaces: vec![iface("eth0", &[("198.51.100.4", 24)])],
            default_routes: vec!["eth0".into()],
        };
        assert!(plan(&public).is_none());
    }

    #[test]
    fn networks_clear_host_bits() {
        assert_eq!(
            network("192.168.1.77".parse().unwrap(), 24).to_string(),
            "192.168.1.0"
        );
        assert_eq!(
            network("fd00:1::1".parse().unwrap(), 64).to_string(),
            "fd00:1::"
        );
        assert_eq!(
            network("10.0.0.1".parse().unwrap(), 0).to_string(),
            "0.0.0.0"
        );
        assert!(private("fd12::1".parse().unwrap()) && !private("fe80::1".parse().unwrap()));
    }
}
