"""test_queue_admin.py - `postern queue` (listing through showq, JSON
lines, surgery, cat) and `postern flush` on real queued mail.

Mail is kept in the queue with defer_transports = local (qmgr defers
local mail with "deferred transport" until a flush lifts it) or a relay
on a closed loopback port.  Messages in qmgr's active queue are tested
with the real qmgr and a delivery agent that waits for the test
(qmgr_rig.py), so an action can land while a delivery is running.
"""
import grp
import json
import os
import pwd
import re
import shutil
import subprocess
import threading
import time

import harness
from qmgr_rig import QmgrRig, FakeAgent, queue_file_bytes

MSG = "From: <%s>\r\nSubject: %s\r\n\r\nline one\r\nline two\r\n"


def send(inst, sender, rcpts, subject):
    with inst.smtp() as s:
        assert s.sendmail(sender, rcpts, MSG % (sender or "MAILER-DAEMON", subject)) == {}


def deferred_instance(**conf):
    base = {"local_recipient_maps": "", "defer_transports": "local"}
    base.update(conf)
    return harness.Instance(conf=base)


def queue_json(inst, *args):
    r = inst.postern("queue", "-j", *args)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def wait_deferred(inst, subject_count):
    """Wait until `subject_count` messages sit in deferred/ with a reason."""
    def ready():
        msgs = queue_json(inst)
        ok = [m for m in msgs if m["queue_name"] == "deferred"
              and all(r.get("delay_reason") for r in m["recipients"])]
        return msgs if len(ok) == subject_count else None
    return harness.wait_for(ready, 30, what="%d deferred messages" % subject_count)


def queued_ids(inst, sender):
    return [m["queue_id"] for m in queue_json(inst) if m["sender"] == sender]


def test_list_text_and_json():
    with deferred_instance() as inst:
        r = inst.postern("queue")
        assert r.returncode == 0, r.stderr
        assert r.stdout == "Mail queue is empty\n"
        assert r.stderr == ""                   # through showq, no fallback
        send(inst, "alice@example.org", ["bob@localhost", "carol@localhost"], "first")
        send(inst, "", ["dave@localhost"], "bounce-like")
        msgs = wait_deferred(inst, 2)
        by_sender = {m["sender"]: m for m in msgs}
        first = by_sender["alice@example.org"]
        assert first["queue_name"] == "deferred"
        assert re.fullmatch(r"[0-9A-F]{15,30}", first["queue_id"])
        assert first["message_size"] > len("line one\r\nline two\r\n")
        assert abs(first["arrival_time"] - int(first["queue_id"][:9], 16)) <= 1
        assert [x["address"] for x in first["recipients"]] == ["bob@localhost", "carol@localhost"]
        assert all(x["delay_reason"] == "deferred transport" for x in first["recipients"])
        assert by_sender[""]["recipients"][0]["address"] == "dave@localhost"
        # The text layout: header, id, size, sender, reason, recipients, total.
        r = inst.postern("queue")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].startswith("-Queue ID-") and "-Sender/Recipient-" in lines[0]
        head = [l for l in lines if l.startswith(first["queue_id"])]
        assert len(head) == 1
        assert re.match(r"%s\s+%d \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d\s+alice@example.org$"
                        % (first["queue_id"], first["message_size"]), head[0]), head[0]
        i = lines.index(head[0])
        assert lines[i + 1].strip() == "(deferred transport)"
        assert lines[i + 2].strip() == "bob@localhost"
        assert lines[i + 3].strip() == "carol@localhost"
        assert any(l.endswith("MAILER-DAEMON") for l in lines)
        assert re.fullmatch(r"-- \d+ Kbytes in 2 Requests\.", lines[-1]), lines[-1]
        # Selection: by id, by sender address and domain, by recipient.
        assert [m["queue_id"] for m in queue_json(inst, first["queue_id"])] == [first["queue_id"]]
        assert len(queue_json(inst, "ALL")) == 2
        assert [m["sender"] for m in queue_json(inst, "--from", "alice@EXAMPLE.org")] == \
            ["alice@example.org"]
        assert [m["sender"] for m in queue_json(inst, "--from=example.org")] == \
            ["alice@example.org"]
        assert [m["sender"] for m in queue_json(inst, "--from", "<>")] == [""]
        assert [m["sender"] for m in queue_json(inst, "--to", "dave@localhost")] == [""]
        assert queue_json(inst, "--to", "nobody.example") == []
        r = inst.postern("queue", "--to", "nobody.example")
        assert r.stdout == "Mail queue is empty\n"


