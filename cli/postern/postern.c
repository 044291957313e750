/*
 * postern.c - main() of the postern command: global options, dispatch.
 * See postern.h for the interface shared with the subcommands.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "ipc.h"
#include "log.h"
#include "master_lock.h"
#include "postern.h"
#include "strbuf.h"

static const char *postern_dir_arg;

/* When installed setgid setgid_group (as Postfix's postqueue is), the
 * group is dropped at once and raised only around connect() to a public/
 * socket; everything else runs with the caller's own privileges. */
static gid_t postern_saved_egid;
static int postern_setgid;

int postern_connect_public(const char *service, int timeout)
{
    strbuf path;
    strbuf_init(&path);
    strbuf_printf(&path, "%s/public/%s", config_str("queue_directory"), service);
    if (postern_setgid && setegid(postern_saved_egid) < 0)
        postern_fatal("setegid: %m");
    int fd = ipc_connect_unix(strbuf_str(&path), timeout);
    int saved = errno;
    if (postern_setgid && setegid(getgid()) < 0)
        postern_fatal("setegid: %m");
    strbuf_release(&path);
    errno = saved;
    return fd;
}

const char *postern_config_dir(void)
{
    return config_pick_dir(postern_dir_arg);
}

void postern_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("postern: fatal: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void postern_warning(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("postern: warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void postern_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("postern: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void postern_load_config(void)
{
    strbuf err;
    strbuf_init(&err);
    if (config_load(postern_config_dir(), &err) < 0)
        postern_fatal("%s", strbuf_str(&err));
    strbuf_release(&err);
}

pid_t postern_master_pid(void)
{
    strbuf path;
    strbuf_init(&path);
    master_lock_path(&path, config_str("queue_directory"));
    pid_t pid = master_lock_holder(strbuf_str(&path));
    strbuf_release(&path);
    return pid > 0 ? pid : 0;
}

static void postern_usage(void)
{
    fprintf(stderr, "usage: postern [-c config_dir] [-v] command [args]\ncommands:\n");
    for (const struct postern_command *c = postern_commands; c->name; c++)
        fprintf(stderr, "    postern %s\n", c->usage);
    exit(1);
}

int main(int argc, char **argv)
{
    int i;
    if (getegid() != getgid()) {
        postern_setgid = 1;
        postern_saved_egid = getegid();
        if (setegid(getgid()) < 0) {
            fputs("postern: fatal: cannot drop the setgid group\n", stderr);
            return 1;
        }
    }
    log_open("postern");
    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            postern_dir_arg = argv[++i];
        } else if (strcmp(argv[i], "-v") == 0) {
            log_verbose++;
        } else if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else {
            postern_usage();
        }
    }
    if (i >= argc)
        postern_usage();
    for (const struct postern_command *c = postern_commands; c->name; c++)
        if (strcmp(c->name, argv[i]) == 0)
            return c->handler(argc - i, argv + i);
    postern_warning("unknown command: %s", argv[i]);
    postern_usage();
}
