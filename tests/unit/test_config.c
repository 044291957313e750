/*
 * test_config.c - unit tests for common/config.c (main.cf) and
 * common/file_read.c.
 *
 * Every test that loads a file writes it into a fresh mkdtemp() directory.
 * Tests expecting a fatal error or a panic use Check's exit/signal tests,
 * which need CK_FORK=yes (the default runner setting).
 */
#include <check.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "file_read.h"
#include "mem.h"
#include "strbuf.h"

/* A fresh directory holding main.cf with the given bytes. */
static char *make_config_dir(const char *content, size_t len)
{
    char *dir = xstrdup("/tmp/postern-config-test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    strbuf path;
    strbuf_init(&path);
    strbuf_printf(&path, "%s/main.cf", dir);
    FILE *fp = fopen(strbuf_str(&path), "w");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(content, 1, len, fp), len);
    ck_assert_int_eq(fclose(fp), 0);
    strbuf_release(&path);
    return dir;
}

static char *make_dir_with(const char *content)
{
    return make_config_dir(content, strlen(content));
}

static void remove_dir(char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        strbuf path;
        strbuf_init(&path);
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            strbuf_printf(&path, "%s/%s", dir, e->d_name);
            unlink(strbuf_str(&path));
        }
        strbuf_release(&path);
        closedir(d);
    }
    rmdir(dir);
    xfree(dir);
}

/* Load TEXT; return the error message ("" on success) in a static buffer. */
static strbuf load_error;
static int load_text(const char *text, size_t len, char **dir_out)
{
    char *dir = make_config_dir(text, len);
    strbuf_reset(&load_error);
    int rc = config_load(dir, &load_error);
    if (dir_out)
        *dir_out = dir;
    else
        remove_dir(dir);
    return rc;
}

static int load_str(const char *text)
{
    return load_text(text, strlen(text), NULL);
}

static char *read_main_cf(const char *dir)
{
    strbuf path, text, err;
    strbuf_init(&path);
    strbuf_init(&text);
    strbuf_init(&err);
    strbuf_printf(&path, "%s/main.cf", dir);
    ck_assert_int_eq(file_read_all(strbuf_str(&path), &text, 0, &err), 0);
    strbuf_release(&path);
    strbuf_release(&err);
    char *s = xstrdup(strbuf_str(&text));
    strbuf_release(&text);
    return s;
}

/* ---- defaults and the table ---------------------------------------- */

START_TEST(defaults_before_load)
{
    ck_assert_str_eq(config_str("mail_name"), "postern");
    ck_assert_int_eq(config_int("default_process_limit"), 100);
    ck_assert_int_eq(config_time("max_idle"), 100);
    ck_assert_int_eq(config_time("ipc_timeout"), 3600);
    ck_assert_int_eq(config_size("message_size_limit"), 10240000);
    ck_assert_int_eq(config_bool("append_dot_mydomain"), 0);
    ck_assert_int_eq(config_is_set("mail_name"), 0);
    ck_assert_str_eq(config_default("myorigin"), "$myhostname");
    ck_assert_str_eq(config_raw("myorigin"), "$myhostname");
    ck_assert_str_eq(config_raw("alias_database"), "$alias_maps");
    ck_assert_str_eq(config_str("alias_database"), "hash:/etc/aliases");
    ck_assert_ptr_null(config_lookup_def("no_such_parameter"));
    const struct param_def *def = config_lookup_def("max_idle");
    ck_assert_ptr_nonnull(def);
    ck_assert_int_eq(def->type, PARAM_TIME);
}
END_TEST

struct each_state {
    int count;
    int duplicates;
    int saw_myhostname;
    const char *names[4096];
};

static int each_collect(const struct param_def *def, void *ctx)
{
    struct each_state *st = ctx;
    for (int i = 0; i < st->count; i++)
        if (strcmp(st->names[i], def->name) == 0)
            st->duplicates++;
    if (strcmp(def->name, "myhostname") == 0)
        st->saw_myhostname = 1;
    if (st->count < 4096)
        st->names[st->count++] = def->name;
    /* Every default of a typed parameter must parse as its type. */
    if (strchr(def->def, '$') == NULL) {
        long long n;
        int b;
        switch (def->type) {
        case PARAM_BOOL:
            ck_assert_msg(config_parse_bool(def->def, &b) == 0, "%s", def->name);
            break;
        case PARAM_TIME:
            ck_assert_msg(config_parse_time(def->def, 's', &n) == 0, "%s", def->name);
            break;
        case PARAM_INT:
        case PARAM_SIZE:
            ck_assert_msg(def->def[0] != '\0', "%s", def->name);
            (void) config_int(def->name);
            break;
        case PARAM_STR:
            break;
        }
    }
    return 0;
}

static int each_stop_at_two(const struct param_def *def, void *ctx)
{
    int *n = ctx;
    return ++*n == 2;
}

START_TEST(table_is_consistent)
{
    static struct each_state st;
    memset(&st, 0, sizeof(st));
    config_each(each_collect, &st);
    ck_assert_int_gt(st.count, 30);
    ck_assert_int_eq(st.duplicates, 0);
    ck_assert_int_eq(st.saw_myhostname, 1);
    int n = 0;
    config_each(each_stop_at_two, &n);
    ck_assert_int_eq(n, 2);
}
END_TEST

