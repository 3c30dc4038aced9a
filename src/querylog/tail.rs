//! `sinkhole log tail`: the last records as readable lines (or JSON), filtered by client,
//! action and name, and with `--follow` the new ones as they arrive, across rotation and
//! truncation (the file is polled; a renamed file is read to its end before the new one is
//! opened).
//!
//! Which records pass is decided by [`Filter`], which lives in `filter.rs` (the reader uses
//! it too) and is re-exported here.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Seek as _, SeekFrom, Write};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::Duration;

use super::Entry;
pub use super::filter::Filter;
use super::read::{Warnings, for_each_match, parse_line};

/// How a record is shown.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// ANSI colours (stdout is a terminal).
    pub color: bool,
    /// The JSON line as stored.
    pub json: bool,
}

/// One readable line: time, client, action, type, name, and the answer or the rule; a
/// query that did not come over UDP ends with its transport (`[tcp]`, `[tls]`), and a
/// record that names its instance with it (`@dns2`).
pub fn render(e: &Entry<'_>, style: Style) -> String {
    if style.json {
        return serde_json::to_string(e).unwrap_or_default();
    }
    // `2026-11-21T10:00:01.532Z` → `2026-11-21 10:00:01.532`
    let ts = e.ts.get(..23).unwrap_or(&e.ts).replacen('T', " ", 1);
    let detail = match (&e.rule, &e.list) {
        (Some(r), Some(l)) if e.action == "blocked" => match &e.cname {
            Some(c) => format!("{r} ({l}) via CNAME {c}"),
            None => format!("{r} ({l})"),
        },
        (Some(r), Some(l)) => format!("{} [allowed by {r} ({l})]", answers(e)),
        _ => answers(e),
    };
    let action = e.action.to_uppercase();
    let (on, off) = if style.color {
        let c = match &*e.action {
            "blocked" => "\x1b[31m",
            "allowed" => "\x1b[32m",
            "cached" => "\x1b[36m",
            _ => "\x1b[33m",
        };
        (c, "\x1b[0m")
    } else {
        ("", "")
    };
    let mut via = match e.proto.as_deref() {
        None | Some("udp") => String::new(),
        Some(p) => format!(" [{p}]"),
    };
    // Read from a database several instances write to: which one answered.
    if let Some(i) = &e.instance {
        via.push_str(" @");
        via.push_str(i);
    }
    format!(
        "{ts} {:<15} {on}{action:<7}{off} {:<5} {} {detail}{via}",
        e.client, e.qtype, e.qname
    )
}

fn answers(e: &Entry<'_>) -> String {
    if e.answers.is_empty() {
        e.rcode.to_string()
    } else {
        e.answers.join(", ")
    }
}

/// Prints the last `lines` matching records; with `follow`, keeps printing new ones until
/// the output goes away (a write error ends it).
pub fn run(
    path: &Path,
    filter: &Filter,
    lines: usize,
    follow: bool,
    style: Style,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut last: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    // Where the current file ended when it was read, to follow from there.
    let start = std::fs::metadata(path).ok().map(|m| (m.ino(), m.len()));
    if lines > 0 {
        for_each_match(path, filter, |e| {
            if last.len() == lines {
                last.pop_front();
            }
            last.push_back(render(&e, style));
        });
    }
    for l in &last {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    if follow {
        follow_file(path, start, filter, style, out)?;
    }
    Ok(())
}

struct Open {
    file: BufReader<File>,
    ino: u64,
    pos: u64,
}

fn open_at(path: &Path, pos: u64) -> Option<Open> {
    let f = File::open(path).ok()?;
    let ino = f.metadata().ok()?.ino();
    let mut file = BufReader::new(f);
    file.seek(SeekFrom::Start(pos)).ok()?;
    Some(Open { file, ino, pos })
}

fn follow_file(
    path: &Path,
    start: Option<(u64, u64)>,
    filter: &Filter,
    style: Style,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let pre = filter.prefilter();
    let mut cur: Option<Open> = match start {
        Some((ino, len)) => open_at(path, len).filter(|o| o.ino == ino),
        None => None,
    };
    // The file may have been rotated between listing and opening: start at its beginning.
    if cur.is_none() && start.is_some() {
        cur = open_at(path, 0);
    }
    let mut partial: Vec<u8> = Vec::new();
    let mut warnings = Warnings::default();
    // Prints the record on `line` when it passes; an unreadable line is skipped, with a
    // warning when `warnings` is given.
    let show = |line: &[u8],
                out: &mut dyn Write,
                warnings: Option<&mut Warnings>|
     -> std::io::Result<()> {
        if line.is_empty() || !pre(line) {
            return Ok(());
        }
        match parse_line(line) {
            Ok(e) if filter.matches(&e) => writeln!(out, "{}", render(&e, style)),
            Ok(_) => Ok(()),
            Err(err) => {
                if let Some(w) = warnings {
                    w.warn(&format!(
                        "{}: unreadable line skipped: {err}",
                        path.display()
                    ));
                }
                Ok(())
            }
        }
    };
    loop {
        if let Some(o) = cur.as_mut() {
            // Read every whole line that is there now; a partial last line stays in
            // `partial` until the rest of it arrives.
            loop {
                let n = o.file.read_until(b'\n', &mut partial)?;
                if n == 0 {
                    break;
                }
                o.pos += n as u64;
                if partial.last() != Some(&b'\n') {
                    break;
                }
                let line = partial.strip_suffix(b"\n").unwrap_or(&partial);
                show(line, out, Some(&mut warnings))?;
                partial.clear();
            }
            out.flush()?;
        }
        std::thread::sleep(Duration::from_millis(200));
        // Rotated (a new file at the path) or truncated: finish the old one, then switch.
        let meta = std::fs::metadata(path).ok();
        match (&mut cur, meta) {
            (Some(o), Some(m)) if m.ino() != o.ino => {
                let mut rest = Vec::new();
                if std::io::Read::read_to_end(&mut o.file, &mut rest).is_ok() && !rest.is_empty() {
                    o.pos += rest.len() as u64;
                    partial.extend_from_slice(&rest);
                    // Print the old file's last lines now (a torn last line is tried too,
                    // silently), before the new file is opened.
                    for line in partial.split(|&b| b == b'\n') {
                        show(line, out, None)?;
                    }
                }
                partial.clear();
                cur = open_at(path, 0);
            }
            (Some(o), Some(m)) if m.len() < o.pos => {
                partial.clear();
                cur = open_at(path, 0);
            }
            (None, Some(_)) => cur = open_at(path, 0),
            _ => {}
        }
    }
}
