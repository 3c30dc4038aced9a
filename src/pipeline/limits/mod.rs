//! `Limits`: per-client query rate limits with bans, and response-rate limiting (RRL).
//!
//! The stage ([`Limits::check`]) comes right after access control: a stranger refused
//! there costs no table entry, and a client over its rate learns nothing more than a
//! stranger would. Each client address not in `limits.exempt` has a token bucket of
//! `limits.burst` refilled at `limits.qps`; the query that finds it empty starts a ban of
//! `limits.ban_s`, during which every query gets REFUSED (or nothing, `ban_action = "drop"`).
//! A ban is logged once (one WARN when it starts) and counted; the query that started it is
//! in the query log, the ones refused during it are only counted (they can come at line
//! rate, and the log would then hold the flood).
//!
//! RRL ([`LimitState::rrl`]) is applied by the handler to what is about to be sent over UDP
//! (TCP cannot be spoofed): per client network (`/24`, `/56`) and answer identity, at most
//! `limits.rrl_rps` identical answers a second; above it answers are dropped, except every
//! `rrl_slip`-th, sent truncated so that a real client retries over TCP. The identity is
//! the name and type for ordinary answers, and one class each for blocked answers (of a
//! type), NXDOMAIN and errors: random names under a blocked or non-existent domain are all
//! the same answer to a victim, as BIND keys NXDOMAIN by zone.
//!
//! The per-client and RRL state live in the pipeline ([`LimitState`]), not in the policy
//! snapshot: a reload changes the rates but keeps the buckets and bans. Both tables have a
//! fixed size ([`table`]); time is `req.now`, so tests move a clock instead of sleeping.

pub mod bucket;
pub mod table;

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use super::access::EDE_PROHIBITED;
use super::flow::{Answer, Reply};
use super::request::{Now, Request, Transport};
use super::{Action, Outcome};
use crate::config::{BanAction, LimitsConfig};
use crate::counters::{Counters, LimitEvent};
use crate::dns::wire::{self, rcode};
use bucket::{Rrl, Take};
use table::Table;

/// The `[limits]` settings a decision reads: part of the policy snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    qps: u32,
    burst: u32,
    ban_ms: u64,
    action: BanAction,
    exempt: Exempt,
    rrl_rps: u32,
    rrl_slip: u32,
    v4_mask: u128,
    v6_mask: u128,
}

impl Default for Limits {
    /// No limits (a policy built without a config).
    fn default() -> Self {
        Self::new(&LimitsConfig::off())
    }
}

/// The mask of the first `bits` of 128.
fn mask(bits: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(bits.min(128)))
        .unwrap_or(0)
}

/// An address as one 128-bit number (IPv4 as IPv4-mapped IPv6).
fn key_of(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Milliseconds since `base`, plus one (a table stamp is never 0).
fn ms(base: Instant, now: Now) -> u64 {
    let d = now.mono.saturating_duration_since(base);
    d.as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(d.subsec_millis()))
        .saturating_add(1)
}

impl Limits {
    /// The settings of `[limits]`.
    pub fn new(cfg: &LimitsConfig) -> Self {
        let max = crate::config::limits::MAX_RATE;
        Self {
            qps: cfg.qps.min(max),
            burst: cfg.burst.clamp(1, max),
            ban_ms: u64::try_from(cfg.ban.as_millis()).unwrap_or(u64::MAX),
            action: cfg.ban_action,
            exempt: Exempt::new(&cfg.exempt),
            rrl_rps: cfg.rrl_rps.min(max),
            rrl_slip: cfg.rrl_slip,
            // IPv4 networks are counted inside the IPv4-mapped range (96 bits before them).
            v4_mask: mask(96 + cfg.rrl_ipv4_prefix.min(32)),
            v6_mask: mask(cfg.rrl_ipv6_prefix),
        }
    }

