//! Unit tests of the relay against scripted loopback upstreams: matching and forgeries,
//! timeouts, TC, SERVFAIL, port unreachable, socket rotation and bounds.

use std::collections::HashSet;
use std::net::UdpSocket;
use std::sync::{Arc, Mutex};

use super::super::{Step, Then};
use super::*;
use crate::config::{CacheConfig, UpstreamConfig};
use crate::counters::Counters;
use crate::dns::wire::{self, HEADER_LEN};

/// A query the relay forwards.
pub(in crate::pipeline::upstream) struct Item {
    pub(in crate::pipeline::upstream) q: Query,
    arrived: Instant,
    up: Upstream,
}

impl Relayed for Item {
    fn query(&self) -> &Query {
        &self.q
    }
    fn arrived(&self) -> Instant {
        self.arrived
    }
    fn upstream(&self) -> &Upstream {
        &self.up
    }
}

fn upstream(servers: &[SocketAddr], timeout: Duration) -> Upstream {
    let servers: Vec<String> = servers.iter().map(ToString::to_string).collect();
    upstream_of(&servers, timeout)
}

/// An upstream set of config entries (`IP:PORT`, `tls://…`, `https://…`).
fn upstream_of(servers: &[String], timeout: Duration) -> Upstream {
    upstream_with_ca(servers, timeout, None)
}

/// As [`upstream_of`], trusting `tls_ca` for the encrypted ones.
pub(in crate::pipeline::upstream) fn upstream_with_ca(
    servers: &[String],
    timeout: Duration,
    tls_ca: Option<crate::config::TlsCa>,
) -> Upstream {
    let cfg = UpstreamConfig {
        servers: servers
            .iter()
            .map(|s| crate::config::upstream::parse_server(s).unwrap())
            .collect(),
        timeout,
        tls_ca,
        recursive: None,
        dnssec: None,
    };
    Upstream::new(&cfg, &no_cache(), &Counters::new())
}

/// A cache config that keeps nothing (the TTL bounds are what the stage reads).
pub(in crate::pipeline::upstream) fn no_cache() -> CacheConfig {
    CacheConfig {
        max_entries: 0,
        max_bytes: 0,
        min_ttl: 0,
        max_ttl: 86_400,
        serve_stale: Duration::ZERO,
        prefetch: false,
        failure_ttl: Duration::ZERO,
    }
}

/// A client's query for `name` (dotted, lower or mixed case), type A.
pub(in crate::pipeline::upstream) fn query(name: &str) -> Query {
    let mut m = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        m.push(u8::try_from(label.len()).unwrap());
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    wire::parse_query(&m).unwrap()
}

pub(in crate::pipeline::upstream) fn item(name: &str, up: &Upstream) -> Item {
    Item {
        q: query(name),
        arrived: Instant::now(),
        up: up.clone(),
    }
}

/// The answer to the query `pkt` (header and question only, no records) with `rcode` and
/// `tc`.
fn answer(pkt: &[u8], rcode: u8, tc: bool) -> Vec<u8> {
    let mut qend = HEADER_LEN;
    while pkt[qend] != 0 {
        qend += 1 + usize::from(pkt[qend]);
    }
    qend += 1 + 4;
    let mut a = pkt[..qend].to_vec();
    a[2] = 0x81 | if tc { 0x02 } else { 0 };
    a[3] = 0x80 | rcode;
    a[6..12].fill(0);
    a
}

/// A loopback upstream on a thread of its own: `script` turns each query into the
/// datagrams it sends back; the source ports it saw are kept.
struct Scripted {
    addr: SocketAddr,
    ports: Arc<Mutex<Vec<u16>>>,
}

fn scripted(script: impl Fn(&[u8]) -> Vec<Vec<u8>> + Send + 'static) -> Scripted {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    let ports = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&ports);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            seen.lock().unwrap().push(from.port());
            for out in script(&buf[..n]) {
                let _ = s.send_to(&out, from);
            }
        }
    });
    Scripted { addr, ports }
}

/// A relay with a listener nobody sends to.
pub(in crate::pipeline::upstream) fn relay() -> (Relay<Item>, UdpSocket) {
    let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
    (Relay::new(listener.as_fd()).unwrap(), listener)
}

