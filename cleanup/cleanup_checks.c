/*
 * cleanup_checks.c - header_checks and body_checks.
 *
 * Each logical header is looked up unfolded ("Subject: a b", line breaks
 * removed) and each body line as is, in the tables of header_checks /
 * body_checks; the result is an action (common/check_action.h):
 *   REJECT  fail with the table's status/dsn/text (default 5.7.1
 *           "Message content rejected")
 *   DISCARD accept but queue nothing     HOLD   queue into hold/
 *   IGNORE  drop this header/line        WARN   log only
 *   PREPEND insert a line before         REPLACE  replace this line
 * Every action except IGNORE/PREPEND/REPLACE is logged in Postfix's shape:
 *   QID: reject: header Subject: xyz from host[addr]; from=<s> to=<r>
 *   proto=ESMTP helo=<h>: 5.7.1 message content rejected
 * After a REJECT or DISCARD no further checks are made (the outcome is
 * decided).  A table lookup error is a temporary failure (4.3.0).
 * body_checks look at no more than body_checks_size_limit body bytes.
 * receive_override_options=no_header_body_checks (or that envelope flag)
 * turns both off.
 */
#include <ctype.h>
#include <string.h>

#include "check_action.h"
#include "cleanup.h"
#include "header.h"
#include "log.h"

/* Longest header/body text quoted in a log line. */
#define CHECK_LOG_TEXT_MAX 512

static void log_action(struct cleanup_state *st, const struct check_action *act,
                       const char *where, const char *text, size_t len)
{
    strbuf line;
    strbuf_init(&line);
    if (len > CHECK_LOG_TEXT_MAX)
        len = CHECK_LOG_TEXT_MAX;
    strbuf_printf(&line, "%s: %s: %s %.*s from ", st->qid,
                  check_action_name(act->action), where, (int)len, text);
    if (st->client_name || st->client_addr)
        strbuf_appendf(&line, "%s[%s]", st->client_name ? st->client_name : "unknown",
                       st->client_addr ? st->client_addr : "unknown");
    else
        strbuf_append_str(&line, "local");
    strbuf_appendf(&line, "; from=<%s>", st->sender ? st->sender : "");
    if (st->first_rcpt)
        strbuf_appendf(&line, " to=<%s>", st->first_rcpt);
    if (st->protocol)
        strbuf_appendf(&line, " proto=%s", st->protocol);
    if (st->helo_name)
        strbuf_appendf(&line, " helo=<%s>", st->helo_name);
    if (act->action == CHECK_REJECT) {
        /* Postfix logs its default text in lower case. */
        if (act->text_len == 24 && memcmp(act->text, "Message content rejected", 24) == 0)
            strbuf_appendf(&line, ": %s message content rejected", act->dsn);
        else
            strbuf_appendf(&line, ": %s %.*s", act->dsn, (int)act->text_len, act->text);
    } else if (act->text_len > 0) {
        strbuf_appendf(&line, ": %.*s", (int)act->text_len, act->text);
    }
    log_info("%s", strbuf_str(&line));
    strbuf_release(&line);
}

/* Look key up in tables and act.  Returns CHECK_IGNORE, CHECK_REPLACE (out
 * set), CHECK_PREPEND (prepend set) or CHECK_DUNNO. */
static int apply_checks(struct cleanup_state *st, maps *tables, const char *where,
                        const char *key, size_t keylen, strbuf *out, strbuf *prepend)
{
    if (!tables || st->status != 0 || st->discard || st->no_checks)
        return CHECK_DUNNO;
    strbuf value;
    strbuf_init(&value);
    int rc = maps_lookup(tables, key, &value);
    if (rc < 0) {
        log_warning("%s: %s_checks lookup error", st->qid, where);
        cleanup_fail(st, 4, "4.3.0", "Error: %s_checks lookup error", where);
        strbuf_release(&value);
        return CHECK_DUNNO;
    }
    if (rc == 0) {
        strbuf_release(&value);
        return CHECK_DUNNO;
    }
    struct check_action act;
    int result = CHECK_DUNNO;
    if (check_action_parse(strbuf_str(&value), &act) < 0) {
        log_warning("%s: %s_checks: unknown or incomplete action \"%s\" for %s %.*s; ignored",
                    st->qid, where, strbuf_str(&value), where,
                    (int)(keylen > CHECK_LOG_TEXT_MAX ? CHECK_LOG_TEXT_MAX : keylen), key);
        strbuf_release(&value);
        return CHECK_DUNNO;
    }
    switch (act.action) {
    case CHECK_REJECT:
        log_action(st, &act, where, key, keylen);
        cleanup_fail(st, act.status, act.dsn, "%.*s", (int)act.text_len, act.text);
        st->failure_logged = 1;
        break;
    case CHECK_DISCARD:
        log_action(st, &act, where, key, keylen);
        st->discard = 1;
        break;
    case CHECK_HOLD:
        log_action(st, &act, where, key, keylen);
        st->hold = 1;
        break;
    case CHECK_WARN:
        log_action(st, &act, where, key, keylen);
        break;
    case CHECK_IGNORE:
        result = CHECK_IGNORE;
        break;
    case CHECK_PREPEND:
        strbuf_set(prepend, act.text, act.text_len);
        result = CHECK_PREPEND;
        break;
    case CHECK_REPLACE:
        strbuf_set(out, act.text, act.text_len);
        result = CHECK_REPLACE;
        break;
    case CHECK_DUNNO:
    case CHECK_UNKNOWN:
        break;
    }
    strbuf_release(&value);
    return result;
}

int cleanup_header_checks(struct cleanup_state *st, const char *raw, size_t len,
                          strbuf *out, strbuf *prepend)
{
    if (!cleanup_cfg.header_checks)
        return CHECK_DUNNO;
    strbuf unfolded;
    strbuf_init(&unfolded);
    header_unfold(raw, len, &unfolded);
    int rc = apply_checks(st, cleanup_cfg.header_checks, "header",
                          strbuf_str(&unfolded), unfolded.len, out, prepend);
    strbuf_release(&unfolded);
    return rc;
}

int cleanup_body_checks(struct cleanup_state *st, const char *line, size_t len,
                        strbuf *out, strbuf *prepend)
{
    if (!cleanup_cfg.body_checks || st->body_checked >= cleanup_cfg.body_checks_size_limit)
        return CHECK_DUNNO;
    st->body_checked += len + 1;
    /* Lookup keys are C strings: a line with a NUL is checked up to it. */
    strbuf key;
    strbuf_init(&key);
    strbuf_set(&key, line, len);
    int rc = apply_checks(st, cleanup_cfg.body_checks, "body", strbuf_str(&key),
                          strlen(strbuf_str(&key)), out, prepend);
    strbuf_release(&key);
    return rc;
}
