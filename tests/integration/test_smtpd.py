"""smtpd against a real instance: RFC 5321 session, ESMTP extensions,
restrictions, limits, hostile input (SMTP smuggling, NUL, long lines),
pipelining, BDAT, cleanup hand-off and Postfix-style logging.

Each test starts its own instance (tests/integration/harness.py) with
small limits and timeouts so the whole file stays fast.  Raw sockets are
used wherever the exact bytes on the wire matter; smtplib and swaks where
a well-behaved client is the point.
"""
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import harness

LOCAL_USERS = ("jones", "brown", "postmaster")


OPEN_SESSIONS = []


class Session:
    """A raw SMTP client: exact bytes out, replies parsed back.  Sessions
    still open when an instance() block ends are closed there, so a failed
    test never leaves an smtpd waiting for its client."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        OPEN_SESSIONS.append(self)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; buffered %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self):
        """One (possibly multi-line) reply: (code, [texts])."""
        texts = []
        while True:
            line = self.line()
            assert re.match(r"^\d{3}[ -]", line), "malformed reply line %r" % line
            texts.append(line[4:])
            if line[3] == " ":
                return int(line[:3]), texts

    def cmd(self, text):
        self.send(text + "\r\n")
        code, texts = self.reply()
        return code, texts[-1]

    def expect(self, text, code, pattern=None):
        got, msg = self.cmd(text)
        assert got == code, "%r: expected %d, got %d %s" % (text, code, got, msg)
        if pattern:
            assert re.search(pattern, msg), "%r: reply %r does not match %r" % (text, msg, pattern)
        return msg

    def closed(self, timeout=5):
        """True when the server closed the connection (EOF) in time."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except ConnectionResetError:
            return True                 # closed with our input unread: RST
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


@contextlib.contextmanager
def instance(conf=None, master_cf_edit=None, access=None, as_root=False):
    """A started instance whose local recipients are LOCAL_USERS (a
    texthash: table in the instance dir), plus optional access tables
    {name: text} available as texthash:DIR/NAME."""
    with harness.Instance(conf=conf, start=False, as_root=as_root) as inst:
        path = os.path.join(inst.dir, "recipients")
        with open(path, "w") as f:
            f.write("".join("%s ok\n" % u for u in LOCAL_USERS))
        os.chmod(path, 0o644)
        for name, text in (access or {}).items():
            p = os.path.join(inst.dir, name)
            with open(p, "w") as f:
                f.write(text)
            os.chmod(p, 0o644)
        settings = {"local_recipient_maps": "texthash:" + path}
        settings.update(conf or {})
        inst.edit_main_cf({k: v.replace("DIR", inst.dir) for k, v in settings.items()})
        if master_cf_edit:
            mcf = os.path.join(inst.dir, "master.cf")
            with open(mcf) as f:
                text = f.read()
            with open(mcf, "w") as f:
                f.write(master_cf_edit(text))
        r = inst.postern("start")
        assert r.returncode == 0, "postern start failed: " + r.stderr + inst.log()
        harness.wait_for(lambda: harness.port_accepts(inst.port), 10, what="the smtp port")
        try:
            yield inst
        finally:
            while OPEN_SESSIONS:
                OPEN_SESSIONS.pop().close()


def session(inst, helo="EHLO client.example"):
    s = Session(inst.port)
    code, texts = s.reply()
    assert code == 220, texts
    if helo:
        s.send(helo + "\r\n")
        code, _ = s.reply()
        assert code == 250
    return s


def queue_file(inst, qid):
    """Path of the queue file QID anywhere in the spool, or None."""
    for root, _dirs, files in os.walk(os.path.join(inst.dir, "spool")):
        if qid in files:
            return os.path.join(root, qid)
    return None


def queue_records(path):
    """A queue file (common/queue.h: TYPE LENGTH ':' DATA LF) as a list of
    (type, data) pairs."""
    with open(path, "rb") as f:
        raw = f.read()
    recs, pos = [], 0
    while pos < len(raw):
        colon = raw.index(b":", pos)
        rtype, length = raw[pos:pos + 1].decode(), int(raw[pos + 1:colon])
        data = raw[colon + 1:colon + 1 + length]
        assert raw[colon + 1 + length:colon + 2 + length] == b"\n", "bad record at %d" % pos
        recs.append((rtype, data))
        pos = colon + 2 + length
    return recs


def queued_message(inst, qid):
    """(envelope records, content as LF text) of QID, or None when qmgr has
    already taken the file away."""
    path = queue_file(inst, qid)
    if not path:
        return None
    try:
        recs = queue_records(path)
    except FileNotFoundError:
        return None
    content = b"".join(d + b"\n" for t, d in recs if t == "L")
    return [r for r in recs if r[0] != "L"], content


def wait_queued(inst, qid):
    """The message QID reached the queue: its file is there, or qmgr has
    already picked it up (it may be delivered and removed quickly)."""
    def seen():
        path = queue_file(inst, qid)
        if path:
            return path
        return re.search(r"%s: (from=<|removed)" % qid, inst.log())
    return inst.wait_for(seen, 10, what="queue file %s" % qid)


def queued_id(reply):
    m = re.match(r"2\.0\.0 Ok: queued as ([0-9A-Z]+)$", reply)
    assert m, "not a queued reply: %r" % reply
    return m.group(1)


def start_mail(s, rcpts=("jones@localhost",), sender="smith@example.com"):
    s.expect("MAIL FROM:<%s>" % sender, 250, r"^2\.1\.0 ")
    for r in rcpts:
        s.expect("RCPT TO:<%s>" % r, 250, r"^2\.1\.5 ")


# --------------------------------------------------------------------------

