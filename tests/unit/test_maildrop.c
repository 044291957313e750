/*
 * test_maildrop.c - unit tests for common/maildrop.c, the reader of
 * maildrop files (untrusted input from local users): a good file, every
 * kind of malformed envelope and content, and truncation at every byte.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maildrop.h"
#include "queue.h"
#include "strbuf.h"

#define GOOD "V1:1\nT17:1795000000 123456\nS11:a@example.o\nA17:fullname=Ada Love\n" \
             "A13:flags=extract\nA10:envid=E-42\nA8:ret=HDRS\nN15:SUCCESS,FAILURE\n" \
             "O18:rfc822;b@example.o\nR11:b@example.o\nR3:bob\nL8:Subject:\nL0:\nL4:body\nE0:\n"

/* Read a whole file: -1 malformed, else number of content lines. */
static int read_all(const char *data, size_t len, struct maildrop_msg *m, strbuf *why)
{
    FILE *fp = fmemopen((void *) data, len ? len : 1, "r");
    ck_assert_ptr_nonnull(fp);
    if (len == 0) {
        fgetc(fp);              /* fmemopen needs a size: make it empty */
    }
    strbuf line;
    strbuf_init(&line);
    int first, n = -1;
    if (maildrop_read_envelope(fp, m, &first, &line, why) == 0) {
        n = 0;
        if (first == QREC_LINE) {
            int rc;
            n = 1;
            while ((rc = maildrop_read_content(fp, &line, why)) == 1)
                n++;
            if (rc < 0)
                n = -1;
        }
    }
    strbuf_release(&line);
    fclose(fp);
    return n;
}

static int try(const char *data)
{
    struct maildrop_msg m;
    strbuf why;
    maildrop_msg_init(&m);
    strbuf_init(&why);
    int n = read_all(data, strlen(data), &m, &why);
    if (n < 0)
        ck_assert_uint_gt(why.len, 0);
    maildrop_msg_free(&m);
    strbuf_release(&why);
    return n;
}

START_TEST(good_file)
{
    struct maildrop_msg m;
    strbuf why;
    maildrop_msg_init(&m);
    strbuf_init(&why);
    ck_assert_int_eq(read_all(GOOD, strlen(GOOD), &m, &why), 3);
    ck_assert_str_eq(strbuf_str(&m.sender), "a@example.o");
    ck_assert_int_eq(m.nrcpt, 2);
    ck_assert_int_eq(m.extract, 1);
    ck_assert_int_eq(m.arrival, 1795000000LL);
    const char *want[][2] = {
        { "fullname", "Ada Love" }, { "envid", "E-42" }, { "ret", "HDRS" },
        { "notify", "SUCCESS,FAILURE" }, { "orcpt", "rfc822;b@example.o" },
        { "rcpt", "b@example.o" }, { "rcpt", "bob" },
    };
    ck_assert_uint_eq(m.env->n, 7);
    for (size_t i = 0; i < 7; i++) {
        ck_assert_str_eq(m.env->attrs[i].name, want[i][0]);
        ck_assert_str_eq(strbuf_str(&m.env->attrs[i].value), want[i][1]);
    }
    maildrop_msg_free(&m);
    strbuf_release(&why);
}
END_TEST

START_TEST(null_sender_and_empty_content)
{
    ck_assert_int_eq(try("V1:1\nS0:\nR3:bob\nE0:\n"), 0);
}
END_TEST

/* T is informational: a time that does not read as one is ignored (0),
 * never a reason to refuse the file. */
