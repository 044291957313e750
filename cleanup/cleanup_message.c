/*
 * cleanup_message.c - the message content: lines, header section, body.
 *
 * Input: {data=CHUNK} records carrying the message in LF line form; lines
 * may cross chunk boundaries.  Each line becomes one L record as received
 * (binary-safe); a line longer than CLEANUP_MAX_LINE (1 MiB) is split into
 * pieces of that size so no reader needs unbounded memory.
 *
 * Header section: the lines up to the first empty line, or up to the first
 * line that is neither "Name:" nor a continuation (then an empty line is
 * inserted so the message stays RFC 5322).  Logical headers are held in
 * memory (at most header_size_limit bytes) and, at the end of the section,
 * each one is in turn: counted for hopcount_limit (Received:,
 * Delivered-To:), run through header_checks, dropped when it is
 * Return-Path: (delivery adds the real one; a Return-Path in transit only
 * misleads) or Bcc:/Resent-Bcc: with flags=extract, collected for
 * recipient extraction (To/Cc/Bcc, or the Resent- ones when present),
 * address-rewritten (From, Sender, Reply-To, To, Cc, ... and their Resent-
 * forms) and written as received, folds kept.  When the section grows past
 * header_size_limit, the headers held so far are processed and written,
 * and the rest of the section is written uninspected (as Postfix treats it:
 * like body), though still scanned for the names that decide the added
 * headers.
 *
 * Added at the end of the section when missing: Message-Id:
 * <QID@$myhostname>, Date: (arrival, local time), and for flags=local
 * From: (the sender, with the fullname attribute as display name) and
 * $undisclosed_recipients_header when there is no To:/Cc:.
 * Logged: "QID: message-id=<...>" (the message's own or the added one).
 *
 * message_size_limit is enforced on the content as received (bytes counted
 * with CRLF line ends, as SMTP's SIZE): past it, the message fails with
 * 5.3.4 and the rest is only counted.
 */
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "check_action.h"
#include "cleanup.h"
#include "header.h"
#include "log.h"
#include "mail_date.h"
#include "mem.h"

/* Longest Message-Id value quoted in the log. */
#define MSGID_LOG_MAX 256

void cleanup_message_init(struct cleanup_state *st)
{
    strbuf_init(&st->line);
    strbuf_init(&st->cur_header);
    st->phase = PHASE_HEADERS;
    addr_vec_init(&st->extract_plain);
    addr_vec_init(&st->extract_resent);
}

void cleanup_message_free(struct cleanup_state *st)
{
    strbuf_release(&st->line);
    strbuf_release(&st->cur_header);
    for (size_t i = 0; i < st->nheaders; i++)
        strbuf_release(&st->headers[i].raw);
    xfree(st->headers);
    st->headers = NULL;
    st->nheaders = st->headers_cap = 0;
    addr_vec_release(&st->extract_plain);
    addr_vec_release(&st->extract_resent);
}

void cleanup_out_line(struct cleanup_state *st, const char *line, size_t len)
{
    if (!cleanup_writing(st))
        return;
    if (!st->content_started) {
        queue_writer_content_begin(st->writer);
        st->content_started = 1;
    }
    queue_writer_line(st->writer, line, len);
}

/* Write a multi-line raw header, one L record per physical line. */
static void out_raw_lines(struct cleanup_state *st, const char *raw, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || raw[i] == '\n') {
            cleanup_out_line(st, raw + start, i - start);
            start = i + 1;
        }
    }
}

/* --- header names ---------------------------------------------------------- */

static int name_in(const char *raw, size_t len, const char *const *names)
{
    for (; *names; names++)
        if (header_name_is(raw, len, *names))
            return 1;
    return 0;
}

static const char *const sender_headers[] = {
    "From", "Sender", "Reply-To", "Errors-To", "Return-Receipt-To",
    "Resent-From", "Resent-Sender", "Resent-Reply-To", NULL };
static const char *const recipient_headers[] = {
    "To", "Cc", "Bcc", "Apparently-To", "Resent-To", "Resent-Cc",
    "Resent-Bcc", NULL };
static const char *const hop_headers[] = { "Received", "Delivered-To", NULL };

/* Remember what the added headers depend on; used for inspected and
 * uninspected headers alike. */
