//! `KnownKeys` alone: answers signed by keys the test makes, at times the test gives.

use super::*;
use hickory_resolver::proto::dnssec::crypto::EcdsaSigningKey;
use hickory_resolver::proto::dnssec::rdata::{NSEC, SigInput};
use hickory_resolver::proto::dnssec::{Algorithm, SigningKey};
use hickory_resolver::proto::op::OpCode;
use hickory_resolver::proto::rr::rdata::{A, CNAME};
use std::str::FromStr;

/// The tests' clock: a UNIX time well inside every signature's validity.
const NOW: u32 = 1_800_000_000;

fn n(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

/// A zone's key pair.
struct Zone {
    name: Name,
    key: EcdsaSigningKey,
    dnskey: DNSKEY,
}

impl Zone {
    fn new(name: &str) -> Self {
        let pkcs8 = EcdsaSigningKey::generate_pkcs8(Algorithm::ECDSAP256SHA256).unwrap();
        let key = EcdsaSigningKey::from_pkcs8(&pkcs8, Algorithm::ECDSAP256SHA256).unwrap();
        let dnskey = DNSKEY::from_key(&key.to_public_key().unwrap());
        Self {
            name: n(name),
            key,
            dnskey,
        }
    }

    /// The zone's DNSKEY record, marked with `proof` (as hickory's validator marks it).
    fn dnskey_record(&self, proof: Proof, ttl: u32) -> Record {
        let data = RData::DNSSEC(DNSSECRData::DNSKEY(self.dnskey.clone()));
        let mut r = Record::from_rdata(self.name.clone(), ttl, data);
        r.proof = proof;
        r
    }

    /// The signature of `set` (one owner, one type), made as if at `owner_labels` labels
    /// (fewer than the owner's for a wildcard's expansion), valid until `expires`.
    fn sign(&self, set: &[Record], labels: u8, expires: u32) -> Record {
        let first = set.first().unwrap();
        let input = SigInput {
            type_covered: first.record_type(),
            algorithm: Algorithm::ECDSAP256SHA256,
            num_labels: labels,
            original_ttl: 300,
            sig_expiration: SerialNumber::new(expires),
            sig_inception: SerialNumber::new(NOW - 86_400),
            key_tag: self.dnskey.calculate_key_tag().unwrap(),
            signer_name: self.name.clone(),
        };
        let tbs = TBS::from_input(&first.name, DNSClass::IN, &input, set.iter()).unwrap();
        let sig = self.key.sign(&tbs).unwrap();
        let data = RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, sig)));
        Record::from_rdata(first.name.clone(), 300, data)
    }

    /// `set` and its signature, signed as its own name.
    fn signed(&self, set: Vec<Record>) -> Vec<Record> {
        let labels = set.first().unwrap().name.num_labels();
        self.signed_as(set, labels, NOW + 3_600)
    }

    /// `set` and its signature, made as at `labels` labels, valid until `expires`.
    fn signed_as(&self, set: Vec<Record>, labels: u8, expires: u32) -> Vec<Record> {
        let sig = self.sign(&set, labels, expires);
        set.into_iter().chain([sig]).collect()
    }
}

fn a(name: &str, ttl: u32) -> Record {
    Record::from_rdata(n(name), ttl, RData::A(A::new(192, 0, 2, 1)))
}

fn answer(answers: Vec<Record>, authorities: Vec<Record>) -> Message {
    let mut m = Message::response(1, OpCode::Query);
    m.answers = answers;
    m.authorities = authorities;
    m
}

fn tag(z: &Zone) -> u16 {
    z.dnskey.calculate_key_tag().unwrap()
}

/// The owner of `m`'s first answer: the name asked.
fn qname(m: &Message) -> Name {
    m.answers
        .first()
        .map(|r| r.name.clone())
        .unwrap_or_else(Name::root)
}

/// A table that knows `zones`' keys.
fn knowing(zones: &[&Zone]) -> KnownKeys {
    let known = KnownKeys::new();
    for z in zones {
        known.learn(&z.name, &[z.dnskey_record(Proof::Secure, 3_600)], NOW);
    }
    known
}

