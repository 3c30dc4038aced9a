//! `Blocking`: the policy stage. Decides whether a name is blocked (the most specific rule
//! of the block and allow lists wins; allow wins at equal specificity) and what a blocked
//! answer says, according to `blocking.mode`; answers the resolver-bypass signals first.
//!
//! The lists of one scope (the default policy, or a client group) are layers: the lists
//! that always apply, merged into one [`Blocklist`], and one layer per list with a
//! `schedule`. With one layer (no schedules) a lookup is the list's own; with several, the
//! most specific rule of the active layers wins, an allow at equal specificity, so that a
//! group's lists behave as if they were written into the default lists.
//!
//! A `Blocking` is immutable; a reload builds a new one inside a new policy snapshot.

use std::borrow::Cow;
use std::net::IpAddr;
use std::path::{Component, Path};
use std::sync::Arc;

use super::flow::{Answer, Local, Reply};
use super::local_time::LocalTime;
use super::request::{Now, Request};
use super::{Action, RuleRef};
use crate::blocklist::load::BlocklistError;
use crate::blocklist::load::{ListReport, ListSource, load_all_with};
use crate::blocklist::{Blocklist, Kind, Match};
use crate::config::schedule::Schedule;
use crate::config::{BlockMode, BlockingConfig, GroupConfig};
use crate::counters::Counters;
use crate::dns::wire::{EDE_BLOCKED, Query, TYPE_A, TYPE_AAAA, rcode};

/// The blocking stage: the rule set plus the answer policy.
#[derive(Debug, Clone)]
pub struct Blocking {
    /// `layers[0]`: the lists that always apply (maybe empty); then one per scheduled list.
    layers: Vec<Layer>,
    /// Local time for the scheduled layers.
    clock: Arc<LocalTime>,
    mode: BlockMode,
    v4: IpAddr,
    v6: IpAddr,
    ttl: u32,
    bypass_signals: bool,
    /// Where blocks are counted by list; set when the policy is installed
    /// ([`Self::count_blocks`]).
    counters: Option<Arc<Counters>>,
}

/// Lists that apply together: always, or in the windows of a schedule.
#[derive(Debug, Clone)]
struct Layer {
    list: Arc<Blocklist>,
    schedule: Option<Arc<Schedule>>,
    /// The blocked-by-list counter slot of each of `list`'s sources (by `source_id`);
    /// empty until [`Blocking::count_blocks`].
    slots: Box<[u16]>,
}

/// What the blocking stage decided.
#[derive(Debug)]
pub enum Verdict {
    /// Blocked: the answer to send.
    Blocked(Answer),
    /// Not blocked: where the log looks up the allow rule that let the name through, if
    /// any (details only).
    Pass(Option<RuleRef>),
}

/// The resolver-bypass signals answered locally when `blocking.bypass_signals` is on, with
/// their answer: the name (matched exactly) and whether it is NXDOMAIN (else NODATA).
///
/// - `use-application-dns.net`: Firefox's canary; NXDOMAIN turns its own DoH off (a
///   0.0.0.0 answer would leave it on).
/// - `mask.icloud.com`, `mask-h2.icloud.com`: iCloud Private Relay; NXDOMAIN makes Apple
///   devices fall back to the network's resolver.
/// - `_dns.resolver.arpa`: Discovery of Designated Resolvers (RFC 9462); NODATA, so that
///   clients are not upgraded to an encrypted resolver of their own choosing.
pub const BYPASS_SIGNALS: &[(&str, bool)] = &[
    ("use-application-dns.net", true),
    ("mask.icloud.com", true),
    ("mask-h2.icloud.com", true),
    ("_dns.resolver.arpa", false),
];

impl Blocking {
    /// Builds the stage around an already loaded list (one layer, no schedule).
    pub fn new(cfg: &BlockingConfig, list: Blocklist) -> Self {
        Self {
            layers: vec![Layer {
                list: Arc::new(list),
                schedule: None,
                slots: Box::default(),
            }],
            clock: Arc::new(LocalTime::new(Some("UTC"))),
            mode: cfg.mode,
            v4: IpAddr::V4(cfg.sinkhole_ipv4),
            v6: IpAddr::V6(cfg.sinkhole_ipv6),
            ttl: cfg.ttl,
            bypass_signals: cfg.bypass_signals,
            counters: None,
        }
    }

