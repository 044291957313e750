/*
 * test_ipc.c - unit tests for common/ipc.c: records, the codec (round
 * trips, incremental decoding, every malformed form, limits) and streams
 * (send/recv over socketpairs, timeouts, EOF, connect/call, the write
 * queue: ipc_queue/ipc_queue_attr/ipc_flush).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ipc.h"
#include "mem.h"
#include "strbuf.h"

#define BIG (1024 * 1024)

static long decode_str(const char *s, ipc_record *r, const char **why)
{
    return ipc_decode(s, strlen(s), r, BIG, 16 * BIG, why);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- records ----------------------------------------------------------- */

START_TEST(record_get_count_int)
{
    ipc_record *r = ipc_record_new();
    ipc_record_add_str(r, "rcpt", "a@x");
    ipc_record_add_int(r, "size", -12345);
    ipc_record_add_str(r, "rcpt", "b@x");
    ipc_record_add_str(r, "bad", "12x");
    ck_assert_uint_eq(r->n, 4);
    ck_assert_str_eq(ipc_record_get_str(r, "rcpt"), "a@x");
    ck_assert_uint_eq(ipc_record_count(r, "rcpt"), 2);
    ck_assert_uint_eq(ipc_record_count(r, "none"), 0);
    ck_assert_ptr_null(ipc_record_get_str(r, "none"));
    long long v = 0;
    ck_assert_int_eq(ipc_record_get_int(r, "size", &v), 0);
    ck_assert_int_eq(v, -12345);
    ck_assert_int_eq(ipc_record_get_int(r, "bad", &v), -1);
    ck_assert_int_eq(ipc_record_get_int(r, "rcpt", &v), -1);
    ck_assert_int_eq(ipc_record_get_int(r, "none", &v), -1);
    ipc_record_add_str(r, "huge", "99999999999999999999999");
    ck_assert_int_eq(ipc_record_get_int(r, "huge", &v), -1);
    ipc_record_free(r);
}
END_TEST

START_TEST(build_resets_and_skips_null)
{
    ipc_record *r = ipc_record_new();
    ipc_record_add_str(r, "old", "x");
    ipc_build(r, "request", "enqueue", "envid", (const char *)NULL,
              "sender", "", (const char *)NULL);
    ck_assert_uint_eq(r->n, 2);
    ck_assert_str_eq(r->attrs[0].name, "request");
    ck_assert_str_eq(strbuf_str(&r->attrs[0].value), "enqueue");
    ck_assert_str_eq(r->attrs[1].name, "sender");
    ck_assert_uint_eq(r->attrs[1].value.len, 0);
    ck_assert_ptr_null(ipc_record_get(r, "old"));
    ipc_record_free(r);
}
END_TEST

/* ---- codec ------------------------------------------------------------- */

START_TEST(encode_exact_bytes)
{
    ipc_record *r = ipc_record_new();
    ipc_record_add_str(r, "sender", "alice@example.org");
    ipc_record_add(r, "e", "", 0);
    strbuf out;
    strbuf_init(&out);
    ipc_encode(r, &out);
    const char want[] = "sender 17\nalice@example.org\ne 0\n\n\n";
    ck_assert_uint_eq(out.len, sizeof(want) - 1);
    ck_assert_int_eq(memcmp(out.data, want, out.len), 0);
    strbuf_release(&out);
    ipc_record_free(r);
}
END_TEST

static ipc_record *sample_record(void)
{
    ipc_record *r = ipc_record_new();
    ipc_record_add_str(r, "request", "enqueue");
    ipc_record_add(r, "data", "bin\0ary\nwith\n\nLF\0", 17);
    ipc_record_add(r, "empty", "", 0);
    ipc_record_add_str(r, "rcpt", "one@example.com");
    ipc_record_add_str(r, "rcpt", "two@example.com");
    ipc_record_add(r, "nl", "\n", 1);
    return r;
}

static void assert_same_record(const ipc_record *a, const ipc_record *b)
{
    ck_assert_uint_eq(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        ck_assert_str_eq(a->attrs[i].name, b->attrs[i].name);
        ck_assert_uint_eq(a->attrs[i].value.len, b->attrs[i].value.len);
        ck_assert_int_eq(memcmp(strbuf_str(&a->attrs[i].value),
                                strbuf_str(&b->attrs[i].value), a->attrs[i].value.len), 0);
    }
}

START_TEST(round_trip_binary_and_repeated)
{
    ipc_record *r = sample_record();
    strbuf enc;
    strbuf_init(&enc);
    ipc_encode(r, &enc);
    ipc_encode(r, &enc);        /* two records back to back */
    ipc_record *d = ipc_record_new();
    const char *why = NULL;
    long n = ipc_decode(enc.data, enc.len, d, BIG, 16 * BIG, &why);
    ck_assert_int_gt(n, 0);
    ck_assert_uint_eq((size_t)n * 2, enc.len);
    assert_same_record(r, d);
    ck_assert_uint_eq(d->attrs[1].value.len, 17);
    ck_assert_int_eq(d->attrs[1].value.data[3], '\0');
    ck_assert_uint_eq(ipc_record_count(d, "rcpt"), 2);
    ck_assert_str_eq(strbuf_str(&d->attrs[4].value), "two@example.com");
    /* The second copy decodes from where the first ended. */
    long n2 = ipc_decode(enc.data + n, enc.len - n, d, BIG, 16 * BIG, &why);
    ck_assert_int_eq(n2, n);
    assert_same_record(r, d);
    strbuf_release(&enc);
    ipc_record_free(r);
    ipc_record_free(d);
}
END_TEST

