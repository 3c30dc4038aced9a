//! `sinkhole firewall` on a real kernel: a client, a router and an "internet" host, each a
//! network namespace, joined by routed veth pairs (10.99.1.0/24 LAN, 10.99.2.0/24 WAN; no
//! bridge, so `bridge-nf-call-iptables` does not matter). The router runs the real
//! `sinkhole serve` and the generated rules (nftables, then iptables), the internet host runs
//! another `sinkhole serve` that answers NXDOMAIN for everything and also listens on 443 and
//! 853; the client probes with a small stdlib-only Python script. Needs root, `ip netns`,
//! `nft` / `iptables-restore`, `python3`; without them it says why on one line and returns.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_sinkhole");

/// The client side of every probe: `dns SRC DST NAME` (IPv4 or IPv6, port 53) prints
/// `NOERROR 0.0.0.0`, `NXDOMAIN`, `timeout` or `refused`; `tcp SRC DST PORT` prints `open`,
/// `refused` or `timeout`.
pub(crate) const PROBE: &str = r#"
import socket, struct, sys, random
def dns(src, dst, name):
    s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    s.bind((src, 0))
    s.connect((dst, 53))
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    try:
        s.send(q)
        while True:
            r = s.recv(4096)
            if struct.unpack(">H", r[:2])[0] == qid:
                break
    except socket.timeout:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    rcode = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}.get(r[3] & 15, str(r[3] & 15))
    an = struct.unpack(">H", r[6:8])[0]
    off = 12 + len(q) - 12
    out = [rcode]
    for _ in range(an):
        off += 2 if r[off] & 0xC0 == 0xC0 else len(name) + 2
        t, _, _, ln = struct.unpack(">HHIH", r[off:off + 10])
        off += 10
        if t == 1:
            out.append(socket.inet_ntoa(r[off:off + 4]))
        off += ln
    return " ".join(out)
def tcp(src, dst, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1.0)
    s.bind((src, 0))
    try:
        s.connect((dst, int(port)))
        return "open"
    except socket.timeout:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return "error " + str(e)
print({"dns": dns, "tcp": tcp}[sys.argv[1]](*sys.argv[2:]))
"#;

