/*
 * test_maps.c - unit tests for common/maps*.c: every table type with good
 * files and bad lines, the address search order, case folding, map_build
 * for hash and btree, and cidr_list_match.  Files live in a fresh
 * temporary directory per test.
 */
#include <dlfcn.h>
#include <pwd.h>
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "maps.h"
#include "mem.h"
#include "privs.h"
#include "strbuf.h"

static char tmpdir[64];

static void setup_dir(void)
{
    strcpy(tmpdir, "/tmp/postern-maps-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_dir(void)
{
    strbuf cmd;
    strbuf_init(&cmd);
    strbuf_printf(&cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(strbuf_str(&cmd)), 0);
    strbuf_release(&cmd);
}

/* Write content to tmpdir/name; return "tmpdir/name" (caller frees). */
static char *write_file(const char *name, const char *content)
{
    strbuf path;
    strbuf_init(&path);
    strbuf_printf(&path, "%s/%s", tmpdir, name);
    FILE *fp = fopen(strbuf_str(&path), "w");
    ck_assert_ptr_nonnull(fp);
    fputs(content, fp);
    ck_assert_int_eq(fclose(fp), 0);
    return strbuf_detach(&path, NULL);
}

/* Open "type:tmpdir/name" holding content; fail the test if it does not. */
static map *open_file_map(const char *type, const char *name, const char *content)
{
    char *path = write_file(name, content);
    strbuf spec, err;
    strbuf_init(&spec);
    strbuf_init(&err);
    strbuf_printf(&spec, "%s:%s", type, path);
    map *m = map_open(strbuf_str(&spec), &err);
    ck_assert_msg(m != NULL, "%s: %s", strbuf_str(&spec), strbuf_str(&err));
    xfree(path);
    strbuf_release(&spec);
    strbuf_release(&err);
    return m;
}

/* Opening must fail with err == "PATH: want" (PATH = tmpdir/name). */
/* Opening must fail with err starting "PATH: want" (PATH = tmpdir/name);
 * prefix_only for messages that end in the C library's own words. */
static void expect_open_error_how(const char *type, const char *name,
                                  const char *content, const char *want,
                                  int prefix_only)
{
    char *path = write_file(name, content);
    strbuf spec, err, full;
    strbuf_init(&spec);
    strbuf_init(&err);
    strbuf_init(&full);
    strbuf_printf(&spec, "%s:%s", type, path);
    strbuf_printf(&full, "%s: %s", path, want);
    map *m = map_open(strbuf_str(&spec), &err);
    ck_assert_msg(m == NULL, "%s opened despite a bad line", strbuf_str(&spec));
    if (prefix_only)
        ck_assert_msg(strncmp(strbuf_str(&err), strbuf_str(&full), full.len) == 0
                      && err.len > full.len,
                      "\"%s\" does not start with \"%s\"", strbuf_str(&err),
                      strbuf_str(&full));
    else
        ck_assert_str_eq(strbuf_str(&err), strbuf_str(&full));
    xfree(path);
    strbuf_release(&spec);
    strbuf_release(&err);
    strbuf_release(&full);
}

static void expect_open_error(const char *type, const char *name,
                              const char *content, const char *want)
{
    expect_open_error_how(type, name, content, want, 0);
}

static void expect_lookup(map *m, const char *key, int want_rc, const char *want)
{
    strbuf out;
    strbuf_init(&out);
    int rc = map_lookup(m, key, &out);
    ck_assert_msg(rc == want_rc, "%s: lookup \"%s\" rc %d want %d", map_spec(m),
                  key, rc, want_rc);
    ck_assert_str_eq(strbuf_str(&out), want);
    strbuf_release(&out);
}

/* ---- texthash, inline, static ------------------------------------------ */

START_TEST(texthash_good)
{
    map *m = open_file_map("texthash", "t",
        "# comment\n"
        "Alice   alice@example.org\n"
        "\n"
        "bob bob@example.org,\n"
        "    bobby@example.org\n"
        "  # indented comment\n"
        "alice second@example.org\n"
        "carol\tvalue with  spaces   \n");
    expect_lookup(m, "alice", 1, "alice@example.org");
    expect_lookup(m, "ALICE", 1, "alice@example.org");
    expect_lookup(m, "bob", 1, "bob@example.org, bobby@example.org");
    expect_lookup(m, "carol", 1, "value with  spaces");
    expect_lookup(m, "dave", 0, "");
    expect_lookup(m, "#", 0, "");
    map_close(m);
}
END_TEST

START_TEST(alias_file_format)
{
    /* aliases(5) "name: value" reads like "name value" */
    map *m = open_file_map("texthash", "aliases",
        "postmaster: root\n"
        "MAILER-DAEMON:\tpostmaster\n"
        "team: alice,\n"
        "\tbob, |\"/usr/bin/logger x\"\n"
        "2001:db8:: ipv6-key-keeps-colons\n"
        "a:b value-of-a-colon-b\n");
    expect_lookup(m, "postmaster", 1, "root");
    expect_lookup(m, "postmaster:", 0, "");
    expect_lookup(m, "mailer-daemon", 1, "postmaster");
    expect_lookup(m, "team", 1, "alice, bob, |\"/usr/bin/logger x\"");
    expect_lookup(m, "2001:db8::", 1, "ipv6-key-keeps-colons");
    expect_lookup(m, "a:b", 1, "value-of-a-colon-b");
    map_close(m);
    expect_open_error("texthash", "aliases2", "root: admin\nempty:\n",
                      "line 2: missing value");
}
END_TEST

START_TEST(texthash_bad)
{
    expect_open_error("texthash", "t1", "a b\nlonely\nc d\n", "line 2: missing value");
    expect_open_error("texthash", "t2", "  leading continuation\n",
                      "line 1: continuation line without a preceding line");
    strbuf err;
    strbuf_init(&err);
    strbuf_printf(&err, "texthash:%s/absent", tmpdir);
    strbuf err2;
    strbuf_init(&err2);
    ck_assert_ptr_null(map_open(strbuf_str(&err), &err2));
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err2), "No such file"));
    strbuf_release(&err);
    strbuf_release(&err2);
}
END_TEST

