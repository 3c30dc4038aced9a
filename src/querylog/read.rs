//! Reading the log back: the rotated files (oldest first) and then the current one, line by
//! line. A line that does not parse (a corrupted line, a torn last line) is skipped with a
//! warning naming file and line; a file that vanished between listing and opening is skipped
//! with a warning. Nothing here fails as a whole.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};

use super::Entry;
use super::brief::Brief;
use super::filter::Filter;
use super::writer::rotated;

/// Rotated files looked for at most (`log.keep` is capped at 1000).
const MAX_ROTATED: u32 = 1000;
/// Warnings printed per run; the rest are counted.
const MAX_WARNINGS: usize = 10;

/// The log files of `path` that exist, oldest first (`path.N` … `path.1`, `path`).
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut n = 1;
    while n <= MAX_ROTATED && rotated(path, n).exists() {
        n += 1;
    }
    for i in (1..n).rev() {
        out.push(rotated(path, i));
    }
    out.push(path.to_path_buf());
    out
}

/// Collects and prints (to stderr) what could not be read.
#[derive(Debug, Default)]
pub struct Warnings {
    count: usize,
}

impl Warnings {
    /// Reports one problem.
    pub fn warn(&mut self, msg: &str) {
        self.count += 1;
        if self.count <= MAX_WARNINGS {
            eprintln!("sinkhole: warning: {msg}");
        }
    }

    /// Prints the count of warnings not shown.
    pub fn finish(&self) {
        if self.count > MAX_WARNINGS {
            eprintln!(
                "sinkhole: warning: {} more unreadable lines or files skipped",
                self.count - MAX_WARNINGS
            );
        }
    }
}

/// Parses one line; `None` for a line that is not a log record.
pub fn parse_line(line: &[u8]) -> Result<Entry<'_>, serde_json::Error> {
    serde_json::from_slice(line)
}

/// Calls `f` with every record of the log at `path`, oldest first. `prefilter` sees the raw
/// line first and may skip it unparsed (a cheap substring test).
pub fn for_each(
    path: &Path,
    warnings: &mut Warnings,
    prefilter: &dyn Fn(&[u8]) -> bool,
    f: &mut dyn FnMut(Entry<'_>),
) {
    let list = files(path);
    for file in &list {
        let fh = match File::open(file) {
            Ok(fh) => fh,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file != path => {
                warnings.warn(&format!(
                    "{}: vanished while reading (rotated?)",
                    file.display()
                ));
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                warnings.warn(&format!("{}: cannot read: {e}", file.display()));
                continue;
            }
        };
        let mut r = BufReader::with_capacity(1 << 20, fh);
        let mut buf = Vec::with_capacity(1024);
        let mut lineno = 0u64;
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    warnings.warn(&format!(
                        "{}:{}: read error: {e}",
                        file.display(),
                        lineno + 1
                    ));
                    break;
                }
            }
            lineno += 1;
            let torn = buf.last() != Some(&b'\n');
            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
            if line.is_empty() || !prefilter(line) {
                continue;
            }
            match parse_line(line) {
                Ok(e) => f(e),
                Err(_) if torn => warnings.warn(&format!(
                    "{}:{lineno}: torn last line skipped (still being written?)",
                    file.display()
                )),
                Err(err) => warnings.warn(&format!(
                    "{}:{lineno}: unreadable line skipped: {err}",
                    file.display()
                )),
            }
        }
    }
}

/// Calls `f` with every record of the log at `path` that passes `filter`, oldest first;
/// prints what could not be read (see [`Warnings`]) at the end.
pub fn for_each_match(path: &Path, filter: &Filter, mut f: impl FnMut(Entry<'_>)) {
    let mut warnings = Warnings::default();
    let pre = filter.prefilter();
    for_each(path, &mut warnings, &*pre, &mut |e| {
        if filter.matches(&e) {
            f(e);
        }
    });
    warnings.finish();
}

/// Calls `f` with the [`Brief`] fields of every record of the log at `path` that passes
/// `filter`, oldest first: read from the raw line where it has the writer's shape, parsed
/// otherwise. Prints what could not be read at the end.
pub fn for_each_brief(path: &Path, filter: &Filter, f: impl FnMut(&Brief<'_>)) {
    let mut warnings = Warnings::default();
    let pre = filter.prefilter();
    // Called from the line test (lines read raw, never parsed) and from the parsed path
    // (lines of another shape), never both at once.
    let f = std::cell::RefCell::new(f);
    for_each(
        path,
        &mut warnings,
        &|line| {
            if !pre(line) {
                return false;
            }
            let Some(b) = Brief::peek(line) else {
                return true;
            };
            if filter.matches_brief(&b) {
                (f.borrow_mut())(&b);
            }
            false
        },
        &mut |e| {
            if filter.matches(&e) {
                (f.borrow_mut())(&Brief::of(&e));
            }
        },
    );
    warnings.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_files_come_first_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.jsonl");
        for n in ["q.jsonl", "q.jsonl.1", "q.jsonl.2"] {
            std::fs::write(dir.path().join(n), "").unwrap();
        }
        let names: Vec<String> = files(&p)
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["q.jsonl.2", "q.jsonl.1", "q.jsonl"]);
    }
}
