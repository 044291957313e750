/*
 * sendmail_submit.c - sendmail's side of postdrop: start it, write the
 * maildrop record stream (doc/submission.md), wait for its verdict; and the
 * reader of a message on stdin (the default mode).
 *
 * Interface (sendmail.h): sm_postdrop_open / _line / _close,
 * sm_submit_stdin, sm_parse_address, sm_envelope_add_rcpt / _free_rcpts.
 *
 * The message on stdin is UNIX text: each line ends at LF, a CR before the
 * LF is dropped, a last line without LF is kept.  Unless dot_ends is 0
 * (-i, -oi) a line holding only "." ends the message.  A first line
 * "From ..." (mbox separator, as some MUAs hand over) is dropped.  The
 * content counted with CRLF line ends may not exceed message_size_limit
 * (EX_DATAERR).  With -t the header section is scanned for To/Cc/Bcc and
 * Resent-To/-Cc/-Bcc: when neither they nor the command line give a
 * recipient, sendmail fails with EX_USAGE before anything is queued;
 * cleanup does the actual extraction and removes Bcc (flags=extract).
 *
 * Contract: postdrop never sees an end record for a message sendmail gave
 * up on, so it keeps nothing; sendmail reports success only when postdrop
 * exited 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "config.h"
#include "header.h"
#include "mem.h"
#include "queue.h"
#include "sendmail.h"

#define HEADER_SCAN_MAX (1024 * 1024)

static void pd_record(struct sm_postdrop *pd, int type, const char *data, size_t len)
{
    if (pd->failed)
        return;
    if (fprintf(pd->in, "%c%zu:", type, len) < 0
        || (len && fwrite(data, 1, len, pd->in) != len)
        || fputc('\n', pd->in) == EOF)
        pd->failed = 1;
}

static void pd_record_str(struct sm_postdrop *pd, int type, const char *s)
{
    pd_record(pd, type, s, strlen(s));
}

static void pd_attr(struct sm_postdrop *pd, const char *name, const char *value)
{
    if (!value)
        return;
    strbuf a;
    strbuf_init(&a);
    strbuf_printf(&a, "%s=%s", name, value);
    pd_record(pd, QREC_ATTR, a.data, a.len);
    strbuf_release(&a);
}

int sm_postdrop_open(struct sm_postdrop *pd, const struct sm_envelope *env, strbuf *err)
{
    int in[2], errp[2];
    char *path = sm_command_path("postdrop");
    memset(pd, 0, sizeof(*pd));
    pd->pid = -1;
    pd->err_fd = -1;
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
        strbuf_printf(err, "pipe: %s", strerror(errno));
        xfree(path);
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        strbuf_printf(err, "fork: %s", strerror(errno));
        close(in[0]); close(in[1]); close(errp[0]); close(errp[1]);
        xfree(path);
        return -1;
    }
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(errp[1], 2);
        const char *argv[6];
        int n = 0;
        argv[n++] = "postdrop";
        argv[n++] = "-v";               /* "queued as maildrop/QID" for -bs */
        if (sm_config_dir) {
            argv[n++] = "-c";
            argv[n++] = sm_config_dir;
        }
        argv[n] = NULL;
        execv(path, (char **) argv);
        dprintf(2, "exec %s: %s\n", path, strerror(errno));
        _exit(EX_UNAVAILABLE);
    }
    xfree(path);
    close(in[0]);
    close(errp[1]);
    pd->pid = pid;
    pd->err_fd = errp[0];
    pd->in = fdopen(in[1], "w");
    if (!pd->in)
        sm_fatal(EX_OSERR, "fdopen: %s", strerror(errno));

    char now[64];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(now, sizeof(now), "%lld %ld", (long long) ts.tv_sec, (long) (ts.tv_nsec / 1000));
    pd_record_str(pd, QREC_VERSION, "1");
    pd_record_str(pd, QREC_TIME, now);
    pd_record_str(pd, QREC_SENDER, env->sender);
    pd_attr(pd, "fullname", env->fullname);
    pd_attr(pd, "envid", env->envid);
    pd_attr(pd, "ret", env->ret);
    if (env->extract)
        pd_attr(pd, "flags", "extract");
    for (int i = 0; i < env->nrcpt; i++) {
        const char *notify = env->rcpt_notify[i] ? env->rcpt_notify[i] : env->notify;
        if (notify)
            pd_record_str(pd, QREC_NOTIFY, notify);
        if (env->rcpt_orcpt[i])
            pd_record_str(pd, QREC_ORCPT, env->rcpt_orcpt[i]);
        pd_record_str(pd, QREC_RCPT, env->rcpts[i]);
    }
    return 0;
}

