//! `sinkhole log tail|first|top|suggest|heartbeats`: where the log is, the filters of the
//! options, and printing around `querylog::tail` and `querylog::report`. Exit codes: 0 ok
//! (also when the reader closes the pipe early), 1 a runtime failure (a database that is
//! down or refuses the password), 2 a bad option or config.
//!
//! Where the records come from: `--file`, else the database of `[log.postgres]` when the
//! config has one (every instance's records, `--instance` for one), else `log.path`.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;

use super::common::Error;
use crate::config::{Config, LogConfig};
use crate::pipeline::blocking::Blocking;
use crate::postgres::DbError;
use crate::postgres::read::{Db, error_text};
use crate::querylog::source::{Log, Records};

/// Where the log is: `--file`, or the config's `[log.postgres]` database, or its
/// `log.path`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogSource {
    /// Config file whose query log is read: its [log.postgres] database when it has one
    /// (every instance's records), else its log.path.
    #[arg(long, short, value_name = "FILE", default_value = "sinkhole.toml")]
    pub config: PathBuf,
    /// Read this log file instead (its rotated files `FILE.1`, `FILE.2`… are read too),
    /// also when the config has [log.postgres].
    #[arg(long, value_name = "FILE", conflicts_with = "instance")]
    pub file: Option<PathBuf>,
    /// Only the records of this instance (its server.name, or host name) from the
    /// [log.postgres] database; without it, every instance's.
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
}

/// What a command reads, and the runtime that drives a database connection (dropped
/// after it).
struct Reader {
    log: Log,
    rt: Option<tokio::runtime::Runtime>,
}

impl Reader {
    fn file(p: PathBuf) -> Self {
        Self {
            log: Log::File(p),
            rt: None,
        }
    }

    fn records(&self) -> &dyn Records {
        self.log.records()
    }
}

/// A database error, naming the config to fix.
fn db_error(config: &Path, e: DbError) -> Error {
    let hint = match &e {
        DbError::Connect { .. } => {
            "; check that the database runs and log.postgres.url (or url_file) names it, with the right user and password"
        }
        _ => "",
    };
    Error::runtime(format_args!(
        "{}: [log.postgres]: {}{hint}",
        config.display(),
        error_text(&e)
    ))
}

/// Connects to `[log.postgres]`'s database.
fn open_db(config: &Path, cfg: &Config, instance: Option<&str>) -> Result<Reader, Error> {
    let log = cfg.log.as_ref();
    let Some(pg) = log.and_then(|l| l.postgres.as_ref()) else {
        return Err(Error::usage(format_args!(
            "{}: --instance reads the [log.postgres] database, and the config has none",
            config.display()
        )));
    };
    let gap = log.map_or(std::time::Duration::from_secs(30), |l| l.session_gap);
    // One worker drives the connection while the reports block on it from here.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let db = rt
        .block_on(Db::open(pg, gap, instance.map(str::to_string)))
        .map_err(|e| db_error(config, e))?;
    if let Some(i) = instance
        && !db.instances().iter().any(|n| n == i)
    {
        return Err(Error::usage(format_args!(
            "--instance {i:?}: no instance of that name writes to {} (instances: {})",
            pg.url.describe(),
            db.instances().join(", ")
        )));
    }
    Ok(Reader {
        log: Log::Db(Box::new(db)),
        rt: Some(rt),
    })
}

/// Which records a report reads: where the log is, one client, a start time.
#[derive(Debug, Clone, clap::Args)]
pub struct LogScope {
    /// Where the log is.
    #[command(flatten)]
    pub src: LogSource,
    /// Only this client (IP or CIDR).
    #[arg(long, value_name = "IP")]
    pub client: Option<String>,
    /// Only records since TIME.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
}

