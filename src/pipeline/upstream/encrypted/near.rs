//! `Near`: the first attempt of every miss of one UDP listener thread whose first server is
//! encrypted and that the thread's [`Relay`] does not make itself (the relay's connection
//! to it is full, or cannot be opened), made on connections of the thread's own, on a
//! single-threaded runtime that the thread drives itself while it waits.
//!
//! Why. Run on the shared runtime, such a miss crossed threads three times: the listener
//! thread woke a runtime worker to start it, the answer woke a worker, and (tasks being
//! stolen between workers) often a second worker too; at a thousand misses a second those
//! wake-ups, not the cryptography, made an encrypted upstream cost twice a plain one. Here
//! the listener thread owns a current-thread runtime that holds its encrypted connections
//! (the same `Dot`/`Doh` clients, one connection per server per thread). While attempts are
//! in flight the thread waits inside that runtime, for its listener, its plain relay's
//! sockets (the relay's epoll, watched as one descriptor) and the answers together; an answer
//! wakes the one thread that sends it on. Two wake-ups per miss, as for a plain upstream.
//!
//! Only the first attempt runs here, with [`Upstream::forward`]'s own exchange-and-parse step
//! and the relay's verdict on a failure. A failed one (an error, a timeout, SERVFAIL,
//! REFUSED, a broken answer) is handed back as [`Settled::Resume`] and goes on with
//! [`Upstream::resume`] on the shared runtime, which tries the next servers: the failover
//! and deadline contract and the counters are those of [`Upstream::forward`].
//!
//! Connections: one per encrypted server per thread (the runtime-side clients keep their
//! own), opened by the first miss that needs it, closed after `IDLE` without queries as
//! there; a thread's connections to servers of an upstream set that is no longer in use
//! (a reload replaced it) are dropped after [`FORGET`] without use.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::super::relay::sock::first_failed;
use super::super::{Server, Upstream, UpstreamError};
use super::{Link, lock};
use crate::dns::wire::rcode;
use crate::pipeline::upstream::{Relay, Relayed, Settled};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
pub(in crate::pipeline::upstream) mod tests;

/// A thread's connection to a server of an upstream set unused this long is dropped.
pub(in crate::pipeline::upstream) const FORGET: Duration = Duration::from_secs(120);

/// One server's connection of this thread, and the set it belongs to (kept alive, so that
/// the set's address, the key, cannot be another set's while the entry lives).
struct Entry {
    _set: Arc<[Server]>,
    link: Arc<Link>,
    used: Instant,
}

/// The encrypted first attempts of one UDP thread; see the module documentation.
pub struct Near<T> {
    rt: Runtime,
    /// The relay's epoll (a duplicate descriptor), readable when the listener or one of the
    /// relay's sockets is.
    epoll: AsyncFd<OwnedFd>,
    /// The first server's connection, keyed by its upstream set's address.
    links: HashMap<usize, Entry>,
    /// Attempts started since the last wait: spawned from inside the runtime when it runs
    /// (a spawn from outside would wake its driver through an eventfd, a system call).
    starting: Vec<Start<T>>,
    done: Arc<Mutex<Vec<Settled<T>>>>,
    wake: Arc<Notify>,
    /// The bound of each wait, one timer reset each time (a new one would be registered,
    /// and wake the driver, per wait).
    sleep: Pin<Box<Sleep>>,
    /// Attempts started and not taken back by [`Near::settled`] yet.
    in_flight: Arc<AtomicUsize>,
    last_sweep: Instant,
}

impl<T> std::fmt::Debug for Near<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Near")
            .field("links", &self.links.len())
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// An attempt to spawn: the item, the connection, when it began and must end, its count.
struct Start<T> {
    item: T,
    link: Arc<Link>,
    started: Instant,
    end: Instant,
    guard: Unsettled,
}

/// Uncounts an attempt whose task ends without settling it (a panic), so that the thread
/// does not wait for it forever.
struct Unsettled(Option<Arc<AtomicUsize>>);

impl Unsettled {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        if let Some(n) = self.0.take() {
            n.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl<T: Relayed + Send + 'static> Near<T> {
    /// The encrypted attempts of the thread whose plain attempts `relay` makes (its epoll is
    /// what the thread waits on here).
    pub fn new(relay: &Relay<T>) -> io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (epoll, sleep) = {
            let _in = rt.enter();
            let sleep = Box::pin(tokio::time::sleep(Duration::ZERO));
            // Deprecated in tokio 1.54 for objects whose descriptor may change or close while
            // registered (I/O safety); an `OwnedFd` keeps one descriptor, closed only when
            // the `AsyncFd` drops it after deregistering. The replacement is `unsafe`.
            #[allow(deprecated)]
            let fd = AsyncFd::with_interest(relay.epoll_fd()?, tokio::io::Interest::READABLE)?;
            (fd, sleep)
        };
        Ok(Self {
            rt,
            epoll,
            links: HashMap::new(),
            starting: Vec::new(),
            sleep,
            done: Arc::new(Mutex::new(Vec::new())),
            wake: Arc::new(Notify::new()),
            in_flight: Arc::new(AtomicUsize::new(0)),
            last_sweep: Instant::now(),
        })
    }

