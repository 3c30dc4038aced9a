//! The Markdown the project writes, rendered as roff for man(7): what lets
//! `docs/config.md` be both the web page and `sinkhole.toml(5)`.
//!
//! Only the subset those documents use is understood, line by line, with no parser crate:
//! ATX headings (`##` becomes `.SH`, `###` `.SS`), paragraphs, fenced code blocks (`.nf`),
//! `-`/`*` and `1.` lists with indented continuation lines (nested lists and code blocks
//! inside items too), and pipe tables (each row a `.TP` paragraph tagged with its first
//! cell). Inline: `code` and `**strong**` in bold, `*emphasis*` in italics, links as their
//! text (an absolute URL follows in angle brackets), images left out, backslash escapes. Everything that is
//! not understood is printed as text; nothing in the input can become a roff request.

/// A block of the document.
#[derive(Debug, PartialEq)]
enum Block {
    /// `#` … `######`: the level and the text.
    Heading(usize, String),
    /// Lines of one paragraph.
    Para(String),
    /// The lines of a fenced code block, as written.
    Code(Vec<String>),
    /// A list: ordered or not, each item its own blocks.
    List(bool, Vec<Vec<Self>>),
    /// A pipe table: the rows (the header first), each a list of cells.
    Table(Vec<Vec<String>>),
}

/// Renders `markdown` as the body of a man page (no `.TH`). A level-1 heading is left out
/// (the page has its own title); `##` headings become sections, `###` subsections.
pub fn to_roff(markdown: &str) -> String {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut out = String::new();
    render(&parse(&lines), &mut out);
    out
}

/// Spaces a line starts with.
fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// A list item's marker at the start of `line`: ordered or not, and the item's content
/// column.
fn marker(line: &str) -> Option<(bool, usize)> {
    if line.starts_with("- ") || line.starts_with("* ") {
        return Some((false, 2));
    }
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    (digits > 0 && line[digits..].starts_with(". ")).then_some((true, digits + 2))
}

fn is_fence(line: &str) -> bool {
    line.trim_start().starts_with("```")
}

fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.bytes().take_while(|&b| b == b'#').count();
    let rest = line.get(level..)?;
    ((1..=6).contains(&level) && rest.starts_with(' ')).then(|| (level, rest.trim()))
}

/// Whether `line` starts a block other than a paragraph (and so ends one).
fn starts_block(line: &str) -> bool {
    is_fence(line) || heading(line).is_some() || line.starts_with('|') || marker(line).is_some()
}

fn parse(lines: &[&str]) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut i = 0;
    while let Some(&line) = lines.get(i) {
        if line.trim().is_empty() {
            i += 1;
        } else if is_fence(line) {
            let mut code = Vec::new();
            i += 1;
            while let Some(&l) = lines.get(i) {
                i += 1;
                if is_fence(l) {
                    break;
                }
                code.push(l.to_string());
            }
            blocks.push(Block::Code(code));
        } else if let Some((level, text)) = heading(line) {
            blocks.push(Block::Heading(level, text.to_string()));
            i += 1;
        } else if line.starts_with('|') {
            let mut rows = Vec::new();
            while let Some(l) = lines.get(i).filter(|l| l.starts_with('|')) {
                let cells = cells(l);
                // The alignment row (`|---|:--|`) is no content.
                if !cells
                    .iter()
                    .all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':' | ' ')))
                {
                    rows.push(cells);
                }
                i += 1;
            }
            blocks.push(Block::Table(rows));
        } else if let Some((ordered, _)) = marker(line) {
            let mut items = Vec::new();
            while let Some((o, width)) = lines.get(i).and_then(|l| marker(l)) {
                if o != ordered {
                    break;
                }
                let (item, next) = list_item(lines, i, width);
                items.push(parse(&item.iter().map(String::as_str).collect::<Vec<_>>()));
                i = next;
                // A blank line between items keeps the list going.
                let mut j = i;
                while lines.get(j).is_some_and(|l| l.trim().is_empty()) {
                    j += 1;
                }
                if lines.get(j).and_then(|l| marker(l)).map(|m| m.0) == Some(ordered) {
                    i = j;
                }
            }
            blocks.push(Block::List(ordered, items));
        } else {
            let mut text = vec![line.trim()];
            i += 1;
            while let Some(&l) = lines.get(i) {
                if l.trim().is_empty() || starts_block(l) {
                    break;
                }
                text.push(l.trim());
                i += 1;
            }
            blocks.push(Block::Para(text.join("\n")));
        }
    }
    blocks
}

