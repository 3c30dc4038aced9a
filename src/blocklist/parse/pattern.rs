//! Glob and regex rules: `ads*.example.*` (a globset glob matched against the whole name),
//! a bare Pi-hole style regex such as `(^|\.)lgsmartad\.com$` (searched in the name), and the
//! checks that each compiles, in bounded time and stack, before it reaches the list. The
//! AdBlock `/regex/` syntax is read in `adblock.rs` and checked here.

use super::{Kind, Line, PatternKind, SkipReason};

/// True when a line (one that no name format claimed) reads as a bare regex.
pub(super) fn looks_like_regex(s: &str) -> bool {
    // Names never hold `/`, `:` or `&`; lines with them are URL rules, not name regexes.
    if s.contains(['/', '&', '='])
        || s.contains(':') && s.replace("[:", "").replace(":]", "").contains(':')
    {
        return false;
    }
    s.starts_with('^')
        || s.ends_with('$')
        || s.starts_with("(^")
        || s.contains(['\\', '(', ')', '+'])
        || s.contains('{') && s.contains(|c: char| c.is_ascii_digit()) && !s.contains(",*")
        || s.contains('|') && !s.starts_with('|')
}

/// Deepest nesting of groups and repetitions a list regex may have. Real lists stay far
/// below it; a line of ~200 stacked repetitions (`c****…`) used to overflow a 2 MiB thread
/// stack (the reload thread's) while compiling, an abort that takes the process down (#10,
/// found by the `list_lines` fuzz target).
pub const REGEX_NEST_LIMIT: u32 = 32;

/// A regex rule (case-insensitive, on bytes), or the skip saying why not: a URL regex, one
/// that does not compile within the size and nesting limits, or one that matches every name.
pub(super) fn regex_line(re: &str, kind: Kind) -> Line<'static> {
    if re.contains("\\/") || re.contains("://") {
        return Line::Skip(
            SkipReason::UrlRule,
            "regex over URLs (needs a /), which no DNS name matches".into(),
        );
    }
    match regex::bytes::RegexBuilder::new(re)
        .case_insensitive(true)
        .unicode(false)
        .size_limit(1 << 20)
        .nest_limit(REGEX_NEST_LIMIT)
        .build()
    {
        Ok(r) if r.is_match(b"") => Line::Skip(
            SkipReason::BadRegex,
            "regex matches the empty string, so every name".into(),
        ),
        Ok(_) => Line::Pattern {
            pattern: PatternKind::Regex,
            text: re.to_string(),
            kind,
        },
        Err(e) => Line::Skip(
            SkipReason::BadRegex,
            format!("regex does not compile: {}", last_line(&e.to_string())),
        ),
    }
}

/// The last line of a (multi-line) regex error: the line that says what is wrong.
fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or(s)
}

/// A glob rule (lower-cased), or the skip saying why not.
pub(super) fn glob_line(glob: &str, kind: Kind) -> Line<'static> {
    let text = glob.to_ascii_lowercase();
    if !text
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"-_.*?[]{},!^".contains(&c))
    {
        return Line::Skip(
            SkipReason::BadGlob,
            "character no host name or glob contains".into(),
        );
    }
    match globset::GlobBuilder::new(&text)
        .literal_separator(false)
        .build()
    {
        Ok(_) => Line::Pattern {
            pattern: PatternKind::Glob,
            text,
            kind,
        },
        Err(e) => Line::Skip(SkipReason::BadGlob, format!("glob does not compile: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_line;
    use super::super::tests::{block, one, reason};
    use super::*;

    // See: #10 (found by the list_lines fuzz target: an abort, which no test can catch, so
    // this runs on a thread with the reload thread's 2 MiB stack and must come back)
    #[test]
    fn r10_deeply_nested_regex_is_skipped_not_a_stack_overflow() {
        let line = format!("/c{}(x)/", "*".repeat(200));
        let r = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || reason(&line))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(r, SkipReason::BadRegex);
        // Real nesting stays well within the limit.
        assert!(matches!(
            one("/^(a(b(c(d(e)+)+)+)+)+\\.example$/"),
            Line::Pattern { .. }
        ));
    }

    #[test]
    fn exact_globs_regexes_and_idn() {
        let mut buf = String::new();
        assert!(matches!(
            parse_line("=A.com", Kind::Block, false, &mut buf),
            Line::Name {
                name: "a.com",
                exact: true,
                ..
            }
        ));
        assert!(matches!(
            parse_line("a.com", Kind::Block, true, &mut buf),
            Line::Name { exact: true, .. }
        ));
        assert!(matches!(
            parse_line("||a.com^", Kind::Block, true, &mut buf),
            Line::Name { exact: false, .. }
        ));
        let glob = |t: &str| Line::Pattern {
            pattern: PatternKind::Glob,
            text: t.into(),
            kind: Kind::Block,
        };
        assert_eq!(one("ads*.Example.*"), glob("ads*.example.*"));
        assert_eq!(one("*.ads?.com"), glob("*.ads?.com"));
        assert_eq!(
            one("||clk.rtpdn*.com^"),
            glob("{clk.rtpdn*.com,*.clk.rtpdn*.com}")
        );
        assert_eq!(one("||tracker."), glob("{tracker.*,*.tracker.*}"));
        assert_eq!(one("{a.x*.com,*.a.x*.com}"), glob("{a.x*.com,*.a.x*.com}"));
        assert_eq!(
            one("@@|core.crazyegg.com^|"),
            Line::Names {
                names: vec!["core.crazyegg.com".into()],
                kind: Kind::Allow,
                exact: true
            }
        );
        assert!(matches!(
            one("/^ad[sx]\\./"),
            Line::Pattern {
                pattern: PatternKind::Regex,
                ..
            }
        ));
        assert!(matches!(
            one("(^|\\.)lgsmartad\\.com$"),
            Line::Pattern {
                pattern: PatternKind::Regex,
                ..
            }
        ));
        assert!(matches!(
            one(
                "^ad([sxv]?[0-9]*|system)[_.-]([^.[:space:]]+\\.){1,}|[_.-]ad([sxv]?[0-9]*|system)[_.-]"
            ),
            Line::Pattern {
                pattern: PatternKind::Regex,
                ..
            }
        ));
        assert_eq!(reason("/(unclosed/"), SkipReason::BadRegex);
        assert_eq!(reason("/a|/"), SkipReason::BadRegex);
        assert_eq!(
            reason("/(https?:\\/\\/)213\\.32\\.115\\..{100,}/"),
            SkipReason::UrlRule
        );
        assert_eq!(reason("/api/cmp_tracker|"), SkipReason::UrlRule);
        assert_eq!(one("bücher.de"), block("xn--bcher-kva.de"));
    }
}
