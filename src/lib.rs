//! sinkhole: a filtering DNS resolver for LANs.
//!
//! # Bird's-eye view
//! Clients send queries to the listeners ([`server`]): UDP on a few OS threads (the hot
//! path), TCP and DNS over TLS on tokio; later HTTPS and QUIC. Listeners only move bytes: every one of
//! them calls the same per-query entry point, [`handler::Handler::handle`], which parses
//! the packet with the hand-written codec in [`dns::wire`], builds a
//! [`pipeline::Request`] (the query, the client, the transport, the arrival time and the
//! `now` every decision uses) and runs the chain in [`pipeline::Pipeline::resolve`], one
//! function that reads top to bottom:
//!
//! ```text
//! packet ─► Handler::handle ─► Request
//!   ─► access        who may ask: allow/deny CIDRs (files of them); REFUSED or dropped
//!   ─► limits        per-client query rate (token bucket, bans); bounded tables
//!   ─► local         local records (split horizon, AA) and private reverse zones (NXDOMAIN)
//!   ─► ddr           with encrypted listeners and server.name: SVCB for _dns.resolver.arpa
//!   ─► (group)       the client's group, if any: which lists and mode the next stages use
//!   ─► blocking      bypass signals, then the lists (allow wins at equal or higher specificity)
//!   ─► any           RFC 8482: ANY gets one HINFO, never forwarded
//!   ─► cache         (name, type, class, DO, CD, RD); TTLs count down to `req.now`; a hit
//!                    with a CNAME chain is checked against the lists again
//!   ─► upstream      the only stage that waits: the UDP thread's relay or the pool, cookies,
//!                    TCP on TC, kept DoT/DoH/DoQ connections for tls://, https:// and
//!                    quic:// servers, failover; or, in recursive mode, resolution from
//!                    the root (`pipeline::upstream::recursive`, hickory's recursor), on
//!                    the UDP thread's own runtime or on tokio
//!   ─► answer checks out-of-bailiwick records stripped; response IPs, rebinding (blocked,
//!                    not cached); then cache store; then the CNAME chain (later: DNSSEC)
//! ─► (UDP) response-rate limiting: identical answers to one network dropped or truncated
//! ─► response bytes + query-log record ─► listener sends, then logs
//! ```
//!
//! Every stage before the upstream is synchronous, so blocked and cached names are answered
//! inline on the UDP thread without touching the async runtime; a miss comes back as a
//! [`handler::Pending`], the rest of the chain as data: a UDP thread makes its first
//! upstream attempt from its own loop ([`pipeline::upstream::Relay`]; over connections of
//! its own when the first server is encrypted, [`pipeline::upstream::Near`], which also
//! resolves its recursive misses whole, a few at a time), other listeners and later
//! attempts run on tokio, and all finish it the same way. What a decision reads from the config is one
//! immutable [`pipeline::Policy`] snapshot; a reload ([`reload`]) builds a new one off the
//! query path and swaps it whole, and applies `[upstream]`, `[cache]` and `[log]` too.
//! [`counters`] count every query, cache hit and upstream exchange without a lock.

