"""test_qmgr.py - the real qmgr against fake delivery agents and a fake
cleanup (qmgr_rig.py): scheduling, results, deferral with backoff, flush,
bounces (parsed back with Python's email package), discard, error:,
crash recovery, concurrency limits, dead destinations, hold/, corrupt files.
"""
import email
import email.policy
import os
import re
import socket
import subprocess
import threading
import time

from qmgr_rig import (QmgrRig, FakeAgent, FakeCleanup, IpcReader, build_dir, ipc_call,
                      ipc_encode, rec_get, wait_for)


def sent(reason="delivered to mailbox", relay="local"):
    return lambda rcpt, req: ("sent", "2.0.0", relay, reason)


def parse_report(text):
    """Parse a DSN; return (message, [parts], [delivery-status groups])."""
    msg = email.message_from_string(text, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert isinstance(parts, list) and len(parts) == 3, len(parts)
    assert parts[0].get_content_type() == "text/plain"
    assert parts[1].get_content_type() == "message/delivery-status"
    # compat32 parses delivery-status into a list of header blocks.
    groups = parts[1].get_payload()
    return msg, parts, groups


def test_local_delivery_one_rcpt_per_request_and_removal():
    with QmgrRig() as rig:
        agent = FakeAgent(rig, "local", sent())
        qid = rig.write_message("alice@far.example", ["bob@mx.test.example", "Carol@LOCALHOST"])
        rig.start()
        rig.wait_log(qid + r": from=<alice@far.example>, size=\d+, nrcpt=2 \(queue active\)")
        # The agent logs its results (here the fake one, from the request's times) ...
        rig.wait_log(r"postern/local\[\d+\]: " + qid + r": to=<bob@mx.test.example>, relay=local, "
                     r"delay=[\d.]+, delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=2.0.0, "
                     r"status=sent \(delivered to mailbox\)")
        rig.wait_log(qid + r": to=<Carol@LOCALHOST>, relay=local, .*status=sent")
        rig.wait_log(qid + r": removed")
        # ... and qmgr does not repeat them.
        assert not re.search(r"postern/qmgr\[\d+\]: " + qid + r": to=", rig.log()), rig.log()
        assert rig.where(qid) is None
        # local_destination_recipient_limit = 1: one request per recipient.
        assert len(agent.requests) == 2
        req = agent.requests[0]
        assert rec_get(req, "request") == "deliver"
        assert rec_get(req, "queue_id") == qid
        assert rec_get(req, "queue_file") == "active/" + qid
        assert rec_get(req, "sender") == "alice@far.example"
        assert rec_get(req, "nexthop") == "mx.test.example"
        assert int(rec_get(req, "offset")) > 0
        # The times the agent's log line needs: arrival <= active <= request <= now.
        arrival_us = int(rec_get(req, "arrival_us"))
        active_us = int(rec_get(req, "active_us"))
        request_us = int(rec_get(req, "request_us"))
        assert arrival_us // 1000000 == int(rec_get(req, "arrival")), req
        assert arrival_us <= active_us <= request_us <= time.time() * 1e6, req
        assert sorted(agent.rcpts()) == ["Carol@LOCALHOST", "bob@mx.test.example"]


def test_remote_grouping_per_nexthop():
    with QmgrRig() as rig:
        agent = FakeAgent(rig, "smtp", sent("250 2.0.0 ok", "mx.a.example[192.0.2.1]:25"))
        qid = rig.write_message("alice@mx.test.example",
                                ["a1@a.example", "a2@A.EXAMPLE", "b1@b.example", "a3@a.example"])
        rig.start()
        rig.wait_log(qid + r": removed")
        by_hop = {}
        for req in agent.requests:
            by_hop.setdefault(rec_get(req, "nexthop"), []).append(
                [v.decode() for n, v in req if n == "rcpt"])
        assert by_hop == {"a.example": [["a1@a.example", "a2@A.EXAMPLE", "a3@a.example"]],
                          "b.example": [["b1@b.example"]]}, by_hop


def test_recipient_limit_splits_requests():
    with QmgrRig("smtp_destination_recipient_limit = 2\n") as rig:
        agent = FakeAgent(rig, "smtp", sent("ok", "mx[192.0.2.1]"))
        qid = rig.write_message("s@mx.test.example", ["r%d@a.example" % i for i in range(5)])
        rig.start()
        rig.wait_log(qid + r": removed")
        sizes = sorted(sum(1 for n, _ in r if n == "rcpt") for r in agent.requests)
        assert sizes == [1, 2, 2], sizes


def test_error_transport_bounces_with_valid_dsn():
    with QmgrRig(transport_map="bad.example error:5.1.2 No such domain here\n") as rig:
        agent = FakeAgent(rig, "smtp", sent("ok", "mx[192.0.2.1]"))
        cleanup = FakeCleanup(rig)
        qid = rig.write_message("alice@far.example",
                                ["x@bad.example", {"addr": "y@ok.example"}],
                                body="line one\nline two\n",
                                attrs=[("envid", "ENV-123")])
        rig.start()
        rig.wait_log(r"postern/qmgr\[\d+\]: " + qid + r": to=<x@bad.example>, relay=none, .*dsn=5.1.2, "
                     r"status=bounced \(No such domain here\)")
        rig.wait_log(qid + r": sender non-delivery notification: FAKE00001")
        rig.wait_log(qid + r": removed")
        assert agent.rcpts() == ["y@ok.example"]
        assert len(cleanup.messages) == 1
        note = cleanup.messages[0]
        env = note["envelope"]
        assert rec_get(env, "request") == "enqueue"
        assert rec_get(env, "origin") == "bounce"
        assert rec_get(env, "sender") == ""
        assert rec_get(env, "rcpt") == "alice@far.example"
        msg, parts, groups = parse_report(note["text"])
        assert msg["From"] == "MAILER-DAEMON@mx.test.example (Mail Delivery System)"
        assert msg["Subject"] == "Undelivered Mail Returned to Sender"
        assert msg["To"] == "alice@far.example"
        per_msg = groups[0]
        assert per_msg["Reporting-MTA"] == "dns; mx.test.example"
        assert per_msg["X-Postern-Queue-ID"] == qid
        assert per_msg["Original-Envelope-Id"] == "ENV-123"
        assert per_msg["Arrival-Date"]
        assert len(groups) == 2
        r = groups[1]
        assert r["Final-Recipient"] == "rfc822; x@bad.example"
        assert r["Action"] == "failed"
        assert r["Status"] == "5.1.2"
        assert r["Diagnostic-Code"] == "x-unix; No such domain here"
        assert parts[2].get_content_type() == "message/rfc822"
        returned = parts[2].get_payload()[0]
        assert returned["Subject"] == "test 1"
        assert "line two" in returned.get_payload()


def test_remote_bounce_reports_smtp_diagnostic_and_orcpt():
    def decide(rcpt, req):
        return ("bounced", "5.1.1", "mx.far.example[192.0.2.7]:25",
                "host mx.far.example[192.0.2.7] said: 550 5.1.1 <%s>: no such user "
                "(in reply to RCPT TO command)" % rcpt)
    with QmgrRig() as rig:
        FakeAgent(rig, "smtp", decide)
        cleanup = FakeCleanup(rig)
        qid = rig.write_message("alice@mx.test.example",
                                [{"addr": "u@far.example", "orcpt": "rfc822;U@far.example"}],
                                attrs=[("ret", "HDRS")], body="secret body\n")
        rig.start()
        rig.wait_log(qid + r": removed")
        msg, parts, groups = parse_report(cleanup.messages[0]["text"])
        r = groups[1]
        assert r["Original-Recipient"] == "rfc822;U@far.example"
        assert r["Remote-MTA"] == "dns; mx.far.example"
        assert r["Diagnostic-Code"] == "smtp; 550 5.1.1 <u@far.example>: no such user"
        # RET=HDRS: headers only.
        assert parts[2].get_content_type() == "text/rfc822-headers"
        assert "secret body" not in cleanup.messages[0]["text"]


def test_notify_never_and_success():
    with QmgrRig(transport_map="bad.example error:5.0.0 nope\n") as rig:
        FakeAgent(rig, "smtp", sent("250 ok", "mx[192.0.2.1]"))
        cleanup = FakeCleanup(rig)
        qid = rig.write_message("alice@mx.test.example",
                                [{"addr": "n@bad.example", "notify": "NEVER"},
                                 {"addr": "s@ok.example", "notify": "SUCCESS"}])
        rig.start()
        rig.wait_log(qid + r": removed")
        rig.wait_log(qid + r": sender delivery status notification: FAKE")
        assert len(cleanup.messages) == 1
        msg, parts, groups = parse_report(cleanup.messages[0]["text"])
        assert msg["Subject"] == "Successful Mail Delivery Report"
        assert groups[1]["Final-Recipient"] == "rfc822; s@ok.example"
        assert groups[1]["Action"] == "delivered"
        assert parts[2].get_content_type() == "text/rfc822-headers"


def test_discard_transport():
    with QmgrRig(transport_map="void.example discard:\n") as rig:
        qid = rig.write_message("a@mx.test.example", ["x@void.example"])
        rig.start()
        rig.wait_log(r"postern/qmgr\[\d+\]: " + qid + r": to=<x@void.example>, relay=none, "
                     r"delay=[\d.]+, delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=2.0.0, "
                     r"status=sent \(discarded\)")
        rig.wait_log(qid + r": removed")


def test_missing_transport_defers_with_backoff_then_flush_delivers():
    with QmgrRig(transport_map="later.example slowpoke:\n") as rig:
        qid = rig.write_message("a@mx.test.example", ["x@later.example"])
        rig.start()
        rig.wait_log(qid + r": to=<x@later.example>, .*dsn=4.3.0, status=deferred "
                     r"\(mail transport unavailable\)")
        wait_for(lambda: rig.where(qid) == "deferred", what="move to deferred/")
        st = os.stat(rig.path("deferred", qid))
        # Next attempt = now + minimal_backoff_time (the message is new).
        assert 280 <= st.st_mtime - time.time() <= 301, st.st_mtime - time.time()
        with open(rig.path("defer", qid)) as f:
            fields = f.read().splitlines()[-1].split("\t")
        assert fields[0] == "D" and fields[2] == "x@later.example"
        assert fields[3] == "4.3.0" and fields[5] == "mail transport unavailable"
        # Not retried before its time, even on wakeup.
        rig.wakeup()
        time.sleep(0.3)
        assert rig.log().count(qid + ": from=") == 1
        # Make the transport exist: restart with it in master.cf, then flush.
        with open(os.path.join(rig.conf, "master.cf"), "a") as f:
            f.write("slowpoke unix - - n - - smtp\n")
        rig.restart()
        agent = FakeAgent(rig, "slowpoke", sent("ok", "mx[192.0.2.1]"))
        time.sleep(0.2)
        assert agent.rcpts() == []          # still waiting for its time
        assert rec_get(rig.flush(), "status") == "0"
        rig.wait_log(qid + r": to=<x@later.example>, .*status=sent")
        rig.wait_log(qid + r": removed")
        assert not os.path.exists(rig.path("defer", qid))


def test_agent_deferral_recorded_and_retried_on_flush():
    state = {"defer": True}

    def decide(rcpt, req):
        if state["defer"]:
            return ("deferred", "4.2.2", "mx.a.example[192.0.2.1]:25", "mailbox full")
        return ("sent", "2.0.0", "mx.a.example[192.0.2.1]:25", "250 ok")
    with QmgrRig() as rig:
        agent = FakeAgent(rig, "smtp", decide)
        qid = rig.write_message("a@mx.test.example", ["x@a.example", "y@a.example"])
        rig.start()
        rig.wait_log(qid + r": to=<y@a.example>, .*dsn=4.2.2, status=deferred \(mailbox full\)")
        wait_for(lambda: rig.where(qid) == "deferred", what="deferred/")
        state["defer"] = False
        rig.flush()
        rig.wait_log(qid + r": to=<x@a.example>, .*status=sent")
        rig.wait_log(qid + r": removed")
        assert len(agent.requests) == 2


def test_partial_delivery_then_crash_recovery_retries_only_pending():
    with QmgrRig() as rig:
        # Leave a message in active/ as a crash would; one recipient done.
        qid = rig.write_message("a@mx.test.example",
                                [{"addr": "done@a.example", "done": True}, "todo@a.example"],
                                queue="active")
        agent = FakeAgent(rig, "smtp", sent("ok", "mx[192.0.2.1]"))
        rig.start()
        rig.wait_log(qid + r": from=<a@mx.test.example>, size=\d+, nrcpt=1 \(queue active\)")
        rig.wait_log(qid + r": removed")
        assert agent.rcpts() == ["todo@a.example"]


def test_sent_marks_done_in_queue_file():
    with QmgrRig() as rig:
        FakeAgent(rig, "smtp", lambda r, q: ("sent", "2.0.0", "mx[1.2.3.4]", "ok")
                  if r.startswith("x") else ("deferred", "4.0.0", "mx[1.2.3.4]", "later"))
        qid = rig.write_message("a@mx.test.example", ["x@a.example", "y@b.example"])
        rig.start()
        wait_for(lambda: rig.where(qid) == "deferred", what="deferred/")
        data = open(rig.path("deferred", qid), "rb").read()
        assert b"R12:Dx@a.example\n" in data
        assert b"R12:-y@b.example\n" in data


def test_null_sender_bounce_goes_to_postmaster_and_double_bounce_dropped():
    with QmgrRig(transport_map="bad.example error:5.1.1 gone\n") as rig:
        cleanup = FakeCleanup(rig)
        q1 = rig.write_message("", ["x@bad.example"])
        q2 = rig.write_message("double-bounce@mx.test.example", ["y@bad.example"])
        rig.start()
        rig.wait_log(q1 + r": removed")
        rig.wait_log(q2 + r": undeliverable postmaster notification discarded")
        rig.wait_log(q2 + r": removed")
        assert len(cleanup.messages) == 1
        env = cleanup.messages[0]["envelope"]
        assert rec_get(env, "rcpt") == "postmaster"
        assert rec_get(env, "sender") == "double-bounce@mx.test.example"


def test_bounce_kept_pending_when_cleanup_fails():
    with QmgrRig(transport_map="bad.example error:5.1.1 gone\n") as rig:
        FakeCleanup(rig, fail=True)
        qid = rig.write_message("a@far.example", ["x@bad.example"])
        rig.start()
        rig.wait_log(qid + r": could not queue sender non-delivery notification: .*fake failure")
        wait_for(lambda: rig.where(qid) == "deferred", what="deferred/")
        data = open(rig.path("deferred", qid), "rb").read()
        assert b"R14:-x@bad.example\n" in data


def test_expired_message_returned():
    with QmgrRig() as rig:
        FakeAgent(rig, "smtp", lambda r, q: ("deferred", "4.4.1", "none", "connect to mx: refused"))
        cleanup = FakeCleanup(rig)
        qid = rig.write_message("a@far.example", ["x@slow.example"],
                                arrival=time.time() - 6 * 86400)
        rig.start()
        rig.wait_log(qid + r": to=<x@slow.example>, relay=none, dsn=4.4.1, "
                     r"status=expired, returned to sender \(connect to mx: refused\)")
        rig.wait_log(qid + r": removed")
        msg, parts, groups = parse_report(cleanup.messages[0]["text"])
        assert groups[1]["Action"] == "failed"
        assert groups[1]["Status"] == "4.4.1"


def test_delay_warning_sent_once():
    with QmgrRig("delay_warning_time = 1h\n") as rig:
        FakeAgent(rig, "smtp", lambda r, q: ("deferred", "4.2.0", "mx[192.0.2.1]", "try later"))
        cleanup = FakeCleanup(rig)
        qid = rig.write_message("a@far.example", ["x@slow.example"],
                                arrival=time.time() - 2 * 3600)
        rig.start()
        rig.wait_log(qid + r": sender delay notification: FAKE00001")
        wait_for(lambda: rig.where(qid) == "deferred", what="deferred/")
        msg, parts, groups = parse_report(cleanup.messages[0]["text"])
        assert msg["Subject"] == "Delayed Mail (still being retried)"
        assert groups[1]["Action"] == "delayed"
        rig.flush()
        wait_for(lambda: rig.log().count(qid + ": from=") == 2, what="second attempt")
        wait_for(lambda: rig.where(qid) == "deferred", what="deferred again")
        assert len(cleanup.messages) == 1


def test_concurrency_window_and_growth():
    with QmgrRig() as rig:
        gate = threading.Event()
        agent = FakeAgent(rig, "smtp", sent("ok", "mx[192.0.2.1]"), gate=gate)
        qids = [rig.write_message("a@mx.test.example", ["r%d@one.example" % i]) for i in range(12)]
        rig.start()
        # initial_destination_concurrency = 5 in flight, no more.
        wait_for(lambda: agent.active == 5, what="5 deliveries in flight")
        time.sleep(0.3)
        assert agent.active == 5 and agent.max_active == 5
        gate.set()
        for q in qids:
            rig.wait_log(q + r": removed")
        assert len(agent.requests) == 12


def test_transport_maxproc_limits_total():
    with QmgrRig(transports=("local", "relay"), master_extra="smtp unix - - n - 2 smtp\n") as rig:
        gate = threading.Event()
        agent = FakeAgent(rig, "smtp", sent("ok", "mx[192.0.2.1]"), gate=gate)
        qids = [rig.write_message("a@mx.test.example", ["r@d%d.example" % i]) for i in range(6)]
        rig.start()
        wait_for(lambda: agent.active == 2, what="2 deliveries in flight")
        time.sleep(0.3)
        assert agent.max_active == 2
        gate.set()
        for q in qids:
            rig.wait_log(q + r": removed")


def test_dead_destination_defers_without_trying():
    with QmgrRig("initial_destination_concurrency = 2\n") as rig:
        agent = FakeAgent(rig, "smtp", lambda r, q: ("deferred", "4.4.1", "none",
                                                       "connect to mx.dead.example: Connection refused"))
        q1 = rig.write_message("a@mx.test.example", ["r1@dead.example"])
        q2 = rig.write_message("a@mx.test.example", ["r2@dead.example"])
        rig.start()
        rig.wait_log(r"destination dead.example is dead")
        wait_for(lambda: rig.where(q1) == "deferred" and rig.where(q2) == "deferred",
                 what="both deferred")
        n = len(agent.requests)
        q3 = rig.write_message("a@mx.test.example", ["r3@dead.example"])
        rig.wakeup()
        rig.wait_log(q3 + r": to=<r3@dead.example>, .*status=deferred \(delivery temporarily "
                     r"suspended: connect to mx.dead.example: Connection refused\)")
        assert len(agent.requests) == n


def test_hold_is_never_scheduled_and_corrupt_is_moved():
    with QmgrRig() as rig:
        FakeAgent(rig, "smtp", sent("ok", "mx[192.0.2.1]"))
        held = rig.write_message("a@mx.test.example", ["x@a.example"], queue="hold")
        bad = rig.write_message("a@mx.test.example", ["y@a.example"])
        path = rig.path("incoming", bad)
        data = open(path, "rb").read()
        open(path, "wb").write(data[:-4])       # cut off the E record
        good = rig.write_message("a@mx.test.example", ["z@a.example"])
        rig.start()
        rig.wait_log(good + r": removed")
        rig.wait_log(bad + r": corrupt queue file, moved to corrupt/")
        assert rig.where(bad) == "corrupt"
        rig.flush()
        time.sleep(0.3)
        assert rig.where(held) == "hold"
        assert held not in rig.log()


def test_defer_transports_wait_for_flush():
    with QmgrRig("defer_transports = smtp\n") as rig:
        agent = FakeAgent(rig, "smtp", sent("ok", "mx[192.0.2.1]"))
        qid = rig.write_message("a@mx.test.example", ["x@a.example"])
        rig.start()
        rig.wait_log(qid + r": to=<x@a.example>, .*dsn=4.3.2, status=deferred \(deferred transport\)")
        wait_for(lambda: rig.where(qid) == "deferred", what="deferred/")
        assert agent.rcpts() == []
        rig.flush()
        rig.wait_log(qid + r": removed")
        assert agent.rcpts() == ["x@a.example"]


def test_unknown_request_is_refused():
    with QmgrRig() as rig:
        rig.start()
        reply = ipc_call(os.path.join(rig.spool, "public", "qmgr"), [("request", "bogus")])
        assert rec_get(reply, "status") == "1"
        # Garbage on the socket does not hurt it either.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(os.path.join(rig.spool, "public", "qmgr"))
        s.sendall(b"NOT IPC\n\n")
        s.close()
        assert rec_get(rig.wakeup(), "status") == "0"
        assert rig.alive()


class WrongRcptAgent(FakeAgent):
    """Answers for a recipient qmgr did not ask about."""

    def handle(self, conn):
        IpcReader(conn).record()
        conn.sendall(ipc_encode([("rcpt", "intruder@x"), ("status", "sent"), ("dsn", "2.0.0"),
                                 ("relay", "mx"), ("reason", "ok")]) + ipc_encode([("done", "1")]))


class CrashingAgent(FakeAgent):
    """Reads the request and hangs up without a word."""

    def handle(self, conn):
        IpcReader(conn).record()


def test_agent_protocol_error_and_crash_defer():
    with QmgrRig(transports=("local", "smtp", "crashy")) as rig:
        WrongRcptAgent(rig, "smtp", None)
        CrashingAgent(rig, "crashy", None)
        with open(os.path.join(rig.conf, "main.cf"), "a") as f:
            f.write("transport_maps = %s\n" % rig.write_map("transport", "c.example crashy:\n"))
        q1 = rig.write_message("a@mx.test.example", ["x@a.example"])
        q2 = rig.write_message("a@mx.test.example", ["y@c.example"])
        rig.start()
        rig.wait_log(q1 + r": to=<x@a.example>, .*status=deferred \(delivery agent protocol error: "
                     r"result for <intruder@x>, expected <x@a.example>\)")
        rig.wait_log(r"postern/qmgr\[\d+\]: " + q2 + r": to=<y@c.example>, .*status=deferred "
                     r"\(delivery agent crashy: "
                     r"connection closed before the end of the results\)")
        wait_for(lambda: rig.where(q1) == "deferred" and rig.where(q2) == "deferred",
                 what="both deferred")
        data = open(rig.path("deferred", q1), "rb").read()
        assert b"R12:-x@a.example\n" in data
        assert rig.alive()


def test_wakeup_picks_up_new_mail():
    """qmgr_watch_incoming = no: no watch, new mail waits for a wakeup
    (as before the watch; the protocol is the same either way)."""
    with QmgrRig("qmgr_watch_incoming = no\n") as rig:
        agent = FakeAgent(rig, "smtp", sent("ok", "mx[192.0.2.1]"))
        rig.start()
        rig.wakeup()
        assert rig.inotify_fds() == 0
        qid = rig.write_message("a@mx.test.example", ["x@a.example"])
        assert rec_get(rig.wakeup(), "status") == "0"
        rig.wait_log(qid + r": removed")
        assert agent.rcpts() == ["x@a.example"]


def deliver_without_wakeup(rig, rcpt, commit="rename", within=5.0):
    """Commit a message to incoming/ and wait for its delivery, sending no
    wakeup; returns the seconds it took."""
    qid = rig.write_message("a@mx.test.example", [rcpt], commit=commit)
    t0 = time.monotonic()
    rig.wait_log(qid + r": removed", timeout=within)
    return time.monotonic() - t0


def test_watch_picks_up_new_mail_without_wakeup():
    """Default qmgr_watch_incoming = yes: mail committed to incoming/ is
    delivered with no wakeup at all.  The rig has no master timer and
    queue_run_delay is an hour, so only the inotify watch explains it;
    each message is committed after the previous one is gone, long after
    any start-up scan.  Both commit styles: rename of a dot-file and a
    new link (as for an O_TMPFILE file)."""
    with QmgrRig("queue_run_delay = 3600s\n") as rig:
        agent = FakeAgent(rig, "smtp", sent("ok", "mx[192.0.2.1]"))
        rig.start()
        wait_for(lambda: rig.inotify_fds() == 1, 10, "qmgr's watch")
        deliver_without_wakeup(rig, "x1@a.example")
        deliver_without_wakeup(rig, "x2@a.example")
        deliver_without_wakeup(rig, "x3@a.example", commit="link")
        assert agent.rcpts() == ["x1@a.example", "x2@a.example", "x3@a.example"]
        # a writer's temporary file is not mail
        with open(os.path.join(rig.spool, "incoming", ".tmp-writer"), "w") as f:
            f.write("half")
        deliver_without_wakeup(rig, "x4@a.example")
        assert os.path.exists(os.path.join(rig.spool, "incoming", ".tmp-writer"))
        assert "warning" not in rig.log(), rig.log()


def test_watch_that_cannot_be_set_falls_back_to_a_scan_every_second():
    """inotify_add_watch fails (ENOSPC, as when fs.inotify.max_user_watches
    is used up; an LD_PRELOAD shim, fail_inotify.c): qmgr says so once,
    scans incoming/ every second meanwhile (mail never waits for the
    deferred queue run), and sets the watch as soon as it can."""
    with QmgrRig("queue_run_delay = 3600s\n") as rig:
        shim = os.path.join(rig.dir, "fail_inotify.so")
        subprocess.run(["cc", "-shared", "-fPIC", "-o", shim,
                        os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                     "fail_inotify.c"), "-ldl"], check=True)
        full = os.path.join(rig.dir, "inotify-full")
        open(full, "w").close()
        agent = FakeAgent(rig, "smtp", sent("ok", "mx[192.0.2.1]"))
        rig.start(env_extra={"LD_PRELOAD": shim, "FAIL_INOTIFY_WHILE": full})
        rig.wait_log(r"warning: cannot watch incoming/ \(No space left on device\): "
                     r"scanning it every second until the watch can be set")
        for i in range(3):
            took = deliver_without_wakeup(rig, "x%d@a.example" % i)
            assert took < 3.5, took
        assert rig.inotify_fds() == 0
        assert len(re.findall(r"cannot watch incoming", rig.log())) == 1, rig.log()
        # room again: the next retry sets the watch
        os.unlink(full)
        rig.wait_log(r"postern/qmgr\[\d+\]: watching incoming/ again", timeout=5)
        assert rig.inotify_fds() == 1
        deliver_without_wakeup(rig, "y@a.example")
        assert len(agent.rcpts()) == 4
        assert len(re.findall(r"cannot watch incoming", rig.log())) == 1, rig.log()


