//! `Recursive`: the upstream kind of `upstream.mode = "recursive"`. A miss is resolved from
//! the root by our own walk (`walk`: referrals followed down the zone cuts with QNAME
//! minimisation, glue checked against the bailiwick, glueless name servers looked up,
//! CNAMEs followed across zones) instead of being forwarded; what it finds is the same
//! [`Response`] a forwarded answer is, so the answer checks, the cache and the log treat
//! both alike.
//!
//! Why not hickory-resolver's recursor (used here until 2026-12-07): it asks the zone for
//! the `NS` of every new name before the name's own type (two exchanges per miss where
//! unbound makes one), and builds, encodes, parses and caches a `Message` per exchange;
//! a miss cost 2.2 to 2.9 times unbound's CPU (docs/performance.md). The walk sends one
//! query for a new name one label under a known zone, and hands the zone's answer on as it
//! came.
//!
//! Work per query is bounded (see `walk`): referral depth ([`MAX_REFERRAL_DEPTH`] zone
//! cuts for one name), CNAME chain ([`MAX_CNAMES`] links, loops refused), upstream queries
//! (200 per walk; a validated question adds a walk for each DNSKEY or DS set the validator
//! lacks, all within the same deadline), QNAME minimisation steps (10 per zone), glueless
//! name servers (5 looked up per cut), and time: one
//! authoritative server is waited for at most `upstream.timeout_ms` (then the next is
//! tried, and the one that answers is asked first next time), and the whole resolution ends
//! by `arrived + upstream.recursion_timeout_ms`.
//!
//! The walk keeps the zone cuts it found ([`RECURSOR_ZONE_CUTS`], until their NS TTL ends);
//! answers are kept by the answer cache, failures by its failure cache.
//!
//! DNSSEC (`upstream.dnssec = "validate"`, the default here): every query carries DO, and
//! what the walk found is checked by the validator forward mode uses (hickory's
//! `DnssecDnsHandle`: DS and DNSKEY chains fetched, by walks of their own, and checked from
//! the trust anchors, NSEC and NSEC3 denials verified). A secure answer carries AD, a bogus
//! one becomes [`UpstreamError::Bogus`] (SERVFAIL with the EDE that says why), unless the
//! client set CD, which gets the answer as it is.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::proto::op::Query as HQuery;
use hickory_resolver::proto::rr::{DNSClass, Name, RecordType};
use hickory_resolver::proto::serialize::binary::{BinDecodable, BinDecoder};
use hickory_resolver::recursor::RecursorOptions;
use tokio::time::Instant;

mod cuts;
mod exchange;
pub(super) mod walk;

use super::validate::Validator;
use super::{UpstreamError, dnssec};
use crate::config::{Dnssec, Recursion};
use crate::dns::wire::{Query, Response};
use walk::{Found, WalkError, Walker};

pub use exchange::{Kind, Referral, classify};

/// The `server` of an answer found by recursion (the walk may ask several authoritative
/// servers for one answer): the query log shows it as `recursive`.
pub const RECURSIVE: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

/// Most zone cuts walked to find the servers of one name.
pub const MAX_REFERRAL_DEPTH: u8 = 16;
/// Most CNAME records in an answer's chain (16 names, the question's included: the bound
/// the answer scrubber follows too).
pub const MAX_CNAMES: usize = 15;
/// Zone cuts the walk keeps.
pub const RECURSOR_ZONE_CUTS: usize = 4_096;

/// Resolves from the root; shared by the queries of one `[upstream]` snapshot (and kept
/// across reloads that do not change it, with its zone cuts); a UDP thread resolves with a
/// [`Recursive::twin`].
pub struct Recursive {
    /// The longest wait for one authoritative server (`upstream.timeout_ms`).
    wait: Duration,
    walker: Arc<Walker>,
    /// Validation of what the walk found, when on.
    validator: Option<Arc<Validator>>,
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
    /// The resolver for `cfg`, its answers' TTLs clamped to `[min_ttl, max_ttl]`, waiting
    /// at most `wait` for one authoritative server. Opens nothing.
    pub fn new(
        cfg: &Recursion,
        dnssec: Option<&Dnssec>,
        wait: Duration,
        min_ttl: u32,
        max_ttl: u32,
    ) -> Result<Self, String> {
        if cfg.roots.is_empty() {
            return Err("cannot set up the recursive resolver: no root servers".into());
        }
        // Loopback, private and documentation networks are never asked (hickory's list of
        // them): a public name delegated to 127.0.0.1 must not reach our own services.
        // Root hints on such a network are a lab's own root: its servers are asked there.
        let deny = RecursorOptions::default().deny_server;
        let walker = Arc::new(Walker::new(&cfg.roots, wait, dnssec.is_some(), &deny));
        let validator = dnssec.map(|d| {
            Arc::new(Validator::walking(
                Arc::clone(&walker),
                cfg.timeout,
                d,
                min_ttl,
                max_ttl,
            ))
        });
        Ok(Self {
            wait,
            walker,
            validator,
            cfg: cfg.clone(),
            dnssec: dnssec.cloned(),
            min_ttl,
            max_ttl,
        })
    }

