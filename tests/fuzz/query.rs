//! Target `dns_query`: client packets through `dns::wire::parse_query` and the whole no-I/O
//! handler path (`Handler::handle_packet`: bypass signals, blocked answers in every block mode,
//! cached answers, FORMERR/NOTIMP/BADVERS), over UDP and TCP limits.
//!
//! Properties: a response is never larger than the client's limit (512 without EDNS, the
//! EDNS payload clamped to 512..=4096, 65535 over TCP), parses with hickory-proto, is a
//! response with the query's ID and echoes its question; only runts and responses are
//! dropped; a query that parses agrees with hickory-proto on name, type and class, and still
//! parses the same after hickory re-encodes it.

use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use sinkhole::config::Config;
use sinkhole::counters::Counters;
use sinkhole::dns::wire::{self, Query, Reject, Response};
use sinkhole::handler::{Arrival, Handled, Handler, TCP_LIMIT};
use sinkhole::pipeline::{Clock, Pipeline, Policy, Transport};
use sinkhole::server::slots::ClientSlots;

use crate::engine::{Shape, Target, Verdict, fuzz, sig};
use crate::seeds::{captures, long_name, query};

/// A list in every format the loader reads, with a long name so that blocked answers get
/// near the size limits.
fn list_text(long: &str) -> String {
    format!(
        "ads.test\n||tracker.test^\n0.0.0.0 hosts.test alias.test\naddress=/dnsmasq.test/#\n\
         *.wild.test\n=exact.test\n/^re[0-9]+\\.test$/\nads*.glob.test\n@@||ok.ads.test^\n\
         {long}\n"
    )
}

fn handler(dir: &std::path::Path, mode: &str, log: bool) -> Handler {
    let log_section = if log {
        "[log]\npath = \"q.jsonl\"\n"
    } else {
        ""
    };
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"127.0.0.1:9\"]\n\
         [blocking]\nmode = \"{mode}\"\nlists = [\"blocked.txt\"]\n{log_section}"
    );
    let cfg = Config::parse(&toml, "fuzz.toml", Some(dir))
        .unwrap_or_else(|e| panic!("fuzz config:\n{e}"));
    let (policy, _) = Policy::load(&cfg).expect("fuzz list loads");
    let pipeline = Pipeline::new(&cfg, policy, Arc::new(Counters::new()));
    Handler::new(Arc::new(pipeline), ClientSlots::new(64, 64), log)
}

/// Answers for `cached.test` (40 A records: larger than 512 bytes), `big.test` (TXT, larger
/// than 1232) and `nx.test` (NXDOMAIN + SOA), put in the cache for the seed queries' keys.
fn fill_cache(p: &Pipeline, seeds: &[Vec<u8>]) {
    for pkt in seeds {
        let Ok(q) = wire::parse_query(pkt) else {
            continue;
        };
        let name = String::from_utf8_lossy(q.name()).into_owned();
        let Ok(owner) = Name::from_ascii(format!("{name}.")) else {
            continue;
        };
        let mut m = Message::new(
            q.id,
            MessageType::Response,
            hickory_proto::op::OpCode::Query,
        );
        m.metadata.recursion_desired = true;
        m.metadata.recursion_available = true;
        let Ok(hm) = Message::from_vec(pkt) else {
            continue;
        };
        m.queries = hm.queries.clone();
        match name.as_str() {
            "cached.test" => {
                for i in 0..40u8 {
                    let a = RData::A(A::new(192, 0, 2, i));
                    m.add_answer(Record::from_rdata(owner.clone(), 3600, a));
                }
            }
            "big.test" => {
                let txt = RData::TXT(TXT::new(vec!["x".repeat(250); 8]));
                m.add_answer(Record::from_rdata(owner.clone(), 3600, txt));
            }
            "nx.test" => {
                m.metadata.response_code = ResponseCode::NXDomain;
                let soa = SOA::new(
                    Name::from_ascii("ns.test.").unwrap_or_default(),
                    Name::from_ascii("h.test.").unwrap_or_default(),
                    1,
                    3600,
                    600,
                    86400,
                    3600,
                );
                let zone = Name::from_ascii("test.").unwrap_or_default();
                m.add_authority(Record::from_rdata(zone, 3600, RData::SOA(soa)));
            }
            _ => continue,
        }
        let Ok(bytes) = m.to_vec() else { continue };
        let resp = Response::from_upstream(&bytes, &q, q.id, 0, 86_400)
            .unwrap_or_else(|e| panic!("seed answer for {name} not accepted: {e:?}"));
        let mut key = [0u8; 262];
        p.cache()
            .put(q.cache_key(&mut key), &Arc::new(resp), Instant::now());
    }
}

