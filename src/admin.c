/*-------------------------------------------------------------------------
 *
 * admin.c
 *		Writes to redis_sync.tables on behalf of table owners.
 *
 * The SQL functions write_through(), invalidate() and unsync() validate
 * their arguments in PL/pgSQL and then call _config_write/_config_delete
 * here.  These are executable by PUBLIC (the sync functions run with the
 * caller's rights), so they trust nothing: they check that the calling
 * role owns the table (superusers pass), validate every argument the
 * other modules rely on (NULLs, array elements, columns that exist, the
 * write-behind settings; the table's CHECK constraints do the rest),
 * record the key prefix claim (claim.c) and then write with the bootstrap
 * superuser's rights (as_owner.c), so that no role needs write access to
 * the configuration table itself.  After a change they invalidate the
 * relcache entries of the table and its partitions, which makes every
 * backend reload its cached configuration (config.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_index.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "as_owner.h"
#include "capture.h"
#include "claim.h"
#include "encode.h"
#include "redis_client.h"
#include "shmem.h"
#include "warm.h"

PG_FUNCTION_INFO_V1(redis_sync_config_write);
PG_FUNCTION_INFO_V1(redis_sync_config_delete);
PG_FUNCTION_INFO_V1(redis_sync_dirty_members);

static void
check_owner(Oid relid)
{
	rs_require_owner(relid);
}

static void
bad_config(const char *msg)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid redis_sync configuration: %s", msg),
			 errhint("Use redis_sync.write_through(), invalidate() or write_behind().")));
}

/*
 * The names of a name[] argument, each an existing column of relid;
 * *atts gets their attribute numbers.
 */
static char **
column_list(Oid relid, Datum arr, const char *what, int *n, AttrNumber **atts)
{
	ArrayType  *a = DatumGetArrayTypeP(arr);
	Datum	   *elems;
	bool	   *nulls;
	char	  **names;

	if (ARR_NDIM(a) > 1)
		bad_config(psprintf("%s must be a one-dimensional array", what));
	deconstruct_array(a, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR, &elems, &nulls, n);
	names = palloc(sizeof(char *) * (*n + 1));
	*atts = palloc(sizeof(AttrNumber) * (*n + 1));
	for (int i = 0; i < *n; i++)
	{
		if (nulls[i])
			bad_config(psprintf("%s must not contain NULL", what));
		names[i] = pstrdup(NameStr(*DatumGetName(elems[i])));
		(*atts)[i] = get_attnum(relid, names[i]);
		if ((*atts)[i] <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of table %s does not exist", names[i], get_rel_name(relid))));
		for (int j = 0; j < i; j++)
			if (strcmp(names[i], names[j]) == 0)
				bad_config(psprintf("%s lists column \"%s\" twice", what, names[i]));
	}
	return names;
}

/*
 * A write-through or invalidate table must be logged, and so must each of
 * its partitions: a crash empties an unlogged table without firing any
 * trigger (recovery resets it), and Redis would keep its rows' keys, stale
 * for good.  A write-behind table may be unlogged: what the drain wrote is
 * lost in a crash, as any write to such a table is.
 */
static void
check_logged(Oid relid, const char *policy)
{
	ListCell   *lc;

	foreach(lc, find_all_inheritors(relid, NoLock, NULL))
	{
		Oid			r = lfirst_oid(lc);

		if (get_rel_persistence(r) == RELPERSISTENCE_UNLOGGED)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("unlogged table %s cannot be synced with policy \"%s\"", get_rel_name(r), policy),
					 r != relid ? errdetail("It is a partition of %s. A crash empties an unlogged table without firing any trigger, and Redis would keep the keys of its rows.", get_rel_name(relid)) :
					 errdetail("A crash empties an unlogged table without firing any trigger, and Redis would keep the keys of its rows."),
					 errhint("Make it logged first (ALTER TABLE ... SET LOGGED), or sync it with write_behind().")));
	}
}

