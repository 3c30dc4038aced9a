//! Unit tests of a relay's DNS-over-QUIC connections against a loopback quinn server:
//! misses answered on one kept connection by the relay's own loop (a server that stops
//! reading a stream once it has the query still answers on it), which goes idle once the
//! acknowledgements are out; a silent server times out and a closed port fails at once; a
//! certificate for another name fails the server; a connection the server closes after
//! answering hands its queries back for the same server; a handshake that never ends is
//! given up when the attempt's time is over.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::super::super::encrypted::near::tests::{
    Act, NAME, a_record, answer_ip, on_own_thread, test_certs,
};
use super::super::super::{Step, Then, UpstreamError};
use super::super::tests::{a_wrong_name_fails, item, relay, settle, then, upstream_with_ca};
use crate::config::TlsCa;

/// A DoQ server on its own thread and runtime; `conns` counts its connections.
struct Doq {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    ca: TlsCa,
}

/// A DoQ server that treats the `n`th stream (from 0) of each connection as `act(n)` says.
fn doq_acting(act: fn(usize) -> Act) -> Doq {
    let (certs, ca) = test_certs();
    let tls = crate::tls::doq_config(certs).unwrap();
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&conns);
    on_own_thread(move || async move {
        socket.set_nonblocking(true).unwrap();
        let runtime = quinn::default_runtime().unwrap();
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(config),
            socket,
            runtime,
        )
        .unwrap();
        while let Some(incoming) = endpoint.accept().await {
            counted.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                for n in 0.. {
                    let Ok((mut send, mut recv)) = conn.accept_bi().await else {
                        return;
                    };
                    // The message, then a stop instead of waiting for the stream's
                    // end, as hickory's DoQ server does: the query stays answered.
                    let mut len = [0u8; 2];
                    if recv.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut q = vec![0u8; 2 + usize::from(u16::from_be_bytes(len))];
                    if recv.read_exact(&mut q[2..]).await.is_err() {
                        return;
                    }
                    let _ = recv.stop(quinn::VarInt::from_u32(0));
                    match act(n) {
                        Act::Answer => {}
                        // Held open, unanswered, until the connection ends.
                        Act::Ignore => {
                            tokio::spawn(async move {
                                let _kept = (send, recv);
                                std::future::pending::<()>().await;
                            });
                            continue;
                        }
                        Act::Close => {
                            conn.close(quinn::VarInt::from_u32(0), b"bye");
                            return;
                        }
                    }
                    let a = a_record(&q[2..]);
                    let mut out = u16::try_from(a.len()).unwrap().to_be_bytes().to_vec();
                    out.extend_from_slice(&a);
                    if send.write_all(&out).await.is_err() || send.finish().is_err() {
                        return;
                    }
                }
            });
        }
    });
    Doq { addr, conns, ca }
}

#[test]
fn misses_are_answered_on_one_kept_connection_and_the_relay_goes_idle_after() {
    let server = doq_acting(|_| Act::Answer);
    let up = upstream_with_ca(
        &[format!("quic://{}#{NAME}", server.addr)],
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
    for round in 0..3 {
        for i in 0..3 {
            let name = format!("r{round}-{i}.example.test");
            assert!(r.start(item(&name, &up)).is_ok());
        }
        let got = settle(&mut r, 3, Duration::from_secs(5));
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|s| answer_ip(s) == "192.0.2.7"));
    }
    assert_eq!(server.conns.load(Ordering::Relaxed), 1, "one connection");
    assert_eq!(r.kept.len(), 1);
    // Nothing in flight: the thread may block on its listener alone until the
    // connection's next timer (an acknowledgement's, or at least the idle timeout's), not
    // past it.
    let now = Instant::now();
    let due = r.kept.values().filter_map(|k| k.timer()).min();
    let due = due.expect("a connection has a timer");
    let ahead = due.saturating_duration_since(now);
    assert!(
        !r.may_nap(now, ahead + Duration::from_millis(1)),
        "past the timer"
    );
    if due > now {
        assert!(r.may_nap(now, ahead), "up to the timer");
    }
    // A query in flight: never.
    assert!(r.start(item("nap.example.test", &up)).is_ok());
    assert!(!r.may_nap(now, Duration::ZERO), "a query in flight");
    let got = settle(&mut r, 1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    // The acknowledgements go out on the connection's timer; then nothing keeps the
    // thread from blocking on its listener alone.
    let until = Instant::now() + Duration::from_secs(3);
    while !r.idle() && Instant::now() < until {
        settle(&mut r, 1, Duration::from_millis(20));
    }
    assert!(r.idle(), "idle once the connection's near timers ran");
    assert_eq!(r.kept.len(), 1, "and the connection is kept");
}

#[test]
fn a_silent_server_times_out_and_a_closed_port_fails_at_once() {
    let silent = doq_acting(|_| Act::Ignore);
    let up = upstream_with_ca(
        &[format!("quic://{}#{NAME}", silent.addr)],
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
    assert_eq!(r.kept.len(), 1, "the connection itself was fine");

    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let up = upstream_with_ca(
        &[format!("quic://{closed}#{NAME}")],
        Duration::from_secs(3),
        Some(silent.ca.clone()),
    );
    let t0 = Instant::now();
    assert!(r.start(item("refused.example.test", &up)).is_ok());
    let got = settle(&mut r, 1, Duration::from_secs(5));
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!(got.len(), 1);
    assert!(
        matches!(then(&got[0]), Then::Next(UpstreamError::Transport(a, _)) if *a == closed),
        "{:?}",
        then(&got[0])
    );
    assert_eq!(r.kept.len(), 1, "the refused connection is closed");
}

#[test]
fn a_certificate_for_another_name_fails_the_server() {
    let server = doq_acting(|_| Act::Answer);
    a_wrong_name_fails(&format!("quic://{}#other.test", server.addr), &server.ca);
}

#[test]
fn a_connection_closed_after_answering_hands_its_queries_back_for_the_same_server() {
    // The first stream is answered, the second closes the connection.
    let server = doq_acting(|n| if n == 0 { Act::Answer } else { Act::Close });
    let up = upstream_with_ca(
        &[format!("quic://{}#{NAME}", server.addr)],
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
    assert!(r.kept.is_empty(), "the closed connection is dropped");
}

#[test]
fn a_handshake_that_never_ends_times_out_and_is_given_up() {
    // A socket that takes the packets and never answers.
    let mute = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = doq_acting(|_| Act::Answer);
    let up = upstream_with_ca(
        &[format!("quic://{}#{NAME}", mute.local_addr().unwrap())],
        Duration::from_millis(300),
        Some(server.ca.clone()),
    );
    let (mut r, _listener) = relay();
    let t0 = Instant::now();
    assert!(r.start(item("mute.example.test", &up)).is_ok());
    let got = settle(&mut r, 1, Duration::from_secs(5));
    let waited = t0.elapsed();
    assert_eq!(got.len(), 1);
    assert!(
        matches!(then(&got[0]), Then::Next(UpstreamError::Timeout(_))),
        "{:?}",
        then(&got[0])
    );
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert!(
        r.kept.is_empty(),
        "the connection that never opened is given up"
    );
}
