/*
 * fuzz_qmgr.c - libFuzzer harness for qmgr's parsers and composers in
 * common/: defer_log_parse_line (defer/ files), dsn_notify_parse,
 * resolve_recipient with transport table values, and dsn_compose with
 * hostile reasons and addresses.
 *
 * Build and run: tests/fuzz/run.sh (builds every fuzz_*.c target).
 *
 * Checked beyond "no crash, no over-read" (the line parser gets an
 * exact-size heap copy without terminator): parsed defer fields hold no
 * TAB or LF; NOTIFY masks are NEVER alone or a subset of the others;
 * a resolved transport never contains ':'; a composed notice is printable
 * US-ASCII plus LF and TAB only, with every line at most 998 octets.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "defer_log.h"
#include "dsn.h"
#include "mem.h"
#include "resolve.h"
#include "strbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *fuzz_value;

static int table(void *ctx, const char *key, int is_address, strbuf *out)
{
    (void) ctx;
    (void) key;
    if (!is_address)
        return 0;
    strbuf_set_str(out, fuzz_value);
    return 1;
}

static int one_line(void *ctx, strbuf *line, strbuf *err)
{
    int *left = ctx;
    (void) err;
    if ((*left)-- <= 0)
        return 0;
    strbuf_set_str(line, *left ? "Subject: fixed" : "");
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *exact = xmalloc(size ? size : 1);
    memcpy(exact, data, size);
    struct defer_entry e;
    defer_entry_init(&e);
    if (defer_log_parse_line(exact, size, &e) == 0) {
        const char *f[] = { e.recipient, e.dsn, e.relay, e.reason };
        for (int i = 0; i < 4; i++)
            if (strchr(f[i], '\t') || strchr(f[i], '\n'))
                abort();
        if (e.type != DEFER_ENTRY_DEFER && e.type != DEFER_ENTRY_WARNING)
            abort();
    }
    defer_entry_release(&e);
    xfree(exact);

    char *s = xstrndup((const char *) data, size);   /* stops at a NUL */
    int mask = dsn_notify_parse(s);
    if (mask & DSN_NOTIFY_NEVER ? mask != DSN_NOTIFY_NEVER
        : (mask & ~(DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY)) || mask == 0)
        abort();

    fuzz_value = s;
    struct resolve_config cfg = {
        .myhostname = "h.example", .mydestination = "h.example, localhost",
        .transport_lookup = table,
    };
    struct resolve_result r;
    resolve_result_init(&r);
    if (resolve_recipient(&cfg, s, &r) == RESOLVE_OK && strchr(strbuf_str(&r.transport), ':'))
        abort();
    resolve_result_release(&r);

    struct dsn_rcpt_report rc = {
        .address = s, .orcpt = s, .status = s, .remote_mta = s,
        .diag_type = size % 2 ? "smtp" : NULL, .reason = s,
    };
    struct dsn_report rep = {
        .kind = (enum dsn_kind) (size % 3), .myhostname = "h.example", .queue_id = s,
        .sender = s, .notify_to = s, .envid = s, .arrival = 0, .now = 0,
        .rcpts = &rc, .nrcpt = 1,
    };
    strbuf out, err;
    strbuf_init(&out);
    strbuf_init(&err);
    int lines = 3;
    if (dsn_compose(&rep, one_line, &lines, &out, &err) != 0)
        abort();
    size_t col = 0;
    for (size_t i = 0; i < out.len; i++) {
        unsigned char c = (unsigned char) out.data[i];
        if (c == '\n') {
            col = 0;
            continue;
        }
        if ((c < 0x20 && c != '\t') || c >= 0x7f || ++col > 998)
            abort();
    }
    strbuf_release(&out);
    strbuf_release(&err);
    xfree(s);
    return 0;
}
