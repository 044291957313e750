"""make install / make uninstall, and mail(1) (Debian's bsd-mailx) and a
cron-style `sendmail -t` submitting through the INSTALLED sendmail.

Nothing of the host's mail setup is touched: make install goes into a
DESTDIR under a temp dir, and the submission tests run in a private mount
namespace (unshare -m) where that DESTDIR's usr/sbin is bind-mounted on
/usr/sbin and an overlay on /etc adds /etc/postern (a link to a test
instance's configuration).  Needs root; bsd-mailx is unpacked (not
installed: its package depends on an MTA) by tools/install-deps.sh."""
import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile

import harness

MAILX = "/var/cache/postern-tests/bsd-mailx/usr/bin/bsd-mailx"
CONF = {"local_recipient_maps": ""}


def make(target, destdir, *extra):
    r = subprocess.run(["make", "-s", "-o", "all", "BUILD=" + harness.BUILD, "PREFIX=/usr",
                        "DESTDIR=" + destdir, target] + list(extra),
                       cwd=harness.SRC, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_install_layout_keeps_edited_config_and_uninstall_keeps_mail():
    if not harness.is_root():
        return
    harness.ensure_system_accounts()
    tmp = tempfile.mkdtemp(prefix="postern-install-")
    try:
        d = os.path.join(tmp, "root")
        # Another MTA's sendmail is never replaced silently.
        os.makedirs(d + "/usr/sbin")
        with open(d + "/usr/sbin/sendmail", "w") as f:
            f.write("#!/bin/sh\n# exim's\n")
        r = subprocess.run(["make", "-s", "-o", "all", "BUILD=" + harness.BUILD, "PREFIX=/usr",
                            "DESTDIR=" + d, "install"], cwd=harness.SRC, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode != 0
        assert "postern install: /usr/sbin/sendmail belongs to another mail system" in r.stderr
        assert not os.path.exists(d + "/usr/sbin/postdrop")
        with open(d + "/usr/sbin/sendmail") as f:
            assert "exim" in f.read()
        os.unlink(d + "/usr/sbin/sendmail")
        make("install", d)
        sbin, lib = d + "/usr/sbin", d + "/usr/lib/postern"
        assert mode(sbin + "/sendmail") == 0o755
        for setgid in ("postdrop", "postern"):      # postern: mailq for every user
            st = os.stat(sbin + "/" + setgid)
            assert stat.S_IMODE(st.st_mode) == 0o2755, (setgid, oct(st.st_mode))
            assert grp.getgrgid(st.st_gid).gr_name == "postdrop"
        for name in ("mailq", "newaliases"):
            assert os.readlink(d + "/usr/bin/" + name) == "../sbin/sendmail"
        for daemon in ("master", "smtpd", "cleanup", "pickup", "qmgr", "local"):
            assert os.access(os.path.join(lib, daemon), os.X_OK), daemon
        with open(d + "/etc/postern/main.cf") as f:
            main_cf = f.read()
        assert re.search(r"^daemon_directory = /usr/lib/postern$", main_cf, re.M)
        assert re.search(r"^command_directory = /usr/sbin$", main_cf, re.M)
        assert os.path.exists(d + "/etc/postern/master.cf")
        assert os.path.exists(d + "/etc/aliases")
        spool = d + "/var/spool/postern"
        st = os.stat(spool + "/maildrop")
        assert stat.S_IMODE(st.st_mode) == 0o1730
        assert pwd.getpwuid(st.st_uid).pw_name == "postern"
        assert grp.getgrgid(st.st_gid).gr_name == "postdrop"
        st = os.stat(spool + "/public")
        assert stat.S_IMODE(st.st_mode) == 0o710 and grp.getgrgid(st.st_gid).gr_name == "postdrop"
        assert pwd.getpwuid(os.stat(spool + "/incoming").st_uid).pw_name == "postern"
        # every other directory has postern's own group: the daemons do
        # not hold postdrop
        postern_gid = pwd.getpwnam("postern").pw_gid
        assert postern_gid != grp.getgrnam("postdrop").gr_gid
        for q in ("incoming", "active", "deferred", "private"):
            assert os.stat(spool + "/" + q).st_gid == postern_gid, q
        assert os.stat(d + "/var/lib/postern").st_gid == postern_gid
        with open(d + "/lib/systemd/system/postern.service") as f:
            unit = f.read()
        assert "ExecStart=/usr/sbin/postern start" in unit
        for page in ("man1/postern.1", "man1/sendmail.1", "man5/postern.5"):
            path = d + "/usr/share/man/" + page
            r = subprocess.run(["man", "-l", path], capture_output=True, text=True,
                               env=dict(os.environ, MANWIDTH="100", MAN_KEEP_FORMATTING="0"))
            assert r.returncode == 0 and len(r.stdout) > 500, (page, r.stderr)
        man5 = subprocess.run(["man", "-l", d + "/usr/share/man/man5/postern.5"],
                              capture_output=True, text=True).stdout
        for param in ("myorigin", "message_size_limit", "alt_config_directories"):
            assert param in man5, param
        # An edited main.cf survives a second install.
        with open(d + "/etc/postern/main.cf", "a") as f:
            f.write("# local edit\nmyhostname = mx.example.org\n")
        out = make("install", d)
        assert "kept your /etc/postern/main.cf" in out, out
        with open(d + "/etc/postern/main.cf") as f:
            assert f.read().endswith("myhostname = mx.example.org\n")
        with open(d + "/etc/postern/main.cf.postern-new") as f:
            assert f.read() == main_cf
        # Queued mail stays through uninstall; so does the edited main.cf.
        queued = spool + "/deferred/0/06925A3F1B00000123"
        os.makedirs(os.path.dirname(queued), exist_ok=True)
        with open(queued, "w") as f:
            f.write("V1:1\n")
        make("uninstall", d)
        for gone in ("/usr/sbin/sendmail", "/usr/sbin/postdrop", "/usr/sbin/postern",
                     "/usr/bin/mailq", "/usr/bin/newaliases", "/usr/lib/postern",
                     "/usr/share/man/man1/sendmail.1", "/usr/share/man/man5/postern.5",
                     "/lib/systemd/system/postern.service", "/etc/postern/master.cf",
                     "/etc/postern/main.cf.postern-new"):
            assert not os.path.lexists(d + gone), gone
        assert os.path.exists(queued)
        assert os.path.exists(d + "/etc/postern/main.cf")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_mailx_and_cron_submit_through_the_installed_sendmail():
    if not harness.is_root():
        return
    assert os.access(MAILX, os.X_OK), "bsd-mailx not unpacked: run sh tools/install-deps.sh as root"
    before = [os.path.lexists(p) for p in ("/usr/sbin/sendmail", "/etc/postern")]
    harness.ensure_system_accounts()
    with harness.Instance(conf=CONF) as inst:
        d = os.path.join(inst.tmp, "root")
        make("install", d)
        # The installed postdrop and postern are what this instance's
        # submissions use (inside the namespace /usr/sbin is the DESTDIR's).
        inst.edit_main_cf({"command_directory": "/usr/sbin"})
        upper, work = os.path.join(inst.tmp, "etc-upper"), os.path.join(inst.tmp, "etc-work")
        os.mkdir(upper)
        os.mkdir(work)
        os.symlink(inst.dir, os.path.join(upper, "postern"))
        body = os.path.join(inst.tmp, "body")
        with open(body, "w") as f:
            f.write("sent with mail(1)\n")
        cron = os.path.join(inst.tmp, "cron")
        with open(cron, "w") as f:
            f.write("From: root (Cron Daemon)\nTo: bob\nSubject: Cron <%s@host> run-parts\n"
                    "Content-Type: text/plain; charset=UTF-8\n\nnightly job output\n" % inst.user)
        os.chmod(inst.tmp, 0o755)
        for p in (body, cron):
            os.chmod(p, 0o644)
        user = ["setpriv", "--reuid", inst.user, "--regid", inst.user, "--init-groups"]
        script = """
set -e
mount --make-rprivate /
mount --bind {d}/usr/sbin /usr/sbin
mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={work} /etc
cd /
{user} {mailx} -s "hello from mailx" alice < {body}
{user} /usr/sbin/sendmail -FCronDaemon -i -B8BITMIME -oem -t < {cron}
""".format(d=d, upper=upper, work=work, user=" ".join(user), mailx=MAILX, body=body, cron=cron)
        r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                           text=True, timeout=60, env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
                                                       "HOME": "/nonexistent"})
        assert r.returncode == 0, r.stdout + r.stderr
        harness.wait_for(lambda: inst.mailbox("alice") and inst.mailbox("bob"), 20,
                         what="both messages")
        alice = inst.mailbox("alice")[0]
        assert "Subject: hello from mailx" in alice and alice.endswith("\nsent with mail(1)\n")
        bob = inst.mailbox("bob")[0]
        assert "Subject: Cron <" in bob and bob.endswith("\nnightly job output\n")
        uid = pwd.getpwnam(inst.user).pw_uid
        assert len(re.findall(r"postern/pickup\[\d+\]: [0-9A-F]+: uid=%d " % uid, inst.log())) == 2
    # The host was not touched.
    assert [os.path.lexists(p) for p in ("/usr/sbin/sendmail", "/etc/postern")] == before