START_TEST(inline_and_static)
{
    strbuf err;
    strbuf_init(&err);
    map *m = map_open("inline:{ Key1=v1, key2=v2 { key3 = value, with comma } }", &err);
    ck_assert_msg(m != NULL, "%s", strbuf_str(&err));
    expect_lookup(m, "key1", 1, "v1");
    expect_lookup(m, "KEY2", 1, "v2");
    expect_lookup(m, "key3", 1, "value, with comma");
    expect_lookup(m, "key4", 0, "");
    map_close(m);

    ck_assert_ptr_null(map_open("inline:{ a=b, c }", &err));
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "missing '='"));
    strbuf_reset(&err);
    ck_assert_ptr_null(map_open("inline:{ =b }", &err));
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "missing key"));
    strbuf_reset(&err);
    ck_assert_ptr_null(map_open("inline:a=b", &err));
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "expected inline:{"));
    strbuf_reset(&err);
    ck_assert_ptr_null(map_open("inline:{ {a=b }", &err));

    m = map_open("static:OK", &err);
    ck_assert_ptr_nonnull(m);
    expect_lookup(m, "anything", 1, "OK");
    map_close(m);
    m = map_open("static:{ relay via here }", &err);
    ck_assert_ptr_nonnull(m);
    expect_lookup(m, "x", 1, "relay via here");
    map_close(m);

    m = map_open("proxy:static:{ via proxy }", &err);
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(map_spec(m), "proxy:static:{ via proxy }");
    expect_lookup(m, "x", 1, "via proxy");
    map_close(m);

    strbuf_reset(&err);
    ck_assert_ptr_null(map_open("proxy:nosuch:thing", &err));
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "unsupported map type"));
    strbuf_reset(&err);
    ck_assert_ptr_null(map_open("pcre:/etc/x", &err));
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "unsupported map type"));
    strbuf_reset(&err);
    ck_assert_ptr_null(map_open("nosuch:thing", &err));
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "unsupported map type"));
    strbuf_reset(&err);
    ck_assert_ptr_null(map_open("no-colon", &err));
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "expected type:name"));
    strbuf_release(&err);
}
END_TEST

/* ---- hash and btree ------------------------------------------------------- */

static void build_and_query(const char *type)
{
    char *src = write_file("aliases",
        "Postmaster root\n"
        "root  admin@example.org\n"
        "list  a@x.org,\n"
        "  b@y.org\n"
        "root  ignored-duplicate\n");
    strbuf err, spec;
    strbuf_init(&err);
    strbuf_init(&spec);
    ck_assert_msg(map_build(type, src, &err) == 0, "%s", strbuf_str(&err));
    strbuf_printf(&spec, "%s:%s", type, src);
    map *m = map_open(strbuf_str(&spec), &err);
    ck_assert_msg(m != NULL, "%s", strbuf_str(&err));
    expect_lookup(m, "postmaster", 1, "root");
    expect_lookup(m, "POSTMASTER", 1, "root");
    expect_lookup(m, "root", 1, "admin@example.org");
    expect_lookup(m, "list", 1, "a@x.org, b@y.org");
    expect_lookup(m, "nobody", 0, "");
    expect_lookup(m, "roo", 0, "");

    /* a rebuilt file is picked up by the open table */
    sleep(0);
    xfree(write_file("aliases", "root newadmin@example.org\n"));
    ck_assert_msg(map_build(type, src, &err) == 0, "%s", strbuf_str(&err));
    expect_lookup(m, "root", 1, "newadmin@example.org");
    expect_lookup(m, "postmaster", 0, "");

    /* a bad source leaves the current .db alone */
    xfree(write_file("aliases", "root other\nbroken\n"));
    strbuf_reset(&err);
    ck_assert_int_eq(map_build(type, src, &err), -1);
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "line 2: missing value"));
    expect_lookup(m, "root", 1, "newadmin@example.org");
    map_close(m);

    /* no temporary files left behind */
    strbuf cmd;
    strbuf_init(&cmd);
    strbuf_printf(&cmd, "ls '%s' | grep -c tmp", tmpdir);
    FILE *p = popen(strbuf_str(&cmd), "r");
    char line[16] = "";
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), p));
    pclose(p);
    ck_assert_str_eq(line, "0\n");
    strbuf_release(&cmd);
    xfree(src);
    strbuf_release(&err);
    strbuf_release(&spec);
}

