//! `[limits]`: per-client query rate limits with bans, and response-rate limiting (RRL)
//! against reflection. The TOML mirror and its validation into [`LimitsConfig`].
//!
//! `qps` and `burst` are a token bucket per client address; a client that empties it is
//! refused (or dropped) for `ban_s` seconds, the maxretry/findtime/bantime triplet of
//! fail2ban. `exempt` CIDRs are never limited (default: the server host itself, 127.0.0.1
//! and ::1, where local forwarders and the benchmark lab send from). `rrl_*` limit identical
//! UDP answers to one client network; off by default (see docs/config.md, `[limits]`, for why). A CIDR with
//! host bits set is an error with the file and line it came from, as in `[access]`.

use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::access::parse_cidr;

/// `[limits]`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Sustained queries per second per client (0 = no per-client limit).
    pub qps: Spanned<u32>,
    /// Queries a client may send at once above `qps` (the bucket's size).
    pub burst: Spanned<u32>,
    /// Seconds a client that went over stays refused (0 = only the queries over the rate).
    pub ban_s: Spanned<u64>,
    /// `refuse` (REFUSED) or `drop` (no answer).
    pub ban_action: Spanned<String>,
    /// Clients never limited (addresses, CIDRs).
    pub exempt: Spanned<Vec<Spanned<String>>>,
    /// Client addresses tracked at most (the table's fixed size).
    pub max_clients: Spanned<u32>,
    /// Identical UDP answers per second to one client network (0 = no RRL).
    pub rrl_rps: Spanned<u32>,
    /// Of the answers over `rrl_rps`, every `rrl_slip`-th is sent truncated (0 = none).
    pub rrl_slip: Spanned<u32>,
    /// IPv4 prefix length of an RRL client network.
    pub rrl_ipv4_prefix: Spanned<u8>,
    /// IPv6 prefix length of an RRL client network.
    pub rrl_ipv6_prefix: Spanned<u8>,
}

/// The default `limits.exempt`: the server host itself.
pub const DEFAULT_EXEMPT: &[&str] = &["127.0.0.1/32", "::1/128"];

/// Largest `limits.qps`, `limits.burst` and `limits.rrl_rps`.
pub const MAX_RATE: u32 = 1_000_000;
/// Longest `limits.ban_s`: a week.
pub const MAX_BAN_S: u64 = 7 * 86_400;
/// Smallest and largest `limits.max_clients`. The client table and the RRL table each hold
/// this many 32-byte entries, so the largest keeps both together at 32 MiB.
pub const CLIENTS_RANGE: std::ops::RangeInclusive<u32> = 512..=1 << 19;

fn sp<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}

impl Default for RawLimits {
    fn default() -> Self {
        let d = LimitsConfig::default();
        Self {
            qps: sp(d.qps),
            burst: sp(d.burst),
            ban_s: sp(d.ban.as_secs()),
            ban_action: sp("refuse".into()),
            exempt: sp(DEFAULT_EXEMPT.iter().map(|s| sp((*s).into())).collect()),
            max_clients: sp(d.max_clients),
            rrl_rps: sp(d.rrl_rps),
            rrl_slip: sp(d.rrl_slip),
            rrl_ipv4_prefix: sp(d.rrl_ipv4_prefix),
            rrl_ipv6_prefix: sp(d.rrl_ipv6_prefix),
        }
    }
}

/// What a client over its rate gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanAction {
    /// REFUSED: the client's stub moves on to its other resolver at once.
    Refuse,
    /// No answer: nothing is sent back to a (possibly spoofed) source.
    Drop,
}

/// `[limits]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Sustained queries per second per client; 0 turns the per-client limit off.
    pub qps: u32,
    /// Bucket size: queries a client may send at once (at least 1).
    pub burst: u32,
    /// How long a client over its rate stays refused; zero refuses only the queries over it.
    pub ban: Duration,
    /// What a client over its rate gets.
    pub ban_action: BanAction,
    /// Clients never limited (neither by `qps` nor by RRL).
    pub exempt: Vec<IpNet>,
    /// Client addresses tracked at most.
    pub max_clients: u32,
    /// Identical UDP answers per second to one client network; 0 turns RRL off.
    pub rrl_rps: u32,
    /// Every `rrl_slip`-th answer over `rrl_rps` is sent truncated (TC); 0 = none.
    pub rrl_slip: u32,
    /// IPv4 prefix length of an RRL client network.
    pub rrl_ipv4_prefix: u8,
    /// IPv6 prefix length of an RRL client network.
    pub rrl_ipv6_prefix: u8,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            qps: 100,
            burst: 1000,
            ban: Duration::from_secs(60),
            ban_action: BanAction::Refuse,
            exempt: DEFAULT_EXEMPT
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
            max_clients: 1 << 17,
            rrl_rps: 0,
            rrl_slip: 2,
            rrl_ipv4_prefix: 24,
            rrl_ipv6_prefix: 56,
        }
    }
}

impl LimitsConfig {
    /// All limits off (what a policy built without a config uses).
    pub fn off() -> Self {
        Self {
            qps: 0,
            rrl_rps: 0,
            ..Self::default()
        }
    }
}

