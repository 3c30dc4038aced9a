//! Unit tests of the pool against a loopback echo server: matching, cookies, retirement,
//! ID reuse, port unreachable.

use super::*;

/// A loopback server that sends every datagram back with the QR bit set.
async fn echo() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 512];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            buf[2] |= 0x80;
            let _ = s.send_to(&buf[..n], from).await;
        }
    });
    (addr, task)
}

fn question(name: &[u8]) -> Box<[u8]> {
    let mut q = name.to_vec();
    q.extend_from_slice(&[0, 1, 0, 1]);
    q.into()
}

fn expect(name: &[u8]) -> Expect {
    Expect {
        question: question(name),
        cookie: None,
        strict: false,
    }
}

fn message(id: u16, question: &[u8]) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(question);
    m
}

const WAIT: Duration = Duration::from_millis(300);

#[tokio::test]
async fn each_answer_reaches_its_own_waiter_and_strangers_are_ignored() {
    let (addr, _echo) = echo().await;
    let pool = Pool::new(addr);
    let mut a = pool.register(expect(b"\x01a\x04test\x00")).unwrap();
    let mut b = pool.register(expect(b"\x01b\x04test\x00")).unwrap();
    b.send(&message(b.id(), b"\x01B\x04TEST\x00\x00\x01\x00\x01"))
        .await
        .unwrap();
    a.send(&message(a.id(), b"\x01a\x04test\x00\x00\x01\x00\x01"))
        .await
        .unwrap();
    let got = tokio::time::timeout(WAIT, a.answer())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got.pkt[12..18], b"\x01a\x04tes");
    let got = tokio::time::timeout(WAIT, b.answer())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got.pkt[12..14], b"\x01B", "the name's case may differ");

    // Right ID, other question; other type: not the answer, the waiter keeps waiting.
    let mut c = pool.register(expect(b"\x01c\x04test\x00")).unwrap();
    c.send(&message(c.id(), b"\x01x\x04test\x00\x00\x01\x00\x01"))
        .await
        .unwrap();
    c.send(&message(c.id(), b"\x01c\x04test\x00\x00\x1c\x00\x01"))
        .await
        .unwrap();
    assert!(tokio::time::timeout(WAIT, c.answer()).await.is_err());
    assert!(!c.abandon());
}

#[tokio::test]
async fn cookie_mismatch_or_missing_under_strict_is_ignored() {
    use crate::dns::wire::{parse_query, write_upstream_query_cookie};
    let (addr, _echo) = echo().await;
    let pool = Pool::new(addr);
    let mut pkt = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    pkt.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
    let q = parse_query(&pkt).unwrap();
    let with = |cookie: Option<[u8; 8]>, strict| Expect {
        question: question(b"\x01a\x00"),
        cookie,
        strict,
    };
    // The echo answers with the query's cookie: client only, so "malformed" in an
    // answer; a waiter that sent a cookie ignores it.
    let mut t = pool.register(with(Some(*b"ours0000"), false)).unwrap();
    let mut m = Vec::new();
    write_upstream_query_cookie(&mut m, &q, t.id(), b"ours0000", None);
    t.send(&m).await.unwrap();
    assert!(tokio::time::timeout(WAIT, t.answer()).await.is_err());
    drop(t);
    // Wrong client cookie with a server cookie: ignored.
    let mut t = pool.register(with(Some(*b"ours0000"), false)).unwrap();
    write_upstream_query_cookie(&mut m, &q, t.id(), b"theirs00", Some(b"server00"));
    t.send(&m).await.unwrap();
    assert!(tokio::time::timeout(WAIT, t.answer()).await.is_err());
    drop(t);
    // Ours: taken.
    let mut t = pool.register(with(Some(*b"ours0000"), true)).unwrap();
    write_upstream_query_cookie(&mut m, &q, t.id(), b"ours0000", Some(b"server00"));
    t.send(&m).await.unwrap();
    let got = tokio::time::timeout(WAIT, t.answer())
        .await
        .unwrap()
        .unwrap();
    assert!(got.opt.is_some());
    // No cookie, strict: ignored, and noted for the caller.
    let t = pool.register(with(Some(*b"ours0000"), true)).unwrap();
    t.send(&message(t.id(), b"\x01a\x00\x00\x01\x00\x01"))
        .await
        .unwrap();
    tokio::time::sleep(WAIT).await;
    assert!(t.abandon(), "a cookie-less answer was seen");
    // No cookie, not strict (the server does not do cookies): taken.
    let mut t = pool.register(with(Some(*b"ours0000"), false)).unwrap();
    t.send(&message(t.id(), b"\x01a\x00\x00\x01\x00\x01"))
        .await
        .unwrap();
    assert!(tokio::time::timeout(WAIT, t.answer()).await.is_ok());
}

