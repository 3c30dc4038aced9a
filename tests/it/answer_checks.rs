//! Checks of upstream answers (#12 item 6): a CNAME chain from the test upstream that
//! reaches a blocked name, fresh and from the cache across reloads; `blocking.response_ips`;
//! DNS rebinding protection with `rebind_allow` and a `[[forward]]` domain; the config error
//! for a CIDR with host bits set.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Record, RecordType};
use serde_json::Value;

use crate::fake_upstream::{FakeUpstream, a, aaaa, cname};
use crate::harness::{TestServer, bin, ede, first_answer, rcode};
use crate::querylog::records;

/// The A/AAAA addresses of an answer (the CNAMEs before them left out).
fn addresses(m: &hickory_proto::op::Message) -> Vec<String> {
    m.answers
        .iter()
        .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
        .map(|r| r.data.to_string())
        .collect()
}

/// The log record for `qname`, the last one once there are at least `n`.
async fn logged(s: &TestServer, n: usize, qname: &str) -> Value {
    let all = records(&s.path("q.jsonl"), n).await;
    all.into_iter()
        .rev()
        .find(|r| r["qname"] == qname)
        .unwrap_or_else(|| panic!("no record for {qname}"))
}

fn chain_zone() -> Vec<Record> {
    vec![
        cname("www.shop.test.", "edge.cdn.test.", 300),
        cname("edge.cdn.test.", "x.tracker.test.", 300),
        a("x.tracker.test.", "192.0.2.9", 300),
        aaaa("x.tracker.test.", "2001:db8::9", 300),
        cname("www.news.test.", "cdn.ok.tracker.test.", 300),
        a("cdn.ok.tracker.test.", "192.0.2.10", 300),
        cname("www.plain.test.", "edge.plain.test.", 300),
        a("edge.plain.test.", "192.0.2.11", 300),
    ]
}

fn chain_config(up: &FakeUpstream) -> String {
    format!(
        "[upstream]\nservers = [\"{}\"]\n[blocking]\nlists = [\"block.txt\"]\nallow = [\"allow.txt\"]\n\
         [log]\npath = \"q.jsonl\"\n",
        up.addr
    )
}

// See: #12
#[tokio::test(flavor = "multi_thread")]
async fn r12_a_cname_chain_to_a_blocked_name_is_blocked_and_logged_with_its_target() {
    let up = FakeUpstream::start(chain_zone()).await;
    let s = TestServer::start(
        &chain_config(&up),
        &[
            ("block.txt", "tracker.test\n"),
            ("allow.txt", "ok.tracker.test\n"),
        ],
    )
    .await;
    // The upstream's own answer holds the chain and an address.
    let m = s.query_edns("www.shop.test.", RecordType::A).await;
    assert_eq!(rcode(&m), 0);
    assert_eq!(addresses(&m), ["0.0.0.0"], "answered as the blocked name");
    assert_eq!(m.answers.len(), 1, "no CNAME relayed: {:?}", m.answers);
    assert_eq!(
        ede(&m),
        Some((15, "blocked by tracker.test (block.txt:1)".into()))
    );
    let r = logged(&s, 1, "www.shop.test").await;
    assert_eq!(r["action"], "blocked");
    assert_eq!(r["rule"], "tracker.test");
    assert_eq!(r["list"], "block.txt:1");
    assert_eq!(r["cname"], "x.tracker.test");
    assert_eq!(r["answers"], serde_json::json!(["0.0.0.0"]));
    let m = s.query("www.shop.test.", RecordType::AAAA).await;
    assert_eq!(addresses(&m), ["::"]);
    // An allow rule on the target lets its chain through; a chain of unlisted names too.
    let m = s.query("www.news.test.", RecordType::A).await;
    assert_eq!(addresses(&m), ["192.0.2.10"]);
    let r = logged(&s, 3, "www.news.test").await;
    assert_eq!(r["action"], "allowed");
    assert!(r.get("cname").is_none(), "{r}");
    let m = s.query("www.plain.test.", RecordType::A).await;
    assert_eq!(addresses(&m), ["192.0.2.11"]);
    assert_eq!(m.answers.len(), 2, "the chain relayed as it came");
}

// See: #12
#[tokio::test(flavor = "multi_thread")]
async fn r12_a_cached_chain_follows_the_lists_of_each_reload() {
    let up = FakeUpstream::start(chain_zone()).await;
    let s = TestServer::start(
        &chain_config(&up),
        &[("block.txt", "other.test\n"), ("allow.txt", "")],
    )
    .await;
    let m = s.query("www.shop.test.", RecordType::A).await;
    assert_eq!(addresses(&m), ["192.0.2.9"]);
    let m = s.query("www.shop.test.", RecordType::A).await;
    assert_eq!(addresses(&m), ["192.0.2.9"]);
    assert_eq!(up.calls(), 1, "the second answer came from the cache");
    // The list now blocks the chain's last name: the cached answer is blocked at once.
    std::fs::write(s.path("block.txt"), "other.test\ntracker.test\n").unwrap();
    s.service().reloader().reload(false).await.unwrap();
    let m = s.query("www.shop.test.", RecordType::A).await;
    assert_eq!(addresses(&m), ["0.0.0.0"]);
    assert_eq!(
        up.calls(),
        1,
        "still the cached upstream answer, checked again"
    );
    let r = logged(&s, 3, "www.shop.test").await;
    assert_eq!(
        (&r["action"], &r["rule"], &r["list"], &r["cname"]),
        (
            &"blocked".into(),
            &"tracker.test".into(),
            &"block.txt:2".into(),
            &"x.tracker.test".into()
        )
    );
    // An allow rule for the target, and the cached answer goes through again.
    std::fs::write(s.path("allow.txt"), "x.tracker.test\n").unwrap();
    s.service().reloader().reload(false).await.unwrap();
    let m = s.query("www.shop.test.", RecordType::A).await;
    assert_eq!(addresses(&m), ["192.0.2.9"]);
    assert_eq!(up.calls(), 1);
}

