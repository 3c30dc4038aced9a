//! Fuzzing on stable Rust: every parser of outside bytes, driven by a small mutational
//! fuzzer of our own (`engine`; no cargo-fuzz, which needs nightly), seeded with real data
//! (captures, community lists and a Pi-hole log from `shared/data`, the example configs).
//!
//! Targets (one `#[test]` each) and what each checks besides "never panics":
//! - `dns_query`: client packets → `parse_query` and `handler::handle`; responses fit the
//!   client's limit, parse with hickory-proto, carry the query's ID and question; the
//!   question agrees with hickory-proto and survives its re-encoding.
//! - `upstream_response`: upstream answers → `Response::from_upstream` → `write`; the output
//!   fits the limit, reads with hickory-proto when the input did, TTLs stay within bounds.
//! - `list_lines`: list lines of every format; accepted names are normalised; parse →
//!   `lists convert` → parse gives the same set (domains, hosts, adblock, dnsmasq).
//! - `list_load`: list bytes → decode and a real file load agree; block rules are found.
//! - `config_text`: config text → `Config::parse`; every error has a place in the text; a
//!   valid `[firewall]` renders.
//! - `local_hosts`: hosts files of `local.files` → the hosts parser; names normalised,
//!   skipped lines counted and placed.
//! - `querylog_lines`: log lines → the `sinkhole log` reader, renderers and filters; records
//!   through the real writer read back equal.
//! - `doh_query`: a DoH GET's query string → `server::doh::dns_param`; what it accepts is
//!   the base64url of the first `dns=` value, byte for byte.
//! - `doq_stream`: a DNS-over-QUIC stream's bytes → `dns::doq::message` and `check_query`;
//!   a taken message frames back to the stream, shorter prefixes need more, the ID and
//!   edns-tcp-keepalive checks agree with the bytes and with hickory-proto.
//! - `tcp_frames`: an upstream's DNS-over-TLS bytes → `dns::wire::next_frame`, as the
//!   relay's connections split them; the frames taken frame back to the bytes consumed,
//!   what is left is less than a frame, a cut stream yields a prefix of the frames.
//! - `h2_frames`: a DNS-over-HTTPS server's bytes → `http2::Client::receive`; each query
//!   settled at most once and none lost, answers at most a DNS message, no whole frame
//!   left unread, replies bounded by what was read, the same outcomes when the bytes come
//!   in two pieces.
//! - `postgres_rows`: records from the bytes → the PostgreSQL writer's `COPY` rows, which
//!   decode as PostgreSQL reads them and hold no NUL or invalid UTF-8 in text; the API's
//!   database page cursor prints back as it parsed.
//! - `walk_answers`: authoritative servers' answers → the recursive walk's `classify` and
//!   `dns::wire::answer_has_type`; referrals only below the zone asked and above the name,
//!   glue only for the servers named and within the zone asked, a message that is not whole
//!   of no use, a whole NXDOMAIN an answer, the CNAME check agrees with hickory-proto.
//! - `signed_answers`: signed answers → DNSSEC validation's fast path
//!   (`KnownKeys::prove`) from a known zone key; an answer not proven is left as it was,
//!   and every RRset of one proven carries a signature hickory-proto verifies under the key.
//! - `cert_der`: certificate bytes → the expiry reader (`tls::der`); our own certificates
//!   read back their `notAfter`; any time read is within DER's range.
//!
//! Budget: `SINKHOLE_FUZZ_SECS` seconds per target (default 10: about a minute of CPU in
//! all in a debug build) or exactly `SINKHOLE_FUZZ_ITERS` inputs per target. The seed is
//! printed at the start; `SINKHOLE_FUZZ_SEED` replays a run. A failure prints each distinct
//! problem with its input (and a shrunk copy) in hex and the replay command; with
//! `SINKHOLE_FUZZ_LAST=<dir>` each input is also written to `<dir>/<target>.last` before it
//! runs, for crashes no test can catch (stack overflow, abort). Each target ends with a line
//! `fuzz <target>: N inputs in S s (R/s), M distinct outcomes, corpus C, F failures`.
//!
//! Longer runs, one target at a time (release build, `--include-ignored` for known bugs):
//! ```text
//! SINKHOLE_FUZZ_SECS=300 cargo test --release --test fuzz list_load -- --nocapture
//! SINKHOLE_FUZZ_SECS=600 cargo test --release --test fuzz -- --nocapture --test-threads 1 --include-ignored
//! ```

mod engine; // PRNG, run loop, panic capture, shrinking, report
mod mutate; // byte, line and DNS-structure mutations
mod seeds; // real captures and lines from shared/data, hickory-built packets

mod anchors; // trust_anchor, root_hints
mod cert; // cert_der
mod config; // config_text
mod doh; // doh_query
mod doq; // doq_stream
mod frames; // tcp_frames
mod http2; // h2_frames
mod lists; // list_lines, list_load
mod local; // local_hosts
mod postgres; // postgres_rows
mod query; // dns_query
mod querylog; // querylog_lines
mod referrals; // walk_answers
mod signed; // signed_answers
mod upstream; // upstream_response
