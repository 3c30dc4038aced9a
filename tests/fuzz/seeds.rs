//! Seed inputs from real data (`shared/data`: captures, community lists, a Pi-hole log),
//! DNS messages built with hickory-proto, and the DNS-aware mutations.

use std::path::{Path, PathBuf};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};

use crate::engine::Rng;

/// The shared data folder: `shared/data` in the nearest ancestor of the crate that has one
/// (`../shared` in CI; `../../shared` from a worktree under `wt/`).
pub(crate) fn data_dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|a| a.join("shared/data"))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| panic!("no shared/data folder above {}", here.display()))
}

/// The crate's own folder.
pub(crate) fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The DNS payloads (UDP, and TCP without its length prefix) of a libpcap file.
pub(crate) fn pcap_payloads(path: &Path) -> Vec<Vec<u8>> {
    let Ok(b) = std::fs::read(path) else {
        return Vec::new();
    };
    let u32_at = |i: usize| {
        b.get(i..i + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    let Some(link) = u32_at(20) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut i = 24;
    while let Some(incl) = u32_at(i + 8) {
        let incl = incl as usize;
        let Some(pkt) = b.get(i + 16..(i + 16 + incl).min(b.len())) else {
            break;
        };
        i += 16 + incl;
        let ip = match link {
            0 => pkt.get(4..),
            1 => pkt.get(14..),
            _ => None,
        };
        let Some(ip) = ip.filter(|ip| ip.len() >= 20) else {
            continue;
        };
        let (proto, l4) = match ip[0] >> 4 {
            4 => (ip[9], ip.get(usize::from(ip[0] & 0xf) * 4..)),
            6 if ip.len() >= 40 => (ip[6], ip.get(40..)),
            _ => continue,
        };
        let Some(l4) = l4 else { continue };
        let payload = match proto {
            17 => l4.get(8..),
            6 => l4.get(usize::from(l4.get(12).copied().unwrap_or(0) >> 4) * 4 + 2..),
            _ => None,
        };
        if let Some(p) = payload.filter(|p| p.len() >= 12) {
            out.push(p.to_vec());
        }
    }
    out
}

/// Every DNS payload of every capture in `shared/data/pcap`.
pub(crate) fn captures() -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir().join("pcap"))
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    let out: Vec<Vec<u8>> = files.iter().flat_map(|f| pcap_payloads(f)).collect();
    assert!(out.len() >= 20, "too few captured packets: {}", out.len());
    out
}

/// A query built by hickory-proto.
pub(crate) fn query(id: u16, name: &str, rt: RecordType, edns: Option<(u16, bool)>) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    let name = Name::from_ascii(name).unwrap_or_else(|e| panic!("seed name {name:?}: {e}"));
    let mut q = Query::query(name, rt);
    q.set_query_class(DNSClass::IN);
    m.add_query(q);
    if let Some((payload, dnssec_ok)) = edns {
        let mut e = Edns::new();
        e.set_max_payload(payload);
        e.set_dnssec_ok(dnssec_ok);
        m.edns = Some(e);
    }
    m.to_vec().unwrap_or_else(|e| panic!("seed query: {e}"))
}

/// A name of exactly `len` characters (labels of 63), under `suffix`.
pub(crate) fn long_name(len: usize, suffix: &str) -> String {
    let mut s = String::new();
    while s.len() + suffix.len() < len {
        let room = len - suffix.len() - s.len();
        let label = room.saturating_sub(1).clamp(1, 63);
        s.push_str(&"x".repeat(label));
        s.push('.');
    }
    s.push_str(suffix);
    s
}

/// `n` lines of a text file, spread evenly over it, skipping blank ones.
pub(crate) fn sample_lines(path: &Path, n: usize) -> Vec<String> {
    let Ok(text) = std::fs::read(path) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.split('\n').filter(|l| !l.trim().is_empty()).collect();
    let step = (lines.len() / n.max(1)).max(1);
    let mut out: Vec<String> = lines.iter().take(20).map(|l| l.to_string()).collect();
    out.extend(lines.iter().step_by(step).take(n).map(|l| l.to_string()));
    out
}

/// Label-length bytes of the question name starting at offset 12: (offset, length).
fn labels(x: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 12;
    while let Some(&l) = x.get(i) {
        if l == 0 || l & 0xc0 != 0 || out.len() > 130 {
            break;
        }
        out.push((i, usize::from(l)));
        i += 1 + usize::from(l);
    }
    out
}

const FILL: &[u8] = b".\\A\x00\xff-_*";

/// One DNS-aware mutation: label lengths and contents, section counts, flags, an OPT record,
/// a compression pointer.
pub(crate) fn dns_mutation(rng: &mut Rng, x: &mut Vec<u8>) {
    if x.len() < 12 {
        x.resize(12, 0);
    }
    let ls = labels(x);
    match rng.below(7) {
        0 if !ls.is_empty() => {
            let &(at, len) = rng.pick(&ls);
            let v = match rng.below(5) {
                0 => 0,
                1 => 63,
                2 => 64,
                3 => 0xc0 | rng.below(64),
                _ => (len + rng.below(5)).saturating_sub(2),
            };
            x[at] = v as u8;
        }
        1 if !ls.is_empty() => {
            let &(at, len) = rng.pick(&ls);
            let b = *rng.pick(FILL);
            let end = (at + 1 + len).min(x.len());
            x[at + 1..end].fill(b);
        }
        2 => {
            // A new label before the root (or at the start).
            let at = ls.last().map_or(12, |&(a, l)| a + 1 + l).min(x.len());
            let len = 1 + rng.below(63);
            let b = *rng.pick(FILL);
            let mut label = vec![len as u8];
            label.extend(std::iter::repeat_n(b, len));
            x.splice(at..at, label);
        }
        3 => {
            let i = 4 + 2 * rng.below(4);
            let v: u16 = *rng.pick(&[0, 1, 2, 3, 0xffff, 0x8000]);
            x[i..i + 2].copy_from_slice(&v.to_be_bytes());
        }
        4 => {
            let bit = *rng.pick(&[0x80u8, 0x78, 0x40, 0x08, 0x02, 0x01]);
            x[2] ^= bit;
            if rng.one_in(2) {
                x[3] ^= *rng.pick(&[0x80u8, 0x40, 0x20, 0x10, 0x0f]);
            }
        }
        5 => {
            let payload: u16 = *rng.pick(&[0, 1, 511, 512, 513, 1232, 4096, 4097, 65535]);
            let version = if rng.one_in(4) { rng.next() as u8 } else { 0 };
            let flags: u16 = if rng.one_in(2) { 0x8000 } else { 0 };
            let mut opt = vec![0, 0, 41];
            opt.extend_from_slice(&payload.to_be_bytes());
            opt.extend_from_slice(&[0, version]);
            opt.extend_from_slice(&flags.to_be_bytes());
            opt.extend_from_slice(&[0, 0]);
            x.extend_from_slice(&opt);
            let ar = u16::from_be_bytes([x[10], x[11]]).wrapping_add(1);
            x[10..12].copy_from_slice(&ar.to_be_bytes());
        }
        _ => {
            let at = ls.get(rng.below(ls.len() + 1)).map_or(12, |&(a, _)| a);
            let ptr = 0xc000u16 | rng.below(x.len().max(13)) as u16;
            let end = (at + 2).min(x.len());
            x.splice(at..end, ptr.to_be_bytes());
        }
    }
}
