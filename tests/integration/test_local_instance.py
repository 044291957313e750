"""End-to-end tests of local delivery through a real instance: SMTP in,
cleanup, qmgr, local, and mail in DIR/mail/ (see harness.py).  The
instance runs as a non-root user, so every delivery runs as that user."""
import os
import re
import signal
import threading

import harness

MSG = ("From: Sender <sender@localhost>\r\nSubject: %s\r\n\r\n"
       "hello\r\nFrom the start of a line\r\n>From already quoted\r\nbye\r\n")


def add_aliases(inst, text):
    with open(os.path.join(inst.dir, "aliases"), "a") as f:
        f.write(text)


def send(inst, rcpts, subject, sender="sender@localhost"):
    with inst.smtp() as s:
        refused = s.sendmail(sender, rcpts, MSG % subject)
        assert refused == {}, refused


def test_maildir_delivery_via_smtp():
    with harness.Instance(conf={"local_recipient_maps": ""}) as inst:
        send(inst, ["alice@localhost"], "one")
        # logged by local itself, in Postfix's shape
        inst.wait_log(r"postern/local\[\d+\]: \w+: to=<alice@localhost>, relay=local, "
                      r"delay=[\d.]+, delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=2\.0\.0, "
                      r"status=sent \(delivered to maildir\)$", timeout=20)
        msgs = inst.mailbox("alice")
        assert len(msgs) == 1
        lines = msgs[0].split("\n")
        assert lines[0] == "Return-Path: <sender@localhost>"
        assert lines[1] == "Delivered-To: alice@localhost"
        assert "Subject: one" in lines
        assert "From the start of a line" in lines      # Maildir: no quoting
        assert "\r" not in msgs[0]


def test_orcpt_logged_as_orig_to_by_local():
    with harness.Instance(conf={"local_recipient_maps": ""}) as inst:
        with inst.smtp() as s:
            s.ehlo("client.example")
            s.mail("sender@localhost")
            code, _ = s.rcpt("alice@localhost", options=["ORCPT=rfc822;Boss@Example.ORG"])
            assert code == 250, code
            code, _ = s.rcpt("bob@localhost", options=["ORCPT=rfc822;BOB@localhost"])
            assert code == 250, code
            code, _ = s.data(MSG % "orcpt")
            assert code == 250, code
        inst.wait_log(r"postern/local\[\d+\]: \w+: to=<alice@localhost>, "
                      r"orig_to=<Boss@Example.ORG>, relay=local, delay=[\d.]+, "
                      r"delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=2\.0\.0, "
                      r"status=sent \(delivered to maildir\)$", timeout=20)
        # an ORCPT that only differs in case is not shown
        inst.wait_log(r"postern/local\[\d+\]: \w+: to=<bob@localhost>, relay=local, "
                      r".*status=sent \(delivered to maildir\)$", timeout=20)
        # one line per recipient, from local only
        log = inst.log()
        assert len(re.findall(r"to=<alice@localhost>", log)) == 1, log
        assert not re.search(r"postern/qmgr\[\d+\]: \w+: to=", log), log