fn seeds(long: &str) -> Vec<Vec<u8>> {
    let names = [
        "www.example.com.",
        "ads.test.",
        "x.ads.test.",
        "ok.ads.test.",
        "tracker.test.",
        "alias.test.",
        "dnsmasq.test.",
        "a.wild.test.",
        "exact.test.",
        "re42.test.",
        "ads1.glob.test.",
        "cached.test.",
        "big.test.",
        "nx.test.",
        "use-application-dns.net.",
        "_dns.resolver.arpa.",
        ".",
    ];
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::TXT,
        RecordType::HTTPS,
    ];
    let ednss = [
        None,
        Some((512, false)),
        Some((1232, true)),
        Some((4096, false)),
    ];
    let mut out = Vec::new();
    let mut id = 1u16;
    for name in names.iter().copied().chain([long]) {
        for (i, &rt) in types.iter().enumerate() {
            out.push(query(id, name, rt, ednss[i % ednss.len()]));
            id += 1;
        }
    }
    for e in ednss {
        out.push(query(id, "cached.test.", RecordType::A, e));
        out.push(query(id, "big.test.", RecordType::TXT, e));
        out.push(query(id, "nx.test.", RecordType::A, e));
        out.push(query(id, long, RecordType::TXT, e));
        id += 1;
    }
    out.extend(captures());
    out
}

/// The largest response the client takes, as RFC 1035 and RFC 6891 say (the server clamps
/// a tiny or huge EDNS payload to 512..=4096).
fn client_limit(q: Option<&Query>, tcp: bool) -> usize {
    if tcp {
        return TCP_LIMIT;
    }
    match q.and_then(|q| q.edns) {
        Some(e) => usize::from(e.payload).clamp(512, 4096),
        None => 512,
    }
}

/// The name of a hickory query in wire form, lower case.
fn hickory_wire(n: &Name) -> Vec<u8> {
    let mut w = Vec::new();
    for l in n.iter() {
        w.push(l.len() as u8);
        w.extend(l.iter().map(u8::to_ascii_lowercase));
    }
    w.push(0);
    w
}

fn lower(b: &[u8]) -> Vec<u8> {
    b.iter().map(u8::to_ascii_lowercase).collect()
}

/// The parser agrees with hickory-proto, and a re-encoded query parses the same.
fn agrees_with_hickory(pkt: &[u8], q: &Query) -> Result<u64, String> {
    let Ok(m) = Message::from_vec(pkt) else {
        return Ok(1); // hickory is stricter about the other sections
    };
    let [hq] = m.queries.as_slice() else {
        return Err(format!(
            "parsed as one question, hickory sees {}",
            m.queries.len()
        ));
    };
    let theirs = (
        hickory_wire(&hq.name),
        u16::from(hq.query_type),
        u16::from(hq.query_class),
    );
    let ours = (lower(q.wire_name()), q.qtype, q.qclass);
    if theirs != ours {
        return Err(format!(
            "question differs from hickory's: ours {ours:?}, hickory {theirs:?}"
        ));
    }
    let Ok(bytes) = m.to_vec() else {
        return Ok(2);
    };
    match wire::parse_query(&bytes) {
        Ok(q2) if (q2.name(), q2.qtype, q2.qclass) == (q.name(), q.qtype, q.qclass) => Ok(3),
        Ok(q2) => Err(format!(
            "re-encoded by hickory, parses to {:?} {} {} instead of {:?} {} {}",
            q2.name_lossy(),
            q2.qtype,
            q2.qclass,
            q.name_lossy(),
            q.qtype,
            q.qclass
        )),
        Err(e) => Err(format!(
            "re-encoded by hickory ({}), no longer parses: {e:?}",
            crate::engine::hex(&bytes)
        )),
    }
}

/// Checks one response written for `pkt`.
fn check_response(pkt: &[u8], out: &[u8], q: Option<&Query>, tcp: bool) -> Result<u64, String> {
    let limit = client_limit(q, tcp);
    if out.len() > limit {
        return Err(format!(
            "response of {} bytes exceeds the client's limit of {limit} (tcp={tcp})\nresponse: {}",
            out.len(),
            crate::engine::hex(out)
        ));
    }
    let m = Message::from_vec(out).map_err(|e| {
        format!(
            "response does not parse with hickory: {e}\nresponse: {}",
            crate::engine::hex(out)
        )
    })?;
    let id = u16::from_be_bytes([pkt[0], pkt[1]]);
    if m.metadata.id != id || m.metadata.message_type != MessageType::Response {
        return Err(format!(
            "response id {} / type {:?}, query id {id}",
            m.metadata.id, m.metadata.message_type
        ));
    }
    if let Some(q) = q {
        let echoed = out.get(12..12 + q.wire_name().len());
        if echoed != Some(q.wire_name()) {
            return Err("response does not echo the question as sent".into());
        }
    }
    Ok(sig(&[
        u64::from(u16::from(m.metadata.response_code)),
        m.answers.len() as u64,
        u64::from(m.metadata.truncation),
        (out.len() / 128) as u64,
    ]))
}

