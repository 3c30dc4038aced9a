//! `[server]` keys of the encrypted listeners: `tls_listen` (DNS over TLS), `https_listen`
//! (DNS over HTTPS), `quic_listen` (DNS over QUIC), and what they share: `tls_cert`,
//! `tls_key`, `tls_handshake_timeout_ms`, validated into [`TlsConfig`].
//!
//! Off unless a listen list names an address. Then both files are needed, and they are
//! read and checked here (a PEM certificate chain, a PEM private key, the key belonging to
//! the certificate), so that `sinkhole config check` and a reload catch a bad pair before
//! it is served; each error names the file and says what to give instead. The files are
//! named relative to the config, like lists.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::raw::RawServer;

/// DNS over TLS and over HTTPS, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Addresses served with DNS over TLS (a bare IP gets port 853); may be empty.
    pub listen: Vec<SocketAddr>,
    /// Addresses served with DNS over HTTPS (a bare IP gets port 443); may be empty.
    pub https_listen: Vec<SocketAddr>,
    /// Addresses served with DNS over QUIC, UDP (a bare IP gets port 853); may be empty.
    pub quic_listen: Vec<SocketAddr>,
    /// The certificate chain file (PEM).
    pub cert: PathBuf,
    /// The private key file (PEM).
    pub key: PathBuf,
    /// Longest time from accept to a finished handshake.
    pub handshake_timeout: Duration,
}

/// The default port of DNS over TLS (RFC 7858).
pub const DOT_PORT: u16 = 853;
/// The default port of DNS over HTTPS (RFC 8484: HTTPS's).
pub const DOH_PORT: u16 = 443;
/// The default port of DNS over QUIC (RFC 9250 §8.2: UDP 853, beside DoT's TCP 853).
pub const DOQ_PORT: u16 = 853;

const HOW: &str = "make a pair with `sinkhole cert self-signed --name dns.lan --out DIR`, or use a CA's (certbot: fullchain.pem and privkey.pem)";

