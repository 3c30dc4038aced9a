//! The relay's kept connections to encrypted servers: DNS over TLS ([`tls::Stream`]), DNS
//! over HTTPS ([`https::Conn`]) and DNS over QUIC ([`quic::Conn`]), one per upstream set's
//! first server per thread, and the relay's part in them. A connection is found or opened by the first miss that needs
//! it, written when the relay flushes, driven when the epoll finds it ready, watched for
//! writability exactly while it has bytes the socket did not take, given up when a query's
//! attempt outlives its opening, and closed when it breaks or idles for `IDLE`. An idle one
//! is read once before reuse after [`PROBE_AFTER`], so that a close by the server costs
//! one system call, not a failed attempt.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Duration;

use hyper::Uri;
use nix::sys::epoll::{EpollEvent, EpollFlags};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::time::Instant;

use super::super::Server;
use super::super::encrypted::{IDLE, Link};
use super::sock::Entry;
use super::{Relay, Relayed, Settled, expire_waiting, https, quic, tls};
use crate::fdlimit;

/// A connection idle this long is read once (for a close by the server) before reuse.
const PROBE_AFTER: Duration = Duration::from_secs(1);

/// What a kept connection is opened with.
enum Session {
    /// DNS over TLS: the client config and the server's name.
    Tls(Arc<ClientConfig>, ServerName<'static>),
    /// DNS over HTTPS: the same, and the URL the queries go to.
    Https(Arc<ClientConfig>, ServerName<'static>, Uri),
    /// DNS over QUIC: the client config (QUIC's) and the server's name.
    Quic(quinn_proto::ClientConfig, String),
}

impl Session {
    /// What a connection to the server of `link` needs; `None` when its config or name is
    /// unusable (every attempt there fails on the runtime, with the reason).
    fn of(link: &Link) -> Option<Self> {
        if let Some((c, n)) = link.tls_session() {
            Some(Self::Tls(c, n))
        } else if let Some((c, n, u)) = link.https_session() {
            Some(Self::Https(c, n, u))
        } else {
            link.quic_session().map(|(c, n)| Self::Quic(c, n))
        }
    }
}

/// The protocol of a kept connection.
enum Wire<T> {
    Tls(Box<tls::Stream<T>>),
    Https(Box<https::Conn<T>>),
    Quic(Box<quic::Conn<T>>),
}

/// One kept connection and what the relay keeps about it.
pub(super) struct Kept<T> {
    wire: Wire<T>,
    /// The upstream set whose first server this is: kept, so that its address (what the
    /// relay finds the connection by) cannot be another set's while the connection lives.
    set: Arc<[Server]>,
    /// The epoll watches it for writability too.
    watch_out: bool,
    /// Queries were added since the relay's last flush.
    dirty: bool,
    used: Instant,
}

impl<T: Relayed> Kept<T> {
    fn fd(&self) -> BorrowedFd<'_> {
        match &self.wire {
            Wire::Tls(s) => s.tcp.as_fd(),
            Wire::Https(c) => c.tcp.as_fd(),
            Wire::Quic(c) => c.udp.as_fd(),
        }
    }

    /// The server it is connected to.
    fn server(&self) -> SocketAddr {
        match &self.wire {
            Wire::Tls(s) => s.server(),
            Wire::Https(c) => c.server(),
            Wire::Quic(c) => c.server(),
        }
    }

    /// Queries in flight on it.
    pub(super) fn waiting(&self) -> usize {
        match &self.wire {
            Wire::Tls(s) => s.waiting.len(),
            Wire::Https(c) => c.waiting(),
            Wire::Quic(c) => c.waiting(),
        }
    }

    fn full(&self) -> bool {
        match &self.wire {
            Wire::Tls(s) => s.full(),
            Wire::Https(c) => c.full(),
            Wire::Quic(c) => c.full(),
        }
    }

    fn opening(&self) -> bool {
        match &self.wire {
            Wire::Tls(s) => s.opening(),
            Wire::Https(c) => c.opening(),
            Wire::Quic(c) => c.opening(),
        }
    }

    fn wants_out(&self) -> bool {
        match &self.wire {
            Wire::Tls(s) => s.wants_out(),
            Wire::Https(c) => c.wants_out(),
            // A datagram the socket would not take is lost, and resent by QUIC's timers.
            Wire::Quic(_) => false,
        }
    }

    /// Reads and writes what the socket's readiness allows (it was found readable);
    /// settles answers into `out`.
    fn drive(&mut self, out: &mut Vec<Settled<T>>) -> io::Result<()> {
        match &mut self.wire {
            Wire::Tls(s) => s.drive(out),
            Wire::Https(c) => {
                c.readable();
                c.drive(out)
            }
            Wire::Quic(c) => c.drive(out),
        }
    }

    /// Writes the queries added since the last flush.
    fn write(&mut self, out: &mut Vec<Settled<T>>) -> io::Result<()> {
        self.dirty = false;
        match &mut self.wire {
            Wire::Tls(s) => s.write_out(),
            Wire::Https(c) => c.drive(out),
            Wire::Quic(c) => c.write(out),
        }
    }

    fn fail_all(&mut self, e: &io::Error, out: &mut Vec<Settled<T>>) {
        match &mut self.wire {
            Wire::Tls(s) => s.fail_all(e, out),
            Wire::Https(c) => c.fail_all(e, out),
            Wire::Quic(c) => c.fail_all(e, out),
        }
    }

    /// Fails the queries whose attempt ends by `now`; the earliest end of those left.
    fn expire(&mut self, now: Instant, out: &mut Vec<Settled<T>>) -> Option<Instant> {
        match &mut self.wire {
            Wire::Tls(s) => {
                let server = s.server();
                expire_waiting(&mut s.waiting, server, now, out)
            }
            Wire::Https(c) => c.expire(now, out),
            Wire::Quic(c) => c.expire(now, out),
        }
    }

    /// Its protocol's next timer (QUIC's), which the relay's wait must not sleep past.
    pub(super) fn timer(&self) -> Option<Instant> {
        match &self.wire {
            Wire::Quic(c) => c.timer(),
            Wire::Tls(_) | Wire::Https(_) => None,
        }
    }

    /// True while it has work due soon even with no query in flight (QUIC's
    /// acknowledgements): the relay is not idle.
    pub(super) fn busy(&self) -> bool {
        match &self.wire {
            Wire::Quic(c) => c.busy(),
            Wire::Tls(_) | Wire::Https(_) => false,
        }
    }

    /// True when it has frames to write that were made since its last write (DoH's resets
    /// after an expiry).
    fn woken(&self) -> bool {
        match &self.wire {
            Wire::Tls(_) | Wire::Quic(_) => false,
            Wire::Https(c) => c.woken(),
        }
    }
}

impl<T: Relayed> Relay<T> {
    /// [`Relay::start`] at an encrypted server, on this thread's connection to it.
    pub(super) fn start_kept(&mut self, item: T, now: Instant, end: Instant) -> Result<(), T> {
        let Some(key) = self.kept_for(&item, now) else {
            return Err(item);
        };
        let Some(k) = self.kept.get_mut(&key) else {
            return Err(item);
        };
        if k.full() {
            return Err(item);
        }
        let entry = Entry {
            item,
            started: now,
            end,
            cookie: [0; 8],
            strict: false,
            saw_cookieless: false,
        };
        match &mut k.wire {
            Wire::Tls(s) => s.add(entry).map_err(|e| e.item)?,
            Wire::Https(c) => c.add(entry),
            Wire::Quic(c) => c.add(entry).map_err(|e| e.item)?,
        }
        if let Some(server) = k.set.first() {
            server.stats.sent();
        }
        k.used = now;
        if !k.dirty {
            k.dirty = true;
            self.dirty.push(key);
        }
        self.next_due = Some(self.next_due.map_or(end, |d| d.min(end)));
        Ok(())
    }

