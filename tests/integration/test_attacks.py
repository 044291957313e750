"""The attack battery: what strangers (and local users) try against an MTA,
run against a real instance.  Each test states the attack and checks that
it was refused with a precise reply, that nothing it aimed at happened
(no smuggled message, no relayed mail, no file written, no command run as
someone else), and that honest clients were still served.

Outsiders: the test client is 127.0.0.1, so mynetworks is set to a
network that excludes it (192.0.2.0/24); smtpd_forbid_bare_newline_exclusions
defaults to $mynetworks, so bare-LF rules apply to us as to any stranger.
"""
import os
import pwd
import re
import resource
import selectors
import socket
import threading
import time

import harness
from test_smtpd import Session, instance, session, start_mail, queued_id, wait_queued

OUTSIDER = {"mynetworks": "192.0.2.0/24"}

SMUGGLED = (b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<brown@localhost>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nsmuggled\r\n")

# Every published end-of-data confusion (SEC Consult 2023 and follow-ups):
# (name, bytes after the body, has a bare LF).  A bare LF anywhere means
# 550 5.5.2 for the whole message (Postfix 3.9 smtpd_forbid_bare_newline);
# the others are ordinary content, so the "smuggled" commands stay inside
# the one message and are never executed.
DATA_FORMS = [
    ("LF.LF", b"\n.\n", True),
    ("CRLF.LF", b"\r\n.\n", True),
    ("LF.CRLF", b"\n.\r\n", True),
    ("CR.CR", b"\r.\r", False),
    ("CR.CRLF", b"\r.\r\n", False),
    ("CRLF.CR", b"\r\n.\r", False),
    ("CR.LF", b"\r.\n", True),
    ("LF.CR", b"\n.\r", True),
    ("CRLF.NUL.CRLF", b"\r\n.\x00\r\n", False),
    ("CRLF.SP.CRLF", b"\r\n. \r\n", False),
]


def _no_evil(inst):
    log = inst.log()
    assert "from=<evil@example.com>" not in log, log
    assert "to=<brown@localhost>" not in log, log


def test_smuggling_data_forms_outsider():
    """An outsider tries every end-of-data variant followed by a second,
    smuggled transaction.  Bare-LF forms: 550 5.5.2 and the message is
    dropped; the rest: one message (250) holding the smuggled text as
    content.  Exactly one reply either way (the next reply answers NOOP),
    and no transaction from evil@ or to brown@ ever exists."""
    with instance(OUTSIDER) as inst:
        queued = []
        for name, seq, bare_lf in DATA_FORMS:
            s = session(inst)
            start_mail(s)
            s.expect("DATA", 354)
            s.send(b"Subject: " + name.encode() + b"\r\n\r\nbody" + seq + SMUGGLED + b".\r\n")
            code, texts = s.reply()
            if bare_lf:
                assert (code, texts[-1]) == (550, "5.5.2 Error: bare <LF> received"), (name, texts)
            else:
                assert code == 250, (name, texts)
                queued.append((name, queued_id(texts[-1])))
            s.expect("NOOP", 250, r"^2\.0\.0 Ok$")
            s.expect("QUIT", 221)
            s.close()
        for name, qid in queued:
            wait_queued(inst, qid)
            inst.wait_log(qid + r": removed", timeout=30)
        _no_evil(inst)
        # the accepted ones went to jones only, with the smuggled text inside
        nrcpt = re.findall(r"([0-9A-F]+): from=<smith@example\.com>, size=\d+, nrcpt=(\d+)", inst.log())
        assert sorted(q for q, _ in nrcpt) == sorted(q for _, q in queued)
        assert all(n == "1" for _, n in nrcpt)


def test_smuggling_bdat_forms():
    """BDAT content is counted, never scanned for a terminator: a chunk
    holding CRLF.CRLF and commands is content; a BDAT whose announced size
    swallows the following "commands" keeps them as content; BDAT after
    DATA or DATA after BDAT is refused (503 5.5.1)."""
    with instance(OUTSIDER) as inst:
        s = session(inst)
        start_mail(s)
        chunk = b"Subject: bdat\r\n\r\nbody\r\n.\r\n" + SMUGGLED
        s.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        code, texts = s.reply()
        assert code == 250, texts
        qid = queued_id(texts[-1])
        s.expect("NOOP", 250, r"^2\.0\.0 Ok$")
        # announced size covers a "QUIT" and a MAIL command: both content
        start_mail(s)
        tail = b"Subject: swallow\r\n\r\nx\r\nQUIT\r\n" + SMUGGLED
        s.send(b"BDAT %d\r\n" % len(tail) + tail)
        assert s.reply()[0] == 250
        s.expect("DATA", 503, r"^5\.5\.1 ")
        s.send(b"BDAT 0 LAST\r\n")
        code, texts = s.reply()
        assert code == 250, texts
        qid2 = queued_id(texts[-1])
        s.expect("QUIT", 221)
        for q in (qid, qid2):
            wait_queued(inst, q)
            inst.wait_log(q + r": removed", timeout=30)
        _no_evil(inst)


RELAY_FORMS = [
    # (recipient, acceptable refusal codes); all from an outsider
    ("user%remote.example@localhost", (550,)),
    ("remote.example!user@localhost", (550,)),
    ("@localhost:user@remote.example", (450, 454, 554)),
    ('"user@remote.example"@localhost', (550,)),
    ("user@remote.example@localhost", (501,)),
    ("user@[127.0.0.1]", (450, 454, 554)),
    ("jones@[127.0.0.1]", (450, 454, 554)),
    ("user@remote.example.", (501, 450, 454, 554)),
    ("user@remote.example.@localhost", (501,)),
    ("user@localhost.@remote.example", (501, 450, 454, 554)),
    ("user@Remote.Example", (450, 454, 554)),
    ("USER@REMOTE.EXAMPLE", (450, 454, 554)),
    ("user@remote.example:25", (501, 450, 454, 554)),
    ("user@localhost@remote.example", (501,)),
    ("<user@remote.example>", (501,)),
]


def test_open_relay_attempts_refused():
    """Every classic relay trick from outside mynetworks is refused at RCPT
    with an enhanced status code, and the session stays usable."""
    with instance(OUTSIDER) as inst:
        s = session(inst)
        s.expect("MAIL FROM:<spammer@example.com>", 250)
        for rcpt, codes in RELAY_FORMS:
            code, text = s.cmd("RCPT TO:<%s>" % rcpt)
            assert code in codes, (rcpt, code, text)
            assert re.match(r"^[45]\.\d\.\d+ ", text), (rcpt, text)
        # local, mixed case and a source route ending locally are fine
        s.expect("RCPT TO:<jones@LocalHost>", 250)
        s.expect("RCPT TO:<@remote.example:jones@localhost>", 250)
        s.expect("RSET", 250)
        s.expect("QUIT", 221)
        # nothing got past RCPT: no transaction was ever queued
        assert not re.search(r": from=<spammer@example\.com>, size=", inst.log())


def test_relay_tricks_accepted_locally_are_not_relayed():
    """With every local part accepted at RCPT (local_recipient_maps empty),
    the %, ! and quoted forms reach the queue - and are delivered (or
    bounced) by local as the odd local parts they are: no routing hack
    turns them into remote mail.  A real SMTP server (aiosmtpd) stands as
    relayhost and must receive nothing."""
    from aiosmtpd.controller import Controller

    got = []

    class Sink:
        async def handle_DATA(self, server, sess, envelope):
            got.append(envelope)
            return "250 OK"

    port = harness.free_port()
    ctl = Controller(Sink(), hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        conf = dict(OUTSIDER, local_recipient_maps="", relayhost="[127.0.0.1]:%d" % port)
        with instance(conf) as inst:
            rcpts = ["user%remote.example@localhost", "remote.example!user@localhost",
                     '"user@remote.example"@localhost', "user%remote.example%other.example@localhost"]
            s = session(inst)
            s.expect("MAIL FROM:<>", 250)
            for r in rcpts:
                s.expect("RCPT TO:<%s>" % r, 250)
            s.expect("DATA", 354)
            s.send("Subject: relay?\r\n\r\nx\r\n.\r\n")
            code, texts = s.reply()
            assert code == 250, texts
            qid = queued_id(texts[-1])
            s.expect("QUIT", 221)
            inst.wait_log(qid + r": removed", timeout=30)
            lines = re.findall(qid + r": to=<([^>]*)>.*relay=(\S+?),", inst.log())
            assert len(lines) == len(rcpts), inst.log()
            assert all(relay == "local" for _, relay in lines), lines
            assert sorted(a for a, _ in lines) == sorted(rcpts)
        assert got == []
    finally:
        ctl.stop()


def test_slow_clients_time_out_without_starving_others():
    """Clients trickling a byte a second (in a command and in DATA) are cut
    off once smtpd_timeout has passed for the request
    (smtpd_per_request_deadline = yes), with 421 4.4.2; an honest client
    connecting meanwhile is served at once."""
    conf = {"smtpd_timeout": "3s", "smtpd_per_request_deadline": "yes"}
    with instance(conf) as inst:
        results = {}

        def trickle(key, prefix, payload):
            s = Session(inst.port, timeout=30)
            try:
                assert s.reply()[0] == 220
                for cmd in prefix:
                    s.expect(cmd, 354 if cmd == "DATA" else 250)
                t0 = time.monotonic()
                try:
                    for b in payload:
                        s.send(bytes([b]))
                        time.sleep(1)
                except OSError:
                    pass                        # the server hung up on us
                s.sock.settimeout(30)
                code, texts = s.reply()
                results[key] = (code, texts[-1], time.monotonic() - t0)
            except Exception as e:              # reported by the main thread
                results[key] = e
            finally:
                s.close()

        threads = [
            threading.Thread(target=trickle, args=("cmd%d" % i, ["EHLO slow"], b"NOOP " + b"x" * 30 + b"\r\n"))
            for i in range(3)]
        threads.append(threading.Thread(
            target=trickle,
            args=("data", ["EHLO slow", "MAIL FROM:<a@example.com>", "RCPT TO:<jones@localhost>", "DATA"],
                  b"Subject: slow\r\n\r\n" + b"y" * 30 + b"\r\n.\r\n")))
        for t in threads:
            t.start()
        time.sleep(1)
        t0 = time.monotonic()
        s = session(inst)
        start_mail(s)
        s.expect("DATA", 354)
        s.send("Subject: honest\r\n\r\nfast\r\n.\r\n")
        code, texts = s.reply()
        assert code == 250, texts
        s.expect("QUIT", 221)
        assert time.monotonic() - t0 < 10, "honest client waited behind slow ones"
        for t in threads:
            t.join(60)
        for key, r in results.items():
            assert not isinstance(r, Exception), (key, r)
            code, text, took = r
            assert code == 421 and re.match(r"^4\.4\.2 \S+ Error: timeout exceeded$", text), (key, r)
            assert took < 20, (key, r)        # not the 30+ s the trickle would need
        assert len(results) == 4
        inst.wait_log(r"timeout after DATA from localhost\[127\.0\.0\.1\]$")
        assert "Subject: slow" not in "".join(inst.log())


def test_thousand_connections_wait_instead_of_failing():
    """1,000 clients connect at once to an instance with the default
    process limit (100 smtpd): every connection is accepted by the kernel
    backlog and eventually greeted (220) and served (QUIT -> 221); none is
    refused or reset."""
    n = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 200), hard))
    with instance({"smtpd_timeout": "60s"}) as inst:
        sel = selectors.DefaultSelector()
        state = {}
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            rc = sock.connect_ex(("127.0.0.1", inst.port))
            assert rc in (0, 115), os.strerror(rc)     # 115 EINPROGRESS
            state[sock] = {"buf": b"", "step": 0}
            sel.register(sock, selectors.EVENT_READ)
        done, failed = 0, []
        deadline = time.monotonic() + 180
        while done + len(failed) < n and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                sock, st = key.fileobj, state[key.fileobj]
                try:
                    data = sock.recv(4096)
                except OSError as e:
                    data, err = b"", e
                else:
                    err = None
                if not data:
                    failed.append((st["step"], st["buf"], err))
                    sel.unregister(sock)
                    sock.close()
                    continue
                st["buf"] += data
                if st["step"] == 0 and st["buf"].endswith(b"\r\n"):
                    assert st["buf"].startswith(b"220 "), st["buf"]
                    st["buf"], st["step"] = b"", 1
                    sock.setblocking(True)
                    sock.sendall(b"QUIT\r\n")
                    sock.setblocking(False)
                elif st["step"] == 1 and st["buf"].endswith(b"\r\n"):
                    assert st["buf"].startswith(b"221 "), st["buf"]
                    done += 1
                    sel.unregister(sock)
                    sock.close()
        for sock in list(sel.get_map().values()):
            sock.fileobj.close()
        assert not failed, failed[:5]
        assert done == n, "%d of %d served in time" % (done, n)
        log = inst.log()
        assert len(re.findall(r"smtpd\[\d+\]: connect from", log)) >= n
        assert not re.search(r"smtpd\[\d+\]: (fatal|panic):", log)


