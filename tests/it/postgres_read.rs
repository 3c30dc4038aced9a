//! The query log read back from PostgreSQL: a real cluster (`pg.rs`), the schema made by the
//! real `sinkhole db migrate`, the real service writing to it (and to a file, in the same
//! run), and the real `sinkhole log` binary and HTTP API reading it. Each report from the
//! database equals the same report from the file; two instances writing to one database
//! keep their sessions apart; `--instance` narrows; `log tail -f` follows new rows; a
//! database that is down or refuses the password is an error that names what to fix.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, bin};
use crate::http_log::{TOKEN, open_stream, read_until};
use crate::pg::{PgCluster, eventually};
use crate::querylog::records;

const BLOCK: &str = "ads.test\ntelemetry.messenger.test\n";

/// The query log test's names, and a device's phoning-home name.
fn zone() -> Vec<hickory_proto::rr::Record> {
    let mut z = crate::querylog::zone();
    z.push(a("beat.vendor.test.", "192.0.2.60", 300));
    z
}

/// A config of instance `name` logging to `url` (and to `queries.jsonl` with `file`).
fn config(up: &FakeUpstream, name: &str, url: &str, file: bool) -> String {
    let path = if file {
        "path = \"queries.jsonl\"\n"
    } else {
        ""
    };
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_threads = 2\nname = \"{name}\"\n\
         [upstream]\nservers = [\"{}\"]\n[blocking]\nlists = [\"block.txt\"]\n\
         [log]\n{path}session_gap_s = 1\n[log.postgres]\nurl = \"{url}\"\nbatch_ms = 50\n\
         [http]\nlisten = [\"127.0.0.1:0\"]\ntoken = \"{TOKEN}\"\n",
        up.addr
    )
}

