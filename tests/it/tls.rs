//! DNS over TLS (RFC 7858): the real service with `server.tls_listen` on 127.0.0.1:0, a
//! certificate made by the library's `cert self-signed` code, and a real TLS client
//! (rustls, trusting that certificate only, ALPN `dot`) sending length-prefixed DNS
//! messages. Also: the certificate renewed on disk, a handshake that never comes, the TCP
//! connection limits, and the `sinkhole cert self-signed` command against openssl.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use sinkhole::tls::selfsigned::{self, SelfSigned};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, bin, first_answer, make_query};
use crate::querylog::records;

pub(crate) const NAME: &str = "dns.test";

pub(crate) fn pair() -> SelfSigned {
    selfsigned::generate(NAME, SystemTime::now()).unwrap()
}

/// The config: DoT beside UDP/TCP, the pair in `cert.pem`/`key.pem`, a block list and the
/// query log; `extra` goes into `[server]`.
fn config(up: &FakeUpstream, extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_threads = 1\ntls_listen = [\"127.0.0.1:0\"]\n\
         tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n{extra}\n\
         [upstream]\nservers = [\"{}\"]\n[blocking]\nlists = [\"block.txt\"]\n\
         [log]\npath = \"queries.jsonl\"\n",
        up.addr
    )
}

