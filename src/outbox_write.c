/*-------------------------------------------------------------------------
 *
 * outbox_write.c
 *		Writing redis_sync.outbox: changes committed but not yet confirmed
 *		by Redis, as rows of the transaction that made them.
 *
 * Entries are written in the transaction whose changes they carry, so they
 * exist if and only if it commits: when a push fails in eventual
 * consistency, for async delivery, for prepared transactions, and for
 * transactions that outgrew redis_sync.max_buffer_bytes.  Each entry holds
 * the key, the state to write (jsonb: hash fields, a string, or nothing
 * for a delete), and the version stamped at the writer's pre-commit, so a
 * delivery (outbox.c) is the same fenced write the transaction would have
 * made and can be repeated any number of times.
 *
 * One row is a plain INSERT ... VALUES; more go in slices of 10000 rows,
 * each one INSERT ... SELECT from arrays.  Writes run as the bootstrap
 * superuser with a fixed search_path (as_owner.c): the writer of a synced
 * table needs no privilege on the outbox, and no user code runs on it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "outbox.h"
#include "outbox_int.h"

static SPIPlanPtr insert_plan = NULL;	/* many rows: from arrays */
static SPIPlanPtr insert_one_plan = NULL;	/* one row: plain VALUES, cheap to
											 * run */

static void outbox_write_slice(Change **changes, int n, const char *version, int64 seq);

bool
rs_outbox_exists(void)
{
	Oid			nsp = get_namespace_oid("redis_sync", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("outbox", nsp));
}

/* write in slices, so a large transaction's buffer is not copied all at once */
void
rs_outbox_write(Change **changes, int n, const char *version, int64 seq)
{
	MemoryContext slice_cxt;
	MemoryContext old;

	if (n == 0)
		return;
	if (n == 1)
	{
		outbox_write_slice(changes, 1, version, seq);
		return;
	}
	slice_cxt = AllocSetContextCreate(CurrentMemoryContext, "redis_sync outbox slice",
									  ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(slice_cxt);
	/* 1,000 a slice: each entry's jsonb input leaves ~3.5 kB until the reset */
	for (int s = 0; s < n; s += 1000)
	{
		outbox_write_slice(changes + s, Min(1000, n - s), version, seq);
		MemoryContextReset(slice_cxt);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(slice_cxt);
}

/*
 * The outbox columns of a change: its Redis key, op ('T': a purge of the
 * prefix in key) and payload; false when the payload is NULL.
 */
static bool
change_columns(Change *c, Datum *key, Datum *op, Datum *payload)
{
	RowImage	after;
	char	   *json;

	*key = CStringGetTextDatum(c->key);
	*payload = (Datum) 0;
	if (c->kind == RS_CHANGE_PURGE)
	{
		*op = CharGetDatum('T');
		return false;
	}
	rs_change_after(c, &after);
	*op = CharGetDatum(after.op);
	json = rs_image_to_json(&after);
	if (json == NULL)
		return false;
	*payload = DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
	return true;
}

/* run one of the outbox INSERTs (7 parameters), prepared once per backend */
static void
execute_insert(SPIPlanPtr *plan, const char *sql, Oid *types, Datum *args, const char *nulls)
{
	int			ret;

	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, 7, types);

		if (p == NULL)
			elog(ERROR, "redis_sync: could not prepare outbox insert: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		*plan = p;
	}
	ret = SPI_execute_plan(*plan, args, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "redis_sync: could not write to redis_sync.outbox: %s",
			 SPI_result_code_string(ret));
}

/* the common case (one row per commit): a plain INSERT ... VALUES */
static void
write_one(Change *c, const char *version, int64 seq)
{
	Datum		args[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Oid			types[7] = {OIDOID, TEXTOID, CHAROID, JSONBOID, INT8OID, TEXTOID, INT8OID};
	RsAsOwner	saved_ao;
	bool		snap;

	args[0] = ObjectIdGetDatum(c->root_relid);
	if (!change_columns(c, &args[1], &args[2], &args[3]))
		nulls[3] = 'n';
	args[4] = Int64GetDatum(c->ttl_ms);
	args[5] = CStringGetTextDatum(version);
	args[6] = Int64GetDatum(seq);

	become_owner(&saved_ao);
	spi_begin(&snap);
	execute_insert(&insert_one_plan,
				   "INSERT INTO redis_sync.outbox "
				   "(relid, redis_key, op, payload, ttl_ms, version, seq) "
				   "VALUES ($1, $2, $3, $4, $5, $6, $7)",
				   types, args, nulls);
	spi_end(snap);
	rs_as_owner_leave(&saved_ao);
}

static void
outbox_write_slice(Change **changes, int n, const char *version, int64 seq)
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
	RsAsOwner	saved_ao;
	bool		snap;
	Oid			types[7] = {OIDARRAYOID, TEXTARRAYOID, 1002 /* char[] */ , 3807 /* jsonb[] */ ,
	INT8ARRAYOID, TEXTOID, INT8OID};

	if (n == 0)
		return;
	if (n == 1)
	{
		write_one(changes[0], version, seq);
		return;
	}
	relids = palloc(sizeof(Datum) * n);
	keys = palloc(sizeof(Datum) * n);
	ops = palloc(sizeof(Datum) * n);
	payloads = palloc(sizeof(Datum) * n);
	pnulls = palloc(sizeof(bool) * n);
	ttls = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		Change	   *c = changes[i];

		relids[i] = ObjectIdGetDatum(c->root_relid);
		pnulls[i] = !change_columns(c, &keys[i], &ops[i], &payloads[i]);
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

	become_owner(&saved_ao);
	spi_begin(&snap);
	execute_insert(&insert_plan,
				   "INSERT INTO redis_sync.outbox "
				   "(relid, redis_key, op, payload, ttl_ms, version, seq) "
				   "SELECT u.r, u.k, u.o, u.p, u.t, $6, $7 "
				   "  FROM unnest($1, $2, $3, $4, $5) AS u(r, k, o, p, t)",
				   types, args, NULL);
	spi_end(snap);
	rs_as_owner_leave(&saved_ao);
}

void
rs_outbox_write_changes(Change *change, int n, const char *version, int64 seq)
{
	Change	  **arr = palloc(sizeof(Change *) * n);

	for (int i = 0; i < n; i++)
		arr[i] = &change[i];
	rs_outbox_write(arr, n, version, seq);
}
