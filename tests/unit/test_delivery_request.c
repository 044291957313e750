/*
 * test_delivery_request.c - unit tests for common/delivery_request.c: the
 * delivery request decoder (a good request; every malformed shape: missing
 * or repeated fields, bad counts, NUL bytes, oversized values), the queue
 * file opener's refusals, and conversations over a socketpair (one
 * request; several pipelined on one connection; a bad one behind a good one).
 */
#include <check.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "delivery_request.h"
#include "ipc.h"
#include "strbuf.h"

#define QID "6925A3F1B0C2E41A7F"

/* A well-formed request for two recipients; the first has orcpt+notify. */
static ipc_record *good_request(void)
{
    ipc_record *r = ipc_record_new();
    ipc_record_add_str(r, "request", "deliver");
    ipc_record_add_str(r, "queue_id", QID);
    ipc_record_add_str(r, "queue_file", "active/" QID);
    ipc_record_add_str(r, "nexthop", "example.org");
    ipc_record_add_str(r, "sender", "");
    ipc_record_add_int(r, "arrival", 1700000000);
    ipc_record_add_str(r, "envid", "ENV1");
    ipc_record_add_str(r, "orcpt", "rfc822;a@example.org");
    ipc_record_add_str(r, "notify", "SUCCESS");
    ipc_record_add_int(r, "offset", 10);
    ipc_record_add_str(r, "rcpt", "a@example.org");
    ipc_record_add_int(r, "offset", 20);
    ipc_record_add_str(r, "rcpt", "b@example.org");
    return r;
}

/* The same record with attribute `name` removed (all of its copies). */
static ipc_record *without(const ipc_record *in, const char *name)
{
    ipc_record *r = ipc_record_new();
    for (size_t i = 0; i < in->n; i++)
        if (strcmp(in->attrs[i].name, name) != 0)
            ipc_record_add(r, in->attrs[i].name, in->attrs[i].value.data,
                           in->attrs[i].value.len);
    return r;
}

/* Decode r and expect -1 with a reason containing `want`. */
static void expect_malformed(const ipc_record *r, unsigned flags, const char *want)
{
    struct delivery_request dr;
    delivery_request_init(&dr);
    strbuf why;
    strbuf_init(&why);
    int rc = delivery_request_decode(&dr, r, 1.8e9, flags, &why);
    ck_assert_msg(rc == -1, "want malformed (%s), got %d", want, rc);
    ck_assert_msg(strstr(strbuf_str(&why), want) != NULL, "reason \"%s\", want \"%s\"",
                  strbuf_str(&why), want);
    ck_assert_int_eq(dr.nrcpt, 0);
    ck_assert_ptr_null(dr.rcpts);
    strbuf_release(&why);
    delivery_request_free(&dr);
}

START_TEST(decode_good)
{
    ipc_record *r = good_request();
    struct delivery_request dr;
    delivery_request_init(&dr);
    strbuf why;
    strbuf_init(&why);
    ck_assert_int_eq(delivery_request_decode(&dr, r, 1.8e9, DELIVERY_NEED_NEXTHOP, &why), 1);
    ck_assert_str_eq(dr.qid, QID);
    ck_assert_str_eq(dr.queue_file, "active/" QID);
    ck_assert_str_eq(dr.sender, "");
    ck_assert_str_eq(dr.nexthop, "example.org");
    ck_assert_str_eq(dr.envid, "ENV1");
    ck_assert_ptr_null(dr.ret);
    ck_assert_int_eq(dr.nrcpt, 2);
    ck_assert_str_eq(dr.rcpts[0].address, "a@example.org");
    ck_assert_str_eq(dr.rcpts[0].orcpt, "rfc822;a@example.org");
    ck_assert_str_eq(dr.rcpts[0].notify, "SUCCESS");
    ck_assert_str_eq(dr.rcpts[1].address, "b@example.org");
    ck_assert_ptr_null(dr.rcpts[1].orcpt);
    ck_assert_ptr_null(dr.rcpts[1].notify);
    ck_assert(dr.times.arrival == 1700000000.0);
    ck_assert(dr.times.session == 1.8e9);
    /* decoding again into the same request replaces, not leaks */
    ck_assert_int_eq(delivery_request_decode(&dr, r, 1.8e9, 0, &why), 1);
    ck_assert_int_eq(dr.nrcpt, 2);
    strbuf_release(&why);
    delivery_request_free(&dr);
    ipc_record_free(r);
}
END_TEST

