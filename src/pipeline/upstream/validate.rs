//! `Validator`: DNSSEC validation in forward mode (`upstream.dnssec = "validate"` with
//! `upstream.servers`). The upstream's answers are checked here, not trusted: a miss is
//! asked upstream with DO and CD set (so that the upstream hands over signatures and
//! denials, and does not hide a bogus answer behind its own SERVFAIL), and hickory's
//! validator (`DnssecDnsHandle`) checks it from the trust anchors, fetching the DNSKEY and
//! DS records of the chain through the same servers, with the same failover and deadline.
//!
//! Keys and delegation signers are asked often (every zone on every chain), so their
//! answers are kept in a small cache of their own ([`KEY_CACHE_ENTRIES`]); the validator
//! keeps its verdicts on them too. A client's CD skips all this: its query goes upstream as
//! it came (see `Upstream::forward`).
//!
//! In recursive mode the same validator checks what the walk from the root found
//! ([`Validator::walking`]): its queries for keys and delegation signers are walks too.
//!
//! Once hickory has proven a zone's keys, the next answers that zone signs are proven from
//! them by [`KnownKeys`], each signature verified once; hickory's validator sees only what
//! that cannot prove (denials, unknown zones, anything that fails).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use hickory_resolver::net::dnssec::DnssecDnsHandle;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, DnsHandle, NetError};
use hickory_resolver::proto::dnssec::Proof;
use hickory_resolver::proto::dnssec::rdata::DNSSECRData;
use hickory_resolver::proto::op::{DnsRequest, DnsRequestOptions, DnsResponse, Message};
use hickory_resolver::proto::op::{Query as HQuery, ResponseCode};
use hickory_resolver::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_resolver::proto::serialize::binary::{BinDecodable, BinDecoder};
use hickory_resolver::{ResponseCache, TtlConfig};
use tokio::time::{Instant, timeout_at};

use super::known_keys::KnownKeys;
use super::recursive::walk::{Found, Walker};
use super::{RECURSIVE, Resume, Upstream, UpstreamError, dnssec};
use crate::config::Dnssec;
use crate::dns::wire::{Query, Response, Security, parse_query};

/// The server of an answer when none is known.
const UNKNOWN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    1,
));

/// Signatures a UDP thread's relay verifies for one answer ([`Validator::quick`]): an
/// answer and its wildcard's NSEC; one that needs more goes to the runtime.
pub const QUICK_VERIFICATIONS: usize = 2;

/// DNSKEY and DS answers kept for validation.
pub const KEY_CACHE_ENTRIES: u64 = 4_096;

/// Validates what the forwarder's servers answer.
#[derive(Clone)]
pub struct Validator {
    handle: DnssecDnsHandle<Via>,
    known: Arc<KnownKeys>,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator").finish_non_exhaustive()
    }
}

impl Validator {
    /// Validation of `upstream`'s answers (a set without a validator of its own) from the
    /// anchors of `cfg`.
    pub fn new(upstream: Upstream, cfg: &Dnssec) -> Self {
        let (min_ttl, max_ttl) = (upstream.min_ttl, upstream.max_ttl);
        Self::over(Source::Forward(upstream), cfg, min_ttl, max_ttl)
    }

    /// Validation of what `walker` finds from the root (each walk ending `timeout` after it
    /// starts), answers' TTLs clamped to `[min_ttl, max_ttl]`, from the anchors of `cfg`.
    pub fn walking(
        walker: Arc<Walker>,
        timeout: Duration,
        cfg: &Dnssec,
        min_ttl: u32,
        max_ttl: u32,
    ) -> Self {
        Self::over(Source::Walk(walker, timeout), cfg, min_ttl, max_ttl)
    }

    fn over(source: Source, cfg: &Dnssec, min_ttl: u32, max_ttl: u32) -> Self {
        let via = Via {
            source,
            min_ttl,
            max_ttl,
            keys: Arc::new(ResponseCache::new(KEY_CACHE_ENTRIES, TtlConfig::default())),
            primed: Arc::new(Mutex::new(HashMap::new())),
        };
        Self {
            handle: DnssecDnsHandle::with_trust_anchor(via, Arc::new(cfg.anchors())),
            known: Arc::new(KnownKeys::new()),
        }
    }