/// Runs the relay's loop (as the UDP thread does) until `n` queries are settled or `within`
/// has passed.
pub(in crate::pipeline::upstream) fn settle(
    r: &mut Relay<Item>,
    n: usize,
    within: Duration,
) -> Vec<Settled<Item>> {
    let mut out = Vec::new();
    let until = Instant::now() + within;
    while out.len() < n && Instant::now() < until {
        r.flush(&mut out);
        r.wait(Duration::from_millis(10)).unwrap();
        r.receive(&mut out);
        r.expire(Instant::now(), &mut out);
    }
    out
}

fn answered_name(s: &Settled<Item>) -> String {
    match s {
        Settled::Answered(i, _, _) => i.q.name_lossy().to_string(),
        Settled::Resume(i, r) => panic!("{} not answered: {r:?}", i.q.name_lossy()),
        Settled::Failed(i, e) => panic!("{} failed: {e}", i.q.name_lossy()),
    }
}

/// How a first attempt that did not answer goes on.
pub(in crate::pipeline::upstream) fn resumed(s: &Settled<Item>) -> &Resume {
    match s {
        Settled::Resume(_, r) => r,
        Settled::Answered(i, ..) => panic!("{} answered, not resumed", i.q.name_lossy()),
        Settled::Failed(i, e) => panic!("{} failed, not resumed: {e}", i.q.name_lossy()),
    }
}

/// How the first server's attempt goes on (it must be the first server's).
pub(in crate::pipeline::upstream) fn then(s: &Settled<Item>) -> &Then {
    let r = resumed(s);
    assert_eq!(r.server, 0, "the first server's attempt");
    &r.then
}