static void note_header_name(struct cleanup_state *st, const char *raw, size_t len)
{
    if (name_in(raw, len, hop_headers))
        st->hops++;
    else if (header_name_is(raw, len, "Message-Id"))
        st->seen_msgid = 1;
    else if (header_name_is(raw, len, "Date"))
        st->seen_date = 1;
    else if (header_name_is(raw, len, "From"))
        st->seen_from = 1;
    else if (header_name_is(raw, len, "To") || header_name_is(raw, len, "Cc"))
        st->seen_to_cc = 1;
}

static void log_message_id(struct cleanup_state *st, const char *value, size_t len)
{
    strbuf v;
    strbuf_init(&v);
    header_unfold(value, len, &v);
    const char *s = strbuf_str(&v);
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n > MSGID_LOG_MAX)
        n = MSGID_LOG_MAX;
    log_info("%s: message-id=%.*s", st->qid, (int)n, s);
    strbuf_release(&v);
}

/* --- inspected headers ----------------------------------------------------- */

static void process_header(struct cleanup_state *st, const char *raw, size_t len)
{
    strbuf repl, prepend, rewritten;
    strbuf_init(&repl);
    strbuf_init(&prepend);
    strbuf_init(&rewritten);

    int rc = cleanup_header_checks(st, raw, len, &repl, &prepend);
    if (rc == CHECK_PREPEND) {
        /* Anything but a header would end the header section early. */
        if (header_name_length(prepend.data, prepend.len, NULL) > 0)
            out_raw_lines(st, prepend.data, prepend.len);
        else
            log_warning("%s: header_checks PREPEND text is not a header: %s; ignored",
                        st->qid, strbuf_str(&prepend));
    }
    if (rc == CHECK_IGNORE)
        goto done;
    if (rc == CHECK_REPLACE) {
        raw = strbuf_str(&repl);
        len = repl.len;
        if (header_name_length(raw, len, NULL) == 0) {
            log_warning("%s: header_checks REPLACE text is not a header: %s; header dropped",
                        st->qid, raw);
            goto done;
        }
    }

    size_t value_off = 0;
    header_name_length(raw, len, &value_off);
    const char *value = raw + value_off;
    size_t value_len = len - value_off;

    note_header_name(st, raw, len);
    if (header_name_is(raw, len, "Return-Path")) {
        log_debug("%s: Return-Path header removed", st->qid);
        goto done;
    }
    if (header_name_is(raw, len, "Message-Id"))
        log_message_id(st, value, value_len);

    if (st->flag_extract) {
        int resent = header_name_is(raw, len, "Resent-To") || header_name_is(raw, len, "Resent-Cc")
                     || header_name_is(raw, len, "Resent-Bcc");
        int plain = header_name_is(raw, len, "To") || header_name_is(raw, len, "Cc")
                    || header_name_is(raw, len, "Bcc");
        if (resent || plain) {
            strbuf unfolded;
            strbuf_init(&unfolded);
            header_unfold(value, value_len, &unfolded);
            addr_vec_add(resent ? &st->extract_resent : &st->extract_plain,
                          strbuf_str(&unfolded));
            strbuf_release(&unfolded);
        }
        if (header_name_is(raw, len, "Bcc") || header_name_is(raw, len, "Resent-Bcc"))
            goto done;
    }

    int addr_class = name_in(raw, len, sender_headers) ? 's'
                   : name_in(raw, len, recipient_headers) ? 'r' : 0;
    strbuf newval;
    strbuf_init(&newval);
    if (addr_class && cleanup_rewrite_header_addrs(st, addr_class, value, value_len, &newval)) {
        strbuf_set(&rewritten, raw, value_off);
        strbuf_append(&rewritten, newval.data, newval.len);
        raw = strbuf_str(&rewritten);
        len = rewritten.len;
    }
    strbuf_release(&newval);
    out_raw_lines(st, raw, len);

done:
    strbuf_release(&repl);
    strbuf_release(&prepend);
    strbuf_release(&rewritten);
}

static void finish_cur_header(struct cleanup_state *st)
{
    if (!st->have_cur_header)
        return;
    if (st->nheaders == st->headers_cap) {
        st->headers_cap = st->headers_cap ? 2 * st->headers_cap : 16;
        st->headers = xrealloc(st->headers, st->headers_cap * sizeof(*st->headers));
    }
    struct cleanup_header *h = &st->headers[st->nheaders++];
    h->raw = st->cur_header;
    strbuf_init(&st->cur_header);
    st->have_cur_header = 0;
}

/* Process and write every complete header held so far. */
static void flush_headers(struct cleanup_state *st)
{
    for (size_t i = 0; i < st->nheaders; i++) {
        process_header(st, strbuf_str(&st->headers[i].raw), st->headers[i].raw.len);
        strbuf_release(&st->headers[i].raw);
    }
    st->nheaders = 0;
}

