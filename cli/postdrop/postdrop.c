/*
 * postdrop.c - put one message from sendmail into maildrop/ (Postfix's
 * postdrop, qmail-queue's lesson: tiny, privileged, trusts nothing).
 *
 *   postdrop [-c config_dir] [-v]  < record-stream
 *
 * Installed setgid setgid_group (postdrop) so that it, and only it, can add
 * files to maildrop/ (mode 1730, group postdrop: add but not list).
 *
 * Input: the maildrop record stream of doc/submission.md, records in the
 * queue-file framing of doc/queue-file.md (TYPE LENGTH ':' DATA '\n').
 * postdrop checks only the framing, that the record letters are those of a
 * maildrop file (V T S A N O R L E), that V comes first and E last with
 * nothing after it, and the size limits (content: message_size_limit,
 * counted with CRLF line ends; envelope records: 16 MiB in all).  It does
 * not look inside records: pickup parses them as untrusted input.
 *
 * Output: maildrop/QID, mode 0444 (pickup, mail_owner without
 * setgid_group, reads it as "other"), owned by the caller (the owner uid is
 * how pickup knows who submitted it).  Written as an unnamed file in
 * maildrop/ (O_TMPFILE, common/tmpfile_link.c), fsynced, linked to its
 * queue id (made from the arrival time and inode, queue_id_make) and
 * fsynced again for its link count; where that is not available, as
 * maildrop/.tmp-PID-N (O_EXCL), fsynced and renamed to its queue id (an
 * unnamed file that turns out not linkable is copied into such a file
 * first).  Then the directory is
 * fsynced; when maildrop/ cannot be opened for reading (1730: the group
 * may not list it) the whole file system is synced instead (syncfs).  Then
 * pickup is woken through public/pickup ({request=wakeup}; failure to wake
 * it is no error: master wakes it every minute).
 *
 * Contract: exit 0 only after the file and its name are on disk; then
 * "postdrop: queued as maildrop/QID" with -v.  Any failure removes the
 * temporary file (also on SIGINT/SIGTERM/SIGHUP/SIGPIPE; an unnamed file
 * vanishes by itself) and exits with a
 * sysexits.h status and one line "postdrop: fatal: TEXT" on stderr:
 * EX_USAGE bad arguments, EX_DATAERR malformed or oversized input,
 * EX_NOPERM a configuration directory not allowed for a setgid run,
 * EX_CONFIG main.cf does not load, EX_TEMPFAIL any I/O error.
 *
 * Privilege: when running setgid (effective gid differs from the real one)
 * and not as root, a configuration directory other than the default (from
 * -c or POSTERN_CONFIG_DIR) is accepted only when the default main.cf
 * lists it in alt_config_directories (Postfix's rule), so a user cannot
 * point the privileged program at a queue_directory of their choosing.
 * The environment is cleared in that case.  Instances made by `postern
 * init` run as an ordinary user and use a postdrop that is not setgid.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sysexits.h>
#include <unistd.h>

#include "config.h"
#include "ipc.h"
#include "log.h"
#include "mem.h"
#include "queue.h"
#include "strbuf.h"
#include "tmpfile_link.h"

#define ENVELOPE_MAX (16 * 1024 * 1024)
#define WAKEUP_TIMEOUT 2

/* The temporary file, for the signal handler (async-signal-safe unlink). */
static char temp_path[64];
static volatile sig_atomic_t temp_live;

static void remove_temp(void)
{
    if (temp_live) {
        unlink(temp_path);
        temp_live = 0;
    }
}

