//! Loading list sources (files on disk, or the lists embedded in the binary) into one
//! [`Blocklist`], with a per-list report for the start-up summary.
//!
//! Bad lines never fail a load; an unreadable, binary, HTML or oversized file does, so that a
//! reload can keep the last good set. A URL list is read from its cached copy (see `fetch.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::parse::{Kind, Line, LineError, SkipReason, excerpt, parse_line};
use super::{Blocklist, BlocklistBuilder, Inserted};

/// The lists shipped in `blocklists/`, compiled into the binary so that the embedded default
/// config works from any folder.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "blocklists/messaging.txt",
        include_str!("../../blocklists/messaging.txt"),
    ),
    (
        "blocklists/doh-names.txt",
        include_str!("../../blocklists/doh-names.txt"),
    ),
];

/// Where a list's text comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A file on disk.
    File(PathBuf),
    /// One of the [`EMBEDDED`] lists, by its name there.
    Embedded(&'static str),
    /// An `http://` or `https://` URL, served from its copy in `blocking.cache_dir`.
    Url(String),
}

/// One configured list: where it is, how to show it, and what its plain entries mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListSource {
    /// As written in the config (used in logs, EDE texts and `file:line` references).
    pub display: String,
    /// Where to read it.
    pub location: Location,
    /// `Block` for `blocking.lists`, `Allow` for `blocking.allow`.
    pub kind: Kind,
    /// `match = "exact"`: plain and hosts entries mean the name only, not its subtree.
    pub exact: bool,
}

impl ListSource {
    /// A file list of `kind` (subtree matching), shown as `display`.
    pub fn file(display: &str, path: impl Into<PathBuf>, kind: Kind) -> Self {
        Self {
            display: display.to_string(),
            location: Location::File(path.into()),
            kind,
            exact: false,
        }
    }

    /// The file the list is read from: the file itself, or a URL list's cached copy in
    /// `cache_dir` (which may not exist yet); `None` for an embedded list.
    pub fn path(&self, cache_dir: &Path) -> Option<PathBuf> {
        match &self.location {
            Location::File(p) => Some(p.clone()),
            Location::Url(u) => Some(super::fetch::cache_path(cache_dir, u)),
            Location::Embedded(_) => None,
        }
    }
}

/// Largest list file read (a bigger one is refused, not read into memory).
pub const MAX_LIST_BYTES: u64 = 512 << 20;

/// Why a list could not be loaded at all.
#[derive(Debug, Error)]
pub enum BlocklistError {
    /// The file could not be read.
    #[error("{path}: cannot read list: {source}")]
    Io {
        /// The list as configured.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds NUL bytes: not a text list.
    #[error("{path}: not a text file (NUL bytes); is this the right file?")]
    Binary {
        /// The list as configured.
        path: String,
    },
    /// The file is an HTML page (a login portal or an error page saved as the list).
    #[error("{path}: an HTML page, not a list")]
    Html {
        /// The list as configured.
        path: String,
    },
    /// The file is larger than [`MAX_LIST_BYTES`].
    #[error("{path}: {size} bytes is larger than the {max} bytes a list may have")]
    TooLarge {
        /// The list as configured.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// An embedded list name that the binary does not carry.
    #[error("{path}: no such embedded list")]
    NoEmbedded {
        /// The name asked for.
        path: String,
    },
}

/// What loading one list produced.
#[derive(Debug, Default)]
pub struct ListReport {
    /// The list as configured.
    pub display: String,
    /// Name rules read from it (block and allow, before de-duplication).
    pub entries: usize,
    /// Allow rules among them (`@@` lines, or every entry of an allowlist).
    pub exceptions: usize,
    /// Glob and regex rules.
    pub patterns: usize,
    /// Rules whose name was already in the set (this list or an earlier one).
    pub duplicates: usize,
    /// Skipped lines per reason.
    pub skipped: BTreeMap<SkipReason, usize>,
    /// Skipped lines kept for the report: the first [`REPORTED_ERRORS`] per reason (all of
    /// them when loading for `lists lint`).
    pub errors: Vec<LineError>,
    /// Time to read, parse and insert it.
    pub elapsed: Duration,
    /// A problem that left the list empty or stale (a URL list with no cached copy yet).
    pub warning: Option<String>,
}

impl ListReport {
    /// Total skipped lines.
    pub fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }
}

/// How many skipped lines per list and reason are logged one by one; the rest are counted.
pub const REPORTED_ERRORS: usize = 10;

/// Checks and decodes the bytes of a list.
pub fn decode(list: &str, bytes: Vec<u8>) -> Result<String, BlocklistError> {
    if bytes.contains(&0) {
        return Err(BlocklistError::Binary {
            path: list.to_string(),
        });
    }
    if looks_like_html(&bytes) {
        return Err(BlocklistError::Html {
            path: list.to_string(),
        });
    }
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(list = %list, "list is not valid UTF-8; undecodable bytes replaced (those lines are skipped)");
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
    })
}

