//! The UDP hot path: one OS thread per socket. Each wake-up takes a batch of datagrams with
//! one `recvmmsg`, parses them all, prefetches the block list's lines for every name (so
//! that the batch's cache misses overlap; see `Blocklist::prefetch`), hands each to the
//! [`Handler`] (blocked and cached names are answered inline), and sends all those answers
//! with one `sendmmsg`. A miss's first attempt is made from this loop too (the thread's
//! [`Relay`]: its query leaves with the batch's, its answer comes back to this loop and goes
//! out with the next batch's answers); what follows a first attempt that failed runs on
//! the tokio runtime, which sends the answer on the same socket. A miss whose first server
//! speaks TLS, HTTPS or QUIC goes the same way, on the relay's own connection to it (when
//! that one is full, on the thread's own runtime connections, [`Near`], and back the same
//! way). In recursive mode a miss is resolved whole on that runtime of the thread's own
//! (a few at a time; more go to the shared runtime). While forwards are in flight the
//! thread waits for its listener, its upstream sockets and those connections together;
//! when no query is in flight but a QUIC connection has work due later (an answer's
//! acknowledgement), it blocks on its listener alone for at most [`NAP`], as an idle thread
//! does, a system call per miss fewer than the epoll's wait.
//!
//! A panic while parsing or answering one packet is caught and logged with the client's
//! address; the batch goes on. If the loop itself ends, the thread starts it again.
//!
//! Under load a thread pauses after a partial batch (more than one datagram, fewer than a
//! full batch), so that the next `recvmmsg` takes a fuller one: like a NIC's interrupt
//! moderation, one wake-up then serves many queries, which saves the kernel's per-wake-up
//! scheduling work. The pause follows the arrival rate, up to `server.udp_batch_wait_us`
//! ([`batch_pause`]). A lone query (a quiet LAN) never waits, and no query waits longer
//! than the setting.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

use super::batch_pause;
use super::faults::{Faults, PanicWatch};
use crate::dns::wire;
use crate::handler::{Arrival, Handler, Pending, Step};
use crate::pipeline::upstream::{Near, Relay, Resume, Settled};
use crate::pipeline::{Clock, Transport};
use crate::querylog::{QueryLog, Record};

/// How often a blocked receive wakes to look at the stop flag.
const POLL: Duration = Duration::from_millis(200);
/// How long a thread blocks on its listener alone while its relay has no query in flight
/// but a connection has protocol work due later (a QUIC connection's delayed
/// acknowledgement, 25 ms after an answer): a wait that ends before that work is due, as
/// the epoll's would, without the epoll's system call per query. It naps only when that
/// work is at least [`NAP_MARGIN`] further off, the kernel rounding the read timeout up
/// to its clock's ticks; both together shorter than the acknowledgement's delay, so that
/// under load the thread naps between misses.
const NAP: Duration = Duration::from_millis(15);
/// See [`NAP`].
const NAP_MARGIN: Duration = Duration::from_millis(5);
/// The read timeout goes back from `NAP` to `POLL` once the listener has been quiet this
/// long: not at every miss under load, and not 50 wake-ups a second for long after the
/// last query of a quiet LAN.
const NAP_LINGER: Duration = Duration::from_millis(100);
/// Datagrams taken per `recvmmsg`.
const BATCH: usize = 32;
/// Receive buffer per datagram (EDNS payloads above this are not sent by real clients).
const DATAGRAM: usize = 4096;

/// What a UDP thread shares with the rest of the server.
pub(super) struct Shared {
    pub(super) handler: Arc<Handler>,
    pub(super) log: Option<QueryLog>,
    pub(super) rt: tokio::runtime::Handle,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) batch_wait: Duration,
    pub(super) clock: Clock,
    pub(super) faults: Arc<Faults>,
}

