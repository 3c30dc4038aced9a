//! `Upstream`: forwards a query to the configured resolvers in order, over UDP from a shared,
//! bounded pool of sockets per server, retrying over TCP when the answer is truncated.
//!
//! Each attempt waits at most `timeout`; a timeout, a transport error, a broken answer,
//! SERVFAIL or REFUSED moves on to the next server. The whole exchange ends by
//! `arrived + timeout × servers`, so the client always hears back in time. This is the only
//! network I/O on the query path.
//!
//! Two ways in, one protocol. A UDP listener thread makes the first attempt of its misses
//! itself, from its own loop ([`Relay`]: a few sockets per server per thread, batched sends
//! and receives, no task), and hands anything after a failed first attempt to
//! [`Upstream::resume`]; every other caller runs [`Upstream::forward`] on the runtime,
//! through the shared pool. Both go on from the same per-server steps, so failover,
//! deadlines, TCP on TC and cookies behave the same whichever did the first attempt.
//!
//! File descriptors stay bounded whatever the load: a flood of queries to a slow domain used
//! to cost one socket each until the process ran out, failing everyone's forwards. Now UDP
//! queries share at most 64 sockets per server in the pool (`pool::SOCKETS`) and 4 per
//! server per UDP thread in the relays, matched to their answers by ID and question (the
//! `pool` module explains how source ports keep changing, RFC 5452), and the TCP fallback,
//! which keeps a connection per query, is limited to [`MAX_TCP`] at once.
//!
//! DNS cookies (RFC 7873): every query carries our client cookie for that server (random per
//! server and process) and the server cookie it last gave us. An answer must echo our client
//! cookie; once a server has shown it does cookies, an answer without one is dropped as a
//! forgery (if such answers are all a query gets, the server is taken to have stopped doing
//! cookies and is trusted without them again). BADCOOKIE is retried once with the fresh
//! server cookie, then over TCP. Servers that do not do cookies just never echo one.
//!
//! Encrypted servers (`tls://`, `https://` entries; see `encrypted`) take their place in
//! the same ordered list: an attempt at one is one exchange on a kept, shared connection,
//! bounded by the same per-attempt end and counted the same way, without cookies. A UDP
//! thread makes the first attempt of a miss whose first server is encrypted itself too,
//! on connections of its own ([`Near`]: a single-threaded runtime the thread drives while
//! it waits), and hands what follows a failed one to [`Upstream::resume`] as the relay does.
//!
//! In recursive mode (`upstream.mode = "recursive"`) the set has no servers but a
//! [`Recursive`] resolver: relays decline its misses (they have no first server), and
//! [`Upstream::forward`] resolves them from the root, by `arrived +
//! upstream.recursion_timeout_ms`: on the runtime, or (a UDP thread's misses) whole on the
//! thread's own [`Near`] runtime with the resolver's twin.

mod cookie;
pub mod dnssec;
mod encrypted;
pub mod known_keys;
pub mod nsec;
mod pool;
pub mod recursive;
mod relay;
pub mod validate;

pub use encrypted::near::Near;
pub use recursive::{RECURSIVE, Recursive};
pub use relay::{Relay, Relayed, Settled};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};

use crate::config::{CacheConfig, UpstreamConfig, UpstreamServer};
use crate::counters::{Counters, UpstreamStats};
use crate::dns::wire::{
    CookieOption, Query, RCODE_BADCOOKIE, Response, ResponseError, UpstreamOpt, rcode,
    response_cookie, write_upstream_query_cookie,
};
use crate::fdlimit;
use cookie::Jar;
use pool::{Expect, Pool, Received};

/// Most TCP connections to upstreams at once (truncated answers only).
pub const MAX_TCP: usize = 64;

/// Why no usable answer came back.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// The server did not answer in time.
    #[error("{0}: timed out")]
    Timeout(SocketAddr),
    /// Socket error talking to the server.
    #[error("{0}: {1}")]
    Transport(SocketAddr, String),
    /// The answer was not a well-formed DNS message.
    #[error("{0}: malformed answer")]
    Malformed(SocketAddr),
    /// The server answered SERVFAIL or REFUSED (or BADCOOKIE over TCP).
    #[error("{0}: answered {1}")]
    Rcode(SocketAddr, &'static str),
    /// Recursion from the root failed (no server answered, a limit was reached, a CNAME
    /// loop).
    #[error("recursion: {0}")]
    Recursion(String),
    /// DNSSEC validation found the answer bogus: the Extended DNS Error (code, text) the
    /// client gets with SERVFAIL.
    #[error("{1}")]
    Bogus(u16, String),
}

