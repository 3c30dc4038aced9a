//! `[sync] postgres = true`: two real instances on one real PostgreSQL (`pg.rs`). A name
//! blocked on one (through the API, through `sinkhole lists add`) is blocked by the other
//! within 2 s, and unblocked likewise; a pause on one pauses both, a resume on one resumes
//! both; an instance started later catches up, one started while the database is down
//! serves its last copy; with the database stopped, DNS is answered and edits fail with a
//! clear error, and once it is back the listener reconnects and an edit made on the other
//! instance arrives.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, bin, first_answer};
use crate::pg::{PgCluster, eventually};

const TOKEN: &str = "test-token-0123456789";

/// An instance named `name` on the database `url`, its shared entries' copy in `cache`.
async fn instance(name: &str, up: SocketAddr, url: &str, cache: &Path) -> TestServer {
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_threads = 1\nname = \"{name}.lan\"\n\
         [upstream]\nservers = [\"{up}\"]\n\
         [blocking]\nlists = [\"ads.txt\"]\nallow = [\"allow.txt\"]\ncache_dir = \"{}\"\n\
         [http]\nlisten = [\"127.0.0.1:0\"]\ntoken = \"{TOKEN}\"\n\
         [log.postgres]\nurl = \"{url}\"\n\
         [sync]\npostgres = true\n",
        cache.display()
    );
    TestServer::start(&toml, &[("ads.txt", "ads.test\n"), ("allow.txt", "")]).await
}

/// A cluster, a migrated database, and an upstream that knows the test's names.
async fn setup(db: &str) -> (PgCluster, String, FakeUpstream) {
    let pg = PgCluster::start();
    let url = pg.database(db).await;
    let cfg = sinkhole::config::postgres::parse_url(&url).unwrap();
    let mut client = sinkhole::postgres::connect(&cfg).await.unwrap();
    sinkhole::postgres::migrate::migrate(&mut client)
        .await
        .unwrap();
    let up = FakeUpstream::start(vec![
        a("www.test.", "192.0.2.30", 1),
        a("ads.test.", "192.0.2.20", 1),
        a("cli.test.", "192.0.2.40", 1),
        a("later.test.", "192.0.2.50", 1),
    ])
    .await;
    (pg, url, up)
}

/// The A answer for `name`.
async fn answer(s: &TestServer, name: &str) -> String {
    first_answer(&s.query(name, RecordType::A).await)
}

/// Waits (at most `limit`) until `s` answers `name` with `want`; returns how long it took.
async fn until_answer(s: &TestServer, name: &str, want: &str, limit: Duration) -> Duration {
    let t = Instant::now();
    let ok = eventually(limit, || async { answer(s, name).await == want }).await;
    assert!(ok, "{name} never answered {want} within {limit:?}");
    t.elapsed()
}

/// One API call: (status, JSON).
async fn call(
    s: &TestServer,
    method: &'static str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("http://{}{path}", s.http_addr());
    tokio::task::spawn_blocking(move || {
        let agent = crate::harness::http_agent();
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Authorization", format!("Bearer {TOKEN}"))
            .header("Content-Type", "application/json")
            .body(body.map(|b| b.to_string()).unwrap_or_default())
            .unwrap();
        let mut r = agent.run(req).unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    })
    .await
    .unwrap()
}

