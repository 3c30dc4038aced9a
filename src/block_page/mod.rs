//! The block page: a tiny HTTP/1 server on the addresses of `http.block_page_listen`
//! (typically the sinkhole address, port 80). A browser sent there by a blocked name's
//! answer gets a page saying that the site was blocked by the network's policy, naming the
//! host and the rule and list that blocked it; other clients get the same as plain text.
//! The verdict is looked up in the current policy snapshot ([`Pipeline::policy`]) for the
//! client's group, exactly as the DNS path decides ([`page`]).
//!
//! Built on hyper directly (not axum): one handler for every path and method, and the
//! connection limits below are settings of hyper's HTTP/1 connection builder, which
//! `axum::serve` does not expose. What one client can cost is bounded: headers of at most
//! [`MAX_HEADER_BYTES`] (past it hyper answers 431) and [`MAX_HEADERS`] lines, read within
//! [`HEADER_TIMEOUT`]; one request per connection, all of it done within
//! [`CONNECTION_DEADLINE`]; no request body is read; at most [`MAX_PER_CLIENT`]
//! connections per client address and [`MAX_CONNECTIONS`] in all (past either, a new one
//! is closed at once). The server runs on the service's tokio runtime; DNS over UDP has
//! threads of its own, and nothing here holds a lock the DNS path takes (the policy is an
//! `ArcSwap` load).
//!
//! HTTPS cannot be answered without a certificate error, so port 443 is left alone: with
//! nothing listening there the kernel answers a connection with a TCP reset at once, and
//! browsers fail fast (see "Block page" in docs/config.md).

// Reads what any LAN client sends: no panicking shortcuts (see `dns::wire`).
#![warn(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod page;

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::pipeline::{Clock, Pipeline};
use crate::server::next_connection;
use crate::server::slots::ClientSlots;
use page::{Format, Outcome, Target};

/// Most bytes of a request's line and headers (hyper answers 431 past it).
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Most header lines of a request.
pub const MAX_HEADERS: usize = 32;
/// Longest wait for a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one connection (request read, page written).
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// Most connections open at once from one client address.
pub const MAX_PER_CLIENT: usize = 16;
/// Most connections open at once in all.
pub const MAX_CONNECTIONS: usize = 256;

/// Binds a TCP listener for each address (IPv6 sockets take IPv6 only).
pub fn bind(addrs: &[SocketAddr]) -> std::io::Result<Vec<StdListener>> {
    addrs
        .iter()
        .map(|&addr| {
            let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            if addr.is_ipv6() {
                s.set_only_v6(true)?;
            }
            s.set_reuse_address(true)?;
            s.bind(&addr.into())?;
            s.listen(128)?;
            s.set_nonblocking(true)?;
            Ok(s.into())
        })
        .collect()
}

/// What every request reads.
struct Shared {
    pipeline: Arc<Pipeline>,
    clock: Clock,
}

/// The running block page; stopped by [`BlockPage::shutdown`] (or dropped).
#[derive(Debug)]
pub struct BlockPage {
    addrs: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl BlockPage {
    /// Serves the block page on already bound `listeners` (see [`bind`]), from the policy
    /// of `pipeline` at the time of `clock`. Call within the runtime `rt`.
    pub fn start(
        listeners: Vec<StdListener>,
        pipeline: Arc<Pipeline>,
        clock: Clock,
        rt: &tokio::runtime::Handle,
    ) -> std::io::Result<Self> {
        let _g = rt.enter();
        let shared = Arc::new(Shared { pipeline, clock });
        let slots = ClientSlots::new(MAX_PER_CLIENT, MAX_CONNECTIONS);
        let mut addrs = Vec::with_capacity(listeners.len());
        let mut tasks = Vec::with_capacity(listeners.len());
        for l in listeners {
            l.set_nonblocking(true)?;
            let l = TcpListener::from_std(l)?;
            addrs.push(l.local_addr()?);
            tasks.push(rt.spawn(serve(l, Arc::clone(&shared), Arc::clone(&slots))));
        }
        if !addrs.is_empty() {
            tracing::info!(listen = ?addrs, "serving the block page over HTTP");
        }
        Ok(Self { addrs, tasks })
    }

    /// The addresses served (port 0 resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Stops accepting and closes every open connection.
    pub fn shutdown(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for BlockPage {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Accepts connections until the task is aborted; aborting it drops the connections too.
async fn serve(listener: TcpListener, shared: Arc<Shared>, slots: Arc<ClientSlots>) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(false);
    let http = Arc::new(http);
    let mut conns = JoinSet::new();
    let mut warned = crate::server::RateLimit::default();
    loop {
        // Reap finished connections, so the set holds only open ones.
        while conns.try_join_next().is_some() {}
        let (stream, peer) = next_connection(&listener, &mut warned, "block page:").await;
        // Over a limit: closed at once (dropping the stream).
        let Ok(slot) = slots.try_take(peer.ip()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (shared, http) = (Arc::clone(&shared), Arc::clone(&http));
        conns.spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let resp = respond(&shared, peer, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = http.serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, conn).await;
        });
    }
}

/// The page for one request (its body is never read).
fn respond(shared: &Shared, peer: SocketAddr, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let headers = req.headers();
    let format = page::format(headers.get(header::ACCEPT).map(HeaderValue::as_bytes));
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(h), None) => page::host(Some(h.as_bytes())),
        // Two Host headers: RFC 9112 §3.2 says 400.
        (Some(_), Some(_)) => Err(page::HostError::Invalid),
        // HTTP/1.0 without Host: the request line's authority, if any.
        (None, _) => page::host(req.uri().authority().map(|a| a.as_str().as_bytes())),
    };
    let outcome = match host {
        Err(e) => Outcome::BadHost(e),
        Ok(Target::Address(ip)) => Outcome::Address(ip),
        Ok(Target::Name(name)) => {
            let policy = shared.pipeline.policy();
            let client = peer.ip().to_canonical();
            let v = page::verdict(&policy, client, &name, &shared.clock.now());
            Outcome::Name(name, v)
        }
    };
    let p = page::render(&outcome, format, shared.pipeline.details());
    tracing::debug!(client = %peer.ip(), status = p.status, ?outcome, "block page");
    let mut resp = Response::new(Full::new(Bytes::from(p.body)));
    *resp.status_mut() = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(p.content_type),
    );
    // Never cached: the verdict changes with the lists.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    // Defence in depth behind the escaping: no script, no external resource, no sniffing.
    crate::http::security_headers(
        h,
        Some("default-src 'none'; style-src 'unsafe-inline'"),
        format == Format::Html,
    );
    resp
}
