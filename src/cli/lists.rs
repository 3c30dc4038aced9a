//! `sinkhole lists check|lint|convert|add|remove|update`: clap arguments, printing and exit
//! codes around `blocklist::explain`, `blocklist::tools`, `blocklist::rewrite` and
//! `blocklist::fetch`. Exit codes: 0 ok, 1 a finding the command reports (invalid lines,
//! names not found, downloads failed) or a runtime failure, 2 a config or usage error.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::Subcommand;

use super::common::{Error, Status, load_config};
use super::lists_shared as shared;
use crate::blocklist::edit::{add_to_list, remove_from_list};
use crate::blocklist::explain::{self, CheckError};
use crate::blocklist::fetch::{self, Updated};
use crate::blocklist::load::{BlocklistError, ListSource, Location, read_source};
use crate::blocklist::parse::Kind;
use crate::blocklist::rewrite::EditError;
use crate::blocklist::tools::{self, Format, SourcedRule};

/// `sinkhole lists …`
#[derive(Debug, Subcommand)]
pub enum ListsCommand {
    /// For each name: blocked or allowed, and every rule that matched it (file:line).
    Check {
        /// Config file (the same as `serve`'s); without it, the embedded default.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Answer for this client: its group's lists (by address, or by MAC address through
        /// this machine's neighbour table), as they apply now.
        #[arg(long, value_name = "IP")]
        client: Option<std::net::IpAddr>,
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
        to: Format,
        /// Config file (the same as `serve`'s): with no FILE, its lists and allowlists are
        /// converted. Without it, the embedded default.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// List files; none = the lists of the config.
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Add names to a list file (in place, atomically; comments and order kept). With a
    /// `--config` that has `[sync] postgres = true` and a FILE of its `blocking.lists` or
    /// `blocking.allow`: to the entries shared through the database instead.
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
    /// Remove names from a list file (in place, atomically; comments and order kept). With
    /// `[sync] postgres = true` (as for `add`): from the shared entries too.
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

/// Runs one `lists` subcommand.
pub(super) fn run(cmd: ListsCommand) -> Result<Status, Error> {
    match cmd {
        ListsCommand::Check {
            config,
            client,
            names,
        } => check(config.as_deref(), client, &names),
        ListsCommand::Lint { config, files } => lint(config.as_deref(), &files),
        ListsCommand::Convert { to, config, files } => convert(to, config.as_deref(), &files),
        ListsCommand::Add {
            names,
            to,
            comment,
            config,
        } => {
            if let Some(s) = shared::target(config.as_deref(), &to)? {
                return shared::add(&s, &names, comment.as_deref());
            }
            warn_if_not_in_config(config.as_deref(), &to)?;
            add(&names, &to, comment.as_deref())
        }
        ListsCommand::Remove {
            names,
            from,
            config,
        } => {
            if let Some(s) = shared::target(config.as_deref(), &from)? {
                return shared::remove(&s, &names, &from);
            }
            warn_if_not_in_config(config.as_deref(), &from)?;
            remove(&names, &from)
        }
        ListsCommand::Update { config } => update(config.as_deref()),
    }
}

/// For each name: the verdict, the rule that decides with its `file:line`, then each other
/// rule that matches (`blocklist::explain`).
fn check(
    config: Option<&Path>,
    client: Option<std::net::IpAddr>,
    names: &[String],
) -> Result<Status, Error> {
    let cfg = load_config(config)?;
    // Read only when a group names a MAC address.
    let read_mac = || {
        let ip = client?;
        let table = crate::neighbours::dump().unwrap_or_else(|e| {
            eprintln!("sinkhole: warning: cannot read the neighbour table ({e}); MAC addresses are not matched");
            Default::default()
        });
        table.get(&ip.to_canonical()).copied()
    };
    let checked =
        explain::check(&cfg, client, names, SystemTime::now(), read_mac).map_err(|e| match e {
            CheckError::Name { .. } => Error::usage(e),
            CheckError::Lists(e) => Error::runtime(e),
        })?;
    let mut out = std::io::stdout().lock();
    match &checked.client {
        Some((ip, Some(g))) => {
            let _ = writeln!(
                out,
                "client {ip}: group {:?}{}",
                g.name,
                if g.inherit {
                    ""
                } else {
                    " (its lists only: inherit = false)"
                }
            );
        }
        Some((ip, None)) => {
            let _ = writeln!(out, "client {ip}: in no group; the default policy");
        }
        None => {}
    }
    for o in &checked.off_schedule {
        let _ = writeln!(
            out,
            "note: {} is outside its schedule now ({})",
            o.list, o.schedule
        );
    }
    let explained = &checked.names;
    let width = explained.iter().map(|x| x.name.len()).max().unwrap_or(0);
    for x in explained {
        let (q, verdict) = (&x.name, x.verdict());
        match &x.decision {
            Some(d) => {
                let _ = writeln!(
                    out,
                    "{q:width$}  {verdict}  by {}  ({}:{})",
                    d.text, d.source, d.line
                );
            }
            None => {
                let _ = writeln!(out, "{q:width$}  {verdict}  (no rule matches)");
            }
        }
        for r in &x.also {
            let what = match r.kind {
                Kind::Block => "block",
                Kind::Allow => "allow",
            };
            let _ = writeln!(
                out,
                "{:width$}  also matched ({what}): {}  ({}:{})",
                "", r.text, r.source, r.line
            );
        }
    }
    Ok(Status::Success)
}

/// Reads `sources` into owned rules (a URL list from its cached copy in `cache_dir`; one not
/// downloaded yet is skipped, with a note). Stops at the first source that cannot be read.
fn read_sources<'s>(
    sources: impl IntoIterator<Item = &'s ListSource>,
    cache_dir: &Path,
) -> Result<Vec<(String, tools::ReadList)>, BlocklistError> {
    let mut out = Vec::new();
    for src in sources {
        match read_source(src, cache_dir)? {
            Some(text) => {
                let list = tools::read_list(&src.display, &text, src.kind, src.exact);
                out.push((src.display.clone(), list));
            }
            None if src.location == Location::Shared => eprintln!(
                "sinkhole: note: {} has no copy on this host yet (a server with [sync] postgres = true writes it); skipped",
                src.display
            ),
            None => eprintln!(
                "sinkhole: note: {} not downloaded yet; skipped",
                src.display
            ),
        }
    }
    Ok(out)
}

/// The files given on the command line, read as blocklists (a usage error when one cannot be
/// read).
fn read_lists(files: &[PathBuf]) -> Result<Vec<(String, tools::ReadList)>, Error> {
    let sources: Vec<ListSource> = files
        .iter()
        .map(|f| ListSource::file(&f.display().to_string(), f, Kind::Block))
        .collect();
    read_sources(&sources, Path::new("")).map_err(Error::usage)
}

/// The lists of the config of `kind` (`None`: all), read as `lists check` reads them: URL
/// lists from their cached copy (skipped when there is none yet). A runtime error when one
/// cannot be read.
fn config_lists(
    cfg: &crate::config::Config,
    kind: Option<Kind>,
) -> Result<Vec<(String, tools::ReadList)>, Error> {
    let b = &cfg.blocking;
    let sources = b.lists.iter().filter(|s| kind.is_none_or(|k| s.kind == k));
    read_sources(sources, &b.cache_dir).map_err(Error::runtime)
}

/// Prints each finding and a summary; [`Status::Findings`] when a line is invalid.
fn lint(config: Option<&Path>, files: &[PathBuf]) -> Result<Status, Error> {
    let allows = config_lists(&load_config(config)?, Some(Kind::Allow))?;
    let lists = read_lists(files)?;
    let findings = tools::lint(&lists, &allows);
    let mut out = std::io::stdout().lock();
    let mut invalid = 0;
    for f in &findings {
        if f.what == "invalid" {
            invalid += 1;
        }
        let _ = writeln!(out, "{}: {}: {}", f.at, f.what, f.msg);
    }
    let rules: usize = lists.iter().map(|(_, l)| l.rules.len()).sum();
    let _ = writeln!(
        out,
        "{} rules in {} files: {invalid} invalid lines, {} warnings",
        rules,
        lists.len(),
        findings.len() - invalid
    );
    Ok(if invalid > 0 {
        Status::Findings
    } else {
        Status::Success
    })
}

/// Prints the combined set in `format`; a closed pipe is not an error.
fn convert(format: Format, config: Option<&Path>, files: &[PathBuf]) -> Result<Status, Error> {
    let lists = if files.is_empty() {
        config_lists(&load_config(config)?, None)?
    } else {
        read_lists(files)?
    };
    let rules: Vec<SourcedRule> = lists.into_iter().flat_map(|(_, l)| l.rules).collect();
    let (text, notes) = tools::convert(&rules, format);
    for n in notes {
        eprintln!("sinkhole: note: {n}");
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(Status::Success),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Status::Success),
        Err(e) => Err(Error::runtime(e)),
    }
}

