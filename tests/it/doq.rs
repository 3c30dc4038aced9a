//! DNS over QUIC (RFC 9250): the real service with `server.quic_listen` on 127.0.0.1:0 and a
//! certificate made by the library's `cert self-signed` code, asked by hickory's DoQ client
//! (hickory-net's `QuicClientStream`; Debian's kdig 3.2 is built without QUIC: it ignores
//! `+quic` and asks over UDP) and, for what a real client never sends, by a bare quinn
//! client. Also: the certificate renewed on disk, and `quic://` upstreams played by
//! hickory-server's DoQ listener (not our code), with failover from a dead one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use hickory_proto::op::{DnsRequest, DnsRequestOptions, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use hickory_server::net::quic::QuicClientStream;
use hickory_server::net::xfer::DnsRequestSender as _;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use sinkhole::tls::selfsigned::SelfSigned;

use crate::fake_upstream::{FakeUpstream, a, dead_upstream};
use crate::harness::{TestServer, first_answer, make_query, udp_exchange};
use crate::querylog::records;
use crate::tls::{NAME, pair};

/// The config: DoQ beside UDP/TCP, the pair in `cert.pem`/`key.pem`, a block list and the
/// query log.
fn config(up: &FakeUpstream, extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_threads = 1\nquic_listen = [\"127.0.0.1:0\"]\n\
         tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n{extra}\n\
         [upstream]\nservers = [\"{}\"]\n[blocking]\nlists = [\"block.txt\"]\n\
         [log]\npath = \"queries.jsonl\"\n",
        up.addr
    )
}

async fn start(p: &SelfSigned) -> (TestServer, FakeUpstream) {
    start_with(p, "").await
}

/// As [`start`], with `extra` in `[server]`.
async fn start_with(p: &SelfSigned, extra: &str) -> (TestServer, FakeUpstream) {
    let up = FakeUpstream::start(vec![a("www.example.test.", "192.0.2.80", 300)]).await;
    let s = TestServer::start(
        &config(&up, extra),
        &[
            ("cert.pem", &p.cert_pem),
            ("key.pem", &p.key_pem),
            ("block.txt", "ads.test\n"),
        ],
    )
    .await;
    (s, up)
}

/// A TLS 1.3 client config trusting `trusted` only, ALPN `doq`.
fn client_tls(trusted: &SelfSigned) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(trusted.cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(sinkhole::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"doq".to_vec()];
    cfg
}

/// hickory's DoQ client, connected to `addr` as `NAME`, trusting `trusted`.
async fn hickory_client(
    addr: SocketAddr,
    trusted: &SelfSigned,
) -> Result<QuicClientStream, String> {
    let connect = QuicClientStream::builder()
        .crypto_config(client_tls(trusted))
        .build(addr, Arc::from(NAME));
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Err(_) => Err("connect timed out".into()),
        Ok(r) => r.map_err(|e| e.to_string()),
    }
}

/// One query through hickory's client.
async fn ask(c: &mut QuicClientStream, name: &str, rt: RecordType) -> Result<Message, String> {
    let q = Query::query(Name::from_ascii(name).unwrap(), rt);
    let mut answers = c.send_message(DnsRequest::from_query(q, DnsRequestOptions::default()));
    match tokio::time::timeout(Duration::from_secs(5), answers.next()).await {
        Err(_) => Err("no answer over quic".into()),
        Ok(None) => Err("no answer".into()),
        Ok(Some(r)) => r.map(|r| r.into_message()).map_err(|e| e.to_string()),
    }
}

/// A bare quinn connection to `addr`, trusting `trusted`.
async fn raw_conn(addr: SocketAddr, trusted: &SelfSigned) -> quinn::Connection {
    raw_connect(addr, trusted).await.unwrap()
}

async fn raw_connect(
    addr: SocketAddr,
    trusted: &SelfSigned,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client_tls(trusted)).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let connect = ep.connect(addr, NAME).unwrap();
    tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .expect("quic connect timed out")
}

/// Sends `bytes` on a new stream of `conn`, finishes it, and reads what comes back.
async fn raw_stream(conn: &quinn::Connection, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(bytes).await.map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    let read = recv.read_to_end(70_000);
    match tokio::time::timeout(Duration::from_secs(5), read).await {
        Err(_) => Err("no answer".into()),
        Ok(r) => r.map_err(|e| e.to_string()),
    }
}

