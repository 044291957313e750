"""test_smtp.py - the smtp delivery agent against a real DNS server
(dnsmasq) and real receiving servers (aiosmtpd, and a second postern
instance) on loopback addresses 127.0.0.2 and up.

The sending instance asks only dnsmasq (smtp_dns_resolver) and connects to
smtp_tcp_port on each server address, so MX records can point at
127.0.0.2, 127.0.0.3, ... all listening on one port.
"""
import email
import email.policy
import os
import re

import harness
from smtp_helpers import DnsServer, Receiver, ScriptedServer, free_port_on

SENDER = "postmaster@localhost"       # bounces land in the instance's root mailbox

DNS_MX = {
    "pref.test": [(10, "mx1.test"), (20, "mx2.test")],
    "reversed.test": [(20, "mx1.test"), (10, "mx2.test")],
    "down.test": [(10, "dead1.test"), (20, "mx2.test")],
    "alldown.test": [(10, "dead1.test"), (20, "dead2.test")],
    "loopname.test": [(10, "localhost.localdomain"), (20, "mx2.test")],
    "loopaddr.test": [(10, "me.test")],
    "backup.test": [(10, "mx2.test"), (20, "me.test")],
}
DNS_HOSTS = {
    "mx1.test": "127.0.0.2",
    "mx2.test": "127.0.0.3",
    "dead1.test": "127.0.0.4",
    "dead2.test": "127.0.0.5",
    "amx.test": "127.0.0.2",           # no MX: the A record is the server
    "me.test": "127.0.0.1",            # the sending instance's own address
}


def sender_instance(dns, port, **conf):
    c = {"smtp_dns_resolver": "127.0.0.1:%d" % dns.port,
         "smtp_tcp_port": str(port),
         "smtp_connect_timeout": "5s"}
    c.update(conf)
    return harness.Instance(conf=c)


def send(inst, rcpts, subject="test", body="hello\r\n", sender=SENDER):
    if isinstance(rcpts, str):
        rcpts = [rcpts]
    with inst.smtp() as s:
        s.sendmail(sender, rcpts, "From: %s\r\nSubject: %s\r\n\r\n%s" % (sender, subject, body))


def setup_world():
    dns = DnsServer(mx=DNS_MX, hosts=DNS_HOSTS, null_mx=["nullmx.test"])
    port = free_port_on(["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"])
    return dns, port


def test_mx_preference_order():
    dns, port = setup_world()
    with dns, Receiver("127.0.0.2", port) as mx1, Receiver("127.0.0.3", port) as mx2, \
            sender_instance(dns, port) as inst:
        send(inst, "bob@pref.test", subject="pref")
        # logged by the smtp agent itself, once (qmgr does not repeat it)
        inst.wait_log(r"postern/smtp\[\d+\]: \w+: to=<bob@pref.test>, "
                      r"relay=mx1.test\[127.0.0.2\]:%d, delay=[\d.]+, "
                      r"delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=2.0.0, status=sent "
                      r"\(250 2.0.0 Ok: queued as RX127002\d+\)$" % port, timeout=30)
        send(inst, "carol@reversed.test", subject="reversed")
        inst.wait_log(r"to=<carol@reversed.test>, relay=mx2.test\[127.0.0.3\]:%d, .*"
                      r"status=sent" % port, timeout=30)
        assert [m.rcpt_tos for m in mx1.messages] == [["bob@pref.test"]]
        assert len(re.findall(r"to=<bob@pref.test>", inst.log())) == 1, inst.log()
        assert [m.rcpt_tos for m in mx2.messages] == [["carol@reversed.test"]]
        msg = email.message_from_bytes(mx1.messages[0].content, policy=email.policy.compat32)
        assert msg["Subject"] == "pref"
        assert mx1.messages[0].mail_from == SENDER


def test_fallback_to_next_mx_when_first_is_down():
    dns, port = setup_world()
    with dns, Receiver("127.0.0.3", port) as mx2, sender_instance(dns, port) as inst:
        send(inst, "dave@down.test")
        inst.wait_log(r"to=<dave@down.test>, relay=mx2.test\[127.0.0.3\]:%d, .*status=sent"
                      % port, timeout=30)
        assert [m.rcpt_tos for m in mx2.messages] == [["dave@down.test"]]


