//! Pure functions over `iptables-save` text: which lines are sinkhole's (our `SINKHOLE-*`
//! chains and the hook rules that jump into them from the built-in chains), and the
//! `iptables-restore --noflush` scripts that add, remove or restore exactly those lines.
//! Everything else in the tables (fail2ban, docker, the administrator's rules) is never
//! named in a script, so it stays as it is. No processes here: `system` runs the tools.

use std::fmt::Write as _;

use super::iptables::{FILTER_CHAINS, HOOKS, NAT_CHAINS};

/// Our chains in `table` (`filter` or `nat`; none elsewhere).
pub(super) fn chains_of(table: &str) -> &'static [&'static str] {
    match table {
        "filter" => &FILTER_CHAINS,
        "nat" => &NAT_CHAINS,
        _ => &[],
    }
}

/// Whether an `iptables-save` line is a jump from `builtin` into our chain `ours`:
/// `-A BUILTIN … -j OURS`.
fn is_hook(line: &str, builtin: &str, ours: &str) -> bool {
    line.starts_with(&format!("-A {builtin} ")) && line.ends_with(&format!("-j {ours}"))
}

/// Whether a line is one of `table`'s hooks.
fn is_table_hook(table: &str, line: &str) -> bool {
    HOOKS
        .iter()
        .any(|(t, b, o)| *t == table && is_hook(line, b, o))
}

/// The chain a `:CHAIN POLICY [p:b]` line declares.
fn declared(line: &str) -> Option<&str> {
    line.strip_prefix(':')?.split(' ').next()
}

/// The chain an `-A CHAIN …` line appends to.
fn appended_to(line: &str) -> Option<&str> {
    line.strip_prefix("-A ")?.split(' ').next()
}

/// Sinkhole's lines of one table's `iptables-save -t TABLE` output: the `*table` line, our
/// chains' declarations (counters zeroed) and rules, the hooks, and `COMMIT`. This is what
/// a rollback restores; it is also valid `iptables-restore --noflush` input.
pub(super) fn ours(table: &str, saved: &str) -> String {
    let chains = chains_of(table);
    let mut out = format!("*{table}\n");
    for line in saved.lines() {
        if let Some(c) = declared(line)
            && chains.contains(&c)
        {
            let _ = writeln!(out, ":{c} - [0:0]");
        } else if appended_to(line).is_some_and(|c| chains.contains(&c))
            || is_table_hook(table, line)
        {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("COMMIT\n");
    out
}

/// The lines of `table`'s part (`*table` … `COMMIT`) of a text holding several tables.
fn section<'a>(text: &'a str, table: &str) -> Vec<&'a str> {
    let head = format!("*{table}");
    text.lines()
        .skip_while(|l| *l != head)
        .skip(1)
        .take_while(|l| *l != "COMMIT")
        .collect()
}