START_TEST(empty_record)
{
    ipc_record *d = ipc_record_new();
    ck_assert_int_eq(decode_str("\n", d, NULL), 1);
    ck_assert_uint_eq(d->n, 0);
    ck_assert_int_eq(decode_str("", d, NULL), 0);
    ipc_record_free(d);
}
END_TEST

START_TEST(every_prefix_needs_more)
{
    ipc_record *r = sample_record();
    strbuf enc;
    strbuf_init(&enc);
    ipc_encode(r, &enc);
    ipc_record *d = ipc_record_new();
    /* Copy each prefix into an exact-size heap block so that ASan would
     * catch any read past len. */
    for (size_t len = 0; len < enc.len; len++) {
        char *p = xmalloc(len ? len : 1);
        memcpy(p, enc.data, len);
        const char *why = NULL;
        long n = ipc_decode(p, len, d, BIG, 16 * BIG, &why);
        ck_assert_msg(n == 0, "prefix %zu: got %ld (%s)", len, n, why ? why : "");
        xfree(p);
    }
    ck_assert_int_eq(ipc_decode(enc.data, enc.len, d, BIG, 16 * BIG, NULL), (long)enc.len);
    assert_same_record(r, d);
    strbuf_release(&enc);
    ipc_record_free(r);
    ipc_record_free(d);
}
END_TEST

static void expect_malformed(const char *input, size_t len, size_t max_attr,
                             size_t max_record, const char *why_part)
{
    ipc_record *d = ipc_record_new();
    const char *why = NULL;
    long n = ipc_decode(input, len, d, max_attr, max_record, &why);
    ck_assert_msg(n == -1, "input \"%.*s\": expected -1, got %ld", (int)len, input, n);
    ck_assert_ptr_nonnull(why);
    ck_assert_msg(strstr(why, why_part) != NULL, "why \"%s\" lacks \"%s\"", why, why_part);
    ipc_record_free(d);
}

#define MALFORMED(s, part) expect_malformed(s, sizeof(s) - 1, BIG, 16 * BIG, part)

START_TEST(malformed_names)
{
    MALFORMED("Sender 1\nx\n\n", "name");            /* uppercase */
    MALFORMED("se-nder 1\nx\n\n", "name");
    MALFORMED(" 1\nx\n\n", "name");                  /* empty name */
    MALFORMED("a.b 1\nx\n\n", "name");
    MALFORMED("a\tb 1\nx\n\n", "name");
    MALFORMED("ab\n", "name");                       /* LF inside a name */
    MALFORMED("x 1\nx\n\xff 1\nx\n\n", "name");
    /* 65 characters: too long, even before the space arrives. */
    char longname[80];
    memset(longname, 'a', 65);
    longname[65] = '\0';
    expect_malformed(longname, 65, BIG, 16 * BIG, "too long");
    /* 64 is fine. */
    strbuf ok;
    strbuf_init(&ok);
    strbuf_append(&ok, longname, 64);
    strbuf_append_str(&ok, " 1\nx\n\n");
    ipc_record *d = ipc_record_new();
    ck_assert_int_eq(ipc_decode(ok.data, ok.len, d, BIG, 16 * BIG, NULL), (long)ok.len);
    ck_assert_uint_eq(strlen(d->attrs[0].name), 64);
    ipc_record_free(d);
    strbuf_release(&ok);
}
END_TEST

START_TEST(malformed_lengths)
{
    MALFORMED("a 01\nx\n\n", "length");              /* leading zero */
    MALFORMED("a 00\n\n\n", "length");
    MALFORMED("a 1234567890\n", "length");           /* 10 digits */
    MALFORMED("a 1234567890", "length");             /* ... even unfinished */
    MALFORMED("a \nx\n\n", "length");                /* no digits */
    MALFORMED("a -1\nx\n\n", "length");
    MALFORMED("a +1\nx\n\n", "length");
    MALFORMED("a 1 \nx\n\n", "length");
    MALFORMED("a 1x\nx\n\n", "length");
    MALFORMED("a  1\nx\n\n", "length");
    /* "0" itself is fine. */
    ipc_record *d = ipc_record_new();
    ck_assert_int_eq(decode_str("a 0\n\n\n", d, NULL), 6);
    ck_assert_uint_eq(d->attrs[0].value.len, 0);
    ipc_record_free(d);
}
END_TEST

START_TEST(malformed_missing_lf)
{
    MALFORMED("a 1\nxy\n", "newline");
    MALFORMED("a 2\nxyz\n\n", "newline");
    MALFORMED("a 0\nx\n", "newline");
}
END_TEST

