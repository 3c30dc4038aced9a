//! `sinkhole firewall apply --confirm` whose process dies in the confirm window: the previous
//! rules are on disk and a guard armed apart from the process (a detached `sinkhole firewall
//! rollback --after …` here; `systemd-run` where systemd is PID 1 in our network namespace)
//! restores them, whatever killed `apply`; `confirm` disarms it; the iptables rollback puts
//! back sinkhole's chains and hooks only, so chains that fail2ban or docker added meanwhile
//! stay. One network namespace per test and no traffic: the rules are read back with
//! `nft list` / `iptables-save`. Needs what `firewall.rs` needs; skips the same way.
//! See: #10

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::firewall::{BIN, cannot_run, have, must, ok, sh};

/// The confirm window of these tests, and how long after it a rollback must be done
/// (the guard fires one second after the window; the rest is slack for a loaded machine).
const WINDOW: &str = "2s";
const WINDOW_SECS: u64 = 2;
const SLACK: Duration = Duration::from_secs(12);

/// One network namespace with a run dir and configs; dropping it deletes the namespace.
struct Ns {
    name: String,
    dir: tempfile::TempDir,
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The backends whose tools are installed, or `None` (with the reason printed) when this
/// machine cannot run namespace tests. Under CI a missing prerequisite fails.
fn backends(test: &str) -> Option<Vec<&'static str>> {
    let skip = |why: String| {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run {test}: {why}"
        );
        println!("{test} skipped: {why}");
    };
    if let Some(why) = cannot_run() {
        skip(why);
        return None;
    }
    let found: Vec<&str> = [("nftables", "nft"), ("iptables", "iptables-restore")]
        .into_iter()
        .filter_map(|(b, tool)| {
            if have(tool) {
                Some(b)
            } else {
                skip(format!("{b} part: {tool} is not installed"));
                None
            }
        })
        .collect();
    (!found.is_empty()).then_some(found)
}