    /// True when no attempt is in flight here.
    pub fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Starts the first attempt of `item` at its first server. Gives `item` back when that
    /// server is not encrypted or the forward is past its deadline.
    pub fn start(&mut self, item: T) -> Result<(), T> {
        let now = Instant::now();
        let up = item.upstream();
        let Some(server) = up.servers.first() else {
            return Err(item);
        };
        let Some(shared) = &server.link else {
            return Err(item);
        };
        // Validated answers need more than one exchange: on the runtime.
        if !up.one_exchange() {
            return Err(item);
        }
        let end = (now + up.timeout).min(up.deadline(item.arrived()));
        if end <= now {
            return Err(item);
        }
        let key = Arc::as_ptr(&up.servers).cast::<()>() as usize;
        let entry = self.links.entry(key).or_insert_with(|| Entry {
            _set: Arc::clone(&up.servers),
            link: Arc::new(shared.twin()),
            used: now,
        });
        entry.used = now;
        let link = Arc::clone(&entry.link);
        server.stats.sent();
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = Unsettled(Some(Arc::clone(&self.in_flight)));
        self.starting.push(Start {
            item,
            link,
            started: now,
            end,
            guard,
        });
        Ok(())
    }

    /// Waits up to `most` (less when one of `relay`'s attempts ends sooner) for the
    /// listener, one of `relay`'s sockets or an attempt here; runs this thread's
    /// connections meanwhile. True when the listener is readable. The relay's readable
    /// sockets are noted in it, as [`Relay::wait`] does.
    pub fn wait(&mut self, relay: &mut Relay<T>, most: Duration) -> io::Result<bool> {
        let now = Instant::now();
        let until = now
            + relay
                .due()
                .map_or(most, |d| d.saturating_duration_since(now))
                .min(most);
        let (epoll, done, wake) = (&self.epoll, &self.done, &self.wake);
        let (starting, sleep) = (&mut self.starting, &mut self.sleep);
        let got = self.rt.block_on(async {
            let spawned = !starting.is_empty();
            for s in starting.drain(..) {
                let (done, wake) = (Arc::clone(done), Arc::clone(wake));
                tokio::spawn(async move {
                    let mut guard = s.guard;
                    let settled = attempt(s.item, &s.link, s.started, s.end).await;
                    lock(&done).push(settled);
                    // Counted until `settled` takes it.
                    guard.disarm();
                    wake.notify_one();
                });
            }
            sleep.as_mut().reset(until);
            // Each branch costs a system call only when it has news: the spawned attempts
            // run (and their queries leave) whenever the first poll finds nothing ready.
            loop {
                tokio::select! {
                    // The listener first: answers that came meanwhile are taken all the same
                    // (the caller takes what is settled on every turn), so neither side can
                    // starve the other.
                    biased;
                    r = epoll.readable() => {
                        let Ok(mut g) = r else {
                            return Ok(true);
                        };
                        let listener = relay.wait(Duration::ZERO)?;
                        if listener || relay.has_ready() {
                            if spawned {
                                // The attempts just started leave before the next batch.
                                tokio::task::yield_now().await;
                            }
                            return Ok(listener);
                        }
                        // Not ready (an edge already consumed): the next edge wakes us.
                        g.clear_ready();
                    }
                    () = wake.notified() => {
                        if !lock(done).is_empty() {
                            return Ok(false);
                        }
                    }
                    () = sleep.as_mut() => return Ok(false),
                }
            }
        });
        self.sweep(now);
        got
    }

    /// Takes the attempts that ended since the last call.
    pub fn settled(&mut self, out: &mut Vec<Settled<T>>) {
        if self.idle() {
            return;
        }
        let mut done = lock(&self.done);
        self.in_flight.fetch_sub(done.len(), Ordering::AcqRel);
        out.append(&mut done);
    }

    /// Drops, about once a minute, connections unused for [`FORGET`].
    fn sweep(&mut self, now: Instant) {
        if now.duration_since(self.last_sweep) < FORGET / 2 {
            return;
        }
        self.last_sweep = now;
        self.links
            .retain(|_, e| now.duration_since(e.used) < FORGET || Arc::strong_count(&e.link) > 1);
    }
}

/// One exchange with the item's first server, judged as [`Upstream::forward`] judges one
/// (the same exchange-and-parse step, `Upstream::encrypted`).
async fn attempt<T: Relayed>(item: T, link: &Link, started: Instant, end: Instant) -> Settled<T> {
    let up: &Upstream = item.upstream();
    let Some(server) = up.servers.first() else {
        let nobody = UpstreamError::Timeout(SocketAddr::from(([0, 0, 0, 0], 0)));
        return first_failed(item, started, end, nobody);
    };
    match up.encrypted(server, link, item.query(), end).await {
        Ok(r) if matches!(r.rcode(), rcode::SERVFAIL | rcode::REFUSED) => {
            let e = UpstreamError::Rcode(server.addr, rcode::name(r.rcode()));
            first_failed(item, started, end, e)
        }
        Ok(r) => {
            server.stats.answered(started.elapsed());
            let addr = server.addr;
            Settled::Answered(item, r, addr)
        }
        Err(e) => first_failed(item, started, end, e),
    }
}
