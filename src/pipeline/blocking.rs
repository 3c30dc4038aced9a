//! `Blocking`: the policy stage. Decides whether a name is blocked (the most specific rule
//! of the block and allow lists wins; allow wins at equal specificity) and what a blocked
//! answer says, according to `blocking.mode`; answers the resolver-bypass signals first.
//!
//! A `Blocking` is immutable; a reload builds a new one inside a new policy snapshot.

use std::borrow::Cow;
use std::net::IpAddr;
use std::path::{Component, Path};
use std::sync::Arc;

use super::flow::{Answer, Flow, Local, Reply};
use super::request::Request;
use super::{Action, RuleRef};
use crate::blocklist::load::BlocklistError;
use crate::blocklist::load::{ListReport, load_all_with};
use crate::blocklist::{Blocklist, Kind, Match};
use crate::config::{BlockMode, BlockingConfig};
use crate::dns::wire::{EDE_BLOCKED, Query, TYPE_A, TYPE_AAAA, rcode};

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

    /// The stage: a bypass signal, then the lists. A blocked name is answered as
    /// `blocking.mode` says, with the rule and list in the EDE text (EDNS clients only);
    /// anything else goes on. `details`: name the deciding rule for the query log.
    pub fn check(&self, req: &Request<'_>, details: bool) -> Flow {
        let q = &req.query;
        // Bypass signals first: they are answers the network must give (Firefox's canary,
        // Private Relay, DDR), whatever the lists say.
        if let Some((rule, local)) = self.bypass(q) {
            return Flow::Answer(Answer {
                action: Action::Blocked,
                reply: Reply::Local(local),
                rule: details.then_some(RuleRef::Builtin(rule)),
            });
        }
        match self.list.find(q.name()) {
            Some(m) if m.kind == Kind::Block => Flow::Answer(Answer {
                action: Action::Blocked,
                reply: Reply::Local(self.answer(q, &m)),
                rule: details.then(|| RuleRef::list(&self.list)),
            }),
            _ => Flow::Next,
        }
    }

    /// The bypass signal `q` asks for, if signals are answered: (rule, answer).
    pub fn bypass(&self, q: &Query) -> Option<(&'static str, Local)> {
        if !self.bypass_signals {
            return None;
        }
        let name = q.name();
        let &(rule, nx) = BYPASS_SIGNALS.iter().find(|(n, _)| n.as_bytes() == name)?;
        Some((
            rule,
            Local {
                rcode: if nx { rcode::NXDOMAIN } else { rcode::NOERROR },
                address: None,
                soa_labels: Some(q.label_count()),
                ttl: self.ttl,
                ede: q.edns.map(|_| {
                    (
                        EDE_BLOCKED,
                        Cow::Borrowed("blocked by builtin resolver-bypass signal"),
                    )
                }),
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

    /// The answer for a query blocked by `m`, with the EDE text naming the rule and list
    /// when the query had EDNS.
    pub fn answer(&self, q: &Query, m: &Match<'_>) -> Local {
        self.blocked(q, m.rule.split('.').count(), || ede_text(m))
    }

    /// The answer for a query blocked by a rule of `rule_labels` labels (the SOA of a
    /// negative answer names that many of the question's last labels), as `blocking.mode`
    /// says; `ede` makes the EDE text, only when the query had EDNS (cut to
    /// [`EDE_TEXT_MAX`] bytes).
    pub fn blocked(&self, q: &Query, rule_labels: usize, ede: impl FnOnce() -> String) -> Local {
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
        Local {
            rcode: rc,
            address,
            soa_labels: negative.then_some(rule_labels.min(q.label_count())),
            ttl: self.ttl,
            ede: q.edns.map(|_| (EDE_BLOCKED, Cow::Owned(clip_ede(ede())))),
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
    clip_ede(format!(
        "blocked by {} ({}:{})",
        m.rule,
        list_label(m.source),
        m.line
    ))
}

/// `t` cut to at most [`EDE_TEXT_MAX`] bytes, at a character boundary.
pub fn clip_ede(mut t: String) -> String {
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
    use super::super::request::test_support::{fixed_now, request};
    use super::*;
    use crate::blocklist::BlocklistBuilder;

    /// A stage blocking `ads.test` (and below) and allowing `ok.ads.test`, in `mode`.
    fn stage(mode: BlockMode) -> Blocking {
        let mut cfg = crate::config::Config::embedded_default().blocking;
        cfg.mode = mode;
        let mut b = BlocklistBuilder::new();
        let src = b.add_source("lists/ads.txt");
        b.insert("ads.test", Kind::Block, false, false, src, 3);
        b.insert("ok.ads.test", Kind::Allow, false, false, src, 4);
        Blocking::new(&cfg, b.build())
    }

    fn local(f: Flow) -> (Local, Option<RuleRef>) {
        match f {
            Flow::Answer(Answer {
                action: Action::Blocked,
                reply: Reply::Local(l),
                rule,
            }) => (l, rule),
            other => panic!("expected a blocked answer, got {other:?}"),
        }
    }

    #[test]
    fn a_listed_subdomain_gets_the_sinkhole_address_and_its_rule() {
        let s = stage(BlockMode::Sinkhole);
        let (l, rule) = local(s.check(&request("x.ads.test", TYPE_A, true, fixed_now()), true));
        assert_eq!(l.address, Some(IpAddr::from([0, 0, 0, 0])));
        assert_eq!(l.rcode, rcode::NOERROR);
        assert_eq!(
            l.ede,
            Some((EDE_BLOCKED, "blocked by ads.test (lists/ads.txt:3)".into()))
        );
        let rule = rule.expect("details kept");
        assert_eq!(rule.get("x.ads.test").map(|m| m.rule), Some("ads.test"));
    }

    #[test]
    fn allowed_and_unlisted_names_go_on() {
        let s = stage(BlockMode::Sinkhole);
        for name in ["ok.ads.test", "a.ok.ads.test", "test", "other.test"] {
            let f = s.check(&request(name, TYPE_A, false, fixed_now()), true);
            assert!(matches!(f, Flow::Next), "{name}: {f:?}");
        }
    }

    #[test]
    fn nxdomain_mode_answers_with_an_soa_of_the_rule_and_no_text_without_edns() {
        let s = stage(BlockMode::NxDomain);
        let (l, rule) = local(s.check(
            &request("a.b.ads.test", TYPE_AAAA, false, fixed_now()),
            false,
        ));
        assert_eq!(l.rcode, rcode::NXDOMAIN);
        assert_eq!(l.address, None);
        assert_eq!(l.soa_labels, Some(2));
        assert_eq!(l.ede, None);
        assert!(rule.is_none(), "no details asked for");
    }

    #[test]
    fn bypass_signals_come_before_the_lists() {
        let s = stage(BlockMode::Sinkhole);
        let (l, rule) = local(s.check(
            &request("use-application-dns.net", TYPE_A, true, fixed_now()),
            true,
        ));
        assert_eq!(l.rcode, rcode::NXDOMAIN);
        assert!(matches!(
            rule,
            Some(RuleRef::Builtin("use-application-dns.net"))
        ));
        let (l, _) = local(s.check(&request("_dns.resolver.arpa", 64, false, fixed_now()), true));
        assert_eq!(l.rcode, rcode::NOERROR);
    }

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
