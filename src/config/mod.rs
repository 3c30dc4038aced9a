//! The validated, typed config. `Config::load` reads TOML, checks every value, and reports
//! all problems at once, each with file, line, column and key; the server does not start on
//! any of them. Paths in the file are relative to the file's folder.

pub mod access;
pub mod answer_checks;
pub mod block_page;
pub mod cache;
pub mod dnssec;
pub mod error;
pub mod firewall;
pub mod forward;
pub mod groups;
pub mod http;
pub mod init;
pub mod limits;
pub mod local;
pub mod postgres;
pub mod raw;
pub mod recursion;
pub mod schedule;
pub mod tls;
pub mod upstream;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::firewall::FirewallConfig;
pub use access::{AccessConfig, DenyAction};
pub use answer_checks::{AnswerChecksConfig, ResponseIp};
pub use dnssec::Dnssec;
pub use error::{ConfigError, ConfigErrors};
pub use forward::ForwardConfig;
pub use groups::GroupConfig;
pub use http::HttpConfig;
pub use limits::{BanAction, LimitsConfig};
pub use local::LocalConfig;
use raw::{RawConfig, RawList, RawPercent, RawSize};
pub use recursion::Recursion;
pub use tls::TlsConfig;
use toml::Spanned;
pub use upstream::{TlsCa, Transport, UpstreamServer};

use crate::blocklist::Kind;
use crate::blocklist::load::{EMBEDDED, ListSource, Location};

/// The text of the embedded default config.
pub const DEFAULT_TOML: &str = include_str!("default.toml");
/// How the embedded default is named in messages.
pub const DEFAULT_NAME: &str = "<embedded default>";

/// How blocked names are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockMode {
    /// A → sinkhole IPv4, AAAA → sinkhole IPv6, other types NODATA.
    Sinkhole,
    /// NXDOMAIN with an SOA.
    NxDomain,
    /// NOERROR, no answer, with an SOA.
    NoData,
    /// REFUSED.
    Refused,
}

/// `[server]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Addresses served on UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// UDP receive threads per listen address (0 = one per core).
    pub udp_threads: usize,
    /// Under load, the longest pause after a partial UDP batch, so that the next one is
    /// fuller (the pause follows the arrival rate).
    pub udp_batch_wait: Duration,
    /// Idle TCP connections are closed after this; also the deadline of one TCP write.
    pub tcp_idle: Duration,
    /// TCP connections from all clients together (at least 1).
    pub tcp_max_connections: usize,
    /// TCP connections from one client address (at least 1).
    pub tcp_max_per_client: usize,
    /// Forwarded queries in flight for one client address (at least 1).
    pub max_forwards_per_client: usize,
    /// The time zone schedules are read in (an IANA name); `None` = the system's.
    pub timezone: Option<String>,
    /// DNS over TLS, HTTPS and QUIC: `tls_listen`, `https_listen`, `quic_listen`,
    /// `tls_cert`, `tls_key`, `tls_handshake_timeout_ms`; `None` when every listen list is
    /// empty.
    pub tls: Option<TlsConfig>,
    /// The resolver's own name (`server.name`, lower case, no trailing dot): the target of
    /// its DDR answers, and the name its certificate must carry.
    pub name: Option<String>,
    /// `server.user`: the user to become after binding when started as root (`None`: the
    /// user `sinkhole` if it exists; `"root"`: stay root).
    pub user: Option<String>,
}

/// `[upstream]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Upstream resolvers, tried in order: plain DNS, DNS over TLS, HTTPS or QUIC.
    pub servers: Vec<UpstreamServer>,
    /// Longest wait for one upstream.
    pub timeout: Duration,
    /// `upstream.tls_ca`: the CA certificates encrypted upstreams are checked against,
    /// instead of the bundled roots (webpki-roots).
    pub tls_ca: Option<TlsCa>,
    /// `upstream.mode = "recursive"`: resolve from the root (`servers` unused); `None`
    /// forwards (always for `[[forward]]` rules).
    pub recursive: Option<Recursion>,
    /// `upstream.dnssec = "validate"`: answers are validated (`None`: off; always off for
    /// `[[forward]]` rules).
    pub dnssec: Option<Dnssec>,
}

/// `[cache]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most entries kept; 0 disables the cache.
    pub max_entries: usize,
    /// Most bytes the kept answers may hold (by the cache's estimate); 0 disables the cache.
    pub max_bytes: usize,
    /// TTL floor, seconds.
    pub min_ttl: u32,
    /// TTL ceiling, seconds.
    pub max_ttl: u32,
    /// How long past expiry an answer is kept to be served stale; zero: never.
    pub serve_stale: Duration,
    /// Refresh answers asked for in the last tenth of their TTL.
    pub prefetch: bool,
    /// How long a failed name answers SERVFAIL at once; zero: never.
    pub failure_ttl: Duration,
}

