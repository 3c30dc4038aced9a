//! Loading list sources (files on disk, or the lists embedded in the binary) into one
//! [`Blocklist`], with a per-list report for the start-up summary.
//!
//! Bad lines never fail a load; an unreadable or binary file does, so that a reload can keep
//! the last good set.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::parse::{Kind, LineError, parse_list};
use super::{Blocklist, BlocklistBuilder};

/// The lists shipped in `blocklists/`, compiled into the binary so that the embedded default
/// config works from any folder.
pub const EMBEDDED: &[(&str, &str)] = &[(
    "blocklists/messaging.txt",
    include_str!("../../blocklists/messaging.txt"),
)];

/// Where a list's text comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A file on disk.
    File(PathBuf),
    /// One of the [`EMBEDDED`] lists, by its name there.
    Embedded(&'static str),
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
}

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
    /// An embedded list name that the binary does not carry.
    #[error("{path}: no such embedded list")]
    NoEmbedded {
        /// The name asked for.
        path: String,
    },
}

/// What loading one list produced.
#[derive(Debug)]
pub struct ListReport {
    /// The list as configured.
    pub display: String,
    /// Rules read from it (before de-duplication across lists).
    pub entries: usize,
    /// Lines skipped, with reasons.
    pub errors: Vec<LineError>,
    /// Time to read and parse it.
    pub elapsed: Duration,
}

/// How many skipped lines per list are logged one by one; the rest are counted.
pub const REPORTED_ERRORS: usize = 10;

/// Reads the text of a source.
pub fn read_source(src: &ListSource) -> Result<String, BlocklistError> {
    match &src.location {
        Location::Embedded(name) => EMBEDDED
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| (*t).to_string())
            .ok_or_else(|| BlocklistError::NoEmbedded {
                path: src.display.clone(),
            }),
        Location::File(path) => {
            let bytes = std::fs::read(path).map_err(|source| BlocklistError::Io {
                path: src.display.clone(),
                source,
            })?;
            if bytes.contains(&0) {
                return Err(BlocklistError::Binary {
                    path: src.display.clone(),
                });
            }
            Ok(match String::from_utf8(bytes) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(list = %src.display, "list is not valid UTF-8; undecodable bytes replaced");
                    String::from_utf8_lossy(e.as_bytes()).into_owned()
                }
            })
        }
    }
}

/// Loads every source into one [`Blocklist`]. Fails only when a source cannot be read.
pub fn load_all(sources: &[ListSource]) -> Result<(Blocklist, Vec<ListReport>), BlocklistError> {
    let mut builder = BlocklistBuilder::new();
    let mut reports = Vec::with_capacity(sources.len());
    for src in sources {
        let start = Instant::now();
        let text = read_source(src)?;
        let parsed = parse_list(&text, src.kind);
        let id = builder.add_source(&src.display);
        for r in &parsed.rules {
            builder.insert(&r.name, r.kind, id, r.line);
        }
        reports.push(ListReport {
            display: src.display.clone(),
            entries: parsed.rules.len(),
            errors: parsed.errors,
            elapsed: start.elapsed(),
        });
    }
    Ok((builder.build(), reports))
}

/// Logs a load: one info line per list and a warning per skipped line (the first
/// [`REPORTED_ERRORS`], then a count).
pub fn log_reports(reports: &[ListReport]) {
    for r in reports {
        tracing::info!(
            list = %r.display,
            entries = r.entries,
            skipped = r.errors.len(),
            elapsed_ms = format_args!("{:.1}", r.elapsed.as_secs_f64() * 1e3),
            "list loaded"
        );
        for e in r.errors.iter().take(REPORTED_ERRORS) {
            tracing::warn!(
                "{}:{}: {}: skipped {:?}",
                r.display,
                e.line,
                e.reason,
                e.text
            );
        }
        if r.errors.len() > REPORTED_ERRORS {
            tracing::warn!(
                list = %r.display,
                "{} more skipped lines not shown",
                r.errors.len() - REPORTED_ERRORS
            );
        }
    }
}