START_TEST(hash_build_lookup)
{
    build_and_query("hash");
}
END_TEST

START_TEST(btree_build_lookup)
{
    build_and_query("btree");
}
END_TEST

START_TEST(db_open_errors)
{
    strbuf err, spec;
    strbuf_init(&err);
    strbuf_init(&spec);
    strbuf_printf(&spec, "hash:%s/missing", tmpdir);
    ck_assert_ptr_null(map_open(strbuf_str(&spec), &err));
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "missing.db"));

    /* a hash file opened as btree is refused */
    char *src = write_file("t", "a b\n");
    ck_assert_int_eq(map_build("hash", src, &err), 0);
    strbuf_printf(&spec, "btree:%s", src);
    strbuf_reset(&err);
    ck_assert_ptr_null(map_open(strbuf_str(&spec), &err));
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "cannot open as btree"));

    strbuf_reset(&err);
    ck_assert_int_eq(map_build("cidr", src, &err), -1);
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "only hash and btree"));
    xfree(src);
    strbuf_release(&err);
    strbuf_release(&spec);
}
END_TEST

/* ---- cidr ------------------------------------------------------------------ */

START_TEST(cidr_good)
{
    map *m = open_file_map("cidr", "c",
        "# networks\n"
        "192.168.1.0/24     REJECT local net\n"
        "192.168.0.0/16     OK\n"
        "10.1.2.3           host\n"
        "2001:db8::/32      v6 net\n"
        "[2001:db9::]/48    bracketed\n"
        "::1                loopback6\n"
        "0.0.0.0/0          everything4\n");
    expect_lookup(m, "192.168.1.77", 1, "REJECT local net");
    expect_lookup(m, "192.168.2.1", 1, "OK");
    expect_lookup(m, "10.1.2.3", 1, "host");
    expect_lookup(m, "10.1.2.4", 1, "everything4");
    expect_lookup(m, "::ffff:10.1.2.3", 1, "host");
    expect_lookup(m, "::fffe:10.1.2.3", 0, "");
    expect_lookup(m, "2001:db8:ffff::1", 1, "v6 net");
    expect_lookup(m, "[2001:DB9::5]", 1, "bracketed");
    expect_lookup(m, "2001:db9:1::5", 0, "");
    expect_lookup(m, "::1", 1, "loopback6");
    expect_lookup(m, "not-an-address", 0, "");
    expect_lookup(m, "", 0, "");
    map_close(m);
}
END_TEST

START_TEST(cidr_bad)
{
    expect_open_error("cidr", "c1", "1.2.3.0/24 ok\n1.2.3.4/24 bad\n",
                      "line 2: non-null host address bits \"1.2.3.4/24\"");
    expect_open_error("cidr", "c2", "1.2.3.0/33 x\n",
                      "line 1: bad network prefix length \"1.2.3.0/33\"");
    expect_open_error("cidr", "c3", "1.2.3/24 x\n",
                      "line 1: bad network address \"1.2.3/24\"");
    expect_open_error("cidr", "c4", "1.2.3.0/24\n", "line 1: missing result");
    expect_open_error("cidr", "c5", "2001:db8::1/32 x\n",
                      "line 1: non-null host address bits \"2001:db8::1/32\"");
    expect_open_error("cidr", "c6", "1.2.3.0/ x\n",
                      "line 1: bad network prefix length \"1.2.3.0/\"");
    expect_open_error("cidr", "c7", "[1.2.3.4] x\n",
                      "line 1: bad network address \"[1.2.3.4]\"");
    expect_open_error("cidr", "c8", "1.2.3.0/2x4 x\n",
                      "line 1: bad network prefix length \"1.2.3.0/2x4\"");
}
END_TEST

