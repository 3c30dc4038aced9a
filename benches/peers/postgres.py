#!/usr/bin/env python3
"""The query log in PostgreSQL (issue 18, "Measure"): how many records one instance writes
per second, what the log costs sinkhole's CPU per query, how large a record is, and how
long the reading commands take on 10 million records.

    cargo build --release
    python3 benches/peers/postgres.py                       # everything
    python3 benches/peers/postgres.py --parts insert,cpu    # without the 10M-row part
    python3 benches/peers/postgres.py --parts read --rows 10000000 --days 10

Needs root (the cluster runs as the user `postgres`), Debian's `postgresql` and `dnsperf`
(`apt-get install postgresql dnsperf`). Everything runs on this machine, on loopback:

1. A PostgreSQL cluster of its own (initdb into a temporary folder, default settings but
   the port), the schema made by `sinkhole db migrate`.
2. `insert`: sinkhole with `[log.postgres]` (no file) answers a blocked workload that
   dnsperf sends as fast as it can (closed loop, `-c 8 -q 200`) for `--duration` s: far
   more queries per second than one database connection takes. The rows the database
   accepted per second over the run is the insert throughput (the rest wait in the queue
   or are dropped and counted, as designed); then a fixed rate (`--rate`, default 50,000/s)
   for the same time, where nothing may be dropped.
3. `cpu`: sinkhole's CPU per query (utime + stime from /proc over the run, divided by the
   answers dnsperf counted) at a fixed rate (`--cpu-rate`), with the log off, the JSONL
   file only, PostgreSQL only, and both; rounds interleaved, medians.
4. `read`: `--rows` records spread over `--days` days, `--clients` clients and the
   popularity list's names, generated in SQL (the database's own `generate_series`, with
   the indexes of the schema); then the size per record (table and indexes), and the wall
   time of `sinkhole log first --client`, `log top --since 24h` (by name and by domain) and
   a filtered page of the HTTP API (`/api/v1/log?client=…&action=blocked`), each the
   median of 3.

It prints Markdown tables and the command line that made them.
"""
import argparse
import glob
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SINKHOLE = os.environ.get("SINKHOLE_BIN") or os.path.join(ROOT, "target", "release", "sinkhole")
CLK = os.sysconf("SC_CLK_TCK")
NAMES = os.path.join(ROOT, "..", "shared", "data", "popularity", "umbrella_top100k.txt")
PASSWORD = "bench-pw"


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def pg_bin():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                  key=lambda p: int(p.split("/")[4]))
    if not dirs:
        sys.exit("PostgreSQL is missing: apt-get install postgresql")
    return os.path.dirname(dirs[-1])


def as_postgres(args, **kw):
    return subprocess.run(["runuser", "-u", "postgres", "--"] + args, check=True,
                          stdout=subprocess.DEVNULL, **kw)


class Cluster:
    def __init__(self, d):
        self.bin = pg_bin()
        self.dir = d
        self.port = free_port()
        os.chmod(d, 0o777)
        pw = os.path.join(d, "pw")
        with open(pw, "w") as f:
            f.write(PASSWORD)
        os.chmod(pw, 0o644)
        as_postgres([os.path.join(self.bin, "initdb"), "-D", os.path.join(d, "data"),
                     "-U", "sinkhole", "--pwfile", pw, "--auth-host=scram-sha-256",
                     "--auth-local=trust", "-E", "UTF8", "--locale=C"])
        self.start()
        self.sql("postgres", "CREATE DATABASE dns")
        self.url = f"postgresql://sinkhole:{PASSWORD}@127.0.0.1:{self.port}/dns"

    def start(self):
        as_postgres([os.path.join(self.bin, "pg_ctl"), "-D", os.path.join(self.dir, "data"),
                     "-l", os.path.join(self.dir, "server.log"), "-w", "-o",
                     f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "start"])

    def sql(self, db, text):
        r = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
                            "-h", "127.0.0.1", "-p", str(self.port), "-U", "sinkhole",
                            "-d", db, "-c", text],
                           env=dict(os.environ, PGPASSWORD=PASSWORD),
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"psql: {r.stderr}")
        return r.stdout.strip()

    def postgres_cpu(self):
        """CPU seconds of the cluster's processes (the postmaster and its children)."""
        total = 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
                if not cmd.startswith(b"postgres") and self.bin.encode() not in cmd:
                    continue
                with open(f"/proc/{pid}/stat") as f:
                    parts = f.read().rsplit(")", 1)[1].split()
                total += (int(parts[11]) + int(parts[12])) / CLK
            except OSError:
                continue
        return total

    def stop(self):
        as_postgres([os.path.join(self.bin, "pg_ctl"), "-D", os.path.join(self.dir, "data"),
                     "-m", "fast", "-w", "stop"])


