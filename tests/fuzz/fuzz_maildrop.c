/*
 * fuzz_maildrop.c - libFuzzer target for the maildrop file reader
 * (common/maildrop.c): what pickup reads from files any local user can
 * write through postdrop.
 *
 * Reads the input as a maildrop file, envelope then content, and checks
 * the reader's promises: a refusal always has a reason; an accepted
 * envelope has as many rcpt attributes as nrcpt, a sender that holds no
 * NUL, CR or LF, and only the attribute names cleanup expects; content
 * reading ends (never loops).  Build and run with tests/fuzz/run.sh.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maildrop.h"
#include "queue.h"
#include "strbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    FILE *fp = fmemopen((void *) data, size, "r");
    if (!fp)
        abort();
    struct maildrop_msg m;
    strbuf line, why;
    maildrop_msg_init(&m);
    strbuf_init(&line);
    strbuf_init(&why);
    int first;
    if (maildrop_read_envelope(fp, &m, &first, &line, &why) == 0) {
        static const char *const names[] = { "fullname", "envid", "ret", "notify", "orcpt",
                                             "rcpt", NULL };
        int rcpts = 0;
        for (size_t i = 0; i < m.env->n; i++) {
            int known = 0;
            for (int k = 0; names[k]; k++)
                known |= strcmp(m.env->attrs[i].name, names[k]) == 0;
            if (!known)
                abort();
            rcpts += strcmp(m.env->attrs[i].name, "rcpt") == 0;
        }
        if (rcpts != m.nrcpt || strpbrk(strbuf_str(&m.sender), "\r\n")
            || strlen(strbuf_str(&m.sender)) != m.sender.len)
            abort();
        if (first == QREC_LINE) {
            size_t n = 0;
            int rc;
            while ((rc = maildrop_read_content(fp, &line, &why)) == 1)
                if (++n > size)
                    abort();
            if (rc < 0 && why.len == 0)
                abort();
        }
    } else if (why.len == 0) {
        abort();
    }
    maildrop_msg_free(&m);
    strbuf_release(&line);
    strbuf_release(&why);
    fclose(fp);
    return 0;
}