/// How a forward goes on after a first UDP attempt made by a [`Relay`].
#[derive(Debug)]
pub struct Resume {
    /// The index of the server the attempt went to.
    server: usize,
    /// When the attempt began, and when it must end.
    started: Instant,
    end: Instant,
    then: Then,
}

/// The server of an error that has none.
const UNSPECIFIED: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

/// What follows the relay's attempt.
#[derive(Debug)]
enum Then {
    /// The server failed with this error: the next one.
    Next(UpstreamError),
    /// The same server, from this step (TCP after TC, UDP again after BADCOOKIE).
    Again(Step),
    /// The server answered (this message) a query to validate that could not be proven at
    /// once: the validator takes it from there.
    Validate(Box<[u8]>),
}

/// Where an attempt at one server begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Udp,
    /// UDP once more, having had BADCOOKIE once.
    UdpAfterBadCookie,
    Tcp,
    /// The encrypted server's own connection (a UDP thread's broke before the answer).
    Link,
}

/// One upstream server: its address, socket pool, cookies and counters; `link` for an
/// encrypted one (its pool and jar then stay unused).
#[derive(Debug)]
struct Server {
    addr: SocketAddr,
    pool: Pool,
    jar: Jar,
    stats: Arc<UpstreamStats>,
    link: Option<encrypted::Link>,
}

/// The forwarding stage.
#[derive(Debug, Clone)]
pub struct Upstream {
    servers: Arc<[Server]>,
    /// Recursive mode: resolves from the root instead (`servers` is empty).
    recursive: Option<Arc<Recursive>>,
    /// Forward mode with `upstream.dnssec = "validate"`: checks the servers' answers.
    validator: Option<Arc<validate::Validator>>,
    tcp_slots: Arc<Semaphore>,
    timeout: Duration,
    min_ttl: u32,
    max_ttl: u32,
}

impl Upstream {
    /// Builds the stage from config. Opens nothing: sockets come with the first queries.
    /// Each server counts into `counters` (the same counters across reloads).
    pub fn new(cfg: &UpstreamConfig, cache: &CacheConfig, counters: &Counters) -> Self {
        Self::renew(cfg, cache, counters, None)
    }

    /// As [`Upstream::new`], keeping `prev`'s recursive resolver (and its cache of
    /// delegations) when the recursion config and TTL bounds are unchanged.
    pub fn renew(
        cfg: &UpstreamConfig,
        cache: &CacheConfig,
        counters: &Counters,
        prev: Option<&Self>,
    ) -> Self {
        if let Some(rc) = &cfg.recursive {
            let kept = prev
                .and_then(|p| p.recursive.as_ref())
                .filter(|r| {
                    &r.cfg == rc
                        && r.dnssec == cfg.dnssec
                        && r.settings() == (cfg.timeout, cache.min_ttl, cache.max_ttl)
                })
                .cloned();
            let recursive = kept.or_else(|| {
                Recursive::new(
                    rc,
                    cfg.dnssec.as_ref(),
                    cfg.timeout,
                    cache.min_ttl,
                    cache.max_ttl,
                )
                .inspect_err(|e| tracing::error!(error = %e, "queries will fail"))
                .ok()
                .map(Arc::new)
            });
            return Self {
                servers: Arc::from([]),
                recursive,
                validator: None,
                tcp_slots: Arc::new(Semaphore::new(MAX_TCP)),
                timeout: rc.timeout,
                min_ttl: cache.min_ttl,
                max_ttl: cache.max_ttl,
            };
        }
        let clients = cfg
            .servers
            .iter()
            .any(UpstreamServer::is_encrypted)
            .then(|| {
                encrypted::Clients::new(cfg.tls_ca.as_ref())
                    .inspect_err(|e| tracing::error!(error = %e, "cannot set up TLS for the encrypted upstreams; they will fail"))
                    .ok()
            })
            .flatten();
        let plain = Self {
            servers: cfg
                .servers
                .iter()
                .map(|s| Server {
                    addr: s.addr,
                    pool: Pool::new(s.addr),
                    jar: Jar::new(),
                    stats: counters.upstream(s.addr),
                    link: encrypted::Link::new(s, clients.as_ref()),
                })
                .collect(),
            recursive: None,
            validator: None,
            tcp_slots: Arc::new(Semaphore::new(MAX_TCP)),
            timeout: cfg.timeout,
            min_ttl: cache.min_ttl,
            max_ttl: cache.max_ttl,
        };
        match &cfg.dnssec {
            None => plain,
            Some(d) => Self {
                validator: Some(Arc::new(validate::Validator::new(plain.clone(), d))),
                ..plain
            },
        }
    }