//! # Code map
//! - [`config`]: TOML → validated [`config::Config`]; errors name file, line, column, key.
//! - [`blocklist`]: list parsing (every community format, per-line skip reasons), name
//!   normalisation and the public-suffix guard, the compact suffix matcher, globs/regexes
//!   behind a prefilter (`patterns`), URL downloads (`fetch`, redirect policy in `http`), the
//!   `sinkhole lists` helpers (`tools`: read, lint, convert; `explain`: which rules match a
//!   name and why, for `lists check` and the HTTP API; `rewrite`: the text of `add` /
//!   `remove`, written safely in place by `edit`).
//! - [`dns::wire`]: query parsing and response writing on bytes; [`dns::doq`]: the framing
//!   and query checks of DNS over QUIC.
//! - [`pipeline`]: the request ([`pipeline::request`], with the injectable
//!   [`pipeline::Clock`]), the stage contract ([`pipeline::flow`]: `Flow`, `Answer`), one
//!   file per stage, the [`pipeline::Policy`] snapshot, and the chain. Upstream outages:
//!   stale answers and prefetch in [`pipeline::cache`], failed names in
//!   [`pipeline::failures`], background refreshes in [`pipeline::refresh`].
//! - [`handler`]: the per-query entry point of every transport: rejects, the request, the
//!   chain, forwards bounded per client, counters, the log record.
//! - [`server`]: sockets; what one client may hold (`server::slots`), caught panics and
//!   restarted listeners ([`server::Faults`]); DNS over TLS reuses the TCP connection code;
//!   DNS over HTTPS runs hyper's HTTP/2 and HTTP/1.1 over TLS, within TCP's limits; DNS
//!   over QUIC runs on quinn, with the same limits counted apart.
//! - [`http2`]: the HTTP/2 client side of a DNS-over-HTTPS upstream (frames, flow control,
//!   HPACK for one request shape), without I/O: the relay's connections drive it.
//! - [`tls`]: certificates for the encrypted listeners: PEM loading, the certificate
//!   served per handshake and re-read when its files change, `cert self-signed` and pins.
//! - [`counters`]: service-wide counters (sharded atomics), printed by `sinkhole serve`
//!   on SIGUSR1 and at exit.
//! - [`querylog`]: the JSON Lines query log (bounded queue → writer thread, sessions,
//!   rotation), the `sinkhole log` reports that read it, and the newest-first pages the API
//!   serves (`querylog::page`). The reports are written once and fed from the files or from
//!   PostgreSQL's rows (`querylog::source::Records`; the database side is `postgres::read`).
//! - [`reload`]: SIGHUP and file-change reloads; [`service`]: all of it running;
//!   [`systemd`]: readiness, reload and watchdog notices, and journal-format logs;
//!   [`privdrop`]: root given up for `server.user` once every socket is bound.
//! - [`block_page`]: the HTTP page a browser sent to the sinkhole address gets: which rule
//!   and list blocked the site, from the current policy snapshot.
//! - [`http`]: `[http]`: the JSON API under `/api/v1` and `/metrics`, on a bounded
//!   HTTP/1 server (connections, head and body sizes, timeouts); a pause of blocking is
//!   one atomic deadline in the pipeline ([`pipeline::pause`]).
//! - [`docs`]: `sinkhole.toml(5)` rendered from the configuration reference, `docs/config.md` (`sinkhole man`).
//! - [`fdlimit`]: the open-file limit raised at start; a WARN when descriptors run out.
//! - [`firewall`]: `[firewall]` (its model in `firewall::model`) → an nftables or iptables
//!   rule set (pure renderers); only `firewall::system` runs `nft` / `iptables-restore`;
//!   `firewall::apply` is the confirm window of `apply --confirm` (arm, apply, wait, confirm
//!   or roll back), `firewall::guard` its state files and the rollback armed apart.
//! - [`cli`]: the command line, one file per command family (`serve`, `config`, `log`,
//!   `lists`, `firewall`); every command returns one error type that carries its exit code
//!   (2 config or usage, 1 runtime), printed once by `main`.
//!
//! # Invariants
//! 1. Only `server` and `handler` touch sockets and packets; stages see a [`pipeline::Request`]
//!    and say what to answer ([`pipeline::Flow`]); one place writes it as bytes. Stages never
//!    read the clock: `req.now` is the time of every decision.
//! 2. Only `pipeline::upstream` does network I/O on the query path (list downloads run on
//!    blocking threads, off it). The query log never
//!    waits: a record is handed over with `try_send` just before the answer is sent (so a client
//!    that asks again once answered finds its queries in order); a full queue drops it and
//!    counts it. With the log off, nothing is done per query for it.
//! 3. A `Blocklist`, a `Policy` and a `Config` are immutable once built; a reload builds new
//!    ones off the query path and swaps an `Arc`; a reload that fails anywhere applies nothing.
//! 4. Every query gets exactly one response, except packets that must not be answered
//!    (responses, runts); no input panics (bounds-checked codec, clippy's `indexing_slicing`
//!    and `unwrap_used` warned in `dns` and `server`). A panic anyway costs only the answer
//!    of the packet, connection or forward it happened in: it is caught, logged with the
//!    client and counted, and a listener loop that ends is started again.
//! 5. What one client can hold is bounded per client and in all (TCP connections, pipelined
//!    queries, forwards in flight), so one client never takes another's service away.
//! 6. List parsing never fails as a whole: bad lines are skipped and reported.
//!    A list that cannot be used at all (unreadable, binary, HTML, too large, a failed or
//!    shrunken download) leaves the last good set serving.
//! 7. Rendering a firewall rule set is pure (no processes, no root); only
//!    `sinkhole firewall check|apply|remove` call `nft` / `iptables-restore`.
#![warn(missing_docs)]

pub mod block_page;
pub mod blocklist;
pub mod cli;
pub mod config;
// Counted on every query: no panicking shortcuts.
#[warn(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
pub mod counters;
pub mod dns;
pub mod docs;
pub mod fdlimit;
pub mod firewall;
pub mod handler;
pub mod http;
// Reads an upstream's bytes: no panicking shortcuts.
#[warn(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
pub mod http2;
pub mod neighbours;
pub mod pipeline;
pub mod postgres;
pub mod privdrop;
pub mod querylog;
pub mod reload;
pub mod server;
pub mod service;
pub mod systemd;
pub mod tls;

/// Helpers for the unit tests of several modules.
#[cfg(test)]
mod test_util;
