//! The request pipeline: a short chain of stages, each owning one concern.
//!
//! `blocking` → `cache` → `upstream`, written out in [`Pipeline::resolve`] with the reason
//! for each step. The first two never do I/O, so the UDP hot path answers blocked and
//! cached names inline ([`Pipeline::resolve_local`]) and hands only misses to the async
//! forwarder ([`Pipeline::resolve_upstream`]).

pub mod blocking;
pub mod cache;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::dns::wire::{self, EDE_NO_REACHABLE_AUTHORITY, Query, rcode};
use blocking::Blocking;
use cache::Cache;
use upstream::Upstream;

/// What happened to a query; read by logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Forwarded and answered by an upstream.
    Allowed,
    /// Answered from the cache.
    Cached,
    /// Answered locally because a list blocks the name.
    Blocked,
    /// Every upstream failed; SERVFAIL.
    Failed,
    /// Rejected before the pipeline (FORMERR, NOTIMP, BADVERS).
    Rejected,
}

/// The result of resolving one query: the response bytes are in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// What was done.
    pub action: Action,
    /// The response code sent.
    pub rcode: u16,
    /// The upstream that answered, for `Allowed`.
    pub upstream: Option<SocketAddr>,
}

/// The chain of stages, shared by every listener.
pub struct Pipeline {
    blocking: ArcSwap<Blocking>,
    cache: Cache,
    upstream: Upstream,
}

impl Pipeline {
    /// Builds the pipeline from config and an already loaded blocking stage.
    pub fn new(cfg: &Config, blocking: Blocking) -> Self {
        Self {
            blocking: ArcSwap::from_pointee(blocking),
            cache: Cache::new(cfg.cache.max_entries),
            upstream: Upstream::new(&cfg.upstream, &cfg.cache),
        }
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

    /// Answers `q` without I/O when possible: blocked, or cached. `None` means forward.
    pub fn resolve_local(&self, q: &Query, out: &mut Vec<u8>, limit: usize) -> Option<Outcome> {
        // Blocking before the cache: a list change applies at once, and the cache only
        // ever holds upstream answers.
        let blocking = self.blocking.load();
        if let Some(m) = blocking.check(q) {
            let text = if q.edns.is_some() {
                blocking::ede_text(&m)
            } else {
                String::new()
            };
            let a = blocking.answer(q, &m, &text);
            wire::write_local(out, q, &a);
            return Some(Outcome {
                action: Action::Blocked,
                rcode: a.rcode,
                upstream: None,
            });
        }
        let mut key = [0u8; 262];
        let key = q.cache_key(&mut key);
        let (resp, age) = self.cache.get(key, Instant::now())?;
        resp.write(out, q, age, limit);
        Some(Outcome {
            action: Action::Cached,
            rcode: resp.rcode(),
            upstream: None,
        })
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
                resp.write(out, q, 0, limit);
                let rc = resp.rcode();
                let mut key = [0u8; 262];
                self.cache
                    .put(q.cache_key(&mut key), &Arc::new(resp), Instant::now());
                Outcome {
                    action: Action::Allowed,
                    rcode: rc,
                    upstream: Some(server),
                }
            }
            Err(e) => {
                tracing::debug!(qname = %q.name_lossy(), error = %e, "all upstreams failed");
                let text = e.to_string();
                wire::write_error(
                    out,
                    q.id,
                    q.flags,
                    Some(q),
                    rcode::SERVFAIL,
                    Some((EDE_NO_REACHABLE_AUTHORITY, &text)),
                );
                Outcome {
                    action: Action::Failed,
                    rcode: rcode::SERVFAIL,
                    upstream: None,
                }
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
