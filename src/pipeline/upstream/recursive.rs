//! `Recursive`: the upstream kind of `upstream.mode = "recursive"`. A miss is resolved from
//! the root by hickory-resolver's recursor (referrals followed down the zone cuts with
//! QNAME minimisation, glue checked against the bailiwick, CNAMEs followed across zones)
//! instead of being forwarded; what it finds is turned into the same [`Response`] a
//! forwarded answer is, so the answer checks, the cache and the log treat both alike.
//!
//! Work per query is bounded, by the recursor's limits and by checks of our own where the
//! library falls short:
//! - referral depth: [`MAX_REFERRAL_DEPTH`] zone cuts walked for one name (the recursor's
//!   `ns_recursion_limit`);
//! - CNAME chain: CNAME restarts across zones stop at [`MAX_CNAME_DEPTH`] (`recursion_limit`),
//!   and an answer whose chain loops or has more than [`MAX_CNAMES`] links is SERVFAIL here:
//!   hickory 0.26.3 answers a loop NOERROR with the loop in it (hickory-dns #3566);
//! - upstream queries: at most 200 for one client query (the recursor's fixed
//!   `MAX_QUERIES_PER_REQUEST`), and at most 5 glueless name servers chased per zone cut;
//! - time: one authoritative server is waited for at most `upstream.timeout_ms` (then the
//!   next is tried: see `wait`), and the whole resolution ends by
//!   `arrived + upstream.recursion_timeout_ms`, cut there whatever the recursor is doing.
//!
//! The recursor keeps a cache of its own (delegations, glue, the answers of the zone cuts
//! it walked), bounded by [`RECURSOR_CACHE_ENTRIES`]; it never caches failures
//! (hickory-dns #3563).
//!
//! DNSSEC (`upstream.dnssec = "validate"`, the default here): the recursor runs in its
//! validating mode from the trust anchors (hickory's `DnssecDnsHandle`: DS and DNSKEY chains
//! fetched and checked, NSEC and NSEC3 denials verified, its own cache of validations). What
//! it found is judged per answer (`super::dnssec`): a secure answer carries AD, a bogus one
//! becomes [`UpstreamError::Bogus`] (SERVFAIL with the EDE that says why), unless the
//! client set CD, which gets the answer as it is.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::dnssec::Proof;
use hickory_resolver::proto::op::{Message, MessageType, OpCode, Query as HQuery, ResponseCode};
use hickory_resolver::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_resolver::proto::serialize::binary::{BinDecodable, BinDecoder};
use hickory_resolver::recursor::{
    DnssecConfig, DnssecPolicy, Recursor, RecursorError, RecursorOptions,
};
use ipnet::IpNet;
use std::sync::Arc;
use tokio::time::{Instant, timeout_at};

mod wait;

use super::{UpstreamError, dnssec};
use crate::config::{Dnssec, Recursion};
use crate::dns::wire::{Query, Response};
use wait::Bounded;

/// The `server` of an answer found by recursion (the recursor does not say which
/// authoritative server gave it): the query log shows it as `recursive`.
pub const RECURSIVE: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

/// Most zone cuts walked to find the servers of one name (glueless name servers' own names
/// included).
pub const MAX_REFERRAL_DEPTH: u8 = 16;
/// Most CNAME restarts (each a new resolution, in another zone) for one query.
pub const MAX_CNAME_DEPTH: u8 = 16;
/// Most CNAME records in an answer's chain (16 names, the question's included: the bound
/// the answer scrubber follows too).
pub const MAX_CNAMES: usize = 15;
/// Entries of the recursor's own cache of delegations and answers.
pub const RECURSOR_CACHE_ENTRIES: u64 = 16_384;
/// Name server pools (zone cuts) the recursor keeps.
pub const RECURSOR_ZONE_CUTS: usize = 1_024;

/// Resolves from the root; shared by the queries of one `[upstream]` snapshot that run on
/// the shared runtime (and kept across reloads that do not change it, with its cache); a
/// UDP thread resolves its own with a [`Recursive::twin`].
pub struct Recursive {
    /// The longest wait for one authoritative server (`upstream.timeout_ms`).
    wait: Duration,
    recursor: Recursor<Bounded>,
    /// The config it was built from.
    pub(super) cfg: Recursion,
    /// DNSSEC validation, when on (the config it was built from).
    pub(super) dnssec: Option<Dnssec>,
    min_ttl: u32,
    max_ttl: u32,
}

