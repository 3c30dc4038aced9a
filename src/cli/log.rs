//! `sinkhole log tail|first|top|suggest|heartbeats`: where the log is, the filters of the
//! options, and printing around `querylog::tail` and `querylog::report`. Exit codes: 0 ok
//! (also when the reader closes the pipe early), 1 a runtime failure, 2 a bad option or
//! config.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use super::common::Error;
use crate::config::{Config, LogConfig};
use crate::pipeline::blocking::Blocking;

/// Where the log is: `--file`, or `log.path` of the config.
#[derive(Debug, Clone, clap::Args)]
pub struct LogSource {
    /// Config file whose `log.path` is read.
    #[arg(long, short, value_name = "FILE", default_value = "sinkhole.toml")]
    pub config: PathBuf,
    /// The log file itself (its rotated files `FILE.1`, `FILE.2`… are read too).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
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

fn log_path(src: &LogSource) -> Result<(PathBuf, Option<Config>), Error> {
    if let Some(f) = &src.file {
        let cfg = Config::load(&src.config).ok();
        return Ok((f.clone(), cfg));
    }
    let cfg = Config::load(&src.config).map_err(Error::usage)?;
    match &cfg.log {
        Some(LogConfig { path: Some(p), .. }) => Ok((p.clone(), Some(cfg))),
        Some(_) => Err(Error::usage(format_args!(
            "{}: the query log has no file (log.path), only [log.postgres]",
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
    /// The log file, the config (when it loads) and the filter of `--client` and `--since`.
    fn open(&self) -> Result<(PathBuf, Option<Config>, crate::querylog::tail::Filter), Error> {
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
            let (path, _) = log_path(&src)?;
            let mut f = log_filter(client.as_deref(), action.as_deref(), name.as_deref(), None)?;
            f.proto = proto.map(|p| proto_name(&p)).transpose()?;
            let style = tail::Style { color: tty, json };
            tail::run(&path, &f, lines, follow, style, &mut out)?;
        }
        LogCommand::First { scope, count, new } => {
            let (path, _, f) = scope.open()?;
            let openings = report::first(&path, &f, count, new);
            report::print_first(&mut out, &openings)?;
        }
        LogCommand::Top {
            src,
            by,
            limit,
            since,
        } => {
            let (path, _) = log_path(&src)?;
            let f = log_filter(None, None, None, since.as_deref())?;
            for (n, key) in report::top(&path, &f, by, limit) {
                writeln!(out, "{n:>9}  {key}")?;
            }
        }
        LogCommand::Suggest { scope, limit } => {
            let (path, cfg, f) = scope.open()?;
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
            let (rows, sessions) = report::suggest(&path, &f, &is_blocked, limit);
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
            let (path, _, f) = scope.open()?;
            for h in report::heartbeats(&path, &f, min) {
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
