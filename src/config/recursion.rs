//! `upstream.mode = "recursive"`: resolving from the root instead of forwarding. Owns the
//! root hints (the built-in table, or `upstream.root_hints`, a named.root file read here)
//! and `upstream.recursion_timeout_ms`. The recursion itself is
//! `pipeline::upstream::recursive`.
//!
//! A hints file is read as named.root is written: zone-file lines `NAME [TTL] [CLASS] TYPE
//! RDATA`, `;` comments. Its `A` and `AAAA` lines are the root servers' addresses (`NS`
//! lines name them and are otherwise not needed; `$` directives are ignored). A line that
//! is neither is skipped with `file:line: reason` (a warning); a file without a single
//! address is an error at the `root_hints` key.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

/// How a recursive `[upstream]` resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recursion {
    /// The root servers' addresses (port 53).
    pub roots: Vec<IpAddr>,
    /// The hints file they came from; `None` for the built-in table.
    pub hints_file: Option<PathBuf>,
    /// The whole resolution of one query ends by then (`upstream.recursion_timeout_ms`).
    pub timeout: Duration,
}

/// The root servers of the IANA root hints file (named.root, "last update: April 18, 2024",
/// root zone 2024041801; <https://www.internic.net/domain/named.root>): A to M, IPv4 then
/// IPv6. Used when `upstream.root_hints` is not set; the root servers then tell the
/// resolver the current ones (RFC 8109 priming is the library's business).
pub const ROOT_HINTS: [IpAddr; 26] = [
    IpAddr::V4(Ipv4Addr::new(198, 41, 0, 4)), // a.root-servers.net
    IpAddr::V4(Ipv4Addr::new(170, 247, 170, 2)), // b
    IpAddr::V4(Ipv4Addr::new(192, 33, 4, 12)), // c
    IpAddr::V4(Ipv4Addr::new(199, 7, 91, 13)), // d
    IpAddr::V4(Ipv4Addr::new(192, 203, 230, 10)), // e
    IpAddr::V4(Ipv4Addr::new(192, 5, 5, 241)), // f
    IpAddr::V4(Ipv4Addr::new(192, 112, 36, 4)), // g
    IpAddr::V4(Ipv4Addr::new(198, 97, 190, 53)), // h
    IpAddr::V4(Ipv4Addr::new(192, 36, 148, 17)), // i
    IpAddr::V4(Ipv4Addr::new(192, 58, 128, 30)), // j
    IpAddr::V4(Ipv4Addr::new(193, 0, 14, 129)), // k
    IpAddr::V4(Ipv4Addr::new(199, 7, 83, 42)), // l
    IpAddr::V4(Ipv4Addr::new(202, 12, 27, 33)), // m
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x503, 0xba3e, 0, 0, 0, 2, 0x30)), // a
    IpAddr::V6(Ipv6Addr::new(0x2801, 0x1b8, 0x10, 0, 0, 0, 0, 0xb)), // b
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x2, 0, 0, 0, 0, 0xc)), // c
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x2d, 0, 0, 0, 0, 0xd)), // d
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0xa8, 0, 0, 0, 0, 0xe)), // e
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x2f, 0, 0, 0, 0, 0xf)), // f
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x12, 0, 0, 0, 0, 0xd0d)), // g
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x1, 0, 0, 0, 0, 0x53)), // h
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x7fe, 0, 0, 0, 0, 0, 0x53)), // i
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x503, 0xc27, 0, 0, 0, 2, 0x30)), // j
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x7fd, 0, 0, 0, 0, 0, 1)), // k
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x9f, 0, 0, 0, 0, 0x42)), // l
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdc3, 0, 0, 0, 0, 0, 0x35)), // m
];

/// The addresses of a hints file's text, and its bad lines as `(line, reason)`.
pub fn parse_hints(text: &str) -> (Vec<IpAddr>, Vec<(usize, String)>) {
    let mut roots = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split(';').next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('$') {
            continue;
        }
        match parse_line(line) {
            Ok(Some(ip)) if !roots.contains(&ip) => roots.push(ip),
            Ok(_) => {}
            Err(reason) => bad.push((i + 1, reason)),
        }
    }
    (roots, bad)
}

