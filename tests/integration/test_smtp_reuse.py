"""test_smtp_reuse.py - the smtp agent's reuse of a cached connection:
RSET goes in the same write as MAIL, RCPT and DATA when the server offers
PIPELINING (RFC 2920), and mail stays correct when the server refuses the
RSET, drops the idle connection, or rejects MAIL after the RSET.

The receiving server is smtp_helpers.ScriptedServer offering PIPELINING
(pipeline_server): it records every command line with the number of the
recv() chunk it arrived in, so a pipelined group is visible as lines
sharing one chunk, and it answers per connection from a script.  One
agent (smtp_destination_concurrency_limit = 1) and a long
smtp_connection_cache_time_limit make the second message of each test
reuse the first one's connection.
"""
import harness
from smtp_helpers import DnsServer, ScriptedServer, free_port_on

SENDER = "postmaster@localhost"


# The replies of a server that offers PIPELINING, for ScriptedServer.
PIPELINE_REPLIES = {
    "EHLO": "250-pipe.test\r\n250-PIPELINING\r\n250 8BITMIME",
    "MAIL": "250 2.0.0 Ok",
    "RCPT": "250 2.0.0 Ok",
    "RSET": "250 2.0.0 Ok",
    ".": "250 2.0.0 Ok: queued",
    "QUIT": "221 bye",
}


def pipeline_server(addr, port, script=None):
    """A ScriptedServer offering PIPELINING; script(conn, line, state)
    overrides its replies (None: the default one)."""
    return ScriptedServer(addr, port, greeting="220 pipe.test ESMTP",
                          replies=PIPELINE_REPLIES, script=script)


def sender_instance(dns, port, **conf):
    c = {"smtp_dns_resolver": "127.0.0.1:%d" % dns.port,
         "smtp_tcp_port": str(port),
         "smtp_connect_timeout": "5s",
         "smtp_destination_concurrency_limit": "1",
         "smtp_connection_cache_time_limit": "60s",
         "max_idle": "100s"}
    c.update(conf)
    return harness.Instance(conf=c)


def send(inst, rcpt, subject):
    with inst.smtp() as s:
        s.sendmail(SENDER, [rcpt], "From: %s\r\nSubject: %s\r\n\r\nbody of %s\r\n"
                   % (SENDER, subject, subject))


def world():
    dns = DnsServer(mx={}, hosts={"pipe.test": "127.0.0.2"})
    return dns, free_port_on(["127.0.0.2"])


def first_message(inst, srv):
    """Deliver one message; afterwards the agent holds connection 1."""
    send(inst, "first@pipe.test", "first")
    inst.wait_log(r"to=<first@pipe.test>, .*status=sent", timeout=30)
    harness.wait_for(lambda: any(l == "." for l in srv.commands(1)), 10, what="first end of data")


def test_reused_connection_sends_rset_in_the_pipelined_group():
    dns, port = world()
    with dns, pipeline_server("127.0.0.2", port) as srv, sender_instance(dns, port) as inst:
        first_message(inst, srv)
        for i in range(2):
            send(inst, "again%d@pipe.test" % i, "again %d" % i)
            inst.wait_log(r"to=<again%d@pipe.test>, relay=pipe.test\[127.0.0.2\]:%d, .*"
                          r"dsn=2.0.0, status=sent \(250 2.0.0 Ok: queued\)" % (i, port),
                          timeout=30)
        assert srv.connections == 1, srv.connections
        with srv.lock:
            events = list(srv.events)
        # each reuse: RSET, MAIL, RCPT, DATA arrived in one recv() chunk
        rsets = [k for k, (_, _, l) in enumerate(events) if l == "RSET"]
        assert len(rsets) == 2, events
        for k in rsets:
            group = events[k:k + 4]
            assert [l.split(":")[0] for _, _, l in group] == \
                ["RSET", "MAIL FROM", "RCPT TO", "DATA"], group
            assert len(set(chunk for _, chunk, _ in group)) == 1, group
        # the first transaction on a new connection has no RSET
        first_mail = next(k for k, (_, _, l) in enumerate(events) if l.startswith("MAIL"))
        assert first_mail < rsets[0] and events[first_mail - 1][2].startswith("EHLO")
        assert [c for c, _ in srv.messages] == [1, 1, 1]
        assert b"body of again 1" in srv.messages[2][1]


