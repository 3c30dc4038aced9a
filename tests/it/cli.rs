//! The real binary: --version and --help everywhere, `config check`, and SIGHUP reloading
//! a changed config while serving.

use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{
    bin, first_answer, free_port, make_query, signal, spawn_serve, stop_serve, udp_exchange,
};

#[test]
fn version_and_help_on_every_command() {
    let out = bin().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sinkhole "));
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["config", "--help"],
        &["config", "check", "--help"],
        &["lists", "--help"],
        &["lists", "check", "--help"],
        &["lists", "lint", "--help"],
        &["lists", "convert", "--help"],
        &["lists", "add", "--help"],
        &["lists", "remove", "--help"],
        &["lists", "update", "--help"],
    ] {
        let out = bin().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{args:?}"
        );
    }
    let out = bin()
        .args(["config", "check", "--version"])
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn config_check_names_file_line_and_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = [\"127.0.0.1:5300\"]\n\n[upstream]\nservers = [\"9.9.9.9:5x\"]\ntimeout_ms = 100\n\n[blocking]\nmode = \"blackhole\"\n",
    )
    .unwrap();
    let out = bin().args(["config", "check"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let p = path.display();
    assert!(
        err.contains(&format!(
            "{p}:5:12: upstream.servers: \"9.9.9.9:5x\": invalid port"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{p}:9:8: blocking.mode: unknown mode \"blackhole\""
        )),
        "{err}"
    );

    std::fs::write(&path, "[cache]\nmax_entires = 5\n").unwrap();
    let out = bin().args(["config", "check"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{p}:2:1: cache.max_entires: unknown field `max_entires`"
        )),
        "{err}"
    );

    // serve refuses to start on the same errors.
    let out = bin()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    std::fs::write(dir.path().join("l.txt"), "ok.test\nbad..test\n").unwrap();
    std::fs::write(&path, "[blocking]\nlists = [\"l.txt\"]\n").unwrap();
    let out = bin().args(["config", "check"]).arg(&path).output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("l.txt:2: warning: invalid domain \"bad..test\": empty label"),
        "{err}"
    );
}

