//! Targets `list_lines` and `list_load`: list text in every format the loader reads
//! (plain, hosts, AdBlock, dnsmasq, wildcards, `=exact`, globs, regexes), seeded with lines
//! of the real community lists in `shared/data`.
//!
//! `list_lines`: every accepted name is normalised (lower case, no trailing dot, labels
//! 1..=63, at most 253, only letters, digits, `-`, `_`; `normalize` leaves it unchanged);
//! parse → `lists convert` → parse gives the same set for the domains, hosts, adblock and
//! dnsmasq formats, and the converted text has no skipped line.
//!
//! `list_load`: bytes → `load::decode` and a real file load (`load_all_with`, which streams
//! the file) agree: same refusals (binary, HTML), same rule and skip counts as `read_list`
//! on the decoded text; every block rule of a list without allow rules is found by
//! `Blocklist::find`, its subtree too unless exact.

use sinkhole::blocklist::domain::normalize;
use sinkhole::blocklist::load::{
    BlocklistError, ListSource, decode, load_all_with, looks_like_html,
};
use sinkhole::blocklist::parse::{Line, SELF_ENTRIES, parse_line};
use sinkhole::blocklist::tools::{Format, SourcedRule, convert, read_list};
use sinkhole::blocklist::{Kind, PatternKind};

use crate::engine::{Shape, Target, Verdict, fuzz, sig};
use crate::seeds::{data_dir, sample_lines};

/// Seeds: chunks of real lines, a dozen per chunk, from every list in `shared/data`.
fn seeds(per_file: usize, chunk: usize) -> Vec<Vec<u8>> {
    let data = data_dir();
    let mut files = Vec::new();
    for sub in ["blocklists", "doh"] {
        if let Ok(rd) = std::fs::read_dir(data.join(sub)) {
            files.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
        }
    }
    files.retain(|p| p.extension().is_none_or(|e| e != "xz"));
    files.sort();
    assert!(files.len() >= 20, "too few lists in {}", data.display());
    let mut out = Vec::new();
    for f in &files {
        let lines = sample_lines(f, per_file);
        for c in lines.chunks(chunk) {
            out.push(c.join("\n").into_bytes());
        }
    }
    out.push(
        b"ads.example\n*.wild.example\n0.0.0.0 a.example b.example\n||ad.example^$important\n\
          @@||ok.ad.example^\naddress=/dns.example/#\nserver=/fwd.example/\n=only.example\n\
          ads*.glob.*\n/^re[0-9]+\\.example$/\n(^|\\.)lgsmartad\\.com$\n||x.example^$badfilter\n\
          \xef\xbb\xbfbom.example\r\nb\xc3\xbccher.example\n"
            .to_vec(),
    );
    out
}

