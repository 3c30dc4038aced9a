//! Target `h2_frames`: the bytes a DNS-over-HTTPS server sends on an HTTP/2 connection
//! through `http2::Client::receive`, as the relay's connections feed it, with three queries
//! on streams 1, 3 and 5; seeded with answers as servers send them (coded and plain types,
//! padding, CONTINUATION, trailers), settings, pings, resets and GOAWAY.
//!
//! Properties: never panics; each query is settled at most once, and the settled plus the
//! unsettled are the three asked; an answer is at most a DNS message; after the last whole
//! frame less than a frame is left; what the client writes back is bounded by what it read;
//! the same bytes cut in two give the same outcomes as in one piece.

use sinkhole::http2::client::{Event, MAX_ANSWER};
use sinkhole::http2::{Client, hpack};

use crate::engine::{Shape, Target, Verdict, fuzz, sig};

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A 200 head with `content-type: application/dns-message`, Huffman-coded or plain.
fn ok_block(coded: bool) -> Vec<u8> {
    let mut b = vec![0x88, 0x5f];
    if coded {
        let t = hpack::dns_message_coded();
        b.push(0x80 | t.len() as u8);
        b.extend_from_slice(&t);
    } else {
        b.push(hpack::DNS_MESSAGE.len() as u8);
        b.extend_from_slice(hpack::DNS_MESSAGE.as_bytes());
    }
    b
}

/// What became of the queries, and whether the connection ended in an error.
type Outcome = (Vec<(u8, u32, usize)>, bool);

/// Feeds `chunks` in order, as a relay's inbox would; checks the bounds on the way.
fn run(chunks: &[&[u8]]) -> Result<(Outcome, Client<u32>), String> {
    let mut c = Client::new("dns.example", "/dns-query");
    for i in 0..3 {
        c.ask(i, vec![0; 29]);
    }
    c.output().clear();
    let mut inbox = Vec::new();
    let mut events = Vec::new();
    let mut read = 0usize;
    let mut failed = false;
    for chunk in chunks {
        inbox.extend_from_slice(chunk);
        read += chunk.len();
        match c.receive(&inbox, &mut events) {
            Ok(n) => {
                inbox.drain(..n);
            }
            Err(_) => {
                failed = true;
                break;
            }
        }
        if c.output().len() > 2 * read + 1024 {
            return Err(format!(
                "{} bytes written for {read} read",
                c.output().len()
            ));
        }
    }
    if !failed && inbox.len() >= 9 {
        let len = usize::from(inbox[0]) << 16 | usize::from(inbox[1]) << 8 | usize::from(inbox[2]);
        if len <= 16_384 && inbox.len() - 9 >= len {
            return Err(format!("a whole frame of {len} bytes left unread"));
        }
    }
    let mut settled = Vec::new();
    for e in &events {
        let (kind, item, len) = match e {
            Event::Answer(i, body) => (0, *i, body.len()),
            Event::Failed(i, why) => (1, *i, why.len()),
            Event::Retry(i) => (2, *i, 0),
        };
        if kind == 0 && len > MAX_ANSWER {
            return Err(format!("an answer of {len} bytes"));
        }
        if settled.iter().any(|&(_, j, _)| j == item) {
            return Err(format!("query {item} settled twice"));
        }
        settled.push((kind, item, len));
    }
    if settled.len() + c.len() != 3 {
        return Err(format!(
            "{} settled and {} left of 3",
            settled.len(),
            c.len()
        ));
    }
    Ok(((settled, failed), c))
}

#[test]
fn h2_frames() {
    let settings = frame(4, 0, 0, &[0, 3, 0, 0, 0, 100, 0, 4, 0, 1, 0, 0]);
    let answer = |stream: u32, coded: bool| {
        let mut b = frame(1, 4, stream, &ok_block(coded));
        b.extend(frame(0, 1, stream, b"\x00\x00\x81\x80\x00\x01\x00\x01"));
        b
    };
    let mut seeds = vec![
        [settings.clone(), frame(4, 1, 0, &[]), answer(1, true)].concat(),
        [answer(3, false), answer(1, true), answer(5, true)].concat(),
        [
            frame(1, 0x08, 1, &[&[2][..], &ok_block(true), &[0, 0]].concat()),
            frame(0, 0x09, 1, &[3, b'a', b'b', 0, 0, 0]),
        ]
        .concat(),
        [
            frame(1, 0, 3, &ok_block(true)[..2]),
            frame(9, 4, 3, &ok_block(true)[2..]),
            frame(0, 0, 3, b"body"),
            frame(1, 5, 3, &[0x40, 1, b'x', 1, b'y']),
        ]
        .concat(),
        [
            frame(6, 0, 0, b"12345678"),
            frame(3, 0, 5, &[0, 0, 0, 7]),
            frame(1, 5, 1, &[0x8e]),
        ]
        .concat(),
        [frame(7, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0]), answer(1, true)].concat(),
        [frame(8, 0, 0, &[0, 0, 1, 0]), frame(8, 0, 1, &[0, 0, 0, 9])].concat(),
    ];
    seeds.push(seeds.concat());
    let dict: Vec<Vec<u8>> = vec![
        vec![0, 0, 0],
        vec![0, 0, 0, 1],
        vec![0, 0, 0, 3],
        vec![0, 0, 0, 5],
        vec![0x88],
        vec![0x5f],
        vec![0x40, 0x80],
        vec![0x20],
        hpack::dns_message_coded(),
        vec![0x3f, 0xe1, 0x1f],
        vec![0xff, 0xff, 0xff],
    ];
    fuzz(
        Target {
            name: "h2_frames",
            seeds,
            dict,
            max_len: 4096,
            shape: Shape::Dns,
        },
        |b| -> Verdict {
            let ((whole, failed), _) = run(&[b])?;
            let cut = b.len() / 2;
            let ((parts, failed_cut), _) = run(&[&b[..cut], &b[cut..]])?;
            if (whole.clone(), failed) != (parts.clone(), failed_cut) {
                return Err(format!(
                    "in one piece {whole:?} (error {failed}), cut at {cut} {parts:?} (error {failed_cut})"
                ));
            }
            let kinds: u64 = whole
                .iter()
                .fold(0, |acc, &(k, _, _)| acc * 4 + u64::from(k) + 1);
            Ok(sig(&[kinds, u64::from(failed)]))
        },
    );
}
