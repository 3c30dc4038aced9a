//! `Blocking`: decides whether a name is blocked (the most specific rule of the block and
//! allow lists wins; allow wins at equal specificity) and what a blocked answer says,
//! according to `blocking.mode`.
//!
//! A `Blocking` is immutable; a reload builds a new one and the pipeline swaps it in.

use std::net::IpAddr;
use std::sync::Arc;

use crate::blocklist::load::BlocklistError;
use crate::blocklist::load::{ListReport, load_all_with};
use crate::blocklist::{Blocklist, Match};
use crate::config::{BlockMode, BlockingConfig};
use crate::dns::wire::{LocalAnswer, Query, TYPE_A, TYPE_AAAA, rcode};

/// The blocking stage: the rule set plus the answer policy.
#[derive(Debug)]
pub struct Blocking {
    list: Arc<Blocklist>,
    mode: BlockMode,
    v4: IpAddr,
    v6: IpAddr,
    ttl: u32,
    bypass_signals: bool,
}

/// The resolver-bypass signals answered locally when `blocking.bypass_signals` is on, with
/// their answer: the name (matched exactly) and whether it is NXDOMAIN (else NODATA).
///
/// - `use-application-dns.net`: Firefox's canary; NXDOMAIN turns its own DoH off (a
///   0.0.0.0 answer would leave it on).
/// - `mask.icloud.com`, `mask-h2.icloud.com`: iCloud Private Relay; NXDOMAIN makes Apple
///   devices fall back to the network's resolver.
/// - `_dns.resolver.arpa`: Discovery of Designated Resolvers (RFC 9462); NODATA, so that
///   clients are not upgraded to an encrypted resolver of their own choosing.
pub const BYPASS_SIGNALS: &[(&str, bool)] = &[
    ("use-application-dns.net", true),
    ("mask.icloud.com", true),
    ("mask-h2.icloud.com", true),
    ("_dns.resolver.arpa", false),
];

impl Blocking {
    /// Builds the stage around an already loaded list.
    pub fn new(cfg: &BlockingConfig, list: Blocklist) -> Self {
        Self {
            list: Arc::new(list),
            mode: cfg.mode,
            v4: IpAddr::V4(cfg.sinkhole_ipv4),
            v6: IpAddr::V6(cfg.sinkhole_ipv6),
            ttl: cfg.ttl,
            bypass_signals: cfg.bypass_signals,
        }
    }

    /// The bypass signal `q` asks for, if signals are answered: (rule, answer).
    pub fn bypass<'a>(&self, q: &Query, ede: &'a str) -> Option<(&'static str, LocalAnswer<'a>)> {
        if !self.bypass_signals {
            return None;
        }
        let name = q.name();
        let &(rule, nx) = BYPASS_SIGNALS.iter().find(|(n, _)| n.as_bytes() == name)?;
        Some((
            rule,
            LocalAnswer {
                rcode: if nx { rcode::NXDOMAIN } else { rcode::NOERROR },
                address: None,
                soa_labels: Some(q.label_count()),
                ttl: self.ttl,
                ede: q.edns.map(|_| (crate::dns::wire::EDE_BLOCKED, ede)),
            },
        ))
    }

    /// Loads the configured lists and builds the stage. Fails only when a list cannot be
    /// read (bad lines are skipped and reported).
    pub fn load(cfg: &BlockingConfig) -> Result<(Self, Vec<ListReport>), BlocklistError> {
        let (list, reports) = load_all_with(&cfg.lists, &cfg.cache_dir, false)?;
        Ok((Self::new(cfg, list), reports))
    }

    /// The rule set, shared (the query log keeps a reference to name the rule).
    pub fn list(&self) -> &Arc<Blocklist> {
        &self.list
    }

    /// The answer for a blocked query. `ede` is the Extended DNS Error text.
    pub fn answer<'a>(&self, q: &Query, m: &Match<'_>, ede: &'a str) -> LocalAnswer<'a> {
        let rule_labels = m.rule.split('.').count();
        let (rc, address) = match self.mode {
            BlockMode::Sinkhole => (
                rcode::NOERROR,
                match q.qtype {
                    TYPE_A => Some(self.v4),
                    TYPE_AAAA => Some(self.v6),
                    _ => None,
                },
            ),
            BlockMode::NxDomain => (rcode::NXDOMAIN, None),
            BlockMode::NoData => (rcode::NOERROR, None),
            BlockMode::Refused => (rcode::REFUSED, None),
        };
        let negative = address.is_none() && rc != rcode::REFUSED;
        LocalAnswer {
            rcode: rc,
            address,
            soa_labels: negative.then_some(rule_labels.min(q.label_count())),
            ttl: self.ttl,
            ede: q.edns.map(|_| (crate::dns::wire::EDE_BLOCKED, ede)),
        }
    }
}

/// The EDE text for a blocked answer: the rule and where it came from.
pub fn ede_text(m: &Match<'_>) -> String {
    format!("blocked by {} ({}:{})", m.rule, m.source, m.line)
}
