/*
 * test_dns.c - unit tests for common/dns.c (DNS reply parsing, MX order)
 * and common/smtp_reply.c (server reply lines, enhanced codes, EHLO
 * keywords), with malformed and hostile input.
 */
#include <arpa/inet.h>
#include <check.h>
#include <string.h>

#include "dns.h"
#include "mem.h"
#include "smtp_reply.h"
#include "smtp_nexthop.h"

/* A reply under construction: header + question "x.test" + answers. */
struct msg {
    unsigned char b[2048];
    size_t len;
    int an;
};

static void put16(struct msg *m, int v)
{
    m->b[m->len++] = (unsigned char)(v >> 8);
    m->b[m->len++] = (unsigned char)v;
}

static void put_name(struct msg *m, const char *name)
{
    while (*name) {
        const char *dot = strchr(name, '.');
        size_t n = dot ? (size_t)(dot - name) : strlen(name);
        m->b[m->len++] = (unsigned char)n;
        memcpy(m->b + m->len, name, n);
        m->len += n;
        name += n + (dot ? 1 : 0);
    }
    m->b[m->len++] = 0;
}

static void msg_start(struct msg *m, int type)
{
    memset(m, 0, sizeof(*m));
    put16(m, 0x1234);           /* id */
    put16(m, 0x8180);           /* response, RD, RA, NOERROR */
    put16(m, 1);                /* qdcount */
    put16(m, 0);                /* ancount, patched */
    put16(m, 0);
    put16(m, 0);
    put_name(m, "x.test");      /* at offset 12 */
    put16(m, type);
    put16(m, 1);
}

/* An answer for the question name (pointer 0xC00C) with raw rdata. */
static void add_rr(struct msg *m, int type, const unsigned char *rdata, int rdlen,
                   int claimed_rdlen)
{
    put16(m, 0xC00C);
    put16(m, type);
    put16(m, 1);
    put16(m, 0);
    put16(m, 300);
    put16(m, claimed_rdlen);
    memcpy(m->b + m->len, rdata, (size_t)rdlen);
    m->len += (size_t)rdlen;
    m->an++;
    m->b[6] = (unsigned char)(m->an >> 8);
    m->b[7] = (unsigned char)m->an;
}

static void add_mx(struct msg *m, int pref, const char *host)
{
    struct msg tmp;
    memset(&tmp, 0, sizeof(tmp));
    put16(&tmp, pref);
    put_name(&tmp, host);
    add_rr(m, 15, tmp.b, (int)tmp.len, (int)tmp.len);
}

START_TEST(mx_parse_and_sort)
{
    struct msg m;
    msg_start(&m, 15);
    add_mx(&m, 20, "mx2.x.test");
    add_mx(&m, 10, "mx1.x.test");
    add_mx(&m, 30, "mx3.x.test");
    struct dns_mx_list l = { 0 };
    strbuf why;
    strbuf_init(&why);
    ck_assert_int_eq(dns_parse_mx(m.b, m.len, &l, &why), 3);
    dns_mx_sort(&l, 1);
    ck_assert_str_eq(l.v[0].host, "mx1.x.test");
    ck_assert_int_eq(l.v[0].pref, 10);
    ck_assert_str_eq(l.v[1].host, "mx2.x.test");
    ck_assert_str_eq(l.v[2].host, "mx3.x.test");
    dns_mx_list_free(&l);
    strbuf_release(&why);
}
END_TEST

