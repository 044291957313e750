/*
 * addr_internal.h - helpers shared by addr.c (envelope paths) and
 * addr_list.c (header address lists).  Not for use outside those files.
 *
 * Interface:
 *   addr_is_atext(c)             RFC 5322 atext (ASCII only).
 *   addr_utf8_len(p, n)          length (2..4) of the well-formed UTF-8
 *                                sequence at p, 0 if none (overlongs,
 *                                surrogates and C1 controls are refused).
 *   addr_bad_char_reason(c)      short reason for NUL/CR/LF/controls/space,
 *                                NULL for any other byte.
 *   addr_domain_problem(s,n,u8)  NULL if s[0..n) is a valid domain or
 *                                address literal, else the reason.
 *   addr_quote_local_n(l,n,out)  append l[0..n) to out, quoted if needed.
 */
#ifndef POSTERN_ADDR_INTERNAL_H
#define POSTERN_ADDR_INTERNAL_H

#include <stddef.h>
#include "strbuf.h"

int addr_is_atext(unsigned char c);
size_t addr_utf8_len(const unsigned char *p, size_t n);
const char *addr_bad_char_reason(unsigned char c);
const char *addr_domain_problem(const char *s, size_t n, int utf8);
void addr_quote_local_n(const char *local, size_t n, strbuf *out);

#endif