/// `sinkhole ARGS`: (exit code, stdout, stderr).
async fn cli(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = bin().args(&args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn arg(p: std::path::PathBuf) -> String {
    p.display().to_string()
}

const TWO_S: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_added_or_removed_on_one_instance_applies_on_the_other_within_2_s() {
    let (_pg, url, up) = setup("sync_entries").await;
    let caches = tempfile::tempdir().unwrap();
    let one = instance("one", up.addr, &url, &caches.path().join("one")).await;
    let two = instance("two", up.addr, &url, &caches.path().join("two")).await;
    assert_eq!(answer(&two, "www.test.").await, "192.0.2.30");

    // Through the API of one: live there when the call returns, on two within 2 s.
    let (status, v) = call(
        &one,
        "POST",
        "/api/v1/lists/block",
        Some(json!({"names": ["WWW.test."], "comment": "shared"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["list"], "postgres:shared-block");
    assert_eq!(v["shared"], true);
    assert_eq!(v["added"], json!(["www.test"]));
    assert_eq!(answer(&one, "www.test.").await, "0.0.0.0");
    let took = until_answer(&two, "www.test.", "0.0.0.0", Duration::from_secs(5)).await;
    assert!(took < TWO_S, "took {took:?}");
    // The file is not written; the copy is, and `lists check` names where the rule is.
    assert_eq!(
        std::fs::read_to_string(one.path("ads.txt")).unwrap(),
        "ads.test\n"
    );
    let (code, out, err) = cli(vec![
        "lists".into(),
        "check".into(),
        "--config".into(),
        arg(two.path("sinkhole.toml")),
        "www.test".into(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("BLOCKED") || out.contains("blocked"), "{out}");
    assert!(out.contains("postgres:shared-block"), "{out}");

    // Through `sinkhole lists add --to FILE --config` of two: the database, not the file.
    let (code, out, err) = cli(vec![
        "lists".into(),
        "add".into(),
        "cli.test".into(),
        "--to".into(),
        arg(two.path("ads.txt")),
        "--config".into(),
        arg(two.path("sinkhole.toml")),
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("postgres:shared-block: 1 added"), "{out}");
    assert_eq!(
        std::fs::read_to_string(two.path("ads.txt")).unwrap(),
        "ads.test\n"
    );
    let t = Instant::now();
    until_answer(&one, "cli.test.", "0.0.0.0", Duration::from_secs(5)).await;
    until_answer(&two, "cli.test.", "0.0.0.0", Duration::from_secs(5)).await;
    assert!(t.elapsed() < TWO_S, "took {:?}", t.elapsed());

    // An allow shared through two overrides a file's block on one.
    let (status, v) = call(
        &two,
        "POST",
        "/api/v1/lists/allow",
        Some(json!({"names": ["ads.test"]})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["list"], "postgres:shared-allow");
    let took = until_answer(&one, "ads.test.", "192.0.2.20", Duration::from_secs(5)).await;
    assert!(took < TWO_S, "took {took:?}");

    // Removed through the API of two and the CLI of one: unblocked on both within 2 s.
    let (status, v) = call(
        &two,
        "DELETE",
        "/api/v1/lists/block",
        Some(json!({"names": ["www.test"]})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["removed"], json!(["www.test"]));
    let took = until_answer(&one, "www.test.", "192.0.2.30", Duration::from_secs(5)).await;
    assert!(took < TWO_S, "took {took:?}");
    let (code, out, err) = cli(vec![
        "lists".into(),
        "remove".into(),
        "cli.test".into(),
        "--from".into(),
        arg(one.path("ads.txt")),
        "--config".into(),
        arg(one.path("sinkhole.toml")),
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let t = Instant::now();
    until_answer(&two, "cli.test.", "192.0.2.40", Duration::from_secs(5)).await;
    until_answer(&one, "cli.test.", "192.0.2.40", Duration::from_secs(5)).await;
    assert!(t.elapsed() < TWO_S, "took {:?}", t.elapsed());
    // The file's own rule still applies where no shared allow covers it.
    let (status, _) = call(
        &one,
        "DELETE",
        "/api/v1/lists/allow",
        Some(json!({"names": ["ads.test"]})),
    )
    .await;
    assert_eq!(status, 200);
    until_answer(&two, "ads.test.", "0.0.0.0", TWO_S).await;
    // A removal naming a list file takes the name out of that file too: files are not
    // shared, so only this instance stops blocking it.
    let (status, v) = call(
        &one,
        "DELETE",
        "/api/v1/lists/block",
        Some(json!({"names": ["ads.test"], "list": "ads.txt"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["removed"], json!(["ads.test"]), "{v}");
    assert_eq!(std::fs::read_to_string(one.path("ads.txt")).unwrap(), "");
    assert_eq!(answer(&one, "ads.test.").await, "192.0.2.20");
    assert_eq!(answer(&two, "ads.test.").await, "0.0.0.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pause_on_one_instance_pauses_both_and_a_resume_on_one_resumes_both() {
    let (_pg, url, up) = setup("sync_pause").await;
    let caches = tempfile::tempdir().unwrap();
    let one = instance("one", up.addr, &url, &caches.path().join("one")).await;
    let two = instance("two", up.addr, &url, &caches.path().join("two")).await;
    assert_eq!(answer(&two, "ads.test.").await, "0.0.0.0");

    let (status, v) = call(&one, "POST", "/api/v1/pause?duration=5m", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["paused"], true);
    assert_eq!(answer(&one, "ads.test.").await, "192.0.2.20");
    let took = until_answer(&two, "ads.test.", "192.0.2.20", Duration::from_secs(5)).await;
    assert!(took < TWO_S, "took {took:?}");
    // Two applies what is left of the same pause.
    let (_, st) = call(&two, "GET", "/api/v1/status", None).await;
    assert_eq!(st["paused"], true, "{st}");
    let left = st["pause_remaining_secs"].as_u64().unwrap();
    assert!((295..=300).contains(&left), "{st}");

    let (status, v) = call(&two, "POST", "/api/v1/resume", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["paused"], false);
    assert_eq!(answer(&two, "ads.test.").await, "0.0.0.0");
    let took = until_answer(&one, "ads.test.", "0.0.0.0", Duration::from_secs(5)).await;
    assert!(took < TWO_S, "took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_started_later_catches_up_and_one_started_with_the_database_down_serves_its_last_copy()
 {
    let (pg, url, up) = setup("sync_later").await;
    let caches = tempfile::tempdir().unwrap();
    let one = instance("one", up.addr, &url, &caches.path().join("one")).await;
    let (status, v) = call(
        &one,
        "POST",
        "/api/v1/lists/block",
        Some(json!({"names": ["later.test"]})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, _) = call(&one, "POST", "/api/v1/pause?duration=1h", None).await;
    assert_eq!(status, 200);

    // Started after the edits: caught up within 2 s of its start.
    let two_cache = caches.path().join("two");
    let two = instance("two", up.addr, &url, &two_cache).await;
    let (status, _) = call(&one, "POST", "/api/v1/resume", None).await;
    assert_eq!(status, 200);
    let took = until_answer(&two, "later.test.", "0.0.0.0", Duration::from_secs(5)).await;
    assert!(took < TWO_S, "took {took:?}");
    drop(two);

    // The database down: a new instance on the same cache folder serves the last copy.
    pg.stop();
    let three = instance("three", up.addr, &url, &two_cache).await;
    assert_eq!(answer(&three, "later.test.").await, "0.0.0.0");
    assert_eq!(answer(&three, "www.test.").await, "192.0.2.30");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_database_stopped_dns_answers_edits_fail_and_the_listener_catches_up_after() {
    let (pg, url, up) = setup("sync_outage").await;
    let caches = tempfile::tempdir().unwrap();
    let one = instance("one", up.addr, &url, &caches.path().join("one")).await;
    let two = instance("two", up.addr, &url, &caches.path().join("two")).await;
    let (status, _) = call(
        &one,
        "POST",
        "/api/v1/lists/block",
        Some(json!({"names": ["www.test"]})),
    )
    .await;
    assert_eq!(status, 200);
    until_answer(&two, "www.test.", "0.0.0.0", TWO_S).await;

    pg.stop();
    // DNS is answered as before, from the last state.
    for _ in 0..20 {
        assert_eq!(answer(&two, "www.test.").await, "0.0.0.0");
        assert_eq!(answer(&two, "later.test.").await, "192.0.2.50");
    }
    // Edits and pause fail with what is wrong; nothing changes.
    let (status, v) = call(
        &two,
        "POST",
        "/api/v1/lists/block",
        Some(json!({"names": ["later.test"]})),
    )
    .await;
    assert_eq!(status, 503, "{v}");
    let msg = v["error"].as_str().unwrap_or_default().to_string() + &v.to_string();
    assert!(
        msg.contains("cannot connect") && msg.contains("nothing added"),
        "{v}"
    );
    let (status, v) = call(&two, "POST", "/api/v1/pause?duration=5m", None).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(answer(&two, "ads.test.").await, "0.0.0.0", "not paused");
    let (code, _, err) = cli(vec![
        "lists".into(),
        "add".into(),
        "later.test".into(),
        "--to".into(),
        arg(one.path("ads.txt")),
        "--config".into(),
        arg(one.path("sinkhole.toml")),
    ])
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot connect") && err.contains("nothing added"),
        "{err}"
    );
    assert_eq!(answer(&one, "later.test.").await, "192.0.2.50");

    // Back: an edit on one (after the database returned) reaches two, whose listener
    // reconnects by itself (backoff of at most 8 s).
    pg.resume();
    let (status, v) = call(
        &one,
        "DELETE",
        "/api/v1/lists/block",
        Some(json!({"names": ["www.test"]})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = call(
        &one,
        "POST",
        "/api/v1/lists/block",
        Some(json!({"names": ["later.test"]})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    until_answer(&two, "later.test.", "0.0.0.0", Duration::from_secs(20)).await;
    until_answer(&two, "www.test.", "192.0.2.30", TWO_S).await;
    // Connected again: the next edit takes the 2 s path.
    let (status, _) = call(
        &one,
        "DELETE",
        "/api/v1/lists/block",
        Some(json!({"names": ["later.test"]})),
    )
    .await;
    assert_eq!(status, 200);
    let took = until_answer(&two, "later.test.", "192.0.2.50", Duration::from_secs(5)).await;
    assert!(took < TWO_S, "took {took:?}");
}
