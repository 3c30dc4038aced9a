//! Local records (`[local]`, split horizon) and private reverse zones, on the wire: answers
//! with AA set that no upstream saw, NODATA for a missing type, wildcards, hosts files,
//! reloads, private reverse lookups answered NXDOMAIN here (the main upstream never sees
//! them) unless a `[[forward]]` rule takes them to its own server, and config errors.

use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode};
use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, bin, first_answer, rcode};
use crate::querylog::records;
use crate::raw_upstream::RawUpstream;

fn answers(m: &Message) -> Vec<String> {
    m.answers.iter().map(|r| r.data.to_string()).collect()
}

const RECORDS: &str = "[local]\nfiles = [\"lan.hosts\"]\n\
    [[local.records]]\nname = \"nas.lan\"\na = [\"192.168.1.10\"]\naaaa = [\"fd00::10\"]\ntxt = [\"owner=it\"]\n\
    [[local.records]]\nname = \"www.lan\"\ncname = \"nas.lan\"\n\
    [[local.records]]\nname = \"*.lab.lan\"\na = [\"10.0.0.1\"]\nttl = 30\n\
    [[local.records]]\nname = \"20.1.168.192.in-addr.arpa\"\nptr = \"printer.lan\"\n";

const HOSTS: &str = "# the LAN\n192.168.1.20 printer printer.lan\nnot-an-address x.lan\n";

// See: #12
#[tokio::test(flavor = "multi_thread")]
async fn r12_local_records_answer_authoritatively_and_no_upstream_sees_them() {
    let main = FakeUpstream::start(vec![a("www.test.", "192.0.2.1", 300)]).await;
    let toml = format!(
        "[upstream]\nservers = [\"{}\"]\n[blocking]\nlists = [\"block.txt\"]\n[log]\npath = \"q.jsonl\"\n{RECORDS}",
        main.addr
    );
    let s = TestServer::start(&toml, &[("lan.hosts", HOSTS), ("block.txt", "nas.lan\n")]).await;
    let check = |m: &Message, want: &[&str]| {
        assert!(m.metadata.authoritative, "AA: {m:?}");
        assert_eq!(rcode(m), 0);
        assert_eq!(answers(m), want);
    };
    // Local answers come before blocking: the list's nas.lan is the admin's own name.
    check(&s.query("nas.lan.", RecordType::A).await, &["192.168.1.10"]);
    check(
        &s.query_tcp("nas.lan.", RecordType::AAAA).await,
        &["fd00::10"],
    );
    check(&s.query("nas.lan.", RecordType::TXT).await, &["owner=it"]);
    check(
        &s.query("www.lan.", RecordType::A).await,
        &["nas.lan.", "192.168.1.10"],
    );
    check(&s.query("www.lan.", RecordType::CNAME).await, &["nas.lan."]);
    check(
        &s.query("20.1.168.192.in-addr.arpa.", RecordType::PTR).await,
        &["printer.lan."],
    );
    check(
        &s.query("10.1.168.192.in-addr.arpa.", RecordType::PTR).await,
        &["nas.lan."],
    );
    let m = s.query("PC7.Lab.lan.", RecordType::A).await;
    check(&m, &["10.0.0.1"]);
    assert_eq!(m.answers[0].ttl, 30);
    assert!(
        m.answers[0]
            .name
            .to_ascii()
            .eq_ignore_ascii_case("pc7.lab.lan.")
    );
    check(&s.query("printer.", RecordType::A).await, &["192.168.1.20"]);
    check(
        &s.query("printer.lan.", RecordType::A).await,
        &["192.168.1.20"],
    );
    // NODATA (with an SOA) for a type the name has not.
    let m = s.query_edns("nas.lan.", RecordType::MX).await;
    check(&m, &[]);
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(main.calls(), 0, "the upstream never saw a local name");
    // Other names still go upstream.
    assert_eq!(
        first_answer(&s.query("www.test.", RecordType::A).await),
        "192.0.2.1"
    );
    assert_eq!(main.calls(), 1);

    let v = records(&s.path("q.jsonl"), 12).await;
    let nas = v
        .iter()
        .find(|r| r["qname"] == "nas.lan" && r["qtype"] == "A")
        .unwrap();
    assert_eq!(nas["action"], "local");
    assert_eq!(nas["rule"], "nas.lan");
    assert_eq!(
        nas["list"],
        format!("{}:13", s.path("sinkhole.toml").display())
    );
    assert_eq!(nas["answers"], serde_json::json!(["192.168.1.10"]));
    let printer = v.iter().find(|r| r["qname"] == "printer").unwrap();
    assert_eq!(printer["list"], "lan.hosts:2");
}

// See: #12
#[tokio::test(flavor = "multi_thread")]
async fn r12_reloads_apply_changed_local_records_and_hosts_files() {
    let main = FakeUpstream::start(vec![]).await;
    let cfg = |ip: &str| {
        format!(
            "[upstream]\nservers = [\"{}\"]\n[local]\nfiles = [\"lan.hosts\"]\n\
             [[local.records]]\nname = \"nas.lan\"\na = [\"{ip}\"]\n",
            main.addr
        )
    };
    let s = TestServer::start(&cfg("10.0.0.1"), &[("lan.hosts", "10.0.0.5 pc.lan\n")]).await;
    assert_eq!(
        first_answer(&s.query("nas.lan.", RecordType::A).await),
        "10.0.0.1"
    );
    // SIGHUP's path: the config is read again.
    std::fs::write(s.path("sinkhole.toml"), cfg("10.0.0.2")).unwrap();
    s.service().reloader().reload(true).await.unwrap();
    assert_eq!(
        first_answer(&s.query("nas.lan.", RecordType::A).await),
        "10.0.0.2"
    );
    // A hosts file is watched like a list file.
    let tmp = s.path("lan.hosts.tmp");
    std::fs::write(&tmp, "10.0.0.6 pc.lan\n10.0.0.7 new.lan\n").unwrap();
    std::fs::rename(&tmp, s.path("lan.hosts")).unwrap();
    let t = Instant::now();
    while first_answer(&s.query("pc.lan.", RecordType::A).await) != "10.0.0.6" {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the hosts file was not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        first_answer(&s.query("new.lan.", RecordType::A).await),
        "10.0.0.7"
    );
    assert_eq!(
        answers(&s.query("7.0.0.10.in-addr.arpa.", RecordType::PTR).await),
        ["new.lan."]
    );
    assert_eq!(main.calls(), 0);
}

