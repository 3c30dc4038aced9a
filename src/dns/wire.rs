//! Hand-written, allocation-free parsing of DNS queries and writing of responses (RFC 1035,
//! EDNS RFC 6891, Extended DNS Errors RFC 8914, negative answers RFC 2308).
//!
//! Everything here is pure: bytes in, bytes out. Malformed input is an `Err`, never a panic;
//! every index is bounds-checked.

use std::net::IpAddr;

/// Length of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// Record type A.
pub const TYPE_A: u16 = 1;
/// Record type SOA.
pub const TYPE_SOA: u16 = 6;
/// Record type AAAA.
pub const TYPE_AAAA: u16 = 28;
/// Record type OPT (EDNS pseudo-record).
pub const TYPE_OPT: u16 = 41;
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

/// The UDP payload size this server advertises and asks upstreams for (DNS flag day 2020).
pub const EDNS_PAYLOAD: u16 = 1232;
/// Extended DNS Error: blocked (RFC 8914 §4.16).
pub const EDE_BLOCKED: u16 = 15;
/// Extended DNS Error: no reachable authority (RFC 8914 §4.23).
pub const EDE_NO_REACHABLE_AUTHORITY: u16 = 22;

/// EDNS facts of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// The requestor's UDP payload size.
    pub payload: u16,
    /// The DO (DNSSEC OK) bit.
    pub dnssec_ok: bool,
    /// EDNS version (only 0 is served).
    pub version: u8,
}

/// A parsed query: header facts, the question, and EDNS. Lives on the stack.
#[derive(Clone)]
pub struct Query {
    /// Message ID, echoed in the response.
    pub id: u16,
    /// The query's header flag word.
    pub flags: u16,
    /// Question type.
    pub qtype: u16,
    /// Question class.
    pub qclass: u16,
    /// EDNS, when the query had an OPT record.
    pub edns: Option<Edns>,
    wire: [u8; 255],
    wire_len: u8,
    text: [u8; 510],
    text_len: u16,
    labels: [u8; 128],
    nlabels: u8,
}

impl std::fmt::Debug for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Query")
            .field("id", &self.id)
            .field("name", &String::from_utf8_lossy(self.name()))
            .field("qtype", &self.qtype)
            .field("qclass", &self.qclass)
            .field("edns", &self.edns)
            .finish()
    }
}

impl Query {
    /// The name as the client sent it, in wire format (length-prefixed labels, final 0).
    pub fn wire_name(&self) -> &[u8] {
        &self.wire[..self.wire_len as usize]
    }

    /// The name in lower case, dotted, without the trailing dot ("" for the root). A `.` or
    /// `\` inside a label is escaped with `\`, so that label boundaries stay unambiguous.
    pub fn name(&self) -> &[u8] {
        &self.text[..self.text_len as usize]
    }

    /// The name as text (lossy for non-UTF-8 bytes), for logs.
    pub fn name_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.name())
    }

    /// Offset in the packet (from the message start) of the suffix made of the last `n`
    /// labels of the question name, for a compression pointer to it.
    pub fn suffix_offset(&self, n: usize) -> Option<u16> {
        let total = self.nlabels as usize;
        let idx = total.checked_sub(n)?;
        if idx >= total {
            return None;
        }
        Some(HEADER_LEN as u16 + u16::from(self.labels[idx]))
    }

    /// Number of labels in the question name.
    pub fn label_count(&self) -> usize {
        self.nlabels as usize
    }

    /// True when recursion was desired.
    pub fn rd(&self) -> bool {
        self.flags & RD != 0
    }

    /// True when DNSSEC checking was disabled.
    pub fn cd(&self) -> bool {
        self.flags & CD != 0
    }

    /// True when the DO bit was set.
    pub fn dnssec_ok(&self) -> bool {
        self.edns.is_some_and(|e| e.dnssec_ok)
    }

    /// Largest UDP response this client accepts.
    pub fn udp_limit(&self) -> usize {
        match self.edns {
            Some(e) => usize::from(e.payload.clamp(512, 4096)),
            None => 512,
        }
    }

    /// The cache key: lower-cased wire name, type, class, and the DO, CD and RD bits (which
    /// change what an upstream returns: an RD=0 answer may be a referral).
    pub fn cache_key<'b>(&self, buf: &'b mut [u8; 262]) -> &'b [u8] {
        let n = self.wire_len as usize;
        for (d, s) in buf.iter_mut().zip(&self.wire[..n]) {
            *d = s.to_ascii_lowercase();
        }
        buf[n..n + 2].copy_from_slice(&self.qtype.to_be_bytes());
        buf[n + 2..n + 4].copy_from_slice(&self.qclass.to_be_bytes());
        buf[n + 4] =
            u8::from(self.dnssec_ok()) | (u8::from(self.cd()) << 1) | (u8::from(self.rd()) << 2);
        &buf[..n + 5]
    }

    /// Length of the question section as written (name + type + class).
    pub fn question_len(&self) -> usize {
        self.wire_len as usize + 4
    }

    fn write_question(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.wire_name());
        out.extend_from_slice(&self.qtype.to_be_bytes());
        out.extend_from_slice(&self.qclass.to_be_bytes());
    }
}

