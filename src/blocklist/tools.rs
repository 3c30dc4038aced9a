//! The maintenance behind `sinkhole lists`: lists read into owned rules with their
//! `file:line` ([`read_list`], [`for_each_rule`]) and whether a rule matches a name
//! ([`matcher`], used by `explain` for `check`), what is wrong or redundant in a set of files
//! ([`lint`]), and writing a set in another format ([`convert`]). Pure functions over text;
//! the edits of `add` / `remove` are `rewrite`, the CLI prints.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use super::domain::parents;
use super::parse::{Kind, Line, LineError, PatternKind, excerpt, for_each_line};
use super::patterns::PatternSetBuilder;

/// One rule of a set, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcedRule {
    /// Normalised name, or pattern text.
    pub name: String,
    /// Block or allow.
    pub kind: Kind,
    /// Name only.
    pub exact: bool,
    /// Glob or regex.
    pub pattern: Option<PatternKind>,
    /// The list, as shown.
    pub source: String,
    /// 1-based line.
    pub line: u32,
    /// The line as written (trimmed, cut to 80 characters).
    pub text: String,
}

/// The rules and skipped lines of one list.
#[derive(Debug, Default)]
pub struct ReadList {
    /// Rules in file order.
    pub rules: Vec<SourcedRule>,
    /// Every skipped line.
    pub errors: Vec<LineError>,
}

/// Parses list text into owned rules, all skipped lines kept.
pub fn read_list(source: &str, text: &str, kind: Kind, exact_default: bool) -> ReadList {
    let mut out = ReadList::default();
    let (rules, errors) = (&mut out.rules, &mut out.errors);
    for_each_rule(
        source,
        text,
        kind,
        exact_default,
        |r| rules.push(r),
        |e| errors.push(e),
    );
    out
}

/// Parses list text line by line, handing each rule and each skipped line to a callback,
/// so that a caller can filter without holding every rule of a big list.
pub fn for_each_rule(
    source: &str,
    text: &str,
    kind: Kind,
    exact_default: bool,
    mut on_rule: impl FnMut(SourcedRule),
    mut on_error: impl FnMut(LineError),
) {
    for_each_line(text, kind, exact_default, |line, raw, parsed| {
        let rule = |name: String, kind, exact, pattern| SourcedRule {
            name,
            kind,
            exact,
            pattern,
            source: source.to_string(),
            line,
            text: excerpt(raw),
        };
        match parsed {
            Line::Empty | Line::BadFilter { .. } => {}
            Line::Name {
                name, kind, exact, ..
            } => on_rule(rule(name.to_string(), kind, exact, None)),
            Line::Names { names, kind, exact } => {
                for n in names {
                    on_rule(rule(n, kind, exact, None));
                }
            }
            Line::Pattern {
                pattern,
                text,
                kind,
            } => on_rule(rule(text, kind, false, Some(pattern))),
            Line::Skip(reason, detail) => on_error(LineError {
                line,
                text: excerpt(raw),
                reason,
                detail,
            }),
        }
    });
}

/// True when `rule` (a name rule) covers `name`: equal, or (subtree) a parent of it.
pub fn covers(rule: &SourcedRule, name: &str) -> bool {
    rule.name == name || !rule.exact && parents(name).any(|p| p == rule.name)
}

/// A test of whether `rule` matches a name (name rules by suffix, patterns by matching),
/// built once per rule: a pattern is compiled here, not per name tested.
pub fn matcher(rule: &SourcedRule) -> impl Fn(&str) -> bool + '_ {
    let set = rule.pattern.map(|p| {
        let mut b = PatternSetBuilder::default();
        b.add(p, &rule.name, rule.kind, 0, 0);
        b.build()
    });
    move |name| match &set {
        None => covers(rule, name),
        Some(set) => set.find(name, rule.kind, &[]).is_some(),
    }
}

/// A `lint` finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `file:line`.
    pub at: String,
    /// `invalid`, `duplicate`, `redundant` or `cancelled`.
    pub what: &'static str,
    /// The explanation.
    pub msg: String,
}

