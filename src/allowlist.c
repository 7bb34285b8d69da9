/*-------------------------------------------------------------------------
 *
 * allowlist.c
 *		redis_sync.database: the databases where a redis_sync worker may
 *		run, and the SQL function _database_served().
 *
 * The launcher (launcher.c) starts workers only in databases this list
 * allows; stats.c names the reason a database has no worker, and
 * warm_queue.c and lifecycle.c ask whether a worker may serve the current
 * database.  It reads only the setting and the catalog, so every layer may
 * call it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "allowlist.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(redis_sync_database_served);

static char *rs_database = NULL;	/* redis_sync.database, the allow-list */

/*
 * Empty (the default): every database.  Otherwise a comma-separated list of
 * database names, compared exactly (spaces around the commas are ignored).
 * 0.1's single name is a list of one: an old postgresql.conf keeps its
 * worker in that database only.
 */
bool
rs_database_name_allowed(const char *datname)
{
	const char *p = rs_database;

	if (p == NULL)
		return true;
	while (*p == ' ')
		p++;
	if (*p == '\0')
		return true;
	while (*p)
	{
		const char *end = strchr(p, ',');
		size_t		len = end ? (size_t) (end - p) : strlen(p);

		while (len > 0 && p[len - 1] == ' ')
			len--;
		if (len == strlen(datname) && strncmp(p, datname, len) == 0)
			return true;
		if (end == NULL)
			break;
		p = end + 1;
		while (*p == ' ')
			p++;
	}
	return false;
}

bool
rs_database_served(Oid dbid)
{
	char	   *name;

	if (!rs_preloaded)
		return false;
	name = get_database_name(dbid);
	return name != NULL && rs_database_name_allowed(name);
}

/* _database_served(): true when a worker may run in the current database */
Datum
redis_sync_database_served(PG_FUNCTION_ARGS)
{
	/* without preload the callers' own checks say what is missing */
	if (!rs_preloaded)
		PG_RETURN_BOOL(true);
	PG_RETURN_BOOL(rs_database_served(MyDatabaseId));
}

/* define redis_sync.database (from _PG_init) */
void
rs_allowlist_init(void)
{
	/*
	 * 0.1 named the one database of the worker here; since 0.2 a launcher
	 * runs a worker in every database with the extension (launcher.c) and
	 * this is an optional allow-list: empty, every database.  An old
	 * postgresql.conf naming one database keeps its worker there only.
	 */
	DefineCustomStringVariable("redis_sync.database",
							   "Databases where redis_sync workers may run (comma-separated; empty: every database).",
							   rs_preloaded ? NULL :
							   "redis_sync is not in shared_preload_libraries: no worker runs.",
							   &rs_database,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
}
