"""Integration tests for the local delivery agent, driving the real
program in standalone mode (see local_helpers.py): mailboxes (Maildir and
mbox with quoting and locking), aliases to lists, commands and files,
:include:, .forward, extensions, loops, exit-status mapping, time limits,
and the root-instance identity rules."""
import os
import pwd
import re
import stat
import subprocess
import time

from local_helpers import (FakeCleanup, LocalDir, NOBODY, deliver, delivery_request, finish_local,
                           maildir_messages, read, run_local, start_local)

MSG = ["Subject: hello", "From: Sender <sender@remote.example>", "",
       "first line", "From the start", ">From quoted", "last line"]


# The user local runs as in the non-root tests: nobody when the tests run
# as root (local_helpers drops to it), else whoever runs them.
OWN = NOBODY if os.geteuid() == 0 else pwd.getpwuid(os.getuid())
ME = OWN.pw_name


def one(replies, rcpt):
    got = [r for r in replies if r.get("rcpt") == rcpt]
    assert len(got) == 1, "expected one reply for %s, got %r" % (rcpt, replies)
    return got[0]


def test_maildir_delivery_non_root():
    with LocalDir() as ld:
        replies = deliver(ld, "sender@remote.example", ["alice@test.example"], MSG)
        r = one(replies, "alice@test.example")
        assert r["status"] == "sent", r
        assert r["dsn"] == "2.0.0"
        assert r["relay"] == "local"
        assert r["reason"] == "delivered to maildir"
        msgs = maildir_messages(ld.path("mail", "alice"))
        assert len(msgs) == 1
        lines = msgs[0].split("\n")
        assert lines[0] == "Return-Path: <sender@remote.example>"
        assert lines[1] == "Delivered-To: alice@test.example"
        assert lines[2] == "Subject: hello"
        # Maildir content is not From-quoted
        assert "From the start" in lines and ">From quoted" in lines
        assert os.listdir(ld.path("mail", "alice", "tmp")) == []
        assert os.path.isdir(ld.path("mail", "alice", "cur"))
        name = os.listdir(ld.path("mail", "alice", "new"))[0]
        assert re.match(r"^\d+\.M\d+P\d+Q\d+\.test\.example$", name), name


def test_mbox_format_and_quoting():
    with LocalDir(maildir=False) as ld:
        replies = deliver(ld, "", ["bob@test.example"], MSG)
        assert one(replies, "bob@test.example")["reason"] == "delivered to mailbox"
        replies = deliver(ld, "x@y.example", ["bob@test.example"], ["Subject: two", "", "body"])
        assert one(replies, "bob@test.example")["status"] == "sent"
        box = read(ld.path("mail", "bob"))
        lines = box.split("\n")
        assert re.match(r"^From MAILER-DAEMON [A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}$",
                        lines[0]), lines[0]
        assert lines[1] == "Return-Path: <>"
        assert ">From the start" in lines
        assert ">>From quoted" in lines
        assert "From the start" not in lines
        # a blank line ends each message, and the second starts with From_
        second = lines.index("Subject: two") - 3
        assert lines[second - 1] == "" and lines[second].startswith("From x@y.example ")
        assert box.endswith("body\n\n")
        assert not os.path.exists(ld.path("mail", "bob.lock"))


def test_alias_list_command_and_file():
    with LocalDir() as ld:
        out = ld.path("out")
        os.mkdir(out)
        ld.write_aliases(
            "team: alice, bob, \"|env > %s/env; cat > %s/cmd\", %s/archive\n" % (out, out, out)
            + "postmaster: alice\n")
        replies = deliver(ld, "s@remote.example", ["team@test.example"], MSG,
                          orcpts=["rfc822;Team@test.example"])
        r = one(replies, "team@test.example")
        assert r["status"] == "sent", r
        assert "delivered to command: env > " in r["reason"]
        assert "delivered to file: %s/archive" % out in r["reason"]
        assert len(maildir_messages(ld.path("mail", "alice"))) == 1
        assert len(maildir_messages(ld.path("mail", "bob"))) == 1
        cmd = read(os.path.join(out, "cmd"))
        assert cmd.startswith("Return-Path: <s@remote.example>\nDelivered-To: team@test.example\n")
        env = dict(line.split("=", 1) for line in read(os.path.join(out, "env")).splitlines()
                   if "=" in line)
        assert env["SENDER"] == "s@remote.example"
        assert env["RECIPIENT"] == "team@test.example"
        assert env["ORIGINAL_RECIPIENT"] == "rfc822;Team@test.example"
        assert env["LOCAL"] == "team"
        assert env["DOMAIN"] == "test.example"
        assert env["EXTENSION"] == ""
        assert env["PATH"] == "/usr/bin:/bin"
        assert "HOME" in env and "USER" in env and "LOGNAME" in env and "SHELL" in env
        archive = read(os.path.join(out, "archive"))
        assert archive.startswith("From s@remote.example ")
        assert ">From the start" in archive


