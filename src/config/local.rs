//! `[local]`: names the network answers itself (split horizon). The TOML mirror of
//! `[[local.records]]` (`name` with `a`, `aaaa`, `txt`, `cname`, `ptr`, `ttl`), `local.files`
//! (hosts-format files, read when the policy is built) and `local.ttl`, validated into
//! [`LocalConfig`]; and the hints `config check` and the server print about how local
//! answers, `[[forward]]` rules and private reverse zones meet ([`hints`]).
//!
//! A bad value is a config error naming file, line and key: an address that does not parse,
//! a name that is not one, a `*` anywhere but as the whole leftmost label, a `cname` beside
//! other data at the same name (RFC 1034 §3.6.2), the same name in two tables.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::blocklist::domain::normalize;

/// Default `local.ttl`, seconds: long enough that clients do not ask every minute, short
/// enough that a changed address reaches them within minutes (dnsmasq's `local-ttl` is 0,
/// unbound's local-data 3600).
pub const DEFAULT_TTL: u32 = 300;

/// Longest `txt` string, bytes (written as character-strings of at most 255 bytes each).
pub const MAX_TXT: usize = 4096;

/// `[local]`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLocal {
    /// TTL of every local answer without a `ttl` of its own (hosts-file names too).
    pub ttl: Spanned<u32>,
    /// `[[local.records]]`
    pub records: Vec<RawLocalRecord>,
    /// Hosts-format files (`192.168.1.10 nas nas.lan`), relative to the config file.
    pub files: Vec<Spanned<String>>,
}

impl Default for RawLocal {
    fn default() -> Self {
        Self {
            ttl: Spanned::new(0..0, DEFAULT_TTL),
            records: Vec::new(),
            files: Vec::new(),
        }
    }
}

/// One `[[local.records]]` table, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocalRecord {
    /// The name (`nas.lan`), or a wildcard (`*.lab.corp`).
    pub name: Spanned<String>,
    /// IPv4 addresses.
    #[serde(default)]
    pub a: Vec<Spanned<String>>,
    /// IPv6 addresses.
    #[serde(default)]
    pub aaaa: Vec<Spanned<String>>,
    /// Text records, one per string.
    #[serde(default)]
    pub txt: Vec<Spanned<String>>,
    /// An alias: the name this one stands for.
    pub cname: Option<Spanned<String>>,
    /// The name a reverse name (`10.1.168.192.in-addr.arpa`) points to.
    pub ptr: Option<Spanned<String>>,
    /// TTL of this name's answers, seconds (default `local.ttl`).
    pub ttl: Option<Spanned<u32>>,
}

/// `[local]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
    /// TTL of answers without a `ttl` of their own.
    pub ttl: u32,
    /// `[[local.records]]`, in file order.
    pub records: Vec<LocalRecordConfig>,
    /// Hosts-format files, in order.
    pub files: Vec<LocalFile>,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            records: Vec::new(),
            files: Vec::new(),
        }
    }
}

/// One `[[local.records]]` table, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRecordConfig {
    /// Normalised name; a wildcard keeps its `*.` prefix.
    pub name: String,
    /// The config line of its `name` key (for the query log's `list`).
    pub line: usize,
    /// IPv4 addresses.
    pub a: Vec<Ipv4Addr>,
    /// IPv6 addresses.
    pub aaaa: Vec<Ipv6Addr>,
    /// Text strings.
    pub txt: Vec<String>,
    /// Normalised alias target.
    pub cname: Option<String>,
    /// Normalised PTR target.
    pub ptr: Option<String>,
    /// TTL, seconds.
    pub ttl: u32,
}

impl LocalRecordConfig {
    /// True for a `*.` name.
    pub fn is_wildcard(&self) -> bool {
        self.name.starts_with("*.")
    }
}

/// One `local.files` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    /// As written in the config.
    pub display: String,
    /// Where it is read.
    pub path: PathBuf,
}

/// Reads a record name: a normalised name, or `*.` and one (a wildcard).
pub fn parse_name(s: &str) -> Result<String, String> {
    let (wild, rest) = match s.trim().strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if rest.contains('*') {
        return Err(
            "a wildcard is `*.` before a name: `*` must be the whole leftmost label".into(),
        );
    }
    let name = normalize(rest).map_err(|e| e.to_string())?;
    Ok(if wild { format!("*.{name}") } else { name })
}

