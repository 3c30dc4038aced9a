//! `upstream.mode = "recursive"`: sinkhole resolves from the test's own root (`root_hints`)
//! down a hierarchy of in-process authoritative servers on 127.53.N.x:53 (`hierarchy`):
//! delegations, CNAMEs across zones, loops and long chains, dead delegations, negative
//! answers, and the rest of the chain (blocking, `[[forward]]`, cache, log) around it.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use hickory_proto::rr::{RData, RecordType};

use crate::fake_upstream::{self, FakeUpstream};
use crate::harness::{TestServer, ede, first_answer, rcode};
use crate::hierarchy::{Authority, Silent, a, cname, delegate, hints, ip};
use crate::querylog::records;

/// The root (`.`), the TLD `test.` and the zones `example.test.` and `other.test.`, on the
/// test's own network `127.53.net.0/24`; `extra` records go into `example.test.`.
struct Tree {
    root: Authority,
    tld: Authority,
    example: Authority,
    other: Authority,
}

impl Tree {
    async fn start(
        net: u8,
        example: Vec<hickory_proto::rr::Record>,
        tld_extra: Vec<hickory_proto::rr::Record>,
    ) -> Self {
        let root = Authority::start(".", ip(net, 1), delegate("test.", ip(net, 2))).await;
        let mut tld_records = delegate("example.test.", ip(net, 3));
        tld_records.extend(delegate("other.test.", ip(net, 4)));
        tld_records.extend(tld_extra);
        let tld = Authority::start("test.", ip(net, 2), tld_records).await;
        let example = Authority::start("example.test.", ip(net, 3), example).await;
        let other = Authority::start(
            "other.test.",
            ip(net, 4),
            vec![
                a("cdn.other.test.", "192.0.2.20"),
                cname("back.other.test.", "cross.example.test."),
            ],
        )
        .await;
        Self {
            root,
            tld,
            example,
            other,
        }
    }

    fn calls(&self) -> usize {
        self.root.calls() + self.tld.calls() + self.example.calls() + self.other.calls()
    }
}

