//! Seed inputs from real data (`shared/data`: captures, community lists, a Pi-hole log),
//! and DNS messages built with hickory-proto.

use std::path::{Path, PathBuf};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};

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
