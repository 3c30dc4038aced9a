//! The reference's text against the page made of it, and against the example config.

use super::*;

#[test]
fn the_config_page_is_rendered_from_the_reference() {
    let page = config_manpage(CONFIG_REFERENCE, "0.0.0");
    assert!(page.starts_with(".TH SINKHOLE.TOML 5"));
    for heading in CONFIG_REFERENCE
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
    {
        assert!(
            page.contains(&format!(".SH \"{}\"", roff::escape(heading))),
            "{heading}"
        );
    }
    assert!(page.contains(".SH \"[upstream]\"") && page.contains(".SS \"[[local.records]]\""));
    assert!(page.contains("\\fBtls_handshake_timeout_ms\\fR = \\fB5000\\fR"));
    // No Markdown left over, and nothing roff would take for a request it was not given.
    for line in page.lines() {
        assert!(!line.starts_with("```") && !line.starts_with('|'), "{line}");
        assert!(!line.starts_with('\''), "{line}");
        if let Some(request) = line.strip_prefix('.') {
            let name = request.split_whitespace().next().unwrap_or("");
            assert!(
                ["TH", "SH", "SS", "PP", "IP", "TP", "RS", "RE", "nf", "fi"].contains(&name),
                "{line}"
            );
        }
    }
    // Every .RS is closed.
    let opened = page.lines().filter(|l| l.starts_with(".RS")).count();
    assert_eq!(opened, page.lines().filter(|l| *l == ".RE").count());
}

/// `section.key` for every key the example writes, set or commented out (`# key = …`),
/// with the table it stands in (`[x]`, `[[x]]`, also commented).
fn example_keys() -> Vec<(String, String)> {
    let mut keys = Vec::new();
    let mut table = String::new();
    for line in EXAMPLE_CONFIG.lines() {
        let t = line.trim_start_matches('#').trim();
        if t.starts_with('[') && t.ends_with(']') && !t.contains(' ') {
            table = t.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        let Some((key, _)) = t.split_once(" = ") else {
            continue;
        };
        // A key: a bare word at the start of the line (or of its comment).
        let word = key.trim();
        let commented_prose = line.trim_start().starts_with("#   ");
        if !table.is_empty()
            && !commented_prose
            && !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            keys.push((table.clone(), word.to_string()));
        }
    }
    keys
}

/// The text of the reference's section for `table`: from its heading (`## [table]`,
/// `### [[table]]`) to the next heading of the same or a higher level.
fn section(table: &str) -> Option<String> {
    let lines: Vec<&str> = CONFIG_REFERENCE.lines().collect();
    let start = lines.iter().position(|l| {
        l.starts_with('#')
            && l.trim_start_matches('#')
                .trim()
                .trim_matches(|c| c == '[' || c == ']')
                == table
    })?;
    let level = lines.get(start)?.bytes().take_while(|&b| b == b'#').count();
    let end = lines
        .iter()
        .enumerate()
        .skip(start + 1)
        .find(|(_, l)| {
            let n = l.bytes().take_while(|&b| b == b'#').count();
            n > 0 && n <= level && l.as_bytes().get(n) == Some(&b' ')
        })
        .map_or(lines.len(), |(i, _)| i);
    Some(lines.get(start..end)?.join("\n"))
}

#[test]
fn every_key_of_the_example_is_documented_in_its_section() {
    let keys = example_keys();
    assert!(keys.len() > 100, "{keys:?}");
    let mut missing = Vec::new();
    for (table, key) in &keys {
        let Some(text) = section(table) else {
            missing.push(format!("[{table}] (no section)"));
            continue;
        };
        // A key's entry starts a list item: "- `key` = `default`: …" or "- `key` (…)".
        let entry = format!("- `{key}`");
        let shared = format!(", `{key}` =");
        if !text
            .lines()
            .any(|l| l.starts_with(&entry) || l.contains(&shared))
        {
            missing.push(format!("{table}.{key}"));
        }
    }
    assert!(missing.is_empty(), "not in docs/config.md: {missing:?}");
}

#[test]
fn every_section_of_the_reference_has_its_table_in_the_example() {
    let keys = example_keys();
    for heading in CONFIG_REFERENCE
        .lines()
        .filter(|l| l.starts_with("## [") || l.starts_with("### ["))
    {
        let table = heading
            .trim_start_matches('#')
            .trim()
            .trim_matches(|c| c == '[' || c == ']');
        assert!(
            keys.iter().any(|(t, _)| t == table),
            "{table} not in the example"
        );
    }
}