START_TEST(limits)
{
    /* attribute value over max_attr: rejected from the header alone */
    expect_malformed("a 11\n", 5, 10, 1000, "too long");
    ipc_record *d = ipc_record_new();
    const char *why = NULL;
    ck_assert_int_eq(ipc_decode("a 10\n0123456789\n\n", 17, d, 10, 1000, &why), 17);
    /* record over max_record: this one is 17 bytes */
    ck_assert_int_eq(ipc_decode("a 10\n0123456789\n\n", 17, d, 10, 17, &why), 17);
    expect_malformed("a 10\n0123456789\n\n", 17, 10, 16, "too large");
    /* ...known as soon as the header promises too much */
    expect_malformed("a 10\n", 5, 10, 16, "too large");
    /* many small attributes: the running total counts */
    expect_malformed("a 1\nx\na 1\nx\na 1\nx\n", 18, 10, 15, "too large");
    ipc_record_free(d);
}
END_TEST

START_TEST(too_many_attrs)
{
    strbuf enc;
    strbuf_init(&enc);
    for (int i = 0; i < 100001; i++)
        strbuf_append_str(&enc, "a 0\n\n");
    strbuf_append_char(&enc, '\n');
    ipc_record *d = ipc_record_new();
    const char *why = NULL;
    ck_assert_int_eq(ipc_decode(enc.data, enc.len, d, BIG, 16 * BIG, &why), -1);
    ck_assert_str_eq(why, "too many attributes");
    /* exactly 100000 is accepted */
    size_t cut = enc.len - 1 - 5;
    enc.data[cut] = '\n';
    ck_assert_int_eq(ipc_decode(enc.data, cut + 1, d, BIG, 16 * BIG, &why), (long)cut + 1);
    ck_assert_uint_eq(d->n, 100000);
    ipc_record_free(d);
    strbuf_release(&enc);
}
END_TEST

/* Pseudo-random garbage must never crash the decoder and results must be
 * consistent: a positive return never exceeds len. */
START_TEST(garbage_never_crashes)
{
    unsigned seed = 12345;
    ipc_record *d = ipc_record_new();
    const char alphabet[] = "ab 0123456789\n\nz_\x00\xff";
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = (size_t)(rand_r(&seed) % 40);
        char *p = xmalloc(len ? len : 1);
        for (size_t i = 0; i < len; i++)
            p[i] = alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
        const char *why = NULL;
        long n = ipc_decode(p, len, d, 16, 64, &why);
        ck_assert(n >= -1 && n <= (long)len);
        if (n < 0)
            ck_assert_ptr_nonnull(why);
        if (n > 0) {
            /* Canonical format: re-encoding gives back the same bytes. */
            strbuf enc;
            strbuf_init(&enc);
            ipc_encode(d, &enc);
            ck_assert_uint_eq(enc.len, (size_t)n);
            ck_assert_int_eq(memcmp(enc.data, p, enc.len), 0);
            strbuf_release(&enc);
        }
        xfree(p);
    }
    ipc_record_free(d);
}
END_TEST

/* ---- streams ----------------------------------------------------------- */

START_TEST(stream_round_trip)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ipc_stream *a = ipc_stream_open(sv[0], 5);
    ipc_stream *b = ipc_stream_open(sv[1], 5);
    ipc_record *r = sample_record();
    ipc_record *d = ipc_record_new();
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(ipc_send(a, r), 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(ipc_recv(b, d), 0);
        assert_same_record(r, d);
    }
    ck_assert_int_eq(ipc_stream_fd(a), sv[0]);
    ipc_stream_close(a);
    /* Peer gone between records: clean EOF, d emptied. */
    ck_assert_int_eq(ipc_recv(b, d), 1);
    ck_assert_uint_eq(d->n, 0);
    ipc_stream_close(b);
    ipc_record_free(r);
    ipc_record_free(d);
}
END_TEST

/* A record bigger than the socket buffers: a child reads while we write. */
/* Runs twice: _i = 0 with blocking sockets, _i = 1 with O_NONBLOCK ones
 * (the stream must treat EAGAIN as "wait again"). */
START_TEST(stream_large_record)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    if (_i == 1) {
        fcntl(sv[0], F_SETFL, O_NONBLOCK);
        fcntl(sv[1], F_SETFL, O_NONBLOCK);
    }
    ipc_record *r = ipc_record_new();
    char *chunk = xmalloc(BIG);
    for (int i = 0; i < BIG; i++)
        chunk[i] = (char)(i * 7);
    for (int i = 0; i < 5; i++)
        ipc_record_add(r, "data", chunk, BIG);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(sv[0]);
        ipc_stream *b = ipc_stream_open(sv[1], 10);
        ipc_record *d = ipc_record_new();
        int ok = ipc_recv(b, d) == 0 && d->n == 5;
        for (size_t i = 0; ok && i < d->n; i++)
            ok = d->attrs[i].value.len == BIG && memcmp(d->attrs[i].value.data, chunk, BIG) == 0;
        _exit(ok ? 0 : 1);
    }
    close(sv[1]);
    ipc_stream *a = ipc_stream_open(sv[0], 10);
    ck_assert_int_eq(ipc_send(a, r), 0);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ipc_stream_close(a);
    ipc_record_free(r);
    xfree(chunk);
}
END_TEST

