/*
 * fuzz_smtp.c - libFuzzer target for common/smtp_data.c and smtp_parse.c.
 *
 * Invariants checked on every input:
 *  - DATA decoder: the message ends exactly at the first CR LF "." CR LF
 *    (or at "." CR LF as the very first line), nowhere else: the SMTP
 *    smuggling defence stated as a reference model;
 *  - DATA and BDAT decoders give the same output, consumption, size and
 *    bare-LF count however the input is split into reads;
 *  - command and ESMTP parameter parsers never crash and return only
 *    well-formed results.
 * Build and run with tests/fuzz/run.sh.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_data.h"
#include "smtp_parse.h"
#include "strbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Where the message must end (bytes consumed), or 0 for "not in input". */
static size_t reference_end(const char *in, size_t len)
{
    if (len >= 3 && memcmp(in, ".\r\n", 3) == 0)
        return 3;
    const char *p = memmem(in, len, "\r\n.\r\n", 5);
    return p ? (size_t)(p - in) + 5 : 0;
}

static void check_data(const char *in, size_t len, unsigned step_seed)
{
    struct smtp_data_decoder a, b;
    strbuf out_a, out_b;

    strbuf_init(&out_a);
    strbuf_init(&out_b);
    smtp_data_init(&a);
    size_t used_a = smtp_data_decode(&a, in, len, &out_a);
    size_t ref = reference_end(in, len);
    if (ref ? (!a.done || used_a != ref) : (a.done || used_a != len))
        abort();

    /* the same input in reads of 1..16 bytes */
    smtp_data_init(&b);
    size_t used_b = 0;
    unsigned step = step_seed;
    while (used_b < len && !b.done) {
        size_t n = 1 + (step % 16);
        step = step * 1103515245u + 12345u;
        if (n > len - used_b)
            n = len - used_b;
        size_t u = smtp_data_decode(&b, in + used_b, n, &out_b);
        if (u > n)
            abort();
        used_b += u;
        if (u < n && !b.done)
            abort();            /* stops early only at the terminator */
    }
    if (used_a != used_b || a.done != b.done || a.size != b.size || a.bare_lf != b.bare_lf
        || out_a.len != out_b.len || (out_a.len && memcmp(out_a.data, out_b.data, out_a.len) != 0))
        abort();
    strbuf_release(&out_a);
    strbuf_release(&out_b);
}

static void check_bdat(const char *in, size_t len, unsigned step_seed)
{
    struct smtp_data_decoder a, b;
    strbuf out_a, out_b;

    strbuf_init(&out_a);
    strbuf_init(&out_b);
    smtp_bdat_init(&a);
    smtp_bdat_decode(&a, in, len, &out_a);
    smtp_bdat_finish(&a, &out_a);
    smtp_bdat_init(&b);
    unsigned step = step_seed;
    for (size_t off = 0; off < len;) {
        size_t n = 1 + (step % 16);
        step = step * 1103515245u + 12345u;
        if (n > len - off)
            n = len - off;
        smtp_bdat_decode(&b, in + off, n, &out_b);
        off += n;
    }
    smtp_bdat_finish(&b, &out_b);
    if (out_a.len != out_b.len || (out_a.len && memcmp(out_a.data, out_b.data, out_a.len) != 0)
        || a.size != b.size || out_a.len > len)
        abort();
    strbuf_release(&out_a);
    strbuf_release(&out_b);
}

static void check_parsers(const char *in, size_t len)
{
    struct smtp_cmd cmd;
    struct smtp_params params;
    strbuf err, tmp;
    unsigned long long n;
    int last;

    smtp_cmd_init(&cmd);
    smtp_params_init(&params);
    strbuf_init(&err);
    strbuf_init(&tmp);
    if (smtp_cmd_split(in, len, &cmd) == 0) {
        for (size_t i = 0; i < cmd.verb.len; i++)
            if (islower((unsigned char)cmd.verb.data[i]) || cmd.verb.data[i] <= ' ')
                abort();
        const char *arg = strbuf_str(&cmd.arg);
        (void)smtp_path_arg(arg, "FROM");
        (void)smtp_bdat_parse(arg, &n, &last);
        if (smtp_params_parse(arg, strlen(arg), 1, &params, &err) == 0) {
            for (size_t i = 0; i < params.n; i++) {
                const struct smtp_param *p = &params.list[i];
                for (const char *k = p->key; *k; k++)
                    if (!isupper((unsigned char)*k) && !isdigit((unsigned char)*k) && *k != '-')
                        abort();
                if (p->value) {
                    if (*p->value == '\0' || strchr(p->value, '=') || strchr(p->value, ' '))
                        abort();
                    (void)smtp_xtext_decode(p->value, strlen(p->value), &tmp);
                    (void)smtp_notify_valid(p->value);
                    (void)smtp_orcpt_valid(p->value);
                    (void)smtp_size_parse(p->value, &n);
                }
            }
        }
    }
    smtp_cmd_release(&cmd);
    smtp_params_release(&params);
    strbuf_release(&err);
    strbuf_release(&tmp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    unsigned seed = size ? data[0] : 0;
    check_data(in, size, seed);
    check_bdat(in, size, seed);
    check_parsers(in, size);
    return 0;
}
