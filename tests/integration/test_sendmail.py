"""sendmail, postdrop and pickup through a real instance: every sendmail
option, its exit codes (sysexits.h) and the one-line fatal messages.

The instance runs as an ordinary user (posterntest when the tests run as
root); sendmail runs as that user, so the message's owner uid is that
user's.  Mail for any local name lands in DIR/mail/NAME/ (local_recipient_maps
is empty)."""
import glob
import os
import pwd
import re
import subprocess

import harness

CONF = {"local_recipient_maps": ""}
DOMAIN = "localhost.localdomain"


def sendmail(inst, args, text, prog="sendmail", config=True, env=None):
    path = os.path.join(inst.build, "bin", prog)
    argv = [path] + (["-C", inst.dir] if config else []) + list(args)
    if env:
        argv = ["env"] + ["%s=%s" % kv for kv in env.items()] + argv
    return inst.run(argv, input=text)


def uid_of(inst):
    return pwd.getpwnam(inst.user).pw_uid


def one_message(inst, user, timeout=20):
    harness.wait_for(lambda: inst.mailbox(user), timeout, what="mail for %s" % user)
    msgs = inst.mailbox(user)
    assert len(msgs) == 1, msgs
    return msgs[0]


def header_block(msg):
    return msg.split("\n\n", 1)[0]


def assert_fatal(r, status, text):
    assert r.returncode == status, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("sendmail: fatal: "), r.stderr
    assert text in lines[0], r.stderr


def maildrop_files(inst):
    return os.listdir(os.path.join(inst.dir, "spool", "maildrop"))


def test_plain_submission_is_delivered_with_uid_and_default_sender():
    with harness.Instance(conf=CONF) as inst:
        r = sendmail(inst, ["alice"], "Subject: plain\n\nhello\n")
        assert r.returncode == 0 and r.stderr == "", r.stderr
        msg = one_message(inst, "alice")
        head = header_block(msg)
        assert "Return-Path: <%s@%s>" % (inst.user, DOMAIN) in head
        assert re.search(r"^Received: by %s \(postern, from userid %d\)"
                         % (re.escape(DOMAIN), uid_of(inst)), head, re.M), head
        assert re.search(r"^From: .*<?%s@%s>?$" % (inst.user, re.escape(DOMAIN)), head, re.M), head
        assert msg.endswith("\n\nhello\n")
        inst.wait_log(r"postern/pickup\[\d+\]: [0-9A-F]+: uid=%d from=<%s>$"
                      % (uid_of(inst), inst.user))
        harness.wait_for(lambda: maildrop_files(inst) == [], 10, what="an empty maildrop")


def test_dot_ends_input_unless_i_or_oi():
    with harness.Instance(conf=CONF) as inst:
        text = "Subject: dots\n\nbefore\n.\nafter\n"
        assert sendmail(inst, ["alice"], text).returncode == 0
        assert sendmail(inst, ["-i", "bob"], text).returncode == 0
        assert sendmail(inst, ["-oi", "carol"], text).returncode == 0
        assert one_message(inst, "alice").endswith("\n\nbefore\n")
        assert one_message(inst, "bob").endswith("\n\nbefore\n.\nafter\n")
        assert one_message(inst, "carol").endswith("\n\nbefore\n.\nafter\n")


def test_crlf_input_and_mbox_from_line():
    with harness.Instance(conf=CONF) as inst:
        text = "From someone Sat Nov 28 00:00:00 2026\r\nSubject: crlf\r\n\r\nline\r\n"
        assert sendmail(inst, ["alice"], text).returncode == 0
        msg = one_message(inst, "alice")
        assert "\r" not in msg
        assert "From someone" not in msg
        assert msg.endswith("\n\nline\n")


def test_t_takes_to_cc_bcc_and_removes_bcc():
    with harness.Instance(conf=CONF) as inst:
        text = ("To: Alice <alice>\nCc: bob@%s\nBcc: carol\nSubject: extract\n\nbody\n" % DOMAIN)
        r = sendmail(inst, ["-t", "dave"], text)
        assert r.returncode == 0, r.stderr
        for user in ("alice", "bob", "carol", "dave"):
            msg = one_message(inst, user)
            head = header_block(msg)
            assert "Subject: extract" in head
            assert not re.search(r"^Bcc:", head, re.M | re.I), head
            if user != "carol":
                assert "carol" not in head, head


