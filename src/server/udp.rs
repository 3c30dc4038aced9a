//! The UDP hot path: one OS thread per socket. Each wake-up takes a batch of datagrams with
//! one `recvmmsg`, answers the blocked and cached ones inline, and sends all those answers
//! with one `sendmmsg`; misses are spawned onto the tokio runtime, which sends their answer
//! on the same socket. A bounded number of forwards may be in flight; past it a query gets
//! SERVFAIL at once rather than queueing without bound.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

use crate::dns::wire;
use crate::handler::{Handled, handle};
use crate::pipeline::Pipeline;

/// Most forwards in flight per socket.
const MAX_INFLIGHT: usize = 8192;
/// How often a blocked receive wakes to look at the stop flag.
const POLL: Duration = Duration::from_millis(200);
/// Datagrams taken per `recvmmsg`.
const BATCH: usize = 32;
/// Receive buffer per datagram (EDNS payloads above this are not sent by real clients).
const DATAGRAM: usize = 4096;

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

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

fn run(
    sock: &Arc<UdpSocket>,
    pipeline: &Arc<Pipeline>,
    rt: &tokio::runtime::Handle,
    stop: &AtomicBool,
) {
    let fd = sock.as_raw_fd();
    let inflight = Arc::new(AtomicUsize::new(0));
    let mut bufs = vec![[0u8; DATAGRAM]; BATCH];
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(1500)).collect();
    let mut rheaders = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut sheaders = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut got: Vec<(usize, SocketAddr)> = Vec::with_capacity(BATCH);
    let mut dests: Vec<Option<SockaddrStorage>> = Vec::with_capacity(BATCH);
    while !stop.load(Ordering::Relaxed) {
        got.clear();
        {
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            match recvmmsg(
                fd,
                &mut rheaders,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(msgs) => {
                    for m in msgs {
                        if let Some(a) = m.address.as_ref().and_then(to_std) {
                            got.push((m.bytes, a));
                        }
                    }
                }
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                // ICMP errors from earlier sends (ECONNREFUSED) and the like: not fatal.
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive error");
                    continue;
                }
            }
        }
        let arrived = tokio::time::Instant::now();
        dests.clear();
        for (i, &(n, src)) in got.iter().enumerate() {
            let out = &mut outs[dests.len()];
            match handle(pipeline, &bufs[i][..n], false, out) {
                Handled::Reply(_) => dests.push(Some(SockaddrStorage::from(src))),
                Handled::Drop => {}
                Handled::Forward(q) => {
                    if inflight.load(Ordering::Relaxed) >= MAX_INFLIGHT {
                        wire::write_error(
                            out,
                            q.id,
                            q.flags,
                            Some(&q),
                            wire::rcode::SERVFAIL,
                            None,
                        );
                        dests.push(Some(SockaddrStorage::from(src)));
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
                        if let Err(e) = sock.send_to(&out, src) {
                            tracing::debug!(error = %e, client = %src, "udp send failed");
                        }
                        inflight.fetch_sub(1, Ordering::Relaxed);
                    });
                }
            }
        }
        send_batch(fd, &mut sheaders, &outs[..dests.len()], &dests);
    }
}

/// Sends `outs[i]` to `dests[i]` with as few `sendmmsg` calls as the kernel allows.
fn send_batch(
    fd: std::os::fd::RawFd,
    headers: &mut MultiHeaders<SockaddrStorage>,
    outs: &[Vec<u8>],
    dests: &[Option<SockaddrStorage>],
) {
    let mut start = 0;
    while start < outs.len() {
        let iovs: Vec<[IoSlice<'_>; 1]> = outs[start..].iter().map(|o| [IoSlice::new(o)]).collect();
        match sendmmsg(fd, headers, &iovs, &dests[start..], [], MsgFlags::empty()) {
            Ok(res) => {
                let sent = res.count();
                if sent == 0 {
                    return;
                }
                start += sent;
            }
            Err(Errno::EINTR) => {}
            Err(e) => {
                // One bad destination must not cost the others their answers: skip it.
                tracing::debug!(error = %e, "udp send failed");
                start += 1;
            }
        }
    }
}