static void extract_cb(const char *addr, void *ctx)
{
    struct cleanup_state *st = ctx;
    cleanup_add_rcpt(st, addr, NULL, NULL, 1);
}

/* Postfix's header_from_format = standard: From: Full Name <sender>. */
static void add_from_header(struct cleanup_state *st, strbuf *out)
{
    strbuf_set_str(out, "From: ");
    const char *sender = *st->sender ? st->sender : "MAILER-DAEMON";
    strbuf name;
    strbuf_init(&name);
    for (const char *p = st->fullname ? st->fullname : ""; *p; p++)
        if ((unsigned char)*p >= 32 && *p != 127)
            strbuf_append_char(&name, *p);
    strbuf_rtrim(&name);
    if (name.len == 0) {
        strbuf_append_str(out, sender);
    } else {
        int plain = strspn(name.data, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                      "0123456789!#$%&'*+-/=?^_`{|}~ ") == name.len;
        if (plain) {
            strbuf_append(out, name.data, name.len);
        } else {
            strbuf_append_char(out, '"');
            for (size_t i = 0; i < name.len; i++) {
                if (name.data[i] == '"' || name.data[i] == '\\')
                    strbuf_append_char(out, '\\');
                strbuf_append_char(out, name.data[i]);
            }
            strbuf_append_char(out, '"');
        }
        strbuf_appendf(out, " <%s>", sender);
    }
    strbuf_release(&name);
}

/* The header section is over: finish inspection, add what is missing,
 * extract recipients. */
static void end_of_headers(struct cleanup_state *st)
{
    finish_cur_header(st);
    flush_headers(st);

    /* After a REJECT or DISCARD nothing more is written or logged. */
    strbuf h;
    strbuf_init(&h);
    if (!st->seen_msgid && cleanup_writing(st)) {
        strbuf_set_str(&h, "Message-Id: ");
        header_format_message_id(st->qid, cleanup_cfg.myhostname, &st->scratch);
        strbuf_append(&h, st->scratch.data, st->scratch.len);
        cleanup_out_line(st, h.data, h.len);
        log_info("%s: message-id=%s", st->qid, strbuf_str(&st->scratch));
    }
    if (!st->seen_date) {
        strbuf_set_str(&h, "Date: ");
        mail_date_format(&h, st->arrival);
        cleanup_out_line(st, h.data, h.len);
    }
    if (st->flag_local && !st->seen_from) {
        add_from_header(st, &h);
        cleanup_out_line(st, h.data, h.len);
    }
    if (st->flag_local && !st->seen_to_cc && *cleanup_cfg.undisclosed_header)
        cleanup_out_line(st, cleanup_cfg.undisclosed_header,
                         strlen(cleanup_cfg.undisclosed_header));
    strbuf_release(&h);

    if (cleanup_cfg.hopcount_limit > 0 && st->hops > cleanup_cfg.hopcount_limit) {
        log_info("%s: reject: %d Received/Delivered-To headers (hopcount_limit %d); from=<%s>",
                 st->qid, st->hops, cleanup_cfg.hopcount_limit, st->sender);
        cleanup_fail(st, 5, "5.4.6", "Too many hops");
    }

    if (st->flag_extract) {
        struct addr_vec *from = st->extract_resent.n ? &st->extract_resent : &st->extract_plain;
        for (size_t i = 0; i < from->n; i++) {
            if (addr_list_parse(from->addrs[i], strlen(from->addrs[i]), extract_cb, st) < 0)
                log_warning("%s: malformed address list in header: %.200s; "
                            "recipients taken as far as parsed", st->qid, from->addrs[i]);
        }
    }
    st->phase = PHASE_BODY;
}

/* --- body ------------------------------------------------------------------ */

static void body_line(struct cleanup_state *st, const char *line, size_t len)
{
    strbuf repl, prepend;
    strbuf_init(&repl);
    strbuf_init(&prepend);
    int rc = cleanup_body_checks(st, line, len, &repl, &prepend);
    if (rc == CHECK_PREPEND)
        cleanup_out_line(st, prepend.data, prepend.len);
    if (rc == CHECK_REPLACE)
        cleanup_out_line(st, repl.data, repl.len);
    else if (rc != CHECK_IGNORE)
        cleanup_out_line(st, line, len);
    strbuf_release(&repl);
    strbuf_release(&prepend);
}

