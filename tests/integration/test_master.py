"""master, the daemon skeleton and postern start/stop/reload/status/init.

Most tests run the tiny echo_service.py (a Python stand-in for a daemon,
reporting busy/idle on fd 4 like the skeleton) or echo_daemon.c (a daemon
on the real skeleton, compiled by the harness) as absolute master.cf
commands, so they do not depend on smtpd & co.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import harness
from faults import daemon_name
from harness import Instance, wait_for

ECHO = os.path.join(harness.HERE, "echo_service.py")


def echo_line(port, maxproc="-", extra=""):
    return "127.0.0.1:%d inet n - n - %s %s %s" % (port, maxproc, ECHO, extra)


class Client:
    """A line-oriented connection to an echo service."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rwb", buffering=0)

    def greeting(self, timeout=10):
        self.sock.settimeout(timeout)
        line = self.file.readline()
        assert line.startswith(b"220 "), line
        return int(line.split()[2])            # the serving child's pid

    def has_greeting_within(self, seconds):
        self.sock.settimeout(seconds)
        try:
            return bool(self.file.readline())
        except socket.timeout:
            return False

    def say(self, text):
        self.sock.settimeout(10)
        self.file.write(text.encode() + b"\r\n")
        return self.file.readline().decode().rstrip("\r\n")

    def close(self):
        # makefile() holds the fd open: close both, or the peer never sees EOF
        for x in (self.file, self.sock):
            try:
                x.close()
            except OSError:
                pass


def test_start_status_stop_leaves_nothing():
    eport = harness.free_port()
    with Instance(master_cf_append=echo_line(eport)) as inst:
        r = inst.postern("status")
        assert r.returncode == 0 and "is running" in r.stderr, r.stderr
        inst.wait_log(r"postern/master\[\d+\]: daemon started -- version \S+, "
                      r"configuration %s$" % re.escape(inst.dir))
        c = Client(eport)
        child = c.greeting()
        assert c.say("hello") == "250 hello"
        c.close()
        assert child in inst.pids()
        master = inst.master_pid()
        assert master > 0
        r = inst.postern("stop")
        assert r.returncode == 0, r.stderr
        # stop returns once the master is gone; nothing of the instance stays
        assert inst.pids() == [], inst.pids()
        assert not harness.port_accepts(eport)
        assert not harness.port_accepts(inst.port)
        assert not os.path.exists(os.path.join(inst.dir, "spool", "pid", "master.pid"))
        assert re.search(r"terminating on signal 15", inst.log())
        r = inst.postern("status")
        assert r.returncode == 1 and "not running" in r.stderr, r.stderr
        r = inst.postern("stop")
        assert r.returncode == 1 and "not running" in r.stderr


def test_second_start_refused():
    with Instance() as inst:
        pid = inst.master_pid()
        r = inst.postern("start")
        assert r.returncode == 1
        assert "postern: fatal: the mail system is already running" in r.stderr, r.stderr
        # the master itself refuses too, naming the running one
        r = inst.run([os.path.join(inst.build, "libexec", "master"), "-c", inst.dir])
        assert r.returncode == 1
        assert "already running (pid %d)" % pid in r.stderr, r.stderr
        assert inst.master_pid() == pid


def test_missing_program_is_skipped_once():
    eport = harness.free_port()
    with Instance(master_cf_append="nosuch unix n - n - - no-such-daemon\n"
                                   + echo_line(eport)) as inst:
        c = Client(eport)
        c.greeting()
        c.close()
        text = inst.log()
        assert len(re.findall(r"warning: service nosuch: program \S+/no-such-daemon not found",
                              text)) == 1, text