def test_alias_to_itself_and_cycle_reach_mailboxes():
    with LocalDir() as ld:
        ld.write_aliases("alice: alice, bob\nbob: carol, alice\n")
        replies = deliver(ld, "s@x.example", ["alice@test.example"], MSG)
        assert one(replies, "alice@test.example")["status"] == "sent"
        # alice -> alice (mailbox), bob -> carol, alice (already expanding: mailbox, once)
        assert len(maildir_messages(ld.path("mail", "alice"))) == 1
        assert len(maildir_messages(ld.path("mail", "carol"))) == 1
        assert not os.path.exists(ld.path("mail", "bob"))


def test_duplicates_delivered_once_per_message():
    with LocalDir() as ld:
        ld.write_aliases("l1: dave, erin\nl2: erin, dave\n")
        replies = deliver(ld, "s@x.example", ["l1@test.example", "l2@test.example",
                                              "dave@test.example"], MSG)
        assert [r["status"] for r in replies] == ["sent", "sent", "sent"]
        assert [r["rcpt"] for r in replies] == ["l1@test.example", "l2@test.example",
                                                "dave@test.example"]
        assert len(maildir_messages(ld.path("mail", "dave"))) == 1
        assert len(maildir_messages(ld.path("mail", "erin"))) == 1


def test_delivered_to_loop_bounced():
    with LocalDir() as ld:
        lines = ["Delivered-To: Alice@Test.Example", "Subject: looped", "", "x"]
        replies = deliver(ld, "s@x.example", ["alice@test.example", "bob@test.example"], lines)
        a = one(replies, "alice@test.example")
        assert a["status"] == "bounced"
        assert a["dsn"] == "5.4.6"
        assert a["reason"] == "mail forwarding loop for alice@test.example"
        assert one(replies, "bob@test.example")["status"] == "sent"
        assert maildir_messages(ld.path("mail", "alice")) == []


def test_command_exit_status_mapping():
    with LocalDir() as ld:
        ld.write_aliases("tempfail: |exit 75\nnouser: |exit 67\n"
                         "broken: \"|echo first complaint; echo second; exit 3\"\n"
                         "fine: |cat >/dev/null\nsignalled: \"|kill -9 $$\"\n")
        rcpts = ["tempfail@t.example", "nouser@t.example", "broken@t.example",
                 "fine@t.example", "signalled@t.example"]
        replies = deliver(ld, "s@x.example", rcpts, MSG)
        assert [r["rcpt"] for r in replies] == rcpts
        t, n, b, f, s = replies
        assert (t["status"], t["dsn"]) == ("deferred", "4.3.0"), t
        assert (n["status"], n["dsn"]) == ("bounced", "5.1.1"), n
        assert (b["status"], b["dsn"]) == ("bounced", "5.3.0"), b
        assert "status 3" in b["reason"] and "first complaint" in b["reason"], b
        # only the first line of the output
        assert b["reason"].endswith("Command output: first complaint"), b
        assert (f["status"], f["reason"]) == ("sent", "delivered to command: cat >/dev/null"), f
        assert s["status"] == "bounced" and "signal 9" in s["reason"], s


def test_command_time_limit_kills_process_group():
    with LocalDir() as ld:
        marker = ld.path("child.pid")
        ld.write_aliases("slow: \"|sh -c 'echo $$ > %s; exec sleep 60' & wait\"\n" % marker)
        start = time.monotonic()
        replies = deliver(ld, "s@x.example", ["slow@t.example"], MSG,
                          overrides=["command_time_limit=2s"])
        elapsed = time.monotonic() - start
        r = one(replies, "slow@t.example")
        assert (r["status"], r["dsn"]) == ("deferred", "4.3.0"), r
        assert "time limit" in r["reason"]
        assert elapsed < 20, elapsed
        pid = int(read(marker).strip())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/stat" % pid) as f:
                    if f.read().split(") ")[1].startswith("Z"):
                        break
            except FileNotFoundError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("grandchild %d survived the time limit" % pid)


def test_extensions_try_full_then_base():
    with LocalDir() as ld:
        ld.write_aliases("alice+special: carol\nalice: bob\n")
        replies = deliver(ld, "s@x.example", ["alice+special@t.example", "alice+other@t.example",
                                              "frank+x@t.example"], MSG)
        assert [r["status"] for r in replies] == ["sent"] * 3, replies
        assert len(maildir_messages(ld.path("mail", "carol"))) == 1
        assert len(maildir_messages(ld.path("mail", "bob"))) == 1
        # no alias: the mailbox is the user's, without the extension
        assert len(maildir_messages(ld.path("mail", "frank"))) == 1
        assert not os.path.exists(ld.path("mail", "frank+x"))


