/*
 * postern.h - the postern command: shared pieces of its subcommands.
 *
 * `postern [-c DIR] [-v] COMMAND [ARGS]`.  Every subcommand is one row of
 * postern_commands[] (commands.c): {name, handler, usage}.  To add one, add
 * a row there and its handler in a file of its own (cmd_NAME.c).
 *
 * A handler gets (argc, argv) with argv[0] = the command name and returns
 * the process exit status (0 success, 1 failure).  Global options are
 * parsed before: postern_config_dir() is the chosen instance (-c, else
 * $POSTERN_CONFIG_DIR, else /etc/postern) and log_verbose counts -v.
 * postern_load_config() reads its main.cf or exits 1 saying why.
 *
 * Messages follow Postfix's tools: "postern: fatal: TEXT" on stderr and
 * exit 1 (postern_fatal), "postern: warning: TEXT" (postern_warning),
 * "postern: TEXT" (postern_info).
 */
#ifndef POSTERN_CLI_POSTERN_H
#define POSTERN_CLI_POSTERN_H

#include <sys/types.h>

struct postern_command {
    const char *name;
    int (*handler)(int argc, char **argv);
    const char *usage;          /* "start" or "init DIR [--port N]" */
};

extern const struct postern_command postern_commands[];

const char *postern_config_dir(void);
void postern_load_config(void);
/* Connect to queue_directory/public/SERVICE (showq, qmgr): fd or -1
 * (errno).  The only place a setgid postern uses its group. */
int postern_connect_public(const char *service, int timeout);
/* 1 when the caller is root or mail_owner (may change the queue). */
int postern_is_queue_admin(void);
/* The master's pid when it is running, else 0. */
pid_t postern_master_pid(void);

void postern_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void postern_warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void postern_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Subcommand handlers. */
int postern_cmd_start(int argc, char **argv);
int postern_cmd_stop(int argc, char **argv);
int postern_cmd_reload(int argc, char **argv);
int postern_cmd_status(int argc, char **argv);
int postern_cmd_check(int argc, char **argv);
int postern_cmd_init(int argc, char **argv);
int postern_cmd_map(int argc, char **argv);
int postern_cmd_queue(int argc, char **argv);
int postern_cmd_flush(int argc, char **argv);
int postern_cmd_conf(int argc, char **argv);

#endif
