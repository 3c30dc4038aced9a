//! `[http]` list edits: `POST`/`DELETE /api/v1/lists/block|allow` over real HTTP on
//! loopback; the next DNS query sees the edit; only the config's local list files can be
//! written (no path of the client's own); the token; the metrics of blocks by list and of
//! the last reload.

use std::net::SocketAddr;

use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, first_answer};
use crate::http::{parse_prometheus, sample};

const TOKEN: &str = "test-token-0123456789";

const LISTS: &[(&str, &str)] = &[
    ("ads.txt", "# ads\nads.test\n"),
    ("social.txt", "social.test\n"),
    ("allow.txt", "# allowed\n"),
    ("outside.txt", "# not in the config\n"),
];

/// One HTTP exchange with any method: (status, JSON body).
async fn call(
    method: &'static str,
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (u16, Value) {
    let url = format!("http://{addr}{path}");
    let token = token.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let agent = crate::harness::http_agent();
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("Content-Type", "application/json");
        }
        let req = req.body(body.unwrap_or_default()).unwrap();
        let mut r = agent.run(req).unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    })
    .await
    .unwrap()
}

async fn edit(s: &TestServer, method: &'static str, kind: &str, body: Value) -> Value {
    let path = format!("/api/v1/lists/{kind}");
    let (status, v) = call(
        method,
        s.http_addr(),
        &path,
        Some(TOKEN),
        Some(body.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{method} {path}: {v}");
    v
}

async fn www(s: &TestServer) -> String {
    first_answer(&s.query("www.test.", RecordType::A).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn names_blocked_and_allowed_over_the_api_decide_the_next_query() {
    let up = FakeUpstream::start(vec![
        a("ads.test.", "192.0.2.20", 300),
        a("www.test.", "192.0.2.30", 300),
        a("social.test.", "192.0.2.10", 300),
    ])
    .await;
    let s = real_server(up.addr).await;
    assert_eq!(www(&s).await, "192.0.2.30", "cached from now on");

    // Block: the default target is the first local file of blocking.lists.
    let v = edit(
        &s,
        "POST",
        "block",
        json!({"names": ["WWW.test."], "comment": "from the api"}),
    )
    .await;
    assert_eq!(v["list"], "ads.txt");
    assert_eq!(v["added"], json!(["www.test"]));
    assert_eq!(v["reloaded"], true);
    assert_eq!(www(&s).await, "0.0.0.0", "blocked at once, cache or not");
    let text = std::fs::read_to_string(s.path("ads.txt")).unwrap();
    assert_eq!(text, "# ads\nads.test\nwww.test  # from the api\n");
    // Again: already there, nothing written, no reload.
    let v = edit(&s, "POST", "block", json!({"names": ["www.test"]})).await;
    assert_eq!(v["added"], json!([]));
    assert_eq!(v["already_present"], json!(["www.test"]));
    assert_eq!(v["reloaded"], false);

    // Allow wins over the block at equal specificity; removing the allow blocks again.
    let v = edit(&s, "POST", "allow", json!({"names": ["www.test"]})).await;
    assert_eq!(v["list"], "allow.txt");
    assert_eq!(www(&s).await, "192.0.2.30");
    let v = edit(&s, "DELETE", "allow", json!({"names": ["www.test"]})).await;
    assert_eq!(v["removed"], json!(["www.test"]));
    assert_eq!(www(&s).await, "0.0.0.0");

    // Unblock, naming the list; a name that is not there is reported, not an error.
    let v = edit(
        &s,
        "DELETE",
        "block",
        json!({"names": ["www.test", "absent.test"], "list": "ads.txt"}),
    )
    .await;
    assert_eq!(v["removed"], json!(["www.test"]));
    assert_eq!(v["not_found"], json!(["absent.test"]));
    assert_eq!(www(&s).await, "192.0.2.30");
    let text = std::fs::read_to_string(s.path("ads.txt")).unwrap();
    assert_eq!(text, "# ads\nads.test\n", "the file as it was");

    // A group's list: only its clients are blocked.
    let v = edit(
        &s,
        "POST",
        "block",
        json!({"names": ["www.test"], "list": "social.txt"}),
    )
    .await;
    assert_eq!(v["list"], "social.txt");
    let kid = s.query_from("127.0.0.2", "www.test.", RecordType::A).await;
    assert_eq!(first_answer(&kid), "0.0.0.0");
    assert_eq!(www(&s).await, "192.0.2.30");

    // Blocks by list, and the last reload, in /metrics.
    for _ in 0..2 {
        assert_eq!(
            first_answer(&s.query("ads.test.", RecordType::A).await),
            "0.0.0.0"
        );
    }
    let (status, text) = call("GET", s.http_addr(), "/metrics", None, None).await;
    assert_eq!(status, 200);
    let samples = parse_prometheus(text.as_str().unwrap());
    // ads.txt: 2 for www.test while blocked, 2 for ads.test; social.txt: the kid's query.
    assert_eq!(
        sample(&samples, "sinkhole_blocked_by_list_total{list=\"ads.txt\"}"),
        4.0
    );
    assert_eq!(
        sample(
            &samples,
            "sinkhole_blocked_by_list_total{list=\"social.txt\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &samples,
            "sinkhole_blocked_by_list_total{list=\"allow.txt\"}"
        ),
        0.0
    );
    assert!(sample(&samples, "sinkhole_last_reload_timestamp_seconds") > 1.7e9);
    assert_eq!(sample(&samples, "sinkhole_last_reload_success"), 1.0);
}

/// Blocks ads.txt, allows allow.txt; group `kids` (127.0.0.2) adds social.txt; `[http]`
/// with a token.
async fn real_server(up: SocketAddr) -> TestServer {
    let toml = format!(
        "[upstream]\nservers = [\"{up}\"]\n\
         [blocking]\nlists = [\"ads.txt\"]\nallow = [\"allow.txt\"]\n\
         [[groups]]\nname = \"kids\"\nclients = [\"127.0.0.2\"]\nlists = [\"social.txt\"]\n\
         [http]\nlisten = [\"127.0.0.1:0\"]\ntoken = \"{TOKEN}\"\n"
    );
    TestServer::start(&toml, LISTS).await
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_configs_local_lists_can_be_edited_and_bad_bodies_name_the_field() {
    let up = FakeUpstream::start(vec![a("www.test.", "192.0.2.30", 300)]).await;
    let s = real_server(up.addr).await;
    let h = s.http_addr();
    let before: Vec<(String, Vec<u8>)> = LISTS
        .iter()
        .map(|(f, _)| (f.to_string(), std::fs::read(s.path(f)).unwrap()))
        .collect();
    let outside = s.path("outside.txt");
    let cases: Vec<(&str, &str, String, &str)> = vec![
        // Paths of the client's own, lists of the other kind, files the config does not name.
        (
            "POST",
            "block",
            json!({"names": ["x.test"], "list": "../ads.txt"}).to_string(),
            "list: ",
        ),
        (
            "POST",
            "block",
            json!({"names": ["x.test"], "list": "./ads.txt"}).to_string(),
            "list: ",
        ),
        (
            "POST",
            "block",
            json!({"names": ["x.test"], "list": "/etc/passwd"}).to_string(),
            "list: ",
        ),
        (
            "POST",
            "block",
            json!({"names": ["x.test"], "list": outside.to_str().unwrap()}).to_string(),
            "list: ",
        ),
        (
            "POST",
            "block",
            json!({"names": ["x.test"], "list": "outside.txt"}).to_string(),
            "list: ",
        ),
        (
            "POST",
            "block",
            json!({"names": ["x.test"], "list": "allow.txt"}).to_string(),
            "list: ",
        ),
        (
            "DELETE",
            "allow",
            json!({"names": ["ads.test"], "list": "ads.txt"}).to_string(),
            "list: ",
        ),
        // Names.
        ("POST", "block", json!({"names": []}).to_string(), "names: "),
        (
            "POST",
            "block",
            json!({"names": vec!["a.test"; 101]}).to_string(),
            "names: ",
        ),
        (
            "POST",
            "block",
            json!({"names": ["ok.test", "bad..test"]}).to_string(),
            "names: ",
        ),
        (
            "POST",
            "allow",
            json!({"names": ["co.uk"]}).to_string(),
            "names: ",
        ),
        (
            "DELETE",
            "block",
            json!({"names": ["a..test"]}).to_string(),
            "names: ",
        ),
        (
            "POST",
            "block",
            json!({"names": "x.test"}).to_string(),
            "body: ",
        ),
        // Comments: one line, and only when adding.
        (
            "POST",
            "block",
            json!({"names": ["x.test"], "comment": "a\nb.test"}).to_string(),
            "comment: ",
        ),
        (
            "DELETE",
            "block",
            json!({"names": ["ads.test"], "comment": "c"}).to_string(),
            "comment: ",
        ),
        // Not JSON, unknown fields.
        ("POST", "block", "x.test".to_string(), "body: "),
        (
            "POST",
            "block",
            json!({"names": ["x.test"], "path": "/etc/passwd"}).to_string(),
            "body: ",
        ),
    ];
    for (method, kind, body, says) in cases {
        let (status, v) = call(
            method,
            h,
            &format!("/api/v1/lists/{kind}"),
            Some(TOKEN),
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{method} {kind} {body}: {v}");
        let msg = v["error"].as_str().unwrap();
        assert!(
            msg.starts_with(says),
            "{body}: {msg:?} should start with {says:?}"
        );
    }
    // A query string is not taken either.
    let (status, v) = call(
        "POST",
        h,
        "/api/v1/lists/block?list=../x",
        Some(TOKEN),
        Some(json!({"names": ["x.test"]}).to_string()),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("unknown parameter"),
        "{v}"
    );
    // Nothing was written anywhere.
    for (f, bytes) in &before {
        assert_eq!(&std::fs::read(s.path(f)).unwrap(), bytes, "{f}");
    }
    let extra: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(extra.is_empty(), "{extra:?}");
    // The error names the lists that may be edited.
    let (_, v) = call(
        "POST",
        h,
        "/api/v1/lists/block",
        Some(TOKEN),
        Some(json!({"names": ["x.test"], "list": "nope.txt"}).to_string()),
    )
    .await;
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("\"ads.txt\"") && msg.contains("\"social.txt\""),
        "{msg}"
    );
    assert!(!msg.contains("allow.txt"), "{msg}");
    assert_eq!(www(&s).await, "192.0.2.30");
}

#[tokio::test(flavor = "multi_thread")]
async fn edits_need_the_token_even_with_public_read() {
    let up = FakeUpstream::start(vec![a("www.test.", "192.0.2.30", 300)]).await;
    let body = || Some(json!({"names": ["www.test"]}).to_string());
    let toml = |extra: &str| {
        format!(
            "[upstream]\nservers = [\"{}\"]\n[blocking]\nlists = [\"ads.txt\"]\nallow = [\"allow.txt\"]\n\
             [http]\nlisten = [\"127.0.0.1:0\"]\n{extra}",
            up.addr
        )
    };
    let s = TestServer::start(
        &toml(&format!("token = \"{TOKEN}\"\npublic_read = true\n")),
        LISTS,
    )
    .await;
    let h = s.http_addr();
    for (method, kind) in [
        ("POST", "block"),
        ("DELETE", "block"),
        ("POST", "allow"),
        ("DELETE", "allow"),
    ] {
        let path = format!("/api/v1/lists/{kind}");
        let (status, v) = call(method, h, &path, None, body()).await;
        assert_eq!(status, 401, "{method} {path}: {v}");
        let (status, _) = call(method, h, &path, Some("test-token-0123456788"), body()).await;
        assert_eq!(status, 401);
    }
    assert_eq!(www(&s).await, "192.0.2.30", "nothing was blocked");
    assert_eq!(
        std::fs::read_to_string(s.path("ads.txt")).unwrap(),
        "# ads\nads.test\n"
    );
    // Without a configured token, edits are disabled.
    let s = TestServer::start(&toml(""), LISTS).await;
    let (status, v) = call("POST", s.http_addr(), "/api/v1/lists/block", None, body()).await;
    assert_eq!(status, 403, "{v}");
}
