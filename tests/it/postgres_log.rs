//! `[log.postgres]` end to end: a real PostgreSQL cluster of the test's own (`pg.rs`), the
//! schema made by the real `sinkhole db migrate`, the real service writing its query log
//! there. The rows carry what the JSONL file of the same run carries; a database that is
//! down at start, stopped under load, refusing the password, or on a newer schema never
//! costs an answer, and what it could not take is written later or counted.

use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{
    TestServer, bin, first_answer, free_port, make_query, rcode, spawn_serve, stop_serve,
    udp_exchange,
};
use crate::pg::{PgCluster, eventually};
use crate::querylog::records;

/// The rows of `queries` in the file's JSON shape, oldest first.
async fn rows(c: &tokio_postgres::Client) -> Vec<Value> {
    c.query(
        "SELECT json_build_object(
            'ts', to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
            'instance', instance, 'client', host(client), 'proto', proto, 'qname', qname,
            'domain', domain, 'qtype', qtype, 'action', action, 'rule', rule, 'list', list,
            'rcode', rcode, 'answers', answers, 'upstream', upstream,
            'elapsed_us', elapsed_us, 'session', session, 'seq', seq, 'new', new)::text
         FROM queries ORDER BY ts, seq",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| serde_json::from_str(r.get::<_, &str>(0)).unwrap())
    .collect()
}

async fn count(c: &tokio_postgres::Client) -> i64 {
    match c.query_one("SELECT count(*) FROM queries", &[]).await {
        Ok(r) => r.get(0),
        Err(e) => {
            eprintln!("count: {e:?}");
            -1
        }
    }
}

/// Writes a config with `[log.postgres]` at `url` into `dir`; returns its path.
fn pg_config(dir: &std::path::Path, port: u16, url: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("sinkhole.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\nname = \"dns1.lan\"\n\
             [upstream]\nservers = [\"127.0.0.1:9\"]\ntimeout_ms = 300\n\
             [[local.records]]\nname = \"probe.lan\"\na = [\"192.0.2.1\"]\n\
             [log]\npath = \"{}\"\n[log.postgres]\nurl = \"{url}\"\nbatch_ms = 100\n{extra}",
            dir.join("q.jsonl").display()
        ),
    )
    .unwrap();
    path
}

