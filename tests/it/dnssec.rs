//! DNSSEC validation in recursive mode, against a signed hierarchy of the test's own on
//! loopback (`127.53.61.x` and `127.53.62.x` port 53): a root, the TLD `test.` and zones below it, each an
//! in-process hickory-server signing its zone with a key the test made (ECDSA P-256), with
//! NSEC (or NSEC3) denials. sinkhole starts from the test root's key
//! (`upstream.trust_anchor`) and the test root (`upstream.root_hints`).
//!
//! The same tree answers unbound in `differential.rs` (the signed rows).
//!
//! Zones below `test.`: `example.test.` (secure, NSEC), `nsec3.test.` (secure, NSEC3),
//! `bad.test.` (the DS in `test.` is of another key: bogus, EDE 9), `forged.test.` (an
//! address changed after signing: bogus, EDE 6), `expired.test.` (signatures
//! valid for one second: expired by the time they are checked), `unsigned.test.` (no DS:
//! insecure).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::dnssec::crypto::EcdsaSigningKey;
use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, DS};
use hickory_proto::dnssec::{Algorithm, DigestType, DnssecSigner, Nsec3HashAlgorithm, SigningKey};
use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, NS};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::dnssec::NxProofKind;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, MessageResponseBuilder, ZoneType};
use tokio::net::UdpSocket;

use crate::harness::{TestServer, ede};
use crate::hierarchy::{apex, hints, ip, name, serve};
use crate::querylog::records;

const TTL: u32 = 300;

/// A zone's signing key.
struct Key {
    signer: DnssecSigner,
    dnskey: DNSKEY,
}

fn key(zone: &Name, valid_for: Duration) -> Key {
    let pkcs8 = EcdsaSigningKey::generate_pkcs8(Algorithm::ECDSAP256SHA256).unwrap();
    let k = EcdsaSigningKey::from_pkcs8(&pkcs8, Algorithm::ECDSAP256SHA256).unwrap();
    let dnskey = DNSKEY::from_key(&k.to_public_key().unwrap());
    Key {
        signer: DnssecSigner::new(dnskey.clone(), Box::new(k), zone.clone(), valid_for),
        dnskey,
    }
}

fn ds(zone: &Name, k: &DNSKEY) -> Record {
    let digest = k.to_digest(zone, DigestType::SHA256).unwrap();
    let ds = DS::new(
        k.calculate_key_tag().unwrap(),
        Algorithm::ECDSAP256SHA256,
        DigestType::SHA256,
        digest.as_ref().to_vec(),
    );
    Record::from_rdata(zone.clone(), TTL, RData::DNSSEC(DNSSECRData::DS(ds)))
}

/// A delegation of `zone` to `ns.<zone>` at `addr`, with a DS of `key` when signed.
fn delegate(zone: &str, addr: Ipv4Addr, key: Option<&DNSKEY>) -> Vec<Record> {
    let z = name(zone);
    let ns = name(&format!("ns.{zone}"));
    let mut v = vec![
        Record::from_rdata(z.clone(), TTL, RData::NS(NS(ns.clone()))),
        Record::from_rdata(ns, TTL, RData::A(A(addr))),
    ];
    v.extend(key.map(|k| ds(&z, k)));
    v
}

fn a(n: &str, addr: &str) -> Record {
    Record::from_rdata(name(n), TTL, RData::A(A(addr.parse().unwrap())))
}

/// A signed zone served on `addr:53`; stops on drop. hickory signs it (RRSIGs, the NSEC or
/// NSEC3 chain); the answers are ours, as an authoritative server writes them: hickory
/// 0.26's own zone handler sets AA on referrals and leaves out their glue.
struct Signed {
    _server: Server<SignedZone>,
}

