"""postdrop and pickup: the maildrop as untrusted input.  Malformed
maildrop files are moved to corrupt/ with a warning (pickup never
crashes, good mail behind them is still delivered); postdrop refuses
malformed record streams and leaves nothing behind; a root instance
(setgid model: maildrop/ owned by postern, group postdrop, mode 1730)
takes mail from root through a chrooted pickup."""
import grp
import os
import pwd
import re
import signal
import stat
import subprocess

import harness

CONF = {"local_recipient_maps": ""}


def rec(t, data):
    if isinstance(data, str):
        data = data.encode()
    return t.encode() + str(len(data)).encode() + b":" + data + b"\n"


def good_stream(rcpt="alice", body=b"hello"):
    return (rec("V", "1") + rec("S", "someone@example.org") + rec("R", rcpt)
            + rec("L", "Subject: good") + rec("L", "") + rec("L", body) + rec("E", ""))


# name -> content of a maildrop file that pickup must refuse
BAD = {
    "garbage": b"\x00\x01this is not a record stream\n",
    "truncated": good_stream()[:-6],
    "no_version": good_stream()[len(rec("V", "1")):],
    "bad_length": b"V1:1\nS99999:x\n",
    "sender_newline": rec("V", "1") + rec("S", "a\nb@example.org") + rec("R", "alice") + rec("E", ""),
    "bad_rcpt": rec("V", "1") + rec("S", "") + rec("R", "<bad>>") + rec("E", ""),
    "unknown_attr": rec("V", "1") + rec("S", "") + rec("A", "client_addr=1.2.3.4") + rec("R", "alice") + rec("E", ""),
    "bad_flags": rec("V", "1") + rec("S", "") + rec("A", "flags=local,no_header_body_checks") + rec("R", "alice") + rec("E", ""),
    "notify_dangling": rec("V", "1") + rec("S", "") + rec("R", "alice") + rec("N", "NEVER") + rec("E", ""),
    "no_recipient": rec("V", "1") + rec("S", "") + rec("L", "x") + rec("E", ""),
    "after_end": good_stream() + b"X",
    "content_then_rcpt": rec("V", "1") + rec("S", "") + rec("R", "alice") + rec("L", "x") + rec("R", "bob") + rec("E", ""),
    "two_senders": rec("V", "1") + rec("S", "") + rec("S", "") + rec("R", "alice") + rec("E", ""),
}


def qid(n):
    # 9 hex seconds, 5 hex microseconds, inode-like hex without leading zero
    return "06925A3F1" + "0000%X" % (n % 16) + "%X" % (0x100 + n)


def test_malformed_maildrop_files_are_moved_to_corrupt():
    with harness.Instance(conf=CONF) as inst:
        spool = os.path.join(inst.dir, "spool")
        maildrop = os.path.join(spool, "maildrop")
        owner = os.stat(maildrop)
        # Each entry is made complete, with its owner set, outside maildrop/
        # and renamed in: pickup (already running) must never see a file
        # half-written or still owned by root.
        staging = os.path.join(inst.dir, "maildrop-staging")
        os.mkdir(staging)

        def drop_in(name, make):
            tmp = os.path.join(staging, name)
            make(tmp)
            os.lchown(tmp, owner.st_uid, owner.st_gid)
            os.rename(tmp, os.path.join(maildrop, name))

        def writer(data):
            def make(path):
                with open(path, "wb") as f:
                    f.write(data)
            return make
        names = {}
        for i, (what, data) in enumerate(sorted(BAD.items())):
            name = qid(i)
            drop_in(name, writer(data))
            names[name] = what
        # a directory and a symbolic link with queue-id names
        drop_in(qid(50), os.mkdir)
        drop_in(qid(51), lambda path: os.symlink("/etc/passwd", path))
        # A good submission wakes pickup; it must get through too.
        sm = os.path.join(inst.build, "bin", "sendmail")
        r = inst.run([sm, "-C", inst.dir, "alice"], input="Subject: good one\n\nhi\n")
        assert r.returncode == 0, r.stderr
        harness.wait_for(lambda: inst.mailbox("alice"), 20, what="the good message")
        corrupt = os.path.join(spool, "corrupt")
        want = set(names) | {qid(50), qid(51)}
        harness.wait_for(lambda: want <= set(os.listdir(corrupt)), 20,
                         what="every malformed file in corrupt/")
        assert os.listdir(os.path.join(spool, "maildrop")) == []
        log = inst.log()
        for name, what in names.items():
            assert re.search(r"postern/pickup\[\d+\]: warning: maildrop/%s: .*; moved to corrupt/%s$"
                             % (name, name), log, re.M), (what, log)
        assert "panic" not in log and "fatal" not in log, log
        assert len(inst.mailbox("alice")) == 1
        assert "Subject: good one" in inst.mailbox("alice")[0]
        assert not re.search(r"status=sent", "\n".join(
            l for l in log.splitlines() if "bob" in l))


