/*-------------------------------------------------------------------------
 *
 * readthrough.c
 *		redis_sync.get(): read-through for write-through and invalidate tables.
 *
 * get(NULL::tbl, VARIADIC key) returns the cached row when Redis has it,
 * decoded through the column types (columns that are not synced come back
 * NULL); otherwise it populates the cache from the table and returns the
 * table's row, or NULL when there is none.
 *
 * The populate is fenced like every push (warm.c): the row is read FOR
 * SHARE, so a concurrent update either finished before (we read and push its
 * result) or waits for us (its push carries a newer version).  The caller
 * needs SELECT on the table; the populate itself runs as the table owner
 * (FOR SHARE needs UPDATE), restricted and with a fixed search_path
 * (as_owner.c, through rs_push_current_populate).  So do the input of the key values
 * and the decoding of a cached row: both run the table's code (a domain's
 * checks), which must never run with the caller's rights.
 *
 * Row-level security: the row returned is always the one the caller's own
 * SELECT returns.  When policies apply to the caller, or get() is given a
 * partition's row type (the key may name a row of another partition), the
 * row's visibility is checked with the caller's SELECT first: a hidden row
 * is neither returned from the cache nor populated on the caller's behalf.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "parser/parse_type.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"

#include "as_owner.h"
#include "encode.h"
#include "redis_client.h"
#include "shmem.h"
#include "warm.h"

PG_FUNCTION_INFO_V1(redis_sync_get);

/* run sql with one text argument, return the first column of the first row (copied) */
static Datum
spi_record(const char *sql, int nargs, Oid *types, Datum *args, bool *isnull, Oid rettype)
{
	MemoryContext outer = CurrentMemoryContext;
	Datum		result = (Datum) 0;
	int16		typlen;
	bool		typbyval;

	get_typlenbyval(rettype, &typlen, &typbyval);
	*isnull = true;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	if (SPI_execute_with_args(sql, nargs, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: read-through query failed");
	if (SPI_processed == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);

		if (!*isnull)
		{
			MemoryContext spi = MemoryContextSwitchTo(outer);

			result = datumCopy(d, typbyval, typlen);
			MemoryContextSwitchTo(spi);
		}
	}
	SPI_finish();
	return result;
}

/* the table behind get()'s first argument, checked: readable and synced */
static SyncConfig *
get_config(Oid relid)
{
	SyncConfig *cfg;

	if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", get_rel_name(relid))));
	cfg = rs_config_get(relid);
	/* invalidate tables too: a miss populates them the same way (warm.c) */
	if (!cfg->synced ||
		(cfg->policy != RS_POLICY_WRITE_THROUGH && cfg->policy != RS_POLICY_INVALIDATE))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not synced write-through or invalidate", get_rel_name(relid))));
	return rs_cache_config(cfg);	/* what the cache holds (all columns for
									 * invalidate) */
}

/*
 * The key values, read as the caller writes literals (session settings),
 * then named in the canonical form, as the capture does.
 */
static char **
canonical_key_values(Oid relid, SyncConfig *cfg, Datum *kelems, bool *knulls, int nk,
					 Datum *typed)
{
	char	  **canon;

	if (nk != cfg->nkeys)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table \"%s\" has %d key columns, but %d key values were given",
						get_rel_name(relid), cfg->nkeys, nk)));
	canon = palloc(sizeof(char *) * nk);
	for (int i = 0; i < nk; i++)
	{
		Oid			infn;
		Oid			ioparam;
		int32		typmod = rs_key_typmod(relid, cfg->keys[i].attnum);

		if (knulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("key values must not be NULL")));
		getTypeInputInfo(cfg->keys[i].typid, &infn, &ioparam);
		typed[i] = OidInputFunctionCall(infn, TextDatumGetCString(kelems[i]),
										ioparam, typmod);
		canon[i] = rs_canonical_output(&cfg->keys[i].out, typed[i]);
	}
	return canon;
}

/* whether an HGETALL reply holds one of the fields of cfg's columns */
static bool
holds_synced_field(SyncConfig *cfg, RedisValue *v)
{
	for (int i = 0; i + 1 < v->nelem; i += 2)
	{
		RedisValue *f = &v->elems[i];

		for (int c = 0; c < cfg->ncols; c++)
			if (f->str != NULL && strcmp(f->str, cfg->cols[c].name) == 0)
				return true;
	}
	return false;
}

/*
 * the caller's own SELECT of the row (policies included): $1..$nk are the
 * key values, already of the key columns' types (read as the owner), so the
 * query casts nothing: a domain's checks are the owner's code
 */
