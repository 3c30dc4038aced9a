//! The edge where rule sets meet the kernel: runs `nft`, `iptables-restore`,
//! `ip6tables-restore` (and their `-save` twins) to check, apply, snapshot, roll back and
//! remove sinkhole's rules, and keeps the small state files that let
//! `sinkhole firewall confirm` (from another shell) confirm a pending `apply --confirm`.
//! Only `sinkhole firewall check|apply|remove|confirm` use this module.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use thiserror::Error;

use super::iptables::{FILTER_CHAINS, HOOKS, NAT_CHAINS};
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

/// The rules as they were before an `apply`, to roll back to.
#[derive(Debug, Clone)]
pub enum Snapshot {
    /// The previous `table inet sinkhole`, if there was one.
    Nftables(Option<String>),
    /// `iptables-save` output of the filter and nat tables, per family.
    Iptables(Vec<(Family, String)>),
}

/// `iptables-save` output of one family's filter and nat tables.
fn saved_tables(f: Family) -> Result<String, ToolError> {
    let mut text = run(f.save_tool(), &["-t", "filter"], None)?;
    text.push_str(&run(f.save_tool(), &["-t", "nat"], None)?);
    Ok(text)
}

/// Records the current state of what `apply` is about to change.
pub fn snapshot(backend: Backend, family: Option<Family>) -> Result<Snapshot, ToolError> {
    match backend {
        Backend::Nftables => {
            // Fails when the table does not exist; that is the "nothing before" case.
            Ok(Snapshot::Nftables(
                run("nft", &["list", "table", "inet", TABLE], None).ok(),
            ))
        }
        Backend::Iptables => {
            let parts = families(family)
                .into_iter()
                .map(|f| Ok((f, saved_tables(f)?)))
                .collect::<Result<_, ToolError>>()?;
            Ok(Snapshot::Iptables(parts))
        }
    }
}

/// Applies atomically: one `nft -f` transaction, or one `iptables-restore --noflush` run per
/// family. `before`, just taken by [`snapshot`], says which backend and families, and which
/// hooks already exist (they are not added twice).
pub fn apply(rs: &Ruleset, before: &Snapshot) -> Result<(), ToolError> {
    match before {
        Snapshot::Nftables(_) => run(
            "nft",
            &["-f", "-"],
            Some(&render(rs, Backend::Nftables, None)),
        )
        .map(|_| ()),
        Snapshot::Iptables(parts) => {
            for (f, current) in parts {
                let text = without_present_hooks(&render(rs, Backend::Iptables, Some(*f)), current);
                run(f.restore_tool(), &["--noflush"], Some(&text))?;
            }
            Ok(())
        }
    }
}

/// Whether an `iptables-save` line is a jump from `builtin` into our chain `ours`:
/// `-A BUILTIN … -j OURS`.
fn is_hook(line: &str, builtin: &str, ours: &str) -> bool {
    line.starts_with(&format!("-A {builtin} ")) && line.ends_with(&format!("-j {ours}"))
}

/// Drops `-I BUILTIN 1 … -j SINKHOLE-X` lines whose jump is already in `saved`.
fn without_present_hooks(text: &str, saved: &str) -> String {
    let present = |builtin: &str, ours: &str| saved.lines().any(|l| is_hook(l, builtin, ours));
    let mut out = String::new();
    for line in text.lines() {
        let hooked = HOOKS.iter().any(|(_, b, o)| {
            line.starts_with(&format!("-I {b} 1 ")) && line.ends_with(o) && present(b, o)
        });
        if !hooked {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Puts back what [`snapshot`] recorded.
pub fn rollback(snap: &Snapshot) -> Result<(), ToolError> {
    match snap {
        Snapshot::Nftables(prev) => {
            let mut script = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
            if let Some(p) = prev {
                script.push_str(p);
            }
            run("nft", &["-f", "-"], Some(&script)).map(|_| ())
        }
        Snapshot::Iptables(parts) => {
            for (f, text) in parts {
                // Without --noflush: the filter and nat tables become exactly what they were.
                run(f.restore_tool(), &[], Some(text))?;
            }
            Ok(())
        }
    }
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
                let mut script = String::new();
                for (table, chains) in [("filter", &FILTER_CHAINS[..]), ("nat", &NAT_CHAINS[..])] {
                    let saved = run(f.save_tool(), &["-t", table], None)?;
                    script.push_str(&removal(table, chains, &saved));
                }
                if !script.is_empty() {
                    any = true;
                    run(f.restore_tool(), &["--noflush"], Some(&script))?;
                }
            }
            Ok(any)
        }
    }
}

