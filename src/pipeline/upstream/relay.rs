//! `Relay`: the first UDP attempt of every miss of one UDP listener thread, made from that
//! thread's own loop.
//!
//! Why. A forward run as a tokio task costs a task, a `send`, a wake-up of the pool's
//! reader on another thread, a channel to the task and a wake-up of it, and a `send_to` of
//! the answer: several thread hand-offs and four system calls per query, where a proxy
//! such as dnsdist spends about two. The relay keeps a few connected sockets per upstream
//! server in the listener thread itself: the queries of one batch leave with one
//! `sendmmsg` per socket, the thread waits on its listening socket and its upstream
//! sockets together (one `epoll`), takes answers with one `recvmmsg` per socket and sends
//! them to the clients with the batch's own `sendmmsg`. No task, no other thread and no
//! lock is involved in the common case.
//!
//! Only the first attempt is done here: over UDP, or over the thread's own connection to a
//! `tls://`, `https://` or `quic://` first server (`kept`: a socket in the same epoll, TLS,
//! HTTP/2 and QUIC driven by this loop; `tls`, `https`, `quic`). What follows a first attempt (the next server
//! after a timeout, an error, SERVFAIL or REFUSED; TCP after TC; the retry after
//! BADCOOKIE) is handed back as [`Settled::Resume`] and run by [`Upstream::resume`] on the
//! runtime, exactly as [`Upstream::forward`] would have gone on. So the failover and
//! deadline contract, the cookies and the counters are the same code as before; the relay
//! adds the fast path, not a second protocol.
//!
//! Spoofing defences are those of the shared pool (see `pool`): each socket is bound by
//! the OS to a random ephemeral port and connected to the server (the kernel drops
//! datagrams from anyone else); an answer must match a random ID in flight on that socket,
//! the question (name case-insensitively, type, class) and our client cookie; a socket is
//! replaced by one on a new port after [`MAX_USES`] queries or [`MAX_AGE`]. A thread has at
//! most [`PER_SERVER`] sockets per server in use, plus at most [`MAX_DRAINING`] retired
//! ones still waiting for their last answers.

use std::collections::HashMap;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use tokio::time::Instant;

use super::{Resume, Upstream, UpstreamError};
use crate::dns::wire::{Query, Response, ask_for_validation, write_upstream_query_cookie};
use crate::fdlimit;

mod https;
mod kept;
mod quic;
pub(super) mod sock;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
pub(super) mod tests;
mod tls;

use kept::Kept;
use sock::{Entry, Sock, dispatch, failed, transport};

/// Sockets in use per upstream server, per thread.
pub(super) const PER_SERVER: usize = 4;
/// Queries sent from one socket before it is replaced by one on a new port.
pub(super) const MAX_USES: u32 = 512;
/// Age after which a socket is replaced by one on a new port (and an idle one closed).
pub(super) const MAX_AGE: Duration = Duration::from_secs(60);
/// Most retired sockets still waiting for answers, per thread.
pub(super) const MAX_DRAINING: usize = 16;
/// Most queries in flight on one socket.
const MAX_WAITING: usize = 1024;
/// Answers taken per `recvmmsg`.
const BATCH: usize = 32;
/// Receive buffer per answer (larger than the EDNS payload we advertise).
const DATAGRAM: usize = 4096;
/// Signature verifications of validated answers made per [`Relay::receive`] (about 37 µs
/// each with ECDSA P-256 here): the thread's other clients wait at most that long.
const VERIFICATIONS: usize = 4;
/// The epoll key of the listening socket (sockets count up from 0).
const LISTENER: u64 = u64::MAX;

/// What the relay needs of a forwarded query.
pub trait Relayed {
    /// The query as the client asked it.
    fn query(&self) -> &Query;
    /// When it arrived (the exchange ends by [`Upstream::deadline`] of it).
    fn arrived(&self) -> Instant;
    /// The servers that answer it.
    fn upstream(&self) -> &Upstream;
}

