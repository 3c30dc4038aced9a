//! What the block page says: the request's host, checked and normalised as a DNS name; the
//! verdict for it from a policy snapshot (the lists and client groups the DNS path uses,
//! local records first as there); and the page itself, as HTML or plain text. Pure
//! functions, no I/O: the server in `super` hands them a request's parts.
//!
//! The Host header is the client's to write: it is read only if it is short ASCII, and
//! becomes a name only through the same normaliser as list entries (letters, digits, `-`,
//! `_`, labels of at most 63 bytes). Everything written into the HTML is escaped anyway,
//! since rules and list names come from files.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use crate::blocklist::Kind;
use crate::blocklist::domain::normalize;
use crate::pipeline::blocking::list_label;
use crate::pipeline::{Now, Policy};

/// Longest Host header read, in bytes: a 253-byte name, `:65535`, and brackets.
pub const MAX_HOST_LEN: usize = 253 + 6 + 2;

/// Why a Host header was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// No Host header and no host in the request line.
    Missing,
    /// Longer than [`MAX_HOST_LEN`].
    TooLong,
    /// Not a DNS name or an IP address (with an optional port).
    Invalid,
}

/// What the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A DNS name: lower case, no trailing dot, no port.
    Name(String),
    /// An IP address (the block page's own, typed into the address bar).
    Address(IpAddr),
}

/// The host of a request from its Host header (or the request line's authority): the port
/// stripped, a name lower-cased and checked as a DNS name.
pub fn host(raw: Option<&[u8]>) -> Result<Target, HostError> {
    let raw = raw.ok_or(HostError::Missing)?;
    if raw.len() > MAX_HOST_LEN {
        return Err(HostError::TooLong);
    }
    let s = std::str::from_utf8(raw).map_err(|_| HostError::Invalid)?;
    if s.is_empty() {
        return Err(HostError::Missing);
    }
    if !s.is_ascii()
        || s.bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(HostError::Invalid);
    }
    // `[v6]` or `[v6]:port`.
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or(HostError::Invalid)?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(port)) {
            return Err(HostError::Invalid);
        }
        let ip = ip.parse().map_err(|_| HostError::Invalid)?;
        return Ok(Target::Address(IpAddr::V6(ip)));
    }
    let name = match s.rsplit_once(':') {
        Some((h, p)) if port(p) => h,
        Some(_) => return Err(HostError::Invalid),
        None => s,
    };
    if let Ok(ip) = name.parse::<std::net::Ipv4Addr>() {
        return Ok(Target::Address(IpAddr::V4(ip)));
    }
    normalize(name)
        .map(Target::Name)
        .map_err(|_| HostError::Invalid)
}

/// True for a port number as a Host header writes it (1 to 5 digits).
fn port(p: &str) -> bool {
    (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())
}

/// What the policy says about a name for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A list rule blocks it.
    Blocked {
        /// The rule's text (a domain, or a glob or regex).
        rule: String,
        /// The list it is in, as blocked answers' EDE text names it.
        list: String,
        /// Its 1-based line there.
        line: u32,
        /// The client's group, when its policy decided.
        group: Option<Arc<str>>,
    },
    /// A local record answers it (never blocked).
    Local,
    /// No rule blocks it now (or an allow rule lets it through).
    NotBlocked,
}

/// The verdict for `name` asked by `client` at `now`, as the DNS path decides it: local
/// records first, then the client's group's lists (or the default ones).
pub fn verdict(policy: &Policy, client: IpAddr, name: &str, now: &Now) -> Verdict {
    if policy.local.answers(name.as_bytes()) {
        return Verdict::Local;
    }
    let group = policy.groups.select(client, now);
    let blocking = group.map_or(&policy.blocking, |g| &g.blocking);
    match blocking.find(name.as_bytes(), now) {
        Some((m, _)) if m.kind == Kind::Block => Verdict::Blocked {
            rule: m.rule.to_string(),
            list: list_label(m.source).into_owned(),
            line: m.line,
            group: group.map(|g| Arc::clone(&g.name)),
        },
        _ => Verdict::NotBlocked,
    }
}

/// How the page is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// For browsers (their `Accept` names `text/html`).
    Html,
    /// For everything else (curl, scripts, apps).
    Text,
}

/// The format a request's `Accept` header asks for: HTML when it names `text/html` or
/// `application/xhtml+xml`, plain text otherwise (no header, `*/*`).
pub fn format(accept: Option<&[u8]>) -> Format {
    let html = accept.is_some_and(|a| {
        let a = String::from_utf8_lossy(a).to_ascii_lowercase();
        a.contains("text/html") || a.contains("application/xhtml+xml")
    });
    if html { Format::Html } else { Format::Text }
}

/// A response: status, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// HTTP status: 403 blocked, 404 not blocked, 400 bad Host.
    pub status: u16,
    /// `text/html; charset=utf-8` or `text/plain; charset=utf-8`.
    pub content_type: &'static str,
    /// The page.
    pub body: String,
}