def test_wakeup_reply_to_a_client_gone_raises_no_sigpipe():
    """cleanup (qmgr_watch_incoming = no) and master's timer send
    {request=wakeup} and close without reading the reply: qmgr's reply then
    fails with EPIPE, quietly (MSG_NOSIGNAL), and without waiting."""
    with QmgrRig() as rig:
        FakeAgent(rig, "smtp", sent("ok", "mx[192.0.2.1]"))
        rig.start()
        rig.wakeup()
        trace = os.path.join(rig.dir, "strace")
        st = subprocess.Popen(["strace", "-o", trace, "-e", "trace=sendto,write",
                               "-p", str(rig.proc.pid)], stderr=subprocess.PIPE)
        try:
            assert b"attached" in st.stderr.readline()
            for _ in range(3):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(os.path.join(rig.spool, "public", "qmgr"))
                s.sendall(b"request 6\nwakeup\n\n")
                s.close()
            assert rec_get(rig.wakeup(), "status") == "0"     # in order: after those 3
            wait_for(lambda: open(trace).read().count("EPIPE") >= 3, 10, "3 EPIPE replies")
        finally:
            st.terminate()
            st.wait()
        text = open(trace).read()
        assert "SIGPIPE" not in text, text
        assert text.count("MSG_DONTWAIT|MSG_NOSIGNAL, NULL, 0) = -1 EPIPE") == 3, text


