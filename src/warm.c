/*-------------------------------------------------------------------------
 *
 * warm.c
 *		Push the current committed state of rows to Redis: cache warming,
 *		re-warming after Redis lost its data, and repair of keys pushed by
 *		transactions that did not commit.
 *
 * Fencing: rows are read with SELECT ... FOR SHARE, which waits for any
 * transaction still writing them (one that already pushed at pre-commit
 * but has not committed yet) and keeps later writers out until we are done.
 * The version is taken after the locks are held, so it is newer than every
 * committed write of those rows and older than every later one: a warm can
 * never overwrite a newer value.  The lock is held only for one batch: each
 * batch runs in a subtransaction that is rolled back after the push, which
 * releases its row locks (nothing else was written in it).
 *
 * A key whose row is missing becomes a fenced delete.  A concurrent INSERT
 * of that very key that has pushed but not yet committed could be hidden by
 * that delete for a moment; the inserter's value is restored by the next
 * change or warm of the key (documented limitation of repairs).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "as_owner.h"
#include "config.h"
#include "encode.h"
#include "fence.h"
#include "redis_client.h"
#include "redis_sync.h"
#include "shmem.h"
#include "warm.h"

PG_FUNCTION_INFO_V1(redis_sync_warm);

/* "k1", "k2" quoted, comma separated */
static char *
key_list(SyncConfig *cfg)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < cfg->nkeys; i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "", quote_identifier(cfg->keys[i].name));
	return buf.data;
}

/* push the rows of one SPI result, plus deletes for missing keys */
static int64
push_rows(SyncConfig *cfg, TupleDesc reldesc, SPITupleTable *tt, uint64 nrows,
		  List *missing_keys)
{
	RedisPipeline *p = redis_pipeline_create();
	FenceOp    *ops = palloc(sizeof(FenceOp) * (nrows + list_length(missing_keys) + 1));
	char		version[RS_VERSION_LEN + 1];
	int			n = 0;
	ListCell   *lc;
	RowImage   *del = palloc0(sizeof(RowImage));

	del->op = RS_OP_DELETE;
	rs_version_now(version);	/* after FOR SHARE: see file header */
	for (uint64 i = 0; i < nrows; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull);
		HeapTupleHeader hdr = DatumGetHeapTupleHeader(d);
		HeapTupleData tup;
		RowImage   *img = palloc(sizeof(RowImage));

		tup.t_len = HeapTupleHeaderGetDatumLength(hdr);
		ItemPointerSetInvalid(&tup.t_self);
		tup.t_tableOid = cfg->relid;
		tup.t_data = hdr;
		ops[n].key = rs_encode_key(cfg, reldesc, &tup, NULL);
		rs_encode_row(cfg, reldesc, &tup, img);
		ops[n].img = img;
		ops[n].version = version;
		ops[n].ttl_ms = cfg->ttl_ms;
		n++;
	}
	foreach(lc, missing_keys)
	{
		ops[n].key = lfirst(lc);
		ops[n].img = del;
		ops[n].version = version;
		ops[n].ttl_ms = 0;
		n++;
	}
	for (int s = 0; s < n; s += rs_chunk_size)
		rs_fence_append(p, ops + s, Min(rs_chunk_size, n - s), NULL, NULL, NIL);
	if (n > 0)
	{
		redis_pipeline_exec(p);
		for (int i = 0; i < redis_pipeline_length(p); i++)
			redis_check_reply(p, i, "a cache warm");
	}
	redis_pipeline_free(p);
	return n;
}

