/*
 * fuzz_header.c - libFuzzer harness for common/header.c and
 * common/check_action.c (the parsers cleanup runs on message headers and
 * on header_checks results).
 *
 * Build and run (from the source tree; not part of `make all`):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Icommon \
 *       tests/fuzz/fuzz_header.c common/header.c common/check_action.c \
 *       common/strbuf.c common/mem.c common/log.c -o /tmp/fuzz_header
 *   /tmp/fuzz_header -max_total_time=120
 * (tests/fuzz/run.sh builds and runs every target.)
 *
 * Checked beyond "no crash, no over-read" (the input is copied into a
 * buffer of exactly its size):
 *   - header_addr_rewrite with a callback that changes nothing returns the
 *     input unchanged; with one that replaces every address, the result
 *     count equals the replacements made, and a refused (-1) list is
 *     copied unchanged;
 *   - header_parse_block hands out only spans inside the input that start
 *     with a header name, and stops inside the input;
 *   - header_unfold removes exactly the CR and LF bytes;
 *   - check_action_parse: text lies inside the value (or is the default).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check_action.h"
#include "header.h"
#include "strbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int keep_all(const char *addr, size_t len, strbuf *repl, void *ctx)
{
    (void)addr;
    (void)len;
    (void)repl;
    (void)ctx;
    return 0;
}

static int replace_all(const char *addr, size_t len, strbuf *repl, void *ctx)
{
    int *count = ctx;
    if (len == 0)
        abort();
    strbuf_set(repl, "x@y", 3);
    (*count)++;
    return 1;
}

struct block_ctx {
    const char *text;
    size_t len;
};

static void check_block(const char *raw, size_t len, void *ctx)
{
    struct block_ctx *b = ctx;
    if (raw < b->text || raw + len > b->text + b->len)
        abort();
    if (header_name_length(raw, len, NULL) == 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    strbuf out;
    strbuf_init(&out);

    int rc = header_addr_rewrite(buf, size, keep_all, NULL, &out);
    if (out.len != size || memcmp(out.data ? out.data : "", buf, size) != 0)
        abort();
    int count = 0;
    int rc2 = header_addr_rewrite(buf, size, replace_all, &count, &out);
    if (rc2 != (rc < 0 ? -1 : count))
        abort();
    if (rc2 < 0 && (out.len != size || memcmp(out.data ? out.data : "", buf, size) != 0))
        abort();

    struct block_ctx b = { buf, size };
    size_t stop = header_parse_block(buf, size, check_block, &b);
    if (stop > size)
        abort();

    header_unfold(buf, size, &out);
    size_t breaks = 0;
    for (size_t i = 0; i < size; i++)
        if (buf[i] == '\r' || buf[i] == '\n')
            breaks++;
    if (out.len != size - breaks || memchr(out.data ? out.data : "", '\n', out.len))
        abort();

    /* check_action_parse takes a C string */
    char *value = malloc(size + 1);
    if (value) {
        memcpy(value, data, size);
        value[size] = '\0';
        struct check_action act;
        if (check_action_parse(value, &act) == 0) {
            int inside = act.text >= value && act.text + act.text_len <= value + size;
            int dflt = act.action == CHECK_REJECT
                       && strcmp(act.text, "Message content rejected") == 0;
            if (!inside && !dflt)
                abort();
            if (act.action == CHECK_REJECT && act.status != 4 && act.status != 5)
                abort();
        }
        free(value);
    }
    strbuf_release(&out);
    free(buf);
    return 0;
}