START_TEST(cidr_list)
{
    strbuf err;
    strbuf_init(&err);
    const char *list = "127.0.0.0/8, [::1]/128 192.168.1.0/24\t2001:db8::/32";
    ck_assert_int_eq(cidr_list_match(list, "127.0.0.1", &err), 1);
    ck_assert_int_eq(cidr_list_match(list, "127.255.255.254", &err), 1);
    ck_assert_int_eq(cidr_list_match(list, "128.0.0.1", &err), 0);
    ck_assert_int_eq(cidr_list_match(list, "::1", &err), 1);
    ck_assert_int_eq(cidr_list_match(list, "::2", &err), 0);
    ck_assert_int_eq(cidr_list_match(list, "192.168.1.200", &err), 1);
    ck_assert_int_eq(cidr_list_match(list, "192.168.2.1", &err), 0);
    ck_assert_int_eq(cidr_list_match(list, "2001:db8:1::9", &err), 1);
    ck_assert_int_eq(cidr_list_match(list, "garbage", &err), 0);
    ck_assert_int_eq(cidr_list_match(list, "::ffff:127.0.0.1", &err), 1);
    ck_assert_int_eq(cidr_list_match(list, "::ffff:128.0.0.1", &err), 0);
    ck_assert_int_eq(cidr_list_match(list, "[::1]", &err), 1);
    ck_assert_int_eq(cidr_list_match("", "127.0.0.1", &err), 0);
    ck_assert_int_eq(cidr_list_match("!10.0.0.1 10.0.0.0/8", "10.0.0.1", &err), 0);
    ck_assert_int_eq(cidr_list_match("!10.0.0.1 10.0.0.0/8", "10.0.0.2", &err), 1);
    ck_assert_int_eq(cidr_list_match("10.0.0.0/8 10.0.0.1/8", "10.9.9.9", &err), 1);
    ck_assert_int_eq(cidr_list_match("11.0.0.0/8 10.0.0.1/8", "10.9.9.9", &err), -1);
    ck_assert_str_eq(strbuf_str(&err), "non-null host address bits \"10.0.0.1/8\"");
    strbuf_reset(&err);
    ck_assert_int_eq(cidr_list_match("hash:/etc/x", "10.9.9.9", &err), -1);
    ck_assert_str_eq(strbuf_str(&err),
                     "files and tables are not supported in a network list \"hash:/etc/x\"");
    strbuf_reset(&err);
    ck_assert_int_eq(cidr_list_match("/etc/postern/networks", "10.9.9.9", &err), -1);
    ck_assert_str_eq(strbuf_str(&err), "files and tables are not supported in a network "
                     "list \"/etc/postern/networks\"");
    strbuf_reset(&err);
    ck_assert_int_eq(cidr_list_match("btree:/etc/x", "10.9.9.9", &err), -1);
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "files and tables"));
    strbuf_reset(&err);
    ck_assert_int_eq(cidr_list_match("fe80::/10 2001:db8:::1", "10.9.9.9", &err), -1);
    ck_assert_str_eq(strbuf_str(&err), "bad network address \"2001:db8:::1\"");
    strbuf_release(&err);
}
END_TEST

/* ---- regexp ----------------------------------------------------------------- */

START_TEST(regexp_good)
{
    map *m = open_file_map("regexp", "r",
        "# comment\n"
        "/^(.*)\\+(.*)@example\\.com$/   $1 ext=${2} cost=$$5\n"
        "/^postmaster@/                 admin\n"
        "/^CaseSensitive@/I             exact\n"
        "if /@lists\\./\n"
        "/^owner-(.*)@/                 owner of $1\n"
        "!/^list-/                      not a list\n"
        "endif\n"
        "/a\\/b/                         slash\n"
        "|^pipe|                        other delimiter\n"
        "/^(x)|(y)$/                     got [$1][$2]\n");
    expect_lookup(m, "joe+foo@example.com", 1, "joe ext=foo cost=$5");
    expect_lookup(m, "JOE+FOO@EXAMPLE.COM", 1, "JOE ext=FOO cost=$5");
    expect_lookup(m, "PostMaster@anywhere", 1, "admin");
    expect_lookup(m, "CaseSensitive@x", 1, "exact");
    expect_lookup(m, "casesensitive@x", 0, "");
    expect_lookup(m, "owner-dev@lists.example.org", 1, "owner of dev");
    expect_lookup(m, "bob@lists.example.org", 1, "not a list");
    expect_lookup(m, "list-dev@lists.example.org", 0, "");
    expect_lookup(m, "owner-dev@example.org", 0, "");
    expect_lookup(m, "a/b", 1, "slash");
    expect_lookup(m, "pipe", 1, "other delimiter");
    expect_lookup(m, "y", 1, "got [][y]");
    map_close(m);
}
END_TEST