def test_active_queue_limit():
    with QmgrRig("qmgr_message_active_limit = 2\n") as rig:
        gate = threading.Event()
        agent = FakeAgent(rig, "smtp", sent("ok", "mx[192.0.2.1]"), gate=gate)
        qids = [rig.write_message("a@mx.test.example", ["r@d%d.example" % i]) for i in range(5)]
        rig.start()
        wait_for(lambda: agent.active == 2, what="2 in flight")
        time.sleep(0.3)
        assert rig.log().count("(queue active)") == 2
        assert sum(1 for q in qids if rig.where(q) == "incoming") == 3
        gate.set()
        for q in qids:
            rig.wait_log(q + r": removed")
        assert agent.max_active == 2


def test_window_grows_by_one_per_success_up_to_limit():
    with QmgrRig("initial_destination_concurrency = 1\n"
                 "smtp_destination_concurrency_limit = 3\n") as rig:
        gate = threading.Semaphore(0)
        agent = FakeAgent(rig, "smtp", sent("ok", "mx[192.0.2.1]"), gate=gate)
        qids = [rig.write_message("a@mx.test.example", ["r%d@one.example" % i]) for i in range(8)]
        rig.start()
        # After n answers the window is min(1 + n, 3).  Waiting for the
        # answer count too keeps a step from passing on the previous
        # step's state (3 in flight before the release took effect).
        for done, expect in enumerate((1, 2, 3, 3)):
            wait_for(lambda: agent.completed == done and agent.active == expect,
                     what="%d in flight after %d answers" % (expect, done))
            gate.release()
        for _ in range(8):
            gate.release()
        for q in qids:
            rig.wait_log(q + r": removed")
        # Never more in flight than the window allowed when a request
        # arrived: qmgr has seen at most as many successes as were answered.
        for active, done in agent.arrivals:
            assert active <= min(1 + done, 3), (active, done, agent.arrivals)
        assert agent.max_active == 3


