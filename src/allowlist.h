/*-------------------------------------------------------------------------
 *
 * allowlist.h
 *		redis_sync.database: the databases where a worker may run.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_ALLOWLIST_H
#define RS_ALLOWLIST_H

#include "postgres.h"

/* true when redis_sync.database is empty or lists datname */
extern bool rs_database_name_allowed(const char *datname);

/* a worker may run in dbid: preloaded and allowed by redis_sync.database */
extern bool rs_database_served(Oid dbid);

/* define redis_sync.database (from _PG_init) */
extern void rs_allowlist_init(void);

#endif							/* RS_ALLOWLIST_H */
