//! `http.block_page_listen`: the addresses of the block page (see `crate::block_page`), a
//! list like `server.listen`. A bare IP means port 80. Empty (the default) means no block
//! page. An address may not be one DNS already listens on over TCP.

use std::net::{IpAddr, SocketAddr};

use toml::Spanned;

/// The block page's default port.
pub const BLOCK_PAGE_PORT: u16 = 80;

/// `IP:PORT`, `[IPv6]:PORT`, or a bare IP (port 80).
pub fn parse_block_page_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, BLOCK_PAGE_PORT));
    }
    super::parse_socket_addr(s)
        .map_err(|m| m.replace("(port 53)", &format!("(port {BLOCK_PAGE_PORT})")))
}

/// True when a TCP listener on `a` and one on `b` cannot both be bound: same port and
/// family, and the same address or either a wildcard.
fn overlap(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// The `http.block_page_listen` part of the config's validator.
impl super::Validator<'_> {
    /// Validates `http.block_page_listen` against the DNS addresses `dns` (`server.listen`):
    /// each entry must parse, appear once, and not share a TCP port with DNS.
    pub(super) fn block_page_listen(
        &mut self,
        raw: &[Spanned<String>],
        dns: &[SocketAddr],
    ) -> Vec<SocketAddr> {
        const KEY: &str = "http.block_page_listen";
        let mut out: Vec<SocketAddr> = Vec::new();
        for s in raw {
            let a = match parse_block_page_addr(s.get_ref()) {
                Ok(a) => a,
                Err(m) => {
                    self.err(s.span(), KEY, format!("{:?}: {m}", s.get_ref()));
                    continue;
                }
            };
            if let Some(d) = dns.iter().find(|d| overlap(&a, d)) {
                self.err(
                    s.span(),
                    KEY,
                    format!("{a}: DNS listens on {d} over TCP (server.listen); the block page needs a port of its own, usually 80"),
                );
            } else if let Some(o) = out.iter().find(|o| overlap(&a, o)) {
                self.err(s.span(), KEY, format!("{a}: overlaps {o}, listed before"));
            } else {
                out.push(a);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    use crate::config::error::test_support::errs as errors;

    #[test]
    fn addresses_default_to_port_80_and_the_key_defaults_to_none() {
        let c = Config::parse(
            "[http]\nblock_page_listen = [\"192.168.1.2\", \"[fd00::2]:8080\", \"127.0.0.1:0\"]\n",
            "t.toml",
            None,
        )
        .unwrap();
        let got: Vec<String> = c
            .http
            .block_page_listen
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(got, ["192.168.1.2:80", "[fd00::2]:8080", "127.0.0.1:0"]);
        assert!(Config::embedded_default().http.block_page_listen.is_empty());
        assert!(
            Config::parse("[http]\n", "t.toml", None)
                .unwrap()
                .http
                .block_page_listen
                .is_empty()
        );
    }

    #[test]
    fn bad_duplicate_and_dns_addresses_name_line_and_key() {
        let e = errors(
            "[server]\nlisten = [\"0.0.0.0:53\"]\n[http]\nblock_page_listen = [\"host:80\", \"10.0.0.1:53\", \"10.0.0.1\", \"0.0.0.0:80\", \"1.2.3.4:x\"]\n",
        );
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(
            e[0].starts_with("t.toml:4:22: http.block_page_listen: \"host:80\": not an address"),
            "{e:?}"
        );
        assert!(e[0].contains("(port 80)"), "{e:?}");
        assert!(
            e[1].starts_with(
                "t.toml:4:33: http.block_page_listen: 10.0.0.1:53: DNS listens on 0.0.0.0:53"
            ),
            "{e:?}"
        );
        assert!(
            e[2].contains("0.0.0.0:80: overlaps 10.0.0.1:80, listed before"),
            "{e:?}"
        );
        assert!(e[3].contains("\"1.2.3.4:x\": invalid port"), "{e:?}");
        let e = errors("[http]\nblock_page_listn = []\n");
        assert!(e[0].contains("unknown field"), "{e:?}");
    }
}
