//! What DNSSEC validation found for one answer, from the proofs hickory's validator marks
//! on each record (`Record::proof`), and, for a bogus answer, the Extended DNS Error that
//! says why (RFC 8914): the most precise code the answer itself shows, else 6.
//!
//! The validator (hickory's `DnssecDnsHandle`, behind the recursor or the forwarder) marks
//! every RRset secure, insecure, bogus or indeterminate; an answer is as strong as its
//! weakest RRset that answers the question: the answer section for data, the authority
//! section (SOA, NSEC, NSEC3) for a denial.

use hickory_resolver::proto::dnssec::Proof;
use hickory_resolver::proto::dnssec::rdata::{DNSSECRData, NSEC, RRSIG};
use hickory_resolver::proto::op::{Message, Query as HQuery, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

use super::UpstreamError;
use super::nsec::expansion_proven;
use crate::dns::wire::{
    EDE_DNSKEY_MISSING, EDE_DNSSEC_BOGUS, EDE_NSEC_MISSING, EDE_RRSIGS_MISSING,
    EDE_SIGNATURE_EXPIRED, Query, Security,
};

/// The security of an answer: its answer records, and for a denial (no record but aliases)
/// its authority records too; `nsec` is the proof of a denial the validator judged apart.
pub fn judge(answers: &[Record], authorities: &[Record], nsec: Option<Proof>) -> Security {
    let data = |rs: &'_ [Record]| -> Vec<Proof> {
        rs.iter()
            .filter(|r| r.record_type() != RecordType::RRSIG)
            .map(|r| r.proof)
            .collect()
    };
    let mut proofs = data(answers);
    // A denial, maybe reached through aliases: its proof counts too.
    let answered = answers.iter().any(|r| {
        !matches!(
            r.record_type(),
            RecordType::CNAME | RecordType::DNAME | RecordType::RRSIG
        )
    });
    if !answered {
        proofs.extend(data(authorities));
        proofs.extend(nsec);
    }
    if proofs.is_empty() {
        return Security::Indeterminate;
    }
    if proofs.contains(&Proof::Bogus) {
        Security::Bogus
    } else if proofs.iter().all(|p| *p == Proof::Secure) {
        Security::Secure
    } else if proofs.contains(&Proof::Insecure) {
        Security::Insecure
    } else {
        Security::Indeterminate
    }
}

/// Why an answer to `qname`/`qtype` is bogus: EDE 12 (NSEC Missing) for a denial
/// without NSEC or NSEC3, 10 (RRSIGs Missing) when the bogus RRset has no signature, 7
/// (Signature Expired) when every signature of it has expired at `now` (UNIX seconds), 6
/// (DNSSEC Bogus) otherwise; the text names the RRset and the zone.
pub fn bogus(
    qname: &Name,
    qtype: RecordType,
    rcode: ResponseCode,
    answers: &[Record],
    authorities: &[Record],
    now: u32,
) -> Bogus {
    let all = || answers.iter().chain(authorities);
    let sigs: Vec<(&Name, &RRSIG)> = all()
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(s)) => Some((&r.name, s)),
            _ => None,
        })
        .collect();
    let zone = |name: &Name| -> String {
        let soa = authorities
            .iter()
            .find(|r| r.record_type() == RecordType::SOA);
        sigs.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.input().signer_name.to_string())
            .or_else(|| soa.map(|r| r.name.to_string()))
            .unwrap_or_else(|| name.to_string())
    };
    let denial = answers.iter().all(|r| r.record_type() == RecordType::RRSIG)
        && matches!(rcode, ResponseCode::NXDomain | ResponseCode::NoError);
    let has_nsec = authorities
        .iter()
        .any(|r| matches!(r.record_type(), RecordType::NSEC | RecordType::NSEC3));
    if denial && !has_nsec {
        let z = zone(qname);
        return Bogus::new(
            EDE_NSEC_MISSING,
            format!(
                "DNSSEC bogus: no NSEC or NSEC3 proves the denial of {qname} {qtype} (zone {z})"
            ),
        );
    }
    let Some(bad) = all().find(|r| r.proof == Proof::Bogus && r.record_type() != RecordType::RRSIG)
    else {
        return Bogus::new(
            EDE_DNSSEC_BOGUS,
            format!("DNSSEC bogus: {qname} {qtype} (zone {})", zone(qname)),
        );
    };
    let (name, rtype) = (&bad.name, bad.record_type());
    let covering: Vec<&RRSIG> = sigs
        .iter()
        .filter(|(n, s)| *n == name && s.input().type_covered == rtype)
        .map(|(_, s)| *s)
        .collect();
    let z = zone(name);
    if covering.is_empty() {
        return Bogus::new(
            EDE_RRSIGS_MISSING,
            format!("DNSSEC bogus: no signature on {name} {rtype} (zone {z})"),
        );
    }
    // Serial-number arithmetic (RFC 4034 §3.1.5): expired when the expiration is behind now.
    let expired = |s: &RRSIG| (s.input().sig_expiration.get().wrapping_sub(now) as i32) < 0;
    if covering.iter().all(|s| expired(s)) {
        return Bogus::new(
            EDE_SIGNATURE_EXPIRED,
            format!("DNSSEC bogus: the signatures on {name} {rtype} have expired (zone {z})"),
        );
    }
    // In date and still bogus: the signature does not verify, or the key that made it is
    // not one the zone's DS vouches for; `settle` asks which.
    let signer = covering.first().map(|s| s.input().signer_name.clone());
    Bogus {
        signer,
        ..Bogus::new(
            EDE_DNSSEC_BOGUS,
            format!("DNSSEC bogus: the signature on {name} {rtype} does not verify (zone {z})"),
        )
    }
}