impl Ns {
    fn new(tag: &str) -> Self {
        let name = format!("shfw{tag}{}", std::process::id());
        ok(&["ip", "netns", "add", &name]);
        let ns = Self {
            name,
            dir: tempfile::tempdir().unwrap(),
        };
        ok(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// A config whose rule set opens `inbound` (`tcp/22`): two configs differ in it.
    fn config(&self, backend: &str, inbound: &str) -> PathBuf {
        let path = self
            .dir
            .path()
            .join(format!("{backend}-{}.toml", inbound.replace('/', "-")));
        std::fs::write(
            &path,
            format!(
                "[server]\nlisten = [\"10.99.1.1:53\"]\n[firewall]\nbackend = \"{backend}\"\n\
                 topology = \"gateway\"\nlan_interfaces = [\"r0\"]\nwan_interfaces = [\"r1\"]\n\
                 lan_subnets = [\"10.99.1.0/24\"]\nallow_inbound = [\"{inbound}\"]\n"
            ),
        )
        .unwrap();
        path
    }

    fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        sh(&all)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, BIN, "firewall"])
            .args(args)
            .env("SINKHOLE_RUN_DIR", self.run_dir())
            .stdin(Stdio::null());
        cmd
    }

    fn firewall(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn apply(&self, cfg: &std::path::Path) {
        let cfg = cfg.to_str().unwrap();
        must(
            &self.firewall(&["apply", "--config", cfg]),
            &format!("apply {cfg}"),
        );
    }

    /// `apply --confirm WINDOW` in the background, its output to files in the temp dir.
    fn spawn_apply(&self, cfg: &std::path::Path) -> Child {
        let out = std::fs::File::create(self.dir.path().join("apply.out")).unwrap();
        let err = std::fs::File::create(self.dir.path().join("apply.err")).unwrap();
        self.command(&[
            "apply",
            "--confirm",
            WINDOW,
            "--config",
            cfg.to_str().unwrap(),
        ])
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap()
    }

    /// The rules as the kernel has them: sinkhole's nft table (empty when absent), or the
    /// whole filter and nat tables of both iptables families without comments and counters.
    fn rules(&self, backend: &str) -> String {
        if backend == "nftables" {
            let out = self.exec(&["nft", "list", "table", "inet", "sinkhole"]);
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        let mut text = String::new();
        for tool in ["iptables-save", "ip6tables-save"] {
            for table in ["filter", "nat"] {
                let out = self.exec(&[tool, "-t", table]);
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    if line.starts_with('#') {
                        continue;
                    }
                    let line = match line.rsplit_once(" [") {
                        Some((head, _)) if line.starts_with(':') => head,
                        _ => line,
                    };
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
        text
    }

    /// What the guard and the apply process said, for failure messages.
    fn diagnostics(&self) -> String {
        ["apply.out", "apply.err", "run/firewall.guard.log"]
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
                format!("--- {n}\n{text}")
            })
            .collect()
    }

    /// Polls `cond` until it holds or `deadline` passes; then fails with `what`.
    fn wait(&self, what: &str, deadline: Instant, mut cond: impl FnMut() -> bool) {
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "{what}: not within the time\n{}",
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn signal(child: &Child, sig: &str) {
    ok(&["kill", &format!("-{sig}"), &child.id().to_string()]);
}

/// Waits (bounded) for a child to end.
fn reap(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + SLACK;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: did not end");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn r10_apply_killed_in_confirm_window_is_rolled_back() {
    // See: #10
    let Some(backends) = backends("r10_apply_killed_in_confirm_window_is_rolled_back") else {
        return;
    };
    for backend in backends {
        let ns = Ns::new(&backend[..3]);
        let (a, b) = (ns.config(backend, "tcp/22"), ns.config(backend, "tcp/2222"));
        // SIGKILL and an OOM kill cannot be caught; SIGHUP is what a dropped SSH session
        // sends; SIGTERM is `kill`. Before: A's rules, or none at all.
        for (sig, before_a) in [("KILL", true), ("HUP", false), ("TERM", true)] {
            let when = format!("{backend}, SIG{sig}");
            if before_a {
                ns.apply(&a);
            } else {
                must(
                    &ns.firewall(&["remove", "--config", a.to_str().unwrap()]),
                    &format!("{when}: remove"),
                );
            }
            let before = ns.rules(backend);
            assert!(!before.contains("2222"), "{when}: {before}");
            let start = Instant::now();
            let mut apply = ns.spawn_apply(&b);
            ns.wait(&format!("{when}: B applied"), start + SLACK, || {
                ns.rules(backend).contains("2222")
            });
            signal(&apply, sig);
            let status = reap(&mut apply, &when);
            assert!(!status.success(), "{when}: apply survived: {status}");
            let deadline = start + Duration::from_secs(WINDOW_SECS) + SLACK;
            ns.wait(&format!("{when}: previous rules back"), deadline, || {
                ns.rules(backend) == before
            });
            // The guard is done: nothing stays armed.
            ns.wait(&format!("{when}: state consumed"), deadline, || {
                !ns.run_dir().join("firewall.saved").exists()
            });
        }
    }
}

/// Adds what fail2ban and docker would add while a window is open (`round` names it).
fn add_others(ns: &Ns, backend: &str, round: u32) {
    let (f2b, docker) = (format!("f2b-r{round}"), format!("DOCKER{round}"));
    let hook = "{ type filter hook input priority 0; }";
    let mut cmds: Vec<Vec<&str>> = Vec::new();
    if backend == "iptables" {
        for t in ["iptables", "ip6tables"] {
            cmds.push(vec![t, "-N", &f2b]);
            cmds.push(vec![t, "-A", &f2b, "-p", "tcp", "-j", "REJECT"]);
            cmds.push(vec![t, "-I", "INPUT", "1", "-j", &f2b]);
            cmds.push(vec![t, "-t", "nat", "-N", &docker]);
            cmds.push(vec![t, "-t", "nat", "-A", "PREROUTING", "-j", &docker]);
        }
    } else {
        cmds.push(vec!["nft", "add", "table", "inet", &f2b]);
        cmds.push(vec!["nft", "add", "chain", "inet", &f2b, "input", hook]);
        cmds.push(vec![
            "nft", "add", "rule", "inet", &f2b, "input", "tcp", "dport", "9", "drop",
        ]);
    }
    for c in cmds {
        let out = ns.exec(&c);
        assert!(out.status.success(), "{c:?}: {out:?}");
    }
}

/// Lines that must still be there after rounds 1..=`round` of [`add_others`].
fn others_added(backend: &str, round: u32) -> Vec<String> {
    (1..=round)
        .flat_map(|r| {
            if backend == "iptables" {
                vec![
                    format!("-A INPUT -j f2b-r{r}"),
                    format!("-A f2b-r{r} -p tcp -j REJECT"),
                    format!("-A PREROUTING -j DOCKER{r}"),
                ]
            } else {
                vec![format!("table inet f2b-r{r}")]
            }
        })
        .collect()
}

#[test]
fn r10_iptables_rollback_keeps_rules_others_added() {
    // See: #10
    let Some(backends) = backends("r10_iptables_rollback_keeps_rules_others_added") else {
        return;
    };
    for backend in backends {
        let ns = Ns::new(&format!("o{}", &backend[..2]));
        let (a, b) = (ns.config(backend, "tcp/22"), ns.config(backend, "tcp/2222"));
        ns.apply(&a);
        // Sinkhole's part (for nftables, its table is all that `rules` shows).
        let ours = |rules: String| -> String {
            rules
                .lines()
                .filter(|l| backend == "nftables" || l.contains("SINKHOLE"))
                .map(|l| format!("{l}\n"))
                .collect()
        };
        let before = ours(ns.rules(backend));
        // Round 1: the apply process times out and rolls back itself; round 2: it is killed
        // and the guard does it.
        for (round, kill) in [(1, false), (2, true)] {
            let when = format!("{backend}, round {round}");
            let start = Instant::now();
            let mut apply = ns.spawn_apply(&b);
            ns.wait(&format!("{when}: B applied"), start + SLACK, || {
                ns.rules(backend).contains("2222")
            });
            add_others(&ns, backend, round);
            if kill {
                signal(&apply, "KILL");
            }
            let status = reap(&mut apply, &when);
            assert!(!status.success(), "{when}: {status}");
            let deadline = start + Duration::from_secs(WINDOW_SECS) + SLACK;
            ns.wait(&format!("{when}: B rolled back"), deadline, || {
                !ns.rules(backend).contains("2222")
            });
            assert_eq!(ours(ns.rules(backend)), before, "{when}: sinkhole's rules");
            let everything = if backend == "iptables" {
                ns.rules(backend)
            } else {
                String::from_utf8_lossy(&ns.exec(&["nft", "list", "tables"]).stdout).into_owned()
            };
            for line in others_added(backend, round) {
                assert!(
                    everything.contains(&line),
                    "{when}: {line:?}, added by others, is gone:\n{everything}"
                );
            }
        }
    }
}

#[test]
fn r10_confirm_disarms_the_rollback() {
    // See: #10
    let Some(backends) = backends("r10_confirm_disarms_the_rollback") else {
        return;
    };
    let backend = backends[0];
    let ns = Ns::new("cf");
    let (a, b) = (ns.config(backend, "tcp/22"), ns.config(backend, "tcp/2222"));
    ns.apply(&a);
    let start = Instant::now();
    let mut apply = ns.spawn_apply(&b);
    ns.wait("B applied", start + SLACK, || {
        ns.rules(backend).contains("2222")
    });
    // The waiting process is gone; confirming from another shell still disarms the guard.
    signal(&apply, "KILL");
    reap(&mut apply, "apply");
    let out = ns.firewall(&["confirm"]);
    must(&out, "confirm");
    assert!(String::from_utf8_lossy(&out.stdout).contains("confirmed"));
    let applied = ns.rules(backend);
    // Past the window and the guard's second, the new rules are still there.
    let past = start + Duration::from_secs(WINDOW_SECS + 2);
    while Instant::now() < past {
        assert_eq!(ns.rules(backend), applied, "rolled back after confirm");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(ns.rules(backend), applied, "rolled back after confirm");
    assert!(!ns.run_dir().join("firewall.saved").exists());
}

#[test]
fn rollback_by_hand_restores_the_saved_rules() {
    let Some(backends) = backends("rollback_by_hand_restores_the_saved_rules") else {
        return;
    };
    let backend = backends[backends.len() - 1];
    let ns = Ns::new("bh");
    let (a, b) = (ns.config(backend, "tcp/22"), ns.config(backend, "tcp/2222"));
    ns.apply(&a);
    let before = ns.rules(backend);
    let start = Instant::now();
    let mut apply = ns
        .command(&["apply", "--confirm", "60s", "--config", b.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ns.wait("B applied", start + SLACK, || {
        ns.rules(backend).contains("2222")
    });
    signal(&apply, "KILL");
    reap(&mut apply, "apply");
    // While a rollback is armed, another apply is refused: it would be undone by the guard.
    let out = ns.firewall(&["apply", "--config", a.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "apply while armed: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("firewall.saved") && err.contains("rollback"),
        "{err}"
    );
    let out = ns.firewall(&["remove", "--config", a.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "remove while armed: {out:?}");
    assert!(
        ns.rules(backend).contains("2222"),
        "remove while armed changed the rules"
    );
    // The administrator restores the saved rules at once.
    let out = ns.firewall(&["rollback"]);
    must(&out, "rollback");
    assert_eq!(ns.rules(backend), before, "rollback by hand");
    assert!(String::from_utf8_lossy(&out.stdout).contains("rolled back"));
    // Nothing is armed any more: a second rollback and a confirm say so and exit 1.
    let out = ns.firewall(&["rollback"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to roll back"));
    let out = ns.firewall(&["confirm"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}
