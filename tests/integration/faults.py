"""Fault injection shared by tests/integration/test_faults.py (short runs
in `make check`) and tests/torture/torture.py (long runs, `make torture`).

kill_under_load(seconds, clients, seed) runs a real instance (local
delivery to Maildirs) while `clients` threads send mail over SMTP, and a
killer SIGKILLs a random process of the instance - master, qmgr, smtpd,
cleanup, local, whatever runs - every 0.1-1.0 s, restarting the master
(`postern start`) whenever it was the victim.  Then the killing stops and
every message that got a 250 must show up in a mailbox.  Returns the
figures: kills per daemon, messages acknowledged, delivered, lost (must
be 0), duplicates (allowed only where a kill fell between a delivery and
its done-mark), and what was left in the queue.
"""
import collections
import os
import random
import re
import signal
import smtplib
import threading
import time

import harness

QUEUE_DIRS = ("incoming", "active", "deferred", "hold", "maildrop")
CONF = {
    "local_recipient_maps": "",
    # retry quickly after a crash deferred something
    "minimal_backoff_time": "1s",
    "maximal_backoff_time": "2s",
    "queue_run_delay": "1s",
    "smtpd_timeout": "20s",
}


def daemon_name(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv0 = f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return None
    return os.path.basename(argv0)


def tokens_in_mailboxes(inst):
    """Counter of the tokens ("Subject: tok-N") found in every Maildir."""
    found = collections.Counter()
    base = os.path.join(inst.dir, "mail")
    if not os.path.isdir(base):
        return found
    for user in os.listdir(base):
        for sub in ("new", "cur"):
            d = os.path.join(base, user, sub)
            if not os.path.isdir(d):
                continue
            for name in os.listdir(d):
                try:
                    with open(os.path.join(d, name), errors="replace") as f:
                        m = re.search(r"^Subject: tok-(\d+)$", f.read(), re.M)
                except OSError:
                    continue
                if m:
                    found[int(m.group(1))] += 1
    return found


def queue_files(inst):
    left = []
    for q in QUEUE_DIRS:
        for root, _dirs, files in os.walk(os.path.join(inst.dir, "spool", q)):
            # .tmp-* are cleanup's unfinished files (a killed cleanup's are
            # removed by the next one after 2 * ipc_timeout): not queue files
            left += [os.path.join(root, f) for f in files if not f.startswith(".tmp-")]
    return left


def master_alive(inst):
    return inst.master_pid() != 0


def restart(inst, timeout=60):
    """`postern start` until it works (orphaned children of a killed master
    may hold the ports for a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        r = inst.postern("start")
        if r.returncode == 0 or master_alive(inst):
            return
        if time.monotonic() > deadline:
            raise AssertionError("cannot restart after a kill: " + r.stderr)
        time.sleep(0.3)


def kill_under_load(seconds, clients=4, seed=1, settle_timeout=180, log=None, pace=0.0):
    rnd = random.Random(seed)
    kills = collections.Counter()
    acked = set()
    attempts = [0]
    lock = threading.Lock()
    stop = threading.Event()
    next_token = [0]

    with harness.Instance(conf=CONF) as inst:
        def client(k):
            crnd = random.Random(seed * 1000 + k)
            while not stop.is_set():
                with lock:
                    tok = next_token[0]
                    next_token[0] += 1
                    attempts[0] += 1
                rcpt = "u%d@localhost" % crnd.randrange(8)
                msg = "Subject: tok-%d\r\nMessage-ID: <tok-%d@test>\r\n\r\n%s\r\n" % (
                    tok, tok, "x" * crnd.randrange(2000))
                try:
                    s = smtplib.SMTP("127.0.0.1", inst.port, timeout=30)
                    try:
                        s.sendmail("load@localhost", [rcpt], msg)
                        with lock:
                            acked.add(tok)          # DATA got its 250
                        s.quit()
                    finally:
                        s.close()
                except (smtplib.SMTPException, OSError):
                    time.sleep(0.1)
                if pace:
                    time.sleep(pace)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        t_end = time.monotonic() + seconds
        try:
            while time.monotonic() < t_end:
                time.sleep(rnd.uniform(0.1, 1.0))
                if not master_alive(inst):
                    restart(inst)
                    continue
                pids = inst.pids()
                if not pids:
                    continue
                victim = rnd.choice(pids)
                name = daemon_name(victim)
                if name is None:
                    continue
                try:
                    os.kill(victim, signal.SIGKILL)
                except OSError:
                    continue
                kills[name] += 1
                if log:
                    log("kill %s[%d]" % (name, victim))
                if name == "master":
                    time.sleep(rnd.uniform(0, 0.5))
                    restart(inst)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        if not master_alive(inst):
            restart(inst)

        # Everything acknowledged must arrive; the queue must drain.
        deadline = time.monotonic() + settle_timeout
        while True:
            found = tokens_in_mailboxes(inst)
            missing = acked - set(found)
            left = queue_files(inst)
            if (not missing and not left) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        settle = time.monotonic() - (deadline - settle_timeout)
        corrupt = []
        for root, _dirs, files in os.walk(os.path.join(inst.dir, "spool", "corrupt")):
            corrupt += files
        log_text = inst.log()
        return {
            "seconds": seconds,
            "settle_seconds": round(settle, 1),
            "kills": dict(kills),
            "kills_total": sum(kills.values()),
            "attempts": attempts[0],
            "acked": len(acked),
            "delivered_acked": len(acked & set(found)),
            "delivered_unacked": len(set(found) - acked),
            "lost": sorted(missing),
            "duplicates": sum(n - 1 for n in found.values() if n > 1),
            "queue_left": left,
            "corrupt": corrupt,
            # a master restarted while an orphan still finishes a session on
            # the old port refuses to start ("bind: Address already in use");
            # restart() simply tries again, so that fatal is expected
            "panics": [l for l in re.findall(r"^.*: (?:panic|fatal): .*$", log_text, re.M)
                       if not re.search(r"master\[\d+\]: fatal: .*: bind .*: Address already in use$", l)],
        }


def report(r):
    return ("%(seconds)ds (+%(settle_seconds)ss to settle), %(kills_total)d kills %(kills)s, %(attempts)d attempts, "
            "%(acked)d acknowledged, %(delivered_acked)d of them delivered, "
            "%(delivered_unacked)d unacknowledged delivered, lost %(lost)s, "
            "%(duplicates)d duplicates, queue left %(queue_left)s, corrupt %(corrupt)s" % r)


def proc_usage(pid):
    """(VmRSS in kB, open descriptors) of pid."""
    with open("/proc/%d/status" % pid) as f:
        rss = int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))
    return rss, len(os.listdir("/proc/%d/fd" % pid))


def daemon_usage(inst):
    """{(name, pid): (rss_kb, fds)} for every process of the instance."""
    out = {}
    for pid in inst.pids():
        name = daemon_name(pid)
        try:
            out[(name, pid)] = proc_usage(pid)
        except (OSError, AttributeError):
            pass
    return out


def memory_over_sessions(warmup, sessions, log=None):
    """One instance whose daemons never retire (max_use 0, max_idle long),
    so the same smtpd, cleanup, qmgr and local serve every session: after
    `warmup` messages, then after `sessions` more, each process's VmRSS and
    descriptor count.  Returns (before, after, log text)."""
    conf = {"local_recipient_maps": "", "max_use": "0", "max_idle": "3600s"}
    with harness.Instance(conf=conf) as inst:
        def run(n, start):
            s = smtplib.SMTP("127.0.0.1", inst.port, timeout=30)
            try:
                for i in range(start, start + n):
                    # a session per message: connect, EHLO, MAIL, RCPT, DATA, RSET...
                    s.sendmail("load@localhost", ["u%d@localhost" % (i % 5)],
                               "Subject: m%d\r\nMessage-ID: <m%d@test>\r\n\r\n%s\r\n"
                               % (i, i, "y" * (i % 3000)))
                    if i % 10 == 9:         # and new sessions now and then
                        s.quit()
                        s = smtplib.SMTP("127.0.0.1", inst.port, timeout=30)
            finally:
                s.close()

        def drained():
            return not queue_files(inst)
        run(warmup, 0)
        harness.wait_for(drained, 120, what="the queue to drain")
        before = daemon_usage(inst)
        run(sessions, warmup)
        harness.wait_for(drained, 600, what="the queue to drain")
        time.sleep(0.5)
        after = daemon_usage(inst)
        if log:
            log("before %s" % before)
            log("after  %s" % after)
        return before, after, inst.log()


def check_no_growth(before, after, rss_slack_kb):
    """Same processes, same descriptor counts, RSS within slack."""
    problems = []
    for key, (rss0, fds0) in before.items():
        if key not in after:
            problems.append("%s[%d] went away" % key)
            continue
        rss1, fds1 = after[key]
        if fds1 != fds0:
            problems.append("%s[%d] fds %d -> %d" % (key + (fds0, fds1)))
        if rss1 - rss0 > rss_slack_kb:
            problems.append("%s[%d] rss %d -> %d kB" % (key + (rss0, rss1)))
    return problems


def leak_check(messages, log=None):
    """Run an instance of an ASan/LSan build (POSTERN_BUILD pointing at it):
    daemons retire after max_use 200, so LeakSanitizer examines each at its
    exit; the sanitizers write to DIR/lsan/.  Returns (reports, delivered):
    the report files that hold an error, and how many messages arrived."""
    conf = {"local_recipient_maps": "", "max_use": "200"}
    with harness.Instance(conf=conf, start=False) as inst:
        out = os.path.join(inst.dir, "lsan")
        os.mkdir(out)
        os.chmod(out, 0o777)
        opts = "log_path=%s/san:detect_leaks=1:exitcode=0" % out
        inst.edit_main_cf({"import_environment": "TZ LANG ASAN_OPTIONS=%s "
                           "UBSAN_OPTIONS=print_stacktrace=1:log_path=%s/ubsan" % (opts, out)})
        r = inst.postern("start")
        assert r.returncode == 0, r.stderr + inst.log()
        harness.wait_for(lambda: harness.port_accepts(inst.port), 30, what="smtp port")
        s = smtplib.SMTP("127.0.0.1", inst.port, timeout=60)
        for i in range(messages):
            s.sendmail("load@localhost", ["u%d@localhost" % (i % 5)],
                       "Subject: l%d\r\n\r\n%s\r\n" % (i, "z" * (i % 2000)))
            if i % 10 == 9:
                s.quit()
                s = smtplib.SMTP("127.0.0.1", inst.port, timeout=60)
        s.quit()
        harness.wait_for(lambda: not queue_files(inst), 300, what="the queue to drain")
        delivered = len(re.findall(r"status=sent", inst.log()))
        inst.postern("stop", timeout=120)
        harness.wait_for(lambda: not inst.pids(), 60, what="the instance to stop")
        reports = []
        for name in sorted(os.listdir(out)):
            with open(os.path.join(out, name), errors="replace") as f:
                text = f.read()
            if "ERROR:" in text or "runtime error" in text:
                reports.append((name, text[:3000]))
        if log:
            log("%d sanitizer files, %d with errors" % (len(os.listdir(out)), len(reports)))
        return reports, delivered