START_TEST(stream_byte_by_byte)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ipc_record *r = sample_record();
    strbuf enc;
    strbuf_init(&enc);
    ipc_encode(r, &enc);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(sv[0]);
        /* One byte per write; the reader must assemble the record. */
        for (size_t i = 0; i < enc.len; i++) {
            if (write(sv[1], enc.data + i, 1) != 1)
                _exit(1);
            usleep(200);
        }
        _exit(0);
    }
    close(sv[1]);
    ipc_stream *b = ipc_stream_open(sv[0], 5);
    ipc_record *d = ipc_record_new();
    ck_assert_int_eq(ipc_recv(b, d), 0);
    assert_same_record(r, d);
    ck_assert_int_eq(ipc_recv(b, d), 1);
    waitpid(pid, NULL, 0);
    ipc_stream_close(b);
    ipc_record_free(r);
    ipc_record_free(d);
    strbuf_release(&enc);
}
END_TEST

/* The stream's resumable scanning must agree with one-shot decoding
 * whatever the chunking: random records, written in random-size pieces,
 * then a malformed tail that both must reject. */
START_TEST(stream_random_chunks_match_decode)
{
    unsigned seed = 777 + (unsigned)_i;
    strbuf all;
    strbuf_init(&all);
    enum { NREC = 40 };
    ipc_record *recs[NREC];
    for (int k = 0; k < NREC; k++) {
        recs[k] = ipc_record_new();
        int nattr = rand_r(&seed) % 6;
        for (int j = 0; j < nattr; j++) {
            char name[8];
            snprintf(name, sizeof(name), "a%d", rand_r(&seed) % 3);
            size_t len = (size_t)(rand_r(&seed) % 3000);
            char *v = xmalloc(len + 1);
            for (size_t b = 0; b < len; b++)
                v[b] = (char)(rand_r(&seed) % 256);
            ipc_record_add(recs[k], name, v, len);
            xfree(v);
        }
        ipc_encode(recs[k], &all);
    }
    strbuf_append_str(&all, "ok 1\nx\nBad 1\nx\n\n");
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(sv[0]);
        size_t off = 0;
        while (off < all.len) {
            size_t n = 1 + (size_t)(rand_r(&seed) % 5000);
            if (n > all.len - off)
                n = all.len - off;
            if (write(sv[1], all.data + off, n) != (ssize_t)n)
                _exit(1);
            off += n;
        }
        _exit(0);
    }
    close(sv[1]);
    ipc_stream *in = ipc_stream_open(sv[0], 10);
    ipc_record *d = ipc_record_new();
    for (int k = 0; k < NREC; k++) {
        ck_assert_msg(ipc_recv(in, d) == 0, "record %d: %s", k, ipc_error(in));
        assert_same_record(recs[k], d);
    }
    ck_assert_int_eq(ipc_recv(in, d), -1);
    ck_assert_str_eq(ipc_error(in), "malformed attribute name");
    waitpid(pid, NULL, 0);
    ipc_stream_close(in);
    ipc_record_free(d);
    for (int k = 0; k < NREC; k++)
        ipc_record_free(recs[k]);
    strbuf_release(&all);
}
END_TEST

START_TEST(stream_timeout)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ipc_stream *b = ipc_stream_open(sv[0], 1);
    ipc_record *d = ipc_record_new();
    double t0 = now_seconds();
    ck_assert_int_eq(ipc_recv(b, d), -1);
    double took = now_seconds() - t0;
    ck_assert_str_eq(ipc_error(b), "timeout");
    /* At least the timeout; the upper bound only tells "about a second"
     * from "hung": generous, a loaded CI machine under ASan is slow. */
    ck_assert_msg(took >= 0.9 && took < 10.0, "took %.2f s", took);
    /* The stream stays failed. */
    ck_assert_int_eq(ipc_recv(b, d), -1);
    ipc_stream_close(b);
    close(sv[1]);
    ipc_record_free(d);
}
END_TEST

/* A peer that starts a record and stalls times out too. */
START_TEST(stream_timeout_mid_record)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(write(sv[1], "name 5\nab", 9), 9);
    ipc_stream *b = ipc_stream_open(sv[0], 1);
    ipc_record *d = ipc_record_new();
    double t0 = now_seconds();
    ck_assert_int_eq(ipc_recv(b, d), -1);
    ck_assert_str_eq(ipc_error(b), "timeout");
    ck_assert(now_seconds() - t0 < 3.0);
    ipc_stream_close(b);
    close(sv[1]);
    ipc_record_free(d);
}
END_TEST

START_TEST(stream_write_timeout)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ipc_stream *a = ipc_stream_open(sv[0], 1);
    ipc_record *r = ipc_record_new();
    char *chunk = xcalloc(1, BIG);
    for (int i = 0; i < 8; i++)     /* 8 MiB: far more than socket buffers */
        ipc_record_add(r, "data", chunk, BIG);
    double t0 = now_seconds();
    ck_assert_int_eq(ipc_send(a, r), -1);
    ck_assert_str_eq(ipc_error(a), "timeout");
    ck_assert(now_seconds() - t0 < 3.0);
    ipc_stream_close(a);
    close(sv[1]);
    ipc_record_free(r);
    xfree(chunk);
}
END_TEST

