//! One packet in, one decision out: parse the query, answer rejects (FORMERR, NOTIMP,
//! BADVERS) and drop what must not be answered (responses, runts), answer blocked and cached
//! names at once, and hand the rest to the async forwarder.
//!
//! Shared by the UDP and TCP listeners, so both speak exactly the same DNS. Nothing here
//! panics on any input: the parser is bounds-checked, and every error becomes a response.

use crate::dns::wire::{self, Query, Reject};
use crate::pipeline::{Action, Outcome, Pipeline};

/// Largest DNS message over TCP.
pub const TCP_LIMIT: usize = 65_535;

/// The question of an answered query, kept for the query log.
#[derive(Debug, Clone)]
pub struct Asked {
    /// The name, lower case, no trailing dot (empty for the root or no question).
    pub qname: Box<str>,
    /// The type (0 when the packet had no question).
    pub qtype: u16,
}

impl Asked {
    /// The question of `q`.
    pub fn of(q: &Query) -> Self {
        Self {
            qname: String::from_utf8_lossy(q.name()).into(),
            qtype: q.qtype,
        }
    }
}

/// What the listener must do with a packet.
#[derive(Debug)]
pub enum Handled {
    /// The response is in the output buffer; send it. The question is kept only when the
    /// pipeline keeps details (the query log is on).
    Reply(Outcome, Option<Asked>),
    /// Send nothing.
    Drop,
    /// Resolve upstream (async), then send.
    Forward(Box<Query>),
}

/// Handles one packet from a client; `tcp` selects the size limit.
pub fn handle(pipeline: &Pipeline, pkt: &[u8], tcp: bool, out: &mut Vec<u8>) -> Handled {
    respond(pipeline, &wire::parse_query(pkt), pkt.len(), tcp, out)
}

/// Handles a packet of `len` bytes already parsed (the UDP path parses a whole batch
/// first, to prefetch the lists' lines for all of it). Borrowed: only a forwarded query is
/// copied, into the box the forwarder keeps.
pub fn respond(
    pipeline: &Pipeline,
    parsed: &Result<Query, Reject>,
    len: usize,
    tcp: bool,
    out: &mut Vec<u8>,
) -> Handled {
    match parsed {
        Ok(q) => {
            let limit = if tcp { TCP_LIMIT } else { q.udp_limit() };
            match pipeline.resolve_local(q, out, limit) {
                Some(o) => Handled::Reply(o, pipeline.details().then(|| Asked::of(q))),
                None => Handled::Forward(Box::new(q.clone())),
            }
        }
        Err(Reject::Drop) => {
            tracing::debug!(len, "dropped packet: too short or a response");
            Handled::Drop
        }
        &Err(Reject::Reply {
            id,
            flags,
            rcode,
            ref query,
        }) => {
            tracing::debug!(len, rcode = wire::rcode::name(rcode), "rejected query");
            wire::write_error(out, id, flags, query.as_deref(), rcode, None);
            let asked = pipeline.details().then(|| {
                query.as_deref().map_or(
                    Asked {
                        qname: "".into(),
                        qtype: 0,
                    },
                    Asked::of,
                )
            });
            Handled::Reply(Outcome::new(Action::Rejected, rcode, None), asked)
        }
    }
}