START_TEST(decode_wakeup)
{
    ipc_record *r = ipc_record_new();
    ipc_record_add_str(r, "request", "wakeup");
    struct delivery_request dr;
    delivery_request_init(&dr);
    strbuf why;
    strbuf_init(&why);
    ck_assert_int_eq(delivery_request_decode(&dr, r, 1.8e9, DELIVERY_NEED_NEXTHOP, &why), 0);
    ck_assert_int_eq(dr.nrcpt, 0);
    strbuf_release(&why);
    delivery_request_free(&dr);
    ipc_record_free(r);
}
END_TEST

START_TEST(decode_missing_fields)
{
    ipc_record *good = good_request();
    static const char *const required[] = { "request", "queue_id", "queue_file", "sender" };
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        ipc_record *r = without(good, required[i]);
        expect_malformed(r, 0, required[i]);
        ipc_record_free(r);
    }
    /* nexthop: required only when the agent says so */
    ipc_record *r = without(good, "nexthop");
    expect_malformed(r, DELIVERY_NEED_NEXTHOP, "nexthop");
    struct delivery_request dr;
    delivery_request_init(&dr);
    strbuf why;
    strbuf_init(&why);
    ck_assert_int_eq(delivery_request_decode(&dr, r, 1.8e9, 0, &why), 1);
    ck_assert_ptr_null(dr.nexthop);
    delivery_request_free(&dr);
    strbuf_release(&why);
    ipc_record_free(r);

    r = without(good, "rcpt");
    expect_malformed(r, 0, "no rcpt");
    ipc_record_free(r);

    r = ipc_record_new();
    expect_malformed(r, 0, "missing request");
    ipc_record_free(r);
    ipc_record_free(good);
}
END_TEST

START_TEST(decode_bad_values)
{
    ipc_record *r = good_request();
    ipc_record_add_str(r, "request", "deliver");
    expect_malformed(r, 0, "duplicate request");
    ipc_record_free(r);

    static const char *const singles[] = { "queue_id", "queue_file", "sender", "nexthop",
                                           "envid", "ret" };
    for (size_t i = 0; i < sizeof(singles) / sizeof(singles[0]); i++) {
        r = good_request();
        ipc_record_add_str(r, singles[i], "x");
        if (strcmp(singles[i], "ret") == 0)
            ipc_record_add_str(r, "ret", "FULL");
        expect_malformed(r, 0, "duplicate");
        ipc_record_free(r);
    }

    r = ipc_record_new();
    ipc_record_add_str(r, "request", "bounce");
    expect_malformed(r, 0, "unknown request");
    ipc_record_free(r);

    /* bad and oversized queue ids */
    static const char *const bad_qids[] = { "", "ABC", "../../etc/passwd",
        "6925A3F1B0C2E41A7F6925A3F1B0C2E41A7F6925A3F1B0C2E41A7F", "6925A3F1FFFFF41A7F" };
    for (size_t i = 0; i < sizeof(bad_qids) / sizeof(bad_qids[0]); i++) {
        ipc_record *g = good_request();
        r = without(g, "queue_id");
        ipc_record_add_str(r, "queue_id", bad_qids[i]);
        expect_malformed(r, 0, "bad queue_id");
        ipc_record_free(r);
        ipc_record_free(g);
    }

    /* empty and oversized queue file names */
    ipc_record *g = good_request();
    r = without(g, "queue_file");
    ipc_record_add_str(r, "queue_file", "");
    expect_malformed(r, 0, "bad queue_file");
    ipc_record_free(r);
    r = without(g, "queue_file");
    strbuf big;
    strbuf_init(&big);
    for (int i = 0; i < DELIVERY_QUEUE_FILE_MAX + 1; i++)
        strbuf_append_str(&big, "a");
    ipc_record_add_str(r, "queue_file", strbuf_str(&big));
    expect_malformed(r, 0, "bad queue_file");
    strbuf_release(&big);
    ipc_record_free(r);

    /* empty nexthop where one is needed */
    r = without(g, "nexthop");
    ipc_record_add_str(r, "nexthop", "");
    expect_malformed(r, DELIVERY_NEED_NEXTHOP, "nexthop");
    ipc_record_free(r);

    /* NUL bytes: in a single field, in a recipient, in an orcpt */
    r = without(g, "sender");
    ipc_record_add(r, "sender", "a\0b", 3);
    expect_malformed(r, 0, "NUL byte in sender");
    ipc_record_free(r);
    r = good_request();
    ipc_record_add(r, "rcpt", "c@x\0y", 5);
    expect_malformed(r, 0, "NUL byte in rcpt");
    ipc_record_free(r);
    r = good_request();
    ipc_record_add(r, "orcpt", "\0", 1);
    ipc_record_add_str(r, "rcpt", "c@example.org");
    expect_malformed(r, 0, "NUL byte in orcpt");
    ipc_record_free(r);
    ipc_record_free(g);
}
END_TEST

