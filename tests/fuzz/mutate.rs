//! Mutations: bytes (flips, interesting values, inserts, deletes, duplicated runs,
//! splices, dictionary tokens, 16-bit fields), lines of text, and DNS structure (label
//! lengths and contents, section counts, header flags, an OPT record, compression pointers).

use crate::engine::{Rng, Shape, Target};

const BYTES: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, 0x3f, 0x40, 0xc0, 0xc1, b'.', b'\\', b' ', b'\n', b'\r', b'\t', b'#',
    b'"', b'/', b'*', b'^', b'$', b'=',
];
const WORDS: &[u16] = &[
    0, 1, 2, 0x7fff, 0x8000, 0xffff, 0xc00c, 0xc000, 0x3fff, 41, 255, 256, 511, 512, 513, 1232,
    4096, 4097, 65535,
];

/// Applies one random mutation to `x`.
pub(crate) fn mutate(rng: &mut Rng, x: &mut Vec<u8>, corpus: &[Vec<u8>], t: &Target) {
    let len = x.len();
    let pos = |rng: &mut Rng| rng.below(len + 1);
    match rng.below(if t.shape == Shape::Dns { 14 } else { 13 }) {
        0 if len > 0 => {
            let i = rng.below(len);
            x[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            x[i] = rng.next() as u8;
        }
        2 if len > 0 => {
            let i = rng.below(len);
            x[i] = *rng.pick(BYTES);
        }
        3 => {
            let i = pos(rng);
            let k = 1 + rng.below(8);
            for _ in 0..k {
                let b = if rng.one_in(2) {
                    *rng.pick(BYTES)
                } else {
                    rng.next() as u8
                };
                x.insert(i, b);
            }
        }
        4 if len > 0 => {
            let i = rng.below(len);
            let k = 1 + rng.below((len - i).min(16));
            x.drain(i..i + k);
        }
        5 if len > 0 => {
            let i = rng.below(len);
            let k = 1 + rng.below((len - i).min(64));
            let piece = x[i..i + k].to_vec();
            let at = pos(rng);
            x.splice(at..at, piece);
        }
        6 => {
            let other = rng.pick(corpus);
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            x.truncate(cut);
            x.extend_from_slice(&other[from..]);
        }
        7 if !t.dict.is_empty() => {
            let tok = rng.pick(&t.dict).clone();
            let at = pos(rng);
            if rng.one_in(2) || at + tok.len() > len {
                x.splice(at..at, tok);
            } else {
                x[at..at + tok.len()].copy_from_slice(&tok);
            }
        }
        8 if len >= 2 => {
            let i = rng.below(len - 1);
            let w = if rng.one_in(4) {
                (len as u16)
                    .wrapping_add(rng.below(5) as u16)
                    .wrapping_sub(2)
            } else {
                *rng.pick(WORDS)
            };
            x[i..i + 2].copy_from_slice(&w.to_be_bytes());
        }
        9 if len > 0 => x.truncate(rng.below(len)),
        10 if len > 0 => {
            // Repeat one byte over a run (long labels, long lines, deep nesting).
            let i = rng.below(len);
            let k = 1 + rng.below(300);
            let b = if rng.one_in(2) {
                x[i]
            } else {
                *rng.pick(BYTES)
            };
            x.splice(i..i, std::iter::repeat_n(b, k));
        }
        11 | 12 if t.shape == Shape::Text => text_mutation(rng, x, corpus),
        11..=13 if t.shape == Shape::Dns => dns_mutation(rng, x),
        _ => {
            if len > 0 {
                let i = rng.below(len);
                x[i] = x[i].wrapping_add(rng.below(7) as u8).wrapping_sub(3);
            }
        }
    }
    if x.len() > t.max_len {
        x.truncate(t.max_len);
    }
}

/// Line-level mutations: swap, duplicate, drop a line, or take a line from another input.
fn text_mutation(rng: &mut Rng, x: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let mut lines: Vec<Vec<u8>> = x.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    let n = lines.len();
    match rng.below(4) {
        0 if n >= 2 => {
            let (a, b) = (rng.below(n), rng.below(n));
            lines.swap(a, b);
        }
        1 => {
            let l = lines[rng.below(n)].clone();
            lines.insert(rng.below(n + 1), l);
        }
        2 if n >= 2 => {
            lines.remove(rng.below(n));
        }
        _ => {
            let other = rng.pick(corpus);
            let ol: Vec<&[u8]> = other.split(|&b| b == b'\n').collect();
            let l = rng.pick(&ol).to_vec();
            lines.insert(rng.below(n + 1), l);
        }
    }
    *x = lines.join(&b'\n');
}

/// Label-length bytes of the question name starting at offset 12: (offset, length).
fn labels(x: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 12;
    while let Some(&l) = x.get(i) {
        if l == 0 || l & 0xc0 != 0 || out.len() > 130 {
            break;
        }
        out.push((i, usize::from(l)));
        i += 1 + usize::from(l);
    }
    out
}

const FILL: &[u8] = b".\\A\x00\xff-_*";

/// One DNS-aware mutation: label lengths and contents, section counts, flags, an OPT record,
/// a compression pointer.
fn dns_mutation(rng: &mut Rng, x: &mut Vec<u8>) {
    if x.len() < 12 {
        x.resize(12, 0);
    }
    let ls = labels(x);
    match rng.below(7) {
        0 if !ls.is_empty() => {
            let &(at, len) = rng.pick(&ls);
            let v = match rng.below(5) {
                0 => 0,
                1 => 63,
                2 => 64,
                3 => 0xc0 | rng.below(64),
                _ => (len + rng.below(5)).saturating_sub(2),
            };
            x[at] = v as u8;
        }
        1 if !ls.is_empty() => {
            let &(at, len) = rng.pick(&ls);
            let b = *rng.pick(FILL);
            let end = (at + 1 + len).min(x.len());
            x[at + 1..end].fill(b);
        }
        2 => {
            // A new label before the root (or at the start).
            let at = ls.last().map_or(12, |&(a, l)| a + 1 + l).min(x.len());
            let len = 1 + rng.below(63);
            let b = *rng.pick(FILL);
            let mut label = vec![len as u8];
            label.extend(std::iter::repeat_n(b, len));
            x.splice(at..at, label);
        }
        3 => {
            let i = 4 + 2 * rng.below(4);
            let v: u16 = *rng.pick(&[0, 1, 2, 3, 0xffff, 0x8000]);
            x[i..i + 2].copy_from_slice(&v.to_be_bytes());
        }
        4 => {
            let bit = *rng.pick(&[0x80u8, 0x78, 0x40, 0x08, 0x02, 0x01]);
            x[2] ^= bit;
            if rng.one_in(2) {
                x[3] ^= *rng.pick(&[0x80u8, 0x40, 0x20, 0x10, 0x0f]);
            }
        }
        5 => {
            let payload: u16 = *rng.pick(&[0, 1, 511, 512, 513, 1232, 4096, 4097, 65535]);
            let version = if rng.one_in(4) { rng.next() as u8 } else { 0 };
            let flags: u16 = if rng.one_in(2) { 0x8000 } else { 0 };
            let mut opt = vec![0, 0, 41];
            opt.extend_from_slice(&payload.to_be_bytes());
            opt.extend_from_slice(&[0, version]);
            opt.extend_from_slice(&flags.to_be_bytes());
            opt.extend_from_slice(&[0, 0]);
            x.extend_from_slice(&opt);
            let ar = u16::from_be_bytes([x[10], x[11]]).wrapping_add(1);
            x[10..12].copy_from_slice(&ar.to_be_bytes());
        }
        _ => {
            let at = ls.get(rng.below(ls.len() + 1)).map_or(12, |&(a, _)| a);
            let ptr = 0xc000u16 | rng.below(x.len().max(13)) as u16;
            let end = (at + 2).min(x.len());
            x.splice(at..end, ptr.to_be_bytes());
        }
    }
}
