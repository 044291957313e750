/*
 * maps.h - lookup tables named "type:name", behind one interface.
 *
 * Types: hash: and btree: (Berkeley DB 5.3 file NAME.db, built by
 * `postern map build`), texthash: (the text file read at open), inline:{
 * key=value, ... }, static:value, cidr: (file of "network/len result"
 * lines, IPv4 and IPv6, first match wins), regexp: (POSIX extended,
 * Postfix's "/pattern/flags result" and "!/pattern/" lines, flags i and x
 * ... ; $1..$9 substitution in results), unix:passwd.byname (system users).
 * "proxy:type:name" is accepted and opens type:name directly.
 * Text files: "key value" lines, '#' comments, leading-whitespace
 * continuation lines, keys lowercased (hash/texthash are case-folded).
 *
 * Interface:
 *   map_open(spec, err)          open "type:name"; NULL + err on failure
 *                                ("texthash:/x: line 3: missing value").
 *   map_lookup(map, key, out)    1 found (value in out), 0 not found,
 *                                -1 temporary error.
 *   map_close(map)
 *   maps_open(list, err)         a list "type:a, type:b" searched in order;
 *   maps_lookup(maps, key, out)  first hit wins.
 *   maps_open_param(param, report)  maps_open() of the list in main.cf
 *                                parameter param: NULL without a report
 *                                when it is empty; NULL after
 *                                report("PARAM: reason") when it fails.
 *                                report is the caller's policy (log_warning,
 *                                log_error, a daemon's config-problem hook).
 *   maps_lookup_addr(maps, addr, delim, out)  Postfix's search order for an
 *                                address: user+ext@domain, user@domain,
 *                                user+ext, user, @domain (user forms only
 *                                for local domains when given; see .c).
 *   maps_lookup_addr_ex(maps, addr, delim, flags, out)  the same with
 *                                MAPS_ADDR_NO_USER: skip the bare user+ext
 *                                and user forms (domain not local).
 *   map_build(type, file, err)   build NAME.db from the text file NAME
 *                                (hash or btree), atomically (temp + rename).
 *
 * Contract: lookups never modify the key; a map with a bad line fails to
 * open (naming file and line) rather than silently skipping it; regexp
 * lookups are bounded (no user-controlled pattern).
 */
#ifndef POSTERN_MAPS_H
#define POSTERN_MAPS_H

#include "strbuf.h"

typedef struct map map;
typedef struct maps maps;

map *map_open(const char *spec, strbuf *err);
int map_lookup(map *m, const char *key, strbuf *out);
const char *map_spec(const map *m);
void map_close(map *m);

maps *maps_open(const char *list, strbuf *err);
maps *maps_open_param(const char *param,
                      void (*report)(const char *fmt, ...) __attribute__((format(printf, 1, 2))));
int maps_lookup(maps *ms, const char *key, strbuf *out);
int maps_lookup_addr(maps *ms, const char *addr, const char *delim, strbuf *out);
#define MAPS_ADDR_NO_USER 0x01
int maps_lookup_addr_ex(maps *ms, const char *addr, const char *delim,
                        int flags, strbuf *out);
int maps_count(const maps *ms);
void maps_close(maps *ms);

int map_build(const char *type, const char *file, strbuf *err);

/* cidr helper, shared with smtpd's mynetworks: 1 if addr is in the list of
 * networks (e.g. "127.0.0.0/8 [::1]/128 192.168.1.0/24"), 0 if not,
 * -1 on a malformed entry (err set). */
int cidr_list_match(const char *list, const char *addr, strbuf *err);

#endif
