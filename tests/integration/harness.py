"""Integration harness: a real postern instance per test.

    import harness
    with harness.Instance(conf={"max_idle": "10s"},
                          master_cf_append="...") as inst:
        with inst.smtp() as s:          # smtplib.SMTP on the smtp port
            s.sendmail(...)
        inst.wait_log(r"status=sent")   # poll the maillog, with a deadline
        msgs = inst.mailbox("alice")    # Maildir messages, oldest first

Instance(port=None, conf=None, master_cf_append="", as_root=False,
         start=True, wait_smtp=None):
  - a fresh temp dir (prefix postern-test-), `postern init DIR/inst --port P`
    with free loopback ports P (smtp), P+1 (submission) and P+2
    (submissions, implicit TLS) unless port= is given;
  - conf: main.cf overrides {name: value}, written into main.cf directly
    (an existing `name = ...` line is replaced, else the line appended);
  - master_cf_append: text appended to master.cf (use absolute commands);
  - start: `postern start`, then (wait_smtp, default: when the build has an
    smtpd) wait until the smtp port accepts a connection;
  - on exit: `postern stop` when running, then verify that no process of
    the instance remains; leftovers are SIGKILLed and the test FAILS.
    The directory is removed unless the environment has KEEP=1.
  Attributes: dir (the config dir), port, submission_port, submissions_port,
  user, build.

Privileges: when the tests run as root (CI), an ordinary instance runs as
the unprivileged account `posterntest` (created if missing: useradd
--system --no-create-home, own group), and every postern command goes
through `setpriv --reuid --regid --init-groups`.  as_root=True makes a
real root instance (mail_owner postern, setgid_group postdrop, created if
missing as `make install` would, chroot honoured); it needs root.

The build: $POSTERN_BUILD, else the source tree's build/.  Templates: the
source tree's etc/ (passed as POSTERN_ETC_DIR).

Every wait has a deadline: wait_for(fn, timeout) polls fn until it returns
something true and returns that, else raises AssertionError.  The default
deadline (WAIT_TIMEOUT, 30 s) is generous on purpose: a poll returns as
soon as its condition holds, so only a failing test waits that long, and a
loaded two-core CI machine can take well over 10 s for a delivery.
"""
import os
import pwd
import random
import re
import shutil
import signal
import smtplib
import socket
import stat
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.abspath(os.environ.get("POSTERN_BUILD") or os.path.join(SRC, "build"))
POSTERN = os.path.join(BUILD, "bin", "postern")
ETC = os.path.join(SRC, "etc")
TEST_USER = "posterntest"


WAIT_TIMEOUT = 30.0


def wait_for(fn, timeout=WAIT_TIMEOUT, interval=0.05, what=None):
    """Poll fn() until it returns a true value (returned); AssertionError
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s"
                                 % (timeout, what or getattr(fn, "__name__", "condition")))
        time.sleep(interval)


def is_root():
    return os.geteuid() == 0


def ensure_test_user():
    """The unprivileged account instances run as when we are root."""
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--user-group",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                        TEST_USER], check=True)
    return pwd.getpwnam(TEST_USER)


def ensure_system_accounts():
    """postern / postdrop, as `make install` creates them."""
    import grp
    try:
        grp.getgrnam("postdrop")
    except KeyError:
        subprocess.run(["groupadd", "--system", "postdrop"], check=True)
    try:
        pwd.getpwnam("postern")
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                        "postern"], check=True)


def port_is_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


_handed_out = set()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count=2):
    """`count` consecutive free loopback ports, chosen at random below the
    kernel's ephemeral range (so no client connection anywhere on the host
    can be given one of them meanwhile) and never handed out twice by this
    process.  A race with another process binding the same port remains;
    Instance retries start on a bind failure."""
    high = min(_ephemeral_low(), 65536) - count
    for _ in range(500):
        base = random.randrange(10000, high)
        ports = range(base, base + count)
        if any(p in _handed_out for p in ports):
            continue
        if all(port_is_free(p) for p in ports):
            _handed_out.update(ports)
            return base
    raise AssertionError("no free loopback ports")


def free_port():
    return free_ports(1)


def port_accepts(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def build_echo_daemon(dest):
    """Compile tests/integration/echo_daemon.c (a daemon on the real
    skeleton) against the build's libpostern.a; returns its path."""
    libs = subprocess.run(["pkg-config", "--libs", "openssl", "libsasl2"],
                          capture_output=True, text=True).stdout.split()
    subprocess.run(["cc", "-std=gnu11", "-D_GNU_SOURCE", "-I", os.path.join(SRC, "common"),
                    "-o", dest, os.path.join(HERE, "echo_daemon.c"),
                    os.path.join(BUILD, "lib", "libpostern.a")] + libs + ["-ldb", "-lresolv"],
                   check=True)
    os.chmod(dest, 0o755)
    return dest