def test_a_record_fallback_without_mx():
    dns, port = setup_world()
    with dns, Receiver("127.0.0.2", port) as rx, sender_instance(dns, port) as inst:
        send(inst, "erin@amx.test")
        inst.wait_log(r"to=<erin@amx.test>, relay=amx.test\[127.0.0.2\]:%d, .*status=sent"
                      % port, timeout=30)
        assert [m.rcpt_tos for m in rx.messages] == [["erin@amx.test"]]
        assert "query[MX] amx.test" in dns.queries()


def test_nonexistent_domain_bounces_5_4_4():
    dns, port = setup_world()
    with dns, sender_instance(dns, port) as inst:
        send(inst, "frank@nowhere.test", subject="nx")
        inst.wait_log(r"postern/smtp\[\d+\]: \w+: to=<frank@nowhere.test>, relay=none, "
                      r".*dsn=5.4.4, status=bounced "
                      r"\(Host or domain name not found. Name service error for "
                      r"name=nowhere.test type=MX: Host not found\)", timeout=30)
        msgs = harness.wait_for(lambda: inst.mailbox("root") or None, 30, what="bounce")
        assert "Undelivered Mail Returned to Sender" in msgs[0]
        assert "Status: 5.4.4" in msgs[0]


def test_null_mx_bounces_5_1_10():
    dns, port = setup_world()
    with dns, sender_instance(dns, port) as inst:
        send(inst, "gina@nullmx.test")
        inst.wait_log(r"to=<gina@nullmx.test>, relay=none, .*dsn=5.1.10, status=bounced "
                      r"\(Domain nullmx.test does not accept mail \(nullMX\)\)", timeout=30)


def test_all_mx_down_defers_with_reason():
    dns, port = setup_world()
    with dns, sender_instance(dns, port) as inst:
        send(inst, "hank@alldown.test")
        m = inst.wait_log(r"postern/smtp\[\d+\]: (\w+): to=<hank@alldown.test>, relay=none, "
                          r".*dsn=4.4.1, "
                          r"status=deferred \(connect to dead2.test\[127.0.0.5\]:%d: "
                          r"Connection refused\)" % port, timeout=30)
        qid = m.group(1)
        # in deferred/ with the reason in its defer log
        spool = os.path.join(inst.dir, "spool")
        harness.wait_for(lambda: os.path.exists(os.path.join(spool, "deferred", qid[13], qid)),
                         30, what="message in deferred/")
        dlog = open(os.path.join(spool, "defer", qid[13], qid)).read()
        assert "hank@alldown.test" in dlog and "Connection refused" in dlog
        # postern queue lists it with the reason
        r = inst.postern("queue")
        assert r.returncode == 0, r.stderr
        assert qid in r.stdout, r.stdout
        assert "connect to dead2.test[127.0.0.5]:%d: Connection refused" % port in r.stdout, \
            r.stdout


def test_5xx_bounce_carries_remote_reply():
    dns, port = setup_world()
    reject = {"nobody@amx.test": "550 5.1.1 <nobody@amx.test>: Recipient address rejected: "
                                 "User unknown"}
    with dns, Receiver("127.0.0.2", port, reject=reject) as rx, \
            sender_instance(dns, port) as inst:
        send(inst, ["nobody@amx.test", "ivan@amx.test"], subject="mixed")
        inst.wait_log(r"postern/smtp\[\d+\]: \w+: to=<nobody@amx.test>, "
                      r"relay=amx.test\[127.0.0.2\]:%d, .*dsn=5.1.1, "
                      r"status=bounced \(host amx.test\[127.0.0.2\] said: 550 5.1.1 "
                      r"<nobody@amx.test>: Recipient address rejected: User unknown "
                      r"\(in reply to RCPT TO command\)\)" % port, timeout=30)
        inst.wait_log(r"to=<ivan@amx.test>, .*status=sent", timeout=30)
        assert [m.rcpt_tos for m in rx.messages] == [["ivan@amx.test"]]
        msgs = harness.wait_for(lambda: inst.mailbox("root") or None, 30, what="bounce")
        unfolded = re.sub(r"\n[ \t]+", " ", msgs[0])
        assert "Diagnostic-Code: smtp; 550 5.1.1 <nobody@amx.test>: Recipient address " \
               "rejected: User unknown\n" in unfolded
        assert "Remote-MTA: dns; amx.test" in msgs[0]