def _blast_rcpts(s, n):
    """Pipeline n RCPTs from a thread; return the replies read until n
    arrived or the server closed (EOF or reset)."""
    batch = b"".join(b"RCPT TO:<u%d@localhost>\r\n" % i for i in range(n))

    def push():
        try:
            s.sock.sendall(batch)
        except OSError:
            pass                                # the server hung up
    sender = threading.Thread(target=push)
    sender.start()
    replies = []
    try:
        while len(replies) < n:
            replies.append(s.reply())
    except (EOFError, ConnectionResetError):
        pass
    sender.join(60)
    return replies


def test_ten_thousand_recipients_hit_the_limit():
    """10,000 pipelined RCPTs.  The first smtpd_recipient_limit (1000) get
    250, the excess 452 4.5.3.  With a large overshoot limit the session
    goes on: DATA is accepted and the message carries exactly 1000
    recipients.  With Postfix's default overshoot limit (1000) the excess
    beyond it counts as errors and the client is cut off at the hard error
    limit (421 4.7.0, unless the close outran it) - with nothing queued."""
    conf = {"local_recipient_maps": "", "smtpd_recipient_overshoot_limit": "10000"}
    with instance(conf) as inst:
        s = session(inst)
        s.expect("MAIL FROM:<a@example.com>", 250)
        replies = _blast_rcpts(s, 10000)
        assert len(replies) == 10000
        assert replies[:1000] == [(250, ["2.1.5 Ok"])] * 1000, replies[:3]
        assert replies[1000:] == [(452, ["4.5.3 Error: too many recipients"])] * 9000
        s.expect("DATA", 354)
        s.send("Subject: many\r\n\r\nx\r\n.\r\n")
        code, texts = s.reply()
        assert code == 250, texts
        qid = queued_id(texts[-1])
        s.expect("QUIT", 221)
        inst.wait_log(qid + r": from=<a@example\.com>, size=\d+, nrcpt=1000 ", timeout=30)

    conf = {"local_recipient_maps": "", "smtpd_error_sleep_time": "0"}
    with instance(conf) as inst:
        s = session(inst)
        s.expect("MAIL FROM:<a@example.com>", 250)
        replies = _blast_rcpts(s, 10000)
        assert replies[:1000] == [(250, ["2.1.5 Ok"])] * 1000, \
            (len(replies), inst.log()[-1500:])
        over = replies[1000:]
        if over and over[-1][0] == 421:
            assert re.match(r"^4\.7\.0 \S+ Error: too many errors$", over[-1][1][-1]), over[-1]
            over = over[:-1]
        # 1000 free 452s, then hard_error_limit (20) counted ones
        assert len(over) >= 1000 and set(c for c, _ in over) == {452}, len(over)
        assert len(over) <= 1020, len(over)
        assert s.closed()
        inst.wait_log(r"too many errors after RCPT from localhost\[127\.0\.0\.1\]$")
        s = session(inst)                       # the server is fine
        s.expect("NOOP", 250)
        s.expect("QUIT", 221)
        assert not re.search(r": from=<a@example\.com>, size=", inst.log())