def test_include_and_restrictions():
    with LocalDir() as ld:
        inc = ld.path("list.inc")
        with open(inc, "w") as f:
            f.write("# members\ngina\nhank, |cat > /dev/null\n")
        ld.write_aliases("list: :include:%s\nmissing: :include:%s\n" % (inc, ld.path("nope")))
        replies = deliver(ld, "s@x.example", ["list@t.example", "missing@t.example"], MSG)
        r = one(replies, "list@t.example")
        # members are delivered; the command from an include file is not allowed
        assert len(maildir_messages(ld.path("mail", "gina"))) == 1
        assert len(maildir_messages(ld.path("mail", "hank"))) == 1
        assert (r["status"], r["dsn"]) == ("bounced", "5.7.1"), r
        assert "restricted" in r["reason"]
        m = one(replies, "missing@t.example")
        assert m["status"] == "deferred", m


def test_forward_file_of_own_user():
    """In a non-root instance the instance user's own .forward is honoured
    (forward_path points at a test directory)."""
    with LocalDir() as ld:
        fwd_dir = ld.path("forward")
        out = ld.path("fwdout")
        with open(os.path.join(fwd_dir, ME + ".forward"), "w") as f:
            f.write("\\%s, \"|cat > %s\"\n" % (ME, out))
        ld.give_to_nobody()
        replies = deliver(ld, "s@x.example", [ME + "@t.example"], MSG)
        r = one(replies, ME + "@t.example")
        assert r["status"] == "sent", r
        assert "delivered to command" in r["reason"] and "delivered to maildir" in r["reason"]
        assert len(maildir_messages(ld.path("mail", ME))) == 1
        assert "Delivered-To: %s@t.example" % ME in read(out)
        # a group-writable .forward is ignored: plain mailbox delivery
        os.chmod(os.path.join(fwd_dir, ME + ".forward"), 0o664)
        os.unlink(out)
        replies = deliver(ld, "s@x.example", [ME + "@t.example"], MSG)
        assert one(replies, ME + "@t.example")["reason"] == "delivered to maildir"
        assert not os.path.exists(out)
        assert len(maildir_messages(ld.path("mail", ME))) == 2


def test_mailbox_size_limit_keeps_old_content():
    with LocalDir(maildir=False) as ld:
        deliver(ld, "s@x.example", ["ivan@t.example"], MSG)
        before = read(ld.path("mail", "ivan"))
        big = ["Subject: big", ""] + ["x" * 100] * 100
        replies = deliver(ld, "s@x.example", ["ivan@t.example"], big,
                          overrides=["mailbox_size_limit=%d" % (len(before) + 2000)])
        r = one(replies, "ivan@t.example")
        assert (r["status"], r["dsn"]) == ("bounced", "5.2.2"), r
        assert read(ld.path("mail", "ivan")) == before


def test_unsafe_local_part_never_becomes_a_path():
    with LocalDir(maildir=False) as ld:
        replies = deliver(ld, "s@x.example", ["../evil@t.example", ".hidden@t.example"], MSG)
        assert [r["status"] for r in replies] == ["bounced", "bounced"], replies
        assert sorted(os.listdir(ld.mail)) == []
        assert not os.path.exists(ld.path("evil"))


def test_unreadable_queue_file_defers_every_recipient():
    with LocalDir() as ld:
        req = delivery_request("6925A3F1B0C2E41A7F", "s@x.example", ["a@t.example", "b@t.example"])
        replies, done, err = run_local(ld, req)
        assert done, err
        assert [(r["rcpt"], r["status"], r["dsn"]) for r in replies] == [
            ("a@t.example", "deferred", "4.3.0"), ("b@t.example", "deferred", "4.3.0")]


def test_malformed_request_gets_no_reply():
    with LocalDir() as ld:
        replies, done, err = run_local(ld, [("request", "deliver"), ("rcpt", "a@t.example")])
        assert replies == [] and not done
        assert "malformed delivery request" in read(ld.log)


def test_racing_mbox_deliveries_stay_whole():
    with LocalDir(maildir=False) as ld:
        n_per_proc, n_lines = 4, 3000
        procs = []
        for k in range(2):
            for i in range(n_per_proc):
                body = ["Subject: m%d-%d" % (k, i), ""] + \
                       ["m%d-%d line %05d %s" % (k, i, j, "y" * 60) for j in range(n_lines)]
                qid = ld.queue("s@x.example", ["judy@t.example"], body)
                procs.append(delivery_request(qid, "s@x.example", ["judy@t.example"]))
        running = [start_local(ld, req) for req in procs]
        for p in running:
            records, err = finish_local(p)
            assert dict(records[0])["status"] == "sent", (records, err)
        box = read(ld.path("mail", "judy")).split("\n")
        starts = [i for i, line in enumerate(box) if line.startswith("From s@x.example ")]
        assert len(starts) == 2 * n_per_proc
        seen = set()
        for s in starts:
            subject = box[s + 3]
            assert subject.startswith("Subject: m"), subject
            tag = subject[len("Subject: "):]
            seen.add(tag)
            # the message's body lines are contiguous and complete
            body = box[s + 5:s + 5 + n_lines]
            assert body == ["%s line %05d %s" % (tag, j, "y" * 60) for j in range(n_lines)]
            assert box[s + 5 + n_lines] == ""
        assert len(seen) == 2 * n_per_proc


