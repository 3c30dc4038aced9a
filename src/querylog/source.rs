//! Where the reports read records from: the [`Records`] a report is fed, so that the
//! reports' logic (sessions' openings, suggestions, heartbeats, the discovery view) is
//! written once, in `report.rs`, `heartbeats.rs` and `discovery.rs`, and fed either from the
//! JSON Lines files (a [`Path`], in log order) or from PostgreSQL
//! (`crate::postgres::read::Db`, rows grouped by instance, client and session).
//!
//! The two orders differ, and [`Split`] says how a report tells a client's sessions apart
//! in each: the files hold records in the order they were answered, the database hands
//! them out grouped so that an index on (client, ts) serves one client's sessions.

use std::path::{Path, PathBuf};

use super::brief::Brief;
use super::filter::Filter;
use super::read::for_each_brief;
use crate::postgres::DbError;

/// How records handed out by a [`Records`] show where a client's session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Split {
    /// Log order (the files): a session goes on while its number stays and `seq` grows (a
    /// server restart numbers sessions from 1 again, and this still splits them).
    #[default]
    LogOrder,
    /// Grouped by instance, client and session number, each group in time order (the
    /// database): a new session when the group changes, or after `gap_ms` of silence in
    /// one group (an instance that restarted numbers its sessions from 1 again).
    Grouped {
        /// The session gap, milliseconds (`log.session_gap_s`).
        gap_ms: i64,
    },
}

/// A source of log records for the reports.
pub trait Records {
    /// How sessions are told apart in the order [`briefs`](Self::briefs) hands records.
    fn split(&self) -> Split;

    /// Calls `f` with the fields of every record that `filter` passes.
    fn briefs(&self, filter: &Filter, f: &mut dyn FnMut(&Brief<'_>)) -> Result<(), DbError>;

    /// Calls `f` with at least the records of sessions' openings (`seq` up to `max_seq`)
    /// that `filter` passes, for the reports that read only those (`suggest`). A source
    /// may hand out the others too (the files do: they are read whole anyway), so the
    /// report still looks at `seq`; the database leaves them out.
    fn openings(
        &self,
        filter: &Filter,
        max_seq: u64,
        f: &mut dyn FnMut(&Brief<'_>),
    ) -> Result<(), DbError> {
        let _ = max_seq;
        self.briefs(filter, f)
    }
}

impl Records for Path {
    fn split(&self) -> Split {
        Split::LogOrder
    }

    /// Unreadable lines and files are skipped with a warning; reading files never fails.
    fn briefs(&self, filter: &Filter, f: &mut dyn FnMut(&Brief<'_>)) -> Result<(), DbError> {
        for_each_brief(self, filter, f);
        Ok(())
    }
}

impl Records for PathBuf {
    fn split(&self) -> Split {
        Split::LogOrder
    }

    fn briefs(&self, filter: &Filter, f: &mut dyn FnMut(&Brief<'_>)) -> Result<(), DbError> {
        self.as_path().briefs(filter, f)
    }
}

/// The query log as a command or the API reads it: its files, or the database.
#[derive(Debug)]
pub enum Log {
    /// The current file (its rotated ones are read too).
    File(PathBuf),
    /// `[log.postgres]`'s database.
    Db(Box<crate::postgres::read::Db>),
}

impl Log {
    /// The records, for the reports.
    pub fn records(&self) -> &dyn Records {
        match self {
            Self::File(p) => p,
            Self::Db(db) => &**db,
        }
    }
}
