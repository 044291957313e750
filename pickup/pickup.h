/*
 * pickup.h - pickup's internal interfaces (pickup/ only).
 *
 * pickup.c is the daemon and the maildrop/ reader; pickup_requeue.c
 * passes requeued queue files (requeue/) through cleanup again.
 */
#ifndef POSTERN_PICKUP_H
#define POSTERN_PICKUP_H

/* Hand every requeue/ file to cleanup (timeout: seconds per IPC read or
 * write); stops at the first temporary failure (the next wakeup retries). */
void pickup_requeue_scan(int timeout);

#endif
