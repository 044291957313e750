/*
 * fuzz_queue_admin.c - libFuzzer harness for the parsers and encoders
 * behind `postern queue`: common/queue_select.c (selection arguments and
 * address patterns) and common/json.c (JSON string output).
 *
 * Build and run: tests/fuzz/run.sh (builds every fuzz_*.c target).
 *
 * The input is split at NUL bytes into an argument vector.  Checked
 * beyond "no crash, no over-read": a parse that succeeds yields only
 * valid queue ids, sorted, and patterns that pattern_check accepts; a
 * failure gives a reason.  Every argument, as JSON, is a quoted string of
 * valid UTF-8 with no raw control character and no unescaped quote.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "mem.h"
#include "queue.h"
#include "queue_select.h"
#include "strbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_json(const char *s, size_t len)
{
    strbuf out;
    strbuf_init(&out);
    json_append_string(&out, s, len);
    const unsigned char *p = (const unsigned char *) out.data;
    size_t n = out.len;
    if (n < 2 || p[0] != '"' || p[n - 1] != '"')
        abort();
    for (size_t i = 1; i < n - 1; i++) {
        if (p[i] < 0x20 || p[i] == 0x7f)
            abort();
        if (p[i] == '\\') {
            i++;                        /* the escaped character */
            if (i >= n - 1)
                abort();
            continue;
        }
        if (p[i] == '"')
            abort();
        if (p[i] >= 0x80) {             /* a whole, minimal UTF-8 sequence */
            size_t k = p[i] >= 0xF0 ? 3 : p[i] >= 0xE0 ? 2 : p[i] >= 0xC2 ? 1 : 0;
            if (k == 0 || p[i] > 0xF4 || i + k >= n - 1)
                abort();
            for (size_t j = 1; j <= k; j++)
                if ((p[i + j] & 0xC0) != 0x80)
                    abort();
            i += k;
        }
    }
    strbuf_release(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = xmalloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = '\0';
    int argc = 0;
    char **argv = xcalloc(size + 2, sizeof(char *));
    for (size_t i = 0; i <= size;) {
        argv[argc++] = buf + i;
        i += strlen(buf + i) + 1;
    }
    check_json((const char *) data, size);

    struct queue_select sel;
    queue_select_init(&sel);
    strbuf err;
    strbuf_init(&err);
    if (queue_select_parse(&sel, argc, argv, &err) == 0) {
        for (int i = 0; i < sel.nids; i++) {
            if (!queue_id_valid(sel.ids[i]))
                abort();
            if (i > 0 && strcmp(sel.ids[i - 1], sel.ids[i]) > 0)
                abort();
        }
        if ((sel.from && queue_select_pattern_check(sel.from, &err) < 0)
            || (sel.to && queue_select_pattern_check(sel.to, &err) < 0))
            abort();
        const char *const *rcpts = (const char *const *) argv;
        (void) queue_select_envelope(&sel, argv[0], rcpts, argc);
    } else if (err.len == 0) {
        abort();
    }
    for (int i = 0; i < argc; i++)
        if (queue_select_pattern_check(argv[i], &err) == 0 && argc > 1)
            (void) queue_select_addr_match(argv[i], argv[argc - 1]);
    queue_select_free(&sel);
    strbuf_release(&err);
    xfree(argv);
    xfree(buf);
    return 0;
}
