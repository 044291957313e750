"""qmgr_rig.py - run the real qmgr alone, with fake neighbours.

QmgrRig builds a throwaway instance (main.cf, master.cf, spool), starts
the real qmgr binary as master would (listening socket public/qmgr on
fd 3, status pipe on fd 4), and offers:
  - write_message(): a queue file in incoming/ in the real format
    (common/queue.h), as cleanup would commit it;
  - FakeAgent: a delivery agent on private/NAME that answers each
    request with results chosen by a Python function and records what
    qmgr asked;
  - FakeCleanup: private/cleanup that accepts qmgr's notices (the enqueue
    conversation) and keeps them for inspection;
  - wakeup()/flush() on public/qmgr, and log polling with deadlines.
Every wait polls a condition until a deadline; nothing sleeps and hopes.
"""
import os
import re
import resource
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def build_dir():
    return os.environ.get("POSTERN_BUILD", os.path.join(ROOT, "build"))


# ---- IPC codec (common/ipc.h wire format) ------------------------------

def ipc_encode(pairs):
    out = bytearray()
    for name, value in pairs:
        if isinstance(value, str):
            value = value.encode()
        elif isinstance(value, int):
            value = str(value).encode()
        out += b"%s %d\n" % (name.encode(), len(value)) + value + b"\n"
    return bytes(out + b"\n")


class IpcReader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("peer closed")
        self.buf += chunk

    def _line(self):
        while b"\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def record(self):
        """List of (name, bytes) pairs of one record."""
        pairs = []
        while True:
            line = self._line()
            if line == b"":
                return pairs
            name, length = line.split(b" ")
            value = self._exact(int(length))
            if self._exact(1) != b"\n":
                raise ValueError("missing LF after value")
            pairs.append((name.decode(), value))


def rec_get(pairs, name):
    for n, v in pairs:
        if n == name:
            return v.decode(errors="replace")
    return None


