//! Client sessions and `new` marks, kept by the log writer (one task, so no locking).
//!
//! A client's session ends when it has been silent for `log.session_gap_s`; the next query
//! opens session n+1 with seq 1. The registrable domains (Public Suffix List, `psl` crate)
//! a client has asked are remembered in a per-client LRU, so memory is bounded: at most
//! [`MAX_CLIENTS`] clients × [`MAX_DOMAINS`] domains. State lives in memory only: after a
//! restart sessions count from 1 again and every domain is `new` once more.

use std::net::IpAddr;
use std::num::NonZeroUsize;

use lru::LruCache;

/// Clients remembered (least recently seen are forgotten first).
pub const MAX_CLIENTS: usize = 4096;
/// Registrable domains remembered per client.
pub const MAX_DOMAINS: usize = 2048;

struct Client {
    last_ms: i64,
    session: u64,
    seq: u64,
    seen: LruCache<Box<str>, ()>,
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
    psl::domain_str(name).unwrap_or(name)
}

impl Sessions {
    /// Sessions split after `gap_ms` milliseconds of silence.
    pub fn new(gap_ms: i64) -> Self {
        Self {
            gap_ms,
            clients: LruCache::new(NonZeroUsize::new(MAX_CLIENTS).unwrap_or(NonZeroUsize::MIN)),
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
            seen: LruCache::new(NonZeroUsize::new(MAX_DOMAINS).unwrap_or(NonZeroUsize::MIN)),
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
        let new = if c.seen.get(domain).is_some() {
            false
        } else {
            c.seen.put(domain.into(), ());
            true
        };
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
    }
}
