//! DNS over HTTPS (RFC 8484), one HTTP request at a time: `/dns-query` with `GET ?dns=`
//! (the DNS message in base64url, RFC 8484 §4.1; padding tolerated) or `POST` with
//! `Content-Type: application/dns-message`, answered through the same [`Handler`] as every
//! other listener (transport `https`), as `application/dns-message` with
//! `Cache-Control: max-age=` the answer's smallest TTL (§5.1).
//!
//! What is not a DNS question gets an HTTP status and a line of text (`no-store`): 404 for
//! another path, 405 for another method, 415 for another content type, 400 for a missing,
//! empty or undecodable message (shorter than a DNS header), 413 for a body over
//! [`MAX_BODY`], 408 for a body not received within the idle timeout, 503 when a
//! connection's streams together hold [`CONN_BODY_BUDGET`] bytes of bodies. A DNS message
//! that parses badly gets its DNS answer (FORMERR) with 200, as on the wire. A query that
//! access control drops gets no answer either: the stream is reset (HTTP/2) or the
//! connection closed (HTTP/1.1).
//!
//! The connection it runs on (TLS, HTTP/1.1 or HTTP/2, limits) is `https.rs`'s.
//!
//! [`Handler`]: crate::handler::Handler

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body as _, Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Duration, Instant, timeout_at};

use super::faults::PanicWatch;
use super::tcp;
use crate::dns::wire;
use crate::handler::{Arrival, Handled};
use crate::pipeline::Transport;

/// The path of the service (RFC 8484's example, and what clients are told).
pub const PATH: &str = "/dns-query";
/// The media type of a DNS message (RFC 8484 §6).
pub(super) const DNS_MESSAGE: &str = "application/dns-message";
/// Largest request body: the largest DNS message (65,535 bytes).
pub const MAX_BODY: usize = wire::MAX_MESSAGE;
/// Request bodies one connection's streams may hold at once, bytes.
pub const CONN_BODY_BUDGET: usize = 256 << 10;

/// An HTTP answer.
pub(super) type Reply = Response<Full<Bytes>>;

/// The query was dropped (access control's `drop`): no HTTP answer, hyper resets the
/// stream (HTTP/2) or closes the connection (HTTP/1.1).
#[derive(Debug, thiserror::Error)]
#[error("query dropped: no answer")]
pub(super) struct Dropped;

/// One connection's state: who it is, what it may buffer, and when it was last busy.
pub(super) struct Conn {
    peer: SocketAddr,
    shared: Arc<tcp::Shared>,
    /// Bytes of request bodies held now, at most [`CONN_BODY_BUDGET`].
    budget: Arc<Semaphore>,
    /// Requests being answered now.
    active: AtomicUsize,
    /// When the last request started or ended (or the connection was set up).
    last: Mutex<Instant>,
}

