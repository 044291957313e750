/*
 * defer_log.c - the per-message deferral log (format in defer_log.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "defer_log.h"
#include "mem.h"

void defer_entry_init(struct defer_entry *e)
{
    memset(e, 0, sizeof(*e));
    strbuf_init(&e->buf);
    e->recipient = e->dsn = e->relay = e->reason = "";
}

void defer_entry_release(struct defer_entry *e)
{
    strbuf_release(&e->buf);
}

/* Append a field with control characters made harmless. */
static void append_field(strbuf *out, const char *s)
{
    for (; s && *s; s++) {
        unsigned char c = (unsigned char) *s;
        strbuf_append_char(out, (c < 0x20 || c == 0x7f) ? '?' : c);
    }
}

static int append_line(const char *path, const strbuf *line)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, line->data, line->len);
    int saved = errno;
    close(fd);
    if (n != (ssize_t) line->len) {
        errno = n < 0 ? saved : EIO;
        return -1;
    }
    return 0;
}

int defer_log_append(const char *path, const char *rcpt, const char *dsn,
                     const char *relay, const char *reason)
{
    strbuf line;
    strbuf_init(&line);
    strbuf_appendf(&line, "D\t%lld\t", (long long) time(NULL));
    append_field(&line, rcpt);
    strbuf_append_char(&line, '\t');
    append_field(&line, dsn);
    strbuf_append_char(&line, '\t');
    append_field(&line, relay && *relay ? relay : "none");
    strbuf_append_char(&line, '\t');
    append_field(&line, reason);
    strbuf_append_char(&line, '\n');
    int rc = append_line(path, &line);
    strbuf_release(&line);
    return rc;
}

int defer_log_append_warning(const char *path, long long when)
{
    strbuf line;
    strbuf_init(&line);
    strbuf_appendf(&line, "W\t%lld\n", when);
    int rc = append_line(path, &line);
    strbuf_release(&line);
    return rc;
}

static int parse_time(const char *s, long long *out)
{
    if (*s < '0' || *s > '9' || strlen(s) > 18)
        return -1;
    char *end;
    *out = strtoll(s, &end, 10);
    return *end == '\0' ? 0 : -1;
}

int defer_log_parse_line(const char *line, size_t len, struct defer_entry *e)
{
    if (memchr(line, '\0', len) != NULL || memchr(line, '\n', len) != NULL)
        return -1;
    strbuf_set(&e->buf, line, len);
    /* Split into fields in place; at most 6. */
    char *fields[6];
    int n = 0;
    char *p = e->buf.data;
    fields[n++] = p;
    while ((p = strchr(p, '\t')) != NULL) {
        if (n == 6)
            return -1;
        *p++ = '\0';
        fields[n++] = p;
    }
    if (strlen(fields[0]) != 1)
        return -1;
    e->type = fields[0][0];
    if (e->type == DEFER_ENTRY_WARNING) {
        if (n != 2)
            return -1;
    } else if (e->type == DEFER_ENTRY_DEFER) {
        if (n != 6 || fields[2][0] == '\0')
            return -1;
    } else {
        return -1;
    }
    if (parse_time(fields[1], &e->when) < 0)
        return -1;
    if (e->type == DEFER_ENTRY_DEFER) {
        e->recipient = fields[2];
        e->dsn = fields[3];
        e->relay = fields[4];
        e->reason = fields[5];
    } else {
        e->recipient = e->dsn = e->relay = e->reason = "";
    }
    return 0;
}

int defer_log_read(const char *path,
                   void (*fn)(const struct defer_entry *e, void *ctx), void *ctx)
{
    FILE *fp = fopen(path, "re");
    if (fp == NULL)
        return errno == ENOENT ? 0 : -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int bad = 0;
    struct defer_entry e;
    defer_entry_init(&e);
    while ((n = getline(&line, &cap, fp)) > 0) {
        size_t len = (size_t) n;
        if (line[len - 1] != '\n') {
            bad++;              /* a torn last line: ignore it */
            continue;
        }
        len--;
        if (defer_log_parse_line(line, len, &e) < 0)
            bad++;
        else
            fn(&e, ctx);
    }
    defer_entry_release(&e);
    free(line);
    fclose(fp);
    return bad;
}