START_TEST(stream_eof_mid_record)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(write(sv[1], "a 1\nx\n", 6), 6);
    close(sv[1]);
    ipc_stream *b = ipc_stream_open(sv[0], 2);
    ipc_record *d = ipc_record_new();
    ck_assert_int_eq(ipc_recv(b, d), -1);
    ck_assert_str_eq(ipc_error(b), "peer closed");
    ipc_stream_close(b);
    ipc_record_free(d);
}
END_TEST

START_TEST(stream_malformed_and_limits)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(write(sv[1], "BAD 1\nx\n\n", 9), 9);
    ipc_stream *b = ipc_stream_open(sv[0], 2);
    ipc_record *d = ipc_record_new();
    ck_assert_int_eq(ipc_recv(b, d), -1);
    ck_assert_str_eq(ipc_error(b), "malformed attribute name");
    ipc_stream_close(b);
    close(sv[1]);

    /* A stream limit: a value larger than max_attr is refused before the
     * peer even sends it. */
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(write(sv[1], "a 100\n", 6), 6);
    b = ipc_stream_open(sv[0], 2);
    ipc_stream_set_limits(b, 50, 1000);
    ck_assert_int_eq(ipc_recv(b, d), -1);
    ck_assert_str_eq(ipc_error(b), "attribute value too long");
    ipc_stream_close(b);
    close(sv[1]);

    /* max_record counts per record: a small one passes, the next, larger
     * one fails even though each attribute is within max_attr. */
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    strbuf enc;
    strbuf_init(&enc);
    ipc_record *r = ipc_record_new();
    ipc_record_add(r, "a", "0123456789012345678901234567890123456789", 40);
    ipc_encode(r, &enc);        /* 47 bytes */
    ipc_record_add(r, "b", "0123456789012345678901234567890123456789", 40);
    ipc_record_add(r, "c", "0123456789012345678901234567890123456789", 40);
    ipc_encode(r, &enc);        /* 139 bytes */
    ck_assert_int_eq(write(sv[1], enc.data, enc.len), (ssize_t)enc.len);
    b = ipc_stream_open(sv[0], 2);
    ipc_stream_set_limits(b, 50, 100);
    ck_assert_int_eq(ipc_recv(b, d), 0);
    ck_assert_uint_eq(d->n, 1);
    ck_assert_int_eq(ipc_recv(b, d), -1);
    ck_assert_str_eq(ipc_error(b), "record too large");
    ipc_stream_close(b);
    close(sv[1]);
    ipc_record_free(r);
    strbuf_release(&enc);
    ipc_record_free(d);
}
END_TEST

START_TEST(send_to_closed_peer_no_sigpipe)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[1]);
    ipc_stream *a = ipc_stream_open(sv[0], 2);
    ipc_record *r = sample_record();
    /* Would kill the test process with SIGPIPE if send lacked NOSIGNAL. */
    ck_assert_int_eq(ipc_send(a, r), -1);
    ck_assert_str_eq(ipc_error(a), "peer closed");
    ipc_stream_close(a);
    ipc_record_free(r);
}
END_TEST

START_TEST(stream_over_pipe)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    ipc_stream *w = ipc_stream_open(p[1], 2);
    ipc_stream *rd = ipc_stream_open(p[0], 2);
    ipc_record *r = sample_record();
    ipc_record *d = ipc_record_new();
    ck_assert_int_eq(ipc_send(w, r), 0);
    ck_assert_int_eq(ipc_recv(rd, d), 0);
    assert_same_record(r, d);
    ipc_stream_close(rd);
    /* Reader gone: EPIPE, not death by SIGPIPE. */
    ck_assert_int_eq(ipc_send(w, r), -1);
    ipc_stream_close(w);
    ipc_record_free(r);
    ipc_record_free(d);
}
END_TEST

/* ---- the write queue (ipc_queue / ipc_queue_attr / ipc_flush) ---------- */

/* Bytes readable on fd right now (non-blocking), appended to out. */
static void drain_now(int fd, strbuf *out)
{
    char buf[65536];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
        strbuf_append(out, buf, (size_t)n);
}

/* Queued records stay with us until ipc_flush(); then they all arrive, in
 * order, as the exact bytes ipc_encode() makes of them -- ipc_queue_attr()
 * included, which encodes without building a record. */
