/*
 * fuzz_tls_params.c - libFuzzer harness for the TLS parameter parsers of
 * common/tls.c: tls_parse_protocols() (Postfix's smtpd_tls_protocols
 * syntax) and tls_cipher_string() (grade + exclusions).
 *
 * Build and run: tests/fuzz/run.sh 30 fuzz_tls_params.
 *
 * Checked beyond "no crash": an accepted protocol list yields
 * min <= max, both real TLS versions, and no disabled bit outside the
 * range; a rejected one always says why; a cipher string never holds a
 * NUL and starts with the given list.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "strbuf.h"
#include "tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* first line: protocols; second: exclusions */
    char *text = xstrndup((const char *)data, size);
    char *nl = strchr(text, '\n');
    const char *excl = "";
    if (nl) {
        *nl = '\0';
        excl = nl + 1;
    }
    strbuf err, out;
    strbuf_init(&err);
    strbuf_init(&out);
    int lo = 0, hi = 0, off = -1;
    if (tls_parse_protocols(text, &lo, &hi, &off, &err) == 0) {
        if (lo < 0x0300 || hi > 0x0304 || lo > hi || off < 0 || off >= 0x20)
            abort();
    } else if (err.len == 0) {
        abort();
    }
    strbuf_reset(&err);
    if (tls_cipher_string("medium", "HIGH:MEDIUM", excl, &out, &err) == 0) {
        if (memchr(out.data, '\0', out.len) || strncmp(out.data, "HIGH:MEDIUM", 11) != 0)
            abort();
    } else if (err.len == 0) {
        abort();
    }
    strbuf_release(&err);
    strbuf_release(&out);
    xfree(text);
    return 0;
}
