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