START_TEST(pick_dir_order)
{
    unsetenv("POSTERN_CONFIG_DIR");
    ck_assert_str_eq(config_pick_dir(NULL), DEFAULT_CONFIG_DIR);
    ck_assert_str_eq(config_pick_dir(""), DEFAULT_CONFIG_DIR);
    setenv("POSTERN_CONFIG_DIR", "/from/env", 1);
    ck_assert_str_eq(config_pick_dir(NULL), "/from/env");
    ck_assert_str_eq(config_pick_dir("/from/arg"), "/from/arg");
    ck_assert_str_eq(config_dir(), "/from/env");
    unsetenv("POSTERN_CONFIG_DIR");
}
END_TEST

START_TEST(computed_hostname_and_domain)
{
    const char *host = config_str("myhostname");
    ck_assert_ptr_nonnull(strchr(host, '.'));
    const char *dot = strchr(host, '.');
    ck_assert_str_eq(config_str("mydomain"), dot + 1);
    ck_assert_int_eq(load_str("myhostname = mail.example.com\n"), 0);
    ck_assert_str_eq(config_str("mydomain"), "example.com");
    ck_assert_str_eq(config_str("myorigin"), "mail.example.com");
    ck_assert_str_eq(config_str("mydestination"),
                     "mail.example.com, localhost.example.com, localhost");
    ck_assert_int_eq(load_str("myhostname = bare\n"), 0);
    ck_assert_str_eq(config_str("mydomain"), "localdomain");
    ck_assert_int_eq(load_str("myhostname = a.b\nmydomain = other.org\n"), 0);
    ck_assert_str_eq(config_str("mydomain"), "other.org");
}
END_TEST

/* ---- the parser ------------------------------------------------------ */

START_TEST(load_comments_continuations)
{
    char *dir;
    const char *text =
        "# a comment\n"
        "\n"
        "mail_name=Fancy\n"
        "mydestination = a.example,\n"
        "    b.example\n"
        "  # an indented comment inside the entry\n"
        "\n"
        "\tc.example   \n"
        "relayhost =   [smtp.example]:587   \n"
        "recipient_delimiter =\n"
        "max_use = 7\n"
        "max_use = 8\n";
    ck_assert_int_eq(load_text(text, strlen(text), &dir), 0);
    ck_assert_str_eq(strbuf_str(&load_error), "");
    ck_assert_str_eq(config_str("mail_name"), "Fancy");
    ck_assert_str_eq(config_str("mydestination"), "a.example, b.example c.example");
    ck_assert_str_eq(config_str("relayhost"), "[smtp.example]:587");
    ck_assert_str_eq(config_str("recipient_delimiter"), "");
    ck_assert_int_eq(config_is_set("recipient_delimiter"), 1);
    ck_assert_int_eq(config_int("max_use"), 8);
    ck_assert_str_eq(config_dir(), dir);
    ck_assert_str_eq(config_str("config_directory"), dir);
    ck_assert_int_eq(config_is_set("mynetworks"), 0);
    remove_dir(dir);
}
END_TEST

START_TEST(load_crlf_and_no_final_newline)
{
    ck_assert_int_eq(load_str("mail_name = a # not a comment\n"), 0);
    ck_assert_str_eq(config_str("mail_name"), "a # not a comment");
    ck_assert_int_eq(load_str("mail_name = crlf\r\nmax_use = 3"), 0);
    ck_assert_str_eq(config_str("mail_name"), "crlf");
    ck_assert_int_eq(config_int("max_use"), 3);
}
END_TEST

START_TEST(load_missing_file)
{
    strbuf err;
    strbuf_init(&err);
    ck_assert_int_eq(config_load("/nonexistent/postern", &err), -1);
    ck_assert_str_eq(strbuf_str(&err),
                     "open /nonexistent/postern/main.cf: No such file or directory");
    strbuf_release(&err);
}
END_TEST

/* Load TEXT, expect failure; return "line N: reason" (path stripped). */
static const char *load_fails(const char *text, size_t len)
{
    static strbuf tail;
    char *dir;
    ck_assert_int_eq(load_text(text, len, &dir), -1);
    strbuf expected_prefix;
    strbuf_init(&expected_prefix);
    strbuf_printf(&expected_prefix, "%s/main.cf, ", dir);
    const char *msg = strbuf_str(&load_error);
    ck_assert_msg(strncmp(msg, expected_prefix.data, expected_prefix.len) == 0,
                  "error does not name the file: %s", msg);
    strbuf_set_str(&tail, msg + expected_prefix.len);
    strbuf_release(&expected_prefix);
    remove_dir(dir);
    return strbuf_str(&tail);
}

#define FAILS(text) load_fails(text, strlen(text))

