/*
 * test_resolve.c - unit tests for common/resolve.c (recipient to
 * transport:nexthop) and common/backoff.c (retry delays).
 */
#include <check.h>
#include <string.h>

#include "resolve.h"
#include "backoff.h"
#include "mem.h"

/* A tiny table standing in for transport_maps: "key=value" pairs. */
struct fake_table {
    const char *const *pairs;   /* key, value, key, value, ..., NULL */
    int fail;                   /* return -1 on every lookup */
    int calls;
};

static int fake_lookup(void *ctx, const char *key, int is_address, strbuf *out)
{
    struct fake_table *t = ctx;
    (void) is_address;
    t->calls++;
    if (t->fail)
        return -1;
    for (int i = 0; t->pairs && t->pairs[i]; i += 2)
        if (strcmp(t->pairs[i], key) == 0) {
            strbuf_set_str(out, t->pairs[i + 1]);
            return 1;
        }
    return 0;
}

static void check_resolves(const struct resolve_config *cfg, const char *addr,
                           const char *transport, const char *nexthop)
{
    struct resolve_result r;
    resolve_result_init(&r);
    ck_assert_int_eq(resolve_recipient(cfg, addr, &r), RESOLVE_OK);
    ck_assert_str_eq(strbuf_str(&r.transport), transport);
    ck_assert_str_eq(strbuf_str(&r.nexthop), nexthop);
    resolve_result_release(&r);
}

START_TEST(local_domains_case_insensitive)
{
    struct resolve_config cfg = {
        .myhostname = "mail.example.org",
        .mydestination = "mail.example.org, localhost.example.org,localhost  Example.COM",
    };
    check_resolves(&cfg, "alice@mail.example.org", "local", "mail.example.org");
    check_resolves(&cfg, "alice@EXAMPLE.com", "local", "mail.example.org");
    check_resolves(&cfg, "bob@LocalHost", "local", "mail.example.org");
    check_resolves(&cfg, "bob@localhost.", "local", "mail.example.org");
    check_resolves(&cfg, "postmaster", "local", "mail.example.org");
    check_resolves(&cfg, "bob@example.net", "smtp", "example.net");
    check_resolves(&cfg, "bob@Other.NET", "smtp", "other.net");
    /* A subdomain of a local domain is not local. */
    check_resolves(&cfg, "bob@sub.example.com", "smtp", "sub.example.com");
    ck_assert_int_eq(resolve_domain_is_local(&cfg, "localhost"), 1);
    ck_assert_int_eq(resolve_domain_is_local(&cfg, "localhos"), 0);
    ck_assert_int_eq(resolve_domain_is_local(&cfg, ""), 0);
}
END_TEST

START_TEST(map_entries_in_mydestination_ignored)
{
    struct resolve_config cfg = {
        .myhostname = "h.example", .mydestination = "hash:/etc/postern/local, h.example",
    };
    ck_assert_int_eq(resolve_domain_is_local(&cfg, "hash"), 0);
    ck_assert_int_eq(resolve_domain_is_local(&cfg, "h.example"), 1);
}
END_TEST

START_TEST(relayhost_for_remote_only)
{
    struct resolve_config cfg = {
        .myhostname = "h.example", .mydestination = "h.example",
        .relayhost = "[relay.example]:587",
    };
    check_resolves(&cfg, "x@far.example", "smtp", "[relay.example]:587");
    check_resolves(&cfg, "x@h.example", "local", "h.example");
}
END_TEST

START_TEST(transport_maps_semantics)
{
    static const char *const pairs[] = {
        "vip@far.example", "smtp:[vip-relay]",
        "far.example", "slow:",
        ".sub.example", ":[gw.sub.example]",
        "bad.example", "error:5.1.2 No such domain here",
        "null.example", "discard:dropped by policy",
        "void.example", "discard:",
        "gone.example", "error",
        "keep.example", ":",
        "nocolon.example", "uucp",
        "h.example", "custom:otherhost",
        NULL,
    };
    struct fake_table t = { .pairs = pairs };
    struct resolve_config cfg = {
        .myhostname = "h.example", .mydestination = "h.example",
        .relayhost = "relay.example",
        .transport_lookup = fake_lookup, .lookup_ctx = &t,
    };
    /* Full address wins over the domain. */
    check_resolves(&cfg, "vip@far.example", "smtp", "[vip-relay]");
    /* "transport:" uses the recipient domain, not the relayhost. */
    check_resolves(&cfg, "other@FAR.example", "slow", "far.example");
    /* ":nexthop" keeps the class's transport; parent domain match. */
    check_resolves(&cfg, "a@deep.sub.example", "smtp", "[gw.sub.example]");
    check_resolves(&cfg, "a@bad.example", "error", "5.1.2 No such domain here");
    check_resolves(&cfg, "a@null.example", "discard", "dropped by policy");
    check_resolves(&cfg, "a@void.example", "discard", "");
    check_resolves(&cfg, "a@gone.example", "error", "");
    /* ":" changes nothing (relayhost still applies). */
    check_resolves(&cfg, "a@keep.example", "smtp", "relay.example");
    check_resolves(&cfg, "a@nocolon.example", "uucp", "nocolon.example");
    /* Local domains may be overridden too. */
    check_resolves(&cfg, "a@h.example", "custom", "otherhost");
    /* No entry: defaults. */
    check_resolves(&cfg, "a@none.example", "smtp", "relay.example");
}
END_TEST

