"""test_conf.py - `postern conf` (postconf) on a real instance: listing
every parameter, -n, -d, -h, -x, names; NAME=VALUE edits that keep the
file's comments and order and take effect after `postern reload`; -M;
malformed arguments."""
import os
import re
import socket

import harness


def conf(inst, *args):
    r = inst.postern("conf", *args)
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout


def banner(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.settimeout(10)
        return s.recv(512).decode()


def test_show_parameters():
    with harness.Instance(start=False) as inst:
        lines = conf(inst).splitlines()
        names = [l.split(" =")[0] for l in lines]
        assert names == sorted(names) and len(names) > 100
        assert "message_size_limit = 10240000" in lines
        assert "myhostname = localhost.localdomain" in lines      # set by init
        assert "myorigin = $myhostname" in lines                   # unexpanded
        assert "relayhost =" in lines                              # empty value
        nondefault = conf(inst, "-n").splitlines()
        assert "myhostname = localhost.localdomain" in nondefault
        assert not any(l.startswith("message_size_limit") for l in nondefault)
        assert conf(inst, "-h", "myhostname") == "localhost.localdomain\n"
        assert conf(inst, "-x", "-h", "myorigin") == "localhost.localdomain\n"
        assert conf(inst, "myorigin", "relayhost") == "myorigin = $myhostname\nrelayhost =\n"
        # -d: the built-in default even where main.cf sets the parameter
        assert conf(inst, "-d", "myhostname", "mydestination") == \
            "myhostname =\nmydestination = $myhostname, localhost.$mydomain, localhost\n"
        # a name params.def does not know, set in main.cf, is shown by -n
        with open(os.path.join(inst.dir, "main.cf"), "a") as f:
            f.write("my_own_list = a, b\n")
        assert "my_own_list = a, b" in conf(inst, "-n").splitlines()
        assert conf(inst, "-h", "my_own_list") == "a, b\n"


def test_edit_keeps_comments_and_order_and_survives_reload():
    # The banner is in main.cf before the start: appended to a running
    # instance, the smtpd child forked for the start-up probe (and kept
    # idle) would still answer with the old configuration.
    with harness.Instance(start=False) as inst:
        path = os.path.join(inst.dir, "main.cf")
        with open(path, "a") as f:
            f.write("# a comment the operator wrote\nsmtpd_banner = $myhostname ESMTP old\n"
                    "    continued\n# trailing comment\n")
        r = inst.postern("start")
        assert r.returncode == 0, r.stderr
        harness.wait_for(lambda: harness.port_accepts(inst.port), what="the smtp port")
        before = open(path).read()
        mode = os.stat(path).st_mode
        assert banner(inst.port).startswith("220 localhost.localdomain ESMTP old continued")
        r = inst.postern("conf", "smtpd_banner=$myhostname ESMTP edited",
                         "my_custom_param = 42")
        assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stderr
        after = open(path).read()
        assert os.stat(path).st_mode == mode
        # Same lines, in the same places; the continuation is gone, the new
        # parameter is at the end.
        want = before.replace("smtpd_banner = $myhostname ESMTP old\n    continued\n",
                              "smtpd_banner = $myhostname ESMTP edited\n")
        assert after == want + "my_custom_param = 42\n", after
        assert not [n for n in os.listdir(inst.dir) if ".tmp" in n]
        assert conf(inst, "-h", "smtpd_banner") == "$myhostname ESMTP edited\n"
        # running smtpd still says "old" until the reload
        assert inst.postern("reload").returncode == 0
        harness.wait_for(lambda: "ESMTP edited" in banner(inst.port), 20,
                         what="the new banner after reload")
        assert banner(inst.port).startswith("220 localhost.localdomain ESMTP edited")
        # and the file still holds it after the reload
        assert "smtpd_banner = $myhostname ESMTP edited\n" in open(path).read()


def test_master_services():
    with harness.Instance(start=False) as inst:
        lines = conf(inst, "-M").splitlines()
        smtp = [l for l in lines if l.startswith("127.0.0.1:%d " % inst.port)]
        assert len(smtp) == 1 and re.match(r"\S+\s+inet\s+n\s+\S+\s+\S+\s+-\s+-\s+smtpd$",
                                          smtp[0]), smtp
        assert any(re.match(r"showq\s+unix\s+n\s", l) for l in lines)
        assert any(re.match(r"qmgr\s+unix\s+n\s+\S+\s+n\s+300\s+1\s+qmgr$", l) for l in lines)
        only = conf(inst, "-M", "qmgr/unix").splitlines()
        assert len(only) == 1 and only[0].startswith("qmgr ")
        r = inst.postern("conf", "-M", "nosuch")
        assert r.returncode == 1 and "no such service" in r.stderr


def test_malformed_arguments_change_nothing():
    with harness.Instance(start=False) as inst:
        path = os.path.join(inst.dir, "main.cf")
        before = open(path).read()
        cases = [
            (("message_size_limit=lots",), "bad assignment"),
            (("smtpd_banner=${unclosed",), "bad assignment"),
            (("=value",), "bad assignment"),
            (("myhostname=ok.example", "bad name=x"), "bad assignment"),
            (("myhostname=ok.example", "relayhost"), "not NAME=VALUE"),
            (("-n", "-d"), "cannot be used together"),
            (("-q",), "unknown option"),
            (("-n", "myhostname=x"), "do not apply"),
            (("-M", "-n"), "takes no other option"),
        ]
        for args, text in cases:
            r = inst.postern("conf", *args)
            assert r.returncode == 1, (args, r.stdout, r.stderr)
            assert text in r.stderr and r.stderr.count("\n") == 1, (args, r.stderr)
            assert r.stderr.startswith("postern: fatal: "), (args, r.stderr)
        assert open(path).read() == before
        r = inst.postern("conf", "no_such_parameter", "myhostname")
        assert r.returncode == 1
        assert r.stderr == "postern: warning: no_such_parameter: unknown parameter\n"
        assert r.stdout == "myhostname = localhost.localdomain\n"
        r = harness.Instance.run(inst, [harness.POSTERN, "-c", os.path.join(inst.tmp, "nowhere"),
                                        "conf", "myhostname=x"])
        assert r.returncode == 1 and "No such file" in r.stderr
        assert not os.path.exists(os.path.join(inst.tmp, "nowhere"))
