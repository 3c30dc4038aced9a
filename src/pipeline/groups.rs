//! `Groups`: which client group's policy applies to a query. Groups are tried in file order;
//! the first whose clients include the query's source address (or the MAC address that
//! address has in the kernel's neighbour table) and whose schedule is active now decides.
//! A client in no group gets the default policy.
//!
//! A group carries its own blocking stage (its lists, with or without the default ones,
//! and its answer mode); everything else (access, local answers, the cache, upstreams) is
//! shared. With no groups configured, choosing costs one emptiness check per query.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use super::access::NetTable;
use super::blocking::Blocking;
use super::local_time::LocalTime;
use super::request::Now;
use crate::blocklist::load::{BlocklistError, ListReport};
use crate::config::GroupConfig;
use crate::config::groups::MacAddr;
use crate::config::schedule::Schedule;
use crate::neighbours::MacLookup;

/// One client group, ready to decide.
#[derive(Debug)]
pub struct Group {
    /// Its name, as the query log shows it.
    pub name: Arc<str>,
    /// Its place in file order (see [`Groups::get`]).
    pub index: usize,
    members: Members,
    /// Its blocking stage.
    pub blocking: Blocking,
}

/// Who is in a group, and when.
#[derive(Debug, Clone)]
pub struct Members {
    nets: NetTable,
    macs: Vec<MacAddr>,
    schedule: Option<Schedule>,
}

impl Members {
    /// The members of group `g`.
    pub fn new(g: &GroupConfig) -> Self {
        Self {
            nets: NetTable::new(&g.clients.nets),
            macs: g.clients.macs.clone(),
            schedule: g.schedule.clone(),
        }
    }

    /// True when `client` is a member at `minute` of the week: its address is in the
    /// group's networks or its MAC address (asked of `mac` only when needed) is listed,
    /// and the group's schedule is active.
    pub fn contain(
        &self,
        client: IpAddr,
        minute: impl FnOnce() -> u16,
        mac: impl FnOnce() -> Option<MacAddr>,
    ) -> bool {
        if self.schedule.as_ref().is_some_and(|s| !s.active(minute())) {
            return false;
        }
        self.nets.contains(client)
            || (!self.macs.is_empty() && mac().is_some_and(|m| self.macs.contains(&m)))
    }

    /// True when a member may be named by MAC address.
    pub fn by_mac(&self) -> bool {
        !self.macs.is_empty()
    }
}

/// The configured groups, in file order.
#[derive(Debug, Default)]
pub struct Groups {
    groups: Vec<Group>,
    /// Where MAC addresses are looked up; only when a group names one.
    macs: Option<Arc<dyn MacLookup>>,
    clock: Option<Arc<LocalTime>>,
}

impl Groups {
    /// Counts each group's blocks by list in `counters` (see [`Blocking::count_blocks`]).
    pub fn count_blocks(&mut self, counters: &Arc<crate::counters::Counters>) {
        for g in &mut self.groups {
            g.blocking.count_blocks(counters);
        }
    }

    /// Builds the groups of `cfg` around the default stage `default`, reading each group's
    /// lists (from `cache_dir` for URL lists). `macs` is asked for clients' MAC addresses
    /// when a group names one. Fails when a list cannot be read at all.
    pub fn load(
        cfg: &[GroupConfig],
        default: &Blocking,
        cache_dir: &Path,
        clock: &Arc<LocalTime>,
        macs: impl FnOnce() -> Arc<dyn MacLookup>,
    ) -> Result<(Self, Vec<ListReport>), BlocklistError> {
        let mut groups = Vec::with_capacity(cfg.len());
        let mut reports = Vec::new();
        for g in cfg {
            let (blocking, r) = default.for_group(g, cache_dir)?;
            reports.extend(r);
            groups.push(Group {
                name: Arc::from(g.name.as_str()),
                index: groups.len(),
                members: Members::new(g),
                blocking,
            });
        }
        let macs = groups.iter().any(|g| g.members.by_mac()).then(macs);
        Ok((
            Self {
                groups,
                macs,
                clock: Some(Arc::clone(clock)),
            },
            reports,
        ))
    }