    /// Counts the queries this stage blocks by list in `counters` from now on: each list
    /// gets its slot once, here, so that a block costs one add on the query path.
    pub fn count_blocks(&mut self, counters: &Arc<Counters>) {
        for l in &mut self.layers {
            l.slots = l
                .list
                .sources()
                .iter()
                .map(|s| counters.list_slot(s))
                .collect();
        }
        self.counters = Some(Arc::clone(counters));
    }

    /// The stage: a bypass signal, then the lists. A blocked name is answered as
    /// `blocking.mode` says, with the rule and list in the EDE text (EDNS clients only);
    /// anything else goes on. `details`: name the deciding rule for the query log.
    pub fn check(&self, req: &Request<'_>, details: bool) -> Verdict {
        let q = &req.query;
        // Bypass signals first: they are answers the network must give (Firefox's canary,
        // Private Relay, DDR), whatever the lists say.
        if let v @ Verdict::Blocked(_) = self.signals(req, details) {
            return v;
        }
        match self.find_layer(q.name(), &req.now) {
            Some((m, layer)) if m.kind == Kind::Block => {
                if let (Some(c), Some(&slot)) =
                    (&self.counters, layer.slots.get(usize::from(m.source_id)))
                {
                    c.blocked_by(slot);
                }
                Verdict::Blocked(Answer {
                    action: Action::Blocked,
                    reply: Reply::Local(self.answer(q, &m)),
                    rule: details.then(|| RuleRef::list(&layer.list, m.at)),
                })
            }
            Some((m, layer)) => Verdict::Pass(details.then(|| RuleRef::list(&layer.list, m.at))),
            // No rule: nothing for the log to name.
            None => Verdict::Pass(None),
        }
    }

    /// The stage while blocking is paused: the bypass signals only (a pause suspends the
    /// lists, not the answers that keep clients on this resolver).
    pub fn signals(&self, req: &Request<'_>, details: bool) -> Verdict {
        match self.bypass(&req.query) {
            Some((rule, local)) => Verdict::Blocked(Answer {
                action: Action::Blocked,
                reply: Reply::Local(local),
                rule: details.then_some(RuleRef::Builtin(rule)),
            }),
            None => Verdict::Pass(None),
        }
    }

    /// The rule deciding `name` (lower case) at `now`, with the list it is in: the most
    /// specific rule of the layers that apply at `now`, an allow at equal specificity.
    pub fn find(&self, name: &[u8], now: &Now) -> Option<(Match<'_>, &Arc<Blocklist>)> {
        self.find_layer(name, now).map(|(m, l)| (m, &l.list))
    }

