//! ANY queries are answered locally as RFC 8482 recommends (one HINFO record), never
//! forwarded; blocked names still get the blocked answer.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, make_query, udp_exchange};
use crate::querylog::records;

// See: #10 (ANY queries were forwarded as they are).
#[tokio::test(flavor = "multi_thread")]
async fn r10_any_is_answered_with_rfc8482_hinfo_and_not_forwarded() {
    let up = FakeUpstream::start(vec![a("www.test.", "192.0.2.1", 300)]).await;
    let s = TestServer::start(
        &format!(
            "[upstream]\nservers = [\"{}\"]\n[blocking]\nlists = [\"block.txt\"]\n[log]\npath = \"q.jsonl\"\n",
            up.addr
        ),
        &[("block.txt", "ads.test\n")],
    )
    .await;
    for edns in [None, Some(1232)] {
        let q = make_query("WWW.test.", RecordType::ANY, edns);
        let m = udp_exchange(s.addr, &q).await.expect("no answer");
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1, "{m:?}");
        let r = &m.answers[0];
        assert!(r.name.to_ascii().eq_ignore_ascii_case("www.test."), "{r}");
        assert_eq!(r.ttl, 3600);
        let RData::HINFO(h) = &r.data else {
            panic!("not HINFO: {r}")
        };
        assert_eq!((&*h.cpu, &*h.os), (&b"RFC8482"[..], &b""[..]));
        assert_eq!(
            m.edns.is_some(),
            edns.is_some(),
            "OPT only when the query had one"
        );
        assert!(m.authorities.is_empty() && m.additionals.is_empty());
    }
    let tcp = s.query_tcp("other.test.", RecordType::ANY).await;
    assert!(matches!(tcp.answers[0].data, RData::HINFO(_)));
    assert_eq!(up.calls(), 0, "ANY never reaches the upstream");
    // Blocking comes first: a blocked name gets the blocked answer, not HINFO.
    let m = s.query("x.ads.test.", RecordType::ANY).await;
    assert!(
        m.answers.iter().all(|r| !matches!(r.data, RData::HINFO(_))),
        "{m:?}"
    );
    assert_eq!(up.calls(), 0);
    let v = records(&s.path("q.jsonl"), 4).await;
    let local: Vec<_> = v.iter().filter(|r| r["qtype"] == "ANY").collect();
    assert_eq!(local.len(), 4);
    for r in &local {
        let want = if r["qname"] == "x.ads.test" {
            "blocked"
        } else {
            "local"
        };
        assert_eq!(r["action"], want, "{r}");
        assert_eq!(r["rcode"], "NOERROR", "{r}");
    }
}
