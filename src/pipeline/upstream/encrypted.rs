//! Encrypted upstreams: DNS over TLS (`dot`, RFC 7858), DNS over HTTPS (`doh`, RFC 8484
//! over HTTP/2) and DNS over QUIC (`doq`, RFC 9250), each one more kind of server in the
//! same ordered list as plain ones.
//!
//! One attempt at an encrypted server is one exchange bounded by the same per-attempt end
//! as a UDP attempt, counted in the same per-server counters, failing over on the same
//! errors (a timeout, a refused or broken connection, a certificate that does not carry the
//! configured name, SERVFAIL, REFUSED). DNS cookies are not sent: RFC 7873 §9 lets a client
//! omit them over TLS, which already keeps off-path forgers out (and a cookie would be a
//! stable identifier across connections).
//!
//! Connections are kept and shared: one per server, opened by the first query that needs
//! it (the queries that arrive meanwhile wait for that one rather than opening their own),
//! with many queries in flight on it (DoT: pipelined, matched by message ID; DoH: one
//! HTTP/2 stream per query; DoQ: one QUIC stream per query). At most [`MAX_IN_FLIGHT`] queries per server are in flight; a
//! query beyond that fails over to the next server, as one that finds every UDP socket full
//! does. A connection idle for [`IDLE`] is closed by us; one the server closed, or that
//! failed, is replaced by the next query. A query whose reused connection turns out closed
//! before any answer (the server timed it out just then) is sent once more on a fresh
//! connection within the same attempt, so an idle-closed connection costs no failover.
//!
//! Queries carry no DNS cookie and are padded to a multiple of 128 bytes (RFC 7830, RFC
//! 8467's recommended block length), so that the size of the encrypted message does not
//! give the name away.
//!
//! Certificates are checked against the bundled roots (webpki-roots: Mozilla's set) or the
//! CAs of `upstream.tls_ca`, for the name the entry gives (`#name`, the URL's host), which
//! is also sent as SNI. TLS is rustls with the ring provider, as for the listeners.
//!
//! Why our own clients and not hickory's (hickory-net 0.26's `tls_exchange` and
//! `HttpsClientStream` behind a `DnsExchange`): those speak in parsed `Message`s. This stage
//! works on the wire bytes (the query written once, the whole answer checked and kept once,
//! `Response::parse`), so each miss would be decoded into a `Message`, encoded again, and its
//! answer decoded twice; hickory's DoT also turns SNI off, and its multiplexer never closes
//! an idle connection. The clients here are small: tokio-rustls with a reader and a writer
//! task per connection (DoT), the `h2` crate hyper already builds on (DoH), and quinn, the
//! QUIC stack of the DoQ listener (DoQ). A UDP listener thread makes the first attempt of
//! its encrypted misses on connections of its own, rustls, our own HTTP/2 client
//! ([`crate::http2`], a fraction of `h2`'s cost per query) and `quinn-proto` driven by its
//! loop (`relay::kept`), and on its own runtime ([`near`]) when those are full.

mod doh;
mod doq;
mod dot;
pub(super) mod near;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::time::{Instant, timeout_at};

use super::UpstreamError;
use crate::config::{TlsCa, Transport, UpstreamServer};
use crate::dns::wire::{Query, write_upstream_query};

/// Most queries in flight at one encrypted server.
pub(super) const MAX_IN_FLIGHT: usize = 256;
/// A connection without a query for this long is closed.
pub(super) const IDLE: Duration = Duration::from_secs(30);
/// Largest DNS message taken from an encrypted upstream.
pub(super) const MAX_MESSAGE: usize = 65_535;
/// Queries are padded to a multiple of this many bytes (RFC 8467 §4.1).
const PAD_BLOCK: usize = 128;
/// EDNS option code of Padding (RFC 7830).
const OPT_PADDING: u16 = 12;

