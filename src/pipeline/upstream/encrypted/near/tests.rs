//! Unit tests of a UDP thread's encrypted first attempts against a loopback DNS-over-TLS
//! server: answered on one kept connection, driven only by the thread's waits; a refused
//! or silent server handed back to go on with the next; plain servers declined.

use std::net::UdpSocket;
use std::sync::atomic::AtomicUsize;
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::config::TlsCa;
use crate::pipeline::upstream::Then;
use crate::pipeline::upstream::relay::tests::{Item, item, relay, upstream_with_ca};

/// The name in the test servers' certificate.
pub(in crate::pipeline::upstream) const NAME: &str = "near.test";

/// A DoT server on its own thread and runtime; `conns` counts its connections.
pub(in crate::pipeline::upstream) struct Dot {
    pub(in crate::pipeline::upstream) addr: SocketAddr,
    pub(in crate::pipeline::upstream) conns: Arc<AtomicUsize>,
    pub(in crate::pipeline::upstream) ca: TlsCa,
}

/// What a test server does with the `n`th query (from 0) of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::pipeline::upstream) enum Act {
    /// Answers it: A 192.0.2.7.
    Answer,
    /// Reads it and stays silent.
    Ignore,
    /// Closes the connection without an answer.
    Close,
}

/// A DoT server that answers every query (`answer`) or none.
pub(in crate::pipeline::upstream) fn dot(answer: bool) -> Dot {
    dot_acting(if answer {
        |_| Act::Answer
    } else {
        |_| Act::Ignore
    })
}

/// A test server's TLS side: a self-signed certificate for [`NAME`] offered with ALPN
/// `alpn`, and the CA entry that trusts it.
/// (An empty `alpn`: the server agrees to none.)
pub(in crate::pipeline::upstream) fn tls_server(alpn: &[u8]) -> (TlsAcceptor, TlsCa) {
    let (certs, ca) = test_certs();
    let mut config = (*crate::tls::dot_config(certs).unwrap()).clone();
    config.alpn_protocols = if alpn.is_empty() {
        Vec::new()
    } else {
        vec![alpn.to_vec()]
    };
    (TlsAcceptor::from(Arc::new(config)), ca)
}

/// A self-signed certificate for [`NAME`] as a test server's, and the CA entry that trusts it.
pub(in crate::pipeline::upstream) fn test_certs() -> (Arc<crate::tls::Certs>, TlsCa) {
    let pair = crate::tls::selfsigned::generate(NAME, SystemTime::now()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, &pair.cert_pem).unwrap();
    std::fs::write(&key, &pair.key_pem).unwrap();
    let certs = Arc::new(crate::tls::Certs::load(&cert, &key).unwrap());
    let ca = TlsCa {
        path: "test-ca.pem".into(),
        certs: rustls::pki_types::CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes())
            .map(|c| c.unwrap().to_vec())
            .collect(),
    };
    (certs, ca)
}

/// Runs the future that `serve` makes on a thread and current-thread runtime of its own
/// (a test server's accept loop).
pub(in crate::pipeline::upstream) fn on_own_thread<F>(serve: impl FnOnce() -> F + Send + 'static)
where
    F: std::future::Future<Output = ()> + 'static,
{
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(serve());
    });
}

/// A TLS server offering ALPN `alpn` on a loopback port, on a thread and runtime of its own:
/// each connection it accepts is counted and handed to `serve` on a task of its own.
pub(in crate::pipeline::upstream) fn tls_serving<F, Fut>(alpn: &[u8], serve: F) -> Dot
where
    F: Fn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (acceptor, ca) = tls_server(alpn);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&conns);
    let serve = Arc::new(serve);
    on_own_thread(move || async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        while let Ok((tcp, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::Relaxed);
            let (acceptor, serve) = (acceptor.clone(), Arc::clone(&serve));
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve(tls).await;
                }
            });
        }
    });
    Dot { addr, conns, ca }
}

/// A DoT server that treats the `n`th query of each connection as `act(n)` says.
pub(in crate::pipeline::upstream) fn dot_acting(act: fn(usize) -> Act) -> Dot {
    tls_serving(crate::tls::ALPN_DOT, move |mut s| async move {
        for n in 0.. {
            let Ok(len) = s.read_u16().await else { return };
            let mut q = vec![0u8; usize::from(len)];
            if s.read_exact(&mut q).await.is_err() {
                return;
            }
            match act(n) {
                Act::Answer => {}
                Act::Ignore => continue,
                Act::Close => return,
            }
            let a = a_record(&q);
            let mut out = u16::try_from(a.len()).unwrap().to_be_bytes().to_vec();
            out.extend_from_slice(&a);
            if s.write_all(&out).await.is_err() {
                return;
            }
        }
    })
}