START_TEST(regexp_bad)
{
    expect_open_error_how("regexp", "r1", "/a/ ok\n/(unclosed/ x\n",
                          "line 2: bad regexp /(unclosed/: ", 1);
    expect_open_error("regexp", "r2", "/abc x\n",
                      "line 1: unterminated pattern (missing closing '/')");
    expect_open_error("regexp", "r3", "/abc/q x\n", "line 1: unknown regexp flag 'q'");
    expect_open_error("regexp", "r4", "/a/ x\nendif\n", "line 2: endif without if");
    expect_open_error("regexp", "r5", "# c\nif /a/\n/b/ x\n", "line 2: if without endif");
    expect_open_error("regexp", "r6", "/(a)/ $2\n",
                      "line 1: result uses $2 but the pattern has 1 group");
    expect_open_error("regexp", "r7", "!/(a)/ $1\n",
                      "line 1: $1 in the result of a negated pattern");
    expect_open_error("regexp", "r8", "/a/\n", "line 1: missing result");
    expect_open_error("regexp", "r9", "/a/ cost $x\n",
                      "line 1: '$' in result must be $$ or $1..$9");
    expect_open_error("regexp", "r10", "a/ x\n", "line 1: pattern must start with '/'");
    expect_open_error("regexp", "r11", "if /a/ junk\nendif\n",
                      "line 1: text after if condition");
    expect_open_error("regexp", "r12", "if /a/\nendif x\n", "line 2: text after endif");
    expect_open_error("regexp", "r13", "/a/ ${1\n",
                      "line 1: '$' in result must be $$ or $1..$9");
    /* nested repetitions that would make regcomp blow up */
    /* a quantifier stacked on a bound is refused */
    expect_open_error("regexp", "r15", "/a{2}+/ x\n",
                      "line 1: regexp /a{2}+/ too complex (repetitions nest too deep)");
    expect_open_error("regexp", "r16", "/((a{100}){100}){100}/ x\n",
                      "line 1: regexp /((a{100}){100}){100}/ too complex "
                      "(repetitions nest too deep)");
    expect_open_error("regexp", "r18", "/(((((((((a*b*)+)+)+)+)+)+)+)+)+/ x\n",
                      "line 1: regexp /(((((((((a*b*)+)+)+)+)+)+)+)+)+/ too complex "
                      "(repetitions nest too deep)");
    expect_open_error("regexp", "r19", "/(a*b*c*d*e*f*g*h*i*j*){1,300}/ x\n",
                      "line 1: regexp /(a*b*c*d*e*f*g*h*i*j*){1,300}/ too complex "
                      "(repetitions nest too deep)");
    {
        /* Runs of stacked '*', '+', '?' (undefined in POSIX; glibc's regcomp
         * takes exponential time on them: fuzz_maps timeouts with "^(.***...)"
         * and, from a CI run, a few runs of 8-10 stars) are compiled collapsed
         * to one operator, so they open at once and match as one operator. */
        strbuf stars;
        strbuf_init(&stars);
        strbuf_append_str(&stars, "/^(x.");
        for (int i = 0; i < 100; i++)
            strbuf_append_char(&stars, '*');
        strbuf_append_str(&stars, ")$/ got $1\n"
                          "/^b++$/ plus\n/^c??d$/ opt\n/^e+?f$/ star\n/[*+?]{2}/ literal\n"
                          "/^(.********+.**\252**********g********\317)/ ci\n");
        map *sm = open_file_map("regexp", "r22", strbuf_str(&stars));
        expect_lookup(sm, "xyz", 1, "got xyz");
        expect_lookup(sm, "bbb", 1, "plus");
        expect_lookup(sm, "b", 1, "plus");
        expect_lookup(sm, "cd", 1, "opt");
        expect_lookup(sm, "d", 1, "opt");
        expect_lookup(sm, "ccd", 0, "");
        expect_lookup(sm, "f", 1, "star");
        expect_lookup(sm, "eef", 1, "star");
        expect_lookup(sm, "a*+b", 1, "literal");
        expect_lookup(sm, "zz\252g\317", 1, "ci");
        map_close(sm);
        strbuf_release(&stars);
    }
    /* quantifiers stacked through groups: regcomp ran for minutes
     * (fuzz_maps timeout, 2026-11-28) */
    expect_open_error("regexp", "r23", "/^(((((((a*)+)+)+)+)+)+)+/ x\n",
                      "line 1: regexp /^(((((((a*)+)+)+)+)+)+)+/ too complex (repetitions nest too deep)");
    expect_open_error("regexp", "r24", "/^((((a*)+)+)+)+/ x\n",
                      "line 1: regexp /^((((a*)+)+)+)+/ too complex (repetitions nest too deep)");
    expect_open_error("regexp", "r21", "/^(a*)*\\1$/ x\n",
                      "line 1: regexp /^(a*)*\\1$/: back-references are not supported");
    /* realistic patterns stay well inside the limits */
    strbuf big;
    strbuf_init(&big);
    strbuf_append_str(&big, "/^Subject:.*(");
    for (int i = 0; i < 300; i++)
        strbuf_appendf(&big, "%sspamword%03d", i ? "|" : "", i);
    strbuf_append_str(&big, ")/ REJECT\n"
                      "/^([a-z0-9._%+-]{1,64})@([a-z0-9.-]{1,253})\\.([a-z]{2,63})$/ $1 at $2\n");
    map *m = open_file_map("regexp", "r20", strbuf_str(&big));
    expect_lookup(m, "subject: buy SPAMWORD299 now", 1, "REJECT");
    expect_lookup(m, "joe@example.com", 1, "joe at example");
    map_close(m);
    strbuf_release(&big);
    m = open_file_map("regexp", "r17",
                           "/^(ab){1,50}[]a{}]+x{2,}$/ ok\n/[[:alpha:]{]+(c)/ $1\n"
                           "/^[\\1]x\\.y$/ bracketed-backslash\n");
    expect_lookup(m, "ababaxx", 1, "ok");
    expect_lookup(m, "a{c", 1, "c");
    expect_lookup(m, "1x.y", 1, "bracketed-backslash");
    map_close(m);
    /* up to four quantifiers stacked through groups still compile */
    m = open_file_map("regexp", "r26", "/^(((a*)+)+)+$/ many-a\n/^(([a-z]+\\.)+)+com$/ dotcom\n");
    expect_lookup(m, "aaaa", 1, "many-a");
    expect_lookup(m, "mail.example.com", 1, "dotcom");
    map_close(m);
    /* continuation lines count from the line where the rule starts */
    expect_open_error("regexp", "r14", "/a/ x\n\n/b/q\n  result\n",
                      "line 3: unknown regexp flag 'q'");
}
END_TEST

