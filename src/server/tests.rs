//! The listeners under failure: a panic while answering one packet is caught and counted,
//! and a listener loop that ends is started again, on real loopback sockets; and the query
//! log's order when a thread stalls after sending its answers.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

use super::{Server, Tuning, bind};
use crate::blocklist::{BlocklistBuilder, Kind};
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

/// The name whose batch stalls its UDP thread after the answers are sent.
const STALL: &[u8] = b"stall.order.test";
/// How long [`after_send`] stalls.
const STALL_FOR: Duration = Duration::from_millis(300);

/// Stalls the UDP thread once a batch answering [`STALL`] is sent: the window in which a
/// record handed to the log only after the send would come behind later queries'.
pub(super) fn after_send(batch: &[wire::Query]) {
    if batch.iter().any(|q| q.name() == STALL) {
        std::thread::sleep(STALL_FOR);
    }
}

/// The query names in the log at `path`, oldest first, without the final dot. A line that
/// is not a whole record (one the writer is still writing) is left out.
fn logged_names(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let name = v.get("qname")?.as_str()?;
            Some(name.trim_end_matches('.').to_string())
        })
        .collect()
}

fn start(rt: &tokio::runtime::Runtime) -> (Server, SocketAddr) {
    start_with(rt, 1, None)
}

/// A server with `threads` UDP threads, blocking `order.test`, logging to `log` if given.
fn start_with(
    rt: &tokio::runtime::Runtime,
    threads: usize,
    log: Option<&std::path::Path>,
) -> (Server, SocketAddr) {
    let log_toml = log.map_or(String::new(), |p| format!("[log]\npath = {:?}\n", p));
    let cfg = Config::parse(
        &format!("[server]\nlisten = [\"127.0.0.1:0\"]\nudp_threads = {threads}\n{log_toml}"),
        "test.toml",
        None,
    )
    .unwrap();
    let mut list = BlocklistBuilder::new();
    let src = list.add_source("order.txt");
    list.insert("order.test", Kind::Block, false, false, src, 1);
    let blocking = Blocking::new(&cfg.blocking, list.build());
    let policy = Policy::new(Access::new(&cfg.access), blocking, &[]);
    let pipeline = Arc::new(Pipeline::new(&cfg, policy, Arc::new(Counters::new())));
    let handler = Arc::new(Handler::new(
        pipeline,
        super::slots::ClientSlots::new(4, 64),
        cfg.log.is_some(),
    ));
    let sockets = bind(&cfg.server.listen, threads).unwrap();
    let addr = sockets.local_addrs()[0];
    let tuning = Tuning {
        tcp_idle: Duration::from_secs(2),
        udp_batch_wait: Duration::ZERO,
        tcp_max_connections: 8,
        tcp_max_per_client: 4,
    };
    let log = cfg
        .log
        .as_ref()
        .map(|l| crate::querylog::start(l).unwrap().0);
    let server =
        Server::start(sockets, handler, log, rt.handle(), tuning, Clock::system()).unwrap();
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

#[test]
fn a_client_that_asks_again_once_answered_finds_its_queries_logged_in_order() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.jsonl");
    // Two threads: each query from a fresh port, so that the later ones reach both.
    let (server, addr) = start_with(&rt, 2, Some(&path));
    let first = std::str::from_utf8(STALL).unwrap();
    assert!(udp(addr, &format!("{first}."), Duration::from_secs(2)).is_some());
    // Answered, while the thread that answered stalls: ten queries asked after that answer,
    // at once from ten fresh ports, so that some reach the other thread and are answered
    // and logged during the stall (all ten reach the stalled one with a chance of 1 in
    // 1,024, and then this test cannot tell). All are logged after the first.
    let next: Vec<String> = (0..10).map(|i| format!("q{i}.order.test")).collect();
    let socks: Vec<UdpSocket> = next
        .iter()
        .map(|n| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.send_to(&query(&format!("{n}.")), addr).unwrap();
            s
        })
        .collect();
    for s in &socks {
        assert!(s.recv(&mut [0u8; 1500]).is_ok(), "every query is answered");
    }
    eventually(|| logged_names(&path).len() > next.len());
    let mut logged = logged_names(&path);
    assert_eq!(
        logged.first().map(String::as_str),
        Some(first),
        "{logged:?}"
    );
    logged.sort();
    let mut want: Vec<String> = next.clone();
    want.push(first.to_string());
    want.sort();
    assert_eq!(logged, want);
    server.shutdown();
}
