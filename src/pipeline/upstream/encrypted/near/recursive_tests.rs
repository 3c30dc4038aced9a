//! Unit tests of a UDP thread's recursive misses against a scripted root on 127.54.0.x
//! port 53 (root hints carry no port): resolved whole by the thread's own resolver, driven
//! only by the thread's waits (no other runtime exists here), the resolver kept between
//! misses, even while the listener always has data; a failure or a panic settled as a
//! failure; at most [`MAX_RECURSING`] at once.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::sync::atomic::AtomicBool;

use super::tests::ips;
use super::*;
use crate::config::{Recursion, UpstreamConfig};
use crate::counters::Counters;
use crate::pipeline::upstream::relay::tests::{Item, item, no_cache, relay};

/// A root server on its own thread: answers A queries with 192.0.2.7 (authoritative) and
/// others with no data when `answer`, else nothing at all; counts the queries it got.
struct Root {
    addr: IpAddr,
    asked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Root {
    fn start(addr: Ipv4Addr, answer: bool) -> Self {
        let sock = UdpSocket::bind((addr, 53)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let asked = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, halt) = (Arc::clone(&asked), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !halt.load(Ordering::Relaxed) {
                let Ok((len, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                n.fetch_add(1, Ordering::Relaxed);
                if answer {
                    sock.send_to(&authoritative(&buf[..len]), from).unwrap();
                }
            }
        });
        Self {
            addr: IpAddr::V4(addr),
            asked,
            stop,
        }
    }

    fn asked(&self) -> usize {
        self.asked.load(Ordering::Relaxed)
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The authoritative answer to query `q`: A 192.0.2.7 for type A, no data for the rest.
fn authoritative(q: &[u8]) -> Vec<u8> {
    let mut end = crate::dns::wire::HEADER_LEN;
    while q[end] != 0 {
        end += 1 + usize::from(q[end]);
    }
    let qtype = u16::from_be_bytes([q[end + 1], q[end + 2]]);
    end += 1 + 4;
    let mut a = q[..end].to_vec();
    a[2] = 0x84 | (q[2] & 1);
    a[3] = 0;
    a[6..12].fill(0);
    if qtype == 1 {
        a[7] = 1;
        a.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
    }
    a
}

/// Recursive mode from `root`, each resolution ending after `timeout`.
fn recursive(root: IpAddr, timeout: Duration) -> Upstream {
    let cfg = UpstreamConfig {
        servers: Vec::new(),
        timeout: Duration::from_millis(200),
        tls_ca: None,
        recursive: Some(Recursion {
            roots: vec![root],
            hints_file: None,
            timeout,
        }),
        dnssec: None,
    };
    Upstream::new(&cfg, &no_cache(), &Counters::new())
}

/// Waits (as the UDP thread does) until `n` attempts are settled or 5 s passed.
fn settle(near: &mut Near<Item>, r: &mut Relay<Item>, n: usize) -> Vec<Settled<Item>> {
    let mut out = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while out.len() < n && Instant::now() < until {
        near.wait(r, Duration::from_millis(20)).unwrap();
        near.settled(&mut out);
    }
    out
}

#[test]
fn a_recursive_miss_is_resolved_whole_by_the_threads_own_resolver_driven_by_its_waits() {
    let root = Root::start(Ipv4Addr::new(127, 54, 0, 1), true);
    let up = recursive(root.addr, Duration::from_secs(3));
    let (mut r, _listener) = relay();
    let mut near = Near::new(&r).unwrap();
    assert!(near.start(item("x.example.test", &up)).is_ok());
    assert!(!near.idle());
    match &settle(&mut near, &mut r, 1)[..] {
        [Settled::Answered(_, resp, server)] => {
            assert_eq!(ips(resp), "192.0.2.7");
            assert_eq!(*server, RECURSIVE);
        }
        [Settled::Failed(_, e)] => panic!("failed: {e}"),
        other => panic!("{} settled", other.len()),
    }
    assert!(near.idle());
    // QNAME minimisation: `test`, `example.test`, then the name (the root answers all).
    assert_eq!(root.asked(), 3, "the root was asked");
    let first = near
        .recursors
        .values()
        .map(|t| Arc::as_ptr(&t.twin))
        .collect::<Vec<_>>();
    assert_eq!(first.len(), 1);
    // The same resolver serves the thread's next misses.
    assert!(near.start(item("y.example.test", &up)).is_ok());
    match &settle(&mut near, &mut r, 1)[..] {
        [Settled::Answered(_, resp, _)] => assert_eq!(ips(resp), "192.0.2.7"),
        other => panic!("{} settled", other.len()),
    }
    let then = near
        .recursors
        .values()
        .map(|t| Arc::as_ptr(&t.twin))
        .collect::<Vec<_>>();
    assert_eq!(first, then, "the thread's resolver was kept");
    assert_eq!(root.asked(), 6);
}

#[test]
fn a_listener_that_always_has_data_does_not_hold_the_resolutions_up() {
    let root = Root::start(Ipv4Addr::new(127, 54, 0, 3), true);
    let up = recursive(root.addr, Duration::from_secs(3));
    let (mut r, listener) = relay();
    let mut near = Near::new(&r).unwrap();
    // A datagram the thread never takes: every wait finds the listener readable.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .send_to(b"x", listener.local_addr().unwrap())
        .unwrap();
    assert!(near.start(item("busy.example.test", &up)).is_ok());
    let got = settle(&mut near, &mut r, 1);
    assert!(
        matches!(&got[..], [Settled::Answered(..)]),
        "{} settled",
        got.len()
    );
}

#[test]
fn a_failed_resolution_settles_failed() {
    let root = Root::start(Ipv4Addr::new(127, 54, 0, 2), false);
    let up = recursive(root.addr, Duration::from_millis(400));
    let (mut r, _listener) = relay();
    let mut near = Near::new(&r).unwrap();
    let t0 = Instant::now();
    assert!(near.start(item("silent.example.test", &up)).is_ok());
    match &settle(&mut near, &mut r, 1)[..] {
        [Settled::Failed(_, UpstreamError::Timeout(_) | UpstreamError::Recursion(_))] => {}
        [Settled::Failed(_, e)] => panic!("failed otherwise: {e}"),
        other => panic!("{} settled, not failed", other.len()),
    }
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(root.asked() >= 1);
}

#[test]
fn a_panicking_resolution_is_answered_as_a_failure() {
    let root = Root::start(Ipv4Addr::new(127, 54, 0, 4), true);
    let up = recursive(root.addr, Duration::from_secs(3));
    let (mut r, _listener) = relay();
    let mut near = Near::new(&r).unwrap();
    assert!(near.start(item("panic.example.test", &up)).is_ok());
    match &settle(&mut near, &mut r, 1)[..] {
        [Settled::Failed(_, UpstreamError::Recursion(e))] => {
            assert!(e.contains("injected resolution failure"), "{e}");
        }
        other => panic!("{} settled, not failed", other.len()),
    }
    assert_eq!(near.recursing.load(Ordering::Acquire), 0);
}

#[test]
fn at_most_max_recursing_run_at_once() {
    let root = Root::start(Ipv4Addr::new(127, 54, 0, 5), false);
    let up = recursive(root.addr, Duration::from_millis(400));
    let (mut r, _listener) = relay();
    let mut near = Near::new(&r).unwrap();
    for i in 0..MAX_RECURSING {
        assert!(near.start(item(&format!("n{i}.example.test"), &up)).is_ok());
    }
    assert!(
        near.start(item("one.more.example.test", &up)).is_err(),
        "declined: it runs on the shared runtime"
    );
    assert_eq!(
        settle(&mut near, &mut r, MAX_RECURSING).len(),
        MAX_RECURSING
    );
    // Their tasks are over: the thread takes recursive misses again.
    let until = Instant::now() + Duration::from_secs(2);
    while near.recursing.load(Ordering::Acquire) > 0 && Instant::now() < until {
        near.wait(&mut r, Duration::from_millis(10)).unwrap();
    }
    assert!(near.start(item("again.example.test", &up)).is_ok());
}

#[test]
fn a_resolver_unused_for_forget_goes_with_the_shared_one_it_holds() {
    let root = Root::start(Ipv4Addr::new(127, 54, 0, 6), true);
    let up = recursive(root.addr, Duration::from_secs(3));
    let Some(shared) = up.recursive().map(Arc::clone) else {
        panic!("a recursive upstream holds a shared resolver");
    };
    let (mut r, _listener) = relay();
    let Ok(mut near) = Near::new(&r) else {
        panic!("the thread's runtime starts");
    };
    assert!(near.start(item("x.example.test", &up)).is_ok());
    assert_eq!(settle(&mut near, &mut r, 1).len(), 1);
    assert!(near.idle());
    let held = Arc::strong_count(&shared);
    // A reload replaced the upstream: nothing asks this resolver any more.
    drop(up);
    let now = Instant::now();
    near.sweep(now + FORGET / 2 + Duration::from_secs(1));
    assert_eq!(near.recursors.len(), 1, "kept while used within FORGET");
    near.sweep(now + FORGET + Duration::from_secs(60));
    assert!(near.recursors.is_empty());
    assert_eq!(
        Arc::strong_count(&shared),
        held - 2,
        "neither the thread's resolver nor the upstream holds the shared one"
    );
}