/* good_request() plus name/value pairs up to NULL must fail with `want`. */
static void expect_malformed_plus(const char *want, ...)
{
    ipc_record *r = good_request();
    va_list ap;
    va_start(ap, want);
    for (const char *name; (name = va_arg(ap, const char *)) != NULL;)
        ipc_record_add_str(r, name, va_arg(ap, const char *));
    va_end(ap);
    expect_malformed(r, 0, want);
    ipc_record_free(r);
}

START_TEST(decode_bad_counts)
{
    /* an orcpt or notify left after the last rcpt */
    expect_malformed_plus("orcpt without rcpt", "orcpt", "rfc822;z@example.org", NULL);
    expect_malformed_plus("notify without rcpt", "notify", "NEVER", NULL);
    /* two of them for one rcpt */
    expect_malformed_plus("two orcpt", "orcpt", "rfc822;y@example.org",
                          "orcpt", "rfc822;z@example.org", "rcpt", "z@example.org", NULL);
    expect_malformed_plus("two notify", "notify", "NEVER", "notify", "DELAY",
                          "rcpt", "z@example.org", NULL);
    expect_malformed_plus("empty rcpt", "rcpt", "", NULL);
}
END_TEST

START_TEST(decode_many_rcpts)
{
    ipc_record *r = good_request();
    for (int i = 0; i < 5000; i++) {
        if (i % 2)
            ipc_record_add_str(r, "orcpt", "rfc822;x@example.org");
        ipc_record_add_str(r, "rcpt", "x@example.org");
    }
    struct delivery_request dr;
    delivery_request_init(&dr);
    strbuf why;
    strbuf_init(&why);
    ck_assert_int_eq(delivery_request_decode(&dr, r, 1.8e9, 0, &why), 1);
    ck_assert_int_eq(dr.nrcpt, 5002);
    ck_assert_ptr_null(dr.rcpts[2].orcpt);
    ck_assert_str_eq(dr.rcpts[3].orcpt, "rfc822;x@example.org");
    strbuf_release(&why);
    delivery_request_free(&dr);
    ipc_record_free(r);
}
END_TEST

START_TEST(queue_file_refusals)
{
    struct queue_message msg;
    strbuf why;
    strbuf_init(&why);
    ck_assert_int_eq(delivery_queue_file_open(QID, "/etc/passwd", &msg, &why), -1);
    ck_assert(strstr(strbuf_str(&why), "bad queue file name") != NULL);
    strbuf_reset(&why);
    ck_assert_int_eq(delivery_queue_file_open(QID, "active/../../x", &msg, &why), -1);
    ck_assert(strstr(strbuf_str(&why), "bad queue file name") != NULL);
    strbuf_reset(&why);
    ck_assert_int_eq(delivery_queue_file_open(QID, "no-such-dir/" QID, &msg, &why), -1);
    ck_assert(strstr(strbuf_str(&why), "No such file") != NULL);
    strbuf_release(&why);
}
END_TEST

