//! The one per-query entry point that every listener calls: a packet (or an already parsed
//! query) and how it arrived in; the response bytes and the query-log record out.
//!
//! [`Handler::handle`] answers what must be rejected (FORMERR, NOTIMP, BADVERS) and drops
//! what must not be answered (responses, runts), builds the [`Request`], runs the
//! [`Pipeline`] chain, bounds the forwards one client may have in flight (past it: SERVFAIL
//! at once, logged like any answer), applies response-rate limiting to what goes back over
//! UDP (after the answer is made: RRL judges the answer, and one place covers the inline
//! answers and the forwards' alike), and counts every answered query. Listeners only move
//! bytes: UDP, TCP, and later TLS, HTTPS and QUIC all speak exactly the same DNS through
//! here. Nothing here panics on any input: the parser is bounds-checked, and every error
//! becomes a response.

// The entry point of every query: no panicking shortcuts.
#![warn(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::SocketAddr;
use std::sync::Arc;

use crate::counters::Counters;
use crate::dns::wire::{self, Query, Reject, Response};
use crate::fdlimit::RateLimit;
use crate::pipeline::limits::RrlKey;
use crate::pipeline::upstream::{Relayed, Resume, Upstream, UpstreamError};
use crate::pipeline::{Action, Forward, Now, Outcome, Pipeline, Request, Resolution, Transport};
use crate::querylog::Record;
use crate::server::slots::{ClientSlots, Slot};

/// Largest DNS message over TCP.
pub const TCP_LIMIT: usize = wire::MAX_MESSAGE;

/// The question of an answered query, kept for the query log.
#[derive(Debug, Clone)]
pub struct Asked {
    /// The name, lower case, no trailing dot (empty for the root or no question).
    pub qname: QName,
    /// The type (0 when the packet had no question).
    pub qtype: u16,
}

impl Asked {
    /// The question of `q`.
    pub fn of(q: &Query) -> Self {
        Self {
            qname: QName::from(&*String::from_utf8_lossy(q.name())),
            qtype: q.qtype,
        }
    }
}

/// Bytes of a query name kept inside the record; longer names (few) take an allocation.
pub const QNAME_INLINE: usize = 48;

/// A query name as the log keeps it: text, held inline up to [`QNAME_INLINE`] bytes, so
/// that logging a query allocates nothing on the query path for almost every name (the
/// allocation would be freed on the log writer's thread, which costs more again).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QName(smallvec::SmallVec<[u8; QNAME_INLINE]>);

impl QName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        // Made from a `&str` only, so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl From<&str> for QName {
    fn from(s: &str) -> Self {
        Self(smallvec::SmallVec::from_slice(s.as_bytes()))
    }
}

/// How a packet arrived: who sent it, over what, and when.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// The client's address and port.
    pub client: SocketAddr,
    /// What carried it.
    pub transport: Transport,
    /// When it arrived (tokio's clock: deadlines and `elapsed_us`).
    pub arrived: tokio::time::Instant,
    /// The decision time, read once from the service's clock.
    pub now: Now,
}

/// A query gone upstream, with what its answer needs once the upstream has answered: the
/// forward slot it holds, response-rate limiting, the counters and the log record.
pub struct Pending {
    forward: Box<Forward>,
    /// Held until the answer is made: bounds the forwards in flight per client.
    slot: Slot,
    how: Arrival,
    /// The question for the log (`None` when the log is off).
    asked: Option<Asked>,
    /// Response-rate limiting's key, when RRL applies to this answer.
    rrl: Option<RrlKey>,
}

impl Pending {
    /// The forward: its query, arrival and servers.
    pub fn forward(&self) -> &Forward {
        &self.forward
    }

    /// Runs the whole exchange on the async runtime; yields the response bytes (empty when
    /// response-rate limiting dropped the answer) and the log record.
    pub async fn run(self) -> (Vec<u8>, Option<Record>) {
        let got = {
            let f = &self.forward;
            f.upstream().forward(f.query(), f.arrived()).await
        };
        self.finish(got)
    }

    /// Goes on after a [`Relay`](crate::pipeline::upstream::Relay)'s first attempt, then
    /// as [`Pending::run`].
    pub async fn resume(self, r: Resume) -> (Vec<u8>, Option<Record>) {
        let got = {
            let f = &self.forward;
            f.upstream().resume(f.query(), f.arrived(), r).await
        };
        self.finish(got)
    }

