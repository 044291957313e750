/*
 * smtpd.h - the smtpd session state and the pieces of smtpd that share it.
 *
 * One `struct smtpd_state` lives for one SMTP session (one serve() call).
 * Files:
 *   smtpd.c          main(), parameters, the session loop and dispatch,
 *                    replies with error counting, connect/disconnect logs
 *   smtpd_cmd.c      HELO/EHLO, MAIL, RCPT, RSET, NOOP, HELP, VRFY, QUIT
 *   smtpd_data.c     DATA and BDAT: content to cleanup, size limits
 *   smtpd_check.c    the restriction engine (smtpd_*_restrictions, local
 *                    recipient check)
 *   smtpd_cleanup.c  the enqueue conversation with cleanup, Received:
 *   smtpd_peer.c     who the client is (address, verified hostname)
 *   smtpd_io.c       the byte stream (plain or TLS transport)
 *   smtpd_tls.c      STARTTLS, wrapper mode, the TLS server context
 *   smtpd_sasl.c     AUTH (Cyrus SASL), sender login maps
 *
 * Contract: the transaction part of the state (sender, recipients, cleanup
 * stream) is reset by smtpd_reset_transaction() after every DATA/BDAT LAST,
 * RSET, HELO/EHLO and error that aborts the transaction, so a failed
 * transaction never leaks into the next one.
 */
#ifndef POSTERN_SMTPD_H
#define POSTERN_SMTPD_H

#include <stddef.h>

#include "ipc.h"
#include "smtp_data.h"
#include "smtpd_io.h"
#include "strbuf.h"
#include "tls.h"

/* Parameters, read once after the configuration is loaded. */
struct smtpd_params {
    const char *myhostname;
    const char *banner;
    const char *mynetworks;
    const char *mydestination;
    const char *relay_domains;
    const char *local_recipient_maps;
    const char *virtual_alias_maps;
    const char *virtual_alias_domains;
    const char *recipient_delimiter;
    const char *client_restrictions;
    const char *helo_restrictions;
    const char *sender_restrictions;
    const char *relay_restrictions;
    const char *recipient_restrictions;
    const char *forbid_bare_newline;
    const char *forbid_bare_newline_exclusions;
    int timeout;
    int per_request_deadline;   /* smtpd_per_request_deadline */
    long long min_data_rate;    /* smtpd_min_data_rate */
    int ipc_timeout;
    long long recipient_limit;
    long long recipient_overshoot_limit;
    long long soft_error_limit;
    long long hard_error_limit;
    int error_sleep_time;
    long long message_size_limit;       /* 0 = no limit */
    long long queue_minfree;            /* 0 = no check */
    long long line_length_limit;
    int helo_required;
    int strict_rfc821_envelopes;
    int reject_unlisted_recipient;
    int peername_lookup;
    int disable_vrfy;
    int reject_code, defer_code, relay_reject_code, unknown_local_code,
        unknown_address_code, access_reject_code, access_defer_code;
};

extern struct smtpd_params smtpd_params;

struct smtpd_rcpt {
    char *addr;
    char *notify;               /* NULL when not given */
    char *orcpt;
};

/* Command statistics for the disconnect log line, in Postfix's order. */
enum smtpd_cmd_id {
    CMD_HELO, CMD_EHLO, CMD_STARTTLS, CMD_AUTH, CMD_MAIL, CMD_RCPT, CMD_DATA,
    CMD_BDAT, CMD_RSET, CMD_NOOP, CMD_VRFY, CMD_HELP, CMD_QUIT, CMD_UNKNOWN, CMD_COUNT
};

struct smtpd_state {
    smtpd_io io;

    /* the client */
    char *client_name;          /* verified hostname, or "unknown" */
    char *client_addr;          /* printable address, or "unknown" */
    char *namaddr;              /* "name[addr]" for logs */

    /* the session */
    char *helo_name;            /* NULL until HELO/EHLO */
    int esmtp;                  /* EHLO was used */
    char *sasl_username;        /* NULL until AUTH succeeded */
    char *sasl_method;
    int auth_failures;          /* for the growing 535 delay */
    void *sasl_conn;            /* sasl_conn_t, created on first use */
    int tls_active;             /* STARTTLS or wrapper mode handshake done */
    tls_conn *tls;
    const char *ccert_refusal;  /* smtpd_tls_req_ccert not met: the reason */
    const char *where;          /* last command, for "lost connection after" */
    int error_count;
    int last_reply_code;        /* of the latest smtpd_reply(), for stats */
    int quit;                   /* end the session after this reply */
    int forbid_bare_lf;         /* smtpd_forbid_bare_newline applies */
    int stats_ok[CMD_COUNT], stats_total[CMD_COUNT];

    /* the transaction: sender == NULL means no MAIL yet */
    char *sender;               /* "" for the null sender */
    char *envid;                /* xtext-decoded */
    char *ret;                  /* FULL or HDRS */
    int smtputf8;
    unsigned long long declared_size;
    struct smtpd_rcpt *rcpts;
    size_t nrcpt, rcpt_cap;
    int rcpt_attempts;
    long long rcpt_overshoot;   /* RCPTs refused for the recipient limit */
    int reply_not_error;        /* the next reply does not count as an error */

