//! `Near`: the first attempt of every miss of one UDP listener thread whose first server is
//! encrypted and that the thread's [`Relay`] does not make itself (the relay's connection
//! to it is full, or cannot be opened), made on connections of the thread's own, on a
//! single-threaded runtime that the thread drives itself while it waits; and, in recursive
//! mode, the whole resolution of the thread's misses, on a recursive resolver of the
//! thread's own on that runtime.
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
//! A recursive miss, with its several upstream queries, crossed threads many more times on
//! the shared runtime (about 15 context switches per miss at a thousand misses a second,
//! counted in `/proc`); here each of its answers wakes only this thread.
//!
//! Only the first attempt of a forward runs here, with [`Upstream::forward`]'s own
//! exchange-and-parse step and the relay's verdict on a failure. A failed one (an error, a
//! timeout, SERVFAIL, REFUSED, a broken answer) is handed back as [`Settled::Resume`] and
//! goes on with [`Upstream::resume`] on the shared runtime, which tries the next servers:
//! the failover and deadline contract and the counters are those of [`Upstream::forward`].
//! A recursive resolution runs here whole, by the same deadline as there, and ends as
//! [`Settled::Answered`] or [`Settled::Failed`].
//!
//! Connections: one per encrypted server per thread (the runtime-side clients keep their
//! own), opened by the first miss that needs it, closed after `IDLE` without queries as
//! there; a thread's connections to servers of an upstream set that is no longer in use
//! (a reload replaced it) are dropped after [`FORGET`] without use. Recursive resolvers:
//! one per thread per shared resolver ([`Recursive::twin`]: the same resolver, its zone
//! cuts and validator shared; its sockets opened on this thread's runtime), dropped the
//! same way.

use std::collections::{HashMap, hash_map};
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::io::unix::AsyncFd;
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::super::relay::sock::first_failed;
use super::super::{RECURSIVE, Recursive, Server, Upstream, UpstreamError};
use super::{Link, lock};
use crate::dns::wire::rcode;
use crate::pipeline::upstream::{Relay, Relayed, Settled};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
pub(in crate::pipeline::upstream) mod tests;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod recursive_tests;

/// Most recursive resolutions in flight on one thread; more go to the shared runtime. A
/// resolution's work (several exchanges; with validation, signature checks of a few
/// hundred microseconds, each within one poll) is done on the listener thread between its
/// batches, and its blocked and cached answers wait behind it (their p99.9 under 1,000
/// validated misses a second, in two runs: 3.2 ms with 8 against 0.7 before, 2.7 ms with 2
/// against 1.6; see docs/performance.md). A burst beyond this spreads over the runtime's
/// workers.
pub(in crate::pipeline::upstream) const MAX_RECURSING: usize = 2;

/// A thread's connection to a server of an upstream set unused this long is dropped.
pub(in crate::pipeline::upstream) const FORGET: Duration = Duration::from_secs(120);

/// One server's connection of this thread, and the set it belongs to (kept alive, so that
/// the set's address, the key, cannot be another set's while the entry lives).
struct Entry {
    _set: Arc<[Server]>,
    link: Arc<Link>,
    used: Instant,
}

/// This thread's twin of a shared recursive resolver, and that resolver (kept alive, so
/// that its address, the key, cannot be another's while the entry lives).
struct Twin {
    _shared: Arc<Recursive>,
    twin: Arc<Recursive>,
    used: Instant,
}