def test_t_without_recipients_is_usage_error_and_queues_nothing():
    with harness.Instance(conf=CONF) as inst:
        r = sendmail(inst, ["-t"], "Subject: nobody\n\nbody\n")
        assert_fatal(r, 64, "No recipient addresses found in message header")
        r = sendmail(inst, [], "Subject: nobody\n\nbody\n")
        assert_fatal(r, 64, "Recipient addresses must be specified")
        assert maildrop_files(inst) == []
        assert "pickup" not in inst.log()


def test_sender_options_f_r_and_null_sender_and_fullname():
    with harness.Instance(conf=CONF) as inst:
        assert sendmail(inst, ["-f", "list-owner@example.org", "alice"], "Subject: f\n\nx\n").returncode == 0
        assert sendmail(inst, ["-rbounces@example.net", "bob"], "Subject: r\n\nx\n").returncode == 0
        assert sendmail(inst, ["-f", "<>", "carol"], "Subject: null\n\nx\n").returncode == 0
        assert sendmail(inst, ["-F", "Ada Lovelace", "dave"], "Subject: F\n\nx\n").returncode == 0
        assert sendmail(inst, ["dave2"], "Subject: NAME\n\nx\n", env={"NAME": "Grace Hopper"}).returncode == 0
        assert "Return-Path: <list-owner@example.org>" in one_message(inst, "alice")
        assert "Return-Path: <bounces@example.net>" in one_message(inst, "bob")
        assert "Return-Path: <>" in one_message(inst, "carol")
        head = header_block(one_message(inst, "dave"))
        assert re.search(r"^From: \"?Ada Lovelace\"? <%s@%s>$" % (inst.user, re.escape(DOMAIN)),
                         head, re.M), head
        head = header_block(one_message(inst, "dave2"))
        assert "Grace Hopper" in head, head
        inst.wait_log(r"uid=%d from=<list-owner@example.org>" % uid_of(inst))


def test_dsn_options_reach_the_queue_file():
    with harness.Instance(conf=dict(CONF, header_checks="regexp:DIR/hc"), start=False) as inst:
        with open(os.path.join(inst.dir, "hc"), "w") as f:
            f.write("/^Subject: hold me/ HOLD\n")
        harness.set_main_cf(os.path.join(inst.dir, "main.cf"),
                            {"header_checks": "regexp:%s/hc" % inst.dir})
        assert inst.postern("start").returncode == 0
        r = sendmail(inst, ["-N", "success,Delay", "-R", "hdrs", "-V", "env-id.42", "alice"],
                     "Subject: hold me\n\nx\n")
        assert r.returncode == 0, r.stderr
        hold = os.path.join(inst.dir, "spool", "hold")
        files = harness.wait_for(lambda: os.listdir(hold), 20, what="a held message")
        with open(os.path.join(hold, files[0]), "rb") as f:
            data = f.read()
        assert b"\nA8:ret=HDRS\n" in data, data
        assert b"\nA15:envid=env-id.42\n" in data, data
        assert re.search(rb"\nN\d+:SUCCESS,DELAY\nR\d+:-alice@", data), data
        assert b"A13:origin=pickup" in data, data


def test_bad_option_values_are_usage_errors():
    with harness.Instance(conf=CONF) as inst:
        assert_fatal(sendmail(inst, ["-N", "sometimes", "a"], "x\n"), 64, "-N sometimes")
        assert_fatal(sendmail(inst, ["-R", "most", "a"], "x\n"), 64, "-R most")
        assert_fatal(sendmail(inst, ["-V", "has space", "a"], "x\n"), 64, "-V")
        assert_fatal(sendmail(inst, ["-Z", "a"], "x\n"), 64, "unknown option -Z")
        assert_fatal(sendmail(inst, ["-bv", "a"], "x\n"), 64, "-bv")
        assert_fatal(sendmail(inst, ["-f"], "x\n"), 64, "option -f needs a value")
        assert_fatal(sendmail(inst, ["-F", "bad\x01name", "a"], "x\n"), 64, "control character")
        assert maildrop_files(inst) == []


def test_bad_addresses_are_data_errors():
    with harness.Instance(conf=CONF) as inst:
        assert_fatal(sendmail(inst, ["a@@b"], "x\n"), 65, "bad recipient address syntax: a@@b")
        assert_fatal(sendmail(inst, ["good", "<unbalanced"], "x\n"), 65, "<unbalanced")
        assert_fatal(sendmail(inst, ["-f", "a b@@c", "alice"], "x\n"), 65, "bad sender address")
        assert maildrop_files(inst) == []


