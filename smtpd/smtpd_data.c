/*
 * smtpd_data.c - message content: DATA (RFC 5321) and BDAT (RFC 3030).
 *
 * Interface: smtpd_cmd_data(st, arg), smtpd_cmd_bdat(st, arg) (smtpd.h).
 *
 * Contract:
 *  - Content is decoded by common/smtp_data.c: DATA ends only at
 *    CR LF "." CR LF; bytes the client pipelined after the terminator stay
 *    in the input buffer and are read as commands; bytes after the 354
 *    reply are always content, never commands.
 *  - Content goes to cleanup in {data=...} records of at most 64 KiB as it
 *    arrives, through the cleanup stream's write queue: written in writes
 *    of about 64 KiB, and a message smaller than that in one write with
 *    its envelope and {end=1} (smtpd_cleanup.c); memory use is bounded by
 *    that, not by the message size.
 *  - Over message_size_limit: the cleanup conversation is abandoned at once
 *    (nothing beyond the limit is stored), the rest of the content is read
 *    and dropped, and the reply is "552 5.3.4 Message size exceeds fixed
 *    limit".
 *  - smtpd_forbid_bare_newline = yes (for clients not in its exclusions,
 *    $mynetworks by default): content with a bare LF is read to its
 *    end and answered "550 5.5.2 Error: bare <LF> received"; the transaction
 *    is dropped, the session continues.  (BDAT content is binary-clean by
 *    design and is not checked for bare LF.)
 *  - A BDAT chunk is always read in full, even when the command is refused,
 *    so the session stays in step with the client.  Any failed chunk ends
 *    the transaction (RFC 3030: the client must not send more chunks).
 *  - The 250 for a message is sent only after cleanup answered status=0,
 *    i.e. after the queue file is on disk (cleanup's fsync contract).
 */
#include <string.h>
#include <strings.h>

#include "log.h"
#include "smtp_parse.h"
#include "smtpd.h"

#define CONTENT_CHUNK 65536

static int over_size_limit(unsigned long long size)
{
    return smtpd_params.message_size_limit > 0
        && size > (unsigned long long)smtpd_params.message_size_limit;
}

/* Pass decoded content on once a chunk's worth is waiting (or at the end). */
static int pass_content(struct smtpd_state *st, int final, strbuf *reply)
{
    if (st->content.len == 0 || (!final && st->content.len < CONTENT_CHUNK))
        return 0;
    int rc = smtpd_cleanup_content(st, st->content.data, st->content.len, reply);
    strbuf_reset(&st->content);
    return rc;
}

/* No MAIL, or MAIL without an accepted RCPT: the Postfix replies. */
static const char *transaction_not_ready(struct smtpd_state *st)
{
    if (st->sender == NULL)
        return "503 5.5.1 Error: need RCPT command";
    if (st->nrcpt == 0)
        return st->rcpt_attempts > 0 ? "554 5.5.1 Error: no valid recipients"
                                     : "503 5.5.1 Error: need RCPT command";
    return NULL;
}