/*
 * Nor may a synced table have inheritance children (CREATE TABLE ...
 * INHERITS, ALTER TABLE ... INHERIT; partitions are not such children, and
 * a partitioned table cannot have any): every read of the table (warm(),
 * verify(), resync(), get()'s fill) returns their rows too, but a write to
 * one fires only its own table's triggers, so its key went stale for good;
 * and a write-behind drain's UPDATE and DELETE reached the children's rows
 * while its INSERT went to the table alone (a key in both, a new row lost).
 * _on_ddl_end refuses to add such a child later.
 */
static void
check_no_inheritance(Oid relid, const char *policy)
{
	List	   *children;

	if (get_rel_relkind(relid) != RELKIND_RELATION)
		return;
	children = find_inheritance_children(relid, NoLock);
	if (children != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("table %s has inheritance children and cannot be synced with policy \"%s\"",
						get_rel_name(relid), policy),
				 errdetail("Reads and writes of it include the rows of %s, which inherits from it, but a write to them fires only that table's triggers: their keys would go stale.",
						   get_rel_name(linitial_oid(children))),
				 errhint("Use declarative partitioning, or sync each table of the hierarchy on its own (a table with no children).")));
}

/*
 * The key columns are exactly the columns of a valid unique index without
 * predicate or expressions, and of types a key can hold: what
 * write_through() and write_behind() check first, checked again for a
 * direct call, which could otherwise configure a key two rows share.  For
 * write-behind no such index may be deferrable: the drain inserts new rows
 * with INSERT ... ON CONFLICT on the key, which PostgreSQL refuses then
 * (every new row of such a table was a dead letter).
 */
static void
check_key_columns(Oid relid, char **keys, AttrNumber *katts, int nkeys, bool wb)
{
	bool		deferrable = false;

	Relation	rel = table_open(relid, AccessShareLock);
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	bool		found = false;

	foreach(lc, indexes)
	{
		HeapTuple	it = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index ix;

		if (!HeapTupleIsValid(it))
			continue;
		ix = (Form_pg_index) GETSTRUCT(it);
		if (ix->indisunique && ix->indisvalid && ix->indnkeyatts == nkeys &&
			heap_attisnull(it, Anum_pg_index_indpred, NULL) &&
			heap_attisnull(it, Anum_pg_index_indexprs, NULL))
		{
			bool		all = true;

			for (int k = 0; k < nkeys && all; k++)
			{
				bool		in = false;

				for (int j = 0; j < ix->indnkeyatts; j++)
					in = in || ix->indkey.values[j] == katts[k];
				all = in;
			}
			found = found || all;
			deferrable = deferrable || (all && !ix->indimmediate);
		}
		ReleaseSysCache(it);
	}
	list_free(indexes);
	table_close(rel, AccessShareLock);
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("key_columns of table %s do not match a primary key or unique index", get_rel_name(relid)),
				 errdetail("redis_sync relies on that index to order concurrent writers of one key."),
				 errhint("Create a unique index on exactly these columns.")));
	if (wb && deferrable)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the key of table %s is a deferrable unique constraint, which write-behind cannot use",
						get_rel_name(relid)),
				 errdetail("The drain inserts new rows with INSERT ... ON CONFLICT on the key columns, and ON CONFLICT does not support deferrable unique constraints as arbiters."),
				 errhint("Make the constraint NOT DEFERRABLE (drop and add it again), or pass key_columns naming a unique index that is not deferrable.")));
	for (int k = 0; k < nkeys; k++)
	{
		Oid			typ = get_atttype(relid, katts[k]);
		char		cat;
		bool		preferred;
		char		typtype = get_typtype(typ);

		get_type_category_preferred(typ, &cat, &preferred);
		if (cat == TYPCATEGORY_ARRAY || typtype == TYPTYPE_COMPOSITE || typtype == TYPTYPE_PSEUDO ||
			typ == JSONOID || typ == JSONBOID || typ == XMLOID || typ == BYTEAOID)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("key column \"%s\" has unsupported type %s", keys[k], format_type_be(typ)),
					 errhint("Key columns must be scalar types such as integer, text, uuid or date.")));
	}
}