START_TEST(mx_equal_preferences_shuffled)
{
    /* both orders of two equal MX hosts show up over many sorts, and the
     * better MX always stays first */
    int first_a = 0, first_b = 0;
    for (int i = 0; i < 200; i++) {
        struct dns_mx_list l = { 0 };
        l.v = xcalloc(3, sizeof(*l.v));
        l.v[0].host = xstrdup("b");
        l.v[0].pref = 20;
        l.v[1].host = xstrdup("a");
        l.v[1].pref = 20;
        l.v[2].host = xstrdup("best");
        l.v[2].pref = 5;
        l.n = 3;
        dns_mx_sort(&l, 1);
        ck_assert_str_eq(l.v[0].host, "best");
        if (strcmp(l.v[1].host, "a") == 0)
            first_a++;
        else
            first_b++;
        dns_mx_list_free(&l);
    }
    ck_assert_int_gt(first_a, 0);
    ck_assert_int_gt(first_b, 0);
}
END_TEST

START_TEST(null_mx_is_empty_host)
{
    struct msg m;
    msg_start(&m, 15);
    unsigned char rd[3] = { 0, 0, 0 };
    add_rr(&m, 15, rd, 3, 3);
    struct dns_mx_list l = { 0 };
    strbuf why;
    strbuf_init(&why);
    ck_assert_int_eq(dns_parse_mx(m.b, m.len, &l, &why), 1);
    ck_assert_str_eq(l.v[0].host, "");
    ck_assert_int_eq(l.v[0].pref, 0);
    dns_mx_list_free(&l);
    strbuf_release(&why);
}
END_TEST

START_TEST(other_types_skipped)
{
    struct msg m;
    msg_start(&m, 15);
    struct msg cname;
    memset(&cname, 0, sizeof(cname));
    put_name(&cname, "real.test");
    add_rr(&m, 5, cname.b, (int)cname.len, (int)cname.len);     /* CNAME */
    add_mx(&m, 10, "mx.real.test");
    struct dns_mx_list l = { 0 };
    strbuf why;
    strbuf_init(&why);
    ck_assert_int_eq(dns_parse_mx(m.b, m.len, &l, &why), 1);
    ck_assert_str_eq(l.v[0].host, "mx.real.test");
    dns_mx_list_free(&l);
    /* an A query answered only with a CNAME: no addresses, not an error */
    struct dns_addr_list al = { 0 };
    ck_assert_int_eq(dns_parse_addr(m.b, m.len, AF_INET, &al, &why), 0);
    strbuf_release(&why);
}
END_TEST

START_TEST(bad_host_names_skipped)
{
    struct msg m;
    msg_start(&m, 15);
    add_mx(&m, 10, "bad host.test");        /* a blank inside a label */
    add_mx(&m, 20, "ok.test");
    struct dns_mx_list l = { 0 };
    strbuf why;
    strbuf_init(&why);
    ck_assert_int_eq(dns_parse_mx(m.b, m.len, &l, &why), 1);
    ck_assert_str_eq(l.v[0].host, "ok.test");
    dns_mx_list_free(&l);
    strbuf_release(&why);
    ck_assert(dns_hostname_valid("a-b.c_d.test"));
    ck_assert(!dns_hostname_valid(""));
    ck_assert(!dns_hostname_valid("a..b"));
    ck_assert(!dns_hostname_valid(".a"));
    ck_assert(!dns_hostname_valid("a/b"));
}
END_TEST

