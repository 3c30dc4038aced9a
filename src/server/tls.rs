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

use super::accept::{Kind, Listener, accept_loop};
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
    accept_loop(listener, tls, Kind::TLS, |tls, stream, peer| async move {
        let stream = match timeout(tls.handshake, tls.acceptor.accept(stream)).await {
            Err(_) => return Err("tls handshake timed out".into()),
            Ok(Err(e)) => return Err(format!("tls handshake failed: {e}")),
            Ok(Ok(stream)) => stream,
        };
        tcp::connection(stream, peer, &tls.conn)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
}

impl Listener for TlsShared {
    fn tcp(&self) -> &tcp::Shared {
        &self.conn
    }
}
