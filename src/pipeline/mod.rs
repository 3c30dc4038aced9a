//! The request pipeline: one chain of small stages, each a type in its own file that looks
//! at a [`Request`] and answers it or lets the next stage decide ([`Flow`]).
//!
//! The chain is written out once, in order, in [`Pipeline::resolve`], with the reason for
//! each place. Every stage before the upstream is synchronous and does no I/O, so the UDP
//! hot path answers blocked and cached names inline, without touching the async runtime;
//! only a miss becomes a future (upstream → answer checks → cache), which the listener runs
//! on tokio. Stages read time only from the request (`req.now`), and what a decision reads
//! from the config from one [`Policy`] snapshot, swapped whole by a reload.

// Stages read what clients and upstreams sent: no panicking shortcuts (see `dns::wire`).
#![warn(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod access;
pub mod answer_check;
pub mod any;
pub mod blocking;
pub mod cache;
pub mod flow;
pub mod local;
pub mod policy;
pub mod request;
pub mod upstream;
pub mod upstreams;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::blocklist::{Blocklist, Kind, Match};
use crate::config::Config;
use crate::counters::Counters;
use crate::dns::wire::{EDE_NO_REACHABLE_AUTHORITY, Response, rcode};
use answer_check::AnswerCheck;
use any::AnyQuery;
use cache::Cache;
pub use flow::{Answer, Flow, Local, Reply};
pub use policy::Policy;
pub use request::{Clock, Now, Request, Transport};
use upstreams::Upstreams;

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
    /// A local record (`list` is its `file:line`) or a private reverse zone (`builtin`).
    Local(Arc<local::Prepared>),
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
            Self::Local(p) => {
                let (source, line) = p.source();
                Some(Match {
                    kind: Kind::Allow,
                    rule: p.rule(),
                    source,
                    line,
                })
            }
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
    /// A local record's answer.
    Records(Arc<local::Prepared>),
    /// An upstream answer too large for the client's UDP limit: the client was sent a
    /// truncated reply (TC, no records), so the log shows no answers.
    Truncated,
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

/// What [`Pipeline::resolve`] did with a query.
pub enum Resolution {
    /// Answered at once: the response is in the caller's buffer.
    Done(Outcome),
    /// Goes upstream: the future yields the response bytes and the outcome. Run it on the
    /// tokio runtime; dropping it unpolled costs nothing but the query's answer.
    Forward(Pin<Box<dyn Future<Output = (Vec<u8>, Outcome)> + Send>>),
}

/// The chain of stages, shared by every listener.
pub struct Pipeline {
    policy: ArcSwap<Policy>,
    any: AnyQuery,
    cache: Cache,
    upstream: ArcSwap<Upstreams>,
    checks: AnswerCheck,
    counters: Arc<Counters>,
    details: bool,
}

impl Pipeline {
    /// Builds the pipeline from config and an already loaded policy; `counters` are the
    /// service's.
    pub fn new(cfg: &Config, policy: Policy, counters: Arc<Counters>) -> Self {
        Self {
            policy: ArcSwap::from_pointee(policy),
            any: AnyQuery,
            cache: Cache::new(cfg.cache.max_entries, cfg.cache.max_bytes),
            upstream: ArcSwap::from_pointee(Upstreams::new(cfg, &counters)),
            checks: AnswerCheck,
            counters,
            details: cfg.log.is_some(),
        }
    }