def test_alias_list_command_file_and_forward():
    with harness.Instance(conf={"local_recipient_maps": ""}) as inst:
        out = os.path.join(inst.tmp, "out")
        os.mkdir(out)
        os.chmod(out, 0o777)
        add_aliases(inst, "team: bob, carol, \"|cat > %s/cmd\", %s/archive, fwd\n"
                          "fwd: dave@localhost\n" % (out, out))
        send(inst, ["team@localhost"], "to the team")
        inst.wait_log(r"to=<dave@localhost>, (orig_to=<team@localhost>, )?relay=local, "
                      r".*status=sent \(delivered to maildir\)",
                      timeout=20)
        m = inst.wait_log(r"to=<team@localhost>, relay=local, .*status=sent \((.*)\)$", timeout=20)
        reason = m.group(1)
        assert reason.startswith("delivered to maildir, delivered to command"), reason
        assert "delivered to command: cat > %s/cmd" % out in reason, reason
        assert "delivered to file: %s/archive" % out in reason, reason
        assert re.search(r"forwarded as [0-9A-F]+", reason), reason
        for user in ("bob", "carol", "dave"):
            assert len(inst.mailbox(user)) == 1, user
        with open(os.path.join(out, "cmd")) as f:
            assert f.read().startswith("Return-Path: <sender@localhost>\nDelivered-To: team@localhost\n")
        with open(os.path.join(out, "archive")) as f:
            archive = f.read()
        assert archive.startswith("From sender@localhost ")
        assert ">From the start of a line" in archive.split("\n")
        assert ">>From already quoted" in archive.split("\n")
        # the forwarded copy carries both Delivered-To headers
        dave = inst.mailbox("dave")[0]
        assert "Delivered-To: dave@localhost\n" in dave
        assert "Delivered-To: team@localhost\n" in dave


def test_forwarding_loop_is_bounced():
    with harness.Instance(conf={"local_recipient_maps": ""}) as inst:
        add_aliases(inst, "ping: pong@localhost\npong: ping@localhost\n")
        send(inst, ["ping@localhost"], "loop", sender="erin@localhost")
        inst.wait_log(r"to=<ping@localhost>, relay=local, .*dsn=5\.4\.6, "
                      r"status=bounced \(mail forwarding loop for ping@localhost\)", timeout=30)
        # the bounce comes back to the sender's mailbox
        bounce = inst.wait_for(lambda: inst.mailbox("erin"), timeout=30, what="the bounce")
        assert "mail forwarding loop for ping@localhost" in bounce[0]


def test_mbox_spool_concurrent_deliveries_stay_whole():
    mail_conf = {"local_recipient_maps": ""}
    with harness.Instance(conf=mail_conf) as inst:
        spool = os.path.join(inst.dir, "mail")
        inst.edit_main_cf({"mail_spool_directory": spool})
        assert inst.postern("reload").returncode == 0
        n = 6
        errors = []

        def one(i):
            try:
                send(inst, ["frank@localhost"], "m%d" % i)
            except Exception as e:          # reported below
                errors.append(e)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        inst.wait_for(lambda: len(re.findall(r"to=<frank@localhost>, relay=local, .*status=sent "
                                             r"\(delivered to mailbox\)", inst.log())) == n,
                      timeout=30, what="%d deliveries" % n)
        with open(os.path.join(spool, "frank")) as f:
            box = f.read().split("\n")
        starts = [i for i, line in enumerate(box) if line.startswith("From sender@localhost ")]
        assert len(starts) == n
        subjects = sorted(line for line in box if line.startswith("Subject: m"))
        assert subjects == sorted("Subject: m%d" % i for i in range(n))
        for s in starts:
            end = box.index("bye", s)
            part = box[s:end + 2]
            assert ">From the start of a line" in part and ">>From already quoted" in part
            assert part[-1] == ""


def test_root_instance_identities():
    """A root instance: local runs as root and switches identities; mail to
    a real account lands in a mailbox owned by it; a command from the
    root-owned alias file runs as default_privs (nobody)."""
    if not harness.is_root():
        return
    import pwd
    nobody = pwd.getpwnam("nobody")
    # The alias goes in before the start: smtpd checks recipients against
    # the aliases, and an smtpd forked before the edit (the harness's
    # start-up probe) could answer with the old table (doc/testing.md).
    with harness.Instance(as_root=True, start=False) as inst:
        out = os.path.join(inst.tmp, "out")
        os.mkdir(out)
        os.chmod(out, 0o777)
        add_aliases(inst, "whoami: \"|id -u > %s/uid\"\n" % out)
        assert inst.postern("start").returncode == 0
        harness.wait_for(lambda: harness.port_accepts(inst.port), 10, what="the smtp port")
        send(inst, ["nobody@localhost", "whoami@localhost"], "root instance")
        inst.wait_log(r"to=<nobody@localhost>, relay=local, .*status=sent \(delivered to maildir\)",
                      timeout=20)
        inst.wait_log(r"to=<whoami@localhost>, relay=local, .*status=sent "
                      r"\(delivered to command: id -u", timeout=20)
        box = os.path.join(inst.dir, "mail", "nobody")
        assert os.stat(box).st_uid == nobody.pw_uid
        new = os.path.join(box, "new")
        assert os.stat(new).st_uid == nobody.pw_uid
        names = os.listdir(new)
        assert len(names) == 1
        assert os.stat(os.path.join(new, names[0])).st_uid == nobody.pw_uid
        with open(os.path.join(out, "uid")) as f:
            assert f.read().strip() == str(nobody.pw_uid)


