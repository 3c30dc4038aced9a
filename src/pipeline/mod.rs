//! The request pipeline: one chain of small stages, each a type in its own file that looks
//! at a [`Request`] and answers it or lets the next stage decide ([`Flow`]).
//!
//! The chain is written out once, in order, in [`Pipeline::resolve`], with the reason for
//! each place. Every stage before the upstream is synchronous and does no I/O, so the UDP
//! hot path answers blocked and cached names inline, without touching the async runtime;
//! only a miss becomes a [`Forward`] (upstream → answer checks → cache), which the listener
//! finishes once an upstream has answered. Stages read time only from the request (`req.now`), and what a decision reads
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
pub mod ddr;
pub mod failures;
pub mod flow;
pub mod forward;
pub mod groups;
pub mod limits;
pub mod local;
pub mod local_time;
pub mod pause;
pub mod policy;
pub mod refresh;
pub mod request;
pub mod upstream;
pub mod upstreams;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use arc_swap::ArcSwap;

use crate::blocklist::{Blocklist, Kind, Match, RuleAt};
use crate::config::Config;
use crate::counters::Counters;
use crate::dns::wire::Response;
use any::AnyQuery;
use blocking::Verdict;
use cache::Cache;
use ddr::Ddr;
use failures::Failures;
pub use flow::{Answer, Flow, Local, Reply};
pub use forward::Forward;
use limits::{LimitState, RrlKey};
use pause::Pause;
pub use policy::Policy;
use refresh::Refresher;
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
    /// Every upstream failed, and an expired cached answer was served (RFC 8767).
    Stale,
    /// SERVFAIL at once: every upstream failed for the name moments ago (RFC 9520).
    FailedCached,
    /// Rejected before the pipeline (FORMERR, NOTIMP, BADVERS).
    Rejected,
}

/// Where the rule that decided a query is: the query log names it even when a reload has
/// swapped the list since, by reading it from the same immutable snapshot (off the query
/// path, in the log writer). Only made when the pipeline keeps details.
#[derive(Debug, Clone)]
pub enum RuleRef {
    /// A list rule: the list snapshot that decided, and where the rule is in it.
    List(Arc<Blocklist>, RuleAt),
    /// A rule the server adds itself (a bypass signal, `rebinding`): logged with the list
    /// `builtin`.
    Builtin(&'static str),
    /// A list rule that blocks a name of the answer's CNAME chain: the rule is looked up
    /// for that name, which the log shows as `cname`.
    Cname {
        /// The list snapshot that decided.
        list: Arc<Blocklist>,
        /// The blocked name of the chain, as query names are written.
        target: Box<[u8]>,
    },
    /// A rule written in the config or in a file it names (a `blocking.response_ips`
    /// entry): its text and where it is written.
    Written(Arc<WrittenRule>),
    /// A local record (`list` is its `file:line`) or a private reverse zone (`builtin`).
    Local(Arc<local::Prepared>),
}

/// A rule written in the config or in a file it names, as the query log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenRule {
    /// The rule's text (`203.0.113.0/24`).
    pub rule: Box<str>,
    /// The file it is written in.
    pub source: Box<str>,
    /// Its 1-based line there.
    pub line: u32,
}

impl RuleRef {
    fn list(list: &Arc<Blocklist>, at: RuleAt) -> Self {
        Self::List(Arc::clone(list), at)
    }

    /// The rule that decided `qname` (the query's lower-case name). A builtin rule has an
    /// empty `source`.
    pub fn get<'a>(&'a self, qname: &'a str) -> Option<Match<'a>> {
        match self {
            Self::List(list, at) => list.rule_at(*at, qname),
            Self::Builtin(rule) => Some(Match {
                kind: Kind::Block,
                rule,
                source: "",
                line: 0,
                source_id: crate::blocklist::NO_SOURCE,
                at: RuleAt::Unlisted,
            }),
            Self::Cname { list, target } => list.find(target),
            Self::Written(w) => Some(Match {
                kind: Kind::Block,
                rule: &w.rule,
                source: &w.source,
                line: w.line,
                source_id: crate::blocklist::NO_SOURCE,
                at: RuleAt::Unlisted,
            }),
            Self::Local(p) => {
                let (source, line) = p.source();
                Some(Match {
                    kind: Kind::Allow,
                    rule: p.rule(),
                    source,
                    line,
                    source_id: crate::blocklist::NO_SOURCE,
                    at: RuleAt::Unlisted,
                })
            }
        }
    }

