/*
 * test_alias_list.c - unit tests for common/alias_list.c: alias values,
 * .forward syntax, and malformed input.
 */
#include <check.h>
#include <string.h>

#include "alias_list.h"
#include "mem.h"

static int parse(const char *text, struct alias_item **items, strbuf *err)
{
    return alias_list_parse(text, strlen(text), items, err);
}

START_TEST(plain_users_and_addresses)
{
    struct alias_item *it;
    strbuf err;
    strbuf_init(&err);
    int n = parse("alice, bob@example.org,carol", &it, &err);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(it[0].kind, ALIAS_ITEM_ADDRESS);
    ck_assert_str_eq(it[0].value, "alice");
    ck_assert_str_eq(it[1].value, "bob@example.org");
    ck_assert_str_eq(it[2].value, "carol");
    ck_assert_int_eq(it[2].no_expand, 0);
    alias_list_free(it, n);
    strbuf_release(&err);
}
END_TEST

START_TEST(blank_separates_addresses)
{
    struct alias_item *it;
    strbuf err;
    strbuf_init(&err);
    int n = parse("  alice   bob\t,, ,", &it, &err);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(it[0].value, "alice");
    ck_assert_str_eq(it[1].value, "bob");
    alias_list_free(it, n);
    strbuf_release(&err);
}
END_TEST

START_TEST(commands_files_includes)
{
    struct alias_item *it;
    strbuf err;
    strbuf_init(&err);
    int n = parse("|/usr/bin/procmail -a x, /var/log/mail archive ,:include:/etc/list,"
                  " \"|cat > /tmp/o, with comma\", :INCLUDE: /x/y", &it, &err);
    ck_assert_int_eq(n, 5);
    ck_assert_int_eq(it[0].kind, ALIAS_ITEM_COMMAND);
    ck_assert_str_eq(it[0].value, "/usr/bin/procmail -a x");
    ck_assert_int_eq(it[1].kind, ALIAS_ITEM_FILE);
    ck_assert_str_eq(it[1].value, "/var/log/mail archive");
    ck_assert_int_eq(it[2].kind, ALIAS_ITEM_INCLUDE);
    ck_assert_str_eq(it[2].value, "/etc/list");
    ck_assert_int_eq(it[3].kind, ALIAS_ITEM_COMMAND);
    ck_assert_str_eq(it[3].value, "cat > /tmp/o, with comma");
    ck_assert_int_eq(it[4].kind, ALIAS_ITEM_INCLUDE);
    ck_assert_str_eq(it[4].value, "/x/y");
    alias_list_free(it, n);
    strbuf_release(&err);
}
END_TEST

START_TEST(forward_file_lines_and_comments)
{
    struct alias_item *it;
    strbuf err;
    strbuf_init(&err);
    int n = parse("# my forward\r\n\\alice\r\n  # indented comment\n"
                  "\"|/usr/bin/vacation alice\"\nfriend@example.net # not a comment\n",
                  &it, &err);
    ck_assert_int_eq(n, 7);
    ck_assert_int_eq(it[0].kind, ALIAS_ITEM_ADDRESS);
    ck_assert_str_eq(it[0].value, "alice");
    ck_assert_int_eq(it[0].no_expand, 1);
    ck_assert_int_eq(it[1].kind, ALIAS_ITEM_COMMAND);
    ck_assert_str_eq(it[1].value, "/usr/bin/vacation alice");
    ck_assert_str_eq(it[2].value, "friend@example.net");
    /* '#' only starts a comment at the start of a line */
    ck_assert_str_eq(it[3].value, "#");
    ck_assert_str_eq(it[4].value, "not");
    ck_assert_str_eq(it[6].value, "comment");
    alias_list_free(it, n);
    strbuf_release(&err);
}
END_TEST

START_TEST(quoted_local_part_with_escape)
{
    struct alias_item *it;
    strbuf err;
    strbuf_init(&err);
    int n = parse("\"a b\\\"c\"", &it, &err);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(it[0].kind, ALIAS_ITEM_ADDRESS);
    ck_assert_str_eq(it[0].value, "a b\"c");
    alias_list_free(it, n);
    strbuf_release(&err);
}
END_TEST

