/*
 * fuzz_dns.c - libFuzzer harness for the DNS reply parsers (common/dns.c)
 * and the SMTP reply parsers (common/smtp_reply.c).
 *
 * Build and run: tests/fuzz/run.sh (builds every fuzz_*.c), or
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Icommon \
 *       tests/fuzz/fuzz_dns.c common/dns.c common/smtp_reply.c common/smtp_nexthop.c \
 *       common/strbuf.c common/mem.c common/log.c -lresolv -o /tmp/fuzz_dns
 *
 * Checked beyond "no crash, no over-read": every MX host returned is ""
 * (null MX) or a valid host name; parsers never report more records than
 * the input could hold; a reply line's text lies inside the input; an
 * accepted next-hop has a valid port and a host name or IP literal.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"
#include "mem.h"
#include "smtp_reply.h"
#include "smtp_nexthop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    strbuf why;
    strbuf_init(&why);
    struct dns_mx_list mx = { 0 };
    int n = dns_parse_mx(data, size, &mx, &why);
    if (n > (int)size)
        abort();
    for (int i = 0; i < mx.n; i++)
        if (mx.v[i].host[0] && !dns_hostname_valid(mx.v[i].host))
            abort();
    dns_mx_sort(&mx, 1);
    dns_mx_list_free(&mx);
    struct dns_addr_list al = { 0 };
    (void)dns_parse_addr(data, size, AF_INET, &al, &why);
    (void)dns_parse_addr(data, size, AF_INET6, &al, &why);
    dns_addr_list_free(&al);

    /* the same bytes as an SMTP reply line */
    char *line = xstrndup((const char *)data, size);
    size_t len = strlen(line);
    int code, more;
    const char *text;
    if (smtp_reply_line(line, len, &code, &more, &text) == 0) {
        if (text < line || text > line + len || code < 200 || code > 559)
            abort();
        size_t skip = smtp_reply_enhanced(text, code / 100, &why);
        if (skip > strlen(text))
            abort();
        strbuf kw, arg;
        strbuf_init(&kw);
        strbuf_init(&arg);
        smtp_ehlo_keyword(text, &kw, &arg);
        strbuf_release(&kw);
        strbuf_release(&arg);
    }
    /* and as a next-hop destination */
    char *host = NULL;
    int port, mx_lookup;
    if (smtp_nexthop_parse(line, 25, &host, &port, &mx_lookup) == 0) {
        unsigned char a[16];
        if (port < 1 || port > 65535 || (!dns_hostname_valid(host)
                                         && inet_pton(AF_INET, host, a) != 1
                                         && inet_pton(AF_INET6, host, a) != 1))
            abort();
        xfree(host);
    } else if (host) {
        abort();
    }
    xfree(line);
    strbuf_release(&why);
    return 0;
}