impl std::fmt::Debug for Recursive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recursive")
            .field("roots", &self.cfg.roots.len())
            .field("timeout", &self.cfg.timeout)
            .finish_non_exhaustive()
    }
}

impl Recursive {
    /// The recursor for `cfg`, its answers' TTLs clamped to `[min_ttl, max_ttl]`, waiting
    /// at most `wait` for one authoritative server. Opens nothing.
    pub fn new(
        cfg: &Recursion,
        dnssec: Option<&Dnssec>,
        wait: Duration,
        min_ttl: u32,
        max_ttl: u32,
    ) -> Result<Self, String> {
        let mut options = RecursorOptions {
            ns_cache_size: RECURSOR_ZONE_CUTS,
            response_cache_size: RECURSOR_CACHE_ENTRIES,
            recursion_limit: MAX_CNAME_DEPTH,
            ns_recursion_limit: MAX_REFERRAL_DEPTH,
            ..RecursorOptions::default()
        };
        // The recursor refuses to query loopback, private and documentation networks
        // (a public name delegated to 127.0.0.1 must not reach our own services). Root
        // hints on such a network are a lab's own root: its servers are queried there.
        let lab: Vec<IpNet> = options
            .deny_server
            .iter()
            .filter(|net| cfg.roots.iter().any(|ip| net.contains(ip)))
            .copied()
            .collect();
        options.allow_server.extend(lab);
        let policy = match dnssec {
            None => DnssecPolicy::SecurityUnaware,
            Some(d) => {
                let mut c = DnssecConfig::default();
                c.trust_anchor = Some(Arc::new(d.anchors()));
                DnssecPolicy::ValidateWithStaticKey(c)
            }
        };
        let recursor = Recursor::new(&cfg.roots, policy, None, options, Bounded::new(wait))
            .map_err(|e| format!("cannot set up the recursive resolver: {e}"))?;
        Ok(Self {
            recursor,
            wait,
            cfg: cfg.clone(),
            dnssec: dnssec.cloned(),
            min_ttl,
            max_ttl,
        })
    }

    /// A resolver of the same config with caches and connections of its own (a UDP
    /// thread's, run on that thread's runtime: the shared one's connections belong to the
    /// shared runtime). Opens nothing.
    pub fn twin(&self) -> Result<Self, String> {
        Self::new(
            &self.cfg,
            self.dnssec.as_ref(),
            self.wait,
            self.min_ttl,
            self.max_ttl,
        )
    }

    /// How long one resolution may take.
    pub fn timeout(&self) -> Duration {
        self.cfg.timeout
    }

    /// The longest wait for one server, and the bounds its answers' TTLs are clamped
    /// to: a reload that changes them builds a new resolver.
    pub fn settings(&self) -> (Duration, u32, u32) {
        (self.wait, self.min_ttl, self.max_ttl)
    }