    /// Forwards `q` with DO and CD (from `arrived`, as [`Upstream::forward`] does) and
    /// validates the answer, by `deadline`. A bogus answer is [`UpstreamError::Bogus`]; the
    /// rest is the answer with what validation found (and, for a client that did not set
    /// DO, without the DNSSEC records), and the server that gave it.
    pub async fn resolve(
        &self,
        q: &Query,
        arrived: Instant,
        deadline: Instant,
    ) -> Result<(Response, SocketAddr), UpstreamError> {
        self.resolve_with(q, arrived, deadline, None).await
    }

    /// [`Validator::resolve`] of a query whose first attempt a UDP thread's relay made
    /// (`r`: its question goes on from there as a plain forward would).
    pub async fn resolve_resumed(
        &self,
        q: &Query,
        arrived: Instant,
        deadline: Instant,
        r: Resume,
    ) -> Result<(Response, SocketAddr), UpstreamError> {
        self.resolve_with(q, arrived, deadline, Some(r)).await
    }

    /// [`Validator::resolve`], going on from `resumed` when given.
    async fn resolve_with(
        &self,
        q: &Query,
        arrived: Instant,
        deadline: Instant,
        resumed: Option<Resume>,
    ) -> Result<(Response, SocketAddr), UpstreamError> {
        let (hq, request) = request_for(q)?;
        let (first, server) = self.handle.inner().ask(&request, arrived, resumed).await?;
        self.validate(q, hq, request, first, server, deadline).await
    }

    /// [`Validator::resolve`] of the answer `pkt` that `server` gave to `q` (asked with DO
    /// and CD by a UDP thread's relay).
    pub async fn resolve_answer(
        &self,
        q: &Query,
        pkt: &[u8],
        server: SocketAddr,
        deadline: Instant,
    ) -> Result<(Response, SocketAddr), UpstreamError> {
        let (hq, request) = request_for(q)?;
        let mut first = Message::from_vec(pkt).map_err(|_| UpstreamError::Malformed(server))?;
        first.metadata.id = request.metadata.id;
        self.validate(q, hq, request, first, server, deadline).await
    }

    /// The answer `pkt` that `server` gave to `q` (asked with DO and CD), proven secure at
    /// once from zone keys already proven, as the client's answer; `None` when proving it
    /// takes more ([`Validator::resolve_answer`] then). Never waits: a UDP thread's relay
    /// calls it, with a `budget` of signature verifications for its batch, of which one
    /// answer spends at most [`QUICK_VERIFICATIONS`].
    pub fn quick(
        &self,
        q: &Query,
        pkt: &[u8],
        server: SocketAddr,
        budget: &mut usize,
    ) -> Option<Response> {
        let via = self.handle.inner();
        let mut msg = Message::from_vec(pkt).ok()?;
        minimal(&mut msg);
        let hq = msg.queries.first()?.clone();
        let now = dnssec::unix_now();
        let mut most = (*budget).min(QUICK_VERIFICATIONS);
        let before = most;
        let proven = self
            .known
            .prove_verifying(&hq.name, hq.query_type, &mut msg, now, &mut most);
        *budget = budget.saturating_sub(before - most);
        if !proven {
            return None;
        }
        if !q.dnssec_ok() {
            dnssec::strip(&mut msg, hq.query_type);
        }
        finish(msg, Security::Secure, q, server, via.min_ttl, via.max_ttl)
            .ok()
            .map(|(r, _)| r)
    }

