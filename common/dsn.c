/*
 * dsn.c - delivery status notifications (RFC 3464); see dsn.h.
 *
 * The returned message is collected first so that the MIME boundary can be
 * checked against it: a boundary that occurs in the returned text would
 * break the structure.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "dsn.h"
#include "mail_date.h"
#include "mem.h"

int dsn_notify_parse(const char *notify)
{
    if (notify == NULL || *notify == '\0')
        return DSN_NOTIFY_DEFAULT;
    int mask = 0;
    const char *p = notify;
    while (*p) {
        const char *start = p;
        while (*p && *p != ',')
            p++;
        size_t len = (size_t) (p - start);
        if (len == 5 && strncasecmp(start, "NEVER", 5) == 0)
            mask |= DSN_NOTIFY_NEVER;
        else if (len == 7 && strncasecmp(start, "SUCCESS", 7) == 0)
            mask |= DSN_NOTIFY_SUCCESS;
        else if (len == 7 && strncasecmp(start, "FAILURE", 7) == 0)
            mask |= DSN_NOTIFY_FAILURE;
        else if (len == 5 && strncasecmp(start, "DELAY", 5) == 0)
            mask |= DSN_NOTIFY_DELAY;
        if (*p == ',')
            p++;
    }
    /* NEVER excludes everything else (RFC 3461); junk means default. */
    if (mask & DSN_NOTIFY_NEVER)
        return DSN_NOTIFY_NEVER;
    return mask ? mask : DSN_NOTIFY_DEFAULT;
}

/* Append s as printable US-ASCII. */
static void append_clean(strbuf *out, const char *s)
{
    for (; s && *s; s++) {
        unsigned char c = (unsigned char) *s;
        strbuf_append_char(out, (c < 0x20 || c >= 0x7f) ? '?' : c);
    }
}

/* Longest piece of one word on a line: RFC 5322 allows 998 octets; a
 * word longer than this is cut (the fold then adds a space in it). */
#define DSN_WORD_MAX 900

/* Append text as printable US-ASCII, folded at spaces near 78 columns
 * (continuation lines indented by four spaces), then LF. */
static void append_wrapped(strbuf *out, const char *text)
{
    strbuf clean;
    strbuf_init(&clean);
    append_clean(&clean, text);
    size_t col = 0;
    int words_on_line = 0;
    const char *p = strbuf_str(&clean);
    while (*p) {
        const char *word_end = strchr(p, ' ');
        size_t wlen = word_end ? (size_t) (word_end - p) : strlen(p);
        if (wlen > DSN_WORD_MAX)
            wlen = DSN_WORD_MAX;
        if (col + wlen > 78 && words_on_line > 0) {
            /* The space before this word becomes the fold. */
            if (out->len > 0 && out->data[out->len - 1] == ' ')
                strbuf_truncate(out, out->len - 1);
            strbuf_append_str(out, "\n    ");
            col = 4;
            words_on_line = 0;
        }
        strbuf_append(out, p, wlen);
        col += wlen;
        words_on_line++;
        p += wlen;
        if (*p == ' ') {
            strbuf_append_char(out, ' ');
            col++;
            p++;
        }
    }
    strbuf_append_char(out, '\n');
    strbuf_release(&clean);
}

/* Append "NAME: value", folded. */
static void append_field_folded(strbuf *out, const char *name, const char *value)
{
    strbuf line;
    strbuf_init(&line);
    strbuf_printf(&line, "%s: %s", name, value ? value : "");
    append_wrapped(out, strbuf_str(&line));
    strbuf_release(&line);
}

void dsn_diagnostic(const char *reason, strbuf *out)
{
    const char *said = strstr(reason, " said: ");
    const char *start = said ? said + 7 : reason;
    const char *end = start + strlen(start);
    const char *inreply = strstr(start, " (in reply to ");
    if (said && inreply)
        end = inreply;
    strbuf_reset(out);
    strbuf_append(out, start, (size_t) (end - start));
}

int dsn_remote_mta(const char *relay, strbuf *out)
{
    strbuf_reset(out);
    if (relay == NULL || *relay == '\0' || strcmp(relay, "none") == 0
        || strcmp(relay, "local") == 0)
        return 0;
    size_t len = strcspn(relay, "[:");
    if (len == 0)
        return 0;
    strbuf_append(out, relay, len);
    return 1;
}

/* Append only characters that need no quoting care in a boundary. */
static void append_boundary_safe(strbuf *out, const char *s)
{
    for (; s && *s; s++)
        if (isalnum((unsigned char) *s) || strchr("./-_", *s))
            strbuf_append_char(out, *s);
}

