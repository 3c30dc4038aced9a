//! Client groups (`[[groups]]`) and schedules: clients are loopback source addresses
//! (127.0.0.2, 127.0.0.3, … are different clients on Linux); schedules are moved through
//! by advancing the server's clock. MAC-addressed clients are in `groups_mac.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, bin, first_answer};
use crate::querylog::records;

fn zone() -> Vec<hickory_proto::rr::Record> {
    vec![
        a("social.test.", "192.0.2.10", 300),
        a("ads.test.", "192.0.2.20", 300),
        a("www.test.", "192.0.2.30", 300),
    ]
}

const LISTS: &[(&str, &str)] = &[("ads.txt", "ads.test\n"), ("social.txt", "social.test\n")];

/// Three groups: `kids` (127.0.0.2 and 127.0.0.64/26) adds social.txt and answers NXDOMAIN;
/// `staff` (127.0.0.3) has no lists and `inherit = false`: nothing is blocked for it;
/// `overlap` (127.0.0.64/26 again) is never chosen, `kids` comes first.
fn groups_toml(up: std::net::SocketAddr) -> String {
    format!(
        "[upstream]\nservers = [\"{up}\"]\n[blocking]\nlists = [\"ads.txt\"]\n\
         [log]\npath = \"q.jsonl\"\n\
         [[groups]]\nname = \"kids\"\nclients = [\"127.0.0.2\", \"kids.txt\"]\nlists = [\"social.txt\"]\nmode = \"nxdomain\"\n\
         [[groups]]\nname = \"staff\"\nclients = [\"127.0.0.3\"]\ninherit = false\n\
         [[groups]]\nname = \"overlap\"\nclients = [\"127.0.0.64/26\"]\nlists = [\"social.txt\"]\n"
    )
}

// See: #12
#[tokio::test(flavor = "multi_thread")]
async fn r12_each_client_gets_its_groups_lists_and_mode_and_the_log_names_the_group() {
    let up = FakeUpstream::start(zone()).await;
    let mut files = LISTS.to_vec();
    files.push(("kids.txt", "# the lab\n127.0.0.64/26\n"));
    let mut s = TestServer::start(&groups_toml(up.addr), &files).await;

    // The default policy: ads blocked by the sinkhole address, social forwarded.
    let m = s.query_from("127.0.0.1", "ads.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "0.0.0.0");
    let m = s
        .query_from("127.0.0.1", "social.test.", RecordType::A)
        .await;
    assert_eq!(first_answer(&m), "192.0.2.10");
    // kids: the default list too (inherit), and its own; answered NXDOMAIN (its mode).
    for (src, name) in [
        ("127.0.0.2", "ads.test."),
        ("127.0.0.2", "social.test."),
        ("127.0.0.70", "social.test."),
    ] {
        let m = s.query_from(src, name, RecordType::A).await;
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NXDomain,
            "{src} {name}"
        );
        assert!(m.answers.is_empty());
    }
    // staff: inherit = false and no lists of its own, so nothing is blocked.
    let m = s.query_from("127.0.0.3", "ads.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "192.0.2.20");
    // A name no list blocks is the same for everyone.
    let m = s.query_from("127.0.0.2", "www.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "192.0.2.30");

    s.stop();
    let log = records(&s.path("q.jsonl"), 7).await;
    // Two UDP threads: records of different threads may be written in either order.
    let mut got: Vec<(String, String, String, Option<String>)> = log
        .iter()
        .map(|r| {
            (
                r["client"].as_str().unwrap().to_string(),
                r["qname"].as_str().unwrap().to_string(),
                r["action"].as_str().unwrap().to_string(),
                r.get("group").map(|g| g.as_str().unwrap().to_string()),
            )
        })
        .collect();
    let want = [
        ("127.0.0.1", "ads.test", "blocked", None),
        ("127.0.0.1", "social.test", "allowed", None),
        ("127.0.0.2", "ads.test", "blocked", Some("kids")),
        ("127.0.0.2", "social.test", "blocked", Some("kids")),
        ("127.0.0.70", "social.test", "blocked", Some("kids")),
        ("127.0.0.3", "ads.test", "allowed", Some("staff")),
        ("127.0.0.2", "www.test", "allowed", Some("kids")),
    ];
    let mut want: Vec<_> = want
        .iter()
        .map(|(c, q, a, g)| {
            (
                c.to_string(),
                q.to_string(),
                a.to_string(),
                g.map(str::to_string),
            )
        })
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let kids_social = log
        .iter()
        .find(|r| r["client"] == "127.0.0.2" && r["qname"] == "social.test")
        .unwrap();
    assert_eq!(kids_social["rule"], "social.test", "{kids_social:?}");
    assert_eq!(kids_social["list"], "social.txt:1");
    for r in log.iter().filter(|r| r["client"] == "127.0.0.1") {
        assert!(
            r.get("group").is_none(),
            "no group field for the default policy: {r:?}"
        );
    }
}

/// `HH:MM` of a week minute's time of day, and the day's name.
fn day_and_time(wm: u64) -> (&'static str, u64, u64) {
    let day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][(wm / 1440) as usize];
    (day, (wm % 1440) / 60, wm % 60)
}

// See: #12
#[tokio::test(flavor = "multi_thread")]
async fn r12_a_scheduled_group_and_a_scheduled_list_apply_only_in_their_windows() {
    let up = FakeUpstream::start(zone()).await;
    // The window: two hours from the start of the current UTC hour, on today's weekday
    // (1970-01-01 was a Thursday); past midnight it runs overnight.
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let wm = ((secs / 60) + 3 * 1440) % (7 * 1440);
    let (day, h, _) = day_and_time(wm);
    let end = if h + 2 == 24 { 24 } else { (h + 2) % 24 };
    let window = format!("{day} {h:02}:00-{end:02}:00");
    let s = TestServer::start(
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\ntimezone = \"UTC\"\n\
             [upstream]\nservers = [\"{}\"]\n[cache]\nmax_entries = 0\n\
             [blocking]\nlists = [{{ source = \"ads.txt\", schedule = [\"{window}\"] }}]\n\
             [[groups]]\nname = \"office\"\nclients = [\"127.0.0.2\"]\nlists = [\"social.txt\"]\nschedule = [\"{window}\"]\n",
            up.addr
        ),
        LISTS,
    )
    .await;
    let ask = |src: &'static str, name: &'static str| {
        let s = &s;
        async move { first_answer(&s.query_from(src, name, RecordType::A).await) }
    };
    assert_eq!(
        ask("127.0.0.1", "ads.test.").await,
        "0.0.0.0",
        "inside {window}"
    );
    assert_eq!(
        ask("127.0.0.2", "social.test.").await,
        "0.0.0.0",
        "inside {window}"
    );
    assert_eq!(
        ask("127.0.0.2", "ads.test.").await,
        "0.0.0.0",
        "the group inherits the scheduled list"
    );
    // Three hours later both windows are over.
    s.clock.advance(Duration::from_secs(3 * 3600));
    assert_eq!(
        ask("127.0.0.1", "ads.test.").await,
        "192.0.2.20",
        "outside {window}"
    );
    assert_eq!(
        ask("127.0.0.2", "social.test.").await,
        "192.0.2.10",
        "outside {window}"
    );
    // A week later (same weekday and hour) they apply again.
    s.clock
        .advance(Duration::from_secs(7 * 24 * 3600 - 3 * 3600));
    assert_eq!(
        ask("127.0.0.2", "social.test.").await,
        "0.0.0.0",
        "a week on"
    );
}

