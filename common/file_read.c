/*
 * file_read.c - read a whole file into a strbuf.  See file_read.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "file_read.h"

int file_read_all(const char *path, strbuf *out, size_t limit, strbuf *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int saved = errno;
        strbuf_printf(err, "open %s: %s", path, strerror(saved));
        errno = saved;
        return -1;
    }
    strbuf_reset(out);
    for (;;) {
        strbuf_reserve(out, 65536);
        ssize_t n = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int saved = errno;
            strbuf_printf(err, "read %s: %s", path, strerror(saved));
            close(fd);
            errno = saved;
            return -1;
        }
        if (n == 0)
            break;
        out->len += (size_t) n;
        out->data[out->len] = '\0';
        if (limit && out->len > limit) {
            strbuf_printf(err, "%s: file too large (more than %zu bytes)", path, limit);
            close(fd);
            errno = EFBIG;
            return -1;
        }
    }
    out->data[out->len] = '\0';      /* reserve() ran at least once */
    close(fd);
    return 0;
}