/// Appends the names that are not there yet ([`add_to_list`]); refuses (writing nothing) on
/// an invalid name, a public suffix or a comment of several lines.
pub(super) fn add(names: &[String], to: &Path, comment: Option<&str>) -> Result<Status, Error> {
    let done = add_to_list(to, names, comment).map_err(edit_error)?;
    for a in &done.present {
        eprintln!("{a}: already in {}", to.display());
    }
    println!(
        "{}: {} added, {} already there",
        to.display(),
        done.added.len(),
        done.present.len()
    );
    Ok(Status::Success)
}

/// Removes the names ([`remove_from_list`]); [`Status::Findings`] when one was not in the
/// file.
pub(super) fn remove(names: &[String], from: &Path) -> Result<Status, Error> {
    let done = remove_from_list(from, names).map_err(edit_error)?;
    for m in &done.missing {
        eprintln!("{m}: not in {}", from.display());
    }
    println!("{}: {} removed", from.display(), done.removed.len());
    Ok(if done.missing.is_empty() {
        Status::Success
    } else {
        Status::Findings
    })
}

/// A refused name or comment is a usage error (exit 2); the file system's, a runtime one.
pub(super) fn edit_error(e: EditError) -> Error {
    match e {
        EditError::InvalidName { .. } | EditError::PublicSuffix { .. } => {
            Error::usage(format_args!("{e}; nothing written"))
        }
        EditError::Comment => Error::usage("--comment must be one line; nothing written"),
        e => Error::runtime(e),
    }
}

