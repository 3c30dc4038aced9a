//! The listeners: UDP and TCP on every `server.listen` address, all feeding one
//! [`Pipeline`] through [`crate::handler::handle`].
//!
//! [`bind`] makes the sockets; [`Server::start`] runs them until [`Server::shutdown`]. UDP is
//! the hot path: a few OS threads per address, each on its own `SO_REUSEPORT` socket, answer
//! blocked and cached names inline and hand misses to the tokio runtime. TCP runs on tokio.

mod tcp;
mod udp;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::pipeline::Pipeline;
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
}

impl Sockets {
    /// The addresses actually bound (port 0 resolved), one per listen address.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .iter()
            .filter_map(|t| t.local_addr().ok())
            .collect()
    }
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
    };
    for &addr in listen {
        let mut tries = 0;
        let (first, tcp) = loop {
            let first = udp_socket(addr)?;
            let actual = first.local_addr()?;
            match tcp_listener(actual) {
                Ok(t) => break (first, t),
                // With port 0, the port the kernel gave UDP may be taken on TCP: try again.
                Err(e) if addr.port() == 0 && tries < 20 => {
                    tries += 1;
                    tracing::debug!(error = %e, "ephemeral port taken on TCP, retrying");
                }
                Err(e) => return Err(e),
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

/// Timing knobs of the listeners, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Idle TCP connections are closed after this.
    pub tcp_idle: Duration,
    /// Under load, the pause after a partial UDP batch (see `server::udp`).
    pub udp_batch_wait: Duration,
}

/// A running server; dropping it without [`Server::shutdown`] leaves the threads running
/// until the process ends.
pub struct Server {
    stop: Arc<AtomicBool>,
    udp_threads: Vec<std::thread::JoinHandle<()>>,
    tcp_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Starts serving on `sockets` with `pipeline`; forwards run on `rt`. Every answered
    /// query goes to `log`, after its answer was sent.
    pub fn start(
        sockets: Sockets,
        pipeline: Arc<Pipeline>,
        log: Option<QueryLog>,
        rt: &tokio::runtime::Handle,
        tuning: Tuning,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut udp_threads = Vec::new();
        for s in sockets.udp {
            udp_threads.push(udp::spawn(
                s,
                Arc::clone(&pipeline),
                log.clone(),
                rt.clone(),
                Arc::clone(&stop),
                tuning.udp_batch_wait,
            )?);
        }
        let mut tcp_tasks = Vec::new();
        for l in sockets.tcp {
            let _guard = rt.enter();
            let l = tokio::net::TcpListener::from_std(l)?;
            tcp_tasks.push(rt.spawn(tcp::serve(
                l,
                Arc::clone(&pipeline),
                log.clone(),
                tuning.tcp_idle,
            )));
        }
        Ok(Self {
            stop,
            udp_threads,
            tcp_tasks,
        })
    }

    /// Stops accepting queries and waits for the UDP threads to finish.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in &self.tcp_tasks {
            t.abort();
        }
        for t in self.udp_threads {
            let _ = t.join();
        }
    }
}