def test_deferred_mail_retried_by_timer():
    state = {"n": 0}

    def decide(rcpt, req):
        state["n"] += 1
        if state["n"] == 1:
            return ("deferred", "4.4.1", "none", "connect to mx: timed out")
        return ("sent", "2.0.0", "mx[192.0.2.1]", "250 ok")
    with QmgrRig("queue_run_delay = 1s\nminimal_backoff_time = 1s\n"
                 "maximal_backoff_time = 2s\n") as rig:
        FakeAgent(rig, "smtp", decide)
        qid = rig.write_message("a@mx.test.example", ["x@a.example"])
        rig.start()
        rig.wait_log(qid + r": to=<x@a.example>, .*status=deferred")
        rig.wait_log(qid + r": to=<x@a.example>, .*status=sent", timeout=15)
        rig.wait_log(qid + r": removed")
        assert rig.log().count(qid + ": from=") == 2


def test_full_agent_backlog_waits_instead_of_deferring():
    with QmgrRig() as rig:
        accepting = threading.Event()
        agent = FakeAgent(rig, "smtp", sent("ok", "mx[192.0.2.1]"), backlog=1,
                          accept_gate=accepting)
        qids = [rig.write_message("a@mx.test.example", ["r@d%d.example" % i]) for i in range(10)]
        rig.start()
        rig.wait_log(r"\(queue active\)")
        time.sleep(0.5)                 # qmgr finds the backlog full meanwhile
        accepting.set()
        for q in qids:
            rig.wait_log(q + r": removed", timeout=20)
        assert "status=deferred" not in rig.log()
        assert len(agent.requests) == 10