    /// The group deciding for `client` at `now`: the first in file order whose clients
    /// include it and whose schedule is active.
    pub fn select(&self, client: IpAddr, now: &Now) -> Option<&Group> {
        if self.groups.is_empty() {
            return None;
        }
        // Read once, and only if a group needs them.
        let mut minute = None;
        let mut mac: Option<Option<MacAddr>> = None;
        self.groups.iter().find(|g| {
            g.members.contain(
                client,
                || {
                    *minute.get_or_insert_with(|| {
                        self.clock.as_ref().map_or(0, |c| c.week_minute(now.wall))
                    })
                },
                || *mac.get_or_insert_with(|| self.macs.as_ref().and_then(|t| t.mac(client))),
            )
        })
    }

    /// The group at `index` in file order.
    pub fn get(&self, index: usize) -> Option<&Group> {
        self.groups.get(index)
    }

    /// The groups, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Group> {
        self.groups.iter()
    }

    /// True when no group is configured.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::test_support::fixed_now;
    use super::*;
    use crate::config::Config;
    use crate::neighbours::FixedTable;
    use std::collections::HashMap;
    use std::time::Duration;

    fn groups(text: &str, table: FixedTable) -> Groups {
        let cfg = Config::parse(
            &format!("[server]\ntimezone = \"UTC\"\n{text}"),
            "t.toml",
            None,
        )
        .unwrap();
        let clock = Arc::new(LocalTime::new(Some("UTC")));
        let (default, _) = Blocking::load(&cfg.blocking, &clock).unwrap();
        let table: Arc<dyn MacLookup> = Arc::new(table);
        Groups::load(
            &cfg.groups,
            &default,
            &cfg.blocking.cache_dir,
            &clock,
            || table,
        )
        .unwrap()
        .0
    }

    fn name(g: Option<&Group>) -> Option<&str> {
        g.map(|g| &*g.name)
    }

    #[test]
    fn the_first_matching_group_in_file_order_decides() {
        let mac: MacAddr = "02:00:00:00:00:07".parse().unwrap();
        let v6: IpAddr = "fd00::1234".parse().unwrap();
        let table = FixedTable(HashMap::from([
            ("192.168.1.50".parse().unwrap(), mac),
            (v6, mac),
        ]));
        let g = groups(
            "[[groups]]\nname = \"lab\"\nclients = [\"10.0.5.0/24\"]\n\
             [[groups]]\nname = \"office\"\nclients = [\"10.0.0.0/16\"]\n\
             [[groups]]\nname = \"laptop\"\nclients = [\"02:00:00:00:00:07\"]\n",
            table,
        );
        let now = fixed_now();
        assert_eq!(
            name(g.select("10.0.5.9".parse().unwrap(), &now)),
            Some("lab")
        );
        assert_eq!(
            name(g.select("10.0.6.9".parse().unwrap(), &now)),
            Some("office")
        );
        assert_eq!(
            name(g.select("192.168.1.50".parse().unwrap(), &now)),
            Some("laptop")
        );
        assert_eq!(
            name(g.select(v6, &now)),
            Some("laptop"),
            "IPv6 address of the same MAC"
        );
        assert_eq!(name(g.select("192.168.1.51".parse().unwrap(), &now)), None);
        assert!(
            Groups::default()
                .select("10.0.5.9".parse().unwrap(), &now)
                .is_none()
        );
    }

    #[test]
    fn a_scheduled_group_applies_only_in_its_windows() {
        // fixed_now() is a known instant; find its minute of the week and put a window
        // around it.
        let now = fixed_now();
        let m = LocalTime::new(Some("UTC")).week_minute(now.wall);
        let day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][usize::from(m / 1440)];
        let (h, mm) = ((m % 1440) / 60, m % 60);
        let end = (h + 1).min(24);
        let window = format!(
            "{day} {h:02}:{mm:02}-{end:02}:{:02}",
            if end == 24 { 0 } else { mm }
        );
        let g = groups(
            &format!(
                "[[groups]]\nname = \"work\"\nclients = [\"10.0.0.0/8\"]\nschedule = [\"{window}\"]\n\
             [[groups]]\nname = \"all\"\nclients = [\"10.0.0.0/8\"]\n"
            ),
            FixedTable::default(),
        );
        let ip = "10.1.2.3".parse().unwrap();
        assert_eq!(name(g.select(ip, &now)), Some("work"), "{window}");
        let later = now.after(Duration::from_secs(2 * 3600));
        assert_eq!(name(g.select(ip, &later)), Some("all"), "outside {window}");
    }
}
