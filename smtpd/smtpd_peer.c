/*
 * smtpd_peer.c - who is the client: printable address and verified name.
 *
 * Interface: smtpd_peer_lookup(st, fd) fills st->client_addr,
 * st->client_name and st->namaddr ("name[addr]").
 *
 * Contract: the name is the reverse (PTR) name of the address only when a
 * forward lookup of that name gives the address back (Postfix's "verified"
 * name); otherwise "unknown".  Loopback addresses are "localhost" without
 * asking DNS.  IPv4-mapped IPv6 addresses are shown as IPv4.  A descriptor
 * that is not an inet socket (standalone -S mode, a UNIX socket) gives
 * "localhost[127.0.0.1]" for a UNIX socket and "unknown[unknown]" otherwise.
 * smtpd_peername_lookup = no skips DNS altogether.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "mem.h"
#include "strbuf.h"
#include "smtpd.h"

static int same_address(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family)
        return 0;
    if (a->sa_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
                      &((const struct sockaddr_in *)b)->sin_addr, sizeof(struct in_addr)) == 0;
    if (a->sa_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
    return 0;
}

/* Reverse lookup, then forward confirmation. */
static char *verified_name(const struct sockaddr *sa, socklen_t salen)
{
    char host[NI_MAXHOST];
    struct addrinfo hints, *res, *ai;

    if (getnameinfo(sa, salen, host, sizeof(host), NULL, 0, NI_NAMEREQD) != 0)
        return NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = sa->sa_family;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return NULL;
    int ok = 0;
    for (ai = res; ai != NULL && !ok; ai = ai->ai_next)
        ok = same_address(ai->ai_addr, sa);
    freeaddrinfo(res);
    return ok ? xstrdup(host) : NULL;
}

void smtpd_peer_lookup(struct smtpd_state *st, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char addr[INET6_ADDRSTRLEN];
    strbuf namaddr;

    memset(&ss, 0, sizeof(ss));
    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0
        || (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
        int local = ss.ss_family == AF_UNIX && len > 0;
        st->client_addr = xstrdup(local ? "127.0.0.1" : "unknown");
        st->client_name = xstrdup(local ? "localhost" : "unknown");
    } else {
        struct sockaddr_in v4;
        struct sockaddr *sa = (struct sockaddr *)&ss;
        socklen_t salen = len;
        if (ss.ss_family == AF_INET6
            && IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&ss)->sin6_addr)) {
            memset(&v4, 0, sizeof(v4));
            v4.sin_family = AF_INET;
            memcpy(&v4.sin_addr, ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr + 12, 4);
            sa = (struct sockaddr *)&v4;
            salen = sizeof(v4);
        }
        int loopback;
        if (sa->sa_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
            loopback = (ntohl(((struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
        } else {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof(addr));
            loopback = IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)sa)->sin6_addr);
        }
        st->client_addr = xstrdup(addr);
        if (loopback)
            st->client_name = xstrdup("localhost");
        else if (smtpd_params.peername_lookup
                 && (st->client_name = verified_name(sa, salen)) != NULL)
            ;
        else
            st->client_name = xstrdup("unknown");
    }
    strbuf_init(&namaddr);
    strbuf_printf(&namaddr, "%s[%s]", st->client_name, st->client_addr);
    st->namaddr = strbuf_detach(&namaddr, NULL);
}