# ---- root instance: identities -------------------------------------------

def test_root_instance_unknown_user_and_spool_ownership():
    if os.geteuid() != 0:
        return
    with LocalDir(maildir=False) as ld:
        replies = deliver(ld, "s@x.example", ["no-such-user-4711@t.example", "nobody@t.example"],
                          MSG, as_nobody=False)
        u, n = replies
        assert (u["status"], u["dsn"]) == ("bounced", "5.1.1"), u
        assert u["reason"] == 'unknown user: "no-such-user-4711"'
        assert n["status"] == "sent", n
        st = os.stat(ld.path("mail", "nobody"))
        assert st.st_uid == NOBODY.pw_uid
        assert stat.S_IMODE(st.st_mode) == 0o600


def test_root_instance_alias_command_runs_as_default_privs():
    if os.geteuid() != 0:
        return
    with LocalDir() as ld:
        out = ld.path("out")
        os.mkdir(out)
        os.chmod(out, 0o777)
        ld.write_aliases("whoami: \"|id -u > %s/uid; id -g > %s/gid\"\n" % (out, out))
        replies = deliver(ld, "s@x.example", ["whoami@t.example"], MSG, as_nobody=False)
        assert one(replies, "whoami@t.example")["status"] == "sent", replies
        assert read(os.path.join(out, "uid")).strip() == str(NOBODY.pw_uid)
        assert read(os.path.join(out, "gid")).strip() == str(NOBODY.pw_gid)
        # root's own mailbox is delivered (as root) in the spool
        replies = deliver(ld, "s@x.example", ["root@t.example"], MSG, as_nobody=False)
        assert one(replies, "root@t.example")["reason"] == "delivered to maildir"
        assert os.stat(ld.path("mail", "root", "new")).st_uid == 0


def test_root_forward_command_and_file_never_run_as_root():
    """root's own mail through its .forward: the command and the file are
    delivered with default_privs (nobody), never as root."""
    if os.geteuid() != 0:
        return
    with LocalDir() as ld:
        out = ld.path("out")
        os.mkdir(out)
        os.chmod(out, 0o777)
        fwd = ld.path("forward", "root.forward")
        with open(fwd, "w") as f:
            f.write('"|id -u > %s/uid", %s/file\n' % (out, out))
        os.chmod(fwd, 0o644)
        replies = deliver(ld, "s@x.example", ["root@t.example"], MSG, as_nobody=False)
        r = one(replies, "root@t.example")
        assert r["status"] == "sent", r
        assert "delivered to command" in r["reason"] and "delivered to file" in r["reason"], r
        assert read(os.path.join(out, "uid")).strip() == str(NOBODY.pw_uid)
        assert os.stat(os.path.join(out, "file")).st_uid == NOBODY.pw_uid
        assert not os.path.exists(ld.path("mail", "root"))


def test_forward_through_cleanup_with_owner_alias():
    with LocalDir() as ld:
        ld.write_aliases("list: Ext@Remote.example, kate, other@remote.example\n"
                         "owner-list: kate\nfwd: far@remote.example\n")
        fake = FakeCleanup(ld)
        try:
            replies = deliver(ld, "s@x.example", ["list@t.example", "fwd@t.example"], MSG)
        finally:
            fake.close()
        r = one(replies, "list@t.example")
        assert r["status"] == "sent", r
        assert r["reason"] == "forwarded as FAKE0001", r
        assert one(replies, "fwd@t.example")["reason"] == "forwarded as FAKE0002"
        assert len(fake.sessions) == 2
        env = fake.sessions[0][0]
        d = dict(env)
        assert d["request"] == "enqueue" and d["origin"] == "local"
        # owner-list exists: the list's copies carry owner-list@$myorigin as
        # sender, and the local member kate is resubmitted too (her own queue
        # file record: a failure of hers goes to the owner), not delivered here
        assert d["sender"] == "owner-list@test.example"
        assert [v for n, v in env if n == "rcpt"] == ["Ext@Remote.example", "kate@test.example",
                                                       "other@remote.example"]
        content = "".join(v for rec in fake.sessions[0][1:] for n, v in rec if n == "data")
        assert content.startswith("Delivered-To: list@t.example\nSubject: hello\n")
        assert content.endswith("last line\n")
        assert dict(fake.sessions[1][0])["sender"] == "s@x.example"
        assert maildir_messages(ld.path("mail", "kate")) == []