START_TEST(malformed_lines)
{
    ck_assert_str_eq(FAILS("a = 1\nb = 2\n# c\n\nd = 4\ne = 5\nnoequals value\n"),
                     "line 7: missing '=' after parameter name");
    ck_assert_str_eq(FAILS("justaname\n"), "line 1: missing '=' after parameter name");
    ck_assert_str_eq(FAILS("= value\n"), "line 1: missing parameter name before '='");
    ck_assert_str_eq(FAILS("na!me = x\n"), "line 1: bad character '!' in parameter name");
    ck_assert_str_eq(FAILS("my-name = x\n"), "line 1: bad character '-' in parameter name");
    ck_assert_str_eq(FAILS("name\x01 = x\n"), "line 1: bad character \\x01 in parameter name");
    ck_assert_str_eq(FAILS("  indented = x\nok = 1\n"),
                     "line 1: continuation line (starts with whitespace) without a preceding parameter");
    ck_assert_str_eq(FAILS("# comment\n\n\tmore\n"),
                     "line 3: continuation line (starts with whitespace) without a preceding parameter");
    /* The error names the first line of a continued entry. */
    ck_assert_str_eq(FAILS("ok = 1\nbroken\n  = value\nx = ${y\n"),
                     "line 4: parameter x: unterminated '${'");
    ck_assert_str_eq(FAILS("x = a ${y\n"), "line 1: parameter x: unterminated '${'");
    ck_assert_str_eq(FAILS("x = $(y\n"), "line 1: parameter x: unterminated '$('");
    ck_assert_str_eq(FAILS("x = ${y?abc\n"), "line 1: parameter x: unterminated '${'");
    ck_assert_str_eq(FAILS("x = ${y?${z}\n"), "line 1: parameter x: unterminated '${'");
    ck_assert_str_eq(FAILS("x = ${}\n"), "line 1: parameter x: missing parameter name after '${'");
    ck_assert_str_eq(FAILS("x = ${a b}\n"), "line 1: parameter x: bad character \\x20 in '${a'");
    ck_assert_str_eq(FAILS("x = ${y?${bad\n"), "line 1: parameter x: unterminated '${'");
    ck_assert_str_eq(FAILS("x = ${y?${}}\n"),
                     "line 1: parameter x: missing parameter name after '${'");
}
END_TEST

START_TEST(malformed_nul_byte)
{
    ck_assert_str_eq(load_fails("a = 1\nb = x\0y\n", 12), "line 2: NUL byte in file");
    ck_assert_str_eq(load_fails("\0", 1), "line 1: NUL byte in file");
}
END_TEST

START_TEST(malformed_typed_values)
{
    ck_assert_str_eq(FAILS("message_size_limit = 10m\n"),
                     "line 1: bad size configuration (plain bytes): message_size_limit = 10m");
    ck_assert_str_eq(FAILS("message_size_limit = -1\n"),
                     "line 1: bad size configuration (plain bytes): message_size_limit = -1");
    ck_assert_str_eq(FAILS("max_use = many\n"), "line 1: bad numerical configuration: max_use = many");
    ck_assert_str_eq(FAILS("max_use = 99999999999999999999999\n"),
                     "line 1: bad numerical configuration: max_use = 99999999999999999999999");
    ck_assert_str_eq(FAILS("append_dot_mydomain = perhaps\n"),
                     "line 1: bad boolean configuration: append_dot_mydomain = perhaps");
    ck_assert_str_eq(FAILS("max_idle = 5 minutes\n"),
                     "line 1: bad time configuration: max_idle = 5 minutes");
    ck_assert_str_eq(FAILS("max_idle = 5x\n"), "line 1: bad time configuration: max_idle = 5x");
    /* A value with $ is checked when it is used, not at load time. */
    ck_assert_int_eq(load_str("max_use = $nothing_here\n"), 0);
}
END_TEST

START_TEST(long_line_is_kept_whole)
{
    size_t n = 100 * 1024;
    strbuf text;
    strbuf_init(&text);
    strbuf_append_str(&text, "mynetworks = ");
    for (size_t i = 0; i < n; i++)
        strbuf_append_char(&text, 'a' + (char) (i % 26));
    strbuf_append_str(&text, "\nmail_name = after\n");
    ck_assert_int_eq(load_text(text.data, text.len, NULL), 0);
    const char *v = config_str("mynetworks");
    ck_assert_uint_eq(strlen(v), n);
    ck_assert_int_eq(v[n - 1], 'a' + (char) ((n - 1) % 26));
    ck_assert_str_eq(config_str("mail_name"), "after");
    strbuf_release(&text);
}
END_TEST

START_TEST(failed_load_changes_nothing)
{
    ck_assert_int_eq(load_str("mail_name = first\nmax_use = 5\n"), 0);
    ck_assert_int_eq(load_str("mail_name = second\nbroken line\n"), -1);
    ck_assert_str_eq(config_str("mail_name"), "first");
    ck_assert_int_eq(config_int("max_use"), 5);
}
END_TEST

/* ---- expansion ------------------------------------------------------- */

