"""Integration tests for the cleanup daemon.

cleanup runs for real, in the skeleton's standalone mode (-S: one enqueue
conversation on stdin, which is one end of a socketpair), against a fresh
spool; the test speaks the enqueue conversation of doc/internals.md as
smtpd or pickup would, then reads the queue file cleanup wrote and checks
every record.  A fake qmgr listening on public/qmgr records wakeups.
"""
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("POSTERN_BUILD", os.path.join(TOP, "build"))
CLEANUP = os.path.join(BUILD, "libexec", "cleanup")
QUEUES = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt",
          "defer", "bounce", "trace", "private", "public")


# --- the two wire formats ----------------------------------------------------

def ipc_encode(attrs):
    out = bytearray()
    for name, value in attrs:
        if isinstance(value, str):
            value = value.encode()
        out += b"%s %d\n" % (name.encode(), len(value)) + value + b"\n"
    return bytes(out + b"\n")


class IpcReader:
    def __init__(self, sock, timeout=10):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("peer closed")
        self.buf += data

    def _line(self):
        while b"\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def record(self):
        attrs = []
        while True:
            line = self._line()
            if line == b"":
                return attrs
            name, length = line.split(b" ")
            value = self._take(int(length))
            assert self._take(1) == b"\n"
            attrs.append((name.decode(), value.decode(errors="replace")))


def rec_get(rec, name):
    for n, v in rec:
        if n == name:
            return v
    return None


def read_queue_file(path):
    """Parse a queue file into [(type, bytes)], checking the framing."""
    with open(path, "rb") as f:
        data = f.read()
    recs = []
    pos = 0
    while pos < len(data):
        m = re.compile(rb"([A-Z])(0|[1-9][0-9]{0,8}):").match(data, pos)
        assert m, "bad record at offset %d: %r" % (pos, data[pos:pos + 20])
        start = m.end()
        end = start + int(m.group(2))
        assert data[end:end + 1] == b"\n", "record at %d not LF-terminated" % pos
        recs.append((m.group(1).decode(), data[start:end], pos))
        pos = end + 1
    return recs


class QueueFile:
    def __init__(self, path):
        self.path = path
        self.recs = read_queue_file(path)
        types = [t for t, _, _ in self.recs]
        assert types[0] == "V" and self.recs[0][1] == b"1"
        assert types[1] == "T"
        assert types[2] == "S"
        assert types[-1] == "E", "no E record: incomplete file"
        m_index = types.index("M")
        x_index = types.index("X")
        # M holds the offset of X
        assert int(self.recs[m_index][1]) == self.recs[x_index][2]
        self.sender = self.recs[2][1].decode()
        self.attrs = dict(r[1].decode().split("=", 1) for r in self.recs if r[0] == "A")
        self.lines = [r[1] for r in self.recs[m_index + 1:x_index]]
        assert all(r[0] == "L" for r in self.recs[m_index + 1:x_index])
        self.size = int(self.recs[x_index][1])
        assert self.size == sum(len(l) + 2 for l in self.lines)

        def rcpts(recs):
            out, notify, orcpt = [], None, None
            for t, d, _ in recs:
                if t == "N":
                    notify = d.decode()
                elif t == "O":
                    orcpt = d.decode()
                elif t == "R":
                    assert d[:1] in (b"-", b"D")
                    out.append((d[1:].decode(), orcpt, notify))
                    notify = orcpt = None
            return out
        self.rcpts_before = rcpts(self.recs[:m_index])
        self.rcpts_after = rcpts(self.recs[x_index + 1:])
        self.rcpts = [r[0] for r in self.rcpts_before + self.rcpts_after]

    def text(self):
        return b"\n".join(self.lines).decode(errors="replace")

    def headers(self):
        out = []
        for line in self.lines:
            if line == b"":
                break
            if line[:1] in (b" ", b"\t") and out:
                out[-1] += "\n" + line.decode()
            else:
                out.append(line.decode())
        return out

    def header(self, name):
        found = [h for h in self.headers() if h.lower().startswith(name.lower() + ":")]
        return found


# --- a spool and a fake qmgr ---------------------------------------------------

class FakeQmgr:
    """Accepts on public/qmgr, records each request, replies status=0."""

    def __init__(self, path):
        self.requests = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                rec = IpcReader(conn, 5).record()
                self.requests.append(rec)
                conn.sendall(ipc_encode([("status", "0")]))
            except Exception:
                pass
            finally:
                conn.close()

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


