/*
 * smtpd_check.c - the restriction engine: smtpd_client_restrictions,
 * smtpd_helo_restrictions, smtpd_sender_restrictions,
 * smtpd_relay_restrictions, smtpd_recipient_restrictions, and the local
 * recipient table check.
 *
 * Interface (smtpd.h): smtpd_check_init() before the chroot (opens every
 * lookup table the lists name, and local_recipient_maps);
 * smtpd_check_rcpt(st, rcpt, reply) at RCPT; smtpd_check_local_recipient()
 * for VRFY; smtpd_is_local_domain().
 *
 * Semantics, as Postfix with smtpd_delay_reject = yes: all five lists are
 * evaluated at RCPT time, in the order above.  Within a list, the first
 * restriction that decides wins: a permit ends THAT list (the next list is
 * still evaluated), a reject ends the whole check.  After the lists
 * (smtpd_reject_unlisted_recipient): an address found in virtual_alias_maps
 * is accepted; else a recipient in a local domain (mydestination) must be
 * in local_recipient_maps (empty: no check), else "550 5.1.1 <a>: Recipient
 * address rejected: User unknown in local recipient table"; a recipient in
 * a virtual_alias_domains domain gets "... User unknown in virtual alias
 * table".  Virtual alias domains count as authorized destinations.
 *
 * Restrictions: permit, reject, defer, permit_mynetworks,
 * permit_sasl_authenticated (after a successful AUTH),
 * permit_tls_clientcerts (the client certificate's fingerprint, else its
 * public key's, is in relay_clientcerts; as in Postfix the certificate
 * need not be trusted: the fingerprint pins it), permit_tls_all_clientcerts
 * (any trusted client certificate), check_ccert_access TYPE:NAME (the same
 * two fingerprints as keys; "<CN>: Client certificate rejected: ..."),
 * reject_sender_login_mismatch and its authenticated_/unauthenticated_
 * halves (smtpd_sender_login_maps), reject_unauth_destination,
 * defer_unauth_destination, permit_auth_destination,
 * reject_non_fqdn_sender, reject_non_fqdn_recipient, reject_non_fqdn_helo_hostname,
 * reject_unknown_sender_domain (DNS MX, then A/AAAA), and
 * check_client_access / check_helo_access / check_sender_access /
 * check_recipient_access TYPE:NAME with access(5) results OK, REJECT [text],
 * DEFER [text], DUNNO, PERMIT, NNN text.
 *
 * Contract: an unknown restriction or an unusable table is a server
 * configuration problem: logged as a warning and answered with a 4xx so no
 * mail is lost or wrongly accepted.  The reply names the object and class as
 * Postfix does ("<a@b>: Sender address rejected: ...").
 */
#include <arpa/nameser.h>
#include <netdb.h>
#include <ctype.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "config.h"
#include "log.h"
#include "maps.h"
#include "mem.h"
#include "smtpd.h"

/* Tables opened once per process, keyed by their "type:name" spec. */
struct table_cache {
    char *spec;
    maps *tables;               /* NULL when the open failed */
    struct table_cache *next;
};
static struct table_cache *tables_opened;

static maps *table_get(const char *spec)
{
    struct table_cache *t;
    strbuf err;

    for (t = tables_opened; t != NULL; t = t->next)
        if (strcmp(t->spec, spec) == 0)
            return t->tables;
    strbuf_init(&err);
    t = xcalloc(1, sizeof(*t));
    t->spec = xstrdup(spec);
    t->tables = maps_open(spec, &err);
    if (t->tables == NULL)
        log_warning("cannot open table %s: %s", spec, strbuf_str(&err));
    t->next = tables_opened;
    tables_opened = t;
    strbuf_release(&err);
    return t->tables;
}

static int is_access_restriction(const char *name)
{
    return strcasecmp(name, "check_client_access") == 0
        || strcasecmp(name, "check_helo_access") == 0
        || strcasecmp(name, "check_sender_access") == 0
        || strcasecmp(name, "check_recipient_access") == 0
        || strcasecmp(name, "check_ccert_access") == 0;
}

static void open_list_tables(const char *list)
{
    int n;
    char **words = config_list(list, &n);
    for (int i = 0; i + 1 < n; i++)
        if (is_access_restriction(words[i]))
            table_get(words[++i]);
    config_list_free(words);
}