/// Checks that a miss at `server` (an encrypted one, trusting `ca`, under the name
/// `other.test`, which its certificate does not carry) fails that server within 2 s and
/// that its connection is given up.
pub(in crate::pipeline::upstream) fn a_wrong_name_fails(server: &str, ca: &crate::config::TlsCa) {
    let up = upstream_with_ca(
        &[server.to_string()],
        Duration::from_secs(3),
        Some(ca.clone()),
    );
    let (mut r, _listener) = relay();
    assert!(r.start(item("name.example.test", &up)).is_ok());
    let t0 = Instant::now();
    let got = settle(&mut r, 1, Duration::from_secs(5));
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(got.len(), 1);
    match then(&got[0]) {
        Then::Next(UpstreamError::Transport(_, why)) => {
            assert!(why.contains("certificate"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert!(r.kept.is_empty());
}

const WAIT: Duration = Duration::from_secs(2);

#[test]
fn each_answer_settles_its_own_query_and_forgeries_settle_none() {
    // Before the real answer: one with another ID, one with another name, one with another
    // type; the real one comes with the name's case changed (0x20), as upstreams may.
    let up = scripted(|q| {
        let real = answer(q, 0, false);
        let mut wrong_id = real.clone();
        wrong_id[0] ^= 0xff;
        let mut wrong_name = real.clone();
        wrong_name[HEADER_LEN + 1] ^= 0x01;
        let mut wrong_type = real.clone();
        let t = wrong_type.len() - 3;
        wrong_type[t] = 28;
        let mut upper = real.clone();
        upper[HEADER_LEN + 1..HEADER_LEN + 2].make_ascii_uppercase();
        vec![wrong_id, wrong_name, wrong_type, upper]
    });
    let set = upstream(&[up.addr], WAIT);
    let (mut r, _l) = relay();
    for name in ["a.example", "b.example", "c.example"] {
        assert!(r.start(item(name, &set)).is_ok());
    }
    assert_eq!(r.waiting(), 3);
    let out = settle(&mut r, 3, WAIT);
    let mut names: Vec<String> = out.iter().map(answered_name).collect();
    names.sort();
    assert_eq!(names, ["a.example", "b.example", "c.example"]);
    // Nothing else settles: the forgeries matched no query.
    assert!(settle(&mut r, 1, Duration::from_millis(100)).is_empty());
    assert!(r.idle());
}

#[test]
fn a_silent_server_times_out_and_the_forward_goes_on_at_the_next() {
    let silent = scripted(|_| Vec::new());
    let timeout = Duration::from_millis(150);
    let set = upstream(&[silent.addr, silent.addr], timeout);
    let (mut r, _l) = relay();
    let t = Instant::now();
    assert!(r.start(item("slow.example", &set)).is_ok());
    let out = settle(&mut r, 1, WAIT);
    assert_eq!(out.len(), 1);
    assert!(t.elapsed() >= timeout, "{:?}", t.elapsed());
    let resume = resumed(&out[0]);
    assert_eq!(resume.server, 0);
    assert!(
        matches!(&resume.then, Then::Next(UpstreamError::Timeout(a)) if *a == silent.addr),
        "{resume:?}"
    );
    assert!(r.idle());
}

#[test]
fn truncated_and_servfail_answers_hand_the_query_back() {
    let up = scripted(|q| {
        let tc = q.windows(2).any(|w| w == b"tc");
        let rcode = if q.windows(4).any(|w| w == b"fail") {
            2
        } else {
            0
        };
        vec![answer(q, rcode, tc)]
    });
    let set = upstream(&[up.addr], WAIT);
    let (mut r, _l) = relay();
    assert!(r.start(item("tc.example", &set)).is_ok());
    assert!(r.start(item("fail.example", &set)).is_ok());
    let out = settle(&mut r, 2, WAIT);
    assert_eq!(out.len(), 2);
    for s in &out {
        let Settled::Resume(i, resume) = s else {
            panic!("answered: {}", answered_name(s));
        };
        match i.q.name_lossy().as_ref() {
            "tc.example" => assert!(matches!(resume.then, Then::Again(Step::Tcp))),
            "fail.example" => assert!(
                matches!(resume.then, Then::Next(UpstreamError::Rcode(_, "SERVFAIL"))),
                "{resume:?}"
            ),
            other => panic!("{other}"),
        }
    }
}

#[test]
fn a_closed_port_fails_the_query_at_once_not_after_the_timeout() {
    let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let set = upstream(&[dead], Duration::from_secs(5));
    let (mut r, _l) = relay();
    let t = Instant::now();
    assert!(r.start(item("x.example", &set)).is_ok());
    let out = settle(&mut r, 1, Duration::from_secs(3));
    assert_eq!(out.len(), 1);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(
        matches!(
            resumed(&out[0]).then,
            Then::Next(UpstreamError::Transport(..))
        ),
        "{:?}",
        resumed(&out[0])
    );
}

#[test]
fn sockets_move_to_new_ports_after_max_uses_and_stay_bounded() {
    let up = scripted(|q| vec![answer(q, 0, false)]);
    let set = upstream(&[up.addr], WAIT);
    let (mut r, _l) = relay();
    // Twice what the sockets in use may send before they are all worn.
    let rounds = 2 * PER_SERVER * MAX_USES as usize;
    let mut most_open = 0;
    // In bursts of 64, as a loaded thread would send them.
    for burst in 0..rounds / 64 {
        for i in 0..64 {
            assert!(
                r.start(item(&format!("n{burst}-{i}.example"), &set))
                    .is_ok()
            );
        }
        most_open = most_open.max(r.socks.len());
        let out = settle(&mut r, 64, WAIT);
        assert_eq!(out.len(), 64);
        out.iter().for_each(|s| drop(answered_name(s)));
    }
    let ports: HashSet<u16> = up.ports.lock().unwrap().iter().copied().collect();
    // Every socket serves at most MAX_USES queries from its port.
    assert!(
        ports.len() >= rounds.div_ceil(MAX_USES as usize),
        "{} ports for {rounds} queries",
        ports.len()
    );
    assert!(ports.len() > PER_SERVER, "no socket was replaced");
    assert!(most_open <= PER_SERVER + MAX_DRAINING, "{most_open} open");
    // Retired sockets are closed once their last answer is in.
    assert!(r.socks.len() <= PER_SERVER, "{} open", r.socks.len());
    assert_eq!(r.draining, 0);
}

#[test]
fn a_plain_first_server_before_an_encrypted_one_is_tried_over_udp() {
    let (mut r, _l) = relay();
    let plain = scripted(|q| vec![answer(q, 0, false)]);
    let quic = "quic://127.0.0.1:853#dns.test";
    let up = upstream_of(&[plain.addr.to_string(), quic.into()], WAIT);
    assert!(r.start(item("plain.example", &up)).is_ok());
    let got = settle(&mut r, 1, WAIT);
    assert_eq!(answered_name(&got[0]), "plain.example");
    assert!(
        r.kept.is_empty(),
        "no connection to the encrypted second server"
    );
}
