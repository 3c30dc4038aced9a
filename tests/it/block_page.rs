//! The block page (`http.block_page_listen`) over real HTTP/1.1 on loopback: requests are
//! written byte for byte on a TCP socket (so that hostile Host headers reach the server as
//! sent), from chosen source addresses (127.0.0.2 is another client on Linux).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::harness::{TestServer, first_answer};

/// Lists: `ads.test` (line 2 of ads.txt) for everyone; `games.test` for the group `kids`
/// (127.0.0.2) only. `ok.ads.test` is allowed.
const TOML: &str = "[blocking]\nlists = [\"ads.txt\"]\nallow = [\"allow.txt\"]\n\
     [log]\npath = \"q.jsonl\"\n\
     [[groups]]\nname = \"kids\"\nclients = [\"127.0.0.2\"]\nlists = [\"games.txt\"]\n\
     [http]\nblock_page_listen = [\"127.0.0.1:0\"]\n";

const FILES: &[(&str, &str)] = &[
    ("ads.txt", "# ads\nads.test\n"),
    ("allow.txt", "ok.ads.test\n"),
    ("games.txt", "games.test\n"),
];

async fn server() -> (TestServer, SocketAddr) {
    let s = TestServer::start(TOML, FILES).await;
    let addr = s.service().block_page_addrs()[0];
    (s, addr)
}

/// A response: status, head (lower-cased), body.
struct Resp {
    status: u16,
    head: String,
    body: String,
}

/// A connection to the block page from `src`.
async fn connect(src: &str, addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(src.parse().unwrap(), 0)).unwrap();
    sock.connect(addr).await.unwrap()
}

