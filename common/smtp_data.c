/*
 * smtp_data.c - DATA and BDAT content decoders.
 *
 * Interface and contract: see smtp_data.h.  The DATA decoder is a byte state
 * machine; the states say what the previous bytes were, which is all the
 * terminator rule needs:
 *
 *   BOL      start of a line that followed CR LF (or the DATA command):
 *            the only place where "." is special
 *   DOT      BOL then "."
 *   DOT_CR   BOL then "." CR         -> LF here ends the message
 *   MID      inside a line (also: start of a line after a bare LF, where a
 *            "." is plain data, so "<LF>.<CR><LF>" cannot end the message)
 *   CR       MID then CR             -> LF makes a proper line end
 */
#include <string.h>

#include "smtp_data.h"

enum { ST_BOL, ST_DOT, ST_DOT_CR, ST_MID, ST_CR };

void smtp_data_init(struct smtp_data_decoder *d)
{
    memset(d, 0, sizeof(*d));
    d->state = ST_BOL;
}

static void put_byte(struct smtp_data_decoder *d, strbuf *out, char c)
{
    strbuf_append_char(out, c);
    d->size++;
}

static void put_eol(struct smtp_data_decoder *d, strbuf *out)
{
    strbuf_append_char(out, '\n');
    d->size += 2;
}

size_t smtp_data_decode(struct smtp_data_decoder *d, const char *in, size_t len,
                        strbuf *out)
{
    size_t i = 0;

    while (i < len && !d->done) {
        char c = in[i];

        switch (d->state) {
        case ST_MID: {
            /* Fast path: copy a run of ordinary bytes in one append. */
            size_t j = i;
            while (j < len && in[j] != '\r' && in[j] != '\n')
                j++;
            if (j > i) {
                strbuf_append(out, in + i, j - i);
                d->size += j - i;
                i = j;
                continue;
            }
            if (c == '\r') {
                d->state = ST_CR;
            } else {            /* bare LF */
                d->bare_lf++;
                put_eol(d, out);
                d->state = ST_MID;
            }
            i++;
            break;
        }
        case ST_CR:
            if (c == '\n') {
                put_eol(d, out);
                d->state = ST_BOL;
            } else if (c == '\r') {
                put_byte(d, out, '\r');     /* the earlier CR was data */
            } else {
                put_byte(d, out, '\r');
                put_byte(d, out, c);
                d->state = ST_MID;
            }
            i++;
            break;
        case ST_BOL:
            if (c == '.') {
                d->state = ST_DOT;
                i++;
            } else {
                d->state = ST_MID;  /* reprocess c as line content */
            }
            break;
        case ST_DOT:
            /* The leading dot is stuffing and is dropped in every case;
             * what follows decides whether this was the terminator. */
            if (c == '\r') {
                d->state = ST_DOT_CR;
                i++;
            } else {
                d->state = ST_MID;  /* "." LF (bare) or ".text" */
            }
            break;
        case ST_DOT_CR:
            if (c == '\n') {
                d->done = 1;
                i++;
            } else {
                /* "." CR x: the CR was data in a line that held only it */
                d->state = ST_CR;
            }
            break;
        }
    }
    return i;
}

/* BDAT: state ST_MID or ST_CR (a CR held at a chunk boundary). */
void smtp_bdat_init(struct smtp_data_decoder *d)
{
    memset(d, 0, sizeof(*d));
    d->state = ST_MID;
}

void smtp_bdat_decode(struct smtp_data_decoder *d, const char *in, size_t len,
                      strbuf *out)
{
    size_t i = 0;

    while (i < len) {
        if (d->state == ST_CR) {
            d->state = ST_MID;
            if (in[i] == '\n') {
                put_eol(d, out);
                i++;
                continue;
            }
            put_byte(d, out, '\r');
            continue;           /* reprocess in[i] */
        }
        size_t j = i;
        while (j < len && in[j] != '\r' && in[j] != '\n')
            j++;
        if (j > i) {
            strbuf_append(out, in + i, j - i);
            d->size += j - i;
            i = j;
            continue;
        }
        if (in[i] == '\r') {
            d->state = ST_CR;
        } else {
            d->bare_lf++;
            put_eol(d, out);
        }
        i++;
    }
}

void smtp_bdat_finish(struct smtp_data_decoder *d, strbuf *out)
{
    if (d->state == ST_CR) {
        put_byte(d, out, '\r');
        d->state = ST_MID;
    }
}
