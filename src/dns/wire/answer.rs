//! Answers written here, without asking an upstream: blocked names (an address, or a
//! negative answer with an SOA), the RFC 8482 answer to ANY, and errors (FORMERR, SERVFAIL,
//! REFUSED…).
//!
//! They all go through one general writer, [`write_records`]: any records of any type owned
//! by the question name in the answer section, an optional SOA in the authority section, and
//! an OPT (with an Extended DNS Error) when the query had EDNS. [`write_records_within`] fits
//! such an answer into the client's UDP size (shortening the EDE text, else truncating). The
//! header, OPT and truncated-answer pieces written here are shared with relayed upstream
//! answers (`response.rs`).

use std::net::IpAddr;

use super::query::Query;
use super::{
    AA, CD, EDNS_PAYLOAD, HEADER_LEN, OPCODE_MASK, QR, RA, RD, TC, TYPE_A, TYPE_AAAA, TYPE_OPT,
    TYPE_SOA, patch, put_u16, put_u32, rcode,
};

/// The header flags of an answer to a query with `query_flags`: QR and RA set, the opcode,
/// RD and CD echoed, `extra` flags added, and the low 4 bits of `rc`.
pub(super) fn response_flags(query_flags: u16, rc: u16, extra: u16) -> u16 {
    QR | (query_flags & (OPCODE_MASK | RD | CD)) | RA | extra | (rc & 0x000F)
}

/// Writes the 12-byte header: ID, flags, and the four section counts.
pub(super) fn write_header(out: &mut Vec<u8>, id: u16, flags: u16, counts: [u16; 4]) {
    put_u16(out, id);
    put_u16(out, flags);
    for c in counts {
        put_u16(out, c);
    }
}

/// Longest EDE text sent, in bytes.
const EDE_TEXT_MAX: usize = 200;

/// `text` cut to [`EDE_TEXT_MAX`] bytes at a character boundary (RFC 8914 §2: the text is
/// UTF-8, so it must not end inside a character).
fn ede_cut(text: &str) -> &str {
    cut_at_char(text, EDE_TEXT_MAX)
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut_at_char(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// Writes an OPT record with our payload size, the client's DO bit, the upper rcode bits,
/// and an optional Extended DNS Error.
pub(super) fn write_opt(out: &mut Vec<u8>, dnssec_ok: bool, rc: u16, ede: Option<(u16, &str)>) {
    out.push(0);
    put_u16(out, TYPE_OPT);
    put_u16(out, EDNS_PAYLOAD);
    out.push(u8::try_from(rc >> 4).unwrap_or(0));
    out.push(0);
    put_u16(out, if dnssec_ok { 0x8000 } else { 0 });
    match ede {
        Some((code, text)) => {
            let text = ede_cut(text).as_bytes();
            put_u16(out, 6 + text.len() as u16);
            put_u16(out, 15); // option code: Extended DNS Error
            put_u16(out, 2 + text.len() as u16);
            put_u16(out, code);
            out.extend_from_slice(text);
        }
        None => put_u16(out, 0),
    }
}

/// Writes the truncated form of an answer to `q` (`flags` include TC): the question only,
/// and an OPT (with `rc`'s upper bits) when the query had EDNS. The client retries over TCP.
pub(super) fn write_truncated(out: &mut Vec<u8>, q: &Query, flags: u16, rc: u16) {
    out.clear();
    let ar = u16::from(q.edns.is_some());
    write_header(out, q.id, flags, [1, 0, 0, ar]);
    q.write_question(out);
    if let Some(e) = q.edns {
        write_opt(out, e.dnssec_ok, rc, None);
    }
}

/// Writes an answer that carries no records: FORMERR/NOTIMP/BADVERS for rejected packets,
/// SERVFAIL when every upstream failed, REFUSED. The question is echoed when known; an OPT
/// is added when the query had EDNS (always for BADVERS).
pub fn write_error(
    out: &mut Vec<u8>,
    id: u16,
    query_flags: u16,
    query: Option<&Query>,
    rc: u16,
    ede: Option<(u16, &str)>,
) {
    out.clear();
    let edns = query.and_then(|q| q.edns);
    let with_opt = edns.is_some() || rc > 15;
    let qd = u16::from(query.is_some());
    write_header(
        out,
        id,
        response_flags(query_flags, rc, 0),
        [qd, 0, 0, u16::from(with_opt)],
    );
    if let Some(q) = query {
        q.write_question(out);
    }
    if with_opt {
        write_opt(out, edns.is_some_and(|e| e.dnssec_ok), rc, ede);
    }
}

/// One record of a locally written answer section: owned by the question name (written as a
/// pointer to it) and of the question's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalRecord<'a> {
    /// Record type.
    pub rtype: u16,
    /// TTL in seconds.
    pub ttl: u32,
    /// The record data in wire format, written as given: a name inside it must not be
    /// compressed. At most 65535 bytes; a longer record is left out.
    pub rdata: &'a [u8],
}

/// The SOA of a locally written negative answer (authority section), which tells the client
/// how long to cache the answer (RFC 2308): `sinkhole. blocked.sinkhole. 1 3600 600 86400
/// <ttl>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalSoa {
    /// The zone the SOA is owned by: the last `labels` labels of the question name (the
    /// whole name for 0 or for more labels than it has).
    pub labels: usize,
    /// The SOA's TTL and its MINIMUM field.
    pub ttl: u32,
}