START_TEST(expansion_forms)
{
    const char *text =
        "myhostname = mx.example.org\n"
        "relayhost = $myhostname\n"
        "mail_name = [${myhostname}] ($(mail_version))\n"
        "canonical_maps = $undefined_thing|${also_undefined}|\n"
        "recipient_delimiter = cost $$5, $ alone, end $\n"
        "mynetworks = ${relayhost?yes:$relayhost}\n"
        "transport_maps = ${nothing?never}|${nothing:fallback $mail_version}\n"
        "virtual_alias_maps = ${relayhost:never}\n"
        "user_defined = u-$mydomain\n"
        "canonical_maps_2 = x\n"
        "sender_canonical_maps = $user_defined/${user_defined}\n"
        "recipient_canonical_maps = ${relayhost?${mail_version?in{ner}}}\n";
    ck_assert_int_eq(load_str(text), 0);
    ck_assert_str_eq(config_str("relayhost"), "mx.example.org");
    ck_assert_str_eq(config_str("mail_name"), "[mx.example.org] (0.1)");
    ck_assert_str_eq(config_str("canonical_maps"), "||");
    ck_assert_str_eq(config_str("recipient_delimiter"), "cost $5, $ alone, end $");
    ck_assert_str_eq(config_str("mynetworks"), "yes:mx.example.org");
    ck_assert_str_eq(config_str("transport_maps"), "|fallback 0.1");
    ck_assert_str_eq(config_str("virtual_alias_maps"), "");
    ck_assert_str_eq(config_str("sender_canonical_maps"), "u-example.org/u-example.org");
    ck_assert_str_eq(config_str("recipient_canonical_maps"), "in{ner}");
    ck_assert_str_eq(config_str("user_defined"), "u-example.org");
    ck_assert_str_eq(config_raw("relayhost"), "$myhostname");
    /* virtual_alias_domains defaults to $virtual_alias_maps */
    ck_assert_str_eq(config_str("virtual_alias_domains"), "");
}
END_TEST

START_TEST(expansion_postfix3_brace_forms)
{
    const char *text =
        "set = yes\n"
        "empty =\n"
        "a1 = ${set?{ on }:{off}}|${empty?{on}:{ off }}|${undefined?{on} : {off}}\n"
        "a2 = ${set?{x, y}}|${empty?{x}}|${empty:{fallback $set}}|${set:{never}}\n"
        "a3 = ${set?{{nested}}:{no}}|${set?{${empty:{deep}}}}\n"
        "a4 = $(set?{paren}:{no})\n";
    ck_assert_int_eq(load_str(text), 0);
    ck_assert_str_eq(config_str("a1"), "on|off|off");
    ck_assert_str_eq(config_str("a2"), "x, y||fallback yes|");
    ck_assert_str_eq(config_str("a3"), "{nested}|deep");
    ck_assert_str_eq(config_str("a4"), "paren");

    ck_assert_str_eq(FAILS("x = ${set?{a}junk}\n"),
                     "line 1: parameter x: bad conditional value: expected {value} or {value1}:{value2}");
    ck_assert_str_eq(FAILS("x = ${set:{a}:{b}}\n"),
                     "line 1: parameter x: bad conditional value: expected {value}");
    ck_assert_str_eq(FAILS("x = ${set?{a}:b}\n"),
                     "line 1: parameter x: bad conditional value: expected {value} or {value1}:{value2}");
    ck_assert_str_eq(FAILS("x = ${set?{a}:{b}:{c}}\n"),
                     "line 1: parameter x: bad conditional value: expected {value} or {value1}:{value2}");
    ck_assert_str_eq(FAILS("x = $(set?{a)\n"),
                     "line 1: parameter x: unbalanced '{' in conditional value");
    ck_assert_str_eq(FAILS("x = ${set?{${bad}:{b}}\n"),
                     "line 1: parameter x: unterminated '${'");
    ck_assert_str_eq(FAILS("x = ${set?{a}:{${}}}\n"),
                     "line 1: parameter x: missing parameter name after '${'");
}
END_TEST

START_TEST(expansion_deep_chain_ok)
{
    /* 60 levels of nesting is fine; only > 100 is fatal. */
    strbuf text;
    strbuf_init(&text);
    for (int i = 0; i < 60; i++)
        strbuf_appendf(&text, "chain%d = ${chain%d}\n", i, i + 1);
    strbuf_append_str(&text, "chain60 = bottom\nrelayhost = $chain0\n");
    ck_assert_int_eq(load_text(text.data, text.len, NULL), 0);
    ck_assert_str_eq(config_str("relayhost"), "bottom");
    strbuf_release(&text);
}
END_TEST

START_TEST(expansion_loop_is_fatal)
{
    ck_assert_int_eq(load_str("relayhost = $mail_name\nmail_name = x${relayhost}\n"), 0);
    (void) config_str("relayhost");
    ck_abort_msg("a recursion loop must not return");
}
END_TEST

START_TEST(expansion_self_loop_is_fatal)
{
    ck_assert_int_eq(load_str("relayhost = ${relayhost?$relayhost}\n"), 0);
    (void) config_str("relayhost");
    ck_abort_msg("a recursion loop must not return");
}
END_TEST

START_TEST(bad_override_syntax_is_fatal)
{
    config_override("relayhost", "${broken");
    (void) config_str("relayhost");
    ck_abort_msg("bad syntax must not return");
}
END_TEST

START_TEST(unknown_name_panics)
{
    (void) config_str("surely_not_a_parameter");
}
END_TEST

START_TEST(typed_accessor_fatal)
{
    config_override("max_idle", "soon");
    (void) config_time("max_idle");
    ck_abort_msg("bad time must not return");
}
END_TEST

START_TEST(typed_accessor_fatal_after_expansion)
{
    ck_assert_int_eq(load_str("some_number = lots\nmax_use = $some_number\n"), 0);
    (void) config_int("max_use");
    ck_abort_msg("bad number must not return");
}
END_TEST

/* ---- overrides and the cache ----------------------------------------- */