/* Does "--boundary" start any line of text? */
static int boundary_collides(const strbuf *text, const char *boundary)
{
    size_t blen = strlen(boundary);
    const char *p = text->data;
    const char *end = text->data + text->len;
    while (p && p < end) {
        if ((size_t) (end - p) >= blen + 2 && p[0] == '-' && p[1] == '-'
            && memcmp(p + 2, boundary, blen) == 0)
            return 1;
        p = memchr(p, '\n', (size_t) (end - p));
        if (p)
            p++;
    }
    return 0;
}

static void append_readable_part(const struct dsn_report *r, strbuf *out)
{
    strbuf_appendf(out, "This is the mail system at host ");
    /* A host name is short; cut anything absurd to keep lines legal. */
    strbuf host;
    strbuf_init(&host);
    append_clean(&host, r->myhostname);
    if (host.len > 255)
        strbuf_truncate(&host, 255);
    strbuf_append(out, host.data, host.len);
    strbuf_release(&host);
    strbuf_append_str(out, ".\n\n");
    switch (r->kind) {
    case DSN_KIND_FAILURE:
        strbuf_append_str(out,
            "Your message could not be delivered to one or more recipients.\n"
            "The reasons are listed below, and your message is attached.\n\n"
            "If you need help, write to postmaster and include this report.\n\n");
        break;
    case DSN_KIND_DELAY: {
        strbuf_append_str(out,
            "####################################################################\n"
            "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n"
            "####################################################################\n\n"
            "Your message has not yet been delivered to the recipients below.\n"
            "The mail system will keep trying until ");
        mail_date_format(out, (time_t) r->retry_until);
        strbuf_append_str(out, ".\n\n");
        break;
    }
    case DSN_KIND_SUCCESS:
        strbuf_append_str(out,
            "Your message was delivered to the recipients below, as you asked\n"
            "with the NOTIFY=SUCCESS option.\n\n");
        break;
    }
    strbuf_append_str(out, "                   The mail system\n\n");
    for (int i = 0; i < r->nrcpt; i++) {
        const struct dsn_rcpt_report *rc = &r->rcpts[i];
        /* Same folding as the report fields keeps body lines short. */
        strbuf line;
        strbuf_init(&line);
        strbuf_printf(&line, "<%s>: %s", rc->address, rc->reason ? rc->reason : "");
        append_wrapped(out, strbuf_str(&line));
        strbuf_append_char(out, '\n');
        strbuf_release(&line);
    }
}

static void append_status_part(const struct dsn_report *r, strbuf *out)
{
    strbuf tmp;
    strbuf_init(&tmp);
    strbuf_set_str(&tmp, "dns; ");
    strbuf_append_str(&tmp, r->myhostname);
    append_field_folded(out, "Reporting-MTA", strbuf_str(&tmp));
    append_field_folded(out, "X-Postern-Queue-ID", r->queue_id);
    strbuf_set_str(&tmp, "rfc822; ");
    strbuf_append_str(&tmp, r->sender);
    append_field_folded(out, "X-Postern-Sender", strbuf_str(&tmp));
    strbuf_append_str(out, "Arrival-Date: ");
    mail_date_format(out, (time_t) r->arrival);
    strbuf_append_char(out, '\n');
    if (r->envid && *r->envid)
        append_field_folded(out, "Original-Envelope-Id", r->envid);
    const char *action = r->kind == DSN_KIND_FAILURE ? "failed"
        : r->kind == DSN_KIND_DELAY ? "delayed" : "delivered";
    for (int i = 0; i < r->nrcpt; i++) {
        const struct dsn_rcpt_report *rc = &r->rcpts[i];
        strbuf_append_char(out, '\n');
        strbuf_set_str(&tmp, "rfc822; ");
        strbuf_append_str(&tmp, rc->address);
        append_field_folded(out, "Final-Recipient", strbuf_str(&tmp));
        if (rc->orcpt && *rc->orcpt) {
            strbuf_reset(&tmp);
            /* ORCPT carries its address type ("rfc822;x@y"); add one when
             * it does not. */
            if (strchr(rc->orcpt, ';') == NULL)
                strbuf_append_str(&tmp, "rfc822; ");
            strbuf_append_str(&tmp, rc->orcpt);
            append_field_folded(out, "Original-Recipient", strbuf_str(&tmp));
        }
        strbuf_appendf(out, "Action: %s\n", action);
        append_field_folded(out, "Status", rc->status && *rc->status ? rc->status : "5.0.0");
        if (rc->remote_mta && *rc->remote_mta) {
            strbuf_reset(&tmp);
            strbuf_append_str(&tmp, "dns; ");
            strbuf_append_str(&tmp, rc->remote_mta);
            append_field_folded(out, "Remote-MTA", strbuf_str(&tmp));
        }
        strbuf_reset(&tmp);
        if (rc->diag_type && strcmp(rc->diag_type, "smtp") == 0) {
            strbuf diag;
            strbuf_init(&diag);
            dsn_diagnostic(rc->reason ? rc->reason : "", &diag);
            strbuf_appendf(&tmp, "smtp; %s", strbuf_str(&diag));
            strbuf_release(&diag);
        } else {
            strbuf_appendf(&tmp, "x-unix; %s", rc->reason ? rc->reason : "");
        }
        append_field_folded(out, "Diagnostic-Code", strbuf_str(&tmp));
        if (r->kind == DSN_KIND_DELAY) {
            strbuf_append_str(out, "Will-Retry-Until: ");
            mail_date_format(out, (time_t) r->retry_until);
            strbuf_append_char(out, '\n');
        }
    }
    strbuf_release(&tmp);
}