/// sinkhole in recursive mode from `root`, with `extra` config. The test hierarchy is not
/// signed: DNSSEC validation (on by default in recursive mode, from the real root's keys)
/// is off here; `dnssec.rs` has a signed one.
async fn sinkhole(root: Ipv4Addr, extra: &str, files: &[(&str, &str)]) -> TestServer {
    let hints = hints(root);
    let mut all = vec![("root.hints", hints.as_str())];
    all.extend_from_slice(files);
    TestServer::start(
        &format!(
            "[upstream]\nmode = \"recursive\"\ndnssec = \"off\"\nroot_hints = \"{{dir}}/root.hints\"\nrecursion_timeout_ms = 2000\n{extra}"
        ),
        &all,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_two_delegations_down_resolves_then_comes_from_the_cache() {
    let tree = Tree::start(1, vec![a("www.example.test.", "192.0.2.10")], vec![]).await;
    let s = sinkhole(tree.root.addr, "[log]\npath = \"q.jsonl\"\n", &[]).await;
    let m = s.query("www.example.test.", RecordType::A).await;
    assert_eq!(rcode(&m), 0);
    assert_eq!(first_answer(&m), "192.0.2.10");
    assert!(m.metadata.recursion_available);
    // The zone's server set AA; the answer relayed is not authoritative here, and carries
    // no AD sinkhole did not validate.
    assert!(!m.metadata.authoritative, "{m:?}");
    assert!(!m.metadata.authentic_data, "{m:?}");
    assert!(tree.root.calls() >= 1 && tree.tld.calls() >= 1);
    // QNAME minimisation (RFC 9156): the root and the TLD learn only the next label.
    let leaked = |a: &Authority| a.seen().iter().any(|q| q.starts_with("www."));
    assert!(!leaked(&tree.root), "{:?}", tree.root.seen());
    assert!(!leaked(&tree.tld), "{:?}", tree.tld.seen());
    let at_auth = tree.example.calls();
    assert!(at_auth >= 1);
    // The second query is the cache's: nobody in the hierarchy hears of it.
    let before = tree.calls();
    let m = s.query("www.example.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "192.0.2.10");
    assert_eq!(tree.calls(), before, "answered from the cache");
    assert_eq!(tree.example.calls(), at_auth);
    // NXDOMAIN passes through, with the zone's SOA for negative caching.
    let m = s.query("nope.example.test.", RecordType::A).await;
    assert_eq!(rcode(&m), 3);
    assert!(
        m.authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA && r.name.to_string() == "example.test."),
        "{m:?}"
    );
    // NODATA too.
    let m = s.query("www.example.test.", RecordType::AAAA).await;
    assert_eq!((rcode(&m), m.answers.len()), (0, 0));
    // The log says the answer came by recursion.
    // (A forward is logged after its answer is sent: the cached query may come first.)
    let v = records(&s.path("q.jsonl"), 4).await;
    let www: Vec<_> = v
        .iter()
        .filter(|r| r["qname"] == "www.example.test" && r["qtype"] == "A")
        .collect();
    let allowed = www
        .iter()
        .find(|r| r["action"] == "allowed")
        .expect("allowed");
    assert_eq!(allowed["upstream"], "recursive", "{allowed:?}");
    let cached = www
        .iter()
        .find(|r| r["action"] == "cached")
        .expect("cached");
    assert_eq!(cached["upstream"], serde_json::Value::Null, "{cached:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cname_across_zones_resolves() {
    let tree = Tree::start(
        2,
        vec![cname("www.example.test.", "cdn.other.test.")],
        vec![],
    )
    .await;
    let s = sinkhole(tree.root.addr, "", &[]).await;
    let m = s.query("www.example.test.", RecordType::A).await;
    assert_eq!(rcode(&m), 0, "{m:?}");
    let has = |f: &dyn Fn(&RData) -> bool| m.answers.iter().any(|r| f(&r.data));
    assert!(
        has(&|d| matches!(d, RData::CNAME(c) if c.0.to_string() == "cdn.other.test.")),
        "{m:?}"
    );
    assert!(
        has(&|d| matches!(d, RData::A(a) if a.0 == Ipv4Addr::new(192, 0, 2, 20))),
        "{m:?}"
    );
    assert!(tree.other.calls() >= 1);
    // The zone was asked the question itself, once: no NS query for the name first (as
    // hickory's recursor made, whose NS query got the CNAME back, hickory-dns #2788).
    let asked: Vec<String> = tree
        .example
        .seen()
        .into_iter()
        .filter(|q| q.starts_with("www.example.test."))
        .collect();
    assert_eq!(asked, ["www.example.test. A"], "{:?}", tree.example.seen());
}

#[tokio::test(flavor = "multi_thread")]
async fn cname_loops_get_servfail_within_the_deadline() {
    let tree = Tree::start(
        3,
        vec![
            // Inside one zone: the server hands out the whole loop at once.
            cname("loop.example.test.", "loop2.example.test."),
            cname("loop2.example.test.", "loop.example.test."),
            // Across zones: example → other → example.
            cname("cross.example.test.", "back.other.test."),
        ],
        vec![],
    )
    .await;
    let s = sinkhole(tree.root.addr, "", &[]).await;
    for qname in ["loop.example.test.", "cross.example.test."] {
        let t = Instant::now();
        let m = s.query_edns(qname, RecordType::A).await;
        assert_eq!(rcode(&m), 2, "{qname}: {m:?}");
        assert_eq!(
            ede(&m),
            Some((22, "resolution from the root failed".into())),
            "{qname}"
        );
        assert!(m.answers.is_empty(), "{qname}: {m:?}");
        assert!(
            t.elapsed() < Duration::from_millis(2500),
            "{qname}: {:?}",
            t.elapsed()
        );
    }
    assert!(tree.calls() < 60, "bounded work: {} queries", tree.calls());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_of_30_cnames_is_cut() {
    // c0 → c1 → … → c30 (A), in one zone; and d0 → … → d30 alternating between zones.
    let (ex, other2) = crate::hierarchy::chains("other2");
    let tree = Tree::start(4, ex, delegate("other2.test.", ip(4, 5))).await;
    let o2 = Authority::start("other2.test.", ip(4, 5), other2).await;
    let s = sinkhole(tree.root.addr, "", &[]).await;
    // A chain of 15 is fine.
    let m = s.query("c15.example.test.", RecordType::A).await;
    assert_eq!((rcode(&m), m.answers.len()), (0, 16), "{m:?}");
    for qname in ["c0.example.test.", "d0.example.test."] {
        let before = tree.calls() + o2.calls();
        let t = Instant::now();
        let m = s.query(qname, RecordType::A).await;
        assert_eq!(rcode(&m), 2, "{qname}: {m:?}");
        assert!(
            t.elapsed() < Duration::from_millis(2500),
            "{qname}: {:?}",
            t.elapsed()
        );
        let spent = tree.calls() + o2.calls() - before;
        assert!(spent <= 100, "{qname}: bounded work, {spent} queries");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_delegation_ends_by_the_deadline_and_others_are_unaffected() {
    // dead.test. is delegated to 50 servers that never answer.
    let mut dead = vec![];
    for h in 10..60 {
        let ns = format!("ns{h}.dead.test.");
        dead.push(hickory_proto::rr::Record::from_rdata(
            crate::hierarchy::name("dead.test."),
            300,
            RData::NS(hickory_proto::rr::rdata::NS(crate::hierarchy::name(&ns))),
        ));
        dead.push(a(&ns, &ip(5, h).to_string()));
    }
    let _silent: Vec<Silent> = (10..60).map(|h| Silent::bind(ip(5, h))).collect();
    let tree = Tree::start(5, vec![a("www.example.test.", "192.0.2.10")], dead).await;
    let s = sinkhole(tree.root.addr, "", &[]).await;
    let t = Instant::now();
    let (slow, fast) = tokio::join!(s.query_edns("www.dead.test.", RecordType::A), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = Instant::now();
        let m = s.query("www.example.test.", RecordType::A).await;
        (m, t.elapsed())
    });
    let waited = t.elapsed();
    assert_eq!(rcode(&slow), 2, "{slow:?}");
    assert_eq!(
        ede(&slow),
        Some((22, "resolution from the root timed out".into()))
    );
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_millis(3000),
        "SERVFAIL at the 2 s deadline, not before nor long after: {waited:?}"
    );
    let (m, took) = fast;
    assert_eq!(first_answer(&m), "192.0.2.10");
    assert!(
        took < Duration::from_millis(1000),
        "another client waited {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_referral_loop_gets_servfail_with_bounded_work() {
    // ping.test. is served by ns.pong.test. and pong.test. by ns.ping.test., no glue.
    let ns = |zone: &str, target: &str| {
        hickory_proto::rr::Record::from_rdata(
            crate::hierarchy::name(zone),
            300,
            RData::NS(hickory_proto::rr::rdata::NS(crate::hierarchy::name(target))),
        )
    };
    let tree = Tree::start(
        7,
        vec![],
        vec![
            ns("ping.test.", "ns.pong.test."),
            ns("pong.test.", "ns.ping.test."),
        ],
    )
    .await;
    let s = sinkhole(tree.root.addr, "", &[]).await;
    let t = Instant::now();
    let m = s.query("www.ping.test.", RecordType::A).await;
    assert_eq!(rcode(&m), 2, "{m:?}");
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    assert!(tree.calls() < 60, "bounded work: {} queries", tree.calls());
}

#[tokio::test(flavor = "multi_thread")]
async fn blocked_names_are_never_resolved_and_forward_zones_still_forward() {
    let tree = Tree::start(6, vec![a("ads.example.test.", "192.0.2.66")], vec![]).await;
    let corp = FakeUpstream::start(vec![fake_upstream::a(
        "intranet.corp.test.",
        "10.0.0.5",
        300,
    )])
    .await;
    let s = sinkhole(
        tree.root.addr,
        &format!(
            "[blocking]\nlists = [\"block.txt\"]\n[[forward]]\ndomains = [\"corp.test\"]\nservers = [\"{}\"]\n",
            corp.addr
        ),
        &[("block.txt", "ads.example.test\n")],
    )
    .await;
    let m = s.query("ads.example.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "0.0.0.0");
    assert_eq!(tree.calls(), 0, "a blocked name is never resolved");
    let m = s.query("intranet.corp.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "10.0.0.5");
    assert_eq!(corp.calls(), 1);
    assert_eq!(tree.calls(), 0, "the forward zone never went to the root");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zone_with_dead_name_servers_resolves_through_its_live_one() {
    // half.test. has three name servers; the first two never answer. Each is waited for
    // upstream.timeout_ms (here 300 ms), then the next is asked (hickory's recursor, used
    // before, waited 5 s for one server and 5 s for all: the live one was never asked).
    let mut recs = vec![];
    for h in 10..13 {
        let ns = format!("ns{h}.half.test.");
        recs.push(hickory_proto::rr::Record::from_rdata(
            crate::hierarchy::name("half.test."),
            300,
            RData::NS(hickory_proto::rr::rdata::NS(crate::hierarchy::name(&ns))),
        ));
        recs.push(a(&ns, &ip(8, h).to_string()));
    }
    let dead = [Silent::bind(ip(8, 10)), Silent::bind(ip(8, 11))];
    let tree = Tree::start(8, vec![], recs).await;
    let live = Authority::start(
        "half.test.",
        ip(8, 12),
        vec![
            a("www.half.test.", "192.0.2.50"),
            a("x.half.test.", "192.0.2.51"),
        ],
    )
    .await;
    let s = sinkhole(tree.root.addr, "timeout_ms = 300\n", &[]).await;
    let t = Instant::now();
    let m = s.query("www.half.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "192.0.2.50", "{m:?}");
    assert!(
        t.elapsed() < Duration::from_millis(1900),
        "{:?}",
        t.elapsed()
    );
    assert!(live.calls() >= 1);
    assert_eq!(
        dead.iter().map(Silent::drain).sum::<usize>(),
        2,
        "each dead one asked once"
    );
    // The next name goes to the server that answered last: the dead ones are not asked.
    let m = s.query("x.half.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "192.0.2.51", "{m:?}");
    assert_eq!(dead.iter().map(Silent::drain).sum::<usize>(), 0);
}