void smtpd_cmd_data(struct smtpd_state *st, const char *arg)
{
    struct smtp_data_decoder dec;
    strbuf reply;
    const char *not_ready;
    int failed = 0, too_big = 0;

    if (*arg != '\0') {
        smtpd_reply(st, "501 5.5.4 Syntax: DATA");
        return;
    }
    if (st->bdat_active) {
        smtpd_reply(st, "503 5.5.1 Error: DATA command not allowed during BDAT transfer");
        return;
    }
    if ((not_ready = transaction_not_ready(st)) != NULL) {
        smtpd_reply(st, "%s", not_ready);
        return;
    }
    strbuf_init(&reply);
    if (smtpd_cleanup_envelope(st, &reply) < 0) {
        smtpd_reply(st, "%s", strbuf_str(&reply));
        smtpd_reset_transaction(st);
        strbuf_release(&reply);
        return;
    }
    smtpd_reply(st, "354 End data with <CR><LF>.<CR><LF>");

    smtp_data_init(&dec);
    strbuf_reset(&st->content);
    smtpd_io_deadline(&st->io, smtpd_params.per_request_deadline, smtpd_params.min_data_rate);
    while (!dec.done) {
        size_t avail;
        const char *p = smtpd_io_peek(&st->io, &avail);
        if (p == NULL) {
            /* lost connection or timeout: the caller logs it; the queue
             * file is abandoned (cleanup never saw end=1) */
            smtpd_reset_transaction(st);
            strbuf_release(&reply);
            return;
        }
        size_t used = smtp_data_decode(&dec, p, avail, &st->content);
        smtpd_io_consume(&st->io, used);
        if (!too_big && over_size_limit(dec.size)) {
            too_big = 1;
            smtpd_cleanup_abort(st);
        }
        if (too_big || failed) {
            strbuf_reset(&st->content);
            continue;
        }
        if (pass_content(st, 0, &reply) < 0)
            failed = 1;
    }

    if (dec.bare_lf > 0 && st->forbid_bare_lf) {
        strbuf_set_str(&reply, "550 5.5.2 Error: bare <LF> received");
        smtpd_log_reject(st, "END-OF-MESSAGE", strbuf_str(&reply), NULL);
    } else if (too_big) {
        strbuf_set_str(&reply, "552 5.3.4 Message size exceeds fixed limit");
        smtpd_log_reject(st, "END-OF-MESSAGE", strbuf_str(&reply), NULL);
    } else if (!failed) {
        if (pass_content(st, 1, &reply) == 0)
            smtpd_cleanup_finish(st, &reply);
    }
    smtpd_reply(st, "%s", strbuf_str(&reply));
    smtpd_reset_transaction(st);
    strbuf_release(&reply);
}

void smtpd_cmd_bdat(struct smtpd_state *st, const char *arg)
{
    unsigned long long size, remaining;
    int last;
    strbuf reply;
    const char *not_ready;

    if (smtp_bdat_parse(arg, &size, &last) < 0) {
        /* Without a valid count we cannot know where the chunk ends. */
        smtpd_reply(st, "501 5.5.4 Syntax: BDAT count [LAST]");
        return;
    }
    strbuf_init(&reply);
    if ((not_ready = transaction_not_ready(st)) != NULL) {
        if (st->sender == NULL)
            not_ready = "503 5.5.1 Error: need MAIL command";
        strbuf_set_str(&reply, not_ready);
    } else if (!st->bdat_active) {
        if (smtpd_cleanup_envelope(st, &reply) < 0) {
            st->bdat_failed = 1;
        } else {
            st->bdat_active = 1;
            smtp_bdat_init(&st->bdat);
            strbuf_reset(&st->content);
        }
    }
    int refused = reply.len > 0;        /* reply already decided */
    smtpd_io_deadline(&st->io, smtpd_params.per_request_deadline, smtpd_params.min_data_rate);

    for (remaining = size; remaining > 0;) {
        size_t avail;
        const char *p = smtpd_io_peek(&st->io, &avail);
        if (p == NULL) {
            smtpd_reset_transaction(st);
            strbuf_release(&reply);
            return;
        }
        size_t n = avail < remaining ? avail : (size_t)remaining;
        if (!refused) {
            smtp_bdat_decode(&st->bdat, p, n, &st->content);
            if (over_size_limit(st->bdat.size)) {
                smtpd_cleanup_abort(st);
                strbuf_set_str(&reply, "552 5.3.4 Message size exceeds fixed limit");
                smtpd_log_reject(st, "BDAT", strbuf_str(&reply), NULL);
                refused = 1;
            } else if (pass_content(st, 0, &reply) < 0) {
                refused = 1;
            }
        }
        smtpd_io_consume(&st->io, n);
        remaining -= n;
    }

    if (!refused && last) {
        smtp_bdat_finish(&st->bdat, &st->content);
        if (pass_content(st, 1, &reply) == 0)
            smtpd_cleanup_finish(st, &reply);
        smtpd_reply(st, "%s", strbuf_str(&reply));
        smtpd_reset_transaction(st);
    } else if (!refused) {
        smtpd_reply(st, "250 2.0.0 Ok: %llu bytes", size);
    } else {
        smtpd_reply(st, "%s", strbuf_str(&reply));
        /* A refused chunk ends the transaction (RFC 3030 section 2);
         * a BDAT without MAIL/RCPT had no transaction to end. */
        if (st->bdat_active || st->bdat_failed)
            smtpd_reset_transaction(st);
    }
    strbuf_release(&reply);
}
