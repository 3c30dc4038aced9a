//! What goes to an upstream server besides the question: the query we send for a client
//! (our ID, the client's RD/CD/AD bits, an OPT with our payload size), with a DNS cookie
//! (RFC 7873) when the upstream does cookies; and reading the cookie and the extended rcode
//! back from the OPT record of its answer, before the answer itself is checked
//! (`response.rs`).

use super::answer::{write_header, write_opt};
use super::query::Query;
use super::{AD, CD, HEADER_LEN, RD, TYPE_OPT, parse_rr, patch, put_u16, skip_name, u16_at};

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
/// (the answer check, [`Response::parse`](super::Response::parse), then says
/// what is wrong with it).
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

/// Marks a query to `q` written by [`write_upstream_query`] or
/// [`write_upstream_query_cookie`] as one whose answer is validated here, as the validator
/// asks its own: RD whatever the client set (the answer, not a referral, is validated), CD
/// (the server hands over what it would judge bogus, RFC 4035 §3.2.2) and no AD in its
/// header, DO in its OPT (signatures and denials come along).
pub fn ask_for_validation(out: &mut [u8], q: &Query) {
    let ([rd, _], [_, cd], [_, ad]) = (RD.to_be_bytes(), CD.to_be_bytes(), AD.to_be_bytes());
    if let Some(flags) = out.get_mut(2) {
        *flags |= rd;
    }
    if let Some(flags) = out.get_mut(3) {
        *flags = (*flags | cd) & !ad;
    }
    // The OPT follows the question: its root name, type, payload, extended rcode, version,
    // then the flags' upper byte, where DO is the top bit.
    if let Some(flags) = out.get_mut(HEADER_LEN + q.question_len() + 7) {
        *flags |= 0x80;
    }
}

/// The first message of a stream of two-byte-length-prefixed DNS messages (TCP and TLS,
/// RFC 1035 §4.2.2, RFC 7766), and the bytes after it; `None` until the whole of it has
/// come. An empty message (length 0) is one too: its reader finds it no answer.
pub fn next_frame(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&[hi, lo], rest) = buf.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    (rest.len() >= len).then(|| rest.split_at(len))
}
