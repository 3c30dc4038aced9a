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

/// What the listener must do with a packet.
#[derive(Debug)]
pub enum Handled {
    /// The response is in the output buffer; send it.
    Reply(Outcome),
    /// Send nothing.
    Drop,
    /// Resolve upstream (async), then send.
    Forward(Box<Query>),
}

/// Handles one packet from a client; `tcp` selects the size limit.
pub fn handle(pipeline: &Pipeline, pkt: &[u8], tcp: bool, out: &mut Vec<u8>) -> Handled {
    match wire::parse_query(pkt) {
        Ok(q) => {
            let limit = if tcp { TCP_LIMIT } else { q.udp_limit() };
            match pipeline.resolve_local(&q, out, limit) {
                Some(o) => Handled::Reply(o),
                None => Handled::Forward(Box::new(q)),
            }
        }
        Err(Reject::Drop) => {
            tracing::debug!(len = pkt.len(), "dropped packet: too short or a response");
            Handled::Drop
        }
        Err(Reject::Reply {
            id,
            flags,
            rcode,
            query,
        }) => {
            tracing::debug!(
                len = pkt.len(),
                rcode = wire::rcode::name(rcode),
                "rejected query"
            );
            wire::write_error(out, id, flags, query.as_deref(), rcode, None);
            Handled::Reply(Outcome {
                action: Action::Rejected,
                rcode,
                upstream: None,
            })
        }
    }
}
