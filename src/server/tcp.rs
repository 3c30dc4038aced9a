//! DNS over TCP (RFC 7766): length-prefixed messages, several per connection.
//!
//! What a hostile client can hold is bounded:
//! - connections: `server.tcp_max_per_client` per client address and
//!   `server.tcp_max_connections` in all; past either, a new connection is closed at once.
//!   When more than three quarters of all slots are taken, idle connections are closed
//!   after one second instead of `tcp_idle_ms` (RFC 7766 §6.2.3);
//! - pipelined queries: at most [`DEPTH`] per connection are being answered or waiting to
//!   be written; past that the connection is not read until an answer is written;
//! - writes: an answer that cannot be written within `tcp_idle_ms` (a client that sends
//!   but never reads) closes the connection.
//!
//! Blocked and cached names are answered at once; forwarded ones are answered as their
//! upstream answers, so answers may come out of order (RFC 7766 §6.2.1.1: clients match
//! them by ID). The connection code is generic over the stream, so that a TLS stream can
//! reuse it.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, timeout};

use super::accept::{Kind, accept_loop};
use super::faults::{Faults, PanicWatch};
use super::slots::ClientSlots;
use crate::handler::{Arrival, Handled, Handler};
use crate::pipeline::{Clock, Transport};
use crate::querylog::{QueryLog, Record};

/// Most queries of one connection answered or waiting to be written at once.
pub(super) const DEPTH: usize = 16;
/// Idle timeout while the connection slots are nearly all taken.
const BUSY_IDLE: Duration = Duration::from_secs(1);

/// What every connection of the service shares.
pub(super) struct Shared {
    pub(super) handler: Arc<Handler>,
    pub(super) log: Option<QueryLog>,
    /// TCP connections held, per client and in all.
    pub(super) conns: Arc<ClientSlots>,
    pub(super) clock: Clock,
    pub(super) faults: Arc<Faults>,
    pub(super) idle: Duration,
    /// What carries these connections' queries (TCP; a TLS listener reuses this code).
    pub(super) transport: Transport,
}

impl Shared {
    /// The idle timeout now: shorter when connections are scarce.
    pub(super) fn idle(&self) -> Duration {
        if self.conns.held() * 4 > self.conns.limit() * 3 {
            self.idle.min(BUSY_IDLE)
        } else {
            self.idle
        }
    }
}

/// Accepts connections until the task is aborted.
pub(super) async fn serve(listener: Arc<TcpListener>, shared: Arc<Shared>) {
    accept_loop(listener, shared, Kind::TCP, |s, stream, peer| async move {
        connection(stream, peer, &s).await
    })
    .await;
}

/// An answer ready to be written, the record to log once it is, and the pipeline slot it
/// holds until then.
type Ready = (Vec<u8>, Option<Record>, OwnedSemaphorePermit);

/// Serves one connection: reads queries and writes answers until the client closes, is
/// idle, or stops reading.
pub(super) async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    shared: &Arc<Shared>,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::unbounded_channel::<Ready>();
    let depth = Arc::new(Semaphore::new(DEPTH));
    let reader = read_queries(&mut rd, peer, shared, tx, depth);
    let writer = async {
        let mut framed = Vec::with_capacity(514);
        while let Some((msg, record, permit)) = rx.recv().await {
            // Logged before the answer is written, like every transport: the log keeps the
            // order in which a client asked. Never awaits.
            if let (Some(log), Some(r)) = (&shared.log, record) {
                log.record(r);
            }
            framed.clear();
            let n = u16::try_from(msg.len()).unwrap_or(u16::MAX);
            framed.extend_from_slice(&n.to_be_bytes());
            framed.extend_from_slice(msg.get(..usize::from(n)).unwrap_or(&msg));
            // A client that sends but never reads must not hold the connection forever.
            timeout(shared.idle, wr.write_all(&framed))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "write deadline")
                })??;
            drop(permit);
        }
        // Every answer is written: close our side (over TLS, a close_notify first).
        let _ = timeout(shared.idle, wr.shutdown()).await;
        Ok::<_, std::io::Error>(())
    };
    tokio::try_join!(reader, writer)?;
    Ok(())
}

/// Reads length-prefixed queries and answers each: at once when it can, otherwise on a task
/// of its own. Ends when the client closes or is idle; answers still due are written.
async fn read_queries<R>(
    rd: &mut R,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    tx: mpsc::UnboundedSender<Ready>,
    depth: Arc<Semaphore>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
{
    let closed = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
    let mut buf = Vec::new();
    loop {
        // The pipeline bound: wait for a free slot before reading the next query.
        let permit = Arc::clone(&depth)
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        let idle = shared.idle();
        let len = match timeout(idle, rd.read_u16()).await {
            Err(_) => return Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(r) => r?,
        };
        buf.resize(usize::from(len), 0);
        timeout(idle, rd.read_exact(&mut buf))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let how = Arrival {
            client: peer,
            transport: shared.transport,
            arrived: Instant::now(),
            now: shared.clock.now(),
        };
        let mut out = Vec::with_capacity(512);
        let handled = std::panic::catch_unwind(AssertUnwindSafe(|| {
            shared.handler.handle_packet(&buf, how, &mut out)
        }));
        let handled = match handled {
            Ok(h) => h,
            Err(p) => {
                shared.faults.panicked("a tcp query", Some(peer), &*p);
                continue;
            }
        };
        match handled {
            Handled::Reply(record) => {
                tx.send((out, record, permit)).map_err(|_| closed())?;
            }
            Handled::Drop(record) => {
                drop(permit);
                if let (Some(log), Some(r)) = (&shared.log, record) {
                    log.record(r);
                }
            }
            Handled::Pending(answer) => {
                let (faults, tx) = (Arc::clone(&shared.faults), tx.clone());
                tokio::spawn(async move {
                    let _watch = PanicWatch {
                        what: "a tcp forward",
                        client: peer,
                        faults,
                    };
                    let (out, record) = answer.run().await;
                    // The connection may be gone meanwhile: nothing to do then.
                    let _ = tx.send((out, record, permit));
                });
            }
        }
    }
}
