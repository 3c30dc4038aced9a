//! Hosts-format files for `local.files`: `ADDRESS name [alias…]` per line, `#` comments, as
//! `/etc/hosts` writes them. Every name of a line gets the address; entries for the machine
//! itself (`localhost`, `ip6-allnodes`…, the list blocklists ignore too) are left out. A bad
//! line is skipped with its number and a reason; the rest of the file loads.

use std::fmt;
use std::net::IpAddr;

use crate::blocklist::parse::SELF_ENTRIES;
use crate::config::local::parse_name;

/// Longest line read; longer ones are skipped.
const MAX_LINE: usize = 4096;

/// How many skipped lines per file are kept one by one; the rest are counted.
pub const REPORTED: usize = 20;

/// One usable line: an address and its (normalised) names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsLine {
    /// 1-based line number.
    pub line: u32,
    /// The address.
    pub addr: IpAddr,
    /// The names, normalised (a wildcard keeps its `*.`).
    pub names: Vec<String>,
}

/// A skipped line, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    /// 1-based line number.
    pub line: u32,
    /// The line, trimmed and cut to 80 characters.
    pub text: String,
    /// Why.
    pub reason: String,
}

impl fmt::Display for SkippedLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: skipped {:?}: {}", self.line, self.text, self.reason)
    }
}

fn cut(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Parses the text of a hosts file: the usable lines, the first [`REPORTED`] skipped ones,
/// and how many were skipped in all.
pub fn parse(text: &str) -> (Vec<HostsLine>, Vec<SkippedLine>, usize) {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    let mut skipped = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let line = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let entry = raw.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        match parse_line(entry, line) {
            Ok(Some(l)) => lines.push(l),
            Ok(None) => {}
            Err(reason) => {
                skipped += 1;
                if errors.len() < REPORTED {
                    errors.push(SkippedLine {
                        line,
                        text: cut(entry),
                        reason,
                    });
                }
            }
        }
    }
    (lines, errors, skipped)
}

/// One trimmed, comment-free line: `Ok(None)` when it names only the machine itself.
fn parse_line(entry: &str, line: u32) -> Result<Option<HostsLine>, String> {
    if entry.len() > MAX_LINE {
        return Err(format!("longer than {MAX_LINE} bytes"));
    }
    let mut fields = entry.split_whitespace();
    let first = fields.next().unwrap_or("");
    // `fe80::1%eth0`: the zone index means nothing to a DNS answer.
    let bare = first.split('%').next().unwrap_or(first);
    let addr: IpAddr = bare
        .parse()
        .map_err(|_| format!("{first:?} is not an IP address"))?;
    if addr.is_unspecified() {
        return Err(format!(
            "{addr} is no host's address (a blocklist? put it in blocking.lists)"
        ));
    }
    let mut names = Vec::new();
    let mut any = false;
    for n in fields {
        any = true;
        if SELF_ENTRIES.iter().any(|e| e.eq_ignore_ascii_case(n)) {
            continue;
        }
        let name = parse_name(n).map_err(|m| format!("name {n:?}: {m}"))?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if !any {
        return Err("an address without a name".into());
    }
    Ok((!names.is_empty()).then_some(HostsLine { line, addr, names }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_and_bad_ones_skipped_with_a_reason() {
        let text = "# LAN\n192.168.1.10 nas NAS.lan. # the NAS\n\n127.0.0.1 localhost\n\
                    fe80::1%eth0 router.lan\nnot-an-ip x.lan\n10.0.0.1\n0.0.0.0 ads.example\n\
                    10.0.0.2 bad..name ok.lan\n10.0.0.3 *.lab.lan\n";
        let (lines, errors, skipped) = parse(text);
        assert_eq!(
            lines[0],
            HostsLine {
                line: 2,
                addr: "192.168.1.10".parse().unwrap(),
                names: vec!["nas".into(), "nas.lan".into()],
            }
        );
        assert_eq!(lines[1].names, ["router.lan"]);
        assert_eq!(lines[1].addr, "fe80::1".parse::<IpAddr>().unwrap());
        assert_eq!(lines[2].names, ["*.lab.lan"]);
        assert_eq!(lines.len(), 3);
        assert_eq!(skipped, 4);
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            shown[0].starts_with("6: skipped \"not-an-ip x.lan\": \"not-an-ip\" is not"),
            "{shown:?}"
        );
        assert!(
            shown[1].starts_with("7: skipped \"10.0.0.1\": an address without a name"),
            "{shown:?}"
        );
        assert!(
            shown[2].contains("0.0.0.0 is no host's address"),
            "{shown:?}"
        );
        assert!(
            shown[3].starts_with(
                "9: skipped \"10.0.0.2 bad..name ok.lan\": name \"bad..name\": empty label"
            ),
            "{shown:?}"
        );
    }

    #[test]
    fn only_the_first_skipped_lines_are_kept() {
        let text = "x\n".repeat(REPORTED + 5);
        let (lines, errors, skipped) = parse(&text);
        assert!(lines.is_empty());
        assert_eq!((errors.len(), skipped), (REPORTED, REPORTED + 5));
    }
}
