/*
 * test_addr.c - unit tests for common/addr.c and common/addr_list.c:
 * envelope paths (good, hostile, tricky relay forms, limits, UTF-8),
 * helpers (split, quote, fqdn, domain checks) and header address lists.
 */
#include <check.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "addr.h"
#include "mem.h"
#include "strbuf.h"

/* Parse in[0..len) and require success with the given output and length. */
static void expect_path_n(const char *in, size_t len, int flags,
                          const char *want, long want_len)
{
    strbuf out, err;
    strbuf_init(&out);
    strbuf_init(&err);
    long n = addr_parse_path(in, len, flags, &out, &err);
    ck_assert_msg(n == want_len, "\"%s\": consumed %ld, want %ld (err \"%s\")",
                  in, n, want_len, strbuf_str(&err));
    ck_assert_str_eq(strbuf_str(&out), want);
    strbuf_release(&out);
    strbuf_release(&err);
}

static void expect_path(const char *in, int flags, const char *want)
{
    expect_path_n(in, strlen(in), flags, want, (long) strlen(in));
}

static void expect_bad_n(const char *in, size_t len, int flags, const char *why)
{
    strbuf out, err;
    strbuf_init(&out);
    strbuf_init(&err);
    long n = addr_parse_path(in, len, flags, &out, &err);
    ck_assert_msg(n == -1, "\"%s\" accepted as \"%s\"", in, strbuf_str(&out));
    ck_assert_str_eq(strbuf_str(&err), why);
    ck_assert_uint_eq(out.len, 0);
    strbuf_release(&out);
    strbuf_release(&err);
}

static void expect_bad(const char *in, int flags, const char *why)
{
    expect_bad_n(in, strlen(in), flags, why);
}

START_TEST(path_plain)
{
    expect_path("<user@example.com>", 0, "user@example.com");
    expect_path("<User.Name+tag@Example.COM>", 0, "User.Name+tag@Example.COM");
    expect_path("<a!#$%&'*+-/=?^_`{|}~z@x.y>", 0, "a!#$%&'*+-/=?^_`{|}~z@x.y");
    expect_path("<postmaster>", 0, "postmaster");
    expect_path("<u@localhost>", 0, "u@localhost");
    expect_path("<u@a-b.c0.de>", 0, "u@a-b.c0.de");
    /* leading blanks are consumed */
    expect_path_n("  <u@x.org>", 11, 0, "u@x.org", 11);
}
END_TEST

START_TEST(path_null)
{
    expect_path("<>", ADDR_ALLOW_NULL, "");
    expect_bad("<>", 0, "null address not allowed here");
    expect_path_n("<> SIZE=10", 10, ADDR_ALLOW_NULL, "", 2);
}
END_TEST

START_TEST(path_consumed_length_with_params)
{
    const char *in = "<a@b> SIZE=10";
    expect_path_n(in, strlen(in), 0, "a@b", 5);
    in = "<a@b.c>\tBODY=8BITMIME SIZE=99";
    expect_path_n(in, strlen(in), 0, "a@b.c", 7);
    in = "a@b.c SIZE=10";
    expect_path_n(in, strlen(in), ADDR_ALLOW_BARE, "a@b.c", 5);
    /* text glued to '>' is not a parameter */
    expect_bad("<a@b>SIZE=10", 0, "unexpected text after address");
    /* len is honoured: the parser must not look past it */
    expect_path_n("<a@b.c>garbage", 7, 0, "a@b.c", 7);
    expect_bad_n("<a@b.c>", 6, 0, "missing '>'");
}
END_TEST

START_TEST(path_source_route)
{
    expect_path("<@a.example,@b.example:user@d.example>", 0, "user@d.example");
    expect_path("<@relay.example:user@d.example>", 0, "user@d.example");
    expect_path("<@[192.0.2.1]:u@d.example>", 0, "u@d.example");
    expect_bad("<@a.example,user@d.example>", 0, "bad source route");
    expect_bad("<@a..example:u@d>", 0, "empty label in domain");
    expect_bad("<@:u@d>", 0, "empty domain");
    expect_bad("<@domain.example>", 0, "empty local part");
    expect_bad("<@a,@:u@d>", 0, "empty domain");
}
END_TEST