    /// [`Self::find`], with the layer the rule is in.
    fn find_layer(&self, name: &[u8], now: &Now) -> Option<(Match<'_>, &Layer)> {
        if let [only] = self.layers.as_slice()
            && only.schedule.is_none()
        {
            return only.list.find(name).map(|m| (m, only));
        }
        let minute = self.clock.week_minute(now.wall);
        let mut best: Option<(Match<'_>, &Layer, (usize, bool))> = None;
        for l in &self.layers {
            if l.schedule.as_ref().is_some_and(|s| !s.active(minute)) {
                continue;
            }
            if let Some(m) = l.list.find(name) {
                let r = rank(name, &m);
                if best.as_ref().is_none_or(|b| r > b.2) {
                    best = Some((m, l, r));
                }
            }
        }
        best.map(|(m, l, _)| (m, l))
    }

    /// The bypass signal `q` asks for, if signals are answered: (rule, answer).
    pub fn bypass(&self, q: &Query) -> Option<(&'static str, Local)> {
        if !self.bypass_signals {
            return None;
        }
        let name = q.name();
        let &(rule, nx) = BYPASS_SIGNALS.iter().find(|(n, _)| n.as_bytes() == name)?;
        Some((
            rule,
            Local {
                rcode: if nx { rcode::NXDOMAIN } else { rcode::NOERROR },
                address: None,
                soa_labels: Some(q.label_count()),
                ttl: self.ttl,
                ede: q.edns.map(|_| {
                    (
                        EDE_BLOCKED,
                        Cow::Borrowed("blocked by builtin resolver-bypass signal"),
                    )
                }),
            },
        ))
    }

    /// Loads the configured lists and builds the stage; `clock` is the local time of its
    /// schedules. Fails only when a list cannot be read (bad lines are skipped and
    /// reported).
    pub fn load(
        cfg: &BlockingConfig,
        clock: &Arc<LocalTime>,
    ) -> Result<(Self, Vec<ListReport>), BlocklistError> {
        let (layers, reports) = layers(&cfg.lists, &cfg.cache_dir)?;
        let mut b = Self::new(cfg, Blocklist::default());
        b.layers = layers;
        b.clock = Arc::clone(clock);
        Ok((b, reports))
    }

    /// The stage of client group `g`: its own lists, then (with `inherit`) the layers of
    /// `self`, the default stage; answered in the group's mode.
    pub fn for_group(
        &self,
        g: &GroupConfig,
        cache_dir: &Path,
    ) -> Result<(Self, Vec<ListReport>), BlocklistError> {
        let (mut layers, reports) = layers(&g.lists, cache_dir)?;
        if g.inherit {
            layers.extend(self.layers.iter().cloned());
        }
        let mut b = self.clone();
        b.layers = layers;
        b.mode = g.mode.unwrap_or(self.mode);
        Ok((b, reports))
    }

    /// The lists that always apply, shared (the query log keeps a reference to name the
    /// rule).
    pub fn list(&self) -> &Arc<Blocklist> {
        // `layers` is never empty: every constructor puts the always-on layer first.
        match self.layers.first() {
            Some(l) => &l.list,
            None => empty(),
        }
    }

    /// Name rules in all layers.
    pub fn rules(&self) -> usize {
        self.layers.iter().map(|l| l.list.len()).sum()
    }

    /// The answer for a query blocked by `m`, with the EDE text naming the rule and list
    /// when the query had EDNS.
    pub fn answer(&self, q: &Query, m: &Match<'_>) -> Local {
        // The rule's labels are counted only for a negative answer (a sinkhole A/AAAA
        // answer has no SOA): a scan of the rule saved on most blocked queries.
        let labels = || m.rule.bytes().filter(|&b| b == b'.').count() + 1;
        self.blocked(q, labels, || ede_text(m))
    }

    /// The answer for a query blocked by a rule of `rule_labels()` labels (the SOA of a
    /// negative answer names that many of the question's last labels), as `blocking.mode`
    /// says; `ede` makes the EDE text, only when the query had EDNS (cut to
    /// [`EDE_TEXT_MAX`] bytes).
    pub fn blocked(
        &self,
        q: &Query,
        rule_labels: impl FnOnce() -> usize,
        ede: impl FnOnce() -> String,
    ) -> Local {
        let (rc, address) = match self.mode {
            BlockMode::Sinkhole => (
                rcode::NOERROR,
                match q.qtype {
                    TYPE_A => Some(self.v4),
                    TYPE_AAAA => Some(self.v6),
                    _ => None,
                },
            ),
            BlockMode::NxDomain => (rcode::NXDOMAIN, None),
            BlockMode::NoData => (rcode::NOERROR, None),
            BlockMode::Refused => (rcode::REFUSED, None),
        };
        let negative = address.is_none() && rc != rcode::REFUSED;
        Local {
            rcode: rc,
            address,
            soa_labels: negative.then(|| rule_labels().min(q.label_count())),
            ttl: self.ttl,
            ede: q.edns.map(|_| (EDE_BLOCKED, Cow::Owned(clip_ede(ede())))),
        }
    }
}

/// The layers of `sources`: the unscheduled ones merged into one list first (empty when
/// there are none), then one per scheduled list.
fn layers(
    sources: &[ListSource],
    cache_dir: &Path,
) -> Result<(Vec<Layer>, Vec<ListReport>), BlocklistError> {
    let always: Vec<ListSource> = sources
        .iter()
        .filter(|s| s.schedule.is_none())
        .cloned()
        .collect();
    let (list, mut reports) = load_all_with(&always, cache_dir, false)?;
    let mut layers = vec![Layer {
        list: Arc::new(list),
        schedule: None,
        slots: Box::default(),
    }];
    for s in sources.iter().filter(|s| s.schedule.is_some()) {
        let (list, r) = load_all_with(std::slice::from_ref(s), cache_dir, false)?;
        reports.extend(r);
        layers.push(Layer {
            list: Arc::new(list),
            schedule: s.schedule.clone().map(Arc::new),
            slots: Box::default(),
        });
    }
    Ok((layers, reports))
}

/// How strongly a rule decides `name`, to compare rules of different layers: a name rule
/// by the length of its domain (more specific wins), allow before block at equal length;
/// an allow glob or regex above every name rule and a block one below (as within one list).
fn rank(name: &[u8], m: &Match<'_>) -> (usize, bool) {
    let rule = m.rule.as_bytes();
    let named = name.ends_with(rule)
        && (name.len() == rule.len() || name.get(name.len() - rule.len() - 1) == Some(&b'.'));
    let allow = m.kind == Kind::Allow;
    match (named, allow) {
        (true, _) => (rule.len() + 1, allow),
        (false, true) => (usize::MAX, true),
        (false, false) => (0, false),
    }
}

fn empty() -> &'static Arc<Blocklist> {
    static EMPTY: std::sync::OnceLock<Arc<Blocklist>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Arc::new(Blocklist::default()))
}