    /// The CNAME target that was blocked instead of the query name, for the log.
    pub fn cname(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            Self::Cname { target, .. } => Some(String::from_utf8_lossy(target)),
            _ => None,
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
    /// The client group whose policy decided (details only); `None` for the default policy.
    pub group: Option<Arc<str>>,
    /// Counted but not logged: a query refused during a rate-limit ban, an answer that
    /// response-rate limiting dropped or truncated.
    pub quiet: bool,
    /// What DNSSEC validation found for the answer; `None` when it was not validated
    /// (validation off, a local answer, a client's CD).
    pub dnssec: Option<crate::dns::wire::Security>,
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
            group: None,
            quiet: false,
            dnssec: None,
        }
    }
}

/// What [`Pipeline::resolve`] did with a query.
pub enum Resolution {
    /// Answered at once: the response is in the caller's buffer.
    Done(Outcome),
    /// Goes upstream: do the exchange (on the runtime, or a UDP thread's relay) and
    /// [`Forward::finish`] it; dropping it costs nothing but the query's answer.
    Forward(Box<Forward>),
}

/// The chain of stages, shared by every listener.
pub struct Pipeline {
    policy: ArcSwap<Policy>,
    any: AnyQuery,
    /// DDR toward our own encrypted listeners (they change only with a restart).
    ddr: Ddr,
    cache: Cache,
    /// Names every upstream failed for, briefly (`cache.failure_ttl_s`).
    failures: Failures,
    /// Background refreshes: prefetches and stale names' retries.
    refresher: Refresher,
    limits: LimitState,
    /// True when the current policy has RRL on: one relaxed load on every query instead of
    /// a second policy load.
    rrl_on: AtomicBool,
    upstream: ArcSwap<Upstreams>,
    counters: Arc<Counters>,
    details: bool,
    /// Blocking paused for everyone until a deadline (`sinkhole pause`).
    pause: Pause,
}

impl Pipeline {
    /// Builds the pipeline from config and an already loaded policy; `counters` are the
    /// service's.
    pub fn new(cfg: &Config, mut policy: Policy, counters: Arc<Counters>) -> Self {
        policy.count_blocks(&counters);
        Self {
            rrl_on: AtomicBool::new(policy.limits.rrl_on()),
            policy: ArcSwap::from_pointee(policy),
            any: AnyQuery,
            ddr: Ddr::new(&cfg.server),
            cache: {
                let c = Cache::new(cfg.cache.max_entries, cfg.cache.max_bytes);
                c.set_resilience(cfg.cache.serve_stale, cfg.cache.prefetch);
                c
            },
            failures: Failures::new(cfg.cache.failure_ttl),
            refresher: Refresher::new(tokio::runtime::Handle::try_current().ok()),
            limits: LimitState::new(cfg.limits.max_clients),
            upstream: ArcSwap::from_pointee(Upstreams::new(cfg, &counters)),
            counters,
            details: cfg.log.is_some(),
            pause: Pause::default(),
        }
    }

