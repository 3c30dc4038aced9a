//! The command line: the clap derive of [`Cli`] and [`run`], which hands each subcommand to
//! its family, one file each: `serve`, `config` (`config check`), `log` (`log
//! tail|first|top|suggest|heartbeats`), `lists` (`lists check|lint|convert|add|remove|update`),
//! `firewall` (`firewall show|check|apply|remove|confirm|rollback`), `cert` (`cert
//! self-signed`), `db` (`db migrate`), `control` (`pause`, `resume`, `status`: the running server's HTTP
//! API) and `man` (`man`, `completions`: pages and scripts from these definitions). Each family holds its
//! clap arguments, its printing and its exit codes; the work itself is in the library
//! (`blocklist`, `querylog`, `firewall`, `service`). Dependencies go one way: this file →
//! the families → `common` (the [`Error`] every command returns, `load_config`).
//!
//! Exit codes: 0 ok, 1 a runtime failure (or a finding a command reports, [`Status`]), 2 a
//! config or usage error. `main` prints an [`Error`] once.

mod cert;
mod common;
mod config;
mod control;
mod db;
mod firewall;
mod lists;
mod lists_shared;
mod log;
mod man;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use cert::CertCommand;
pub use common::{Error, Status};
pub use config::ConfigCommand;
pub use db::DbCommand;
pub use firewall::{BackendArg, FamilyArg, FirewallCommand, FirewallOpts, RollbackArgs};
pub use lists::ListsCommand;
pub use log::{LogCommand, LogScope, LogSource};
pub use man::ShellArg;

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
    ///
    /// The log is read from the config's [log.postgres] database when it has one: every
    /// instance's records together (--instance NAME for one resolver's); sessions are
    /// numbered per instance, and output names the instance when records of more than one
    /// are shown (`session 3 on dns2.lan`, tail lines ending in `@dns2.lan`). Otherwise, or
    /// with --file, the JSON Lines file and its rotated ones are read.
    #[command(subcommand)]
    Log(LogCommand),
    /// Blocklist maintenance: check names, lint, convert, edit, download.
    #[command(subcommand)]
    Lists(ListsCommand),
    /// Certificates for DNS over TLS.
    #[command(subcommand)]
    Cert(CertCommand),
    /// The PostgreSQL database of `[log.postgres]`: its schema.
    #[command(subcommand)]
    Db(DbCommand),
    /// Pause blocking on the running server for a while (its HTTP API, `[http] listen`).
    Pause {
        /// How long: 30s, 5m, 2h (at most 7d); blocking comes back by itself after it.
        #[arg(value_name = "DURATION")]
        duration: String,
        /// Config file of the running server (its `[http]` address and token).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// End a pause of blocking on the running server now.
    Resume {
        /// Config file of the running server (its `[http]` address and token).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Show whether the running server is blocking or paused.
    Status {
        /// Config file of the running server (its `[http]` address and token).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Manual pages: sinkhole(1), one per command family, sinkhole.toml(5).
    Man {
        /// Write every page into this folder (and list them); without it, print
        /// sinkhole(1) (`sinkhole man | man -l -`).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: ShellArg,
    },
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<Status, Error> {
    match cli.command {
        Command::Serve { config } => serve::run(config).map(|()| Status::Success),
        Command::Config(cmd) => config::run(cmd).map(|()| Status::Success),
        Command::Firewall(cmd) => firewall::run(cmd).map(|()| Status::Success),
        Command::Log(cmd) => log::run(cmd).map(|()| Status::Success),
        Command::Lists(cmd) => lists::run(cmd),
        Command::Cert(cmd) => cert::run(cmd).map(|()| Status::Success),
        Command::Db(cmd) => db::run(cmd).map(|()| Status::Success),
        Command::Pause { duration, config } => {
            control::run(control::Control::Pause(duration), config).map(|()| Status::Success)
        }
        Command::Resume { config } => {
            control::run(control::Control::Resume, config).map(|()| Status::Success)
        }
        Command::Status { config } => {
            control::run(control::Control::Status, config).map(|()| Status::Success)
        }
        Command::Man { out } => man::man(out).map(|()| Status::Success),
        Command::Completions { shell } => man::completions(shell).map(|()| Status::Success),
    }
}
