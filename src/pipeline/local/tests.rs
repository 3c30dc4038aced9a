//! The local-answers stage alone: queries in, wire answers out.

use hickory_proto::op::Message;
use hickory_proto::rr::RData;

use super::super::request::test_support::{fixed_now, request};
use super::*;
use crate::config::Config;
use crate::dns::wire::{TYPE_A, TYPE_AAAA, TYPE_ANY, TYPE_CNAME, TYPE_PTR, TYPE_TXT, rcode};
use crate::pipeline::Detail;

const TYPE_MX: u16 = 15;

fn stage(toml: &str, hosts: &[(&str, &str)]) -> (LocalRecords, LocalReport) {
    let cfg = Config::parse(toml, "t.toml", None).unwrap();
    let files: Vec<(String, String)> = hosts
        .iter()
        .map(|(n, t)| ((*n).to_string(), (*t).to_string()))
        .collect();
    LocalRecords::build(&cfg.local, &cfg.file, &files, &cfg.forward)
}

/// The stage's wire answer to `name`/`qtype`, or `None` for `Next`.
fn ask(s: &LocalRecords, name: &str, qtype: u16) -> Option<Message> {
    let req = request(name, qtype, true, fixed_now());
    match s.check(&req, true) {
        Flow::Next => None,
        Flow::Answer(a) => {
            assert_eq!(a.action, Action::Local);
            let mut out = Vec::new();
            let o = a.write(&req, &mut out, true);
            assert!(matches!(o.detail, Detail::Records(_)));
            Some(Message::from_vec(&out).unwrap())
        }
    }
}

fn data(m: &Message) -> Vec<String> {
    m.answers.iter().map(|r| r.data.to_string()).collect()
}

const LAN: &str = "[[local.records]]\nname = \"nas.lan\"\na = [\"192.168.1.10\", \"192.168.1.11\"]\naaaa = [\"fd00::10\"]\ntxt = [\"v=spf1 -all\"]\n\
    [[local.records]]\nname = \"www.lan\"\ncname = \"nas.lan\"\n\
    [[local.records]]\nname = \"ext.lan\"\ncname = \"example.com\"\n\
    [[local.records]]\nname = \"*.lab.lan\"\na = [\"10.0.0.1\"]\n\
    [[local.records]]\nname = \"*.b.lab.lan\"\na = [\"10.0.0.2\"]\n\
    [[local.records]]\nname = \"x.b.lab.lan\"\naaaa = [\"fd00::2\"]\n\
    [[local.records]]\nname = \"20.1.168.192.in-addr.arpa\"\nptr = \"printer.lan\"\n";

