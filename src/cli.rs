//! The command line: `serve`, `config check`. One function per subcommand; each returns an
//! exit code (0 ok, 1 runtime failure, 2 config or usage error).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

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
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
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
            let skipped: usize = reports.iter().map(|r| r.errors.len()).sum();
            for r in &reports {
                for e in &r.errors {
                    eprintln!(
                        "{}:{}: warning: {}: skipped {:?}",
                        r.display, e.line, e.reason, e.text
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
