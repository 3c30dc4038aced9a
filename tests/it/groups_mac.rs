//! A group that names its client by MAC address, on a real kernel: the server runs the real
//! `sinkhole serve` in a network namespace joined by veth pairs to two client namespaces.
//! The laptop (MAC 02:00:5e:10:00:01) asks over IPv4 and from two IPv6 addresses (its
//! stable one and a "privacy" one); all three are the one client of group `laptop`, found
//! through the server's neighbour table (ARP, NDP). The other client, another MAC, gets the
//! default policy. Needs root and `ip netns`; without them it says why and returns.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::firewall::{PROBE, cannot_run, ok};
use crate::harness::signal;

const LAPTOP_MAC: &str = "02:00:5e:10:00:01";

/// The namespaces and the server; dropping it stops the server and deletes them.
struct Lab {
    made: Vec<String>,
    server: Option<Child>,
    dir: tempfile::TempDir,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.made {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

impl Lab {
    fn new() -> Self {
        let pid = std::process::id();
        let mut lab = Self {
            made: Vec::new(),
            server: None,
            dir: tempfile::tempdir().unwrap(),
        };
        let [srv, laptop, other] = ["s", "l", "o"].map(|k| format!("shg{k}{pid}"));
        for ns in [&srv, &laptop, &other] {
            ok(&["ip", "netns", "add", ns]);
            lab.made.push(ns.clone());
            ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        for (client, n, mac) in [(&laptop, 1, LAPTOP_MAC), (&other, 2, "02:00:5e:10:00:02")] {
            let (s, c) = (format!("s{n}"), format!("c{n}"));
            ok(&[
                "ip", "-n", &srv, "link", "add", &s, "type", "veth", "peer", "name", &c, "netns",
                client,
            ]);
            ok(&["ip", "-n", client, "link", "set", &c, "address", mac]);
            for (ns, dev, addrs) in [
                (
                    &srv,
                    &s,
                    vec![format!("10.97.{n}.1/24"), format!("fd97:{n}::1/64")],
                ),
                (
                    client,
                    &c,
                    vec![
                        format!("10.97.{n}.2/24"),
                        format!("fd97:{n}::2/64"),
                        format!("fd97:{n}::beef/64"),
                    ],
                ),
            ] {
                for a in &addrs {
                    let mut args = vec!["ip", "-n", ns, "addr", "add", a, "dev", dev];
                    if a.contains(':') {
                        args.push("nodad");
                    }
                    ok(&args);
                }
                ok(&["ip", "-n", ns, "link", "set", dev, "up"]);
            }
        }
        std::fs::write(lab.dir.path().join("probe.py"), PROBE).unwrap();
        std::fs::write(lab.dir.path().join("social.txt"), "social.test\n").unwrap();
        let cfg = lab.dir.path().join("sinkhole.toml");
        std::fs::write(
            &cfg,
            format!(
                "[server]\nlisten = [\"0.0.0.0:53\", \"[::]:53\"]\n\
                 [upstream]\nservers = [\"127.0.0.1:9\"]\ntimeout_ms = 100\n\
                 [access]\nallow = [\"10.97.0.0/16\", \"fd97::/16\"]\n\
                 [log]\npath = \"q.jsonl\"\n\
                 [[groups]]\nname = \"laptop\"\nclients = [\"{LAPTOP_MAC}\"]\nlists = [\"social.txt\"]\n"
            ),
        )
        .unwrap();
        let server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &srv,
                env!("CARGO_BIN_EXE_sinkhole"),
                "serve",
                "--config",
            ])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        lab.server = Some(server);
        lab
    }

    fn ns(&self, which: &str) -> &str {
        self.made
            .iter()
            .find(|n| n.starts_with(&format!("shg{which}")))
            .unwrap()
    }

    /// Asks for `name` from `src` in client namespace `which` ("l" or "o").
    fn ask(&self, which: &str, src: &str, dst: &str, name: &str) -> String {
        let out = ok(&[
            "ip",
            "netns",
            "exec",
            self.ns(which),
            "timeout",
            "5",
            "python3",
            &self.dir.path().join("probe.py").display().to_string(),
            "dns",
            src,
            dst,
            name,
        ]);
        out.trim().to_string()
    }
}

// See: #12
#[test]
fn r12_a_mac_addressed_group_catches_the_clients_ipv4_and_ipv6_addresses() {
    if let Some(why) = cannot_run() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut lab = Lab::new();
    // Wait for the server: the other client's query is answered (SERVFAIL: no upstream).
    let t = Instant::now();
    while lab.ask("o", "10.97.2.2", "10.97.2.1", "www.test") == "timeout" {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "server did not start"
        );
    }
    let laptop = [
        ("10.97.1.2", "10.97.1.1"),
        ("fd97:1::2", "fd97:1::1"),
        ("fd97:1::beef", "fd97:1::1"),
    ];
    for (src, dst) in laptop {
        // A new address is learned from the neighbour table shortly after its first query
        // (the lookup never waits for the kernel): within a few seconds it must be blocked.
        let t = Instant::now();
        loop {
            let got = lab.ask("l", src, dst, "social.test");
            if got == "NOERROR 0.0.0.0" {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{src}: still {got:?} after 5 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // And from then on, every time.
        for _ in 0..3 {
            assert_eq!(
                lab.ask("l", src, dst, "social.test"),
                "NOERROR 0.0.0.0",
                "{src}"
            );
        }
    }
    // The other MAC address gets the default policy, which does not block social.test.
    for (src, dst) in [("10.97.2.2", "10.97.2.1"), ("fd97:2::beef", "fd97:2::1")] {
        for _ in 0..3 {
            let got = lab.ask("o", src, dst, "social.test");
            assert_eq!(got, "SERVFAIL", "{src}: not in the group");
        }
    }
    let server = lab.server.take().unwrap();
    signal(&server, "TERM");
    let mut server = server;
    assert!(server.wait().unwrap().success());
    let log = std::fs::read_to_string(lab.dir.path().join("q.jsonl")).unwrap();
    let blocked: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"action\":\"blocked\""))
        .collect();
    assert!(blocked.len() >= 9, "{log}");
    for l in &blocked {
        assert!(l.contains("\"group\":\"laptop\""), "{l}");
    }
    for src in ["10.97.1.2", "fd97:1::2", "fd97:1::beef"] {
        assert!(
            blocked
                .iter()
                .any(|l| l.contains(&format!("\"client\":\"{src}\""))),
            "{src} in the log as the laptop: {log}"
        );
    }
    assert!(
        !log.lines()
            .any(|l| l.contains("\"client\":\"10.97.2.2\"") && l.contains("\"group\"")),
        "{log}"
    );
}
