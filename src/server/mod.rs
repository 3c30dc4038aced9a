//! The listeners: UDP and TCP on every `server.listen` address, DNS over TLS on every
//! `server.tls_listen` address (`tls.rs`, over TCP's connection code), and DNS over HTTPS
//! on every `server.https_listen` address (`https.rs` for connections, `doh.rs` for
//! requests), and DNS over QUIC on every `server.quic_listen` address (`quic.rs`), all
//! feeding one
//! [`Handler`] ([`Handler::handle`], the per-query entry point). Listeners only move bytes.
//!
//! [`bind`] makes the sockets; [`Server::start`] runs them until [`Server::shutdown`]. UDP is
//! the hot path: a few OS threads per address, each on its own `SO_REUSEPORT` socket, answer
//! blocked and cached names inline and hand misses to the tokio runtime. TCP runs on tokio.
//!
//! No failure is silent ([`Faults`]): a panic while handling one packet, connection or
//! forward is caught, logged with the client's address and counted, and the listener goes
//! on; a listener loop that ends anyway is started again. What one client can hold is
//! bounded ([`slots`]): TCP connections, and forwards in flight (shared by UDP and TCP).

// The listeners read what clients send: no panicking shortcuts here (a panic is caught and
// counted, but it still costs an answer).
#![warn(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod accept;
mod batch_pause;
mod bind_error;
pub mod doh;
pub(crate) mod faults;
mod https;
pub mod quic;
mod records;
pub mod slots;
mod tcp;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
mod tests;
mod tls;
mod udp;

pub(crate) use accept::next_connection;
pub use doh::{CONN_BODY_BUDGET, MAX_BODY as DOH_MAX_BODY, PATH as DOH_PATH};
pub use faults::Faults;
pub use https::{MAX_HEAD_BYTES as DOH_MAX_HEAD_BYTES, MAX_STREAMS as DOH_MAX_STREAMS};
pub use quic::MAX_STREAMS as DOQ_MAX_STREAMS;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::handler::Handler;
use crate::pipeline::{Clock, Transport};
use crate::querylog::QueryLog;

/// Receive buffer asked for on UDP sockets, so that bursts are queued rather than dropped.
const UDP_RCVBUF: usize = 4 << 20;

/// Sockets bound for the listen addresses, before serving starts.
#[derive(Debug)]
pub struct Sockets {
    /// UDP sockets: `threads` per address, sharing the port with `SO_REUSEPORT`.
    pub udp: Vec<UdpSocket>,
    /// One TCP listener per address.
    pub tcp: Vec<TcpListener>,
    /// One TCP listener per `server.tls_listen` address, for DNS over TLS
    /// ([`Sockets::with_tls`]).
    pub tls: Vec<TcpListener>,
    /// One TCP listener per `server.https_listen` address, for DNS over HTTPS
    /// ([`Sockets::with_https`]).
    pub https: Vec<TcpListener>,
    /// One UDP socket per `server.quic_listen` address, for DNS over QUIC
    /// ([`Sockets::with_quic`]).
    pub quic: Vec<UdpSocket>,
}

impl Sockets {
    /// The addresses actually bound (port 0 resolved), one per listen address.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        bound(&self.tcp, TcpListener::local_addr)
    }

    /// Binds a TCP listener for DNS over TLS on each of `addrs` (port 0: a free port).
    pub fn with_tls(mut self, addrs: &[SocketAddr]) -> std::io::Result<Self> {
        self.tls
            .extend(bind_each(addrs, "server.tls_listen", "tcp", tcp_listener)?);
        Ok(self)
    }

    /// The DNS-over-TLS addresses actually bound (port 0 resolved).
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        bound(&self.tls, TcpListener::local_addr)
    }

    /// Binds a TCP listener for DNS over HTTPS on each of `addrs` (port 0: a free port).
    pub fn with_https(mut self, addrs: &[SocketAddr]) -> std::io::Result<Self> {
        self.https.extend(bind_each(
            addrs,
            "server.https_listen",
            "tcp",
            tcp_listener,
        )?);
        Ok(self)
    }

    /// The DNS-over-HTTPS addresses actually bound (port 0 resolved).
    pub fn https_addrs(&self) -> Vec<SocketAddr> {
        bound(&self.https, TcpListener::local_addr)
    }

    /// Binds a UDP socket for DNS over QUIC on each of `addrs` (port 0: a free port).
    pub fn with_quic(mut self, addrs: &[SocketAddr]) -> std::io::Result<Self> {
        self.quic
            .extend(bind_each(addrs, "server.quic_listen", "udp", quic_socket)?);
        Ok(self)
    }

    /// The DNS-over-QUIC addresses actually bound (port 0 resolved).
    pub fn quic_addrs(&self) -> Vec<SocketAddr> {
        bound(&self.quic, UdpSocket::local_addr)
    }
}

