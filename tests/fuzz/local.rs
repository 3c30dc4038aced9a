//! Target `local_hosts`: hosts files (`local.files`) through the hosts parser, seeded with
//! the head of a real hosts-format list and hand-written LAN lines.
//!
//! Properties: every accepted line has a line number inside the text and at least one
//! name; every name is lower case, without a trailing dot, at most 253 bytes, and a
//! wildcard only as its whole first label; every skipped line is counted, at most
//! `REPORTED` are kept one by one, each with a reason and a line number inside the text.

use sinkhole::pipeline::local::hosts::{REPORTED, parse};

use crate::engine::{Shape, Target, Verdict, fuzz, sig};
use crate::seeds::crate_dir;

fn seeds() -> Vec<Vec<u8>> {
    let real = crate_dir().join("../shared/data/blocklists/hosts_adaway.txt");
    let head: String = std::fs::read_to_string(&real)
        .unwrap_or_default()
        .lines()
        .take(200)
        .map(|l| format!("{}\n", l.replace("127.0.0.1", "192.168.1.9")))
        .collect();
    vec![
        head.into_bytes(),
        b"# LAN\n192.168.1.10 nas NAS.lan. # the NAS\n127.0.0.1 localhost\nfe80::1%eth0 router.lan\n\
          10.0.0.3 *.lab.lan\n0.0.0.0 ads.example\n10.0.0.2 bad..name\n::1 ip6-localhost\n"
            .to_vec(),
    ]
}

fn check(text: &str) -> Verdict {
    let lines = text.lines().count();
    let in_text = |n: u32| (1..=lines).contains(&(n as usize));
    let (ok, skipped, count) = parse(text);
    if skipped.len() > REPORTED || skipped.len() > count {
        return Err(format!("{} kept of {count} skipped", skipped.len()));
    }
    for s in &skipped {
        if !in_text(s.line) || s.reason.is_empty() {
            return Err(format!("bad skipped line: {s:?}"));
        }
    }
    for l in &ok {
        if !in_text(l.line) || l.names.is_empty() {
            return Err(format!("bad line: {l:?}"));
        }
        for n in &l.names {
            let bare = n.strip_prefix("*.").unwrap_or(n);
            let lower = bare.bytes().all(|b| !b.is_ascii_uppercase());
            if !lower
                || bare.ends_with('.')
                || bare.len() > 253
                || bare.is_empty()
                || bare.contains('*')
            {
                return Err(format!("name not normalised: {n:?} in {l:?}"));
            }
        }
    }
    Ok(sig(&[ok.len().min(8) as u64, count.min(8) as u64]))
}

#[test]
fn local_hosts() {
    fuzz(
        Target {
            name: "local_hosts",
            seeds: seeds(),
            dict: [
                "127.0.0.1 ",
                "::1 ",
                "fe80::1%lo ",
                "*.",
                " # ",
                "\t",
                "0.0.0.0 ",
                "localhost",
                "..",
            ]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect(),
            max_len: 8192,
            shape: Shape::Text,
        },
        |b| check(&String::from_utf8_lossy(b)),
    );
}