    /// The client that asked: where the answer goes.
    pub fn client(&self) -> SocketAddr {
        self.how.client
    }

    /// Ends the query with what the upstream exchange gave, as [`Pending::run`] does.
    pub fn finish(
        self,
        got: Result<(Response, SocketAddr), UpstreamError>,
    ) -> (Vec<u8>, Option<Record>) {
        let Self {
            forward,
            slot,
            how,
            asked,
            rrl,
        } = self;
        let pipeline = Arc::clone(forward.pipeline());
        let qtype = forward.query().qtype;
        let (mut bytes, mut o) = forward.finish(got);
        drop(slot);
        if let Some(k) = &rrl {
            pipeline.rrl(k, &mut o, &mut bytes);
        }
        pipeline.counters().query(o.action, qtype, how.transport);
        let asked = asked.filter(|_| !o.quiet);
        (bytes, asked.map(|a| record(&how, a, o)))
    }
}

impl Relayed for Pending {
    fn query(&self) -> &Query {
        self.forward.query()
    }

    fn arrived(&self) -> tokio::time::Instant {
        self.forward.arrived()
    }

    fn upstream(&self) -> &Upstream {
        self.forward.upstream()
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("forward", &self.forward)
            .field("client", &self.how.client)
            .finish_non_exhaustive()
    }
}

/// What the listener must do with a packet.
#[derive(Debug)]
pub enum Handled {
    /// The response is in the output buffer: send it, then hand the record (present when
    /// the query log is on) to the log.
    Reply(Option<Record>),
    /// Send nothing; hand the record, if any, to the log (a query dropped by access
    /// control is logged; responses and runts are not).
    Drop(Option<Record>),
    /// Gone upstream: [`Pending::run`] it (or do the exchange and [`Pending::finish`] it),
    /// then send the bytes it yields and log its record.
    Pending(Pending),
}

/// What the listener must do with a packet, its log record already handed over
/// ([`Handler::handle_into`]).
#[derive(Debug)]
pub enum Step {
    /// The response is in the output buffer: send it.
    Reply,
    /// Send nothing.
    Drop,
    /// Gone upstream, as [`Handled::Pending`] (boxed: a miss is rare next to the answers
    /// made at once, and the step stays two words).
    Pending(Box<Pending>),
}

/// The per-query entry point, shared by every listener.
pub struct Handler {
    pipeline: Arc<Pipeline>,
    /// Forwards in flight, per client and in all (every transport together).
    forwards: Arc<ClientSlots>,
    counters: Arc<Counters>,
    /// True when the query log is on: records are made.
    log: bool,
}

impl Handler {
    /// A handler running `pipeline`, with `forwards` bounding the forwards in flight.
    pub fn new(pipeline: Arc<Pipeline>, forwards: Arc<ClientSlots>, log: bool) -> Self {
        let counters = Arc::clone(pipeline.counters());
        Self {
            pipeline,
            forwards,
            counters,
            log,
        }
    }

    /// The pipeline this handler runs.
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// Forwards in flight now.
    pub fn forwards_in_flight(&self) -> usize {
        self.forwards.held()
    }

    /// Handles one packet: parses it, then as [`Handler::handle`].
    pub fn handle_packet(&self, pkt: &[u8], how: Arrival, out: &mut Vec<u8>) -> Handled {
        self.handle(wire::parse_query(pkt).as_ref(), pkt.len(), how, out)
    }

    /// Handles one parsed packet of `len` bytes, as [`Handler::handle_into`], with the log
    /// record returned in the [`Handled`].
    pub fn handle(
        &self,
        parsed: Result<&Query, &Reject>,
        len: usize,
        how: Arrival,
        out: &mut Vec<u8>,
    ) -> Handled {
        let mut logged = None;
        match self.handle_into(parsed, len, how, out, |r| logged = Some(r)) {
            Step::Reply => Handled::Reply(logged),
            Step::Drop => Handled::Drop(logged),
            Step::Pending(p) => Handled::Pending(*p),
        }
    }

