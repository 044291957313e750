/*
 * maildrop.c - the maildrop file (doc/submission.md) as pickup reads it:
 * untrusted input written by any local user through postdrop.  The one
 * parser of that format: pickup and the queue listing both use it.
 *
 * Interface (maildrop.h): maildrop_msg_init/_free, maildrop_read_envelope,
 * maildrop_read_content.
 *
 * Contract: every record is checked before it is used: V "1" first; T
 * ignored; S exactly once, empty or a valid envelope address in internal
 * form (the form addr_parse_path gives back unchanged); A only fullname=
 * (no control characters, at most 1000 bytes), flags= ("extract" or
 * empty), envid= (1..100 printable ASCII), ret= (FULL or HDRS); N a valid
 * NOTIFY value and O a valid ORCPT, each at most once before the R they
 * belong to; R a valid address; no NUL outside L records; then L records
 * and E last with nothing after it.  T ("SEC USEC") is not checked, only
 * remembered as m->arrival when it reads as a time.  Anything else is malformed, with a
 * short reason.  Memory grows only with bytes present in the file
 * (queue_record_read).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "ipc.h"
#include "maildrop.h"
#include "mem.h"
#include "queue.h"
#include "smtp_parse.h"
#include "strbuf.h"

void maildrop_msg_init(struct maildrop_msg *m)
{
    memset(m, 0, sizeof(*m));
    strbuf_init(&m->sender);
    m->env = ipc_record_new();
}

void maildrop_msg_free(struct maildrop_msg *m)
{
    strbuf_release(&m->sender);
    ipc_record_free(m->env);
    m->env = NULL;
}


static int valid_address(const char *addr, size_t len)
{
    if (len == 0 || memchr(addr, '\0', len))
        return 0;
    strbuf in, out, err;
    strbuf_init(&in);
    strbuf_init(&out);
    strbuf_init(&err);
    strbuf_append_char(&in, '<');
    strbuf_append(&in, addr, len);
    strbuf_append_char(&in, '>');
    long n = addr_parse_path(in.data, in.len, ADDR_UTF8, &out, &err);
    int ok = n == (long) in.len && out.len == len && memcmp(out.data, addr, len) == 0;
    strbuf_release(&in);
    strbuf_release(&out);
    strbuf_release(&err);
    return ok;
}

static int has_control(const strbuf *s)
{
    for (size_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char) s->data[i];
        if (c < 0x20 || c == 0x7f)
            return 1;
    }
    return 0;
}

static int printable_ascii(const strbuf *s, size_t max)
{
    if (s->len == 0 || s->len > max)
        return 0;
    for (size_t i = 0; i < s->len; i++)
        if (s->data[i] < 33 || s->data[i] > 126)
            return 0;
    return 1;
}

/* One A record "name=value": check and add it to the envelope for cleanup. */
static int maildrop_attr(struct maildrop_msg *m, const strbuf *data, strbuf *why)
{
    const char *eq = memchr(data->data, '=', data->len);
    if (!eq) {
        strbuf_set_str(why, "attribute without '='");
        return -1;
    }
    strbuf name, value;
    strbuf_init(&name);
    strbuf_init(&value);
    strbuf_set(&name, data->data, (size_t) (eq - data->data));
    strbuf_set(&value, eq + 1, data->len - name.len - 1);
    int ok = 0;
    if (strcmp(strbuf_str(&name), "fullname") == 0) {
        ok = !has_control(&value) && value.len <= 1000;
        if (ok && value.len)
            ipc_record_add_str(m->env, "fullname", strbuf_str(&value));
    } else if (strcmp(strbuf_str(&name), "flags") == 0) {
        ok = strcmp(strbuf_str(&value), "extract") == 0 || value.len == 0;
        m->extract = value.len > 0;
    } else if (strcmp(strbuf_str(&name), "envid") == 0) {
        ok = printable_ascii(&value, 100);
        if (ok)
            ipc_record_add_str(m->env, "envid", strbuf_str(&value));
    } else if (strcmp(strbuf_str(&name), "ret") == 0) {
        ok = strcmp(strbuf_str(&value), "FULL") == 0 || strcmp(strbuf_str(&value), "HDRS") == 0;
        if (ok)
            ipc_record_add_str(m->env, "ret", strbuf_str(&value));
    }
    if (!ok)
        strbuf_printf(why, "bad attribute %.*s", (int) (name.len > 64 ? 64 : name.len),
                      strbuf_str(&name));
    strbuf_release(&name);
    strbuf_release(&value);
    return ok ? 0 : -1;
}

