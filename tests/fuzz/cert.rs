//! Target `cert_der`: certificate bytes (what `server.tls_cert` names, read at start and on
//! every renewal) through the expiry reader `tls::der::not_after`, seeded with certificates
//! made by `cert self-signed` for several names and validity starts.
//!
//! Properties: never panics; the seeds read back their own `notAfter` (to the second),
//! and any input that reads gives a time after 1950 (the earliest UTCTime) and before 10000
//! (the latest GeneralizedTime).

use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use sinkhole::tls::der::not_after;
use sinkhole::tls::selfsigned;

use crate::engine::{Shape, Target, Verdict, fuzz, sig};

/// A certificate's DER and its `notAfter`, made for `name` as if at `at`.
fn made(name: &str, at: SystemTime) -> (Vec<u8>, SystemTime) {
    let s = selfsigned::generate(name, at).expect("self-signed pair");
    let der = CertificateDer::from_pem_slice(s.cert_pem.as_bytes()).expect("PEM certificate");
    (der.to_vec(), s.not_after)
}

#[test]
fn cert_der() {
    let day = Duration::from_secs(86_400);
    let made: Vec<_> = [
        ("dns.lan", SystemTime::now()),
        ("192.168.1.2", SystemTime::UNIX_EPOCH + 10_000 * day),
        (
            "resolver.example.org",
            SystemTime::UNIX_EPOCH + 30_000 * day,
        ),
    ]
    .iter()
    .map(|&(n, at)| made(n, at))
    .collect();
    for (der, want) in &made {
        let got = not_after(der).expect("our own certificate reads");
        let diff = got
            .duration_since(*want)
            .or_else(|e| Ok::<_, ()>(e.duration()));
        assert!(
            diff.unwrap() < Duration::from_secs(1),
            "{got:?} vs {want:?}"
        );
    }
    let low = SystemTime::UNIX_EPOCH - 20 * 365 * day;
    let high = SystemTime::UNIX_EPOCH + 8100 * 365 * day;
    fuzz(
        Target {
            name: "cert_der",
            seeds: made.into_iter().map(|(d, _)| d).collect(),
            dict: vec![
                vec![0x30, 0x82],
                vec![0x30, 0x81, 0x7f],
                vec![0x17, 0x0d],
                vec![0x18, 0x0f],
                b"491231235959Z".to_vec(),
                b"99991231235959Z".to_vec(),
                vec![0xa0, 0x03, 0x02, 0x01, 0x02],
                vec![0x80],
                vec![0xff; 4],
            ],
            max_len: 4096,
            shape: Shape::Text,
        },
        |b| -> Verdict {
            match not_after(b) {
                None => Ok(sig(&[0])),
                Some(t) if t < low || t > high => Err(format!("time out of range: {t:?}")),
                Some(t) => {
                    let secs = t.duration_since(low).map_or(0, |d| d.as_secs());
                    Ok(sig(&[1, secs / 86_400 % 16]))
                }
            }
        },
    );
}
