"""Helpers to drive the real local delivery agent without master or qmgr.

local runs in the skeleton's standalone mode (`local -S -c DIR`): it reads
one delivery request (ipc.h record format) on stdin and writes its replies
on stdout.  The queue file it reads is written here in the queue.h record
format, so these tests need no cleanup daemon.

Instance layout made by LocalDir: DIR/main.cf, DIR/spool (queue_directory,
with active/), DIR/mail/ (mail_spool_directory, Maildir), DIR/aliases
(texthash), DIR/maillog.  run_local(..., as_nobody=True) runs local as
user nobody, which is what a non-root instance looks like; the directory
tree is then given to nobody.
"""
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_dir():
    return os.environ.get("POSTERN_BUILD", os.path.join(ROOT, "build"))


def local_binary():
    return os.path.join(build_dir(), "libexec", "local")


NOBODY = pwd.getpwnam("nobody")


# ---- ipc.h records ---------------------------------------------------------

def encode_record(attrs):
    out = bytearray()
    for name, value in attrs:
        if isinstance(value, str):
            value = value.encode()
        out += b"%s %d\n" % (name.encode(), len(value)) + value + b"\n"
    out += b"\n"
    return bytes(out)


def decode_records(data):
    """Parse a stream of records into a list of lists of (name, value)."""
    records, cur, i = [], [], 0
    while i < len(data):
        if data[i:i + 1] == b"\n":
            records.append(cur)
            cur = []
            i += 1
            continue
        nl = data.index(b"\n", i)
        name, length = data[i:nl].split(b" ")
        length = int(length)
        value = data[nl + 1:nl + 1 + length]
        assert data[nl + 1 + length:nl + 2 + length] == b"\n", "missing LF after value"
        cur.append((name.decode(), value.decode(errors="replace")))
        i = nl + 2 + length
    assert not cur, "truncated record"
    return records


# ---- queue files (queue.h format) -------------------------------------------

def _rec(rtype, data):
    if isinstance(data, str):
        data = data.encode()
    return b"%s%d:" % (rtype.encode(), len(data)) + data + b"\n"


def queue_file_bytes(sender, rcpts, lines, attrs=()):
    head = _rec("V", "1") + _rec("T", "%d 0" % int(time.time())) + _rec("S", sender)
    for a in attrs:
        head += _rec("A", a)
    for r in rcpts:
        head += _rec("R", "-" + r)
    body = b"".join(_rec("L", line) for line in lines)
    size = sum(len(line.encode() if isinstance(line, str) else line) + 2 for line in lines)
    m_len = len(_rec("M", "0" * 20))
    x_offset = len(head) + m_len + len(body)
    return head + _rec("M", "%020d" % x_offset) + body + _rec("X", str(size)) + _rec("E", "")


_qid_counter = [0]


def new_qid():
    _qid_counter[0] += 1
    t = time.time()
    return "%09X%05X%X" % (int(t), int((t % 1) * 1e6) & 0xFFFFF, 0x100 + _qid_counter[0])


# ---- a throwaway configuration directory ------------------------------------

class LocalDir:
    def __init__(self, maildir=True, extra=None, aliases=""):
        self.dir = tempfile.mkdtemp(prefix="postern-local-")
        os.chmod(self.dir, 0o755)
        self.spool = os.path.join(self.dir, "spool")
        self.mail = os.path.join(self.dir, "mail")
        os.makedirs(os.path.join(self.spool, "active"))
        os.makedirs(self.mail)
        os.makedirs(os.path.join(self.dir, "forward"))
        self.aliases = os.path.join(self.dir, "aliases")
        self.log = os.path.join(self.dir, "maillog")
        conf = {
            "queue_directory": self.spool,
            "mail_spool_directory": self.mail + ("/" if maildir else ""),
            "alias_maps": "texthash:" + self.aliases,
            "maillog_file": self.log,
            "myhostname": "test.example",
            "mydomain": "example",
            "myorigin": "test.example",
            "default_privs": "nobody",
            "deliver_lock_delay": "1s",
            "forward_path": os.path.join(self.dir, "forward", "$user.forward"),
        }
        conf.update(extra or {})
        with open(os.path.join(self.dir, "main.cf"), "w") as f:
            for k, v in conf.items():
                f.write("%s = %s\n" % (k, v))
        self.write_aliases(aliases)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def write_aliases(self, text):
        with open(self.aliases, "w") as f:
            f.write(text)

    def queue(self, sender, rcpts, lines, attrs=()):
        qid = new_qid()
        with open(os.path.join(self.spool, "active", qid), "wb") as f:
            f.write(queue_file_bytes(sender, rcpts, lines, attrs))
        return qid

    def give_to_nobody(self):
        for dirpath, dirnames, filenames in os.walk(self.dir):
            os.chown(dirpath, NOBODY.pw_uid, NOBODY.pw_gid)
            for fn in filenames:
                os.chown(os.path.join(dirpath, fn), NOBODY.pw_uid, NOBODY.pw_gid)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


def _as_nobody():
    os.setgroups([])
    os.setgid(NOBODY.pw_gid)
    os.setuid(NOBODY.pw_uid)


