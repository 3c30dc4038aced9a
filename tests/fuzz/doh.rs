//! Target `doh_query`: the query string of a DNS-over-HTTPS GET (`?dns=` base64url, RFC
//! 8484 §4.1) through `server::doh::dns_param`, seeded with real queries encoded as clients
//! send them (with and without padding, among other parameters).
//!
//! Properties: never panics; what it accepts is the base64url decoding of the first `dns=`
//! value (the `base64` crate's, padding stripped), so a client's message reaches the
//! handler byte for byte; an error has a reason to show the client.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sinkhole::server::doh::dns_param;

use crate::engine::{Shape, Target, Verdict, fuzz, sig};

/// The first `dns=` value, decoded independently, padding (`=` or `%3D`) dropped.
fn reference(query: &str) -> Option<Vec<u8>> {
    let v = query.split('&').find_map(|p| p.strip_prefix("dns="))?;
    let v = v.replace("%3D", "=").replace("%3d", "=");
    URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')).ok()
}

#[test]
fn doh_query() {
    let q = |m: &[u8]| URL_SAFE_NO_PAD.encode(m);
    // www.example.com A, ID 0 (RFC 8484's example), and a query with EDNS.
    let www = b"\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x07example\x03com\x00\x00\x01\x00\x01";
    let edns = b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\x03ads\x04test\x00\x00\x1c\x00\x01\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00";
    let seeds = vec![
        format!("dns={}", q(www)).into_bytes(),
        format!("ct=application/dns-message&dns={}==", q(edns)).into_bytes(),
        format!("dns={}%3D&x=1", q(edns)).into_bytes(),
    ];
    fuzz(
        Target {
            name: "doh_query",
            seeds,
            dict: [
                "dns=",
                "&",
                "=",
                "%3D",
                "-",
                "_",
                "+",
                "/",
                "AAAA",
                "dns=&dns=",
            ]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect(),
            max_len: 2048,
            shape: Shape::Text,
        },
        |b| -> Verdict {
            let text = String::from_utf8_lossy(b);
            match (dns_param(&text), reference(&text)) {
                (Ok(got), Some(want)) if got == want => Ok(sig(&[1, got.len().min(64) as u64])),
                (Ok(got), want) => Err(format!("accepted {got:?}, reference {want:?}")),
                (Err(""), _) => Err("an error without a reason".into()),
                (Err(why), _) => Ok(sig(&[2, why.len() as u64])),
            }
        },
    );
}
