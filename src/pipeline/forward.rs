//! `Forward`: the rest of the chain for a cache miss (upstream → answer checks → cache),
//! held as data rather than as a future, so that a listener may do the upstream exchange
//! its own way and hand the result to [`Forward::finish`].
//!
//! The UDP threads make a miss's first attempt from their own loop (see
//! [`super::upstream::Relay`]), which costs no task, no wake-up of another thread and no
//! system call of its own; every other listener, and every attempt after a first one that
//! failed, runs [`Upstream::forward`] (or [`Upstream::resume`]) on the tokio runtime. Both
//! end in the same `finish`: the answer checks, the cache and the outcome are one piece of
//! code whatever did the exchange. A background refresh (prefetch, a stale name's retry)
//! is a `Forward` too, ended by [`Forward::refresh`]: the same checks and store, no client.
//!
//! When every upstream failed, `finish` remembers the failure (`cache.failure_ttl_s`) and
//! answers from the cache if it can: an answer expired within `cache.serve_stale` is
//! served stale (TTL 30, EDE 3, RFC 8767) rather than SERVFAIL.

use std::net::SocketAddr;
use std::sync::Arc;

use super::upstream::{RECURSIVE, Upstream, UpstreamError};
use super::upstreams::Upstreams;
use super::{Action, Answer, Outcome, Pipeline, Policy, Reply, Request, RuleRef};
use crate::dns::wire::{EDE_NO_REACHABLE_AUTHORITY, Query, Response, Security, rcode};

/// The EDE text of a stale answer.
pub const STALE_TEXT: &str = "no upstream resolver answered; stale answer";
/// The EDE text of a SERVFAIL answered from the failure cache.
pub const CACHED_FAILURE_TEXT: &str = "cached failure: no upstream resolver answered";

/// A query that missed the cache, with the snapshot it started with.
pub struct Forward {
    pub(super) pipeline: Arc<Pipeline>,
    pub(super) req: Request<'static>,
    /// The policy snapshot (and so the group) the query started with.
    pub(super) policy: Arc<Policy>,
    /// The upstream sets the query started with: a reload does not move it.
    pub(super) upstreams: Arc<Upstreams>,
    /// The client's group, as an index into `policy.groups`.
    pub(super) group: Option<usize>,
    /// The group's name for the log.
    pub(super) group_name: Option<Arc<str>>,
    /// Blocking was paused when the query arrived.
    pub(super) paused: bool,
    /// The allow rule that let a listed name through.
    pub(super) rule: Option<RuleRef>,
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forward")
            .field("qname", &self.req.query.name_lossy())
            .finish_non_exhaustive()
    }
}

impl Forward {
    /// The pipeline the query runs in.
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// The query.
    pub fn query(&self) -> &Query {
        &self.req.query
    }

    /// When the query arrived: the exchange ends by [`Upstream::deadline`] of it.
    pub fn arrived(&self) -> tokio::time::Instant {
        self.req.arrived
    }

    /// The servers that answer this name (`[upstream]`, or a `[[forward]]` rule's).
    pub fn upstream(&self) -> &Upstream {
        self.upstreams.for_name(self.req.query.name())
    }

