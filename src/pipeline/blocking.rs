//! `Blocking`: decides whether a name is blocked (the most specific rule of the block and
//! allow lists wins; allow wins at equal specificity) and what a blocked answer says,
//! according to `blocking.mode`.
//!
//! A `Blocking` is immutable; a reload builds a new one and the pipeline swaps it in.

use std::borrow::Cow;
use std::net::IpAddr;
use std::path::{Component, Path};
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

/// Longest EDE text sent, in bytes: enough for a rule and a list name, small enough to keep
/// answers compact.
pub const EDE_TEXT_MAX: usize = 200;

/// The EDE text for a blocked answer: the rule and the list it came from, at most
/// [`EDE_TEXT_MAX`] bytes cut at a character boundary. The list is named as
/// [`list_label`] shows it to clients: never a folder outside the config's.
pub fn ede_text(m: &Match<'_>) -> String {
    let mut t = format!(
        "blocked by {} ({}:{})",
        m.rule,
        list_label(m.source),
        m.line
    );
    let mut cut = t.len().min(EDE_TEXT_MAX);
    while !t.is_char_boundary(cut) {
        cut -= 1;
    }
    t.truncate(cut);
    t
}

/// How a list (as written in the config) is named to clients: a path relative to the
/// config folder as written; an absolute path, or one that climbs out with `..`, by its
/// bare file name; a URL without credentials, query or fragment.
pub fn list_label(source: &str) -> Cow<'_, str> {
    if let Some((scheme, rest)) = source.split_once("://") {
        let end = rest.find(['?', '#']).unwrap_or(rest.len());
        let host_end = rest[..end].find('/').unwrap_or(end);
        return match rest[..host_end].rfind('@') {
            Some(at) => Cow::Owned(format!("{scheme}://{}", &rest[at + 1..end])),
            None => Cow::Borrowed(&source[..scheme.len() + 3 + end]),
        };
    }
    let p = Path::new(source);
    let climbs = p.components().any(|c| matches!(c, Component::ParentDir));
    if p.is_absolute() || climbs {
        return Cow::Borrowed(source.rsplit('/').find(|s| !s.is_empty()).unwrap_or(source));
    }
    Cow::Borrowed(source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::parse::Kind;

    fn text(rule: &str, source: &str) -> String {
        ede_text(&Match {
            kind: Kind::Block,
            rule,
            source,
            line: 7,
        })
    }

    #[test]
    fn r10_lists_are_named_without_their_folder_or_credentials() {
        // See: #10
        assert_eq!(
            text("ads.test", "ads.txt"),
            "blocked by ads.test (ads.txt:7)"
        );
        assert_eq!(
            text("a.test", "lists/ads.txt"),
            "blocked by a.test (lists/ads.txt:7)"
        );
        assert_eq!(
            text("a.test", "/etc/sinkhole/ads.txt"),
            "blocked by a.test (ads.txt:7)"
        );
        assert_eq!(
            text("a.test", "../../home/me/ads.txt"),
            "blocked by a.test (ads.txt:7)"
        );
        assert_eq!(
            text("a.test", "https://u:pw@lists.example/x/ads.txt?token=1#f"),
            "blocked by a.test (https://lists.example/x/ads.txt:7)"
        );
        assert_eq!(
            text("a.test", "http://lists.example/ads.txt"),
            "blocked by a.test (http://lists.example/ads.txt:7)"
        );
    }

    #[test]
    fn r10_ede_text_is_cut_at_200_bytes_on_a_char_boundary() {
        // See: #10. "blocked by " is 11 bytes; 188 ASCII bytes put the 2-byte "é" at 199-200.
        let rule = format!("{}é{}", "a".repeat(188), "b".repeat(50));
        let t = text(&rule, "ads.txt");
        assert_eq!(t.len(), 199, "{t}");
        assert!(t.ends_with('a'), "{t}");
        let rule = format!("{}é", "a".repeat(187));
        let t = text(&rule, "ads.txt");
        assert_eq!(t.len(), 200, "{t}");
        assert!(t.ends_with('é'), "a character that ends at 200 stays: {t}");
        assert_eq!(text("x.test", "l.txt"), "blocked by x.test (l.txt:7)");
    }
}
