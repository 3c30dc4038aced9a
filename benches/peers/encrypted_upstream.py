#!/usr/bin/env python3
"""What forwarding over an encrypted upstream costs: CPU per cache miss of one sinkhole
forwarding to another over plain UDP, DNS over TLS, DNS over HTTPS and DNS over QUIC, at a
fixed rate.

    cargo build --release && cargo build --release --example bench_upstream
    python3 benches/peers/encrypted_upstream.py            # 3 rounds, 1,000 QPS, 10 s
    python3 benches/peers/encrypted_upstream.py --rounds 5 --qps 2000
    python3 benches/peers/encrypted_upstream.py --baseline /tmp/old/sinkhole   # A/B
    python3 benches/peers/encrypted_upstream.py --pin      # upstream side on its own core
    python3 benches/peers/encrypted_upstream.py --kinds udp,quic   # some transports only
    python3 benches/peers/encrypted_upstream.py --instructions     # counted under callgrind
    python3 benches/peers/encrypted_upstream.py --pool run1.txt run2.txt   # runs' rounds together
    python3 benches/peers/encrypted_upstream.py --middle dnsdist   # an upstream not ours

All on loopback: `examples/bench_upstream` answers every query at once; a middle sinkhole
(no cache) serves UDP, DoT, DoH and DoQ with a self-signed pair and forwards to it; four
front sinkholes forward to the middle one, one per transport (`127.0.0.1:P`,
`tls://127.0.0.1:P#bench.test`, `https://bench.test/dns-query@127.0.0.1:P`,
`quic://127.0.0.1:P#bench.test`, the pair's certificate as `upstream.tls_ca`). dnsperf
sends each front unique names (every query a miss) at `--qps`; the time its threads ran
over the run (their `schedstat`, to the nanosecond; utime + stime count 10 ms ticks),
divided by the answered queries, is its CPU per miss. Rounds are
interleaved; the medians are printed. `--baseline BIN` adds fronts run by another binary,
each compared with its own UDP front.

Each round's ratio to its own build's UDP round is kept too: the last column is their median,
with a 90 % interval (a bootstrap over the rounds: how far the median moves when the rounds
are drawn again). One round of one front varies by a fifth here, so a ratio near a goal needs
many rounds: `--pool` reads the printed output of several runs (their `# round` lines) and
prints the same table over all their rounds, without running anything.

`--middle dnsdist` puts dnsdist (UDP, DoT and DoH; no DoQ in Debian's 1.7, so no QUIC front)
in the middle sinkhole's place, forwarding to the same `bench_upstream`: the fronts are the
same, the server they talk to is another implementation. On one machine the middle shares
the cores with the front, so what it costs can show in the front's figure (its work evicts
the front's caches, and wakes on the front's core); a second middle tells how much of a
transport's figure is the front's own.

`--pin` runs the upstream side (`bench_upstream` and the middle sinkhole) on the last CPU
and the fronts on the others. A real upstream is another machine; on one machine, the
front's send wakes the middle's thread, and where the scheduler puts that thread (on the
front's own core, preempting it, or on another) changes the front's CPU per query by more
than the transport does. Pinned, every transport pays for a wake-up on another core.

`--instructions` counts instead of timing: each front runs under valgrind's callgrind for
1,000 and then 3,000 misses, and the difference over 2,000 is its user-space instructions
per miss (the kernel's work is not in it). Three runs of one build counted its UDP front
within 0.1 % (16,828, 16,828 and 16,836), where the CPU time of one round varies by a fifth on a shared machine:
the tool for an A/B of the user-space side of one transport. `--rounds`, `--qps`,
`--duration` and `--pin` do not apply to it.
"""
import argparse
import os
import random
import re
import socket
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.path.join(ROOT, "target", "release", "sinkhole")
UP = os.path.join(ROOT, "target", "release", "examples", "bench_upstream")


