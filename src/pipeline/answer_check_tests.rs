//! Unit tests of the answer-check stage: each step alone, on answers built with hickory.

use super::super::flow::Local;
use super::super::request::test_support::{fixed_now, query_bytes, request};
use super::*;
use crate::blocklist::BlocklistBuilder;
use crate::dns::wire::{EDE_BLOCKED, TYPE_A};
use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record};

fn name(n: &str) -> Name {
    Name::from_ascii(n).unwrap()
}

/// An upstream answer for `qname` A with `records` (owner, data) in the answer section.
fn answer_for(qname: &str, records: &[(&str, RData)]) -> (Request<'static>, Response) {
    let req = request(qname, TYPE_A, true, fixed_now());
    let mut m = Message::from_vec(&query_bytes(qname, TYPE_A, false)).unwrap();
    m.metadata.message_type = MessageType::Response;
    for (owner, data) in records {
        m.answers
            .push(Record::from_rdata(name(owner), 300, data.clone()));
    }
    let resp = Response::parse(&m.to_vec().unwrap(), &req.query, 0x1234, 0, 86_400).unwrap();
    (req, resp)
}

fn a(ip: &str) -> RData {
    match ip.parse::<IpAddr>().unwrap() {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

fn cname(target: &str) -> RData {
    RData::CNAME(CNAME(name(target)))
}

/// An answer for `www.test` A: its own A records, with `extra` answer records besides.
fn answer(extra: &[&str]) -> (Request<'static>, Response) {
    let mut records = vec![("www.test.", a("192.0.2.1"))];
    records.extend(extra.iter().map(|n| (*n, a("192.0.2.1"))));
    answer_for("www.test", &records)
}

/// Lists blocking `tracker.test` and `ads.test`, allowing `ok.ads.test` and `shop.test`.
fn blocking() -> Blocking {
    blocking_in(crate::config::BlockMode::Sinkhole)
}

/// The same lists, answering in `mode`.
fn blocking_in(mode: crate::config::BlockMode) -> Blocking {
    let mut cfg = crate::config::Config::embedded_default().blocking;
    cfg.mode = mode;
    let mut b = BlocklistBuilder::new();
    let src = b.add_source("lists/ads.txt");
    b.insert("tracker.test", Kind::Block, false, false, src, 1);
    b.insert("ads.test", Kind::Block, false, false, src, 2);
    b.insert("ok.ads.test", Kind::Allow, false, false, src, 3);
    b.insert("shop.test", Kind::Allow, false, false, src, 4);
    Blocking::new(&cfg, b.build())
}

/// The stage for a config text.
fn stage(toml: &str) -> AnswerCheck {
    AnswerCheck::new(&Config::parse(toml, "t.toml", None).unwrap())
}

fn local(a: Answer) -> (Local, Option<RuleRef>) {
    match a {
        Answer {
            action: Action::Blocked,
            reply: Reply::Local(l),
            rule,
        } => (l, rule),
        other => panic!("expected a blocked answer, got {other:?}"),
    }
}

#[test]
fn an_answer_within_the_bailiwick_passes_unchanged() {
    let (req, resp) = answer(&[]);
    let kept = AnswerCheck::default()
        .check(&req, resp.clone(), &blocking(), true)
        .unwrap();
    assert_eq!(kept, resp, "byte for byte");
}

#[test]
fn a_record_for_another_name_is_stripped_before_caching() {
    let (req, resp) = answer(&["bank.example."]);
    assert_eq!(resp.answer_count(), 2, "parse keeps what came");
    let kept = AnswerCheck::default()
        .check(&req, resp, &blocking(), true)
        .unwrap();
    assert_eq!(kept.answer_count(), 1);
    let mut out = Vec::new();
    kept.write(&mut out, &req.query, 0, 512);
    let m = Message::from_vec(&out).unwrap();
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].name.to_ascii(), "www.test.");
}