def test_ignored_options_and_double_dash_and_address_lists():
    with harness.Instance(conf=CONF) as inst:
        r = sendmail(inst, ["-oem", "-odi", "-B8BITMIME", "-v", "-om", "-G", "-h", "5",
                            "-L", "label", "-U", "-n", "-oQ/tmp", "-O", "x=y", "-X", "/dev/null",
                            "--", "alice, Bob <bob>"], "Subject: ign\n\nx\n")
        assert r.returncode == 0, r.stderr
        for opt in ("-G", "-h 5", "-L label", "-U", "-n", "-oQ/tmp", "-O x=y", "-X /dev/null"):
            assert "sendmail: warning: option %s ignored" % opt in r.stderr, (opt, r.stderr)
        assert "-oem" not in r.stderr and "-B" not in r.stderr
        one_message(inst, "alice")
        one_message(inst, "bob")


def test_q_interval_is_ignored_with_warning():
    with harness.Instance(conf=CONF) as inst:
        r = sendmail(inst, ["-q30m"], "")
        assert r.returncode == 0
        assert "sendmail: warning: option -q30m ignored" in r.stderr


def test_config_dir_from_main_cf_path_and_environment():
    with harness.Instance(conf=CONF) as inst:
        r = inst.run([os.path.join(inst.build, "bin", "sendmail"), "-C",
                      os.path.join(inst.dir, "main.cf"), "alice"], input="Subject: C\n\nx\n")
        assert r.returncode == 0, r.stderr
        r = sendmail(inst, ["bob"], "Subject: env\n\nx\n", config=False,
                     env={"POSTERN_CONFIG_DIR": inst.dir})
        assert r.returncode == 0, r.stderr
        one_message(inst, "alice")
        one_message(inst, "bob")
        r = inst.run([os.path.join(inst.build, "bin", "sendmail"), "-C",
                      os.path.join(inst.tmp, "nonexistent"), "alice"], input="x\n")
        assert r.returncode == 78, r.stderr
        assert r.stderr.startswith("sendmail: fatal: ") and len(r.stderr.splitlines()) == 1


def test_message_size_limit():
    with harness.Instance(conf=dict(CONF, message_size_limit="2000")) as inst:
        r = sendmail(inst, ["alice"], "Subject: big\n\n" + ("x" * 70 + "\n") * 40)
        assert_fatal(r, 65, "message file too big")
        assert maildrop_files(inst) == []
        r = sendmail(inst, ["alice"], "Subject: small\n\n" + ("x" * 70 + "\n") * 10)
        assert r.returncode == 0
        one_message(inst, "alice")


def test_postdrop_failure_is_tempfail():
    with harness.Instance(conf=CONF) as inst:
        maildrop = os.path.join(inst.dir, "spool", "maildrop")
        mode = os.stat(maildrop).st_mode & 0o7777
        # Run as the owner of maildrop/, so only a permission change stops it.
        os.chmod(maildrop, 0o1500)
        try:
            r = sendmail(inst, ["alice"], "Subject: fail\n\nx\n")
        finally:
            os.chmod(maildrop, mode)
        if os.geteuid() == 0 and inst.user == "root":
            return                      # root ignores the mode
        assert_fatal(r, 75, "postdrop: create")


def test_bs_smtp_on_stdin():
    with harness.Instance(conf=CONF) as inst:
        session = ("EHLO client.example\r\n"
                   "RCPT TO:<alice>\r\n"
                   "MAIL FROM:<sender@example.org> RET=HDRS ENVID=abc\r\n"
                   "MAIL FROM:<other@example.org>\r\n"
                   "RCPT TO:<alice@%s> NOTIFY=NEVER\r\n"
                   "RCPT TO:<bad@@x>\r\n"
                   "RCPT TO:<bob> FOO=1\r\n"
                   "VRFY alice\r\n"
                   "BOGUS\r\n"
                   "DATA\r\n"
                   "Subject: bs\r\n\r\n..stuffed\r\nplain\r\n.\r\n"
                   "MAIL FROM:<>\r\n"
                   "DATA\r\n"
                   "RSET\r\n"
                   "NOOP\r\n"
                   "QUIT\r\n" % DOMAIN)
        r = sendmail(inst, ["-bs"], session)
        assert r.returncode == 0, r.stderr
        codes = [line[:4] for line in r.stdout.splitlines() if line]
        assert codes == ["220 ", "250-", "250-", "250-", "250-", "250-", "250 ",
                         "503 ", "250 ", "503 ", "250 ", "501 ", "555 ", "502 ", "502 ",
                         "354 ", "250 ", "250 ", "503 ", "250 ", "250 ", "221 "], r.stdout
        assert "250-DSN" in r.stdout
        assert re.search(r"^250 2\.0\.0 Ok: queued as [0-9A-Z]+\r?$", r.stdout, re.M), r.stdout
        msg = one_message(inst, "alice")
        assert "Return-Path: <sender@example.org>" in msg
        assert msg.endswith("\n\n.stuffed\nplain\n")


