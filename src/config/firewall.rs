//! `[firewall]`: the raw TOML mirror ([`RawFirewall`]) and its validation into the
//! firewall's model ([`FirewallConfig`], in `firewall::model`), including the files it names
//! (`doh_servers`, `app_blocks`, `deny_sources`). Every value keeps the line it came from, so
//! that each generated rule can say which config line it implements. The model and the
//! rendering of rules are not here: see `firewall`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, line_col};
use crate::firewall::model::{
    AppBlock, Backend, FirewallConfig, Inbound, NetSet, Origin, PortForward, Proto, RejectWith,
    Topology,
};

/// Most errors reported per referenced file; the rest are counted in one last message.
const MAX_FILE_ERRORS: usize = 20;

/// `[firewall]`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFirewall {
    /// `nftables` or `iptables`.
    pub backend: Spanned<String>,
    /// `gateway` or `lan-host`.
    pub topology: Spanned<String>,
    /// Interfaces facing the LAN.
    pub lan_interfaces: Spanned<Vec<Spanned<String>>>,
    /// Interfaces facing the internet.
    pub wan_interfaces: Spanned<Vec<Spanned<String>>>,
    /// The LAN's subnets (CIDRs).
    pub lan_subnets: Spanned<Vec<Spanned<String>>>,
    /// The resolver's addresses when it is another LAN host (`lan-host`).
    pub resolver: Spanned<Vec<Spanned<String>>>,
    /// Redirect stray LAN port-53 traffic to the resolver.
    pub redirect: Spanned<bool>,
    /// Refuse 853/tcp+udp (DNS over TLS / QUIC) for LAN clients.
    pub block_dot: Spanned<bool>,
    /// File of DoH server IPs/CIDRs whose 443 is refused.
    pub doh_servers: Option<Spanned<String>>,
    /// File of `IP:PORT[/udp]` per-client application blocks.
    pub app_blocks: Option<Spanned<String>>,
    /// Files of CIDRs whose traffic is dropped.
    pub deny_sources: Vec<Spanned<String>>,
    /// `proto/port` accepted on the host's input.
    pub allow_inbound: Vec<Spanned<String>>,
    /// `reject` or `drop`.
    pub reject_with: Spanned<String>,
    /// `proto/port=IP:PORT` published from the WAN side.
    pub port_forwards: Vec<Spanned<String>>,
    /// Masquerade traffic leaving through the WAN interfaces.
    pub masquerade: Spanned<bool>,
}

impl Default for RawFirewall {
    fn default() -> Self {
        let s = |v: &str| Spanned::new(0..0, v.to_string());
        Self {
            backend: s("nftables"),
            topology: s("gateway"),
            lan_interfaces: Spanned::new(0..0, Vec::new()),
            wan_interfaces: Spanned::new(0..0, Vec::new()),
            lan_subnets: Spanned::new(0..0, Vec::new()),
            resolver: Spanned::new(0..0, Vec::new()),
            redirect: Spanned::new(0..0, false),
            block_dot: Spanned::new(0..0, true),
            doh_servers: None,
            app_blocks: None,
            deny_sources: Vec::new(),
            allow_inbound: Vec::new(),
            reject_with: s("reject"),
            port_forwards: Vec::new(),
            masquerade: Spanned::new(0..0, false),
        }
    }
}

/// `nftables` (or `nft`) / `iptables`.
fn parse_backend(s: &str) -> Option<Backend> {
    match s {
        "nftables" | "nft" => Some(Backend::Nftables),
        "iptables" => Some(Backend::Iptables),
        _ => None,
    }
}

/// `tcp` / `udp`.
fn parse_proto(s: &str) -> Option<Proto> {
    match s {
        "tcp" => Some(Proto::Tcp),
        "udp" => Some(Proto::Udp),
        _ => None,
    }
}

fn short_name(file: &str) -> &str {
    Path::new(file)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(file)
}