impl Signed {
    async fn start(
        origin: &str,
        addr: Ipv4Addr,
        key: Key,
        proof: NxProofKind,
        records: Vec<Record>,
    ) -> Self {
        let o = name(origin);
        let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
            o.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
            Some(proof),
        );
        let mut all = apex(origin, addr);
        all.extend(records);
        for r in all {
            assert!(zone.upsert_mut(r, 1));
        }
        zone.add_zone_signing_key_mut(key.signer).unwrap();
        zone.secure_zone_mut().unwrap();
        let mut signed = Vec::new();
        for set in zone.records_get_mut().values() {
            signed.extend(set.records_without_rrsigs().cloned());
            signed.extend(set.rrsigs().iter().cloned());
        }
        // `forged.test.`: an address changed after signing (its signature no longer
        // verifies, under a key the DS vouches for).
        if origin == "forged.test." {
            for r in signed
                .iter_mut()
                .filter(|r| r.record_type() == RecordType::A)
            {
                if r.name == name("www.forged.test.") {
                    r.data = RData::A(A([192, 0, 2, 99].into()));
                }
            }
        }
        let server = serve(
            addr,
            SignedZone {
                origin: o,
                records: signed,
            },
        )
        .await;
        Self { _server: server }
    }
}

/// One signed zone's records, answered as an authoritative server does.
struct SignedZone {
    origin: Name,
    records: Vec<Record>,
}

fn is_sig(r: &Record) -> bool {
    r.record_type() == RecordType::RRSIG
}

fn covers(r: &Record, name: &Name, t: RecordType) -> bool {
    match &r.data {
        RData::DNSSEC(DNSSECRData::RRSIG(s)) => &r.name == name && s.input().type_covered == t,
        _ => false,
    }
}

impl SignedZone {
    /// The RRset `name`/`t`, with its signatures when `dnssec_ok`.
    fn rrset(&self, name: &Name, t: RecordType, dnssec_ok: bool) -> Vec<Record> {
        self.records
            .iter()
            .filter(|r| {
                (!is_sig(r) && &r.name == name && r.record_type() == t)
                    || (dnssec_ok && covers(r, name, t))
            })
            .cloned()
            .collect()
    }

    /// Every NSEC or NSEC3 of the zone with its signatures: more than a denial needs, and
    /// the validator finds the ones that prove it.
    fn denials(&self) -> Vec<Record> {
        let mut v = Vec::new();
        for r in self
            .records
            .iter()
            .filter(|r| matches!(r.record_type(), RecordType::NSEC | RecordType::NSEC3))
        {
            v.push(r.clone());
            v.extend(
                self.rrset(&r.name, r.record_type(), true)
                    .into_iter()
                    .filter(is_sig),
            );
        }
        v
    }

    fn answer(&self, qname: &Name, qtype: RecordType, dnssec_ok: bool) -> Message {
        let mut m = Message::query();
        let cut = self
            .records
            .iter()
            .filter(|r| {
                r.record_type() == RecordType::NS && r.name != self.origin && r.name.zone_of(qname)
            })
            .map(|r| r.name.clone())
            .max_by_key(|n| n.num_labels());
        if let Some(cut) = cut.filter(|c| !(qtype == RecordType::DS && c == qname)) {
            // A referral: the NS set (unsigned, it is the child's), the DS or the NSEC that
            // proves there is none, the glue.
            m.authorities = self.rrset(&cut, RecordType::NS, false);
            let ds = self.rrset(&cut, RecordType::DS, dnssec_ok);
            if ds.is_empty() && dnssec_ok {
                m.authorities
                    .extend(self.rrset(&cut, RecordType::NSEC, true));
            }
            m.authorities.extend(ds);
            for r in self.rrset(&cut, RecordType::NS, false) {
                if let RData::NS(NS(target)) = &r.data {
                    m.additionals
                        .extend(self.rrset(target, RecordType::A, false));
                }
            }
            return m;
        }
        m.metadata.authoritative = true;
        let found = self.rrset(qname, qtype, dnssec_ok);
        if !found.is_empty() {
            m.answers = found;
            return m;
        }
        let exists = self.records.iter().any(|r| {
            qname.zone_of(&r.name)
                && !matches!(r.record_type(), RecordType::NSEC3 | RecordType::RRSIG)
        });
        // A wildcard at the parent answers a name that does not exist (RFC 4592): its
        // records and signatures, renamed; the NSECs prove there was no closer name.
        // Another type of a wildcard's name: NODATA, as for a name that exists.
        let wildcard = qname.base_name().prepend_label("*").unwrap();
        let wild = self
            .records
            .iter()
            .any(|r| r.name == wildcard && !is_sig(r));
        if !exists && wild {
            let expanded = self.rrset(&wildcard, qtype, dnssec_ok);
            let renamed = expanded.into_iter().map(|mut r| {
                r.name = qname.clone();
                r
            });
            m.answers = renamed.collect();
            if m.answers.is_empty() {
                m.authorities = self.rrset(&self.origin, RecordType::SOA, dnssec_ok);
            }
            if dnssec_ok {
                m.authorities.extend(self.denials());
            }
            return m;
        }
        if !exists {
            m.metadata.response_code = ResponseCode::NXDomain;
        }
        m.authorities = self.rrset(&self.origin, RecordType::SOA, dnssec_ok);
        if dnssec_ok {
            m.authorities.extend(self.denials());
        }
        m
    }
}