def test_active_queue_larger_than_open_file_limit():
    with QmgrRig() as rig:
        gate = threading.Event()
        agent = FakeAgent(rig, "smtp", sent("ok", "mx[192.0.2.1]"), gate=gate)
        qids = [rig.write_message("a@mx.test.example", ["r@d%d.example" % i]) for i in range(200)]
        rig.start(nofile=64)
        wait_for(lambda: rig.log().count("(queue active)") == 200, what="all 200 active")
        wait_for(lambda: agent.active >= 10, what="deliveries in flight")
        gate.set()
        for q in qids:
            rig.wait_log(q + r": removed", timeout=30)
        assert "status=deferred" not in rig.log()
        assert "warning" not in rig.log()
        assert len(agent.requests) == 200


def test_many_bounces_at_once_all_queued():
    with QmgrRig(transport_map="bad.example error:5.1.1 gone\n") as rig:
        cleanup = FakeCleanup(rig)
        qids = [rig.write_message("s%d@far.example" % i, ["x@bad.example"]) for i in range(30)]
        rig.start()
        for q in qids:
            rig.wait_log(q + r": removed", timeout=30)
        assert sorted(rec_get(m["envelope"], "rcpt") for m in cleanup.messages) == \
            sorted("s%d@far.example" % i for i in range(30))


