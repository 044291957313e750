/*
 * test_smtp_parse.c - unit tests for common/smtp_parse.c: command splitting,
 * MAIL/RCPT keyword, ESMTP parameters, xtext, NOTIFY/ORCPT, SIZE, BDAT,
 * with malformed and hostile input.
 */
#include <check.h>
#include <string.h>

#include "smtp_parse.h"
#include "strbuf.h"

START_TEST(cmd_split_basic)
{
    struct smtp_cmd c;
    smtp_cmd_init(&c);
    const char *l = "mail FROM:<a@b> SIZE=10";
    ck_assert_int_eq(smtp_cmd_split(l, strlen(l), &c), 0);
    ck_assert_str_eq(strbuf_str(&c.verb), "MAIL");
    ck_assert_str_eq(strbuf_str(&c.arg), "FROM:<a@b> SIZE=10");
    l = "  quit  ";
    ck_assert_int_eq(smtp_cmd_split(l, strlen(l), &c), 0);
    ck_assert_str_eq(strbuf_str(&c.verb), "QUIT");
    ck_assert_str_eq(strbuf_str(&c.arg), "");
    smtp_cmd_release(&c);
}
END_TEST

START_TEST(cmd_split_rejects_bad_input)
{
    struct smtp_cmd c;
    smtp_cmd_init(&c);
    ck_assert_int_eq(smtp_cmd_split("", 0, &c), -1);
    ck_assert_int_eq(smtp_cmd_split("   ", 3, &c), -1);
    ck_assert_int_eq(smtp_cmd_split("NO\0OP", 5, &c), -1);
    ck_assert_int_eq(smtp_cmd_split("HELO a\0b", 8, &c), -1);
    ck_assert_int_eq(smtp_cmd_split("HE\x01LO x", 7, &c), -1);
    ck_assert_int_eq(smtp_cmd_split("H\xc3\xa9LO x", 7, &c), -1);
    ck_assert_int_eq(smtp_cmd_split("EHLO a\rb", 8, &c), -1);
    ck_assert_int_eq(smtp_cmd_split("MAIL FROM:<a\nb@c>", 17, &c), -1);
    ck_assert_int_eq(smtp_cmd_split("NOOP \x7f", 6, &c), -1);
    /* 8-bit bytes in the argument are fine (SMTPUTF8 addresses) */
    ck_assert_int_eq(smtp_cmd_split("MAIL FROM:<j\xc3\xb6rg@x>", 19, &c), 0);
    ck_assert_str_eq(strbuf_str(&c.arg), "FROM:<j\xc3\xb6rg@x>");
    smtp_cmd_release(&c);
}
END_TEST

START_TEST(path_arg_keyword)
{
    ck_assert_str_eq(smtp_path_arg("FROM:<a@b>", "FROM"), "<a@b>");
    ck_assert_str_eq(smtp_path_arg("from: <a@b> X", "FROM"), "<a@b> X");
    ck_assert_str_eq(smtp_path_arg("To:<>", "TO"), "<>");
    ck_assert_ptr_null(smtp_path_arg("FROM <a@b>", "FROM"));
    ck_assert_ptr_null(smtp_path_arg("FRO:<a@b>", "FROM"));
    ck_assert_ptr_null(smtp_path_arg("TO:<a@b>", "FROM"));
    ck_assert_ptr_null(smtp_path_arg("", "TO"));
}
END_TEST

START_TEST(params_good)
{
    struct smtp_params p;
    strbuf err;
    smtp_params_init(&p);
    strbuf_init(&err);
    const char *s = " size=100 BODY=8BITMIME SMTPUTF8 ret=HDRS ENVID=a+2Bb";
    ck_assert_int_eq(smtp_params_parse(s, strlen(s), 0, &p, &err), 0);
    ck_assert_uint_eq(p.n, 5);
    ck_assert_str_eq(p.list[0].key, "SIZE");
    ck_assert_str_eq(p.list[0].value, "100");
    ck_assert_ptr_null(smtp_params_find(&p, "SMTPUTF8")->value);
    ck_assert_str_eq(smtp_params_find(&p, "RET")->value, "HDRS");
    ck_assert_ptr_null(smtp_params_find(&p, "AUTH"));
    ck_assert_int_eq(smtp_params_parse("", 0, 0, &p, &err), 0);
    ck_assert_uint_eq(p.n, 0);
    smtp_params_release(&p);
    strbuf_release(&err);
}
END_TEST