def test_list_member_deferral_is_resubmitted_alone():
    """A list that reached some members and deferred one mailbox: that
    member gets a new message of its own, the list recipient is done (a
    retry would give the others a second copy).  A deferral nothing else
    got past, or of a command, still defers the whole recipient."""
    with LocalDir() as ld:
        ld.write_aliases("team: bob, carol, far@remote.example\n"
                         "solo: carol\n"
                         "mixed: dave, \"|exit 75\"\n")
        with open(ld.path("mail", "carol"), "w") as f:     # no Maildir can be made there
            f.write("not a directory\n")
        fake = FakeCleanup(ld)
        try:
            replies = deliver(ld, "s@x.example", ["team@t.example", "solo@t.example",
                                                  "mixed@t.example"], MSG)
        finally:
            fake.close()
        r = one(replies, "team@t.example")
        assert r["status"] == "sent", r
        assert r["reason"] == "delivered to maildir, forwarded as FAKE0001", r
        assert len(maildir_messages(ld.path("mail", "bob"))) == 1
        assert len(fake.sessions) == 1
        env = fake.sessions[0][0]
        assert dict(env)["sender"] == "s@x.example"
        assert [v for n, v in env if n == "rcpt"] == ["far@remote.example", "carol@test.example"]
        assert re.search(r"team@t.example: mailbox of carol deferred: resubmitted to it alone",
                         read(ld.log))
        r = one(replies, "solo@t.example")
        assert r["status"] == "deferred" and r["dsn"] == "4.2.0", r
        assert "cannot create maildir" in r["reason"], r
        r = one(replies, "mixed@t.example")
        assert r["status"] == "deferred", r
        assert "exit 75" in r["reason"] or r["dsn"].startswith("4."), r


def test_owner_list_command_failure_is_reported_to_the_owner():
    """A command in a list with owner-NAME fails for good: the owner gets a
    delivery status notification (null sender) naming the list and the
    reason; the list recipient itself is done, the sender hears nothing."""
    import email
    import email.policy
    with LocalDir() as ld:
        ld.write_aliases('list: bob, "|echo no such mailbox; exit 67"\n'
                         "owner-list: kate\n")
        fake = FakeCleanup(ld)
        try:
            replies = deliver(ld, "s@x.example", ["list@t.example"], MSG)
        finally:
            fake.close()
        r = one(replies, "list@t.example")
        assert r["status"] == "sent", r
        assert r["reason"] == ("failure reported to owner-list@test.example as FAKE0001, "
                               "forwarded as FAKE0002"), r
        assert len(fake.sessions) == 2
        assert dict(fake.sessions[1][0])["sender"] == "owner-list@test.example"   # bob
        env = dict(fake.sessions[0][0])
        assert env["origin"] == "bounce" and env["sender"] == ""
        assert env["rcpt"] == "owner-list@test.example"
        text = "".join(v for rec in fake.sessions[0][1:] for n, v in rec if n == "data")
        report = email.message_from_string(text, policy=email.policy.compat32)
        assert report.get_content_type() == "multipart/report"
        assert report.get_param("report-type") == "delivery-status"
        parts = report.get_payload()
        assert parts[1].get_content_type() == "message/delivery-status"
        groups = parts[1].get_payload()
        failed = [g for g in groups if g.get("Final-Recipient")]
        assert len(failed) == 1
        assert failed[0]["Final-Recipient"] == "rfc822; list@t.example"
        assert failed[0]["Action"] == "failed" and failed[0]["Status"] == "5.1.1"
        assert "no such mailbox" in text
        assert "Subject: hello" in text                  # the returned message
        assert re.search(r"list@t.example: failure reported to owner-list@test.example as "
                         r"FAKE0001", read(ld.log))


def test_forward_failure_defers_or_bounces():
    with LocalDir() as ld:
        ld.write_aliases("a: x@remote.example\n")
        # no cleanup listening at all
        r = one(deliver(ld, "s@x.example", ["a@t.example"], MSG), "a@t.example")
        assert (r["status"], r["dsn"]) == ("deferred", "4.3.0"), r
        fake = FakeCleanup(ld, final=[("status", "5"), ("dsn", "5.7.1"),
                                      ("reason", "message content rejected")])
        try:
            r = one(deliver(ld, "s@x.example", ["a@t.example"], MSG), "a@t.example")
        finally:
            fake.close()
        assert (r["status"], r["dsn"]) == ("bounced", "5.7.1"), r
        assert "message content rejected" in r["reason"]


def test_mailbox_command_for_own_user():
    with LocalDir() as ld:
        out = ld.path("mbcmd")
        # $USER and $EXTENSION are left to the shell; ${extension} is local's
        cmd = "cat > %s; echo $USER $EXTENSION >> %s; echo X${extension}X >> %s" % (out, out, out)
        replies = deliver(ld, "s@x.example", [ME + "+tag@t.example"], MSG,
                          overrides=["mailbox_command=" + cmd])
        r = one(replies, ME + "+tag@t.example")
        assert (r["status"], r["reason"]) == (
            "sent", "delivered to command: " + cmd.replace("${extension}", "tag")), r
        text = read(out)
        assert text.startswith("Return-Path: <s@x.example>\nDelivered-To: %s+tag@t.example\n" % ME)
        assert text.endswith("last line\n%s tag\nXtagX\n" % ME)
        assert not os.path.exists(ld.path("mail", ME))


