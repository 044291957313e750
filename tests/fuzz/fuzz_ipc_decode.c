/*
 * fuzz_ipc_decode.c - libFuzzer target for ipc_decode() (common/ipc.c).
 *
 * Decodes records back to back from the input with small limits and checks
 * the codec's invariants: a positive result never exceeds the input, and
 * the format is canonical, so re-encoding a decoded record reproduces the
 * consumed bytes exactly.  Each decoded record is also read as a delivery
 * request's times (common/delivery_log.c: delivery_times_get), which must
 * come out ordered (arrival <= active <= request, none past now + 60 s)
 * and format into an outcome line, and is decoded as a whole delivery
 * request (common/delivery_request.c), whose result must keep the decoder's
 * contract: a valid queue id, at least one non-empty recipient, no
 * recipients on failure.  Build and run with tests/fuzz/run.sh.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "delivery_log.h"
#include "delivery_request.h"
#include "ipc.h"
#include "strbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ipc_record *r = ipc_record_new();
    strbuf enc;
    strbuf_init(&enc);
    size_t off = 0;
    while (off < size) {
        const char *why = NULL;
        long n = ipc_decode((const char *)data + off, size - off, r, 256, 4096, &why);
        if (n <= 0) {
            if (n < 0 && !why)
                abort();
            break;
        }
        if ((size_t)n > size - off)
            abort();
        strbuf_reset(&enc);
        ipc_encode(r, &enc);
        if (enc.len != (size_t)n || memcmp(enc.data, data + off, enc.len) != 0)
            abort();
        off += (size_t)n;

        const double now = 1.8e9;
        struct delivery_times t;
        delivery_times_get(r, now, &t);
        if (!(t.arrival <= t.active && t.active <= t.request && t.request <= now + 60
              && t.arrival >= 0 && t.session == now))
            abort();
        const char *rcpt = ipc_record_get_str(r, "rcpt");
        strbuf_reset(&enc);
        delivery_log_format(&enc, "Q", rcpt ? rcpt : "", ipc_record_get_str(r, "orcpt"),
                            ipc_record_get_str(r, "relay"), &t, now,
                            ipc_record_get_str(r, "dsn"), "sent",
                            ipc_record_get_str(r, "reason"));

        struct delivery_request dr;
        delivery_request_init(&dr);
        strbuf_reset(&enc);
        int rc = delivery_request_decode(&dr, r, now, (unsigned)(off & 1), &enc);
        if (rc == 1) {
            if (!queue_id_valid(dr.qid) || !dr.queue_file || !*dr.queue_file || !dr.sender
                || dr.nrcpt < 1)
                abort();
            for (int i = 0; i < dr.nrcpt; i++)
                if (!dr.rcpts[i].address || !*dr.rcpts[i].address)
                    abort();
        } else if ((rc != 0 && rc != -1) || dr.nrcpt != 0 || dr.rcpts != NULL
                   || (rc == -1 && enc.len == 0)) {
            abort();
        }
        delivery_request_free(&dr);
    }
    strbuf_release(&enc);
    ipc_record_free(r);
    return 0;
}
