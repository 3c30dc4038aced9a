//! `sinkhole man [--out DIR]` and `sinkhole completions bash|zsh|fish`: the manual pages
//! and shell completions, generated from the clap definitions (clap_mangen,
//! clap_complete) so that they cannot drift from the command line; the config page from
//! the configuration reference, `docs/config.md` (`docs::config_manpage`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::CommandFactory as _;
use clap_complete::Shell;

use super::Cli;
use super::common::Error;
use crate::docs;

/// The shells `completions` writes for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ShellArg {
    /// Bash (`/usr/share/bash-completion/completions/sinkhole`).
    Bash,
    /// Zsh (`/usr/share/zsh/vendor-completions/_sinkhole`).
    Zsh,
    /// Fish (`/usr/share/fish/vendor_completions.d/sinkhole.fish`).
    Fish,
}

/// Writes every page into `out` (sinkhole.1, one per command as sinkhole-FAMILY.1 and
/// sinkhole-FAMILY-COMMAND.1, sinkhole.toml.5) and lists them; without `out`, prints
/// sinkhole(1).
pub(super) fn man(out: Option<PathBuf>) -> Result<(), Error> {
    let pages = pages().map_err(|e| Error::Runtime(anyhow::anyhow!("rendering the pages: {e}")))?;
    let Some(dir) = out else {
        let first = pages.first().map(|(_, p)| p.as_slice()).unwrap_or_default();
        std::io::stdout()
            .write_all(first)
            .map_err(|e| Error::Runtime(e.into()))?;
        return Ok(());
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Runtime(anyhow::anyhow!("cannot create {}: {e}", dir.display())))?;
    for (name, page) in &pages {
        let path = dir.join(name);
        write(&path, page)?;
        println!("{}", path.display());
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(path, bytes)
        .map_err(|e| Error::Runtime(anyhow::anyhow!("cannot write {}: {e}", path.display())))
}

/// Every page: (file name, roff).
fn pages() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let cmd = Cli::command();
    let mut pages = Vec::new();
    let mut root = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut root)?;
    pages.push(("sinkhole.1".to_string(), root));
    sub_pages(&cmd, "sinkhole", &mut pages)?;
    let config = docs::config_manpage(docs::CONFIG_REFERENCE, env!("CARGO_PKG_VERSION"));
    pages.push(("sinkhole.toml.5".to_string(), config.into_bytes()));
    Ok(pages)
}

/// A page for each subcommand of `cmd` (named `prefix-NAME`) and, below it, each of theirs:
/// a family's page lists its commands, each of which has a page of its own.
fn sub_pages(
    cmd: &clap::Command,
    prefix: &str,
    pages: &mut Vec<(String, Vec<u8>)>,
) -> std::io::Result<()> {
    for sub in cmd.get_subcommands() {
        let name = format!("{prefix}-{}", sub.get_name());
        let mut page = Vec::new();
        clap_mangen::Man::new(sub.clone().name(name.clone())).render(&mut page)?;
        pages.push((format!("{name}.1"), page));
        sub_pages(sub, &name, pages)?;
    }
    Ok(())
}

/// Prints the completion script for `shell`.
pub(super) fn completions(shell: ShellArg) -> Result<(), Error> {
    let shell = match shell {
        ShellArg::Bash => Shell::Bash,
        ShellArg::Zsh => Shell::Zsh,
        ShellArg::Fish => Shell::Fish,
    };
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "sinkhole",
        &mut std::io::stdout(),
    );
    Ok(())
}