    /// The stage: a client within its rate (or exempt, or with limits off) goes on
    /// (`None`); one over it is refused for the ban. Costs one branch with
    /// `limits.qps = 0`. Unlike other stages it says more than a [`super::Flow`]: whether the
    /// refusal is logged.
    pub fn check(
        &self,
        state: &LimitState,
        req: &Request<'_>,
        counters: &Counters,
    ) -> Option<Refusal> {
        if self.qps == 0 {
            return None;
        }
        let ip = req.client.ip();
        let key = key_of(ip);
        if self.exempt.contains(key) {
            return None;
        }
        let now = ms(state.base, req.now);
        let (take, evicted) = state.clients.with(key, |s, fresh| {
            bucket::take(s, fresh, now, self.qps, self.burst, self.ban_ms)
        });
        if evicted {
            counters.limit(LimitEvent::Evicted);
        }
        let quiet = match take {
            Take::Pass => return None,
            Take::PassAgain => {
                tracing::debug!(client = %ip, "client back within its query rate");
                return None;
            }
            Take::Started => {
                counters.limit(LimitEvent::Ban);
                if let Some(suppressed) = state.warnings.allow(now) {
                    tracing::warn!(
                        client = %ip,
                        qps = self.qps,
                        burst = self.burst,
                        ban_s = self.ban_ms / 1000,
                        suppressed,
                        "client over its query rate: refused until the ban ends"
                    );
                }
                false
            }
            Take::Refused => true,
        };
        counters.limit(LimitEvent::Refused);
        let reply = match self.action {
            BanAction::Refuse => Reply::Error {
                rcode: rcode::REFUSED,
                ede: Some((EDE_PROHIBITED, "rate limited".into())),
                dnssec: None,
            },
            BanAction::Drop => Reply::Nothing {
                rcode: rcode::REFUSED,
            },
        };
        Some(Refusal {
            answer: Answer::new(Action::Rejected, reply),
            quiet,
        })
    }

    /// True when response-rate limiting is on.
    pub fn rrl_on(&self) -> bool {
        self.rrl_rps > 0
    }

    /// What RRL needs to judge this query's answer, or `None` when RRL does not apply (off,
    /// not UDP, an exempt client). Taken before the answer is made: a forward's future
    /// carries it, so that the answer is judged without the query.
    pub fn rrl_key(&self, state: &LimitState, req: &Request<'_>) -> Option<RrlKey> {
        if self.rrl_rps == 0 || req.transport != Transport::Udp {
            return None;
        }
        let ip = req.client.ip();
        let key = key_of(ip);
        if self.exempt.contains(key) {
            return None;
        }
        let net = match ip.to_canonical() {
            IpAddr::V4(_) => key & self.v4_mask,
            IpAddr::V6(_) => key & self.v6_mask,
        };
        let q = &req.query;
        Some(RrlKey {
            net,
            name: state.hasher.hash_one((q.name(), q.qtype)),
            qtype: q.qtype,
            question_len: u16::try_from(q.question_len()).unwrap_or(u16::MAX),
            now: ms(state.base, req.now),
            rps: self.rrl_rps,
            slip: self.rrl_slip,
        })
    }
}

/// A query refused by the rate limits.
#[derive(Debug)]
pub struct Refusal {
    /// REFUSED, or nothing (`ban_action = "drop"`).
    pub answer: Answer,
    /// Counted but not logged: refused during a ban that an earlier query started.
    pub quiet: bool,
}

/// The exempt networks as sorted, inclusive ranges of [`key_of`] numbers: a few, scanned
/// in line (the default has two), or many, searched.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Exempt(Vec<(u128, u128)>);

impl Exempt {
    fn new(nets: &[ipnet::IpNet]) -> Self {
        let mut r: Vec<(u128, u128)> = ipnet::IpNet::aggregate(&nets.to_vec())
            .iter()
            .map(|n| (key_of(n.network()), key_of(n.broadcast())))
            .collect();
        r.sort_unstable();
        Self(r)
    }

    fn contains(&self, key: u128) -> bool {
        if self.0.len() <= 8 {
            return self.0.iter().any(|&(lo, hi)| lo <= key && key <= hi);
        }
        let i = self.0.partition_point(|&(lo, _)| lo <= key);
        i.checked_sub(1)
            .and_then(|i| self.0.get(i))
            .is_some_and(|&(_, hi)| key <= hi)
    }
}

