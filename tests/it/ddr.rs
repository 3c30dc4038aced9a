//! DDR (RFC 9462) pointing at ourselves, and kdig (knot-dnsutils) as a real DoT and DoH
//! client: with encrypted listeners and `server.name`, `_dns.resolver.arpa` SVCB names our
//! endpoints (parsed by hickory, a client library); a client that follows them gets
//! filtered answers over TLS and HTTPS; without a name the NODATA of the bypass signal stays.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::svcb::{SVCB, SvcParamKey, SvcParamValue};
use hickory_proto::rr::{RData, RecordType};

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::TestServer;
use crate::tls::{NAME, pair};

async fn start(name: Option<&str>) -> (TestServer, FakeUpstream) {
    let p = pair();
    let up = FakeUpstream::start(vec![a("www.example.test.", "192.0.2.80", 300)]).await;
    let name = name.map_or(String::new(), |n| format!("name = \"{n}\"\n"));
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_threads = 1\n{name}\
         tls_listen = [\"127.0.0.1:0\"]\nhttps_listen = [\"127.0.0.1:0\"]\n\
         tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\
         [upstream]\nservers = [\"{}\"]\n[blocking]\nlists = [\"block.txt\"]\n",
        up.addr
    );
    let files = [
        ("cert.pem", p.cert_pem.as_str()),
        ("key.pem", p.key_pem.as_str()),
        ("block.txt", "ads.test\n"),
    ];
    (TestServer::start(&toml, &files).await, up)
}

pub(crate) fn svcb(m: &Message) -> Vec<SVCB> {
    m.answers
        .iter()
        .map(|r| match &r.data {
            RData::SVCB(s) => s.clone(),
            other => panic!("not SVCB: {other:?}"),
        })
        .collect()
}

pub(crate) fn port(s: &SVCB) -> u16 {
    s.svc_params
        .iter()
        .find_map(|(_, v)| match v {
            SvcParamValue::Port(p) => Some(*p),
            _ => None,
        })
        .unwrap()
}

pub(crate) fn alpn(s: &SVCB) -> Vec<String> {
    s.svc_params
        .iter()
        .find_map(|(k, v)| match (k, v) {
            (SvcParamKey::Alpn, SvcParamValue::Alpn(a)) => Some(a.0.clone()),
            _ => None,
        })
        .unwrap()
}

pub(crate) fn hint(s: &SVCB) -> Vec<IpAddr> {
    s.svc_params
        .iter()
        .find_map(|(_, v)| match v {
            SvcParamValue::Ipv4Hint(h) => Some(h.0.iter().map(|a| IpAddr::V4(a.0)).collect()),
            _ => None,
        })
        .unwrap_or_default()
}

/// kdig's answer section for `name` A through `how` (`+tls` or `+https`) at `port`,
/// trusting the test's certificate.
fn kdig(s: &TestServer, how: &str, port: u16, name: &str) -> String {
    let ca = s.dir.path().join("cert.pem");
    let out = Command::new("kdig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            how,
            &format!("+tls-ca={}", ca.display()),
            &format!("+tls-hostname={NAME}"),
            "+short",
            "+timeout=3",
            "+retry=0",
            name,
            "A",
        ])
        .output()
        .expect("kdig runs (knot-dnsutils; .ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "kdig {how} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn ddr_names_our_endpoints_and_kdig_follows_them_over_tls_and_https() {
    let (s, _up) = start(Some(NAME)).await;
    for qname in ["_dns.resolver.arpa.", "_dns.dns.test."] {
        let m = s.query(qname, RecordType::SVCB).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        let recs = svcb(&m);
        assert_eq!(recs.len(), 2, "{qname}: {m:?}");
        let (dot, doh) = (&recs[0], &recs[1]);
        assert_eq!(dot.svc_priority, 1);
        assert_eq!(doh.svc_priority, 2);
        for r in &recs {
            assert_eq!(r.target_name.to_ascii(), "dns.test.");
            assert_eq!(hint(r), [IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        }
        assert_eq!(alpn(dot), ["dot"]);
        assert_eq!(port(dot), s.tls_addr().port());
        assert_eq!(alpn(doh), ["h2"]);
        assert_eq!(port(doh), s.https_addr().port());
    }

    // A client that follows them: filtered over both.
    let dot = s.tls_addr().port();
    let doh = s.https_addr().port();
    assert_eq!(kdig(&s, "+tls", dot, "www.example.test"), "192.0.2.80");
    assert_eq!(kdig(&s, "+tls", dot, "ads.test"), "0.0.0.0");
    assert_eq!(kdig(&s, "+https", doh, "www.example.test"), "192.0.2.80");
    assert_eq!(kdig(&s, "+https", doh, "x.ads.test"), "0.0.0.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_server_name_ddr_stays_nodata() {
    let (s, _up) = start(None).await;
    let m = s.query("_dns.resolver.arpa.", RecordType::SVCB).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty(), "{m:?}");
}