/// Sends `request` as written from `src` and reads the response until the server closes.
async fn raw(src: &str, addr: SocketAddr, request: &[u8]) -> Resp {
    let mut s = connect(src, addr).await;
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("block page did not answer and close within 5 s")
        .unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("no header end");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Resp {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

/// A GET for `/` with `host` and `accept`.
async fn get(src: &str, addr: SocketAddr, host: &str, accept: &str) -> Resp {
    let req = format!(
        "GET /some/path?x=1 HTTP/1.1\r\nHost: {host}\r\nAccept: {accept}\r\nUser-Agent: t\r\n\r\n"
    );
    raw(src, addr, req.as_bytes()).await
}

const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

#[tokio::test(flavor = "multi_thread")]
async fn a_blocked_host_gets_403_naming_host_rule_and_list_as_html_or_text() {
    let (_s, addr) = server().await;
    let r = get("127.0.0.1", addr, "www.Ads.Test:80", BROWSER).await;
    assert_eq!(r.status, 403, "{}", r.head);
    assert!(
        r.head.contains("content-type: text/html; charset=utf-8"),
        "{}",
        r.head
    );
    assert!(r.head.contains("cache-control: no-store"), "{}", r.head);
    assert!(
        r.head
            .contains("content-security-policy: default-src 'none'"),
        "{}",
        r.head
    );
    assert!(
        r.body.contains("<title>Blocked: www.ads.test</title>"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("blocked by the network&#39;s policy. The attempt was logged."),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("<dt>Rule</dt><dd>ads.test</dd>"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("<dt>List</dt><dd>ads.txt (line 2)</dd>"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("Group"), "default policy: {}", r.body);

    // curl and apps: plain text, same facts.
    let r = get("127.0.0.1", addr, "ads.test", "*/*").await;
    assert_eq!(r.status, 403);
    assert!(
        r.head.contains("content-type: text/plain; charset=utf-8"),
        "{}",
        r.head
    );
    assert_eq!(
        r.body,
        "Blocked: ads.test\n\nThis site was blocked by the network's policy. The attempt was logged.\n\n\
         Site: ads.test\nRule: ads.test\nList: ads.txt (line 2)\n"
    );

    // HEAD: the status and headers, no body.
    let r = raw(
        "127.0.0.1",
        addr,
        b"HEAD / HTTP/1.1\r\nHost: ads.test\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body, "");
}

#[tokio::test(flavor = "multi_thread")]
async fn allowed_and_unlisted_hosts_and_bare_addresses_get_404() {
    let (_s, addr) = server().await;
    for host in ["ok.ads.test", "www.example.test"] {
        let r = get("127.0.0.1", addr, host, "*/*").await;
        assert_eq!(r.status, 404, "{host}: {}", r.body);
        assert!(
            r.body.starts_with(&format!("Not blocked: {host}\n")),
            "{}",
            r.body
        );
        assert!(
            r.body.contains("No rule blocks this site now"),
            "{}",
            r.body
        );
    }
    let r = get("127.0.0.1", addr, &addr.to_string(), BROWSER).await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("<dd>127.0.0.1</dd>"), "{}", r.body);
    // HTTP/1.0 without a Host header.
    let r = raw("127.0.0.1", addr, b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("names no host"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_host_header_is_rejected_and_never_echoed() {
    let (_s, addr) = server().await;
    for host in [
        "<script>alert(1)</script>.ads.test",
        "ads.test\"><img src=x onerror=alert(1)>",
        "ads.test/<b>",
        "ads.test:80:<i>",
    ] {
        let r = get("127.0.0.1", addr, host, BROWSER).await;
        assert_eq!(r.status, 400, "{host}: {}", r.body);
        // Never echoed: not even escaped.
        assert!(
            !r.body.contains("alert") && !r.body.contains("<b>"),
            "{}",
            r.body
        );
        assert!(
            !r.body.contains("<i>") && !r.body.contains("ads.test"),
            "{}",
            r.body
        );
        assert!(r.body.contains("not a valid host name"), "{}", r.body);
    }
    // Two Host headers.
    let r = raw(
        "127.0.0.1",
        addr,
        b"GET / HTTP/1.1\r\nHost: ads.test\r\nHost: other.test\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_10kb_host_header_gets_4xx_at_once_and_dns_still_answers() {
    let (s, addr) = server().await;
    let t = Instant::now();
    let host = format!("{}.ads.test", "a".repeat(10 * 1024));
    let r = get("127.0.0.1", addr, &host, BROWSER).await;
    // Past the header limit: hyper's 431, before any of our code runs.
    assert_eq!(r.status, 431, "{}", r.head);
    // Under the header limit but over a DNS name's length: our own 400.
    let r = get(
        "127.0.0.1",
        addr,
        &format!("{}.ads.test", "a.".repeat(200)),
        "*/*",
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("too long"), "{}", r.body);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let m = s.query("ads.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "0.0.0.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_groups_list_blocks_the_host_for_that_groups_client_only() {
    let (s, addr) = server().await;
    // DNS: blocked for 127.0.0.2 (kids) only.
    let m = s
        .query_from("127.0.0.2", "games.test.", RecordType::A)
        .await;
    assert_eq!(first_answer(&m), "0.0.0.0");

    let r = get("127.0.0.2", addr, "games.test", "*/*").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body
            .contains("Rule: games.test\nList: games.txt (line 1)\nGroup: kids\n"),
        "{}",
        r.body
    );
    // The default lists apply to kids too (inherit).
    let r = get("127.0.0.2", addr, "ads.test", "*/*").await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("Group: kids"), "{}", r.body);

    let r = get("127.0.0.1", addr, "games.test", "*/*").await;
    assert_eq!(r.status, 404, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_change_applies_to_the_page_at_once() {
    let (s, addr) = server().await;
    assert_eq!(get("127.0.0.1", addr, "new.test", "*/*").await.status, 404);
    std::fs::write(s.path("ads.txt"), "# ads\nads.test\nnew.test\n").unwrap();
    s.service().reloader().reload_logged(false).await;
    let r = get("127.0.0.1", addr, "new.test", "*/*").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("List: ads.txt (line 3)"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_client_holding_connections_is_cut_off_and_others_still_get_the_page() {
    let (_s, addr) = server().await;
    let mut held = Vec::new();
    for _ in 0..sinkhole::block_page::MAX_PER_CLIENT {
        let mut c = connect("127.0.0.3", addr).await;
        c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        held.push(c);
    }
    // Let the server accept them all before the next one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = connect("127.0.0.3", addr).await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf))
        .await
        .expect("over the limit: closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    let r = get("127.0.0.1", addr, "ads.test", "*/*").await;
    assert_eq!(r.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_finishes_its_headers_is_closed_after_the_header_timeout() {
    let (_s, addr) = server().await;
    let mut c = connect("127.0.0.1", addr).await;
    c.write_all(b"GET / HTTP/1.1\r\nHost: ads.test\r\n")
        .await
        .unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let limit = sinkhole::block_page::HEADER_TIMEOUT + Duration::from_secs(3);
    let _ = tokio::time::timeout(limit, c.read_to_end(&mut buf))
        .await
        .expect("connection still open after the header timeout");
    assert!(t.elapsed() >= sinkhole::block_page::HEADER_TIMEOUT - Duration::from_millis(500));
}