/// A forward whose first attempt is over (or, recursive, whose whole resolution is).
#[derive(Debug)]
pub enum Settled<T> {
    /// The first server answered usably (or the resolution did: the server is
    /// [`RECURSIVE`](crate::pipeline::upstream::RECURSIVE)).
    Answered(T, Response, SocketAddr),
    /// It did not: go on with [`Upstream::resume`].
    Resume(T, Resume),
    /// The whole exchange is over and failed (a recursive miss, resolved whole by
    /// [`Near`](crate::pipeline::upstream::Near)): finish with the error, as
    /// [`Upstream::forward`] would have returned it.
    Failed(T, UpstreamError),
}

/// The forwards of one UDP thread; see the module documentation.
pub struct Relay<T> {
    epoll: Epoll,
    socks: HashMap<u32, Sock<T>, foldhash::fast::RandomState>,
    /// Connections to encrypted servers (`kept`), keyed from the same count as `socks`.
    kept: HashMap<u32, Kept<T>, foldhash::fast::RandomState>,
    /// Per server, the keys of its sockets in use.
    active: Vec<(SocketAddr, Vec<u32>)>,
    /// No attempt in flight ends before this (the earliest end seen since the last scan,
    /// perhaps of a query answered since): [`Relay::expire`] scans the sockets only then.
    /// A deadline per query in a heap kept one entry per query for a whole timeout, answered
    /// or not: megabytes at a hundred thousand misses a second.
    next_due: Option<Instant>,
    next_key: u32,
    /// Sockets that epoll found readable.
    ready: Vec<u32>,
    /// Sockets with queries to send.
    dirty: Vec<u32>,
    draining: usize,
    last_sweep: Instant,
    bufs: Vec<[u8; DATAGRAM]>,
    headers: MultiHeaders<SockaddrStorage>,
}

impl<T> std::fmt::Debug for Relay<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("sockets", &self.socks.len())
            .field("kept", &self.kept.len())
            .finish_non_exhaustive()
    }
}

impl<T: Relayed> Relay<T> {
    /// A relay for the thread that reads `listener`, which it watches too (see
    /// [`Relay::wait`]).
    pub fn new(listener: BorrowedFd<'_>) -> io::Result<Self> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))?;
        Ok(Self {
            epoll,
            socks: HashMap::default(),
            kept: HashMap::default(),
            active: Vec::new(),
            next_due: None,
            next_key: 0,
            ready: Vec::new(),
            dirty: Vec::new(),
            draining: 0,
            last_sweep: Instant::now(),
            bufs: vec![[0u8; DATAGRAM]; BATCH],
            headers: MultiHeaders::preallocate(BATCH, None),
        })
    }

    /// True when no query is in flight (and no connection has protocol work due soon): the
    /// thread may block on its listener alone.
    pub fn idle(&self) -> bool {
        self.socks.values().all(|s| s.waiting.is_empty())
            && self.kept.values().all(|k| k.waiting() == 0 && !k.busy())
    }

    /// True when no query is in flight, nothing waits to be read or sent, and no
    /// connection has protocol work due before `now + least` (a QUIC connection's delayed
    /// acknowledgement, a probe): the thread may block on its listener alone for `least`,
    /// as an idle one does, instead of waiting in the epoll, which costs a system call
    /// more per query.
    pub fn may_nap(&self, now: Instant, least: Duration) -> bool {
        self.ready.is_empty()
            && self.dirty.is_empty()
            && self.socks.values().all(|s| s.waiting.is_empty())
            && self
                .kept
                .values()
                .all(|k| k.waiting() == 0 && k.timer().is_none_or(|t| t >= now + least))
    }

    /// The earliest end of an attempt in flight, when [`Relay::expire`] has work.
    pub fn due(&self) -> Option<Instant> {
        self.next_due
    }

    /// True when [`Relay::wait`] found upstream sockets readable that
    /// [`Relay::receive`] has not read yet.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// A second descriptor of the epoll that [`Relay::wait`] waits on: readable when the
    /// listener or an upstream socket is (for a thread that waits elsewhere too).
    pub fn epoll_fd(&self) -> io::Result<std::os::fd::OwnedFd> {
        self.epoll.0.try_clone()
    }

    /// Queries in flight.
    pub fn waiting(&self) -> usize {
        self.socks.values().map(|s| s.waiting.len()).sum::<usize>()
            + self.kept.values().map(Kept::waiting).sum::<usize>()
    }

