//! Client sessions and `new` marks, kept by the log writer (one task, so no locking).
//!
//! A client's session ends when it has been silent for `log.session_gap_s`; the next query
//! opens session n+1 with seq 1. The registrable domains (Public Suffix List, `psl` crate)
//! a client has asked are remembered per client, so memory is bounded: at most
//! [`MAX_CLIENTS`] clients × [`MAX_DOMAINS`] domains. A domain is remembered by a 64-bit
//! hash with a per-process random seed, in a table of sets of [`WAYS`] (set-associative,
//! as a CPU cache is): a hash goes to the set its high bits name, and a new one forgets the
//! least recently asked of that set. No allocation per query, two cache lines per look; two
//! domains of one client share a hash with odds of about 2^-52, and a client cannot aim for
//! it. State lives in memory only: after a restart sessions count from 1 again and every
//! domain is `new` once more.

use std::hash::BuildHasher as _;
use std::net::IpAddr;
use std::num::NonZeroUsize;

use lru::LruCache;

/// Clients remembered (least recently seen are forgotten first).
pub const MAX_CLIENTS: usize = 4096;
/// Registrable domains remembered per client.
pub const MAX_DOMAINS: usize = 2048;
/// Domains per set of a client's table (16 hashes: two 64-byte cache lines).
pub const WAYS: usize = 16;
/// Slots of a new client's table; it doubles while more than a quarter is in use, up to
/// twice [`MAX_DOMAINS`]. Sets fill unevenly, so a client that asked for `MAX_DOMAINS`
/// domains has lost 1 to 3% of them early (measured by the test below).
const FIRST_SLOTS: usize = 64;

/// The registrable domains a client asked, as hashes (0: an empty slot), in sets of
/// [`WAYS`], each set ordered from the most to the least recently asked.
struct Seen {
    slots: Box<[u64]>,
    used: usize,
}

impl Seen {
    fn new() -> Self {
        Self {
            slots: vec![0; FIRST_SLOTS].into_boxed_slice(),
            used: 0,
        }
    }

    /// Records that `hash` was asked; true when it was not remembered.
    fn insert(&mut self, hash: u64) -> bool {
        // Never 0, which marks an empty slot.
        let h = hash | 1;
        let sets = (self.slots.len() / WAYS).max(1);
        // The high bits pick the set (a power of two of them); the whole hash is kept.
        let set = usize::try_from(h >> 32).unwrap_or(0) % sets;
        let Some(ways) = self.slots.get_mut(set * WAYS..(set + 1) * WAYS) else {
            return true;
        };
        if let Some(i) = ways.iter().position(|&x| x == h) {
            // Seen: it becomes the most recent of its set.
            if let Some(recent) = ways.get_mut(..=i) {
                recent.rotate_right(1);
            }
            return false;
        }
        // New: the least recent of the set is forgotten when the set is full.
        if ways.last() == Some(&0) {
            self.used += 1;
        }
        ways.rotate_right(1);
        if let Some(first) = ways.first_mut() {
            *first = h;
        }
        if self.used * 4 > self.slots.len() && self.slots.len() < 2 * MAX_DOMAINS {
            self.grow();
        }
        true
    }

    /// Doubles the table, keeping every hash and, within a set, their order.
    fn grow(&mut self) {
        let bigger = vec![0; self.slots.len() * 2].into_boxed_slice();
        let old = std::mem::replace(&mut self.slots, bigger);
        self.used = 0;
        for set in old.chunks(WAYS) {
            // Least recent first, so that the most recent ends up first again.
            for &h in set.iter().rev().filter(|&&h| h != 0) {
                self.insert(h);
            }
        }
    }
}

struct Client {
    last_ms: i64,
    session: u64,
    seq: u64,
    seen: Seen,
}

/// Where a query falls: its client's session, its place in it, and whether its domain is
/// new for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// Session number, per client, from 1.
    pub session: u64,
    /// Position in the session, from 1.
    pub seq: u64,
    /// First time this client asked for the registrable domain.
    pub new: bool,
    /// Where the registrable domain starts in the query name (a byte offset).
    pub domain_at: usize,
}

/// Per-client session state.
pub struct Sessions {
    gap_ms: i64,
    clients: LruCache<IpAddr, Client>,
    hasher: foldhash::fast::RandomState,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("gap_ms", &self.gap_ms)
            .field("clients", &self.clients.len())
            .finish()
    }
}

/// The registrable domain of `name` (`www.example.co.uk` → `example.co.uk`), or the name
/// itself when it has none (a bare suffix, a single label, a local name).
pub fn registrable(name: &str) -> &str {
    // The domain psl finds is a suffix of the name (without a trailing dot): cut it from
    // the name itself rather than checking its UTF-8 again.
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    psl::domain(trimmed.as_bytes())
        .and_then(|d| trimmed.get(trimmed.len().checked_sub(d.trim().as_bytes().len())?..))
        .unwrap_or(name)
}