def test_refused_rset_means_a_fresh_connection_and_one_copy():
    """The server answers the RSET of a reused connection with 421 (and,
    as a careless server might, still 250/354 to what follows): the agent
    must not trust those replies nor send the content there, must not QUIT
    into a possible DATA state, and delivers the message once on a new
    connection."""
    def script(conn, line, state):
        if conn == 1 and line == "RSET":
            return "421 4.3.2 shutting down"
        return None
    dns, port = world()
    with dns, pipeline_server("127.0.0.2", port, script) as srv, \
            sender_instance(dns, port) as inst:
        first_message(inst, srv)
        send(inst, "second@pipe.test", "second")
        inst.wait_log(r"to=<second@pipe.test>, relay=pipe.test\[127.0.0.2\]:%d, .*"
                      r"dsn=2.0.0, status=sent" % port, timeout=30)
        harness.wait_for(lambda: srv.closed >= 1, 10, what="connection 1 closed")
        lines1 = srv.commands(1)
        k = lines1.index("RSET")
        # after the refused RSET: the rest of the group, then nothing
        assert [l.split(":")[0] for l in lines1[k:]] == ["RSET", "MAIL FROM", "RCPT TO",
                                                        "DATA"], lines1
        assert srv.connections == 2
        assert "RSET" not in srv.commands(2)
        assert [c for c, _ in srv.messages] == [1, 2], srv.messages
        assert b"body of second" in srv.messages[1][1]
        log = inst.log()
        assert "4.3.2" not in log and "status=deferred" not in log


def test_cached_connection_dropped_by_server():
    """The server closes the idle connection without a word: the pipelined
    group meets a dead socket, and the message goes over a new connection,
    not deferred."""
    def script(conn, line, state):
        if conn == 1 and line == ".":
            return "CLOSE 250 2.0.0 Ok: queued"
        return None
    dns, port = world()
    with dns, pipeline_server("127.0.0.2", port, script) as srv, \
            sender_instance(dns, port) as inst:
        first_message(inst, srv)
        send(inst, "after-drop@pipe.test", "after drop")
        inst.wait_log(r"to=<after-drop@pipe.test>, relay=pipe.test\[127.0.0.2\]:%d, .*"
                      r"status=sent" % port, timeout=30)
        assert srv.connections == 2
        assert [c for c, _ in srv.messages] == [1, 2]
        assert "status=deferred" not in inst.log()


def test_mail_rejected_after_pipelined_rset():
    """RSET is accepted, then MAIL gets 550 and RCPT 503 on the reused
    connection: the replies are matched to their commands (the RSET reply
    is not taken for MAIL's), the recipient bounces with MAIL's reply, and
    the next message still goes through."""
    def script(conn, line, state):
        if state.get("reject") is None and line == "RSET":
            state["reject"] = True
            return None
        if state.get("reject") and line.startswith("MAIL"):
            return "550 5.7.1 <%s>: Sender address rejected: not today" % SENDER
        if state.get("reject") and line.startswith("RCPT"):
            return "503 5.5.1 Error: need MAIL command"
        if state.get("reject") and line == "DATA":
            state["reject"] = False
            return "503 5.5.1 Error: need RCPT command"
        return None
    dns, port = world()
    with dns, pipeline_server("127.0.0.2", port, script) as srv, \
            sender_instance(dns, port) as inst:
        first_message(inst, srv)
        send(inst, "rejected@pipe.test", "rejected")
        inst.wait_log(r"to=<rejected@pipe.test>, relay=pipe.test\[127.0.0.2\]:%d, .*"
                      r"dsn=5.7.1, status=bounced \(host pipe.test\[127.0.0.2\] said: 550 "
                      r"5.7.1 <%s>: Sender address rejected: not today \(in reply to MAIL "
                      r"FROM command\)\)" % (port, SENDER), timeout=30)
        send(inst, "third@pipe.test", "third")
        inst.wait_log(r"to=<third@pipe.test>, relay=pipe.test\[127.0.0.2\]:%d, .*"
                      r"dsn=2.0.0, status=sent" % port, timeout=30)
        assert [c for c, _ in srv.messages] == [1, 1], srv.messages
        assert srv.connections == 1
        assert b"body of third" in srv.messages[-1][1]
        assert all(b"body of rejected" not in m for _, m in srv.messages)
