//! The documentation against the repository and the real binary: every relative link of
//! README.md and docs/*.md reaches a file (and a heading, for `#anchor`), and every
//! `sinkhole` command line the README shows is a real command with real flags.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::harness::bin;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown file in docs/.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

/// The lines of `text` outside fenced code blocks, with their line numbers.
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            lines.push((n + 1, line));
        }
    }
    lines
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as `-`; a
/// repeated heading gets `-1`, `-2`…
fn anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (_, line) in prose(text) {
        let level = line.bytes().take_while(|&b| b == b'#').count();
        if level == 0 || level > 6 || line.as_bytes().get(level) != Some(&b' ') {
            continue;
        }
        let slug: String = line[level..]
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(slug.clone()).or_default();
        out.push(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    out
}

/// The targets of `[text](target)` links (and images) in `line`.
fn links(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        out.push(&after[..end]);
        rest = &after[end..];
    }
    out
}

#[test]
fn every_relative_link_reaches_a_file_and_a_heading() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        let name = doc.strip_prefix(root()).unwrap().display().to_string();
        for (n, line) in prose(&text) {
            for target in links(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
                let file = if path.is_empty() {
                    doc.clone()
                } else {
                    doc.parent().unwrap_or(Path::new(".")).join(path)
                };
                if !file.exists() {
                    broken.push(format!("{name}:{n}: {target}: no such file"));
                } else if !anchor.is_empty() {
                    let target_text = std::fs::read_to_string(&file).unwrap_or_default();
                    if !anchors(&target_text).iter().any(|a| a == anchor) {
                        broken.push(format!("{name}:{n}: {target}: no such heading"));
                    }
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn anchors_are_spelled_as_github_spells_them() {
    assert_eq!(
        anchors(
            "# A\n## [server]\n### Encrypted DNS (DNS over TLS, HTTPS and QUIC)\n## [[local.records]]\n```\n# not a heading\n```\n## A\n"
        ),
        [
            "a",
            "server",
            "encrypted-dns-dns-over-tls-https-and-quic",
            "localrecords",
            "a-1"
        ]
    );
}

/// The `sinkhole …` command lines of the README's shell blocks: the words after
/// `sinkhole` up to a comment, pipe or redirection.
fn readme_commands() -> Vec<(usize, Vec<String>)> {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut fenced = false;
    let mut commands = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            continue;
        }
        let line = line.trim_start().trim_start_matches("sudo ");
        let Some(rest) = line.strip_prefix("sinkhole ") else {
            continue;
        };
        let words = rest
            .split_whitespace()
            .take_while(|w| !matches!(*w, "#" | "|" | ">" | "&&" | "2>&1"))
            .map(str::to_string)
            .collect();
        commands.push((n + 1, words));
    }
    commands
}

#[test]
fn every_command_line_of_the_readme_is_a_real_command_with_real_flags() {
    let commands = readme_commands();
    assert!(commands.len() > 20, "{commands:?}");
    let mut wrong = Vec::new();
    for (n, words) in &commands {
        // The subcommand path: the leading words that are commands, as clap's help lists them.
        let mut path: Vec<&str> = Vec::new();
        let mut help = String::new();
        for w in words {
            if w.starts_with('-') {
                break;
            }
            let mut args = path.clone();
            args.push(w);
            let out = bin().args(&args).arg("--help").output().unwrap();
            if !out.status.success() {
                break;
            }
            path.push(w);
            help = String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if path.is_empty() {
            wrong.push(format!(
                "README.md:{n}: sinkhole {}: no such command",
                words.join(" ")
            ));
            continue;
        }
        for flag in words.iter().filter(|w| w.starts_with('-')) {
            let flag = flag.split('=').next().unwrap_or(flag);
            let spelled = |h: &str| {
                h.split(|c: char| c.is_whitespace() || c == ',')
                    .any(|w| w == flag)
            };
            if !spelled(&help) {
                wrong.push(format!(
                    "README.md:{n}: sinkhole {}: no flag {flag}",
                    path.join(" ")
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