/// The `[limits]` part of the config's validator.
impl super::Validator<'_> {
    pub(super) fn limits(&mut self, raw: RawLimits) -> LimitsConfig {
        let mut range = |v: &Spanned<u32>, key: &str, lo: u32, hi: u32| -> u32 {
            let n = *v.get_ref();
            if (lo..=hi).contains(&n) {
                return n;
            }
            self.err(v.span(), key, format!("{n}: must be between {lo} and {hi}"));
            n.clamp(lo, hi)
        };
        let qps = range(&raw.qps, "limits.qps", 0, MAX_RATE);
        let burst = range(&raw.burst, "limits.burst", 1, MAX_RATE);
        let max_clients = range(
            &raw.max_clients,
            "limits.max_clients",
            *CLIENTS_RANGE.start(),
            *CLIENTS_RANGE.end(),
        );
        let rrl_rps = range(&raw.rrl_rps, "limits.rrl_rps", 0, MAX_RATE);
        let rrl_slip = range(&raw.rrl_slip, "limits.rrl_slip", 0, 10);
        let ban_s = *raw.ban_s.get_ref();
        if ban_s > MAX_BAN_S {
            self.err(
                raw.ban_s.span(),
                "limits.ban_s",
                format!("{ban_s}: must be between 0 and {MAX_BAN_S} (a week)"),
            );
        }
        let ban_action = match raw.ban_action.get_ref().as_str() {
            "refuse" => BanAction::Refuse,
            "drop" => BanAction::Drop,
            other => {
                self.err(
                    raw.ban_action.span(),
                    "limits.ban_action",
                    format!("{other:?}: expected \"refuse\" or \"drop\""),
                );
                BanAction::Refuse
            }
        };
        let mut prefix = |v: &Spanned<u8>, key: &str, max: u8| -> u8 {
            let n = *v.get_ref();
            if n > max {
                self.err(v.span(), key, format!("{n}: a prefix length is 0 to {max}"));
            }
            n.min(max)
        };
        let rrl_ipv4_prefix = prefix(&raw.rrl_ipv4_prefix, "limits.rrl_ipv4_prefix", 32);
        let rrl_ipv6_prefix = prefix(&raw.rrl_ipv6_prefix, "limits.rrl_ipv6_prefix", 128);
        let exempt = self.each(raw.exempt.get_ref(), "limits.exempt", parse_cidr);
        LimitsConfig {
            qps,
            burst,
            ban: Duration::from_secs(ban_s.min(MAX_BAN_S)),
            ban_action,
            exempt: IpNet::aggregate(&exempt),
            max_clients,
            rrl_rps,
            rrl_slip,
            rrl_ipv4_prefix,
            rrl_ipv6_prefix,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    use crate::config::error::test_support::errs;

    #[test]
    fn the_default_limits_every_client_but_the_host_itself() {
        let c = Config::parse("", "t.toml", None).unwrap().limits;
        assert_eq!(c, LimitsConfig::default());
        assert_eq!(
            (c.qps, c.burst, c.ban),
            (100, 1000, Duration::from_secs(60))
        );
        let exempt: Vec<String> = c.exempt.iter().map(ToString::to_string).collect();
        assert_eq!(exempt, ["127.0.0.1/32", "::1/128"]);
        assert_eq!(c.rrl_rps, 0, "RRL is off by default");
        let off = LimitsConfig::off();
        assert_eq!((off.qps, off.rrl_rps), (0, 0));
    }

    #[test]
    fn limits_are_read() {
        let c = Config::parse(
            "[limits]\nqps = 5\nburst = 20\nban_s = 0\nban_action = \"drop\"\n\
             exempt = [\"10.0.0.0/8\", \"192.168.1.1\"]\nmax_clients = 4096\n\
             rrl_rps = 10\nrrl_slip = 1\nrrl_ipv4_prefix = 32\nrrl_ipv6_prefix = 64\n",
            "t.toml",
            None,
        )
        .unwrap()
        .limits;
        assert_eq!((c.qps, c.burst, c.ban), (5, 20, Duration::ZERO));
        assert_eq!(c.ban_action, BanAction::Drop);
        let exempt: Vec<String> = c.exempt.iter().map(ToString::to_string).collect();
        assert_eq!(exempt, ["10.0.0.0/8", "192.168.1.1/32"]);
        assert_eq!(c.max_clients, 4096);
        assert_eq!((c.rrl_rps, c.rrl_slip), (10, 1));
        assert_eq!((c.rrl_ipv4_prefix, c.rrl_ipv6_prefix), (32, 64));
    }

    #[test]
    fn bad_limits_name_file_line_and_key() {
        let e = errs("[limits]\nexempt = [\"127.0.0.1\", \"10.0.0.1/8\"]\n");
        assert!(
            e[0].starts_with("t.toml:2:24: limits.exempt: \"10.0.0.1/8\": host bits set"),
            "{e:?}"
        );
        let e = errs(
            "[limits]\nburst = 0\nban_action = \"ignore\"\nrrl_slip = 11\n\
             rrl_ipv4_prefix = 33\nban_s = 999999999\nmax_clients = 10\n",
        );
        assert_eq!(e.len(), 6, "{e:?}");
        for (m, want) in [
            "t.toml:2:9: limits.burst: 0: must be between 1 and 1000000",
            "t.toml:3:14: limits.ban_action: \"ignore\": expected",
            "t.toml:4:12: limits.rrl_slip: 11: must be between 0 and 10",
            "t.toml:5:19: limits.rrl_ipv4_prefix: 33: a prefix length is 0 to 32",
            "t.toml:6:9: limits.ban_s: 999999999: must be between 0 and 604800",
            "t.toml:7:15: limits.max_clients: 10: must be between 512 and 524288",
        ]
        .iter()
        .map(|w| (e.iter().find(|m| m.starts_with(w)), w))
        {
            assert!(m.is_some(), "{want} not in {e:?}");
        }
        let e = errs("[limits]\nqps = -1\n");
        assert!(e[0].starts_with("t.toml:2:7: limits.qps: "), "{e:?}");
        let e = errs("[limits]\nqpss = 1\n");
        assert!(
            e[0].starts_with("t.toml:2:1: limits.qpss: unknown field"),
            "{e:?}"
        );
    }
}
