#!/usr/bin/python3
"""A tiny test service for the master, run as an absolute master.cf command.

Accepts clients on fd 3 (the listener the master hands over) one at a time,
greets with "220 echo PID", answers each line with "250 LINE", and "QUIT"
with "221 bye".  Reports idle/busy on fd 4 in the skeleton's format
(struct.pack("=ii", pid, status), 1 = idle, 2 = busy) so the master counts
it like a real daemon.  SIGTERM: exit at once when idle, after the current
client when busy (the skeleton's contract).  Extra arguments (after the
master's -n/-t/-c/-u/-r/-v/-o ones) are ignored, except "split-reports":
then a burst of 200 records (BUSY, IDLE, ... IDLE) goes out in one write
at start, and every report is written in two halves 0.2 s apart (a
record the master reads in part must still count).
"""
import os
import select
import signal
import socket
import struct
import sys
import time

IDLE, BUSY = 1, 2
state = {"busy": False, "stop": False}


SPLIT = "split-reports" in sys.argv[1:]


def report(status):
    record = struct.pack("=ii", os.getpid(), status)
    try:
        if SPLIT:
            os.write(4, record[:4])
            time.sleep(0.2)
            os.write(4, record[4:])
        else:
            os.write(4, record)
    except OSError:
        pass


def on_term(signum, frame):
    if not state["busy"]:
        os._exit(0)
    state["stop"] = True


def serve(conn):
    f = conn.makefile("rwb", buffering=0)
    conn.sendall(b"220 echo %d\r\n" % os.getpid())
    while True:
        line = f.readline()
        if not line:
            return
        line = line.rstrip(b"\r\n")
        if line.upper() == b"QUIT":
            conn.sendall(b"221 bye\r\n")
            return
        conn.sendall(b"250 " + line + b"\r\n")


def main():
    signal.signal(signal.SIGTERM, on_term)
    # The listener is shared with the master and the other children, and
    # non-blocking: wait with select(), never change its flags.
    listener = socket.socket(fileno=3)
    if SPLIT:
        burst = [BUSY, IDLE] * 100
        try:
            os.write(4, b"".join(struct.pack("=ii", os.getpid(), s) for s in burst))
        except OSError:
            pass
    report(IDLE)
    while not state["stop"]:
        try:
            select.select([listener], [], [])
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            continue
        conn.setblocking(True)
        state["busy"] = True
        report(BUSY)
        try:
            serve(conn)
        except OSError:
            pass
        finally:
            conn.close()
        state["busy"] = False
        report(IDLE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
