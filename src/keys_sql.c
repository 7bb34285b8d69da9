/*-------------------------------------------------------------------------
 *
 * keys_sql.c
 *		Keys for SQL: pushing the current state of given keys (_push_keys,
 *		behind resync()), and the key rules (escape_key, version_key,
 *		_companion_key), so that SQL never re-implements them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/rls.h"

#include "as_owner.h"
#include "fence.h"
#include "warm.h"

PG_FUNCTION_INFO_V1(redis_sync_push_keys);
PG_FUNCTION_INFO_V1(redis_sync_escape_key);
PG_FUNCTION_INFO_V1(redis_sync_companion_key);
PG_FUNCTION_INFO_V1(redis_sync_version_key);

/* whether reading a value of typid can run code other than the core's */
static bool
input_runs_user_code(Oid typid)
{
	return typid >= FirstNormalObjectId || get_typtype(typid) == TYPTYPE_DOMAIN;
}

/* the key values' input and output, as canonical_key_values() checks them */
static bool
key_values_round_trip(SyncConfig *cfg, char **kv, RsCanonicalSave *repin)
{
	for (int k = 0; k < cfg->nkeys; k++)
	{
		Oid			infn;
		Oid			ioparam;
		int32		typmod = rs_key_typmod(cfg->relid, cfg->keys[k].attnum);
		Datum		d;
		char	   *out;

		getTypeInputInfo(cfg->keys[k].typid, &infn, &ioparam);
		d = OidInputFunctionCall(infn, kv[k], ioparam, typmod);
		/* the output of reg* values under the pinned path (repin: it is off) */
		if (repin)
			rs_canonical_path_push(repin);
		out = OutputFunctionCall(&cfg->keys[k].out, d);
		if (repin)
			rs_canonical_path_pop(repin);
		if (strcmp(out, kv[k]) != 0)
			return false;
	}
	return true;
}

/*
 * true when every key value is the canonical text of a value of its column
 * (so some row can have exactly this key).  A value the input refuses (a
 * data exception, a domain's constraint) is no such value.  Anything else --
 * a cancel, a statement timeout (the worker's warm_timeout), an error of the
 * system -- is no verdict on the key: it goes on up (a key taken for one no
 * row can have would be deleted).  When a key column's input can run code
 * other than the core's (a domain's CHECK, an extension's type), it runs in
 * a subtransaction, so that its error is caught safely, whatever that code
 * had acquired; the core's input functions only raise.
 */