def test_bs_queued_as_names_the_maildrop_file():
    """-bs answers DATA with "queued as MID", MID the maildrop file postdrop
    wrote (pickup is off here, so the files stay to be compared)."""
    with harness.Instance(conf=CONF, start=False) as inst:
        path = os.path.join(inst.dir, "master.cf")
        text = open(path).read()
        assert re.search(r"^pickup ", text, re.M)
        with open(path, "w") as f:
            f.write(re.sub(r"^pickup ", "#pickup ", text, flags=re.M))
        assert inst.postern("start").returncode == 0
        msg = "MAIL FROM:<a@example.org>\r\nRCPT TO:<alice>\r\nDATA\r\nSubject: %s\r\n\r\nx\r\n.\r\n"
        r = sendmail(inst, ["-bs"], "EHLO x\r\n" + msg % "one" + msg % "two" + "QUIT\r\n")
        assert r.returncode == 0, r.stderr
        ids = re.findall(r"^250 2\.0\.0 Ok: queued as (\S+)\r?$", r.stdout, re.M)
        assert len(ids) == 2 and ids[0] != ids[1], r.stdout
        assert sorted(ids) == sorted(maildrop_files(inst)), (ids, maildrop_files(inst))


def test_bs_session_ends_at_the_hard_error_limit():
    """Errors are capped per session like smtpd's: below
    smtpd_hard_error_limit the session goes on (a message is still
    queued), at the limit it ends with 421 4.7.0 and exit 76 (EX_PROTOCOL)
    without reading the rest of the input."""
    with harness.Instance(conf=dict(CONF, smtpd_hard_error_limit="5")) as inst:
        session = ("HELO x\r\n"
                   "BOGUS\r\n"                          # 1: 502
                   "RCPT TO:<alice>\r\n"                # 2: 503
                   "MAIL FROM:<a@b> FOO=1\r\n"          # 3: 555
                   "MAIL FROM:<a@example.org>\r\n"
                   "RCPT TO:<bad@@x>\r\n"               # 4: 501
                   "RCPT TO:<alice>\r\n"
                   "DATA\r\nSubject: limit\r\n\r\nstill queued\r\n.\r\n"
                   "VRFY alice\r\n"                     # 5: 502 -> 421
                   "MAIL FROM:<late@example.org>\r\n"
                   "QUIT\r\n")
        r = sendmail(inst, ["-bs"], session)
        assert r.returncode == 76, (r.returncode, r.stdout, r.stderr)
        lines = [line.rstrip("\r") for line in r.stdout.splitlines() if line]
        codes = [line[:3] for line in lines]
        assert codes == ["220", "250", "502", "503", "555", "250", "501", "250", "354", "250",
                         "502", "421"], r.stdout
        assert re.match(r"421 4\.7\.0 \S+ Error: too many errors$", lines[-1]), lines
        assert "still queued" in one_message(inst, "alice")
        # The default limit (20) lets a client make 19 errors and go on.
        inst.edit_main_cf({"smtpd_hard_error_limit": "20"})
        r = sendmail(inst, ["-bs"], "NOOP\r\n" + "BOGUS\r\n" * 19 + "NOOP\r\nQUIT\r\n")
        assert r.returncode == 0, r.stdout
        assert r.stdout.count("502 ") == 19 and "421" not in r.stdout
        assert r.stdout.rstrip().endswith("221 2.0.0 Bye"), r.stdout
        r = sendmail(inst, ["-bs"], "BOGUS\r\n" * 25 + "QUIT\r\n")
        assert r.returncode == 76 and r.stdout.count("502 ") == 20, r.stdout


