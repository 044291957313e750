/*
 * cmd_map.c - `postern map`: build and query lookup tables (Postfix's
 * postmap, as a subcommand).
 *
 *   postern map build TYPE:FILE...        write FILE.db from the text FILE
 *                                         (TYPE hash or btree), atomically
 *   postern map query [-a] [-d DELIMS] MAPS KEY
 *                                         look KEY up in the list MAPS
 *                                         ("hash:/etc/x, regexp:/etc/y");
 *                                         -a: as an address, with the
 *                                         user+ext@domain ... @domain search
 *                                         order, extension delimiters DELIMS
 *                                         (default "+")
 *
 * Contract: build stops at the first table that fails, naming file and
 * line.  query prints the value on stdout and exits 0 when found, exits 1
 * when not found (as postmap -q), 75 on a temporary lookup error.  Neither
 * needs main.cf: tables are named explicitly.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "maps.h"
#include "postern.h"
#include "strbuf.h"

static int map_cmd_build(int argc, char **argv)
{
    if (argc < 1)
        postern_fatal("usage: postern map build TYPE:FILE...");
    strbuf err;
    strbuf_init(&err);
    for (int i = 0; i < argc; i++) {
        const char *colon = strchr(argv[i], ':');
        if (!colon)
            postern_fatal("%s: expected TYPE:FILE (hash:/etc/postern/aliases)", argv[i]);
        strbuf type;
        strbuf_init(&type);
        strbuf_set(&type, argv[i], (size_t) (colon - argv[i]));
        if (map_build(strbuf_str(&type), colon + 1, &err) < 0)
            postern_fatal("%s", strbuf_str(&err));
        strbuf_release(&type);
    }
    strbuf_release(&err);
    return 0;
}

static int map_cmd_query(int argc, char **argv)
{
    int as_address = 0;
    const char *delims = "+";
    int i = 0;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-a") == 0)
            as_address = 1;
        else if (strcmp(argv[i], "-d") == 0 && i + 1 < argc)
            delims = argv[++i];
        else
            postern_fatal("unknown option %s", argv[i]);
    }
    if (argc - i != 2)
        postern_fatal("usage: postern map query [-a] [-d DELIMS] MAPS KEY");
    strbuf err, out;
    strbuf_init(&err);
    strbuf_init(&out);
    maps *ms = maps_open(argv[i], &err);
    if (!ms)
        postern_fatal("%s", strbuf_str(&err));
    int rc = as_address ? maps_lookup_addr(ms, argv[i + 1], delims, &out)
                        : maps_lookup(ms, argv[i + 1], &out);
    maps_close(ms);
    if (rc == 1)
        printf("%s\n", strbuf_str(&out));
    strbuf_release(&err);
    strbuf_release(&out);
    if (rc < 0) {
        postern_warning("temporary lookup error for \"%s\"", argv[i + 1]);
        return 75;
    }
    return rc == 1 ? 0 : 1;
}

int postern_cmd_map(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "build") == 0)
        return map_cmd_build(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "query") == 0)
        return map_cmd_query(argc - 2, argv + 2);
    postern_fatal("usage: postern map build TYPE:FILE... | "
                  "postern map query [-a] [-d DELIMS] MAPS KEY");
}