/* what the other modules rely on; the CHECK constraints of redis_sync.tables check the rest */
static void
validate_config(FunctionCallInfo fcinfo, Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Form_pg_class rc;
	char	   *policy = text_to_cstring(PG_GETARG_TEXT_PP(1));
	bool		wb = strcmp(policy, "write_behind") == 0;
	char	   *format = text_to_cstring(PG_GETARG_TEXT_PP(5));
	char	  **keys;
	char	  **cols;
	AttrNumber *katts;
	AttrNumber *catts;
	int			nkeys;
	int			ncols;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	rc = (Form_pg_class) GETSTRUCT(tup);
	if (rc->relkind != RELKIND_RELATION && rc->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", NameStr(rc->relname))));
	if (rc->relispartition)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("table \"%s\" is a partition", NameStr(rc->relname))));
	if (rc->relpersistence == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("temporary table \"%s\" cannot be synced", NameStr(rc->relname)),
				 errdetail("Its keys would outlive the session, and other sessions could not keep them up to date.")));
	ReleaseSysCache(tup);
	if (!wb)
		check_logged(relid, policy);
	/* at once, before any lock is awaited; again under the lock */
	check_no_inheritance(relid, policy);

	keys = column_list(relid, PG_GETARG_DATUM(3), "key_columns", &nkeys, &katts);
	cols = column_list(relid, PG_GETARG_DATUM(4), "columns", &ncols, &catts);
	if (nkeys == 0)
		bad_config("key_columns must not be empty");
	for (int i = 0; i < nkeys; i++)
	{
		HeapTuple	at = SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid), Int16GetDatum(katts[i]));
		bool		notnull;

		if (!HeapTupleIsValid(at))
			elog(ERROR, "cache lookup failed for attribute %d of relation %u", katts[i], relid);
		notnull = ((Form_pg_attribute) GETSTRUCT(at))->attnotnull;
		ReleaseSysCache(at);
		if (!notnull)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
					 errmsg("key column \"%s\" of table %s is nullable", keys[i], get_rel_name(relid))));
	}
	check_key_columns(relid, keys, katts, nkeys, wb);
	if (strcmp(text_to_cstring(PG_GETARG_TEXT_PP(7)), "strict") == 0 &&
		strcmp(text_to_cstring(PG_GETARG_TEXT_PP(8)), "async") == 0)
		bad_config("consistency \"strict\" cannot be combined with delivery \"async\"");
	if (ncols == 0 && strcmp(policy, "invalidate") != 0)
		bad_config("columns must not be empty");
	if (strcmp(format, "string") == 0 && ncols != 1)
		bad_config("format \"string\" needs exactly one column");
	if (wb)
	{
		for (int i = 0; i < ncols; i++)
			for (int k = 0; k < nkeys; k++)
				if (strcmp(cols[i], keys[k]) == 0)
					bad_config("write-behind columns must not include key columns");
		if (PG_ARGISNULL(9) || VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(9)) == 0)
			bad_config("a write-behind table needs a dirty_set");
		if (PG_ARGISNULL(10) || PG_ARGISNULL(11) || PG_ARGISNULL(12) || PG_ARGISNULL(13))
			bad_config("a write-behind table needs flush_interval, batch_size, on_missing and counters");
		{
			int			ncnt;
			AttrNumber *cnt_atts;
			char	  **cnt = column_list(relid, PG_GETARG_DATUM(13), "counters", &ncnt, &cnt_atts);

			for (int i = 0; i < ncnt; i++)
			{
				bool		found = false;
				Oid			typ = get_atttype(relid, cnt_atts[i]);

				for (int c = 0; c < ncols; c++)
					found |= strcmp(cnt[i], cols[c]) == 0;
				if (!found)
					bad_config(psprintf("counter \"%s\" is not one of the write-behind columns", cnt[i]));
				if (typ != INT2OID && typ != INT4OID && typ != INT8OID)
					bad_config(psprintf("counter \"%s\" must be an integer column", cnt[i]));
			}
		}
	}
	else if (!PG_ARGISNULL(9) || !PG_ARGISNULL(10) || !PG_ARGISNULL(11) ||
			 !PG_ARGISNULL(12) || !PG_ARGISNULL(13))
		bad_config("dirty_set, flush_interval, batch_size, on_missing and counters are for write-behind tables only");
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
	return rs_exec_as_superuser(sql, nargs, types, values, nulls, expect,
								"update redis_sync.tables");
}

