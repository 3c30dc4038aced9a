//! `Walker`: resolution from the root, our own. A name is asked of the deepest zone known
//! to hold it ([`Cuts`]); a referral moves the walk one zone cut down (its servers from the
//! glue, or resolved by a walk of their own when there is none), until a zone answers.
//!
//! QNAME minimisation (RFC 9156): a zone is asked for one label more than its own name, with
//! type A (§3), until the name asked is the question's; then the question's own type is
//! asked, and a referral that comes back is followed like any other. So a new name one
//! label under a known zone costs one exchange, where hickory-resolver 0.26's recursor first asks the
//! name's `NS` there too (two exchanges per new name, and a `Message` built and parsed for
//! each; see docs/performance.md). An NXDOMAIN for a shortened name is not taken as the
//! answer (RFC 9156 §2.3's relaxed mode): the full question is asked of the same zone, so
//! that the denial a validator checks is the question's own.
//!
//! CNAMEs are followed across zones by [`Walker::resolve`], which is what a client's
//! question goes through; the name servers' own addresses are found with [`Walker::find`]
//! alone.
//!
//! Work per walk is bounded by its [`Budget`]: [`MAX_QUERIES`] exchanges, the deadline,
//! [`super::MAX_REFERRAL_DEPTH`] referrals per name, [`MAX_MINIMISE_COUNT`] shortened names
//! per zone, [`MAX_GLUELESS`] glueless name servers looked up per cut, [`MAX_NESTING`] such
//! look-ups inside each other, and a zone whose servers are being looked up is never looked
//! up again inside that look-up (a referral loop ends that name server's look-up; the
//! cut's next name server is tried). A cut keeps at most [`MAX_CUT_ADDRESSES`] addresses,
//! and a cut none of whose servers answered is forgotten (learnt again from its parent).
//! Addresses on loopback, private, documentation, multicast networks (an IPv4-mapped IPv6
//! address counts as its IPv4 one) are never asked, but for the root hints' own.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use ipnet::IpNet;
use tokio::time::Instant;

use super::cuts::{Cut, Cuts, MAX_CUT_TTL};
use super::exchange::{self, Failed, Kind, Referral};
use super::{MAX_CNAMES, MAX_REFERRAL_DEPTH, RECURSOR_ZONE_CUTS};

/// Most exchanges for one client question (hickory's recursor allows 200 too).
pub(crate) const MAX_QUERIES: u16 = 200;
/// Most glueless name servers whose addresses are looked up for one zone cut.
pub(crate) const MAX_GLUELESS: usize = 5;
/// Most look-ups of name servers' addresses inside each other.
pub(crate) const MAX_NESTING: usize = 4;
/// Most shortened names asked of one zone (RFC 9156 §2.3's MAX_MINIMISE_COUNT); the whole
/// question is asked after that.
pub(crate) const MAX_MINIMISE_COUNT: u8 = 10;
/// Most addresses kept for one zone cut (from glue or looked up).
pub(crate) const MAX_CUT_ADDRESSES: usize = 16;

/// Why a walk ended without an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkError {
    /// The question's deadline passed.
    Timeout,
    /// No zone gave an answer: what failed, where.
    Failed(String),
}

impl From<WalkError> for super::UpstreamError {
    fn from(e: WalkError) -> Self {
        match e {
            WalkError::Timeout => Self::Timeout(super::RECURSIVE),
            WalkError::Failed(s) => Self::Recursion(s),
        }
    }
}

/// What one client question may still spend.
#[derive(Debug)]
pub struct Budget {
    queries: u16,
    deadline: Instant,
    /// Zones whose servers' addresses are being looked up, outermost first.
    finding: Vec<Name>,
}

impl Budget {
    /// A question's budget, ending by `deadline`.
    pub fn new(deadline: Instant) -> Self {
        Self {
            queries: MAX_QUERIES,
            deadline,
            finding: Vec::new(),
        }
    }

    /// Takes one exchange out of the budget.
    fn spend(&mut self, now: Instant) -> Result<(), WalkError> {
        if now >= self.deadline {
            return Err(WalkError::Timeout);
        }
        self.queries = self.queries.checked_sub(1).ok_or_else(|| {
            WalkError::Failed(format!("more than {MAX_QUERIES} queries for one question"))
        })?;
        Ok(())
    }
}

/// A zone's answer (as it came), or a chain of them put together.
#[derive(Debug)]
pub enum Found {
    /// One zone's answer to the question, as received.
    Raw(Vec<u8>),
    /// Answers of several zones along a CNAME chain: the chain, the last zone's rcode and
    /// authority records.
    Built(Message),
}