    /// Resolves `q` from the root, ending by `deadline`.
    pub async fn resolve(&self, q: &Query, deadline: Instant) -> Result<Response, UpstreamError> {
        let malformed = UpstreamError::Malformed(RECURSIVE);
        let name = Name::read(&mut BinDecoder::new(q.wire_name()))
            .map_err(|_| malformed.clone())?
            .to_lowercase();
        if q.qclass != u16::from(DNSClass::IN) {
            return Err(UpstreamError::Recursion("only class IN is resolved".into()));
        }
        let mut hq = HQuery::query(name, RecordType::from(q.qtype));
        hq.query_class = DNSClass::IN;
        let started = std::time::Instant::now();
        let validating = self.dnssec.is_some();
        // A client that asked for DNSSEC records gets the signatures and denials too.
        let dnssec_ok = validating && q.dnssec_ok();
        let got = timeout_at(
            deadline,
            self.recursor.resolve(hq.clone(), started, dnssec_ok),
        )
        .await;
        let mut msg = Message::new(0, MessageType::Response, OpCode::Query);
        msg.metadata.recursion_desired = true;
        msg.metadata.recursion_available = true;
        let mut nsec = None;
        match got {
            Err(_) => return Err(UpstreamError::Timeout(RECURSIVE)),
            Ok(Ok(answer)) => {
                check_chain(&hq, &answer.answers)?;
                msg.metadata.response_code = answer.metadata.response_code;
                msg.answers = answer.answers;
                msg.authorities = answer.authorities;
            }
            Ok(Err(e)) => match denial(e) {
                Ok(Denial {
                    rcode,
                    answers,
                    authorities,
                    proof,
                }) => {
                    msg.metadata.response_code = rcode;
                    msg.answers = answers;
                    // A denial from a zone that is not the name's own: the name is an alias
                    // (hickory-resolver 0.26 drops the chain that led there).
                    let away = authorities
                        .iter()
                        .find(|r| r.record_type() == RecordType::SOA)
                        .is_some_and(|soa| !soa.name.zone_of(&hq.name));
                    if away && msg.answers.is_empty() {
                        msg.answers = self.chain(&hq.name, started, dnssec_ok, deadline).await;
                    }
                    msg.authorities = authorities;
                    nsec = proof;
                }
                Err(e) => {
                    tracing::debug!(query = %hq, error = %e, "recursion failed");
                    return Err(UpstreamError::Recursion(e.to_string()));
                }
            },
        }
        if matches!(
            msg.metadata.response_code,
            ResponseCode::ServFail | ResponseCode::Refused
        ) {
            return Err(UpstreamError::Recursion(format!(
                "answered {}",
                msg.metadata.response_code
            )));
        }
        let security = if validating {
            let keys = RecursorKeys {
                recursive: self,
                started,
                deadline,
            };
            Some(dnssec::settle(&hq, &mut msg, nsec, q, &keys).await?)
        } else {
            if !q.dnssec_ok() {
                dnssec::strip(&mut msg, hq.query_type);
            }
            None
        };
        msg.queries.push(hq);
        let bytes = msg.to_vec().map_err(|_| malformed.clone())?;
        let mut resp =
            Response::parse(&bytes, q, 0, self.min_ttl, self.max_ttl).map_err(|_| malformed)?;
        // A client's CD: the answer as it is, not vouched for (no AD, no `dnssec` in the log).
        if let Some(s) = security.filter(|_| !q.cd()) {
            resp.set_security(s);
        }
        Ok(resp)
    }
}

impl Recursive {
    /// The CNAME chain from `name` (with its signatures when `dnssec_ok`), asked of the
    /// recursor one link at a time (each from its cache, or from the zone's servers), by
    /// `deadline`. RFC 6604 §3: a negative answer reached through aliases keeps them.
    async fn chain(
        &self,
        name: &Name,
        started: std::time::Instant,
        dnssec_ok: bool,
        deadline: Instant,
    ) -> Vec<Record> {
        let mut out = Vec::new();
        let mut at = name.clone();
        let mut seen = vec![at.clone()];
        while seen.len() <= MAX_CNAMES {
            let mut q = HQuery::query(at.clone(), RecordType::CNAME);
            q.query_class = DNSClass::IN;
            let Ok(Ok(m)) =
                timeout_at(deadline, self.recursor.resolve(q, started, dnssec_ok)).await
            else {
                break;
            };
            let next = m.answers.iter().find_map(|r| match &r.data {
                RData::CNAME(t) if r.name == at => Some(t.0.clone()),
                _ => None,
            });
            out.extend(m.answers.into_iter().filter(|r| r.name == at));
            match next {
                Some(t) if !seen.contains(&t) => {
                    seen.push(t.clone());
                    at = t;
                }
                _ => break,
            }
        }
        out
    }
}

/// The zone keys' verdict, from the validating recursor (its cache, mostly).
struct RecursorKeys<'a> {
    recursive: &'a Recursive,
    started: std::time::Instant,
    deadline: Instant,
}

impl dnssec::Keys for RecursorKeys<'_> {
    async fn secure(&self, zone: &Name) -> bool {
        let mut q = HQuery::query(zone.clone(), RecordType::DNSKEY);
        q.query_class = DNSClass::IN;
        let got = timeout_at(
            self.deadline,
            self.recursive.recursor.resolve(q, self.started, true),
        );
        matches!(got.await, Ok(Ok(m)) if dnssec::keys_secure(&m.answers))
    }
}

/// What the recursor's error says when it is an answer after all.
struct Denial {
    rcode: ResponseCode,
    /// Empty, but for a wildcard expansion the validator judged apart.
    answers: Vec<Record>,
    authorities: Vec<Record>,
    proof: Option<Proof>,
}