    /// Registers the first attempt of `item` at its first server; the query leaves with
    /// [`Relay::flush`]. Gives `item` back when the relay cannot take it (no server, an
    /// answer to validate from an encrypted server, past its deadline, no socket, a full
    /// connection): the caller makes the attempt elsewhere.
    pub fn start(&mut self, item: T) -> Result<(), T> {
        let now = Instant::now();
        let up = item.upstream();
        let Some(server) = up.servers.first() else {
            return Err(item);
        };
        // A validated answer is proven here from known zone keys when it can be
        // (`sock::dispatch`), or handed to the validator on the runtime; but only from a
        // plain first server: an encrypted one's validated misses run on the runtime.
        if up.validates(item.query()) && server.link.is_some() {
            return Err(item);
        }
        let end = (now + up.timeout).min(up.deadline(item.arrived()));
        if end <= now {
            return Err(item);
        }
        // What a connection needs (configs, names) is looked up only when one is opened.
        match &server.link {
            None => self.start_udp(item, now, end),
            Some(_) => self.start_kept(item, now, end),
        }
    }

    /// [`Relay::start`] at a plain server.
    fn start_udp(&mut self, item: T, now: Instant, end: Instant) -> Result<(), T> {
        let Some(server) = item.upstream().servers.first() else {
            return Err(item);
        };
        let Some(key) = self.socket_for(server.addr, now) else {
            return Err(item);
        };
        let Some(sock) = self.socks.get_mut(&key) else {
            return Err(item);
        };
        if sock.waiting.len() >= MAX_WAITING {
            return Err(item);
        }
        // At most MAX_WAITING of 65,536 IDs are taken: a free one comes within a few draws.
        let id = loop {
            let id: u16 = rand::random();
            if !sock.waiting.contains_key(&id) {
                break id;
            }
        };
        let (cookie, server_cookie) = server.jar.get();
        let q = item.query();
        let mut msg = Vec::with_capacity(64 + q.question_len());
        let theirs = server_cookie.as_ref().map(|c| c.server());
        write_upstream_query_cookie(&mut msg, q, id, &cookie, theirs);
        if item.upstream().validates(q) {
            ask_for_validation(&mut msg, q);
        }
        server.stats.sent();
        if sock.queued.is_empty() {
            self.dirty.push(key);
        }
        sock.queued.push((id, msg));
        sock.uses = sock.uses.saturating_add(1);
        let strict = server_cookie.is_some();
        sock.waiting.insert(
            id,
            Entry {
                item,
                started: now,
                end,
                cookie,
                strict,
                saw_cookieless: false,
            },
        );
        self.next_due = Some(self.next_due.map_or(end, |d| d.min(end)));
        Ok(())
    }

    /// Sends the queries registered since the last flush, one `sendmmsg` per socket (one
    /// write per TLS connection). A query that cannot be sent is settled at once (its
    /// server failed).
    pub fn flush(&mut self, out: &mut Vec<Settled<T>>) {
        for key in std::mem::take(&mut self.dirty) {
            let Some(sock) = self.socks.get_mut(&key) else {
                self.flush_kept(key, out);
                continue;
            };
            let queued = std::mem::take(&mut sock.queued);
            let mut start = 0;
            while start < queued.len() {
                let rest = queued.get(start..).unwrap_or_default();
                let iovs: Vec<[IoSlice<'_>; 1]> =
                    rest.iter().map(|(_, m)| [IoSlice::new(m)]).collect();
                let to: Vec<Option<SockaddrStorage>> = vec![None; rest.len()];
                match sendmmsg(
                    sock.udp.as_raw_fd(),
                    &mut self.headers,
                    &iovs,
                    &to,
                    [],
                    MsgFlags::MSG_DONTWAIT,
                ) {
                    Ok(res) => match res.count() {
                        0 => break,
                        n => start += n,
                    },
                    Err(Errno::EINTR) => {}
                    Err(e) => {
                        // This one failed (a full buffer, or the server's ICMP error
                        // reported on send): its server failed; the others are tried.
                        let err = io::Error::from(e);
                        let id = queued.get(start).map(|(id, _)| *id);
                        if let Some(entry) = id.and_then(|id| sock.waiting.remove(&id)) {
                            out.push(failed(entry, transport(sock.server, &err)));
                        }
                        start += 1;
                    }
                }
            }
            // Whatever the kernel would not take at all fails like a send error.
            for (id, _) in queued.get(start..).unwrap_or_default() {
                if let Some(entry) = sock.waiting.remove(id) {
                    let err = io::Error::from(io::ErrorKind::WouldBlock);
                    out.push(failed(entry, transport(sock.server, &err)));
                }
            }
        }
    }

    /// Waits up to `most` (less when an attempt ends sooner) for the listener or an upstream
    /// socket to be readable; true when the listener is.
    pub fn wait(&mut self, most: Duration) -> io::Result<bool> {
        let now = Instant::now();
        let until = self
            .next_due
            .map_or(most, |d| d.saturating_duration_since(now))
            .min(most);
        // Rounded up: waking a little late is harmless, early spins.
        let ms = until.as_micros().div_ceil(1000);
        let timeout = EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::NONE);
        let mut events = [EpollEvent::empty(); 16];
        let n = match self.epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        let mut listener = false;
        for e in events.iter().take(n) {
            match e.data() {
                LISTENER => listener = true,
                k => self.ready.push(u32::try_from(k).unwrap_or(u32::MAX)),
            }
        }
        Ok(listener)
    }

