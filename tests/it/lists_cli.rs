//! `sinkhole lists check|lint|convert|add|remove` through the real binary on real files, and
//! a running server picking up `lists add` through its file watch.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, bin, first_answer};

fn sinkhole(args: &[&str], dir: &Path) -> Output {
    bin().args(args).current_dir(dir).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const ADBLOCK: &str = "! Title: test\n||example.com^\n@@||good.example.com^\n||tracker.net^$important\n@@||tracker.net^\n||site.org^$third-party\n||clk.rtpdn*.com^\n";
const HOSTS: &str =
    "# hosts\n0.0.0.0 ads.example.com other.org\n127.0.0.1 localhost\n0.0.0.0 bad..name\n";

fn lists_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ad.txt"), ADBLOCK).unwrap();
    std::fs::write(dir.path().join("hosts.txt"), HOSTS).unwrap();
    std::fs::write(dir.path().join("allow.txt"), "# ok\nwww.other.org\n").unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "[blocking]\nlists = [\"ad.txt\", \"hosts.txt\"]\nallow = [\"allow.txt\"]\ncache_dir = \"cache\"\n",
    )
    .unwrap();
    dir
}

#[test]
fn check_names_the_deciding_rule_and_every_match() {
    let dir = lists_dir();
    let out = sinkhole(
        &[
            "lists",
            "check",
            "--config",
            "c.toml",
            "ads.example.com",
            "good.example.com",
            "x.tracker.net",
            "www.other.org",
            "clk.rtpdn7.com",
            "unlisted.test",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    let lines: Vec<&str> = o.lines().collect();
    assert!(
        lines[0].starts_with("ads.example.com ")
            && lines[0].contains("  blocked  by 0.0.0.0 ads.example.com other.org  (hosts.txt:2)"),
        "{o}"
    );
    assert!(
        o.contains("also matched (block): ||example.com^  (ad.txt:2)"),
        "{o}"
    );
    assert!(
        o.contains("allowed  by @@||good.example.com^  (ad.txt:3)"),
        "{o}"
    );
    assert!(
        o.contains("blocked  by ||tracker.net^$important  (ad.txt:4)"),
        "{o}"
    );
    assert!(
        o.contains("allowed  by www.other.org  (allow.txt:2)"),
        "{o}"
    );
    assert!(
        o.contains("blocked  by ||clk.rtpdn*.com^  (ad.txt:7)"),
        "{o}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("unlisted.test ")
                && l.ends_with("  not blocked  (no rule matches)")),
        "{o}"
    );
}

#[test]
fn lint_reports_invalid_duplicate_redundant_cancelled() {
    let dir = lists_dir();
    std::fs::write(
        dir.path().join("dup.txt"),
        "example.com\nsub.example.com\nexample.com\n@@||ok.example.org^\nads.ok.example.org\n",
    )
    .unwrap();
    let out = sinkhole(&["lists", "lint", "dup.txt"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(
        o.contains("dup.txt:3: duplicate: example.com is already at dup.txt:1"),
        "{o}"
    );
    assert!(
        o.contains("dup.txt:2: redundant: sub.example.com is covered by example.com (dup.txt:1)"),
        "{o}"
    );
    assert!(
        o.contains("dup.txt:5: cancelled: block ads.ok.example.org is cancelled by allow ok.example.org (dup.txt:4)"),
        "{o}"
    );

    let out = sinkhole(&["lists", "lint", "ad.txt", "hosts.txt"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let o = text(&out.stdout);
    assert!(o.contains("ad.txt:6: invalid: browser_modifier"), "{o}");
    assert!(o.contains("hosts.txt:4: invalid: invalid_name"), "{o}");
}

/// `--config`: the config's allowlists cancel entries of the linted files (without being
/// linted themselves), `convert` with no FILE converts the config's lists, and `add` /
/// `remove` warn when the file is not one the config serves.
#[test]
fn lists_commands_read_the_config() {
    let dir = lists_dir();
    std::fs::write(
        dir.path().join("mine.txt"),
        "www.other.org
keep.test
",
    )
    .unwrap();
    let out = sinkhole(&["lists", "lint", "mine.txt"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("cancelled"),
        "{}",
        text(&out.stdout)
    );
    let out = sinkhole(
        &["lists", "lint", "--config", "c.toml", "mine.txt"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(
        o.contains("mine.txt:1: cancelled: block www.other.org is cancelled by allow www.other.org (allow.txt:2)"),
        "{o}"
    );
    assert!(!o.contains("keep.test"), "{o}");

    let out = sinkhole(
        &["lists", "convert", "--to", "adblock", "--config", "c.toml"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    for want in [
        "||example.com^",
        "||other.org^",
        "@@||www.other.org^",
        "@@||good.example.com^",
    ] {
        assert!(o.lines().any(|l| l == want), "{want} missing:\n{o}");
    }

    let out = sinkhole(
        &[
            "lists", "add", "x.test", "--to", "mine.txt", "--config", "c.toml",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("mine.txt is not in blocking.lists or blocking.allow of c.toml"),
        "{}",
        text(&out.stderr)
    );
    let out = sinkhole(
        &[
            "lists",
            "remove",
            "other.org",
            "--from",
            "hosts.txt",
            "--config",
            "c.toml",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn convert_round_trips_in_every_readable_format() {
    let dir = lists_dir();
    let real = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/blocklists/hosts_windowsspyblocker_spy.txt");
    let mut files = vec!["ad.txt".to_string(), "hosts.txt".to_string()];
    if real.exists() {
        files.push(real.display().to_string());
    }
    let args = |fmt: &str, files: &[String]| {
        let mut v = vec![
            "lists".to_string(),
            "convert".into(),
            "--to".into(),
            fmt.into(),
        ];
        v.extend(files.iter().cloned());
        v
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let out = sinkhole(&a, dir.path());
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let domains = run(args("domains", &files));
    let names: Vec<&str> = domains.lines().collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "sorted and deduplicated");
    assert!(names.contains(&"example.com"));
    assert!(
        !names.contains(&"ads.example.com"),
        "child of example.com dropped"
    );
    for fmt in ["domains", "hosts", "adblock", "dnsmasq"] {
        let out = run(args(fmt, &files));
        let f = dir.path().join(format!("out.{fmt}"));
        std::fs::write(&f, &out).unwrap();
        let back = run(args(fmt, &[f.display().to_string()]));
        assert_eq!(back, out, "{fmt} reads back to the same set");
        let back_domains = run(args("domains", &[f.display().to_string()]));
        let names_only = |t: &str| {
            t.lines()
                .filter(|l| !l.contains(['*', '{']))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        if fmt != "adblock" {
            assert_eq!(
                names_only(&back_domains),
                names_only(&domains),
                "{fmt} holds the same block set"
            );
        }
    }
    let rpz = run(args("rpz", &files));
    assert!(
        rpz.contains("\nexample.com CNAME .\n*.example.com CNAME .\n"),
        "{rpz}"
    );
    assert!(
        rpz.contains("good.example.com CNAME rpz-passthru."),
        "{rpz}"
    );
    let unbound = run(args("unbound", &files));
    assert!(unbound.contains("local-zone: \"example.com.\" always_nxdomain\n"));
}

#[test]
fn add_and_remove_edit_in_place_keeping_comments() {
    let dir = lists_dir();
    let out = sinkhole(
        &[
            "lists",
            "add",
            "Accounting.Example.NET",
            "new.org",
            "--to",
            "hosts.txt",
            "--comment",
            "accounting (all)",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = std::fs::read_to_string(dir.path().join("hosts.txt")).unwrap();
    assert_eq!(
        t,
        format!(
            "{HOSTS}0.0.0.0 accounting.example.net  # accounting (all)\n0.0.0.0 new.org  # accounting (all)\n"
        )
    );
    let out = sinkhole(&["lists", "add", "co.uk", "--to", "hosts.txt"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("\"co.uk\" is a public suffix"));
    let out = sinkhole(
        &["lists", "add", "bad..name", "--to", "hosts.txt"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not a valid domain name"));

    let out = sinkhole(
        &[
            "lists",
            "remove",
            "other.org",
            "new.org",
            "--from",
            "hosts.txt",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = std::fs::read_to_string(dir.path().join("hosts.txt")).unwrap();
    assert_eq!(
        t,
        "# hosts\n0.0.0.0 ads.example.com\n127.0.0.1 localhost\n0.0.0.0 bad..name\n0.0.0.0 accounting.example.net  # accounting (all)\n"
    );
    let out = sinkhole(
        &["lists", "remove", "absent.org", "--from", "hosts.txt"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("absent.org: not in hosts.txt"));
}

#[tokio::test(flavor = "multi_thread")]
async fn running_server_picks_up_lists_add() {
    let up = FakeUpstream::start(vec![a("later.test.", "192.0.2.7", 300)]).await;
    let s = TestServer::start(
        &format!(
            "[upstream]\nservers = [\"{}\"]\n[cache]\nmax_entries = 0\n[blocking]\nlists = [\"b.txt\"]\n",
            up.addr
        ),
        &[("b.txt", "# mine\nother.test\n")],
    )
    .await;
    assert_eq!(
        first_answer(&s.query("later.test.", RecordType::A).await),
        "192.0.2.7"
    );
    let out = sinkhole(
        &["lists", "add", "later.test", "--to", "b.txt"],
        s.dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if first_answer(&s.query("later.test.", RecordType::A).await) == "0.0.0.0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the file watch did not pick up lists add"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_turned_bad_keeps_the_last_good_set() {
    let up = FakeUpstream::start(vec![a("fine.test.", "192.0.2.8", 300)]).await;
    let s = TestServer::start(
        &format!(
            "[upstream]\nservers = [\"{}\"]\n[cache]\nmax_entries = 0\n[blocking]\nlists = [\"b.txt\"]\n",
            up.addr
        ),
        &[("b.txt", "blocked.test\n")],
    )
    .await;
    assert_eq!(
        first_answer(&s.query("blocked.test.", RecordType::A).await),
        "0.0.0.0"
    );
    for bad in [
        b"\x7fELF\x02\x01\x01\x00\x00\x00".to_vec(),
        b"<!DOCTYPE html>\n<html><body>captive portal</body></html>\n".to_vec(),
    ] {
        std::fs::write(s.path("b.txt"), &bad).unwrap();
        // Two watch intervals for the change to be seen and settle, then a reload attempt.
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(
            first_answer(&s.query("blocked.test.", RecordType::A).await),
            "0.0.0.0",
            "the last good set still serves"
        );
        assert_eq!(
            first_answer(&s.query("fine.test.", RecordType::A).await),
            "192.0.2.8"
        );
    }
}
