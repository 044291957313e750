/*
 * commands.c - the table of postern's subcommands: one row each.
 * Add a row (and a cmd_NAME.c with its handler) to add a command; the
 * usage text is printed by `postern` without arguments.
 */
#include <stddef.h>

#include "postern.h"

const struct postern_command postern_commands[] = {
    { "start", postern_cmd_start, "start" },
    { "stop", postern_cmd_stop, "stop" },
    { "reload", postern_cmd_reload, "reload" },
    { "status", postern_cmd_status, "status" },
    { "check", postern_cmd_check, "check" },
    { "init", postern_cmd_init, "init DIR [--port N]" },
    { "map", postern_cmd_map, "map build TYPE:FILE... | map query [-a] [-d DELIMS] MAPS KEY" },
    { "queue", postern_cmd_queue, "queue [list] [-j] [ID...|ALL] [--from ADDR|DOMAIN] [--to ADDR|DOMAIN]" },
    { "queue", postern_cmd_queue, "queue delete|hold|release|requeue ID...|ALL [--from ...] [--to ...]" },
    { "queue", postern_cmd_queue, "queue cat [-e] [-h] [-b] ID" },
    { "flush", postern_cmd_flush, "flush" },
    { "conf", postern_cmd_conf, "conf [-n|-d] [-h] [-x] [NAME...] | conf NAME=VALUE... | conf -M [SERVICE[/TYPE]...]" },
    { NULL, NULL, NULL },
};
