//! The edge where rule sets meet the kernel: runs `nft`, `iptables-restore`,
//! `ip6tables-restore` (and their `-save` twins) to check, apply, snapshot, restore and
//! remove sinkhole's rules, and nothing but sinkhole's: the `inet sinkhole` table, or the
//! `SINKHOLE-*` chains and the hooks into them. The confirm window and its rollback guard
//! live in [`super::guard`]. Only `sinkhole firewall check|apply|remove|rollback` use this.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::iptables_save::{ours, restoration, without_present_hooks};
use super::nftables::TABLE;
use super::{Backend, Family, Ruleset, render};

/// A tool could not be run, or refused the input.
#[derive(Debug, Error)]
pub enum ToolError {
    /// The program could not be started (not installed?).
    #[error("cannot run {tool}: {source} (is it installed? nftables/iptables packages)")]
    Spawn {
        /// The program.
        tool: String,
        /// Why.
        source: std::io::Error,
    },
    /// The program ran and failed; `msg` is its stderr.
    #[error("{tool} failed: {msg}")]
    Failed {
        /// The program and its arguments.
        tool: String,
        /// Its error output.
        msg: String,
    },
    /// A state file could not be written or read.
    #[error("{path}: {source}")]
    State {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, ToolError> {
    let tool = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ToolError::Spawn {
            tool: program.to_string(),
            source,
        })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // A tool that exits early closes the pipe; its stderr says why.
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|source| ToolError::Spawn {
            tool: program.to_string(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(ToolError::Failed {
            tool,
            msg: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn families(family: Option<Family>) -> Vec<Family> {
    match family {
        Some(f) => vec![f],
        None => Family::BOTH.to_vec(),
    }
}

/// Validates the rule set with the real tool without applying it.
pub fn check(rs: &Ruleset, backend: Backend, family: Option<Family>) -> Result<(), ToolError> {
    match backend {
        Backend::Nftables => {
            run("nft", &["-c", "-f", "-"], Some(&render(rs, backend, None))).map(|_| ())
        }
        Backend::Iptables => {
            for f in families(family) {
                run(
                    f.restore_tool(),
                    &["--test", "--noflush"],
                    Some(&render(rs, backend, Some(f))),
                )?;
            }
            Ok(())
        }
    }
}

/// The rules as they were before an `apply`, to roll back to. Serialised into the run dir
/// (see [`super::guard`]) so that a rollback needs nothing but that file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum Snapshot {
    /// The previous `table inet sinkhole` (`nft list table` output), if there was one.
    Nftables {
        /// The table, or `None`: there was none.
        table: Option<String>,
    },
    /// Sinkhole's chains and hooks in the filter and nat tables, per family
    /// (`iptables-save` lines; the host's other rules are not recorded).
    Iptables {
        /// One entry per family that `apply` touches.
        families: Vec<SavedFamily>,
    },
}

/// One family's part of [`Snapshot::Iptables`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedFamily {
    /// Which family.
    pub family: Family,
    /// Our lines of `iptables-save -t filter` and `-t nat`, as `iptables-restore` input.
    pub rules: String,
}

const TABLES: [&str; 2] = ["filter", "nat"];

/// Records the current state of what `apply` is about to change.
pub fn snapshot(backend: Backend, family: Option<Family>) -> Result<Snapshot, ToolError> {
    match backend {
        // Fails when the table does not exist; that is the "nothing before" case.
        Backend::Nftables => Ok(Snapshot::Nftables {
            table: run("nft", &["list", "table", "inet", TABLE], None).ok(),
        }),
        Backend::Iptables => {
            let mut saved = Vec::new();
            for f in families(family) {
                let mut rules = String::new();
                for table in TABLES {
                    rules.push_str(&ours(table, &run(f.save_tool(), &["-t", table], None)?));
                }
                saved.push(SavedFamily { family: f, rules });
            }
            Ok(Snapshot::Iptables { families: saved })
        }
    }
}

/// Applies atomically: one `nft -f` transaction, or one `iptables-restore --noflush` run per
/// family. `before`, just taken by [`snapshot`], says which backend and families, and which
/// hooks already exist (they are not added twice).
pub fn apply(rs: &Ruleset, before: &Snapshot) -> Result<(), ToolError> {
    match before {
        Snapshot::Nftables { .. } => run(
            "nft",
            &["-f", "-"],
            Some(&render(rs, Backend::Nftables, None)),
        )
        .map(|_| ()),
        Snapshot::Iptables { families } => {
            for saved in families {
                let f = saved.family;
                let text =
                    without_present_hooks(&render(rs, Backend::Iptables, Some(f)), &saved.rules);
                run(f.restore_tool(), &["--noflush"], Some(&text))?;
            }
            Ok(())
        }
    }
}

/// Puts back what [`snapshot`] recorded, and only that: nftables replaces `table inet
/// sinkhole` (no other table is touched); iptables restores our chains and the hooks into
/// them with `--noflush`, so rules others added meanwhile (fail2ban, docker) stay.
/// Idempotent: running it again changes nothing.
pub fn restore(snap: &Snapshot) -> Result<(), ToolError> {
    match snap {
        Snapshot::Nftables { table } => {
            // `table …` first makes the delete succeed when the table is absent.
            let mut script = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
            if let Some(p) = table {
                script.push_str(p);
            }
            run("nft", &["-f", "-"], Some(&script)).map(|_| ())
        }
        Snapshot::Iptables { families } => {
            for saved in families {
                to_ours(saved.family, &saved.rules)?;
            }
            Ok(())
        }
    }
}

/// Makes sinkhole's part of one family's filter and nat tables what `want` (text from
/// [`ours`]; empty: nothing) holds, in one `iptables-restore --noflush` run. Whether
/// anything had to change.
fn to_ours(f: Family, want: &str) -> Result<bool, ToolError> {
    let mut script = String::new();
    for table in TABLES {
        let current = run(f.save_tool(), &["-t", table], None)?;
        script.push_str(&restoration(table, want, &current));
    }
    if script.is_empty() {
        return Ok(false);
    }
    run(f.restore_tool(), &["--noflush"], Some(&script))?;
    Ok(true)
}

/// Removes only what sinkhole added: the table, or our chains and the jumps into them.
/// Returns whether anything was there.
pub fn remove(backend: Backend, family: Option<Family>) -> Result<bool, ToolError> {
    match backend {
        Backend::Nftables => {
            if run("nft", &["list", "table", "inet", TABLE], None).is_err() {
                return Ok(false);
            }
            run("nft", &["delete", "table", "inet", TABLE], None)?;
            Ok(true)
        }
        Backend::Iptables => {
            let mut any = false;
            for f in families(family) {
                any |= to_ours(f, "")?;
            }
            Ok(any)
        }
    }
}
