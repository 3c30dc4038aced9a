//! One socket of a [`Relay`](super::Relay) toward one server, the queries in flight on it,
//! and what an answer (or a failure) settles: the matching of answers to queries (ID,
//! question, cookie) and the first attempt's verdict, in the same terms as
//! [`Upstream::forward`](super::super::Upstream::forward)'s.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};

use tokio::time::Instant;

use super::super::pool::{Cookie, answer_id, judge_cookie, question_matches};
use super::super::{Resume, Step, Then, UpstreamError};
use super::{MAX_AGE, MAX_USES, Relayed, Settled};
use crate::dns::wire::{
    CookieOption, RCODE_BADCOOKIE, Response, ResponseError, rcode, response_cookie,
};

/// A query in flight on a socket.
pub(super) struct Entry<T> {
    pub(super) item: T,
    pub(super) started: Instant,
    pub(super) end: Instant,
    pub(super) cookie: [u8; 8],
    /// The server is known to do cookies.
    pub(super) strict: bool,
    /// A matching answer without a cookie was dropped (`strict` only).
    pub(super) saw_cookieless: bool,
}

pub(super) struct Sock<T> {
    pub(super) udp: UdpSocket,
    pub(super) server: SocketAddr,
    pub(super) waiting: HashMap<u16, Entry<T>, foldhash::fast::RandomState>,
    /// Queries of this batch not sent yet: (ID, message).
    pub(super) queued: Vec<(u16, Vec<u8>)>,
    pub(super) uses: u32,
    pub(super) born: Instant,
    pub(super) retired: bool,
}

impl<T> Sock<T> {
    pub(super) fn open(server: SocketAddr) -> io::Result<Self> {
        Ok(Self {
            udp: connected_udp(server)?,
            server,
            waiting: HashMap::default(),
            queued: Vec::new(),
            uses: 0,
            born: Instant::now(),
            retired: false,
        })
    }

    pub(super) fn worn(&self, now: Instant) -> bool {
        self.uses >= MAX_USES || now.duration_since(self.born) >= MAX_AGE
    }
}

/// A non-blocking UDP socket on a port the OS picks at random, connected to `server` (the
/// kernel drops datagrams from anyone else).
pub(super) fn connected_udp(server: SocketAddr) -> io::Result<UdpSocket> {
    let bind: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let udp = UdpSocket::bind(bind)?;
    udp.connect(server)?;
    udp.set_nonblocking(true)?;
    Ok(udp)
}

/// The query that `pkt` answers on `sock`, settled; `None` when it answers none (late,
/// forged, or a cookieless answer from a server that does cookies).
pub(super) fn dispatch<T: Relayed>(
    sock: &mut Sock<T>,
    pkt: &[u8],
    budget: &mut usize,
) -> Option<Settled<T>> {
    let id = answer_id(pkt)?;
    let entry = sock.waiting.get_mut(&id)?;
    let q = entry.item.query();
    let ([t0, t1], [c0, c1]) = (q.qtype.to_be_bytes(), q.qclass.to_be_bytes());
    let tail = [t0, t1, c0, c1];
    if !question_matches(pkt, q.wire_name(), &tail) {
        return None;
    }
    let opt = response_cookie(pkt);
    match judge_cookie(opt, Some(entry.cookie), entry.strict) {
        Cookie::Foreign => return None,
        Cookie::Missing => {
            entry.saw_cookieless = true;
            return None;
        }
        Cookie::Fine => {}
    }
    let entry = sock.waiting.remove(&id)?;
    let up = entry.item.upstream();
    let server = up.servers.first()?;
    if let Some(CookieOption::Present(c)) = opt.map(|o| o.cookie) {
        server.jar.learn(&c);
    }
    if opt.is_some_and(|o| o.rcode == RCODE_BADCOOKIE) {
        tracing::debug!(upstream = %server.addr, "BADCOOKIE; retrying with the new server cookie");
        return Some(again(entry, Step::UdpAfterBadCookie));
    }
    match Response::parse(pkt, entry.item.query(), id, up.min_ttl, up.max_ttl) {
        Ok(r)
            if up.validates(entry.item.query())
                && !matches!(r.rcode(), rcode::SERVFAIL | rcode::REFUSED) =>
        {
            // Proven here from known zone keys (within the batch's `budget` of signature
            // verifications), or handed to the validator with the answer, which the
            // server gave all the same.
            let q = entry.item.query();
            match up.quick_validation(q, r.wire(), server.addr, budget) {
                Some(validated) => Some(verdict(entry, validated)),
                None => {
                    server.stats.answered(entry.started.elapsed());
                    Some(resume(entry, Then::Validate(r.wire().into())))
                }
            }
        }
        Ok(r) => Some(verdict(entry, r)),
        Err(ResponseError::Truncated) => Some(again(entry, Step::Tcp)),
        Err(ResponseError::Malformed | ResponseError::Mismatch) => {
            let e = UpstreamError::Malformed(server.addr);
            Some(failed(entry, e))
        }
    }
}