/// Reads a `cname` or `ptr` target: a name, never a wildcard.
fn parse_target(s: &str) -> Result<String, String> {
    if s.contains('*') {
        return Err("a target is a name, not a wildcard".into());
    }
    normalize(s).map_err(|e| e.to_string())
}

/// The `[local]` part of the config's validator.
impl super::Validator<'_> {
    pub(super) fn local(&mut self, raw: RawLocal, base: Option<&Path>) -> LocalConfig {
        let ttl = self.ttl(&raw.ttl, "local.ttl");
        let mut records: Vec<LocalRecordConfig> = Vec::with_capacity(raw.records.len());
        let mut lines = std::collections::HashMap::new();
        for r in raw.records {
            let span = r.name.span();
            let line = super::error::line_col(self.text, span.start).0;
            let name = match parse_name(r.name.get_ref()) {
                Ok(n) => n,
                Err(m) => {
                    self.err(
                        span,
                        "local.records.name",
                        format!("{:?}: {m}", r.name.get_ref()),
                    );
                    continue;
                }
            };
            if let Some(first) = lines.insert(name.clone(), line) {
                self.err(
                    span,
                    "local.records.name",
                    format!("{name:?} is already defined at line {first}: give all its data in one [[local.records]]"),
                );
                continue;
            }
            let a = self.each(&r.a, "local.records.a", |s| match s.parse::<IpAddr>() {
                Ok(IpAddr::V4(ip)) => Ok(ip),
                Ok(IpAddr::V6(_)) => Err("an IPv6 address: put it in aaaa".into()),
                Err(_) => Err("not an IPv4 address".into()),
            });
            let aaaa = self.each(&r.aaaa, "local.records.aaaa", |s| {
                match s.parse::<IpAddr>() {
                    Ok(IpAddr::V6(ip)) => Ok(ip),
                    Ok(IpAddr::V4(_)) => Err("an IPv4 address: put it in a".into()),
                    Err(_) => Err("not an IPv6 address".into()),
                }
            });
            let txt = self.each(&r.txt, "local.records.txt", |s| {
                if s.len() > MAX_TXT {
                    Err(format!("longer than {MAX_TXT} bytes"))
                } else {
                    Ok(s.to_string())
                }
            });
            let mut target = |t: &Option<Spanned<String>>, key: &str| {
                let t = t.as_ref()?;
                let v = self.each(std::slice::from_ref(t), key, parse_target);
                v.into_iter().next()
            };
            let cname = target(&r.cname, "local.records.cname");
            let ptr = target(&r.ptr, "local.records.ptr");
            let ttl = r
                .ttl
                .as_ref()
                .map_or(ttl, |t| self.ttl(t, "local.records.ttl"));
            if let Some(c) = &r.cname {
                let others = !r.a.is_empty() || !r.aaaa.is_empty() || !r.txt.is_empty();
                if others || r.ptr.is_some() {
                    self.err(
                        c.span(),
                        "local.records.cname",
                        format!("{name:?}: a cname cannot stand beside other data at the same name (RFC 1034 §3.6.2); give the data to the target"),
                    );
                }
                if cname.as_deref() == Some(name.as_str()) {
                    self.err(
                        c.span(),
                        "local.records.cname",
                        format!("{name:?} is an alias of itself"),
                    );
                }
            }
            let empty = r.a.is_empty()
                && r.aaaa.is_empty()
                && r.txt.is_empty()
                && r.cname.is_none()
                && r.ptr.is_none();
            if empty {
                self.err(
                    span,
                    "local.records",
                    format!("{name:?} has no data: give a, aaaa, txt, cname or ptr"),
                );
            }
            records.push(LocalRecordConfig {
                name,
                line,
                a,
                aaaa,
                txt,
                cname,
                ptr,
                ttl,
            });
        }
        let mut files = Vec::new();
        for f in &raw.files {
            let name = f.get_ref();
            let Some(dir) = base else {
                self.err(
                    f.span(),
                    "local.files",
                    format!("{name:?}: files are read only from a config file"),
                );
                continue;
            };
            let path = dir.join(name);
            if path.is_file() {
                files.push(LocalFile {
                    display: name.clone(),
                    path,
                });
            } else {
                self.err(
                    f.span(),
                    "local.files",
                    format!("{name:?}: no such file ({})", path.display()),
                );
            }
        }
        LocalConfig {
            ttl,
            records,
            files,
        }
    }

    fn ttl(&mut self, t: &Spanned<u32>, key: &str) -> u32 {
        let v = *t.get_ref();
        if v > i32::MAX as u32 {
            self.err(t.span(), key, "a DNS TTL is at most 2147483647 seconds");
            return DEFAULT_TTL;
        }
        v
    }
}

