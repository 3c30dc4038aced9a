//! `[http]`: the API and `/metrics` over real HTTP on loopback (ureq on a blocking thread,
//! raw TCP for the hostile cases): every endpoint, the token, bad input, `/metrics` read by
//! a text-format parser, a pause that lets a blocked name through until the clock passes
//! its end, and `sinkhole pause|resume|status` against a running `sinkhole serve`.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, bin, first_answer, free_port, spawn_serve, stop_serve};

const TOKEN: &str = "test-token-0123456789";

fn zone() -> Vec<hickory_proto::rr::Record> {
    vec![
        a("ads.test.", "192.0.2.20", 300),
        a("www.test.", "192.0.2.30", 300),
        a("social.test.", "192.0.2.10", 300),
    ]
}

const LISTS: &[(&str, &str)] = &[("ads.txt", "ads.test\n"), ("social.txt", "social.test\n")];

/// A server blocking ads.txt, with group `kids` (127.0.0.2) adding social.txt, and `[http]`
/// on an ephemeral port with `extra` appended to the section.
async fn server(up: SocketAddr, extra: &str) -> TestServer {
    let toml = format!(
        "[upstream]\nservers = [\"{up}\"]\n[blocking]\nlists = [\"ads.txt\"]\n\
         [[groups]]\nname = \"kids\"\nclients = [\"127.0.0.2\"]\nlists = [\"social.txt\"]\n\
         [http]\nlisten = [\"127.0.0.1:0\"]\n{extra}"
    );
    TestServer::start(&toml, LISTS).await
}

/// One HTTP exchange: (status, body, the WWW-Authenticate header).
async fn call(
    method: &'static str,
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String, Option<String>) {
    let url = format!("http://{addr}{path}");
    let (token, body) = (token.map(str::to_string), body.map(str::to_string));
    tokio::task::spawn_blocking(move || {
        let agent = crate::harness::http_agent();
        let auth = token.map(|t| format!("Bearer {t}"));
        let r = match method {
            "GET" => {
                let mut r = agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            _ => {
                let mut r = agent.post(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                match body {
                    Some(b) => r.send(b),
                    None => r.send_empty(),
                }
            }
        };
        let mut r = r.unwrap();
        let www = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap(),
            www,
        )
    })
    .await
    .unwrap()
}

async fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (status, body, _) = call("GET", addr, path, Some(TOKEN), None).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Asserts a 4xx JSON error whose message contains `says`.
fn assert_error(got: &(u16, String, Option<String>), status: u16, says: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    let v: Value = serde_json::from_str(&got.1).unwrap_or_else(|_| panic!("not JSON: {}", got.1));
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains(says), "{msg:?} should say {says:?}");
}

/// Sends raw bytes on a new connection and returns what came back (until close or 5 s).
async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A Prometheus text-format (0.0.4) check: every line is `# HELP name text`, `# TYPE name
/// kind`, or a sample `name{k="v",…} value` whose family was typed before, each family's
/// lines together. Returns the samples as (name with labels, value).
pub(crate) fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let metric_name = |s: &str| {
        !s.is_empty()
            && s.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut typed: Vec<(String, String)> = Vec::new();
    let mut closed: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(metric_name(name), "HELP name {line:?}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            assert!(metric_name(name), "{line:?}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line:?}"
            );
            assert!(
                !typed.iter().any(|(n, _)| n == name),
                "second TYPE: {line:?}"
            );
            if !current.is_empty() {
                closed.push(current.clone());
            }
            current = name.to_string();
            typed.push((name.to_string(), kind.to_string()));
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        assert!(metric_name(name), "{line:?}");
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            let inner = labels.strip_prefix('{').and_then(|l| l.strip_suffix('}'));
            let mut rest = inner.unwrap_or_else(|| panic!("labels {line:?}"));
            while !rest.is_empty() {
                let (k, v) = rest.split_once("=\"").unwrap_or_else(|| panic!("{line:?}"));
                assert!(metric_name(k), "label {k:?} in {line:?}");
                // The value runs to the first unescaped quote.
                let mut end = None;
                let mut esc = false;
                for (i, c) in v.char_indices() {
                    match (esc, c) {
                        (true, _) => esc = false,
                        (false, '\\') => esc = true,
                        (false, '"') => {
                            end = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                let end = end.unwrap_or_else(|| panic!("unterminated label in {line:?}"));
                rest = &v[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                let base = name.strip_suffix(s)?;
                typed
                    .iter()
                    .any(|(n, k)| n == base && k == "histogram")
                    .then_some(base)
            })
            .unwrap_or(name);
        assert_eq!(
            family, current,
            "sample outside its family's block: {line:?}"
        );
        assert!(!closed.contains(&family.to_string()), "{line:?}");
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("value {line:?}")),
        };
        samples.push((series.to_string(), v));
    }
    samples
}