class Spool:
    def __init__(self, conf=None, files=None, qmgr=True, tmpfs_size=None):
        self.dir = tempfile.mkdtemp(prefix="postern-cleanup-test.")
        self.spool = os.path.join(self.dir, "spool")
        self.mounted = False
        if tmpfs_size:
            os.makedirs(self.spool)
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d" % tmpfs_size,
                                "tmpfs", self.spool], capture_output=True)
            self.mounted = r.returncode == 0
        for q in QUEUES:
            os.makedirs(os.path.join(self.spool, q), mode=0o700)
        for name, text in (files or {}).items():
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(text)
        settings = {
            "queue_directory": self.spool,
            "maillog_file": os.path.join(self.dir, "maillog"),
            "myhostname": "mx.example.org",
            "mydomain": "example.org",
            "myorigin": "example.org",
            "mydestination": "$myhostname, localhost",
            "ipc_timeout": "20s",
        }
        settings.update(conf or {})
        with open(os.path.join(self.dir, "main.cf"), "w") as f:
            for k, v in settings.items():
                f.write("%s = %s\n" % (k, str(v).replace("DIR", self.dir)))
        self.qmgr = FakeQmgr(os.path.join(self.spool, "public", "qmgr")) if qmgr else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.qmgr:
            self.qmgr.close()
        if self.mounted:
            subprocess.run(["umount", self.spool], check=True)
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        try:
            with open(os.path.join(self.dir, "maillog"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def files(self, queue):
        """Every entry in a queue directory, dot-files included."""
        out = []
        for root, _, names in os.walk(os.path.join(self.spool, queue)):
            out += [os.path.join(root, n) for n in names]
        return out

    def queue_file(self, qid):
        for q in ("incoming", "hold", "active", "deferred"):
            for path in self.files(q):
                if os.path.basename(path) == qid:
                    return QueueFile(path)
        raise AssertionError("queue file %s not found; log:\n%s" % (qid, self.log()))

    def start(self):
        parent, child = socket.socketpair()
        proc = subprocess.Popen([CLEANUP, "-S", "-c", self.dir], stdin=child,
                                stdout=subprocess.DEVNULL,
                                env=dict(os.environ, POSTERN_CONFIG_DIR=self.dir))
        child.close()
        return proc, parent, IpcReader(parent)

    def enqueue(self, envelope, content, chunk=65536, end=True):
        """One conversation; returns (first reply, final reply)."""
        proc, sock, reader = self.start()
        try:
            first = reader.record()
            if rec_get(first, "queue_id") is None:
                return first, None
            sock.sendall(ipc_encode([("request", "enqueue")] + list(envelope)))
            if isinstance(content, str):
                content = content.encode()
            for i in range(0, len(content), chunk):
                sock.sendall(ipc_encode([("data", content[i:i + chunk])]))
            if not end:
                return first, None
            sock.sendall(ipc_encode([("end", "1")]))
            final = reader.record()
            return first, final
        finally:
            sock.close()
            assert proc.wait(timeout=20) == 0, "cleanup exited %s; log:\n%s" % (
                proc.returncode, self.log())

    def qmgr_requests_so_far(self):
        """What the fake qmgr received from connections made until now: a
        marker connection of our own, accepted after every earlier one
        (one listen queue, accepted in order), closes the list."""
        marker = [("request", "marker-%d" % time.monotonic_ns())]
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(os.path.join(self.spool, "public", "qmgr"))
        s.sendall(ipc_encode(marker))
        s.close()
        assert self.wait_for(lambda: marker in self.qmgr.requests)
        got = list(self.qmgr.requests)
        self.qmgr.requests.clear()
        return got[:got.index(marker)]

    def wait_for(self, fn, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if fn():
                return True
            time.sleep(0.05)
        return fn()


def ok(final):
    assert final is not None and rec_get(final, "status") == "0", final
    return rec_get(final, "queue_id")


SMTP_ENV = [("origin", "smtp"), ("sender", "alice@example.com"),
            ("client_name", "client.example.net"), ("client_addr", "192.0.2.7"),
            ("helo_name", "client.example.net"), ("protocol", "ESMTP"),
            ("rcpt", "bob@example.org")]
RECEIVED = ("Received: from client.example.net (client.example.net [192.0.2.7])\n"
            "\tby mx.example.org (postern) with ESMTP id X\n"
            "\tfor <bob@example.org>; Wed, 25 Nov 2026 19:27:05 +0000\n")


# --- tests ------------------------------------------------------------------------

def test_basic_message_is_queued_with_added_headers():
    with Spool() as sp:
        content = RECEIVED + "From: Alice <alice@example.com>\nSubject: hello\n\nbody line\n.dot\n"
        first, final = sp.enqueue(SMTP_ENV, content)
        qid = rec_get(first, "queue_id")
        assert re.fullmatch(r"[0-9A-F]{15,}", qid), qid
        assert ok(final) == qid
        qf = sp.queue_file(qid)
        assert qf.path.endswith("/incoming/" + qid)
        assert oct(os.stat(qf.path).st_mode & 0o777) == "0o600"
        assert qf.sender == "alice@example.com"
        assert qf.attrs["client_addr"] == "192.0.2.7"
        assert qf.attrs["origin"] == "smtp"
        assert qf.attrs["protocol"] == "ESMTP"
        assert qf.rcpts == ["bob@example.org"]
        # arrival time in T matches the id
        t = [r for r in qf.recs if r[0] == "T"][0][1].decode().split()
        assert int(t[0]) == int(qid[:9], 16) and int(t[1]) == int(qid[9:14], 16)
        heads = qf.headers()
        assert heads[0].startswith("Received: from client.example.net")
        assert "\tfor <bob@example.org>" in heads[0]
        assert qf.header("Message-Id") == ["Message-Id: <%s@mx.example.org>" % qid]
        date = qf.header("Date")
        assert len(date) == 1 and re.fullmatch(
            r"Date: \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}( \(.*\))?", date[0]), date
        # added headers come at the end of the header section, body intact
        text = qf.text()
        assert text.endswith("Subject: hello\n%s\n%s\n\nbody line\n.dot" % (
            qf.header("Message-Id")[0], date[0])), text
        # nothing else left in incoming/ (no temp files)
        assert sp.files("incoming") == [qf.path]
        assert sp.wait_for(lambda: "%s: message-id=<%s@mx.example.org>" % (qid, qid) in sp.log())
        # qmgr watches incoming/ (qmgr_watch_incoming = yes): no wakeup
        assert sp.qmgr_requests_so_far() == []


def test_wakeup_sent_when_qmgr_does_not_watch_incoming():
    with Spool(conf={"qmgr_watch_incoming": "no"}) as sp:
        qid = ok(sp.enqueue(SMTP_ENV, "Subject: x\n\nbody\n")[1])
        assert sp.files("incoming")[0].endswith("/" + qid)
        assert sp.qmgr_requests_so_far() == [[("request", "wakeup")]]


def test_existing_message_id_and_date_are_kept():
    with Spool() as sp:
        content = "Message-ID: <abc@client>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nSubject: x\n\nhi\n"
        _, final = sp.enqueue(SMTP_ENV, content)
        qid = ok(final)
        qf = sp.queue_file(qid)
        assert qf.header("Message-Id") == ["Message-ID: <abc@client>"]
        assert len(qf.header("Date")) == 1
        assert sp.wait_for(lambda: "%s: message-id=<abc@client>" % qid in sp.log())


def test_local_submission_adds_from_and_qualifies_addresses():
    with Spool() as sp:
        env = [("origin", "pickup"), ("flags", "local"), ("sender", "jo"),
               ("fullname", "Jo Q. Public"), ("rcpt", "bob")]
        content = "To: bob, \"Smith, Ann\" <ann>, carl@elsewhere.example\nCc: dora (Dora D)\n" \
                  "Reply-To: jo\nSubject: local\n\nbody\n"
        _, final = sp.enqueue(env, content)
        qf = sp.queue_file(ok(final))
        assert qf.sender == "jo@example.org"
        assert qf.rcpts == ["bob@example.org"]
        assert qf.header("To") == ["To: bob@example.org, \"Smith, Ann\" <ann@example.org>, "
                                   "carl@elsewhere.example"]
        assert qf.header("Cc") == ["Cc: dora@example.org (Dora D)"]
        assert qf.header("Reply-To") == ["Reply-To: jo@example.org"]
        assert qf.header("From") == ["From: \"Jo Q. Public\" <jo@example.org>"]


def test_remote_headers_are_not_qualified():
    with Spool() as sp:
        content = "To: bob\nFrom: someone\n\nbody\n"
        _, final = sp.enqueue(SMTP_ENV, content)
        qf = sp.queue_file(ok(final))
        assert qf.header("To") == ["To: bob"]
        assert qf.header("From") == ["From: someone"]


def test_local_submission_without_to_gets_undisclosed_recipients():
    with Spool() as sp:
        env = [("origin", "pickup"), ("flags", "local"), ("sender", "jo@example.org"),
               ("rcpt", "bob@example.org")]
        _, final = sp.enqueue(env, "Subject: s\n\nbody\n")
        qf = sp.queue_file(ok(final))
        assert qf.header("To") == ["To: undisclosed-recipients:;"]
        assert qf.header("From") == ["From: jo@example.org"]


def test_extract_recipients_and_remove_bcc():
    with Spool() as sp:
        env = [("origin", "pickup"), ("flags", "local,extract"), ("sender", "jo"),
               ("rcpt", "cmdline@example.net")]
        content = ("To: ann, Group: g1@example.net, g2@example.net;\n"
                   "Cc: \"Carl\" <carl@example.net>,\n\tann@example.org\n"
                   "Bcc: secret@example.net\nSubject: t\n\nbody\n")
        _, final = sp.enqueue(env, content)
        qf = sp.queue_file(ok(final))
        assert [r[0] for r in qf.rcpts_before] == ["cmdline@example.net"]
        # recipients from the headers follow the content; ann listed twice once
        assert [r[0] for r in qf.rcpts_after] == [
            "ann@example.org", "g1@example.net", "g2@example.net", "carl@example.net",
            "secret@example.net"]
        assert qf.header("Bcc") == []
        assert "secret" not in qf.text()


def test_extract_prefers_resent_headers():
    with Spool() as sp:
        env = [("origin", "pickup"), ("flags", "local,extract"), ("sender", "jo")]
        content = ("To: old@example.net\nResent-To: new@example.net\n"
                   "Resent-Bcc: hidden@example.net\n\nbody\n")
        _, final = sp.enqueue(env, content)
        qf = sp.queue_file(ok(final))
        assert qf.rcpts == ["new@example.net", "hidden@example.net"]
        assert qf.header("Resent-Bcc") == []


def test_no_recipients_is_rejected():
    with Spool() as sp:
        env = [("origin", "pickup"), ("flags", "local,extract"), ("sender", "jo")]
        _, final = sp.enqueue(env, "Subject: nobody\n\nbody\n")
        assert rec_get(final, "status") == "5"
        assert rec_get(final, "dsn") == "5.1.0"
        assert sp.files("incoming") == []


def test_duplicate_recipients_are_dropped():
    with Spool() as sp:
        env = [("origin", "smtp"), ("sender", "a@example.com"),
               ("rcpt", "bob@example.org"), ("rcpt", "bob@EXAMPLE.ORG"),
               ("notify", "NEVER"), ("rcpt", "bob@example.org"),
               ("orcpt", "rfc822;bob@example.org"), ("rcpt", "carol@example.org"),
               ("orcpt", "rfc822;bob@example.org"), ("rcpt", "carol@example.org")]
        _, final = sp.enqueue(env, "Subject: d\n\nx\n")
        qf = sp.queue_file(ok(final))
        assert qf.rcpts_before == [
            ("bob@example.org", None, None),
            ("bob@example.org", None, "NEVER"),
            ("carol@example.org", "rfc822;bob@example.org", None)]


def test_canonical_and_virtual_alias_rewriting():
    files = {
        "virtual": ("list@example.org  ann@example.org, ben@example.net\n"
                    "ann@example.org   ann@example.org, ann-archive@example.net\n"
                    "loop1@example.org loop2@example.org\n"
                    "loop2@example.org loop1@example.org\n"),
    }
    conf = {
        "sender_canonical_maps": "inline:{ alice@example.com=Alice.Smith@example.com }",
        "recipient_canonical_maps": "inline:{ @old.example=@example.org }",
        "virtual_alias_maps": "texthash:DIR/virtual",
        "virtual_alias_domains": "virt.example",
    }
    with Spool(conf=conf, files=files) as sp:
        env = [("origin", "smtp"), ("sender", "alice@example.com"),
               ("rcpt", "list@old.example"), ("rcpt", "loop1@example.org"),
               ("rcpt", "ben@example.net"), ("rcpt", "nobody@virt.example")]
        content = "From: alice@example.com\nTo: list@old.example\n\nbody\n"
        _, final = sp.enqueue(env, content)
        qid = ok(final)
        qf = sp.queue_file(qid)
        assert qf.sender == "Alice.Smith@example.com"
        assert qf.rcpts == ["ann@example.org", "ann-archive@example.net", "ben@example.net",
                            "loop1@example.org", "nobody@virt.example"]
        # canonical maps apply to headers too, virtual aliases do not
        assert qf.header("From") == ["From: Alice.Smith@example.com"]
        assert qf.header("To") == ["To: list@example.org"]
        assert sp.wait_for(lambda: re.search(
            r"warning: %s: virtual alias domain recipient <nobody@virt.example> has no mapping"
            % qid, sp.log()))


def test_automatic_bcc():
    conf = {"always_bcc": "archive",
            "sender_bcc_maps": "inline:{ alice@example.com=sent-copies@example.org }",
            "recipient_bcc_maps": "inline:{ bob@example.org=bob-copy@example.org }",
            "virtual_alias_maps": "inline:{ bob-copy@example.org=bob-archive@example.net }"}
    with Spool(conf=conf) as sp:
        env = [("origin", "smtp"), ("sender", "alice@example.com"),
               ("rcpt", "bob@example.org"), ("rcpt", "carol@example.org")]
        _, final = sp.enqueue(env, "Subject: bcc\n\nbody\n")
        qf = sp.queue_file(ok(final))
        # recipients first as given, each recipient's copy after it; BCC
        # copies ask for no notifications and are rewritten like any other
        assert qf.rcpts_before == [
            ("bob@example.org", None, None),
            ("bob-archive@example.net", None, "NEVER"),
            ("carol@example.org", None, None),
            ("archive@example.org", None, "NEVER"),
            ("sent-copies@example.org", None, "NEVER")]
        # no_address_mappings from the client turns all of it off
        env2 = env + [("flags", "no_address_mappings")]
        _, final = sp.enqueue(env2, "Subject: bcc\n\nbody\n")
        qf = sp.queue_file(ok(final))
        assert qf.rcpts == ["bob@example.org", "carol@example.org"]


def test_receive_override_options():
    conf = {"receive_override_options": "no_header_body_checks",
            "header_checks": "regexp:DIR/hc",
            "canonical_maps": "inline:{ bob@example.org=robert@example.org }"}
    with Spool(conf=conf, files={"hc": "/^Subject: reject me/ REJECT\n"}) as sp:
        _, final = sp.enqueue(SMTP_ENV, "Subject: reject me\n\nbody\n")
        qf = sp.queue_file(ok(final))
        assert qf.rcpts == ["robert@example.org"]       # mappings still on
        env = SMTP_ENV + [("flags", "no_address_mappings")]
        _, final = sp.enqueue(env, "Subject: reject me\nTo: bob@example.org\n\nbody\n")
        qf = sp.queue_file(ok(final))
        assert qf.rcpts == ["bob@example.org"]
        assert qf.header("To") == ["To: bob@example.org"]


def test_masquerading():
    conf = {"masquerade_domains": "!dev.example.com, example.com",
            "masquerade_exceptions": "root"}
    with Spool(conf=conf) as sp:
        env = [("origin", "smtp"), ("sender", "alice@host.example.com"),
               ("rcpt", "bob@mail.example.com")]
        content = ("From: Alice <alice@host.example.com>\n"
                   "To: bob@mail.example.com, root@host.example.com, eve@x.dev.example.com\n"
                   "\nbody\n")
        _, final = sp.enqueue(env, content)
        qf = sp.queue_file(ok(final))
        assert qf.sender == "alice@example.com"
        assert qf.rcpts == ["bob@mail.example.com"]     # envelope_recipient: not by default
        assert qf.header("From") == ["From: Alice <alice@example.com>"]
        assert qf.header("To") == ["To: bob@example.com, root@host.example.com, "
                                   "eve@x.dev.example.com"]


def test_virtual_alias_expansion_limit_defers():
    conf = {"virtual_alias_maps": "inline:{ { big@example.org = a@x.example, b@x.example, "
                                  "c@x.example } }",
            "virtual_alias_expansion_limit": "2"}
    with Spool(conf=conf) as sp:
        env = [("origin", "smtp"), ("sender", "a@example.com"), ("rcpt", "big@example.org")]
        _, final = sp.enqueue(env, "Subject: big\n\nbody\n")
        assert rec_get(final, "status") == "4", final
        assert "expansion size" in rec_get(final, "reason")
        assert sp.files("incoming") == []


HEADER_CHECKS = (
    "/^Subject: .*reject me/  REJECT go away\n"
    "/^Subject: .*default reject/  REJECT\n"
    "/^Subject: .*discard me/ DISCARD\n"
    "/^Subject: .*hold me/    HOLD needs review\n"
    "/^X-Drop:/               IGNORE\n"
    "/^X-Warn:/               WARN looked odd\n"
    "/^X-Prepend:/            PREPEND X-Added: yes\n"
    "/^X-Bad-Prepend:/        PREPEND not a header\n"
    "/^X-Folded: one two/     REJECT 4.7.0 folded header matched\n"
)


def checks_spool(**conf):
    return Spool(conf=dict({"header_checks": "regexp:DIR/header_checks",
                            "body_checks": "regexp:DIR/body_checks"}, **conf),
                 files={"header_checks": HEADER_CHECKS,
                        "body_checks": "/^bad body line$/ REJECT 5.7.2 body says no\n"
                                       "/^drop this line$/ IGNORE\n"})


def test_header_checks_reject():
    with checks_spool() as sp:
        first, final = sp.enqueue(SMTP_ENV, "Subject: please reject me\n\nbody\n")
        qid = rec_get(first, "queue_id")
        assert rec_get(final, "status") == "5"
        assert rec_get(final, "dsn") == "5.7.1"
        assert rec_get(final, "reason") == "go away"
        assert sp.files("incoming") == [] and sp.files("hold") == []
        line = ("%s: reject: header Subject: please reject me from client.example.net[192.0.2.7]; "
                "from=<alice@example.com> to=<bob@example.org> proto=ESMTP "
                "helo=<client.example.net>: 5.7.1 go away" % qid)
        assert sp.wait_for(lambda: line in sp.log()), sp.log()
        assert sp.qmgr.requests == []
        # a rejected message gets no message-id line
        assert "%s: message-id=" % qid not in sp.log()


def test_header_checks_default_reject_text_and_folded_match():
    with checks_spool() as sp:
        _, final = sp.enqueue(SMTP_ENV, "Subject: a default reject\n\nbody\n")
        assert rec_get(final, "reason") == "Message content rejected"
        assert sp.wait_for(lambda: ": 5.7.1 message content rejected" in sp.log())
        # a folded header is matched unfolded; 4.x.x makes it temporary
        _, final = sp.enqueue(SMTP_ENV, "X-Folded: one\n two\n\nbody\n")
        assert rec_get(final, "status") == "4"
        assert rec_get(final, "dsn") == "4.7.0"


def test_header_checks_discard():
    with checks_spool() as sp:
        first, final = sp.enqueue(SMTP_ENV, "Subject: discard me\n\nbody\n")
        assert rec_get(final, "status") == "0"
        assert rec_get(final, "discarded") == "1"
        assert sp.files("incoming") == [] and sp.files("hold") == []
        assert sp.wait_for(lambda: "%s: discard: header Subject: discard me" %
                           rec_get(first, "queue_id") in sp.log())


def test_header_checks_hold():
    # qmgr not watching incoming/: cleanup would wake it for a queued message
    with checks_spool(qmgr_watch_incoming="no") as sp:
        _, final = sp.enqueue(SMTP_ENV, "Subject: hold me\n\nbody\n")
        qid = ok(final)
        assert rec_get(final, "held") == "1"
        assert sp.files("incoming") == []
        qf = sp.queue_file(qid)
        assert "/hold/" in qf.path
        assert sp.wait_for(lambda: re.search(r"%s: hold: header Subject: hold me from "
                                             r".*: needs review" % qid, sp.log()))
        assert sp.qmgr_requests_so_far() == []


def test_header_checks_ignore_warn_prepend():
    with checks_spool() as sp:
        content = "X-Drop: secret\nX-Warn: hmm\nX-Prepend: 1\nX-Bad-Prepend: 2\nSubject: fine\n\nbody\n"
        _, final = sp.enqueue(SMTP_ENV, content)
        qid = ok(final)
        qf = sp.queue_file(qid)
        assert qf.header("X-Drop") == []
        assert qf.header("X-Warn") == ["X-Warn: hmm"]
        heads = qf.headers()
        assert heads.index("X-Added: yes") + 1 == heads.index("X-Prepend: 1")
        assert heads.index("X-Bad-Prepend: 2") == heads.index("X-Prepend: 1") + 1
        assert "not a header" not in qf.text()
        assert sp.wait_for(lambda: "%s: warning: header X-Warn: hmm from" % qid in sp.log())


def test_body_checks():
    with checks_spool() as sp:
        _, final = sp.enqueue(SMTP_ENV, "Subject: b\n\nok line\nbad body line\n")
        assert rec_get(final, "status") == "5"
        assert rec_get(final, "dsn") == "5.7.2"
        assert rec_get(final, "reason") == "body says no"
        # header-looking lines in the body are body lines
        _, final = sp.enqueue(SMTP_ENV, "Subject: b\n\nSubject: reject me\ndrop this line\nend\n")
        qf = sp.queue_file(ok(final))
        assert qf.text().endswith("\n\nSubject: reject me\nend")


def test_message_size_limit():
    with Spool(conf={"message_size_limit": "2000"}) as sp:
        _, final = sp.enqueue(SMTP_ENV, "Subject: big\n\n" + ("x" * 80 + "\n") * 30, chunk=100)
        assert rec_get(final, "status") == "5"
        assert rec_get(final, "dsn") == "5.3.4"
        assert rec_get(final, "reason") == "Message size exceeds fixed limit"
        assert sp.files("incoming") == []
        # just under the limit is fine: size counts CRLF line ends
        body = "Subject: s\n\n" + ("y" * 98 + "\n") * 19   # 12 + 19*100 = 1914 bytes
        _, final = sp.enqueue(SMTP_ENV, body)
        qf = sp.queue_file(ok(final))
        assert qf.size > 1914


def test_return_path_removed_and_hop_limit():
    with Spool(conf={"hopcount_limit": "3"}) as sp:
        _, final = sp.enqueue(SMTP_ENV, "Return-Path: <forged@example.net>\nSubject: r\n\nbody\n")
        qf = sp.queue_file(ok(final))
        assert qf.header("Return-Path") == []
        _, final = sp.enqueue(SMTP_ENV, "Received: a\nReceived: b\nDelivered-To: c\nReceived: d\n\nx\n")
        assert rec_get(final, "status") == "5"
        assert rec_get(final, "dsn") == "5.4.6"


def test_body_without_blank_line_gets_one():
    with Spool() as sp:
        _, final = sp.enqueue(SMTP_ENV, "Subject: s\nthis is body\nmore\n")
        qf = sp.queue_file(ok(final))
        text = qf.text()
        assert re.search(r"Subject: s\nMessage-Id: <.*>\nDate: .*\n\nthis is body\nmore$", text), text


def test_no_final_newline_and_empty_message():
    with Spool() as sp:
        _, final = sp.enqueue(SMTP_ENV, "Subject: s\n\nlast line without newline")
        qf = sp.queue_file(ok(final))
        assert qf.lines[-1] == b"last line without newline"
        _, final = sp.enqueue(SMTP_ENV, "")
        qf = sp.queue_file(ok(final))
        assert [h.split(":")[0] for h in qf.headers()] == ["Message-Id", "Date"]


def test_long_lines_kept_whole_up_to_one_mebibyte():
    with Spool(conf={"message_size_limit": "0"}) as sp:
        long_line = "a" * 5000
        huge = "b" * (1024 * 1024 * 2 + 10)
        content = "Subject: long\n\n%s\n%s\nend\n" % (long_line, huge)
        _, final = sp.enqueue(SMTP_ENV, content, chunk=60000)
        qf = sp.queue_file(ok(final))
        body = qf.lines[qf.lines.index(b"") + 1:]
        assert body[0] == long_line.encode()
        assert [len(l) for l in body[1:4]] == [1024 * 1024, 1024 * 1024, 10]
        assert body[4] == b"end"


def test_header_size_limit_leaves_rest_uninspected():
    with Spool(conf={"header_size_limit": "200", "header_checks": "regexp:DIR/hc"},
               files={"hc": "/^Subject: late/ REJECT\n"}) as sp:
        content = "X-A: " + "a" * 150 + "\nX-B: " + "b" * 100 + "\n\tfold\nSubject: late\n\nbody\n"
        _, final = sp.enqueue(SMTP_ENV, content)
        qid = ok(final)      # Subject: late was past the limit: not checked
        qf = sp.queue_file(qid)
        heads = qf.headers()
        assert heads[0].startswith("X-A: ") and heads[1] == "X-B: " + "b" * 100 + "\n\tfold"
        assert heads[2] == "Subject: late"
        assert heads[3].startswith("Message-Id: ")
        assert sp.wait_for(lambda: "%s: header section exceeds header_size_limit" % qid in sp.log())


def test_client_disconnect_mid_data_leaves_nothing():
    with Spool() as sp:
        first, final = sp.enqueue(SMTP_ENV, "Subject: s\n\n" + "x" * 100000, chunk=1000, end=False)
        qid = rec_get(first, "queue_id")
        assert final is None
        # enqueue() waited for cleanup to exit
        assert sp.files("incoming") == [], sp.files("incoming")
        assert sp.wait_for(lambda: "%s: client went away before end of message" % qid in sp.log())
        assert sp.qmgr.requests == []


def test_protocol_errors_leave_nothing():
    with Spool() as sp:
        proc, sock, reader = sp.start()
        try:
            reader.record()
            sock.sendall(ipc_encode([("request", "something"), ("sender", "x@y")]))
            final = reader.record()
            assert rec_get(final, "status") == "4"
        finally:
            sock.close()
            proc.wait(timeout=20)
        proc, sock, reader = sp.start()
        try:
            reader.record()
            sock.sendall(ipc_encode([("request", "enqueue"), ("sender", "x@y"), ("rcpt", "a@b")]))
            sock.sendall(ipc_encode([("bogus", "1")]))
            try:
                reader.record()
            except EOFError:
                pass
        finally:
            sock.close()
            proc.wait(timeout=20)
        # a malformed ipc record
        proc, sock, reader = sp.start()
        try:
            reader.record()
            sock.sendall(b"request 7\nenqueue\nBAD NAME 1\nx\n\n")
        finally:
            sock.close()
            proc.wait(timeout=20)
        # an attribute holding a line break cannot reach the queue file
        proc, sock, reader = sp.start()
        try:
            reader.record()
            sock.sendall(ipc_encode([("request", "enqueue"), ("sender", "x@y"),
                                     ("helo_name", "evil\nR5:-root"), ("rcpt", "a@b")]))
            final = reader.record()
            assert rec_get(final, "status") == "4"
        finally:
            sock.close()
            proc.wait(timeout=20)
        assert sp.files("incoming") == []


def test_disk_full_is_a_temporary_error_and_leaves_nothing():
    with Spool(tmpfs_size=128 * 1024) as sp:
        if not sp.mounted:
            print("  (skipped: cannot mount a small tmpfs here; needs root)")
            return
        first, final = sp.enqueue(SMTP_ENV, "Subject: big\n\n" + ("z" * 99 + "\n") * 3000,
                                  chunk=65536)
        assert rec_get(final, "status") == "4", final
        assert rec_get(final, "dsn") == "4.3.1"
        assert rec_get(final, "reason") == "Insufficient system storage"
        assert sp.files("incoming") == []
        # and once there is room again, mail flows
        _, final = sp.enqueue(SMTP_ENV, "Subject: small\n\nbody\n")
        sp.queue_file(ok(final))


def test_stale_temporary_files_are_purged_at_start():
    with Spool(conf={"ipc_timeout": "10s"}) as sp:
        stale = os.path.join(sp.spool, "incoming", ".tmp-999999-0")
        fresh = os.path.join(sp.spool, "incoming", ".tmp-999999-1")
        for path in (stale, fresh):
            with open(path, "w") as f:
                f.write("V1:1\n")
        old = time.time() - 3600
        os.utime(stale, (old, old))
        _, final = sp.enqueue(SMTP_ENV, "Subject: s\n\nbody\n")
        sp.queue_file(ok(final))
        assert not os.path.exists(stale)
        assert os.path.exists(fresh)


def _enqueue_traced(sp, env_extra=None):
    """One enqueue through cleanup under strace; returns (qid, trace lines)."""
    trace = os.path.join(sp.dir, "trace")
    parent, child = socket.socketpair()
    env = dict(os.environ)
    env.update(env_extra or {})
    proc = subprocess.Popen(["strace", "-f", "-s", "256", "-o", trace,
                             "-e", "trace=fsync,fdatasync,rename,renameat,renameat2,"
                             "link,linkat,openat,open,sendto,sendmsg,write",
                             CLEANUP, "-S", "-c", sp.dir], stdin=child,
                            stdout=subprocess.DEVNULL, env=env)
    child.close()
    reader = IpcReader(parent)
    try:
        qid = rec_get(reader.record(), "queue_id")
        parent.sendall(ipc_encode([("request", "enqueue")] + SMTP_ENV))
        parent.sendall(ipc_encode([("data", "Subject: s\n\nbody\n")]))
        parent.sendall(ipc_encode([("end", "1")]))
        assert rec_get(reader.record(), "status") == "0"
    finally:
        parent.close()
        assert proc.wait(timeout=30) == 0
    return qid, open(trace).read().splitlines()


def _first(lines, pattern, after=-1):
    for i, line in enumerate(lines):
        if i > after and re.search(pattern, line):
            return i
    raise AssertionError("no %s after line %d in:\n%s" % (pattern, after, "\n".join(lines)))


def _reply_after_dir_sync(lines, renamed):
    dir_open = _first(lines, r'open(at)?\(.*"incoming"', renamed)
    dir_fd = re.search(r"= (\d+)$", lines[dir_open]).group(1)
    dir_synced = _first(lines, r"f(data)?sync\(%s\)" % dir_fd, dir_open)
    replied = _first(lines, r"(sendto|sendmsg|write)\(.*status 1\\n0\\n", 0)
    assert replied > dir_synced, "\n".join(lines)


def test_reply_only_after_file_and_directory_are_synced():
    """The durability contract, seen in the system calls: the queue file is
    an unnamed file (O_TMPFILE) in incoming/ -- no .tmp file is ever
    created --; fsync of it, linkat straight to incoming/QID, fsync of it
    again (its link count), fsync of incoming/, and only then the
    status=0 reply."""
    if not shutil.which("strace"):
        print("  (skipped: strace not installed)")
        return
    with Spool() as sp:
        qid, lines = _enqueue_traced(sp)
        assert not [l for l in lines if ".tmp-" in l], "\n".join(lines)
        fd = re.search(r"= (\d+)$",
                       lines[_first(lines, r'open(at)?\(.*"incoming", O_RDWR\|.*O_TMPFILE')]).group(1)
        synced = _first(lines, r"f(data)?sync\(%s\)" % fd)
        linked = _first(lines, r'linkat\(%s, "", AT_FDCWD, "incoming/%s", AT_EMPTY_PATH\) = 0'
                        % (fd, qid), synced)
        _first(lines, r"f(data)?sync\(%s\) += 0" % fd, linked)
        _reply_after_dir_sync(lines, linked)
        sp.queue_file(qid)


def test_queue_file_without_o_tmpfile_uses_tmp_and_rename():
    """Without O_TMPFILE (an LD_PRELOAD shim, fail_tmpfile.c, makes the open
    fail with EOPNOTSUPP) cleanup writes incoming/.tmp-PID-N, fsyncs it,
    renames it to its id and fsyncs incoming/ before the reply."""
    if not shutil.which("strace"):
        print("  (skipped: strace not installed)")
        return
    with Spool() as sp:
        shim = os.path.join(sp.dir, "fail_tmpfile.so")
        subprocess.run(["cc", "-shared", "-fPIC", "-o", shim,
                        os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                     "fail_tmpfile.c"), "-ldl"], check=True)
        qid, lines = _enqueue_traced(sp, {"LD_PRELOAD": shim, "FAIL_TMPFILE": "open"})
        assert not [l for l in lines if "O_TMPFILE" in l], "\n".join(lines)  # the shim said no
        fd = re.search(r"= (\d+)$", lines[_first(lines, r'open(at)?\(.*"incoming/\.tmp-')]).group(1)
        synced = _first(lines, r"f(data)?sync\(%s\)" % fd)
        renamed = _first(lines, r'rename.*"incoming/\.tmp-[^"]*".*"incoming/%s"' % qid, synced)
        _reply_after_dir_sync(lines, renamed)
        sp.queue_file(qid)
        assert [n for n in os.listdir(os.path.join(sp.spool, "incoming"))] == [qid]


def _random_message(rng):
    """A random message as a list of lines (bytes, no LF), avoiding the
    header names cleanup acts on by itself."""
    import string
    names = [b"Subject", b"X-Thing", b"Comments", b"Keywords", b"X-" + bytes(
        rng.choice(string.ascii_letters.encode()) for _ in range(5))]
    lines = []
    for _ in range(rng.randint(0, 12)):
        kind = rng.random()
        if kind < 0.5:
            lines.append(rng.choice(names) + rng.choice([b":", b" :", b"\t:"])
                         + bytes(rng.randint(1, 255) for _ in range(rng.randint(0, 40))
                                 ).replace(b"\n", b" "))
        elif kind < 0.7:
            lines.append(rng.choice([b" ", b"\t"]) + b"folded " + b"v" * rng.randint(0, 3000))
        elif kind < 0.8:
            lines.append(b"")
        else:
            lines.append(bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 200))
                               ).replace(b"\n", b""))
    return lines


