//! Fuzzing on stable Rust: every parser of outside bytes, driven by a small mutational
//! fuzzer of our own (`engine`), seeded with real data.
//!
//! Targets (one `#[test]` each) and the property each checks besides "never panics":
//! - `dns_query`: client packets → `parse_query` and `handler::handle`; responses fit the
//!   client's limit, parse with hickory-proto and carry the query's ID; the question agrees
//!   with hickory-proto and survives its re-encoding.
//! - `upstream_response`: upstream answers → `Response::from_upstream` → `write`; output fits
//!   the limit, parses with hickory-proto when the input did, TTLs stay within bounds.
//!
//! Budget: `SINKHOLE_FUZZ_SECS` seconds per target (default 7.5, about a minute in all in a
//! debug build) or exactly `SINKHOLE_FUZZ_ITERS` inputs per target. The seed is printed at
//! the start; `SINKHOLE_FUZZ_SEED` replays it. A failure prints the input (and a shrunk
//! copy) in hex and the replay command. Each target ends with a line
//! `fuzz <target>: N inputs in S s, M distinct outcomes, …`.
//!
//! Longer runs, one target at a time:
//! ```text
//! SINKHOLE_FUZZ_SECS=600 cargo test --release --test fuzz -- --nocapture --test-threads 1
//! SINKHOLE_FUZZ_SECS=300 cargo test --release --test fuzz dns_query -- --nocapture --include-ignored
//! ```

mod engine; // PRNG, mutations, run loop, panic capture, shrinking, report
mod seeds; // real captures and lines from shared/data, hickory-built packets, DNS mutations

mod query; // dns_query
mod config; // config_text
mod lists; // list_lines, list_load
mod upstream; // upstream_response
