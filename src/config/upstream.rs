//! Upstream server entries (`upstream.servers`, `[[forward]] servers`) and `upstream.tls_ca`.
//!
//! An entry is plain DNS (`9.9.9.9`, `9.9.9.9:53`, `[2620:fe::fe]:53`), DNS over TLS
//! (`tls://9.9.9.9:853#dns.quad9.net`: an IP, port 853 unless given, and after `#` the name
//! the server's certificate must carry) or DNS over HTTPS
//! (`https://dns.quad9.net/dns-query@9.9.9.9`: the URL, and after `@` the IP, port 443
//! unless given, to connect to). Encrypted entries name an IP to connect to so that no
//! resolver is needed to reach the resolver; the name is only checked against the
//! certificate (and sent as SNI and `:authority`). DNS over QUIC (`quic://9.9.9.9:853#dns.quad9.net`)
//! is written as DNS over TLS is: an IP, port 853 unless given, and the certificate's name.
//!
//! `upstream.tls_ca`: a PEM file of CA certificates that replaces the bundled roots
//! (webpki-roots, Mozilla's set) for every encrypted upstream, `[[forward]]` servers too:
//! for a private resolver whose certificate a private CA signed.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use toml::Spanned;

use super::parse_socket_addr;

/// Port of DNS over TLS (RFC 7858).
pub const DOT_PORT: u16 = 853;
/// Port of DNS over QUIC (RFC 9250 §8.2, UDP).
pub const DOQ_PORT: u16 = 853;
/// Port of HTTPS.
pub const HTTPS_PORT: u16 = 443;

/// One upstream server: where to connect, and how to speak to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamServer {
    /// The address connected to (and counted and logged under).
    pub addr: SocketAddr,
    /// Plain DNS, DNS over TLS, DNS over HTTPS or DNS over QUIC.
    pub transport: Transport,
}

/// How an upstream server is spoken to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Plain DNS: UDP, TCP when the answer is truncated; DNS cookies.
    Plain,
    /// DNS over TLS (RFC 7858).
    Tls {
        /// The name the server's certificate must carry (lower case).
        name: String,
    },
    /// DNS over HTTPS (RFC 8484), POST over HTTP/2.
    Https {
        /// The host of the URL: the name the certificate must carry (lower case), or an IP.
        name: String,
        /// Host and port as written in the URL (the request's `:authority`).
        authority: String,
        /// The URL's path (and query), `/dns-query` when the URL has none.
        path: String,
    },
    /// DNS over QUIC (RFC 9250).
    Quic {
        /// The name the server's certificate must carry (lower case).
        name: String,
    },
}

impl UpstreamServer {
    /// A plain DNS server.
    pub fn plain(addr: SocketAddr) -> Self {
        Self {
            addr,
            transport: Transport::Plain,
        }
    }

    /// True for DNS over TLS, HTTPS or QUIC.
    pub fn is_encrypted(&self) -> bool {
        self.transport != Transport::Plain
    }
}

impl fmt::Display for UpstreamServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.transport {
            Transport::Plain => write!(f, "{}", self.addr),
            Transport::Tls { name } => write!(f, "tls://{}#{name}", self.addr),
            Transport::Https {
                authority, path, ..
            } => write!(f, "https://{authority}{path}@{}", self.addr),
            Transport::Quic { name } => write!(f, "quic://{}#{name}", self.addr),
        }
    }
}

/// The CA certificates of `upstream.tls_ca`, read at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCa {
    /// The file.
    pub path: PathBuf,
    /// Its certificates, DER.
    pub certs: Vec<Vec<u8>>,
}

/// Parses one server entry; the error says what to write instead.
pub fn parse_server(s: &str) -> Result<UpstreamServer, String> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("tls://") {
        return parse_tls(rest);
    }
    if let Some(rest) = s.strip_prefix("https://") {
        return parse_https(rest);
    }
    if let Some(rest) = s.strip_prefix("quic://") {
        return parse_named("quic", rest, DOQ_PORT).map(|(addr, name)| UpstreamServer {
            addr,
            transport: Transport::Quic { name },
        });
    }
    if let Some((scheme, _)) = s.split_once("://") {
        return Err(format!(
            "unknown scheme {scheme:?}: write IP:PORT (plain DNS), tls://IP:853#name, https://name/dns-query@IP or quic://IP:853#name"
        ));
    }
    parse_socket_addr(s).map(UpstreamServer::plain)
}

/// `IP`, `IP:PORT` or `[IPv6]:PORT`, with `port` when none is given.
fn ip_port(s: &str, port: u16, what: &str) -> Result<SocketAddr, String> {
    super::http::parse_http_addr(s, Some(port)).map_err(|_| {
        format!(
            "{s:?} {what} is not an IP address: write IP, IP:PORT or [IPv6]:PORT (host names are not accepted: no resolver is asked for the resolver's address)"
        )
    })
}

