//! DNS wire format: the lean codec of the query path. Queries are parsed by hand into a
//! stack-allocated [`wire::Query`]; blocked and error answers are written directly as bytes;
//! upstream answers are checked, stripped of their OPT record and kept as bytes with the
//! offsets of their TTL fields, so that a cached answer is served by one copy and a few
//! patches. hickory-proto stays the reference parser (tests, rare re-encoding).

#[warn(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
pub mod wire;

#[warn(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
pub mod doq;