/// `sinkhole log …`
#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// The last records, one readable line each; --follow keeps printing new ones.
    Tail {
        /// Where the log is.
        #[command(flatten)]
        src: LogSource,
        /// Keep printing records as they arrive (across rotation).
        #[arg(short, long)]
        follow: bool,
        /// Only this client (IP) or network (CIDR).
        #[arg(long, value_name = "IP|CIDR")]
        client: Option<String>,
        /// Only this action (allowed, cached, blocked, local, refused, failed).
        #[arg(long, value_name = "ACTION")]
        action: Option<String>,
        /// Only names matching this glob (`*.example.com`).
        #[arg(long, value_name = "GLOB")]
        name: Option<String>,
        /// Only queries that came over this transport (udp, tcp, tls, https).
        #[arg(long, value_name = "PROTO")]
        proto: Option<String>,
        /// Print the stored JSON lines.
        #[arg(long)]
        json: bool,
        /// How many past records to show first.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
    },
    /// Each session's first names, per client: what an application looks up as it starts.
    #[command(mut_arg("since", |a| a.help(
        "Only sessions since TIME (RFC 3339, a date, or an age: 15m, 2h, 7d)"
    )))]
    First {
        /// Where the log is, which client, since when.
        #[command(flatten)]
        scope: LogScope,
        /// Names shown per session.
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// Only names whose registrable domain the client had never asked before.
        #[arg(long)]
        new: bool,
    },
    /// Counts: the most asked names, domains, clients, or blocked names.
    Top {
        /// Where the log is.
        #[command(flatten)]
        src: LogSource,
        /// What to count.
        #[arg(long, value_enum, default_value = "name")]
        by: crate::querylog::report::By,
        /// Rows shown.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Only records since TIME.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
    },
    /// Registrable domains that most often open a session and are not blocked yet, with the
    /// command that would block each.
    Suggest {
        /// Where the log is (the config's block lists are checked too), which client, since
        /// when.
        #[command(flatten)]
        scope: LogScope,
        /// Rows shown.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Names a client asks at a steady interval (devices and applications phoning home).
    Heartbeats {
        /// Where the log is, which client, since when.
        #[command(flatten)]
        scope: LogScope,
        /// Fewest times a name must be asked.
        #[arg(long, default_value_t = 5)]
        min: usize,
    },
}

/// Runs one `log` subcommand.
pub(super) fn run(cmd: LogCommand) -> Result<(), Error> {
    match report(cmd) {
        // `sinkhole log tail | head` closes the pipe early: not an error.
        Err(Error::Runtime(e))
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            Ok(())
        }
        r => r,
    }
}

fn log_path(src: &LogSource) -> Result<(Reader, Option<Config>), Error> {
    if let Some(f) = &src.file {
        let cfg = Config::load(&src.config).ok();
        return Ok((Reader::file(f.clone()), cfg));
    }
    let cfg = Config::load(&src.config).map_err(Error::usage)?;
    if src.instance.is_some() || cfg.log.as_ref().is_some_and(|l| l.postgres.is_some()) {
        let r = open_db(&src.config, &cfg, src.instance.as_deref())?;
        return Ok((r, Some(cfg)));
    }
    match &cfg.log {
        Some(LogConfig { path: Some(p), .. }) => Ok((Reader::file(p.clone()), Some(cfg))),
        Some(_) => Err(Error::usage(format_args!(
            "{}: the query log has no file (log.path)",
            src.config.display()
        ))),
        None => Err(Error::usage(format_args!(
            "{}: no query log configured (a [log] section with path, enabled); or name the file with --file",
            src.config.display()
        ))),
    }
}

/// A `--proto` value: one of the transports' names.
fn proto_name(p: &str) -> Result<String, Error> {
    use crate::pipeline::Transport;
    let p = p.to_ascii_lowercase();
    if Transport::ALL.iter().any(|t| t.name() == p) {
        Ok(p)
    } else {
        let names: Vec<&str> = Transport::ALL.iter().map(|t| t.name()).collect();
        Err(Error::usage(format_args!(
            "--proto {p:?}: use one of {}",
            names.join(", ")
        )))
    }
}

fn log_filter(
    client: Option<&str>,
    action: Option<&str>,
    name: Option<&str>,
    since: Option<&str>,
) -> Result<crate::querylog::tail::Filter, Error> {
    use crate::querylog::tail::Filter;
    let client = client
        .map(|c| {
            c.parse::<ipnet::IpNet>()
                .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    Error::usage(format_args!("--client {c:?}: not an IP address or CIDR"))
                })
        })
        .transpose()?;
    use crate::querylog::ACTION_NAMES as ACTIONS;
    if let Some(a) = action
        && !ACTIONS.contains(&a)
    {
        return Err(Error::usage(format_args!(
            "--action {a:?}: use one of {}",
            ACTIONS.join(", ")
        )));
    }
    let name = name
        .map(|g| {
            globset::GlobBuilder::new(&g.to_ascii_lowercase())
                .literal_separator(false)
                .build()
                .map(|g| g.compile_matcher())
                .map_err(|e| Error::usage(format_args!("--name {g:?}: {e}")))
        })
        .transpose()?;
    let since = since
        .map(|s| {
            crate::querylog::report::parse_since(s, std::time::SystemTime::now())
                .map_err(|e| Error::usage(format_args!("--since {e}")))
        })
        .transpose()?;
    Ok(Filter {
        client,
        action: action.map(str::to_string),
        name,
        since,
        until: None,
        proto: None,
    })
}

