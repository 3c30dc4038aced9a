//! DNS over HTTPS (RFC 8484): the real service with `server.https_listen` on 127.0.0.1:0
//! and a certificate made by the library's `cert self-signed` code. Clients: curl (Debian's,
//! with nghttp2; `.ci/run` installs it) trusting that certificate only, over HTTP/2 and
//! HTTP/1.1, for GET and POST and the status codes; a rustls client speaking HTTP/1.1 (or
//! an HTTP/2 preface) by hand for what curl cannot do: stall half-way, hold connections;
//! dnsperf (OpenSSL and nghttp2, reading a TLS record at a time) with queries outstanding.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use rustls::pki_types::ServerName;
use sinkhole::tls::selfsigned::SelfSigned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::fake_upstream::{FakeUpstream, a, txt};
use crate::harness::{TestServer, first_answer, make_query, rcode};
use crate::querylog::records;
use crate::tls::{NAME, closed_after, connector, pair};

/// The config: DoH beside UDP/TCP, the pair in `cert.pem`/`key.pem`, a block list and the
/// query log; `extra` goes into `[server]`.
fn config(up: &FakeUpstream, extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_threads = 1\nhttps_listen = [\"127.0.0.1:0\"]\n\
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

/// What curl got.
#[derive(Debug)]
struct Got {
    /// The HTTP status; 0 when there was no response.
    status: u16,
    /// `2` or `1.1`.
    version: String,
    /// The response head, as received.
    head: String,
    body: Vec<u8>,
    /// curl's own complaint, if any.
    stderr: String,
}

impl Got {
    /// The value of header `name` (case-insensitive), if present.
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// The body as a DNS message, after checking the DoH response headers.
    fn dns(&self) -> Message {
        assert_eq!(self.status, 200, "{self:?}");
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/dns-message")
        );
        Message::from_vec(&self.body).expect("the body is not a DNS message")
    }
}

/// Runs curl against `target` (path and query) on the DoH listener, with `args` (`--http2`
/// or `--http1.1` first), naming the server `name` (resolved to the listener).
async fn curl_as(s: &TestServer, name: &str, args: &[&str], target: &str) -> Got {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let (head, body): (PathBuf, PathBuf) = (
        s.path(&format!("curl{n}.head")),
        s.path(&format!("curl{n}.body")),
    );
    let port = s.https_addr().port();
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "--cacert"])
        .arg(s.path("cert.pem"))
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .arg("-D")
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code} %{http_version}"])
        .args(args)
        .arg(format!("https://{name}:{port}{target}"));
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("curl is not installed (Debian: apt-get install curl)");
    let w = String::from_utf8_lossy(&out.stdout).to_string();
    let (status, version) = w.split_once(' ').unwrap_or(("0", ""));
    Got {
        status: status.parse().unwrap_or(0),
        version: version.to_string(),
        head: std::fs::read_to_string(&head).unwrap_or_default(),
        body: std::fs::read(&body).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

async fn curl(s: &TestServer, args: &[&str], target: &str) -> Got {
    curl_as(s, NAME, args, target).await
}

/// The query for `name` as a DoH client sends it: ID 0 (RFC 8484 §4.1, for caches).
fn wire(name: &str, rt: RecordType) -> Vec<u8> {
    let mut q = make_query(name, rt, None);
    q.metadata.id = 0;
    q.to_vec().unwrap()
}

fn b64(msg: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(msg)
}

/// A GET of `name` with curl.
async fn get(s: &TestServer, version: &str, name: &str, rt: RecordType) -> Got {
    let target = format!("/dns-query?dns={}", b64(&wire(name, rt)));
    curl(
        s,
        &[version, "-H", "accept: application/dns-message"],
        &target,
    )
    .await
}

/// A POST of `body` with content type `ct`, with curl.
async fn post(s: &TestServer, version: &str, ct: &str, body: &[u8]) -> Got {
    static N: AtomicUsize = AtomicUsize::new(0);
    let file = s.path(&format!("post{}.bin", N.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&file, body).unwrap();
    let data = format!("@{}", file.display());
    let ct = format!("content-type: {ct}");
    curl(
        s,
        &[version, "-H", &ct, "--data-binary", &data],
        "/dns-query",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn get_and_post_over_h2_and_http11_answer_as_udp_and_log_proto_https() {
    let p = pair();
    let (s, up) = start(&p, "").await;
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        // GET: a blocked name gets the sinkhole answer, with the block TTL as lifetime.
        let g = get(&s, flag, "x.ads.test.", RecordType::A).await;
        assert_eq!(g.version, version, "{g:?}");
        let m = g.dns();
        assert_eq!(m.metadata.id, 0);
        assert_eq!(first_answer(&m), "0.0.0.0");
        assert_eq!(g.header("cache-control").as_deref(), Some("max-age=10"));
        // POST: a forwarded name gets the upstream's answer.
        let g = post(
            &s,
            flag,
            "application/dns-message",
            &wire("www.example.test.", RecordType::A),
        )
        .await;
        assert_eq!(g.version, version, "{g:?}");
        assert_eq!(first_answer(&g.dns()), "192.0.2.80");
        let age: u32 = g
            .header("cache-control")
            .and_then(|v| v.strip_prefix("max-age=")?.parse().ok())
            .unwrap_or_else(|| panic!("no max-age: {g:?}"));
        assert!((290..=300).contains(&age), "max-age={age}");
    }
    // The second forward of the name came from the cache.
    assert_eq!(up.calls(), 1);
    // A NODATA answer lives as long as its SOA says (TTL and minimum 60).
    let g = get(&s, "--http2", "www.example.test.", RecordType::AAAA).await;
    assert_eq!(g.dns().answers.len(), 0);
    assert_eq!(g.header("cache-control").as_deref(), Some("max-age=60"));
    // The same blocked name over UDP, for the log's other value.
    assert_eq!(
        first_answer(&s.query("x.ads.test.", RecordType::A).await),
        "0.0.0.0"
    );
    let recs = records(&s.path("queries.jsonl"), 6).await;
    let mut seen: Vec<String> = recs
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r["qname"].as_str().unwrap(),
                r["qtype"].as_str().unwrap(),
                r["proto"].as_str().unwrap(),
                r["action"].as_str().unwrap(),
                r["client"].as_str().unwrap(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            "www.example.test A https allowed 127.0.0.1",
            "www.example.test A https cached 127.0.0.1",
            "www.example.test AAAA https allowed 127.0.0.1",
            "x.ads.test A https blocked 127.0.0.1",
            "x.ads.test A https blocked 127.0.0.1",
            "x.ads.test A udp blocked 127.0.0.1",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_their_status_codes_and_bad_dns_gets_formerr() {
    let p = pair();
    let (s, _up) = start(&p, "").await;
    let q = wire("x.ads.test.", RecordType::A);
    for flag in ["--http2", "--http1.1"] {
        let status = |g: &Got, want: u16, what: &str| {
            assert_eq!(g.status, want, "{flag} {what}: {g:?}");
            if want != 200 {
                assert_eq!(
                    g.header("cache-control").as_deref(),
                    Some("no-store"),
                    "{what}"
                );
            }
        };
        // 400: no parameter, an empty one, not base64url, shorter than a DNS header.
        for (target, what) in [
            ("/dns-query", "no dns parameter"),
            ("/dns-query?dns=", "empty dns"),
            ("/dns-query?dns=%2B%2F%2B%2F", "not base64url"),
            ("/dns-query?dns=AAAA", "3 bytes"),
        ] {
            let g = curl(&s, &[flag], target).await;
            status(&g, 400, what);
            assert!(!g.body.is_empty(), "a reason in the body");
        }
        // Padding is tolerated.
        let padded = base64::engine::general_purpose::URL_SAFE.encode(&q);
        let g = curl(&s, &[flag], &format!("/dns-query?dns={padded}")).await;
        assert_eq!(first_answer(&g.dns()), "0.0.0.0");
        // 404: another path.
        for target in ["/", "/dns-query/x", &format!("/resolve?dns={}", b64(&q))] {
            status(&curl(&s, &[flag], target).await, 404, target);
        }
        // 405: another method, with Allow.
        let g = curl(&s, &[flag, "-X", "PUT"], "/dns-query").await;
        status(&g, 405, "PUT");
        assert_eq!(g.header("allow").as_deref(), Some("GET, POST"));
        // 415: a POST of another type, or curl's default form type.
        status(&post(&s, flag, "text/plain", &q).await, 415, "text/plain");
        let data = format!("@{}", s.path("cert.pem").display());
        let g = curl(&s, &[flag, "--data-binary", &data], "/dns-query").await;
        status(&g, 415, "form type");
        // 400: an empty body.
        status(
            &post(&s, flag, "application/dns-message", b"").await,
            400,
            "empty body",
        );
        // 413: a body over one DNS message.
        let big = vec![0u8; 65_536];
        status(
            &post(&s, flag, "application/dns-message", &big).await,
            413,
            "64 KiB body",
        );
        // A DNS message that does not parse: FORMERR, with 200, as on the wire.
        let mut bad = q.clone();
        bad.truncate(14);
        let g = post(&s, flag, "application/dns-message", &bad).await;
        let m = g.dns();
        assert_eq!(rcode(&m), 1, "FORMERR");
        assert_eq!(g.header("cache-control").as_deref(), Some("no-store"));
        // A 64 KB dns parameter: refused by the head limit, never decoded (the client may
        // see the connection closed before it has sent it all).
        let huge = format!("/dns-query?dns={}", "A".repeat(64 << 10));
        let g = curl(&s, &[flag], &huge).await;
        assert_ne!(g.status, 200, "{g:?}");
        // Over HTTP/1.1, a head a little over the limit (all of it read) gets 431.
        if flag == "--http1.1" {
            let big = format!("/dns-query?dns={}", "A".repeat(20 << 10));
            let g = curl(&s, &[flag], &big).await;
            assert_eq!(g.status, 431, "{g:?}");
        }
    }
    // After all that, answers go on.
    assert_eq!(
        first_answer(&get(&s, "--http2", "x.ads.test.", RecordType::A).await.dns()),
        "0.0.0.0"
    );
}

/// A rustls connection to the DoH listener from `src` (a 127.0.0.0/8 address), naming
/// `name`, offering ALPN `alpn`.
async fn connect_from(
    s: &TestServer,
    p: &SelfSigned,
    src: &str,
    name: &str,
    alpn: &[u8],
) -> std::io::Result<TlsStream<TcpStream>> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(format!("{src}:0").parse().unwrap())?;
    let tcp = sock.connect(s.https_addr()).await?;
    let c = connector(p, alpn).connect(ServerName::try_from(name.to_string()).unwrap(), tcp);
    tokio::time::timeout(Duration::from_secs(5), c)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// One HTTP/1.1 exchange on `c`: writes `req`, reads one response (head and a
/// Content-Length body); the status and the body.
async fn h1(c: &mut TlsStream<TcpStream>, req: &[u8]) -> (u16, Vec<u8>) {
    c.write_all(req).await.unwrap();
    let mut buf = Vec::new();
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                    return (status, buf[end + 4..end + 4 + len].to_vec());
                }
            }
            let mut chunk = [0u8; 4096];
            let n = c.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed mid-response: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("no HTTP answer")
}

fn get_request(name: &str) -> Vec<u8> {
    format!(
        "GET /dns-query?dns={} HTTP/1.1\r\nHost: {NAME}\r\naccept: application/dns-message\r\n\r\n",
        b64(&wire(name, RecordType::A))
    )
    .into_bytes()
}

/// Reads until the server closes `c`; how long that took (at most `limit`).
async fn tls_closed_after(c: &mut TlsStream<TcpStream>, limit: Duration) -> Duration {
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit, c.read(&mut buf)).await {
            Err(_) => panic!("connection still open after {limit:?}"),
            Ok(Ok(0) | Err(_)) => return t.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_tls_name_or_protocol_is_refused() {
    let p = pair();
    let (s, _up) = start(&p, "").await;
    // curl checks the name: the certificate is for dns.test only.
    let g = curl_as(&s, "other.test", &["--http2"], "/dns-query").await;
    assert_eq!(g.status, 0, "{g:?}");
    assert!(
        g.stderr.contains("curl: (60)"),
        "not a certificate error: {g:?}"
    );
    assert!(
        connect_from(&s, &p, "127.0.0.1", "other.test", b"h2")
            .await
            .is_err()
    );
    // ALPN: h2 and http/1.1 only (a DoT client is refused).
    assert!(
        connect_from(&s, &p, "127.0.0.1", NAME, b"dot")
            .await
            .is_err()
    );
    for alpn in [&b"h2"[..], b"http/1.1"] {
        let c = connect_from(&s, &p, "127.0.0.1", NAME, alpn).await.unwrap();
        assert_eq!(c.get_ref().1.alpn_protocol(), Some(alpn));
    }
    let mut c = connect_from(&s, &p, "127.0.0.1", NAME, b"http/1.1")
        .await
        .unwrap();
    let (status, body) = h1(&mut c, &get_request("x.ads.test.")).await;
    assert_eq!(status, 200);
    assert_eq!(first_answer(&Message::from_vec(&body).unwrap()), "0.0.0.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_and_idle_clients_are_closed_after_the_idle_timeout() {
    let p = pair();
    let (s, _up) = start(&p, "tcp_idle_ms = 500").await;
    let limit = Duration::from_secs(5);
    let connect = |alpn: &'static [u8]| connect_from(&s, &p, "127.0.0.1", NAME, alpn);
    // A body that stops half-way: 408, then closed.
    let mut body = connect(b"http/1.1").await.unwrap();
    let req = format!(
        "POST /dns-query HTTP/1.1\r\nHost: {NAME}\r\ncontent-type: application/dns-message\r\ncontent-length: 40\r\n\r\n0123456789"
    );
    let t = Instant::now();
    let (status, _) = h1(&mut body, req.as_bytes()).await;
    assert_eq!(status, 408);
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    tls_closed_after(&mut body, limit).await;
    // A head that stops half-way: closed, never answered.
    let mut head = connect(b"http/1.1").await.unwrap();
    head.write_all(b"GET /dns-query?dns=AAAB").await.unwrap();
    let t = tls_closed_after(&mut head, limit).await;
    assert!(t >= Duration::from_millis(400), "closed after {t:?}");
    // After one answer, an idle HTTP/1.1 keep-alive connection is closed.
    let mut idle = connect(b"http/1.1").await.unwrap();
    let (status, _) = h1(&mut idle, &get_request("x.ads.test.")).await;
    assert_eq!(status, 200);
    let t = tls_closed_after(&mut idle, limit).await;
    assert!(t >= Duration::from_millis(400), "closed after {t:?}");
    // An HTTP/2 connection that says its preface and nothing more.
    let mut h2 = connect(b"h2").await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let t = tls_closed_after(&mut h2, limit).await;
    assert!(t >= Duration::from_millis(400), "closed after {t:?}");
    // A TLS connection that never speaks HTTP.
    let mut silent = connect(b"h2").await.unwrap();
    tls_closed_after(&mut silent, limit).await;
    // Every slot is given back.
    let t = Instant::now();
    while s.service().server().tcp_connections() > 0 {
        assert!(t.elapsed() < limit, "slots not given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_limits_hold_while_another_client_is_answered() {
    let p = pair();
    let (s, _up) = start(&p, "tcp_max_per_client = 2").await;
    // This client's two connections (kept open), answered.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = connect_from(&s, &p, "127.0.0.1", NAME, b"http/1.1")
            .await
            .unwrap();
        assert_eq!(h1(&mut c, &get_request("x.ads.test.")).await.0, 200);
        held.push(c);
    }
    // A third is closed at once, before any handshake.
    let third = TcpStream::connect(s.https_addr()).await.unwrap();
    let t = closed_after(third, Duration::from_secs(3)).await;
    assert!(t < Duration::from_secs(3));
    assert_eq!(
        get(&s, "--http2", "x.ads.test.", RecordType::A)
            .await
            .status,
        0
    );
    // Another client address is answered, over HTTP/2 by curl.
    let g = curl(
        &s,
        &[
            "--http2",
            "--interface",
            "127.0.0.2",
            "-H",
            "accept: application/dns-message",
        ],
        &format!(
            "/dns-query?dns={}",
            b64(&wire("www.example.test.", RecordType::A))
        ),
    )
    .await;
    assert_eq!(first_answer(&g.dns()), "192.0.2.80");
    // The held connections still answer.
    for c in &mut held {
        assert_eq!(h1(c, &get_request("x.ads.test.")).await.0, 200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn doh_and_dot_share_the_certificate_and_the_config_checks() {
    // https_listen alone needs the pair; a port of server.listen or tls_listen is refused.
    let dir = tempfile::tempdir().unwrap();
    let base = "[server]\nlisten = [\"127.0.0.1:5353\"]\n";
    let err = |t: &str| {
        sinkhole::config::Config::parse(t, "t.toml", Some(dir.path()))
            .unwrap_err()
            .to_string()
    };
    let e = err(&format!("{base}https_listen = [\"127.0.0.1\"]\n"));
    assert!(
        e.contains("t.toml:3:")
            && e.contains("server.https_listen")
            && e.contains("DNS over HTTPS needs server.tls_cert and server.tls_key"),
        "{e}"
    );
    let e = err(&format!(
        "{base}https_listen = [\"127.0.0.1:5353\"]\ntls_cert = \"c\"\ntls_key = \"k\"\n"
    ));
    assert!(e.contains("also in server.listen"), "{e}");
    // Both listeners on one service, one certificate.
    let p = pair();
    let up = FakeUpstream::start(vec![]).await;
    let s = TestServer::start(
        &config(&up, "tls_listen = [\"127.0.0.1:0\"]"),
        &[
            ("cert.pem", &p.cert_pem),
            ("key.pem", &p.key_pem),
            ("block.txt", "ads.test\n"),
        ],
    )
    .await;
    assert_ne!(s.tls_addr(), s.https_addr());
    let g = get(&s, "--http1.1", "x.ads.test.", RecordType::A).await;
    assert_eq!(first_answer(&g.dns()), "0.0.0.0");
}

/// One HTTP/2 frame's header: length, type, flags, stream.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A GET of `target` as one HEADERS frame (END_STREAM, END_HEADERS), HPACK written by hand:
/// :method GET and :scheme https from the static table, :path and :authority literal.
fn h2_get(stream: u32, target: &str) -> Vec<u8> {
    assert!(target.len() < 127);
    let mut block = vec![0x82, 0x87, 0x04, target.len() as u8];
    block.extend_from_slice(target.as_bytes());
    block.extend_from_slice(&[0x01, NAME.len() as u8]);
    block.extend_from_slice(NAME.as_bytes());
    h2_frame(1, 0x5, stream, &block)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http2_stream_flood_is_refused_past_the_stream_limit_and_others_are_answered() {
    let (dead, _guard) = crate::fake_upstream::dead_upstream();
    let p = pair();
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_threads = 1\nhttps_listen = [\"127.0.0.1:0\"]\n\
         tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\
         [upstream]\nservers = [\"{dead}\"]\ntimeout_ms = 3000\n[blocking]\nlists = [\"block.txt\"]\n"
    );
    let s = TestServer::start(
        &toml,
        &[
            ("cert.pem", &p.cert_pem),
            ("key.pem", &p.key_pem),
            ("block.txt", "ads.test\n"),
        ],
    )
    .await;
    // 300 streams at once, each a name that waits on the silent upstream.
    let mut c = connect_from(&s, &p, "127.0.0.1", NAME, b"h2")
        .await
        .unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(4, 0, 0, &[]));
    for i in 0..300u32 {
        let name = format!("n{i}.example.test.");
        let target = format!("/dns-query?dns={}", b64(&wire(&name, RecordType::A)));
        out.extend(h2_get(2 * i + 1, &target));
    }
    c.write_all(&out).await.unwrap();
    // Read the server's frames for a second: streams past the limit are reset with
    // REFUSED_STREAM (or the connection goes away); none is answered yet.
    let (mut refused, mut answered, mut goaway) = (0, 0, false);
    let mut buf = Vec::new();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(1) && !goaway {
        let mut chunk = [0u8; 16384];
        match tokio::time::timeout(Duration::from_millis(200), c.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => continue,
        }
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            match buf[3] {
                1 => answered += 1,
                3 if buf[9..13] == [0, 0, 0, 7] => refused += 1,
                7 => goaway = true,
                _ => {}
            }
            buf.drain(..9 + len);
        }
    }
    assert_eq!(answered, 0, "answered before the upstream timeout");
    assert!(
        refused >= 200 || goaway,
        "{refused} streams refused, no GOAWAY: more than 100 at once were taken"
    );
    // Meanwhile another client is answered over DoH, and UDP goes on.
    let g = curl(
        &s,
        &["--http2", "--interface", "127.0.0.2"],
        &format!(
            "/dns-query?dns={}",
            b64(&wire("x.ads.test.", RecordType::A))
        ),
    )
    .await;
    assert_eq!(first_answer(&g.dns()), "0.0.0.0");
    assert_eq!(
        first_answer(&s.query("x.ads.test.", RecordType::A).await),
        "0.0.0.0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_query_gets_no_answer_and_a_refused_one_gets_refused() {
    let p = pair();
    let up = FakeUpstream::start(vec![]).await;
    let toml = format!(
        "{}[access]\ndeny = [\"127.0.0.3\", \"127.0.0.4\"]\ndeny_action = \"drop\"\n",
        config(&up, "")
    );
    let files = [
        ("cert.pem", p.cert_pem.as_str()),
        ("key.pem", p.key_pem.as_str()),
        ("block.txt", "ads.test\n"),
    ];
    let s = TestServer::start(&toml, &files).await;
    let target = format!(
        "/dns-query?dns={}",
        b64(&wire("x.ads.test.", RecordType::A))
    );
    // Dropped: no DNS answer, the HTTP/2 stream reset; logged.
    let g = curl(&s, &["--http2", "--interface", "127.0.0.3"], &target).await;
    assert_eq!(g.status, 0, "{g:?}");
    assert!(g.body.is_empty());
    let recs = records(&s.path("queries.jsonl"), 1).await;
    assert_eq!(recs[0]["client"], "127.0.0.3");
    assert_eq!(recs[0]["proto"], "https");
    assert_eq!(recs[0]["action"], "refused");
    // Refused: REFUSED with 200, not cached by HTTP.
    let s = TestServer::start(&toml.replace("\"drop\"", "\"refuse\""), &files).await;
    let g = curl(&s, &["--http1.1", "--interface", "127.0.0.4"], &target).await;
    assert_eq!(rcode(&g.dns()), 5, "REFUSED");
    assert_eq!(g.header("cache-control").as_deref(), Some("no-store"));
    // Everyone else is answered.
    let g = curl(&s, &["--http2"], &target).await;
    assert_eq!(first_answer(&g.dns()), "0.0.0.0");
}

/// dnsperf's DoH mode (Debian's dnsperf: OpenSSL and nghttp2; `.ci/run` installs it) with
/// ten queries outstanding on one connection, for two seconds: `(sent, completed)`.
async fn dnsperf(s: &TestServer, method: &str) -> (u64, u64) {
    let data = s.path("dnsperf.txt");
    std::fs::write(&data, "x.ads.test A\n".repeat(20)).unwrap();
    let port = s.https_addr().port().to_string();
    let mut cmd = std::process::Command::new("dnsperf");
    cmd.args(["-s", "127.0.0.1", "-p", &port, "-m", "doh", "-d"])
        .arg(&data)
        .args(["-O", &format!("doh-method={method}")])
        .args(["-c", "1", "-q", "10", "-l", "2", "-t", "1"]);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("dnsperf is not installed (Debian: apt-get install dnsperf)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let count = |what: &str| -> u64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(what))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {what:?} in dnsperf's output:\n{text}"))
    };
    (count("Queries sent:"), count("Queries completed:"))
}

/// Answers that several streams finish at once must not share a TLS record: dnsperf reads
/// a record at a time and takes one answer per read, so it lost the others and timed out
/// with more than one query outstanding (`server/records.rs`).
#[tokio::test(flavor = "multi_thread")]
async fn dnsperf_with_ten_queries_outstanding_gets_every_answer() {
    let p = pair();
    let (s, _up) = start(&p, "").await;
    for method in ["GET", "POST"] {
        let (sent, done) = dnsperf(&s, method).await;
        assert!(sent >= 20, "{method}: only {sent} queries sent");
        assert!(
            done * 100 >= sent * 90,
            "{method}: {done} of {sent} queries answered"
        );
    }
}

/// A large answer (a 20 KB TXT record: several DATA frames, handed to TLS apart from
/// their headers) arrives whole over HTTP/2.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_answer_arrives_whole_over_http2() {
    let p = pair();
    let strings: Vec<String> = (0..80)
        .map(|i| format!("{i:03}{}", "x".repeat(250)))
        .collect();
    let up = FakeUpstream::start(vec![txt("big.example.test.", strings.clone(), 300)]).await;
    let s = TestServer::start(
        &config(&up, ""),
        &[
            ("cert.pem", &p.cert_pem),
            ("key.pem", &p.key_pem),
            ("block.txt", "ads.test\n"),
        ],
    )
    .await;
    let g = get(&s, "--http2", "big.example.test.", RecordType::TXT).await;
    assert!(g.body.len() > 20_000, "{} bytes", g.body.len());
    let m = g.dns();
    let got: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            hickory_proto::rr::RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).to_string())
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(got, strings);
}
