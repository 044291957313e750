/*
 * queue_internal.h - helpers shared by the queue_*.c files only.
 *
 * Interface: QUEUE_HASH_INDEX (the id character that picks the hash
 * subdirectory), queue_is_hashed(queue_name).
 * Contract: not for daemons; they use queue.h.
 */
#ifndef POSTERN_QUEUE_INTERNAL_H
#define POSTERN_QUEUE_INTERNAL_H

/* Last microseconds digit: 9 seconds digits + 5 microseconds digits - 1. */
#define QUEUE_HASH_INDEX 13

/* 1 if queue_name (deferred defer bounce trace) is hashed into 0-F. */
int queue_is_hashed(const char *queue_name);

#endif
