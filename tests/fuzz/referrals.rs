//! Target `walk_answers`: answers of authoritative servers, as the recursive walk reads
//! them (`pipeline::upstream::recursive::classify`: an answer, a referral below the zone
//! asked, or of no use), and `dns::wire::answer_has_type`, which decides whether the CNAME
//! chain is followed. Seeded with real-shaped referrals (glue in and out of the bailiwick,
//! sideways and upward NS sets), answers, denials and captures.
//!
//! Properties: never panics; a referral's zone is below the zone asked and at or above the
//! name asked, names at most 16 servers, and its glue is only for those servers and within
//! the zone asked; an input hickory-proto cannot read is never a referral; a message that
//! is not whole (`dns::wire::well_formed`) is of no use; a whole NXDOMAIN is an answer;
//! `answer_has_type` agrees with hickory-proto on what it reads.

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use sinkhole::dns::wire::{self, answer_has_type};
use sinkhole::pipeline::upstream::recursive::{Kind, classify};

use crate::engine::{Shape, Target, Verdict, fuzz, sig};
use crate::seeds::captures;

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap_or_else(|e| panic!("seed name {s:?}: {e}"))
}

fn rec(owner: &str, data: RData) -> Record {
    Record::from_rdata(name(owner), 300, data)
}

/// The question every seed answers, and the zone it was asked of.
const ASKED: &str = "www.example.test.";
const FROM: &str = "test.";

fn seeds() -> Vec<Vec<u8>> {
    let make = |aa: bool, rcode: ResponseCode, f: &dyn Fn(&mut Message)| {
        let mut m = Message::new(0x4242, MessageType::Response, OpCode::Query);
        m.metadata.authoritative = aa;
        m.metadata.response_code = rcode;
        m.add_query(hickory_proto::op::Query::query(name(ASKED), RecordType::A));
        f(&mut m);
        m.to_vec().unwrap_or_default()
    };
    let ns = |zone: &str, host: &str| rec(zone, RData::NS(NS(name(host))));
    let soa = || {
        rec(
            FROM,
            RData::SOA(SOA::new(
                name("ns.test."),
                name("h.test."),
                1,
                3600,
                600,
                86400,
                60,
            )),
        )
    };
    let mut out = vec![
        // A referral with glue in the bailiwick and out of it.
        make(false, ResponseCode::NoError, &|m| {
            m.authorities.push(ns("example.test.", "ns1.example.test."));
            m.authorities.push(ns("example.test.", "ns.elsewhere."));
            m.additionals
                .push(rec("ns1.example.test.", RData::A(A::new(192, 0, 2, 1))));
            m.additionals.push(rec(
                "ns1.example.test.",
                RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            ));
            m.additionals
                .push(rec("ns.elsewhere.", RData::A(A::new(192, 0, 2, 9))));
        }),
        // Upward and sideways NS sets: of no use.
        make(false, ResponseCode::NoError, &|m| {
            m.authorities.push(ns(".", "a.root-servers.net."));
            m.authorities.push(ns("other.test.", "ns.other.test."));
        }),
        // An answer with a CNAME, no data, NXDOMAIN, a refusal.
        make(true, ResponseCode::NoError, &|m| {
            m.answers
                .push(rec(ASKED, RData::CNAME(CNAME(name("cdn.other.test.")))));
        }),
        make(true, ResponseCode::NoError, &|m| m.authorities.push(soa())),
        make(false, ResponseCode::NoError, &|m| m.authorities.push(soa())),
        make(true, ResponseCode::NXDomain, &|m| m.authorities.push(soa())),
        make(false, ResponseCode::Refused, &|_| {}),
    ];
    out.extend(captures().into_iter().take(20));
    out
}

#[test]
fn walk_answers() {
    let (from, asked) = (name(FROM), name(ASKED));
    fuzz(
        Target {
            name: "walk_answers",
            seeds: seeds(),
            dict: [
                &b"\x07example\x04test\x00"[..],
                &[0xC0, 12],
                &[0, 2, 0, 1],
                &[0, 5, 0, 1],
            ]
            .iter()
            .map(|s| s.to_vec())
            .collect(),
            max_len: 2048,
            shape: Shape::Dns,
        },
        |b| -> Verdict {
            let parsed = Message::from_vec(b).ok();
            let kind = classify(b, &from, &asked);
            if let Kind::Referral(r) = &kind {
                if parsed.is_none() {
                    return Err("a referral from bytes hickory-proto cannot read".into());
                }
                if r.zone.num_labels() <= from.num_labels() || !from.zone_of(&r.zone) {
                    return Err(format!("referral to {} is not below {from}", r.zone));
                }
                if !r.zone.zone_of(&asked) {
                    return Err(format!("referral to {} is not above {asked}", r.zone));
                }
                if r.servers.is_empty() || r.servers.len() > 16 {
                    return Err(format!("{} servers named", r.servers.len()));
                }
                if let Some((g, _)) = r
                    .glue
                    .iter()
                    .find(|(g, _)| !r.servers.contains(g) || !from.zone_of(g))
                {
                    return Err(format!("glue for {g} kept"));
                }
            }
            let whole = wire::well_formed(b);
            if !whole && kind != Kind::Lame {
                return Err("a message that is not whole was taken".into());
            }
            let nx =
                b.get(3).is_some_and(|f| f & 0x0F == 3) && b.get(2).is_some_and(|f| f & 0x80 != 0);
            if nx && whole && !matches!(kind, Kind::Answer) {
                return Err("an NXDOMAIN that is not an answer".into());
            }
            if let Some(m) = &parsed
                && m.queries.len() == 1
            {
                let cname = m
                    .answers
                    .iter()
                    .any(|r| r.record_type() == RecordType::CNAME);
                if answer_has_type(b, 5) != cname {
                    return Err(format!(
                        "answer_has_type(CNAME) is {}, hickory reads {cname}",
                        !cname
                    ));
                }
            }
            let k = match &kind {
                Kind::Answer => 1,
                Kind::Referral(r) => 2 + r.glue.len().min(4) as u64,
                Kind::Lame => 0,
            };
            Ok(sig(&[k, u64::from(parsed.is_some())]))
        },
    );
}