/// Lints a set of lists: every skipped line (invalid), duplicates, entries made redundant by
/// a parent in the set, and blocks an allow entry cancels. `allows` (the config's
/// allowlists) are not linted themselves; their entries only cancel blocks in `lists`.
pub fn lint<'a>(lists: &'a [(String, ReadList)], allows: &'a [(String, ReadList)]) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut context: HashMap<(&str, Kind, bool), &SourcedRule> = HashMap::new();
    for r in allows.iter().flat_map(|(_, l)| &l.rules) {
        if r.kind == Kind::Allow && r.pattern.is_none() {
            context
                .entry((r.name.as_str(), r.kind, r.exact))
                .or_insert(r);
        }
    }
    let mut first: HashMap<(&str, Kind, bool), &SourcedRule> = HashMap::new();
    for (source, l) in lists {
        for e in &l.errors {
            out.push(Finding {
                at: format!("{source}:{}", e.line),
                what: "invalid",
                msg: format!("{}: {} ({})", e.reason, e.detail, e.text),
            });
        }
        for r in &l.rules {
            if let Some(prev) = first.get(&(r.name.as_str(), r.kind, r.exact)) {
                out.push(Finding {
                    at: format!("{}:{}", r.source, r.line),
                    what: "duplicate",
                    msg: format!("{} is already at {}:{}", r.name, prev.source, prev.line),
                });
            } else {
                first.insert((r.name.as_str(), r.kind, r.exact), r);
            }
        }
    }
    for (_, l) in lists {
        for r in l.rules.iter().filter(|r| r.pattern.is_none()) {
            let parent = ancestor(&first, &r.name);
            if let Some(p) = parent
                && p.kind == r.kind
            {
                out.push(Finding {
                    at: format!("{}:{}", r.source, r.line),
                    what: "redundant",
                    msg: format!(
                        "{} is covered by {} ({}:{})",
                        r.name, p.name, p.source, p.line
                    ),
                });
                continue;
            }
            if r.kind != Kind::Block {
                continue;
            }
            // An allow at the same name: a subtree one, or (for an exact block) an exact one.
            let allow_at = |set: &HashMap<(&str, Kind, bool), &'a SourcedRule>| {
                let get = |exact| set.get(&(r.name.as_str(), Kind::Allow, exact)).copied();
                get(false).or_else(|| if r.exact { get(true) } else { None })
            };
            if let Some(a) = allow_at(&first)
                .or_else(|| parent.filter(|a| a.kind == Kind::Allow))
                .or_else(|| allow_at(&context))
                .or_else(|| ancestor(&context, &r.name))
            {
                out.push(Finding {
                    at: format!("{}:{}", r.source, r.line),
                    what: "cancelled",
                    msg: format!(
                        "block {} is cancelled by allow {} ({}:{})",
                        r.name, a.name, a.source, a.line
                    ),
                });
            }
        }
    }
    out
}

/// The nearest proper parent of `name` with a subtree rule in the set (allow first).
fn ancestor<'a>(
    set: &HashMap<(&str, Kind, bool), &'a SourcedRule>,
    name: &str,
) -> Option<&'a SourcedRule> {
    parents(name).find_map(|p| {
        set.get(&(p, Kind::Allow, false))
            .or_else(|| set.get(&(p, Kind::Block, false)))
            .copied()
    })
}

/// Output formats of `lists convert` (also its `--to` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One name per line (`=name` for exact rules).
    Domains,
    /// `0.0.0.0 name`.
    Hosts,
    /// `||name^`, `@@||name^`, `/regex/`.
    Adblock,
    /// `address=/name/#`.
    Dnsmasq,
    /// `local-zone: "name." always_nxdomain`.
    Unbound,
    /// A Response Policy Zone: `name CNAME .` and `*.name CNAME .`.
    Rpz,
}