    /// Handles one parsed packet of `len` bytes (the UDP path parses a whole batch first,
    /// into queries it keeps, to prefetch the lists' lines for all of it). The response,
    /// when there is one at once, is written into `out`; the log record of an answered or
    /// dropped query (when the log is on) goes to `log`. What comes back is a word, not the
    /// record: the UDP loop moves it once per query, and a [`Handled`] is 270 bytes.
    pub fn handle_into(
        &self,
        parsed: Result<&Query, &Reject>,
        len: usize,
        how: Arrival,
        out: &mut Vec<u8>,
        mut log: impl FnMut(Record),
    ) -> Step {
        let query = match parsed {
            Ok(q) => q,
            Err(Reject::Drop) => {
                tracing::debug!(len, "dropped packet: too short or a response");
                return Step::Drop;
            }
            Err(&Reject::Reply {
                id,
                flags,
                rcode,
                ref query,
            }) => {
                tracing::debug!(len, rcode = wire::rcode::name(rcode), "rejected query");
                wire::write_error(out, id, flags, query.as_deref(), rcode, None);
                let o = Outcome::new(Action::Rejected, rcode, None);
                let qtype = query.as_deref().map_or(0, |q| q.qtype);
                self.counters.query(o.action, qtype, how.transport);
                if self.log {
                    let asked = query.as_deref().map_or(
                        Asked {
                            qname: QName::default(),
                            qtype: 0,
                        },
                        Asked::of,
                    );
                    log(record(&how, asked, o));
                }
                return Step::Reply;
            }
        };
        let req = Request {
            query: std::borrow::Cow::Borrowed(query),
            client: how.client,
            transport: how.transport,
            arrived: how.arrived,
            now: how.now,
        };
        // Taken before the answer is made (a forward's `Pending` carries it); `None` unless
        // RRL is on and the query came over UDP from a client that is not exempt.
        let rrl = self.pipeline.rrl_key(&req);
        match self.pipeline.resolve(&req, out) {
            Resolution::Done(mut o) => {
                if let Some(k) = &rrl {
                    self.pipeline.rrl(k, &mut o, out);
                }
                self.counters
                    .query(o.action, req.query.qtype, how.transport);
                if self.log && !o.quiet {
                    log(record(&how, Asked::of(&req.query), o));
                }
                if out.is_empty() {
                    // Access control's or the rate limits' `drop`, or RRL's: nothing is
                    // sent; the query is logged unless it is quiet.
                    Step::Drop
                } else {
                    Step::Reply
                }
            }
            Resolution::Forward(forward) => {
                let Ok(slot) = self.forwards.try_take(how.client.ip()) else {
                    // This client has its share of forwards in flight already (or every
                    // slot is taken): SERVFAIL now rather than a queue without bound.
                    drop(forward);
                    overloaded_warning(how.client);
                    wire::write_error(
                        out,
                        req.query.id,
                        req.query.flags,
                        Some(&req.query),
                        wire::rcode::SERVFAIL,
                        None,
                    );
                    let o = Outcome::new(Action::Failed, wire::rcode::SERVFAIL, None);
                    self.counters
                        .query(o.action, req.query.qtype, how.transport);
                    if self.log {
                        log(record(&how, Asked::of(&req.query), o));
                    }
                    return Step::Reply;
                };
                Step::Pending(Box::new(Pending {
                    asked: self.log.then(|| Asked::of(&req.query)),
                    forward,
                    slot,
                    how,
                    rrl,
                }))
            }
        }
    }
}

/// The log record of an answered query; `elapsed` counts to now (just before sending).
fn record(how: &Arrival, asked: Asked, outcome: Outcome) -> Record {
    Record {
        ts: how.now.wall,
        client: how.client.ip(),
        transport: how.transport,
        asked,
        outcome,
        elapsed: how.arrived.elapsed(),
    }
}