/// Resolves from the root; its cuts are shared by all its clones' walks.
#[derive(Debug)]
pub struct Walker {
    cuts: Mutex<Cuts>,
    /// The longest wait for one server.
    wait: Duration,
    /// DO on every query (validation needs the signatures).
    dnssec_ok: bool,
    /// Networks never asked (loopback, private, documentation: a public name delegated there
    /// must not reach the LAN's own services), but for those the root hints are on.
    deny: Vec<IpNet>,
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Walker {
    /// A walker from `roots` (port 53), waiting at most `wait` for one server, asking with DO
    /// when `dnssec_ok`, never asking a server in `deny` (unless a root is in that network).
    pub fn new(roots: &[IpAddr], wait: Duration, dnssec_ok: bool, deny: &[IpNet]) -> Self {
        let deny = deny
            .iter()
            .filter(|net| !roots.iter().any(|ip| net.contains(ip)))
            .copied()
            .collect();
        let roots = roots.iter().map(|ip| SocketAddr::new(*ip, 53)).collect();
        Self {
            cuts: Mutex::new(Cuts::new(roots, RECURSOR_ZONE_CUTS)),
            wait,
            dnssec_ok,
            deny,
        }
    }

    /// `ip` as it is asked (an IPv4-mapped IPv6 address as the IPv4 one), when it may be.
    fn allowed(&self, ip: IpAddr) -> Option<IpAddr> {
        let ip = ip.to_canonical();
        let multicast = ip.is_multicast() || ip.is_unspecified();
        (!multicast && !self.deny.iter().any(|net| net.contains(&ip))).then_some(ip)
    }

    fn cuts(&self) -> std::sync::MutexGuard<'_, Cuts> {
        self.cuts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The answer to `target` `qtype`, its CNAME chain followed across zones (at most
    /// [`MAX_CNAMES`] links, no loops), by `deadline`. `target` is lower case.
    pub async fn resolve(
        &self,
        target: &Name,
        qtype: RecordType,
        deadline: Instant,
    ) -> Result<Found, WalkError> {
        let mut b = Budget::new(deadline);
        let (first, mut zone) = self.find(target, qtype, &mut b).await?;
        if matches!(qtype, RecordType::CNAME | RecordType::ANY) || !has_cname(&first) {
            return Ok(Found::Raw(first));
        }
        let mut msg = parse(&first)?;
        let mut out = Message::response(0, msg.metadata.op_code);
        // The denial proofs of the zones passed (a wildcard's NSEC among them), for the
        // validator.
        let mut proofs: Vec<Record> = Vec::new();
        let mut seen: Vec<Name> = vec![target.clone()];
        let mut at = target.clone();
        loop {
            let from = seen.len() - 1;
            let done = follow(&msg, &zone, &mut at, qtype, &mut seen)?;
            let on_chain = seen.get(from..).unwrap_or_default();
            // The chain's records, and the DNAMEs (with their signatures) above its names
            // that the CNAMEs were made from (RFC 6672 §3).
            let dname = |r: &Record| {
                matches!(r.record_type(), RecordType::DNAME | RecordType::RRSIG)
                    && on_chain.iter().any(|c| r.name.zone_of(c))
            };
            out.answers.extend(
                msg.answers
                    .iter()
                    .filter(|r| zone.zone_of(&r.name) && (on_chain.contains(&r.name) || dname(r)))
                    .cloned(),
            );
            let moved = seen.len() - 1 > from;
            // A chain that left the zone goes on there, whatever this zone said of a name
            // it does not hold.
            let left = !zone.zone_of(&at);
            let ended = msg.metadata.response_code != ResponseCode::NoError && !left;
            if done || !moved || ended {
                out.metadata.response_code = msg.metadata.response_code;
                out.authorities = std::mem::take(&mut msg.authorities);
                out.authorities.extend(proofs);
                return Ok(Found::Built(out));
            }
            proofs.extend(msg.authorities.drain(..).filter(|r| {
                zone.zone_of(&r.name)
                    && matches!(
                        r.record_type(),
                        RecordType::NSEC | RecordType::NSEC3 | RecordType::RRSIG
                    )
            }));
            let (next, next_zone) = self.find(&at, qtype, &mut b).await?;
            msg = parse(&next)?;
            zone = next_zone;
        }
    }

    /// The answer of the zone that holds `target` `qtype` (a CNAME not followed out of it),
    /// and that zone.
    pub async fn find(
        &self,
        target: &Name,
        qtype: RecordType,
        b: &mut Budget,
    ) -> Result<(Vec<u8>, Name), WalkError> {
        let n = target.num_labels();
        let mut cut =
            self.cuts()
                .closest(target, qtype == RecordType::DS, std::time::Instant::now());
        let mut labels = (cut.zone.num_labels() + 1).min(n);
        let mut referrals = 0u8;
        let mut minimised = 0u8;
        loop {
            // RFC 9156 §2.3: a zone is asked at most MAX_MINIMISE_COUNT shortened names (a
            // wildcard zone answers every one of a name of 120 labels).
            if minimised >= MAX_MINIMISE_COUNT {
                labels = n;
            }
            let last = labels >= n;
            if !last {
                minimised += 1;
            }
            let asked = if last {
                target.clone()
            } else {
                target.trim_to(usize::from(labels))
            };
            let atype = if last { qtype } else { RecordType::A };
            let (pkt, kind) = self.ask(&cut, &asked, atype, b).await?;
            match kind {
                Kind::Answer if last => return Ok((pkt, cut.zone.clone())),
                // No cut at that name: one label more.
                Kind::Answer if pkt.get(3).is_some_and(|f| f & 0x0F == 0) => labels += 1,
                // NXDOMAIN for a shortened name: the question itself, of the same zone.
                Kind::Answer => labels = n,
                Kind::Referral(r) => {
                    if qtype == RecordType::DS && last && r.zone == *target {
                        return Err(WalkError::Failed(format!(
                            "{} referred the DS of {target} to its own zone",
                            cut.zone
                        )));
                    }
                    referrals += 1;
                    if referrals > MAX_REFERRAL_DEPTH {
                        return Err(WalkError::Failed(format!(
                            "more than {MAX_REFERRAL_DEPTH} referrals for {target}"
                        )));
                    }
                    let from = cut.zone.clone();
                    cut = self.enter(&from, r, b).await?;
                    labels = (cut.zone.num_labels() + 1).min(n);
                    minimised = 0;
                }
                Kind::Lame => {
                    return Err(WalkError::Failed(format!(
                        "no usable answer from the servers of {}",
                        cut.zone
                    )));
                }
            }
        }
    }

    /// `find`, boxed: it runs inside itself when name servers' addresses are looked up.
    fn find_boxed<'a>(
        &'a self,
        target: &'a Name,
        qtype: RecordType,
        b: &'a mut Budget,
    ) -> Boxed<'a, Result<(Vec<u8>, Name), WalkError>> {
        Box::pin(self.find(target, qtype, b))
    }

