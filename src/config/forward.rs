//! `[[forward]]`: conditional forwarding. Queries for names under a rule's `domains` go to
//! that rule's `servers` only (the company's own domain to its internal DNS, say), never to
//! the main `[upstream]`. The most specific domain wins when rules overlap.

use serde::Deserialize;
use toml::Spanned;

use super::UpstreamConfig;
use crate::blocklist::domain::normalize;

/// One `[[forward]]` table, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForward {
    /// The names (and everything under them) this rule forwards.
    pub domains: Spanned<Vec<Spanned<String>>>,
    /// Each server, tried in order: `IP:PORT`, `tls://IP:853#name`, `https://name/path@IP`.
    pub servers: Spanned<Vec<Spanned<String>>>,
    /// Longest wait for one server, ms (default: `upstream.timeout_ms`).
    pub timeout_ms: Option<u64>,
}

/// One `[[forward]]` rule, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    /// Normalised names (lower case, no trailing dot).
    pub domains: Vec<String>,
    /// The servers and their timeout.
    pub upstream: UpstreamConfig,
}

/// The `[[forward]]` part of the config's validator.
impl super::Validator<'_> {
    pub(super) fn forwards(
        &mut self,
        raw: Vec<RawForward>,
        default_timeout: std::time::Duration,
        tls_ca: Option<&super::TlsCa>,
    ) -> Vec<ForwardConfig> {
        let mut out = Vec::with_capacity(raw.len());
        for r in raw {
            let domains = self.each(r.domains.get_ref(), "forward.domains", |d| {
                normalize(d.trim_end_matches('.')).map_err(|e| e.to_string())
            });
            if r.domains.get_ref().is_empty() {
                self.err(
                    r.domains.span(),
                    "forward.domains",
                    "at least one domain is needed",
                );
            }
            let servers = self.upstream_servers(r.servers.get_ref(), "forward.servers");
            if r.servers.get_ref().is_empty() {
                self.err(
                    r.servers.span(),
                    "forward.servers",
                    "at least one server is needed",
                );
            }
            let timeout = r.timeout_ms.map_or(default_timeout, |ms| {
                std::time::Duration::from_millis(ms.max(1))
            });
            out.push(ForwardConfig {
                domains,
                upstream: UpstreamConfig {
                    servers,
                    timeout,
                    tls_ca: tls_ca.cloned(),
                    recursive: None,
                    dnssec: None,
                },
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn rules_are_read_and_bad_ones_name_line_and_key() {
        let c = Config::parse(
            "[[forward]]\ndomains = [\"Corp.Example.\", \"10.in-addr.arpa\"]\nservers = [\"10.0.0.53\"]\n\
             [[forward]]\ndomains = [\"lab.test\"]\nservers = [\"10.0.0.54:5353\"]\ntimeout_ms = 300\n",
            "t.toml",
            None,
        )
        .unwrap();
        assert_eq!(c.forward.len(), 2);
        assert_eq!(c.forward[0].domains, ["corp.example", "10.in-addr.arpa"]);
        assert_eq!(c.forward[0].upstream.servers[0].to_string(), "10.0.0.53:53");
        assert_eq!(c.forward[0].upstream.timeout, c.upstream.timeout);
        assert_eq!(c.forward[1].upstream.timeout.as_millis(), 300);
        let e = Config::parse(
            "[[forward]]\ndomains = [\"bad..name\"]\nservers = []\n",
            "t.toml",
            None,
        )
        .unwrap_err();
        let e: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        assert!(
            e[0].starts_with("t.toml:2:12: forward.domains: \"bad..name\""),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("t.toml:3:11: forward.servers: at least one"),
            "{e:?}"
        );
        assert!(Config::parse("[[forward]]\ndomains = [\"x.test\"]\n", "t.toml", None).is_err());
    }
}