/// A WARN at most once per [`crate::fdlimit::WARN_EVERY`], for all clients together: an
/// overload can repeat per packet.
fn overloaded_warning(client: SocketAddr) {
    static LIMIT: RateLimit = RateLimit::new();
    if let Some(suppressed) = LIMIT.allow_now() {
        tracing::warn!(client = %client, suppressed, "forward refused with SERVFAIL: too many in flight");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::{BlocklistBuilder, Kind};
    use crate::config::Config;
    use crate::pipeline::blocking::Blocking;
    use crate::pipeline::request::test_support::{fixed_now, query_bytes};
    use crate::pipeline::{Detail, Policy};

    /// A handler blocking `ads.test`, forwarding to a port nothing answers, with the log on
    /// and room for `forwards` forwards per client.
    fn handler(forwards: usize) -> Handler {
        let cfg = Config::parse(
            "[upstream]\nservers = [\"127.0.0.1:9\"]\n[log]\npath = \"/nonexistent/q.jsonl\"\n",
            "t.toml",
            None,
        )
        .unwrap();
        let mut b = BlocklistBuilder::new();
        let src = b.add_source("ads.txt");
        b.insert("ads.test", Kind::Block, false, false, src, 1);
        let access = crate::pipeline::access::Access::new(&cfg.access);
        let policy = Policy::new(access, Blocking::new(&cfg.blocking, b.build()), &[]);
        let p = Pipeline::new(&cfg, policy, Arc::new(Counters::new()));
        Handler::new(Arc::new(p), ClientSlots::new(forwards, 100), true)
    }

    fn arrival(transport: Transport) -> Arrival {
        Arrival {
            client: SocketAddr::from(([192, 168, 0, 9], 5353)),
            transport,
            arrived: tokio::time::Instant::now(),
            now: fixed_now(),
        }
    }

    #[test]
    fn a_blocked_query_is_answered_at_once_with_its_record() {
        let h = handler(1);
        let mut out = Vec::new();
        let pkt = query_bytes("x.ads.test", wire::TYPE_A, false);
        for t in [Transport::Udp, Transport::Tcp] {
            let Handled::Reply(Some(r)) = h.handle_packet(&pkt, arrival(t), &mut out) else {
                panic!("expected an answer with a record");
            };
            assert_eq!(r.outcome.action, Action::Blocked);
            assert_eq!(r.asked.qname.as_str(), "x.ads.test");
            assert_eq!(r.client, SocketAddr::from(([192, 168, 0, 9], 0)).ip());
            assert_eq!(
                r.ts,
                fixed_now().wall,
                "the log's time is the request's now"
            );
            assert!(matches!(r.outcome.detail, Detail::Local(Some(_))));
        }
        let snap = h.pipeline().counters().snapshot(Default::default());
        assert_eq!(snap.queries(Action::Blocked), 2);
        assert_eq!(snap.queries_by_transport(Transport::Tcp), 1);
    }

    #[test]
    fn a_malformed_query_gets_formerr_and_a_record() {
        let h = handler(1);
        let mut out = Vec::new();
        // A query with two questions.
        let mut pkt = query_bytes("a.test", wire::TYPE_A, false);
        pkt[5] = 2;
        let Handled::Reply(Some(r)) = h.handle_packet(&pkt, arrival(Transport::Udp), &mut out)
        else {
            panic!("expected a rejection with a record");
        };
        assert_eq!(r.outcome.action, Action::Rejected);
        assert_eq!(out[3] & 0x0F, 1, "FORMERR");
        // A response is dropped: nothing sent, nothing logged.
        let mut resp = query_bytes("a.test", wire::TYPE_A, false);
        resp[2] |= 0x80;
        assert!(matches!(
            h.handle_packet(&resp, arrival(Transport::Udp), &mut out),
            Handled::Drop(None)
        ));
    }

    #[test]
    fn past_a_clients_forward_share_it_gets_servfail_at_once() {
        let h = handler(1);
        let mut out = Vec::new();
        let pkt = query_bytes("www.example.test", wire::TYPE_A, false);
        let first = h.handle_packet(&pkt, arrival(Transport::Udp), &mut out);
        assert!(matches!(first, Handled::Pending(_)), "{first:?}");
        assert_eq!(h.forwards_in_flight(), 1);
        let Handled::Reply(Some(r)) = h.handle_packet(&pkt, arrival(Transport::Tcp), &mut out)
        else {
            panic!("expected SERVFAIL at once");
        };
        assert_eq!(r.outcome.action, Action::Failed);
        assert_eq!(out[3] & 0x0F, 2, "SERVFAIL");
        // The slot is the pending answer's: dropping it frees the client's share.
        drop(first);
        assert_eq!(h.forwards_in_flight(), 0);
        assert!(matches!(
            h.handle_packet(&pkt, arrival(Transport::Udp), &mut out),
            Handled::Pending(_)
        ));
    }
}