def test_mbox_lock_wait_is_bounded_and_stale_locks_go():
    with LocalDir(maildir=False) as ld:
        lock = ld.path("mail", "kim.lock")
        with open(lock, "w"):
            pass
        start = time.monotonic()
        replies = deliver(ld, "s@x.example", ["kim@t.example"], MSG,
                          overrides=["deliver_lock_attempts=3", "deliver_lock_delay=1s"])
        r = one(replies, "kim@t.example")
        assert (r["status"], r["dsn"]) == ("deferred", "4.2.0"), r
        assert "lock" in r["reason"]
        assert time.monotonic() - start < 15
        assert not os.path.exists(ld.path("mail", "kim"))
        assert os.path.exists(lock)             # someone else's lock is left alone
        old = time.time() - 3600
        os.utime(lock, (old, old))
        replies = deliver(ld, "s@x.example", ["kim@t.example"], MSG,
                          overrides=["deliver_lock_attempts=3", "stale_lock_time=600s"])
        assert one(replies, "kim@t.example")["status"] == "sent"
        assert not os.path.exists(lock)
        assert "Subject: hello" in read(ld.path("mail", "kim"))


def test_pipelined_requests_answered_in_order_until_eof():
    """qmgr may write several requests on one connection: local answers
    each completely ({done=1}) before the next, in order, until EOF."""
    with LocalDir() as ld:
        q1 = ld.queue("s1@remote.example", ["alice@test.example"], ["Subject: one", "", "1"])
        q2 = ld.queue("s2@remote.example", ["bob@test.example", "alice@test.example"],
                      ["Subject: two", "", "2"])
        q3 = ld.queue("s3@remote.example", ["carol@test.example"], ["Subject: three", "", "3"])
        started = start_local(ld, delivery_request(q1, "s1@remote.example", ["alice@test.example"]),
                              more=[delivery_request(q2, "s2@remote.example",
                                                     ["bob@test.example", "alice@test.example"]),
                                    delivery_request(q3, "s3@remote.example",
                                                     ["carol@test.example"])])
        records, err = finish_local(started)
        got = [(r.get("rcpt"), r.get("status")) if r.get("done") is None else "done"
               for r in map(dict, records)]
        assert got == [("alice@test.example", "sent"), "done",
                       ("bob@test.example", "sent"), ("alice@test.example", "sent"), "done",
                       ("carol@test.example", "sent"), "done"], (got, err)
        subjects = [m.split("\n")[2] for m in maildir_messages(ld.path("mail", "alice"))]
        assert subjects == ["Subject: one", "Subject: two"], subjects
        assert len(maildir_messages(ld.path("mail", "carol"))) == 1
        # the log lines carry each request's own queue id
        log = read(ld.log)
        for qid, rcpt in ((q1, "alice"), (q2, "bob"), (q2, "alice"), (q3, "carol")):
            assert re.search(qid + r": to=<%s@test.example>, relay=local, .*status=sent" % rcpt,
                             log), log


def test_pipelined_maildir_deliveries_share_one_directory_fsync():
    """Group commit (local/local_sync.c): three pipelined requests for one
    Maildir.  Each copy is written to tmp/NAME, fsynced, and renamed to
    new/NAME (RENAME_NOREPLACE), new/ is fsynced once for the three, and no
    answer (log line or reply) goes out before that fsync.  Watched with
    strace: -y names each descriptor's path."""
    with LocalDir() as ld:
        qids = [ld.queue("s@remote.example", ["alice@test.example"],
                         ["Subject: m%d" % i, "", str(i)]) for i in range(3)]
        reqs = [delivery_request(q, "s@remote.example", ["alice@test.example"]) for q in qids]
        trace = ld.path("strace.out")
        started = start_local(ld, reqs[0], more=reqs[1:],
                              wrapper=["strace", "-f", "-y", "-qq", "-s", "400", "-o", trace,
                                       "-e", "trace=open,openat,fsync,link,linkat,rename,"
                                       "renameat2,unlink,unlinkat,sendto,write"])
        records, err = finish_local(started)
        got = [r.get("status") or "done" for r in map(dict, records)]
        assert got == ["sent", "done"] * 3, (got, err)
        assert len(maildir_messages(ld.path("mail", "alice"))) == 3
        calls = [l for l in read(trace).splitlines() if "resumed>" not in l]
        new_dir = os.path.realpath(ld.path("mail", "alice", "new"))
        tmp_dir = os.path.realpath(ld.path("mail", "alice", "tmp"))
        assert os.listdir(tmp_dir) == []
        assert not [l for l in calls if re.search(r"\b(link|linkat|unlink|unlinkat)\(", l)], calls
        dir_syncs = [i for i, l in enumerate(calls) if re.search(r"fsync\(\d+<%s>" % new_dir, l)]
        file_syncs, renames = {}, {}
        for i, l in enumerate(calls):
            m = re.search(r"fsync\(\d+<%s/([^>]+)>" % re.escape(tmp_dir), l)
            if m:
                file_syncs.setdefault(m.group(1), []).append(i)
            m = re.search(r'renameat2\(AT_FDCWD<[^>]*>, "%s/([^"]+)", AT_FDCWD<[^>]*>, "%s/([^"]+)",'
                          r" RENAME_NOREPLACE\) = 0" % (re.escape(tmp_dir), re.escape(new_dir)), l)
            if m:
                assert m.group(1) == m.group(2), l
                renames.setdefault(m.group(1), []).append(i)
        answers = [i for i, l in enumerate(calls)
                   if re.search(r"(sendto|write)\(\d+<(socket|UNIX)", l) and "rcpt" in l]
        logs = [i for i, l in enumerate(calls) if "status=sent" in l]
        assert len(renames) == 3 and sorted(file_syncs) == sorted(renames), calls
        for name, (rename,) in renames.items():
            (sync,) = file_syncs[name]
            assert sync < rename, calls          # on disk before it has its name
        assert len(dir_syncs) == 1, calls
        assert max(max(v) for v in renames.values()) < dir_syncs[0] < min(answers + logs), calls
        assert len(answers) == 3 and len(logs) == 3, calls


