/*
 * log.c - one line per event, to a file, syslog or stderr.
 * See log.h for the format and contract.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

int log_verbose;

enum sink { SINK_STDERR, SINK_FILE, SINK_SYSLOG };

static enum sink log_sink = SINK_STDERR;
static int log_fd = -1;
static int log_copy_stderr;
static int log_fatal_status = 1;
static char log_prog[64] = "postern";
static char log_name[64] = "postern";
static char log_host[256];
static int log_in_fatal;

void log_open(const char *program)
{
    const char *slash = strrchr(program, '/');
    snprintf(log_prog, sizeof(log_prog), "%s", slash ? slash + 1 : program);
    if (log_host[0] == '\0') {
        if (gethostname(log_host, sizeof(log_host)) != 0)
            snprintf(log_host, sizeof(log_host), "localhost");
        log_host[sizeof(log_host) - 1] = '\0';
        char *dot = strchr(log_host, '.');
        if (dot)
            *dot = '\0';
    }
}

void log_set_syslog_name(const char *name)
{
    snprintf(log_name, sizeof(log_name), "%s", name);
}

void log_set_hostname(const char *name)
{
    snprintf(log_host, sizeof(log_host), "%s", name);
    char *dot = strchr(log_host, '.');
    if (dot)
        *dot = '\0';
}

const char *log_program(void)
{
    return log_prog;
}

int log_use_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    if (log_fd >= 0)
        close(log_fd);
    log_fd = fd;
    log_sink = SINK_FILE;
    return 0;
}

void log_use_syslog(void)
{
    static char tag[140];
    snprintf(tag, sizeof(tag), "%s/%s", log_name, log_prog);
    openlog(tag, LOG_PID | LOG_NDELAY, LOG_MAIL);
    log_sink = SINK_SYSLOG;
}

void log_use_stderr(void)
{
    log_sink = SINK_STDERR;
}

void log_also_stderr(int on)
{
    log_copy_stderr = on;
}

void log_set_fatal_status(int status)
{
    log_fatal_status = status;
}

static void log_emit(int priority, const char *prefix, const char *fmt, va_list ap)
{
    int saved_errno = errno;
    char text[4096];
    vsnprintf(text, sizeof(text), fmt, ap);
    for (char *p = text; *p; p++)
        if ((unsigned char) *p < 0x20 || *p == 0x7f)
            *p = '?';

    if (log_sink == SINK_SYSLOG) {
        syslog(priority, "%s%s", prefix, text);
    }
    if (log_sink != SINK_SYSLOG || log_copy_stderr) {
        char line[4600];
        time_t now = time(NULL);
        struct tm tm;
        char stamp[32];
        localtime_r(&now, &tm);
        strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm);
        int n = snprintf(line, sizeof(line), "%s %s %s/%s[%ld]: %s%s\n",
                         stamp, log_host[0] ? log_host : "localhost",
                         log_name, log_prog, (long) getpid(), prefix, text);
        if (n < 0)
            n = 0;
        if ((size_t) n >= sizeof(line)) {
            n = sizeof(line) - 1;
            line[n - 1] = '\n';
        }
        if (log_sink == SINK_FILE && log_fd >= 0) {
            ssize_t w = write(log_fd, line, (size_t) n);
            (void) w;
        }
        if (log_sink == SINK_STDERR || log_copy_stderr) {
            ssize_t w = write(2, line, (size_t) n);
            (void) w;
        }
    }
    errno = saved_errno;
}

#define LOG_BODY(prio, prefix) do { \
        va_list ap; va_start(ap, fmt); log_emit(prio, prefix, fmt, ap); va_end(ap); \
    } while (0)

void log_info(const char *fmt, ...)    { LOG_BODY(LOG_INFO, ""); }
void log_warning(const char *fmt, ...) { LOG_BODY(LOG_WARNING, "warning: "); }
void log_error(const char *fmt, ...)   { LOG_BODY(LOG_ERR, "error: "); }

void log_debug(const char *fmt, ...)
{
    if (log_verbose > 0)
        LOG_BODY(LOG_DEBUG, "");
}

void log_fatal(const char *fmt, ...)
{
    if (!log_in_fatal) {
        log_in_fatal = 1;
        LOG_BODY(LOG_CRIT, "fatal: ");
    }
    fflush(NULL);
    _exit(log_fatal_status);
}

void log_panic(const char *fmt, ...)
{
    LOG_BODY(LOG_CRIT, "panic: ");
    abort();
}
