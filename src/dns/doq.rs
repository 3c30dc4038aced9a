//! The framing of DNS over QUIC (RFC 9250 §4.2): one message per stream, after a two-byte
//! length, the stream finished after it; and the checks a DoQ query must pass (§4.2.1
//! message ID 0, §5.5.2 no `edns-tcp-keepalive`), whose failure is a protocol error that
//! closes the connection with `DOQ_PROTOCOL_ERROR` (§4.3.3). Pure functions over the bytes
//! read so far, shared by the listener (`server::quic`) and the upstream client
//! (`pipeline::upstream::encrypted::doq`), and fuzzed (`tests/fuzz/doq.rs`).

/// Most bytes of one DoQ stream: the length and a message of at most 65,535 bytes.
pub const MAX_STREAM: usize = 2 + 65_535;

/// DoQ error codes (RFC 9250 §8.4), sent in QUIC's CONNECTION_CLOSE, RESET_STREAM and
/// STOP_SENDING frames.
pub mod code {
    /// No error: a connection or stream closed without a fault (idle).
    pub const NO_ERROR: u32 = 0x0;
    /// The implementation failed (a caught panic).
    pub const INTERNAL_ERROR: u32 = 0x1;
    /// The peer broke the protocol: bad framing, a non-zero message ID, edns-tcp-keepalive.
    pub const PROTOCOL_ERROR: u32 = 0x2;
    /// A transaction given up: a query not answered (dropped by access control, or not
    /// received in time), or abandoned by the client.
    pub const REQUEST_CANCELLED: u32 = 0x3;
}

/// EDNS option code of edns-tcp-keepalive (RFC 7828).
const OPT_TCP_KEEPALIVE: u16 = 11;
/// RR type of OPT.
const TYPE_OPT: u16 = 41;

/// How the bytes of a stream break the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The stream ended before the length, or before the message the length announced.
    #[error("stream finished before the whole message")]
    Truncated,
    /// A zero length: no message.
    #[error("empty message")]
    Empty,
    /// Bytes after the message: a second message on the stream.
    #[error("more than one message on a stream")]
    Trailing,
    /// A query whose message ID is not 0 (RFC 9250 §4.2.1).
    #[error("message ID not 0")]
    NonZeroId,
    /// A query carrying edns-tcp-keepalive (RFC 9250 §5.5.2).
    #[error("edns-tcp-keepalive on a QUIC connection")]
    Keepalive,
}

/// The message of a stream from the bytes read so far (`fin`: the peer finished the
/// stream): `Ok(None)` while more is needed, the message once its announced length has
/// come, an error for what the protocol forbids.
pub fn message(buf: &[u8], fin: bool) -> Result<Option<&[u8]>, FrameError> {
    let (Some(&hi), Some(&lo)) = (buf.first(), buf.get(1)) else {
        return if fin {
            Err(FrameError::Truncated)
        } else {
            Ok(None)
        };
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len == 0 {
        return Err(FrameError::Empty);
    }
    let body = buf.get(2..).unwrap_or_default();
    match body.len().cmp(&len) {
        std::cmp::Ordering::Less if fin => Err(FrameError::Truncated),
        std::cmp::Ordering::Less => Ok(None),
        std::cmp::Ordering::Equal => Ok(Some(body)),
        std::cmp::Ordering::Greater => Err(FrameError::Trailing),
    }
}

/// `msg` with its two-byte length in front (a message over 65,535 bytes is cut, which no
/// answer of ours is).
pub fn framed(msg: &[u8]) -> Vec<u8> {
    let n = u16::try_from(msg.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(2 + usize::from(n));
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(msg.get(..usize::from(n)).unwrap_or(msg));
    out
}

/// The checks of a query received over DoQ: message ID 0 and no edns-tcp-keepalive. A
/// message too short to have an ID is left to the handler (which drops or answers
/// FORMERR as on every transport).
pub fn check_query(msg: &[u8]) -> Result<(), FrameError> {
    if let (Some(&a), Some(&b)) = (msg.first(), msg.get(1))
        && (a, b) != (0, 0)
    {
        return Err(FrameError::NonZeroId);
    }
    if has_option(msg, OPT_TCP_KEEPALIVE) {
        return Err(FrameError::Keepalive);
    }
    Ok(())
}

/// True when the message's OPT record carries the EDNS option `code`; false also for a
/// message that does not parse that far.
fn has_option(msg: &[u8], code: u16) -> bool {
    let u16_at =
        |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?])) };
    let (Some(qd), Some(an), Some(ns), Some(ar)) = (u16_at(4), u16_at(6), u16_at(8), u16_at(10))
    else {
        return false;
    };
    let mut pos = 12;
    for _ in 0..qd {
        let Some(p) = skip_name(msg, pos) else {
            return false;
        };
        pos = p + 4;
    }
    let before_additional = u32::from(an) + u32::from(ns);
    for i in 0..before_additional + u32::from(ar) {
        let Some(p) = skip_name(msg, pos) else {
            return false;
        };
        let (Some(rtype), Some(rdlen)) = (u16_at(p), u16_at(p + 8)) else {
            return false;
        };
        let start = p + 10;
        let end = start + usize::from(rdlen);
        let Some(rdata) = msg.get(start..end) else {
            return false;
        };
        if i >= before_additional && rtype == TYPE_OPT && opt_has(rdata, code) {
            return true;
        }
        pos = end;
    }
    false
}

