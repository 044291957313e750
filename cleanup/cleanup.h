/*
 * cleanup.h - state shared by the pieces of the cleanup daemon.
 *
 * cleanup serves one "enqueue" conversation per connection (doc/internals.md):
 * it creates the queue file at once (the client learns the queue id), takes
 * the envelope record, then the content records, and at {end=1} commits the
 * queue file or throws it away and replies.
 *
 * Pieces:
 *   cleanup.c           main(), configuration, the conversation, the reply,
 *                       the qmgr wakeup (only with qmgr_watch_incoming = no).
 *   cleanup_envelope.c  sender/recipient rewriting (myorigin, canonical,
 *                       virtual aliases), duplicate elimination, R records.
 *   cleanup_message.c   content: line splitting, header section, added
 *                       headers, Bcc/extraction, body.
 *   cleanup_checks.c    header_checks / body_checks and their log lines.
 *
 * Contract between them: every piece records a failure with cleanup_fail()
 * (the first failure wins and decides the reply); after a failure nothing
 * more is written to the queue file, but the input is still read to the
 * end so the client gets its reply.  DISCARD and HOLD are flags, not
 * failures.
 */
#ifndef POSTERN_CLEANUP_H
#define POSTERN_CLEANUP_H

#include <stddef.h>
#include <time.h>

#include "addr_rewrite.h"
#include "maps.h"
#include "queue.h"
#include "strbuf.h"

/* Longest content line stored whole; longer ones are split (binary-safe L
 * records could hold more, but readers should not need unbounded memory). */
#define CLEANUP_MAX_LINE (1024 * 1024)

/* Settings read once per process (post_jail). */
struct cleanup_config {
    maps *header_checks;
    maps *body_checks;
    maps *canonical;
    maps *sender_canonical;
    maps *recipient_canonical;
    maps *virtual_alias;
    maps *sender_bcc;
    maps *recipient_bcc;
    const char *always_bcc;
    const char *override_options; /* receive_override_options */
    const char *masq_domains;
    const char *masq_exceptions;
    int masq_env_sender, masq_env_rcpt, masq_hdr_sender, masq_hdr_rcpt;
    domain_list *virtual_domains;
    domain_list *local_domains;  /* $myorigin, $mydestination */
    const char *myhostname;
    const char *myorigin;
    const char *mydomain;
    const char *delim;
    int append_dot_mydomain;
    int propagate_canonical;    /* propagate_unmatched_extensions */
    int propagate_virtual;
    long long message_size_limit;
    size_t header_size_limit;
    int hopcount_limit;
    size_t body_checks_size_limit;
    int virtual_recursion_limit;
    int virtual_expansion_limit;
    size_t dup_limit;
    const char *undisclosed_header;
    int ipc_timeout;
    int reuse_files;            /* queue_file_reuse_limit > 0: reuse recycle/ */
    int wake_qmgr;              /* qmgr_watch_incoming = no: qmgr needs a wakeup */
    char *config_error;         /* non-NULL: refuse every message (4.3.5) */
};

extern struct cleanup_config cleanup_cfg;

/* A logical header held while the header section is inspected. */
struct cleanup_header {
    strbuf raw;                 /* as received, folds as "\n" */
};

struct cleanup_seen_set;

enum cleanup_phase { PHASE_HEADERS, PHASE_HEADERS_RAW, PHASE_BODY };

struct cleanup_state {
    queue_writer *writer;
    const char *qid;
    time_t arrival;

    /* envelope */
    char *sender;               /* after rewriting */
    char *fullname;
    char *origin;
    char *client_name;
    char *client_addr;
    char *helo_name;
    char *protocol;
    int flag_local;
    int flag_extract;
    int no_mappings;            /* no_address_mappings */
    int no_checks;              /* no_header_body_checks */
    size_t nrcpt;
    char *first_rcpt;           /* for log lines */
    struct cleanup_seen_set *seen;
    struct addr_vec late_addr;   /* recipients found in the content, */
    struct addr_vec late_orcpt;  /* written after X ("" = none) */
    struct addr_vec late_notify;

    /* content */
    strbuf line;                /* partial line across data records */
    int line_is_piece;          /* it continues a line split at 1 MiB */
    long long size;             /* content bytes counted with CRLF */
    int content_started;
    enum cleanup_phase phase;
    struct cleanup_header *headers;
    size_t nheaders, headers_cap;
    strbuf cur_header;          /* header being accumulated */
    int have_cur_header;
    size_t header_bytes;
    int seen_from, seen_date, seen_msgid, seen_to_cc;
    int hops;
    struct addr_vec extract_plain;   /* To/Cc/Bcc values (extract) */
    struct addr_vec extract_resent;  /* Resent-To/Cc/Bcc values */
    size_t body_checked;

    /* outcome */
    int status;                 /* 0 ok, 4 or 5 */
    char dsn[16];
    strbuf reason;
    int failure_logged;         /* the failure already has its log line */
    int discard;
    int hold;
    strbuf scratch;
};

/* Record a failure (only the first one counts). */
void cleanup_fail(struct cleanup_state *st, int status, const char *dsn,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* 1 when content should still be written to the queue file. */
int cleanup_writing(const struct cleanup_state *st);
/* Write one content line (starting the content section when needed). */
void cleanup_out_line(struct cleanup_state *st, const char *line, size_t len);

/* cleanup_envelope.c */
void cleanup_envelope_init(struct cleanup_state *st);
void cleanup_envelope_free(struct cleanup_state *st);
/* 1 if domain is local ($myorigin or $mydestination). */
int cleanup_is_local(const char *domain, void *ctx);
/* Qualify a bare address with @$myorigin (and .$mydomain), in place. */
void cleanup_qualify(strbuf *addr);
/* Sender: qualify, sender_canonical_maps, canonical_maps; sets st->sender. */
void cleanup_set_sender(struct cleanup_state *st, const char *sender);
/* One recipient through qualify, canonical and virtual alias maps; after
 * duplicate elimination each result is written (late: after X). */
void cleanup_add_rcpt(struct cleanup_state *st, const char *addr,
                      const char *orcpt, const char *notify, int late);
/* Automatic BCC for the sender (always_bcc, sender_bcc_maps). */
void cleanup_add_sender_bcc(struct cleanup_state *st);
/* Write the late recipients (after content_end). */
void cleanup_write_late_rcpts(struct cleanup_state *st);
/* Header address rewriting: class 's' sender headers, 'r' recipient
 * headers.  Returns 1 and sets out when the value changed. */
int cleanup_rewrite_header_addrs(struct cleanup_state *st, int addr_class,
                                 const char *value, size_t len, strbuf *out);

/* cleanup_message.c */
void cleanup_message_init(struct cleanup_state *st);
void cleanup_message_free(struct cleanup_state *st);
void cleanup_message_data(struct cleanup_state *st, const char *data, size_t len);
void cleanup_message_end(struct cleanup_state *st);

/* cleanup_checks.c */
/* Apply header_checks to one logical header (raw, folds as "\n").
 * Returns the action taken that changes the output: CHECK_IGNORE (drop
 * it), CHECK_REPLACE (out = replacement) or CHECK_DUNNO; prepend gets text
 * to insert before it (CHECK_PREPEND) — both may be set. */
int cleanup_header_checks(struct cleanup_state *st, const char *raw, size_t len,
                          strbuf *out, strbuf *prepend);
int cleanup_body_checks(struct cleanup_state *st, const char *line, size_t len,
                        strbuf *out, strbuf *prepend);

#endif
