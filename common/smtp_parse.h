/*
 * smtp_parse.h - pure parsers for the SMTP command language (RFC 5321,
 * RFC 3461 DSN, RFC 1870 SIZE, RFC 3030 BDAT, RFC 6531 SMTPUTF8).
 *
 * Shared by smtpd (server side) and the smtp client (which parses the same
 * reply/parameter syntax).  No I/O, no configuration, no global state: every
 * function works on the bytes it is given, so each is unit-tested with
 * hostile input.
 *
 * Interface:
 *   smtp_cmd_split(line, len, cmd)    split a command line (terminator
 *       already removed) into verb and argument.  Rejects control bytes
 *       (NUL, CR, LF, DEL, ...; TAB is a space) anywhere and 8-bit bytes in
 *       the verb.  The verb is upper-cased.
 *   smtp_path_arg(arg, keyword, rest) for "MAIL FROM:<...>" / "RCPT TO:<...>":
 *       checks the "FROM:"/"TO:" keyword (case-insensitive, optional spaces
 *       after the colon as Postfix tolerates) and returns a pointer to the
 *       path, or NULL.
 *   smtp_params_parse(s, len, utf8, params, err)  ESMTP parameters
 *       "KEY[=VALUE] KEY[=VALUE]..." into a list; keys are upper-cased.
 *   smtp_xtext_decode(in, len, out)   RFC 3461 xtext ("+2B" escapes).
 *   smtp_xtext_valid(in, len)         syntax check only.
 *   smtp_notify_valid(value)          NEVER or a list of SUCCESS,FAILURE,DELAY.
 *   smtp_orcpt_valid(value)           "addr-type;xtext" with a valid xtext.
 *   smtp_size_parse(value, out)       decimal SIZE= / BDAT size, overflow-safe.
 *   smtp_bdat_parse(arg, size, last)  "N" or "N LAST".
 *
 * Contract: inputs are (pointer, length) and may contain anything; nothing
 * reads past len; outputs are strbufs or caller structs; return values are
 * 0 on success, -1 on malformed input (with a short reason where an err
 * strbuf is taken).
 */
#ifndef POSTERN_SMTP_PARSE_H
#define POSTERN_SMTP_PARSE_H

#include <stddef.h>
#include "strbuf.h"

struct smtp_cmd {
    strbuf verb;                /* upper-cased, letters only */
    strbuf arg;                 /* the rest after the first space(s) */
};

void smtp_cmd_init(struct smtp_cmd *cmd);
void smtp_cmd_release(struct smtp_cmd *cmd);
/* 0 ok, -1 syntax error (NUL, control byte in verb, empty line). */
int smtp_cmd_split(const char *line, size_t len, struct smtp_cmd *cmd);

/* keyword is "FROM" or "TO".  Returns the start of the path (after the colon
 * and any spaces) or NULL when the keyword or colon is missing. */
const char *smtp_path_arg(const char *arg, const char *keyword);

struct smtp_param {
    char *key;                  /* upper-cased */
    char *value;                /* NULL when the parameter has no "=" */
};

struct smtp_params {
    struct smtp_param *list;
    size_t n;
};

void smtp_params_init(struct smtp_params *p);
void smtp_params_release(struct smtp_params *p);
/* Parse "KEY[=VALUE] ..." (leading spaces allowed).  8-bit bytes in values
 * only when utf8 is set.  0 ok, -1 with reason in err. */
int smtp_params_parse(const char *s, size_t len, int utf8,
                      struct smtp_params *p, strbuf *err);
/* The first parameter named key (upper-case), or NULL. */
const struct smtp_param *smtp_params_find(const struct smtp_params *p, const char *key);

int smtp_xtext_valid(const char *in, size_t len);
int smtp_xtext_decode(const char *in, size_t len, strbuf *out);
int smtp_notify_valid(const char *value);
int smtp_orcpt_valid(const char *value);
int smtp_size_parse(const char *value, unsigned long long *out);
int smtp_bdat_parse(const char *arg, unsigned long long *size, int *last);

#endif