/// Longest EDE text sent, in bytes: enough for a rule and a list name, small enough to keep
/// answers compact.
pub const EDE_TEXT_MAX: usize = 200;

/// The EDE text for a blocked answer: the rule and the list it came from, at most
/// [`EDE_TEXT_MAX`] bytes cut at a character boundary. The list is named as
/// [`list_label`] shows it to clients: never a folder outside the config's.
pub fn ede_text(m: &Match<'_>) -> String {
    clip_ede(format!(
        "blocked by {} ({}:{})",
        m.rule,
        list_label(m.source),
        m.line
    ))
}

/// `t` cut to at most [`EDE_TEXT_MAX`] bytes, at a character boundary.
pub fn clip_ede(mut t: String) -> String {
    let mut cut = t.len().min(EDE_TEXT_MAX);
    while !t.is_char_boundary(cut) {
        cut -= 1;
    }
    t.truncate(cut);
    t
}

/// How a list (as written in the config) is named to clients: a path relative to the
/// config folder as written; an absolute path, or one that climbs out with `..`, by its
/// bare file name; a URL without credentials, query or fragment.
pub fn list_label(source: &str) -> Cow<'_, str> {
    if let Some((scheme, rest)) = source.split_once("://") {
        let end = rest.find(['?', '#']).unwrap_or(rest.len());
        let host_end = rest[..end].find('/').unwrap_or(end);
        return match rest[..host_end].rfind('@') {
            Some(at) => Cow::Owned(format!("{scheme}://{}", &rest[at + 1..end])),
            None => Cow::Borrowed(&source[..scheme.len() + 3 + end]),
        };
    }
    let p = Path::new(source);
    let climbs = p.components().any(|c| matches!(c, Component::ParentDir));
    if p.is_absolute() || climbs {
        return Cow::Borrowed(source.rsplit('/').find(|s| !s.is_empty()).unwrap_or(source));
    }
    Cow::Borrowed(source)
}

#[cfg(test)]
mod tests {
    use super::super::request::test_support::{fixed_now, request};
    use super::*;
    use crate::blocklist::BlocklistBuilder;

    /// A stage blocking `ads.test` (and below) and allowing `ok.ads.test`, in `mode`.
    fn stage(mode: BlockMode) -> Blocking {
        let mut cfg = crate::config::Config::embedded_default().blocking;
        cfg.mode = mode;
        let mut b = BlocklistBuilder::new();
        let src = b.add_source("lists/ads.txt");
        b.insert("ads.test", Kind::Block, false, false, src, 3);
        b.insert("ok.ads.test", Kind::Allow, false, false, src, 4);
        Blocking::new(&cfg, b.build())
    }

    fn local(f: Verdict) -> (Local, Option<RuleRef>) {
        match f {
            Verdict::Blocked(Answer {
                action: Action::Blocked,
                reply: Reply::Local(l),
                rule,
            }) => (l, rule),
            other => panic!("expected a blocked answer, got {other:?}"),
        }
    }