#[async_trait::async_trait]
impl RequestHandler for SignedZone {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let parsed = Message::from_vec(request.as_slice()).ok();
        let dnssec_ok = parsed
            .as_ref()
            .and_then(|m| m.edns.as_ref())
            .is_some_and(|e| e.flags().dnssec_ok);
        let m = match parsed.and_then(|m| m.queries.first().cloned()) {
            Some(q) => self.answer(&q.name().to_lowercase(), q.query_type(), dnssec_ok),
            None => {
                let mut m = Message::query();
                m.metadata.response_code = ResponseCode::FormErr;
                m
            }
        };
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = m.metadata.authoritative;
        metadata.response_code = m.metadata.response_code;
        metadata.recursion_available = false;
        let edns = request.edns.as_ref().map(|_| {
            let mut e = Edns::new();
            e.set_max_payload(1232)
                .set_version(0)
                .set_dnssec_ok(dnssec_ok);
            e
        });
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            metadata,
            m.answers.iter(),
            m.authorities.iter(),
            [],
            m.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => panic!("test authority: cannot send: {e}"),
        }
    }
}

/// The whole signed hierarchy, and the root's trust anchor line.
pub(crate) struct Tree {
    _zones: Vec<Signed>,
    /// The root's DNSKEY, one zone-file line.
    pub(crate) anchor: String,
    net: u8,
}

impl Tree {
    /// The root server's address.
    pub(crate) fn root(&self) -> Ipv4Addr {
        ip(self.net, 1)
    }

