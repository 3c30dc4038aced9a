//! The accept loop of every TCP-based listener (DNS over TCP, TLS and HTTPS): one place
//! that admits a connection against the connection slots (`server.tcp_max_per_client`,
//! `server.tcp_max_connections`), warns at most once in a while about refusals and accept
//! failures, and serves each admitted connection on a task of its own under a panic watch,
//! holding its slot until it ends.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::faults::PanicWatch;
use super::tcp::Shared;

/// What a listener's connections are called in logs: `proto` in messages, `what` for a
/// panic ("a tls connection").
pub(super) struct Kind {
    proto: &'static str,
    what: &'static str,
}

impl Kind {
    /// DNS over TCP.
    pub(super) const TCP: Self = Self {
        proto: "tcp",
        what: "a tcp connection",
    };
    /// DNS over TLS.
    pub(super) const TLS: Self = Self {
        proto: "tls",
        what: "a tls connection",
    };
    /// DNS over HTTPS.
    pub(super) const HTTPS: Self = Self {
        proto: "https",
        what: "an https connection",
    };
}

/// What every connection of a listener shares: at least TCP's connection state (its
/// slots and fault counts).
pub(super) trait Listener: Send + Sync + 'static {
    /// The connection state of TCP's code that this listener's connections count against.
    fn tcp(&self) -> &Shared;
}

impl Listener for Shared {
    fn tcp(&self) -> &Shared {
        self
    }
}

/// The next connection accepted on `listener`. A failed accept (out of file descriptors,
/// EMFILE/ENFILE, and the like) is warned about as "`{what}` accept failed" when `warned`
/// allows, and retried after 50 ms, so that the loop neither stops nor spins.
pub(crate) async fn next_connection(
    listener: &TcpListener,
    warned: &mut super::RateLimit,
    what: &str,
) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(c) => return c,
            Err(e) => {
                if warned.allow() {
                    tracing::warn!(error = %e, "{what} accept failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Accepts connections on `listener` until the task is aborted; runs
/// `serve(state, stream, peer)` for each one the slots of `state` admit, on a task of its
/// own that holds the slot until the connection ends. Its error ends the connection,
/// logged at debug level.
pub(super) async fn accept_loop<S, F, Fut, E>(
    listener: Arc<TcpListener>,
    state: Arc<S>,
    kind: Kind,
    serve: F,
) where
    S: Listener,
    F: Fn(Arc<S>, TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    let Kind { proto, what } = kind;
    let mut warned = super::RateLimit::default();
    loop {
        let (stream, peer) = next_connection(&listener, &mut warned, proto).await;
        #[cfg(test)]
        #[allow(clippy::panic)]
        if super::tests::FAIL_NEXT_ACCEPT.swap(false, std::sync::atomic::Ordering::Relaxed) {
            panic!("injected accept-loop failure");
        }
        let slot = match state.tcp().conns.try_take(peer.ip()) {
            Ok(s) => s,
            Err(full) => {
                if warned.allow() {
                    let limit = full.limit_key();
                    tracing::warn!(client = %peer, limit, "{proto} connection refused: limit reached");
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let watch = PanicWatch {
            what,
            client: peer,
            faults: Arc::clone(&state.tcp().faults),
        };
        let served = serve(Arc::clone(&state), stream, peer);
        tokio::spawn(async move {
            let _watch = watch;
            if let Err(e) = served.await {
                tracing::debug!(client = %peer, error = %e, "{proto} connection ended");
            }
            drop(slot);
        });
    }
}
