//! DNS over QUIC (RFC 9250) on every `server.quic_listen` address, on quinn: a QUIC
//! handshake (TLS 1.3, ALPN `doq`, the certificate of DNS over TLS chosen per handshake by
//! `tls::Certs`, so a renewed one applies to new connections while established ones keep
//! theirs), then one query per bidirectional stream, each answered on its own
//! stream through the same [`Handler`] as every other listener, with `proto` = `quic`.
//! The framing and the query checks are `dns::doq`'s.
//!
//! A query's message ID must be 0 and it must not carry edns-tcp-keepalive: otherwise, and
//! for a stream that breaks the framing, the connection is closed with
//! `DOQ_PROTOCOL_ERROR` (§4.3.3); the client's other connections, and every other client,
//! go on. A query dropped by access control gets its stream reset
//! (`DOQ_REQUEST_CANCELLED`). Answers are not padded, as over DoT.
//!
//! What a client can hold is bounded, with DNS over TCP's keys where they exist:
//! - connections: `server.tcp_max_per_client` per client address and
//!   `server.tcp_max_connections` in all, counted apart from TCP's (a QUIC flood does not
//!   take TCP's slots, nor the reverse); past either, the connection is refused. While
//!   more than three quarters are taken, a client must first prove its address (a QUIC
//!   Retry), so that spoofed sources cannot hold slots;
//! - the handshake: `server.tls_handshake_timeout_ms`;
//! - idle: a connection without a query for `server.tcp_idle_ms` (1 s while the slots are
//!   nearly all taken) is closed, and QUIC's own idle timeout is the same;
//! - streams: at most [`MAX_STREAMS`] open at once per connection (QUIC flow control: the
//!   client cannot open more), no unidirectional streams, no datagrams;
//! - a query: at most one DNS message per stream (`doq::MAX_STREAM` bytes, the stream's
//!   flow-control window), received within the idle timeout, else the stream is reset;
//! - answers: written within the idle timeout; forwards in flight: the handler's
//!   per-client bound, shared with every transport.
//!
//! [`Handler`]: crate::handler::Handler

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, Endpoint, IdleTimeout, RecvStream, SendStream, TransportConfig, VarInt};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout};

use super::faults::PanicWatch;
use super::slots::ClientSlots;
use super::tcp;
use crate::dns::doq::{self, FrameError, code};
use crate::handler::{Arrival, Handled};
use crate::querylog::Record;

/// Streams one connection may have open at once (DoH's HTTP/2 bound).
pub const MAX_STREAMS: u32 = 100;
/// Flow-control window of a connection: the query bytes of all its streams not yet read.
const CONN_WINDOW: u32 = 4 * doq::MAX_STREAM as u32;
/// Answer bytes sent but not yet acknowledged, per connection.
const SEND_WINDOW: u64 = 1 << 20;
/// Connection attempts queued before the accept loop takes them, and the bytes their
/// early packets may hold (each, and all together).
const MAX_INCOMING: usize = 1024;
const INCOMING_BYTES: u64 = 64 << 10;
const INCOMING_BYTES_TOTAL: u64 = 4 << 20;

/// What every DoQ connection shares.
pub(super) struct QuicShared {
    /// The connection state of TCP's code (handler, log, clock, idle), with `conns` the
    /// QUIC connections' own slots and `transport` = QUIC.
    pub(super) conn: Arc<tcp::Shared>,
    /// Longest time from a connection attempt to a finished handshake.
    pub(super) handshake: Duration,
}

/// quinn's server config for `tls` (see `tls::doq_config`), with the bounds above and the
/// idle timeout `idle`.
pub(super) fn server_config(
    tls: Arc<rustls::ServerConfig>,
    idle: Duration,
) -> std::io::Result<quinn::ServerConfig> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| std::io::Error::other(format!("quic tls setup: {e}")))?;
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(doq::MAX_STREAM as u32))
        .receive_window(VarInt::from_u32(CONN_WINDOW))
        .send_window(SEND_WINDOW)
        .datagram_receive_buffer_size(None)
        .max_idle_timeout(IdleTimeout::try_from(idle).ok());
    let mut c = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    c.transport_config(Arc::new(t));
    c.max_incoming(MAX_INCOMING)
        .incoming_buffer_size(INCOMING_BYTES)
        .incoming_buffer_size_total(INCOMING_BYTES_TOTAL);
    Ok(c)
}