START_TEST(override_recomputes_cache)
{
    char *dir;
    const char *text = "myhostname = one.example\nmail_name = file\n";
    ck_assert_int_eq(load_text(text, strlen(text), &dir), 0);
    const char *before = config_str("myorigin");
    ck_assert_str_eq(before, "one.example");
    config_override("myhostname", "two.example");
    ck_assert_str_eq(config_str("myorigin"), "two.example");
    ck_assert_str_eq(config_str("mydomain"), "example");
    ck_assert_str_eq(before, "one.example");        /* old pointer still valid */
    ck_assert_int_eq(config_is_set("myhostname"), 1);
    ck_assert_str_eq(config_raw("myhostname"), "two.example");

    /* Overrides survive a reload; main.cf changes show through elsewhere. */
    FILE *fp;
    strbuf path;
    strbuf_init(&path);
    strbuf_printf(&path, "%s/main.cf", dir);
    fp = fopen(strbuf_str(&path), "w");
    ck_assert_ptr_nonnull(fp);
    fputs("myhostname = three.example\nmail_name = reloaded\n", fp);
    fclose(fp);
    strbuf err;
    strbuf_init(&err);
    ck_assert_int_eq(config_load(dir, &err), 0);
    ck_assert_str_eq(config_str("myhostname"), "two.example");
    ck_assert_str_eq(config_str("mail_name"), "reloaded");

    /* Removing the override shows main.cf again. */
    config_override("myhostname", NULL);
    ck_assert_str_eq(config_str("myorigin"), "three.example");

    /* Override of a user-defined name, referenced by a known one. */
    config_override("mua_restrictions", "permit_sasl_authenticated, reject");
    config_override("relayhost", "$mua_restrictions");
    ck_assert_str_eq(config_str("relayhost"), "permit_sasl_authenticated, reject");
    config_override("max_use", " 42 ");
    ck_assert_int_eq(config_int("max_use"), 42);
    strbuf_release(&err);
    strbuf_release(&path);
    remove_dir(dir);
}
END_TEST

struct unknown_seen {
    int count;
    char names[8][64];
    int lines[8];
};

static void collect_unknown(const char *name, const char *file, int line, void *ctx)
{
    struct unknown_seen *u = ctx;
    ck_assert_ptr_nonnull(strstr(file, "/main.cf"));
    if (u->count < 8) {
        snprintf(u->names[u->count], sizeof(u->names[0]), "%s", name);
        u->lines[u->count] = line;
    }
    u->count++;
}

START_TEST(unknown_names_reported)
{
    ck_assert_int_eq(load_str("mail_name = x\n# c\ntypo_parameter = 1\n\nmua_x = y\n"), 0);
    config_override("override_only", "z");
    struct unknown_seen u;
    memset(&u, 0, sizeof(u));
    config_unknown(collect_unknown, &u);
    ck_assert_int_eq(u.count, 2);
    ck_assert_str_eq(u.names[0], "typo_parameter");
    ck_assert_int_eq(u.lines[0], 3);
    ck_assert_str_eq(u.names[1], "mua_x");
    ck_assert_int_eq(u.lines[1], 5);
}
END_TEST

/* ---- typed parsing --------------------------------------------------- */

START_TEST(parse_time_units)
{
    long long t;
    ck_assert_int_eq(config_parse_time("10", 'd', &t), 0);
    ck_assert_int_eq(t, 864000);
    ck_assert_int_eq(config_parse_time("10", 's', &t), 0);
    ck_assert_int_eq(t, 10);
    ck_assert_int_eq(config_parse_time("5m", 's', &t), 0);
    ck_assert_int_eq(t, 300);
    ck_assert_int_eq(config_parse_time("2h", 's', &t), 0);
    ck_assert_int_eq(t, 7200);
    ck_assert_int_eq(config_parse_time("1w", 's', &t), 0);
    ck_assert_int_eq(t, 604800);
    ck_assert_int_eq(config_parse_time("0", 's', &t), 0);
    ck_assert_int_eq(t, 0);
    ck_assert_int_eq(config_parse_time(" 3s ", 'h', &t), 0);
    ck_assert_int_eq(t, 3);
    t = -7;
    ck_assert_int_eq(config_parse_time("", 's', &t), -1);
    ck_assert_int_eq(config_parse_time("s", 's', &t), -1);
    ck_assert_int_eq(config_parse_time("5x", 's', &t), -1);
    ck_assert_int_eq(config_parse_time("5S", 's', &t), -1);
    ck_assert_int_eq(config_parse_time("-5s", 's', &t), -1);
    ck_assert_int_eq(config_parse_time("+5s", 's', &t), -1);
    ck_assert_int_eq(config_parse_time("1h30m", 's', &t), -1);
    ck_assert_int_eq(config_parse_time("5 s", 's', &t), -1);
    ck_assert_int_eq(config_parse_time("99999999999999999w", 's', &t), -1);
    ck_assert_int_eq(config_parse_time("99999999999999999999", 's', &t), -1);
    ck_assert_int_eq(config_parse_time("10", 'q', &t), -1);
    ck_assert_int_eq(t, -7);                /* untouched on error */
}
END_TEST