def _spool_bytes(inst):
    total = 0
    for root, _dirs, files in os.walk(os.path.join(inst.dir, "spool")):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def test_hundred_megabyte_message_over_limit():
    """A 100 MB message against a 10 MB message_size_limit: 552 5.3.4
    after the data (read and dropped), while the spool never holds more
    than the limit plus a little (sampled throughout), and nothing is
    queued."""
    limit = 10 * 1024 * 1024
    with instance({"message_size_limit": str(limit)}) as inst:
        s = session(inst)
        start_mail(s)
        s.expect("DATA", 354)
        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], _spool_bytes(inst))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            line = b"x" * 998 + b"\r\n"
            block = line * 1024                          # ~1 MB
            s.sock.settimeout(120)
            s.send(b"Subject: huge\r\n\r\n")
            for _ in range(100):
                s.send(block)
            s.send(b".\r\n")
            code, texts = s.reply()
        finally:
            stop.set()
            sampler.join()
        assert (code, texts[-1]) == (552, "5.3.4 Message size exceeds fixed limit"), texts
        s.expect("NOOP", 250)
        s.expect("QUIT", 221)
        assert peak[0] <= limit + 1024 * 1024, "spool grew to %d bytes" % peak[0]
        assert not re.search(r": from=<smith@example\.com>, size=", inst.log())


