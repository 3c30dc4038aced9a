//! The listeners under failure: a panic while answering one packet is caught and counted,
//! and a listener loop that ends is started again, on real loopback sockets.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

use super::{Server, Tuning, bind};
use crate::blocklist::BlocklistBuilder;
use crate::config::Config;
use crate::counters::Counters;
use crate::dns::wire;
use crate::handler::Handler;
use crate::pipeline::access::Access;
use crate::pipeline::blocking::Blocking;
use crate::pipeline::{Clock, Pipeline, Policy};

/// Set by a test: the next UDP batch panics outside the per-packet guard.
pub(super) static FAIL_NEXT_UDP_BATCH: AtomicBool = AtomicBool::new(false);
/// Set by a test: the TCP accept loop panics after its next accept.
pub(super) static FAIL_NEXT_ACCEPT: AtomicBool = AtomicBool::new(false);
/// The flags are global: these tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Panics while answering a query for `panic.fault.test` (the per-packet guard's test).
pub(super) fn maybe_panic(parsed: Result<&wire::Query, &wire::Reject>) {
    if let Ok(q) = parsed
        && q.name() == b"panic.fault.test"
    {
        panic!("injected query failure");
    }
}

fn start(rt: &tokio::runtime::Runtime) -> (Server, SocketAddr) {
    let cfg = Config::parse(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_threads = 1\n",
        "test.toml",
        None,
    )
    .unwrap();
    let blocking = Blocking::new(&cfg.blocking, BlocklistBuilder::new().build());
    let policy = Policy::new(Access::new(&cfg.access), blocking, &[]);
    let pipeline = Arc::new(Pipeline::new(&cfg, policy, Arc::new(Counters::new())));
    let handler = Arc::new(Handler::new(
        pipeline,
        super::slots::ClientSlots::new(4, 64),
        false,
    ));
    let sockets = bind(&cfg.server.listen, 1).unwrap();
    let addr = sockets.local_addrs()[0];
    let tuning = Tuning {
        tcp_idle: Duration::from_secs(2),
        udp_batch_wait: Duration::ZERO,
        tcp_max_connections: 8,
        tcp_max_per_client: 4,
    };
    let server =
        Server::start(sockets, handler, None, rt.handle(), tuning, Clock::system()).unwrap();
    (server, addr)
}

fn query(name: &str) -> Vec<u8> {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

/// A UDP exchange; `None` when nothing came back within `wait`.
fn udp(addr: SocketAddr, name: &str, wait: Duration) -> Option<Message> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.send_to(&query(name), addr).unwrap();
    let mut buf = [0u8; 1500];
    let n = s.recv(&mut buf).ok()?;
    Message::from_vec(&buf[..n]).ok()
}

/// Firefox's canary is answered by the server itself (NXDOMAIN), with no upstream.
const LOCAL: &str = "use-application-dns.net.";

fn answered_over_udp(addr: SocketAddr) -> bool {
    udp(addr, LOCAL, Duration::from_secs(2)).is_some_and(|m| m.metadata.id == 7)
}

fn answered_over_tcp(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let q = query(LOCAL);
    let mut framed = u16::try_from(q.len()).unwrap().to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    if c.write_all(&framed).is_err() {
        return false;
    }
    let mut len = [0u8; 2];
    if c.read_exact(&mut len).is_err() {
        return false;
    }
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    c.read_exact(&mut buf).is_ok() && Message::from_vec(&buf).is_ok_and(|m| m.metadata.id == 7)
}

/// Waits up to 3 s for `cond`.
fn eventually(cond: impl Fn() -> bool) -> bool {
    for _ in 0..30 {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn a_panic_answering_one_udp_query_costs_only_that_answer() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (server, addr) = start(&rt);
    assert!(answered_over_udp(addr));
    assert!(udp(addr, "panic.fault.test.", Duration::from_millis(500)).is_none());
    assert_eq!(server.faults().panics(), 1);
    assert_eq!(
        server.faults().restarts(),
        0,
        "caught per packet, no restart"
    );
    assert!(answered_over_udp(addr), "the same thread still answers");
    server.shutdown();
}

#[test]
fn a_udp_loop_that_dies_is_started_again() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (server, addr) = start(&rt);
    FAIL_NEXT_UDP_BATCH.store(true, std::sync::atomic::Ordering::Relaxed);
    // This batch is lost with the loop; the restarted loop answers the next ones.
    let _ = udp(addr, LOCAL, Duration::from_millis(300));
    assert!(eventually(|| server.faults().restarts() == 1));
    assert!(eventually(|| answered_over_udp(addr)));
    server.shutdown();
}

#[test]
fn a_tcp_accept_loop_that_dies_is_started_again() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (server, addr) = start(&rt);
    assert!(answered_over_tcp(addr));
    FAIL_NEXT_ACCEPT.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(
        !answered_over_tcp(addr),
        "the connection dies with the loop"
    );
    assert!(eventually(|| server.faults().restarts() == 1));
    assert!(eventually(|| answered_over_tcp(addr)));
    server.shutdown();
}