/// A PTR answer to `q` pointing to `target`.
fn ptr_reply(q: &Message, target: &str) -> Message {
    let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_query(q.queries[0].clone());
    m.add_answer(Record::from_rdata(
        q.queries[0].name().clone(),
        60,
        RData::PTR(PTR(Name::from_str(target).unwrap())),
    ));
    m
}

// See: #12
#[tokio::test(flavor = "multi_thread")]
async fn r12_private_reverse_lookups_never_reach_the_main_upstream() {
    let main = FakeUpstream::start(vec![]).await;
    let router = RawUpstream::start(|q| vec![(Duration::ZERO, ptr_reply(q, "host.home."))]).await;
    let toml = format!(
        "[upstream]\nservers = [\"{}\"]\n\
         [[forward]]\ndomains = [\"168.192.in-addr.arpa\"]\nservers = [\"{}\"]\n\
         [[local.records]]\nname = \"nas.lan\"\na = [\"192.168.1.10\"]\n\
         [[local.records]]\nname = \"5.0.0.10.in-addr.arpa\"\nptr = \"gw.lan\"\n",
        main.addr, router.addr
    );
    let s = TestServer::start(&toml, &[]).await;
    for (name, zone) in [
        ("9.0.0.10.in-addr.arpa.", "10.in-addr.arpa."),
        ("1.0.16.172.in-addr.arpa.", "16.172.in-addr.arpa."),
        ("1.0.0.127.in-addr.arpa.", "127.in-addr.arpa."),
        ("4.3.254.169.in-addr.arpa.", "254.169.in-addr.arpa."),
        (
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
            "d.f.ip6.arpa.",
        ),
        (
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.e.f.ip6.arpa.",
            "8.e.f.ip6.arpa.",
        ),
    ] {
        let m = s.query(name, RecordType::PTR).await;
        assert_eq!(rcode(&m), 3, "{name}: NXDOMAIN");
        assert!(m.metadata.authoritative, "{name}");
        assert_eq!(m.authorities[0].name.to_ascii(), zone, "{name}");
    }
    assert_eq!(
        rcode(&s.query("9.0.0.10.in-addr.arpa.", RecordType::A).await),
        3
    );
    // A local record answers under a private zone; an address its reverse name, even under
    // a forward rule's domain (local records come first).
    assert_eq!(
        answers(&s.query("5.0.0.10.in-addr.arpa.", RecordType::PTR).await),
        ["gw.lan."]
    );
    assert_eq!(
        answers(&s.query("10.1.168.192.in-addr.arpa.", RecordType::PTR).await),
        ["nas.lan."]
    );
    assert_eq!(
        main.calls(),
        0,
        "no private reverse name reached [upstream]"
    );
    assert!(router.queries().is_empty());
    // The forward rule's own server answers the rest of its zone.
    let m = s.query("77.1.168.192.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(answers(&m), ["host.home."]);
    assert!(!m.metadata.authoritative);
    assert_eq!(router.queries().len(), 1);
    assert_eq!(main.calls(), 0);
    // A public reverse name goes upstream as before.
    s.query("8.8.8.8.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(main.calls(), 1);
}

// See: #12
#[test]
fn r12_config_check_names_bad_local_records_and_hints_at_a_router() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.toml");
    let p = path.display();
    std::fs::write(
        &path,
        "[[local.records]]\nname = \"nas.lan\"\na = [\"192.168.1.10\"]\naaaa = [\"fd00::1\", \"fd00::zz\"]\n\
         [[local.records]]\nname = \"a.*.lan\"\ntxt = [\"x\"]\n",
    )
    .unwrap();
    let out = bin().args(["config", "check"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{p}:4:20: local.records.aaaa: \"fd00::zz\": not an IPv6 address"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{p}:6:8: local.records.name: \"a.*.lan\": a wildcard"
        )),
        "{err}"
    );

    std::fs::write(
        dir.path().join("lan.hosts"),
        "10.0.0.1 ok.lan\n10.0.0.300 bad.lan\n",
    )
    .unwrap();
    std::fs::write(
        &path,
        "[upstream]\nservers = [\"192.168.1.1\"]\n[local]\nfiles = [\"lan.hosts\"]\n",
    )
    .unwrap();
    let out = bin().args(["config", "check"]).arg(&path).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("lan.hosts:2: warning: skipped \"10.0.0.300 bad.lan\" (\"10.0.0.300\" is not an IP address)"),
        "{err}"
    );
    assert!(
        err.contains("warning: ")
            && err.contains("[upstream] server 192.168.1.1:53 is on a private network"),
        "{err}"
    );
    assert!(
        err.contains("[[forward]] domains = [\"168.192.in-addr.arpa\"]"),
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 local names"), "{stdout}");
}
