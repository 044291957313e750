/*
 * addr.h - mail addresses: RFC 5321 paths, RFC 5322 lists, domains.
 *
 * Interface:
 *   addr_parse_path(in, len, flags, out, err)  parse "<...>" from MAIL FROM
 *       or RCPT TO (the text after the colon up to the parameters).  Strips
 *       a source route (@a,@b:), accepts quoted local parts, "<>" when
 *       ADDR_ALLOW_NULL.  out gets the address in internal form (unquoted
 *       local part where safe; quoted as needed otherwise).  Returns the
 *       number of bytes consumed, or -1 with a short reason in err.  8-bit
 *       bytes are accepted only with ADDR_UTF8 (SMTPUTF8 negotiated).
 *   addr_split(addr, local, domain)   split at the last '@'.
 *   addr_domain_valid(dom)            RFC 5321 domain or address literal.
 *   addr_is_fqdn(addr)
 *   addr_list_parse(header_value, cb, ctx)   RFC 5322 address-list (To:, Cc:)
 *       with groups, comments and display names; cb gets each addr-spec.
 *   addr_lowercase_domain(addr)       in place.
 *   addr_quote_local(local, out)      quote a local part when needed.
 *
 * Contract: parsers never read past len, accept no NUL, no CR/LF, cap the
 * local part at 64 octets and the domain at 255 (RFC 5321 4.5.3.1), and
 * never modify their input.  Case: domains compare case-insensitively;
 * local parts are kept as given (local delivery lowercases for lookups).
 */
#ifndef POSTERN_ADDR_H
#define POSTERN_ADDR_H

#include <stddef.h>
#include "strbuf.h"

#define ADDR_ALLOW_NULL  0x01   /* "<>" accepted (MAIL FROM) */
#define ADDR_UTF8        0x02   /* SMTPUTF8: UTF-8 in local part and domain */
#define ADDR_ALLOW_BARE  0x04   /* accept an address without <> (Postfix's
                                   strict_rfc821_envelopes = no) */

long addr_parse_path(const char *in, size_t len, int flags, strbuf *out, strbuf *err);
void addr_split(const char *addr, strbuf *local, strbuf *domain);
int addr_domain_valid(const char *domain, int utf8);
int addr_is_fqdn(const char *addr);
int addr_list_parse(const char *value, size_t len,
                    void (*cb)(const char *addr, void *ctx), void *ctx);
void addr_lowercase_domain(char *addr);
void addr_quote_local(const char *local, strbuf *out);

#endif