impl super::Validator<'_> {
    pub(super) fn tls(&mut self, raw: &RawServer, base: Option<&Path>) -> Option<TlsConfig> {
        let listen = self.each(raw.tls_listen.get_ref(), "server.tls_listen", |s| {
            super::http::parse_http_addr(s, Some(DOT_PORT))
        });
        let https_listen = self.each(raw.https_listen.get_ref(), "server.https_listen", |s| {
            super::http::parse_http_addr(s, Some(DOH_PORT))
        });
        self.not_plain(
            raw,
            &raw.tls_listen,
            "server.tls_listen",
            DOT_PORT,
            "DNS over TLS",
        );
        self.not_plain(
            raw,
            &raw.https_listen,
            "server.https_listen",
            DOH_PORT,
            "DNS over HTTPS",
        );
        // UDP: only plain DNS's UDP can clash (DoT's and DoH's ports are TCP, so DoQ on
        // 853 beside DoT on 853 is the usual setup).
        let quic_listen = self.each(raw.quic_listen.get_ref(), "server.quic_listen", |s| {
            super::http::parse_http_addr(s, Some(DOQ_PORT))
        });
        self.not_plain(
            raw,
            &raw.quic_listen,
            "server.quic_listen",
            DOQ_PORT,
            "DNS over QUIC",
        );
        for e in raw.https_listen.get_ref() {
            if let Ok(a) = super::http::parse_http_addr(e.get_ref(), Some(DOH_PORT))
                && a.port() != 0
                && listen.contains(&a)
            {
                self.err(
                    e.span(),
                    "server.https_listen",
                    format!("{a} is also in server.tls_listen: one port serves DNS over TLS or DNS over HTTPS, not both"),
                );
            }
        }
        let timeout_ms = *raw.tls_handshake_timeout_ms.get_ref();
        if !(100..=60_000).contains(&timeout_ms) {
            self.err(
                raw.tls_handshake_timeout_ms.span(),
                "server.tls_handshake_timeout_ms",
                format!("{timeout_ms}: must be between 100 and 60000 (milliseconds)"),
            );
        }
        // The first listen list that names an address, for an error about the files.
        let lists = [
            (&raw.tls_listen, "server.tls_listen", "DNS over TLS"),
            (&raw.https_listen, "server.https_listen", "DNS over HTTPS"),
            (&raw.quic_listen, "server.quic_listen", "DNS over QUIC"),
        ];
        let Some(&(listed, listed_key, what)) = lists.iter().find(|l| !l.0.get_ref().is_empty())
        else {
            if let Some(f) = raw.tls_cert.as_ref().or(raw.tls_key.as_ref()) {
                let (line, _) = super::error::line_col(self.text, f.span().start);
                self.warnings.push(format!(
                    "{}:{line}: server.tls_cert/tls_key are set but server.tls_listen, server.https_listen and server.quic_listen are empty: no encrypted DNS is served",
                    self.file
                ));
            }
            return None;
        };
        let (cert, key) = match (&raw.tls_cert, &raw.tls_key) {
            (Some(c), Some(k)) => (
                self.tls_file(c, "server.tls_cert", base),
                self.tls_file(k, "server.tls_key", base),
            ),
            (c, k) => {
                let missing = match (c, k) {
                    (None, None) => "server.tls_cert and server.tls_key",
                    (None, Some(_)) => "server.tls_cert",
                    _ => "server.tls_key",
                };
                self.err(
                    listed.span(),
                    listed_key,
                    format!("{what} needs {missing} (PEM files: the certificate chain and its private key); {HOW}"),
                );
                return None;
            }
        };
        let (cert, key) = (cert?, key?);
        if let Err(e) = crate::tls::load_pair(&cert, &key) {
            use crate::tls::TlsError;
            let (span, key_name) = match &e {
                TlsError::Read { path, .. } | TlsError::Key { path, .. } if *path == key => {
                    (raw.tls_key.as_ref().map(Spanned::span), "server.tls_key")
                }
                TlsError::Mismatch { .. } => {
                    (raw.tls_key.as_ref().map(Spanned::span), "server.tls_key")
                }
                _ => (raw.tls_cert.as_ref().map(Spanned::span), "server.tls_cert"),
            };
            self.err(span.unwrap_or(0..0), key_name, e.to_string());
            return None;
        }
        Some(TlsConfig {
            listen,
            https_listen,
            quic_listen,
            cert,
            key,
            handshake_timeout: Duration::from_millis(timeout_ms.clamp(100, 60_000)),
        })
    }

    /// An error for each address of `list` (under `key`, served by `what`) that is in
    /// `server.listen` too.
    fn not_plain(
        &mut self,
        raw: &RawServer,
        list: &Spanned<Vec<Spanned<String>>>,
        key: &str,
        port: u16,
        what: &str,
    ) {
        for e in list.get_ref() {
            if let Ok(a) = super::http::parse_http_addr(e.get_ref(), Some(port))
                && a.port() != 0
                && raw
                    .listen
                    .get_ref()
                    .iter()
                    .any(|l| super::parse_socket_addr(l.get_ref()).is_ok_and(|l| l == a))
            {
                self.err(
                    e.span(),
                    key,
                    format!("{a} is also in server.listen: one port serves plain DNS or {what}, not both"),
                );
            }
        }
    }

    /// A file named relative to the config (or as written, for config text without a
    /// file), which must exist.
    fn tls_file(&mut self, f: &Spanned<String>, key: &str, base: Option<&Path>) -> Option<PathBuf> {
        let path = match base {
            Some(b) => b.join(f.get_ref()),
            None => PathBuf::from(f.get_ref()),
        };
        if path.is_file() {
            Some(path)
        } else {
            self.err(
                f.span(),
                key,
                format!(
                    "{:?}: no such file ({}); {HOW}",
                    f.get_ref(),
                    path.display()
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use crate::config::Config;

    fn errors(text: &str, base: &std::path::Path) -> Vec<String> {
        match Config::parse(text, "t.toml", Some(base)) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    fn one(text: &str, base: &std::path::Path) -> String {
        let e = errors(text, base);
        assert_eq!(e.len(), 1, "{e:?}");
        e.into_iter().next().unwrap()
    }

    #[test]
    fn off_by_default_and_every_key_read() {
        let c = Config::parse("", "t.toml", None).unwrap();
        assert_eq!(c.server.tls, None);
        let dir = tempfile::tempdir().unwrap();
        crate::tls::selfsigned::write("dns.lan", &dir.path().join("tls"), false, SystemTime::now())
            .unwrap();
        let c = Config::parse(
            "[server]\nlisten = [\"127.0.0.1:53\"]\ntls_listen = [\"127.0.0.1\", \"[::1]:8853\"]\ntls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"\ntls_handshake_timeout_ms = 2000\n",
            "t.toml",
            Some(dir.path()),
        )
        .unwrap();
        let t = c.server.tls.unwrap();
        assert_eq!(
            t.listen,
            [
                "127.0.0.1:853".parse().unwrap(),
                "[::1]:8853".parse().unwrap()
            ]
        );
        assert_eq!(t.https_listen, []);
        assert_eq!(t.quic_listen, []);
        assert_eq!(t.cert, dir.path().join("tls/cert.pem"));
        assert_eq!(t.key, dir.path().join("tls/key.pem"));
        assert_eq!(t.handshake_timeout.as_millis(), 2000);
        // Files without a listener: a warning, no error.
        let c = Config::parse(
            "[server]\ntls_cert = \"tls/cert.pem\"\n",
            "t.toml",
            Some(dir.path()),
        )
        .unwrap();
        assert!(
            c.warnings[0].contains("t.toml:2: server.tls_cert/tls_key are set"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn https_listen_alone_uses_the_same_pair_and_port_443() {
        let dir = tempfile::tempdir().unwrap();
        crate::tls::selfsigned::write("dns.lan", &dir.path().join("tls"), false, SystemTime::now())
            .unwrap();
        let c = Config::parse(
            "[server]\nhttps_listen = [\"127.0.0.1\", \"[::1]:8443\"]\ntls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"\n",
            "t.toml",
            Some(dir.path()),
        )
        .unwrap();
        let t = c.server.tls.unwrap();
        assert_eq!(t.listen, []);
        assert_eq!(
            t.https_listen,
            [
                "127.0.0.1:443".parse().unwrap(),
                "[::1]:8443".parse().unwrap()
            ]
        );
        assert_eq!(t.cert, dir.path().join("tls/cert.pem"));
    }

    #[test]
    fn quic_listen_alone_uses_the_same_pair_and_udp_port_853() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        crate::tls::selfsigned::write("dns.lan", &d.join("tls"), false, SystemTime::now()).unwrap();
        let pair = "tls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"\n";
        // DoQ on 853 beside DoT on 853: UDP and TCP, no clash.
        let c = Config::parse(
            &format!("[server]\nquic_listen = [\"127.0.0.1\", \"[::1]:8853\"]\ntls_listen = [\"127.0.0.1\"]\n{pair}"),
            "t.toml",
            Some(d),
        )
        .unwrap();
        let t = c.server.tls.unwrap();
        assert_eq!(
            t.quic_listen,
            [
                "127.0.0.1:853".parse().unwrap(),
                "[::1]:8853".parse().unwrap()
            ]
        );
        assert_eq!(t.listen, ["127.0.0.1:853".parse().unwrap()]);
        let c = Config::parse(
            &format!("[server]\nquic_listen = [\"127.0.0.1:8853\"]\n{pair}"),
            "t.toml",
            Some(d),
        )
        .unwrap();
        assert_eq!(c.server.tls.unwrap().listen, []);
        // Errors: file, line, key.
        let head = "[server]\nlisten = [\"127.0.0.1:53\"]\n";
        let e = one(&format!("{head}quic_listen = [\"127.0.0.1\"]\n"), d);
        assert!(
            e.starts_with("t.toml:3:")
                && e.contains("server.quic_listen")
                && e.contains("DNS over QUIC needs server.tls_cert and server.tls_key"),
            "{e}"
        );
        let e = one(
            &format!("{head}quic_listen = [\"127.0.0.1:53\"]\n{pair}"),
            d,
        );
        assert!(
            e.starts_with("t.toml:3:")
                && e.contains("server.quic_listen")
                && e.contains("also in server.listen"),
            "{e}"
        );
        let e = one(&format!("{head}quic_listen = [\"dns.lan:853\"]\n{pair}"), d);
        assert!(
            e.starts_with("t.toml:3:") && e.contains("\"dns.lan:853\": not an address"),
            "{e}"
        );
    }

    #[test]
    fn https_listen_errors_name_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        crate::tls::selfsigned::write("dns.lan", &d.join("a"), false, SystemTime::now()).unwrap();
        let head = "[server]\nlisten = [\"127.0.0.1:53\"]\n";
        let pair = "tls_cert = \"a/cert.pem\"\ntls_key = \"a/key.pem\"\n";
        let e = one(&format!("{head}https_listen = [\"127.0.0.1\"]\n"), d);
        assert!(
            e.starts_with("t.toml:3:")
                && e.contains("server.https_listen")
                && e.contains("DNS over HTTPS needs server.tls_cert and server.tls_key"),
            "{e}"
        );
        let e = one(
            &format!("{head}https_listen = [\"127.0.0.1:53\"]\n{pair}"),
            d,
        );
        assert!(
            e.starts_with("t.toml:3:")
                && e.contains("server.https_listen")
                && e.contains("also in server.listen"),
            "{e}"
        );
        let e = one(
            &format!(
                "{head}tls_listen = [\"127.0.0.1:8853\"]\nhttps_listen = [\"127.0.0.1:8853\"]\n{pair}"
            ),
            d,
        );
        assert!(
            e.starts_with("t.toml:4:") && e.contains("also in server.tls_listen"),
            "{e}"
        );
        let e = one(&format!("{head}https_listen = [\"dns.lan\"]\n{pair}"), d);
        assert!(
            e.starts_with("t.toml:3:") && e.contains("\"dns.lan\": not an address"),
            "{e}"
        );
        let e = one(
            &format!(
                "{head}https_listen = [\"127.0.0.1\"]\ntls_cert = \"a/cert.pem\"\ntls_key = \"nope.pem\"\n"
            ),
            d,
        );
        assert!(
            e.starts_with("t.toml:5:")
                && e.contains("server.tls_key")
                && e.contains("no such file"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_file_line_key_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        crate::tls::selfsigned::write("dns.lan", &d.join("a"), false, SystemTime::now()).unwrap();
        crate::tls::selfsigned::write("dns.lan", &d.join("b"), false, SystemTime::now()).unwrap();
        std::fs::write(d.join("junk.pem"), "not pem\n").unwrap();
        let head = "[server]\nlisten = [\"127.0.0.1:53\"]\n";
        let e = one(&format!("{head}tls_listen = [\"127.0.0.1:853\"]\n"), d);
        assert!(e.starts_with("t.toml:3:"), "{e}");
        assert!(
            e.contains("server.tls_listen")
                && e.contains("needs server.tls_cert and server.tls_key"),
            "{e}"
        );
        assert!(e.contains("sinkhole cert self-signed"), "{e}");
        let e = one(
            &format!("{head}tls_listen = [\"127.0.0.1:853\"]\ntls_cert = \"a/cert.pem\"\n"),
            d,
        );
        assert!(e.contains("needs server.tls_key (PEM"), "{e}");
        let e = one(
            &format!(
                "{head}tls_listen = [\"127.0.0.1:853\"]\ntls_cert = \"a/cert.pem\"\ntls_key = \"missing.pem\"\n"
            ),
            d,
        );
        assert!(
            e.starts_with("t.toml:5:")
                && e.contains("server.tls_key")
                && e.contains("\"missing.pem\": no such file"),
            "{e}"
        );
        let e = one(
            &format!(
                "{head}tls_listen = [\"127.0.0.1:853\"]\ntls_cert = \"junk.pem\"\ntls_key = \"a/key.pem\"\n"
            ),
            d,
        );
        assert!(
            e.starts_with("t.toml:4:")
                && e.contains("server.tls_cert")
                && e.contains("junk.pem: no certificate in the file"),
            "{e}"
        );
        let e = one(
            &format!(
                "{head}tls_listen = [\"127.0.0.1:853\"]\ntls_cert = \"a/cert.pem\"\ntls_key = \"junk.pem\"\n"
            ),
            d,
        );
        assert!(
            e.starts_with("t.toml:5:")
                && e.contains("server.tls_key")
                && e.contains("no private key"),
            "{e}"
        );
        let e = one(
            &format!(
                "{head}tls_listen = [\"127.0.0.1:853\"]\ntls_cert = \"a/cert.pem\"\ntls_key = \"b/key.pem\"\n"
            ),
            d,
        );
        assert!(
            e.starts_with("t.toml:5:") && e.contains("does not belong to the certificate"),
            "{e}"
        );
        let e = one(
            &format!(
                "{head}tls_listen = [\"127.0.0.1:53\"]\ntls_cert = \"a/cert.pem\"\ntls_key = \"a/key.pem\"\n"
            ),
            d,
        );
        assert!(
            e.starts_with("t.toml:3:") && e.contains("also in server.listen"),
            "{e}"
        );
        let e = one(
            &format!(
                "{head}tls_listen = [\"x:853\"]\ntls_cert = \"a/cert.pem\"\ntls_key = \"a/key.pem\"\n"
            ),
            d,
        );
        assert!(e.contains("\"x:853\": not an address"), "{e}");
        let e = errors(
            &format!(
                "{head}tls_listen = [\"127.0.0.1:853\"]\ntls_cert = \"a/cert.pem\"\ntls_key = \"a/key.pem\"\ntls_handshake_timeout_ms = 5\n"
            ),
            d,
        );
        assert!(
            e[0].starts_with("t.toml:6:") && e[0].contains("between 100 and 60000"),
            "{e:?}"
        );
    }
}
