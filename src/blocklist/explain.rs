//! Why a name is blocked, allowed or neither: the rule that decides (what
//! [`Blocklist::find`] returns) and every other rule of the lists that matches the name, each
//! with its `file:line`. `sinkhole lists check` prints it; the HTTP API's check returns the
//! same data. The frozen [`Blocklist`] keeps only the rule that decides each name, so the
//! lists' text is read again here to find the others.

use std::fmt;
use std::path::Path;

use super::Blocklist;
use super::load::{BlocklistError, ListSource, read_source};
use super::parse::Kind;
use super::tools::{SourcedRule, for_each_rule, matcher};

/// What the lists decide for a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A block rule decides.
    Blocked,
    /// An allow rule decides.
    Allowed,
    /// No rule matches.
    NotBlocked,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Blocked => "blocked",
            Self::Allowed => "allowed",
            Self::NotBlocked => "not blocked",
        })
    }
}

/// The rule that decides a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Block or allow.
    pub kind: Kind,
    /// The rule as written in its list when it was found there, else as stored (its domain,
    /// or the glob / regex text).
    pub text: String,
    /// The list, as shown.
    pub source: String,
    /// 1-based line in that list.
    pub line: u32,
}

/// One name, the rule that decides it and the other rules that match it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The name, normalised.
    pub name: String,
    /// The deciding rule; `None` when no rule matches.
    pub decision: Option<Decision>,
    /// Every other rule that matches the name, in list order; the rules of the deciding line
    /// (a hosts line may hold several names) are left out.
    pub also: Vec<SourcedRule>,
}

impl Explanation {
    /// Blocked, allowed, or not blocked.
    pub fn verdict(&self) -> Verdict {
        match &self.decision {
            Some(d) if d.kind == Kind::Block => Verdict::Blocked,
            Some(_) => Verdict::Allowed,
            None => Verdict::NotBlocked,
        }
    }
}

/// Explains each of `names` (normalised) against `list`, built from `sources`: the rule that
/// decides, from `list`, and every rule that matches, from the sources' text, read once for
/// all names (URL lists from their copy in `cache_dir`; one not downloaded yet is skipped).
/// Fails when a source cannot be read.
pub fn explain(
    list: &Blocklist,
    sources: &[ListSource],
    cache_dir: &Path,
    names: &[String],
) -> Result<Vec<Explanation>, BlocklistError> {
    let mut matched: Vec<Vec<SourcedRule>> = vec![Vec::new(); names.len()];
    for src in sources {
        let Some(text) = read_source(src, cache_dir)? else {
            continue;
        };
        let on_rule = |r: SourcedRule| {
            let matches = matcher(&r);
            for (i, name) in names.iter().enumerate() {
                if matches(name) {
                    matched[i].push(r.clone());
                }
            }
        };
        for_each_rule(&src.display, &text, src.kind, src.exact, on_rule, |_| {});
    }
    let explanations = names
        .iter()
        .zip(matched)
        .map(|(name, rules)| {
            let found = list.find(name.as_bytes());
            let decides =
                |r: &SourcedRule| found.is_some_and(|m| r.source == m.source && r.line == m.line);
            let decision = found.map(|m| Decision {
                kind: m.kind,
                text: rules
                    .iter()
                    .find(|r| decides(r))
                    .map_or(m.rule, |r| r.text.as_str())
                    .to_string(),
                source: m.source.to_string(),
                line: m.line,
            });
            let also = rules.iter().filter(|r| !decides(r)).cloned().collect();
            Explanation {
                name: name.clone(),
                decision,
                also,
            }
        })
        .collect();
    Ok(explanations)
}

/// A client group as `check` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupScope {
    /// The group's name.
    pub name: String,
    /// Whether the default lists apply too (`inherit`).
    pub inherit: bool,
}

/// A list left out of a check because its schedule is not active now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OffSchedule {
    /// The list, as configured.
    pub list: String,
    /// Its schedule, as written.
    pub schedule: String,
}

/// What `sinkhole lists check` and the HTTP API's `check` answer: for the client asked
/// about (if any) its group, the lists outside their schedule now, and each name explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The client, and its group (`None`: in no group, the default policy).
    pub client: Option<(std::net::IpAddr, Option<GroupScope>)>,
    /// Lists not applied because their schedule is not active now.
    pub off_schedule: Vec<OffSchedule>,
    /// Each name, in the order asked.
    pub names: Vec<Explanation>,
}

