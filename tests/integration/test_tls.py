"""smtpd TLS against a real instance: STARTTLS (RFC 3207) on the smtp and
submission ports, implicit TLS (RFC 8314) on submissions, SNI, session
resumption across smtpd processes, the CVE-2011-0411 class of plaintext
injection, state reset, security levels, broken certificates, and the
Received:/log lines.  Clients: Python's ssl/smtplib, `openssl s_client`,
swaks.  Certificates are made per test with openssl (tls_helpers.py).
"""
import contextlib
import os
import re
import shutil
import socket
import smtplib
import ssl
import subprocess

import harness
import tls_helpers
from tls_helpers import HOSTNAME, SNI_NAME

MSG = "From: a@localhost\r\nSubject: %s\r\n\r\nbody\r\n"


@contextlib.contextmanager
def tls_instance(conf=None, level="may", sni=False, master_cf_edit=None, certs_conf=True):
    """A started instance with certificates (RSA chain + ECDSA); local
    recipients are anyone @localhost.  Yields (inst, certs)."""
    with harness.Instance(start=False) as inst:
        certs = tls_helpers.make_certs(os.path.join(inst.tmp, "certs"))
        settings = {"local_recipient_maps": ""}
        if certs_conf:
            settings.update(tls_helpers.tls_conf(certs, level))
        if sni:
            table = os.path.join(inst.dir, "sni")
            with open(table, "w") as f:
                f.write("%s %s\n" % (SNI_NAME, certs["sni-chain.pem"]))
            os.chmod(table, 0o644)
            settings["tls_server_sni_maps"] = "texthash:" + table
        settings.update(conf or {})
        inst.edit_main_cf(settings)
        if master_cf_edit:
            path = os.path.join(inst.dir, "master.cf")
            with open(path) as f:
                text = f.read()
            with open(path, "w") as f:
                f.write(master_cf_edit(text))
        r = inst.postern("start")
        assert r.returncode == 0, "postern start failed: " + r.stderr + inst.log()
        harness.wait_for(lambda: harness.port_accepts(inst.port), 10, what="the smtp port")
        yield inst, certs