    /// The hierarchy on `127.53.net.x`.
    pub(crate) async fn start(net: u8) -> Self {
        let week = Duration::from_secs(7 * 86400);
        let keys = |z: &str| key(&name(z), week);
        let (root, tld) = (keys("."), keys("test."));
        let (example, nsec3, bad, other) = (
            keys("example.test."),
            keys("nsec3.test."),
            keys("bad.test."),
            keys("bad.test."),
        );
        let expired = key(&name("expired.test."), Duration::from_secs(1));
        let unsigned = keys("unsigned.test.");
        let forged = keys("forged.test.");
        let anchor = Record::from_rdata(
            Name::root(),
            TTL,
            RData::DNSSEC(DNSSECRData::DNSKEY(root.dnskey.clone())),
        )
        .to_string();
        let mut tld_records = Vec::new();
        tld_records.extend(delegate("example.test.", ip(net, 3), Some(&example.dnskey)));
        tld_records.extend(delegate("nsec3.test.", ip(net, 4), Some(&nsec3.dnskey)));
        // The DS names a key bad.test. does not sign with.
        tld_records.extend(delegate("bad.test.", ip(net, 5), Some(&other.dnskey)));
        tld_records.extend(delegate("expired.test.", ip(net, 6), Some(&expired.dnskey)));
        tld_records.extend(delegate("unsigned.test.", ip(net, 7), None));
        tld_records.extend(delegate("forged.test.", ip(net, 8), Some(&forged.dnskey)));
        // The root server's address in a zone of its own: unbound's priming asks for it
        // (the root has it only as glue).
        tld_records.push(a("ns.root-servers.test.", &ip(net, 1).to_string()));
        let nsec3_proof = NxProofKind::Nsec3 {
            algorithm: Nsec3HashAlgorithm::SHA1,
            salt: Arc::from(&[][..]),
            iterations: 0,
            opt_out: false,
        };
        let root_records = delegate("test.", ip(net, 2), Some(&tld.dnskey));
        // (zone, host, key, denials, records); each leaf zone holds `www` at 192.0.2.(7 + host).
        let mut plan = vec![
            (".", 1, root, NxProofKind::Nsec, root_records),
            ("test.", 2, tld, NxProofKind::Nsec, tld_records),
        ];
        for (zone, host, key, proof) in [
            ("example.test.", 3, example, NxProofKind::Nsec),
            ("nsec3.test.", 4, nsec3, nsec3_proof),
            ("bad.test.", 5, bad, NxProofKind::Nsec),
            ("expired.test.", 6, expired, NxProofKind::Nsec),
            ("unsigned.test.", 7, unsigned, NxProofKind::Nsec),
            ("forged.test.", 8, forged, NxProofKind::Nsec),
        ] {
            let www = a(&format!("www.{zone}"), &format!("192.0.2.{}", 7 + host));
            // Any name under `wild.` is answered by a wildcard.
            let wild = a(
                &format!("*.wild.{zone}"),
                &format!("192.0.2.{}", 107 + host),
            );
            plan.push((zone, host, key, proof, vec![www, wild]));
        }
        let mut zones = Vec::new();
        for (zone, host, key, proof, records) in plan {
            zones.push(Signed::start(zone, ip(net, host), key, proof, records).await);
        }
        Self {
            _zones: zones,
            anchor,
            net,
        }
    }
}

pub(crate) async fn sinkhole(tree: &Tree, extra: &str) -> TestServer {
    let hints = hints(ip(tree.net, 1));
    TestServer::start(
        &format!(
            "[upstream]\nmode = \"recursive\"\nroot_hints = \"{{dir}}/root.hints\"\ntrust_anchor = \"{{dir}}/root.key\"\nrecursion_timeout_ms = 3000\n{extra}[log]\npath = \"q.jsonl\"\n"
        ),
        &[("root.hints", hints.as_str()), ("root.key", &format!("; the test root's key\n{}\n", tree.anchor))],
    )
    .await
}

/// Asks `s` for `qname`/`qtype` over UDP with the given DO, AD and CD bits.
async fn ask(
    s: &TestServer,
    qname: &str,
    qtype: RecordType,
    dnssec_ok: bool,
    ad: bool,
    cd: bool,
) -> Message {
    let mut q = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    q.metadata.recursion_desired = true;
    q.metadata.authentic_data = ad;
    q.metadata.checking_disabled = cd;
    q.add_query(Query::query(name(qname), qtype));
    let mut e = Edns::new();
    e.set_dnssec_ok(dnssec_ok);
    e.set_max_payload(1232);
    q.edns = Some(e);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&q.to_vec().unwrap(), s.addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("{qname} {qtype}: no answer in 5 s"))
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

/// `action/dnssec` of each log record for `qname` (`-` when it has no `dnssec`).
fn verdicts(log: &[serde_json::Value], qname: &str) -> Vec<String> {
    log.iter()
        .filter(|r| r["qname"] == qname)
        .map(|r| {
            let action = r["action"].as_str().unwrap_or("?");
            format!("{action}/{}", r["dnssec"].as_str().unwrap_or("-"))
        })
        .collect()
}

fn rcode(m: &Message) -> u16 {
    u16::from(m.metadata.response_code)
}