    #[test]
    fn a_listed_subdomain_gets_the_sinkhole_address_and_its_rule() {
        let s = stage(BlockMode::Sinkhole);
        let (l, rule) = local(s.check(&request("x.ads.test", TYPE_A, true, fixed_now()), true));
        assert_eq!(l.address, Some(IpAddr::from([0, 0, 0, 0])));
        assert_eq!(l.rcode, rcode::NOERROR);
        assert_eq!(
            l.ede,
            Some((EDE_BLOCKED, "blocked by ads.test (lists/ads.txt:3)".into()))
        );
        let rule = rule.expect("details kept");
        assert_eq!(rule.get("x.ads.test").map(|m| m.rule), Some("ads.test"));
    }

    #[test]
    fn allowed_and_unlisted_names_go_on() {
        let s = stage(BlockMode::Sinkhole);
        for name in ["ok.ads.test", "a.ok.ads.test", "test", "other.test"] {
            let f = s.check(&request(name, TYPE_A, false, fixed_now()), true);
            assert!(matches!(f, Verdict::Pass(_)), "{name}: {f:?}");
        }
    }

    #[test]
    fn nxdomain_mode_answers_with_an_soa_of_the_rule_and_no_text_without_edns() {
        let s = stage(BlockMode::NxDomain);
        let (l, rule) = local(s.check(
            &request("a.b.ads.test", TYPE_AAAA, false, fixed_now()),
            false,
        ));
        assert_eq!(l.rcode, rcode::NXDOMAIN);
        assert_eq!(l.address, None);
        assert_eq!(l.soa_labels, Some(2));
        assert_eq!(l.ede, None);
        assert!(rule.is_none(), "no details asked for");
    }

    #[test]
    fn bypass_signals_come_before_the_lists() {
        let s = stage(BlockMode::Sinkhole);
        let (l, rule) = local(s.check(
            &request("use-application-dns.net", TYPE_A, true, fixed_now()),
            true,
        ));
        assert_eq!(l.rcode, rcode::NXDOMAIN);
        assert!(matches!(
            rule,
            Some(RuleRef::Builtin("use-application-dns.net"))
        ));
        let (l, _) = local(s.check(&request("_dns.resolver.arpa", 64, false, fixed_now()), true));
        assert_eq!(l.rcode, rcode::NOERROR);
    }

    /// A config in a temporary folder with list files `files` (name, text).
    fn config(files: &[(&str, &str)], toml: &str) -> (tempfile::TempDir, crate::config::Config) {
        let dir = tempfile::tempdir().unwrap();
        for (n, t) in files {
            std::fs::write(dir.path().join(n), t).unwrap();
        }
        let cfg = crate::config::Config::parse(toml, "t.toml", Some(dir.path())).unwrap();
        (dir, cfg)
    }

    fn blocked(b: &Blocking, name: &str, now: super::super::request::Now) -> bool {
        matches!(
            b.check(&request(name, TYPE_A, false, now), false),
            Verdict::Blocked(_)
        )
    }

    #[test]
    fn a_groups_lists_add_to_the_defaults_as_if_written_into_them() {
        let (_d, cfg) = config(
            &[
                ("ads.txt", "ads.test\n"),
                ("ok.txt", "ok.ads.test\n"),
                ("social.txt", "social.test\ndeep.ok.ads.test\n"),
            ],
            "[blocking]\nlists = [\"ads.txt\"]\nallow = [\"ok.txt\"]\n\
             [[groups]]\nname = \"kids\"\nclients = [\"10.0.0.0/8\"]\nlists = [\"social.txt\"]\nmode = \"nxdomain\"\n\
             [[groups]]\nname = \"own\"\nclients = [\"10.0.0.0/8\"]\nlists = [\"social.txt\"]\ninherit = false\n",
        );
        let clock = Arc::new(LocalTime::new(Some("UTC")));
        let (default, _) = Blocking::load(&cfg.blocking, &clock).unwrap();
        let (kids, _) = default
            .for_group(&cfg.groups[0], &cfg.blocking.cache_dir)
            .unwrap();
        let (own, _) = default
            .for_group(&cfg.groups[1], &cfg.blocking.cache_dir)
            .unwrap();
        let now = fixed_now();
        for (name, d, k, o) in [
            ("x.ads.test", true, true, false),
            ("social.test", false, true, true),
            ("a.ok.ads.test", false, false, false),
            // The group's rule is more specific than the default allow: it wins.
            ("deep.ok.ads.test", false, true, true),
            ("other.test", false, false, false),
        ] {
            assert_eq!(blocked(&default, name, now), d, "default {name}");
            assert_eq!(blocked(&kids, name, now), k, "kids {name}");
            assert_eq!(blocked(&own, name, now), o, "own {name}");
        }
        let Verdict::Blocked(a) = kids.check(&request("social.test", TYPE_A, false, now), true)
        else {
            panic!("blocked");
        };
        assert!(
            matches!(
                a.reply,
                Reply::Local(Local {
                    rcode: rcode::NXDOMAIN,
                    ..
                })
            ),
            "the group's mode"
        );
        let rule = a.rule.expect("details");
        assert_eq!(
            rule.get("social.test").map(|m| m.source),
            Some("social.txt"),
            "the layer that decided"
        );
    }

