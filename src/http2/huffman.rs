//! HPACK's Huffman code (RFC 7541 §5.2, Appendix B): strings in a header block may be sent
//! coded with it. The code is canonical (codes of one length are consecutive, in symbol
//! order), so the code lengths alone define it: decoding keeps, per length, the first code
//! and how many symbols have it, and never builds a tree.

/// The code length of each byte value, from RFC 7541 Appendix B (EOS, 30 bits of ones, is
/// not a symbol here: a string that holds it is invalid).
const LENGTHS: [u8; 256] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
];

/// The longest code.
const LONGEST: usize = 30;

/// The canonical code, by length: the first code of each length, how many symbols have
/// that length, where they start in `symbols`, and the symbols sorted by (length, value).
struct Canonical {
    first: [u32; LONGEST + 1],
    count: [u32; LONGEST + 1],
    offset: [usize; LONGEST + 1],
    symbols: [u8; 256],
}

const CODE: Canonical = canonical();

// Evaluated at compile time: an index out of range fails the build, not a query.
#[allow(clippy::indexing_slicing)]
const fn canonical() -> Canonical {
    let mut c = Canonical {
        first: [0; LONGEST + 1],
        count: [0; LONGEST + 1],
        offset: [0; LONGEST + 1],
        symbols: [0; 256],
    };
    let mut n = 0;
    let mut code = 0u32;
    let mut len = 1;
    while len <= LONGEST {
        c.first[len] = code;
        c.offset[len] = n;
        let mut sym = 0;
        while sym < 256 {
            if LENGTHS[sym] as usize == len {
                c.symbols[n] = sym as u8;
                n += 1;
                c.count[len] += 1;
            }
            sym += 1;
        }
        code = (code + c.count[len]) << 1;
        len += 1;
    }
    c
}

/// A Huffman-coded string that is not valid: a code longer than any symbol's (EOS among
/// them), or padding that is not a short run of ones.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Invalid;

/// Appends the decoding of `src` to `dst`.
pub(super) fn decode(src: &[u8], dst: &mut Vec<u8>) -> Result<(), Invalid> {
    let mut code = 0u32;
    let mut len = 0usize;
    for &byte in src {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            let (Some(first), Some(count), Some(offset)) = (
                CODE.first.get(len),
                CODE.count.get(len),
                CODE.offset.get(len),
            ) else {
                return Err(Invalid);
            };
            let rank = code.wrapping_sub(*first);
            if rank < *count {
                let sym = CODE.symbols.get(offset + rank as usize).ok_or(Invalid)?;
                dst.push(*sym);
                code = 0;
                len = 0;
            }
        }
    }
    // What is left is padding: at most seven bits, all ones (the start of EOS).
    if len > 7 || code != (1u32 << len) - 1 {
        return Err(Invalid);
    }
    Ok(())
}

/// Appends the coding of `src` to `dst`, padded with ones to a whole byte.
pub(super) fn encode(src: &[u8], dst: &mut Vec<u8>) {
    let mut acc = 0u64;
    let mut bits = 0u32;
    for &b in src {
        let len = LENGTHS.get(usize::from(b)).copied().unwrap_or(0);
        let code = code_of(b, len);
        acc = (acc << len) | u64::from(code);
        bits += u32::from(len);
        while bits >= 8 {
            bits -= 8;
            dst.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        let pad = 8 - bits;
        dst.push(((acc << pad) | ((1u64 << pad) - 1)) as u8);
    }
}

/// The code of byte `b`, whose code length is `len`: the first code of that length plus
/// the byte's rank among the bytes of that length.
fn code_of(b: u8, len: u8) -> u32 {
    let len = usize::from(len);
    let first = CODE.first.get(len).copied().unwrap_or(0);
    let rank = LENGTHS
        .iter()
        .take(usize::from(b))
        .filter(|&&l| usize::from(l) == len)
        .count();
    first + rank as u32
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_util::hex;

    /// RFC 7541 Appendix C.4 and C.6: coded strings and what they decode to.
    const VECTORS: &[(&str, &str)] = &[
        ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
        ("a8eb 1064 9cbf", "no-cache"),
        ("25a8 49e9 5bb8 e8b4 bf", "custom-value"),
        ("6402", "302"),
        ("aec3 771a 4b", "private"),
        (
            "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
            "Mon, 21 Oct 2013 20:13:21 GMT",
        ),
        (
            "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
            "https://www.example.com",
        ),
    ];

    #[test]
    fn rfc_7541_examples_decode_and_encode() {
        for (coded, text) in VECTORS {
            let mut out = Vec::new();
            decode(&hex(coded), &mut out).unwrap();
            assert_eq!(out, text.as_bytes(), "{coded}");
            let mut back = Vec::new();
            encode(text.as_bytes(), &mut back);
            assert_eq!(back, hex(coded), "{text}");
        }
    }

    #[test]
    fn every_byte_value_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let mut coded = Vec::new();
        encode(&all, &mut coded);
        let mut out = Vec::new();
        decode(&coded, &mut out).unwrap();
        assert_eq!(out, all);
    }

    #[test]
    fn eos_long_padding_and_zero_padding_are_invalid() {
        // EOS: thirty ones, then padding.
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff], &mut Vec::new()),
            Err(Invalid)
        );
        // "0" (00000) then eight bits of ones: padding longer than seven bits.
        assert_eq!(decode(&[0x07, 0xff], &mut Vec::new()), Err(Invalid));
        // "0" then three zero bits: padding must be ones.
        assert_eq!(decode(&[0x00], &mut Vec::new()), Err(Invalid));
        // "0" then 111: valid.
        let mut out = Vec::new();
        decode(&[0x07], &mut out).unwrap();
        assert_eq!(out, b"0");
    }
}
