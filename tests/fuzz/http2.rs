//! Target `h2_frames`: the bytes a DNS-over-HTTPS server sends on an HTTP/2 connection
//! through `http2::Client::receive`, as the relay's connections feed it, with three queries
//! on streams 1, 3 and 5; seeded with answers as servers send them (coded and plain types,
//! padding, CONTINUATION, trailers, fields in HPACK's dynamic table), settings, pings, resets
//! and GOAWAY.
//!
//! Properties: never panics; each query is settled at most once, and the settled plus the
//! unsettled are the three asked; an answer is at most a DNS message; after the last whole
//! frame less than a frame is left; what the client writes back is bounded by what it read;
//! what it writes is whole frames, nothing on a stream after that stream's end or reset, no
//! more of a body than there is, and no more DATA than the connection's window allows (the
//! second query's body, 70,000 bytes, is larger than the first window); the same bytes cut
//! in two give the same outcomes as in one piece.

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

/// The queries' bodies: the second needs more than the connection's first window.
const BODIES: [usize; 3] = [29, 70_000, 45];

/// The sum of the connection-level WINDOW_UPDATE increments among the whole frames of `b`.
fn connection_credit(mut b: &[u8]) -> u64 {
    let mut credit = 0;
    while b.len() >= 9 {
        let len = usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
        let Some(payload) = b.get(9..9 + len) else {
            break;
        };
        let stream = u32::from_be_bytes(b[5..9].try_into().unwrap()) & 0x7fff_ffff;
        if b[3] == 8 && stream == 0 && len == 4 {
            credit += u64::from(u32::from_be_bytes(payload.try_into().unwrap()) & 0x7fff_ffff);
        }
        b = &b[9 + len..];
    }
    credit
}

/// Checks what the client wrote: whole frames, nothing on a stream after its reset and
/// only a reset after its end (RFC 9113 §5.1: half-closed, it may still be reset), no more
/// DATA than the bodies and the connection's window. `ended`: 1 after our END_STREAM, 2
/// after our RST_STREAM.
fn check_written(
    mut out: &[u8],
    sent: &mut [usize; 3],
    ended: &mut [u8; 3],
    credit: u64,
) -> Result<(), String> {
    while !out.is_empty() {
        if out.len() < 9 {
            return Err("a partial frame written".into());
        }
        let len = usize::from(out[0]) << 16 | usize::from(out[1]) << 8 | usize::from(out[2]);
        let (kind, flags) = (out[3], out[4]);
        let stream = u32::from_be_bytes(out[5..9].try_into().unwrap()) & 0x7fff_ffff;
        let Some(payload) = out.get(9..9 + len) else {
            return Err("a partial frame written".into());
        };
        if stream != 0 {
            let i = (stream / 2) as usize;
            if stream % 2 == 0 || i >= 3 {
                return Err(format!("a frame on stream {stream}, never opened"));
            }
            if ended[i] == 2 || (ended[i] == 1 && kind != 3) {
                return Err(format!(
                    "a frame of type {kind} on stream {stream} after its end"
                ));
            }
            match kind {
                0 => {
                    sent[i] += payload.len();
                    if sent[i] > BODIES[i] {
                        return Err(format!(
                            "{} bytes of a {}-byte body sent",
                            sent[i], BODIES[i]
                        ));
                    }
                    if flags & 1 != 0 {
                        if sent[i] != BODIES[i] {
                            return Err(format!("stream {stream} ended after {} bytes", sent[i]));
                        }
                        ended[i] = 1;
                    }
                }
                3 => ended[i] = 2,
                _ => {}
            }
        }
        out = &out[9 + len..];
    }
    let total: usize = sent.iter().sum();
    if total as u64 > 65_535 + credit {
        return Err(format!(
            "{total} bytes of DATA in a window of {}",
            65_535 + credit
        ));
    }
    Ok(())
}

/// Feeds `chunks` in order, as a relay's inbox would; checks the bounds on the way.
fn run(chunks: &[&[u8]]) -> Result<(Outcome, Client<u32>), String> {
    let mut c = Client::new("dns.example", "/dns-query");
    let mut sent = [0usize; 3];
    let mut ended = [0u8; 3];
    c.output().clear();
    for (i, len) in BODIES.iter().enumerate() {
        c.ask(i as u32, vec![0; *len]);
    }
    let first = std::mem::take(c.output());
    check_written(&first, &mut sent, &mut ended, 0)?;
    let mut fed = Vec::new();
    let mut inbox = Vec::new();
    let mut events = Vec::new();
    let mut read = 0usize;
    let mut failed = false;
    for chunk in chunks {
        inbox.extend_from_slice(chunk);
        fed.extend_from_slice(chunk);
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
        let out = std::mem::take(c.output());
        // Besides replies, at most the rest of the bodies (as windows open) and headers.
        if out.len() > 2 * read + 1024 + 70_000 {
            return Err(format!("{} bytes written for {read} read", out.len()));
        }
        check_written(&out, &mut sent, &mut ended, connection_credit(&fed))?;
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
    let body: &[u8] = b"\x00\x00\x81\x80\x00\x01\x00\x01";
    let answer = |stream: u32, coded: bool| {
        let mut b = frame(1, 4, stream, &ok_block(coded));
        b.extend(frame(0, 1, stream, body));
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
        // As dnsdist (h2o) answers: :status and the type indexed in HPACK's dynamic table
        // by the first answer, referred to by index (63, then 62) by the next ones.
        [
            frame(
                1,
                4,
                1,
                &[&[0x48, 3, b'2', b'0', b'0'][..], &ok_block(true)[1..]].concat(),
            ),
            frame(0, 1, 1, body),
            frame(1, 4, 3, &[0xbf, 0xbe]),
            frame(0, 1, 3, body),
            // ...and a content-length indexed (static name 28).
            frame(1, 4, 5, &[0xbf, 0xbe, 0x5c, 0x02, b'4', b'9']),
            frame(0, 1, 5, body),
        ]
        .concat(),
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
        vec![0xbe],
        vec![0xbf],
        vec![0x48, 0x03],
        vec![0x5c],
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