/*
 * The first column of the first row sql returns (one parameter), as text in
 * the caller's memory, or NULL; read as the bootstrap superuser, like
 * run_as_owner's writes (the extension's own tables hold no user code).
 */
static char *
read_as_owner(const char *sql, Oid type, Datum value)
{
	MemoryContext caller = CurrentMemoryContext;
	RsAsOwner	ao;
	char	   *v = NULL;

	rs_as_owner_enter(&ao, BOOTSTRAP_SUPERUSERID);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	if (SPI_execute_with_args(sql, 1, &type, &value, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read the extension's tables");
	if (SPI_processed > 0)
		v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (v)
		v = MemoryContextStrdup(caller, v);
	SPI_finish();
	rs_as_owner_leave(&ao);
	return v;
}

/*
 * One configuration change at a time per database: a transaction that syncs
 * or unsyncs holds this until it ends, so the prefix claims of another one
 * still in progress are never mistaken for stale ones (claim.c).  Taken
 * before the first write of redis_sync.tables in the transaction, so two
 * writers queue instead of deadlocking.
 */
static void
lock_configuration(void)
{
	Oid			nsp = get_namespace_oid("redis_sync", false);
	Oid			tables = get_relname_relid("tables", nsp);

	if (!OidIsValid(tables))
		elog(ERROR, "redis_sync: relation redis_sync.tables does not exist");
	LockRelationOid(tables, ShareRowExclusiveLock);
}

/*
 * A write-behind prefix over which a purge is still queued (the 'T' outbox
 * entry of a dropped table, unsync(purge) or an async TRUNCATE, delivered
 * by the worker later) is refused: write-behind keys carry no version, so
 * the purge, once delivered, would delete everything the application wrote
 * under the prefix meanwhile, and the drain would skip the missing keys.
 * Call after lock_configuration() (a purge queued by a DROP in this
 * transaction counts too).
 */
static void
refuse_pending_purge(Datum prefix)
{
	/* the outbox is the bootstrap superuser's */
	char	   *pending = read_as_owner("SELECT o.redis_key FROM redis_sync.outbox o "
										" WHERE o.op = 'T' AND (pg_catalog.starts_with($1, o.redis_key) "
										"                       OR pg_catalog.starts_with(o.redis_key, $1)) LIMIT 1",
										TEXTOID, prefix);

	/* or queued by this transaction, still in its buffer */
	if (pending == NULL)
		pending = (char *) rs_capture_purge_buffered(TextDatumGetCString(prefix));
	if (pending)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("a removal of the keys under \"%s\" is still queued", pending),
				 errdetail("A dropped, unsynced or truncated table's keys under that prefix are "
						   "removed by the worker; it would delete the write-behind values "
						   "written under \"%s\" before it is delivered.",
						   TextDatumGetCString(prefix)),
				 errhint("Let the worker deliver it (SELECT redis_sync.flush() in another "
						 "transaction), then call write_behind() again.")));
}

/*
 * write_behind() called again with another dirty set: the drain reads only
 * the new one, so members left in the old dirty set or its processing set
 * would never be written to the table.  Refused while either holds members
 * (the caller flushes first); Redis must answer.  old_dirty_set() reads the
 * table's dirty set before the configuration is written;
 * refuse_stranded_dirty_set() checks it after the new one was validated.
 */