fn has(m: &Message, t: RecordType) -> bool {
    m.answers
        .iter()
        .chain(&m.authorities)
        .any(|r| r.record_type() == t)
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_answers_are_validated_and_bogus_ones_refused_with_the_reason() {
    let tree = Tree::start(61).await;
    // Signatures of expired.test. live one second: let them expire before anything asks.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let s = sinkhole(&tree, "").await;

    // Secure, DO: AD, and the signatures come along.
    let m = ask(&s, "www.example.test.", RecordType::A, true, false, false).await;
    assert_eq!(rcode(&m), 0, "{m:?}");
    assert!(m.metadata.authentic_data, "AD on a secure answer: {m:?}");
    assert!(
        m.answers
            .iter()
            .any(|r| r.data == RData::A(A([192, 0, 2, 10].into())))
    );
    assert!(has(&m, RecordType::RRSIG), "DO: signatures included: {m:?}");
    // No DO, no AD asked: no AD and no DNSSEC records (RFC 6840 §5.8, RFC 4035 §3.2.1);
    // AD asked without DO: AD.
    let m = ask(&s, "www.example.test.", RecordType::A, false, false, false).await;
    assert!(
        !m.metadata.authentic_data && !has(&m, RecordType::RRSIG),
        "{m:?}"
    );
    let m = ask(&s, "www.example.test.", RecordType::A, false, true, false).await;
    assert!(m.metadata.authentic_data, "{m:?}");

    // A wildcard expansion in an NSEC zone: secure (hickory 0.26 alone says bogus).
    let m = ask(
        &s,
        "any.wild.example.test.",
        RecordType::A,
        true,
        false,
        false,
    )
    .await;
    assert_eq!(rcode(&m), 0, "{m:?}");
    assert!(m.metadata.authentic_data, "{m:?}");
    assert!(
        m.answers
            .iter()
            .any(|r| r.data == RData::A(A([192, 0, 2, 110].into()))),
        "{m:?}"
    );

    // Denials, NSEC and NSEC3, checked: secure NXDOMAIN and NODATA.
    let m = ask(&s, "nope.example.test.", RecordType::A, true, false, false).await;
    assert_eq!(rcode(&m), 3, "{m:?}");
    assert!(
        m.metadata.authentic_data && has(&m, RecordType::NSEC),
        "{m:?}"
    );
    let m = ask(
        &s,
        "www.example.test.",
        RecordType::AAAA,
        true,
        false,
        false,
    )
    .await;
    assert_eq!(
        (
            rcode(&m),
            m.answers
                .iter()
                .filter(|r| r.record_type() == RecordType::AAAA)
                .count()
        ),
        (0, 0)
    );
    assert!(m.metadata.authentic_data, "secure NODATA: {m:?}");
    let m = ask(&s, "www.nsec3.test.", RecordType::A, true, false, false).await;
    assert!(m.metadata.authentic_data, "{m:?}");
    let m = ask(&s, "nope.nsec3.test.", RecordType::A, true, false, false).await;
    assert_eq!(rcode(&m), 3, "{m:?}");
    assert!(
        m.metadata.authentic_data && has(&m, RecordType::NSEC3),
        "{m:?}"
    );

    // A DS that matches no key of the zone: SERVFAIL, EDE 9 (DNSKEY Missing) naming the
    // zone; a signature that does not verify under a vouched-for key: EDE 6.
    let m = ask(&s, "www.bad.test.", RecordType::A, true, false, false).await;
    assert_eq!(rcode(&m), 2, "{m:?}");
    let (code, text) = ede(&m).expect("an EDE");
    assert_eq!(code, 9, "{text}");
    assert!(text.contains("bad.test."), "{text}");
    // forged.test.'s keys proven by a good answer of the zone first: answers it signs are
    // then checked from the keys already proven (`KnownKeys`), and a forged one is still
    // refused, for the same reason.
    let m = ask(
        &s,
        "one.wild.forged.test.",
        RecordType::A,
        true,
        false,
        false,
    )
    .await;
    assert!(m.metadata.authentic_data && rcode(&m) == 0, "{m:?}");
    let m = ask(
        &s,
        "two.wild.forged.test.",
        RecordType::A,
        true,
        false,
        false,
    )
    .await;
    assert!(m.metadata.authentic_data && rcode(&m) == 0, "{m:?}");
    let m = ask(&s, "www.forged.test.", RecordType::A, true, false, false).await;
    assert_eq!(rcode(&m), 2, "{m:?}");
    let (code, text) = ede(&m).expect("an EDE");
    assert_eq!(code, 6, "{text}");
    assert!(
        text.contains("www.forged.test. A") && text.contains("does not verify"),
        "{text}"
    );
    // CD: the client validates itself and gets the answer as it is, without AD.
    let m = ask(&s, "www.bad.test.", RecordType::A, true, false, true).await;
    assert_eq!(rcode(&m), 0, "{m:?}");
    assert!(!m.metadata.authentic_data);
    assert!(
        m.answers.iter().any(|r| r.record_type() == RecordType::A),
        "{m:?}"
    );

    // Expired signatures: EDE 7.
    let m = ask(&s, "www.expired.test.", RecordType::A, true, false, false).await;
    assert_eq!(rcode(&m), 2, "{m:?}");
    let (code, text) = ede(&m).expect("an EDE");
    assert_eq!(code, 7, "{text}");
    assert!(text.contains("expired.test."), "{text}");

    // No DS: insecure, answered without AD.
    let m = ask(&s, "www.unsigned.test.", RecordType::A, true, false, false).await;
    assert_eq!(rcode(&m), 0, "{m:?}");
    assert!(!m.metadata.authentic_data);
    assert!(m.answers.iter().any(|r| r.record_type() == RecordType::A));

    // The log says what validation found.
    let log = records(&s.path("q.jsonl"), 13).await;
    let found = |qname: &str| verdicts(&log, qname);
    assert!(
        found("www.example.test")
            .iter()
            .all(|x| x.ends_with("/secure")),
        "{:?}",
        found("www.example.test")
    );
    assert_eq!(found("www.bad.test"), ["failed/bogus", "allowed/-"]);
    assert_eq!(found("www.expired.test"), ["failed/bogus"]);
    assert_eq!(found("www.unsigned.test"), ["allowed/insecure"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn dnssec_off_answers_bogus_zones_and_logs_no_verdict() {
    let tree = Tree::start(62).await;
    let s = sinkhole(&tree, "dnssec = \"off\"\n").await;
    let m = ask(&s, "www.bad.test.", RecordType::A, true, false, false).await;
    assert_eq!(rcode(&m), 0, "{m:?}");
    assert!(!m.metadata.authentic_data);
    let log = records(&s.path("q.jsonl"), 1).await;
    assert!(log[0].get("dnssec").is_none(), "{}", log[0]);
}

/// sinkhole in forward mode to `servers` (TOML array items), validating from the tree's
/// trust anchor, logging to `q.jsonl`.
async fn validating_forwarder(tree: &Tree, servers: &str, timeout_ms: u64) -> TestServer {
    TestServer::start(
        &format!(
            "[upstream]\nservers = [{servers}]\ndnssec = \"validate\"\ntrust_anchor = \"{{dir}}/root.key\"\ntimeout_ms = {timeout_ms}\n[log]\npath = \"q.jsonl\"\n"
        ),
        &[("root.key", tree.anchor.as_str())],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_mode_validates_what_the_upstream_answers() {
    let tree = Tree::start(63).await;
    // The upstream: a resolver of the hierarchy that hands over signatures (sinkhole in
    // recursive mode); it validates too, but the forwarder asks with CD and checks itself.
    let upstream = sinkhole(&tree, "").await;
    let s = validating_forwarder(&tree, &format!("\"{}\"", upstream.addr), 3000).await;
    let m = ask(&s, "www.example.test.", RecordType::A, true, false, false).await;
    assert_eq!(rcode(&m), 0, "{m:?}");
    assert!(
        m.metadata.authentic_data && has(&m, RecordType::RRSIG),
        "{m:?}"
    );
    let m = ask(&s, "www.example.test.", RecordType::A, false, false, false).await;
    assert!(
        !m.metadata.authentic_data && !has(&m, RecordType::RRSIG),
        "{m:?}"
    );
    let m = ask(&s, "nope.example.test.", RecordType::A, true, false, false).await;
    assert_eq!(rcode(&m), 3, "{m:?}");
    assert!(m.metadata.authentic_data, "a secure denial: {m:?}");
    let m = ask(
        &s,
        "any.wild.example.test.",
        RecordType::A,
        true,
        false,
        false,
    )
    .await;
    assert!(
        m.metadata.authentic_data && rcode(&m) == 0,
        "a secure wildcard: {m:?}"
    );
    // More of the zone, its keys known by now: proven where the UDP thread relayed the
    // query (`Validator::quick`), with DO the signatures along, without DO none of them.
    let m = ask(
        &s,
        "two.wild.example.test.",
        RecordType::A,
        true,
        false,
        false,
    )
    .await;
    assert!(
        m.metadata.authentic_data && rcode(&m) == 0 && has(&m, RecordType::RRSIG),
        "{m:?}"
    );
    assert!(
        m.answers
            .iter()
            .any(|r| r.data == RData::A(A([192, 0, 2, 110].into()))),
        "{m:?}"
    );
    let m = ask(
        &s,
        "three.wild.example.test.",
        RecordType::A,
        false,
        true,
        false,
    )
    .await;
    assert!(
        m.metadata.authentic_data && rcode(&m) == 0 && !has(&m, RecordType::RRSIG),
        "{m:?}"
    );
    let m = ask(&s, "www.bad.test.", RecordType::A, true, false, false).await;
    assert_eq!(rcode(&m), 2, "{m:?}");
    let (code, text) = ede(&m).expect("an EDE");
    assert_eq!(code, 9, "{text}");
    assert!(text.contains("bad.test."), "{text}");
    let m = ask(
        &s,
        "one.wild.forged.test.",
        RecordType::A,
        true,
        false,
        false,
    )
    .await;
    assert!(m.metadata.authentic_data && rcode(&m) == 0, "{m:?}");
    let m = ask(&s, "www.forged.test.", RecordType::A, true, false, false).await;
    let (code, text) = ede(&m).expect("an EDE");
    assert_eq!((rcode(&m), code), (2, 6), "{text}");
    let m = ask(&s, "www.bad.test.", RecordType::A, true, false, true).await;
    assert_eq!(rcode(&m), 0, "CD: as it is: {m:?}");
    let m = ask(&s, "www.unsigned.test.", RecordType::A, true, false, false).await;
    assert_eq!(rcode(&m), 0, "{m:?}");
    assert!(!m.metadata.authentic_data);
    let log = records(&s.path("q.jsonl"), 8).await;
    let of = |qname: &str| verdicts(&log, qname);
    assert_eq!(of("www.example.test"), ["allowed/secure", "allowed/secure"]);
    assert_eq!(of("www.bad.test"), ["failed/bogus", "allowed/-"]);
    assert_eq!(of("www.unsigned.test"), ["allowed/insecure"]);
    assert_eq!(of("two.wild.example.test"), ["allowed/secure"]);
    let up = upstream.addr.to_string();
    assert!(
        log.iter()
            .filter(|r| r["qname"] == "www.example.test")
            .all(|r| r["upstream"] == up.as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_mode_validation_fails_over_to_the_next_server() {
    let tree = Tree::start(65).await;
    let upstream = sinkhole(&tree, "").await;
    // The first server: a port nobody listens on (refused at once on loopback).
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let s = validating_forwarder(&tree, &format!("\"{dead}\", \"{}\"", upstream.addr), 2000).await;
    // Twice in the same zone: the first validated by hickory, the second from the keys
    // it proved; both through the relay's first attempt at the dead server.
    for qname in ["www.example.test.", "any.wild.example.test."] {
        let m = ask(&s, qname, RecordType::A, true, false, false).await;
        assert!(
            m.metadata.authentic_data && rcode(&m) == 0,
            "{qname}: {m:?}"
        );
    }
    let m = ask(&s, "www.forged.test.", RecordType::A, true, false, false).await;
    let (code, text) = ede(&m).expect("an EDE");
    assert_eq!((rcode(&m), code), (2, 6), "{text}");
    let log = records(&s.path("q.jsonl"), 3).await;
    let up = upstream.addr.to_string();
    for qname in ["www.example.test", "any.wild.example.test"] {
        let r = log.iter().find(|r| r["qname"] == qname).expect("logged");
        assert_eq!(r["upstream"], up.as_str(), "{r}");
        assert_eq!(r["dnssec"], "secure", "{r}");
    }
}