def test_root_instance_passwd_lookups_are_kept_only_when_found():
    """local keeps passwd entries it found for a few seconds (doc/local.md):
    two users of one message still get their own mailboxes and owners, and
    a name that was not found is asked again, so a user added right after
    a bounce gets the next message instead of a second bounce."""
    if not harness.is_root():
        return
    import pwd
    import subprocess
    name = "postcache%d" % (os.getpid() % 100000)
    subprocess.run(["userdel", name], stderr=subprocess.DEVNULL)
    nobody = pwd.getpwnam("nobody")
    test_user = harness.ensure_test_user()
    try:
        with harness.Instance(as_root=True, conf={"local_recipient_maps": ""}) as inst:
            send(inst, ["nobody@localhost", "%s@localhost" % test_user.pw_name,
                        "%s@localhost" % name], "before")
            inst.wait_log(r"to=<%s@localhost>, relay=local, .*dsn=5\.1\.1, status=bounced "
                          r"\(unknown user: \"%s\"\)" % (name, name), timeout=20)
            for user, uid in (("nobody", nobody.pw_uid), (test_user.pw_name, test_user.pw_uid)):
                new = os.path.join(inst.dir, "mail", user, "new")
                names = harness.wait_for(lambda: os.path.isdir(new) and os.listdir(new), 20,
                                         what="%s's copy" % user)
                assert len(names) == 1
                assert os.stat(os.path.join(new, names[0])).st_uid == uid
            subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir",
                            "/nonexistent", "--shell", "/usr/sbin/nologin", name], check=True)
            added = pwd.getpwnam(name)
            send(inst, ["nobody@localhost", "%s@localhost" % name], "after")
            inst.wait_log(r"to=<%s@localhost>, relay=local, .*status=sent "
                          r"\(delivered to maildir\)" % name, timeout=20)
            new = os.path.join(inst.dir, "mail", name, "new")
            names = os.listdir(new)
            assert len(names) == 1
            assert os.stat(os.path.join(new, names[0])).st_uid == added.pw_uid
            assert len(os.listdir(os.path.join(inst.dir, "mail", "nobody", "new"))) == 2
    finally:
        subprocess.run(["userdel", name], stderr=subprocess.DEVNULL)