/// The combined set written in `format`: deduplicated, children covered by a parent of the
/// same kind dropped, sorted by name. Returns the text and notes on what the format cannot
/// express (printed as warnings).
pub fn convert(rules: &[SourcedRule], format: Format) -> (String, Vec<String>) {
    let mut set: BTreeMap<&str, (Kind, bool)> = BTreeMap::new();
    let mut patterns: Vec<&SourcedRule> = Vec::new();
    for r in rules {
        if r.pattern.is_some() {
            if !patterns
                .iter()
                .any(|p| p.name == r.name && p.kind == r.kind)
            {
                patterns.push(r);
            }
            continue;
        }
        // Allow wins at the same name; subtree wins over exact.
        let e = set.entry(&r.name).or_insert((r.kind, r.exact));
        if r.kind == Kind::Allow && e.0 == Kind::Block {
            *e = (r.kind, r.exact);
        } else if r.kind == e.0 {
            e.1 &= r.exact;
        }
    }
    // Redundant: the nearest parent with a subtree rule has the same kind.
    let redundant = |name: &str, kind: Kind| {
        parents(name)
            .find_map(|p| set.get(p).filter(|(_, exact)| !exact))
            .is_some_and(|(k, _)| *k == kind)
    };
    let mut out = String::new();
    let mut notes = Vec::new();
    let (mut allows_dropped, mut exact_dropped) = (0, 0);
    if format == Format::Rpz {
        out.push_str(
            "$TTL 300\n@ IN SOA localhost. hostmaster.localhost. 1 3600 600 86400 300\n  IN NS localhost.\n",
        );
    }
    for (&name, &(kind, exact)) in &set {
        if redundant(name, kind) {
            continue;
        }
        let allow = kind == Kind::Allow;
        match format {
            Format::Adblock => {
                let at = if allow { "@@" } else { "" };
                if exact {
                    // AdGuard Home's exact form.
                    let _ = writeln!(out, "{at}|{name}^");
                } else {
                    let _ = writeln!(out, "{at}||{name}^");
                }
            }
            Format::Rpz => {
                let target = if allow { "rpz-passthru." } else { "." };
                let _ = writeln!(out, "{name} CNAME {target}");
                if !exact {
                    let _ = writeln!(out, "*.{name} CNAME {target}");
                }
            }
            _ if allow => allows_dropped += 1,
            Format::Domains => {
                let _ = writeln!(out, "{}{name}", if exact { "=" } else { "" });
            }
            _ if exact => exact_dropped += 1,
            Format::Hosts => {
                let _ = writeln!(out, "0.0.0.0 {name}");
            }
            Format::Dnsmasq => {
                let _ = writeln!(out, "address=/{name}/#");
            }
            Format::Unbound => {
                let _ = writeln!(out, "local-zone: \"{name}.\" always_nxdomain");
            }
        }
    }
    let mut patterns_dropped = 0;
    for p in patterns {
        match (format, p.pattern) {
            (Format::Adblock, Some(PatternKind::Regex)) => {
                let at = if p.kind == Kind::Allow { "@@" } else { "" };
                let _ = writeln!(out, "{at}/{}/", p.name);
            }
            (Format::Domains, Some(PatternKind::Glob)) if p.kind == Kind::Block => {
                let _ = writeln!(out, "{}", p.name);
            }
            _ => patterns_dropped += 1,
        }
    }
    if allows_dropped > 0 {
        notes.push(format!(
            "{allows_dropped} allow entries have no form in this format and were left out (adblock and rpz keep them)"
        ));
    }
    if exact_dropped > 0 {
        notes.push(format!(
            "{exact_dropped} exact-name entries have no form in this format and were left out (domains, adblock and rpz keep them)"
        ));
    }
    if patterns_dropped > 0 {
        notes.push(format!(
            "{patterns_dropped} glob/regex rules have no form in this format and were left out"
        ));
    }
    (out, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Vec<SourcedRule> {
        read_list("t.txt", text, Kind::Block, false).rules
    }

    #[test]
    fn convert_dedups_drops_children_and_sorts() {
        let r = rules("b.com\na.com\nx.a.com\na.com\n@@||ok.b.com^\n=only.c.com\n");
        let (d, notes) = convert(&r, Format::Domains);
        assert_eq!(d, "a.com\nb.com\n=only.c.com\n");
        assert_eq!(notes.len(), 1, "{notes:?}");
        let (a, _) = convert(&r, Format::Adblock);
        assert_eq!(a, "||a.com^\n||b.com^\n@@||ok.b.com^\n|only.c.com^\n");
        let (z, _) = convert(&r, Format::Rpz);
        assert!(z.contains("a.com CNAME .\n*.a.com CNAME .\n"), "{z}");
        assert!(z.contains("ok.b.com CNAME rpz-passthru.\n"), "{z}");
        let (h, _) = convert(&r, Format::Hosts);
        assert_eq!(h, "0.0.0.0 a.com\n0.0.0.0 b.com\n");
    }

    #[test]
    fn lint_finds_each_kind() {
        let a = read_list(
            "a.txt",
            "ex.com\nx.ex.com\nex.com\nbad..com\n",
            Kind::Block,
            false,
        );
        let b = read_list("b.txt", "@@||ok.com^\nads.ok.com\n", Kind::Block, false);
        let f = lint(&[("a.txt".into(), a), ("b.txt".into(), b)], &[]);
        let got: Vec<(&str, &str)> = f.iter().map(|f| (f.at.as_str(), f.what)).collect();
        assert_eq!(
            got,
            vec![
                ("a.txt:4", "invalid"),
                ("a.txt:3", "duplicate"),
                ("a.txt:2", "redundant"),
                ("b.txt:2", "cancelled"),
            ]
        );
    }

    #[test]
    fn config_allowlists_cancel_but_are_not_linted() {
        let a = read_list(
            "a.txt",
            "ex.com\nmail.ex.org\nkeep.net\n",
            Kind::Block,
            false,
        );
        let allow = read_list("allow.txt", "ex.org\nex.org\nex.com\n", Kind::Allow, false);
        let f = lint(&[("a.txt".into(), a)], &[("allow.txt".into(), allow)]);
        let got: Vec<(&str, &str, &str)> = f
            .iter()
            .map(|f| (f.at.as_str(), f.what, f.msg.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "a.txt:1",
                    "cancelled",
                    "block ex.com is cancelled by allow ex.com (allow.txt:3)"
                ),
                (
                    "a.txt:2",
                    "cancelled",
                    "block mail.ex.org is cancelled by allow ex.org (allow.txt:1)"
                ),
            ]
        );
    }
}
