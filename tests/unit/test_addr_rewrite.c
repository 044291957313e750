/*
 * test_addr_rewrite.c - unit tests for common/addr_rewrite.c: canonical
 * one-to-one mapping, virtual alias expansion (recursion, self-expansion,
 * loops, duplicates, limits, local-only user keys) with inline: and
 * texthash: tables, result splitting and domain lists.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "addr_rewrite.h"
#include "maps.h"
#include "strbuf.h"

static maps *open_or_die(const char *spec)
{
    strbuf err;
    strbuf_init(&err);
    maps *m = maps_open(spec, &err);
    if (!m)
        ck_abort_msg("maps_open(%s): %s", spec, strbuf_str(&err));
    strbuf_release(&err);
    return m;
}

START_TEST(map_one_basic)
{
    maps *m = open_or_die("inline:{ alice@old.example=alice@new.example, "
                          "@moved.example=@there.example, "
                          "{ multi@x.example = first@y.example, second@y.example } }");
    strbuf out;
    strbuf_init(&out);
    ck_assert_int_eq(addr_map_one(m, "alice@old.example", "+", 0, &out), 1);
    ck_assert_str_eq(strbuf_str(&out), "alice@new.example");
    ck_assert_int_eq(addr_map_one(m, "ALICE@OLD.EXAMPLE", "+", 0, &out), 1);
    ck_assert_str_eq(strbuf_str(&out), "alice@new.example");
    /* catch-all domain move keeps the local part */
    ck_assert_int_eq(addr_map_one(m, "bob@moved.example", "+", 0, &out), 1);
    ck_assert_str_eq(strbuf_str(&out), "bob@there.example");
    /* a multi-valued canonical entry gives its first address */
    ck_assert_int_eq(addr_map_one(m, "multi@x.example", "+", 0, &out), 1);
    ck_assert_str_eq(strbuf_str(&out), "first@y.example");
    strbuf_reset(&out);
    ck_assert_int_eq(addr_map_one(m, "carol@old.example", "+", 0, &out), 0);
    ck_assert_uint_eq(out.len, 0);
    strbuf_release(&out);
    maps_close(m);
}
END_TEST

static int expand(maps *m, const char *addr, int rec, int exp_limit,
                  struct addr_vec *out, strbuf *err)
{
    struct virtual_opts opts = { .delim = "+", .recursion_limit = rec,
                                 .expansion_limit = exp_limit };
    addr_vec_init(out);
    return virtual_alias_expand(m, addr, &opts, out, err);
}

