//! The text side of `sinkhole lists add` / `lists remove`: which names may be added
//! ([`checked_name`]), and the new bytes of a list with names appended in the style of its
//! last rule ([`add_names`]) or their lines taken out ([`remove_names`]), everything else kept
//! byte for byte. Pure functions over bytes; writing the file safely is `edit`.

use thiserror::Error;

use super::domain::{DomainError, is_public_suffix, normalize};
use super::parse::{Kind, Line, parse_line};
use super::tools::read_list;

/// Why `add` / `remove` refused to edit.
#[derive(Debug, Error)]
pub enum EditError {
    /// A name that is not a valid domain name.
    #[error("{name:?} is not a valid domain name: {why}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why.
        why: DomainError,
    },
    /// A comment of several lines (it would become rules).
    #[error("the comment must be one line")]
    Comment,
    /// A public suffix (`com`, `co.uk`).
    #[error("{name:?} is a public suffix; a list must not block or allow all of it")]
    PublicSuffix {
        /// The name given.
        name: String,
    },
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The edited copy could not be given the original's owner (a list owned by the
    /// service user would become unreadable to it).
    #[error(
        "{path}: cannot give the edited copy the owner {uid}:{gid} of the original ({source}); nothing written: run as root or as that user"
    )]
    Owner {
        /// The file.
        path: String,
        /// The original's owner.
        uid: u32,
        /// The original's group.
        gid: u32,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is larger than a list may be.
    #[error("{path}: {size} bytes is larger than the {max} bytes a list may have", max = super::load::MAX_LIST_BYTES)]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
    },
}

/// Normalises a name for `add`, refusing invalid names and public suffixes.
pub fn checked_name(name: &str) -> Result<String, EditError> {
    let n = normalize(name).map_err(|why| EditError::InvalidName {
        name: name.to_string(),
        why,
    })?;
    if is_public_suffix(&n) {
        return Err(EditError::PublicSuffix {
            name: name.to_string(),
        });
    }
    Ok(n)
}

/// How the last rule line of a file is written, so that added lines match it.
fn line_style(text: &str) -> impl Fn(&str) -> String {
    let mut buf = String::new();
    let last = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !matches!(
                    parse_line(l, Kind::Block, false, &mut buf),
                    Line::Empty | Line::Skip(..)
                )
        })
        .unwrap_or("")
        .to_string();
    move |name: &str| {
        if last.starts_with("@@||") {
            format!("@@||{name}^")
        } else if last.starts_with("||") {
            format!("||{name}^")
        } else if last.starts_with("address=/") {
            format!("address=/{name}/#")
        } else if last.starts_with("server=/") {
            format!("server=/{name}/")
        } else if let Some((ip, _)) = last.split_once(char::is_whitespace)
            && ip.parse::<std::net::IpAddr>().is_ok()
        {
            format!("{ip} {name}")
        } else {
            name.to_string()
        }
    }
}

/// The names of `text`'s rules with their line numbers.
fn names_in(text: &str) -> Vec<(String, u32)> {
    read_list("", text, Kind::Block, false)
        .rules
        .into_iter()
        .filter(|r| r.pattern.is_none())
        .map(|r| (r.name, r.line))
        .collect()
}

/// Appends `names` to list bytes in the style of its last rule line, with an inline
/// `# comment`; names already in the list are skipped. The existing bytes are kept as they
/// are (also bytes that are not UTF-8). Returns the new bytes and the names already present.
pub fn add_names(bytes: &[u8], names: &[String], comment: Option<&str>) -> (Vec<u8>, Vec<String>) {
    // Lines that are not UTF-8 are never rules, so reading them lossily finds the same names.
    let text = String::from_utf8_lossy(bytes);
    let present = names_in(&text);
    let crlf = bytes.windows(2).any(|w| w == b"\r\n");
    let nl = if crlf { "\r\n" } else { "\n" };
    let style = line_style(&text);
    let mut out = bytes.to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(nl.as_bytes());
    }
    let mut skipped = Vec::new();
    let mut added: Vec<&str> = Vec::new();
    for n in names {
        if present.iter().any(|(p, _)| p == n) || added.contains(&n.as_str()) {
            skipped.push(n.clone());
            continue;
        }
        added.push(n);
        out.extend_from_slice(style(n).as_bytes());
        if let Some(c) = comment {
            out.extend_from_slice(b"  # ");
            out.extend_from_slice(c.trim().as_bytes());
        }
        out.extend_from_slice(nl.as_bytes());
    }
    (out, skipped)
}