/* run fn-like body in a subtransaction that is always rolled back */
static int64
batch_in_subxact(SyncConfig *cfg, Relation rel, const char *sql, int nargs,
				 Oid *types, Datum *values, List *wanted_keys, List **last_key)
{
	MemoryContext outer = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	int64		pushed = 0;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(outer);
	PG_TRY();
	{
		uint64		nrows;
		List	   *missing = NIL;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "redis_sync: SPI_connect failed");
		if (SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "redis_sync: could not read table \"%s\"", RelationGetRelationName(rel));
		nrows = SPI_processed;
		{
			MemoryContext spi = MemoryContextSwitchTo(outer);

			if (wanted_keys != NIL)
			{
				/* keys asked for but not found become deletes */
				ListCell   *lc;

				foreach(lc, wanted_keys)
				{
					char	   *k = lfirst(lc);
					bool		found = false;

					for (uint64 i = 0; i < nrows && !found; i++)
					{
						bool		isnull;
						Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
						HeapTupleHeader hdr = DatumGetHeapTupleHeader(d);
						HeapTupleData tup;

						tup.t_len = HeapTupleHeaderGetDatumLength(hdr);
						ItemPointerSetInvalid(&tup.t_self);
						tup.t_tableOid = cfg->relid;
						tup.t_data = hdr;
						found = strcmp(rs_encode_key(cfg, RelationGetDescr(rel), &tup, NULL), k) == 0;
					}
					if (!found)
						missing = lappend(missing, k);
				}
			}
			pushed = push_rows(cfg, RelationGetDescr(rel), SPI_tuptable, nrows, missing);
			if (last_key)
			{
				*last_key = NIL;
				if (nrows > 0)
				{
					HeapTuple	last = SPI_tuptable->vals[nrows - 1];

					for (int i = 0; i < cfg->nkeys; i++)
						*last_key = lappend(*last_key,
											SPI_getvalue(last, SPI_tuptable->tupdesc, i + 2));
				}
			}
			MemoryContextSwitchTo(spi);
		}
		SPI_finish();
		/* releases the FOR SHARE row locks of this batch */
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(outer);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(outer);
		RollbackAndReleaseCurrentSubTransaction();
		CurrentResourceOwner = owner;
		PG_RE_THROW();
	}
	PG_END_TRY();
	return pushed;
}

static int64 push_current(Oid relid, List *keys, int batch_size);

/*
 * Reading the table runs its code (casts, output functions, policies): do it
 * as the table owner, restricted, with a fixed search_path (as_owner.c),
 * whoever asked (get(), warm(), resync(), the worker's repairs).
 */
int64
rs_push_current(Oid relid, List *keys, int batch_size)
{
	RsAsOwner	ao;
	volatile int64 n = 0;

	rs_as_owner_enter(&ao, rs_rel_owner(relid));
	PG_TRY();
	{
		n = push_current(relid, keys, batch_size);
	}
	PG_FINALLY();
	{
		rs_as_owner_leave(&ao);
	}
	PG_END_TRY();
	return n;
}

static int64
push_current(Oid relid, List *keys, int batch_size)
{
	SyncConfig *cfg = rs_config_get(relid);
	Relation	rel;
	char	   *kl;
	const char *qrel;
	StringInfoData sql;
	int64		total = 0;

	if (!cfg->synced || cfg->policy != RS_POLICY_WRITE_THROUGH)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not synced write-through", get_rel_name(relid))));
	rel = relation_open(relid, AccessShareLock);
	kl = key_list(cfg);
	qrel = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
									  RelationGetRelationName(rel));

	if (keys == NIL)
	{
		List	   *last = NIL;

		for (;;)
		{
			Oid		   *types = palloc(sizeof(Oid) * Max(cfg->nkeys, 1));
			Datum	   *values = palloc(sizeof(Datum) * Max(cfg->nkeys, 1));
			int64		n;

			initStringInfo(&sql);
			appendStringInfo(&sql, "SELECT t.*::%s, %s FROM %s t", qrel, kl, qrel);
			if (last != NIL)
			{
				ListCell   *lc;
				int			i = 0;

				appendStringInfo(&sql, " WHERE (%s) > (", kl);
				foreach(lc, last)
				{
					appendStringInfo(&sql, "%s$%d::text::%s", i ? ", " : "", i + 1,
									 format_type_be(cfg->keys[i].typid));
					types[i] = TEXTOID;
					values[i] = CStringGetTextDatum(lfirst(lc));
					i++;
				}
				appendStringInfoChar(&sql, ')');
			}
			appendStringInfo(&sql, " ORDER BY %s LIMIT %d FOR SHARE", kl, batch_size);
			n = batch_in_subxact(cfg, rel, sql.data, last ? cfg->nkeys : 0, types, values, NIL, &last);
			total += n;
			CHECK_FOR_INTERRUPTS();
			if (n < batch_size || last == NIL)
				break;
		}
	}
	else
	{
		/* keys: List of (redis key string, List of key values) pairs */
		ListCell   *lc;
		List	   *batch = NIL;
		List	   *batch_keys = NIL;

		foreach(lc, keys)
		{
			List	   *pair = lfirst(lc);

			batch_keys = lappend(batch_keys, linitial(pair));
			batch = lappend(batch, lsecond(pair));
			if (list_length(batch) >= batch_size || lnext(keys, lc) == NULL)
			{
				Oid		   *types = palloc(sizeof(Oid) * cfg->nkeys);
				Datum	   *values = palloc(sizeof(Datum) * cfg->nkeys);
				int			nb = list_length(batch);

				initStringInfo(&sql);
				appendStringInfo(&sql, "SELECT t.*::%s, %s FROM %s t WHERE (%s) IN (SELECT * FROM unnest(", qrel, kl, qrel, kl);
				for (int i = 0; i < cfg->nkeys; i++)
				{
					Datum	   *elems = palloc(sizeof(Datum) * nb);
					ListCell   *bc;
					int			j = 0;

					foreach(bc, batch)
						elems[j++] = CStringGetTextDatum(list_nth((List *) lfirst(bc), i));
					appendStringInfo(&sql, "%s$%d::text[]::%s[]", i ? ", " : "", i + 1,
									 format_type_be(cfg->keys[i].typid));
					types[i] = TEXTARRAYOID;
					values[i] = PointerGetDatum(construct_array(elems, nb, TEXTOID, -1, false, TYPALIGN_INT));
				}
				appendStringInfoString(&sql, ")) FOR SHARE");
				total += batch_in_subxact(cfg, rel, sql.data, cfg->nkeys, types, values, batch_keys, NULL);
				batch = NIL;
				batch_keys = NIL;
			}
		}
	}
	relation_close(rel, AccessShareLock);
	rs_stats_add(relid, RS_C_WARMED, total);
	return total;
}

