#!/usr/bin/env python3
"""Recursion from the root, sinkhole next to unbound (issue 16, "Measure"): server CPU per
cache-miss query, and the latency of a miss and of a resolution from a cold start.

    cargo build --release
    python3 benches/peers/recursive.py                     # 1,000 misses/s, 10 s, 2 rounds
    python3 benches/peers/recursive.py --qps 2000 --duration 20 --rounds 3
    python3 benches/peers/recursive.py --signed            # signed zones, both validating
    python3 benches/peers/recursive.py --signed --names    # a record (and signature) per name
    python3 benches/peers/recursive.py --signed --peers fwd-off,fwd-validate
                                       # forward mode: validation off against on
    python3 benches/peers/recursive.py --baseline /tmp/sinkhole-old
                                       # each sinkhole peer again with another build (`~base`)

Needs root (the hierarchy listens on port 53: root hints and glue carry no ports), `nsd`,
`unbound` and `dnsperf` (Debian: `apt-get install nsd unbound dnsperf`); `--signed` needs
`ldns-keygen`/`ldns-signzone`/`ldns-key2ds` (`apt-get install ldnsutils`). What it does,
all on this machine:

1. The hierarchy: three nsd processes, one zone each, on 127.0.0.201 (the root, `.`),
   127.0.0.202 (the TLD `bench.`) and 127.0.0.203 (`miss.bench.`, whose wildcard
   `*.miss.bench. A` answers every name: each query of a never-asked name is a cache miss
   that costs the resolver one query to the leaf, the delegations being cached).
   `--signed`: each zone signed (ECDSA P-256, NSEC) with its DS in the parent, the root's
   DS as the trust anchor.
   `--names`: no wildcard; the leaf holds one A record for each name the run will ask, so
   that each signed answer carries a signature of its own (a wildcard's answers all carry
   the same signature over `*.miss.bench.` and the same NSEC, which a resolver may check
   once for all of them).
2. The peers, each on 127.0.0.1 with the root as its only hint: sinkhole
   (`upstream.mode = "recursive"`; with `--signed`, `upstream.dnssec = "validate"` and
   `upstream.trust_anchor`) and unbound (`module-config: "iterator"`, or `"validator
   iterator"`, `trust-anchor-file` and `aggressive-nsec: no` with `--signed`, so that
   it does not make wildcard answers up from a cached NSEC), QNAME minimisation on in both.
3. Misses: dnsperf sends each peer names never asked before, at a fixed rate (`--qps`,
   `-c 4`), for `--duration` seconds; the rounds are interleaved. Server CPU per miss = the
   peer's utime + stime (`/proc/PID/stat`) over the run / the queries dnsperf saw answered.
   The latency of those misses (p50, p99) is read from dnsperf's per-query lines (`-v`);
   the hierarchy's CPU (the nsd processes and their forked servers) over the same run, per
   miss, shows the upstream work a miss caused.
   Forward mode (`--peers fwd-off,fwd-validate`): sinkhole forwards to a relay, an unbound
   that resolves from the hierarchy without validating (`module-config: "iterator"`), with
   `upstream.dnssec` off, then `"validate"` (the relay's CPU is not counted; with
   `--signed` it hands over the signatures). The CPU per miss of the two is what
   validation costs the forwarder.
4. Cold starts: `--cold` times, each peer is started afresh and asked one name: the
   resolution walks the root, the TLD and the leaf (p50 and the slowest). Readiness is
   probed with a name each peer answers itself (a blocked name, a `local-data`), so the
   probe does not warm anything.

It prints a Markdown table (medians over the rounds) and the command that made it.
"""
import argparse
import os
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
CLK = os.sysconf("SC_CLK_TCK")
# The hierarchy's servers: (zone, address, file name).
ZONES = [(".", "127.0.0.201", "root"), ("bench.", "127.0.0.202", "bench"),
         ("miss.bench.", "127.0.0.203", "miss.bench")]
