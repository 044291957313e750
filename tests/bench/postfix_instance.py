"""A private Postfix instance for the side-by-side comparison in bench.py
(--postfix ROOT; tests/bench/postfix-compare.sh prepares ROOT).

ROOT is Debian's postfix package unpacked with `dpkg -x` (nothing
installed, the system MTA untouched).  Each PostfixInstance is a fresh
temporary directory with its own main.cf/master.cf, spool, data directory
and maillog, listening on a loopback port, run as root with mail_owner
`postfix`; local mail goes to the Maildir of the account `pfbench`
(home_mailbox = Maildir/).  The settings that matter for speed are
Postfix's defaults (process limits, concurrency, fsync behaviour); only
chroot is off and DNS is not used (relayhost is an address), as in the
postern instances.  Nothing in `make check` uses this.

Same observing interface as harness.Instance where bench.py needs it:
port, dir, spool, master_pid(), log(), __exit__().
"""
import os
import pwd
import shutil
import subprocess
import tempfile
import time

MAIN_CF = """compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
daemon_directory = {root}/usr/lib/postfix/sbin
command_directory = {root}/usr/sbin
shlib_directory = {root}/usr/lib/postfix
meta_directory = {d}/etc
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = localhost.localdomain
mydomain = localdomain
mydestination = localhost
mynetworks = 127.0.0.0/8
home_mailbox = Maildir/
alias_maps =
alias_database =
local_recipient_maps =
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C LD_LIBRARY_PATH
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
biff = no
smtputf8_enable = no
"""

MASTER_CF = """127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
{qmgr}qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

LOCAL_USER = "pfbench"


class PostfixInstance:
    def __init__(self, root, port, conf=None, qmgr=True):
        self.root = root
        self.port = port
        self.conf = dict(conf or {})
        self.qmgr = qmgr
        self.tmp = tempfile.mkdtemp(prefix="postfix-bench-")
        os.chmod(self.tmp, 0o755)
        self.dir = os.path.join(self.tmp, "etc")
        self.spool = os.path.join(self.tmp, "spool")
        self.env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(root, "usr/lib/postfix"))

    def maildir(self):
        return os.path.join(pwd.getpwnam(LOCAL_USER).pw_dir, "Maildir")

    def postfix(self, *args):
        return subprocess.run([os.path.join(self.root, "usr/sbin/postfix"), "-c", self.dir]
                              + list(args), capture_output=True, text=True, env=self.env,
                              timeout=120)

    def __enter__(self):
        d = self.tmp
        for sub in ("etc", "spool", "data"):
            os.mkdir(os.path.join(d, sub))
        shutil.chown(os.path.join(d, "data"), "postfix")
        main = MAIN_CF.format(d=d, root=self.root)
        main += "".join("%s = %s\n" % kv for kv in self.conf.items())
        with open(os.path.join(self.dir, "main.cf"), "w") as f:
            f.write(main)
        with open(os.path.join(self.dir, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port, qmgr="" if self.qmgr else "#"))
        for name in ("postfix-files", "postfix-script", "post-install"):
            shutil.copy(os.path.join(self.root, "etc/postfix", name), self.dir)
        shutil.copy(os.path.join(self.root, "usr/share/postfix/dynamicmaps.cf"), self.dir)
        shutil.rmtree(self.maildir(), ignore_errors=True)
        r = self.postfix("start")
        if r.returncode != 0:
            self.__exit__(None, None, None)
            raise AssertionError("postfix start failed: %s%s" % (r.stderr, self.log()[-2000:]))
        return self

    def master_pid(self):
        try:
            with open(os.path.join(self.spool, "pid", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return 0

    def log(self):
        try:
            with open(os.path.join(self.tmp, "maillog"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def __exit__(self, *exc):
        if self.master_pid():
            self.postfix("stop")
            deadline = time.monotonic() + 20
            while self.master_pid() and os.path.exists("/proc/%d" % self.master_pid()) \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return False
