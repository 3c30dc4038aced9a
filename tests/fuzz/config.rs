//! Target `config_text`: config files through `Config::parse` (TOML, then validation with
//! list paths resolved against the crate's folder), and a valid `[firewall]` section on to
//! the pure rule-set renderers.
//!
//! Property: every error has a place inside the text (line 1..=lines, column 1..=length of
//! that line + 1), or none at all (line 0 and column 0: not tied to a place); the text of
//! every error is non-empty.

use sinkhole::config::Config;
use sinkhole::firewall::{Backend, Ruleset, render};

use crate::engine::{Shape, Target, Verdict, fuzz, sig};
use crate::seeds::crate_dir;

fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let dir = crate_dir();
    for f in [
        dir.join("sinkhole.example.toml"),
        dir.join("src/config/default.toml"),
        dir.join("tests/data/firewall/gateway.toml"),
        dir.join("tests/data/firewall/lan-host.toml"),
    ] {
        let text = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        // Comments are most of the example; a copy without them mutates where it matters.
        let bare: Vec<&[u8]> = text
            .split(|&b| b == b'\n')
            .filter(|l| !l.starts_with(b"#") && !l.is_empty())
            .collect();
        out.push(bare.join(&b'\n'));
        out.push(text);
    }
    // The sections the example has only as comments: groups and schedules, local
    // records, limits, answer checks.
    out.push(
        b"[server]\ntimezone = \"Europe/Berlin\"\n[limits]\nqps = 50\nburst = 200\nexempt = [\"10.0.0.0/8\"]\nrrl_rps = 5\n\
          [blocking]\nresponse_ips = [\"203.0.113.0/24\"]\nrebind_allow = [\"lan\"]\n\
          lists = [{ source = \"blocklists/messaging.txt\", schedule = [\"mon-fri 09:00-17:30\"] }]\n\
          [[groups]]\nname = \"kids\"\nclients = [\"192.168.2.0/24\", \"aa:bb:cc:dd:ee:ff\"]\n\
          lists = [\"blocklists/messaging.txt\"]\nmode = \"nxdomain\"\nschedule = [\"sat,sun 08:00-20:00\", \"fri 22:00-02:00\"]\ninherit = false\n\
          [[groups]]\nname = \"lab\"\nclients = [\"192.168.2.7\"]\n\
          [local]\nttl = 60\n[[local.records]]\nname = \"nas.lan\"\na = [\"192.168.1.10\"]\naaaa = [\"fd00::10\"]\n\
          [[local.records]]\nname = \"*.lab.corp\"\ncname = \"nas.lan\"\n\
          [[forward]]\ndomains = [\"168.192.in-addr.arpa\"]\nservers = [\"192.168.1.1\"]\n"
            .to_vec(),
    );
    out.push(
        b"[upstream]\nservers = [\"1.1.1.1:5x\", \"[::1]:53\", \"9.9.9.9\"]\ntimeout_ms = 0\n\
          [cache]\nmin_ttl = 90000\nmax_ttl = 10\n[blocking]\nmode = \"bogus\"\n\
          lists = [\"missing.txt\", { source = \"blocklists/messaging.txt\", match = \"exact\" }]\n"
            .to_vec(),
    );
    out
}

fn dict() -> Vec<Vec<u8>> {
    let mut d: Vec<Vec<u8>> = [
        "[server]\n",
        "[upstream]\n",
        "[cache]\n",
        "[blocking]\n",
        "[log]\n",
        "[firewall]\n",
        "[[x]]\n",
        "[[groups]]\n",
        "[[local.records]]\n",
        "[limits]\n",
        "[local]\n",
        "\"mon-fri 09:00-17:30\"",
        "\"aa:bb:cc:dd:ee:ff\"",
        "\"*.lab.corp\"",
        " = ",
        "\"",
        "'''",
        "\"\"\"",
        "[",
        "]",
        "{ ",
        " }",
        ",",
        "\n",
        "#",
        "\\u0000",
        "\\",
        "true",
        "-1",
        "0",
        "1e400",
        "99999999999999999999",
        "nan",
        "inf",
        "1979-05-27",
        "\"1.1.1.1:53\"",
        "\"[::1]:53\"",
        "\"0.0.0.0\"",
        "\"::\"",
        "\"10m\"",
        "\"7d\"",
        "\"\"",
        "é",
        "\r\n",
        "\t",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    // Every key of the example config.
    let example =
        std::fs::read_to_string(crate_dir().join("sinkhole.example.toml")).unwrap_or_default();
    for l in example.lines() {
        let l = l.trim_start_matches("# ").trim();
        if let Some((k, _)) = l.split_once(" = ")
            && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            d.push(format!("{k} = ").into_bytes());
        }
    }
    d
}

fn check(text: &str) -> Verdict {
    let lines: Vec<&str> = text.split('\n').collect();
    match Config::parse(text, "fuzz.toml", Some(crate_dir())) {
        Ok(cfg) => {
            let mut parts = vec![
                1,
                u64::from(cfg.firewall.is_some()),
                u64::from(cfg.log.is_some()),
            ];
            if cfg.firewall.is_some() {
                match Ruleset::from_config(&cfg) {
                    Ok(rs) => {
                        for backend in [Backend::Nftables, Backend::Iptables] {
                            let script = render(&rs, backend, None);
                            parts.push((script.len() / 256) as u64);
                        }
                    }
                    Err(e) => {
                        if e.to_string().is_empty() {
                            return Err("firewall error without a message".into());
                        }
                        parts.push(2);
                    }
                }
            }
            Ok(sig(&parts))
        }
        Err(errs) => {
            if errs.0.is_empty() {
                return Err("Config::parse failed with no error".into());
            }
            let mut parts = vec![0];
            for e in &errs.0 {
                let shown = e.to_string();
                if e.msg.trim().is_empty() {
                    return Err(format!("error without a message: {shown:?}"));
                }
                if e.line == 0 {
                    if e.col != 0 {
                        return Err(format!("column without a line: {shown}"));
                    }
                    parts.push(3);
                    continue;
                }
                let Some(line) = lines.get(e.line - 1) else {
                    return Err(format!(
                        "error on line {} of a {}-line text: {shown}",
                        e.line,
                        lines.len()
                    ));
                };
                if e.col == 0 || e.col > line.len() + 1 {
                    return Err(format!(
                        "error at column {} of a {}-byte line: {shown}",
                        e.col,
                        line.len()
                    ));
                }
                parts.push(sig(&e.msg.bytes().take(24).map(u64::from).collect::<Vec<_>>()) % 512);
            }
            parts.sort_unstable();
            parts.dedup();
            Ok(sig(&parts))
        }
    }
}

#[test]
fn config_text() {
    fuzz(
        Target {
            name: "config_text",
            seeds: seeds(),
            dict: dict(),
            max_len: 16_384,
            shape: Shape::Text,
        },
        |b| check(&String::from_utf8_lossy(b)),
    );
}
