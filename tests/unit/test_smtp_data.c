/*
 * test_smtp_data.c - unit tests for common/smtp_data.c: the DATA terminator
 * state machine (SMTP smuggling variants), dot-unstuffing, CRLF -> LF,
 * bare-LF counting, and the BDAT decoder across chunk boundaries.
 */
#include <check.h>
#include <string.h>

#include "smtp_data.h"
#include "strbuf.h"

/* Feed the whole input at once; returns bytes consumed. */
static size_t feed_all(const char *in, strbuf *out, struct smtp_data_decoder *d)
{
    smtp_data_init(d);
    return smtp_data_decode(d, in, strlen(in), out);
}

/* Feed one byte at a time: the result must not depend on how TCP splits. */
static size_t feed_bytewise(const char *in, strbuf *out, struct smtp_data_decoder *d)
{
    size_t used = 0, len = strlen(in);
    smtp_data_init(d);
    while (used < len && !d->done)
        used += smtp_data_decode(d, in + used, 1, out);
    return used;
}

START_TEST(simple_message_ends_at_crlf_dot_crlf)
{
    const char *in = "Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n";
    for (int mode = 0; mode < 2; mode++) {
        strbuf out;
        struct smtp_data_decoder d;
        strbuf_init(&out);
        size_t used = mode ? feed_bytewise(in, &out, &d) : feed_all(in, &out, &d);
        ck_assert_int_eq(d.done, 1);
        ck_assert_str_eq(strbuf_str(&out), "Subject: x\n\nhello\n");
        /* the pipelined QUIT is left for the command reader */
        ck_assert_str_eq(in + used, "QUIT\r\n");
        ck_assert_uint_eq(d.size, strlen("Subject: x\r\n\r\nhello\r\n"));
        ck_assert_uint_eq(d.bare_lf, 0);
        strbuf_release(&out);
    }
}
END_TEST

START_TEST(empty_message)
{
    strbuf out;
    struct smtp_data_decoder d;
    strbuf_init(&out);
    size_t used = feed_all(".\r\nNOOP\r\n", &out, &d);
    ck_assert_int_eq(d.done, 1);
    ck_assert_uint_eq(used, 3);
    ck_assert_uint_eq(out.len, 0);
    strbuf_release(&out);
}
END_TEST

START_TEST(dot_unstuffing)
{
    strbuf out;
    struct smtp_data_decoder d;
    strbuf_init(&out);
    feed_all("..leading\r\n...\r\nmid.dle\r\n.\r\n", &out, &d);
    ck_assert_int_eq(d.done, 1);
    ck_assert_str_eq(strbuf_str(&out), ".leading\n..\nmid.dle\n");
    strbuf_release(&out);
}
END_TEST

/* Each of these must NOT terminate; the real terminator comes later. */
static const char *smuggling[] = {
    "a\n.\nMAIL FROM:<evil@x>\r\n",             /* <LF>.<LF> */
    "a\r.\rMAIL FROM:<evil@x>\r\n",             /* <CR>.<CR> */
    "a\n.\r\nMAIL FROM:<evil@x>\r\n",           /* <LF>.<CR><LF> */
    "a\r\n.\nMAIL FROM:<evil@x>\r\n",           /* <CR><LF>.<LF> */
    "a\r\n.\r\rMAIL FROM:<evil@x>\r\n",         /* <CR><LF>.<CR><CR> */
    "a\r.\r\nMAIL FROM:<evil@x>\r\n",           /* <CR>.<CR><LF> */
    "a\r\n .\r\nMAIL FROM:<evil@x>\r\n",        /* space before the dot */
    "a\r\n.x\r\nMAIL FROM:<evil@x>\r\n",
};

START_TEST(smuggling_variants_do_not_terminate)
{
    for (size_t k = 0; k < sizeof(smuggling) / sizeof(smuggling[0]); k++) {
        strbuf in, out;
        struct smtp_data_decoder d;
        strbuf_init(&in);
        strbuf_init(&out);
        strbuf_append_str(&in, smuggling[k]);
        size_t prefix = in.len;
        strbuf_append_str(&in, "tail\r\n.\r\nRSET\r\n");
        smtp_data_init(&d);
        size_t used = smtp_data_decode(&d, in.data, in.len, &out);
        ck_assert_msg(d.done == 1, "variant %zu: no end at all", k);
        /* the end found is the real one, after the smuggled command */
        ck_assert_msg(used == prefix + strlen("tail\r\n.\r\n"),
                      "variant %zu ended early at %zu", k, used);
        ck_assert_msg(strstr(strbuf_str(&out), "MAIL FROM:<evil@x>") != NULL,
                      "variant %zu: smuggled text not kept as content", k);
        strbuf_release(&in);
        strbuf_release(&out);
    }
}
END_TEST

START_TEST(bare_lf_is_counted)
{
    strbuf out;
    struct smtp_data_decoder d;
    strbuf_init(&out);
    feed_all("one\ntwo\r\nthree\n\r\n.\r\n", &out, &d);
    ck_assert_int_eq(d.done, 1);
    ck_assert_uint_eq(d.bare_lf, 2);
    ck_assert_str_eq(strbuf_str(&out), "one\ntwo\nthree\n\n");
    strbuf_release(&out);
}
END_TEST

