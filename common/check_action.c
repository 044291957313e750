/*
 * check_action.c - parse header_checks / body_checks results.
 * See check_action.h.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "check_action.h"

static const struct {
    const char *word;
    enum check_action_type action;
} actions[] = {
    { "REJECT", CHECK_REJECT },
    { "DISCARD", CHECK_DISCARD },
    { "HOLD", CHECK_HOLD },
    { "IGNORE", CHECK_IGNORE },
    { "WARN", CHECK_WARN },
    { "PREPEND", CHECK_PREPEND },
    { "REPLACE", CHECK_REPLACE },
    { "DUNNO", CHECK_DUNNO },
    { "OK", CHECK_DUNNO },
};

/* Length of an RFC 3463 code "C.SSS.DDD" with C = 4 or 5 at s (followed by
 * a blank or the end), else 0. */
static size_t status_code_length(const char *s)
{
    size_t i = 0;
    if (s[i] != '4' && s[i] != '5')
        return 0;
    i++;
    for (int part = 0; part < 2; part++) {
        if (s[i] != '.')
            return 0;
        i++;
        size_t digits = 0;
        while (isdigit((unsigned char)s[i]) && digits < 3) {
            i++;
            digits++;
        }
        if (digits == 0 || isdigit((unsigned char)s[i]))
            return 0;
    }
    if (s[i] != '\0' && s[i] != ' ' && s[i] != '\t')
        return 0;
    return i;
}

int check_action_parse(const char *value, struct check_action *out)
{
    memset(out, 0, sizeof(*out));
    out->action = CHECK_UNKNOWN;
    out->text = "";

    while (*value == ' ' || *value == '\t')
        value++;
    size_t wlen = strcspn(value, " \t");
    const char *rest = value + wlen;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    size_t rlen = strlen(rest);
    while (rlen > 0 && (rest[rlen - 1] == ' ' || rest[rlen - 1] == '\t'
                        || rest[rlen - 1] == '\r' || rest[rlen - 1] == '\n'))
        rlen--;

    enum check_action_type act = CHECK_UNKNOWN;
    for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++) {
        if (wlen == strlen(actions[i].word)
            && strncasecmp(value, actions[i].word, wlen) == 0) {
            act = actions[i].action;
            break;
        }
    }
    if (act == CHECK_UNKNOWN)
        return -1;
    if ((act == CHECK_PREPEND || act == CHECK_REPLACE) && rlen == 0)
        return -1;

    out->action = act;
    out->text = rest;
    out->text_len = rlen;
    if (act == CHECK_REJECT) {
        size_t clen = status_code_length(rest);
        if (clen > 0 && clen < sizeof(out->dsn)) {
            memcpy(out->dsn, rest, clen);
            out->dsn[clen] = '\0';
            out->status = rest[0] - '0';
            const char *t = rest + clen;
            while (*t == ' ' || *t == '\t')
                t++;
            out->text_len = rlen > (size_t)(t - rest) ? rlen - (size_t)(t - rest) : 0;
            out->text = t;
        } else {
            snprintf(out->dsn, sizeof(out->dsn), "5.7.1");
            out->status = 5;
        }
        if (out->text_len == 0) {
            out->text = "Message content rejected";
            out->text_len = strlen(out->text);
        }
    }
    return 0;
}

const char *check_action_name(enum check_action_type action)
{
    switch (action) {
    case CHECK_DUNNO: return "dunno";
    case CHECK_REJECT: return "reject";
    case CHECK_DISCARD: return "discard";
    case CHECK_HOLD: return "hold";
    case CHECK_IGNORE: return "ignore";
    case CHECK_WARN: return "warning";
    case CHECK_PREPEND: return "prepend";
    case CHECK_REPLACE: return "replace";
    case CHECK_UNKNOWN: break;
    }
    return "unknown";
}