def test_rfc5321_d1_session():
    """RFC 5321 D.1: one message for three recipients, one unknown."""
    with instance() as inst:
        s = Session(inst.port)
        code, texts = s.reply()
        assert code == 220
        assert re.match(r"^\S+ ESMTP postern$", texts[0]), texts
        hostname = texts[0].split()[0]
        s.send("EHLO bar.com\r\n")
        code, texts = s.reply()
        assert code == 250 and texts[0] == hostname
        for ext in ("PIPELINING", "SIZE 10240000", "ENHANCEDSTATUSCODES", "8BITMIME",
                    "DSN", "SMTPUTF8", "CHUNKING"):
            assert ext in texts, (ext, texts)
        assert "VRFY" not in texts      # disable_vrfy_command = yes
        s.expect("MAIL FROM:<Smith@bar.com>", 250, r"^2\.1\.0 Ok$")
        s.expect("RCPT TO:<Jones@localhost>", 250, r"^2\.1\.5 Ok$")
        s.expect("RCPT TO:<Green@localhost>", 550,
                 r"^5\.1\.1 <Green@localhost>: Recipient address rejected: "
                 r"User unknown in local recipient table$")
        s.expect("RCPT TO:<Brown@localhost>", 250)
        s.expect("DATA", 354)
        s.send("Subject: D.1\r\n\r\nBlah blah blah...\r\n...etc. etc. etc.\r\n.\r\n")
        code, texts = s.reply()
        assert code == 250, texts
        qid = queued_id(texts[-1])
        # the 250 came after cleanup committed the file: it is there now
        # (or qmgr, woken by cleanup, has already picked it up)
        assert queue_file(inst, qid) or re.search(r"%s: (from=<|removed)" % qid, inst.log())
        s.expect("QUIT", 221, r"^2\.0\.0 Bye$")
        s.close()

        wait_queued(inst, qid)
        inst.wait_log(r"smtpd\[\d+\]: disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=1 "
                      r"rcpt=2/3 data=1 quit=1 commands=6/7$")
        log = inst.log()
        assert re.search(r"smtpd\[\d+\]: connect from localhost\[127\.0\.0\.1\]$", log, re.M)
        assert re.search(r"smtpd\[\d+\]: %s: client=localhost\[127\.0\.0\.1\]$" % qid, log, re.M)
        assert re.search(r"smtpd\[\d+\]: %s: reject: RCPT from localhost\[127\.0\.0\.1\]: 550 5\.1\.1 "
                         r"<Green@localhost>: Recipient address rejected: User unknown in local "
                         r"recipient table; from=<Smith@bar\.com> to=<Green@localhost> proto=ESMTP "
                         r"helo=<bar\.com>$" % qid, log, re.M), log
        msg = queued_message(inst, qid)
        if msg:                         # not yet delivered: check its content
            env, content = msg
            assert content.startswith(b"Received: from bar.com (localhost [127.0.0.1])\n"
                                      b"\tby %s (postern) with ESMTP id %s; "
                                      % (hostname.encode(), qid.encode())), content
            # the client stuffed "..etc." to "...etc."; stored unstuffed
            assert b"\n..etc. etc. etc.\n" in content and b"...etc." not in content
            # status byte '-' pending or 'D' done: qmgr may be delivering already
            rcpts = {r[1][1:] for r in env if r[0] == "R" and r[1][:1] in (b"-", b"D")}
            assert rcpts == {b"Jones@localhost", b"Brown@localhost"}, env
            assert b"Green@localhost" not in content and not [
                r for r in env if b"Green" in r[1]]
            assert ("S", b"Smith@bar.com") in env

        # Local delivery: Jones and Brown each receive the message once.
        inst.wait_log(r"%s: removed" % qid, timeout=30)
        for user in ("jones", "brown"):
            box = inst.mailbox(user)
            assert len(box) == 1, (user, box)
            assert "\nSubject: D.1\n" in box[0]
            assert box[0].startswith("Return-Path: <Smith@bar.com>\n"), box[0][:200]
            assert "\n..etc. etc. etc.\n" in box[0]
        assert inst.mailbox("green") == [] and inst.mailbox("Green") == []


def test_noqueue_reject_and_single_recipient_received_header():
    with instance() as inst:
        s = session(inst, "HELO client.example")
        s.expect("MAIL FROM:<a@example.com>", 250)
        s.expect("RCPT TO:<nobody@localhost>", 550, r"^5\.1\.1 ")
        s.expect("RCPT TO:<jones@localhost>", 250)
        s.expect("DATA", 354)
        s.send("Subject: one\r\n\r\nx\r\n.\r\n")
        code, texts = s.reply()
        assert code == 250
        qid = queued_id(texts[-1])
        s.close()
        inst.wait_log(r"NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 550 5\.1\.1 "
                      r"<nobody@localhost>: .*; from=<a@example\.com> to=<nobody@localhost> "
                      r"proto=SMTP helo=<client\.example>$")
        wait_queued(inst, qid)
        msg = queued_message(inst, qid)
        if msg:
            assert re.match(rb"Received: from client\.example \(localhost \[127\.0\.0\.1\]\)\n"
                            rb"\tby \S+ \(postern\) with SMTP id " + qid.encode() +
                            rb"\n\tfor <jones@localhost>; \w\w\w, ", msg[1]), msg[1]


def test_commands_and_sequence_errors():
    with instance({"smtpd_error_sleep_time": "0"}) as inst:
        s = session(inst, helo=None)
        s.expect("NOOP", 250, r"^2\.0\.0 ")
        s.expect("HELP", 214, r"^2\.0\.0 ")
        s.expect("VRFY jones", 502, r"^5\.5\.1 VRFY command is disabled$")
        s.expect("RCPT TO:<jones@localhost>", 503, r"^5\.5\.1 Error: need MAIL command$")
        s.expect("DATA", 503, r"^5\.5\.1 Error: need RCPT command$")
        s.expect("EHLO", 501, r"^5\.5\.4 ")
        s.expect("EHLO client.example", 250)
        s.expect("MAIL FROM:<a@example.com>", 250)
        s.expect("MAIL FROM:<a@example.com>", 503, r"^5\.5\.1 Error: nested MAIL command$")
        s.expect("DATA", 503, r"^5\.5\.1 Error: need RCPT command$")
        s.expect("RCPT TO:<ghost@localhost>", 550)
        s.expect("DATA", 554, r"^5\.5\.1 Error: no valid recipients$")
        s.expect("RSET", 250, r"^2\.0\.0 Ok$")
        s.expect("RCPT TO:<jones@localhost>", 503)
        s.expect("MAIL FROM:<a@@example.com>", 501, r"^5\.1\.7 Bad sender address syntax$")
        s.expect("MAIL FROM:<a@example.com", 501, r"^5\.1\.7 ")
        s.expect("MAIL FROM:a@example.com", 250)    # strict_rfc821_envelopes = no
        s.expect("RCPT TO:jones@localhost NOTIFY=NEVER", 250)
        s.expect("RCPT TO:<jones@localhost>x", 501, r"^5\.1\.3 Bad recipient address syntax$")
        s.expect("RSET", 250)
        s.expect("MAIL TO:<a@example.com>", 501, r"^5\.5\.4 Syntax: MAIL FROM:<address>$")
        s.expect("MAIL FROM:<a@example.com> FOO=BAR", 555, r"^5\.5\.4 Unsupported option: FOO$")
        s.expect("XYZZY", 502, r"^5\.5\.2 Error: command not recognized$")
        s.expect("MAIL FROM:<a@example.com> SIZE=18000000000000000000", 552, r"^5\.3\.4 ")
        # shell metacharacters are only an address
        marker = "/tmp/postern-smtpd-pwned-%d" % os.getpid()
        s.expect("MAIL FROM:<`touch${IFS}%s`@example.com>" % marker, 250)
        s.expect("RCPT TO:<\"$(touch %s)\"@localhost>" % marker, 550, r"^5\.1\.1 ")
        s.expect("RSET", 250)
        s.expect("QUIT", 221)
        assert s.closed()
        assert not os.path.exists(marker)
        inst.wait_log(r"disconnect from localhost\[127\.0\.0\.1\] .*unknown=0/1 commands=\d+/\d+$")
        assert re.search(r"smtpd\[\d+\]: warning: Illegal address syntax from localhost\[127\.0\.0\.1\] "
                         r"in MAIL command: <a@@example\.com>$", inst.log(), re.M)