pub(crate) fn sample(samples: &[(String, f64)], series: &str) -> f64 {
    samples
        .iter()
        .find(|(s, _)| s == series)
        .unwrap_or_else(|| panic!("no {series}"))
        .1
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_prometheus_text_and_need_no_token() {
    let up = FakeUpstream::start(zone()).await;
    let s = server(up.addr, &format!("token = \"{TOKEN}\"\n")).await;
    for _ in 0..3 {
        assert_eq!(
            first_answer(&s.query("ads.test.", RecordType::A).await),
            "0.0.0.0"
        );
    }
    assert_eq!(
        first_answer(&s.query("www.test.", RecordType::A).await),
        "192.0.2.30"
    );
    assert_eq!(
        first_answer(&s.query("www.test.", RecordType::A).await),
        "192.0.2.30"
    );
    let (status, text, _) = call("GET", s.http_addr(), "/metrics", None, None).await;
    assert_eq!(status, 200);
    let samples = parse_prometheus(&text);
    assert_eq!(
        sample(&samples, "sinkhole_queries_total{action=\"blocked\"}"),
        3.0
    );
    assert_eq!(
        sample(&samples, "sinkhole_queries_total{action=\"allowed\"}"),
        1.0
    );
    assert_eq!(
        sample(&samples, "sinkhole_queries_total{action=\"cached\"}"),
        1.0
    );
    assert_eq!(sample(&samples, "sinkhole_cache_entries"), 1.0);
    assert_eq!(
        sample(&samples, "sinkhole_list_entries{list=\"ads.txt\"}"),
        1.0
    );
    assert!(
        sample(
            &samples,
            "sinkhole_list_loaded_timestamp_seconds{list=\"ads.txt\"}"
        ) > 1.7e9
    );
    assert_eq!(sample(&samples, "sinkhole_querylog_dropped_total"), 0.0);
    assert_eq!(sample(&samples, "sinkhole_ratelimit_bans_total"), 0.0);
    assert_eq!(
        sample(&samples, "sinkhole_blocked_by_list_total{list=\"ads.txt\"}"),
        3.0
    );
    assert_eq!(
        sample(
            &samples,
            "sinkhole_blocked_by_list_total{list=\"social.txt\"}"
        ),
        0.0,
        "every configured list has a series, 0 until it blocks"
    );
    assert_eq!(sample(&samples, "sinkhole_last_reload_success"), 1.0);
    assert_eq!(sample(&samples, "sinkhole_blocking_paused"), 0.0);
    let inf = format!(
        "sinkhole_upstream_latency_seconds_bucket{{upstream=\"{}\",le=\"+Inf\"}}",
        up.addr
    );
    assert_eq!(sample(&samples, &inf), 1.0);
    assert!(text.contains("# TYPE sinkhole_upstream_latency_seconds histogram\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_and_writes_need_the_token_unless_public_read() {
    let up = FakeUpstream::start(zone()).await;
    let s = server(up.addr, &format!("token = \"{TOKEN}\"\n")).await;
    let h = s.http_addr();
    for path in [
        "/api/v1/status",
        "/api/v1/stats",
        "/api/v1/lists",
        "/api/v1/check?name=ads.test",
    ] {
        let got = call("GET", h, path, None, None).await;
        assert_error(&got, 401, "missing token");
        assert_eq!(got.2.as_deref(), Some("Bearer realm=\"sinkhole\""));
        assert_error(
            &call("GET", h, path, Some("test-token-0123456788"), None).await,
            401,
            "wrong token",
        );
        assert_eq!(
            call("GET", h, path, Some(TOKEN), None).await.0,
            200,
            "{path}"
        );
    }
    for path in [
        "/api/v1/pause?duration=1m",
        "/api/v1/resume",
        "/api/v1/reload",
    ] {
        assert_error(
            &call("POST", h, path, None, None).await,
            401,
            "missing token",
        );
        assert_error(
            &call("POST", h, path, Some("nope"), None).await,
            401,
            "wrong token",
        );
    }
    assert_error(
        &call("GET", h, "/api/v1/nothing", Some(TOKEN), None).await,
        404,
        "no such endpoint",
    );
    // A GET of a POST call is not allowed.
    assert_eq!(
        call("GET", h, "/api/v1/pause", Some(TOKEN), None).await.0,
        405
    );
    drop(s);

    // public_read: reads open, writes still need the token.
    let s = server(
        up.addr,
        &format!("token = \"{TOKEN}\"\npublic_read = true\n"),
    )
    .await;
    let h = s.http_addr();
    assert_eq!(call("GET", h, "/api/v1/status", None, None).await.0, 200);
    assert_error(
        &call("POST", h, "/api/v1/pause?duration=1m", None, None).await,
        401,
        "missing token",
    );
    drop(s);

    // No token at all: reads with public_read, writes disabled.
    let s = server(up.addr, "public_read = true\n").await;
    let h = s.http_addr();
    assert_eq!(call("GET", h, "/api/v1/stats", None, None).await.0, 200);
    assert_error(
        &call("POST", h, "/api/v1/pause?duration=1m", Some(TOKEN), None).await,
        403,
        "no API token",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_answers_as_lists_check_does() {
    let up = FakeUpstream::start(zone()).await;
    let s = server(up.addr, &format!("token = \"{TOKEN}\"\n")).await;
    let h = s.http_addr();
    let v = get_json(h, "/api/v1/check?name=www.ADS.test.&name=social.test").await;
    assert_eq!(v["client"], Value::Null);
    assert_eq!(v["paused"], false);
    let names = v["names"].as_array().unwrap();
    assert_eq!(names[0]["name"], "www.ads.test");
    assert_eq!(names[0]["verdict"], "blocked");
    assert_eq!(names[0]["decision"]["list"], "ads.txt");
    assert_eq!(names[0]["decision"]["line"], 1);
    assert_eq!(names[0]["decision"]["rule"], "ads.test");
    assert_eq!(names[1]["verdict"], "not blocked");
    assert_eq!(names[1]["decision"], Value::Null);

    // The same question to `sinkhole lists check`.
    let out = bin()
        .args(["lists", "check", "--config"])
        .arg(s.path("sinkhole.toml"))
        .args(["www.ADS.test.", "social.test"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("www.ads.test  blocked  by ads.test  (ads.txt:1)"),
        "{text}"
    );
    assert!(text.contains("social.test   not blocked"), "{text}");

    // A client of group kids: its own list too.
    let v = get_json(h, "/api/v1/check?name=social.test&client=127.0.0.2").await;
    assert_eq!(v["client"]["ip"], "127.0.0.2");
    assert_eq!(v["client"]["group"]["name"], "kids");
    assert_eq!(v["names"][0]["verdict"], "blocked");
    assert_eq!(v["names"][0]["decision"]["list"], "social.txt");
    let v = get_json(h, "/api/v1/check?name=social.test&client=127.0.0.9").await;
    assert_eq!(v["client"]["group"], Value::Null);
    assert_eq!(v["names"][0]["verdict"], "not blocked");

    // Bad parameters name themselves.
    let t = Some(TOKEN);
    assert_error(
        &call("GET", h, "/api/v1/check", t, None).await,
        400,
        "name: missing",
    );
    assert_error(
        &call("GET", h, "/api/v1/check?name=", t, None).await,
        400,
        "name: ",
    );
    let long = format!("/api/v1/check?name={}.test", "a".repeat(70));
    assert_error(&call("GET", h, &long, t, None).await, 400, "name: ");
    assert_error(
        &call("GET", h, "/api/v1/check?name=a..b", t, None).await,
        400,
        "not a valid name",
    );
    assert_error(
        &call(
            "GET",
            h,
            "/api/v1/check?name=a.test&client=10.0.0.300",
            t,
            None,
        )
        .await,
        400,
        "client: \"10.0.0.300\" is not an IP",
    );
    assert_error(
        &call(
            "GET",
            h,
            "/api/v1/check?name=a.test&client=1.1.1.1&client=1.1.1.2",
            t,
            None,
        )
        .await,
        400,
        "client: given more than once",
    );
    assert_error(
        &call("GET", h, "/api/v1/check?name=a.test&nmae=b", t, None).await,
        400,
        "unknown parameter \"nmae\"",
    );
    let many = format!("/api/v1/check?{}", vec!["name=a.test"; 101].join("&"));
    assert_error(&call("GET", h, &many, t, None).await, 400, "at most 100");
    assert_error(
        &call("GET", h, "/api/v1/check?name=%ZZ", t, None).await,
        400,
        "",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_lists_and_reload() {
    let up = FakeUpstream::start(zone()).await;
    let s = server(up.addr, &format!("token = \"{TOKEN}\"\n")).await;
    let h = s.http_addr();
    s.query("ads.test.", RecordType::A).await;
    s.query("www.test.", RecordType::A).await;
    s.query("www.test.", RecordType::A).await;
    s.query("www.test.", RecordType::A).await;
    let v = get_json(h, "/api/v1/stats").await;
    assert_eq!(v["queries"]["total"], 4);
    assert_eq!(v["queries"]["by_action"]["blocked"], 1);
    assert_eq!(v["queries"]["by_action"]["cached"], 2);
    assert_eq!(v["blocked_share"], 0.25);
    assert_eq!(v["cache"]["hits"], 2);
    assert_eq!(v["cache"]["misses"], 1);
    assert!((v["cache"]["hit_ratio"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(v["upstreams"][0]["address"], up.addr.to_string());
    assert_eq!(v["upstreams"][0]["answered"], 1);

    let v = get_json(h, "/api/v1/lists").await;
    let lists = v["lists"].as_array().unwrap();
    let names: Vec<&str> = lists.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ads.txt", "social.txt"]);
    assert_eq!(lists[0]["entries"], 1);
    assert!(lists[0]["loaded"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["last_reload"], Value::Null);

    // Reload after an edit: the new rule blocks.
    std::fs::write(s.path("ads.txt"), "ads.test\nwww.test\n").unwrap();
    let (status, body, _) = call("POST", h, "/api/v1/reload", Some(TOKEN), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        first_answer(&s.query("www.test.", RecordType::A).await),
        "0.0.0.0"
    );
    let v = get_json(h, "/api/v1/lists").await;
    assert_eq!(v["lists"][0]["entries"], 2);
    assert_eq!(v["last_reload"]["ok"], true);

    // A reload that fails keeps the running lists and says why.
    std::fs::remove_file(s.path("social.txt")).unwrap();
    let got = call("POST", h, "/api/v1/reload", Some(TOKEN), None).await;
    assert_error(&got, 500, "social.txt");
    assert_eq!(
        first_answer(&s.query("www.test.", RecordType::A).await),
        "0.0.0.0"
    );
    let v = get_json(h, "/api/v1/lists").await;
    assert_eq!(v["last_reload"]["ok"], false);
    assert!(
        v["last_reload"]["error"]
            .as_str()
            .unwrap()
            .contains("social.txt")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pause_lets_blocked_names_through_until_it_ends() {
    let up = FakeUpstream::start(zone()).await;
    let s = server(up.addr, &format!("token = \"{TOKEN}\"\n")).await;
    let h = s.http_addr();
    assert_eq!(
        first_answer(&s.query("ads.test.", RecordType::A).await),
        "0.0.0.0"
    );
    let v = get_json(h, "/api/v1/status").await;
    assert_eq!(
        (v["paused"].clone(), v["blocking"].clone()),
        (false.into(), "enabled".into())
    );

    let (status, body, _) = call(
        "POST",
        h,
        "/api/v1/pause",
        Some(TOKEN),
        Some("{\"duration\": \"5m\"}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["paused"], true);
    assert_eq!(v["pause_remaining_secs"], 300);
    // Everyone's lists are off: the default policy's and the group's.
    assert_eq!(
        first_answer(&s.query("ads.test.", RecordType::A).await),
        "192.0.2.20"
    );
    let m = s
        .query_from("127.0.0.2", "social.test.", RecordType::A)
        .await;
    assert_eq!(first_answer(&m), "192.0.2.10");
    // The bypass signals are still answered.
    let m = s.query("use-application-dns.net.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let v = get_json(h, "/api/v1/check?name=ads.test").await;
    assert_eq!(v["paused"], true);
    let samples = parse_prometheus(&call("GET", h, "/metrics", None, None).await.1);
    assert_eq!(sample(&samples, "sinkhole_blocking_paused"), 1.0);

    // The pause ends by itself.
    s.clock.advance(Duration::from_secs(299));
    assert_eq!(
        first_answer(&s.query("ads.test.", RecordType::A).await),
        "192.0.2.20",
        "cached, still paused"
    );
    s.clock.advance(Duration::from_secs(2));
    assert_eq!(
        first_answer(&s.query("ads.test.", RecordType::A).await),
        "0.0.0.0"
    );
    assert_eq!(get_json(h, "/api/v1/status").await["paused"], false);

    // ?duration= works too; resume ends it early.
    let (status, _, _) = call("POST", h, "/api/v1/pause?duration=90", Some(TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        first_answer(&s.query("ads.test.", RecordType::A).await),
        "192.0.2.20"
    );
    let (status, body, _) = call("POST", h, "/api/v1/resume", Some(TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["paused"],
        false
    );
    assert_eq!(
        first_answer(&s.query("ads.test.", RecordType::A).await),
        "0.0.0.0"
    );

    // Bad durations name the parameter and change nothing.
    let t = Some(TOKEN);
    for (path, body) in [
        ("/api/v1/pause", None),
        ("/api/v1/pause?duration=0", None),
        ("/api/v1/pause?duration=8d", None),
        ("/api/v1/pause?duration=-5m", None),
        ("/api/v1/pause?duration=soon", None),
        ("/api/v1/pause?duration=99999999999999999999", None),
        ("/api/v1/pause", Some("{\"duration\": true}")),
        ("/api/v1/pause", Some("{\"for\": \"5m\"}")),
        ("/api/v1/pause?duration=5m", Some("{\"duration\": \"5m\"}")),
    ] {
        assert_error(&call("POST", h, path, t, body).await, 400, "duration");
    }
    assert_error(
        &call("POST", h, "/api/v1/pause", t, Some("5m")).await,
        400,
        "body: not JSON",
    );
    assert_eq!(get_json(h, "/api/v1/status").await["paused"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_requests_get_4xx_and_dns_keeps_answering() {
    let up = FakeUpstream::start(zone()).await;
    let s = server(up.addr, &format!("token = \"{TOKEN}\"\n")).await;
    let h = s.http_addr();
    // A 10 KB Host header, a 20 KB query string: the head is too large.
    let big_host = format!(
        "GET /api/v1/status HTTP/1.1\r\nHost: {}\r\n\r\n",
        "h".repeat(10_240)
    );
    let got = raw(h, big_host.as_bytes()).await;
    assert!(got.starts_with("HTTP/1.1 431"), "{got:.80}");
    let big_query = format!(
        "GET /api/v1/check?name={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(20_000)
    );
    let got = raw(h, big_query.as_bytes()).await;
    assert!(got.starts_with("HTTP/1.1 4"), "{got:.80}");
    // A 64 KB body.
    let body = format!("{{\"duration\": \"{}\"}}", "5".repeat(64 << 10));
    let req = format!(
        "POST /api/v1/pause HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let got = raw(h, req.as_bytes()).await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got:.80}");
    assert!(got.contains("{\"error\":\"body: "), "{got}");
    // Garbage instead of HTTP.
    let got = raw(h, b"\x16\x03\x01\x00\xa5garbage\r\n\r\n").await;
    assert!(
        got.is_empty() || got.starts_with("HTTP/1.1 400"),
        "{got:.80}"
    );

    // Idle connections from one address: past its share they are closed at once, and the
    // DNS listeners and other clients are served meanwhile.
    let mut idle = Vec::new();
    for _ in 0..sinkhole::http::MAX_CONNECTIONS_PER_CLIENT {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.3:0".parse().unwrap()).unwrap();
        let mut c = sock.connect(h).await.unwrap();
        c.write_all(b"GET /api/v1/status HTTP/1.1\r\n")
            .await
            .unwrap();
        idle.push(c);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.3:0".parse().unwrap()).unwrap();
    let mut extra = sock.connect(h).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf))
        .await
        .expect("the connection over the limit is closed at once");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert_eq!(
        first_answer(&s.query("ads.test.", RecordType::A).await),
        "0.0.0.0"
    );
    assert_eq!(
        first_answer(&s.query_tcp("www.test.", RecordType::A).await),
        "192.0.2.30"
    );
    assert_eq!(get_json(h, "/api/v1/status").await["paused"], false);
    drop(idle);
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_pause_resume_and_status_talk_to_a_running_server() {
    let up = FakeUpstream::start(zone()).await;
    let dir = tempfile::tempdir().unwrap();
    let (dns, web) = (free_port(), free_port());
    std::fs::write(dir.path().join("ads.txt"), "ads.test\n").unwrap();
    std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    let config = dir.path().join("sinkhole.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{dns}\"]\n[upstream]\nservers = [\"{}\"]\n\
             [blocking]\nlists = [\"ads.txt\"]\n[http]\nlisten = [\"0.0.0.0:{web}\"]\ntoken_file = \"token\"\n",
            up.addr
        ),
    )
    .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{dns}").parse().unwrap();
    let (child, first) = spawn_serve(&config, addr, "ads.test.").await;
    assert_eq!(first_answer(&first), "0.0.0.0");
    let run = |args: &[&str]| {
        let out = bin()
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("blocking: enabled\n"), "{out}");
    let (code, out, err) = run(&["pause", "5m"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("blocking: paused, 5m 0s left (until "),
        "{out}"
    );
    let q = crate::harness::make_query("ads.test.", RecordType::A, None);
    let m = crate::harness::udp_exchange(addr, &q).await.unwrap();
    assert_eq!(first_answer(&m), "192.0.2.20");
    let (_, out, _) = run(&["status"]);
    assert!(out.starts_with("blocking: paused, "), "{out}");
    assert!(out.contains(" left (until "), "{out}");
    let (code, out, _) = run(&["resume"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("blocking: enabled\n"), "{out}");
    let m = crate::harness::udp_exchange(addr, &q).await.unwrap();
    assert_eq!(first_answer(&m), "0.0.0.0");
    let (code, _, err) = run(&["pause", "forever"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("\"forever\": write a duration"), "{err}");
    stop_serve(child);
    // The server is gone: a runtime error naming the address.
    let (code, _, err) = run(&["status"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot reach the server at http://127.0.0.1:{web}"
        )),
        "{err}"
    );
}