START_TEST(bare_cr_is_data)
{
    strbuf out;
    struct smtp_data_decoder d;
    strbuf_init(&out);
    feed_all("a\rb\r\r\n.\r\r\n.\r\n", &out, &d);
    ck_assert_int_eq(d.done, 1);
    ck_assert_uint_eq(d.bare_lf, 0);
    /* "a CR b CR" then CRLF; then a line ". CR" unstuffed to "CR" */
    ck_assert_uint_eq(out.len, 7);
    ck_assert_int_eq(memcmp(out.data, "a\rb\r\n\r\n", 7), 0);
    strbuf_release(&out);
}
END_TEST

START_TEST(no_terminator_consumes_everything)
{
    strbuf out;
    struct smtp_data_decoder d;
    strbuf_init(&out);
    const char *in = "line\r\n.\r";
    size_t used = feed_all(in, &out, &d);
    ck_assert_int_eq(d.done, 0);
    ck_assert_uint_eq(used, strlen(in));
    /* now the LF arrives in the next read */
    used = smtp_data_decode(&d, "\nX", 2, &out);
    ck_assert_int_eq(d.done, 1);
    ck_assert_uint_eq(used, 1);
    ck_assert_str_eq(strbuf_str(&out), "line\n");
    strbuf_release(&out);
}
END_TEST

START_TEST(nul_and_binary_bytes_pass_through)
{
    strbuf out;
    struct smtp_data_decoder d;
    strbuf_init(&out);
    smtp_data_init(&d);
    const char in[] = "a\0b\xff\r\n.\r\n";
    size_t used = smtp_data_decode(&d, in, sizeof(in) - 1, &out);
    ck_assert_int_eq(d.done, 1);
    ck_assert_uint_eq(used, sizeof(in) - 1);
    ck_assert_uint_eq(out.len, 5);
    ck_assert_int_eq(memcmp(out.data, "a\0b\xff\n", 5), 0);
    strbuf_release(&out);
}
END_TEST

START_TEST(bdat_crlf_split_across_chunks)
{
    strbuf out;
    struct smtp_data_decoder d;
    strbuf_init(&out);
    smtp_bdat_init(&d);
    smtp_bdat_decode(&d, "ab\r", 3, &out);
    ck_assert_str_eq(strbuf_str(&out), "ab");       /* CR held */
    smtp_bdat_decode(&d, "\ncd\r", 4, &out);
    ck_assert_str_eq(strbuf_str(&out), "ab\ncd");
    smtp_bdat_decode(&d, "x.\r\n", 4, &out);        /* no dot handling */
    ck_assert_str_eq(strbuf_str(&out), "ab\ncd\rx.\n");
    smtp_bdat_decode(&d, "end\r", 4, &out);
    smtp_bdat_finish(&d, &out);
    ck_assert_str_eq(strbuf_str(&out), "ab\ncd\rx.\nend\r");
    ck_assert_uint_eq(d.size, strlen("ab\r\ncd\rx.\r\nend\r"));
    strbuf_release(&out);
}
END_TEST

/* Property: for random inputs over the bytes that matter, the message ends
 * exactly where the reference rule says (first CR LF . CR LF, or . CR LF at
 * the start), and splitting the input into reads changes nothing. */
START_TEST(random_inputs_match_reference_rule)
{
    static const char alphabet[] = { '\r', '\n', '.', 'a' };
    unsigned rnd = 12345;
    for (int iter = 0; iter < 20000; iter++) {
        char in[24];
        size_t len = 0;
        rnd = rnd * 1103515245u + 12345u;
        size_t want = (rnd >> 16) % sizeof(in);
        while (len < want) {
            rnd = rnd * 1103515245u + 12345u;
            in[len++] = alphabet[(rnd >> 16) % 4];
        }
        size_t ref = 0;
        if (len >= 3 && memcmp(in, ".\r\n", 3) == 0)
            ref = 3;
        else
            for (size_t i = 0; i + 5 <= len && !ref; i++)
                if (memcmp(in + i, "\r\n.\r\n", 5) == 0)
                    ref = i + 5;

        strbuf whole, parts;
        struct smtp_data_decoder a, b;
        strbuf_init(&whole);
        strbuf_init(&parts);
        smtp_data_init(&a);
        size_t used = smtp_data_decode(&a, in, len, &whole);
        ck_assert_int_eq(a.done, ref != 0);
        ck_assert_uint_eq(used, ref ? ref : len);
        smtp_data_init(&b);
        size_t used_b = 0;
        while (used_b < len && !b.done)
            used_b += smtp_data_decode(&b, in + used_b, 1, &parts);
        ck_assert_uint_eq(used_b, used);
        ck_assert_uint_eq(parts.len, whole.len);
        ck_assert_int_eq(memcmp(parts.data ? parts.data : "", whole.data ? whole.data : "", whole.len), 0);
        ck_assert_uint_eq(a.bare_lf, b.bare_lf);
        strbuf_release(&whole);
        strbuf_release(&parts);
    }
}
END_TEST

Suite *smtp_data_suite(void)
{
    Suite *s = suite_create("smtp_data");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, simple_message_ends_at_crlf_dot_crlf);
    tcase_add_test(tc, empty_message);
    tcase_add_test(tc, dot_unstuffing);
    tcase_add_test(tc, smuggling_variants_do_not_terminate);
    tcase_add_test(tc, bare_lf_is_counted);
    tcase_add_test(tc, bare_cr_is_data);
    tcase_add_test(tc, no_terminator_consumes_everything);
    tcase_add_test(tc, nul_and_binary_bytes_pass_through);
    tcase_add_test(tc, bdat_crlf_split_across_chunks);
    tcase_add_test(tc, random_inputs_match_reference_rule);
    suite_add_tcase(s, tc);
    return s;
}
