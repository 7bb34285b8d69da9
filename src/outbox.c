/*-------------------------------------------------------------------------
 *
 * outbox.c
 *		redis_sync.outbox: changes committed but not yet confirmed by Redis.
 *
 * Entries are written in the transaction whose changes they carry, so they
 * exist if and only if it commits: when a push fails in eventual
 * consistency, for async delivery, for prepared transactions, and for
 * transactions that outgrew redis_sync.max_buffer_bytes.  Each entry holds
 * the key, the state to write (jsonb: hash fields, a string, or nothing
 * for a delete), and the version stamped at the writer's pre-commit, so a
 * delivery is the same fenced write the transaction would have made and can
 * be repeated any number of times.
 *
 * Delivery takes committed entries in id order (FOR UPDATE SKIP LOCKED, so
 * concurrent deliverers do not collide), keeps the newest (version, seq)
 * entry per key, sends them through the apply script in one pipeline, and
 * deletes every entry it read only after Redis confirmed the writes.  Older
 * entries of a key are dropped: the newer one, fenced, supersedes them.
 *
 * Writes to the outbox run with the extension owner's rights (the writer of
 * a synced table needs no privilege on it).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "common/hashfn.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"

#include "encode.h"
#include "fence.h"
#include "outbox.h"
#include "redis_sync.h"

PG_FUNCTION_INFO_V1(redis_sync_deliver_outbox);

static SPIPlanPtr insert_plan = NULL;

/* run SPI as the bootstrap superuser; returns the saved identity */
static void
become_owner(Oid *saved_uid, int *saved_sec)
{
	GetUserIdAndSecContext(saved_uid, saved_sec);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   *saved_sec | SECURITY_LOCAL_USERID_CHANGE);
}

static void
spi_begin(bool *pushed_snapshot)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	*pushed_snapshot = false;
	if (!ActiveSnapshotSet())
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		*pushed_snapshot = true;
	}
}

static void
spi_end(bool pushed_snapshot)
{
	if (pushed_snapshot)
		PopActiveSnapshot();
	SPI_finish();
}