    /// Asks the servers of `cut` in turn until one gives an answer that is of use.
    async fn ask(
        &self,
        cut: &Cut,
        asked: &Name,
        atype: RecordType,
        b: &mut Budget,
    ) -> Result<(Vec<u8>, Kind), WalkError> {
        let mut sent = exchange::query(asked, atype, 0, self.dnssec_ok);
        let mut why = "no server";
        for (i, server) in cut.order() {
            let now = Instant::now();
            b.spend(now)?;
            exchange::set_id(&mut sent, rand::random());
            let until = (now + self.wait).min(b.deadline);
            match exchange::ask(server, &sent, until).await {
                Ok(pkt) => match exchange::classify(&pkt, &cut.zone, asked) {
                    Kind::Lame => why = "no usable answer",
                    kind => {
                        cut.answered(i);
                        return Ok((pkt, kind));
                    }
                },
                Err(Failed::Silent) => why = "no answer in time",
                Err(Failed::Io) => why = "unreachable",
            }
        }
        if Instant::now() >= b.deadline {
            return Err(WalkError::Timeout);
        }
        // None of its servers answered: the next question learns the zone's servers again
        // from its parent (they may have moved).
        self.cuts().forget(cut);
        Err(WalkError::Failed(format!(
            "{why} from the servers of {} for {asked} {atype}",
            cut.zone
        )))
    }

