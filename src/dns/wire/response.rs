//! Upstream answers: an answer is checked against the query it answers (ID, question, TC),
//! its TTLs are clamped and their offsets noted, and its OPT record is cut out
//! ([`Response::parse`]); records outside the question's bailiwick are stripped by
//! [`Response::without_strays`] (`scrub.rs`), which the pipeline's answer-check stage calls. What is left is a [`Response`]: the
//! message as bytes, ready to be cached and relayed to any client asking the same question
//! with one copy and a few patches (ID, flags, the client's spelling of the name, TTLs aged
//! by the time spent in the cache, the client's OPT).
//!
//! The answer's records as text, for the query log, are rendered here too, once per
//! response and bounded in size.

use super::answer::{response_flags, write_opt, write_truncated};
use super::pointers::reads_rewritten;
use super::query::Query;
use smallvec::SmallVec;
use std::net::IpAddr;

use super::{
    AA, AD, CLASS_IN, EDE_STALE_ANSWER, HEADER_LEN, QR, STALE_TTL, Security, TC, TYPE_A, TYPE_AAAA,
    TYPE_OPT, TYPE_SOA, parse_rr, patch, rcode, scrub, skip_name, u16_at, u32_at,
};

/// Record type CNAME.
const TYPE_CNAME: u16 = 5;

