/*
 * service_addr.h - the address part of an inet master.cf service name.
 *
 * Interface: service_addr_split(name, &host, &port, err) splits
 *     "25" / "smtp"            -> host NULL, port "25" / "smtp"
 *     "127.0.0.1:2525"         -> host "127.0.0.1", port "2525"
 *     "localhost:smtp"         -> host "localhost", port "smtp"
 *     "[::1]:2525"             -> host "::1", port "2525"
 * Returns 0 with *host (or NULL) and *port newly allocated (xfree them), or
 * -1 with a reason in err and nothing allocated.
 *
 * Contract: rejected are an empty name, host or port; an unbracketed host
 * with a ':' (IPv6 needs brackets); a '[' without "]:"; a numeric port
 * outside 1..65535; a port name with characters other than [A-Za-z0-9_-];
 * a host with blanks or control characters.
 */
#ifndef POSTERN_SERVICE_ADDR_H
#define POSTERN_SERVICE_ADDR_H

#include "strbuf.h"

int service_addr_split(const char *name, char **host, char **port, strbuf *err);

#endif