START_TEST(malformed_replies_rejected)
{
    struct dns_mx_list l = { 0 };
    struct dns_addr_list al = { 0 };
    strbuf why;
    strbuf_init(&why);
    struct msg m;

    /* shorter than a header */
    ck_assert_int_eq(dns_parse_mx((const unsigned char *)"\x12\x34", 2, &l, &why), -1);

    /* ancount claims more records than there are */
    msg_start(&m, 15);
    add_mx(&m, 10, "mx.test");
    m.b[7] = 5;
    ck_assert_int_eq(dns_parse_mx(m.b, m.len, &l, &why), -1);

    /* rdlength past the end of the message */
    msg_start(&m, 15);
    unsigned char rd[3] = { 0, 10, 0 };
    add_rr(&m, 15, rd, 3, 200);
    ck_assert_int_eq(dns_parse_mx(m.b, m.len, &l, &why), -1);

    /* MX rdata too short for a preference and a name */
    msg_start(&m, 15);
    add_rr(&m, 15, rd, 2, 2);
    ck_assert_int_eq(dns_parse_mx(m.b, m.len, &l, &why), -1);

    /* a compression pointer loop inside the MX name */
    msg_start(&m, 15);
    size_t at = m.len + 12 + 2;            /* where the name in rdata will sit */
    unsigned char loop[4] = { 0, 10, (unsigned char)(0xC0 | (at >> 8)), (unsigned char)at };
    add_rr(&m, 15, loop, 4, 4);
    ck_assert_int_eq(dns_parse_mx(m.b, m.len, &l, &why), -1);

    /* a pointer past the end */
    msg_start(&m, 15);
    unsigned char far[4] = { 0, 10, 0xC7, 0xFF };
    add_rr(&m, 15, far, 4, 4);
    ck_assert_int_eq(dns_parse_mx(m.b, m.len, &l, &why), -1);

    /* garbage after the MX name inside the rdata */
    msg_start(&m, 15);
    unsigned char trail[6] = { 0, 10, 1, 'a', 0, 'X' };
    add_rr(&m, 15, trail, 6, 6);
    ck_assert_int_eq(dns_parse_mx(m.b, m.len, &l, &why), -1);

    /* an A record of 5 bytes, an AAAA of 4 */
    msg_start(&m, 1);
    unsigned char five[5] = { 127, 0, 0, 2, 9 };
    add_rr(&m, 1, five, 5, 5);
    ck_assert_int_eq(dns_parse_addr(m.b, m.len, AF_INET, &al, &why), -1);
    msg_start(&m, 28);
    add_rr(&m, 28, five, 4, 4);
    ck_assert_int_eq(dns_parse_addr(m.b, m.len, AF_INET6, &al, &why), -1);

    /* every truncation of a good reply is rejected or parsed within bounds */
    msg_start(&m, 15);
    add_mx(&m, 10, "mx1.test");
    add_mx(&m, 20, "mx2.test");
    for (size_t n = 0; n < m.len; n++) {
        unsigned char *copy = xmemdup(m.b, n ? n : 1);
        int rc = dns_parse_mx(copy, n, &l, &why);
        ck_assert_int_le(rc, 2);
        xfree(copy);
    }
    ck_assert_int_gt(why.len, 0);
    dns_mx_list_free(&l);
    dns_addr_list_free(&al);
    strbuf_release(&why);
}
END_TEST