void
rs_outbox_write(Change **changes, int n, const char *version, int64 seq)
{
	Datum	   *relids,
			   *keys,
			   *ops,
			   *payloads,
			   *ttls;
	bool	   *pnulls;
	int			dims[1];
	int			lbs[1] = {1};
	Datum		args[7];
	Oid			saved_uid;
	int			saved_sec;
	bool		snap;
	int			ret;

	if (n == 0)
		return;
	relids = palloc(sizeof(Datum) * n);
	keys = palloc(sizeof(Datum) * n);
	ops = palloc(sizeof(Datum) * n);
	payloads = palloc(sizeof(Datum) * n);
	pnulls = palloc(sizeof(bool) * n);
	ttls = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		Change	   *c = changes[i];
		char	   *json = NULL;

		relids[i] = ObjectIdGetDatum(c->root_relid);
		if (c->kind == RS_CHANGE_PURGE)
		{
			keys[i] = CStringGetTextDatum(c->prefix);
			ops[i] = CharGetDatum('T');
		}
		else
		{
			keys[i] = CStringGetTextDatum(c->key);
			ops[i] = CharGetDatum(c->after.op);
			json = rs_image_to_json(&c->after);
		}
		pnulls[i] = json == NULL;
		payloads[i] = json ? DirectFunctionCall1(jsonb_in, CStringGetDatum(json)) : (Datum) 0;
		ttls[i] = Int64GetDatum(c->ttl_ms);
	}
	dims[0] = n;
	args[0] = PointerGetDatum(construct_array(relids, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
	args[1] = PointerGetDatum(construct_array(keys, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_array(ops, n, CHAROID, 1, true, TYPALIGN_CHAR));
	args[3] = PointerGetDatum(construct_md_array(payloads, pnulls, 1, dims, lbs, JSONBOID, -1, false, TYPALIGN_INT));
	args[4] = PointerGetDatum(construct_array(ttls, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[5] = CStringGetTextDatum(version);
	args[6] = Int64GetDatum(seq);

	become_owner(&saved_uid, &saved_sec);
	spi_begin(&snap);
	if (insert_plan == NULL)
	{
		Oid			types[7] = {OIDARRAYOID, TEXTARRAYOID, 1002 /* char[] */ , 3807 /* jsonb[] */ ,
		INT8ARRAYOID, TEXTOID, INT8OID};
		SPIPlanPtr	plan = SPI_prepare("INSERT INTO redis_sync.outbox "
									   "(relid, redis_key, op, payload, ttl_ms, version, seq) "
									   "SELECT r, k, o, p, t, $6, $7 "
									   "  FROM unnest($1, $2, $3, $4, $5) AS u(r, k, o, p, t)",
									   7, types);

		if (plan == NULL)
			elog(ERROR, "redis_sync: could not prepare outbox insert: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		insert_plan = plan;
	}
	ret = SPI_execute_plan(insert_plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "redis_sync: could not write to redis_sync.outbox: %s",
			 SPI_result_code_string(ret));
	spi_end(snap);
	SetUserIdAndSecContext(saved_uid, saved_sec);
}

void
rs_outbox_write_changes(Change *change, int n, const char *version, int64 seq)
{
	Change	  **arr = palloc(sizeof(Change *) * n);

	for (int i = 0; i < n; i++)
		arr[i] = &change[i];
	rs_outbox_write(arr, n, version, seq);
}

void
rs_outbox_stamp_version(const char *version)
{
	Oid			saved_uid;
	int			saved_sec;
	bool		snap;
	Oid			types[1] = {TEXTOID};
	Datum		args[1];

	args[0] = CStringGetTextDatum(version);
	become_owner(&saved_uid, &saved_sec);
	spi_begin(&snap);
	if (SPI_execute_with_args("UPDATE redis_sync.outbox SET version = $1 "
							  " WHERE xid = pg_current_xact_id() AND version = ''",
							  1, types, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "redis_sync: could not stamp outbox entries");
	spi_end(snap);
	SetUserIdAndSecContext(saved_uid, saved_sec);
}

/* ----------------------------------------------------------------
 * Delivery
 * ---------------------------------------------------------------- */

typedef struct Entry
{
	int64		id;
	char	   *key;
	char		op;
	char		version[RS_VERSION_LEN + 1];
	int64		seq;
	int64		ttl_ms;
	RowImage	img;
} Entry;

typedef struct KeySlot
{
	char	   *key;			/* hash key (pointer to string) */
	int			entry;			/* index of the newest entry */
} KeySlot;

static uint32
str_hash(const void *key, Size keysize)
{
	const char *s = *(const char *const *) key;

	return string_hash(s, strlen(s) + 1);
}

static int
str_match(const void *a, const void *b, Size keysize)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* decode a jsonb payload into a RowImage */
static void
payload_to_image(char op, Jsonb *jb, RowImage *img)
{
	memset(img, 0, sizeof(*img));
	img->op = op;
	if (op == RS_OP_STRING)
	{
		JsonbValue	v;

		if (jb == NULL || !JsonbExtractScalar(&jb->root, &v) || v.type != jbvString)
			elog(ERROR, "redis_sync: malformed outbox payload for a string value");
		img->str = pnstrdup(v.val.string.val, v.val.string.len);
	}
	else if (op == RS_OP_HASH)
	{
		JsonbIterator *it;
		JsonbValue	v;
		JsonbIteratorToken tok;
		int			max = 16;

		if (jb == NULL)
			elog(ERROR, "redis_sync: malformed outbox payload for a hash");
		img->fields = palloc(sizeof(char *) * max);
		img->values = palloc(sizeof(char *) * max);
		it = JsonbIteratorInit(&jb->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
			{
				if (img->nfields == max)
				{
					max *= 2;
					img->fields = repalloc(img->fields, sizeof(char *) * max);
					img->values = repalloc(img->values, sizeof(char *) * max);
				}
				img->fields[img->nfields] = pnstrdup(v.val.string.val, v.val.string.len);
			}
			else if (tok == WJB_VALUE)
			{
				img->values[img->nfields] = v.type == jbvString ?
					pnstrdup(v.val.string.val, v.val.string.len) : NULL;
				img->nfields++;
			}
		}
	}
}

int64
rs_outbox_deliver(int max, RedisFailure *failure)
{
	Oid			types[1] = {INT4OID};
	Datum		args[1];
	Oid			saved_uid;
	int			saved_sec;
	bool		snap;
	int			n;
	Entry	   *entries;
	HTAB	   *byKey;
	HASHCTL		ctl;
	Datum	   *ids;
	RedisPipeline *p;
	FenceOp    *ops;
	int			nops = 0;
	bool		ok = true;
	MemoryContext caller = CurrentMemoryContext;

	args[0] = Int32GetDatum(max);
	become_owner(&saved_uid, &saved_sec);
	spi_begin(&snap);
	if (SPI_execute_with_args("SELECT id, redis_key, op, payload, ttl_ms, version, seq "
							  "  FROM redis_sync.outbox WHERE version <> '' "
							  " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
							  1, types, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read redis_sync.outbox");
	n = (int) SPI_processed;
	if (n == 0)
	{
		spi_end(snap);
		SetUserIdAndSecContext(saved_uid, saved_sec);
		return 0;
	}

	entries = MemoryContextAllocZero(caller, sizeof(Entry) * n);
	ids = MemoryContextAlloc(caller, sizeof(Datum) * n);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(char *);
	ctl.entrysize = sizeof(KeySlot);
	ctl.hash = str_hash;
	ctl.match = str_match;
	ctl.hcxt = caller;
	byKey = hash_create("redis_sync outbox keys", n, &ctl,
						HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);

	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;
		Entry	   *e = &entries[i];
		Datum		payload;
		MemoryContext old = MemoryContextSwitchTo(ctl.hcxt);

		e->id = DatumGetInt64(SPI_getbinval(tup, td, 1, &isnull));
		e->key = TextDatumGetCString(SPI_getbinval(tup, td, 2, &isnull));
		e->op = DatumGetChar(SPI_getbinval(tup, td, 3, &isnull));
		payload = SPI_getbinval(tup, td, 4, &isnull);
		e->ttl_ms = DatumGetInt64(SPI_getbinval(tup, td, 5, &isnull));
		strlcpy(e->version, TextDatumGetCString(SPI_getbinval(tup, td, 6, &isnull)), sizeof(e->version));
		e->seq = DatumGetInt64(SPI_getbinval(tup, td, 7, &isnull));
		if (e->op != 'T')
			payload_to_image(e->op, isnull ? NULL : DatumGetJsonbP(payload), &e->img);
		ids[i] = Int64GetDatum(e->id);
		MemoryContextSwitchTo(old);
	}

	/* newest entry per key; purges are kept as they are */
	ops = palloc(sizeof(FenceOp) * n);
	for (int i = 0; i < n; i++)
	{
		Entry	   *e = &entries[i];
		KeySlot    *slot;
		bool		found;

		if (e->op == 'T')
			continue;
		slot = hash_search(byKey, &e->key, HASH_ENTER, &found);
		if (!found)
		{
			slot->key = e->key;
			slot->entry = i;
		}
		else
		{
			Entry	   *cur = &entries[slot->entry];
			int			c = strcmp(e->version, cur->version);

			if (c > 0 || (c == 0 && e->seq > cur->seq) ||
				(c == 0 && e->seq == cur->seq && e->id > cur->id))
				slot->entry = i;
		}
	}

	p = redis_pipeline_create();
	for (int i = 0; i < n && ok; i++)
	{
		Entry	   *e = &entries[i];

		if (e->op == 'T')
		{
			/* purge: SCAN now, then fenced deletes in the pipeline */
			List	   *keys;
			ListCell   *lc;
			RowImage   *del = palloc0(sizeof(RowImage));
			FenceOp    *pops;
			int			np = 0;

			del->op = RS_OP_DELETE;
			keys = rs_scan_prefix(e->key);
			pops = palloc(sizeof(FenceOp) * Max(list_length(keys), 1));
			foreach(lc, keys)
			{
				pops[np].key = lfirst(lc);
				pops[np].version = e->version;
				pops[np].ttl_ms = 0;
				pops[np].img = del;
				np++;
			}
			for (int s = 0; s < np; s += rs_chunk_size)
				rs_fence_append(p, pops + s, Min(rs_chunk_size, np - s), NULL, NULL, NIL);
		}
	}
	for (int i = 0; i < n; i++)
	{
		Entry	   *e = &entries[i];
		KeySlot    *slot;

		if (e->op == 'T')
			continue;
		slot = hash_search(byKey, &e->key, HASH_FIND, NULL);
		if (slot->entry != i)
			continue;
		ops[nops].key = e->key;
		ops[nops].version = e->version;
		ops[nops].ttl_ms = e->ttl_ms;
		ops[nops].img = &e->img;
		nops++;
	}
	for (int s = 0; s < nops; s += rs_chunk_size)
		rs_fence_append(p, ops + s, Min(rs_chunk_size, nops - s), NULL, NULL, NIL);

	ok = redis_pipeline_try_exec(p, failure);
	if (ok)
	{
		for (int i = 0; i < redis_pipeline_length(p); i++)
		{
			RedisValue *v = redis_pipeline_reply(p, i);

			if (v->type == RV_ERROR)
			{
				failure->sqlstate = ERRCODE_EXTERNAL_ROUTINE_EXCEPTION;
				failure->message = pstrdup("Redis rejected an outbox delivery");
				failure->detail = pstrdup(v->str);
				ok = false;
				break;
			}
		}
	}
	redis_pipeline_free(p);

	if (ok)
	{
		Oid			dtypes[1] = {INT8ARRAYOID};
		Datum		dargs[1];

		dargs[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		if (SPI_execute_with_args("DELETE FROM redis_sync.outbox WHERE id = ANY ($1)",
								  1, dtypes, dargs, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "redis_sync: could not remove delivered outbox entries");
	}
	hash_destroy(byKey);
	spi_end(snap);
	SetUserIdAndSecContext(saved_uid, saved_sec);
	return ok ? n : -1;
}

/* redis_sync.deliver_outbox(max_entries int) RETURNS bigint */
Datum
redis_sync_deliver_outbox(PG_FUNCTION_ARGS)
{
	int			max = PG_GETARG_INT32(0);
	int64		total = 0;
	RedisFailure failure;

	if (max <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_entries must be positive")));
	while (total < max)
	{
		int64		n = rs_outbox_deliver((int) Min(max - total, 10000), &failure);

		if (n < 0)
			ereport(ERROR,
					(errcode(failure.sqlstate),
					 errmsg("could not deliver the outbox: %s", failure.message),
					 failure.detail ? errdetail("%s", failure.detail) : 0));
		if (n == 0)
			break;
		total += n;
		CommandCounterIncrement();
	}
	PG_RETURN_INT64(total);
}
