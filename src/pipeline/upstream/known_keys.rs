//! `KnownKeys`: the validation of an answer from zone keys already proven secure, each
//! signature checked once. hickory's validator (`validate.rs`) proves a zone's keys from
//! the trust anchors; once it has, the next answers signed by that zone are checked here:
//! each RRset's signature against the zone's keys (RFC 4035 §5.3), a wildcard's answer
//! against its NSEC (§5.3.4), TTLs cut to what the signature allows (§5.3.3).
//!
//! Why: hickory keys its verdicts by the question, so the same signature on the answers to
//! two names (a wildcard's, or the NSEC that proves it) is verified for each; an ECDSA
//! check costs more than the rest of a miss. Here a verified signature is kept, by its
//! key, the data it signed and the signature byte for byte, until it expires.
//!
//! Only a proof is made here, never a verdict against an answer: whatever cannot be proven
//! from what is known (an unknown zone, a denial, NSEC3, a DNAME, a bad signature) is left
//! to hickory's validator, which finds out why and says so. Both tables are bounded: when
//! full, the expired entries go, and if none had, an eighth of the others.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::dnssec::rdata::{DNSKEY, DNSSECRData, RRSIG};
use hickory_resolver::proto::dnssec::{Proof, PublicKey, TBS, Verifier};
use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::{DNSClass, Name, RData, Record, RecordType, SerialNumber};

use super::nsec::expansion_proven;

/// Zones whose keys are kept.
pub const KNOWN_ZONES: usize = 4_096;

/// Verified signatures kept.
pub const KNOWN_SIGNATURES: usize = 8_192;

/// The longest signature kept verified, with its key and the data it signed (bytes): an
/// answer's RRset signed with ECDSA takes 200 to 300, RSA-2048 some 500; a larger one is
/// verified each time. With [`KNOWN_SIGNATURES`], at most 8 MiB.
const MAX_KEPT_BYTES: usize = 1_024;

/// The longest a zone's keys are kept, whatever their TTL says (seconds).
const MAX_KEY_TTL: u32 = 86_400;

/// Keys kept per zone (a rollover has two or three).
const KEYS_PER_ZONE: usize = 8;

/// Signatures verified per answer, found or not: an answer with many signatures that
/// fail costs no more than this before it goes to hickory's validator.
const CHECKS_PER_ANSWER: usize = 8;

/// Signatures looked at per answer (their signed data built, their key looked up).
const SIGNATURES_PER_ANSWER: usize = 16;

/// Records in the answer and authority sections of an answer proven here; a longer one
/// goes to hickory's validator.
const MAX_RECORDS: usize = 64;

/// The longest public key kept (an RSA key of 4,096 bits takes 516 bytes).
const MAX_KEY_BYTES: usize = 1_024;

/// Zone keys proven secure, and the signatures they verified.
#[derive(Debug, Default)]
pub struct KnownKeys {
    zones: Mutex<HashMap<Name, ZoneKeys>>,
    verified: Mutex<HashMap<Box<[u8]>, u32>>,
    verifications: AtomicUsize,
}

/// One zone's keys, with their key tags, until a UNIX time.
#[derive(Debug)]
struct ZoneKeys {
    /// Shared, so that a check takes them out of the lock without copying a key.
    keys: Arc<[(u16, DNSKEY)]>,
    until: u32,
}

/// One RRset of an answer, proven: where its records are, what its signature allows, who
/// signed it, the signature's index in its section, and for a wildcard's expansion the
/// wildcard's parent.
struct Proven {
    section: Section,
    name: Name,
    rtype: RecordType,
    ttl: u32,
    signer: Name,
    sig: usize,
    expanded: Option<Name>,
}

#[derive(Clone, Copy, PartialEq)]
enum Section {
    Answer,
    Authority,
}