def test_rcpt_replies_decide_alike_with_and_without_pipelining():
    """Per recipient, a 250 to RCPT TO is delivered, a 550 bounces and a
    450 defers, each with the server's words, the same whether the server
    offers PIPELINING (MAIL, RCPT, DATA in one write, replies read after)
    or not (each command waits for its reply)."""
    def rcpt_script(conn, line, state):
        if not line.startswith("RCPT TO:<"):
            return None
        addr = line[len("RCPT TO:<"):line.index(">")]
        return {"bad": "550 5.1.1 <%s>: Recipient address rejected: User unknown" % addr,
                "later": "450 4.2.0 <%s>: Recipient address rejected: greylisted" % addr,
                }.get(addr.split("@")[0])
    dns, port = setup_world()
    # amx.test and mx2.test have no MX: their A records, 127.0.0.2 and .3
    lockstep = ScriptedServer("127.0.0.2", port, script=rcpt_script,
                              replies={"EHLO": "250-lockstep.test\r\n250 8BITMIME"})
    pipelined = ScriptedServer("127.0.0.3", port, script=rcpt_script,
                               replies={"EHLO": "250-pipelined.test\r\n250 PIPELINING"})
    with dns, lockstep, pipelined, sender_instance(dns, port) as inst:
        for domain, addr, srv in (("amx.test", "127.0.0.2", lockstep),
                                  ("mx2.test", "127.0.0.3", pipelined)):
            send(inst, ["ok@" + domain, "later@" + domain, "bad@" + domain])
            relay = r"relay=%s\[%s\]:%d, " % (re.escape(domain), re.escape(addr), port)
            said = r"\(host %s\[%s\] said: " % (re.escape(domain), re.escape(addr))
            inst.wait_log(r"to=<ok@%s>, %s.*dsn=2.0.0, status=sent \(250 ok\)"
                          % (re.escape(domain), relay), timeout=30)
            inst.wait_log(r"to=<bad@%s>, %s.*dsn=5.1.1, status=bounced %s550 5.1.1 "
                          r"<bad@%s>: Recipient address rejected: User unknown \(in reply to "
                          r"RCPT TO command\)\)" % ((re.escape(domain), relay, said)
                                                    + (re.escape(domain),)), timeout=30)
            inst.wait_log(r"to=<later@%s>, %s.*dsn=4.2.0, status=deferred %s450 4.2.0 "
                          r"<later@%s>: Recipient address rejected: greylisted \(in reply "
                          r"to RCPT TO command\)\)" % ((re.escape(domain), relay, said)
                                                       + (re.escape(domain),)), timeout=30)
            with srv.lock:
                group = [(chunk, line) for _, chunk, line in srv.events
                         if line.split(":")[0] in ("MAIL FROM", "RCPT TO", "DATA")]
            assert [l.split(":")[0] for _, l in group] == \
                ["MAIL FROM", "RCPT TO", "RCPT TO", "RCPT TO", "DATA"], group
            chunks = set(chunk for chunk, _ in group)
            # one write with PIPELINING, a write per command without it
            assert len(chunks) == (1 if srv is pipelined else 5), group
            assert len(srv.messages) == 1 and b"hello" in srv.messages[0][1]
        log = inst.log()
        for domain in ("amx.test", "mx2.test"):
            assert len(re.findall(r"to=<(ok|bad|later)@%s>" % re.escape(domain), log)) == 3


def test_connection_reuse_for_several_messages():
    dns, port = setup_world()
    with dns, Receiver("127.0.0.2", port) as rx, \
            sender_instance(dns, port, smtp_destination_concurrency_limit="1",
                            smtp_connection_cache_time_limit="30s") as inst:
        for i in range(4):
            send(inst, "user%d@amx.test" % i, subject="reuse %d" % i)
        for i in range(4):
            inst.wait_log(r"to=<user%d@amx.test>, .*status=sent" % i, timeout=60)
        assert sorted(m.rcpt_tos[0] for m in rx.messages) == \
            ["user%d@amx.test" % i for i in range(4)]
        # the messages came over fewer connections than messages
        peers = set(m.peer for m in rx.messages)
        assert rx.connections < 4, rx.connections
        assert len(peers) <= rx.connections


