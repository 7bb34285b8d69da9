/*-------------------------------------------------------------------------
 *
 * verify.c
 *		Helpers behind redis_sync.verify() and redis_sync.resync():
 *		fetching many cached values in one round trip, listing the keys
 *		under a prefix, and pushing the current state of given keys.
 *
 * verify() and resync() themselves are SQL (extension script); these
 * functions give them Redis access without one round trip per row.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "config.h"
#include "encode.h"
#include "fence.h"
#include "claim.h"
#include "redis_client.h"
#include "redis_sync.h"
#include "warm.h"

PG_FUNCTION_INFO_V1(redis_sync_fetch);
PG_FUNCTION_INFO_V1(redis_sync_scan);
PG_FUNCTION_INFO_V1(redis_sync_push_keys);

/*
 * _fetch(keys text[], hash boolean) RETURNS TABLE(key text, value jsonb):
 * one row per existing key; a hash as an object of its fields, a string as
 * its JSON if it parses, else as a JSON string.
 */
Datum
redis_sync_fetch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			n;
	char	  **keys = rs_text_array(PG_GETARG_ARRAYTYPE_P(0), &n);
	bool		hash = PG_GETARG_BOOL(1);
	RedisPipeline *p;

	rs_require_key_access(keys, n, false);	/* claim.c */
	p = redis_pipeline_create();

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < n; i++)
	{
		const char *argv[2] = {hash ? "HGETALL" : "GET", keys[i]};

		redis_pipeline_append(p, 2, argv, NULL);
	}
	if (n > 0)
		redis_pipeline_exec(p);
	for (int i = 0; i < n; i++)
	{
		RedisValue *v = redis_pipeline_reply(p, i);
		StringInfoData json;
		Datum		values[2];
		bool		nulls[2] = {false, false};

		if (v->type == RV_NIL || (v->type == RV_ARRAY && v->nelem == 0))
			continue;
		initStringInfo(&json);
		if (v->type == RV_ERROR)
		{
			appendStringInfoString(&json, "{\"error\":");
			escape_json(&json, v->str);
			appendStringInfoChar(&json, '}');
		}
		else if (v->type == RV_ARRAY)
		{
			appendStringInfoChar(&json, '{');
			for (int f = 0; f + 1 < v->nelem; f += 2)
			{
				if (f > 0)
					appendStringInfoChar(&json, ',');
				escape_json(&json, v->elems[f].str);
				appendStringInfoChar(&json, ':');
				escape_json(&json, v->elems[f + 1].str);
			}
			appendStringInfoChar(&json, '}');
		}
		else
		{
			bool		parsed = false;

			if (v->str && (v->str[0] == '{' || v->str[0] == '['))
			{
				MemoryContext cxt = CurrentMemoryContext;

				PG_TRY();
				{
					(void) DirectFunctionCall1(jsonb_in, CStringGetDatum(v->str));
					appendStringInfoString(&json, v->str);
					parsed = true;
				}
				PG_CATCH();
				{
					MemoryContextSwitchTo(cxt);
					FlushErrorState();
				}
				PG_END_TRY();
			}
			if (!parsed)
				escape_json(&json, v->str ? v->str : "");
		}
		values[0] = CStringGetTextDatum(keys[i]);
		values[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	redis_pipeline_free(p);
	return (Datum) 0;
}

/* _scan(prefix text) RETURNS SETOF text: every data key under prefix */
Datum
redis_sync_scan(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *prefix = text_to_cstring(PG_GETARG_TEXT_PP(0));
	List	   *keys;
	ListCell   *lc;

	rs_require_key_access(&prefix, 1, true);	/* claim.c */

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	keys = rs_scan_prefix(prefix);
	foreach(lc, keys)
	{
		Datum		values[1];
		bool		nulls[1] = {false};

		values[0] = CStringGetTextDatum(lfirst(lc));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * _push_keys(tbl regclass, keys text[]) RETURNS bigint: push the current
 * state of the rows behind the given Redis keys of a write-through table
 * (a key without a row is deleted), fenced.
 */
Datum
redis_sync_push_keys(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	int			n;
	char	  **keys = rs_text_array(PG_GETARG_ARRAYTYPE_P(1), &n);
	SyncConfig *cfg = rs_config_get(relid);
	List	   *pairs = NIL;
	size_t		plen;

	if (!pg_class_ownercheck(relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s", get_rel_name(relid))));
	if (!cfg->synced || cfg->policy != RS_POLICY_WRITE_THROUGH)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not synced write-through", get_rel_name(relid))));
	plen = strlen(cfg->prefix);
	for (int i = 0; i < n; i++)
	{
		char	   *rest;
		List	   *vals = NIL;

		if (keys[i] == NULL || strncmp(keys[i], cfg->prefix, plen) != 0)
			continue;
		rest = pstrdup(keys[i] + plen);
		for (int k = 0; k < cfg->nkeys; k++)
		{
			char	   *colon = k < cfg->nkeys - 1 ? strchr(rest, ':') : NULL;

			if (k < cfg->nkeys - 1 && colon == NULL)
				break;
			if (colon)
				*colon = '\0';
			vals = lappend(vals, rest);
			if (colon)
				rest = colon + 1;
		}
		if (list_length(vals) != cfg->nkeys)
		{
			/* not a key this table could have written: just delete it */
			vals = NIL;
			for (int k = 0; k < cfg->nkeys; k++)
				vals = lappend(vals, "");
		}
		pairs = lappend(pairs, list_make2(keys[i], vals));
	}
	if (pairs == NIL)
		PG_RETURN_INT64(0);
	PG_RETURN_INT64(rs_push_current(relid, pairs, 1000));
}
