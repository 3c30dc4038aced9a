//! Reload without losing a query: the list file changes under a running query loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, first_answer, make_query, udp_exchange};

#[tokio::test(flavor = "multi_thread")]
async fn file_change_reloads_while_queries_keep_being_answered() {
    let up = FakeUpstream::start(vec![
        a("www.test.", "192.0.2.1", 300),
        a("new.test.", "192.0.2.2", 300),
    ])
    .await;
    let s = TestServer::start(
        &format!(
            "[upstream]\nservers = [\"{}\"]\n[blocking]\nlists = [\"b.txt\"]\n",
            up.addr
        ),
        &[("b.txt", "old.test\n")],
    )
    .await;
    assert_eq!(
        first_answer(&s.query("new.test.", RecordType::A).await),
        "192.0.2.2"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut loops = Vec::new();
    for name in ["www.test.", "x.old.test."] {
        let (stop, ok, failed, addr) = (stop.clone(), ok.clone(), failed.clone(), s.addr);
        loops.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let want = if name == "www.test." {
                    "192.0.2.1"
                } else {
                    "0.0.0.0"
                };
                match udp_exchange(addr, &make_query(name, RecordType::A, None)).await {
                    Some(m) if first_answer(&m) == want => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Atomic replace, as editors and list updaters do.
    let tmp = s.path("b.txt.tmp");
    std::fs::write(&tmp, "old.test\nnew.test\n").unwrap();
    std::fs::rename(&tmp, s.path("b.txt")).unwrap();
    let t = Instant::now();
    loop {
        if first_answer(&s.query("new.test.", RecordType::A).await) == "0.0.0.0" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "reload not seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A broken update (unreadable: a directory now) keeps the last good set.
    std::fs::remove_file(s.path("b.txt")).unwrap();
    std::fs::create_dir(s.path("b.txt")).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        first_answer(&s.query("new.test.", RecordType::A).await),
        "0.0.0.0"
    );
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no failed query during reloads"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 50,
        "{}",
        ok.load(Ordering::Relaxed)
    );
}

/// Writes the test server's config file anew (as the harness wrote it: loopback, port 0).
fn rewrite_config(s: &TestServer, body: &str) {
    let toml = format!("[server]\nlisten = [\"127.0.0.1:0\"]\nudp_threads = 2\n{body}");
    std::fs::write(s.path("sinkhole.toml"), toml).unwrap();
}

// See: #11. A reload applies [upstream] to the queries that start after the swap; queries
// in flight finish on the old set; none fails.
#[tokio::test(flavor = "multi_thread")]
async fn r11_reload_switches_upstreams_under_load_without_a_failed_query() {
    let old = FakeUpstream::start(vec![a("www.test.", "192.0.2.1", 300)]).await;
    let new = FakeUpstream::start(vec![a("www.test.", "192.0.2.2", 300)]).await;
    // No cache: every query goes upstream.
    let body = |up: std::net::SocketAddr| {
        format!("[upstream]\nservers = [\"{up}\"]\n[cache]\nmax_entries = 0\n")
    };
    let s = TestServer::start(&body(old.addr), &[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(std::sync::Mutex::new((0usize, 0usize, 0usize)));
    let mut loops = Vec::new();
    for _ in 0..4 {
        let (stop, answers, addr) = (stop.clone(), answers.clone(), s.addr);
        loops.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let m = udp_exchange(addr, &make_query("www.test.", RecordType::A, None)).await;
                let mut a = answers.lock().unwrap();
                match m.as_ref().map(first_answer).as_deref() {
                    Some("192.0.2.1") => a.0 += 1,
                    Some("192.0.2.2") => a.1 += 1,
                    _ => a.2 += 1,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    rewrite_config(&s, &body(new.addr));
    s.service().reloader().reload(true).await.unwrap();
    // Queries that started before the swap may still reach the old server; they take a
    // millisecond or so on loopback.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let old_calls = old.calls();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.await.unwrap();
    }
    let (from_old, from_new, failed) = *answers.lock().unwrap();
    assert_eq!(
        failed, 0,
        "no query failed ({from_old} old, {from_new} new)"
    );
    assert!(
        from_old > 20 && from_new > 20,
        "{from_old} old, {from_new} new"
    );
    assert_eq!(
        old.calls(),
        old_calls,
        "no query that started after the swap went to the old server"
    );
    assert_eq!(
        first_answer(&s.query("www.test.", RecordType::A).await),
        "192.0.2.2"
    );
}

// See: #11. A reload that fails in one part (the new query-log path cannot be used) applies
// no part: the new upstream and list are not taken either.
#[tokio::test(flavor = "multi_thread")]
async fn r11_a_reload_that_fails_in_one_part_applies_none() {
    let old = FakeUpstream::start(vec![a("www.test.", "192.0.2.1", 300)]).await;
    let new = FakeUpstream::start(vec![a("www.test.", "192.0.2.2", 300)]).await;
    let body = |up: std::net::SocketAddr, log: &str, list: &str| {
        format!(
            "[upstream]\nservers = [\"{up}\"]\n[cache]\nmax_entries = 0\n\
             [blocking]\nlists = [\"{list}\"]\n[log]\npath = \"{log}\"\n"
        )
    };
    let s = TestServer::start(
        &body(old.addr, "{dir}/q.jsonl", "a.txt"),
        &[("a.txt", "a.test\n"), ("b.txt", "b.test\n"), ("file", "")],
    )
    .await;
    let dir = s.dir.path().display().to_string();
    // A log path under a regular file cannot be opened.
    rewrite_config(&s, &body(new.addr, &format!("{dir}/file/q.jsonl"), "b.txt"));
    let e = s.service().reloader().reload(true).await.unwrap_err();
    assert!(format!("{e:#}").contains("file/q.jsonl"), "{e:#}");
    assert_eq!(
        first_answer(&s.query("www.test.", RecordType::A).await),
        "192.0.2.1",
        "still the old upstream"
    );
    assert_eq!(
        first_answer(&s.query("a.test.", RecordType::A).await),
        "0.0.0.0"
    );
    assert_ne!(
        first_answer(&s.query("b.test.", RecordType::A).await),
        "0.0.0.0"
    );
    // The same change with a usable path applies every part.
    rewrite_config(&s, &body(new.addr, &format!("{dir}/q2.jsonl"), "b.txt"));
    s.service().reloader().reload(true).await.unwrap();
    assert_eq!(
        first_answer(&s.query("www.test.", RecordType::A).await),
        "192.0.2.2"
    );
    assert_eq!(
        first_answer(&s.query("b.test.", RecordType::A).await),
        "0.0.0.0"
    );
    assert_ne!(
        first_answer(&s.query("a.test.", RecordType::A).await),
        "0.0.0.0"
    );
}

// See: #11. [cache] bounds apply on reload; what no longer fits is evicted.
#[tokio::test(flavor = "multi_thread")]
async fn r11_reload_applies_cache_bounds() {
    let names: Vec<_> = (0..200)
        .map(|i| a(&format!("n{i}.test."), "192.0.2.9", 300))
        .collect();
    let up = FakeUpstream::start(names).await;
    let body = |n: usize| {
        format!(
            "[upstream]\nservers = [\"{}\"]\n[cache]\nmax_entries = {n}\n",
            up.addr
        )
    };
    let s = TestServer::start(&body(1000), &[]).await;
    for i in 0..200 {
        s.query(&format!("n{i}.test."), RecordType::A).await;
    }
    assert!(s.service().pipeline().cache().len() > 100);
    rewrite_config(&s, &body(16));
    s.service().reloader().reload(true).await.unwrap();
    assert!(s.service().pipeline().cache().len() <= 16);
}
