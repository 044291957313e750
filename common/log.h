/*
 * log.h - logging in Postfix's line format.
 *
 * Interface: log_open(program) once at start (program = "smtpd", "qmgr", ...);
 * log_use_syslog() / log_use_file(path) / log_use_stderr() choose the sink
 * (the daemon skeleton does this from maillog_file after reading main.cf;
 * before that, messages go to stderr).  log_info/warning/error/fatal/panic
 * and log_debug (printed only when log_verbose > 0, raised by each -v).
 *
 * Line format for the file and stderr sinks:
 *     Mon DD HH:MM:SS host syslog_name/program[pid]: text
 * with "warning: ", "error: ", "fatal: ", "panic: " prefixed to the text for
 * those levels, as Postfix does.  syslog uses facility mail and the tag
 * "syslog_name/program".
 *
 * Contract: log_fatal() exits with status 1 (75 if set with
 * log_set_fatal_status); log_panic() aborts.  Every call writes one line
 * with one write(2) (O_APPEND), so lines from concurrent processes never
 * interleave.  Newlines and control characters in the text are replaced by
 * '?' so a hostile peer cannot forge log lines.
 */
#ifndef POSTERN_LOG_H
#define POSTERN_LOG_H

#include <stdarg.h>
#include <sys/types.h>

extern int log_verbose;

void log_open(const char *program);
void log_set_syslog_name(const char *name);   /* default "postern" */
void log_set_hostname(const char *name);
int log_use_file(const char *path);           /* -1 on open failure */
void log_use_syslog(void);
void log_use_stderr(void);
void log_also_stderr(int on);                 /* copy lines to stderr too */
void log_set_fatal_status(int status);
const char *log_program(void);
/* This process's pid, from getpid() once per process (forgotten in each
 * child of fork(): a pthread_atfork child handler), for hot paths. */
pid_t log_pid(void);

void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void log_panic(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

#endif