/// The endpoint serving `socket` with `config`; call within the runtime.
pub(super) fn endpoint(
    socket: std::net::UdpSocket,
    config: quinn::ServerConfig,
) -> std::io::Result<Endpoint> {
    socket.set_nonblocking(true)?;
    Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// Accepts connections until the endpoint is closed or the task aborted.
pub(super) async fn serve(ep: Endpoint, q: Arc<QuicShared>) {
    let mut warned = super::RateLimit::default();
    let slots: &Arc<ClientSlots> = &q.conn.conns;
    while let Some(incoming) = ep.accept().await {
        let peer = incoming.remote_address();
        // Nearly full: only a client that proved its address may take a slot, so that
        // spoofed sources cannot fill them for a handshake timeout each.
        if slots.held() * 4 > slots.limit() * 3
            && !incoming.remote_address_validated()
            && incoming.may_retry()
        {
            let _ = incoming.retry();
            continue;
        }
        let slot = match slots.try_take(peer.ip()) {
            Ok(s) => s,
            Err(full) => {
                if warned.allow() {
                    let limit = full.limit_key();
                    tracing::warn!(client = %peer, limit, "quic connection refused: limit reached");
                }
                incoming.refuse();
                continue;
            }
        };
        let q = Arc::clone(&q);
        tokio::spawn(async move {
            let _watch = PanicWatch {
                what: "a quic connection",
                client: peer,
                faults: Arc::clone(&q.conn.faults),
            };
            match incoming.accept() {
                Err(e) => tracing::debug!(client = %peer, error = %e, "quic connection failed"),
                // A handshake dropped unfinished closes the connection.
                Ok(connecting) => match timeout(q.handshake, connecting).await {
                    Err(_) => tracing::debug!(client = %peer, "quic handshake timed out"),
                    Ok(Err(e)) => {
                        tracing::debug!(client = %peer, error = %e, "quic handshake failed");
                    }
                    Ok(Ok(conn)) => connection(conn, peer, &q).await,
                },
            }
            drop(slot);
        });
    }
}

/// Serves one connection: a task per stream, until the client closes, breaks the
/// protocol, or sends no query for the idle timeout.
async fn connection(conn: Connection, peer: SocketAddr, q: &Arc<QuicShared>) {
    let mut streams = JoinSet::new();
    let mut idle_at = Instant::now() + q.conn.idle();
    loop {
        tokio::select! {
            s = conn.accept_bi() => match s {
                Ok((send, recv)) => {
                    streams.spawn(stream(send, recv, conn.clone(), peer, Arc::clone(q)));
                    idle_at = Instant::now() + q.conn.idle();
                }
                Err(e) => {
                    tracing::debug!(client = %peer, error = %e, "quic connection ended");
                    break;
                }
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {
                idle_at = Instant::now() + q.conn.idle();
            }
            () = sleep_until(idle_at), if streams.is_empty() => {
                tracing::debug!(client = %peer, "quic connection idle; closing it");
                conn.close(VarInt::from_u32(code::NO_ERROR), b"idle");
                break;
            }
        }
    }
    // Streams still running end with the connection (dropping the set aborts them).
}

/// Why a stream's query was not read.
enum ReadError {
    /// The bytes break the protocol: the connection is closed.
    Protocol(FrameError),
    /// The stream or connection failed, or the client was too slow: the stream is reset.
    Stream(String),
}

/// Reads the stream's query: the bytes until the announced length has come (answering
/// does not wait for the client's FIN), bytes past it in the same read are a second
/// message.
async fn read_query(recv: &mut RecvStream) -> Result<Vec<u8>, ReadError> {
    let mut buf = Vec::new();
    loop {
        match doq::message(&buf, false) {
            Ok(Some(_)) => break,
            Ok(None) => {}
            Err(e) => return Err(ReadError::Protocol(e)),
        }
        // One byte more than a whole stream may hold: enough to see a second message.
        let room = (doq::MAX_STREAM + 1).saturating_sub(buf.len()).max(1);
        match recv.read_chunk(room, true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                doq::message(&buf, true).map_err(ReadError::Protocol)?;
                break;
            }
            Err(e) => return Err(ReadError::Stream(e.to_string())),
        }
    }
    buf.drain(..2);
    Ok(buf)
}

/// One stream: its query read, checked and answered on it; the stream finished.
async fn stream(
    mut send: SendStream,
    mut recv: RecvStream,
    conn: Connection,
    peer: SocketAddr,
    q: Arc<QuicShared>,
) {
    let shared = &q.conn;
    let _watch = PanicWatch {
        what: "a quic stream",
        client: peer,
        faults: Arc::clone(&shared.faults),
    };
    let cancel = VarInt::from_u32(code::REQUEST_CANCELLED);
    let read = match timeout(shared.idle(), read_query(&mut recv)).await {
        Err(_) => Err(ReadError::Stream("query not received in time".into())),
        Ok(r) => r,
    };
    let msg = match read.and_then(|m| match doq::check_query(&m) {
        Ok(()) => Ok(m),
        Err(e) => Err(ReadError::Protocol(e)),
    }) {
        Ok(m) => m,
        Err(ReadError::Protocol(e)) => {
            tracing::debug!(client = %peer, error = %e, "doq protocol error; closing the connection");
            conn.close(
                VarInt::from_u32(code::PROTOCOL_ERROR),
                e.to_string().as_bytes(),
            );
            return;
        }
        Err(ReadError::Stream(why)) => {
            tracing::debug!(client = %peer, error = %why, "doq stream reset");
            let _ = recv.stop(cancel);
            let _ = send.reset(cancel);
            return;
        }
    };
    let how = Arrival {
        client: peer,
        transport: shared.transport,
        arrived: Instant::now(),
        now: shared.clock.now(),
    };
    let mut out = Vec::with_capacity(512);
    let handled = std::panic::catch_unwind(AssertUnwindSafe(|| {
        shared.handler.handle_packet(&msg, how, &mut out)
    }));
    let (out, record): (Vec<u8>, Option<Record>) = match handled {
        Ok(Handled::Reply(record)) => (out, record),
        Ok(Handled::Drop(record)) => (Vec::new(), record),
        Ok(Handled::Pending(p)) => p.run().await,
        Err(p) => {
            shared.faults.panicked("a quic query", Some(peer), &*p);
            let _ = send.reset(VarInt::from_u32(code::INTERNAL_ERROR));
            return;
        }
    };
    // Logged before the answer leaves, like every transport: a client that asks again once
    // answered finds its queries in the order it asked them (access control's drops too).
    if let (Some(log), Some(r)) = (&shared.log, record) {
        log.record(r);
    }
    if out.is_empty() {
        let _ = send.reset(cancel);
    } else {
        let framed = doq::framed(&out);
        let sent = timeout(shared.idle(), async {
            send.write_all(&framed).await.map_err(|e| e.to_string())?;
            send.finish().map_err(|e| e.to_string())
        })
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(client = %peer, error = %e, "doq answer not sent"),
            Err(_) => {
                tracing::debug!(client = %peer, "doq answer not taken in time");
                let _ = send.reset(cancel);
            }
        }
    }
}