static void open_domain_list_tables(const char *list)
{
    int n;
    char **words = config_list(list, &n);
    for (int i = 0; i < n; i++)
        if (strchr(words[i], ':') != NULL && words[i][0] != '[')
            table_get(words[i]);
    config_list_free(words);
}

void smtpd_check_init(void)
{
    open_list_tables(smtpd_params.client_restrictions);
    open_list_tables(smtpd_params.helo_restrictions);
    open_list_tables(smtpd_params.sender_restrictions);
    open_list_tables(smtpd_params.relay_restrictions);
    open_list_tables(smtpd_params.recipient_restrictions);
    open_domain_list_tables(smtpd_params.mydestination);
    open_domain_list_tables(smtpd_params.relay_domains);
    open_domain_list_tables(smtpd_params.virtual_alias_domains);
    if (*smtpd_params.virtual_alias_maps != '\0')
        table_get(smtpd_params.virtual_alias_maps);
    if (*smtpd_params.local_recipient_maps != '\0')
        table_get(smtpd_params.local_recipient_maps);
    if (*config_str("smtpd_sender_login_maps") != '\0')
        table_get(config_str("smtpd_sender_login_maps"));
    if (*config_str("relay_clientcerts") != '\0')
        table_get(config_str("relay_clientcerts"));
    res_init();
}

/* ---- domains ----------------------------------------------------------- */

static const char *domain_of(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at ? at + 1 : NULL;
}

/* Match a domain against a list of names and type:name tables.  subdomains:
 * also match "x.example.com" against "example.com" (relay_domains). */
static int domain_in_list(const char *list, const char *domain, int subdomains)
{
    int n, hit = 0;
    char **words = config_list(list, &n);
    strbuf dom, value;

    strbuf_init(&dom);
    strbuf_init(&value);
    strbuf_set_str(&dom, domain);
    if (dom.len > 0 && dom.data[dom.len - 1] == '.')
        strbuf_truncate(&dom, dom.len - 1);
    for (char *c = dom.data; c && *c; c++)
        *c = (char)tolower((unsigned char)*c);
    for (int i = 0; i < n && !hit; i++) {
        if (strchr(words[i], ':') != NULL && words[i][0] != '[') {
            maps *t = table_get(words[i]);
            if (t == NULL)
                continue;
            const char *d = strbuf_str(&dom);
            while (d != NULL && !hit) {
                hit = maps_lookup(t, d, &value) == 1;
                d = subdomains ? strchr(d, '.') : NULL;
                if (d)
                    d++;
            }
        } else {
            const char *d = strbuf_str(&dom);
            size_t wl = strlen(words[i]), dl = strlen(d);
            if (strcasecmp(words[i], d) == 0)
                hit = 1;
            else if (subdomains && dl > wl && d[dl - wl - 1] == '.'
                     && strcasecmp(d + dl - wl, words[i]) == 0)
                hit = 1;
        }
    }
    config_list_free(words);
    strbuf_release(&dom);
    strbuf_release(&value);
    return hit;
}

int smtpd_is_local_domain(const char *domain)
{
    return domain_in_list(smtpd_params.mydestination, domain, 0);
}

/* An address without a domain is completed with $myorigin by cleanup, which
 * is a local domain in every sane configuration: treat it as local. */
static int rcpt_is_local(const char *rcpt)
{
    const char *d = domain_of(rcpt);
    return d == NULL || smtpd_is_local_domain(d);
}

static int rcpt_is_virtual_alias_domain(const char *rcpt)
{
    const char *d = domain_of(rcpt);
    return d != NULL && *smtpd_params.virtual_alias_domains != '\0'
        && domain_in_list(smtpd_params.virtual_alias_domains, d, 0);
}

static int rcpt_is_auth_destination(const char *rcpt)
{
    const char *d = domain_of(rcpt);
    return d == NULL || smtpd_is_local_domain(d) || rcpt_is_virtual_alias_domain(rcpt)
        || domain_in_list(smtpd_params.relay_domains, d, 1);
}

/* ---- evaluation context ------------------------------------------------ */

struct check_ctx {
    struct smtpd_state *st;
    const char *rcpt;
    const char *list_name;      /* for warnings */
    const char *object;         /* what "reject" names: client, helo, ... */
    const char *class;          /* "Client host", "Recipient address", ... */
    strbuf *reply;
};