def ipc_call(path, pairs, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    s.sendall(ipc_encode(pairs))
    reply = IpcReader(s).record()
    s.close()
    return reply


# ---- queue files (common/queue.h format) -------------------------------

def _rec(t, data):
    if isinstance(data, str):
        data = data.encode()
    return t.encode() + str(len(data)).encode() + b":" + data + b"\n"


def queue_file_bytes(sender, rcpts, content_lines, attrs=(), arrival=None):
    """rcpts: list of address or dict(addr=, notify=, orcpt=, done=)."""
    sec = int(arrival if arrival is not None else time.time())
    head = _rec("V", "1") + _rec("T", "%d %d" % (sec, 0)) + _rec("S", sender)
    for name, value in attrs:
        head += _rec("A", "%s=%s" % (name, value))
    for r in rcpts:
        if isinstance(r, str):
            r = {"addr": r}
        if r.get("notify"):
            head += _rec("N", r["notify"])
        if r.get("orcpt"):
            head += _rec("O", r["orcpt"])
        head += _rec("R", ("D" if r.get("done") else "-") + r["addr"])
    body = b""
    size = 0
    for line in content_lines:
        body += _rec("L", line)
        size += len(line.encode()) + 2
    # M's data is the 20-digit offset of the X record.
    m_len = len(_rec("M", "0" * 20))
    x_offset = len(head) + m_len + len(body)
    data = head + _rec("M", "%020d" % x_offset) + body + _rec("X", str(size)) + _rec("E", "")
    return data, sec


# ---- the rig -------------------------------------------------------------

class QmgrRig:
    def __init__(self, main_cf_extra="", transports=("local", "smtp", "relay"),
                 master_extra="", transport_map=None):
        self.dir = tempfile.mkdtemp(prefix="qmgr-rig-")
        self.conf = os.path.join(self.dir, "etc")
        self.spool = os.path.join(self.dir, "spool")
        self.maillog = os.path.join(self.dir, "maillog")
        os.makedirs(self.conf)
        for d in ("incoming", "active", "hold", "requeue", "corrupt", "maildrop", "private",
                  "public"):
            os.makedirs(os.path.join(self.spool, d))
        for d in ("deferred", "defer", "bounce", "trace"):
            for h in "0123456789ABCDEF":
                os.makedirs(os.path.join(self.spool, d, h))
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write("queue_directory = %s\n" % self.spool)
            f.write("maillog_file = %s\n" % self.maillog)
            f.write("myhostname = mx.test.example\n")
            f.write("mydestination = $myhostname, localhost\n")
            f.write("daemon_directory = %s/libexec\n" % build_dir())
            f.write(main_cf_extra)
            if transport_map is not None:
                path = os.path.join(self.conf, "transport")
                with open(path, "w") as t:
                    t.write(transport_map)
                f.write("transport_maps = texthash:%s\n" % path)
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write("qmgr unix n - n 300 1 qmgr\n")
            f.write("cleanup unix n - n - 0 cleanup\n")
            for t in transports:
                f.write("%s unix - - n - - %s\n" % (t, t))
            f.write(master_extra)
        self.proc = None
        self.listener = None
        self.agents = []
        self.seq = 0

    # -- process --
    def start(self, nofile=None, env_extra=None):
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(os.path.join(self.spool, "public", "qmgr"))
        self.listener.listen(64)
        self.status_r, status_w = os.pipe()
        # Park both above 3 and 4 so the dup2s below cannot clobber them.
        # Non-inheritable: only the dup2'd 3 and 4 survive exec.
        lfd = os.dup2(self.listener.fileno(), 200, inheritable=False)
        sfd = os.dup2(status_w, 201, inheritable=False)

        def child_fds():
            os.dup2(lfd, 3)
            os.dup2(sfd, 4)
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        env = dict(os.environ, POSTERN_CONFIG_DIR=self.conf)
        env.update(env_extra or {})
        self.proc = subprocess.Popen(
            [os.path.join(build_dir(), "libexec", "qmgr"), "-n", "qmgr", "-t", "unix",
             "-c", self.conf],
            preexec_fn=child_fds, close_fds=False, env=env,
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "stderr"), "a"))
        os.close(status_w)
        os.close(lfd)
        os.close(sfd)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.listener:
            self.listener.close()
            os.unlink(os.path.join(self.spool, "public", "qmgr"))
            self.listener = None

    def restart(self):
        self.stop()
        return self.start()

    def close(self):
        self.stop()
        for a in self.agents:
            a.close()
        if os.environ.get("KEEP") == "1":
            print("rig kept in", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def write_map(self, name, text):
        """A texthash: table in the config directory; returns its spec."""
        path = os.path.join(self.conf, name)
        with open(path, "w") as f:
            f.write(text)
        return "texthash:" + path

    # -- queue --
    def write_message(self, sender, rcpts, body="hello\n", headers=None, attrs=(),
                      arrival=None, queue="incoming", commit="rename"):
        """commit="rename": written as incoming/.tmp-* and renamed into
        place (as cleanup does); "link": written outside incoming/ and
        linked in (the directory sees a new name, as with an O_TMPFILE file
        committed by linkat)."""
        self.seq += 1
        hdrs = headers or ["From: <%s>" % (sender or "MAILER-DAEMON"),
                           "To: <%s>" % (rcpts[0] if isinstance(rcpts[0], str) else rcpts[0]["addr"]),
                           "Subject: test %d" % self.seq,
                           "Message-Id: <%d.%f@test>" % (self.seq, time.time())]
        lines = hdrs + [""] + body.rstrip("\n").split("\n")
        data, sec = queue_file_bytes(sender, rcpts, lines, attrs, arrival)
        tmp_dir = self.spool if commit == "link" else os.path.join(self.spool, "incoming")
        tmp = os.path.join(tmp_dir, ".tmp-test-%d" % self.seq)
        with open(tmp, "wb") as f:
            f.write(data)
        ino = os.stat(tmp).st_ino
        usec = int((time.time() % 1) * 1e6)
        qid = "%09X%05X%X" % (sec, usec, ino)
        if queue == "incoming" and commit == "link":
            os.link(tmp, os.path.join(self.spool, "incoming", qid))
            os.unlink(tmp)
        elif queue == "incoming":
            os.rename(tmp, os.path.join(self.spool, "incoming", qid))
        else:
            os.rename(tmp, self.path(queue, qid))
        return qid

    def path(self, queue, qid):
        if queue in ("deferred", "defer", "bounce", "trace"):
            return os.path.join(self.spool, queue, qid[13], qid)
        return os.path.join(self.spool, queue, qid)

    def where(self, qid):
        """Queue directory holding qid, or None."""
        for q in ("incoming", "active", "deferred", "hold", "requeue", "corrupt"):
            if os.path.exists(self.path(q, qid)):
                return q
        return None

    def inotify_fds(self):
        """How many inotify instances the running qmgr holds."""
        fd_dir = "/proc/%d/fd" % self.proc.pid
        n = 0
        for name in os.listdir(fd_dir):
            try:
                n += os.readlink(os.path.join(fd_dir, name)) == "anon_inode:inotify"
            except OSError:
                pass
        return n

    def wakeup(self):
        return ipc_call(os.path.join(self.spool, "public", "qmgr"), [("request", "wakeup")])

    def flush(self):
        return ipc_call(os.path.join(self.spool, "public", "qmgr"), [("request", "flush")])

    # -- log --
    def log(self):
        try:
            with open(self.maillog, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, timeout=30):    # generous: see harness.WAIT_TIMEOUT
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = rx.search(self.log())
            if m:
                return m
            time.sleep(0.05)
        raise AssertionError("log never matched %r; log:\n%s\nstderr:\n%s"
                             % (pattern, self.log(), self.stderr()))

    def stderr(self):
        try:
            with open(os.path.join(self.dir, "stderr")) as f:
                return f.read()
        except FileNotFoundError:
            return ""


def wait_for(cond, timeout=30, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class _Server:
    """A UNIX socket server running handle(conn) per connection in threads."""

    def __init__(self, path, backlog=64, accept_gate=None):
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(backlog)
        self.closed = False
        self.lock = threading.Lock()
        self.accept_gate = accept_gate
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        if self.accept_gate is not None:
            self.accept_gate.wait(30)       # let connections pile up first
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        try:
            conn.settimeout(30)
            self.handle(conn)
        except (EOFError, OSError, ValueError):
            pass
        finally:
            conn.close()

    def close(self):
        self.closed = True
        try:
            self.sock.close()
            os.unlink(self.path)
        except OSError:
            pass


def format_delay(s):
    """Postfix's delay numbers, as common/delivery_log.c writes them."""
    if not s >= 0.005:
        return "0"
    if s < 10:
        return ("%.2f" % s).rstrip("0").rstrip(".")
    return "%.0f" % s


class FakeAgent(_Server):
    """private/NAME: decide(rcpt, request) -> (status, dsn, relay, reason).
    gate: optional threading.Event every request waits on before answering,
    or a Semaphore each request takes one unit of.
    Like a real agent it serves the requests of one connection in order
    until EOF (qmgr pipelines up to TRANSPORT_destination_pipeline_limit);
    per_conn=N answers N requests and then closes the connection, as an
    agent that dies would.  conns: the queue ids asked on each connection.
    Like a real agent it logs each outcome line itself ("postern/NAME[PID]:
    QID: to=<...>, relay=..., delay=..., delays=a/b/c/d, ...") in the rig's
    maillog, from the times qmgr put in the request (arrival_us, active_us,
    request_us); a status a real agent never sends is not logged."""

    def __init__(self, rig, name, decide, gate=None, backlog=64, accept_gate=None,
                 per_conn=None):
        super().__init__(os.path.join(rig.spool, "private", name), backlog, accept_gate)
        rig.agents.append(self)
        self.rig = rig
        self.name = name
        self.decide = decide
        self.gate = gate
        self.per_conn = per_conn
        self.conns = []         # [queue ids asked on that connection, in order]
        self.requests = []
        self.active = 0
        self.max_active = 0
        self.completed = 0      # answers given (counted just before sending)
        self.arrivals = []      # (active, completed) as each request arrived

    def handle(self, conn):
        reader = IpcReader(conn)
        asked = []
        with self.lock:
            self.conns.append(asked)
        while self.per_conn is None or len(asked) < self.per_conn:
            if not reader.buf and not self._more(conn):
                return                          # EOF between requests
            req = reader.record()
            with self.lock:
                asked.append(rec_get(req, "queue_id"))
            self._answer(conn, req)

    @staticmethod
    def _more(conn):
        """False at a clean EOF before the next request."""
        try:
            return conn.recv(1, socket.MSG_PEEK) != b""
        except OSError:
            return False

    def _answer(self, conn, req):
        with self.lock:
            self.requests.append(req)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.arrivals.append((self.active, self.completed))
        counted = True
        try:
            if isinstance(self.gate, threading.Event):
                self.gate.wait(30)
            elif self.gate is not None:         # a Semaphore: one release per answer
                self.gate.acquire(timeout=30)
            out = b""
            for name, value in req:
                if name == "rcpt":
                    status, dsn, relay, reason = self.decide(value.decode(), req)
                    self._log(req, value.decode(), status, dsn, relay, reason)
                    out += ipc_encode([("rcpt", value), ("status", status), ("dsn", dsn),
                                       ("relay", relay), ("reason", reason)])
            out += ipc_encode([("done", "1")])
            # Out of the count before qmgr can read the answer: counted
            # after, qmgr's next request (another thread) could be counted
            # first, and `active` would exceed what qmgr really had running.
            with self.lock:
                self.active -= 1
                self.completed += 1
                counted = False
            conn.sendall(out)
        finally:
            if counted:
                with self.lock:
                    self.active -= 1

    def rcpts(self):
        with self.lock:
            return [v.decode() for r in self.requests for n, v in r if n == "rcpt"]

    def _log(self, req, rcpt, status, dsn, relay, reason):
        if status not in ("sent", "deferred", "bounced"):
            return
        times = {}
        for key in ("arrival_us", "active_us", "request_us"):
            v = rec_get(req, key)
            times[key] = int(v) / 1e6 if v is not None else time.time()
        now = time.time()
        a, b, c = times["arrival_us"], times["active_us"], times["request_us"]
        line = "%s localhost postern/%s[%d]: %s: to=<%s>, relay=%s, delay=%s, " \
               "delays=%s/%s/%s/%s, dsn=%s, status=%s (%s)\n" % (
                   time.strftime("%b %e %H:%M:%S"), self.name, os.getpid(),
                   rec_get(req, "queue_id"), rcpt, relay or "none", format_delay(now - a),
                   format_delay(b - a), format_delay(c - b), "0", format_delay(now - c),
                   dsn, status, reason)
        fd = os.open(self.rig.maillog, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


class FakeCleanup(_Server):
    """private/cleanup: accepts notices; messages = list of dict(envelope, text)."""

    def __init__(self, rig, fail=False):
        super().__init__(os.path.join(rig.spool, "private", "cleanup"))
        rig.agents.append(self)
        self.messages = []
        self.fail = fail
        self.n = 0

    def handle(self, conn):
        with self.lock:
            self.n += 1
            qid = "FAKE%05d" % self.n
        if self.fail:
            conn.sendall(ipc_encode([("status", "4"), ("dsn", "4.3.0"), ("reason", "fake failure")]))
            return
        conn.sendall(ipc_encode([("queue_id", qid)]))
        rd = IpcReader(conn)
        env = rd.record()
        text = b""
        while True:
            r = rd.record()
            if rec_get(r, "end") is not None:
                break
            for n, v in r:
                if n == "data":
                    text += v
        with self.lock:
            self.messages.append({"envelope": env, "text": text.decode(errors="replace"),
                                  "queue_id": qid})
        conn.sendall(ipc_encode([("status", "0"), ("queue_id", qid)]))