def test_idle_cached_connection_closed_after_time_limit():
    dns, port = setup_world()
    with dns, Receiver("127.0.0.2", port) as rx, \
            sender_instance(dns, port, smtp_connection_cache_time_limit="1s",
                            max_idle="100s") as inst:
        send(inst, "idle@amx.test")
        inst.wait_log(r"to=<idle@amx.test>, .*status=sent", timeout=30)
        # the agent lives on (max_idle 100s) but lets the connection go
        harness.wait_for(lambda: rx.closed == rx.connections == 1, 20,
                         what="the cached connection to be closed")


class receiving_instance:
    """A second postern instance on 127.0.0.3:port taking mail for in.test
    (delivered locally: postmaster -> root's Maildir)."""

    def __init__(self, port, **conf):
        c = {"inet_interfaces": "127.0.0.3",
             "mydestination": "$myhostname, localhost, in.test"}
        c.update(conf)
        self.port = port
        self.inst = harness.Instance(port=port, conf=c, start=False)

    def __enter__(self):
        inst = self.inst.__enter__()
        try:
            path = os.path.join(inst.dir, "master.cf")
            text = open(path).read().replace("127.0.0.1:", "127.0.0.3:")
            with open(path, "w") as f:
                f.write(text)
            r = inst.postern("start")
            assert r.returncode == 0, r.stderr + inst.log()
            harness.wait_for(lambda: harness.port_accepts(self.port, "127.0.0.3"), 10,
                             what="receiving smtpd")
        except BaseException:
            self.inst.__exit__(None, None, None)
            raise
        return inst

    def __exit__(self, *exc):
        return self.inst.__exit__(*exc)