START_TEST(path_quoted)
{
    expect_path("<\"john doe\"@example.com>", 0, "\"john doe\"@example.com");
    /* a quoted part that needs no quotes comes out bare */
    expect_path("<\"john\"@example.com>", 0, "john@example.com");
    /* quoted-pairs are decoded, then re-quoted canonically */
    expect_path("<\"a\\\"b\"@x.org>", 0, "\"a\\\"b\"@x.org");
    expect_path("<\"a\\bc\"@x.org>", 0, "abc@x.org");
    expect_path("<\"a\\\\b\"@x.org>", 0, "\"a\\\\b\"@x.org");
    expect_path("<\"\"@x.org>", 0, "\"\"@x.org");
    expect_path("<\"a..b\"@x.org>", 0, "\"a..b\"@x.org");
    expect_bad("<\"john doe@example.com>", 0, "unbalanced quote");
    expect_bad("<\"john\\", 0, "unbalanced quote");
    expect_bad("<\"a\"b@x.org>", 0, "text after quoted local part");
    expect_bad("<a\"b\"@x.org>", 0, "misplaced quote in local part");
    expect_bad("<\"a\tb\"@x.org>", 0, "control character in address");
}
END_TEST

START_TEST(path_relay_tricks_parse_literally)
{
    strbuf local, domain;
    strbuf_init(&local);
    strbuf_init(&domain);

    expect_path("<user%remote@local.example>", 0, "user%remote@local.example");
    addr_split("user%remote@local.example", &local, &domain);
    ck_assert_str_eq(strbuf_str(&local), "user%remote");
    ck_assert_str_eq(strbuf_str(&domain), "local.example");

    expect_path("<remote!user@local.example>", 0, "remote!user@local.example");

    expect_path("<\"user@remote\"@local.example>", 0,
                "\"user@remote\"@local.example");
    addr_split("\"user@remote\"@local.example", &local, &domain);
    ck_assert_str_eq(strbuf_str(&local), "\"user@remote\"");
    ck_assert_str_eq(strbuf_str(&domain), "local.example");

    /* two unquoted '@' are not an address */
    expect_bad("<user@remote@local.example>", 0, "too many '@'");
    strbuf_release(&local);
    strbuf_release(&domain);
}
END_TEST

START_TEST(path_dots_and_empty_parts)
{
    expect_bad("<a..b@x.org>", 0, "double dot in local part");
    expect_bad("<.a@x.org>", 0, "leading dot in local part");
    expect_bad("<a.@x.org>", 0, "trailing dot in local part");
    expect_bad("<user@>", 0, "empty domain");
    expect_bad("user@", ADDR_ALLOW_BARE, "empty domain");
    expect_bad("@x.org", ADDR_ALLOW_BARE, "empty local part");
    expect_bad("<@x.org>", 0, "empty local part");
    expect_bad("<user@x.org.>", 0, "trailing dot in domain");
    expect_bad("<user@.x.org>", 0, "leading dot in domain");
    expect_bad("<user@x..org>", 0, "empty label in domain");
    expect_bad("<user@-x.org>", 0, "domain label starts or ends with '-'");
    expect_bad("<user@x-.org>", 0, "domain label starts or ends with '-'");
    expect_bad("<user@x_y.org>", 0, "invalid character in domain");
    expect_bad("<@>", 0, "empty domain");
    expect_bad("<a b@x.org>", 0, "space in address");
    expect_bad("< a@x.org>", 0, "space in address");
    expect_bad("<a@x.org >", 0, "space in address");
    expect_bad("<a(b)@x.org>", 0, "invalid character in local part");
    expect_bad("<a,b@x.org>", 0, "invalid character in local part");
}
END_TEST