START_TEST(queue_then_flush_one_write)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ipc_stream *a = ipc_stream_open(sv[0], 5);
    ipc_record *r = sample_record();
    ipc_record *one = ipc_record_new();
    static const char bin[] = "a\0b\nc";
    strbuf want, got;
    strbuf_init(&want);
    strbuf_init(&got);

    ck_assert_int_eq(ipc_queue(a, r), 0);
    ipc_encode(r, &want);
    ck_assert_int_eq(ipc_queue_attr(a, "data", bin, sizeof(bin) - 1), 0);
    ipc_record_add(one, "data", bin, sizeof(bin) - 1);
    ipc_encode(one, &want);
    ck_assert_int_eq(ipc_queue_attr(a, "end", "1", 1), 0);
    ipc_build(one, "end", "1", (const char *)NULL);
    ipc_encode(one, &want);
    ck_assert_int_eq(ipc_queue_attr(a, "empty", "", 0), 0);
    ipc_build(one, "empty", "", (const char *)NULL);
    ipc_encode(one, &want);

    ck_assert_uint_eq(ipc_queued(a), want.len);
    struct pollfd p = { .fd = sv[1], .events = POLLIN };
    ck_assert_int_eq(poll(&p, 1, 0), 0);        /* nothing written yet */
    ck_assert_int_eq(ipc_flush(a), 0);
    ck_assert_uint_eq(ipc_queued(a), 0);
    drain_now(sv[1], &got);
    ck_assert_uint_eq(got.len, want.len);
    ck_assert(memcmp(got.data, want.data, want.len) == 0);
    /* And they decode as four records on the other side. */
    ck_assert_int_eq(ipc_flush(a), 0);          /* empty queue: no-op */
    ipc_stream *b = ipc_stream_open(sv[1], 5);
    ck_assert_int_eq(write(sv[0], got.data, got.len), (ssize_t)got.len);
    ck_assert_int_eq(ipc_recv(b, one), 0);
    assert_same_record(r, one);
    ck_assert_int_eq(ipc_recv(b, one), 0);
    ck_assert_uint_eq(one->n, 1);
    ck_assert_uint_eq(ipc_record_get(one, "data")->len, sizeof(bin) - 1);
    ck_assert(memcmp(ipc_record_get(one, "data")->data, bin, sizeof(bin) - 1) == 0);
    ck_assert_int_eq(ipc_recv(b, one), 0);
    ck_assert_str_eq(ipc_record_get_str(one, "end"), "1");
    ck_assert_int_eq(ipc_recv(b, one), 0);
    ck_assert_str_eq(ipc_record_get_str(one, "empty"), "");

    ipc_stream_close(a);
    ipc_stream_close(b);
    ipc_record_free(r);
    ipc_record_free(one);
    strbuf_release(&want);
    strbuf_release(&got);
}
END_TEST

/* The queue writes itself out when it reaches 64 KiB, so memory stays
 * bounded: a 64 KiB record goes out at once, records under the size wait,
 * and what the peer sees is always the queued records in order. */
START_TEST(queue_flushes_at_limit)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int size = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    ipc_stream *a = ipc_stream_open(sv[0], 5);
    char *chunk = xmalloc(65536);
    for (int i = 0; i < 65536; i++)
        chunk[i] = (char)(i * 13);
    strbuf got;
    strbuf_init(&got);

    /* Small records: nothing leaves. */
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(ipc_queue_attr(a, "data", chunk, 1000), 0);
    drain_now(sv[1], &got);
    ck_assert_uint_eq(got.len, 0);
    /* One of 64 KiB on top: the queue passes the limit and is written. */
    ck_assert_int_eq(ipc_queue_attr(a, "data", chunk, 65536), 0);
    ck_assert_uint_eq(ipc_queued(a), 0);
    drain_now(sv[1], &got);
    size_t first = got.len;
    ck_assert_uint_gt(first, 10 * 1000 + 65536);
    /* Just under the limit stays queued; the record that reaches it
     * (exactly 64 KiB in all) goes out. */
    ck_assert_int_eq(ipc_queue_attr(a, "data", chunk, 65536 - 100), 0);
    size_t under = ipc_queued(a);
    ck_assert_uint_lt(under, 65536);
    drain_now(sv[1], &got);
    ck_assert_uint_eq(got.len, first);
    /* "data N\n" + value + "\n\n" for the rest: pick N so the queue is
     * exactly 65536 bytes. */
    size_t rest = 65536 - under - strlen("data 00\n") - 2;
    ck_assert_int_eq(ipc_queue_attr(a, "data", chunk, rest), 0);
    ck_assert_uint_eq(ipc_queued(a), 0);
    drain_now(sv[1], &got);
    ck_assert_uint_eq(got.len, first + 65536);

    /* Everything decodes, in order, with the right sizes. */
    ipc_stream *b = ipc_stream_open(sv[1], 5);
    ck_assert_int_eq(write(sv[0], got.data, got.len), (ssize_t)got.len);
    ipc_record *d = ipc_record_new();
    size_t want[] = { 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000,
                      65536, 65536 - 100, rest };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        ck_assert_int_eq(ipc_recv(b, d), 0);
        const strbuf *v = ipc_record_get(d, "data");
        ck_assert_ptr_nonnull(v);
        ck_assert_uint_eq(v->len, want[i]);
        ck_assert(memcmp(v->data, chunk, v->len) == 0);
    }
    ipc_stream_close(a);
    ipc_stream_close(b);
    ipc_record_free(d);
    strbuf_release(&got);
    xfree(chunk);
}
END_TEST

/* A request left in the queue is written before ipc_recv() waits for the
 * answer (else both sides would wait until the timeout). */