    /// Validates `first`, the answer `server` gave to `request` (`hq`, from the client's
    /// `q`), by `deadline`: from known keys, or by hickory's validator (which asks for the
    /// keys and delegation signers it needs).
    async fn validate(
        &self,
        q: &Query,
        hq: HQuery,
        request: DnsRequest,
        mut first: Message,
        server: SocketAddr,
        deadline: Instant,
    ) -> Result<(Response, SocketAddr), UpstreamError> {
        let via = self.handle.inner();
        let (min_ttl, max_ttl) = (via.min_ttl, via.max_ttl);
        minimal(&mut first);
        let keys = ValidatorKeys {
            handle: &self.handle,
            deadline,
        };
        let now = dnssec::unix_now();
        if self.known.prove(&hq.name, hq.query_type, &mut first, now) {
            let security = dnssec::settle(&hq, &mut first, None, q, &keys).await?;
            return finish(first, security, q, server, min_ttl, max_ttl);
        }
        // The validator's first query is handed this answer (by ID and question), and asks
        // for the rest itself.
        let _primed = Primed::insert(&via.primed, request.metadata.id, first);
        let mut answers = self.handle.send(request);
        let got = timeout_at(deadline, answers.next()).await;
        let (mut msg, nsec) = match got {
            Err(_) | Ok(None) => return Err(UpstreamError::Timeout(server)),
            Ok(Some(Ok(r))) => (r.into_message(), None),
            Ok(Some(Err(NetError::Dns(DnsError::Nsec {
                response, proof, ..
            })))) => (response.into_message(), Some(proof)),
            Ok(Some(Err(e))) => return Err(UpstreamError::Transport(server, e.to_string())),
        };
        let unknown = self.unknown_signers(&msg, now);
        let security = dnssec::settle(&hq, &mut msg, nsec, q, &keys).await?;
        if security == Security::Secure {
            for zone in unknown {
                if let Some(records) = keys.fetch(&zone).await {
                    self.known.learn(&zone, &records, now);
                }
            }
        }
        finish(msg, security, q, server, min_ttl, max_ttl)
    }

    /// The zones whose signatures the validator verified in `msg` with a key not known at
    /// `now` (at most two: an answer's chain crosses few zones; a zone whose keys rolled
    /// is learned again).
    fn unknown_signers(&self, msg: &Message, now: u32) -> Vec<Name> {
        let mut zones: Vec<Name> = Vec::new();
        for r in msg.answers.iter().chain(&msg.authorities) {
            if let RData::DNSSEC(DNSSECRData::RRSIG(s)) = &r.data {
                let (z, tag) = (&s.input().signer_name, s.input().key_tag);
                let used = r.proof == Proof::Secure && z.zone_of(&r.name);
                if used && zones.len() < 2 && !zones.contains(z) && !self.known.knows(z, tag, now) {
                    zones.push(z.clone());
                }
            }
        }
        zones
    }
}

/// The client's question `q` as hickory's validator asks it (DO, RD, EDNS), with an ID of
/// its own.
fn request_for(q: &Query) -> Result<(HQuery, DnsRequest), UpstreamError> {
    let name = Name::read(&mut BinDecoder::new(q.wire_name()))
        .map_err(|_| UpstreamError::Malformed(UNKNOWN))?;
    let mut hq = HQuery::query(name, RecordType::from(q.qtype));
    hq.query_class = DNSClass::from(q.qclass);
    let mut options = DnsRequestOptions::default();
    options.use_edns = true;
    options.edns_set_dnssec_ok = true;
    options.recursion_desired = true;
    let mut request = DnsRequest::from_query(hq.clone(), options);
    request.metadata.id = rand::random();
    Ok((hq, request))
}

/// The validated `msg` as the client's answer to `q`, marked with its `security`.
fn finish(
    mut msg: Message,
    security: Security,
    q: &Query,
    server: SocketAddr,
    min_ttl: u32,
    max_ttl: u32,
) -> Result<(Response, SocketAddr), UpstreamError> {
    msg.edns = None;
    msg.metadata.id = 0;
    let bytes = msg.to_vec().map_err(|_| UpstreamError::Malformed(server))?;
    let mut resp = Response::parse(&bytes, q, 0, min_ttl, max_ttl)
        .map_err(|_| UpstreamError::Malformed(server))?;
    resp.set_security(security);
    Ok((resp, server))
}

/// Keeps of an answer's other sections what the validator and the client need, as a
/// resolver with minimal responses sends them: the authority section's SOA, NSEC and NSEC3
/// records and their signatures (a negative answer's proof, a wildcard's); no additional
/// records. The validator checks the signature of every RRset it is handed: a zone's own
/// servers (the walk's, or an upstream without minimal responses) add its signed NS set
/// and their addresses, a signature check or more per answer for nothing.
fn minimal(msg: &mut Message) {
    let wanted =
        |t: RecordType| matches!(t, RecordType::SOA | RecordType::NSEC | RecordType::NSEC3);
    msg.authorities.retain(|r| match &r.data {
        RData::DNSSEC(DNSSECRData::RRSIG(sig)) => wanted(sig.input().type_covered),
        _ => wanted(r.record_type()),
    });
    msg.additionals.clear();
}