START_TEST(path_brackets)
{
    expect_bad("user@x.org", 0, "missing '<'");
    expect_path("user@x.org", ADDR_ALLOW_BARE, "user@x.org");
    expect_bad("<user@x.org", 0, "missing '>'");
    expect_bad("user@x.org>", ADDR_ALLOW_BARE, "unbalanced '>'");
    expect_bad("", 0, "missing address");
    expect_bad("   ", ADDR_ALLOW_BARE, "missing address");
    expect_bad("<", 0, "missing address");
    expect_bad("<<a@b>>", 0, "invalid character in local part");
}
END_TEST

START_TEST(path_control_bytes)
{
    expect_bad_n("<a\0b@x.org>", 11, 0, "NUL character in address");
    expect_bad_n("<ab@x\0.org>", 11, 0, "NUL character in address");
    expect_bad_n("<\"a\0\"@x.org>", 11, 0, "NUL character in address");
    expect_bad("<a\rb@x.org>", 0, "CR or LF in address");
    expect_bad("<a@x.org\n>", 0, "CR or LF in address");
    expect_bad("<\"a\nb\"@x.org>", 0, "CR or LF in address");
    expect_bad("<a\x01@x.org>", 0, "control character in address");
    expect_bad("<a\x7f@x.org>", 0, "control character in address");
    expect_bad("<a@x.org>\r\n", 0, "CR or LF in address");
}
END_TEST

/* "<" + local + "@" + domain + ">" built from repeated bytes */
static char *make_path(size_t local_len, const char *domain)
{
    strbuf sb;
    strbuf_init(&sb);
    strbuf_append_char(&sb, '<');
    for (size_t i = 0; i < local_len; i++)
        strbuf_append_char(&sb, 'a');
    strbuf_appendf(&sb, "@%s>", domain);
    return strbuf_detach(&sb, NULL);
}

START_TEST(path_limits)
{
    char *p = make_path(64, "x.org");
    strbuf want;
    strbuf_init(&want);
    strbuf_set(&want, p + 1, strlen(p) - 2);
    expect_path(p, 0, strbuf_str(&want));
    xfree(p);

    p = make_path(65, "x.org");
    expect_bad(p, 0, "local part too long");
    xfree(p);
    p = make_path(1000, "x.org");
    expect_bad(p, 0, "local part too long");
    xfree(p);
    /* quoted local part: 64 octets as written, quotes included */
    expect_bad("<\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"@x.org>",
               0, "local part too long");

    /* domain: 4 labels of 63 = 255 octets is the maximum */
    strbuf dom;
    strbuf_init(&dom);
    for (int i = 0; i < 4; i++) {
        if (i)
            strbuf_append_char(&dom, '.');
        for (int j = 0; j < (i == 3 ? 60 : 63); j++)
            strbuf_append_char(&dom, 'd');
    }
    ck_assert_uint_eq(dom.len, 252);
    ck_assert_int_eq(addr_domain_valid(strbuf_str(&dom), 0), 1);
    strbuf_append_str(&dom, "dddd");       /* 256 */
    ck_assert_int_eq(addr_domain_valid(strbuf_str(&dom), 0), 0);
    p = make_path(1, strbuf_str(&dom));
    expect_bad(p, 0, "domain too long");
    xfree(p);

    /* path: 64 + 1 + 189 + 2 = 256 is fine, one more is not */
    strbuf_reset(&dom);
    for (int j = 0; j < 3; j++)
        strbuf_appendf(&dom, "%.*s.", 62, "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee");
    strbuf_append_str(&dom, "ee");         /* 3*63 + 2 = 191 */
    ck_assert_uint_eq(dom.len, 191);
    p = make_path(62, strbuf_str(&dom));   /* 1+62+1+191+1 = 256 */
    ck_assert_uint_eq(strlen(p), 256);
    strbuf_set(&want, p + 1, strlen(p) - 2);
    expect_path(p, 0, strbuf_str(&want));
    xfree(p);
    p = make_path(63, strbuf_str(&dom));
    expect_bad(p, 0, "address too long");
    xfree(p);
    strbuf_release(&dom);
    strbuf_release(&want);
}
END_TEST