/// Writes the query for an encrypted server: as for a plain one (without a cookie), padded
/// with an EDNS Padding option (RFC 7830) to a multiple of [`PAD_BLOCK`] bytes, as RFC 8467
/// recommends, so that the length of the encrypted query does not tell the name's.
pub(super) fn write_query(out: &mut Vec<u8>, q: &Query, id: u16) {
    // At most one allocation (DNS over HTTPS hands each query a buffer of its own, reused
    // once the connection is warm): the header, the question, the OPT record and its Padding
    // option, padded.
    out.clear();
    out.reserve_exact(padded_len(q));
    write_upstream_query(out, q, id);
    // The OPT record comes last, without options: its RDLENGTH is the last two bytes.
    let n = out.len();
    let pad = (PAD_BLOCK - (n + 4) % PAD_BLOCK) % PAD_BLOCK;
    let (Ok(rdlen), Ok(len)) = (u16::try_from(4 + pad), u16::try_from(pad)) else {
        return;
    };
    if let Some(r) = out.get_mut(n.saturating_sub(2)..) {
        r.copy_from_slice(&rdlen.to_be_bytes());
    }
    out.extend_from_slice(&OPT_PADDING.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.resize(n + 4 + pad, 0);
}

/// The length of the query [`write_query`] writes for `q`: a 12-byte header, the question,
/// an 11-byte OPT record with a 4-byte Padding option head, rounded up to [`PAD_BLOCK`].
fn padded_len(q: &Query) -> usize {
    (12 + q.question_len() + 11 + 4).next_multiple_of(PAD_BLOCK)
}

/// [`write_query`] framed for a stream (DNS over TLS, RFC 7766 §6.2.1.1; DNS over QUIC, RFC
/// 9250 §4.2): the message's two-byte length, then the message, into `frame`, with `body`
/// as scratch. False for a message over 65,535 bytes (no query is).
pub(super) fn write_framed_query(
    frame: &mut Vec<u8>,
    body: &mut Vec<u8>,
    q: &Query,
    id: u16,
) -> bool {
    write_query(body, q, id);
    let Ok(len) = u16::try_from(body.len()) else {
        return false;
    };
    frame.clear();
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(body);
    true
}

/// How one encrypted server is reached.
#[derive(Debug)]
pub(super) enum Link {
    /// DNS over TLS.
    Tls(dot::Dot),
    /// DNS over HTTPS.
    Https(doh::Doh),
    /// DNS over QUIC.
    Quic(doq::Doq),
}

impl Link {
    /// The link for `server`, `None` for a plain one. `clients`: the TLS configs, built
    /// once per upstream set (`None` when they could not be, so every attempt fails).
    pub(super) fn new(server: &UpstreamServer, clients: Option<&Clients>) -> Option<Self> {
        match &server.transport {
            Transport::Plain => None,
            Transport::Tls { name } => Some(Self::Tls(dot::Dot::new(
                server.addr,
                server_name(name),
                clients.map(|c| Arc::clone(&c.dot)),
            ))),
            Transport::Https {
                name,
                authority,
                path,
            } => Some(Self::Https(doh::Doh::new(
                server.addr,
                server_name(name),
                authority,
                path,
                clients.map(|c| Arc::clone(&c.doh)),
            ))),
            Transport::Quic { name } => Some(Self::Quic(doq::Doq::new(
                server.addr,
                name,
                clients.map(|c| c.doq.clone()),
            ))),
        }
    }

    /// A link to the same server with the same settings and no connection of its own yet
    /// (a UDP thread's, see [`near`]).
    pub(super) fn twin(&self) -> Self {
        match self {
            Self::Tls(d) => Self::Tls(d.twin()),
            Self::Https(d) => Self::Https(d.twin()),
            Self::Quic(d) => Self::Quic(d.twin()),
        }
    }

    /// For DNS over TLS, what a session with the server needs: the client config and the
    /// name to send and check (`None`: another transport, or no usable config or name).
    pub(super) fn tls_session(&self) -> Option<(Arc<ClientConfig>, ServerName<'static>)> {
        match self {
            Self::Tls(d) => d.session(),
            Self::Https(_) | Self::Quic(_) => None,
        }
    }

    /// For DNS over HTTPS, what a connection to the server needs: the client config, the
    /// name to send and check, and the URL of the queries (`None`: another transport, or no
    /// usable config, name or URL).
    pub(super) fn https_session(
        &self,
    ) -> Option<(Arc<ClientConfig>, ServerName<'static>, hyper::Uri)> {
        match self {
            Self::Https(d) => d.session(),
            Self::Tls(_) | Self::Quic(_) => None,
        }
    }

    /// For DNS over QUIC, what a connection to the server needs: the client config and the
    /// name to send and check (`None`: another transport, or no usable config).
    pub(super) fn quic_session(&self) -> Option<(quinn::ClientConfig, String)> {
        match self {
            Self::Quic(d) => d.session(),
            Self::Tls(_) | Self::Https(_) => None,
        }
    }

    /// One exchange for `q`, ending by `end`: the answer's bytes and the ID it must carry.
    pub(super) async fn exchange(
        &self,
        q: &Query,
        end: Instant,
    ) -> Result<(Vec<u8>, u16), UpstreamError> {
        match self {
            Self::Tls(d) => d.exchange(q, end).await,
            Self::Https(d) => d.exchange(q, end).await,
            Self::Quic(d) => d.exchange(q, end).await,
        }
    }
}

/// A name the config checked (`ServerName::try_from` succeeded there); a name that does
/// not parse now makes every handshake fail (`None`), never a panic.
fn server_name(name: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(name.to_string()).ok()
}

/// The rustls client configs of one upstream set (DoQ's wrapped for quinn).
#[derive(Debug)]
pub(super) struct Clients {
    dot: Arc<ClientConfig>,
    doh: Arc<ClientConfig>,
    doq: quinn::ClientConfig,
}

impl Clients {
    /// Configs trusting the CAs of `ca`, or the bundled roots without one.
    pub(super) fn new(ca: Option<&TlsCa>) -> Result<Self, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        match ca {
            Some(ca) => {
                for der in &ca.certs {
                    roots.add(CertificateDer::from(der.clone()))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let roots = Arc::new(roots);
        let config = |alpn: &[u8]| -> Result<Arc<ClientConfig>, rustls::Error> {
            let mut c = ClientConfig::builder_with_provider(crate::tls::provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(Arc::clone(&roots))
                .with_no_client_auth();
            c.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(c))
        };
        // QUIC: TLS 1.3 only (RFC 9001 §4.2); no 0-RTT (a replayed query is not ours to
        // risk).
        let mut doq = ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(Arc::clone(&roots))
            .with_no_client_auth();
        doq.alpn_protocols = vec![crate::tls::ALPN_DOQ.to_vec()];
        let doq = quinn::crypto::rustls::QuicClientConfig::try_from(doq)
            .map_err(|e| rustls::Error::General(format!("quic: {e}")))?;
        let mut doq = quinn::ClientConfig::new(Arc::new(doq));
        doq.transport_config(Arc::new(doq_transport()));
        Ok(Self {
            dot: config(crate::tls::ALPN_DOT)?,
            doh: config(crate::tls::ALPN_H2)?,
            doq,
        })
    }
}

/// Most answer bytes a DoQ upstream may have in flight to us on one connection (its
/// streams' flow-control window together): room for many answers at once, and a bound on
/// what a server can make a connection hold.
const DOQ_RECEIVE_WINDOW: u32 = 1 << 20;

/// QUIC transport of a DoQ upstream connection: closed after [`IDLE`] without traffic; the
/// server may open no stream to us; an answer stream holds at most one whole answer
/// (`doq::MAX_STREAM`), the connection [`DOQ_RECEIVE_WINDOW`]; no datagrams.
fn doq_transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    let stream = u32::try_from(crate::dns::doq::MAX_STREAM).unwrap_or(u32::MAX);
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(0))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(0))
        .stream_receive_window(quinn::VarInt::from_u32(stream))
        .receive_window(quinn::VarInt::from_u32(DOQ_RECEIVE_WINDOW))
        .datagram_receive_buffer_size(None)
        .max_idle_timeout(quinn::IdleTimeout::try_from(IDLE).ok());
    t
}