/// One query's RRL facts (see [`Limits::rrl_key`]).
#[derive(Debug, Clone, Copy)]
pub struct RrlKey {
    /// The client's network.
    net: u128,
    /// A keyed hash of the name and type.
    name: u64,
    qtype: u16,
    question_len: u16,
    now: u64,
    rps: u32,
    slip: u32,
}

/// The rate limits' state: the client table and the RRL table, kept across reloads.
#[derive(Debug)]
pub struct LimitState {
    /// Time 0 of the tables' stamps.
    base: Instant,
    clients: Table,
    rrl: Table,
    hasher: foldhash::fast::RandomState,
    warnings: WarnBudget,
}

impl LimitState {
    /// Tables of `max_clients` entries each (allocated as they are used).
    pub fn new(max_clients: u32) -> Self {
        let n = usize::try_from(max_clients).unwrap_or(usize::MAX);
        Self {
            base: Instant::now(),
            clients: Table::new(n),
            rrl: Table::new(n),
            hasher: foldhash::fast::RandomState::default(),
            warnings: WarnBudget::default(),
        }
    }

    /// The client table (for measurements).
    pub fn clients(&self) -> &Table {
        &self.clients
    }

    /// The RRL table (for measurements).
    pub fn rrl_table(&self) -> &Table {
        &self.rrl
    }

    /// Bytes both tables hold now.
    pub fn bytes(&self) -> usize {
        self.clients.bytes() + self.rrl.bytes()
    }

    /// Response-rate limiting of one UDP answer, written in `out` with outcome `o`: sends
    /// it as it is, drops it (`out` emptied), or cuts it to a truncated answer. A dropped or
    /// truncated answer is counted, not logged.
    pub fn rrl(&self, k: &RrlKey, o: &mut Outcome, out: &mut Vec<u8>, counters: &Counters) {
        // The answer's identity: ordinary answers by name and type; blocked answers of a
        // type, NXDOMAIN and errors each as one, whatever the name.
        let identity = match (o.action, o.rcode) {
            (Action::Blocked, _) => (1, u64::from(k.qtype)),
            (_, rcode::NOERROR) => (0, k.name),
            (_, rcode::NXDOMAIN) => (2, 0),
            _ => (3, 0),
        };
        let key = u128::from(self.hasher.hash_one((k.net, identity)));
        let (verdict, evicted) = self.rrl.with(key, |s, fresh| {
            bucket::respond(s, fresh, k.now, k.rps, k.slip)
        });
        if evicted {
            counters.limit(LimitEvent::RrlEvicted);
        }
        match verdict {
            Rrl::Send => {}
            Rrl::Drop => {
                out.clear();
                o.quiet = true;
                counters.limit(LimitEvent::RrlDropped);
            }
            Rrl::Slip => {
                wire::truncate_to_question(out, usize::from(k.question_len));
                o.quiet = true;
                counters.limit(LimitEvent::RrlSlipped);
            }
        }
    }
}

/// Ban WARNs let through: at most [`WarnBudget::PER_SECOND`] a second, so that a flood of
/// bans (many spoofed sources) cannot flood the log; the next one let through says how
/// many were left out. Every ban is counted either way.
#[derive(Debug, Default)]
struct WarnBudget {
    second: AtomicU64,
    used: AtomicU64,
    suppressed: AtomicU64,
}

impl WarnBudget {
    const PER_SECOND: u64 = 10;

    /// `Some(bans not logged since the last one)` when this one may be logged.
    fn allow(&self, now_ms: u64) -> Option<u64> {
        let second = now_ms / 1000;
        if self.second.swap(second, Relaxed) != second {
            self.used.store(0, Relaxed);
        }
        if self.used.fetch_add(1, Relaxed) < Self::PER_SECOND {
            Some(self.suppressed.swap(0, Relaxed))
        } else {
            self.suppressed.fetch_add(1, Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests;