def test_ordinary_user_submits_to_root_instance_only_through_setgid_postdrop():
    """The system model: maildrop/ is postern:postdrop 1730, so an ordinary
    user's message gets in only through the installed setgid postdrop;
    the same postdrop refuses a configuration directory that the default
    main.cf does not list in alt_config_directories."""
    if not harness.is_root():
        return
    harness.ensure_system_accounts()
    user = harness.ensure_test_user().pw_name
    with harness.Instance(as_root=True, conf=CONF) as inst:
        d = os.path.join(inst.tmp, "root")
        make("install", d)
        inst.edit_main_cf({"command_directory": "/usr/sbin"})
        upper, work = os.path.join(inst.tmp, "etc-upper"), os.path.join(inst.tmp, "etc-work")
        os.mkdir(upper)
        os.mkdir(work)
        os.symlink(inst.dir, os.path.join(upper, "postern"))
        os.chmod(inst.tmp, 0o755)
        other = os.path.join(inst.tmp, "other")
        os.mkdir(other)
        with open(os.path.join(other, "main.cf"), "w") as f:
            f.write("queue_directory = %s/spool\n" % inst.dir)
        os.chmod(other, 0o755)
        as_user = "setpriv --reuid %s --regid %s --init-groups" % (user, user)
        script = """
mount --make-rprivate /
mount --bind {d}/usr/sbin /usr/sbin || exit 90
mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={work} /etc || exit 91
cd /
printf 'Subject: via setgid\\n\\nhello root instance\\n' | {as_user} /usr/sbin/sendmail root
echo "installed=$?"
printf 'V1:1\\nS0:\\nR4:root\\nE0:\\n' | {as_user} {build}/bin/postdrop -c {inst}
echo "unprivileged=$?"
printf 'V1:1\\nS0:\\nR4:root\\nE0:\\n' | {as_user} /usr/sbin/postdrop -c {other}
echo "other=$?"
{as_user} {d}/usr/bin/mailq
echo "mailq=$?"
""".format(d=d, upper=upper, work=work, as_user=as_user, build=inst.build, inst=inst.dir,
           other=other)
        r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                           text=True, timeout=60, env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"})
        assert "installed=0" in r.stdout, r.stdout + r.stderr
        # the build's postdrop is not setgid: maildrop/ is closed to the user
        assert "unprivileged=75" in r.stdout, r.stdout + r.stderr
        assert "postdrop: fatal: create %s/spool/maildrop/" % inst.dir in r.stderr, r.stderr
        assert "other=77" in r.stdout, r.stdout + r.stderr
        assert "postdrop: fatal: -c %s: not in alt_config_directories" % other in r.stderr, r.stderr
        # mailq as the ordinary user: sendmail by its name runs the
        # installed (setgid) postern queue, which reaches public/showq.
        assert "mailq=0" in r.stdout, r.stdout + r.stderr
        assert re.search(r"^(Mail queue is empty|-Queue ID-.*)$", r.stdout, re.M), r.stdout
        uid = pwd.getpwnam(user).pw_uid
        inst.wait_log(r"postern/pickup\[\d+\]: [0-9A-F]+: uid=%d from=<%s>" % (uid, user), timeout=20)
        harness.wait_for(lambda: inst.mailbox("root"), 20, what="the user's message")
        assert len(inst.mailbox("root")) == 1
        assert inst.mailbox("root")[0].endswith("\nhello root instance\n")