/// Runs `sinkhole ARGS…`; returns (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Makes the schema with the real `sinkhole db migrate`, from a config naming `url`
/// (written in a folder of its own: the servers start after it).
fn migrate(url: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("migrate.toml");
    std::fs::write(&cfg, format!("[log]\n[log.postgres]\nurl = \"{url}\"\n")).unwrap();
    let (code, out, err) = run(&["db", "migrate", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    dir
}

/// Rows in the database's log, once there are `n` (waits at most 10 s).
async fn rows(pg: &PgCluster, db: &str, n: i64) {
    let c = pg.client(db).await;
    let ok = eventually(Duration::from_secs(10), || {
        let c = &c;
        async move {
            let r = c.query_one("SELECT count(*) FROM queries", &[]).await;
            r.is_ok_and(|r| r.get::<_, i64>(0) >= n)
        }
    })
    .await;
    assert!(ok, "fewer than {n} rows in the database after 10 s");
}

/// `sinkhole log ARGS… --config CFG` and `… --file FILE`: both outputs, checked to succeed.
fn both(cfg: &Path, file: &Path, args: &[&str]) -> (String, String) {
    let mut a: Vec<&str> = vec!["log"];
    a.extend_from_slice(args);
    let c = cfg.to_str().unwrap();
    let f = file.to_str().unwrap();
    let mut from_db = a.clone();
    from_db.extend_from_slice(&["--config", c]);
    let mut from_file = a;
    from_file.extend_from_slice(&["--config", c, "--file", f]);
    let (code, db, err) = run(&from_db);
    assert_eq!(code, 0, "{args:?} from the database: {err}");
    let (code, file, err) = run(&from_file);
    assert_eq!(code, 0, "{args:?} from the file: {err}");
    (db, file)
}

/// The HTTP API: `GET path` with the token; (status, JSON).
async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let url = format!("http://{addr}{path}");
    tokio::task::spawn_blocking(move || {
        let mut r = crate::harness::http_agent()
            .get(&url)
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .call()
            .unwrap();
        let status = r.status().as_u16();
        let body = r.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    })
    .await
    .unwrap()
}

/// A messenger starting twice on 127.0.0.2, news and a blocked name on 127.0.0.3, and a
/// device on 127.0.0.4 asking one name every 60 s; waits for each record in the file, so
/// that the file holds them in the script's order. Returns how many there are.
async fn script(s: &TestServer, file: &Path) -> usize {
    let mut n = 0;
    let mut ask = async |src: &str, name: &str, rt: RecordType| {
        s.query_from(src, name, rt).await;
        n += 1;
        records(file, n).await;
    };
    for (name, rt) in [
        ("login.messenger.test.", RecordType::A),
        ("login.messenger.test.", RecordType::AAAA),
        ("api.messenger.test.", RecordType::A),
        ("telemetry.messenger.test.", RecordType::A),
        ("media.msgcdn.test.", RecordType::A),
    ] {
        ask("127.0.0.2", name, rt).await;
    }
    ask("127.0.0.3", "www.news.test.", RecordType::A).await;
    ask("127.0.0.3", "ads.test.", RecordType::A).await;
    s.clock.advance(Duration::from_millis(1_300));
    for name in ["login.messenger.test.", "presence.messenger.test."] {
        ask("127.0.0.2", name, RecordType::A).await;
    }
    for _ in 0..6 {
        ask("127.0.0.4", "beat.vendor.test.", RecordType::A).await;
        s.clock.advance(Duration::from_secs(60));
    }
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_from_the_database_equal_those_from_the_file() {
    let pg = PgCluster::start();
    let url = pg.database("same").await;
    let _m = migrate(&url);
    let up = FakeUpstream::start(zone()).await;
    let s = TestServer::start(
        &config(&up, "dns1.lan", &url, true),
        &[("block.txt", BLOCK)],
    )
    .await;
    let file = s.path("queries.jsonl");
    let n = script(&s, &file).await;
    rows(&pg, "same", n as i64).await;
    let cfg = s.path("sinkhole.toml");
    let cases: [&[&str]; 16] = [
        &["tail", "-n", "100"],
        &["tail", "-n", "3", "--client", "127.0.0.2"],
        &["tail", "--action", "blocked"],
        &["tail", "--name", "*.messenger.test", "--json"],
        &["first"],
        &["first", "--client", "127.0.0.2", "--count", "2"],
        &["first", "--new"],
        &["first", "--since", "1h"],
        &["top"],
        &["top", "--by", "domain"],
        &["top", "--by", "client", "--since", "1h"],
        &["top", "--by", "blocked"],
        &["top", "--by", "group"],
        &["suggest"],
        &["heartbeats", "--min", "5"],
        &["heartbeats", "--client", "127.0.0.4"],
    ];
    for args in cases {
        let (db, file) = both(&cfg, &file, args);
        assert_eq!(db, file, "sinkhole log {args:?}");
        assert!(!db.is_empty(), "sinkhole log {args:?} printed nothing");
    }
    // The reports hold what the script did (not only the same nothing twice).
    let (first, _) = both(&cfg, &file, &["first", "--client", "127.0.0.2"]);
    assert!(first.contains("127.0.0.2  session 1  started"), "{first}");
    assert!(first.contains("127.0.0.2  session 2  started"), "{first}");
    assert!(
        first.contains("3  telemetry.messenger.test  (blocked)"),
        "{first}"
    );
    let (beats, _) = both(&cfg, &file, &["heartbeats"]);
    assert!(beats.contains("beat.vendor.test  every 60 s"), "{beats}");

    // The API's page from the database: the file's records, newest first, each naming
    // its instance; pages of one record walk them all.
    let http = s.http_addr();
    let want: Vec<Value> = records(&file, n)
        .await
        .into_iter()
        .rev()
        .filter(|r| r["client"] == "127.0.0.2")
        .collect();
    let (status, page) = get(http, "/api/v1/log?client=127.0.0.2&limit=100").await;
    assert_eq!(status, 200, "{page}");
    let got: Vec<Value> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["instance"], "dns1.lan", "{r}");
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("instance");
            r
        })
        .collect();
    assert_eq!(got, want);
    let mut paged = Vec::new();
    let mut path = "/api/v1/log?client=127.0.0.2&limit=1".to_string();
    loop {
        let (status, page) = get(http, &path).await;
        assert_eq!(status, 200, "{page}");
        paged.extend(page["records"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => path = format!("/api/v1/log?client=127.0.0.2&limit=1&before={next}"),
            None => break,
        }
    }
    assert_eq!(paged.len(), want.len());
    let (_, blocked) = get(http, "/api/v1/log?action=blocked&name=*.test").await;
    let names: Vec<&str> = blocked["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["qname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ads.test", "telemetry.messenger.test"]);
    let (status, err) = get(http, "/api/v1/log?instance=nosuch").await;
    assert_eq!(status, 400, "{err}");
    assert!(err.to_string().contains("dns1.lan"), "{err}");
    let (status, top) = get(http, "/api/v1/stats/top?by=client&instance=dns1.lan").await;
    assert_eq!(status, 200, "{top}");
    assert_eq!(
        top["top"][0],
        serde_json::json!({"key": "127.0.0.2", "count": 7})
    );
    let (status, series) = get(http, "/api/v1/stats/series?minutes=60").await;
    assert_eq!(status, 200, "{series}");
    let sum = |k: &str| -> u64 {
        series[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .sum()
    };
    assert_eq!((sum("queries"), sum("blocked")), (n as u64, 2), "{series}");
    let (status, d) = get(http, "/api/v1/discovery?client=127.0.0.2").await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["sessions"].as_array().unwrap().len(), 2, "{d}");
    assert_eq!(d["sessions_read"], 2, "{d}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_one_log_and_keep_their_sessions() {
    let pg = PgCluster::start();
    let url = pg.database("two").await;
    let _m = migrate(&url);
    let up = FakeUpstream::start(zone()).await;
    let dns1 = TestServer::start(
        &config(&up, "dns1.lan", &url, false),
        &[("block.txt", BLOCK)],
    )
    .await;
    let dns2 = TestServer::start(
        &config(&up, "dns2.lan", &url, false),
        &[("block.txt", BLOCK)],
    )
    .await;
    // The laptop asks its first resolver, then its second: one session on each, both
    // numbered 1 (sessions are per instance).
    dns1.query_from("127.0.0.5", "login.messenger.test.", RecordType::A)
        .await;
    dns1.query_from("127.0.0.5", "api.messenger.test.", RecordType::A)
        .await;
    dns2.query_from("127.0.0.5", "www.news.test.", RecordType::A)
        .await;
    dns2.query_from("127.0.0.6", "media.msgcdn.test.", RecordType::A)
        .await;
    rows(&pg, "two", 4).await;
    let cfg = dns1.path("sinkhole.toml");
    let c = cfg.to_str().unwrap();
    let (code, out, err) = run(&["log", "first", "--client", "127.0.0.5", "--config", c]);
    assert_eq!(code, 0, "{err}");
    let heads: Vec<&str> = out.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(heads.len(), 2, "{out}");
    assert!(
        heads[0].starts_with("127.0.0.5  session 1 on dns1.lan  started"),
        "{out}"
    );
    assert!(
        heads[1].starts_with("127.0.0.5  session 1 on dns2.lan  started"),
        "{out}"
    );
    assert!(out.contains("1  login.messenger.test  new\n"), "{out}");
    assert!(out.contains("1  www.news.test  new\n"), "{out}");
    // One instance: its sessions only, without the instance's name.
    let (code, out, err) = run(&[
        "log",
        "first",
        "--client",
        "127.0.0.5",
        "--instance",
        "dns2.lan",
        "--config",
        c,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("127.0.0.5  session 1  started"), "{out}");
    assert!(!out.contains("messenger"), "{out}");
    // tail names the instance of each line, unless narrowed to one.
    let (_, out, _) = run(&["log", "tail", "--config", c]);
    assert_eq!(out.lines().count(), 4, "{out}");
    assert_eq!(out.matches(" @dns1.lan").count(), 2, "{out}");
    assert_eq!(out.matches(" @dns2.lan").count(), 2, "{out}");
    let (_, out, _) = run(&["log", "tail", "--instance", "dns2.lan", "--config", c]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(!out.contains(" @"), "{out}");
    let (_, out, _) = run(&["log", "top", "--by", "client", "--config", c]);
    assert_eq!(out, "        3  127.0.0.5\n        1  127.0.0.6\n");
    let (code, _, err) = run(&["log", "first", "--instance", "dns9", "--config", c]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("dns9") && err.contains("dns1.lan, dns2.lan"),
        "{err}"
    );
}

/// Reads lines from a child's stdout on a thread; returns them as they come.
fn lines_of(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_follow_prints_a_row_written_after_it_started() {
    let pg = PgCluster::start();
    let url = pg.database("follow").await;
    let _m = migrate(&url);
    let up = FakeUpstream::start(zone()).await;
    let s = TestServer::start(
        &config(&up, "dns1.lan", &url, false),
        &[("block.txt", BLOCK)],
    )
    .await;
    s.query_from("127.0.0.7", "www.news.test.", RecordType::A)
        .await;
    rows(&pg, "follow", 1).await;
    let cfg: PathBuf = s.path("sinkhole.toml");
    let mut child = bin()
        .args([
            "log",
            "tail",
            "-f",
            "-n",
            "1",
            "--client",
            "127.0.0.7",
            "--config",
        ])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(first.contains("www.news.test"), "{first}");
    // Another client's query is not shown; ours is, soon after it is written.
    s.query_from("127.0.0.8", "api.messenger.test.", RecordType::A)
        .await;
    s.query_from("127.0.0.7", "login.messenger.test.", RecordType::A)
        .await;
    let asked = Instant::now();
    let line = rx.recv_timeout(Duration::from_secs(5));
    let took = asked.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("tail -f printed no new row within 5 s");
    assert!(line.contains("login.messenger.test"), "{line}");
    // Written every 50 ms, polled every 500 ms.
    assert!(took < Duration::from_millis(1_500), "{took:?}");
    assert!(rx.try_recv().is_err());

    // The API's stream follows the database the same way; its records name the instance.
    let mut c = open_stream(s.http_addr(), "client=127.0.0.7", None).await;
    s.query_from("127.0.0.8", "media.msgcdn.test.", RecordType::A)
        .await;
    s.query_from("127.0.0.7", "presence.messenger.test.", RecordType::A)
        .await;
    let got = read_until(&mut c, b"presence", Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got);
    let data: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(data.len(), 1, "{text}");
    assert_eq!(data[0]["qname"], "presence.messenger.test", "{text}");
    assert_eq!(data[0]["instance"], "dns1.lan", "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_down_or_refusing_the_password_is_named() {
    let pg = PgCluster::start();
    let url = pg.database("bad").await;
    let dir = migrate(&url);
    let wrong = url.replace(crate::pg::PASSWORD, "not-the-password");
    let cfg = dir.path().join("wrong.toml");
    std::fs::write(&cfg, format!("[log]\n[log.postgres]\nurl = \"{wrong}\"\n")).unwrap();
    let (code, out, err) = run(&["log", "first", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("wrong.toml: [log.postgres]"), "{err}");
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(err.contains("log.postgres.url"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
    // No schema yet: says to migrate.
    let empty = pg.database("empty").await;
    let cfg = dir.path().join("empty.toml");
    std::fs::write(&cfg, format!("[log]\n[log.postgres]\nurl = \"{empty}\"\n")).unwrap();
    let (code, _, err) = run(&["log", "top", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("sinkhole db migrate"), "{err}");
    // Down.
    pg.stop();
    let cfg = dir.path().join("migrate.toml");
    let (code, _, err) = run(&["log", "tail", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
