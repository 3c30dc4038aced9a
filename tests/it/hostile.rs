//! Hostile clients (#10): what one client does never takes another client's service away,
//! and nothing a client holds is unbounded (TCP connections, unread answers, forwards).

use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::harness::{TestServer, first_answer, make_query, tcp_exchange};

async fn blocking_server(server: &str) -> TestServer {
    TestServer::start(
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_threads = 1\n{server}\n\
             [blocking]\nlists = [\"b.txt\"]\n"
        ),
        &[("b.txt", "ads.test\n")],
    )
    .await
}

/// A TCP connection from `src` (any 127.0.0.0/8 address).
async fn connect_from(src: &str, to: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(format!("{src}:0").parse().unwrap())?;
    s.connect(to).await
}

/// True when the server answers a TCP query from 127.0.0.1 for a blocked name.
async fn tcp_still_serves(s: &TestServer) -> bool {
    let q = make_query("x.ads.test.", RecordType::A, None);
    tcp_exchange(s.addr, &q)
        .await
        .is_some_and(|m| first_answer(&m) == "0.0.0.0")
}

// See: #10
#[tokio::test(flavor = "multi_thread")]
async fn r10_tcp_client_that_pipelines_and_never_reads_is_disconnected() {
    let s = blocking_server("tcp_idle_ms = 500").await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let q = make_query("x.ads.test.", RecordType::A, None)
        .to_vec()
        .unwrap();
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    let chunk: Vec<u8> = framed.repeat(256);
    // Keep sending queries without ever reading an answer. The server's answers fill its
    // send buffer and this socket's receive buffer; then its writes stall. It must close
    // the connection (our writes fail) rather than hold it forever.
    let start = Instant::now();
    let mut closed = false;
    while start.elapsed() < Duration::from_secs(20) {
        match tokio::time::timeout(Duration::from_secs(3), c.write_all(&chunk)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                closed = true;
                break;
            }
            // Our write is stalled too (the server stopped reading): wait for its close.
            Err(_) => {}
        }
    }
    assert!(
        closed,
        "the connection was still open after 20 s of unread answers"
    );
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert!(tcp_still_serves(&s).await);
}

// See: #10
#[tokio::test(flavor = "multi_thread")]
async fn r10_one_address_cannot_take_every_tcp_connection() {
    // Defaults: 32 per client, 512 in all.
    let s = blocking_server("").await;
    let mut held = Vec::new();
    for _ in 0..600 {
        if let Ok(c) = connect_from("127.0.0.2", s.addr).await {
            held.push(c);
        }
    }
    // Let the server accept (and close the ones past the client's limit).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let open = s.service().server().tcp_connections();
    assert!(open <= 32, "one client holds {open} connections");
    // Another client still gets TCP service.
    assert!(tcp_still_serves(&s).await, "TCP taken away by one address");
    // The refused ones were closed at once: reading them gives EOF, not a wait.
    let mut eof = 0;
    for c in held.iter_mut().rev().take(50) {
        let mut b = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_secs(1), c.read(&mut b)).await {
            eof += 1;
        }
    }
    assert!(eof >= 40, "{eof} of the last 50 connections were closed");
}

// See: #10
#[tokio::test(flavor = "multi_thread")]
async fn tcp_pipelined_queries_are_all_answered() {
    let s = blocking_server("").await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let mut ids = Vec::new();
    let mut bytes = Vec::new();
    for i in 0..100 {
        let q = make_query(&format!("n{i}.ads.test."), RecordType::A, None);
        ids.push(q.metadata.id);
        let q = q.to_vec().unwrap();
        bytes.extend_from_slice(&(q.len() as u16).to_be_bytes());
        bytes.extend_from_slice(&q);
    }
    c.write_all(&bytes).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..100 {
        let len = tokio::time::timeout(Duration::from_secs(5), c.read_u16())
            .await
            .unwrap()
            .unwrap();
        let mut buf = vec![0u8; usize::from(len)];
        c.read_exact(&mut buf).await.unwrap();
        let m = hickory_proto::op::Message::from_vec(&buf).unwrap();
        assert_eq!(first_answer(&m), "0.0.0.0");
        got.push(m.metadata.id);
    }
    got.sort_unstable();
    ids.sort_unstable();
    assert_eq!(got, ids);
}

// See: #10 (the in-flight limit was shared by all clients: one client's flood of slow
// names made every other client's forwarded query fail with SERVFAIL).
#[tokio::test(flavor = "multi_thread")]
async fn r10_one_clients_slow_flood_does_not_take_other_clients_forwards() {
    use std::net::Ipv4Addr;

    use crate::raw_upstream::{RawUpstream, answer_a};

    let up = RawUpstream::start(|q| {
        let name = q.queries[0].name().to_ascii().to_ascii_lowercase();
        let delay = if name.ends_with(".slow.test.") {
            Duration::from_secs(3)
        } else {
            Duration::ZERO
        };
        vec![(delay, answer_a(q, Ipv4Addr::new(192, 0, 2, 1)))]
    })
    .await;
    let s = TestServer::start(
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_threads = 1\n\
             [upstream]\nservers = [\"{}\"]\ntimeout_ms = 5000\n",
            up.addr
        ),
        &[],
    )
    .await;
    // One client sends more cache misses than the whole server may have in flight.
    let flood = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    for i in 0..9000 {
        let q = make_query(&format!("n{i}.slow.test."), RecordType::A, None);
        let _ = flood.send_to(&q.to_vec().unwrap(), s.addr).await;
        if i % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let in_flight = s.service().server().forwards_in_flight();
    assert!(
        in_flight <= 256,
        "{in_flight} forwards in flight for one client"
    );
    // Another client's miss is forwarded and answered, while the flood is still in flight.
    let other = tokio::net::UdpSocket::bind("127.0.0.3:0").await.unwrap();
    let q = make_query("fast.test.", RecordType::A, None);
    other.send_to(&q.to_vec().unwrap(), s.addr).await.unwrap();
    let mut buf = vec![0u8; 1500];
    let n = tokio::time::timeout(Duration::from_secs(2), other.recv(&mut buf))
        .await
        .expect("the other client got no answer")
        .unwrap();
    let m = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, q.metadata.id);
    assert_eq!(first_answer(&m), "192.0.2.1", "{m:?}");
    // The flooding client itself was told SERVFAIL at once for what it had past its share.
    let mut servfail = 0;
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(200), flood.recv(&mut buf)).await
    {
        let m = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
        servfail += usize::from(u16::from(m.metadata.response_code) == 2);
    }
    assert!(servfail > 100, "{servfail} SERVFAIL answers to the flood");
}