impl KnownKeys {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `zone`'s keys from `records` (a DNSKEY answer from hickory's validator): the
    /// zone keys it proved secure, not revoked, for their TTL (a day at most) from `now`
    /// (UNIX seconds). Nothing is kept when none was proven.
    pub fn learn(&self, zone: &Name, records: &[Record], now: u32) {
        let mut ttl = MAX_KEY_TTL;
        let mut keys = Vec::new();
        for r in records {
            let RData::DNSSEC(DNSSECRData::DNSKEY(k)) = &r.data else {
                continue;
            };
            if r.proof != Proof::Secure
                || &r.name != zone
                || !k.zone_key()
                || k.revoke()
                || !k.algorithm().is_supported()
                || k.public_key().public_bytes().len() > MAX_KEY_BYTES
            {
                continue;
            }
            let Ok(tag) = k.calculate_key_tag() else {
                continue;
            };
            ttl = ttl.min(r.ttl);
            if keys.len() < KEYS_PER_ZONE {
                keys.push((tag, k.clone()));
            }
        }
        if keys.is_empty() {
            return;
        }
        let until = now.saturating_add(ttl);
        let mut zones = lock(&self.zones);
        make_room(&mut zones, KNOWN_ZONES, now, |z| z.until);
        let keys = keys.into();
        zones.insert(zone.clone(), ZoneKeys { keys, until });
    }

    /// The signatures verified so far (those found verified before not counted).
    pub fn verifications(&self) -> usize {
        self.verifications.load(AtomicOrdering::Relaxed)
    }

    /// Whether the key of `zone` with `tag` is known at `now` (a zone whose keys changed
    /// is learned again when an answer signed by a new key is proven by hickory).
    pub fn knows(&self, zone: &Name, tag: u16, now: u32) -> bool {
        lock(&self.zones)
            .get(zone)
            .is_some_and(|z| now < z.until && z.keys.iter().any(|(t, _)| *t == tag))
    }

    /// Proves every RRset of `msg`, a NOERROR answer to `qname`/`qtype` whose chain of
    /// aliases from `qname` ends at `qtype` records, from known keys at `now`: each RRset
    /// of its answer and authority sections (as `validate::minimal` left them) verified by
    /// a key of its signer, each wildcard expansion proven by an NSEC of the same signer.
    /// On proof, every record and the signature that proved it are marked secure with
    /// their TTL cut to what that signature allows (as hickory marks them), and `true` is
    /// returned; otherwise `msg` is untouched. Keys and delegation signers (whose proof
    /// runs from the parent's DS, not the zone's own keys) are left to hickory.
    pub fn prove(&self, qname: &Name, qtype: RecordType, msg: &mut Message, now: u32) -> bool {
        self.prove_verifying(qname, qtype, msg, now, &mut CHECKS_PER_ANSWER.clone())
    }

    /// [`KnownKeys::prove`] spending at most `budget` signature verifications (one verified
    /// before costs nothing; what is spent is taken off, proven or not): a UDP thread's
    /// relay proves with few, so that answers that need more do not hold up the thread's
    /// other clients.
    pub fn prove_verifying(
        &self,
        qname: &Name,
        qtype: RecordType,
        msg: &mut Message,
        now: u32,
        budget: &mut usize,
    ) -> bool {
        let mut spend = Budget {
            most: (*budget).min(CHECKS_PER_ANSWER),
            ..Budget::default()
        };
        let proven = self.proven(qname, qtype, msg, now, &mut spend);
        *budget = budget.saturating_sub(spend.verifications);
        let Some(proven) = proven else {
            return false;
        };
        for p in proven {
            let records = match p.section {
                Section::Answer => &mut msg.answers,
                Section::Authority => &mut msg.authorities,
            };
            for (i, r) in records.iter_mut().enumerate() {
                if i == p.sig || (r.record_type() == p.rtype && r.name == p.name) {
                    r.ttl = r.ttl.min(p.ttl);
                    r.proof = Proof::Secure;
                }
            }
        }
        true
    }

    /// Every RRset of `msg` proven, or `None`.
    fn proven(
        &self,
        qname: &Name,
        qtype: RecordType,
        msg: &Message,
        now: u32,
        budget: &mut Budget,
    ) -> Option<Vec<Proven>> {
        let small = msg.answers.len() + msg.authorities.len() <= MAX_RECORDS;
        let positive = msg.metadata.response_code == ResponseCode::NoError
            && !matches!(
                qtype,
                RecordType::ANY | RecordType::RRSIG | RecordType::CNAME
            )
            && answers_to(qname, qtype, &msg.answers);
        if !small || !positive || !msg.additionals.is_empty() {
            return None;
        }
        let mut proven = Vec::new();
        for (section, records) in [
            (Section::Answer, &msg.answers),
            (Section::Authority, &msg.authorities),
        ] {
            for (name, rtype) in rrsets(records) {
                if matches!(
                    rtype,
                    RecordType::DNAME | RecordType::DNSKEY | RecordType::DS
                ) {
                    return None;
                }
                let set: Vec<&Record> = records
                    .iter()
                    .filter(|r| &r.name == name && r.record_type() == rtype)
                    .collect();
                if set.iter().any(|r| r.dns_class != DNSClass::IN) {
                    return None;
                }
                let (at, sig) = records
                    .iter()
                    .enumerate()
                    .find_map(|(i, r)| match &r.data {
                        RData::DNSSEC(DNSSECRData::RRSIG(s))
                            if &r.name == name
                                && s.input().type_covered == rtype
                                && r.dns_class == DNSClass::IN =>
                        {
                            self.check(name, s, &set, now, budget).then_some((i, s))
                        }
                        _ => None,
                    })?;
                let input = sig.input();
                let expanded = (input.num_labels < name.num_labels())
                    .then(|| name.trim_to(usize::from(input.num_labels)));
                proven.push(Proven {
                    section,
                    name: name.clone(),
                    rtype,
                    ttl: authenticated_ttl(sig, &set, now),
                    signer: input.signer_name.clone(),
                    sig: at,
                    expanded,
                });
            }
        }
        // The NSECs proven above, with who signed each.
        let nsecs = || {
            msg.authorities.iter().filter_map(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::NSEC(n)) => proven
                    .iter()
                    .find(|p| {
                        p.section == Section::Authority
                            && p.rtype == RecordType::NSEC
                            && p.name == r.name
                    })
                    .map(|p| (&r.name, n, &p.signer)),
                _ => None,
            })
        };
        let nsec_proves = |name: &Name, encloser: &Name, signer: &Name| {
            expansion_proven(nsecs(), name, encloser, signer)
        };
        let all_proven = proven.iter().all(|p| {
            p.expanded
                .as_ref()
                .is_none_or(|encloser| nsec_proves(&p.name, encloser, &p.signer))
        });
        all_proven.then_some(proven)
    }

    /// Whether `sig` over `set` (at `name`) is valid at `now` and verified by a known key
    /// of its signer: RFC 4035 §5.3.1's checks, then the signature, unless it was verified
    /// before. Spends `budget`.
    fn check(
        &self,
        name: &Name,
        sig: &RRSIG,
        set: &[&Record],
        now: u32,
        budget: &mut Budget,
    ) -> bool {
        if budget.signatures >= SIGNATURES_PER_ANSWER {
            return false;
        }
        budget.signatures += 1;
        let input = sig.input();
        let now_serial = SerialNumber::new(now);
        let at_or_before = |a: SerialNumber, b: SerialNumber| {
            matches!(a.partial_cmp(&b), Some(Ordering::Less | Ordering::Equal))
        };
        if !input.signer_name.zone_of(name)
            || input.num_labels > name.num_labels()
            || input.num_labels < input.signer_name.num_labels()
            || !at_or_before(now_serial, input.sig_expiration)
            || !at_or_before(input.sig_inception, now_serial)
        {
            return false;
        }
        let keys = {
            let zones = lock(&self.zones);
            let Some(z) = zones.get(&input.signer_name).filter(|z| now < z.until) else {
                return false;
            };
            Arc::clone(&z.keys)
        };
        let mut keys = keys
            .iter()
            .filter(|(tag, k)| *tag == input.key_tag && k.algorithm() == input.algorithm)
            .map(|(_, k)| k)
            .peekable();
        if keys.peek().is_none() {
            return false;
        }
        let Ok(tbs) = TBS::from_input(name, DNSClass::IN, input, set.iter().copied()) else {
            return false;
        };
        let mut entry = Kept::new();
        for key in keys {
            let kept = kept_as(key, tbs.as_ref(), sig.sig(), &mut entry);
            if kept && lock(&self.verified).contains_key(entry.as_slice()) {
                return true;
            }
            if budget.verifications >= budget.most {
                return false;
            }
            budget.verifications += 1;
            self.verifications.fetch_add(1, AtomicOrdering::Relaxed);
            if key.verify(tbs.as_ref(), sig.sig()).is_ok() {
                if kept {
                    let mut verified = lock(&self.verified);
                    make_room(&mut verified, KNOWN_SIGNATURES, now, |until| *until);
                    verified.insert(Box::from(entry.as_slice()), input.sig_expiration.get());
                }
                return true;
            }
        }
        false
    }
}

