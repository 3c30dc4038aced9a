//! `Policy`: everything a query decision reads from the config, as one immutable snapshot.
//!
//! A reload (SIGHUP, a list file that changed) builds a whole new snapshot off the query
//! path and swaps it in at once; queries in flight finish with the one they started with,
//! and a reload that fails anywhere keeps the previous snapshot whole. It holds access
//! control, the rate limits' settings (their buckets and bans live in the pipeline, across
//! reloads), the default blocking stage (lists, answer settings, bypass signals), the
//! client groups with theirs, and the checks of upstream answers (response IPs, rebinding
//! protection), and the local records: all reload the same way.

use std::sync::Arc;
use std::time::SystemTime;

use crate::blocklist::load::{BlocklistError, ListReport};
use crate::config::Config;
use crate::counters::ListStat;

use super::access::Access;
use super::answer_check::AnswerCheck;
use super::blocking::Blocking;
use super::groups::Groups;
use super::limits::Limits;
use super::local::{LocalRecords, LocalReport};
use super::local_time::LocalTime;
use crate::neighbours::{MacLookup, NeighbourTable};

/// The decision-making part of the config, built and swapped whole.
#[derive(Debug)]
pub struct Policy {
    /// Who may ask.
    pub access: Access,
    /// How fast a client may ask (`[limits]`).
    pub limits: Limits,
    /// Block and allow lists and how blocked names are answered: the default policy.
    pub blocking: Blocking,
    /// Client groups, each with its own blocking stage.
    pub groups: Groups,
    /// What upstream answers are checked for (response IPs, rebinding, CNAME targets).
    pub checks: AnswerCheck,
    /// Local records and the private reverse zones.
    pub local: LocalRecords,
    /// What each list held when this snapshot was built (for the counters).
    pub lists: Vec<ListStat>,
}

impl Policy {
    /// Counts the blocks of every blocking stage (default and groups) by list in
    /// `counters`; the pipeline calls it when it installs the snapshot.
    pub fn count_blocks(&mut self, counters: &Arc<crate::counters::Counters>) {
        self.blocking.count_blocks(counters);
        self.groups.count_blocks(counters);
    }

    /// A snapshot of `access` around an already built blocking stage, without rate limits
    /// (set `limits` for them) or groups; `reports` are its lists' load reports (empty for a
    /// stage built in a test). Upstream answers are checked only for their bailiwick and
    /// CNAME chain (see [`Policy::with_checks`]).
    pub fn new(access: Access, blocking: Blocking, reports: &[ListReport]) -> Self {
        let loaded = SystemTime::now();
        Self {
            access,
            limits: Limits::default(),
            blocking,
            groups: Groups::default(),
            checks: AnswerCheck::default(),
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
        let (p, reports, local_report) = Self::load_with(cfg, || NeighbourTable::shared())?;
        local_report.log();
        Ok((p, reports))
    }

    /// [`Policy::load`] with MAC addresses looked up in `macs` (asked only when a group
    /// names a MAC address), and the local records' report returned instead of logged.
    pub fn load_with(
        cfg: &Config,
        macs: impl FnOnce() -> Arc<dyn MacLookup>,
    ) -> Result<(Self, Vec<ListReport>, LocalReport), BlocklistError> {
        let (local, local_report) = LocalRecords::load(cfg)?;
        let clock = Arc::new(LocalTime::new(cfg.server.timezone.as_deref()));
        let (blocking, mut reports) = Blocking::load(&cfg.blocking, &clock)?;
        let (groups, group_reports) = Groups::load(
            &cfg.groups,
            &blocking,
            &cfg.blocking.cache_dir,
            &clock,
            macs,
        )?;
        reports.extend(group_reports);
        let mut p = Self::new(Access::new(&cfg.access), blocking, &reports)
            .with_checks(AnswerCheck::new(cfg));
        p.groups = groups;
        p.limits = Limits::new(&cfg.limits);
        p.local = local;
        Ok((p, reports, local_report))
    }

    /// This snapshot with the answer checks `checks`.
    pub fn with_checks(self, checks: AnswerCheck) -> Self {
        Self { checks, ..self }
    }
}