def test_reload_applies_master_cf_while_session_stays():
    e1, e2 = harness.free_port(), harness.free_port()
    with Instance(master_cf_append=echo_line(e1, maxproc="1")) as inst:
        a = Client(e1)
        a_pid = a.greeting()
        assert a.say("before") == "250 before"
        # maxproc 1: with A busy, a second client waits in the backlog
        b = Client(e1)
        assert not b.has_greeting_within(1.0)
        b.close()

        with open(os.path.join(inst.dir, "master.cf")) as f:
            text = f.read()
        text = text.replace(echo_line(e1, maxproc="1"), echo_line(e1, maxproc="2"))
        with open(os.path.join(inst.dir, "master.cf"), "w") as f:
            f.write(text + echo_line(e2) + "\n")
        r = inst.postern("reload")
        assert r.returncode == 0, r.stderr
        inst.wait_log(r"reload -- version")

        # the new service answers
        wait_for(lambda: harness.port_accepts(e2), 10, what="the added service")
        n = Client(e2)
        n.greeting()
        n.close()
        # maxproc is now 2: two new sessions at once, while A still runs
        c, d = Client(e1), Client(e1)
        c_pid, d_pid = c.greeting(), d.greeting()
        assert len({a_pid, c_pid, d_pid}) == 3
        # the established session was not cut
        assert a.say("after") == "250 after"
        assert a.say("QUIT") == "221 bye"
        for x in (a, c, d):
            x.close()
        # A's child had been told to exit once done with its session
        wait_for(lambda: a_pid not in inst.pids(), 10, what="the retired child to exit")


def test_reload_removes_a_service():
    e1, e2 = harness.free_port(), harness.free_port()
    with Instance(master_cf_append=echo_line(e1) + "\n" + echo_line(e2)) as inst:
        c = Client(e2)
        c.greeting()
        c.close()
        with open(os.path.join(inst.dir, "master.cf")) as f:
            text = f.read()
        with open(os.path.join(inst.dir, "master.cf"), "w") as f:
            f.write(text.replace(echo_line(e2), ""))
        assert inst.postern("reload").returncode == 0
        wait_for(lambda: not harness.port_accepts(e2), 10, what="the removed listener to close")
        c = Client(e1)
        c.greeting()
        c.close()


def test_killed_child_is_replaced():
    eport = harness.free_port()
    with Instance(master_cf_append=echo_line(eport)) as inst:
        c = Client(eport)
        first = c.greeting()
        assert c.say("QUIT") == "221 bye"
        c.close()
        os.kill(first, signal.SIGKILL)
        inst.wait_log(r"warning: process %s pid %d killed by signal 9" % (re.escape(ECHO), first))
        c = Client(eport)
        second = c.greeting()
        assert second != first
        assert c.say("still here") == "250 still here"
        c.close()
        assert "throttling" not in inst.log()


def test_status_records_in_bursts_and_in_halves_are_counted():
    """The master reads the status pipe many records at a time: a child
    that starts with a burst of 200 records in one write and then writes
    each record in two halves 0.2 s apart is still counted right.  Its
    BUSY, read in two parts, must count: with A busy, a second client
    gets a second child at once (maxproc 2).  (Fails when the master drops
    a record read in part: A stays "idle" and B waits in the backlog.)"""
    eport = harness.free_port()
    with Instance(master_cf_append=echo_line(eport, maxproc="2",
                                             extra="split-reports")) as inst:
        a = Client(eport)
        a_pid = a.greeting()            # sent after both halves of A's BUSY
        b = Client(eport)
        b_pid = b.greeting(timeout=5)
        assert b_pid != a_pid
        assert a.say("QUIT") == "221 bye"
        assert b.say("QUIT") == "221 bye"
        a.close()
        b.close()
        c = Client(eport)
        assert c.greeting() in (a_pid, b_pid)       # maxproc 2: no third child
        c.close()
        assert "throttling" not in inst.log()
        assert "warning" not in inst.log(), inst.log()


def test_failing_service_is_throttled():
    eport = harness.free_port()
    with Instance(conf={"service_throttle_time": "2s"},
                  master_cf_append="127.0.0.1:%d inet n - n - - /bin/false" % eport) as inst:
        # A pending connection makes the master start /bin/false, which dies
        # before it reports ready: throttled for 2 s, then tried again.
        s = socket.create_connection(("127.0.0.1", eport), timeout=5)
        try:
            start = time.monotonic()
            pattern = r"warning: process /bin/false pid \d+ exit status 1"
            wait_for(lambda: len(re.findall(pattern, inst.log())) >= 2, 10,
                     what="a retry after the throttle time")
            assert "/bin/false: bad command startup -- throttling" in inst.log()
            # Watch a fixed window: a fork loop would start hundreds.
            time.sleep(max(0.0, start + 5 - time.monotonic()))
            starts = len(re.findall(pattern, inst.log()))
            elapsed = time.monotonic() - start
            assert starts <= elapsed / 2 + 2, (starts, elapsed)
        finally:
            s.close()


