//! Forwarding: answers, rcodes, flags and sections relayed; failover; the SERVFAIL deadline;
//! TCP fallback on truncation.

use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::fake_upstream::{FakeUpstream, a, aaaa, cname, dead_upstream, txt};
use crate::harness::{TestServer, first_answer, make_query, rcode, tcp_exchange, udp_exchange};

fn upstream_cfg(servers: &[std::net::SocketAddr], timeout_ms: u64) -> String {
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[upstream]\nservers = [{}]\ntimeout_ms = {timeout_ms}\n",
        list.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn forwards_answers_and_keeps_id_question_and_case() {
    let up = FakeUpstream::start(vec![
        a("www.test.", "192.0.2.1", 300),
        aaaa("www.test.", "2001:db8::1", 300),
        cname("alias.test.", "www.test.", 300),
    ])
    .await;
    let s = TestServer::start(&upstream_cfg(&[up.addr], 1000), &[]).await;
    let m = s.query("WwW.TeSt.", RecordType::A).await;
    assert_eq!(rcode(&m), 0);
    assert_eq!(first_answer(&m), "192.0.2.1");
    assert!(m.metadata.recursion_available);
    assert!(m.metadata.recursion_desired);
    let m = s.query("www.test.", RecordType::AAAA).await;
    assert_eq!(first_answer(&m), "2001:db8::1");
    let m = s.query_tcp("alias.test.", RecordType::A).await;
    assert_eq!(m.answers.len(), 2, "CNAME chain relayed: {m:?}");
    assert_eq!(up.calls(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn nxdomain_and_nodata_are_relayed_with_the_soa() {
    let up = FakeUpstream::start(vec![a("www.test.", "192.0.2.1", 300)]).await;
    let s = TestServer::start(&upstream_cfg(&[up.addr], 1000), &[]).await;
    let m = s.query("missing.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    let m = s.query("www.test.", RecordType::MX).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
}

#[tokio::test(flavor = "multi_thread")]
async fn rd_cd_and_do_bits_reach_the_upstream() {
    let up = FakeUpstream::start(vec![a("www.test.", "192.0.2.1", 300)]).await;
    let s = TestServer::start(&upstream_cfg(&[up.addr], 1000), &[]).await;
    let mut q = make_query("www.test.", RecordType::A, Some(1232));
    q.metadata.checking_disabled = true;
    q.edns.as_mut().unwrap().set_dnssec_ok(true);
    let m = udp_exchange(s.addr, &q).await.unwrap();
    assert!(m.metadata.checking_disabled, "CD echoed to the client");
    let seen = up.last_query().unwrap();
    assert!(seen.metadata.recursion_desired);
    assert!(seen.metadata.checking_disabled);
    assert!(seen.edns.as_ref().unwrap().flags().dnssec_ok);

    let mut q = make_query("www.test.", RecordType::AAAA, None);
    q.metadata.recursion_desired = false;
    let m = udp_exchange(s.addr, &q).await.unwrap();
    assert!(!m.metadata.recursion_desired);
    let seen = up.last_query().unwrap();
    assert!(!seen.metadata.recursion_desired);
    assert!(!seen.edns.as_ref().unwrap().flags().dnssec_ok);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_types_are_forwarded_like_any_other() {
    let up = FakeUpstream::start(vec![a("www.test.", "192.0.2.1", 300)]).await;
    let s = TestServer::start(&upstream_cfg(&[up.addr], 1000), &[]).await;
    let m = s.query("www.test.", RecordType::Unknown(65280)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(up.calls(), 1);
    assert_eq!(
        up.last_query().unwrap().queries[0].query_type(),
        RecordType::Unknown(65280)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_to_the_second_upstream_on_timeout_and_on_servfail() {
    let (dead, _guard) = dead_upstream();
    let good = FakeUpstream::start(vec![a("www.test.", "192.0.2.1", 300)]).await;
    let s = TestServer::start(&upstream_cfg(&[dead, good.addr], 300), &[]).await;
    let t = Instant::now();
    let m = s.query("www.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "192.0.2.1");
    assert!(
        t.elapsed() >= Duration::from_millis(290),
        "first upstream was waited for"
    );
    assert_eq!(good.calls(), 1);

    for rc in [ResponseCode::ServFail, ResponseCode::Refused] {
        let bad = FakeUpstream::start_rcode(rc).await;
        let good = FakeUpstream::start(vec![a("www.test.", "192.0.2.7", 300)]).await;
        let s = TestServer::start(&upstream_cfg(&[bad.addr, good.addr], 1000), &[]).await;
        let m = s.query("www.test.", RecordType::A).await;
        assert_eq!(first_answer(&m), "192.0.2.7", "after {rc:?}");
        assert_eq!((bad.calls(), good.calls()), (1, 1));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn servfail_by_the_deadline_when_every_upstream_is_dead() {
    let (d1, _g1) = dead_upstream();
    let (d2, _g2) = dead_upstream();
    let s = TestServer::start(&upstream_cfg(&[d1, d2], 250), &[]).await;
    for (udp, q) in [(true, "www.test."), (false, "other.test.")] {
        let t = Instant::now();
        let q = make_query(q, RecordType::A, Some(1232));
        let m = if udp {
            udp_exchange(s.addr, &q).await
        } else {
            tcp_exchange(s.addr, &q).await
        }
        .expect("SERVFAIL, never silence");
        let took = t.elapsed();
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        // timeout_ms × 2 upstreams = 500 ms, plus scheduling slack.
        assert!(took >= Duration::from_millis(450), "{took:?}");
        assert!(took < Duration::from_millis(900), "{took:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_upstream_answer_is_retried_over_tcp() {
    let big: Vec<String> = (0..8).map(|i| format!("{i}").repeat(250)).collect();
    let up = FakeUpstream::start(vec![txt("big.test.", big.clone(), 300)]).await;
    let s = TestServer::start(&upstream_cfg(&[up.addr], 1000), &[]).await;
    // Over TCP to us: the whole 2 KB answer, fetched upstream over TCP after a TC.
    let m = s.query_tcp("big.test.", RecordType::TXT).await;
    assert_eq!(m.answers.len(), 1);
    assert!(first_answer(&m).contains(&"7".repeat(250)));
    assert_eq!(up.tcp_calls(), 1);
    // Over UDP with a 512-byte limit: TC, so the client knows to retry over TCP.
    let m = s.query("big.test.", RecordType::TXT).await;
    assert!(m.metadata.truncation);
    assert!(m.answers.is_empty());
    // Over UDP with a 4096-byte EDNS buffer: the whole answer fits.
    let q = make_query("big.test.", RecordType::TXT, Some(4096));
    let m = udp_exchange(s.addr, &q).await.unwrap();
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 1);
}
