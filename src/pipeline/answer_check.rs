//! `AnswerCheck`: the stage after the upstream. Every upstream answer passes it before it
//! is cached or sent, so that what the resolver relays and remembers is only what it checked.
//!
//! In order:
//! 1. **Bailiwick.** Records outside the question's bailiwick are stripped (unbound's
//!    scrubber rules for a forwarder: answers only for the question name and its CNAME
//!    chain, authority records only for zones above those names, additional records only
//!    for names the kept records point at), so that an upstream, or someone forging its
//!    answers, cannot plant records for other names in the cache.
//! 2. **Response IPs** (`blocking.response_ips`): an answer holding an A/AAAA address
//!    inside one of the networks is answered as blocked, logged with the network as rule.
//! 3. **Rebinding** (`blocking.rebind_protection`): an answer for a public name holding a
//!    private, loopback, link-local or unspecified address (see [`is_rebind_private`]) is
//!    answered as blocked, logged with the rule `rebinding`, unless the name is not public
//!    (see [`NOT_PUBLIC`]), is under `blocking.rebind_allow`, or under a `[[forward]]`
//!    domain (the network's own DNS answers those).
//! 4. **CNAME targets**: an answer whose CNAME chain reaches a name the lists block is
//!    answered as if the query had been for that name ([`AnswerCheck::cname`]).
//!
//! Steps 2 and 3 depend only on the global config: an answer they block is not cached (and
//! a reload that changes their keys empties the cache). Step 4 depends on the lists, which
//! change with a reload and, with client groups, per client: the upstream answer is cached
//! as it came, and the check runs again on every cache hit, but only for answers that have
//! a chain (precomputed once per answer, [`Response::cname_targets`]): an answer without
//! one costs a cache hit one emptiness check. The deciding [`Blocking`] is a parameter, not
//! the stage's own, so that a client group's lists can decide.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::access::NetTable;
use super::blocking::{Blocking, list_label};
use super::flow::{Answer, Reply};
use super::request::Request;
use super::{Action, RuleRef, WrittenRule};
use crate::blocklist::Kind;
use crate::blocklist::domain::suffixes;
use crate::config::Config;
use crate::dns::wire::{EDE_NO_REACHABLE_AUTHORITY, Response, rcode};

/// Top-level domains whose names are not public, so rebinding protection does not judge
/// them: `localhost` (RFC 6761), `local` (mDNS, RFC 6762), `internal` (ICANN's private-use
/// TLD), `arpa` (reverse names and `home.arpa`, RFC 8375), and the private suffixes routers
/// and companies use by habit (`lan`, `home`, `corp`, `localdomain`, `intranet`,
/// `private`). Single-label names (`nas`) are not public either.
pub const NOT_PUBLIC: &[&str] = &[
    "localhost",
    "local",
    "internal",
    "arpa",
    "lan",
    "home",
    "corp",
    "localdomain",
    "intranet",
    "private",
];

/// The answer-check stage: the global settings of steps 2 and 3; step 4 uses the deciding
/// [`Blocking`]. The default checks only the bailiwick.
#[derive(Debug, Default)]
pub struct AnswerCheck {
    /// `blocking.response_ips`, merged for the lookup.
    response_ips: NetTable,
    /// The same entries as written, to name the one that matched (looked up on a hit only).
    ip_rules: Box<[(IpNet, RuleRef)]>,
    /// `blocking.rebind_protection`.
    rebind: bool,
    /// `blocking.rebind_allow` and the `[[forward]]` domains.
    rebind_allow: HashSet<Box<[u8]>>,
}

impl AnswerCheck {
    /// The stage for `cfg`'s `[blocking]` answer checks and `[[forward]]` domains.
    pub fn new(cfg: &Config) -> Self {
        let a = &cfg.blocking.answers;
        let nets: Vec<IpNet> = a.response_ips.iter().map(|r| r.net).collect();
        let ip_rules = a
            .response_ips
            .iter()
            .map(|r| {
                let rule = WrittenRule {
                    rule: r.net.to_string().into(),
                    source: r.source.as_str().into(),
                    line: r.line,
                };
                (r.net, RuleRef::Written(Arc::new(rule)))
            })
            .collect();
        let rebind_allow = a
            .rebind_allow
            .iter()
            .chain(cfg.forward.iter().flat_map(|f| f.domains.iter()))
            .map(|d| d.as_bytes().into())
            .collect();
        Self {
            response_ips: NetTable::new(&nets),
            ip_rules,
            rebind: a.rebind_protection,
            rebind_allow,
        }
    }

    /// Steps 1-3 for a fresh upstream answer: the answer to cache (`Ok`), or the answer
    /// that replaces it (`Err`, not cached). `blocking` says how a blocked answer looks;
    /// `details`: name the deciding rule for the query log. Step 4 is [`AnswerCheck::cname`],
    /// run after caching.
    pub fn check(
        &self,
        req: &Request<'_>,
        resp: Response,
        blocking: &Blocking,
        details: bool,
    ) -> Result<Response, Answer> {
        self.check_with(req, resp, blocking, details, true)
    }