def _expected_lines(lines):
    """Where cleanup puts its added headers: at the end of the header
    section (first empty line, or first line that is neither a header nor
    a continuation; an empty line is inserted before such a body)."""
    header = re.compile(rb"[!-9;-~]+[ \t]*:")
    have = False
    for i, line in enumerate(lines):
        if line == b"":
            return lines[:i], lines[i:]
        if line[:1] in (b" ", b"\t") and have:
            continue
        if header.match(line):
            have = True
            continue
        return lines[:i], [b""] + lines[i:]
    return lines, []


def test_random_content_is_stored_exactly():
    """Random lines (binary, NUL, CR, long, folded, garbage) in random
    chunks: the queue file holds exactly the input lines, plus Message-Id
    and Date at the end of the header section (and the empty line cleanup
    inserts before a body that starts without one)."""
    import random
    rng = random.Random(20261125)
    # a small header_size_limit sends many sections down the uninspected
    # path too: the stored result must be the same
    with Spool(conf={"message_size_limit": "0", "header_size_limit": "2000"}) as sp:
        for n in range(60):
            lines = _random_message(rng)
            content = b"".join(line + b"\n" for line in lines)
            chunk = rng.choice([1, 7, 100, 4096, 65536])
            _, final = sp.enqueue(SMTP_ENV, content, chunk=chunk)
            qf = sp.queue_file(ok(final))
            head, body = _expected_lines(lines)
            got = qf.lines
            assert got[:len(head)] == head, (n, got[:len(head)], head)
            added = got[len(head):len(head) + 2]
            assert added[0].startswith(b"Message-Id: <") and added[1].startswith(b"Date: "), \
                (n, added)
            assert got[len(head) + 2:] == body, (n, got[len(head) + 2:][:5], body[:5])
            os.unlink(qf.path)


