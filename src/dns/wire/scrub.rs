//! Bailiwick scrubbing of upstream answers, after unbound's scrubber for a forwarder
//! (`iter_scrub.c`, `scrub_normalize`): which records of an answer to our question may be
//! relayed and cached, and which are strays (possible poisoning) to strip.
//!
//! - **Answer:** records owned by the question name or by a name of the CNAME chain that
//!   starts there (in any order), and DNAMEs owned by an ancestor of such a name. The chain
//!   is followed through the CNAMEs (a resolver synthesizes one for each DNAME, RFC 6672).
//! - **Authority:** SOA, NS, DS and other records only when owned by the question name, a
//!   chain name or an ancestor of one (the zone cuts above them); NSEC/NSEC3 are kept (only a
//!   validator uses them, after checking their signatures); CNAME, DNAME, A and AAAA go.
//! - **Additional:** only A/AAAA owned by a name that a kept record points at (NS, MX, SRV,
//!   SVCB/HTTPS targets); OPT is handled by the caller.
//!
//! An RRSIG follows the rule of the type it covers. Everything works on the message bytes,
//! names compared in place through compression pointers: nothing is allocated, so that an
//! answer with nothing to strip costs one more walk over its records.

use super::{HEADER_LEN, RrPos, TYPE_A, TYPE_AAAA, TYPE_OPT, parse_rr, u16_at};

const TYPE_NS: u16 = 2;
const TYPE_CNAME: u16 = 5;
const TYPE_MX: u16 = 15;
const TYPE_SRV: u16 = 33;
const TYPE_DNAME: u16 = 39;
const TYPE_RRSIG: u16 = 46;
const TYPE_NSEC: u16 = 47;
const TYPE_NSEC3: u16 = 50;
const TYPE_SVCB: u16 = 64;
const TYPE_HTTPS: u16 = 65;

/// Longest CNAME chain followed (names, the question's included); longer chains lose the
/// records past it.
const MAX_CHAIN: usize = 16;
/// Most target names tracked for the additional section; addresses of the others go.
const MAX_TARGETS: usize = 32;

/// A short list of names, each the offset of a (possibly compressed) name in the message.
struct Names<const N: usize> {
    pos: [usize; N],
    len: usize,
}

impl<const N: usize> Names<N> {
    fn new() -> Self {
        Self {
            pos: [0; N],
            len: 0,
        }
    }

    fn as_slice(&self) -> &[usize] {
        self.pos.get(..self.len).unwrap_or_default()
    }

    fn push(&mut self, p: usize) -> bool {
        let Some(slot) = self.pos.get_mut(self.len) else {
            return false;
        };
        *slot = p;
        self.len += 1;
        true
    }
}

/// The labels of the name at `pos`, through compression pointers. A pointer must point
/// backwards, and a name ends after 255 bytes of labels: a pointer back to before labels it
/// follows would otherwise loop forever (#10, found by the `upstream_response` fuzz
/// target). A malformed name just ends the walk early.
struct Labels<'a> {
    pkt: &'a [u8],
    pos: usize,
    done: bool,
    /// Bytes of labels (with their length bytes) walked so far.
    walked: usize,
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while !self.done {
            let Some(&len) = self.pkt.get(self.pos) else {
                break;
            };
            match len & 0xC0 {
                0x00 if len == 0 => break,
                0x00 => {
                    self.walked += 1 + usize::from(len);
                    if self.walked > 255 {
                        break;
                    }
                    let start = self.pos + 1;
                    let label = self.pkt.get(start..start + usize::from(len))?;
                    self.pos = start + usize::from(len);
                    return Some(label);
                }
                0xC0 => match u16_at(self.pkt, self.pos) {
                    Some(p) if usize::from(p & 0x3FFF) < self.pos => {
                        self.pos = usize::from(p & 0x3FFF);
                    }
                    _ => break,
                },
                _ => break,
            }
        }
        self.done = true;
        None
    }
}

fn labels(pkt: &[u8], pos: usize) -> Labels<'_> {
    Labels {
        pkt,
        pos,
        done: false,
        walked: 0,
    }
}

/// Where the name at `pos` really starts: past the pointers that open it.
fn deref(pkt: &[u8], mut pos: usize) -> usize {
    while let Some(p) = u16_at(pkt, pos).filter(|p| p & 0xC000 == 0xC000) {
        let target = usize::from(p & 0x3FFF);
        if target >= pos {
            break;
        }
        pos = target;
    }
    pos
}

