//! `LocalRecords`: the names the network answers itself (split horizon), and the private
//! reverse zones that no public resolver is asked about.
//!
//! The second stage, after access control and before blocking: a local name is answered
//! authoritatively (AA) from `[[local.records]]` and `local.files`, never blocked, cached
//! or forwarded. A local name without records of the asked type answers NODATA (with an
//! SOA), not an upstream's answer; an exact name beats a wildcard (`*.lab.corp`, every
//! name below `lab.corp`), and the most specific wildcard wins. Reverse lookups under a
//! private or special-purpose range (RFC 6303: 10/8, 192.168/16, fd00::/8…) that no local
//! record answers get NXDOMAIN here, unless a `[[forward]]` domain covers them: then the
//! upstream stage sends them to that rule's servers. So the precedence is: local records,
//! then forward rules, then the private-reverse NXDOMAIN, then `[upstream]`.
//!
//! Every answer is written ahead of time when the policy is built (`build.rs`), one per
//! name and query type, CNAME chains through local names included; the query path looks
//! a name up in one hash map (a wildcard walk only when wildcards exist; the private
//! zones only for names ending in `arpa`) and copies the bytes.

mod build;
pub mod hosts;
pub mod reverse;

use std::collections::{HashMap, HashSet};

/// The maps' hasher: foldhash, seeded per process (a few ns for a name, where SipHash
/// takes tens).
type Fast = foldhash::fast::RandomState;
use std::sync::Arc;

pub use build::{FileReport, LocalReport};

use super::Action;
use super::RuleRef;
use super::flow::{Answer, Flow, Reply};
use super::request::Request;
use crate::blocklist::domain::suffixes;
use crate::config::LocalConfig;
use crate::dns::wire::{CLASS_IN, LocalSoa};

/// One answer written ahead of time, shared by every query it answers.
#[derive(Debug)]
pub struct Prepared {
    rcode: u16,
    count: u16,
    answer: Box<[u8]>,
    soa: Option<LocalSoa>,
    rule: Box<str>,
    source: Arc<str>,
    line: u32,
    texts: Box<[Box<str>]>,
}

impl Prepared {
    /// A NOERROR answer of `count` records already in wire form (owners a pointer to the
    /// question name), named `rule` in the log, with the records as `texts`.
    pub(super) fn records(count: u16, answer: Box<[u8]>, rule: &str, texts: Vec<Box<str>>) -> Self {
        Self {
            rcode: 0,
            count,
            answer,
            soa: None,
            rule: rule.into(),
            source: Arc::from(""),
            line: 0,
            texts: texts.into(),
        }
    }

    /// Response code.
    pub fn rcode(&self) -> u16 {
        self.rcode
    }

    /// Number of records in [`Prepared::answer`].
    pub fn count(&self) -> u16 {
        self.count
    }

    /// The answer section in wire form (owners are a pointer to the question name, or
    /// whole names for the targets of a CNAME chain).
    pub fn answer(&self) -> &[u8] {
        &self.answer
    }

    /// The SOA of a negative answer.
    pub fn soa(&self) -> Option<LocalSoa> {
        self.soa
    }

    /// The name that answered (`nas.lan`, `*.lab.corp`, a private zone), for the log.
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// Where it is defined: the config or hosts file ("" for a private zone), and the line.
    pub fn source(&self) -> (&str, u32) {
        (&self.source, self.line)
    }

    /// The answers as text, for the log.
    pub fn texts(&self) -> &[Box<str>] {
        &self.texts
    }
}

/// One name's answers: per query type, and for every other type.
#[derive(Debug)]
struct Node {
    by_type: Box<[(u16, Arc<Prepared>)]>,
    other: Arc<Prepared>,
}

impl Node {
    fn answer(&self, qtype: u16) -> &Arc<Prepared> {
        self.by_type
            .iter()
            .find(|(t, _)| *t == qtype)
            .map_or(&self.other, |(_, p)| p)
    }
}

