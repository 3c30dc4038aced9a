//! Encrypted upstreams (`tls://` and `https://` entries of `upstream.servers`): the real
//! service forwards its misses to in-process DNS-over-TLS and DNS-over-HTTPS servers on
//! loopback (tokio-rustls; the `h2` crate's server), whose certificate the test makes and
//! gives the service as `upstream.tls_ca`. Each test server answers every A query with its
//! own address and counts the connections it accepted and the queries it answered. Two DoH
//! upstreams are other implementations, so that our own HTTP/2 client meets more than the one
//! it replaced: nghttpd (nghttp2), and dnsdist (h2o), which indexes its answers' fields in
//! HPACK's dynamic table although the client allows none.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use hickory_proto::rr::RecordType;
use hyper::body::Bytes;
use sinkhole::tls::selfsigned::{self, SelfSigned};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, first_answer, make_query, udp_exchange};

/// The name on the test upstreams' certificate.
const NAME: &str = "upstream.test";

/// A DoT or DoH test server.
struct Enc {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    queries: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

impl Enc {
    fn conns(&self) -> usize {
        self.conns.load(Ordering::Relaxed)
    }
    fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

fn pair() -> SelfSigned {
    selfsigned::generate(NAME, SystemTime::now()).unwrap()
}

/// The certificate loaded as the library's listeners load theirs.
fn certs(p: &SelfSigned) -> (Arc<sinkhole::tls::Certs>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&c, &p.cert_pem).unwrap();
    std::fs::write(&k, &p.key_pem).unwrap();
    (Arc::new(sinkhole::tls::Certs::load(&c, &k).unwrap()), dir)
}

/// The answer to the query `q`: its question, one A record with `ip`, TTL 300.
fn answer(q: &[u8], ip: [u8; 4]) -> Vec<u8> {
    let mut end = 12;
    while end < q.len() && q[end] != 0 {
        end += 1 + usize::from(q[end]);
    }
    end += 5;
    let mut a = q[..end.min(q.len())].to_vec();
    a[2] = 0x81 | (q[2] & 0x01);
    a[3] = 0x80;
    a[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
    a.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4]);
    a.extend_from_slice(&ip);
    a
}

/// A DNS-over-TLS server answering `ip`; it closes each connection after `per_conn`
/// answers (as a server timing out idle connections would).
async fn dot_server(p: &SelfSigned, ip: [u8; 4], per_conn: usize) -> Enc {
    let (certs, dir) = certs(p);
    let acceptor = TlsAcceptor::from(sinkhole::tls::dot_config(certs).unwrap());
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (conns, queries) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, n) = (Arc::clone(&conns), Arc::clone(&queries));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            c.fetch_add(1, Ordering::Relaxed);
            let (acceptor, n) = (acceptor.clone(), Arc::clone(&n));
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                for _ in 0..per_conn {
                    let Ok(len) = s.read_u16().await else { return };
                    let mut q = vec![0u8; usize::from(len)];
                    if s.read_exact(&mut q).await.is_err() {
                        return;
                    }
                    n.fetch_add(1, Ordering::Relaxed);
                    let a = answer(&q, ip);
                    let mut out = (a.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&a);
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    Enc {
        addr,
        conns,
        queries,
        _dir: dir,
    }
}

/// A DNS-over-HTTPS server (HTTP/2) answering POSTs to `/dns-query` with `ip`.
async fn doh_server(p: &SelfSigned, ip: [u8; 4]) -> Enc {
    let (certs, dir) = certs(p);
    let acceptor = TlsAcceptor::from(sinkhole::tls::doh_config(certs).unwrap());
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (conns, queries) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, n) = (Arc::clone(&conns), Arc::clone(&queries));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            c.fetch_add(1, Ordering::Relaxed);
            let (acceptor, n) = (acceptor.clone(), Arc::clone(&n));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut h2) = h2::server::handshake(tls).await else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = h2.accept().await {
                    let n = Arc::clone(&n);
                    tokio::spawn(async move {
                        let fine = req.method() == hyper::Method::POST
                            && req.uri().path() == "/dns-query"
                            && req.headers()["content-type"] == "application/dns-message";
                        let mut body = req.into_body();
                        let mut q = Vec::new();
                        while let Some(Ok(chunk)) = body.data().await {
                            let _ = body.flow_control().release_capacity(chunk.len());
                            q.extend_from_slice(&chunk);
                        }
                        let status = if fine && q.len() > 12 && q[..2] == [0, 0] {
                            n.fetch_add(1, Ordering::Relaxed);
                            200
                        } else {
                            400
                        };
                        let resp = hyper::Response::builder()
                            .status(status)
                            .header("content-type", "application/dns-message")
                            .body(())
                            .unwrap();
                        let Ok(mut send) = respond.send_response(resp, false) else {
                            return;
                        };
                        let body = if status == 200 {
                            answer(&q, ip)
                        } else {
                            Vec::new()
                        };
                        let _ = send.send_data(Bytes::from(body), true);
                    });
                }
            });
        }
    });
    Enc {
        addr,
        conns,
        queries,
        _dir: dir,
    }
}