#[test]
fn example_config_is_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = bin()
        .args(["config", "check"])
        .arg(format!("{root}/sinkhole.example.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_rereads_config_and_lists_and_sigterm_stops_cleanly() {
    let up = FakeUpstream::start(vec![
        a("www.test.", "192.0.2.1", 300),
        a("chat.test.", "192.0.2.5", 300),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = |lists: &str| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\n[upstream]\nservers = [\"{}\"]\n[blocking]\nlists = [{lists}]\n",
            up.addr
        )
    };
    std::fs::write(dir.path().join("a.txt"), "ads.test\n").unwrap();
    std::fs::write(dir.path().join("b.txt"), "chat.test\n").unwrap();
    let path = dir.path().join("s.toml");
    std::fs::write(&path, cfg("\"a.txt\"")).unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let (child, first) = spawn_serve(&path, addr, "chat.test.").await;
    assert_eq!(first_answer(&first), "192.0.2.5");
    // A second list appears in the config: only SIGHUP re-reads it.
    std::fs::write(&path, cfg("\"a.txt\", \"b.txt\"")).unwrap();
    signal(&child, "HUP");
    let t = Instant::now();
    loop {
        let m = udp_exchange(addr, &make_query("chat.test.", RecordType::A, None))
            .await
            .unwrap();
        if first_answer(&m) == "0.0.0.0" {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "SIGHUP reload not seen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = stop_serve(child);
    assert!(log.contains("serving DNS on UDP and TCP"), "{log}");
    assert!(log.contains("lists reloaded"), "{log}");
}

// A SIGTERM sent the moment the server first answers stops it cleanly (exit 0): the signal
// handlers are in place before the listeners answer. Seen in CI: a server killed by such a
// SIGTERM (exit by signal 15) while its handlers were still being installed.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_right_after_the_first_answer_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "ads.test\n").unwrap();
    for _ in 0..5 {
        let port = free_port();
        let path = dir.path().join("s.toml");
        std::fs::write(
            &path,
            format!("[server]\nlisten = [\"127.0.0.1:{port}\"]\n[upstream]\nservers = [\"127.0.0.1:9\"]\n[blocking]\nlists = [\"a.txt\"]\n"),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let (child, first) = spawn_serve(&path, addr, "ads.test.").await;
        assert_eq!(first_answer(&first), "0.0.0.0");
        stop_serve(child);
    }
}

#[test]
fn man_pages_and_completions_come_from_the_command_line_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["man", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    for page in [
        "sinkhole.1",
        "sinkhole-serve.1",
        "sinkhole-firewall.1",
        "sinkhole-firewall-apply.1",
        "sinkhole-log-first.1",
        "sinkhole-lists-add.1",
        "sinkhole.toml.5",
    ] {
        let path = dir.path().join(page);
        assert!(
            listed.contains(path.to_str().unwrap()),
            "{page} not listed: {listed}"
        );
        // Rendered by man itself, with roff warnings as errors.
        let shown = std::process::Command::new("man")
            .args(["--warnings=all", "-l"])
            .arg(&path)
            .env("MANWIDTH", "100")
            .env("MAN_KEEP_FORMATTING", "0")
            .output()
            .expect("man (Debian: man-db)");
        let text = String::from_utf8_lossy(&shown.stdout);
        assert!(
            shown.status.success() && !text.trim().is_empty(),
            "{page}: {}",
            String::from_utf8_lossy(&shown.stderr)
        );
        let errors = String::from_utf8_lossy(&shown.stderr);
        assert!(!errors.contains("error"), "{page}: {errors}");
    }
    // The config page is docs/config.md, rendered: its sections and key entries.
    let toml5 = std::fs::read_to_string(dir.path().join("sinkhole.toml.5")).unwrap();
    assert!(
        toml5.contains(".SH \"[upstream]\"")
            && toml5.contains(".SS \"Resolving from the root\"")
            && toml5.contains("\\fBtls_handshake_timeout_ms\\fR = \\fB5000\\fR"),
        "{toml5}"
    );
    // man(1) renders it without a single warning, at a terminal's width.
    let shown = std::process::Command::new("man")
        .args(["--warnings", "-l"])
        .arg(dir.path().join("sinkhole.toml.5"))
        .env("MANWIDTH", "80")
        .output()
        .unwrap();
    assert!(shown.status.success());
    assert_eq!(String::from_utf8_lossy(&shown.stderr), "");
    let text = String::from_utf8_lossy(&shown.stdout);
    // Justified lines take extra spaces (on alternate sides from line to line), so words
    // are compared with single spaces.
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains("tls_handshake_timeout_ms = 5000") && !text.contains("```"),
        "{text}"
    );
    // Without --out: sinkhole(1) on stdout.
    let page = bin().arg("man").output().unwrap();
    assert!(
        String::from_utf8_lossy(&page.stdout).starts_with(".ie \\n(.g .ds Aq")
            || String::from_utf8_lossy(&page.stdout).contains(".TH sinkhole 1")
    );

    let bash = bin().args(["completions", "bash"]).output().unwrap();
    let script = String::from_utf8_lossy(&bash.stdout);
    assert!(
        script.contains("_sinkhole()")
            && script.contains("firewall")
            && script.contains("self-signed"),
        "{script}"
    );
    let path = dir.path().join("sinkhole.bash");
    std::fs::write(&path, script.as_bytes()).unwrap();
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .status()
        .unwrap();
    assert!(syntax.success(), "bash -n on the completion script");
    for shell in ["zsh", "fish"] {
        let out = bin().args(["completions", shell]).output().unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("sinkhole"),
            "{shell}"
        );
    }
    let bad = bin().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn config_init_in_a_namespace_writes_that_lan_and_config_check_accepts_it() {
    use crate::firewall::{Netns, cannot_run};
    if let Some(why) = cannot_run() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the config init test: {why}"
        );
        println!("config init namespace test skipped: {why}");
        return;
    }
    let netns = Netns::new("shinit");
    let ns = netns.name.clone();
    let inside = |args: &[&str]| netns.run(args);
    // A router: lan0 on 10.77.5.0/24, wan0 with the default route (a documentation net).
    for (dev, peer, addr) in [
        ("lan0", "lan0p", "10.77.5.1/24"),
        ("wan0", "wan0p", "203.0.113.2/24"),
    ] {
        inside(&[
            "ip", "link", "add", dev, "type", "veth", "peer", "name", peer,
        ]);
        inside(&["ip", "addr", "add", addr, "dev", dev]);
        inside(&["ip", "link", "set", dev, "up"]);
        inside(&["ip", "link", "set", peer, "up"]);
    }
    inside(&[
        "ip",
        "route",
        "add",
        "default",
        "via",
        "203.0.113.1",
        "dev",
        "wan0",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("etc/sinkhole.toml");
    let state = dir.path().join("state");
    let init = |force: bool| {
        let mut args = vec![
            "ip".to_string(),
            "netns".into(),
            "exec".into(),
            ns.clone(),
            env!("CARGO_BIN_EXE_sinkhole").into(),
            "config".into(),
            "init".into(),
            "--out".into(),
            file.display().to_string(),
            "--state-dir".into(),
            state.display().to_string(),
            "--lists-dir".into(),
            dir.path().join("none").display().to_string(),
        ];
        if force {
            args.push("--force".into());
        }
        std::process::Command::new(&args[0])
            .args(&args[1..])
            .output()
            .unwrap()
    };
    let out = init(false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let v: toml::Table = text.parse().unwrap();
    let strs = |t: &toml::Value| -> Vec<String> {
        t.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        strs(&v["access"]["allow"]),
        ["127.0.0.0/8", "::1/128", "10.77.5.0/24"],
        "{text}"
    );
    assert_eq!(
        strs(&v["server"]["listen"]),
        ["10.77.5.1:53", "127.0.0.1:53"],
        "{text}"
    );
    assert_eq!(v["firewall"]["topology"].as_str(), Some("gateway"));
    assert_eq!(strs(&v["firewall"]["lan_interfaces"]), ["lan0"]);
    assert_eq!(strs(&v["firewall"]["wan_interfaces"]), ["wan0"]);
    assert_eq!(strs(&v["firewall"]["lan_subnets"]), ["10.77.5.0/24"]);
    assert_eq!(
        v["log"]["path"].as_str(),
        Some(state.join("queries.jsonl").to_str().unwrap())
    );
    let check = bin().args(["config", "check"]).arg(&file).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // The firewall section is one the firewall commands take.
    let fw = bin()
        .args(["firewall", "show", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        fw.status.success() && String::from_utf8_lossy(&fw.stdout).contains("lan0"),
        "{}",
        String::from_utf8_lossy(&fw.stderr)
    );
    // An existing file is kept unless --force.
    std::fs::write(&file, "# mine\n").unwrap();
    let again = init(false);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "# mine\n");
    assert!(init(true).status.success());
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("10.77.5.0/24")
    );
}