START_TEST(recv_flushes_queue_first)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(sv[0]);
        ipc_stream *b = ipc_stream_open(sv[1], 5);
        ipc_record *req = ipc_record_new();
        if (ipc_recv(b, req) != 0 || !ipc_record_get(req, "end"))
            _exit(1);
        ipc_build(req, "status", "0", (const char *)NULL);
        _exit(ipc_send(b, req) == 0 ? 0 : 1);
    }
    close(sv[1]);
    ipc_stream *a = ipc_stream_open(sv[0], 5);
    ipc_record *r = ipc_record_new();
    ck_assert_int_eq(ipc_queue_attr(a, "end", "1", 1), 0);
    double t0 = now_seconds();
    ck_assert_int_eq(ipc_recv(a, r), 0);
    ck_assert(now_seconds() - t0 < 3.0);
    ck_assert_str_eq(ipc_record_get_str(r, "status"), "0");
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ipc_stream_close(a);
    ipc_record_free(r);
}
END_TEST

/* A flush to a peer that reads nothing ends with "timeout" within the
 * stream's timeout; a flush to a closed peer says "peer closed" (and does
 * not kill us with SIGPIPE); after a failure queueing fails too. */
START_TEST(flush_timeout_and_closed_peer)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ipc_stream *a = ipc_stream_open(sv[0], 1);
    char *chunk = xcalloc(1, 65536);
    double t0 = now_seconds();
    int rc = 0;
    for (int i = 0; i < 200 && rc == 0; i++)    /* 12.8 MiB: more than fits */
        rc = ipc_queue_attr(a, "data", chunk, 65536);
    ck_assert_int_eq(rc, -1);
    ck_assert_str_eq(ipc_error(a), "timeout");
    ck_assert(now_seconds() - t0 < 3.0);
    ck_assert_int_eq(ipc_queue_attr(a, "end", "1", 1), -1);
    ck_assert_int_eq(ipc_flush(a), -1);
    ipc_stream_close(a);
    close(sv[1]);

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    a = ipc_stream_open(sv[0], 1);
    ck_assert_int_eq(ipc_queue_attr(a, "data", chunk, 100), 0);
    close(sv[1]);
    ck_assert_int_eq(ipc_flush(a), -1);
    ck_assert_str_eq(ipc_error(a), "peer closed");
    ipc_stream_close(a);
    xfree(chunk);
}
END_TEST

/* ipc_stream_free() leaves the fd to its owner; ipc_stream_close() closes it. */
START_TEST(stream_free_keeps_fd)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ipc_stream *a = ipc_stream_open(sv[0], 1);
    ipc_stream_free(a);
    ck_assert_int_ge(fcntl(sv[0], F_GETFD), 0);
    a = ipc_stream_open(sv[0], 1);
    ipc_stream_close(a);
    ck_assert_int_eq(fcntl(sv[0], F_GETFD), -1);
    ck_assert_int_eq(errno, EBADF);
    close(sv[1]);
}
END_TEST

static void tmp_socket_path(struct sockaddr_un *sun, char *dir)
{
    ck_assert_ptr_nonnull(mkdtemp(dir));
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    snprintf(sun->sun_path, sizeof(sun->sun_path), "%s/sock", dir);
}

