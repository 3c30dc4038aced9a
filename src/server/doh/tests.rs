//! Unit tests of DNS over HTTPS's request side: the `dns` parameter, the content type,
//! the freshness lifetime of answers, and the replies' headers.

use super::*;

/// `www.example.test. IN A` with ID 0xabcd, as a stub sends it.
fn query() -> Vec<u8> {
    let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in ["www", "example", "test"] {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

#[test]
fn dns_param_decodes_base64url_with_or_without_padding() {
    // RFC 8484 §4.1.1's example: `www.example.com IN A`, ID 0.
    let rfc = "AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB";
    let msg = dns_param(&format!("dns={rfc}")).unwrap();
    assert_eq!(msg.len(), 33);
    assert_eq!(&msg[13..16], b"www");
    let q = query();
    let b64 = base64::engine::general_purpose::URL_SAFE.encode(&q);
    assert!(b64.ends_with('='), "{b64}: the test needs padding");
    let bare = b64.trim_end_matches('=');
    for v in [
        bare.to_string(),
        b64.clone(),
        b64.replace('=', "%3D"),
        b64.replace('=', "%3d"),
    ] {
        assert_eq!(dns_param(&format!("dns={v}")).unwrap(), q, "{v}");
    }
    // Other parameters around it (RFC 8484 allows them); the first `dns` wins.
    assert_eq!(dns_param(&format!("ct=x&dns={bare}&dns=AAAA")).unwrap(), q);
    // URL-safe alphabet: `-` and `_`, never `+` and `/`.
    assert_eq!(dns_param("dns=-_8").unwrap(), vec![0xfb, 0xff]);
    assert!(dns_param("dns=+/8").is_err());
}

#[test]
fn dns_param_errors_say_why() {
    assert!(dns_param("").unwrap_err().contains("no dns parameter"));
    assert!(
        dns_param("name=x")
            .unwrap_err()
            .contains("no dns parameter")
    );
    assert!(dns_param("dns=").unwrap_err().contains("empty"));
    assert!(dns_param("dns==").unwrap_err().contains("empty"));
    assert!(dns_param("dns=%%%").unwrap_err().contains("not base64url"));
    assert!(dns_param("dns=A").unwrap_err().contains("not base64url"));
    assert!(dns_param("dns=é").is_err());
}

#[test]
fn content_type_is_matched_without_parameters_or_case() {
    for ok in [
        "application/dns-message",
        "Application/DNS-Message",
        "application/dns-message; charset=x",
    ] {
        assert!(is_dns_message(&HeaderValue::from_static(ok)), "{ok}");
    }
    for bad in ["application/dns-json", "text/plain", "", "application/dns"] {
        assert!(!is_dns_message(&HeaderValue::from_static(bad)), "{bad}");
    }
}

/// An answer to [`query`] with `answers` A records (name compressed) of the TTLs
/// given, and `rcode`.
fn answer(rcode: u8, ttls: &[u32]) -> Vec<u8> {
    let mut m = query();
    m[2] |= 0x80;
    m[3] = 0x80 | rcode;
    m[7] = ttls.len() as u8;
    for &t in ttls {
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        m.extend_from_slice(&t.to_be_bytes());
        m.extend_from_slice(&[0, 4, 192, 0, 2, 1]);
    }
    m
}

/// A negative answer with an SOA in the authority section (TTL `ttl`, MINIMUM `min`).
fn negative(rcode: u8, ttl: u32, min: u32) -> Vec<u8> {
    let mut m = answer(rcode, &[]);
    m[9] = 1;
    m.extend_from_slice(&[7, b'e', b'x', b'a', b'm', b'p', b'l', b'e']);
    m.extend_from_slice(&[4, b't', b'e', b's', b't', 0, 0, 6, 0, 1]);
    m.extend_from_slice(&ttl.to_be_bytes());
    let mut rdata = vec![0xc0, 12, 0xc0, 12];
    for v in [1u32, 7200, 900, 1_209_600, min] {
        rdata.extend_from_slice(&v.to_be_bytes());
    }
    m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    m.extend_from_slice(&rdata);
    m
}

#[test]
fn max_age_is_the_smallest_answer_ttl() {
    assert_eq!(max_age(&answer(0, &[300])), Some(300));
    assert_eq!(max_age(&answer(0, &[300, 59, 3600])), Some(59));
    assert_eq!(max_age(&answer(0, &[0])), Some(0));
    // RFC 2181 §8: the top bit set means 0.
    assert_eq!(max_age(&answer(0, &[0x8000_0001, 300])), Some(0));
}

#[test]
fn max_age_of_a_negative_answer_is_its_soa_minimum() {
    assert_eq!(max_age(&negative(3, 3600, 300)), Some(300));
    assert_eq!(max_age(&negative(0, 60, 300)), Some(60));
}

#[test]
fn no_max_age_for_errors_empty_answers_and_junk() {
    assert_eq!(max_age(&answer(2, &[])), None, "SERVFAIL");
    assert_eq!(max_age(&answer(5, &[300])), None, "REFUSED");
    assert_eq!(max_age(&answer(1, &[])), None, "FORMERR");
    assert_eq!(max_age(&answer(0, &[])), None, "NODATA without SOA");
    assert_eq!(max_age(&answer(3, &[])), None, "NXDOMAIN without SOA");
    // Truncated anywhere, or a bad label: no lifetime, no panic.
    let full = answer(0, &[300, 60]);
    for n in 0..full.len() {
        assert_eq!(max_age(&full[..n]), None, "cut at {n}");
    }
    let mut bad = answer(0, &[300]);
    bad[12] = 0x80;
    assert_eq!(max_age(&bad), None);
    assert_eq!(max_age(&[]), None);
}

#[test]
fn replies_carry_type_and_cache_control() {
    let r = dns_reply(answer(0, &[42]));
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], DNS_MESSAGE);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "max-age=42");
    let r = dns_reply(answer(2, &[]));
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    let r = error(StatusCode::NOT_FOUND, "x");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
}
