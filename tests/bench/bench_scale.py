#!/usr/bin/python3
"""The scale check of issue 9: a big deferred queue, qmgr's memory,
`postern queue` time, and whether new mail keeps flowing meanwhile.

    bench_scale.py [--build DIR] [--steps 5000,10000] [--flow 1000] [--json PATH]

One instance with defer_transports = local (so mail for alice@localhost
is deferred, never delivered) and relayhost = bench_sink.  For each step
it queues deferred mail up to that many messages (bench_load, 20 sessions,
4 KB, several messages per connection), waits until all of them are in
deferred/, then records qmgr's RSS, the time and output size of
`postern queue` (every message listed), and the end-to-end rate of FLOW
new messages relayed to the sink while the deferred queue is there.
A first row with an empty queue is the baseline.  Not part of make check
or make bench (it takes minutes); doc/performance.md has the figures.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
sys.path.insert(0, HERE)


def rss_kb(pid, field="VmRSS"):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(SRC, "build"))
    ap.add_argument("--steps", default="5000,10000")
    ap.add_argument("--flow", type=int, default=1000)
    ap.add_argument("--json")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    os.environ["POSTERN_BUILD"] = args.build
    import harness
    import bench
    steps = [int(x) for x in args.steps.split(",")]
    load = os.path.join(args.build, "bench", "bench_load")
    sink_port = harness.free_port()
    tmp = tempfile.mkdtemp(prefix="postern-scale-")
    count_file = os.path.join(tmp, "count")
    sink = subprocess.Popen([os.path.join(args.build, "bench", "bench_sink"), "-c", count_file,
                             "127.0.0.1:%d" % sink_port], stdout=subprocess.DEVNULL)
    rows = []
    try:
        harness.wait_for(lambda: os.path.exists(count_file), 10, what="bench_sink")

        def sunk():
            with open(count_file) as f:
                return int(f.read().split()[0])
        conf = {"local_recipient_maps": "", "defer_transports": "local",
                "relayhost": "[127.0.0.1]:%d" % sink_port}
        with harness.Instance(conf=conf) as inst:
            spool = os.path.join(inst.dir, "spool")
            def find_qmgr():
                for p in inst.pids():
                    try:
                        with open("/proc/%d/comm" % p) as f:
                            if f.read().strip() == "qmgr":
                                return p
                    except OSError:
                        pass
                return None
            qmgr_pid = harness.wait_for(find_qmgr, 20, what="qmgr")
            queued = 0
            for target in [0] + steps:
                t0 = time.monotonic()
                if target > queued:
                    r = subprocess.run([load, "-d", "-s", "20", "-m", str(target - queued),
                                        "-t", "alice@localhost", "127.0.0.1:%d" % inst.port],
                                       capture_output=True, text=True, timeout=3600)
                    assert r.returncode == 0, r.stderr[-2000:]
                    queued = target
                    harness.wait_for(lambda: bench.count_files_tree(
                        os.path.join(spool, "deferred")) >= queued, 3600, interval=0.5,
                        what="%d deferred" % queued)
                fill_s = time.monotonic() - t0
                t = time.monotonic()
                q = inst.postern("queue", timeout=600)
                list_s = time.monotonic() - t
                listed = len(set(re.findall(r"^([0-9A-F]{12,})\b", q.stdout, re.M)))
                before = sunk()
                t = time.monotonic()
                r = subprocess.run([load, "-s", "20", "-m", str(args.flow), "-t",
                                    "user@example.com", "127.0.0.1:%d" % inst.port],
                                   capture_output=True, text=True, timeout=600)
                assert r.returncode == 0, r.stderr[-2000:]
                harness.wait_for(lambda: sunk() - before >= args.flow, 600, interval=0.02,
                                 what="the flow messages at the sink")
                flow_s = time.monotonic() - t
                row = {"deferred": queued, "fill_seconds": round(fill_s, 1),
                       "qmgr_rss_mb": round(rss_kb(qmgr_pid) / 1024.0, 1),
                       "qmgr_peak_rss_mb": round(rss_kb(qmgr_pid, "VmHWM") / 1024.0, 1),
                       "queue_list_seconds": round(list_s, 2), "queue_listed": listed,
                       "queue_list_rc": q.returncode,
                       "flow_e2e_rate": round(args.flow / flow_s, 1)}
                rows.append(row)
                print(row, flush=True)
    finally:
        sink.terminate()
        sink.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    out = {"machine": bench.machine_info(), "flow": args.flow, "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
