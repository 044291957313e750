/*
 * fuzz_queue_file.c - libFuzzer target for the queue file reader
 * (common/queue_file_read.c).
 *
 * Loads the input as a queue file from a memfd, and when it is accepted
 * checks the reader's promises: every recipient's status_offset holds '-'
 * or 'D', content_end holds an 'X' record, content iteration ends cleanly
 * or with an error (never loops or crashes).  Also runs the generic record
 * reader over the same bytes.  Build and run with tests/fuzz/run.sh.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "queue.h"
#include "strbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("qf", 0);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size)
        abort();
    strbuf err, line;
    strbuf_init(&err);
    strbuf_init(&line);
    struct queue_message msg;
    if (queue_message_load(fd, "06925A3F1B0C2E41A7F", &msg, &err) == 0) {
        for (int i = 0; i < msg.nrcpt; i++) {
            off_t o = msg.rcpts[i].status_offset;
            if (o < 0 || (size_t)o >= size || (data[o] != '-' && data[o] != 'D'))
                abort();
        }
        if (msg.content_end < msg.content_offset || (size_t)msg.content_end >= size ||
            data[msg.content_end] != 'X')
            abort();
        queue_content_reader *cr = queue_content_open(fd, &msg);
        size_t lines = 0;
        while (queue_content_next(cr, &line, &err) == 1)
            if (++lines > size)
                abort();
        queue_content_close(cr);
        queue_message_free(&msg);
    } else if (err.len == 0) {
        abort();
    }
    close(fd);
    FILE *fp = fmemopen((void *)data, size ? size : 1, "r");
    if (fp && size) {
        int type;
        size_t n = 0;
        while (queue_record_read(fp, &type, &line, &err) == 1)
            if (++n > size)
                abort();
    }
    if (fp)
        fclose(fp);
    strbuf_release(&err);
    strbuf_release(&line);
    return 0;
}