#[test]
fn an_answer_signed_by_a_known_key_is_proven_and_its_signature_checked_once() {
    let zone = Zone::new("example.test.");
    let known = knowing(&[&zone]);
    let mut m = answer(zone.signed(vec![a("www.example.test.", 600)]), vec![]);
    assert!(known.prove(&qname(&m), RecordType::A, &mut m, NOW));
    assert!(m.answers.iter().all(|r| r.proof == Proof::Secure));
    // The TTL is cut to the signature's original TTL (300), not left at 600.
    assert_eq!(m.answers.first().unwrap().ttl, 300);
    assert_eq!(known.verifications(), 1);
    let mut again = answer(zone.signed(vec![a("www.example.test.", 600)]), vec![]);
    // ECDSA signatures differ each time they are made: the same one is handed again.
    again.answers = m.answers.clone();
    assert!(known.prove(&qname(&again), RecordType::A, &mut again, NOW));
    assert_eq!(known.verifications(), 1, "a signature verified before");
}

#[test]
fn what_cannot_be_proven_is_left_untouched() {
    let zone = Zone::new("example.test.");
    let other = Zone::new("other.test.");
    let known = knowing(&[&zone]);
    // Signed by a zone whose keys are not known.
    let mut m = answer(other.signed(vec![a("www.other.test.", 60)]), vec![]);
    let before = m.clone();
    assert!(!known.prove(&qname(&m), RecordType::A, &mut m, NOW));
    assert_eq!(m, before);
    assert!(m.answers.iter().all(|r| r.proof != Proof::Secure));
    // An address changed after signing.
    let mut forged = zone.signed(vec![a("www.example.test.", 60)]);
    forged.first_mut().unwrap().data = RData::A(A::new(203, 0, 113, 66));
    let mut m = answer(forged, vec![]);
    assert!(!known.prove(&qname(&m), RecordType::A, &mut m, NOW));
    assert!(m.answers.iter().all(|r| r.proof != Proof::Secure));
    // Not signed at all.
    let mut m = answer(vec![a("www.example.test.", 60)], vec![]);
    assert!(!known.prove(&qname(&m), RecordType::A, &mut m, NOW));
    // A signature signed by one zone's key but naming an unrelated zone as signer is not
    // taken: the signer must hold the name.
    let mut m = answer(zone.signed(vec![a("www.other.test.", 60)]), vec![]);
    assert!(!known.prove(&qname(&m), RecordType::A, &mut m, NOW));
    // A denial (no record of the type asked) goes to hickory's validator.
    let mut m = answer(zone.signed(vec![a("www.example.test.", 60)]), vec![]);
    assert!(!known.prove(&qname(&m), RecordType::AAAA, &mut m, NOW));
}

#[test]
fn an_expired_signature_or_key_proves_nothing() {
    let zone = Zone::new("example.test.");
    let known = knowing(&[&zone]);
    let signed = zone.signed_as(vec![a("www.example.test.", 60)], 3, NOW + 10);
    let mut m = answer(signed.clone(), vec![]);
    assert!(known.prove(&qname(&m), RecordType::A, &mut m, NOW));
    assert_eq!(m.answers.first().unwrap().ttl, 10, "cut to the time left");
    // The same signature, once verified, is not taken after it expired.
    let mut later = answer(signed, vec![]);
    assert!(!known.prove(&qname(&later), RecordType::A, &mut later, NOW + 11));
    // The keys were learned for 3,600 seconds.
    assert!(known.knows(&zone.name, tag(&zone), NOW + 3_599));
    assert!(!known.knows(&zone.name, tag(&zone), NOW + 3_600));
    let mut m = answer(zone.signed(vec![a("www.example.test.", 60)]), vec![]);
    assert!(!known.prove(&qname(&m), RecordType::A, &mut m, NOW + 3_600));
}

