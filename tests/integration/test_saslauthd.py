"""smtpd SMTP AUTH through Cyrus saslauthd (`pwcheck_method: saslauthd`),
the way many Postfix sites check submission users against the system's
accounts.  Each test starts its own saslauthd in the foreground
(`saslauthd -d -a shadow -m RUNDIR -n 1`, socket RUNDIR/mux) and a system
account with a known password (useradd + chpasswd, removed afterwards),
points the instance's smtpd.conf at the socket, and talks to smtpd with
real clients (smtplib, swaks): a good password gives 235 and relay, a
wrong one or an unknown user 535 5.7.8, a stopped (or killed) saslauthd
454 4.7.0 Temporary authentication failure with the session going on,
and a chrooted smtpd of a root instance reaches a socket placed inside
the spool.  saslauthd -a shadow reads /etc/shadow and the account must be
created: these tests need root and are skipped without it -- except the
last one, where a socket that accepts and never answers stands in for a
hung saslauthd and smtpd's watchdog (daemon_timeout) must end the wait.
"""
import base64
import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import threading

import harness
import tls_helpers
from test_tls import Raw

PASSWORD = "correct horse 7"


def b64(text):
    return base64.b64encode(text.encode()).decode()


def plain(user, password):
    return b64("\0%s\0%s" % (user, password))


def _run(argv, input=None):
    r = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=60)
    return r


@contextlib.contextmanager
def system_account(password=PASSWORD):
    """A system account with `password` in /etc/shadow, named after this
    process so that concurrent test runs never share one; removed on exit.
    useradd/userdel fail while another program holds /etc/passwd's lock
    (exit 10 or 1 with "cannot lock"): retried until the deadline."""
    name = "pstsasl%d" % os.getpid()

    def attempt(argv, input=None):
        r = _run(argv, input=input)
        if r.returncode == 0:
            return True
        assert "lock" in r.stderr, "%s failed: %s" % (" ".join(argv), r.stderr)
        return False

    if subprocess.run(["getent", "passwd", name], capture_output=True).returncode == 0:
        harness.wait_for(lambda: attempt(["userdel", name]), what="userdel of a leftover " + name)
    harness.wait_for(lambda: attempt(["useradd", "--system", "--no-create-home", "--user-group",
                                      "--home-dir", "/nonexistent",
                                      "--shell", "/usr/sbin/nologin", name]),
                     what="useradd " + name)
    try:
        harness.wait_for(lambda: attempt(["chpasswd"], input="%s:%s\n" % (name, password)),
                         what="chpasswd " + name)
        yield name
    finally:
        harness.wait_for(lambda: attempt(["userdel", name]), what="userdel " + name)


