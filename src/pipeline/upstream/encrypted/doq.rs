//! `Doq`: DNS over QUIC to one server (RFC 9250): one QUIC connection (quinn, TLS 1.3, ALPN
//! `doq`), one bidirectional stream per query: the query with message ID 0 after a
//! two-byte length, the stream finished, the answer read from the same stream
//! (`dns::doq`'s framing). Queries run concurrently on the connection, as many as the
//! server's stream limit lets open at once (a query beyond it waits, within its attempt's
//! time, for a stream) and at most [`MAX_IN_FLIGHT`](super::MAX_IN_FLIGHT).
//!
//! The connection closes itself after [`IDLE`](super::IDLE) without traffic (QUIC's idle timeout, the
//! lower of ours and the server's); a closed one is replaced by the next query, and a query
//! that finds a reused connection closed before its answer is sent once more on a fresh one
//! (`with_retry`), as over DoT. Each connection has its own client endpoint (a UDP socket
//! on an ephemeral port), dropped with it.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use quinn::{Endpoint, ReadError, VarInt, WriteError};
use tokio::time::{Instant, timeout_at};

use super::{Alive, Counted, Failed, Slot, with_retry};
use crate::dns::doq::{self, code};
use crate::dns::wire::Query;
use crate::pipeline::upstream::UpstreamError;

/// One DNS-over-QUIC server.
pub(in crate::pipeline::upstream) struct Doq {
    addr: SocketAddr,
    /// The name the certificate must carry (and the SNI).
    name: String,
    config: Option<quinn::ClientConfig>,
    slot: Slot<Conn>,
    in_flight: AtomicUsize,
}

impl std::fmt::Debug for Doq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doq")
            .field("addr", &self.addr)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// One open QUIC connection, and the endpoint (socket) it runs on.
#[derive(Debug)]
pub(super) struct Conn {
    conn: quinn::Connection,
    _endpoint: Endpoint,
}

impl Alive for Conn {
    fn alive(&self) -> bool {
        self.conn.close_reason().is_none()
    }
}

impl Doq {
    pub(super) fn new(addr: SocketAddr, name: &str, config: Option<quinn::ClientConfig>) -> Self {
        Self {
            addr,
            name: name.to_string(),
            config,
            slot: Slot::new(),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// The same server and settings, without a connection.
    pub(super) fn twin(&self) -> Self {
        Self::new(self.addr, &self.name, self.config.clone())
    }

    /// What a connection to the server needs (the relay's, `relay::quic`): the client
    /// config and the name (`None` without a usable config).
    pub(super) fn session(&self) -> Option<(quinn::ClientConfig, String)> {
        Some((self.config.clone()?, self.name.clone()))
    }

    /// One query, answered or failed by `end`: the answer and the ID it must carry (0).
    pub(super) async fn exchange(
        &self,
        q: &Query,
        end: Instant,
    ) -> Result<(Vec<u8>, u16), UpstreamError> {
        let _counted = Counted::admit(&self.in_flight, self.addr)?;
        let mut body = Vec::new();
        super::write_query(&mut body, q, 0);
        let framed = doq::framed(&body);
        let buf = with_retry(
            &self.slot,
            self.addr,
            end,
            || self.connect(),
            |conn| ask(conn, &framed, end, self.addr),
        )
        .await?;
        Ok((buf, 0))
    }

    async fn connect(&self) -> io::Result<Arc<Conn>> {
        let Some(config) = &self.config else {
            return Err(io::Error::other("no TLS client configuration"));
        };
        let local = if self.addr.is_ipv4() {
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
        };
        let mut endpoint = Endpoint::client(local).inspect_err(|e| {
            crate::fdlimit::warn_if_exhausted("connecting to an upstream over QUIC", e);
        })?;
        endpoint.set_default_client_config(config.clone());
        let conn = endpoint
            .connect(self.addr, &self.name)
            .map_err(io::Error::other)?
            .await
            .map_err(io::Error::other)?;
        tracing::debug!(upstream = %self.addr, "dns over quic connection open");
        Ok(Arc::new(Conn {
            conn,
            _endpoint: endpoint,
        }))
    }
}

/// How a stream failed: the connection's end (worth a retry on a fresh one) or anything
/// else.
fn failed(addr: SocketAddr, closed: bool, why: String) -> Failed {
    if closed {
        Failed::Closed(why)
    } else {
        Failed::Error(UpstreamError::Transport(addr, why))
    }
}

fn write_failed(addr: SocketAddr, e: &WriteError) -> Failed {
    failed(
        addr,
        matches!(e, WriteError::ConnectionLost(_)),
        e.to_string(),
    )
}

fn read_failed(addr: SocketAddr, e: &ReadError) -> Failed {
    failed(
        addr,
        matches!(e, ReadError::ConnectionLost(_)),
        e.to_string(),
    )
}

/// One stream on `conn`: the framed query out, the answer in, until `end`.
async fn ask(
    conn: Arc<Conn>,
    framed: &[u8],
    end: Instant,
    addr: SocketAddr,
) -> Result<Vec<u8>, Failed> {
    let (mut send, mut recv) = match timeout_at(end, conn.conn.open_bi()).await {
        Err(_) => return Err(Failed::Error(UpstreamError::Timeout(addr))),
        // The connection is gone (closed, timed out, reset).
        Ok(Err(e)) => return Err(Failed::Closed(e.to_string())),
        Ok(Ok(s)) => s,
    };
    let exchange = async {
        send.write_all(framed)
            .await
            .map_err(|e| write_failed(addr, &e))?;
        // The stream is finished after the query (RFC 9250 §4.2).
        send.finish()
            .map_err(|e| Failed::Error(UpstreamError::Transport(addr, e.to_string())))?;
        let mut buf = Vec::new();
        loop {
            let room = (doq::MAX_STREAM + 1).saturating_sub(buf.len()).max(1);
            let fin = match recv.read_chunk(room, true).await {
                Ok(Some(chunk)) => {
                    buf.extend_from_slice(&chunk.bytes);
                    false
                }
                Ok(None) => true,
                Err(e) => return Err(read_failed(addr, &e)),
            };
            match doq::message(&buf, fin) {
                Ok(Some(_)) => break,
                Ok(None) => {}
                Err(e) => {
                    return Err(Failed::Error(UpstreamError::Transport(
                        addr,
                        format!("bad dns over quic answer: {e}"),
                    )));
                }
            }
        }
        buf.drain(..2);
        Ok(buf)
    };
    let r = timeout_at(end, exchange).await;
    if r.is_err() {
        // Given up: tell the server (RFC 9250 §4.3.2's DOQ_REQUEST_CANCELLED).
        let cancel = VarInt::from_u32(code::REQUEST_CANCELLED);
        let _ = send.reset(cancel);
        let _ = recv.stop(cancel);
    }
    r.unwrap_or(Err(Failed::Error(UpstreamError::Timeout(addr))))
}
