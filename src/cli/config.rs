//! `sinkhole config check`: validate a config file and read its lists without serving;
//! `sinkhole config init`: write a first config for this machine's LAN (`config::init`).

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
    /// Write a commented config for this machine's LAN: its LAN addresses, access for the
    /// LAN subnets only, Quad9, the shipped lists, the query log in the state directory,
    /// and a firewall section for its interfaces.
    Init {
        /// Where to write it.
        #[arg(
            long,
            value_name = "FILE",
            default_value = "/etc/sinkhole/sinkhole.toml"
        )]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
        /// Where the query log goes (the service's StateDirectory).
        #[arg(long, value_name = "DIR", default_value = "/var/lib/sinkhole")]
        state_dir: PathBuf,
        /// The shipped lists (the package's); when they are not there, copies of them are
        /// written into `blocklists/` beside the config.
        #[arg(long, value_name = "DIR", default_value = "/usr/share/sinkhole")]
        lists_dir: PathBuf,
    },
}

/// Runs one `config` subcommand.
pub(super) fn run(cmd: ConfigCommand) -> Result<(), Error> {
    match cmd {
        ConfigCommand::Check { file } => check(&file),
        ConfigCommand::Init {
            out,
            force,
            state_dir,
            lists_dir,
        } => init(&out, force, &state_dir, &lists_dir),
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

/// The shipped lists, for a config written where the package's copies are not installed.
const SHIPPED: &[(&str, &str)] = &[
    (
        "messaging.txt",
        include_str!("../../blocklists/messaging.txt"),
    ),
    (
        "doh-names.txt",
        include_str!("../../blocklists/doh-names.txt"),
    ),
    (
        "doh-servers.txt",
        include_str!("../../blocklists/doh-servers.txt"),
    ),
];

/// Writes the LAN config (`config::init`), refusing to replace a file without `force`.
fn init(out: &Path, force: bool, state_dir: &Path, lists_dir: &Path) -> Result<(), Error> {
    use crate::config::init;
    if out.exists() && !force {
        return Err(Error::usage(format_args!(
            "{} exists; --force replaces it",
            out.display()
        )));
    }
    let host = init::discover::discover()
        .map_err(|e| Error::Runtime(anyhow::anyhow!("cannot read the network interfaces: {e}")))?;
    let Some(lan) = init::plan(&host) else {
        return Err(Error::Runtime(anyhow::anyhow!(
            "no interface has a private (LAN) address; write the config by hand from \
             `man sinkhole.toml` (sinkhole.example.toml)"
        )));
    };
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Runtime(anyhow::anyhow!("cannot create {}: {e}", dir.display())))?;
    // The package's lists, or copies beside the config.
    let (base, copied) = if lists_dir.join("messaging.txt").is_file() {
        (lists_dir.display().to_string(), false)
    } else {
        let to = dir.join("blocklists");
        std::fs::create_dir_all(&to)
            .map_err(|e| Error::Runtime(anyhow::anyhow!("cannot create {}: {e}", to.display())))?;
        for (name, text) in SHIPPED {
            let path = to.join(name);
            if !path.exists() {
                std::fs::write(&path, text).map_err(|e| {
                    Error::Runtime(anyhow::anyhow!("cannot write {}: {e}", path.display()))
                })?;
            }
        }
        ("blocklists".to_string(), true)
    };
    let at = |name: &str| format!("{base}/{name}");
    let doh_servers =
        (copied || lists_dir.join("doh-servers.txt").is_file()).then(|| at("doh-servers.txt"));
    let paths = init::Paths {
        lists: vec![at("messaging.txt")],
        doh_names: at("doh-names.txt"),
        doh_servers,
        log: state_dir.join("queries.jsonl").display().to_string(),
    };
    let text = init::render(&lan, &paths);
    std::fs::write(out, text)
        .map_err(|e| Error::Runtime(anyhow::anyhow!("cannot write {}: {e}", out.display())))?;
    println!("{}: written", out.display());
    println!("  listen: {:?} and 127.0.0.1", lan.listen());
    println!("  access.allow: the LAN {:?}, and loopback", lan.subnets());
    if lan.gateway() {
        println!(
            "  firewall: this host routes to {:?}; `sinkhole firewall show --config {}` shows the rules",
            lan.wan,
            out.display()
        );
    } else {
        println!(
            "  firewall: this host is not the router; the [firewall] section is commented out"
        );
    }
    if copied {
        println!(
            "  lists: copies of the shipped ones in {}",
            dir.join("blocklists").display()
        );
    }
    println!("check it: sinkhole config check {}", out.display());
    Ok(())
}
