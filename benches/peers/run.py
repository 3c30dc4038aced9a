#!/usr/bin/env python3
"""The peer benchmark of the README's performance section: sinkhole next to unbound (and
dnsdist when installed), driven by dnsperf on this machine, one command.

    cargo build --release --example bench_upstream && cargo build --release
    python3 benches/peers/run.py                     # 1M-name list, 10 s runs, 2 rounds
    python3 benches/peers/run.py --names 100000 --duration 5 --rounds 1   # a quick look
    python3 benches/peers/run.py --workloads cached --transport dot   # DNS over TLS (or doh)
    python3 benches/peers/run.py --peers sinkhole --baseline /tmp/old/sinkhole   # an A/B

Needs `dnsperf` and `unbound` (Debian: `apt-get install dnsperf unbound`; `dnsdist` too if
you want it in the table). What it does, all on loopback:

1. Writes a list of NAMES generated names (a fixed seed: the same list every run) in each
   peer's format, and three query files: `blocked` (listed names and names under them),
   `cached` (1,000 names that are not listed, asked again and again), `miss` (names never
   asked before: each is forwarded).
2. Starts the upstream, `examples/bench_upstream.rs`: it answers every query at once, so a
   miss costs the peer its own work only.
3. For each peer: starts it with the list and the upstream, waits until it answers, warms
   the cached names, notes its start-up time, then runs dnsperf (`-c 8 -q 200`) for each
   workload; the rounds are interleaved (workload × peer) so that a noisy neighbour hurts
   all peers alike.
4. Server CPU per query = the peer's utime + stime from `/proc/PID/stat` over the run,
   divided by the queries dnsperf saw answered. VmHWM is read from `/proc/PID/status` at the
   end (peak resident memory over the whole run, list and caches included).

It prints a Markdown table (median over the rounds) and the lines to paste into the README.
`--baseline BIN` adds a peer `sinkhole-baseline` run by another sinkhole binary with the same
config, interleaved with the others: an A/B of two builds in one run.
"""
import argparse
import os
import random
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SINKHOLE = os.path.join(ROOT, "target", "release", "sinkhole")
UPSTREAM = os.path.join(ROOT, "target", "release", "examples", "bench_upstream")
CLK = os.sysconf("SC_CLK_TCK")
WORDS = ["ads", "track", "cdn", "api", "img", "stat", "pix", "metric", "push", "sync",
         "beacon", "log", "m", "static", "media", "edge", "collect", "t", "events", "tag"]