/// Why a check could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A name that is not a domain name (a usage error, 400 in the API).
    #[error("{name:?} is not a valid name: {reason}")]
    Name {
        /// The name as given.
        name: String,
        /// Why it is not valid.
        reason: String,
    },
    /// A list could not be read.
    #[error(transparent)]
    Lists(#[from] BlocklistError),
}

/// Checks `names` as the server would answer them at `now` for `client` (its group's lists
/// when it is in one; `mac` gives its MAC address, asked only when a group names MAC
/// addresses), or for the default policy: the lists of `cfg` are read again from their
/// files, and each name explained ([`explain`]). `sinkhole lists check` and the HTTP
/// API's `check` both call this.
pub fn check(
    cfg: &crate::config::Config,
    client: Option<std::net::IpAddr>,
    names: &[String],
    now: std::time::SystemTime,
    mac: impl FnOnce() -> Option<crate::config::groups::MacAddr>,
) -> Result<Check, CheckError> {
    let queries = names
        .iter()
        .map(|n| {
            super::domain::normalize(n).map_err(|e| CheckError::Name {
                name: n.clone(),
                reason: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let b = &cfg.blocking;
    let minute = crate::pipeline::local_time::LocalTime::new(cfg.server.timezone.as_deref())
        .week_minute(now);
    let mut sources: Vec<&ListSource> = b.lists.iter().collect();
    let client = client.map(|ip| {
        // Read once, and only when a group names a MAC address.
        let (mut read, mut known) = (Some(mac), None);
        let group = cfg.groups.iter().find(|g| {
            crate::pipeline::groups::Members::new(g).contain(
                ip,
                || minute,
                || *known.get_or_insert_with(|| read.take().and_then(|f| f())),
            )
        });
        let scope = group.map(|g| {
            sources = g.lists.iter().collect();
            if g.inherit {
                sources.extend(&b.lists);
            }
            GroupScope {
                name: g.name.clone(),
                inherit: g.inherit,
            }
        });
        (ip, scope)
    });
    let mut off_schedule = Vec::new();
    sources.retain(|s| match &s.schedule {
        Some(sch) if !sch.active(minute) => {
            off_schedule.push(OffSchedule {
                list: s.display.clone(),
                schedule: sch.to_string(),
            });
            false
        }
        _ => true,
    });
    let sources: Vec<ListSource> = sources.into_iter().cloned().collect();
    let (list, _) = super::load::load_all_with(&sources, &b.cache_dir, false)?;
    let names = explain(&list, &sources, &b.cache_dir, &queries)?;
    Ok(Check {
        client,
        off_schedule,
        names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::load::load_all_with;

    #[test]
    fn explains_the_deciding_rule_and_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let block = dir.path().join("block.txt");
        let allow = dir.path().join("allow.txt");
        std::fs::write(
            &block,
            "# ads\n||example.com^\n0.0.0.0 ads.example.com x.test\n",
        )
        .unwrap();
        std::fs::write(&allow, "ok.example.com\n").unwrap();
        let sources = [
            ListSource::file("block.txt", &block, Kind::Block),
            ListSource::file("allow.txt", &allow, Kind::Allow),
        ];
        let (list, _) = load_all_with(&sources, dir.path(), false).unwrap();
        let names: Vec<String> = ["ads.example.com", "ok.example.com", "other.org"]
            .map(String::from)
            .to_vec();
        let got = explain(&list, &sources, dir.path(), &names).unwrap();

        assert_eq!(got[0].verdict(), Verdict::Blocked);
        let d = got[0].decision.as_ref().unwrap();
        assert_eq!((d.source.as_str(), d.line), ("block.txt", 3));
        assert_eq!(d.text, "0.0.0.0 ads.example.com x.test");
        let also: Vec<_> = got[0].also.iter().map(|r| (r.line, r.kind)).collect();
        assert_eq!(also, vec![(2, Kind::Block)]);

        assert_eq!(got[1].verdict(), Verdict::Allowed);
        assert_eq!(got[1].decision.as_ref().unwrap().source, "allow.txt");
        assert_eq!(got[1].also.len(), 1, "{:?}", got[1].also);

        assert_eq!(got[2].verdict(), Verdict::NotBlocked);
        assert!(got[2].decision.is_none() && got[2].also.is_empty());
    }
}
