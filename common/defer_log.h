/*
 * defer_log.h - the per-message deferral log, defer/H/QID.
 *
 * qmgr appends a line each time a recipient is deferred, so that
 * `postern queue` can show why a message is still queued, and so that a
 * delay warning is sent only once per message.  Format: text, one event
 * per line, fields separated by one TAB:
 *
 *     D TAB TIME TAB RECIPIENT TAB DSN TAB RELAY TAB REASON LF
 *         a deferral: unix TIME, the recipient address, its enhanced status
 *         code (4.x.x), the relay ("none" when unknown), the reason text.
 *     W TAB TIME LF
 *         a delay warning was sent for this message at TIME.
 *
 * Control characters (TAB and LF included) in any field are written as '?'
 * so a hostile reason cannot break the format.  The last D line for a
 * recipient is its current reason.  qmgr removes the file together with
 * the queue file.
 *
 * Interface:
 *   defer_log_append(path, rcpt, dsn, relay, reason)  append one D line
 *                                  (O_APPEND, one write); 0 or -1 (errno).
 *   defer_log_append_warning(path, when)              append one W line.
 *   defer_log_parse_line(line, len, entry)  parse one line (without LF);
 *                                  entry fields point into entry->buf.
 *   defer_log_read(path, fn, ctx)  call fn for each well-formed line;
 *                                  returns the number of malformed lines
 *                                  skipped, 0 for a missing file, -1 when
 *                                  the file cannot be read.
 *
 * Contract: the parser never reads past len, accepts no NUL, and rejects
 * an unknown type, a wrong field count or a non-numeric time.
 */
#ifndef POSTERN_DEFER_LOG_H
#define POSTERN_DEFER_LOG_H

#include <stddef.h>
#include "strbuf.h"

enum defer_entry_type { DEFER_ENTRY_DEFER = 'D', DEFER_ENTRY_WARNING = 'W' };

struct defer_entry {
    int type;                   /* DEFER_ENTRY_* */
    long long when;
    const char *recipient;      /* D only; else "" */
    const char *dsn;
    const char *relay;
    const char *reason;
    strbuf buf;                 /* owns the field text */
};

void defer_entry_init(struct defer_entry *e);
void defer_entry_release(struct defer_entry *e);

int defer_log_append(const char *path, const char *rcpt, const char *dsn,
                     const char *relay, const char *reason);
int defer_log_append_warning(const char *path, long long when);
/* 0 ok, -1 malformed. */
int defer_log_parse_line(const char *line, size_t len, struct defer_entry *e);
int defer_log_read(const char *path,
                   void (*fn)(const struct defer_entry *e, void *ctx), void *ctx);

#endif
