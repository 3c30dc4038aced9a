//! sinkhole: a filtering DNS resolver for LANs.
//!
//! # Bird's-eye view
//! Clients send queries to the listeners ([`server`]): UDP on a few OS threads (the hot
//! path), TCP on tokio. Each packet goes through [`handler::handle`], which parses it with
//! the hand-written codec in [`dns::wire`] and runs the [`pipeline`]:
//!
//! ```text
//! packet ─► handler ─► blocking ─► ANY ─► cache ─► upstream ─► scrub ─► response
//!             │           │          │       │         │          └ out-of-bailiwick records stripped
//!             │           │          │       │         └ pooled UDP sockets, cookies, TCP retry on TC,
//!             │           │          │       │           failover, SERVFAIL by deadline
//!             │           │          │       └ answers by (name, type, class, DO, CD); TTLs count down;
//!             │           │          │         bounded in entries and bytes
//!             │           │          └ RFC 8482 HINFO, never forwarded
//!             │           └ suffix rules (blocklist), allow wins at equal or higher specificity
//!             └ FORMERR / NOTIMP / BADVERS, responses dropped
//! ```
//!
//! # Code map
//! - [`config`]: TOML → validated [`config::Config`]; errors name file, line, column, key.
//! - [`blocklist`]: list parsing (every community format, per-line skip reasons), name
//!   normalisation and the public-suffix guard, the compact suffix matcher, globs/regexes
//!   behind a prefilter (`patterns`), URL downloads (`fetch`, redirect policy in `http`), the
//!   `sinkhole lists` helpers (`tools`: read, lint, convert; `explain`: which rules match a
//!   name and why, for `lists check` and the HTTP API; `rewrite`: the text of `add` /
//!   `remove`, written safely in place by `edit`).
//! - [`dns::wire`]: query parsing and response writing on bytes.
//! - [`pipeline`]: the stages and their order.
//! - [`server`], [`handler`]: sockets and the per-packet decision; what one client may
//!   hold (`server::slots`), caught panics and restarted listeners ([`server::Faults`]).
//! - [`querylog`]: the JSON Lines query log (bounded queue → writer thread, sessions,
//!   rotation) and the `sinkhole log` reports that read it.
//! - [`reload`]: SIGHUP and file-change reloads; [`service`]: all of it running.
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
//! 1. Only `server` and `handler` touch sockets and packets; stages see a parsed `Query`.
//! 2. Only `pipeline::upstream` does network I/O on the query path (list downloads run on
//!    blocking threads, off it). The query log never
//!    waits: a record is handed over with `try_send` after the answer is sent; a full queue
//!    drops it and counts it. With the log off, nothing is done per query for it.
//! 3. A `Blocklist` and a `Config` are immutable once built; a reload builds new ones off the
//!    query path and swaps an `Arc`.
//! 4. Every query gets exactly one response, except packets that must not be answered
//!    (responses, runts); no input panics (bounds-checked codec, clippy's `indexing_slicing`
//!    and `unwrap_used` warned in `dns` and `server`). A panic anyway costs only the answer
//!    of the packet, connection or forward it happened in: it is caught, logged with the
//!    client and counted, and a listener loop that ends is started again.
//! 7. What one client can hold is bounded per client and in all (TCP connections, pipelined
//!    queries, forwards in flight), so one client never takes another's service away.
//! 5. List parsing never fails as a whole: bad lines are skipped and reported.
//!    A list that cannot be used at all (unreadable, binary, HTML, too large, a failed or
//!    shrunken download) leaves the last good set serving.
//! 6. Rendering a firewall rule set is pure (no processes, no root); only
//!    `sinkhole firewall check|apply|remove` call `nft` / `iptables-restore`.
#![warn(missing_docs)]

pub mod blocklist;
pub mod cli;
pub mod config;
pub mod counters;
pub mod dns;
pub mod fdlimit;
pub mod firewall;
pub mod handler;
pub mod pipeline;
pub mod querylog;
pub mod reload;
pub mod server;
pub mod service;
