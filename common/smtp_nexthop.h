/*
 * smtp_nexthop.h - the syntax of an smtp next-hop destination, as in
 * relayhost, transport_maps and smtp_fallback_relay (Postfix's).
 *
 * Interface:
 *   smtp_nexthop_parse(nexthop, default_port, &host, &port, &mx_lookup)
 *       "example.com"            host example.com, MX lookup, default port
 *       "example.com:587"        the same on port 587
 *       "[mail.example.com]:25"  no MX lookup (the host's own addresses)
 *       "[192.0.2.1]", "[ipv6:2001:db8::1]:25", "[2001:db8::1]"  literals
 *       an optional "inet:" prefix is ignored.
 *     Returns 0 with *host newly allocated (xfree it), or -1 (nothing
 *     allocated) for an empty or unterminated bracket, a bad port, or an
 *     unbracketed name that is not a valid host name.
 *   smtp_port_parse(s)   "25", "smtp" (25), "submission" (587),
 *       "submissions"/"smtps" (465) -> the number; -1 otherwise (1..65535).
 *
 * Contract: pure; service names are resolved without /etc/services (the
 * smtp agent runs chrooted).
 */
#ifndef POSTERN_SMTP_NEXTHOP_H
#define POSTERN_SMTP_NEXTHOP_H

int smtp_nexthop_parse(const char *nexthop, int default_port, char **host, int *port,
                       int *mx_lookup);
int smtp_port_parse(const char *s);

#endif
