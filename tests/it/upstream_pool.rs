//! Forwarding under a flood of slow queries: the upstream sockets are bounded (a few per UDP
//! thread, a pool for the rest), so the process's file descriptors stay bounded and other
//! names still resolve; and `serve` raises its open-file soft limit to the hard limit at
//! start.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;

use crate::harness::{
    TestServer, bin, first_answer, free_port, make_query, stop_serve, udp_exchange,
};
use crate::raw_upstream::{RawUpstream, answer_a};

/// Flooding clients (distinct 127.0.0.x sources, so that a per-client limit does not cut the
/// flood short) and queries per client.
const CLIENTS: usize = 32;
const PER_CLIENT: usize = 64;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// An upstream that answers names under `slow.test.` after `slow`, others at once.
async fn slow_upstream(slow: Duration) -> RawUpstream {
    RawUpstream::start(move |q| {
        let name = q.queries[0].name().to_ascii().to_ascii_lowercase();
        let delay = if name.ends_with(".slow.test.") {
            slow
        } else {
            Duration::ZERO
        };
        vec![(delay, answer_a(q, Ipv4Addr::new(192, 0, 2, 1)))]
    })
    .await
}

// See: #10
#[tokio::test(flavor = "multi_thread")]
async fn r10_slow_flood_keeps_fds_bounded_and_other_names_answered() {
    let up = slow_upstream(Duration::from_millis(3000)).await;
    let s = TestServer::start(
        &format!(
            "[upstream]\nservers = [\"{}\"]\ntimeout_ms = 5000\n",
            up.addr
        ),
        &[],
    )
    .await;
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let src = Ipv4Addr::new(127, 0, 1, 10 + c as u8);
        clients.push(UdpSocket::bind((src, 0)).await.unwrap());
    }
    let base = open_fds();

    // Distinct names: no cache hit, nothing an upstream-side merge could fold together.
    for i in 0..PER_CLIENT {
        for (c, sock) in clients.iter().enumerate() {
            let q = make_query(&format!("q{i}-{c}.slow.test."), RecordType::A, None);
            sock.send_to(&q.to_vec().unwrap(), s.addr).await.unwrap();
        }
        // Paced, so that the server's receive buffer does not overflow.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let total = CLIENTS * PER_CLIENT;
    let t = Instant::now();
    let mut peak = 0;
    while up.queries().len() < total * 9 / 10 && t.elapsed() < Duration::from_millis(1500) {
        peak = peak.max(open_fds());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    peak = peak.max(open_fds());
    let in_flight = up.queries().len();
    assert!(
        in_flight >= total / 4,
        "the flood must reach the upstream for this test to mean anything: {in_flight} of {total}"
    );

    // Another client, another name: answered at once, while the flood is in flight.
    let t = Instant::now();
    let q = make_query("www.fast.test.", RecordType::A, None);
    let m = udp_exchange(s.addr, &q).await.expect("fast name answered");
    assert_eq!(first_answer(&m), "192.0.2.1");
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    peak = peak.max(open_fds());
    assert!(
        peak < base + 200,
        "{in_flight} slow queries in flight took {} file descriptors (baseline {base}, peak {peak})",
        peak.saturating_sub(base)
    );

    // The flood itself is answered when the upstream answers: NOERROR, not SERVFAIL.
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), clients[0].recv_from(&mut buf))
        .await
        .expect("a slow answer")
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(first_answer(&m), "192.0.2.1");
}

/// The soft and hard open-file limits of process `pid`, from `/proc/<pid>/limits`.
fn nofile_limits(pid: u32) -> (String, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut f = line["Max open files".len()..].split_whitespace();
    (f.next().unwrap().into(), f.next().unwrap().into())
}

// See: #10
#[tokio::test(flavor = "multi_thread")]
async fn r10_serve_raises_the_open_file_soft_limit_to_the_hard_limit() {
    let up = slow_upstream(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let cfg = dir.path().join("sinkhole.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"{addr}\"]\n[upstream]\nservers = [\"{}\"]\n",
            up.addr
        ),
    )
    .unwrap();
    let prog = bin().get_program().to_owned();
    // A low soft limit under the inherited hard one, as a service manager may set.
    #[allow(clippy::zombie_processes)]
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -S -n 256 && exec \"$0\" --log-level info serve --config \"$1\"")
        .arg(&prog)
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        let q = make_query("www.fast.test.", RecordType::A, None);
        let r = tokio::time::timeout(Duration::from_millis(300), udp_exchange(addr, &q)).await;
        if let Ok(Some(m)) = r {
            assert_eq!(first_answer(&m), "192.0.2.1");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "server did not start"
        );
    }
    let (soft, hard) = nofile_limits(child.id());
    let log = stop_serve(child);
    assert_ne!(soft, "256", "soft limit not raised; log:\n{log}");
    assert_eq!(soft, hard, "log:\n{log}");
    assert!(
        log.contains("raised the open-file limit"),
        "the raise is logged:\n{log}"
    );
}

/// Starts the real binary under `sh` with the open-file limits set by `ulimit` (`limits`),
/// and waits until it answers on `addr`.
async fn spawn_limited(
    limits: &str,
    cfg: &std::path::Path,
    addr: SocketAddr,
) -> std::process::Child {
    let prog = bin().get_program().to_owned();
    #[allow(clippy::zombie_processes)]
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{limits} && exec \"$0\" --log-level info serve --config \"$1\""
        ))
        .arg(&prog)
        .arg(cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        let q = make_query("www.fast.test.", RecordType::A, None);
        let r = tokio::time::timeout(Duration::from_millis(300), udp_exchange(addr, &q)).await;
        if let Ok(Some(m)) = r {
            assert_eq!(first_answer(&m), "192.0.2.1");
            return child;
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server did not start");
        }
    }
}