/// Why a packet is not served as a normal query.
#[derive(Debug, Clone)]
pub enum Reject {
    /// Not answerable at all (shorter than a header, or a response): dropped silently.
    Drop,
    /// Answer with this rcode; the question is echoed when it parsed.
    Reply {
        /// Message ID.
        id: u16,
        /// Query flags.
        flags: u16,
        /// FORMERR, NOTIMP or BADVERS.
        rcode: u16,
        /// The question, when it could be read.
        query: Option<Box<Query>>,
    },
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// Parses the question name at `pos` (no compression allowed in a question: a query that
/// uses it is answered FORMERR). Returns the position after it.
fn parse_qname(pkt: &[u8], mut pos: usize, q: &mut Query) -> Option<usize> {
    let start = pos;
    let mut text_len = 0usize;
    loop {
        let len = usize::from(*pkt.get(pos)?);
        if len == 0 {
            pos += 1;
            break;
        }
        if len > 63 || q.nlabels as usize >= q.labels.len() {
            return None;
        }
        q.labels[q.nlabels as usize] = u8::try_from(pos - start).ok()?;
        q.nlabels += 1;
        let label = pkt.get(pos + 1..pos + 1 + len)?;
        if text_len > 0 {
            q.text[text_len] = b'.';
            text_len += 1;
        }
        for &c in label {
            if c == b'.' || c == b'\\' {
                q.text[text_len] = b'\\';
                text_len += 1;
            }
            q.text[text_len] = c.to_ascii_lowercase();
            text_len += 1;
        }
        pos += 1 + len;
        if pos - start > 255 {
            return None;
        }
    }
    let wl = pos - start;
    if wl > 255 {
        return None;
    }
    q.wire[..wl].copy_from_slice(&pkt[start..pos]);
    q.wire_len = u8::try_from(wl).ok()?;
    q.text_len = u16::try_from(text_len).ok()?;
    Some(pos)
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

/// Parses a query packet. See [`Reject`] for what is not served.
pub fn parse_query(pkt: &[u8]) -> Result<Query, Reject> {
    if pkt.len() < HEADER_LEN {
        return Err(Reject::Drop);
    }
    let id = u16_at(pkt, 0).ok_or(Reject::Drop)?;
    let flags = u16_at(pkt, 2).ok_or(Reject::Drop)?;
    if flags & QR != 0 {
        return Err(Reject::Drop);
    }
    let qd = u16_at(pkt, 4).unwrap_or(0);
    let an = u16_at(pkt, 6).unwrap_or(0);
    let ns = u16_at(pkt, 8).unwrap_or(0);
    let ar = u16_at(pkt, 10).unwrap_or(0);
    let formerr = |query: Option<Box<Query>>| Reject::Reply {
        id,
        flags,
        rcode: rcode::FORMERR,
        query,
    };
    let mut q = Query {
        id,
        flags,
        qtype: 0,
        qclass: 0,
        edns: None,
        wire: [0; 255],
        wire_len: 0,
        text: [0; 510],
        text_len: 0,
        labels: [0; 128],
        nlabels: 0,
    };
    let question = if qd == 1 {
        parse_qname(pkt, HEADER_LEN, &mut q).and_then(|p| {
            q.qtype = u16_at(pkt, p)?;
            q.qclass = u16_at(pkt, p + 2)?;
            Some(p + 4)
        })
    } else {
        None
    };
    if flags & OPCODE_MASK != 0 {
        return Err(Reject::Reply {
            id,
            flags,
            rcode: rcode::NOTIMP,
            query: question.map(|_| Box::new(q.clone())),
        });
    }
    let Some(mut pos) = question else {
        return Err(formerr(None));
    };
    for _ in 0..(u32::from(an) + u32::from(ns)) {
        match parse_rr(pkt, pos) {
            Some(rr) => pos = rr.end,
            None => return Err(formerr(Some(Box::new(q)))),
        }
    }
    for _ in 0..ar {
        let Some(rr) = parse_rr(pkt, pos) else {
            return Err(formerr(Some(Box::new(q))));
        };
        if rr.rtype == TYPE_OPT {
            // RFC 6891 §6.1.1: one OPT, owned by the root.
            if q.edns.is_some() || pkt[rr.start] != 0 {
                return Err(formerr(Some(Box::new(q))));
            }
            let payload = u16_at(pkt, rr.start + 3).unwrap_or(512);
            let version = pkt[rr.ttl_off + 1];
            let dnssec_ok = pkt[rr.ttl_off + 2] & 0x80 != 0;
            q.edns = Some(Edns {
                payload,
                dnssec_ok,
                version,
            });
        }
        pos = rr.end;
    }
    if q.edns.is_some_and(|e| e.version != 0) {
        return Err(Reject::Reply {
            id,
            flags,
            rcode: rcode::BADVERS,
            query: Some(Box::new(q)),
        });
    }
    Ok(q)
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn response_flags(query_flags: u16, rc: u16, extra: u16) -> u16 {
    QR | (query_flags & (OPCODE_MASK | RD | CD)) | RA | extra | (rc & 0x000F)
}

fn write_header(out: &mut Vec<u8>, id: u16, flags: u16, counts: [u16; 4]) {
    put_u16(out, id);
    put_u16(out, flags);
    for c in counts {
        put_u16(out, c);
    }
}

/// Writes an OPT record with our payload size, the client's DO bit, the upper rcode bits,
/// and an optional Extended DNS Error.
fn write_opt(out: &mut Vec<u8>, dnssec_ok: bool, rc: u16, ede: Option<(u16, &str)>) {
    out.push(0);
    put_u16(out, TYPE_OPT);
    put_u16(out, EDNS_PAYLOAD);
    out.push(u8::try_from(rc >> 4).unwrap_or(0));
    out.push(0);
    put_u16(out, if dnssec_ok { 0x8000 } else { 0 });
    match ede {
        Some((code, text)) => {
            let text = &text.as_bytes()[..text.len().min(200)];
            put_u16(out, 6 + text.len() as u16);
            put_u16(out, 15); // option code: Extended DNS Error
            put_u16(out, 2 + text.len() as u16);
            put_u16(out, code);
            out.extend_from_slice(text);
        }
        None => put_u16(out, 0),
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

/// What a locally made answer (a blocked name) holds.
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

/// Writes a locally made answer for `q`.
pub fn write_local(out: &mut Vec<u8>, q: &Query, a: &LocalAnswer<'_>) {
    out.clear();
    let an = u16::from(a.address.is_some());
    let ns = u16::from(a.soa_labels.is_some());
    let ar = u16::from(q.edns.is_some());
    write_header(
        out,
        q.id,
        response_flags(q.flags, a.rcode, 0),
        [1, an, ns, ar],
    );
    q.write_question(out);
    if let Some(addr) = a.address {
        let (v4, v6);
        let (rtype, octets): (u16, &[u8]) = match addr {
            IpAddr::V4(ip) => {
                v4 = ip.octets();
                (TYPE_A, &v4)
            }
            IpAddr::V6(ip) => {
                v6 = ip.octets();
                (TYPE_AAAA, &v6)
            }
        };
        put_u16(out, 0xC000 | HEADER_LEN as u16);
        put_u16(out, rtype);
        put_u16(out, q.qclass);
        put_u32(out, a.ttl);
        put_u16(out, octets.len() as u16);
        out.extend_from_slice(octets);
    }
    if let Some(n) = a.soa_labels {
        let owner = q.suffix_offset(n).unwrap_or(HEADER_LEN as u16);
        put_u16(out, 0xC000 | owner);
        put_u16(out, TYPE_SOA);
        put_u16(out, q.qclass);
        put_u32(out, a.ttl);
        // mname "sinkhole.", rname "blocked.sinkhole." (pointer to mname's label).
        let rdlen_pos = out.len();
        put_u16(out, 0);
        let mname = out.len();
        out.extend_from_slice(b"\x08sinkhole\x00");
        out.extend_from_slice(b"\x07blocked");
        put_u16(out, 0xC000 | u16::try_from(mname).unwrap_or(0));
        for v in [1, 3600, 600, 86400, a.ttl] {
            put_u32(out, v);
        }
        let rdlen = u16::try_from(out.len() - rdlen_pos - 2).unwrap_or(0);
        out[rdlen_pos..rdlen_pos + 2].copy_from_slice(&rdlen.to_be_bytes());
    }
    if let Some(e) = q.edns {
        write_opt(out, e.dnssec_ok, a.rcode, a.ede);
    }
}

/// Writes the query sent upstream: our ID, the client's RD, CD and AD bits and question
/// (name lower-cased), and an OPT with our payload size and the client's DO bit.
pub fn write_upstream_query(out: &mut Vec<u8>, q: &Query, id: u16) {
    out.clear();
    write_header(out, id, q.flags & (RD | CD | AD), [1, 0, 0, 1]);
    out.extend(q.wire_name().iter().map(u8::to_ascii_lowercase));
    put_u16(out, q.qtype);
    put_u16(out, q.qclass);
    write_opt(out, q.dnssec_ok(), 0, None);
}

/// An upstream answer ready to be cached and relayed: the message without its OPT record,
/// with the positions of its TTL fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    wire: Box<[u8]>,
    /// (offset, TTL already clamped to the cache's bounds) of every record.
    ttls: Box<[(u16, u32)]>,
    /// How long the answer may be cached (seconds), or `None` when it must not be.
    pub cache_ttl: Option<u32>,
    /// The answers as text, rendered once for the query log (a cached answer is logged
    /// many times).
    answers_text: std::sync::OnceLock<Box<[Box<str>]>>,
}

/// Why an upstream answer was not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// Not a well-formed DNS message.
    Malformed,
    /// Not the answer to our query (ID or question differ): ignored, keep waiting.
    Mismatch,
    /// The TC bit is set: retry over TCP.
    Truncated,
}

impl Response {
    /// Checks an upstream answer to `q` (sent with ID `id`) and prepares it for relaying.
    /// TTLs are clamped to `[min_ttl, max_ttl]`.
    pub fn from_upstream(
        pkt: &[u8],
        q: &Query,
        id: u16,
        min_ttl: u32,
        max_ttl: u32,
    ) -> Result<Self, ResponseError> {
        use ResponseError::*;
        if pkt.len() < HEADER_LEN {
            return Err(Malformed);
        }
        let flags = u16_at(pkt, 2).ok_or(Malformed)?;
        if u16_at(pkt, 0) != Some(id) || flags & QR == 0 || u16_at(pkt, 4) != Some(1) {
            return Err(Mismatch);
        }
        let qn = q.wire_name();
        let qend = HEADER_LEN + qn.len();
        let same_question = pkt
            .get(HEADER_LEN..qend)
            .is_some_and(|n| n.eq_ignore_ascii_case(qn))
            && u16_at(pkt, qend) == Some(q.qtype)
            && u16_at(pkt, qend + 2) == Some(q.qclass);
        if !same_question {
            return Err(Mismatch);
        }
        if flags & TC != 0 {
            return Err(Truncated);
        }
        let rc = flags & 0x000F;
        let an = u16_at(pkt, 6).ok_or(Malformed)?;
        let ns = u16_at(pkt, 8).ok_or(Malformed)?;
        let ar = u16_at(pkt, 10).ok_or(Malformed)?;
        let mut pos = qend + 4;
        let mut ttls = Vec::with_capacity(usize::from(an) + usize::from(ns) + usize::from(ar));
        let mut min_answer: Option<u32> = None;
        let mut soa_neg: Option<u32> = None;
        let mut opt: Option<(usize, usize)> = None;
        let total = u32::from(an) + u32::from(ns) + u32::from(ar);
        for i in 0..total {
            let rr = parse_rr(pkt, pos).ok_or(Malformed)?;
            let ttl = u32_at(pkt, rr.ttl_off).ok_or(Malformed)?;
            if rr.rtype == TYPE_OPT {
                if i < u32::from(an) + u32::from(ns) || opt.is_some() {
                    return Err(Malformed);
                }
                opt = Some((rr.start, rr.end));
            } else {
                let clamped = ttl.min(i32::MAX as u32).clamp(min_ttl, max_ttl);
                ttls.push((u16::try_from(rr.ttl_off).map_err(|_| Malformed)?, clamped));
                if i < u32::from(an) {
                    min_answer = Some(min_answer.map_or(clamped, |m| m.min(clamped)));
                } else if i < u32::from(an) + u32::from(ns) && rr.rtype == TYPE_SOA {
                    let minimum =
                        u32_at(pkt, rr.end.checked_sub(4).ok_or(Malformed)?).ok_or(Malformed)?;
                    soa_neg = Some(ttl.min(minimum).clamp(min_ttl, max_ttl));
                }
            }
            pos = rr.end;
        }
        let cache_ttl = match rc {
            rcode::NOERROR if an > 0 => min_answer,
            rcode::NOERROR | rcode::NXDOMAIN => soa_neg,
            _ => None,
        }
        .filter(|&t| t > 0);
        let mut wire = Vec::with_capacity(pos);
        match opt {
            Some((s, e)) if e == pos => {
                wire.extend_from_slice(&pkt[..s]);
                let ar = ar - 1;
                wire[10..12].copy_from_slice(&ar.to_be_bytes());
            }
            // An OPT that is not the last record: records after it may point into each
            // other, so it cannot be cut out byte-wise. Rare enough to not cache.
            Some(_) => return Self::reencode_without_opt(pkt, q, id, min_ttl, max_ttl),
            None => wire.extend_from_slice(&pkt[..pos]),
        }
        Ok(Self {
            wire: wire.into_boxed_slice(),
            ttls: ttls.into_boxed_slice(),
            cache_ttl,
            answers_text: std::sync::OnceLock::new(),
        })
    }

    fn reencode_without_opt(
        pkt: &[u8],
        q: &Query,
        id: u16,
        min_ttl: u32,
        max_ttl: u32,
    ) -> Result<Self, ResponseError> {
        let mut msg =
            hickory_proto::op::Message::from_vec(pkt).map_err(|_| ResponseError::Malformed)?;
        msg.edns = None;
        let bytes = msg.to_vec().map_err(|_| ResponseError::Malformed)?;
        let mut r = Self::from_upstream(&bytes, q, id, min_ttl, max_ttl)?;
        r.cache_ttl = None;
        Ok(r)
    }

    /// The response code.
    pub fn rcode(&self) -> u16 {
        u16_at(&self.wire, 2).unwrap_or(0) & 0x000F
    }

    /// The answer section as text, for the query log: addresses for A/AAAA, targets
    /// (without the final dot) for CNAME, PTR, NS, MX…, the record data otherwise. Parses
    /// the message, so it is for the log writer, not for the query path.
    pub fn answers(&self) -> &[Box<str>] {
        self.answers_text.get_or_init(|| {
            use hickory_proto::rr::RData;
            let Ok(msg) = hickory_proto::op::Message::from_vec(&self.wire) else {
                return Box::default();
            };
            let target = |n: &hickory_proto::rr::Name| {
                n.to_ascii()
                    .trim_end_matches('.')
                    .to_string()
                    .into_boxed_str()
            };
            msg.answers
                .iter()
                .map(|r| match &r.data {
                    RData::A(a) => a.0.to_string().into_boxed_str(),
                    RData::AAAA(a) => a.0.to_string().into_boxed_str(),
                    RData::CNAME(n) => target(&n.0),
                    RData::PTR(n) => target(&n.0),
                    RData::NS(n) => target(&n.0),
                    other => other.to_string().into_boxed_str(),
                })
                .collect()
        })
    }

    /// Number of answer records.
    pub fn answer_count(&self) -> u16 {
        u16_at(&self.wire, 6).unwrap_or(0)
    }

    /// Writes this answer for `q`, with every TTL reduced by `age` seconds; truncated (TC,
    /// question only) when larger than `limit`.
    pub fn write(&self, out: &mut Vec<u8>, q: &Query, age: u32, limit: usize) {
        out.clear();
        out.extend_from_slice(&self.wire);
        let up_flags = u16_at(&self.wire, 2).unwrap_or(0);
        // AD only for clients that asked for DNSSEC data (RFC 6840 §5.8).
        let ad = if q.dnssec_ok() || q.flags & AD != 0 {
            up_flags & AD
        } else {
            0
        };
        let flags = response_flags(q.flags, up_flags & 0x000F, (up_flags & AA) | ad);
        out[0..2].copy_from_slice(&q.id.to_be_bytes());
        out[2..4].copy_from_slice(&flags.to_be_bytes());
        // The client's own spelling of the name (same length: the cache key is the
        // case-folded name).
        let qn = q.wire_name();
        out[HEADER_LEN..HEADER_LEN + qn.len()].copy_from_slice(qn);
        for &(off, ttl) in self.ttls.iter() {
            let off = usize::from(off);
            out[off..off + 4].copy_from_slice(&ttl.saturating_sub(age).to_be_bytes());
        }
        if let Some(e) = q.edns {
            let ar = u16_at(out, 10).unwrap_or(0).saturating_add(1);
            out[10..12].copy_from_slice(&ar.to_be_bytes());
            write_opt(out, e.dnssec_ok, 0, None);
        }
        if out.len() > limit {
            out.clear();
            let ar = u16::from(q.edns.is_some());
            write_header(out, q.id, flags | TC, [1, 0, 0, ar]);
            q.write_question(out);
            if let Some(e) = q.edns {
                write_opt(out, e.dnssec_ok, 0, None);
            }
        }
    }
}

/// EDNS option code of a DNS cookie (RFC 7873 §4).
pub const OPT_COOKIE: u16 = 10;
/// Extended rcode BADCOOKIE (RFC 7873 §8): 7 in the header, 1 in the OPT's upper bits.
pub const RCODE_BADCOOKIE: u16 = 23;

/// A DNS cookie as an upstream answers it (RFC 7873 §4): our 8-byte client cookie echoed,
/// then the server's own cookie (8 to 32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cookie {
    /// The client cookie the answer echoes.
    pub client: [u8; 8],
    server: [u8; 32],
    server_len: u8,
}

impl Cookie {
    /// A cookie from its parts; `None` unless the server part is 8 to 32 bytes.
    pub fn new(client: [u8; 8], server: &[u8]) -> Option<Self> {
        if !(8..=32).contains(&server.len()) {
            return None;
        }
        let mut s = [0u8; 32];
        s[..server.len()].copy_from_slice(server);
        Some(Self {
            client,
            server: s,
            server_len: u8::try_from(server.len()).ok()?,
        })
    }

    /// The server cookie.
    pub fn server(&self) -> &[u8] {
        &self.server[..usize::from(self.server_len)]
    }
}

/// The COOKIE option of an upstream answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieOption {
    /// No COOKIE option (or no OPT at all): the server does not do cookies.
    Absent,
    /// A COOKIE option of a wrong length, or more than one.
    Malformed,
    /// A well-formed client + server cookie.
    Present(Cookie),
}

/// What the OPT record of an upstream answer says about cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamOpt {
    /// The full response code: the header's 4 bits and the OPT's upper 8 bits.
    pub rcode: u16,
    /// The COOKIE option.
    pub cookie: CookieOption,
}

