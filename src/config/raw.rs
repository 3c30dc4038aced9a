//! `RawConfig`: the serde mirror of the TOML file. Every table denies unknown keys; values
//! that need a semantic check are `Spanned` so that their errors get their own line.

use serde::Deserialize;
use toml::Spanned;

/// The whole file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// `[server]`
    pub server: RawServer,
    /// `[upstream]`
    pub upstream: RawUpstream,
    /// `[cache]`
    pub cache: RawCache,
    /// `[blocking]`
    pub blocking: RawBlocking,
    /// `[access]`
    pub access: super::access::RawAccess,
    /// `[[forward]]` rules
    pub forward: Vec<super::forward::RawForward>,
    /// `[[groups]]`: client groups
    pub groups: Vec<super::groups::RawGroup>,
    /// `[limits]`
    pub limits: super::limits::RawLimits,
    /// `[local]`: local records and hosts files
    pub local: super::local::RawLocal,
    /// `[firewall]` (optional: only `sinkhole firewall` needs it)
    pub firewall: Option<super::firewall::RawFirewall>,
    /// `[log]` (optional: without it there is no query log)
    pub log: Option<RawLog>,
    /// `[http]`: the API, `/metrics` and the block page
    pub http: super::http::RawHttp,
    /// `[sync]`: state shared by instances through PostgreSQL
    pub sync: super::postgres::RawSync,
}

/// `[log]`: the query log (JSON Lines).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// The current log file; rotated files get `.1`, `.2`, … after it.
    pub path: Option<Spanned<String>>,
    /// `false` turns the log off while keeping the section.
    pub enabled: bool,
    /// The current file is rotated when it would grow past this many MiB (fractions allowed).
    pub max_size_mb: Spanned<f64>,
    /// Rotated files kept besides the current one.
    pub keep: Spanned<u32>,
    /// Log clients as their network (/24, /48) rather than their address.
    pub anonymize_clients: bool,
    /// A client silent this many seconds starts a new session.
    pub session_gap_s: Spanned<u64>,
    /// `[log.postgres]`: the log written to PostgreSQL too (or instead of `path`).
    pub postgres: Option<super::postgres::RawLogPostgres>,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            path: None,
            enabled: true,
            max_size_mb: Spanned::new(0..0, 100.0),
            keep: Spanned::new(0..0, 5),
            anonymize_clients: false,
            session_gap_s: Spanned::new(0..0, 30),
            postgres: None,
        }
    }
}

/// `[server]`: where to answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// Addresses served on UDP and TCP.
    pub listen: Spanned<Vec<Spanned<String>>>,
    /// UDP receive threads per listen address (0 = one per CPU core).
    pub udp_threads: usize,
    /// Under load, the longest a UDP thread waits after a partial batch, in microseconds.
    pub udp_batch_wait_us: u64,
    /// Idle time after which a TCP client connection is closed.
    pub tcp_idle_ms: u64,
    /// TCP connections from all clients together.
    pub tcp_max_connections: usize,
    /// TCP connections from one client address.
    pub tcp_max_per_client: usize,
    /// Forwarded queries in flight for one client address.
    pub max_forwards_per_client: usize,
    /// The time zone of schedules (IANA name); default: the system's.
    pub timezone: Option<Spanned<String>>,
    /// The resolver's own name (the name on its certificate), for DDR.
    pub name: Option<Spanned<String>>,
    /// Addresses served with DNS over TLS (RFC 7858); none = off.
    pub tls_listen: Spanned<Vec<Spanned<String>>>,
    /// Addresses served with DNS over HTTPS (RFC 8484); none = off.
    pub https_listen: Spanned<Vec<Spanned<String>>>,
    /// Addresses served with DNS over QUIC (RFC 9250); none = off.
    pub quic_listen: Spanned<Vec<Spanned<String>>>,
    /// The certificate chain, PEM (relative to the config).
    pub tls_cert: Option<Spanned<String>>,
    /// The certificate's private key, PEM (relative to the config).
    pub tls_key: Option<Spanned<String>>,
    /// Longest time from a TLS connection's accept to its finished handshake.
    pub tls_handshake_timeout_ms: Spanned<u64>,
    /// The user `serve` becomes once its sockets are bound, when started as root.
    pub user: Option<Spanned<String>>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: Spanned::new(0..0, vec![Spanned::new(0..0, "127.0.0.1:5300".into())]),
            udp_threads: 1,
            udp_batch_wait_us: 200,
            tcp_idle_ms: 10_000,
            tcp_max_connections: 512,
            tcp_max_per_client: 32,
            max_forwards_per_client: 256,
            timezone: None,
            name: None,
            tls_listen: Spanned::new(0..0, Vec::new()),
            https_listen: Spanned::new(0..0, Vec::new()),
            quic_listen: Spanned::new(0..0, Vec::new()),
            tls_cert: None,
            tls_key: None,
            tls_handshake_timeout_ms: Spanned::new(0..0, 5000),
            user: None,
        }
    }
}