def test_qmgr_down_is_not_an_error():
    # the wakeup (sent only when qmgr does not watch incoming/) fails
    with Spool(conf={"qmgr_watch_incoming": "no"}, qmgr=False) as sp:
        _, final = sp.enqueue(SMTP_ENV, "Subject: s\n\nbody\n")
        sp.queue_file(ok(final))


def test_broken_table_refuses_mail_temporarily():
    with Spool(conf={"header_checks": "regexp:DIR/missing"}) as sp:
        first, final = sp.enqueue(SMTP_ENV, "Subject: s\n\nbody\n")
        assert rec_get(first, "status") == "4"
        assert rec_get(first, "dsn") == "4.3.5"
        assert sp.files("incoming") == []


# --- through a real instance: master runs cleanup on private/cleanup -----------

def instance_spool(inst):
    with open(os.path.join(inst.dir, "main.cf")) as f:
        for line in f:
            m = re.match(r"queue_directory\s*=\s*(\S+)", line)
            if m:
                return m.group(1).replace("$config_directory", inst.dir)
    raise AssertionError("no queue_directory in main.cf")


def enqueue_via_socket(path, envelope, content):
    """smtpd's side of the conversation over the daemon's UNIX socket."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    harness_deadline = time.monotonic() + 10
    while True:
        try:
            s.connect(path)
            break
        except OSError:
            if time.monotonic() > harness_deadline:
                raise
            time.sleep(0.05)
    try:
        reader = IpcReader(s, 20)
        first = reader.record()
        s.sendall(ipc_encode([("request", "enqueue")] + list(envelope)))
        s.sendall(ipc_encode([("data", content)]))
        s.sendall(ipc_encode([("end", "1")]))
        return first, reader.record()
    finally:
        s.close()


def check_instance(as_root):
    import harness
    files = "/^X-Hold-Me:/ HOLD held by test\n"
    with harness.Instance(as_root=as_root, wait_smtp=False) as inst:
        with open(os.path.join(inst.dir, "header_checks"), "w") as f:
            f.write(files)
        inst.edit_main_cf({"header_checks": "regexp:%s/header_checks" % inst.dir,
                           "sender_canonical_maps": "inline:{ a@example.com=b@example.com }"})
        r = inst.postern("reload")
        assert r.returncode == 0, r.stderr
        spool = instance_spool(inst)
        sock = os.path.join(spool, "private", "cleanup")
        inst.wait_for(lambda: os.path.exists(sock), what="private/cleanup")
        env = [("origin", "smtp"), ("sender", "a@example.com"), ("rcpt", "nobody@example.org"),
               ("client_name", "localhost"), ("client_addr", "127.0.0.1"), ("protocol", "ESMTP")]
        # reload replaces the cleanup processes; the new settings apply to
        # the first connection served by a new child
        first, final = enqueue_via_socket(sock, env, "X-Hold-Me: yes\nSubject: inst\n\nbody\n")
        qid = rec_get(final, "queue_id")
        assert rec_get(final, "status") == "0", final
        assert rec_get(final, "held") == "1", final
        path = os.path.join(spool, "hold", qid)
        qf = QueueFile(path)
        assert qf.sender == "b@example.com"
        assert qf.header("Message-Id") == ["Message-Id: <%s@%s>" % (qid, qf.header(
            "Message-Id")[0].split("@", 1)[1][:-1])]
        inst.wait_log(r"%s: hold: header X-Hold-Me: yes from localhost\[127\.0\.0\.1\]; "
                      r"from=<b@example.com> to=<nobody@example.org> proto=ESMTP: held by test"
                      % qid)
        inst.wait_log(r"postern/cleanup\[\d+\]: %s: message-id=<%s@" % (qid, qid))
        # the file belongs to the account cleanup runs as
        owner = "postern" if as_root else inst.user
        import pwd
        assert pwd.getpwuid(os.stat(path).st_uid).pw_name == owner


def test_instance_cleanup_on_private_socket():
    check_instance(as_root=False)


def test_instance_cleanup_chrooted_as_root():
    if os.geteuid() != 0:
        print("  (skipped: needs root)")
        return
    check_instance(as_root=True)


# --- end to end: smtplib -> smtpd -> cleanup -> queue file ----------------------

def have_smtpd():
    import harness
    if os.access(os.path.join(harness.BUILD, "libexec", "smtpd"), os.X_OK):
        return True
    print("  (skipped: smtpd not built)")
    return False


E2E_CHECKS = ("/^X-Test-Hold: yes/ HOLD kept for the test\n"
              "/^Subject: .*forbidden/ REJECT 5.7.1 Forbidden subject\n"
              "/^Subject: .*throw away/ DISCARD\n")


def e2e_instance():
    import harness
    inst = harness.Instance(conf={
        "header_checks": "regexp:$config_directory/header_checks",
        "sender_canonical_maps": "inline:{ alice@example.com=alice.smith@example.com }",
    }, start=False)
    inst.__enter__()
    try:
        with open(os.path.join(inst.dir, "header_checks"), "w") as f:
            f.write(E2E_CHECKS)
        os.chmod(os.path.join(inst.dir, "header_checks"), 0o644)
        r = inst.postern("start")
        assert r.returncode == 0, r.stderr + inst.log()
        import harness as h
        h.wait_for(lambda: h.port_accepts(inst.port), 10, what="the smtp port")
    except BaseException:
        inst.__exit__(None, None, None)
        raise
    return inst


def smtp_send(inst, sender, rcpts, msg):
    """MAIL/RCPT/DATA by hand; returns (code, text) of the DATA reply."""
    import smtplib
    with inst.smtp() as s:
        s.ehlo("client.example")
        code, text = s.mail(sender)
        assert code == 250, (code, text)
        for r in rcpts:
            code, text = s.rcpt(r)
            assert code == 250, (code, text)
        try:
            code, text = s.data(msg)
        except smtplib.SMTPDataError as e:
            code, text = e.smtp_code, e.smtp_error
        return code, text.decode() if isinstance(text, bytes) else text


def all_queue_files(spool):
    out = []
    for q in ("incoming", "active", "deferred", "hold"):
        for root, _, names in os.walk(os.path.join(spool, q)):
            out += names
    return out


def test_smtp_end_to_end_headers_rewriting_and_hold():
    if not have_smtpd():
        return
    inst = e2e_instance()
    try:
        spool = instance_spool(inst)
        msg = ("From: Alice <alice@example.com>\r\nTo: bob@example.org\r\n"
               "X-Test-Hold: yes\r\nSubject: end to end\r\n\r\n..leading dot\r\nbody\r\n")
        code, text = smtp_send(inst, "alice@example.com", ["bob@example.org"], msg)
        assert code == 250, (code, text)
        qid = re.search(r"queued as ([0-9A-F]+)", text).group(1)
        qf = QueueFile(os.path.join(spool, "hold", qid))
        assert qf.sender == "alice.smith@example.com"
        assert qf.rcpts == ["bob@example.org"]
        heads = qf.headers()
        assert heads[0].startswith("Received: from client.example"), heads[0]
        assert "id %s" % qid in heads[0]
        assert qf.header("From") == ["From: Alice <alice.smith@example.com>"]
        assert len(qf.header("Message-Id")) == 1 and qid in qf.header("Message-Id")[0]
        assert len(qf.header("Date")) == 1
        assert qf.text().endswith("\n\n..leading dot\nbody")   # smtplib stuffed, smtpd unstuffed
        inst.wait_log(r"%s: hold: header X-Test-Hold: yes from localhost\[127\.0\.0\.1\]; "
                      r"from=<alice.smith@example.com> to=<bob@example.org> proto=ESMTP "
                      r"helo=<client.example>: kept for the test" % qid)
    finally:
        inst.__exit__(None, None, None)


def test_smtp_end_to_end_reject_and_discard():
    if not have_smtpd():
        return
    inst = e2e_instance()
    try:
        spool = instance_spool(inst)
        before = set(all_queue_files(spool))
        code, text = smtp_send(inst, "alice@example.com", ["bob@example.org"],
                               "Subject: a forbidden word\r\n\r\nbody\r\n")
        assert code == 550 and "5.7.1 Forbidden subject" in text, (code, text)
        inst.wait_log(r"reject: header Subject: a forbidden word from localhost\[127\.0\.0\.1\]; "
                      r"from=<alice.smith@example.com> to=<bob@example.org> proto=ESMTP "
                      r"helo=<client.example>: 5.7.1 Forbidden subject")
        code, text = smtp_send(inst, "alice@example.com", ["bob@example.org"],
                               "Subject: throw away\r\n\r\nbody\r\n")
        assert code == 250, (code, text)
        inst.wait_log(r"discard: header Subject: throw away")
        assert set(all_queue_files(spool)) == before
    finally:
        inst.__exit__(None, None, None)


def test_smtp_client_dropping_mid_data_leaves_no_file():
    if not have_smtpd():
        return
    inst = e2e_instance()
    try:
        spool = instance_spool(inst)
        s = socket.create_connection(("127.0.0.1", inst.port), timeout=10)
        f = s.makefile("rb")
        assert f.readline().startswith(b"220")
        for cmd in (b"EHLO client.example", b"MAIL FROM:<alice@example.com>",
                    b"RCPT TO:<bob@example.org>", b"DATA"):
            s.sendall(cmd + b"\r\n")
            line = f.readline()
            while line[3:4] == b"-":
                line = f.readline()
            assert line[:1] in (b"2", b"3"), (cmd, line)
        s.sendall(b"Subject: half\r\n\r\n" + b"x" * 70000 + b"\r\n")
        # the file object holds the socket open: shut the connection for real
        s.shutdown(socket.SHUT_RDWR)
        f.close()
        s.close()
        inst.wait_log(r"client went away before end of message")
        incoming = os.listdir(os.path.join(spool, "incoming"))
        assert incoming == [], incoming
    finally:
        inst.__exit__(None, None, None)
