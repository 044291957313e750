/*
 * log.c - one line per event, to a file, syslog or stderr.
 * See log.h for the format and contract.
 *
 * The pid in each line (and in the skeleton's status reports) comes from
 * log_pid(), which calls getpid() once per process: a pthread_atfork()
 * child handler forgets the cached value in every child of fork(), so a
 * child never logs its parent's pid.  (vfork/posix_spawn children run no
 * handlers, but they only exec; nothing in postern logs from one.)
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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
static pid_t log_pid_cache;             /* 0: not read yet, or forked since */

static void log_forget_pid(void)
{
    __atomic_store_n(&log_pid_cache, 0, __ATOMIC_RELAXED);
}

pid_t log_pid(void)
{
    pid_t pid = __atomic_load_n(&log_pid_cache, __ATOMIC_RELAXED);
    if (pid == 0) {
        static int registered;
        if (!__atomic_exchange_n(&registered, 1, __ATOMIC_RELAXED))
            (void)pthread_atfork(NULL, NULL, log_forget_pid);
        pid = getpid();
        __atomic_store_n(&log_pid_cache, pid, __ATOMIC_RELAXED);
    }
    return pid;
}

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

/*
 * The file/stderr line is put together with plain copies, not snprintf:
 * every daemon writes a few lines per message.
 *
 * "Mon DD HH:MM:SS" of now, local time.  A busy daemon logs many lines per
 * second, so the text is made again only when the second changes.
 */
static const char *log_stamp(void)
{
    static time_t stamp_time = (time_t) -1;
    static char stamp[32];
    time_t now = time(NULL);
    if (now != stamp_time) {
        struct tm tm;
        localtime_r(&now, &tm);
        if (strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm) == 0)
            stamp[0] = '\0';
        stamp_time = now;
    }
    return stamp;
}

/* Append s to line (size bytes, *n used), keeping room for "\n" and NUL. */
static void log_line_add(char *line, size_t size, size_t *n, const char *s)
{
    size_t len = strlen(s);
    if (*n + len > size - 2)
        len = size - 2 - *n;
    memcpy(line + *n, s, len);
    *n += len;
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
        size_t n = 0;
        log_line_add(line, sizeof(line), &n, log_stamp());
        log_line_add(line, sizeof(line), &n, " ");
        log_line_add(line, sizeof(line), &n, log_host[0] ? log_host : "localhost");
        log_line_add(line, sizeof(line), &n, " ");
        log_line_add(line, sizeof(line), &n, log_name);
        log_line_add(line, sizeof(line), &n, "/");
        log_line_add(line, sizeof(line), &n, log_prog);
        char pid[32];
        char *p = pid + sizeof(pid);
        *--p = '\0';
        *--p = ' ';
        *--p = ':';
        *--p = ']';
        for (unsigned long v = (unsigned long) log_pid(); p > pid + 1; v /= 10) {
            *--p = (char) ('0' + v % 10);
            if (v < 10)
                break;
        }
        *--p = '[';
        log_line_add(line, sizeof(line), &n, p);
        log_line_add(line, sizeof(line), &n, prefix);
        log_line_add(line, sizeof(line), &n, text);
        line[n++] = '\n';                     /* log_line_add kept room for it */
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
