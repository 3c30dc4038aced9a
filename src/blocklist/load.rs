//! Loading list sources into one [`Blocklist`]: each line parsed (`parse/`) and inserted,
//! with a per-list report (rules, exceptions, duplicates, skipped lines per reason) for the
//! start-up summary and `lists lint`.
//!
//! Bad lines never fail a load; an unreadable, binary, HTML or oversized file does, so that a
//! reload can keep the last good set. Where a list's text comes from and how it is read
//! (files, embedded lists, a URL list's cached copy) is `source.rs`; its items are
//! re-exported here.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::parse::{Kind, Line, LineError, SkipReason, excerpt, parse_line};
use super::{Blocklist, BlocklistBuilder, Inserted};

pub use super::source::{
    BlocklistError, EMBEDDED, ListSource, Location, MAX_LIST_BYTES, SHARED_ALLOW, SHARED_BLOCK,
    decode, looks_like_html, read_file, read_source, shared_copy_path, shared_name, stream_file,
};

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

/// Loads every source into one [`Blocklist`], URL lists from their copy in `cache_dir`.
/// Fails only when a source cannot be read. `keep_all_errors` keeps every skipped line in
/// the reports (for `lists lint`) instead of the first [`REPORTED_ERRORS`] per reason.
pub fn load_all_with(
    sources: &[ListSource],
    cache_dir: &Path,
    keep_all_errors: bool,
) -> Result<(Blocklist, Vec<ListReport>), BlocklistError> {
    let mut builder = BlocklistBuilder::new();
    // Sized up front for all the files (one rule per line at most, names no longer than
    // the files): the rules are written in place, without a doubling copy of the arena or
    // the table while a big list loads next to the one serving.
    let (n, bytes) = sources
        .iter()
        .filter_map(|s| count_lines(&s.path(cache_dir)?))
        .fold((0usize, 0usize), |(n, b), (size, lines)| {
            (n.saturating_add(lines), b.saturating_add(size))
        });
    builder.reserve(n, bytes);
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
            // Not synced yet: empty until the database is first reached.
            Some(p) if src.is_copy() && !p.exists() => {}
            Some(p) => {
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