def test_skeleton_max_use_wakeup_and_standalone():
    with Instance(start=False) as inst:
        daemon = harness.build_echo_daemon(os.path.join(inst.tmp, "echo-daemon"))
        eport = harness.free_port()
        idle_port = harness.free_port()
        inst.append_master_cf(
            "127.0.0.1:%d inet n - n - 1 %s -o max_use=2\n" % (eport, daemon)
            + "127.0.0.1:%d inet n - n - 1 %s -o max_idle=1s\n" % (idle_port, daemon)
            + "echowake unix n - n 1 1 %s\n" % daemon)
        r = inst.postern("start")
        assert r.returncode == 0, r.stderr
        pids = []
        for _ in range(3):
            c = Client(eport)
            pids.append(c.greeting())
            assert c.say("QUIT") == "221 bye"
            c.close()
        # maxproc 1: the second client waits for the same child
        assert pids[0] == pids[1], pids          # one child, two clients
        assert pids[2] != pids[1], pids          # max_use=2: a new child
        # max_idle=1s: an idle child goes away by itself, and a new client
        # gets a new one
        c = Client(idle_port)
        idler = c.greeting()
        assert c.say("QUIT") == "221 bye"
        c.close()
        wait_for(lambda: idler not in inst.pids(), 10, what="the idle child to exit")
        c = Client(idle_port)
        assert c.greeting() != idler
        c.close()
        inst.wait_log(r"postern/echo-daemon\[\d+\]: wakeup received")
        # SIGTERM (here from a reload) lets a busy skeleton child finish its
        # client, then it exits
        c = Client(eport)
        busy = c.greeting()
        assert inst.postern("reload").returncode == 0
        inst.wait_log(r"reload -- version")
        assert c.say("still served") == "250 still served"
        assert busy in inst.pids()
        assert c.say("QUIT") == "221 bye"
        c.close()
        wait_for(lambda: busy not in inst.pids(), 10, what="the busy child to exit after its client")
        assert re.search(r"echo-daemon\[\d+\]: ready uid=%d chrooted=0" % os.stat(inst.dir).st_uid,
                         inst.log())
        # -S: one client on stdin/stdout, no master
        r = inst.run([daemon, "-S", "-c", inst.dir], input="hi\r\nQUIT\r\n", timeout=20)
        assert r.returncode == 0, r.stderr
        assert "250 hi\n221 bye\n" in r.stdout, r.stdout
        # malformed and unknown -o arguments
        r = inst.run([daemon, "-S", "-c", inst.dir, "-o", "novalue"], input="", timeout=20)
        assert r.returncode == 1
        # (before the log is set up: -o may change it; the error is on stderr)
        assert "fatal: bad -o argument (expected name=value): novalue" in r.stderr, r.stderr
        r = inst.run([daemon, "-S", "-c", inst.dir, "-o", "no_such_param=1"],
                     input="QUIT\r\n", timeout=20)
        assert r.returncode == 0 and "221 bye" in r.stdout, (r.stdout, r.stderr)
        assert "-o no_such_param: unknown parameter" in r.stderr, r.stderr
        r = inst.run([daemon, "-c", inst.dir, "-n", "x"], timeout=20)
        assert r.returncode == 1     # no master: no listener on fd 3


