//! Which log records a `sinkhole log` command or an API call shows: [`Filter`] by client
//! address or network, action, name glob and time range, with a cheap prefilter on the raw
//! line (the time peeked from its start, substrings of the client, the action and the
//! name's literal part) so that most lines are never parsed when few records match.
//! Shared by the readers (`read.rs`, `page.rs`) and the commands (`tail.rs`, `report.rs`).

use std::net::IpAddr;

use ipnet::IpNet;
use memchr::memmem::Finder;

use super::Entry;
use super::brief::Brief;

/// A cheap test on a raw log line (see [`Filter::prefilter`]).
pub(super) type Prefilter = Box<dyn Fn(&[u8]) -> bool + Send + Sync>;

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
    /// Only records at or before this time (`ts` text, as `since`).
    pub until: Option<String>,
    /// `udp`, `tcp`, `tls`, …: only queries carried so (older records, without `proto`,
    /// never match).
    pub proto: Option<String>,
}

/// The `ts` text at the start of a raw line as the writer writes it (`{"ts":"…"`), without
/// parsing the line; `None` for a line of another shape.
pub fn peek_ts(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(b"{\"ts\":\"")?;
    let end = memchr::memchr(b'"', rest)?;
    rest.get(..end)
}

/// The value of the string field that `field` (its `"key":"` prefix) finds on a raw line
/// as the writer writes it, when it holds no escape; `None` otherwise (parse the line then).
/// No escaped string can hold the prefix, so the first one found is the field.
pub fn peek_str<'a>(line: &'a [u8], field: &Finder<'_>) -> Option<&'a str> {
    let at = field.find(line)?;
    let rest = line.get(at + field.needle().len()..)?;
    let value = rest.get(..memchr::memchr(b'"', rest)?)?;
    let value = std::str::from_utf8(value).ok()?;
    (!value.contains('\\')).then_some(value)
}

/// The longest run of plain name characters in a glob: every name the glob matches holds
/// it. `None` when the glob has classes, alternatives or escapes (nothing is certain then).
fn glob_literal(glob: &str) -> Option<String> {
    if glob.contains(['[', '{', '\\']) {
        return None;
    }
    glob.split(['*', '?'])
        .filter(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        })
        .max_by_key(|p| p.len())
        .filter(|p| p.len() >= 3)
        .map(str::to_string)
}

impl Filter {
    /// True when `e` passes.
    pub fn matches(&self, e: &Entry<'_>) -> bool {
        self.matches_brief(&Brief::of(e))
    }

    /// True when the record of `e`'s fields passes.
    pub fn matches_brief(&self, e: &Brief<'_>) -> bool {
        if let Some(net) = &self.client {
            match e.client.parse::<IpAddr>() {
                Ok(ip) if net.contains(&ip) => {}
                _ => return false,
            }
        }
        if let Some(a) = &self.action
            && e.action != a
        {
            return false;
        }
        if let Some(g) = &self.name
            && !g.is_match(e.qname)
        {
            return false;
        }
        if let Some(p) = &self.proto
            && e.proto != Some(p.as_str())
        {
            return false;
        }
        if let Some(s) = &self.since
            && e.ts < s.as_str()
        {
            return false;
        }
        if let Some(u) = &self.until
            && e.ts > u.as_str()
        {
            return false;
        }
        true
    }

    /// True when [`prefilter`](Self::prefilter) decides exactly for a line whose time it can
    /// peek: no client or name filter (those it only narrows).
    pub(super) fn prefilter_is_exact(&self) -> bool {
        self.client.is_none() && self.name.is_none()
    }

    /// A cheap test on the raw line: `false` means the record cannot match. Used to skip
    /// parsing most lines when a single client, an action, a name or a time range is asked
    /// for.
    pub(super) fn prefilter(&self) -> Prefilter {
        let mut needles: Vec<Finder<'static>> = Vec::new();
        if let Some(net) = &self.client
            && net.prefix_len() == net.max_prefix_len()
        {
            let needle = format!("\"client\":\"{}\"", net.addr());
            needles.push(Finder::new(needle.as_bytes()).into_owned());
        }
        if let Some(a) = &self.action {
            let needle = serde_json::to_string(a).unwrap_or_default();
            needles.push(Finder::new(format!("\"action\":{needle}").as_bytes()).into_owned());
        }
        if let Some(p) = &self.proto {
            let needle = serde_json::to_string(p).unwrap_or_default();
            needles.push(Finder::new(format!("\"proto\":{needle}").as_bytes()).into_owned());
        }
        if let Some(lit) = self
            .name
            .as_ref()
            .and_then(|g| glob_literal(g.glob().glob()))
        {
            needles.push(Finder::new(lit.as_bytes()).into_owned());
        }
        let since = self.since.clone().map(String::into_bytes);
        let until = self.until.clone().map(String::into_bytes);
        if needles.is_empty() && since.is_none() && until.is_none() {
            return Box::new(|_| true);
        }
        Box::new(move |line| {
            if let Some(ts) = peek_ts(line) {
                if since.as_deref().is_some_and(|s| ts < s) {
                    return false;
                }
                if until.as_deref().is_some_and(|u| ts > u) {
                    return false;
                }
            }
            needles.iter().all(|f| f.find(line).is_some())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(g: &str) -> globset::GlobMatcher {
        globset::Glob::new(g).unwrap().compile_matcher()
    }

    const LINE: &[u8] = br#"{"ts":"2026-11-21T10:00:01.532Z","client":"192.0.2.1","proto":"tls","qname":"ads.example.com","qtype":"A","action":"blocked","rcode":"NOERROR","elapsed_us":1,"session":1,"seq":1}"#;

    #[test]
    fn prefilter_never_rejects_a_matching_line() {
        let e: Entry<'_> = serde_json::from_slice(LINE).unwrap();
        let f = Filter {
            client: Some("192.0.2.1/32".parse().unwrap()),
            action: Some("blocked".into()),
            name: Some(glob("*.example.com")),
            since: Some("2026-11-21T10:00:01.532Z".into()),
            until: Some("2026-11-21T10:00:01.532Z".into()),
            proto: Some("tls".into()),
        };
        assert!(f.matches(&e));
        assert!((f.prefilter())(LINE));
        for f in [
            Filter {
                action: Some("allowed".into()),
                ..Filter::default()
            },
            Filter {
                name: Some(glob("*.other.net")),
                ..Filter::default()
            },
            Filter {
                until: Some("2026-11-21T10:00:01.531Z".into()),
                ..Filter::default()
            },
            Filter {
                since: Some("2026-11-21T10:00:01.533Z".into()),
                ..Filter::default()
            },
            Filter {
                proto: Some("udp".into()),
                ..Filter::default()
            },
        ] {
            assert!(!(f.prefilter())(LINE), "{f:?}");
            assert!(!f.matches(&e), "{f:?}");
        }
    }

    #[test]
    fn glob_literals() {
        assert_eq!(
            glob_literal("*.example.com").as_deref(),
            Some(".example.com")
        );
        assert_eq!(glob_literal("ads*.x?").as_deref(), Some("ads"));
        assert_eq!(glob_literal("a*b"), None);
        assert_eq!(glob_literal("{a,b}.example.com"), None);
        assert_eq!(peek_ts(LINE), Some(&b"2026-11-21T10:00:01.532Z"[..]));
        assert_eq!(peek_ts(b"{\"client\":1}"), None);
    }
}