static char *
old_dirty_set(Oid relid)
{
	return read_as_owner("SELECT dirty_set FROM redis_sync.tables "
						 " WHERE relid OPERATOR(pg_catalog.=) $1 AND policy = 'write_behind'",
						 OIDOID, ObjectIdGetDatum(relid));
}

static void
refuse_stranded_dirty_set(Oid relid, const char *old, const char *dirty_set)
{
	RedisPipeline *p;
	int64		n[2];

	if (old == NULL || dirty_set == NULL || strcmp(old, dirty_set) == 0)
		return;

	p = redis_pipeline_create();
	{
		const char *argv[2] = {"SCARD", old};

		redis_pipeline_append(p, 2, argv, NULL);
		argv[1] = rs_companion_key(old, strlen(old), ":rs_processing");
		redis_pipeline_append(p, 2, argv, NULL);
	}
	redis_pipeline_exec(p);
	for (int i = 0; i < 2; i++)
	{
		redis_check_reply(p, i, "SCARD of the dirty set");
		n[i] = redis_pipeline_reply(p, i)->integer;
	}
	redis_pipeline_free(p);
	if (n[0] + n[1] > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the dirty set \"%s\" of table %s still holds " INT64_FORMAT " keys",
						old, get_rel_name(relid), n[0] + n[1]),
				 errdetail("The drain reads only the new dirty set \"%s\": those keys would never be written to the table.",
						   dirty_set),
				 errhint("Drain them first (SELECT redis_sync.flush('%s')), then call write_behind() again.",
						 get_rel_name(relid))));
}

/*
 * A table synced write-behind and write-through (or invalidate) under one
 * prefix shares its hashes between the two: only a write-through policy of
 * format hash, without a TTL, over columns the write-behind policy does not
 * write, keeps the write-behind fields Redis holds until the drain reads
 * them.  Refuse the rest once both are configured: an invalidation deletes
 * the whole hash, a JSON string replaces it, a TTL expires it, and a column
 * both policies write has its undrained value overwritten by a push or
 * removed by TRUNCATE's field delete (found by the wave 2l review).
 */