/* ---- unix -------------------------------------------------------------------- */

/* Counts the NSS lookups maps_unix.c makes (the unit binary's definition
 * wins over libc's for libpostern.a; every call is passed on). */
static int getpwnam_r_calls;
int getpwnam_r(const char *name, struct passwd *pw, char *buf, size_t size,
               struct passwd **result)
{
    static int (*real)(const char *, struct passwd *, char *, size_t, struct passwd **);
    if (real == NULL)
        real = (int (*)(const char *, struct passwd *, char *, size_t, struct passwd **))
            dlsym(RTLD_NEXT, "getpwnam_r");
    getpwnam_r_calls++;
    return real(name, pw, buf, size, result);
}

START_TEST(unix_passwd)
{
    strbuf err;
    strbuf_init(&err);
    map *m = map_open("unix:passwd.byname", &err);
    ck_assert_ptr_nonnull(m);
    strbuf out;
    strbuf_init(&out);
    ck_assert_int_eq(map_lookup(m, "ROOT", &out), 1);
    ck_assert_msg(strncmp(strbuf_str(&out), "root:", 5) == 0, "%s", strbuf_str(&out));
    /* name:passwd:uid:gid:gecos:home:shell */
    int colons = 0;
    for (const char *p = strbuf_str(&out); *p; p++)
        colons += *p == ':';
    ck_assert_int_eq(colons, 6);
    ck_assert_ptr_nonnull(strstr(strbuf_str(&out), ":0:0:"));
    ck_assert_int_eq(map_lookup(m, "no-such-user-postern", &out), 0);
    ck_assert_uint_eq(out.len, 0);
    /* An address is no account name: answered without NSS. */
    int calls = getpwnam_r_calls;
    ck_assert_int_eq(map_lookup(m, "root@localhost", &out), 0);
    ck_assert_int_eq(getpwnam_r_calls, calls);
    ck_assert_int_eq(map_lookup(m, "root", &out), 1);
    ck_assert_int_gt(getpwnam_r_calls, calls);
    map_close(m);

    m = map_open("unix:group.byname", &err);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(map_lookup(m, "root", &out), 1);
    ck_assert_msg(strncmp(strbuf_str(&out), "root:", 5) == 0, "%s", strbuf_str(&out));
    map_close(m);

    ck_assert_ptr_null(map_open("unix:shadow.byname", &err));
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "unknown table"));
    strbuf_release(&out);
    strbuf_release(&err);
}
END_TEST