/// The zone keys' verdict, from the validator (its caches, mostly).
struct ValidatorKeys<'a> {
    handle: &'a DnssecDnsHandle<Via>,
    deadline: Instant,
}

impl ValidatorKeys<'_> {
    /// `zone`'s DNSKEY records as the validator judged them (its caches, mostly), or
    /// `None` when they could not be had by the deadline.
    async fn fetch(&self, zone: &Name) -> Option<Vec<Record>> {
        let mut options = DnsRequestOptions::default();
        options.use_edns = true;
        options.edns_set_dnssec_ok = true;
        options.recursion_desired = true;
        let q = HQuery::query(zone.clone(), RecordType::DNSKEY);
        let mut answers = self.handle.lookup(q, options);
        match timeout_at(self.deadline, answers.next()).await {
            Ok(Some(Ok(r))) => Some(r.into_message().answers),
            _ => None,
        }
    }
}

impl dnssec::Keys for ValidatorKeys<'_> {
    async fn secure(&self, zone: &Name) -> bool {
        self.fetch(zone)
            .await
            .is_some_and(|records| dnssec::keys_secure(&records))
    }
}

/// Where the validator's questions go.
#[derive(Clone)]
enum Source {
    /// Forwarded through the set, with its failover and deadline.
    Forward(Upstream),
    /// Walked from the root, each walk ending after the duration.
    Walk(Arc<Walker>, Duration),
}

/// The validator's way to the servers: each of its queries (keys and delegation
/// signers) is one forward through the set, or one walk from the root.
#[derive(Clone)]
struct Via {
    source: Source,
    min_ttl: u32,
    max_ttl: u32,
    keys: Arc<ResponseCache>,
    /// Answers already fetched for a client's question, by request ID, handed to the
    /// validator's first query.
    primed: Arc<Mutex<HashMap<u16, Message>>>,
}

impl Via {
    /// One forward of `request` (with CD: the validation is ours), or one walk; the answer
    /// and who gave it.
    async fn ask(
        &self,
        request: &DnsRequest,
        arrived: Instant,
        resumed: Option<Resume>,
    ) -> Result<(Message, SocketAddr), UpstreamError> {
        let upstream = match &self.source {
            Source::Forward(u) => u,
            Source::Walk(walker, timeout) => {
                let hq = request
                    .queries
                    .first()
                    .ok_or(UpstreamError::Malformed(RECURSIVE))?;
                let name = hq.name().to_lowercase();
                let found = walker
                    .resolve(&name, hq.query_type(), arrived + *timeout)
                    .await?;
                let mut msg = match found {
                    Found::Raw(pkt) => {
                        Message::from_vec(&pkt).map_err(|_| UpstreamError::Malformed(RECURSIVE))?
                    }
                    Found::Built(m) => m,
                };
                msg.queries = vec![hq.clone()];
                msg.metadata.id = request.metadata.id;
                // What an authoritative server says of AD is not taken.
                msg.metadata.authentic_data = false;
                msg.metadata.authoritative = false;
                return Ok((msg, RECURSIVE));
            }
        };
        let mut m: Message = (**request).clone();
        m.metadata.checking_disabled = true;
        m.metadata.recursion_desired = true;
        let bytes = m.to_vec().map_err(|_| UpstreamError::Malformed(UNKNOWN))?;
        let q = parse_query(&bytes).map_err(|_| UpstreamError::Malformed(UNKNOWN))?;
        let (resp, server) = match resumed {
            Some(r) => upstream.resume_plain(&q, arrived, r).await?,
            None => upstream.forward_plain(&q, arrived).await?,
        };
        let mut msg =
            Message::from_vec(resp.wire()).map_err(|_| UpstreamError::Malformed(server))?;
        msg.metadata.id = m.metadata.id;
        Ok((msg, server))
    }