#[test]
fn a_chain_reaching_a_blocked_name_is_answered_as_that_name() {
    let (req, resp) = answer_for(
        "www.shop.example",
        &[
            ("www.shop.example.", cname("edge.cdn.example.")),
            ("edge.cdn.example.", cname("X.Tracker.test.")),
            ("x.tracker.test.", a("198.51.100.9")),
        ],
    );
    let targets: Vec<&[u8]> = resp.cname_targets().iter().map(|t| &**t).collect();
    assert_eq!(targets, [&b"edge.cdn.example"[..], b"x.tracker.test"]);
    let s = AnswerCheck::default();
    let b = blocking();
    let resp = s.check(&req, resp, &b, true).expect("steps 1-3 pass");
    let (l, rule) = local(s.cname(&req, &resp, &b, true).expect("blocked"));
    assert_eq!(l.address, Some(IpAddr::from([0, 0, 0, 0])), "blocking.mode");
    assert_eq!(
        l.ede,
        Some((
            EDE_BLOCKED,
            "blocked by tracker.test (lists/ads.txt:1)".into()
        ))
    );
    let rule = rule.expect("details kept");
    assert_eq!(rule.cname().as_deref(), Some("x.tracker.test"));
    let m = rule.get("www.shop.example").expect("the target's rule");
    assert_eq!((m.rule, m.kind, m.line), ("tracker.test", Kind::Block, 1));
    assert!(s.cname(&req, &resp, &b, false).unwrap().rule.is_none());
}

#[test]
fn allow_rules_on_the_target_or_the_query_name_let_the_chain_through() {
    let b = blocking();
    let s = AnswerCheck::default();
    let (req, resp) = answer_for(
        "www.example",
        &[
            ("www.example.", cname("cdn.ok.ads.test.")),
            ("cdn.ok.ads.test.", a("198.51.100.9")),
        ],
    );
    assert!(s.cname(&req, &resp, &b, true).is_none(), "target allowed");
    let (req, resp) = answer_for(
        "www.shop.test",
        &[
            ("www.shop.test.", cname("x.tracker.test.")),
            ("x.tracker.test.", a("198.51.100.9")),
        ],
    );
    assert!(
        s.cname(&req, &resp, &b, true).is_none(),
        "query name allowed"
    );
}

#[test]
fn a_cached_answer_without_a_chain_is_not_looked_at() {
    let (req, resp) = answer(&[]);
    assert!(resp.cname_targets().is_empty());
    let a = Answer::new(
        Action::Cached,
        Reply::Upstream {
            resp: Arc::new(resp),
            age: 3,
            server: None,
            stale: false,
        },
    );
    assert!(
        AnswerCheck::default()
            .cached(&req, &a, &blocking(), true)
            .is_none()
    );
}

#[test]
fn a_cname_loop_and_a_hostile_chain_end() {
    let (req, resp) = answer_for(
        "a.example",
        &[
            ("a.example.", cname("b.example.")),
            ("b.example.", cname("a.example.")),
        ],
    );
    assert_eq!(resp.cname_targets().len(), 1);
    let s = AnswerCheck::default();
    assert!(s.cname(&req, &resp, &blocking(), true).is_none());
}

#[test]
fn an_address_in_response_ips_blocks_the_answer_and_names_the_network() {
    let s = stage(
        "[blocking]\nresponse_ips = [\"203.0.113.0/24\", \"203.0.113.128/25\", \"2001:db8:ad::/48\"]\n",
    );
    let (req, resp) = answer_for("ads.example", &[("ads.example.", a("203.0.113.200"))]);
    let nx = blocking_in(crate::config::BlockMode::NxDomain);
    let (l, rule) = local(s.check(&req, resp, &nx, true).unwrap_err());
    assert_eq!(l.rcode, rcode::NXDOMAIN, "the deciding blocking.mode");
    assert_eq!(l.soa_labels, Some(2), "an SOA for the query name");
    assert_eq!(
        l.ede,
        Some((
            EDE_BLOCKED,
            "blocked by response IP 203.0.113.128/25 (t.toml:2)".into()
        ))
    );
    let m = rule.unwrap();
    let m = m.get("ads.example").unwrap();
    assert_eq!(
        (m.rule, m.source, m.line),
        ("203.0.113.128/25", "t.toml", 2)
    );
    let (req, resp) = answer_for("v6.example", &[("v6.example.", a("2001:db8:ad::1"))]);
    assert!(s.check(&req, resp, &blocking(), false).is_err());
    let (req, resp) = answer_for("ok.example", &[("ok.example.", a("203.0.114.1"))]);
    assert!(s.check(&req, resp, &blocking(), false).is_ok());
}

