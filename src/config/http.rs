//! `[http]`: the HTTP server (API, `/metrics`) and the addresses of the block page. The TOML
//! mirror and its validation into [`HttpConfig`].
//!
//! Off unless `listen` names an address. The API's token comes from `token` or from
//! `token_file` (its first line, the file named relative to the config, so that the config
//! itself can stay world-readable); a token shorter than [`MIN_TOKEN_LEN`] characters, or
//! holding spaces or control characters, is a config error. Without a token the API's
//! mutating calls are refused (a warning says so); read calls are open only with
//! `public_read = true`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

/// The shortest token accepted: 16 characters, about 96 bits when random base64.
pub const MIN_TOKEN_LEN: usize = 16;

/// `[http]`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttp {
    /// Addresses of the API and `/metrics` (`IP:PORT`); none = HTTP off.
    pub listen: Vec<Spanned<String>>,
    /// Addresses of the block page (`IP:PORT`, or a bare IP for port 80).
    pub block_page_listen: Vec<Spanned<String>>,
    /// The API token, sent as `Authorization: Bearer …`.
    pub token: Option<Spanned<String>>,
    /// A file whose first line is the token (relative to the config).
    pub token_file: Option<Spanned<String>>,
    /// Read calls of the API without a token.
    pub public_read: bool,
}

/// `[http]`, validated.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct HttpConfig {
    /// Addresses of the API and `/metrics`; empty = no HTTP server.
    pub listen: Vec<SocketAddr>,
    /// Addresses of the block page (served by the block page's module).
    pub block_page_listen: Vec<SocketAddr>,
    /// The API token; `None`: mutating calls are refused.
    pub token: Option<String>,
    /// Read calls need no token.
    pub public_read: bool,
}

impl std::fmt::Debug for HttpConfig {
    // The token never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("listen", &self.listen)
            .field("block_page_listen", &self.block_page_listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("public_read", &self.public_read)
            .finish()
    }
}

/// `IP:PORT` or `[IPv6]:PORT`; a bare IP gets `default_port`, or is an error without one.
pub fn parse_http_addr(s: &str, default_port: Option<u16>) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s
        .parse::<IpAddr>()
        .ok()
        .or_else(|| s.strip_prefix('[')?.strip_suffix(']')?.parse().ok());
    match (bare, default_port) {
        (Some(ip), Some(port)) => Ok(SocketAddr::new(ip, port)),
        (Some(_), None) => Err("write IP:PORT (the port is not implied)".into()),
        (None, _) => Err("not an address: write IP:PORT or [IPv6]:PORT".into()),
    }
}

/// Why `t` cannot be a token, if it cannot.
fn token_problem(t: &str) -> Option<String> {
    if t.chars().count() < MIN_TOKEN_LEN {
        return Some(format!(
            "the token is too short: at least {MIN_TOKEN_LEN} characters (e.g. `openssl rand -base64 24`)"
        ));
    }
    if t.chars().any(|c| !c.is_ascii_graphic()) {
        return Some("the token may hold only visible ASCII characters (no spaces)".into());
    }
    None
}

