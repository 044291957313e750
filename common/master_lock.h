/*
 * master_lock.h - the master's pid file, which is also its lock.
 *
 * The file is queue_directory/pid/master.pid.  A running master holds an
 * fcntl(2) write lock on it for its whole life and keeps its pid in it, so
 * "is the mail system running?" is "is the file locked?" -- a stale file
 * left by a crash is never mistaken for a live master.
 *
 * Interface:
 *   master_lock_path(out, queue_dir)   the path, into out.
 *   master_lock_acquire(path, &holder, err)   create/lock/write our pid;
 *       returns the open fd (keep it open: closing it releases the lock),
 *       or -1: when another process holds the lock *holder is its pid and
 *       err says "the mail system is already running (pid N)".
 *   master_lock_holder(path)   pid of the locking process, 0 when none
 *       (no file, or not locked), -1 on an error other than ENOENT.
 *
 * Contract: fcntl locks are per process and are not inherited by fork(), so
 * the master must take the lock in the process that stays running (after
 * it has forked to the background).
 */
#ifndef POSTERN_MASTER_LOCK_H
#define POSTERN_MASTER_LOCK_H

#include <sys/types.h>
#include "strbuf.h"

void master_lock_path(strbuf *out, const char *queue_dir);
int master_lock_acquire(const char *path, pid_t *holder, strbuf *err);
pid_t master_lock_holder(const char *path);

#endif