ROOT_NS = "ns.root-servers.bench."


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(addr, port, name, timeout=1.0, ad=False):
    """One A query (RD; AD too when `ad`); the rcode, or None when no answer came (with
    `ad`: (rcode, AD bit of the answer))."""
    q = struct.pack(">HHHHHH", 4243, 0x0120 if ad else 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0\0\1\0\1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(q, (addr, port))
            r = s.recv(4096)
            return (r[3] & 0x0F, bool(r[3] & 0x20)) if ad else r[3] & 0x0F
        except OSError:
            return None


def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK


def family_cpu(pids):
    """CPU seconds of `pids` and their descendants (nsd serves from a grandchild)."""
    stats = {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                f = open(f"/proc/{e}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(e)] = (int(f[1]), (int(f[11]) + int(f[12])) / CLK)
    family, grew = set(pids), True
    while grew:
        more = {pid for pid, (ppid, _) in stats.items() if ppid in family} - family
        family |= more
        grew = bool(more)
    return sum(stats[pid][1] for pid in family if pid in stats)


def zone_texts(names=None):
    """The three zone files' text, unsigned; the leaf answers every name by its wildcard, or
    only `names` (leaf labels), one record each."""
    root, bench, leaf = (a for _, a, _ in ZONES)
    soa = "{z} 300 IN SOA {ns} hostmaster.bench. 1 3600 600 86400 300\n"
    return {
        "root": soa.format(z=".", ns=ROOT_NS)
        + f". 86400 IN NS {ROOT_NS}\n{ROOT_NS} 86400 IN A {root}\n"
        + f"bench. 86400 IN NS ns.bench.\nns.bench. 86400 IN A {bench}\n",
        "bench": soa.format(z="bench.", ns="ns.bench.")
        + f"bench. 86400 IN NS ns.bench.\nns.bench. 86400 IN A {bench}\n"
        + f"{ROOT_NS} 86400 IN A {root}\n"
        + f"miss.bench. 86400 IN NS ns.miss.bench.\nns.miss.bench. 86400 IN A {leaf}\n",
        "miss.bench": soa.format(z="miss.bench.", ns="ns.miss.bench.")
        + f"miss.bench. 86400 IN NS ns.miss.bench.\nns.miss.bench. 86400 IN A {leaf}\n"
        + ("*.miss.bench. 300 IN A 192.0.2.1\n" if names is None else
           "".join(f"{n}.miss.bench. 300 IN A 192.0.2.1\n" for n in names)),
    }


def sign(d, texts):
    """Signs the zones leaf first (ZONES is one chain: each zone's child follows it), each
    parent holding its child's DS; writes `<zone>.zone.signed` and returns the root's DS
    (the trust anchor) as zone-file text."""
    child_ds = ""
    for zone, _, f in reversed(ZONES):
        path = os.path.join(d, f + ".zone")
        with open(path, "w") as z:
            z.write(texts[f] + child_ds)
        keys = []
        for flags in (["-k"], []):  # a KSK, then a ZSK
            r = subprocess.run(["ldns-keygen", "-a", "ECDSAP256SHA256"] + flags + [zone],
                               cwd=d, capture_output=True, text=True, check=True)
            keys.append(r.stdout.strip())
        # ldns-signzone adds the DNSKEYs and NSEC records; signatures valid for 30 days
        # (ldns 1.8 wraps dates past 2038).
        until = time.strftime("%Y%m%d%H%M%S", time.gmtime(time.time() + 30 * 86400))
        subprocess.run(["ldns-signzone", "-e", until, "-f", path + ".signed", path]
                       + keys, cwd=d, check=True, capture_output=True)
        r = subprocess.run(["ldns-key2ds", "-n", "-2", keys[0] + ".key"], cwd=d,
                           capture_output=True, text=True, check=True)
        child_ds = r.stdout
    return child_ds


def root_ksk(d):
    """The signed root's key-signing DNSKEY (flags 257), as zone-file lines: sinkhole's trust
    anchor (it takes DNSKEY lines, not DS)."""
    out = []
    with open(os.path.join(d, "root.zone.signed")) as z:
        for line in z:
            f = line.split()
            if (f[:1] == ["."] and "DNSKEY" in f[:-1]
                    and f[f.index("DNSKEY") + 1] == "257"):
                out.append(line)
    return "".join(out)


class Nsd:
    """One nsd serving one zone on `addr:53`."""

    def __init__(self, d, zone, addr, f, zonefile):
        self.addr = addr
        conf = os.path.join(d, f + ".nsd.conf")
        with open(conf, "w") as c:
            c.write(f"""server:
    ip-address: {addr}
    port: 53
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "{d}"
    database: ""
    zonelistfile: "{d}/{f}.zonelist"
    xfrdfile: "{d}/{f}.xfrd.state"
    xfrdir: "{d}"
    pidfile: "{d}/{f}.nsd.pid"
    logfile: "{d}/{f}.nsd.log"
    verbosity: 0
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: "{zone}"
    zonefile: "{zonefile}"
""")
        self.proc = subprocess.Popen(["nsd", "-d", "-c", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.time() + 60  # a zone of a record per name takes a while to load
        while query(addr, 53, "ns." + zone.lstrip(".") if zone != "." else ROOT_NS, 0.2) is None:
            if self.proc.poll() is not None or time.time() > deadline:
                sys.exit(f"nsd for {zone} on {addr}:53 did not start (see {d}/{f}.nsd.log)")


class Peer:
    """A recursive resolver under test."""

    def __init__(self, name, d, signed, relay=None, binary=SINKHOLE):
        self.name, self.d, self.signed = name, d, signed
        # A `~base` peer is its kind run by the --baseline binary.
        self.kind = name.removesuffix("~base")
        # The sinkhole binary of a sinkhole peer (`base`: the --baseline build).
        self.bin = binary
        self.port = free_port()
        self.proc = None
        # Forward mode: the port of the unbound it forwards to.
        self.relay = relay

    def command(self):
        d, port = self.d, self.port
        if self.kind == "sinkhole" or self.kind.startswith("fwd-"):
            conf = os.path.join(d, "sinkhole.toml")
            # sinkhole's trust anchor is the root's DNSKEY (unbound's, its DS).
            validate = self.signed and self.kind != "fwd-off"
            dnssec = ('dnssec = "validate"\ntrust_anchor = "%s/anchor.key"\n' % d
                      if validate else 'dnssec = "off"\n')
            if self.relay:
                upstream = f'servers = ["127.0.0.1:{self.relay}"]\ntimeout_ms = 2000\n'
            else:
                upstream = f'mode = "recursive"\nroot_hints = "{d}/root.hints"\n'
            with open(conf, "w") as f:
                f.write(f'[server]\nlisten = ["127.0.0.1:{port}"]\n'
                        f'[upstream]\n{upstream}{dnssec}'
                        f'[cache]\nmax_entries = 200000\n'
                        f'[blocking]\nlists = ["{d}/probe.txt"]\n')
            return [self.bin, "serve", "--config", conf]
        conf = os.path.join(d, "unbound.conf")
        # aggressive-nsec off: from the signed wildcard and its NSEC, unbound would make up
        # every later answer itself (RFC 8198) and never ask the leaf again.
        modules, anchor = ("validator iterator", f'    trust-anchor-file: "{d}/anchor.ds"\n'
                           '    aggressive-nsec: no\n') if self.signed else ("iterator", "")
        with open(conf, "w") as f:
            f.write(f"""server:
    interface: 127.0.0.1@{port}
    port: {port}
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
    root-hints: "{d}/root.hints"
    module-config: "{modules}"
{anchor}    qname-minimisation: yes
    msg-cache-size: 64m
    rrset-cache-size: 128m
    num-queries-per-thread: 4096
    outgoing-range: 8192
    local-zone: "probe." static
    local-data: "ready.probe. A 127.0.0.1"
""")
        return ["unbound", "-d", "-c", conf]

    def version(self):
        if self.name.endswith("~base"):
            return f"{self.name}: sinkhole built from {self.bin}"
        if self.kind.startswith("fwd-"):
            return f"{self.name}: sinkhole forwarding to unbound"
        cmd = [SINKHOLE, "--version"] if self.name == "sinkhole" else ["unbound", "-V"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        first = (r.stdout or r.stderr).strip().splitlines()[0]
        return first if first.lower().startswith(self.name) else f"{self.name} {first.removeprefix('Version ')}"

    def start(self):
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.time() + 30
        while query("127.0.0.1", self.port, "ready.probe", 0.1) is None:
            if self.proc.poll() is not None or time.time() > deadline:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
                err = (err.strip().splitlines() or ["timed out"])[0]
                self.stop()
                raise RuntimeError(f"{self.name} did not start: {err}")

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def miss_names(tag, qps, duration):
    """The leaf labels one dnsperf run asks (more than it can send in `duration`)."""
    return [f"m{i}-{tag}" for i in range(qps * (duration + 2))]


def misses(p, d, tag, qps, duration, tree):
    """One dnsperf run of never-asked names: (answered, µs CPU per miss, latencies in ms,
    rcodes other than NOERROR, µs of the hierarchy's CPU per miss)."""
    qf = os.path.join(d, f"q-{tag}.txt")
    with open(qf, "w") as f:
        for n in miss_names(tag, qps, duration):
            f.write(f"{n}.miss.bench A\n")
    c0, t0 = cpu(p.proc.pid), family_cpu(tree)
    out = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(p.port), "-d", qf,
                          "-l", str(duration), "-Q", str(qps), "-c", "4", "-q", "500",
                          "-t", "3", "-n", "1", "-v"], capture_output=True, text=True).stdout
    used, tree_used = cpu(p.proc.pid) - c0, family_cpu(tree) - t0
    lat, bad = [], 0
    done = 0.0
    for line in out.splitlines():
        if line.startswith("> "):
            parts = line.split()
            if parts[1] == "T":
                continue
            if parts[1] != "NOERROR":
                bad += 1
            lat.append(1000 * float(parts[-1]))
        elif "Queries completed" in line:
            done = float(line.split()[2])
    per = (lambda x: 1e6 * x / done) if done else (lambda x: float("nan"))
    return done, per(used), lat, bad, per(tree_used)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qps", type=int, default=1000)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cold", type=int, default=10, help="cold starts per peer")
    ap.add_argument("--peers", default="sinkhole,unbound")
    ap.add_argument("--baseline", metavar="BIN",
                    help="another sinkhole build: each sinkhole peer runs again with it, as `NAME~base`")
    ap.add_argument("--signed", action="store_true",
                    help="sign the zones (ldnsutils) and validate in both peers")
    ap.add_argument("--names", action="store_true",
                    help="no wildcard: a record (with --signed, a signature) of its own per name asked")
    a = ap.parse_args()
    need = ["nsd", "unbound", "dnsperf"] + (["ldns-keygen", "ldns-signzone", "ldns-key2ds"] if a.signed else [])
    missing = [t for t in need if not shutil.which(t)]
    if missing:
        sys.exit("missing: " + ", ".join(missing) + " (Debian: nsd unbound dnsperf ldnsutils)")
    if "sinkhole" in a.peers.split(",") and not os.path.exists(SINKHOLE):
        sys.exit(f"{SINKHOLE} is missing: cargo build --release")
    d = tempfile.mkdtemp(prefix="sinkhole-recursive-")
    nsds = []
    peers = {}
    relay = None
    try:
        names = [p for p in a.peers.split(",") if p]
        if a.baseline:
            names += [f"{n}~base" for n in names if n == "sinkhole" or n.startswith("fwd-")]
        leaf = None
        if a.names:
            leaf = ["warm"] + [f"cold{i}-{n}" for i in range(a.cold) for n in names] + [
                m for r in range(a.rounds) for n in names
                for m in miss_names(f"{r}-{n}", a.qps, a.duration)]
        texts = zone_texts(leaf)
        anchor = sign(d, texts) if a.signed else ""
        for zone, addr, f in ZONES:
            zf = f + ".zone"
            if a.signed:
                zf += ".signed"
            else:
                with open(os.path.join(d, zf), "w") as z:
                    z.write(texts[f])
            nsds.append(Nsd(d, zone, addr, f, zf))
        hints_text = f". 3600000 NS {ROOT_NS}\n{ROOT_NS} 3600000 A {ZONES[0][1]}\n"
        if any(n.startswith("fwd-") for n in names):
            rd = os.path.join(d, "relay")
            os.mkdir(rd)
            with open(os.path.join(rd, "root.hints"), "w") as h:
                h.write(hints_text)
            relay = Peer("unbound", rd, False)
            relay.start()
        for name in names:
            pd = os.path.join(d, name)
            os.mkdir(pd)
            with open(os.path.join(pd, "root.hints"), "w") as h:
                h.write(f". 3600000 NS {ROOT_NS}\n{ROOT_NS} 3600000 A {ZONES[0][1]}\n")
            with open(os.path.join(pd, "probe.txt"), "w") as h:
                h.write("ready.probe\n")
            with open(os.path.join(pd, "anchor.ds"), "w") as h:
                h.write(anchor)
            with open(os.path.join(pd, "anchor.key"), "w") as h:
                h.write(root_ksk(d) if a.signed else "")
            peers[name] = Peer(name, pd, a.signed,
                               relay.port if relay and name.startswith("fwd-") else None,
                               binary=a.baseline if name.endswith("~base") else SINKHOLE)
        # A peer that cannot start (e.g. a sinkhole without `upstream.dnssec` yet, with
        # --signed) is left out and named, not the whole run.
        for n, p in list(peers.items()):
            try:
                p.start()
            except RuntimeError as e:
                print(f"# {n} left out: {e}", flush=True)
                del peers[n]
            p.stop()
        versions = {n: p.version() for n, p in peers.items()}
        # Cold starts: a fresh peer, one name, the whole walk from the root.
        cold = {n: [] for n in peers}
        for i in range(a.cold):
            # Forward mode's cold start is the relay's: not measured.
            for n, p in [(n, p) for n, p in peers.items() if not p.relay]:
                p.start()
                t = time.perf_counter()
                rc = query("127.0.0.1", p.port, f"cold{i}-{n}.miss.bench", 5.0)
                ms = 1000 * (time.perf_counter() - t)
                p.stop()
                if rc != 0:
                    print(f"# cold start {i + 1} {n}: rcode {rc}", flush=True)
                    continue
                cold[n].append(ms)
        res = {n: [] for n in peers}
        for p in peers.values():
            p.start()
            # The delegations, once; with --signed, proof that the peer validates.
            got = query("127.0.0.1", p.port, "warm.miss.bench", 5.0, ad=True)
            if a.signed and got != (0, True):
                print(f"# {p.name}: a signed answer came without AD ({got}): not validating?", flush=True)
        for r in range(a.rounds):
            for n, p in peers.items():
                tree = {s.proc.pid for s in nsds}
                done, us, lat, bad, nsd_us = misses(p, p.d, f"{r}-{n}", a.qps, a.duration, tree)
                res[n].append((us, done, lat, bad, nsd_us))
                print(f"# round {r + 1} {n:9} {done:8,.0f} answered ({bad} not NOERROR)  "
                      f"{us:7.2f} µs CPU/miss  p50 {pct(lat, 50):.2f} ms  p99 {pct(lat, 99):.2f} ms  "
                      f"nsd {nsd_us:.2f} µs/miss", flush=True)
    finally:
        for p in peers.values():
            p.stop()
        if relay:
            relay.stop()
        for s in nsds:
            s.proc.terminate()
            s.proc.wait(10)
        shutil.rmtree(d, ignore_errors=True)
    cmd = "python3 benches/peers/recursive.py" + "".join(
        f" --{k} {v}" for k, v in [("qps", a.qps), ("duration", a.duration), ("rounds", a.rounds),
                                   ("cold", a.cold)] if v != ap.get_default(k)) \
        + (" --signed" if a.signed else "") + (" --names" if a.names else "") + (f" --peers {a.peers}" if a.peers != ap.get_default("peers") else "") \
        + (f" --baseline {a.baseline}" if a.baseline else "")
    print()
    print(f"`{cmd}` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; nsd hierarchy on "
          f"loopback, {'signed, both validating' if a.signed else 'unsigned'}"
          f"{', a record per name' if a.names else ', wildcard'}; dnsperf -Q {a.qps} -c 4, "
          f"{a.rounds} × {a.duration} s of misses per peer, median; {a.cold} cold starts per peer):")
    print()
    print("| peer | CPU µs per miss | miss latency p50 / p99 (ms) | cold resolution p50 / max (ms) "
          "| nsd CPU µs per miss (the upstream work it caused) |")
    print("|---|---|---|---|---|")
    for n in peers:
        us = statistics.median(x[0] for x in res[n])
        lat = [v for x in res[n] for v in x[2]]
        c = cold[n]
        cold_cell = ("–" if n.startswith("fwd-") else
                     f"{statistics.median(c):.1f} / {max(c):.1f}" if c else "no answer")
        nsd_us = statistics.median(x[4] for x in res[n])
        print(f"| {n} | {us:.1f} | {pct(lat, 50):.2f} / {pct(lat, 99):.2f} | {cold_cell} | {nsd_us:.1f} |")
    print()
    print("Versions: " + "; ".join(versions[n] for n in peers) + ".")


if __name__ == "__main__":
    main()
