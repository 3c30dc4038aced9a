//! The request pipeline: a short chain of stages, each owning one concern.
//!
//! `blocking` → `cache` → `upstream`, written out in [`Pipeline::resolve`] with the reason
//! for each step. The first two never do I/O, so the UDP hot path answers blocked and
//! cached names inline ([`Pipeline::resolve_local`]) and hands only misses to the async
//! forwarder ([`Pipeline::resolve_upstream`]). ANY queries are answered locally
//! (RFC 8482), after blocking and before the cache.

pub mod blocking;
pub mod cache;
pub mod upstream;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::blocklist::{Blocklist, Kind, Match};
use crate::config::Config;
use crate::dns::wire::{self, EDE_NO_REACHABLE_AUTHORITY, Query, Response, rcode};
use blocking::Blocking;
use cache::Cache;
use upstream::Upstream;

/// TTL of the HINFO answer to ANY (unbound's choice).
pub const ANY_TTL: u32 = 3600;

/// What happened to a query; read by logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Forwarded and answered by an upstream.
    Allowed,
    /// Answered from the cache.
    Cached,
    /// Answered locally because a list blocks the name.
    Blocked,
    /// Answered by the server itself without a list (ANY, RFC 8482).
    Local,
    /// Every upstream failed; SERVFAIL.
    Failed,
    /// Rejected before the pipeline (FORMERR, NOTIMP, BADVERS).
    Rejected,
}

/// The [`Blocklist`] snapshot that decided a query: the query log names the deciding rule
/// even when a reload has swapped the list since, by looking the name up again in the same
/// immutable snapshot (off the query path, in the log writer). Only made when the pipeline
/// keeps details.
#[derive(Debug, Clone)]
pub enum RuleRef {
    /// A list rule: the list snapshot that decided.
    List(Arc<Blocklist>),
    /// A rule the server adds itself (a bypass signal): logged with the list `builtin`.
    Builtin(&'static str),
}

impl RuleRef {
    fn list(list: &Arc<Blocklist>) -> Self {
        Self::List(Arc::clone(list))
    }

    /// The rule that decided `qname` (the query's lower-case name). A builtin rule has an
    /// empty `source`.
    pub fn get(&self, qname: &str) -> Option<Match<'_>> {
        match self {
            Self::List(list) => list.find(qname.as_bytes()),
            Self::Builtin(rule) => Some(Match {
                kind: Kind::Block,
                rule,
                source: "",
                line: 0,
            }),
        }
    }
}

/// What was answered, for the query log. Empty unless the pipeline keeps details.
#[derive(Debug, Clone, Default)]
pub enum Detail {
    /// Nothing kept.
    #[default]
    None,
    /// A locally written answer (blocked): the address in it, if any.
    Local(Option<IpAddr>),
    /// An upstream answer, fresh or from the cache.
    Response(Arc<Response>),
    /// An upstream answer too large for the client's UDP limit: the client was sent a
    /// truncated reply (TC, no records), so the log shows no answers.
    Truncated,
}

/// The detail of an upstream answer as sent: the answer, or only the fact that the client
/// got a truncated reply.
fn sent(resp: Arc<Response>, truncated: bool) -> Detail {
    if truncated {
        Detail::Truncated
    } else {
        Detail::Response(resp)
    }
}

/// The result of resolving one query: the response bytes are in the caller's buffer.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What was done.
    pub action: Action,
    /// The response code sent.
    pub rcode: u16,
    /// The upstream that answered, for `Allowed`.
    pub upstream: Option<SocketAddr>,
    /// Where the deciding rule is looked up (details only): the block rule of a blocked
    /// query, or the allow rule that let a listed name through. The log shows a rule only
    /// when its kind agrees with `action`.
    pub rule: Option<RuleRef>,
    /// The answer (details only).
    pub detail: Detail,
}

impl Outcome {
    /// An outcome without details.
    pub fn new(action: Action, rcode: u16, upstream: Option<SocketAddr>) -> Self {
        Self {
            action,
            rcode,
            upstream,
            rule: None,
            detail: Detail::None,
        }
    }
}

/// The chain of stages, shared by every listener.
pub struct Pipeline {
    blocking: ArcSwap<Blocking>,
    cache: Cache,
    upstream: Upstream,
    details: bool,
}

impl Pipeline {
    /// Builds the pipeline from config and an already loaded blocking stage.
    pub fn new(cfg: &Config, blocking: Blocking) -> Self {
        Self {
            blocking: ArcSwap::from_pointee(blocking),
            cache: Cache::new(cfg.cache.max_entries, cfg.cache.max_bytes),
            upstream: Upstream::new(&cfg.upstream, &cfg.cache),
            details: cfg.log.is_some(),
        }
    }

    /// True when outcomes carry the rule and answer (the query log is on). When false,
    /// nothing is allocated or reference-counted per query for logging.
    pub fn details(&self) -> bool {
        self.details
    }

    /// Swaps in a new blocking stage (a reload) and returns the old one, so that the caller
    /// can free it off the query path. Queries in flight finish with the old one.
    pub fn swap_blocking(&self, b: Blocking) -> Arc<Blocking> {
        self.blocking.swap(Arc::new(b))
    }