#[test]
fn only_keys_the_validator_proved_are_learned() {
    let zone = Zone::new("example.test.");
    let known = KnownKeys::new();
    for proof in [Proof::Insecure, Proof::Bogus, Proof::Indeterminate] {
        known.learn(&zone.name, &[zone.dnskey_record(proof, 3_600)], NOW);
        assert!(!known.knows(&zone.name, tag(&zone), NOW), "{proof:?}");
    }
    // Keys of another name than the zone's are not taken as its keys.
    let mut elsewhere = zone.dnskey_record(Proof::Secure, 3_600);
    elsewhere.name = n("sub.example.test.");
    known.learn(&zone.name, &[elsewhere], NOW);
    assert!(!known.knows(&zone.name, tag(&zone), NOW));
    known.learn(&zone.name, &[zone.dnskey_record(Proof::Secure, 3_600)], NOW);
    assert!(known.knows(&zone.name, tag(&zone), NOW));
}

/// `www.example.test.` CNAME `edge.cdn.test.` signed by `first`, and the A record at
/// `edge.cdn.test.` signed by `second`.
fn chain_across(first: &Zone, second: &Zone) -> Vec<Record> {
    let cname = Record::from_rdata(
        n("www.example.test."),
        60,
        RData::CNAME(CNAME(n("edge.cdn.test."))),
    );
    let mut records = first.signed(vec![cname]);
    records.extend(second.signed(vec![a("edge.cdn.test.", 60)]));
    records
}

#[test]
fn a_chain_across_zones_needs_every_zone_known() {
    let first = Zone::new("example.test.");
    let second = Zone::new("cdn.test.");
    let records = chain_across(&first, &second);
    let mut m = answer(records.clone(), vec![]);
    assert!(!knowing(&[&first]).prove(&qname(&m), RecordType::A, &mut m, NOW));
    let mut m = answer(records, vec![]);
    assert!(knowing(&[&first, &second]).prove(&qname(&m), RecordType::A, &mut m, NOW));
    assert!(m.answers.iter().all(|r| r.proof == Proof::Secure));
}

#[test]
fn a_wildcard_answer_needs_the_nsec_that_proves_it() {
    let zone = Zone::new("example.test.");
    let known = knowing(&[&zone]);
    // *.example.test. expanded for x.example.test.: signed at 2 labels.
    let expanded = zone.signed_as(vec![a("x.example.test.", 60)], 2, NOW + 3_600);
    let nsec = |owner: &str, next: &str| {
        let data = RData::DNSSEC(DNSSECRData::NSEC(NSEC::new(n(next), [RecordType::A])));
        zone.signed(vec![Record::from_rdata(n(owner), 60, data)])
    };
    let mut m = answer(expanded.clone(), vec![]);
    assert!(
        !known.prove(&qname(&m), RecordType::A, &mut m, NOW),
        "no NSEC"
    );
    // The NSEC after the wildcard covers x.example.test.: no closer name exists.
    let mut m = answer(expanded.clone(), nsec("*.example.test.", "z.example.test."));
    assert!(known.prove(&qname(&m), RecordType::A, &mut m, NOW));
    assert!(m.authorities.iter().all(|r| r.proof == Proof::Secure));
    // An NSEC that does not cover the name proves nothing.
    let mut m = answer(expanded.clone(), nsec("y.example.test.", "z.example.test."));
    assert!(!known.prove(&qname(&m), RecordType::A, &mut m, NOW));
    // Nor one of another zone, even a known one.
    let other = Zone::new("other.test.");
    let known_both = knowing(&[&zone, &other]);
    let data = RData::DNSSEC(DNSSECRData::NSEC(NSEC::new(
        n("z.example.test."),
        [RecordType::A],
    )));
    let foreign = Record::from_rdata(n("*.example.test."), 60, data);
    let sig = other.sign(std::slice::from_ref(&foreign), 2, NOW + 3_600);
    let mut m = answer(expanded, vec![foreign, sig]);
    assert!(!known_both.prove(&qname(&m), RecordType::A, &mut m, NOW));
}

