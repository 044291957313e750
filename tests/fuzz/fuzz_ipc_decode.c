/*
 * fuzz_ipc_decode.c - libFuzzer target for ipc_decode() (common/ipc.c).
 *
 * Decodes records back to back from the input with small limits and checks
 * the codec's invariants: a positive result never exceeds the input, and
 * the format is canonical, so re-encoding a decoded record reproduces the
 * consumed bytes exactly.  Build and run with tests/fuzz/run.sh.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
    }
    strbuf_release(&enc);
    ipc_record_free(r);
    return 0;
}
