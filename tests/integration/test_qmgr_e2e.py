"""test_qmgr_e2e.py - qmgr inside a real instance (harness.py): master
starts it, smtpd and cleanup feed it, its notices go back through the
real cleanup.  The notice is read back from its queue file and parsed
with Python's email package.
"""
import email
import email.policy
import os
import re
import subprocess

import harness
from qmgr_rig import ipc_call, rec_get


def queue_file_records(path):
    """[(type, bytes)] of a queue file (common/queue.h format)."""
    data = open(path, "rb").read()
    out, pos = [], 0
    while pos < len(data):
        t = chr(data[pos])
        colon = data.index(b":", pos)
        n = int(data[pos + 1:colon])
        out.append((t, data[colon + 1:colon + 1 + n]))
        pos = colon + 1 + n + 1
    return out


def find_queue_file(inst, qid):
    spool = os.path.join(inst.dir, "spool")
    for q in ("incoming", "active", "deferred/" + qid[13], "hold"):
        p = os.path.join(spool, q, qid)
        if os.path.exists(p):
            return p
    return None


def started(conf, files):
    inst = harness.Instance(conf=conf, start=False)
    inst.__enter__()
    for name, text in files.items():
        with open(os.path.join(inst.dir, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(inst.dir, name), 0o644)
    r = inst.postern("start")
    if r.returncode != 0:
        inst.__exit__(None, None, None)
        raise AssertionError("postern start failed:\n" + r.stderr + inst.log())
    harness.wait_for(lambda: harness.port_accepts(inst.port), 10, what="smtp port")
    return inst


def test_bounce_through_real_cleanup_then_flush():
    inst = started({"transport_maps": "texthash:$config_directory/transport"},
                   {"transport": "bad.example error:5.1.1 No such domain here\n"
                                 "example.org parked:\n"})
    try:
        with inst.smtp() as s:
            s.sendmail("alice@example.org", ["bob@bad.example"],
                       "From: alice@example.org\r\nSubject: e2e\r\n\r\nthe body\r\n")
        m = inst.wait_log(r"(\w+): to=<bob@bad.example>, relay=none, .*dsn=5.1.1, "
                          r"status=bounced \(No such domain here\)")
        qid = m.group(1)
        n = inst.wait_log(qid + r": sender non-delivery notification: (\w+)")
        notice = n.group(1)
        inst.wait_log(qid + r": removed")
        # The notice goes to example.org, parked on a transport that is not
        # in master.cf: deferred, waiting in deferred/.
        inst.wait_log(notice + r": to=<alice@example.org>, .*status=deferred "
                      r"\(mail transport unavailable\)")
        path = harness.wait_for(lambda: (lambda p: p if p and "/deferred/" in p else None)(
            find_queue_file(inst, notice)), what="notice in deferred/")
        recs = queue_file_records(path)
        assert [v for t, v in recs if t == "S"] == [b""]      # null sender
        assert b"origin=bounce" in [v for t, v in recs if t == "A"]
        text = "\n".join(v.decode() for t, v in recs if t == "L")
        msg = email.message_from_string(text, policy=email.policy.compat32)
        assert msg.get_content_type() == "multipart/report"
        assert msg["Subject"] == "Undelivered Mail Returned to Sender"
        parts = msg.get_payload()
        assert [p.get_content_type() for p in parts] == \
            ["text/plain", "message/delivery-status", "message/rfc822"]
        groups = parts[1].get_payload()
        assert groups[0]["X-Postern-Queue-ID"] == qid
        assert groups[1]["Final-Recipient"] == "rfc822; bob@bad.example"
        assert groups[1]["Action"] == "failed"
        assert groups[1]["Status"] == "5.1.1"
        returned = parts[2].get_payload()[0]
        assert returned["Subject"] == "e2e"
        # A flush makes qmgr try the notice again at once.
        spool = os.path.join(inst.dir, "spool")
        reply = ipc_call(os.path.join(spool, "public", "qmgr"), [("request", "flush")])
        assert rec_get(reply, "status") == "0"
        harness.wait_for(lambda: len(re.findall(notice + r": from=<>", inst.log())) == 2,
                         what="second attempt after flush")
    finally:
        inst.__exit__(None, None, None)


def parse_delivered(text):
    msg = email.message_from_string(text, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts][:2] == ["text/plain", "message/delivery-status"]
    return msg, parts, parts[1].get_payload()


def test_bounce_delivered_to_local_sender_mailbox():
    inst = started({"transport_maps": "texthash:$config_directory/transport"},
                   {"transport": "bad.example error:5.1.1 No such domain here\n"})
    try:
        with inst.smtp() as s:
            s.sendmail("postmaster@localhost", ["bob@bad.example", "postmaster@localhost"],
                       "From: postmaster@localhost\r\nSubject: e2e local\r\n\r\nbody\r\n")
        m = inst.wait_log(r"(\w+): sender non-delivery notification: (\w+)")
        qid, notice = m.group(1), m.group(2)
        inst.wait_log(qid + r": removed")
        inst.wait_log(notice + r": to=<postmaster@localhost>, relay=local, .*status=sent")
        inst.wait_log(notice + r": removed")
        # postmaster is an alias of root: the original and the notice.
        msgs = harness.wait_for(lambda: (lambda b: b if len(b) == 2 else None)(
            inst.mailbox("root")), what="two messages for root")
        reports = [t for t in msgs if "multipart/report" in t]
        assert len(reports) == 1
        msg, parts, groups = parse_delivered(reports[0])
        assert msg["Return-Path"] == "<>"
        assert msg["Subject"] == "Undelivered Mail Returned to Sender"
        assert groups[1]["Final-Recipient"] == "rfc822; bob@bad.example"
        assert groups[1]["Status"] == "5.1.1"
        assert parts[2].get_payload()[0]["Subject"] == "e2e local"
    finally:
        inst.__exit__(None, None, None)


def test_null_sender_bounce_goes_to_postmaster_once():
    inst = started({"transport_maps": "texthash:$config_directory/transport"},
                   {"transport": "bad.example error:5.1.1 No such domain here\n"})
    try:
        with inst.smtp() as s:
            s.sendmail("<>", ["bob@bad.example"],
                       "From: MAILER-DAEMON@remote.example\r\nSubject: a bounce\r\n\r\nx\r\n")
        m = inst.wait_log(r"(\w+): sender non-delivery notification: (\w+)")
        notice = m.group(2)
        inst.wait_log(notice + r": from=<double-bounce@localhost.localdomain>")
        try:
            inst.wait_log(notice + r": to=<postmaster[^>]*>, .*status=sent")
        except AssertionError:
            print(inst.log())
            raise
        msgs = harness.wait_for(lambda: inst.mailbox("root") or None, what="root mailbox")
        assert len(msgs) == 1
        msg, parts, groups = parse_delivered(msgs[0])
        assert msg["Return-Path"] == "<double-bounce@localhost.localdomain>"
        assert groups[1]["Final-Recipient"] == "rfc822; bob@bad.example"
    finally:
        inst.__exit__(None, None, None)


def qmgr_connects_while_delivering(watch):
    """Three messages by SMTP to a local Maildir, one after the other, in
    an instance with queue_run_delay = 1h (master's qmgr timer, 300 s,
    fired at start): each must arrive within seconds.  strace follows
    the master's new children meanwhile (cleanup is started for the
    first message); returns their connect() calls to public/qmgr and the
    number of cleanup processes started (traced)."""
    conf = {"local_recipient_maps": "", "queue_run_delay": "3600s"}
    if not watch:
        conf["qmgr_watch_incoming"] = "no"
    with harness.Instance(conf=conf) as inst:
        trace = os.path.join(inst.tmp, "strace")
        st = subprocess.Popen(["strace", "-f", "-o", trace, "-e", "trace=connect,execve",
                               "-p", str(inst.master_pid())], stderr=subprocess.PIPE)
        try:
            assert b"attached" in st.stderr.readline()
            for i in range(3):
                with inst.smtp() as s:
                    s.sendmail("sender@localhost", ["alice@localhost"],
                               "From: sender@localhost\r\nSubject: %d\r\n\r\nbody\r\n" % i)
                inst.wait_for(lambda: len(inst.mailbox("alice")) == i + 1, 10,
                              what="message %d in alice's Maildir" % i)
        finally:
            st.terminate()
            st.wait()
        text = open(trace).read()
        return (len(re.findall(r'connect\(\d+, \{sa_family=AF_UNIX, sun_path="[^"]*public/qmgr"',
                               text)),
                len(re.findall(r'execve\("[^"]*/libexec/cleanup"', text)))


def test_new_mail_reaches_qmgr_through_its_watch_not_a_wakeup():
    """Default qmgr_watch_incoming = yes: qmgr sees each commit in
    incoming/ itself; no cleanup connects to public/qmgr."""
    to_qmgr, cleanups = qmgr_connects_while_delivering(watch=True)
    assert cleanups >= 1, cleanups              # cleanup ran under the trace
    assert to_qmgr == 0, to_qmgr


def test_new_mail_reaches_qmgr_through_wakeups_without_the_watch():
    """qmgr_watch_incoming = no: as before, cleanup wakes qmgr per message."""
    to_qmgr, cleanups = qmgr_connects_while_delivering(watch=False)
    assert cleanups >= 1, cleanups
    assert to_qmgr == 3, to_qmgr


def test_chrooted_qmgr_watches_incoming():
    """A root instance whose qmgr is chrooted (master.cf chroot column y):
    the watch is set on incoming/ relative to the spool, inside the jail;
    new mail is taken at once (defer_transports keeps it from delivery:
    it is deferred promptly, with queue_run_delay = 1h)."""
    if not harness.is_root():
        print("skipped: needs root")
        return
    conf = {"local_recipient_maps": "", "defer_transports": "local",
            "queue_run_delay": "3600s"}
    with harness.Instance(as_root=True, conf=conf, start=False) as inst:
        path = os.path.join(inst.dir, "master.cf")
        text = open(path).read()
        text, n = re.subn(r"(?m)^qmgr(\s+unix\s+\S+\s+\S+\s+)n(\s)", r"qmgr\1y\2", text)
        assert n == 1, text
        open(path, "w").write(text)
        r = inst.postern("start")
        assert r.returncode == 0, r.stderr + inst.log()
        harness.wait_for(lambda: harness.port_accepts(inst.port), 10, what="smtp port")
        spool = os.path.realpath(os.path.join(inst.dir, "spool"))

        def chrooted_qmgr_with_watch():
            for pid in inst.pids():
                try:
                    if open("/proc/%d/comm" % pid).read().strip() != "qmgr" \
                            or os.readlink("/proc/%d/root" % pid) != spool:
                        continue
                    fd_dir = "/proc/%d/fd" % pid
                    if "anon_inode:inotify" in [os.readlink(os.path.join(fd_dir, fd))
                                                for fd in os.listdir(fd_dir)]:
                        return pid
                except OSError:
                    pass
            return None
        harness.wait_for(chrooted_qmgr_with_watch, what="a chrooted qmgr with its watch")
        # the second message comes long after any start-up scan
        for i in range(2):
            with inst.smtp() as s:
                s.sendmail("sender@localhost", ["root@localhost"],
                           "From: sender@localhost\r\nSubject: %d\r\n\r\nbody\r\n" % i)
            harness.wait_for(lambda: len(re.findall(r"to=<root@localhost>, .*status=deferred "
                                                    r"\(deferred transport\)", inst.log())) == i + 1,
                             10, what="message %d deferred" % i)
        assert "cannot watch" not in inst.log()