def test_root_instance_chroots_and_drops_privileges():
    if not harness.is_root():
        print("skipped: needs root")
        return
    import pwd
    postern_uid = None
    with Instance(as_root=True, start=False) as inst:
        daemon = harness.build_echo_daemon(os.path.join(inst.tmp, "echo-daemon"))
        eport = harness.free_port()
        inst.append_master_cf("127.0.0.1:%d inet n - y - - %s\n" % (eport, daemon))
        r = inst.postern("start")
        assert r.returncode == 0, r.stderr
        postern_uid = pwd.getpwnam("postern").pw_uid
        c = Client(eport)
        pid = c.greeting()
        with open("/proc/%d/status" % pid) as f:
            status = f.read()
        uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", status, re.M).groups()
        assert all(int(u) == postern_uid for u in uids), uids
        assert os.readlink("/proc/%d/root" % pid) == os.path.realpath(os.path.join(inst.dir, "spool"))
        assert c.say("QUIT") == "221 bye"
        c.close()
        # the master itself stays root
        with open("/proc/%d/status" % inst.master_pid()) as f:
            assert re.search(r"^Uid:\s+0\s", f.read(), re.M)


def test_init_refuses_existing_and_check_passes():
    with Instance(start=False) as inst:
        r = inst.run([harness.POSTERN, "init", inst.dir])
        assert r.returncode == 1 and "already exists" in r.stderr, r.stderr
        r = inst.postern("check")
        assert r.returncode == 0, r.stderr
        # a malformed inet address in master.cf is an error naming the line
        inst.append_master_cf("[::1:25 inet n - n - - smtpd")
        r = inst.postern("check")
        assert r.returncode == 1
        assert re.search(r"master\.cf, line \d+: .*\[::1:25", r.stderr), r.stderr
        with open(os.path.join(inst.dir, "master.cf")) as f:
            text = f.read()
        with open(os.path.join(inst.dir, "master.cf"), "w") as f:
            f.write(text.replace("[::1:25 inet n - n - - smtpd", ""))
        with open(os.path.join(inst.dir, "main.cf"), "a") as f:
            f.write("this line is broken\n")
        r = inst.postern("check")
        assert r.returncode == 1
        assert "main.cf, line" in r.stderr, r.stderr


def test_smtp_session_survives_reload_and_stop_closes_port():
    if not os.access(os.path.join(harness.BUILD, "libexec", "smtpd"), os.X_OK):
        print("skipped: smtpd not built")
        return
    with Instance() as inst:
        s = inst.smtp()
        try:
            code, _ = s.ehlo("client.example")
            assert code == 250
            assert inst.postern("reload").returncode == 0
            inst.wait_log(r"reload -- version")
            assert s.noop()[0] == 250            # the session was not cut
            with inst.smtp() as s2:                # new sessions get new children
                assert s2.noop()[0] == 250
            assert s.quit()[0] == 221
        finally:
            s.close()
        assert inst.postern("stop").returncode == 0
        assert not harness.port_accepts(inst.port)
        assert not harness.port_accepts(inst.submission_port)
        assert inst.pids() == []


def _qmgr_in_master_cf(inst, enabled):
    path = os.path.join(inst.dir, "master.cf")
    with open(path) as f:
        text = f.read()
    new = re.sub(r"^#?(qmgr\s+unix\s)", r"\1" if enabled else r"#\1", text, flags=re.M)
    assert new != text
    with open(path, "w") as f:
        f.write(new)


def _queued(inst, *queues):
    found = []
    for q in queues:
        for _, _, files in os.walk(os.path.join(inst.dir, "spool", q)):
            found += [n for n in files if not n.startswith(".")]
    return found


def _reload(inst):
    before = len(re.findall(r"reload -- version", inst.log()))
    assert inst.postern("reload").returncode == 0
    wait_for(lambda: len(re.findall(r"reload -- version", inst.log())) > before, 10,
             what="the reload")