#[test]
fn private_addresses_for_public_names_are_rebinding() {
    let s = stage(
        "[blocking]\nrebind_allow = [\"plex.direct\"]\n[[forward]]\ndomains = [\"corp.example\"]\nservers = [\"192.0.2.53\"]\n",
    );
    let b = blocking();
    for ip in [
        "192.168.1.1",
        "10.1.2.3",
        "127.0.0.1",
        "0.0.0.0",
        "::ffff:10.0.0.1",
        "fd00::1",
        "fe80::1",
        "::1",
    ] {
        let (req, resp) = answer_for("evil.example", &[("evil.example.", a(ip))]);
        let (l, rule) = local(s.check(&req, resp, &b, true).unwrap_err());
        assert_eq!(l.address, Some(IpAddr::from([0, 0, 0, 0])), "{ip}");
        assert!(matches!(rule, Some(RuleRef::Builtin("rebinding"))), "{ip}");
    }
    for name in [
        "a.b.plex.direct",
        "plex.direct",
        "intranet.corp.example",
        "nas",
        "nas.lan",
        "printer.home.arpa",
        "1.1.168.192.in-addr.arpa",
        "router.local",
        "localhost",
    ] {
        let (req, resp) = answer_for(name, &[(&format!("{name}."), a("192.168.1.1"))]);
        assert!(s.check(&req, resp, &b, true).is_ok(), "{name}");
    }
    // Public addresses, and the documentation ranges, pass.
    for ip in [
        "192.0.2.1",
        "8.8.8.8",
        "172.32.0.1",
        "2001:db8::1",
        "100.64.0.1",
    ] {
        let (req, resp) = answer_for("ok.example", &[("ok.example.", a(ip))]);
        assert!(s.check(&req, resp, &b, true).is_ok(), "{ip}");
    }
    // `notplex.direct` is not under `plex.direct`.
    let (req, resp) = answer_for("notplex.direct", &[("notplex.direct.", a("10.0.0.1"))]);
    assert!(s.check(&req, resp, &b, true).is_err());
    // Off: anything goes.
    let off = stage("[blocking]\nrebind_protection = false\n");
    let (req, resp) = answer_for("evil.example", &[("evil.example.", a("127.0.0.1"))]);
    assert!(off.check(&req, resp, &b, true).is_ok());
}

#[test]
fn rebinding_ranges() {
    for ip in [
        "0.1.2.3",
        "10.0.0.0",
        "127.255.255.255",
        "169.254.1.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "fe80::1",
        "febf::1",
        "fec0::1",
        "fc00::1",
        "fdff::1",
        "::ffff:192.168.1.1",
    ] {
        assert!(is_rebind_private(ip.parse().unwrap()), "{ip}");
    }
    for ip in [
        "1.1.1.1",
        "172.15.255.255",
        "172.32.0.0",
        "192.0.2.1",
        "198.51.100.1",
        "100.64.0.1",
        "224.0.0.1",
        "2001:db8::1",
        "2606:4700::1111",
        "ff02::1",
        "::ffff:8.8.8.8",
    ] {
        assert!(!is_rebind_private(ip.parse().unwrap()), "{ip}");
    }
}
