//! Blocking: every mode, suffix and allowlist precedence, case and trailing dot, EDE.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, ede, first_answer, query_exact_case, rcode};

const LIST: &str =
    "# test list\nexample.test\n\nads.test # inline comment\nnot a domain\nbad..test\n";

async fn server(mode: &str, up: &FakeUpstream) -> TestServer {
    TestServer::start(
        &format!(
            "[upstream]\nservers = [\"{}\"]\n[blocking]\nmode = \"{mode}\"\nttl = 42\nlists = [\"block.txt\"]\nallow = [\"allow.txt\"]\n",
            up.addr
        ),
        &[("block.txt", LIST), ("allow.txt", "mail.example.test\n")],
    )
    .await
}

fn zone() -> Vec<hickory_proto::rr::Record> {
    vec![
        a("www.example.test.", "192.0.2.10", 300),
        a("mail.example.test.", "192.0.2.11", 300),
        a("x.mail.example.test.", "192.0.2.12", 300),
        a("notexample.test.", "192.0.2.13", 300),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn sinkhole_mode_answers_a_aaaa_and_nodata() {
    let up = FakeUpstream::start(zone()).await;
    let s = server("sinkhole", &up).await;
    let m = s.query("www.example.test.", RecordType::A).await;
    assert_eq!(rcode(&m), 0);
    assert_eq!(first_answer(&m), "0.0.0.0");
    assert_eq!(m.answers[0].ttl, 42);
    let m = s.query("a.b.example.test.", RecordType::AAAA).await;
    assert_eq!(first_answer(&m), "::");
    let m = s.query("example.test.", RecordType::TXT).await;
    assert_eq!(rcode(&m), 0);
    assert!(m.answers.is_empty());
    let soa = &m.authorities[0];
    assert_eq!(soa.ttl, 42);
    match &soa.data {
        RData::SOA(s) => assert_eq!(s.minimum, 42),
        other => panic!("not an SOA: {other:?}"),
    }
    assert_eq!(up.calls(), 0, "blocked names never reach the upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_sinkhole_addresses() {
    let up = FakeUpstream::start(zone()).await;
    let s = TestServer::start(
        &format!(
            "[upstream]\nservers = [\"{}\"]\n[blocking]\nsinkhole_ipv4 = \"192.168.1.2\"\nsinkhole_ipv6 = \"fd00::2\"\nlists = [\"b.txt\"]\n",
            up.addr
        ),
        &[("b.txt", "ads.test\n")],
    )
    .await;
    assert_eq!(
        first_answer(&s.query("x.ads.test.", RecordType::A).await),
        "192.168.1.2"
    );
    assert_eq!(
        first_answer(&s.query("x.ads.test.", RecordType::AAAA).await),
        "fd00::2"
    );
    // Default TTL is 10 s.
    assert_eq!(s.query("ads.test.", RecordType::A).await.answers[0].ttl, 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn nxdomain_nodata_and_refused_modes() {
    let up = FakeUpstream::start(zone()).await;
    for (mode, want) in [
        ("nxdomain", ResponseCode::NXDomain),
        ("nodata", ResponseCode::NoError),
        ("refused", ResponseCode::Refused),
    ] {
        let s = server(mode, &up).await;
        for rt in [RecordType::A, RecordType::AAAA, RecordType::MX] {
            let m = s.query("www.example.test.", rt).await;
            assert_eq!(m.metadata.response_code, want, "{mode} {rt}");
            assert!(m.answers.is_empty(), "{mode} {rt}");
            if mode == "refused" {
                assert!(m.authorities.is_empty());
            } else {
                let soa = &m.authorities[0];
                assert_eq!(soa.ttl, 42, "{mode}");
                // The SOA is owned by the blocked zone (the rule), for negative caching.
                assert_eq!(soa.name.to_ascii(), "example.test.");
                match &soa.data {
                    RData::SOA(s) => assert_eq!(s.minimum, 42),
                    other => panic!("not an SOA: {other:?}"),
                }
            }
        }
    }
    assert_eq!(up.calls(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn suffix_match_never_blocks_parent_or_lookalike_and_allow_wins() {
    let up = FakeUpstream::start(zone()).await;
    let s = server("sinkhole", &up).await;
    assert_eq!(
        first_answer(&s.query("notexample.test.", RecordType::A).await),
        "192.0.2.13"
    );
    // The parent `test` is not blocked: NXDOMAIN comes from the upstream.
    let m = s.query("other.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // Allowlisted subtree resolves normally; its siblings stay blocked.
    assert_eq!(
        first_answer(&s.query("mail.example.test.", RecordType::A).await),
        "192.0.2.11"
    );
    assert_eq!(
        first_answer(&s.query("x.mail.example.test.", RecordType::A).await),
        "192.0.2.12"
    );
    assert_eq!(
        first_answer(&s.query("www.example.test.", RecordType::A).await),
        "0.0.0.0"
    );
    assert_eq!(up.calls(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn case_and_trailing_dot_do_not_matter() {
    let up = FakeUpstream::start(zone()).await;
    let s = TestServer::start(
        &format!(
            "[upstream]\nservers = [\"{}\"]\n[blocking]\nlists = [\"b.txt\"]\n",
            up.addr
        ),
        &[("b.txt", "Tracker.Example.TEST.\n")],
    )
    .await;
    let m = query_exact_case(s.addr, "WWW.tracker.EXAMPLE.test.").await;
    assert_eq!(first_answer(&m), "0.0.0.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn blocked_answers_carry_ede_15_naming_the_rule_when_edns() {
    let up = FakeUpstream::start(zone()).await;
    for mode in ["sinkhole", "nxdomain", "nodata", "refused"] {
        let s = server(mode, &up).await;
        let m = s.query_edns("deep.ads.test.", RecordType::A).await;
        let (code, text) = ede(&m).unwrap_or_else(|| panic!("{mode}: no EDE in {m:?}"));
        assert_eq!(code, 15, "{mode}");
        assert!(
            text.contains("ads.test") && text.contains("block.txt:4"),
            "{mode}: {text}"
        );
        // Without EDNS there is no OPT at all.
        let m = s.query("deep.ads.test.", RecordType::A).await;
        assert!(m.edns.is_none());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bypass_signals_are_answered_whatever_the_mode() {
    let up = FakeUpstream::start(zone()).await;
    for mode in ["sinkhole", "refused"] {
        let s = server(mode, &up).await;
        for (name, rt, want) in [
            (
                "use-application-dns.net.",
                RecordType::A,
                ResponseCode::NXDomain,
            ),
            (
                "Use-Application-DNS.net.",
                RecordType::AAAA,
                ResponseCode::NXDomain,
            ),
            ("mask.icloud.com.", RecordType::A, ResponseCode::NXDomain),
            (
                "mask-h2.icloud.com.",
                RecordType::AAAA,
                ResponseCode::NXDomain,
            ),
            (
                "_dns.resolver.arpa.",
                RecordType::SVCB,
                ResponseCode::NoError,
            ),
        ] {
            let m = s.query_edns(name, rt).await;
            assert_eq!(m.metadata.response_code, want, "{mode} {name}");
            assert!(
                m.answers.is_empty(),
                "{mode} {name}: no 0.0.0.0 for a signal"
            );
            assert_eq!(m.authorities[0].record_type(), RecordType::SOA, "{name}");
            assert_eq!(ede(&m).map(|e| e.0), Some(15), "{name}");
        }
    }
    assert_eq!(up.calls(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn bypass_signals_off_are_forwarded_and_doh_names_are_blocked_like_a_list() {
    let up = FakeUpstream::start(zone()).await;
    let s = TestServer::start(
        &format!(
            "[upstream]\nservers = [\"{}\"]\n[blocking]\nbypass_signals = false\ndoh_names = \"doh.txt\"\n",
            up.addr
        ),
        &[("doh.txt", "# DoH servers\ndns.example.test\n")],
    )
    .await;
    s.query("use-application-dns.net.", RecordType::A).await;
    assert_eq!(up.calls(), 1, "forwarded when bypass_signals = false");
    let m = s.query_edns("dns.example.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "0.0.0.0");
    assert!(ede(&m).unwrap().1.contains("doh.txt:2"));
}
