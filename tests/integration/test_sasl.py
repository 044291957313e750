"""smtpd SMTP AUTH (RFC 4954) with Cyrus SASL against a real instance:
users in a sasldb made with saslpasswd2, mechanisms from smtpd.conf
(cyrus_sasl_config_path), PLAIN / LOGIN / CRAM-MD5 / SCRAM-SHA-256, no
AUTH before TLS, relay only after AUTH on submission and submissions,
wrong passwords, malformed AUTH dialogues, AUTH= on MAIL,
smtpd_sender_login_maps, and the log and Received: lines.  Clients:
msmtp (a real MUA-side client), swaks, and raw sockets for exact bytes.
"""
import base64
import contextlib
import hashlib
import hmac
import os
import pwd
import re
import subprocess
import time

import harness
import tls_helpers
from test_tls import Raw
from tls_helpers import HOSTNAME

USERS = {"alice@example.org": "wonder land", "bob@example.org": "builder"}


def b64(data):
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def plain(user, password):
    return b64("\0%s\0%s" % (user, password))


@contextlib.contextmanager
def sasl_instance(conf=None, files=None):
    """TLS (may on smtp; the shipped submission/submissions entries) and
    SASL with USERS; AUTH only inside TLS; files {name: text} written into
    the instance dir (DIR in conf values).  Yields (inst, certs)."""
    with harness.Instance(start=False) as inst:
        for name, text in (files or {}).items():
            with open(os.path.join(inst.dir, name), "w") as f:
                f.write(text)
            os.chmod(os.path.join(inst.dir, name), 0o644)
        certs = tls_helpers.make_certs(os.path.join(inst.tmp, "certs"))
        settings = {"local_recipient_maps": "", "smtpd_tls_auth_only": "yes"}
        settings.update(tls_helpers.tls_conf(certs))
        settings.update(tls_helpers.sasl_setup(inst, USERS))
        settings.update(conf or {})
        inst.edit_main_cf({k: v.replace("DIR", inst.dir) for k, v in settings.items()})
        r = inst.postern("start")
        assert r.returncode == 0, "postern start failed: " + r.stderr + inst.log()
        harness.wait_for(lambda: harness.port_accepts(inst.port), 10, what="the smtp port")
        yield inst, certs


def tls_session(inst, certs, port):
    s = Raw(port)
    assert s.reply()[0] == 220
    s.cmd("EHLO client.example")
    assert s.cmd("STARTTLS")[0] == 220
    s.starttls(tls_helpers.client_context(certs))
    code, lines = s.cmd("EHLO client.example")
    assert code == 250
    return s, lines


def test_no_auth_before_tls_then_plain_login_and_relay():
    with sasl_instance() as (inst, certs):
        # plaintext on the smtp port: AUTH neither offered nor accepted
        s = Raw(inst.port)
        try:
            s.reply()
            code, lines = s.cmd("EHLO client.example")
            assert not any(l[4:].startswith("AUTH") for l in lines), lines
            assert s.cmd("AUTH PLAIN " + plain("alice@example.org", USERS["alice@example.org"])) \
                == (538, ["538 5.7.11 Encryption required for requested authentication mechanism"])
        finally:
            s.close()

        # submission: relay refused without AUTH, allowed after it
        s, lines = tls_session(inst, certs, inst.submission_port)
        try:
            assert "250-AUTH PLAIN LOGIN SCRAM-SHA-256 CRAM-MD5" in lines, lines
            assert s.cmd("MAIL FROM:<alice@example.org>")[0] == 250
            assert s.cmd("RCPT TO:<someone@remote.example>") == \
                (554, ["554 5.7.1 <someone@remote.example>: Recipient address rejected: "
                       "Access denied"])
            assert s.cmd("RSET")[0] == 250
            assert s.cmd("AUTH PLAIN " + plain("alice@example.org", USERS["alice@example.org"])) \
                == (235, ["235 2.7.0 Authentication successful"])
            assert s.cmd("AUTH PLAIN " + plain("alice@example.org", "x")) == \
                (503, ["503 5.5.1 Error: already authenticated"])
            assert s.cmd("MAIL FROM:<alice@example.org> AUTH=alice+40example.org")[0] == 250
            assert s.cmd("RCPT TO:<someone@remote.example>")[0] == 250
            assert s.cmd("RCPT TO:<carol@localhost>")[0] == 250
            assert s.cmd("DATA")[0] == 354
            s.send("Subject: relayed\r\n\r\nhi\r\n.\r\n")
            code, lines = s.reply()
            assert code == 250, lines
            assert s.cmd("QUIT")[0] == 221
        finally:
            s.close()
        msg = harness.wait_for(lambda: inst.mailbox("carol"), 30, what="delivery")[0]
        assert re.search(r"\tby localhost\.localdomain \(postern\) with ESMTPSA id ", msg), msg
        inst.wait_log(r"postern/submission/smtpd\[\d+\]: \w+: client=localhost\[127\.0\.0\.1\], "
                      r"sasl_method=PLAIN, sasl_username=alice@example\.org$")
        # the password never reaches the log
        assert USERS["alice@example.org"] not in inst.log()