/// `[blocking]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockingConfig {
    /// How blocked names are answered.
    pub mode: BlockMode,
    /// A answer for blocked names.
    pub sinkhole_ipv4: Ipv4Addr,
    /// AAAA answer for blocked names.
    pub sinkhole_ipv6: Ipv6Addr,
    /// TTL of blocked answers.
    pub ttl: u32,
    /// Block and allow lists, in config order (blocks first).
    pub lists: Vec<ListSource>,
    /// How often URL lists are downloaded again.
    pub refresh: Duration,
    /// Where downloaded lists are kept (a start without network serves these copies).
    pub cache_dir: PathBuf,
    /// An update that shrinks a URL list by more than this many percent is not applied.
    pub max_shrink: u8,
    /// Answer the resolver-bypass signals locally (`blocking.bypass_signals`).
    pub bypass_signals: bool,
    /// Checks of upstream answers: `response_ips`, `rebind_protection`, `rebind_allow`.
    pub answers: AnswerChecksConfig,
}

/// The whole validated config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where it was read from (for messages).
    pub file: String,
    /// `[server]`
    pub server: ServerConfig,
    /// `[upstream]`
    pub upstream: UpstreamConfig,
    /// `[cache]`
    pub cache: CacheConfig,
    /// `[blocking]`
    pub blocking: BlockingConfig,
    /// `[access]`: who may ask.
    pub access: AccessConfig,
    /// `[[forward]]`: names forwarded to servers of their own.
    pub forward: Vec<ForwardConfig>,
    /// `[[groups]]`: client groups, in file order (the first that matches a client wins).
    pub groups: Vec<GroupConfig>,
    /// `[limits]`: per-client query rates and response-rate limiting.
    pub limits: LimitsConfig,
    /// `[local]`: names answered here (split horizon).
    pub local: LocalConfig,
    /// `[firewall]`, when the file has one.
    pub firewall: Option<FirewallConfig>,
    /// `[http]`: the API, `/metrics` and the block page (off by default).
    pub http: HttpConfig,
    /// `[log]`, when the query log is on (a `[log]` section with `enabled = true`).
    pub log: Option<LogConfig>,
    /// `[sync] postgres`: local list entries and pause shared through `[log.postgres]`'s
    /// database.
    pub sync_postgres: bool,
    /// Things that are allowed but may surprise (overlapping groups), as
    /// `file:line:col: key: message`: `config check` prints them, `serve` logs them.
    pub warnings: Vec<String>,
}

/// `[log]`, validated: the query log is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// The current log file; `None` when the log goes to PostgreSQL only.
    pub path: Option<PathBuf>,
    /// `[log.postgres]`: the log written to PostgreSQL too.
    pub postgres: Option<postgres::PostgresLog>,
    /// Rotation size in bytes.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: u32,
    /// Log networks instead of client addresses.
    pub anonymize_clients: bool,
    /// Idle time that ends a client's session.
    pub session_gap: Duration,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.clone(),
                line: 0,
                col: 0,
                key: None,
                msg: format!("cannot read config: {e}"),
            }])
        })?;
        let base = path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Self::parse(&text, &file, Some(&base))
    }

    /// Every list source: `[blocking]`'s, then each group's, in file order.
    pub fn all_lists(&self) -> impl Iterator<Item = &ListSource> {
        self.blocking
            .lists
            .iter()
            .chain(self.groups.iter().flat_map(|g| &g.lists))
    }

    /// The embedded default: listens on 127.0.0.1:5300, forwards to Quad9, blocks with the
    /// lists compiled into the binary.
    pub fn embedded_default() -> Self {
        match Self::parse(DEFAULT_TOML, DEFAULT_NAME, None) {
            Ok(c) => c,
            // The default is fixed at build time and covered by a test.
            Err(e) => panic!("embedded default config is invalid: {e}"),
        }
    }

    /// Parses and validates config text. `base` is the folder list paths are relative to;
    /// `None` means the embedded lists.
    pub fn parse(text: &str, file: &str, base: Option<&Path>) -> Result<Self, ConfigErrors> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let off = e.span().map_or(0, |s| s.start);
            let (line, col) = error::line_col(text, off);
            ConfigErrors(vec![ConfigError {
                file: file.to_string(),
                line,
                col,
                key: error::key_at(text, off),
                msg: e.message().trim().to_string(),
            }])
        })?;
        let mut v = Validator {
            text,
            file,
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        let mut cfg = v.validate(raw, base);
        cfg.warnings = std::mem::take(&mut v.warnings);
        if v.errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors(v.errors))
        }
    }
}