/// The verdict on an answer that parsed, the first server's: SERVFAIL and REFUSED fail the
/// server (the forward goes on at the next), anything else answers.
pub(super) fn verdict<T: Relayed>(entry: Entry<T>, r: Response) -> Settled<T> {
    let Some(server) = entry.item.upstream().servers.first() else {
        let nobody = SocketAddr::from(([0, 0, 0, 0], 0));
        return failed(entry, UpstreamError::Malformed(nobody));
    };
    let addr = server.addr;
    if matches!(r.rcode(), rcode::SERVFAIL | rcode::REFUSED) {
        return failed(entry, UpstreamError::Rcode(addr, rcode::name(r.rcode())));
    }
    server.stats.answered(entry.started.elapsed());
    Settled::Answered(entry.item, r, addr)
}

/// The verdict on an encrypted server's answer `msg` (with message ID `id`): one that does
/// not parse is broken (TC too: there is no larger transport to go to), as on the runtime.
pub(super) fn encrypted_verdict<T: Relayed>(entry: Entry<T>, msg: &[u8], id: u16) -> Settled<T> {
    let up = entry.item.upstream();
    match Response::parse(msg, entry.item.query(), id, up.min_ttl, up.max_ttl) {
        Ok(r) => verdict(entry, r),
        Err(_) => {
            let addr = up
                .servers
                .first()
                .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |s| s.addr);
            failed(entry, UpstreamError::Malformed(addr))
        }
    }
}

pub(super) fn transport(server: SocketAddr, e: &io::Error) -> UpstreamError {
    UpstreamError::Transport(server, e.to_string())
}

/// The first server failed with `e`: counted, and the forward goes on with the next.
pub(super) fn failed<T: Relayed>(entry: Entry<T>, e: UpstreamError) -> Settled<T> {
    first_failed(entry.item, entry.started, entry.end, e)
}

/// [`failed`] for a first attempt made anywhere (a relay socket, a thread's encrypted
/// connection): `item`'s first server, tried from `started` until `end`, failed with `e`.
pub(in crate::pipeline::upstream) fn first_failed<T: Relayed>(
    item: T,
    started: Instant,
    end: Instant,
    e: UpstreamError,
) -> Settled<T> {
    if let Some(server) = item.upstream().servers.first() {
        server.stats.error();
        tracing::debug!(qname = %item.query().name_lossy(), upstream = %server.addr, error = %e, "upstream attempt failed");
    }
    Settled::Resume(
        item,
        Resume {
            server: 0,
            started,
            end,
            then: Then::Next(e),
        },
    )
}

/// The first server's attempt goes on from `step` (TCP after TC, UDP after BADCOOKIE).
fn again<T>(entry: Entry<T>, step: Step) -> Settled<T> {
    resume(entry, Then::Again(step))
}

/// The forward goes on at the first server's index with `then`, within the attempt's times.
pub(super) fn resume<T>(entry: Entry<T>, then: Then) -> Settled<T> {
    Settled::Resume(
        entry.item,
        Resume {
            server: 0,
            started: entry.started,
            end: entry.end,
            then,
        },
    )
}