/// `[upstream]`: where ordinary queries go.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    /// Each upstream resolver, tried in order: `IP:PORT`, `tls://IP:853#name`,
    /// `https://name/path@IP`, `quic://IP:853#name`.
    pub servers: Spanned<Vec<Spanned<String>>>,
    /// Longest wait for one upstream before trying the next.
    pub timeout_ms: Spanned<u64>,
    /// PEM file of the CAs encrypted upstreams are checked against (default: bundled roots).
    pub tls_ca: Option<Spanned<String>>,
    /// `forward` (to `servers`) or `recursive` (from the root).
    pub mode: Spanned<String>,
    /// A named.root file of root servers, instead of the built-in table (recursive mode).
    pub root_hints: Option<Spanned<String>>,
    /// Longest time one recursive resolution may take, ms.
    pub recursion_timeout_ms: Spanned<u64>,
    /// `validate` or `off` (default: `validate` in recursive mode, `off` forwarding).
    pub dnssec: Option<Spanned<String>>,
    /// A file of DNSKEY records to validate from, instead of the root's built-in keys.
    pub trust_anchor: Option<Spanned<String>>,
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            servers: Spanned::new(
                0..0,
                vec![
                    Spanned::new(0..0, "9.9.9.9:53".into()),
                    Spanned::new(0..0, "149.112.112.112:53".into()),
                ],
            ),
            timeout_ms: Spanned::new(0..0, 1500),
            tls_ca: None,
            mode: Spanned::new(0..0, "forward".into()),
            root_hints: None,
            recursion_timeout_ms: Spanned::new(0..0, 4000),
            dnssec: None,
            trust_anchor: None,
        }
    }
}

/// `[cache]`: the answer cache in front of the upstreams.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCache {
    /// Most answers kept (0 turns the cache off).
    pub max_entries: usize,
    /// Most bytes the kept answers may hold: `67108864` or `"64MiB"` (0 turns the cache off).
    pub max_bytes: Spanned<RawSize>,
    /// Lowest TTL kept and served, in seconds.
    pub min_ttl: Spanned<u32>,
    /// Highest TTL kept and served, in seconds.
    pub max_ttl: Spanned<u32>,
    /// How long past expiry an answer is kept, to be served when every upstream fails
    /// (`"1d"`; `"0"` or `"off"`: not at all).
    pub serve_stale: Spanned<super::cache::RawStale>,
    /// Refresh an answer asked for in the last tenth of its TTL before it expires.
    pub prefetch: bool,
    /// How long a name that every upstream failed answers SERVFAIL at once, seconds
    /// (0: not at all).
    pub failure_ttl_s: Spanned<u64>,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_bytes: Spanned::new(0..0, RawSize::Number(64 << 20)),
            min_ttl: Spanned::new(0..0, 0),
            max_ttl: Spanned::new(0..0, 86_400),
            serve_stale: Spanned::new(0..0, super::cache::RawStale::default()),
            prefetch: true,
            failure_ttl_s: Spanned::new(0..0, 5),
        }
    }
}

/// `[blocking]`: what is blocked and how it is answered.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBlocking {
    /// `sinkhole`, `nxdomain`, `nodata` or `refused`.
    pub mode: Spanned<String>,
    /// Address in A answers for blocked names.
    pub sinkhole_ipv4: Spanned<String>,
    /// Address in AAAA answers for blocked names.
    pub sinkhole_ipv6: Spanned<String>,
    /// TTL of blocked answers, in seconds.
    pub ttl: Spanned<u32>,
    /// Blocklists: paths or URLs, each a string or `{ source = "…", match = "exact" }`.
    pub lists: Vec<Spanned<RawList>>,
    /// Allowlists, in the same forms.
    pub allow: Vec<Spanned<RawList>>,
    /// How often URL lists are downloaded again (`"24h"`).
    pub refresh: Option<Spanned<String>>,
    /// Where downloaded lists are kept.
    pub cache_dir: Option<Spanned<String>>,
    /// Largest shrink of a URL list applied by an update, percent (`50` or `"50%"`).
    pub max_shrink: Option<Spanned<RawPercent>>,
    /// Answer the resolver-bypass signals (Firefox canary, iCloud Private Relay, DDR).
    pub bypass_signals: bool,
    /// A file (or URL) of DoH server names, blocked like any list.
    pub doh_names: Option<Spanned<String>>,
    /// Answers holding an address in one of these (addresses, CIDRs, files of them) are
    /// blocked.
    pub response_ips: Vec<Spanned<String>>,
    /// DNS rebinding protection: public names must not resolve to private addresses.
    pub rebind_protection: bool,
    /// Domains whose names may resolve to private addresses.
    pub rebind_allow: Vec<Spanned<String>>,
}

/// One entry of `blocking.lists` / `blocking.allow`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawList {
    /// A path or URL.
    Plain(String),
    /// `{ source = "…", match = "exact" }`.
    Table(RawListTable),
}

/// The table form of a list entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListTable {
    /// Path or URL.
    pub source: String,
    /// `"subtree"` (default) or `"exact"`.
    #[serde(rename = "match")]
    pub match_: Option<String>,
    /// When the list applies (default: always).
    pub schedule: Option<Vec<String>>,
}

/// A size written as a number of bytes or as text with a binary unit (`"64MiB"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawSize {
    /// `67108864`
    Number(i64),
    /// `"64MiB"`, `"512KiB"`, `"1GiB"`, `"4096"`
    Text(String),
}

/// A percentage written as a number or as `"50%"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawPercent {
    /// `50`
    Number(i64),
    /// `"50%"`
    Text(String),
}

impl Default for RawBlocking {
    fn default() -> Self {
        Self {
            mode: Spanned::new(0..0, "sinkhole".into()),
            sinkhole_ipv4: Spanned::new(0..0, "0.0.0.0".into()),
            sinkhole_ipv6: Spanned::new(0..0, "::".into()),
            ttl: Spanned::new(0..0, 10),
            lists: Vec::new(),
            allow: Vec::new(),
            refresh: None,
            cache_dir: None,
            max_shrink: None,
            bypass_signals: true,
            doh_names: None,
            response_ips: Vec::new(),
            rebind_protection: true,
            rebind_allow: Vec::new(),
        }
    }
}