def test_wrong_password_535_with_growing_delay_and_log():
    with sasl_instance() as (inst, certs):
        s, _ = tls_session(inst, certs, inst.submission_port)
        try:
            delays = []
            for _ in range(2):
                start = time.monotonic()
                assert s.cmd("AUTH PLAIN " + plain("alice@example.org", "guess")) == \
                    (535, ["535 5.7.8 Error: authentication failed: authentication failure"])
                delays.append(time.monotonic() - start)
            # 1s then 2s: generous lower bounds only, never upper ones
            assert delays[0] >= 0.9 and delays[1] >= 1.9, delays
            # an unknown user is refused the same way
            assert s.cmd("AUTH PLAIN " + plain("mallory@example.org", "x"))[0] == 535
            # the right password still works afterwards
            assert s.cmd("AUTH PLAIN " + plain("bob@example.org", "builder"))[0] == 235
        finally:
            s.close()
        inst.wait_log(r"warning: localhost\[127\.0\.0\.1\]: SASL PLAIN authentication failed: ")
        inst.wait_log(r"disconnect from localhost\[127\.0\.0\.1\] .*auth=1/4")


def test_login_cram_and_scram_sha256_dialogues():
    with sasl_instance() as (inst, certs):
        # LOGIN: username and password as two 334 challenges
        s, _ = tls_session(inst, certs, inst.submission_port)
        try:
            code, lines = s.cmd("AUTH LOGIN")
            assert code == 334 and base64.b64decode(lines[0][4:]).lower().startswith(b"user"), lines
            assert s.cmd(b64("bob@example.org"))[0] == 334
            assert s.cmd(b64("builder")) == (235, ["235 2.7.0 Authentication successful"])
        finally:
            s.close()

        # CRAM-MD5: HMAC of the server's challenge
        s, _ = tls_session(inst, certs, inst.submission_port)
        try:
            code, lines = s.cmd("AUTH CRAM-MD5")
            assert code == 334
            challenge = base64.b64decode(lines[0][4:])
            digest = hmac.new(b"builder", challenge, hashlib.md5).hexdigest()
            assert s.cmd(b64("bob@example.org " + digest))[0] == 235
        finally:
            s.close()

        # SCRAM-SHA-256 (RFC 7677), computed here from the password
        s, _ = tls_session(inst, certs, inst.submission_port)
        try:
            user, password = "alice@example.org", USERS["alice@example.org"]
            cnonce = b64(os.urandom(18))
            first_bare = "n=%s,r=%s" % (user, cnonce)
            code, lines = s.cmd("AUTH SCRAM-SHA-256 " + b64("n,," + first_bare))
            assert code == 334, lines
            server_first = base64.b64decode(lines[0][4:]).decode()
            attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
            assert attrs["r"].startswith(cnonce)
            salted = hashlib.pbkdf2_hmac("sha256", password.encode(),
                                         base64.b64decode(attrs["s"]), int(attrs["i"]))
            client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
            stored_key = hashlib.sha256(client_key).digest()
            final_wo_proof = "c=biws,r=" + attrs["r"]
            auth_message = ",".join((first_bare, server_first, final_wo_proof)).encode()
            signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
            proof = bytes(a ^ b for a, b in zip(client_key, signature))
            code, lines = s.cmd(b64(final_wo_proof + ",p=" + b64(proof)))
            server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
            expected = "v=" + b64(hmac.new(server_key, auth_message, hashlib.sha256).digest())
            if code == 334:             # server-final as a challenge, then an empty answer
                assert base64.b64decode(lines[0][4:]).decode() == expected
                code, lines = s.cmd("")
            assert (code, lines) == (235, ["235 2.7.0 Authentication successful"]), lines
        finally:
            s.close()


def test_check_reports_missing_sasl_configuration():
    with sasl_instance() as (inst, certs):
        assert inst.postern("check").returncode == 0
        os.rename(os.path.join(inst.dir, "sasl2", "smtpd.conf"),
                  os.path.join(inst.dir, "sasl2", "other.conf"))
        r = inst.postern("check")
        assert r.returncode == 0                    # a warning, not an error
        assert re.search(r"warning: service 127\.0\.0\.1:%d: no readable smtpd\.conf in "
                         r"cyrus_sasl_config_path %s" % (inst.submission_port,
                                                         re.escape(os.path.join(inst.dir, "sasl2"))),
                         r.stderr), r.stderr


