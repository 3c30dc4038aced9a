//! The UDP hot path under bursts: batched receives, the pause after a partial batch
//! (`server.udp_batch_wait_us`), and answers that go back to the right client.

use std::collections::HashMap;
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, first_answer, make_query, rcode};

const CLIENTS: usize = 4;
const PER_CLIENT: usize = 60;

/// Several clients each send a burst back to back, so that receives take many datagrams at
/// once and the thread pauses between batches; every query gets its own answer, on the
/// socket that asked, whether it was blocked, cached or forwarded.
#[tokio::test(flavor = "multi_thread")]
async fn bursts_from_many_clients_all_get_their_own_answers() {
    let up = FakeUpstream::start(vec![
        a("www.test.", "192.0.2.1", 300),
        a("mail.test.", "192.0.2.2", 300),
    ])
    .await;
    // A long pause (20 ms) makes any lost or misrouted answer under batching show.
    let s = TestServer::start(
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_threads = 1\nudp_batch_wait_us = 20000\n\
             [upstream]\nservers = [\"{}\"]\n[blocking]\nlists = [\"b.txt\"]\n",
            up.addr
        ),
        &[("b.txt", "blocked.test\n")],
    )
    .await;
    // Warm the cache for one name, so the burst mixes blocked, cached and forwarded.
    assert_eq!(
        first_answer(&s.query("www.test.", RecordType::A).await),
        "192.0.2.1"
    );

    let mut socks = Vec::new();
    for _ in 0..CLIENTS {
        socks.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    }
    let names = ["www.test.", "x.blocked.test.", "mail.test."];
    let mut sent: Vec<HashMap<u16, (Message, &str)>> = vec![HashMap::new(); CLIENTS];
    for i in 0..PER_CLIENT {
        for (c, sock) in socks.iter().enumerate() {
            let name = names[(i + c) % names.len()];
            let q = make_query(name, RecordType::A, None);
            sock.send_to(&q.to_vec().unwrap(), s.addr).await.unwrap();
            sent[c].insert(q.metadata.id, (q, name));
        }
    }

    let mut buf = vec![0u8; 4096];
    for (c, sock) in socks.iter().enumerate() {
        let mut left = sent[c].clone();
        while !left.is_empty() {
            let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("client {c}: {} queries unanswered", left.len()))
                .unwrap();
            let m = Message::from_vec(&buf[..n]).unwrap();
            let (q, name) = left
                .remove(&m.metadata.id)
                .unwrap_or_else(|| panic!("client {c} got an answer it did not ask for"));
            assert_eq!(m.queries, q.queries, "question echoed");
            assert_eq!(rcode(&m), 0);
            let want = match name {
                "www.test." => "192.0.2.1",
                "mail.test." => "192.0.2.2",
                _ => "0.0.0.0",
            };
            assert_eq!(first_answer(&m), want, "{name}");
        }
    }
}

/// `udp_batch_wait_us = 0` turns the pause off; the server still answers.
#[tokio::test(flavor = "multi_thread")]
async fn batch_wait_zero_is_accepted() {
    let s = TestServer::start(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_batch_wait_us = 0\n\
         [upstream]\nservers = [\"127.0.0.1:9\"]\n[blocking]\nlists = [\"b.txt\"]\n",
        &[("b.txt", "blocked.test\n")],
    )
    .await;
    let m = s.query("blocked.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "0.0.0.0");
}
