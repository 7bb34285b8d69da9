/*-------------------------------------------------------------------------
 *
 * admin.c
 *		Writes to redis_sync.tables on behalf of table owners.
 *
 * The SQL functions write_through(), invalidate() and unsync() validate
 * their arguments in PL/pgSQL and then call _config_write/_config_delete
 * here.  These check that the calling role owns the table (superusers pass)
 * and then write with the bootstrap superuser's rights, so that no role
 * needs write access to the configuration table itself.  After a change
 * they invalidate the relcache entries of the table and its partitions,
 * which makes every backend reload its cached configuration (config.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "as_owner.h"
#include "redis_sync.h"

PG_FUNCTION_INFO_V1(redis_sync_config_write);
PG_FUNCTION_INFO_V1(redis_sync_config_delete);

static void
check_owner(Oid relid)
{
	char	   *name = get_rel_name(relid);

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (!pg_class_ownercheck(relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s", name)));
}

static void
invalidate_table(Oid relid)
{
	List	   *rels = find_all_inheritors(relid, NoLock, NULL);
	ListCell   *lc;

	foreach(lc, rels)
		CacheInvalidateRelcacheByRelid(lfirst_oid(lc));
}

static int64
run_as_owner(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int expect)
{
	RsAsOwner	ao;
	int			ret;
	int64		n;

	/* the configuration table holds no user code: the bootstrap superuser */
	rs_as_owner_enter(&ao, BOOTSTRAP_SUPERUSERID);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	ret = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);
	if (ret != expect)
		elog(ERROR, "redis_sync: could not update redis_sync.tables: %s", SPI_result_code_string(ret));
	n = (int64) SPI_processed;
	SPI_finish();
	rs_as_owner_leave(&ao);
	return n;
}

/*
 * _config_write(tbl, policy, key_prefix, key_columns, columns, format, ttl,
 *				 consistency, delivery, dirty_set, flush_interval, batch_size,
 *				 on_missing, counters)
 */
Datum
redis_sync_config_write(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Oid			types[14] = {REGCLASSOID, TEXTOID, TEXTOID, NAMEARRAYOID, NAMEARRAYOID,
		TEXTOID, INTERVALOID, TEXTOID, TEXTOID,
	TEXTOID, INTERVALOID, INT4OID, TEXTOID, NAMEARRAYOID};
	Datum		values[14];
	char		nulls[14];

	for (int i = 0; i < 14; i++)
	{
		if (PG_ARGISNULL(i) && i < 6)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument %d of _config_write must not be NULL", i + 1)));
		values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	relid = PG_GETARG_OID(0);
	check_owner(relid);
	{
		char	   *policy = text_to_cstring(PG_GETARG_TEXT_PP(1));
		char	   *delivery = text_to_cstring(PG_GETARG_TEXT_PP(8));

		if (strcmp(policy, "write_behind") == 0)
			rs_require_preload("write-behind");
		if (strcmp(delivery, "async") == 0)
			rs_require_preload("async delivery");
	}
	LockRelationOid(relid, ShareRowExclusiveLock);

	run_as_owner("INSERT INTO redis_sync.tables AS t "
				 "  (relid, policy, key_prefix, key_columns, columns, format, ttl, consistency, delivery, "
				 "   dirty_set, flush_interval, batch_size, on_missing, counters) "
				 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) "
				 "ON CONFLICT (relid, policy) DO UPDATE SET "
				 "  key_prefix = EXCLUDED.key_prefix, key_columns = EXCLUDED.key_columns, "
				 "  columns = EXCLUDED.columns, format = EXCLUDED.format, ttl = EXCLUDED.ttl, "
				 "  consistency = EXCLUDED.consistency, delivery = EXCLUDED.delivery, "
				 "  dirty_set = EXCLUDED.dirty_set, flush_interval = EXCLUDED.flush_interval, "
				 "  batch_size = EXCLUDED.batch_size, on_missing = EXCLUDED.on_missing, "
				 "  counters = EXCLUDED.counters, updated_at = now()",
				 14, types, values, nulls, SPI_OK_INSERT);
	invalidate_table(relid);
	PG_RETURN_VOID();
}

/* _config_delete(tbl, policy) returns rows removed */
Datum
redis_sync_config_delete(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Oid			types[2] = {REGCLASSOID, TEXTOID};
	Datum		values[2];
	int64		n;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table and policy must not be NULL")));
	relid = PG_GETARG_OID(0);
	check_owner(relid);
	values[0] = PG_GETARG_DATUM(0);
	values[1] = PG_GETARG_DATUM(1);
	n = run_as_owner("DELETE FROM redis_sync.tables WHERE relid = $1 AND policy = $2",
					 2, types, values, NULL, SPI_OK_DELETE);
	if (n > 0)
		invalidate_table(relid);
	PG_RETURN_INT64(n);
}