class Raw:
    """Exact bytes on the wire, optionally upgraded to TLS in place."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("closed; buffered %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode()

    def reply(self):
        lines = []
        while True:
            line = self.line()
            assert re.match(r"^\d{3}[ -]", line), line
            lines.append(line)
            if line[3] == " ":
                return int(line[:3]), lines

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.reply()

    def starttls(self, ctx, server_hostname=HOSTNAME):
        assert self.buf == b"", "unread plaintext before TLS: %r" % self.buf
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)

    def close(self):
        self.sock.close()


def deliveries(inst, user):
    return harness.wait_for(lambda: inst.mailbox(user), 30, what="delivery to " + user)


def test_starttls_on_smtp_port_received_header_and_log():
    with tls_instance() as (inst, certs):
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
            s.ehlo("client.example")
            assert s.has_extn("starttls")
            code, _ = s.starttls(context=tls_helpers.client_context(certs))
            assert code == 220
            s.ehlo("client.example")
            assert not s.has_extn("starttls")      # not offered twice
            assert s.sendmail("a@localhost", ["alice@localhost"], MSG % "tls") == {}
        msg = deliveries(inst, "alice")[0]
        # Postfix's Received: with the TLS details, ESMTPS
        assert re.search(r"Received: from client\.example \(localhost \[127\.0\.0\.1\]\)\n"
                         r"\t\(using TLSv1\.3 with cipher \S+ \(\d+/\d+ bits\)\n"
                         r"\t key-exchange \S+ server-signature \S+ \(.+\) server-digest \S+\)\n"
                         r"\t\(No client certificate requested\)\n"
                         r"\tby localhost\.localdomain \(postern\) with ESMTPS id ", msg), msg
        inst.wait_log(r"smtpd\[\d+\]: Anonymous TLS connection established from "
                      r"localhost\[127\.0\.0\.1\]: TLSv1\.3 with cipher \S+ \(\d+/\d+ bits\)")
        inst.wait_log(r"disconnect from localhost\[127\.0\.0\.1\] ehlo=2 starttls=1 mail=1 "
                      r"rcpt=1 data=1 quit=1 commands=7")


def test_openssl_s_client_starttls_verifies_chain_and_ecdsa():
    with tls_instance() as (inst, certs):
        for sigalgs, keytype in (("rsa_pss_rsae_sha256", "RSA"),
                                 ("ecdsa_secp256r1_sha256", "EC")):
            r = subprocess.run(
                ["openssl", "s_client", "-starttls", "smtp", "-connect",
                 "127.0.0.1:%d" % inst.port, "-CAfile", certs["ca.pem"],
                 "-verify_return_error", "-verify_hostname", HOSTNAME, "-crlf", "-ign_eof",
                 "-sigalgs", sigalgs, "-tls1_3"],
                input="EHLO sclient.example\nQUIT\n", capture_output=True, text=True,
                timeout=30)
            assert r.returncode == 0, r.stdout + r.stderr
            assert "Verify return code: 0 (ok)" in r.stdout, r.stdout
            assert re.search(r"^250-%s" % re.escape(HOSTNAME), r.stdout, re.M), r.stdout
            assert "221 2.0.0 Bye" in r.stdout
            # the server sends its chain (leaf + CA) for RSA; ECDSA leaf alone
            if keytype == "RSA":
                assert "Server public key is 2048 bit" in r.stdout, r.stdout
                assert re.search(r"1 s:CN = postern test CA", r.stdout), r.stdout
            else:
                assert "Server public key is 256 bit" in r.stdout, r.stdout


def test_swaks_tls_on_smtp_and_starttls_on_submission():
    with tls_instance() as (inst, certs):
        r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(inst.port),
                            "--tls", "--from", "a@localhost", "--to", "bob@localhost",
                            "--helo", "swaks.example", "--header", "Subject: swaks-tls"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "<-  220 2.0.0 Ready to start TLS" in r.stdout, r.stdout
        assert " ~> MAIL FROM:<a@localhost>" in r.stdout       # sent inside TLS
        assert re.search(r"TLS started with cipher TLSv1\.3", r.stdout), r.stdout
        msg = deliveries(inst, "bob")[0]
        assert "with ESMTPS id" in msg and "Subject: swaks-tls" in msg

        # submission (587 role, N+1): encrypt level, STARTTLS offered; MAIL
        # before TLS refused
        s = Raw(inst.submission_port)
        try:
            assert s.reply()[0] == 220
            code, lines = s.cmd("EHLO client.example")
            assert code == 250 and "250-STARTTLS" in lines, lines
            assert s.cmd("MAIL FROM:<a@localhost>") == \
                (530, ["530 5.7.0 Must issue a STARTTLS command first"])
            assert s.cmd("STARTTLS")[0] == 220
            s.starttls(tls_helpers.client_context(certs))
            code, lines = s.cmd("EHLO client.example")
            assert code == 250 and "250-STARTTLS" not in lines
            assert s.cmd("MAIL FROM:<a@localhost>")[0] == 250
            # relay from here needs AUTH (shipped master.cf)
            code, lines = s.cmd("RCPT TO:<carol@localhost>")
            assert (code, lines[-1]) == (554, "554 5.7.1 <carol@localhost>: Recipient "
                                              "address rejected: Access denied"), lines
            assert s.cmd("QUIT")[0] == 221
        finally:
            s.close()


def test_implicit_tls_on_submissions_port():
    with tls_instance() as (inst, certs):
        ctx = tls_helpers.client_context(certs)
        raw = socket.create_connection(("127.0.0.1", inst.submissions_port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname=HOSTNAME) as t:
            f = t.makefile("rb")
            assert f.readline().startswith(b"220 ")
            t.sendall(b"EHLO client.example\r\n")
            lines = []
            while True:
                line = f.readline()
                lines.append(line)
                if line[3:4] == b" ":
                    break
            assert b"250-STARTTLS\r\n" not in lines, lines   # TLS is already on
            t.sendall(b"MAIL FROM:<a@localhost>\r\n")
            assert f.readline().startswith(b"250 2.1.0")
            t.sendall(b"QUIT\r\n")
            assert f.readline().startswith(b"221")
        inst.wait_log(r"postern/submissions/smtpd\[\d+\]: Anonymous TLS connection established "
                      r"from localhost\[127\.0\.0\.1\]: TLSv1\.3")
        # plaintext SMTP on the TLS port gets nothing but a closed connection
        s = Raw(inst.submissions_port)
        try:
            s.send("EHLO client.example\r\n")
            s.sock.settimeout(10)
            try:
                data = s.sock.recv(4096)
            except ConnectionResetError:
                data = b""
            assert not data.startswith(b"220") and not data.startswith(b"250"), data
        finally:
            s.close()
        inst.wait_log(r"SSL_accept error from localhost\[127\.0\.0\.1\]: TLS protocol error")


def test_sni_picks_the_certificate_for_the_name():
    with tls_instance(sni=True) as (inst, certs):
        def peer_cn(server_hostname, cafile):
            ctx = ssl.create_default_context(cafile=cafile)
            s = Raw(inst.port)
            try:
                s.reply()
                s.cmd("EHLO client.example")
                assert s.cmd("STARTTLS")[0] == 220
                s.starttls(ctx, server_hostname=server_hostname)
                cert = s.sock.getpeercert()
                assert s.cmd("NOOP")[0] == 250
                return dict(x[0] for x in cert["subject"])["commonName"]
            finally:
                s.close()
        # the SNI name gets its own (self-signed) certificate, verified
        # against exactly that certificate and name
        assert peer_cn(SNI_NAME, certs["sni.crt"]) == SNI_NAME
        # any other name gets the default certificate
        assert peer_cn(HOSTNAME, certs["ca.pem"]) == HOSTNAME
        # and the SNI certificate does not verify for the default name
        try:
            peer_cn(HOSTNAME, certs["sni.crt"])
            raise AssertionError("default certificate verified against the SNI certificate")
        except ssl.SSLCertVerificationError:
            pass


def test_plaintext_pipelined_behind_starttls_is_discarded():
    """CVE-2011-0411: commands sent in the same packet as STARTTLS must
    not be executed inside the TLS session."""
    with tls_instance() as (inst, certs):
        s = Raw(inst.port)
        try:
            s.reply()
            s.cmd("EHLO client.example")
            s.send("STARTTLS\r\nMAIL FROM:<evil@localhost>\r\nRCPT TO:<victim@localhost>\r\n")
            assert s.reply() == (220, ["220 2.0.0 Ready to start TLS"])
            s.starttls(tls_helpers.client_context(certs))
            # the first reply inside TLS is the EHLO's: nothing queued before
            code, lines = s.cmd("EHLO client.example")
            assert code == 250 and lines[0] == "250-" + HOSTNAME, lines
            # the injected MAIL was not executed: RCPT needs MAIL first
            assert s.cmd("RCPT TO:<victim@localhost>")[0] == 503
            assert s.cmd("MAIL FROM:<good@localhost>")[0] == 250
            assert s.cmd("QUIT")[0] == 221
        finally:
            s.close()
        inst.wait_log(r"discarding \d+ bytes of plaintext pipelined after STARTTLS from "
                      r"localhost\[127\.0\.0\.1\]")
        assert "evil@localhost" not in inst.log()


def test_state_resets_after_starttls_and_bad_starttls_usage():
    with tls_instance() as (inst, certs):
        s = Raw(inst.port)
        try:
            s.reply()
            s.cmd("EHLO client.example")
            assert s.cmd("STARTTLS now") == (501, ["501 5.5.4 Syntax: STARTTLS"])
            assert s.cmd("MAIL FROM:<a@localhost>")[0] == 250
            assert s.cmd("STARTTLS") == (503, ["503 5.5.1 Error: MAIL transaction in progress"])
            assert s.cmd("RSET")[0] == 250
            assert s.cmd("STARTTLS")[0] == 220
            s.starttls(tls_helpers.client_context(certs))
            # EHLO was forgotten: ESMTP parameters need a new EHLO
            code, lines = s.cmd("MAIL FROM:<a@localhost> SIZE=10")
            assert code == 555, lines
            s.cmd("EHLO client.example")
            assert s.cmd("STARTTLS") == (554, ["554 5.5.1 Error: TLS already active"])
        finally:
            s.close()


def test_resumption_across_smtpd_processes():
    with tls_instance() as (inst, certs):
        ctx = tls_helpers.client_context(certs)

        def connect(session=None):
            raw = socket.create_connection(("127.0.0.1", inst.submissions_port), timeout=10)
            t = ctx.wrap_socket(raw, server_hostname=HOSTNAME, session=session)
            f = t.makefile("rb")
            assert f.readline().startswith(b"220 ")     # tickets arrive with data
            return t, f

        first, first_file = connect()
        try:
            session = first.session
            assert session is not None and session.has_ticket
            # the first smtpd is still busy with `first`: another process
            # serves this one, and resumes with the shared ticket keys
            second, second_file = connect(session)
            try:
                assert second.session_reused, inst.log()
            finally:
                second_file.close()         # the makefile() holds the socket open
                second.close()
        finally:
            first_file.close()
            first.close()
        inst.wait_log(r"Anonymous TLS connection reused from localhost\[127\.0\.0\.1\]")
        pids = set(re.findall(r"smtpd\[(\d+)\]: Anonymous TLS connection", inst.log()))
        assert len(pids) == 2, inst.log()


def test_protocols_and_ciphers_are_enforced():
    conf = {"smtpd_tls_protocols": "TLSv1.2", "smtpd_tls_ciphers": "high",
            "smtpd_tls_exclude_ciphers": "AES256, CHACHA20"}
    with tls_instance(conf=conf) as (inst, certs):
        s = Raw(inst.port)
        try:
            s.reply()
            s.cmd("EHLO client.example")
            assert s.cmd("STARTTLS")[0] == 220
            s.starttls(tls_helpers.client_context(certs))
            assert s.sock.version() == "TLSv1.2"
            assert "AES256" not in s.sock.cipher()[0] and "CHACHA" not in s.sock.cipher()[0]
        finally:
            s.close()
        # a client that only speaks TLS 1.3 cannot connect
        ctx = tls_helpers.client_context(certs)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        s = Raw(inst.port)
        try:
            s.reply()
            s.cmd("EHLO client.example")
            assert s.cmd("STARTTLS")[0] == 220
            try:
                s.starttls(ctx)
                raise AssertionError("TLS 1.3 handshake succeeded against TLSv1.2 only")
            except ssl.SSLError:
                pass
        finally:
            s.close()
        inst.wait_log(r"SSL_accept error from localhost\[127\.0\.0\.1\]")


def test_missing_certificate_may_continues_encrypt_refuses_and_check_reports():
    with tls_instance(certs_conf=False,
                      conf={"smtpd_tls_security_level": "may",
                            "smtpd_tls_cert_file": "/nonexistent/cert.pem"}) as (inst, certs):
        # may: the service runs without TLS, STARTTLS not offered
        s = Raw(inst.port)
        try:
            s.reply()
            code, lines = s.cmd("EHLO client.example")
            assert "250-STARTTLS" not in lines
            assert s.cmd("STARTTLS")[0] == 502
            assert s.cmd("MAIL FROM:<a@localhost>")[0] == 250
        finally:
            s.close()
        inst.wait_log(r"warning: TLS disabled: cannot open /nonexistent/cert\.pem")
        # encrypt (submission): mail is refused, STARTTLS says why
        s = Raw(inst.submission_port)
        try:
            s.reply()
            code, lines = s.cmd("EHLO client.example")
            assert "250-STARTTLS" in lines
            assert s.cmd("STARTTLS") == (454, ["454 4.7.0 TLS not available due to local problem"])
            assert s.cmd("MAIL FROM:<a@localhost>")[0] == 530
        finally:
            s.close()
        inst.wait_log(r"postern/submission/smtpd\[\d+\]: warning: TLS is required "
                      r"\(smtpd_tls_security_level=encrypt\) but not available")
        # wrapper mode: the connection is closed, and the log says why
        raw = socket.create_connection(("127.0.0.1", inst.submissions_port), timeout=10)
        try:
            assert raw.recv(100) == b""
        except ConnectionResetError:
            pass
        raw.close()
        inst.wait_log(r"TLS wrapper mode connection from localhost\[127\.0\.0\.1\] dropped")
        # postern check names the file
        r = inst.postern("check")
        assert r.returncode == 1
        assert re.search(r"error: service 127\.0\.0\.1:%d: cannot open /nonexistent/cert\.pem"
                         % inst.port, r.stderr), r.stderr

    # a key that does not match, and an unreadable key
    with harness.Instance(start=False) as inst:
        certs = tls_helpers.make_certs(os.path.join(inst.tmp, "certs"))
        conf = tls_helpers.tls_conf(certs)
        conf["smtpd_tls_key_file"] = certs["ec.key"]
        inst.edit_main_cf(conf)
        r = inst.postern("check")
        assert r.returncode == 1
        assert "does not match certificate" in r.stderr, r.stderr
        conf["smtpd_tls_key_file"] = certs["rsa.key"]
        inst.edit_main_cf(conf)
        assert inst.postern("check").returncode == 0
        os.chmod(certs["rsa.key"], 0o600)       # owned by root: unreadable for the instance
        if harness.is_root():
            r = inst.postern("check")
            assert r.returncode == 1
            assert re.search(r"cannot open %s: Permission denied" % re.escape(certs["rsa.key"]),
                             r.stderr), r.stderr
        # no certificate at all for services that require TLS: a warning
        inst.edit_main_cf({"smtpd_tls_cert_file": "", "smtpd_tls_key_file": "",
                           "smtpd_tls_eccert_file": "", "smtpd_tls_eckey_file": "",
                           "smtpd_tls_security_level": ""})
        r = inst.postern("check")
        assert r.returncode == 0, r.stderr
        assert re.search(r"warning: service 127\.0\.0\.1:%d: TLS is required but no "
                         r"certificate is configured" % inst.submission_port, r.stderr), r.stderr
