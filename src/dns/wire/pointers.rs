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
/// Most bytes of a name's labels (RFC 1035 §3.1).
const MAX_NAME: usize = 255;

/// True when the name at `pos` of `pkt` reads the header, or a byte of a TTL at one of
/// `ttls` (4-byte fields, with their values; ascending offsets), before it ends or reaches
/// the question name (at `question.0`, uncompressed, ending at `question.1`); `None` when it
/// is not a name as a compressor writes one. Every read ends by `limit` (the end of the name's
/// place in its record) and, after a pointer, before that pointer: a pointer leads to a
/// whole earlier name, so a name never reads the TTL of its own record or of a later one,
/// which `ttls` does not hold yet. Into the question, only a label's start is a name.
pub(super) fn reads_rewritten(
    pkt: &[u8],
    mut pos: usize,
    mut limit: usize,
    question: (usize, usize),
    ttls: &[(u16, u32)],
) -> Option<bool> {
    let mut hops = 0;
    let mut total = 0;
    loop {
        if pos < question.0 {
            return Some(true);
        }
        if pos < question.1 + 4 {
            // The question name is rewritten only in its letters' case.
            return label_start(pkt, pos, question).then_some(false);
        }
        let len = *pkt.get(pos)?;
        match len & 0xC0 {
            0x00 => {
                let end = pos + 1 + usize::from(len);
                total += usize::from(len) + 1;
                if end > limit || total > MAX_NAME {
                    return None;
                }
                if overlaps_ttl(pos, end, ttls) {
                    return Some(true);
                }
                if len == 0 {
                    return Some(false);
                }
                pos = end;
            }
            0xC0 => {
                if pos + 2 > limit {
                    return None;
                }
                if overlaps_ttl(pos, pos + 2, ttls) {
                    return Some(true);
                }
                let target = usize::from(u16::from_be_bytes([len, *pkt.get(pos + 1)?]) & 0x3FFF);
                hops += 1;
                if target >= pos || hops > MAX_HOPS {
                    return None;
                }
                limit = pos;
                pos = target;
            }
            _ => return None,
        }
    }
}

/// True when `pos` is where a label of the question name starts (its root included).
fn label_start(pkt: &[u8], pos: usize, question: (usize, usize)) -> bool {
    let mut p = question.0;
    while p < question.1 {
        if p == pos {
            return true;
        }
        let Some(&len) = pkt.get(p) else {
            return false;
        };
        if len == 0 {
            return false;
        }
        p += usize::from(len) + 1;
    }
    false
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

    /// The question name `a.test.` (12..20; type and class 20..24).
    const Q: (usize, usize) = (12, 20);

    /// A message: header, question `a.test. A IN`, then `tail` from 24.
    fn msg(tail: &[u8]) -> Vec<u8> {
        let mut m = vec![0; 12];
        m.extend_from_slice(b"\x01a\x04test\x00\x00\x01\x00\x01");
        m.extend_from_slice(tail);
        m
    }

    /// `reads_rewritten` of the name at `pos`, read up to the message's end.
    fn reads(m: &[u8], pos: usize, ttls: &[(u16, u32)]) -> Option<bool> {
        reads_rewritten(m, pos, m.len(), Q, ttls)
    }

    #[test]
    fn a_name_that_reaches_the_question_or_ends_clear_of_ttls_reads_nothing_rewritten() {
        // 24: a pointer to the question; 26: "x" then a pointer to the question's "test".
        let m = msg(&[0xc0, 12, 1, b'x', 0xc0, 14]);
        assert_eq!(reads(&m, 24, &[]), Some(false));
        assert_eq!(reads(&m, 26, &[(40, 0)]), Some(false));
        let m = msg(&[1, b'y', 0]);
        assert_eq!(reads(&m, 24, &[(27, 0)]), Some(false));
    }

    #[test]
    fn a_pointer_into_a_ttl_or_the_header_reads_rewritten_bytes() {
        // As the fuzz target found: a record whose TTL (at 30) holds a pointer to the
        // question, and a later owner name that points into that TTL.
        let mut tail = vec![0xc0, 12, 0, 5, 0, 1, 0xc0, 12, 0, 0x78, 0, 0];
        tail.extend_from_slice(&[0xc0, 30]);
        let m = msg(&tail);
        assert_eq!(reads(&m, 36, &[(30, 0)]), Some(true));
        // A pointer into the header; a label that runs over a TTL.
        let m = msg(&[0xc0, 2]);
        assert_eq!(reads(&m, 24, &[]), Some(true));
        let m = msg(&[3, b'a', b'b', b'c', 0]);
        assert_eq!(reads(&m, 24, &[(27, 0)]), Some(true));
        assert_eq!(reads(&m, 24, &[(29, 0)]), Some(false));
    }

    #[test]
    fn a_pointer_into_the_question_is_a_name_only_at_a_labels_start() {
        // The root label of the question is a start; "est" (mid-label), the type and the
        // class are not: a name read from there would run on into the records.
        for (at, want) in [(12, Some(false)), (13, None), (14, Some(false)), (16, None)] {
            assert_eq!(reads(&msg(&[0xc0, at]), 24, &[]), want, "{at}");
        }
        assert_eq!(reads(&msg(&[0xc0, 19]), 24, &[]), Some(false));
        assert_eq!(reads(&msg(&[0xc0, 21]), 24, &[]), None);
        assert_eq!(reads(&msg(&[0xc0, 22]), 24, &[]), None);
    }

    #[test]
    fn a_name_reads_nothing_past_its_place_or_past_a_pointer() {
        // 24: "\x0ab..." would cover 25..35; its place ends at 30.
        let mut tail = vec![10];
        tail.extend_from_slice(&[b'b'; 10]);
        tail.push(0);
        let m = msg(&tail);
        assert_eq!(reads_rewritten(&m, 24, 30, Q, &[]), None);
        assert_eq!(reads_rewritten(&m, 24, m.len(), Q, &[]), Some(false));
        // 36: a pointer to 35, a label of 10 bytes that would run over the pointer itself
        // and what follows (the record's own TTL, not in `ttls` yet).
        let mut tail = vec![0; 11];
        tail.push(10);
        tail.extend_from_slice(&[0xc0, 35]);
        tail.extend_from_slice(&[0; 12]);
        let m = msg(&tail);
        assert_eq!(reads(&m, 36, &[]), None);
    }

    #[test]
    fn a_forward_pointer_a_bad_label_or_an_overlong_name_is_not_a_name() {
        assert_eq!(reads(&msg(&[0xc0, 40]), 24, &[]), None);
        assert_eq!(reads(&msg(&[0x80]), 24, &[]), None);
        assert_eq!(reads(&msg(&[5, b'a']), 24, &[]), None);
        // 5 labels of 63 bytes: 320 bytes.
        let mut tail = Vec::new();
        for _ in 0..5 {
            tail.push(63);
            tail.extend_from_slice(&[b'z'; 63]);
        }
        tail.push(0);
        assert_eq!(reads(&msg(&tail), 24, &[]), None);
    }
}