/* "CODE X.Y.Z <object>: Class rejected: text" */
static int reject_with(struct check_ctx *c, int code, const char *dsn,
                       const char *object, const char *class, const char *text)
{
    strbuf_printf(c->reply, "%d %c%s <%s>: %s rejected: %s", code,
                  code >= 500 ? '5' : '4', dsn + 1, object, class, text);
    return SMTPD_CHECK_REJECT;
}

static int config_error(struct check_ctx *c, const char *what)
{
    log_warning("%s: %s", c->list_name, what);
    strbuf_set_str(c->reply, "451 4.3.5 Server configuration error");
    return SMTPD_CHECK_REJECT;
}

/* ---- access tables ----------------------------------------------------- */

/* Apply one access(5) result.  Returns DUNNO to go on. */
static int access_result(struct check_ctx *c, const char *value, const char *object,
                         const char *class)
{
    const char *p = value;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t wl = strcspn(p, " \t");
    const char *text = p + wl;
    while (*text == ' ' || *text == '\t')
        text++;

    if ((wl == 2 && strncasecmp(p, "OK", 2) == 0)
        || (wl == 6 && strncasecmp(p, "PERMIT", 6) == 0))
        return SMTPD_CHECK_OK;
    if (wl == 5 && strncasecmp(p, "DUNNO", 5) == 0)
        return SMTPD_CHECK_DUNNO;
    if (wl == 6 && strncasecmp(p, "REJECT", 6) == 0)
        return reject_with(c, smtpd_params.access_reject_code, "5.7.1", object, class,
                           *text ? text : "Access denied");
    if (wl == 5 && strncasecmp(p, "DEFER", 5) == 0)
        return reject_with(c, smtpd_params.access_defer_code, "4.7.1", object, class,
                           *text ? text : "Access denied");
    if (wl >= 1 && strspn(p, "0123456789") == wl) {
        int code = atoi(p);
        if (wl != 3 || (code / 100 != 4 && code / 100 != 5))
            return SMTPD_CHECK_OK;          /* numeric non-error: like OK */
        /* "NNN [X.Y.Z] text": keep the given enhanced code when present */
        const char *dsn = code >= 500 ? "5.7.1" : "4.7.1";
        char given[16];
        size_t dl = strcspn(text, " \t");
        if (dl >= 5 && dl < sizeof(given) && text[0] == (char)('0' + code / 100)
            && text[1] == '.') {
            memcpy(given, text, dl);
            given[dl] = '\0';
            dsn = given;
            text += dl;
            while (*text == ' ' || *text == '\t')
                text++;
        }
        strbuf_printf(c->reply, "%d %s <%s>: %s rejected: %s", code, dsn, object, class,
                      *text ? text : "Access denied");
        return SMTPD_CHECK_REJECT;
    }
    strbuf msg;
    strbuf_init(&msg);
    strbuf_printf(&msg, "unknown access table result \"%s\"", value);
    int rc = config_error(c, strbuf_str(&msg));
    strbuf_release(&msg);
    return rc;
}

/* Look up each key in turn; the first hit decides. */
static int access_lookup_keys(struct check_ctx *c, const char *spec, char **keys, int nkeys,
                              const char *object, const char *class)
{
    maps *t = table_get(spec);
    strbuf value;
    int rc = SMTPD_CHECK_DUNNO;

    if (t == NULL)
        return config_error(c, "access table unavailable");
    strbuf_init(&value);
    for (int i = 0; i < nkeys; i++) {
        int found = maps_lookup(t, keys[i], &value);
        if (found < 0) {
            strbuf_set_str(c->reply, "451 4.3.0 Temporary lookup failure");
            rc = SMTPD_CHECK_REJECT;
            break;
        }
        if (found == 1) {
            rc = access_result(c, strbuf_str(&value), object, class);
            break;
        }
    }
    strbuf_release(&value);
    return rc;
}

static void push_key(char ***keys, int *n, const char *k, size_t len)
{
    *keys = xrealloc(*keys, (size_t)(*n + 1) * sizeof(**keys));
    (*keys)[(*n)++] = xstrndup(k, len);
}

/* Postfix's parent-domain search: a.b.c, b.c, c. */
static void push_domain_keys(char ***keys, int *n, const char *domain)
{
    for (const char *d = domain; d && *d; ) {
        push_key(keys, n, d, strlen(d));
        d = strchr(d, '.');
        if (d)
            d++;
    }
}