void sm_postdrop_line(struct sm_postdrop *pd, const char *line, size_t len)
{
    pd_record(pd, QREC_LINE, line, len);
}

/* postdrop -v's "postdrop: queued as maildrop/QID" line, if any, into
 * pd->queued_as: taken only when QID is a well-formed queue id. */
static void postdrop_queued_as(struct sm_postdrop *pd, const strbuf *text)
{
    static const char prefix[] = "postdrop: queued as maildrop/";
    const char *p = text->len ? memmem(text->data, text->len, prefix, sizeof(prefix) - 1)
                              : NULL;
    if (p == NULL)
        return;
    p += sizeof(prefix) - 1;
    size_t n = strcspn(p, "\n");
    if (n == 0 || n >= sizeof(pd->queued_as))
        return;
    char qid[sizeof(pd->queued_as)];
    memcpy(qid, p, n);
    qid[n] = '\0';
    if (queue_id_valid(qid))
        memcpy(pd->queued_as, qid, n + 1);
}

int sm_postdrop_close(struct sm_postdrop *pd, int complete, strbuf *err, int *status)
{
    if (complete)
        pd_record(pd, QREC_END, "", 0);
    if (fclose(pd->in) != 0)
        pd->failed = 1;
    pd->in = NULL;
    /* postdrop writes at most a line or two; read them all. */
    strbuf text;
    strbuf_init(&text);
    char buf[4096];
    ssize_t n;
    while ((n = read(pd->err_fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
        if (n > 0 && text.len < 65536)
            strbuf_append(&text, buf, (size_t) n);
    close(pd->err_fd);
    int ws;
    while (waitpid(pd->pid, &ws, 0) < 0 && errno == EINTR)
        ;
    *status = EX_TEMPFAIL;
    int rc = -1;
    if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0 && complete && !pd->failed) {
        rc = 0;
        *status = 0;
        postdrop_queued_as(pd, &text);
    } else if (complete) {
        /* The first line of postdrop's complaint, without its prefix. */
        char *nl = text.len ? memchr(text.data, '\n', text.len) : NULL;
        if (nl)
            strbuf_truncate(&text, (size_t) (nl - strbuf_str(&text)));
        const char *msg = strbuf_str(&text);
        if (strncmp(msg, "postdrop: fatal: ", 17) == 0)
            msg += 17;
        if (WIFEXITED(ws)) {
            int code = WEXITSTATUS(ws);
            if (code >= EX__BASE && code <= EX__MAX)
                *status = code;
            strbuf_printf(err, "postdrop: %s", *msg ? msg : "failed");
            if (!*msg)
                strbuf_appendf(err, " with status %d", code);
        } else {
            strbuf_printf(err, "postdrop: killed by signal %d", WTERMSIG(ws));
        }
    }
    strbuf_release(&text);
    return rc;
}

/* ---- addresses --------------------------------------------------------- */

struct sm_addr_collect {
    int count;
    strbuf *first;
};

static void collect_addr(const char *addr, void *ctx)
{
    struct sm_addr_collect *c = ctx;
    if (c->count++ == 0 && c->first)
        strbuf_set_str(c->first, addr);
}

int sm_parse_address(const char *text, int allow_null, strbuf *out)
{
    while (*text == ' ' || *text == '\t')
        text++;
    size_t len = strlen(text);
    while (len && (text[len - 1] == ' ' || text[len - 1] == '\t'))
        len--;
    if (len == 0 || (len == 2 && memcmp(text, "<>", 2) == 0)) {
        strbuf_reset(out);
        return allow_null ? 0 : -1;
    }
    strbuf err;
    strbuf_init(&err);
    long n = addr_parse_path(text, len, ADDR_ALLOW_BARE | ADDR_UTF8, out, &err);
    strbuf_release(&err);
    if (n == (long) len && out->len > 0)
        return 0;
    /* "Full Name <user@example.com>" */
    struct sm_addr_collect c = { 0, out };
    if (addr_list_parse(text, len, collect_addr, &c) == 1 && c.count == 1)
        return 0;
    return -1;
}

void sm_envelope_add_rcpt(struct sm_envelope *env, const char *addr,
                          const char *notify, const char *orcpt)
{
    env->rcpts = xrealloc(env->rcpts, sizeof(char *) * (size_t) (env->nrcpt + 1));
    env->rcpt_notify = xrealloc(env->rcpt_notify, sizeof(char *) * (size_t) (env->nrcpt + 1));
    env->rcpt_orcpt = xrealloc(env->rcpt_orcpt, sizeof(char *) * (size_t) (env->nrcpt + 1));
    env->rcpts[env->nrcpt] = xstrdup(addr);
    env->rcpt_notify[env->nrcpt] = notify ? xstrdup(notify) : NULL;
    env->rcpt_orcpt[env->nrcpt] = orcpt ? xstrdup(orcpt) : NULL;
    env->nrcpt++;
}

void sm_envelope_free_rcpts(struct sm_envelope *env)
{
    for (int i = 0; i < env->nrcpt; i++) {
        xfree(env->rcpts[i]);
        xfree(env->rcpt_notify[i]);
        xfree(env->rcpt_orcpt[i]);
    }
    xfree(env->rcpts);
    xfree(env->rcpt_notify);
    xfree(env->rcpt_orcpt);
    env->rcpts = env->rcpt_notify = env->rcpt_orcpt = NULL;
    env->nrcpt = 0;
}

/* ---- the message on stdin ------------------------------------------------ */

struct sm_header_count {
    int resent;
    int plain;
};

static void count_header(const char *raw, size_t len, void *ctx)
{
    static const char *const plain[] = { "To", "Cc", "Bcc" };
    static const char *const resent[] = { "Resent-To", "Resent-Cc", "Resent-Bcc" };
    struct sm_header_count *hc = ctx;
    for (int kind = 0; kind < 2; kind++) {
        for (int i = 0; i < 3; i++) {
            if (!header_name_is(raw, len, kind ? resent[i] : plain[i]))
                continue;
            size_t off;
            header_name_length(raw, len, &off);
            strbuf value;
            strbuf_init(&value);
            header_unfold(raw + off, len - off, &value);
            struct sm_addr_collect c = { 0, NULL };
            addr_list_parse(value.data, value.len, collect_addr, &c);
            strbuf_release(&value);
            if (kind)
                hc->resent += c.count;
            else
                hc->plain += c.count;
        }
    }
}

/* Recipients cleanup will find in the header (its rule: Resent-* when any
 * is present, else To/Cc/Bcc). */
static int header_recipients(const strbuf *header)
{
    struct sm_header_count hc = { 0, 0 };
    header_parse_block(header->data, header->len, count_header, &hc);
    return hc.resent ? hc.resent : hc.plain;
}

int sm_submit_stdin(struct sm_envelope *env, int dot_ends)
{
    struct sm_postdrop pd;
    strbuf err, header;
    strbuf_init(&err);
    strbuf_init(&header);
    long long limit = config_size("message_size_limit");
    unsigned long long size = 0;
    int in_header = 1, first = 1, status;

    if (sm_postdrop_open(&pd, env, &err) < 0)
        sm_fatal(EX_OSERR, "%s", strbuf_str(&err));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        size_t len = (size_t) n;
        if (len && line[len - 1] == '\n')
            len--;
        if (len && line[len - 1] == '\r')
            len--;
        if (first && len >= 5 && memcmp(line, "From ", 5) == 0) {
            first = 0;
            continue;
        }
        first = 0;
        if (dot_ends && len == 1 && line[0] == '.')
            break;
        size += len + 2;
        if (limit > 0 && size > (unsigned long long) limit) {
            sm_postdrop_close(&pd, 0, &err, &status);
            sm_fatal(EX_DATAERR, "message file too big (message_size_limit %lld)", limit);
        }
        if (in_header) {
            size_t off;
            if (len == 0 || (!header_name_length(line, len, &off)
                             && !header_is_continuation(line, len)))
                in_header = 0;
            else if (header.len < HEADER_SCAN_MAX) {
                strbuf_append(&header, line, len);
                strbuf_append_char(&header, '\n');
            }
        }
        sm_postdrop_line(&pd, line, len);
    }
    free(line);
    if (ferror(stdin)) {
        sm_postdrop_close(&pd, 0, &err, &status);
        sm_fatal(EX_IOERR, "read the message: %s", strerror(errno));
    }
    if (env->extract && env->nrcpt == 0 && header_recipients(&header) == 0) {
        sm_postdrop_close(&pd, 0, &err, &status);
        sm_fatal(EX_USAGE, "No recipient addresses found in message header");
    }
    if (sm_postdrop_close(&pd, 1, &err, &status) < 0)
        sm_fatal(status, "%s", err.len ? strbuf_str(&err) : "postdrop failed");
    strbuf_release(&err);
    strbuf_release(&header);
    return 0;
}