def test_list_member_bounce_goes_to_the_list_owner():
    """owner-list exists: list members get their own queue file records
    (resubmitted with sender owner-list@$myorigin), so a member that
    bounces is reported to the owner -- whose alias delivers it to kate --
    and not to the original sender; a command of the list that fails for
    good is reported to the owner by local itself."""
    import email
    import email.policy
    with harness.Instance(conf={"local_recipient_maps": ""}, start=False) as inst:
        transport = os.path.join(inst.dir, "transport")
        with open(transport, "w") as f:
            f.write("ghost@localhost.localdomain error:5.1.1 ghost has left\n")
        inst.edit_main_cf({"transport_maps": "texthash:" + transport})
        add_aliases(inst, 'list: bob, ghost, "|echo gone fishing; exit 67"\n'
                          "owner-list: kate\n")
        assert inst.postern("start").returncode == 0
        harness.wait_for(lambda: harness.port_accepts(inst.port), 10, what="the smtp port")
        send(inst, ["list@localhost"], "to the list")
        inst.wait_log(r"to=<list@localhost>, relay=local, .*status=sent \(failure reported to "
                      r"owner-list@localhost.localdomain as [0-9A-F]+, forwarded as [0-9A-F]+\)",
                      timeout=20)
        harness.wait_for(lambda: len(inst.mailbox("kate")) == 2, 30,
                         what="two failure reports at the owner")
        bob = harness.wait_for(lambda: inst.mailbox("bob"), 30, what="bob's copy")
        assert len(bob) == 1
        assert bob[0].startswith("Return-Path: <owner-list@localhost.localdomain>\n"), bob[0][:200]
        assert "Subject: to the list" in bob[0]
        failed = {}
        for text in inst.mailbox("kate"):
            assert text.startswith("Return-Path: <>\n"), text[:200]
            report = email.message_from_string(text, policy=email.policy.compat32)
            assert report.get_content_type() == "multipart/report"
            status = report.get_payload()[1]
            assert status.get_content_type() == "message/delivery-status"
            groups = [g for g in status.get_payload() if g.get("Final-Recipient")]
            assert len(groups) == 1
            assert groups[0]["Action"] == "failed"
            failed[groups[0]["Final-Recipient"].split(";")[1].strip()] = (
                groups[0]["Status"], text)
        assert sorted(failed) == ["ghost@localhost.localdomain", "list@localhost"], failed
        assert failed["ghost@localhost.localdomain"][0] == "5.1.1"
        assert failed["list@localhost"][0] == "5.1.1"
        assert "gone fishing" in failed["list@localhost"][1]
        # The sender hears nothing: the list was delivered as far as it knows.
        inst.wait_log(r"to=<ghost@localhost.localdomain>, .*status=bounced")
        assert inst.mailbox("sender") == []
        assert inst.mailbox("ghost") == []


# ---- qmgr pipelines requests to local (local_destination_pipeline_limit) --

def _local_max_use_1(inst):
    """Each local process serves one connection and exits: the number of
    local pids in the log is the number of connections qmgr made."""
    path = os.path.join(inst.dir, "master.cf")
    with open(path) as f:
        text = f.read()
    text, n = re.subn(r"^(local\s+unix\s.*\blocal)\s*$", r"\1 -o max_use=1", text, flags=re.M)
    assert n == 1, text
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def _start(inst):
    r = inst.postern("start")
    assert r.returncode == 0, r.stderr + inst.log()
    inst.wait_for(lambda: harness.port_accepts(inst.port), what="the smtp port")


def _held_then_flushed(limit, n=24):
    """n messages to one mailbox wait (defer_transports) and are then
    flushed at once, so qmgr has them all when it connects to local.
    Returns the set of local pids that delivered them."""
    conf = {"local_recipient_maps": "", "defer_transports": "local",
            "local_destination_pipeline_limit": str(limit),
            "local_destination_concurrency_limit": "2"}
    with harness.Instance(conf=conf, start=False) as inst:
        _local_max_use_1(inst)
        _start(inst)
        with inst.smtp() as s:
            for i in range(n):
                assert s.sendmail("sender@localhost", ["alice@localhost"],
                                  MSG % ("pipelined %d" % i)) == {}
        inst.wait_for(lambda: inst.log().count("status=deferred (deferred transport)") == n,
                      what="%d messages waiting" % n)
        r = inst.postern("flush")
        assert r.returncode == 0, r.stderr
        inst.wait_for(lambda: len(re.findall(r"postern/qmgr\[\d+\]: \w+: removed", inst.log()))
                      == n, what="%d messages removed" % n)
        msgs = inst.mailbox("alice")
        subjects = sorted(int(re.search(r"^Subject: pipelined (\d+)$", m, re.M).group(1))
                          for m in msgs)
        assert subjects == list(range(n)), subjects     # each exactly once
        for m in msgs:
            assert "From the start of a line\n>From already quoted\nbye\n" in m, m
        pids = set(re.findall(r"postern/local\[(\d+)\]: \w+: to=<alice@localhost>, "
                              r"relay=local, .*status=sent", inst.log()))
        assert inst.log().count("status=sent (delivered to maildir)") == n
        return pids