    /// The current blocking stage.
    pub fn blocking(&self) -> Arc<Blocking> {
        self.blocking.load_full()
    }

    /// The answer cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Reads the list lines that [`Pipeline::resolve_local`] of each query will look at;
    /// see [`Blocklist::prefetch`].
    pub fn prefetch<'q>(
        &self,
        qs: impl IntoIterator<Item = &'q Query>,
        hashes: &mut Vec<u64>,
    ) -> u64 {
        let blocking = self.blocking.load();
        blocking
            .list()
            .prefetch(qs.into_iter().map(Query::name), hashes)
    }

    /// Answers `q` without I/O when possible: blocked, or cached. `None` means forward.
    pub fn resolve_local(&self, q: &Query, out: &mut Vec<u8>, limit: usize) -> Option<Outcome> {
        // Blocking before the cache: a list change applies at once, and the cache only
        // ever holds upstream answers.
        let blocking = self.blocking.load();
        // Bypass signals first: they are answers the network must give (Firefox's canary,
        // Private Relay, DDR), whatever the lists say.
        let text = if q.edns.is_some() {
            "blocked by builtin resolver-bypass signal"
        } else {
            ""
        };
        if let Some((rule, a)) = blocking.bypass(q, text) {
            let truncated = wire::write_local_within(out, q, &a, limit);
            let mut o = Outcome::new(Action::Blocked, a.rcode, None);
            if self.details {
                o.rule = Some(RuleRef::Builtin(rule));
                o.detail = if truncated {
                    Detail::Truncated
                } else {
                    Detail::Local(None)
                };
            }
            return Some(o);
        }
        let found = blocking.list().find(q.name());
        if let Some(m) = found.filter(|m| m.kind == Kind::Block) {
            let text = if q.edns.is_some() {
                blocking::ede_text(&m)
            } else {
                String::new()
            };
            let a = blocking.answer(q, &m, &text);
            let truncated = wire::write_local_within(out, q, &a, limit);
            let mut o = Outcome::new(Action::Blocked, a.rcode, None);
            if self.details {
                o.rule = Some(RuleRef::list(blocking.list()));
                o.detail = if truncated {
                    Detail::Truncated
                } else {
                    Detail::Local(a.address)
                };
            }
            return Some(o);
        }
        // ANY after blocking (a blocked name stays blocked) and before the cache: RFC 8482
        // §4.2, one small HINFO instead of everything an upstream holds for the name.
        if q.qtype == wire::TYPE_ANY {
            wire::write_answer(out, q, wire::TYPE_HINFO, ANY_TTL, wire::RFC8482_HINFO);
            let mut o = Outcome::new(Action::Local, rcode::NOERROR, None);
            if self.details {
                o.detail = Detail::Local(None);
            }
            return Some(o);
        }
        let mut key = [0u8; 262];
        let key = q.cache_key(&mut key);
        let (resp, age) = self.cache.get(key, Instant::now())?;
        let truncated = resp.write(out, q, age, limit);
        let mut o = Outcome::new(Action::Cached, resp.rcode(), None);
        if self.details {
            o.rule = found.map(|_| RuleRef::list(blocking.list()));
            o.detail = sent(resp, truncated);
        }
        Some(o)
    }

    /// For a forwarded query (details only): the list snapshot in which the log writer looks
    /// up the allow rule, if any, that let a listed name through. The lookup is the
    /// writer's, off the query path.
    fn allow_snapshot(&self) -> Option<RuleRef> {
        self.details
            .then(|| RuleRef::list(self.blocking.load().list()))
    }

    /// Forwards `q` upstream, caches the answer, and writes the response (SERVFAIL when
    /// every upstream failed, by the deadline).
    pub async fn resolve_upstream(
        &self,
        q: &Query,
        arrived: tokio::time::Instant,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Outcome {
        match self.upstream.forward(q, arrived).await {
            Ok((resp, server)) => {
                let truncated = resp.write(out, q, 0, limit);
                let rc = resp.rcode();
                let mut key = [0u8; 262];
                let resp = Arc::new(resp);
                self.cache.put(q.cache_key(&mut key), &resp, Instant::now());
                let mut o = Outcome::new(Action::Allowed, rc, Some(server));
                if self.details {
                    o.rule = self.allow_snapshot();
                    o.detail = sent(resp, truncated);
                }
                o
            }
            Err(e) => {
                tracing::debug!(qname = %q.name_lossy(), error = %e, "all upstreams failed");
                // The EDE text stays generic: upstream addresses are not the client's business.
                wire::write_error(
                    out,
                    q.id,
                    q.flags,
                    Some(q),
                    rcode::SERVFAIL,
                    Some((EDE_NO_REACHABLE_AUTHORITY, "no upstream resolver answered")),
                );
                let mut o = Outcome::new(Action::Failed, rcode::SERVFAIL, None);
                o.rule = self.allow_snapshot();
                o
            }
        }
    }

    /// The whole chain for one query, as one async call (the TCP path and tests use it).
    pub async fn resolve(&self, q: &Query, out: &mut Vec<u8>, limit: usize) -> Outcome {
        let arrived = tokio::time::Instant::now();
        if let Some(o) = self.resolve_local(q, out, limit) {
            return o;
        }
        self.resolve_upstream(q, arrived, out, limit).await
    }
}