    #[test]
    fn a_scheduled_list_blocks_only_in_its_windows() {
        let now = fixed_now();
        let m = LocalTime::new(Some("UTC")).week_minute(now.wall);
        let day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][usize::from(m / 1440)];
        let h = (m % 1440) / 60;
        let window = format!("{day} {h:02}:00-{:02}:00", h + 1);
        let (_d, cfg) = config(
            &[
                ("social.txt", "social.test\n"),
                ("ok.txt", "ok.social.test\n"),
            ],
            &format!(
                "[server]\ntimezone = \"UTC\"\n[blocking]\nallow = [\"ok.txt\"]\n\
                     lists = [{{ source = \"social.txt\", schedule = [\"{window}\"] }}]\n"
            ),
        );
        let clock = Arc::new(LocalTime::new(Some("UTC")));
        let (b, reports) = Blocking::load(&cfg.blocking, &clock).unwrap();
        assert_eq!(reports.len(), 2);
        assert!(blocked(&b, "www.social.test", now), "inside {window}");
        assert!(!blocked(&b, "ok.social.test", now), "the allow still wins");
        assert!(
            !blocked(
                &b,
                "www.social.test",
                now.after(std::time::Duration::from_secs(3600))
            ),
            "outside {window}"
        );
    }

    fn text(rule: &str, source: &str) -> String {
        ede_text(&Match {
            kind: Kind::Block,
            rule,
            source,
            line: 7,
            source_id: 0,
            at: crate::blocklist::RuleAt::Unlisted,
        })
    }

    #[test]
    fn r10_lists_are_named_without_their_folder_or_credentials() {
        // See: #10
        assert_eq!(
            text("ads.test", "ads.txt"),
            "blocked by ads.test (ads.txt:7)"
        );
        assert_eq!(
            text("a.test", "lists/ads.txt"),
            "blocked by a.test (lists/ads.txt:7)"
        );
        assert_eq!(
            text("a.test", "/etc/sinkhole/ads.txt"),
            "blocked by a.test (ads.txt:7)"
        );
        assert_eq!(
            text("a.test", "../../home/me/ads.txt"),
            "blocked by a.test (ads.txt:7)"
        );
        assert_eq!(
            text("a.test", "https://u:pw@lists.example/x/ads.txt?token=1#f"),
            "blocked by a.test (https://lists.example/x/ads.txt:7)"
        );
        assert_eq!(
            text("a.test", "http://lists.example/ads.txt"),
            "blocked by a.test (http://lists.example/ads.txt:7)"
        );
    }

    #[test]
    fn r10_ede_text_is_cut_at_200_bytes_on_a_char_boundary() {
        // See: #10. "blocked by " is 11 bytes; 188 ASCII bytes put the 2-byte "é" at 199-200.
        let rule = format!("{}é{}", "a".repeat(188), "b".repeat(50));
        let t = text(&rule, "ads.txt");
        assert_eq!(t.len(), 199, "{t}");
        assert!(t.ends_with('a'), "{t}");
        let rule = format!("{}é", "a".repeat(187));
        let t = text(&rule, "ads.txt");
        assert_eq!(t.len(), 200, "{t}");
        assert!(t.ends_with('é'), "a character that ends at 200 stays: {t}");
        assert_eq!(text("x.test", "l.txt"), "blocked by x.test (l.txt:7)");
    }
}
