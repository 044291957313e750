/*
 * queue_select.h - which queued messages a `postern queue` command means.
 *
 * Arguments after the action: queue ids, the word ALL, and the options
 * --from PATTERN / --to PATTERN (also --from=PATTERN), in any order.
 * A message is selected when its id is one of the ids given (any id when
 * none, or ALL), its sender matches --from and one of its pending
 * recipients matches --to (when given).
 *
 * PATTERN is an address (user@example.com: the whole address, compared
 * without regard to case), a domain (example.com or @example.com: the
 * address's domain), a parent domain (.example.com: any subdomain of it),
 * or <> (the null sender).
 *
 * Interface: queue_select_init/free; queue_select_parse(sel, argc, argv,
 * err) adds arguments (0 ok, -1 with a one-line reason in err: a bad queue
 * id, an unknown option, a missing or malformed pattern); queue_select_any
 * tells whether anything selected messages (surgery refuses an empty
 * selection); queue_select_id (the id filter alone), queue_select_envelope
 * (the address filters), queue_select_addr_match (one pattern).
 *
 * Contract: ids are validated with queue_id_valid(), so they are safe as
 * file names; nothing here touches the spool.
 */
#ifndef POSTERN_QUEUE_SELECT_H
#define POSTERN_QUEUE_SELECT_H

#include "strbuf.h"

struct queue_select {
    int all;                    /* ALL was given */
    int nids;
    char **ids;                 /* sorted after queue_select_parse */
    char *from;                 /* pattern or NULL */
    char *to;                   /* pattern or NULL */
};

void queue_select_init(struct queue_select *s);
void queue_select_free(struct queue_select *s);
int queue_select_parse(struct queue_select *s, int argc, char **argv, strbuf *err);
/* 1 when ids, ALL, --from or --to were given. */
int queue_select_any(const struct queue_select *s);
/* 1 when the id filter passes qid (always when no ids were given). */
int queue_select_id(const struct queue_select *s, const char *qid);
/* 1 when the address filters pass (rcpts: the pending recipients). */
int queue_select_envelope(const struct queue_select *s, const char *sender,
                          const char *const *rcpts, int nrcpt);
/* 0 ok, -1 with reason in err. */
int queue_select_pattern_check(const char *pattern, strbuf *err);
int queue_select_addr_match(const char *pattern, const char *addr);

#endif