    /// The chain for one query. Blocked, local and cached answers are written into `out`
    /// at once ([`Resolution::Done`]); a miss comes back as a [`Forward`], the rest of the
    /// chain, to finish once an upstream has answered. Never panics on any query; every
    /// path ends in a response.
    pub fn resolve(self: &Arc<Self>, req: &Request<'_>, out: &mut Vec<u8>) -> Resolution {
        // One policy snapshot for the whole query: a reload in the middle cannot mix two.
        let policy = self.policy.load();

        // 1. Access: who may ask, first, so that a refused client learns nothing, not even
        //    whether a name is blocked or cached.
        if let Flow::Answer(a) = policy.access.check(req) {
            return Resolution::Done(a.write(req, out, self.details));
        }

        // 1b. Rate limits: after access, so that a stranger costs no table entry; before
        //     everything that answers, so that a client over its rate (or banned) costs no
        //     more than a refused stranger. Exempt clients and `limits.qps = 0` skip it.
        if let Some(r) = policy.limits.check(&self.limits, req, &self.counters) {
            let mut o = r.answer.write(req, out, self.details);
            // Refused during a ban: counted, not logged (see `limits`).
            o.quiet = r.quiet;
            return Resolution::Done(o);
        }

        // 2. Local answers: names the network answers itself (local records, split
        //    horizon) are never blocked, cached or forwarded; reverse names of private
        //    ranges that no local record or `[[forward]]` rule covers get NXDOMAIN here,
        //    so that they never reach `[upstream]`. Before blocking: a local name is the
        //    admin's own, whatever a list says.
        if let Flow::Answer(a) = policy.local.check(req, self.details) {
            return Resolution::Done(a.write(req, out, self.details));
        }

        // 2b. DDR (RFC 9462): with encrypted listeners, `_dns.resolver.arpa` SVCB names
        //     our own endpoints, so that clients upgrade to a channel that is still
        //     filtered. Before blocking, whose bypass signal answers it NODATA otherwise.
        if let Flow::Answer(a) = self.ddr.check(req, self.details) {
            return Resolution::Done(a.write(req, out, self.details));
        }

        // The client's group, if any: the first in file order whose clients include this
        // one (by address, or by MAC address through the neighbour table) and whose
        // schedule is active. It decides which lists apply and how a block is answered;
        // the log names it.
        let group = policy.groups.select(req.client.ip(), &req.now);
        let blocking = group.map_or(&policy.blocking, |g| &g.blocking);
        let index = group.map(|g| g.index);
        // The group's name for the log: one reference count per query, taken where the
        // outcome is made.
        let group_name = || group.filter(|_| self.details).map(|g| Arc::clone(&g.name));
        let done = |a: Answer, out: &mut Vec<u8>| {
            let mut o = a.write(req, out, self.details);
            o.group = group_name();
            Resolution::Done(o)
        };

        // 3. Blocking: the bypass signals, then the lists. Before the cache, so that a list
        //    change applies at once and the cache only ever holds upstream answers. When
        //    the name passes, the log names the allow rule, if any, that let it through (it
        //    looks the name up again in this snapshot, off the query path). While blocking
        //    is paused (one relaxed load when it is not), only the signals are answered, and
        //    the CNAME and response-IP checks below are skipped too.
        let paused = self.pause.active(&req.now);
        let verdict = if paused {
            blocking.signals(req, self.details)
        } else {
            blocking.check(req, self.details)
        };
        let rule = match verdict {
            Verdict::Blocked(a) => return done(a, out),
            Verdict::Pass(rule) => rule,
        };

        // 4. ANY (RFC 8482): after blocking, so a blocked name stays blocked whatever the
        //    type; before the cache, since nothing upstream is asked.
        if let Flow::Answer(a) = self.any.check(req) {
            return done(a, out);
        }

        // 5. Cache: answers already fetched, TTLs counted down to `req.now`. The cache
        //    holds upstream answers as they came, so the CNAME check of step 7 runs again
        //    with this client's lists, for answers that have a chain (one emptiness check
        //    for the others).
        //    A hit late in its TTL (prefetch), or a stale answer whose recheck timer ran
        //    out, also starts one background refresh (see `refresh`): this client is
        //    answered from the cache at once.
        let (flow, refresh) = self.cache.check(req);
        if refresh {
            let f = self.forward(req, Arc::clone(&policy), index, None, paused, None);
            self.refresher.start(f);
        }
        if let Flow::Answer(mut a) = flow {
            self.counters.cache_hit();
            if !paused && let Some(b) = policy.checks.cached(req, &a, blocking, self.details) {
                return done(b, out);
            }
            a.rule = rule;
            return done(a, out);
        }
        self.counters.cache_miss();

        // 5b. Failures (RFC 9520): every upstream failed for this question moments ago, so
        //     SERVFAIL at once rather than another full timeout. A stale answer, when the
        //     cache still has one, wins over the failure. One atomic load while no failure
        //     is remembered.
        if self.failures.check(req) {
            let a = match self.cache.after_failure(req, req.now.mono) {
                Some(hit) => {
                    let a = hit.answer();
                    let checked = (!paused)
                        .then(|| policy.checks.cached(req, &a, blocking, self.details))
                        .flatten();
                    checked.unwrap_or(a)
                }
                None => forward::failed(Action::FailedCached, forward::CACHED_FAILURE_TEXT),
            };
            return done(a, out);
        }

        // 6. Upstream: the only stage that waits, so the rest of the chain is data
        //    ([`Forward`]) that the listener finishes once the upstream has answered.
        //    Names under a `[[forward]]` domain go to that rule's servers only, the rest to
        //    `[upstream]`. Queries that start after a reload use the new servers; this one
        //    keeps the set it started with, and the policy snapshot (and group) too.
        let name = group_name();
        let policy = arc_swap::Guard::into_inner(policy);
        Resolution::Forward(self.forward(req, policy, index, name, paused, rule))
    }

