//! Target `tcp_frames`: the bytes an upstream sends on a DNS-over-TLS connection (RFC 7766:
//! two-byte-length-prefixed messages, pipelined) through `dns::wire::next_frame`, as the
//! relay's connections read them, seeded with real captures framed and run together.
//!
//! Properties: never panics; the frames taken, framed again, are exactly the bytes consumed;
//! what is left is less than one whole frame; a stream cut anywhere yields a prefix of the
//! same frames.

use sinkhole::dns::doq::framed;
use sinkhole::dns::wire::next_frame;

use crate::engine::{Shape, Target, Verdict, fuzz, sig};
use crate::seeds::captures;

/// Every whole frame at the front of `b`, and what is left.
fn frames(mut b: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut got = Vec::new();
    while let Some((m, rest)) = next_frame(b) {
        got.push(m);
        b = rest;
    }
    (got, b)
}

#[test]
fn tcp_frames() {
    let caps = captures();
    let mut seeds: Vec<Vec<u8>> = caps.iter().take(20).map(|c| framed(c)).collect();
    for pair in caps.chunks(3).take(20) {
        seeds.push(pair.iter().flat_map(|c| framed(c)).collect());
    }
    seeds.push(vec![0, 0, 0, 0, 0, 1, 7]);
    fuzz(
        Target {
            name: "tcp_frames",
            seeds,
            dict: [&[0u8, 0][..], &[0, 12], &[0xff, 0xff], &[0x01, 0x00]]
                .iter()
                .map(|s| s.to_vec())
                .collect(),
            max_len: 3 * 1024,
            shape: Shape::Dns,
        },
        |b| -> Verdict {
            let (got, left) = frames(b);
            let again: Vec<u8> = got.iter().flat_map(|m| framed(m)).collect();
            if again.as_slice() != &b[..b.len() - left.len()] {
                return Err("the frames do not frame back to the bytes consumed".into());
            }
            if left.len() >= 2 {
                let len = usize::from(u16::from_be_bytes([left[0], left[1]]));
                if left.len() - 2 >= len {
                    return Err(format!("a whole frame of {len} bytes left behind"));
                }
            }
            for cut in [1, b.len() / 3, b.len() / 2, b.len().saturating_sub(1)] {
                let cut = cut.min(b.len());
                let (some, _) = frames(&b[..cut]);
                if got.get(..some.len()) != Some(&some[..]) {
                    return Err(format!("cut at {cut}: not a prefix of the frames"));
                }
            }
            Ok(sig(&[got.len().min(8) as u64, left.len().min(3) as u64]))
        },
    );
}
