/*-------------------------------------------------------------------------
 *
 * redis_sync.c
 *		Module entry point of redis_sync: settings (GUCs) and registration.
 *
 * redis_sync keeps Redis and PostgreSQL tables in step with PostgreSQL as the
 * coordinator.  This file only defines settings and calls each module's init
 * function; the work lives in the modules:
 *
 *		redis_url.c		parsing redis_sync.redis_url
 *		redis_client.c	connection, pipelines, scripts, non-blocking waits
 *		command.c		redis_sync.command() and redis_sync.parse_url()
 *
 * Invariants the modules keep (each later module adds its own to this list):
 *
 * 1. Nothing here ever blocks a backend on Redis without a bound: every wait
 *    on the Redis socket goes through a WaitEventSet that also wakes on the
 *    process latch (query cancel, statement_timeout, termination) and exits
 *    on postmaster death, with redis_sync.connect_timeout and
 *    redis_sync.command_timeout as upper bounds.
 *
 * 2. The Redis password never leaves the process: redis_sync.redis_url is
 *    visible to superusers only, its check accepts any text (a GUC check
 *    failure would echo the value into the log), and every message names the
 *    server as host:port from the parsed URL.
 *
 * 3. Every exchange with Redis is a pipeline: one exec is one round trip,
 *    whatever the number of commands, and is counted.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "redis_sync.h"

PG_MODULE_MAGIC;

char	   *rs_redis_url = NULL;
int			rs_connect_timeout_ms = 1000;
int			rs_command_timeout_ms = 1000;
char	   *rs_database = NULL;
bool		rs_preloaded = false;

void		_PG_init(void);

void
rs_require_preload(const char *feature)
{
	if (!rs_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s requires redis_sync to be loaded via shared_preload_libraries", feature),
				 errhint("Add redis_sync to shared_preload_libraries in postgresql.conf and restart the server.")));
}

void
_PG_init(void)
{
	rs_preloaded = process_shared_preload_libraries_in_progress;

	DefineCustomStringVariable("redis_sync.redis_url",
							   "URL of the Redis server.",
							   "redis://[user[:password]@]host[:port][/db] or unix:///path/to/redis.sock[?db=N].",
							   &rs_redis_url,
							   "redis://127.0.0.1:6379/0",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("redis_sync.connect_timeout",
							"Longest wait for a connection to Redis.",
							NULL,
							&rs_connect_timeout_ms,
							1000, 1, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("redis_sync.command_timeout",
							"Longest wait for Redis to make progress on a pipeline of commands.",
							"When it passes, the connection is closed and the outcome is treated as unknown.",
							&rs_command_timeout_ms,
							1000, 1, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("redis_sync.database",
							   "Database the redis_sync background worker connects to.",
							   NULL,
							   &rs_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	MarkGUCPrefixReserved("redis_sync");

	redis_client_init();
}
