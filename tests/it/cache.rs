//! The cache: hits skip the upstream, TTLs count down, negative answers are cached.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, first_answer, query_exact_case};

async fn setup(extra: &str) -> (FakeUpstream, TestServer) {
    let up = FakeUpstream::start(vec![
        a("www.test.", "192.0.2.1", 300),
        a("short.test.", "192.0.2.2", 2),
    ])
    .await;
    let s = TestServer::start(
        &format!("[upstream]\nservers = [\"{}\"]\n{extra}", up.addr),
        &[],
    )
    .await;
    (up, s)
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_query_is_answered_from_cache_with_ttl_counting_down() {
    let (up, s) = setup("").await;
    let m1 = s.query("www.test.", RecordType::A).await;
    assert_eq!(m1.answers[0].ttl, 300);
    // A different spelling of the same name is the same cache entry, but answered with the
    // client's own spelling.
    let m2 = query_exact_case(s.addr, "WWW.tEsT.").await;
    assert_eq!(first_answer(&m2), "192.0.2.1");
    assert_eq!(up.calls(), 1, "second query must not reach the upstream");
    // TTLs count down with the entry's age.
    s.clock.advance(Duration::from_millis(2100));
    let m3 = s.query("www.test.", RecordType::A).await;
    assert_eq!(up.calls(), 1);
    let ttl = m3.answers[0].ttl;
    assert!((297..=298).contains(&ttl), "ttl {ttl}");
    // Another type is another entry.
    s.query("www.test.", RecordType::AAAA).await;
    assert_eq!(up.calls(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_expire_with_their_ttl() {
    let (up, s) = setup("").await;
    s.query("short.test.", RecordType::A).await;
    s.query("short.test.", RecordType::A).await;
    assert_eq!(up.calls(), 1);
    s.clock.advance(Duration::from_millis(2100));
    s.query("short.test.", RecordType::A).await;
    assert_eq!(up.calls(), 2, "expired entry is fetched again");
}

#[tokio::test(flavor = "multi_thread")]
async fn negative_answers_are_cached_by_the_soa_minimum() {
    let (up, s) = setup("").await;
    let m = s.query("nope.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = s.query("nope.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    s.query("www.test.", RecordType::MX).await;
    s.query("www.test.", RecordType::MX).await;
    assert_eq!(up.calls(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn min_and_max_ttl_clamp_kept_and_served_ttls() {
    let (up, s) = setup("[cache]\nmin_ttl = 60\nmax_ttl = 120\n").await;
    let m = s.query("www.test.", RecordType::A).await;
    assert_eq!(m.answers[0].ttl, 120, "300 clamped to max_ttl");
    let m = s.query("short.test.", RecordType::A).await;
    assert_eq!(m.answers[0].ttl, 60, "2 raised to min_ttl");
    s.clock.advance(Duration::from_millis(2100));
    s.query("short.test.", RecordType::A).await;
    assert_eq!(up.calls(), 2, "kept for min_ttl, not its own 2 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_entries_bounds_the_cache() {
    let (_up, s) = setup("[cache]\nmax_entries = 16\n").await;
    for i in 0..200 {
        s.query(&format!("n{i}.test."), RecordType::A).await;
    }
    assert!(s.service().pipeline().cache().len() <= 16);
}

#[tokio::test(flavor = "multi_thread")]
async fn rd_do_and_cd_are_part_of_the_cache_key() {
    let (up, s) = setup("").await;
    s.query("www.test.", RecordType::A).await;
    // RD=0: may get a referral from a real upstream, so never served an RD=1 answer.
    let mut q = crate::harness::make_query("www.test.", RecordType::A, None);
    q.metadata.recursion_desired = false;
    crate::harness::udp_exchange(s.addr, &q).await.unwrap();
    assert!(!up.last_query().unwrap().metadata.recursion_desired);
    let mut q = crate::harness::make_query("www.test.", RecordType::A, Some(1232));
    q.edns.as_mut().unwrap().set_dnssec_ok(true);
    crate::harness::udp_exchange(s.addr, &q).await.unwrap();
    assert_eq!(up.calls(), 3);
    crate::harness::udp_exchange(s.addr, &q).await.unwrap();
    assert_eq!(up.calls(), 3, "same flags: cached");
}

// See: #10 (the cache was bounded in entries, not bytes: 600 names with 60 KB TXT answers
// took RSS from 8 to 82 MiB).
#[tokio::test(flavor = "multi_thread")]
async fn r10_max_bytes_bounds_the_cache_with_large_answers() {
    use crate::fake_upstream::txt;
    let names = 48;
    // About 20 KiB of TXT data per name: 48 of them are ~1 MiB of answers.
    let strings = vec!["y".repeat(250); 80];
    let records = (0..names)
        .map(|i| txt(&format!("big{i}.test."), strings.clone(), 300))
        .collect();
    let up = FakeUpstream::start(records).await;
    let s = TestServer::start(
        &format!(
            "[upstream]\nservers = [\"{}\"]\n[cache]\nmax_bytes = \"512KiB\"\n",
            up.addr
        ),
        &[],
    )
    .await;
    for i in 0..names {
        let m = s.query_tcp(&format!("big{i}.test."), RecordType::TXT).await;
        assert_eq!(
            m.answers.len(),
            1,
            "big{i}.test: the answer is relayed whole"
        );
    }
    let cache = s.service().pipeline().cache();
    let (n, bytes) = (cache.len(), cache.bytes());
    assert!(bytes <= 512 * 1024, "{bytes} bytes in {n} entries");
    assert!(n >= 8, "large answers are still cached: {n} entries");
    // The most recent answer is still cached: asked again, the upstream is not.
    let calls = up.calls();
    s.query_tcp(&format!("big{}.test.", names - 1), RecordType::TXT)
        .await;
    assert_eq!(up.calls(), calls);
}