def test_json_escapes_odd_bytes():
    with deferred_instance() as inst:
        with inst.smtp() as s:
            s.ehlo()
            # A quoted local part with a backslash and quote, and Latin-1
            # bytes in the sender's local part (smtplib sends raw bytes).
            s.mail('"we\\"ird"@example.org')
            code, _ = s.rcpt("bob@localhost")
            assert code == 250
            code, _ = s.data(b"Subject: odd\r\n\r\nx\r\n")
            assert code == 250
        msgs = wait_deferred(inst, 1)
        assert msgs[0]["sender"] == '"we\\"ird"@example.org'


def test_ordinary_user_lists_through_showq_only():
    if not harness.is_root():
        return          # needs another account and a setgid copy of postern
    with deferred_instance() as inst:
        send(inst, "alice@example.org", ["bob@localhost"], "visible")
        msgs = wait_deferred(inst, 1)
        qid = msgs[0]["queue_id"]
        spool = os.path.join(inst.dir, "spool")
        nobody = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]
        # nobody cannot read the spool...
        r = subprocess.run(nobody + ["ls", os.path.join(spool, "deferred", qid[13])],
                           capture_output=True, text=True)
        assert r.returncode != 0
        # ...nor reach public/ with a plain postern: one clear line, exit 1.
        r = subprocess.run(nobody + [harness.POSTERN, "-c", inst.dir, "queue"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1
        assert r.stderr.count("\n") == 1 and "showq" in r.stderr, r.stderr
        # A postern installed setgid setgid_group (as postqueue is) lists.
        public_gid = os.stat(os.path.join(spool, "public")).st_gid    # setgid_group
        bindir = os.path.join(inst.tmp, "bin")
        os.mkdir(bindir)
        os.chmod(bindir, 0o755)
        copy = os.path.join(bindir, "postern")
        shutil.copy(harness.POSTERN, copy)
        os.chown(copy, 0, public_gid)
        os.chmod(copy, 0o2755)
        r = subprocess.run(nobody + [copy, "-c", inst.dir, "queue", "-j"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        listed = [json.loads(l) for l in r.stdout.splitlines()]
        assert [m["queue_id"] for m in listed] == [qid]
        assert listed[0]["recipients"][0]["delay_reason"] == "deferred transport"
        # The group does not let nobody change the queue.
        r = subprocess.run(nobody + [copy, "-c", inst.dir, "queue", "delete", "ALL"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1
        assert "permission denied" in r.stderr and r.stderr.count("\n") == 1, r.stderr
        r = subprocess.run(nobody + [copy, "-c", inst.dir, "queue", "cat", qid],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "permission denied" in r.stderr
        assert queued_ids(inst, "alice@example.org") == [qid]
        # Anybody who can list may flush (postqueue -f): it is delivered.
        r = subprocess.run(nobody + [copy, "-c", inst.dir, "flush"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        inst.wait_log(r"flush: retrying deferred mail")
        harness.wait_for(lambda: inst.mailbox("bob"), 30, what="delivery after the flush")


def test_hold_release_delete_flush():
    with deferred_instance() as inst:
        send(inst, "a@example.org", ["alice@localhost"], "one")
        send(inst, "b@example.org", ["alice@localhost"], "two")
        send(inst, "c@example.org", ["alice@localhost"], "three")
        wait_deferred(inst, 3)
        [one] = queued_ids(inst, "a@example.org")
        [three] = queued_ids(inst, "c@example.org")
        # hold: the '!' mark, queue hold, never delivered by a flush
        r = inst.postern("queue", "hold", one)
        assert r.returncode == 0, r.stderr
        assert "Placed on hold: 1 message" in r.stderr
        inst.wait_log(r"postern/queue\[\d+\]: %s: placed on hold" % one)
        [m] = queue_json(inst, one)
        assert m["queue_name"] == "hold"
        assert any(l.startswith(one + "!") for l in inst.postern("queue").stdout.splitlines())
        assert os.path.exists(os.path.join(inst.dir, "spool", "hold", one))
        # delete by sender: the queue file and its defer log go
        defer_log = os.path.join(inst.dir, "spool", "defer", three[13], three)
        assert os.path.exists(defer_log)
        r = inst.postern("queue", "delete", "--from", "c@example.org")
        assert r.returncode == 0, r.stderr
        assert "Deleted: 1 message" in r.stderr
        inst.wait_log(r"%s: removed" % three)
        assert not os.path.exists(defer_log)
        assert queued_ids(inst, "c@example.org") == []
        # flush: only "two" is delivered
        r = inst.postern("flush")
        assert r.returncode == 0, r.stderr
        inst.wait_log(r"flush: retrying deferred mail")
        inst.wait_log(r"to=<alice@localhost>, relay=local, .*status=sent", timeout=30)
        harness.wait_for(lambda: queued_ids(inst, "b@example.org") == [], 30,
                         what="two delivered")
        mails = inst.mailbox("alice")
        assert len(mails) == 1 and "Subject: two" in mails[0]
        assert [m["queue_name"] for m in queue_json(inst)] == ["hold"]
        # release then flush: "one" is delivered too; the queue is empty
        r = inst.postern("queue", "release", "ALL")
        assert r.returncode == 0, r.stderr
        assert "Released from hold: 1 message" in r.stderr
        inst.wait_log(r"%s: released from hold" % one)
        assert inst.postern("flush").returncode == 0
        harness.wait_for(lambda: len(inst.mailbox("alice")) == 2, 30, what="one delivered")
        harness.wait_for(lambda: inst.postern("queue").stdout == "Mail queue is empty\n", 30,
                         what="an empty queue")


def test_requeue_gets_a_new_attempt_at_once():
    """requeue passes the message through cleanup again (via requeue/ and
    pickup): a new queue id, at once a new attempt, the old id gone."""
    with deferred_instance() as inst:
        send(inst, "a@example.org", ["alice@localhost"], "again")
        wait_deferred(inst, 1)
        [qid] = queued_ids(inst, "a@example.org")
        assert len(re.findall(qid + r": from=<a@example.org>.*\(queue active\)", inst.log())) == 1
        r = inst.postern("queue", "requeue", qid)
        assert r.returncode == 0, r.stderr
        assert "Requeued: 1 message" in r.stderr
        m = inst.wait_log(r"pickup\[\d+\]: %s: requeued as ([0-9A-F]+)$" % qid, 30)
        new = m.group(1)
        assert new != qid
        inst.wait_log(new + r": from=<a@example.org>.*\(queue active\)", 30)
        [msg] = wait_deferred(inst, 1)
        assert msg["queue_id"] == new
        assert msg["recipients"][0]["address"] == "alice@localhost"
        assert not os.path.exists(os.path.join(inst.dir, "spool", "defer", qid[13], qid))
        assert os.listdir(os.path.join(inst.dir, "spool", "requeue")) == []


def test_requeue_applies_changed_rewriting_and_checks():
    """What cleanup does is done again with the configuration of the time
    of the requeue, as with Postfix's postsuper -r: a sender_canonical_maps
    added later rewrites the sender of queued mail; a message the
    header_checks added later REJECT is not lost but put on hold with its
    old queue id; done recipients are not repeated; DSN parameters stay."""
    with deferred_instance() as inst:
        with inst.smtp() as s:
            s.ehlo("client.example")
            s.mail("a@example.org", ["RET=HDRS", "ENVID=env-42"])
            assert s.rcpt("alice@localhost", ["NOTIFY=SUCCESS,FAILURE"])[0] == 250
            assert s.rcpt("bob@localhost")[0] == 250
            assert s.data(MSG % ("a@example.org", "rewrite me"))[0] == 250
        send(inst, "c@example.org", ["carol@localhost"], "reject me")
        wait_deferred(inst, 2)
        [old] = queued_ids(inst, "a@example.org")
        [rejected] = queued_ids(inst, "c@example.org")
        with open(os.path.join(inst.dir, "canonical"), "w") as f:
            f.write("a@example.org renamed@example.net\n")
        with open(os.path.join(inst.dir, "header_checks"), "w") as f:
            f.write("/^Subject: reject me/ REJECT no longer welcome\n")
        before = len(re.findall(r"reload -- version", inst.log()))
        inst.edit_main_cf({"sender_canonical_maps": "texthash:%s/canonical" % inst.dir,
                           "header_checks": "regexp:%s/header_checks" % inst.dir})
        assert inst.postern("reload").returncode == 0
        harness.wait_for(lambda: len(re.findall(r"reload -- version", inst.log())) > before,
                         30, what="the reload")
        r = inst.postern("queue", "requeue", "ALL")
        assert r.returncode == 0, r.stderr
        assert "Requeued: 2 messages" in r.stderr
        new = inst.wait_log(r"pickup\[\d+\]: %s: requeued as ([0-9A-F]+)$" % old, 30).group(1)
        inst.wait_log(r"warning: requeue/%s: cleanup status 5: .*no longer welcome; "
                      r"moved to hold/%s$" % (rejected, rejected), 30)

        def settled():
            msgs = {m["queue_id"]: m for m in queue_json(inst)}
            if new in msgs and msgs[new]["queue_name"] == "deferred" \
                    and rejected in msgs and msgs[rejected]["queue_name"] == "hold":
                return msgs
            return None
        msgs = harness.wait_for(settled, 30, what="the new message deferred, the other held")
        assert old not in msgs and len(msgs) == 2, msgs
        assert msgs[new]["sender"] == "renamed@example.net"
        assert [x["address"] for x in msgs[new]["recipients"]] == ["alice@localhost",
                                                                   "bob@localhost"]
        assert msgs[rejected]["sender"] == "c@example.org"
        envelope = inst.postern("queue", "cat", "-e", new).stdout
        assert "env-42" in envelope and "HDRS" in envelope, envelope
        assert "SUCCESS,FAILURE" in envelope, envelope
        # a held message released is not passed through cleanup again
        assert inst.postern("queue", "release", rejected).returncode == 0
        harness.wait_for(lambda: [m["queue_name"] for m in queue_json(inst)
                                  if m["queue_id"] == rejected] == ["deferred"], 30,
                         what="the released message deferred again")


def test_cat_shows_envelope_headers_body():
    with deferred_instance() as inst:
        send(inst, "a@example.org", ["alice@localhost", "bob@localhost"], "cat me")
        wait_deferred(inst, 1)
        [qid] = queued_ids(inst, "a@example.org")
        r = inst.postern("queue", "cat", qid)
        assert r.returncode == 0, r.stderr
        out = r.stdout.splitlines()
        path = "deferred/%s/%s" % (qid[13], qid)
        assert out[0] == "*** ENVELOPE RECORDS %s ***" % path
        assert "sender: a@example.org" in out
        assert "recipient: alice@localhost" in out and "recipient: bob@localhost" in out
        assert "*** MESSAGE CONTENTS %s ***" % path in out
        assert "Subject: cat me" in out and "line two" in out
        assert out[-1] == "*** MESSAGE FILE END %s ***" % path
        r = inst.postern("queue", "cat", "-h", qid)
        assert r.returncode == 0
        assert "Subject: cat me" in r.stdout and "line one" not in r.stdout
        assert "sender:" not in r.stdout
        r = inst.postern("queue", "cat", "-b", qid)
        assert r.returncode == 0
        assert r.stdout.splitlines() == ["*** BODY SEGMENT %s ***" % path, "line one", "line two"]
        r = inst.postern("queue", "cat", "-e", qid)
        assert "recipient: alice@localhost" in r.stdout and "Subject:" not in r.stdout


def test_malformed_arguments():
    with deferred_instance() as inst:
        cases = [
            (("queue", "delete"), "no messages selected"),
            (("queue", "delete", "not-an-id"), "bad queue id"),
            (("queue", "hold", "--from"), "--from needs"),
            (("queue", "hold", "--to", "a b"), "bad character"),
            (("queue", "hold", "--to", "user@"), "no domain"),
            (("queue", "--bogus"), "unknown option"),
            (("queue", "frobnicate"), "unknown subcommand"),
            (("queue", "cat"), "usage"),
            (("queue", "cat", "-x", "0692A3F1B0C2E41A7F"), "unknown option"),
            (("queue", "cat", "../../etc/passwd"), "bad queue id"),
            (("queue", "cat", "06925A3F1B0C2E41A7F"), "no such message"),
            (("queue", "delete", "06925A3F1B0C2E41A7F"), "no such message"),
            (("flush", "now"), "usage"),
        ]
        for args, text in cases:
            r = inst.postern(*args)
            assert r.returncode == 1, (args, r.stderr)
            assert text in r.stderr, (args, r.stderr)
            assert r.stderr.count("\n") == 1, (args, r.stderr)
            assert r.stderr.startswith("postern: "), (args, r.stderr)


def test_flush_when_down_is_one_line():
    with harness.Instance(start=False) as inst:
        r = inst.postern("flush")
        assert r.returncode == 1
        assert "mail system is down" in r.stderr and r.stderr.count("\n") == 1, r.stderr
        # The owner may still list: directly from the spool, with a warning.
        r = inst.postern("queue")
        assert r.returncode == 0, r.stderr
        assert "reading the queue directly" in r.stderr
        assert r.stdout == "Mail queue is empty\n"


# ---- messages in qmgr's active queue (real qmgr, gated agent) ----------

def rig_postern(rig, *args):
    env = dict(os.environ, POSTERN_CONFIG_DIR=rig.conf)
    return subprocess.run([harness.POSTERN] + list(args), capture_output=True, text=True,
                          timeout=60, env=env)


def test_delete_active_message_cancels_waiting_delivery():
    # smtp maxproc 1: the first destination's delivery runs (held by the
    # gate), the second waits; deleting the message must cancel the wait.
    with QmgrRig(transports=("local", "relay"),
                 master_extra="smtp unix - - n - 1 smtp\n") as rig:
        gate = threading.Event()
        agent = FakeAgent(rig, "smtp", lambda rcpt, req: ("sent", "2.0.0", "mx[192.0.2.1]", "ok"),
                          gate=gate)
        qid = rig.write_message("a@far.example", ["x@one.example", "y@two.example"])
        rig.start()
        harness.wait_for(lambda: agent.active == 1, 20, what="a running delivery")
        assert rig.where(qid) == "active"
        r = rig_postern(rig, "queue", "delete", qid)
        assert r.returncode == 0, r.stderr
        # Still running: nothing applied yet, the file stays in active/.
        assert rig.where(qid) == "active"
        gate.set()
        rig.wait_log(qid + r": removed", timeout=20)
        assert rig.where(qid) is None
        assert len(agent.requests) == 1         # the waiting one never went out
        assert not os.path.exists(rig.path("defer", qid))
        assert not re.search(qid + r": .*status=deferred", rig.log())


def test_delete_of_messages_whose_requests_are_already_pipelined():
    """local_destination_pipeline_limit 2, concurrency 1, three messages
    for one mailbox: qmgr writes two requests on the first connection and
    the third waits.  Deleting all three while the agent still works on
    the first: the two written requests count as running (nothing is
    withdrawn from the agent; each delete is applied when its result
    comes in), the third is cancelled at once and never asked for, and
    nothing is deferred."""
    cf = "local_destination_pipeline_limit = 2\nlocal_destination_concurrency_limit = 1\n"
    with QmgrRig(cf) as rig:
        gate = threading.Event()
        agent = FakeAgent(rig, "local",
                          lambda rcpt, req: ("sent", "2.0.0", "local", "delivered to maildir"),
                          gate=gate)
        qids = [rig.write_message("a@far.example", ["bob@mx.test.example"]) for _ in range(3)]
        rig.start()
        harness.wait_for(lambda: agent.active == 1, 20, what="the first request in the agent")
        r = rig_postern(rig, "queue", "delete", *qids)
        assert r.returncode == 0, r.stderr
        # the waiting one goes at once; the two in the agent's hands stay
        harness.wait_for(lambda: [rig.where(q) for q in qids].count(None) == 1, 20,
                         what="the message not yet asked for to be deleted")
        [gone] = [q for q in qids if rig.where(q) is None]
        assert sorted(rig.where(q) for q in qids if q != gone) == ["active", "active"]
        gate.set()
        for q in qids:
            rig.wait_log(q + r": removed", timeout=20)
            assert rig.where(q) is None
        assert len(agent.conns) == 1 and len(agent.conns[0]) == 2, agent.conns
        assert gone not in agent.conns[0]
        assert len(agent.requests) == 2
        assert "status=deferred" not in rig.log()
        for q in qids:
            assert not os.path.exists(rig.path("defer", q))


def test_hold_active_message_lands_in_hold():
    with QmgrRig(transports=("local", "relay"),
                 master_extra="smtp unix - - n - 1 smtp\n") as rig:
        gate = threading.Event()
        agent = FakeAgent(rig, "smtp",
                          lambda rcpt, req: ("deferred", "4.4.1", "none", "try later"), gate=gate)
        qid = rig.write_message("a@far.example", ["x@one.example"])
        rig.start()
        harness.wait_for(lambda: agent.active == 1, 20, what="a running delivery")
        r = rig_postern(rig, "queue", "hold", "--to", "one.example")
        assert r.returncode == 0, r.stderr
        gate.set()
        rig.wait_log(qid + r": placed on hold", timeout=20)
        assert rig.where(qid) == "hold"
        # listed directly (no showq here) with the hold mark and the reason
        r = rig_postern(rig, "queue", "-j")
        assert r.returncode == 0, r.stderr
        [m] = [json.loads(l) for l in r.stdout.splitlines()]
        assert m["queue_name"] == "hold"
        assert m["recipients"] == [{"address": "x@one.example", "delay_reason": "try later"}]
        # a flush does not touch held mail
        rig.flush()
        rig.wait_log(r"flush: retrying deferred mail")
        assert rig.where(qid) == "hold" and len(agent.requests) == 1


def test_requeue_active_message_goes_to_requeue_at_round_end():
    """requeue of an active message: the running delivery finishes and is
    recorded (done recipients are marked), then qmgr moves the file to
    requeue/ for pickup (absent in this rig) to pass through cleanup."""
    with QmgrRig(transports=("local", "relay"),
                 master_extra="smtp unix - - n - 1 smtp\n") as rig:
        gate = threading.Event()
        agent = FakeAgent(rig, "smtp", lambda rcpt, req: ("sent", "2.0.0", "mx[192.0.2.1]", "ok"),
                          gate=gate)
        qid = rig.write_message("a@far.example", ["x@one.example", "y@two.example"])
        rig.start()
        harness.wait_for(lambda: agent.active == 1, 20, what="a running delivery")
        r = rig_postern(rig, "queue", "requeue", qid)
        assert r.returncode == 0, r.stderr
        assert rig.where(qid) == "active"
        gate.set()
        rig.wait_log(qid + r": requeued", timeout=20)
        assert rig.where(qid) == "requeue"
        assert len(agent.requests) == 1         # the waiting one was cancelled
        # found there by id: cat shows it, requeue again is nothing to do
        r = rig_postern(rig, "queue", "cat", "-e", qid)
        assert r.returncode == 0 and "y@two.example" in r.stdout, r.stdout + r.stderr
        r = rig_postern(rig, "queue", "requeue", qid)
        assert r.returncode == 0 and "Requeued" not in r.stderr, r.stderr
        with open(rig.path("requeue", qid), "rb") as f:
            data = f.read()
        # the delivered recipient is done, the cancelled one still pending
        assert len(re.findall(rb"\nR\d+:D", data)) == 1, data
        assert len(re.findall(rb"\nR\d+:-", data)) == 1, data


def test_active_message_is_marked_while_delivering():
    with QmgrRig(transports=("local", "relay"),
                 master_extra="smtp unix - - n - 1 smtp\n") as rig:
        gate = threading.Event()
        agent = FakeAgent(rig, "smtp", lambda rcpt, req: ("sent", "2.0.0", "mx", "ok"), gate=gate)
        qid = rig.write_message("a@far.example", ["x@one.example"])
        rig.start()
        harness.wait_for(lambda: agent.active == 1, 20, what="a running delivery")
        r = rig_postern(rig, "queue")
        assert r.returncode == 0, r.stderr
        assert any(l.startswith(qid + "*") for l in r.stdout.splitlines()), r.stdout
        gate.set()
        rig.wait_log(qid + r": removed", timeout=20)


def write_deferred(inst, n, owner, queue="deferred"):
    """n queue files straight into deferred/ (or QUEUE), due in an hour
    (qmgr leaves them alone), owned by the instance's account."""
    spool = os.path.join(inst.dir, "spool")
    ids = []
    base = int(time.time())
    for i in range(n):
        data, sec = queue_file_bytes("s%d@example.org" % i, ["r%d@example.net" % i],
                                     ["Subject: %d" % i, "", "body"], arrival=base)
        tmp = os.path.join(spool, "deferred", ".tmp-test-%d" % i)
        with open(tmp, "wb") as f:
            f.write(data)
        qid = "%09X%05X%X" % (sec, i % 1000000, os.stat(tmp).st_ino)
        path = os.path.join(spool, queue, qid[13], qid) if queue == "deferred" \
            else os.path.join(spool, queue, qid)
        # due time and owner set before the rename: a qmgr scan must never
        # see the file due now (it would take it) or owned by root
        os.utime(tmp, (base + 3600, base + 3600))
        if owner is not None:
            os.chown(tmp, owner.pw_uid, owner.pw_gid)
        os.rename(tmp, path)
        ids.append(qid)
    return ids


def test_hostile_bytes_in_addresses():
    """Queue files may carry any byte in addresses: the text listing shows
    no control character, the JSON stays valid UTF-8."""
    with harness.Instance() as inst:
        spool = os.path.join(inst.dir, "spool")
        data, sec = queue_file_bytes(b"caf\xe9\x1b[2J@example.org", ["bob\x1b]0;x\x07@example.net"],
                                     ["Subject: x", "", "y"])
        tmp = os.path.join(spool, "deferred", ".tmp-odd")
        with open(tmp, "wb") as f:
            f.write(data)
        qid = "%09X%05X%X" % (sec, 1, os.stat(tmp).st_ino)
        path = os.path.join(spool, "deferred", qid[13], qid)
        os.utime(tmp, (sec + 3600, sec + 3600))     # not due: qmgr leaves it
        if harness.is_root():
            owner = pwd.getpwnam(inst.user)
            os.chown(tmp, owner.pw_uid, owner.pw_gid)
        os.rename(tmp, path)
        [m] = queue_json(inst)
        assert m["sender"] == "caf\ufffd\x1b[2J@example.org"
        assert m["recipients"][0]["address"] == "bob\x1b]0;x\x07@example.net"
        r = subprocess.run(inst._as_user([harness.POSTERN, "-c", inst.dir, "queue"]),
                           capture_output=True, timeout=60)     # bytes: \xe9 stays raw
        assert r.returncode == 0, r.stderr
        assert b"\x1b" not in r.stdout and b"\x07" not in r.stdout
        assert b"caf\xe9?[2J@example.org" in r.stdout and b"bob?]0;x?@example.net" in r.stdout


def test_large_queue_streams_through_showq():
    with harness.Instance() as inst:
        owner = pwd.getpwnam(inst.user) if harness.is_root() else None
        ids = write_deferred(inst, 3000, owner)
        start = time.monotonic()
        r = inst.postern("queue", "-j", timeout=120)
        elapsed = time.monotonic() - start
        assert r.returncode == 0 and r.stderr == "", r.stderr
        listed = [json.loads(l) for l in r.stdout.splitlines()]
        assert sorted(m["queue_id"] for m in listed) == sorted(ids)
        assert all(m["recipients"][0]["address"] == "r%s@example.net" % m["sender"][1:].split("@")[0]
                   for m in listed)
        print("listed 3000 messages in %.2fs" % elapsed)
        r = inst.postern("queue", timeout=120)
        assert r.stdout.splitlines()[-1] == "-- %d Kbytes in 3000 Requests." \
            % ((sum(m["message_size"] for m in listed) + 1023) // 1024)
        # bulk surgery by domain of the sender: every one of them
        r = inst.postern("queue", "hold", "--from", "example.org", timeout=120)
        assert r.returncode == 0 and "Placed on hold: 3000 messages" in r.stderr, r.stderr
        assert {m["queue_name"] for m in queue_json(inst)} == {"hold"}
        r = inst.postern("queue", "delete", "ALL", timeout=120)
        assert r.returncode == 0 and "Deleted: 3000 messages" in r.stderr, r.stderr
        assert inst.postern("queue").stdout == "Mail queue is empty\n"


def test_root_instance_chrooted_showq():
    if not harness.is_root():
        return
    with harness.Instance(as_root=True, conf={"local_recipient_maps": "",
                                              "defer_transports": "local"}) as inst:
        send(inst, "a@example.org", ["root@localhost"], "root instance")
        msgs = wait_deferred(inst, 1)
        assert msgs[0]["sender"] == "a@example.org"
        r = inst.postern("queue")
        assert r.returncode == 0 and r.stderr == "", r.stderr     # showq, chrooted
        assert "(deferred transport)" in r.stdout
        # an ordinary user through a setgid-postdrop postern
        bindir = os.path.join(inst.tmp, "bin")
        os.mkdir(bindir)
        os.chmod(bindir, 0o755)
        os.chmod(inst.tmp, 0o755)
        copy = os.path.join(bindir, "postern")
        shutil.copy(harness.POSTERN, copy)
        os.chown(copy, 0, grp.getgrnam("postdrop").gr_gid)
        os.chmod(copy, 0o2755)
        nobody = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]
        r = subprocess.run(nobody + [copy, "-c", inst.dir, "queue", "-j"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert [json.loads(l)["queue_id"] for l in r.stdout.splitlines()] == \
            [msgs[0]["queue_id"]]
        # root changes it; the files keep their owner
        r = inst.postern("queue", "hold", "ALL")
        assert r.returncode == 0, r.stderr
        held = os.path.join(inst.dir, "spool", "hold", msgs[0]["queue_id"])
        assert pwd.getpwuid(os.stat(held).st_uid).pw_name == "postern"
        assert inst.postern("queue", "delete", msgs[0]["queue_id"]).returncode == 0
        assert not os.path.exists(held)


def test_concurrent_surgery_while_qmgr_is_down():
    """Two `postern queue` runs at once with the mail system stopped: the
    second waits for the first's lock on active/ instead of taking it for
    a running qmgr; every message is handled exactly once."""
    with harness.Instance() as inst:
        assert inst.postern("stop").returncode == 0
        owner = pwd.getpwnam(inst.user) if harness.is_root() else None
        ids = write_deferred(inst, 1000, owner, queue="active")   # a crash's leftovers
        procs = [subprocess.Popen(inst._as_user([harness.POSTERN, "-c", inst.dir, "queue",
                                                 "hold", "ALL"]),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        counts = [int(m.group(1)) for _, err in outs
                  for m in [re.search(r"Placed on hold: (\d+) message", err)] if m]
        assert sum(counts) == 1000, outs
        assert sorted(os.listdir(os.path.join(inst.dir, "spool", "hold"))) == sorted(ids)


def test_maildrop_mail_is_listed_before_pickup():
    """sendmail's mail waits in maildrop/ while pickup is not running;
    the listing shows it (queue_name maildrop), and once pickup runs it
    moves on and is delivered."""
    with harness.Instance(conf={"local_recipient_maps": ""}) as inst:
        path = os.path.join(inst.dir, "master.cf")
        text = open(path).read()
        assert re.search(r"^pickup ", text, re.M)
        with open(path, "w") as f:
            f.write(re.sub(r"^pickup ", "#pickup ", text, flags=re.M))
        assert inst.postern("reload").returncode == 0
        harness.wait_for(lambda: not os.path.exists(os.path.join(inst.dir, "spool", "public",
                                                                 "pickup")), 20,
                         what="pickup's socket gone")
        r = inst.run([os.path.join(inst.build, "bin", "sendmail"), "-C", inst.dir,
                      "-f", "me@example.org", "alice@localhost"],
                     input="Subject: dropped\n\nbody\n")
        assert r.returncode == 0, r.stderr
        [m] = queue_json(inst)
        assert m["queue_name"] == "maildrop" and m["sender"] == "me@example.org"
        assert m["recipients"] == [{"address": "alice@localhost"}]
        assert m["message_size"] > 0
        assert any(l.startswith(m["queue_id"] + " ") and l.endswith("me@example.org")
                   for l in inst.postern("queue").stdout.splitlines())
        # The listing reads maildrop files with pickup's reader
        # (common/maildrop.c): the T record's time is the arrival time, and
        # a file pickup would move to corrupt/ is not listed.
        maildrop = os.path.join(inst.dir, "spool", "maildrop")
        owner = os.stat(maildrop)

        def rec(t, data):
            return t.encode() + str(len(data)).encode() + b":" + data.encode() + b"\n"

        def drop_in(name, data):
            tmp = os.path.join(inst.dir, name)
            with open(tmp, "wb") as f:
                f.write(data)
            os.lchown(tmp, owner.st_uid, owner.st_gid)
            os.rename(tmp, os.path.join(maildrop, name))
        drop_in("06925A3F100001101", rec("V", "1") + rec("T", "1600000000 0")
                + rec("S", "") + rec("R", "bob@localhost") + rec("R", "carol@localhost")
                + rec("L", "Subject: crafted") + rec("E", ""))
        drop_in("06925A3F100002102", rec("V", "1") + rec("S", "x@example.org")
                + rec("R", "<bad>>") + rec("E", ""))
        drop_in("06925A3F100003103", rec("V", "1") + rec("S", "y@example.org")
                + rec("R", "alice") + rec("S", "z@example.org") + rec("E", ""))
        listed = {x["queue_id"]: x for x in queue_json(inst)}
        assert sorted(listed) == sorted([m["queue_id"], "06925A3F100001101"]), listed
        crafted = listed["06925A3F100001101"]
        assert crafted["arrival_time"] == 1600000000
        assert crafted["sender"] == ""
        assert crafted["recipients"] == [{"address": "bob@localhost"},
                                         {"address": "carol@localhost"}]
        assert abs(m["arrival_time"] - time.time()) < 600, m
        with open(path, "w") as f:
            f.write(text)
        assert inst.postern("reload").returncode == 0
        harness.wait_for(lambda: len(inst.mailbox("alice")) == 1, 30, what="delivery")
        harness.wait_for(lambda: len(os.listdir(os.path.join(inst.dir, "spool", "corrupt"))) == 2,
                         30, what="the two malformed files in corrupt/")


PROBE = r"""
import socket, sys
sys.path.insert(0, sys.argv[1])
from qmgr_rig import ipc_encode, IpcReader
def call(path, data):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(path)
    s.sendall(data)
    try:
        return IpcReader(s).record()
    except EOFError:
        return "closed"
spool = sys.argv[2]
print(call(spool + "/public/qmgr", ipc_encode([("request", "admin"), ("action", "delete"),
                                                ("queue_id", sys.argv[3])])))
print(call(spool + "/public/showq", b"request 4\nlist\n\n"[:9] + b"garbage\x00\n\n"))
print(call(spool + "/public/showq", ipc_encode([("request", "frob")])))
"""


def test_public_sockets_refuse_outsiders_and_garbage():
    """Reaching public/ (the setgid group) does not allow queue changes:
    qmgr checks the peer's uid.  showq answers malformed and unknown
    requests without harm, and keeps serving."""
    if not harness.is_root():
        return
    with deferred_instance() as inst:
        send(inst, "a@example.org", ["bob@localhost"], "keep me")
        [m] = wait_deferred(inst, 1)
        spool = os.path.join(inst.dir, "spool")
        gid = os.stat(os.path.join(spool, "public")).st_gid
        outsider = ["setpriv", "--reuid", "nobody", "--regid", str(gid), "--clear-groups"]
        r = subprocess.run(outsider + ["/usr/bin/python3", "-c", PROBE, harness.HERE, spool,
                                       m["queue_id"]],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        out = r.stdout.splitlines()
        assert "('status', b'1')" in out[0] and "permission denied" in out[0], out
        assert out[1] == "closed", out                  # malformed: dropped
        assert "('status', b'1')" in out[2] and "unknown request" in out[2], out
        inst.wait_log(r"postern/showq\[\d+\]: warning: reading request: ")
        assert [x["queue_id"] for x in queue_json(inst)] == [m["queue_id"]]
