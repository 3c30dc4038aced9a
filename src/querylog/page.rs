//! Reading the log newest first, for the HTTP API: a page of the records that pass a
//! [`Filter`] (`newest`), and the queries per minute of the last hours (`per_minute`).
//!
//! The files (the current one, then `path.1`, `path.2`, …) are read backwards in chunks
//! with positioned reads, so a page of the newest records costs a few kilobytes however
//! long the log is, and a time range stops the scan at its start. A page's [`Cursor`] is
//! the file's inode and the byte offset of its last record: rotation renames files but
//! keeps inodes, so the next page goes on where this one ended while the writer writes
//! and rotates (when that file has been deleted, the records before it are gone too).
//! Unreadable lines (a torn last line) are skipped.

use std::fmt;
use std::fs::File;
use std::ops::ControlFlow;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::filter::{Filter, peek_str, peek_ts};
use super::read::{files, parse_line};
use super::report::ts_ms;
use super::writer::format_ts;

/// Bytes read at a time, backwards.
const CHUNK: u64 = 256 << 10;
/// A "line" longer than this (no writer writes one) is dropped while reading.
const MAX_LINE: usize = 1 << 20;
/// Records are in file order, which is arrival order give or take a receive batch: a scan
/// for a time range stops this long before its start.
const ORDER_SLACK: Duration = Duration::from_secs(60);

/// Where a page ended: records before byte `offset` of the file with inode `ino`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The file's inode.
    pub ino: u64,
    /// The byte offset of the page's last record in it.
    pub offset: u64,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ino, self.offset)
    }
}

impl FromStr for Cursor {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (ino, offset) = s.split_once('-').ok_or(())?;
        Ok(Self {
            ino: ino.parse().map_err(|_| ())?,
            offset: offset.parse().map_err(|_| ())?,
        })
    }
}

/// Calls `f` with every line of the log at `path` and where it starts, newest first,
/// beginning before `before` (from the end without it), until `f` breaks.
pub fn for_each_rev(
    path: &Path,
    before: Option<Cursor>,
    f: &mut dyn FnMut(&[u8], Cursor) -> ControlFlow<()>,
) {
    let mut list = files(path);
    list.reverse();
    let mut started = before.is_none();
    for file in &list {
        let Ok(fh) = File::open(file) else { continue };
        let Ok(meta) = fh.metadata() else { continue };
        let (ino, mut end) = (meta.ino(), meta.len());
        if !started {
            match before {
                Some(c) if c.ino == ino => {
                    end = end.min(c.offset);
                    started = true;
                }
                _ => continue,
            }
        }
        if rev_file(&fh, ino, end, f).is_break() {
            return;
        }
    }
}

/// The lines of `fh` before byte `end`, last first.
fn rev_file(
    fh: &File,
    ino: u64,
    end: u64,
    f: &mut dyn FnMut(&[u8], Cursor) -> ControlFlow<()>,
) -> ControlFlow<()> {
    // `data` holds the bytes from `pos` up to the start of the last line handed out.
    let mut pos = end;
    let mut data: Vec<u8> = Vec::new();
    loop {
        let n = CHUNK.min(pos);
        if n == 0 {
            if !data.is_empty() {
                f(&data, Cursor { ino, offset: 0 })?;
            }
            return ControlFlow::Continue(());
        }
        let mut chunk = vec![0u8; usize::try_from(n).unwrap_or(0)];
        if fh.read_exact_at(&mut chunk, pos - n).is_err() {
            // Truncated under us: what is left of it is not the log we were reading.
            return ControlFlow::Continue(());
        }
        pos -= n;
        chunk.extend_from_slice(&data);
        data = chunk;
        let mut cut = data.len();
        while let Some(i) = memchr::memrchr(b'\n', &data[..cut]) {
            let line = &data[i + 1..cut];
            if !line.is_empty() {
                f(
                    line,
                    Cursor {
                        ino,
                        offset: pos + i as u64 + 1,
                    },
                )?;
            }
            cut = i;
        }
        data.truncate(cut);
        if data.len() > MAX_LINE {
            data.clear();
        }
    }
}

/// The `ts` text `slack` before `ts`, for an early stop.
fn earlier(ts: &str, slack: Duration) -> Option<String> {
    let ms = u64::try_from(ts_ms(ts)?).ok()?;
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    Some(format_ts(t.checked_sub(slack).unwrap_or(UNIX_EPOCH)))
}

/// One page of [`newest`].
#[derive(Debug, Default)]
pub struct Page {
    /// The records, newest first, as stored.
    pub records: Vec<serde_json::Value>,
    /// Where the next (older) page starts; `None` when no record is left.
    pub next: Option<Cursor>,
    /// Lines looked at.
    pub scanned: u64,
}