    /// This thread's connection for the first server of `item`'s upstream set, opened if
    /// there is none (or the server closed the one there was). `None` when none can be
    /// opened.
    fn kept_for(&mut self, item: &T, now: Instant) -> Option<u32> {
        let set = &item.upstream().servers;
        let found = self
            .kept
            .iter()
            .find(|(_, k)| Arc::ptr_eq(&k.set, set))
            .map(|(&k, _)| k);
        if let Some(key) = found {
            let k = self.kept.get_mut(&key)?;
            if k.waiting() > 0 || now.duration_since(k.used) < PROBE_AFTER {
                return Some(key);
            }
            // Idle a while: the server may have closed it. A read that finds nothing costs
            // one system call; one that finds the close saves a failed attempt.
            let mut none = Vec::new();
            if k.drive(&mut none).is_ok() {
                self.watch(key);
                return Some(key);
            }
            self.close_kept(key);
        }
        let first = set.first()?;
        let server = first.addr;
        let wire = match first.link.as_ref().and_then(Session::of)? {
            Session::Tls(config, name) => {
                tls::Stream::open(server, config, name).map(|s| Wire::Tls(Box::new(s)))
            }
            Session::Https(config, name, uri) => {
                https::Conn::open(server, config, name, uri).map(|c| Wire::Https(Box::new(c)))
            }
            Session::Quic(config, name) => {
                quic::Conn::open(server, config, &name).map(|c| Wire::Quic(Box::new(c)))
            }
        };
        let wire = match wire {
            Ok(w) => w,
            Err(e) => {
                if !fdlimit::warn_if_exhausted("connecting to an encrypted upstream", &e) {
                    tracing::debug!(upstream = %server, error = %e, "cannot connect to an encrypted upstream");
                }
                return None;
            }
        };
        let kept = Kept {
            wire,
            set: Arc::clone(set),
            watch_out: true,
            dirty: false,
            used: now,
        };
        let key = self.next_key;
        let event = EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT, u64::from(key));
        if let Err(e) = self.epoll.add(kept.fd(), event) {
            tracing::debug!(upstream = %server, error = %e, "cannot watch an upstream connection");
            return None;
        }
        self.next_key = self.next_key.wrapping_add(1);
        self.kept.insert(key, kept);
        tracing::debug!(upstream = %server, "encrypted upstream connection opening (udp thread)");
        Some(key)
    }

