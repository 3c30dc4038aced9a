//! DNS over TLS (RFC 7858) on every `server.tls_listen` address: a TLS handshake, then the
//! very same connection code as DNS over TCP (`tcp::connection`, generic over the stream)
//! with the transport set to TLS, so that every query runs the same [`Handler`], and the
//! same limits hold: a DoT connection is a TCP connection, and counts against
//! `server.tcp_max_per_client` and `server.tcp_max_connections` together with plain TCP
//! ones (taken before the handshake); the idle timeout and the pipelining bound of TCP
//! apply after it.
//!
//! A client that connects and never finishes its handshake is closed after
//! `server.tls_handshake_timeout_ms`. The certificate is chosen per handshake by
//! `tls::Certs`, so a renewed one applies to new connections while established ones keep
//! theirs.
//!
//! [`Handler`]: crate::handler::Handler

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use super::faults::PanicWatch;
use super::slots::Full;
use super::tcp;

/// What every DoT connection shares.
pub(super) struct TlsShared {
    /// The connection code's state, with `transport` = TLS.
    pub(super) conn: Arc<tcp::Shared>,
    pub(super) acceptor: TlsAcceptor,
    /// Longest time from accept to a finished handshake.
    pub(super) handshake: Duration,
}

/// Accepts connections until the task is aborted.
pub(super) async fn serve(listener: Arc<TcpListener>, tls: Arc<TlsShared>) {
    let mut warned = super::RateLimit::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: say so, and do not spin.
                if warned.allow() {
                    tracing::warn!(error = %e, "tls accept failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match tls.conn.conns.try_take(peer.ip()) {
            Ok(s) => s,
            Err(full) => {
                if warned.allow() {
                    let limit = match full {
                        Full::Client => "tcp_max_per_client",
                        Full::Total => "tcp_max_connections",
                    };
                    tracing::warn!(client = %peer, limit, "tls connection refused: limit reached");
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let tls = Arc::clone(&tls);
        tokio::spawn(async move {
            let _watch = PanicWatch {
                what: "a tls connection",
                client: peer,
                faults: Arc::clone(&tls.conn.faults),
            };
            match timeout(tls.handshake, tls.acceptor.accept(stream)).await {
                Err(_) => tracing::debug!(client = %peer, "tls handshake timed out"),
                Ok(Err(e)) => tracing::debug!(client = %peer, error = %e, "tls handshake failed"),
                Ok(Ok(stream)) => {
                    if let Err(e) = tcp::connection(stream, peer, &tls.conn).await {
                        tracing::debug!(client = %peer, error = %e, "tls connection ended");
                    }
                }
            }
            drop(slot);
        });
    }
}