    /// The servers, in the order they are tried.
    pub fn servers(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|s| s.addr).collect()
    }

    /// True in recursive mode.
    pub fn is_recursive(&self) -> bool {
        self.recursive.is_some()
    }

    /// The recursive resolver, in recursive mode.
    pub fn recursive(&self) -> Option<&Arc<Recursive>> {
        self.recursive.as_ref()
    }

    /// The latest time a query that arrived at `arrived` can be answered: `timeout` per
    /// server when forwarding, `upstream.recursion_timeout_ms` in all when recursive.
    pub fn deadline(&self, arrived: Instant) -> Instant {
        if self.recursive.is_some() {
            return arrived + self.timeout;
        }
        arrived + self.timeout * u32::try_from(self.servers.len()).unwrap_or(u32::MAX)
    }

    /// Forwards `q`; returns the first usable answer and who gave it, or the last error.
    pub async fn forward(
        &self,
        q: &Query,
        arrived: Instant,
    ) -> Result<(Response, SocketAddr), UpstreamError> {
        if let Some(r) = &self.recursive {
            let got = r.resolve(q, self.deadline(arrived)).await;
            return got.map(|resp| (resp, RECURSIVE));
        }
        // DNSSEC: validated here unless the client's CD asks for the answer as it is. The
        // validation's future (hickory's validator inside) is boxed: inline, it would be
        // copied into and within every forwarding task, validated or not.
        if let Some(v) = &self.validator
            && !q.cd()
        {
            return Box::pin(v.resolve(q, arrived, self.deadline(arrived))).await;
        }
        self.forward_plain(q, arrived).await
    }

    /// [`Upstream::forward`] without validation (the validator's own way to the servers).
    async fn forward_plain(
        &self,
        q: &Query,
        arrived: Instant,
    ) -> Result<(Response, SocketAddr), UpstreamError> {
        let Some(first) = self.servers.first() else {
            return Err(UpstreamError::Transport(
                UNSPECIFIED,
                "no upstream configured".into(),
            ));
        };
        let last = UpstreamError::Timeout(first.addr);
        self.forward_from(q, self.deadline(arrived), 0, None, last)
            .await
    }

    /// [`Upstream::forward_plain`] going on after a first attempt made elsewhere (`r`), as
    /// [`Upstream::resume`] does for an answer not validated here.
    async fn resume_plain(
        &self,
        q: &Query,
        arrived: Instant,
        r: Resume,
    ) -> Result<(Response, SocketAddr), UpstreamError> {
        let deadline = self.deadline(arrived);
        match r.then {
            Then::Next(last) => {
                self.forward_from(q, deadline, r.server + 1, None, last)
                    .await
            }
            Then::Again(step) => {
                let last = UpstreamError::Timeout(
                    self.servers.get(r.server).map_or(UNSPECIFIED, |s| s.addr),
                );
                let resumed = Some((step, r.started, r.end));
                self.forward_from(q, deadline, r.server, resumed, last)
                    .await
            }
            // Made only for a query validated here (see `resume`).
            Then::Validate(_) => Err(UpstreamError::Malformed(UNSPECIFIED)),
        }
    }

    /// True when `q`'s answer is validated here (`upstream.dnssec = "validate"` in forward
    /// mode, and no CD from the client).
    fn validates(&self, q: &Query) -> bool {
        self.validator.is_some() && !q.cd()
    }

    /// The answer `pkt` of the first server (at `server`) to `q`, validated at once from
    /// zone keys already proven ([`validate::Validator::quick`], spending `budget`
    /// verifications at most), or `None` when that takes more (the runtime's validator
    /// then).
    fn quick_validation(
        &self,
        q: &Query,
        pkt: &[u8],
        server: SocketAddr,
        budget: &mut usize,
    ) -> Option<Response> {
        self.validator.as_ref()?.quick(q, pkt, server, budget)
    }

    /// Goes on with a forward whose first UDP attempt was made elsewhere (a UDP thread's
    /// [`Relay`]), as [`Upstream::forward`] would have after that attempt.
    pub async fn resume(
        &self,
        q: &Query,
        arrived: Instant,
        r: Resume,
    ) -> Result<(Response, SocketAddr), UpstreamError> {
        if self.recursive.is_some() {
            // Never made: relays decline recursive misses. The whole resolution then.
            return self.forward(q, arrived).await;
        }
        // A validated forward whose first exchange the relay made: its answer validated
        // by the validator proper, or, when the first server gave none that can be, the
        // validator's question going on from there as a plain forward would (the next
        // server, TCP after TC), then validated.
        if let Some(v) = self.validator.as_ref().filter(|_| !q.cd()) {
            let deadline = self.deadline(arrived);
            if let Then::Validate(pkt) = r.then {
                let server = self.servers.get(r.server).map_or(UNSPECIFIED, |s| s.addr);
                return Box::pin(v.resolve_answer(q, &pkt, server, deadline)).await;
            }
            return Box::pin(v.resolve_resumed(q, arrived, deadline, r)).await;
        }
        self.resume_plain(q, arrived, r).await
    }

    /// The servers from index `from` in order, until one answers usably or `deadline`.
    /// `resumed`: the first of them goes on with an attempt already begun (its step, when it
    /// began, when it ends); `last`: the error to return if no server is tried.
    async fn forward_from(
        &self,
        q: &Query,
        deadline: Instant,
        from: usize,
        mut resumed: Option<(Step, Instant, Instant)>,
        mut last: UpstreamError,
    ) -> Result<(Response, SocketAddr), UpstreamError> {
        for server in self.servers.iter().skip(from) {
            let (began, got) = match resumed.take() {
                Some((step, began, end)) => (began, self.attempt(server, q, end, step).await),
                None => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    let end = (now + self.timeout).min(deadline);
                    server.stats.sent();
                    let got = match &server.link {
                        Some(link) => self.encrypted(server, link, q, end).await,
                        None => self.attempt(server, q, end, Step::Udp).await,
                    };
                    (now, got)
                }
            };
            match got {
                Ok(r) if matches!(r.rcode(), rcode::SERVFAIL | rcode::REFUSED) => {
                    server.stats.error();
                    last = UpstreamError::Rcode(server.addr, rcode::name(r.rcode()));
                }
                Ok(r) => {
                    server.stats.answered(began.elapsed());
                    return Ok((r, server.addr));
                }
                Err(e) => {
                    server.stats.error();
                    last = e;
                }
            }
            tracing::debug!(qname = %q.name_lossy(), upstream = %server.addr, error = %last, "upstream attempt failed");
        }
        Err(last)
    }

    /// One server, from `step` on: UDP, BADCOOKIE retried once with the new server cookie,
    /// TCP on TC.
    async fn attempt(
        &self,
        server: &Server,
        q: &Query,
        end: Instant,
        step: Step,
    ) -> Result<Response, UpstreamError> {
        let mut retried = match step {
            Step::Link => {
                return match &server.link {
                    Some(link) => self.encrypted(server, link, q, end).await,
                    None => Err(UpstreamError::Timeout(server.addr)),
                };
            }
            Step::Tcp => return self.tcp(server, q, end).await,
            Step::Udp => false,
            Step::UdpAfterBadCookie => true,
        };
        loop {
            let (got, id) = self.udp(server, q, end).await?;
            if got.opt.is_some_and(|o| o.rcode == RCODE_BADCOOKIE) {
                tracing::debug!(upstream = %server.addr, "BADCOOKIE; retrying with the new server cookie");
                if retried {
                    return self.tcp(server, q, end).await;
                }
                retried = true;
                continue;
            }
            return match Response::parse(&got.pkt, q, id, self.min_ttl, self.max_ttl) {
                Ok(r) => Ok(r),
                Err(ResponseError::Truncated) => self.tcp(server, q, end).await,
                // Mismatch cannot happen (the pool matched ID and question).
                Err(ResponseError::Malformed | ResponseError::Mismatch) => {
                    Err(UpstreamError::Malformed(server.addr))
                }
            };
        }
    }

    /// One exchange with an encrypted server (no cookies: RFC 7873 §9 lets a client omit
    /// them over TLS).
    async fn encrypted(
        &self,
        server: &Server,
        link: &encrypted::Link,
        q: &Query,
        end: Instant,
    ) -> Result<Response, UpstreamError> {
        let (buf, id) = link.exchange(q, end).await?;
        // TC over TLS or HTTPS has no larger transport to go to: a broken answer.
        Response::parse(&buf, q, id, self.min_ttl, self.max_ttl)
            .map_err(|_| UpstreamError::Malformed(server.addr))
    }

    /// True when a miss is one exchange with a server (no DNSSEC validation, which needs
    /// more): the only kind [`Near`] attempts (a [`Relay`] also takes validated misses to
    /// a plain first server, see [`Upstream::validates`]).
    fn one_exchange(&self) -> bool {
        self.validator.is_none()
    }

    /// One UDP exchange through the pool; learns the server cookie from the answer.
    async fn udp(
        &self,
        server: &Server,
        q: &Query,
        end: Instant,
    ) -> Result<(Received, u16), UpstreamError> {
        let transport = |e: std::io::Error| UpstreamError::Transport(server.addr, e.to_string());
        let (client, server_cookie) = server.jar.get();
        let mut question = Vec::with_capacity(q.question_len());
        question.extend(q.wire_name().iter().map(u8::to_ascii_lowercase));
        question.extend_from_slice(&q.qtype.to_be_bytes());
        question.extend_from_slice(&q.qclass.to_be_bytes());
        let mut ticket = server
            .pool
            .register(Expect {
                question: question.into_boxed_slice(),
                cookie: Some(client),
                strict: server_cookie.is_some(),
            })
            .map_err(transport)?;
        let mut msg = Vec::with_capacity(64 + q.question_len());
        let id = ticket.id();
        write_upstream_query_cookie(
            &mut msg,
            q,
            id,
            &client,
            server_cookie.as_ref().map(|c| c.server()),
        );
        ticket.send(&msg).await.map_err(transport)?;
        let answer = timeout_at(end, ticket.answer()).await;
        match answer {
            Err(_) => {
                if ticket.abandon() {
                    tracing::debug!(upstream = %server.addr, "answers came without a cookie; trusting the server without one");
                    server.jar.forget();
                }
                Err(UpstreamError::Timeout(server.addr))
            }
            Ok(r) => {
                let got = r.map_err(transport)?;
                if let Some(CookieOption::Present(c)) = got.opt.map(|o| o.cookie) {
                    server.jar.learn(&c);
                }
                Ok((got, id))
            }
        }
    }

    /// One TCP exchange on a connection of its own (at most [`MAX_TCP`] at once).
    async fn tcp(
        &self,
        server: &Server,
        q: &Query,
        end: Instant,
    ) -> Result<Response, UpstreamError> {
        let Ok(Ok(_slot)) = timeout_at(end, self.tcp_slots.acquire()).await else {
            return Err(UpstreamError::Timeout(server.addr));
        };
        let id: u16 = rand::random();
        let (client, server_cookie) = server.jar.get();
        let mut body = Vec::with_capacity(64 + q.question_len());
        write_upstream_query_cookie(
            &mut body,
            q,
            id,
            &client,
            server_cookie.as_ref().map(|c| c.server()),
        );
        let mut msg = Vec::with_capacity(2 + body.len());
        msg.extend_from_slice(&u16::try_from(body.len()).unwrap_or(0).to_be_bytes());
        msg.extend_from_slice(&body);
        let exchange = async {
            let mut s = TcpStream::connect(server.addr).await.inspect_err(|e| {
                fdlimit::warn_if_exhausted("connecting to an upstream over TCP", e);
            })?;
            s.write_all(&msg).await?;
            let len = s.read_u16().await?;
            let mut buf = vec![0u8; usize::from(len)];
            s.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let buf = match timeout_at(end, exchange).await {
            Err(_) => return Err(UpstreamError::Timeout(server.addr)),
            Ok(r) => r.map_err(|e| UpstreamError::Transport(server.addr, e.to_string()))?,
        };
        // TCP is not open to off-path forgery: the cookie is learned, not checked.
        match response_cookie(&buf) {
            Some(o) if o.rcode == RCODE_BADCOOKIE => {
                return Err(UpstreamError::Rcode(server.addr, "BADCOOKIE"));
            }
            // `learn` keeps it only if it echoes our client cookie.
            Some(UpstreamOpt {
                cookie: CookieOption::Present(c),
                ..
            }) => server.jar.learn(&c),
            _ => {}
        }
        Response::parse(&buf, q, id, self.min_ttl, self.max_ttl)
            .map_err(|_| UpstreamError::Malformed(server.addr))
    }
}