/* --- lines ----------------------------------------------------------------- */

/* Leave inspected-header mode: what is held is processed and written, the
 * header being accumulated (if any) goes out uninspected. */
static void overflow_headers(struct cleanup_state *st)
{
    log_info("%s: header section exceeds header_size_limit %zu: rest of header not inspected",
             st->qid, cleanup_cfg.header_size_limit);
    flush_headers(st);
    if (st->have_cur_header) {
        out_raw_lines(st, st->cur_header.data, st->cur_header.len);
        strbuf_reset(&st->cur_header);
        st->have_cur_header = 0;
    }
    st->phase = PHASE_HEADERS_RAW;
}

/* One line, or (piece = 1) the continuation of a line split at 1 MiB. */
static void content_line(struct cleanup_state *st, const char *line, size_t len, int piece)
{
    if (st->phase == PHASE_BODY) {
        body_line(st, line, len);
        return;
    }
    if (piece) {
        if (st->phase == PHASE_HEADERS)
            overflow_headers(st);
        cleanup_out_line(st, line, len);
        return;
    }
    if (len == 0) {
        end_of_headers(st);
        cleanup_out_line(st, "", 0);
        return;
    }
    int cont = header_is_continuation(line, len);
    int start = !cont && header_name_length(line, len, NULL) > 0;

    if (st->phase == PHASE_HEADERS_RAW) {
        if (cont || start) {
            if (start)
                note_header_name(st, line, len);
            cleanup_out_line(st, line, len);
            return;
        }
    } else if (cont && st->have_cur_header) {
        if (st->header_bytes + len + 1 > cleanup_cfg.header_size_limit) {
            overflow_headers(st);
            cleanup_out_line(st, line, len);
            return;
        }
        strbuf_append_char(&st->cur_header, '\n');
        strbuf_append(&st->cur_header, line, len);
        st->header_bytes += len + 1;
        return;
    } else if (start) {
        finish_cur_header(st);
        if (st->header_bytes + len + 1 > cleanup_cfg.header_size_limit) {
            overflow_headers(st);
            note_header_name(st, line, len);
            cleanup_out_line(st, line, len);
            return;
        }
        strbuf_set(&st->cur_header, line, len);
        st->have_cur_header = 1;
        st->header_bytes += len + 1;
        return;
    }
    /* Neither header nor continuation: the body starts without the blank
     * line; add it. */
    end_of_headers(st);
    cleanup_out_line(st, "", 0);
    body_line(st, line, len);
}

void cleanup_message_data(struct cleanup_state *st, const char *data, size_t len)
{
    /* Size with CRLF line ends: every LF counts twice. */
    long long size = st->size + (long long)len;
    for (const char *p = data; (p = memchr(p, '\n', (size_t)(data + len - p))) != NULL; p++)
        size++;
    st->size = size;
    if (cleanup_cfg.message_size_limit > 0 && st->size > cleanup_cfg.message_size_limit)
        cleanup_fail(st, 5, "5.3.4", "Message size exceeds fixed limit");
    if (!cleanup_writing(st))
        return;

    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - data) : len;
        size_t take = end - pos;
        if (st->line.len + take > CLEANUP_MAX_LINE) {
            size_t room = CLEANUP_MAX_LINE - st->line.len;
            strbuf_append(&st->line, data + pos, room);
            content_line(st, st->line.data, st->line.len, st->line_is_piece);
            strbuf_reset(&st->line);
            st->line_is_piece = 1;
            pos += room;
            continue;
        }
        strbuf_append(&st->line, data + pos, take);
        pos = end;
        if (nl) {
            content_line(st, strbuf_str(&st->line), st->line.len, st->line_is_piece);
            strbuf_reset(&st->line);
            st->line_is_piece = 0;
            pos++;
        }
    }
}

void cleanup_message_end(struct cleanup_state *st)
{
    if (cleanup_writing(st) && st->line.len > 0) {
        /* A last line without LF still travels with CRLF. */
        st->size += 2;
        content_line(st, strbuf_str(&st->line), st->line.len, st->line_is_piece);
        strbuf_reset(&st->line);
    }
    st->line_is_piece = 0;
    if (cleanup_writing(st) && st->phase != PHASE_BODY)
        end_of_headers(st);
    if (!cleanup_writing(st))
        return;
    if (!st->content_started) {
        queue_writer_content_begin(st->writer);
        st->content_started = 1;
    }
    queue_writer_content_end(st->writer);
    cleanup_write_late_rcpts(st);
}