START_TEST(connect_and_call)
{
    char dir[] = "/tmp/test_ipc_XXXXXX";
    struct sockaddr_un sun;
    tmp_socket_path(&sun, dir);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_ge(lfd, 0);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    ck_assert_int_eq(listen(lfd, 5), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* Echo server: reply {status=0, got=<request>}. */
        int c = accept(lfd, NULL, NULL);
        ipc_stream *s = ipc_stream_open(c, 5);
        ipc_record *req = ipc_record_new();
        if (ipc_recv(s, req) != 0)
            _exit(1);
        ipc_record *rep = ipc_record_new();
        ipc_build(rep, "status", "0", "got", ipc_record_get_str(req, "request"),
                  (const char *)NULL);
        _exit(ipc_send(s, rep) == 0 ? 0 : 1);
    }
    ipc_record *req = ipc_record_new();
    ipc_record *rep = ipc_record_new();
    ipc_build(req, "request", "wakeup", (const char *)NULL);
    ck_assert_int_eq(ipc_call(sun.sun_path, 5, req, rep), 0);
    long long status = -1;
    ck_assert_int_eq(ipc_record_get_int(rep, "status", &status), 0);
    ck_assert_int_eq(status, 0);
    ck_assert_str_eq(ipc_record_get_str(rep, "got"), "wakeup");
    int wstatus;
    waitpid(pid, &wstatus, 0);
    ck_assert(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
    close(lfd);
    /* Nobody listening any more. */
    ck_assert_int_eq(ipc_call(sun.sun_path, 1, req, rep), -1);
    unlink(sun.sun_path);
    ck_assert_int_eq(ipc_connect_unix(sun.sun_path, 1), -1);
    ck_assert_int_eq(errno, ENOENT);
    rmdir(dir);
    ipc_record_free(req);
    ipc_record_free(rep);
}
END_TEST

START_TEST(connect_path_too_long)
{
    char path[200];
    memset(path, 'x', sizeof(path) - 1);
    path[sizeof(path) - 1] = '\0';
    ck_assert_int_eq(ipc_connect_unix(path, 1), -1);
    ck_assert_int_eq(errno, ENAMETOOLONG);
}
END_TEST

/* ipc_connect_unix returns a non-blocking fd; with the listener's backlog
 * full it waits (bounded by the timeout) and connects as soon as the
 * listener accepts, or fails with ETIMEDOUT when it never does. */
START_TEST(connect_backlog_full)
{
    char dir[] = "/tmp/test_ipc_XXXXXX";
    struct sockaddr_un sun;
    tmp_socket_path(&sun, dir);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    ck_assert_int_eq(listen(lfd, 0), 0);

    int fd = ipc_connect_unix(sun.sun_path, 1);
    ck_assert_int_ge(fd, 0);
    ck_assert(fcntl(fd, F_GETFL) & O_NONBLOCK);
    /* Fill the backlog with connections nobody accepts. */
    int filler[64], nfill = 0;
    for (;;) {
        ck_assert_int_lt(nfill, 64);
        int c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (connect(c, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
            ck_assert_int_eq(errno, EAGAIN);
            close(c);
            break;
        }
        filler[nfill++] = c;
    }
    double t0 = now_seconds();
    ck_assert_int_eq(ipc_connect_unix(sun.sun_path, 1), -1);
    ck_assert_int_eq(errno, ETIMEDOUT);
    double waited = now_seconds() - t0;
    ck_assert(waited > 0.5 && waited < 3.0);

    /* A child that accepts after a moment lets the waiting connect in. */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct timespec ts = { 0, 200 * 1000 * 1000 };
        nanosleep(&ts, NULL);
        for (int i = 0; i < 200; i++) {
            int c = accept(lfd, NULL, NULL);
            if (c < 0)
                _exit(1);
        }
        _exit(0);
    }
    int fd2 = ipc_connect_unix(sun.sun_path, 5);
    ck_assert_int_ge(fd2, 0);
    ck_assert(fcntl(fd2, F_GETFL) & O_NONBLOCK);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(fd2);
    close(fd);
    for (int i = 0; i < nfill; i++)
        close(filler[i]);
    close(lfd);
    unlink(sun.sun_path);
    rmdir(dir);
}
END_TEST

/* A server that accepts but never answers: ipc_call returns within the
 * timeout instead of hanging. */
START_TEST(call_times_out)
{
    char dir[] = "/tmp/test_ipc_XXXXXX";
    struct sockaddr_un sun;
    tmp_socket_path(&sun, dir);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    ck_assert_int_eq(listen(lfd, 5), 0);
    ipc_record *req = ipc_record_new();
    ipc_record *rep = ipc_record_new();
    ipc_build(req, "request", "flush", (const char *)NULL);
    double t0 = now_seconds();
    ck_assert_int_eq(ipc_call(sun.sun_path, 1, req, rep), -1);
    ck_assert(now_seconds() - t0 < 3.0);
    close(lfd);
    unlink(sun.sun_path);
    rmdir(dir);
    ipc_record_free(req);
    ipc_record_free(rep);
}
END_TEST

Suite *ipc_suite(void)
{
    Suite *s = suite_create("ipc");
    TCase *tc = tcase_create("codec");
    tcase_add_test(tc, record_get_count_int);
    tcase_add_test(tc, build_resets_and_skips_null);
    tcase_add_test(tc, encode_exact_bytes);
    tcase_add_test(tc, round_trip_binary_and_repeated);
    tcase_add_test(tc, empty_record);
    tcase_add_test(tc, every_prefix_needs_more);
    tcase_add_test(tc, malformed_names);
    tcase_add_test(tc, malformed_lengths);
    tcase_add_test(tc, malformed_missing_lf);
    tcase_add_test(tc, limits);
    tcase_add_test(tc, too_many_attrs);
    tcase_add_test(tc, garbage_never_crashes);
    suite_add_tcase(s, tc);

    TCase *ts = tcase_create("stream");
    tcase_set_timeout(ts, 20);
    tcase_add_test(ts, stream_round_trip);
    tcase_add_loop_test(ts, stream_large_record, 0, 2);
    tcase_add_test(ts, stream_byte_by_byte);
    tcase_add_loop_test(ts, stream_random_chunks_match_decode, 0, 5);
    tcase_add_test(ts, stream_timeout);
    tcase_add_test(ts, stream_timeout_mid_record);
    tcase_add_test(ts, stream_write_timeout);
    tcase_add_test(ts, stream_eof_mid_record);
    tcase_add_test(ts, stream_malformed_and_limits);
    tcase_add_test(ts, send_to_closed_peer_no_sigpipe);
    tcase_add_test(ts, stream_over_pipe);
    tcase_add_test(ts, connect_and_call);
    tcase_add_test(ts, connect_path_too_long);
    tcase_add_test(ts, call_times_out);
    tcase_add_test(ts, connect_backlog_full);
    tcase_add_test(ts, queue_then_flush_one_write);
    tcase_add_test(ts, queue_flushes_at_limit);
    tcase_add_test(ts, recv_flushes_queue_first);
    tcase_add_test(ts, flush_timeout_and_closed_peer);
    tcase_add_test(ts, stream_free_keeps_fd);
    suite_add_tcase(s, ts);
    return s;
}