def test_wakeup_services_are_woken_at_start_and_after_reload():
    """qmgr's wakeup interval is 300 s; mail queued while it was not
    running is delivered at once when it comes (back), not 300 s later."""
    if not os.access(os.path.join(harness.BUILD, "libexec", "local"), os.X_OK):
        print("skipped: local not built")
        return
    msg = "From: s@localhost\r\nSubject: %s\r\n\r\nhello\r\n"
    with Instance(conf={"local_recipient_maps": ""}) as inst:
        _qmgr_in_master_cf(inst, False)
        _reload(inst)
        with inst.smtp() as s:
            assert s.sendmail("s@localhost", ["alice@localhost"], msg % "one") == {}
        wait_for(lambda: _queued(inst, "incoming"), 10, what="the message in incoming/")
        _qmgr_in_master_cf(inst, True)
        _reload(inst)
        wait_for(lambda: len(inst.mailbox("alice")) == 1, 30, what="delivery after reload")

        # The same at start: queued while qmgr was not there, then a restart.
        _qmgr_in_master_cf(inst, False)
        _reload(inst)
        with inst.smtp() as s:
            assert s.sendmail("s@localhost", ["alice@localhost"], msg % "two") == {}
        wait_for(lambda: _queued(inst, "incoming"), 10, what="the message in incoming/")
        assert inst.postern("stop").returncode == 0
        _qmgr_in_master_cf(inst, True)
        assert inst.postern("start").returncode == 0
        wait_for(lambda: len(inst.mailbox("alice")) == 2, 30, what="delivery after start")
        assert sorted(m.count("Subject: two") for m in inst.mailbox("alice")) == [0, 1]


def test_killed_qmgr_is_back_within_seconds():
    """Nothing connects to qmgr per message any more (it watches incoming/),
    so a SIGKILLed qmgr must come back by the master's own wakeup, one
    second after it died -- not the 300 s wakeup interval later."""
    if not os.access(os.path.join(harness.BUILD, "libexec", "local"), os.X_OK):
        print("skipped: local not built")
        return
    with Instance(conf={"local_recipient_maps": ""}) as inst:
        qmgr = lambda: [p for p in inst.pids() if daemon_name(p) == "qmgr"]

        def send_and_wait(n, what):
            with inst.smtp() as s:
                assert s.sendmail("s@localhost", ["alice@localhost"],
                                  "Subject: %d\r\n\r\nx\r\n" % n) == {}
            wait_for(lambda: len(inst.mailbox("alice")) == n, 10, what=what)

        # A delivery first: this qmgr is up and has told the master so (a
        # child killed before that counts as a bad start and is throttled).
        send_and_wait(1, "the first delivery")
        for n in (2, 3):
            old = wait_for(qmgr, 20, what="a qmgr")[0]
            os.kill(old, signal.SIGKILL)
            inst.wait_log(r"qmgr pid %d killed by signal 9" % old, 10)
            # 300 s is the wakeup interval: only the early wakeup explains this.
            send_and_wait(n, "delivery after qmgr was killed")
            assert old not in qmgr()
        assert "throttling" not in inst.log()


def test_stop_lets_qmgr_record_a_running_delivery():
    """`postern stop` while local runs a delivery that takes longer than
    the master's 5 s grace for ordinary children: qmgr drains (waits for
    the result, qmgr_drain_time_limit 30 s), the master waits for it
    instead of SIGKILLing, the result is recorded and the message is gone
    from the queue -- the next start does not deliver it again."""
    if not os.access(os.path.join(harness.BUILD, "libexec", "local"), os.X_OK):
        print("skipped: local not built")
        return
    with Instance(conf={"local_recipient_maps": ""}) as inst:
        out = os.path.join(inst.tmp, "out")
        os.mkdir(out)
        os.chmod(out, 0o777)
        with open(os.path.join(inst.dir, "aliases"), "a") as f:
            f.write('slow: "|touch %s/started; sleep 8; cat >> %s/copies"\n' % (out, out))
        with inst.smtp() as s:
            assert s.sendmail("s@localhost", ["slow@localhost"],
                              "Subject: once\r\n\r\nhello\r\n") == {}
        wait_for(lambda: os.path.exists(os.path.join(out, "started")), 30,
                 what="the delivery command to start")
        r = inst.postern("stop")
        assert r.returncode == 0, r.stderr
        assert inst.pids() == []
        log = inst.log()
        assert "waiting up to" in log, log
        assert "did not stop: killing it" not in log, log
        assert re.search(r"to=<slow@localhost>, relay=local, .*status=sent", log), log
        assert _queued(inst, "incoming", "active", "deferred") == []
        with open(os.path.join(out, "copies")) as f:
            assert f.read().count("Subject: once") == 1
        # The next start finds nothing to deliver again (the queue that the
        # new qmgr loads at start is empty).
        os.unlink(os.path.join(out, "started"))
        assert inst.postern("start").returncode == 0
        listing = inst.postern("queue")
        assert listing.returncode == 0 and "Mail queue is empty" in listing.stdout, \
            listing.stdout + listing.stderr
        assert not os.path.exists(os.path.join(out, "started"))
        with open(os.path.join(out, "copies")) as f:
            assert f.read().count("Subject: once") == 1