/// Why an answer is bogus, before it becomes the client's error.
#[derive(Debug)]
pub struct Bogus {
    /// The Extended DNS Error code.
    pub code: u16,
    /// Its text, naming the RRset and the zone.
    pub text: String,
    /// When an in-date signature did not verify: its signer, whose keys decide between
    /// EDE 6 and 9.
    pub signer: Option<Name>,
}

impl Bogus {
    fn new(code: u16, text: String) -> Self {
        Self {
            code,
            text,
            signer: None,
        }
    }
}

/// How the validator tells whether a zone's keys are vouched for (its DNSKEY set validates
/// from the trust anchors): the recursor, or the forwarder's validator.
pub(super) trait Keys {
    /// True when `zone`'s DNSKEY set is secure.
    async fn secure(&self, zone: &Name) -> bool;
}

/// Removes the DNSSEC records a client that did not set DO did not ask for (RFC 4035
/// §3.2.1): signatures, denials and keys, unless they are the question's type.
pub fn strip(msg: &mut Message, qtype: RecordType) {
    let extra = |r: &Record| {
        let t = r.record_type();
        t != qtype
            && matches!(
                t,
                RecordType::RRSIG
                    | RecordType::NSEC
                    | RecordType::NSEC3
                    | RecordType::DNSKEY
                    | RecordType::DS
            )
    };
    msg.answers.retain(|r| !extra(r));
    msg.authorities.retain(|r| !extra(r));
}

/// Settles a validated answer `msg` to `hq` (the client's query `q`): what validation
/// found, from its records and the denial's `nsec` proof; a bogus answer is the error the
/// client gets, unless it set CD; the DNSSEC records go for a client that did not set DO.
pub(super) async fn settle(
    hq: &HQuery,
    msg: &mut Message,
    nsec: Option<Proof>,
    q: &Query,
    keys: &impl Keys,
) -> Result<Security, UpstreamError> {
    // hickory 0.26 judges a wildcard-expanded answer of an NSEC zone bogus: it looks for an
    // NSEC covering the wildcard, where RFC 4035 §5.3.4 wants one covering the query name
    // (hickory-dns #3812, fixed after 0.26). Checked here instead.
    let nsec = match nsec {
        Some(Proof::Bogus) if wildcard_proven(msg) => Some(Proof::Secure),
        other => other,
    };
    let security = judge(&msg.answers, &msg.authorities, nsec);
    if security == Security::Bogus && !q.cd() {
        let b = bogus(
            &hq.name,
            hq.query_type,
            msg.metadata.response_code,
            &msg.answers,
            &msg.authorities,
            unix_now(),
        );
        return Err(match b.signer {
            // EDE 9: a DS existed at the parent, but no DNSKEY it vouches for signs the
            // zone (RFC 8914 §4.10).
            Some(z) if !keys.secure(&z).await => UpstreamError::Bogus(
                EDE_DNSKEY_MISSING,
                format!("DNSSEC bogus: no DNSKEY of {z} matches its DS in the parent (zone {z})"),
            ),
            _ => UpstreamError::Bogus(b.code, b.text),
        });
    }
    if !q.dnssec_ok() {
        strip(msg, hq.query_type);
    }
    Ok(security)
}

