//! The query log over HTTP: `/api/v1/log` (filters, paging across pages, bad parameters,
//! the token), `/api/v1/stats/top|series`, `/api/v1/discovery`, and `/api/v1/log/stream` (server-sent events)
//! receiving a query sent during the test, while a stream that is never read is dropped
//! and DNS keeps answering.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, rcode};
use crate::querylog::records;

pub(crate) const TOKEN: &str = "log-token-0123456789";

/// A server blocking ads.test, logging to q.jsonl, with `[http]` (token set) plus `extra`.
async fn server(up: SocketAddr, log: bool, extra: &str) -> TestServer {
    let log = if log {
        "[log]\npath = \"q.jsonl\"\n"
    } else {
        ""
    };
    let toml = format!(
        "[upstream]\nservers = [\"{up}\"]\n[blocking]\nlists = [\"ads.txt\"]\n{log}\
         [http]\nlisten = [\"127.0.0.1:0\"]\ntoken = \"{TOKEN}\"\n{extra}"
    );
    TestServer::start(&toml, &[("ads.txt", "ads.test\n")]).await
}

async fn upstream() -> FakeUpstream {
    FakeUpstream::start(vec![
        a("ads.test.", "192.0.2.20", 300),
        a("www.test.", "192.0.2.30", 300),
        a("mail.test.", "192.0.2.40", 300),
    ])
    .await
}

/// `GET path` with `token`: (status, JSON body).
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, Value) {
    let url = format!("http://{addr}{path}");
    let auth = token.map(|t| format!("Bearer {t}"));
    tokio::task::spawn_blocking(move || {
        let agent = crate::harness::http_agent();
        let mut r = agent.get(&url);
        if let Some(a) = &auth {
            r = r.header("Authorization", a);
        }
        let mut r = r.call().unwrap();
        let status = r.status().as_u16();
        let body = r.body_mut().read_to_string().unwrap();
        let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (status, v)
    })
    .await
    .unwrap()
}

fn names(v: &Value) -> Vec<String> {
    v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["client"].as_str().unwrap(),
                r["qname"].as_str().unwrap()
            )
        })
        .collect()
}

