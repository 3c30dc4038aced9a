//! The firewall's model: the validated `[firewall]` section ([`FirewallConfig`]) and the
//! values it is made of (backend, topology, ports, nets, and the [`Origin`] each rule names
//! in its comment). Plain data: `config::firewall` builds it from TOML, and the renderers
//! (`nftables`, `iptables`) read it through [`super::Ruleset`].

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// Which tool the rules are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One `table inet sinkhole`, loaded with `nft -f`.
    Nftables,
    /// `iptables-restore` / `ip6tables-restore` input with chains of our own.
    Iptables,
}

/// Where the resolver runs relative to the router that loads the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// On the router itself.
    Gateway,
    /// On another LAN host (`firewall.resolver`).
    LanHost,
}

/// What happens to refused traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectWith {
    /// ICMP port unreachable / TCP reset.
    Reject,
    /// Silently dropped.
    Drop,
}

/// A transport protocol in a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` or `udp`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// Where a rule comes from: `sinkhole.toml:12` or `blocklists/ip_ports_blocked:3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The config key (`firewall.block_dot`).
    pub key: String,
    /// `file:line`, or `default` for a key that was not written.
    pub at: String,
}

impl Origin {
    /// The rule comment: `firewall.block_dot sinkhole.toml:12`.
    pub fn comment(&self) -> String {
        format!("{} {}", self.key, self.at)
    }
}

/// A port opened on the host's input (`allow_inbound`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// Protocol.
    pub proto: Proto,
    /// Destination port.
    pub port: u16,
    /// Config line.
    pub origin: Origin,
}

/// One `app_blocks` line: this client may not reach this port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppBlock {
    /// The client (source) address or net.
    pub client: IpNet,
    /// Destination port.
    pub port: u16,
    /// Protocol (`IP:PORT` is TCP; `/udp` for UDP).
    pub proto: Proto,
    /// File and line.
    pub origin: Origin,
}

/// One `port_forwards` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForward {
    /// Protocol.
    pub proto: Proto,
    /// Port on the WAN side.
    pub port: u16,
    /// Internal destination.
    pub to: SocketAddr,
    /// Config line.
    pub origin: Origin,
}

/// A set of nets read from files (`doh_servers`, `deny_sources`), merged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetSet {
    /// The nets, aggregated (adjacent and covered nets merged), IPv4 first.
    pub nets: Vec<IpNet>,
    /// The config line naming the files.
    pub origin: Option<Origin>,
}

impl NetSet {
    /// IPv4 members.
    pub fn v4(&self) -> impl Iterator<Item = &IpNet> {
        self.nets.iter().filter(|n| matches!(n, IpNet::V4(_)))
    }
    /// IPv6 members.
    pub fn v6(&self) -> impl Iterator<Item = &IpNet> {
        self.nets.iter().filter(|n| matches!(n, IpNet::V6(_)))
    }
}

/// `[firewall]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallConfig {
    /// Default backend for `sinkhole firewall`.
    pub backend: Backend,
    /// Where the resolver runs.
    pub topology: Topology,
    /// LAN-facing interfaces (`+` suffix = prefix match).
    pub lan_interfaces: Vec<String>,
    /// WAN-facing interfaces.
    pub wan_interfaces: Vec<String>,
    /// LAN subnets.
    pub lan_subnets: Vec<IpNet>,
    /// Resolver addresses (`lan-host`).
    pub resolver: Vec<IpAddr>,
    /// Redirect stray port-53 traffic.
    pub redirect: bool,
    /// Refuse 853 for LAN clients.
    pub block_dot: bool,
    /// DoH servers (443 refused).
    pub doh_servers: NetSet,
    /// Per-client application blocks.
    pub app_blocks: Vec<AppBlock>,
    /// Sources dropped on input and forward.
    pub deny_sources: NetSet,
    /// Ports opened on input.
    pub allow_inbound: Vec<Inbound>,
    /// Reject or drop.
    pub reject_with: RejectWith,
    /// Published services.
    pub port_forwards: Vec<PortForward>,
    /// Masquerade on the WAN side.
    pub masquerade: bool,
    /// Where each scalar key was written (`firewall.redirect` → `sinkhole.toml:7`).
    pub origins: BTreeMap<String, Origin>,
}

impl FirewallConfig {
    /// The origin of a scalar key, `default` when it was not written.
    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or_else(|| Origin {
            key: key.to_string(),
            at: "default".into(),
        })
    }
}
