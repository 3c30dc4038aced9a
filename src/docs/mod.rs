//! Reference pages made from the project's own text: `sinkhole.toml(5)` rendered from
//! `sinkhole.example.toml` (every key, its default and meaning, written once), so that the
//! man page and the example file never disagree. The command pages come from the clap
//! definitions (`cli::man`).

/// The commented example config, as shipped.
pub const EXAMPLE_CONFIG: &str = include_str!("../../sinkhole.example.toml");

/// Escapes `text` for a roff text line: backslashes, and a leading `.` or `'` that roff
/// would read as a request.
pub fn roff_escape(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// `sinkhole.toml(5)` in roff: a section per `[table]` of the example, its comments as
/// paragraphs and its keys as literal lines. `version` goes in the header.
pub fn config_manpage(example: &str, version: &str) -> String {
    let mut out = format!(
        ".TH SINKHOLE.TOML 5 \"\" \"sinkhole {version}\" \"File Formats\"\n\
         .SH NAME\nsinkhole.toml \\- configuration of the sinkhole filtering DNS resolver\n\
         .SH SYNOPSIS\n/etc/sinkhole/sinkhole.toml\n\
         .SH DESCRIPTION\nA TOML file read by \\fBsinkhole serve \\-\\-config\\fR FILE and checked by \
         \\fBsinkhole config check\\fR FILE. Every key is optional; what follows is the \
         commented example shipped with sinkhole, each key at its default or an example \
         value. Errors name the file, line, column and key. \\fBkill \\-HUP\\fR (or \
         \\fBsystemctl reload sinkhole\\fR) re\\-reads it.\n"
    );
    let mut literal = false;
    let mut para = false;
    for line in example.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            if literal {
                out.push_str(".fi\n");
                literal = false;
            }
            out.push_str(&format!(".SH \"{}\"\n", t.replace('"', "")));
            para = false;
        } else if let Some(c) = t.strip_prefix('#') {
            if literal {
                out.push_str(".fi\n");
                literal = false;
            }
            let c = c.strip_prefix(' ').unwrap_or(c);
            if c.trim().is_empty() {
                continue;
            }
            // An indented comment line is an example command: kept as it is.
            if c.starts_with("  ") {
                out.push_str(&format!(".PP\n.nf\n{}\n.fi\n", roff_escape(c)));
                para = false;
                continue;
            }
            if !para {
                out.push_str(".PP\n");
                para = true;
            }
            out.push_str(&roff_escape(c));
            out.push('\n');
        } else if t.is_empty() {
            if literal {
                out.push_str(".fi\n");
                literal = false;
            }
            para = false;
        } else {
            if !literal {
                out.push_str(".PP\n.nf\n");
                literal = true;
                para = false;
            }
            out.push_str(&format!("\\fB{}\\fR\n", roff_escape(t)));
        }
    }
    if literal {
        out.push_str(".fi\n");
    }
    out.push_str(".SH SEE ALSO\n\\fBsinkhole\\fR(1), \\fBsinkhole\\-serve\\fR(1), \\fBsinkhole\\-config\\fR(1)\n");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_table_and_key_of_the_example_is_in_the_page() {
        let page = config_manpage(EXAMPLE_CONFIG, "0.0.0");
        assert!(page.starts_with(".TH SINKHOLE.TOML 5"));
        for line in EXAMPLE_CONFIG.lines().map(str::trim) {
            if line.starts_with('[') {
                assert!(page.contains(&format!(".SH \"{line}\"")), "{line}");
            } else if !line.starts_with('#') && !line.is_empty() {
                assert!(page.contains(&roff_escape(line)), "{line}");
            }
        }
        // Nothing a roff line would take for a request.
        assert!(page.lines().all(|l| !l.starts_with('\'')), "{page}");
    }

    #[test]
    fn roff_requests_and_escapes_are_neutralised() {
        assert_eq!(roff_escape(".start"), "\\&.start");
        assert_eq!(roff_escape("a\\b-c"), "a\\eb\\-c");
    }
}