/// A name a certificate may carry: a DNS name (lower-cased) or an IP.
fn cert_name(n: &str) -> Result<String, String> {
    let lower = n.to_ascii_lowercase();
    if lower.is_empty() || ServerName::try_from(lower.as_str()).is_err() {
        return Err(format!("{n:?} is not a host name"));
    }
    Ok(lower)
}

fn parse_tls(rest: &str) -> Result<UpstreamServer, String> {
    let (addr, name) = parse_named("tls", rest, DOT_PORT)?;
    Ok(UpstreamServer {
        addr,
        transport: Transport::Tls { name },
    })
}

/// `IP[:PORT]#name` after `scheme://`: where to connect (`port` unless given) and the name
/// the certificate must carry.
fn parse_named(scheme: &str, rest: &str, port: u16) -> Result<(SocketAddr, String), String> {
    let Some((addr, name)) = rest.split_once('#') else {
        return Err(format!(
            "write the name the server's certificate carries after '#', such as \"{scheme}://{rest}#dns.quad9.net\""
        ));
    };
    let addr = ip_port(addr, port, "before '#'")?;
    let name = cert_name(name).map_err(|e| {
        format!("{e}: after '#' write the name on the server's certificate, such as dns.quad9.net")
    })?;
    Ok((addr, name))
}

fn parse_https(rest: &str) -> Result<UpstreamServer, String> {
    let (url, at) = match rest.rsplit_once('@') {
        Some((u, a)) => (u, Some(a)),
        None => (rest, None),
    };
    let (authority, path) = match url.find('/') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{path:?} is not a URL path"));
    }
    let path = if path.is_empty() { "/dns-query" } else { path };
    // The host, and the port of the URL if it has one (`[v6]:port`, `name:port`).
    let (host, url_port) = match authority.rsplit_once(':') {
        Some((h, p))
            if !h.is_empty() && !p.contains(']') && (!h.contains(':') || h.ends_with(']')) =>
        {
            let port = p
                .parse::<u16>()
                .map_err(|_| format!("invalid port {p:?} in the URL"))?;
            (h, port)
        }
        _ => (authority, HTTPS_PORT),
    };
    let host_ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    let name = match host_ip {
        Some(ip) => ip.to_string(),
        None => cert_name(host).map_err(|e| {
            format!("{e}: write the URL as https://NAME/PATH@IP, such as \"https://dns.quad9.net/dns-query@9.9.9.9\"")
        })?,
    };
    let addr = match (at, host_ip) {
        (Some(a), _) => ip_port(a, url_port, "after '@'")?,
        (None, Some(ip)) => SocketAddr::new(ip, url_port),
        (None, None) => {
            return Err(format!(
                "write the address to connect to after '@', such as \"https://{authority}{path}@9.9.9.9\" (no resolver is asked for {host:?})"
            ));
        }
    };
    Ok(UpstreamServer {
        addr,
        transport: Transport::Https {
            name,
            authority: authority.to_ascii_lowercase(),
            path: path.to_string(),
        },
    })
}

/// Reads a PEM file of CA certificates.
pub fn read_ca(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    read_ca_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))
}

/// The certificates of PEM text, each checked to be usable as a trust anchor.
pub fn read_ca_pem(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut certs = Vec::new();
    for c in CertificateDer::pem_slice_iter(pem) {
        let c = c.map_err(|e| format!("not a PEM certificate ({e})"))?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(c.clone())
            .map_err(|e| format!("a certificate cannot be a trust anchor ({e})"))?;
        certs.push(c.to_vec());
    }
    if certs.is_empty() {
        return Err("no certificate in the file; give the CA certificate(s) in PEM (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certs)
}

/// The upstream part of the config's validator.
impl super::Validator<'_> {
    /// The entries of a servers list (`upstream.servers`, `forward.servers`).
    pub(super) fn upstream_servers(
        &mut self,
        list: &[Spanned<String>],
        key: &str,
    ) -> Vec<UpstreamServer> {
        self.each(list, key, parse_server)
    }

    /// `upstream.tls_ca`, read and checked.
    pub(super) fn tls_ca(
        &mut self,
        raw: Option<&Spanned<String>>,
        base: Option<&Path>,
    ) -> Option<TlsCa> {
        let raw = raw?;
        let p = PathBuf::from(raw.get_ref());
        let path = match base {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p,
        };
        match read_ca(&path) {
            Ok(certs) => Some(TlsCa { path, certs }),
            Err(m) => {
                self.err(raw.span(), "upstream.tls_ca", m);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