    /* cleanup conversation, open from the first accepted RCPT */
    ipc_stream *cleanup;
    char *queue_id;
    int envelope_sent;

    /* BDAT in progress */
    int bdat_active;
    struct smtp_data_decoder bdat;
    int bdat_failed;            /* size exceeded or cleanup failed: discard */
    strbuf content;             /* decoded content waiting to go to cleanup */
};

/* smtpd.c */
void smtpd_reply(struct smtpd_state *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void smtpd_reset_transaction(struct smtpd_state *st);
const char *smtpd_protocol_name(const struct smtpd_state *st);
/* Log "QID|NOQUEUE: reject: CMD from namaddr: REPLY; from=<> to=<> proto= helo=<>" */
void smtpd_log_reject(struct smtpd_state *st, const char *cmd, const char *reply,
                      const char *rcpt);

/* smtpd_cmd.c: each handler gets the argument text after the verb. */
void smtpd_cmd_helo(struct smtpd_state *st, const char *arg, int esmtp);
void smtpd_cmd_mail(struct smtpd_state *st, const char *arg);
void smtpd_cmd_rcpt(struct smtpd_state *st, const char *arg);
void smtpd_cmd_rset(struct smtpd_state *st, const char *arg);
void smtpd_cmd_noop(struct smtpd_state *st, const char *arg);
void smtpd_cmd_help(struct smtpd_state *st, const char *arg);
void smtpd_cmd_vrfy(struct smtpd_state *st, const char *arg);
void smtpd_cmd_quit(struct smtpd_state *st, const char *arg);

/* smtpd_data.c */
void smtpd_cmd_data(struct smtpd_state *st, const char *arg);
void smtpd_cmd_bdat(struct smtpd_state *st, const char *arg);

/* smtpd_check.c: return values of the checks */
enum { SMTPD_CHECK_DUNNO = 0, SMTPD_CHECK_OK = 1, SMTPD_CHECK_REJECT = 2 };
/* Run every restriction list and the local recipient check for RCPT TO.
 * On SMTPD_CHECK_REJECT the full reply ("550 5.1.1 <a>: ...") is in reply. */
int smtpd_check_rcpt(struct smtpd_state *st, const char *rcpt, strbuf *reply);
/* Only the local recipient table (VRFY). */
int smtpd_check_local_recipient(struct smtpd_state *st, const char *rcpt, strbuf *reply);
int smtpd_is_local_domain(const char *domain);
/* Open every table the restriction lists name (before the chroot). */
void smtpd_check_init(void);

/* smtpd_cleanup.c: 0 ok, -1 with the SMTP reply in reply. */
int smtpd_cleanup_open(struct smtpd_state *st, strbuf *reply);
int smtpd_cleanup_envelope(struct smtpd_state *st, strbuf *reply);
int smtpd_cleanup_content(struct smtpd_state *st, const char *data, size_t len, strbuf *reply);
int smtpd_cleanup_finish(struct smtpd_state *st, strbuf *reply);
void smtpd_cleanup_abort(struct smtpd_state *st);

/* smtpd_tls.c */
enum { SMTPD_TLS_NONE, SMTPD_TLS_MAY, SMTPD_TLS_ENCRYPT };
int smtpd_tls_parse_level(const char *value);
void smtpd_tls_server_params(struct tls_server_params *p, int mandatory);
void smtpd_tls_init(void);
int smtpd_tls_offer(const struct smtpd_state *st);
int smtpd_tls_required(const struct smtpd_state *st);
void smtpd_cmd_starttls(struct smtpd_state *st, const char *arg);
int smtpd_tls_wrapper_start(struct smtpd_state *st);
int smtpd_tls_wrappermode(void);
void smtpd_tls_end(struct smtpd_state *st);
void smtpd_tls_received(const struct smtpd_state *st, strbuf *out);
const char *smtpd_tls_ccert_refusal(const struct smtpd_state *st);
const char *smtpd_tls_ccert_fingerprint(const struct smtpd_state *st);
const char *smtpd_tls_ccert_pkey_fingerprint(const struct smtpd_state *st);
int smtpd_tls_ccert_trusted(const struct smtpd_state *st);

/* smtpd_sasl.c */
void smtpd_sasl_init(void);
void smtpd_sasl_reset(struct smtpd_state *st);
int smtpd_sasl_offered(void);
const char *smtpd_sasl_mechs(struct smtpd_state *st);
void smtpd_cmd_auth(struct smtpd_state *st, const char *arg);
void smtpd_sasl_received(const struct smtpd_state *st, strbuf *out);
int smtpd_sasl_auth_param(struct smtpd_state *st, const char *value);
int smtpd_sasl_decode(struct smtpd_state *st, const char *text, strbuf *out);

/* smtpd_peer.c */
void smtpd_peer_lookup(struct smtpd_state *st, int fd);

#endif