/// The lines of the list item at `start` (content column `width`), de-indented, and the
/// index after it.
fn list_item(lines: &[&str], start: usize, width: usize) -> (Vec<String>, usize) {
    let mut item = vec![
        lines
            .get(start)
            .and_then(|l| l.get(width..))
            .unwrap_or("")
            .to_string(),
    ];
    let mut in_code = item.first().is_some_and(|l| is_fence(l));
    let mut i = start + 1;
    while let Some(&l) = lines.get(i) {
        if l.trim().is_empty() {
            // Blank: the item goes on only if the next text is indented into it.
            let mut j = i;
            while lines.get(j).is_some_and(|l| l.trim().is_empty()) {
                j += 1;
            }
            if !in_code && lines.get(j).is_none_or(|l| indent(l) < width) {
                break;
            }
            item.push(String::new());
        } else if indent(l) >= width {
            let l = l.get(width..).unwrap_or("");
            in_code ^= is_fence(l);
            item.push(l.to_string());
        } else if !in_code
            && !starts_block(l)
            && item
                .last()
                .is_some_and(|p| !p.trim().is_empty() && !is_fence(p))
        {
            // A lazy continuation of the item's paragraph.
            item.push(l.trim().to_string());
        } else {
            break;
        }
        i += 1;
    }
    while item.last().is_some_and(|l| l.trim().is_empty()) {
        item.pop();
    }
    (item, i)
}

/// The cells of a table row; `\|` is a pipe inside a cell (also inside a code span).
fn cells(row: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = row.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // As GitHub reads tables: the escape is undone before inline markup, so
            // that it works inside code spans too.
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => cells.push(std::mem::take(&mut cell)),
            c => cell.push(c),
        }
    }
    cells.push(cell);
    // The outer pipes leave an empty first and last cell.
    if cells.first().is_some_and(|c| c.trim().is_empty()) {
        cells.remove(0);
    }
    if cells.last().is_some_and(|c| c.trim().is_empty()) {
        cells.pop();
    }
    cells.iter().map(|c| c.trim().to_string()).collect()
}

fn render(blocks: &[Block], out: &mut String) {
    for block in blocks {
        match block {
            Block::Heading(1, _) => {}
            Block::Heading(level, text) => {
                let text = plain(text).replace('"', "\\(dq");
                let request = if *level == 2 { ".SH" } else { ".SS" };
                out.push_str(&format!("{request} \"{}\"\n", text));
            }
            Block::Para(text) => {
                let text = inline(text, 'R');
                if !text.trim().is_empty() {
                    out.push_str(".PP\n");
                    text_lines(&text, out);
                }
            }
            Block::Code(lines) => code(lines, out),
            Block::List(ordered, items) => {
                for (n, item) in items.iter().enumerate() {
                    let (tag, width) = if *ordered {
                        (format!("{}.", n + 1), 4)
                    } else {
                        ("\\(bu".to_string(), 2)
                    };
                    out.push_str(&format!(".IP {tag} {width}\n"));
                    let rest = match item.split_first() {
                        Some((Block::Para(text), rest)) => {
                            text_lines(&inline(text, 'R'), out);
                            rest
                        }
                        _ => item.as_slice(),
                    };
                    if !rest.is_empty() {
                        out.push_str(&format!(".RS {width}\n"));
                        render(rest, out);
                        out.push_str(".RE\n");
                    }
                }
            }
            Block::Table(rows) => {
                let header = rows.first().cloned().unwrap_or_default();
                for row in rows.iter().skip(1) {
                    let Some((tag, rest)) = row.split_first() else {
                        continue;
                    };
                    out.push_str(".TP\n");
                    text_lines(&inline(tag, 'R'), out);
                    let body: Vec<String> = if rest.len() == 1 {
                        rest.iter().map(|c| inline(c, 'R')).collect()
                    } else {
                        rest.iter()
                            .enumerate()
                            .map(|(k, c)| {
                                let name = header.get(k + 1).map_or("", String::as_str);
                                format!("{}: {}", inline(name, 'R'), inline(c, 'R'))
                            })
                            .collect()
                    };
                    text_lines(&body.join("; "), out);
                }
            }
        }
    }
}

