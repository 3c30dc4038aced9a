//! `Pool`: the UDP sockets toward one upstream server, shared by every forwarded query.
//!
//! A pool holds at most [`SOCKETS`] connected sockets, opened on demand, each bound by the OS
//! to a random ephemeral port. A query takes a slot at random and a random message ID not
//! in flight on that socket, and registers a waiter; one reader task per socket hands each
//! datagram to the waiter whose ID, question (name case-insensitively, type, class) and
//! client cookie it matches, through a `oneshot`. Anything else (a late answer to an
//! abandoned query, a forgery) is dropped and the waiter keeps waiting, as a socket of its
//! own would. The kernel already
//! drops datagrams from any other address than the server's (the socket is connected), and
//! reports the server's ICMP "port unreachable" as an error, which fails the socket's
//! waiters at once so that they move on to the next server.
//!
//! Why pooled sockets rather than one per query. A socket per query costs a `socket`,
//! `bind`, `connect` and `close`, an epoll registration and a reader per query, and one
//! descriptor per query in flight: a flood of slow names once exhausted the process's
//! descriptors. A pooled socket costs a `send` and a `recv` per query,
//! and the pool's descriptors are bounded whatever the load.
//!
//! What a forger has to guess is unchanged for a given query: the port its query left
//! from (one ephemeral port of the ~28,000 the kernel picks from, the same odds as a socket
//! of its own) and its 16-bit random ID, and then the question it asked, before the real
//! answer comes. What changes: (1) several queries share a port, so a forgery with the right
//! port and any ID in flight there hits one of them; the odds per forged datagram grow with
//! the queries in flight on that socket (at most [`MAX_WAITING`], a handful under ordinary
//! load) but the forgery still needs that query's question and a matching client cookie when
//! the server does cookies, and it can poison only the name it guessed; (2) a port stays
//! open longer, so an attacker who learned it (for example by making us query a server he
//! watches: he then sees the port of that server's pool only, never another server's, since
//! each server has its own sockets) has longer to aim at it. Rotation bounds (2): a socket
//! is retired after [`MAX_USES`] queries or [`MAX_AGE`], whichever comes first, and
//! replaced by a fresh one on a new random port in its slot; the retired socket takes no new
//! query, still receives the answers of the queries already sent from it, and is closed when
//! its last waiter is done (answered or timed out), its reader ending with it. IDs are drawn
//! at random per query and never reused on a socket while the query holding them is in
//! flight; an answer must match the ID, the question and the server (the connected
//! address), and the cookie (RFC 7873) when we sent one, as with a socket per query.
//!
//! At most [`MAX_DRAINING`] retired sockets may be open at once (beyond that a worn socket
//! simply serves on until one has closed), so a pool never holds more than
//! `SOCKETS + MAX_DRAINING` descriptors whatever the load, and at most [`MAX_WAITING`]
//! queries per socket (a query that finds every socket full fails over to the next server).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{Notify, oneshot};

use crate::dns::wire::{self, CookieOption, HEADER_LEN, QR, UpstreamOpt};
use crate::fdlimit;

/// Most sockets per upstream server.
pub(super) const SOCKETS: usize = 64;
/// Queries sent from one socket before it is replaced by one on a new port.
pub(super) const MAX_USES: u32 = 512;
/// Age after which a socket is replaced by one on a new port.
pub(super) const MAX_AGE: Duration = Duration::from_secs(60);
/// Most retired sockets still waiting for their last answers, per server.
pub(super) const MAX_DRAINING: usize = SOCKETS;
/// Most queries in flight on one socket.
pub(super) const MAX_WAITING: usize = 1024;
/// Receive buffer per socket (larger than the EDNS payload we advertise).
const DATAGRAM: usize = 4096;

/// An answer handed to its waiter: the datagram and its OPT facts.
#[derive(Debug)]
pub(super) struct Received {
    /// The whole datagram.
    pub(super) pkt: Vec<u8>,
    /// Extended rcode and COOKIE option (`None`: the message does not parse that far).
    pub(super) opt: Option<UpstreamOpt>,
}