/// True when the text starts like an HTML document.
pub fn looks_like_html(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(512)];
    let head = String::from_utf8_lossy(head)
        .trim_start_matches('\u{feff}')
        .trim_start()
        .to_ascii_lowercase();
    head.starts_with("<!doctype html") || head.starts_with("<html") || head.starts_with("<head")
}

/// Maps an I/O error on the list shown as `list`.
fn io_error(list: &str) -> impl Fn(std::io::Error) -> BlocklistError + Copy + '_ {
    move |source| BlocklistError::Io {
        path: list.to_string(),
        source,
    }
}

/// Opens a list file, refusing one larger than [`MAX_LIST_BYTES`] before reading it.
fn open_list(list: &str, path: &Path) -> Result<std::fs::File, BlocklistError> {
    let io = io_error(list);
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > MAX_LIST_BYTES {
        return Err(BlocklistError::TooLarge {
            path: list.to_string(),
            size,
            max: MAX_LIST_BYTES,
        });
    }
    Ok(file)
}

/// Reads a file list, refusing binary, HTML and oversized files.
pub fn read_file(display: &str, path: &Path) -> Result<String, BlocklistError> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    open_list(display, path)?
        .read_to_end(&mut bytes)
        .map_err(io_error(display))?;
    decode(display, bytes)
}

/// Streams the lines of a file list to `f(line_number, line)` without holding the whole file:
/// refuses oversized, binary (NUL bytes) and HTML files, replaces undecodable bytes (with one
/// warning), and numbers lines from 1 (`\n` or `\r\n` endings).
pub fn stream_file(
    list: &str,
    path: &Path,
    mut f: impl FnMut(u32, &str),
) -> Result<(), BlocklistError> {
    use std::io::{BufRead as _, Read as _};
    let io = io_error(list);
    let file = open_list(list, path)?;
    let mut r = std::io::BufReader::with_capacity(256 << 10, file);
    if looks_like_html(r.fill_buf().map_err(io)?) {
        return Err(BlocklistError::Html {
            path: list.to_string(),
        });
    }
    let mut buf = Vec::with_capacity(256);
    let mut n: u32 = 0;
    let mut warned = false;
    loop {
        buf.clear();
        // At most MAX_LINE + 1 bytes of a line are kept (a longer one is skipped as too long
        // without holding it whole).
        let cap = super::parse::MAX_LINE as u64 + 1;
        if (&mut r).take(cap).read_until(b'\n', &mut buf).map_err(io)? == 0 {
            return Ok(());
        }
        if buf.len() as u64 == cap && buf.last() != Some(&b'\n') {
            loop {
                let chunk = r.fill_buf().map_err(io)?;
                if chunk.is_empty() {
                    break;
                }
                if let Some(i) = chunk.iter().position(|&b| b == b'\n') {
                    r.consume(i + 1);
                    break;
                }
                let len = chunk.len();
                r.consume(len);
            }
        }
        n = n.saturating_add(1);
        if buf.contains(&0) {
            return Err(BlocklistError::Binary {
                path: list.to_string(),
            });
        }
        let line = match std::str::from_utf8(&buf) {
            Ok(l) => std::borrow::Cow::Borrowed(l),
            Err(_) => {
                if !warned {
                    tracing::warn!(
                        "{}:{n}: list is not valid UTF-8; undecodable bytes replaced (those lines are skipped)",
                        list
                    );
                    warned = true;
                }
                String::from_utf8_lossy(&buf)
            }
        };
        f(n, line.strip_suffix('\n').unwrap_or(&line));
    }
}

/// Size and line count of a file (one quick pass), `None` when it cannot be read or is
/// larger than [`MAX_LIST_BYTES`] (the real read reports why).
fn count_lines(path: &Path) -> Option<(usize, usize)> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).ok()?;
    let size = f.metadata().ok()?.len();
    if size > MAX_LIST_BYTES {
        return None;
    }
    let mut buf = vec![0u8; 256 << 10];
    let mut n = 1;
    loop {
        let got = f.read(&mut buf).ok()?;
        if got == 0 {
            return Some((usize::try_from(size).ok()?, n));
        }
        n += buf[..got].iter().filter(|&&b| b == b'\n').count();
    }
}

