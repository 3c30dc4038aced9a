//! The `[blocking]` keys that judge upstream answers rather than query names, validated:
//! `response_ips` (addresses, CIDRs and files of them, as `access.deny` takes them),
//! `rebind_protection` and `rebind_allow` (domains). The pipeline's answer-check stage
//! (`pipeline::answer_check`) applies them.
//!
//! Every response-IP entry remembers where it was written (the config file or a CIDR file,
//! and the line), so that the query log names the rule that blocked an answer. A CIDR with
//! host bits set is an error, as in `[access]`.

use std::path::Path;

use ipnet::IpNet;
use toml::Spanned;

use super::access::{looks_like_net, parse_cidr};
use super::error::line_col;
use crate::blocklist::domain::normalize;

/// One `blocking.response_ips` entry, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseIp {
    /// The network (a host route for a bare address).
    pub net: IpNet,
    /// The file it was written in: the config file, or the CIDR file it named.
    pub source: String,
    /// Its 1-based line in `source` (0: not from a file).
    pub line: u32,
}

/// The answer-check keys of `[blocking]`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnswerChecksConfig {
    /// Answers holding an address inside one of these are blocked.
    pub response_ips: Vec<ResponseIp>,
    /// DNS rebinding protection: answers for public names must not hold private addresses.
    pub rebind_protection: bool,
    /// Names under these domains (normalised) may resolve to private addresses.
    pub rebind_allow: Vec<String>,
}

/// The answer-check part of the config's validator.
impl super::Validator<'_> {
    pub(super) fn answer_checks(
        &mut self,
        response_ips: &[Spanned<String>],
        rebind_protection: bool,
        rebind_allow: &[Spanned<String>],
        base: Option<&Path>,
    ) -> AnswerChecksConfig {
        const KEY: &str = "blocking.response_ips";
        let mut ips = Vec::new();
        for entry in response_ips {
            let s = entry.get_ref();
            if looks_like_net(s) {
                match parse_cidr(s) {
                    Ok(net) => ips.push(ResponseIp {
                        net,
                        source: self.file.to_string(),
                        line: u32::try_from(line_col(self.text, entry.span().start).0).unwrap_or(0),
                    }),
                    Err(m) => self.err(entry.span(), KEY, format!("{s:?}: {m}")),
                }
                continue;
            }
            let Some((display, text)) = self.read_file(entry, KEY, base) else {
                if base.is_none() {
                    self.err(
                        entry.span(),
                        KEY,
                        format!("{s:?}: files are read only from a config file"),
                    );
                }
                continue;
            };
            ips.extend(self.file_lines(&display, &text, KEY, |line, n| {
                let field = line.split_whitespace().next().unwrap_or(line);
                let net = parse_cidr(field).map_err(|m| format!("{field:?}: {m}"))?;
                Ok(ResponseIp {
                    net,
                    source: display.clone(),
                    line: u32::try_from(n).unwrap_or(u32::MAX),
                })
            }));
        }
        let rebind_allow = self.each(rebind_allow, "blocking.rebind_allow", |d| {
            normalize(d.trim_start_matches("*.").trim_end_matches('.')).map_err(|e| e.to_string())
        });
        AnswerChecksConfig {
            response_ips: ips,
            rebind_protection,
            rebind_allow,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    use crate::config::error::test_support::errs_in as errs;

    #[test]
    fn defaults_protect_against_rebinding_and_block_no_addresses() {
        let c = Config::parse("", "t.toml", None).unwrap();
        let a = &c.blocking.answers;
        assert!(a.rebind_protection);
        assert!(a.response_ips.is_empty() && a.rebind_allow.is_empty());
        assert!(
            Config::embedded_default()
                .blocking
                .answers
                .rebind_protection
        );
    }

    #[test]
    fn response_ips_remember_where_they_were_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ads.nets"),
            "# ad servers\n203.0.113.0/24\n2001:db8:ad::/48 # v6\n",
        )
        .unwrap();
        let c = Config::parse(
            "[blocking]\nresponse_ips = [\n  \"198.51.100.7\",\n  \"ads.nets\",\n]\n\
             rebind_protection = false\nrebind_allow = [\"Plex.Direct.\", \"*.nas.example\"]\n",
            "t.toml",
            Some(dir.path()),
        )
        .unwrap();
        let a = &c.blocking.answers;
        let got: Vec<(String, String, u32)> = a
            .response_ips
            .iter()
            .map(|r| {
                let file = std::path::Path::new(&r.source).file_name().unwrap();
                (r.net.to_string(), file.to_string_lossy().into(), r.line)
            })
            .collect();
        assert_eq!(
            got,
            [
                ("198.51.100.7/32".into(), "t.toml".into(), 3),
                ("203.0.113.0/24".into(), "ads.nets".into(), 2),
                ("2001:db8:ad::/48".into(), "ads.nets".into(), 3),
            ]
        );
        assert!(!a.rebind_protection);
        assert_eq!(a.rebind_allow, ["plex.direct", "nas.example"]);
    }

    #[test]
    fn host_bits_and_bad_domains_name_file_line_and_key() {
        let e = errs(
            "[blocking]\nresponse_ips = [\"192.0.2.1/24\"]\nrebind_allow = [\"bad..name\"]\n",
            None,
        );
        assert!(
            e[0].starts_with(
                "t.toml:2:17: blocking.response_ips: \"192.0.2.1/24\": host bits set (the network is 192.0.2.0/24)"
            ),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("t.toml:3:17: blocking.rebind_allow: \"bad..name\""),
            "{e:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("n.txt"), "10.0.0.0/8\n\n10.1.2.3/16\n").unwrap();
        let e = errs("[blocking]\nresponse_ips = [\"n.txt\"]\n", Some(dir.path()));
        assert!(e[0].contains("n.txt:3:"), "{e:?}");
        assert!(
            e[0].contains("blocking.response_ips: \"10.1.2.3/16\": host bits set"),
            "{e:?}"
        );
        let e = errs(
            "[blocking]\nresponse_ips = [\"missing.txt\"]\n",
            Some(dir.path()),
        );
        assert!(
            e[0].starts_with("t.toml:2:17: blocking.response_ips: \"missing.txt\": cannot read"),
            "{e:?}"
        );
    }
}