/* The agent's whole side over a socketpair: receive, reply, done. */
START_TEST(conversation)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ipc_stream *qmgr = ipc_stream_open(sv[0], 10);
    ipc_record *r = good_request();
    ck_assert_int_eq(ipc_send(qmgr, r), 0);

    struct delivery_request dr;
    ck_assert_int_eq(delivery_request_receive(&dr, sv[1], DELIVERY_NEED_NEXTHOP), 1);
    close(sv[1]);               /* receive dup'ed it, as the skeleton keeps its own */
    ck_assert_int_eq(dr.nrcpt, 2);
    delivery_request_reply(&dr, dr.rcpts[0].address, dr.rcpts[0].orcpt, "mx[192.0.2.1]:25",
                           &dr.times, 0, "2.0.0", "sent", "250 ok");
    delivery_request_reply(&dr, dr.rcpts[1].address, NULL, "", &dr.times, 0, "4.4.1",
                           "deferred", "no server");
    delivery_request_done(&dr);
    delivery_request_free(&dr);

    ck_assert_int_eq(ipc_recv(qmgr, r), 0);
    ck_assert_str_eq(ipc_record_get_str(r, "rcpt"), "a@example.org");
    ck_assert_str_eq(ipc_record_get_str(r, "status"), "sent");
    ck_assert_str_eq(ipc_record_get_str(r, "dsn"), "2.0.0");
    ck_assert_str_eq(ipc_record_get_str(r, "relay"), "mx[192.0.2.1]:25");
    ck_assert_str_eq(ipc_record_get_str(r, "reason"), "250 ok");
    ck_assert_int_eq(ipc_recv(qmgr, r), 0);
    ck_assert_str_eq(ipc_record_get_str(r, "rcpt"), "b@example.org");
    ck_assert_str_eq(ipc_record_get_str(r, "status"), "deferred");
    ck_assert_str_eq(ipc_record_get_str(r, "relay"), "none");
    ck_assert_int_eq(ipc_recv(qmgr, r), 0);
    ck_assert_str_eq(ipc_record_get_str(r, "done"), "1");
    ck_assert_int_eq(ipc_recv(qmgr, r), 1);     /* then EOF */
    ipc_record_free(r);
    ipc_stream_close(qmgr);
}
END_TEST

/* A malformed request over the wire: no reply at all, stream closed. */
START_TEST(conversation_malformed)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ipc_stream *qmgr = ipc_stream_open(sv[0], 10);
    ipc_record *good = good_request();
    ipc_record *r = without(good, "queue_id");
    ck_assert_int_eq(ipc_send(qmgr, r), 0);
    struct delivery_request dr;
    ck_assert_int_eq(delivery_request_receive(&dr, sv[1], 0), 0);
    close(sv[1]);
    delivery_request_free(&dr);
    ck_assert_int_eq(ipc_recv(qmgr, r), 1);
    ipc_record_free(r);
    ipc_record_free(good);
    ipc_stream_close(qmgr);
}
END_TEST

/* Several requests on one connection (qmgr pipelines them): each is
 * read after the previous one was answered, in order; EOF ends it. */
