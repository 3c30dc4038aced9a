//! `sinkhole lists check|lint|convert|add|remove|update`: printing and exit codes around
//! `blocklist::tools` and `blocklist::fetch`. Exit codes: 0 ok, 1 a finding or failure the
//! command reports (invalid lines, names not found, downloads failed), 2 config or usage error.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::blocklist::domain::normalize;
use crate::blocklist::edit::edit_file;
use crate::blocklist::fetch::{self, Updated};
use crate::blocklist::load::{ListSource, Location, load_all_with, read_source};
use crate::blocklist::parse::Kind;
use crate::blocklist::rewrite::{add_names, checked_name, remove_names};
use crate::blocklist::tools::{self, Format, SourcedRule};
use crate::cli::{ListsCommand, load_config};

/// Runs one `lists` subcommand.
pub(crate) fn run(cmd: ListsCommand) -> ExitCode {
    match cmd {
        ListsCommand::Check { config, names } => check(config, &names),
        ListsCommand::Lint { config, files } => lint(config, &files),
        ListsCommand::Convert { to, config, files } => convert(to, config, &files),
        ListsCommand::Add {
            names,
            to,
            comment,
            config,
        } => not_in_config(config, &to).unwrap_or_else(|| add(&names, &to, comment.as_deref())),
        ListsCommand::Remove {
            names,
            from,
            config,
        } => not_in_config(config, &from).unwrap_or_else(|| remove(&names, &from)),
        ListsCommand::Update { config } => update(config),
    }
}

fn check(config: Option<PathBuf>, names: &[String]) -> ExitCode {
    let cfg = match load_config(config.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let b = &cfg.blocking;
    let (list, _) = match load_all_with(&b.lists, &b.cache_dir, false) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sinkhole: {e}");
            return ExitCode::from(1);
        }
    };
    let mut queries = Vec::new();
    for n in names {
        match normalize(n) {
            Ok(q) => queries.push(q),
            Err(e) => {
                eprintln!("sinkhole: {n:?} is not a valid name: {e}");
                return ExitCode::from(2);
            }
        }
    }
    // Every rule matching each name, with its file:line, read again from the lists.
    let mut matched: Vec<Vec<SourcedRule>> = vec![Vec::new(); queries.len()];
    let read = for_each_text(&b.lists, &b.cache_dir, 1, false, |src, text| {
        let on_rule = |r: SourcedRule| {
            let matches = tools::matcher(&r);
            for (qi, q) in queries.iter().enumerate() {
                if matches(q) {
                    matched[qi].push(r.clone());
                }
            }
        };
        tools::for_each_rule(&src.display, &text, src.kind, src.exact, on_rule, |_| {});
    });
    if let Err(code) = read {
        return code;
    }
    let width = queries.iter().map(String::len).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for (q, rules) in queries.iter().zip(&matched) {
        let decision = list.find(q.as_bytes());
        let verdict = match decision {
            Some(m) if m.kind == Kind::Block => "blocked",
            Some(_) => "allowed",
            None => "not blocked",
        };
        // The rules of the deciding line (a hosts line may hold several names).
        let decides =
            |r: &SourcedRule| decision.is_some_and(|m| r.source == m.source && r.line == m.line);
        let deciding = rules.iter().find(|r| decides(r));
        match decision {
            // The rule as written in its list when it can be found, else as stored.
            Some(m) => {
                let text = deciding.map_or(m.rule, |r| r.text.as_str());
                let _ = writeln!(
                    out,
                    "{q:width$}  {verdict}  by {text}  ({}:{})",
                    m.source, m.line
                );
            }
            None => {
                let _ = writeln!(out, "{q:width$}  {verdict}  (no rule matches)");
            }
        }
        for r in rules {
            if decides(r) {
                continue;
            }
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
    ExitCode::SUCCESS
}

/// Reads each source (a URL list from its cached copy in `cache_dir`) and hands its text to
/// `f`. A source that cannot be read is printed and ends the walk with exit code `code`; a URL
/// list not downloaded yet is skipped, with a note when `note`.
fn for_each_text<'s>(
    sources: impl IntoIterator<Item = &'s ListSource>,
    cache_dir: &Path,
    code: u8,
    note: bool,
    mut f: impl FnMut(&ListSource, String),
) -> Result<(), ExitCode> {
    for src in sources {
        match read_source(src, cache_dir) {
            Ok(Some(text)) => f(src, text),
            Ok(None) if note => eprintln!(
                "sinkhole: note: {} not downloaded yet; skipped",
                src.display
            ),
            Ok(None) => {}
            Err(e) => {
                eprintln!("sinkhole: {e}");
                return Err(ExitCode::from(code));
            }
        }
    }
    Ok(())
}

/// Reads `sources` into owned rules, as [`for_each_text`] reads them.
fn read_sources<'s>(
    sources: impl IntoIterator<Item = &'s ListSource>,
    cache_dir: &Path,
    code: u8,
) -> Result<Vec<(String, tools::ReadList)>, ExitCode> {
    let mut out = Vec::new();
    for_each_text(sources, cache_dir, code, true, |src, text| {
        let list = tools::read_list(&src.display, &text, src.kind, src.exact);
        out.push((src.display.clone(), list));
    })?;
    Ok(out)
}

