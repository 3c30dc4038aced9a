//! Building [`LocalRecords`] from `[local]`: the records of the config and of the hosts
//! files are gathered per name, each name's answers are written ahead of time, one per
//! query type (with a `cname` followed through the local names), and every local address
//! gets its reverse name's PTR unless that name has records of its own. The query path
//! then only looks up a name and copies bytes.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::hosts::{self, SkippedLine};
use super::reverse::{private_zones, reverse_name};
use super::{Fast, LocalRecords, MAX_TAILS, Node, Prepared};
use crate::blocklist::load::{BlocklistError, read_file};
use crate::config::local::{LocalConfig, hints};
use crate::config::{Config, ForwardConfig};
use crate::dns::wire::{LocalSoa, TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_PTR, TYPE_TXT, rcode};

/// Longest `cname` chain followed (dnsmasq and unbound stop around here too).
const MAX_CHAIN: usize = 8;

/// The types a name's data can have, besides CNAME.
const DATA_TYPES: [u16; 4] = [TYPE_A, TYPE_AAAA, TYPE_TXT, TYPE_PTR];

/// What one hosts file gave.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// The file as configured.
    pub display: String,
    /// Usable lines.
    pub lines: usize,
    /// Skipped lines in all.
    pub skipped: usize,
    /// The first skipped lines.
    pub errors: Vec<SkippedLine>,
}

/// What building the local records found, for the log and `config check`.
#[derive(Debug, Clone, Default)]
pub struct LocalReport {
    /// Names answered locally (records, hosts lines, automatic PTRs; wildcards count once).
    pub names: usize,
    /// One report per hosts file.
    pub files: Vec<FileReport>,
    /// Hints for the admin (router upstream, names under forward rules, dangling aliases).
    pub warnings: Vec<String>,
}

impl LocalReport {
    /// Logs the report: a WARN per skipped line and per hint, an INFO with the count.
    pub fn log(&self) {
        for f in &self.files {
            for e in &f.errors {
                tracing::warn!("{}:{e}", f.display);
            }
            if f.skipped > f.errors.len() {
                tracing::warn!(file = %f.display, "{} more lines skipped", f.skipped - f.errors.len());
            }
        }
        for w in &self.warnings {
            tracing::warn!("{w}");
        }
        if self.names > 0 {
            tracing::info!(
                names = self.names,
                files = self.files.len(),
                "local records loaded"
            );
        }
    }
}

/// One name's data while gathering.
#[derive(Debug, Default)]
struct Data {
    addrs: Vec<IpAddr>,
    txt: Vec<String>,
    cname: Option<String>,
    ptr: Vec<String>,
    ttl: u32,
    source: Arc<str>,
    line: u32,
}

/// One record of a prepared answer: owner (`None`: the question name), type, TTL, data,
/// and its text for the query log.
struct Rec {
    owner: Option<String>,
    rtype: u16,
    ttl: u32,
    rdata: Vec<u8>,
    text: String,
}

/// Every name's data: exact names in the order they came (for the automatic PTRs), and
/// wildcards by the name below which they answer.
#[derive(Default)]
struct Gather {
    exact: HashMap<String, Data>,
    order: Vec<String>,
    wild: HashMap<String, Data>,
}

impl Gather {
    fn entry(&mut self, name: &str, ttl: u32, source: &Arc<str>, line: u32) -> &mut Data {
        let new = || Data {
            ttl,
            source: Arc::clone(source),
            line,
            ..Data::default()
        };
        match name.strip_prefix("*.") {
            Some(suffix) => self.wild.entry(suffix.to_string()).or_insert_with(new),
            None => {
                if !self.exact.contains_key(name) {
                    self.order.push(name.to_string());
                }
                self.exact.entry(name.to_string()).or_insert_with(new)
            }
        }
    }

    fn get(&self, name: &str) -> Option<&Data> {
        if name.starts_with("*.") {
            return self.wild.get(name.get(2..).unwrap_or_default());
        }
        self.exact.get(name)
    }

    /// The data that answers `name`: its own, else the most specific wildcard above it.
    fn lookup(&self, name: &str) -> Option<&Data> {
        self.exact
            .get(name)
            .or_else(|| crate::blocklist::domain::parents(name).find_map(|p| self.wild.get(p)))
    }
}