/// An upstream answer ready to be cached and relayed: the message without its OPT record,
/// with the positions of its TTL fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    wire: Box<[u8]>,
    /// (offset, TTL already clamped to the cache's bounds) of every record: inline for an
    /// answer of up to two records (most are), so that a cached answer costs no allocation
    /// for them.
    ttls: SmallVec<[(u16, u32); 2]>,
    /// The bounds the TTLs were clamped to (a re-encoding clamps again).
    ttl_bounds: (u32, u32),
    /// How long the answer may be cached (seconds), or `None` when it must not be.
    pub cache_ttl: Option<u32>,
    /// The answers as text, rendered once for the query log (a cached answer is logged
    /// many times).
    answers_text: std::sync::OnceLock<Box<[Box<str>]>>,
    /// The CNAME chain's targets, in order, as query names are written (lower case,
    /// dotted); empty (no allocation) for an answer without one. Found once, when the
    /// answer is parsed, so that checking a cached answer against the lists costs nothing
    /// when it has no chain.
    cname_targets: Box<[Box<[u8]>]>,
    /// What DNSSEC validation found; `None` when it was not validated.
    security: Option<Security>,
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
    /// Checks an upstream answer to `q` (sent with ID `id`) and prepares it for relaying:
    /// [`Response::parse`], then [`Response::without_strays`].
    pub fn from_upstream(
        pkt: &[u8],
        q: &Query,
        id: u16,
        min_ttl: u32,
        max_ttl: u32,
    ) -> Result<Self, ResponseError> {
        Self::parse(pkt, q, id, min_ttl, max_ttl)?.without_strays(q)
    }

    /// This answer without the records outside the question's bailiwick (see `scrub`):
    /// itself, byte for byte, when it has none; re-encoded otherwise.
    pub fn without_strays(self, q: &Query) -> Result<Self, ResponseError> {
        let first = HEADER_LEN + q.question_len();
        let counts = [6, 8, 10].map(|i| u16_at(&self.wire, i).unwrap_or(0));
        let mut any = false;
        scrub::strays(&self.wire, first, counts, q.qtype, |_| any = true)
            .ok_or(ResponseError::Malformed)?;
        if !any {
            return Ok(self);
        }
        let id = u16_at(&self.wire, 0).ok_or(ResponseError::Malformed)?;
        let (min_ttl, max_ttl) = self.ttl_bounds;
        let mut r = Self::reencode_scrubbed(&self.wire, q, id, min_ttl, max_ttl)?;
        if let Some(s) = self.security {
            r.set_security(s);
        }
        Ok(r)
    }

    /// Checks an upstream answer to `q` (sent with ID `id`): the ID, the question, TC, every
    /// record well formed. TTLs are clamped to `[min_ttl, max_ttl]`; the OPT is cut out.
    /// Records are kept as they came (see [`Response::without_strays`]).
    pub fn parse(
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
        // One TTL per record but the OPT (at most one, in the additional section): reserved
        // so, an answer of two records and an OPT keeps its TTLs inline.
        let records = usize::from(an) + usize::from(ns) + usize::from(ar);
        let mut ttls = SmallVec::with_capacity(records.saturating_sub(usize::from(ar > 0)));
        let mut min_answer: Option<u32> = None;
        let mut soa_neg: Option<u32> = None;
        let mut opt: Option<(usize, usize)> = None;
        let mut has_cname = false;
        let total = u32::from(an) + u32::from(ns) + u32::from(ar);
        // Names must not read what the relay rewrites (`pointers`).
        let question = (HEADER_LEN, qend);
        let clean = |at: usize, end: usize, ttls: &[(u16, u32)]| {
            reads_rewritten(pkt, at, end, question, ttls) == Some(false)
        };
        for i in 0..total {
            let rr = parse_rr(pkt, pos).ok_or(Malformed)?;
            // The owner name ends where its type begins, 4 bytes before the TTL.
            if !clean(rr.start, rr.ttl_off.saturating_sub(4), &ttls) {
                return Err(Malformed);
            }
            let ttl = u32_at(pkt, rr.ttl_off).ok_or(Malformed)?;
            if rr.rtype == TYPE_OPT {
                if i < u32::from(an) + u32::from(ns) || opt.is_some() {
                    return Err(Malformed);
                }
                opt = Some((rr.start, rr.end));
            } else {
                let clamped = ttl.min(i32::MAX as u32).clamp(min_ttl, max_ttl);
                ttls.push((u16::try_from(rr.ttl_off).map_err(|_| Malformed)?, clamped));
                // Names in the data that decide what is kept: a CNAME's target (the chain),
                // and the targets whose addresses may ride along (`scrub::target`).
                if i < u32::from(an) + u32::from(ns) {
                    let target = match rr.rtype {
                        // Past the TTL and RDLENGTH.
                        TYPE_CNAME if i < u32::from(an) => rr.ttl_off.checked_add(6),
                        _ => scrub::target(pkt, &rr),
                    };
                    if target.is_some_and(|t| !clean(t, rr.end, &ttls)) {
                        return Err(Malformed);
                    }
                }
                if i < u32::from(an) {
                    has_cname |= rr.rtype == TYPE_CNAME;
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
        let cname_targets = if has_cname {
            scrub::cname_targets(pkt, qend + 4, an, q.qtype)
        } else {
            Box::default()
        };
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
            ttls,
            ttl_bounds: (min_ttl, max_ttl),
            cache_ttl,
            answers_text: std::sync::OnceLock::new(),
            cname_targets,
            security: None,
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
        let mut r = Self::parse(&bytes, q, id, min_ttl, max_ttl)?;
        r.cache_ttl = None;
        Ok(r)
    }

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
        Self::parse(&bytes, q, id, min_ttl, max_ttl)
    }

    /// Records what DNSSEC validation found: AD is set for a secure answer and cleared
    /// otherwise (clients that asked for DNSSEC data see it; see [`Response::write`]).
    pub fn set_security(&mut self, s: Security) {
        let flags = u16_at(&self.wire, 2).unwrap_or(0);
        let flags = if s == Security::Secure {
            flags | AD
        } else {
            flags & !AD
        };
        patch(&mut self.wire, 2, &flags.to_be_bytes());
        self.security = Some(s);
    }

    /// What DNSSEC validation found; `None` when it was not validated.
    pub fn security(&self) -> Option<Security> {
        self.security
    }

    /// The message as kept (OPT cut out, TTLs as the upstream sent them).
    pub fn wire(&self) -> &[u8] {
        &self.wire
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

    /// The targets of the answer's CNAME chain, from the question name on, each in the
    /// form [`Query::name`] has (lower case, dotted, no final dot); empty without a chain.
    pub fn cname_targets(&self) -> &[Box<[u8]>] {
        &self.cname_targets
    }

    /// Calls `f` with each address of an A or AAAA record (class IN) in the answer
    /// section (what clients connect to; glue in the additional section is for resolvers),
    /// until it returns true; returns whether it did. A malformed record ends the walk.
    pub fn any_address(&self, mut f: impl FnMut(IpAddr) -> bool) -> bool {
        let w = &self.wire;
        let Some(mut pos) = skip_name(w, HEADER_LEN).map(|p| p + 4) else {
            return false;
        };
        for _ in 0..u16_at(w, 6).unwrap_or(0) {
            let Some(rr) = parse_rr(w, pos) else {
                return false;
            };
            pos = rr.end;
            if u16_at(w, rr.ttl_off - 2) != Some(CLASS_IN) {
                continue;
            }
            let data = w.get(rr.ttl_off + 6..rr.end).unwrap_or_default();
            let ip = match (rr.rtype, data.len()) {
                (TYPE_A, 4) => <[u8; 4]>::try_from(data).ok().map(IpAddr::from),
                (TYPE_AAAA, 16) => <[u8; 16]>::try_from(data).ok().map(IpAddr::from),
                _ => None,
            };
            if ip.is_some_and(&mut f) {
                return true;
            }
        }
        false
    }

    /// Number of answer records.
    pub fn answer_count(&self) -> u16 {
        u16_at(&self.wire, 6).unwrap_or(0)
    }

    /// Writes this answer for `q`, with every TTL reduced by `age` seconds; truncated (TC,
    /// question only) when larger than `limit`. Returns true when it truncated.
    pub fn write(&self, out: &mut Vec<u8>, q: &Query, age: u32, limit: usize) -> bool {
        self.write_with(out, q, |ttl| ttl.saturating_sub(age), None, limit)
    }

    /// Writes this answer for `q` as a stale answer (RFC 8767): every TTL [`STALE_TTL`],
    /// and Extended DNS Error 3 (Stale Answer) with `text` when the query had EDNS;
    /// truncated as [`Response::write`] does.
    pub fn write_stale(&self, out: &mut Vec<u8>, q: &Query, text: &str, limit: usize) -> bool {
        let ede = Some((EDE_STALE_ANSWER, text));
        self.write_with(out, q, |_| STALE_TTL, ede, limit)
    }

    #[inline]
    fn write_with(
        &self,
        out: &mut Vec<u8>,
        q: &Query,
        ttl_of: impl Fn(u32) -> u32,
        ede: Option<(u16, &str)>,
        limit: usize,
    ) -> bool {
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
            patch(out, usize::from(off), &ttl_of(ttl).to_be_bytes());
        }
        if let Some(e) = q.edns {
            let ar = u16_at(out, 10).unwrap_or(0).saturating_add(1);
            patch(out, 10, &ar.to_be_bytes());
            write_opt(out, e.dnssec_ok, 0, ede);
        }
        if out.len() > limit {
            write_truncated(out, q, flags | TC, 0);
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
        let chain: usize = self
            .cname_targets
            .iter()
            .map(|t| t.len() + std::mem::size_of::<Box<[u8]>>())
            .sum();
        std::mem::size_of::<Self>()
            + self.wire.len()
            + std::mem::size_of_val::<[(u16, u32)]>(self.ttls.as_slice())
            + chain
            + text
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::super::parse_query;
    use super::super::testing::query_bytes;
    use super::*;
    use hickory_proto::op::{Message, MessageType, OpCode, Query as HQuery};
    use hickory_proto::rr::{Name, RecordType};

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
    fn the_ttls_of_an_answer_of_up_to_two_records_take_no_allocation_of_their_own() {
        use hickory_proto::op::Edns as HEdns;
        use hickory_proto::rr::rdata::A;
        use hickory_proto::rr::{RData, Record};
        let q = parse_query(&query_bytes("two.example.", RecordType::A, true)).unwrap();
        for (records, inline) in [(1u8, true), (2, true), (3, false)] {
            let mut m = Message::new(0x1234, MessageType::Response, OpCode::Query);
            m.add_query(HQuery::query(
                Name::from_ascii("two.example.").unwrap(),
                RecordType::A,
            ));
            for i in 0..records {
                let name = Name::from_ascii("two.example.").unwrap();
                m.answers
                    .push(Record::from_rdata(name, 60, RData::A(A::new(192, 0, 2, i))));
            }
            m.set_edns(HEdns::new());
            let r = Response::from_upstream(&m.to_vec().unwrap(), &q, 0x1234, 0, 86400).unwrap();
            assert_eq!(r.ttls.len(), usize::from(records), "the OPT has no TTL");
            assert_eq!(!r.ttls.spilled(), inline, "{records} records and an OPT");
        }
        // Inside a 128-byte `Arc` allocation: two counts (16 bytes) and the response.
        assert!(
            std::mem::size_of::<Response>() <= 104,
            "{} bytes",
            std::mem::size_of::<Response>()
        );
    }

    #[test]
    fn chain_targets_and_addresses_are_found_once() {
        use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS};
        use hickory_proto::rr::{RData, Record};
        let n = |s: &str| Name::from_ascii(s).unwrap();
        let q = parse_query(&query_bytes("WWW.example.", RecordType::A, false)).unwrap();
        let mut m = Message::new(0x1234, MessageType::Response, OpCode::Query);
        m.add_query(HQuery::query(n("WWW.example."), RecordType::A));
        let r = |owner: &str, d: RData| Record::from_rdata(n(owner), 60, d);
        m.answers
            .push(r("www.example.", RData::CNAME(CNAME(n("Edge.CDN.test.")))));
        m.answers
            .push(r("edge.cdn.test.", RData::A(A::new(192, 0, 2, 1))));
        m.authorities
            .push(r("cdn.test.", RData::NS(NS(n("ns.cdn.test.")))));
        m.additionals.push(r(
            "ns.cdn.test.",
            RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 53)),
        ));
        let resp = Response::from_upstream(&m.to_vec().unwrap(), &q, 0x1234, 0, 86400).unwrap();
        let t: Vec<&[u8]> = resp.cname_targets().iter().map(|t| &**t).collect();
        assert_eq!(t, [b"edge.cdn.test"]);
        let mut seen = Vec::new();
        assert!(!resp.any_address(|ip| {
            seen.push(ip.to_string());
            false
        }));
        assert_eq!(seen, ["192.0.2.1"], "the answer section only, not glue");
        assert!(
            resp.any_address(|ip| ip.is_ipv4()),
            "stops at the first yes"
        );
        // No chain: nothing allocated, nothing to check on a cache hit.
        m.answers.remove(0);
        m.answers[0].name = n("www.example.");
        let resp = Response::from_upstream(&m.to_vec().unwrap(), &q, 0x1234, 0, 86400).unwrap();
        assert!(resp.cname_targets().is_empty());
        // A CNAME query: the answer is the CNAME itself, not a chain to check.
        let q = parse_query(&query_bytes("www.example.", RecordType::CNAME, false)).unwrap();
        let mut m = Message::new(0x1234, MessageType::Response, OpCode::Query);
        m.add_query(HQuery::query(n("www.example."), RecordType::CNAME));
        m.answers
            .push(r("www.example.", RData::CNAME(CNAME(n("edge.cdn.test.")))));
        let resp = Response::from_upstream(&m.to_vec().unwrap(), &q, 0x1234, 0, 86400).unwrap();
        assert!(resp.cname_targets().is_empty());
    }

    /// An owner name that points into an earlier record's TTL (as the `upstream_response`
    /// fuzz target found, seed 1796665726020726146): clamping that TTL would rewrite the name
    /// after the chain was checked (a record for the root relayed). Malformed; the same
    /// answer pointing at the question instead is taken.
    #[test]
    fn a_name_pointing_into_a_ttl_is_malformed() {
        let pkt = crate::test_util::hex(
            "0103808f000100020000000005616c696173076578616de0ec99094304d06c6503636f6d00\
             00010001c00c00050001c00c0078001406746172676574076578616d706c65036e657400\
             c02f000100010000001e0004c6336407",
        );
        let mut query = vec![1, 3, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        query.extend_from_slice(&pkt[12..41]);
        let q = parse_query(&query).unwrap();
        // The A record's owner: a pointer to offset 47, the CNAME's TTL (c0 0c 00 78).
        assert_eq!(&pkt[73..75], &[0xc0, 0x2f]);
        assert!(matches!(
            Response::from_upstream(&pkt, &q, 0x0103, 0, 86400),
            Err(ResponseError::Malformed)
        ));
        let mut fine = pkt.clone();
        fine[74] = 12;
        assert!(Response::from_upstream(&fine, &q, 0x0103, 0, 86400).is_ok());
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
