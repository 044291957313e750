"""Smoke tests of the benchmark tools (tests/bench/): bench_load against
bench_sink, and `bench.py` driving a small local and accept-only run
through a real instance.  The full `make bench` is not part of make check."""
import json
import os
import subprocess
import sys
import tempfile

import harness

BENCH = os.path.join(harness.BUILD, "bench")
BENCH_PY = os.path.join(harness.SRC, "tests", "bench", "bench.py")


def run(argv, timeout=60):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def kv(line):
    return dict(item.split("=", 1) for item in line.split())


def test_load_generator_and_sink_count_exactly():
    port = harness.free_port()
    with tempfile.TemporaryDirectory() as tmp:
        count = os.path.join(tmp, "count")
        store = os.path.join(tmp, "store")
        os.mkdir(store)
        sink = subprocess.Popen([os.path.join(BENCH, "bench_sink"), "-c", count, "-D", store,
                                 "127.0.0.1:%d" % port], stdout=subprocess.PIPE, text=True)
        try:
            harness.wait_for(lambda: harness.port_accepts(port), 10, what="bench_sink")
            # a connection per message, then pipelined on kept connections
            r = run([os.path.join(BENCH, "bench_load"), "-s", "3", "-m", "17", "-l", "1000",
                     "127.0.0.1:%d" % port])
            assert r.returncode == 0, r.stderr
            first = kv(r.stdout.strip())
            assert first["sent"] == "17" and first["failed"] == "0", first
            r = run([os.path.join(BENCH, "bench_load"), "-d", "-s", "2", "-m", "5", "-r", "3",
                     "-l", "300", "127.0.0.1:%d" % port])
            assert r.returncode == 0, r.stderr
            with open(count) as f:
                assert f.read().split() == ["22", "32"]      # 17+5 messages, 17+15 rcpts
        finally:
            sink.terminate()
            out, _ = sink.communicate(timeout=10)
        assert out.strip() == "messages=22 recipients=32", out
        files = sorted(os.listdir(store), key=int)
        assert len(files) == 22
        with open(os.path.join(store, files[0]), "rb") as f:
            msg = f.read()
        # stored as sent: about -l octets, ends in CR LF, the dot line not included
        assert 990 <= len(msg) <= 1000 and msg.endswith(b"\r\n") and b"\r\n.\r\n" not in msg
        assert msg.startswith(b"From: <bench@example.com>\r\n")


def test_load_generator_refusals_and_usage_errors():
    # nothing listening: every message fails, exit 1, counts say so
    port = harness.free_port()
    r = run([os.path.join(BENCH, "bench_load"), "-s", "2", "-m", "4", "127.0.0.1:%d" % port])
    assert r.returncode == 1
    assert kv(r.stdout.strip())["failed"] == "4"
    assert "connect" in r.stderr
    for argv in (["-s", "0"], ["-m", "x"], ["-l", "-1"], []):
        r = run([os.path.join(BENCH, "bench_load")] + argv + (["127.0.0.1:1"] if argv else []))
        assert r.returncode == 2 and "bench_load" in r.stderr, (argv, r.stderr)
    r = run([os.path.join(BENCH, "bench_load"), "nocolon"])
    assert r.returncode == 2
    r = run([os.path.join(BENCH, "bench_sink"), "127.0.0.1:notaport"])
    assert r.returncode == 2 and "bench_sink" in r.stderr


def test_bench_driver_local_and_accept_small_run():
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "results.json")
        r = run([sys.executable, BENCH_PY, "--build", harness.BUILD, "--sessions", "2",
                 "--messages", "20", "--size", "2048", "--scenarios", "local,accept",
                 "--rounds", "2", "--json", out], timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
        with open(out) as f:
            results = json.load(f)
    # two rounds, in turn: local accept local accept
    assert [(s["scenario"], s["round"]) for s in results["scenarios"]] == [
        ("local", 1), ("accept", 1), ("local", 2), ("accept", 2)]
    # the instances were kept in the graveyard until the end, then removed
    assert results["graveyard"].startswith(tempfile.gettempdir())
    assert not os.path.exists(results["graveyard"])
    rows = {s["scenario"]: s for s in results["scenarios"]}
    local, accept = rows["local"], rows["accept"]
    assert 0 <= local["delivered_when_accepted"] <= 20
    assert local["status"] == "ok" and local["accepted"] == 20 and local["delivered"] == 20
    assert local["e2e_rate"] > 0 and local["latency_p99"] >= local["latency_p50"] > 0
    for daemon in ("smtpd", "cleanup", "qmgr", "local"):
        assert local["daemons"][daemon]["cpu_s"] > 0, daemon
        assert local["daemons"][daemon]["peak_rss_mb"] > 0, daemon
    assert accept["status"] == "ok" and accept["queued"] == 20 and accept["e2e_rate"] is None
    assert "qmgr" not in accept["daemons"]
    assert "local" in r.stdout and "accept" in r.stdout        # the table


def test_sink_malformed_and_pipelined_input():
    import socket
    port = harness.free_port()
    with tempfile.TemporaryDirectory() as tmp:
        count = os.path.join(tmp, "count")
        store = os.path.join(tmp, "store")
        os.mkdir(store)
        sink = subprocess.Popen([os.path.join(BENCH, "bench_sink"), "-c", count, "-D", store,
                                 "127.0.0.1:%d" % port], stdout=subprocess.PIPE, text=True)
        try:
            harness.wait_for(lambda: harness.port_accepts(port), 10, what="bench_sink")
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            f = s.makefile("rb")

            def reply():
                lines = []
                while True:
                    line = f.readline()
                    assert line, "connection closed"
                    lines.append(line)
                    if line[3:4] != b"-":
                        return lines
            assert reply()[0].startswith(b"220 ")
            s.sendall(b"FOO bar\r\n" + b"X" * 10000 + b"\r\n\x00\x01\r\n")
            for _ in range(3):
                assert reply()[0].startswith(b"502 5.5.2"), "garbage must get 502"
            # everything pipelined in one write, bare LF line ends included
            s.sendall(b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\nDATA\r\n"
                      b"Subject: t\r\n\r\n..dot\r\n.x\nplain\r\n.\r\nQUIT\r\n")
            ehlo = reply()
            assert b"PIPELINING" in b"".join(ehlo)
            codes = [reply()[-1][:3] for _ in range(6)]
            assert codes == [b"250", b"250", b"250", b"354", b"250", b"221"], codes
            s.close()
            harness.wait_for(lambda: open(count).read().split() == ["1", "2"], 10,
                             what="the count file")
        finally:
            sink.terminate()
            sink.communicate(timeout=10)
        with open(os.path.join(store, "0"), "rb") as fh:
            assert fh.read() == b"Subject: t\r\n\r\n.dot\r\nx\nplain\r\n"