    /// Takes the answers that arrived on the sockets [`Relay::wait`] found readable, and
    /// settles the queries they answer.
    pub fn receive(&mut self, out: &mut Vec<Settled<T>>) {
        // Signature verifications of validated answers made here per call; the answers
        // that need more are validated on the runtime.
        let mut budget = VERIFICATIONS;
        for key in std::mem::take(&mut self.ready) {
            let Some(sock) = self.socks.get_mut(&key) else {
                self.drive_kept(key, out);
                continue;
            };
            let mut got: Vec<(usize, usize)> = Vec::with_capacity(BATCH);
            let mut error = None;
            {
                let mut iovs: Vec<[IoSliceMut<'_>; 1]> = self
                    .bufs
                    .iter_mut()
                    .map(|b| [IoSliceMut::new(&mut b[..])])
                    .collect();
                match recvmmsg(
                    sock.udp.as_raw_fd(),
                    &mut self.headers,
                    iovs.iter_mut(),
                    MsgFlags::MSG_DONTWAIT,
                    None,
                ) {
                    Ok(msgs) => got.extend(msgs.enumerate().map(|(i, m)| (i, m.bytes))),
                    Err(Errno::EAGAIN | Errno::EINTR) => {}
                    Err(e) => error = Some(io::Error::from(e)),
                }
            }
            for (i, n) in got {
                let pkt = self
                    .bufs
                    .get(i)
                    .and_then(|b| b.get(..n))
                    .unwrap_or_default();
                if let Some(s) = dispatch(sock, pkt, &mut budget) {
                    out.push(s);
                }
            }
            if let Some(e) = error {
                // The server's ICMP "port unreachable" (or another socket error): every
                // query waiting here has failed at this server, as with the pool.
                tracing::debug!(upstream = %sock.server, error = %e, "upstream socket error");
                for (_, entry) in sock.waiting.drain() {
                    out.push(failed(entry, transport(sock.server, &e)));
                }
            }
        }
        if self.draining > 0 {
            self.sweep(Instant::now(), false);
        }
    }

    /// Settles the queries whose attempt has run out of time by `now`: one scan of the
    /// queries in flight once the earliest deadline has passed.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Settled<T>>) {
        if self.next_due.is_some_and(|d| d <= now) {
            let mut next: Option<Instant> = None;
            for sock in self.socks.values_mut() {
                let soonest = expire_waiting(&mut sock.waiting, sock.server, now, out);
                next = earlier(next, soonest);
            }
            let kept = self.expire_kept(now, out);
            self.next_due = earlier(next, kept);
        }
        self.sweep(now, true);
    }

