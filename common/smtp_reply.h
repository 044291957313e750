/*
 * smtp_reply.h - pure parsers for what an SMTP server says to a client:
 * reply lines (RFC 5321 4.2), enhanced status codes (RFC 3463) and EHLO
 * keywords (RFC 1869).  Used by the smtp delivery agent; fuzzed and unit
 * tested with hostile input.
 *
 * Interface:
 *   smtp_reply_line(line, len, &code, &more, &text)
 *       one reply line without its CRLF: "250-PIPELINING" -> code 250,
 *       more 1, text "PIPELINING".  "250" alone is a last line with empty
 *       text.  Returns 0, or -1 when the line does not start with three
 *       digits [2-5][0-5][0-9] followed by SP, '-' or the end.
 *   smtp_reply_enhanced(text, class, out)
 *       the enhanced status code at the start of text ("5.1.1 no" ->
 *       "5.1.1") when its class digit matches the reply's (2, 4 or 5);
 *       returns its length (text to skip, blanks included) or 0.
 *   smtp_ehlo_keyword(text, kw, arg)
 *       "SIZE 10240000" -> kw "SIZE" (upper-cased), arg "10240000".
 *
 * Contract: inputs are (pointer, length) or C strings and may hold any
 * bytes; nothing reads past them.  Outputs are strbufs.
 */
#ifndef POSTERN_SMTP_REPLY_H
#define POSTERN_SMTP_REPLY_H

#include <stddef.h>
#include "strbuf.h"

int smtp_reply_line(const char *line, size_t len, int *code, int *more,
                    const char **text);
size_t smtp_reply_enhanced(const char *text, int reply_class, strbuf *out);
void smtp_ehlo_keyword(const char *text, strbuf *kw, strbuf *arg);

#endif
