//! `sinkhole serve` under systemd's protocols, with the test as the service manager: the
//! `sd_notify` messages on a socket of the test's own (`$NOTIFY_SOCKET`): READY once it
//! answers, RELOADING and READY around SIGHUP (a failed reload too), WATCHDOG at the
//! `$WATCHDOG_USEC` pace, STOPPING at SIGTERM; and journal-format log lines when
//! `$JOURNAL_STREAM` names its stderr.

use std::io::{BufRead as _, BufReader};
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{
    bin, first_answer, free_port, load_and_bind, make_query, signal, start_service, udp_exchange,
};
use sinkhole::service::{BeforeServing, ServiceOptions};

/// The next message on `sock` within `within`, `None` when none came.
fn next(sock: &UnixDatagram, within: Duration) -> Option<String> {
    sock.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 1024];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The next message that is not a watchdog keep-alive.
fn next_state(sock: &UnixDatagram, within: Duration) -> Option<String> {
    let until = Instant::now() + within;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match next(sock, left)? {
            m if m == "WATCHDOG=1" => continue,
            m => return Some(m),
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_tells_systemd_ready_reloading_watchdog_and_stopping_and_logs_for_the_journal() {
    let up = FakeUpstream::start(vec![a("www.test.", "192.0.2.1", 300)]).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("s.toml");
    std::fs::write(dir.path().join("b.txt"), "ads.test\n").unwrap();
    let good = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\n[upstream]\nservers = [\"{}\"]\n\
         [blocking]\nlists = [\"b.txt\"]\n",
        up.addr
    );
    std::fs::write(&config, &good).unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    // stderr is a pipe of ours; JOURNAL_STREAM names it, as systemd names the journal's.
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    let st = nix::sys::stat::fstat(write_end.as_fd()).unwrap();
    let mut child = bin()
        .args(["serve", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .env("JOURNAL_STREAM", format!("{}:{}", st.st_dev, st.st_ino))
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(write_end))
        .spawn()
        .unwrap();
    let stop = |child: &mut std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
    };

    // READY only once it answers: the first query after READY is answered.
    let Some(ready) = next_state(&sock, Duration::from_secs(15)) else {
        stop(&mut child);
        panic!("no READY within 15 s");
    };
    assert!(
        ready.starts_with("READY=1\nSTATUS=serving DNS on"),
        "{ready:?}"
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let q = make_query("x.ads.test.", RecordType::A, None);
    let m = udp_exchange(addr, &q).await.expect("answers once READY");
    assert_eq!(first_answer(&m), "0.0.0.0");

    // The watchdog: keep-alives at half the interval.
    let mut pings = 0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(900) {
        if next(&sock, Duration::from_millis(900)).as_deref() == Some("WATCHDOG=1") {
            pings += 1;
        }
    }
    assert!(
        pings >= 2,
        "{pings} keep-alives in 0.9 s at WATCHDOG_USEC=400000"
    );

    // SIGHUP: RELOADING, then READY when the reload is over; a broken config too (the old
    // one keeps serving, and systemd must not be left in "reloading").
    signal(&child, "HUP");
    assert_eq!(
        next_state(&sock, Duration::from_secs(10)).as_deref(),
        Some("RELOADING=1\nSTATUS=reloading")
    );
    assert_eq!(
        next_state(&sock, Duration::from_secs(10)).as_deref(),
        Some("READY=1\nSTATUS=serving DNS; reloaded")
    );
    std::fs::write(&config, "[server\n").unwrap();
    signal(&child, "HUP");
    assert_eq!(
        next_state(&sock, Duration::from_secs(10)).as_deref(),
        Some("RELOADING=1\nSTATUS=reloading")
    );
    let after = next_state(&sock, Duration::from_secs(10)).unwrap_or_default();
    assert!(
        after.starts_with("READY=1\nSTATUS=serving DNS; the reload failed"),
        "{after:?}"
    );
    let m = udp_exchange(addr, &q).await.expect("still answers");
    assert_eq!(first_answer(&m), "0.0.0.0");

    signal(&child, "TERM");
    assert_eq!(
        next_state(&sock, Duration::from_secs(10)).as_deref(),
        Some("STOPPING=1\nSTATUS=stopping")
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");

    // Every log line in the journal's format: a priority, no timestamp of our own.
    let lines: Vec<String> = BufReader::new(std::fs::File::from(read_end))
        .lines()
        .map(Result::unwrap)
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<6>") && l.contains("serving DNS")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<3>") && l.contains("reload failed")),
        "{lines:?}"
    );
    for l in &lines {
        let p = l.get(..3).unwrap_or_default();
        assert!(
            ["<3>", "<4>", "<6>", "<7>"].contains(&p),
            "no priority: {l:?}"
        );
        assert!(
            !l.contains("INFO") && !l.get(3..).unwrap_or_default().starts_with("20"),
            "level or time in {l:?}"
        );
    }
}

/// What `systemd-analyze security --offline=yes` says of the unit at `path`.
fn security(path: &std::path::Path) -> String {
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dist/systemd/sinkhole.service` with its binary at `bin`, in a directory of its own.
fn unit_with(bin: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dist/systemd/sinkhole.service"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sinkhole.service");
    std::fs::write(&path, unit.replace("/usr/bin/sinkhole", bin)).unwrap();
    (dir, path)
}

#[test]
fn the_unit_verifies_and_its_exposure_is_at_most_two() {
    let (_dir, path) = unit_with(env!("CARGO_BIN_EXE_sinkhole"));
    // The man pages come with the package; everything else must verify.
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian: systemd)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
    let text = security(&path);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for sinkhole.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
    // The command lines themselves: ExecStartPre checks a good config, ExecStart gets as
    // far as reading the config (a usage error would say "Usage").
    let unit = std::fs::read_to_string(&path).unwrap();
    let exec = |key: &str| -> Vec<String> {
        let line = unit.lines().find_map(|l| l.strip_prefix(key)).unwrap();
        line.split_whitespace().map(str::to_string).collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[upstream]\nservers = [\"127.0.0.1:53\"]\n").unwrap();
    let run = |argv: Vec<String>, config: &std::path::Path| {
        let argv: Vec<String> = argv
            .into_iter()
            .map(|a| a.replace("/etc/sinkhole/sinkhole.toml", config.to_str().unwrap()))
            .collect();
        std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .output()
            .unwrap()
    };
    let pre = run(exec("ExecStartPre="), &good);
    assert!(
        pre.status.success(),
        "{}",
        String::from_utf8_lossy(&pre.stderr)
    );
    let missing = dir.path().join("missing.toml");
    let start = run(exec("ExecStart="), &missing);
    let err = String::from_utf8_lossy(&start.stderr);
    assert!(
        !start.status.success() && err.contains("missing.toml") && !err.contains("Usage"),
        "{err}"
    );
    // A unit that gives nothing up scores far higher: the check can fail.
    let lax = std::fs::read_to_string(&path).unwrap();
    let lax: String = lax
        .lines()
        .filter(|l| {
            !l.starts_with("Protect")
                && !l.starts_with("Restrict")
                && !l.starts_with("SystemCall")
                && !l.starts_with("Capability")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, lax).unwrap();
    let text = security(&path);
    assert!(
        !text.contains("exposure level for sinkhole.service: 1.")
            && !text.contains("exposure level for sinkhole.service: 0."),
        "{text}"
    );
}

/// The `Uid:`, `Gid:`, `Groups:` and `CapEff:` lines of every thread of `pid`.
fn identities(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let keep = ["Uid:", "Gid:", "Groups:", "CapEff:", "CapPrm:", "CapAmb:"];
        let lines: Vec<String> = status
            .lines()
            .filter(|l| keep.iter().any(|k| l.starts_with(k)))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        out.push(lines.join("; "));
    }
    out
}

#[test]
fn started_as_root_on_port_53_it_answers_as_server_user_with_no_capability_left() {
    use crate::firewall::{Netns, cannot_run, ok, sh};
    if let Some(why) = cannot_run() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the privilege test: {why}"
        );
        println!("privilege test skipped: {why}");
        return;
    }
    let mut netns = Netns::new("shpriv");
    let ns = netns.name.clone();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.txt"), "ads.test\n").unwrap();
    let config = dir.path().join("s.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = [\"127.0.0.1:53\"]\ntls_listen = [\"127.0.0.1:853\"]\n\
         tls_cert = \"c/cert.pem\"\ntls_key = \"c/key.pem\"\nuser = \"nobody\"\n\
         [upstream]\nservers = [\"127.0.0.1:5353\"]\n[blocking]\nlists = [\"b.txt\"]\n\
         [log]\npath = \"q.jsonl\"\n",
    )
    .unwrap();
    ok(&[
        env!("CARGO_BIN_EXE_sinkhole"),
        "cert",
        "self-signed",
        "--name",
        "dns.test",
        "--out",
        dir.path().join("c").to_str().unwrap(),
    ]);
    let child = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            env!("CARGO_BIN_EXE_sinkhole"),
            "serve",
            "--config",
        ])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // `ip netns exec` execs the program: the child's PID is the server's.
    let pid = child.id();
    let mut child = child;
    let (tx, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    netns.children.push(child);
    let ask = || {
        sh(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "kdig",
            "+short",
            "+time=1",
            "+retry=0",
            "@127.0.0.1",
            "-p",
            "53",
            "x.ads.test",
        ])
    };
    let t = Instant::now();
    let mut answer = String::new();
    while t.elapsed() < Duration::from_secs(15) {
        answer = String::from_utf8_lossy(&ask().stdout).trim().to_string();
        if answer == "0.0.0.0" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(answer, "0.0.0.0", "answers on port 53");
    // The listeners start before the drop (it follows the last bind): the identities are
    // read once the server says that it gave up root, not while glibc moves its threads
    // over one by one.
    let mut seen = Vec::new();
    let t = Instant::now();
    while !seen.iter().any(|l: &String| l.contains("gave up root")) {
        let left = Duration::from_secs(10).saturating_sub(t.elapsed());
        match lines.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => panic!("no line \"gave up root\" in {seen:#?}"),
        }
    }
    // Every thread: uid and gid of nobody (65534), no supplementary group but its own, and
    // no capability in any set.
    let ids = identities(pid);
    assert!(ids.len() > 2, "threads: {ids:?}");
    for t in &ids {
        assert!(t.contains("Uid: 65534 65534 65534 65534"), "{t}");
        assert!(t.contains("Gid: 65534 65534 65534 65534"), "{t}");
        assert!(
            t.contains("Groups: 65534") || t.ends_with("Groups:") || t.contains("Groups:;"),
            "{t}"
        );
        assert!(
            t.contains("CapEff: 0000000000000000") && t.contains("CapPrm: 0000000000000000"),
            "{t}"
        );
    }
    // The query log's folder (the test's, root's, mode 0700) is not the user's: one line
    // says so, and the service goes on.
    let want = format!(
        "log.path: {} is not writable by user nobody",
        dir.path().display()
    );
    let t = Instant::now();
    while !seen.iter().any(|l: &String| l.contains(&want)) {
        let left = Duration::from_secs(10).saturating_sub(t.elapsed());
        match lines.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => panic!("no line {want:?} in {seen:#?}"),
        }
    }
    // Still answering after the drop, over UDP and TLS (bound before it).
    assert_eq!(String::from_utf8_lossy(&ask().stdout).trim(), "0.0.0.0");
    let tls = sh(&[
        "ip",
        "netns",
        "exec",
        &ns,
        "kdig",
        "+short",
        "+tls",
        "+time=2",
        "+retry=0",
        "@127.0.0.1",
        "-p",
        "853",
        "x.ads.test",
    ]);
    assert_eq!(String::from_utf8_lossy(&tls.stdout).trim(), "0.0.0.0");
}

#[test]
fn a_user_that_does_not_exist_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("s.toml");
    std::fs::write(&config, "[server]\nuser = \"no-such-user-xyz\"\n").unwrap();
    let out = bin()
        .args(["config", "check"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("s.toml:2:") && err.contains("server.user") && err.contains("useradd"),
        "{err}"
    );
}

#[test]
fn a_port_in_use_or_below_1024_says_who_holds_it_or_what_to_grant() {
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("s.toml");
    std::fs::write(
        &config,
        format!("[server]\nlisten = [\"127.0.0.1:{port}\"]\n"),
    )
    .unwrap();
    let out = bin()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!(
            "cannot listen on 127.0.0.1:{port} (udp): address in use by "
        )) && last.contains(&format!("(pid {})", std::process::id())),
        "{err}"
    );
    if crate::firewall::have("setpriv") && nix::unistd::geteuid().is_root() {
        // Not root and no capability: port 53 is refused, and the line says what to grant.
        std::fs::write(&config, "[server]\nlisten = [\"127.0.0.1:53\"]\n").unwrap();
        let out = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                env!("CARGO_BIN_EXE_sinkhole"),
                "serve",
                "--config",
            ])
            .arg(&config)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("port 53 is below 1024") && err.contains("CAP_NET_BIND_SERVICE"),
            "{err}"
        );
    }
}

/// `serve` gives up root in `before_serving`, so nothing may be answered before that step
/// has returned: a client asking from before the start (its queries wait in the bound
/// socket) gets its first answer only after the step, which takes 300 ms here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_answered_before_the_step_between_binding_and_serving() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.txt"), "ads.test\n").unwrap();
    let bound = load_and_bind(
        dir.path(),
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"127.0.0.1:9\"]\n\
         [blocking]\nlists = [\"b.txt\"]\n",
    );
    let addr = bound.2.local_addrs()[0];
    let stepped = Arc::new(AtomicBool::new(false));
    // Asks every 5 ms from now on; says whether the step had returned when the first
    // answer came.
    let client = {
        let stepped = Arc::clone(&stepped);
        let query = make_query("ads.test.", RecordType::A, None)
            .to_vec()
            .unwrap();
        std::thread::spawn(move || {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(5)))
                .unwrap();
            sock.connect(addr).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut buf = [0u8; 512];
            loop {
                sock.send(&query).unwrap();
                if sock.recv(&mut buf).is_ok() {
                    return stepped.load(Ordering::SeqCst);
                }
                assert!(Instant::now() < deadline, "no answer within 10 s");
            }
        })
    };
    let step = {
        let stepped = Arc::clone(&stepped);
        BeforeServing(Arc::new(move || {
            std::thread::sleep(Duration::from_millis(300));
            stepped.store(true, Ordering::SeqCst);
            Ok(())
        }))
    };
    let opts = ServiceOptions {
        before_serving: Some(step),
        ..ServiceOptions::default()
    };
    let service = start_service(bound, opts).unwrap();
    let after_step = tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap();
    assert!(
        after_step,
        "a query was answered before before_serving returned"
    );
    service.shutdown();
}

/// A step that fails stops the start with its error, before anything is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_between_binding_and_serving_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let bound = load_and_bind(dir.path(), "[server]\nlisten = [\"127.0.0.1:0\"]\n");
    let opts = ServiceOptions {
        before_serving: Some(BeforeServing(std::sync::Arc::new(|| {
            Err(std::io::Error::other("cannot become user \"nobody\""))
        }))),
        ..ServiceOptions::default()
    };
    let err = start_service(bound, opts)
        .err()
        .expect("the start goes on after a failed step");
    assert!(err.to_string().contains("cannot become user"), "{err}");
}