    /// [`AnswerCheck::check`], with step 2 (`response_ips`, a block list of addresses)
    /// skipped when `lists` is false: while blocking is paused. Bailiwick and rebinding
    /// protection still apply: they guard the network, not a policy.
    pub fn check_with(
        &self,
        req: &Request<'_>,
        resp: Response,
        blocking: &Blocking,
        details: bool,
        lists: bool,
    ) -> Result<Response, Answer> {
        let resp = resp.without_strays(&req.query).map_err(|e| {
            tracing::debug!(qname = %req.query.name_lossy(), error = ?e, "upstream answer failed the checks");
            Answer::new(
                Action::Failed,
                Reply::Error {
                    rcode: rcode::SERVFAIL,
                    ede: Some((EDE_NO_REACHABLE_AUTHORITY, "no upstream resolver answered".into())),
                    dnssec: None,
                },
            )
        })?;
        let ips = lists && !self.response_ips.is_empty();
        if !ips && !self.rebind {
            return Ok(resp);
        }
        let (mut listed, mut private) = (None, false);
        resp.any_address(|ip| {
            if ips && self.response_ips.contains(ip) {
                listed = Some(ip);
                return true;
            }
            private |= self.rebind && is_rebind_private(ip);
            false
        });
        let q = &req.query;
        if let Some(ip) = listed {
            let rule = self.ip_rule(ip);
            let local = blocking.blocked(
                q,
                || q.label_count(),
                || match rule.get("") {
                    Some(m) => format!(
                        "blocked by response IP {} ({}:{})",
                        m.rule,
                        list_label(m.source),
                        m.line
                    ),
                    None => "blocked by response IP".into(),
                },
            );
            tracing::debug!(qname = %q.name_lossy(), %ip, "answer blocked by blocking.response_ips");
            return Err(blocked(local, details.then_some(rule)));
        }
        if private && !self.rebind_exempt(q.name()) {
            let local = blocking.blocked(
                q,
                || q.label_count(),
                || {
                    "blocked by DNS rebinding protection: a private address for a public name"
                        .into()
                },
            );
            tracing::debug!(qname = %q.name_lossy(), "answer blocked by rebinding protection");
            return Err(blocked(
                local,
                details.then_some(RuleRef::Builtin("rebinding")),
            ));
        }
        Ok(resp)
    }

    /// Step 4 for an answer from the cache: [`AnswerCheck::cname`] when `a` is an upstream
    /// answer with a CNAME chain; `None` (one emptiness check) otherwise.
    #[inline]
    pub fn cached(
        &self,
        req: &Request<'_>,
        a: &Answer,
        blocking: &Blocking,
        details: bool,
    ) -> Option<Answer> {
        match &a.reply {
            Reply::Upstream { resp, .. } if !resp.cname_targets().is_empty() => {
                self.cname(req, resp, blocking, details)
            }
            _ => None,
        }
    }

    /// Step 4: when a name of `resp`'s CNAME chain is blocked by `blocking`'s lists (the
    /// most specific rule wins, allow at equal specificity, as for query names), the
    /// blocked answer for the query, as if it had asked for that name. An allow rule for
    /// the query name itself lets the whole answer through. `None`: `resp` may be sent.
    pub fn cname(
        &self,
        req: &Request<'_>,
        resp: &Response,
        blocking: &Blocking,
        details: bool,
    ) -> Option<Answer> {
        let targets = resp.cname_targets();
        if targets.is_empty() {
            return None;
        }
        let list = blocking.list();
        let q = &req.query;
        if list.find(q.name()).is_some_and(|m| m.kind == Kind::Allow) {
            return None;
        }
        for t in targets {
            let Some(m) = list.find(t).filter(|m| m.kind == Kind::Block) else {
                continue;
            };
            tracing::debug!(qname = %q.name_lossy(), cname = %String::from_utf8_lossy(t), rule = m.rule, "answer blocked by its CNAME chain");
            let local = blocking.answer(q, &m);
            let rule = details.then(|| RuleRef::Cname {
                list: Arc::clone(list),
                target: t.clone(),
            });
            return Some(blocked(local, rule));
        }
        None
    }

    /// The written `response_ips` entry that holds `ip`: the most specific one.
    fn ip_rule(&self, ip: IpAddr) -> RuleRef {
        let ip = ip.to_canonical();
        self.ip_rules
            .iter()
            .filter(|(net, _)| net.contains(&ip))
            .max_by_key(|(net, _)| net.prefix_len())
            .map_or(RuleRef::Builtin("response_ips"), |(_, r)| r.clone())
    }

    /// True when answers for `name` may hold private addresses: a name that is not public,
    /// or one under `rebind_allow` or a `[[forward]]` domain.
    fn rebind_exempt(&self, name: &[u8]) -> bool {
        let tld = name.rsplit(|&b| b == b'.').next().unwrap_or_default();
        !name.contains(&b'.')
            || NOT_PUBLIC.iter().any(|n| n.as_bytes() == tld)
            || suffixes(name).any(|s| self.rebind_allow.contains(s))
    }
}

/// A blocked answer.
fn blocked(local: super::flow::Local, rule: Option<RuleRef>) -> Answer {
    Answer {
        action: Action::Blocked,
        reply: Reply::Local(local),
        rule,
    }
}

/// True for the addresses a public name must not resolve to (dnsmasq's
/// `--stop-dns-rebind` ranges without the documentation ones, which lead nowhere): IPv4
/// 0.0.0.0/8 ("this network"; browsers connect 0.0.0.0 to the local host), 10.0.0.0/8,
/// 127.0.0.0/8, 169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16, 255.255.255.255; IPv6 `::`,
/// `::1`, fe80::/10 (link-local), fec0::/10 (old site-local), fc00::/7 (unique local), and
/// IPv4-mapped addresses (`::ffff:a.b.c.d`) of those IPv4 ranges.
pub fn is_rebind_private(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(a) => {
            a.octets().first() == Some(&0)
                || a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_broadcast()
        }
        IpAddr::V6(a) => {
            let s0 = a.segments().first().copied().unwrap_or(0);
            a.is_unspecified()
                || a.is_loopback()
                || s0 & 0xffc0 == 0xfe80
                || s0 & 0xffc0 == 0xfec0
                || s0 & 0xfe00 == 0xfc00
        }
    }
}

#[cfg(test)]
#[path = "answer_check_tests.rs"]
mod tests;