static void vec_is(const struct addr_vec *v, const char *const *expect)
{
    size_t n = 0;
    while (expect[n])
        n++;
    ck_assert_uint_eq(v->n, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_str_eq(v->addrs[i], expect[i]);
}

START_TEST(virtual_recursive_and_self)
{
    maps *m = open_or_die("inline:{ { list@x.example = a@x.example, b@x.example }, "
                          "a@x.example=c@y.example, "
                          "{ self@x.example = self@x.example, copy@y.example } }");
    struct addr_vec v;
    strbuf err;
    strbuf_init(&err);
    ck_assert_int_eq(expand(m, "list@x.example", 1000, 1000, &v, &err), 0);
    vec_is(&v, (const char *const[]){ "c@y.example", "b@x.example", NULL });
    addr_vec_release(&v);

    ck_assert_int_eq(expand(m, "self@x.example", 1000, 1000, &v, &err), 0);
    vec_is(&v, (const char *const[]){ "self@x.example", "copy@y.example", NULL });
    addr_vec_release(&v);

    ck_assert_int_eq(expand(m, "nobody@x.example", 1000, 1000, &v, &err), 0);
    vec_is(&v, (const char *const[]){ "nobody@x.example", NULL });
    addr_vec_release(&v);
    strbuf_release(&err);
    maps_close(m);
}
END_TEST

START_TEST(virtual_loops_and_duplicates)
{
    maps *m = open_or_die("inline:{ a@x=b@x, b@x=a@x, "
                          "{ dup@x = d1@y, d1@y, D1@Y, d2@y }, "
                          "{ top@x = m1@x, m2@x }, m1@x=c@y, m2@x=c@y }");
    struct addr_vec v;
    strbuf err;
    strbuf_init(&err);
    /* a -> b -> a: the loop closes at a, which stays */
    ck_assert_int_eq(expand(m, "a@x", 1000, 1000, &v, &err), 0);
    vec_is(&v, (const char *const[]){ "a@x", NULL });
    addr_vec_release(&v);
    ck_assert_int_eq(expand(m, "dup@x", 1000, 1000, &v, &err), 0);
    vec_is(&v, (const char *const[]){ "d1@y", "d2@y", NULL });
    addr_vec_release(&v);
    /* diamond: c reached twice, kept once */
    ck_assert_int_eq(expand(m, "top@x", 1000, 1000, &v, &err), 0);
    vec_is(&v, (const char *const[]){ "c@y", NULL });
    addr_vec_release(&v);
    strbuf_release(&err);
    maps_close(m);
}
END_TEST

START_TEST(virtual_limits)
{
    maps *m = open_or_die("inline:{ n1@x=n2@x, n2@x=n3@x, n3@x=n4@x, n4@x=n5@x, "
                          "{ wide@x = w1@y, w2@y, w3@y, w4@y } }");
    struct addr_vec v;
    strbuf err;
    strbuf_init(&err);
    ck_assert_int_eq(expand(m, "n1@x", 10, 1000, &v, &err), 0);
    vec_is(&v, (const char *const[]){ "n5@x", NULL });
    addr_vec_release(&v);
    ck_assert_int_eq(expand(m, "n1@x", 3, 1000, &v, &err), -2);
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "nesting for n1@x"));
    addr_vec_release(&v);
    strbuf_reset(&err);
    ck_assert_int_eq(expand(m, "wide@x", 1000, 4, &v, &err), 0);
    ck_assert_uint_eq(v.n, 4);
    addr_vec_release(&v);
    ck_assert_int_eq(expand(m, "wide@x", 1000, 3, &v, &err), -3);
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "expansion size for wide@x"));
    addr_vec_release(&v);
    strbuf_release(&err);
    maps_close(m);
}
END_TEST

static void append_origin(strbuf *addr, void *ctx)
{
    if (!strchr(strbuf_str(addr), '@')) {
        strbuf_append_char(addr, '@');
        strbuf_append_str(addr, ctx);
    }
}

static int only_local_example(const char *domain, void *ctx)
{
    (void)ctx;
    return strcasecmp(domain, "local.example") == 0;
}

