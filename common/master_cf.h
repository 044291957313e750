/*
 * master_cf.h - the master.cf parser.
 *
 * Interface: master_cf_load(path, &list, err) parses Postfix's 8-column
 * format:  service type private unpriv chroot wakeup maxproc command+args
 * Lines starting with whitespace continue the previous entry; '#' starts a
 * comment at the beginning of a (logical) line.  `-` in a column means the
 * default: private y, unpriv y, chroot y (Postfix 3 defaults chroot n; we
 * follow the shipped master.cf which sets it per service), wakeup 0,
 * maxproc = default_process_limit.  A wakeup ending in '?' means "only when
 * the service is in use" (kept as wakeup_conditional).  Arguments of the
 * form `-o name=value` are collected in `overrides` (and also stay in argv,
 * which the master passes to the child verbatim); only the leading options
 * count (up to the first word not starting with '-'), so pipe-style
 * "argv=/bin/x -o y" arguments are not overrides.  For inet services '-' in
 * the private column means n (inet services cannot be private).
 *
 * type is one of inet, unix, fifo, pass.  For inet the service name is
 * [host:]port; host may be a bracketed IPv6 address.
 *
 * Contract: every error names the file and line, e.g.
 *   "/etc/postern/master.cf, line 12: bad maxproc field: x".
 * A duplicate service name+type is an error.  master_cf_free() releases all.
 */
#ifndef POSTERN_MASTER_CF_H
#define POSTERN_MASTER_CF_H

#include "strbuf.h"

enum service_type { SERVICE_INET, SERVICE_UNIX, SERVICE_FIFO, SERVICE_PASS };

struct master_service {
    char *name;                 /* "smtp", "127.0.0.1:2525", "cleanup" */
    enum service_type type;
    char *type_name;            /* "inet", "unix", ... */
    int private_;               /* 1 = private/ socket, 0 = public/ */
    int unpriv;                 /* 1 = drop to mail_owner */
    int chroot;                 /* 1 = chroot to queue_directory */
    int wakeup;                 /* seconds, 0 = none */
    int wakeup_conditional;     /* trailing '?' */
    int maxproc;                /* 0 = unlimited; -1 = "-" (use default) */
    int argc;                   /* command + args */
    char **argv;                /* NULL-terminated; argv[0] = command */
    int noverrides;
    char **override_names;      /* from -o name=value */
    char **override_values;
    int line;                   /* line in master.cf */
    struct master_service *next;
};

int master_cf_load(const char *path, struct master_service **list, strbuf *err);
/* Same, from a string (used by tests and fuzzers); name is used in errors. */
int master_cf_parse(const char *text, const char *name,
                    struct master_service **list, strbuf *err);
void master_cf_free(struct master_service *list);

#endif
