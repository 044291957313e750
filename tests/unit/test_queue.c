/*
 * test_queue.c - unit tests for common/queue_*.c: queue ids, paths,
 * directory creation, moves and scans, the writer, the reader (round trip,
 * truncation at every offset, hand-made malformed files), the content
 * reader, the generic record reader and marking recipients done.
 *
 * Every test works in its own temporary spool and chdirs there, as the
 * daemons do (queue paths are relative).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mem.h"
#include "queue.h"
#include "strbuf.h"
#include "tmpfile_link.h"

static char spool[64];
static char old_cwd[4096];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void spool_setup(void)
{
    strcpy(spool, "/tmp/test_queue_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(spool));
    ck_assert_ptr_nonnull(getcwd(old_cwd, sizeof(old_cwd)));
    ck_assert_int_eq(queue_dirs_create(spool, getuid(), getgid(), getgid()), 0);
    ck_assert_int_eq(chdir(spool), 0);
}

static void spool_teardown(void)
{
    if (chdir(old_cwd) != 0)
        return;
    nftw(spool, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Names in a directory, dot-files included ("." and ".." excluded). */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void read_whole(const char *path, strbuf *out)
{
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    char buf[4096];
    ssize_t n;
    strbuf_reset(out);
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        strbuf_append(out, buf, (size_t)n);
    close(fd);
}