/// True when every wildcard expansion in the answer section (a secure RRset whose
/// verified RRSIG counts fewer labels than its owner) is proven by a secure NSEC of the
/// zone that signed it: the expanded name does not exist and no name closer to it than the
/// wildcard's parent does, so that wildcard applied (RFC 4035 §5.3.4,
/// `nsec::proves_expansion`). False when the answer has no expansion.
pub fn wildcard_proven(msg: &Message) -> bool {
    // Who signed `name`/`t`: the signer of the signature the validator verified it with.
    let signer_of = |records: &'_ [Record], name: &Name, t: RecordType| -> Option<Name> {
        records.iter().find_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(s))
                if r.proof == Proof::Secure && &r.name == name && s.input().type_covered == t =>
            {
                Some(s.input().signer_name.clone())
            }
            _ => None,
        })
    };
    let nsecs: Vec<(&Name, &NSEC, Name)> = msg
        .authorities
        .iter()
        .filter(|r| r.proof == Proof::Secure)
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::NSEC(n)) => {
                let signer = signer_of(&msg.authorities, &r.name, RecordType::NSEC)?;
                Some((&r.name, n, signer))
            }
            _ => None,
        })
        .collect();
    // An NSEC of the zone that signed the expansion proves it; another zone's proves
    // nothing of it.
    let proven = |name: &Name, encloser: &Name, signer: &Name| {
        let nsecs = nsecs.iter().map(|(owner, n, by)| (*owner, *n, by));
        expansion_proven(nsecs, name, encloser, signer)
    };
    let mut expanded = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(s))
                if r.proof == Proof::Secure && s.input().num_labels < r.name.num_labels() =>
            {
                let encloser = r.name.trim_to(usize::from(s.input().num_labels));
                Some((
                    &r.name,
                    s.input().type_covered,
                    encloser,
                    &s.input().signer_name,
                ))
            }
            _ => None,
        })
        .peekable();
    let secure = |name: &Name, t: RecordType| {
        let mut set = msg
            .answers
            .iter()
            .filter(|r| &r.name == name && r.record_type() == t)
            .peekable();
        set.peek().is_some() && set.all(|r| r.proof == Proof::Secure)
    };
    expanded.peek().is_some()
        && expanded
            .all(|(name, t, encloser, signer)| secure(name, t) && proven(name, &encloser, signer))
}

/// True when `records` hold a DNSKEY set and every key of it is secure.
pub fn keys_secure(records: &[Record]) -> bool {
    let mut keys = records
        .iter()
        .filter(|r| r.record_type() == RecordType::DNSKEY)
        .peekable();
    keys.peek().is_some() && keys.all(|r| r.proof == Proof::Secure)
}