    /// The rest of the chain for `req`, as data (see [`Forward`]).
    fn forward(
        self: &Arc<Self>,
        req: &Request<'_>,
        policy: Arc<Policy>,
        group: Option<usize>,
        group_name: Option<Arc<str>>,
        paused: bool,
        rule: Option<RuleRef>,
    ) -> Box<Forward> {
        Box::new(Forward {
            pipeline: Arc::clone(self),
            req: req.clone().into_owned(),
            group,
            group_name,
            policy,
            upstreams: self.upstream.load_full(),
            paused,
            rule,
        })
    }

    /// The pipeline with background refreshes (prefetch, stale retries) running on `rt`.
    pub fn with_runtime(mut self, rt: tokio::runtime::Handle) -> Self {
        self.refresher = Refresher::new(Some(rt));
        self
    }

    /// The pipeline with `ddr` as its DDR stage: the service builds it from the encrypted
    /// listeners it actually bound (their ports known once bound).
    pub fn with_ddr(mut self, ddr: Ddr) -> Self {
        self.ddr = ddr;
        self
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
    pub fn swap_policy(&self, mut p: Policy) -> Arc<Policy> {
        p.count_blocks(&self.counters);
        self.rrl_on.store(p.limits.rrl_on(), Relaxed);
        self.policy.swap(Arc::new(p))
    }

    /// The current policy snapshot.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Applies a reloaded `[upstream]`, `[[forward]]` and `[cache]`: queries that start from
    /// now on use the new servers, timeouts and TTL bounds; the cache keeps what fits its
    /// new bounds. Remembered failures are forgotten: the new servers may answer.
    pub fn apply(&self, cfg: &Config) {
        let prev = self.upstream.load_full();
        self.upstream
            .store(Arc::new(Upstreams::renew(cfg, &self.counters, Some(&prev))));
        self.cache
            .resize(cfg.cache.max_entries, cfg.cache.max_bytes);
        self.cache
            .set_resilience(cfg.cache.serve_stale, cfg.cache.prefetch);
        self.failures.set_ttl(std::time::Duration::ZERO);
        self.failures.set_ttl(cfg.cache.failure_ttl);
    }

    /// What response-rate limiting needs to judge the answer to `req` (taken before it is
    /// made), or `None` when RRL does not apply to it: see [`limits`].
    pub fn rrl_key(&self, req: &Request<'_>) -> Option<RrlKey> {
        if !self.rrl_on.load(Relaxed) || req.transport != Transport::Udp {
            return None;
        }
        self.policy.load().limits.rrl_key(&self.limits, req)
    }

    /// Response-rate limiting of an answer about to be sent over UDP: leaves it, empties
    /// `out` (drop) or truncates it (slip); dropped and truncated answers are `quiet`.
    pub fn rrl(&self, key: &RrlKey, o: &mut Outcome, out: &mut Vec<u8>) {
        self.limits.rrl(key, o, out, &self.counters);
    }

    /// The rate limits' state (tables of clients and answers).
    pub fn limit_state(&self) -> &LimitState {
        &self.limits
    }

    /// The pause of blocking (`sinkhole pause`, the HTTP API).
    pub fn pause(&self) -> &Pause {
        &self.pause
    }

    /// The answer cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The failure cache (RFC 9520).
    pub fn failures(&self) -> &Failures {
        &self.failures
    }

    /// Background refreshes (prefetch, stale retries).
    pub fn refresher(&self) -> &Refresher {
        &self.refresher
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