def test_stop_kills_a_delivery_that_outlasts_the_drain_limit():
    """The wait for a draining qmgr is bounded: with qmgr_drain_time_limit
    2s and a delivery that hangs, qmgr gives up, the master SIGKILLs the
    agent, `postern stop` returns well before the hang ends, and the
    message stays queued for the next start (never lost)."""
    if not os.access(os.path.join(harness.BUILD, "libexec", "local"), os.X_OK):
        print("skipped: local not built")
        return
    with Instance(conf={"local_recipient_maps": "",
                        "qmgr_drain_time_limit": "2s"}) as inst:
        out = os.path.join(inst.tmp, "out")
        os.mkdir(out)
        os.chmod(out, 0o777)
        with open(os.path.join(inst.dir, "aliases"), "a") as f:
            f.write('hang: "|touch %s/started; sleep 120"\n' % out)
        with inst.smtp() as s:
            assert s.sendmail("s@localhost", ["hang@localhost"],
                              "Subject: hang\r\n\r\nhello\r\n") == {}
        wait_for(lambda: os.path.exists(os.path.join(out, "started")), 30,
                 what="the delivery command to start")
        t0 = time.monotonic()
        r = inst.postern("stop", timeout=100)
        elapsed = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        assert elapsed < 60, elapsed
        wait_for(lambda: inst.pids() == [], 30, what="no process left")
        log = inst.log()
        assert "terminating with 1 delivery request(s) still running" in log, log
        assert _queued(inst, "incoming", "active", "deferred"), log


def test_reloads_right_after_forks_keep_the_master():
    """A reload SIGTERMs every child, also one forked a moment ago.  Such
    a child must not run the master's signal handler (it would write the
    SIGTERM into the master's signal pipe and stop the whole system): the
    master and its listener survive many reloads that follow new
    connections at once."""
    if not os.access(os.path.join(harness.BUILD, "libexec", "smtpd"), os.X_OK):
        print("skipped: smtpd not built")
        return
    with Instance() as inst:
        master = inst.master_pid()
        assert master
        for i in range(40):
            socket.create_connection(("127.0.0.1", inst.port), timeout=10).close()
            _reload(inst)
            assert harness.port_accepts(inst.port), "listener gone after reload %d" % i
        assert inst.master_pid() == master
        assert "terminating on signal" not in inst.log()