static void
refuse_unsafe_sharing(Oid relid)
{
	RsAsOwner	ao;
	Oid			type = OIDOID;
	Datum		value = ObjectIdGetDatum(relid);
	char	   *reason = NULL;
	char	   *cols = NULL;
	MemoryContext caller = CurrentMemoryContext;

	rs_as_owner_enter(&ao, BOOTSTRAP_SUPERUSERID);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	/* not read-only: the row just written must be seen */
	if (SPI_execute_with_args("SELECT CASE WHEN s.key_prefix <> b.key_prefix THEN 'overlap' "
							  "            WHEN s.policy = 'invalidate' THEN 'invalidate' "
							  "            WHEN s.format <> 'hash' OR b.format <> 'hash' THEN 'format' "
							  "            WHEN s.ttl IS NOT NULL THEN 'ttl' ELSE 'columns' END, "
							  "       (SELECT string_agg(quote_ident(c), ', ' ORDER BY c) "
							  "          FROM unnest(s.columns) c "
							  "         WHERE c = ANY (b.columns) AND c <> ALL (s.key_columns)) "
							  "  FROM redis_sync.tables s "
							  "  JOIN redis_sync.tables b ON b.relid = s.relid AND b.policy = 'write_behind' "
							  "                          AND (starts_with(b.key_prefix, s.key_prefix) "
							  "                               OR starts_with(s.key_prefix, b.key_prefix)) "
							  " WHERE s.relid = $1 AND s.policy IN ('write_through', 'invalidate')",
							  1, &type, &value, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read redis_sync.tables");
	if (SPI_processed > 0)
	{
		char	   *r = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		char	   *c = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);

		if (strcmp(r, "columns") != 0 || c != NULL)
		{
			reason = MemoryContextStrdup(caller, r);
			cols = c ? MemoryContextStrdup(caller, c) : NULL;
		}
	}
	SPI_finish();
	rs_as_owner_leave(&ao);
	if (reason == NULL)
		return;
	if (strcmp(reason, "overlap") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("table \"%s\" has write-behind and write-through or invalidate key prefixes that overlap",
						get_rel_name(relid)),
				 errdetail("One policy's key of a row can be the other's key of another row (\"t:\" and \"t:1\": row 12 and row 2 both have \"t:12\"), and a TRUNCATE of the shorter prefix removes the other's keys."),
				 errhint("Use the same key_prefix for both (its hashes are then shared), or prefixes neither of which begins the other.")));
	if (strcmp(reason, "invalidate") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table \"%s\" cannot be invalidate and write-behind under the same key prefix",
						get_rel_name(relid)),
				 errdetail("An invalidation deletes the whole hash, with the write-behind fields the drain has not read yet."),
				 errhint("Give one of the policies another key_prefix, or use write_through() with the columns write-behind does not write.")));
	if (strcmp(reason, "format") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table \"%s\" can share its write-behind hashes only with a write-through policy of format hash",
						get_rel_name(relid)),
				 errdetail("A JSON string under the same key would replace the hash that holds the write-behind fields."),
				 errhint("Use format => 'hash', or another key_prefix.")));
	if (strcmp(reason, "ttl") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table \"%s\" cannot have a ttl on write-through keys it shares with write-behind",
						get_rel_name(relid)),
				 errdetail("The TTL expires the whole hash, with the write-behind fields the drain has not read yet."),
				 errhint("Drop the ttl, or give one of the policies another key_prefix.")));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("columns of table \"%s\" are both write-through and write-behind under the same key prefix: %s",
					get_rel_name(relid), cols),
			 errdetail("A push or a TRUNCATE would overwrite or remove the value the application wrote to Redis before the drain reads it."),
			 errhint("List in write_through(columns => ...) only the columns write-behind does not write.")));
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
	char	   *old_dirty = NULL;

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
	validate_config(fcinfo, relid);
	rs_claim_check_allowed("key prefix", text_to_cstring(PG_GETARG_TEXT_PP(2)));
	if (!PG_ARGISNULL(9))
		rs_claim_check_allowed("dirty set", text_to_cstring(PG_GETARG_TEXT_PP(9)));
	{
		char	   *policy = text_to_cstring(PG_GETARG_TEXT_PP(1));
		char	   *delivery = text_to_cstring(PG_GETARG_TEXT_PP(8));

		if (strcmp(policy, "write_behind") == 0)
			rs_require_preload("write-behind");
		if (strcmp(delivery, "async") == 0)
			rs_require_preload("async delivery");
	}
	lock_configuration();
	LockRelationOid(relid, ShareRowExclusiveLock);

	/*
	 * Again under the lock: a child committed while it was awaited (it
	 * conflicts with the lock CREATE TABLE ... INHERITS and ALTER TABLE ...
	 * INHERIT take).  The check before it (validate_config) fails at once,
	 * where waiting for the locks would hold every configuration change of
	 * the database and the table's writers behind it (review helper-91).
	 */
	check_no_inheritance(relid, text_to_cstring(PG_GETARG_TEXT_PP(1)));
	if (strcmp(text_to_cstring(PG_GETARG_TEXT_PP(1)), "write_behind") == 0)
	{
		refuse_pending_purge(PG_GETARG_DATUM(2));
		old_dirty = old_dirty_set(relid);
	}
	/* synced write-through anew: the warms of an earlier sync are over */
	if (strcmp(text_to_cstring(PG_GETARG_TEXT_PP(1)), "write_through") == 0 &&
		read_as_owner("SELECT 'x' FROM redis_sync.tables "
					  " WHERE relid = $1 AND policy = 'write_through'",
					  REGCLASSOID, PG_GETARG_DATUM(0)) == NULL)
		rs_warm_queue_forget(relid);

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
	CommandCounterIncrement();
	rs_claim_table(relid);
	/* after the claims: an overlap with another table is told first */
	refuse_unsafe_sharing(relid);
	refuse_stranded_dirty_set(relid, old_dirty, PG_ARGISNULL(9) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(9)));
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
	lock_configuration();
	n = run_as_owner("DELETE FROM redis_sync.tables WHERE relid = $1 AND policy = $2",
					 2, types, values, NULL, SPI_OK_DELETE);
	if (n > 0)
	{
		CommandCounterIncrement();
		rs_claim_table(relid);	/* releases at commit what the table no longer
								 * needs */
		invalidate_table(relid);
	}
	PG_RETURN_INT64(n);
}