/// Reads the text of a source. A URL list is read from its cached copy in `cache_dir`;
/// `Ok(None)` when there is none yet.
pub fn read_source(src: &ListSource, cache_dir: &Path) -> Result<Option<String>, BlocklistError> {
    let Some(path) = src.path(cache_dir) else {
        return EMBEDDED
            .iter()
            .find(|(n, _)| src.location == Location::Embedded(n))
            .map(|(_, t)| Some((*t).to_string()))
            .ok_or_else(|| BlocklistError::NoEmbedded {
                path: src.display.clone(),
            });
    };
    if matches!(src.location, Location::Url(_)) && !path.exists() {
        return Ok(None);
    }
    read_file(&src.display, &path).map(Some)
}

/// Loads every source into one [`Blocklist`], URL lists from their copy in `cache_dir`.
/// Fails only when a source cannot be read. `keep_all_errors` keeps every skipped line in
/// the reports (for `lists lint`) instead of the first [`REPORTED_ERRORS`] per reason.
pub fn load_all_with(
    sources: &[ListSource],
    cache_dir: &Path,
    keep_all_errors: bool,
) -> Result<(Blocklist, Vec<ListReport>), BlocklistError> {
    let mut builder = BlocklistBuilder::new();
    let mut reports = Vec::with_capacity(sources.len());
    let mut badfilters: Vec<(String, Kind)> = Vec::new();
    for src in sources {
        let start = Instant::now();
        let mut report = ListReport {
            display: src.display.clone(),
            ..ListReport::default()
        };
        let path = src.path(cache_dir);
        let id = builder.add_source(&src.display);
        let mut lines = LineSink {
            builder: &mut builder,
            src,
            id,
            report: &mut report,
            badfilters: &mut badfilters,
            keep_all_errors,
            buf: String::with_capacity(256),
        };
        match path {
            Some(p) if matches!(src.location, Location::Url(_)) && !p.exists() => {
                report.warning = Some(format!(
                    "no cached copy in {} yet; the list is empty until a download succeeds",
                    cache_dir.display()
                ));
            }
            Some(p) => {
                // Sized up front (one rule per line at most, names no longer than the file):
                // no doubling copies while a big list loads next to the one serving.
                if let Some((size, n)) = count_lines(&p) {
                    lines.builder.reserve(n, size);
                }
                stream_file(&src.display, &p, |n, raw| lines.line(n, raw))?;
            }
            None => {
                let text = read_source(src, cache_dir)?.unwrap_or_default();
                for (i, raw) in text.split('\n').enumerate() {
                    lines.line(u32::try_from(i + 1).unwrap_or(u32::MAX), raw);
                }
            }
        }
        report.elapsed = start.elapsed();
        reports.push(report);
    }
    for (name, kind) in badfilters {
        builder.remove(&name, kind);
    }
    Ok((builder.build(), reports))
}

struct LineSink<'a> {
    builder: &'a mut BlocklistBuilder,
    src: &'a ListSource,
    id: u16,
    report: &'a mut ListReport,
    badfilters: &'a mut Vec<(String, Kind)>,
    keep_all_errors: bool,
    buf: String,
}

impl LineSink<'_> {
    fn count(report: &mut ListReport, kind: Kind, outcome: Inserted) {
        report.entries += 1;
        if kind == Kind::Allow {
            report.exceptions += 1;
        }
        if outcome != Inserted::New {
            report.duplicates += 1;
        }
    }

    fn line(&mut self, line: u32, raw: &str) {
        let (id, builder) = (self.id, &mut *self.builder);
        match parse_line(raw, self.src.kind, self.src.exact, &mut self.buf) {
            Line::Empty => {}
            Line::Name {
                name,
                kind,
                exact,
                important,
            } => {
                let o = builder.insert(name, kind, exact, important, id, line);
                Self::count(self.report, kind, o);
            }
            Line::Names { names, kind, exact } => {
                for n in &names {
                    let o = builder.insert(n, kind, exact, false, id, line);
                    Self::count(self.report, kind, o);
                }
            }
            Line::BadFilter { name, kind } => self.badfilters.push((name.to_string(), kind)),
            Line::Pattern {
                pattern,
                text,
                kind,
            } => {
                self.report.patterns += 1;
                builder.insert_pattern(pattern, &text, kind, id, line);
            }
            Line::Skip(reason, detail) => {
                let n = self.report.skipped.entry(reason).or_insert(0);
                *n += 1;
                if self.keep_all_errors || *n <= REPORTED_ERRORS {
                    self.report.errors.push(LineError {
                        line,
                        text: excerpt(raw),
                        reason,
                        detail,
                    });
                }
            }
        }
    }
}