SMUGGLING = [
    ("lf-dot-lf", b"\n.\n", True),
    ("cr-dot-cr", b"\r.\r", False),
    ("lf-dot-crlf", b"\n.\r\n", True),
    ("crlf-dot-lf", b"\r\n.\n", True),
    ("cr-dot-crlf", b"\r.\r\n", False),
]


def test_smtp_smuggling_variants():
    """None of these ends the message; the smuggled MAIL is content.  With
    smtpd_forbid_bare_newline = yes (default) a bare LF rejects the
    message: 550 5.5.2, and the session stays usable.  The exclusion list
    ($mynetworks by default) is emptied so that the test client counts."""
    with instance({"smtpd_forbid_bare_newline_exclusions": ""}) as inst:
        for name, seq, has_bare_lf in SMUGGLING:
            s = session(inst)
            start_mail(s)
            s.expect("DATA", 354)
            s.send(b"Subject: " + name.encode() + b"\r\n\r\nbody" + seq +
                   b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<brown@localhost>\r\nDATA\r\n"
                   b"smuggled\r\n.\r\n")
            code, texts = s.reply()
            if has_bare_lf:
                assert (code, texts[-1]) == (550, "5.5.2 Error: bare <LF> received"), (name, texts)
            else:
                assert code == 250, (name, texts)
                queued_id(texts[-1])
            # exactly one reply: the next thing we hear answers our NOOP
            s.expect("NOOP", 250, r"^2\.0\.0 Ok$")
            s.expect("RSET", 250)
            start_mail(s)
            s.expect("DATA", 354)
            s.send("Subject: after\r\n\r\nok\r\n.\r\n")
            code, texts = s.reply()
            assert code == 250, (name, texts)
            s.send("NOOP\n")                      # bare LF in a command, too
            assert s.reply() == (550, ["5.5.2 Error: bare <LF> received"])
            s.expect("QUIT", 221)
            s.close()
        assert "from=<evil@example.com>" not in inst.log()


def test_bare_newline_exclusions_default_to_mynetworks():
    """As Postfix 3.9: clients in $mynetworks may send bare LF (normalized),
    but even for them only CR LF . CR LF ends the message."""
    with instance() as inst:
        s = session(inst)
        s.send("NOOP\n")
        assert s.reply()[0] == 250
        start_mail(s)
        s.expect("DATA", 354)
        s.send(b"Subject: lf\r\n\r\nbody\n.\nMAIL FROM:<evil@example.com>\r\n.\r\n")
        code, texts = s.reply()
        assert code == 250, texts
        qid = queued_id(texts[-1])
        s.expect("NOOP", 250)
        s.expect("QUIT", 221)
        wait_queued(inst, qid)
        msg = queued_message(inst, qid)
        if msg:
            assert msg[1].endswith(b"\nbody\n.\nMAIL FROM:<evil@example.com>\n"), msg[1]
    with instance({"smtpd_forbid_bare_newline": "no",
                   "smtpd_forbid_bare_newline_exclusions": ""}) as inst:
        s = session(inst)
        s.send("NOOP\n")
        assert s.reply()[0] == 250


def test_pipelining_and_content_after_354():
    with instance() as inst:
        s = Session(inst.port)
        assert s.reply()[0] == 220
        # everything in one write, including content right after DATA
        # (a client that does not wait for 354) and the QUIT
        s.send("EHLO client.example\r\nMAIL FROM:<a@example.com>\r\n"
               "RCPT TO:<jones@localhost>\r\nRCPT TO:<nobody@localhost>\r\n"
               "RCPT TO:<brown@localhost>\r\nDATA\r\n"
               "Subject: pipelined\r\n\r\nQUIT\r\nRSET\r\n.\r\nNOOP\r\nQUIT\r\n")
        codes = [s.reply()[0] for _ in range(9)]
        assert codes == [250, 250, 250, 550, 250, 354, 250, 250, 221], codes
        assert s.closed()


def bdat(data, last=False):
    return b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"") + data


def test_bdat_chunking():
    with instance() as inst:
        s = session(inst)
        start_mail(s)
        s.send(bdat(b"Subject: chunked\r\n\r\nab\r"))
        assert s.reply() == (250, ["2.0.0 Ok: 23 bytes"])
        s.expect("DATA", 503, r"^5\.5\.1 ")          # no mixing
        # pipelined chunks: one that looks like commands, a CR LF split
        # across chunks, a lone "." line that means nothing in BDAT
        s.send(bdat(b"\ncd\r\nQUI") + bdat(b"T\r\n.\r\nxy", last=True))
        assert s.reply() == (250, ["2.0.0 Ok: 8 bytes"])
        code, texts = s.reply()
        assert code == 250, texts
        qid = queued_id(texts[-1])
        wait_queued(inst, qid)
        msg = queued_message(inst, qid)
        if msg:
            body = msg[1].split(b"\n", 3)[3]      # after the 3 Received: lines
            assert body.startswith(b"Subject: chunked\n"), body
            assert b"\n\nab\ncd\nQUIT\n.\nxy" in body, body
        # BDAT 0 LAST ends a message
        start_mail(s)
        s.send(bdat(b"Subject: z\r\n\r\nbody\r\n"))
        assert s.reply()[0] == 250
        s.send(b"BDAT 0 LAST\r\n")
        code, texts = s.reply()
        assert code == 250, texts
        queued_id(texts[-1])
        # BDAT without a transaction: the chunk is still read, then 503
        s.send(bdat(b"NOOP\r\n", last=True))
        assert s.reply()[0] == 503
        s.expect("NOOP", 250)
        s.expect("BDAT x", 501, r"^5\.5\.4 ")
        s.expect("QUIT", 221)