static void free_keys(char **keys, int n)
{
    for (int i = 0; i < n; i++)
        xfree(keys[i]);
    xfree(keys);
}

/* access(5) order for an address: user@domain, domain and parents, user@. */
static int check_address_access(struct check_ctx *c, const char *spec, const char *addr,
                                 const char *class)
{
    char **keys = NULL;
    int n = 0;
    if (*addr == '\0') {
        push_key(&keys, &n, "<>", 2);       /* the null sender */
    } else {
        push_key(&keys, &n, addr, strlen(addr));
        const char *at = strrchr(addr, '@');
        if (at) {
            push_domain_keys(&keys, &n, at + 1);
            push_key(&keys, &n, addr, (size_t)(at - addr) + 1);
        }
    }
    int rc = access_lookup_keys(c, spec, keys, n, addr, class);
    free_keys(keys, n);
    return rc;
}

/* Client: name and parents, then address and its leading octets. */
static int check_client_access(struct check_ctx *c, const char *spec)
{
    struct smtpd_state *st = c->st;
    char **keys = NULL;
    int n = 0;
    if (strcmp(st->client_name, "unknown") != 0)
        push_domain_keys(&keys, &n, st->client_name);
    push_key(&keys, &n, st->client_addr, strlen(st->client_addr));
    if (strchr(st->client_addr, ':') == NULL) {
        for (const char *dot = strrchr(st->client_addr, '.'); dot != NULL && dot > st->client_addr;) {
            push_key(&keys, &n, st->client_addr, (size_t)(dot - st->client_addr));
            const char *prev = dot - 1;
            while (prev > st->client_addr && *prev != '.')
                prev--;
            dot = *prev == '.' ? prev : NULL;
        }
    }
    int rc = access_lookup_keys(c, spec, keys, n, st->namaddr, "Client host");
    free_keys(keys, n);
    return rc;
}

static int check_helo_access(struct check_ctx *c, const char *spec)
{
    if (c->st->helo_name == NULL)
        return SMTPD_CHECK_DUNNO;
    char **keys = NULL;
    int n = 0;
    push_domain_keys(&keys, &n, c->st->helo_name);
    int rc = access_lookup_keys(c, spec, keys, n, c->st->helo_name, "Helo command");
    free_keys(keys, n);
    return rc;
}

/* ---- client certificates ----------------------------------------------- */

/* The fingerprints of the client certificate, as lookup keys: the
 * certificate's, then its public key's (Postfix's search order).  0 keys
 * without a certificate. */
static int ccert_keys(struct smtpd_state *st, char ***keys)
{
    int n = 0;
    const char *cert = smtpd_tls_ccert_fingerprint(st);
    const char *pkey = smtpd_tls_ccert_pkey_fingerprint(st);
    *keys = NULL;
    if (cert)
        push_key(keys, &n, cert, strlen(cert));
    if (cert && pkey)
        push_key(keys, &n, pkey, strlen(pkey));
    return n;
}

static int check_ccert_access(struct check_ctx *c, const char *spec)
{
    char **keys;
    int n = ccert_keys(c->st, &keys);
    if (n == 0)
        return SMTPD_CHECK_DUNNO;
    const char *cn = tls_conn_peer_cn(c->st->tls);
    int rc = access_lookup_keys(c, spec, keys, n, *cn ? cn : c->st->namaddr,
                                "Client certificate");
    free_keys(keys, n);
    return rc;
}

static int permit_tls_clientcerts(struct check_ctx *c)
{
    const char *spec = config_str("relay_clientcerts");
    char **keys;
    int n, rc = SMTPD_CHECK_DUNNO;

    if (*spec == '\0' || (n = ccert_keys(c->st, &keys)) == 0)
        return SMTPD_CHECK_DUNNO;
    maps *t = table_get(spec);
    if (t == NULL) {
        free_keys(keys, n);
        return config_error(c, "relay_clientcerts cannot be opened");
    }
    strbuf value;
    strbuf_init(&value);
    for (int i = 0; i < n && rc == SMTPD_CHECK_DUNNO; i++) {
        int found = maps_lookup(t, keys[i], &value);
        if (found < 0) {
            strbuf_set_str(c->reply, "451 4.3.0 Temporary lookup failure");
            rc = SMTPD_CHECK_REJECT;
        } else if (found == 1) {
            rc = SMTPD_CHECK_OK;
        }
    }
    strbuf_release(&value);
    free_keys(keys, n);
    return rc;
}