/// Logs a load: one info line per list and a warning per kept skipped line (the first
/// [`REPORTED_ERRORS`] per reason, then a count per reason).
pub fn log_reports(reports: &[ListReport]) {
    for r in reports {
        if let Some(w) = &r.warning {
            tracing::warn!(list = %r.display, "{w}");
        }
        let skipped: Vec<String> = r.skipped.iter().map(|(k, v)| format!("{k}={v}")).collect();
        tracing::info!(
            list = %r.display,
            entries = r.entries,
            exceptions = r.exceptions,
            patterns = r.patterns,
            duplicates = r.duplicates,
            skipped = r.skipped_total(),
            by_reason = %skipped.join(","),
            elapsed_ms = format_args!("{:.1}", r.elapsed.as_secs_f64() * 1e3),
            "list loaded"
        );
        for e in r.errors.iter() {
            tracing::warn!("{}:{}: skipped: {}", r.display, e.line, e);
        }
        for (reason, n) in &r.skipped {
            if *n > REPORTED_ERRORS {
                tracing::warn!(
                    list = %r.display,
                    "{} more lines skipped as {reason} not shown (sinkhole lists lint shows all)",
                    n - REPORTED_ERRORS
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_one(dir: &Path, name: &str) -> Result<(Blocklist, Vec<ListReport>), BlocklistError> {
        let src = ListSource::file(name, dir.join(name), Kind::Block);
        load_all_with(&[src], dir, false)
    }

    #[test]
    fn bad_files_fail_with_the_list_named_and_odd_text_loads() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("bin.txt"), b"a.com\n\x00\x01\x02\xff").unwrap();
        let e = load_one(d, "bin.txt").unwrap_err();
        assert!(e.to_string().starts_with("bin.txt: not a text file"), "{e}");

        // A 2 GB file (sparse) is refused before it is read.
        let f = std::fs::File::create(d.join("huge.txt")).unwrap();
        f.set_len(2 << 30).unwrap();
        let e = load_one(d, "huge.txt").unwrap_err();
        assert!(matches!(e, BlocklistError::TooLarge { .. }), "{e}");
        assert!(
            e.to_string().starts_with("huge.txt: 2147483648 bytes"),
            "{e}"
        );

        std::fs::write(d.join("page.txt"), "\n<!DOCTYPE html>\n<html></html>\n").unwrap();
        let e = load_one(d, "page.txt").unwrap_err();
        assert!(e.to_string().contains("an HTML page"), "{e}");

        // A 1 MB line and a non-UTF-8 line are skipped; the rest loads.
        let mut text = b"first.com\n".to_vec();
        text.extend(std::iter::repeat_n(b'a', 1 << 20));
        text.extend_from_slice(b"\nb\xe4d.com\nlast.com\n");
        std::fs::write(d.join("odd.txt"), &text).unwrap();
        let (l, r) = load_one(d, "odd.txt").unwrap();
        assert!(l.is_blocked(b"first.com") && l.is_blocked(b"last.com"));
        assert_eq!(r[0].skipped[&SkipReason::TooLong], 1);
        assert_eq!(r[0].skipped[&SkipReason::InvalidName], 1);
        assert_eq!(
            r[0].errors.iter().map(|e| e.line).collect::<Vec<_>>(),
            vec![2, 3]
        );
    }

    #[test]
    fn reports_count_per_reason_and_keep_ten_per_reason() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("@@||ok.com^\nok.com\n");
        for i in 0..25 {
            text.push_str(&format!("10.0.0.{i}\n"));
        }
        text.push_str("||x.com^$third-party\n");
        std::fs::write(dir.path().join("l.txt"), text).unwrap();
        let (_, r) = load_one(dir.path(), "l.txt").unwrap();
        let r = &r[0];
        assert_eq!((r.entries, r.exceptions, r.duplicates), (2, 1, 1));
        assert_eq!(r.skipped[&SkipReason::IpAddress], 25);
        assert_eq!(r.skipped[&SkipReason::BrowserModifier], 1);
        assert_eq!(r.errors.len(), REPORTED_ERRORS + 1);
    }
}