/// The newest `limit` records before `before` that pass `filter`, newest first.
pub fn newest(path: &Path, filter: &Filter, before: Option<Cursor>, limit: usize) -> Page {
    let pre = filter.prefilter();
    let stop = filter
        .since
        .as_deref()
        .and_then(|s| earlier(s, ORDER_SLACK));
    let qname = memchr::memmem::Finder::new(b"\"qname\":\"");
    let mut page = Page::default();
    if limit == 0 {
        return page;
    }
    for_each_rev(path, before, &mut |line, at| {
        page.scanned += 1;
        if let (Some(stop), Some(ts)) = (&stop, peek_ts(line))
            && ts < stop.as_bytes()
        {
            return ControlFlow::Break(());
        }
        if !pre(line) {
            return ControlFlow::Continue(());
        }
        // A name glob decided on the raw name, most lines left unparsed.
        if let Some(g) = &filter.name
            && let Some(q) = peek_str(line, &qname)
            && !g.is_match(q)
        {
            return ControlFlow::Continue(());
        }
        let Ok(e) = parse_line(line) else {
            return ControlFlow::Continue(());
        };
        if !filter.matches(&e) {
            return ControlFlow::Continue(());
        }
        if let Ok(v) = serde_json::to_value(&e) {
            page.records.push(v);
        }
        if page.records.len() >= limit {
            page.next = Some(at);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    page
}

/// Queries and blocked queries per minute, for the `minutes` whole minutes that end with
/// the one holding `now`, oldest first: `(minute start, queries, blocked)`.
pub fn per_minute(path: &Path, now: SystemTime, minutes: u64) -> Vec<(u64, u64, u64)> {
    let now_s = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let first = (now_s / 60).saturating_sub(minutes.saturating_sub(1)) * 60;
    let mut out: Vec<(u64, u64, u64)> = (0..minutes).map(|i| (first + i * 60, 0, 0)).collect();
    let start = format_ts(UNIX_EPOCH + Duration::from_secs(first));
    let stop = earlier(&start, ORDER_SLACK).unwrap_or_default();
    let blocked = memchr::memmem::Finder::new(b"\"action\":\"blocked\"");
    for_each_rev(path, None, &mut |line, _| {
        let ts = match peek_ts(line) {
            Some(ts) => String::from_utf8_lossy(ts).into_owned(),
            None => match parse_line(line) {
                Ok(e) => e.ts.into_owned(),
                Err(_) => return ControlFlow::Continue(()),
            },
        };
        if ts < stop {
            return ControlFlow::Break(());
        }
        let Some(ms) = ts_ms(&ts).and_then(|m| u64::try_from(m).ok()) else {
            return ControlFlow::Continue(());
        };
        let slot = (ms / 1000).checked_sub(first).map(|d| d / 60);
        if let Some(b) = slot.and_then(|i| out.get_mut(usize::try_from(i).ok()?)) {
            b.1 += 1;
            if blocked.find(line).is_some() {
                b.2 += 1;
            }
        }
        ControlFlow::Continue(())
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn line(i: u64, action: &str) -> String {
        let ts = format_ts(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i));
        format!(
            "{{\"ts\":\"{ts}\",\"client\":\"192.0.2.{}\",\"qname\":\"n{i}.example\",\"qtype\":\"A\",\"action\":\"{action}\",\"rcode\":\"NOERROR\",\"elapsed_us\":1,\"session\":1,\"seq\":{i}}}\n",
            i % 2
        )
    }

    /// 3 files: q.jsonl.2 (0..300), q.jsonl.1 (300..600), q.jsonl (600..900 + a torn line).
    fn log(dir: &Path) -> std::path::PathBuf {
        let p = dir.join("q.jsonl");
        for (name, r) in [
            ("q.jsonl.2", 0..300),
            ("q.jsonl.1", 300..600),
            ("q.jsonl", 600..900),
        ] {
            let mut f = File::create(dir.join(name)).unwrap();
            for i in r {
                let a = if i % 3 == 0 { "blocked" } else { "allowed" };
                f.write_all(line(i, a).as_bytes()).unwrap();
            }
        }
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"ts\":\"2023-").unwrap();
        p
    }

    fn seqs(p: &Page) -> Vec<u64> {
        p.records
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn pages_walk_every_file_newest_first_without_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let p = log(dir.path());
        let f = Filter {
            client: Some("192.0.2.1/32".parse().unwrap()),
            ..Filter::default()
        };
        let mut all = Vec::new();
        let mut before = None;
        loop {
            let page = newest(&p, &f, before, 7);
            all.extend(seqs(&page));
            match page.next {
                Some(c) => before = Some(c.to_string().parse().unwrap()),
                None => break,
            }
        }
        let want: Vec<u64> = (0..900).rev().filter(|i| i % 2 == 1).collect();
        assert_eq!(all, want);
    }

    #[test]
    fn a_time_range_stops_the_scan() {
        let dir = tempfile::tempdir().unwrap();
        let p = log(dir.path());
        let at = |i: u64| format_ts(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i));
        let f = Filter {
            since: Some(at(700)),
            until: Some(at(709)),
            action: Some("blocked".into()),
            ..Filter::default()
        };
        let page = newest(&p, &f, None, 100);
        assert_eq!(seqs(&page), [708, 705, 702]);
        assert!(page.next.is_none());
        assert!(page.scanned < 300, "{}", page.scanned);
    }

    #[test]
    fn minutes_count_queries_and_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let p = log(dir.path());
        // 1_700_000_000 is 20 s into its minute; records are 1 s apart.
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 899);
        let m = per_minute(&p, now, 3);
        assert_eq!(m.len(), 3);
        let (total, blocked): (u64, u64) = m.iter().fold((0, 0), |a, b| (a.0 + b.1, a.1 + b.2));
        assert_eq!(m[2].0, (1_700_000_899 / 60) * 60);
        assert_eq!(m[2].1, 1_700_000_899 % 60 + 1);
        assert_eq!(total, m[2].1 + 120);
        assert!(blocked > 0 && blocked <= total / 3 + 1);
        assert!("7-9".parse::<Cursor>().is_ok() && "7".parse::<Cursor>().is_err());
    }
}
