"""smtpd client certificates against a real instance, with Postfix's
parameters and semantics: smtpd_tls_ask_ccert (request, accept any chain,
log Anonymous / Untrusted / Trusted and the certificate's names and
fingerprints, the Received: comment), smtpd_tls_req_ccert (only with
enforced TLS: 421 4.7.1 without a trusted certificate), and the
restrictions permit_tls_clientcerts (relay_clientcerts),
permit_tls_all_clientcerts and check_ccert_access.  Clients: Python's
ssl/smtplib with and without a certificate, `openssl s_client -cert`,
swaks --tls-cert/--tls-key, and a TLS 1.2 client whose Certificate
message is corrupted on the wire.  Certificates: the test CA signs
client.example and other-client.example; rogue.example is self-signed
(tls_helpers.make_client_certs).
"""
import os
import re
import smtplib
import socket
import ssl
import subprocess

import harness
import tls_helpers
from tls_helpers import HOSTNAME
from test_tls import Raw, deliveries, tls_instance

MSG = "From: a@localhost\r\nSubject: %s\r\n\r\nbody\r\n"
# 127.0.0.1 is not in mynetworks here, so relaying needs a certificate
NO_MYNETWORKS = {"mynetworks": "192.0.2.0/24"}


def client_ctx(certs, who=None):
    ctx = tls_helpers.client_context(certs)
    if who:
        ctx.load_cert_chain(certs[who + ".crt"], certs[who + ".key"])
    return ctx


def starttls_session(inst, certs, who=None, port=None):
    """A Raw session after STARTTLS and the second EHLO; the client
    presents certs[who] (None: no certificate).  Returns (raw, ehlo lines)."""
    s = Raw(port or inst.port)
    assert s.reply()[0] == 220
    assert s.cmd("EHLO client.example")[0] == 250
    assert s.cmd("STARTTLS")[0] == 220
    s.starttls(client_ctx(certs, who))
    code, lines = s.cmd("EHLO client.example")
    assert code == 250, lines
    return s, lines


def relay_reply(inst, certs, who):
    """The reply to RCPT TO an outside domain in a session as `who`."""
    s, _ = starttls_session(inst, certs, who)
    try:
        assert s.cmd("MAIL FROM:<a@localhost>")[0] == 250
        return s.cmd("RCPT TO:<someone@remote.example>")
    finally:
        s.close()