    /// Ends the chain with what the upstream exchange gave: the response bytes and the
    /// outcome.
    pub fn finish(self, got: Result<(Response, SocketAddr), UpstreamError>) -> (Vec<u8>, Outcome) {
        let Self {
            pipeline: me,
            req,
            policy,
            group,
            group_name,
            paused,
            rule,
            ..
        } = self;
        let mut out = Vec::with_capacity(512);
        let mut answer = match got {
            Ok((resp, server)) => {
                // 7. Answer checks: every upstream answer passes them before it is cached
                //    or sent: records outside the question's bailiwick are stripped; an
                //    answer holding a `response_ips` address, or a private address for a
                //    public name (rebinding), is answered as blocked and not cached.
                //    DNSSEC validation ran with the exchange (it needs more of it: keys and
                //    delegation signers): a validated answer carries what it found.
                let blocking = group
                    .and_then(|i| policy.groups.get(i))
                    .map_or(&policy.blocking, |g| &g.blocking);
                let checks = &policy.checks;
                match checks.check_with(&req, resp, blocking, me.details, !paused) {
                    Ok(resp) => {
                        let resp = Arc::new(resp);
                        // 8. Cache what passed, for the queries that follow: as it came,
                        //    whatever the CNAME check below decides, so that a list change
                        //    applies to it at once.
                        me.cache.store(&req, &resp);
                        // 7, last: a CNAME chain that reaches a blocked name.
                        let cname = if paused {
                            None
                        } else {
                            checks.cname(&req, &resp, blocking, me.details)
                        };
                        cname.unwrap_or_else(|| {
                            Answer::new(
                                Action::Allowed,
                                Reply::Upstream {
                                    resp,
                                    age: 0,
                                    server: Some(server),
                                    stale: false,
                                },
                            )
                        })
                    }
                    Err(replaced) => replaced,
                }
            }
            // 7. (DNSSEC) A bogus answer: SERVFAIL with the EDE that says why. Not a
            //    failure of the upstreams: nothing is remembered, nothing served stale (a
            //    forged answer must not look like an outage).
            Err(UpstreamError::Bogus(code, text)) => {
                tracing::debug!(qname = %req.query.name_lossy(), %text, "DNSSEC validation failed");
                Answer::new(
                    Action::Failed,
                    Reply::Error {
                        rcode: rcode::SERVFAIL,
                        ede: Some((code, text.into())),
                        dnssec: Some(Security::Bogus),
                    },
                )
            }
            Err(e) => {
                tracing::debug!(qname = %req.query.name_lossy(), error = %e, "all upstreams failed");
                // The failure happened now, not when the query arrived: its TTL counts
                // from here (on the request's clock, moved on by the time the exchange took).
                let failed_at = req.now.mono + req.arrived.elapsed();
                me.failures.record(&req, failed_at);
                match me.cache.after_failure(&req, failed_at) {
                    // Served from the cache, whose answers pass the CNAME check again.
                    Some(hit) => {
                        let a = hit.answer();
                        let blocking = group
                            .and_then(|i| policy.groups.get(i))
                            .map_or(&policy.blocking, |g| &g.blocking);
                        let blocked = if paused {
                            None
                        } else {
                            policy.checks.cached(&req, &a, blocking, me.details)
                        };
                        blocked.unwrap_or(a)
                    }
                    None => failed(
                        Action::Failed,
                        // Generic: upstream addresses are not the client's business.
                        match e {
                            UpstreamError::Recursion(_) => "resolution from the root failed",
                            UpstreamError::Timeout(RECURSIVE) => {
                                "resolution from the root timed out"
                            }
                            _ => "no upstream resolver answered",
                        },
                    ),
                }
            }
        };
        // The allow rule that let a listed name through, unless a check blocked it.
        if answer.rule.is_none() {
            answer.rule = rule;
        }
        let mut o = answer.write(&req, &mut out, me.details);
        o.group = group_name;
        (out, o)
    }

    /// Ends a background refresh: an answer that passes the checks replaces the cached
    /// one; a failure leaves it (a stale entry's next retry is a [`RECHECK`] away).
    ///
    /// [`RECHECK`]: super::cache::RECHECK
    pub fn refresh(self, got: Result<(Response, SocketAddr), UpstreamError>) {
        let Self {
            pipeline: me,
            req,
            policy,
            group,
            paused,
            ..
        } = self;
        match got {
            Ok((resp, _)) => {
                let blocking = group
                    .and_then(|i| policy.groups.get(i))
                    .map_or(&policy.blocking, |g| &g.blocking);
                if let Ok(resp) = policy
                    .checks
                    .check_with(&req, resp, blocking, false, !paused)
                {
                    me.cache.store(&req, &Arc::new(resp));
                }
            }
            Err(e) => {
                tracing::debug!(qname = %req.query.name_lossy(), error = %e, "background refresh failed");
            }
        }
    }
}

/// SERVFAIL with EDE 22 (No Reachable Authority) and `text`.
pub(super) fn failed(action: Action, text: &'static str) -> Answer {
    Answer::new(
        action,
        Reply::Error {
            rcode: rcode::SERVFAIL,
            ede: Some((EDE_NO_REACHABLE_AUTHORITY, text.into())),
            dnssec: None,
        },
    )
}