def test_declared_size_over_limit_refused_at_mail():
    with instance({"message_size_limit": "1000000"}) as inst:
        s = session(inst)
        s.expect("MAIL FROM:<a@example.com> SIZE=104857600", 552,
                 r"^5\.3\.4 Message size exceeds fixed limit$")
        s.expect("QUIT", 221)


# ---------------------------------------------------------------- local

ATTACKER, VICTIM = "pthostile1", "pthostile2"


def _ensure_user(name, home):
    import subprocess
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/sh",
                        "--user-group", name], check=True, capture_output=True)
    subprocess.run(["usermod", "--home", home, name], check=True, capture_output=True)
    os.makedirs(home, exist_ok=True)
    pw = pwd.getpwnam(name)
    os.chown(home, pw.pw_uid, pw.pw_gid)
    os.chmod(home, 0o755)
    return pw


def _write(path, text, owner, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chown(path, owner.pw_uid, owner.pw_gid)
    os.chmod(path, mode)


def test_local_forward_attacks():
    """A root instance; two accounts, an attacker and a victim.  Every
    trick a .forward can play is tried; none may run anything as another
    user or write outside the attacker's reach:
      - the attacker's .forward runs a command: it runs as the attacker;
      - it names a file in the victim's home: the write fails (done with
        the attacker's uid), the victim's file is unchanged;
      - it :include:s a list with a command: refused (include is not in
        allow_mail_to_commands);
      - the victim's .forward is owned by the attacker, or is a symlink to
        the attacker's file, or is group/world writable: ignored, so the
        victim's mail goes to the victim's mailbox and nothing runs."""
    if not harness.is_root():
        return
    with harness.Instance(as_root=True, start=False) as inst:
        base = os.path.join(inst.tmp, "home")
        os.mkdir(base)
        os.chmod(base, 0o755)
        att = _ensure_user(ATTACKER, os.path.join(base, ATTACKER))
        vic = _ensure_user(VICTIM, os.path.join(base, VICTIM))
        out = os.path.join(inst.tmp, "out")
        os.mkdir(out)
        os.chmod(out, 0o777)
        secret = os.path.join(vic.pw_dir, "secret")
        _write(secret, "victim's file\n", vic, 0o644)
        list_file = os.path.join(att.pw_dir, "list")
        _write(list_file, '"|touch %s/from_include"\n' % out, att)
        _write(os.path.join(att.pw_dir, ".forward"),
               '"|id -u > %s/attacker_uid", %s, :include:%s\n' % (out, secret, list_file), att)
        # the victim's .forward: owned by the attacker
        _write(os.path.join(vic.pw_dir, ".forward"), '"|touch %s/as_victim_owned"\n' % out, att)
        inst.edit_main_cf({"mail_spool_directory": os.path.join(inst.dir, "mail") + "/"})
        r = inst.postern("start")
        assert r.returncode == 0, r.stderr + inst.log()
        harness.wait_for(lambda: harness.port_accepts(inst.port), 10, what="smtp port")

        def send(rcpt, subject):
            with inst.smtp() as s:
                assert s.sendmail("someone@localhost", [rcpt], "Subject: %s\r\n\r\nx\r\n" % subject) == {}

        send("%s@localhost" % ATTACKER, "attacker")
        m = inst.wait_log(r"to=<%s@localhost>, relay=local, .*status=(\w+) \((.*)\)$" % ATTACKER,
                          timeout=30)
        harness.wait_for(lambda: os.path.exists(os.path.join(out, "attacker_uid")), 10)
        with open(os.path.join(out, "attacker_uid")) as f:
            assert f.read().strip() == str(att.pw_uid)
        with open(secret) as f:
            assert f.read() == "victim's file\n"
        assert not os.path.exists(os.path.join(out, "from_include"))
        assert m.group(1) in ("sent", "bounced", "deferred"), m.group(0)

        # victim: .forward owned by the attacker -> ignored
        send("%s@localhost" % VICTIM, "v1")
        inst.wait_log(r"to=<%s@localhost>, relay=local, .*status=sent \(delivered to maildir\)"
                      % VICTIM, timeout=30)
        # victim: .forward a symlink to the attacker's file -> ignored
        fwd = os.path.join(vic.pw_dir, ".forward")
        os.unlink(fwd)
        _write(os.path.join(att.pw_dir, "fwd2"), '"|touch %s/via_symlink"\n' % out, att)
        os.symlink(os.path.join(att.pw_dir, "fwd2"), fwd)
        os.lchown(fwd, vic.pw_uid, vic.pw_gid)
        send("%s@localhost" % VICTIM, "v2")
        # victim: own .forward but world writable -> ignored
        inst.wait_log(r"(to=<%s@localhost>, relay=local, .*status=sent \(delivered to maildir\)"
                      r"[\s\S]*){2}" % VICTIM, timeout=30)
        os.unlink(fwd)
        _write(fwd, '"|touch %s/world_writable"\n' % out, vic, 0o666)
        send("%s@localhost" % VICTIM, "v3")
        inst.wait_log(r"(to=<%s@localhost>, relay=local, .*status=sent \(delivered to maildir\)"
                      r"[\s\S]*){3}" % VICTIM, timeout=30)
        for f in ("as_victim_owned", "via_symlink", "world_writable", "from_include"):
            assert not os.path.exists(os.path.join(out, f)), f
        assert len(inst.mailbox(VICTIM)) == 3


def test_crafted_maildrop_file_runs_nothing():
    """A root instance; an ordinary user (nobody) owns a maildrop file it
    crafted: recipients that look like a command, a file and an :include:,
    a forged Received line, and a Delivered-To header.  pickup takes the
    submitter from the file owner; local treats the odd local parts as
    unknown users (bounced, to a null sender: dropped) - nothing runs,
    nothing is written, and the real recipient gets the mail once."""
    if not harness.is_root():
        return
    from test_pickup import rec, qid
    nobody = pwd.getpwnam("nobody")
    with harness.Instance(as_root=True, conf={"local_recipient_maps": ""}) as inst:
        out = os.path.join(inst.tmp, "out")
        os.mkdir(out)
        os.chmod(out, 0o777)
        with open(os.path.join(out, "list"), "w") as f:
            f.write('"|touch %s/from_include"\n' % out)
        evil = ['"|touch %s/cmd"' % out, "%s/file" % out, '":include:%s/list"' % out]
        maildrop = os.path.join(inst.dir, "spool", "maildrop")

        def drop(n, rcpts):
            data = rec("V", "1") + rec("S", "")
            for r in rcpts:
                data += rec("R", r)
            data += (rec("L", "Received: from trusted by root (uid 0)") +
                     rec("L", "Delivered-To: nobody@localhost") + rec("L", "Subject: crafted") +
                     rec("L", "") + rec("L", "body") + rec("E", ""))
            path = os.path.join(maildrop, qid(n))
            with open(path, "wb") as f:
                f.write(data)
            os.chown(path, nobody.pw_uid, os.stat(maildrop).st_gid)
            os.chmod(path, 0o644)

        # an unquoted command is no address at all: the file is refused
        drop(8, ["|touch %s/cmd2" % out, "nobody"])
        drop(7, evil + ["nobody"])
        s = socket.socket(socket.AF_UNIX)
        try:                                # wake pickup (its timer is 60 s)
            s.connect(os.path.join(inst.dir, "spool", "public", "pickup"))
        except OSError:
            pass
        s.close()
        inst.wait_log(r"pickup\[\d+\]: warning: maildrop/%s: bad recipient address; "
                      r"moved to corrupt/" % qid(8), timeout=70)
        m = inst.wait_log(r"pickup\[\d+\]: ([0-9A-F]+): uid=(\d+) from=<>", timeout=70)
        assert int(m.group(2)) == nobody.pw_uid, m.group(0)
        qid_ = m.group(1)
        inst.wait_log(qid_ + r": removed", timeout=30)
        log = inst.log()
        lines = [l for l in log.splitlines() if qid_ + ": to=<" in l]
        assert len(lines) == len(evil) + 1, lines
        for l in lines:
            if "to=<nobody@" in l:
                assert "status=sent" in l, l
            else:
                assert "status=sent" not in l, l
        for f in ("cmd", "cmd2", "file", "from_include"):
            assert not os.path.exists(os.path.join(out, f)), f
        assert os.listdir(os.path.join(inst.dir, "spool", "corrupt")) == [qid(8)]
