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

/// Prints each skipped list or hosts-file line and each hint about local answers as a
/// warning, and one `FILE: ok (…)` line; exit 2 when the config does not validate or a
/// list or hosts file cannot be read.
fn check(file: &Path) -> Result<(), Error> {
    let cfg = load_config(Some(file))?;
    for w in &cfg.warnings {
        eprintln!("warning: {w}");
    }
    // MAC addresses are not looked up here: the check reads files, not the network.
    let (policy, reports, local_report) =
        Policy::load_with(&cfg, || Arc::new(FixedTable::default())).map_err(Error::usage)?;
    let mut skipped: usize = reports.iter().map(|r| r.skipped_total()).sum();
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
    for f in &local_report.files {
        skipped += f.skipped;
        for e in &f.errors {
            eprintln!(
                "{}:{}: warning: skipped {:?} ({})",
                f.display, e.line, e.text, e.reason
            );
        }
        if f.skipped > f.errors.len() {
            eprintln!(
                "{}: warning: {} more lines skipped",
                f.display,
                f.skipped - f.errors.len()
            );
        }
    }
    for w in &local_report.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "{}: ok ({} rules from {} lists, {} local names, {} lines skipped)",
        file.display(),
        reports.iter().map(|r| r.entries).sum::<usize>(),
        reports.len(),
        policy.local.len(),
        skipped
    );
    Ok(())
}
