//! `Request`: one query as every stage sees it: the parsed question, who asked, over what,
//! when it arrived, and the `now` that every decision of this query uses.
//!
//! Time is passed in, never read by a stage: the listener reads the [`Clock`] once per
//! packet (once per UDP batch), so that the cache, and later schedules and rate limits,
//! decide with one instant that tests choose. A test builds a `Request` with a fixed
//! [`Now`]; the integration tests move a [`Clock`] forward instead of sleeping.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::dns::wire::Query;

/// What carried a query to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// DNS over UDP (RFC 1035).
    Udp,
    /// DNS over TCP (RFC 7766).
    Tcp,
    /// DNS over TLS (RFC 7858).
    Tls,
    /// DNS over HTTPS (RFC 8484).
    Https,
    /// DNS over QUIC (RFC 9250).
    Quic,
}

impl Transport {
    /// Every transport, in a fixed order (for counters).
    pub const ALL: [Self; 5] = [Self::Udp, Self::Tcp, Self::Tls, Self::Https, Self::Quic];

    /// The lower-case name used in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Https => "https",
            Self::Quic => "quic",
        }
    }

    /// True for transports whose messages are limited only by the 16-bit length (every
    /// stream and HTTPS); UDP answers must fit the client's advertised size.
    pub fn unlimited(self) -> bool {
        !matches!(self, Self::Udp)
    }
}

/// One instant, read once from the [`Clock`]: monotonic for durations (TTLs), wall time for
/// the log and, later, schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time: TTL and expiry arithmetic.
    pub mono: Instant,
    /// Wall-clock time: the query log's `ts`.
    pub wall: SystemTime,
}

impl Now {
    /// This instant moved `d` forward.
    pub fn after(self, d: Duration) -> Self {
        Self {
            mono: self.mono + d,
            wall: self.wall + d,
        }
    }
}

/// The service's clock: the system's, moved forward by whatever a test asked for. Cheap to
/// read (one relaxed atomic load besides the system calls `Instant::now` and
/// `SystemTime::now` make anyway) and cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Nanoseconds added to the system's time.
    skew: Arc<AtomicU64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// Now, as the service sees it.
    pub fn now(&self) -> Now {
        let skew = Duration::from_nanos(self.skew.load(Ordering::Relaxed));
        Now {
            mono: Instant::now() + skew,
            wall: SystemTime::now() + skew,
        }
    }

    /// Moves this clock (and every clone of it) forward by `d`: tests let TTLs run down
    /// without sleeping.
    pub fn advance(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.skew.fetch_add(ns, Ordering::Relaxed);
    }
}

/// A query and everything about its arrival that a decision may read. It borrows the
/// listener's parsed query (no copy on the hot path); a forwarded query's request owns a
/// copy ([`Request::into_owned`]), since it outlives the listener's buffer.
#[derive(Debug, Clone)]
pub struct Request<'q> {
    /// The parsed query.
    pub query: Cow<'q, Query>,
    /// Who asked (address and source port).
    pub client: SocketAddr,
    /// What carried it.
    pub transport: Transport,
    /// When it arrived, on tokio's clock: the upstream deadline and `elapsed_us` count from
    /// here.
    pub arrived: tokio::time::Instant,
    /// The instant every decision about this query uses.
    pub now: Now,
}

impl Request<'_> {
    /// This request owning its query, to outlive the listener's buffers.
    pub fn into_owned(self) -> Request<'static> {
        Request {
            query: Cow::Owned(self.query.into_owned()),
            client: self.client,
            transport: self.transport,
            arrived: self.arrived,
            now: self.now,
        }
    }

    /// The largest response this client accepts: its EDNS size over UDP, 65,535 bytes over
    /// streams.
    pub fn limit(&self) -> usize {
        if self.transport.unlimited() {
            crate::dns::wire::MAX_MESSAGE
        } else {
            self.query.udp_limit()
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Requests for stage tests: a fixed clock and a made-up client.

    use super::*;

    /// A fixed instant for tests.
    pub(crate) fn fixed_now() -> Now {
        Now {
            mono: Instant::now(),
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_900_000),
        }
    }

    /// A query for `name`/`qtype` (with EDNS when `edns`), as if it came from 192.0.2.7
    /// over UDP at `now`.
    pub(crate) fn request(name: &str, qtype: u16, edns: bool, now: Now) -> Request<'static> {
        let pkt = query_bytes(name, qtype, edns);
        let query = crate::dns::wire::parse_query(&pkt).expect("test query parses");
        Request {
            query: Cow::Owned(query),
            client: SocketAddr::from(([192, 0, 2, 7], 40000)),
            transport: Transport::Udp,
            arrived: tokio::time::Instant::now(),
            now,
        }
    }

    /// The wire bytes of a query (ID 0x1234, RD).
    pub(crate) fn query_bytes(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        for label in name.split('.').filter(|l| !l.is_empty()) {
            p.push(u8::try_from(label.len()).expect("short label"));
            p.extend_from_slice(label.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        if edns {
            // OPT: root name, type 41, payload 1232, no extended rcode, version 0, no flags.
            p.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn a_moved_clock_moves_every_clone() {
        let c = Clock::system();
        let other = c.clone();
        let before = other.now();
        c.advance(Duration::from_secs(3600));
        let after = other.now();
        assert!(after.mono.duration_since(before.mono) >= Duration::from_secs(3600));
        assert!(after.wall.duration_since(before.wall).unwrap() >= Duration::from_secs(3600));
    }

    #[test]
    fn the_limit_follows_the_transport() {
        let mut r = request("example.test", 1, false, fixed_now());
        assert_eq!(r.limit(), 512);
        let r2 = request("example.test", 1, true, fixed_now());
        assert_eq!(r2.limit(), 1232);
        r.transport = Transport::Tcp;
        assert_eq!(r.limit(), 65_535);
        assert_eq!(Transport::Quic.name(), "quic");
    }
}