def test_limits_line_nul_recipients_size():
    conf = {"smtpd_recipient_limit": "3", "message_size_limit": "20000",
            "smtpd_hard_error_limit": "50"}
    with instance(conf) as inst:
        s = session(inst)
        s.expect("NOOP " + "x" * 5000, 500, r"^5\.5\.2 Error: line too long$")
        s.expect("NOOP", 250)               # the rest of the long line was dropped
        s.send(b"NO\x00OP\r\n")
        assert s.reply() == (500, ["5.5.2 Error: bad syntax"])
        s.send(b"MAIL FROM:<a\x00b@example.com>\r\n")
        assert s.reply()[0] == 500
        s.send(b"EHLO a\rb\r\n")          # a CR inside a command is no line end
        assert s.reply() == (500, ["5.5.2 Error: bad syntax"])
        # SIZE declared too big
        s.expect("MAIL FROM:<a@example.com> SIZE=20001", 552,
                 r"^5\.3\.4 Message size exceeds fixed limit$")
        s.expect("MAIL FROM:<a@example.com> SIZE=100", 250)
        s.expect("RCPT TO:<jones@localhost>", 250)
        s.expect("RCPT TO:<brown@localhost>", 250)
        s.expect("RCPT TO:<postmaster@localhost>", 250)
        s.expect("RCPT TO:<jones+x@localhost>", 452, r"^4\.5\.3 Error: too many recipients$")
        s.expect("DATA", 354)
        # content over the limit: read to the end, then 552
        big = (b"x" * 998 + b"\r\n") * 40
        s.send(b"Subject: big\r\n\r\n" + big + b".\r\n")
        assert s.reply() == (552, ["5.3.4 Message size exceeds fixed limit"])
        big_qid = re.findall(r"smtpd\[\d+\]: ([0-9A-F]+): client=", inst.log())[-1]
        s.expect("NOOP", 250)
        start_mail(s)
        s.expect("DATA", 354)
        s.send(b"Subject: small\r\n\r\n" + b"y" * 1000 + b"\r\n.\r\n")
        code, texts = s.reply()
        assert code == 250, texts
        s.expect("QUIT", 221)
        qid = queued_id(texts[-1])
        wait_queued(inst, qid)
        # the big message was abandoned: cleanup never committed it
        assert big_qid != qid
        assert queue_file(inst, big_qid) is None
        assert not re.search(big_qid + r": message-id=", inst.log())
        assert re.search(big_qid + r": reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: "
                         r"552 5\.3\.4 Message size exceeds fixed limit; from=<a@example\.com> "
                         r"proto=ESMTP helo=<client\.example>$", inst.log(), re.M)


def test_error_limits():
    conf = {"smtpd_soft_error_limit": "2", "smtpd_hard_error_limit": "4",
            "smtpd_error_sleep_time": "1s"}
    with instance(conf) as inst:
        s = session(inst)
        t0 = time.monotonic()
        s.expect("BOGUS1", 502)
        s.expect("BOGUS2", 502)
        assert time.monotonic() - t0 < 0.9      # within the soft limit: no delay
        t1 = time.monotonic()
        s.expect("BOGUS3", 502)
        assert time.monotonic() - t1 >= 0.9     # beyond it: delayed
        s.expect("BOGUS4", 502)
        code, texts = s.reply()
        assert code == 421 and re.match(r"^4\.7\.0 \S+ Error: too many errors$", texts[-1]), texts
        assert s.closed()
        inst.wait_log(r"too many errors after UNKNOWN from localhost\[127\.0\.0\.1\]$")


def test_timeout():
    with instance({"smtpd_timeout": "1s"}) as inst:
        s = session(inst)
        s.expect("MAIL FROM:<a@example.com>", 250)
        t0 = time.monotonic()
        code, texts = s.reply()           # say nothing; the server gives up
        assert code == 421 and re.match(r"^4\.4\.2 \S+ Error: timeout exceeded$", texts[-1]), texts
        assert time.monotonic() - t0 < 5
        assert s.closed()
        inst.wait_log(r"timeout after MAIL from localhost\[127\.0\.0\.1\]$")


def test_lost_connection_in_data_queues_nothing():
    with instance() as inst:
        s = session(inst)
        start_mail(s)
        s.expect("DATA", 354)
        s.send("Subject: cut\r\n\r\nhalf a mess")
        s.close()
        m = inst.wait_log(r"smtpd\[\d+\]: ([0-9A-F]+): client=")
        qid = m.group(1)
        inst.wait_log(r"lost connection after DATA from localhost\[127\.0\.0\.1\]$")
        inst.wait_log(r"disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=1 data=0/1 "
                      r"commands=3/4$")
        assert queue_file(inst, qid) is None
        assert not re.search(qid + r": (from=|message-id)", inst.log())


def test_relay_control_defaults():
    """Postfix 3 default smtpd_relay_restrictions: permit_mynetworks,
    permit_sasl_authenticated, defer_unauth_destination.  The test client
    (127.0.0.1) is taken out of mynetworks to be an outsider."""
    with instance({"mynetworks": "192.0.2.0/24"}) as inst:
        s = session(inst)
        s.expect("MAIL FROM:<a@example.com>", 250)
        s.expect("RCPT TO:<victim@example.org>", 450,
                 r"^4\.7\.1 <victim@example\.org>: Relay access denied$")
        s.expect("RCPT TO:<user%victim.example.org@localhost>", 550, r"^5\.1\.1 ")
        s.expect("RCPT TO:<jones@LOCALHOST>", 250)     # domains compare case-insensitively
        s.expect("QUIT", 221)
        inst.wait_log(r"NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 450 4\.7\.1 "
                      r"<victim@example\.org>: Relay access denied; from=<a@example\.com> "
                      r"to=<victim@example\.org> proto=ESMTP helo=<client\.example>$")
    with instance({"mynetworks": "127.0.0.0/8"}) as inst:
        s = session(inst)
        s.expect("MAIL FROM:<a@example.com>", 250)
        s.expect("RCPT TO:<friend@example.org>", 250)   # mynetworks may relay
        s.expect("QUIT", 221)