/* ---- DNS --------------------------------------------------------------- */

/* 1 the domain has MX or address records, 0 it does not exist or has none,
 * -1 temporary failure. */
static int domain_exists(const char *domain)
{
    static const int types[] = { ns_t_mx, ns_t_a, ns_t_aaaa };
    unsigned char answer[1024];
    int temp = 0;

    /* address literals need no DNS */
    if (domain[0] == '[')
        return 1;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        int len = res_query(domain, ns_c_in, types[i], answer, sizeof(answer));
        if (len >= (int)sizeof(HEADER)) {
            const HEADER *h = (const HEADER *)answer;
            if (ntohs(h->ancount) > 0)
                return 1;
            continue;
        }
        if (len > 0)
            continue;
        if (h_errno == HOST_NOT_FOUND)
            return 0;           /* NXDOMAIN: no other type will exist */
        if (h_errno == TRY_AGAIN || h_errno == NO_RECOVERY)
            temp = 1;
    }
    return temp ? -1 : 0;
}

/* ---- SASL sender ownership --------------------------------------------- */

/* reject_*sender_login_mismatch: smtpd_sender_login_maps names the SASL
 * logins owning a MAIL FROM address (user@domain, user for local domains,
 * @domain).  check_auth: a logged-in client must own the sender;
 * check_unauth: a sender with an owner needs a login. */
static int sender_login_mismatch(struct check_ctx *c, int check_auth, int check_unauth)
{
    struct smtpd_state *st = c->st;
    const char *spec = config_str("smtpd_sender_login_maps");
    strbuf owners;
    int rc = SMTPD_CHECK_DUNNO;

    if (st->sender == NULL || *st->sender == '\0')
        return SMTPD_CHECK_DUNNO;
    if (*spec == '\0')
        return config_error(c, "reject_sender_login_mismatch without smtpd_sender_login_maps");
    maps *m = table_get(spec);
    if (m == NULL)
        return config_error(c, "smtpd_sender_login_maps cannot be opened");
    strbuf_init(&owners);
    const char *d = domain_of(st->sender);
    int found = d && !smtpd_is_local_domain(d)
        ? maps_lookup_addr_ex(m, st->sender, smtpd_params.recipient_delimiter,
                              MAPS_ADDR_NO_USER, &owners)
        : maps_lookup_addr(m, st->sender, smtpd_params.recipient_delimiter, &owners);
    if (found < 0) {
        strbuf_set_str(c->reply, "451 4.3.0 Temporary lookup failure");
        rc = SMTPD_CHECK_REJECT;
    } else if (st->sasl_username != NULL && check_auth) {
        int owned = 0, n;
        char **names = config_list(found == 1 ? strbuf_str(&owners) : "", &n);
        for (int i = 0; i < n && !owned; i++)
            owned = strcasecmp(names[i], st->sasl_username) == 0;
        config_list_free(names);
        if (!owned) {
            strbuf_printf(c->reply, "553 5.7.1 <%s>: Sender address rejected: not owned "
                          "by user %s", st->sender, st->sasl_username);
            rc = SMTPD_CHECK_REJECT;
        }
    } else if (st->sasl_username == NULL && check_unauth && found == 1) {
        strbuf_printf(c->reply, "553 5.7.1 <%s>: Sender address rejected: not logged in",
                      st->sender);
        rc = SMTPD_CHECK_REJECT;
    }
    strbuf_release(&owners);
    return rc;
}

/* ---- the list evaluator ------------------------------------------------ */