// See: #12
#[tokio::test(flavor = "multi_thread")]
async fn r12_lists_check_answers_for_a_client_and_names_its_group() {
    let dir = tempfile::tempdir().unwrap();
    for (n, t) in LISTS.iter().chain([("kids.txt", "127.0.0.64/26\n")].iter()) {
        std::fs::write(dir.path().join(n), t).unwrap();
    }
    let cfg = dir.path().join("sinkhole.toml");
    std::fs::write(&cfg, groups_toml("127.0.0.1:9".parse().unwrap())).unwrap();
    let run = |client: Option<&str>| {
        let mut c = bin();
        c.args(["lists", "check", "--config"]).arg(&cfg);
        if let Some(ip) = client {
            c.args(["--client", ip]);
        }
        let out = c.args(["social.test", "ads.test"]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let kids = run(Some("127.0.0.70"));
    assert!(
        kids.starts_with("client 127.0.0.70: group \"kids\"\n"),
        "{kids}"
    );
    assert!(
        kids.contains("social.test  blocked  by social.test  (social.txt:1)"),
        "{kids}"
    );
    assert!(
        kids.contains("ads.test     blocked  by ads.test  (ads.txt:1)"),
        "{kids}"
    );
    let staff = run(Some("127.0.0.3"));
    assert!(
        staff.contains("group \"staff\" (its lists only: inherit = false)"),
        "{staff}"
    );
    assert!(staff.contains("ads.test     not blocked"), "{staff}");
    let nobody = run(Some("127.0.0.9"));
    assert!(
        nobody.starts_with("client 127.0.0.9: in no group; the default policy\n"),
        "{nobody}"
    );
    assert!(nobody.contains("social.test  not blocked"), "{nobody}");
    assert!(nobody.contains("ads.test     blocked"), "{nobody}");
    assert_eq!(
        run(None),
        nobody.split_once('\n').unwrap().1,
        "without --client: the default"
    );
}

// See: #12
#[test]
fn r12_config_check_warns_about_overlapping_groups_and_names_the_winner() {
    let dir = tempfile::tempdir().unwrap();
    for (n, t) in LISTS.iter().chain([("kids.txt", "127.0.0.64/26\n")].iter()) {
        std::fs::write(dir.path().join(n), t).unwrap();
    }
    let cfg = dir.path().join("sinkhole.toml");
    std::fs::write(&cfg, groups_toml("127.0.0.1:9".parse().unwrap())).unwrap();
    let out = bin().args(["config", "check"]).arg(&cfg).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(":18:11: groups.clients: group \"overlap\" overlaps group \"kids\" on 127.0.0.64/26: such a client gets \"kids\""),
        "{err}"
    );
    std::fs::write(
        &cfg,
        "[[groups]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\nschedule = [\"mon-fri 25:00\"]\n",
    )
    .unwrap();
    let out = bin().args(["config", "check"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("sinkhole.toml:4:12: groups.schedule: \"mon-fri 25:00\""),
        "{err}"
    );
}

// See: #12
#[tokio::test(flavor = "multi_thread")]
async fn r12_a_groups_list_file_and_its_config_reload_like_the_rest() {
    let up = FakeUpstream::start(zone()).await;
    let mut files = LISTS.to_vec();
    files.push(("kids.txt", "127.0.0.64/26\n"));
    let s = TestServer::start(&groups_toml(up.addr), &files).await;
    let m = s.query_from("127.0.0.2", "www.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "192.0.2.30");
    // An edit of the group's list file is picked up by the file watch.
    std::fs::write(s.path("social.txt"), "social.test\nwww.test\n").unwrap();
    let t = std::time::Instant::now();
    loop {
        let m = s.query_from("127.0.0.2", "www.test.", RecordType::A).await;
        if m.metadata.response_code == ResponseCode::NXDomain {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the group's list was not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The default policy does not see the group's list.
    let m = s.query_from("127.0.0.1", "www.test.", RecordType::A).await;
    assert_eq!(first_answer(&m), "192.0.2.30");
    // A config reload that takes 127.0.0.2 out of the group applies at once.
    let toml = std::fs::read_to_string(s.path("sinkhole.toml")).unwrap();
    let moved = toml.replace(
        "clients = [\"127.0.0.2\", \"kids.txt\"]",
        "clients = [\"kids.txt\"]",
    );
    assert_ne!(toml, moved);
    std::fs::write(s.path("sinkhole.toml"), moved).unwrap();
    s.service().reloader().reload(true).await.unwrap();
    let m = s
        .query_from("127.0.0.2", "social.test.", RecordType::A)
        .await;
    assert_eq!(first_answer(&m), "192.0.2.10", "no longer in kids");
    let m = s
        .query_from("127.0.0.70", "social.test.", RecordType::A)
        .await;
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NXDomain,
        "still in kids"
    );
}

// See: #12. A CNAME chain is judged by the asking client's lists: a group's list blocks
// the chain for its clients only, on a miss and on a cache hit alike.
#[tokio::test(flavor = "multi_thread")]
async fn r12_a_cname_chain_is_judged_by_the_clients_group() {
    use crate::fake_upstream::cname;
    let up = FakeUpstream::start(vec![
        cname("www.shop.test.", "t.social.test.", 300),
        cname("cdn.shop.test.", "t.social.test.", 300),
        a("t.social.test.", "192.0.2.40", 300),
    ])
    .await;
    let mut files = LISTS.to_vec();
    files.push(("kids.txt", "127.0.0.64/26\n"));
    let mut s = TestServer::start(&groups_toml(up.addr), &files).await;
    // The default policy does not block social.test: the chain is answered (and cached).
    let m = s
        .query_from("127.0.0.1", "www.shop.test.", RecordType::A)
        .await;
    assert_eq!(m.answers.len(), 2, "{m:?}");
    assert_eq!(up.calls(), 1);
    // kids, from the cache: blocked as kids answer (NXDOMAIN).
    let m = s
        .query_from("127.0.0.2", "www.shop.test.", RecordType::A)
        .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{m:?}");
    assert_eq!(up.calls(), 1, "served from the cache");
    // kids, on a miss: blocked too.
    let m = s
        .query_from("127.0.0.2", "cdn.shop.test.", RecordType::A)
        .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{m:?}");
    // And the default client still gets the chain.
    let m = s
        .query_from("127.0.0.1", "cdn.shop.test.", RecordType::A)
        .await;
    assert_eq!(m.answers.len(), 2, "{m:?}");
    s.stop();
    let log = records(&s.path("q.jsonl"), 4).await;
    let kids: Vec<_> = log.iter().filter(|r| r["client"] == "127.0.0.2").collect();
    assert_eq!(kids.len(), 2);
    for r in kids {
        assert_eq!(r["action"], "blocked", "{r:?}");
        assert_eq!(r["group"], "kids", "{r:?}");
        assert_eq!(r["cname"], "t.social.test", "{r:?}");
        assert_eq!(r["list"], "social.txt:1", "{r:?}");
    }
}