/// The local-answers stage.
#[derive(Debug)]
pub struct LocalRecords {
    /// Exact names (lower case, dotted, as `Query::name` has them).
    names: HashMap<Box<[u8]>, Node, Fast>,
    /// Wildcards, by the name below which they answer (`lab.corp` for `*.lab.corp`).
    wildcards: HashMap<Box<[u8]>, Node, Fast>,
    /// The private reverse zones and their NXDOMAIN.
    private: HashMap<Box<[u8]>, Arc<Prepared>, Fast>,
    /// `[[forward]]` domains ending in `arpa`: they take over a private zone.
    forwarded: HashSet<Box<[u8]>, Fast>,
    /// True when a name or wildcard is local.
    has_names: bool,
    /// The last labels (`lan`, `corp`, `arpa`) of every local name and wildcard, when there
    /// are at most [`MAX_TAILS`] of them: a name ending otherwise is not looked up (the
    /// common miss, `www.example.com`, costs a few byte compares).
    tails: Option<Box<[Box<[u8]>]>>,
}

/// Most distinct last labels kept in [`LocalRecords`]'s pre-check.
const MAX_TAILS: usize = 8;

impl Default for LocalRecords {
    /// No local names; the private reverse zones answered NXDOMAIN.
    fn default() -> Self {
        Self::build(&LocalConfig::default(), "", &[], &[]).0
    }
}

impl LocalRecords {
    /// The stage: a local name's answer, a private reverse name's NXDOMAIN, or `Next`.
    /// `details`: name the deciding record for the query log.
    pub fn check(&self, req: &Request<'_>, details: bool) -> Flow {
        let q = &req.query;
        let name = q.name();
        // One branch when `[local]` is empty.
        if self.has_names
            && self.may_hold(name)
            && let Some(node) = self.find(name)
            && q.qclass == CLASS_IN
        {
            return answer(node.answer(q.qtype), details);
        }
        if name.ends_with(b"arpa")
            && q.qclass == CLASS_IN
            && let Some(p) = self.private(name)
        {
            return answer(p, details);
        }
        Flow::Next
    }

    /// True when a local record or wildcard answers `name` (lower case, dotted): the DNS
    /// path answers it before the lists are asked (the block page asks this too).
    pub fn answers(&self, name: &[u8]) -> bool {
        self.has_names && self.may_hold(name) && self.find(name).is_some()
    }

    /// False when no local name or wildcard ends in `name`'s last label.
    fn may_hold(&self, name: &[u8]) -> bool {
        let Some(tails) = &self.tails else {
            return true;
        };
        // A short scan from the end: last labels are short.
        let last = name
            .iter()
            .rposition(|&b| b == b'.')
            .map_or(name, |i| name.get(i + 1..).unwrap_or_default());
        tails.iter().any(|t| **t == *last)
    }

    /// The node that answers `name`: its own, else the most specific wildcard above it.
    fn find(&self, name: &[u8]) -> Option<&Node> {
        if let Some(n) = self.names.get(name) {
            return Some(n);
        }
        if self.wildcards.is_empty() {
            return None;
        }
        suffixes(name).skip(1).find_map(|s| self.wildcards.get(s))
    }

    /// The NXDOMAIN for a name under a private reverse zone that no forward rule covers.
    fn private(&self, name: &[u8]) -> Option<&Arc<Prepared>> {
        let mut zone = None;
        for s in suffixes(name) {
            if self.forwarded.contains(s) {
                return None;
            }
            if zone.is_none() {
                zone = self.private.get(s);
            }
        }
        zone
    }

    /// Names answered locally (exact names and wildcards).
    pub fn len(&self) -> usize {
        self.names.len() + self.wildcards.len()
    }

    /// True when no name is answered locally (the private zones still are).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn answer(p: &Arc<Prepared>, details: bool) -> Flow {
    Flow::Answer(Answer {
        action: Action::Local,
        reply: Reply::Prepared(Arc::clone(p)),
        rule: details.then(|| RuleRef::Local(Arc::clone(p))),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests;