/// True when the OPT RDATA `rdata` is a sequence of whole options and one is `code` (a
/// malformed OPT carries no option: the handler answers it FORMERR as on any transport).
fn opt_has(rdata: &[u8], code: u16) -> bool {
    let mut rest = rdata;
    let mut found = false;
    while !rest.is_empty() {
        let (Some(&c0), Some(&c1), Some(&l0), Some(&l1)) =
            (rest.first(), rest.get(1), rest.get(2), rest.get(3))
        else {
            return false;
        };
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let Some(r) = rest.get(4 + len..) else {
            return false;
        };
        found |= u16::from_be_bytes([c0, c1]) == code;
        rest = r;
    }
    found
}

/// The position after the name at `pos` (labels, a pointer, or a mix), `None` when it
/// runs past the end or uses a reserved label type.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let b = *msg.get(pos)?;
        match b & 0xC0 {
            0x00 if b == 0 => return Some(pos + 1),
            0x00 => pos += 1 + usize::from(b),
            0xC0 => {
                msg.get(pos + 1)?;
                return Some(pos + 2);
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// A query for `a.test` A with ID `id` and, when `opts` is given, an OPT record with
    /// those option bytes.
    fn query(id: u16, opts: Option<&[u8]>) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(opts.is_some())]);
        q.extend_from_slice(b"\x01a\x04test\x00\x00\x01\x00\x01");
        if let Some(o) = opts {
            q.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0]);
            q.extend_from_slice(&u16::try_from(o.len()).unwrap().to_be_bytes());
            q.extend_from_slice(o);
        }
        q
    }

    #[test]
    fn a_message_is_taken_once_its_length_has_come() {
        let q = query(0, None);
        let f = framed(&q);
        assert_eq!(f.len(), 2 + q.len());
        for cut in 0..f.len() {
            assert_eq!(message(&f[..cut], false), Ok(None), "{cut}");
            assert_eq!(
                message(&f[..cut], true),
                Err(FrameError::Truncated),
                "{cut}"
            );
        }
        assert_eq!(message(&f, false), Ok(Some(&q[..])));
        assert_eq!(message(&f, true), Ok(Some(&q[..])));
        let mut two = f.clone();
        two.extend_from_slice(&f);
        assert_eq!(message(&two, false), Err(FrameError::Trailing));
        assert_eq!(message(&f[..f.len() - 1], true), Err(FrameError::Truncated));
        assert_eq!(message(&[0, 0], false), Err(FrameError::Empty));
        // The largest message fits; the length cannot say more.
        let big = vec![7u8; 65_535];
        let f = framed(&big);
        assert_eq!(f.len(), MAX_STREAM);
        assert_eq!(message(&f, true), Ok(Some(&big[..])));
    }

    #[test]
    fn queries_need_id_zero_and_no_keepalive() {
        assert_eq!(check_query(&query(0, None)), Ok(()));
        assert_eq!(
            check_query(&query(0x1234, None)),
            Err(FrameError::NonZeroId)
        );
        assert_eq!(check_query(&query(1, None)), Err(FrameError::NonZeroId));
        // Padding (12) and a cookie (10) are fine; keepalive (11) is not, wherever it is.
        let pad = [0, 12, 0, 3, 0, 0, 0];
        assert_eq!(check_query(&query(0, Some(&pad))), Ok(()));
        let cookie = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(check_query(&query(0, Some(&cookie))), Ok(()));
        let keep = [0, 11, 0, 0];
        assert_eq!(
            check_query(&query(0, Some(&keep))),
            Err(FrameError::Keepalive)
        );
        let both = [0, 12, 0, 2, 0, 0, 0, 11, 0, 2, 0, 100];
        assert_eq!(
            check_query(&query(0, Some(&both))),
            Err(FrameError::Keepalive)
        );
        // Short or broken messages are the handler's to answer.
        assert_eq!(check_query(&[]), Ok(()));
        assert_eq!(check_query(&[0]), Ok(()));
        assert_eq!(check_query(&[0, 0, 1]), Ok(()));
        let mut cut = query(0, Some(&keep));
        cut.truncate(cut.len() - 3);
        assert_eq!(check_query(&cut), Ok(()));
        // A name with a compression pointer, and a reserved label type.
        let mut p = query(0, Some(&keep));
        p.splice(12..20, [0xC0, 0x0C]);
        assert_eq!(check_query(&p), Err(FrameError::Keepalive));
        let mut r = query(0, Some(&keep));
        r[12] = 0x41;
        assert_eq!(check_query(&r), Ok(()));
    }
}