def test_postdrop_refuses_malformed_streams_and_leaves_nothing():
    with harness.Instance(conf=CONF) as inst:
        pd = os.path.join(inst.build, "bin", "postdrop")
        maildrop = os.path.join(inst.dir, "spool", "maildrop")
        cases = {
            b"": "incomplete",
            good_stream()[:-5]: "malformed input",
            good_stream()[:-4]: "incomplete",
            rec("S", "x") + rec("E", ""): "no version record first",
            rec("V", "1") + rec("M", "00000000000000000000") + rec("E", ""): "record type 'M' not allowed",
            good_stream() + b"extra": "data after the end record",
            b"V1:1\nL5:ab\n": "malformed input",
        }
        for data, text in cases.items():
            r = subprocess.run(inst._as_user([pd, "-c", inst.dir]), input=data,
                               capture_output=True)
            err = r.stderr.decode()
            assert r.returncode == 65, (data, r.returncode, err)
            assert err.startswith("postdrop: fatal: ") and text in err, (data, err)
            assert len(err.splitlines()) == 1, err
            assert os.listdir(maildrop) == [], (data, os.listdir(maildrop))
        r = subprocess.run(inst._as_user([pd, "-c", inst.dir, "extra-arg"]), input=b"",
                           capture_output=True)
        assert r.returncode == 64
        # A good stream is queued and delivered.
        r = subprocess.run(inst._as_user([pd, "-v", "-c", inst.dir]), input=good_stream(),
                           capture_output=True)
        assert r.returncode == 0, r.stderr
        assert re.match(rb"postdrop: queued as maildrop/[0-9A-F]+\n$", r.stderr), r.stderr
        harness.wait_for(lambda: inst.mailbox("alice"), 20, what="mail from postdrop")
        inst.wait_log(r"uid=\d+ from=<someone@example.org>")


def _holds_unnamed_file(pid, directory):
    """Does pid or one of its descendants have an unnamed file of
    directory open (/proc/PID/fd/N -> DIR/#INODE (deleted))?"""
    real = os.path.realpath(directory)
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for fd in os.listdir("/proc/%d/fd" % p):
                target = os.readlink("/proc/%d/fd/%s" % (p, fd))
                if target.startswith(real + "/#") and target.endswith("(deleted)"):
                    return True
            for task in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, task)) as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return False