/// Seconds since the UNIX epoch, as signatures count them.
pub fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::dnssec::Algorithm;
    use hickory_resolver::proto::dnssec::rdata::SigInput;
    use hickory_resolver::proto::rr::SerialNumber;
    use hickory_resolver::proto::rr::rdata::{A, SOA};
    use std::str::FromStr;

    fn n(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    fn a(proof: Proof) -> Record {
        let mut r = Record::from_rdata(n("www.example.test."), 60, RData::A(A::new(192, 0, 2, 1)));
        r.proof = proof;
        r
    }

    fn soa(proof: Proof) -> Record {
        let s = SOA::new(
            n("ns.example.test."),
            n("h.example.test."),
            1,
            60,
            60,
            60,
            60,
        );
        let mut r = Record::from_rdata(n("example.test."), 60, RData::SOA(s));
        r.proof = proof;
        r
    }

    fn rrsig(covered: RecordType, expires: u32) -> Record {
        let input = SigInput {
            type_covered: covered,
            algorithm: Algorithm::ECDSAP256SHA256,
            num_labels: 3,
            original_ttl: 60,
            sig_expiration: SerialNumber::new(expires),
            sig_inception: SerialNumber::new(expires.wrapping_sub(86_400)),
            key_tag: 12345,
            signer_name: n("example.test."),
        };
        let data = RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, vec![0; 64])));
        Record::from_rdata(n("www.example.test."), 60, data)
    }

    #[test]
    fn the_weakest_rrset_decides() {
        use Security::*;
        assert_eq!(judge(&[a(Proof::Secure)], &[], None), Secure);
        assert_eq!(
            judge(&[a(Proof::Secure), a(Proof::Insecure)], &[], None),
            Insecure
        );
        assert_eq!(
            judge(&[a(Proof::Secure), a(Proof::Bogus)], &[], None),
            Bogus
        );
        assert_eq!(judge(&[a(Proof::Indeterminate)], &[], None), Indeterminate);
        assert_eq!(
            judge(&[], &[soa(Proof::Secure)], Some(Proof::Secure)),
            Secure
        );
        assert_eq!(judge(&[], &[soa(Proof::Secure)], Some(Proof::Bogus)), Bogus);
        assert_eq!(judge(&[], &[], None), Indeterminate);
    }

    #[test]
    fn bogus_answers_get_the_most_precise_code() {
        let q = n("www.example.test.");
        // (code, text) for an A answer of `rcode` with `answers` and `authorities`, now 1000.
        let code = |rcode, answers: &[Record], authorities: &[Record]| {
            let b = bogus(&q, RecordType::A, rcode, answers, authorities, 1000);
            (b.code, b.text)
        };
        let (c, t) = code(ResponseCode::NoError, &[a(Proof::Bogus)], &[]);
        assert_eq!(c, EDE_RRSIGS_MISSING, "{t}");
        assert!(t.contains("www.example.test. A"), "{t}");
        let (c, t) = code(ResponseCode::NXDomain, &[], &[soa(Proof::Bogus)]);
        assert_eq!(c, EDE_NSEC_MISSING, "{t}");
        assert!(t.contains("zone example.test."), "{t}");
        // Signed, but every signature expired before now.
        let signed = [a(Proof::Bogus), rrsig(RecordType::A, 900)];
        let (c, t) = code(ResponseCode::NoError, &signed, &[]);
        assert_eq!(c, EDE_SIGNATURE_EXPIRED, "{t}");
        // Signed, in date, and still bogus: the signature does not verify.
        let signed = [a(Proof::Bogus), rrsig(RecordType::A, 2000)];
        let (c, t) = code(ResponseCode::NoError, &signed, &[]);
        assert_eq!(c, EDE_DNSSEC_BOGUS, "{t}");
        assert!(
            t.contains("does not verify") && t.contains("zone example.test."),
            "{t}"
        );
        // A signature on another type does not count.
        let other = [a(Proof::Bogus), rrsig(RecordType::AAAA, 2000)];
        let (c, _) = code(ResponseCode::NoError, &other, &[]);
        assert_eq!(c, EDE_RRSIGS_MISSING);
    }

    #[test]
    fn a_wildcard_answer_needs_the_closest_wildcard_proven() {
        use hickory_resolver::proto::op::OpCode;
        // A signature as the validator leaves it: verified (secure), by `signer`.
        let sig = |owner: &str, covered: RecordType, labels: u8, signer: &str| {
            let mut r = rrsig(covered, 2000);
            r.name = n(owner);
            r.proof = Proof::Secure;
            if let RData::DNSSEC(DNSSECRData::RRSIG(s)) = &r.data {
                let mut input = s.input().clone();
                input.num_labels = labels;
                input.signer_name = n(signer);
                r.data = RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, vec![0; 64])));
            }
            r
        };
        let nsec = |owner: &str, next: &str, signer: &str| {
            let data = RData::DNSSEC(DNSSECRData::NSEC(NSEC::new(n(next), [RecordType::A])));
            let mut r = Record::from_rdata(n(owner), 60, data);
            r.proof = Proof::Secure;
            let labels = r.name.num_labels();
            vec![r, sig(owner, RecordType::NSEC, labels, signer)]
        };
        // `name` answered from *.example.test. (signed at 2 labels by example.test.).
        let expanded = |name: &str| {
            let mut answer = a(Proof::Secure);
            answer.name = n(name);
            vec![answer, sig(name, RecordType::A, 2, "example.test.")]
        };
        let mut m = Message::response(1, OpCode::Query);
        // b.example.test. exists: its NSEC covers x.b.example.test., but the wildcard
        // for that name would be *.b.example.test., not *.example.test.
        m.answers = expanded("x.b.example.test.");
        m.authorities = nsec("b.example.test.", "z.example.test.", "example.test.");
        assert!(!wildcard_proven(&m));
        // No name under example.test. between the wildcard and z: *.example.test. is the
        // closest wildcard of x.example.test.
        m.answers = expanded("x.example.test.");
        m.authorities = nsec("*.example.test.", "z.example.test.", "example.test.");
        assert!(wildcard_proven(&m));
        // The same proof signed by another zone (say, one the attacker holds, whose owner
        // sorts before the name and whose next name after it) proves nothing.
        m.authorities = nsec("evil.other.", "z.example.test.", "other.");
        assert!(!wildcard_proven(&m));
        m.authorities = nsec("*.example.test.", "z.example.test.", "other.");
        assert!(!wildcard_proven(&m));
    }
}