/// Drops `-I BUILTIN 1 … -j SINKHOLE-X` lines whose jump is already in `saved`.
pub(super) fn without_present_hooks(text: &str, saved: &str) -> String {
    let present = |builtin: &str, ours: &str| saved.lines().any(|l| is_hook(l, builtin, ours));
    let mut out = String::new();
    for line in text.lines() {
        let hooked = HOOKS.iter().any(|(_, b, o)| {
            line.starts_with(&format!("-I {b} 1 ")) && line.ends_with(o) && present(b, o)
        });
        if !hooked {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `iptables-restore --noflush` input that turns sinkhole's part of one table from what
/// `current` (`iptables-save -t TABLE` now) shows into what `want` (text from [`ours`],
/// possibly of several tables; empty: nothing of ours) holds. Hooks present in both stay
/// where they are; other rules and chains are not named. Empty when nothing is to be done.
pub(super) fn restoration(table: &str, want: &str, current: &str) -> String {
    let chains = chains_of(table);
    let want = section(want, table);
    let ours_in = |lines: &[&str]| -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| declared(l))
            .filter(|c| chains.contains(c))
            .map(str::to_string)
            .collect()
    };
    let current: Vec<&str> = current.lines().collect();
    let (want_chains, now_chains) = (ours_in(&want), ours_in(&current));
    let hooks = |lines: &[&str]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| is_table_hook(table, l))
            .map(|l| l.to_string())
            .collect()
    };
    let (want_hooks, now_hooks) = (hooks(&want), hooks(&current));
    let mut body = String::new();
    // A declaration creates the chain, or (with --noflush) empties it.
    for c in &want_chains {
        let _ = writeln!(body, ":{c} - [0:0]");
    }
    for h in now_hooks.iter().filter(|h| !want_hooks.contains(h)) {
        if let Some(rest) = h.strip_prefix("-A ") {
            let _ = writeln!(body, "-D {rest}");
        }
    }
    // Chains to delete are emptied first: one of them may jump to another.
    let gone: Vec<&String> = now_chains
        .iter()
        .filter(|c| !want_chains.contains(c))
        .collect();
    for c in &gone {
        let _ = writeln!(body, "-F {c}");
    }
    for c in &gone {
        let _ = writeln!(body, "-X {c}");
    }
    for l in &want {
        if appended_to(l).is_some_and(|c| chains.contains(&c)) {
            body.push_str(l);
            body.push('\n');
        }
    }
    for h in want_hooks.iter().filter(|h| !now_hooks.contains(h)) {
        if let Some((builtin, rest)) = h.strip_prefix("-A ").and_then(|r| r.split_once(' ')) {
            let _ = writeln!(body, "-I {builtin} 1 {rest}");
        }
    }
    if body.is_empty() {
        body
    } else {
        format!("*{table}\n{body}COMMIT\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVED: &str = "*filter\n:INPUT ACCEPT [0:0]\n:SINKHOLE-INPUT - [3:120]\n:MINE - [0:0]\n\
                         -A INPUT -j MINE\n\
                         -A INPUT -m comment --comment \"sinkhole hook\" -j SINKHOLE-INPUT\n\
                         -A MINE -j ACCEPT\n-A SINKHOLE-INPUT -j ACCEPT\nCOMMIT\n";

    #[test]
    fn removal_deletes_hooks_and_our_chains_only() {
        assert_eq!(
            restoration("filter", "", SAVED),
            "*filter\n-D INPUT -m comment --comment \"sinkhole hook\" -j SINKHOLE-INPUT\n\
             -F SINKHOLE-INPUT\n-X SINKHOLE-INPUT\nCOMMIT\n"
        );
        assert_eq!(restoration("nat", "", "*nat\nCOMMIT\n"), "");
    }

    #[test]
    fn ours_keeps_our_chains_and_hooks_only() {
        assert_eq!(
            ours("filter", SAVED),
            "*filter\n:SINKHOLE-INPUT - [0:0]\n\
             -A INPUT -m comment --comment \"sinkhole hook\" -j SINKHOLE-INPUT\n\
             -A SINKHOLE-INPUT -j ACCEPT\nCOMMIT\n"
        );
        assert_eq!(
            ours("nat", "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"),
            "*nat\nCOMMIT\n"
        );
    }

    #[test]
    fn restoring_keeps_present_hooks_and_names_no_other_chain() {
        let want = format!("{}*nat\nCOMMIT\n", ours("filter", SAVED));
        // Now: our chain holds other rules, an extra chain of ours, another hook, and
        // a chain someone else added.
        let now = "*filter\n:INPUT ACCEPT [0:0]\n:SINKHOLE-INPUT - [0:0]\n:SINKHOLE-DOH - [0:0]\n\
                   :f2b - [0:0]\n-A INPUT -j f2b\n\
                   -A INPUT -m comment --comment \"sinkhole hook\" -j SINKHOLE-INPUT\n\
                   -A FORWARD -m comment --comment \"sinkhole hook\" -j SINKHOLE-FORWARD\n\
                   -A SINKHOLE-INPUT -j SINKHOLE-DOH\n-A SINKHOLE-DOH -j DROP\n-A f2b -j DROP\nCOMMIT\n";
        assert_eq!(
            restoration("filter", &want, now),
            "*filter\n:SINKHOLE-INPUT - [0:0]\n\
             -D FORWARD -m comment --comment \"sinkhole hook\" -j SINKHOLE-FORWARD\n\
             -F SINKHOLE-DOH\n-X SINKHOLE-DOH\n-A SINKHOLE-INPUT -j ACCEPT\nCOMMIT\n"
        );
        // A hook that was there before and is gone now comes back first in its chain.
        let bare = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j f2b\nCOMMIT\n";
        assert_eq!(
            restoration("filter", &want, bare),
            "*filter\n:SINKHOLE-INPUT - [0:0]\n-A SINKHOLE-INPUT -j ACCEPT\n\
             -I INPUT 1 -m comment --comment \"sinkhole hook\" -j SINKHOLE-INPUT\nCOMMIT\n"
        );
        assert_eq!(restoration("nat", &want, "*nat\nCOMMIT\n"), "");
    }

    #[test]
    fn present_hooks_are_not_added_twice() {
        let text = "-A SINKHOLE-INPUT -j ACCEPT\n-I INPUT 1 -m comment --comment \"sinkhole hook\" -j SINKHOLE-INPUT\n\
                    -I FORWARD 1 -m comment --comment \"sinkhole hook\" -j SINKHOLE-FORWARD\n";
        let saved = "-A INPUT -m comment --comment \"sinkhole hook\" -j SINKHOLE-INPUT\n";
        let out = without_present_hooks(text, saved);
        assert!(!out.contains("-I INPUT"));
        assert!(out.contains("-I FORWARD"));
    }
}