START_TEST(path_utf8)
{
    /* "josé@exämple.org" in UTF-8 */
    const char *good = "<jos\xc3\xa9@ex\xc3\xa4mple.org>";
    expect_bad(good, 0, "8-bit character without SMTPUTF8");
    expect_path(good, ADDR_UTF8, "jos\xc3\xa9@ex\xc3\xa4mple.org");
    expect_path("<\"j\xc3\xa9 x\"@x.org>", ADDR_UTF8, "\"j\xc3\xa9 x\"@x.org");
    expect_path("<\xe2\x82\xac\xf0\x9f\x98\x80@x.org>", ADDR_UTF8,
                "\xe2\x82\xac\xf0\x9f\x98\x80@x.org");
    /* ill-formed UTF-8 is refused even with SMTPUTF8 */
    expect_bad("<jos\xc3@x.org>", ADDR_UTF8, "invalid UTF-8 in address");
    expect_bad("<\xc0\xaf@x.org>", ADDR_UTF8, "invalid UTF-8 in address");      /* overlong */
    expect_bad("<\xed\xa0\x80@x.org>", ADDR_UTF8, "invalid UTF-8 in address");  /* surrogate */
    expect_bad("<\xf4\x90\x80\x80@x.org>", ADDR_UTF8, "invalid UTF-8 in address");
    expect_bad("<\xc2\x85@x.org>", ADDR_UTF8, "invalid UTF-8 in address");      /* C1 NEL */
    expect_bad("<a@x\xff.org>", ADDR_UTF8, "invalid UTF-8 in address");
    expect_bad("<a@x\xc3\xa4.org>", 0, "8-bit character without SMTPUTF8");
}
END_TEST

START_TEST(path_address_literals)
{
    expect_path("<u@[192.0.2.1]>", 0, "u@[192.0.2.1]");
    expect_path("<u@[IPv6:2001:db8::1]>", 0, "u@[IPv6:2001:db8::1]");
    expect_path("<u@[ipv6:::1]>", 0, "u@[ipv6:::1]");
    expect_bad("<u@[192.0.2.256]>", 0, "bad IPv4 address literal");
    expect_bad("<u@[192.0.2]>", 0, "bad IPv4 address literal");
    expect_bad("<u@[2001:db8::1]>", 0, "unsupported address literal");
    expect_bad("<u@[IPv6:2001:db8::g]>", 0, "bad IPv6 address literal");
    expect_bad("<u@[192.0.2.1>", 0, "missing ']'");
    expect_bad("<u@[192.0.2.1]x>", 0, "missing '>'");
    expect_bad("<u@[]>", 0, "bad IPv4 address literal");
    expect_bad("<u@[1.2.3.4\\]>", 0, "invalid character in address literal");
}
END_TEST

