"""smtp_helpers.py - the outside world of the smtp delivery agent's tests:
a real DNS server (dnsmasq) and real receiving SMTP servers (aiosmtpd from
Debian's python3-aiosmtpd) on several loopback addresses.

    with DnsServer(mx={"mx.test": [(10, "mx1.test"), (20, "mx2.test")]},
                   hosts={"mx1.test": "127.0.0.2", "mx2.test": "127.0.0.3"},
                   null_mx=["nullmx.test"]) as dns:
        ...  # dns.port: point smtp_dns_resolver at 127.0.0.1:dns.port
    port = free_port_on(["127.0.0.2", "127.0.0.3"])
    with Receiver("127.0.0.2", port) as rx:
        ...  # rx.messages, rx.connections, rx.closed, rx.ehlos
    with ScriptedServer("127.0.0.2", port, replies={"RCPT": "450 4.2.0 later"}) as srv:
        ...  # a raw server saying what the test scripts: srv.lines, srv.events

Names under .test that are not configured answer NXDOMAIN (dnsmasq
--local=/test/).  A name with an address but no MX answers NOERROR with
no MX records (the A-record fallback case).
"""
import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import threading

import harness
import ssl

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


class DnsServer:
    def __init__(self, mx=None, hosts=None, null_mx=(), extra=()):
        self.mx = mx or {}
        self.hosts = hosts or {}
        self.null_mx = list(null_mx)
        self.extra = list(extra)
        self.proc = None
        self.port = None
        self.tmp = None

    def _argv(self, port):
        argv = [shutil.which("dnsmasq") or "/usr/sbin/dnsmasq",
                "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll",
                "--conf-file=/dev/null", "--listen-address=127.0.0.1", "--bind-interfaces",
                "--port=%d" % port, "--local=/test/", "--pid-file=",
                "--log-facility=" + os.path.join(self.tmp, "dnsmasq.log"),
                "--log-queries"]
        if os.geteuid() == 0:
            argv.append("--user=root")
        for name, records in self.mx.items():
            for pref, host in records:
                argv.append("--mx-host=%s,%s,%d" % (name, host, pref))
        for name, addrs in self.hosts.items():
            if isinstance(addrs, str):
                addrs = [addrs]
            argv.append("--host-record=%s,%s" % (name, ",".join(addrs)))
        for name in self.null_mx:
            # RFC 7505: MX 0 "." = preference 0x0000, root name 0x00
            argv.append("--dns-rr=%s,15,000000" % name)
        argv += self.extra
        return argv

    def __enter__(self):
        self.tmp = tempfile.mkdtemp(prefix="postern-dns-")
        for attempt in range(5):
            port = harness.free_port()
            self.proc = subprocess.Popen(self._argv(port), stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
            self.port = port
            try:
                harness.wait_for(lambda: self._answers() or self.proc.poll() is not None,
                                 10, what="dnsmasq to answer")
            except AssertionError:
                self.__exit__(None, None, None)
                raise
            if self.proc.poll() is None:
                return self
            err = self.proc.stderr.read().decode(errors="replace")
            if "in use" not in err or attempt == 4:
                raise AssertionError("dnsmasq failed: " + err)
        return self

    def _answers(self):
        """A TCP connect on the DNS port works (dnsmasq listens on both)."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def queries(self):
        try:
            with open(os.path.join(self.tmp, "dnsmasq.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return False


def free_port_on(addrs):
    """A port free on every address in addrs (loopback 127.0.0.x)."""
    for _ in range(200):
        port = harness.free_port()
        ok = True
        for a in addrs:
            s = socket.socket()
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((a, port))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return port
    raise AssertionError("no port free on %s" % addrs)


class Message:
    def __init__(self, envelope, peer):
        self.mail_from = envelope.mail_from
        self.mail_options = list(envelope.mail_options)
        self.rcpt_tos = list(envelope.rcpt_tos)
        self.rcpt_options = list(envelope.rcpt_options)
        self.content = envelope.original_content or envelope.content
        self.peer = peer
        self.tls = False
        self.auth_user = None


class Handler:
    """Accepts everything except recipients in `reject` (address -> reply)."""

    def __init__(self, rx):
        self.rx = rx

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.rx.lock:
            self.rx.ehlos.append(hostname)
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rx.reject.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        if self.rx.data_reply:
            return self.rx.data_reply
        m = Message(envelope, session.peer)
        m.tls = session.ssl is not None
        if session.authenticated:
            m.auth_user = session.auth_data
        with self.rx.lock:
            self.rx.messages.append(m)
            n = len(self.rx.messages)
        return "250 2.0.0 Ok: queued as %s%d" % (self.rx.name, n)


class CountingSMTP(SMTP):
    def __init__(self, rx, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rx = rx

    def connection_made(self, transport):
        # aiosmtpd calls this again with the TLS transport after STARTTLS:
        # count TCP connections, not protocol layers
        if transport.get_extra_info("sslcontext") is None:
            with self._rx.lock:
                self._rx.connections += 1
        super().connection_made(transport)

    def connection_lost(self, exc):
        with self._rx.lock:
            self._rx.closed += 1
        super().connection_lost(exc)


class Receiver:
    """A real SMTP server (aiosmtpd) on addr:port in a thread."""

    def __init__(self, addr, port, name=None, reject=None, data_reply=None,
                 smtp_kwargs=None):
        self.addr, self.port = addr, port
        self.name = name or ("RX" + addr.replace(".", ""))
        self.reject = {k.lower(): v for k, v in (reject or {}).items()}
        self.data_reply = data_reply
        self.smtp_kwargs = dict(smtp_kwargs or {})
        self.messages = []
        self.ehlos = []
        self.connections = 0
        self.closed = 0
        self.lock = threading.Lock()
        self.controller = None

    def __enter__(self):
        rx = self

        class _Controller(Controller):
            def factory(self):
                return CountingSMTP(rx, self.handler, **self.SMTP_kwargs)

        kwargs = dict(self.smtp_kwargs)
        kwargs.setdefault("decode_data", False)
        self.controller = _Controller(Handler(self), hostname=self.addr, port=self.port,
                                      server_hostname=self.name.lower() + ".test",
                                      ready_timeout=30, **kwargs)
        self.controller.start()
        # Controller.start() connects once itself to see the server up: not
        # a client, so the counters start after it is gone.
        harness.wait_for(lambda: self.connections >= 1 and self.closed == self.connections,
                         10, what="aiosmtpd's own start-up probe to finish")
        with self.lock:
            self.connections = self.closed = 0
        return self

    def __exit__(self, *exc):
        if self.controller:
            self.controller.stop()
        return False


def make_certs(directory, names, ca_name="postern test CA"):
    """A CA and a server certificate for `names` (DNS SANs) signed by it,
    made with the openssl CLI.  Returns dict ca, cert, key (paths)."""
    os.makedirs(directory, exist_ok=True)
    ca_key, ca = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.pem")
    key, csr = os.path.join(directory, "server.key"), os.path.join(directory, "server.csr")
    cert, ext = os.path.join(directory, "server.pem"), os.path.join(directory, "ext.cnf")

    def run(*argv):
        subprocess.run(["openssl"] + list(argv), check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
        "-days", "2", "-subj", "/CN=" + ca_name)
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
        "-subj", "/CN=" + names[0])
    with open(ext, "w") as f:
        f.write("subjectAltName=" + ",".join("DNS:" + n for n in names) + "\n")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext)
    for p in (ca, cert):
        os.chmod(p, 0o644)
    os.chmod(directory, 0o755)
    return {"ca": ca, "cert": cert, "key": key}


def server_tls_context(certs):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs["cert"], certs["key"])
    return ctx


def password_authenticator(users):
    """aiosmtpd authenticator accepting {login: password}; the login is
    stored as the session's auth_data."""
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticator(server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode()
            if users.get(login) == auth_data.password.decode():
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)
    return authenticator


class ScriptedServer:
    """A raw TCP SMTP server on addr:port for the tests that need a server
    to say exactly what they script (aiosmtpd's Receiver is too polite).
    Each connection is greeted with `greeting` (None: say nothing); each
    line read -- a command, or "." at the end of data -- is answered by
    script(conn, line, state) when that returns text, else by
    replies[verb] (verb = the first word, upper-cased; "." for the end of
    data), else "354 go ahead" for DATA and "250 ok" for anything else.
    conn is the 1-based connection number, state a dict per connection
    ("n_msgs": messages whose end of data was read on it).

    A reply is the text to send (lines joined by CRLF); "CLOSE text" sends
    text, if any, and closes the connection; None from replies means say
    nothing and hang until the client gives up.  The replies to the lines
    of one recv() chunk go in one write, as a pipelining server's would.

    What it saw: .lines, every line read on any connection, message lines
    included as they came (dot-stuffed); .events, (conn, chunk, line) for
    every command and end of data, chunk being the number of the recv()
    that brought it in on that connection (a pipelined group shares one);
    .commands(conn), one connection's command lines; .messages,
    (conn, body) per message, body in bytes with CRLF line ends;
    .connections and .closed count clients."""

    def __init__(self, addr, port, greeting="220 scripted ESMTP", replies=None,
                 script=None):
        self.addr, self.port = addr, port
        self.greeting = greeting
        self.replies = dict(replies or {})
        self.script = script
        self.lines = []
        self.events = []
        self.messages = []
        self.connections = 0
        self.closed = 0
        self.lock = threading.Lock()
        self.sock = None
        self.thread = None
        self.stop = threading.Event()

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.addr, self.port))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with self.lock:
                self.connections += 1
                n = self.connections
            threading.Thread(target=self._serve, args=(conn, n), daemon=True).start()

    def _reply(self, n, line, state):
        text = self.script(n, line, state) if self.script else None
        if text is not None:
            return text
        verb = line.split(" ", 1)[0].upper()
        return self.replies.get(verb, "354 go ahead" if verb == "DATA" else "250 ok")

    def _serve(self, conn, n):
        conn.settimeout(30)
        state = {"n_msgs": 0}
        buf = b""
        body = b""
        in_data = False
        chunk = 0
        try:
            if self.greeting is not None:
                conn.sendall(self.greeting.encode() + b"\r\n")
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                chunk += 1
                buf += data
                out = b""
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    raw = raw.rstrip(b"\r")
                    line = raw.decode(errors="replace")
                    with self.lock:
                        self.lines.append(line)
                    if in_data:
                        if raw != b".":
                            body += raw + b"\r\n"
                            continue
                        in_data = False
                        with self.lock:
                            self.messages.append((n, body))
                        state["n_msgs"] += 1
                    with self.lock:
                        self.events.append((n, chunk, line))
                    text = self._reply(n, line, state)
                    if text is None:
                        if out:
                            conn.sendall(out)
                        self.stop.wait(60)
                        return
                    close = text.startswith("CLOSE")
                    text = text[len("CLOSE"):].lstrip() if close else text
                    if text:
                        out += text.encode() + b"\r\n"
                    verb = line.split(" ", 1)[0].upper()
                    if close or verb == "QUIT":
                        if out:
                            conn.sendall(out)
                        return
                    if verb == "DATA" and text.startswith("354"):
                        in_data = True
                        body = b""
                if out:
                    conn.sendall(out)
        except OSError:
            pass
        finally:
            conn.close()
            with self.lock:
                self.closed += 1

    def commands(self, conn):
        with self.lock:
            return [l for c, _, l in self.events if c == conn]

    def __exit__(self, *exc):
        self.stop.set()
        self.sock.close()
        self.thread.join(5)
        return False