/// The `[firewall]` part of the config's validator.
impl super::Validator<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        if *span == (0..0) {
            0
        } else {
            line_col(self.text, span.start).0
        }
    }

    fn origin(&self, key: &str, span: &Range<usize>) -> Origin {
        let line = self.line(span);
        Origin {
            key: key.to_string(),
            at: if line == 0 {
                "default".into()
            } else {
                format!("{}:{line}", short_name(self.file))
            },
        }
    }

    fn file_err(&mut self, file: &str, line: usize, key: &str, msg: String) {
        self.errors.push(ConfigError {
            file: file.to_string(),
            line,
            col: 1,
            key: Some(key.to_string()),
            msg,
        });
    }

    fn interfaces(&mut self, list: &[Spanned<String>], key: &str) -> Vec<String> {
        self.each(list, key, |s| check_interface(s).map(|()| s.to_string()))
    }

    fn inside_lan(&mut self, ip: IpAddr, lan: &[IpNet], span: Range<usize>, key: &str) {
        if !lan.is_empty() && !lan.iter().any(|n| n.contains(&ip)) {
            let nets: Vec<String> = lan.iter().map(ToString::to_string).collect();
            self.err(
                span,
                key,
                format!("{ip} is outside lan_subnets ({})", nets.join(", ")),
            );
        }
    }

    /// Reads a file named by the config, relative to `base`; `None` after reporting the
    /// problem, or without `base` (the embedded config names no files).
    pub(super) fn read_file(
        &mut self,
        name: &Spanned<String>,
        key: &str,
        base: Option<&Path>,
    ) -> Option<(String, String)> {
        let base = base?;
        let path = base.join(name.get_ref());
        let display = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(t) => Some((display, t)),
            Err(e) => {
                self.err(
                    name.span(),
                    key,
                    format!("{:?}: cannot read {display}: {e}", name.get_ref()),
                );
                None
            }
        }
    }

    /// Parses a file line by line: `#` starts a comment, blank lines are skipped, and `parse`
    /// gets each trimmed line with its number. Only the first [`MAX_FILE_ERRORS`] failures are
    /// reported, with the line number; the rest are counted in one last message.
    pub(super) fn file_lines<T>(
        &mut self,
        display: &str,
        text: &str,
        key: &str,
        mut parse: impl FnMut(&str, usize) -> Result<T, String>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        let mut bad = 0usize;
        for (i, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            match parse(entry, i + 1) {
                Ok(v) => out.push(v),
                Err(m) => {
                    bad += 1;
                    if bad <= MAX_FILE_ERRORS {
                        self.file_err(display, i + 1, key, m);
                    }
                }
            }
        }
        if bad > MAX_FILE_ERRORS {
            self.file_err(
                display,
                0,
                key,
                format!("{} more bad lines", bad - MAX_FILE_ERRORS),
            );
        }
        out
    }

    /// Reads IP/CIDR files (first field of each line, `#` comments).
    fn net_files(
        &mut self,
        names: &[&Spanned<String>],
        key: &str,
        base: Option<&Path>,
    ) -> Vec<IpNet> {
        let mut nets = Vec::new();
        for name in names {
            let Some((display, text)) = self.read_file(name, key, base) else {
                continue;
            };
            nets.extend(self.file_lines(&display, &text, key, |entry, _| {
                // `entry` is trimmed and not empty, so it has a first field.
                let field = entry.split_whitespace().next().unwrap_or(entry);
                parse_net(field).ok_or_else(|| format!("{field:?} is not an IP address or CIDR"))
            }));
        }
        // IPv4 first, then IPv6: the order `aggregate` returns them in.
        IpNet::aggregate(&nets)
    }

    fn app_blocks(
        &mut self,
        name: &Spanned<String>,
        lan: &[IpNet],
        base: Option<&Path>,
    ) -> Vec<AppBlock> {
        const KEY: &str = "firewall.app_blocks";
        let Some((display, text)) = self.read_file(name, KEY, base) else {
            return Vec::new();
        };
        self.file_lines(&display, &text, KEY, |entry, lineno| {
            let (client, port, proto) =
                parse_app_block(entry).map_err(|m| format!("{entry:?}: {m}"))?;
            if !(lan.is_empty() || lan.iter().any(|n| n.contains(&client))) {
                return Err(format!("{entry:?}: {client} is outside lan_subnets"));
            }
            Ok(AppBlock {
                client,
                port,
                proto,
                origin: Origin {
                    key: KEY.into(),
                    at: format!("{}:{lineno}", name.get_ref()),
                },
            })
        })
    }

    /// Validates `[firewall]`, pushing every problem onto `errors`; files are read relative
    /// to `base`.
    pub(super) fn firewall(&mut self, raw: RawFirewall, base: Option<&Path>) -> FirewallConfig {
        let mut origins = BTreeMap::new();
        for (key, span) in [
            ("firewall.backend", raw.backend.span()),
            ("firewall.topology", raw.topology.span()),
            ("firewall.lan_interfaces", raw.lan_interfaces.span()),
            ("firewall.wan_interfaces", raw.wan_interfaces.span()),
            ("firewall.lan_subnets", raw.lan_subnets.span()),
            ("firewall.resolver", raw.resolver.span()),
            ("firewall.redirect", raw.redirect.span()),
            ("firewall.block_dot", raw.block_dot.span()),
            ("firewall.reject_with", raw.reject_with.span()),
            ("firewall.masquerade", raw.masquerade.span()),
        ] {
            origins.insert(key.to_string(), self.origin(key, &span));
        }
        let backend = parse_backend(raw.backend.get_ref()).unwrap_or_else(|| {
            self.err(
                raw.backend.span(),
                "firewall.backend",
                format!(
                    "unknown backend {:?}: use nftables or iptables",
                    raw.backend.get_ref()
                ),
            );
            Backend::Nftables
        });
        let topology = match raw.topology.get_ref().as_str() {
            "gateway" => Topology::Gateway,
            "lan-host" => Topology::LanHost,
            other => {
                self.err(
                    raw.topology.span(),
                    "firewall.topology",
                    format!("unknown topology {other:?}: use gateway or lan-host"),
                );
                Topology::Gateway
            }
        };
        let reject_with = match raw.reject_with.get_ref().as_str() {
            "reject" => RejectWith::Reject,
            "drop" => RejectWith::Drop,
            other => {
                self.err(
                    raw.reject_with.span(),
                    "firewall.reject_with",
                    format!("unknown value {other:?}: use reject or drop"),
                );
                RejectWith::Reject
            }
        };
        let lan_interfaces =
            self.interfaces(raw.lan_interfaces.get_ref(), "firewall.lan_interfaces");
        if raw.lan_interfaces.get_ref().is_empty() {
            self.err(
                raw.lan_interfaces.span(),
                "firewall.lan_interfaces",
                "at least one LAN interface is needed (e.g. [\"eth1\"])",
            );
        }
        let wan_interfaces =
            self.interfaces(raw.wan_interfaces.get_ref(), "firewall.wan_interfaces");
        let mut lan_subnets = Vec::new();
        for s in raw.lan_subnets.get_ref() {
            match s.get_ref().parse::<IpNet>() {
                Ok(n) if n.trunc() != n => self.err(
                    s.span(),
                    "firewall.lan_subnets",
                    format!(
                        "{:?}: host bits set; did you mean {}?",
                        s.get_ref(),
                        n.trunc()
                    ),
                ),
                Ok(n) => lan_subnets.push(n),
                Err(_) => self.err(
                    s.span(),
                    "firewall.lan_subnets",
                    format!("{:?} is not a CIDR (e.g. 192.168.1.0/24)", s.get_ref()),
                ),
            }
        }
        if raw.lan_subnets.get_ref().is_empty() {
            self.err(
                raw.lan_subnets.span(),
                "firewall.lan_subnets",
                "at least one LAN subnet is needed (e.g. [\"192.168.1.0/24\"])",
            );
        }
        let mut resolver = Vec::new();
        for s in raw.resolver.get_ref() {
            match s.get_ref().parse::<IpAddr>() {
                Ok(ip) => {
                    self.inside_lan(ip, &lan_subnets, s.span(), "firewall.resolver");
                    resolver.push(ip);
                }
                Err(_) => self.err(
                    s.span(),
                    "firewall.resolver",
                    format!("{:?} is not an IP address", s.get_ref()),
                ),
            }
        }
        match topology {
            Topology::LanHost if raw.resolver.get_ref().is_empty() => self.err(
                raw.resolver.span(),
                "firewall.resolver",
                "topology = \"lan-host\" needs the resolver's address(es)",
            ),
            Topology::Gateway if !raw.resolver.get_ref().is_empty() => self.err(
                raw.resolver.span(),
                "firewall.resolver",
                "only used with topology = \"lan-host\" (with \"gateway\" the resolver is this host)",
            ),
            _ => {}
        }
        let mut allow_inbound = Vec::new();
        for s in &raw.allow_inbound {
            match parse_proto_port(s.get_ref()) {
                Ok((proto, port)) => allow_inbound.push(Inbound {
                    proto,
                    port,
                    origin: self.origin("firewall.allow_inbound", &s.span()),
                }),
                Err(m) => self.err(
                    s.span(),
                    "firewall.allow_inbound",
                    format!("{:?}: {m}", s.get_ref()),
                ),
            }
        }
        let mut port_forwards = Vec::new();
        for s in &raw.port_forwards {
            match parse_port_forward(s.get_ref()) {
                Ok((proto, port, to)) => {
                    self.inside_lan(to.ip(), &lan_subnets, s.span(), "firewall.port_forwards");
                    port_forwards.push(PortForward {
                        proto,
                        port,
                        to,
                        origin: self.origin("firewall.port_forwards", &s.span()),
                    });
                }
                Err(m) => self.err(
                    s.span(),
                    "firewall.port_forwards",
                    format!("{:?}: {m}", s.get_ref()),
                ),
            }
        }
        if raw.wan_interfaces.get_ref().is_empty() {
            if let Some(s) = raw.port_forwards.first() {
                self.err(
                    s.span(),
                    "firewall.port_forwards",
                    "needs firewall.wan_interfaces (where the forwarded traffic arrives)",
                );
            }
            if *raw.masquerade.get_ref() {
                self.err(
                    raw.masquerade.span(),
                    "firewall.masquerade",
                    "needs firewall.wan_interfaces (where traffic is masqueraded)",
                );
            }
        }
        let doh_servers = match &raw.doh_servers {
            Some(name) => NetSet {
                nets: self.net_files(&[name], "firewall.doh_servers", base),
                origin: Some(self.origin("firewall.doh_servers", &name.span())),
            },
            None => NetSet::default(),
        };
        let deny_refs: Vec<&Spanned<String>> = raw.deny_sources.iter().collect();
        let deny_sources = NetSet {
            nets: self.net_files(&deny_refs, "firewall.deny_sources", base),
            origin: raw
                .deny_sources
                .first()
                .map(|s| self.origin("firewall.deny_sources", &s.span())),
        };
        let app_blocks = match &raw.app_blocks {
            Some(name) => self.app_blocks(name, &lan_subnets, base),
            None => Vec::new(),
        };
        FirewallConfig {
            backend,
            topology,
            lan_interfaces,
            wan_interfaces,
            lan_subnets,
            resolver,
            redirect: *raw.redirect.get_ref(),
            block_dot: *raw.block_dot.get_ref(),
            doh_servers,
            app_blocks,
            deny_sources,
            allow_inbound,
            reject_with,
            port_forwards,
            masquerade: *raw.masquerade.get_ref(),
            origins,
        }
    }
}