/// One record line: the address of an `A`/`AAAA`, nothing for an `NS`.
fn parse_line(line: &str) -> Result<Option<IpAddr>, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // NAME, then TTL and CLASS in either order (both optional), then TYPE and RDATA.
    let mut rest = fields.get(1..).unwrap_or_default();
    while let Some((first, tail)) = rest.split_first() {
        let class = first.eq_ignore_ascii_case("IN");
        if !class && !first.bytes().all(|b| b.is_ascii_digit()) {
            break;
        }
        rest = tail;
    }
    let (Some(rtype), Some(rdata), None) = (rest.first(), rest.get(1), rest.get(2)) else {
        return Err(format!(
            "{line:?}: expected NAME [TTL] [IN] TYPE DATA (a named.root line)"
        ));
    };
    match rtype.to_ascii_uppercase().as_str() {
        "NS" => Ok(None),
        "A" => rdata
            .parse::<Ipv4Addr>()
            .map(|ip| Some(IpAddr::V4(ip)))
            .map_err(|_| format!("{rdata:?} is not an IPv4 address")),
        "AAAA" => rdata
            .parse::<Ipv6Addr>()
            .map(|ip| Some(IpAddr::V6(ip)))
            .map_err(|_| format!("{rdata:?} is not an IPv6 address")),
        other => Err(format!(
            "record type {other:?} is not used in root hints (only NS, A and AAAA)"
        )),
    }
}