static int eval_list(struct check_ctx *c, const char *list)
{
    struct smtpd_state *st = c->st;
    int n, rc = SMTPD_CHECK_DUNNO;
    char **words = config_list(list, &n);

    for (int i = 0; i < n && rc == SMTPD_CHECK_DUNNO; i++) {
        const char *w = words[i];
        const char *rcpt = c->rcpt;

        if (strcasecmp(w, "permit") == 0) {
            rc = SMTPD_CHECK_OK;
        } else if (strcasecmp(w, "reject") == 0) {
            rc = reject_with(c, smtpd_params.reject_code, "5.7.1", c->object, c->class,
                             "Access denied");
        } else if (strcasecmp(w, "defer") == 0) {
            rc = reject_with(c, smtpd_params.defer_code, "4.7.1", c->object, c->class,
                             "Access denied");
        } else if (strcasecmp(w, "permit_mynetworks") == 0) {
            strbuf err;
            strbuf_init(&err);
            int m = cidr_list_match(smtpd_params.mynetworks, st->client_addr, &err);
            if (m < 0)
                rc = config_error(c, "bad mynetworks entry");
            else if (m == 1)
                rc = SMTPD_CHECK_OK;
            strbuf_release(&err);
        } else if (strcasecmp(w, "permit_sasl_authenticated") == 0) {
            if (st->sasl_username != NULL)
                rc = SMTPD_CHECK_OK;
        } else if (strcasecmp(w, "permit_tls_clientcerts") == 0) {
            rc = permit_tls_clientcerts(c);
        } else if (strcasecmp(w, "permit_tls_all_clientcerts") == 0) {
            if (smtpd_tls_ccert_trusted(st))
                rc = SMTPD_CHECK_OK;
        } else if (strcasecmp(w, "reject_sender_login_mismatch") == 0) {
            rc = sender_login_mismatch(c, 1, 1);
        } else if (strcasecmp(w, "reject_authenticated_sender_login_mismatch") == 0) {
            rc = sender_login_mismatch(c, 1, 0);
        } else if (strcasecmp(w, "reject_unauthenticated_sender_login_mismatch") == 0) {
            rc = sender_login_mismatch(c, 0, 1);
        } else if (strcasecmp(w, "reject_unauth_destination") == 0
                   || strcasecmp(w, "defer_unauth_destination") == 0) {
            if (rcpt && !rcpt_is_auth_destination(rcpt)) {
                int defer = tolower((unsigned char)w[0]) == 'd';
                strbuf_printf(c->reply, "%d %s <%s>: Relay access denied",
                              defer ? smtpd_params.defer_code : smtpd_params.relay_reject_code,
                              defer ? "4.7.1" : "5.7.1", rcpt);
                rc = SMTPD_CHECK_REJECT;
            }
        } else if (strcasecmp(w, "permit_auth_destination") == 0) {
            if (rcpt && rcpt_is_auth_destination(rcpt))
                rc = SMTPD_CHECK_OK;
        } else if (strcasecmp(w, "reject_non_fqdn_sender") == 0) {
            if (st->sender && *st->sender && !addr_is_fqdn(st->sender))
                rc = reject_with(c, 504, "5.5.2", st->sender, "Sender address",
                                 "need fully-qualified address");
        } else if (strcasecmp(w, "reject_non_fqdn_recipient") == 0) {
            if (rcpt && !addr_is_fqdn(rcpt))
                rc = reject_with(c, 504, "5.5.2", rcpt, "Recipient address",
                                 "need fully-qualified address");
        } else if (strcasecmp(w, "reject_non_fqdn_helo_hostname") == 0) {
            if (st->helo_name && strchr(st->helo_name, '.') == NULL && st->helo_name[0] != '[')
                rc = reject_with(c, 504, "5.5.2", st->helo_name, "Helo command",
                                 "need fully-qualified hostname");
        } else if (strcasecmp(w, "reject_unknown_sender_domain") == 0) {
            const char *d = st->sender ? domain_of(st->sender) : NULL;
            if (d != NULL) {
                int e = domain_exists(d);
                if (e == 0)
                    rc = reject_with(c, smtpd_params.unknown_address_code, "4.1.8",
                                     st->sender, "Sender address", "Domain not found");
                else if (e < 0)
                    rc = reject_with(c, 450, "4.1.8", st->sender, "Sender address",
                                     "Domain not found");
            }
        } else if (is_access_restriction(w)) {
            if (i + 1 >= n) {
                rc = config_error(c, "access restriction without a table");
                break;
            }
            const char *spec = words[++i];
            if (strcasecmp(w, "check_client_access") == 0)
                rc = check_client_access(c, spec);
            else if (strcasecmp(w, "check_ccert_access") == 0)
                rc = check_ccert_access(c, spec);
            else if (strcasecmp(w, "check_helo_access") == 0)
                rc = check_helo_access(c, spec);
            else if (strcasecmp(w, "check_sender_access") == 0)
                rc = st->sender ? check_address_access(c, spec, st->sender, "Sender address")
                                : SMTPD_CHECK_DUNNO;
            else if (rcpt)
                rc = check_address_access(c, spec, rcpt, "Recipient address");
        } else {
            strbuf msg;
            strbuf_init(&msg);
            strbuf_printf(&msg, "unknown smtpd restriction: \"%s\"", w);
            rc = config_error(c, strbuf_str(&msg));
            strbuf_release(&msg);
        }
    }
    config_list_free(words);
    return rc;
}

