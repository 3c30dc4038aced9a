#!/usr/bin/env python3
"""Times the dashboard's query-log calls on a large log: a filtered, paged /api/v1/log call
and the discovery view's /api/v1/discovery for one client (the goal: each under 1 s with a
1,000,000-record log), and /api/v1/stats/top for reference.

It writes a log of RECORDS records (default 1,000,000) spread over the last 24 hours: 200 LAN
clients, names drawn from the Cisco Umbrella top 100k (../shared/data/popularity) with a
popularity skew, one query in five blocked, sessions split as the server splits them. Then it
starts the release binary with that file as `log.path` and an `[http]` listener, calls each
URL ROUNDS times (the first call reads the file from disk unless it is in the page cache;
the script reads it once first) and prints the median and the slowest wall time of each.

Usage, from the project checkout:
    cargo build --release
    python3 benches/querylog_api.py [RECORDS] [ROUNDS]
"""
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
BIN = os.path.join(ROOT, "target", "release", "sinkhole")
NAMES = os.path.join(ROOT, "..", "shared", "data", "popularity", "umbrella_top100k.txt")
TOKEN = "bench-token-0123456789abcdef"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ts(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


def write_log(path, records, rng):
    names = [l.strip() for l in open(NAMES) if l.strip()]
    clients = ["192.168.%d.%d" % (1 + i // 250, 2 + i % 250) for i in range(200)]
    state = {c: [0.0, 0, 0] for c in clients}  # last time, session, seq
    now = time.time()
    start = now - 24 * 3600 + 60
    step = (24 * 3600 - 120) / records
    with open(path, "w") as f:
        for i in range(records):
            t = start + i * step
            c = clients[min(int(rng.paretovariate(1.2)) - 1, len(clients) - 1)]
            name = names[min(int(rng.paretovariate(0.8)) - 1, len(names) - 1)]
            s = state[c]
            if t - s[0] > 300:
                s[1] += 1
                s[2] = 0
            s[0] = t
            s[2] += 1
            blocked = rng.random() < 0.2
            rec = {
                "ts": ts(t), "client": c, "qname": name, "qtype": "A",
                "action": "blocked" if blocked else rng.choice(["allowed", "cached"]),
                "rule": name if blocked else None, "list": "lists/big.txt:1" if blocked else None,
                "rcode": "NOERROR", "answers": ["0.0.0.0" if blocked else "192.0.2.1"],
                "upstream": None if blocked else "9.9.9.9:53",
                "elapsed_us": 80 if blocked else 9000, "session": s[1], "seq": s[2],
                "new": rng.random() < 0.05,
            }
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
    return clients


def get(url):
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + TOKEN})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as r:
        body = r.read()
    return time.perf_counter() - t0, json.loads(body)


def main():
    records = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    rng = random.Random(42)
    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "q.jsonl")
        t0 = time.time()
        clients = write_log(log, records, rng)
        size = os.path.getsize(log)
        print(f"log: {records:,} records, {size / 1e6:.0f} MB, written in {time.time() - t0:.1f} s")
        with open(log, "rb") as f:
            while f.read(1 << 24):
                pass
        dns, http = free_port(), free_port()
        cfg = os.path.join(d, "sinkhole.toml")
        with open(cfg, "w") as f:
            f.write(f'[server]\nlisten = ["127.0.0.1:{dns}"]\n[upstream]\nservers = ["127.0.0.1:9"]\n'
                    f'[log]\npath = "{log}"\n[http]\nlisten = ["127.0.0.1:{http}"]\ntoken = "{TOKEN}"\n')
        srv = subprocess.Popen([BIN, "serve", "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{http}/api/v1/"
            for _ in range(100):
                try:
                    get(base + "status")
                    break
                except OSError:
                    time.sleep(0.1)
            busy, quiet = clients[0], clients[150]
            _, page = get(base + f"log?client={busy}&limit=100")
            cursor = page["next"]
            calls = {
                "log: client + name glob + action, 100 per page": f"log?client={busy}&name=*.com&action=blocked&limit=100",
                "log: the next page of a client (cursor)": f"log?client={busy}&limit=100&before={cursor}",
                "log: a rare client, last 24 h": f"log?client={quiet}&from=24h&limit=100",
                "log: a name glob that matches nothing": "log?name=*.nothing-matches.example&limit=100",
                f"discovery: busiest client ({busy})": f"discovery?client={busy}",
                f"discovery: a rare client ({quiet})": f"discovery?client={quiet}",
                "stats/top by domain (answer kept 10 s)": "stats/top?by=domain&limit=10",
            }
            print(f"{'call':58} {'median s':>9} {'max s':>7}  result")
            for what, path in calls.items():
                times = []
                for _ in range(rounds):
                    dt, body = get(base + path)
                    times.append(dt)
                n = len(body.get("records", body.get("sessions", body.get("top", []))))
                print(f"{what:58} {statistics.median(times):9.3f} {max(times):7.3f}  {n} rows")
        finally:
            srv.terminate()
            srv.wait(10)


if __name__ == "__main__":
    main()