START_TEST(parse_bool_forms)
{
    const char *yes[] = { "yes", "YES", "Yes", "true", "TRUE", "1", " yes " };
    const char *no[] = { "no", "NO", "false", "False", "0" };
    const char *bad[] = { "", "y", "n", "2", "yess", "on", "-1" };
    int b;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        b = -1;
        ck_assert_int_eq(config_parse_bool(yes[i], &b), 0);
        ck_assert_int_eq(b, 1);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        b = -1;
        ck_assert_int_eq(config_parse_bool(no[i], &b), 0);
        ck_assert_int_eq(b, 0);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        b = -1;
        ck_assert_msg(config_parse_bool(bad[i], &b) == -1, "accepted \"%s\"", bad[i]);
        ck_assert_int_eq(b, -1);
    }
}
END_TEST

START_TEST(time_bare_number_uses_default_unit)
{
    /* max_idle's default is "100s": a bare number is seconds. */
    config_override("max_idle", "7");
    ck_assert_int_eq(config_time("max_idle"), 7);
    config_override("max_idle", "2m");
    ck_assert_int_eq(config_time("max_idle"), 120);
    config_override("max_idle", NULL);
    ck_assert_int_eq(config_time("max_idle"), 100);
}
END_TEST

START_TEST(typed_values_from_file)
{
    ck_assert_int_eq(load_str("append_dot_mydomain = Yes\nmessage_size_limit = 51200000\n"
                              "max_idle = 1h\nmax_use = -3\nline_length_limit = +10\n"), 0);
    ck_assert_int_eq(config_bool("append_dot_mydomain"), 1);
    ck_assert_int_eq(config_size("message_size_limit"), 51200000);
    ck_assert_int_eq(config_time("max_idle"), 3600);
    ck_assert_int_eq(config_int("max_use"), -3);
    ck_assert_int_eq(config_int("line_length_limit"), 10);
}
END_TEST

/* ---- brace groups (the one matcher main.cf and master.cf share) ------- */

START_TEST(brace_group_matching)
{
    const char *inner = NULL;
    size_t inner_len = 0;
    const char *t = "x{ a {b} c }tail";
    ck_assert_int_eq(config_brace_group(t, strlen(t), 1, &inner, &inner_len), 11);
    ck_assert_int_eq((int) inner_len, 7);
    ck_assert(strncmp(inner, "a {b} c", 7) == 0);
    /* unbalanced, and a '}' only past len, are "no group" */
    ck_assert_int_eq(config_brace_group("{a {b}", 6, 0, &inner, &inner_len), -1);
    ck_assert_int_eq(config_brace_group("{abc}", 4, 0, NULL, NULL), -1);
    /* empty and blank-only groups */
    ck_assert_int_eq(config_brace_group("{}", 2, 0, &inner, &inner_len), 1);
    ck_assert_int_eq((int) inner_len, 0);
    ck_assert_int_eq(config_brace_group("{ \t }", 5, 0, &inner, &inner_len), 4);
    ck_assert_int_eq((int) inner_len, 0);
}
END_TEST

/* ---- lists ----------------------------------------------------------- */

START_TEST(list_splitting)
{
    int n = -1;
    char **l = config_list("  a, b  c,,d\t\n e ,", &n);
    ck_assert_int_eq(n, 5);
    ck_assert_str_eq(l[0], "a");
    ck_assert_str_eq(l[1], "b");
    ck_assert_str_eq(l[2], "c");
    ck_assert_str_eq(l[3], "d");
    ck_assert_str_eq(l[4], "e");
    ck_assert_ptr_null(l[5]);
    config_list_free(l);

    l = config_list("inline:{a=b, c=d} hash:/etc/x,{ x y {z, w} } tail", &n);
    ck_assert_int_eq(n, 4);
    ck_assert_str_eq(l[0], "inline:{a=b, c=d}");
    ck_assert_str_eq(l[1], "hash:/etc/x");
    ck_assert_str_eq(l[2], "{ x y {z, w} }");
    ck_assert_str_eq(l[3], "tail");
    config_list_free(l);

    l = config_list("unbalanced:{a, b", &n);     /* runs to the end */
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(l[0], "unbalanced:{a, b");
    config_list_free(l);

    l = config_list("stray} x", &n);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(l[0], "stray}");
    config_list_free(l);

    l = config_list(" , ,\t", &n);
    ck_assert_int_eq(n, 0);
    ck_assert_ptr_null(l[0]);
    config_list_free(l);

    l = config_list(NULL, NULL);
    ck_assert_ptr_null(l[0]);
    config_list_free(l);

    strbuf many;
    strbuf_init(&many);
    for (int i = 0; i < 1000; i++)
        strbuf_appendf(&many, "item%d,", i);
    l = config_list(many.data, &n);
    ck_assert_int_eq(n, 1000);
    ck_assert_str_eq(l[999], "item999");
    config_list_free(l);
    strbuf_release(&many);
}
END_TEST

/* ---- config_edit ----------------------------------------------------- */