def test_malformed_auth_dialogues():
    with sasl_instance() as (inst, certs):
        s, _ = tls_session(inst, certs, inst.port)
        try:
            assert s.cmd("AUTH") == (501, ["501 5.5.4 Syntax: AUTH mechanism"])
            assert s.cmd("AUTH GSSAPI") == (504, ["504 5.5.4 Unsupported authentication mechanism"])
            assert s.cmd("AUTH X" * 40)[0] == 501
            assert s.cmd("AUTH PLAIN !!!notbase64!!!") == \
                (501, ["501 5.5.2 Cannot decode response"])
            assert s.cmd("AUTH PLAIN") == (334, ["334 "])
            assert s.cmd("*") == (501, ["501 5.7.0 Authentication aborted"])
            assert s.cmd("AUTH LOGIN")[0] == 334
            assert s.cmd("%%%") == (501, ["501 5.5.2 Cannot decode response"])
            # garbage inside a valid base64 PLAIN message
            assert s.cmd("AUTH PLAIN " + b64("no-nul-separators"))[0] == 535
            # an overlong response line
            assert s.cmd("AUTH PLAIN")[0] == 334
            assert s.cmd("A" * 20000)[0] == 500
            assert s.cmd("MAIL FROM:<a@localhost> AUTH=<>")[0] == 250
            assert s.cmd("RSET")[0] == 250
            assert s.cmd("MAIL FROM:<a@localhost> AUTH=bad+zzvalue") == \
                (501, ["501 5.5.4 Bad AUTH parameter value"])
            assert s.cmd("MAIL FROM:<a@localhost>")[0] == 250
            assert s.cmd("AUTH PLAIN " + plain("bob@example.org", "builder")) == \
                (503, ["503 5.5.1 Error: MAIL transaction in progress"])
            assert s.cmd("NOOP")[0] == 250          # the session survived all of it
        finally:
            s.close()

    # AUTH disabled: 503, and AUTH= on MAIL likewise
    with harness.Instance() as inst:
        s = Raw(inst.port)
        try:
            s.reply()
            s.cmd("EHLO client.example")
            assert s.cmd("AUTH PLAIN AGFAYg==") == (503, ["503 5.5.1 Error: authentication "
                                                          "not enabled"])
            assert s.cmd("MAIL FROM:<a@localhost> AUTH=<>")[0] == 503
        finally:
            s.close()


def test_sender_login_maps():
    conf = {"smtpd_sender_login_maps": "texthash:DIR/senders",
            "smtpd_sender_restrictions": "reject_sender_login_mismatch",
            "smtpd_relay_restrictions": "permit_sasl_authenticated, permit_mynetworks, reject"}
    senders = ("alice@example.org alice@example.org\n"
               "@shared.example alice@example.org, bob@example.org\n")
    with sasl_instance(conf, files={"senders": senders}) as (inst, certs):
        s, _ = tls_session(inst, certs, inst.port)
        try:
            # not logged in, sender has an owner
            assert s.cmd("MAIL FROM:<alice@example.org>")[0] == 250
            assert s.cmd("RCPT TO:<carol@localhost>") == \
                (553, ["553 5.7.1 <alice@example.org>: Sender address rejected: not logged in"])
            assert s.cmd("RSET")[0] == 250
            assert s.cmd("AUTH PLAIN " + plain("bob@example.org", "builder"))[0] == 235
            # bob may not send as alice, nor as an address nobody owns
            for sender in ("alice@example.org", "bob@elsewhere.example"):
                assert s.cmd("MAIL FROM:<%s>" % sender)[0] == 250
                assert s.cmd("RCPT TO:<carol@localhost>") == \
                    (553, ["553 5.7.1 <%s>: Sender address rejected: not owned by user "
                           "bob@example.org" % sender])
                assert s.cmd("RSET")[0] == 250
            # but as anyone @shared.example
            assert s.cmd("MAIL FROM:<team@shared.example>")[0] == 250
            assert s.cmd("RCPT TO:<carol@localhost>")[0] == 250
        finally:
            s.close()
        inst.wait_log(r"NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 553 5\.7\.1 "
                      r"<alice@example\.org>: Sender address rejected: not logged in")


def write_msmtprc(inst, certs, port, starttls, password):
    path = os.path.join(inst.tmp, "msmtprc-%d" % port)
    with open(path, "w") as f:
        f.write("account default\nhost 127.0.0.1\nport %d\ntls on\ntls_starttls %s\n"
                "tls_trust_file %s\nauth plain\nuser alice@example.org\npassword %s\n"
                "from alice@example.org\n" % (port, "on" if starttls else "off",
                                              certs["ca.pem"], password))
    os.chmod(path, 0o600)
    return path