/// Checks a Linux interface name: 1-15 bytes of letters, digits, `_`, `-`, `.`; a final `+`
/// matches every interface starting with the rest (as in iptables).
fn check_interface(name: &str) -> Result<(), String> {
    let stem = name.strip_suffix('+').unwrap_or(name);
    if name.is_empty() {
        return Err("empty interface name".into());
    }
    if name.len() > 15 {
        return Err("not an interface name: at most 15 characters".into());
    }
    if name == "." || name == ".." {
        return Err("not an interface name".into());
    }
    if let Some(c) = stem
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "not an interface name: {c:?} is not allowed (letters, digits, _ - . and a final +)"
        ));
    }
    Ok(())
}

/// An IP (as a host net) or a CIDR; host bits are cleared.
fn parse_net(s: &str) -> Option<IpNet> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Some(n.trunc());
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("invalid port {s:?} (1-65535)")),
        Ok(p) => Ok(p),
    }
}

/// `tcp/22` → (Tcp, 22).
fn parse_proto_port(s: &str) -> Result<(Proto, u16), String> {
    let (proto, port) = s
        .split_once('/')
        .ok_or("write PROTO/PORT, e.g. \"tcp/22\"")?;
    let proto = parse_proto(proto).ok_or(format!("unknown protocol {proto:?}: use tcp or udp"))?;
    Ok((proto, parse_port(port)?))
}

