//! Reload memory (issue 14): a reload of a big list peaks at the serving list plus one new
//! list, never two copies of the new one beside the old. Measured as the lab does, from the
//! peak RSS (`VmHWM`) of a real `sinkhole serve` process, relative to what the list itself
//! holds in that process, so that the figure does not depend on the build or the machine.

use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::fake_upstream::FakeUpstream;
use crate::harness::{first_answer, free_port, make_query, spawn_serve, stop_serve, udp_exchange};

/// Rules in the big list: big enough (about 15 MiB in memory) that the list dwarfs what
/// else moves in the process, small enough to load in a few seconds in a debug build.
const RULES: usize = 400_000;

/// `VmRSS` and `VmHWM` of process `pid`, in KiB.
fn rss_and_peak(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Replaces the list at `path` at once (as a list manager would): `RULES` names and
/// `sentinel`, written beside it and renamed over it.
fn write_list(path: &Path, sentinel: &str) {
    let mut text = String::with_capacity(RULES * 24);
    for i in 0..RULES {
        // Names of 2 or 3 labels, 14 to 30 bytes, as in real lists.
        text.push_str(&format!("ads{}.tracker{i}.example{}.com\n", i % 97, i % 7));
    }
    text.push_str(sentinel);
    text.push('\n');
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Waits (at most 120 s: a debug build parses slowly on a busy machine) until `name` is
/// blocked, i.e. the reload that the changed file triggers has been swapped in.
async fn wait_blocked(addr: std::net::SocketAddr, name: &str) {
    let t = Instant::now();
    loop {
        let q = make_query(name, RecordType::A, None);
        if let Some(m) = udp_exchange(addr, &q).await
            && first_answer(&m) == "0.0.0.0"
        {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "{name} never blocked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_of_a_big_list_peaks_at_the_old_list_plus_one_new_one() {
    let up = FakeUpstream::start(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("big.txt");
    std::fs::write(&list, "sentinel0.test\n").unwrap();
    let port = free_port();
    let cfg = dir.path().join("s.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\n[upstream]\nservers = [\"{}\"]\n\
             [blocking]\nmode = \"sinkhole\"\nlists = [\"{}\"]\n",
            up.addr,
            list.display()
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let (child, first) = spawn_serve(&cfg, addr, "sentinel0.test.").await;
    assert_eq!(first_answer(&first), "0.0.0.0");
    let pid = child.id();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (empty, _) = rss_and_peak(pid);

    // The big list arrives (the file watch reloads it); the tiny old one is freed.
    write_list(&list, "sentinel1.test");
    wait_blocked(addr, "sentinel1.test.").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (serving, load_peak) = rss_and_peak(pid);
    let held = serving.saturating_sub(empty);
    assert!(
        held > (RULES as u64 * 24) / 1024,
        "the list should hold at least 24 bytes a rule: {held} KiB"
    );

    // The same list again, one name changed: the new set is built while the old serves.
    write_list(&list, "sentinel2.test");
    wait_blocked(addr, "sentinel2.test.").await;
    let (_, reload_peak) = rss_and_peak(pid);
    let log = stop_serve(child);
    // Built in place, a list costs its own size while it loads; a builder with hash tables
    // of its own and a frozen copy made at the end cost about 1.5 times that to load, and
    // twice that to reload beside the serving list.
    let figures = format!(
        "RSS {empty} KiB empty, {serving} KiB serving the list ({held} KiB), peak {load_peak} KiB \
         after loading it, {reload_peak} KiB after reloading it"
    );
    eprintln!("{figures}");
    let msg = format!("{figures}\n{log}");
    assert!(
        load_peak.saturating_sub(empty) <= held * 13 / 10,
        "loading peaked above 1.3 lists: {msg}"
    );
    assert!(
        reload_peak.saturating_sub(serving) <= held * 3 / 2,
        "a reload peaked above the serving list plus 1.5 new ones: {msg}"
    );
}