/// What one answer may cost: signatures looked at, and verified (of at most `most`).
#[derive(Default)]
struct Budget {
    signatures: usize,
    verifications: usize,
    most: usize,
}

/// Whether the aliases in `answers` lead from `qname` to records of `qtype` (a chain of
/// at most 16 links).
fn answers_to(qname: &Name, qtype: RecordType, answers: &[Record]) -> bool {
    let mut name = qname;
    for _ in 0..=16 {
        if answers
            .iter()
            .any(|r| r.record_type() == qtype && &r.name == name)
        {
            return true;
        }
        let next = answers.iter().find_map(|r| match &r.data {
            RData::CNAME(c) if &r.name == name => Some(&c.0),
            _ => None,
        });
        match next {
            Some(target) => name = target,
            None => return false,
        }
    }
    false
}

/// The (name, type) of each RRset among `records`, signatures aside, in order.
fn rrsets(records: &[Record]) -> Vec<(&Name, RecordType)> {
    let mut sets: Vec<(&Name, RecordType)> = Vec::new();
    for r in records {
        let t = r.record_type();
        if t != RecordType::RRSIG && !sets.iter().any(|(n, st)| *st == t && *n == &r.name) {
            sets.push((&r.name, t));
        }
    }
    sets
}

/// The TTL `sig` allows `set` at `now` (RFC 4035 §5.3.3): the least of the records' TTL,
/// the signature's original TTL and the time left before it expires.
fn authenticated_ttl(sig: &RRSIG, set: &[&Record], now: u32) -> u32 {
    set.iter()
        .map(|r| sig.authenticated_ttl(r, now))
        .min()
        .unwrap_or(0)
}