/// Reads the extended rcode and the COOKIE option of an upstream answer, without
/// allocating. `None` when the message does not parse far enough to find its OPT record
/// (the answer check, [`Response::from_upstream`], then says what is wrong with it).
pub fn response_cookie(pkt: &[u8]) -> Option<UpstreamOpt> {
    let flags = u16_at(pkt, 2)?;
    let qd = u16_at(pkt, 4)?;
    let records = u32::from(u16_at(pkt, 6)?) + u32::from(u16_at(pkt, 8)?);
    let ar = u16_at(pkt, 10)?;
    let mut pos = HEADER_LEN;
    for _ in 0..qd {
        pos = skip_name(pkt, pos)? + 4;
    }
    for _ in 0..records {
        pos = parse_rr(pkt, pos)?.end;
    }
    let mut out = UpstreamOpt {
        rcode: flags & 0x000F,
        cookie: CookieOption::Absent,
    };
    for _ in 0..ar {
        let rr = parse_rr(pkt, pos)?;
        pos = rr.end;
        if rr.rtype != TYPE_OPT {
            continue;
        }
        out.rcode |= u16::from(*pkt.get(rr.ttl_off)?) << 4;
        let mut o = rr.ttl_off + 6;
        while o + 4 <= rr.end {
            let code = u16_at(pkt, o)?;
            let len = usize::from(u16_at(pkt, o + 2)?);
            let data = pkt
                .get(o + 4..o + 4 + len)
                .filter(|_| o + 4 + len <= rr.end)?;
            if code == OPT_COOKIE {
                let parsed = data
                    .get(..8)
                    .and_then(|c| Cookie::new(c.try_into().ok()?, &data[8..]));
                out.cookie = match (out.cookie, parsed) {
                    (CookieOption::Absent, Some(c)) => CookieOption::Present(c),
                    _ => CookieOption::Malformed,
                };
            }
            o += 4 + len;
        }
    }
    Some(out)
}