START_TEST(params_malformed)
{
    static const char *bad[] = {
        "SIZE=", "=10", "-X=1", "SI_ZE=1", "SIZE=1=2", "X=a\tb",
        "X=\x7f", "X=caf\xc3\xa9", "X;=1",
    };
    struct smtp_params p;
    strbuf err;
    smtp_params_init(&p);
    strbuf_init(&err);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        strbuf_reset(&err);
        ck_assert_msg(smtp_params_parse(bad[i], strlen(bad[i]), 0, &p, &err) == -1,
                      "accepted %s", bad[i]);
        ck_assert_uint_gt(err.len, 0);
    }
    /* 8-bit values are fine with SMTPUTF8 */
    ck_assert_int_eq(smtp_params_parse("X=caf\xc3\xa9", 7, 1, &p, &err), 0);
    /* a NUL inside the given length is not a value byte */
    ck_assert_int_eq(smtp_params_parse("X=a\0b", 5, 1, &p, &err), -1);
    smtp_params_release(&p);
    strbuf_release(&err);
}
END_TEST

START_TEST(xtext)
{
    strbuf out;
    strbuf_init(&out);
    ck_assert_int_eq(smtp_xtext_decode("a+2Bb+3D", 8, &out), 0);
    ck_assert_str_eq(strbuf_str(&out), "a+b=");
    ck_assert_int_eq(smtp_xtext_decode("a+2b", 4, &out), -1);   /* lower hex */
    ck_assert_int_eq(smtp_xtext_decode("a+2", 3, &out), -1);
    ck_assert_int_eq(smtp_xtext_decode("a+", 2, &out), -1);
    ck_assert_int_eq(smtp_xtext_decode("a=b", 3, &out), -1);
    ck_assert_int_eq(smtp_xtext_decode("a b", 3, &out), -1);
    ck_assert_int_eq(smtp_xtext_valid("rfc822", 6), 1);
    strbuf_release(&out);
}
END_TEST

START_TEST(notify_and_orcpt)
{
    ck_assert_int_eq(smtp_notify_valid("NEVER"), 1);
    ck_assert_int_eq(smtp_notify_valid("success,FAILURE,Delay"), 1);
    ck_assert_int_eq(smtp_notify_valid("SUCCESS,NEVER"), 0);
    ck_assert_int_eq(smtp_notify_valid("SUCCESS,SUCCESS"), 0);
    ck_assert_int_eq(smtp_notify_valid("SUCCESS,"), 0);
    ck_assert_int_eq(smtp_notify_valid(""), 0);
    ck_assert_int_eq(smtp_notify_valid(NULL), 0);
    ck_assert_int_eq(smtp_notify_valid("SOMETIMES"), 0);
    ck_assert_int_eq(smtp_orcpt_valid("rfc822;a+40b@c"), 1);
    ck_assert_int_eq(smtp_orcpt_valid("rfc822;"), 0);
    ck_assert_int_eq(smtp_orcpt_valid(";a@b"), 0);
    ck_assert_int_eq(smtp_orcpt_valid("rfc822a@b"), 0);
    ck_assert_int_eq(smtp_orcpt_valid("rfc 822;a"), 0);
    ck_assert_int_eq(smtp_orcpt_valid("rfc822;a+4"), 0);
}
END_TEST

START_TEST(size_and_bdat)
{
    unsigned long long n;
    int last;
    ck_assert_int_eq(smtp_size_parse("10240000", &n), 0);
    ck_assert_uint_eq(n, 10240000);
    ck_assert_int_eq(smtp_size_parse("18446744073709551615", &n), 0);
    ck_assert_int_eq(smtp_size_parse("18446744073709551616", &n), -1);
    ck_assert_int_eq(smtp_size_parse("-1", &n), -1);
    ck_assert_int_eq(smtp_size_parse("", &n), -1);
    ck_assert_int_eq(smtp_size_parse("1x", &n), -1);

    ck_assert_int_eq(smtp_bdat_parse("100", &n, &last), 0);
    ck_assert_uint_eq(n, 100);
    ck_assert_int_eq(last, 0);
    ck_assert_int_eq(smtp_bdat_parse("0 LAST", &n, &last), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(last, 1);
    ck_assert_int_eq(smtp_bdat_parse("5 last", &n, &last), 0);
    ck_assert_int_eq(last, 1);
    ck_assert_int_eq(smtp_bdat_parse("", &n, &last), -1);
    ck_assert_int_eq(smtp_bdat_parse("LAST", &n, &last), -1);
    ck_assert_int_eq(smtp_bdat_parse("5 FIRST", &n, &last), -1);
    ck_assert_int_eq(smtp_bdat_parse("5x", &n, &last), -1);
    ck_assert_int_eq(smtp_bdat_parse("-5", &n, &last), -1);
    ck_assert_int_eq(smtp_bdat_parse("99999999999999999999999", &n, &last), -1);
}
END_TEST

Suite *smtp_parse_suite(void)
{
    Suite *s = suite_create("smtp_parse");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, cmd_split_basic);
    tcase_add_test(tc, cmd_split_rejects_bad_input);
    tcase_add_test(tc, path_arg_keyword);
    tcase_add_test(tc, params_good);
    tcase_add_test(tc, params_malformed);
    tcase_add_test(tc, xtext);
    tcase_add_test(tc, notify_and_orcpt);
    tcase_add_test(tc, size_and_bdat);
    suite_add_tcase(s, tc);
    return s;
}