START_TEST(edit_preserves_comments_and_order)
{
    const char *before =
        "# header comment\n"
        "mail_name = old\n"
        "mydestination = a,\n"
        "    b,\n"
        "# comment between continuation lines stays\n"
        "    c\n"
        "\n"
        "# about relayhost\n"
        "relayhost = [old]:25\n"
        "mail_name = duplicate\n"
        "  continued duplicate\n"
        "max_use = 5";
    char *dir = make_dir_with(before);
    chmod(dir, 0755);
    strbuf path;
    strbuf_init(&path);
    strbuf_printf(&path, "%s/main.cf", dir);
    ck_assert_int_eq(chmod(strbuf_str(&path), 0640), 0);
    char *assign[] = { "mydestination=$myhostname, localhost", "new_param = 1 ",
                       "mail_name=new", "another = x", "new_param=2" };
    strbuf err;
    strbuf_init(&err);
    ck_assert_int_eq(config_edit(dir, assign, 5, &err), 0);
    char *after = read_main_cf(dir);
    ck_assert_str_eq(after,
                     "# header comment\n"
                     "mail_name = new\n"
                     "mydestination = $myhostname, localhost\n"
                     "# comment between continuation lines stays\n"
                     "\n"
                     "# about relayhost\n"
                     "relayhost = [old]:25\n"
                     "max_use = 5\n"
                     "another = x\n"
                     "new_param = 2\n");
    struct stat st;
    ck_assert_int_eq(stat(strbuf_str(&path), &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0640);
    /* No temporary file is left behind. */
    DIR *d = opendir(dir);
    struct dirent *e;
    int entries = 0;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            entries++;
    closedir(d);
    ck_assert_int_eq(entries, 1);
    /* The result loads, with the edited values. */
    ck_assert_int_eq(config_load(dir, &err), 0);
    ck_assert_str_eq(config_str("mail_name"), "new");
    ck_assert_str_eq(config_raw("mydestination"), "$myhostname, localhost");
    xfree(after);
    strbuf_release(&err);
    strbuf_release(&path);
    remove_dir(dir);
}
END_TEST

START_TEST(edit_creates_missing_file)
{
    char *dir = xstrdup("/tmp/postern-config-test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *assign[] = { "relayhost=[mx]:2525", "recipient_delimiter=" };
    strbuf err;
    strbuf_init(&err);
    ck_assert_int_eq(config_edit(dir, assign, 2, &err), 0);
    char *after = read_main_cf(dir);
    ck_assert_str_eq(after, "relayhost = [mx]:2525\nrecipient_delimiter =\n");
    xfree(after);
    strbuf_release(&err);
    remove_dir(dir);
}
END_TEST

START_TEST(edit_rejects_bad_assignments)
{
    const char *before = "mail_name = keep\n";
    char *dir = make_dir_with(before);
    strbuf err;
    strbuf_init(&err);
    char *a1[] = { "mail_name=ok", "noequals" };
    ck_assert_int_eq(config_edit(dir, a1, 2, &err), -1);
    ck_assert_str_eq(strbuf_str(&err), "bad assignment \"noequals\": missing '=' after parameter name");
    char *a2[] = { "=x" };
    strbuf_reset(&err);
    ck_assert_int_eq(config_edit(dir, a2, 1, &err), -1);
    ck_assert_str_eq(strbuf_str(&err), "bad assignment \"=x\": missing parameter name before '='");
    char *a3[] = { "mail_name=a\nb = c" };
    strbuf_reset(&err);
    ck_assert_int_eq(config_edit(dir, a3, 1, &err), -1);
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "line break"));
    char *a4[] = { "max_use=lots" };
    strbuf_reset(&err);
    ck_assert_int_eq(config_edit(dir, a4, 1, &err), -1);
    ck_assert_str_eq(strbuf_str(&err),
                     "bad assignment \"max_use=lots\": bad numerical configuration: max_use = lots");
    char *a5[] = { "relayhost=${oops" };
    strbuf_reset(&err);
    ck_assert_int_eq(config_edit(dir, a5, 1, &err), -1);
    ck_assert_str_eq(strbuf_str(&err), "bad assignment \"relayhost=${oops\": unterminated '${'");
    char *after = read_main_cf(dir);
    ck_assert_str_eq(after, before);        /* untouched */
    xfree(after);
    ck_assert_int_eq(config_edit("/nonexistent/dir", (char *[]) { "a=b" }, 1, &err), -1);
    strbuf_release(&err);
    remove_dir(dir);
}
END_TEST

START_TEST(file_read_limits)
{
    char *dir = make_dir_with("0123456789");
    strbuf path, out, err;
    strbuf_init(&path);
    strbuf_init(&out);
    strbuf_init(&err);
    strbuf_printf(&path, "%s/main.cf", dir);
    ck_assert_int_eq(file_read_all(strbuf_str(&path), &out, 10, &err), 0);
    ck_assert_str_eq(strbuf_str(&out), "0123456789");
    ck_assert_int_eq(file_read_all(strbuf_str(&path), &out, 9, &err), -1);
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "file too large"));
    strbuf_release(&path);
    strbuf_release(&out);
    strbuf_release(&err);
    remove_dir(dir);
}
END_TEST

/* ---- random input never crashes ------------------------------------ */

static unsigned fuzz_state = 12345;

static unsigned fuzz_next(void)
{
    fuzz_state = fuzz_state * 1103515245u + 12345u;
    return (fuzz_state >> 16) & 0x7fff;
}

/* Random main.cf-like text: mostly "name = value" lines with random
 * values, some lines of pure garbage. */
