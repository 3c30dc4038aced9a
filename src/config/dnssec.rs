//! `upstream.dnssec` and `upstream.trust_anchor`: whether answers are validated (DNSSEC,
//! RFC 4033-4035), and against which keys. `"validate"` is the default in recursive mode,
//! `"off"` in forward mode unless set.
//!
//! The built-in trust anchors are the root's key-signing keys KSK-2017 (key tag 20326) and
//! KSK-2024 (key tag 38696), as hickory ships them. `upstream.trust_anchor` names a file of
//! `DNSKEY` records in zone-file form (`. 172800 IN DNSKEY 257 3 8 AwEAA...`, what
//! `dig . DNSKEY` prints and unbound's `trust-anchor-file` takes), used instead: a lab's own
//! root, or a private signed zone. A line that is not a DNSKEY is skipped with
//! `file:line: reason`; a file without one usable key is an error at the key.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use hickory_resolver::proto::dnssec::{Algorithm, TrustAnchors};
use hickory_resolver::proto::serialize::txt::trust_anchor::Parser;
use toml::Spanned;

/// DNSSEC validation, when on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dnssec {
    /// The trust anchor file and the DNSKEY lines read from it; `None`: the built-in root
    /// keys.
    pub trust_anchor: Option<(PathBuf, String)>,
}

impl Dnssec {
    /// The keys validation starts from.
    pub fn anchors(&self) -> TrustAnchors {
        match &self.trust_anchor {
            // Each line was parsed alone when the config was read: the whole parses too.
            Some((_, text)) => {
                TrustAnchors::from_str(text).unwrap_or_else(|_| TrustAnchors::empty())
            }
            None => TrustAnchors::default(),
        }
    }
}

/// The DNSKEY lines of a trust anchor file's text, and its bad lines as `(line, reason)`.
pub fn parse_anchors(text: &str) -> (String, Vec<(usize, String)>) {
    let mut good = String::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let data = line.split(';').next().unwrap_or("").trim();
        if data.is_empty() || data.starts_with('$') {
            continue;
        }
        let fields: Vec<&str> = data.split_whitespace().collect();
        if fields.iter().any(|f| f.eq_ignore_ascii_case("DS")) {
            bad.push((
                i + 1,
                "a DS anchor: write the zone's DNSKEY record instead (`dig . DNSKEY`)".into(),
            ));
            continue;
        }
        if !fields.iter().any(|f| f.eq_ignore_ascii_case("DNSKEY")) {
            bad.push((i + 1, "not a DNSKEY record".into()));
            continue;
        }
        // The key's algorithm (the third field after the type) must be one the validator
        // knows: hickory's parser asserts it in debug builds.
        let alg = fields
            .iter()
            .position(|f| f.eq_ignore_ascii_case("DNSKEY"))
            .and_then(|t| fields.get(t + 3))
            .and_then(|a| a.parse::<u8>().ok());
        let Some(alg) = alg.map(Algorithm::from_u8) else {
            bad.push((
                i + 1,
                "not a DNSKEY record: FLAGS PROTOCOL ALGORITHM KEY expected".into(),
            ));
            continue;
        };
        if !alg.is_supported() {
            bad.push((i + 1, format!("key algorithm {alg:?} is not supported")));
            continue;
        }
        let line = format!("{data}\n");
        match Parser::new(line.as_str()).parse() {
            Ok(entries) if entries.len() == 1 && TrustAnchors::from_str(&line).is_ok() => {
                good.push_str(&line);
            }
            Ok(_) => bad.push((i + 1, "not one DNSKEY record".into())),
            Err(e) => bad.push((i + 1, format!("not a DNSKEY record: {e}"))),
        }
    }
    (good, bad)
}

