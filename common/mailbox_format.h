/*
 * mailbox_format.h - the small formats of local delivery: the mbox "From "
 * separator line and body quoting, Maildir file names, and recognising a
 * Delivered-To: header.
 *
 * Interface:
 *   mbox_from_line(out, sender, when)  appends "From SENDER DATE\n" where
 *       DATE is asctime-style local time ("Wed Nov 25 19:27:05 2026") and
 *       SENDER is "MAILER-DAEMON" for the null sender; white space and
 *       control characters in SENDER become '_' so the line stays parseable.
 *   mbox_quote_line(out, line, len)   appends the line, with one more '>'
 *       when it matches ^>*From  (mboxrd quoting, reversible by readers).
 *   maildir_unique_name(out, sec, usec, pid, counter, host)  sets out to
 *       "SEC.M<usec>P<pid>Q<counter>.HOST" (the Maildir convention: time,
 *       microseconds, process id, per-process delivery counter, host name);
 *       '/' and ':' in HOST are written as \057 and \072.
 *   header_delivered_to(line, len, value)  1 when the header line is a
 *       Delivered-To: header (name case-insensitive), with the trimmed
 *       value in value; 0 otherwise.
 *
 * Contract: pure functions on their arguments (mbox_from_line also reads
 * the local time zone); none reads past len; out is appended to except by
 * maildir_unique_name which replaces it.
 */
#ifndef POSTERN_MAILBOX_FORMAT_H
#define POSTERN_MAILBOX_FORMAT_H

#include <stddef.h>
#include <time.h>
#include "strbuf.h"

void mbox_from_line(strbuf *out, const char *sender, time_t when);
int mbox_needs_quote(const char *line, size_t len);
void mbox_quote_line(strbuf *out, const char *line, size_t len);
void maildir_unique_name(strbuf *out, long long sec, long usec, long pid,
                         unsigned long counter, const char *host);
int header_delivered_to(const char *line, size_t len, strbuf *value);

#endif