struct Validator<'a> {
    text: &'a str,
    file: &'a str,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

impl Validator<'_> {
    /// The text of the file `raw` names (relative to the config's folder), with its path;
    /// an error at `key` when it cannot be read.
    fn read_text(
        &mut self,
        raw: &Spanned<String>,
        key: &str,
        base: Option<&Path>,
    ) -> Option<(PathBuf, String)> {
        let p = PathBuf::from(raw.get_ref());
        let path = match base {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p,
        };
        match std::fs::read_to_string(&path) {
            Ok(t) => Some((path, t)),
            Err(e) => {
                let m = format!("{}: cannot read: {e}", path.display());
                self.err(raw.span(), key, m);
                None
            }
        }
    }

    /// Warns of each skipped line of `path` as `file:line: skipped: reason`.
    fn skipped(&mut self, path: &Path, bad: Vec<(usize, String)>) {
        for (line, reason) in bad {
            self.warnings
                .push(format!("{}:{line}: skipped: {reason}", path.display()));
        }
    }

    fn err(&mut self, span: Range<usize>, key: &str, msg: impl Into<String>) {
        self.errors
            .push(ConfigError::at(self.text, self.file, span, key, msg));
    }

    /// Parses each string of a list, reporting `"value": problem` for the bad ones.
    fn each<T>(
        &mut self,
        list: &[Spanned<String>],
        key: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for s in list {
            match parse(s.get_ref()) {
                Ok(v) => out.push(v),
                Err(m) => self.err(s.span(), key, format!("{:?}: {m}", s.get_ref())),
            }
        }
        out
    }

    fn addrs(&mut self, list: &[Spanned<String>], key: &str) -> Vec<SocketAddr> {
        self.each(list, key, parse_socket_addr)
    }

    fn validate(&mut self, raw: RawConfig, base: Option<&Path>) -> Config {
        let listen = self.addrs(raw.server.listen.get_ref(), "server.listen");
        if raw.server.listen.get_ref().is_empty() {
            self.err(
                raw.server.listen.span(),
                "server.listen",
                "at least one address is needed",
            );
        }
        let servers = self.upstream_servers(raw.upstream.servers.get_ref(), "upstream.servers");
        let tls_ca = self.tls_ca(raw.upstream.tls_ca.as_ref(), base);
        let recursive = self.recursion(
            &raw.upstream.mode,
            raw.upstream.root_hints.as_ref(),
            &raw.upstream.recursion_timeout_ms,
            base,
        );
        let dnssec = self.dnssec(
            raw.upstream.dnssec.as_ref(),
            raw.upstream.trust_anchor.as_ref(),
            recursive.is_some(),
            base,
        );
        if raw.upstream.servers.get_ref().is_empty() && recursive.is_none() {
            self.err(
                raw.upstream.servers.span(),
                "upstream.servers",
                "at least one upstream resolver is needed",
            );
        }
        let timeout_ms = *raw.upstream.timeout_ms.get_ref();
        if !(1..=60_000).contains(&timeout_ms) {
            self.err(
                raw.upstream.timeout_ms.span(),
                "upstream.timeout_ms",
                format!("{timeout_ms}: must be between 1 and 60000 (milliseconds)"),
            );
        }
        let (min_ttl, max_ttl) = (*raw.cache.min_ttl.get_ref(), *raw.cache.max_ttl.get_ref());
        if min_ttl > max_ttl {
            self.err(
                raw.cache.min_ttl.span(),
                "cache.min_ttl",
                format!("{min_ttl} is above cache.max_ttl ({max_ttl})"),
            );
        }
        let max_bytes = parse_size(raw.cache.max_bytes.get_ref()).unwrap_or_else(|m| {
            self.err(raw.cache.max_bytes.span(), "cache.max_bytes", m);
            0
        });
        let serve_stale = self.serve_stale(&raw.cache.serve_stale);
        let failure_ttl = self.failure_ttl(&raw.cache.failure_ttl_s);
        for (t, key) in [
            (&raw.cache.max_ttl, "cache.max_ttl"),
            (&raw.blocking.ttl, "blocking.ttl"),
        ] {
            if *t.get_ref() > i32::MAX as u32 {
                self.err(t.span(), key, "a DNS TTL is at most 2147483647 seconds");
            }
        }
        let b = &raw.blocking;
        let mode = self.mode(&b.mode, "blocking.mode");
        let sinkhole_ipv4 = b.sinkhole_ipv4.get_ref().parse().unwrap_or_else(|_| {
            self.err(
                b.sinkhole_ipv4.span(),
                "blocking.sinkhole_ipv4",
                format!("{:?} is not an IPv4 address", b.sinkhole_ipv4.get_ref()),
            );
            Ipv4Addr::UNSPECIFIED
        });
        let sinkhole_ipv6 = b.sinkhole_ipv6.get_ref().parse().unwrap_or_else(|_| {
            self.err(
                b.sinkhole_ipv6.span(),
                "blocking.sinkhole_ipv6",
                format!("{:?} is not an IPv6 address", b.sinkhole_ipv6.get_ref()),
            );
            Ipv6Addr::UNSPECIFIED
        });
        let mut lists = self.lists(&b.lists, "blocking.lists", Kind::Block, base);
        lists.extend(self.lists(&b.allow, "blocking.allow", Kind::Allow, base));
        if let Some(d) = &b.doh_names
            && let Some(src) = self.list_source(d, "blocking.doh_names", Kind::Block, false, base)
        {
            lists.push(src);
        }
        let refresh = match &b.refresh {
            None => Duration::from_secs(24 * 3600),
            // Whole seconds (`parse_secs`): a refresh is at least a minute.
            Some(r) => match parse_secs(r.get_ref()) {
                Some(v) if v >= 60 => Duration::from_secs(v),
                _ => {
                    self.err(
                        r.span(),
                        "blocking.refresh",
                        format!(
                            "{:?}: write a duration of at least a minute, such as 30m, 24h or 7d",
                            r.get_ref()
                        ),
                    );
                    Duration::from_secs(24 * 3600)
                }
            },
        };
        let cache_dir = match (&b.cache_dir, base) {
            (Some(d), Some(base)) => base.join(d.get_ref()),
            (Some(d), None) => PathBuf::from(d.get_ref()),
            (None, _) => PathBuf::from(crate::blocklist::fetch::DEFAULT_CACHE_DIR),
        };
        let max_shrink = match &b.max_shrink {
            None => 50,
            Some(p) => {
                let v = match p.get_ref() {
                    RawPercent::Number(n) => Some(*n),
                    RawPercent::Text(t) => t.trim().trim_end_matches('%').trim().parse().ok(),
                };
                match v {
                    Some(n @ 0..=100) => n as u8,
                    _ => {
                        self.err(
                            p.span(),
                            "blocking.max_shrink",
                            "write a percentage from 0 to 100, such as 50 or \"50%\"",
                        );
                        50
                    }
                }
            }
        };
        let answers =
            self.answer_checks(&b.response_ips, b.rebind_protection, &b.rebind_allow, base);
        let firewall = raw.firewall.map(|fw| self.firewall(fw, base));
        let log = raw.log.and_then(|l| self.log(l, base));
        let sync_postgres = raw.sync.postgres.as_ref().is_some_and(|b| *b.get_ref());
        if sync_postgres {
            // The shared entries are two more lists of the default policy (groups that
            // inherit it get them too), read from this host's copy of the database's.
            lists.push(ListSource::shared(Kind::Block));
            lists.push(ListSource::shared(Kind::Allow));
        }
        if let Some(b) = raw.sync.postgres.as_ref().filter(|b| *b.get_ref())
            && log.as_ref().is_none_or(|l| l.postgres.is_none())
        {
            self.err(
                b.span(),
                "sync.postgres",
                "needs the database of [log.postgres] (url or url_file), in a [log] that is enabled",
            );
        }
        let access = self.access(raw.access, base);
        let forward = self.forwards(
            raw.forward,
            Duration::from_millis(timeout_ms.max(1)),
            tls_ca.as_ref(),
        );
        let groups = self.groups(raw.groups, base);
        let timezone = raw.server.timezone.as_ref().and_then(|tz| {
            let name = tz.get_ref().trim();
            match jiff::tz::TimeZone::get(name) {
                Ok(_) => Some(name.to_string()),
                Err(e) => {
                    self.err(
                        tz.span(),
                        "server.timezone",
                        format!("{name:?}: not a known time zone ({e}); write an IANA name such as \"Europe/Berlin\" or \"UTC\""),
                    );
                    None
                }
            }
        });
        let limits = self.limits(raw.limits);
        let local = self.local(raw.local, base);
        let http = self.http(raw.http, base, &listen);
        let tls = self.tls(&raw.server, base);
        let name = raw.server.name.as_ref().and_then(|n| {
            match crate::blocklist::domain::normalize(n.get_ref()) {
                Ok(d) if d.contains('.') && !d.starts_with('_') => Some(d),
                Ok(d) => {
                    self.err(
                        n.span(),
                        "server.name",
                        format!("{d:?}: write the resolver's full host name, the one on its certificate, such as \"dns.lan\""),
                    );
                    None
                }
                Err(e) => {
                    self.err(
                        n.span(),
                        "server.name",
                        format!("{:?}: not a host name ({e}); write the name on the resolver's certificate, such as \"dns.lan\"", n.get_ref()),
                    );
                    None
                }
            }
        });
        let mut log = log;
        if let Some(p) = log.as_mut().and_then(|l| l.postgres.as_mut()) {
            p.instance = name.clone().unwrap_or_else(crate::postgres::host_name);
        }
        let user = raw.server.user.as_ref().and_then(|u| {
            let name = u.get_ref().trim();
            if name == "root" || crate::privdrop::lookup(name).is_some() {
                Some(name.to_string())
            } else {
                self.err(
                    u.span(),
                    "server.user",
                    format!("{name:?}: no such user on this system; create it (useradd --system --no-create-home {name}), name another, or \"root\" to stay root"),
                );
                None
            }
        });
        Config {
            file: self.file.to_string(),
            server: ServerConfig {
                listen,
                udp_threads: raw.server.udp_threads,
                udp_batch_wait: Duration::from_micros(raw.server.udp_batch_wait_us.min(10_000)),
                tcp_idle: Duration::from_millis(raw.server.tcp_idle_ms.max(100)),
                tcp_max_connections: raw.server.tcp_max_connections.max(1),
                tcp_max_per_client: raw.server.tcp_max_per_client.max(1),
                max_forwards_per_client: raw.server.max_forwards_per_client.max(1),
                timezone,
                tls,
                name,
                user,
            },
            upstream: UpstreamConfig {
                servers,
                timeout: Duration::from_millis(timeout_ms.max(1)),
                tls_ca,
                recursive,
                dnssec,
            },
            cache: CacheConfig {
                max_entries: raw.cache.max_entries,
                max_bytes,
                min_ttl,
                max_ttl: max_ttl.max(min_ttl),
                serve_stale,
                prefetch: raw.cache.prefetch,
                failure_ttl,
            },
            blocking: BlockingConfig {
                mode,
                sinkhole_ipv4,
                sinkhole_ipv6,
                ttl: *b.ttl.get_ref(),
                lists,
                refresh,
                cache_dir,
                max_shrink,
                bypass_signals: b.bypass_signals,
                answers,
            },
            access,
            forward,
            groups,
            limits,
            local,
            firewall,
            http,
            log,
            sync_postgres,
            warnings: Vec::new(),
        }
    }

    /// A `mode` key (`blocking.mode`, `groups.mode`).
    fn mode(&mut self, m: &Spanned<String>, key: &str) -> BlockMode {
        match m.get_ref().as_str() {
            "sinkhole" => BlockMode::Sinkhole,
            "nxdomain" => BlockMode::NxDomain,
            "nodata" => BlockMode::NoData,
            "refused" => BlockMode::Refused,
            other => {
                self.err(
                    m.span(),
                    key,
                    format!("unknown mode {other:?}: use sinkhole, nxdomain, nodata or refused"),
                );
                BlockMode::Sinkhole
            }
        }
    }

    /// The entries of a list key (`blocking.lists`, `groups.allow`, …) of `kind`: strings,
    /// or tables with `source`, `match` and `schedule`.
    fn lists(
        &mut self,
        entries: &[Spanned<RawList>],
        key: &str,
        kind: Kind,
        base: Option<&Path>,
    ) -> Vec<ListSource> {
        let mut lists = Vec::new();
        for e in entries {
            let (name, exact, schedule) = match e.get_ref() {
                RawList::Plain(n) => (n.clone(), false, None),
                RawList::Table(t) => {
                    let exact = match t.match_.as_deref() {
                        None | Some("subtree") => false,
                        Some("exact") => true,
                        Some(other) => {
                            self.err(
                                e.span(),
                                key,
                                format!("match = {other:?}: write \"exact\" or \"subtree\""),
                            );
                            continue;
                        }
                    };
                    let schedule = match &t.schedule {
                        None => None,
                        Some(w) => match schedule::Schedule::parse(w) {
                            Ok(s) => Some(s),
                            Err(m) => {
                                self.err(e.span(), key, format!("schedule: {m}"));
                                continue;
                            }
                        },
                    };
                    (t.source.clone(), exact, schedule)
                }
            };
            let spanned = Spanned::new(e.span(), name);
            if let Some(mut src) = self.list_source(&spanned, key, kind, exact, base) {
                src.schedule = schedule;
                lists.push(src);
            }
        }
        lists
    }

    fn log(&mut self, l: raw::RawLog, base: Option<&Path>) -> Option<LogConfig> {
        let mb = *l.max_size_mb.get_ref();
        if !(mb.is_finite() && (0.001..=1_048_576.0).contains(&mb)) {
            self.err(
                l.max_size_mb.span(),
                "log.max_size_mb",
                format!("{mb}: must be between 0.001 and 1048576 (MiB)"),
            );
        }
        if *l.keep.get_ref() > 1000 {
            self.err(l.keep.span(), "log.keep", "at most 1000 rotated files");
        }
        let gap = *l.session_gap_s.get_ref();
        if !(1..=86_400).contains(&gap) {
            self.err(
                l.session_gap_s.span(),
                "log.session_gap_s",
                format!("{gap}: must be between 1 and 86400 (seconds)"),
            );
        }
        let postgres = l.postgres.as_ref().and_then(|p| self.log_postgres(p, base));
        let path = match &l.path {
            Some(p) if p.get_ref().trim().is_empty() => {
                self.err(p.span(), "log.path", "empty path");
                return None;
            }
            Some(p) => {
                let p = PathBuf::from(p.get_ref());
                Some(match base {
                    Some(dir) if p.is_relative() => dir.join(p),
                    _ => p,
                })
            }
            None if l.enabled && l.postgres.is_none() => {
                self.err(
                    0..0,
                    "log.path",
                    "the [log] section needs `path` (e.g. path = \"/var/log/sinkhole/queries.jsonl\") or a [log.postgres] section, or enabled = false",
                );
                return None;
            }
            None => None,
        };
        if !l.enabled || (path.is_none() && postgres.is_none()) {
            return None;
        }
        Some(LogConfig {
            path,
            postgres,
            max_bytes: (mb.clamp(0.001, 1_048_576.0) * 1_048_576.0) as u64,
            keep: (*l.keep.get_ref()).min(1000),
            anonymize_clients: l.anonymize_clients,
            session_gap: Duration::from_secs(gap.clamp(1, 86_400)),
        })
    }

    fn list_source(
        &mut self,
        e: &Spanned<String>,
        key: &str,
        kind: Kind,
        exact: bool,
        base: Option<&Path>,
    ) -> Option<ListSource> {
        let name = e.get_ref();
        if name.starts_with("http://") || name.starts_with("https://") {
            let rest = name.split_once("://").map_or("", |(_, r)| r);
            if rest.is_empty() || rest.starts_with('/') || name.contains(char::is_whitespace) {
                self.err(e.span(), key, format!("{name:?}: not a valid URL"));
                return None;
            }
            return Some(ListSource {
                display: name.clone(),
                location: Location::Url(name.clone()),
                kind,
                exact,
                schedule: None,
            });
        }
        let location = match base {
            None => match EMBEDDED.iter().find(|(n, _)| n == name) {
                Some((n, _)) => Location::Embedded(n),
                None => {
                    self.err(e.span(), key, format!("{name:?}: no such embedded list"));
                    return None;
                }
            },
            Some(dir) => {
                let path = dir.join(name);
                if !path.is_file() {
                    self.err(
                        e.span(),
                        key,
                        format!("{name:?}: no such file ({})", path.display()),
                    );
                    return None;
                }
                Location::File(path)
            }
        };
        Some(ListSource {
            display: name.clone(),
            location,
            kind,
            exact,
            schedule: None,
        })
    }
}

