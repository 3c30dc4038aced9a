//! Lists from URLs: conditional download (ETag / If-Modified-Since) into the cache folder,
//! with the guards a subscription needs. A download that fails (HTTP error, redirect loop,
//! body cut short, HTML page, binary data) or that would shrink the list by more than
//! `blocking.max_shrink` is not applied: the cached last good copy stays. Redirects are
//! followed (at most five) but never from `https://` to `http://`. The body is streamed to a
//! temporary file beside the cached copy, checked there, and renamed into place: memory use
//! does not grow with the size of a list.
//!
//! Blocking I/O (ureq): call it from a blocking thread (`spawn_blocking`), never the query
//! path.
//!
//! Where the cached copy of a URL is ([`cache_path`]) and how a list file is read are
//! `source.rs`', shared with the loader; `cache_path` is re-exported here.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use super::edit::Replacement;
use super::http::get;
use super::parse::{Kind, Line, parse_line};
use super::source::{BlocklistError, MAX_LIST_BYTES, stream_file};

pub use super::source::cache_path;

/// `blocking.cache_dir` when the config does not set it.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/sinkhole";

/// Why a download was not applied.
#[derive(Debug, Error)]
pub enum FetchError {
    /// Transport or HTTP failure (status ≥ 400, redirect loop, connection, timeout…).
    #[error("{url}: download failed: {msg}")]
    Http {
        /// The list URL.
        url: String,
        /// What went wrong.
        msg: String,
    },
    /// The body is not a usable list (sent as an HTML page, too large, no rule).
    #[error("{url}: {msg}")]
    Content {
        /// The list URL.
        url: String,
        /// What is wrong with it.
        msg: String,
    },
    /// The body is not list text (binary data, an HTML page sent as text); the error names
    /// the URL.
    #[error(transparent)]
    NotText(#[from] BlocklistError),
    /// The new copy has far fewer rules than the last good one.
    #[error(
        "{url}: update refused: {new} rules instead of {old} (shrinks by more than {max_shrink}%); keeping the last good copy"
    )]
    Shrunk {
        /// The list URL.
        url: String,
        /// Rules in the cached copy.
        old: usize,
        /// Rules in the download.
        new: usize,
        /// `blocking.max_shrink`, percent.
        max_shrink: u8,
    },
    /// The cache folder could not be written.
    #[error("{url}: cannot write the cache ({path}): {source}")]
    Cache {
        /// The list URL.
        url: String,
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What a successful [`update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Updated {
    /// 304 Not Modified (or the same bytes): nothing changed.
    NotModified,
    /// A new copy was stored, with this many rules.
    Stored(usize),
}

fn meta_path(list: &Path) -> PathBuf {
    list.with_extension("meta")
}

/// What the `.meta` file beside a cached copy records.
#[derive(Debug, Default)]
struct Meta {
    /// The ETag the copy came with.
    etag: Option<String>,
    /// The Last-Modified date the copy came with.
    modified: Option<String>,
    /// The copy's rules and size in bytes when it was stored (the count is trusted only
    /// while the size still matches).
    rules: Option<(usize, u64)>,
}

fn read_meta(list: &Path) -> Meta {
    let mut meta = Meta::default();
    let Ok(text) = std::fs::read_to_string(meta_path(list)) else {
        return meta;
    };
    let (mut rules, mut bytes) = (None, None);
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("etag: ") {
            meta.etag = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("last-modified: ") {
            meta.modified = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("rules: ") {
            rules = v.parse().ok();
        } else if let Some(v) = line.strip_prefix("bytes: ") {
            bytes = v.parse().ok();
        }
    }
    meta.rules = rules.zip(bytes);
    meta
}

/// Counts the usable rules in list text (names and patterns).
pub fn count_rules(text: &str) -> usize {
    let mut buf = String::new();
    text.split('\n').map(|l| count_line(l, &mut buf)).sum()
}

/// Rules on one line (as [`count_rules`] counts them); `buf` is scratch space.
fn count_line(line: &str, buf: &mut String) -> usize {
    match parse_line(line, Kind::Block, false, buf) {
        Line::Name { .. } | Line::Pattern { .. } => 1,
        Line::Names { names, .. } => names.len(),
        _ => 0,
    }
}

/// Counts the rules of a list file without holding it, refusing binary and HTML files
/// (the error names the list as `list`).
fn count_file(list: &str, path: &Path) -> Result<usize, BlocklistError> {
    let (mut n, mut buf) = (0, String::new());
    stream_file(list, path, |_, line| n += count_line(line, &mut buf))?;
    Ok(n)
}

/// True when two files hold the same bytes (read in chunks, never whole).
fn same_content(a: &Path, b: &Path) -> std::io::Result<bool> {
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let len = fa.metadata()?.len();
    if len != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(64 << 10)).unwrap_or(64 << 10);
        fa.read_exact(&mut ba[..n])?;
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
        left -= n as u64;
    }
    Ok(true)
}

/// Writes `bytes` to `path` atomically (a temporary file in the same folder, synced, then
/// renamed, then the folder synced), keeping the mode (and, when allowed, the owner) of the
/// file it replaces.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut r = replacement(path)?;
    r.file().write_all(bytes)?;
    r.commit()
}

/// A [`Replacement`] for a cache file, like the copy it replaces: same mode, and same owner
/// when this user may set it (a copy downloaded by root stays readable by the service; the
/// service itself cannot give a file to root, and does not need to).
fn replacement(path: &Path) -> std::io::Result<Replacement> {
    let like = std::fs::metadata(path).ok();
    let r = Replacement::beside(path, like.as_ref())?;
    if let Some(m) = &like {
        let _ = r.keep_owner(m);
        r.keep_mode(m)?;
    }
    Ok(r)
}

/// Downloads `url` into its cache file in `dir` if it changed, applying the guards.
/// `progress(done, total)` is called as the body arrives.
pub fn update(
    url: &str,
    dir: &Path,
    max_shrink: u8,
    timeout: Duration,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<Updated, FetchError> {
    let http = |msg: String| FetchError::Http {
        url: url.to_string(),
        msg,
    };
    let content = |msg: String| FetchError::Content {
        url: url.to_string(),
        msg,
    };
    let cache_err = |source, p: &Path| FetchError::Cache {
        url: url.to_string(),
        path: p.display().to_string(),
        source,
    };
    let path = cache_path(dir, url);
    let old_len = std::fs::metadata(&path).ok().map(|m| m.len());
    let meta = if old_len.is_some() {
        read_meta(&path)
    } else {
        Meta::default()
    };
    // Redirects are followed by `http::get`, which checks each one.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .user_agent(concat!("sinkhole/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let resp = get(&agent, url, meta.etag.as_deref(), meta.modified.as_deref())
        .map_err(|e| http(e.to_string()))?;
    let status = resp.status().as_u16();
    if status == 304 {
        return Ok(Updated::NotModified);
    }
    if !(200..300).contains(&status) {
        return Err(http(format!("HTTP status {status}")));
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (etag, modified) = (header("etag"), header("last-modified"));
    if header("content-type").is_some_and(|t| t.to_ascii_lowercase().contains("text/html")) {
        return Err(content("the server sent an HTML page, not a list".into()));
    }
    let total = header("content-length").and_then(|v| v.parse::<u64>().ok());
    if total.is_some_and(|t| t > MAX_LIST_BYTES) {
        return Err(content(format!(
            "{} bytes is larger than the {MAX_LIST_BYTES} bytes a list may have",
            total.unwrap_or(0)
        )));
    }
    // The body goes to a temporary file beside the cached copy (removed unless it becomes
    // the new copy), never whole into memory.
    std::fs::create_dir_all(dir).map_err(|e| cache_err(e, dir))?;
    let mut tmp = replacement(&path).map_err(|e| cache_err(e, &path))?;
    let mut reader = resp.into_body().into_reader();
    let mut chunk = vec![0u8; 64 << 10];
    let mut got: u64 = 0;
    loop {
        let n = reader
            .read(&mut chunk)
            .map_err(|e| http(format!("body cut short after {got} bytes: {e}")))?;
        if n == 0 {
            break;
        }
        got += n as u64;
        if got > MAX_LIST_BYTES {
            return Err(content(format!(
                "larger than the {MAX_LIST_BYTES} bytes a list may have"
            )));
        }
        tmp.file()
            .write_all(&chunk[..n])
            .map_err(|e| cache_err(e, tmp.path()))?;
        progress(got, total);
    }
    if let Some(t) = total
        && t != got
    {
        return Err(http(format!("body cut short: {got} of {t} bytes")));
    }
    if old_len == Some(got) && same_content(&path, tmp.path()).unwrap_or(false) {
        let same = Meta {
            etag,
            modified,
            ..meta
        };
        write_meta(url, &path, &same)?;
        return Ok(Updated::NotModified);
    }
    let new = count_file(url, tmp.path())?;
    if let Some(len) = old_len {
        let old_n = match meta.rules {
            Some((n, bytes)) if bytes == len => n,
            // A cached copy that no longer reads as a list guards nothing.
            _ => count_file(url, &path).unwrap_or(0),
        };
        let floor = old_n as u128 * u128::from(100 - max_shrink.min(100)) / 100;
        if (new as u128) < floor {
            return Err(FetchError::Shrunk {
                url: url.to_string(),
                old: old_n,
                new,
                max_shrink,
            });
        }
    } else if new == 0 {
        return Err(content("no usable rule in the download".into()));
    }
    tmp.commit().map_err(|e| cache_err(e, &path))?;
    let stored = Meta {
        etag,
        modified,
        rules: Some((new, got)),
    };
    write_meta(url, &path, &stored)?;
    Ok(Updated::Stored(new))
}

fn write_meta(url: &str, path: &Path, meta: &Meta) -> Result<(), FetchError> {
    let mut text = format!("url: {url}\n");
    if let Some(e) = &meta.etag {
        let _ = writeln!(text, "etag: {e}");
    }
    if let Some(m) = &meta.modified {
        let _ = writeln!(text, "last-modified: {m}");
    }
    if let Some((rules, bytes)) = meta.rules {
        let _ = writeln!(text, "rules: {rules}\nbytes: {bytes}");
    }
    let mp = meta_path(path);
    write_atomic(&mp, text.as_bytes()).map_err(|source| FetchError::Cache {
        url: url.to_string(),
        path: mp.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_keeps_validators_and_the_rule_count() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.txt");
        let meta = Meta {
            etag: Some("\"7\"".into()),
            modified: None,
            rules: Some((3, 42)),
        };
        write_meta("http://x/l", &p, &meta).unwrap();
        let m = read_meta(&p);
        assert_eq!(
            (m.etag.as_deref(), m.modified, m.rules),
            (Some("\"7\""), None, Some((3, 42)))
        );
        // A meta file written before counts were kept.
        std::fs::write(meta_path(&p), "url: http://x/l\netag: \"7\"\n").unwrap();
        assert_eq!(read_meta(&p).rules, None);
    }

    #[test]
    fn atomic_write_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.txt");
        write_atomic(&p, b"a.com\n").unwrap();
        write_atomic(&p, b"b.com\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "b.com\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