static char *
row_query(Oid relid, SyncConfig *cfg, int nk)
{
	char	   *qname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												   get_rel_name(relid));
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT t.*::%s FROM %s t WHERE (", qname, qname);
	for (int i = 0; i < nk; i++)
		appendStringInfo(&sql, "%s%s", i ? ", " : "", quote_identifier(cfg->keys[i].name));
	appendStringInfoString(&sql, ") = (");
	for (int i = 0; i < nk; i++)
		appendStringInfo(&sql, "%s$%d", i ? ", " : "", i + 1);
	appendStringInfoChar(&sql, ')');
	return sql.data;
}

/* one call of get(): its key, read and checked, and the caller's SELECT of its row */
typedef struct GetCall
{
	Oid			relid;
	Oid			rowtype;
	SyncConfig *cfg;
	int			nk;
	Datum	   *typed;			/* the key values, of the key columns' types */
	char	  **canon;			/* the same, as canonical text */
	char	   *key;
	char	   *rowsql;			/* row_query() */
	Oid		   *rowtypes;
	bool		rls;			/* row-level security applies to the caller */
} GetCall;

/*
 * Check get()'s arguments and read its key.  The key's input runs the
 * table's code (a domain's checks): as its owner, restricted, like the
 * populate, never with the caller's rights (a superuser's plain SELECT of
 * the table runs none of it).  Only the row-level security check is the
 * caller's.
 */
static void
get_call_init(FunctionCallInfo fcinfo, GetCall *gc)
{
	Datum	   *kelems;
	bool	   *knulls;
	RsAsOwner	ao;

	gc->rowtype = get_fn_expr_argtype(fcinfo->flinfo, 0);
	gc->relid = typeidTypeRelid(gc->rowtype);
	if (!OidIsValid(gc->relid))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("redis_sync.get() needs a table row type as its first argument"),
				 errhint("Call it as redis_sync.get(NULL::my_table, '42').")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("key must not be NULL")));
	gc->cfg = get_config(gc->relid);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, -1, false, TYPALIGN_INT,
					  &kelems, &knulls, &gc->nk);
	gc->typed = palloc(sizeof(Datum) * Max(gc->nk, 1));
	rs_as_owner_enter(&ao, rs_rel_owner(gc->relid));
	PG_TRY();
	{
		gc->canon = canonical_key_values(gc->relid, gc->cfg, kelems, knulls, gc->nk, gc->typed);
	}
	PG_FINALLY();
	{
		rs_as_owner_leave(&ao);
	}
	PG_END_TRY();
	gc->key = rs_key_build(gc->cfg->prefix, gc->canon, gc->nk);
	gc->rowsql = row_query(gc->relid, gc->cfg, gc->nk);
	gc->rowtypes = palloc(sizeof(Oid) * gc->nk);
	for (int i = 0; i < gc->nk; i++)
		gc->rowtypes[i] = gc->cfg->keys[i].typid;
	gc->rls = rs_rls_applies(gc->relid);

	/*
	 * A partition's row type: the key is the root table's, and the row it
	 * names may be in another partition, which the caller may not read. Check
	 * that the caller's SELECT of the partition named sees it, as under
	 * row-level security (found by an adversarial review).
	 */
	if (gc->relid != gc->cfg->root_relid)
		gc->rls = true;
}

/*
 * the row as the caller's own SELECT sees it; *isnull when it sees none.
 * The query is ours, not the caller's: it runs with the caller's rights but
 * search_path fixed to pg_catalog, pg_temp (as_owner.c), so that an
 * operator planted in a schema on the caller's path (an exact-match '=' for
 * a varchar key) never runs, with the rights of a SECURITY DEFINER function
 * that calls get() (tests/t/329).
 */
static Datum
table_row(GetCall *gc, bool *isnull)
{
	int			nest = rs_search_path_enter();
	Datum		d = spi_record(gc->rowsql, gc->nk, gc->rowtypes, gc->typed, isnull, gc->rowtype);

	rs_search_path_leave(nest);
	return d;
}

/* false when policies that apply to the caller hide the row */
static bool
caller_sees_row(GetCall *gc)
{
	bool		isnull = false;

	if (gc->rls)
		(void) table_row(gc, &isnull);
	return !isnull;
}

/* a cached row, decoded exactly (only the synced columns), as the owner */
static Datum
decode_cached(GetCall *gc, RedisValue *v)
{
	RsAsOwner	ao;
	Datum		result;

	rs_as_owner_enter(&ao, rs_rel_owner(gc->relid));
	PG_TRY();
	{
		result = rs_decode_row(gc->cfg, gc->rowtype, v);
	}
	PG_FINALLY();
	{
		rs_as_owner_leave(&ao);
	}
	PG_END_TRY();
	return result;
}