START_TEST(helpers)
{
    strbuf local, domain, q;
    strbuf_init(&local);
    strbuf_init(&domain);
    strbuf_init(&q);

    addr_split("a@b@c.org", &local, &domain);
    ck_assert_str_eq(strbuf_str(&local), "a@b");
    ck_assert_str_eq(strbuf_str(&domain), "c.org");
    addr_split("root", &local, &domain);
    ck_assert_str_eq(strbuf_str(&local), "root");
    ck_assert_uint_eq(domain.len, 0);
    addr_split("\"a@b\"", &local, &domain);
    ck_assert_str_eq(strbuf_str(&local), "\"a@b\"");
    ck_assert_uint_eq(domain.len, 0);

    ck_assert_int_eq(addr_is_fqdn("u@x.org"), 1);
    ck_assert_int_eq(addr_is_fqdn("u@[192.0.2.1]"), 1);
    ck_assert_int_eq(addr_is_fqdn("u@localhost"), 0);
    ck_assert_int_eq(addr_is_fqdn("u"), 0);
    ck_assert_int_eq(addr_is_fqdn(""), 0);
    ck_assert_int_eq(addr_is_fqdn("\"a@b.c\""), 0);

    ck_assert_int_eq(addr_domain_valid("example.com", 0), 1);
    ck_assert_int_eq(addr_domain_valid("[IPv6:::1]", 0), 1);
    ck_assert_int_eq(addr_domain_valid("", 0), 0);
    ck_assert_int_eq(addr_domain_valid("ex ample.com", 0), 0);
    ck_assert_int_eq(addr_domain_valid("b\xc3\xbc.de", 0), 0);
    ck_assert_int_eq(addr_domain_valid("b\xc3\xbc.de", 1), 1);
    char label[80];
    memset(label, 'a', 63);
    strcpy(label + 63, ".com");
    ck_assert_int_eq(addr_domain_valid(label, 0), 1);
    memset(label, 'a', 64);
    strcpy(label + 64, ".com");
    ck_assert_int_eq(addr_domain_valid(label, 0), 0);

    char addr[] = "John.Doe@EXAMPLE.Com";
    addr_lowercase_domain(addr);
    ck_assert_str_eq(addr, "John.Doe@example.com");
    char quoted[] = "\"A@B\"@X.ORG";
    addr_lowercase_domain(quoted);
    ck_assert_str_eq(quoted, "\"A@B\"@x.org");

    addr_quote_local("john", &q);
    ck_assert_str_eq(strbuf_str(&q), "john");
    strbuf_reset(&q);
    addr_quote_local("john doe", &q);
    ck_assert_str_eq(strbuf_str(&q), "\"john doe\"");
    strbuf_reset(&q);
    addr_quote_local("a\"b\\c", &q);
    ck_assert_str_eq(strbuf_str(&q), "\"a\\\"b\\\\c\"");
    strbuf_reset(&q);
    addr_quote_local(".a", &q);
    ck_assert_str_eq(strbuf_str(&q), "\".a\"");
    strbuf_reset(&q);
    addr_quote_local("", &q);
    ck_assert_str_eq(strbuf_str(&q), "\"\"");

    strbuf_release(&local);
    strbuf_release(&domain);
    strbuf_release(&q);
}
END_TEST

/* ---- header address lists ---------------------------------------------- */

struct collected {
    strbuf all;                 /* addresses joined with '|' */
    int calls;
};

static void collect(const char *addr, void *ctx)
{
    struct collected *c = ctx;
    if (c->calls++)
        strbuf_append_char(&c->all, '|');
    strbuf_append_str(&c->all, addr);
}

static void expect_list(const char *value, int want_rc, const char *want)
{
    struct collected c;
    strbuf_init(&c.all);
    c.calls = 0;
    int rc = addr_list_parse(value, strlen(value), collect, &c);
    ck_assert_msg(rc == want_rc, "\"%s\": rc %d want %d (got \"%s\")",
                  value, rc, want_rc, strbuf_str(&c.all));
    ck_assert_str_eq(strbuf_str(&c.all), want);
    strbuf_release(&c.all);
}

START_TEST(list_simple)
{
    expect_list("a@x.org", 1, "a@x.org");
    expect_list("a@x.org, b@y.org", 2, "a@x.org|b@y.org");
    expect_list("  a@x.org ,b@y.org,  ", 2, "a@x.org|b@y.org");
    expect_list("a@x.org,,b@y.org", 2, "a@x.org|b@y.org");
    expect_list("", 0, "");
    expect_list("root, alice", 2, "root|alice");
}
END_TEST