/// A request being answered: counted in `active` until dropped.
struct Busy<'a>(&'a Conn);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Conn {
    /// A fresh connection from `peer`, idle from now.
    pub(super) fn new(peer: SocketAddr, shared: Arc<tcp::Shared>) -> Self {
        Self {
            peer,
            shared,
            budget: Arc::new(Semaphore::new(CONN_BODY_BUDGET)),
            active: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        }
    }

    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// When the connection has been idle for `idle` (no request being answered); `None`
    /// while a request is (each is bounded by its own deadlines).
    pub(super) fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        if self.active.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(*self.last.lock().unwrap_or_else(|p| p.into_inner()) + idle)
    }

    /// Answers one request.
    pub(super) async fn answer(self: Arc<Self>, req: Request<Incoming>) -> Result<Reply, Dropped> {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.touch();
        let _busy = Busy(&self);
        let deadline = Instant::now() + self.shared.idle();
        let (head, mut body) = req.into_parts();
        match self.read(&head, &mut body, deadline).await {
            // The permit holds the body's bytes against the budget until answered.
            Ok((msg, _permit)) => self.resolve(&msg).await,
            Err(reply) => {
                // What the client is still sending is read first (bounded), so that it
                // reads the status rather than a reset stream (curl, for one, reports
                // only the reset).
                drain(&mut body, deadline).await;
                Ok(reply)
            }
        }
    }

    /// The DNS message of a request, or the HTTP error to answer instead.
    async fn read(
        &self,
        req: &hyper::http::request::Parts,
        body: &mut Incoming,
        deadline: Instant,
    ) -> Result<(Vec<u8>, Option<OwnedSemaphorePermit>), Reply> {
        if req.uri.path() != PATH {
            return Err(error(
                StatusCode::NOT_FOUND,
                "not found: DNS over HTTPS is served at /dns-query",
            ));
        }
        let (msg, permit) = match req.method {
            Method::GET => {
                let msg = dns_param(req.uri.query().unwrap_or(""))
                    .map_err(|why| error(StatusCode::BAD_REQUEST, why))?;
                (msg, None)
            }
            Method::POST => {
                let ct = req.headers.get(header::CONTENT_TYPE);
                if !ct.is_some_and(is_dns_message) {
                    return Err(error(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "POST a DNS message with Content-Type: application/dns-message",
                    ));
                }
                let (msg, permit) = self.body(body, deadline).await?;
                (msg, Some(permit))
            }
            _ => {
                let mut r = error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "use GET /dns-query?dns=… or POST /dns-query",
                );
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
                return Err(r);
            }
        };
        if msg.len() < wire::HEADER_LEN {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "the DNS message is empty or shorter than a DNS header",
            ));
        }
        Ok((msg, permit))
    }

    /// Reads a POST body of at most [`MAX_BODY`] bytes within the idle timeout, holding
    /// its bytes against the connection's budget.
    async fn body(
        &self,
        body: &mut Incoming,
        deadline: Instant,
    ) -> Result<(Vec<u8>, OwnedSemaphorePermit), Reply> {
        let too_large = || {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body is larger than a DNS message (65535 bytes)",
            )
        };
        // A declared length over the limit is refused before anything is kept.
        if body.size_hint().lower() > MAX_BODY as u64 {
            return Err(too_large());
        }
        let mut buf = Vec::new();
        let mut held = Arc::clone(&self.budget)
            .try_acquire_many_owned(0)
            .map_err(|_| busy())?;
        loop {
            let frame = match timeout_at(deadline, body.frame()).await {
                Err(_) => {
                    return Err(error(
                        StatusCode::REQUEST_TIMEOUT,
                        "the request body did not arrive in time",
                    ));
                }
                Ok(None) => return Ok((buf, held)),
                Ok(Some(Err(e))) => {
                    tracing::debug!(client = %self.peer, error = %e, "https request body failed");
                    return Err(error(StatusCode::BAD_REQUEST, "the body could not be read"));
                }
                Ok(Some(Ok(f))) => f,
            };
            // Trailers carry nothing for us.
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if buf.len() + data.len() > MAX_BODY {
                return Err(too_large());
            }
            let n = u32::try_from(data.len()).map_err(|_| too_large())?;
            let more = Arc::clone(&self.budget)
                .try_acquire_many_owned(n)
                .map_err(|_| busy())?;
            held.merge(more);
            buf.extend_from_slice(&data);
        }
    }

    /// Answers a DNS message through the handler; logs the query.
    async fn resolve(&self, msg: &[u8]) -> Result<Reply, Dropped> {
        let shared = &self.shared;
        let how = Arrival {
            client: self.peer,
            transport: Transport::Https,
            arrived: Instant::now(),
            now: shared.clock.now(),
        };
        let mut out = Vec::with_capacity(512);
        let handled = std::panic::catch_unwind(AssertUnwindSafe(|| {
            shared.handler.handle_packet(msg, how, &mut out)
        }));
        let (out, record) = match handled {
            Ok(Handled::Reply(record)) => (out, record),
            Ok(Handled::Drop(record)) => (Vec::new(), record),
            Ok(Handled::Pending(p)) => {
                let _watch = PanicWatch {
                    what: "an https forward",
                    client: self.peer,
                    faults: Arc::clone(&shared.faults),
                };
                p.run().await
            }
            Err(p) => {
                shared
                    .faults
                    .panicked("an https query", Some(self.peer), &*p);
                return Ok(error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the server's log",
                ));
            }
        };
        let reply = (!out.is_empty()).then(|| dns_reply(out));
        // Logged once the answer is handed to HTTP (access control's drops too).
        if let (Some(log), Some(r)) = (&shared.log, record) {
            log.record(r);
        }
        reply.ok_or(Dropped)
    }
}

/// Reads and discards what is left of a refused request's body, at most [`DRAIN_BYTES`],
/// until `deadline`.
async fn drain(body: &mut Incoming, deadline: Instant) {
    let mut left = DRAIN_BYTES;
    while let Ok(Some(Ok(f))) = timeout_at(deadline, body.frame()).await {
        let n = f.data_ref().map_or(0, Bytes::len);
        if n >= left {
            return;
        }
        left -= n;
    }
}

/// Most bytes of a refused body read and discarded before the error is sent.
const DRAIN_BYTES: usize = 2 * MAX_BODY;