/// `name` in wire form (normalised names: no escapes; at most 253 characters).
fn wire(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(u8::try_from(label.len()).unwrap_or(63));
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// TXT data: the text as character-strings of at most 255 bytes.
fn txt_rdata(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    if s.is_empty() {
        out.push(0);
    }
    for chunk in s.as_bytes().chunks(255) {
        out.push(u8::try_from(chunk.len()).unwrap_or(255));
        out.extend_from_slice(chunk);
    }
    out
}

/// `d`'s own records of type `rtype` (none for CNAME: chains are made by [`chain`]).
fn records(d: &Data, rtype: u16, owner: Option<&str>) -> Vec<Rec> {
    let rec = |rdata: Vec<u8>, text: String| Rec {
        owner: owner.map(str::to_string),
        rtype,
        ttl: d.ttl,
        rdata,
        text,
    };
    match rtype {
        TYPE_A | TYPE_AAAA => d
            .addrs
            .iter()
            .filter_map(|ip| match (rtype, ip) {
                (TYPE_A, IpAddr::V4(v4)) => Some(rec(v4.octets().to_vec(), ip.to_string())),
                (TYPE_AAAA, IpAddr::V6(v6)) => Some(rec(v6.octets().to_vec(), ip.to_string())),
                _ => None,
            })
            .collect(),
        TYPE_TXT => d.txt.iter().map(|t| rec(txt_rdata(t), t.clone())).collect(),
        TYPE_PTR => d.ptr.iter().map(|p| rec(wire(p), p.clone())).collect(),
        _ => Vec::new(),
    }
}

/// The answer for type `rtype` at a name whose data `d` is an alias: its CNAME, then the
/// target's CNAMEs and records for as long as the targets are local. Returns the records
/// and whether the last target was not local (or the chain too long).
fn chain(g: &Gather, d: &Data, rtype: u16) -> (Vec<Rec>, bool) {
    let mut out = Vec::new();
    let (mut owner, mut data) = (None::<String>, d);
    for _ in 0..MAX_CHAIN {
        let Some(target) = &data.cname else {
            out.extend(records(data, rtype, owner.as_deref()));
            return (out, false);
        };
        out.push(Rec {
            owner: owner.clone(),
            rtype: TYPE_CNAME,
            ttl: data.ttl,
            rdata: wire(target),
            text: target.clone(),
        });
        if rtype == TYPE_CNAME {
            return (out, false);
        }
        match g.lookup(target) {
            Some(next) => (owner, data) = (Some(target.clone()), next),
            None => return (out, true),
        }
    }
    (out, true)
}

/// Writes `recs` as an answer; `soa`: a negative answer's SOA.
fn prepare(recs: Vec<Rec>, soa: Option<LocalSoa>, rule: &str, d: &Data) -> Arc<Prepared> {
    let mut answer = Vec::new();
    let mut texts = Vec::with_capacity(recs.len());
    let mut count = 0u16;
    for r in recs {
        let Ok(len) = u16::try_from(r.rdata.len()) else {
            continue;
        };
        match &r.owner {
            None => answer.extend_from_slice(&[0xC0, 0x0C]),
            Some(o) => answer.extend_from_slice(&wire(o)),
        }
        answer.extend_from_slice(&r.rtype.to_be_bytes());
        answer.extend_from_slice(&1u16.to_be_bytes());
        answer.extend_from_slice(&r.ttl.to_be_bytes());
        answer.extend_from_slice(&len.to_be_bytes());
        answer.extend_from_slice(&r.rdata);
        texts.push(r.text.into_boxed_str());
        count = count.saturating_add(1);
    }
    Arc::new(Prepared {
        rcode: rcode::NOERROR,
        count,
        answer: answer.into_boxed_slice(),
        soa,
        rule: rule.into(),
        source: Arc::clone(&d.source),
        line: d.line,
        texts: texts.into_boxed_slice(),
    })
}

/// Every answer of one name (`rule`: as the log shows it, `*.x` for a wildcard).
fn node(g: &Gather, rule: &str, d: &Data, warnings: &mut Vec<String>) -> Node {
    let mut by_type = Vec::new();
    let other = if d.cname.is_some() {
        for t in std::iter::once(TYPE_CNAME).chain(DATA_TYPES) {
            let (recs, dangling) = chain(g, d, t);
            if dangling && t == TYPE_A {
                let target = d.cname.as_deref().unwrap_or_default();
                warnings.push(format!(
                    "{}:{}: cname {target:?} of {rule:?} is not a local name (or the chain is longer than {MAX_CHAIN} or loops): clients get the CNAME alone and must look the target up themselves",
                    d.source, d.line
                ));
            }
            by_type.push((t, prepare(recs, None, rule, d)));
        }
        prepare(chain(g, d, 0).0, None, rule, d)
    } else {
        for t in DATA_TYPES {
            let recs = records(d, t, None);
            if !recs.is_empty() {
                by_type.push((t, prepare(recs, None, rule, d)));
            }
        }
        let soa = LocalSoa {
            labels: 0,
            ttl: d.ttl,
        };
        prepare(Vec::new(), Some(soa), rule, d)
    };
    Node {
        by_type: by_type.into_boxed_slice(),
        other,
    }
}

impl LocalRecords {
    /// Builds the local records of `cfg` (`[local]`, with `[[forward]]` for the private
    /// reverse zones a rule takes over), reading every `local.files` file. Fails only when
    /// a file cannot be read at all; bad lines are skipped and reported.
    pub fn load(cfg: &Config) -> Result<(Self, LocalReport), BlocklistError> {
        let mut texts = Vec::with_capacity(cfg.local.files.len());
        for f in &cfg.local.files {
            texts.push((f.display.clone(), read_file(&f.display, &f.path)?));
        }
        let (me, mut report) = Self::build(&cfg.local, &cfg.file, &texts, &cfg.forward);
        report.warnings.splice(0..0, hints(cfg));
        Ok((me, report))
    }

    /// Builds from `[local]` (read from `file`), the hosts files' `(name, text)` and the
    /// forward rules.
    pub fn build(
        local: &LocalConfig,
        file: &str,
        hosts_files: &[(String, String)],
        forward: &[ForwardConfig],
    ) -> (Self, LocalReport) {
        let mut g = Gather::default();
        let mut report = LocalReport::default();
        let config_source: Arc<str> = file.into();
        for r in &local.records {
            let line = u32::try_from(r.line).unwrap_or(u32::MAX);
            let d = g.entry(&r.name, r.ttl, &config_source, line);
            d.addrs.extend(r.a.iter().map(|ip| IpAddr::V4(*ip)));
            d.addrs.extend(r.aaaa.iter().map(|ip| IpAddr::V6(*ip)));
            d.txt.clone_from(&r.txt);
            d.cname.clone_from(&r.cname);
            d.ptr.extend(r.ptr.iter().cloned());
        }
        for (display, text) in hosts_files {
            let (lines, mut errors, mut skipped) = hosts::parse(text);
            let source: Arc<str> = display.as_str().into();
            let mut used = 0;
            for l in lines {
                if let Some(n) = l
                    .names
                    .iter()
                    .find(|n| g.get(n).is_some_and(|d| d.cname.is_some()))
                {
                    skipped += 1;
                    if errors.len() < hosts::REPORTED {
                        errors.push(SkippedLine {
                            line: l.line,
                            text: format!("{} {}", l.addr, l.names.join(" ")),
                            reason: format!("{n:?} is an alias (cname) in [[local.records]]"),
                        });
                    }
                    continue;
                }
                used += 1;
                for n in &l.names {
                    let d = g.entry(n, local.ttl, &source, l.line);
                    if !d.addrs.contains(&l.addr) {
                        d.addrs.push(l.addr);
                    }
                }
            }
            report.files.push(FileReport {
                display: display.clone(),
                lines: used,
                skipped,
                errors,
            });
        }
        // Automatic PTRs: the first name with an address answers its reverse name, unless
        // that name has data of its own.
        let mut auto: Vec<(String, Data)> = Vec::new();
        let mut taken: HashSet<String> = HashSet::new();
        for name in &g.order {
            let Some(d) = g.exact.get(name) else { continue };
            for ip in &d.addrs {
                let rev = reverse_name(*ip);
                if g.exact.contains_key(&rev) || !taken.insert(rev.clone()) {
                    continue;
                }
                let data = Data {
                    ptr: vec![name.clone()],
                    ttl: d.ttl,
                    source: Arc::clone(&d.source),
                    line: d.line,
                    ..Data::default()
                };
                auto.push((rev, data));
            }
        }
        for (rev, d) in auto {
            g.order.push(rev.clone());
            g.exact.insert(rev, d);
        }
        let mut names = HashMap::with_capacity_and_hasher(g.exact.len(), Fast::default());
        for (name, d) in &g.exact {
            let n = node(&g, name, d, &mut report.warnings);
            names.insert(name.as_bytes().into(), n);
        }
        let mut wildcards = HashMap::with_capacity_and_hasher(g.wild.len(), Fast::default());
        for (suffix, d) in &g.wild {
            let n = node(&g, &format!("*.{suffix}"), d, &mut report.warnings);
            wildcards.insert(suffix.as_bytes().into(), n);
        }
        report.names = names.len() + wildcards.len();
        let builtin: Arc<str> = "".into();
        let private = private_zones()
            .map(|zone| {
                let labels = zone.split('.').count();
                let p = Prepared {
                    rcode: rcode::NXDOMAIN,
                    count: 0,
                    answer: Box::default(),
                    soa: Some(LocalSoa {
                        labels,
                        ttl: local.ttl,
                    }),
                    rule: zone.as_str().into(),
                    source: Arc::clone(&builtin),
                    line: 0,
                    texts: Box::default(),
                };
                (zone.into_bytes().into_boxed_slice(), Arc::new(p))
            })
            .collect();
        let forwarded = forward
            .iter()
            .flat_map(|f| &f.domains)
            .filter(|d| d.ends_with("arpa"))
            .map(|d| d.as_bytes().into())
            .collect();
        let mut tails: Vec<Box<[u8]>> = Vec::new();
        for name in g.exact.keys().chain(g.wild.keys()) {
            let last = name.rsplit('.').next().unwrap_or(name);
            if !tails.iter().any(|t| **t == *last.as_bytes()) {
                tails.push(last.as_bytes().into());
            }
        }
        let me = Self {
            has_names: !names.is_empty() || !wildcards.is_empty(),
            tails: (tails.len() <= MAX_TAILS).then(|| tails.into_boxed_slice()),
            names,
            wildcards,
            private,
            forwarded,
        };
        (me, report)
    }
}