def test_make_run_comes_up_accepts_a_message_and_stops_on_ctrl_c():
    """`make run` = build + tools/run-instance.sh: a fresh instance in the
    foreground that takes a first message as printed, delivers it where it
    says, and stops cleanly on Ctrl-C (SIGINT to its process group)."""
    if not os.access(os.path.join(harness.BUILD, "libexec", "local"), os.X_OK):
        print("skipped: local not built")
        return
    import pwd
    import smtplib
    import tempfile
    tmp = tempfile.mkdtemp(prefix="postern-test-run-")
    os.chmod(tmp, 0o755)
    run_dir = os.path.join(tmp, "run")
    port = harness.free_ports(2)
    env = dict(os.environ, BUILD=harness.BUILD, RUN_DIR=run_dir, PORT=str(port),
               POSTERN_ETC_DIR=harness.ETC)
    out_path = os.path.join(tmp, "terminal")
    with open(out_path, "w") as terminal:
        proc = subprocess.Popen(["sh", os.path.join(harness.SRC, "tools", "run-instance.sh")],
                                env=env, stdout=terminal, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=harness.SRC)
    try:
        wait_for(lambda: harness.port_accepts(port), 20, what="make run's smtp port")
        user = pwd.getpwuid(os.getuid()).pw_name
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.sendmail("me@localhost", ["%s@localhost" % user],
                       "Subject: hello\n\nfirst message\n")
        new = os.path.join(run_dir, "mail", user, "new")
        wait_for(lambda: os.path.isdir(new) and os.listdir(new), 20, what="the first message")
        with open(os.path.join(new, os.listdir(new)[0])) as f:
            assert "first message" in f.read()
        os.killpg(proc.pid, signal.SIGINT)          # Ctrl-C at the terminal
        proc.wait(30)
        # (the shell itself may die of the SIGINT; the master must stop cleanly)
        wait_for(lambda: not _procs_mentioning(run_dir), 20, what="no process left")
        with open(out_path, errors="replace") as f:
            text = f.read()
        assert "send a first message" in text and "%s/mail/%s/new/" % (run_dir, user) in text
        assert re.search(r"postern/master\[\d+\]: terminating on signal 2", text), text
        assert "did not stop" not in text
        assert not harness.port_accepts(port)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in _procs_mentioning(run_dir):
            os.kill(pid, signal.SIGKILL)
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


def _procs_mentioning(needle):
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                if needle.encode() in f.read():
                    found.append(int(name))
        except OSError:
            pass
    return found


def test_check_names_unknown_parameters_and_bad_directories():
    with Instance(start=False) as inst:
        spool = os.path.join(inst.dir, "spool")
        # a typo in main.cf is a warning naming file and line, not an error
        with open(os.path.join(inst.dir, "main.cf"), "a") as f:
            f.write("mydestinaton = example.com\n")
        r = inst.postern("check")
        assert r.returncode == 0, r.stderr
        assert re.search(r"warning: .*main\.cf, line \d+: unknown parameter mydestinaton",
                         r.stderr), r.stderr
        # a world-writable spool is an error naming the directory
        mode = os.stat(spool).st_mode & 0o7777
        os.chmod(spool, mode | 0o002)
        r = inst.postern("check")
        assert r.returncode == 1, r.stderr
        assert re.search(r"error: .*%s.*writable" % re.escape(spool), r.stderr), r.stderr
        os.chmod(spool, mode)
        assert inst.postern("check").returncode == 0
        # a spool that is not there
        inst.edit_main_cf({"queue_directory": os.path.join(inst.dir, "nowhere")})
        r = inst.postern("check")
        assert r.returncode == 1
        assert "nowhere" in r.stderr, r.stderr


def test_config_dir_from_the_environment():
    """POSTERN_CONFIG_DIR selects the instance as -c does; -c wins."""
    with Instance() as inst:
        env = dict(os.environ, POSTERN_CONFIG_DIR=inst.dir, POSTERN_ETC_DIR=harness.ETC)

        def postern(*args):
            return subprocess.run(inst._as_user([harness.POSTERN] + list(args)),
                                  capture_output=True, text=True, timeout=60, env=env,
                                  cwd="/")

        r = postern("status")
        assert r.returncode == 0, r.stderr
        assert "PID: %d" % inst.master_pid() in r.stderr, r.stderr
        other = os.path.join(inst.tmp, "other")
        r = inst.run([harness.POSTERN, "init", other, "--port", str(harness.free_ports(2))])
        assert r.returncode == 0, r.stderr
        r = postern("-c", other, "status")
        assert r.returncode == 1 and "not running" in r.stderr, r.stderr
        r = postern("stop")
        assert r.returncode == 0, r.stderr
        assert inst.master_pid() == 0