fn same_labels<'a>(mut a: impl Iterator<Item = &'a [u8]>, mut b: Labels<'a>) -> bool {
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => {}
            _ => return false,
        }
    }
}

/// True when the names at `a` and `b` are equal (ASCII case-insensitive).
fn name_eq(pkt: &[u8], a: usize, b: usize) -> bool {
    let (a, b) = (deref(pkt, a), deref(pkt, b));
    a == b || same_labels(labels(pkt, a), labels(pkt, b))
}

/// True when the name at `anc` is the name at `name` or an ancestor of it.
fn is_ancestor(pkt: &[u8], anc: usize, name: usize) -> bool {
    let (na, nn) = (labels(pkt, anc).count(), labels(pkt, name).count());
    na <= nn && same_labels(labels(pkt, name).skip(nn - na), labels(pkt, anc))
}

/// The type a record's rule is decided by: the covered type for an RRSIG.
fn rule_type(pkt: &[u8], rr: &RrPos) -> u16 {
    if rr.rtype == TYPE_RRSIG {
        u16_at(pkt, rdata(rr)).unwrap_or(0)
    } else {
        rr.rtype
    }
}

fn rdata(rr: &RrPos) -> usize {
    rr.ttl_off + 6
}

/// The name a kept record points at, whose addresses may ride in the additional section.
pub(super) fn target(pkt: &[u8], rr: &RrPos) -> Option<usize> {
    let off = match rr.rtype {
        TYPE_NS => 0,
        TYPE_MX | TYPE_SVCB | TYPE_HTTPS => 2,
        TYPE_SRV => 6,
        _ => return None,
    };
    let p = rdata(rr) + off;
    (p < rr.end && pkt.get(p).is_some_and(|&b| b != 0)).then_some(p)
}

/// Walks the records of one section from `pos`; returns the position after them.
fn each(pkt: &[u8], mut pos: usize, count: u16, mut f: impl FnMut(&RrPos)) -> Option<usize> {
    for _ in 0..count {
        let rr = parse_rr(pkt, pos)?;
        f(&rr);
        pos = rr.end;
    }
    Some(pos)
}

/// The CNAME chain of an answer: the question name (at [`HEADER_LEN`]), then each CNAME
/// target (its position in the record's RDATA), found wherever its record is in the answer
/// section (`an` records from `first`). Not followed for a query of type CNAME, whose answer
/// is the first CNAME itself. A loop or more than [`MAX_CHAIN`] names end it.
fn chain(pkt: &[u8], first: usize, an: u16, qtype: u16) -> Option<Names<MAX_CHAIN>> {
    let mut chain = Names::<MAX_CHAIN>::new();
    chain.push(HEADER_LEN);
    if qtype != TYPE_CNAME {
        while let Some(&last) = chain.as_slice().last() {
            let mut next = None;
            each(pkt, first, an, |rr| {
                if next.is_none() && rr.rtype == TYPE_CNAME && name_eq(pkt, rr.start, last) {
                    next = Some(rdata(rr));
                }
            })?;
            let Some(t) = next else { break };
            if chain.as_slice().iter().any(|&c| name_eq(pkt, c, t)) || !chain.push(t) {
                break;
            }
        }
    }
    Some(chain)
}

/// The CNAME targets of an answer to a question of type `qtype` (see [`chain`]), each in
/// the form a query's name has: lower case, dotted, no final dot, a `.` or `\` inside a
/// label escaped with `\`. Empty when there is no chain or the records do not parse.
pub(super) fn cname_targets(pkt: &[u8], first: usize, an: u16, qtype: u16) -> Box<[Box<[u8]>]> {
    let Some(chain) = chain(pkt, first, an, qtype) else {
        return Box::default();
    };
    chain
        .as_slice()
        .iter()
        .skip(1)
        .map(|&pos| name_text(pkt, pos))
        .filter(|n| !n.is_empty())
        .collect()
}

/// The name at `pos` as text (see [`cname_targets`]); at most 255 bytes of labels are read
/// (so at most 510 bytes of text).
fn name_text(pkt: &[u8], pos: usize) -> Box<[u8]> {
    let mut out = Vec::with_capacity(64);
    for label in labels(pkt, pos) {
        if !out.is_empty() {
            out.push(b'.');
        }
        for &c in label {
            if c == b'.' || c == b'\\' {
                out.push(b'\\');
            }
            out.push(c.to_ascii_lowercase());
        }
    }
    out.into_boxed_slice()
}