    /// The cut a referral from `from` leads to, its servers' addresses from the glue, or
    /// looked up when it has none; kept for the walks that follow.
    async fn enter(&self, from: &Name, r: Referral, b: &mut Budget) -> Result<Arc<Cut>, WalkError> {
        let mut addrs: Vec<SocketAddr> = r
            .glue
            .iter()
            .filter_map(|(_, ip)| self.allowed(*ip))
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        if addrs.is_empty() {
            if b.finding.contains(&r.zone) {
                return Err(WalkError::Failed(format!(
                    "referral loop: the servers of {} are named only inside it (from {from})",
                    r.zone
                )));
            }
            if b.finding.len() >= MAX_NESTING {
                return Err(WalkError::Failed(format!(
                    "name servers of {} need more than {MAX_NESTING} look-ups inside each other",
                    r.zone
                )));
            }
            b.finding.push(r.zone.clone());
            for ns in r.servers.iter().take(MAX_GLUELESS) {
                // A name inside the zone itself cannot be looked up without glue.
                if r.zone.zone_of(ns) {
                    continue;
                }
                match self.addresses(ns, b).await {
                    Ok(found) => addrs.extend(
                        found
                            .into_iter()
                            .filter_map(|ip| self.allowed(ip))
                            .map(|ip| SocketAddr::new(ip, 53)),
                    ),
                    Err(WalkError::Timeout) => {
                        b.finding.pop();
                        return Err(WalkError::Timeout);
                    }
                    // A loop or a dead end through this name server: the next one may do.
                    Err(WalkError::Failed(_)) => {}
                }
                if !addrs.is_empty() {
                    break;
                }
            }
            b.finding.pop();
        }
        if addrs.is_empty() {
            return Err(WalkError::Failed(format!(
                "no usable address for the name servers of {} (from {from})",
                r.zone
            )));
        }
        addrs.sort_by_key(SocketAddr::is_ipv6);
        let mut unique: Vec<SocketAddr> = Vec::with_capacity(addrs.len().min(MAX_CUT_ADDRESSES));
        for a in addrs {
            if unique.len() < MAX_CUT_ADDRESSES && !unique.contains(&a) {
                unique.push(a);
            }
        }
        let addrs = unique;
        let ttl = Duration::from_secs(u64::from(r.ttl)).min(MAX_CUT_TTL);
        let now = std::time::Instant::now();
        let cut = Arc::new(Cut::new(r.zone, addrs, Some(now + ttl)));
        self.cuts().insert(Arc::clone(&cut), now);
        Ok(cut)
    }

    /// The IPv4 addresses of name server `ns`.
    async fn addresses(&self, ns: &Name, b: &mut Budget) -> Result<Vec<IpAddr>, WalkError> {
        let (pkt, _) = self.find_boxed(ns, RecordType::A, b).await?;
        let msg = parse(&pkt)?;
        Ok(msg
            .answers
            .iter()
            .filter(|r| r.name == *ns)
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect())
    }
}

/// True when the answer section of `pkt` holds a CNAME record.
fn has_cname(pkt: &[u8]) -> bool {
    crate::dns::wire::answer_has_type(pkt, crate::dns::wire::TYPE_CNAME)
}

fn parse(pkt: &[u8]) -> Result<Message, WalkError> {
    Message::from_vec(pkt).map_err(|e| WalkError::Failed(format!("malformed answer: {e}")))
}