/// Sends the script: (client, name), in order; waits until the log holds them all. The
/// queries are 2 ms apart, so that no two records share a timestamp (milliseconds): a time
/// range ending at one record's `ts` holds no later one (two in the same millisecond made
/// the range test fail now and then).
async fn script(s: &TestServer, qs: &[(&str, &str)]) {
    for (client, name) in qs {
        s.query_from(client, name, RecordType::A).await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    records(&s.path("q.jsonl"), qs.len()).await;
}

const SCRIPT: &[(&str, &str)] = &[
    ("127.0.0.1", "www.test."),
    ("127.0.0.2", "ads.test."),
    ("127.0.0.1", "mail.test."),
    ("127.0.0.2", "www.test."),
    ("127.0.0.1", "ads.test."),
];

#[tokio::test(flavor = "multi_thread")]
async fn log_filters_and_pages_newest_first() {
    let up = upstream().await;
    let s = server(up.addr, true, "").await;
    script(&s, SCRIPT).await;
    let h = s.http_addr();
    let t = Some(TOKEN);
    let want: Vec<String> = SCRIPT
        .iter()
        .rev()
        .map(|(c, n)| format!("{c} {}", n.trim_end_matches('.')))
        .collect();
    // All of it, newest first.
    let (st, v) = get(h, "/api/v1/log", t).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(names(&v), want);
    assert!(v["next"].is_null());
    // Pages of two, each going on where the last ended.
    let mut got = Vec::new();
    let mut path = "/api/v1/log?limit=2".to_string();
    for _ in 0..5 {
        let (st, v) = get(h, &path, t).await;
        assert_eq!(st, 200, "{v}");
        assert!(names(&v).len() <= 2);
        got.extend(names(&v));
        match v["next"].as_str() {
            Some(c) => path = format!("/api/v1/log?limit=2&before={c}"),
            None => break,
        }
    }
    assert_eq!(got, want);
    // Filters.
    let (_, v) = get(h, "/api/v1/log?client=127.0.0.2", t).await;
    assert_eq!(names(&v), ["127.0.0.2 www.test", "127.0.0.2 ads.test"]);
    let (_, v) = get(h, "/api/v1/log?action=blocked", t).await;
    assert_eq!(names(&v), ["127.0.0.1 ads.test", "127.0.0.2 ads.test"]);
    let (_, v) = get(h, "/api/v1/log?name=W*.TEST", t).await;
    assert_eq!(names(&v), ["127.0.0.2 www.test", "127.0.0.1 www.test"]);
    let (_, v) = get(
        h,
        "/api/v1/log?client=127.0.0.0/31&action=allowed&name=*.test",
        t,
    )
    .await;
    assert_eq!(names(&v), ["127.0.0.1 mail.test", "127.0.0.1 www.test"]);
    // Time ranges: unix seconds and RFC 3339.
    let first_ts = v["records"][1]["ts"].as_str().unwrap().to_string();
    let (_, v) = get(h, "/api/v1/log?from=4102444800", t).await;
    assert_eq!(names(&v), Vec::<String>::new());
    let (_, v) = get(h, "/api/v1/log?to=946684800", t).await;
    assert_eq!(names(&v), Vec::<String>::new());
    let (_, v) = get(
        h,
        &format!("/api/v1/log?from=2000-01-01T00:00:00Z&to={first_ts}"),
        t,
    )
    .await;
    assert_eq!(names(&v), ["127.0.0.1 www.test"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_parameters_are_named_and_reads_need_the_token() {
    let up = upstream().await;
    let s = server(up.addr, true, "").await;
    let h = s.http_addr();
    for (q, param) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-5", "limit"),
        ("limit=lots", "limit"),
        ("client=nope", "client"),
        ("action=dropped", "action"),
        ("from=yesterday", "from"),
        ("to=99999999999999999999", "to"),
        ("from=2030-01-01&to=2020-01-01", "to"),
        ("before=12", "before"),
        ("name=%5Bab", "name"),
        ("limit=1&limit=2", "limit"),
        ("colour=red", "colour"),
    ] {
        let (st, v) = get(h, &format!("/api/v1/log?{q}"), Some(TOKEN)).await;
        assert_eq!(st, 400, "{q}: {v}");
        let e = v["error"].as_str().unwrap();
        assert!(e.contains(param), "{q}: {e}");
    }
    for (q, param) in [
        ("stats/top?by=colour", "by"),
        ("stats/top?limit=100000", "limit"),
        ("stats/top?since=soon", "since"),
        ("stats/series?minutes=1441", "minutes"),
        ("log/stream?action=x", "action"),
        ("log/stream?from=0", "from"),
        ("discovery", "client"),
        ("discovery?client=10.0.0.0%2F8", "client"),
        ("discovery?client=127.0.0.1&count=0", "count"),
        ("discovery?client=127.0.0.1&sessions=-1", "sessions"),
        (
            "discovery?client=127.0.0.1&limit=99999999999999999999999",
            "limit",
        ),
        ("discovery?client=127.0.0.1&min=x", "min"),
        ("discovery?client=127.0.0.1&since=later", "since"),
        ("discovery?client=127.0.0.1&name=x", "name"),
    ] {
        let (st, v) = get(h, &format!("/api/v1/{q}"), Some(TOKEN)).await;
        assert_eq!(st, 400, "{q}: {v}");
        assert!(v["error"].as_str().unwrap().contains(param), "{q}: {v}");
    }
    for p in [
        "log",
        "log/stream",
        "stats/top",
        "stats/series",
        "discovery?client=127.0.0.1",
    ] {
        let path = format!("/api/v1/{p}");
        assert_eq!(get(h, &path, None).await.0, 401, "{p}");
        assert_eq!(
            get(h, &path, Some("wrong-token-0123456789")).await.0,
            401,
            "{p}"
        );
    }
    // public_read opens them without a token; without a log they are 404 with a reason.
    let open = server(up.addr, true, "public_read = true\n").await;
    assert_eq!(get(open.http_addr(), "/api/v1/log", None).await.0, 200);
    let off = server(up.addr, false, "").await;
    let (st, v) = get(off.http_addr(), "/api/v1/log", Some(TOKEN)).await;
    assert_eq!(st, 404, "{v}");
    assert!(v["error"].as_str().unwrap().contains("[log]"), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn top_and_series_count_the_log() {
    let up = upstream().await;
    let kids = "[[groups]]\nname = \"kids\"\nclients = [\"127.0.0.2\"]\nlists = [\"ads.txt\"]\n";
    let s = server(up.addr, true, kids).await;
    script(&s, SCRIPT).await;
    let h = s.http_addr();
    let t = Some(TOKEN);
    let (st, v) = get(h, "/api/v1/stats/top?by=blocked", t).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["top"],
        serde_json::json!([{ "key": "ads.test", "count": 2 }])
    );
    let (_, v) = get(h, "/api/v1/stats/top?by=client&limit=1", t).await;
    assert_eq!(
        v["top"],
        serde_json::json!([{ "key": "127.0.0.1", "count": 3 }])
    );
    let (_, v) = get(h, "/api/v1/stats/top?by=domain&since=0", t).await;
    assert_eq!(
        v["top"][0],
        serde_json::json!({ "key": "ads.test", "count": 2 })
    );
    assert_eq!(v["top"].as_array().unwrap().len(), 3);
    // Queries by the group whose policy decided: 127.0.0.2's two are the kids'.
    let (_, v) = get(h, "/api/v1/stats/top?by=group", t).await;
    assert_eq!(
        v["top"],
        serde_json::json!([{ "key": "(default)", "count": 3 }, { "key": "kids", "count": 2 }])
    );
    let (st, v) = get(h, "/api/v1/stats/series?minutes=5", t).await;
    assert_eq!(st, 200, "{v}");
    let q: Vec<u64> = serde_json::from_value(v["queries"].clone()).unwrap();
    let b: Vec<u64> = serde_json::from_value(v["blocked"].clone()).unwrap();
    assert_eq!(q.len(), 5);
    // The script may straddle a minute's end: the last two minutes hold it.
    assert_eq!(q[3] + q[4], 5, "{v}");
    assert_eq!(b[3] + b[4], 2, "{v}");
    assert_eq!(v["step"], 60);
    let (_, v) = get(h, "/api/v1/stats/series", t).await;
    assert_eq!(v["queries"].as_array().unwrap().len(), 1440);
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_shows_one_clients_sessions_new_names_and_suggestions() {
    let up = upstream().await;
    let s = server(up.addr, true, "").await;
    script(&s, SCRIPT).await;
    let h = s.http_addr();
    let (st, v) = get(h, "/api/v1/discovery?client=127.0.0.1", Some(TOKEN)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["client"], "127.0.0.1");
    let sessions = v["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{v}");
    assert_eq!(sessions[0]["session"], 1);
    assert_eq!(sessions[0]["queries"], 3);
    let names: Vec<(&str, &str, &str)> = sessions[0]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap(),
                n["domain"].as_str().unwrap(),
                n["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("www.test", "www.test", "allowed"),
            ("mail.test", "mail.test", "allowed"),
            ("ads.test", "ads.test", "blocked"),
        ]
    );
    // Every name was new to this client; the blocked one is no suggestion.
    assert_eq!(v["new"][0]["names"].as_array().unwrap().len(), 3);
    let suggested: Vec<&str> = v["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["domain"].as_str().unwrap())
        .collect();
    assert_eq!(suggested, ["mail.test", "www.test"]);
    assert_eq!(v["sessions_read"], 1);
    assert_eq!(v["heartbeats"], serde_json::json!([]));
    // Another client's view holds only its own names; one with no records is empty.
    let (_, v) = get(h, "/api/v1/discovery?client=127.0.0.2&count=1", Some(TOKEN)).await;
    assert_eq!(v["sessions"][0]["names"][0]["name"], "ads.test", "{v}");
    assert_eq!(v["sessions"][0]["names"].as_array().unwrap().len(), 1);
    let (st, v) = get(h, "/api/v1/discovery?client=192.0.2.99", Some(TOKEN)).await;
    assert_eq!(st, 200);
    assert_eq!(v["sessions"], serde_json::json!([]), "{v}");
    // A start time after the records: nothing.
    let (_, v) = get(
        h,
        "/api/v1/discovery?client=127.0.0.1&since=2099-01-01",
        Some(TOKEN),
    )
    .await;
    assert_eq!(v["sessions"], serde_json::json!([]), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_suggests_nothing_the_clients_own_group_blocks() {
    let up = upstream().await;
    let toml = format!(
        "[upstream]\nservers = [\"{}\"]\n[blocking]\nlists = [\"ads.txt\"]\n\
         [log]\npath = \"q.jsonl\"\n[http]\nlisten = [\"127.0.0.1:0\"]\ntoken = \"{TOKEN}\"\n\
         [[groups]]\nname = \"kids\"\nclients = [\"127.0.0.2\"]\nlists = [\"kids.txt\"]\n",
        up.addr
    );
    let s = TestServer::start(&toml, &[("ads.txt", "ads.test\n"), ("kids.txt", "")]).await;
    // Asked while nothing blocked it, by a kid and by a client of the default policy.
    script(
        &s,
        &[("127.0.0.2", "mail.test."), ("127.0.0.1", "mail.test.")],
    )
    .await;
    // Now the kids' list blocks it: for the kid it is blocked already, no suggestion; for
    // the other client it is still one.
    std::fs::write(s.path("kids.txt"), "mail.test\n").unwrap();
    s.service().reloader().reload(true).await.unwrap();
    let suggested = |v: &Value| -> Vec<String> {
        v["suggestions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["domain"].as_str().unwrap().to_string())
            .collect()
    };
    let h = s.http_addr();
    let (_, kid) = get(h, "/api/v1/discovery?client=127.0.0.2", Some(TOKEN)).await;
    assert_eq!(kid["sessions"][0]["names"][0]["name"], "mail.test", "{kid}");
    assert_eq!(suggested(&kid), Vec::<String>::new(), "{kid}");
    let (_, other) = get(h, "/api/v1/discovery?client=127.0.0.1", Some(TOKEN)).await;
    assert_eq!(suggested(&other), ["mail.test"], "{other}");
}

/// Opens `/api/v1/log/stream?query` on a raw socket (receive buffer `rcvbuf` when given);
/// returns it after the response head, which must be a 200 event stream.
pub(crate) async fn open_stream(
    addr: SocketAddr,
    query: &str,
    rcvbuf: Option<u32>,
) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(n) = rcvbuf {
        sock.set_recv_buffer_size(n).unwrap();
    }
    let mut c = sock.connect(addr).await.unwrap();
    let req = format!(
        "GET /api/v1/log/stream?{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    c.write_all(req.as_bytes()).await.unwrap();
    let head = read_until(&mut c, b"\r\n\r\n", Duration::from_secs(5)).await;
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    c
}

/// Reads from `c` until `needle` has arrived (or `wait` passed); returns what was read.
pub(crate) async fn read_until(
    c: &mut tokio::net::TcpStream,
    needle: &[u8],
    wait: Duration,
) -> Vec<u8> {
    let end = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(needle.len()).any(|w| w == needle) {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, c.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_sends_a_query_made_during_the_test_and_streams_are_bounded() {
    let up = upstream().await;
    let s = server(up.addr, true, "").await;
    // The log file exists before the stream starts (as on a running server).
    script(&s, &[("127.0.0.1", "www.test.")]).await;
    let h = s.http_addr();
    let mut c = open_stream(h, "client=127.0.0.3&name=*.test", None).await;
    // Another client's query does not pass the filter; ours does.
    s.query_from("127.0.0.1", "mail.test.", RecordType::A).await;
    s.query_from("127.0.0.3", "ads.test.", RecordType::A).await;
    let got = read_until(&mut c, b"ads.test", Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got);
    let data: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(data.len(), 1, "{text}");
    assert_eq!(data[0]["client"], "127.0.0.3");
    assert_eq!(data[0]["qname"], "ads.test");
    assert_eq!(data[0]["action"], "blocked");
    // At most 8 streams: the 9th is refused (503) while they are open.
    let mut open = Vec::new();
    for _ in 1..sinkhole::http::MAX_LOG_STREAMS {
        open.push(open_stream(h, "", None).await);
    }
    let (st, v) = get(h, "/api/v1/log/stream", Some(TOKEN)).await;
    assert_eq!(st, 503, "{v}");
    // Closing one frees its place (the follower notices within a poll).
    drop(open.pop());
    let t = Instant::now();
    loop {
        let (st, _) = tokio::time::timeout(Duration::from_secs(3), async {
            let mut c = tokio::net::TcpStream::connect(h).await.unwrap();
            let req = format!(
                "GET /api/v1/log/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
            );
            c.write_all(req.as_bytes()).await.unwrap();
            let head = read_until(&mut c, b"\r\n\r\n", Duration::from_secs(2)).await;
            (String::from_utf8_lossy(&head).get(9..12).unwrap_or("").to_string(), c)
        })
        .await
        .unwrap();
        if st == "200" {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the closed stream's place stayed taken"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_never_read_is_dropped_and_dns_keeps_answering() {
    let up = upstream().await;
    let s = server(up.addr, true, "").await;
    script(&s, &[("127.0.0.1", "www.test.")]).await;
    let mut slow = open_stream(s.http_addr(), "", Some(4096)).await;
    // Far more records than the stream's buffer and the sockets hold (the kernel may buffer
    // 4 MB for the stream's socket): long blocked names, each answered at once while
    // nobody reads the stream.
    const N: usize = 10_000;
    let long = format!(
        "{}.{}.{}.ads.test.",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63)
    );
    let started = Instant::now();
    for _ in 0..N {
        let m = s.query(&long, RecordType::A).await;
        assert_eq!(rcode(&m), u16::from(ResponseCode::NoError));
    }
    let took = started.elapsed();
    records(&s.path("q.jsonl"), N + 1).await;
    // Let the follower catch up, then read what the stream kept: it ended (the chunked
    // body's last chunk) well before all the records were sent.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let got = read_until(&mut slow, b"\r\n0\r\n\r\n", Duration::from_secs(10)).await;
    let events = got.windows(6).filter(|w| w == b"data: ").count();
    assert!(
        got.ends_with(b"\r\n0\r\n\r\n"),
        "the stream was not ended; {events} events"
    );
    assert!(
        events < N,
        "{events} events: the slow stream was buffered for, not dropped"
    );
    eprintln!("{N} queries in {took:?}; the slow stream got {events} events, then ended");
}
