//! Where a list's text comes from, and reading it safely: a file on disk, a list embedded in
//! the binary, or a URL list's cached copy (named by [`cache_path`]; `fetch.rs` downloads
//! it). A file that is binary, an HTML page or larger than [`MAX_LIST_BYTES`] is refused
//! with a [`BlocklistError`] naming the list; undecodable bytes are replaced, with one
//! warning. Parsing the text into rules is `load.rs`' job, not this file's.

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::parse::Kind;

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
    /// The entries of this kind shared through PostgreSQL (`[sync] postgres = true`),
    /// served from this host's copy in `blocking.cache_dir` ([`shared_copy_path`]); empty
    /// until the first sync.
    Shared,
}

/// The name of the shared block entries, as the query log's `list` and `lists check` show it.
pub const SHARED_BLOCK: &str = "postgres:shared-block";
/// The name of the shared allow entries.
pub const SHARED_ALLOW: &str = "postgres:shared-allow";

/// The name of the shared entries of `kind`.
pub fn shared_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Block => SHARED_BLOCK,
        Kind::Allow => SHARED_ALLOW,
    }
}

/// This host's copy of the shared entries of `kind`, in `cache_dir`: what an instance
/// started while the database is down serves.
pub fn shared_copy_path(cache_dir: &Path, kind: Kind) -> PathBuf {
    cache_dir.join(match kind {
        Kind::Block => "postgres-shared-block.txt",
        Kind::Allow => "postgres-shared-allow.txt",
    })
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
    /// `schedule = [...]`: the list applies only in these windows; `None` = always.
    pub schedule: Option<crate::config::schedule::Schedule>,
}

impl ListSource {
    /// A file list of `kind` (subtree matching), shown as `display`.
    pub fn file(display: &str, path: impl Into<PathBuf>, kind: Kind) -> Self {
        Self {
            display: display.to_string(),
            location: Location::File(path.into()),
            kind,
            exact: false,
            schedule: None,
        }
    }

    /// The file the list is read from: the file itself, or a URL list's or the shared
    /// entries' copy in `cache_dir` (which may not exist yet); `None` for an embedded list.
    pub fn path(&self, cache_dir: &Path) -> Option<PathBuf> {
        match &self.location {
            Location::File(p) => Some(p.clone()),
            Location::Url(u) => Some(cache_path(cache_dir, u)),
            Location::Shared => Some(shared_copy_path(cache_dir, self.kind)),
            Location::Embedded(_) => None,
        }
    }
}

impl ListSource {
    /// The shared entries of `kind` (`[sync] postgres = true`).
    pub fn shared(kind: Kind) -> Self {
        Self {
            display: shared_name(kind).to_string(),
            location: Location::Shared,
            kind,
            exact: false,
            schedule: None,
        }
    }

    /// True for a list read from a copy that may not exist yet (a URL list not downloaded,
    /// shared entries not synced): missing, it is empty rather than an error.
    pub fn is_copy(&self) -> bool {
        matches!(self.location, Location::Url(_) | Location::Shared)
    }
}

/// The cached copy of `url` in `dir`: a readable name plus a stable hash, `.txt`.
pub fn cache_path(dir: &Path, url: &str) -> PathBuf {
    let readable: String = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    // FNV-1a: stable across builds and versions.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in url.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    dir.join(format!("{readable}-{h:016x}.txt"))
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
    if src.is_copy() && !path.exists() {
        return Ok(None);
    }
    read_file(&src.display, &path).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_paths_are_stable_and_distinct() {
        let d = Path::new("/c");
        let a = cache_path(d, "https://example.com/list.txt");
        assert_eq!(a, cache_path(d, "https://example.com/list.txt"));
        assert_ne!(a, cache_path(d, "https://example.com/list.txt?x"));
        assert!(a.to_string_lossy().starts_with("/c/example.com_list.txt-"));
    }
}