START_TEST(arrival_time_record)
{
    static const struct { const char *file; long long want; } cases[] = {
        { "V1:1\nT12:1700000000 5\nS0:\nR3:bob\nE0:\n", 1700000000LL },
        { "V1:1\nT10:1700000000\nS0:\nR3:bob\nE0:\n", 1700000000LL },
        { "V1:1\nS0:\nR3:bob\nE0:\n", 0 },
        { "V1:1\nT3:abc\nS0:\nR3:bob\nE0:\n", 0 },
        { "V1:1\nT2:-5\nS0:\nR3:bob\nE0:\n", 0 },
        { "V1:1\nT11:17000000x 5\nS0:\nR3:bob\nE0:\n", 0 },
        { "V1:1\nT20:99999999999999999999\nS0:\nR3:bob\nE0:\n", 0 },
        { "V1:1\nT0:\nS0:\nR3:bob\nE0:\n", 0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct maildrop_msg m;
        strbuf why;
        maildrop_msg_init(&m);
        strbuf_init(&why);
        ck_assert_int_eq(read_all(cases[i].file, strlen(cases[i].file), &m, &why), 0);
        ck_assert_int_eq(m.arrival, cases[i].want);
        maildrop_msg_free(&m);
        strbuf_release(&why);
    }
}
END_TEST

START_TEST(malformed_envelopes)
{
    static const char *const bad[] = {
        "",                                         /* nothing */
        "S0:\nR3:bob\nE0:\n",                       /* no V */
        "V1:2\nS0:\nR3:bob\nE0:\n",                 /* wrong version */
        "V1:1\nR3:bob\nE0:\n",                      /* no sender */
        "V1:1\nS0:\nS0:\nR3:bob\nE0:\n",            /* two senders */
        "V1:1\nS3:a\nb\nR3:bob\nE0:\n",             /* LF in the sender */
        "V1:1\nS5:<a@b>\nR3:bob\nE0:\n",            /* not internal form */
        "V1:1\nS0:\nR5:a b@c\nE0:\n",               /* bad recipient */
        "V1:1\nS0:\nR0:\nE0:\n",                    /* empty recipient */
        "V1:1\nS0:\nR4:b\0ob\nE0:\n",               /* NUL */
        "V1:1\nS0:\nA18:client_addr=1.2.3\nR3:bob\nE0:\n",  /* unknown attribute */
        "V1:1\nS0:\nA11:flags=local\nR3:bob\nE0:\n",        /* flag not allowed */
        "V1:1\nS0:\nA7:noequal\nR3:bob\nE0:\n",
        "V1:1\nS0:\nA12:fullname=a\tb\nR3:bob\nE0:\n",       /* control character */
        "V1:1\nS0:\nA9:envid=a b\nR3:bob\nE0:\n",
        "V1:1\nS0:\nA8:ret=BODY\nR3:bob\nE0:\n",
        "V1:1\nS0:\nN5:NEVERX\nR3:bob\nE0:\n",
        "V1:1\nS0:\nN5:NEVER\nN5:NEVER\nR3:bob\nE0:\n",     /* two N for one R */
        "V1:1\nS0:\nO3:bad\nR3:bob\nE0:\n",
        "V1:1\nS0:\nR3:bob\nN5:NEVER\nE0:\n",               /* dangling N */
        "V1:1\nS0:\nR3:bob\nM20:00000000000000000000\nE0:\n", /* queue-file record */
        "V1:1\nS0:\nR3:bob\nL1:x\nR3:eve\nE0:\n",           /* R in the content */
        "V1:1\nS0:\nR3:bob\nL1:x\n",                        /* no end */
        "V1:1\nS0:\nR3:bob\nL1:x\nE0:\nextra",              /* after the end */
        "V1:1\nS0:\nR3:bob\nE0:\nx",
        "V1:1\nS0:\nR03:bob\nE0:\n",                        /* leading zero */
        "V1:1\nS0:\nR9999:bob\nE0:\n",                      /* length past the end */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t len = strlen(bad[i]);
        if (i == 9)
            len = strlen("V1:1\nS0:\nR4:b") + 1 + strlen("ob\nE0:\n");
        struct maildrop_msg m;
        strbuf why;
        maildrop_msg_init(&m);
        strbuf_init(&why);
        int n = read_all(bad[i], len, &m, &why);
        ck_assert_msg(n < 0, "case %zu accepted", i);
        ck_assert_msg(why.len > 0, "case %zu: no reason", i);
        maildrop_msg_free(&m);
        strbuf_release(&why);
    }
}
END_TEST

START_TEST(every_truncation_is_refused)
{
    size_t len = strlen(GOOD);
    for (size_t cut = 0; cut < len; cut++) {
        struct maildrop_msg m;
        strbuf why;
        maildrop_msg_init(&m);
        strbuf_init(&why);
        ck_assert_msg(read_all(GOOD, cut, &m, &why) < 0, "truncated at %zu accepted", cut);
        maildrop_msg_free(&m);
        strbuf_release(&why);
    }
}
END_TEST

Suite *maildrop_suite(void)
{
    Suite *s = suite_create("maildrop");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, good_file);
    tcase_add_test(tc, null_sender_and_empty_content);
    tcase_add_test(tc, arrival_time_record);
    tcase_add_test(tc, malformed_envelopes);
    tcase_add_test(tc, every_truncation_is_refused);
    suite_add_tcase(s, tc);
    return s;
}