/// How a verified signature is kept: the key's algorithm and public key, the data it
/// signed and the signature, each with its length, written into `out` on the stack (a
/// look-up allocates nothing); false when over [`MAX_KEPT_BYTES`].
fn kept_as(key: &DNSKEY, tbs: &[u8], sig: &[u8], out: &mut Kept) -> bool {
    let public = key.public_key().public_bytes();
    let len = 1 + 3 * 2 + public.len() + tbs.len() + sig.len();
    if len > MAX_KEPT_BYTES {
        return false;
    }
    out.clear();
    out.push(u8::from(key.algorithm()));
    for part in [public, tbs, sig] {
        // Each part is shorter than MAX_KEPT_BYTES, checked above.
        let part_len = u16::try_from(part.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&part_len.to_be_bytes());
        out.extend_from_slice(part);
    }
    true
}

/// A verified signature's entry being looked up ([`kept_as`]).
type Kept = smallvec::SmallVec<[u8; MAX_KEPT_BYTES]>;

/// Room in `map` (of at most `cap`): when full, the entries expired at `now` go, then
/// others until an eighth of `cap` is free, so that a table full of live entries is not
/// swept again at the next insert.
fn make_room<K, V>(map: &mut HashMap<K, V>, cap: usize, now: u32, until: impl Fn(&V) -> u32) {
    if map.len() < cap {
        return;
    }
    map.retain(|_, v| now < until(v));
    let mut extra = map.len().saturating_sub(cap - cap / 8);
    map.retain(|_, _| {
        let keep = extra == 0;
        extra = extra.saturating_sub(1);
        keep
    });
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
#[path = "known_keys_tests.rs"]
mod tests;
