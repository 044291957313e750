/*
 * test_strbuf.c - unit tests for common/strbuf.c and common/mem.c.
 */
#include <check.h>
#include <string.h>

#include "strbuf.h"
#include "mem.h"

START_TEST(append_grows_and_terminates)
{
    strbuf sb;
    strbuf_init(&sb);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(strbuf_append_str(&sb, "ab"), 0);
    ck_assert_uint_eq(sb.len, 2000);
    ck_assert_int_eq(sb.data[2000], '\0');
    ck_assert_int_eq(strncmp(sb.data, "abab", 4), 0);
    strbuf_release(&sb);
}
END_TEST

START_TEST(binary_safe)
{
    strbuf sb;
    strbuf_init(&sb);
    strbuf_append(&sb, "a\0b", 3);
    ck_assert_uint_eq(sb.len, 3);
    ck_assert_int_eq(memcmp(sb.data, "a\0b", 3), 0);
    strbuf_release(&sb);
}
END_TEST

START_TEST(limit_refuses_growth)
{
    strbuf sb;
    strbuf_init(&sb);
    sb.limit = 5;
    ck_assert_int_eq(strbuf_append_str(&sb, "abcd"), 0);
    ck_assert_int_eq(strbuf_append_str(&sb, "ef"), -1);
    ck_assert_uint_eq(sb.len, 4);
    ck_assert_int_eq(strbuf_appendf(&sb, "%d", 12), -1);
    ck_assert_int_eq(strbuf_appendf(&sb, "%d", 1), 0);
    ck_assert_str_eq(strbuf_str(&sb), "abcd1");
    strbuf_release(&sb);
}
END_TEST

START_TEST(printf_rtrim_detach)
{
    strbuf sb;
    strbuf_init(&sb);
    strbuf_printf(&sb, "%s=%d \r\n\t", "x", 42);
    strbuf_rtrim(&sb);
    ck_assert_str_eq(strbuf_str(&sb), "x=42");
    size_t len;
    char *p = strbuf_detach(&sb, &len);
    ck_assert_uint_eq(len, 4);
    ck_assert_str_eq(p, "x=42");
    ck_assert_ptr_null(sb.data);
    xfree(p);
}
END_TEST

START_TEST(xstrndup_bounds)
{
    char *p = xstrndup("hello", 3);
    ck_assert_str_eq(p, "hel");
    xfree(p);
    p = xstrndup("hi", 10);
    ck_assert_str_eq(p, "hi");
    xfree(p);
}
END_TEST

Suite *strbuf_suite(void)
{
    Suite *s = suite_create("strbuf");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, append_grows_and_terminates);
    tcase_add_test(tc, binary_safe);
    tcase_add_test(tc, limit_refuses_growth);
    tcase_add_test(tc, printf_rtrim_detach);
    tcase_add_test(tc, xstrndup_bounds);
    suite_add_tcase(s, tc);
    return s;
}