def _build_shim(ld, name):
    shim = ld.path(name + ".so")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", shim,
                    os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".c"),
                    "-ldl"], check=True)
    os.chmod(shim, 0o755)
    return shim


def test_maildir_without_rename_noreplace_links_and_unlinks():
    """A file system without RENAME_NOREPLACE (fail_tmpfile.c,
    FAIL_TMPFILE=rename answers EINVAL): two pipelined copies are still
    delivered, through link(tmp/NAME, new/NAME) and unlink of tmp/NAME,
    and tmp/ is empty afterwards."""
    with LocalDir() as ld:
        shim = _build_shim(ld, "fail_tmpfile")
        qa = ld.queue("s@remote.example", ["alice@test.example"], ["Subject: a", "", "a"])
        qb = ld.queue("s@remote.example", ["alice@test.example"], ["Subject: b", "", "b"])
        trace = ld.path("strace.out")
        started = start_local(ld, delivery_request(qa, "s@remote.example", ["alice@test.example"]),
                              more=[delivery_request(qb, "s@remote.example",
                                                     ["alice@test.example"])],
                              wrapper=["strace", "-f", "-y", "-qq", "-s", "400", "-o", trace,
                                       "-e", "trace=openat,link,unlink,renameat2,fsync"],
                              env_extra={"LD_PRELOAD": shim, "FAIL_TMPFILE": "rename"})
        records, err = finish_local(started)
        got = [r.get("status") or "done" for r in map(dict, records)]
        assert got == ["sent", "done"] * 2, (got, err)
        alice = ld.path("mail", "alice")
        assert [m.split("\n")[2] for m in maildir_messages(alice)] == ["Subject: a", "Subject: b"]
        assert os.listdir(os.path.join(alice, "tmp")) == []
        calls = read(trace).splitlines()
        tmp_dir = os.path.realpath(os.path.join(alice, "tmp"))
        new_dir = os.path.realpath(os.path.join(alice, "new"))
        linked = [l for l in calls if re.search(r'\blink\("%s/.*", "%s/' % (tmp_dir, new_dir), l)]
        unlinked = [l for l in calls if re.search(r'\bunlink\("%s/' % tmp_dir, l)]
        assert len(linked) == 2 and len(unlinked) == 2, calls
        assert not [l for l in calls if "renameat2(" in l], calls   # the shim answered


def test_maildir_size_limit_leaves_nothing():
    """A copy over mailbox_size_limit is bounced and leaves no file in new/
    or tmp/."""
    with LocalDir() as ld:
        big = ["Subject: big", ""] + ["x" * 100] * 100
        replies = deliver(ld, "s@x.example", ["alice@t.example"], big,
                          overrides=["mailbox_size_limit=2000"])
        r = one(replies, "alice@t.example")
        assert (r["status"], r["dsn"]) == ("bounced", "5.2.2"), r
        for sub in ("new", "tmp"):
            assert os.listdir(ld.path("mail", "alice", sub)) == []


def test_root_instance_maildir_file_belongs_to_the_user():
    """Root instance, Maildir spool: the copy is created while local runs as
    the user, so it is the user's, mode 0600, like the directories."""
    if os.geteuid() != 0:
        return
    with LocalDir() as ld:
        replies = deliver(ld, "s@x.example", ["nobody@t.example"], MSG, as_nobody=False)
        assert one(replies, "nobody@t.example")["status"] == "sent", replies
        new = ld.path("mail", "nobody", "new")
        names = os.listdir(new)
        assert len(names) == 1, names
        st = os.stat(os.path.join(new, names[0]))
        assert (st.st_uid, st.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid), st
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_nlink == 1
        assert os.listdir(ld.path("mail", "nobody", "tmp")) == []


