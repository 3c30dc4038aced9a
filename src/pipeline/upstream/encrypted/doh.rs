//! `Doh`: DNS over HTTPS to one server (RFC 8484): one HTTP/2 connection (ALPN `h2`), one
//! stream per query, `POST` of `application/dns-message` with message ID 0 (§4.1: so that
//! HTTP caches can share answers).
//!
//! A task per connection drives it (the `h2` crate's `Connection`), and closes it after
//! [`IDLE`] without a query; a connection the server ended (GOAWAY, EOF, an error) is marked
//! dead and replaced by the next query. Besides our [`MAX_IN_FLIGHT`](super::MAX_IN_FLIGHT), the server's own
//! stream limit (`SETTINGS_MAX_CONCURRENT_STREAMS`) holds: a query beyond it waits, within
//! its attempt's time, for a stream.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Bytes;
use hyper::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;

use super::{Alive, Counted, Failed, IDLE, MAX_MESSAGE, Slot, lock, with_retry};
use crate::dns::wire::Query;
use crate::pipeline::upstream::UpstreamError;

const DNS_MESSAGE: &str = "application/dns-message";

/// One DNS-over-HTTPS server.
pub(in crate::pipeline::upstream) struct Doh {
    addr: SocketAddr,
    name: Option<ServerName<'static>>,
    /// `https://authority/path`, `None` when it does not parse (every attempt fails).
    uri: Option<Uri>,
    tls: Option<TlsConnector>,
    slot: Slot<Conn>,
    in_flight: AtomicUsize,
}

impl std::fmt::Debug for Doh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doh")
            .field("addr", &self.addr)
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

/// One open HTTP/2 connection.
pub(super) struct Conn {
    send: h2::client::SendRequest<Bytes>,
    dead: Arc<AtomicBool>,
    /// When the last query began, for the idle close.
    last: Arc<Mutex<Instant>>,
    /// Queries on this connection now.
    active: Arc<AtomicUsize>,
}

impl Alive for Conn {
    fn alive(&self) -> bool {
        !self.dead.load(Ordering::Acquire)
    }
}