def test_recipient_restrictions_and_access_maps():
    access = {
        "rcpt_access": "localhost OK\n"
                       "blocked@localhost REJECT no mail for you\n"
                       "later@localhost DEFER try again\n"
                       "coded@localhost 521 5.7.9 custom text\n"
                       "example.net OK\n",
        "sender_access": "spammer.example REJECT\n<> DUNNO\n",
        "client_access": "127.0.0.2 REJECT\n",
    }
    conf = {
        "smtpd_relay_restrictions": "reject_unauth_destination",
        "mynetworks": "192.0.2.0/24",
        "smtpd_client_restrictions": "check_client_access texthash:DIR/client_access",
        "smtpd_recipient_restrictions": "check_sender_access texthash:DIR/sender_access, "
                                        "reject_non_fqdn_sender, "
                                        "check_recipient_access texthash:DIR/rcpt_access, "
                                        "reject_non_fqdn_recipient",
        "relay_domains": "example.net, nodots",
    }
    with instance(conf, access=access) as inst:
        s = session(inst)
        s.expect("MAIL FROM:<a@example.com>", 250)
        s.expect("RCPT TO:<victim@example.org>", 554,
                 r"^5\.7\.1 <victim@example\.org>: Relay access denied$")
        s.expect("RCPT TO:<blocked@localhost>", 554,
                 r"^5\.7\.1 <blocked@localhost>: Recipient address rejected: no mail for you$")
        s.expect("RCPT TO:<later@localhost>", 450,
                 r"^4\.7\.1 <later@localhost>: Recipient address rejected: try again$")
        s.expect("RCPT TO:<coded@localhost>", 521,
                 r"^5\.7\.9 <coded@localhost>: Recipient address rejected: custom text$")
        s.expect("RCPT TO:<someone@example.net>", 250)     # relay_domains + OK
        s.expect("RCPT TO:<u@nodots>", 504,
                 r"^5\.5\.2 <u@nodots>: Recipient address rejected: need fully-qualified address$")
        s.expect("RCPT TO:<jones@localhost>", 250)
        s.expect("RSET", 250)
        s.expect("MAIL FROM:<bad@mx.spammer.example>", 250)    # delayed reject
        s.expect("RCPT TO:<jones@localhost>", 554,
                 r"^5\.7\.1 <bad@mx\.spammer\.example>: Sender address rejected: Access denied$")
        s.expect("RSET", 250)
        s.expect("MAIL FROM:<barehost>", 250)
        s.expect("RCPT TO:<jones@localhost>", 504,
                 r"^5\.5\.2 <barehost>: Sender address rejected: need fully-qualified address$")
        s.expect("RSET", 250)
        s.expect("MAIL FROM:<>", 250)
        s.expect("RCPT TO:<jones@localhost>", 250)
        s.expect("QUIT", 221)


def test_reject_unknown_sender_domain():
    conf = {"smtpd_sender_restrictions": "reject_unknown_sender_domain"}
    with instance(conf) as inst:
        s = session(inst)
        s.expect("MAIL FROM:<a@no-such-domain.invalid>", 250)
        # NXDOMAIN gives unknown_address_reject_code (450); no DNS gives a
        # temporary failure (450 too): either way 4.1.8
        s.expect("RCPT TO:<jones@localhost>", 450,
                 r"^4\.1\.8 <a@no-such-domain\.invalid>: Sender address rejected: "
                 r"Domain not found$")
        s.expect("RSET", 250)
        s.expect("MAIL FROM:<>", 250)
        s.expect("RCPT TO:<jones@localhost>", 250)
        s.expect("QUIT", 221)


def test_dsn_and_smtputf8_parameters():
    with instance() as inst:
        s = session(inst)
        s.expect("MAIL FROM:<a@example.com> RET=HDRS ENVID=abc+2Bdef", 250)
        s.expect("RCPT TO:<jones@localhost> NOTIFY=SUCCESS,FAILURE "
                 "ORCPT=rfc822;jones+40x@localhost", 250)
        s.expect("RCPT TO:<brown@localhost> NOTIFY=NEVER,SUCCESS", 501, r"^5\.5\.4 ")
        s.expect("RCPT TO:<brown@localhost> ORCPT=rfc822", 501, r"^5\.5\.4 ")
        s.expect("DATA", 354)
        s.send("Subject: dsn\r\n\r\nx\r\n.\r\n")
        code, texts = s.reply()
        assert code == 250
        qid = queued_id(texts[-1])
        wait_queued(inst, qid)
        msg = queued_message(inst, qid)
        if msg:
            env = msg[0]
            assert ("A", b"envid=abc+def") in env and ("A", b"ret=HDRS") in env, env
            assert ("N", b"SUCCESS,FAILURE") in env, env
            assert ("O", b"rfc822;jones+40x@localhost") in env, env
        s.expect("MAIL FROM:<a@example.com> RET=SOME", 501, r"^5\.5\.4 ")
        s.expect("MAIL FROM:<a@example.com> ENVID=a+zz", 501, r"^5\.5\.4 ")
        s.expect("MAIL FROM:<a@example.com> BODY=BINARYMIME", 501, r"^5\.5\.4 ")
        s.send("MAIL FROM:<j\u00f6rg@example.com>\r\n".encode())
        assert s.reply()[0] == 553
        s.send("MAIL FROM:<j\u00f6rg@example.com> SMTPUTF8 BODY=8BITMIME\r\n".encode())
        assert s.reply()[0] == 250
        s.expect("RCPT TO:<jones@localhost>", 250)
        s.expect("DATA", 354)
        s.send("Subject: gr\u00fc\u00dfe\r\n\r\nx\r\n.\r\n".encode())
        code, texts = s.reply()
        assert code == 250, texts
        qid = queued_id(texts[-1])
        wait_queued(inst, qid)
        msg = queued_message(inst, qid)
        if msg:
            assert ("A", b"protocol=UTF8SMTP") in msg[0], msg[0]
            assert ("S", "j\u00f6rg@example.com".encode()) in msg[0], msg[0]
            assert b" with UTF8SMTP id " in msg[1]
        s.expect("QUIT", 221)