/// One socket per address of `key` (a `proto` socket made by `bind`); a failure is
/// explained and names the key.
fn bind_each<S>(
    addrs: &[SocketAddr],
    key: &str,
    proto: &str,
    bind: impl Fn(SocketAddr) -> std::io::Result<S>,
) -> std::io::Result<Vec<S>> {
    addrs
        .iter()
        .map(|&a| {
            bind(a).map_err(|e| {
                let e = bind_error::explain(e, a, proto);
                std::io::Error::new(e.kind(), format!("{key}: {e}"))
            })
        })
        .collect()
}

/// The addresses `socks` are bound to (port 0 resolved).
fn bound<S>(socks: &[S], addr: impl Fn(&S) -> std::io::Result<SocketAddr>) -> Vec<SocketAddr> {
    socks.iter().filter_map(|s| addr(s).ok()).collect()
}

/// One UDP socket for a QUIC endpoint (no `SO_REUSEPORT`: one endpoint owns the port).
fn quic_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    let _ = s.set_recv_buffer_size(UDP_RCVBUF);
    s.bind(&addr.into())?;
    Ok(s.into())
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_port(true)?;
    // Ask for a large buffer (the kernel caps it at net.core.rmem_max); failure is harmless.
    let _ = s.set_recv_buffer_size(UDP_RCVBUF);
    s.bind(&addr.into())?;
    Ok(s.into())
}

fn tcp_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Binds UDP and TCP on each address (the same port for both, also when the port is 0).
/// `threads` UDP sockets are made per address (0 = one per CPU core).
pub fn bind(listen: &[SocketAddr], threads: usize) -> std::io::Result<Sockets> {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get().min(8))
    } else {
        threads
    };
    let mut out = Sockets {
        udp: Vec::new(),
        tcp: Vec::new(),
        tls: Vec::new(),
        https: Vec::new(),
        quic: Vec::new(),
    };
    for &addr in listen {
        let mut tries = 0;
        let (first, tcp) = loop {
            let first = udp_socket(addr).map_err(|e| bind_error::explain(e, addr, "udp"))?;
            let actual = first.local_addr()?;
            match tcp_listener(actual) {
                Ok(t) => break (first, t),
                // With port 0, the port the kernel gave UDP may be taken on TCP: try again.
                Err(e) if addr.port() == 0 && tries < 20 => {
                    tries += 1;
                    tracing::debug!(error = %e, "ephemeral port taken on TCP, retrying");
                }
                Err(e) => return Err(bind_error::explain(e, actual, "tcp")),
            }
        };
        let actual = first.local_addr()?;
        out.udp.push(first);
        for _ in 1..threads {
            out.udp.push(udp_socket(actual)?);
        }
        out.tcp.push(tcp);
    }
    Ok(out)
}

/// Timing knobs and limits of the listeners, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Idle TCP connections are closed after this; also the deadline of one TCP write.
    pub tcp_idle: Duration,
    /// Under load, the pause after a partial UDP batch (see `server::udp`).
    pub udp_batch_wait: Duration,
    /// TCP connections from all clients together.
    pub tcp_max_connections: usize,
    /// TCP connections from one client address.
    pub tcp_max_per_client: usize,
}

/// Forwards in flight for all clients together; past it a query gets SERVFAIL at once.
pub const MAX_FORWARDS: usize = 8192;

/// At most one log line per second for a condition that can repeat per packet.
#[derive(Debug, Default)]
pub(crate) struct RateLimit {
    last: Option<Instant>,
}