impl LogScope {
    /// The log, the config (when it loads) and the filter of `--client` and `--since`.
    fn open(&self) -> Result<(Reader, Option<Config>, crate::querylog::tail::Filter), Error> {
        let (path, cfg) = log_path(&self.src)?;
        let f = log_filter(self.client.as_deref(), None, None, self.since.as_deref())?;
        Ok((path, cfg, f))
    }
}

fn report(cmd: LogCommand) -> Result<(), Error> {
    use crate::querylog::{report, tail};
    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match cmd {
        LogCommand::Tail {
            src,
            follow,
            client,
            action,
            name,
            proto,
            json,
            lines,
        } => {
            let (reader, _) = log_path(&src)?;
            let mut f = log_filter(client.as_deref(), action.as_deref(), name.as_deref(), None)?;
            f.proto = proto.map(|p| proto_name(&p)).transpose()?;
            let style = tail::Style { color: tty, json };
            match (&reader.log, &reader.rt) {
                (Log::Db(db), Some(rt)) => {
                    let db_err = |e| db_error(&src.config, e);
                    if follow {
                        rt.block_on(db.follow(&f, style, db.several(), lines, &mut out))
                            .map_err(db_err)?;
                    } else {
                        for e in db.last(&f, lines).map_err(db_err)? {
                            writeln!(out, "{}", tail::render(&e, style))?;
                        }
                    }
                }
                (Log::File(path), _) => tail::run(path, &f, lines, follow, style, &mut out)?,
                (Log::Db(_), None) => {}
            }
        }
        LogCommand::First { scope, count, new } => {
            let (reader, _, f) = scope.open()?;
            let openings = report::first(reader.records(), &f, count, new)
                .map_err(|e| db_error(&scope.src.config, e))?;
            report::print_first(&mut out, &openings)?;
        }
        LogCommand::Top {
            src,
            by,
            limit,
            since,
        } => {
            let (reader, _) = log_path(&src)?;
            let f = log_filter(None, None, None, since.as_deref())?;
            let rows = match &reader.log {
                Log::File(path) => report::top(path, &f, by, limit),
                Log::Db(db) => db
                    .top(&f, by, limit)
                    .map_err(|e| db_error(&src.config, e))?,
            };
            for (n, key) in rows {
                writeln!(out, "{n:>9}  {key}")?;
            }
        }
        LogCommand::Suggest { scope, limit } => {
            let (reader, cfg, f) = scope.open()?;
            let blocking = match &cfg {
                Some(c) => {
                    let clock = std::sync::Arc::new(crate::pipeline::local_time::LocalTime::new(
                        c.server.timezone.as_deref(),
                    ));
                    Some(
                        Blocking::load(&c.blocking, &clock)
                            .context("loading blocklists")?
                            .0,
                    )
                }
                None => None,
            };
            let target = cfg
                .as_ref()
                .and_then(|c| {
                    c.blocking.lists.iter().find_map(|s| match &s.location {
                        crate::blocklist::load::Location::File(p)
                            if s.kind == crate::blocklist::Kind::Block =>
                        {
                            Some(p.display().to_string())
                        }
                        _ => None,
                    })
                })
                .unwrap_or_else(|| "blocklists/custom.txt".to_string());
            let is_blocked = |d: &str| {
                blocking
                    .as_ref()
                    .is_some_and(|b| b.list().is_blocked(d.as_bytes()))
            };
            let (rows, sessions) = report::suggest(reader.records(), &f, &is_blocked, limit)
                .map_err(|e| db_error(&scope.src.config, e))?;
            writeln!(
                out,
                "# registrable domains among the first {} queries of {sessions} sessions, not blocked yet",
                report::OPENING
            )?;
            for r in rows {
                writeln!(
                    out,
                    "{:>6} sessions  {:>4} clients  {:<30}  sinkhole lists add {} --to {}",
                    r.sessions,
                    r.clients,
                    r.domain,
                    r.domain,
                    shell_quote(&target)
                )?;
            }
        }
        LogCommand::Heartbeats { scope, min } => {
            let (reader, _, f) = scope.open()?;
            let beats = report::heartbeats(reader.records(), &f, min)
                .map_err(|e| db_error(&scope.src.config, e))?;
            for h in beats {
                writeln!(
                    out,
                    "{:<15} {}  every {:.0} s ±{:.0} s  ({} times)",
                    h.client, h.qname, h.period_s, h.jitter_s, h.times
                )?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Quotes a path for a shell command line when it needs it.
fn shell_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+:,@".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
