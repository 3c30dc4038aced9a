//! What `benches/pipeline.rs` and `examples/pipeline_instructions.rs` share: a query's bytes
//! and an upstream-style answer put in a pipeline's cache.

use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use sinkhole::dns::wire::{self, Response};
use sinkhole::pipeline::Pipeline;

/// The bytes of an A query for `name` (ID 0x4242, RD).
pub(crate) fn query(name: &str) -> Vec<u8> {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

/// Puts an upstream-style answer (one A record, 192.0.2.1) for `pkt`'s question in the
/// pipeline's cache.
pub(crate) fn cache(p: &Pipeline, pkt: &[u8]) {
    let q = wire::parse_query(pkt).unwrap();
    let hm = Message::from_vec(pkt).unwrap();
    let mut m = Message::new(q.id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m.queries = hm.queries.clone();
    let owner = hm.queries[0].name().clone();
    m.add_answer(Record::from_rdata(
        owner,
        3600,
        RData::A(A::new(192, 0, 2, 1)),
    ));
    let resp = Response::from_upstream(&m.to_vec().unwrap(), &q, q.id, 0, 86_400).unwrap();
    let mut key = [0u8; 262];
    p.cache().put(
        q.cache_key(&mut key),
        &Arc::new(resp),
        std::time::Instant::now(),
    );
}