/// `iptables-restore --noflush` input deleting our hooks and chains from one table.
fn removal(table: &str, chains: &[&str], saved: &str) -> String {
    let mut body = String::new();
    for line in saved.lines() {
        if let Some(rest) = line.strip_prefix("-A ")
            && HOOKS
                .iter()
                .any(|(t, b, o)| *t == table && is_hook(line, b, o))
        {
            body.push_str(&format!("-D {rest}\n"));
        }
    }
    let present: Vec<&&str> = chains
        .iter()
        .filter(|c| saved.lines().any(|l| l.starts_with(&format!(":{c} "))))
        .collect();
    for c in &present {
        body.push_str(&format!("-F {c}\n"));
    }
    for c in &present {
        body.push_str(&format!("-X {c}\n"));
    }
    if body.is_empty() {
        body
    } else {
        format!("*{table}\n{body}COMMIT\n")
    }
}

/// The folder of the confirm state files: `$SINKHOLE_RUN_DIR`, else `/run/sinkhole`.
pub fn run_dir() -> PathBuf {
    std::env::var_os("SINKHOLE_RUN_DIR")
        .map_or_else(|| PathBuf::from("/run/sinkhole"), PathBuf::from)
}

/// A pending `apply --confirm`: `firewall.pending` exists while it waits, and
/// `sinkhole firewall confirm` creates `firewall.confirmed` beside it.
#[derive(Debug)]
pub struct Pending {
    dir: PathBuf,
}

fn state_err(path: &std::path::Path, source: std::io::Error) -> ToolError {
    ToolError::State {
        path: path.display().to_string(),
        source,
    }
}

impl Pending {
    /// Marks an apply as waiting for confirmation.
    pub fn start(dir: PathBuf) -> Result<Self, ToolError> {
        std::fs::create_dir_all(&dir).map_err(|e| state_err(&dir, e))?;
        let _ = std::fs::remove_file(dir.join("firewall.confirmed"));
        let p = dir.join("firewall.pending");
        std::fs::write(&p, format!("{}\n", std::process::id())).map_err(|e| state_err(&p, e))?;
        Ok(Self { dir })
    }

    /// Whether `sinkhole firewall confirm` has run.
    pub fn is_confirmed(&self) -> bool {
        self.dir.join("firewall.confirmed").exists()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("firewall.pending"));
        let _ = std::fs::remove_file(self.dir.join("firewall.confirmed"));
    }
}

/// Confirms a pending apply (from another shell). `Ok(false)`: nothing was pending.
pub fn confirm(dir: &std::path::Path) -> Result<bool, ToolError> {
    if !dir.join("firewall.pending").exists() {
        return Ok(false);
    }
    let p = dir.join("firewall.confirmed");
    std::fs::write(&p, b"confirmed\n").map_err(|e| state_err(&p, e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_deletes_hooks_and_our_chains_only() {
        let saved = "*filter\n:INPUT ACCEPT [0:0]\n:SINKHOLE-INPUT - [0:0]\n:MINE - [0:0]\n\
                     -A INPUT -m comment --comment \"sinkhole hook\" -j SINKHOLE-INPUT\n\
                     -A INPUT -j MINE\n-A SINKHOLE-INPUT -j ACCEPT\nCOMMIT\n";
        let r = removal("filter", &FILTER_CHAINS, saved);
        assert_eq!(
            r,
            "*filter\n-D INPUT -m comment --comment \"sinkhole hook\" -j SINKHOLE-INPUT\n\
             -F SINKHOLE-INPUT\n-X SINKHOLE-INPUT\nCOMMIT\n"
        );
        assert_eq!(removal("nat", &NAT_CHAINS, "*nat\nCOMMIT\n"), "");
    }

    #[test]
    fn present_hooks_are_not_added_twice() {
        let text = "-A SINKHOLE-INPUT -j ACCEPT\n-I INPUT 1 -m comment --comment \"sinkhole hook\" -j SINKHOLE-INPUT\n\
                    -I FORWARD 1 -m comment --comment \"sinkhole hook\" -j SINKHOLE-FORWARD\n";
        let saved = "-A INPUT -m comment --comment \"sinkhole hook\" -j SINKHOLE-INPUT\n";
        let out = without_present_hooks(text, saved);
        assert!(!out.contains("-I INPUT"));
        assert!(out.contains("-I FORWARD"));
    }
}
