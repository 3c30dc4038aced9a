//! The query log end to end: the real service on loopback writes JSON Lines, and the real
//! `sinkhole log` binary reads them back. A scripted "messenger" starts twice on one client
//! (split into two sessions by the idle gap); rotation while a follower runs; a flood with the
//! log on an unusable path (answers keep flowing, drops counted); flush on SIGTERM.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, UNIX_EPOCH};

use hickory_proto::rr::RecordType;
use serde_json::Value;
use sinkhole::querylog::writer::format_ts;

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{
    TestServer, bin, first_answer, free_port, make_query, rcode, spawn_serve, stop_serve,
    udp_exchange,
};

/// Runs `sinkhole log ARGS…`; returns (exit code, stdout, stderr).
fn log_cmd(args: &[&str]) -> (i32, String, String) {
    let out = bin().arg("log").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The log's records, once there are at least `n` (waits at most 5 s).
pub(crate) async fn records(path: &Path, n: usize) -> Vec<Value> {
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let v: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a log line is not JSON"))
            .collect();
        if v.len() >= n {
            return v;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "only {} of {n} records after 5 s",
            v.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The messenger's, the news' and the ads' names (also read back from PostgreSQL,
/// `postgres_read.rs`).
pub(crate) fn zone() -> Vec<hickory_proto::rr::Record> {
    vec![
        a("login.messenger.test.", "192.0.2.20", 300),
        a("api.messenger.test.", "192.0.2.21", 300),
        a("presence.messenger.test.", "192.0.2.22", 300),
        a("media.msgcdn.test.", "192.0.2.30", 300),
        a("www.news.test.", "192.0.2.40", 300),
        a("ok.ads.test.", "192.0.2.50", 300),
    ]
}

const BLOCK: &str = "# messenger telemetry and ads\nads.test\ntelemetry.messenger.test\n";

fn config(up: &FakeUpstream, log: &str) -> String {
    format!(
        "[upstream]\nservers = [\"{}\"]\n[blocking]\nlists = [\"block.txt\"]\nallow = [\"allow.txt\"]\n{log}",
        up.addr
    )
}

pub(crate) const FIELDS: [&str; 14] = [
    "ts",
    "client",
    "qname",
    "qtype",
    "action",
    "rule",
    "list",
    "rcode",
    "answers",
    "upstream",
    "elapsed_us",
    "session",
    "seq",
    "new",
];

#[tokio::test(flavor = "multi_thread")]
async fn messenger_start_is_logged_in_sessions_and_reported() {
    let up = FakeUpstream::start(zone()).await;
    let s = TestServer::start(
        &config(&up, "[log]\npath = \"queries.jsonl\"\nsession_gap_s = 1\n"),
        &[("block.txt", BLOCK), ("allow.txt", "ok.ads.test\n")],
    )
    .await;
    let me = "127.0.0.2";
    let path = s.path("queries.jsonl");
    // A record is written after its answer is sent, and the next query may reach another
    // listener thread first: wait for each record so that the order in the file is the
    // script's order.
    let mut n = 0;
    let mut ask = async |src: &str, name: &str, rt: RecordType| {
        let m = s.query_from(src, name, rt).await;
        n += 1;
        records(&path, n).await;
        m
    };
    // The messenger starts: its login name first, then its other names.
    let session1 = [
        ("Login.Messenger.TEST.", RecordType::A),
        ("login.messenger.test.", RecordType::AAAA),
        ("api.messenger.test.", RecordType::A),
        ("media.msgcdn.test.", RecordType::A),
        ("telemetry.messenger.test.", RecordType::A),
        ("presence.messenger.test.", RecordType::A),
    ];
    for (name, rt) in session1 {
        ask(me, name, rt).await;
    }
    // Silent for longer than session_gap_s, then it starts again.
    s.clock.advance(Duration::from_millis(1_300));
    for (name, rt) in [
        ("login.messenger.test.", RecordType::A),
        ("api.messenger.test.", RecordType::A),
        ("www.news.test.", RecordType::A),
    ] {
        ask(me, name, rt).await;
    }
    ask("127.0.0.3", "www.news.test.", RecordType::A).await;
    let m = ask("127.0.0.3", "ok.ads.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "192.0.2.50");

    let recs = records(&path, 11).await;
    assert_eq!(recs.len(), 11);
    for r in &recs {
        let o = r.as_object().unwrap();
        for f in FIELDS {
            assert!(o.contains_key(f), "field {f} missing in {r}");
        }
        let ts = r["ts"].as_str().unwrap();
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(
            ts.ends_with('Z') && &ts[10..11] == "T" && &ts[19..20] == ".",
            "{ts}"
        );
    }
    let get = |i: usize, f: &str| recs[i][f].clone();
    // The login name opens session 1.
    assert_eq!(get(0, "client"), "127.0.0.2");
    assert_eq!(get(0, "qname"), "login.messenger.test");
    assert_eq!(get(0, "qtype"), "A");
    assert_eq!(get(0, "action"), "allowed");
    assert_eq!(get(0, "rcode"), "NOERROR");
    assert_eq!(get(0, "answers"), serde_json::json!(["192.0.2.20"]));
    assert_eq!(get(0, "upstream"), up.addr.to_string());
    assert_eq!(get(0, "rule"), Value::Null);
    assert_eq!(
        (get(0, "session"), get(0, "seq"), get(0, "new")),
        (1.into(), 1.into(), true.into())
    );
    assert!(get(0, "elapsed_us").as_u64().unwrap() > 0);
    // AAAA of the same name: NODATA, same domain, not new.
    assert_eq!(get(1, "qtype"), "AAAA");
    assert_eq!(get(1, "answers"), serde_json::json!([]));
    assert_eq!((get(1, "seq"), get(1, "new")), (2.into(), false.into()));
    assert_eq!(get(3, "new"), true, "msgcdn.test is a new domain");
    // The telemetry name is blocked, by a rule the record names.
    assert_eq!(get(4, "action"), "blocked");
    assert_eq!(get(4, "rule"), "telemetry.messenger.test");
    assert_eq!(get(4, "list"), "block.txt:3");
    assert_eq!(get(4, "answers"), serde_json::json!(["0.0.0.0"]));
    assert_eq!(get(4, "upstream"), Value::Null);
    assert_eq!(get(5, "seq"), 6);
    // After the idle gap: session 2, seq from 1; the login answer comes from the cache.
    assert_eq!((get(6, "session"), get(6, "seq")), (2.into(), 1.into()));
    assert_eq!(get(6, "action"), "cached");
    assert_eq!(get(6, "answers"), serde_json::json!(["192.0.2.20"]));
    assert_eq!(get(6, "new"), false);
    assert_eq!(get(8, "qname"), "www.news.test");
    assert_eq!(get(8, "new"), true);
    // Another client has its own sessions and its own memory of domains.
    assert_eq!(get(9, "client"), "127.0.0.3");
    assert_eq!(
        (get(9, "session"), get(9, "seq"), get(9, "new")),
        (1.into(), 1.into(), true.into())
    );
    // Allowed by an exception: the allow rule is named.
    assert_eq!(get(10, "action"), "allowed");
    assert_eq!(get(10, "rule"), "ok.ads.test");
    assert_eq!(get(10, "list"), "allow.txt:1");

    let file = path.display().to_string();
    let cfg = s.path("sinkhole.toml").display().to_string();
    // `first`: each session's first names, in order, with the session's start.
    let (code, out, err) = log_cmd(&["first", "--file", &file, "--client", me, "--count", "3"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 8, "{out}");
    assert!(
        lines[0].starts_with(&format!(
            "127.0.0.2  session 1  started {}  (6 queries)",
            get(0, "ts").as_str().unwrap()
        )),
        "{out}"
    );
    assert_eq!(lines[1], "    1  login.messenger.test  new");
    assert_eq!(lines[2], "    2  api.messenger.test");
    assert_eq!(lines[3], "    3  media.msgcdn.test  new");
    assert!(
        lines[4].starts_with("127.0.0.2  session 2  started "),
        "{out}"
    );
    assert_eq!(lines[5], "    1  login.messenger.test");
    assert_eq!(lines[7], "    3  www.news.test  new");
    // --new: only names whose domain the client had never asked before.
    let (_, out, _) = log_cmd(&["first", "--file", &file, "--client", me, "--new"]);
    let names: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("    "))
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        names,
        ["login.messenger.test", "media.msgcdn.test", "www.news.test"],
        "{out}"
    );
    // `top`
    let (_, out, _) = log_cmd(&["top", "--file", &file, "--by", "domain", "--limit", "2"]);
    assert_eq!(
        out.lines().map(str::trim).collect::<Vec<_>>(),
        ["7  messenger.test", "2  news.test"],
        "{out}"
    );
    let (_, out, _) = log_cmd(&["top", "--file", &file, "--by", "blocked"]);
    assert_eq!(out.trim(), "1  telemetry.messenger.test");
    let (_, out, _) = log_cmd(&["top", "--file", &file, "--by", "client"]);
    assert_eq!(
        out.lines().map(str::trim).collect::<Vec<_>>(),
        ["9  127.0.0.2", "2  127.0.0.3"]
    );
    // `suggest`: domains opening sessions, not blocked yet (ads.test is), with the command.
    let (code, out, err) = log_cmd(&["suggest", "--config", &cfg]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(rows.len(), 2, "{out}");
    let block = s.path("block.txt").display().to_string();
    assert!(rows[0].contains("2 sessions"), "{out}");
    assert!(
        rows[0].ends_with(&format!("sinkhole lists add messenger.test --to {block}")),
        "{out}"
    );
    assert!(rows[1].contains("news.test"), "{out}");
    assert!(out.contains("of 3 sessions"), "{out}");
    // `tail` with filters.
    let (_, out, _) = log_cmd(&["tail", "--config", &cfg, "--client", "127.0.0.3"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.contains("ok.ads.test 192.0.2.50 [allowed by ok.ads.test (allow.txt:1)]"),
        "{out}"
    );
    let (_, out, _) = log_cmd(&["tail", "--file", &file, "--action", "blocked"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("BLOCKED"), "{out}");
    assert!(
        out.trim_end()
            .ends_with("telemetry.messenger.test telemetry.messenger.test (block.txt:3)"),
        "{out}"
    );
    let (_, out, _) = log_cmd(&["tail", "--file", &file, "--name", "*.news.test", "--json"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    for l in out.lines() {
        assert_eq!(
            serde_json::from_str::<Value>(l).unwrap()["qname"],
            "www.news.test"
        );
    }
    let (code, _, err) = log_cmd(&["tail", "--file", &file, "--client", "not-an-ip"]);
    assert_eq!(code, 2);
    assert!(err.contains("--client \"not-an-ip\""), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bypass_signals_are_logged_with_the_builtin_list() {
    let up = FakeUpstream::start(zone()).await;
    let s = TestServer::start(
        &config(&up, "[log]\npath = \"queries.jsonl\"\n"),
        &[("block.txt", BLOCK), ("allow.txt", "")],
    )
    .await;
    s.query("use-application-dns.net.", RecordType::A).await;
    s.query("x.ads.test.", RecordType::A).await;
    let v = records(&s.path("queries.jsonl"), 2).await;
    // Two UDP threads may write their records in either order: find each by name.
    let by_name = |n: &str| v.iter().find(|r| r["qname"] == n).expect(n);
    let signal = by_name("use-application-dns.net");
    assert_eq!(signal["action"], "blocked");
    assert_eq!(signal["rcode"], "NXDOMAIN");
    assert_eq!(signal["rule"], "use-application-dns.net");
    assert_eq!(signal["list"], "builtin");
    assert_eq!(by_name("x.ads.test")["list"], "block.txt:2");
}

#[tokio::test(flavor = "multi_thread")]
async fn log_off_writes_nothing() {
    let up = FakeUpstream::start(zone()).await;
    for log in ["", "[log]\npath = \"queries.jsonl\"\nenabled = false\n"] {
        let s = TestServer::start(
            &config(&up, log),
            &[("block.txt", BLOCK), ("allow.txt", "")],
        )
        .await;
        assert!(s.service().query_log().is_none());
        assert!(!s.service().pipeline().details());
        let m = s.query("www.news.test.", RecordType::A).await;
        assert_eq!(first_answer(&m), "192.0.2.40");
        assert!(!s.path("queries.jsonl").exists());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_while_following_loses_no_record() {
    let up = FakeUpstream::start(zone()).await;
    // About 10 records per file; 2 rotated files kept.
    let mut s = TestServer::start(
        &config(
            &up,
            "[log]\npath = \"q.jsonl\"\nmax_size_mb = 0.0025\nkeep = 2\n",
        ),
        &[("block.txt", BLOCK), ("allow.txt", "")],
    )
    .await;
    let path = s.path("q.jsonl");
    std::fs::write(&path, "").unwrap();
    let mut follower = bin()
        .args(["log", "tail", "--follow", "-n", "0", "--file"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = 60;
    for i in 0..n {
        // Blocked names: no upstream, answered at once.
        let m = s.query(&format!("n{i}.ads.test."), RecordType::A).await;
        assert_eq!(first_answer(&m), "0.0.0.0");
        if i % 10 == 0 {
            // Give the follower a chance to see each file before it is rotated twice.
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }
    s.stop();
    assert!(path.exists());
    assert!(s.path("q.jsonl.1").exists() && s.path("q.jsonl.2").exists());
    assert!(!s.path("q.jsonl.3").exists(), "keep = 2");
    // Every record the files still hold is whole JSON.
    let mut kept = 0;
    for f in ["q.jsonl.2", "q.jsonl.1", "q.jsonl"] {
        for l in std::fs::read_to_string(s.path(f)).unwrap().lines() {
            serde_json::from_str::<Value>(l).unwrap();
            kept += 1;
        }
    }
    assert!(kept < n, "rotation dropped old files ({kept} kept)");
    // The follower saw every record, across the rotations.
    tokio::time::sleep(Duration::from_millis(800)).await;
    follower.kill().unwrap();
    let out = follower.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    for i in 0..n {
        assert!(
            out.contains(&format!(" n{i}.ads.test ")),
            "follower missed n{i}:\n{out}"
        );
    }
    assert_eq!(out.lines().count(), n, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn flood_with_unusable_log_keeps_answering_and_counts_drops() {
    let up = FakeUpstream::start(zone()).await;
    // A folder that cannot exist (its parent is a file), and a full disk (/dev/full).
    for (log, why) in [
        (
            "[log]\npath = \"block.txt/sub/q.jsonl\"\n",
            "not a directory",
        ),
        ("[log]\npath = \"/dev/full\"\n", "no space"),
    ] {
        let mut s = TestServer::start(
            &config(&up, log),
            &[("block.txt", BLOCK), ("allow.txt", "")],
        )
        .await;
        let n = 2000;
        let addr = s.addr;
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                tokio::spawn(async move {
                    for i in 0..n / 8 {
                        let q = make_query(&format!("f{t}x{i}.ads.test."), RecordType::A, None);
                        let m = udp_exchange(addr, &q).await.expect("query not answered");
                        assert_eq!(rcode(&m), 0);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let log = s.service().query_log().unwrap().clone();
        s.stop();
        assert_eq!(log.written(), 0, "{why}");
        assert_eq!(log.dropped(), n as u64, "{why}: every record is counted");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_flushes_every_record() {
    let up = FakeUpstream::start(zone()).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(dir.path().join("block.txt"), BLOCK).unwrap();
    std::fs::write(dir.path().join("allow.txt"), "").unwrap();
    let path = dir.path().join("s.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\n{}",
            config(&up, "[log]\npath = \"q.jsonl\"\n")
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let (child, _) = spawn_serve(&path, addr, "www.news.test.").await;
    // The probe that found the server up, and the queries below.
    const ANSWERED: usize = 1 + 500;
    for i in 0..500 {
        let name = if i % 2 == 0 {
            format!("s{i}.ads.test.")
        } else {
            "www.news.test.".to_string()
        };
        let q = make_query(&name, RecordType::A, None);
        udp_exchange(addr, &q).await.expect("not answered");
    }
    // Stop at once: the records still queued must reach the file.
    let stderr = stop_serve(child);
    let text = std::fs::read_to_string(dir.path().join("q.jsonl")).unwrap();
    assert!(text.ends_with('\n'));
    // Probes that timed out before the server was up may be logged too.
    let lines = text.lines().count();
    assert!(lines >= ANSWERED, "{lines} records for {ANSWERED} answers");
    assert!(stderr.contains("query log closed"), "{stderr}");
}

/// A hand-written log: a device phoning home every 300 s, noise, a corrupted line in the
/// middle, a torn last line, a rotated file. Every command skips what it cannot read.
#[test]
fn heartbeats_and_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.jsonl");
    let base = 1_763_700_000_000_i64; // 2025-11-21T04:40:00Z
    let line = |t: i64, client: &str, name: &str, seq: u64| {
        let ts = format_ts(UNIX_EPOCH + Duration::from_millis(t as u64));
        format!(
            "{{\"ts\":\"{ts}\",\"client\":\"{client}\",\"qname\":\"{name}\",\"qtype\":\"A\",\"action\":\"allowed\",\"rule\":null,\"list\":null,\"rcode\":\"NOERROR\",\"answers\":[],\"upstream\":null,\"elapsed_us\":100,\"session\":{seq},\"seq\":1,\"new\":false}}\n"
        )
    };
    let mut old = String::new();
    let mut cur = String::new();
    for i in 0..41 {
        let jitter = [0, 4_000, -3_000, 5_000, -4_000][i % 5];
        let t = base + i as i64 * 300_000 + jitter;
        let l = line(t, "10.0.0.5", "tv.example.net", i as u64 + 1);
        if i < 20 {
            old.push_str(&l)
        } else {
            cur.push_str(&l)
        }
        // Irregular noise from the same client.
        cur.push_str(&line(
            t + (i as i64 * i as i64 * 7_919) % 250_000,
            "10.0.0.5",
            "www.news.test",
            1,
        ));
        if i == 30 {
            cur.push_str("{\"ts\": this is not json\n");
        }
    }
    cur.push_str("{\"ts\":\"2025-11-21T08:00:00.000Z\",\"client\":\"10.0");
    std::fs::write(dir.path().join("q.jsonl.1"), old).unwrap();
    std::fs::write(&path, cur).unwrap();
    let file = path.display().to_string();
    let (code, out, err) = log_cmd(&["heartbeats", "--file", &file]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let l = out.lines().next().unwrap();
    assert!(l.starts_with("10.0.0.5"), "{l}");
    assert!(
        l.contains("tv.example.net  every 300 s ±") && l.ends_with("(41 times)"),
        "{l}"
    );
    assert!(err.contains("q.jsonl:43: unreadable line skipped"), "{err}");
    assert!(err.contains("torn last line skipped"), "{err}");
    let (code, out, _) = log_cmd(&["top", "--file", &file, "--since", "2025-11-21T06:00:00Z"]);
    assert_eq!(code, 0);
    // 41 beats in all; --since keeps those from 06:00 on.
    assert!(
        out.lines().any(|l| l.trim() == "25  tv.example.net"),
        "{out}"
    );
    let (_, out, _) = log_cmd(&["top", "--file", &file, "--by", "client"]);
    assert_eq!(out.trim(), "82  10.0.0.5");
}

/// Writes a 1M-record log for the scale figures (not a test of speed: run it, then time the
/// commands with the release binary). `SCALE_LOG=/path/q.jsonl cargo test --release -- --ignored generate_1m_record_log`
#[test]
#[ignore = "generates a large file for the scale figures"]
fn generate_1m_record_log() {
    use std::io::Write as _;
    let path = std::env::var("SCALE_LOG").unwrap_or_else(|_| "/tmp/sinkhole-scale/q.jsonl".into());
    let path = Path::new(&path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // 20 busy clients get half the queries; 980 quiet ones the rest, so that their
    // sessions split often (about 30 s apart per client on average).
    let clients: Vec<String> = (0..1000)
        .map(|i| format!("192.168.{}.{}", i / 250, i % 250 + 2))
        .collect();
    let mut state: Vec<(u64, u64, i64)> = vec![(0, 0, 0); clients.len()];
    let start = 1_763_700_000_000_i64;
    let mut t = start;
    for _ in 0..1_000_000 {
        t += (next() % 60) as i64; // ~30 ms apart on average: about 8 hours
        let c = if next() % 2 == 0 {
            (next() % 20) as usize
        } else {
            20 + (next() % 980) as usize
        };
        let (session, seq, last) = &mut state[c];
        if *session == 0 || t - *last >= 30_000 {
            *session += 1;
            *seq = 0;
        }
        *seq += 1;
        *last = t;
        let name_id = next() % 50_000;
        let blocked = name_id % 10 == 0;
        let name = format!("h{}.d{}.example{}.com", name_id % 7, name_id, name_id % 3);
        let ts = format_ts(UNIX_EPOCH + Duration::from_millis(t as u64));
        let (action, rule, list, answers, up) = if blocked {
            (
                "blocked",
                format!("\"d{name_id}.example{}.com\"", name_id % 3),
                "\"blocklists/ads.txt:17\"".to_string(),
                "[\"0.0.0.0\"]".to_string(),
                "null",
            )
        } else {
            (
                if next() % 2 == 0 { "cached" } else { "allowed" },
                "null".into(),
                "null".into(),
                format!("[\"203.0.113.{}\"]", name_id % 250),
                "\"9.9.9.9:53\"",
            )
        };
        writeln!(
            w,
            "{{\"ts\":\"{ts}\",\"client\":\"{}\",\"qname\":\"{name}\",\"qtype\":\"A\",\"action\":\"{action}\",\"rule\":{rule},\"list\":{list},\"rcode\":\"NOERROR\",\"answers\":{answers},\"upstream\":{up},\"elapsed_us\":{},\"session\":{session},\"seq\":{seq},\"new\":{}}}",
            clients[c], next() % 5000, next() % 20 == 0
        )
        .unwrap();
    }
    w.flush().unwrap();
}

// See: #10 (one client sending 43-byte queries wrote 57 KB log lines: the log wrote every
// answer whole, even when the client got a truncated reply).
#[tokio::test(flavor = "multi_thread")]
async fn r10_log_records_are_bounded_and_truncated_replies_log_no_answers() {
    use crate::fake_upstream::txt;
    let mut zone = vec![txt("big.test.", vec!["z".repeat(250); 80], 300)];
    for i in 0..40 {
        zone.push(a("many.test.", &format!("192.0.2.{i}"), 300));
    }
    let up = FakeUpstream::start(zone).await;
    let s = TestServer::start(
        &format!(
            "[upstream]\nservers = [\"{}\"]\n[log]\npath = \"q.jsonl\"\n",
            up.addr
        ),
        &[],
    )
    .await;
    let path = s.path("q.jsonl");
    // A client without EDNS: 512 bytes at most, so the reply is truncated (TC, no records).
    let m = s.query("big.test.", RecordType::TXT).await;
    assert!(m.metadata.truncation && m.answers.is_empty());
    records(&path, 1).await;
    // Over TCP it gets the whole answer; the log keeps a bounded part of it.
    let m = s.query_tcp("big.test.", RecordType::TXT).await;
    assert_eq!(m.answers.len(), 1);
    records(&path, 2).await;
    let m = s.query_tcp("many.test.", RecordType::A).await;
    assert_eq!(m.answers.len(), 40);
    records(&path, 3).await;
    // Cached this time, and truncated again for the UDP client.
    s.query("big.test.", RecordType::TXT).await;
    records(&path, 4).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    let rec = |i: usize| serde_json::from_str::<Value>(lines[i]).unwrap();
    for i in [0, 3] {
        assert!(
            lines[i].len() < 400,
            "a TC reply's record is small: {}",
            lines[i]
        );
        assert_eq!(rec(i)["answers"], serde_json::json!([]), "{}", lines[i]);
        assert_eq!(rec(i)["tc"], true, "{}", lines[i]);
    }
    assert_eq!(rec(3)["action"], "cached");
    // The TCP answer: one TXT of 20 KB, cut to 256 bytes.
    let big = rec(1);
    let answers = big["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 1);
    let t = answers[0].as_str().unwrap();
    assert!(
        t.len() <= 256 && t.starts_with("zzz") && t.ends_with('…'),
        "{t}"
    );
    assert!(lines[1].len() < 700, "{}", lines[1]);
    assert_eq!(big.get("tc"), None, "tc only when the reply was truncated");
    // 40 answers: the first 16 and a count of the rest.
    let many = rec(2);
    let answers = many["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 17, "{many}");
    assert_eq!(answers[16], "…+24 more");
    assert!(lines[2].len() < 1024, "{}", lines[2]);
}