#[test]
fn local_names_answer_authoritatively_by_type() {
    let (s, report) = stage(LAN, &[]);
    let m = ask(&s, "NAS.lan", TYPE_A).unwrap();
    assert!(m.metadata.authoritative);
    assert_eq!(u16::from(m.metadata.response_code), rcode::NOERROR);
    assert_eq!(data(&m), ["192.168.1.10", "192.168.1.11"]);
    assert_eq!(m.answers[0].ttl, 300);
    assert_eq!(m.answers[0].name.to_ascii(), "NAS.lan.");
    assert_eq!(data(&ask(&s, "nas.lan", TYPE_AAAA).unwrap()), ["fd00::10"]);
    assert_eq!(
        data(&ask(&s, "nas.lan", TYPE_TXT).unwrap()),
        ["v=spf1 -all"]
    );
    // NODATA with an SOA for a type the name has not, ANY included.
    for t in [TYPE_MX, TYPE_ANY, TYPE_PTR] {
        let m = ask(&s, "nas.lan", t).unwrap();
        assert!(m.metadata.authoritative);
        assert_eq!(u16::from(m.metadata.response_code), rcode::NOERROR);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities.len(), 1);
    }
    assert!(ask(&s, "other.lan", TYPE_A).is_none());
    assert!(
        ask(&s, "sub.nas.lan", TYPE_A).is_none(),
        "only the name itself"
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("\"example.com\" of \"ext.lan\"")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn a_cname_is_followed_through_local_names_only() {
    let (s, _) = stage(LAN, &[]);
    let m = ask(&s, "www.lan", TYPE_A).unwrap();
    assert_eq!(data(&m), ["nas.lan.", "192.168.1.10", "192.168.1.11"]);
    assert_eq!(m.answers[0].name.to_ascii(), "www.lan.");
    assert_eq!(m.answers[1].name.to_ascii(), "nas.lan.");
    assert_eq!(data(&ask(&s, "www.lan", TYPE_CNAME).unwrap()), ["nas.lan."]);
    // A type the target has not: the CNAME alone.
    assert_eq!(data(&ask(&s, "www.lan", TYPE_MX).unwrap()), ["nas.lan."]);
    let m = ask(&s, "ext.lan", TYPE_A).unwrap();
    assert_eq!(data(&m), ["example.com."]);
    assert_eq!(u16::from(m.metadata.response_code), rcode::NOERROR);
}

#[test]
fn exact_names_beat_wildcards_and_the_most_specific_wildcard_wins() {
    let (s, _) = stage(LAN, &[]);
    assert_eq!(data(&ask(&s, "pc1.lab.lan", TYPE_A).unwrap()), ["10.0.0.1"]);
    assert_eq!(
        data(&ask(&s, "a.b.c.lab.lan", TYPE_A).unwrap()),
        ["10.0.0.1"]
    );
    assert_eq!(data(&ask(&s, "y.b.lab.lan", TYPE_A).unwrap()), ["10.0.0.2"]);
    assert_eq!(data(&ask(&s, "b.lab.lan", TYPE_A).unwrap()), ["10.0.0.1"]);
    let m = ask(&s, "x.b.lab.lan", TYPE_A).unwrap();
    assert!(m.answers.is_empty(), "the exact name answers NODATA");
    assert!(
        ask(&s, "lab.lan", TYPE_A).is_none(),
        "not the wildcard's own name"
    );
}

#[test]
fn addresses_answer_their_reverse_names_unless_a_ptr_is_given() {
    let (s, _) = stage(
        LAN,
        &[("hosts", "192.168.1.20 printer\n192.168.1.10 other-nas\n")],
    );
    assert_eq!(
        data(&ask(&s, "10.1.168.192.in-addr.arpa", TYPE_PTR).unwrap()),
        ["nas.lan."],
        "the first name with the address"
    );
    assert_eq!(
        data(&ask(&s, "20.1.168.192.in-addr.arpa", TYPE_PTR).unwrap()),
        ["printer.lan."],
        "the explicit ptr"
    );
    let v6 = reverse::reverse_name("fd00::10".parse().unwrap());
    assert_eq!(data(&ask(&s, &v6, TYPE_PTR).unwrap()), ["nas.lan."]);
    assert_eq!(data(&ask(&s, "printer", TYPE_A).unwrap()), ["192.168.1.20"]);
    // No PTR for wildcards.
    let m = ask(&s, "1.0.0.10.in-addr.arpa", TYPE_PTR).unwrap();
    assert_eq!(u16::from(m.metadata.response_code), rcode::NXDOMAIN);
}

#[test]
fn private_reverse_names_get_nxdomain_unless_forwarded() {
    let toml = "[[forward]]\ndomains = [\"1.168.192.in-addr.arpa\"]\nservers = [\"192.168.1.1\"]\n";
    let (s, _) = stage(toml, &[]);
    for (name, zone) in [
        ("5.0.0.10.in-addr.arpa", "10.in-addr.arpa."),
        ("5.2.168.192.in-addr.arpa", "168.192.in-addr.arpa."),
        ("1.0.0.127.in-addr.arpa", "127.in-addr.arpa."),
        ("1.0.64.100.in-addr.arpa", "64.100.in-addr.arpa."),
        ("b.e.f.ip6.arpa", "b.e.f.ip6.arpa."),
    ] {
        let m = ask(&s, name, TYPE_PTR).unwrap();
        assert_eq!(
            u16::from(m.metadata.response_code),
            rcode::NXDOMAIN,
            "{name}"
        );
        assert!(m.metadata.authoritative);
        assert_eq!(m.authorities[0].name.to_ascii(), zone, "{name}");
        assert!(ask(&s, name, TYPE_A).is_some(), "any type");
    }
    assert!(
        ask(&s, "5.1.168.192.in-addr.arpa", TYPE_PTR).is_none(),
        "forwarded"
    );
    assert!(
        ask(&s, "8.8.8.8.in-addr.arpa", TYPE_PTR).is_none(),
        "public"
    );
    assert!(
        ask(&s, "1.0.32.172.in-addr.arpa", TYPE_PTR).is_none(),
        "public"
    );
    assert!(ask(&s, "in-addr.arpa", TYPE_PTR).is_none());
    let (all, _) = stage(
        "[[forward]]\ndomains = [\"in-addr.arpa\"]\nservers = [\"192.168.1.1\"]\n",
        &[],
    );
    assert!(
        ask(&all, "5.0.0.10.in-addr.arpa", TYPE_PTR).is_none(),
        "a wider rule takes them too"
    );
    assert!(ask(&LocalRecords::default(), "5.0.0.10.in-addr.arpa", TYPE_PTR).is_some());
}

#[test]
fn hosts_lines_merge_and_aliases_are_not_given_addresses() {
    let (s, report) = stage(
        LAN,
        &[(
            "lan.hosts",
            "192.168.1.12 nas.lan\n10.9.9.9 www.lan\nbad line here\n",
        )],
    );
    assert_eq!(
        data(&ask(&s, "nas.lan", TYPE_A).unwrap()),
        ["192.168.1.10", "192.168.1.11", "192.168.1.12"]
    );
    let f = &report.files[0];
    assert_eq!((f.lines, f.skipped), (1, 2));
    assert!(
        f.errors
            .iter()
            .any(|e| e.line == 2 && e.reason.contains("alias")),
        "{f:?}"
    );
    assert!(f.errors.iter().any(|e| e.line == 3), "{f:?}");
    assert_eq!(data(&ask(&s, "www.lan", TYPE_A).unwrap())[0], "nas.lan.");
}

#[test]
fn the_log_names_the_record_and_its_line() {
    let (s, _) = stage(LAN, &[("h", "# x\n10.1.1.1 pc.lan\n")]);
    let rule = |name: &str, t: u16| {
        let req = request(name, t, false, fixed_now());
        let Flow::Answer(a) = s.check(&req, true) else {
            panic!("{name}")
        };
        let r = a.rule.unwrap();
        let m = r.get(name).unwrap();
        (m.rule.to_string(), m.source.to_string(), m.line)
    };
    assert_eq!(
        rule("nas.lan", TYPE_A),
        ("nas.lan".into(), "t.toml".into(), 2)
    );
    assert_eq!(
        rule("pc1.lab.lan", TYPE_A),
        ("*.lab.lan".into(), "t.toml".into(), 13)
    );
    assert_eq!(rule("pc.lan", TYPE_A), ("pc.lan".into(), "h".into(), 2));
    assert_eq!(
        rule("9.9.168.192.in-addr.arpa", TYPE_PTR),
        ("168.192.in-addr.arpa".into(), String::new(), 0)
    );
}

#[test]
fn many_top_level_labels_turn_the_pre_check_off() {
    let mut toml = String::new();
    for i in 0..=MAX_TAILS {
        toml.push_str(&format!(
            "[[local.records]]\nname = \"x.tld{i}\"\na = [\"10.0.0.{i}\"]\n"
        ));
    }
    let (s, _) = stage(&toml, &[]);
    assert!(s.tails.is_none());
    assert_eq!(data(&ask(&s, "x.tld8", TYPE_A).unwrap()), ["10.0.0.8"]);
    let (few, _) = stage(LAN, &[]);
    assert_eq!(few.tails.as_ref().map(|t| t.len()), Some(2), "lan, arpa");
    assert!(!few.may_hold(b"www.example.com"));
    assert!(few.may_hold(b"a.lan") && few.may_hold(b"lan"));
}

#[test]
fn a_long_answer_is_truncated_for_udp() {
    let txt: Vec<String> = (0..5)
        .map(|i| format!("\"{}{i}\"", "x".repeat(200)))
        .collect();
    let toml = format!(
        "[[local.records]]\nname = \"big.lan\"\ntxt = [{}]\n",
        txt.join(", ")
    );
    let (s, _) = stage(&toml, &[]);
    let req = request("big.lan", TYPE_TXT, false, fixed_now());
    let Flow::Answer(a) = s.check(&req, true) else {
        panic!()
    };
    let mut out = Vec::new();
    let o = a.write(&req, &mut out, true);
    assert!(matches!(o.detail, Detail::Truncated));
    let m = Message::from_vec(&out).unwrap();
    assert!(m.metadata.truncation && m.metadata.authoritative);
    assert!(m.answers.is_empty());
    // Over EDNS 1232 it fits.
    assert_eq!(ask(&s, "big.lan", TYPE_TXT).unwrap().answers.len(), 5);
    match &ask(&s, "big.lan", TYPE_TXT).unwrap().answers[0].data {
        RData::TXT(_) => {}
        other => panic!("{other:?}"),
    }
}