impl RateLimit {
    /// True at most once a second.
    pub(crate) fn allow(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|l| now.duration_since(l) < Duration::from_secs(1))
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// A running server; dropping it without [`Server::shutdown`] leaves the threads running
/// until the process ends.
pub struct Server {
    stop: Arc<AtomicBool>,
    udp_threads: Vec<std::thread::JoinHandle<()>>,
    tcp_tasks: Vec<tokio::task::JoinHandle<()>>,
    faults: Arc<Faults>,
    handler: Arc<Handler>,
    conns: Arc<slots::ClientSlots>,
    /// The TCP connections' shared state, which the TLS listeners copy.
    tcp: Arc<tcp::Shared>,
    /// The QUIC endpoints, closed at shutdown.
    quic: Vec<quinn::Endpoint>,
}

impl Server {
    /// Starts serving on `sockets` through `handler`, with decision times read from
    /// `clock`; forwards run on `rt`. Every answered query goes to `log`, after its answer
    /// was sent.
    pub fn start(
        sockets: Sockets,
        handler: Arc<Handler>,
        log: Option<QueryLog>,
        rt: &tokio::runtime::Handle,
        tuning: Tuning,
        clock: Clock,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let faults = Arc::new(Faults::default());
        let conns = slots::ClientSlots::new(tuning.tcp_max_per_client, tuning.tcp_max_connections);
        let mut udp_threads = Vec::new();
        for s in sockets.udp {
            udp_threads.push(udp::spawn(
                s,
                udp::Shared {
                    handler: Arc::clone(&handler),
                    log: log.clone(),
                    rt: rt.clone(),
                    stop: Arc::clone(&stop),
                    batch_wait: tuning.udp_batch_wait,
                    clock: clock.clone(),
                    faults: Arc::clone(&faults),
                },
            )?);
        }
        let shared = Arc::new(tcp::Shared {
            handler: Arc::clone(&handler),
            log,
            conns: Arc::clone(&conns),
            clock,
            faults: Arc::clone(&faults),
            idle: tuning.tcp_idle,
            transport: Transport::Tcp,
        });
        let mut tcp_tasks = Vec::new();
        for l in sockets.tcp {
            let _guard = rt.enter();
            let l = Arc::new(tokio::net::TcpListener::from_std(l)?);
            tcp_tasks.push(rt.spawn(supervise_tcp(l, Arc::clone(&shared))));
        }
        Ok(Self {
            stop,
            udp_threads,
            tcp_tasks,
            faults,
            handler,
            conns,
            tcp: shared,
            quic: Vec::new(),
        })
    }

    /// Serves DNS over TLS on `listeners` (from [`Sockets::with_tls`]) with `config` (see
    /// `tls::dot_config`); a handshake not finished within `handshake` is closed.
    pub fn start_tls(
        &mut self,
        listeners: Vec<TcpListener>,
        config: Arc<rustls::ServerConfig>,
        handshake: Duration,
        rt: &tokio::runtime::Handle,
    ) -> std::io::Result<()> {
        let shared = Arc::new(tls::TlsShared {
            conn: self.connections(Transport::Tls),
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            handshake,
        });
        self.spawn_listeners("tls", listeners, rt, move |l| {
            tls::serve(l, Arc::clone(&shared))
        })
    }

    /// Serves DNS over HTTPS on `listeners` (from [`Sockets::with_https`]) with `config`
    /// (see `tls::doh_config`); a handshake not finished within `handshake` is closed.
    pub fn start_https(
        &mut self,
        listeners: Vec<TcpListener>,
        config: Arc<rustls::ServerConfig>,
        handshake: Duration,
        rt: &tokio::runtime::Handle,
    ) -> std::io::Result<()> {
        let shared = Arc::new(https::HttpsShared {
            conn: self.connections(Transport::Https),
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            handshake,
        });
        self.spawn_listeners("https", listeners, rt, move |l| {
            https::serve(l, Arc::clone(&shared))
        })
    }