/// The encrypted first attempts and the recursive misses of one UDP thread; see the module
/// documentation.
pub struct Near<T> {
    rt: Runtime,
    /// The relay's epoll (a duplicate descriptor), readable when the listener or one of the
    /// relay's sockets is.
    epoll: AsyncFd<OwnedFd>,
    /// The first server's connection, keyed by its upstream set's address.
    links: HashMap<usize, Entry>,
    /// The thread's recursive resolvers, keyed by the shared resolver's address.
    recursors: HashMap<usize, Twin>,
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
    /// Recursive resolutions running (until their task ends).
    recursing: Arc<AtomicUsize>,
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

/// What an attempt runs on.
enum Via {
    /// One exchange on this connection to the first server.
    Link(Arc<Link>),
    /// A whole resolution by this recursive resolver, counted in [`Near`]'s `recursing`
    /// until the task ends.
    Recursor(Arc<Recursive>, Unsettled),
}

/// An attempt to spawn: the item, what it runs on, when it began and must end, its count.
struct Start<T> {
    item: T,
    via: Via,
    started: Instant,
    end: Instant,
    guard: Unsettled,
}

/// Uncounts an attempt whose task ends without settling it (a panic), so that the thread
/// does not wait for it forever; and a recursive resolution whose task ends.
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

impl<T: Relayed + Send + Sync + 'static> Near<T> {
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
            recursors: HashMap::new(),
            starting: Vec::new(),
            sleep,
            done: Arc::new(Mutex::new(Vec::new())),
            wake: Arc::new(Notify::new()),
            in_flight: Arc::new(AtomicUsize::new(0)),
            recursing: Arc::new(AtomicUsize::new(0)),
            last_sweep: Instant::now(),
        })
    }

    /// True when no attempt is in flight here.
    pub fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Starts the first attempt of `item` at its first server, or its whole resolution in
    /// recursive mode. Gives `item` back when that server is not encrypted, the forward is
    /// past its deadline, `MAX_RECURSING` resolutions run here already, or the thread's
    /// resolver cannot be made.
    pub fn start(&mut self, item: T) -> Result<(), T> {
        let now = Instant::now();
        let up = item.upstream();
        if let Some(shared) = up.recursive() {
            let end = up.deadline(item.arrived());
            if end <= now || self.recursing.load(Ordering::Acquire) >= MAX_RECURSING {
                return Err(item);
            }
            let key = Arc::as_ptr(shared).cast::<()>() as usize;
            let twin = match self.recursors.entry(key) {
                hash_map::Entry::Occupied(o) => o.into_mut(),
                hash_map::Entry::Vacant(v) => {
                    let _in = self.rt.enter();
                    match shared.twin() {
                        Ok(r) => v.insert(Twin {
                            _shared: Arc::clone(shared),
                            twin: Arc::new(r),
                            used: now,
                        }),
                        Err(e) => {
                            tracing::warn!(error = %e, "no recursive resolver of the thread's own: this miss runs on the runtime");
                            return Err(item);
                        }
                    }
                }
            };
            twin.used = now;
            self.recursing.fetch_add(1, Ordering::AcqRel);
            let via = Via::Recursor(
                Arc::clone(&twin.twin),
                Unsettled(Some(Arc::clone(&self.recursing))),
            );
            self.push(item, via, now, end);
            return Ok(());
        }
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
        let via = Via::Link(Arc::clone(&entry.link));
        server.stats.sent();
        self.push(item, via, now, end);
        Ok(())
    }

    /// Counts an attempt and queues it for the next wait to spawn.
    fn push(&mut self, item: T, via: Via, started: Instant, end: Instant) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = Unsettled(Some(Arc::clone(&self.in_flight)));
        self.starting.push(Start {
            item,
            via,
            started,
            end,
            guard,
        });
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
            for s in starting.drain(..) {
                let (done, wake) = (Arc::clone(done), Arc::clone(wake));
                tokio::spawn(async move {
                    let mut guard = s.guard;
                    let settled = match &s.via {
                        Via::Link(link) => attempt(s.item, link, s.started, s.end).await,
                        Via::Recursor(r, _running) => resolve(s.item, r, s.end).await,
                    };
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
                            // One turn for the attempts in flight before every return: the
                            // driver is polled (their sockets, their timers) and the ready
                            // ones run, the attempts just started among them (their queries
                            // leave before the next batch). Without it, a listener that
                            // always has data when the thread comes to wait would end every
                            // wait at once, and nothing here would move until it fell quiet.
                            tokio::task::yield_now().await;
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

    /// Drops, about once a minute, connections and resolvers unused for `FORGET` (those
    /// of upstreams a reload replaced). Every wait calls it; a thread with nothing in
    /// flight never waits here, so its loop calls it after each batch.
    pub fn sweep(&mut self, now: Instant) {
        if now.duration_since(self.last_sweep) < FORGET / 2 {
            return;
        }
        self.last_sweep = now;
        self.links
            .retain(|_, e| now.duration_since(e.used) < FORGET || Arc::strong_count(&e.link) > 1);
        self.recursors
            .retain(|_, e| now.duration_since(e.used) < FORGET || Arc::strong_count(&e.twin) > 1);
    }
}

/// A recursive miss resolved whole by the thread's resolver, by `deadline`, as
/// [`Upstream::forward`] resolves one.
async fn resolve<T: Relayed>(item: T, r: &Recursive, deadline: Instant) -> Settled<T> {
    let work = async {
        #[cfg(test)]
        #[allow(clippy::panic)]
        if item.query().name().starts_with(b"panic.") {
            panic!("injected resolution failure");
        }
        r.resolve(item.query(), deadline).await
    };
    let got = AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .unwrap_or_else(|p| {
            let e = panicked("a recursive resolution", &*p);
            Err(UpstreamError::Recursion(e))
        });
    match got {
        Ok(resp) => Settled::Answered(item, resp, RECURSIVE),
        Err(e) => Settled::Failed(item, e),
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
    let got = AssertUnwindSafe(up.encrypted(server, link, item.query(), end))
        .catch_unwind()
        .await
        .unwrap_or_else(|p| {
            let e = panicked("an encrypted attempt", &*p);
            Err(UpstreamError::Transport(server.addr, e))
        });
    match got {
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

/// Logs the panic of an attempt's or a resolution's work on the thread's runtime, and
/// gives the error it ends with: its forward is finished as a failed one (the client gets
/// its answer, as after any failure), not dropped with its task.
fn panicked(what: &str, payload: &(dyn std::any::Any + Send)) -> String {
    let text = crate::server::faults::panic_text(payload);
    tracing::error!(
        panic = text,
        "panic in {what} on a UDP thread's runtime; answered as a failure"
    );
    format!("panicked: {text}")
}
