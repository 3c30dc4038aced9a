//! The firewall companion: turns `[firewall]` into a rule set that makes the resolver the
//! only way out for DNS. [`model`] holds the validated section ([`FirewallConfig`], built by
//! `config::firewall`); [`Ruleset`] is built from a validated [`Config`]; [`render`] is a
//! pure function from it to the text a tool loads (`nft -f` script or `iptables-restore`
//! input). Nothing here runs a process or needs root: only [`system`] (used by
//! `sinkhole firewall check|apply|remove|rollback`) calls `nft` and `iptables-restore`,
//! [`guard`] keeps the confirm window's saved rules and the rollback armed apart from `apply`,
//! and [`apply`] is the confirm window's state machine (apply, wait, confirm or roll back).

pub mod apply;
pub mod guard;
pub mod iptables;
mod iptables_save;
pub mod model;
pub mod nftables;
pub mod system;
mod timer;

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use thiserror::Error;

use crate::config::Config;
pub use model::{Backend, FirewallConfig};
use model::{Origin, RejectWith};

/// An IP family, for `--family` (iptables backend: one of the two parts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4 (`iptables-restore`).
    V4,
    /// IPv6 (`ip6tables-restore`).
    V6,
}

impl Family {
    /// Both families, IPv4 first.
    pub const BOTH: [Self; 2] = [Self::V4, Self::V6];

    /// The family of an address.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    /// The nets of this family, in their order.
    pub fn nets(self, nets: &[IpNet]) -> impl Iterator<Item = &IpNet> {
        nets.iter().filter(move |n| Self::of(n.addr()) == self)
    }

    /// The family's name in nft rules: `ip` / `ip6`.
    pub fn nft(self) -> &'static str {
        match self {
            Self::V4 => "ip",
            Self::V6 => "ip6",
        }
    }

    /// The tool that loads this family's rules: `iptables-restore` / `ip6tables-restore`.
    pub fn restore_tool(self) -> &'static str {
        match self {
            Self::V4 => "iptables-restore",
            Self::V6 => "ip6tables-restore",
        }
    }

    /// The tool that prints this family's rules: `iptables-save` / `ip6tables-save`.
    pub fn save_tool(self) -> &'static str {
        match self {
            Self::V4 => "iptables-save",
            Self::V6 => "ip6tables-save",
        }
    }
}

/// Why no rule set could be built.
#[derive(Debug, Error)]
pub enum FirewallError {
    /// The config has no `[firewall]` section.
    #[error("{0}: no [firewall] section: see [firewall] in docs/config.md (man sinkhole.toml)")]
    NoSection(String),
}

/// Everything the renderers need, typed: the `[firewall]` section plus the resolver's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// The config file's name, for the header.
    pub source: String,
    /// The validated section.
    pub fw: FirewallConfig,
    /// The port the local resolver answers on (from `server.listen`), redirect target.
    pub dns_port: u16,
}

impl Ruleset {
    /// Builds the rule set from a validated config.
    pub fn from_config(cfg: &Config) -> Result<Self, FirewallError> {
        let fw = cfg
            .firewall
            .clone()
            .ok_or_else(|| FirewallError::NoSection(cfg.file.clone()))?;
        Ok(Self {
            source: cfg.file.clone(),
            fw,
            dns_port: dns_port(&cfg.server.listen),
        })
    }

    /// The comment for a refusal: `reject_with` decides how, this names it.
    fn refuse_origin(&self) -> Origin {
        self.fw.origin("firewall.reject_with")
    }

    fn rejects(&self) -> bool {
        self.fw.reject_with == RejectWith::Reject
    }
}

/// The resolver's port: the first non-loopback `server.listen` address, else the first, else 53.
fn dns_port(listen: &[SocketAddr]) -> u16 {
    listen
        .iter()
        .find(|a| !a.ip().is_loopback())
        .or(listen.first())
        .map_or(53, SocketAddr::port)
}

/// Renders the rule set for a backend. For iptables, `family` selects one part (`None`: the
/// IPv4 part, a `# ip6tables-restore` line, the IPv6 part); nftables' `inet` table always
/// holds both.
pub fn render(rs: &Ruleset, backend: Backend, family: Option<Family>) -> String {
    match backend {
        Backend::Nftables => nftables::render(rs),
        Backend::Iptables => match family {
            Some(f) => iptables::render(rs, f),
            None => format!(
                "{}# {}\n{}",
                iptables::render(rs, Family::V4),
                Family::V6.restore_tool(),
                iptables::render(rs, Family::V6)
            ),
        },
    }
}

/// A rule comment, safe inside double quotes for both tools (nft limits comments to 128 bytes).
fn comment(text: &str) -> String {
    let mut s: String = text
        .chars()
        .map(|c| if c == '"' || c == '\\' { '\'' } else { c })
        .collect();
    if s.len() > 120 {
        let mut cut = 117;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests;