/// What a waiter needs an answer to match besides its ID.
#[derive(Debug)]
pub(super) struct Expect {
    /// The question as sent: lower-case wire name, type, class.
    pub(super) question: Box<[u8]>,
    /// The client cookie sent, if any: an answer must echo it.
    pub(super) cookie: Option<[u8; 8]>,
    /// The server is known to do cookies: an answer without one is not the server's.
    pub(super) strict: bool,
}

struct Waiter {
    /// Which registration this is: IDs are reused, so a ticket withdraws only its own.
    token: u32,
    expect: Expect,
    /// A matching answer came without a cookie and was dropped (`strict` only).
    saw_cookieless: bool,
    tx: oneshot::Sender<io::Result<Received>>,
}

/// The sockets toward one server.
pub(super) struct Pool {
    server: SocketAddr,
    slots: Box<[Mutex<Option<Arc<Sock>>>]>,
    draining: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("server", &self.server)
            .field("draining", &self.draining.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

struct Sock {
    udp: UdpSocket,
    waiters: Mutex<HashMap<u16, Waiter>>,
    uses: AtomicU32,
    born: Instant,
    retired: AtomicBool,
    /// Wakes the reader when a retired socket may have become idle.
    wake: Notify,
}

/// A registered query: its ID on its socket, and where its answer arrives. Dropping it
/// withdraws the waiter.
pub(super) struct Ticket {
    sock: Arc<Sock>,
    id: u16,
    token: u32,
    rx: oneshot::Receiver<io::Result<Received>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves the data consistent (plain inserts
    // and removes), so a poisoned lock is used as is.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Pool {
    /// An empty pool toward `server`; sockets are opened by the first queries.
    pub(super) fn new(server: SocketAddr) -> Self {
        Self {
            server,
            slots: (0..SOCKETS).map(|_| Mutex::new(None)).collect(),
            draining: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Registers a query on a random socket under a random free ID. Fails when no socket
    /// can be opened (the error says why) or every open socket is full.
    pub(super) fn register(&self, expect: Expect) -> io::Result<Ticket> {
        let n = self.slots.len();
        let start = rand::random_range(0..n);
        // At most one open per query: when descriptors are short, the query takes a socket
        // that is already open rather than trying every empty slot.
        let mut may_open = true;
        let mut failed = None;
        let mut expect = expect;
        for k in 0..n {
            let Some(slot) = self.slots.get((start + k) % n) else {
                continue;
            };
            let sock = match self.socket_in(slot, &mut may_open) {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(e) => {
                    failed = Some(e);
                    continue;
                }
            };
            match sock.enlist(expect) {
                Ok(t) => return Ok(t),
                Err(e) => expect = e,
            }
        }
        Err(failed.unwrap_or_else(|| io::Error::other("every upstream socket is busy")))
    }

    /// The socket to use in `slot`: the current one, or a new one when the slot is empty or
    /// its socket is worn (and `may_open`). `Ok(None)`: empty slot, nothing opened.
    fn socket_in(
        &self,
        slot: &Mutex<Option<Arc<Sock>>>,
        may_open: &mut bool,
    ) -> io::Result<Option<Arc<Sock>>> {
        let mut cur = lock(slot);
        if let Some(s) = cur.as_ref() {
            let keep =
                !s.worn() || !*may_open || self.draining.load(Ordering::Relaxed) >= MAX_DRAINING;
            if keep {
                return Ok(Some(Arc::clone(s)));
            }
        } else if !*may_open {
            return Ok(None);
        }
        *may_open = false;
        match Sock::open(self.server, Arc::clone(&self.draining)) {
            Ok(new) => {
                if let Some(old) = cur.replace(Arc::clone(&new)) {
                    old.retire(&self.draining);
                }
                Ok(Some(new))
            }
            Err(e) => {
                if !fdlimit::warn_if_exhausted("opening an upstream socket", &e) {
                    tracing::debug!(upstream = %self.server, error = %e, "cannot open an upstream socket");
                }
                match cur.as_ref() {
                    Some(s) => Ok(Some(Arc::clone(s))),
                    None => Err(e),
                }
            }
        }
    }

    /// Number of sockets open now (slots in use plus retired ones still draining).
    #[cfg(test)]
    pub(super) fn open_sockets(&self) -> usize {
        let active = self.slots.iter().filter(|s| lock(s).is_some()).count();
        active + self.draining.load(Ordering::Relaxed)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Readers end once their last waiter is done, closing the sockets.
        for slot in self.slots.iter() {
            if let Some(s) = lock(slot).take() {
                s.retire(&self.draining);
            }
        }
    }
}

impl Sock {
    /// Opens a socket connected to `server` on a random port, and starts its reader.
    fn open(server: SocketAddr, draining: Arc<AtomicUsize>) -> io::Result<Arc<Self>> {
        let bind: SocketAddr = if server.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let std = std::net::UdpSocket::bind(bind)?;
        std.connect(server)?;
        std.set_nonblocking(true)?;
        let sock = Arc::new(Self {
            udp: UdpSocket::from_std(std)?,
            waiters: Mutex::new(HashMap::new()),
            uses: AtomicU32::new(0),
            born: Instant::now(),
            retired: AtomicBool::new(false),
            wake: Notify::new(),
        });
        tokio::spawn(read(Arc::clone(&sock), draining));
        Ok(sock)
    }

    fn worn(&self) -> bool {
        self.uses.load(Ordering::Relaxed) >= MAX_USES || self.born.elapsed() >= MAX_AGE
    }

    fn retire(&self, draining: &AtomicUsize) {
        if !self.retired.swap(true, Ordering::AcqRel) {
            draining.fetch_add(1, Ordering::Relaxed);
            self.wake.notify_one();
        }
    }

    /// Adds a waiter under a random ID not in flight here; gives `expect` back when full or
    /// retired.
    fn enlist(self: Arc<Self>, expect: Expect) -> Result<Ticket, Expect> {
        let mut w = lock(&self.waiters);
        // Checked under the waiters' lock, as the reader checks before it ends: once a
        // retired socket's reader has seen it idle, nothing can join it (it would never be
        // read).
        if w.len() >= MAX_WAITING || self.retired.load(Ordering::Acquire) {
            return Err(expect);
        }
        // At most MAX_WAITING of 65,536 IDs are taken: a free one comes within a few draws.
        let id = loop {
            let id: u16 = rand::random();
            if !w.contains_key(&id) {
                break id;
            }
        };
        let (tx, rx) = oneshot::channel();
        let token = self.uses.fetch_add(1, Ordering::Relaxed);
        w.insert(
            id,
            Waiter {
                token,
                expect,
                saw_cookieless: false,
                tx,
            },
        );
        drop(w);
        Ok(Ticket {
            sock: self,
            id,
            token,
            rx,
        })
    }

    /// Hands `pkt` to its waiter, if it has one and matches it.
    fn dispatch(&self, pkt: &[u8]) {
        let Some(id) = answer_id(pkt) else {
            return;
        };
        let mut waiters = lock(&self.waiters);
        let Some(w) = waiters.get_mut(&id) else {
            return;
        };
        let split = w.expect.question.len().saturating_sub(4);
        let (name, tail) = w.expect.question.split_at(split);
        if !question_matches(pkt, name, tail) {
            return;
        }
        let opt = wire::response_cookie(pkt);
        match judge_cookie(opt, w.expect.cookie, w.expect.strict) {
            Cookie::Foreign => return,
            Cookie::Missing => {
                w.saw_cookieless = true;
                return;
            }
            Cookie::Fine => {}
        }
        if let Some(w) = waiters.remove(&id) {
            let _ = w.tx.send(Ok(Received {
                pkt: pkt.to_vec(),
                opt,
            }));
        }
    }

    /// Fails every waiter with `e` (the socket reported an error for the server).
    fn fail_all(&self, e: &io::Error) {
        for (_, w) in lock(&self.waiters).drain() {
            let _ = w.tx.send(Err(io::Error::new(e.kind(), e.to_string())));
        }
    }

    fn idle_and_retired(&self) -> bool {
        let w = lock(&self.waiters);
        self.retired.load(Ordering::Acquire) && w.is_empty()
    }
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

/// The ID of `pkt` if it looks like an answer to one of our queries (QR set, one
/// question); `None` for anything else, which is dropped.
pub(super) fn answer_id(pkt: &[u8]) -> Option<u16> {
    let (Some(id), Some(flags), Some(1)) = (u16_at(pkt, 0), u16_at(pkt, 2), u16_at(pkt, 4)) else {
        return None;
    };
    (flags & QR != 0).then_some(id)
}

/// The answer's question is `name` (wire form, compared case-insensitively: the upstream
/// may change the case of what we sent) followed by `tail` (type and class, compared
/// exactly).
pub(super) fn question_matches(pkt: &[u8], name: &[u8], tail: &[u8]) -> bool {
    let Some(got) = pkt.get(HEADER_LEN..HEADER_LEN + name.len() + tail.len()) else {
        return false;
    };
    let (got_name, got_tail) = got.split_at(name.len());
    got_name.eq_ignore_ascii_case(name) && got_tail == tail
}

/// What the COOKIE option of an answer says about who sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cookie {
    /// Not the server's: it does not echo our client cookie, or its option is malformed.
    Foreign,
    /// No cookie from a server known to do cookies: dropped, but noted (the server may
    /// have stopped doing them).
    Missing,
    /// As the server's answer should be (or we sent no cookie).
    Fine,
}

/// Judges the COOKIE option `opt` of an answer to a query that sent client cookie `ours`
/// (`strict`: the server is known to do cookies).
pub(super) fn judge_cookie(
    opt: Option<UpstreamOpt>,
    ours: Option<[u8; 8]>,
    strict: bool,
) -> Cookie {
    let Some(ours) = ours else {
        return Cookie::Fine;
    };
    match opt.map(|o| o.cookie) {
        // RFC 7873 §5.3: an answer that does not echo our client cookie is not from the
        // server.
        Some(CookieOption::Present(c)) if c.client != ours => Cookie::Foreign,
        Some(CookieOption::Malformed) => Cookie::Foreign,
        Some(CookieOption::Present(_)) => Cookie::Fine,
        // A server that does cookies always answers with one.
        Some(CookieOption::Absent) | None if strict => Cookie::Missing,
        Some(CookieOption::Absent) | None => Cookie::Fine,
    }
}

/// The reader of one socket: dispatches answers until the socket is retired and idle.
async fn read(sock: Arc<Sock>, draining: Arc<AtomicUsize>) {
    let mut buf = vec![0u8; DATAGRAM];
    while !sock.idle_and_retired() {
        tokio::select! {
            r = sock.udp.recv(&mut buf) => match r {
                Ok(n) => sock.dispatch(buf.get(..n).unwrap_or_default()),
                Err(e) => {
                    tracing::debug!(error = %e, "upstream socket error");
                    sock.fail_all(&e);
                    if e.kind() != io::ErrorKind::ConnectionRefused {
                        // Not a per-datagram error: do not spin on it.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            },
            () = sock.wake.notified() => {}
        }
    }
    draining.fetch_sub(1, Ordering::Relaxed);
}

impl Ticket {
    /// The message ID to send the query with.
    pub(super) fn id(&self) -> u16 {
        self.id
    }

    /// Sends the query.
    pub(super) async fn send(&self, msg: &[u8]) -> io::Result<()> {
        self.sock.udp.send(msg).await.map(|_| ())
    }

    /// Waits for the matching answer (no time limit: the caller sets one).
    pub(super) async fn answer(&mut self) -> io::Result<Received> {
        match (&mut self.rx).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::other("upstream socket closed")),
        }
    }

    /// Withdraws the waiter (a timeout); true when an answer that matched all but the
    /// cookie was dropped for lack of one, i.e. the server may have stopped doing cookies.
    pub(super) fn abandon(self) -> bool {
        self.withdraw().0.is_some_and(|w| w.saw_cookieless)
    }

    /// Removes this ticket's waiter, if still there; also says whether the socket is now
    /// idle. Once answered, the ID is free and may already belong to another query on this
    /// socket: that waiter (another token) is left alone.
    fn withdraw(&self) -> (Option<Waiter>, bool) {
        let mut w = lock(&self.sock.waiters);
        let mine = w
            .get(&self.id)
            .is_some_and(|x| x.token == self.token)
            .then(|| w.remove(&self.id))
            .flatten();
        (mine, w.is_empty())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let (_, idle) = self.withdraw();
        if idle && self.sock.retired.load(Ordering::Acquire) {
            self.sock.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests;