START_TEST(conversation_pipelined)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ipc_stream *qmgr = ipc_stream_open(sv[0], 10);
    ipc_record *r = good_request();
    ck_assert_int_eq(ipc_send(qmgr, r), 0);
    ipc_record *second = ipc_record_new();
    ipc_record_add_str(second, "request", "deliver");
    ipc_record_add_str(second, "queue_id", "6925A3F1B0C2E41A80");
    ipc_record_add_str(second, "queue_file", "active/6925A3F1B0C2E41A80");
    ipc_record_add_str(second, "nexthop", "example.net");
    ipc_record_add_str(second, "sender", "s@example.net");
    ipc_record_add_str(second, "rcpt", "c@example.net");
    ck_assert_int_eq(ipc_send(qmgr, second), 0);
    shutdown(sv[0], SHUT_WR);

    struct delivery_request dr;
    ck_assert_int_eq(delivery_request_receive(&dr, sv[1], DELIVERY_NEED_NEXTHOP), 1);
    close(sv[1]);
    ck_assert_str_eq(dr.qid, QID);
    ck_assert_int_eq(dr.nrcpt, 2);
    for (int i = 0; i < dr.nrcpt; i++)
        delivery_request_reply(&dr, dr.rcpts[i].address, NULL, "", &dr.times, 0, "2.0.0",
                               "sent", "ok");
    delivery_request_done(&dr);
    ck_assert_int_eq(delivery_request_next(&dr, DELIVERY_NEED_NEXTHOP), 1);
    ck_assert_str_eq(dr.qid, "6925A3F1B0C2E41A80");
    ck_assert_str_eq(dr.nexthop, "example.net");
    ck_assert_str_eq(dr.sender, "s@example.net");
    ck_assert_ptr_null(dr.envid);               /* nothing left of the first */
    ck_assert_int_eq(dr.nrcpt, 1);
    ck_assert_str_eq(dr.rcpts[0].address, "c@example.net");
    ck_assert_ptr_null(dr.rcpts[0].orcpt);
    delivery_request_reply(&dr, "c@example.net", NULL, "", &dr.times, 0, "2.0.0", "sent", "ok");
    delivery_request_done(&dr);
    ck_assert_int_eq(delivery_request_next(&dr, DELIVERY_NEED_NEXTHOP), 0);     /* EOF */
    ck_assert_int_eq(delivery_request_next(&dr, DELIVERY_NEED_NEXTHOP), 0);     /* still */
    delivery_request_free(&dr);

    const char *expect[] = { "a@example.org", "b@example.org", NULL, "c@example.net", NULL };
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        ck_assert_int_eq(ipc_recv(qmgr, r), 0);
        if (expect[i])
            ck_assert_str_eq(ipc_record_get_str(r, "rcpt"), expect[i]);
        else
            ck_assert_str_eq(ipc_record_get_str(r, "done"), "1");
    }
    ck_assert_int_eq(ipc_recv(qmgr, r), 1);
    ipc_record_free(second);
    ipc_record_free(r);
    ipc_stream_close(qmgr);
}
END_TEST

/* A malformed request after a good one: the good one is answered, the
 * bad one ends the conversation without a reply; so does a record cut
 * off by the peer. */
START_TEST(conversation_pipelined_malformed)
{
    for (int cut = 0; cut < 2; cut++) {
        int sv[2];
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        ipc_stream *qmgr = ipc_stream_open(sv[0], 10);
        ipc_record *good = good_request();
        ck_assert_int_eq(ipc_send(qmgr, good), 0);
        if (cut) {
            static const char partial[] = "request 7\ndeliver\nqueue_id 18\n6925";
            ck_assert_int_eq(write(sv[0], partial, sizeof(partial) - 1),
                             (ssize_t) sizeof(partial) - 1);
        } else {
            ipc_record *bad = without(good, "sender");
            ck_assert_int_eq(ipc_send(qmgr, bad), 0);
            ipc_record_free(bad);
        }
        shutdown(sv[0], SHUT_WR);
        struct delivery_request dr;
        ck_assert_int_eq(delivery_request_receive(&dr, sv[1], 0), 1);
        close(sv[1]);
        delivery_request_done(&dr);
        ck_assert_int_eq(delivery_request_next(&dr, 0), 0);
        ck_assert_int_eq(dr.nrcpt, 0);
        delivery_request_free(&dr);
        ck_assert_int_eq(ipc_recv(qmgr, good), 0);
        ck_assert_str_eq(ipc_record_get_str(good, "done"), "1");
        ck_assert_int_eq(ipc_recv(qmgr, good), 1);
        ipc_record_free(good);
        ipc_stream_close(qmgr);
    }
}
END_TEST

Suite *delivery_request_suite(void)
{
    Suite *s = suite_create("delivery_request");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, decode_good);
    tcase_add_test(tc, decode_wakeup);
    tcase_add_test(tc, decode_missing_fields);
    tcase_add_test(tc, decode_bad_values);
    tcase_add_test(tc, decode_bad_counts);
    tcase_add_test(tc, decode_many_rcpts);
    tcase_add_test(tc, queue_file_refusals);
    tcase_add_test(tc, conversation);
    tcase_add_test(tc, conversation_malformed);
    tcase_add_test(tc, conversation_pipelined);
    tcase_add_test(tc, conversation_pipelined_malformed);
    suite_add_tcase(s, tc);
    return s;
}