def test_pipelined_deliveries_share_local_processes():
    # 24 requests, at most 8 per connection: at least 3 connections; with
    # the window of 2 and all 24 waiting, a handful.
    pids = _held_then_flushed(8)
    assert 3 <= len(pids) <= 8, pids


def test_pipeline_limit_1_is_one_delivery_per_connection():
    # As before pipelining: one request per connection, so (max_use=1)
    # one local process per message.  (pid reuse could merge two.)
    pids = _held_then_flushed(1)
    assert len(pids) >= 20, pids


def test_local_killed_mid_pipeline_loses_nothing():
    """SIGKILL local while it delivers the first of 8 pipelined requests:
    qmgr defers that one and the 7 behind it; after `postern flush` every
    message is in the mailbox, only the one in flight may be there twice,
    and the queue is empty."""
    n = 8
    conf = {"local_recipient_maps": "", "defer_transports": "local",
            "local_destination_pipeline_limit": "8",
            "local_destination_concurrency_limit": "1"}
    with harness.Instance(conf=conf) as inst:
        t = os.path.join(inst.tmp, "t")
        os.mkdir(t)
        os.chmod(t, 0o777)
        # Every delivery to slow: a copy to bob, then a command that waits
        # for the gate file (created after the kill).
        add_aliases(inst, 'slow: bob, "|cat >/dev/null; touch %s/started.$$; '
                          'while [ ! -e %s/gate ]; do sleep 0.05; done"\n' % (t, t))
        with inst.smtp() as s:
            for i in range(n):
                assert s.sendmail("sender@localhost", ["slow@localhost"],
                                  MSG % ("killed %d" % i)) == {}
        inst.wait_for(lambda: inst.log().count("status=deferred (deferred transport)") == n,
                      what="%d messages waiting" % n)
        assert inst.postern("flush").returncode == 0
        inst.wait_for(lambda: any(f.startswith("started.") for f in os.listdir(t)),
                      what="the first delivery in its command")

        def local_pids():
            found = []
            for pid in inst.pids():
                try:
                    with open("/proc/%d/cmdline" % pid, "rb") as f:
                        argv0 = f.read().split(b"\0")[0]
                except OSError:
                    continue
                if argv0.endswith(b"/local"):
                    found.append(pid)
            return found
        victims = local_pids()
        assert len(victims) == 1, victims       # window 1: one connection
        os.kill(victims[0], signal.SIGKILL)
        # qmgr defers the one in flight and those queued behind it.
        closed = r"postern/qmgr\[\d+\]: (\w+): to=<slow@localhost>, relay=none, .*" \
                 r"status=deferred \(delivery agent local: connection closed before the end " \
                 r"of the results\)"
        inst.wait_for(lambda: len(re.findall(closed, inst.log())) == n,
                      what="all %d deferred by qmgr" % n)
        assert len(set(re.findall(closed, inst.log()))) == n
        open(os.path.join(t, "gate"), "w").close()
        assert inst.postern("flush").returncode == 0
        inst.wait_for(lambda: len(re.findall(r"postern/qmgr\[\d+\]: \w+: removed", inst.log()))
                      == n, what="%d messages removed" % n)
        r = inst.postern("queue")
        assert r.returncode == 0 and "Mail queue is empty" in r.stdout, r.stdout + r.stderr
        subjects = [int(re.search(r"^Subject: killed (\d+)$", m, re.M).group(1))
                    for m in inst.mailbox("bob")]
        assert sorted(set(subjects)) == list(range(n)), subjects    # none lost
        assert len(subjects) <= n + 1, subjects                     # one duplicate at most
