//! The command line: `serve`, `config check`, `log tail|first|top|suggest|heartbeats`,
//! `firewall show|check|apply|remove|confirm|rollback` (in `cli_firewall`),
//! `lists check|lint|convert|add|remove|update` (in `cli_lists`). One function per
//! subcommand; each returns an
//! exit code (0 ok, 1 runtime failure, 2 config or usage error).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::blocklist::load::log_reports;
use crate::config::{Config, DEFAULT_NAME};
use crate::pipeline::blocking::Blocking;
use crate::service::{Service, ServiceOptions};

/// sinkhole: a filtering DNS resolver for LANs.
#[derive(Debug, Parser)]
#[command(name = "sinkhole", version, about, propagate_version = true)]
pub struct Cli {
    /// Log level (error, warn, info, debug, trace) or a tracing filter; overrides RUST_LOG.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve DNS on UDP and TCP on every `server.listen` address.
    Serve {
        /// Config file (TOML); without it, the embedded default (127.0.0.1:5300, Quad9, the
        /// shipped lists).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Config file commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Firewall companion: rules that make the resolver the only way out for DNS.
    #[command(subcommand)]
    Firewall(FirewallCommand),
    /// Read the query log: what each client asks, and how applications start.
    #[command(subcommand)]
    Log(LogCommand),
    /// Blocklist maintenance: check names, lint, convert, edit, download.
    #[command(subcommand)]
    Lists(ListsCommand),
}

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

/// `sinkhole lists …`
#[derive(Debug, Subcommand)]
pub enum ListsCommand {
    /// For each name: blocked or allowed, and every rule that matched it (file:line).
    Check {
        /// Config file (the same as `serve`'s); without it, the embedded default.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Names to check.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Invalid lines, duplicates, redundant entries, entries an allow cancels; exit 1 when a
    /// line is invalid.
    Lint {
        /// Config file (the same as `serve`'s): its allowlists cancel entries of the files
        /// too. Without it, the embedded default.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// List files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print the combined set of the files in another format.
    Convert {
        /// Output format.
        #[arg(long, value_enum)]
        to: crate::blocklist::tools::Format,
        /// Config file (the same as `serve`'s): with no FILE, its lists and allowlists are
        /// converted. Without it, the embedded default.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// List files; none = the lists of the config.
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Add names to a list file (in place, atomically; comments and order kept).
    Add {
        /// Names to add.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// The list file.
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// A comment written after each added name.
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
        /// Config file (the same as `serve`'s): warns when the file is not one of its lists,
        /// so a running server would not see the change.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Remove names from a list file (in place, atomically; comments and order kept).
    Remove {
        /// Names to remove.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// The list file.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// Config file (the same as `serve`'s): warns when the file is not one of its lists.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Download the URL lists of the config now (conditional requests; last good copy kept).
    Update {
        /// Config file.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// Options every `sinkhole firewall` subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct FirewallOpts {
    /// Config file with a `[firewall]` section.
    #[arg(long, short, value_name = "FILE", default_value = "sinkhole.toml")]
    pub config: PathBuf,
    /// Rule set flavour; defaults to `firewall.backend`.
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// Only one family (iptables backend): ipv4 → iptables-restore, ipv6 → ip6tables-restore.
    #[arg(long, value_enum)]
    pub family: Option<FamilyArg>,
}

/// `--backend`
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BackendArg {
    /// One `table inet sinkhole` for `nft -f`.
    Nftables,
    /// `iptables-restore` / `ip6tables-restore` input.
    Iptables,
}

/// `--family`
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FamilyArg {
    /// IPv4 only.
    Ipv4,
    /// IPv6 only.
    Ipv6,
}

/// `sinkhole firewall …`
#[derive(Debug, Subcommand)]
pub enum FirewallCommand {
    /// Print the complete rule set.
    Show(FirewallOpts),
    /// Validate the rule set with the real tool (`nft -c`, `iptables-restore --test`).
    Check(FirewallOpts),
    /// Apply the rule set atomically; with --confirm, roll back unless confirmed in time.
    Apply {
        /// Common options.
        #[command(flatten)]
        opts: FirewallOpts,
        /// Roll back unless confirmed within this time (`30s`, `2m`), on the terminal or by
        /// `sinkhole firewall confirm` from another shell.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        confirm: Option<Duration>,
    },
    /// Remove what sinkhole added (and nothing else).
    Remove(FirewallOpts),
    /// Confirm a pending `apply --confirm` (from another shell): keep its rules.
    Confirm(FirewallOpts),
    /// Restore the rules saved by a pending `apply --confirm` now (also what its rollback
    /// guard runs when the window passes).
    Rollback(RollbackArgs),
}

/// `sinkhole firewall rollback`
#[derive(Debug, Clone, clap::Args)]
pub struct RollbackArgs {
    /// The saved rules [default: $SINKHOLE_RUN_DIR/firewall.saved, /run/sinkhole/firewall.saved].
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Only the state armed by the `apply` with this id (the guard's own check).
    #[arg(long, hide = true)]
    pub id: Option<String>,
    /// Wait this long first, giving up once the window is decided (the detached guard).
    #[arg(long, hide = true, value_parser = parse_duration, requires = "id")]
    pub after: Option<Duration>,
}

/// `30s`, `2m`, `500ms`, or bare seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mul_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else {
        (s, 1000)
    };
    match num.trim().parse::<u64>() {
        Ok(v) if v > 0 => Ok(Duration::from_millis(v.saturating_mul(mul_ms))),
        _ => Err(format!("{s:?}: write a duration such as 30s, 2m or 500ms")),
    }
}

/// `sinkhole config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file (and that its lists can be read) without serving.
    Check {
        /// The config file.
        file: PathBuf,
    },
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::Config(ConfigCommand::Check { file }) => config_check(&file),
        Command::Firewall(cmd) => crate::cli_firewall::run(cmd),
        Command::Log(cmd) => log_command(cmd),
        Command::Lists(cmd) => crate::cli_lists::run(cmd),
    }
}

fn log_command(cmd: LogCommand) -> ExitCode {
    match log_run(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `sinkhole log tail | head` closes the pipe early: not an error.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("sinkhole: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// A bad option value or config: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn log_path(src: &LogSource) -> anyhow::Result<(PathBuf, Option<Config>)> {
    if let Some(f) = &src.file {
        let cfg = Config::load(&src.config).ok();
        return Ok((f.clone(), cfg));
    }
    let cfg = Config::load(&src.config).map_err(|e| UsageError(format!("{e}")))?;
    match &cfg.log {
        Some(l) => Ok((l.path.clone(), Some(cfg))),
        None => Err(UsageError(format!(
            "{}: no query log configured (a [log] section with path, enabled); or name the file with --file",
            src.config.display()
        ))
        .into()),
    }
}

fn log_filter(
    client: Option<&str>,
    action: Option<&str>,
    name: Option<&str>,
    since: Option<&str>,
) -> anyhow::Result<crate::querylog::tail::Filter> {
    use crate::querylog::tail::Filter;
    let client = client
        .map(|c| {
            c.parse::<ipnet::IpNet>()
                .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| UsageError(format!("--client {c:?}: not an IP address or CIDR")))
        })
        .transpose()?;
    const ACTIONS: [&str; 6] = ["allowed", "cached", "blocked", "local", "refused", "failed"];
    if let Some(a) = action
        && !ACTIONS.contains(&a)
    {
        return Err(
            UsageError(format!("--action {a:?}: use one of {}", ACTIONS.join(", "))).into(),
        );
    }
    let name = name
        .map(|g| {
            globset::GlobBuilder::new(&g.to_ascii_lowercase())
                .literal_separator(false)
                .build()
                .map(|g| g.compile_matcher())
                .map_err(|e| UsageError(format!("--name {g:?}: {e}")))
        })
        .transpose()?;
    let since = since
        .map(|s| {
            crate::querylog::report::parse_since(s, std::time::SystemTime::now())
                .map_err(|e| UsageError(format!("--since {e}")))
        })
        .transpose()?;
    Ok(Filter {
        client,
        action: action.map(str::to_string),
        name,
        since,
    })
}

impl LogScope {
    /// The log file, the config (when it loads) and the filter of `--client` and `--since`.
    fn open(&self) -> anyhow::Result<(PathBuf, Option<Config>, crate::querylog::tail::Filter)> {
        let (path, cfg) = log_path(&self.src)?;
        let f = log_filter(self.client.as_deref(), None, None, self.since.as_deref())?;
        Ok((path, cfg, f))
    }
}

fn log_run(cmd: LogCommand) -> anyhow::Result<()> {
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
            json,
            lines,
        } => {
            let (path, _) = log_path(&src)?;
            let f = log_filter(client.as_deref(), action.as_deref(), name.as_deref(), None)?;
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
                Some(c) => Some(Blocking::load(&c.blocking).context("loading blocklists")?.0),
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

pub(crate) fn load_config(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
    match path {
        None => Ok(Config::embedded_default()),
        Some(p) => Config::load(p).map_err(|errs| {
            for e in &errs.0 {
                eprintln!("{e}");
            }
            eprintln!(
                "sinkhole: {} error(s) in {}; not starting",
                errs.0.len(),
                p.display()
            );
            ExitCode::from(2)
        }),
    }
}

fn config_check(file: &PathBuf) -> ExitCode {
    let cfg = match load_config(Some(file)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match Blocking::load(&cfg.blocking) {
        Ok((b, reports)) => {
            let skipped: usize = reports.iter().map(|r| r.skipped_total()).sum();
            for r in &reports {
                if let Some(w) = &r.warning {
                    eprintln!("{}: warning: {w}", r.display);
                }
                for e in &r.errors {
                    eprintln!(
                        "{}:{}: warning: {}: skipped {:?} ({})",
                        r.display, e.line, e.detail, e.text, e.reason
                    );
                }
            }
            println!(
                "{}: ok ({} rules from {} lists, {} lines skipped)",
                file.display(),
                b.list().len(),
                reports.len(),
                skipped
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sinkhole: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(path: Option<PathBuf>) -> ExitCode {
    let cfg = match load_config(path.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match serve_config(cfg, path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sinkhole: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn serve_config(cfg: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    let started = Instant::now();
    tracing::info!(
        config = path.as_ref().map_or(DEFAULT_NAME.to_string(), |p| p.display().to_string()),
        listen = ?cfg.server.listen,
        upstreams = ?cfg.upstream.servers,
        timeout_ms = cfg.upstream.timeout.as_millis() as u64,
        cache_max_entries = cfg.cache.max_entries,
        mode = ?cfg.blocking.mode,
        "starting sinkhole {}",
        env!("CARGO_PKG_VERSION")
    );
    // Before any socket: a soft limit of 1,024 is easily reached by TCP clients.
    crate::fdlimit::raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sinkhole-rt")
        .build()
        .context("cannot start the async runtime")?;
    let (blocking, reports) = Blocking::load(&cfg.blocking).context("loading blocklists")?;
    log_reports(&reports);
    let sockets =
        crate::server::bind(&cfg.server.listen, cfg.server.udp_threads).with_context(|| {
            format!(
                "cannot listen on {:?} (address in use, or a port below 1024 without root?)",
                cfg.server.listen
            )
        })?;
    let addrs = sockets.local_addrs();
    let rules = blocking.list().len();
    let opts = ServiceOptions {
        config_path: path,
        ..ServiceOptions::default()
    };
    let service = Service::start(cfg, blocking, sockets, rt.handle(), opts)
        .context("cannot start the listeners")?;
    tracing::info!(
        listen = ?addrs,
        rules,
        startup_ms = started.elapsed().as_millis() as u64,
        "serving DNS on UDP and TCP"
    );
    rt.block_on(async {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading config and lists");
                    let r = std::sync::Arc::clone(service.reloader());
                    tokio::spawn(async move { r.reload_logged(true).await });
                }
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .context("signal handling failed")?;
    tracing::info!("shutting down");
    service.shutdown();
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(())
}