    /// Writes a connection's new queries; a broken one fails them and is closed.
    pub(super) fn flush_kept(&mut self, key: u32, out: &mut Vec<Settled<T>>) {
        let Some(k) = self.kept.get_mut(&key) else {
            return;
        };
        match k.write(out) {
            Ok(()) => {
                self.next_due = super::earlier(self.next_due, k.timer());
                self.watch(key);
            }
            Err(e) => self.broken(key, &e, out),
        }
    }

    /// Does what a connection's readiness allows.
    pub(super) fn drive_kept(&mut self, key: u32, out: &mut Vec<Settled<T>>) {
        let Some(k) = self.kept.get_mut(&key) else {
            return;
        };
        match k.drive(out) {
            Ok(()) => {
                self.next_due = super::earlier(self.next_due, k.timer());
                self.watch(key);
            }
            Err(e) => self.broken(key, &e, out),
        }
    }

    /// Fails the queries of the kept connections that ran out of time by `now`, and gives up
    /// the connections still opening when one did; the earliest end of those left.
    pub(super) fn expire_kept(
        &mut self,
        now: Instant,
        out: &mut Vec<Settled<T>>,
    ) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut stuck = Vec::new();
        for (&key, k) in &mut self.kept {
            let before = k.waiting();
            let soonest = k.expire(now, out);
            next = super::earlier(next, soonest);
            if k.waiting() < before {
                if k.opening() {
                    stuck.push(key);
                } else if k.woken() && !k.dirty {
                    // Their streams' resets go out with the next flush.
                    k.dirty = true;
                    self.dirty.push(key);
                }
            }
        }
        for key in stuck {
            let e = io::Error::new(io::ErrorKind::TimedOut, "connection not ready in time");
            self.broken(key, &e, out);
        }
        next
    }

    /// Closes the kept connections idle for `IDLE`.
    pub(super) fn sweep_kept(&mut self, now: Instant) {
        let idle: Vec<u32> = self
            .kept
            .iter()
            .filter(|(_, k)| k.waiting() == 0 && now.duration_since(k.used) >= IDLE)
            .map(|(&key, _)| key)
            .collect();
        for key in idle {
            self.close_kept(key);
        }
    }

    /// A connection broke with `e`: its queries are failed and it is closed.
    fn broken(&mut self, key: u32, e: &io::Error, out: &mut Vec<Settled<T>>) {
        if let Some(k) = self.kept.get_mut(&key) {
            tracing::debug!(upstream = %k.server(), error = %e, "encrypted upstream connection closed (udp thread)");
            k.fail_all(e, out);
        }
        self.close_kept(key);
    }

    /// Watches a connection for writability exactly while it has something to write.
    fn watch(&mut self, key: u32) {
        let Some(k) = self.kept.get_mut(&key) else {
            return;
        };
        let want = k.wants_out();
        if want == k.watch_out {
            return;
        }
        let flags = if want {
            EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT
        } else {
            EpollFlags::EPOLLIN
        };
        let mut event = EpollEvent::new(flags, u64::from(key));
        if self.epoll.modify(k.fd(), &mut event).is_ok() {
            k.watch_out = want;
        }
    }

    fn close_kept(&mut self, key: u32) {
        let Some(mut k) = self.kept.remove(&key) else {
            return;
        };
        let _ = self.epoll.delete(k.fd());
        match &mut k.wire {
            Wire::Tls(s) => s.close_notify(),
            Wire::Https(c) => c.close_notify(),
            Wire::Quic(c) => c.close(),
        }
    }
}
