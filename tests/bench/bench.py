#!/usr/bin/python3
"""make bench: postern's benchmark scenarios, each on a fresh instance.

    bench.py [--build DIR] [--sessions 20] [--messages 3000] [--size 4096]
             [--scenarios all|relay,local,accept,sendmail] [--json PATH]
             [--reuse] [--rounds N] [--keep-deletes]

Scenarios (doc/performance.md says what each one measures):
  relay     bench_load -> smtpd -> cleanup -> qmgr -> smtp -> bench_sink
            ("not built" while the build has no smtp agent)
  local     bench_load -> smtpd -> cleanup -> qmgr -> local -> Maildir of the
            instance's account (an existing user, like Postfix's pfbench)
  accept    bench_load -> smtpd -> cleanup -> incoming/, with qmgr not in
            master.cf, so nothing is delivered: what acceptance alone costs
  sendmail  MESSAGES sequential `sendmail` runs -> postdrop -> pickup ->
            cleanup -> qmgr -> local -> Maildir ("not built" without sendmail)

For each: msgs/s accepted (load generator: first connect to last 250),
msgs/s end to end (first connect until the queue is empty and every copy
is in the Maildir or the sink -- polled, never slept), latency from the end
of DATA to the 250 (p50, p99), CPU seconds per 1000 messages and peak RSS
per daemon (a /proc sampler, see ProcSampler), then a check that each
message arrived exactly once.  A table goes to stdout, the figures to
--json (default BUILD/bench-results.json).  Exit status 1 when a scenario
that could run failed its checks.

Directories a scenario is done with (instance, Maildir, sink) are renamed
into one graveyard and removed only after the last scenario: on ext4
without a journal, thousands of files deleted make every file created in
that block group for the next 1-6 minutes slower (doc/performance.md), so
removing one scenario's tree right before the next would charge that cost
to whichever MTA runs next.  --keep-deletes restores removal at once;
--graveyard DIR leaves the trees in DIR for the caller to remove later
(several invocations, e.g. two builds in turn, sharing one graveyard).
--rounds N runs the chosen scenarios N times in turn (A B A B ...), one
row each, for comparisons on a noisy machine.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))

CLK_TCK = os.sysconf("SC_CLK_TCK")
DAEMON_ORDER = ["master", "smtpd", "cleanup", "qmgr", "local", "smtp", "pickup",
                "sendmail+postdrop"]


def read_stat(pid):
    """(comm, ppid, cpu seconds, reaped children's cpu seconds) or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    lpar, rpar = data.index("("), data.rindex(")")
    comm = data[lpar + 1:rpar]
    rest = data[rpar + 2:].split()
    # rest[0] is field 3 (state): utime=14 stime=15 cutime=16 cstime=17
    if rest[0] == "Z":
        return None
    ppid = int(rest[1])
    cpu = (int(rest[11]) + int(rest[12])) / CLK_TCK
    ccpu = (int(rest[13]) + int(rest[14])) / CLK_TCK
    return comm, ppid, cpu, ccpu


def read_runtime(pid):
    """(seconds the process ran on a CPU, seconds it was runnable but
    waited for one) from /proc/PID/schedstat (exact nanoseconds;
    utime+stime in ticks misses most of a daemon that runs in slices
    shorter than a tick), or None."""
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            fields = f.read().split()
        return int(fields[0]) / 1e9, int(fields[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def read_hwm_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class ProcSampler(threading.Thread):
    """Samples the master and its descendants every `interval` seconds:
    per pid the last seen CPU time (schedstat run time) and peak RSS
    (VmHWM).  A process that exits between two samples loses what it ran
    since the last one (at most one interval); `exited` counts them.
    Processes are ours when they descend from the master."""

    def __init__(self, master_pid, interval=0.1):
        super().__init__(daemon=True)
        self.master_pid = master_pid
        self.interval = interval
        self.procs = {}            # pid -> [comm, cpu, hwm_kb, alive, cpu_wait]
        self.ignored = set()
        self.master_ccpu = 0.0
        self.stop_event = threading.Event()
        self.lock = threading.Lock()

    def sample(self):
        ours = {self.master_pid}
        with self.lock:
            known = set(self.procs)
        try:
            names = os.listdir("/proc")
        except OSError:
            return
        live = set()
        # Parents before children: pids mostly grow; two passes catch the rest.
        pids = sorted(int(n) for n in names if n.isdigit())
        for _ in range(2):
            for pid in pids:
                if pid in self.ignored and pid not in known:
                    continue
                if pid in live:
                    continue
                st = read_stat(pid)
                if st is None:
                    continue
                comm, ppid, cpu, ccpu = st
                if pid != self.master_pid and ppid not in ours and pid not in known:
                    continue
                runtime = read_runtime(pid)
                wait = 0.0
                if runtime is not None:
                    cpu, wait = runtime
                ours.add(pid)
                live.add(pid)
                hwm = read_hwm_kb(pid)
                with self.lock:
                    entry = self.procs.setdefault(pid, [comm, 0.0, 0, True, 0.0])
                    entry[0], entry[1], entry[3] = comm, max(entry[1], cpu), True
                    entry[4] = max(entry[4], wait)
                    entry[2] = max(entry[2], hwm)
                    if pid == self.master_pid:
                        self.master_ccpu = ccpu
        with self.lock:
            for pid, entry in self.procs.items():
                if pid not in live:
                    entry[3] = False
        # pids seen once and not ours are skipped later (a pid reused by a
        # new child of ours is caught by the ppid check of the next pass).
        for pid in pids:
            if pid not in ours:
                self.ignored.add(pid)
        self.ignored -= ours

    def run(self):
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval)

    def finish(self):
        self.stop_event.set()
        self.join()
        self.sample()
        with self.lock:
            per = {}
            exited = 0
            for pid, (comm, cpu, hwm, alive, wait) in self.procs.items():
                d = per.setdefault(comm, {"cpu": 0.0, "rss_kb": 0, "processes": 0,
                                          "cpu_wait": 0.0})
                d["cpu"] += cpu
                d["cpu_wait"] += wait
                d["rss_kb"] = max(d["rss_kb"], hwm)
                d["processes"] += 1
                if not alive:
                    exited += 1
            return per, exited


def machine_busy_seconds():
    """CPU seconds all CPUs spent not idle since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


def count_files(path):
    try:
        return sum(1 for e in os.scandir(path) if not e.name.startswith("."))
    except OSError:
        return 0


def count_files_tree(path):
    """Files (not dot-files) under path, subdirectories included."""
    return sum(sum(1 for f in files if not f.startswith("."))
               for _, _, files in os.walk(path))


def queue_files(spool):
    """Messages in the queue (incoming, active, deferred, hold, maildrop),
    hashed subdirectories included."""
    total = 0
    for q in ("maildrop", "incoming", "active", "deferred", "hold"):
        for root, dirs, files in os.walk(os.path.join(spool, q)):
            total += sum(1 for f in files if not f.startswith("."))
    return total


def maildir_seqs(maildir):
    """X-Bench-Seq values of the messages in a Maildir (new/ and cur/)."""
    seqs = []
    for sub in ("new", "cur"):
        d = os.path.join(maildir, sub)
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            if name.startswith("."):
                continue
            with open(os.path.join(d, name), "rb") as f:
                head = f.read(4096)
            m = re.search(rb"^X-Bench-Seq: (\d+)", head, re.M)
            seqs.append(int(m.group(1)) if m else -1)
    return seqs


def parse_kv(line):
    return {k: v for k, v in (item.split("=", 1) for item in line.split() if "=" in item)}


def run_load(build, port, args, recipient, extra=()):
    """bench_load against 127.0.0.1:port; (figures dict, client cpu s)."""
    argv = [os.path.join(build, "bench", "bench_load"), "-s", str(args.sessions),
            "-m", str(args.messages), "-l", str(args.size), "-t", recipient,
            "-f", "bench@example.com"]
    if args.reuse:
        argv.append("-d")
    argv += list(extra) + ["127.0.0.1:%d" % port]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=600)
    figures = parse_kv(out.decode().strip().splitlines()[-1]) if out.strip() else {}
    if proc.returncode != 0:
        sys.stderr.write(err.decode()[-2000:])
    return figures, proc.returncode


class Scenario:
    def __init__(self, name, args):
        self.name = name
        self.args = args
        self.result = {"scenario": name}

    def fail(self, why):
        self.result["status"] = "failed"
        self.result["error"] = why


# --set NAME=VALUE: main.cf settings for every postern instance (to
# compare a parameter's values without editing the scenarios).
EXTRA_CONF = {}


def start_instance(harness, conf, edit_master_cf=None):
    inst = harness.Instance(conf=dict(conf or {}, **EXTRA_CONF), start=False)
    inst.__enter__()
    try:
        if edit_master_cf:
            path = os.path.join(inst.dir, "master.cf")
            with open(path) as f:
                text = f.read()
            with open(path, "w") as f:
                f.write(edit_master_cf(text))
        r = inst.postern("start")
        if r.returncode != 0:
            raise AssertionError("postern start failed: " + r.stderr + inst.log()[-2000:])
        return inst
    except BaseException:
        inst.__exit__(None, None, None)
        raise


def measure(harness, args, name, conf, recipient, delivered, edit_master_cf=None,
            submit=None, make_instance=None):
    """One scenario: fresh instance, load, end-to-end poll, daemon figures.
    delivered(inst) -> number of copies arrived (None: no delivery stage).
    submit(inst) replaces the SMTP load generator (returns figures, rc).
    make_instance() replaces the postern instance (the Postfix rows)."""
    res = {"scenario": name, "status": "ok", "messages": args.messages,
           "sessions": args.sessions, "size": args.size}
    if make_instance:
        inst = make_instance()
    else:
        inst = start_instance(harness, conf, edit_master_cf)
    try:
        harness.wait_for(lambda: harness.port_accepts(inst.port), 20, what="the smtp port")
        if callable(recipient):
            recipient = recipient(inst)
        res["recipient"] = recipient
        master = inst.master_pid()
        sampler = ProcSampler(master)
        sampler.start()
        busy0 = machine_busy_seconds()
        t0 = time.monotonic()
        if submit:
            figures, rc = submit(inst)
        else:
            figures, rc = run_load(args.build, inst.port, args, recipient)
        t_accept = time.monotonic() - t0
        res["load"] = figures
        sent = int(figures.get("sent", 0))
        res["accepted"] = sent
        if rc != 0 or sent != args.messages:
            res["status"] = "failed"
            res["error"] = "load generator: %s of %d accepted" % (sent, args.messages)
        res["accept_rate"] = float(figures.get("rate", 0.0))
        res["latency_p50"] = float(figures.get("p50", 0.0))
        res["latency_p99"] = float(figures.get("p99", 0.0))
        spool = getattr(inst, "spool", None) or os.path.join(inst.dir, "spool")
        if delivered is not None:
            # How far delivery kept up while mail was being accepted.
            res["delivered_when_accepted"] = delivered(inst)
            deadline = time.monotonic() + args.timeout
            while True:
                n = delivered(inst)
                if n >= sent and queue_files(spool) == 0:
                    break
                if time.monotonic() > deadline:
                    res["status"] = "failed"
                    res["error"] = "timeout: %d of %d delivered, %d in the queue" % (
                        n, sent, queue_files(spool))
                    break
                time.sleep(0.02)
            t_e2e = time.monotonic() - t0
            res["e2e_seconds"] = round(t_e2e, 3)
            res["e2e_rate"] = round(sent / t_e2e, 1) if t_e2e > 0 else 0.0
            res["delivered"] = delivered(inst)
        else:
            res["e2e_seconds"] = None
            res["e2e_rate"] = None
            res["queued"] = queue_files(spool)
            if res["queued"] != sent:
                res["status"] = "failed"
                res["error"] = "%d accepted but %d queue files" % (sent, res["queued"])
        res["accept_seconds"] = round(t_accept, 3)
        # Everything the machine did meanwhile: postern, the load generator,
        # the sink, this script -- and other users of the machine.
        res["machine_busy_cpu_s"] = round(machine_busy_seconds() - busy0, 2)
        per, exited = sampler.finish()
        per_k = max(sent, 1) / 1000.0
        res["daemons"] = {
            comm: {"cpu_s_per_1000": round(d["cpu"] / per_k, 3),
                   "cpu_s": round(d["cpu"], 3),
                   "cpu_wait_s_per_1000": round(d["cpu_wait"] / per_k, 3),
                   "peak_rss_mb": round(d["rss_kb"] / 1024.0, 1),
                   "processes": d["processes"]}
            for comm, d in per.items()}
        res["exited_processes"] = exited
        res["instance_dir"] = inst.dir
        res["log_warnings"] = len(re.findall(r"(warning|fatal|panic):", inst.log()))
        return res, inst
    except BaseException:
        inst.__exit__(None, None, None)
        raise


def check_seqs(res, seqs, expected):
    """Every message arrived exactly once."""
    if sorted(seqs) != list(range(expected)):
        dup = len(seqs) - len(set(seqs))
        missing = expected - len(set(s for s in seqs if 0 <= s < expected))
        res["status"] = "failed"
        res["error"] = (res.get("error", "") + " copies: %d, duplicates %d, missing %d"
                        % (len(seqs), dup, missing)).strip()


def scenario_local(harness, args):
    # The instance's own account (posterntest when run as root): a user
    # that exists, as Postfix's pf-local delivers to the account pfbench.
    maildir = lambda inst: os.path.join(inst.dir, "mail", inst.user)
    res, inst = measure(harness, args, "local", {"local_recipient_maps": ""},
                        lambda inst: "%s@localhost" % inst.user,
                        lambda i: count_files(os.path.join(maildir(i), "new")))
    try:
        check_seqs(res, maildir_seqs(maildir(inst)), res["accepted"])
    finally:
        inst.__exit__(None, None, None)
    return res


def scenario_accept(harness, args):
    def no_qmgr(text):
        return re.sub(r"(?m)^qmgr\s", "#qmgr ", text)
    res, inst = measure(harness, args, "accept", {"local_recipient_maps": ""},
                        "alice@localhost", None,
                        edit_master_cf=no_qmgr)
    inst.__exit__(None, None, None)
    return res


def relay_to_sink(harness, args, name, recipient, conf_for_sink, make_instance=None):
    """A relay scenario: bench_sink on a free port, the MTA's relayhost
    pointing at it; delivered = what the sink counted."""
    sink_port = harness.free_port()
    tmp = tempfile.mkdtemp(prefix="postern-bench-sink-")
    count_file = os.path.join(tmp, "count")
    sink = subprocess.Popen([os.path.join(args.build, "bench", "bench_sink"),
                             "-c", count_file, "127.0.0.1:%d" % sink_port],
                            stdout=subprocess.PIPE)
    try:
        harness.wait_for(lambda: os.path.exists(count_file), 10, what="bench_sink")

        def sink_count(inst=None):
            try:
                with open(count_file) as f:
                    return int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                return 0
        conf = conf_for_sink(sink_port)
        res, inst = measure(harness, args, name, conf, recipient, sink_count,
                            make_instance=make_instance and (lambda: make_instance(conf)))
        inst.__exit__(None, None, None)
        if res["status"] == "ok" and res["delivered"] != res["accepted"]:
            res["status"] = "failed"
            res["error"] = "sink got %d of %d" % (res["delivered"], res["accepted"])
        return res
    finally:
        sink.terminate()
        sink.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def scenario_relay(harness, args):
    if not os.access(os.path.join(args.build, "libexec", "smtp"), os.X_OK):
        return {"scenario": "relay", "status": "not built",
                "error": "no smtp delivery agent in this build"}
    return relay_to_sink(harness, args, "relay", "user@example.com",
                         lambda port: {"relayhost": "[127.0.0.1]:%d" % port})


def scenario_postfix_relay(harness, args):
    from postfix_instance import PostfixInstance
    return relay_to_sink(harness, args, "pf-relay", "user@example.com",
                         lambda port: {"relayhost": "[127.0.0.1]:%d" % port},
                         make_instance=lambda conf: PostfixInstance(
                             args.postfix, harness.free_port(), conf).__enter__())


def scenario_postfix_local(harness, args):
    from postfix_instance import PostfixInstance
    res, inst = measure(harness, args, "pf-local", None, "pfbench@localhost",
                        lambda i: count_files(os.path.join(i.maildir(), "new")),
                        make_instance=lambda: PostfixInstance(
                            args.postfix, harness.free_port()).__enter__())
    try:
        check_seqs(res, maildir_seqs(inst.maildir()), res["accepted"])
    finally:
        inst.__exit__(None, None, None)
    return res


def scenario_postfix_accept(harness, args):
    from postfix_instance import PostfixInstance
    res, inst = measure(harness, args, "pf-accept", None, "pfbench@localhost", None,
                        make_instance=lambda: PostfixInstance(
                            args.postfix, harness.free_port(), {"in_flow_delay": "0"},
                            qmgr=False).__enter__())
    inst.__exit__(None, None, None)
    return res


def scenario_sendmail(harness, args):
    if args.sendmail_messages:
        import copy
        args = copy.copy(args)
        args.messages = args.sendmail_messages
    sendmail = os.path.join(args.build, "bin", "sendmail")
    if not os.access(sendmail, os.X_OK):
        return {"scenario": "sendmail", "status": "not built",
                "error": "no sendmail in this build"}
    maildir = lambda inst: os.path.join(inst.dir, "mail", inst.user)
    body = ("From: bench@example.com\nTo: bench-recipient\nSubject: bench\n"
            "X-Bench-Seq: %d\n\n")
    line = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnop\n"

    clients = {}

    def submit(inst):
        lat = []
        failed = 0
        import resource
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        env = dict(os.environ, POSTERN_CONFIG_DIR=inst.dir)
        for seq in range(args.messages):
            text = body % seq
            text += line * max(0, (args.size - len(text)) // len(line))
            t = time.monotonic()
            r = subprocess.run(inst._as_user([sendmail, "-f", "bench@example.com",
                                              "%s@localhost" % inst.user]),
                               input=text.encode(), capture_output=True, env=env,
                               cwd="/", timeout=60)
            lat.append(time.monotonic() - t)
            if r.returncode != 0:
                failed += 1
                if failed == 1:
                    sys.stderr.write("sendmail: exit %d: %s\n"
                                     % (r.returncode, r.stderr.decode()[-500:]))
        elapsed = time.monotonic() - start
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        # The submission programs are our children, not the master's: their
        # CPU (accumulated in ns by the kernel for reaped children) and the
        # largest peak RSS of any of them.
        clients["cpu"] = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        clients["rss_kb"] = ru1.ru_maxrss
        lat.sort()
        pick = lambda p: lat[min(len(lat) - 1, max(0, int(p / 100.0 * len(lat) + 0.999999) - 1))] if lat else 0
        sent = args.messages - failed
        return ({"sent": sent, "failed": failed, "elapsed": "%.3f" % elapsed,
                 "rate": "%.1f" % (sent / elapsed if elapsed else 0),
                 "p50": pick(50), "p99": pick(99)}, 0 if failed == 0 else 1)

    res, inst = measure(harness, args, "sendmail", {"local_recipient_maps": ""},
                        lambda inst: "%s@localhost" % inst.user,
                        lambda i: count_files(os.path.join(maildir(i), "new")),
                        submit=submit)
    try:
        res["latency_is"] = "wall time of one sendmail run"
        if clients and res.get("accepted"):
            res["daemons"]["sendmail+postdrop"] = {
                "cpu_s_per_1000": round(clients["cpu"] / (res["accepted"] / 1000.0), 3),
                "cpu_s": round(clients["cpu"], 3),
                "peak_rss_mb": round(clients["rss_kb"] / 1024.0, 1),
                "processes": res["accepted"]}
        check_seqs(res, maildir_seqs(maildir(inst)), res["accepted"])
    finally:
        inst.__exit__(None, None, None)
    return res


SCENARIOS = [("relay", scenario_relay), ("local", scenario_local),
             ("accept", scenario_accept), ("sendmail", scenario_sendmail)]
POSTFIX_SCENARIOS = [("pf-relay", scenario_postfix_relay), ("pf-local", scenario_postfix_local),
                     ("pf-accept", scenario_postfix_accept)]


def fmt_rate(v):
    return "%8.1f" % v if isinstance(v, (int, float)) else "%8s" % "-"


def table(results):
    lines = ["%-9s %-9s %8s %8s %8s %8s  %s" % ("scenario", "status", "acc/s", "e2e/s",
                                                 "p50 ms", "p99 ms",
                                                 "CPU s/1000 msgs | peak RSS MB, per daemon")]
    for r in results:
        if r["status"] == "not built":
            lines.append("%-9s %-9s %s" % (r["scenario"], "not built", r.get("error", "")))
            continue
        daemons = r.get("daemons", {})
        names = sorted(daemons, key=lambda n: (DAEMON_ORDER.index(n)
                                               if n in DAEMON_ORDER else 99, n))
        per = " ".join("%s=%.2f|%.1f" % (n, daemons[n]["cpu_s_per_1000"],
                                           daemons[n]["peak_rss_mb"]) for n in names)
        lines.append("%-9s %-9s %s %s %8.2f %8.2f  %s" % (
            r["scenario"], r["status"], fmt_rate(r.get("accept_rate")),
            fmt_rate(r.get("e2e_rate")), 1000 * r.get("latency_p50", 0),
            1000 * r.get("latency_p99", 0), per))
        if r["status"] != "ok":
            lines.append("          error: %s" % r.get("error"))
    return "\n".join(lines)


def machine_info():
    info = {"nproc": os.cpu_count()}
    try:
        with open("/proc/loadavg") as f:
            info["loadavg_before"] = f.read().split()[:3]
    except OSError:
        pass
    r = subprocess.run(["git", "-C", SRC, "rev-parse", "--short", "HEAD"],
                       capture_output=True, text=True)
    info["commit"] = r.stdout.strip()
    info["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return info


class DeferredRemoval:
    """Replace shutil.rmtree while the scenarios run: rename the tree into a
    graveyard directory (no inode is freed) and remove them all at exit."""

    def __init__(self, keep_in=None):
        self.real_rmtree = shutil.rmtree
        self.keep = keep_in is not None
        if self.keep:
            os.makedirs(keep_in, mode=0o755, exist_ok=True)
            self.graveyard = tempfile.mkdtemp(prefix="run-", dir=keep_in)
        else:
            self.graveyard = tempfile.mkdtemp(prefix="postern-bench-graveyard-")
        os.chmod(self.graveyard, 0o755)
        self.count = 0

    def rmtree(self, path, ignore_errors=False, onerror=None, **kw):
        if not os.path.lexists(path):
            return self.real_rmtree(path, ignore_errors=ignore_errors, onerror=onerror, **kw)
        self.count += 1
        try:
            os.rename(path, os.path.join(self.graveyard, str(self.count)))
        except OSError:                 # another file system, or busy: at once
            self.real_rmtree(path, ignore_errors=ignore_errors, onerror=onerror, **kw)

    def __enter__(self):
        shutil.rmtree = self.rmtree
        return self

    def __exit__(self, *exc):
        shutil.rmtree = self.real_rmtree
        if not self.keep:
            shutil.rmtree(self.graveyard, ignore_errors=True)
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(SRC, "build"))
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--scenarios", default="all")
    ap.add_argument("--sendmail-messages", type=int, default=0,
                    help="sequential sendmail runs (default: --messages)")
    ap.add_argument("--json")
    ap.add_argument("--reuse", action="store_true",
                    help="several messages per connection (bench_load -d)")
    ap.add_argument("--postfix", metavar="ROOT",
                    help="also run Postfix rows (pf-relay, pf-local, pf-accept) from "
                    "Debian's postfix package unpacked in ROOT (postfix-compare.sh)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the scenarios this many times in turn, one row each")
    ap.add_argument("--keep-deletes", action="store_true",
                    help="remove each scenario's files at once (default: at the end)")
    ap.add_argument("--graveyard", metavar="DIR",
                    help="move finished scenarios' trees under DIR and leave them there "
                    "(to compare builds in several invocations without one's deletions "
                    "slowing the next; remove DIR when done)")
    ap.add_argument("--timeout", type=float, default=300,
                    help="seconds to wait for delivery to finish")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="main.cf setting for every postern instance (repeatable)")
    args = ap.parse_args()
    for item in args.set:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            ap.error("--set wants NAME=VALUE, not %r" % item)
        EXTRA_CONF[name.strip()] = value.strip()
    args.build = os.path.abspath(args.build)
    if args.postfix:
        args.postfix = os.path.abspath(args.postfix)
    os.environ["POSTERN_BUILD"] = args.build
    import harness          # reads POSTERN_BUILD when imported
    scenarios = SCENARIOS + (POSTFIX_SCENARIOS if args.postfix else [])
    wanted = [n for n, _ in scenarios] if args.scenarios == "all" else args.scenarios.split(",")
    unknown = set(wanted) - {n for n, _ in scenarios}
    if unknown:
        ap.error("unknown scenario(s): %s" % ", ".join(sorted(unknown)))
    out = {"machine": machine_info(),
           "params": {"sessions": args.sessions, "messages": args.messages,
                      "size": args.size, "connection_per_message": not args.reuse,
                      "main_cf": dict(EXTRA_CONF)},
           "scenarios": []}
    # Side by side: each postern row right before its Postfix row.
    order = ["relay", "pf-relay", "local", "pf-local", "accept", "pf-accept", "sendmail"]
    chosen = [s for s in sorted(scenarios, key=lambda s: order.index(s[0])) if s[0] in wanted]
    if args.keep_deletes and args.graveyard:
        ap.error("--keep-deletes and --graveyard exclude each other")
    removal = DeferredRemoval(args.graveyard) if not args.keep_deletes else None
    if removal:
        removal.__enter__()
        out["graveyard"] = removal.graveyard
    try:
        run_rounds(harness, args, chosen, out)
    finally:
        if removal:
            removal.__exit__(None, None, None)
    with open("/proc/loadavg") as f:
        out["machine"]["loadavg_after"] = f.read().split()[:3]
    print(table(out["scenarios"]))
    print("(CPU: run time from /proc/PID/schedstat, sampled every 0.1 s per daemon process; "
          "load average %s before, %s after)" % (" ".join(out["machine"].get("loadavg_before", [])),
                                                 " ".join(out["machine"]["loadavg_after"])))
    json_path = args.json or os.path.join(args.build, "bench-results.json")
    with open(json_path, "w") as f:
        json.dump(out, f, indent=2)
    print("results: %s" % json_path)
    return 1 if any(r["status"] == "failed" for r in out["scenarios"]) else 0


def run_rounds(harness, args, chosen, out):
    for round_no in range(args.rounds):
        for name, fn in chosen:
            t = time.monotonic()
            try:
                r = fn(harness, args)
            except Exception as e:      # one broken scenario must not hide the others
                r = {"scenario": name, "status": "failed",
                     "error": "%s: %s" % (type(e).__name__, e)}
            r["wall_seconds"] = round(time.monotonic() - t, 1)
            r["round"] = round_no + 1
            r.pop("instance_dir", None)
            out["scenarios"].append(r)
            print("%s: %s (%.1fs)" % (name, r["status"], r["wall_seconds"]), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