    /// The chain for one query. Blocked, local and cached answers are written into `out`
    /// at once ([`Resolution::Done`]); a miss comes back as a future that asks the
    /// upstream. Never panics on any query; every path ends in a response.
    pub fn resolve(self: &Arc<Self>, req: &Request<'_>, out: &mut Vec<u8>) -> Resolution {
        // One policy snapshot for the whole query: a reload in the middle cannot mix two.
        let policy = self.policy.load();

        // 1. Access: who may ask, first, so that a refused client learns nothing, not even
        //    whether a name is blocked or cached.
        if let Flow::Answer(a) = policy.access.check(req) {
            return Resolution::Done(a.write(req, out, self.details));
        }

        // 2. Local answers: names the network answers itself (local records, split
        //    horizon) are never blocked, cached or forwarded; reverse names of private
        //    ranges that no local record or `[[forward]]` rule covers get NXDOMAIN here,
        //    so that they never reach `[upstream]`. Before blocking: a local name is the
        //    admin's own, whatever a list says.
        if let Flow::Answer(a) = policy.local.check(req, self.details) {
            return Resolution::Done(a.write(req, out, self.details));
        }

        // 3. Blocking: the bypass signals, then the lists. Before the cache, so that a list
        //    change applies at once and the cache only ever holds upstream answers.
        if let Flow::Answer(a) = policy.blocking.check(req, self.details) {
            return Resolution::Done(a.write(req, out, self.details));
        }

        // 4. ANY (RFC 8482): after blocking, so a blocked name stays blocked whatever the
        //    type; before the cache, since nothing upstream is asked.
        if let Flow::Answer(a) = self.any.check(req) {
            return Resolution::Done(a.write(req, out, self.details));
        }

        // The log names the allow rule, if any, that let a listed name through; it looks
        // the name up again in this snapshot, off the query path.
        let listed = || self.details.then(|| RuleRef::list(policy.blocking.list()));

        // 5. Cache: answers already fetched, TTLs counted down to `req.now`.
        if let Flow::Answer(mut a) = self.cache.check(req) {
            self.counters.cache_hit();
            a.rule = listed();
            return Resolution::Done(a.write(req, out, self.details));
        }
        self.counters.cache_miss();

        // 6. Upstream: the only stage that waits, so the rest of the chain is a future.
        //    Names under a `[[forward]]` domain go to that rule's servers only, the rest to
        //    `[upstream]`. Queries that start after a reload use the new servers; this one
        //    keeps the set it started with.
        let (me, req, rule) = (Arc::clone(self), req.clone().into_owned(), listed());
        let upstream = self.upstream.load_full();
        Resolution::Forward(Box::pin(async move {
            let mut out = Vec::with_capacity(512);
            let servers = upstream.for_name(req.query.name());
            let mut answer = match servers.forward(&req.query, req.arrived).await {
                Ok((resp, server)) => {
                    // 7. Answer checks: every upstream answer passes them before it is
                    //    cached or sent (records outside the question's bailiwick are
                    //    stripped; CNAME and response-IP blocking, rebinding protection
                    //    and DNSSEC validation belong here too).
                    match me.checks.check(&req, resp) {
                        Ok(resp) => {
                            let resp = Arc::new(resp);
                            // 8. Cache what passed, for the queries that follow.
                            me.cache.store(&req, &resp);
                            Answer::new(
                                Action::Allowed,
                                Reply::Upstream {
                                    resp,
                                    age: 0,
                                    server: Some(server),
                                },
                            )
                        }
                        Err(refused) => refused,
                    }
                }
                Err(e) => {
                    tracing::debug!(qname = %req.query.name_lossy(), error = %e, "all upstreams failed");
                    Answer::new(
                        Action::Failed,
                        Reply::Error {
                            rcode: rcode::SERVFAIL,
                            // Generic: upstream addresses are not the client's business.
                            ede: Some((
                                EDE_NO_REACHABLE_AUTHORITY,
                                "no upstream resolver answered",
                            )),
                        },
                    )
                }
            };
            answer.rule = rule;
            let o = answer.write(&req, &mut out, me.details);
            (out, o)
        }))
    }

    /// True when outcomes carry the rule and answer (the query log is on). When false,
    /// nothing is allocated or reference-counted per query for logging.
    pub fn details(&self) -> bool {
        self.details
    }

    /// The service's counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Swaps in a new policy snapshot (a reload) and returns the old one, so that the
    /// caller can free it off the query path. Queries in flight finish with the old one.
    pub fn swap_policy(&self, p: Policy) -> Arc<Policy> {
        self.policy.swap(Arc::new(p))
    }

    /// The current policy snapshot.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Applies a reloaded `[upstream]`, `[[forward]]` and `[cache]`: queries that start from
    /// now on use the new servers, timeouts and TTL bounds; the cache keeps what fits its
    /// new bounds.
    pub fn apply(&self, cfg: &Config) {
        self.upstream
            .store(Arc::new(Upstreams::new(cfg, &self.counters)));
        self.cache
            .resize(cfg.cache.max_entries, cfg.cache.max_bytes);
    }

    /// The answer cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Reads the list lines that the blocking stage will look at for each name; see
    /// [`Blocklist::prefetch`].
    pub fn prefetch<'q>(
        &self,
        names: impl IntoIterator<Item = &'q [u8]>,
        hashes: &mut Vec<u64>,
    ) -> u64 {
        self.policy.load().blocking.list().prefetch(names, hashes)
    }
}
