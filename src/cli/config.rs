//! `sinkhole config check`: validate a config file and read its lists without serving.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::common::{Error, load_config};
use std::sync::Arc;

use crate::neighbours::FixedTable;
use crate::pipeline::Policy;

/// `sinkhole config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file (and that its lists can be read) without serving.
    Check {
        /// The config file.
        file: PathBuf,
    },
}

/// Runs one `config` subcommand.
pub(super) fn run(cmd: ConfigCommand) -> Result<(), Error> {
    match cmd {
        ConfigCommand::Check { file } => check(&file),
    }
}

/// Prints each skipped list line as a warning and one `FILE: ok (…)` line; exit 2 when the
/// config does not validate or a list cannot be read.
fn check(file: &Path) -> Result<(), Error> {
    let cfg = load_config(Some(file))?;
    for w in &cfg.warnings {
        eprintln!("warning: {w}");
    }
    // MAC addresses are not looked up here: the check reads files, not the network.
    let (_, reports) =
        Policy::load_with(&cfg, || Arc::new(FixedTable::default())).map_err(Error::usage)?;
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
        reports.iter().map(|r| r.entries).sum::<usize>(),
        reports.len(),
        skipped
    );
    Ok(())
}
