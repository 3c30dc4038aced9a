//! The UDP hot path: one OS thread per socket, blocking `recv_from`, blocked and cached
//! answers written and sent inline; misses spawned onto the tokio runtime, which sends their
//! answer on the same socket. A bounded number of forwards may be in flight; past it a
//! query gets SERVFAIL at once rather than queueing without bound.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::dns::wire;
use crate::handler::{Handled, handle};
use crate::pipeline::Pipeline;

/// Most forwards in flight per socket.
const MAX_INFLIGHT: usize = 8192;
/// How often a blocked `recv_from` wakes to look at the stop flag.
const POLL: Duration = Duration::from_millis(200);

pub(super) fn spawn(
    sock: UdpSocket,
    pipeline: Arc<Pipeline>,
    rt: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    sock.set_read_timeout(Some(POLL))?;
    let name = format!("udp {}", sock.local_addr()?);
    let sock = Arc::new(sock);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || run(&sock, &pipeline, &rt, &stop))
}

fn run(
    sock: &Arc<UdpSocket>,
    pipeline: &Arc<Pipeline>,
    rt: &tokio::runtime::Handle,
    stop: &AtomicBool,
) {
    let inflight = Arc::new(AtomicUsize::new(0));
    let mut buf = [0u8; 4096];
    let mut out = Vec::with_capacity(1500);
    while !stop.load(Ordering::Relaxed) {
        let (n, src) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            // ICMP errors from earlier sends (ECONNREFUSED) and the like: not fatal.
            Err(e) => {
                tracing::debug!(error = %e, "udp receive error");
                continue;
            }
        };
        let arrived = tokio::time::Instant::now();
        match handle(pipeline, &buf[..n], false, &mut out) {
            Handled::Reply(_) => send(sock, &out, src),
            Handled::Drop => {}
            Handled::Forward(q) => {
                if inflight.load(Ordering::Relaxed) >= MAX_INFLIGHT {
                    wire::write_error(
                        &mut out,
                        q.id,
                        q.flags,
                        Some(&q),
                        wire::rcode::SERVFAIL,
                        None,
                    );
                    send(sock, &out, src);
                    continue;
                }
                inflight.fetch_add(1, Ordering::Relaxed);
                let (sock, pipeline, inflight) = (
                    Arc::clone(sock),
                    Arc::clone(pipeline),
                    Arc::clone(&inflight),
                );
                rt.spawn(async move {
                    let mut out = Vec::with_capacity(1500);
                    let limit = q.udp_limit();
                    pipeline
                        .resolve_upstream(&q, arrived, &mut out, limit)
                        .await;
                    send(&sock, &out, src);
                    inflight.fetch_sub(1, Ordering::Relaxed);
                });
            }
        }
    }
}

fn send(sock: &UdpSocket, out: &[u8], to: std::net::SocketAddr) {
    if let Err(e) = sock.send_to(out, to) {
        tracing::debug!(error = %e, client = %to, "udp send failed");
    }
}
