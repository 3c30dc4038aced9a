//! `Policy`: everything a query decision reads from the config, as one immutable snapshot.
//!
//! A reload (SIGHUP, a list file that changed) builds a whole new snapshot off the query
//! path and swaps it in at once; queries in flight finish with the one they started with,
//! and a reload that fails anywhere keeps the previous snapshot whole. It holds access
//! control, the rate limits' settings (their buckets and bans live in the pipeline, across
//! reloads) and the blocking stage (lists, answer settings, bypass signals); client groups,
//! local records and forward zones go here too, so that they reload the same way.

use std::time::SystemTime;

use crate::blocklist::load::{BlocklistError, ListReport};
use crate::config::Config;
use crate::counters::ListStat;

use super::access::Access;
use super::blocking::Blocking;
use super::limits::Limits;

/// The decision-making part of the config, built and swapped whole.
#[derive(Debug)]
pub struct Policy {
    /// Who may ask.
    pub access: Access,
    /// How fast a client may ask (`[limits]`).
    pub limits: Limits,
    /// Block and allow lists and how blocked names are answered.
    pub blocking: Blocking,
    /// What each list held when this snapshot was built (for the counters).
    pub lists: Vec<ListStat>,
}

impl Policy {
    /// A snapshot of `access` around an already built blocking stage, without rate limits
    /// (set `limits` for them); `reports` are its lists' load reports (empty for a stage
    /// built in a test).
    pub fn new(access: Access, blocking: Blocking, reports: &[ListReport]) -> Self {
        let loaded = SystemTime::now();
        Self {
            access,
            limits: Limits::default(),
            blocking,
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

    /// Builds the snapshot for `cfg`, reading every list. Fails only when a list cannot be
    /// used at all; bad lines are skipped and reported (the reports come back for the
    /// caller to log).
    pub fn load(cfg: &Config) -> Result<(Self, Vec<ListReport>), BlocklistError> {
        let (blocking, reports) = Blocking::load(&cfg.blocking)?;
        let mut policy = Self::new(Access::new(&cfg.access), blocking, &reports);
        policy.limits = Limits::new(&cfg.limits);
        Ok((policy, reports))
    }
}