def test_to_a_second_postern_instance_with_pipelining_and_dsn():
    """postern to postern: PIPELINING, DSN (NOTIFY=SUCCESS and ENVID reach
    the receiving side, which sends the success notice), dot-stuffing."""
    dns = DnsServer(mx={"in.test": [(10, "mx.in.test")]}, hosts={"mx.in.test": "127.0.0.3"})
    port = free_port_on(["127.0.0.3"])
    free_port_on(["127.0.0.3"])         # keep port+1 (submission) from others
    with dns, receiving_instance(port) as rx, sender_instance(dns, port) as inst:
        body = "line one\r\n.leading dot\r\n..two dots\r\nend\r\n"
        with inst.smtp() as s:
            s.ehlo()
            s.sendmail(SENDER, ["postmaster@in.test"],
                       "From: %s\r\nSubject: p2p\r\n\r\n%s" % (SENDER, body),
                       mail_options=["ENVID=env-42"], rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
        inst.wait_log(r"to=<postmaster@in.test>, relay=mx.in.test\[127.0.0.3\]:%d, .*"
                      r"dsn=2.0.0, status=sent \(250 2.0.0 Ok: queued as \w+\)" % port,
                      timeout=30)
        # The receiving side's success notice returns the headers (Subject: p2p)
        # to root as well and may be listed first: pick the message itself.
        msgs = harness.wait_for(lambda: [m for m in rx.mailbox("root")
                                         if "p2p" in m and "line one" in m] or None,
                                30, what="message at the receiving instance")
        assert "\n.leading dot\n..two dots\nend\n" in msgs[0]
        # the receiving side got NOTIFY=SUCCESS and ENVID: its success notice
        rx.wait_log(r"sender delivery status notification: \w+", timeout=30)
        notices = harness.wait_for(
            lambda: [m for m in rx.mailbox("root") if "Successful Mail Delivery" in m] or None,
            30, what="success notice")
        assert "Original-Envelope-Id: env-42" in notices[0]


def test_message_over_server_size_limit_bounces_unsent():
    dns = DnsServer(mx={"in.test": [(10, "mx.in.test")]}, hosts={"mx.in.test": "127.0.0.3"})
    port = free_port_on(["127.0.0.3"])
    free_port_on(["127.0.0.3"])
    with dns, receiving_instance(port, message_size_limit="2000") as rx, \
            sender_instance(dns, port) as inst:
        send(inst, "postmaster@in.test", subject="big", body="x" * 70 + "\r\n" * 1 + ("y" * 70 + "\r\n") * 60)
        inst.wait_log(r"to=<postmaster@in.test>, relay=mx.in.test\[127.0.0.3\]:%d, .*"
                      r"dsn=5.3.4, status=bounced \(message size \d+ exceeds size limit 2000 "
                      r"of server mx.in.test\[127.0.0.3\]\)" % port, timeout=30)
        assert not re.search(r"client=", rx.log())   # never got to a transaction


def test_mx_that_is_myself_loops_back():
    """MX = $myhostname, or an MX address we listen on (inet_interfaces):
    bounce 5.4.6 when nothing better remains; a backup MX that is us is
    dropped and the better one used."""
    dns, port = setup_world()
    with dns, Receiver("127.0.0.3", port) as mx2, sender_instance(dns, port) as inst:
        send(inst, "a@loopname.test")
        inst.wait_log(r"to=<a@loopname.test>, relay=none, .*dsn=5.4.6, status=bounced "
                      r"\(mail for loopname.test loops back to myself\)", timeout=30)
        send(inst, "b@loopaddr.test")
        inst.wait_log(r"to=<b@loopaddr.test>, relay=none, .*dsn=5.4.6, status=bounced "
                      r"\(mail for loopaddr.test loops back to myself\)", timeout=30)
        send(inst, "c@backup.test")
        inst.wait_log(r"to=<c@backup.test>, relay=mx2.test\[127.0.0.3\]:%d, .*status=sent"
                      % port, timeout=30)
        assert [m.rcpt_tos for m in mx2.messages] == [["c@backup.test"]]


def test_fallback_relay_when_destination_unreachable_or_unknown():
    dns, port = setup_world()
    with dns, Receiver("127.0.0.3", port) as fb, \
            sender_instance(dns, port, smtp_fallback_relay="[127.0.0.3]:%d" % port) as inst:
        send(inst, "d@alldown.test")
        inst.wait_log(r"to=<d@alldown.test>, relay=127.0.0.3\[127.0.0.3\]:%d, .*status=sent"
                      % port, timeout=30)
        send(inst, "e@nowhere.test")
        inst.wait_log(r"to=<e@nowhere.test>, relay=127.0.0.3\[127.0.0.3\]:%d, .*status=sent"
                      % port, timeout=30)
        assert sorted(m.rcpt_tos[0] for m in fb.messages) == ["d@alldown.test", "e@nowhere.test"]


def test_misbehaving_servers_defer_with_precise_reasons():
    """Garbage instead of an EHLO reply, a 421 greeting, a 450 to RCPT and
    silence after the end of data: each deferred with its reason, the
    agent keeps working (no crash, nothing marked sent)."""
    dns, port = setup_world()
    with dns, sender_instance(dns, port, smtp_data_done_timeout="3s",
                              smtp_helo_timeout="10s") as inst:
        with ScriptedServer("127.0.0.2", port, replies={"EHLO": "hello there"}):
            send(inst, "f@amx.test")
            inst.wait_log(r"to=<f@amx.test>, relay=amx.test\[127.0.0.2\]:%d, .*"
                          r"status=deferred \(lost connection with amx.test\[127.0.0.2\] "
                          r"while performing the EHLO handshake\)" % port, timeout=30)
        with ScriptedServer("127.0.0.2", port, greeting="421 4.3.2 busy, try later"):
            send(inst, "g@amx.test")
            inst.wait_log(r"to=<g@amx.test>, relay=amx.test\[127.0.0.2\]:%d, .*"
                          r"dsn=4.3.2, status=deferred \(host amx.test\[127.0.0.2\] refused "
                          r"to talk to me: 421 4.3.2 busy, try later\)" % port, timeout=30)
        with ScriptedServer("127.0.0.2", port, replies={"RCPT": "450 4.2.0 <h@amx.test>: "
                                                                "greylisted"}):
            send(inst, "h@amx.test")
            inst.wait_log(r"to=<h@amx.test>, relay=amx.test\[127.0.0.2\]:%d, .*dsn=4.2.0, "
                          r"status=deferred \(host amx.test\[127.0.0.2\] said: 450 4.2.0 "
                          r"<h@amx.test>: greylisted \(in reply to RCPT TO command\)\)" % port,
                          timeout=30)
        with ScriptedServer("127.0.0.2", port, replies={".": None}) as srv:
            send(inst, "i@amx.test", body="one\r\n.two\r\n")
            inst.wait_log(r"to=<i@amx.test>, relay=amx.test\[127.0.0.2\]:%d, .*status=deferred "
                          r"\(conversation with amx.test\[127.0.0.2\] timed out while sending "
                          r"end of data -- message may be sent more than once\)" % port,
                          timeout=30)
            assert "..two" in srv.lines            # dot-stuffed on the wire
        assert "status=sent" not in inst.log()
        assert "panic" not in inst.log() and "fatal" not in inst.log()


def test_5xx_greeting_next_server_or_bounce():
    """smtp_skip_5xx_greeting: yes (default) tries the next MX after a 554
    greeting; no bounces at once with the greeting's words and never
    reaches the next MX."""
    dns, port = setup_world()
    with dns, ScriptedServer("127.0.0.2", port, greeting="554 5.7.1 go away") as mx1, \
            Receiver("127.0.0.3", port) as mx2:
        with sender_instance(dns, port) as inst:
            send(inst, "skip@pref.test")
            inst.wait_log(r"to=<skip@pref.test>, relay=mx2.test\[127.0.0.3\]:%d, .*status=sent"
                          % port, timeout=30)
        assert [m.rcpt_tos for m in mx2.messages] == [["skip@pref.test"]]
        assert mx1.connections >= 1
        with sender_instance(dns, port, smtp_skip_5xx_greeting="no") as inst:
            send(inst, "noskip@pref.test")
            inst.wait_log(r"to=<noskip@pref.test>, relay=mx1.test\[127.0.0.2\]:%d, .*"
                          r"dsn=5.7.1, status=bounced \(host mx1.test\[127.0.0.2\] refused "
                          r"to talk to me: 554 5.7.1 go away\)" % port, timeout=30)
        assert [m.rcpt_tos for m in mx2.messages] == [["skip@pref.test"]]


def test_chrooted_agent_in_root_instance():
    """In a root instance the agent runs chrooted in the spool as
    mail_owner: DNS (resolver set up before the chroot) and delivery still
    work."""
    if not harness.is_root():
        return
    dns, port = setup_world()
    with dns, Receiver("127.0.0.2", port) as mx1, Receiver("127.0.0.3", port), \
            harness.Instance(conf={"smtp_dns_resolver": "127.0.0.1:%d" % dns.port,
                                   "smtp_tcp_port": str(port),
                                   "smtp_connect_timeout": "5s"}, as_root=True) as inst:
        send(inst, "root-test@pref.test")
        inst.wait_log(r"to=<root-test@pref.test>, relay=mx1.test\[127.0.0.2\]:%d, .*"
                      r"status=sent" % port, timeout=30)
        assert [m.rcpt_tos for m in mx1.messages] == [["root-test@pref.test"]]
        agents = []
        for pid in inst.pids():
            try:
                cmd = open("/proc/%d/cmdline" % pid, "rb").read().split(b"\0")[0]
            except OSError:
                continue
            if cmd.endswith(b"/smtp"):
                agents.append(pid)
        assert agents, "no smtp agent process"
        spool = os.path.realpath(os.path.join(inst.dir, "spool"))
        for pid in agents:
            assert os.readlink("/proc/%d/root" % pid) == spool
            st = os.stat("/proc/%d" % pid)
            assert st.st_uid != 0


def test_long_lines_broken_at_smtp_line_length_limit():
    dns, port = setup_world()
    with dns, Receiver("127.0.0.2", port) as rx, sender_instance(dns, port) as inst:
        long_line = "".join("%04d" % i for i in range(375))       # 1500 characters
        send(inst, "long@amx.test", subject="long", body=long_line + "\r\n.after\r\n")
        inst.wait_log(r"to=<long@amx.test>, .*status=sent", timeout=30)
        lines = rx.messages[0].content.split(b"\r\n")
        assert max(len(l) for l in lines) <= 998
        i = lines.index(long_line[:998].encode())
        assert lines[i + 1] == b" " + long_line[998:].encode()
        assert lines[i + 2] == b".after"          # unstuffed by the server


def test_postern_check_reports_bad_smtp_settings():
    with harness.Instance(start=False) as inst:
        r = inst.postern("check")
        assert r.returncode == 0, r.stderr
        inst.edit_main_cf({"smtp_tls_security_level": "paranoid",
                           "smtp_tcp_port": "seventy",
                           "smtp_dns_resolver": "dns.example:53",
                           "smtp_sasl_password_maps": "texthash:/nonexistent/sasl_passwd"})
        r = inst.postern("check")
        assert r.returncode == 1
        assert 'smtp_tls_security_level: unknown level "paranoid"' in r.stderr, r.stderr
        assert 'smtp_tcp_port: bad port "seventy"' in r.stderr, r.stderr
        assert "smtp_dns_resolver: " in r.stderr, r.stderr
        assert "smtp_sasl_password_maps: " in r.stderr, r.stderr


def test_8bitmime_smtputf8_and_helo_fallback():
    """BODY=8BITMIME declared for 8-bit content; a message that needs
    SMTPUTF8 bounces (5.6.7) at a server without it; a server that refuses
    EHLO gets HELO and the mail."""
    dns, port = setup_world()
    with dns, sender_instance(dns, port) as inst:
        with Receiver("127.0.0.2", port,                # 8BITMIME, no SMTPUTF8
                      smtp_kwargs={"enable_SMTPUTF8": False}) as rx:
            with inst.smtp() as s:
                s.sendmail(SENDER, ["eight@amx.test"],
                           ("From: %s\r\nSubject: 8bit\r\n\r\nna\u00efve caf\u00e9\r\n"
                            % SENDER).encode("utf-8"), mail_options=["BODY=8BITMIME"])
            inst.wait_log(r"to=<eight@amx.test>, .*status=sent", timeout=30)
            assert "BODY=8BITMIME" in rx.messages[0].mail_options
            assert "caf\u00e9".encode("utf-8") in rx.messages[0].content
            with inst.smtp() as s:
                s.ehlo()
                s.sendmail(SENDER, ["j\u00f6rg@amx.test"],
                           ("From: %s\r\nSubject: utf8\r\n\r\nhi\r\n" % SENDER).encode("utf-8"),
                           mail_options=["SMTPUTF8"])
            inst.wait_log(r"to=<j\u00f6rg@amx.test>, relay=amx.test\[127.0.0.2\]:%d, .*"
                          r"dsn=5.6.7, status=bounced \(SMTPUTF8 is required, but was not "
                          r"offered by host amx.test\[127.0.0.2\]\)" % port, timeout=30)
            assert len(rx.messages) == 1
        with Receiver("127.0.0.2", port, smtp_kwargs={"enable_SMTPUTF8": True}) as rx:
            with inst.smtp() as s:
                s.ehlo()
                s.sendmail(SENDER, ["ren\u00e9@amx.test"],
                           ("From: %s\r\nSubject: utf8 ok\r\n\r\nhi\r\n" % SENDER).encode(),
                           mail_options=["SMTPUTF8"])
            inst.wait_log(r"to=<ren\u00e9@amx.test>, .*status=sent", timeout=30)
            assert "SMTPUTF8" in rx.messages[0].mail_options
        with ScriptedServer("127.0.0.2", port,
                            replies={"EHLO": "502 5.5.2 Error: command not recognized"}) as srv:
            send(inst, "helo@amx.test")
            inst.wait_log(r"to=<helo@amx.test>, relay=amx.test\[127.0.0.2\]:%d, .*status=sent"
                          % port, timeout=30)
            assert srv.lines[0].startswith("EHLO ") and srv.lines[1].startswith("HELO ")
            assert "MAIL FROM:<%s>" % SENDER in srv.lines    # no ESMTP parameters


def test_dns_failure_defers_4_4_3():
    """A domain whose name servers do not answer (dnsmasq forwards it to a
    dead upstream): deferred, not bounced."""
    dead = free_port_on(["127.0.0.1"])
    dns = DnsServer(mx=DNS_MX, hosts=DNS_HOSTS,
                    extra=["--server=/tempfail.test/127.0.0.1#%d" % dead])
    port = free_port_on(["127.0.0.2"])
    with dns, sender_instance(dns, port) as inst:
        send(inst, "t@tempfail.test")
        inst.wait_log(r"to=<t@tempfail.test>, relay=none, .*dsn=4.4.3, status=deferred "
                      r"\(.*name=tempfail.test type=MX", timeout=60)
