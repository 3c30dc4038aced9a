//! Which log records a `sinkhole log` command shows: [`Filter`] by client address or
//! network, action, name glob and start time, with a cheap prefilter on the raw line so
//! that most lines are never parsed when one client is asked for. Shared by the reader
//! (`read.rs`) and the commands (`tail.rs`, `report.rs`).

use std::net::IpAddr;

use ipnet::IpNet;

use super::Entry;

/// A cheap test on a raw log line (see [`Filter::prefilter`]).
pub(super) type Prefilter = Box<dyn Fn(&[u8]) -> bool>;

/// Which records to show.
#[derive(Debug, Default)]
pub struct Filter {
    /// Client address or network.
    pub client: Option<IpNet>,
    /// `blocked`, `allowed`, …
    pub action: Option<String>,
    /// Glob over the query name (`*.example.com`).
    pub name: Option<globset::GlobMatcher>,
    /// Only records at or after this time (`ts` text, compared as text: same format).
    pub since: Option<String>,
}

impl Filter {
    /// True when `e` passes.
    pub fn matches(&self, e: &Entry<'_>) -> bool {
        if let Some(net) = &self.client {
            match e.client.parse::<IpAddr>() {
                Ok(ip) if net.contains(&ip) => {}
                _ => return false,
            }
        }
        if let Some(a) = &self.action
            && *e.action != **a
        {
            return false;
        }
        if let Some(g) = &self.name
            && !g.is_match(&*e.qname)
        {
            return false;
        }
        if let Some(s) = &self.since
            && *e.ts < **s
        {
            return false;
        }
        true
    }

    /// A cheap test on the raw line: `false` means the record cannot match. Used to skip
    /// parsing most lines when a single client is asked for.
    pub(super) fn prefilter(&self) -> Prefilter {
        match &self.client {
            Some(net) if net.prefix_len() == net.max_prefix_len() => {
                let needle = format!("\"client\":\"{}\"", net.addr()).into_bytes();
                let finder = memchr::memmem::Finder::new(&needle).into_owned();
                Box::new(move |line| finder.find(line).is_some())
            }
            _ => Box::new(|_| true),
        }
    }
}