def test_cleanup_unreachable_is_a_temporary_error():
    def no_cleanup(text):
        return re.sub(r"(?m)^cleanup\s.*$", "", text)
    with instance(master_cf_edit=no_cleanup) as inst:
        s = session(inst)
        s.expect("MAIL FROM:<a@example.com>", 250)
        s.expect("RCPT TO:<jones@localhost>", 451, r"^4\.3\.0 Error: queue file write error$")
        s.expect("QUIT", 221)


def test_smtplib_and_swaks_clients():
    with instance() as inst:
        with inst.smtp() as c:
            refused = c.sendmail("smith@example.com", ["jones@localhost", "brown@localhost"],
                                 "Subject: smtplib\r\n\r\nhello\r\n.leading dot\r\n")
            assert refused == {}
        swaks = shutil.which("swaks")
        if swaks:
            for extra in ([], ["--pipeline"]):
                r = subprocess.run([swaks, "--server", "127.0.0.1", "--port", str(inst.port),
                                    "--from", "smith@example.com", "--to", "jones@localhost",
                                    "--helo", "client.example", "--timeout", "10"] + extra,
                                   capture_output=True, text=True, timeout=30)
                assert r.returncode == 0, r.stdout + r.stderr
                assert re.search(r"<[-~]  250 2\.0\.0 Ok: queued as [0-9A-F]+", r.stdout), r.stdout


def test_vrfy_enabled_and_helo_required():
    conf = {"disable_vrfy_command": "no", "smtpd_helo_required": "yes",
            "strict_rfc821_envelopes": "yes"}
    with instance(conf) as inst:
        s = session(inst, helo=None)
        s.expect("MAIL FROM:<a@example.com>", 503, r"^5\.5\.1 Error: send HELO/EHLO first$")
        s.send("EHLO client.example\r\n")
        code, texts = s.reply()
        assert code == 250 and "VRFY" in texts, texts
        s.expect("VRFY <jones@localhost>", 252, r"^2\.0\.0 jones@localhost$")
        s.expect("VRFY nobody@localhost", 550,
                 r"^5\.1\.1 <nobody@localhost>: Recipient address rejected: "
                 r"User unknown in local recipient table$")
        s.expect("VRFY", 501, r"^5\.5\.4 ")
        s.expect("MAIL FROM:a@example.com", 501, r"^5\.1\.7 ")     # strict: <> required
        s.expect("MAIL FROM:<a@example.com>", 250)
        s.expect("QUIT", 221)


def test_cleanup_verdict_is_passed_on():
    """header_checks REJECT in cleanup: smtpd answers with cleanup's code
    and text, and nothing is queued."""
    checks = "/^Subject: reject me/ REJECT not welcome here\n"
    conf = {"header_checks": "regexp:DIR/header_checks"}
    with instance(conf, access={"header_checks": checks}) as inst:
        s = session(inst)
        start_mail(s)
        s.expect("DATA", 354)
        s.send("Subject: reject me\r\n\r\nbody\r\n.\r\n")
        code, texts = s.reply()
        assert (code, texts[-1]) == (550, "5.7.1 not welcome here"), texts
        s.expect("NOOP", 250)                   # the session goes on
        start_mail(s)
        s.expect("DATA", 354)
        s.send("Subject: fine\r\n\r\nbody\r\n.\r\n")
        code, texts = s.reply()
        assert code == 250, texts
        s.expect("QUIT", 221)


def coalescing_body(size, seed):
    """A message body of about size bytes (LF line ends) whose every line
    is numbered, so a lost, doubled or reordered piece shows."""
    lines, total, n = [], 0, 0
    while total < size:
        line = b"%s %07d " % (seed, n) + b"x" * (n % 97)
        lines.append(line)
        total += len(line) + 1
        n += 1
    return b"".join(l + b"\n" for l in lines)


def test_cleanup_conversation_coalescing_keeps_content_intact():
    """smtpd queues its records for cleanup and writes them when 64 KiB
    are queued and at the end (smtpd_cleanup.c): messages on both sides of
    that size, through DATA and through BDAT chunks of odd sizes, reach the
    queue file byte for byte.  qmgr is not running, so every file stays in
    incoming/ to be read back."""
    def no_qmgr(text):
        return re.sub(r"(?m)^qmgr\s.*$", "", text)
    headers = b"From: <smith@example.com>\nTo: <jones@localhost>\nDate: Tue, 8 Dec 2026 01:00:00 +0000\nMessage-ID: <coalesce@example.com>\n"
    sizes = [0, 1, 4000, 65536 - 2000, 65536 - 700, 65536 - 300, 65536 - 1, 65536,
             65536 + 1, 65536 + 300, 2 * 65536, 2 * 65536 + 17, 300000]
    with instance(master_cf_edit=no_qmgr) as inst:
        s = session(inst)
        for i, size in enumerate(sizes):
            body = coalescing_body(size, b"D%d" % i)
            msg = headers + b"Subject: data %d\n\n" % size + body
            start_mail(s)
            s.expect("DATA", 354)
            s.send(msg.replace(b"\n", b"\r\n") + b".\r\n")
            code, texts = s.reply()
            assert code == 250, (size, texts)
            qid = queued_id(texts[-1])
            queued = queued_message(inst, qid)
            assert queued, "queue file %s for size %d is gone" % (qid, size)
            assert queued[1].endswith(msg), "DATA size %d: content differs" % size
            assert queued[1].startswith(b"Received: from client.example"), queued[1][:200]
        for i, size in enumerate(sizes):
            body = coalescing_body(size, b"B%d" % i)
            msg = headers + b"Subject: bdat %d\n\n" % size + body
            wire = msg.replace(b"\n", b"\r\n")
            start_mail(s)
            # chunks of odd sizes, the last with LAST; the replies come
            # after all chunks went out (pipelined)
            chunks, pos, step = [], 0, 1 + (size * 7 + 40961) % 70001
            while pos < len(wire):
                chunks.append(wire[pos:pos + step])
                pos += step
            s.send(b"".join(bdat(c, last=(k == len(chunks) - 1)) for k, c in enumerate(chunks)))
            for _ in chunks[:-1]:
                assert s.reply()[0] == 250
            code, texts = s.reply()
            assert code == 250, (size, texts)
            qid = queued_id(texts[-1])
            queued = queued_message(inst, qid)
            assert queued, "queue file %s for size %d is gone" % (qid, size)
            assert queued[1].endswith(msg), "BDAT size %d: content differs" % size
        s.expect("QUIT", 221)