/// True for the private, shared (CGNAT) and link-local unicast addresses a home router or
/// an office DNS server has: such a server may know the LAN's names.
fn is_lan_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// What `config check` and the server print as warnings about `cfg`'s local answers: an
/// `[upstream]` server on a LAN address (a home router) is never asked private reverse
/// names, so a `[[forward]]` rule is what sends them there; and a local record under a
/// `[[forward]]` domain answers itself (local records come first).
pub fn hints(cfg: &super::Config) -> Vec<String> {
    let mut out = Vec::new();
    let lan: Vec<String> = cfg
        .upstream
        .servers
        .iter()
        .filter(|s| !s.is_encrypted() && is_lan_address(s.addr.ip()))
        .map(ToString::to_string)
        .collect();
    if !lan.is_empty() {
        out.push(format!(
            "{}: [upstream] server {} is on a private network (a router?): reverse lookups of private addresses are never sent to [upstream] but answered NXDOMAIN here; if it knows the LAN's names, add a rule such as [[forward]] domains = [\"168.192.in-addr.arpa\"] servers = [\"{}\"]",
            cfg.file,
            lan.join(", "),
            lan.first().map_or("", String::as_str),
        ));
    }
    for r in &cfg.local.records {
        let bare = r.name.trim_start_matches("*.");
        let covering = cfg.forward.iter().flat_map(|f| &f.domains).find(|d| {
            bare == d.as_str()
                || bare
                    .strip_suffix(d.as_str())
                    .is_some_and(|p| p.ends_with('.'))
        });
        if let Some(d) = covering {
            out.push(format!(
                "{}:{}: local record {:?} is under [[forward]] domain {d:?}: the local record answers (local records come before forward rules)",
                cfg.file, r.line, r.name
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn errs(text: &str) -> Vec<String> {
        match Config::parse(text, "t.toml", None) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn records_are_read_with_defaults() {
        let c = Config::parse(
            "[local]\nttl = 60\n[[local.records]]\nname = \"NAS.lan.\"\na = [\"192.168.1.10\"]\naaaa = [\"fd00::10\"]\ntxt = [\"v=1\"]\n\
             [[local.records]]\nname = \"*.lab.corp\"\ncname = \"nas.lan\"\nttl = 5\n\
             [[local.records]]\nname = \"10.1.168.192.in-addr.arpa\"\nptr = \"nas.lan\"\n",
            "t.toml",
            None,
        )
        .unwrap();
        let l = &c.local;
        assert_eq!(l.ttl, 60);
        assert_eq!(l.records[0].name, "nas.lan");
        assert_eq!(l.records[0].line, 4);
        assert_eq!(
            l.records[0].a,
            ["192.168.1.10".parse::<Ipv4Addr>().unwrap()]
        );
        assert_eq!(l.records[0].ttl, 60);
        assert!(l.records[1].is_wildcard());
        assert_eq!(l.records[1].cname.as_deref(), Some("nas.lan"));
        assert_eq!(l.records[1].ttl, 5);
        assert_eq!(l.records[2].ptr.as_deref(), Some("nas.lan"));
        assert_eq!(
            Config::parse("", "t.toml", None).unwrap().local,
            LocalConfig::default()
        );
    }

    #[test]
    fn bad_records_name_line_and_key() {
        let e = errs(
            "[[local.records]]\nname = \"nas.lan\"\na = [\"192.168.1.300\", \"fd00::1\"]\naaaa = [\"10.0.0.1\"]\n",
        );
        assert!(
            e[0].starts_with("t.toml:3:6: local.records.a: \"192.168.1.300\": not an IPv4 address"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("t.toml:3:23: local.records.a: \"fd00::1\": an IPv6 address"),
            "{e:?}"
        );
        assert!(
            e[2].starts_with("t.toml:4:9: local.records.aaaa: \"10.0.0.1\": an IPv4"),
            "{e:?}"
        );
        let e = errs("[[local.records]]\nname = \"a.*.lab\"\na = [\"10.0.0.1\"]\n");
        assert!(
            e[0].starts_with("t.toml:2:8: local.records.name: \"a.*.lab\": a wildcard"),
            "{e:?}"
        );
        let e = errs("[[local.records]]\nname = \"*lab.corp\"\na = [\"10.0.0.1\"]\n");
        assert!(e[0].contains("local.records.name: \"*lab.corp\""), "{e:?}");
        let e = errs("[[local.records]]\nname = \"bad..lan\"\na = [\"10.0.0.1\"]\n");
        assert!(e[0].contains("empty label"), "{e:?}");
        let e = errs(
            "[[local.records]]\nname = \"www.lan\"\na = [\"10.0.0.1\"]\ncname = \"nas.lan\"\n",
        );
        assert!(
            e[0].starts_with("t.toml:4:9: local.records.cname: \"www.lan\": a cname cannot"),
            "{e:?}"
        );
        let e = errs(
            "[[local.records]]\nname = \"x.lan\"\n[[local.records]]\nname = \"y.lan\"\na = [\"10.0.0.1\"]\n[[local.records]]\nname = \"Y.lan\"\ntxt = [\"t\"]\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("t.toml:2:8: local.records: \"x.lan\" has no data"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with(
                "t.toml:7:8: local.records.name: \"y.lan\" is already defined at line 4"
            ),
            "{e:?}"
        );
        let e = errs("[[local.records]]\nname = \"x.lan\"\ncname = \"x.lan\"\n");
        assert!(e[0].contains("alias of itself"), "{e:?}");
        let e = errs("[[local.records]]\nname = \"x.lan\"\nmx = \"y\"\n");
        assert!(
            e[0].starts_with("t.toml:3:1: local.records.mx: unknown field"),
            "{e:?}"
        );
        let e = errs("[local]\nfiles = [\"hosts\"]\n");
        assert!(
            e[0].contains("local.files: \"hosts\": files are read only"),
            "{e:?}"
        );
        let e = errs("[local]\nttl = 4000000000\n");
        assert!(e[0].starts_with("t.toml:2:7: local.ttl:"), "{e:?}");
    }

    #[test]
    fn files_are_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hosts"), "10.0.0.1 a\n").unwrap();
        let c =
            Config::parse("[local]\nfiles = [\"hosts\"]\n", "t.toml", Some(dir.path())).unwrap();
        assert_eq!(c.local.files[0].path, dir.path().join("hosts"));
        let e =
            Config::parse("[local]\nfiles = [\"nope\"]\n", "t.toml", Some(dir.path())).unwrap_err();
        assert!(
            e.0[0]
                .to_string()
                .starts_with("t.toml:2:10: local.files: \"nope\": no such file")
        );
    }

    #[test]
    fn hints_name_a_router_upstream_and_forwarded_local_names() {
        let c = Config::parse(
            "[upstream]\nservers = [\"192.168.1.1\", \"9.9.9.9\"]\n\
             [[forward]]\ndomains = [\"corp.test\"]\nservers = [\"10.0.0.53\"]\n\
             [[local.records]]\nname = \"intranet.corp.test\"\na = [\"10.0.0.8\"]\n\
             [[local.records]]\nname = \"notcorp.test\"\na = [\"10.0.0.9\"]\n",
            "t.toml",
            None,
        )
        .unwrap();
        let h = hints(&c);
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(
            h[0].contains("server 192.168.1.1:53 is on a private network"),
            "{h:?}"
        );
        assert!(h[0].contains("servers = [\"192.168.1.1:53\"]"), "{h:?}");
        assert!(h[1].starts_with("t.toml:7: local record \"intranet.corp.test\" is under [[forward]] domain \"corp.test\""), "{h:?}");
        let public = Config::parse(
            "[upstream]\nservers = [\"127.0.0.1:5353\", \"1.1.1.1\"]\n",
            "t.toml",
            None,
        )
        .unwrap();
        assert!(
            hints(&public).is_empty(),
            "a loopback resolver is no router"
        );
        for lan in [
            "10.1.2.3",
            "172.16.0.1",
            "100.64.0.1",
            "169.254.1.1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(is_lan_address(lan.parse().unwrap()), "{lan}");
        }
        for other in ["127.0.0.1", "9.9.9.9", "100.128.0.1", "2001:db8::1", "::1"] {
            assert!(!is_lan_address(other.parse().unwrap()), "{other}");
        }
    }
}