/// The answer to query `q`: its header and question, one A record 192.0.2.7.
pub(in crate::pipeline::upstream) fn a_record(q: &[u8]) -> Vec<u8> {
    let mut end = crate::dns::wire::HEADER_LEN;
    while q[end] != 0 {
        end += 1 + usize::from(q[end]);
    }
    end += 1 + 4;
    let mut a = q[..end].to_vec();
    a[2] = 0x81;
    a[3] = 0x80;
    a[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
    a.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
    a
}

/// Waits (as the UDP thread does) until `n` attempts are settled or `within` passed.
fn settle(
    near: &mut Near<Item>,
    r: &mut Relay<Item>,
    n: usize,
    within: Duration,
) -> Vec<Settled<Item>> {
    let mut out = Vec::new();
    let until = Instant::now() + within;
    while out.len() < n && Instant::now() < until {
        near.wait(r, Duration::from_millis(20)).unwrap();
        near.settled(&mut out);
    }
    out
}

/// The addresses of an answered attempt.
pub(in crate::pipeline::upstream) fn answer_ip(s: &Settled<Item>) -> String {
    match s {
        Settled::Answered(_, resp, _) => ips(resp),
        Settled::Resume(i, r) => panic!("{} not answered: {r:?}", i.q.name_lossy()),
        Settled::Failed(i, e) => panic!("{} failed: {e}", i.q.name_lossy()),
    }
}

/// The addresses of an answer, comma-separated.
pub(in crate::pipeline::upstream) fn ips(resp: &crate::dns::wire::Response) -> String {
    let mut ips = Vec::new();
    resp.any_address(|ip| {
        ips.push(ip.to_string());
        false
    });
    ips.join(",")
}

#[test]
fn misses_are_answered_on_one_kept_connection_driven_by_the_threads_waits() {
    let server = dot(true);
    let up = upstream_with_ca(
        &[format!("tls://{}#{NAME}", server.addr)],
        Duration::from_secs(3),
        Some(server.ca.clone()),
    );
    let (mut r, _listener) = relay();
    let mut near = Near::new(&r).unwrap();
    assert!(near.idle());
    for i in 0..5 {
        assert!(near.start(item(&format!("n{i}.example.test"), &up)).is_ok());
    }
    assert!(!near.idle(), "started attempts are in flight");
    let got = settle(&mut near, &mut r, 5, Duration::from_secs(5));
    assert_eq!(got.len(), 5, "every attempt settled");
    for s in &got {
        assert_eq!(answer_ip(s), "192.0.2.7");
    }
    assert!(near.idle());
    // Later misses reuse the connection.
    assert!(near.start(item("later.example.test", &up)).is_ok());
    let got = settle(&mut near, &mut r, 1, Duration::from_secs(5));
    assert_eq!(answer_ip(&got[0]), "192.0.2.7");
    assert_eq!(server.conns.load(Ordering::Relaxed), 1, "one connection");
}

#[test]
fn a_silent_or_refusing_server_is_handed_back_to_go_on_with_the_next() {
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
    let mut near = Near::new(&r).unwrap();
    let t0 = Instant::now();
    assert!(near.start(item("slow.example.test", &up)).is_ok());
    let got = settle(&mut near, &mut r, 1, Duration::from_secs(5));
    let waited = t0.elapsed();
    match &got[..] {
        [Settled::Resume(_, res)] => {
            assert_eq!(res.server, 0);
            assert!(
                matches!(res.then, Then::Next(UpstreamError::Timeout(a)) if a == silent.addr),
                "{res:?}"
            );
        }
        other => panic!("{} settled", other.len()),
    }
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    // Nothing listens on a port just freed: refused at once, not after the timeout.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let up = upstream_with_ca(
        &[format!("tls://{closed}#{NAME}")],
        Duration::from_secs(3),
        Some(silent.ca.clone()),
    );
    let t0 = Instant::now();
    assert!(near.start(item("refused.example.test", &up)).is_ok());
    let got = settle(&mut near, &mut r, 1, Duration::from_secs(5));
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    match &got[..] {
        [Settled::Resume(_, res)] => {
            assert!(
                matches!(res.then, Then::Next(UpstreamError::Transport(..))),
                "{res:?}"
            );
        }
        other => panic!("{} settled", other.len()),
    }
}

#[test]
fn a_plain_first_server_is_declined() {
    let up = upstream_with_ca(&["127.0.0.1:53".into()], Duration::from_secs(1), None);
    let (r, _listener) = relay();
    let mut near = Near::new(&r).unwrap();
    assert!(near.start(item("plain.example.test", &up)).is_err());
    assert!(near.idle());
}

#[test]
fn the_wait_returns_when_the_listener_is_readable() {
    let server = dot(false);
    let up = upstream_with_ca(
        &[format!("tls://{}#{NAME}", server.addr)],
        Duration::from_secs(3),
        Some(server.ca.clone()),
    );
    let (mut r, listener) = relay();
    let mut near = Near::new(&r).unwrap();
    assert!(near.start(item("pending.example.test", &up)).is_ok());
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .send_to(b"x", listener.local_addr().unwrap())
        .unwrap();
    let t0 = Instant::now();
    let mut readable = false;
    while !readable && t0.elapsed() < Duration::from_secs(2) {
        readable = near.wait(&mut r, Duration::from_millis(500)).unwrap();
    }
    assert!(readable, "the listener's datagram ends the wait");
    assert!(
        t0.elapsed() < Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );
}
