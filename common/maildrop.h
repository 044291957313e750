/*
 * maildrop.h - reading the maildrop file: the record stream sendmail hands
 * postdrop and pickup reads back (grammar: doc/submission.md).
 *
 * Interface:
 *   maildrop_msg_init(m) / maildrop_msg_free(m)
 *   maildrop_read_envelope(fp, m, &first, line, why)
 *       read V .. up to the first L or E record; m gets the sender, the
 *       recipient count, whether -t (flags=extract) was asked, and in
 *       m->env the attributes for cleanup's envelope record, in order:
 *       fullname envid ret, and notify/orcpt/rcpt per recipient.  first is
 *       the type of the record that ended the envelope (QREC_LINE or
 *       QREC_END, then checked to be the last byte) and line its data.
 *       m->arrival: the T record's seconds when it has a plausible one
 *       (informational: the queue listing shows it; cleanup sets the
 *       real arrival time).  0 ok, -1 malformed (why).
 *   maildrop_read_content(fp, line, why)
 *       the next content line after the first: 1 a line, 0 the end record
 *       with nothing after it, -1 malformed (why).
 *
 * Users: pickup (to feed cleanup) and the queue listing
 * (common/queue_list.c: showq, postern queue), so that one parser decides
 * what a maildrop file is.
 *
 * Contract: the input is untrusted (any local user can write it through
 * postdrop); see maildrop.c for what is checked.  Pure apart from reading
 * fp.
 */
#ifndef POSTERN_MAILDROP_H
#define POSTERN_MAILDROP_H

#include <stdio.h>
#include "ipc.h"
#include "strbuf.h"

struct maildrop_msg {
    int have_sender;
    strbuf sender;              /* "" = null sender */
    ipc_record *env;            /* envelope attributes for cleanup, in order */
    int nrcpt;
    int extract;                /* flags=extract (sendmail -t) */
    long long arrival;          /* T record's seconds, 0 = none or not a number */
};

void maildrop_msg_init(struct maildrop_msg *m);
void maildrop_msg_free(struct maildrop_msg *m);
int maildrop_read_envelope(FILE *fp, struct maildrop_msg *m, int *first, strbuf *line,
                           strbuf *why);
int maildrop_read_content(FILE *fp, strbuf *line, strbuf *why);

#endif
