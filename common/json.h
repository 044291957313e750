/*
 * json.h - the little JSON output postern needs (postern queue -j).
 *
 * Interface: json_append_string(out, s, len) appends s as a JSON string,
 * quotes included.
 *
 * Contract: the output is always valid JSON and valid UTF-8 whatever the
 * input: '"' and '\' are escaped, control characters (and DEL) become
 * \n \r \t or \u00XX, well-formed UTF-8 sequences pass through, and every
 * byte that is not part of one (overlong forms, surrogates, code points
 * above U+10FFFF, truncated sequences, NUL-free or not) becomes \ufffd.
 */
#ifndef POSTERN_JSON_H
#define POSTERN_JSON_H

#include <stddef.h>
#include "strbuf.h"

void json_append_string(strbuf *out, const char *s, size_t len);

#endif