/// Calls `stray(i)` for every record to strip, `i` counting all records from the first
/// answer (OPT included, never a stray). `first` is the position after the question;
/// `counts` are the answer, authority and additional counts. `None`: the records do not
/// parse (the caller has checked they do).
pub(super) fn strays(
    pkt: &[u8],
    first: usize,
    counts: [u16; 3],
    qtype: u16,
    mut stray: impl FnMut(usize),
) -> Option<()> {
    let [an, ns, ar] = counts;
    let chain = chain(pkt, first, an, qtype)?;
    let in_chain = |p: usize| chain.as_slice().iter().any(|&c| name_eq(pkt, c, p));
    let above_chain = |p: usize| chain.as_slice().iter().any(|&c| is_ancestor(pkt, p, c));
    let mut targets = Names::<MAX_TARGETS>::new();
    let mut i = 0usize;
    let pos = each(pkt, first, an, |rr| {
        let keep = match rule_type(pkt, rr) {
            TYPE_DNAME => above_chain(rr.start),
            _ => in_chain(rr.start),
        };
        if !keep {
            stray(i);
        } else if let Some(t) = target(pkt, rr) {
            targets.push(t);
        }
        i += 1;
    })?;
    let pos = each(pkt, pos, ns, |rr| {
        let keep = match rule_type(pkt, rr) {
            TYPE_CNAME | TYPE_DNAME | TYPE_A | TYPE_AAAA => false,
            TYPE_NSEC | TYPE_NSEC3 => true,
            _ => above_chain(rr.start),
        };
        if !keep {
            stray(i);
        } else if let Some(t) = target(pkt, rr) {
            targets.push(t);
        }
        i += 1;
    })?;
    each(pkt, pos, ar, |rr| {
        let keep = rr.rtype == TYPE_OPT
            || matches!(rule_type(pkt, rr), TYPE_A | TYPE_AAAA)
                && targets
                    .as_slice()
                    .iter()
                    .any(|&t| name_eq(pkt, t, rr.start));
        if !keep {
            stray(i);
        }
        i += 1;
    })?;
    Some(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    // See: #10 (an upstream answer whose name points back before its own labels hung the
    // forwarding task forever)
    #[test]
    fn r10_a_pointer_loop_through_labels_ends() {
        // At 12: label "a", then a pointer back to 12: "a.a.a.a…" without end.
        let pkt = b"\x00\x00\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\x01a\xc0\x0c";
        assert!(labels(pkt, 12).count() <= 128);
        assert!(!name_eq(pkt, 12, 12 + 2) || name_eq(pkt, 12, 12));
        assert!(is_ancestor(pkt, 12, 12));
    }

    /// `www.example.com` at 12, then `mail` + pointer to `example.com` (16) at 29, then a
    /// pointer to 29 at 36.
    fn pkt() -> Vec<u8> {
        let mut p = vec![0u8; 12];
        p.extend_from_slice(b"\x03www\x07example\x03com\x00");
        p.extend_from_slice(b"\x04MAIL\xC0\x10");
        p.extend_from_slice(b"\xC0\x1D");
        p.extend_from_slice(b"\x03com\x00");
        p
    }

    #[test]
    fn names_compare_through_pointers() {
        let p = pkt();
        assert!(name_eq(&p, 12, 12));
        assert!(name_eq(&p, 29, 36), "a pointer to the same name");
        assert!(!name_eq(&p, 12, 29));
        assert!(
            is_ancestor(&p, 16, 12),
            "example.com is above www.example.com"
        );
        assert!(
            is_ancestor(&p, 16, 36),
            "…and above mail.example.com via pointers"
        );
        assert!(is_ancestor(&p, 38, 12), "com, spelled out elsewhere");
        assert!(!is_ancestor(&p, 12, 16));
        assert!(!is_ancestor(&p, 29, 12));
    }

    #[test]
    fn names_become_query_style_text() {
        let mut p = pkt();
        assert_eq!(&*name_text(&p, 36), b"mail.example.com");
        p.extend_from_slice(b"\x03a.B\x01\\\x00");
        assert_eq!(&*name_text(&p, 43), b"a\\.b.\\\\");
        // Past the end: empty, and no panic.
        assert!(name_text(&p, p.len()).is_empty());
    }

    #[test]
    fn forward_pointers_end_the_walk() {
        let mut p = pkt();
        p.extend_from_slice(b"\xC0\x2B"); // at 43, pointing at itself
        assert_eq!(labels(&p, 43).count(), 0);
        assert!(!name_eq(&p, 43, 12));
        assert_eq!(deref(&p, 43), 43);
    }
}
