//! DNSSEC validation's fast path (`KnownKeys::prove`, issue 16), alone: a positive answer
//! (one A record and its ECDSA P-256 signature) of a zone whose key is known,
//! - `new_signature`: each answer signed afresh, so its signature is verified (ring's P-256
//!   verification, the signed data built, the checks of RFC 4035 §5.3.1);
//! - `seen_signature`: the same signed answer again, found among the verified signatures;
//! - `wildcard_seen`: a wildcard's expansion for a new name each time, with its NSEC, both
//!   signatures seen before (what the bench hierarchy's misses cost once warm).
//!
//! The answers are made before the timing; `verify` is what one new signature costs a miss
//! whatever the validator. `cargo bench --bench validation` (add `-- --quick`).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use hickory_proto::dnssec::crypto::EcdsaSigningKey;
use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, NSEC, RRSIG, SigInput};
use hickory_proto::dnssec::{Algorithm, Proof, SigningKey, TBS};
use hickory_proto::op::{Message, OpCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, SerialNumber};
use sinkhole::pipeline::upstream::known_keys::KnownKeys;

const NOW: u32 = 1_800_000_000;

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("name")
}

fn sign(key: &EcdsaSigningKey, tag: u16, set: &[Record], labels: u8) -> Record {
    let first = set.first().expect("a record");
    let input = SigInput {
        type_covered: first.record_type(),
        algorithm: Algorithm::ECDSAP256SHA256,
        num_labels: labels,
        original_ttl: 300,
        sig_expiration: SerialNumber::new(NOW + 86_400),
        sig_inception: SerialNumber::new(NOW - 86_400),
        key_tag: tag,
        signer_name: name("example.test."),
    };
    let tbs = TBS::from_input(&first.name, DNSClass::IN, &input, set.iter()).expect("tbs");
    let sig = key.sign(&tbs).expect("signature");
    let data = RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, sig)));
    Record::from_rdata(first.name.clone(), 300, data)
}

fn answer(answers: Vec<Record>, authorities: Vec<Record>) -> Message {
    let mut m = Message::response(1, OpCode::Query);
    m.answers = answers;
    m.authorities = authorities;
    m
}

fn bench(c: &mut Criterion) {
    let pkcs8 = EcdsaSigningKey::generate_pkcs8(Algorithm::ECDSAP256SHA256).expect("pkcs8");
    let key = EcdsaSigningKey::from_pkcs8(&pkcs8, Algorithm::ECDSAP256SHA256).expect("key");
    let dnskey = DNSKEY::from_key(&key.to_public_key().expect("public key"));
    let tag = dnskey.calculate_key_tag().expect("tag");
    let zone = name("example.test.");
    let mut record = Record::from_rdata(
        zone.clone(),
        3_600,
        RData::DNSSEC(DNSSECRData::DNSKEY(dnskey)),
    );
    record.proof = Proof::Secure;
    let known = KnownKeys::new();
    known.learn(&zone, &[record], NOW);
    let www = name("www.example.test.");
    let signed = |owner: &Name, labels: u8| {
        let set = vec![Record::from_rdata(
            owner.clone(),
            300,
            RData::A(A::new(192, 0, 2, 1)),
        )];
        let sig = sign(&key, tag, &set, labels);
        set.into_iter().chain([sig]).collect::<Vec<_>>()
    };

    let mut g = c.benchmark_group("validation");
    // Fresh signatures, made before the timing (ECDSA signing takes longer than
    // verifying), each proven once.
    g.bench_function("new_signature", |b| {
        b.iter_custom(|iters| {
            let fresh: Vec<Message> = (0..iters)
                .map(|_| answer(signed(&www, 3), vec![]))
                .collect();
            let start = std::time::Instant::now();
            for mut m in fresh {
                assert!(black_box(known.prove(&www, RecordType::A, &mut m, NOW)));
            }
            start.elapsed()
        })
    });
    let seen = answer(signed(&www, 3), vec![]);
    g.bench_function("seen_signature", |b| {
        b.iter_batched(
            || seen.clone(),
            |mut m| black_box(known.prove(&www, RecordType::A, &mut m, NOW)),
            BatchSize::SmallInput,
        )
    });
    // *.example.test.: one signature for every name, and the NSEC that proves it.
    let wild = signed(&name("x.example.test."), 2);
    let wild_sig = wild.last().cloned().expect("its signature");
    let nsec = Record::from_rdata(
        name("*.example.test."),
        300,
        RData::DNSSEC(DNSSECRData::NSEC(NSEC::new(
            name("z.example.test."),
            [RecordType::A],
        ))),
    );
    let nsec_sig = sign(&key, tag, std::slice::from_ref(&nsec), 2);
    let mut i = 0u64;
    g.bench_function("wildcard_seen", |b| {
        b.iter_batched(
            || {
                i += 1;
                let owner = name(&format!("m{i}.example.test."));
                let mut a = Record::from_rdata(owner.clone(), 300, RData::A(A::new(192, 0, 2, 1)));
                a.proof = Proof::Indeterminate;
                let mut s = wild_sig.clone();
                s.name = owner.clone();
                (
                    owner,
                    answer(vec![a, s], vec![nsec.clone(), nsec_sig.clone()]),
                )
            },
            |(owner, mut m)| black_box(known.prove(&owner, RecordType::A, &mut m, NOW)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
    assert!(known.verifications() > 0);
}

criterion_group!(benches, bench);
criterion_main!(benches);