/* Look rcpt up (lowercased) in a table list: 1 found, 0 not, -1 error. */
static int lookup_recipient(const char *spec, const char *rcpt, int flags)
{
    maps *t = table_get(spec);
    if (t == NULL)
        return -1;
    /* Local parts are matched case-insensitively, as local delivery does. */
    char *key = xstrdup(rcpt);
    for (char *c = key; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    strbuf value;
    strbuf_init(&value);
    int found = maps_lookup_addr_ex(t, key, smtpd_params.recipient_delimiter, flags, &value);
    strbuf_release(&value);
    xfree(key);
    return found;
}

/* Postfix's smtpd_reject_unlisted_recipient: a recipient in a local domain
 * must be in local_recipient_maps, one in a virtual alias domain in
 * virtual_alias_maps; an address virtual_alias_maps knows is always fine. */
int smtpd_check_local_recipient(struct smtpd_state *st, const char *rcpt, strbuf *reply)
{
    int local = rcpt_is_local(rcpt);
    int found;

    if (!smtpd_params.reject_unlisted_recipient)
        return SMTPD_CHECK_DUNNO;
    if (*smtpd_params.virtual_alias_maps != '\0') {
        found = lookup_recipient(smtpd_params.virtual_alias_maps, rcpt,
                                 local ? 0 : MAPS_ADDR_NO_USER);
        if (found < 0)
            goto temp_fail;
        if (found == 1)
            return SMTPD_CHECK_DUNNO;
    }
    if (local && *smtpd_params.local_recipient_maps != '\0') {
        found = lookup_recipient(smtpd_params.local_recipient_maps, rcpt, 0);
        if (found < 0)
            goto temp_fail;
        if (found == 0) {
            strbuf_printf(reply, "%d 5.1.1 <%s>: Recipient address rejected: User unknown in local recipient table",
                          smtpd_params.unknown_local_code, rcpt);
            return SMTPD_CHECK_REJECT;
        }
    } else if (!local && rcpt_is_virtual_alias_domain(rcpt)) {
        strbuf_printf(reply, "%d 5.1.1 <%s>: Recipient address rejected: User unknown in virtual alias table",
                      smtpd_params.unknown_local_code, rcpt);
        return SMTPD_CHECK_REJECT;
    }
    return SMTPD_CHECK_DUNNO;
temp_fail:
    strbuf_set_str(reply, "451 4.3.0 Temporary lookup failure");
    return SMTPD_CHECK_REJECT;
}

int smtpd_check_rcpt(struct smtpd_state *st, const char *rcpt, strbuf *reply)
{
    struct check_ctx c = { .st = st, .rcpt = rcpt, .reply = reply };
    const struct {
        const char *name, *list, *object, *class;
    } lists[] = {
        { "smtpd_client_restrictions", smtpd_params.client_restrictions, st->namaddr, "Client host" },
        { "smtpd_helo_restrictions", smtpd_params.helo_restrictions,
          st->helo_name ? st->helo_name : "", "Helo command" },
        { "smtpd_sender_restrictions", smtpd_params.sender_restrictions,
          st->sender ? st->sender : "", "Sender address" },
        { "smtpd_relay_restrictions", smtpd_params.relay_restrictions, rcpt, "Recipient address" },
        { "smtpd_recipient_restrictions", smtpd_params.recipient_restrictions, rcpt, "Recipient address" },
    };

    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        c.list_name = lists[i].name;
        c.object = lists[i].object;
        c.class = lists[i].class;
        if (eval_list(&c, lists[i].list) == SMTPD_CHECK_REJECT)
            return SMTPD_CHECK_REJECT;
    }
    return smtpd_check_local_recipient(st, rcpt, reply);
}
