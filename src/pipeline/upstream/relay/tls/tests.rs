//! Unit tests of a relay's DNS-over-TLS connections against loopback servers: misses
//! answered on one kept connection by the relay's own loop; a silent server, a refused
//! port, a wrong certificate and a handshake that never ends each settle the attempt in
//! time; a connection the server closes after answering hands its queries back for the
//! same server; the queries in flight per connection are bounded.

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::super::super::encrypted::MAX_IN_FLIGHT;
use super::super::super::encrypted::near::tests::{Act, NAME, answer_ip, dot, dot_acting, ips};
use super::super::super::{Step, Then, UpstreamError};
use super::super::Settled;
use super::super::tests::{a_wrong_name_fails, item, relay, settle, then, upstream_with_ca};

#[test]
fn misses_are_answered_on_one_kept_connection_by_the_relays_loop() {
    let server = dot(true);
    let up = upstream_with_ca(
        &[format!("tls://{}#{NAME}", server.addr)],
        Duration::from_secs(3),
        Some(server.ca.clone()),
    );
    let (mut r, _listener) = relay();
    for i in 0..5 {
        assert!(r.start(item(&format!("n{i}.example.test"), &up)).is_ok());
    }
    assert!(!r.idle(), "the attempts are in flight before the handshake");
    let got = settle(&mut r, 5, Duration::from_secs(5));
    assert_eq!(got.len(), 5, "every attempt settled");
    for s in &got {
        assert_eq!(answer_ip(s), "192.0.2.7");
    }
    assert!(r.idle());
    // Later misses reuse the connection, one batch of several at once too.
    for round in 0..3 {
        for i in 0..3 {
            assert!(
                r.start(item(&format!("r{round}-{i}.example.test"), &up))
                    .is_ok()
            );
        }
        let got = settle(&mut r, 3, Duration::from_secs(5));
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|s| answer_ip(s) == "192.0.2.7"));
    }
    assert_eq!(server.conns.load(Ordering::Relaxed), 1, "one connection");
    assert_eq!(r.kept.len(), 1);
}

#[test]
fn a_silent_server_times_out_and_a_refused_port_fails_at_once() {
    let silent = dot(false);
    let up = upstream_with_ca(
        &[
            format!("tls://{}#{NAME}", silent.addr),
            "192.0.2.99:53".into(),
        ],
        Duration::from_millis(300),
        Some(silent.ca.clone()),
    );
    let (mut r, _listener) = relay();
    let t0 = Instant::now();
    assert!(r.start(item("slow.example.test", &up)).is_ok());
    let got = settle(&mut r, 1, Duration::from_secs(5));
    let waited = t0.elapsed();
    assert_eq!(got.len(), 1);
    assert!(
        matches!(then(&got[0]), Then::Next(UpstreamError::Timeout(a)) if *a == silent.addr),
        "{:?}",
        then(&got[0])
    );
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    // The connection itself was fine (handshake done): it stays for the next miss.
    assert_eq!(r.kept.len(), 1);

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let up = upstream_with_ca(
        &[format!("tls://{closed}#{NAME}")],
        Duration::from_secs(3),
        Some(silent.ca.clone()),
    );
    let t0 = Instant::now();
    assert!(r.start(item("refused.example.test", &up)).is_ok());
    let got = settle(&mut r, 1, Duration::from_secs(5));
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!(got.len(), 1);
    assert!(
        matches!(then(&got[0]), Then::Next(UpstreamError::Transport(..))),
        "{:?}",
        then(&got[0])
    );
    assert_eq!(r.kept.len(), 1, "the refused connection is closed");
}

#[test]
fn a_certificate_for_another_name_fails_the_server() {
    let server = dot(true);
    a_wrong_name_fails(&format!("tls://{}#other.test", server.addr), &server.ca);
}

#[test]
fn a_handshake_that_never_ends_times_out_and_is_given_up() {
    // Accepts the TCP connection and never says a word.
    let mute = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = mute.local_addr().unwrap();
    let server = dot(true);
    let up = upstream_with_ca(
        &[format!("tls://{addr}#{NAME}")],
        Duration::from_millis(300),
        Some(server.ca.clone()),
    );
    let (mut r, _listener) = relay();
    assert!(r.start(item("mute.example.test", &up)).is_ok());
    let (_held, _) = mute.accept().unwrap();
    let got = settle(&mut r, 1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert!(
        matches!(then(&got[0]), Then::Next(UpstreamError::Timeout(a)) if *a == addr),
        "{:?}",
        then(&got[0])
    );
    assert!(r.kept.is_empty(), "the stuck connection is closed");
    assert!(r.idle());
}

#[test]
fn a_connection_closed_after_answering_hands_its_queries_back_for_the_same_server() {
    // Answers the first query of a connection and closes it at the second.
    let server = dot_acting(|n| if n == 0 { Act::Answer } else { Act::Close });
    let up = upstream_with_ca(
        &[format!("tls://{}#{NAME}", server.addr)],
        Duration::from_secs(3),
        Some(server.ca.clone()),
    );
    let (mut r, _listener) = relay();
    assert!(r.start(item("first.example.test", &up)).is_ok());
    let got = settle(&mut r, 1, Duration::from_secs(5));
    assert_eq!(answer_ip(&got[0]), "192.0.2.7");
    assert!(r.start(item("second.example.test", &up)).is_ok());
    let t0 = Instant::now();
    let got = settle(&mut r, 1, Duration::from_secs(5));
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(got.len(), 1);
    assert!(
        matches!(then(&got[0]), Then::Again(Step::Link)),
        "{:?}",
        then(&got[0])
    );
    assert!(r.kept.is_empty());
    // On the runtime, the same server answers it over the runtime's own connection.
    let Some(Settled::Resume(it, res)) = got.into_iter().next() else {
        unreachable!()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (resp, from) = rt.block_on(up.resume(&it.q, Instant::now(), res)).unwrap();
    assert_eq!(from, server.addr);
    assert_eq!(ips(&resp), "192.0.2.7");
    // The next miss opens a new connection.
    assert!(r.start(item("third.example.test", &up)).is_ok());
    let got = settle(&mut r, 1, Duration::from_secs(5));
    assert_eq!(answer_ip(&got[0]), "192.0.2.7");
    assert_eq!(
        server.conns.load(Ordering::Relaxed),
        3,
        "the relay's two and the runtime's"
    );
}

#[test]
fn queries_in_flight_per_connection_are_bounded() {
    let silent = dot(false);
    let up = upstream_with_ca(
        &[format!("tls://{}#{NAME}", silent.addr)],
        Duration::from_secs(3),
        Some(silent.ca.clone()),
    );
    let (mut r, _listener) = relay();
    for i in 0..MAX_IN_FLIGHT {
        assert!(
            r.start(item(&format!("b{i}.example.test"), &up)).is_ok(),
            "{i}"
        );
    }
    assert!(
        r.start(item("one-more.example.test", &up)).is_err(),
        "beyond the bound the miss is given back"
    );
    assert_eq!(r.waiting(), MAX_IN_FLIGHT);
}