TLDS = ["com", "net", "org", "io", "de", "fr", "co.uk", "info", "biz", "xyz"]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gen_names(n, rng):
    seen = set()
    out = []
    while len(out) < n:
        w = rng.choice(WORDS)
        name = "%s%d-%x.%s" % (w, rng.randrange(1000), rng.getrandbits(32), rng.choice(TLDS))
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def write_files(d, names, rng):
    with open(os.path.join(d, "list.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    with open(os.path.join(d, "list.unbound.conf"), "w") as f:
        for n in names:
            f.write('local-zone: "%s." always_null\n' % n)
    with open(os.path.join(d, "blocked.q"), "w") as f:
        for _ in range(200_000):
            n = rng.choice(names)
            f.write(("%s A\n" % n) if rng.random() < 0.5 else ("www.%s A\n" % n))
    cached = ["c%d.cached.bench" % i for i in range(1000)]
    with open(os.path.join(d, "cached.q"), "w") as f:
        for _ in range(200):
            for n in cached:
                f.write("%s A\n" % n)
    with open(os.path.join(d, "miss.q"), "w") as f:
        for i in range(2_000_000):
            f.write("m%d-%x.miss.bench A\n" % (i, rng.getrandbits(24)))
    return cached


def query(port, name, timeout=1.0):
    """One A query; True when an answer came."""
    q = struct.pack(">HHHHHH", 4242, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0\0\1\0\1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(q, ("127.0.0.1", port))
            s.recv(1500)
            return True
        except OSError:
            return False


class Peer:
    """A resolver under test: how to start it."""

    def __init__(self, name, d, port, up_port, transport="udp", tls=None, exe=SINKHOLE):
        self.name, self.d, self.port, self.up = name, d, port, up_port
        # The binary of a sinkhole peer (another one for `sinkhole-baseline`).
        self.exe = exe
        # With --transport dot|doh: the encrypted listener's port and the (cert, key) pair.
        self.transport, self.tls = transport, tls
        self.tport = free_port() if transport != "udp" else port
        self.proc = None

    def command(self):
        d, port, up = self.d, self.port, self.up
        if self.name.startswith("sinkhole"):
            conf = os.path.join(d, "sinkhole.toml")
            enc = ""
            if self.transport != "udp":
                key = "tls_listen" if self.transport == "dot" else "https_listen"
                enc = (f'{key} = ["127.0.0.1:{self.tport}"]\n'
                       f'tls_cert = "{self.tls[0]}"\ntls_key = "{self.tls[1]}"\n'
                       f'tcp_max_per_client = 64\n')
            with open(conf, "w") as f:
                f.write(f'[server]\nlisten = ["127.0.0.1:{port}"]\n{enc}'
                        f'[upstream]\nservers = ["127.0.0.1:{up}"]\ntimeout_ms = 2000\n'
                        f'[cache]\nmax_entries = 100000\n'
                        f'[blocking]\nmode = "sinkhole"\nlists = ["{d}/list.txt"]\n')
            return [self.exe, "serve", "--config", conf]
        if self.name == "unbound":
            conf = os.path.join(d, "unbound.conf")
            enc = ""
            if self.transport == "dot":
                enc = (f"    interface: 127.0.0.1@{self.tport}\n    tls-port: {self.tport}\n"
                       f"    tls-service-pem: \"{self.tls[0]}\"\n    tls-service-key: \"{self.tls[1]}\"\n"
                       f"    incoming-num-tcp: 64\n")
            elif self.transport == "doh":
                enc = (f"    interface: 127.0.0.1@{self.tport}\n    https-port: {self.tport}\n"
                       f"    tls-service-pem: \"{self.tls[0]}\"\n    tls-service-key: \"{self.tls[1]}\"\n"
                       f"    incoming-num-tcp: 64\n")
            with open(conf, "w") as f:
                f.write(f"""server:
    interface: 127.0.0.1@{port}
{enc}    port: {port}
    num-threads: 2
    so-reuseport: yes
    do-ip6: no
    username: ""
    chroot: ""
    directory: "{d}"
    pidfile: "{d}/unbound.pid"
    use-syslog: no
    logfile: "{d}/unbound.log"
    verbosity: 0
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    module-config: "iterator"
    qname-minimisation: no
    msg-cache-size: 64m
    rrset-cache-size: 128m
    num-queries-per-thread: 4096
    outgoing-range: 8192
    include: "{d}/list.unbound.conf"
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@{up}
""")
            return ["unbound", "-d", "-p", "-c", conf]
        if self.name == "dnsdist":
            conf = os.path.join(d, "dnsdist.conf")
            with open(conf, "w") as f:
                f.write(f"""setSecurityPollSuffix("")
setLocal("127.0.0.1:{port}", {{reusePort=true}})
addLocal("127.0.0.1:{port}", {{reusePort=true}})
{self.dnsdist_tls()}newServer({{address="127.0.0.1:{up}", name="upstream"}})
pc = newPacketCache(200000, {{maxTTL=86400, minTTL=0}})
getPool(""):setCache(pc)
local n = newSuffixMatchNode()
for line in io.lines("{d}/list.txt") do n:add(line) end
addAction(SuffixMatchNodeRule(n, true), SpoofAction("0.0.0.0"))
""")
            return ["dnsdist", "--supervised", "--disable-syslog", "-C", conf]
        raise ValueError(self.name)

    def dnsdist_tls(self):
        if self.transport == "dot":
            return f'addTLSLocal("127.0.0.1:{self.tport}", "{self.tls[0]}", "{self.tls[1]}")\n'
        if self.transport == "doh":
            return f'addDOHLocal("127.0.0.1:{self.tport}", "{self.tls[0]}", "{self.tls[1]}", "/dns-query")\n'
        return ""

    def version(self):
        cmd = {"unbound": ["unbound", "-V"], "dnsdist": ["dnsdist", "--version"]}.get(
            self.name, [self.exe, "--version"])
        r = subprocess.run(cmd, capture_output=True, text=True)
        first = (r.stdout or r.stderr).strip().splitlines()[0]
        if self.exe != SINKHOLE:
            return f"{self.name}: {first} ({self.exe})"
        return first if first.lower().startswith(self.name) else f"{self.name} {first.removeprefix('Version ')}"

    def start(self):
        t0 = time.time()
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = t0 + 300
        while not query(self.port, "c0.cached.bench", 0.2):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{self.name} did not start")
        return time.time() - t0

    def cpu(self):
        f = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / CLK

    def hwm_mib(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def dnsperf(port, qfile, duration, transport="udp"):
    mode = [] if transport == "udp" else ["-m", transport]
    r = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", qfile,
                        "-l", str(duration), "-c", "8", "-q", "200", "-t", "2"] + mode,
                       capture_output=True, text=True)
    done = qps = 0.0
    for line in r.stdout.splitlines():
        line = line.strip()
        if line.startswith("Queries completed:"):
            done = float(line.split()[2])
        elif line.startswith("Queries per second:"):
            qps = float(line.split()[3])
    return done, qps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--names", type=int, default=1_000_000)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--peers", default="sinkhole,unbound,dnsdist")
    ap.add_argument("--workloads", default="blocked,cached,miss")
    ap.add_argument("--transport", default="udp", choices=["udp", "dot", "doh"],
                    help="how dnsperf asks: plain UDP, DNS over TLS or DNS over HTTPS "
                         "(a self-signed pair made by `sinkhole cert self-signed`)")
    ap.add_argument("--baseline", metavar="BIN",
                    help="another sinkhole binary: a peer `sinkhole-baseline` beside the others")
    a = ap.parse_args()
    if a.baseline:
        # A bare file name would be looked up in PATH when run.
        a.baseline = os.path.abspath(a.baseline)
    for exe in [SINKHOLE, UPSTREAM] + ([a.baseline] if a.baseline else []):
        if not os.path.exists(exe):
            sys.exit(f"{exe} is missing: cargo build --release && cargo build --release --example bench_upstream")
    if not shutil.which("dnsperf"):
        sys.exit("dnsperf is missing: apt-get install dnsperf")
    wanted = [p for p in a.peers.split(",") if p]
    peers_here = [p for p in wanted if p == "sinkhole" or shutil.which(p)]
    if a.baseline:
        peers_here.insert(peers_here.index("sinkhole") + 1 if "sinkhole" in peers_here else 0,
                          "sinkhole-baseline")
    skipped = [p for p in wanted if p not in peers_here]
    workloads = [w for w in a.workloads.split(",") if w]
    rng = random.Random(20261205)
    d = tempfile.mkdtemp(prefix="sinkhole-peers-")
    try:
        print(f"# generating a {a.names:,}-name list and the query files in {d}", flush=True)
        names = gen_names(a.names, rng)
        cached = write_files(d, names, rng)
        tls = None
        if a.transport != "udp":
            subprocess.run([SINKHOLE, "cert", "self-signed", "--name", "bench.test", "--out",
                            os.path.join(d, "tls")], check=True, capture_output=True)
            tls = (os.path.join(d, "tls", "cert.pem"), os.path.join(d, "tls", "key.pem"))
        up_port = free_port()
        up = subprocess.Popen([UPSTREAM, f"127.0.0.1:{up_port}"], stderr=subprocess.DEVNULL)
        peers = {}
        try:
            for name in peers_here:
                pd = os.path.join(d, name)
                os.mkdir(pd)
                for f in ["list.txt", "list.unbound.conf"]:
                    os.link(os.path.join(d, f), os.path.join(pd, f))
                exe = a.baseline if name == "sinkhole-baseline" else SINKHOLE
                peers[name] = Peer(name, pd, free_port(), up_port, a.transport, tls, exe)
            results = {p: {w: [] for w in workloads} for p in peers}
            startup, versions = {}, {}
            for name, p in peers.items():
                versions[name] = p.version()
                startup[name] = p.start()
                for n in cached:
                    query(p.port, n)
                print(f"# {versions[name]}: answering after {startup[name]:.2f} s", flush=True)
            for r in range(a.rounds):
                for w in workloads:
                    for name, p in peers.items():
                        c0 = p.cpu()
                        done, qps = dnsperf(p.tport, os.path.join(d, w + ".q"), a.duration,
                                            a.transport)
                        cpu = p.cpu() - c0
                        us = 1e6 * cpu / done if done else float("nan")
                        results[name][w].append((us, qps))
                        print(f"# round {r + 1} {w:8} {name:17} {qps:10,.0f} QPS  {us:6.2f} µs/query", flush=True)
            hwm = {name: p.hwm_mib() for name, p in peers.items()}
        finally:
            for p in peers.values():
                p.stop()
            up.terminate()
        date = time.strftime("%Y-%m-%d")
        cmd = "python3 benches/peers/run.py" + "".join(
            f" --{k} {v}" for k, v in [("peers", a.peers), ("names", a.names), ("duration", a.duration),
                                       ("rounds", a.rounds),
                                       ("workloads", a.workloads), ("transport", a.transport),
                                       ("baseline", a.baseline)]
            if v != ap.get_default(k))
        print()
        print(f"`{cmd}` ({date}, {os.cpu_count()} cores; a list of {a.names:,} generated names; "
              f"dnsperf -c 8 -q 200{'' if a.transport == 'udp' else ' -m ' + a.transport}, "
              f"{a.rounds} × {a.duration} s per workload and peer; median):")
        print()
        head = "| workload | " + " | ".join(f"{n} µs/query (QPS)" for n in peers) + " |"
        print(head)
        print("|---" * (len(peers) + 1) + "|")
        for w in workloads:
            cells = []
            for n in peers:
                us = statistics.median(x[0] for x in results[n][w])
                qps = statistics.median(x[1] for x in results[n][w])
                cells.append(f"{us:.2f} ({qps:,.0f})")
            print(f"| {w} | " + " | ".join(cells) + " |")
        print("| start-up (s) | " + " | ".join(f"{startup[n]:.2f}" for n in peers) + " |")
        print("| peak memory, VmHWM (MiB) | " + " | ".join(f"{hwm[n]:.0f}" for n in peers) + " |")
        print()
        print("Versions: " + "; ".join(versions[n] for n in peers) + ".")
        if skipped:
            print("Not installed, left out: " + ", ".join(skipped) + ".")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
