//! Access control (`[access]`): who may ask. Clients are loopback source addresses
//! (127.0.0.2, 127.0.0.3, … are different clients on Linux).

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, first_answer, make_query};
use crate::querylog::records;

fn zone() -> Vec<hickory_proto::rr::Record> {
    vec![a("www.test.", "192.0.2.1", 300)]
}

/// A UDP query for `www.test.` A from `src`; `None` when nothing came back within 700 ms.
async fn ask_from(s: &TestServer, src: &str) -> Option<hickory_proto::op::Message> {
    let sock = UdpSocket::bind((src, 0)).await.unwrap();
    let q = make_query("www.test.", RecordType::A, Some(1232));
    sock.send_to(&q.to_vec().unwrap(), s.addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_millis(700), sock.recv_from(&mut buf))
        .await
        .ok()?
        .unwrap();
    Some(hickory_proto::op::Message::from_vec(&buf[..n]).unwrap())
}

// See: #12
#[tokio::test(flavor = "multi_thread")]
async fn r12_clients_outside_allow_or_inside_deny_are_refused_and_logged() {
    let up = FakeUpstream::start(zone()).await;
    let s = TestServer::start(
        &format!(
            "[upstream]\nservers = [\"{}\"]\n[access]\nallow = [\"127.0.0.0/29\"]\n\
             deny = [\"127.0.0.5\", \"deny.zone\"]\n[log]\npath = \"q.jsonl\"\n",
            up.addr
        ),
        &[("deny.zone", "# a zone file\n127.0.0.6/32\n")],
    )
    .await;
    let ok = ask_from(&s, "127.0.0.2").await.expect("answered");
    assert_eq!(first_answer(&ok), "192.0.2.1");
    for denied in ["127.0.0.5", "127.0.0.6", "127.0.0.9"] {
        let m = ask_from(&s, denied).await.expect("refused, not dropped");
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{denied}");
        assert!(m.answers.is_empty());
        let ede = crate::harness::ede(&m).expect("EDE with EDNS");
        assert_eq!(ede.0, 18, "Prohibited");
    }
    assert_eq!(
        up.calls(),
        1,
        "a refused client's query never reaches the upstream"
    );
    let log = records(&s.path("q.jsonl"), 4).await;
    let refused: Vec<_> = log.iter().filter(|r| r["action"] == "refused").collect();
    assert_eq!(refused.len(), 3, "{log:?}");
    assert!(refused.iter().all(|r| r["rcode"] == "REFUSED"));
    // Two UDP threads hand their records to the log each in its own batch: the three
    // records may be in either order.
    let mut clients: Vec<&str> = refused
        .iter()
        .filter_map(|r| r["client"].as_str())
        .collect();
    clients.sort_unstable();
    assert_eq!(clients, ["127.0.0.5", "127.0.0.6", "127.0.0.9"]);
    let text = s.service().counters_text();
    assert!(
        text.contains("sinkhole_queries_total{action=\"refused\"} 3"),
        "{text}"
    );
}

// See: #12
#[tokio::test(flavor = "multi_thread")]
async fn r12_drop_sends_nothing_and_a_reload_applies_new_rules() {
    let up = FakeUpstream::start(zone()).await;
    let cfg = |extra: &str| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_threads = 2\n[upstream]\nservers = [\"{}\"]\n\
             [access]\ndeny_action = \"drop\"\n{extra}",
            up.addr
        )
    };
    let s = TestServer::start(&cfg(""), &[]).await;
    assert!(
        ask_from(&s, "127.0.0.3").await.is_some(),
        "loopback allowed by default"
    );
    std::fs::write(s.path("sinkhole.toml"), cfg("deny = [\"127.0.0.3\"]\n")).unwrap();
    s.service().reloader().reload(true).await.unwrap();
    assert!(
        ask_from(&s, "127.0.0.3").await.is_none(),
        "dropped: no answer"
    );
    assert!(
        ask_from(&s, "127.0.0.4").await.is_some(),
        "others still served"
    );
    let t = s.service().counters_text();
    assert!(
        t.contains("sinkhole_queries_total{action=\"refused\"} 1"),
        "{t}"
    );
}