impl Doh {
    pub(super) fn new(
        addr: SocketAddr,
        name: Option<ServerName<'static>>,
        authority: &str,
        path: &str,
        tls: Option<Arc<ClientConfig>>,
    ) -> Self {
        Self {
            addr,
            name,
            uri: format!("https://{authority}{path}").parse().ok(),
            tls: tls.map(TlsConnector::from),
            slot: Slot::new(),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// The same server and settings, without a connection.
    pub(super) fn twin(&self) -> Self {
        Self {
            addr: self.addr,
            name: self.name.clone(),
            uri: self.uri.clone(),
            tls: self.tls.clone(),
            slot: Slot::new(),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// The client config, the server's name and the URL, when all are usable.
    pub(super) fn session(&self) -> Option<(Arc<ClientConfig>, ServerName<'static>, Uri)> {
        let (tls, name, uri) = (self.tls.as_ref()?, self.name.as_ref()?, self.uri.as_ref()?);
        Some((Arc::clone(tls.config()), name.clone(), uri.clone()))
    }

    /// One query, answered or failed by `end`: the answer and the ID it must carry (0).
    pub(super) async fn exchange(
        &self,
        q: &Query,
        end: Instant,
    ) -> Result<(Vec<u8>, u16), UpstreamError> {
        let _counted = Counted::admit(&self.in_flight, self.addr)?;
        let Some(uri) = &self.uri else {
            return Err(UpstreamError::Transport(self.addr, "bad URL".into()));
        };
        let mut body = Vec::new();
        super::write_query(&mut body, q, 0);
        let body = Bytes::from(body);
        let buf = with_retry(
            &self.slot,
            self.addr,
            end,
            || self.connect(),
            |conn| ask(conn, uri, body.clone(), end, self.addr),
        )
        .await?;
        Ok((buf, 0))
    }

    async fn connect(&self) -> io::Result<Arc<Conn>> {
        let (Some(tls), Some(name)) = (&self.tls, &self.name) else {
            return Err(io::Error::other("no TLS client configuration"));
        };
        let tcp = TcpStream::connect(self.addr).await.inspect_err(|e| {
            crate::fdlimit::warn_if_exhausted("connecting to an upstream over HTTPS", e);
        })?;
        tcp.set_nodelay(true)?;
        let stream = tls.connect(name.clone(), tcp).await?;
        if stream.get_ref().1.alpn_protocol() != Some(crate::tls::ALPN_H2) {
            return Err(io::Error::other(
                "the server does not speak HTTP/2 (ALPN h2) on this port",
            ));
        }
        let (send, connection) = h2::client::Builder::new()
            .enable_push(false)
            .handshake::<_, Bytes>(stream)
            .await
            .map_err(io::Error::other)?;
        let conn = Arc::new(Conn {
            send,
            dead: Arc::new(AtomicBool::new(false)),
            last: Arc::new(Mutex::new(Instant::now())),
            active: Arc::new(AtomicUsize::new(0)),
        });
        let (dead, last, active) = (
            Arc::clone(&conn.dead),
            Arc::clone(&conn.last),
            Arc::clone(&conn.active),
        );
        let addr = self.addr;
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            loop {
                // Checked at most once a second while a query outlives IDLE.
                let idle_at = (*lock(&last) + IDLE).max(Instant::now() + Duration::from_secs(1));
                tokio::select! {
                    r = &mut connection => {
                        if let Err(e) = r {
                            tracing::debug!(upstream = %addr, error = %e, "dns over https connection failed");
                        }
                        break;
                    }
                    () = tokio::time::sleep_until(idle_at) => {
                        let quiet = active.load(Ordering::Acquire) == 0;
                        if quiet && lock(&last).elapsed() >= IDLE {
                            tracing::debug!(upstream = %addr, "dns over https connection idle; closing it");
                            break;
                        }
                    }
                }
            }
            // Dropping the connection closes the socket; queries still on it fail at once.
            dead.store(true, Ordering::Release);
        });
        tracing::debug!(upstream = %self.addr, "dns over https connection open");
        Ok(conn)
    }
}

/// One POST on `conn`, its answer read until `end`.
async fn ask(
    conn: Arc<Conn>,
    uri: &Uri,
    body: Bytes,
    end: Instant,
    addr: SocketAddr,
) -> Result<Vec<u8>, Failed> {
    *lock(&conn.last) = Instant::now();
    conn.active.fetch_add(1, Ordering::AcqRel);
    let _active = Counted(&conn.active);
    let closed = |e: h2::Error| {
        conn.dead.store(true, Ordering::Release);
        Failed::Closed(e.to_string())
    };
    let exchange = async {
        let mut send = conn.send.clone().ready().await.map_err(closed)?;
        let req = request(uri, body.len());
        let (response, mut stream) = send.send_request(req, false).map_err(closed)?;
        stream.send_data(body, true).map_err(closed)?;
        let response = response.await.map_err(|e| {
            if e.is_go_away() || e.is_io() {
                closed(e)
            } else {
                Failed::Error(UpstreamError::Transport(addr, e.to_string()))
            }
        })?;
        let fail = |why: String| Failed::Error(UpstreamError::Transport(addr, why));
        check_head(&response).map_err(fail)?;
        let mut recv = response.into_body();
        let mut out = Vec::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.map_err(|e| fail(e.to_string()))?;
            if out.len() + chunk.len() > MAX_MESSAGE {
                return Err(fail("answer larger than a DNS message".into()));
            }
            out.extend_from_slice(&chunk);
            let _ = recv.flow_control().release_capacity(chunk.len());
        }
        Ok::<_, Failed>(out)
    };
    match timeout_at(end, exchange).await {
        Ok(r) => r,
        Err(_) => Err(Failed::Error(UpstreamError::Timeout(addr))),
    }
}

/// The request of one query: a `POST` of `len` bytes of `application/dns-message` to `uri`.
///
/// Made in place rather than with `Request::builder`, whose steps each move the whole
/// request and convert their header again: under callgrind, 1,040 instructions a query
/// against the builder's 2,180.
fn request(uri: &Uri, len: usize) -> Request<()> {
    let mut req = Request::new(());
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri.clone();
    let headers = req.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
    headers.insert(ACCEPT, HeaderValue::from_static(DNS_MESSAGE));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    req
}

/// Why an answer's head is not a DNS answer (a status other than 200, another type).
fn check_head<B>(response: &hyper::Response<B>) -> Result<(), String> {
    if response.status() != StatusCode::OK {
        return Err(format!("HTTP status {}", response.status()));
    }
    let content_type = response.headers().get(CONTENT_TYPE);
    if content_type.is_some_and(|t| t.as_bytes() != DNS_MESSAGE.as_bytes()) {
        return Err(format!(
            "answer of type {:?}, not {DNS_MESSAGE}",
            content_type.map(|t| String::from_utf8_lossy(t.as_bytes()).into_owned())
        ));
    }
    Ok(())
}