/// What one request gets, before it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A name and the policy's verdict on it.
    Name(String, Verdict),
    /// An IP address was asked for.
    Address(IpAddr),
    /// The Host header could not be used.
    BadHost(HostError),
}

/// The page for `o` in `f`. `logged`: the resolver keeps a query log, so the page may say
/// that the attempt was logged.
pub fn render(o: &Outcome, f: Format, logged: bool) -> Page {
    let logged_note = if logged {
        " The attempt was logged."
    } else {
        ""
    };
    let (status, title, lead, facts): (u16, String, String, Vec<(&str, String)>) = match o {
        Outcome::Name(host, Verdict::Blocked { rule, list, line, group }) => {
            let mut facts = vec![
                ("Site", host.clone()),
                ("Rule", rule.clone()),
                ("List", format!("{list} (line {line})")),
            ];
            if let Some(g) = group {
                facts.push(("Group", g.to_string()));
            }
            (
                403,
                format!("Blocked: {host}"),
                format!("This site was blocked by the network's policy.{logged_note}"),
                facts,
            )
        }
        Outcome::Name(host, Verdict::Local) => (
            404,
            format!("Not blocked: {host}"),
            "This is the block page of the network's DNS resolver. This name is one of the network's own and is not blocked; it has no web page here.".into(),
            vec![("Site", host.clone())],
        ),
        Outcome::Name(host, Verdict::NotBlocked) => (
            404,
            format!("Not blocked: {host}"),
            "This is the block page of the network's DNS resolver. No rule blocks this site now: it may have been unblocked since your device asked, or blocked through an alias (CNAME) or its address. Try again in a minute.".into(),
            vec![("Site", host.clone())],
        ),
        Outcome::Address(ip) => (
            404,
            "Block page".into(),
            "This is the block page of the network's DNS resolver: it explains blocked sites when a browser is sent here. There is nothing else to see at this address.".into(),
            vec![("Address", ip.to_string())],
        ),
        Outcome::BadHost(e) => (
            400,
            "Bad request".into(),
            match e {
                HostError::Missing => "The request names no host.",
                HostError::TooLong => "The request's Host header is too long.",
                HostError::Invalid => "The request's Host header is not a valid host name.",
            }
            .into(),
            Vec::new(),
        ),
    };
    match f {
        Format::Text => {
            let mut body = format!("{title}\n\n{lead}\n");
            if !facts.is_empty() {
                body.push('\n');
            }
            for (k, v) in &facts {
                let _ = writeln!(body, "{k}: {}", one_line(v));
            }
            Page {
                status,
                content_type: "text/plain; charset=utf-8",
                body,
            }
        }
        Format::Html => Page {
            status,
            content_type: "text/html; charset=utf-8",
            body: html(&title, &lead, &facts, status == 403),
        },
    }
}

/// `s` with line breaks and other control characters replaced, for a text line.
fn one_line(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(s.replace(|c: char| c.is_control(), " "))
    } else {
        Cow::Borrowed(s)
    }
}

/// The HTML page: small, no scripts, no external resources, readable on a phone.
fn html(title: &str, lead: &str, facts: &[(&str, String)], blocked: bool) -> String {
    let accent = if blocked { "#b3261e" } else { "#44474f" };
    let mut out = String::with_capacity(1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\">\
         <title>{t}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:0;padding:2rem 1rem;background:#f6f6f8;color:#1b1b1f}}\
         main{{max-width:36rem;margin:auto;background:#fff;border-radius:.75rem;padding:1.5rem;\
         border-top:.4rem solid {accent};box-shadow:0 1px 3px rgba(0,0,0,.15)}}\
         h1{{font-size:1.3rem;margin:0 0 1rem;overflow-wrap:anywhere}}\
         dl{{display:grid;grid-template-columns:auto 1fr;gap:.3rem 1rem;margin:1rem 0 0}}\
         dt{{font-weight:600}}dd{{margin:0;font-family:ui-monospace,monospace;overflow-wrap:anywhere}}\
         </style></head><body><main><h1>{t}</h1><p>{l}</p>",
        t = escape(title),
        l = escape(lead),
    );
    if !facts.is_empty() {
        out.push_str("<dl>");
        for (k, v) in facts {
            let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(v));
        }
        out.push_str("</dl>");
    }
    out.push_str("</main></body></html>\n");
    out
}