    /// Serves DNS over QUIC on `sockets` (from [`Sockets::with_quic`]) with `config` (see
    /// `tls::doq_config`); a handshake not finished within `handshake` is closed. QUIC
    /// connections are counted apart from TCP's, with the same limits.
    pub fn start_quic(
        &mut self,
        sockets: Vec<UdpSocket>,
        config: Arc<rustls::ServerConfig>,
        handshake: Duration,
        rt: &tokio::runtime::Handle,
    ) -> std::io::Result<()> {
        if sockets.is_empty() {
            return Ok(());
        }
        let t = &self.tcp;
        let conns = slots::ClientSlots::new(self.conns.per_client(), self.conns.limit());
        let shared = Arc::new(quic::QuicShared {
            conn: Arc::new(tcp::Shared {
                handler: Arc::clone(&t.handler),
                log: t.log.clone(),
                conns,
                clock: t.clock.clone(),
                faults: Arc::clone(&t.faults),
                idle: t.idle,
                transport: Transport::Quic,
            }),
            handshake,
        });
        let server_config = quic::server_config(config, t.idle)?;
        for s in sockets {
            let _guard = rt.enter();
            let ep = quic::endpoint(s, server_config.clone())?;
            let name = ep
                .local_addr()
                .map_or_else(|_| "quic".to_string(), |a| format!("quic {a}"));
            self.quic.push(ep.clone());
            let (faults, shared) = (Arc::clone(&self.faults), Arc::clone(&shared));
            self.tcp_tasks
                .push(rt.spawn(supervise(name, faults, move || {
                    quic::serve(ep.clone(), Arc::clone(&shared))
                })));
        }
        Ok(())
    }

    /// What the connections of a TCP-based listener carrying `transport` share: TCP's
    /// handler, log, connection slots and idle timeout.
    fn connections(&self, transport: Transport) -> Arc<tcp::Shared> {
        let t = &self.tcp;
        Arc::new(tcp::Shared {
            handler: Arc::clone(&t.handler),
            log: t.log.clone(),
            conns: Arc::clone(&t.conns),
            clock: t.clock.clone(),
            faults: Arc::clone(&t.faults),
            idle: t.idle,
            transport,
        })
    }

    /// Runs `serve` on each of `listeners` under [`supervise`] (restarted if it ends),
    /// named `kind` and the address in faults.
    fn spawn_listeners<F, Fut>(
        &mut self,
        kind: &str,
        listeners: Vec<TcpListener>,
        rt: &tokio::runtime::Handle,
        serve: F,
    ) -> std::io::Result<()>
    where
        F: Fn(Arc<tokio::net::TcpListener>) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        for l in listeners {
            let _guard = rt.enter();
            let l = Arc::new(tokio::net::TcpListener::from_std(l)?);
            let name = l
                .local_addr()
                .map_or_else(|_| kind.to_string(), |a| format!("{kind} {a}"));
            let (faults, serve) = (Arc::clone(&self.faults), serve.clone());
            self.tcp_tasks
                .push(rt.spawn(supervise(name, faults, move || serve(Arc::clone(&l)))));
        }
        Ok(())
    }

    /// Panics caught and listeners restarted since start.
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    /// Forwards in flight now (UDP and TCP).
    pub fn forwards_in_flight(&self) -> usize {
        self.handler.forwards_in_flight()
    }

    /// TCP connections open now.
    pub fn tcp_connections(&self) -> usize {
        self.conns.held()
    }

    /// Stops accepting queries and waits for the UDP threads to finish.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in &self.tcp_tasks {
            t.abort();
        }
        for ep in &self.quic {
            ep.close(
                quinn::VarInt::from_u32(crate::dns::doq::code::NO_ERROR),
                b"shutdown",
            );
        }
        for t in self.udp_threads {
            let _ = t.join();
        }
    }
}

/// Aborts a task when dropped: aborting a supervisor aborts the loop it runs.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs a TCP accept loop and starts it again whenever it ends (a panic), until this task
/// is aborted (shutdown), which aborts the loop too.
async fn supervise_tcp(listener: Arc<tokio::net::TcpListener>, shared: Arc<tcp::Shared>) {
    let name = listener
        .local_addr()
        .map_or_else(|_| "tcp".to_string(), |a| format!("tcp {a}"));
    let faults = Arc::clone(&shared.faults);
    supervise(name, faults, move || {
        tcp::serve(Arc::clone(&listener), Arc::clone(&shared))
    })
    .await;
}

/// Runs the accept loop that `run` makes and starts a new one whenever it ends (a panic),
/// until this task is aborted (shutdown), which aborts the loop too.
async fn supervise<F, Fut>(name: String, faults: Arc<Faults>, run: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let task = tokio::spawn(run());
        let _abort = AbortOnDrop(task.abort_handle());
        let why = match task.await {
            Ok(()) => "returned".to_string(),
            Err(e) if e.is_panic() => {
                let p = e.into_panic();
                format!("panicked: {}", faults::panic_text(&*p))
            }
            Err(_) => "cancelled".to_string(),
        };
        faults.restarted(&name, &why);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