impl Sessions {
    /// Sessions split after `gap_ms` milliseconds of silence.
    pub fn new(gap_ms: i64) -> Self {
        Self {
            gap_ms,
            clients: LruCache::new(NonZeroUsize::new(MAX_CLIENTS).unwrap_or(NonZeroUsize::MIN)),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// From now on, sessions split after `gap_ms` (a reload); what is remembered is kept.
    pub fn set_gap(&mut self, gap_ms: i64) {
        self.gap_ms = gap_ms;
    }

    /// Places a query of `client` at `now_ms` (Unix milliseconds) for `qname`.
    pub fn mark(&mut self, client: IpAddr, now_ms: i64, qname: &str) -> Mark {
        let c = self.clients.get_or_insert_mut(client, || Client {
            last_ms: i64::MIN,
            session: 0,
            seq: 0,
            seen: Seen::new(),
        });
        // Records from several listener threads may arrive slightly out of order: a query
        // older than the last one seen never opens a session.
        if c.session == 0 || now_ms.saturating_sub(c.last_ms) >= self.gap_ms {
            c.session += 1;
            c.seq = 0;
        }
        c.seq += 1;
        c.last_ms = c.last_ms.max(now_ms);
        let domain = registrable(qname);
        let new = c.seen.insert(self.hasher.hash_one(domain));
        Mark {
            session: c.session,
            seq: c.seq,
            new,
            // `domain` is a suffix of `qname`.
            domain_at: qname.len() - domain.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_splits_sessions_and_seq_restarts() {
        let ip: IpAddr = "192.168.1.10".parse().unwrap();
        let other: IpAddr = "192.168.1.11".parse().unwrap();
        let mut s = Sessions::new(30_000);
        let m = |s: &mut Sessions, ip, t, n| {
            let m = s.mark(ip, t, n);
            (m.session, m.seq, m.new)
        };
        assert_eq!(m(&mut s, ip, 0, "login.example.com"), (1, 1, true));
        assert_eq!(m(&mut s, ip, 1_000, "cdn.example.com"), (1, 2, false));
        assert_eq!(m(&mut s, other, 1_500, "cdn.example.com"), (1, 1, true));
        assert_eq!(m(&mut s, ip, 30_999, "a.b.example.co.uk"), (1, 3, true));
        // 30 s of silence: a new session.
        assert_eq!(m(&mut s, ip, 60_999, "example.co.uk"), (2, 1, false));
        // Slightly older record (another thread): same session.
        assert_eq!(m(&mut s, ip, 60_990, "x.org"), (2, 2, true));
    }

    #[test]
    fn registrable_domains() {
        assert_eq!(registrable("www.example.co.uk"), "example.co.uk");
        assert_eq!(registrable("a.b.example.com"), "example.com");
        assert_eq!(registrable("localhost"), "localhost");
        assert_eq!(registrable("co.uk"), "co.uk");
        assert_eq!(registrable("www.example.com."), "example.com");
        assert_eq!(registrable(""), "");
        assert_eq!(registrable("ü.example.рф"), "example.рф");
    }

    #[test]
    fn a_client_remembers_its_domains_up_to_the_bound_least_recent_first() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut s = Sessions::new(i64::MAX);
        let mut new = |n: usize| s.mark(ip, 0, &format!("d{n}.com")).new;
        for n in 0..MAX_DOMAINS {
            assert!(new(n), "{n} is new");
        }
        // The bound is remembered (but for a few that shared a full set early).
        let kept = (0..MAX_DOMAINS).filter(|&n| !new(n)).count();
        assert!(
            kept > MAX_DOMAINS * 95 / 100,
            "{kept} of {MAX_DOMAINS} remembered"
        );
        // Far past the bound the oldest are forgotten, and the table does not grow.
        for n in MAX_DOMAINS..MAX_DOMAINS * 8 {
            new(n);
        }
        let forgotten = (0..100).filter(|&n| new(n)).count();
        assert!(forgotten > 95, "{forgotten} of the 100 oldest forgotten");
        // A domain asked again and again stays remembered while others come and go.
        assert!(new(1_000_000));
        for n in 0..MAX_DOMAINS * 4 {
            assert!(!new(1_000_000), "asked again after {n} others");
            new(2_000_000 + n);
        }
        let c = s.clients.peek(&ip).unwrap();
        assert_eq!(c.seen.slots.len(), 2 * MAX_DOMAINS);
    }
}