def delivery_request(qid, sender, rcpts, orcpts=None):
    attrs = [("request", "deliver"), ("queue_id", qid), ("queue_file", "active/" + qid),
             ("nexthop", "localhost"), ("sender", sender), ("arrival", str(int(time.time())))]
    for i, r in enumerate(rcpts):
        if orcpts and orcpts[i]:
            attrs.append(("orcpt", orcpts[i]))
        attrs.append(("offset", "0"))
        attrs.append(("rcpt", r))
    return attrs


def start_local(ld, request_attrs, as_nobody=True, overrides=(), more=(), wrapper=(),
                env_extra=None):
    """Start local -S with one end of a socketpair as its stdin (the
    skeleton serves a socket on stdin directly); returns (process, socket).
    more: further requests (attribute lists, or raw bytes) written on the
    same connection after the first, as qmgr pipelines them.  wrapper: a
    command line to run local under (strace ...); env_extra: more
    environment (LD_PRELOAD=...)."""
    args = list(wrapper) + [local_binary(), "-S", "-c", ld.dir]
    for o in overrides:
        args += ["-o", o]
    if as_nobody and os.geteuid() == 0:
        ld.give_to_nobody()
    env = {"PATH": "/usr/bin:/bin", "POSTERN_CONFIG_DIR": ld.dir}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    env.update(env_extra or {})
    ours, theirs = socket.socketpair()
    p = subprocess.Popen(args, stdin=theirs, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=env,
                         preexec_fn=_as_nobody if (as_nobody and os.geteuid() == 0) else None)
    theirs.close()
    ours.sendall(encode_record(request_attrs))
    for extra in more:
        ours.sendall(extra if isinstance(extra, bytes) else encode_record(extra))
    ours.shutdown(socket.SHUT_WR)
    return p, ours


def finish_local(started, timeout=60):
    p, sock = started
    sock.settimeout(timeout)
    out = bytearray()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        out += chunk
    sock.close()
    err = p.stderr.read()
    p.wait(timeout=timeout)
    p.stderr.close()
    return decode_records(bytes(out)), err.decode(errors="replace")


def run_local(ld, request_attrs, as_nobody=True, overrides=(), timeout=60):
    """Run one delivery; returns (list of reply dicts, done seen, stderr)."""
    p = start_local(ld, request_attrs, as_nobody, overrides)
    records, err = finish_local(p, timeout)
    replies = [dict(r) for r in records]
    done = bool(replies) and replies[-1].get("done") == "1"
    if done:
        replies = replies[:-1]
    return replies, done, err


def deliver(ld, sender, rcpts, lines, as_nobody=True, overrides=(), orcpts=None):
    qid = ld.queue(sender, rcpts, lines)
    replies, done, err = run_local(ld, delivery_request(qid, sender, rcpts, orcpts),
                                   as_nobody, overrides)
    assert done, "no done record; stderr: %s; log: %s" % (err, read(ld.log))
    return replies


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def maildir_messages(path):
    """Contents of the messages in a Maildir's new/, oldest first."""
    new = os.path.join(path, "new")
    if not os.path.isdir(new):
        return []
    names = sorted(os.listdir(new), key=lambda n: os.stat(os.path.join(new, n)).st_mtime_ns)
    return [read(os.path.join(new, n)) for n in names]


def wait_for(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class FakeCleanup:
    """A stand-in for cleanup on DIR/spool/private/cleanup that records one
    enqueue conversation per connection and answers with `final`."""

    def __init__(self, ld, final=(("status", "0"),)):
        import threading
        self.path = os.path.join(ld.spool, "private", "cleanup")
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o777)
        self.sock.listen(5)
        self.sock.settimeout(30)
        self.final = list(final)
        self.sessions = []
        self.count = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.count += 1
                qid = "FAKE%04d" % self.count
                conn.sendall(encode_record([("queue_id", qid)]))
                buf = bytearray()
                records = []
                while not records or dict(records[-1]).get("end") != "1":
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                    while b"\n\n" in buf or buf.startswith(b"\n"):
                        # decode complete records from the front
                        try:
                            recs, used = _decode_prefix(bytes(buf))
                        except ValueError:
                            break
                        if not recs:
                            break
                        records += recs
                        del buf[:used]
                self.sessions.append(records)
                conn.sendall(encode_record(self.final + [("queue_id", qid)]))

    def close(self):
        self.sock.close()


def _decode_prefix(data):
    """Decode as many complete records as data holds: (records, bytes used)."""
    records, cur, i, used = [], [], 0, 0
    while i < len(data):
        if data[i:i + 1] == b"\n":
            records.append(cur)
            cur = []
            i += 1
            used = i
            continue
        nl = data.find(b"\n", i)
        if nl < 0:
            break
        name, length = data[i:nl].split(b" ")
        length = int(length)
        if nl + 2 + length > len(data):
            break
        cur.append((name.decode(), data[nl + 1:nl + 1 + length].decode(errors="replace")))
        i = nl + 2 + length
    return records, used