START_TEST(list_display_names)
{
    expect_list("John Doe <john@x.org>", 1, "john@x.org");
    expect_list("\"Doe, John\" <john@x.org>, jane@y.org", 2,
                "john@x.org|jane@y.org");
    expect_list("\"Doe, John\" <john@x.org>, \"A <b@c>\" <real@d.org>", 2,
                "john@x.org|real@d.org");
    expect_list("John Q. Public <jqp@x.org>", 1, "jqp@x.org");
    expect_list("<a@x.org>", 1, "a@x.org");
    expect_list("Bob <@relay.org,@r2.org:bob@x.org>", 1, "bob@x.org");
    expect_list("\"j\xc3\xa9\" <j@x.org>", 1, "j@x.org");
    expect_list("=?UTF-8?Q?J=C3=A9?= <j@x.org>", 1, "j@x.org");
}
END_TEST

START_TEST(list_comments_and_quotes)
{
    expect_list("a@x.org (Alice, the boss)", 1, "a@x.org");
    expect_list("(lead (nested) comment) a@x.org, b@y.org (c@z.org)", 2,
                "a@x.org|b@y.org");
    expect_list("a@x.org (paren \\) escaped)", 1, "a@x.org");
    expect_list("\"john doe\"@x.org", 1, "\"john doe\"@x.org");
    expect_list("\"john\"@x.org", 1, "john@x.org");
    expect_list("\"user@remote\"@local.org", 1, "\"user@remote\"@local.org");
    expect_list("a@x.org,\r\n\tb@y.org", 2, "a@x.org|b@y.org");
    expect_list("a . b @ x . org", 1, "a.b@x.org");
    expect_list("u@[192.0.2.1]", 1, "u@[192.0.2.1]");
}
END_TEST

START_TEST(list_groups)
{
    expect_list("undisclosed-recipients:;", 0, "");
    expect_list("Undisclosed recipients: ;", 0, "");
    expect_list("Friends: a@x.org, \"B, b\" <b@y.org>;, c@z.org", 3,
                "a@x.org|b@y.org|c@z.org");
    expect_list("x@y.org, Team: t1@x.org, t2@x.org;", 3,
                "x@y.org|t1@x.org|t2@x.org");
    expect_list("Team: t1@x.org", 1, "t1@x.org");       /* missing ';' */
}
END_TEST

START_TEST(list_malformed)
{
    /* bad element skipped, the others still delivered, rc -1 */
    expect_list("a@x.org, \"unbalanced@y.org", -1, "a@x.org");
    expect_list("a@x.org, (open comment b@y.org", -1, "a@x.org");
    expect_list("John <john@x.org, b@y.org", -1, "");
    expect_list("a@, b@y.org", -1, "b@y.org");
    expect_list("@x.org, b@y.org", -1, "b@y.org");
    expect_list("a@x..org, b@y.org", -1, "b@y.org");
    expect_list("a@x.org <b@y.org>", -1, "");
    expect_list("a@x\x01.org, b@y.org", -1, "b@y.org");
    expect_list("a@x.org, b@y.org>", -1, "a@x.org");
    expect_list("a@[1.2.3.4, b@y.org", -1, "");
    expect_list("a\xff@x.org, b@y.org", -1, "b@y.org");
    const char nul[] = "a@x.org, b\0c@y.org, d@z.org";
    struct collected c;
    strbuf_init(&c.all);
    c.calls = 0;
    ck_assert_int_eq(addr_list_parse(nul, sizeof(nul) - 1, collect, &c), -1);
    ck_assert_str_eq(strbuf_str(&c.all), "a@x.org|d@z.org");
    strbuf_release(&c.all);
}
END_TEST

/* ---- bounds and properties ----------------------------------------------- */

/* n bytes of s placed right before an inaccessible page: reading one byte
 * past them faults. */
struct guarded {
    char *map;
    size_t map_len;
    char *data;
};

