//! Whether a name of an upstream's answer reads bytes that the relay rewrites: the header
//! (ID, flags, counts) or a record's TTL (clamped when the answer comes, aged when it is
//! served from the cache).
//!
//! Why. A compression pointer may point at any earlier byte, not only at an earlier name
//! (RFC 1035 §4.1.4 means the latter; nothing in the wire format enforces it). A hostile or
//! broken upstream that points a name into a TTL makes the name depend on the TTL: the
//! relay's checks (the CNAME chain, the answer's owner) would judge one name and the client
//! would read another once the TTL is rewritten, an answer for a name nobody asked about
//! relayed. Such an answer is malformed ([`super::response::Response::parse`]). The question
//! is never rewritten, and a name that reaches it reads nothing more.

/// Most pointers followed in one name: each points before the last, so a name ends
/// anyway; this bounds the work on a hostile one.
const MAX_HOPS: usize = 128;

/// True when the name at `pos` of `pkt` reads the header, or a byte of a TTL at one of
/// `ttls` (4-byte fields, with their values; ascending offsets), before it ends or reaches
/// the question (`question` = its start and end); `None` when it is not a name.
pub(super) fn reads_rewritten(
    pkt: &[u8],
    mut pos: usize,
    question: (usize, usize),
    ttls: &[(u16, u32)],
) -> Option<bool> {
    for _ in 0..MAX_HOPS {
        if pos < question.0 {
            return Some(true);
        }
        if pos < question.1 {
            return Some(false);
        }
        let len = *pkt.get(pos)?;
        let read = match len & 0xC0 {
            0x00 => usize::from(len) + 1,
            0xC0 => 2,
            _ => return None,
        };
        if overlaps_ttl(pos, pos + read, ttls) {
            return Some(true);
        }
        match len & 0xC0 {
            0x00 if len == 0 => return Some(false),
            0x00 => pos += read,
            _ => {
                let target = usize::from(u16::from_be_bytes([len, *pkt.get(pos + 1)?]) & 0x3FFF);
                if target >= pos {
                    return None;
                }
                pos = target;
            }
        }
    }
    None
}

/// True when bytes `start..end` share one with a 4-byte field at an offset in `ttls`
/// (ascending).
fn overlaps_ttl(start: usize, end: usize, ttls: &[(u16, u32)]) -> bool {
    // The first field that ends after `start`: it overlaps when it begins before `end`.
    let i = ttls.partition_point(|&(t, _)| usize::from(t) + 4 <= start);
    ttls.get(i).is_some_and(|&(t, _)| usize::from(t) < end)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A message: header, question `a.test. A IN` (12..24), then `tail` from 24.
    fn msg(tail: &[u8]) -> Vec<u8> {
        let mut m = vec![0; 12];
        m.extend_from_slice(b"\x01a\x04test\x00\x00\x01\x00\x01");
        m.extend_from_slice(tail);
        m
    }

    #[test]
    fn a_name_that_reaches_the_question_or_ends_clear_of_ttls_reads_nothing_rewritten() {
        // 24: a pointer to the question; 26: "x" then a pointer to the question.
        let m = msg(&[0xc0, 12, 1, b'x', 0xc0, 12]);
        assert_eq!(reads_rewritten(&m, 24, (12, 24), &[]), Some(false));
        assert_eq!(reads_rewritten(&m, 26, (12, 24), &[(40, 0)]), Some(false));
        let m = msg(&[1, b'y', 0]);
        assert_eq!(reads_rewritten(&m, 24, (12, 24), &[(27, 0)]), Some(false));
    }

    #[test]
    fn a_pointer_into_a_ttl_or_the_header_reads_rewritten_bytes() {
        // As the fuzz target found: a record whose TTL (at 30) holds a pointer to the
        // question, and a later owner name that points into that TTL.
        let mut tail = vec![0xc0, 12, 0, 5, 0, 1, 0xc0, 12, 0, 0x78, 0, 0];
        tail.extend_from_slice(&[0xc0, 30]);
        let m = msg(&tail);
        assert_eq!(reads_rewritten(&m, 36, (12, 24), &[(30, 0)]), Some(true));
        // A pointer into the header; a label that runs over a TTL.
        let m = msg(&[0xc0, 2]);
        assert_eq!(reads_rewritten(&m, 24, (12, 24), &[]), Some(true));
        let m = msg(&[3, b'a', b'b', b'c', 0]);
        assert_eq!(reads_rewritten(&m, 24, (12, 24), &[(27, 0)]), Some(true));
        assert_eq!(reads_rewritten(&m, 24, (12, 24), &[(29, 0)]), Some(false));
    }

    #[test]
    fn a_forward_pointer_or_a_bad_label_is_not_a_name() {
        let m = msg(&[0xc0, 40]);
        assert_eq!(reads_rewritten(&m, 24, (12, 24), &[]), None);
        let m = msg(&[0x80]);
        assert_eq!(reads_rewritten(&m, 24, (12, 24), &[]), None);
        let m = msg(&[5, b'a']);
        assert_eq!(reads_rewritten(&m, 24, (12, 24), &[]), None);
    }
}