def test_crash_during_delivery_is_retried_after_restart():
    with QmgrRig() as rig:
        gate = threading.Event()
        agent = FakeAgent(rig, "smtp", sent("ok", "mx[192.0.2.1]"), gate=gate)
        qid = rig.write_message("a@mx.test.example", ["x@a.example"])
        rig.start()
        wait_for(lambda: agent.active == 1, what="delivery in flight")
        rig.proc.kill()                 # SIGKILL: no chance to clean up
        rig.proc.wait()
        assert rig.where(qid) == "active"
        gate.set()                      # the old delivery ends into the void
        rig.restart()
        rig.wait_log(qid + r": removed")
        assert agent.rcpts() == ["x@a.example", "x@a.example"]


def _second_qmgr(rig, sock_path):
    """Another real qmgr on the same queue, on its own listener."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(16)
    lfd = os.dup2(listener.fileno(), 202, inheritable=False)

    def child_fds():
        os.dup2(lfd, 3)

    env = dict(os.environ, POSTERN_CONFIG_DIR=rig.conf)
    proc = subprocess.Popen(
        [os.path.join(build_dir(), "libexec", "qmgr"), "-n", "qmgr", "-t", "unix",
         "-c", rig.conf],
        preexec_fn=child_fds, close_fds=False, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(lfd)
    return proc, listener


def test_sigterm_drains_running_delivery_and_a_second_qmgr_waits():
    with QmgrRig() as rig:
        gate = threading.Event()
        agent = FakeAgent(rig, "smtp", sent("ok", "mx[192.0.2.1]"), gate=gate)
        qid = rig.write_message("a@mx.test.example", ["x@a.example"])
        rig.start()
        wait_for(lambda: agent.active == 1, what="delivery in flight")
        # A second qmgr on the same queue must not touch the message the
        # first one is delivering: it waits for the first to go.
        sock2 = os.path.join(rig.dir, "qmgr2")
        second, listener2 = _second_qmgr(rig, sock2)
        try:
            rig.wait_log(r"qmgr\[%d\]: waiting for the previous queue manager to finish"
                         % second.pid)
            # SIGTERM (master's reload or stop): the running delivery is
            # waited for and its result recorded, not thrown away.
            first = rig.proc
            first.terminate()
            rig.wait_log(r"qmgr\[%d\]: terminating: waiting for 1 delivery request"
                         % first.pid)
            assert first.poll() is None
            assert agent.rcpts() == ["x@a.example"]
            gate.set()
            first.wait(20)
            rig.wait_log(qid + r": to=<x@a.example>, relay=mx\[192.0.2.1\], .*status=sent")
            rig.wait_log(qid + r": removed")
            assert rig.where(qid) is None
            # The second qmgr now runs: it found nothing left to redeliver,
            # and it delivers new mail.
            qid2 = rig.write_message("a@mx.test.example", ["y@a.example"])
            assert rec_get(ipc_call(sock2, [("request", "wakeup")]), "status") == "0"
            rig.wait_log(qid2 + r": removed", timeout=20)
            assert agent.rcpts() == ["x@a.example", "y@a.example"]
        finally:
            if second.poll() is None:
                second.terminate()
                second.wait(20)
            listener2.close()


def test_drain_is_bounded():
    with QmgrRig(main_cf_extra="qmgr_drain_time_limit = 2s\n") as rig:
        gate = threading.Event()
        agent = FakeAgent(rig, "smtp", sent("ok", "mx[192.0.2.1]"), gate=gate)
        qid = rig.write_message("a@mx.test.example", ["x@a.example"])
        rig.start()
        wait_for(lambda: agent.active == 1, what="delivery in flight")
        start = time.monotonic()
        rig.proc.terminate()
        # The agent does not answer: qmgr gives up after its drain limit
        # and leaves the message in active/ for the next qmgr.
        rig.proc.wait(20)
        assert time.monotonic() - start >= 1.5
        rig.wait_log(r"terminating with 1 delivery request\(s\) still running")
        assert rig.where(qid) == "active"
        gate.set()


def test_recipient_limit_bounds_active_queue():
    with QmgrRig("qmgr_message_recipient_limit = 4\n") as rig:
        gate = threading.Event()
        agent = FakeAgent(rig, "smtp", sent("ok", "mx[192.0.2.1]"), gate=gate)
        qids = [rig.write_message("a@mx.test.example", ["r@a%d-%d.example" % (i, j) for j in range(2)])
                for i in range(4)]
        rig.start()
        wait_for(lambda: agent.active == 4, what="4 requests in flight")
        time.sleep(0.3)
        # Two messages of two recipients fill the limit of 4.
        assert rig.log().count("(queue active)") == 2
        gate.set()
        for q in qids:
            rig.wait_log(q + r": removed")


def test_removal_worker_logs_after_unlink_and_drains_at_stop():
    """Finished queue files are unlinked by qmgr's removal thread
    (qmgr_remove.c): "removed" is logged only once the file and its defer
    log are gone, and a qmgr told to stop right after its last delivery
    result finishes the removals it has queued before it exits (no file
    left in active/, no hang joining the thread)."""
    with QmgrRig() as rig:
        FakeAgent(rig, "smtp", sent("250 ok", "mx[192.0.2.1]"))
        qids = [rig.write_message("s@mx.test.example", ["r%d@a.example" % i])
                for i in range(40)]
        for qid in qids[:5]:                 # stale defer logs, as after a deferral
            with open(rig.path("defer", qid), "w") as f:
                f.write("old\n")
        rig.start()
        for qid in qids:
            rig.wait_log(qid + r": to=<r\d+@a.example>, .*status=sent")
        # every result is in: the last rounds ended, their removals are
        # queued; SIGTERM now must not lose them
        proc = rig.proc
        rig.stop()
        assert proc.returncode == 0, (proc.returncode, rig.stderr())
        log = rig.log()
        for qid in qids:
            assert qid + ": removed" in log, qid
            assert rig.where(qid) is None, qid
            assert not os.path.exists(rig.path("defer", qid)), qid
        assert "warning" not in log and "fatal" not in log, log[-2000:]
        assert os.listdir(os.path.join(rig.spool, "active")) == []


# ---- pipelined requests (TRANSPORT_destination_pipeline_limit) -----------

PIPE_CF = ("local_destination_pipeline_limit = 4\n"
           "local_destination_concurrency_limit = 1\n")


def _qmgr_lines(rig, qid):
    return re.findall(r"postern/qmgr\[\d+\]: " + qid + r": to=<[^>]*>, .*", rig.log())


def test_pipeline_requests_in_order_and_results_matched():
    with QmgrRig(PIPE_CF) as rig:
        qids = [rig.write_message("a@far.example", ["bob@mx.test.example"]) for _ in range(6)]
        odd = qids[2]

        def decide(rcpt, req):
            if rec_get(req, "queue_id") == odd:
                return ("deferred", "4.2.2", "local", "mailbox full")
            return ("sent", "2.0.0", "local", "delivered to maildir")
        agent = FakeAgent(rig, "local", decide)
        rig.start()
        for q in qids:
            if q != odd:
                rig.wait_log(q + r": removed")
        wait_for(lambda: rig.where(odd) == "deferred", what="the deferred one in deferred/")
        # All six loaded before the first start: one connection carries four
        # requests, the next the other two; one connection at a time
        # (window 1), each request asked exactly once.
        assert [len(c) for c in agent.conns] == [4, 2], agent.conns
        assert sorted(q for c in agent.conns for q in c) == sorted(qids)
        assert agent.max_active == 1
        # Each result went to its own message: only the odd one deferred,
        # with the agent's reason, and qmgr logged nothing for any of them.
        data = open(rig.path("deferred", odd), "rb").read()
        assert b"R19:-bob@mx.test.example\n" in data or b"-bob@mx.test.example" in data
        assert re.search(r"postern/local\[\d+\]: " + odd + r": to=<bob@mx.test.example>, "
                         r".*status=deferred \(mailbox full\)", rig.log())
        for q in qids:
            assert _qmgr_lines(rig, q) == [], _qmgr_lines(rig, q)
        assert "is dead" not in rig.log()


def test_pipeline_limit_1_is_one_request_per_connection():
    with QmgrRig("local_destination_pipeline_limit = 1\n"
                 "local_destination_concurrency_limit = 1\n") as rig:
        qids = [rig.write_message("a@far.example", ["bob@mx.test.example"]) for _ in range(3)]
        agent = FakeAgent(rig, "local", sent())
        rig.start()
        for q in qids:
            rig.wait_log(q + r": removed")
        assert [len(c) for c in agent.conns] == [1, 1, 1], agent.conns


class ScriptAgent(FakeAgent):
    """Serves a connection's requests in order; script(i, req) gives the
    bytes answering the i-th request of the connection (0-based), or None
    to hang up instead."""

    def __init__(self, rig, name, script):
        super().__init__(rig, name, None)
        self.script = script

    def handle(self, conn):
        reader = IpcReader(conn)
        asked = []
        with self.lock:
            self.conns.append(asked)
        while True:
            if not reader.buf and not self._more(conn):
                return
            req = reader.record()
            asked.append(rec_get(req, "queue_id"))
            out = self.script(len(asked) - 1, req)
            if out is None:
                return
            conn.sendall(out)


def _answer(req, status="sent", rcpt=None):
    rcpt = rcpt or rec_get(req, "rcpt")
    return ipc_encode([("rcpt", rcpt), ("status", status), ("dsn", "2.0.0"),
                       ("relay", "local"), ("reason", "ok")]) + ipc_encode([("done", "1")])


def _pipeline_failure(script, reason_rx):
    """Four messages to one mailbox on one connection; the agent follows
    script.  The first is delivered, the other three deferred by qmgr with
    reason_rx, each logged once; feedback once (the window of 3 does not
    reach a dead destination, as three failures would)."""
    with QmgrRig("local_destination_pipeline_limit = 4\n"
                 "initial_destination_concurrency = 3\n"
                 "local_destination_concurrency_limit = 3\n") as rig:
        qids = [rig.write_message("a@far.example", ["bob@mx.test.example"]) for _ in range(4)]
        agent = ScriptAgent(rig, "local", script)
        rig.start()
        wait_for(lambda: len(agent.conns) == 1 and len(agent.conns[0]) >= 1,
                 what="the first connection")
        first = agent.conns[0][0]
        rig.wait_log(first + r": removed")
        rest = [q for q in qids if q != first]
        for q in rest:
            wait_for(lambda: rig.where(q) == "deferred", what=q + " deferred")
            lines = _qmgr_lines(rig, q)
            assert len(lines) == 1, lines
            assert re.search(r"to=<bob@mx.test.example>, relay=none, .*dsn=4.3.0, "
                             r"status=deferred \(" + reason_rx + r"\)", lines[0]), lines
        assert len(agent.conns) == 1, agent.conns
        assert "is dead" not in rig.log()
        assert rig.alive()


def test_pipeline_agent_gone_after_first_answer_defers_the_rest():
    _pipeline_failure(lambda i, req: _answer(req) if i == 0 else None,
                      r"delivery agent local: connection closed before the end of the results")


def test_pipeline_result_for_another_recipient_is_a_protocol_error():
    _pipeline_failure(lambda i, req: _answer(req) if i == 0 else _answer(req, rcpt="intruder@x"),
                      r"delivery agent protocol error: result for <intruder@x>, "
                      r"expected <bob@mx.test.example>")


def test_pipeline_early_done_is_a_protocol_error():
    _pipeline_failure(lambda i, req: _answer(req) if i == 0 else ipc_encode([("done", "1")]),
                      r"delivery agent protocol error: missing results")
