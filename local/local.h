/*
 * local.h - what the pieces of the local delivery agent share.
 *
 * local.c        main(), the delivery conversation with qmgr, results
 * local_resolve.c  one recipient: aliases, :include:, .forward, users,
 *                  duplicate suppression, dispatch to the deliverers
 * local_mailbox.c  mbox (with locking) and Maildir, also /file deliveries
 * local_command.c  |command deliveries
 * local_forward.c  non-local addresses: a new message through cleanup
 * local_owner.c    failures inside an owner-NAME list, reported to the owner
 * local_copy.c     the message as written to a destination
 * local_user.c     passwd lookups and the effective-id switch
 *
 * Contract: a deliverer reports every outcome through local_result_add()
 * and never returns with a changed effective identity.  Statuses rank
 * sent < bounced < deferred: a recipient whose expansion had one deferred
 * destination is deferred as a whole (retried later; the destinations that
 * already got it may get it twice, never zero times) -- except that
 * deferred mailbox deliveries of an expansion that otherwise got through
 * are resubmitted as a new message to those users (local_resolve.c), so
 * the recipient is done and nobody gets a second copy.
 */
#ifndef POSTERN_LOCAL_H
#define POSTERN_LOCAL_H

#include <sys/types.h>
#include "delivery_request.h"
#include "queue.h"
#include "strbuf.h"

enum local_status { LOCAL_SENT = 0, LOCAL_BOUNCE = 1, LOCAL_DEFER = 2 };

/* Where a command or file item came from (allow_mail_to_commands/files). */
enum local_source { SOURCE_ALIAS = 1, SOURCE_FORWARD = 2, SOURCE_INCLUDE = 4 };

/* A passwd entry, or the identity a command/file delivery runs as. */
struct local_user {
    char *name;
    uid_t uid;
    gid_t gid;
    char *home;
    char *shell;
};

/* Outcome of one recipient, accumulated over its expansion. */
struct local_result {
    enum local_status status;
    int ndelivered;
    int ndeferred;              /* deferred destinations */
    int nreasons;               /* distinct success texts in successes */
    strbuf dsn;
    strbuf reason;              /* of the worst failure */
    strbuf successes;           /* "delivered to ..., forwarded as ..." */
};

/* Destinations already handled for this message (duplicate filter). */
struct local_dup {
    char *key;
    enum local_status status;
    char *dsn;
    char *reason;
};

/* One delivery request from qmgr. */
struct local_request {
    const char *qid;
    int queue_fd;
    struct queue_message msg;
    const char *sender;         /* envelope sender ("" = <>) */
    char **delivered_to;        /* lowercased Delivered-To: values */
    int ndelivered_to;
    struct local_dup *dups;
    int ndups;
    int header_error;           /* the content could not be read */
};

/* A permanent failure in the expansion of a list that has owner-NAME. */
struct local_owner_failure {
    char *owner;                /* owner-NAME@$myorigin */
    char *dsn;
    char *reason;
};

/* One recipient being resolved. */
struct local_attempt {
    struct local_request *req;
    const char *rcpt;           /* as given by qmgr */
    const char *orcpt;          /* original recipient, or rcpt */
    char *local_part;           /* lowercased, with extension */
    char *extension;            /* "" if none */
    char *domain;
    const char *sender;         /* sender for this expansion (owner-NAME) */
    const char *owner;          /* "owner-NAME" while NAME's expansion runs */
    const char *delivered_to;   /* address for the Delivered-To: header */
    struct local_result result;
    char **alias_stack;         /* names being alias-expanded (loop guard) */
    int nalias_stack;
    char **forward_stack;       /* users whose .forward is being expanded */
    int nforward_stack;
    int ndestinations;          /* cap on the size of one expansion */
    char **forward_addr;        /* addresses to resubmit through cleanup */
    char **forward_sender;      /* ... and the sender of each */
    int nforward;
    char **retry_name;          /* users whose mailbox delivery deferred */
    char **retry_sender;        /* ... and the sender of each */
    int nretry;
    struct local_owner_failure *owner_failures;     /* for local_owner.c */
    int nowner_failures;
};

/* local.c */
extern int local_is_root;               /* root instance: switch identities */
extern struct local_user local_default_privs;
extern struct local_user local_instance_user;
void local_result_add(struct local_attempt *a, enum local_status status,
                      const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* local_resolve.c */
/* local_sync.c: group commit of Maildir deliveries over pipelined requests */
void local_sync_enable(int on);
int local_sync_enabled(void);
void local_sync_file_later(int fd, const char *tmp, const char *path, const char *dir);
void local_hold_answer(const char *qid, const struct delivery_times *times, const char *rcpt,
                       const char *orcpt, const char *dsn, const char *status,
                       const char *reason);
void local_hold_done(void);
int local_held_requests(void);
void local_release_answers(struct delivery_request *dr);
void local_aliases_open(void);          /* per request: reopened if changed */
void local_aliases_close(void);
void local_resolve(struct local_attempt *a);
/* Expand forward_path / mailbox_command for this recipient and user. */
void local_expand(strbuf *out, const char *raw, const struct local_attempt *a,
                  const struct local_user *pw, const char *extension);
/* Record the outcome of one destination: result plus duplicate filter. */
void local_report(struct local_attempt *a, const char *key, enum local_status status,
                  const char *dsn, const char *reason);
/* Duplicate filter: 1 and the result replayed when key was seen; 0 after
 * remembering key (call local_dup_record() with the outcome). */
int local_dup_check(struct local_attempt *a, const char *key);
void local_dup_record(struct local_attempt *a, const char *key,
                      enum local_status status, const char *dsn, const char *reason);

/* local_mailbox.c */
void local_deliver_mailbox(struct local_attempt *a, const char *user,
                           const struct local_user *pw);
void local_deliver_file(struct local_attempt *a, const char *path,
                        const struct local_user *as);

/* local_command.c */
void local_deliver_command(struct local_attempt *a, const char *command,
                           const struct local_user *as);

/* local_forward.c */
void local_owner_failure_add(struct local_attempt *a, const char *dsn, const char *reason);
void local_owner_report(struct local_attempt *a);
void local_forward_add(struct local_attempt *a, const char *address);
void local_forward_flush(struct local_attempt *a);

/* local_copy.c */
#define COPY_MBOX        0x01   /* From_ line, >From quoting, blank line after */
#define COPY_RETURN_PATH 0x02   /* prepend Return-Path: <sender> */
/* Write the message (Delivered-To always) to fd.  Returns 0, or an errno
 * value; a queue file problem returns EIO with the reason in why.  limit > 0
 * makes a copy longer than limit bytes fail with EFBIG. */
int local_copy_message(struct local_attempt *a, int fd, int flags,
                       long long limit, strbuf *why);
/* Scan the headers for Delivered-To: (fills req->delivered_to). */
int local_scan_headers(struct local_request *req, strbuf *why);

/* local_user.c */
int local_user_lookup(const char *name, struct local_user *u);     /* 1/0 */
int local_user_by_uid(uid_t uid, struct local_user *u);            /* 1/0 */
void local_user_copy(struct local_user *dst, const struct local_user *src);
void local_user_free(struct local_user *u);
/* Switch the effective uid/gid (root instance only; no-op otherwise). */
int local_become(uid_t uid, gid_t gid);
void local_unbecome(void);
/* A name safe as a mailbox file or directory name. */
int local_user_name_safe(const char *name);

#endif