pub(super) fn spawn(sock: UdpSocket, sh: Shared) -> std::io::Result<std::thread::JoinHandle<()>> {
    sock.set_read_timeout(Some(POLL))?;
    let name = format!("udp {}", sock.local_addr()?);
    let sock = Arc::new(sock);
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            if !sh.batch_wait.is_zero() {
                // The default slack (50 µs) would double a short pause; 1 µs keeps it as set.
                if let Err(e) = nix::sys::prctl::set_timerslack(1_000) {
                    tracing::debug!(error = %e, "timer slack not set");
                }
            }
            // The socket outlives the loop: a loop that ends is started again on it, so the
            // port never goes away while the process runs.
            loop {
                let r = catch_unwind(AssertUnwindSafe(|| run(&sock, &sh)));
                if sh.stop.load(Ordering::Relaxed) {
                    return;
                }
                let why = match r {
                    Ok(()) => "returned".to_string(),
                    Err(p) => format!("panicked: {}", super::faults::panic_text(&*p)),
                };
                sh.faults.restarted(&name, &why);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
}

/// Makes the listener's read timeout `NAP` (`nap`) or `POLL` when it is not that already
/// (`napping` says which it is); false when it could not be set.
fn read_timeout(sock: &UdpSocket, napping: &mut bool, nap: bool) -> bool {
    if *napping == nap {
        return true;
    }
    match sock.set_read_timeout(Some(if nap { NAP } else { POLL })) {
        Ok(()) => {
            *napping = nap;
            true
        }
        Err(e) => {
            tracing::debug!(error = %e, "udp read timeout not set");
            false
        }
    }
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

fn run(sock: &Arc<UdpSocket>, sh: &Shared) {
    let Shared {
        handler,
        stop,
        batch_wait,
        clock,
        faults,
        ..
    } = sh;
    let log = sh.log.as_ref();
    let fd = sock.as_raw_fd();
    let mut bufs = vec![[0u8; DATAGRAM]; BATCH];
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(1500)).collect();
    let mut rheaders = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut sheaders = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    // Buffer index, length and the sender's address as the kernel gave it: answers go back
    // to it unconverted.
    let mut got: Vec<(usize, usize, SockaddrStorage)> = Vec::with_capacity(BATCH);
    // One query per datagram slot, parsed into in place and reused batch after batch (a
    // `Query` is about 900 bytes: made and moved per packet, it cost more than parsing),
    // and each packet's verdict.
    let mut queries: Vec<wire::Query> = (0..BATCH).map(|_| wire::Query::blank()).collect();
    let mut parsed: Vec<Result<(), wire::Reject>> = Vec::with_capacity(BATCH);
    let mut hashes: Vec<u64> = Vec::new();
    let mut dests: Vec<Option<SockaddrStorage>> = Vec::with_capacity(BATCH);
    // Records of this batch, handed to the log just before the answers are sent (empty
    // when the log is off).
    let mut logged: Vec<Record> = Vec::new();
    // The misses' first attempts, made from this loop; without it (no epoll), every miss
    // runs on the runtime.
    let mut relay = match Relay::<Pending>::new(sock.as_fd()) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(error = %e, "forwarding from the UDP thread is off; misses run on the runtime");
            None
        }
    };
    // The misses whose first server is encrypted, and the recursive ones: on this thread's
    // own connections and resolver, run while it waits (needs the relay's epoll).
    let mut near = match relay.as_ref().map(Near::new) {
        Some(Ok(n)) => Some(n),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "encrypted and recursive misses are not run on the UDP thread; they run on the runtime");
            None
        }
        None => None,
    };
    let mut settled: Vec<Settled<Pending>> = Vec::new();
    // When the last receive that took datagrams returned: the rate that sets the pause.
    let mut last_arrived = tokio::time::Instant::now();
    // The listener's read timeout is `NAP`, not `POLL` (set here: a loop started again
    // after a panic may find it left at `NAP`).
    let mut napping = true;
    read_timeout(sock, &mut napping, false);
    while !stop.load(Ordering::Relaxed) {
        got.clear();
        // With forwards in flight, wait for the listener and the upstream sockets together;
        // else block on the listener alone, as a thread with nothing to wait for: for at
        // most `NAP` while a connection has work due later.
        let waited = match (relay.as_mut(), near.as_mut().filter(|n| !n.idle())) {
            (Some(r), Some(n)) => Some(n.wait(r, POLL)),
            (Some(r), None) if !r.idle() => {
                let nap = r.may_nap(tokio::time::Instant::now(), NAP + NAP_MARGIN)
                    && read_timeout(sock, &mut napping, true);
                (!nap).then(|| r.wait(POLL))
            }
            _ => {
                if napping && last_arrived.elapsed() >= NAP_LINGER {
                    read_timeout(sock, &mut napping, false);
                }
                None
            }
        };
        let flags = match waited {
            None => Some(MsgFlags::MSG_WAITFORONE),
            Some(w) => match w {
                Ok(true) => Some(MsgFlags::MSG_DONTWAIT),
                Ok(false) => None,
                Err(e) => {
                    tracing::debug!(error = %e, "udp wait error");
                    Some(MsgFlags::MSG_DONTWAIT)
                }
            },
        };
        if let Some(flags) = flags {
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            match recvmmsg(fd, &mut rheaders, iovs.iter_mut(), flags, None) {
                Ok(msgs) => {
                    for (i, m) in msgs.enumerate() {
                        if let Some(a) = m.address {
                            got.push((i, m.bytes, a));
                        }
                    }
                }
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                // ICMP errors from earlier sends (ECONNREFUSED) and the like: not fatal.
                Err(e) => tracing::debug!(error = %e, "udp receive error"),
            }
        }
        #[cfg(test)]
        #[allow(clippy::panic)]
        if super::tests::FAIL_NEXT_UDP_BATCH.swap(false, Ordering::Relaxed) {
            panic!("injected udp loop failure");
        }
        // One arrival time and one decision time for the whole batch.
        let arrived = tokio::time::Instant::now();
        let now = clock.now();
        dests.clear();
        // Parse the batch, then touch the list lines of every name before answering any:
        // the misses overlap instead of following one another. A panic is caught per
        // packet, so that one packet costs only its own answer.
        // (`got` holds at most `BATCH` datagrams, one per query slot.)
        parsed.extend(
            got.iter()
                .zip(queries.iter_mut())
                .map(|(&(i, n, from), q)| {
                    let pkt = bufs.get(i).and_then(|b| b.get(..n)).unwrap_or_default();
                    catch_unwind(AssertUnwindSafe(|| wire::parse_query_into(pkt, q)))
                        .unwrap_or_else(|p| {
                            faults.panicked("a udp packet", to_std(&from), &*p);
                            Err(wire::Reject::Drop)
                        })
                }),
        );
        if !got.is_empty()
            && let Err(p) = catch_unwind(AssertUnwindSafe(|| {
                let names = queries
                    .iter()
                    .zip(&parsed)
                    .filter(|(_, v)| v.is_ok())
                    .map(|(q, _)| q.name());
                std::hint::black_box(handler.pipeline().prefetch(names, &mut hashes))
            }))
        {
            faults.panicked("a udp batch prefetch", None, &*p);
        }
        for ((&(_, n, from), q), verdict) in got.iter().zip(&queries).zip(&parsed) {
            let parsed = verdict.as_ref().map(|()| q);
            let Some(src) = to_std(&from) else { continue };
            if outs.len() <= dests.len() {
                outs.push(Vec::with_capacity(1500));
            }
            let Some(out) = outs.get_mut(dests.len()) else {
                break;
            };
            let how = Arrival {
                client: src,
                transport: Transport::Udp,
                arrived,
                now,
            };
            let step = match catch_unwind(AssertUnwindSafe(|| {
                #[cfg(test)]
                super::tests::maybe_panic(parsed);
                handler.handle_into(parsed, n, how, out, |r| logged.push(r))
            })) {
                Ok(s) => s,
                Err(p) => {
                    faults.panicked("a udp query", Some(src), &*p);
                    continue;
                }
            };
            match step {
                Step::Reply => dests.push(Some(from)),
                Step::Drop => {}
                Step::Pending(p) => {
                    let p = match relay.as_mut() {
                        Some(r) => r.start(*p),
                        None => Err(*p),
                    };
                    let p = match (p, near.as_mut()) {
                        (Err(p), Some(n)) => n.start(p),
                        (p, _) => p,
                    };
                    if let Err(p) = p {
                        spawn_forward(sock, sh, p, None);
                    }
                }
            }
        }
        parsed.clear();
        // The misses' queries leave; the answers that came, and the attempts that ran out
        // of time, are settled: answered in this batch, or gone on with on the runtime.
        // Nothing to do (and no clock to read) while no forward is in flight.
        if let Some(r) = relay.as_mut().filter(|r| !r.idle()) {
            r.flush(&mut settled);
            r.receive(&mut settled);
            r.expire(tokio::time::Instant::now(), &mut settled);
        }
        if let Some(n) = near.as_mut() {
            n.settled(&mut settled);
            // Idle, the thread never waits in `Near::wait`, whose sweep drops what a
            // reload left behind (a replaced upstream's connections and resolvers).
            if n.idle() {
                n.sweep(arrived);
            }
        }
        for s in settled.drain(..) {
            let (p, got) = match s {
                Settled::Answered(p, resp, server) => (p, Ok((resp, server))),
                Settled::Failed(p, e) => (p, Err(e)),
                Settled::Resume(p, r) => {
                    spawn_forward(sock, sh, p, Some(r));
                    continue;
                }
            };
            let client = p.client();
            match catch_unwind(AssertUnwindSafe(|| p.finish(got))) {
                Ok((bytes, record)) => {
                    logged.extend(record);
                    // Empty: response-rate limiting dropped the answer.
                    if !bytes.is_empty() {
                        match outs.get_mut(dests.len()) {
                            Some(o) => *o = bytes,
                            None => outs.push(bytes),
                        }
                        dests.push(Some(SockaddrStorage::from(client)));
                    }
                }
                Err(p) => faults.panicked("a udp forward", Some(client), &*p),
            }
        }
        // The records go to the log before the answers leave: a client that asks again
        // once answered (from another port, which may reach another thread) finds its
        // queries logged in the order it asked them. One queue operation per batch.
        if let Some(log) = log
            && !logged.is_empty()
        {
            // The next batch's vector: one the writer emptied, else one sized at once
            // (grown a push at a time, its records would be moved several times).
            log.record_batch(std::mem::replace(&mut logged, log.batch_vec(got.len())));
        }
        send_batch(
            fd,
            &mut sheaders,
            outs.get(..dests.len()).unwrap_or_default(),
            &dests,
        );
        #[cfg(test)]
        super::tests::after_send(queries.get(..got.len()).unwrap_or_default());
        // Answers of a large settled batch may have grown the buffers: keep a batch's worth.
        outs.truncate(2 * BATCH);
        // The rate is the listener's: wake-ups for upstream answers alone do not count.
        if !got.is_empty() {
            let since = arrived.saturating_duration_since(last_arrived);
            last_arrived = arrived;
            if let Some(pause) = batch_pause::after(got.len(), BATCH, since, *batch_wait) {
                std::thread::sleep(pause);
            }
        }
    }
}