def test_group_commit_fsync_failure_defers_only_what_depended_on_it():
    """Two pipelined requests, alice's Maildir then bob's, answered after
    one release: the fsync of alice's new/ fails (an LD_PRELOAD shim,
    fail_fsync.c), so alice's copy is removed again and her answer is
    deferred with the reason; bob's stands (sent, and his copy is there)."""
    with LocalDir() as ld:
        shim = _build_shim(ld, "fail_fsync")
        qa = ld.queue("s@remote.example", ["alice@test.example"], ["Subject: a", "", "a"])
        qb = ld.queue("s@remote.example", ["bob@test.example"], ["Subject: b", "", "b"])
        started = start_local(ld, delivery_request(qa, "s@remote.example", ["alice@test.example"]),
                              more=[delivery_request(qb, "s@remote.example",
                                                     ["bob@test.example"])],
                              env_extra={"LD_PRELOAD": shim,
                                         "FAIL_FSYNC_DIR_SUFFIX": "/alice/new"})
        records, err = finish_local(started)
        got = [dict(r) for r in records]
        assert [r.get("status") or "done" for r in got] == ["deferred", "done", "sent", "done"], \
            (got, err)
        alice_dir = ld.path("mail", "alice")
        assert got[0]["dsn"] == "4.2.0", got[0]
        assert got[0]["reason"] == "cannot update %s: Input/output error" % alice_dir, got[0]
        assert maildir_messages(alice_dir) == []
        assert [m.split("\n")[2] for m in maildir_messages(ld.path("mail", "bob"))] == ["Subject: b"]
        log = read(ld.log)
        assert re.search(qa + r": to=<alice@test.example>, relay=local, .*dsn=4\.2\.0, "
                         r"status=deferred \(cannot update", log), log
        assert re.search(qb + r": to=<bob@test.example>, relay=local, .*status=sent", log), log


def test_group_commit_file_fsync_failure_defers_only_that_copy():
    """Two pipelined requests, alice's Maildir then bob's: the copies are
    fsynced and renamed into new/ at the release, and the fsync of alice's
    copy fails (fail_fsync.c, FAIL_FSYNC_FILE_PART): her copy is removed
    from tmp/ and never reaches new/, her answer is deferred with the
    reason; bob's stands."""
    with LocalDir() as ld:
        shim = _build_shim(ld, "fail_fsync")
        qa = ld.queue("s@remote.example", ["alice@test.example"], ["Subject: a", "", "a"])
        qb = ld.queue("s@remote.example", ["bob@test.example"], ["Subject: b", "", "b"])
        started = start_local(ld, delivery_request(qa, "s@remote.example", ["alice@test.example"]),
                              more=[delivery_request(qb, "s@remote.example",
                                                     ["bob@test.example"])],
                              env_extra={"LD_PRELOAD": shim,
                                         "FAIL_FSYNC_FILE_PART": "/alice/tmp/"})
        records, err = finish_local(started)
        got = [dict(r) for r in records]
        assert [r.get("status") or "done" for r in got] == ["deferred", "done", "sent", "done"], \
            (got, err)
        alice_dir = ld.path("mail", "alice")
        assert got[0]["dsn"] == "4.2.0", got[0]
        assert got[0]["reason"] == "cannot update %s: Input/output error" % alice_dir, got[0]
        assert maildir_messages(alice_dir) == []
        assert os.listdir(os.path.join(alice_dir, "tmp")) == []
        assert [m.split("\n")[2] for m in maildir_messages(ld.path("mail", "bob"))] == ["Subject: b"]
        assert os.listdir(ld.path("mail", "bob", "tmp")) == []


def test_pipelined_malformed_request_ends_the_connection():
    """A malformed request behind a good one: the good one is delivered
    and answered, the bad one gets no answer (logged), nothing after it
    is served."""
    with LocalDir() as ld:
        q1 = ld.queue("s@remote.example", ["alice@test.example"], ["Subject: one", "", "1"])
        q3 = ld.queue("s@remote.example", ["carol@test.example"], ["Subject: three", "", "3"])
        bad = [a for a in delivery_request(q1, "s@remote.example", ["alice@test.example"])
               if a[0] != "queue_id"]
        started = start_local(ld, delivery_request(q1, "s@remote.example", ["alice@test.example"]),
                              more=[bad, delivery_request(q3, "s@remote.example",
                                                          ["carol@test.example"])])
        records, err = finish_local(started)
        got = [dict(r) for r in records]
        assert [r.get("rcpt") or r.get("done") for r in got] == ["alice@test.example", "1"], got
        assert maildir_messages(ld.path("mail", "carol")) == []
        assert "malformed delivery request: missing queue_id" in read(ld.log) + err