def test_postdrop_killed_mid_message_leaves_nothing():
    with harness.Instance(conf=CONF) as inst:
        pd = os.path.join(inst.build, "bin", "postdrop")
        maildrop = os.path.join(inst.dir, "spool", "maildrop")
        p = subprocess.Popen(inst._as_user([pd, "-c", inst.dir]), stdin=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        p.stdin.write(good_stream()[:40])
        p.stdin.flush()
        # The file is unnamed (O_TMPFILE) until it is complete: wait until
        # postdrop (p or a child of it) holds it open.
        harness.wait_for(lambda: _holds_unnamed_file(p.pid, maildrop), 10,
                         what="postdrop's unnamed file")
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
        p.stdin.close()
        p.stderr.close()
        assert p.returncode != 0
        assert os.listdir(maildrop) == []


def test_root_instance_setgid_layout_and_chrooted_pickup():
    if not harness.is_root():
        return
    with harness.Instance(as_root=True, conf=CONF) as inst:
        maildrop = os.path.join(inst.dir, "spool", "maildrop")
        st = os.stat(maildrop)
        assert stat.S_IMODE(st.st_mode) == 0o1730, oct(st.st_mode)
        assert pwd.getpwuid(st.st_uid).pw_name == "postern"
        assert grp.getgrgid(st.st_gid).gr_name == "postdrop"
        r = inst.postern("check")
        assert r.returncode == 0, r.stdout + r.stderr
        sm = os.path.join(inst.build, "bin", "sendmail")
        r = inst.run([sm, "-C", inst.dir, "-t"], input="To: root\nSubject: as root\n\nhi\n")
        assert r.returncode == 0, r.stderr
        inst.wait_log(r"postern/pickup\[\d+\]: [0-9A-F]+: uid=0 from=<root>", timeout=20)
        harness.wait_for(lambda: inst.mailbox("root"), 20, what="root's message")
        assert "Subject: as root" in inst.mailbox("root")[0]


def test_init_creates_maildrop_and_check_verifies_it():
    for as_root in ((False, True) if harness.is_root() else (False,)):
        with harness.Instance(as_root=as_root, conf=CONF, start=False) as inst:
            maildrop = os.path.join(inst.dir, "spool", "maildrop")
            public = os.path.join(inst.dir, "spool", "public")
            assert stat.S_IMODE(os.stat(maildrop).st_mode) == 0o1730
            assert stat.S_IMODE(os.stat(public).st_mode) == 0o710
            if as_root:
                st = os.stat(maildrop)
                assert pwd.getpwuid(st.st_uid).pw_name == "postern"
                assert grp.getgrgid(st.st_gid).gr_name == "postdrop"
                # every other directory: postern's own group, which the
                # daemons run with (not postdrop)
                owner_gid = pwd.getpwnam("postern").pw_gid
                for d in ("incoming", "active", "private", "deferred/0"):
                    assert os.stat(os.path.join(inst.dir, "spool", d)).st_gid == owner_gid, d
                assert os.stat(os.path.join(inst.dir, "data")).st_gid == owner_gid
                # a setgid_group that is mail_owner's own group would give
                # the daemons the submission group: check refuses it
                owner_group = grp.getgrgid(owner_gid).gr_name
                inst.edit_main_cf({"setgid_group": owner_group})
                r = inst.postern("check")
                assert r.returncode == 1, r.stderr
                assert ("postern: error: mail_owner postern has setgid_group %s as its "
                        "primary group" % owner_group) in r.stderr, r.stderr
                inst.edit_main_cf({"setgid_group": "postdrop"})
            r = inst.postern("check")
            assert r.returncode == 0, r.stderr
            # sendmail works before the first start: the file waits in maildrop/
            sm = os.path.join(inst.build, "bin", "sendmail")
            user = "root" if as_root else "alice"
            r = inst.run([sm, "-C", inst.dir, user], input="Subject: early\n\nx\n")
            assert r.returncode == 0, r.stderr
            assert len(os.listdir(maildrop)) == 1
            os.chmod(maildrop, 0o1777)
            r = inst.postern("check")
            assert r.returncode == 1
            assert "postern: error: %s has mode 1777; it must be 1730" % maildrop in r.stderr, r.stderr
            os.chmod(maildrop, 0o1730)
            assert inst.postern("start").returncode == 0
            harness.wait_for(lambda: inst.mailbox(user), 20, what="the early message")
            assert os.listdir(maildrop) == []