    /// Closes retired sockets that nothing waits on; once a second (while forwards are in
    /// flight), also sockets of any kind idle past [`MAX_AGE`] (a server no longer
    /// configured keeps none open).
    fn sweep(&mut self, now: Instant, timed: bool) {
        let old = timed && now.duration_since(self.last_sweep) >= Duration::from_secs(1);
        if self.draining == 0 && !old {
            return;
        }
        if old {
            self.last_sweep = now;
        }
        let idle: Vec<u32> = self
            .socks
            .iter()
            .filter(|(_, s)| s.waiting.is_empty() && s.queued.is_empty())
            .filter(|(_, s)| s.retired || (old && now.duration_since(s.born) >= MAX_AGE))
            .map(|(&k, _)| k)
            .collect();
        for k in idle {
            self.close(k);
        }
        if old {
            self.sweep_kept(now);
        }
    }

    fn close(&mut self, key: u32) {
        let Some(sock) = self.socks.remove(&key) else {
            return;
        };
        if sock.retired {
            self.draining = self.draining.saturating_sub(1);
        }
        for (_, keys) in &mut self.active {
            keys.retain(|&k| k != key);
        }
        self.active.retain(|(_, keys)| !keys.is_empty());
        let _ = self.epoll.delete(sock.udp.as_fd());
    }

    /// A socket toward `server` for a new query: a random one of its [`PER_SERVER`], opened
    /// or replaced as needed. `None` when none is open and none can be opened.
    fn socket_for(&mut self, server: SocketAddr, now: Instant) -> Option<u32> {
        let i = match self.active.iter().position(|(a, _)| *a == server) {
            Some(i) => i,
            None => {
                self.active.push((server, Vec::new()));
                self.active.len() - 1
            }
        };
        let have = self.active.get(i).map_or(0, |(_, k)| k.len());
        if have < PER_SERVER {
            if let Some(k) = self.open(server) {
                if let Some((_, keys)) = self.active.get_mut(i) {
                    keys.push(k);
                }
                return Some(k);
            }
            if have == 0 {
                return None;
            }
        }
        let slot = rand::random_range(0..have);
        let key = *self.active.get(i)?.1.get(slot)?;
        let worn = self.socks.get(&key).is_some_and(|s| s.worn(now));
        if !worn || self.draining >= MAX_DRAINING {
            return Some(key);
        }
        let Some(fresh) = self.open(server) else {
            return Some(key);
        };
        if let Some(old) = self.socks.get_mut(&key) {
            old.retired = true;
            self.draining += 1;
        }
        if let Some(k) = self.active.get_mut(i).and_then(|(_, k)| k.get_mut(slot)) {
            *k = fresh;
        }
        Some(fresh)
    }

    fn open(&mut self, server: SocketAddr) -> Option<u32> {
        let sock = match Sock::open(server) {
            Ok(s) => s,
            Err(e) => {
                if !fdlimit::warn_if_exhausted("opening an upstream socket", &e) {
                    tracing::debug!(upstream = %server, error = %e, "cannot open an upstream socket");
                }
                return None;
            }
        };
        let key = self.next_key;
        let event = EpollEvent::new(EpollFlags::EPOLLIN, u64::from(key));
        if let Err(e) = self.epoll.add(sock.udp.as_fd(), event) {
            tracing::debug!(upstream = %server, error = %e, "cannot watch an upstream socket");
            return None;
        }
        self.next_key = self.next_key.wrapping_add(1);
        self.socks.insert(key, sock);
        Some(key)
    }
}

/// Fails the queries of `waiting` whose attempt ends by `now` (timed out at `server`);
/// the earliest end of those left.
fn expire_waiting<T: Relayed>(
    waiting: &mut HashMap<u16, Entry<T>, foldhash::fast::RandomState>,
    server: SocketAddr,
    now: Instant,
    out: &mut Vec<Settled<T>>,
) -> Option<Instant> {
    let due: Vec<u16> = waiting
        .iter()
        .filter(|(_, e)| e.end <= now)
        .map(|(&id, _)| id)
        .collect();
    for id in due {
        let Some(entry) = waiting.remove(&id) else {
            continue;
        };
        if entry.saw_cookieless
            && let Some(s) = entry.item.upstream().servers.first()
        {
            tracing::debug!(upstream = %s.addr, "answers came without a cookie; trusting the server without one");
            s.jar.forget();
        }
        out.push(failed(entry, UpstreamError::Timeout(server)));
    }
    waiting.values().map(|e| e.end).min()
}

/// The earlier of two optional instants.
fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