/// Namespaces and processes of one run; dropping it stops and deletes all of them.
struct Lab {
    client: String,
    router: String,
    net: String,
    made: Vec<String>,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.made {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A network namespace of a test's own, with loopback up, and the processes started in it;
/// dropping it stops them and deletes the namespace.
pub(crate) struct Netns {
    pub(crate) name: String,
    pub(crate) children: Vec<Child>,
}

impl Netns {
    /// Creates `{prefix}{pid}` and brings its loopback up.
    pub(crate) fn new(prefix: &str) -> Self {
        let name = format!("{prefix}{}", std::process::id());
        ok(&["ip", "netns", "add", &name]);
        let ns = Self {
            name,
            children: Vec::new(),
        };
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs `args` inside; its stdout (it must succeed).
    pub(crate) fn run(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        ok(&all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub(crate) fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

pub(crate) fn ok(args: &[&str]) -> String {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why this machine cannot run the test, if it cannot.
pub(crate) fn cannot_run() -> Option<String> {
    let uid = sh(&["id", "-u"]);
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root".into());
    }
    for p in ["ip", "python3", "timeout"] {
        if !have(p) {
            return Some(format!("{p} is not installed"));
        }
    }
    let name = format!("shprobe{}", std::process::id());
    if !sh(&["ip", "netns", "add", &name]).status.success() {
        return Some("`ip netns add` does not work here".into());
    }
    let _ = sh(&["ip", "netns", "del", &name]);
    None
}

impl Lab {
    fn new() -> Self {
        let pid = std::process::id();
        let mut lab = Self {
            client: format!("shc{pid}"),
            router: format!("shr{pid}"),
            net: format!("shi{pid}"),
            made: Vec::new(),
            children: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        for ns in [lab.client.clone(), lab.router.clone(), lab.net.clone()] {
            ok(&["ip", "netns", "add", &ns]);
            lab.made.push(ns.clone());
            ok(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        let (c, r, n) = (lab.client.clone(), lab.router.clone(), lab.net.clone());
        ok(&[
            "ip", "-n", &c, "link", "add", "c0", "type", "veth", "peer", "name", "r0", "netns", &r,
        ]);
        ok(&[
            "ip", "-n", &n, "link", "add", "i0", "type", "veth", "peer", "name", "r1", "netns", &r,
        ]);
        for (ns, dev, addrs) in [
            (
                &c,
                "c0",
                &["10.99.1.2/24", "10.99.1.3/24", "10.99.1.4/24"][..],
            ),
            (&r, "r0", &["10.99.1.1/24"][..]),
            (&r, "r1", &["10.99.2.1/24"][..]),
            (&n, "i0", &["10.99.2.2/24", "10.99.2.3/24"][..]),
        ] {
            for a in addrs {
                ok(&["ip", "-n", ns, "addr", "add", a, "dev", dev]);
            }
            ok(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        ok(&[
            "ip",
            "-n",
            &c,
            "route",
            "add",
            "default",
            "via",
            "10.99.1.1",
        ]);
        ok(&[
            "ip",
            "-n",
            &n,
            "route",
            "add",
            "default",
            "via",
            "10.99.2.1",
        ]);
        ok(&[
            "ip",
            "netns",
            "exec",
            &r,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        lab.write("probe.py", PROBE);
        lab
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    fn serve(&mut self, ns: &str, config: &str) {
        let log = std::fs::File::create(self.path(&format!("{config}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, BIN, "serve", "--config"])
            .arg(self.path(config))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    /// Runs the probe script in a namespace (at most 10 s).
    fn probe(&self, ns: &str, args: &[&str]) -> String {
        let script = self.path("probe.py");
        let mut cmd = vec!["ip", "netns", "exec", ns, "timeout", "10", "python3"];
        cmd.push(script.to_str().unwrap());
        cmd.extend_from_slice(args);
        ok(&cmd).trim().to_string()
    }

    fn dns(&self, src: &str, dst: &str, name: &str) -> String {
        self.probe(&self.client, &["dns", src, dst, name])
    }

    fn tcp(&self, src: &str, dst: &str, port: &str) -> String {
        self.probe(&self.client, &["tcp", src, dst, port])
    }

    fn wait_for(&self, ns: &str, args: &[&str], want: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.probe(ns, args);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what} not ready: {got}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs(&self) -> String {
        ["net.toml.log", "router.toml.log"]
            .iter()
            .map(|n| {
                format!(
                    "--- {n}\n{}",
                    std::fs::read_to_string(self.path(n)).unwrap_or_default()
                )
            })
            .collect()
    }

    fn firewall(&self, args: &[&str], config: &Path) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.router, BIN, "firewall"])
            .args(args)
            .arg("--config")
            .arg(config)
            .env("SINKHOLE_RUN_DIR", self.path("run"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

pub(crate) fn must(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the client sees with no rules loaded: everything reachable.
fn assert_open(lab: &Lab, when: &str) {
    assert_eq!(
        lab.dns("10.99.1.2", "10.99.2.2", "ads.test"),
        "NXDOMAIN",
        "{when}: direct DNS"
    );
    assert_eq!(
        lab.tcp("10.99.1.2", "10.99.2.2", "853"),
        "open",
        "{when}: 853"
    );
    assert_eq!(
        lab.tcp("10.99.1.2", "10.99.2.3", "443"),
        "open",
        "{when}: DoH 443"
    );
    assert_eq!(
        lab.tcp("10.99.1.2", "10.99.2.2", "5353"),
        "open",
        "{when}: app port"
    );
}

/// What the client sees with the rules loaded.
fn assert_filtered(lab: &Lab, redirect: bool, when: &str) {
    // Answers from sinkhole: blocked names get the sinkhole address, others are forwarded
    // through the router's own (unfiltered) way out.
    assert_eq!(
        lab.dns("10.99.1.2", "10.99.1.1", "ads.test"),
        "NOERROR 0.0.0.0",
        "{when}"
    );
    assert_eq!(
        lab.dns("10.99.1.2", "10.99.1.1", "www.test"),
        "NXDOMAIN",
        "{when}"
    );
    // A query straight to the outside server: refused, or answered by sinkhole (redirect),
    // which shows because the blocked name comes back as the sinkhole address.
    let direct = lab.dns("10.99.1.2", "10.99.2.2", "ads.test");
    if redirect {
        assert_eq!(direct, "NOERROR 0.0.0.0", "{when}: redirect");
    } else {
        assert_eq!(direct, "refused", "{when}: direct DNS");
    }
    assert_eq!(
        lab.tcp("10.99.1.2", "10.99.2.2", "853"),
        "refused",
        "{when}: DoT"
    );
    // The DoH server from the list is refused on 443; another host's 443 is not.
    assert_eq!(
        lab.tcp("10.99.1.2", "10.99.2.3", "443"),
        "refused",
        "{when}: DoH"
    );
    assert_eq!(
        lab.tcp("10.99.1.2", "10.99.2.2", "443"),
        "open",
        "{when}: other 443"
    );
    // app_blocks: exactly that client and port.
    assert_eq!(
        lab.tcp("10.99.1.2", "10.99.2.2", "5353"),
        "refused",
        "{when}: app block"
    );
    assert_eq!(
        lab.tcp("10.99.1.3", "10.99.2.2", "5353"),
        "open",
        "{when}: other client"
    );
    // deny_sources: that address cannot reach the resolver at all.
    assert_eq!(
        lab.dns("10.99.1.4", "10.99.1.1", "ads.test"),
        "timeout",
        "{when}: denied"
    );
    assert_eq!(
        lab.dns("10.99.1.3", "10.99.1.1", "ads.test"),
        "NOERROR 0.0.0.0",
        "{when}"
    );
}

#[test]
fn namespaces_resolver_is_the_only_way_out() {
    // A developer's machine may lack root or the tools; CI (`CI` set) must run all of it.
    let skip = |why: String| {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the firewall namespace test: {why}"
        );
        println!("firewall namespace test skipped: {why}");
    };
    if let Some(why) = cannot_run() {
        skip(why.to_string());
        return;
    }
    let backends: Vec<&str> = [("nftables", "nft"), ("iptables", "iptables-restore")]
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
    if backends.is_empty() {
        return;
    }
    let mut lab = Lab::new();
    let (c, r, n) = (lab.client.clone(), lab.router.clone(), lab.net.clone());

    // The internet: NXDOMAIN for *.test, and TCP listeners on 443, 853, 5353.
    lab.write("everything.txt", "test\n");
    lab.write(
        "net.toml",
        "[server]\nlisten = [\"10.99.2.2:53\", \"10.99.2.2:853\", \"10.99.2.2:443\", \"10.99.2.3:443\", \"10.99.2.2:5353\"]\n\
         udp_threads = 1\n[upstream]\nservers = [\"127.0.0.1:9\"]\n[blocking]\nmode = \"nxdomain\"\nlists = [\"everything.txt\"]\n",
    );
    lab.serve(&n, "net.toml");
    // The router's resolver: ads.test blocked (0.0.0.0), the rest forwarded outside.
    lab.write("blocked.txt", "ads.test\n");
    lab.write(
        "router.toml",
        "[server]\nlisten = [\"10.99.1.1:53\"]\nudp_threads = 1\n[upstream]\nservers = [\"10.99.2.2:53\"]\ntimeout_ms = 500\n\
         [blocking]\nmode = \"sinkhole\"\nlists = [\"blocked.txt\"]\n",
    );
    lab.serve(&r, "router.toml");
    lab.wait_for(
        &n,
        &["dns", "10.99.2.2", "10.99.2.2", "a.test"],
        "NXDOMAIN",
        "outside DNS server",
    );
    lab.wait_for(
        &c,
        &["dns", "10.99.1.2", "10.99.1.1", "ads.test"],
        "NOERROR 0.0.0.0",
        "router resolver",
    );
    assert_open(&lab, "before any rules");

    lab.write("doh.txt", "# the lab's DoH server\n10.99.2.3   # doh.lab\n");
    lab.write("apps", "# client:port\n10.99.1.2:5353\n");
    lab.write("deny.zone", "10.99.1.4/32\n192.0.2.0/24\n");
    for backend in backends {
        for redirect in [false, true] {
            let when = format!("{backend}, redirect = {redirect}");
            let name = format!("fw-{backend}-{redirect}.toml");
            lab.write(
                &name,
                &format!(
                    "[server]\nlisten = [\"10.99.1.1:53\"]\n[firewall]\nbackend = \"{backend}\"\ntopology = \"gateway\"\n\
                     lan_interfaces = [\"r0\"]\nwan_interfaces = [\"r1\"]\nlan_subnets = [\"10.99.1.0/24\", \"fd99:1::/64\"]\n\
                     redirect = {redirect}\nblock_dot = true\ndoh_servers = \"doh.txt\"\napp_blocks = \"apps\"\n\
                     deny_sources = [\"deny.zone\"]\nallow_inbound = [\"tcp/22\"]\nreject_with = \"reject\"\n"
                ),
            );
            let cfg = lab.path(&name);
            must(&lab.firewall(&["check"], &cfg), &format!("{when}: check"));

            // apply --confirm, confirmed from "another shell".
            let mut apply = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &r,
                    BIN,
                    "firewall",
                    "apply",
                    "--confirm",
                    "30s",
                    "--config",
                ])
                .arg(&cfg)
                .env("SINKHOLE_RUN_DIR", lab.path("run"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while !lab.path("run/firewall.pending").exists() {
                assert!(
                    Instant::now() < deadline,
                    "{when}: apply never waited for confirmation"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            assert_filtered(&lab, redirect, &when);
            must(
                &lab.firewall(&["confirm"], &cfg),
                &format!("{when}: confirm"),
            );
            let status = loop {
                if let Some(s) = apply.try_wait().unwrap() {
                    break s;
                }
                if Instant::now() > deadline {
                    let _ = apply.kill();
                    let _ = apply.wait();
                    panic!("{when}: apply did not end after confirm");
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            assert!(status.success(), "{when}: apply --confirm: {status}");
            // Still filtered once confirmed, and applying again changes nothing.
            must(
                &lab.firewall(&["apply"], &cfg),
                &format!("{when}: re-apply"),
            );
            assert_filtered(&lab, redirect, &format!("{when}, after confirm"));

            must(&lab.firewall(&["remove"], &cfg), &format!("{when}: remove"));
            assert_open(&lab, &format!("{when}, after remove"));
        }
        // Unconfirmed: rolled back to nothing when the time is up.
        let cfg = lab.path(&format!("fw-{backend}-false.toml"));
        let out = lab.firewall(&["apply", "--confirm", "1s"], &cfg);
        assert_eq!(out.status.code(), Some(1), "{backend}: unconfirmed apply");
        assert!(String::from_utf8_lossy(&out.stderr).contains("rolled back"));
        assert_open(&lab, &format!("{backend}, after rollback"));
    }
}

/// `firewall show` needs no root: config errors name the file and line and exit 2.
#[test]
fn show_errors_name_file_and_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("s.toml");
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(["firewall", "show", "--config"])
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap()
    };
    std::fs::write(&cfg, "[server]\nlisten = [\"127.0.0.1:5300\"]\n").unwrap();
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [firewall] section"));

    std::fs::write(dir.path().join("apps"), "10.0.0.5:80\n10.0.0.6\n").unwrap();
    std::fs::write(
        &cfg,
        "[firewall]\nlan_interfaces = [\"eth1\"]\nlan_subnets = [\"10.0.0.0/24\"]\napp_blocks = \"apps\"\n",
    )
    .unwrap();
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let apps = dir.path().join("apps");
    assert!(
        err.contains(&format!(
            "{}:2:1: firewall.app_blocks: \"10.0.0.6\"",
            apps.display()
        )),
        "{err}"
    );

    std::fs::write(dir.path().join("apps"), "10.0.0.5:80\n").unwrap();
    let out = run(&["--backend", "iptables", "--family", "ipv4"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("-s 10.0.0.5/32 -p tcp --dport 80"), "{text}");
    assert!(!text.contains("# ip6tables-restore"));
    let out = run(&["--family", "ipv4"]);
    assert_eq!(out.status.code(), Some(2), "--family is for iptables");
}