struct Setup {
    _dir: tempfile::TempDir,
    handlers: Vec<Handler>,
    seeds: Vec<Vec<u8>>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let long = long_name(240, "long.test");
    std::fs::write(dir.path().join("blocked.txt"), list_text(&long)).expect("write list");
    let seeds = seeds(&format!("{long}."));
    let handlers: Vec<Handler> = [("sinkhole", true), ("nxdomain", false), ("refused", false)]
        .into_iter()
        .map(|(mode, log)| handler(dir.path(), mode, log))
        .collect();
    for h in &handlers {
        fill_cache(h.pipeline(), &seeds);
    }
    Setup {
        _dir: dir,
        handlers,
        seeds,
    }
}

/// The UDP loop parses into the query its batch slot held before (`parse_query_into`):
/// after any earlier input, that must read exactly as a fresh parse.
fn reused_parse_agrees(pkt: &[u8], fresh: &Result<Query, wire::Reject>) -> Result<(), String> {
    thread_local! {
        static SLOT: std::cell::RefCell<Query> = std::cell::RefCell::new(Query::blank());
    }
    let facts = |q: &Query| {
        (
            (q.id, q.flags, q.qtype, q.qclass, q.edns, q.label_count()),
            (q.wire_name().to_vec(), q.name().to_vec()),
            (0..=q.label_count())
                .map(|n| q.suffix_offset(n))
                .collect::<Vec<_>>(),
        )
    };
    SLOT.with_borrow_mut(|q| match (wire::parse_query_into(pkt, q), fresh) {
        (Ok(()), Ok(f)) if facts(q) == facts(f) => Ok(()),
        (Err(_), Err(_)) => Ok(()),
        (got, want) => Err(format!(
            "a reused parse differs: {got:?} {:?} against {want:?}",
            facts(q)
        )),
    })
}

fn check(s: &Setup, pkt: &[u8]) -> Verdict {
    let parsed = wire::parse_query(pkt);
    reused_parse_agrees(pkt, &parsed)?;
    let mut parts = Vec::new();
    let asked: Option<&Query> = match &parsed {
        Ok(q) => {
            if q.wire_name().last() != Some(&0) || q.wire_name().len() > 255 {
                return Err(format!("wire name malformed: {:?}", q.wire_name()));
            }
            parts.push(agrees_with_hickory(pkt, q)?);
            parts.extend([q.label_count() as u64, (q.wire_name().len() / 32) as u64]);
            parts.push(
                q.edns
                    .map_or(0, |e| 1 + u64::from(e.payload.min(5000) / 512)),
            );
            Some(q)
        }
        Err(Reject::Drop) => {
            if pkt.len() >= 12 && pkt[2] & 0x80 == 0 {
                return Err("a query (not a runt, not a response) was dropped".into());
            }
            parts.push(100);
            None
        }
        Err(Reject::Reply { rcode, query, .. }) => {
            parts.push(200 + u64::from(*rcode));
            query.as_deref()
        }
    };
    let mut out = Vec::with_capacity(512);
    let now = Clock::system().now();
    for h in &s.handlers {
        for tcp in [false, true] {
            let how = Arrival {
                // A LAN client: inside the default `access.allow`.
                client: std::net::SocketAddr::from(([192, 168, 1, 1], 5300)),
                transport: if tcp { Transport::Tcp } else { Transport::Udp },
                arrived: tokio::time::Instant::now(),
                now,
            };
            match h.handle_packet(pkt, how, &mut out) {
                Handled::Drop(_) if matches!(parsed, Err(Reject::Drop)) => parts.push(1),
                Handled::Drop(_) => {
                    return Err("handler dropped a packet the parser answers".into());
                }
                Handled::Pending(_) if parsed.is_ok() => parts.push(2),
                Handled::Pending(_) => return Err("handler forwards a rejected packet".into()),
                Handled::Reply(_) => {
                    parts.push(3);
                    parts.push(check_response(pkt, &out, asked, tcp)?);
                }
            }
        }
    }
    Ok(sig(&parts))
}

#[test]
fn dns_query() {
    let s = setup();
    let dict: Vec<Vec<u8>> = vec![
        b"\x00\x00\x29\x04\xd0\x00\x00\x80\x00\x00\x00".to_vec(),
        b"\x03ads\x04test\x00".to_vec(),
        b"\x06cached\x04test\x00\x00\x01\x00\x01".to_vec(),
        b"\xc0\x0c".to_vec(),
        vec![b'.'; 63],
    ];
    fuzz(
        Target {
            name: "dns_query",
            seeds: s.seeds.clone(),
            dict,
            max_len: 1024,
            shape: Shape::Dns,
        },
        |pkt| check(&s, pkt),
    );
}