def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None, None
    rest = data[data.rindex(")") + 2:].split()
    return rest[0], int(rest[1])           # state, ppid


def set_main_cf(path, conf):
    """Replace or append `name = value` lines in main.cf (with their
    continuation lines), keeping everything else."""
    with open(path) as f:
        lines = f.read().splitlines()
    for name, value in conf.items():
        out, replaced, skipping = [], False, False
        for line in lines:
            if skipping and line[:1] in (" ", "\t") and line.strip():
                continue
            skipping = False
            if re.match(r"%s\s*=" % re.escape(name), line):
                if not replaced:
                    out.append("%s = %s" % (name, value))
                    replaced = True
                skipping = True
                continue
            out.append(line)
        if not replaced:
            out.append("%s = %s" % (name, value))
        lines = out
    # Written aside and renamed in: a daemon of a running instance that
    # starts meanwhile must read the old file or the new one, never a
    # truncated one.
    st = os.stat(path)
    tmp = path + ".tmp-harness"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(tmp, stat.S_IMODE(st.st_mode))
    if is_root():
        os.chown(tmp, st.st_uid, st.st_gid)
    os.replace(tmp, path)


class Instance:
    def __init__(self, port=None, conf=None, master_cf_append="", as_root=False,
                 start=True, wait_smtp=None):
        if as_root and not is_root():
            raise AssertionError("Instance(as_root=True) needs root")
        self.requested_port = port
        self.conf = dict(conf or {})
        self.master_cf_append = master_cf_append
        self.as_root = as_root
        self.start_on_enter = start
        self.wait_smtp = wait_smtp
        self.build = BUILD
        self.tmp = None
        self.dir = None
        self.port = None
        self.submission_port = None
        self.submissions_port = None
        self.user = None

    # -- running commands -------------------------------------------------
    def _as_user(self, argv):
        if is_root() and not self.as_root:
            return ["setpriv", "--reuid", TEST_USER, "--regid", TEST_USER,
                    "--init-groups"] + argv
        return argv

    def run(self, argv, timeout=60, input=None):
        """Run argv as the instance's user; CompletedProcess (text)."""
        env = dict(os.environ, POSTERN_ETC_DIR=ETC)
        return subprocess.run(self._as_user(argv), capture_output=True, text=True,
                              timeout=timeout, input=input, env=env, cwd="/")

    def postern(self, *args, timeout=60):
        """`postern -c DIR ARGS...` as the instance's user."""
        return self.run([POSTERN, "-c", self.dir] + list(args), timeout=timeout)

    # -- setup ------------------------------------------------------------
    def _create(self, port):
        self.tmp = tempfile.mkdtemp(prefix="postern-test-")
        os.chmod(self.tmp, 0o755)
        if is_root() and not self.as_root:
            pw = ensure_test_user()
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
            self.user = TEST_USER
        elif self.as_root:
            ensure_system_accounts()
            self.user = "root"
        else:
            self.user = pwd.getpwuid(os.getuid()).pw_name
        self.dir = os.path.join(self.tmp, "inst")
        self.port, self.submission_port, self.submissions_port = port, port + 1, port + 2
        r = self.run([POSTERN, "init", self.dir, "--port", str(port)])
        if r.returncode != 0:
            raise AssertionError("postern init failed:\n" + r.stdout + r.stderr)
        if self.conf:
            self.edit_main_cf(self.conf)
        if self.master_cf_append:
            self.append_master_cf(self.master_cf_append)

    def edit_main_cf(self, conf):
        set_main_cf(os.path.join(self.dir, "main.cf"), conf)

    def append_master_cf(self, text):
        with open(os.path.join(self.dir, "master.cf"), "a") as f:
            f.write("\n" + text.strip("\n") + "\n")

    def __enter__(self):
        if not os.access(POSTERN, os.X_OK):
            raise AssertionError("%s not built (make all, or set POSTERN_BUILD)" % POSTERN)
        if is_root() and not self.as_root:
            ensure_test_user()
            probe = subprocess.run(self._as_user(["test", "-x", POSTERN, "-a", "-r",
                                                  os.path.join(HERE, "harness.py")]))
            if probe.returncode != 0:
                raise AssertionError(
                    "the test account %s cannot reach %s or %s: make the source tree "
                    "and the build readable by other users (chmod o+rx on their "
                    "parent directories)" % (TEST_USER, POSTERN, HERE))
        attempts = 1 if self.requested_port else 3
        try:
            for attempt in range(attempts):
                self._create(self.requested_port or free_ports(3))
                if not self.start_on_enter:
                    return self
                r = self.postern("start")
                if r.returncode == 0:
                    break
                if "in use" in r.stderr and attempt + 1 < attempts:
                    self._remove()              # lost a port race: new ports
                    continue
                raise AssertionError("postern start failed:\n" + r.stderr + self.log())
            wait = self.wait_smtp
            if wait is None:
                wait = os.access(os.path.join(BUILD, "libexec", "smtpd"), os.X_OK)
            if wait:
                wait_for(lambda: port_accepts(self.port), 10, what="the smtp port")
            return self
        except BaseException:
            self._cleanup(fail_on_leftovers=False)
            raise

    def __exit__(self, exc_type, exc, tb):
        self._cleanup(fail_on_leftovers=exc_type is None)
        return False

    def _remove(self):
        if self.tmp and os.environ.get("KEEP") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)
        elif self.tmp:
            print("KEEP=1: instance kept in", self.dir)
        self.tmp = None

    def _cleanup(self, fail_on_leftovers=True):
        leftovers = []
        try:
            if self.dir and self.master_pid():
                self.postern("stop", timeout=60)
            try:
                wait_for(lambda: not self.pids(), 10, what="the instance's processes to exit")
            except AssertionError:
                leftovers = self.pids()
                for pid in leftovers:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
        finally:
            self._remove()
        if leftovers and fail_on_leftovers:
            raise AssertionError("processes left behind after stop (killed): %s" % leftovers)

    # -- observing --------------------------------------------------------
    def master_pid(self):
        """The running master's pid (from `postern status`), else 0."""
        r = self.postern("status")
        m = re.search(r"PID: (\d+)", r.stderr)
        return int(m.group(1)) if r.returncode == 0 and m else 0

    def pids(self):
        """Live processes of this instance: command line mentions its dir,
        or child of its master.  Zombies are not counted."""
        if not self.dir:
            return []
        needle = self.dir.encode()
        found, children_of = [], {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            if pid == os.getpid():
                continue
            state, ppid = proc_state(pid)
            if state is None or state == "Z":
                continue
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            children_of.setdefault(ppid, []).append(pid)
            if needle in cmdline and b"/bin/postern\0" not in cmdline \
                    and not cmdline.startswith(b"setpriv\0"):
                found.append(pid)
        for pid in list(found):
            for child in children_of.get(pid, []):
                if child not in found:
                    found.append(child)
        return sorted(found)

    def log(self):
        try:
            with open(os.path.join(self.dir, "log", "maillog"), errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    def wait_log(self, regex, timeout=WAIT_TIMEOUT):
        """Wait until the maillog matches regex (re.M); returns the match."""
        return wait_for(lambda: re.search(regex, self.log(), re.M), timeout,
                        what="log line /%s/" % regex)

    def wait_for(self, fn, timeout=WAIT_TIMEOUT, what=None):
        return wait_for(fn, timeout, what=what)

    def mailbox(self, user):
        """Messages in DIR/mail/USER/ (Maildir new/ and cur/), as text,
        oldest first by file name."""
        base = os.path.join(self.dir, "mail", user)
        files = []
        for sub in ("new", "cur"):
            d = os.path.join(base, sub)
            if os.path.isdir(d):
                files += [os.path.join(d, n) for n in os.listdir(d) if not n.startswith(".")]
        files.sort(key=os.path.basename)
        out = []
        for path in files:
            with open(path, errors="surrogateescape") as f:
                out.append(f.read())
        return out

    def smtp(self, port=None, timeout=10):
        """smtplib.SMTP connected to the smtp (or given) port."""
        return smtplib.SMTP("127.0.0.1", port or self.port, timeout=timeout)
