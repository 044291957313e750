/*
 * showq.c - the queue listing service (Postfix's showq), so that users who
 * may not read the spool can still see the queue.
 *
 * master.cf: `showq unix n - y - - showq` (public/showq, unprivileged,
 * chrooted).  Conversation (doc/internals.md): the client sends
 * {request=list}; showq answers with one listing record per message
 * (common/queue_list.h) and then {done=1, count=N}.  Any other request
 * gets {status=1, reason=...}.
 *
 * Contract: the listing streams, one message in memory at a time, so
 * 100,000 queued messages cost linear time and constant memory; a client
 * that stops reading is cut off by ipc_timeout.  showq only reads the
 * queue.
 */
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "ipc.h"
#include "log.h"
#include "queue_list.h"
#include "server.h"

#define REQUEST_TIMEOUT 10

struct emit_ctx {
    ipc_stream *s;
    long long count;
};

static int emit(const ipc_record *r, void *ctx)
{
    struct emit_ctx *e = ctx;
    if (ipc_send(e->s, r) < 0)
        return 1;               /* client gone: stop the walk */
    e->count++;
    return 0;
}

static void showq_serve(int client_fd)
{
    int fd = dup(client_fd);
    if (fd < 0) {
        log_warning("dup: %m");
        return;
    }
    ipc_stream *s = ipc_stream_open(fd, REQUEST_TIMEOUT);
    ipc_stream_set_limits(s, 4096, 65536);
    ipc_record *r = ipc_record_new();
    int rc = ipc_recv(s, r);
    if (rc != 0) {
        if (rc < 0)
            log_warning("reading request: %s", ipc_error(s));
        goto done;
    }
    const char *req = ipc_record_get_str(r, "request");
    if (req == NULL || strcmp(req, "list") != 0) {
        ipc_build(r, "status", "1", "reason", "unknown request", (char *) NULL);
        (void) ipc_send(s, r);
        goto done;
    }
    long long timeout = config_time("ipc_timeout");
    ipc_stream_set_timeout(s, timeout > 0 && timeout < 3600 ? (int) timeout : 3600);
    struct emit_ctx e = { s, 0 };
    int walked = queue_list_walk(emit, &e);
    if (walked > 0) {
        log_warning("listing cut short: %s", ipc_error(s));
        goto done;
    }
    ipc_record_reset(r);
    if (walked < 0) {
        ipc_record_add_int(r, "status", 1);
        ipc_record_add_str(r, "reason", "cannot read the queue");
        log_warning("cannot read the queue: %m");
    } else {
        ipc_record_add_int(r, "done", 1);
        ipc_record_add_int(r, "count", e.count);
    }
    if (ipc_send(s, r) < 0)
        log_debug("sending end of listing: %s", ipc_error(s));
done:
    ipc_record_free(r);
    ipc_stream_close(s);
}

int main(int argc, char **argv)
{
    static const struct server_spec spec = {
        .program = "showq",
        .mode = SERVER_SINGLE,
        .serve = showq_serve,
    };
    return server_main(argc, argv, &spec);
}