static void fuzz_text(strbuf *sb)
{
    static const char *names[] = { "a", "b", "c", "max_use", "relayhost", "mail_name" };
    static const char *pieces[] = {
        "a", "b", "c", "max_use", "relayhost", "mail_name", " ", "\t", "\n", "\n ",
        "=", " = ", "$", "$a", "${", "}", "$(", ")", "?", ":", "{", ",", "#", "$$",
        "${a?", "${b:", "{x}", ":{y}", "1", "yes", "5m", "\r", "\x80", "\xff", "-",
        "$b", "${c}", "$(a)", "${max_use?{", "}:{", "\n  "
    };
    const size_t npieces = sizeof(pieces) / sizeof(pieces[0]);
    strbuf_reset(sb);
    int lines = 1 + (int) (fuzz_next() % 8);
    for (int l = 0; l < lines; l++) {
        int garbage = fuzz_next() % 5 == 0;
        if (!garbage)
            strbuf_appendf(sb, "%s = ", names[fuzz_next() % (sizeof(names) / sizeof(names[0]))]);
        int n = (int) (fuzz_next() % 12);
        for (int i = 0; i < n; i++) {
            const char *p = pieces[fuzz_next() % npieces];
            if (!garbage && strcmp(p, "\n") == 0)
                continue;
            strbuf_append_str(sb, p);
        }
        strbuf_append_char(sb, '\n');
    }
}

static void fuzz_expand_unknown(const char *name, const char *file, int line, void *ctx)
{
    (void) config_str(name);
    ++*(int *) ctx;
}

static int fuzz_child_expand(void)
{
    int unknown = 0;
    config_unknown(fuzz_expand_unknown, &unknown);
    (void) config_str("relayhost");
    (void) config_str("mail_name");
    (void) config_int("max_use");           /* may be fatal: exit 1 is fine */
    return 0;
}

START_TEST(random_main_cf_never_crashes)
{
    strbuf text;
    strbuf_init(&text);
    int loaded = 0, rejected = 0;
    for (int round = 0; round < 600; round++) {
        fuzz_text(&text);
        char *dir;
        int rc = load_text(text.data ? text.data : "", text.len, &dir);
        if (rc == 0) {
            loaded++;
            fflush(NULL);
            pid_t pid = fork();
            ck_assert_int_ge(pid, 0);
            if (pid == 0) {
                freopen("/dev/null", "w", stderr);  /* expected fatal errors */
                _exit(fuzz_child_expand());
            }
            int status;
            ck_assert_int_eq(waitpid(pid, &status, 0), pid);
            ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) <= 1,
                          "expansion crashed on: %s", strbuf_str(&text));
        } else {
            rejected++;
            ck_assert_msg(strstr(strbuf_str(&load_error), "main.cf, line ") != NULL,
                          "error without a line: %s", strbuf_str(&load_error));
        }
        remove_dir(dir);
    }
    ck_assert_int_gt(loaded, 20);           /* the generator covers both paths */
    ck_assert_int_gt(rejected, 50);
    strbuf_release(&text);
}
END_TEST

Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, defaults_before_load);
    tcase_add_test(tc, table_is_consistent);
    tcase_add_test(tc, pick_dir_order);
    tcase_add_test(tc, computed_hostname_and_domain);
    tcase_add_test(tc, load_comments_continuations);
    tcase_add_test(tc, load_crlf_and_no_final_newline);
    tcase_add_test(tc, load_missing_file);
    tcase_add_test(tc, malformed_lines);
    tcase_add_test(tc, malformed_nul_byte);
    tcase_add_test(tc, malformed_typed_values);
    tcase_add_test(tc, long_line_is_kept_whole);
    tcase_add_test(tc, failed_load_changes_nothing);
    tcase_add_test(tc, expansion_forms);
    tcase_add_test(tc, expansion_postfix3_brace_forms);
    tcase_add_test(tc, expansion_deep_chain_ok);
    tcase_add_exit_test(tc, expansion_loop_is_fatal, 1);
    tcase_add_exit_test(tc, expansion_self_loop_is_fatal, 1);
    tcase_add_exit_test(tc, bad_override_syntax_is_fatal, 1);
    tcase_add_test_raise_signal(tc, unknown_name_panics, SIGABRT);
    tcase_add_exit_test(tc, typed_accessor_fatal, 1);
    tcase_add_exit_test(tc, typed_accessor_fatal_after_expansion, 1);
    tcase_add_test(tc, override_recomputes_cache);
    tcase_add_test(tc, unknown_names_reported);
    tcase_add_test(tc, parse_time_units);
    tcase_add_test(tc, parse_bool_forms);
    tcase_add_test(tc, time_bare_number_uses_default_unit);
    tcase_add_test(tc, typed_values_from_file);
    tcase_add_test(tc, brace_group_matching);
    tcase_add_test(tc, list_splitting);
    tcase_add_test(tc, edit_preserves_comments_and_order);
    tcase_add_test(tc, edit_creates_missing_file);
    tcase_add_test(tc, edit_rejects_bad_assignments);
    tcase_add_test(tc, file_read_limits);
    suite_add_tcase(s, tc);
    /* 600 loads, each with a directory to create and remove and a fork
     * for the expansion: about a second alone, but many times Check's
     * 4 s default under ASan on a loaded machine. */
    TCase *fuzz = tcase_create("fuzz");
    tcase_set_timeout(fuzz, 120);
    tcase_add_test(fuzz, random_main_cf_never_crashes);
    suite_add_tcase(s, fuzz);
    return s;
}