/// Removes `names` from list bytes: a line whose only rule is one of them goes; a hosts line
/// with other names keeps those. Comments, blank lines, order and lines that are not UTF-8
/// stay byte for byte. Returns the new bytes and the names that were not found.
pub fn remove_names(bytes: &[u8], names: &[String]) -> (Vec<u8>, Vec<String>) {
    let mut found = vec![false; names.len()];
    let mut out = Vec::with_capacity(bytes.len());
    let mut buf = String::new();
    for raw in bytes.split_inclusive(|&b| b == b'\n') {
        let trimmed = raw.len()
            - raw
                .iter()
                .rev()
                .take_while(|&&b| b == b'\n' || b == b'\r')
                .count();
        let (body, ending) = raw.split_at(trimmed);
        // A line that is not UTF-8 holds no rule (the loader skips it): kept as it is.
        let Ok(body) = std::str::from_utf8(body) else {
            out.extend_from_slice(raw);
            continue;
        };
        let line_names: Vec<String> = match parse_line(body, Kind::Block, false, &mut buf) {
            Line::Name { name, .. } => vec![name.to_string()],
            Line::Names { names, .. } => names,
            _ => Vec::new(),
        };
        let hit: Vec<usize> = names
            .iter()
            .enumerate()
            .filter(|(_, n)| line_names.contains(n))
            .map(|(i, _)| i)
            .collect();
        if hit.is_empty() {
            out.extend_from_slice(raw);
            continue;
        }
        for &i in &hit {
            found[i] = true;
        }
        let keep: Vec<&String> = line_names.iter().filter(|n| !names.contains(n)).collect();
        if keep.is_empty() {
            continue;
        }
        // A hosts line with other names: drop only the removed ones, keep the rest of it.
        let mut fields: Vec<&str> = Vec::new();
        let (rule, comment) = match body.find(" #").or_else(|| body.find("\t#")) {
            Some(i) => (&body[..i], &body[i..]),
            None => (body, ""),
        };
        for f in rule.split_whitespace() {
            let lower = normalize(f).unwrap_or_default();
            if !names.contains(&lower) {
                fields.push(f);
            }
        }
        out.extend_from_slice(fields.join(" ").as_bytes());
        out.extend_from_slice(comment.as_bytes());
        out.extend_from_slice(ending);
    }
    let missing = names
        .iter()
        .zip(found)
        .filter(|(_, f)| !f)
        .map(|(n, _)| n.clone())
        .collect();
    (out, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_and_remove_keep_comments_and_style() {
        let text = "# my list\r\n0.0.0.0 a.com b.com # two\r\n\r\n0.0.0.0 c.com\r\n";
        let (t, skipped) = add_names(
            text.as_bytes(),
            &["d.com".into(), "a.com".into()],
            Some("accounting"),
        );
        let t = String::from_utf8(t).unwrap();
        assert_eq!(skipped, vec!["a.com".to_string()]);
        assert!(
            t.ends_with("0.0.0.0 c.com\r\n0.0.0.0 d.com  # accounting\r\n"),
            "{t:?}"
        );
        let (t, missing) = remove_names(
            t.as_bytes(),
            &["a.com".into(), "c.com".into(), "z.com".into()],
        );
        let t = String::from_utf8(t).unwrap();
        assert_eq!(missing, vec!["z.com".to_string()]);
        assert_eq!(
            t,
            "# my list\r\n0.0.0.0 b.com # two\r\n\r\n0.0.0.0 d.com  # accounting\r\n"
        );
        assert!(matches!(
            checked_name("co.uk"),
            Err(EditError::PublicSuffix { .. })
        ));
        assert!(matches!(
            checked_name("a..b"),
            Err(EditError::InvalidName { .. })
        ));
    }
}