async fn start(p: &SelfSigned, extra: &str) -> (TestServer, FakeUpstream) {
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

/// A client that trusts `trusted` only, offering ALPN `alpn`.
pub(crate) fn connector(trusted: &SelfSigned, alpn: &[u8]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(trusted.cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(sinkhole::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(cfg))
}

async fn connect_as(
    s: &TestServer,
    trusted: &SelfSigned,
    name: &str,
    alpn: &[u8],
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(s.tls_addr()).await?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    let c = connector(trusted, alpn).connect(name, tcp);
    tokio::time::timeout(Duration::from_secs(5), c)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

async fn connect(s: &TestServer, trusted: &SelfSigned) -> std::io::Result<TlsStream<TcpStream>> {
    connect_as(s, trusted, NAME, b"dot").await
}

/// One query on an open DoT connection (RFC 7858: TCP's two-byte length prefix).
async fn ask(c: &mut TlsStream<TcpStream>, name: &str, rt: RecordType) -> Message {
    let q = make_query(name, rt, None);
    let bytes = q.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    c.write_all(&framed).await.unwrap();
    let read = async {
        let len = c.read_u16().await?;
        let mut buf = vec![0u8; usize::from(len)];
        c.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("no answer over tls")
        .unwrap();
    let m = Message::from_vec(&buf).unwrap();
    assert_eq!(m.metadata.id, q.metadata.id);
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn dot_answers_blocked_and_forwarded_names_and_logs_proto_tls() {
    let p = pair();
    let (s, up) = start(&p, "").await;
    let mut c = connect(&s, &p).await.unwrap();
    assert_eq!(c.get_ref().1.alpn_protocol(), Some(&b"dot"[..]));
    // Several queries on one connection: blocked, forwarded.
    let m = ask(&mut c, "x.ads.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "0.0.0.0");
    let m = ask(&mut c, "www.example.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "192.0.2.80");
    assert_eq!(up.calls(), 1);
    // The same names over UDP and TCP, for the log's other values.
    assert_eq!(
        first_answer(&s.query("x.ads.test.", RecordType::AAAA).await),
        "::"
    );
    let m = s.query_tcp("www.example.test.", RecordType::AAAA).await;
    assert_eq!(m.answers.len(), 0, "NODATA from the upstream");
    let recs = records(&s.path("queries.jsonl"), 4).await;
    let mut seen: Vec<(String, String, String, String)> = recs
        .iter()
        .map(|r| {
            let f = |k: &str| r[k].as_str().unwrap_or("").to_string();
            (f("qname"), f("qtype"), f("proto"), f("action"))
        })
        .collect();
    seen.sort();
    let want = [
        ("www.example.test", "A", "tls", "allowed"),
        ("www.example.test", "AAAA", "tcp", "allowed"),
        ("x.ads.test", "A", "tls", "blocked"),
        ("x.ads.test", "AAAA", "udp", "blocked"),
    ];
    let want: Vec<(String, String, String, String)> = want
        .iter()
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        .collect();
    assert_eq!(seen, want);
    // A client asking for another name, or for another protocol only, gets no session.
    assert!(connect_as(&s, &p, "other.test", b"dot").await.is_err());
    assert!(connect_as(&s, &p, NAME, b"h2").await.is_err());
    // The first connection is still good.
    let m = ask(&mut c, "www.example.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "192.0.2.80");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewed_certificate_serves_new_connections_while_old_ones_go_on() {
    let (old, new) = (pair(), pair());
    let (s, _up) = start(&old, "").await;
    let mut before = connect(&s, &old).await.unwrap();
    ask(&mut before, "x.ads.test.", RecordType::A).await;
    // A broken key first (a renewal half done): logged, the old pair stays.
    std::fs::write(
        s.path("key.pem.tmp"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::rename(s.path("key.pem.tmp"), s.path("key.pem")).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await; // four polls of the 100 ms watch
    let mut still = connect(&s, &old)
        .await
        .expect("the last good pair is still served");
    ask(&mut still, "x.ads.test.", RecordType::A).await;
    // The renewal: both files replaced (as certbot does: new files, then the names).
    for (name, text) in [("cert.pem", &new.cert_pem), ("key.pem", &new.key_pem)] {
        std::fs::write(s.path(&format!("{name}.tmp")), text).unwrap();
        std::fs::rename(s.path(&format!("{name}.tmp")), s.path(name)).unwrap();
    }
    let t = Instant::now();
    let mut after = loop {
        if let Ok(c) = connect(&s, &new).await {
            break c;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "new certificate not served after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let m = ask(&mut after, "www.example.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "192.0.2.80");
    // New connections get the new certificate only; the old connections go on.
    assert!(connect(&s, &old).await.is_err());
    for c in [&mut before, &mut still] {
        let m = ask(c, "x.ads.test.", RecordType::A).await;
        assert_eq!(first_answer(&m), "0.0.0.0");
    }
}

/// Reads until the server closes the connection; how long that took.
pub(crate) async fn closed_after(mut raw: TcpStream, limit: Duration) -> Duration {
    let t = Instant::now();
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(limit, raw.read(&mut buf)).await {
            Err(_) => panic!("connection still open after {limit:?}"),
            Ok(Ok(0) | Err(_)) => return t.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handshake_that_never_finishes_is_closed_after_the_timeout() {
    let p = pair();
    let (s, _up) = start(&p, "tls_handshake_timeout_ms = 300").await;
    // One that sends nothing, one that stops half-way through a ClientHello.
    let silent = TcpStream::connect(s.tls_addr()).await.unwrap();
    let mut partial = TcpStream::connect(s.tls_addr()).await.unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let t = closed_after(silent, Duration::from_secs(5)).await;
    assert!(
        t >= Duration::from_millis(250),
        "closed after {t:?}, before the timeout"
    );
    closed_after(partial, Duration::from_secs(5)).await;
    // Their connection slots are given back, and a real client is served.
    let t = Instant::now();
    while s.service().server().tcp_connections() > 0 {
        assert!(t.elapsed() < Duration::from_secs(5), "slots not given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut c = connect(&s, &p).await.unwrap();
    assert_eq!(
        first_answer(&ask(&mut c, "x.ads.test.", RecordType::A).await),
        "0.0.0.0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_connections_count_against_the_tcp_limits() {
    let p = pair();
    let (s, _up) = start(&p, "tcp_max_per_client = 3").await;
    // Two plain TCP connections and one DoT connection: this client's three.
    let _tcp1 = TcpStream::connect(s.addr).await.unwrap();
    let _tcp2 = TcpStream::connect(s.addr).await.unwrap();
    let mut dot = connect(&s, &p).await.unwrap();
    ask(&mut dot, "x.ads.test.", RecordType::A).await;
    // A fourth is closed at once, long before the 5 s handshake timeout.
    let fourth = TcpStream::connect(s.tls_addr()).await.unwrap();
    let t = closed_after(fourth, Duration::from_secs(3)).await;
    assert!(t < Duration::from_secs(3));
    assert!(connect(&s, &p).await.is_err());
    // Another client address still gets in.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let tcp = sock.connect(s.tls_addr()).await.unwrap();
    let mut other = connector(&p, b"dot")
        .connect(ServerName::try_from(NAME).unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(
        first_answer(&ask(&mut other, "x.ads.test.", RecordType::A).await),
        "0.0.0.0"
    );
    // The established one was not disturbed.
    ask(&mut dot, "x.ads.test.", RecordType::A).await;
}

#[test]
fn cert_self_signed_writes_a_pair_whose_pin_openssl_agrees_with() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("tls");
    let out = bin()
        .args(["cert", "self-signed", "--name", "DNS.Test", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pin = stdout
        .lines()
        .find_map(|l| l.strip_prefix("pin-sha256=\""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no pin printed:\n{stdout}"));
    let (cert, key) = (out_dir.join("cert.pem"), out_dir.join("key.pem"));
    assert!(stdout.contains(&cert.display().to_string()), "{stdout}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The pin, recomputed by openssl from the certificate's public key.
    let script = format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | openssl base64 -A",
        cert.display()
    );
    let o = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), pin);
    // The name and validity openssl reads.
    let o = std::process::Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-checkend",
            "0",
            "-in",
        ])
        .arg(&cert)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("DNS:dns.test"),
        "{text}"
    );
    // Run again: the files are kept unless --force.
    let again = bin()
        .args(["cert", "self-signed", "--name", "dns.test", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists; pass --force"));
}
