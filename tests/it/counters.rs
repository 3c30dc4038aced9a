//! Service-wide counters: what `Service::counters_text` says after real queries over UDP
//! and TCP, and what `sinkhole serve` prints on SIGUSR1 and at exit.

use std::io::{BufRead as _, BufReader};
use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, bin, first_answer, free_port, make_query, signal, udp_exchange};

/// The value of the line `name` in a counters text (the whole name with labels).
fn value(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_string))
}

// See: #11
#[tokio::test(flavor = "multi_thread")]
async fn r11_counters_count_queries_by_action_type_and_transport() {
    let up = FakeUpstream::start(vec![a("www.test.", "192.0.2.1", 300)]).await;
    let s = TestServer::start(
        &format!(
            "[upstream]\nservers = [\"{}\"]\n[blocking]\nlists = [\"b.txt\"]\n\
             [log]\npath = \"q.jsonl\"\n",
            up.addr
        ),
        &[("b.txt", "ads.test\nmore.test\n")],
    )
    .await;
    assert_eq!(
        first_answer(&s.query("x.ads.test.", RecordType::A).await),
        "0.0.0.0"
    );
    assert_eq!(
        first_answer(&s.query("www.test.", RecordType::A).await),
        "192.0.2.1"
    );
    assert_eq!(
        first_answer(&s.query_tcp("www.test.", RecordType::A).await),
        "192.0.2.1"
    );
    s.query("www.test.", RecordType::AAAA).await;
    let t = s.service().counters_text();
    let v = |name: &str| value(&t, name).unwrap_or_else(|| panic!("no {name} in\n{t}"));
    assert_eq!(v("sinkhole_queries_total{action=\"blocked\"}"), "1");
    assert_eq!(v("sinkhole_queries_total{action=\"allowed\"}"), "2");
    assert_eq!(v("sinkhole_queries_total{action=\"cached\"}"), "1");
    assert_eq!(v("sinkhole_queries_by_qtype_total{qtype=\"A\"}"), "3");
    assert_eq!(v("sinkhole_queries_by_qtype_total{qtype=\"AAAA\"}"), "1");
    assert_eq!(
        v("sinkhole_queries_by_transport_total{transport=\"udp\"}"),
        "3"
    );
    assert_eq!(
        v("sinkhole_queries_by_transport_total{transport=\"tcp\"}"),
        "1"
    );
    assert_eq!(v("sinkhole_cache_hits_total"), "1");
    assert_eq!(v("sinkhole_cache_misses_total"), "2");
    assert_eq!(v("sinkhole_cache_entries"), "2");
    let up_label = format!("{{upstream=\"{}\"}}", up.addr);
    assert_eq!(
        v(&format!("sinkhole_upstream_queries_total{up_label}")),
        "2"
    );
    assert_eq!(v(&format!("sinkhole_upstream_errors_total{up_label}")), "0");
    assert_eq!(
        v(&format!(
            "sinkhole_upstream_latency_seconds_count{up_label}"
        )),
        "2"
    );
    assert_eq!(v("sinkhole_list_entries{list=\"b.txt\"}"), "2");
    let loaded: u64 = v("sinkhole_list_loaded_timestamp_seconds{list=\"b.txt\"}")
        .parse()
        .unwrap();
    assert!(loaded > 1_700_000_000, "{loaded}");
}

// See: #11
#[tokio::test(flavor = "multi_thread")]
async fn r11_serve_prints_the_counters_on_sigusr1_and_at_exit() {
    let up = FakeUpstream::start(vec![a("www.test.", "192.0.2.1", 300)]).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = dir.path().join("s.toml");
    std::fs::write(dir.path().join("b.txt"), "ads.test\n").unwrap();
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\n[upstream]\nservers = [\"{}\"]\n\
             [blocking]\nlists = [\"b.txt\"]\n",
            up.addr
        ),
    )
    .unwrap();
    let mut child = bin()
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let t = std::time::Instant::now();
    loop {
        let q = make_query("x.ads.test.", RecordType::A, None);
        let answer = tokio::time::timeout(Duration::from_millis(300), udp_exchange(addr, &q)).await;
        if let Ok(Some(m)) = answer {
            assert_eq!(first_answer(&m), "0.0.0.0");
            break;
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server did not start");
        }
    }
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut read_until = |want: &str| {
        let mut seen = String::new();
        let mut line = String::new();
        while out.read_line(&mut line).unwrap() > 0 {
            seen.push_str(&line);
            if line.starts_with(want) {
                return seen;
            }
            line.clear();
        }
        panic!("stdout ended before {want}:\n{seen}");
    };
    signal(&child, "USR1");
    let first = read_until("sinkhole_list_loaded_timestamp_seconds");
    assert_eq!(
        value(&first, "sinkhole_queries_total{action=\"blocked\"}").as_deref(),
        Some("1"),
        "{first}"
    );
    assert_eq!(
        value(&first, "sinkhole_list_entries{list=\"b.txt\"}").as_deref(),
        Some("1"),
        "{first}"
    );
    let m = udp_exchange(addr, &make_query("www.test.", RecordType::A, None))
        .await
        .unwrap();
    assert_eq!(first_answer(&m), "192.0.2.1");
    signal(&child, "TERM");
    let last = read_until("sinkhole_list_loaded_timestamp_seconds");
    assert!(child.wait().unwrap().success());
    assert_eq!(
        value(&last, "sinkhole_queries_total{action=\"allowed\"}").as_deref(),
        Some("1"),
        "{last}"
    );
    assert_eq!(
        value(&last, "sinkhole_queries_total{action=\"blocked\"}").as_deref(),
        Some("1"),
        "{last}"
    );
}
