/*
 * smtp_data.h - the SMTP message-content decoders: DATA (dot-stuffed,
 * CRLF "." CRLF terminated) and BDAT (RFC 3030 chunks, no stuffing).
 *
 * Both turn wire bytes into the internal LF line form that cleanup stores:
 * CR LF becomes LF, a leading "." added by dot-stuffing is removed.
 *
 * DATA end-of-data rule (the defence against SMTP smuggling): the message
 * ends ONLY at CR LF "." CR LF, where the first CR LF may be the one that
 * ended the DATA command itself (so "." CR LF as the very first line ends an
 * empty message).  Bare LF, "<LF>.<LF>", "<CR>.<CR>", "<LF>.<CR><LF>",
 * "<CR><LF>.<LF>" never end the message.  A bare LF (LF not preceded by CR)
 * is counted in `bare_lf` and kept as a line end in the output, so the
 * caller can reject (smtpd_forbid_bare_newline = yes) or accept it.  A bare
 * CR is ordinary data.
 *
 * Interface:
 *   smtp_data_init(d)                  before the first byte after 354.
 *   smtp_data_decode(d, in, len, out)  consume bytes from in[0..len),
 *       append decoded content to out; returns how many bytes were
 *       consumed.  Stops right after the terminator (d->done = 1), so bytes
 *       after it (pipelined commands) stay with the caller.
 *   smtp_bdat_init(d) / smtp_bdat_decode(d, in, len, out)
 *       CR LF -> LF across chunk boundaries (a CR at the end of one chunk is
 *       held until the next byte is seen); smtp_bdat_finish(d, out) at BDAT
 *       LAST flushes a held CR.
 *   d->size counts the message as SMTP would transmit it (each line end as
 *   CR LF, stuffing dots removed) for message_size_limit.
 *
 * Contract: pure state machines, no I/O; any byte sequence is accepted
 * (content is binary); memory grows only by what is appended to out, which
 * the caller drains or discards as it likes (e.g. once over the size limit).
 */
#ifndef POSTERN_SMTP_DATA_H
#define POSTERN_SMTP_DATA_H

#include <stddef.h>
#include "strbuf.h"

struct smtp_data_decoder {
    int state;
    int done;                   /* terminator seen */
    unsigned long long size;    /* content size, line ends counted as 2 */
    unsigned long long bare_lf; /* LF not preceded by CR */
};

void smtp_data_init(struct smtp_data_decoder *d);
size_t smtp_data_decode(struct smtp_data_decoder *d, const char *in, size_t len,
                        strbuf *out);

void smtp_bdat_init(struct smtp_data_decoder *d);
void smtp_bdat_decode(struct smtp_data_decoder *d, const char *in, size_t len,
                      strbuf *out);
void smtp_bdat_finish(struct smtp_data_decoder *d, strbuf *out);

#endif