def test_no_certificate_request_without_ask_ccert():
    with tls_instance() as (inst, certs):
        tls_helpers.make_client_certs(certs)
        r = subprocess.run(
            ["openssl", "s_client", "-starttls", "smtp", "-connect", "127.0.0.1:%d" % inst.port,
             "-CAfile", certs["ca.pem"], "-cert", certs["client.crt"], "-key",
             certs["client.key"], "-crlf", "-ign_eof"],
            input="EHLO sclient.example\nQUIT\n", capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "221 2.0.0 Bye" in r.stdout, r.stdout
        assert "Acceptable client certificate CA names" not in r.stdout, r.stdout
        inst.wait_log(r"smtpd\[\d+\]: Anonymous TLS connection established from "
                      r"localhost\[127\.0\.0\.1\]")
        assert "subject_CN=" not in inst.log()
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
            s.starttls(context=client_ctx(certs, "client"))
            assert s.sendmail("a@localhost", ["alice@localhost"], MSG % "noask") == {}
        msg = deliveries(inst, "alice")[0]
        assert "\t(No client certificate requested)\n" in msg, msg


def test_ask_ccert_trusted_untrusted_anonymous():
    inst, certs = start_with_certs(lambda inst, certs: {"smtpd_tls_ask_ccert": "yes"})
    try:
        # the request names the CA of smtpd_tls_CAfile
        r = subprocess.run(
            ["openssl", "s_client", "-starttls", "smtp", "-connect", "127.0.0.1:%d" % inst.port,
             "-CAfile", certs["ca.pem"], "-crlf", "-ign_eof"],
            input="EHLO sclient.example\nQUIT\n", capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert re.search(r"Acceptable client certificate CA names\n.*CN ?= ?postern test CA",
                         r.stdout), r.stdout
        assert "221 2.0.0 Bye" in r.stdout, r.stdout

        for who, user in (("client", "trusted"), ("selfsigned", "untrusted"), (None, "anon")):
            with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
                s.starttls(context=client_ctx(certs, who))
                assert s.sendmail("a@localhost", [user + "@localhost"], MSG % user) == {}
        # swaks with a certificate too
        r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(inst.port), "--tls",
                            "--tls-cert", certs["client2.crt"], "--tls-key", certs["client2.key"],
                            "--from", "a@localhost", "--to", "swaks@localhost",
                            "--helo", "swaks.example"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr

        fp = re.escape(certs["fp_client"])
        inst.wait_log(r"smtpd\[\d+\]: localhost\[127\.0\.0\.1\]: Trusted: "
                      r"subject_CN=client\.example, issuer=postern test CA, fingerprint=%s, "
                      r"pkey_fingerprint=[0-9A-F:]{95}$" % fp)
        inst.wait_log(r"smtpd\[\d+\]: Trusted TLS connection established from "
                      r"localhost\[127\.0\.0\.1\]: TLSv1\.3 with cipher ")
        inst.wait_log(r"smtpd\[\d+\]: localhost\[127\.0\.0\.1\]: Untrusted: "
                      r"subject_CN=rogue\.example, issuer=rogue\.example, fingerprint=%s, "
                      % re.escape(certs["fp_selfsigned"]))
        inst.wait_log(r"smtpd\[\d+\]: Untrusted TLS connection established from "
                      r"localhost\[127\.0\.0\.1\]")
        inst.wait_log(r"smtpd\[\d+\]: Anonymous TLS connection established from "
                      r"localhost\[127\.0\.0\.1\]")
        inst.wait_log(r"subject_CN=other-client\.example, issuer=postern test CA, "
                      r"fingerprint=%s" % re.escape(certs["fp_client2"]))

        assert re.search(r"\t\(using TLSv1\.3 .*\n\t .*\)\n"
                         r"\t\(Client CN \"client\.example\", Issuer \"postern test CA\" "
                         r"\(verified OK\)\)\n\tby ",
                         deliveries(inst, "trusted")[0]), deliveries(inst, "trusted")[0]
        assert "\t(Client CN \"rogue.example\", Issuer \"rogue.example\" (not verified))\n" \
            in deliveries(inst, "untrusted")[0]
        assert "\t(Client did not present a certificate)\n" in deliveries(inst, "anon")[0]
        assert "(Client CN \"other-client.example\"" in deliveries(inst, "swaks")[0]
    finally:
        inst.__exit__(None, None, None)


def _relay_instance(extra):
    conf = {"smtpd_tls_ask_ccert": "yes"}
    conf.update(NO_MYNETWORKS)
    conf.update(extra)
    return conf


def start_with_certs(conf_fn):
    """An instance whose main.cf may name the client certificates'
    fingerprints: conf_fn(inst, certs) -> main.cf settings."""
    inst = harness.Instance(start=False)
    inst.__enter__()
    try:
        certs = tls_helpers.make_certs(os.path.join(inst.tmp, "certs"))
        tls_helpers.make_client_certs(certs)
        conf = {"local_recipient_maps": "", "smtpd_tls_CAfile": certs["ca.pem"]}
        conf.update(tls_helpers.tls_conf(certs))
        conf.update(conf_fn(inst, certs))
        inst.edit_main_cf(conf)
        r = inst.postern("start")
        assert r.returncode == 0, r.stderr + inst.log()
        harness.wait_for(lambda: harness.port_accepts(inst.port), 10, what="the smtp port")
    except BaseException:
        inst.__exit__(None, None, None)
        raise
    return inst, certs


def write_table(inst, name, lines):
    path = os.path.join(inst.dir, name)
    with open(path + ".tmp", "w") as f:
        f.write("".join(l + "\n" for l in lines))
    os.chmod(path + ".tmp", 0o644)
    os.rename(path + ".tmp", path)
    return "texthash:" + path


RELAY_DENIED = (554, ["554 5.7.1 <someone@remote.example>: Relay access denied"])


def test_permit_tls_clientcerts():
    def conf(inst, certs):
        table = write_table(inst, "relay_clientcerts", [
            "# comments, junk and near misses are simply not matched",
            "not-a-fingerprint client.example",
            certs["fp_client2"][:-3] + " truncated",
            certs["fp_client2"].replace(":", "") + " without-colons",
            "ZZ:" * 31 + "ZZ garbage-hex",
            certs["fp_client"].lower() + " client.example",      # case does not matter
            certs["pkeyfp_client2"] + " other-client.example by its public key",
        ])
        return _relay_instance({
            "relay_clientcerts": table,
            "smtpd_relay_restrictions": "permit_mynetworks, permit_tls_clientcerts, "
                                        "reject_unauth_destination"})
    inst, certs = start_with_certs(conf)
    try:
        assert relay_reply(inst, certs, "client")[0] == 250
        assert relay_reply(inst, certs, "client2")[0] == 250    # public key fingerprint
        assert relay_reply(inst, certs, "selfsigned") == RELAY_DENIED
        assert relay_reply(inst, certs, None) == RELAY_DENIED
        # local mail is unaffected
        s, _ = starttls_session(inst, certs, None)
        try:
            assert s.cmd("MAIL FROM:<a@localhost>")[0] == 250
            assert s.cmd("RCPT TO:<alice@localhost>")[0] == 250
        finally:
            s.close()
    finally:
        inst.__exit__(None, None, None)

    # a listed certificate need not chain to the CA (the fingerprint pins
    # it, as in Postfix); a CA-signed one that is not listed gets nothing
    def conf2(inst, certs):
        return _relay_instance({
            "relay_clientcerts": write_table(inst, "relay_clientcerts",
                                             [certs["fp_selfsigned"] + " rogue"]),
            "smtpd_relay_restrictions": "permit_tls_clientcerts, reject_unauth_destination"})
    inst, certs = start_with_certs(conf2)
    try:
        assert relay_reply(inst, certs, "selfsigned")[0] == 250
        assert relay_reply(inst, certs, "client") == RELAY_DENIED
    finally:
        inst.__exit__(None, None, None)


def test_permit_tls_all_clientcerts():
    def conf(inst, certs):
        return _relay_instance({"smtpd_relay_restrictions":
                                "permit_tls_all_clientcerts, reject_unauth_destination"})
    inst, certs = start_with_certs(conf)
    try:
        assert relay_reply(inst, certs, "client")[0] == 250
        assert relay_reply(inst, certs, "client2")[0] == 250
        assert relay_reply(inst, certs, "selfsigned") == RELAY_DENIED
        assert relay_reply(inst, certs, None) == RELAY_DENIED
    finally:
        inst.__exit__(None, None, None)


def test_check_ccert_access():
    def conf(inst, certs):
        table = write_table(inst, "ccert_access", [
            certs["fp_client"] + " REJECT certificate revoked here",
            certs["fp_client2"] + " OK",
            certs["fp_selfsigned"] + " 450 4.7.0 come back later",
            "garbage-key REJECT",
        ])
        return _relay_instance({"smtpd_relay_restrictions":
                                "check_ccert_access %s, reject_unauth_destination" % table})
    inst, certs = start_with_certs(conf)
    try:
        assert relay_reply(inst, certs, "client") == \
            (554, ["554 5.7.1 <client.example>: Client certificate rejected: "
                   "certificate revoked here"])
        assert relay_reply(inst, certs, "client2")[0] == 250
        assert relay_reply(inst, certs, "selfsigned") == \
            (450, ["450 4.7.0 <rogue.example>: Client certificate rejected: come back later"])
        assert relay_reply(inst, certs, None) == RELAY_DENIED
        inst.wait_log(r"NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 554 5\.7\.1 "
                      r"<client\.example>: Client certificate rejected: certificate revoked")
    finally:
        inst.__exit__(None, None, None)


def test_req_ccert_with_encrypt():
    def conf(inst, certs):
        return {"smtpd_tls_security_level": "encrypt", "smtpd_tls_req_ccert": "yes"}
    inst, certs = start_with_certs(conf)
    try:
        for who, reason in ((None, "No client certificate presented"),
                            ("selfsigned", "Client certificate not trusted")):
            s = Raw(inst.port)
            try:
                assert s.reply()[0] == 220
                assert s.cmd("EHLO client.example")[0] == 250
                assert s.cmd("STARTTLS")[0] == 220
                s.starttls(client_ctx(certs, who))
                assert s.cmd("EHLO client.example") == \
                    (421, ["421 4.7.1 %s Error: %s" % (HOSTNAME, reason)])
                s.sock.settimeout(10)
                assert s.sock.recv(100) == b""          # and the session is over
            finally:
                s.close()
            inst.wait_log(r"smtpd\[\d+\]: NOQUEUE: abort: TLS from localhost\[127\.0\.0\.1\]: "
                          + reason)
        # a trusted certificate: mail goes through
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
            s.starttls(context=client_ctx(certs, "client"))
            assert s.sendmail("a@localhost", ["bob@localhost"], MSG % "req") == {}
        assert "(Client CN \"client.example\", Issuer \"postern test CA\" (verified OK))" \
            in deliveries(inst, "bob")[0]

        # wrapper mode (submissions) enforces TLS too: no greeting without one
        raw = socket.create_connection(("127.0.0.1", inst.submissions_port), timeout=10)
        with client_ctx(certs).wrap_socket(raw, server_hostname=HOSTNAME) as t:
            f = t.makefile("rb")
            assert f.readline() == b"421 4.7.1 %s Error: No client certificate presented\r\n" \
                % HOSTNAME.encode()
            assert f.readline() == b""
        raw = socket.create_connection(("127.0.0.1", inst.submissions_port), timeout=10)
        with client_ctx(certs, "client").wrap_socket(raw, server_hostname=HOSTNAME) as t:
            f = t.makefile("rb")
            assert f.readline().startswith(b"220 ")
            t.sendall(b"QUIT\r\n")
            assert f.readline().startswith(b"221")
    finally:
        inst.__exit__(None, None, None)


def test_req_ccert_ignored_without_enforced_tls():
    def conf(inst, certs):
        return {"smtpd_tls_req_ccert": "yes"}        # level may
    inst, certs = start_with_certs(conf)
    try:
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
            s.starttls(context=client_ctx(certs))
            assert s.sendmail("a@localhost", ["carol@localhost"], MSG % "may") == {}
        deliveries(inst, "carol")
        inst.wait_log(r"postern/smtpd\[\d+\]: warning: smtpd_tls_req_ccert = yes is ignored: "
                      r"it needs enforced TLS")
        # and no certificate was even asked for
        assert "\t(No client certificate requested)\n" in deliveries(inst, "carol")[0]
    finally:
        inst.__exit__(None, None, None)


def _records(data):
    """Split TLS records: [(type, payload)], rest."""
    out = []
    while len(data) >= 5:
        n = int.from_bytes(data[3:5], "big")
        if len(data) < 5 + n:
            break
        out.append((data[0], data[:5], data[5:5 + n]))
        data = data[5 + n:]
    return out, data


def test_garbage_certificate_fails_the_handshake_only():
    """A TLS 1.2 client whose Certificate message (plaintext in 1.2) is
    corrupted on the wire: the handshake fails and is logged; smtpd goes
    on serving."""
    def conf(inst, certs):
        return {"smtpd_tls_ask_ccert": "yes"}
    inst, certs = start_with_certs(conf)
    try:
        ctx = client_ctx(certs, "client")
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        s = Raw(inst.port)
        try:
            assert s.reply()[0] == 220
            assert s.cmd("EHLO client.example")[0] == 250
            assert s.cmd("STARTTLS")[0] == 220
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = ctx.wrap_bio(incoming, outgoing, server_hostname=HOSTNAME)
            s.sock.settimeout(10)
            corrupted = False
            pending = b""
            for _ in range(20):
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    pass
                except (ssl.SSLError, OSError):
                    break
                pending += outgoing.read()
                records, pending = _records(pending)
                wire = b""
                for rtype, header, payload in records:
                    if rtype == 22 and payload[:1] == b"\x0b" and len(payload) > 40:
                        # Certificate: type(1) len(3) list len(3) cert len(3) DER...
                        payload = payload[:10] + b"\x04\xff\xff\xff" + payload[14:]
                        corrupted = True
                    wire += header + payload
                if wire:
                    s.sock.sendall(wire)
                try:
                    data = s.sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    break
                incoming.write(data)
            assert corrupted, "the client never sent its Certificate message"
        finally:
            s.close()
        inst.wait_log(r"smtpd\[\d+\]: SSL_accept error from localhost\[127\.0\.0\.1\]: ")
        # the service is fine: the next client gets through, certificate and all
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as c:
            c.starttls(context=client_ctx(certs, "client"))
            assert c.sendmail("a@localhost", ["dave@localhost"], MSG % "after") == {}
        assert "(verified OK)" in deliveries(inst, "dave")[0]
    finally:
        inst.__exit__(None, None, None)


def test_postern_check_reports_unreadable_ca_files():
    with harness.Instance(start=False) as inst:
        certs = tls_helpers.make_certs(os.path.join(inst.tmp, "certs"))
        conf = tls_helpers.tls_conf(certs)
        conf["smtpd_tls_CAfile"] = "/nonexistent/ca.pem"
        inst.edit_main_cf(conf)
        r = inst.postern("check")
        assert r.returncode == 1
        assert re.search(r"error: service 127\.0\.0\.1:%d: smtpd_tls_CAfile/CApath: cannot "
                         r"open /nonexistent/ca\.pem: No such file or directory" % inst.port,
                         r.stderr), r.stderr
        garbage = os.path.join(inst.tmp, "garbage.pem")
        with open(garbage, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        os.chmod(garbage, 0o644)
        conf["smtpd_tls_CAfile"] = garbage
        inst.edit_main_cf(conf)
        r = inst.postern("check")
        assert r.returncode == 1
        assert "cannot load CA locations %s" % garbage in r.stderr, r.stderr
        conf["smtpd_tls_CAfile"] = certs["ca.pem"]
        conf["smtpd_tls_fingerprint_digest"] = "sha257"
        inst.edit_main_cf(conf)
        r = inst.postern("check")
        assert r.returncode == 1
        assert "smtpd_tls_fingerprint_digest: unknown fingerprint digest \"sha257\"" in r.stderr
        conf["smtpd_tls_fingerprint_digest"] = "sha1"
        inst.edit_main_cf(conf)
        r = inst.postern("check")
        assert r.returncode == 0, r.stderr


def test_resumed_sessions_keep_their_trust():
    """A resumed session has no new certificate exchange: its trust is the
    one of the session it resumes.  And a session made where no
    certificate was requested is not resumed where one is (the session id
    context differs), even though all smtpd services share ticket keys."""
    def conf(inst, certs):
        path = os.path.join(inst.dir, "master.cf")
        with open(path) as f:
            text = f.read()
        # only the submissions service (wrapper mode) asks
        text, n = re.subn(r"^(\S+:%d +inet .*\n)" % inst.submissions_port,
                          r"\1  -o smtpd_tls_ask_ccert=yes\n", text, flags=re.M)
        assert n == 1, text
        with open(path, "w") as f:
            f.write(text)
        return {}
    inst, certs = start_with_certs(conf)
    try:
        # Python resumes a session only with the context that made it
        contexts = {who: client_ctx(certs, who) for who in ("client", "selfsigned", None)}

        def wrapped(who, session=None):
            ctx = contexts[who]
            raw = socket.create_connection(("127.0.0.1", inst.submissions_port), timeout=10)
            t = ctx.wrap_socket(raw, server_hostname=HOSTNAME, session=session)
            f = t.makefile("rb")
            assert f.readline().startswith(b"220 ")     # tickets arrive with data
            t.sendall(b"QUIT\r\n")
            assert f.readline().startswith(b"221")
            reused, session = t.session_reused, t.session
            f.close()
            t.close()
            return reused, session

        for who, trust in (("client", "Trusted"), ("selfsigned", "Untrusted"),
                           (None, "Anonymous")):
            reused, session = wrapped(who)
            assert not reused and session is not None and session.has_ticket
            reused, _ = wrapped(who, session)
            assert reused, inst.log()
            inst.wait_log(r"submissions/smtpd\[\d+\]: %s TLS connection reused from "
                          r"localhost\[127\.0\.0\.1\]" % trust)

        # a session from the smtp port (no request) is not resumed on submissions
        s = Raw(inst.port)
        try:
            assert s.reply()[0] == 220
            assert s.cmd("EHLO client.example")[0] == 250
            assert s.cmd("STARTTLS")[0] == 220
            s.starttls(contexts["client"])
            assert s.cmd("EHLO client.example")[0] == 250
            assert s.cmd("QUIT")[0] == 221
            session = s.sock.session
        finally:
            s.close()
        assert session is not None and session.has_ticket
        reused, _ = wrapped("client", session)
        assert not reused, inst.log()
    finally:
        inst.__exit__(None, None, None)
