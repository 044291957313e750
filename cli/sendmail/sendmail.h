/*
 * sendmail.h - the pieces of the sendmail command shared between its files.
 *
 * sendmail.c        options, program names (mailq, newaliases), modes
 * sendmail_submit.c the postdrop child and the message reader (-t, -i)
 * sendmail_smtp.c   -bs: SMTP on stdin/stdout, each message via postdrop
 *
 * Contract: every failure is one line "sendmail: fatal: TEXT" on stderr
 * and a sysexits.h exit status (sm_fatal); nothing is acknowledged (exit
 * 0, or 250 in -bs) before postdrop exited 0, i.e. the maildrop file and
 * its directory entry are on disk.
 */
#ifndef POSTERN_CLI_SENDMAIL_H
#define POSTERN_CLI_SENDMAIL_H

#include <stdio.h>
#include <sys/types.h>
#include "strbuf.h"

/* The envelope of one submission, in internal address form. */
struct sm_envelope {
    char *sender;               /* "" = null sender */
    char *fullname;             /* NULL = none */
    char *notify;               /* -N, upper case; NULL = none */
    char *ret;                  /* -R: FULL or HDRS; NULL = none */
    char *envid;                /* -V; NULL = none */
    int extract;                /* -t */
    int nrcpt;
    char **rcpts;
    char **rcpt_notify;         /* per recipient (-bs NOTIFY=), may be NULL */
    char **rcpt_orcpt;          /* per recipient (-bs ORCPT=), may be NULL */
};

/* A running postdrop. */
struct sm_postdrop {
    pid_t pid;
    FILE *in;                   /* its stdin */
    int err_fd;                 /* its stderr */
    int failed;                 /* a write failed (postdrop went away) */
    char queued_as[64];         /* maildrop file name postdrop reported, "" = none */
};

extern const char *sm_config_dir;       /* chosen instance (NULL = default) */
extern int sm_verbose;

void sm_fatal(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
void sm_warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Path of a program in command_directory (malloc'd). */
char *sm_command_path(const char *program);

void sm_envelope_add_rcpt(struct sm_envelope *env, const char *addr,
                          const char *notify, const char *orcpt);
void sm_envelope_free_rcpts(struct sm_envelope *env);

/* Start postdrop and write the envelope records.  0, or -1 with err. */
int sm_postdrop_open(struct sm_postdrop *pd, const struct sm_envelope *env, strbuf *err);
/* One content line (without its line end). */
void sm_postdrop_line(struct sm_postdrop *pd, const char *line, size_t len);
/* complete: write E and wait for postdrop; 0 when it exited 0 (then
 * pd->queued_as is the maildrop file's name, from postdrop -v), else -1
 * with err (postdrop's own message) and *status its sysexits status.
 * !complete: close without E (postdrop keeps nothing) and reap it. */
int sm_postdrop_close(struct sm_postdrop *pd, int complete, strbuf *err, int *status);

/* Read the message on stdin and submit it (the default -bm mode). */
int sm_submit_stdin(struct sm_envelope *env, int dot_ends);

/* -bs */
int sm_smtp_session(struct sm_envelope *defaults);

/* Parse an address given by the user (-f, a recipient argument, MAIL FROM)
 * into internal form; "" and "<>" give "" when allow_null.  0 or -1. */
int sm_parse_address(const char *text, int allow_null, strbuf *out);

#endif