/// Runs `sinkhole db migrate --config FILE`; returns (exit code, stdout, stderr).
fn migrate(config: &std::path::Path) -> (i32, String, String) {
    let out = bin()
        .args(["db", "migrate", "--config"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_applied_twice_are_a_no_op_and_a_newer_schema_is_refused() {
    let pg = PgCluster::start();
    let url = pg.database("mig").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = pg_config(dir.path(), free_port(), &url, "");
    let (code, out, err) = migrate(&cfg);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("applied 0001_initial"), "{out}");
    let c = pg.client("mig").await;
    let tables = |c: tokio_postgres::Client| async move {
        let r = c
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
                &[],
            )
            .await
            .unwrap();
        (r.get::<_, i64>(0), c)
    };
    let (before, c) = tables(c).await;
    let (code, out, err) = migrate(&cfg);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("already at version 1; nothing to do"), "{out}");
    let (after, c) = tables(c).await;
    assert_eq!(before, after);
    let n: i64 = c
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // A newer sinkhole upgraded the schema: this one neither migrates nor writes.
    c.execute(
        "INSERT INTO schema_migrations (version, name) VALUES (99, 'future')",
        &[],
    )
    .await
    .unwrap();
    let (code, _, err) = migrate(&cfg);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("version 99") && err.contains("upgrade sinkhole"),
        "{err}"
    );
    let port = free_port();
    let cfg = pg_config(dir.path(), port, &url, "");
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let (child, m) = spawn_serve(&cfg, addr, "probe.lan.").await;
    assert_eq!(first_answer(&m), "192.0.2.1");
    for _ in 0..5 {
        let m = udp_exchange(addr, &make_query("probe.lan.", RecordType::A, None)).await;
        assert_eq!(m.map(|m| first_answer(&m)).as_deref(), Some("192.0.2.1"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&c).await, 0, "nothing written on a newer schema");
    let log = stop_serve(child);
    assert!(
        log.contains("schema is at version 99") && log.contains("upgrade sinkhole"),
        "{log}"
    );
    // The file log is written all the same.
    assert!(records(&dir.path().join("q.jsonl"), 6).await.len() >= 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn records_reach_the_database_with_the_fields_of_the_file() {
    let pg = PgCluster::start();
    let url = pg.database("fields").await;
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(migrate(&pg_config(dir.path(), 1, &url, "")).0, 0);
    let up = FakeUpstream::start(vec![a("www.news.test.", "192.0.2.40", 300)]).await;
    let s = TestServer::start(
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nname = \"dns1.lan\"\n\
             [upstream]\nservers = [\"{}\"]\n[blocking]\nlists = [\"block.txt\"]\n\
             [log]\npath = \"{{dir}}/q.jsonl\"\n[log.postgres]\nurl = \"{url}\"\nbatch_ms = 100\n",
            up.addr
        ),
        &[("block.txt", "ads.test\n")],
    )
    .await;
    let names = [
        ("www.news.test.", RecordType::A),
        ("tracker.ads.test.", RecordType::A),
        ("www.news.test.", RecordType::A),
        ("ads.test.", RecordType::AAAA),
    ];
    for (n, t) in names {
        s.query(n, t).await;
    }
    let file = records(&s.path("q.jsonl"), names.len()).await;
    let c = pg.client("fields").await;
    assert!(
        eventually(Duration::from_secs(5), || async { count(&c).await == 4 }).await,
        "rows: {}",
        count(&c).await
    );
    let db = rows(&c).await;
    for (f, d) in file.iter().zip(&db) {
        // The file's fields, and the transport.
        for k in crate::querylog::FIELDS.iter().chain(&["proto"]) {
            assert_eq!(f[*k], d[*k], "{k}: file {f} database {d}");
        }
        assert_eq!(d["instance"], "dns1.lan");
    }
    assert_eq!(db[1]["action"], "blocked");
    assert_eq!(db[1]["domain"], "ads.test");
    assert_eq!(db[0]["answers"], serde_json::json!(["192.0.2.40"]));
    assert_eq!(db[2]["action"], "cached");
    let (written, dropped, _) = s.service().query_log().unwrap().postgres().unwrap();
    assert_eq!((written, dropped), (4, 0));
    // The day's partition was made ahead, and tomorrow's: nothing in the default one.
    let parts: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'queries'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(parts >= 3, "{parts}");
    let stray: i64 = c
        .query_one("SELECT count(*) FROM queries_default", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stray, 0);
}

/// Sends `n` queries for the local name at about `per_s` a second; returns how many were
/// answered with its address.
async fn load(addr: std::net::SocketAddr, n: usize, per_s: u64) -> usize {
    let mut ok = 0;
    let gap = Duration::from_micros(1_000_000 / per_s);
    for _ in 0..n {
        let t = Instant::now();
        let m = tokio::time::timeout(
            Duration::from_secs(2),
            udp_exchange(addr, &make_query("probe.lan.", RecordType::A, None)),
        )
        .await;
        if let Ok(Some(m)) = m
            && rcode(&m) == 0
            && first_answer(&m) == "192.0.2.1"
        {
            ok += 1;
        }
        tokio::time::sleep(gap.saturating_sub(t.elapsed())).await;
    }
    ok
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_down_at_start_or_stopped_under_load_costs_no_answer_and_no_record() {
    let pg = PgCluster::start();
    let url = pg.database("outage").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = pg_config(dir.path(), port, &url, "");
    assert_eq!(migrate(&cfg).0, 0);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    // Down at start: the resolver starts and answers; the log catches up later.
    pg.stop();
    let (child, _) = spawn_serve(&cfg, addr, "probe.lan.").await;
    assert_eq!(load(addr, 50, 200).await, 50);
    pg.resume();
    let c = pg.client("outage").await;
    assert!(
        eventually(Duration::from_secs(15), || async { count(&c).await == 51 }).await,
        "after the database came up: {} rows",
        count(&c).await
    );
    // Stopped for 10 s under load: every query answered, every record written after.
    pg.stop();
    let answered = load(addr, 2_000, 200).await; // 10 s
    pg.resume();
    assert_eq!(answered, 2_000);
    let c = pg.client("outage").await;
    assert!(
        eventually(Duration::from_secs(15), || async {
            count(&c).await == 2_051
        })
        .await,
        "after the outage: {} rows",
        count(&c).await
    );
    let log = stop_serve(child);
    assert!(log.contains("cannot connect"), "{log}");
    assert!(log.contains("writing to PostgreSQL again"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_named_and_answers_go_on() {
    let pg = PgCluster::start();
    let url = pg.database("pw").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = pg_config(dir.path(), port, &url, "");
    assert_eq!(migrate(&cfg).0, 0);
    let wrong = url.replace(crate::pg::PASSWORD, "not-the-password");
    let cfg = pg_config(dir.path(), port, &wrong, "");
    let (code, _, err) = migrate(&cfg);
    assert_eq!(code, 1);
    assert!(err.contains("password authentication failed"), "{err}");
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let (child, _) = spawn_serve(&cfg, addr, "probe.lan.").await;
    assert_eq!(load(addr, 20, 200).await, 20);
    let log = stop_serve(child);
    assert!(
        log.contains("password authentication failed") && log.contains("sinkhole@127.0.0.1"),
        "{log}"
    );
    assert!(
        !log.contains(crate::pg::PASSWORD),
        "the password is never logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_with_one_name_are_warned_about() {
    let pg = PgCluster::start();
    let url = pg.database("names").await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let ports = [free_port(), free_port()];
    let cfgs: Vec<_> = (0..2)
        .map(|i| pg_config(dirs[i].path(), ports[i], &url, ""))
        .collect();
    assert_eq!(migrate(&cfgs[0]).0, 0);
    let addr = |p: u16| format!("127.0.0.1:{p}").parse().unwrap();
    let (first, _) = spawn_serve(&cfgs[0], addr(ports[0]), "probe.lan.").await;
    let c = pg.client("names").await;
    assert!(eventually(Duration::from_secs(5), || async { count(&c).await >= 1 }).await);
    let (second, _) = spawn_serve(&cfgs[1], addr(ports[1]), "probe.lan.").await;
    assert!(eventually(Duration::from_secs(5), || async { count(&c).await >= 2 }).await);
    let log2 = stop_serve(second);
    let log1 = stop_serve(first);
    assert!(
        log2.contains("another instance named \"dns1.lan\""),
        "{log2}"
    );
    assert!(!log1.contains("another instance named"), "{log1}");
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_drops_whole_day_partitions() {
    use sinkhole::postgres::writer::{
        day_of, drop_old_partitions, make_partitions, partition_name,
    };
    let pg = PgCluster::start();
    let url = pg.database("retention").await;
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(migrate(&pg_config(dir.path(), 1, &url, "")).0, 0);
    let c = pg.client("retention").await;
    let today = day_of(std::time::SystemTime::now());
    for day in [today - 40, today - 31, today - 30, today - 1] {
        make_partitions(&c, day).await.unwrap();
    }
    c.batch_execute(
        "INSERT INTO queries (ts, instance, client, qname, domain, qtype, action, rcode, answers, tc, elapsed_us, session, seq, new)
         SELECT now() - make_interval(days => d), 'x', '192.0.2.1', 'a.test', 'a.test', 'A', 'allowed', 'NOERROR', '{}', false, 1, 1, 1, false
         FROM unnest(ARRAY[45, 35, 29, 1, 0]) AS d",
    )
    .await
    .unwrap();
    // 30 days kept: today and the 29 before it.
    drop_old_partitions(&c, today - 29).await.unwrap();
    let left: Vec<String> = c
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'queries'::regclass ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for gone in [today - 40, today - 31, today - 30] {
        assert!(!left.contains(&partition_name(gone)), "{left:?}");
    }
    assert!(left.contains(&partition_name(today - 1)), "{left:?}");
    assert_eq!(count(&c).await, 3, "rows of 45 and 35 days ago are gone");
}

/// Unmounts a tmpfs of the test's when dropped.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_on_the_database_side_keeps_records_queued_until_there_is_room() {
    use sinkhole::postgres::writer::{day_of, partition_name};
    use std::os::unix::fs::PermissionsExt as _;
    let pg = PgCluster::start();
    let url = pg.database("disk").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = pg_config(dir.path(), port, &url, "");
    assert_eq!(migrate(&cfg).0, 0);
    // Today's partition on a 2 MiB tmpfs: the disk that fills up.
    let small = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m,mode=0777", "sinkhole-pg-test"])
        .arg(small.path())
        .status()
        .unwrap();
    assert!(ok.success(), "mount tmpfs");
    let _mount = Mount(small.path().to_path_buf());
    let space = small.path().join("ts");
    std::fs::create_dir(&space).unwrap();
    std::fs::set_permissions(&space, std::fs::Permissions::from_mode(0o777)).unwrap();
    let _ = std::process::Command::new("chown")
        .args(["postgres:postgres"])
        .arg(&space)
        .status();
    let c = pg.client("disk").await;
    c.batch_execute(&format!(
        "CREATE TABLESPACE small LOCATION '{}'",
        space.display()
    ))
    .await
    .unwrap();
    let today = day_of(std::time::SystemTime::now());
    let part = partition_name(today);
    c.batch_execute(&format!(
        "CREATE TABLE {part} PARTITION OF queries FOR VALUES FROM (date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') TO (date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '1 day') TABLESPACE small"
    ))
    .await
    .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let (child, _) = spawn_serve(&cfg, addr, "probe.lan.").await;
    // About 25,000 rows: more than 2 MiB of table.
    assert_eq!(load(addr, 25_000, 2_500).await, 25_000);
    let sent = 25_001;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stuck = count(&c).await;
    assert!(stuck < sent, "the small disk took all {stuck} rows");
    // Room again: the partition moves to the main disk; the queued rows follow.
    c.batch_execute(&format!("ALTER TABLE {part} SET TABLESPACE pg_default"))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(20), || async {
            count(&c).await == sent
        })
        .await,
        "after the disk had room: {} of {sent} rows",
        count(&c).await
    );
    let log = stop_serve(child);
    assert!(
        log.contains("No space left on device") || log.contains("could not extend"),
        "{log}"
    );
    assert!(log.contains("writing to PostgreSQL again"), "{log}");
}