#[tokio::test]
async fn worn_sockets_are_replaced_and_closed_once_drained() {
    let (addr, _echo) = echo().await;
    let pool = Pool::new(addr);
    let old = pool.register(expect(b"\x01a\x00")).unwrap();
    assert_eq!(pool.open_sockets(), 1);
    let slot = pool
        .slots
        .iter()
        .find(|s| lock(s).is_some())
        .expect("one slot in use");
    let first = lock(slot).clone().unwrap();
    first.uses.store(MAX_USES, Ordering::Relaxed);

    // Too many sockets draining: the worn one serves on.
    pool.draining.store(MAX_DRAINING, Ordering::Relaxed);
    let same = pool.socket_in(slot, &mut true).unwrap().unwrap();
    assert!(Arc::ptr_eq(&same, &first));
    pool.draining.store(0, Ordering::Relaxed);

    // Otherwise it is replaced, on a new port, and drains.
    let new = pool.socket_in(slot, &mut true).unwrap().unwrap();
    assert!(!Arc::ptr_eq(&new, &first));
    assert!(first.retired.load(Ordering::Relaxed));
    assert_eq!(pool.open_sockets(), 2, "the old one still has a waiter");
    drop((same, new, first));
    drop(old);
    let t = Instant::now();
    while pool.open_sockets() > 1 {
        assert!(
            t.elapsed() < WAIT,
            "the drained socket's reader did not end"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_retired_socket_takes_no_new_waiters() {
    // A query that picked a socket just before it was retired must not join it once its
    // reader has ended: it would wait for an answer nobody reads (a rare SERVFAIL under
    // load, seen in the lab).
    let (addr, _echo) = echo().await;
    let pool = Pool::new(addr);
    drop(pool.register(expect(b"\x01a\x00")).unwrap());
    let sock = pool.slots.iter().find_map(|s| lock(s).clone()).unwrap();
    sock.retire(&pool.draining);
    let t = Instant::now();
    while pool.draining.load(Ordering::Relaxed) > 0 {
        assert!(
            t.elapsed() < WAIT,
            "the idle retired socket's reader did not end"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(sock.enlist(expect(b"\x01a\x00")).is_err());
}

#[tokio::test]
async fn an_answered_ticket_does_not_withdraw_the_next_query_on_its_id() {
    // Once answered, a ticket's ID is free: a new query may take it before the old
    // ticket is dropped, and that drop must not cancel the new query (it failed with
    // "upstream socket closed" about once per 200,000 forwards in the lab).
    let (addr, _echo) = echo().await;
    let pool = Pool::new(addr);
    let mut first = pool.register(expect(b"\x01a\x00")).unwrap();
    first
        .send(&message(first.id(), b"\x01a\x00\x00\x01\x00\x01"))
        .await
        .unwrap();
    tokio::time::timeout(WAIT, first.answer())
        .await
        .unwrap()
        .unwrap();
    let sock = Arc::clone(&first.sock);
    // The next query on that socket draws the same ID.
    let mut second = loop {
        let t = Arc::clone(&sock).enlist(expect(b"\x01b\x00")).unwrap();
        if t.id() == first.id() {
            break t;
        }
    };
    drop(first);
    second
        .send(&message(second.id(), b"\x01b\x00\x00\x01\x00\x01"))
        .await
        .unwrap();
    let got = tokio::time::timeout(WAIT, second.answer()).await.unwrap();
    assert!(got.is_ok(), "{got:?}");
}

#[tokio::test]
async fn port_unreachable_fails_the_waiters_at_once() {
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let pool = Pool::new(addr);
    let mut t = pool.register(expect(b"\x01a\x00")).unwrap();
    t.send(&message(t.id(), b"\x01a\x00\x00\x01\x00\x01"))
        .await
        .unwrap();
    let r = tokio::time::timeout(WAIT, t.answer()).await.unwrap();
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
}