/// The DNSSEC part of the config's validator.
impl super::Validator<'_> {
    /// `upstream.dnssec` and `upstream.trust_anchor`: `None` when validation is off.
    pub(super) fn dnssec(
        &mut self,
        mode: Option<&Spanned<String>>,
        anchor: Option<&Spanned<String>>,
        recursive: bool,
        base: Option<&Path>,
    ) -> Option<Dnssec> {
        let on = match mode.map(|m| (m, m.get_ref().as_str())) {
            None => recursive,
            Some((_, "validate")) => true,
            Some((_, "off")) => false,
            Some((m, other)) => {
                self.err(
                    m.span(),
                    "upstream.dnssec",
                    format!("{other:?}: write \"validate\" (check signatures) or \"off\""),
                );
                return None;
            }
        };
        let trust_anchor = match anchor {
            None => None,
            Some(raw) => {
                let (path, text) = self.read_text(raw, "upstream.trust_anchor", base)?;
                let (good, bad) = parse_anchors(&text);
                self.skipped(&path, bad);
                if good.is_empty() {
                    let m = format!(
                        "{}: no DNSKEY record in the file (write the anchor zone's DNSKEY lines, as `dig . DNSKEY` prints them)",
                        path.display()
                    );
                    self.err(raw.span(), "upstream.trust_anchor", m);
                    return None;
                }
                Some((path, good))
            }
        };
        on.then_some(Dnssec { trust_anchor })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// The root's KSK-2024 as `dig . DNSKEY` prints it.
    const KSK_2024: &str = ". 172800 IN DNSKEY 257 3 8 AwEAAa96jeuknZlaeSrvyAJj6ZHv28hhOKkx3rLGXVaC6rXTsDc449/cidltpkyGwCJNnOAlFNKF2jBosZBU5eeHspaQWOmOElZsjICMQMC3aeHbGiShvZsx4wMYSjH8e7Vrhbu6irwCzVBApESjbUdpWWmEnhathWu1jo+siFUiRAAxm9qyJNg/wOZqqzL/dL/q8PkcRU5oUKEpUge71M3ej2/7CPqpdVwuMoTvoB+ZOT4YeGyxMvHmbrxlFzGOHOijtzN+u1TQNatX2XBuzZNQ1K+s2CXkPIZo7s6JgZyvaBevYtxPvYLw4z9mR7K2vaF18UYH9Z9GNUUeayffKC73PYc=";

    fn parse(text: &str) -> Result<Config, crate::config::ConfigErrors> {
        Config::parse(text, "t.toml", None)
    }

    #[test]
    fn validation_defaults_on_when_recursive_and_off_when_forwarding() {
        assert_eq!(parse("").unwrap().upstream.dnssec, None);
        let r = parse("[upstream]\nmode = \"recursive\"\n").unwrap();
        assert_eq!(r.upstream.dnssec, Some(Dnssec { trust_anchor: None }));
        let off = parse("[upstream]\nmode = \"recursive\"\ndnssec = \"off\"\n").unwrap();
        assert_eq!(off.upstream.dnssec, None);
        let fwd = parse("[upstream]\ndnssec = \"validate\"\n").unwrap();
        assert!(fwd.upstream.dnssec.is_some());
    }

    #[test]
    fn a_bad_mode_or_anchor_file_names_file_line_and_key() {
        let e = parse("[upstream]\ndnssec = \"strict\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.toml:2") && e.contains("upstream.dnssec"),
            "{e}"
        );
        let e = parse("[upstream]\ntrust_anchor = \"/nonexistent/root.key\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.toml:2") && e.contains("upstream.trust_anchor"),
            "{e}"
        );
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn anchor_files_keep_dnskey_lines_and_skip_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        let text = format!(
            "; the root\n{KSK_2024}\n. IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16\nnot a record\n"
        );
        std::fs::write(&path, text).unwrap();
        let cfg = Config::parse(
            &format!(
                "[upstream]\nmode = \"recursive\"\ntrust_anchor = \"{}\"\n",
                path.display()
            ),
            "t.toml",
            None,
        )
        .unwrap();
        let d = cfg.upstream.dnssec.unwrap();
        let (p, good) = d.trust_anchor.clone().unwrap();
        assert_eq!(p, path);
        assert_eq!(good.lines().count(), 1);
        assert_eq!(d.anchors().len(), 1);
        let w = cfg.warnings.join("\n");
        assert!(w.contains("root.key:3: skipped: a DS anchor"), "{w}");
        assert!(
            w.contains("root.key:4: skipped: not a DNSKEY record"),
            "{w}"
        );

        std::fs::write(&path, "nothing here\n").unwrap();
        let e = Config::parse(
            &format!("[upstream]\ntrust_anchor = \"{}\"\n", path.display()),
            "t.toml",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no DNSKEY record"), "{e}");
    }

    #[test]
    fn the_built_in_anchors_are_both_root_ksks() {
        let a = Dnssec { trust_anchor: None }.anchors();
        assert_eq!(a.len(), 2);
    }
}
