//! Targets `trust_anchor` and `root_hints`: the files `upstream.trust_anchor` and
//! `upstream.root_hints` name, through their parsers, seeded with real-shaped lines (the
//! root's DNSKEY as `dig . DNSKEY` prints it, a DS line, IANA's named.root).
//!
//! Properties: every skipped line has a line number inside the text and a reason; the kept
//! trust-anchor lines parse again as a whole (what the validator is built from), one key
//! per kept line; root hints give no address twice.

use std::str::FromStr;

use hickory_resolver::proto::dnssec::TrustAnchors;
use sinkhole::config::dnssec::parse_anchors;
use sinkhole::config::recursion::parse_hints;

use crate::engine::{Shape, Target, Verdict, fuzz, sig};

const KSK_2024: &str = ". 172800 IN DNSKEY 257 3 8 AwEAAa96jeuknZlaeSrvyAJj6ZHv28hhOKkx3rLGXVaC6rXTsDc449/cidltpkyGwCJNnOAlFNKF2jBosZBU5eeHspaQWOmOElZsjICMQMC3aeHbGiShvZsx4wMYSjH8e7Vrhbu6irwCzVBApESjbUdpWWmEnhathWu1jo+siFUiRAAxm9qyJNg/wOZqqzL/dL/q8PkcRU5oUKEpUge71M3ej2/7CPqpdVwuMoTvoB+ZOT4YeGyxMvHmbrxlFzGOHOijtzN+u1TQNatX2XBuzZNQ1K+s2CXkPIZo7s6JgZyvaBevYtxPvYLw4z9mR7K2vaF18UYH9Z9GNUUeayffKC73PYc=";

fn lines_ok(text: &str, bad: &[(usize, String)]) -> Result<(), String> {
    let lines = text.lines().count();
    match bad
        .iter()
        .find(|(l, r)| !(1..=lines).contains(l) || r.is_empty())
    {
        Some(b) => Err(format!("bad skipped line: {b:?} of {lines}")),
        None => Ok(()),
    }
}

fn check_anchors(text: &str) -> Verdict {
    let (good, bad) = parse_anchors(text);
    lines_ok(text, &bad)?;
    if !good.is_empty() && TrustAnchors::from_str(&good).is_err() {
        return Err(format!("kept lines do not parse as a whole: {good:?}"));
    }
    Ok(sig(&[
        good.lines().count().min(4) as u64,
        bad.len().min(8) as u64,
    ]))
}

fn check_hints(text: &str) -> Verdict {
    let (roots, bad) = parse_hints(text);
    lines_ok(text, &bad)?;
    let mut seen = roots.clone();
    seen.sort();
    seen.dedup();
    if seen.len() != roots.len() {
        return Err(format!("an address twice: {roots:?}"));
    }
    Ok(sig(&[roots.len().min(8) as u64, bad.len().min(8) as u64]))
}

#[test]
fn trust_anchor() {
    fuzz(
        Target {
            name: "trust_anchor",
            seeds: vec![
                format!("; root\n{KSK_2024}\n").into_bytes(),
                b". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n".to_vec(),
                b"example.test. 300 IN DNSKEY 256 3 13 9l+n5I1n+HB6qPkeKTXGnm66Xc6DgDk6F7FOkkmeWT9r1V5h3QeHgjYWBziMHDThOyyFKM0/K5pYSFzJXYf2gA==\n".to_vec(),
            ],
            dict: ["DNSKEY", " IN ", "257 3 8 ", "256 3 13 ", ";", "\n", "$TTL 60", "DS", "==", "."]
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect(),
            max_len: 4096,
            shape: Shape::Text,
        },
        |b| check_anchors(&String::from_utf8_lossy(b)),
    );
}

#[test]
fn root_hints() {
    fuzz(
        Target {
            name: "root_hints",
            seeds: vec![
                b"; named.root\n.  3600000  NS  A.ROOT-SERVERS.NET.\nA.ROOT-SERVERS.NET. 3600000 A 198.41.0.4\nA.ROOT-SERVERS.NET. 3600000 AAAA 2001:503:ba3e::2:30\n".to_vec(),
                b"b.root. IN 60 A 192.0.2.2\nb.root. A 192.0.2.2\n$ORIGIN .\nx CNAME y\n".to_vec(),
            ],
            dict: [" A ", " AAAA ", " NS ", " IN ", "3600000", "::", "192.0.2.", ";", "\n"]
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect(),
            max_len: 4096,
            shape: Shape::Text,
        },
        |b| check_hints(&String::from_utf8_lossy(b)),
    );
}