/// Runs a forward on the runtime (the whole of it, or what follows the relay's first
/// attempt), then logs it and sends its answer on `sock`.
fn spawn_forward(sock: &Arc<UdpSocket>, sh: &Shared, p: Pending, resume: Option<Resume>) {
    let (sock, faults) = (Arc::clone(sock), Arc::clone(&sh.faults));
    let log = sh.log.clone();
    let client = p.client();
    sh.rt.spawn(async move {
        let _watch = PanicWatch {
            what: "a udp forward",
            client,
            faults,
        };
        let (out, record) = match resume {
            Some(r) => p.resume(r).await,
            None => p.run().await,
        };
        // Logged before it is sent, as on the UDP thread: the log keeps the order in
        // which a client asked.
        if let (Some(log), Some(r)) = (log, record) {
            log.record(r);
        }
        // Empty: response-rate limiting dropped the answer.
        if !out.is_empty()
            && let Err(e) = sock.send_to(&out, client)
        {
            tracing::debug!(error = %e, %client, "udp send failed");
        }
    });
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
        let (Some(outs), Some(dests)) = (outs.get(start..), dests.get(start..)) else {
            return;
        };
        let iovs: Vec<[IoSlice<'_>; 1]> = outs.iter().map(|o| [IoSlice::new(o)]).collect();
        match sendmmsg(fd, headers, &iovs, dests, [], MsgFlags::empty()) {
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