/* what the cache holds for get()'s key */
typedef enum CacheState
{
	CACHE_ROW,					/* a cached row */
	CACHE_OTHERS_FIELDS,		/* a hash of others' fields only */
	CACHE_MISS
} CacheState;

/*
 * Read the key from Redis: *result is the decoded row when it is cached
 * (NULL, *isnull, when the caller's policies hide it).
 */
static CacheState
read_cached(GetCall *gc, Datum *result, bool *isnull)
{
	const char *argv[2];
	RedisPipeline *p;
	RedisValue *v;
	CacheState	state;

	argv[0] = gc->cfg->format == RS_FORMAT_HASH ? "HGETALL" : "GET";
	argv[1] = gc->key;
	p = redis_pipeline_create();
	redis_pipeline_append(p, 2, argv, NULL);
	redis_pipeline_exec(p);
	redis_check_reply(p, 0, argv[0]);
	v = redis_pipeline_reply(p, 0);
	if (v->type == RV_ARRAY && v->nelem > 0 && !holds_synced_field(gc->cfg, v))
		state = CACHE_OTHERS_FIELDS;
	else if ((v->type == RV_ARRAY && v->nelem > 0) || v->type == RV_STRING)
	{
		state = CACHE_ROW;
		/* a cached row the caller's policies hide is not returned */
		*isnull = !caller_sees_row(gc);
		if (!*isnull)
			*result = decode_cached(gc, v);
	}
	else
		state = CACHE_MISS;
	redis_pipeline_free(p);
	return state;
}

/* one lookup counted in stats */
static void
count_lookup(SyncConfig *cfg, int counter)
{
	rs_stats_add(cfg->root_relid, counter, 1);
	rs_stats_flush();
}

Datum
redis_sync_get(PG_FUNCTION_ARGS)
{
	GetCall		gc;
	Datum		result = (Datum) 0;
	bool		isnull = false;
	List	   *vals = NIL;

	get_call_init(fcinfo, &gc);

	/*
	 * 0. A transaction that has written the table reads it, and caches
	 * nothing: the cached row may be older than its own write (a hit returned
	 * the committed row after the caller's UPDATE or DELETE, tests/t/337),
	 * and a populate would push a row version it wrote, which stayed in Redis
	 * after a ROLLBACK or ROLLBACK TO SAVEPOINT (tests/t/335).  Its commit
	 * pushes its changes.
	 */
	if (rs_xact_wrote_table(gc.cfg->root_relid))
	{
		result = table_row(&gc, &isnull);
		count_lookup(gc.cfg, RS_C_MISSES);
		if (isnull)
			PG_RETURN_NULL();
		PG_RETURN_DATUM(result);
	}

	/* 1. the cache */
	switch (read_cached(&gc, &result, &isnull))
	{
		case CACHE_ROW:
			count_lookup(gc.cfg, RS_C_HITS);
			if (isnull)
				PG_RETURN_NULL();
			PG_RETURN_DATUM(result);
		case CACHE_OTHERS_FIELDS:

			/*
			 * A hash of others' fields only: the write-behind fields of a
			 * table synced both ways over one hash (a row the drain created,
			 * whose write-through fields are not pushed back; a truncated
			 * row's hash that kept them).  No cached row: the row as the
			 * caller's SELECT sees it, not cached here (a populate's fenced
			 * delete of a row the table lacks would remove the write-behind
			 * fields not yet drained).
			 */
			result = table_row(&gc, &isnull);
			count_lookup(gc.cfg, RS_C_MISSES);
			if (isnull)
				PG_RETURN_NULL();
			PG_RETURN_DATUM(result);
		case CACHE_MISS:
			break;
	}

	/*
	 * 2. a miss: populate the cache (fenced, as the owner) and return the row
	 * as the caller's own SELECT sees it.  When policies apply to the caller,
	 * a row they hide is neither returned nor cached on the caller's behalf.
	 */
	if (!caller_sees_row(&gc))
	{
		count_lookup(gc.cfg, RS_C_MISSES);
		PG_RETURN_NULL();
	}

	for (int i = 0; i < gc.nk; i++)
		vals = lappend(vals, gc.canon[i]);	/* rs_push_current_populate reads
											 * them canonically */
	(void) rs_push_current_populate(gc.cfg->root_relid, list_make1(list_make2(gc.key, vals)));
	result = table_row(&gc, &isnull);
	count_lookup(gc.cfg, RS_C_MISSES);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}
