/*
 * fuzz_maps.c - libFuzzer harness for the table parsers in common/maps*.c:
 * inline:{...} specs, map lists, cidr_list_match, and texthash:, cidr:,
 * regexp: files (written to a memfd and opened as /proc/self/fd/N).
 *
 * Build and run (from the source tree; not part of `make all`):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Icommon \
 *       tests/fuzz/fuzz_maps.c common/maps*.c common/strbuf.c common/mem.c \
 *       common/log.c -ldb -o /tmp/fuzz_maps
 *   /tmp/fuzz_maps -max_total_time=120
 *
 * The first input byte chooses the parser.  After a successful open a few
 * keys are looked up (including through maps_lookup_addr) to exercise the
 * lookup side, e.g. $N substitution in regexp results.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "maps.h"
#include "strbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const keys[] = {
    "user+ext@example.com", "10.1.2.3", "2001:db8::1", "postmaster", "",
    "[::1]", "A.B.C", "@example.com",
};

static void exercise(maps *ms)
{
    strbuf out;
    strbuf_init(&out);
    for (size_t i = 0; i < sizeof(keys) / sizeof(*keys); i++) {
        maps_lookup(ms, keys[i], &out);
        maps_lookup_addr(ms, keys[i], "+-", &out);
    }
    strbuf_release(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int which = data[0] % 6;
    strbuf text, spec, err;
    strbuf_init(&text);
    strbuf_init(&spec);
    strbuf_init(&err);
    strbuf_append(&text, data + 1, size - 1);
    /* map specs and lists are C strings: cut at the first NUL */
    const char *c_text = strbuf_str(&text);

    if (which == 0 || which == 1) {
        if (which == 0)
            strbuf_printf(&spec, "inline:{%s}", c_text);
        else
            strbuf_set_str(&spec, c_text);
        if (strstr(c_text, "hash:") == NULL && strstr(c_text, "btree:") == NULL
            && strstr(c_text, "texthash:") == NULL && strstr(c_text, "cidr:") == NULL
            && strstr(c_text, "regexp:") == NULL) {     /* no file access */
            maps *ms = maps_open(strbuf_str(&spec), &err);
            if (ms) {
                exercise(ms);
                maps_close(ms);
            }
        }
    } else if (which == 2) {
        cidr_list_match(c_text, "10.1.2.3", &err);
        cidr_list_match(c_text, "2001:db8::1", &err);
    } else {
        static const char *const types[] = { "texthash", "cidr", "regexp" };
        int fd = memfd_create("fuzz", 0);
        if (fd >= 0) {
            if (write(fd, data + 1, size - 1) == (ssize_t) (size - 1)) {
                strbuf_printf(&spec, "%s:/proc/self/fd/%d", types[which - 3], fd);
                maps *ms = maps_open(strbuf_str(&spec), &err);
                if (ms) {
                    exercise(ms);
                    maps_close(ms);
                }
            }
            close(fd);
        }
    }
    strbuf_release(&text);
    strbuf_release(&spec);
    strbuf_release(&err);
    return 0;
}
