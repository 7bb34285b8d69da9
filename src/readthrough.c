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
 * needs SELECT on the table; the populate itself runs with the table
 * owner's rights because FOR SHARE needs UPDATE.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"
#include "parser/parse_type.h"
#include "catalog/pg_class.h"

#include "config.h"
#include "redis_client.h"
#include "redis_sync.h"
#include "shmem.h"
#include "warm.h"

PG_FUNCTION_INFO_V1(redis_sync_get);

static Oid
rel_owner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

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

Datum
redis_sync_get(PG_FUNCTION_ARGS)
{
	Oid			rowtype = get_fn_expr_argtype(fcinfo->flinfo, 0);
	Oid			relid = typeidTypeRelid(rowtype);
	SyncConfig *cfg;
	ArrayType  *keyarr;
	Datum	   *kelems;
	bool	   *knulls;
	int			nk;
	StringInfoData key;
	RedisPipeline *p;
	RedisValue *v;
	const char *argv[2];
	bool		isnull;
	Datum		result;
	char	   *qname;
	Oid			typeid_text[1] = {TEXTOID};

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("redis_sync.get() needs a table row type as its first argument"),
				 errhint("Call it as redis_sync.get(NULL::my_table, '42').")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("key must not be NULL")));
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
	cfg = rs_cache_config(cfg);	/* what the cache holds (all columns for invalidate) */

	keyarr = PG_GETARG_ARRAYTYPE_P(1);
	deconstruct_array(keyarr, TEXTOID, -1, false, TYPALIGN_INT, &kelems, &knulls, &nk);
	if (nk != cfg->nkeys)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table \"%s\" has %d key columns, but %d key values were given",
						get_rel_name(relid), cfg->nkeys, nk)));
	initStringInfo(&key);
	appendStringInfoString(&key, cfg->prefix);
	for (int i = 0; i < nk; i++)
	{
		if (knulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("key values must not be NULL")));
		appendStringInfo(&key, "%s%s", i ? ":" : "", TextDatumGetCString(kelems[i]));
	}

	/* 1. the cache */
	argv[0] = cfg->format == RS_FORMAT_HASH ? "HGETALL" : "GET";
	argv[1] = key.data;
	p = redis_pipeline_create();
	redis_pipeline_append(p, 2, argv, NULL);
	redis_pipeline_exec(p);
	redis_check_reply(p, 0, argv[0]);
	v = redis_pipeline_reply(p, 0);
	qname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									   get_rel_name(relid));
	if ((v->type == RV_ARRAY && v->nelem > 0) || v->type == RV_STRING)
	{
		StringInfoData json;
		StringInfoData sql;
		Datum		args[1];

		initStringInfo(&json);
		if (v->type == RV_STRING)
			appendStringInfoString(&json, v->str);
		else
		{
			appendStringInfoChar(&json, '{');
			for (int i = 0; i + 1 < v->nelem; i += 2)
			{
				if (i > 0)
					appendStringInfoChar(&json, ',');
				escape_json(&json, v->elems[i].str);
				appendStringInfoChar(&json, ':');
				escape_json(&json, v->elems[i + 1].str);
			}
			appendStringInfoChar(&json, '}');
		}
		redis_pipeline_free(p);
		/* only the synced columns come from the cache */
		initStringInfo(&sql);
		appendStringInfo(&sql, "SELECT json_populate_record(NULL::%s, "
						 "(SELECT json_object_agg(k, v) FROM json_each($1::json) e(k, v) "
						 "  WHERE k = ANY (ARRAY[", qname);
		for (int c = 0; c < cfg->ncols; c++)
			appendStringInfo(&sql, "%s%s", c ? ", " : "", quote_literal_cstr(cfg->cols[c].name));
		appendStringInfoString(&sql, "]::text[])))");
		args[0] = CStringGetTextDatum(json.data);
		result = spi_record(sql.data, 1, typeid_text, args, &isnull, rowtype);
		rs_stats_add(cfg->root_relid, RS_C_HITS, 1);
		rs_stats_flush();
		if (isnull)
			PG_RETURN_NULL();
		PG_RETURN_DATUM(result);
	}
	redis_pipeline_free(p);

	/* 2. a miss: populate from the table (fenced) and return its row */
	{
		List	   *vals = NIL;
		StringInfoData sql;
		Oid		   *types = palloc(sizeof(Oid) * nk);
		Datum	   *args = palloc(sizeof(Datum) * nk);
		Oid			saved_uid;
		int			saved_sec;

		for (int i = 0; i < nk; i++)
			vals = lappend(vals, TextDatumGetCString(kelems[i]));
		GetUserIdAndSecContext(&saved_uid, &saved_sec);
		SetUserIdAndSecContext(rel_owner(relid), saved_sec | SECURITY_LOCAL_USERID_CHANGE);
		PG_TRY();
		{
			(void) rs_push_current(cfg->root_relid, list_make1(list_make2(key.data, vals)), 1);
		}
		PG_FINALLY();
		{
			SetUserIdAndSecContext(saved_uid, saved_sec);
		}
		PG_END_TRY();

		initStringInfo(&sql);
		appendStringInfo(&sql, "SELECT t FROM %s t WHERE (", qname);
		for (int i = 0; i < nk; i++)
			appendStringInfo(&sql, "%s%s", i ? ", " : "", quote_identifier(cfg->keys[i].name));
		appendStringInfoString(&sql, ") = (");
		for (int i = 0; i < nk; i++)
		{
			appendStringInfo(&sql, "%s$%d::text::%s", i ? ", " : "", i + 1,
							 format_type_be(cfg->keys[i].typid));
			types[i] = TEXTOID;
			args[i] = kelems[i];
		}
		appendStringInfoChar(&sql, ')');
		result = spi_record(sql.data, nk, types, args, &isnull, rowtype);
		rs_stats_add(cfg->root_relid, RS_C_MISSES, 1);
		rs_stats_flush();
		if (isnull)
			PG_RETURN_NULL();
		PG_RETURN_DATUM(result);
	}
}