/// `s` with the five HTML-significant characters written as entities.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_normalised_and_ports_stripped() {
        let n = |s: &str| host(Some(s.as_bytes()));
        assert_eq!(
            n("Ads.Example.COM"),
            Ok(Target::Name("ads.example.com".into()))
        );
        assert_eq!(
            n("ads.example.com.:8080"),
            Ok(Target::Name("ads.example.com".into()))
        );
        assert_eq!(
            n("10.0.0.1:80"),
            Ok(Target::Address("10.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            n("[fd00::1]:80"),
            Ok(Target::Address("fd00::1".parse().unwrap()))
        );
        assert_eq!(
            n("[fd00::1]"),
            Ok(Target::Address("fd00::1".parse().unwrap()))
        );
        assert_eq!(host(None), Err(HostError::Missing));
        assert_eq!(n(""), Err(HostError::Missing));
        for bad in [
            "<script>alert(1)</script>",
            "a b.test",
            "x.test:80:80",
            "x.test:",
            "x.test:123456",
            "[fd00::1",
            "[fd00::1]x",
            "[nope]",
            "bad..name",
            "tést.example",
            "x.test\r\n",
            "a\"b.test",
        ] {
            assert_eq!(n(bad), Err(HostError::Invalid), "{bad:?}");
        }
        let long = "a.".repeat(200);
        assert_eq!(n(&long), Err(HostError::TooLong));
        assert_eq!(n(&"a".repeat(64)), Err(HostError::Invalid), "label over 63");
    }

    #[test]
    fn the_verdict_is_the_dns_paths_local_records_first_then_the_lists() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ads.txt"), "ads.test\nnas.lan\n").unwrap();
        let cfg = crate::config::Config::parse(
            "[blocking]\nlists = [\"ads.txt\"]\n\
             [[local.records]]\nname = \"nas.lan\"\na = [\"192.168.1.10\"]\n",
            "t.toml",
            Some(dir.path()),
        )
        .unwrap();
        let (policy, _) = Policy::load(&cfg).unwrap();
        let now = crate::pipeline::request::test_support::fixed_now();
        let client: IpAddr = "192.168.1.5".parse().unwrap();
        assert_eq!(
            verdict(&policy, client, "x.ads.test", &now),
            Verdict::Blocked {
                rule: "ads.test".into(),
                list: "ads.txt".into(),
                line: 1,
                group: None
            }
        );
        assert_eq!(verdict(&policy, client, "nas.lan", &now), Verdict::Local);
        assert_eq!(
            verdict(&policy, client, "ok.test", &now),
            Verdict::NotBlocked
        );
    }

    #[test]
    fn browsers_get_html_and_others_text() {
        assert_eq!(
            format(Some(b"text/html,application/xhtml+xml,*/*;q=0.8")),
            Format::Html
        );
        assert_eq!(format(Some(b"TEXT/HTML")), Format::Html);
        assert_eq!(format(Some(b"*/*")), Format::Text);
        assert_eq!(format(Some(b"application/json")), Format::Text);
        assert_eq!(format(None), Format::Text);
    }

    fn blocked(rule: &str) -> Outcome {
        Outcome::Name(
            "ads.example.com".into(),
            Verdict::Blocked {
                rule: rule.into(),
                list: "lists/ads.txt".into(),
                line: 3,
                group: Some(Arc::from("kids")),
            },
        )
    }

    #[test]
    fn a_blocked_page_names_host_rule_list_and_group() {
        let p = render(&blocked("example.com"), Format::Text, true);
        assert_eq!(p.status, 403);
        assert_eq!(
            p.body,
            "Blocked: ads.example.com\n\nThis site was blocked by the network's policy. \
             The attempt was logged.\n\nSite: ads.example.com\nRule: example.com\n\
             List: lists/ads.txt (line 3)\nGroup: kids\n"
        );
        let p = render(&blocked("example.com"), Format::Html, false);
        assert_eq!(p.status, 403);
        assert!(p.content_type.starts_with("text/html"));
        assert!(
            p.body.contains("<dd>lists/ads.txt (line 3)</dd>"),
            "{}",
            p.body
        );
        assert!(!p.body.contains("logged"), "no query log, no claim");
    }

    #[test]
    fn rule_text_is_escaped_in_html_and_kept_on_one_line_in_text() {
        let p = render(&blocked("/<script>&\"'/\n"), Format::Html, true);
        assert!(!p.body.contains("<script>"), "{}", p.body);
        assert!(
            p.body.contains("/&lt;script&gt;&amp;&quot;&#39;/"),
            "{}",
            p.body
        );
        let p = render(&blocked("a\nb"), Format::Text, true);
        assert!(p.body.contains("Rule: a b\n"), "{}", p.body);
    }

    #[test]
    fn other_outcomes_get_404_or_400() {
        let nb = Outcome::Name("ok.test".into(), Verdict::NotBlocked);
        assert_eq!(render(&nb, Format::Text, true).status, 404);
        let local = Outcome::Name("nas.lan".into(), Verdict::Local);
        assert_eq!(render(&local, Format::Html, true).status, 404);
        let ip = Outcome::Address("10.0.0.1".parse().unwrap());
        assert_eq!(render(&ip, Format::Text, true).status, 404);
        let bad = Outcome::BadHost(HostError::TooLong);
        let p = render(&bad, Format::Text, true);
        assert_eq!(p.status, 400);
        assert!(p.body.contains("too long"));
    }
}
