//! Unit tests of the shared connection logic: one connect for concurrent queries, a
//! reused connection found closed retried once on a fresh one, failures kept as errors.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::*;

#[derive(Debug, Default)]
struct Fake {
    dead: AtomicBool,
}

impl Alive for Fake {
    fn alive(&self) -> bool {
        !self.dead.load(Ordering::Relaxed)
    }
}

fn addr() -> SocketAddr {
    "192.0.2.1:853".parse().unwrap()
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

#[tokio::test]
async fn concurrent_queries_share_one_connect() {
    let slot = Slot::<Fake>::new();
    let connects = AtomicUsize::new(0);
    let connect = || async {
        connects.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(Arc::new(Fake::default()))
    };
    let end = soon();
    let (a, b, c) = tokio::join!(
        slot.get(addr(), end, connect),
        slot.get(addr(), end, connect),
        slot.get(addr(), end, connect)
    );
    let fresh: Vec<bool> = [a, b, c].into_iter().map(|r| r.unwrap().1).collect();
    assert_eq!(connects.load(Ordering::Relaxed), 1);
    assert_eq!(
        fresh.iter().filter(|f| **f).count(),
        1,
        "one opened it: {fresh:?}"
    );
    // A dead connection is replaced.
    let (c, _) = slot.get(addr(), end, connect).await.unwrap();
    c.dead.store(true, Ordering::Relaxed);
    let (_, fresh) = slot.get(addr(), end, connect).await.unwrap();
    assert!(fresh);
    assert_eq!(connects.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_failed_or_slow_connect_is_the_attempts_error() {
    let slot = Slot::<Fake>::new();
    let refused = || async { Err(io::Error::from(io::ErrorKind::ConnectionRefused)) };
    match slot.get(addr(), soon(), refused).await {
        Err(UpstreamError::Transport(a, _)) => assert_eq!(a, addr()),
        other => panic!("{other:?}"),
    }
    let slow = || async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(Arc::new(Fake::default()))
    };
    let end = Instant::now() + Duration::from_millis(50);
    assert!(matches!(
        slot.get(addr(), end, slow).await,
        Err(UpstreamError::Timeout(_))
    ));
}

#[tokio::test]
async fn a_reused_connection_found_closed_is_retried_once_on_a_fresh_one() {
    let slot = Slot::<Fake>::new();
    let connect = || async { Ok(Arc::new(Fake::default())) };
    // Open one, as an earlier query would have.
    slot.get(addr(), soon(), connect).await.unwrap();
    let asked = AtomicUsize::new(0);
    let got = with_retry(&slot, addr(), soon(), connect, |c: Arc<Fake>| {
        let n = asked.fetch_add(1, Ordering::Relaxed);
        async move {
            if n == 0 {
                c.dead.store(true, Ordering::Relaxed);
                Err(Failed::Closed("closed by the server".into()))
            } else {
                Ok(vec![1, 2, 3])
            }
        }
    })
    .await;
    assert_eq!(got.unwrap(), [1, 2, 3]);
    assert_eq!(asked.load(Ordering::Relaxed), 2);
    // On a fresh connection, closed is the attempt's error: no second try.
    let slot = Slot::<Fake>::new();
    let asked = AtomicUsize::new(0);
    let got = with_retry(&slot, addr(), soon(), connect, |c: Arc<Fake>| {
        asked.fetch_add(1, Ordering::Relaxed);
        async move {
            c.dead.store(true, Ordering::Relaxed);
            Err::<Vec<u8>, _>(Failed::Closed("reset".into()))
        }
    })
    .await;
    assert!(matches!(got, Err(UpstreamError::Transport(_, ref m)) if m == "reset"));
    assert_eq!(asked.load(Ordering::Relaxed), 1);
}

#[test]
fn clients_use_the_bundled_roots_or_the_given_ca() {
    assert!(Clients::new(None).is_ok());
    let pair = crate::tls::selfsigned::generate("ca.test", std::time::SystemTime::now()).unwrap();
    let certs = crate::config::upstream::read_ca_pem(pair.cert_pem.as_bytes()).unwrap();
    let ca = TlsCa {
        path: "ca.pem".into(),
        certs,
    };
    let c = Clients::new(Some(&ca)).unwrap();
    assert_eq!(c.dot.alpn_protocols, [b"dot".to_vec()]);
    assert_eq!(c.doh.alpn_protocols, [b"h2".to_vec()]);
}

#[test]
fn queries_are_padded_to_128_bytes_without_a_cookie() {
    for name in [
        "a.test",
        "a-rather-longer-name.with.several.labels.example.test",
        // A 245-byte name: a 276-byte query, padded to 384 (three blocks).
        &format!("{0}.{0}.{0}.{0}", "a".repeat(60)),
    ] {
        let mut m = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            m.push(u8::try_from(label.len()).unwrap());
            m.extend_from_slice(label.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        let q = crate::dns::wire::parse_query(&m).unwrap();
        let mut out = Vec::new();
        write_query(&mut out, &q, 7);
        assert_eq!(out.len() % PAD_BLOCK, 0, "{name}: {} bytes", out.len());
        // Sized before writing: one allocation, no growth.
        assert_eq!(out.len(), padded_len(&q), "{name}");
        assert_eq!(out.capacity(), out.len(), "{name}");
        let msg = hickory_proto::op::Message::from_vec(&out).unwrap();
        assert_eq!(msg.metadata.id, 7);
        assert!(msg.edns.is_some());
        // The OPT (after the question: root name, type, class, TTL, RDLENGTH) holds one
        // Padding option of zeros, and no cookie.
        let rd = 12 + q.question_len() + 11;
        let rdlen = usize::from(u16::from_be_bytes([out[rd - 2], out[rd - 1]]));
        assert_eq!(rd + rdlen, out.len());
        assert_eq!(u16::from_be_bytes([out[rd], out[rd + 1]]), OPT_PADDING);
        assert_eq!(
            usize::from(u16::from_be_bytes([out[rd + 2], out[rd + 3]])),
            rdlen - 4
        );
        assert!(out[rd + 4..].iter().all(|&b| b == 0), "{name}");
    }
}