/// The 503 of a connection whose streams hold too many bodies at once.
fn busy() -> Reply {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many request bodies on this connection at once",
    )
}

/// True for `application/dns-message`, with any parameters, in any case.
fn is_dns_message(v: &HeaderValue) -> bool {
    v.to_str().is_ok_and(|s| {
        s.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case(DNS_MESSAGE))
    })
}

/// The DNS message of a GET's query string: the first `dns=` parameter, base64url
/// (RFC 4648 §5) without padding; padding (`=`, or `%3D` escaped) is tolerated.
pub fn dns_param(query: &str) -> Result<Vec<u8>, &'static str> {
    let Some(v) = query.split('&').find_map(|p| p.strip_prefix("dns=")) else {
        return Err("no dns parameter: GET /dns-query?dns=<DNS message in base64url>");
    };
    let mut v = v;
    loop {
        if let Some(s) = v.strip_suffix('=') {
            v = s;
            continue;
        }
        let cut = v.len().saturating_sub(3);
        match (v.get(..cut), v.get(cut..)) {
            (Some(head), Some(tail)) if tail.eq_ignore_ascii_case("%3D") => v = head,
            _ => break,
        }
    }
    if v.is_empty() {
        return Err("the dns parameter is empty");
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD_INDIFFERENT
        .decode(v)
        .map_err(|_| "the dns parameter is not base64url (RFC 4648 §5: A-Z a-z 0-9 - _)")
}

/// A DNS answer: 200, `application/dns-message`, and its freshness lifetime.
fn dns_reply(msg: Vec<u8>) -> Reply {
    let cache = match max_age(&msg) {
        Some(s) => HeaderValue::from_str(&format!("max-age={s}"))
            .unwrap_or(HeaderValue::from_static("no-store")),
        None => HeaderValue::from_static("no-store"),
    };
    let mut r = Response::new(Full::new(Bytes::from(msg)));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
    h.insert(header::CACHE_CONTROL, cache);
    r
}

/// An HTTP error with a line of text, never cached.
fn error(status: StatusCode, why: &str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(format!("{why}\n"))));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The freshness lifetime of a DNS answer (RFC 8484 §5.1), seconds: the smallest TTL of
/// the answer section; with no answer records, the authority section's SOA (the smaller
/// of its TTL and MINIMUM, RFC 2308 §5). `None` when neither tells (an error rcode, an
/// empty answer without SOA, a message that does not parse): such answers are `no-store`.
pub(super) fn max_age(msg: &[u8]) -> Option<u32> {
    let u16_at = |at: usize| Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]));
    let u32_at = |at: usize| {
        let b = msg.get(at..at.checked_add(4)?)?;
        Some(u32::from_be_bytes([
            *b.first()?,
            *b.get(1)?,
            *b.get(2)?,
            *b.get(3)?,
        ]))
    };
    // RFC 2181 §8: a TTL with the top bit set is 0.
    let ttl = |t: u32| if t > i32::MAX as u32 { 0 } else { t };
    let rcode = u16_at(2)? & 0x000f;
    if rcode != wire::rcode::NOERROR && rcode != wire::rcode::NXDOMAIN {
        return None;
    }
    let (qd, an, ns) = (u16_at(4)?, u16_at(6)?, u16_at(8)?);
    let mut at = wire::HEADER_LEN;
    for _ in 0..qd {
        at = skip_name(msg, at)? + 4;
    }
    // Each record: its name, then type, class, TTL, RDLENGTH and RDATA, all present.
    let record = |at: usize| {
        let at = skip_name(msg, at)?;
        let len = usize::from(u16_at(at + 8)?);
        let end = at + 10 + len;
        (end <= msg.len()).then_some((at, len, end))
    };
    if an > 0 {
        let mut min = u32::MAX;
        for _ in 0..an {
            let (fixed, _, end) = record(at)?;
            min = min.min(ttl(u32_at(fixed + 4)?));
            at = end;
        }
        return Some(min);
    }
    for _ in 0..ns {
        let (fixed, len, end) = record(at)?;
        if u16_at(fixed)? == wire::TYPE_SOA && len >= 22 {
            let minimum = u32_at(end - 4)?;
            return Some(ttl(u32_at(fixed + 4)?).min(ttl(minimum)));
        }
        at = end;
    }
    None
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len & 0xc0 {
            0 if len == 0 => return Some(at + 1),
            0 => at += 1 + usize::from(len),
            0xc0 => return msg.get(at + 1).map(|_| at + 2),
            _ => return None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests;