// See: #12
#[tokio::test(flavor = "multi_thread")]
async fn r12_answers_holding_response_ips_are_blocked_and_not_cached() {
    let up = FakeUpstream::start(vec![
        a("ad.test.", "203.0.113.7", 300),
        aaaa("ad6.test.", "2001:db8:ad::1", 300),
        cname("www.site.test.", "ad.test.", 300),
        a("ok.test.", "192.0.2.1", 300),
    ])
    .await;
    let s = TestServer::start(
        &format!(
            "[upstream]\nservers = [\"{}\"]\n[blocking]\nmode = \"nxdomain\"\n\
             response_ips = [\"203.0.113.0/24\", \"ads.nets\"]\n[log]\npath = \"q.jsonl\"\n",
            up.addr
        ),
        &[("ads.nets", "# ad servers\n2001:db8:ad::/48\n")],
    )
    .await;
    let m = s.query("ad.test.", RecordType::A).await;
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NXDomain,
        "blocking.mode"
    );
    assert!(m.answers.is_empty());
    let r = logged(&s, 1, "ad.test").await;
    assert_eq!(
        (&r["action"], &r["rule"]),
        (&"blocked".into(), &"203.0.113.0/24".into())
    );
    let list = r["list"].as_str().unwrap();
    assert!(list.ends_with("sinkhole.toml:8"), "{list}");
    // Through a CNAME too, and from a file of networks.
    let m = s.query("www.site.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = s.query("ad6.test.", RecordType::AAAA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let r = logged(&s, 3, "ad6.test").await;
    assert_eq!(r["rule"], "2001:db8:ad::/48");
    assert!(r["list"].as_str().unwrap().ends_with("ads.nets:2"), "{r}");
    let calls = up.calls();
    s.query("ad.test.", RecordType::A).await;
    assert_eq!(up.calls(), calls + 1, "a blocked answer is not cached");
    let m = s.query("ok.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "192.0.2.1");
}

// See: #12
#[tokio::test(flavor = "multi_thread")]
async fn r12_rebinding_is_blocked_unless_allowed_or_forwarded() {
    let main = FakeUpstream::start(vec![
        a("evil.test.", "192.168.1.1", 300),
        aaaa("evil6.test.", "fd00::1", 300),
        a("local.evil.test.", "127.0.0.1", 300),
        a("nas.home.test.", "10.0.0.9", 300),
        a("www.test.", "192.0.2.1", 300),
    ])
    .await;
    let corp = FakeUpstream::start(vec![a("intranet.corp.test.", "10.0.0.5", 300)]).await;
    let cfg = |extra: &str| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_threads = 2\n[upstream]\nservers = [\"{}\"]\n\
             [blocking]\n{extra}\n[[forward]]\ndomains = [\"corp.test\"]\nservers = [\"{}\"]\n\
             [log]\npath = \"q.jsonl\"\n",
            main.addr, corp.addr
        )
    };
    let s = TestServer::start(&cfg("rebind_allow = [\"home.test\"]"), &[]).await;
    let m = s.query("evil.test.", RecordType::A).await;
    assert_eq!(
        addresses(&m),
        ["0.0.0.0"],
        "a private address for a public name"
    );
    let r = logged(&s, 1, "evil.test").await;
    assert_eq!(
        (&r["action"], &r["rule"], &r["list"]),
        (&"blocked".into(), &"rebinding".into(), &"builtin".into())
    );
    assert_eq!(
        addresses(&s.query("evil6.test.", RecordType::AAAA).await),
        ["::"]
    );
    assert_eq!(
        addresses(&s.query("local.evil.test.", RecordType::A).await),
        ["0.0.0.0"]
    );
    // Under rebind_allow, under a forward domain, and public addresses: as they came.
    assert_eq!(
        addresses(&s.query("nas.home.test.", RecordType::A).await),
        ["10.0.0.9"]
    );
    assert_eq!(
        addresses(&s.query("intranet.corp.test.", RecordType::A).await),
        ["10.0.0.5"]
    );
    assert_eq!(
        addresses(&s.query("www.test.", RecordType::A).await),
        ["192.0.2.1"]
    );
    // A cached answer is judged again after a reload that changes the protection.
    let calls = main.calls();
    assert_eq!(
        addresses(&s.query("nas.home.test.", RecordType::A).await),
        ["10.0.0.9"]
    );
    assert_eq!(main.calls(), calls, "cached");
    std::fs::write(s.path("sinkhole.toml"), cfg("")).unwrap();
    s.service().reloader().reload(true).await.unwrap();
    assert_eq!(
        addresses(&s.query("nas.home.test.", RecordType::A).await),
        ["0.0.0.0"],
        "no longer allowed"
    );
    std::fs::write(s.path("sinkhole.toml"), cfg("rebind_protection = false")).unwrap();
    s.service().reloader().reload(true).await.unwrap();
    assert_eq!(
        addresses(&s.query("evil.test.", RecordType::A).await),
        ["192.168.1.1"]
    );
}

// See: #12
#[test]
fn r12_a_response_ip_with_host_bits_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sinkhole.toml");
    std::fs::write(
        &path,
        "[blocking]\nresponse_ips = [\n  \"198.51.100.0/24\",\n  \"203.0.113.7/24\",\n]\n",
    )
    .unwrap();
    let out = bin().args(["config", "check"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:4:3: blocking.response_ips: \"203.0.113.7/24\": host bits set (the network is 203.0.113.0/24)",
            path.display()
        )),
        "{err}"
    );
}
