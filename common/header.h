/*
 * header.h - RFC 5322 message header helpers shared by cleanup, sendmail -t
 * and the bounce composer.
 *
 * Interface:
 *   header_name_length(line, len, &value_off)
 *       If line begins a header field ("Name:" where Name is 1*ftext, i.e.
 *       printable ASCII 33..126 except ':', optionally followed by blanks
 *       before the colon, as obsolete syntax allows), return the length of
 *       Name and set value_off to the offset just past the colon.  Else 0.
 *   header_is_continuation(line, len)   1 if line starts with SP or HTAB.
 *   header_name_is(line, len, name)     1 if line is a header named name
 *                                       (case-insensitive).
 *   header_unfold(raw, len, out)        RFC 5322 unfolding: every CR and LF
 *                                       is removed, the blanks are kept.
 *   header_parse_block(text, len, cb, ctx)
 *       Split a header section (LF-separated lines, no terminating blank
 *       line needed) into logical headers; cb gets each one raw (folds
 *       included, without the final LF).  Parsing stops at the first empty
 *       line or the first line that is neither a header nor a continuation;
 *       returns the offset where it stopped (the body start).
 *   header_format_message_id(id, host, out)   "<id@host>".
 *   (Dates: mail_date_format() in mail_date.h.)
 *   header_addr_rewrite(value, len, fn, ctx, out)
 *       Walk an RFC 5322 address list (the value of To:, From:, ...) and
 *       call fn for each addr-spec (the text inside <...>, or a bare
 *       mailbox without its comments and surrounding blanks).  When fn puts
 *       a replacement into its strbuf and returns 1, out gets the value with
 *       that span replaced; everything else (display names, comments,
 *       groups, folding) is copied unchanged.  Returns the number of
 *       replacements, or -1 when the list is malformed (unbalanced quote,
 *       comment, bracket or '<'); out then holds an unchanged copy.
 *
 * Contract: pure functions, no I/O, never read past len; inputs are never
 * modified.
 */
#ifndef POSTERN_HEADER_H
#define POSTERN_HEADER_H

#include <stddef.h>
#include "strbuf.h"

size_t header_name_length(const char *line, size_t len, size_t *value_off);
int header_is_continuation(const char *line, size_t len);
int header_name_is(const char *line, size_t len, const char *name);
void header_unfold(const char *raw, size_t len, strbuf *out);
size_t header_parse_block(const char *text, size_t len,
                          void (*cb)(const char *raw, size_t rawlen, void *ctx),
                          void *ctx);

void header_format_message_id(const char *id, const char *host, strbuf *out);

typedef int (*header_addr_fn)(const char *addr, size_t len,
                              strbuf *replacement, void *ctx);
int header_addr_rewrite(const char *value, size_t len, header_addr_fn fn,
                        void *ctx, strbuf *out);

#endif
