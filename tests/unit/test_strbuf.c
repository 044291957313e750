/*
 * test_strbuf.c - unit tests for common/strbuf.c and common/mem.c.
 */
#include <check.h>
#include <limits.h>
#include <stdio.h>
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

/* appendf formats into the spare room and formats again only when the
 * text did not fit: every length around the room's edge must come out whole. */
START_TEST(appendf_around_capacity)
{
    char want[300];
    for (size_t pre = 0; pre < 70; pre++) {
        for (int n = 0; n < 140; n++) {
            strbuf sb;
            strbuf_init(&sb);
            for (size_t i = 0; i < pre; i++)
                strbuf_append_char(&sb, 'p');
            ck_assert_int_eq(strbuf_appendf(&sb, "%.*s|%d", n,
                "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", n), 0);
            snprintf(want, sizeof(want), "%.*s%.*s|%d", (int)pre,
                "pppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp",
                n, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", n);
            ck_assert_uint_eq(sb.len, strlen(want));
            ck_assert_str_eq(sb.data, want);
            ck_assert_int_eq(sb.data[sb.len], '\0');
            ck_assert_uint_lt(sb.len, sb.cap);
            strbuf_release(&sb);
        }
    }
}
END_TEST

/* A refused appendf leaves the content and its NUL as they were, also
 * when the text was already written into the spare room. */
START_TEST(appendf_limit_keeps_content)
{
    strbuf sb;
    strbuf_init(&sb);
    strbuf_reserve(&sb, 100);
    sb.limit = 10;
    ck_assert_int_eq(strbuf_append_str(&sb, "abc"), 0);
    ck_assert_int_eq(strbuf_appendf(&sb, "%s", "12345678"), -1);
    ck_assert_uint_eq(sb.len, 3);
    ck_assert_int_eq(sb.data[3], '\0');
    ck_assert_str_eq(strbuf_str(&sb), "abc");
    ck_assert_int_eq(strbuf_appendf(&sb, "%s", "1234567"), 0);
    ck_assert_str_eq(strbuf_str(&sb), "abc1234567");
    strbuf_release(&sb);
}
END_TEST

START_TEST(append_int_like_printf)
{
    static const long long vals[] = { 0, 1, -1, 9, 10, -10, 4096, 123456789012LL,
                                      LLONG_MAX, LLONG_MIN, LLONG_MIN + 1 };
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        char want[32];
        snprintf(want, sizeof(want), "x%lld", vals[i]);
        strbuf sb;
        strbuf_init(&sb);
        strbuf_append_char(&sb, 'x');
        ck_assert_int_eq(strbuf_append_int(&sb, vals[i]), 0);
        ck_assert_str_eq(strbuf_str(&sb), want);
        ck_assert_uint_eq(sb.len, strlen(want));
        strbuf_release(&sb);
    }
    strbuf sb;
    strbuf_init(&sb);
    sb.limit = 3;
    ck_assert_int_eq(strbuf_append_int(&sb, 1234), -1);
    ck_assert_uint_eq(sb.len, 0);
    ck_assert_int_eq(strbuf_append_int(&sb, -12), 0);
    ck_assert_str_eq(strbuf_str(&sb), "-12");
    strbuf_release(&sb);
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
    tcase_add_test(tc, appendf_around_capacity);
    tcase_add_test(tc, appendf_limit_keeps_content);
    tcase_add_test(tc, append_int_like_printf);
    tcase_add_test(tc, xstrndup_bounds);
    suite_add_tcase(s, tc);
    return s;
}
