"""Durability of acknowledged mail (DESIGN.md, issue 4): whatever got a
`250 2.0.0 Ok: queued as QID` survives SIGKILL of every postern process,
and of smtpd and cleanup at any moment during DATA; after `postern start`
it is delivered.  Nothing half-written is ever taken for a message."""
import os
import random
import re
import signal
import smtplib
import threading
import time

import harness
from harness import Instance, wait_for

MSG = "From: s@localhost\r\nTo: alice@localhost\r\nSubject: %s\r\n\r\n%s\r\n"


def _have(*programs):
    return all(os.access(os.path.join(harness.BUILD, "libexec", p), os.X_OK)
               for p in programs)


def _program(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv0 = f.read().split(b"\0")[0]
    except OSError:
        return ""
    return os.path.basename(argv0.decode(errors="replace"))


def _kill_all(inst):
    """SIGKILL every process of the instance as if at one instant (a power
    cut).  Killed one after another, a survivor could see the death of
    another and act on it: qmgr seeing local die mid-delivery defers the
    message with backoff (right for a crash of local, not what this test
    is about), and pid order says nothing about fork order once pids wrap
    (pid_max is 32768 here).  So first everything is stopped (a stopped
    process notices nothing), then killed."""
    assert inst.pids(), "no process to kill"

    def signal_round(sig):
        # again and again: one may have forked between a look and the signal
        def one_round():
            pids = inst.pids()
            stopped = all(proc_stopped(pid) for pid in pids)
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            return not pids if sig == signal.SIGKILL else stopped
        wait_for(one_round, 10, what="signal %d to every process" % sig)

    signal_round(signal.SIGSTOP)
    signal_round(signal.SIGKILL)


def proc_stopped(pid):
    state, _ = harness.proc_state(pid)
    return state in (None, "T", "t", "Z")


def _kill_storm(inst, programs, seconds, seed):
    """SIGKILL a random running process of `programs` every 0.02-0.15 s for
    `seconds`; returns how many were killed."""
    kills = 0
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        victims = [p for p in inst.pids() if _program(p) in programs]
        if victims:
            try:
                os.kill(rng.choice(victims), signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass
        time.sleep(rng.uniform(0.02, 0.15))
    return kills


def _queued(inst, queue):
    found = []
    for _, _, files in os.walk(os.path.join(inst.dir, "spool", queue)):
        found += [n for n in files if not n.startswith(".")]
    return found


def _subjects(inst, user):
    out = []
    for m in inst.mailbox(user):
        found = re.search(r"^Subject: (.*)$", m, re.M)
        if found:
            out.append(found.group(1))
    return out


def _set_qmgr(inst, enabled):
    path = os.path.join(inst.dir, "master.cf")
    with open(path) as f:
        text = f.read()
    new = re.sub(r"^#?(qmgr\s+unix\s)", r"\1" if enabled else r"#\1", text, flags=re.M)
    with open(path, "w") as f:
        f.write(new)


def test_sigkill_everything_right_after_250_then_start_delivers():
    if not _have("smtpd", "cleanup", "qmgr", "local"):
        print("skipped: daemons not built")
        return
    with Instance(conf={"local_recipient_maps": ""}) as inst:
        # First with no qmgr running, so the message is certainly still
        # queued at the kill: it must be in incoming/ afterwards.
        _set_qmgr(inst, False)
        assert inst.postern("stop").returncode == 0
        assert inst.postern("start").returncode == 0
        wait_for(lambda: harness.port_accepts(inst.port), 10, what="the smtp port")
        with inst.smtp() as s:
            code, reply = s.docmd("EHLO", "client.example")
            assert code == 250
            assert s.mail("s@localhost")[0] == 250
            assert s.rcpt("alice@localhost")[0] == 250
            code, reply = s.data(MSG % ("first", "kept"))
            assert code == 250, reply
            qid = re.search(rb"queued as ([0-9A-F]+)", reply).group(1).decode()
            _kill_all(inst)                     # at once, the session still open
        assert _queued(inst, "incoming") == [qid]
        _set_qmgr(inst, True)
        assert inst.postern("start").returncode == 0
        wait_for(lambda: "first" in _subjects(inst, "alice"), 30, what="delivery after start")

        # Then with the whole system running: killed the moment the reply
        # is read, whatever qmgr or local were doing.
        for n in range(3):
            subject = "round %d" % n
            with inst.smtp() as s:
                s.sendmail("s@localhost", ["alice@localhost"], MSG % (subject, "x"))
                _kill_all(inst)
            assert inst.postern("start").returncode == 0
            wait_for(lambda: harness.port_accepts(inst.port), 10, what="the smtp port")
            _wait_delivered(inst, subject)
        assert _queued(inst, "corrupt") == []


def _wait_delivered(inst, subject):
    """Wait for the delivery; a timeout says where the message is and
    shows the log (this test failed once under heavy load with no clue)."""
    try:
        wait_for(lambda: subject in _subjects(inst, "alice"), 60,
                 what="delivery of %s after start" % subject)
    except AssertionError as e:
        where = {q: _queued(inst, q) for q in ("incoming", "active", "deferred", "hold", "corrupt")}
        raise AssertionError("%s; queue: %s; log tail:\n%s"
                             % (e, where, "\n".join(inst.log().splitlines()[-60:])))


def test_sigkill_smtpd_and_cleanup_during_data_loses_no_acknowledged_mail():
    if not _have("smtpd", "cleanup", "qmgr", "local"):
        print("skipped: daemons not built")
        return
    conf = {"local_recipient_maps": "", "service_throttle_time": "1s"}
    with Instance(conf=conf) as inst:
        acked, lock = [], threading.Lock()
        stop = threading.Event()
        body = "\r\n".join("line %d of a message long enough to be written in pieces" % i
                           for i in range(2000))

        def client(k):
            n = 0
            while not stop.is_set():
                subject = "c%d-m%d" % (k, n)
                n += 1
                try:
                    with smtplib.SMTP("127.0.0.1", inst.port, timeout=20) as s:
                        s.sendmail("s@localhost", ["alice@localhost"], MSG % (subject, body))
                except (smtplib.SMTPException, OSError):
                    continue                    # not acknowledged: no promise
                with lock:
                    acked.append(subject)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        try:
            kills = _kill_storm(inst, ("smtpd", "cleanup"), 5, seed=4)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        print("SIGKILLs: %d, acknowledged messages: %d" % (kills, len(acked)))
        assert kills > 5, kills
        assert acked, "no message was acknowledged at all"
        # Everything acknowledged arrives (possibly more than once would be
        # allowed; here nothing delivers twice), and nothing is left over.
        wait_for(lambda: set(acked) <= set(_subjects(inst, "alice")), 60,
                 what="every acknowledged message in the mailbox")
        wait_for(lambda: not _queued(inst, "incoming") and not _queued(inst, "active"), 30,
                 what="an empty queue")
        assert _queued(inst, "corrupt") == []
        for m in inst.mailbox("alice"):
            if "Subject: c" in m:
                assert m.rstrip("\n").endswith("line 1999 of a message long enough to be "
                                               "written in pieces"), m[-200:]