/// A code block: literal lines, indented, not filled.
fn code(lines: &[String], out: &mut String) {
    out.push_str(".PP\n.RS 4\n.nf\n");
    for line in lines {
        out.push_str(&line_start(&escape(line)));
        out.push('\n');
    }
    out.push_str(".fi\n.RE\n");
}

/// Writes filled text: each line trimmed (a leading space would break the line), none
/// empty, none read as a request.
fn text_lines(text: &str, out: &mut String) {
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        out.push_str(&line_start(line));
        out.push('\n');
    }
}

/// Protects a line that roff would take for a request.
fn line_start(line: &str) -> String {
    if line.starts_with('.') || line.starts_with('\'') {
        format!("\\&{line}")
    } else {
        line.to_string()
    }
}

/// Escapes literal text for roff: backslashes, minus signs, and the few characters outside
/// ASCII the documents use (as roff glyph names, so that any output device renders them).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            '\u{2192}' => out.push_str("\\(->"),
            '\u{2190}' => out.push_str("\\(<-"),
            '\u{2026}' => out.push_str("..."),
            '\u{00d7}' => out.push_str("\\(mu"),
            '\u{2013}' => out.push_str("\\(en"),
            '\u{2014}' => out.push_str("\\(em"),
            '\u{2264}' => out.push_str("\\(<="),
            '\u{2265}' => out.push_str("\\(>="),
            '\u{2260}' => out.push_str("\\(!="),
            '\u{00a7}' => out.push_str("\\(sc"),
            '\u{00b5}' => out.push_str("\\(mc"),
            '\u{2018}' | '\u{2019}' => out.push('\''),
            '\u{201c}' | '\u{201d}' => out.push('"'),
            c if c.is_ascii() => out.push(c),
            c => out.push_str(&format!("\\[u{:04X}]", u32::from(c))),
        }
    }
    out
}

/// Heading text without markup.
fn plain(text: &str) -> String {
    inline(text, 'R')
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
}

/// Renders inline Markdown; `font` is the font to return to after a change (`R`, or `B`
/// inside strong text).
fn inline(text: &str, font: char) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let after = &rest[c.len_utf8()..];
        match c {
            '`' => {
                let ticks = rest.len() - rest.trim_start_matches('`').len();
                let fence = &rest[..ticks];
                if let Some(end) = rest[ticks..].find(fence) {
                    let span = &rest[ticks..ticks + end];
                    let span = span
                        .strip_prefix(' ')
                        .filter(|s| s.ends_with(' '))
                        .map_or(span, |s| &s[..s.len() - 1]);
                    out.push_str(&format!("\\fB{}\\f{font}", escape(span)));
                    rest = &rest[2 * ticks + end..];
                } else {
                    out.push_str(&escape(fence));
                    rest = &rest[ticks..];
                }
            }
            '\\' if after.starts_with(|p: char| p.is_ascii_punctuation()) => {
                let p = &after[..1];
                out.push_str(&escape(p));
                rest = &after[1..];
            }
            '*' if after.starts_with('*') => {
                if let Some(end) = after[1..].find("**") {
                    out.push_str(&format!("\\fB{}\\f{font}", inline(&after[1..1 + end], 'B')));
                    rest = &after[1 + end + 2..];
                } else {
                    out.push_str("**");
                    rest = &after[1..];
                }
            }
            '*' if after.starts_with(|n: char| !n.is_whitespace()) => match emphasis_end(after) {
                Some(end) => {
                    out.push_str(&format!("\\fI{}\\f{font}", inline(&after[..end], 'I')));
                    rest = &after[end + 1..];
                }
                None => {
                    out.push('*');
                    rest = after;
                }
            },
            // An image says nothing on a terminal: left out.
            '!' if after.starts_with('[') => match link(after) {
                Some((_, _, len)) => rest = &after[len..],
                None => {
                    out.push('!');
                    rest = after;
                }
            },
            '[' => match link(rest) {
                Some((label, url, len)) => {
                    out.push_str(&inline(label, font));
                    if url.starts_with("http://") || url.starts_with("https://") {
                        out.push_str(&format!(" <{}>", escape(url)));
                    }
                    rest = &rest[len..];
                }
                None => {
                    out.push('[');
                    rest = after;
                }
            },
            c => {
                out.push_str(&escape(&rest[..c.len_utf8()]));
                rest = after;
            }
        }
    }
    out
}