static bool
canonical_key_values(SyncConfig *cfg, char **kv)
{
	RsCanonicalSave save;
	volatile bool ok = true;
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	bool		subxact = false;

	for (int k = 0; k < cfg->nkeys && !subxact; k++)
		subxact = input_runs_user_code(cfg->keys[k].typid);

	rs_canonical_enter(&save);
	if (subxact)
	{
		/*
		 * The table's code runs without the pinned search path (a CHECK
		 * function's own SET search_path would not apply under it): as in any
		 * session of the owner's, restricted (keys_to_rows).
		 */
		rs_canonical_path_pop(&save);
		PG_TRY();
		{
			BeginInternalSubTransaction(NULL);
		}
		PG_CATCH();
		{
			/* the pin is off already: leave the canonical section without it */
			save.path_pushed = false;
			rs_canonical_exit(&save);
			PG_RE_THROW();
		}
		PG_END_TRY();
		MemoryContextSwitchTo(cxt);
	}
	PG_TRY();
	{
		ok = key_values_round_trip(cfg, kv, subxact ? &save : NULL);
		if (subxact)
		{
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
	}
	PG_CATCH();
	{
		ErrorData  *ed;
		int			category;

		MemoryContextSwitchTo(cxt);
		ed = CopyErrorData();
		category = ERRCODE_TO_CATEGORY(ed->sqlerrcode);
		if (subxact)
		{
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
		if (category != ERRCODE_DATA_EXCEPTION &&
			category != ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION)
		{
			if (subxact)
				rs_canonical_path_push(&save);
			rs_canonical_exit(&save);
			if (subxact)
				ReThrowError(ed);
			FreeErrorData(ed);
			PG_RE_THROW();
		}
		FreeErrorData(ed);
		FlushErrorState();
		ok = false;
	}
	PG_END_TRY();
	if (subxact)
		rs_canonical_path_push(&save);
	rs_canonical_exit(&save);
	return ok;
}

/* fenced deletes of keys no row can have */
static void
delete_keys(List *keys)
{
	RedisPipeline *p = redis_pipeline_create();
	FenceOp    *ops = palloc(sizeof(FenceOp) * list_length(keys));
	RowImage   *del = palloc0(sizeof(RowImage));
	char		version[RS_VERSION_LEN + 1];
	ListCell   *lc;
	int			n = 0;

	del->op = RS_OP_DELETE;
	rs_version_now(version);
	foreach(lc, keys)
	{
		ops[n].key = lfirst(lc);
		ops[n].img = del;
		ops[n].version = version;
		ops[n].ttl_ms = 0;
		n++;
	}
	for (int s = 0; s < n; s += rs_chunk_size)
		rs_fence_append(p, ops + s, Min(rs_chunk_size, n - s), NULL, NULL, NIL);
	redis_pipeline_exec(p);
	for (int i = 0; i < redis_pipeline_length(p); i++)
		redis_check_reply(p, i, "a resync");
	redis_pipeline_free(p);
}

/*
 * The keys of cfg's table among keys (each starting with its prefix): the
 * (key, key values) pairs a row could have, and the rest (no row can have
 * them) in *junk.  Reading the key values into the key columns' types runs
 * the table's code (a domain's CHECK): as the owner, restricted, as get()
 * does (readthrough.c), never as a superuser calling resync() nor as the
 * worker refreshing the keys after a Redis restart.
 */
static List *
keys_to_rows(SyncConfig *cfg, char **keys, int n, List **junk)
{
	List	   *volatile pairs = NIL;
	List	   *volatile bad = NIL;
	size_t		plen = strlen(cfg->prefix);
	RsAsOwner	ao;

	rs_as_owner_enter(&ao, rs_rel_owner(cfg->relid));
	PG_TRY();
	{
		for (int i = 0; i < n; i++)
		{
			char	  **kv;
			List	   *vals = NIL;

			if (keys[i] == NULL || strncmp(keys[i], cfg->prefix, plen) != 0)
				continue;
			kv = rs_key_split(keys[i] + plen, cfg->nkeys);
			if (kv == NULL || !canonical_key_values(cfg, kv))
			{
				/* no row can have this key */
				bad = lappend(bad, keys[i]);
				continue;
			}
			for (int k = 0; k < cfg->nkeys; k++)
				vals = lappend(vals, kv[k]);
			pairs = lappend(pairs, list_make2(keys[i], vals));
		}
	}
	PG_FINALLY();
	{
		rs_as_owner_leave(&ao);
	}
	PG_END_TRY();
	*junk = bad;
	return pairs;
}

/* whether relid is also write-behind over the same hashes (one prefix) */
static bool
shares_hashes_with_write_behind(SyncConfig *cfg)
{
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		args[2];
	bool		shared;

	args[0] = ObjectIdGetDatum(cfg->relid);
	args[1] = CStringGetTextDatum(cfg->prefix);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	if (SPI_execute_with_args("SELECT 1 FROM redis_sync.tables "
							  " WHERE relid OPERATOR(pg_catalog.=) $1 "
							  "   AND policy OPERATOR(pg_catalog.=) 'write_behind' "
							  "   AND key_prefix OPERATOR(pg_catalog.=) $2",
							  2, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read redis_sync.tables");
	shared = SPI_processed > 0;
	SPI_finish();
	return shared;
}

/*
 * After Redis restarted (the worker saw a new run_id): push again, from its
 * row, every key Redis has under the prefix of a write-through or
 * invalidate table, and delete those whose row is gone.  A Redis that
 * restarted from persistence may hold older values than the table: an RDB
 * snapshot (Redis's default) or an AOF written every second brings back the
 * dataset of some moment before the restart, with the versions of that
 * moment, which the fence cannot tell from current ones; so can a failover
 * to a replica that lagged.  The rows are read as rs_push_named()'s
 * "settled" way reads them (the version first, then the table's writers
 * waited for, no row locks), so a write committed meanwhile wins.  Keys no
 * row can have are left alone (resync() removes them), and so are the keys
 * of a table that is also write-behind over the same hashes: a key without
 * a row there can hold a write-behind insert not yet drained.  Returns the
 * keys pushed or deleted, -1 when the table was skipped.
 */
typedef struct RefreshState
{
	Oid			relid;
	SyncConfig *cfg;
	MemoryContext cxt;			/* reset after each page */
	int64		n;				/* keys pushed or deleted */
} RefreshState;

/* rs_refresh_cached_keys's SCAN page: push its keys again */
static void
refresh_page(char **keys, int n, void *arg)
{
	RefreshState *st = arg;
	MemoryContext old = MemoryContextSwitchTo(st->cxt);
	List	   *junk;
	List	   *pairs = keys_to_rows(st->cfg, keys, n, &junk);

	if (pairs != NIL)
		st->n += rs_push_current_settled(st->relid, pairs, 1000);
	MemoryContextSwitchTo(old);
	MemoryContextReset(st->cxt);
}

int64
rs_refresh_cached_keys(Oid relid)
{
	SyncConfig *cfg = rs_config_get(relid);
	RefreshState st;

	if (!cfg->synced ||
		(cfg->policy != RS_POLICY_WRITE_THROUGH && cfg->policy != RS_POLICY_INVALIDATE))
		return -1;
	if (shares_hashes_with_write_behind(cfg) ||
		check_enable_rls(relid, rs_rel_owner(relid), true) == RLS_ENABLED)
		return -1;

	/*
	 * Page by page, as SCAN returns them: the worker holds one page of keys
	 * at a time, however many the table has cached.
	 */
	st.relid = relid;
	st.cfg = cfg;
	st.n = 0;
	st.cxt = AllocSetContextCreate(CurrentMemoryContext, "redis_sync refresh page",
								   ALLOCSET_DEFAULT_SIZES);
	rs_scan_prefix_pages(cfg->prefix, refresh_page, &st);
	MemoryContextDelete(st.cxt);
	return st.n;
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
	List	   *pairs;
	List	   *junk;

	if (!pg_class_ownercheck(relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s", get_rel_name(relid))));
	if (!cfg->synced || cfg->policy != RS_POLICY_WRITE_THROUGH)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not synced write-through", get_rel_name(relid))));

	/*
	 * Repairs read and lock the rows as the owner (as_owner.c); under row
	 * security that applies to it, rows hidden from it (or that no UPDATE
	 * policy lets it lock) would look deleted, and their keys be removed.
	 */
	if (n > 0 && check_enable_rls(relid, rs_rel_owner(relid), true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot repair the keys of table \"%s\": row-level security applies to its owner",
						get_rel_name(relid)),
				 errdetail("Repairs read and lock the rows as the owner (FORCE ROW LEVEL SECURITY); the keys of rows the policies hide from it would be deleted."),
				 errhint("Use warm() to fill missing keys, or repair while the table has NO FORCE ROW LEVEL SECURITY.")));
	/* a key no row can have is deleted */
	pairs = keys_to_rows(cfg, keys, n, &junk);
	if (junk != NIL)
		delete_keys(junk);
	if (pairs == NIL)
		PG_RETURN_INT64(list_length(junk));
	PG_RETURN_INT64(rs_push_current(relid, pairs, 1000) + list_length(junk));
}

/* escape_key(VARIADIC vals text[]): the key values escaped and joined (a dirty set member) */
Datum
redis_sync_escape_key(PG_FUNCTION_ARGS)
{
	int			n;
	char	  **vals = rs_text_array(PG_GETARG_ARRAYTYPE_P(0), &n);

	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("escape_key needs at least one key value")));
	for (int i = 0; i < n; i++)
		if (vals[i] == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("key values must not be NULL")));
	PG_RETURN_TEXT_P(cstring_to_text(rs_key_build("", vals, n)));
}

/* _companion_key(key text, suffix text): rs_companion_key, for SQL */
Datum
redis_sync_companion_key(PG_FUNCTION_ARGS)
{
	text	   *key = PG_GETARG_TEXT_PP(0);
	char	   *suffix = text_to_cstring(PG_GETARG_TEXT_PP(1));

	PG_RETURN_TEXT_P(cstring_to_text(rs_companion_key(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key), suffix)));
}

/* version_key(key text): the key holding key's version */
Datum
redis_sync_version_key(PG_FUNCTION_ARGS)
{
	text	   *key = PG_GETARG_TEXT_PP(0);

	PG_RETURN_TEXT_P(cstring_to_text(rs_version_key_str(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key))));
}