static void guarded_place(struct guarded *g, const char *s, size_t n)
{
    size_t page = (size_t) sysconf(_SC_PAGESIZE);
    size_t pages = (n + page - 1) / page + 1;
    g->map_len = pages * page;
    g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(g->map, MAP_FAILED);
    ck_assert_int_eq(mprotect(g->map + (pages - 1) * page, page, PROT_NONE), 0);
    g->data = g->map + (pages - 1) * page - n;
    memcpy(g->data, s, n);
}

static void guarded_free(struct guarded *g)
{
    munmap(g->map, g->map_len);
}

static void count_only(const char *addr, void *ctx)
{
    (*(int *) ctx)++;
}

static const char *const bounded_inputs[] = {
    "<user@example.com>", "<\"john doe\"@example.com>", "<@a,@b:u@d.org>",
    "<u@[192.0.2.1]>", "<u@[IPv6:2001:db8::1]>", "<>", "<\"a\\\"b\"@x>",
    "user@x.org", "<a@b> SIZE=10", "<\"unterminated", "<\"esc\\",
    "<u@[1.2.3.4", "<jos\xc3\xa9@x.org>", "<a\xe2\x82",
    "\"Doe, John\" <john@x.org>, jane@y.org (c (nested)", "Team: a@b, c@d;",
    "(comment", "a@[1.2", "<@a,@b", "a . b @ c",
};

START_TEST(parsers_stay_within_len)
{
    strbuf out, err;
    strbuf_init(&out);
    strbuf_init(&err);
    for (size_t i = 0; i < sizeof(bounded_inputs) / sizeof(*bounded_inputs); i++) {
        const char *in = bounded_inputs[i];
        size_t full = strlen(in);
        /* every prefix, so each parser state meets the end of input */
        for (size_t n = 0; n <= full; n++) {
            struct guarded g;
            guarded_place(&g, in, n);
            for (int flags = 0; flags < 8; flags++) {
                long rc = addr_parse_path(g.data, n, flags, &out, &err);
                ck_assert(rc <= (long) n);
            }
            int count = 0;
            addr_list_parse(g.data, n, count_only, &count);
            guarded_free(&g);
        }
    }
    strbuf_release(&out);
    strbuf_release(&err);
}
END_TEST

/* Small deterministic generator (xorshift) for reproducible random input. */
static uint32_t rng_state = 2463534242u;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static void random_address_text(strbuf *sb)
{
    static const char *const pieces[] = {
        "<", ">", "@", "\"", "\\", ".", "[", "]", ":", ",", ";", "(", ")",
        " ", "\t", "\r\n", "a", "Zq", "x.org", "IPv6:", "::1", "192.0.2.1",
        "\xc3\xa9", "\xc3", "\xff", "-", "+", "%", "!", "user", "\x01",
        "postmaster", "@a.b,@c:", "\"q q\"",
    };
    strbuf_reset(sb);
    int n = (int) (rng() % 12);
    for (int i = 0; i < n; i++)
        strbuf_append_str(sb, pieces[rng() % (sizeof(pieces) / sizeof(*pieces))]);
    if (rng() % 16 == 0)
        strbuf_append(sb, "\0", 1);
}

static int has_forbidden_byte(const strbuf *sb, int allow_8bit)
{
    for (size_t i = 0; i < sb->len; i++) {
        unsigned char c = (unsigned char) sb->data[i];
        if (c < 0x20 || c == 0x7F || (c >= 0x80 && !allow_8bit))
            return 1;
    }
    return 0;
}