/// A negative answer from the recursor's error: its rcode, authority records (SOA, and
/// NSEC or NSEC3 when validating) and, when the validator judged the denial apart, its
/// proof. Any other error is given back.
fn denial(e: RecursorError) -> Result<Denial, RecursorError> {
    let nx = e.is_nx_domain();
    let rcode = if nx {
        ResponseCode::NXDomain
    } else {
        ResponseCode::NoError
    };
    let with_soa = |soa: Option<
        Box<hickory_resolver::proto::rr::Record<hickory_resolver::proto::rr::rdata::SOA>>,
    >,
                    rest: Option<Arc<[Record]>>| {
        let mut out: Vec<Record> = rest.map(|r| r.to_vec()).unwrap_or_default();
        if let Some(soa) = soa {
            let soa = soa.into_record_of_rdata();
            if !out.contains(&soa) {
                out.insert(0, soa);
            }
        }
        out
    };
    match e {
        // The validator's verdict on a denial, or on a wildcard expansion (an answer): the
        // answers stay (see `dnssec::settle`).
        RecursorError::Net(NetError::Dns(DnsError::Nsec {
            response, proof, ..
        })) => {
            let m = response.into_message();
            Ok(Denial {
                rcode: m.metadata.response_code,
                answers: m.answers,
                authorities: m.authorities,
                proof: Some(proof),
            })
        }
        RecursorError::Net(NetError::Dns(DnsError::NoRecordsFound(nr))) => Ok(Denial {
            rcode: nr.response_code,
            answers: Vec::new(),
            authorities: with_soa(nr.soa, nr.authorities),
            proof: None,
        }),
        RecursorError::Negative(a) if nx || a.is_no_records_found() => Ok(Denial {
            rcode,
            answers: Vec::new(),
            authorities: with_soa(a.soa, a.authorities),
            proof: None,
        }),
        other => Err(other),
    }
}

/// Follows the CNAME chain of `answers` from the question's name: an error when it loops
/// or is longer than [`MAX_CNAMES`].
fn check_chain(q: &HQuery, answers: &[Record]) -> Result<(), UpstreamError> {
    if q.query_type == RecordType::CNAME {
        return Ok(());
    }
    let mut at = &q.name;
    let mut seen: Vec<&Name> = vec![at];
    loop {
        let next = answers.iter().find_map(|r| match &r.data {
            RData::CNAME(t) if &r.name == at => Some(&t.0),
            _ => None,
        });
        let Some(target) = next else {
            return Ok(());
        };
        if seen.contains(&target) {
            return Err(UpstreamError::Recursion(format!("CNAME loop at {target}")));
        }
        if seen.len() > MAX_CNAMES {
            return Err(UpstreamError::Recursion(format!(
                "CNAME chain longer than {MAX_CNAMES} from {}",
                q.name
            )));
        }
        seen.push(target);
        at = target;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::rdata::{A, CNAME};
    use std::str::FromStr;

    fn cname(from: &str, to: &str) -> Record {
        Record::from_rdata(
            Name::from_str(from).unwrap(),
            60,
            RData::CNAME(CNAME(Name::from_str(to).unwrap())),
        )
    }

    fn q(name: &str) -> HQuery {
        HQuery::query(Name::from_str(name).unwrap(), RecordType::A)
    }

    #[test]
    fn chains_are_followed_loops_and_long_ones_refused() {
        let a = Record::from_rdata(
            Name::from_str("c.test.").unwrap(),
            60,
            RData::A(A::new(192, 0, 2, 1)),
        );
        // Out of order, as the recursor appends a restart's records.
        let ok = [cname("b.test.", "c.test."), a, cname("a.test.", "b.test.")];
        assert_eq!(check_chain(&q("a.test."), &ok), Ok(()));
        let looped = [cname("a.test.", "b.test."), cname("b.test.", "a.test.")];
        let e = check_chain(&q("a.test."), &looped).unwrap_err();
        assert!(e.to_string().contains("CNAME loop at a.test."), "{e}");
        let self_loop = [cname("a.test.", "a.test.")];
        assert!(check_chain(&q("a.test."), &self_loop).is_err());
        let long: Vec<Record> = (0..=MAX_CNAMES)
            .map(|i| cname(&format!("n{i}.test."), &format!("n{}.test.", i + 1)))
            .collect();
        let e = check_chain(&q("n0.test."), &long).unwrap_err();
        assert!(e.to_string().contains("CNAME chain longer than 15"), "{e}");
        assert_eq!(
            check_chain(&q("n1.test."), &long),
            Ok(()),
            "15 links are fine"
        );
    }
}
