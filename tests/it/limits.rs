//! Rate limits (`[limits]`): per-client query rates with bans, exempt networks, a spoofed
//! flood from thousands of sources, and response-rate limiting (RRL) with TC slips. Clients
//! are loopback source addresses (127.0.0.2, 127.0.1.2, … are different clients on Linux);
//! the default exempts 127.0.0.1, where the other tests send from. Traffic is bounded by
//! count; bans end by moving the service's clock, never by sleeping.

use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, ede, first_answer, make_query};
use crate::querylog::records;

/// A server forwarding `www.test` to a fake upstream, blocking `ads.test`, with `limits`
/// as the body of its `[limits]` table and the query log on.
async fn server(limits: &str) -> (TestServer, FakeUpstream) {
    let up = FakeUpstream::start(vec![a("www.test.", "192.0.2.1", 3600)]).await;
    let s = TestServer::start(
        &format!(
            "[upstream]\nservers = [\"{}\"]\n[blocking]\nlists = [\"ads.txt\"]\n\
             [log]\npath = \"q.jsonl\"\n[limits]\n{limits}\n",
            up.addr
        ),
        &[("ads.txt", "ads.test\n")],
    )
    .await;
    (s, up)
}

/// One UDP query for `name` A (with EDNS) from `src`; `None` when nothing came back within
/// `wait`.
async fn ask(s: &TestServer, src: &str, name: &str, wait: Duration) -> Option<Message> {
    let sock = UdpSocket::bind((src, 0)).await.unwrap();
    let q = make_query(name, RecordType::A, Some(1232));
    sock.send_to(&q.to_vec().unwrap(), s.addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(wait, sock.recv_from(&mut buf))
        .await
        .ok()?
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, q.metadata.id);
    Some(m)
}

const ANSWERED: Duration = Duration::from_secs(5);
const DROPPED: Duration = Duration::from_millis(500);

/// The answer of a query that must be answered.
async fn answer(s: &TestServer, src: &str, name: &str) -> Message {
    ask(s, src, name, ANSWERED)
        .await
        .unwrap_or_else(|| panic!("no answer to {src}"))
}

/// The value of the counter line `name` (no labels).
fn counter(s: &TestServer, name: &str) -> u64 {
    let text = s.service().counters_text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
        .parse()
        .unwrap()
}

fn refused(m: &Message) -> bool {
    m.metadata.response_code == ResponseCode::Refused && m.answers.is_empty()
}

// See: #12
#[tokio::test(flavor = "multi_thread")]
async fn r12_a_client_over_its_rate_is_refused_until_its_ban_ends_and_others_are_served() {
    let (s, _up) = server("qps = 1\nburst = 5\nban_s = 60").await;
    for _ in 0..5 {
        let m = answer(&s, "127.0.0.2", "www.test.").await;
        assert_eq!(first_answer(&m), "192.0.2.1");
    }
    for _ in 0..3 {
        let m = answer(&s, "127.0.0.2", "www.test.").await;
        assert!(refused(&m), "{m:?}");
        assert_eq!(ede(&m), Some((18, "rate limited".into())));
    }
    // The limit is per client, not per transport: TCP is refused too.
    assert!(refused(&tcp_from(&s, "127.0.0.2", "www.test.").await));
    // Another client, and the same client's neighbour, are still served.
    for other in ["127.0.0.3", "127.0.1.2"] {
        let m = answer(&s, other, "x.ads.test.").await;
        assert_eq!(first_answer(&m), "0.0.0.0", "{other}");
    }
    // The ban lasts ban_s on the service's clock, whatever the bucket holds meanwhile.
    s.clock.advance(Duration::from_secs(59));
    assert!(refused(&answer(&s, "127.0.0.2", "www.test.").await));
    s.clock.advance(Duration::from_secs(1));
    let m = answer(&s, "127.0.0.2", "www.test.").await;
    assert_eq!(first_answer(&m), "192.0.2.1", "the ban ended");
    assert_eq!(counter(&s, "sinkhole_ratelimit_bans_total"), 1);
    assert_eq!(counter(&s, "sinkhole_ratelimit_refused_total"), 5);
    // Logged once per ban: the query that started it, not the ones refused during it.
    let log = records(&s.path("q.jsonl"), 9).await;
    let refused_logged: Vec<_> = log.iter().filter(|r| r["action"] == "refused").collect();
    assert_eq!(refused_logged.len(), 1, "{log:?}");
    assert_eq!(refused_logged[0]["client"], "127.0.0.2");
    assert_eq!(
        log.len(),
        9,
        "5 answered, 1 refused, 2 others, 1 after the ban"
    );
}

