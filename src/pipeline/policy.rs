//! `Policy`: everything a query decision reads from the config, as one immutable snapshot.
//!
//! A reload (SIGHUP, a list file that changed) builds a whole new snapshot off the query
//! path and swaps it in at once; queries in flight finish with the one they started with,
//! and a reload that fails anywhere keeps the previous snapshot whole. It holds access
//! control, the local records and the blocking stage (lists, answer settings, bypass
//! signals); client groups go here too, so that they reload the same way.

use std::time::SystemTime;

use crate::blocklist::load::{BlocklistError, ListReport};
use crate::config::Config;
use crate::counters::ListStat;

use super::access::Access;
use super::blocking::Blocking;
use super::local::LocalRecords;

/// The decision-making part of the config, built and swapped whole.
#[derive(Debug)]
pub struct Policy {
    /// Who may ask.
    pub access: Access,
    /// Block and allow lists and how blocked names are answered.
    pub blocking: Blocking,
    /// Local records and the private reverse zones.
    pub local: LocalRecords,
    /// What each list held when this snapshot was built (for the counters).
    pub lists: Vec<ListStat>,
}

impl Policy {
    /// A snapshot of `access` around an already built blocking stage; `reports` are its
    /// lists' load reports (empty for a stage built in a test).
    pub fn new(access: Access, blocking: Blocking, reports: &[ListReport]) -> Self {
        let loaded = SystemTime::now();
        Self {
            access,
            blocking,
            local: LocalRecords::default(),
            lists: reports
                .iter()
                .map(|r| ListStat {
                    name: r.display.clone(),
                    entries: r.entries as u64,
                    loaded,
                })
                .collect(),
        }
    }

    /// Builds the snapshot for `cfg`, reading every list and hosts file. Fails only when
    /// a file cannot be used at all; bad lines are skipped and reported (the lists'
    /// reports come back for the caller to log; the local records' skipped lines and hints
    /// are logged here).
    pub fn load(cfg: &Config) -> Result<(Self, Vec<ListReport>), BlocklistError> {
        let (local, local_report) = LocalRecords::load(cfg)?;
        local_report.log();
        let (blocking, reports) = Blocking::load(&cfg.blocking)?;
        let mut me = Self::new(Access::new(&cfg.access), blocking, &reports);
        me.local = local;
        Ok((me, reports))
    }
}