/// Where a `*emphasis*` that starts at `text` ends: a `*` after a non-space, not followed by
/// a letter or digit.
fn emphasis_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    (1..bytes.len()).find(|&k| {
        bytes.get(k) == Some(&b'*')
            && bytes.get(k - 1).is_some_and(|b| !b.is_ascii_whitespace())
            && !bytes.get(k + 1).is_some_and(u8::is_ascii_alphanumeric)
            && !text[..k].contains('\n')
    })
}

/// A `[label](url)` at the start of `text`: the label, the URL and the length.
fn link(text: &str) -> Option<(&str, &str, usize)> {
    let close = text.find("](")?;
    let label = text.get(1..close)?;
    if label.contains('\n') {
        return None;
    }
    let end = text[close + 2..].find(')')?;
    let url = &text[close + 2..close + 2 + end];
    (!url.contains(char::is_whitespace)).then_some((label, url, close + 3 + end))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn headings_paragraphs_and_inline_markup() {
        let roff = to_roff(
            "# Title\n\nFirst `a-b` and **strong `x`** and *em*.\nSecond line, [a link](other.md#x) \
             and [web](https://example.org/).\n\n## [server]\n\n### Sub\n\n.dot starts\n",
        );
        assert_eq!(
            roff,
            ".PP\nFirst \\fBa\\-b\\fR and \\fBstrong \\fBx\\fB\\fR and \\fIem\\fR.\n\
             Second line, a link and web <https://example.org/>.\n\
             .SH \"[server]\"\n.SS \"Sub\"\n.PP\n\\&.dot starts\n"
        );
    }

    #[test]
    fn code_blocks_are_literal_and_cannot_issue_requests() {
        let roff = to_roff("```sh\n.evil\n'also\na\\b --flag\n\n```\n");
        assert_eq!(
            roff,
            ".PP\n.RS 4\n.nf\n\\&.evil\n\\&'also\na\\eb \\-\\-flag\n\n.fi\n.RE\n"
        );
    }

    #[test]
    fn lists_nest_and_hold_code_blocks() {
        let md = "1. One\n   more.\n\n   ```\n   x\n   ```\n2. Two\n   - inner\n     text\n   - second\n\nAfter.\n";
        let roff = to_roff(md);
        assert_eq!(
            roff,
            ".IP 1. 4\nOne\nmore.\n.RS 4\n.PP\n.RS 4\n.nf\nx\n.fi\n.RE\n.RE\n\
             .IP 2. 4\nTwo\n.RS 4\n.IP \\(bu 2\ninner\ntext\n.IP \\(bu 2\nsecond\n.RE\n.PP\nAfter.\n"
        );
    }

    #[test]
    fn tables_become_tagged_paragraphs() {
        let md = "| key | effect |\n|---|---|\n| `a\\|b` | one \\| two |\n| b | three |\n";
        assert_eq!(to_roff(md), ".TP\n\\fBa|b\\fR\none | two\n.TP\nb\nthree\n");
        let three = "| w | x | y |\n|--|--|--|\n| a | 1 | 2 |\n";
        assert_eq!(to_roff(three), ".TP\na\nx: 1; y: 2\n");
    }

    #[test]
    fn unmatched_markup_is_text() {
        assert_eq!(
            to_roff("a * b, `c, [d] e, 2*3 and *.example.com\n"),
            ".PP\na * b, `c, [d] e, 2*3 and *.example.com\n"
        );
        assert_eq!(escape("a → b … ×"), "a \\(-> b ... \\(mu");
        assert_eq!(to_roff("![A picture](pic.png)\n\nText!\n"), ".PP\nText!\n");
    }
}