START_TEST(addresses_parsed_and_deduplicated)
{
    struct msg m;
    msg_start(&m, 1);
    unsigned char a1[4] = { 127, 0, 0, 2 }, a2[4] = { 192, 0, 2, 1 };
    add_rr(&m, 1, a1, 4, 4);
    add_rr(&m, 1, a2, 4, 4);
    add_rr(&m, 1, a1, 4, 4);
    struct dns_addr_list al = { 0 };
    strbuf why;
    strbuf_init(&why);
    ck_assert_int_eq(dns_parse_addr(m.b, m.len, AF_INET, &al, &why), 2);
    char buf[64];
    ck_assert_str_eq(dns_addr_str(&al.v[0], buf, sizeof(buf)), "127.0.0.2");
    ck_assert_str_eq(dns_addr_str(&al.v[1], buf, sizeof(buf)), "192.0.2.1");
    dns_addr_list_free(&al);
    msg_start(&m, 28);
    unsigned char six[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
    add_rr(&m, 28, six, 16, 16);
    ck_assert_int_eq(dns_parse_addr(m.b, m.len, AF_INET6, &al, &why), 1);
    ck_assert_str_eq(dns_addr_str(&al.v[0], buf, sizeof(buf)), "2001:db8::1");
    dns_addr_list_free(&al);
    strbuf_release(&why);
}
END_TEST

START_TEST(dns_init_server_syntax)
{
    strbuf err;
    strbuf_init(&err);
    ck_assert_int_eq(dns_init("127.0.0.1:5353", &err), 0);
    ck_assert_int_eq(dns_init("127.0.0.1", &err), 0);
    ck_assert_int_eq(dns_init("127.0.0.1:0", &err), -1);
    ck_assert_int_eq(dns_init("127.0.0.1:99999", &err), -1);
    ck_assert_int_eq(dns_init("127.0.0.1:x", &err), -1);
    ck_assert_int_eq(dns_init("ns.example", &err), -1);
    ck_assert_int_eq(dns_init("", &err), 0);
    strbuf_release(&err);
}
END_TEST

START_TEST(reply_lines)
{
    int code, more;
    const char *text;
    ck_assert_int_eq(smtp_reply_line("250-PIPELINING", 14, &code, &more, &text), 0);
    ck_assert_int_eq(code, 250);
    ck_assert_int_eq(more, 1);
    ck_assert_str_eq(text, "PIPELINING");
    ck_assert_int_eq(smtp_reply_line("250", 3, &code, &more, &text), 0);
    ck_assert_int_eq(more, 0);
    ck_assert_str_eq(text, "");
    ck_assert_int_eq(smtp_reply_line("550 5.1.1 no", 12, &code, &more, &text), 0);
    ck_assert_int_eq(code, 550);
    ck_assert_int_eq(more, 0);
    /* malformed */
    ck_assert_int_eq(smtp_reply_line("", 0, &code, &more, &text), -1);
    ck_assert_int_eq(smtp_reply_line("25", 2, &code, &more, &text), -1);
    ck_assert_int_eq(smtp_reply_line("2500 x", 6, &code, &more, &text), -1);
    ck_assert_int_eq(smtp_reply_line("abc def", 7, &code, &more, &text), -1);
    ck_assert_int_eq(smtp_reply_line("150 x", 5, &code, &more, &text), -1);
    ck_assert_int_eq(smtp_reply_line("690 x", 5, &code, &more, &text), -1);
    ck_assert_int_eq(smtp_reply_line("2 0 x", 5, &code, &more, &text), -1);
    ck_assert_int_eq(smtp_reply_line("250_x", 5, &code, &more, &text), -1);
}
END_TEST

START_TEST(enhanced_codes)
{
    strbuf out;
    strbuf_init(&out);
    ck_assert_uint_eq(smtp_reply_enhanced("5.1.1 no such user", 5, &out), 6);
    ck_assert_str_eq(strbuf_str(&out), "5.1.1");
    ck_assert_uint_eq(smtp_reply_enhanced("4.7.0", 4, &out), 5);
    ck_assert_str_eq(strbuf_str(&out), "4.7.0");
    ck_assert_uint_eq(smtp_reply_enhanced("2.0.0  Ok", 2, &out), 7);
    ck_assert_uint_eq(smtp_reply_enhanced("5.1.1 x", 4, &out), 0);     /* class mismatch */
    ck_assert_uint_eq(smtp_reply_enhanced("5.1 x", 5, &out), 0);
    ck_assert_uint_eq(smtp_reply_enhanced("5.1.1x", 5, &out), 0);
    ck_assert_uint_eq(smtp_reply_enhanced("5.1234.1 x", 5, &out), 0);
    ck_assert_uint_eq(smtp_reply_enhanced("5..1 x", 5, &out), 0);
    ck_assert_uint_eq(smtp_reply_enhanced("", 5, &out), 0);
    ck_assert_uint_eq(smtp_reply_enhanced("5.", 5, &out), 0);
    strbuf_release(&out);
}
END_TEST

START_TEST(ehlo_keywords)
{
    strbuf kw, arg;
    strbuf_init(&kw);
    strbuf_init(&arg);
    smtp_ehlo_keyword("size 10240000", &kw, &arg);
    ck_assert_str_eq(strbuf_str(&kw), "SIZE");
    ck_assert_str_eq(strbuf_str(&arg), "10240000");
    smtp_ehlo_keyword("AUTH=LOGIN PLAIN", &kw, &arg);
    ck_assert_str_eq(strbuf_str(&kw), "AUTH");
    ck_assert_str_eq(strbuf_str(&arg), "LOGIN PLAIN");
    smtp_ehlo_keyword("PIPELINING", &kw, &arg);
    ck_assert_str_eq(strbuf_str(&kw), "PIPELINING");
    ck_assert_str_eq(strbuf_str(&arg), "");
    smtp_ehlo_keyword("", &kw, &arg);
    ck_assert_str_eq(strbuf_str(&kw), "");
    strbuf_release(&kw);
    strbuf_release(&arg);
}
END_TEST

static void nexthop_ok(const char *in, const char *host, int port, int mx)
{
    char *h = NULL;
    int p = 0, m = -1;
    ck_assert_msg(smtp_nexthop_parse(in, 25, &h, &p, &m) == 0, "%s rejected", in);
    ck_assert_str_eq(h, host);
    ck_assert_int_eq(p, port);
    ck_assert_int_eq(m, mx);
    xfree(h);
}

START_TEST(nexthop_syntax)
{
    nexthop_ok("example.com", "example.com", 25, 1);
    nexthop_ok("example.com:587", "example.com", 587, 1);
    nexthop_ok("example.com:submission", "example.com", 587, 1);
    nexthop_ok("[mail.example.com]", "mail.example.com", 25, 0);
    nexthop_ok("[mail.example.com]:2525", "mail.example.com", 2525, 0);
    nexthop_ok("[192.0.2.1]:26", "192.0.2.1", 26, 0);
    nexthop_ok("[2001:db8::1]", "2001:db8::1", 25, 0);
    nexthop_ok("[ipv6:2001:db8::1]:465", "2001:db8::1", 465, 0);
    nexthop_ok("inet:[relay.test]:smtp", "relay.test", 25, 0);
    static const char *const bad[] = {
        "", "[", "[]", "[]:25", "[host", "[host]x", "[host]:", "[host]:0", "[host]:65536",
        "[host]:+25", "[host]: 25", "[host]:25x", "[a b]", "[a/b]:25", "host:", "host:abc",
        "ho st", "2001:db8::1", "a..b", ".", "host:99999999999999999999", "[ipv6:]",
        NULL,
    };
    for (int i = 0; bad[i]; i++) {
        char *h = (char *)1;
        int p, m;
        ck_assert_msg(smtp_nexthop_parse(bad[i], 25, &h, &p, &m) == -1, "%s accepted", bad[i]);
        ck_assert_ptr_null(h);
    }
    ck_assert_int_eq(smtp_port_parse("smtps"), 465);
    ck_assert_int_eq(smtp_port_parse("65535"), 65535);
    ck_assert_int_eq(smtp_port_parse("-1"), -1);
    ck_assert_int_eq(smtp_port_parse("imap"), -1);
}
END_TEST

Suite *dns_suite(void)
{
    Suite *s = suite_create("dns");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, mx_parse_and_sort);
    tcase_add_test(tc, mx_equal_preferences_shuffled);
    tcase_add_test(tc, null_mx_is_empty_host);
    tcase_add_test(tc, other_types_skipped);
    tcase_add_test(tc, bad_host_names_skipped);
    tcase_add_test(tc, malformed_replies_rejected);
    tcase_add_test(tc, addresses_parsed_and_deduplicated);
    tcase_add_test(tc, dns_init_server_syntax);
    tcase_add_test(tc, reply_lines);
    tcase_add_test(tc, enhanced_codes);
    tcase_add_test(tc, ehlo_keywords);
    tcase_add_test(tc, nexthop_syntax);
    suite_add_tcase(s, tc);
    return s;
}