    async fn exchange(self, request: DnsRequest) -> Result<DnsResponse, NetError> {
        let hq = request
            .queries
            .first()
            .cloned()
            .ok_or(NetError::from("no question"))?;
        let primed = {
            let mut p = self
                .primed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match p.get(&request.metadata.id) {
                Some(m) if m.queries.first() == Some(&hq) => p.remove(&request.metadata.id),
                _ => None,
            }
        };
        if let Some(m) = primed {
            return DnsResponse::from_message(m).map_err(|e| NetError::from(e.to_string()));
        }
        let cacheable = matches!(hq.query_type(), RecordType::DNSKEY | RecordType::DS);
        let now = StdInstant::now();
        if cacheable && let Some(Ok(m)) = self.keys.get(&hq, now) {
            return DnsResponse::from_message(m).map_err(|e| NetError::from(e.to_string()));
        }
        let (msg, _) = self
            .ask(&request, Instant::now(), None)
            .await
            .map_err(|e| NetError::from(e.to_string()))?;
        if cacheable && msg.metadata.response_code == ResponseCode::NoError {
            self.keys.insert(hq, Ok(msg.clone()), now);
        }
        DnsResponse::from_message(msg).map_err(|e| NetError::from(e.to_string()))
    }
}

/// An answer handed to the validator, taken back when the validation ends however it
/// ends (a forward dropped half-way included): the map holds only validations in flight.
struct Primed<'a> {
    map: &'a Mutex<HashMap<u16, Message>>,
    id: u16,
}

impl<'a> Primed<'a> {
    fn insert(map: &'a Mutex<HashMap<u16, Message>>, id: u16, m: Message) -> Self {
        map.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, m);
        Self { map, id }
    }
}

impl Drop for Primed<'_> {
    fn drop(&mut self) {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl DnsHandle for Via {
    type Response = BoxStream<'static, Result<DnsResponse, NetError>>;
    type Runtime = TokioRuntimeProvider;

    fn send(&self, request: DnsRequest) -> Self::Response {
        let me = self.clone();
        Box::pin(stream::once(me.exchange(request)))
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::dnssec::rdata::{RRSIG, SigInput};
    use hickory_resolver::proto::dnssec::{Algorithm, rdata::NSEC};
    use hickory_resolver::proto::rr::rdata::{A, NS, SOA};
    use hickory_resolver::proto::rr::{Record, SerialNumber};
    use std::str::FromStr;

    fn n(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    fn rrsig(owner: &str, covered: RecordType) -> Record {
        let input = SigInput {
            type_covered: covered,
            algorithm: Algorithm::ECDSAP256SHA256,
            num_labels: 2,
            original_ttl: 60,
            sig_expiration: SerialNumber::new(2),
            sig_inception: SerialNumber::new(1),
            key_tag: 1,
            signer_name: n("example.test."),
        };
        let data = RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, vec![0; 64])));
        Record::from_rdata(n(owner), 60, data)
    }

    #[test]
    fn the_validator_gets_the_answer_and_its_proofs_only() {
        let zone = "example.test.";
        let mut m = Message::response(1, hickory_resolver::proto::op::OpCode::Query);
        let a = Record::from_rdata(n("w.example.test."), 60, RData::A(A::new(192, 0, 2, 1)));
        m.answers = vec![a, rrsig("w.example.test.", RecordType::A)];
        let ns = Record::from_rdata(n(zone), 60, RData::NS(NS(n("ns.example.test."))));
        let nsec = Record::from_rdata(
            n("*.example.test."),
            60,
            RData::DNSSEC(DNSSECRData::NSEC(NSEC::new(
                n("x.example.test."),
                [RecordType::A],
            ))),
        );
        let soa = SOA::new(n("ns.example.test."), n("h.test."), 1, 60, 60, 60, 60);
        let soa = Record::from_rdata(n(zone), 60, RData::SOA(soa));
        m.authorities = vec![
            ns,
            rrsig(zone, RecordType::NS),
            nsec.clone(),
            rrsig("*.example.test.", RecordType::NSEC),
            soa.clone(),
            rrsig(zone, RecordType::SOA),
        ];
        let glue = Record::from_rdata(n("ns.example.test."), 60, RData::A(A::new(192, 0, 2, 53)));
        m.additionals = vec![glue, rrsig("ns.example.test.", RecordType::A)];
        minimal(&mut m);
        assert_eq!(m.answers.len(), 2, "the answer stays whole");
        let kept: Vec<String> = m
            .authorities
            .iter()
            .map(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::RRSIG(s)) => format!("RRSIG {}", s.input().type_covered),
                _ => r.record_type().to_string(),
            })
            .collect();
        assert_eq!(kept, ["NSEC", "RRSIG NSEC", "SOA", "RRSIG SOA"]);
        assert!(m.additionals.is_empty());
    }
}