fn dict() -> Vec<Vec<u8>> {
    [
        "||",
        "^",
        "@@",
        "$important",
        "$badfilter",
        "$third-party",
        "$dnsrewrite=1.2.3.4",
        "$client=1.2.3.4",
        "*.",
        "0.0.0.0 ",
        "127.0.0.1\t",
        ":: ",
        "address=/",
        "server=/",
        "local=/",
        "/#",
        "/0.0.0.0",
        "=",
        "#",
        " #",
        "!",
        "[Adblock Plus 2.0]",
        "\r\n",
        "\u{feff}",
        "xn--",
        "..",
        "é",
        "公司",
        "/^",
        "$/",
        "(^|\\.)",
        "[a-z]",
        "{10,14}",
        ".com",
        "localhost",
        "co.uk",
        "<!doctype html>",
        "##.banner",
        "|",
        "://",
        "\u{0}",
        &"a".repeat(64),
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

thread_local! {
    /// Rules left out of the conversion check by [`lost_in_conversion`].
    static KNOWN_LOST: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// KNOWN FINDINGS (reported, not fixed here): `lists convert` writes rules that the parser
/// does not read back as the same rule, so they are left out of the round-trip check:
/// - a self-entry name (`localhost` from `||localhost^`, `local`) written as a domains or
///   hosts line, which the parser then ignores as the machine's own name;
/// - a regex with whitespace or `#` in it (`i\t#$`): written as `/i\t#$/`, whose `\t#` is
///   then cut as an inline comment.
fn lost_in_conversion(r: &SourcedRule) -> bool {
    match r.pattern {
        None => SELF_ENTRIES.contains(&r.name.as_str()),
        Some(_) => r.name.contains(|c: char| c.is_whitespace() || c == '#'),
    }
}

/// A name as the loader must store it.
fn normalized(n: &str) -> Result<(), String> {
    let labels_ok = n.split('.').all(|l| (1..=63).contains(&l.len()));
    let chars_ok = n.bytes().all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
    });
    if n.is_empty() || n.len() > 253 || !labels_ok || !chars_ok {
        return Err(format!("accepted name {n:?} is not normalised"));
    }
    match normalize(n) {
        Ok(m) if m == n => Ok(()),
        other => Err(format!("normalize({n:?}) = {other:?}, not the name itself")),
    }
}

fn check_lines(text: &str) -> Verdict {
    let mut parts = Vec::new();
    let mut buf = String::new();
    for raw in text.split('\n') {
        for (kind, exact) in [(Kind::Block, false), (Kind::Allow, true)] {
            let line = parse_line(raw, kind, exact, &mut buf);
            parts.push(match &line {
                Line::Empty => 1,
                Line::Name { name, .. } | Line::BadFilter { name, .. } => {
                    normalized(name)?;
                    2
                }
                Line::Names { names, .. } => {
                    for n in names {
                        normalized(n)?;
                    }
                    3
                }
                Line::Pattern { pattern, text, .. } => {
                    if *pattern == PatternKind::Glob && text.bytes().any(|b| b.is_ascii_uppercase())
                    {
                        return Err(format!("glob {text:?} kept upper case"));
                    }
                    4
                }
                Line::Skip(reason, _) => 10 + *reason as u64,
            });
        }
    }
    parts.sort_unstable();
    parts.dedup();
    let mut rules = read_list("fuzz.txt", text, Kind::Block, false).rules;
    let before = rules.len();
    rules.retain(|r| !lost_in_conversion(r));
    KNOWN_LOST.set(KNOWN_LOST.get() + (before - rules.len()) as u64);
    for format in [
        Format::Domains,
        Format::Hosts,
        Format::Adblock,
        Format::Dnsmasq,
    ] {
        let (once, _) = convert(&rules, format);
        let again = read_list("converted.txt", &once, Kind::Block, false);
        if let Some(e) = again.errors.first() {
            return Err(format!(
                "{format:?} output has a line the parser skips: line {}: {e}\nconverted:\n{once}",
                e.line
            ));
        }
        let (twice, _) = convert(&again.rules, format);
        if once != twice {
            return Err(format!(
                "parse -> convert {format:?} -> parse changed the set\nfirst:\n{once}\nsecond:\n{twice}"
            ));
        }
    }
    parts.push(100 + rules.len().min(16) as u64);
    Ok(sig(&parts))
}

#[test]
fn list_lines() {
    fuzz(
        Target {
            name: "list_lines",
            seeds: seeds(60, 6),
            dict: dict(),
            max_len: 8192,
            shape: Shape::Text,
        },
        |b| check_lines(&String::from_utf8_lossy(b)),
    );
    println!(
        "fuzz list_lines: {} rules left out of the conversion check (known findings)",
        KNOWN_LOST.get()
    );
}

struct Loader {
    dir: tempfile::TempDir,
}

impl Loader {
    fn check(&self, bytes: &[u8]) -> Verdict {
        let path = self.dir.path().join("fuzz.txt");
        std::fs::write(&path, bytes).map_err(|e| format!("write {}: {e}", path.display()))?;
        let src = ListSource::file("fuzz.txt", &path, Kind::Block);
        let loaded = load_all_with(&[src], self.dir.path(), true);
        let decoded = decode("fuzz.txt", bytes.to_vec());
        let (text, (list, reports)) = match (decoded, loaded) {
            (Ok(t), Ok(l)) => (t, l),
            (Err(BlocklistError::Binary { .. }), Err(BlocklistError::Binary { .. })) => {
                return Ok(1);
            }
            (Err(BlocklistError::Html { .. }), Err(BlocklistError::Html { .. })) => return Ok(2),
            // KNOWN FINDING (reported, cosmetic): an HTML page with a NUL byte is refused as
            // binary by `decode` but as HTML by the file loader (the checks run in the other
            // order). Both refuse it; only the reason differs.
            (
                Err(BlocklistError::Binary { .. } | BlocklistError::Html { .. }),
                Err(BlocklistError::Binary { .. } | BlocklistError::Html { .. }),
            ) => return Ok(4),
            (d, l) => {
                return Err(format!(
                    "decoding and loading disagree: decode {:?}, load {:?} (html head: {})",
                    d.err(),
                    l.err(),
                    looks_like_html(bytes)
                ));
            }
        };
        let read = read_list("fuzz.txt", &text, Kind::Block, false);
        let r = &reports[0];
        if r.entries + r.patterns != read.rules.len() || r.skipped_total() != read.errors.len() {
            return Err(format!(
                "file load saw {} rules and {} skipped lines, read_list {} and {}",
                r.entries + r.patterns,
                r.skipped_total(),
                read.rules.len(),
                read.errors.len()
            ));
        }
        let plain_blocks = read.rules.iter().all(|r| r.kind == Kind::Block)
            && !text.to_ascii_lowercase().contains("badfilter");
        if plain_blocks {
            for rule in read.rules.iter().filter(|r| r.pattern.is_none()) {
                let found = list.find(rule.name.as_bytes());
                if found.is_none_or(|m| m.kind != Kind::Block) {
                    return Err(format!(
                        "rule {:?} (line {}) not found",
                        rule.name, rule.line
                    ));
                }
                let child = format!("x.{}", rule.name);
                if !rule.exact && child.len() <= 253 && list.find(child.as_bytes()).is_none() {
                    return Err(format!("{child:?} not found below rule {:?}", rule.name));
                }
            }
        }
        Ok(sig(&[
            3,
            u64::from(plain_blocks),
            read.rules.len().min(32) as u64,
            r.skipped.len() as u64,
        ]))
    }
}

#[test]
fn list_load() {
    let l = Loader {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    fuzz(
        Target {
            name: "list_load",
            seeds: seeds(200, 50),
            dict: dict(),
            max_len: 16_384,
            shape: Shape::Text,
        },
        |b| l.check(b),
    );
}