static void postdrop_fatal(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/* Create maildrop/.tmp-PID-N as temp_path (removed on failure and on
 * the signals); exits on error. */
static int create_temp(const char *qdir)
{
    int fd = -1;
    for (int n = 0; fd < 0 && n < 100; n++) {
        snprintf(temp_path, sizeof(temp_path), "maildrop/.tmp-%ld-%d", (long) getpid(), n);
        fd = open(temp_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
        if (fd < 0 && errno != EEXIST)
            postdrop_fatal(EX_TEMPFAIL, "create %s/%s: %s", qdir, temp_path, strerror(errno));
    }
    if (fd < 0)
        postdrop_fatal(EX_TEMPFAIL, "cannot create a file in %s/maildrop", qdir);
    temp_live = 1;
    return fd;
}

static void postdrop_fatal(int status, const char *fmt, ...)
{
    remove_temp();
    va_list ap;
    va_start(ap, fmt);
    fputs("postdrop: fatal: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(status);
}

static void on_signal(int sig)
{
    if (temp_live)
        unlink(temp_path);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Is dir one of the words of alt_config_directories in the default main.cf? */
static int config_dir_allowed(const char *dir)
{
    strbuf err;
    strbuf_init(&err);
    int ok = 0;
    if (config_load(DEFAULT_CONFIG_DIR, &err) == 0) {
        int n;
        char **list = config_list(config_str("alt_config_directories"), &n);
        for (int i = 0; i < n && !ok; i++)
            ok = strcmp(list[i], dir) == 0;
        config_list_free(list);
    }
    strbuf_release(&err);
    return ok;
}

static void write_record(FILE *out, int type, const strbuf *data)
{
    fprintf(out, "%c%zu:", type, data->len);
    fwrite(data->data, 1, data->len, out);
    fputc('\n', out);
}

/* Copy the record stream from stdin to out, checking what postdrop must. */
static void copy_records(FILE *in, FILE *out, long long content_limit)
{
    strbuf data, err;
    strbuf_init(&data);
    strbuf_init(&err);
    int type, nrec = 0, ended = 0;
    unsigned long long content = 0, envelope = 0;
    for (;;) {
        int rc = queue_record_read(in, &type, &data, &err);
        if (rc < 0)
            postdrop_fatal(EX_DATAERR, "malformed input: %s", strbuf_str(&err));
        if (rc == 0)
            break;
        if (nrec++ == 0 && (type != QREC_VERSION || strcmp(strbuf_str(&data), "1") != 0))
            postdrop_fatal(EX_DATAERR, "malformed input: no version record first");
        if (!strchr("VTSANORLE", type))
            postdrop_fatal(EX_DATAERR, "malformed input: record type '%c' not allowed", type);
        if (type == QREC_LINE) {
            content += data.len + 2;
            if (content_limit > 0 && content > (unsigned long long) content_limit)
                postdrop_fatal(EX_DATAERR, "message file too big (message_size_limit %lld)",
                               content_limit);
        } else if ((envelope += data.len + 16) > ENVELOPE_MAX) {
            postdrop_fatal(EX_DATAERR, "envelope too big");
        }
        write_record(out, type, &data);
        if (type == QREC_END) {
            ended = 1;
            break;
        }
    }
    if (!ended)
        postdrop_fatal(EX_DATAERR, "malformed input: incomplete message (no end record)");
    if (fgetc(in) != EOF)
        postdrop_fatal(EX_DATAERR, "malformed input: data after the end record");
    strbuf_release(&data);
    strbuf_release(&err);
}

static void wake_pickup(void)
{
    int fd = ipc_connect_unix("public/pickup", WAKEUP_TIMEOUT);
    if (fd < 0)
        return;
    ipc_stream *s = ipc_stream_open(fd, WAKEUP_TIMEOUT);
    ipc_record *r = ipc_record_new();
    ipc_record_add_str(r, "request", "wakeup");
    (void) ipc_send(s, r);
    ipc_record_free(r);
    ipc_stream_close(s);
}

int main(int argc, char **argv)
{
    const char *dir_arg = NULL;
    int verbose = 0;
    int opt;

    umask(077);
    log_open("postdrop");
    log_use_stderr();
    signal(SIGPIPE, SIG_IGN);
    while ((opt = getopt(argc, argv, "c:rv")) != -1) {
        switch (opt) {
        case 'c':
            dir_arg = optarg;
            break;
        case 'r':               /* Postfix's "raw record stream": always so */
            break;
        case 'v':
            verbose++;
            break;
        default:
            postdrop_fatal(EX_USAGE, "usage: postdrop [-c config_dir] [-v]");
        }
    }
    if (optind != argc)
        postdrop_fatal(EX_USAGE, "usage: postdrop [-c config_dir] [-v]");

    const char *dir = config_pick_dir(dir_arg);
    if (getegid() != getgid() && getuid() != 0) {
        char *want = xstrdup(dir);
        if (strcmp(want, DEFAULT_CONFIG_DIR) != 0 && !config_dir_allowed(want))
            postdrop_fatal(EX_NOPERM, "-c %s: not in alt_config_directories of %s/main.cf",
                           want, DEFAULT_CONFIG_DIR);
        clearenv();
        setenv("PATH", "/usr/bin:/bin", 1);
        dir = want;
    }
    strbuf err;
    strbuf_init(&err);
    if (config_load(dir, &err) < 0)
        postdrop_fatal(EX_CONFIG, "%s", strbuf_str(&err));
    const char *qdir = config_str("queue_directory");
    if (chdir(qdir) < 0)
        postdrop_fatal(EX_TEMPFAIL, "chdir %s: %s", qdir, strerror(errno));
    long long limit = config_size("message_size_limit");

    static const int sigs[] = { SIGHUP, SIGINT, SIGTERM, SIGQUIT };
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        signal(sigs[i], on_signal);

    /* An unnamed file (O_RDWR: the fallback below copies it), else a
     * named temporary file, which also reports any error. */
    int fd = tmpfile_open("maildrop", O_RDWR, 0640);
    int unnamed = fd >= 0;
    if (!unnamed)
        fd = create_temp(qdir);
    /* pickup runs as mail_owner with its own group, not setgid_group, so
     * it reads the file through the "other" bits (Postfix's postdrop makes
     * maildrop files 0444 too).  Nobody else can reach it: maildrop/ 1730
     * lets only mail_owner and setgid_group in, and the group cannot list
     * it. */
    if (fchmod(fd, 0444) < 0)
        postdrop_fatal(EX_TEMPFAIL, "chmod %s/maildrop file: %s", qdir, strerror(errno));
    FILE *out = fdopen(fd, "w");
    if (!out)
        postdrop_fatal(EX_TEMPFAIL, "fdopen: %s", strerror(errno));

    copy_records(stdin, out, limit);

    if (fflush(out) != 0 || ferror(out) || fsync(fd) < 0)
        postdrop_fatal(EX_TEMPFAIL, "write %s/maildrop file: %s", qdir, strerror(errno));
    struct stat st;
    struct timeval tv;
    if (fstat(fd, &st) < 0)
        postdrop_fatal(EX_TEMPFAIL, "fstat: %s", strerror(errno));
    gettimeofday(&tv, NULL);
    char qid[QUEUE_ID_MAX];
    queue_id_make(qid, tv.tv_sec, tv.tv_usec, st.st_ino);
    strbuf final;
    strbuf_init(&final);
    queue_path(&final, "maildrop", qid);
    int named = 0;              /* final names the file */
    if (unnamed) {
        /* Straight to its name (tmpfile_link fsyncs the new link count). */
        if (tmpfile_link(fd, strbuf_str(&final)) == 0)
            named = 1;
        else if (errno != EOPNOTSUPP)
            postdrop_fatal(EX_TEMPFAIL, "link to %s: %s", strbuf_str(&final), strerror(errno));
        else {
            /* This process cannot name it: copy it into a named one. */
            int to = create_temp(qdir);
            if (fchmod(to, 0444) < 0 || tmpfile_copy(fd, to, st.st_size) < 0 || fsync(to) < 0)
                postdrop_fatal(EX_TEMPFAIL, "write %s/%s: %s", qdir, temp_path, strerror(errno));
            close(to);
        }
    }
    if (!named
        && renameat2(AT_FDCWD, temp_path, AT_FDCWD, strbuf_str(&final), RENAME_NOREPLACE) < 0)
        postdrop_fatal(EX_TEMPFAIL, "rename to %s: %s", strbuf_str(&final), strerror(errno));
    temp_live = 0;
    if (fsync_dir("maildrop") < 0 && syncfs(fd) < 0) {
        int saved = errno;
        unlink(strbuf_str(&final));
        postdrop_fatal(EX_TEMPFAIL, "sync %s/maildrop: %s", qdir, strerror(saved));
    }
    if (fclose(out) != 0)
        postdrop_fatal(EX_TEMPFAIL, "close: %s", strerror(errno));
    if (verbose)
        fprintf(stderr, "postdrop: queued as %s\n", strbuf_str(&final));
    wake_pickup();
    strbuf_release(&final);
    strbuf_release(&err);
    return 0;
}