/// With `--config`, refuses nothing but warns (on stderr) when `file` is not one of the
/// config's list files: a server with that config would not see the edit. Fails only when
/// the config itself is bad.
fn warn_if_not_in_config(config: Option<&Path>, file: &Path) -> Result<(), Error> {
    let Some(config) = config else {
        return Ok(());
    };
    let cfg = load_config(Some(config))?;
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let target = canon(file);
    let listed = cfg.all_lists().any(|s| match &s.location {
        Location::File(p) => canon(p) == target,
        _ => false,
    });
    if !listed {
        eprintln!(
            "sinkhole: warning: {} is not in blocking.lists or blocking.allow of {}; a server with that config will not use it",
            file.display(),
            config.display()
        );
    }
    Ok(())
}

/// Downloads each URL list; a failed download is printed and the others still run
/// ([`Status::Findings`] when one failed).
fn update(config: Option<&Path>) -> Result<Status, Error> {
    let cfg = load_config(config)?;
    let b = &cfg.blocking;
    let mut urls: Vec<&str> = cfg
        .all_lists()
        .filter_map(|s| match &s.location {
            Location::Url(u) => Some(u.as_str()),
            _ => None,
        })
        .collect();
    urls.sort_unstable();
    urls.dedup();
    if urls.is_empty() {
        println!("no URL lists in the config");
        return Ok(Status::Success);
    }
    let tty = std::io::stderr().is_terminal();
    let mut failed = 0;
    for url in urls {
        let mut progress = |done: u64, total: Option<u64>| {
            if tty {
                let mib = |b: u64| b as f64 / 1048576.0;
                let line = match total {
                    Some(t) if t > 0 => {
                        let filled = (done * 30 / t).min(30) as usize;
                        format!(
                            "[{}{}] {:.1}/{:.1} MiB",
                            "#".repeat(filled),
                            " ".repeat(30 - filled),
                            mib(done),
                            mib(t)
                        )
                    }
                    _ => format!("{:.1} MiB", mib(done)),
                };
                eprint!("\r{url}: {line}");
            }
        };
        let r = fetch::update(
            url,
            &b.cache_dir,
            b.max_shrink,
            Duration::from_secs(120),
            &mut progress,
        );
        if tty {
            eprint!("\r\x1b[K");
        }
        match r {
            Ok(Updated::NotModified) => println!("{url}: not modified"),
            Ok(Updated::Stored(n)) => println!("{url}: updated, {n} rules"),
            Err(e) => {
                failed += 1;
                eprintln!("sinkhole: {e}");
            }
        }
    }
    Ok(if failed > 0 {
        Status::Findings
    } else {
        Status::Success
    })
}