def test_cleanup_verdict_on_large_streamed_message():
    """A header_checks REJECT on a message that leaves smtpd in several
    64 KiB writes (cleanup decides at the first header, long before the
    end) still gets cleanup's 5xx at the end of DATA and of BDAT, nothing
    is queued, and the next message in the session is accepted."""
    checks = "/^Subject: reject me/ REJECT not welcome here\n"
    conf = {"header_checks": "regexp:DIR/header_checks"}
    body = coalescing_body(400000, b"R")
    with instance(conf, access={"header_checks": checks}) as inst:
        s = session(inst)
        start_mail(s)
        s.expect("DATA", 354)
        s.send((b"Subject: reject me\n\n" + body).replace(b"\n", b"\r\n") + b".\r\n")
        code, texts = s.reply()
        assert (code, texts[-1]) == (550, "5.7.1 not welcome here"), texts
        start_mail(s)
        wire = (b"Subject: reject me too\n\n" + body).replace(b"\n", b"\r\n")
        half = len(wire) // 2
        s.send(bdat(wire[:half]) + bdat(wire[half:], last=True))
        assert s.reply()[0] == 250
        code, texts = s.reply()
        assert (code, texts[-1]) == (550, "5.7.1 not welcome here"), texts
        start_mail(s)
        s.expect("DATA", 354)
        s.send((b"Subject: fine\n\n" + body).replace(b"\n", b"\r\n") + b".\r\n")
        code, texts = s.reply()
        assert code == 250, texts
        s.expect("QUIT", 221)
        log = inst.wait_log(r"reject: DATA from .*not welcome")
        assert len(re.findall(r"cleanup\[\d+\]: \w+: reject: .*not welcome here", inst.log())) == 2, log


def test_cleanup_gone_before_data_is_a_temporary_error():
    """cleanup dies after it gave the queue id (first RCPT) and before the
    content: since the records for cleanup are queued and written at the
    end, the broken conversation shows there -- DATA's final reply is
    451 4.3.0, nothing is queued, and the next message is accepted."""
    def cleanup_pids(inst):
        pids = []
        for pid in inst.pids():
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    argv0 = f.read().split(b"\0")[0]
            except OSError:
                continue
            if argv0.endswith(b"/cleanup"):
                pids.append(pid)
        return pids
    with instance() as inst:
        s = session(inst)
        start_mail(s)
        pids = inst.wait_for(lambda: cleanup_pids(inst), what="a cleanup process")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        s.expect("DATA", 354)
        s.send("Subject: orphan\r\n\r\n" + "body line\r\n" * 100 + ".\r\n")
        code, texts = s.reply()
        assert (code, texts[-1]) == (451, "4.3.0 Error: queue file write error"), texts
        inst.wait_log(r"cleanup did not confirm: peer closed")
        start_mail(s)
        s.expect("DATA", 354)
        s.send("Subject: fine\r\n\r\nbody\r\n.\r\n")
        code, texts = s.reply()
        assert code == 250, texts
        s.expect("QUIT", 221)


def test_root_instance_chrooted_smtpd():
    """As root, smtpd runs chrooted in the spool as mail_owner: tables are
    opened before the jail, the session and hand-off to cleanup work."""
    if not harness.is_root():
        print("skipped: needs root")
        return
    with instance(as_root=True) as inst:
        s = session(inst)
        start_mail(s, rcpts=("jones@localhost",))
        s.expect("RCPT TO:<nobody@localhost>", 550, r"^5\.1\.1 ")
        s.expect("DATA", 354)
        s.send("Subject: chrooted\r\n\r\nx\r\n.\r\n")
        code, texts = s.reply()
        assert code == 250, texts
        qid = queued_id(texts[-1])
        wait_queued(inst, qid)
        pids = [int(m) for m in re.findall(r"postern/smtpd\[(\d+)\]: connect from", inst.log())]
        pid = pids[-1]
        assert os.readlink("/proc/%d/root" % pid) == os.path.realpath(os.path.join(inst.dir, "spool"))
        with open("/proc/%d/status" % pid) as f:
            uid = re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1)
        import pwd
        assert pwd.getpwuid(int(uid)).pw_name == "postern"
        s.expect("QUIT", 221)


def test_http_client_and_queue_minfree():
    # a spool that can never have 1 EB free: MAIL is refused temporarily
    with instance({"queue_minfree": str(10 ** 18), "message_size_limit": "0"}) as inst:
        s = session(inst)
        s.expect("MAIL FROM:<a@example.com>", 452, r"^4\.3\.1 Insufficient system storage$")
        s.close()
        s = Session(inst.port)
        assert s.reply()[0] == 220
        s.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        code, texts = s.reply()
        assert code == 221 and texts[-1].startswith("2.7.0 "), texts
        assert s.closed()
        inst.wait_log(r"warning: non-SMTP command from localhost\[127\.0\.0\.1\]: GET$")
    with instance({"message_size_limit": "0"}) as inst:
        s = session(inst)
        # no size limit: a huge declared SIZE is judged by free space only
        s.expect("MAIL FROM:<a@example.com> SIZE=18000000000000000000", 452, r"^4\.3\.1 ")
        s.expect("MAIL FROM:<a@example.com> SIZE=1000", 250)
        s.expect("QUIT", 221)


def test_random_hostile_sessions_do_not_hurt_the_daemon():
    """Seeded random mixes of commands, control bytes, binary junk, huge
    lines and half transactions: every session gets replies, no smtpd dies
    abnormally, and a normal session works afterwards."""
    import random
    rnd = random.Random(5321)
    words = [b"EHLO x", b"HELO y", b"MAIL FROM:<a@example.com>", b"MAIL FROM:<>",
             b"RCPT TO:<jones@localhost>", b"RCPT TO:<x@elsewhere.example>", b"DATA",
             b"BDAT 5", b"BDAT 0 LAST", b"BDAT 3 LAST", b"RSET", b"NOOP", b"VRFY a",
             b".", b"\x00", b"\r", b"\xff\xfe", b"x" * 3000, b"RCPT TO:<jones@localhost> NOTIFY=X",
             b"MAIL FROM:<a@example.com> SIZE=99999999999999999999999", b"BDAT 99999999999"]
    conf = {"smtpd_timeout": "2s", "smtpd_error_sleep_time": "0"}
    with instance(conf) as inst:
        for _ in range(25):
            data = b"".join(rnd.choice(words) + rnd.choice([b"\r\n", b"\n", b"", b"\r"])
                            for _ in range(rnd.randint(1, 30)))
            data += bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 200)))
            s = Session(inst.port)
            assert s.reply()[0] == 220
            try:
                s.send(data)
                s.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass                    # the server may have hung up already
            assert s.closed(timeout=10)
            s.close()
        s = session(inst)
        start_mail(s)
        s.expect("DATA", 354)
        s.send("Subject: still fine\r\n\r\nx\r\n.\r\n")
        assert s.reply()[0] == 250
        s.expect("QUIT", 221)
        log = inst.log()
        assert not re.search(r"warning: process \S+smtpd pid \d+ (exit status|killed)", log), log
        assert not re.search(r"smtpd\[\d+\]: (fatal|panic):", log), log


