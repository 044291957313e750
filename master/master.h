/*
 * master.h - the supervisor's internal interfaces (master/ only).
 *
 * The master keeps two lists: services (one per master.cf entry and, for an
 * inet entry without a host, per inet_interfaces address) and children (one
 * per live process it forked).  master.c owns the event loop, signals,
 * startup and shutdown; master_service.c turns master.cf into services with
 * open listeners and carries listeners over a reload; master_child.c forks,
 * tracks busy/idle, reaps, throttles and sends wakeups.
 *
 * Time is CLOCK_MONOTONIC milliseconds (master_now_ms) throughout.
 */
#ifndef POSTERN_MASTER_H
#define POSTERN_MASTER_H

#include <sys/types.h>
#include "master_cf.h"

struct master_svc {
    char *key;                  /* "name/type[/address]": identity across reloads */
    char *name;                 /* master.cf service column */
    char *type_name;            /* inet, unix */
    enum service_type type;
    char *sock_id;              /* "inet:[host]:port" or "unix:/path": the listener */
    char *unix_path;            /* unix socket path, NULL for inet */
    char *program;              /* absolute path of the command */
    char **argv;                /* full child argv, NULL-terminated */
    int listen_fd;
    int status_rd, status_wr;   /* the status pipe; children get status_wr as fd 4 */
    unsigned char status_part[8];       /* a record read only in part */
    size_t status_part_len;             /* (struct server_status_msg: 8 bytes) */
    int maxproc;                /* resolved: 0 = unlimited */
    int wakeup;                 /* seconds, 0 = none */
    int wakeup_conditional;
    int total;                  /* live, non-retiring children */
    int idle;                   /* of which idle */
    long long throttle_until;   /* ms; 0 = not throttled */
    long long next_wakeup;      /* ms */
    int line;                   /* master.cf line, for messages */
    int borrowed;               /* fds shared with the pre-reload list (build only) */
    struct master_svc *next;
};

struct master_child {
    pid_t pid;
    struct master_svc *svc;     /* NULL once its service is gone (reload) */
    char *program;              /* for the death message */
    int idle;                   /* counted in svc->idle */
    int reported;               /* sent at least one status message */
    int retiring;               /* told to exit: not counted, no throttle */
    long long started;          /* ms */
    struct master_child *next;
};

extern struct master_svc *master_services;
extern struct master_child *master_children;

long long master_now_ms(void);

/* master_service.c */
/* Build services from the loaded config and master.cf, reusing listeners of
 * `old` whose sock_id matches (they are moved, and set to -1 in old).
 * Returns 0, or -1 with err (e.g. a bind error) -- nothing is leaked then. */
int master_services_build(struct master_service *cf, struct master_svc *old,
                          struct master_svc **out, strbuf *err);
/* Close listeners and pipes and free a list. */
void master_services_free(struct master_svc *list);
/* Create pid/, private/, public/ and the queue tree under queue_directory. */
int master_dirs_create(strbuf *err);

/* master_child.c */
void master_child_spawn(struct master_svc *svc);
void master_child_read_status(struct master_svc *svc);
void master_child_reap(void);
/* Mark every child retiring, detach it from its service, SIGTERM it. */
void master_child_retire_all(void);
/* SIGTERM everyone and wait; SIGKILL what remains after `grace_ms`, or,
 * while a queue manager still holds its lock on active/ (it drains: waits
 * for running deliveries), after `drain_ms`.  Reaps all. */
void master_child_stop_all(int grace_ms, int drain_ms, int sigfd);
void master_wakeup_send(struct master_svc *svc);
int master_child_count(void);

#endif