int64
rs_repair_marker(const char *json)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	int64		total = 0;
	List	   *rels = NIL;
	List	   *perrel = NIL;
	MemoryContext outer = CurrentMemoryContext;

	values[0] = CStringGetTextDatum(json);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	if (SPI_execute_with_args("SELECT (e ->> 0)::oid, "
							  "       ARRAY(SELECT v FROM jsonb_array_elements_text(e) WITH ORDINALITY a(v, o) "
							  "              WHERE o > 1 ORDER BY o) "
							  "  FROM jsonb_array_elements($1::jsonb) e",
							  1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not parse an in-flight marker");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		ArrayType  *arr = DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		Datum	   *elems;
		bool	   *nulls;
		int			n;
		List	   *vals = NIL;
		int			idx;
		MemoryContext spi = MemoryContextSwitchTo(outer);

		deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
		for (int j = 0; j < n; j++)
			vals = lappend(vals, TextDatumGetCString(elems[j]));
		idx = -1;
		for (int r = 0; r < list_length(rels); r++)
			if (list_nth_oid(rels, r) == relid)
				idx = r;
		if (idx < 0)
		{
			rels = lappend_oid(rels, relid);
			perrel = lappend(perrel, NIL);
			idx = list_length(rels) - 1;
		}
		{
			ListCell   *cell = list_nth_cell(perrel, idx);

			lfirst(cell) = lappend((List *) lfirst(cell), vals);
		}
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();

	for (int r = 0; r < list_length(rels); r++)
	{
		Oid			relid = list_nth_oid(rels, r);
		SyncConfig *cfg;
		List	   *pairs = NIL;
		ListCell   *lc;

		if (get_rel_name(relid) == NULL)
			continue;			/* table dropped since */
		cfg = rs_config_get(relid);
		if (!cfg->synced || cfg->policy != RS_POLICY_WRITE_THROUGH)
			continue;
		foreach(lc, (List *) list_nth(perrel, r))
		{
			List	   *vals = lfirst(lc);
			StringInfoData key;
			ListCell   *vc;

			initStringInfo(&key);
			appendStringInfoString(&key, cfg->prefix);
			foreach(vc, vals)
				appendStringInfo(&key, "%s%s", foreach_current_index(vc) ? ":" : "", (char *) lfirst(vc));
			pairs = lappend(pairs, list_make2(key.data, vals));
		}
		total += rs_push_current(relid, pairs, 1000);
		rs_stats_add(relid, RS_C_REPAIRED, list_length(pairs));
	}
	return total;
}

/* redis_sync.warm(tbl regclass, batch_size int) RETURNS bigint */
Datum
redis_sync_warm(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	int			batch = PG_GETARG_INT32(1);
	int64		n;

	if (batch <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be positive")));
	if (!pg_class_ownercheck(relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s", get_rel_name(relid))));
	n = rs_push_current(relid, NIL, batch);
	rs_stats_flush();
	PG_RETURN_INT64(n);
}