/// Parses `ip:port`, `[ipv6]:port`, or a bare IP (port 53).
pub fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    if let Some((host, port)) = s.rsplit_once(':') {
        let host_is_ip = host.parse::<IpAddr>().is_ok()
            || host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .is_some_and(|h| h.parse::<Ipv6Addr>().is_ok());
        if host_is_ip {
            return Err(format!("invalid port {port:?}"));
        }
    }
    Err("not an address: write IP:PORT, [IPv6]:PORT or a bare IP (port 53); host names are not accepted".into())
}

/// `30s`, `15m`, `24h`, `7d`, or bare seconds, in seconds (saturating); `None` when it is
/// not one of these.
pub fn parse_secs(s: &str) -> Option<u64> {
    let t = s.trim();
    let (num, mul) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1),
        Some((i, 'm')) => (&t[..i], 60),
        Some((i, 'h')) => (&t[..i], 3600),
        Some((i, 'd')) => (&t[..i], 86_400),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .map(|v| v.saturating_mul(mul))
}

/// `500ms`, or what [`parse_secs`] reads (`30s`, `15m`, `24h`, `7d`, bare seconds), as a
/// `Duration`; `None` when it is neither. The durations of the command line (`firewall apply
/// --confirm`, the guard's `--after`); each caller sets its own bounds and message.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let t = s.trim();
    match t.strip_suffix("ms") {
        Some(ms) => ms.trim().parse::<u64>().ok().map(Duration::from_millis),
        None => parse_secs(t).map(Duration::from_secs),
    }
}

