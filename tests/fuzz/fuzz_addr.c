/*
 * fuzz_addr.c - libFuzzer harness for common/addr.c and addr_list.c.
 *
 * Build and run (from the source tree; not part of `make all`):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Icommon \
 *       tests/fuzz/fuzz_addr.c common/addr.c common/addr_list.c \
 *       common/strbuf.c common/mem.c common/log.c -o /tmp/fuzz_addr
 *   /tmp/fuzz_addr -max_total_time=120
 *
 * The first input byte chooses the flags.  Checked beyond "no crash, no
 * over-read": an accepted path consumes at most len bytes and re-parses
 * to itself; every header address re-parses as an envelope path.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "strbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_list_addr(const char *addr, void *ctx)
{
    strbuf path, out, err;
    strbuf_init(&path);
    strbuf_init(&out);
    strbuf_init(&err);
    strbuf_printf(&path, "<%s>", addr);
    long n = addr_parse_path(path.data, path.len, ADDR_UTF8, &out, &err);
    if (n != (long) path.len || strcmp(strbuf_str(&out), addr) != 0)
        abort();
    strbuf_release(&path);
    strbuf_release(&out);
    strbuf_release(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int flags = data[0] & 7;
    const char *in = (const char *) data + 1;
    size_t len = size - 1;
    strbuf out, err, again, out2;
    strbuf_init(&out);
    strbuf_init(&err);
    strbuf_init(&again);
    strbuf_init(&out2);
    long n = addr_parse_path(in, len, flags, &out, &err);
    if (n > (long) len)
        abort();
    if (n >= 0) {
        strbuf_printf(&again, "<%s>", strbuf_str(&out));
        long n2 = addr_parse_path(again.data, again.len, flags, &out2, &err);
        if (n2 != (long) again.len || strcmp(strbuf_str(&out2), strbuf_str(&out)) != 0)
            abort();
    }
    addr_list_parse(in, len, check_list_addr, NULL);
    strbuf_release(&out);
    strbuf_release(&err);
    strbuf_release(&again);
    strbuf_release(&out2);
    return 0;
}