def test_msmtp_submits_with_starttls_and_auth_on_587_and_tls_on_465():
    with sasl_instance() as (inst, certs):
        for port, starttls, user in ((inst.submission_port, True, "dave"),
                                     (inst.submissions_port, False, "erin")):
            rc = write_msmtprc(inst, certs, port, starttls, USERS["alice@example.org"])
            r = subprocess.run(["msmtp", "-C", rc, "%s@localhost" % user],
                               input="From: alice@example.org\nSubject: msmtp %d\n\nhello\n" % port,
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr
            msg = harness.wait_for(lambda: inst.mailbox(user), 30, what="delivery")[0]
            assert "Subject: msmtp %d" % port in msg
            assert "with ESMTPSA id" in msg and "(using TLSv1.3 with cipher" in msg
        inst.wait_log(r"postern/submissions/smtpd\[\d+\]: \w+: client=localhost\[127\.0\.0\.1\], "
                      r"sasl_method=PLAIN, sasl_username=alice@example\.org")
        # a wrong password: msmtp fails and says the server refused
        rc = write_msmtprc(inst, certs, inst.submission_port, True, "not-it")
        r = subprocess.run(["msmtp", "-C", rc, "frank@localhost"], input="Subject: no\n\nx\n",
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0
        assert "535 5.7.8" in r.stderr, r.stderr


def test_swaks_auth_over_tls_and_tlsc():
    with sasl_instance() as (inst, certs):
        for extra, user in ((["--port", str(inst.submission_port), "--tls"], "gina"),
                            (["--port", str(inst.submissions_port), "--tlsc"], "hank")):
            r = subprocess.run(["swaks", "--server", "127.0.0.1", "--from", "bob@example.org",
                                "--to", "%s@localhost" % user, "--auth", "LOGIN",
                                "--auth-user", "bob@example.org", "--auth-password", "builder",
                                "--helo", "swaks.example"] + extra,
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr
            assert "235 2.7.0 Authentication successful" in r.stdout, r.stdout
            harness.wait_for(lambda: inst.mailbox(user), 30, what="delivery")
        # swaks without TLS on the smtp port: AUTH is not offered
        r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(inst.port),
                            "--from", "bob@example.org", "--to", "ian@localhost",
                            "--auth", "PLAIN", "--auth-user", "bob@example.org",
                            "--auth-password", "builder"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0
        assert "Host did not advertise authentication" in r.stdout + r.stderr, r.stdout


def test_root_instance_chrooted_smtpd_with_root_only_key_and_sasldb_in_the_jail():
    """The system model: smtpd chrooted into the spool as mail_owner; the
    private key is root-only (read before the privilege drop), the sasldb
    is reachable inside the jail as doc/tls.md says."""
    if not harness.is_root():
        print("skipped: needs root")
        return
    with harness.Instance(as_root=True, start=False) as inst:
        certs = tls_helpers.make_certs(os.path.join(inst.tmp, "certs"))
        os.chmod(certs["rsa.key"], 0o600)           # root only
        os.chmod(certs["ec.key"], 0o600)
        spool = os.path.realpath(os.path.join(inst.dir, "spool"))
        settings = {"local_recipient_maps": ""}
        settings.update(tls_helpers.tls_conf(certs))
        settings.update(tls_helpers.sasl_setup(inst, USERS, db=os.path.join(spool, "etc", "sasldb2"),
                                               db_path_seen="/etc/sasldb2"))
        inst.edit_main_cf(settings)
        with open(os.path.join(inst.dir, "master.cf")) as f:
            assert re.search(r"^127\.0\.0\.1:%d\s+inet\s+n\s+-\s+y\s" % inst.submission_port,
                             f.read(), re.M)      # submission is chrooted
        r = inst.postern("start")
        assert r.returncode == 0, r.stderr + inst.log()
        harness.wait_for(lambda: harness.port_accepts(inst.submission_port), 10,
                         what="the submission port")
        s, _ = tls_session(inst, certs, inst.submission_port)
        try:
            assert s.cmd("AUTH PLAIN " + plain("bob@example.org", "builder")) == \
                (235, ["235 2.7.0 Authentication successful"])
            assert s.cmd("MAIL FROM:<bob@example.org>")[0] == 250
            assert s.cmd("RCPT TO:<someone@remote.example>")[0] == 250
            pid = int(re.findall(r"postern/submission/smtpd\[(\d+)\]: Anonymous TLS", inst.log())[-1])
            with open("/proc/%d/status" % pid) as f:
                uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", f.read(), re.M).groups()
            assert all(int(u) == pwd.getpwnam("postern").pw_uid for u in uids), uids
            assert os.readlink("/proc/%d/root" % pid) == spool
            assert s.cmd("QUIT")[0] == 221
        finally:
            s.close()
