"""Reuse of finished queue files (issue 9, doc/queue-file.md "recycle/"):
qmgr moves a finished queue file to recycle/ instead of unlinking it (at
most queue_file_reuse_limit files), and cleanup takes files from there for
new messages.  A queue id ends with the file's inode number in hex, so a
new message whose id names an inode that was waiting in recycle/ was
written into a reused file (an inode in recycle/ is still allocated: the
file system cannot have handed it to a new file)."""
import os
import random
import re
import smtplib
import threading
import time

import harness
from harness import Instance, wait_for
from test_durability import _have, _kill_storm, _queued, _subjects

MSG = "From: s@localhost\r\nTo: alice@localhost\r\nSubject: %s\r\n\r\n%s\r\n"
CONF = {"local_recipient_maps": ""}


def _needed():
    if not _have("smtpd", "cleanup", "qmgr", "local"):
        print("skipped: daemons not built")
        return False
    return True


def _recycle_dir(inst):
    return os.path.join(inst.dir, "spool", "recycle")


def _recycled(inst):
    """{name: inode} of the files in recycle/ now."""
    out = {}
    d = _recycle_dir(inst)
    for name in os.listdir(d):
        try:
            out[name] = os.stat(os.path.join(d, name)).st_ino
        except FileNotFoundError:
            pass                                # taken by a cleanup meanwhile
    return out


def _send(inst, subject, body):
    """Send one message; its queue id."""
    with inst.smtp(timeout=30) as s:
        assert s.ehlo()[0] == 250
        assert s.mail("s@localhost")[0] == 250
        assert s.rcpt("alice@localhost")[0] == 250
        code, reply = s.data(MSG % (subject, body))
        assert code == 250, reply
        return re.search(rb"queued as ([0-9A-F]+)", reply).group(1).decode()


def _inode_of_qid(qid):
    return int(qid[14:], 16)


def _wait_subjects(inst, subjects):
    wait_for(lambda: set(subjects) <= set(_subjects(inst, "alice")), 60,
             what="delivery of %d messages" % len(subjects))


def _removed_count(inst):
    return len(re.findall(r"qmgr\[\d+\]: [0-9A-F]+: removed$", inst.log(), re.M))


def test_finished_files_go_to_recycle_and_are_reused():
    if not _needed():
        return
    limit = 5
    with Instance(conf=dict(CONF, queue_file_reuse_limit=str(limit))) as inst:
        assert os.path.isdir(_recycle_dir(inst))
        assert oct(os.stat(_recycle_dir(inst)).st_mode & 0o777) == oct(0o700)
        first = ["first %d" % i for i in range(12)]
        for subject in first:
            _send(inst, subject, "x")
        _wait_subjects(inst, first)
        wait_for(lambda: _removed_count(inst) >= len(first), what="12 removals logged")
        held = _recycled(inst)
        assert 1 <= len(held) <= limit, held
        # The files keep the name of the message they held: its id, whose
        # last part is the inode.
        for name, ino in held.items():
            assert _inode_of_qid(name) == ino, (name, ino)
        assert not _queued(inst, "incoming") and not _queued(inst, "active")
        # recycle/ is not a queue: nothing there is listed or shown.
        listing = inst.postern("queue", "list", "-j")
        assert listing.returncode == 0, listing.stderr
        shown = inst.postern("queue", "cat", sorted(held)[0])
        assert shown.returncode == 1 and "no such message" in shown.stderr, shown
        for name in held:
            assert name not in listing.stdout, listing.stdout

        # New mail takes them.  A cleanup that found recycle/ empty creates
        # its next few files without looking, so send more than that.
        waiting = set(held.values())
        second, reused = [], []
        for i in range(40):
            subject = "second %d" % i
            second.append(subject)
            qid = _send(inst, subject, "y" * (i * 100))
            if _inode_of_qid(qid) in waiting:
                reused.append(qid)
            assert len(_recycled(inst)) <= limit
        assert reused, "no new queue file used an inode from recycle/ %s" % sorted(waiting)
        _wait_subjects(inst, second)
        wait_for(lambda: _removed_count(inst) >= len(first) + len(second),
                 what="every removal logged")
        assert len(_recycled(inst)) <= limit
        # Exactly once each, with the content sent.
        got = _subjects(inst, "alice")
        for subject in first + second:
            assert got.count(subject) == 1, subject
        for m in inst.mailbox("alice"):
            found = re.search(r"^Subject: second (\d+)$", m, re.M)
            if found:
                body = m.split("\n\n", 1)[1]
                assert body == "y" * (int(found.group(1)) * 100) + "\n", m[-200:]
        # The reuse is invisible in the log: every message one "removed".
        for qid in reused:
            assert re.search(r": %s: removed$" % qid, inst.log(), re.M), qid
        assert _queued(inst, "corrupt") == []


