//! DNS over HTTPS (RFC 8484) on every `server.https_listen` address: a TLS handshake (the
//! certificate of DNS over TLS, ALPN `h2` or `http/1.1`), then hyper's HTTP/2 or HTTP/1.1
//! server on the connection, each request answered by `doh.rs` through the same
//! [`Handler`] as every other listener.
//!
//! The limits are DNS over TCP's, so that one client's flood takes its own share only:
//! - connections: a DoH connection is a TCP connection and counts against
//!   `server.tcp_max_per_client` and `server.tcp_max_connections` together with plain TCP
//!   and DoT ones (taken before the handshake; past either, closed at once);
//! - the handshake: `server.tls_handshake_timeout_ms`;
//! - idle: a connection with no request being answered for `server.tcp_idle_ms` (1 s while
//!   the connection slots are nearly all taken, as TCP) is shut down gracefully, and closed
//!   if that takes another idle period (a client that never reads);
//! - a slow client: an HTTP/1.1 request head, or a request body, not received within the
//!   idle timeout closes the connection (408 for a body);
//! - HTTP/2 answers leave in TLS records of their own (`records.rs`);
//! - HTTP/2: at most [`MAX_STREAMS`] streams at once per connection, stream and connection
//!   flow-control windows of one DNS message, [`MAX_HEAD_BYTES`] of headers (more: 431);
//! - bodies: at most one DNS message (65,535 bytes, more: 413), and
//!   `doh::CONN_BODY_BUDGET` bytes held by one connection's streams together;
//! - forwards in flight: the handler's per-client bound, shared with UDP and TCP.
//!
//! [`Handler`]: crate::handler::Handler

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_rustls::TlsAcceptor;

use super::accept::{Kind, Listener, accept_loop};
use super::doh::Conn;
use super::records::RecordPerAnswer;
use super::tcp;

/// HTTP/2 streams one connection may have open at once.
pub const MAX_STREAMS: u32 = 100;
/// Largest request head (HTTP/1.1: request line and headers; HTTP/2: the decoded header
/// list), bytes. A GET's `dns` parameter is within it: up to about 12 KB of message.
pub const MAX_HEAD_BYTES: usize = 16 << 10;
/// HTTP/1.1's read buffer (hyper's smallest is 8 KiB; a head must fit in it).
const H1_BUF_BYTES: usize = 2 * MAX_HEAD_BYTES;
/// HTTP/2 flow-control windows: one DNS message per stream, four per connection.
const H2_STREAM_WINDOW: u32 = 65_535;
const H2_CONN_WINDOW: u32 = 4 * 65_535;
/// HTTP/2: answer bytes buffered per stream for a client that reads slowly.
const H2_SEND_BUF: usize = 64 << 10;

/// What every DoH connection shares.
pub(super) struct HttpsShared {
    /// The connection state of TCP's code (handler, log, slots, idle), with `transport` =
    /// HTTPS.
    pub(super) conn: Arc<tcp::Shared>,
    pub(super) acceptor: TlsAcceptor,
    /// Longest time from accept to a finished handshake.
    pub(super) handshake: Duration,
}

/// Accepts connections until the task is aborted.
pub(super) async fn serve(listener: Arc<TcpListener>, https: Arc<HttpsShared>) {
    accept_loop(listener, https, Kind::HTTPS, |h, stream, peer| async move {
        connection(stream, peer, &h).await
    })
    .await;
}

impl Listener for HttpsShared {
    fn tcp(&self) -> &tcp::Shared {
        &self.conn
    }
}

/// Serves one connection: the handshake, then HTTP/2 or HTTP/1.1 as ALPN chose, until the
/// client closes or the connection is idle.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    https: &HttpsShared,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let tls = timeout(https.handshake, https.acceptor.accept(stream))
        .await
        .map_err(|_| "tls handshake timed out")??;
    let h2 = tls.get_ref().1.alpn_protocol() == Some(crate::tls::ALPN_H2);
    let conn = Arc::new(Conn::new(peer, Arc::clone(&https.conn)));
    let service = {
        let conn = Arc::clone(&conn);
        hyper::service::service_fn(move |req| Arc::clone(&conn).answer(req))
    };
    let idle = || https.conn.idle();
    if h2 {
        // A TLS record per answer: clients that read a record at a time and take one
        // answer per read (dnsperf) would lose the others (`records.rs`).
        let io = TokioIo::new(RecordPerAnswer::new(tls));
        let c = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_STREAMS)
            .max_header_list_size(u32::try_from(MAX_HEAD_BYTES).unwrap_or(u32::MAX))
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONN_WINDOW)
            .max_send_buf_size(H2_SEND_BUF)
            .serve_connection(io, service);
        drive(c, |c| c.graceful_shutdown(), &conn, idle).await?;
    } else {
        let io = TokioIo::new(tls);
        let c = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(idle())
            .max_header_size(MAX_HEAD_BYTES)
            .max_buf_size(H1_BUF_BYTES)
            .serve_connection(io, service);
        drive(c, |c| c.graceful_shutdown(), &conn, idle).await?;
    }
    Ok(())
}

/// Runs the HTTP connection `c` until it ends, or until it has been idle for `idle()`;
/// then shuts it down gracefully (`shut`), and drops it if that takes another idle period.
async fn drive<C, F>(
    c: C,
    shut: F,
    conn: &Conn,
    idle: impl Fn() -> Duration,
) -> Result<(), hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>>,
    F: FnOnce(Pin<&mut C>),
{
    let mut c = std::pin::pin!(c);
    loop {
        let wait = idle();
        // While a request is being answered, look again after an idle period.
        let at = conn
            .idle_deadline(wait)
            .unwrap_or_else(|| Instant::now() + wait);
        tokio::select! {
            r = c.as_mut() => return r,
            () = sleep_until(at) => {
                if conn.idle_deadline(wait).is_some_and(|d| d <= Instant::now()) {
                    break;
                }
            }
        }
    }
    shut(c.as_mut());
    match timeout(idle(), c).await {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}
