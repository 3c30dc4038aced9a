//! Config errors that name the file, the line, the column and the key, in the form
//! `sinkhole.toml:14:12: upstream.servers: "1.1.1.1:5x": invalid port`.

use std::fmt;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file as given on the command line (or `<embedded default>`).
    pub file: String,
    /// 1-based line; 0 when the problem is not tied to a place (e.g. the file is missing).
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// The dotted key the problem is about (`blocking.mode`), when known.
    pub key: Option<String>,
    /// What is wrong and, where useful, what to do.
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        } else {
            write!(f, "{}: ", self.file)?;
        }
        if let Some(k) = &self.key {
            write!(f, "{k}: ")?;
        }
        f.write_str(&self.msg)
    }
}

impl ConfigError {
    /// An error about `key` at byte range `span` of `text` (an empty `0..0` span, as the
    /// defaults carry, means no place in the file).
    pub fn at(
        text: &str,
        file: &str,
        span: std::ops::Range<usize>,
        key: &str,
        msg: impl Into<String>,
    ) -> Self {
        let (line, col) = if span == (0..0) {
            (0, 0)
        } else {
            line_col(text, span.start)
        };
        Self {
            file: file.to_string(),
            line,
            col,
            key: Some(key.to_string()),
            msg: msg.into(),
        }
    }
}

/// Every problem found in one config file (validation collects them all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// 1-based (line, column) of a byte offset in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, col)
}

/// The dotted key at a byte offset: the nearest `[table]` header above plus the key that
/// starts the offset's line. Used for serde errors, which carry a span but not the key path.
pub fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[line_start..line_end].trim();
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) if line.starts_with('[') => Some(t),
        (Some(t), None) => Some(t),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 11), (2, 6));
    }

    #[test]
    fn key_at_names_table_and_key() {
        let t = "[server]\nlisten = [\"x\"]\n\n[upstream]\ntimeout_ms = \"fast\"\n";
        let off = t.find("\"fast\"").unwrap();
        assert_eq!(key_at(t, off).as_deref(), Some("upstream.timeout_ms"));
    }
}

/// What the config tests share.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::Path;

    /// The errors of config `text` (files relative to `base`) as shown, `file:line:col:
    /// key: message`; panics when the text is valid.
    pub(crate) fn errs_in(text: &str, base: Option<&Path>) -> Vec<String> {
        match crate::config::Config::parse(text, "t.toml", base) {
            Ok(_) => panic!("expected config errors for:\n{text}"),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    /// [`errs_in`] without a folder (no files).
    pub(crate) fn errs(text: &str) -> Vec<String> {
        errs_in(text, None)
    }
}
