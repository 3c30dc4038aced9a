//! Target `doq_stream`: the bytes of a DNS-over-QUIC stream (RFC 9250 §4.2: a two-byte
//! length, one message) through `dns::doq::message` and the query checks
//! (`dns::doq::check_query`: ID 0, no edns-tcp-keepalive), seeded with framed real
//! captures and queries with and without EDNS options.
//!
//! Properties: never panics; a message taken is exactly the bytes after the length and
//! frames back to the input; every shorter prefix of a taken stream is "more needed" (or,
//! finished there, truncated); the ID check agrees with the first two bytes; when
//! hickory-proto parses the message, the keepalive check agrees with the OPT options it
//! reads.

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use sinkhole::dns::doq::{FrameError, MAX_STREAM, check_query, framed, message};

use crate::engine::{Shape, Target, Verdict, fuzz, sig};
use crate::seeds::{captures, query};

/// `q` with `opts` as its OPT record's RDATA (the query has an OPT without options).
fn with_options(mut q: Vec<u8>, opts: &[u8]) -> Vec<u8> {
    let n = q.len();
    q[n - 2..].copy_from_slice(&(opts.len() as u16).to_be_bytes());
    q.extend_from_slice(opts);
    q
}

#[test]
fn doq_stream() {
    let plain = query(0, "www.example.test.", RecordType::A, None);
    let edns = query(0, "ads.test.", RecordType::AAAA, Some((1232, true)));
    let keepalive = with_options(edns.clone(), &[0, 11, 0, 0]);
    let padded_keepalive = with_options(edns.clone(), &[0, 12, 0, 2, 0, 0, 0, 11, 0, 2, 1, 44]);
    let mut seeds: Vec<Vec<u8>> = vec![
        framed(&plain),
        framed(&edns),
        framed(&keepalive),
        framed(&padded_keepalive),
        framed(&query(0x1234, "x.test.", RecordType::TXT, None)),
    ];
    seeds.extend(captures().iter().take(40).map(|c| framed(c)));
    fuzz(
        Target {
            name: "doq_stream",
            seeds,
            dict: [
                &[0u8, 11, 0, 0][..],
                &[0, 41],
                &[0, 0],
                &[0xc0, 0x0c],
                &[0xff, 0xff],
            ]
            .iter()
            .map(|s| s.to_vec())
            .collect(),
            max_len: MAX_STREAM + 16,
            shape: Shape::Dns,
        },
        |b| -> Verdict {
            let whole = message(b, true);
            let open = message(b, false);
            let m = match (whole, open) {
                (Ok(Some(m)), Ok(Some(o))) if m == o => m,
                (Ok(None), _) => return Err("finished stream said 'more needed'".into()),
                (Err(FrameError::Truncated), Ok(None)) => {
                    return Ok(sig(&[1, b.len().min(3) as u64]));
                }
                (Err(e), Err(f)) if e == f => return Ok(sig(&[2, e as u64])),
                (w, o) => return Err(format!("finished {w:?}, open {o:?}")),
            };
            if framed(m) != b {
                return Err("the message does not frame back to the stream".into());
            }
            for cut in [0, 1, 2, b.len() / 2, b.len() - 1] {
                let cut = cut.min(b.len() - 1);
                if message(&b[..cut], false) != Ok(None) {
                    return Err(format!("prefix of {cut} bytes not 'more needed'"));
                }
                if message(&b[..cut], true).is_ok() {
                    return Err(format!("prefix of {cut} bytes taken when finished"));
                }
            }
            let checked = check_query(m);
            let id_zero = m.len() < 2 || m[..2] == [0, 0];
            match checked {
                Err(FrameError::NonZeroId) if !id_zero => {}
                Err(FrameError::NonZeroId) => return Err("ID 0 called non-zero".into()),
                _ if !id_zero => return Err(format!("non-zero ID passed: {checked:?}")),
                _ => {}
            }
            if id_zero && let Ok(parsed) = Message::from_vec(m) {
                let keep = parsed.edns.as_ref().is_some_and(|e| {
                    e.options()
                        .as_ref()
                        .iter()
                        .any(|(c, _)| u16::from(*c) == 11)
                });
                if keep != (checked == Err(FrameError::Keepalive)) {
                    return Err(format!(
                        "keepalive: hickory reads {keep}, the check says {checked:?}"
                    ));
                }
            }
            Ok(sig(&[3, checked.is_ok() as u64, m.len().min(64) as u64]))
        },
    );
}