def test_limit_zero_unlinks_as_before():
    if not _needed():
        return
    with Instance(conf=dict(CONF, queue_file_reuse_limit="0")) as inst:
        subjects = ["zero %d" % i for i in range(10)]
        for subject in subjects:
            _send(inst, subject, "z")
        _wait_subjects(inst, subjects)
        wait_for(lambda: _removed_count(inst) >= len(subjects), what="10 removals logged")
        assert _recycled(inst) == {}
        assert not _queued(inst, "incoming") and not _queued(inst, "active")


def test_big_and_small_messages_through_reused_files():
    """Files of every size are reused for messages of every other size;
    each Maildir copy must be exactly what was sent (an old, longer
    message's tail must never show)."""
    if not _needed():
        return
    with Instance(conf=dict(CONF, queue_file_reuse_limit="50")) as inst:
        sent = {}
        rng = random.Random(9)
        sizes = [3000] * 6 + [1] * 12 + [1500, 2, 2500, 3, 800, 1] * 3
        for n, lines in enumerate(sizes):
            subject = "size %d" % n
            body = "\r\n".join("%s line %d %s" % (subject, i, "b" * rng.randint(0, 90))
                               for i in range(lines))
            sent[subject] = body.replace("\r\n", "\n") + "\n"
            _send(inst, subject, body)
            if n == 5:
                # Let the big ones finish and land in recycle/ first.
                _wait_subjects(inst, list(sent))
                wait_for(lambda: len(_recycled(inst)) >= 1, what="files in recycle/")
        _wait_subjects(inst, list(sent))
        got = {}
        for m in inst.mailbox("alice"):
            found = re.search(r"^Subject: (size \d+)$", m, re.M)
            assert found, m[:300]
            assert found.group(1) not in got, "delivered twice: " + found.group(1)
            got[found.group(1)] = m.split("\n\n", 1)[1]
        assert set(got) == set(sent)
        for subject, body in sent.items():
            assert got[subject] == body, (subject, len(got[subject]), len(body))
        assert _queued(inst, "corrupt") == []


def test_sigkill_cleanup_during_data_with_reuse_loses_nothing():
    """As test_durability's kill test, with recycling on: cleanup killed
    after claiming a file from recycle/ (mid-message) must leave nothing
    that is delivered, and lose no acknowledged message."""
    if not _needed():
        return
    conf = dict(CONF, service_throttle_time="1s", queue_file_reuse_limit="100")
    with Instance(conf=conf) as inst:
        acked, lock = [], threading.Lock()
        stop = threading.Event()
        body = "\r\n".join("line %d of a message long enough to be written in pieces" % i
                           for i in range(2000))
        # Something to reuse from the start.
        warm = ["warm %d" % i for i in range(10)]
        for subject in warm:
            _send(inst, subject, "w")
        _wait_subjects(inst, warm)
        wait_for(lambda: _recycled(inst), what="files in recycle/")
        waiting = set(_recycled(inst).values())

        reused_ids = []

        def client(k):
            n = 0
            while not stop.is_set():
                subject = "c%d-m%d" % (k, n)
                n += 1
                try:
                    with smtplib.SMTP("127.0.0.1", inst.port, timeout=20) as s:
                        s.ehlo()
                        s.mail("s@localhost")
                        s.rcpt("alice@localhost")
                        code, reply = s.data(MSG % (subject, body))
                except (smtplib.SMTPException, OSError):
                    continue                    # not acknowledged: no promise
                if code != 250:
                    continue
                qid = re.search(rb"queued as ([0-9A-F]+)", reply).group(1).decode()
                with lock:
                    acked.append(subject)
                    if _inode_of_qid(qid) in waiting:
                        reused_ids.append(qid)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        try:
            kills = _kill_storm(inst, ("cleanup",), 5, seed=5)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        print("SIGKILLs: %d, acknowledged: %d, in reused files: %d"
              % (kills, len(acked), len(reused_ids)))
        assert kills > 5, kills
        assert acked, "no message was acknowledged at all"
        wait_for(lambda: set(acked) <= set(_subjects(inst, "alice")), 60,
                 what="every acknowledged message in the mailbox")
        wait_for(lambda: not _queued(inst, "incoming") and not _queued(inst, "active"), 30,
                 what="an empty queue")
        assert _queued(inst, "corrupt") == []
        got = _subjects(inst, "alice")
        for subject in set(acked):
            assert got.count(subject) == 1, subject
        for subject in got:
            assert got.count(subject) == 1, "delivered twice: " + subject
        for m in inst.mailbox("alice"):
            if "Subject: c" in m:
                assert m.rstrip("\n").endswith("line 1999 of a message long enough to be "
                                               "written in pieces"), m[-200:]
        # (A cleanup killed after its commit but before its reply leaves a
        # message that is delivered without having been acknowledged: as
        # without reuse.  What must never be delivered is a half-written
        # one: every copy above ends with its last line.)
        assert reused_ids, "no acknowledged message was in a reused file"
        assert len(_recycled(inst)) <= 100
