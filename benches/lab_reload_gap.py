#!/usr/bin/env python3
"""Runs the peer lab (../shared/lab/lab.py) unchanged, and prints how long each of its own
os.replace() calls took.

Why: the lab's reload test swaps the list file with os.replace() inside its probe loop, so
the prober sends nothing while the rename runs. On ext4, replacing a 15 MB list frees the old
inode and its cached pages in the renaming process: 10-20 ms on our test machine. That time
shows up in the lab's "longest_answer_gap_s" whatever the server does; comparing the two
numbers tells the server's share of the gap.

Usage (from the project checkout, after `cargo build --release`):
    LAB_WORK=/tmp/sinkhole-lab python3 benches/lab_reload_gap.py --peers sinkhole \\
        --workloads "" --no-ceiling --lat-rate 0
Every argument is passed to lab.py. Output: the lab's own log, plus a line
"lab os.replace: N ms" just before each reload result.

With RENAME_IN_THREAD=1 the rename runs on a thread of its own (the probe loop keeps
sending meanwhile; the reload signal may then come before the rename is done, in which case
the server's file watch picks the new list up within a second). The gap reported is then
the server's alone. This changes the lab's procedure: quote it as such, never as the lab's
figure.
"""
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "lab"))

_replace = os.replace


def timed_replace(src, dst):
    t = time.monotonic()
    _replace(src, dst)
    sys.stderr.write("lab os.replace: %.1f ms\n" % ((time.monotonic() - t) * 1e3))
    sys.stderr.flush()


def threaded_replace(src, dst):
    threading.Thread(target=timed_replace, args=(src, dst)).start()


os.replace = threaded_replace if os.environ.get("RENAME_IN_THREAD") == "1" else timed_replace

import lab  # noqa: E402  (after the patch, so that the lab's calls are timed)

sys.argv = ["lab.py"] + sys.argv[1:]
lab.main()