/* Read V .. up to the first L or E; *first gets that record's type and
 * line its data.  0 ok, -1 malformed (why). */
int maildrop_read_envelope(FILE *fp, struct maildrop_msg *m, int *first, strbuf *line,
                           strbuf *why)
{
    int type, n = 0, have_notify = 0, have_orcpt = 0;
    strbuf data;
    strbuf_init(&data);
    int rc = -1;
    for (;;) {
        int r = queue_record_read(fp, &type, &data, why);
        if (r < 0)
            break;
        if (r == 0) {
            strbuf_set_str(why, "no end record");
            break;
        }
        if (data.len && memchr(data.data, '\0', data.len) && type != QREC_LINE) {
            strbuf_printf(why, "NUL byte in a '%c' record", type);
            break;
        }
        if (n++ == 0) {
            if (type != QREC_VERSION || strcmp(strbuf_str(&data), "1") != 0) {
                strbuf_set_str(why, "no version record first");
                break;
            }
            continue;
        }
        if (type == QREC_LINE || type == QREC_END) {
            if (!m->have_sender) {
                strbuf_set_str(why, "no sender record");
                break;
            }
            if (have_notify || have_orcpt) {
                strbuf_set_str(why, "N or O record without a recipient");
                break;
            }
            if (type == QREC_END && fgetc(fp) != EOF) {
                strbuf_set_str(why, "data after the end record");
                break;
            }
            *first = type;
            strbuf_set(line, data.data, data.len);
            rc = 0;
            break;
        }
        if (type == QREC_TIME) {
            /* "SEC USEC", informational: kept when it reads as a time. */
            char *end;
            long long sec = strtoll(strbuf_str(&data), &end, 10);
            m->arrival = end != strbuf_str(&data) && (*end == ' ' || *end == '\0')
                         && sec > 0 && sec < 1LL << 40 ? sec : 0;
            continue;
        } else if (type == QREC_SENDER) {
            if (m->have_sender || (data.len && !valid_address(data.data, data.len))) {
                strbuf_set_str(why, m->have_sender ? "duplicate sender" : "bad sender address");
                break;
            }
            m->have_sender = 1;
            strbuf_set(&m->sender, data.data, data.len);
        } else if (type == QREC_ATTR) {
            if (maildrop_attr(m, &data, why) < 0)
                break;
        } else if (type == QREC_NOTIFY) {
            if (have_notify++ || !smtp_notify_valid(strbuf_str(&data))) {
                strbuf_set_str(why, "bad notify record");
                break;
            }
            ipc_record_add_str(m->env, "notify", strbuf_str(&data));
        } else if (type == QREC_ORCPT) {
            if (have_orcpt++ || !smtp_orcpt_valid(strbuf_str(&data))) {
                strbuf_set_str(why, "bad orcpt record");
                break;
            }
            ipc_record_add_str(m->env, "orcpt", strbuf_str(&data));
        } else if (type == QREC_RCPT) {
            if (!valid_address(data.data, data.len)) {
                strbuf_set_str(why, "bad recipient address");
                break;
            }
            ipc_record_add_str(m->env, "rcpt", strbuf_str(&data));
            m->nrcpt++;
            have_notify = have_orcpt = 0;
        } else {
            strbuf_printf(why, "unexpected record type '%c'", type);
            break;
        }
    }
    strbuf_release(&data);
    return rc;
}

int maildrop_read_content(FILE *fp, strbuf *line, strbuf *why)
{
    int type;
    int rc = queue_record_read(fp, &type, line, why);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        strbuf_set_str(why, "no end record");
        return -1;
    }
    if (type == QREC_LINE)
        return 1;
    if (type != QREC_END) {
        strbuf_set_str(why, "unexpected record in the content");
        return -1;
    }
    if (fgetc(fp) != EOF) {
        strbuf_set_str(why, "data after the end record");
        return -1;
    }
    return 0;
}