def socket_accepts(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Saslauthd:
    """saslauthd -d (foreground) -a shadow with its socket RUNDIR/mux.

    It runs in a session of its own: on SIGTERM saslauthd signals its
    whole process group, which would otherwise be the test runner's."""

    def __init__(self, rundir, logfile):
        self.rundir = rundir
        self.mux = os.path.join(rundir, "mux")
        self.logfile = logfile
        self.proc = None

    def start(self):
        assert self.proc is None
        with open(self.logfile, "a") as log:
            self.proc = subprocess.Popen(["saslauthd", "-d", "-a", "shadow", "-m", self.rundir,
                                          "-n", "1"], stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        # the socket exists and listens (a connection saslauthd only sees
        # closed; it logs that and serves the next one)
        harness.wait_for(lambda: self.proc.poll() is not None or socket_accepts(self.mux),
                         what="saslauthd's socket " + self.mux)
        assert self.proc.poll() is None, "saslauthd exited:\n" + self.log()
        return self

    def stop(self, sig=signal.SIGTERM):
        """Signal saslauthd's process group and reap it."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=harness.WAIT_TIMEOUT)
        self.proc = None

    def log(self):
        with open(self.logfile, errors="replace") as f:
            return f.read()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def write_smtpd_conf(inst, saslauthd_path, owner):
    """DIR/sasl2/smtpd.conf pointing Cyrus at saslauthd; main.cf settings."""
    d = os.path.join(inst.dir, "sasl2")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "smtpd.conf")
    with open(path, "w") as f:
        f.write("pwcheck_method: saslauthd\nsaslauthd_path: %s\nmech_list: PLAIN LOGIN\n"
                % saslauthd_path)
    os.chmod(d, 0o755)
    os.chmod(path, 0o644)
    if owner and owner != "root":
        shutil.chown(d, owner, None)
        shutil.chown(path, owner, None)
    return {"cyrus_sasl_config_path": d, "smtpd_sasl_auth_enable": "yes"}


@contextlib.contextmanager
def saslauthd_instance():
    """An ordinary (unchrooted) instance whose smtpd checks passwords with
    a saslauthd of its own, on the smtp port without TLS (PLAIN is allowed
    there by the default smtpd_sasl_security_options = noanonymous), relay
    only after AUTH.  Yields (inst, saslauthd, login)."""
    with system_account() as login, harness.Instance(start=False) as inst:
        rundir = os.path.join(inst.tmp, "saslauthd")
        os.mkdir(rundir)
        os.chmod(rundir, 0o755)     # the instance's account reaches mux (mode 0777)
        with Saslauthd(rundir, os.path.join(inst.tmp, "saslauthd.log")) as sasld:
            settings = write_smtpd_conf(inst, sasld.mux, inst.user)
            settings.update({"local_recipient_maps": "",
                             "smtpd_relay_restrictions":
                                 "permit_sasl_authenticated, reject_unauth_destination"})
            inst.edit_main_cf(settings)
            r = inst.postern("start")
            assert r.returncode == 0, "postern start failed: " + r.stderr + inst.log()
            harness.wait_for(lambda: harness.port_accepts(inst.port), 10, what="the smtp port")
            try:
                yield inst, sasld, login
            except BaseException:
                print("saslauthd log:\n" + sasld.log())
                raise


def auth_reply(client, mechanism, login, password):
    """smtplib AUTH with one mechanism: (code, text) of the final reply."""
    client.user, client.password = login, password
    authobject = {"PLAIN": client.auth_plain, "LOGIN": client.auth_login}[mechanism]
    try:
        code, text = client.auth(mechanism, authobject)
    except smtplib.SMTPAuthenticationError as e:
        code, text = e.smtp_code, e.smtp_error
    return code, text.decode()


def swaks(inst, mechanism, login, password, to):
    return subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(inst.port),
                           "--helo", "swaks.example", "--from", "%s@localhost" % login,
                           "--to", to, "--auth", mechanism, "--auth-user", login,
                           "--auth-password", password],
                          capture_output=True, text=True, timeout=60)


def test_saslauthd_shadow_password_relay_wrong_password_unknown_user():
    if not harness.is_root():
        print("skipped: needs root (saslauthd -a shadow, a system account)")
        return
    with saslauthd_instance() as (inst, sasld, login):
        with inst.smtp() as s:
            s.ehlo("client.example")
            assert s.has_extn("auth") and s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
            # no relay before AUTH
            assert s.mail("%s@localhost" % login)[0] == 250
            assert s.rcpt("someone@remote.example") == \
                (554, b"5.7.1 <someone@remote.example>: Relay access denied")
            s.rset()
            assert auth_reply(s, "PLAIN", login, "wrong password") == \
                (535, "5.7.8 Error: authentication failed: authentication failure")
            assert auth_reply(s, "PLAIN", "nosuchuser%d" % os.getpid(), PASSWORD) == \
                (535, "5.7.8 Error: authentication failed: authentication failure")
            assert auth_reply(s, "PLAIN", login, PASSWORD) == \
                (235, "2.7.0 Authentication successful")
            assert s.mail("%s@localhost" % login)[0] == 250
            assert s.rcpt("someone@remote.example")[0] == 250
            assert s.rcpt("carol@localhost")[0] == 250
            assert s.data("Subject: through saslauthd\r\n\r\nhi\r\n")[0] == 250
        msg = harness.wait_for(lambda: inst.mailbox("carol"), what="delivery")[0]
        assert "Subject: through saslauthd" in msg
        assert " with ESMTPA id " in msg, msg
        inst.wait_log(r"postern/smtpd\[\d+\]: \w+: client=localhost\[127\.0\.0\.1\], "
                      r"sasl_method=PLAIN, sasl_username=%s$" % login)
        inst.wait_log(r"warning: localhost\[127\.0\.0\.1\]: SASL PLAIN authentication failed: ")
        assert PASSWORD not in inst.log() and "wrong password" not in inst.log()
        # it was saslauthd that said yes and no
        assert re.search(r"auth success: \[user=%s\] \[service=smtp\]" % login, sasld.log())
        assert re.search(r"auth failure: \[user=%s\] .*\[reason=Incorrect password\]" % login,
                         sasld.log())
        assert re.search(r"auth failure: \[user=nosuchuser\d+\] .*\[reason=Invalid username\]",
                         sasld.log())

        # Cyrus splits NAME@REALM and saslauthd -a shadow ignores the realm:
        # the login succeeds and sasl_username keeps what the client sent
        # (doc/tls.md warns smtpd_sender_login_maps writers)
        with inst.smtp() as s:
            s.ehlo("client.example")
            assert auth_reply(s, "PLAIN", login + "@example.org", PASSWORD)[0] == 235
            s.sendmail("%s@localhost" % login, ["carol@localhost"], "Subject: realm\r\n\r\nx\r\n")
        inst.wait_log(r"sasl_method=PLAIN, sasl_username=%s@example\.org$" % login)
        assert re.search(r"auth success: \[user=%s\] \[service=smtp\] \[realm=example\.org\]"
                         % login, sasld.log())

        # swaks, LOGIN: the right password delivers, a wrong one gets 535
        r = swaks(inst, "LOGIN", login, PASSWORD, "dave@localhost")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "235 2.7.0 Authentication successful" in r.stdout, r.stdout
        harness.wait_for(lambda: inst.mailbox("dave"), what="delivery")
        r = swaks(inst, "LOGIN", login, "not it", "erin@localhost")
        assert r.returncode != 0
        assert "535 5.7.8 Error: authentication failed: authentication failure" in r.stdout, \
            r.stdout
        r = swaks(inst, "PLAIN", "nosuchuser%d" % os.getpid(), PASSWORD, "erin@localhost")
        assert r.returncode != 0
        assert "535 5.7.8 Error: authentication failed" in r.stdout, r.stdout
        assert not inst.mailbox("erin")


def test_saslauthd_stopped_or_killed_is_a_temporary_failure_and_the_session_goes_on():
    if not harness.is_root():
        print("skipped: needs root (saslauthd -a shadow, a system account)")
        return
    temporary = (454, "4.7.0 Temporary authentication failure: generic failure")
    with saslauthd_instance() as (inst, sasld, login):
        with inst.smtp() as s:
            s.ehlo("client.example")
            # stopped cleanly: saslauthd removes its socket
            sasld.stop()
            assert not os.path.exists(sasld.mux)
            assert auth_reply(s, "PLAIN", login, PASSWORD) == temporary
            assert auth_reply(s, "LOGIN", login, PASSWORD) == temporary
            assert s.noop()[0] == 250
            assert s.mail("%s@localhost" % login)[0] == 250
            assert s.rcpt("someone@remote.example")[0] == 554     # still not logged in
            s.rset()
            # back again: the same session logs in
            sasld.start()
            assert auth_reply(s, "PLAIN", login, PASSWORD) == (235, "2.7.0 Authentication successful")
            assert s.mail("%s@localhost" % login)[0] == 250
            assert s.rcpt("someone@remote.example")[0] == 250
            s.rset()
        inst.wait_log(r"warning: SASL authentication failure: cannot connect to saslauthd server: "
                      r"No such file or directory")
        inst.wait_log(r"warning: localhost\[127\.0\.0\.1\]: SASL PLAIN authentication failed: ")
        inst.wait_log(r"disconnect from localhost\[127\.0\.0\.1\] .*auth=1/3")

        # killed: the socket stays behind and nobody listens on it
        sasld.stop(signal.SIGKILL)
        assert os.path.exists(sasld.mux)
        with inst.smtp() as s:
            s.ehlo("client.example")
            assert auth_reply(s, "PLAIN", login, PASSWORD) == temporary
            assert s.noop()[0] == 250
        inst.wait_log(r"warning: SASL authentication failure: cannot connect to saslauthd server: "
                      r"Connection refused")
        # swaks sees the same
        r = swaks(inst, "PLAIN", login, PASSWORD, "frank@localhost")
        assert r.returncode != 0
        assert "454 4.7.0 Temporary authentication failure: generic failure" in r.stdout, r.stdout
        # never a crash: no smtpd died by a signal
        assert not re.search(r"process \S+/smtpd pid \d+ (killed by signal|exit status)",
                             inst.log()), inst.log()


def test_root_instance_chrooted_smtpd_reaches_saslauthd_socket_in_the_spool():
    """The system model: submission's smtpd chrooted into the spool as
    mail_owner.  Cyrus connects to saslauthd_path at each login, inside the
    jail, so saslauthd's run directory is SPOOL/var/run/saslauthd and
    smtpd.conf names it as the jail sees it (/var/run/saslauthd/mux), the
    recipe doc/tls.md gives."""
    if not harness.is_root():
        print("skipped: needs root")
        return
    with system_account() as login, harness.Instance(as_root=True, start=False) as inst:
        certs = tls_helpers.make_certs(os.path.join(inst.tmp, "certs"))
        spool = os.path.realpath(os.path.join(inst.dir, "spool"))
        rundir = os.path.join(spool, "var", "run", "saslauthd")
        os.makedirs(rundir)
        # root:mail_owner's group 0710, like Debian's root:sasl 0710 with
        # the postfix user in group sasl
        os.chown(rundir, 0, grp.getgrnam("postern").gr_gid)
        os.chmod(rundir, 0o710)
        settings = {"local_recipient_maps": ""}
        settings.update(tls_helpers.tls_conf(certs))
        settings.update(write_smtpd_conf(inst, "/var/run/saslauthd/mux", "postern"))
        inst.edit_main_cf(settings)
        with open(os.path.join(inst.dir, "master.cf")) as f:
            assert re.search(r"^127\.0\.0\.1:%d\s+inet\s+n\s+-\s+y\s" % inst.submission_port,
                             f.read(), re.M)      # submission is chrooted
        with Saslauthd(rundir, os.path.join(inst.tmp, "saslauthd.log")) as sasld:
            r = inst.postern("start")
            assert r.returncode == 0, r.stderr + inst.log()
            harness.wait_for(lambda: harness.port_accepts(inst.submission_port), 10,
                             what="the submission port")
            s = Raw(inst.submission_port)
            try:
                assert s.reply()[0] == 220
                s.cmd("EHLO client.example")
                assert s.cmd("STARTTLS")[0] == 220
                s.starttls(tls_helpers.client_context(certs))
                code, lines = s.cmd("EHLO client.example")
                assert "250-AUTH PLAIN LOGIN" in lines, lines
                assert s.cmd("AUTH PLAIN " + plain(login, "wrong")) == \
                    (535, ["535 5.7.8 Error: authentication failed: authentication failure"])
                assert s.cmd("AUTH PLAIN " + plain(login, PASSWORD)) == \
                    (235, ["235 2.7.0 Authentication successful"])
                assert s.cmd("MAIL FROM:<%s@localhost>" % login)[0] == 250
                assert s.cmd("RCPT TO:<someone@remote.example>")[0] == 250
                pid = int(re.findall(r"postern/submission/smtpd\[(\d+)\]: Anonymous TLS",
                                     inst.log())[-1])
                with open("/proc/%d/status" % pid) as f:
                    uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", f.read(),
                                     re.M).groups()
                assert all(int(u) == pwd.getpwnam("postern").pw_uid for u in uids), uids
                assert os.readlink("/proc/%d/root" % pid) == spool
                assert s.cmd("QUIT")[0] == 221
            finally:
                s.close()
            assert re.search(r"auth success: \[user=%s\] \[service=smtp\]" % login, sasld.log()), \
                sasld.log()


def test_silent_saslauthd_is_bounded_by_the_watchdog():
    """A "saslauthd" that accepts the connection and never answers: Cyrus
    waits for it without a timeout, so the smtpd process would hang in
    AUTH for good.  With daemon_timeout = 3s its watchdog ends it: the
    client sees the connection close, the master logs why, and the next
    client is served by a new smtpd.  (No root needed: nothing here reads
    /etc/shadow.)"""
    with harness.Instance(start=False) as inst:
        rundir = os.path.join(inst.tmp, "silent")
        os.mkdir(rundir)
        os.chmod(rundir, 0o755)
        mux = os.path.join(rundir, "mux")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(mux)
        os.chmod(mux, 0o777)
        listener.listen(16)
        held = []

        def accept_and_say_nothing():
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                held.append(conn)
        threading.Thread(target=accept_and_say_nothing, daemon=True).start()
        try:
            settings = write_smtpd_conf(inst, mux, inst.user)
            settings.update({"daemon_timeout": "3s", "local_recipient_maps": ""})
            inst.edit_main_cf(settings)
            r = inst.postern("start")
            assert r.returncode == 0, "postern start failed: " + r.stderr + inst.log()
            harness.wait_for(lambda: harness.port_accepts(inst.port), 10, what="the smtp port")
            s = socket.create_connection(("127.0.0.1", inst.port), timeout=30)
            f = s.makefile("rb")
            assert f.readline().startswith(b"220 ")
            s.sendall(b"EHLO client.example\r\n")
            while True:
                line = f.readline()
                assert line.startswith(b"250"), line
                if line[3:4] == b" ":
                    break
            s.sendall(b"AUTH PLAIN " + plain("someone", "secret").encode() + b"\r\n")
            harness.wait_for(lambda: held, 20, what="smtpd to ask the silent saslauthd")
            assert f.readline() == b"", "smtpd must be ended by its watchdog"
            s.close()
            inst.wait_log(r"warning: process \S*/smtpd pid \d+ killed by its watchdog: "
                          r"busy longer than daemon_timeout")
            with inst.smtp() as c:
                assert c.ehlo()[0] == 250
        finally:
            listener.close()
            for conn in held:
                conn.close()