/// Follows the CNAMEs of `msg` (the answer of `zone`) from `at` (moving it along, each
/// name into `seen`); true when records of `qtype` are at the end of the chain. Only names
/// of `zone` are read: where the chain leaves it, what the zone's server said of the name
/// there is not taken (it is asked of its own zone). A loop, or more than [`MAX_CNAMES`]
/// links in all, is an error.
fn follow(
    msg: &Message,
    zone: &Name,
    at: &mut Name,
    qtype: RecordType,
    seen: &mut Vec<Name>,
) -> Result<bool, WalkError> {
    loop {
        if !zone.zone_of(at) {
            return Ok(false);
        }
        let here = |r: &&Record| r.name == *at;
        if msg
            .answers
            .iter()
            .filter(here)
            .any(|r| r.record_type() == qtype)
        {
            return Ok(true);
        }
        let next = msg.answers.iter().filter(here).find_map(|r| match &r.data {
            RData::CNAME(t) => Some(t.0.to_lowercase()),
            _ => None,
        });
        let Some(next) = next else {
            return Ok(false);
        };
        if seen.contains(&next) {
            return Err(WalkError::Failed(format!("CNAME loop at {next}")));
        }
        if seen.len() > MAX_CNAMES {
            return Err(WalkError::Failed(format!(
                "CNAME chain longer than {MAX_CNAMES} from {}",
                seen.first().unwrap_or(at)
            )));
        }
        seen.push(next.clone());
        *at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::rdata::{A, CNAME};
    use std::str::FromStr;

    fn n(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    fn cname(from: &str, to: &str) -> Record {
        Record::from_rdata(n(from), 60, RData::CNAME(CNAME(n(to))))
    }

    fn a(owner: &str) -> Record {
        Record::from_rdata(n(owner), 60, RData::A(A::new(192, 0, 2, 1)))
    }

    fn answer(records: Vec<Record>) -> Message {
        let mut m = Message::response(1, hickory_resolver::proto::op::OpCode::Query);
        m.answers = records;
        m
    }

    fn walk(m: &Message, zone: &str, from: &str) -> (Result<bool, WalkError>, Name, usize) {
        let mut at = n(from);
        let mut seen = vec![at.clone()];
        let got = follow(m, &n(zone), &mut at, RecordType::A, &mut seen);
        (got, at, seen.len())
    }

    #[test]
    fn a_chain_is_followed_inside_the_zone_only() {
        // Out of order, as servers may write them.
        let m = answer(vec![
            a("c.example.test."),
            cname("b.example.test.", "c.example.test."),
            cname("a.example.test.", "b.example.test."),
        ]);
        let (got, at, seen) = walk(&m, "example.test.", "a.example.test.");
        assert_eq!(got, Ok(true));
        assert_eq!((at, seen), (n("c.example.test."), 3));
        // The zone's server also says what the other zone's name is: not taken.
        let m = answer(vec![
            cname("www.example.test.", "cdn.other.test."),
            a("cdn.other.test."),
        ]);
        let (got, at, _) = walk(&m, "example.test.", "www.example.test.");
        assert_eq!(got, Ok(false), "asked of other.test. instead");
        assert_eq!(at, n("cdn.other.test."));
        // No CNAME, no data: the end.
        let (got, at, seen) = walk(&answer(vec![]), "example.test.", "x.example.test.");
        assert_eq!((got, at, seen), (Ok(false), n("x.example.test."), 1));
    }

    #[test]
    fn loops_and_long_chains_are_errors() {
        let m = answer(vec![
            cname("a.test.", "b.test."),
            cname("b.test.", "a.test."),
        ]);
        let (got, ..) = walk(&m, "test.", "a.test.");
        assert_eq!(got, Err(WalkError::Failed("CNAME loop at a.test.".into())));
        let (got, ..) = walk(
            &answer(vec![cname("a.test.", "a.test.")]),
            "test.",
            "a.test.",
        );
        assert!(got.is_err());
        let long: Vec<Record> = (0..=MAX_CNAMES)
            .map(|i| cname(&format!("n{i}.test."), &format!("n{}.test.", i + 1)))
            .collect();
        let (got, ..) = walk(&answer(long.clone()), "test.", "n0.test.");
        assert_eq!(
            got,
            Err(WalkError::Failed(
                "CNAME chain longer than 15 from n0.test.".into()
            ))
        );
        let (got, at, _) = walk(&answer(long), "test.", "n1.test.");
        assert_eq!((got, at), (Ok(false), n("n16.test.")), "15 links are fine");
    }

    #[test]
    fn mapped_private_and_multicast_addresses_are_not_asked() {
        let deny = hickory_resolver::recursor::RecursorOptions::default().deny_server;
        let root: IpAddr = [198, 41, 0, 4].into();
        let w = Walker::new(
            &[root, [10, 0, 0, 1].into()],
            Duration::from_secs(1),
            false,
            &deny,
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(w.allowed(ip("::ffff:127.0.0.1")), None);
        assert_eq!(w.allowed(ip("::ffff:192.168.1.1")), None);
        assert_eq!(w.allowed(ip("192.168.1.1")), None);
        assert_eq!(w.allowed(ip("224.0.0.251")), None);
        assert_eq!(w.allowed(ip("::ffff:8.8.8.8")), Some(ip("8.8.8.8")));
        assert_eq!(w.allowed(ip("9.9.9.9")), Some(ip("9.9.9.9")));
        assert_eq!(
            w.allowed(ip("10.1.2.3")),
            Some(ip("10.1.2.3")),
            "a root's own network"
        );
    }

    #[test]
    fn a_spent_budget_stops_the_walk() {
        let mut b = Budget::new(Instant::now() + Duration::from_secs(60));
        for _ in 0..MAX_QUERIES {
            b.spend(Instant::now()).unwrap();
        }
        assert!(matches!(b.spend(Instant::now()), Err(WalkError::Failed(_))));
        let mut late = Budget::new(Instant::now());
        assert_eq!(late.spend(Instant::now()), Err(WalkError::Timeout));
    }
}