/// Counts a query in flight until dropped.
pub(super) struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    /// Counts one more query in `n` for the server at `addr`, unless [`MAX_IN_FLIGHT`] are
    /// already: then the query fails over at once.
    pub(super) fn admit(n: &'a AtomicUsize, addr: SocketAddr) -> Result<Self, UpstreamError> {
        if n.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            n.fetch_sub(1, Ordering::AcqRel);
            return Err(UpstreamError::Transport(
                addr,
                "too many queries in flight".into(),
            ));
        }
        Ok(Self(n))
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a connection kept in a [`Slot`] says about itself.
pub(super) trait Alive {
    /// Still usable for new queries.
    fn alive(&self) -> bool;
}

/// The connection to one server: the current one, and a lock held while one is opened so
/// that concurrent queries share it.
#[derive(Debug)]
pub(super) struct Slot<C> {
    current: Mutex<Option<Arc<C>>>,
    connecting: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<C: Alive> Slot<C> {
    pub(super) fn new() -> Self {
        Self {
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    fn live(&self) -> Option<Arc<C>> {
        lock(&self.current).as_ref().filter(|c| c.alive()).cloned()
    }

    /// The live connection, or a new one from `connect` (one at a time: a query that
    /// finds a connect under way waits for it). True with a connection opened for this
    /// query. Fails with `Timeout` at `end`, or with the connect's error.
    pub(super) async fn get<F>(
        &self,
        addr: SocketAddr,
        end: Instant,
        connect: impl FnOnce() -> F,
    ) -> Result<(Arc<C>, bool), UpstreamError>
    where
        F: Future<Output = io::Result<Arc<C>>>,
    {
        if let Some(c) = self.live() {
            return Ok((c, false));
        }
        let Ok(_guard) = timeout_at(end, self.connecting.lock()).await else {
            return Err(UpstreamError::Timeout(addr));
        };
        if let Some(c) = self.live() {
            return Ok((c, false));
        }
        match timeout_at(end, connect()).await {
            Err(_) => Err(UpstreamError::Timeout(addr)),
            Ok(Err(e)) => {
                tracing::debug!(upstream = %addr, error = %e, "cannot connect to an encrypted upstream");
                Err(UpstreamError::Transport(addr, e.to_string()))
            }
            Ok(Ok(c)) => {
                *lock(&self.current) = Some(Arc::clone(&c));
                Ok((c, true))
            }
        }
    }
}

/// How one query on a connection went wrong.
#[derive(Debug)]
pub(super) enum Failed {
    /// The connection closed or failed before an answer: worth one more try on a fresh
    /// connection if this one was reused.
    Closed(String),
    /// Anything else: the attempt fails with this.
    Error(UpstreamError),
}

/// The attempt's error for a query that failed with `f` (after the retry, if any).
fn attempt_error(addr: SocketAddr, f: Failed) -> UpstreamError {
    match f {
        Failed::Closed(why) => UpstreamError::Transport(addr, why),
        Failed::Error(e) => e,
    }
}

/// Runs `ask` on the server's connection, once more on a fresh one when a reused
/// connection was found closed.
pub(super) async fn with_retry<C, F, A>(
    slot: &Slot<C>,
    addr: SocketAddr,
    end: Instant,
    connect: impl Fn() -> F,
    mut ask: impl FnMut(Arc<C>) -> A,
) -> Result<Vec<u8>, UpstreamError>
where
    C: Alive,
    F: Future<Output = io::Result<Arc<C>>>,
    A: Future<Output = Result<Vec<u8>, Failed>>,
{
    let mut tried = false;
    loop {
        let (conn, fresh) = slot.get(addr, end, &connect).await?;
        match ask(conn).await {
            Ok(buf) => return Ok(buf),
            Err(Failed::Closed(why)) if !fresh && !tried && Instant::now() < end => {
                tracing::debug!(upstream = %addr, error = %why, "encrypted upstream connection closed; once more on a new one");
                tried = true;
            }
            Err(f) => return Err(attempt_error(addr, f)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
mod tests;
