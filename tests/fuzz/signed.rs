//! Target `signed_answers`: signed answers, as DNSSEC validation's fast path reads them
//! (`pipeline::upstream::known_keys::KnownKeys::prove`, from a zone key it knows). Seeded
//! with answers signed by a fixed test key: a plain answer, a CNAME within the zone, a
//! wildcard's expansion with its NSEC, the same with the proof of another name, unsigned.
//!
//! Properties: never panics; an answer not proven is left as it was; in one proven, every
//! record of the answer and authority sections is marked secure, and each RRset carries a
//! signature marked secure that hickory-proto's own verification (`Verifier::verify_rrsig`)
//! accepts under the zone's key: nothing is taken that the key did not sign.

use hickory_proto::dnssec::crypto::EcdsaSigningKey;
use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, NSEC, RRSIG, SigInput};
use hickory_proto::dnssec::{Algorithm, Proof, SigningKey, TBS, Verifier};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, SerialNumber};
use sinkhole::pipeline::upstream::known_keys::KnownKeys;

use crate::engine::{Shape, Target, Verdict, fuzz, sig};

/// A P-256 key made for this target only (PKCS#8, DER): fixed, so that a failing input
/// replays under the same key.
const TEST_KEY: &str = concat!(
    "308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b02010104203df6b7c86e86d3d2872b3fe7773d557f5da39a8190f3b5c6512bcf9060d245fba144",
    "034200046f0b6cac9d3b668df38fa76949a8fb24dc22554879c3480fd0bef173d36bbece1badfd22f8a8314b671af25aa1c988fb5875fec78e12e3006ab2c281bb12b0cf",
);

/// The signatures' validity and the time of the checks (UNIX seconds).
const NOW: u32 = 1_800_000_000;

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap_or_else(|e| panic!("seed name {s:?}: {e}"))
}

fn key() -> EcdsaSigningKey {
    let der: Vec<u8> = (0..TEST_KEY.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&TEST_KEY[i..i + 2], 16).expect("hex"))
        .collect();
    EcdsaSigningKey::from_pkcs8(&der.into(), Algorithm::ECDSAP256SHA256).expect("the test key")
}

/// `set` signed by `key` for `zone` as if at `labels` labels.
fn signed(key: &EcdsaSigningKey, zone: &Name, set: Vec<Record>, labels: u8) -> Vec<Record> {
    let dnskey = DNSKEY::from_key(&key.to_public_key().expect("public key"));
    let first = set.first().expect("a set").clone();
    let input = SigInput {
        type_covered: first.record_type(),
        algorithm: Algorithm::ECDSAP256SHA256,
        num_labels: labels,
        original_ttl: 300,
        sig_expiration: SerialNumber::new(NOW + 86_400),
        sig_inception: SerialNumber::new(NOW - 86_400),
        key_tag: dnskey.calculate_key_tag().expect("key tag"),
        signer_name: zone.clone(),
    };
    let tbs = TBS::from_input(&first.name, DNSClass::IN, &input, set.iter()).expect("tbs");
    let s = key.sign(&tbs).expect("signature");
    let rrsig = RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, s)));
    let mut out = set;
    out.push(Record::from_rdata(first.name, 300, rrsig));
    out
}

fn a(owner: &str) -> Record {
    Record::from_rdata(name(owner), 300, RData::A(A::new(192, 0, 2, 1)))
}

fn nsec(owner: &str, next: &str) -> Record {
    let data = RData::DNSSEC(DNSSECRData::NSEC(NSEC::new(name(next), [RecordType::A])));
    Record::from_rdata(name(owner), 300, data)
}

fn seeds(key: &EcdsaSigningKey, zone: &Name) -> Vec<Vec<u8>> {
    let make = |qname: &str, answers: Vec<Record>, authorities: Vec<Record>| {
        let mut m = Message::new(0x4242, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(name(qname), RecordType::A));
        m.answers = answers;
        m.authorities = authorities;
        m.to_vec().unwrap_or_default()
    };
    let wild = |nsec_owner: &str, labels: u8| {
        let proof = nsec(nsec_owner, "z.example.test.");
        make(
            "x.example.test.",
            signed(key, zone, vec![a("x.example.test.")], 2),
            signed(key, zone, vec![proof], labels),
        )
    };
    let cname = Record::from_rdata(
        name("www.example.test."),
        300,
        RData::CNAME(CNAME(name("web.example.test."))),
    );
    let mut chain = signed(key, zone, vec![cname], 3);
    chain.extend(signed(key, zone, vec![a("web.example.test.")], 3));
    vec![
        make(
            "www.example.test.",
            signed(key, zone, vec![a("www.example.test.")], 3),
            vec![],
        ),
        make("www.example.test.", chain, vec![]),
        // The wildcard's expansion with the NSEC that proves it, then with one of another
        // name.
        wild("*.example.test.", 2),
        wild("y.example.test.", 3),
        make("www.example.test.", vec![a("www.example.test.")], vec![]),
    ]
}

#[test]
fn signed_answers() {
    let key = key();
    let zone = name("example.test.");
    let dnskey = DNSKEY::from_key(&key.to_public_key().expect("public key"));
    let mut record = Record::from_rdata(
        zone.clone(),
        3_600,
        RData::DNSSEC(DNSSECRData::DNSKEY(dnskey.clone())),
    );
    record.proof = Proof::Secure;
    let known = KnownKeys::new();
    known.learn(&zone, &[record], NOW);
    fuzz(
        Target {
            name: "signed_answers",
            seeds: seeds(&key, &zone),
            dict: [
                &b"\x07example\x04test\x00"[..],
                &b"\x01*\x07example\x04test\x00"[..],
                &[0, 46, 0, 1],
                &[0, 47, 0, 1],
                &[0, 5, 0, 1],
            ]
            .iter()
            .map(|s| s.to_vec())
            .collect(),
            max_len: 2048,
            shape: Shape::Dns,
        },
        |b| -> Verdict {
            let Ok(mut m) = Message::from_vec(b) else {
                return Ok(sig(&[0]));
            };
            let (qname, qtype) = m
                .queries
                .first()
                .map_or((Name::root(), RecordType::A), |q| {
                    (q.name().clone(), q.query_type())
                });
            let before = m.clone();
            if !known.prove(&qname, qtype, &mut m, NOW) {
                if m != before {
                    return Err("an answer not proven was changed".into());
                }
                return Ok(sig(&[1]));
            }
            for section in [&m.answers, &m.authorities] {
                for r in section
                    .iter()
                    .filter(|r| r.record_type() != RecordType::RRSIG)
                {
                    if r.proof != Proof::Secure {
                        return Err(format!(
                            "{} {} proven but not marked",
                            r.name,
                            r.record_type()
                        ));
                    }
                    let t = r.record_type();
                    let verified = section.iter().any(|s| match &s.data {
                        RData::DNSSEC(DNSSECRData::RRSIG(sig))
                            if s.proof == Proof::Secure
                                && s.name == r.name
                                && sig.input().type_covered == t =>
                        {
                            let set = section
                                .iter()
                                .filter(|x| x.name == r.name && x.record_type() == t);
                            dnskey.verify_rrsig(&r.name, DNSClass::IN, sig, set).is_ok()
                        }
                        _ => false,
                    });
                    if !verified {
                        return Err(format!(
                            "{} {} proven without a signature the key verifies",
                            r.name, t
                        ));
                    }
                }
            }
            Ok(sig(&[
                2,
                m.answers.len() as u64,
                m.authorities.len() as u64,
            ]))
        },
    );
}