/* Whatever the path parser accepts is clean and re-parses to itself. */
START_TEST(path_output_reparses_to_itself)
{
    strbuf in, out, err, again, out2;
    strbuf_init(&in);
    strbuf_init(&out);
    strbuf_init(&err);
    strbuf_init(&again);
    strbuf_init(&out2);
    int accepted = 0;
    for (int iter = 0; iter < 200000; iter++) {
        random_address_text(&in);
        int flags = (int) (rng() % 8);
        long rc = addr_parse_path(in.data ? in.data : "", in.len, flags, &out, &err);
        if (rc < 0) {
            ck_assert_uint_gt(err.len, 0);
            continue;
        }
        accepted++;
        ck_assert(rc <= (long) in.len);
        ck_assert_msg(!has_forbidden_byte(&out, flags & ADDR_UTF8),
                      "\"%s\" gave unclean \"%s\"", strbuf_str(&in), strbuf_str(&out));
        strbuf_printf(&again, "<%s>", strbuf_str(&out));
        long rc2 = addr_parse_path(again.data, again.len, flags, &out2, &err);
        ck_assert_msg(rc2 == (long) again.len, "\"%s\" -> \"%s\" does not re-parse: %s",
                      strbuf_str(&in), strbuf_str(&out), strbuf_str(&err));
        ck_assert_str_eq(strbuf_str(&out2), strbuf_str(&out));
    }
    ck_assert_int_gt(accepted, 100);      /* the generator does reach valid paths */
    strbuf_release(&in);
    strbuf_release(&out);
    strbuf_release(&err);
    strbuf_release(&again);
    strbuf_release(&out2);
}
END_TEST

struct reparse_ctx {
    int delivered;
    const char *source;
};

static void reparse_as_path(const char *addr, void *ctx)
{
    struct reparse_ctx *rc = ctx;
    strbuf path, out, err;
    strbuf_init(&path);
    strbuf_init(&out);
    strbuf_init(&err);
    strbuf_printf(&path, "<%s>", addr);
    long n = addr_parse_path(path.data, path.len, ADDR_UTF8, &out, &err);
    ck_assert_msg(n == (long) path.len, "list \"%s\" gave \"%s\": %s", rc->source,
                  addr, strbuf_str(&err));
    ck_assert_str_eq(strbuf_str(&out), addr);
    rc->delivered++;
    strbuf_release(&path);
    strbuf_release(&out);
    strbuf_release(&err);
}

/* Every address the header parser delivers is a valid envelope address. */
START_TEST(list_output_is_valid_path)
{
    strbuf in;
    strbuf_init(&in);
    int total = 0;
    for (int iter = 0; iter < 100000; iter++) {
        random_address_text(&in);
        struct reparse_ctx ctx = { 0, strbuf_str(&in) };
        int rc = addr_list_parse(in.data ? in.data : "", in.len, reparse_as_path, &ctx);
        ck_assert(rc == -1 || rc == ctx.delivered);
        total += ctx.delivered;
    }
    ck_assert_int_gt(total, 100);
    strbuf_release(&in);
}
END_TEST

Suite *addr_suite(void)
{
    Suite *s = suite_create("addr");
    TCase *tc = tcase_create("path");
    tcase_add_test(tc, path_plain);
    tcase_add_test(tc, path_null);
    tcase_add_test(tc, path_consumed_length_with_params);
    tcase_add_test(tc, path_source_route);
    tcase_add_test(tc, path_quoted);
    tcase_add_test(tc, path_relay_tricks_parse_literally);
    tcase_add_test(tc, path_dots_and_empty_parts);
    tcase_add_test(tc, path_brackets);
    tcase_add_test(tc, path_control_bytes);
    tcase_add_test(tc, path_limits);
    tcase_add_test(tc, path_utf8);
    tcase_add_test(tc, path_address_literals);
    tcase_add_test(tc, helpers);
    suite_add_tcase(s, tc);
    tc = tcase_create("list");
    tcase_add_test(tc, list_simple);
    tcase_add_test(tc, list_display_names);
    tcase_add_test(tc, list_comments_and_quotes);
    tcase_add_test(tc, list_groups);
    tcase_add_test(tc, list_malformed);
    suite_add_tcase(s, tc);
    tc = tcase_create("robustness");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, parsers_stay_within_len);
    tcase_add_test(tc, path_output_reparses_to_itself);
    tcase_add_test(tc, list_output_is_valid_path);
    suite_add_tcase(s, tc);
    return s;
}