/// `tcp/7070=192.168.1.43:80` → (Tcp, 7070, 192.168.1.43:80).
fn parse_port_forward(s: &str) -> Result<(Proto, u16, SocketAddr), String> {
    let (outside, inside) = s
        .split_once('=')
        .ok_or("write PROTO/PORT=IP:PORT, e.g. \"tcp/7070=192.168.1.43:80\"")?;
    let (proto, port) = parse_proto_port(outside)?;
    let to = inside
        .parse::<SocketAddr>()
        .map_err(|_| format!("{inside:?} is not IP:PORT (IPv6 as [addr]:port)"))?;
    if to.port() == 0 {
        return Err("invalid port 0".into());
    }
    Ok((proto, port, to))
}

/// `IP:PORT`, `IP:PORT/udp`, `CIDR:PORT`, `[IPv6]:PORT`, `[IPv6/64]:PORT/udp`.
fn parse_app_block(s: &str) -> Result<(IpNet, u16, Proto), String> {
    const FORMAT: &str = "not IP:PORT (or IP:PORT/udp, CIDR:PORT, [IPv6]:PORT)";
    let (rest, proto) = if let Some(r) = s.strip_suffix("/udp") {
        (r, Proto::Udp)
    } else if let Some(r) = s.strip_suffix("/tcp") {
        (r, Proto::Tcp)
    } else {
        (s, Proto::Tcp)
    };
    let (host, port) = rest.rsplit_once(':').ok_or(FORMAT)?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']').ok_or(FORMAT)?,
        None if host.contains(':') => return Err(FORMAT.into()),
        None => host,
    };
    let client = parse_net(host).ok_or(FORMAT)?;
    Ok((client, parse_port(port)?, proto))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        assert!(check_interface("eth0").is_ok());
        assert!(check_interface("br-lan.10").is_ok());
        assert!(check_interface("wg+").is_ok());
        assert!(check_interface("").is_err());
        assert!(check_interface("eth 0").is_err());
        assert!(check_interface("a-very-long-interface").is_err());
        assert!(check_interface("eth0/1").is_err());
    }

    #[test]
    fn app_block_lines() {
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        assert_eq!(
            parse_app_block("192.168.1.10:1863").unwrap(),
            (n("192.168.1.10/32"), 1863, Proto::Tcp)
        );
        assert_eq!(
            parse_app_block("192.168.1.0/24:5000/udp").unwrap(),
            (n("192.168.1.0/24"), 5000, Proto::Udp)
        );
        assert_eq!(
            parse_app_block("[2001:db8::1]:1863").unwrap(),
            (n("2001:db8::1/128"), 1863, Proto::Tcp)
        );
        assert!(parse_app_block("192.168.1.10").is_err());
        assert!(parse_app_block("192.168.1.10:x").is_err());
        assert!(parse_app_block("2001:db8::1:1863").is_err());
        assert!(parse_app_block("host:80").is_err());
    }

    #[test]
    fn port_forward_entries() {
        assert_eq!(
            parse_port_forward("tcp/7070=192.168.1.43:80").unwrap(),
            (Proto::Tcp, 7070, "192.168.1.43:80".parse().unwrap())
        );
        assert!(parse_port_forward("tcp/7070").is_err());
        assert!(parse_port_forward("icmp/1=1.2.3.4:5").is_err());
        assert!(parse_port_forward("tcp/70700=1.2.3.4:5").is_err());
        assert!(parse_port_forward("tcp/7070=1.2.3.4").is_err());
    }
}
