//! Hand-written, allocation-free parsing of DNS queries and writing of responses (RFC 1035,
//! EDNS RFC 6891, Extended DNS Errors RFC 8914, negative answers RFC 2308).
//!
//! Everything here is pure: bytes in, bytes out. Malformed input is an `Err`, never a panic;
//! every index is bounds-checked.
//!
//! This file holds what the parts share: the header flags, record types and rcodes, and the
//! byte helpers that read and write big-endian fields and walk resource records. The parts:
//! - `query.rs`: a client's query parsed into a stack-allocated [`Query`] (the question and
//!   its EDNS facts), or a [`Reject`]; the cache key and the UDP limit derive from it.
//! - `answer.rs`: answers written here without asking anyone: any records of any type
//!   ([`write_records`]), blocked names ([`write_local`]), errors ([`write_error`]); and
//!   the header and OPT pieces that every reply, relayed ones too, is made of.
//! - `response.rs`: upstream answers: checked against the query, stripped of their OPT and
//!   of stray records, kept as bytes ([`Response`]) and written to clients with aged TTLs.
//! - `scrub.rs`: which records of an upstream answer are out of bailiwick.
//! - `upstream.rs`: the query sent upstream and the DNS cookies (RFC 7873) it carries.
//!
//! Every public item is re-exported here, so callers name `dns::wire::X` whatever file
//! holds `X`.

mod answer;
mod pointers;
mod query;
mod response;
mod scrub;
mod upstream;

pub use answer::{
    LocalAnswer, LocalRecord, LocalSoa, RFC8482_HINFO, write_answer, write_error, write_local,
    write_local_within, write_prepared_within, write_records, write_records_within,
};
pub use query::{Edns, Query, Reject, parse_query, parse_query_into};
pub use response::{LOG_ANSWER_TEXT, LOG_ANSWERS, Response, ResponseError};
pub use upstream::{
    Cookie, CookieOption, OPT_COOKIE, RCODE_BADCOOKIE, UpstreamOpt, ask_for_validation, next_frame,
    response_cookie, write_upstream_query, write_upstream_query_cookie,
};

/// Length of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// Record type A.
pub const TYPE_A: u16 = 1;
/// Record type CNAME.
pub const TYPE_CNAME: u16 = 5;
/// Record type SOA.
pub const TYPE_SOA: u16 = 6;
/// Record type PTR.
pub const TYPE_PTR: u16 = 12;
/// Record type HINFO.
pub const TYPE_HINFO: u16 = 13;
/// Record type TXT.
pub const TYPE_TXT: u16 = 16;
/// Record type AAAA.
pub const TYPE_AAAA: u16 = 28;
/// Record type OPT (EDNS pseudo-record).
pub const TYPE_OPT: u16 = 41;
/// Query type ANY (`*`).
pub const TYPE_ANY: u16 = 255;
/// Class IN.
pub const CLASS_IN: u16 = 1;

/// Header flag: this is a response.
pub const QR: u16 = 0x8000;
/// Header flag: authoritative answer.
pub const AA: u16 = 0x0400;
/// Header flag: truncated.
pub const TC: u16 = 0x0200;
/// Header flag: recursion desired.
pub const RD: u16 = 0x0100;
/// Header flag: recursion available.
pub const RA: u16 = 0x0080;
/// Header flag: authentic data.
pub const AD: u16 = 0x0020;
/// Header flag: checking disabled.
pub const CD: u16 = 0x0010;
const OPCODE_MASK: u16 = 0x7800;

/// Response codes used by the server (the 4 header bits; BADVERS goes through EDNS).
pub mod rcode {
    /// No error.
    pub const NOERROR: u16 = 0;
    /// Format error.
    pub const FORMERR: u16 = 1;
    /// Server failure.
    pub const SERVFAIL: u16 = 2;
    /// Name does not exist.
    pub const NXDOMAIN: u16 = 3;
    /// Not implemented.
    pub const NOTIMP: u16 = 4;
    /// Refused.
    pub const REFUSED: u16 = 5;
    /// Bad EDNS version (extended: needs an OPT record).
    pub const BADVERS: u16 = 16;

    /// The mnemonic of an rcode, for logs.
    pub fn name(rc: u16) -> &'static str {
        match rc {
            NOERROR => "NOERROR",
            FORMERR => "FORMERR",
            SERVFAIL => "SERVFAIL",
            NXDOMAIN => "NXDOMAIN",
            NOTIMP => "NOTIMP",
            REFUSED => "REFUSED",
            BADVERS => "BADVERS",
            _ => "RCODE?",
        }
    }
}

/// Largest DNS message (the 16-bit length of a stream transport).
pub const MAX_MESSAGE: usize = 65_535;
/// The UDP payload size this server advertises and asks upstreams for (DNS flag day 2020).
pub const EDNS_PAYLOAD: u16 = 1232;
/// Extended DNS Error: blocked (RFC 8914 §4.16).
pub const EDE_BLOCKED: u16 = 15;
/// Extended DNS Error: no reachable authority (RFC 8914 §4.23).
pub const EDE_NO_REACHABLE_AUTHORITY: u16 = 22;
/// Extended DNS Error: stale answer (RFC 8914 §4.4), served when no upstream answered.
pub const EDE_STALE_ANSWER: u16 = 3;
/// Extended DNS Error: DNSSEC bogus (RFC 8914 §4.7).
pub const EDE_DNSSEC_BOGUS: u16 = 6;
/// Extended DNS Error: signature expired (RFC 8914 §4.8).
pub const EDE_SIGNATURE_EXPIRED: u16 = 7;
/// Extended DNS Error: DNSKEY missing (RFC 8914 §4.10).
pub const EDE_DNSKEY_MISSING: u16 = 9;
/// Extended DNS Error: RRSIGs missing (RFC 8914 §4.11).
pub const EDE_RRSIGS_MISSING: u16 = 10;
/// Extended DNS Error: NSEC missing (RFC 8914 §4.13).
pub const EDE_NSEC_MISSING: u16 = 12;