// See: #12
#[tokio::test(flavor = "multi_thread")]
async fn r12_exempt_networks_and_the_host_itself_are_never_limited() {
    let (s, _up) =
        server("qps = 1\nburst = 2\nexempt = [\"127.0.0.1/32\", \"127.0.4.0/24\"]").await;
    for _ in 0..20 {
        for src in ["127.0.0.1", "127.0.4.9"] {
            let m = answer(&s, src, "x.ads.test.").await;
            assert_eq!(first_answer(&m), "0.0.0.0", "{src}");
        }
    }
    for _ in 0..2 {
        assert_eq!(
            first_answer(&answer(&s, "127.0.5.1", "x.ads.test.").await),
            "0.0.0.0"
        );
    }
    assert!(refused(&answer(&s, "127.0.5.1", "x.ads.test.").await));
    assert_eq!(counter(&s, "sinkhole_ratelimit_bans_total"), 1);
}

// See: #12
#[tokio::test(flavor = "multi_thread")]
async fn r12_the_default_spares_the_host_and_bans_a_flooding_lan_client() {
    // No [limits] keys: 100 qps, bursts of 1000, 60 s bans, 127.0.0.1 exempt.
    let (s, _up) = server("").await;
    let (mut host, mut lan, mut lan_refused) = (0, 0, 0);
    for _ in 0..1100 {
        host +=
            usize::from(first_answer(&answer(&s, "127.0.0.1", "x.ads.test.").await) == "0.0.0.0");
    }
    let sock = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let mut buf = vec![0u8; 1500];
    for _ in 0..2000 {
        let q = make_query("x.ads.test.", RecordType::A, None);
        sock.send_to(&q.to_vec().unwrap(), s.addr).await.unwrap();
        let n = tokio::time::timeout(ANSWERED, sock.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let m = Message::from_vec(&buf[..n]).unwrap();
        lan += usize::from(first_answer(&m) == "0.0.0.0");
        lan_refused += usize::from(refused(&m));
    }
    assert_eq!(host, 1100, "the host itself is exempt");
    // 1000 at once, plus what 100 qps refilled while they were sent.
    assert!((1000..2000).contains(&lan), "{lan} answered");
    assert_eq!(lan + lan_refused, 2000);
    assert_eq!(counter(&s, "sinkhole_ratelimit_bans_total"), 1);
}

// See: #12
#[tokio::test(flavor = "multi_thread")]
async fn r12_ban_action_drop_sends_nothing_to_a_banned_client() {
    let (s, _up) = server("qps = 1\nburst = 2\nban_action = \"drop\"").await;
    for _ in 0..2 {
        assert!(
            ask(&s, "127.0.0.6", "x.ads.test.", ANSWERED)
                .await
                .is_some()
        );
    }
    for _ in 0..2 {
        assert!(
            ask(&s, "127.0.0.6", "x.ads.test.", DROPPED).await.is_none(),
            "dropped: no answer"
        );
    }
    assert!(
        ask(&s, "127.0.0.7", "x.ads.test.", ANSWERED)
            .await
            .is_some()
    );
    assert_eq!(counter(&s, "sinkhole_ratelimit_refused_total"), 2);
}

// See: #12
#[tokio::test(flavor = "multi_thread")]
async fn r12_a_spoofed_flood_from_thousands_of_sources_stays_bounded_and_keeps_bans() {
    // The smallest table (512 clients), so that a few thousand sources overflow it.
    let (s, _up) = server("qps = 1\nburst = 3\nban_s = 600\nmax_clients = 512").await;
    for _ in 0..3 {
        answer(&s, "127.0.0.2", "x.ads.test.").await;
    }
    assert!(refused(&answer(&s, "127.0.0.2", "x.ads.test.").await));
    // 3000 sources, one query each: every one within its rate, so answered.
    let sources = 3000;
    for i in 0..sources {
        let src = format!("127.1.{}.{}", i / 250, i % 250 + 1);
        let m = answer(&s, &src, "x.ads.test.").await;
        assert_eq!(first_answer(&m), "0.0.0.0", "{src}");
    }
    let state = s.service().pipeline().limit_state();
    let table = state.clients();
    assert_eq!(table.capacity(), 512);
    assert!(table.len() <= 512);
    assert!(table.bytes() <= table.max_bytes());
    let evicted = counter(&s, "sinkhole_ratelimit_evictions_total");
    assert!(evicted >= (sources + 1 - 512) as u64, "{evicted} evictions");
    // The ban survived the flood; a normal client is still served.
    assert!(refused(&answer(&s, "127.0.0.2", "x.ads.test.").await));
    let m = answer(&s, "127.0.0.3", "www.test.").await;
    assert_eq!(first_answer(&m), "192.0.2.1");
    assert_eq!(counter(&s, "sinkhole_ratelimit_bans_total"), 1);
}

/// One TCP exchange from `src`.
async fn tcp_from(s: &TestServer, src: &str, name: &str) -> Message {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
    let mut c = sock.connect(s.addr).await.unwrap();
    let q = make_query(name, RecordType::A, None).to_vec().unwrap();
    c.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
    c.write_all(&q).await.unwrap();
    let len = tokio::time::timeout(ANSWERED, c.read_u16())
        .await
        .unwrap()
        .unwrap();
    let mut buf = vec![0u8; usize::from(len)];
    c.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

// See: #12
#[tokio::test(flavor = "multi_thread")]
async fn r12_rrl_drops_identical_answers_and_slips_truncated_ones_over_udp_only() {
    let (s, _up) = server("rrl_rps = 3\nrrl_slip = 2").await;
    // 12 identical queries at once from one client (a reflection's victim).
    let sock = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let n = 12;
    for _ in 0..n {
        let q = make_query("x.ads.test.", RecordType::A, Some(1232));
        sock.send_to(&q.to_vec().unwrap(), s.addr).await.unwrap();
    }
    let (mut full, mut tc) = (0, 0);
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(len)) = tokio::time::timeout(DROPPED, sock.recv(&mut buf)).await {
        let m = Message::from_vec(&buf[..len]).unwrap();
        assert_eq!(m.queries.len(), 1, "the question is echoed");
        if m.metadata.truncation {
            assert!(m.answers.is_empty(), "{m:?}");
            tc += 1;
        } else {
            assert_eq!(first_answer(&m), "0.0.0.0");
            full += 1;
        }
    }
    // 3 a second; of the 9 over it, every 2nd is truncated (4), the others dropped (5).
    assert!((3..=4).contains(&full), "{full} full answers");
    assert!((3..=5).contains(&tc), "{tc} truncated answers");
    assert!(full + tc < n, "some were dropped");
    let dropped = counter(&s, "sinkhole_rrl_dropped_total");
    assert_eq!(
        dropped + counter(&s, "sinkhole_rrl_slipped_total"),
        (n - full) as u64
    );
    // The truncated client retries over TCP: never limited there.
    let m = tcp_from(&s, "127.0.0.2", "x.ads.test.").await;
    assert!(!m.metadata.truncation);
    assert_eq!(first_answer(&m), "0.0.0.0");
    // Another network, and another name, have budgets of their own.
    assert_eq!(
        first_answer(&answer(&s, "127.0.1.2", "x.ads.test.").await),
        "0.0.0.0"
    );
    assert_eq!(
        first_answer(&answer(&s, "127.0.0.9", "www.test.").await),
        "192.0.2.1"
    );
    // A second later (on the service's clock) the budget is back.
    s.clock.advance(Duration::from_secs(1));
    let m = answer(&s, "127.0.0.2", "x.ads.test.").await;
    assert!(!m.metadata.truncation);
    // Dropped and truncated answers are counted, not logged.
    let log = records(&s.path("q.jsonl"), full + 4).await;
    assert_eq!(log.len(), full + 4, "{log:?}");
}
