"""test_smtp_tls.py - outbound STARTTLS and SASL AUTH of the smtp agent,
against aiosmtpd servers with a certificate from a CA made by the test
(openssl), names served by dnsmasq.

relay.test -> 127.0.0.2 (certificate for relay.test),
plain.test -> 127.0.0.3 (no STARTTLS).
"""
import os
import re
import shutil
import tempfile

import harness
from smtp_helpers import (DnsServer, Receiver, free_port_on, make_certs,
                          password_authenticator, server_tls_context)

SENDER = "postmaster@localhost"
HOSTS = {"relay.test": "127.0.0.2", "plain.test": "127.0.0.3",
         "wrongname.test": "127.0.0.2"}


class World:
    def __enter__(self):
        self.tmp = tempfile.mkdtemp(prefix="postern-smtp-tls-")
        os.chmod(self.tmp, 0o755)
        self.certs = make_certs(os.path.join(self.tmp, "certs"), ["relay.test"])
        self.dns = DnsServer(hosts=HOSTS).__enter__()
        self.port = free_port_on(["127.0.0.2", "127.0.0.3"])
        return self

    def __exit__(self, *exc):
        self.dns.__exit__(*exc)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    def tls_receiver(self, **kw):
        kwargs = dict(tls_context=server_tls_context(self.certs), require_starttls=True)
        kwargs.update(kw)
        return Receiver("127.0.0.2", self.port, name="RELAY", smtp_kwargs=kwargs)

    def sender(self, **conf):
        c = {"smtp_dns_resolver": "127.0.0.1:%d" % self.dns.port,
             "smtp_tcp_port": str(self.port), "smtp_connect_timeout": "5s"}
        c.update(conf)
        return harness.Instance(conf=c)

    def write_table(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        return path


def send(inst, rcpt, subject="tls"):
    with inst.smtp() as s:
        s.sendmail(SENDER, [rcpt], "From: %s\r\nSubject: %s\r\n\r\nbody\r\n" % (SENDER, subject))


def test_relayhost_auth_over_starttls():
    with World() as w:
        users = {"alice": "s3cret"}
        with w.tls_receiver(authenticator=password_authenticator(users),
                            auth_require_tls=True, auth_required=True) as rx:
            pw = w.write_table("sasl_passwd", "[relay.test]:%d alice:s3cret\n" % w.port)
            with w.sender(relayhost="[relay.test]:%d" % w.port,
                          smtp_tls_security_level="encrypt",
                          smtp_tls_CAfile=w.certs["ca"],
                          smtp_sasl_auth_enable="yes",
                          smtp_sasl_password_maps="texthash:" + pw) as inst:
                send(inst, "bob@far.example")
                inst.wait_log(r"postern/smtp\[\d+\]: Trusted TLS connection established to "
                              r"relay.test\[127.0.0.2\]:%d: TLSv1.[23] with cipher \S+"
                              % w.port, timeout=30)
                inst.wait_log(r"to=<bob@far.example>, relay=relay.test\[127.0.0.2\]:%d, .*"
                              r"dsn=2.0.0, status=sent \(250 2.0.0 Ok: queued as RELAY1\)"
                              % w.port, timeout=30)
        assert len(rx.messages) == 1
        assert rx.messages[0].tls is True
        assert rx.messages[0].auth_user == "alice"
        assert rx.messages[0].rcpt_tos == ["bob@far.example"]


def test_wrong_password_defers_with_server_reply():
    with World() as w:
        with w.tls_receiver(authenticator=password_authenticator({"alice": "right"}),
                            auth_required=True) as rx:
            pw = w.write_table("sasl_passwd", "[relay.test]:%d alice:wrong\n" % w.port)
            with w.sender(relayhost="[relay.test]:%d" % w.port,
                          smtp_sasl_auth_enable="yes",
                          smtp_sasl_password_maps="texthash:" + pw) as inst:
                send(inst, "bob@far.example")
                inst.wait_log(r"to=<bob@far.example>, relay=relay.test\[127.0.0.2\]:%d, .*"
                              r"status=deferred \(SASL authentication failed; server "
                              r"relay.test\[127.0.0.2\] said: 535 " % w.port, timeout=30)
        assert rx.messages == []


def test_no_auth_without_tls_by_default():
    """PLAIN/LOGIN are not used in the clear (smtp_sasl_security_options =
    noplaintext): with TLS off, the password is never sent."""
    with World() as w:
        with Receiver("127.0.0.3", w.port, name="PLAIN",
                      smtp_kwargs=dict(authenticator=password_authenticator({"alice": "pw"}),
                                       auth_require_tls=False, auth_required=True)) as rx:
            pw = w.write_table("sasl_passwd", "[plain.test]:%d alice:pw\n" % w.port)
            with w.sender(relayhost="[plain.test]:%d" % w.port,
                          smtp_sasl_auth_enable="yes",
                          smtp_sasl_password_maps="texthash:" + pw) as inst:
                send(inst, "bob@far.example")
                inst.wait_log(r"to=<bob@far.example>, relay=plain.test\[127.0.0.3\]:%d, .*"
                              r"status=deferred \(SASL authentication failed: cannot "
                              r"authenticate to server plain.test" % w.port, timeout=30)
        assert rx.messages == []


def test_opportunistic_tls_untrusted_without_ca():
    with World() as w:
        with w.tls_receiver() as rx, w.sender() as inst:
            send(inst, "carol@relay.test")
            inst.wait_log(r"Untrusted TLS connection established to relay.test\[127.0.0.2\]"
                          r":%d: TLSv1.[23] with cipher" % w.port, timeout=30)
            inst.wait_log(r"to=<carol@relay.test>, .*status=sent", timeout=30)
        assert rx.messages[0].tls is True


def test_encrypt_required_but_not_offered_defers():
    with World() as w:
        with Receiver("127.0.0.3", w.port, name="PLAIN") as rx, \
                w.sender(smtp_tls_security_level="encrypt") as inst:
            send(inst, "dave@plain.test")
            inst.wait_log(r"to=<dave@plain.test>, relay=plain.test\[127.0.0.3\]:%d, .*"
                          r"dsn=4.7.4, status=deferred \(TLS is required, but was not "
                          r"offered by host plain.test\[127.0.0.3\]\)" % w.port, timeout=30)
        assert rx.messages == []


def test_policy_map_secure_checks_the_name():
    """smtp_tls_policy_maps: secure for relay.test (certificate matches,
    delivered as Verified) and for wrongname.test (same server, name does
    not match: deferred, nothing sent)."""
    with World() as w:
        policy = w.write_table("tls_policy", "relay.test secure\nwrongname.test secure\n")
        with w.tls_receiver() as rx, \
                w.sender(smtp_tls_CAfile=w.certs["ca"],
                         smtp_tls_policy_maps="texthash:" + policy) as inst:
            send(inst, "erin@relay.test")
            inst.wait_log(r"Verified TLS connection established to relay.test", timeout=30)
            inst.wait_log(r"to=<erin@relay.test>, .*status=sent", timeout=30)
            send(inst, "frank@wrongname.test")
            inst.wait_log(r"to=<frank@wrongname.test>, relay=wrongname.test\[127.0.0.2\]:%d, "
                          r".*dsn=4.7.5, status=deferred \(Server certificate not verified"
                          % w.port, timeout=30)
        assert [m.rcpt_tos for m in rx.messages] == [["erin@relay.test"]]


def test_relayhost_auth_over_starttls_chrooted_root_instance():
    """The same in a root instance: the agent is chrooted in the spool, so
    CA file, password table and SASL plugins must have been loaded before
    the chroot."""
    if not harness.is_root():
        return
    with World() as w:
        with w.tls_receiver(authenticator=password_authenticator({"alice": "s3cret"}),
                            auth_required=True) as rx:
            pw = w.write_table("sasl_passwd", "[relay.test]:%d alice:s3cret\n" % w.port)
            conf = {"smtp_dns_resolver": "127.0.0.1:%d" % w.dns.port,
                    "smtp_tcp_port": str(w.port), "smtp_connect_timeout": "5s",
                    "relayhost": "[relay.test]:%d" % w.port,
                    "smtp_tls_security_level": "verify",
                    "smtp_tls_CAfile": w.certs["ca"],
                    "smtp_sasl_auth_enable": "yes",
                    "smtp_sasl_password_maps": "texthash:" + pw}
            with harness.Instance(conf=conf, as_root=True) as inst:
                send(inst, "bob@far.example")
                inst.wait_log(r"Verified TLS connection established to relay.test", timeout=30)
                inst.wait_log(r"to=<bob@far.example>, .*status=sent", timeout=30)
        assert rx.messages[0].auth_user == "alice"


def test_failed_opportunistic_handshake_retried_in_plaintext():
    """may: a server that offers STARTTLS but cannot do TLS gets the mail
    over a second, plaintext connection (as Postfix does)."""
    from smtp_helpers import ScriptedServer
    with World() as w:
        replies = {"EHLO": "250-broken.test\r\n250 STARTTLS", "STARTTLS": "220 go ahead"}
        with ScriptedServer("127.0.0.3", w.port, replies=replies) as srv, w.sender() as inst:
            send(inst, "gus@plain.test")
            inst.wait_log(r"Cannot start TLS: handshake failure with plain.test\[127.0.0.3\]",
                          timeout=30)
            inst.wait_log(r"to=<gus@plain.test>, relay=plain.test\[127.0.0.3\]:%d, .*"
                          r"status=sent" % w.port, timeout=30)
            assert srv.connections == 2
            assert srv.lines.count("STARTTLS") == 1
            assert "RCPT TO:<gus@plain.test>" in srv.lines


def test_tls_connection_reused_for_several_messages():
    with World() as w:
        with w.tls_receiver() as rx, \
                w.sender(smtp_destination_concurrency_limit="1",
                         smtp_connection_cache_time_limit="30s") as inst:
            for i in range(3):
                send(inst, "r%d@relay.test" % i, subject="reuse %d" % i)
            for i in range(3):
                inst.wait_log(r"to=<r%d@relay.test>, .*status=sent" % i, timeout=60)
            assert sorted(m.rcpt_tos[0] for m in rx.messages) == \
                ["r%d@relay.test" % i for i in range(3)]
            assert all(m.tls for m in rx.messages)
            assert rx.connections < 3, rx.connections
            assert len(set(m.peer for m in rx.messages)) <= rx.connections
            # one handshake per connection, not per message
            assert len(re.findall(r"TLS connection established to relay.test", inst.log())) \
                == rx.connections