int dsn_compose(const struct dsn_report *r, dsn_line_fn next_line, void *ctx,
                strbuf *out, strbuf *err)
{
    int headers_only = r->headers_only || r->kind != DSN_KIND_FAILURE;
    strbuf original, line;
    strbuf_init(&original);
    strbuf_init(&line);
    int rc = 0;
    if (next_line) {
        while ((rc = next_line(ctx, &line, err)) > 0) {
            if (headers_only && line.len == 0)
                break;
            strbuf_append(&original, line.data, line.len);
            strbuf_append_char(&original, '\n');
        }
    }
    strbuf_release(&line);
    if (rc < 0) {
        strbuf_release(&original);
        return -1;
    }

    strbuf boundary;
    strbuf_init(&boundary);
    for (int attempt = 0;; attempt++) {
        strbuf_reset(&boundary);
        append_boundary_safe(&boundary, r->queue_id);
        strbuf_appendf(&boundary, ".%lld", (long long) r->now);
        if (attempt)
            strbuf_appendf(&boundary, ".%d", attempt);
        strbuf_append_char(&boundary, '/');
        append_boundary_safe(&boundary, r->myhostname);
        if (boundary.len > 70)          /* RFC 2046: at most 70 characters */
            strbuf_truncate(&boundary, 70);
        if (!boundary_collides(&original, strbuf_str(&boundary)))
            break;
    }
    const char *b = strbuf_str(&boundary);

    const char *subject = r->kind == DSN_KIND_FAILURE ? "Undelivered Mail Returned to Sender"
        : r->kind == DSN_KIND_DELAY ? "Delayed Mail (still being retried)"
        : "Successful Mail Delivery Report";
    strbuf_append_str(out, "From: MAILER-DAEMON@");
    append_clean(out, r->myhostname);
    strbuf_append_str(out, " (Mail Delivery System)\n");
    append_field_folded(out, "To", r->notify_to);
    strbuf_appendf(out, "Subject: %s\nDate: ", subject);
    mail_date_format(out, r->now);
    strbuf_append_str(out, "\nAuto-Submitted: auto-replied\nMIME-Version: 1.0\n");
    strbuf_appendf(out, "Content-Type: multipart/report; report-type=delivery-status;\n"
                   "\tboundary=\"%s\"\n", b);
    strbuf_append_str(out, "Content-Transfer-Encoding: 8bit\n\n"
                      "This is a MIME-encapsulated message.\n\n");

    strbuf_appendf(out, "--%s\nContent-Description: Notification\n"
                   "Content-Type: text/plain; charset=us-ascii\n\n", b);
    append_readable_part(r, out);

    strbuf_appendf(out, "--%s\nContent-Description: Delivery report\n"
                   "Content-Type: message/delivery-status\n\n", b);
    append_status_part(r, out);
    strbuf_append_char(out, '\n');

    if (next_line) {
        if (headers_only)
            strbuf_appendf(out, "--%s\nContent-Description: %s\n"
                           "Content-Type: text/rfc822-headers\n\n", b,
                           r->kind == DSN_KIND_FAILURE ? "Undelivered Message Headers"
                           : "Message Headers");
        else
            strbuf_appendf(out, "--%s\nContent-Description: Undelivered Message\n"
                           "Content-Type: message/rfc822\n"
                           "Content-Transfer-Encoding: 8bit\n\n", b);
        strbuf_append(out, original.data, original.len);
        strbuf_append_char(out, '\n');
    }
    strbuf_appendf(out, "--%s--\n", b);
    strbuf_release(&boundary);
    strbuf_release(&original);
    return 0;
}