/// What DNSSEC validation found for an answer (RFC 4035 §4.3), as the query log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// A chain of signatures from a trust anchor to the answer.
    Secure,
    /// Provably unsigned: under a delegation without DS.
    Insecure,
    /// Should be signed and is not, or the signatures do not verify.
    Bogus,
    /// Could not be decided (the keys or the proof could not be fetched).
    Indeterminate,
}

impl Security {
    /// The name the query log writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secure => "secure",
            Self::Insecure => "insecure",
            Self::Bogus => "bogus",
            Self::Indeterminate => "indeterminate",
        }
    }
}

/// TTL of every record of a stale answer (RFC 8767 §4: 30 seconds).
pub const STALE_TTL: u32 = 30;

/// Cuts the response in `out` to its header and question (`question_len` bytes after the
/// header), with TC set and no records: the "slip" of response-rate limiting, which sends
/// a real client to TCP. An OPT record goes too; a response shorter than that is left as
/// it is.
pub fn truncate_to_question(out: &mut Vec<u8>, question_len: usize) {
    let end = HEADER_LEN + question_len;
    if out.len() < end {
        return;
    }
    out.truncate(end);
    if let Some(flags) = out.get_mut(2) {
        *flags |= (TC >> 8) as u8;
    }
    // ANCOUNT, NSCOUNT, ARCOUNT.
    patch(out, 6, &[0; 6]);
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// Overwrites `out[at..]` with `bytes`; nothing when they would not fit (the callers'
/// offsets come from checked parses, so that does not happen: no panic if it did).
fn patch(out: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(d) = out.get_mut(at..at + bytes.len()) {
        d.copy_from_slice(bytes);
    }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Skips a (possibly compressed) name, returning the position after it in the record.
fn skip_name(pkt: &[u8], mut pos: usize) -> Option<usize> {
    let mut total = 0usize;
    loop {
        let len = *pkt.get(pos)?;
        match len & 0xC0 {
            0x00 if len == 0 => return Some(pos + 1),
            0x00 => {
                total += usize::from(len) + 1;
                if total > 255 || pos + 1 + usize::from(len) > pkt.len() {
                    return None;
                }
                pos += 1 + usize::from(len);
            }
            0xC0 => {
                // The pointer must point backwards; the name ends here for this record.
                let target = usize::from(u16_at(pkt, pos)? & 0x3FFF);
                if target >= pos {
                    return None;
                }
                return Some(pos + 2);
            }
            _ => return None,
        }
    }
}

/// One resource record's layout inside a message.
#[derive(Debug, Clone, Copy)]
struct RrPos {
    start: usize,
    rtype: u16,
    ttl_off: usize,
    end: usize,
}

fn parse_rr(pkt: &[u8], pos: usize) -> Option<RrPos> {
    let after_name = skip_name(pkt, pos)?;
    let rtype = u16_at(pkt, after_name)?;
    let rdlen = usize::from(u16_at(pkt, after_name + 8)?);
    let rdata = after_name + 10;
    let end = rdata + rdlen;
    if end > pkt.len() {
        return None;
    }
    Some(RrPos {
        start: pos,
        rtype,
        ttl_off: after_name + 4,
        end,
    })
}

/// True when message `pkt` (one question) is whole: its question and every record of its
/// three sections read to their ends within it.
pub fn well_formed(pkt: &[u8]) -> bool {
    let counts = [6, 8, 10].map(|i| u16_at(pkt, i));
    let [Some(an), Some(ns), Some(ar)] = counts else {
        return false;
    };
    let Some(mut pos) = skip_name(pkt, HEADER_LEN).map(|p| p + 4) else {
        return false;
    };
    if pos > pkt.len() {
        return false;
    }
    for _ in 0..u32::from(an) + u32::from(ns) + u32::from(ar) {
        let Some(rr) = parse_rr(pkt, pos) else {
            return false;
        };
        pos = rr.end;
    }
    true
}

/// True when a record of type `rtype` is in the answer section of message `pkt` (false for
/// a message that is not well formed that far).
pub fn answer_has_type(pkt: &[u8], rtype: u16) -> bool {
    let Some(an) = u16_at(pkt, 6) else {
        return false;
    };
    let Some(mut pos) = skip_name(pkt, HEADER_LEN).map(|p| p + 4) else {
        return false;
    };
    for _ in 0..an {
        let Some(rr) = parse_rr(pkt, pos) else {
            return false;
        };
        if rr.rtype == rtype {
            return true;
        }
        pos = rr.end;
    }
    false
}

/// What the tests of every part share.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod testing {
    use hickory_proto::op::{Edns as HEdns, Message, MessageType, OpCode, Query as HQuery};
    use hickory_proto::rr::{Name, RecordType};

    /// A query for `name` as hickory writes it: ID 0x1234, RD, and with `edns` an OPT with
    /// payload 1232 and the DO bit.
    pub(super) fn query_bytes(name: &str, rt: RecordType, edns: bool) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(HQuery::query(Name::from_ascii(name).unwrap(), rt));
        if edns {
            let mut e = HEdns::new();
            e.set_max_payload(1232);
            e.set_dnssec_ok(true);
            m.edns = Some(e);
        }
        m.to_vec().unwrap()
    }
}