/// The `[http]` part of the config's validator.
impl super::Validator<'_> {
    pub(super) fn http(
        &mut self,
        raw: RawHttp,
        base: Option<&Path>,
        dns: &[std::net::SocketAddr],
    ) -> HttpConfig {
        let listen = self.each(&raw.listen, "http.listen", |s| parse_http_addr(s, None));
        let block_page_listen = self.block_page_listen(&raw.block_page_listen, dns);
        for e in &raw.block_page_listen {
            if let Ok(a) = parse_http_addr(e.get_ref(), Some(80))
                && listen.contains(&a)
            {
                self.err(
                    e.span(),
                    "http.block_page_listen",
                    format!("{a} is also in http.listen: one address serves one of them"),
                );
            }
        }
        let token = match (&raw.token, &raw.token_file) {
            (Some(_), Some(f)) => {
                self.err(
                    f.span(),
                    "http.token_file",
                    "write either token or token_file, not both",
                );
                None
            }
            (Some(t), None) => match token_problem(t.get_ref()) {
                // The value itself is not repeated: it is a secret.
                Some(m) => {
                    self.err(t.span(), "http.token", m);
                    None
                }
                None => Some(t.get_ref().clone()),
            },
            (None, Some(f)) => self.token_file(f, base),
            (None, None) => None,
        };
        if !listen.is_empty() && token.is_none() && raw.token.is_none() && raw.token_file.is_none()
        {
            self.warnings.push(format!(
                "{}: http: no token or token_file: the API's mutating calls (pause, reload) are refused{}",
                self.file,
                if raw.public_read {
                    ""
                } else {
                    ", and its read calls too (public_read = false)"
                }
            ));
        }
        HttpConfig {
            listen,
            block_page_listen,
            token,
            public_read: raw.public_read,
        }
    }

    /// The token in the first line of `f` (relative to the config).
    fn token_file(&mut self, f: &Spanned<String>, base: Option<&Path>) -> Option<String> {
        const KEY: &str = "http.token_file";
        let Some((display, text)) = self.read_file(f, KEY, base) else {
            if base.is_none() {
                self.err(f.span(), KEY, "files are read only from a config file");
            }
            return None;
        };
        let first = text.lines().next().unwrap_or("").trim();
        match token_problem(first) {
            Some(m) => {
                self.err(f.span(), KEY, format!("{display}: {m}"));
                None
            }
            None => Some(first.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(text: &str, base: Option<&Path>) -> Result<Config, Vec<String>> {
        Config::parse(text, "t.toml", base)
            .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn off_by_default_and_every_key_read() {
        let c = parse("", None).unwrap();
        assert_eq!(c.http, HttpConfig::default());
        let c = parse(
            "[http]\nlisten = [\"127.0.0.1:8080\", \"[::1]:8080\"]\nblock_page_listen = [\"192.0.2.1\", \"192.0.2.1:8081\"]\ntoken = \"0123456789abcdef\"\npublic_read = true\n",
            None,
        )
        .unwrap();
        let h = &c.http;
        assert_eq!(
            h.listen,
            [
                "127.0.0.1:8080".parse().unwrap(),
                "[::1]:8080".parse().unwrap()
            ]
        );
        assert_eq!(
            h.block_page_listen,
            [
                "192.0.2.1:80".parse().unwrap(),
                "192.0.2.1:8081".parse().unwrap()
            ]
        );
        assert_eq!(h.token.as_deref(), Some("0123456789abcdef"));
        assert!(h.public_read);
        assert!(!format!("{h:?}").contains("0123456789abcdef"), "redacted");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn token_file_is_read_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "  s3cr3t-s3cr3t-s3cr3t \n# x\n").unwrap();
        let c = parse(
            "[http]\nlisten = [\"127.0.0.1:8080\"]\ntoken_file = \"tok\"\n",
            Some(dir.path()),
        )
        .unwrap();
        assert_eq!(c.http.token.as_deref(), Some("s3cr3t-s3cr3t-s3cr3t"));
    }

    #[test]
    fn bad_values_name_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("short"), "abc\n").unwrap();
        let e = parse(
            "[http]\nlisten = [\"127.0.0.1\", \"localhost:80\", \"127.0.0.1:8080\"]\nblock_page_listen = [\"127.0.0.1:8080\", \"x\"]\ntoken = \"short\"\n",
            Some(dir.path()),
        )
        .unwrap_err();
        assert_eq!(e.len(), 5, "{e:?}");
        assert!(
            e[0].starts_with("t.toml:2:11: http.listen: \"127.0.0.1\": write IP:PORT"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("t.toml:2:24: http.listen: \"localhost:80\": not an address"),
            "{e:?}"
        );
        assert!(
            e[2].starts_with("t.toml:3:40: http.block_page_listen: \"x\""),
            "{e:?}"
        );
        assert!(
            e[3].starts_with("t.toml:3:22: http.block_page_listen: 127.0.0.1:8080 is also"),
            "{e:?}"
        );
        assert!(
            e[4].starts_with("t.toml:4:9: http.token: the token is too short"),
            "{e:?}"
        );
        assert!(!e[4].contains("\"short\""), "the secret is not repeated");
        let e = parse("[http]\ntoken_file = \"short\"\n", Some(dir.path())).unwrap_err();
        assert!(e[0].starts_with("t.toml:2:14: http.token_file: "), "{e:?}");
        assert!(e[0].contains("too short"), "{e:?}");
        let e = parse("[http]\ntoken_file = \"nope\"\n", Some(dir.path())).unwrap_err();
        assert!(
            e[0].contains("http.token_file: \"nope\": cannot read"),
            "{e:?}"
        );
        let e = parse(
            "[http]\ntoken = \"0123456789abcdef\"\ntoken_file = \"short\"\n",
            Some(dir.path()),
        )
        .unwrap_err();
        assert!(
            e[0].starts_with("t.toml:3:14: http.token_file: write either"),
            "{e:?}"
        );
        let e = parse("[http]\ntoken = \"0123456789 abcdef\"\n", None).unwrap_err();
        assert!(e[0].contains("visible ASCII"), "{e:?}");
        let e = parse("[http]\nlisen = []\n", None).unwrap_err();
        assert!(
            e[0].starts_with("t.toml:2:1: http.lisen: unknown field"),
            "{e:?}"
        );
    }

    #[test]
    fn no_token_is_a_warning() {
        let c = parse("[http]\nlisten = [\"127.0.0.1:8080\"]\n", None).unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("mutating calls"), "{:?}", c.warnings);
        assert!(c.warnings[0].contains("read calls too"), "{:?}", c.warnings);
    }
}