def test_bs_end_of_input_in_data_queues_nothing():
    with harness.Instance(conf=CONF) as inst:
        r = sendmail(inst, ["-bs"], "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice>\r\nDATA\r\nSubject: cut\r\n")
        assert r.returncode == 0
        assert maildrop_files(inst) == []
        assert "pickup" not in inst.log()


def test_newaliases_builds_hash_alias_maps():
    with harness.Instance(conf=CONF, start=False) as inst:
        aliases = os.path.join(inst.dir, "aliases.hash")
        with open(aliases, "w") as f:
            f.write("team: alice, bob\n")
        harness.set_main_cf(os.path.join(inst.dir, "main.cf"),
                            {"alias_maps": "hash:%s, texthash:%s/aliases" % (aliases, inst.dir)})
        r = sendmail(inst, [], "", prog="newaliases")
        assert r.returncode == 0, r.stderr
        assert os.path.exists(aliases + ".db")
        os.unlink(aliases + ".db")
        r = sendmail(inst, ["-bi"], "")
        assert r.returncode == 0, r.stderr
        assert os.path.exists(aliases + ".db")
        assert inst.postern("start").returncode == 0
        assert sendmail(inst, ["team"], "Subject: alias\n\nx\n").returncode == 0
        one_message(inst, "alice")
        one_message(inst, "bob")
        with open(aliases, "a") as f:
            f.write("lonely-key-without-value\n")
        r = sendmail(inst, ["-I"], "")
        assert r.returncode == 73, r.stderr
        assert r.stderr.startswith("sendmail: fatal: ") and "aliases.hash" in r.stderr


def test_bp_mailq_and_q_flush_run_postern_queue_and_flush():
    closed = harness.free_port()
    conf = dict(CONF, relayhost="[127.0.0.1]:%d" % closed, minimal_backoff_time="3600s",
                maximal_backoff_time="3600s", queue_run_delay="3600s")
    with harness.Instance(conf=conf) as inst:
        r = sendmail(inst, ["-f", "owner@example.org", "far@example.com"], "Subject: far\n\nx\n")
        assert r.returncode == 0, r.stderr
        m = inst.wait_log(r"([0-9A-F]+): to=<far@example.com>, relay=none, .*status=deferred",
                          timeout=30)
        qid = m.group(1)
        for args, prog, env in ((["-bp"], "sendmail", None),
                                ([], "mailq", {"POSTERN_CONFIG_DIR": inst.dir})):
            r = sendmail(inst, args, "", prog=prog, config=prog == "sendmail", env=env)
            assert r.returncode == 0, (prog, r.stderr)
            assert re.search(r"^%s\s+\d+ .* owner@example.org$" % qid, r.stdout, re.M), r.stdout
            assert re.search(r"^\s+\(.*\)$", r.stdout, re.M), r.stdout      # the reason
            assert re.search(r"^\s+far@example.com$", r.stdout, re.M), r.stdout
        deferrals = lambda: len(re.findall(r"%s: to=<far@example.com>, .*status=deferred" % qid,
                                           inst.log()))
        assert deferrals() == 1
        r = sendmail(inst, ["-q"], "")
        assert r.returncode == 0, r.stderr
        harness.wait_for(lambda: deferrals() >= 2, 30, what="a retry after sendmail -q")


def test_rejected_submission_returns_to_sender():
    with harness.Instance(conf=CONF, start=False) as inst:
        with open(os.path.join(inst.dir, "hc"), "w") as f:
            f.write("/^Subject: reject me/ REJECT no such subjects here\n")
        harness.set_main_cf(os.path.join(inst.dir, "main.cf"),
                            {"header_checks": "regexp:%s/hc" % inst.dir})
        assert inst.postern("start").returncode == 0
        r = sendmail(inst, ["-V", "env-77", "alice"], "Subject: reject me\n\nthe body\n")
        assert r.returncode == 0, r.stderr       # queued in maildrop/: cleanup decides later
        m = inst.wait_log(r"pickup\[\d+\]: ([0-9A-F]+): sender non-delivery notification: "
                          r"([0-9A-F]+)$", timeout=20)
        bounce = one_message(inst, inst.user)
        assert "Subject: Undelivered Mail Returned to Sender" in bounce, bounce
        assert "Return-Path: <>" in bounce
        assert "no such subjects here" in bounce
        assert "Original-Envelope-Id: env-77" in bounce, bounce
        assert "the body" in bounce and "Subject: reject me" in bounce
        assert inst.mailbox("alice") == []
        # A null sender cannot be told: the file is kept aside instead.
        r = sendmail(inst, ["-f", "<>", "alice"], "Subject: reject me\n\nagain\n")
        assert r.returncode == 0
        inst.wait_log(r"warning: maildrop/([0-9A-F]+): rejected by cleanup as [0-9A-F]+ and not "
                      r"returned to the sender; moved to corrupt/", timeout=20)
        assert maildrop_files(inst) == []
        assert len(os.listdir(os.path.join(inst.dir, "spool", "corrupt"))) == 1