/* A unix: table opened before chroot still answers inside the jail. */
START_TEST(unix_passwd_in_chroot)
{
    if (geteuid() != 0)
        return;                 /* chroot needs root; nothing to check */
    strbuf err;
    strbuf_init(&err);
    map *pw = map_open("unix:passwd.byname", &err);
    map *gr = map_open("unix:group.byname", &err);
    ck_assert_ptr_nonnull(pw);
    ck_assert_ptr_nonnull(gr);
    strbuf live;
    strbuf_init(&live);
    ck_assert_int_eq(map_lookup(pw, "root", &live), 1);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        strbuf out;
        strbuf_init(&out);
        strbuf jail_err;
        strbuf_init(&jail_err);
        if (privs_chrooted() != 0)
            _exit(7);
        if (privs_chroot(tmpdir, &jail_err) != 0 || !privs_chrooted())
            _exit(2);
        if (access("/etc/passwd", F_OK) == 0)
            _exit(3);
        if (map_lookup(pw, "Root", &out) != 1 || strcmp(strbuf_str(&out), strbuf_str(&live)) != 0)
            _exit(4);
        if (map_lookup(pw, "no-such-user-postern", &out) != 0)
            _exit(5);
        if (map_lookup(gr, "root", &out) != 1 || strncmp(strbuf_str(&out), "root:", 5) != 0)
            _exit(6);
        _exit(0);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "chrooted lookup failed with status %d", WEXITSTATUS(status));
    map_close(pw);
    map_close(gr);
    strbuf_release(&live);
    strbuf_release(&err);
}
END_TEST

/* ---- lists and the address search order ---------------------------------------- */

START_TEST(maps_list_order)
{
    char *a = write_file("a", "k1 from-a\n");
    char *b = write_file("b", "k1 from-b\nk2 from-b\n");
    strbuf list, err, out;
    strbuf_init(&list);
    strbuf_init(&err);
    strbuf_init(&out);
    strbuf_printf(&list, "texthash:%s, texthash:%s inline:{k3=from-inline, k4=x}", a, b);
    maps *ms = maps_open(strbuf_str(&list), &err);
    ck_assert_msg(ms != NULL, "%s", strbuf_str(&err));
    ck_assert_int_eq(maps_count(ms), 3);
    ck_assert_int_eq(maps_lookup(ms, "k1", &out), 1);
    ck_assert_str_eq(strbuf_str(&out), "from-a");
    ck_assert_int_eq(maps_lookup(ms, "K2", &out), 1);
    ck_assert_str_eq(strbuf_str(&out), "from-b");
    ck_assert_int_eq(maps_lookup(ms, "k3", &out), 1);
    ck_assert_str_eq(strbuf_str(&out), "from-inline");
    ck_assert_int_eq(maps_lookup(ms, "k5", &out), 0);
    maps_close(ms);

    ms = maps_open("", &err);
    ck_assert_ptr_nonnull(ms);
    ck_assert_int_eq(maps_count(ms), 0);
    ck_assert_int_eq(maps_lookup(ms, "k1", &out), 0);
    maps_close(ms);

    /* one bad table fails the whole list */
    strbuf_printf(&list, "texthash:%s, texthash:%s/absent", a, tmpdir);
    ck_assert_ptr_null(maps_open(strbuf_str(&list), &err));
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "absent"));
    ck_assert_ptr_null(maps_open("inline:{a=b", &err));
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "missing '}'"));
    xfree(a);
    xfree(b);
    strbuf_release(&list);
    strbuf_release(&err);
    strbuf_release(&out);
}
END_TEST

/* Look addr up in a texthash table holding exactly the keys in content. */
static void expect_addr(maps *ms, const char *addr, const char *delim,
                        int flags, int want_rc, const char *want)
{
    strbuf out;
    strbuf_init(&out);
    int rc = maps_lookup_addr_ex(ms, addr, delim, flags, &out);
    ck_assert_msg(rc == want_rc, "%s: rc %d want %d", addr, rc, want_rc);
    ck_assert_str_eq(strbuf_str(&out), want);
    strbuf_release(&out);
}

static maps *open_list(const char *fmt, const char *p1, const char *p2)
{
    strbuf list, err;
    strbuf_init(&list);
    strbuf_init(&err);
    strbuf_printf(&list, fmt, p1, p2);
    maps *ms = maps_open(strbuf_str(&list), &err);
    ck_assert_msg(ms != NULL, "%s", strbuf_str(&err));
    strbuf_release(&list);
    strbuf_release(&err);
    return ms;
}