/// Writes an answer for `q` made here: `rcode`, the `records` in the answer section, `soa` in
/// the authority section, and an OPT carrying `ede` when the query had EDNS (the EDE text
/// cut to 200 bytes). Every local answer (blocked names, the answer to ANY) is written by
/// this function, whatever the types of its records.
pub fn write_records(
    out: &mut Vec<u8>,
    q: &Query,
    rcode: u16,
    records: &[LocalRecord<'_>],
    soa: Option<LocalSoa>,
    ede: Option<(u16, &str)>,
) {
    out.clear();
    let fits = |r: &&LocalRecord<'_>| u16::try_from(r.rdata.len()).is_ok();
    let an = u16::try_from(records.iter().filter(fits).count()).unwrap_or(u16::MAX);
    let ns = u16::from(soa.is_some());
    let ar = u16::from(q.edns.is_some());
    write_header(
        out,
        q.id,
        response_flags(q.flags, rcode, 0),
        [1, an, ns, ar],
    );
    q.write_question(out);
    for r in records.iter().filter(fits).take(usize::from(an)) {
        put_u16(out, 0xC000 | HEADER_LEN as u16);
        put_u16(out, r.rtype);
        put_u16(out, q.qclass);
        put_u32(out, r.ttl);
        put_u16(out, u16::try_from(r.rdata.len()).unwrap_or(0));
        out.extend_from_slice(r.rdata);
    }
    if let Some(soa) = soa {
        write_soa(out, q, soa);
    }
    if let Some(e) = q.edns {
        write_opt(out, e.dnssec_ok, rcode, ede);
    }
}

fn write_soa(out: &mut Vec<u8>, q: &Query, soa: LocalSoa) {
    let owner = q.suffix_offset(soa.labels).unwrap_or(HEADER_LEN as u16);
    put_u16(out, 0xC000 | owner);
    put_u16(out, TYPE_SOA);
    put_u16(out, q.qclass);
    put_u32(out, soa.ttl);
    // mname "sinkhole.", rname "blocked.sinkhole." (pointer to mname's label).
    let rdlen_pos = out.len();
    put_u16(out, 0);
    let mname = out.len();
    out.extend_from_slice(b"\x08sinkhole\x00");
    out.extend_from_slice(b"\x07blocked");
    put_u16(out, 0xC000 | u16::try_from(mname).unwrap_or(0));
    for v in [1, 3600, 600, 86400, soa.ttl] {
        put_u32(out, v);
    }
    let rdlen = u16::try_from(out.len() - rdlen_pos - 2).unwrap_or(0);
    patch(out, rdlen_pos, &rdlen.to_be_bytes());
}

/// Writes the answer of [`write_records`] so that it fits in `limit` bytes (the client's UDP
/// size): when it would not, the EDE text is shortened at a character boundary (a long name
/// with an SOA and a long rule text can pass 512 bytes), and if even the answer without it
/// does not fit, a truncated answer (TC, question only) is written. Returns true when
/// truncated.
pub fn write_records_within(
    out: &mut Vec<u8>,
    q: &Query,
    rcode: u16,
    records: &[LocalRecord<'_>],
    soa: Option<LocalSoa>,
    ede: Option<(u16, &str)>,
    limit: usize,
) -> bool {
    write_records(out, q, rcode, records, soa, ede);
    let Some(excess) = out.len().checked_sub(limit).filter(|&e| e > 0) else {
        return false;
    };
    if let Some((code, text)) = ede {
        let shorter = cut_at_char(text, text.len().saturating_sub(excess));
        write_records(out, q, rcode, records, soa, Some((code, shorter)));
        if out.len() <= limit {
            return false;
        }
    }
    write_truncated(out, q, response_flags(q.flags, rcode, TC), rcode);
    true
}

/// Writes an authoritative answer made ahead of time (local records): AA set, `rcode`,
/// `count` records already in wire form in `answer` (each with its owner: the pointer
/// `0xC00C` to the question name, or a whole uncompressed name; type; class; TTL; data),
/// `soa` in the authority section, and an OPT without EDE when the query had EDNS. When it
/// does not fit in `limit`, a truncated answer (AA, TC, question only) is written and true
/// returned.
pub fn write_prepared_within(
    out: &mut Vec<u8>,
    q: &Query,
    rcode: u16,
    count: u16,
    answer: &[u8],
    soa: Option<LocalSoa>,
    limit: usize,
) -> bool {
    out.clear();
    let ns = u16::from(soa.is_some());
    let ar = u16::from(q.edns.is_some());
    write_header(
        out,
        q.id,
        response_flags(q.flags, rcode, AA),
        [1, count, ns, ar],
    );
    q.write_question(out);
    out.extend_from_slice(answer);
    if let Some(soa) = soa {
        write_soa(out, q, soa);
    }
    if let Some(e) = q.edns {
        write_opt(out, e.dnssec_ok, rcode, None);
    }
    if out.len() <= limit {
        return false;
    }
    write_truncated(out, q, response_flags(q.flags, rcode, AA | TC), rcode);
    true
}

/// What a locally made answer for a blocked name holds: the special case of
/// [`write_records`] with at most one A/AAAA record and one TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAnswer<'a> {
    /// Response code.
    pub rcode: u16,
    /// The single A/AAAA answer, if any.
    pub address: Option<IpAddr>,
    /// Put an SOA for the zone made of the last `n` labels of the name in the authority
    /// section (negative answers), with TTL and minimum = `ttl`.
    pub soa_labels: Option<usize>,
    /// TTL of the answer and the SOA.
    pub ttl: u32,
    /// Extended DNS Error (code, text), sent when the query had EDNS.
    pub ede: Option<(u16, &'a str)>,
}

/// The data of an A or AAAA record, held inline.
struct AddressData {
    rtype: u16,
    octets: [u8; 16],
    len: usize,
}

impl AddressData {
    fn new(addr: IpAddr) -> Self {
        let mut octets = [0; 16];
        let (rtype, len) = match addr {
            IpAddr::V4(ip) => {
                patch(&mut octets, 0, &ip.octets());
                (TYPE_A, 4)
            }
            IpAddr::V6(ip) => {
                octets = ip.octets();
                (TYPE_AAAA, 16)
            }
        };
        Self { rtype, octets, len }
    }

    fn record(&self, ttl: u32) -> LocalRecord<'_> {
        LocalRecord {
            rtype: self.rtype,
            ttl,
            rdata: self.octets.get(..self.len).unwrap_or_default(),
        }
    }
}

impl LocalAnswer<'_> {
    /// This answer in the general form of [`write_records`]: calls `f` with its records
    /// (the address's, if any) and its SOA.
    fn with_parts<R>(&self, f: impl FnOnce(&[LocalRecord<'_>], Option<LocalSoa>) -> R) -> R {
        let address = self.address.map(AddressData::new);
        let record = address.as_ref().map(|a| a.record(self.ttl));
        let soa = self.soa_labels.map(|labels| LocalSoa {
            labels,
            ttl: self.ttl,
        });
        f(record.as_slice(), soa)
    }
}

/// Writes a locally made answer for `q` that fits in `limit` bytes (the client's UDP
/// size): when it would not, the EDE text is shortened at a character boundary (a long name
/// with an SOA and a long rule text can pass 512 bytes), and if even the answer without it
/// does not fit, a truncated answer (TC, question only) is written. Returns true when
/// truncated.
pub fn write_local_within(out: &mut Vec<u8>, q: &Query, a: &LocalAnswer<'_>, limit: usize) -> bool {
    a.with_parts(|records, soa| write_records_within(out, q, a.rcode, records, soa, a.ede, limit))
}

/// Writes a locally made answer for `q`.
pub fn write_local(out: &mut Vec<u8>, q: &Query, a: &LocalAnswer<'_>) {
    a.with_parts(|records, soa| write_records(out, q, a.rcode, records, soa, a.ede));
}

/// The RDATA of the RFC 8482 §4.2 answer to ANY: HINFO with CPU `"RFC8482"` and an empty OS.
pub const RFC8482_HINFO: &[u8] = b"\x07RFC8482\x00";

/// Writes a NOERROR answer for `q` holding one record owned by the question name, of type
/// `rtype` with `rdata` (at most a few hundred bytes: the answer is never truncated), plus
/// an OPT when the query had EDNS.
pub fn write_answer(out: &mut Vec<u8>, q: &Query, rtype: u16, ttl: u32, rdata: &[u8]) {
    let record = LocalRecord { rtype, ttl, rdata };
    write_records(out, q, rcode::NOERROR, &[record], None, None);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::super::testing::query_bytes;
    use super::super::{EDE_BLOCKED, parse_query};
    use super::*;
    use hickory_proto::op::Message;
    use hickory_proto::rr::RecordType;

    // See: #10
    #[test]
    fn r10_ede_text_is_cut_at_a_character_boundary() {
        let q = parse_query(&query_bytes("x.example.", RecordType::A, true)).unwrap();
        // 199 ASCII bytes, then a 3-byte character across the 200-byte limit.
        let text = format!("{}€tail", "a".repeat(199));
        let mut out = Vec::new();
        let a = LocalAnswer {
            rcode: rcode::NOERROR,
            address: None,
            soa_labels: None,
            ttl: 10,
            ede: Some((EDE_BLOCKED, &text)),
        };
        write_local(&mut out, &q, &a);
        // The option's text is the last bytes of the message.
        let opt_text = &out[out.len() - 199..];
        assert!(std::str::from_utf8(opt_text).is_ok());
        assert_eq!(ede_cut(&text), "a".repeat(199));
        assert_eq!(ede_cut("short"), "short");
        let m = Message::from_vec(&out).unwrap();
        assert!(m.edns.is_some());
    }

    // See: #10 (found by the dns_query fuzz target)
    #[test]
    fn r10_local_answer_fits_the_clients_udp_size() {
        // A 255-byte name, EDNS payload 512, a negative answer with an SOA and a long EDE.
        let mut pkt = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        for len in [63usize, 63, 63, 61] {
            pkt.push(len as u8);
            pkt.extend(std::iter::repeat_n(b'x', len));
        }
        pkt.extend_from_slice(b"\x00\x00\x1c\x00\x01");
        pkt.extend_from_slice(b"\x00\x00\x29\x02\x00\x00\x00\x00\x00\x00\x00");
        let q = parse_query(&pkt).unwrap();
        assert_eq!(q.udp_limit(), 512);
        let text = "é".repeat(100);
        let a = LocalAnswer {
            rcode: rcode::NXDOMAIN,
            address: None,
            soa_labels: Some(1),
            ttl: 10,
            ede: Some((EDE_BLOCKED, &text)),
        };
        let mut out = Vec::new();
        write_local(&mut out, &q, &a);
        assert!(
            out.len() > 512,
            "the unbounded writer overflows: {}",
            out.len()
        );
        assert!(!write_local_within(&mut out, &q, &a, 512));
        assert!(out.len() <= 512, "{}", out.len());
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(u16::from(m.metadata.response_code), 3);
        assert_eq!(m.authorities.len(), 1);
        // Too small for even the answer without its text: truncated, question only.
        assert!(write_local_within(&mut out, &q, &a, 300));
        let m = Message::from_vec(&out).unwrap();
        assert!(m.metadata.truncation);
        assert!(m.authorities.is_empty());
    }

    #[test]
    fn local_answer_round_trips_through_hickory() {
        let q = parse_query(&query_bytes("x.ads.example.", RecordType::A, true)).unwrap();
        let mut out = Vec::new();
        write_local(
            &mut out,
            &q,
            &LocalAnswer {
                rcode: rcode::NXDOMAIN,
                address: None,
                soa_labels: Some(2),
                ttl: 10,
                ede: Some((EDE_BLOCKED, "blocked by ads.example")),
            },
        );
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(u16::from(m.metadata.response_code), 3);
        assert_eq!(m.authorities.len(), 1);
        assert_eq!(m.authorities[0].name.to_ascii(), "ads.example.");
        assert_eq!(m.authorities[0].ttl, 10);
        assert!(m.edns.is_some());
    }

    const PINNED_A: &str = "123481800001000100000001017803616473076578616d706c650000010001c00c000100010000000a00040000000000002904d000008000000d000f0009000f626c6f636b6564";
    const PINNED_NXDOMAIN: &str = "123481830001000000010001017803616473076578616d706c650000010001c00e000600010000000a00280873696e6b686f6c650007626c6f636b6564c02b0000000100000e1000000258000151800000000a00002904d000008000000d000f0009000f626c6f636b6564";
    const PINNED_AAAA: &str = "12348180000100010000000003416473074578616d706c6500001c0001c00c001c00010000012c001000000000000000000000000000000000";
    const PINNED_ANY: &str = "123481800001000100000001076578616d706c650000ff0001c00c000d000100015180000907524643383438320000002904d0000080000000";

    // The bytes of local answers as written before they went through `write_records`
    // (#11): the general writer must not change a byte of them.
    #[test]
    fn local_answers_keep_their_bytes() {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let mut out = Vec::new();
        let q = parse_query(&query_bytes("x.ads.example.", RecordType::A, true)).unwrap();
        let mut a = LocalAnswer {
            rcode: rcode::NOERROR,
            address: Some("0.0.0.0".parse().unwrap()),
            soa_labels: None,
            ttl: 10,
            ede: Some((EDE_BLOCKED, "blocked")),
        };
        write_local(&mut out, &q, &a);
        assert_eq!(hex(&out), PINNED_A);
        a.rcode = rcode::NXDOMAIN;
        a.address = None;
        a.soa_labels = Some(2);
        write_local(&mut out, &q, &a);
        assert_eq!(hex(&out), PINNED_NXDOMAIN);
        let q = parse_query(&query_bytes("Ads.Example.", RecordType::AAAA, false)).unwrap();
        let a = LocalAnswer {
            rcode: rcode::NOERROR,
            address: Some("::".parse().unwrap()),
            soa_labels: None,
            ttl: 300,
            ede: None,
        };
        write_local(&mut out, &q, &a);
        assert_eq!(hex(&out), PINNED_AAAA);
        let q = parse_query(&query_bytes("example.", RecordType::ANY, true)).unwrap();
        write_answer(&mut out, &q, super::super::TYPE_HINFO, 86400, RFC8482_HINFO);
        assert_eq!(hex(&out), PINNED_ANY);
    }

    #[test]
    fn records_of_any_type_round_trip_through_hickory() {
        use hickory_proto::rr::RData;
        let q = parse_query(&query_bytes("Mail.Example.", RecordType::MX, true)).unwrap();
        let txt = b"\x05hello\x0bworld, too!";
        let mx = b"\x00\x0a\x02mx\x07example\x00";
        let records = [
            LocalRecord {
                rtype: u16::from(RecordType::TXT),
                ttl: 300,
                rdata: txt,
            },
            LocalRecord {
                rtype: u16::from(RecordType::MX),
                ttl: 60,
                rdata: mx,
            },
        ];
        let mut out = Vec::new();
        let soa = LocalSoa { labels: 1, ttl: 30 };
        write_records(
            &mut out,
            &q,
            rcode::NOERROR,
            &records,
            Some(soa),
            Some((EDE_BLOCKED, "local")),
        );
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(u16::from(m.metadata.response_code), 0);
        assert_eq!(m.answers.len(), 2);
        for r in &m.answers {
            // The client's spelling of the name, through the pointer to the question.
            assert_eq!(r.name.to_ascii(), "Mail.Example.");
        }
        match &m.answers[0].data {
            RData::TXT(t) => assert_eq!(
                t.txt_data.iter().map(|s| &s[..]).collect::<Vec<_>>(),
                [&b"hello"[..], b"world, too!"]
            ),
            other => panic!("not a TXT: {other:?}"),
        }
        assert_eq!(m.answers[0].ttl, 300);
        match &m.answers[1].data {
            RData::MX(mx) => {
                assert_eq!(mx.preference, 10);
                assert_eq!(mx.exchange.to_ascii(), "mx.example.");
            }
            other => panic!("not an MX: {other:?}"),
        }
        assert_eq!(m.answers[1].ttl, 60);
        assert_eq!(m.authorities.len(), 1);
        assert_eq!(m.authorities[0].name.to_ascii(), "Example.");
        assert_eq!(m.authorities[0].ttl, 30);
        assert!(m.edns.is_some());

        // More than the client takes: truncated, question only.
        let mut big = vec![199u8];
        big.extend([b'a'; 199]);
        let many = [LocalRecord {
            rtype: u16::from(RecordType::TXT),
            ttl: 1,
            rdata: &big,
        }; 3];
        assert!(!write_records_within(
            &mut out,
            &q,
            rcode::NOERROR,
            &many,
            None,
            None,
            1232
        ));
        assert_eq!(Message::from_vec(&out).unwrap().answers.len(), 3);
        assert!(write_records_within(
            &mut out,
            &q,
            rcode::NOERROR,
            &many,
            None,
            None,
            512
        ));
        let m = Message::from_vec(&out).unwrap();
        assert!(m.metadata.truncation);
        assert!(m.answers.is_empty());

        // A record too long for its 16-bit length is left out, not written broken.
        let huge = vec![0u8; 70_000];
        let too_long = LocalRecord {
            rtype: u16::from(RecordType::TXT),
            ttl: 1,
            rdata: &huge,
        };
        write_records(
            &mut out,
            &q,
            rcode::NOERROR,
            &[too_long, records[1]],
            None,
            None,
        );
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.answers.len(), 1);
        assert!(matches!(m.answers[0].data, RData::MX(_)));
    }
}