START_TEST(empty_input)
{
    struct alias_item *it = (struct alias_item *)1;
    strbuf err;
    strbuf_init(&err);
    ck_assert_int_eq(parse("", &it, &err), 0);
    ck_assert_ptr_null(it);
    ck_assert_int_eq(parse(" , \n# only a comment\n", &it, &err), 0);
    strbuf_release(&err);
}
END_TEST

START_TEST(malformed_inputs)
{
    static const char *const bad[] = {
        "\"unterminated",
        "alice, \"|cmd\n\"",
        "|",
        "|   ",
        ":include:relative/path",
        ":include:",
        "\"\"",
        "a, \"\\",
    };
    strbuf err;
    strbuf_init(&err);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct alias_item *it = NULL;
        strbuf_reset(&err);
        int n = parse(bad[i], &it, &err);
        ck_assert_msg(n == -1, "accepted \"%s\" (%d items)", bad[i], n);
        ck_assert_ptr_null(it);
        ck_assert_uint_gt(err.len, 0);
    }
    /* an embedded NUL is rejected, not read as the end */
    struct alias_item *it = NULL;
    ck_assert_int_eq(alias_list_parse("alice\0bob", 9, &it, &err), -1);
    ck_assert_str_eq(strbuf_str(&err), "NUL byte in alias list");
    strbuf_release(&err);
}
END_TEST

START_TEST(length_is_respected)
{
    struct alias_item *it;
    strbuf err;
    strbuf_init(&err);
    /* only the first 5 bytes are the value: "alice" */
    int n = alias_list_parse("alice,bob", 5, &it, &err);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(it[0].value, "alice");
    alias_list_free(it, n);
    strbuf_release(&err);
}
END_TEST

/* Random input from a small alphabet full of the syntax characters: the
 * parser must either fail with a reason or return items that are non-empty
 * and carry no separators, NULs or surrounding blanks where the syntax
 * excludes them. */
START_TEST(randomized_inputs_hold_invariants)
{
    static const char alphabet[] = "ab@|/:\"\\, \t\r\n#include:x";
    unsigned int seed = 12345;
    strbuf err, text;
    strbuf_init(&err);
    strbuf_init(&text);
    for (int round = 0; round < 20000; round++) {
        strbuf_reset(&text);
        seed = seed * 1103515245u + 12345u;
        int len = (int)((seed >> 16) % 40);
        for (int i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            strbuf_append_char(&text, alphabet[(seed >> 16) % (sizeof(alphabet) - 1)]);
        }
        struct alias_item *it = NULL;
        strbuf_reset(&err);
        int n = alias_list_parse(text.data ? text.data : "", text.len, &it, &err);
        if (n < 0) {
            ck_assert_ptr_null(it);
            ck_assert_uint_gt(err.len, 0);
            continue;
        }
        for (int i = 0; i < n; i++) {
            const char *v = it[i].value;
            size_t vl = strlen(v);
            ck_assert_msg(vl > 0, "empty item from \"%s\"", strbuf_str(&text));
            ck_assert(v[0] != ' ' && v[0] != '\t');
            ck_assert(v[vl - 1] != ' ' && v[vl - 1] != '\t');
            if (it[i].kind == ALIAS_ITEM_INCLUDE || it[i].kind == ALIAS_ITEM_FILE)
                ck_assert_int_eq(v[0], '/');
            if (it[i].kind == ALIAS_ITEM_ADDRESS && !it[i].no_expand)
                ck_assert(v[0] != '|');
        }
        alias_list_free(it, n);
    }
    strbuf_release(&err);
    strbuf_release(&text);
}
END_TEST

Suite *alias_list_suite(void)
{
    Suite *s = suite_create("alias_list");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, plain_users_and_addresses);
    tcase_add_test(tc, blank_separates_addresses);
    tcase_add_test(tc, commands_files_includes);
    tcase_add_test(tc, forward_file_lines_and_comments);
    tcase_add_test(tc, quoted_local_part_with_escape);
    tcase_add_test(tc, empty_input);
    tcase_add_test(tc, malformed_inputs);
    tcase_add_test(tc, length_is_respected);
    tcase_add_test(tc, randomized_inputs_hold_invariants);
    suite_add_tcase(s, tc);
    return s;
}