def test_concurrent_clients():
    """Ten clients at once, five messages each: every one is queued once."""
    import threading
    results, errors = [], []

    def client(n):
        try:
            with harness_smtp(inst) as c:
                for i in range(5):
                    c.sendmail("c%d@example.com" % n, ["jones@localhost"],
                               "Subject: client %d message %d\r\n\r\nx\r\n" % (n, i))
                    results.append((n, i))
        except Exception as e:          # reported below, with the others
            errors.append(repr(e))

    def harness_smtp(instance):
        return instance.smtp(timeout=20)

    with instance() as inst:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert len(results) == 50
        qids = set(re.findall(r"smtpd\[\d+\]: ([0-9A-F]+): client=", inst.log()))
        assert len(qids) == 50
        inst.wait_for(lambda: len(re.findall(r"cleanup\[\d+\]: ([0-9A-F]+): message-id=",
                                             inst.log())) >= 50, 20, what="50 messages in cleanup's log")


def test_virtual_alias_domains_and_maps():
    virtual = ("virt.example anything\n"
               "sales@virt.example jones\n"
               "alias@localhost brown\n")
    conf = {"virtual_alias_maps": "texthash:DIR/virtual", "mynetworks": "192.0.2.0/24"}
    with instance(conf, access={"virtual": virtual}) as inst:
        s = session(inst)
        s.expect("MAIL FROM:<a@example.com>", 250)
        s.expect("RCPT TO:<sales@virt.example>", 250)      # a virtual domain: no relay
        s.expect("RCPT TO:<nobody@virt.example>", 550,
                 r"^5\.1\.1 <nobody@virt\.example>: Recipient address rejected: "
                 r"User unknown in virtual alias table$")
        s.expect("RCPT TO:<alias@localhost>", 250)         # known to virtual_alias_maps
        s.expect("RCPT TO:<other@elsewhere.example>", 450, r"Relay access denied$")
        s.expect("DATA", 354)
        s.send("Subject: virtual\r\n\r\nx\r\n.\r\n")
        code, texts = s.reply()
        assert code == 250, texts
        s.expect("QUIT", 221)


def test_configuration_errors_defer_mail():
    """An unknown restriction, an unknown access result or a missing table
    never lets mail through and never bounces it: 451 4.3.x and a warning."""
    access = {"rcpt_access": "odd@localhost FROBNICATE\n"}
    conf = {"smtpd_recipient_restrictions": "check_recipient_access texthash:DIR/rcpt_access, "
                                            "reject_bogus_thing",
            "smtpd_sender_restrictions": "check_sender_access texthash:DIR/does-not-exist"}
    with instance(conf, access=access) as inst:
        s = session(inst)
        s.expect("MAIL FROM:<a@example.com>", 250)
        s.expect("RCPT TO:<jones@localhost>", 451, r"^4\.3\.5 Server configuration error$")
        s.expect("QUIT", 221)
        inst.wait_log(r"warning: cannot open table texthash:\S+/does-not-exist: ")
        inst.wait_log(r"warning: smtpd_sender_restrictions: access table unavailable$")
    conf = {"smtpd_recipient_restrictions": "check_recipient_access texthash:DIR/rcpt_access, "
                                            "reject_bogus_thing"}
    with instance(conf, access=access) as inst:
        s = session(inst)
        s.expect("MAIL FROM:<a@example.com>", 250)
        s.expect("RCPT TO:<odd@localhost>", 451, r"^4\.3\.5 Server configuration error$")
        s.expect("RCPT TO:<jones@localhost>", 451, r"^4\.3\.5 Server configuration error$")
        s.expect("QUIT", 221)
        inst.wait_log(r'warning: smtpd_recipient_restrictions: unknown access table result "FROBNICATE"$')
        inst.wait_log(r'warning: smtpd_recipient_restrictions: unknown smtpd restriction: "reject_bogus_thing"$')


def test_client_and_helo_access():
    conf = {"smtpd_client_restrictions": "check_client_access texthash:DIR/client"}
    with instance(conf, access={"client": "127.0.0 DEFER slow down\n"}) as inst:
        s = session(inst)
        s.expect("MAIL FROM:<a@example.com>", 250)
        s.expect("RCPT TO:<jones@localhost>", 450,
                 r"^4\.7\.1 <localhost\[127\.0\.0\.1\]>: Client host rejected: slow down$")
        s.expect("QUIT", 221)
        inst.wait_log(r"NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 450 4\.7\.1 "
                      r"<localhost\[127\.0\.0\.1\]>: Client host rejected: slow down; "
                      r"from=<a@example\.com> to=<jones@localhost> proto=ESMTP helo=<client\.example>$")
    conf = {"smtpd_helo_restrictions": "check_helo_access texthash:DIR/helo, "
                                       "reject_non_fqdn_helo_hostname"}
    with instance(conf, access={"helo": "evil.example REJECT\n"}) as inst:
        for helo, code, pattern in (
                ("mx.evil.example", 554,
                 r"^5\.7\.1 <mx\.evil\.example>: Helo command rejected: Access denied$"),
                ("nodot", 504,
                 r"^5\.5\.2 <nodot>: Helo command rejected: need fully-qualified hostname$"),
                ("good.example", 250, r"^2\.1\.5 Ok$")):
            s = session(inst, "EHLO " + helo)
            s.expect("MAIL FROM:<a@example.com>", 250)
            s.expect("RCPT TO:<jones@localhost>", code, pattern)
            s.expect("QUIT", 221)