/*
 * _dirty_members(tbl regclass) RETURNS SETOF text: the members of the dirty
 * and processing sets of a write-behind table, a member possibly twice (SSCAN);
 * the table owner may read them.  (verify() no longer calls it: it asks
 * SISMEMBER of the keys that differ.)
 */
Datum
redis_sync_dirty_members(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			relid;
	Oid			types[1] = {OIDOID};
	Datum		args[1];
	List	   *sets = NIL;
	MemoryContext outer = CurrentMemoryContext;
	ListCell   *lc;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table must not be NULL")));
	relid = PG_GETARG_OID(0);
	check_owner(relid);
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	args[0] = ObjectIdGetDatum(relid);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	if (SPI_execute_with_args("SELECT dirty_set FROM redis_sync.tables "
							  " WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass "
							  "   AND dirty_set IS NOT NULL",
							  1, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read redis_sync.tables");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		MemoryContext spi = MemoryContextSwitchTo(outer);
		char	   *d = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		sets = lappend(sets, pstrdup(d));
		sets = lappend(sets, rs_companion_key(d, strlen(d), ":rs_processing"));
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	if (sets == NIL)
		return (Datum) 0;

	/*
	 * SSCAN, 1,000 a page: SMEMBERS of a large set blocked Redis as long as
	 * it took, and held the whole reply in the backend.  A member can come
	 * twice.
	 */
	foreach(lc, sets)
	{
		char		cursor[32] = "0";
		MemoryContext page_cxt = AllocSetContextCreate(outer, "redis_sync dirty members page",
													   ALLOCSET_DEFAULT_SIZES);

		do
		{
			const char *argv[5] = {"SSCAN", lfirst(lc), cursor, "COUNT", "1000"};
			MemoryContext old = MemoryContextSwitchTo(page_cxt);
			RedisPipeline *p = redis_pipeline_create();
			RedisValue *v;
			RedisValue *page;

			redis_pipeline_append(p, 5, argv, NULL);
			redis_pipeline_exec(p);
			redis_check_reply(p, 0, "SSCAN");
			v = redis_pipeline_reply(p, 0);
			if (v->type != RV_ARRAY || v->nelem != 2 || v->elems[0].str == NULL ||
				strlen(v->elems[0].str) >= sizeof(cursor) || v->elems[1].type != RV_ARRAY)
				elog(ERROR, "redis_sync: unexpected SSCAN reply");
			strlcpy(cursor, v->elems[0].str, sizeof(cursor));
			page = &v->elems[1];
			MemoryContextSwitchTo(old);
			for (int e = 0; e < page->nelem; e++)
			{
				Datum		values[1];
				bool		nulls[1] = {false};

				if (page->elems[e].type != RV_STRING ||
					!pg_verifymbstr(page->elems[e].str, (int) page->elems[e].len, true) ||
					memchr(page->elems[e].str, '\0', page->elems[e].len) != NULL)
					continue;	/* not text: cannot be one of the table's keys */
				values[0] = CStringGetTextDatum(page->elems[e].str);
				tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
				pfree(DatumGetPointer(values[0]));
			}
			MemoryContextReset(page_cxt);
			CHECK_FOR_INTERRUPTS();
		} while (strcmp(cursor, "0") != 0);
		MemoryContextDelete(page_cxt);
	}
	return (Datum) 0;
}