/// Writes the query sent upstream, as [`write_upstream_query`] does, with a COOKIE option in
/// its OPT: our client cookie, and the server's cookie when we know it (RFC 7873 §5.1).
pub fn write_upstream_query_cookie(
    out: &mut Vec<u8>,
    q: &Query,
    id: u16,
    client: &[u8; 8],
    server: Option<&[u8]>,
) {
    write_upstream_query(out, q, id);
    let server = server.map_or(&[][..], |s| &s[..s.len().min(32)]);
    let option_len = 8 + server.len();
    // The OPT is the last record, right after the question; its RDLENGTH sits 9 bytes in.
    let rdlen_at = HEADER_LEN + q.question_len() + 9;
    let Some(rdlen) = u16_at(out, rdlen_at) else {
        return;
    };
    let rdlen = rdlen + 4 + option_len as u16;
    out[rdlen_at..rdlen_at + 2].copy_from_slice(&rdlen.to_be_bytes());
    put_u16(out, OPT_COOKIE);
    put_u16(out, option_len as u16);
    out.extend_from_slice(client);
    out.extend_from_slice(server);
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns as HEdns, Message, MessageType, OpCode, Query as HQuery};
    use hickory_proto::rr::{Name, RecordType};

    fn query_bytes(name: &str, rt: RecordType, edns: bool) -> Vec<u8> {
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

    #[test]
    fn parses_name_type_and_edns() {
        let q = parse_query(&query_bytes("WWW.Example.COM.", RecordType::AAAA, true)).unwrap();
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.name(), b"www.example.com");
        assert_eq!(q.qtype, 28);
        assert_eq!(q.label_count(), 3);
        assert_eq!(q.suffix_offset(2), Some(16));
        let e = q.edns.unwrap();
        assert!(e.dnssec_ok);
        assert_eq!(e.payload, 1232);
        assert_eq!(q.udp_limit(), 1232);
    }

    #[test]
    fn root_name_is_empty() {
        let q = parse_query(&query_bytes(".", RecordType::NS, false)).unwrap();
        assert_eq!(q.name(), b"");
        assert_eq!(q.udp_limit(), 512);
    }

    #[test]
    fn rejects() {
        assert!(matches!(parse_query(&[0; 5]), Err(Reject::Drop)));
        let mut resp = query_bytes("a.com.", RecordType::A, false);
        resp[2] |= 0x80;
        assert!(matches!(parse_query(&resp), Err(Reject::Drop)));
        let mut two = query_bytes("a.com.", RecordType::A, false);
        two[5] = 2;
        assert!(matches!(
            parse_query(&two),
            Err(Reject::Reply { rcode: 1, .. })
        ));
        let mut zero = query_bytes("a.com.", RecordType::A, false);
        zero[5] = 0;
        assert!(matches!(
            parse_query(&zero),
            Err(Reject::Reply {
                rcode: 1,
                query: None,
                ..
            })
        ));
        let mut notify = query_bytes("a.com.", RecordType::SOA, false);
        notify[2] |= 4 << 3;
        assert!(matches!(
            parse_query(&notify),
            Err(Reject::Reply {
                rcode: 4,
                query: Some(_),
                ..
            })
        ));
        let mut cut = query_bytes("a.com.", RecordType::A, true);
        cut.truncate(cut.len() - 3);
        assert!(matches!(
            parse_query(&cut),
            Err(Reject::Reply { rcode: 1, .. })
        ));
    }

    #[test]
    fn dot_inside_a_label_is_escaped() {
        let mut pkt = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        pkt.extend_from_slice(b"\x03a.b\x03com\x00\x00\x01\x00\x01");
        let q = parse_query(&pkt).unwrap();
        assert_eq!(q.name(), b"a\\.b.com");
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
}