START_TEST(virtual_texthash_canon_and_local_users)
{
    char path[] = "/tmp/test_addr_rewrite_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char text[] =
        "# virtual aliases\n"
        "team@local.example   bob, carol@elsewhere.example\n"
        "joe                  joseph@elsewhere.example\n"
        "bob@local.example    bob@local.example,\n"
        "    robert@elsewhere.example\n";
    ck_assert_int_eq(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
    close(fd);
    strbuf spec;
    strbuf_init(&spec);
    strbuf_printf(&spec, "texthash:%s", path);
    maps *m = open_or_die(strbuf_str(&spec));

    struct virtual_opts opts = { .delim = "+", .recursion_limit = 1000,
                                 .expansion_limit = 1000,
                                 .canon = append_origin, .canon_ctx = "local.example",
                                 .is_local = only_local_example };
    struct addr_vec v;
    strbuf err;
    strbuf_init(&err);
    addr_vec_init(&v);
    /* "bob" is qualified to bob@local.example, which expands to itself
     * plus robert (continuation line) */
    ck_assert_int_eq(virtual_alias_expand(m, "team@local.example", &opts, &v, &err), 0);
    vec_is(&v, (const char *const[]){ "bob@local.example", "robert@elsewhere.example",
                                      "carol@elsewhere.example", NULL });
    addr_vec_release(&v);
    /* the bare user key matches local addresses only, extensions too */
    ck_assert_int_eq(virtual_alias_expand(m, "joe@local.example", &opts, &v, &err), 0);
    vec_is(&v, (const char *const[]){ "joseph@elsewhere.example", NULL });
    addr_vec_release(&v);
    ck_assert_int_eq(virtual_alias_expand(m, "joe+tag@local.example", &opts, &v, &err), 0);
    vec_is(&v, (const char *const[]){ "joseph@elsewhere.example", NULL });
    addr_vec_release(&v);
    ck_assert_int_eq(virtual_alias_expand(m, "joe@remote.example", &opts, &v, &err), 0);
    vec_is(&v, (const char *const[]){ "joe@remote.example", NULL });
    addr_vec_release(&v);

    strbuf_release(&err);
    strbuf_release(&spec);
    maps_close(m);
    unlink(path);
}
END_TEST

START_TEST(extension_propagation)
{
    maps *m = open_or_die("inline:{ joe@x.example=joseph@y.example, "
                          "joe+exact@x.example=exact@y.example, "
                          "{ list@x.example = a@y.example, b+own@y.example }, "
                          "@catch.example=@new.example, ann=anne@y.example }");
    strbuf out;
    strbuf_init(&out);
    /* matched by joe@x.example only: +tag carried over */
    ck_assert_int_eq(addr_map_one(m, "joe+tag@x.example", "+",
                                  ADDR_MAP_PROPAGATE_EXT, &out), 1);
    ck_assert_str_eq(strbuf_str(&out), "joseph+tag@y.example");
    /* without the flag it is not */
    ck_assert_int_eq(addr_map_one(m, "joe+tag@x.example", "+", 0, &out), 1);
    ck_assert_str_eq(strbuf_str(&out), "joseph@y.example");
    /* a key with the extension matched: nothing to carry */
    ck_assert_int_eq(addr_map_one(m, "joe+exact@x.example", "+",
                                  ADDR_MAP_PROPAGATE_EXT, &out), 1);
    ck_assert_str_eq(strbuf_str(&out), "exact@y.example");
    /* @domain results keep the whole local part anyway */
    ck_assert_int_eq(addr_map_one(m, "u+v@catch.example", "+",
                                  ADDR_MAP_PROPAGATE_EXT, &out), 1);
    ck_assert_str_eq(strbuf_str(&out), "u+v@new.example");
    /* bare user key */
    ck_assert_int_eq(addr_map_one(m, "ann+x@local.example", "+",
                                  ADDR_MAP_PROPAGATE_EXT, &out), 1);
    ck_assert_str_eq(strbuf_str(&out), "anne+x@y.example");
    strbuf_release(&out);

    struct virtual_opts opts = { .delim = "+", .recursion_limit = 100,
                                 .expansion_limit = 100, .propagate_ext = 1 };
    struct addr_vec v;
    strbuf err;
    strbuf_init(&err);
    addr_vec_init(&v);
    ck_assert_int_eq(virtual_alias_expand(m, "list+z@x.example", &opts, &v, &err), 0);
    vec_is(&v, (const char *const[]){ "a+z@y.example", "b+own@y.example", NULL });
    addr_vec_release(&v);
    strbuf_release(&err);
    maps_close(m);
}
END_TEST

START_TEST(masquerading)
{
    strbuf out;
    strbuf_init(&out);
    const char *list = "!sub.example.com, example.com, other.org";
    ck_assert_int_eq(addr_masquerade("u@host.example.com", list, "", &out), 1);
    ck_assert_str_eq(strbuf_str(&out), "u@example.com");
    ck_assert_int_eq(addr_masquerade("u@a.b.HOST.Example.COM", list, "", &out), 1);
    ck_assert_str_eq(strbuf_str(&out), "u@Example.COM");
    ck_assert_int_eq(addr_masquerade("u@mail.other.org", list, NULL, &out), 1);
    ck_assert_str_eq(strbuf_str(&out), "u@other.org");
    strbuf_reset(&out);
    /* the domain itself, excluded names and their subdomains, strangers */
    ck_assert_int_eq(addr_masquerade("u@example.com", list, "", &out), 0);
    ck_assert_int_eq(addr_masquerade("u@sub.example.com", list, "", &out), 0);
    ck_assert_int_eq(addr_masquerade("u@x.sub.example.com", list, "", &out), 0);
    ck_assert_int_eq(addr_masquerade("u@notexample.com", list, "", &out), 0);
    ck_assert_int_eq(addr_masquerade("u@example.net", list, "", &out), 0);
    /* exceptions by local part; no domain; empty list */
    ck_assert_int_eq(addr_masquerade("Root@host.example.com", list, "root, admin", &out), 0);
    ck_assert_int_eq(addr_masquerade("rooter@host.example.com", list, "root", &out), 1);
    ck_assert_int_eq(addr_masquerade("nodomain", list, "", &out), 0);
    ck_assert_int_eq(addr_masquerade("u@host.example.com", "", "", &out), 0);
    ck_assert_int_eq(addr_masquerade("u@host.example.com", "!", "", &out), 0);
    strbuf_release(&out);
}
END_TEST

static void collect(const char *item, void *ctx)
{
    addr_vec_add(ctx, item);
}

START_TEST(result_split)
{
    struct addr_vec v;
    addr_vec_init(&v);
    addr_result_split(" a@x,b@y\tc@z ,, \"d e\"@w ,", collect, &v);
    vec_is(&v, (const char *const[]){ "a@x", "b@y", "c@z", "\"d e\"@w", NULL });
    addr_vec_release(&v);
    addr_result_split("", collect, &v);
    ck_assert_uint_eq(v.n, 0);
    /* an unterminated quote swallows the rest, without reading past it */
    addr_result_split("a@x, \"b, c", collect, &v);
    vec_is(&v, (const char *const[]){ "a@x", "\"b, c", NULL });
    addr_vec_release(&v);
}
END_TEST

START_TEST(domain_lists)
{
    strbuf err;
    strbuf_init(&err);
    domain_list *dl = domain_list_open("example.com, inline:{ virt.example=yes } other.org",
                                       &err);
    ck_assert_ptr_nonnull(dl);
    ck_assert_int_eq(domain_list_match(dl, "EXAMPLE.com"), 1);
    ck_assert_int_eq(domain_list_match(dl, "virt.example"), 1);
    ck_assert_int_eq(domain_list_match(dl, "other.org"), 1);
    ck_assert_int_eq(domain_list_match(dl, "sub.example.com"), 0);
    ck_assert_int_eq(domain_list_match(dl, "nowhere"), 0);
    domain_list_free(dl);

    dl = domain_list_open("", &err);
    ck_assert_ptr_nonnull(dl);
    ck_assert_int_eq(domain_list_match(dl, "example.com"), 0);
    domain_list_free(dl);

    ck_assert_ptr_null(domain_list_open("texthash:/nonexistent/postern-test", &err));
    ck_assert_uint_gt(err.len, 0);
    strbuf_release(&err);
}
END_TEST

Suite *addr_rewrite_suite(void)
{
    Suite *s = suite_create("addr_rewrite");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, map_one_basic);
    tcase_add_test(tc, virtual_recursive_and_self);
    tcase_add_test(tc, virtual_loops_and_duplicates);
    tcase_add_test(tc, virtual_limits);
    tcase_add_test(tc, virtual_texthash_canon_and_local_users);
    tcase_add_test(tc, extension_propagation);
    tcase_add_test(tc, masquerading);
    tcase_add_test(tc, result_split);
    tcase_add_test(tc, domain_lists);
    suite_add_tcase(s, tc);
    return s;
}