fn framed(m: &Message) -> Vec<u8> {
    sinkhole::dns::doq::framed(&m.to_vec().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn doq_answers_blocked_and_forwarded_names_and_logs_proto_quic() {
    let p = pair();
    let (s, up) = start(&p).await;
    let mut c = hickory_client(s.quic_addr(), &p).await.unwrap();
    // Several queries on one connection, one stream each: blocked, forwarded.
    let m = ask(&mut c, "x.ads.test.", RecordType::A).await.unwrap();
    assert_eq!(first_answer(&m), "0.0.0.0");
    assert_eq!(m.metadata.id, 0, "DoQ answers carry ID 0");
    let m = ask(&mut c, "www.example.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(first_answer(&m), "192.0.2.80");
    assert_eq!(up.calls(), 1);
    // Concurrent queries on the same connection.
    let mut many = Vec::new();
    for _ in 0..8 {
        many.push(c.send_message(DnsRequest::from_query(
            Query::query(
                Name::from_ascii("www.example.test.").unwrap(),
                RecordType::A,
            ),
            DnsRequestOptions::default(),
        )));
    }
    for mut r in many {
        let m = r.next().await.unwrap().unwrap().into_message();
        assert_eq!(first_answer(&m), "192.0.2.80");
    }
    // The same names over UDP, for the log's other value.
    let m = udp_exchange(s.addr, &make_query("x.ads.test.", RecordType::AAAA, None))
        .await
        .unwrap();
    assert_eq!(first_answer(&m), "::");
    let recs = records(&s.path("queries.jsonl"), 11).await;
    let mut seen: Vec<(String, String, String)> = recs
        .iter()
        .map(|r| {
            let f = |k: &str| r[k].as_str().unwrap_or("").to_string();
            (f("qname"), f("proto"), f("action"))
        })
        .collect();
    seen.sort();
    seen.dedup();
    let want: Vec<(String, String, String)> = [
        ("www.example.test", "quic", "allowed"),
        ("www.example.test", "quic", "cached"),
        ("x.ads.test", "quic", "blocked"),
        ("x.ads.test", "udp", "blocked"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(seen, want);
    // A client that trusts another certificate gets no connection.
    assert!(hickory_client(s.quic_addr(), &pair()).await.is_err());
    // The first connection is still good.
    let m = ask(&mut c, "www.example.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(first_answer(&m), "192.0.2.80");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_protocol_error_closes_that_connection_only() {
    let p = pair();
    let (s, _up) = start(&p).await;
    let mut good = hickory_client(s.quic_addr(), &p).await.unwrap();
    // ID 0 on a bare stream: answered, stream finished after one message.
    let raw = raw_conn(s.quic_addr(), &p).await;
    let mut q = make_query("x.ads.test.", RecordType::A, None);
    q.metadata.id = 0;
    let got = raw_stream(&raw, &framed(&q)).await.unwrap();
    let m = sinkhole::dns::doq::message(&got, true).unwrap().unwrap();
    let m = Message::from_vec(m).unwrap();
    assert_eq!(
        (m.metadata.id, first_answer(&m)),
        (0, "0.0.0.0".to_string())
    );
    // A non-zero ID: the connection is closed with DOQ_PROTOCOL_ERROR (0x2).
    q.metadata.id = 0x1234;
    assert!(raw_stream(&raw, &framed(&q)).await.is_err());
    let why = raw.closed().await;
    assert!(
        matches!(&why, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == quinn::VarInt::from_u32(2)),
        "{why:?}"
    );
    // Two messages on one stream, and a stream finished inside its message: the same.
    q.metadata.id = 0;
    for bytes in [[framed(&q), framed(&q)].concat(), framed(&q)[..10].to_vec()] {
        let raw = raw_conn(s.quic_addr(), &p).await;
        assert!(raw_stream(&raw, &bytes).await.is_err());
        let why = raw.closed().await;
        assert!(
            matches!(&why, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == quinn::VarInt::from_u32(2)),
            "{why:?}"
        );
    }
    // Everyone else goes on: the other connection, and new ones.
    let m = ask(&mut good, "www.example.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(first_answer(&m), "192.0.2.80");
    let mut fresh = hickory_client(s.quic_addr(), &p).await.unwrap();
    let m = ask(&mut fresh, "x.ads.test.", RecordType::A).await.unwrap();
    assert_eq!(first_answer(&m), "0.0.0.0");
    assert_eq!(s.service().server().faults().panics(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewed_certificate_serves_new_quic_connections_while_old_ones_go_on() {
    let (old, new) = (pair(), pair());
    let (s, _up) = start(&old).await;
    let mut before = hickory_client(s.quic_addr(), &old).await.unwrap();
    ask(&mut before, "x.ads.test.", RecordType::A)
        .await
        .unwrap();
    // The renewal: both files replaced (as certbot does: new files, then the names).
    for (name, text) in [("cert.pem", &new.cert_pem), ("key.pem", &new.key_pem)] {
        std::fs::write(s.path(&format!("{name}.tmp")), text).unwrap();
        std::fs::rename(s.path(&format!("{name}.tmp")), s.path(name)).unwrap();
    }
    let t = Instant::now();
    let mut after = loop {
        if let Ok(c) = hickory_client(s.quic_addr(), &new).await {
            break c;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "new certificate not served after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let m = ask(&mut after, "www.example.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(first_answer(&m), "192.0.2.80");
    // New connections get the new certificate only; the old connection goes on.
    assert!(hickory_client(s.quic_addr(), &old).await.is_err());
    let m = ask(&mut before, "x.ads.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(first_answer(&m), "0.0.0.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn quic_connections_are_bounded_per_client_and_closed_when_idle() {
    let p = pair();
    let (s, _up) = start_with(&p, "tcp_max_per_client = 2\ntcp_idle_ms = 400").await;
    let c1 = raw_conn(s.quic_addr(), &p).await;
    let c2 = raw_conn(s.quic_addr(), &p).await;
    // A third connection from the same address is refused.
    let third = raw_connect(s.quic_addr(), &p).await;
    assert!(
        matches!(third, Err(quinn::ConnectionError::ConnectionClosed(_))),
        "{third:?}"
    );
    // The two held answer; plain UDP is not affected.
    let mut q = make_query("x.ads.test.", RecordType::A, None);
    q.metadata.id = 0;
    for c in [&c1, &c2] {
        let got = raw_stream(c, &framed(&q)).await.unwrap();
        assert!(sinkhole::dns::doq::message(&got, true).unwrap().is_some());
    }
    let m = s.query("x.ads.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "0.0.0.0");
    // Without a query for tcp_idle_ms, the server closes them (DOQ_NO_ERROR, or QUIC's own
    // idle timeout, which is the same).
    for c in [&c1, &c2] {
        let why = tokio::time::timeout(Duration::from_secs(3), c.closed())
            .await
            .expect("idle connection not closed");
        assert!(
            matches!(&why, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == quinn::VarInt::from_u32(0))
                || matches!(why, quinn::ConnectionError::TimedOut),
            "{why:?}"
        );
    }
    // Their slots are given back.
    let t = Instant::now();
    let c3 = loop {
        if let Ok(c) = raw_connect(s.quic_addr(), &p).await {
            break c;
        }
        assert!(t.elapsed() < Duration::from_secs(3), "slots not given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(raw_stream(&c3, &framed(&q)).await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn ddr_names_the_doq_endpoint_and_a_doq_client_follows_it() {
    use crate::ddr::{alpn, hint, port, svcb};
    let p = pair();
    let (s, _up) = start_with(
        &p,
        &format!("name = \"{NAME}\"\ntls_listen = [\"127.0.0.1:0\"]"),
    )
    .await;
    for qname in ["_dns.resolver.arpa.", "_dns.dns.test."] {
        let m = s.query(qname, RecordType::SVCB).await;
        let recs = svcb(&m);
        assert_eq!(recs.len(), 2, "{qname}: {m:?}");
        let (dot, doq) = (&recs[0], &recs[1]);
        assert_eq!(
            (alpn(dot), port(dot)),
            (vec!["dot".to_string()], s.tls_addr().port())
        );
        assert_eq!(doq.svc_priority, 2);
        assert_eq!(doq.target_name.to_ascii(), "dns.test.");
        assert_eq!(alpn(doq), ["doq"]);
        assert_eq!(port(doq), s.quic_addr().port());
        assert_eq!(hint(doq), [std::net::IpAddr::from([127, 0, 0, 1])]);
    }
    // A DoQ client that follows it gets filtered answers.
    let m = s.query("_dns.resolver.arpa.", RecordType::SVCB).await;
    let doq = &svcb(&m)[1];
    let at = SocketAddr::new(hint(doq)[0], port(doq));
    let mut c = hickory_client(at, &p).await.unwrap();
    let m = ask(&mut c, "x.ads.test.", RecordType::A).await.unwrap();
    assert_eq!(first_answer(&m), "0.0.0.0");
}

/// The certificate of `p` in a folder, loaded as the listeners load theirs (for hickory's
/// DoQ server).
fn certs(p: &SelfSigned) -> (Arc<sinkhole::tls::Certs>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&c, &p.cert_pem).unwrap();
    std::fs::write(&k, &p.key_pem).unwrap();
    (Arc::new(sinkhole::tls::Certs::load(&c, &k).unwrap()), dir)
}

/// An upstream on hickory-server's DoQ listener with the certificate of `p` (name `NAME`).
async fn doq_upstream(p: &SelfSigned, ip: &str) -> (FakeUpstream, SocketAddr, tempfile::TempDir) {
    let mut up = FakeUpstream::start(vec![
        a("www.example.test.", ip, 300),
        a("mail.example.test.", ip, 300),
    ])
    .await;
    let (certs, dir) = certs(p);
    let addr = up.serve_quic(certs).await;
    (up, addr, dir)
}

/// sinkhole forwarding to `servers`, trusting the certificate of `p` as `upstream.tls_ca`.
async fn forwarder(p: &SelfSigned, servers: &[String], timeout_ms: u64) -> TestServer {
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_threads = 1\n\
         [upstream]\nservers = [{}]\ntls_ca = \"ca.pem\"\ntimeout_ms = {timeout_ms}\n\
         [cache]\nmax_entries = 0\n",
        list.join(", ")
    );
    TestServer::start(&toml, &[("ca.pem", &p.cert_pem)]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn quic_upstream_answers_on_one_kept_connection() {
    let p = pair();
    let (up, addr, _dir) = doq_upstream(&p, "192.0.2.53").await;
    let s = forwarder(&p, &[format!("quic://{addr}#{NAME}")], 2000).await;
    for name in ["www.example.test.", "mail.example.test."] {
        let m = s.query(name, RecordType::A).await;
        assert_eq!(first_answer(&m), "192.0.2.53", "{name}");
    }
    // Concurrent misses share the connection too.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let addr = s.addr;
        tasks.push(tokio::spawn(async move {
            udp_exchange(addr, &make_query("www.example.test.", RecordType::A, None))
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(first_answer(&t.await.unwrap()), "192.0.2.53");
    }
    assert_eq!(up.quic_calls(), 12, "every miss went over QUIC");
    assert_eq!(
        up.sources(),
        1,
        "one connection (one client endpoint) for all"
    );
    // A name the upstream does not have: its NXDOMAIN, not a failure.
    let m = s.query("nope.example.test.", RecordType::A).await;
    assert_eq!(
        m.metadata.response_code,
        hickory_proto::op::ResponseCode::NXDomain
    );
    // Quiet gaps longer than the UDP thread's nap (15 ms) and than the acknowledgement's
    // delay (25 ms): the thread blocks on its listener between misses, the connection's
    // timers still run, and the same connection answers.
    for gap in [30, 60, 30] {
        tokio::time::sleep(Duration::from_millis(gap)).await;
        let m = s.query("mail.example.test.", RecordType::A).await;
        assert_eq!(first_answer(&m), "192.0.2.53");
    }
    assert_eq!(up.sources(), 1, "still one connection");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_or_untrusted_quic_upstream_fails_over_within_the_deadline() {
    let p = pair();
    let (up, addr, _dir) = doq_upstream(&p, "192.0.2.54").await;
    // A UDP port that never answers (the handshake never comes back).
    let (dead, _guard) = dead_upstream();
    let s = forwarder(
        &p,
        &[
            format!("quic://{dead}#{NAME}"),
            format!("quic://{addr}#{NAME}"),
        ],
        500,
    )
    .await;
    let t = Instant::now();
    let m = s.query("www.example.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "192.0.2.54");
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "failover took {:?}",
        t.elapsed()
    );
    assert_eq!(up.quic_calls(), 1);
    // A server whose certificate carries another name is not trusted: failover again.
    let s = forwarder(
        &p,
        &[format!("quic://{addr}#other.test"), format!("{}", up.addr)],
        500,
    )
    .await;
    let m = s.query("mail.example.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "192.0.2.54");
    assert_eq!(up.quic_calls(), 1, "the untrusted server got no query");
}