static void write_whole(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static const char *const sample_lines[] = {
    "Received: from client (client [192.0.2.1])",
    "From: Alice <alice@example.org>",
    "Subject: test",
    "",
    "body line one",
    "",                         /* empty body line */
    "binary \x01 and NUL follows",
    "last",
};
#define NLINES (sizeof(sample_lines) / sizeof(sample_lines[0]))

/* Write a complete sample message into incoming/; returns its id. */
static char *write_sample(void)
{
    strbuf err;
    strbuf_init(&err);
    queue_writer *w = queue_writer_create("incoming", &err);
    ck_assert_msg(w != NULL, "create: %s", strbuf_str(&err));
    queue_writer_record_str(w, QREC_VERSION, "1");
    queue_writer_record_str(w, QREC_TIME, "1764000000 123456");
    queue_writer_record_str(w, QREC_SENDER, "alice@example.org");
    queue_writer_record_str(w, QREC_ATTR, "client_name=client.example");
    queue_writer_record_str(w, QREC_ATTR, "helo_name=a=b");
    queue_writer_record_str(w, QREC_NOTIFY, "SUCCESS,FAILURE");
    queue_writer_record_str(w, QREC_ORCPT, "rfc822;bob@example.com");
    queue_writer_record_str(w, QREC_RCPT, "-bob@example.com");
    queue_writer_record_str(w, QREC_RCPT, "-carol@example.com");
    queue_writer_content_begin(w);
    for (size_t i = 0; i < NLINES; i++)
        queue_writer_line(w, sample_lines[i], strlen(sample_lines[i]));
    queue_writer_line(w, "with\0nul", 8);
    queue_writer_content_end(w);
    queue_writer_record_str(w, QREC_NOTIFY, "NEVER");
    queue_writer_record_str(w, QREC_RCPT, "-dave@example.net");
    char *qid = xstrdup(queue_writer_id(w));
    ck_assert_int_eq(queue_writer_commit(w, &err), 0);
    ck_assert_str_eq(queue_writer_id(w), qid);
    queue_writer_abort(w);      /* after commit: only frees */
    strbuf_release(&err);
    return qid;
}

static size_t sample_size(void)
{
    size_t n = 0;
    for (size_t i = 0; i < NLINES; i++)
        n += strlen(sample_lines[i]) + 2;
    return n + 8 + 2;
}

/* ---- ids --------------------------------------------------------------- */

START_TEST(id_make_known_value)
{
    char buf[QUEUE_ID_MAX];
    queue_id_make(buf, 0x6925A3F1LL, 0xB0C2EL, 0x41A7FULL);
    ck_assert_str_eq(buf, "06925A3F1B0C2E41A7F");
    ck_assert(queue_id_valid(buf));
    ck_assert_int_eq(queue_id_time(buf), 0x6925A3F1LL);
    queue_id_make(buf, 1, 0, 0);
    ck_assert_str_eq(buf, "000000001000000");
    ck_assert(queue_id_valid(buf));
    queue_id_make(buf, 1, 999999, 0xFFFFFFFFFFFFFFFFULL);
    ck_assert_uint_eq(strlen(buf), 30);
    ck_assert(queue_id_valid(buf));
}
END_TEST

START_TEST(id_invalid_strings)
{
    ck_assert(!queue_id_valid(NULL));
    ck_assert(!queue_id_valid(""));
    ck_assert(!queue_id_valid("../x"));
    ck_assert(!queue_id_valid("06925A3F1B0C2E41A7F/"));
    ck_assert(!queue_id_valid("06925a3f1b0c2e41a7f"));      /* lowercase */
    ck_assert(!queue_id_valid("06925A3F1B0C2E"));           /* no inode */
    ck_assert(!queue_id_valid(".6925A3F1B0C2E41A7F"));
    ck_assert(!queue_id_valid("06925A3F1B0C2E41A7G"));
    ck_assert(!queue_id_valid("06925A3F1F424041A7F"));      /* usec 1000000 */
    ck_assert(queue_id_valid("06925A3F1F423F41A7F"));       /* usec 999999 */
    ck_assert(!queue_id_valid("06925A3F1B0C2E041A7F"));     /* inode "041A7F" */
    ck_assert(!queue_id_valid("06925A3F1B0C2E11111111111111111")); /* 31 chars */
    ck_assert(queue_id_valid("06925A3F1B0C2E1111111111111111"));   /* 30 */
}
END_TEST

START_TEST(id_sorts_by_time)
{
    char a[QUEUE_ID_MAX], b[QUEUE_ID_MAX];
    /* Later arrival sorts later, whatever the inodes. */
    queue_id_make(a, 1764000000, 999999, 0xFFFFFFFULL);
    queue_id_make(b, 1764000001, 0, 1);
    ck_assert_int_lt(strcmp(a, b), 0);
    queue_id_make(a, 1764000000, 5, 0xFFFFFFFULL);
    queue_id_make(b, 1764000000, 6, 2);
    ck_assert_int_lt(strcmp(a, b), 0);
}
END_TEST

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

START_TEST(writer_ids_unique_and_increasing)
{
    enum { N = 300 };
    char *ids[N];
    strbuf err;
    strbuf_init(&err);
    /* Abort each at once so the kernel may reuse inodes: ids must still
     * differ, and come out in increasing order. */
    for (int i = 0; i < N; i++) {
        queue_writer *w = queue_writer_create("incoming", &err);
        ck_assert_ptr_nonnull(w);
        ids[i] = xstrdup(queue_writer_id(w));
        ck_assert(queue_id_valid(ids[i]));
        if (i > 0)
            ck_assert_msg(strcmp(ids[i - 1], ids[i]) < 0, "%s !< %s", ids[i - 1], ids[i]);
        queue_writer_abort(w);
    }
    qsort(ids, N, sizeof(ids[0]), cmp_str);
    for (int i = 1; i < N; i++)
        ck_assert_str_ne(ids[i - 1], ids[i]);
    for (int i = 0; i < N; i++)
        xfree(ids[i]);
    ck_assert_int_eq(count_entries("incoming"), 0);
    strbuf_release(&err);
}
END_TEST

/* ---- directories ------------------------------------------------------- */

START_TEST(paths_hashed_and_flat)
{
    strbuf p;
    strbuf_init(&p);
    const char *qid = "06925A3F1B0C2E41A7F";
    queue_path(&p, "deferred", qid);
    ck_assert_str_eq(strbuf_str(&p), "deferred/E/06925A3F1B0C2E41A7F");
    queue_path(&p, "defer", qid);
    ck_assert_str_eq(strbuf_str(&p), "defer/E/06925A3F1B0C2E41A7F");
    queue_path(&p, "bounce", qid);
    ck_assert_str_eq(strbuf_str(&p), "bounce/E/06925A3F1B0C2E41A7F");
    queue_path(&p, "trace", qid);
    ck_assert_str_eq(strbuf_str(&p), "trace/E/06925A3F1B0C2E41A7F");
    queue_path(&p, "incoming", qid);
    ck_assert_str_eq(strbuf_str(&p), "incoming/06925A3F1B0C2E41A7F");
    queue_path(&p, "active", qid);
    ck_assert_str_eq(strbuf_str(&p), "active/06925A3F1B0C2E41A7F");
    queue_path(&p, "hold", qid);
    ck_assert_str_eq(strbuf_str(&p), "hold/06925A3F1B0C2E41A7F");
    /* Hostile ids never leave the queue. */
    queue_path(&p, "active", "../../etc/passwd");
    ck_assert_str_eq(strbuf_str(&p), "active/.invalid-queue-id");
    queue_path(&p, "deferred", "a/b");
    ck_assert_str_eq(strbuf_str(&p), "deferred/0/.invalid-queue-id");
    queue_path(&p, "incoming", "");
    ck_assert_str_eq(strbuf_str(&p), "incoming/.invalid-queue-id");
    queue_path(&p, "incoming", "..");
    ck_assert_str_eq(strbuf_str(&p), "incoming/.invalid-queue-id");
    strbuf_release(&p);
}
END_TEST

static mode_t mode_of(const char *path)
{
    struct stat st;
    ck_assert_msg(stat(path, &st) == 0, "stat %s", path);
    ck_assert(S_ISDIR(st.st_mode));
    return st.st_mode & 07777;
}

START_TEST(dirs_created_with_modes)
{
    ck_assert_uint_eq(mode_of("maildrop"), 01730);
    ck_assert_uint_eq(mode_of("public"), 0710);
    ck_assert_uint_eq(mode_of("private"), 0700);
    const char *flat[] = { "incoming", "active", "hold", "requeue", "corrupt", "recycle" };
    for (size_t i = 0; i < 6; i++)
        ck_assert_uint_eq(mode_of(flat[i]), 0700);
    const char *hashed[] = { "deferred", "defer", "bounce", "trace" };
    char path[64];
    for (size_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(mode_of(hashed[i]), 0700);
        ck_assert_int_eq(count_entries(hashed[i]), 16);
        for (const char *h = "0123456789ABCDEF"; *h; h++) {
            snprintf(path, sizeof(path), "%s/%c", hashed[i], *h);
            ck_assert_uint_eq(mode_of(path), 0700);
        }
    }
    /* Idempotent, and it repairs a wrong mode. */
    ck_assert_int_eq(chmod("active", 0755), 0);
    ck_assert_int_eq(queue_dirs_create(".", getuid(), getgid(), getgid()), 0);
    ck_assert_uint_eq(mode_of("active"), 0700);
    /* A file where a directory belongs is an error. */
    ck_assert_int_eq(rmdir("hold"), 0);
    write_whole("hold", "x", 1);
    ck_assert_int_eq(queue_dirs_create(".", getuid(), getgid(), getgid()), -1);
    ck_assert_int_eq(errno, ENOTDIR);
}
END_TEST

START_TEST(move_between_queues)
{
    char *qid = write_sample();
    strbuf p;
    strbuf_init(&p);
    ck_assert_int_eq(queue_move(qid, "incoming", "deferred"), 0);
    queue_path(&p, "deferred", qid);
    ck_assert_int_eq(access(p.data, F_OK), 0);
    ck_assert_int_eq(p.data[9], qid[13]);
    ck_assert_int_eq(count_entries("incoming"), 0);
    ck_assert_int_eq(queue_move(qid, "deferred", "active"), 0);
    ck_assert_int_eq(access(p.data, F_OK), -1);
    queue_path(&p, "active", qid);
    ck_assert_int_eq(access(p.data, F_OK), 0);
    /* Moving something that is not there fails with ENOENT. */
    ck_assert_int_eq(queue_move(qid, "incoming", "hold"), -1);
    ck_assert_int_eq(errno, ENOENT);
    ck_assert_int_eq(fsync_dir("active"), 0);
    ck_assert_int_eq(fsync_dir("nonexistent"), -1);
    /* queue_rename: the same move, without the fsyncs, same errors. */
    ck_assert_int_eq(queue_rename(qid, "active", "deferred"), 0);
    ck_assert_int_eq(access(p.data, F_OK), -1);
    queue_path(&p, "deferred", qid);
    ck_assert_int_eq(access(p.data, F_OK), 0);
    ck_assert_int_eq(queue_rename(qid, "active", "hold"), -1);
    ck_assert_int_eq(errno, ENOENT);
    ck_assert_int_eq(queue_rename("../escape", "deferred", "active"), -1);
    ck_assert_int_eq(access(p.data, F_OK), 0);
    strbuf_release(&p);
    xfree(qid);
}
END_TEST

struct scan_result {
    int n;
    char seen[8][QUEUE_ID_MAX];
};

static int collect(const char *qid, void *ctx)
{
    struct scan_result *r = ctx;
    if (r->n < 8)
        snprintf(r->seen[r->n], QUEUE_ID_MAX, "%s", qid);
    r->n++;
    return 0;
}

static int stop_at_first(const char *qid, void *ctx)
{
    (void)qid;
    (*(int *)ctx)++;
    return 7;
}

START_TEST(scan_skips_dotfiles_finds_hashed)
{
    write_whole("deferred/E/06925A3F1B0C2E41A7F", "", 0);
    write_whole("deferred/0/06925A3F200000123", "", 0);
    write_whole("deferred/0/.tmp-1-2", "", 0);
    write_whole("deferred/0/.06925A3F200000124", "", 0);
    write_whole("deferred/0/junk", "", 0);
    write_whole("deferred/06925A3F200000125", "", 0);   /* not in a hash dir */
    struct scan_result r = { 0 };
    ck_assert_int_eq(queue_scan("deferred", collect, &r), 0);
    ck_assert_int_eq(r.n, 2);
    int found_e = 0, found_0 = 0;
    for (int i = 0; i < 2; i++) {
        found_e += strcmp(r.seen[i], "06925A3F1B0C2E41A7F") == 0;
        found_0 += strcmp(r.seen[i], "06925A3F200000123") == 0;
    }
    ck_assert(found_e == 1 && found_0 == 1);

    /* Flat queue, with a file being written. */
    char *qid = write_sample();
    write_whole("incoming/.tmp-99-0", "partial", 7);
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(queue_scan("incoming", collect, &r), 0);
    ck_assert_int_eq(r.n, 1);
    ck_assert_str_eq(r.seen[0], qid);

    /* The callback's nonzero value stops the scan and is returned. */
    int calls = 0;
    ck_assert_int_eq(queue_scan("deferred", stop_at_first, &calls), 7);
    ck_assert_int_eq(calls, 1);
    /* A missing queue is an error. */
    ck_assert_int_eq(queue_scan("nosuchqueue", collect, &r), -1);
    ck_assert_int_eq(queue_scan("nosuchqueue_hashed_no", collect, &r), -1);
    xfree(qid);
}
END_TEST

/* ---- writer and reader ------------------------------------------------- */

static void open_and_load(const char *path, const char *qid, struct queue_message *msg,
                          int *fd_out)
{
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    strbuf err;
    strbuf_init(&err);
    int rc = queue_message_load(fd, qid, msg, &err);
    ck_assert_msg(rc == 0, "load: %s", strbuf_str(&err));
    strbuf_release(&err);
    *fd_out = fd;
}

START_TEST(round_trip)
{
    char *qid = write_sample();
    ck_assert(queue_id_valid(qid));
    ck_assert_int_eq(count_entries("incoming"), 1);  /* no temp file left */
    strbuf path;
    strbuf_init(&path);
    queue_path(&path, "incoming", qid);
    struct stat st;
    ck_assert_int_eq(stat(path.data, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);

    struct queue_message msg;
    int fd;
    open_and_load(path.data, qid, &msg, &fd);
    ck_assert_str_eq(msg.qid, qid);
    ck_assert_int_eq(msg.arrival_sec, 1764000000);
    ck_assert_int_eq(msg.arrival_usec, 123456);
    ck_assert_str_eq(msg.sender, "alice@example.org");
    ck_assert_int_eq(msg.nattrs, 2);
    ck_assert_str_eq(queue_message_attr(&msg, "client_name"), "client.example");
    ck_assert_str_eq(queue_message_attr(&msg, "helo_name"), "a=b");
    ck_assert_ptr_null(queue_message_attr(&msg, "protocol"));
    ck_assert_int_eq(msg.nrcpt, 3);
    ck_assert_str_eq(msg.rcpts[0].address, "bob@example.com");
    ck_assert_str_eq(msg.rcpts[0].notify, "SUCCESS,FAILURE");
    ck_assert_str_eq(msg.rcpts[0].orcpt, "rfc822;bob@example.com");
    ck_assert_str_eq(msg.rcpts[1].address, "carol@example.com");
    ck_assert_ptr_null(msg.rcpts[1].notify);
    ck_assert_ptr_null(msg.rcpts[1].orcpt);
    ck_assert_str_eq(msg.rcpts[2].address, "dave@example.net");
    ck_assert_str_eq(msg.rcpts[2].notify, "NEVER");
    ck_assert_int_eq((long long)msg.size, (long long)sample_size());

    strbuf bytes;
    strbuf_init(&bytes);
    read_whole(path.data, &bytes);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(msg.rcpts[i].status, RCPT_PENDING);
        ck_assert_int_eq(bytes.data[msg.rcpts[i].status_offset], '-');
        ck_assert_int_eq(bytes.data[msg.rcpts[i].status_offset - 1], ':');
    }
    /* content_end points at "X", content_offset right after the M record. */
    ck_assert_int_eq(bytes.data[msg.content_end], 'X');
    ck_assert_int_eq(bytes.data[msg.content_offset], 'L');
    ck_assert_int_eq(memcmp(bytes.data + msg.content_offset - 25, "M20:", 4), 0);
    ck_assert_int_eq(memcmp(bytes.data + bytes.len - 4, "E0:\n", 4), 0);

    queue_content_reader *cr = queue_content_open(fd, &msg);
    strbuf line, err;
    strbuf_init(&line);
    strbuf_init(&err);
    for (size_t i = 0; i < NLINES; i++) {
        ck_assert_int_eq(queue_content_next(cr, &line, &err), 1);
        ck_assert_uint_eq(line.len, strlen(sample_lines[i]));
        ck_assert_int_eq(memcmp(strbuf_str(&line), sample_lines[i], line.len), 0);
    }
    ck_assert_int_eq(queue_content_next(cr, &line, &err), 1);
    ck_assert_uint_eq(line.len, 8);
    ck_assert_int_eq(memcmp(line.data, "with\0nul", 8), 0);
    ck_assert_int_eq(queue_content_next(cr, &line, &err), 0);
    ck_assert_int_eq(queue_content_next(cr, &line, &err), 0);
    queue_content_close(cr);

    queue_message_free(&msg);
    queue_message_free(&msg);   /* safe twice */
    close(fd);
    strbuf_release(&line);
    strbuf_release(&err);
    strbuf_release(&bytes);
    strbuf_release(&path);
    xfree(qid);
}
END_TEST

/* A big message: the M placeholder is flushed long before content_end,
 * so it is patched with pwrite. */
START_TEST(round_trip_large)
{
    strbuf err;
    strbuf_init(&err);
    queue_writer *w = queue_writer_create("incoming", &err);
    ck_assert_ptr_nonnull(w);
    queue_writer_record_str(w, QREC_VERSION, "1");
    queue_writer_record_str(w, QREC_TIME, "1 0");
    queue_writer_record_str(w, QREC_SENDER, "");
    queue_writer_record_str(w, QREC_RCPT, "-x@y");
    queue_writer_content_begin(w);
    char line[1000];
    memset(line, 'a', sizeof(line));
    for (int i = 0; i < 2000; i++)
        queue_writer_line(w, line, (size_t)(i % 1000));
    queue_writer_content_end(w);
    size_t want = 0;
    for (int i = 0; i < 2000; i++)
        want += (size_t)(i % 1000) + 2;
    ck_assert_uint_eq(queue_writer_content_size(w), want);
    char *qid = xstrdup(queue_writer_id(w));
    ck_assert_int_eq(queue_writer_commit(w, &err), 0);
    queue_writer_abort(w);

    strbuf path;
    strbuf_init(&path);
    queue_path(&path, "incoming", qid);
    struct queue_message msg;
    int fd;
    open_and_load(path.data, qid, &msg, &fd);
    ck_assert_str_eq(msg.sender, "");
    ck_assert_int_eq(msg.size, (long long)want);
    queue_content_reader *cr = queue_content_open(fd, &msg);
    strbuf l;
    strbuf_init(&l);
    int n = 0;
    int rc;
    while ((rc = queue_content_next(cr, &l, &err)) == 1) {
        ck_assert_uint_eq(l.len, (size_t)(n % 1000));
        n++;
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(n, 2000);
    queue_content_close(cr);
    queue_message_free(&msg);
    close(fd);
    strbuf_release(&l);
    strbuf_release(&path);
    strbuf_release(&err);
    xfree(qid);
}
END_TEST

START_TEST(truncated_at_every_offset)
{
    char *qid = write_sample();
    strbuf path, bytes, err;
    strbuf_init(&path);
    strbuf_init(&bytes);
    strbuf_init(&err);
    queue_path(&path, "incoming", qid);
    read_whole(path.data, &bytes);
    for (size_t len = 0; len < bytes.len; len++) {
        write_whole("corrupt/t", bytes.data, len);
        int fd = open("corrupt/t", O_RDONLY);
        struct queue_message msg;
        strbuf_reset(&err);
        int rc = queue_message_load(fd, qid, &msg, &err);
        ck_assert_msg(rc == -1, "truncated at %zu/%zu accepted", len, bytes.len);
        ck_assert_msg(err.len > 0, "no reason at %zu", len);
        ck_assert_ptr_null(msg.sender);     /* freed and zeroed on error */
        close(fd);
    }
    /* Sanity: the whole file is accepted by the same code path. */
    write_whole("corrupt/t", bytes.data, bytes.len);
    int fd = open("corrupt/t", O_RDONLY);
    struct queue_message msg;
    ck_assert_int_eq(queue_message_load(fd, qid, &msg, &err), 0);
    queue_message_free(&msg);
    close(fd);
    strbuf_release(&path);
    strbuf_release(&bytes);
    strbuf_release(&err);
    xfree(qid);
}
END_TEST

START_TEST(mark_done_flips_one_byte)
{
    char *qid = write_sample();
    strbuf path, before, after;
    strbuf_init(&path);
    strbuf_init(&before);
    strbuf_init(&after);
    queue_path(&path, "incoming", qid);
    read_whole(path.data, &before);
    struct queue_message msg;
    int fd;
    open_and_load(path.data, qid, &msg, &fd);
    off_t off = msg.rcpts[1].status_offset;
    ck_assert_int_eq(queue_file_mark_done(fd, off), 0);
    read_whole(path.data, &after);
    ck_assert_uint_eq(before.len, after.len);
    int diffs = 0;
    for (size_t i = 0; i < before.len; i++) {
        if (before.data[i] != after.data[i]) {
            diffs++;
            ck_assert_int_eq((off_t)i, off);
            ck_assert_int_eq(after.data[i], 'D');
        }
    }
    ck_assert_int_eq(diffs, 1);
    /* Marking again is harmless, with or without the fsync. */
    ck_assert_int_eq(queue_file_mark_done(fd, off), 0);
    ck_assert_int_eq(queue_file_mark_done_nosync(fd, off), 0);
    ck_assert_int_eq(queue_file_mark_done_nosync(fd, 0), -1);
    ck_assert_int_eq(errno, EINVAL);
    /* A wrong offset is refused and changes nothing. */
    ck_assert_int_eq(queue_file_mark_done(fd, 0), -1);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_int_eq(queue_file_mark_done(fd, (off_t)after.len + 10), -1);
    read_whole(path.data, &before);
    ck_assert_int_eq(memcmp(before.data, after.data, after.len), 0);
    queue_message_free(&msg);
    /* Still parses, with the new status. */
    struct queue_message again;
    int fd2;
    open_and_load(path.data, qid, &again, &fd2);
    ck_assert_int_eq(again.rcpts[0].status, RCPT_PENDING);
    ck_assert_int_eq(again.rcpts[1].status, RCPT_DONE);
    ck_assert_int_eq(again.rcpts[2].status, RCPT_PENDING);
    off_t third = again.rcpts[2].status_offset;
    queue_message_free(&again);
    /* The unsynced variant flips the same way. */
    ck_assert_int_eq(queue_file_mark_done_nosync(fd, third), 0);
    close(fd2);
    open_and_load(path.data, qid, &again, &fd2);
    ck_assert_int_eq(again.rcpts[2].status, RCPT_DONE);
    ck_assert_int_eq(again.rcpts[0].status, RCPT_PENDING);
    queue_message_free(&again);
    close(fd);
    close(fd2);
    strbuf_release(&path);
    strbuf_release(&before);
    strbuf_release(&after);
    xfree(qid);
}
END_TEST

START_TEST(abort_leaves_nothing)
{
    strbuf err;
    strbuf_init(&err);
    /* A named temp file (no O_TMPFILE) and an unnamed one (none to see). */
    tmpfile_method_set(TMPFILE_NONE);
    queue_writer *w = queue_writer_create("incoming", &err);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(count_entries("incoming"), 1);     /* the temp file */
    queue_writer_record_str(w, QREC_VERSION, "1");
    queue_writer_content_begin(w);
    queue_writer_line(w, "x", 1);
    queue_writer_abort(w);
    ck_assert_int_eq(count_entries("incoming"), 0);
    tmpfile_method_set(TMPFILE_UNKNOWN);
    w = queue_writer_create("incoming", &err);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(count_entries("incoming"), 0);
    queue_writer_record_str(w, QREC_VERSION, "1");
    queue_writer_content_begin(w);
    queue_writer_line(w, "x", 1);
    queue_writer_abort(w);
    ck_assert_int_eq(count_entries("incoming"), 0);

    /* A failed commit (here: no content) also leaves nothing. */
    w = queue_writer_create("incoming", &err);
    queue_writer_record_str(w, QREC_VERSION, "1");
    ck_assert_int_eq(queue_writer_commit(w, &err), -1);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert(err.len > 0);
    ck_assert_int_eq(count_entries("incoming"), 0);
    queue_writer_abort(w);
    ck_assert_int_eq(count_entries("incoming"), 0);

    /* No such queue: NULL, errno and a reason. */
    strbuf_reset(&err);
    ck_assert_ptr_null(queue_writer_create("nosuchqueue", &err));
    ck_assert_int_eq(errno, ENOENT);
    ck_assert(err.len > 0);
    strbuf_release(&err);
}
END_TEST

START_TEST(writer_into_maildrop)
{
    strbuf err;
    strbuf_init(&err);
    queue_writer *w = queue_writer_create("maildrop", &err);
    ck_assert_ptr_nonnull(w);
    queue_writer_record_str(w, QREC_VERSION, "1");
    queue_writer_record_str(w, QREC_TIME, "1 0");
    queue_writer_record_str(w, QREC_SENDER, "u");
    queue_writer_content_begin(w);
    queue_writer_content_end(w);
    char *qid = xstrdup(queue_writer_id(w));
    ck_assert_int_eq(queue_writer_commit(w, &err), 0);
    queue_writer_abort(w);
    struct scan_result r = { 0 };
    ck_assert_int_eq(queue_scan("maildrop", collect, &r), 0);
    ck_assert_int_eq(r.n, 1);
    ck_assert_str_eq(r.seen[0], qid);
    /* No recipients and empty content are valid. */
    strbuf path;
    strbuf_init(&path);
    queue_path(&path, "maildrop", qid);
    struct queue_message msg;
    int fd;
    open_and_load(path.data, qid, &msg, &fd);
    ck_assert_int_eq(msg.nrcpt, 0);
    ck_assert_int_eq(msg.size, 0);
    ck_assert_int_eq(msg.content_offset, msg.content_end);
    queue_message_free(&msg);
    close(fd);
    strbuf_release(&path);
    strbuf_release(&err);
    xfree(qid);
}
END_TEST

/* commit_to: created in incoming/, lands in hold/ only; never visible in
 * incoming/ under its id (a qmgr scan there would take a held message). */
START_TEST(writer_commit_to_other_queue)
{
    strbuf err;
    strbuf_init(&err);
    queue_writer *w = queue_writer_create("incoming", &err);
    ck_assert_ptr_nonnull(w);
    queue_writer_record_str(w, QREC_VERSION, "1");
    queue_writer_record_str(w, QREC_TIME, "1 0");
    queue_writer_record_str(w, QREC_SENDER, "u");
    queue_writer_record_str(w, QREC_RCPT, "-r@example.org");
    queue_writer_content_begin(w);
    queue_writer_line(w, "held", 4);
    queue_writer_content_end(w);
    char *qid = xstrdup(queue_writer_id(w));
    ck_assert_int_eq(queue_writer_commit_to(w, "hold", &err), 0);
    queue_writer_abort(w);
    ck_assert_int_eq(count_entries("incoming"), 0);
    struct scan_result r = { 0 };
    ck_assert_int_eq(queue_scan("hold", collect, &r), 0);
    ck_assert_int_eq(r.n, 1);
    ck_assert_str_eq(r.seen[0], qid);
    strbuf path;
    strbuf_init(&path);
    queue_path(&path, "hold", qid);
    struct queue_message msg;
    int fd;
    open_and_load(path.data, qid, &msg, &fd);
    ck_assert_int_eq(msg.nrcpt, 1);
    queue_message_free(&msg);
    close(fd);

    /* A queue that does not exist: -1, a reason, and no file anywhere. */
    w = queue_writer_create("incoming", &err);
    queue_writer_record_str(w, QREC_VERSION, "1");
    queue_writer_content_begin(w);
    queue_writer_content_end(w);
    strbuf_reset(&err);
    ck_assert_int_eq(queue_writer_commit_to(w, "nosuchqueue", &err), -1);
    ck_assert_int_eq(errno, ENOENT);
    ck_assert(err.len > 0);
    queue_writer_abort(w);
    ck_assert_int_eq(count_entries("incoming"), 0);
    strbuf_release(&path);
    strbuf_release(&err);
    xfree(qid);
}
END_TEST

/* ---- malformed files, made by hand ------------------------------------- */

/*
 * Build a file from "records" given as a compact spec: each element is
 * "TDATA" (type letter then data).  An element "M" (no data) becomes an M
 * record whose offset is patched to the first following X record.
 */
static void build_file(strbuf *out, const char *const *recs, size_t n)
{
    strbuf_reset(out);
    long long m_digits = -1;
    for (size_t i = 0; i < n; i++) {
        const char *data = recs[i] + 1;
        if (recs[i][0] == 'M' && recs[i][1] == '\0') {
            strbuf_append_str(out, "M20:");
            m_digits = (long long)out->len;
            strbuf_append_str(out, "00000000000000000000\n");
            continue;
        }
        if (recs[i][0] == 'X' && m_digits >= 0) {
            char d[21];
            snprintf(d, sizeof(d), "%020lld", (long long)out->len);
            memcpy(out->data + m_digits, d, 20);
            m_digits = -1;
        }
        strbuf_appendf(out, "%c%zu:%s\n", recs[i][0], strlen(data), data);
    }
}

static const char *load_bytes(const char *data, size_t len, strbuf *err)
{
    write_whole("corrupt/m", data, len);
    int fd = open("corrupt/m", O_RDONLY);
    ck_assert_int_ge(fd, 0);
    struct queue_message msg;
    strbuf_reset(err);
    int rc = queue_message_load(fd, "06925A3F1B0C2E41A7F", &msg, err);
    close(fd);
    if (rc == 0) {
        queue_message_free(&msg);
        return NULL;
    }
    ck_assert(err->len > 0);
    return strbuf_str(err);
}

#define SPEC(...) ((const char *const[]){ __VA_ARGS__ }), \
    sizeof((const char *const[]){ __VA_ARGS__ }) / sizeof(const char *)

static void expect_spec(const char *const *recs, size_t n, const char *why_part)
{
    strbuf f, err;
    strbuf_init(&f);
    strbuf_init(&err);
    build_file(&f, recs, n);
    const char *why = load_bytes(f.data, f.len, &err);
    if (!why_part) {
        ck_assert_msg(why == NULL, "valid file rejected: %s", why);
    } else {
        ck_assert_msg(why != NULL, "malformed file accepted (want \"%s\")", why_part);
        ck_assert_msg(strstr(why, why_part), "reason \"%s\" lacks \"%s\"", why, why_part);
    }
    strbuf_release(&f);
    strbuf_release(&err);
}

static void expect_raw(const char *raw, const char *why_part)
{
    strbuf err;
    strbuf_init(&err);
    const char *why = load_bytes(raw, strlen(raw), &err);
    ck_assert_msg(why != NULL, "malformed file accepted: %s", raw);
    ck_assert_msg(strstr(why, why_part), "reason \"%s\" lacks \"%s\"", why, why_part);
    strbuf_release(&err);
}

START_TEST(malformed_files)
{
    /* The baseline is valid, so each case below fails for its own reason. */
    expect_spec(SPEC("V1", "T1 2", "Salice", "Aa=b", "R-bob", "M", "Lhi", "X4", "E"), NULL);
    /* Envelope may list A before S and T last, recipients after X only. */
    expect_spec(SPEC("V1", "Aa=b", "S", "T1 2", "M", "X0", "N NEVER", "R-x", "E"), NULL);

    expect_spec(SPEC("T1 2", "V1", "Sa", "M", "X0", "E"), "first record is not V");
    expect_spec(SPEC("V2", "T1 2", "Sa", "M", "X0", "E"), "version");
    expect_spec(SPEC("V1", "V1", "T1 2", "Sa", "M", "X0", "E"), "duplicate V");
    expect_spec(SPEC("V1", "T1 2", "T1 2", "Sa", "M", "X0", "E"), "duplicate T");
    expect_spec(SPEC("V1", "T1 2", "Sa", "Sb", "M", "X0", "E"), "duplicate S");
    expect_spec(SPEC("V1", "Sa", "M", "X0", "E"), "missing T");
    expect_spec(SPEC("V1", "T1 2", "M", "X0", "E"), "missing S");
    expect_spec(SPEC("V1", "Tx 2", "Sa", "M", "X0", "E"), "bad time");
    expect_spec(SPEC("V1", "T1 1000000", "Sa", "M", "X0", "E"), "bad time");
    expect_spec(SPEC("V1", "T1", "Sa", "M", "X0", "E"), "bad time");
    expect_spec(SPEC("V1", "T1 2", "Sa", "R-b", "Aa=b", "M", "X0", "E"), "misplaced A");
    expect_spec(SPEC("V1", "T1 2", "R-b", "Sc", "M", "X0", "E"), "misplaced S");
    expect_spec(SPEC("V1", "T1 2", "Sa", "Anovalue", "M", "X0", "E"), "bad attribute");
    expect_spec(SPEC("V1", "T1 2", "Sa", "A=x", "M", "X0", "E"), "bad attribute");
    expect_spec(SPEC("V1", "T1 2", "Sa", "Rxbob", "M", "X0", "E"), "bad recipient");
    expect_spec(SPEC("V1", "T1 2", "Sa", "R-", "M", "X0", "E"), "bad recipient");
    expect_spec(SPEC("V1", "T1 2", "Sa", "R", "M", "X0", "E"), "bad recipient");
    expect_spec(SPEC("V1", "T1 2", "Sa", "NNEVER", "NNEVER", "R-b", "M", "X0", "E"), "duplicate N");
    expect_spec(SPEC("V1", "T1 2", "Sa", "Oa", "Ob", "R-b", "M", "X0", "E"), "duplicate O");
    expect_spec(SPEC("V1", "T1 2", "Sa", "NNEVER", "M", "X0", "E"), "not followed by R");
    expect_spec(SPEC("V1", "T1 2", "Sa", "M", "X0", "Oa", "E"), "not followed by R");
    expect_spec(SPEC("V1", "T1 2", "Sa", "Lx", "M", "X0", "E"), "misplaced L");
    expect_spec(SPEC("V1", "T1 2", "Sa", "X0", "M", "X0", "E"), "misplaced X");
    expect_spec(SPEC("V1", "T1 2", "Sa", "E"), "misplaced E");
    expect_spec(SPEC("V1", "T1 2", "Sa", "M", "X0"), "missing E");
    expect_spec(SPEC("V1", "T1 2", "Sa", "M", "X0", "Aa=b", "E"), "misplaced A");
    expect_spec(SPEC("V1", "T1 2", "Sa", "M", "X0", "Lx", "E"), "misplaced L");
    expect_spec(SPEC("V1", "T1 2", "Sa", "M", "X0", "E", "E"), "data after E");
    expect_spec(SPEC("V1", "T1 2", "Sa", "M", "X0", "Ex"), "bad E");
    expect_spec(SPEC("V1", "T1 2", "Sa", "M", "X00", "E"), "bad X");
    expect_spec(SPEC("V1", "T1 2", "Sa", "M", "Xabc", "E"), "bad X");
    /* M offsets that do not land on X */
    expect_spec(SPEC("V1", "T1 2", "Sa", "M00000000000000000043", "Lhello", "X7", "E"),
                "does not point at an X record");
    expect_spec(SPEC("V1", "T1 2", "Sa", "M00000000000000000001", "X0", "E"),
                "inside the envelope");
    expect_spec(SPEC("V1", "T1 2", "Sa", "M00000000000000099999", "X0", "E"), "X offset");
    expect_spec(SPEC("V1", "T1 2", "Sa", "M99999999999999999999", "X0", "E"), "bad M");
    expect_spec(SPEC("V1", "T1 2", "Sa", "M0000000000000000003a", "X0", "E"), "bad M");
    expect_spec(SPEC("V1", "T1 2", "Sa", "M123", "X0", "E"), "bad M");

    /* Record syntax */
    expect_raw("", "truncated");
    expect_raw("v1:1\n", "bad record type");
    expect_raw("V1:1\nQ1:x\n", "bad record type");
    expect_raw("V01:1\n", "bad length");
    expect_raw("V1234567890:1\n", "bad length");
    expect_raw("V-1:1\n", "bad length");
    expect_raw("V:1\n", "missing length");
    expect_raw("V1;1\n", "bad length");
    expect_raw("V11\n", "bad length");          /* ':' missing */
    expect_raw("V1:1x", "missing newline");
    expect_raw("V1:1", "truncated");
    expect_raw("V9:1\n", "truncated");
}
END_TEST

START_TEST(nul_in_sender_rejected)
{
    const char raw[] = "V1:1\nT3:1 2\nS3:a\0b\nM20:00000000000000000044\nX1:0\nE0:\n";
    strbuf err;
    strbuf_init(&err);
    const char *why = load_bytes(raw, sizeof(raw) - 1, &err);
    ck_assert_ptr_nonnull(why);
    ck_assert_ptr_nonnull(strstr(why, "NUL"));
    strbuf_release(&err);
}
END_TEST

START_TEST(content_reader_rejects_bad_content)
{
    /* An E record in the middle of the content: load does not read the
     * content, the content reader must refuse it. */
    strbuf f, err, line;
    strbuf_init(&f);
    strbuf_init(&err);
    strbuf_init(&line);
    build_file(&f, SPEC("V1", "T1 2", "Sa", "M", "Lone", "E", "Ltwo", "X9", "E"));
    write_whole("corrupt/c", f.data, f.len);
    int fd = open("corrupt/c", O_RDONLY);
    struct queue_message msg;
    ck_assert_int_eq(queue_message_load(fd, "x", &msg, &err), 0);
    queue_content_reader *cr = queue_content_open(fd, &msg);
    ck_assert_int_eq(queue_content_next(cr, &line, &err), 1);
    ck_assert_str_eq(strbuf_str(&line), "one");
    ck_assert_int_eq(queue_content_next(cr, &line, &err), -1);
    ck_assert_ptr_nonnull(strstr(strbuf_str(&err), "unexpected E"));
    queue_content_close(cr);
    queue_message_free(&msg);
    close(fd);
    strbuf_release(&f);
    strbuf_release(&err);
    strbuf_release(&line);
}
END_TEST

START_TEST(record_reader_generic)
{
    char *qid = write_sample();
    strbuf path, data, err;
    strbuf_init(&path);
    strbuf_init(&data);
    strbuf_init(&err);
    queue_path(&path, "incoming", qid);
    FILE *fp = fopen(path.data, "r");
    ck_assert_ptr_nonnull(fp);
    strbuf types;
    strbuf_init(&types);
    int type, rc;
    while ((rc = queue_record_read(fp, &type, &data, &err)) == 1) {
        strbuf_append_char(&types, type);
        if (type == QREC_SENDER)
            ck_assert_str_eq(strbuf_str(&data), "alice@example.org");
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(strbuf_str(&types), "VTSAANORRMLLLLLLLLLXNRE");
    fclose(fp);

    fp = fmemopen((void *)"L2:ab\nL2:abc\n", 13, "r");
    ck_assert_int_eq(queue_record_read(fp, &type, &data, &err), 1);
    ck_assert_int_eq(type, 'L');
    ck_assert_str_eq(strbuf_str(&data), "ab");
    ck_assert_int_eq(queue_record_read(fp, &type, &data, &err), -1);
    ck_assert(err.len > 0);
    fclose(fp);
    strbuf_release(&types);
    strbuf_release(&path);
    strbuf_release(&data);
    strbuf_release(&err);
    xfree(qid);
}
END_TEST

/* Random byte flips in a valid file: the reader never crashes, and what
 * it accepts keeps its promises (status offsets on status bytes, X at
 * content_end). */
START_TEST(mutated_files_never_crash)
{
    char *qid = write_sample();
    strbuf path, orig, err, line;
    strbuf_init(&path);
    strbuf_init(&orig);
    strbuf_init(&err);
    strbuf_init(&line);
    queue_path(&path, "incoming", qid);
    read_whole(path.data, &orig);
    unsigned seed = 4242;
    int accepted = 0;
    for (int iter = 0; iter < 1500; iter++) {
        strbuf m;
        strbuf_init(&m);
        strbuf_set(&m, orig.data, orig.len);
        int flips = 1 + rand_r(&seed) % 3;
        for (int k = 0; k < flips; k++)
            m.data[rand_r(&seed) % m.len] = (char)(rand_r(&seed) % 256);
        write_whole("corrupt/f", m.data, m.len);
        int fd = open("corrupt/f", O_RDONLY);
        struct queue_message msg;
        strbuf_reset(&err);
        if (queue_message_load(fd, qid, &msg, &err) == 0) {
            accepted++;
            for (int i = 0; i < msg.nrcpt; i++) {
                char c = m.data[msg.rcpts[i].status_offset];
                ck_assert(c == '-' || c == 'D');
            }
            ck_assert_int_eq(m.data[msg.content_end], 'X');
            queue_content_reader *cr = queue_content_open(fd, &msg);
            while (queue_content_next(cr, &line, &err) == 1)
                ;
            queue_content_close(cr);
            queue_message_free(&msg);
        } else {
            ck_assert(err.len > 0);
        }
        close(fd);
        strbuf_release(&m);
    }
    /* Flips inside data bytes (addresses, content) stay valid, so some
     * mutants must be accepted: the test exercises both paths. */
    ck_assert_int_gt(accepted, 0);
    ck_assert_int_lt(accepted, 1500);
    strbuf_release(&path);
    strbuf_release(&orig);
    strbuf_release(&err);
    strbuf_release(&line);
    xfree(qid);
}
END_TEST

/* A write error (here EFBIG from RLIMIT_FSIZE, standing in for ENOSPC)
 * makes commit fail with that errno and leaves nothing in the queue. */
START_TEST(write_error_keeps_errno_and_removes_file)
{
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = { .rlim_cur = 100000, .rlim_max = RLIM_INFINITY };
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    strbuf err;
    strbuf_init(&err);
    queue_writer *w = queue_writer_create("incoming", &err);
    ck_assert_ptr_nonnull(w);
    queue_writer_record_str(w, QREC_VERSION, "1");
    queue_writer_record_str(w, QREC_TIME, "1 0");
    queue_writer_record_str(w, QREC_SENDER, "a@b");
    queue_writer_record_str(w, QREC_RCPT, "-c@d");
    queue_writer_content_begin(w);
    char line[1000];
    memset(line, 'x', sizeof(line));
    for (int i = 0; i < 300; i++)
        queue_writer_line(w, line, sizeof(line));
    queue_writer_content_end(w);
    errno = 0;
    ck_assert_int_eq(queue_writer_commit(w, &err), -1);
    ck_assert_int_eq(errno, EFBIG);
    ck_assert_msg(strstr(strbuf_str(&err), "write") != NULL, "err: %s", strbuf_str(&err));
    ck_assert_int_eq(count_entries("incoming"), 0);
    queue_writer_abort(w);
    ck_assert_int_eq(count_entries("incoming"), 0);
    strbuf_release(&err);
}
END_TEST

START_TEST(purge_stale_temp_files)
{
    write_whole("incoming/.tmp-1-0", "old", 3);
    write_whole("incoming/.tmp-1-1", "new", 3);
    write_whole("incoming/.other", "old", 3);
    char *qid = write_sample();
    struct timespec old[2] = { { .tv_sec = time(NULL) - 7200 }, { .tv_sec = time(NULL) - 7200 } };
    ck_assert_int_eq(utimensat(AT_FDCWD, "incoming/.tmp-1-0", old, 0), 0);
    ck_assert_int_eq(utimensat(AT_FDCWD, "incoming/.other", old, 0), 0);
    strbuf p;
    strbuf_init(&p);
    queue_path(&p, "incoming", qid);
    ck_assert_int_eq(utimensat(AT_FDCWD, p.data, old, 0), 0);
    ck_assert_int_eq(queue_purge_temp("incoming", 3600), 1);
    ck_assert_int_eq(access("incoming/.tmp-1-0", F_OK), -1);
    ck_assert_int_eq(access("incoming/.tmp-1-1", F_OK), 0);
    ck_assert_int_eq(access("incoming/.other", F_OK), 0);
    ck_assert_int_eq(access(p.data, F_OK), 0);      /* real messages stay */
    ck_assert_int_eq(queue_purge_temp("nosuchqueue", 1), -1);
    strbuf_release(&p);
    xfree(qid);
}
END_TEST

/* Writer misuse panics (SIGABRT) instead of writing a file no reader
 * would accept. */
static queue_writer *misuse_writer(void)
{
    strbuf err;
    strbuf_init(&err);
    queue_writer *w = queue_writer_create("incoming", &err);
    ck_assert_ptr_nonnull(w);
    strbuf_release(&err);
    return w;
}

START_TEST(writer_panics_on_end_by_hand)
{
    queue_writer *w = misuse_writer();
    queue_writer_record_str(w, QREC_VERSION, "1");
    queue_writer_record(w, QREC_END, "", 0);
}
END_TEST

START_TEST(writer_panics_on_record_inside_content)
{
    queue_writer *w = misuse_writer();
    queue_writer_record_str(w, QREC_VERSION, "1");
    queue_writer_content_begin(w);
    queue_writer_record_str(w, QREC_RCPT, "-x@y");
}
END_TEST

START_TEST(writer_panics_without_version_first)
{
    queue_writer *w = misuse_writer();
    queue_writer_record_str(w, QREC_SENDER, "x@y");
}
END_TEST

START_TEST(writer_panics_on_unknown_type)
{
    queue_writer *w = misuse_writer();
    queue_writer_record_str(w, 'Q', "x");
}
END_TEST

/* ---- reuse of finished files (recycle/) ---------------------------------- */

/* Write a message of nlines body lines "tag line N" into incoming/ with
 * the given writer options; returns its id, *reused what the writer says. */
static char *write_tagged(int options, const char *tag, int nlines, int *reused)
{
    strbuf err, line;
    strbuf_init(&err);
    strbuf_init(&line);
    queue_writer *w = queue_writer_create_opts("incoming", options, &err);
    ck_assert_msg(w != NULL, "create: %s", strbuf_str(&err));
    char tbuf[64];
    /* T as cleanup writes it: the id's own time. */
    const char *id = queue_writer_id(w);
    char usec_hex[6];
    memcpy(usec_hex, id + 9, 5);
    usec_hex[5] = '\0';
    snprintf(tbuf, sizeof(tbuf), "%lld %ld", queue_id_time(id), strtol(usec_hex, NULL, 16));
    queue_writer_record_str(w, QREC_VERSION, "1");
    queue_writer_record_str(w, QREC_TIME, tbuf);
    queue_writer_record_str(w, QREC_SENDER, tag);
    queue_writer_record_str(w, QREC_RCPT, "-rcpt@example.org");
    queue_writer_content_begin(w);
    for (int i = 0; i < nlines; i++) {
        strbuf_printf(&line, "%s line %d ....................................................", tag, i);
        queue_writer_line(w, line.data, line.len);
    }
    queue_writer_content_end(w);
    char *qid = xstrdup(queue_writer_id(w));
    *reused = queue_writer_reused(w);
    ck_assert_msg(queue_writer_commit(w, &err) == 0, "commit: %s", strbuf_str(&err));
    queue_writer_abort(w);
    strbuf_release(&err);
    strbuf_release(&line);
    return qid;
}

/* incoming/QID must load and hold exactly the message write_tagged wrote. */
static void check_tagged(const char *qid, const char *tag, int nlines)
{
    strbuf path, line, err, want;
    strbuf_init(&path);
    strbuf_init(&line);
    strbuf_init(&err);
    strbuf_init(&want);
    queue_path(&path, "incoming", qid);
    struct queue_message msg;
    int fd;
    open_and_load(path.data, qid, &msg, &fd);
    ck_assert_str_eq(msg.sender, tag);
    ck_assert_int_eq(msg.nrcpt, 1);
    ck_assert_int_eq(queue_message_unchanged(fd, &msg), 1);
    queue_content_reader *cr = queue_content_open(fd, &msg);
    for (int i = 0; i < nlines; i++) {
        ck_assert_int_eq(queue_content_next(cr, &line, &err), 1);
        strbuf_printf(&want, "%s line %d ....................................................", tag, i);
        ck_assert_str_eq(strbuf_str(&line), strbuf_str(&want));
    }
    ck_assert_int_eq(queue_content_next(cr, &line, &err), 0);
    queue_content_close(cr);
    /* Nothing of an older, longer message after E. */
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    strbuf bytes;
    strbuf_init(&bytes);
    read_whole(path.data, &bytes);
    ck_assert_uint_eq(bytes.len, (size_t) st.st_size);
    ck_assert_int_eq(memcmp(bytes.data + bytes.len - 4, "E0:\n", 4), 0);
    queue_message_free(&msg);
    close(fd);
    strbuf_release(&bytes);
    strbuf_release(&path);
    strbuf_release(&line);
    strbuf_release(&err);
    strbuf_release(&want);
}

/* What qmgr does with a finished message. */
static void recycle_message(const char *qid)
{
    strbuf from, to;
    strbuf_init(&from);
    strbuf_init(&to);
    queue_path(&from, "incoming", qid);
    queue_path(&to, QUEUE_RECYCLE_DIR, qid);
    ck_assert_int_eq(rename(from.data, to.data), 0);
    strbuf_release(&from);
    strbuf_release(&to);
}

static ino_t inode_of(const char *queue, const char *qid)
{
    strbuf p;
    strbuf_init(&p);
    queue_path(&p, queue, qid);
    struct stat st;
    ck_assert_int_eq(stat(p.data, &st), 0);
    strbuf_release(&p);
    return st.st_ino;
}

START_TEST(reuse_big_file_for_small_message)
{
    int reused;
    /* Far more than one 64 KiB write buffer. */
    char *big = write_tagged(0, "big", 3000, &reused);
    ck_assert_int_eq(reused, 0);
    ino_t ino = inode_of("incoming", big);
    recycle_message(big);
    char *small = write_tagged(QUEUE_WRITER_REUSE, "small", 3, &reused);
    ck_assert_int_eq(reused, 1);
    ck_assert_str_ne(small, big);
    ck_assert_uint_eq(inode_of("incoming", small), ino);
    ck_assert_int_eq(count_entries(QUEUE_RECYCLE_DIR), 0);
    ck_assert_int_eq(count_entries("incoming"), 1);     /* no temp file left */
    check_tagged(small, "small", 3);
    /* And back: a small file reused for a big message. */
    recycle_message(small);
    char *big2 = write_tagged(QUEUE_WRITER_REUSE, "big2", 3000, &reused);
    ck_assert_int_eq(reused, 1);
    ck_assert_uint_eq(inode_of("incoming", big2), ino);
    check_tagged(big2, "big2", 3000);
    xfree(big);
    xfree(small);
    xfree(big2);
}
END_TEST

START_TEST(reuse_each_file_once_then_create)
{
    int reused;
    char *old[3];
    ino_t ino[3];
    for (int i = 0; i < 3; i++) {
        old[i] = write_tagged(0, "old", 10 * (i + 1), &reused);
        ino[i] = inode_of("incoming", old[i]);
        recycle_message(old[i]);
    }
    char *fresh[4];
    for (int i = 0; i < 4; i++) {
        fresh[i] = write_tagged(QUEUE_WRITER_REUSE, "new", 2, &reused);
        ck_assert_int_eq(reused, i < 3);
        check_tagged(fresh[i], "new", 2);
        for (int j = 0; j < i; j++)
            ck_assert_str_ne(fresh[i], fresh[j]);
        ino_t now = inode_of("incoming", fresh[i]);
        int was_recycled = now == ino[0] || now == ino[1] || now == ino[2];
        ck_assert_int_eq(was_recycled, i < 3);
    }
    ck_assert_int_eq(count_entries("incoming"), 4);
    for (int i = 0; i < 3; i++)
        xfree(old[i]);
    for (int i = 0; i < 4; i++)
        xfree(fresh[i]);
}
END_TEST

START_TEST(reuse_refuses_odd_files)
{
    int reused;
    /* A file with a second link (the other name must survive intact). */
    write_whole("recycle/A1", "linked", 6);
    ck_assert_int_eq(link("recycle/A1", "corrupt/keep"), 0);
    /* A FIFO (an open for writing would block) and a symlink. */
    ck_assert_int_eq(mkfifo("recycle/A2", 0600), 0);
    write_whole("corrupt/target", "target", 6);
    ck_assert_int_eq(symlink("../corrupt/target", "recycle/A3"), 0);
    ck_assert_int_eq(mkdir("recycle/A4", 0700), 0);
    int other_owner = 0;
    if (geteuid() == 0) {
        write_whole("recycle/A5", "someone else's", 14);
        ck_assert_int_eq(chown("recycle/A5", 65534, 65534), 0);
        other_owner = 1;
    }
    char *qid = write_tagged(QUEUE_WRITER_REUSE, "fresh", 2, &reused);
    ck_assert_int_eq(reused, 0);
    check_tagged(qid, "fresh", 2);
    /* Each odd file was taken out of recycle/ and dropped, the (empty)
     * directory too; incoming/ holds only the new message. */
    ck_assert_int_eq(count_entries(QUEUE_RECYCLE_DIR), 0);
    ck_assert_int_eq(count_entries("incoming"), 1);
    ck_assert_int_eq(access("recycle/A1", F_OK), -1);
    ck_assert_int_eq(access("recycle/A2", F_OK), -1);
    ck_assert_int_eq(access("recycle/A3", F_OK), -1);
    if (other_owner)
        ck_assert_int_eq(access("recycle/A5", F_OK), -1);
    strbuf bytes;
    strbuf_init(&bytes);
    read_whole("corrupt/keep", &bytes);
    ck_assert_str_eq(strbuf_str(&bytes), "linked");
    read_whole("corrupt/target", &bytes);
    ck_assert_str_eq(strbuf_str(&bytes), "target");
    struct stat st;
    ck_assert_int_eq(stat("corrupt/keep", &st), 0);
    ck_assert_uint_eq(st.st_nlink, 1);
    ck_assert_uint_ne(inode_of("incoming", qid), st.st_ino);
    strbuf_release(&bytes);
    xfree(qid);
}
END_TEST

START_TEST(reuse_falls_back_to_create)
{
    int reused;
    /* Empty recycle/. */
    char *a = write_tagged(QUEUE_WRITER_REUSE, "a", 2, &reused);
    ck_assert_int_eq(reused, 0);
    check_tagged(a, "a", 2);
    /* No recycle/ at all (a spool made before it existed). */
    ck_assert_int_eq(rmdir(QUEUE_RECYCLE_DIR), 0);
    for (int i = 0; i < 40; i++) {
        char *b = write_tagged(QUEUE_WRITER_REUSE, "b", 1, &reused);
        ck_assert_int_eq(reused, 0);
        check_tagged(b, "b", 1);
        xfree(b);
    }
    xfree(a);
}
END_TEST

START_TEST(reader_sees_rewrite_of_recycled_file)
{
    int reused;
    char *old = write_tagged(0, "old", 5, &reused);
    strbuf path;
    strbuf_init(&path);
    queue_path(&path, "incoming", old);
    struct queue_message msg;
    int fd;
    open_and_load(path.data, old, &msg, &fd);   /* a reader holds it open */
    ck_assert_int_eq(queue_message_unchanged(fd, &msg), 1);
    recycle_message(old);
    ck_assert_int_eq(queue_message_unchanged(fd, &msg), 1);    /* moved, not rewritten */
    char *fresh = write_tagged(QUEUE_WRITER_REUSE, "new", 5, &reused);
    ck_assert_int_eq(reused, 1);
    ck_assert_int_eq(queue_message_unchanged(fd, &msg), 0);
    queue_message_free(&msg);
    close(fd);
    strbuf_release(&path);
    xfree(old);
    xfree(fresh);
}
END_TEST

/* Write a one-line message into incoming/ with the current tmpfile
 * method, checking how many names incoming/ holds while it is written
 * (entries_while_writing); then set method_at_commit and commit to
 * to_queue.  Returns the id. */
static char *write_small(const char *to_queue, int entries_while_writing,
                         enum tmpfile_method method_at_commit)
{
    strbuf err;
    strbuf_init(&err);
    queue_writer *w = queue_writer_create("incoming", &err);
    ck_assert_msg(w != NULL, "create: %s", strbuf_str(&err));
    queue_writer_record_str(w, QREC_VERSION, "1");
    queue_writer_record_str(w, QREC_TIME, "1 0");
    queue_writer_record_str(w, QREC_SENDER, "u");
    queue_writer_record_str(w, QREC_RCPT, "-r@example.org");
    queue_writer_content_begin(w);
    queue_writer_line(w, "body", 4);
    queue_writer_content_end(w);
    ck_assert_int_eq(count_entries("incoming"), entries_while_writing);
    tmpfile_method_set(method_at_commit);
    char *qid = xstrdup(queue_writer_id(w));
    ck_assert_msg(queue_writer_commit_to(w, to_queue, &err) == 0, "commit: %s", strbuf_str(&err));
    queue_writer_abort(w);
    strbuf_release(&err);
    strbuf path;
    strbuf_init(&path);
    queue_path(&path, to_queue, qid);
    struct queue_message msg;
    int fd;
    open_and_load(path.data, qid, &msg, &fd);
    ck_assert_int_eq(msg.nrcpt, 1);
    ck_assert_int_eq(msg.size, 6);
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0600);
    ck_assert_int_eq(st.st_nlink, 1);
    queue_message_free(&msg);
    close(fd);
    strbuf_release(&path);
    return qid;
}

/* The fresh file is unnamed until commit links it straight to its id
 * (no .tmp file at any time), in incoming/ and with commit_to in hold/;
 * without O_TMPFILE a .tmp file is used; and a process that finds at
 * commit that it cannot link copies to a .tmp file and renames that. */
START_TEST(writer_unnamed_file_linked_at_commit)
{
    char *qid = write_small("incoming", 0, TMPFILE_UNKNOWN);
    ck_assert_int_ne(tmpfile_method(), TMPFILE_NONE);
    ck_assert_int_eq(count_entries("incoming"), 1);
    xfree(qid);
    qid = write_small("hold", 1, tmpfile_method());
    ck_assert_int_eq(count_entries("incoming"), 1);
    ck_assert_int_eq(count_entries("hold"), 1);
    xfree(qid);
    /* The /proc way of naming. */
    tmpfile_method_set(TMPFILE_PROC);
    qid = write_small("hold", 1, TMPFILE_PROC);
    ck_assert_int_eq(count_entries("hold"), 2);
    xfree(qid);
    /* Unnamed while writing, no way to link at commit: copied, renamed. */
    tmpfile_method_set(TMPFILE_UNKNOWN);
    qid = write_small("incoming", 1, TMPFILE_NONE);
    ck_assert_int_eq(count_entries("incoming"), 2);
    xfree(qid);
    /* From then on: a .tmp file from the start (2 messages + it). */
    qid = write_small("incoming", 3, TMPFILE_NONE);
    ck_assert_int_eq(count_entries("incoming"), 3);
    xfree(qid);
    tmpfile_method_set(TMPFILE_UNKNOWN);
}
END_TEST

Suite *queue_suite(void)
{
    Suite *s = suite_create("queue");
    TCase *ti = tcase_create("ids");
    tcase_add_test(ti, id_make_known_value);
    tcase_add_test(ti, id_invalid_strings);
    tcase_add_test(ti, id_sorts_by_time);
    tcase_add_test(ti, paths_hashed_and_flat);
    suite_add_tcase(s, ti);

    TCase *tc = tcase_create("spool");
    tcase_add_checked_fixture(tc, spool_setup, spool_teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, writer_ids_unique_and_increasing);
    tcase_add_test(tc, dirs_created_with_modes);
    tcase_add_test(tc, move_between_queues);
    tcase_add_test(tc, scan_skips_dotfiles_finds_hashed);
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, round_trip_large);
    tcase_add_test(tc, truncated_at_every_offset);
    tcase_add_test(tc, mark_done_flips_one_byte);
    tcase_add_test(tc, abort_leaves_nothing);
    tcase_add_test(tc, writer_into_maildrop);
    tcase_add_test(tc, writer_commit_to_other_queue);
    tcase_add_test(tc, writer_unnamed_file_linked_at_commit);
    tcase_add_test(tc, malformed_files);
    tcase_add_test(tc, nul_in_sender_rejected);
    tcase_add_test(tc, content_reader_rejects_bad_content);
    tcase_add_test(tc, record_reader_generic);
    tcase_add_test(tc, mutated_files_never_crash);
    tcase_add_test(tc, write_error_keeps_errno_and_removes_file);
    tcase_add_test(tc, purge_stale_temp_files);
    tcase_add_test(tc, reuse_big_file_for_small_message);
    tcase_add_test(tc, reuse_each_file_once_then_create);
    tcase_add_test(tc, reuse_refuses_odd_files);
    tcase_add_test(tc, reuse_falls_back_to_create);
    tcase_add_test(tc, reader_sees_rewrite_of_recycled_file);
    suite_add_tcase(s, tc);

    /* Unchecked fixture: the spool is made and removed in the runner,
     * since a test that aborts never runs a checked teardown. */
    TCase *tm = tcase_create("writer_misuse");
    tcase_add_unchecked_fixture(tm, spool_setup, spool_teardown);
    tcase_add_test_raise_signal(tm, writer_panics_on_end_by_hand, SIGABRT);
    tcase_add_test_raise_signal(tm, writer_panics_on_record_inside_content, SIGABRT);
    tcase_add_test_raise_signal(tm, writer_panics_without_version_first, SIGABRT);
    tcase_add_test_raise_signal(tm, writer_panics_on_unknown_type, SIGABRT);
    suite_add_tcase(s, tm);
    return s;
}
