"""Integration tests for lookup tables through the real `postern map`
command (build and query), the way an operator uses postmap: text file in,
NAME.db out, queries by key and by address.  No running instance needed."""
import os
import subprocess
import tempfile

import harness


def run(*args):
    return subprocess.run([harness.POSTERN] + list(args), capture_output=True,
                          text=True, timeout=30)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def test_map_build_and_query_hash_and_btree():
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "aliases")
        write(src, "# aliases(5) and postmap formats both work\n"
                   "postmaster: root\n"
                   "Root  admin@example.org\n"
                   "list  a@example.org,\n"
                   "      b@example.org\n")
        for kind in ("hash", "btree"):
            r = run("map", "build", "%s:%s" % (kind, src))
            assert r.returncode == 0, r.stderr
            assert os.path.exists(src + ".db")
            r = run("map", "query", "%s:%s" % (kind, src), "ROOT")
            assert (r.returncode, r.stdout) == (0, "admin@example.org\n"), r
            r = run("map", "query", "%s:%s" % (kind, src), "list")
            assert r.stdout == "a@example.org, b@example.org\n", r
            r = run("map", "query", "%s:%s" % (kind, src), "nobody")
            assert (r.returncode, r.stdout) == (1, ""), r
        # no temporary files left beside the table
        assert sorted(os.listdir(d)) == ["aliases", "aliases.db"]


def test_map_build_bad_line_keeps_old_table():
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "t")
        write(src, "key value\n")
        assert run("map", "build", "hash:" + src).returncode == 0
        write(src, "key other\n\nbroken\n")
        r = run("map", "build", "hash:" + src)
        assert r.returncode == 1
        assert "%s: line 3: missing value" % src in r.stderr, r.stderr
        r = run("map", "query", "hash:" + src, "key")
        assert r.stdout == "value\n", r


def test_map_query_address_order_and_list():
    with tempfile.TemporaryDirectory() as d:
        t = os.path.join(d, "virtual")
        write(t, "user@example.com   exact\n"
                 "@example.com       catchall\n")
        r2 = os.path.join(d, "re")
        write(r2, "/^(.*)-(.*)@example\\.org$/ $2 via $1\n")
        maps = "texthash:%s, regexp:%s" % (t, r2)
        r = run("map", "query", "-a", maps, "user+tag@example.com")
        assert r.stdout == "exact\n", r
        r = run("map", "query", "-a", maps, "other@example.com")
        assert r.stdout == "catchall\n", r
        r = run("map", "query", "-a", "-d", "-", maps, "user-x@example.com")
        assert r.stdout == "exact\n", r
        r = run("map", "query", "-a", maps, "sales-bob@example.org")
        assert r.stdout == "bob via sales\n", r
        r = run("map", "query", "cidr:/nonexistent", "1.2.3.4")
        assert r.returncode == 1 and "/nonexistent" in r.stderr, r