def test_large_binary_and_long_line_content_arrives_intact():
    with harness.Instance(conf=CONF) as inst:
        long_line = "".join(chr(ord("a") + i % 26) for i in range(200000))
        body = ("8-bit: gr\u00fc\u00dfe\n" + long_line + "\n" + "x" * 70 + "\n") * 3
        text = "Subject: big\nContent-Type: text/plain; charset=utf-8\n\n" + body
        path = os.path.join(inst.build, "bin", "sendmail")
        r = subprocess.run(inst._as_user([path, "-C", inst.dir, "-i", "alice"]),
                           input=text.encode() + b"nul\x00byte\n", capture_output=True)
        assert r.returncode == 0, r.stderr
        harness.wait_for(lambda: inst.mailbox("alice"), 30, what="the big message")
        d = os.path.join(inst.dir, "mail", "alice", "new")
        with open(os.path.join(d, os.listdir(d)[0]), "rb") as f:
            stored = f.read()
        assert stored.endswith(b"\n\n" + body.encode() + b"nul\x00byte\n")


def test_bd_starts_the_mail_system():
    with harness.Instance(conf=CONF, start=False) as inst:
        assert not inst.master_pid()
        r = sendmail(inst, ["-bd"], "")
        assert r.returncode == 0, r.stderr
        harness.wait_for(inst.master_pid, 10, what="the master")


def test_maildrop_file_mode_owner_and_no_temporary_name():
    """postdrop's maildrop file is 0444, owned by the submitting user, under
    its queue id -- written as an unnamed file and linked (no .tmp name),
    and the same through both fallbacks of an LD_PRELOAD shim
    (fail_tmpfile.c): no O_TMPFILE (.tmp + rename), and an unnamed file
    that cannot be linked (copied into a .tmp file, renamed).  The
    instance is not started, so pickup leaves the files alone."""
    with harness.Instance(conf=CONF, start=False) as inst:
        shim = os.path.join(inst.tmp, "fail_tmpfile.so")
        subprocess.run(["cc", "-shared", "-fPIC", "-o", shim,
                        os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                     "fail_tmpfile.c"), "-ldl"], check=True)
        os.chmod(shim, 0o755)
        os.chmod(inst.tmp, 0o755)
        maildrop = os.path.join(inst.dir, "spool", "maildrop")
        seen = set()
        for mode in ("", "open", "link"):
            env = {"LD_PRELOAD": shim, "FAIL_TMPFILE": mode} if mode else None
            r = sendmail(inst, ["alice"], "Subject: %s\n\nbody\n" % mode, env=env)
            assert r.returncode == 0, (mode, r.stderr)
            names = set(maildrop_files(inst)) - seen
            assert len(names) == 1, (mode, names)
            name = names.pop()
            seen.add(name)
            assert re.match(r"^[0-9A-F]{15,30}$", name), name
            st = os.stat(os.path.join(maildrop, name))
            # The id holds the inode the file had when it was made: a copy
            # (the "link" fallback) has another, which shows the shim acted.
            assert (int(name[14:], 16) == st.st_ino) == (mode != "link"), (mode, name, st.st_ino)
            assert st.st_mode & 0o7777 == 0o444, (mode, oct(st.st_mode))
            assert st.st_uid == uid_of(inst), (mode, st.st_uid)
            assert st.st_nlink == 1
            with open(os.path.join(maildrop, name), "rb") as f:
                data = f.read()
            assert data.startswith(b"V1:1\n") and data.endswith(b"E0:\n"), data
            assert (b"Subject: %s" % mode.encode()) in data, data