def test_watchdog_ends_a_stuck_child_and_spares_a_busy_one():
    """daemon_timeout: a child that makes progress (a line every 0.5 s,
    each one patting the watchdog) outlives the timeout; one stuck in a
    request ("HANG") is ended by its watchdog, the master says so, and
    the next client gets a new child at once (no throttling)."""
    with Instance(start=False) as inst:
        daemon = harness.build_echo_daemon(os.path.join(inst.tmp, "echo-daemon"))
        eport = harness.free_port()
        inst.append_master_cf("127.0.0.1:%d inet n - n - 1 %s -o daemon_timeout=2s\n"
                              % (eport, daemon))
        r = inst.postern("start")
        assert r.returncode == 0, r.stderr
        c = Client(eport)
        first = c.greeting()
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < 4.5:         # more than twice the timeout
            assert c.say("ping %d" % n) == "250 ping %d" % n
            n += 1
            time.sleep(0.5)
        c.sock.sendall(b"HANG\r\n")
        c.sock.settimeout(30)
        t0 = time.monotonic()
        assert c.file.readline() == b"", "the stuck child must be ended"
        assert time.monotonic() - t0 < 25
        c.close()
        inst.wait_log(r"warning: process \S*echo-daemon pid %s killed by its watchdog: "
                      r"busy longer than daemon_timeout" % first)
        c = Client(eport)
        second = c.greeting()
        assert second != first
        assert c.say("QUIT") == "221 bye"
        c.close()
        assert "throttling" not in inst.log()


def test_watchdog_spares_an_idle_qmgr_and_a_talking_smtpd():
    """With daemon_timeout = 2s for the whole instance, qmgr waiting for
    work for longer than that is not ended (its watchdog is off while it
    polls), and an SMTP session of 5 s that sends a command every 0.5 s
    (each one patting smtpd's watchdog) delivers its message."""
    if not os.access(os.path.join(harness.BUILD, "libexec", "qmgr"), os.X_OK):
        return
    with Instance(conf={"daemon_timeout": "2s", "local_recipient_maps": ""}) as inst:
        def qmgrs():
            return [p for p in inst.pids() if daemon_name(p) == "qmgr"]
        qmgr = wait_for(qmgrs, 20, what="qmgr")
        time.sleep(5)       # shows that nothing happens: qmgr idle past its timeout
        assert qmgrs() == qmgr
        with inst.smtp() as s:
            started = time.monotonic()
            while time.monotonic() - started < 5:
                assert s.noop()[0] == 250
                time.sleep(0.5)
            s.sendmail("a@localhost", ["alice@localhost"],
                       "Subject: watchdog\r\n\r\nstill here\r\n")
        inst.wait_log(r"to=<alice@localhost>, relay=local, .*status=sent")
        assert "watchdog" not in inst.log()


def test_watchdog_pats_cost_no_system_calls():
    """smtpd pats its watchdog per command, and the skeleton no longer
    disarms it after each client (the idle wait keeps it when it outlasts
    max_idle): with strace following the master and the running smtpd, 5
    sessions of 20 NOOPs make at most one timer_settime per smtpd process
    (the arming at its first client), not one per command and two per
    session (over 100 before)."""
    if not shutil.which("strace"):
        return
    with Instance() as inst:
        smtpds = lambda: [p for p in inst.pids() if daemon_name(p) == "smtpd"]
        with inst.smtp() as s:          # a first session: an smtpd armed
            assert s.noop()[0] == 250
        traced = [inst.master_pid()] + smtpds()
        out = os.path.join(inst.tmp, "strace.out")
        argv = ["strace", "-f", "-qq", "-e", "trace=timer_settime", "-o", out]
        for pid in traced:
            argv += ["-p", str(pid)]
        st = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            def attached():
                for pid in traced:
                    with open("/proc/%d/status" % pid) as f:
                        if re.search(r"^TracerPid:\s+0$", f.read(), re.M):
                            return False
                return True
            wait_for(attached, 10, what="strace to attach")
            for _ in range(5):
                with inst.smtp() as s:
                    for _ in range(20):
                        assert s.noop()[0] == 250
        finally:
            st.send_signal(signal.SIGINT)
            err = st.communicate(timeout=30)[1]
        with open(out) as f:
            calls = [line for line in f if "timer_settime(" in line]
        per_pid = {}
        for line in calls:
            pid = line.split()[0]
            per_pid[pid] = per_pid.get(pid, 0) + 1
        assert all(n <= 1 for n in per_pid.values()), (calls, err)
        assert len(calls) <= 3, calls