/// Smallest non-zero `cache.max_bytes`: each of the cache's 16 shards then holds 4 KiB,
/// a few ordinary answers.
pub const MIN_CACHE_BYTES: u64 = 64 << 10;

/// Reads `cache.max_bytes`: bytes as a number, or text with an optional binary unit
/// (`"64MiB"`, `"512 KiB"`, `"1GiB"`, `"65536B"`). 0 turns the cache off.
pub fn parse_size(v: &RawSize) -> Result<usize, String> {
    let bad = |what: &str| {
        format!(
            "{what}: write a number of bytes or a size such as \"64MiB\" (units B, KiB, MiB, GiB), from {MIN_CACHE_BYTES} up, or 0 to turn the cache off"
        )
    };
    let n = match v {
        RawSize::Number(n) => u64::try_from(*n).map_err(|_| bad(&n.to_string()))?,
        RawSize::Text(t) => {
            let s = t.trim();
            let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(digits);
            let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "kib" => 1 << 10,
                "mib" => 1 << 20,
                "gib" => 1 << 30,
                _ => return Err(bad(&format!("{t:?}"))),
            };
            num.parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(mult))
                .ok_or_else(|| bad(&format!("{t:?}")))?
        }
    };
    let shown = || match v {
        RawSize::Number(n) => n.to_string(),
        RawSize::Text(t) => format!("{t:?}"),
    };
    if n != 0 && n < MIN_CACHE_BYTES {
        return Err(bad(&format!("{} is too small", shown())));
    }
    if n > 1 << 40 {
        return Err(bad(&format!("{} is above 1 TiB", shown())));
    }
    usize::try_from(n).map_err(|_| bad(&shown()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_max_bytes_takes_numbers_and_binary_units() {
        let bytes = |v: &str| {
            Config::parse(&format!("[cache]\nmax_bytes = {v}\n"), "t.toml", None)
                .map(|c| c.cache.max_bytes)
        };
        assert_eq!(bytes("67108864").unwrap(), 64 << 20);
        assert_eq!(bytes("\"64MiB\"").unwrap(), 64 << 20);
        assert_eq!(bytes("\"512 kib\"").unwrap(), 512 << 10);
        assert_eq!(bytes("\"1GiB\"").unwrap(), 1 << 30);
        assert_eq!(bytes("0").unwrap(), 0);
        assert_eq!(
            Config::parse("", "t.toml", None).unwrap().cache.max_bytes,
            64 << 20
        );
        for (v, why) in [
            ("\"64MB\"", "\"64MB\": write a number of bytes"),
            ("-1", "-1: write"),
            ("1000", "1000 is too small"),
            ("\"2048GiB\"", "above 1 TiB"),
        ] {
            let e = bytes(v).unwrap_err().0;
            let m = e[0].to_string();
            assert!(m.starts_with("t.toml:2:13: cache.max_bytes: "), "{m}");
            assert!(m.contains(why), "{m}");
        }
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded_default();
        assert_eq!(c.server.listen, vec!["127.0.0.1:5300".parse().unwrap()]);
        assert_eq!(c.upstream.servers.len(), 2);
        assert_eq!(c.blocking.mode, BlockMode::Sinkhole);
        assert!(matches!(
            c.blocking.lists[0].location,
            Location::Embedded("blocklists/messaging.txt")
        ));
        assert!(c.blocking.bypass_signals);
        assert!(
            c.blocking
                .lists
                .iter()
                .any(|l| l.location == Location::Embedded("blocklists/doh-names.txt"))
        );
    }

    #[test]
    fn socket_addrs() {
        assert_eq!(
            parse_socket_addr("[2001:db8::1]:5353").unwrap(),
            "[2001:db8::1]:5353".parse().unwrap()
        );
        assert_eq!(
            parse_socket_addr("1.1.1.1").unwrap(),
            "1.1.1.1:53".parse().unwrap()
        );
        assert!(
            parse_socket_addr("1.1.1.1:5x")
                .unwrap_err()
                .contains("invalid port")
        );
        assert!(parse_socket_addr("dns.google:53").is_err());
    }

    fn errs(text: &str) -> Vec<String> {
        match Config::parse(text, "t.toml", Some(Path::new("/nonexistent"))) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn server_name_is_a_full_host_name_or_an_error_at_its_line() {
        let c = Config::parse("[server]\nname = \"DNS.Lan.\"\n", "t.toml", None).unwrap();
        assert_eq!(c.server.name.as_deref(), Some("dns.lan"));
        assert_eq!(Config::parse("", "t.toml", None).unwrap().server.name, None);
        for bad in ["dns", "not a name.lan", "_dns.lan"] {
            let e = errs(&format!("[server]\n\nname = \"{bad}\"\n"));
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert!(e[0].starts_with("t.toml:3:8: server.name: "), "{e:?}");
            assert!(e[0].contains("dns.lan"), "says what to write: {e:?}");
        }
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = errs("[server]\nlisten = [\"127.0.0.1:53\"]\nlisen = 1\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("t.toml:3:1: server.lisen: unknown field `lisen`"),
            "{e:?}"
        );
    }

    #[test]
    fn wrong_type_names_key() {
        let e = errs("[upstream]\ntimeout_ms = \"fast\"\n");
        assert!(
            e[0].starts_with("t.toml:2:14: upstream.timeout_ms: "),
            "{e:?}"
        );
    }

    #[test]
    fn all_semantic_errors_are_collected() {
        let e = errs(
            "[upstream]\nservers = [\"1.1.1.1:5x\"]\n[blocking]\nmode = \"drop\"\nsinkhole_ipv4 = \"::\"\n",
        );
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("t.toml:2:12: upstream.servers: \"1.1.1.1:5x\": invalid port"));
        assert!(e[1].starts_with("t.toml:4:8: blocking.mode: unknown mode \"drop\""));
        assert!(e[2].starts_with("t.toml:5:17: blocking.sinkhole_ipv4:"));
    }

    #[test]
    fn log_section() {
        let c = Config::parse(
            "[log]\npath = \"q.jsonl\"\nmax_size_mb = 0.5\nkeep = 2\nsession_gap_s = 5\n",
            "t.toml",
            Some(Path::new("/etc/sinkhole")),
        )
        .unwrap();
        let l = c.log.unwrap();
        assert_eq!(l.path, Some(PathBuf::from("/etc/sinkhole/q.jsonl")));
        assert_eq!((l.max_bytes, l.keep), (524_288, 2));
        assert_eq!(l.session_gap, Duration::from_secs(5));
        assert!(!l.anonymize_clients);
        let off = Config::parse("[log]\npath = \"q\"\nenabled = false\n", "t.toml", None);
        assert!(off.unwrap().log.is_none());
        assert!(Config::parse("", "t.toml", None).unwrap().log.is_none());
        let e = errs("[log]\npath = \"q\"\nmax_size_mb = 0\nsession_gap_s = 0\nkep = 1\n");
        assert!(
            e[0].starts_with("t.toml:5:1: log.kep: unknown field"),
            "{e:?}"
        );
        let e = errs("[log]\npath = \"q\"\nmax_size_mb = 0\nsession_gap_s = 0\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("t.toml:3:15: log.max_size_mb: 0: must be between"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("t.toml:4:17: log.session_gap_s: 0:"),
            "{e:?}"
        );
        let e = errs("[log]\nkeep = 1\n");
        assert!(
            e[0].contains("log.path: the [log] section needs `path`"),
            "{e:?}"
        );
    }

    #[test]
    fn missing_list_file_is_an_error() {
        let e = errs("[blocking]\nlists = [\"nope.txt\"]\n");
        assert!(
            e[0].starts_with("t.toml:2:10: blocking.lists: \"nope.txt\": no such file"),
            "{e:?}"
        );
    }

    #[test]
    fn list_tables_urls_and_new_blocking_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("h.txt"), "a.test\n").unwrap();
        let c = Config::parse(
            "[blocking]\nlists = [\"https://lists.example/x.txt\", { source = \"h.txt\", match = \"exact\" }]\nrefresh = \"12h\"\ncache_dir = \"cache\"\nmax_shrink = \"30%\"\n",
            "t.toml",
            Some(dir.path()),
        )
        .unwrap();
        let b = &c.blocking;
        assert_eq!(
            b.lists[0].location,
            Location::Url("https://lists.example/x.txt".into())
        );
        assert!(!b.lists[0].exact);
        assert!(b.lists[1].exact);
        assert_eq!(b.refresh, Duration::from_secs(12 * 3600));
        assert_eq!(b.cache_dir, dir.path().join("cache"));
        assert_eq!(b.max_shrink, 30);
        let e = errs(
            "[blocking]\nlists = [{ source = \"h.txt\", match = \"fuzzy\" }]\nrefresh = \"5s\"\nmax_shrink = 150\n",
        );
        assert!(
            e.iter()
                .any(|m| m.contains("blocking.lists") && m.contains("fuzzy")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("t.toml:3:11: blocking.refresh")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("t.toml:4:14: blocking.max_shrink")),
            "{e:?}"
        );
    }
}