/// The service forwarding to `servers` (config entries), trusting `p` as `upstream.tls_ca`.
async fn service(p: &SelfSigned, servers: &[String], timeout_ms: u64) -> TestServer {
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    let toml = format!(
        "[upstream]\nservers = [{}]\ntimeout_ms = {timeout_ms}\ntls_ca = \"ca.pem\"\n",
        list.join(", ")
    );
    TestServer::start(&toml, &[("ca.pem", &p.cert_pem)]).await
}

fn tls(addr: SocketAddr, name: &str) -> String {
    format!("tls://{addr}#{name}")
}

fn https(addr: SocketAddr, name: &str) -> String {
    format!("https://{name}/dns-query@{addr}")
}

#[tokio::test(flavor = "multi_thread")]
async fn misses_are_answered_over_dot_and_doh_and_then_cached() {
    let p = pair();
    let dot = dot_server(&p, [192, 0, 2, 53], usize::MAX).await;
    let doh = doh_server(&p, [192, 0, 2, 44]).await;
    for (server, ip, up) in [
        (tls(dot.addr, NAME), "192.0.2.53", &dot),
        (https(doh.addr, NAME), "192.0.2.44", &doh),
    ] {
        let s = service(&p, std::slice::from_ref(&server), 2000).await;
        let before = up.queries();
        let m = s.query("www.example.test.", RecordType::A).await;
        assert_eq!(first_answer(&m), ip, "{server}");
        assert_eq!(up.queries(), before + 1);
        // The same name again comes from the cache; another name reuses the connection.
        let m = s.query("www.example.test.", RecordType::A).await;
        assert_eq!(first_answer(&m), ip);
        let m = s.query_tcp("other.example.test.", RecordType::A).await;
        assert_eq!(first_answer(&m), ip);
        assert_eq!(
            up.queries(),
            before + 2,
            "{server}: one of three was cached"
        );
    }
    // The UDP miss went on its listener thread's own connection, the TCP one on the
    // runtime's: one each, reused, whatever the number of queries.
    assert_eq!(
        (dot.conns(), doh.conns()),
        (2, 2),
        "one connection for the UDP thread, one for the runtime"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_share_one_connection() {
    let p = pair();
    let dot = dot_server(&p, [192, 0, 2, 53], usize::MAX).await;
    let doh = doh_server(&p, [192, 0, 2, 44]).await;
    for (server, ip, up) in [
        (tls(dot.addr, NAME), "192.0.2.53", &dot),
        (https(doh.addr, NAME), "192.0.2.44", &doh),
    ] {
        let s = service(&p, std::slice::from_ref(&server), 3000).await;
        let mut tasks = Vec::new();
        for i in 0..24 {
            let (addr, name) = (s.addr, format!("n{i}.example.test."));
            tasks.push(tokio::spawn(async move {
                let q = make_query(&name, RecordType::A, None);
                first_answer(&udp_exchange(addr, &q).await.expect("no answer"))
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), ip, "{server}");
        }
        assert_eq!(up.queries(), 24);
        // The harness runs two UDP threads; each keeps one connection per server.
        assert!(
            (1..=2).contains(&up.conns()),
            "{server}: 24 concurrent misses, {} connections (at most one per UDP thread)",
            up.conns()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_the_server_closed_is_replaced_without_failing_over() {
    let p = pair();
    // One answer per connection, then the server closes it.
    let dot = dot_server(&p, [192, 0, 2, 53], 1).await;
    let plain = FakeUpstream::start(vec![a("b.example.test.", "192.0.2.99", 300)]).await;
    let s = service(&p, &[tls(dot.addr, NAME), plain.addr.to_string()], 2000).await;
    let m = s.query("a.example.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "192.0.2.53");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let m = s.query("b.example.test.", RecordType::A).await;
    assert_eq!(
        first_answer(&m),
        "192.0.2.53",
        "answered over a new connection"
    );
    assert_eq!(dot.conns(), 2);
    assert_eq!(plain.calls(), 0, "no failover");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_certificate_name_fails_over_to_the_next_server() {
    let p = pair();
    let dot = dot_server(&p, [192, 0, 2, 53], usize::MAX).await;
    let doh = doh_server(&p, [192, 0, 2, 44]).await;
    let plain = FakeUpstream::start(vec![a("www.example.test.", "192.0.2.99", 300)]).await;
    let s = service(
        &p,
        &[
            tls(dot.addr, "other.test"),
            https(doh.addr, "other.test"),
            plain.addr.to_string(),
        ],
        2000,
    )
    .await;
    let started = Instant::now();
    let m = s.query("www.example.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "192.0.2.99");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "a refused certificate fails at once, not by timing out: {:?}",
        started.elapsed()
    );
    assert_eq!(
        (dot.queries(), doh.queries()),
        (0, 0),
        "no query left unverified"
    );
    assert!(dot.conns() >= 1 && doh.conns() >= 1, "both were tried");
    assert_eq!(plain.calls(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_encrypted_servers_fail_over_within_the_timeout() {
    let p = pair();
    // A server that takes connections and never says a word (no handshake).
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let plain = FakeUpstream::start(vec![a("www.example.test.", "192.0.2.99", 300)]).await;
    let s = service(
        &p,
        &[
            tls(silent_addr, NAME),
            https(closed_addr, NAME),
            plain.addr.to_string(),
        ],
        400,
    )
    .await;
    let started = Instant::now();
    let m = s.query("www.example.test.", RecordType::A).await;
    let took = started.elapsed();
    assert_eq!(first_answer(&m), "192.0.2.99");
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_millis(1200),
        "the silent server costs one timeout, the closed port none: {took:?}"
    );
    assert_eq!(plain.calls(), 1);
}

#[test]
fn config_errors_name_the_entry_and_say_what_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sinkhole.toml");
    std::fs::write(
        &path,
        "[upstream]\nservers = [\n  \"tls://9.9.9.9:853\",\n  \"https://dns.quad9.net/dns-query\",\n  \"https://dns.quad9.net/dns-query@dns.quad9.net\",\n  \"quic://9.9.9.9\",\n]\ntls_ca = \"missing.pem\"\n",
    )
    .unwrap();
    let e = sinkhole::config::Config::load(&path)
        .unwrap_err()
        .to_string();
    let p = path.display();
    for want in [
        format!(
            "{p}:3:3: upstream.servers: \"tls://9.9.9.9:853\": write the name the server's certificate carries after '#'"
        ),
        format!(
            "{p}:4:3: upstream.servers: \"https://dns.quad9.net/dns-query\": write the address to connect to after '@'"
        ),
        format!(
            "{p}:5:3: upstream.servers: \"https://dns.quad9.net/dns-query@dns.quad9.net\": \"dns.quad9.net\" after '@' is not an IP address"
        ),
        format!(
            "{p}:6:3: upstream.servers: \"quic://9.9.9.9\": write the name the server's certificate carries after '#'"
        ),
        format!(
            "{p}:8:10: upstream.tls_ca: {}: cannot read",
            dir.path().join("missing.pem").display()
        ),
    ] {
        assert!(e.contains(&want), "missing {want:?} in:\n{e}");
    }
}

/// A server process of the test's (nghttpd, dnsdist), killed when dropped.
struct Child(std::process::Child);

impl Child {
    /// Starts `cmd` without its output; `what` says what is missing when it cannot start.
    fn spawn(cmd: &mut std::process::Command, what: &str) -> Self {
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect(what);
        Self(child)
    }
}

/// A service forwarding every query (no cache) to the DoH server at `addr`, whose
/// certificate is `p`'s.
async fn uncached_front(p: &SelfSigned, addr: SocketAddr) -> TestServer {
    let toml = format!(
        "[upstream]\nservers = [\"{}\"]\ntimeout_ms = 2000\ntls_ca = \"ca.pem\"\n[cache]\nmax_entries = 0\n",
        https(addr, NAME)
    );
    TestServer::start(&toml, &[("ca.pem", &p.cert_pem)]).await
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A DNS-over-HTTPS upstream served by another HTTP/2 implementation than the `h2` crate:
/// nghttp2, strict about HPACK and flow control. It answers every request for `/dns-query`
/// with one file, the answer (ID 0, as DoH queries carry) to `nghttp2.example.test A`; the
/// UDP listener's own connection (our HTTP/2 client) and the runtime's (the `h2` crate's)
/// both get it, on misses (no cache), over kept connections.
#[tokio::test(flavor = "multi_thread")]
async fn a_doh_upstream_served_by_nghttp2_answers_our_own_http2_client_and_h2s() {
    let p = pair();
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let mut q = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["nghttp2", "example", "test"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    std::fs::write(www.join("dns-query"), answer(&q, [192, 0, 2, 77])).unwrap();
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    std::fs::write(&key, &p.key_pem).unwrap();
    std::fs::write(&cert, &p.cert_pem).unwrap();
    let port = crate::harness::free_port();
    let _server = Child::spawn(
        std::process::Command::new("nghttpd")
            .args(["--address=127.0.0.1", "-d"])
            .arg(&www)
            .arg(port.to_string())
            .args([&key, &cert]),
        "nghttpd (Debian's nghttp2-server, installed by .ci/run)",
    );
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    listening(addr, "nghttpd").await;
    let (relay, conns) = counting_relay(addr).await;
    let s = uncached_front(&p, relay).await;
    for i in 0..12 {
        let m = s.query("nghttp2.example.test.", RecordType::A).await;
        assert_eq!(first_answer(&m), "192.0.2.77", "miss {i} over UDP: {m:?}");
    }
    // A kept connection per UDP listener thread that took a query: after its first requests
    // the client names the fields nghttp2's table holds (`http2::request`); a block it could
    // not decode would end the connection, and every later miss would open another.
    let n = conns.load(Ordering::Relaxed);
    assert!(
        (1..=3).contains(&n),
        "{n} connections for twelve misses: one per UDP thread expected"
    );
    let m = s.query_tcp("nghttp2.example.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "192.0.2.77", "over TCP: {m:?}");
}

/// Waits until something listens on TCP `addr`.
async fn listening(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP relay on loopback to `to` that counts the connections it accepted: how many
/// connections a client opened to a server that cannot count them itself.
async fn counting_relay(to: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut a, _)) = l.accept().await {
            counted.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                if let Ok(mut b) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                }
            });
        }
    });
    (addr, conns)
}

/// dnsdist's DNS over HTTPS (h2o, Debian's dnsdist 1.7) indexes `:status`, `content-type`
/// and the rest of its answers' fields in HPACK's dynamic table whatever the client's
/// `SETTINGS_HEADER_TABLE_SIZE` (ours is 0), and refers to them in later answers. Our
/// HTTP/2 client keeps the table: the UDP listener's connection answers every miss and
/// stays open. (Without the table, the connection failed at its first answer, and every
/// miss opened another before going on at the runtime's `h2` client: one connection per
/// query, which the relay in front of dnsdist counts.) It takes dnsdist's h2o: Debian 12's
/// 1.7; from 1.9 dnsdist serves DNS over HTTPS with nghttp2 by default, which honours the
/// client's table size, and this test would no longer meet the table.
#[tokio::test(flavor = "multi_thread")]
async fn a_doh_upstream_that_indexes_its_answers_in_hpacks_table_keeps_one_connection() {
    let p = pair();
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    std::fs::write(&key, &p.key_pem).unwrap();
    std::fs::write(&cert, &p.cert_pem).unwrap();
    let up = FakeUpstream::start(vec![a("www.dnsdist.test.", "192.0.2.88", 60)]).await;
    let udp = crate::harness::free_port();
    let doh = loop {
        let p = crate::harness::free_port();
        if p != udp {
            break p;
        }
    };
    let conf = dir.path().join("dnsdist.conf");
    std::fs::write(
        &conf,
        format!(
            "setSecurityPollSuffix(\"\")\nsetLocal(\"127.0.0.1:{udp}\")\n\
             addDOHLocal(\"127.0.0.1:{doh}\", \"{}\", \"{}\", \"/dns-query\")\n\
             newServer({{address=\"{}\"}}):setUp()\n",
            cert.display(),
            key.display(),
            up.addr
        ),
    )
    .unwrap();
    let _server = Child::spawn(
        std::process::Command::new("dnsdist")
            .args(["--supervised", "--disable-syslog", "-C"])
            .arg(&conf),
        "dnsdist (Debian's dnsdist, installed by .ci/run)",
    );
    listening(([127, 0, 0, 1], doh).into(), "dnsdist").await;
    let (relay, conns) = counting_relay(([127, 0, 0, 1], doh).into()).await;
    let s = uncached_front(&p, relay).await;
    for i in 0..20 {
        let m = s.query("www.dnsdist.test.", RecordType::A).await;
        assert_eq!(first_answer(&m), "192.0.2.88", "miss {i}: {m:?}");
    }
    // A kept connection per UDP listener thread that took a query (each query comes from a
    // socket of its own, spread over the threads), and each miss asked once; twenty
    // connections and 29 queries before the table was kept.
    let (n, calls) = (conns.load(Ordering::Relaxed), up.calls());
    assert!(
        (1..=3).contains(&n) && calls == 20,
        "{n} connections and {calls} upstream queries for twenty misses: \
         one connection per UDP thread and twenty queries expected"
    );
}