// See: #10
#[tokio::test(flavor = "multi_thread")]
async fn r10_out_of_descriptors_warns_and_forwards_on_the_sockets_it_has() {
    let up = slow_upstream(Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let cfg = dir.path().join("sinkhole.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"{addr}\"]\n[upstream]\nservers = [\"{}\"]\n",
            up.addr
        ),
    )
    .unwrap();
    // What the server holds once it has forwarded one query (listeners, runtime, one
    // upstream socket), then a limit with room for one descriptor more: the UDP thread's
    // relay can open a second upstream socket, not the rest of its share, nor a socket per
    // query.
    let probe = spawn_limited("ulimit -S -n 64 && ulimit -H -n 64", &cfg, addr).await;
    let held = std::fs::read_dir(format!("/proc/{}/fd", probe.id()))
        .unwrap()
        .count();
    stop_serve(probe);
    let limit = held + 1;
    let child = spawn_limited(
        &format!("ulimit -S -n {limit} && ulimit -H -n {limit}"),
        &cfg,
        addr,
    )
    .await;

    const N: usize = 10;
    const EACH: usize = 20;
    let mut clients = Vec::new();
    for c in 0..N {
        clients.push(
            UdpSocket::bind((Ipv4Addr::new(127, 0, 2, 10 + c as u8), 0))
                .await
                .unwrap(),
        );
    }
    for i in 0..EACH {
        for (c, sock) in clients.iter().enumerate() {
            let q = make_query(&format!("q{i}-{c}.slow.test."), RecordType::A, None);
            sock.send_to(&q.to_vec().unwrap(), addr).await.unwrap();
        }
    }
    let mut answers = Vec::new();
    let mut buf = vec![0u8; 4096];
    for sock in &clients {
        for _ in 0..EACH {
            match tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf)).await {
                Ok(Ok((n, _))) => answers.push(Message::from_vec(&buf[..n]).unwrap()),
                _ => break,
            }
        }
    }
    let log = stop_serve(child);
    let good = answers
        .iter()
        .filter(|m| m.answers.len() == 1 && first_answer(m) == "192.0.2.1")
        .count();
    assert_eq!(
        good,
        N * EACH,
        "every query answered by the upstream; log:\n{log}"
    );
    let warnings = log.matches("out of file descriptors").count();
    assert!(
        (1..=2).contains(&warnings),
        "one rate-limited warning, not {warnings}:\n{log}"
    );
}

/// Shared sockets keep what a socket per query gave: the server's ICMP "port unreachable"
/// moves the query on to the next server at once, not after the timeout.
#[tokio::test(flavor = "multi_thread")]
async fn closed_upstream_port_fails_over_without_waiting_for_the_timeout() {
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let good = slow_upstream(Duration::ZERO).await;
    let s = TestServer::start(
        &format!(
            "[upstream]\nservers = [\"{dead}\", \"{}\"]\ntimeout_ms = 2000\n",
            good.addr
        ),
        &[],
    )
    .await;
    for i in 0..3 {
        let t = Instant::now();
        let m = s.query(&format!("n{i}.fast.test."), RecordType::A).await;
        assert_eq!(first_answer(&m), "192.0.2.1");
        assert!(
            t.elapsed() < Duration::from_millis(1000),
            "{:?}",
            t.elapsed()
        );
    }
}

/// Misses over UDP leave from the UDP threads' own few sockets per server (the relay), not
/// from a socket per query nor the shared pool's 64: the harness runs 2 UDP threads, each
/// with at most 4 sockets toward a server, none worn out by 400 queries. Every query is
/// answered. (IDs are unique only among the queries in flight on a socket, which this
/// upstream, answering at once, cannot show: the relay's unit tests cover matching.)
#[tokio::test(flavor = "multi_thread")]
async fn udp_misses_share_a_few_sockets_per_thread() {
    let up = slow_upstream(Duration::ZERO).await;
    let s = TestServer::start(&format!("[upstream]\nservers = [\"{}\"]\n", up.addr), &[]).await;
    const N: usize = 400;
    let client = std::sync::Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    // Read while sending: the answers must not overflow the client's receive buffer.
    let reader = {
        let client = std::sync::Arc::clone(&client);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut answered = 0;
            while answered < N {
                let Ok(Ok((n, _))) =
                    tokio::time::timeout(Duration::from_secs(3), client.recv_from(&mut buf)).await
                else {
                    break;
                };
                let m = Message::from_vec(&buf[..n]).unwrap();
                assert_eq!(first_answer(&m), "192.0.2.1");
                answered += 1;
            }
            answered
        })
    };
    for i in 0..N {
        let q = make_query(&format!("m{i}.fast.test."), RecordType::A, None);
        client.send_to(&q.to_vec().unwrap(), s.addr).await.unwrap();
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let answered = reader.await.unwrap();
    assert_eq!(answered, N, "every miss answered");
    let ports: std::collections::HashSet<u16> = up.sources().iter().map(|a| a.port()).collect();
    assert_eq!(up.sources().len(), N, "one upstream query per miss");
    assert!(
        (1..=2 * 4).contains(&ports.len()),
        "{} source ports for {N} misses",
        ports.len()
    );
}