def port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu(pid):
    """CPU seconds the threads of `pid` have run, to the nanosecond: the sum of their
    `schedstat` run times. utime + stime (`/proc/PID/stat`) count whole clock ticks, 10 ms
    here: over a round of 8,000 misses, 1.25 µs per miss, about 4 % of one. A thread that
    exits during a round takes its time with it; the fronts' threads live through the run."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 1e9


def misses_file(path, tag, name, n):
    """Writes `n` names never asked before (each one a miss) as a dnsperf query file."""
    with open(path, "w") as f:
        for i in range(n):
            f.write(f"{tag}-{i}-{name}.miss.bench A\n")
    return path


def own_udp(res, name):
    """The figure of the UDP front of `name`'s own build (`udp`, or `udp-base`)."""
    return res["udp" + name[len(name.split("-")[0]):]]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--qps", type=int, default=1000)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--pin", action="store_true",
                    help="the upstream side on the last CPU, the fronts on the others")
    ap.add_argument("--kinds", default="udp,tls,https,quic",
                    help="the transports to measure, comma-separated (udp is always in)")
    ap.add_argument("--baseline", metavar="BIN",
                    help="another sinkhole binary: its fronts run beside ours (an A/B in one run)")
    ap.add_argument("--instructions", action="store_true",
                    help="count each front's user-space instructions per miss under callgrind "
                         "instead of timing its CPU (needs valgrind; --rounds, --qps, --duration "
                         "and --pin do not apply)")
    ap.add_argument("--middle", choices=["sinkhole", "dnsdist"], default="sinkhole",
                    help="the server the fronts forward to (dnsdist: no QUIC)")
    ap.add_argument("--pool", nargs="+", metavar="OUTPUT",
                    help="print the table over the rounds of earlier runs' printed output instead "
                         "of running")
    a = ap.parse_args()
    if a.pool:
        res = {}
        for path in a.pool:
            run = {}
            with open(path) as f:
                for line in f:
                    m = ROUND.match(line)
                    if m:
                        run.setdefault(m.group(1), []).append(float(m.group(2)))
            if not run:
                ap.error(f"{path}: no '# round' lines (the printed output of a run)")
            # Rounds pair up within a run only.
            n = min(len(v) for v in run.values())
            for name, v in run.items():
                res.setdefault(name, []).extend(v[:n])
        print(f"`python3 benches/peers/encrypted_upstream.py --pool` ({len(a.pool)} runs, "
              f"{len(res.get('udp', []))} rounds, median):")
        print()
        table(res)
        return
    ncpu = os.cpu_count() or 1
    if a.pin and ncpu < 2:
        ap.error("--pin needs two CPUs at least")
    up_side = ["taskset", "-c", str(ncpu - 1)] if a.pin else []
    front_side = ["taskset", "-c", f"0-{ncpu - 2}"] if a.pin else []
    d = tempfile.mkdtemp(prefix="sinkhole-encup-")
    subprocess.run([BIN, "cert", "self-signed", "--name", "bench.test", "--out", d + "/tls"],
                   check=True, capture_output=True)
    u = port()
    procs = [subprocess.Popen(up_side + [UP, f"127.0.0.1:{u}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    pb, pt, ph = port(), port(), port()
    pq = udp_port()
    if a.middle == "dnsdist":
        cert, key = f"{d}/tls/cert.pem", f"{d}/tls/key.pem"
        with open(d + "/dnsdist.conf", "w") as f:
            f.write(f'setSecurityPollSuffix("")\nsetLocal("127.0.0.1:{pb}")\n'
                    f'addTLSLocal("127.0.0.1:{pt}", "{cert}", "{key}")\n'
                    f'addDOHLocal("127.0.0.1:{ph}", "{cert}", "{key}", "/dns-query")\n'
                    f'newServer({{address="127.0.0.1:{u}"}})\n')
        middle = ["dnsdist", "--supervised", "--disable-syslog", "-C", d + "/dnsdist.conf"]
    else:
        with open(d + "/middle.toml", "w") as f:
            f.write(f'[server]\nlisten = ["127.0.0.1:{pb}"]\ntls_listen = ["127.0.0.1:{pt}"]\n'
                    f'https_listen = ["127.0.0.1:{ph}"]\nquic_listen = ["127.0.0.1:{pq}"]\n'
                    f'tls_cert = "{d}/tls/cert.pem"\n'
                    f'tls_key = "{d}/tls/key.pem"\n[upstream]\nservers = ["127.0.0.1:{u}"]\n'
                    f'[cache]\nmax_entries = 0\n')
        middle = [BIN, "serve", "--config", d + "/middle.toml"]
    procs.append(subprocess.Popen(up_side + middle,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    fronts = {}
    kinds = [("udp", f"127.0.0.1:{pb}"),
             ("tls", f"tls://127.0.0.1:{pt}#bench.test"),
             ("https", f"https://bench.test/dns-query@127.0.0.1:{ph}"),
             ("quic", f"quic://127.0.0.1:{pq}#bench.test")]
    wanted = set(a.kinds.split(",")) | {"udp"}
    if a.middle == "dnsdist":
        wanted.discard("quic")
    kinds = [k for k in kinds if k[0] in wanted]
    bins = [("", BIN)] + ([("-base", a.baseline)] if a.baseline else [])
    for (suffix, binary), (kind, server) in [(b, k) for b in bins for k in kinds]:
        name = kind + suffix
        p = port()
        with open(f"{d}/{name}.toml", "w") as f:
            f.write(f'[server]\nlisten = ["127.0.0.1:{p}"]\n[upstream]\nservers = ["{server}"]\n'
                    f'tls_ca = "{d}/tls/cert.pem"\n')
        if a.instructions:
            fronts[name] = (p, binary)
            continue
        proc = subprocess.Popen(front_side + [binary, "serve", "--config", f"{d}/{name}.toml"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        fronts[name] = (p, proc)
    time.sleep(2)
    if a.instructions:
        try:
            instructions(d, fronts)
        finally:
            for proc in procs:
                proc.terminate()
        return
    res = {n: [] for n in fronts}
    try:
        for r in range(a.rounds):
            for name, (p, proc) in fronts.items():
                qf = misses_file(f"{d}/q-{name}-{r}.txt", f"e{r}", name, a.qps * (a.duration + 2))
                c0 = cpu(proc.pid)
                out = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(p), "-d", qf,
                                      "-l", str(a.duration), "-Q", str(a.qps), "-c", "4",
                                      "-t", "2", "-n", "1"],
                                     capture_output=True, text=True).stdout
                used = cpu(proc.pid) - c0
                done = next(float(l.split()[2]) for l in out.splitlines() if "Queries completed" in l)
                us = 1e6 * used / done if done else float("nan")
                res[name].append(us)
                print(f"# round {r + 1} {name:10} {done:8,.0f} answered  {us:7.2f} µs/miss", flush=True)
    finally:
        for proc in procs:
            proc.terminate()
    print()
    pin = (" --pin" if a.pin else "") + (f" --middle {a.middle}" if a.middle != "sinkhole" else "")
    print(f"`python3 benches/peers/encrypted_upstream.py{pin}` ({time.strftime('%Y-%m-%d')}, "
          f"{a.qps} misses/s, {a.rounds} × {a.duration} s, median):")
    print()
    # The last column pairs each round with its own build's UDP round just before it: a
    # slow drift of the machine's load weighs on both.
    table(res)


# A round's line as a run prints it: its front and its µs per miss.
ROUND = re.compile(r"# round \d+ (\S+)\s+[\d,]+ answered\s+([\d.]+) ")


def table(res):
    """The medians of `res` (front: µs per miss of each round), and the median of each
    front's per-round ratios to its own build's UDP rounds with its 90 % bootstrap interval."""
    print("| upstream | µs per miss | vs UDP | per-round ratios, median (90 % interval) |")
    print("|---|---|---|---|")
    draw = random.Random(1)
    for name in res:
        m = statistics.median(res[name])
        udp = statistics.median(own_udp(res, name))
        ratios = [x / u for x, u in zip(res[name], own_udp(res, name))]
        paired = statistics.median(ratios)
        boot = sorted(statistics.median(draw.choices(ratios, k=len(ratios))) for _ in range(2000))
        lo, hi = boot[len(boot) // 20], boot[len(boot) - 1 - len(boot) // 20]
        print(f"| {name} | {m:.1f} | {m / udp:.2f}× | {paired:.2f}× ({lo:.2f}–{hi:.2f}) |")


def summary_ir(path):
    """The total instruction count of a callgrind output file."""
    with open(path) as f:
        for line in f:
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise RuntimeError(f"no summary in {path}")


def instructions(d, fronts):
    """Each front under callgrind, twice: `SMALL` and `BIG` misses at 200 QPS after the same
    start; the difference over `BIG - SMALL` is its user-space instructions per miss (start-up
    and shutdown cancel out; work done by the clock, the bigger run lasting 10 s longer,
    counts as the misses'). Every query must be answered, or the run fails. Callgrind counts
    each iteration of a `rep` string instruction (glibc's large memset and memcpy), so bulk
    zeroing and copying weigh more here than in time."""
    small, big = 1000, 3000
    res = {}
    for name, (p, binary) in fronts.items():
        ir = []
        for n in (small, big):
            qf = misses_file(f"{d}/i-{name}-{n}.txt", f"i{n}", name, n)
            out = f"{d}/callgrind-{name}-{n}.out"
            proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                                     binary, "serve", "--config", f"{d}/{name}.toml"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                probe = ["dig", "+short", "+time=1", "+tries=1", "-p", str(p), "@127.0.0.1"]
                deadline = time.time() + 60
                while subprocess.run(probe + [f"warm-{n}.miss.bench"], capture_output=True).returncode:
                    if time.time() > deadline:
                        raise RuntimeError(f"{name} did not answer under valgrind")
                    time.sleep(1)
                run = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(p), "-d", qf,
                                      "-n", "1", "-Q", "200", "-c", "1", "-t", "5"],
                                     capture_output=True, text=True, check=True).stdout
                if f"NOERROR {n} " not in run:
                    raise RuntimeError(f"{name}: not every one of {n} queries answered NOERROR:\n{run}")
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            ir.append(summary_ir(out))
        res[name] = (ir[1] - ir[0]) / (big - small)
        print(f"# {name:10} {res[name]:9,.0f} instructions per miss", flush=True)
    print()
    print(f"`python3 benches/peers/encrypted_upstream.py --instructions` ({time.strftime('%Y-%m-%d')}, "
          f"callgrind, {small:,} and {big:,} misses):")
    print()
    print("| upstream | user-space instructions per miss | vs UDP |")
    print("|---|---|---|")
    for name, ir in res.items():
        udp = own_udp(res, name)
        print(f"| {name} | {ir:,.0f} | {ir / udp:.2f}× |")


if __name__ == "__main__":
    main()
