#!/usr/bin/python3
"""make torture: the long fault runs (minutes, not seconds), outside make check.

  POSTERN_BUILD=build /usr/bin/python3 tests/torture/torture.py [kill|memory]...

kill    SIGKILL random instance processes (master and qmgr included) every
        0.1-1 s for TORTURE_SECONDS (default 600) under 4 SMTP clients, then
        check that every acknowledged message was delivered
        (tests/integration/faults.py).
memory  10,000 messages (TORTURE_MESSAGES) through daemons that never
        retire: no descriptor growth, RSS growth within 512 kB.
leaks   with TORTURE_ASAN_BUILD set to an ASan+UBSan build
        (make BUILD=X OPT="-O1 -g" SANITIZE="-fsanitize=address,undefined"):
        2,000 messages (TORTURE_LEAK_MESSAGES) through daemons retiring
        every 200 clients; LeakSanitizer and ASan/UBSan must report nothing.
Prints one figure line per run ("torture: ...") for doc/security.md and exits
non-zero when a message was lost or something grew.  The 10-minute fuzz
runs are the Makefile's part of `make torture` (tests/fuzz/run.sh).
"""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import faults  # noqa: E402


def kill():
    secs = int(os.environ.get("TORTURE_SECONDS", "600"))
    r = faults.kill_under_load(secs, clients=4, seed=int(time.time()), pace=0.01,
                               settle_timeout=600)
    print("torture: kill loop:", faults.report(r), flush=True)
    ok = not r["lost"] and not r["queue_left"] and not r["corrupt"] and not r["panics"]
    if r["panics"]:
        print("torture: panics/fatals:", r["panics"][:10])
    return ok


def memory():
    n = int(os.environ.get("TORTURE_MESSAGES", "10000"))
    before, after, _ = faults.memory_over_sessions(500, n)
    problems = faults.check_no_growth(before, after, rss_slack_kb=512)
    print("torture: memory over %d messages: %s" % (n, problems or "no growth"), flush=True)
    for key in sorted(before):
        if key in after:
            print("torture:   %s[%d] rss %d -> %d kB, fds %d -> %d"
                  % (key + (before[key][0], after[key][0], before[key][1], after[key][1])))
    return not problems


def leaks():
    build = os.environ.get("TORTURE_ASAN_BUILD")
    if not build:
        print("torture: leaks: TORTURE_ASAN_BUILD not set, skipped", flush=True)
        return True
    faults.harness.BUILD = os.path.abspath(build)
    faults.harness.POSTERN = os.path.join(faults.harness.BUILD, "bin", "postern")
    n = int(os.environ.get("TORTURE_LEAK_MESSAGES", "2000"))
    reports, delivered = faults.leak_check(n)
    print("torture: sanitizers over %d messages (%d delivered): %d reports"
          % (n, delivered, len(reports)), flush=True)
    for name, text in reports[:5]:
        print("torture: --- %s\n%s" % (name, text))
    return not reports and delivered == n


def main(argv):
    runs = argv or ["kill", "memory", "leaks"]
    ok = True
    for name in runs:
        ok = {"kill": kill, "memory": memory, "leaks": leaks}[name]() and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
