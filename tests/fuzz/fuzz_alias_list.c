/*
 * fuzz_alias_list.c - libFuzzer harness for common/alias_list.c and the
 * mbox/Delivered-To helpers of common/mailbox_format.c.
 *
 * Build and run: tests/fuzz/run.sh (builds every fuzz_*.c target).
 *
 * Checked beyond "no crash, no over-read" (the input is copied to an
 * exact-size heap buffer without a terminator, so ASan sees over-reads):
 * a successful parse yields non-empty items, file and include items are
 * absolute paths; a failed parse gives a reason and no items; mbox quoting
 * adds exactly one '>' when and only when the line matches ^>*From .
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alias_list.h"
#include "mailbox_format.h"
#include "mem.h"
#include "strbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = xmalloc(size ? size : 1);
    memcpy(buf, data, size);
    strbuf err, out;
    strbuf_init(&err);
    strbuf_init(&out);

    struct alias_item *items = NULL;
    int n = alias_list_parse(buf, size, &items, &err);
    if (n < 0) {
        if (items != NULL || err.len == 0)
            abort();
    } else {
        for (int i = 0; i < n; i++) {
            if (items[i].value[0] == '\0')
                abort();
            if ((items[i].kind == ALIAS_ITEM_FILE || items[i].kind == ALIAS_ITEM_INCLUDE)
                && items[i].value[0] != '/')
                abort();
        }
        alias_list_free(items, n);
    }

    mbox_quote_line(&out, buf, size);
    size_t gt = 0;
    while (gt < size && buf[gt] == '>')
        gt++;
    int should = size - gt >= 5 && memcmp(buf + gt, "From ", 5) == 0;
    if (out.len != size + (size_t)should)
        abort();
    header_delivered_to(buf, size, &err);

    strbuf_release(&err);
    strbuf_release(&out);
    xfree(buf);
    return 0;
}