START_TEST(wildcard_entry)
{
    static const char *const pairs[] = { "*", "smtp:[outbound]", "in.example", ":", NULL };
    struct fake_table t = { .pairs = pairs };
    struct resolve_config cfg = {
        .myhostname = "h.example", .mydestination = "h.example",
        .transport_lookup = fake_lookup, .lookup_ctx = &t,
    };
    check_resolves(&cfg, "a@anything.example", "smtp", "[outbound]");
    check_resolves(&cfg, "a@in.example", "smtp", "in.example");
}
END_TEST

START_TEST(lookup_failure_is_temporary)
{
    struct fake_table t = { .fail = 1 };
    struct resolve_config cfg = {
        .myhostname = "h.example", .mydestination = "h.example",
        .transport_lookup = fake_lookup, .lookup_ctx = &t,
    };
    struct resolve_result r;
    resolve_result_init(&r);
    ck_assert_int_eq(resolve_recipient(&cfg, "a@b.example", &r), RESOLVE_TEMPFAIL);
    ck_assert_int_ge(t.calls, 1);
    resolve_result_release(&r);
}
END_TEST

START_TEST(parse_transport_values)
{
    struct resolve_result r;
    resolve_result_init(&r);
    resolve_parse_transport("smtp:[a]:25", "local", "dom", &r);
    ck_assert_str_eq(strbuf_str(&r.transport), "smtp");
    ck_assert_str_eq(strbuf_str(&r.nexthop), "[a]:25");
    resolve_parse_transport(" relay :", "local", "dom", &r);
    ck_assert_str_eq(strbuf_str(&r.transport), "relay");
    ck_assert_str_eq(strbuf_str(&r.nexthop), "dom");
    resolve_parse_transport("", "local", "dom", &r);
    ck_assert_str_eq(strbuf_str(&r.transport), "local");
    ck_assert_str_eq(strbuf_str(&r.nexthop), "dom");
    resolve_result_release(&r);
}
END_TEST

START_TEST(backoff_doubles_and_clamps)
{
    ck_assert_int_eq(backoff_delay(0, 300, 4000), 300);
    ck_assert_int_eq(backoff_delay(-50, 300, 4000), 300);
    ck_assert_int_eq(backoff_delay(600, 300, 4000), 600);
    ck_assert_int_eq(backoff_delay(100000, 300, 4000), 4000);
    ck_assert_int_eq(backoff_delay(10, 300, 100), 300);   /* max < min */
    /* Successive attempts: each one a delay after the previous. */
    long long arrival = 1000000, now = arrival;
    long long expect[] = { 300, 300, 600, 1200, 2400, 4000, 4000 };
    for (int i = 0; i < 7; i++) {
        long long next = backoff_next_attempt(now, arrival, 300, 4000);
        ck_assert_int_eq(next - now, expect[i]);
        now = next;
    }
}
END_TEST

Suite *resolve_suite(void)
{
    Suite *s = suite_create("resolve");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, local_domains_case_insensitive);
    tcase_add_test(tc, map_entries_in_mydestination_ignored);
    tcase_add_test(tc, relayhost_for_remote_only);
    tcase_add_test(tc, transport_maps_semantics);
    tcase_add_test(tc, wildcard_entry);
    tcase_add_test(tc, lookup_failure_is_temporary);
    tcase_add_test(tc, parse_transport_values);
    tcase_add_test(tc, backoff_doubles_and_clamps);
    suite_add_tcase(s, tc);
    return s;
}