START_TEST(addr_search_order)
{
    /* every form present: the most specific wins, one by one removed */
    const char *forms[] = { "user+ext@example.com", "user@example.com",
                            "user+ext", "user", "@example.com" };
    for (int first = 0; first < 5; first++) {
        strbuf content;
        strbuf_init(&content);
        for (int i = first; i < 5; i++)
            strbuf_appendf(&content, "%s form%d\n", forms[i], i);
        char *path = write_file("order", strbuf_str(&content));
        maps *ms = open_list("texthash:%s%s", path, "");
        char want[24];
        snprintf(want, sizeof(want), "form%d", first);
        expect_addr(ms, "User+Ext@Example.COM", "+", 0, 1, want);
        maps_close(ms);
        xfree(path);
        strbuf_release(&content);
    }

    char *path = write_file("t",
        "user form-user\n"
        "@example.com catchall\n"
        "other-x@example.com dash\n");
    maps *ms = open_list("texthash:%s%s", path, "");
    /* MAPS_ADDR_NO_USER skips the bare user forms */
    expect_addr(ms, "user+ext@example.com", "+", MAPS_ADDR_NO_USER, 1, "catchall");
    expect_addr(ms, "user+ext@example.com", "+", 0, 1, "form-user");
    /* no delimiter: no extension forms */
    expect_addr(ms, "user+ext@example.com", NULL, 0, 1, "catchall");
    expect_addr(ms, "user+ext@example.com", "", 0, 1, "catchall");
    /* several delimiter characters, first one in the address counts */
    expect_addr(ms, "other-x-y@example.com", "+-", 0, 1, "catchall");
    expect_addr(ms, "user-a+b@example.com", "+-", 0, 1, "form-user");
    /* a leading delimiter is not an extension */
    expect_addr(ms, "+user@nowhere.org", "+", 0, 0, "");
    /* unqualified address: user+ext then user */
    expect_addr(ms, "user+ext", "+", 0, 1, "form-user");
    expect_addr(ms, "nobody@nowhere.org", "+", 0, 0, "");
    /* an address without a local part tries only itself and @domain */
    expect_addr(ms, "@example.com", "+", 0, 1, "catchall");
    /* the '@' inside a quoted local part is not the domain separator */
    expect_addr(ms, "\"x@example.com\"", "+", 0, 0, "");
    maps_close(ms);

    /* regexp and cidr tables get only the full address */
    char *re = write_file("re", "/^user@example\\.com$/ re-user-at\n/^user$/ re-user\n");
    ms = open_list("regexp:%s, texthash:%s", re, path);
    expect_addr(ms, "user+ext@example.com", "+", 0, 1, "form-user");
    expect_addr(ms, "user@example.com", "+", 0, 1, "re-user-at");
    maps_close(ms);
    xfree(re);
    xfree(path);
}
END_TEST

/* maps_open_param(): empty parameter, failure reported once with the
 * parameter's name, success. */
static strbuf param_reports;
static int param_nreports;

static void param_report(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    strbuf_vappendf(&param_reports, fmt, ap);
    va_end(ap);
    param_nreports++;
}

START_TEST(open_param)
{
    strbuf_init(&param_reports);
    config_override("header_checks", "");
    ck_assert_ptr_null(maps_open_param("header_checks", param_report));
    ck_assert_int_eq(param_nreports, 0);

    config_override("header_checks", "texthash:/nonexistent/table");
    ck_assert_ptr_null(maps_open_param("header_checks", param_report));
    ck_assert_int_eq(param_nreports, 1);
    ck_assert_msg(strncmp(strbuf_str(&param_reports), "header_checks: ", 15) == 0
                  && strstr(strbuf_str(&param_reports), "/nonexistent/table") != NULL,
                  "report: %s", strbuf_str(&param_reports));

    config_override("header_checks", "inline:{ a=b }");
    maps *m = maps_open_param("header_checks", param_report);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(param_nreports, 1);
    strbuf out;
    strbuf_init(&out);
    ck_assert_int_eq(maps_lookup(m, "a", &out), 1);
    ck_assert_str_eq(strbuf_str(&out), "b");
    strbuf_release(&out);
    maps_close(m);
    strbuf_release(&param_reports);
}
END_TEST

Suite *maps_suite(void)
{
    Suite *s = suite_create("maps");
    TCase *tc = tcase_create("types");
    tcase_add_checked_fixture(tc, setup_dir, remove_dir);
    tcase_add_test(tc, texthash_good);
    tcase_add_test(tc, open_param);
    tcase_add_test(tc, texthash_bad);
    tcase_add_test(tc, alias_file_format);
    tcase_add_test(tc, inline_and_static);
    tcase_add_test(tc, hash_build_lookup);
    tcase_add_test(tc, btree_build_lookup);
    tcase_add_test(tc, db_open_errors);
    tcase_add_test(tc, cidr_good);
    tcase_add_test(tc, cidr_bad);
    tcase_add_test(tc, cidr_list);
    tcase_add_test(tc, regexp_good);
    tcase_add_test(tc, regexp_bad);
    tcase_add_test(tc, unix_passwd);
    tcase_add_test(tc, unix_passwd_in_chroot);
    tcase_add_test(tc, maps_list_order);
    tcase_add_test(tc, addr_search_order);
    suite_add_tcase(s, tc);
    return s;
}