def write_config(d, port, http_port, url, log_file, pg, extra=""):
    lines = [
        "[server]", f'listen = ["127.0.0.1:{port}"]', "udp_threads = 2", 'name = "dns1.bench"',
        "[upstream]", 'servers = ["127.0.0.1:9"]',
        "[blocking]", f'lists = ["{d}/block.txt"]',
        "[http]", f'listen = ["127.0.0.1:{http_port}"]', "public_read = true",
    ]
    if log_file or pg:
        lines.append("[log]")
        if log_file:
            lines.append(f'path = "{d}/q.jsonl"')
            lines.append("max_size_mb = 100000")
        if pg:
            lines += ["[log.postgres]", f'url = "{url}"']
    path = os.path.join(d, "sinkhole.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n" + extra)
    return path


class Sinkhole:
    def __init__(self, cfg, port, http_port):
        self.port = port
        self.http_port = http_port
        self.p = subprocess.Popen([SINKHOLE, "serve", "--config", cfg],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                self.metrics()
                return
            except OSError:
                time.sleep(0.1)
        sys.exit("sinkhole did not start: " + self.p.stderr.read(4000).decode())

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as r:
            out = {}
            for line in r.read().decode().splitlines():
                if line and not line.startswith("#"):
                    k, _, v = line.rpartition(" ")
                    out[k] = float(v)
            return out

    def cpu(self):
        with open(f"/proc/{self.p.pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / CLK

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(15)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def dnsperf(port, qfile, duration, rate=None):
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", qfile, "-l", str(duration),
           "-c", "8", "-q", "200"]
    if rate:
        cmd += ["-Q", str(rate)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    done = 0
    for line in r.stdout.splitlines():
        if "Queries completed:" in line:
            done = int(line.split()[2])
    return done


def blocked_workload(d, names):
    with open(os.path.join(d, "block.txt"), "w") as f:
        for n in names[:20000]:
            f.write(n + "\n")
    q = os.path.join(d, "blocked.q")
    with open(q, "w") as f:
        for i in range(200000):
            f.write(f"x{i}.{names[i % 20000]} A\n")
    return q


def part_insert(a, d, cluster, names, qfile):
    cfg = write_config(d, free_port(), free_port(), cluster.url, False, True)
    port, http = [int(l.split(":")[-1].rstrip('"]')) for l in open(cfg).read().splitlines()
                  if l.startswith("listen")]
    s = Sinkhole(cfg, port, http)
    time.sleep(1)
    # 1. Drain: the database stopped, 4 s of queries at --rate fill the queue (below its
    # bound); the database started again, the time from the first rows written to an empty
    # queue gives the rows one instance writes per second when nothing else runs.
    cluster.stop()
    m0 = s.metrics()
    dnsperf(port, qfile, 4, a.rate)
    backlog = s.metrics()["sinkhole_querylog_postgres_queued"]
    cluster.start()
    first = last = None
    w_first = w_last = None
    deadline = time.time() + 120
    while time.time() < deadline:
        m = s.metrics()
        w = m["sinkhole_querylog_postgres_written_total"]
        now = time.time()
        if w > m0["sinkhole_querylog_postgres_written_total"] and first is None:
            first, w_first = now, w
        if first is not None:
            last, w_last = now, w
        if m["sinkhole_querylog_postgres_queued"] == 0 and first is not None:
            break
        time.sleep(0.02)
    drained = (w_last - w_first) / (last - first) if first and last > first else float("nan")
    # 2. Sustained: --rate queries per second for --duration s with the database up.
    m0 = s.metrics()
    t0 = time.time()
    done = dnsperf(port, qfile, a.duration, a.rate)
    t1 = time.time()
    m1 = s.metrics()
    written = m1["sinkhole_querylog_postgres_written_total"] - m0["sinkhole_querylog_postgres_written_total"]
    dropped = m1["sinkhole_querylog_postgres_dropped_total"] - m0["sinkhole_querylog_postgres_dropped_total"]
    s.stop()
    print("\n### Insert throughput, one instance\n")
    print(f"A backlog of {backlog:,.0f} records (queued while the database was stopped) written at "
          f"**{drained:,.0f} records/s** once it was back (no DNS load meanwhile).\n")
    print(f"Under load, dnsperf at {a.rate:,}/s for {a.duration} s (sinkhole, dnsperf and PostgreSQL "
          f"on the same {os.cpu_count()} cores): {done / (t1 - t0):,.0f} answers/s, "
          f"{written / (t1 - t0):,.0f} records/s written, {dropped:,.0f} dropped, "
          f"{m1['sinkhole_querylog_postgres_queued']:,.0f} still queued at the end.")


def part_cpu(a, d, cluster, names, qfile):
    modes = {"off": (False, False), "file": (True, False), "postgres": (False, True),
             "file+postgres": (True, True)}
    res = {m: [] for m in modes}
    pg_res = {m: [] for m in modes}
    # Records dropped (queue full): a dropped record is not encoded, so a run with drops
    # understates what the log costs; the table says how many there were.
    drops = {m: 0 for m in modes}
    answered = {m: 0 for m in modes}
    for r in range(a.rounds):
        for m, (f, pg) in modes.items():
            sub = os.path.join(d, m.replace("+", "_"))
            os.makedirs(sub, exist_ok=True)
            shutil.copy(os.path.join(d, "block.txt"), sub)
            cfg = write_config(sub, free_port(), free_port(), cluster.url, f, pg)
            port, http = [int(l.split(":")[-1].rstrip('"]')) for l in open(cfg).read().splitlines()
                          if l.startswith("listen")]
            s = Sinkhole(cfg, port, http)
            time.sleep(1)
            c0, p0 = s.cpu(), cluster.postgres_cpu()
            done = dnsperf(port, qfile, a.duration, a.cpu_rate)
            # The database thread sends what is queued within batch_ms: count its work too.
            time.sleep(1.5)
            c1, p1 = s.cpu(), cluster.postgres_cpu()
            m1 = s.metrics()
            drops[m] += int(m1.get("sinkhole_querylog_dropped_total", 0)
                            + m1.get("sinkhole_querylog_postgres_dropped_total", 0))
            answered[m] += done
            s.stop()
            if done:
                res[m].append((c1 - c0) / done * 1e6)
                pg_res[m].append((p1 - p0) / done * 1e6)
    print(f"\n### sinkhole CPU per query with the log off and on ({a.cpu_rate:,} blocked queries/s, "
          f"{a.rounds} rounds of {a.duration} s, medians)\n")
    print("| log | sinkhole µs/query | vs off | PostgreSQL server µs/query | records dropped |")
    print("|---|---|---|---|---|")
    base = statistics.median(res["off"]) if res["off"] else 0
    for m in modes:
        if res[m]:
            v = statistics.median(res[m])
            dropped = "–" if m == "off" else f"{drops[m]:,} of {answered[m]:,}"
            print(f"| {m} | {v:.2f} | {v / base:.2f}× | {statistics.median(pg_res[m]):.2f} | {dropped} |")


def timed(cmd, n=3, **kw):
    ts = []
    out = None
    for _ in range(n):
        t = time.time()
        out = subprocess.run(cmd, capture_output=True, text=True, **kw)
        ts.append(time.time() - t)
        if out.returncode != 0:
            return None, out.stderr.strip()[:300]
    return statistics.median(ts), out.stdout


def part_read(a, d, cluster, names):
    t = time.time()
    # Only the generated records: not those of the other parts.
    cluster.sql("dns", "TRUNCATE queries")
    with open(os.path.join(d, "names.sql"), "w") as f:
        f.write("CREATE UNLOGGED TABLE bench_names (i int PRIMARY KEY, name text, domain text);\n")
        f.write("COPY bench_names FROM STDIN;\n")
        for i, n in enumerate(names):
            parts = n.split(".")
            f.write(f"{i}\t{n}\t{'.'.join(parts[-2:])}\n")
        f.write("\\.\n")
    subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(cluster.port), "-U",
                    "sinkhole", "-d", "dns", "-f", os.path.join(d, "names.sql")],
                   env=dict(os.environ, PGPASSWORD=PASSWORD), check=True,
                   stdout=subprocess.DEVNULL)
    # Each day's partition first, as the writer makes them.
    cluster.sql("dns", f"""DO $$ DECLARE d date; BEGIN
      FOR d IN SELECT generate_series(current_date - {a.days}, current_date + 1, '1 day')::date LOOP
        EXECUTE format('CREATE TABLE IF NOT EXISTS queries_p%s PARTITION OF queries FOR VALUES FROM (%L) TO (%L)',
                       to_char(d, 'YYYYMMDD'), d::timestamptz, (d + 1)::timestamptz);
      END LOOP; END $$""")
    n = len(names)
    step = 1_000_000
    for lo in range(0, a.rows, step):
        hi = min(a.rows, lo + step)
        # Records in time order per client: client i % C, the k-th record of a client at
        # a steady pace over the days; 1 in 50 opens a session; 1 in 5 blocked.
        cluster.sql("dns", f"""
          INSERT INTO queries (ts, instance, client, proto, qname, domain, qtype, action, rule,
                               list, rcode, answers, tc, upstream, elapsed_us, session, seq, new)
          SELECT now() - make_interval(secs => ({a.rows} - g) * ({a.days} * 86400.0 / {a.rows})),
                 CASE WHEN g % 2 = 0 THEN 'dns1.bench' ELSE 'dns2.bench' END,
                 ('10.0.' || ((g % {a.clients}) / 250) || '.' || ((g % {a.clients}) % 250 + 1))::inet,
                 'udp', b.name, b.domain, CASE WHEN g % 3 = 0 THEN 'AAAA' ELSE 'A' END,
                 CASE WHEN g % 5 = 0 THEN 'blocked' WHEN g % 5 = 1 THEN 'cached' ELSE 'allowed' END,
                 CASE WHEN g % 5 = 0 THEN b.domain END,
                 CASE WHEN g % 5 = 0 THEN '/etc/sinkhole/block.txt:' || (b.i + 1) END,
                 'NOERROR', ARRAY['192.0.2.' || (g % 250 + 1)], false,
                 CASE WHEN g % 5 > 1 THEN '9.9.9.9:53' END, 300 + g % 5000,
                 (g / {a.clients}) / 50 + 1, (g / {a.clients}) % 50 + 1, g % 7 = 0
          FROM generate_series({lo}, {hi - 1}) g
          JOIN bench_names b ON b.i = (hash_numeric(g) & 2147483647) % {n}""")
    cluster.sql("dns", "ANALYZE queries")
    gen_s = time.time() - t
    count = int(cluster.sql("dns", "SELECT count(*) FROM queries"))
    size = int(cluster.sql("dns", "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_inherits i "
                                  "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'queries'::regclass"))
    heap = int(cluster.sql("dns", "SELECT sum(pg_relation_size(c.oid)) FROM pg_inherits i "
                                  "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'queries'::regclass"))
    cfg = write_config(d, free_port(), free_port(), cluster.url, False, True)
    client = "10.0.0.7"
    cmds = [
        (f"log first --client {client}", ["log", "first", "--client", client]),
        ("log top --since 24h", ["log", "top", "--since", "24h"]),
        ("log top --by domain --since 24h", ["log", "top", "--by", "domain", "--since", "24h"]),
        (f"log heartbeats --client {client}", ["log", "heartbeats", "--client", client]),
    ]
    print(f"\n### Reading {count:,} records ({a.days} days, {a.clients} clients, 2 instances; "
          f"generated in {gen_s:.0f} s)\n")
    print(f"Size: {size / count:.0f} bytes per record with indexes ({heap / count:.0f} in the table "
          f"alone), {size / 2**30:.2f} GiB in all.\n")
    print("| command | wall time, median of 3 (s) |")
    print("|---|---|")
    for label, args in cmds:
        secs, out = timed([SINKHOLE] + args + ["--config", cfg])
        print(f"| `sinkhole {label}` | {secs:.3f} |" if secs is not None else f"| `sinkhole {label}` | failed: {out} |")
    port, http = [int(l.split(":")[-1].rstrip('"]')) for l in open(cfg).read().splitlines()
                  if l.startswith("listen")]
    s = Sinkhole(cfg, port, http)
    for label, q in (("/api/v1/log?client=10.0.0.7&action=blocked&limit=100",
                      f"client={client}&action=blocked&limit=100"),
                     ("/api/v1/log?action=blocked&limit=100", "action=blocked&limit=100")):
        ts = []
        for _ in range(3):
            t = time.time()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/api/v1/log?{q}", timeout=30) as r:
                    body = json.loads(r.read())
                ts.append(time.time() - t)
            except OSError as e:
                ts = None
                body = str(e)
                break
        if ts:
            print(f"| `GET {label}` | {statistics.median(ts):.3f} |")
        else:
            print(f"| `GET {label}` | failed: {body} |")
    s.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="insert,cpu,read")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=int, default=50_000)
    ap.add_argument("--cpu-rate", type=int, default=20_000)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--clients", type=int, default=500)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the cluster runs as the user postgres")
    if not os.path.exists(SINKHOLE):
        sys.exit("build first: cargo build --release")
    parts = a.parts.split(",")
    if ("insert" in parts or "cpu" in parts) and not shutil.which("dnsperf"):
        sys.exit("dnsperf is missing: apt-get install dnsperf")
    names = [l.strip() for l in open(NAMES) if l.strip() and not l.startswith("#")]
    print(f"`python3 benches/peers/postgres.py {' '.join(sys.argv[1:])}` "
          f"({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="sinkhole-pgbench") as d:
        cluster = Cluster(d)
        try:
            qfile = blocked_workload(d, names)
            subprocess.run([SINKHOLE, "db", "migrate", "--config",
                            write_config(d, 1, 1, cluster.url, False, True)],
                           check=True, stdout=subprocess.DEVNULL)
            if "insert" in parts:
                part_insert(a, d, cluster, names, qfile)
            if "cpu" in parts:
                part_cpu(a, d, cluster, names, qfile)
            if "read" in parts:
                part_read(a, d, cluster, names)
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