/// The files given on the command line, read as blocklists (exit code 2 when one cannot be
/// read).
fn read_lists(files: &[PathBuf]) -> Result<Vec<(String, tools::ReadList)>, ExitCode> {
    let sources: Vec<ListSource> = files
        .iter()
        .map(|f| ListSource::file(&f.display().to_string(), f, Kind::Block))
        .collect();
    read_sources(&sources, Path::new(""), 2)
}

/// The lists of the config of `kind` (`None`: all), read as `lists check` reads them: URL
/// lists from their cached copy (skipped when there is none yet).
fn config_lists(
    cfg: &crate::config::Config,
    kind: Option<Kind>,
) -> Result<Vec<(String, tools::ReadList)>, ExitCode> {
    let b = &cfg.blocking;
    let sources = b.lists.iter().filter(|s| kind.is_none_or(|k| s.kind == k));
    read_sources(sources, &b.cache_dir, 1)
}

fn lint(config: Option<PathBuf>, files: &[PathBuf]) -> ExitCode {
    let allows = match load_config(config.as_ref()).map(|cfg| config_lists(&cfg, Some(Kind::Allow)))
    {
        Ok(Ok(a)) => a,
        Ok(Err(code)) | Err(code) => return code,
    };
    let lists = match read_lists(files) {
        Ok(l) => l,
        Err(c) => return c,
    };
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
    if invalid > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn convert(format: Format, config: Option<PathBuf>, files: &[PathBuf]) -> ExitCode {
    let lists = if files.is_empty() {
        load_config(config.as_ref()).and_then(|cfg| config_lists(&cfg, None))
    } else {
        read_lists(files)
    };
    let lists = match lists {
        Ok(l) => l,
        Err(c) => return c,
    };
    let rules: Vec<SourcedRule> = lists.into_iter().flat_map(|(_, l)| l.rules).collect();
    let (text, notes) = tools::convert(&rules, format);
    for n in notes {
        eprintln!("sinkhole: note: {n}");
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sinkhole: {e}");
            ExitCode::from(1)
        }
    }
}

fn add(names: &[String], to: &Path, comment: Option<&str>) -> ExitCode {
    let mut checked = Vec::new();
    for n in names {
        match checked_name(n) {
            Ok(c) => checked.push(c),
            Err(e) => {
                eprintln!("sinkhole: {e}; nothing written");
                return ExitCode::from(2);
            }
        }
    }
    if comment.is_some_and(|c| c.contains(['\n', '\r'])) {
        eprintln!("sinkhole: --comment must be one line; nothing written");
        return ExitCode::from(2);
    }
    let mut already = Vec::new();
    let edited = edit_file(to, true, |old| {
        let (new, present) = add_names(old, &checked, comment);
        already = present;
        (new != old).then_some(new)
    });
    if let Err(e) = edited {
        eprintln!("sinkhole: {e}");
        return ExitCode::from(1);
    }
    for a in &already {
        eprintln!("{a}: already in {}", to.display());
    }
    println!(
        "{}: {} added, {} already there",
        to.display(),
        checked.len() - already.len(),
        already.len()
    );
    ExitCode::SUCCESS
}

fn remove(names: &[String], from: &Path) -> ExitCode {
    let mut checked = Vec::new();
    for n in names {
        match normalize(n) {
            Ok(c) => checked.push(c),
            Err(e) => {
                eprintln!("sinkhole: {n:?} is not a valid domain name: {e}; nothing written");
                return ExitCode::from(2);
            }
        }
    }
    let mut missing = Vec::new();
    let edited = edit_file(from, false, |old| {
        let (new, absent) = remove_names(old, &checked);
        missing = absent;
        (new != old).then_some(new)
    });
    if let Err(e) = edited {
        eprintln!("sinkhole: {e}");
        return ExitCode::from(1);
    }
    for m in &missing {
        eprintln!("{m}: not in {}", from.display());
    }
    println!(
        "{}: {} removed",
        from.display(),
        checked.len() - missing.len()
    );
    if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// With `--config`, refuses nothing but warns (on stderr) when `file` is not one of the
/// config's list files: a server with that config would not see the edit. Returns an exit
/// code only when the config itself is bad.
fn not_in_config(config: Option<PathBuf>, file: &Path) -> Option<ExitCode> {
    let config = config?;
    let cfg = match load_config(Some(&config)) {
        Ok(c) => c,
        Err(code) => return Some(code),
    };
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let target = canon(file);
    let listed = cfg.blocking.lists.iter().any(|s| match &s.location {
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
    None
}

fn update(config: Option<PathBuf>) -> ExitCode {
    let cfg = match load_config(config.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let b = &cfg.blocking;
    let urls: Vec<&str> = b
        .lists
        .iter()
        .filter_map(|s| match &s.location {
            Location::Url(u) => Some(u.as_str()),
            _ => None,
        })
        .collect();
    if urls.is_empty() {
        println!("no URL lists in the config");
        return ExitCode::SUCCESS;
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
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