#[test]
fn each_answer_tries_a_bounded_number_of_signatures() {
    let zone = Zone::new("example.test.");
    let known = knowing(&[&zone]);
    let set = vec![a("www.example.test.", 60)];
    // Twenty signatures by the zone's key tag that do not verify, then a good one.
    let good = zone.sign(&set, 3, NOW + 3_600);
    let mut records = set.clone();
    for _ in 0..20 {
        let mut bad = good.clone();
        if let RData::DNSSEC(DNSSECRData::RRSIG(s)) = &bad.data {
            let mut sig = s.sig().to_vec();
            if let Some(b) = sig.get_mut(10) {
                *b ^= 1;
            }
            bad.data = RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(s.input().clone(), sig)));
        }
        records.push(bad);
    }
    records.push(good);
    let mut m = answer(records, vec![]);
    assert!(!known.prove(&qname(&m), RecordType::A, &mut m, NOW));
    assert_eq!(known.verifications(), CHECKS_PER_ANSWER);
}

#[test]
fn a_full_table_makes_room_without_emptying() {
    let mut map: HashMap<u32, u32> = (0..64).map(|k| (k, 100)).collect();
    make_room(&mut map, 64, 50, |until| *until);
    assert_eq!(map.len(), 56, "an eighth goes when none expired");
    map.insert(1_000, 10);
    make_room(&mut map, 57, 50, |until| *until);
    assert!(!map.contains_key(&1_000), "the expired one goes first");
    assert_eq!(map.len(), 50, "then others, until an eighth is free");
    make_room(&mut map, 64, 50, |until| *until);
    assert_eq!(map.len(), 50, "room left: nothing goes");
}

#[test]
fn only_the_signature_that_proved_a_set_is_marked() {
    let zone = Zone::new("example.test.");
    let other = Zone::new("other.test.");
    let known = knowing(&[&zone]);
    let set = vec![a("www.example.test.", 60)];
    // A signature naming an unknown signer comes first; the zone's own proves the set.
    let mut stray = other.sign(&set, 3, NOW + 3_600);
    stray.name = n("www.example.test.");
    let good = zone.sign(&set, 3, NOW + 3_600);
    let mut m = answer(vec![set[0].clone(), stray, good], vec![]);
    assert!(known.prove(&qname(&m), RecordType::A, &mut m, NOW));
    let proofs: Vec<Proof> = m.answers.iter().map(|r| r.proof).collect();
    assert_eq!(
        proofs,
        [Proof::Secure, Proof::Indeterminate, Proof::Secure],
        "{m:?}"
    );
}

#[test]
fn keys_and_delegation_signers_are_left_to_hickory() {
    // Their proof runs from the parent's DS (or the trust anchor), not from a key the
    // zone itself signs with.
    let zone = Zone::new("example.test.");
    let known = knowing(&[&zone]);
    let key = zone.dnskey_record(Proof::Indeterminate, 60);
    let mut m = answer(zone.signed(vec![key]), vec![]);
    assert!(!known.prove(&qname(&m), RecordType::DNSKEY, &mut m, NOW));
    // A signature that claims fewer labels than its signer's name is not taken.
    let short = zone.signed_as(vec![a("www.example.test.", 60)], 1, NOW + 3_600);
    let mut m = answer(short, vec![]);
    assert!(!known.prove(&qname(&m), RecordType::A, &mut m, NOW));
}

#[test]
fn a_relay_proves_with_few_verifications_and_leaves_the_rest() {
    let first = Zone::new("example.test.");
    let second = Zone::new("cdn.test.");
    let known = knowing(&[&first, &second]);
    let records = chain_across(&first, &second);
    let mut m = answer(records.clone(), vec![]);
    let before = m.clone();
    let mut budget = 1;
    assert!(!known.prove_verifying(&qname(&m), RecordType::A, &mut m, NOW, &mut budget));
    assert_eq!(m, before, "untouched");
    assert_eq!(budget, 0, "spent, proven or not");
    // Two new signatures: one verified by the first try, one now; then both are known.
    let mut m = answer(records.clone(), vec![]);
    assert!(known.prove_verifying(&qname(&m), RecordType::A, &mut m, NOW, &mut 1));
    let mut m = answer(records, vec![]);
    let mut none = 0;
    assert!(known.prove_verifying(&qname(&m), RecordType::A, &mut m, NOW, &mut none));
    assert_eq!(known.verifications(), 2);
}