/// The recursion part of the config's validator.
impl super::Validator<'_> {
    /// `upstream.mode`, `upstream.root_hints` and `upstream.recursion_timeout_ms`: `None` in
    /// forward mode.
    pub(super) fn recursion(
        &mut self,
        mode: &Spanned<String>,
        hints: Option<&Spanned<String>>,
        timeout_ms: &Spanned<u64>,
        base: Option<&Path>,
    ) -> Option<Recursion> {
        let recursive = match mode.get_ref().as_str() {
            "forward" => false,
            "recursive" => true,
            other => {
                self.err(
                    mode.span(),
                    "upstream.mode",
                    format!("{other:?}: write \"forward\" (to upstream.servers) or \"recursive\" (from the root)"),
                );
                false
            }
        };
        let ms = *timeout_ms.get_ref();
        if !(1..=60_000).contains(&ms) {
            self.err(
                timeout_ms.span(),
                "upstream.recursion_timeout_ms",
                format!("{ms}: must be between 1 and 60000 (milliseconds)"),
            );
        }
        let (roots, hints_file) = match hints {
            None => (ROOT_HINTS.to_vec(), None),
            Some(raw) => {
                let (path, text) = self.read_text(raw, "upstream.root_hints", base)?;
                let (roots, bad) = parse_hints(&text);
                self.skipped(&path, bad);
                if roots.is_empty() {
                    let m = format!(
                        "{}: no root server address in the file (it needs A or AAAA lines, as named.root has)",
                        path.display()
                    );
                    self.err(raw.span(), "upstream.root_hints", m);
                    return None;
                }
                (roots, Some(path))
            }
        };
        recursive.then(|| Recursion {
            roots,
            hints_file,
            timeout: Duration::from_millis(ms.max(1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn named_root_lines_give_the_addresses() {
        let text = "; comment\n$TTL 3600000\n\
            .                        3600000      NS    A.ROOT-SERVERS.NET.\n\
            A.ROOT-SERVERS.NET.      3600000      A     198.41.0.4\n\
            A.ROOT-SERVERS.NET.      3600000  IN  AAAA  2001:503:ba3e::2:30 ; trailing\n\
            b.root. IN 60 A 192.0.2.2\n\
            b.root. A 192.0.2.2\n";
        let (roots, bad) = parse_hints(text);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(
            roots,
            [
                "198.41.0.4".parse::<IpAddr>().unwrap(),
                "2001:503:ba3e::2:30".parse().unwrap(),
                "192.0.2.2".parse().unwrap(),
            ]
        );
    }

    #[test]
    fn the_built_in_table_matches_the_iana_file_format() {
        // The same thirteen servers, written as named.root writes them, parse to the table.
        let letters = "abcdefghijklm";
        let mut text = String::new();
        for (i, c) in letters.chars().enumerate() {
            text.push_str(&format!(".  3600000  NS  {c}.root-servers.net.\n"));
            text.push_str(&format!(
                "{c}.root-servers.net. 3600000 A {}\n",
                ROOT_HINTS[i]
            ));
            text.push_str(&format!(
                "{c}.root-servers.net. 3600000 AAAA {}\n",
                ROOT_HINTS[i + 13]
            ));
        }
        let (roots, bad) = parse_hints(&text);
        assert!(bad.is_empty());
        assert_eq!(roots.len(), 26);
        assert!(ROOT_HINTS.iter().all(|ip| roots.contains(ip)));
    }

    #[test]
    fn bad_lines_are_skipped_with_their_line_and_reason() {
        let text = "a.root. A 198.41.0.4\n\
            a.root. A 300.1.1.1\n\
            a.root. AAAA 198.41.0.4\n\
            a.root. MX 10 mail.root.\n\
            garbage\n\
            a.root. TXT hello\n";
        let (roots, bad) = parse_hints(text);
        assert_eq!(roots.len(), 1);
        let lines: Vec<usize> = bad.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6]);
        assert!(
            bad[0].1.contains("\"300.1.1.1\" is not an IPv4 address"),
            "{bad:?}"
        );
        assert!(bad[1].1.contains("not an IPv6 address"), "{bad:?}");
        assert!(bad[2].1.contains("expected NAME"), "{bad:?}");
        assert!(bad[4].1.contains("\"TXT\" is not used"), "{bad:?}");
    }

    #[test]
    fn config_reads_mode_hints_and_timeout() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("root.hints"), "x. A 127.0.0.9\nx. A nope\n").unwrap();
        std::fs::write(dir.path().join("empty.hints"), "; nothing\n\n").unwrap();
        let c = Config::parse("", "t.toml", Some(dir.path())).unwrap();
        assert_eq!(c.upstream.recursive, None, "forward is the default");
        let c = Config::parse(
            "[upstream]\nmode = \"recursive\"\n",
            "t.toml",
            Some(dir.path()),
        )
        .unwrap();
        let r = c.upstream.recursive.unwrap();
        assert_eq!(r.roots, ROOT_HINTS);
        assert_eq!(r.timeout, Duration::from_millis(4000));
        let c = Config::parse(
            "[upstream]\nmode = \"recursive\"\nroot_hints = \"root.hints\"\nrecursion_timeout_ms = 900\n",
            "t.toml",
            Some(dir.path()),
        )
        .unwrap();
        let r = c.upstream.recursive.unwrap();
        assert_eq!(r.roots, ["127.0.0.9".parse::<IpAddr>().unwrap()]);
        assert_eq!(r.timeout, Duration::from_millis(900));
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(
            c.warnings[0].ends_with("root.hints:2: skipped: \"nope\" is not an IPv4 address"),
            "{:?}",
            c.warnings
        );
        let errs = |text: &str| -> Vec<String> {
            Config::parse(text, "t.toml", Some(dir.path()))
                .unwrap_err()
                .0
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        let e = errs("[upstream]\nmode = \"recursive\"\nroot_hints = \"empty.hints\"\n");
        assert!(
            e[0].starts_with("t.toml:3:14: upstream.root_hints: ")
                && e[0].contains("empty.hints: no root server address"),
            "{e:?}"
        );
        let e = errs("[upstream]\nmode = \"recursive\"\nroot_hints = \"missing.hints\"\n");
        assert!(
            e[0].starts_with("t.toml:3:14: upstream.root_hints: ") && e[0].contains("cannot read"),
            "{e:?}"
        );
        let e = errs("[upstream]\nmode = \"iterative\"\nrecursion_timeout_ms = 0\n");
        assert!(
            e[0].starts_with("t.toml:2:8: upstream.mode: \"iterative\""),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("t.toml:3:24: upstream.recursion_timeout_ms: 0"),
            "{e:?}"
        );
    }
}
