//! Parsing a client's query: the header facts, the question (name kept both as the client
//! wrote it and in lower-case text form) and the EDNS facts of its OPT record, all in a
//! stack-allocated [`Query`]. A packet that is not served as a normal query is a [`Reject`]:
//! dropped, or answered FORMERR, NOTIMP or BADVERS.
//!
//! What the rest of the server derives from a query lives here too: the cache key, the
//! largest UDP answer the client takes, and the offsets of the name's suffixes (for
//! compression pointers in the answers written about it).

use super::{CD, HEADER_LEN, OPCODE_MASK, QR, RD, TYPE_OPT, parse_rr, rcode, u16_at};

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
    /// A query with no question, to parse packets into with [`parse_query_into`].
    pub fn blank() -> Self {
        Self {
            id: 0,
            flags: 0,
            qtype: 0,
            qclass: 0,
            edns: None,
            wire: [0; 255],
            wire_len: 0,
            text: [0; 510],
            text_len: 0,
            labels: [0; 128],
            nlabels: 0,
        }
    }

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

    /// Writes the question section: the name as the client wrote it, type and class.
    pub(super) fn write_question(&self, out: &mut Vec<u8>) {
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
            *q.text.get_mut(text_len)? = b'.';
            text_len += 1;
        }
        if label.iter().any(|&c| c == b'.' || c == b'\\') {
            for &c in label {
                if c == b'.' || c == b'\\' {
                    *q.text.get_mut(text_len)? = b'\\';
                    text_len += 1;
                }
                *q.text.get_mut(text_len)? = c.to_ascii_lowercase();
                text_len += 1;
            }
        } else {
            // Almost every label: copied and lower-cased as a whole.
            let to = q.text.get_mut(text_len..text_len + len)?;
            to.copy_from_slice(label);
            to.make_ascii_lowercase();
            text_len += len;
        }
        pos += 1 + len;
    }
    let wire = pkt.get(start..pos)?;
    q.wire.get_mut(..wire.len())?.copy_from_slice(wire);
    q.wire_len = u8::try_from(wire.len()).ok()?;
    q.text_len = u16::try_from(text_len).ok()?;
    Some(pos)
}

/// Parses a query packet. See [`Reject`] for what is not served.
pub fn parse_query(pkt: &[u8]) -> Result<Query, Reject> {
    let mut q = Query::blank();
    parse_query_into(pkt, &mut q).map(|()| q)
}

/// Parses a query packet into `q`, as [`parse_query`] does, reusing it: the UDP loop keeps
/// one `Query` per slot of its batch, so that no query is zeroed and moved (about 900
/// bytes, three times) per packet. After an `Err`, `q` holds nothing of use.
pub fn parse_query_into(pkt: &[u8], q: &mut Query) -> Result<(), Reject> {
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
    // A refusal that is answered, with the question when it was read (a copy: `q` stays
    // the caller's, to parse the next packet into).
    let reply = |rcode, question: Option<&Query>| Reject::Reply {
        id,
        flags,
        rcode,
        query: question.map(|q| Box::new(q.clone())),
    };
    // Every field the accessors read is set here or by `parse_qname`; the bytes past the
    // lengths are never read, so they are left as the last packet wrote them.
    q.id = id;
    q.flags = flags;
    q.qtype = 0;
    q.qclass = 0;
    q.edns = None;
    q.wire_len = 0;
    q.text_len = 0;
    q.nlabels = 0;
    let question = if qd == 1 {
        parse_qname(pkt, HEADER_LEN, q).and_then(|p| {
            q.qtype = u16_at(pkt, p)?;
            q.qclass = u16_at(pkt, p + 2)?;
            Some(p + 4)
        })
    } else {
        None
    };
    if flags & OPCODE_MASK != 0 {
        return Err(reply(rcode::NOTIMP, question.map(|_| &*q)));
    }
    let Some(mut pos) = question else {
        return Err(reply(rcode::FORMERR, None));
    };
    for _ in 0..(u32::from(an) + u32::from(ns)) {
        match parse_rr(pkt, pos) {
            Some(rr) => pos = rr.end,
            None => return Err(reply(rcode::FORMERR, Some(q))),
        }
    }
    for _ in 0..ar {
        let Some(rr) = parse_rr(pkt, pos) else {
            return Err(reply(rcode::FORMERR, Some(q)));
        };
        if rr.rtype == TYPE_OPT {
            // RFC 6891 §6.1.1: one OPT, owned by the root.
            if q.edns.is_some() || pkt.get(rr.start) != Some(&0) {
                return Err(reply(rcode::FORMERR, Some(q)));
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
        return Err(reply(rcode::BADVERS, Some(q)));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::super::testing::query_bytes;
    use super::*;
    use hickory_proto::rr::RecordType;

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
    /// Every fact a query exposes, to compare two parses.
    fn facts(q: &Query) -> impl PartialEq + std::fmt::Debug {
        let mut key = [0u8; 262];
        (
            (q.id, q.flags, q.qtype, q.qclass, q.edns),
            (q.wire_name().to_vec(), q.name().to_vec(), q.label_count()),
            (0..=q.label_count() + 1)
                .map(|n| q.suffix_offset(n))
                .collect::<Vec<_>>(),
            (
                q.cache_key(&mut key).to_vec(),
                q.udp_limit(),
                q.question_len(),
            ),
        )
    }

    #[test]
    fn a_reused_query_holds_nothing_of_the_packets_before() {
        // The UDP loop parses every packet into the query its slot held before: a long
        // name with EDNS, then packets rejected halfway, then a short name without EDNS
        // must read exactly as a fresh parse of each.
        let long = query_bytes(
            "A.Long.Name.With.Many.Labels.Example.",
            RecordType::AAAA,
            true,
        );
        let short = query_bytes("x.", RecordType::A, false);
        let mut two = query_bytes("b.example.", RecordType::A, false);
        two[5] = 2;
        let mut q = Query::blank();
        for pkt in [
            &long,
            &two,
            &dotted_name(&[63, 63, 63, 62, 63]),
            &short,
            &long,
        ] {
            let fresh = parse_query(pkt);
            let reused = parse_query_into(pkt, &mut q);
            match fresh {
                Ok(f) => {
                    assert!(reused.is_ok());
                    assert_eq!(facts(&q), facts(&f));
                }
                Err(_) => assert!(reused.is_err()),
            }
        }
        assert_eq!(q.name(), b"a.long.name.with.many.labels.example");
    }
}
