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
        self.wire
            .get(..usize::from(self.wire_len))
            .unwrap_or_default()
    }

    /// The name in lower case, dotted, without the trailing dot ("" for the root). A `.` or
    /// `\` inside a label is escaped with `\`, so that label boundaries stay unambiguous.
    pub fn name(&self) -> &[u8] {
        self.text
            .get(..usize::from(self.text_len))
            .unwrap_or_default()
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
        Some(HEADER_LEN as u16 + u16::from(*self.labels.get(idx)?))
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
        // The wire name is at most 255 bytes, so the 7 bytes after it always fit in 262.
        let name = self.wire_name();
        let n = name.len();
        for (d, s) in buf.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        let bits =
            u8::from(self.dnssec_ok()) | (u8::from(self.cd()) << 1) | (u8::from(self.rd()) << 2);
        let [t0, t1] = self.qtype.to_be_bytes();
        let [c0, c1] = self.qclass.to_be_bytes();
        for (d, v) in buf.iter_mut().skip(n).zip([t0, t1, c0, c1, bits]) {
            *d = v;
        }
        buf.get(..n + 5).unwrap_or_default()
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
///
/// The wire name is at most 255 bytes (RFC 1035 §3.1), checked before a label is copied;
/// the text form escapes `.` and `\` inside labels, so it can be about twice as long, and
/// every write into it is bounds-checked as well (#10: a name of `.` bytes used to write
/// past the text buffer and panic the listener).
fn parse_qname(pkt: &[u8], mut pos: usize, q: &mut Query) -> Option<usize> {
    let start = pos;
    let mut text_len = 0usize;
    let mut push = |text: &mut [u8; 510], c: u8| -> Option<()> {
        *text.get_mut(text_len)? = c;
        text_len += 1;
        Some(())
    };
    loop {
        let len = usize::from(*pkt.get(pos)?);
        if len == 0 {
            pos += 1;
            break;
        }
        // The label, its length byte and the final root byte must fit in 255.
        if len > 63 || pos - start + 1 + len + 1 > 255 {
            return None;
        }
        *q.labels.get_mut(usize::from(q.nlabels))? = u8::try_from(pos - start).ok()?;
        q.nlabels = q.nlabels.checked_add(1)?;
        let label = pkt.get(pos + 1..pos + 1 + len)?;
        if pos > start {
            push(&mut q.text, b'.')?;
        }
        for &c in label {
            if c == b'.' || c == b'\\' {
                push(&mut q.text, b'\\')?;
            }
            push(&mut q.text, c.to_ascii_lowercase())?;
        }
        pos += 1 + len;
    }
    let wire = pkt.get(start..pos)?;
    q.wire.get_mut(..wire.len())?.copy_from_slice(wire);
    q.wire_len = u8::try_from(wire.len()).ok()?;
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
            if q.edns.is_some() || pkt.get(rr.start) != Some(&0) {
                return Err(formerr(Some(Box::new(q))));
            }
            let payload = u16_at(pkt, rr.start + 3).unwrap_or(512);
            // parse_rr checked that the TTL field (version and flags) is in the packet.
            let version = pkt.get(rr.ttl_off + 1).copied().unwrap_or(0);
            let dnssec_ok = pkt.get(rr.ttl_off + 2).is_some_and(|b| b & 0x80 != 0);
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
fn write_opt(out: &mut Vec<u8>, dnssec_ok: bool, rc: u16, ede: Option<(u16, &str)>) {
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

/// Writes a locally made answer for `q` that fits in `limit` bytes (the client's UDP
/// size): when it would not, the EDE text is shortened at a character boundary (a long name
/// with an SOA and a long rule text can pass 512 bytes), and if even the answer without it
/// does not fit, a truncated answer (TC, question only) is written. Returns true when
/// truncated.
pub fn write_local_within(out: &mut Vec<u8>, q: &Query, a: &LocalAnswer<'_>, limit: usize) -> bool {
    write_local(out, q, a);
    let Some(excess) = out.len().checked_sub(limit).filter(|&e| e > 0) else {
        return false;
    };
    if let Some((code, text)) = a.ede {
        let shorter = LocalAnswer {
            ede: Some((code, cut_at_char(text, text.len().saturating_sub(excess)))),
            ..*a
        };
        write_local(out, q, &shorter);
        if out.len() <= limit {
            return false;
        }
    }
    out.clear();
    let ar = u16::from(q.edns.is_some());
    write_header(
        out,
        q.id,
        response_flags(q.flags, a.rcode, TC),
        [1, 0, 0, ar],
    );
    q.write_question(out);
    if let Some(e) = q.edns {
        write_opt(out, e.dnssec_ok, a.rcode, None);
    }
    true
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
        patch(out, rdlen_pos, &rdlen.to_be_bytes());
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
    /// TTLs are clamped to `[min_ttl, max_ttl]`. Records outside the question's bailiwick
    /// are stripped (see `scrub`); an answer with none is kept byte for byte.
    pub fn from_upstream(
        pkt: &[u8],
        q: &Query,
        id: u16,
        min_ttl: u32,
        max_ttl: u32,
    ) -> Result<Self, ResponseError> {
        Self::build(pkt, q, id, min_ttl, max_ttl, true)
    }

    fn build(
        pkt: &[u8],
        q: &Query,
        id: u16,
        min_ttl: u32,
        max_ttl: u32,
        scrub: bool,
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
        if scrub {
            let mut any = false;
            scrub::strays(pkt, qend + 4, [an, ns, ar], q.qtype, |_| any = true).ok_or(Malformed)?;
            if any {
                return Self::reencode_scrubbed(pkt, q, id, min_ttl, max_ttl);
            }
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
                wire.extend_from_slice(pkt.get(..s).ok_or(Malformed)?);
                patch(&mut wire, 10, &ar.saturating_sub(1).to_be_bytes());
            }
            // An OPT that is not the last record: records after it may point into each
            // other, so it cannot be cut out byte-wise. Rare enough to not cache.
            Some(_) => return Self::reencode_without_opt(pkt, q, id, min_ttl, max_ttl),
            None => wire.extend_from_slice(pkt.get(..pos).ok_or(Malformed)?),
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
        let mut r = Self::build(&bytes, q, id, min_ttl, max_ttl, true)?;
        r.cache_ttl = None;
        Ok(r)
    }

    /// The response code.
    pub fn rcode(&self) -> u16 {
        u16_at(&self.wire, 2).unwrap_or(0) & 0x000F
    }

    /// The answer section as text, for the query log: addresses for A/AAAA, targets
    /// (without the final dot) for CNAME, PTR, NS, MX…, the record data otherwise. Bounded:
    /// at most [`LOG_ANSWERS`] answers, each cut to [`LOG_ANSWER_TEXT`] bytes as written in
    /// JSON (ending in `…`), then one `…+N more` entry for the rest. Parses the message, so
    /// it is for the log writer, not for the query path.
    pub fn answers(&self) -> &[Box<str>] {
        self.answers_text.get_or_init(|| {
            use hickory_proto::rr::RData;
            let Ok(msg) = hickory_proto::op::Message::from_vec(&self.wire) else {
                return Box::default();
            };
            let target = |n: &hickory_proto::rr::Name| {
                let t = n.to_ascii();
                clip_log_text(t.trim_end_matches('.'))
            };
            let mut v: Vec<Box<str>> = msg
                .answers
                .iter()
                .take(LOG_ANSWERS)
                .map(|r| match &r.data {
                    RData::A(a) => a.0.to_string().into_boxed_str(),
                    RData::AAAA(a) => a.0.to_string().into_boxed_str(),
                    RData::CNAME(n) => target(&n.0),
                    RData::PTR(n) => target(&n.0),
                    RData::NS(n) => target(&n.0),
                    other => clip_log_text(&other.to_string()),
                })
                .collect();
            if msg.answers.len() > LOG_ANSWERS {
                v.push(format!("…+{} more", msg.answers.len() - LOG_ANSWERS).into_boxed_str());
            }
            v.into_boxed_slice()
        })
    }

    /// Number of answer records.
    pub fn answer_count(&self) -> u16 {
        u16_at(&self.wire, 6).unwrap_or(0)
    }

    /// Writes this answer for `q`, with every TTL reduced by `age` seconds; truncated (TC,
    /// question only) when larger than `limit`. Returns true when it truncated.
    pub fn write(&self, out: &mut Vec<u8>, q: &Query, age: u32, limit: usize) -> bool {
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
        patch(out, 0, &q.id.to_be_bytes());
        patch(out, 2, &flags.to_be_bytes());
        // The client's own spelling of the name (same length: the cache key is the
        // case-folded name).
        patch(out, HEADER_LEN, q.wire_name());
        for &(off, ttl) in self.ttls.iter() {
            patch(
                out,
                usize::from(off),
                &ttl.saturating_sub(age).to_be_bytes(),
            );
        }
        if let Some(e) = q.edns {
            let ar = u16_at(out, 10).unwrap_or(0).saturating_add(1);
            patch(out, 10, &ar.to_be_bytes());
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
            return true;
        }
        false
    }
}

/// Answers kept per query-log record at most; more are summed up in one `…+N more` entry.
pub const LOG_ANSWERS: usize = 16;
/// Longest answer text in a query-log record, in bytes as written (JSON escapes included).
pub const LOG_ANSWER_TEXT: usize = 256;

impl Response {
    /// Bytes this answer holds, for the cache's byte budget: the message, the TTL table, the
    /// struct, and a reserve for the query-log text rendered from it (bounded by
    /// [`LOG_ANSWERS`] and [`LOG_ANSWER_TEXT`]).
    pub fn size_estimate(&self) -> usize {
        // One rendered answer costs its text plus a box (16) and allocator rounding (16);
        // short records (an A is 16 wire bytes) render to at most about three times that.
        let text_max = (LOG_ANSWERS + 1) * (LOG_ANSWER_TEXT + 32);
        let text = (self.wire.len() * 3).min(text_max);
        std::mem::size_of::<Self>()
            + self.wire.len()
            + std::mem::size_of_val::<[(u16, u32)]>(&self.ttls)
            + text
    }
}

/// Record type HINFO.
pub const TYPE_HINFO: u16 = 13;
/// Query type ANY (`*`).
pub const TYPE_ANY: u16 = 255;
/// The RDATA of the RFC 8482 §4.2 answer to ANY: HINFO with CPU `"RFC8482"` and an empty OS.
pub const RFC8482_HINFO: &[u8] = b"\x07RFC8482\x00";

/// Writes a NOERROR answer for `q` holding one record owned by the question name, of type
/// `rtype` with `rdata` (at most a few hundred bytes: the answer is never truncated), plus
/// an OPT when the query had EDNS.
pub fn write_answer(out: &mut Vec<u8>, q: &Query, rtype: u16, ttl: u32, rdata: &[u8]) {
    out.clear();
    let ar = u16::from(q.edns.is_some());
    write_header(
        out,
        q.id,
        response_flags(q.flags, rcode::NOERROR, 0),
        [1, 1, 0, ar],
    );
    q.write_question(out);
    put_u16(out, 0xC000 | HEADER_LEN as u16);
    put_u16(out, rtype);
    put_u16(out, q.qclass);
    put_u32(out, ttl);
    put_u16(out, u16::try_from(rdata.len()).unwrap_or(0));
    out.extend_from_slice(rdata.get(..usize::from(u16::MAX)).unwrap_or(rdata));
    if let Some(e) = q.edns {
        write_opt(out, e.dnssec_ok, rcode::NOERROR, None);
    }
}

/// `s` cut so that, written as a JSON string (escapes counted), it takes at most
/// [`LOG_ANSWER_TEXT`] bytes; a cut text ends in `…`.
fn clip_log_text(s: &str) -> Box<str> {
    let cost = |c: char| match c {
        '"' | '\\' | '\n' | '\t' | '\r' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    };
    let mut used = 0;
    for (i, c) in s.char_indices() {
        used += cost(c);
        // Room for the `…` (3 bytes) if anything is left after this char.
        if (used > LOG_ANSWER_TEXT - 3 && s.len() > i + c.len_utf8()) || used > LOG_ANSWER_TEXT {
            return format!("{}…", &s[..i]).into_boxed_str();
        }
    }
    s.into()
}

mod scrub;

impl Response {
    /// The rare path: `pkt` holds records outside the question's bailiwick. They are
    /// removed and the rest re-encoded (compression pointers may point into the removed
    /// records, so they cannot be cut out byte-wise).
    fn reencode_scrubbed(
        pkt: &[u8],
        q: &Query,
        id: u16,
        min_ttl: u32,
        max_ttl: u32,
    ) -> Result<Self, ResponseError> {
        use ResponseError::Malformed;
        let counts = [6, 8, 10].map(|i| u16_at(pkt, i).unwrap_or(0));
        let first = HEADER_LEN + q.question_len();
        let mut strays = Vec::new();
        scrub::strays(pkt, first, counts, q.qtype, |i| strays.push(i)).ok_or(Malformed)?;
        let mut msg = hickory_proto::op::Message::from_vec(pkt).map_err(|_| Malformed)?;
        let [an, ns, _] = counts.map(usize::from);
        if msg.answers.len() != an || msg.authorities.len() != ns {
            return Err(Malformed);
        }
        // Indices run over all records, OPT included, which hickory keeps apart (and which
        // is never a stray): map additional indices past the OPT.
        let opt_at = {
            let mut pos = first;
            let mut at = None;
            for i in 0..counts.iter().map(|&c| usize::from(c)).sum::<usize>() {
                let rr = parse_rr(pkt, pos).ok_or(Malformed)?;
                if rr.rtype == TYPE_OPT {
                    at = Some(i);
                }
                pos = rr.end;
            }
            at
        };
        let mut is_stray = strays.iter().copied().peekable();
        let mut keep = |i: usize| {
            let stray = is_stray.next_if_eq(&i).is_some();
            !stray
        };
        let mut i = 0;
        msg.answers.retain(|_| {
            i += 1;
            keep(i - 1)
        });
        msg.authorities.retain(|_| {
            i += 1;
            keep(i - 1)
        });
        msg.additionals.retain(|_| {
            if opt_at == Some(i) {
                i += 1;
            }
            i += 1;
            keep(i - 1)
        });
        let bytes = msg.to_vec().map_err(|_| Malformed)?;
        Self::build(&bytes, q, id, min_ttl, max_ttl, false)
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
        patch(&mut s, 0, server);
        Some(Self {
            client,
            server: s,
            server_len: u8::try_from(server.len()).ok()?,
        })
    }

    /// The server cookie.
    pub fn server(&self) -> &[u8] {
        self.server
            .get(..usize::from(self.server_len))
            .unwrap_or_default()
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
                    .zip(data.get(8..))
                    .and_then(|(c, s)| Cookie::new(c.try_into().ok()?, s));
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
    let server = server.map_or(&[][..], |s| s.get(..32).unwrap_or(s));
    let option_len = 8 + server.len();
    // The OPT is the last record, right after the question; its RDLENGTH sits 9 bytes in.
    let rdlen_at = HEADER_LEN + q.question_len() + 9;
    let Some(rdlen) = u16_at(out, rdlen_at) else {
        return;
    };
    let rdlen = rdlen + 4 + option_len as u16;
    patch(out, rdlen_at, &rdlen.to_be_bytes());
    put_u16(out, OPT_COOKIE);
    put_u16(out, option_len as u16);
    out.extend_from_slice(client);
    out.extend_from_slice(server);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
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

    fn dotted_name(lens: &[usize]) -> Vec<u8> {
        let mut pkt = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for &len in lens {
            pkt.push(len as u8);
            pkt.extend(std::iter::repeat_n(b'.', len));
        }
        pkt.extend_from_slice(b"\x00\x00\x01\x00\x01");
        pkt
    }

    // See: #10
    #[test]
    fn r10_escaped_name_longer_than_255_is_formerr_not_a_panic() {
        let pkt = dotted_name(&[63, 63, 63, 62, 63]);
        assert!(matches!(
            parse_query(&pkt),
            Err(Reject::Reply {
                rcode: rcode::FORMERR,
                ..
            })
        ));
    }

    #[test]
    fn longest_name_of_escaped_bytes_parses() {
        // 255 wire bytes, every byte escaped: the text form is twice as long.
        let q = parse_query(&dotted_name(&[63, 63, 63, 61])).unwrap();
        assert_eq!(q.wire_name().len(), 255);
        assert_eq!(q.name().len(), 2 * 250 + 3);
        assert!(q.name().starts_with(b"\\.\\."));
    }

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

    // See: #10 (a query-log record held every answer whole).
    #[test]
    fn r10_logged_answers_are_bounded() {
        use hickory_proto::rr::rdata::{A, TXT};
        use hickory_proto::rr::{RData, Record};
        let q = parse_query(&query_bytes("many.example.", RecordType::A, false)).unwrap();
        let mut m = Message::new(0x1234, MessageType::Response, OpCode::Query);
        m.add_query(HQuery::query(
            Name::from_ascii("many.example.").unwrap(),
            RecordType::A,
        ));
        for i in 0..40u8 {
            let name = Name::from_ascii("many.example.").unwrap();
            m.answers
                .push(Record::from_rdata(name, 60, RData::A(A::new(192, 0, 2, i))));
        }
        let r = Response::from_upstream(&m.to_vec().unwrap(), &q, 0x1234, 0, 86400).unwrap();
        let a = r.answers();
        assert_eq!(a.len(), LOG_ANSWERS + 1);
        assert_eq!(&*a[0], "192.0.2.0");
        assert_eq!(&*a[LOG_ANSWERS], "…+24 more");

        let q = parse_query(&query_bytes("t.example.", RecordType::TXT, false)).unwrap();
        let mut m = Message::new(0x1234, MessageType::Response, OpCode::Query);
        m.add_query(HQuery::query(
            Name::from_ascii("t.example.").unwrap(),
            RecordType::TXT,
        ));
        let quotes = TXT::new(vec!["\"\u{1}".repeat(100); 3]);
        let name = Name::from_ascii("t.example.").unwrap();
        m.answers
            .push(Record::from_rdata(name, 60, RData::TXT(quotes)));
        let r = Response::from_upstream(&m.to_vec().unwrap(), &q, 0x1234, 0, 86400).unwrap();
        let t = &r.answers()[0];
        assert!(t.ends_with('…'));
        let json = serde_json::to_string(&**t).unwrap();
        assert!(
            json.len() <= LOG_ANSWER_TEXT + 2,
            "{} bytes: {json}",
            json.len()
        );
        assert!(
            json.len() > LOG_ANSWER_TEXT - 10,
            "cut no shorter than needed"
        );
    }

    #[test]
    fn in_bailiwick_answer_is_kept_byte_for_byte() {
        use hickory_proto::rr::rdata::{A, CNAME, NS};
        use hickory_proto::rr::{RData, Record};
        let n = |s: &str| Name::from_ascii(s).unwrap();
        let q = parse_query(&query_bytes("www.example.", RecordType::A, false)).unwrap();
        let mut m = Message::new(0x1234, MessageType::Response, OpCode::Query);
        m.add_query(HQuery::query(n("www.example."), RecordType::A));
        let cname = RData::CNAME(CNAME(n("edge.cdn.test.")));
        m.answers
            .push(Record::from_rdata(n("www.example."), 60, cname));
        let a = RData::A(A::new(192, 0, 2, 1));
        m.answers
            .push(Record::from_rdata(n("edge.cdn.test."), 60, a));
        let ns = RData::NS(NS(n("ns.cdn.test.")));
        m.authorities
            .push(Record::from_rdata(n("cdn.test."), 60, ns));
        let glue = RData::A(A::new(192, 0, 2, 53));
        m.additionals
            .push(Record::from_rdata(n("ns.cdn.test."), 60, glue));
        let pkt = m.to_vec().unwrap();
        let r = Response::from_upstream(&pkt, &q, 0x1234, 0, 86400).unwrap();
        assert_eq!(&*r.wire, &pkt[..], "nothing stripped, nothing re-encoded");
        // One stray additional record: re-encoded without it, the rest intact.
        let stray = RData::A(A::new(6, 6, 6, 6));
        m.additionals
            .push(Record::from_rdata(n("bank.test."), 60, stray));
        let pkt = m.to_vec().unwrap();
        let r = Response::from_upstream(&pkt, &q, 0x1234, 0, 86400).unwrap();
        let back = Message::from_vec(&r.wire).unwrap();
        assert_eq!(back.answers.len(), 2);
        assert_eq!(back.authorities.len(), 1);
        assert_eq!(back.additionals.len(), 1);
        assert_eq!(back.additionals[0].name, n("ns.cdn.test."));
        assert_eq!(r.cache_ttl, Some(60));
    }
}