    /// The same resolver for a UDP thread's runtime: the walk opens a socket per exchange on
    /// the runtime that runs it, so the zone cuts and the validator's caches are shared.
    pub fn twin(&self) -> Result<Self, String> {
        Ok(Self {
            wait: self.wait,
            walker: Arc::clone(&self.walker),
            validator: self.validator.clone(),
            cfg: self.cfg.clone(),
            dnssec: self.dnssec.clone(),
            min_ttl: self.min_ttl,
            max_ttl: self.max_ttl,
        })
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
        if q.qclass != u16::from(DNSClass::IN) {
            return Err(UpstreamError::Recursion("only class IN is resolved".into()));
        }
        // Validated unless the client's CD asks for the answer as it is.
        if let Some(v) = &self.validator
            && !q.cd()
        {
            let arrived = deadline
                .checked_sub(self.cfg.timeout)
                .unwrap_or_else(Instant::now);
            // Boxed: the validation's future is several KiB, and the plain walk's task
            // would carry (and copy) it too.
            return Box::pin(v.resolve(q, arrived, deadline))
                .await
                .map(|(r, _)| r);
        }
        let name = Name::read(&mut BinDecoder::new(q.wire_name()))
            .map_err(|_| malformed.clone())?
            .to_lowercase();
        let qtype = RecordType::from(q.qtype);
        let found = self
            .walker
            .resolve(&name, qtype, deadline)
            .await
            .inspect_err(|e| {
                if let WalkError::Failed(s) = e {
                    tracing::debug!(query = %name, %qtype, error = %s, "recursion failed");
                }
            })?;
        // With CD, a client that did not set DO still gets no DNSSEC records.
        let strip = self.validator.is_some() && !q.dnssec_ok();
        let mut msg = match found {
            Found::Raw(mut pkt) if !strip => {
                // The authoritative server's AA and AD are not ours to relay: AD only from
                // our own validation (none here), and the answer is not authoritative here.
                unflag(&mut pkt);
                let id = pkt
                    .get(..2)
                    .and_then(|b| <[u8; 2]>::try_from(b).ok())
                    .map_or(0, u16::from_be_bytes);
                return Response::parse(&pkt, q, id, self.min_ttl, self.max_ttl)
                    .map_err(|_| malformed);
            }
            Found::Raw(pkt) => hickory_resolver::proto::op::Message::from_vec(&pkt)
                .map_err(|_| malformed.clone())?,
            Found::Built(m) => m,
        };
        if strip {
            dnssec::strip(&mut msg, qtype);
        }
        let mut hq = HQuery::query(name, qtype);
        hq.query_class = DNSClass::IN;
        msg.queries = vec![hq];
        msg.edns = None;
        msg.metadata.id = 0;
        msg.metadata.recursion_desired = true;
        msg.metadata.recursion_available = true;
        msg.metadata.authoritative = false;
        msg.metadata.authentic_data = false;
        let bytes = msg.to_vec().map_err(|_| malformed.clone())?;
        Response::parse(&bytes, q, 0, self.min_ttl, self.max_ttl).map_err(|_| malformed)
    }
}
/// Clears AA and AD in the header of message `pkt`.
fn unflag(pkt: &mut [u8]) {
    if let Some(f) = pkt.get_mut(2) {
        *f &= !0x04;
    }
    if let Some(f) = pkt.get_mut(3) {
        *f &= !0x20;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP thread spawns a task per recursive miss, and the task's future is copied
    /// into place: the validation's future (about 5.5 KiB here) is boxed so that a plain
    /// walk's task does not carry it (7,288 bytes before, 1,800 after, in a debug build).
    #[test]
    fn a_resolutions_future_stays_small() {
        let cfg = Recursion {
            roots: vec![std::net::IpAddr::from([127, 0, 0, 1])],
            hints_file: None,
            timeout: Duration::from_secs(1),
        };
        let r = Recursive::new(&cfg, None, Duration::from_secs(1), 0, 100).unwrap();
        let q = Query::blank();
        let f = r.resolve(&q, Instant::now());
        assert!(
            std::mem::size_of_val(&f) < 4096,
            "{}",
            std::mem::size_of_val(&f)
        );
    }
}
