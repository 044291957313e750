/*
 * check_action.h - the result of a header_checks / body_checks lookup.
 *
 * Interface:
 *   check_action_parse(value, out)  parse a lookup result such as
 *       "REJECT 5.7.1 no spam please", "DISCARD", "HOLD held for review",
 *       "IGNORE", "WARN", "PREPEND X-Tag: yes", "REPLACE X-New: 1",
 *       "DUNNO", "OK".  The action word is case-insensitive; the rest of the
 *       value (blanks trimmed) is the optional text.  For REJECT a leading
 *       RFC 3463 code 4.X.Y or 5.X.Y sets status and dsn; the defaults are
 *       status 5, dsn "5.7.1", text "Message content rejected".
 *       Returns 0, or -1 for an unknown action or a PREPEND/REPLACE without
 *       text (out->action is then CHECK_UNKNOWN).
 *   check_action_name(action)  "reject", "discard", ... as logged.
 *
 * Contract: pure; out->text points into value (not NUL-terminated: use
 * text_len); value must outlive out.
 */
#ifndef POSTERN_CHECK_ACTION_H
#define POSTERN_CHECK_ACTION_H

#include <stddef.h>

enum check_action_type {
    CHECK_DUNNO,            /* no action (also OK) */
    CHECK_REJECT,
    CHECK_DISCARD,
    CHECK_HOLD,
    CHECK_IGNORE,           /* delete this header / body line */
    CHECK_WARN,
    CHECK_PREPEND,          /* insert text before this line */
    CHECK_REPLACE,          /* replace this line with text */
    CHECK_UNKNOWN
};

struct check_action {
    enum check_action_type action;
    int status;             /* REJECT: 4 or 5 */
    char dsn[16];           /* REJECT: "5.7.1" ... */
    const char *text;       /* optional text, text_len bytes, may be empty */
    size_t text_len;
};

int check_action_parse(const char *value, struct check_action *out);
const char *check_action_name(enum check_action_type action);

#endif
