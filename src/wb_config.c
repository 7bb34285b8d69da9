/*-------------------------------------------------------------------------
 *
 * wb_config.c
 *		Write-behind configuration: the write-behind tables as the drain,
 *		re-seeding and the SQL API see them (redis_sync.tables joined with the
 *		catalog).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "encode.h"
#include "wb_internal.h"

/* ----------------------------------------------------------------
 * Configuration
 * ---------------------------------------------------------------- */

/*
 * load write-behind tables (all, or relid); in a transaction.
 *
 * redis_sync.tables allows NULL in the write-behind columns (write_behind()
 * never stores one, but rows 0.1 users inserted by hand, as sql/upgrade
 * does, can hold them): NULL flush_interval, batch_size and on_missing take
 * write_behind()'s defaults, and a row without a dirty_set is no
 * write-behind table.  text_to_cstring() of a NULL on_missing crashed the
 * worker, and with it the server, at every round (found by an adversarial
 * review, tests/t/338).
 */
List *
wb_load_tables(Oid relid)
{
	MemoryContext outer = CurrentMemoryContext;
	List	   *result = NIL;
	Oid			types[1] = {OIDOID};
	Datum		values[1];
	int			nestlevel;

	values[0] = ObjectIdGetDatum(relid);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	nestlevel = rs_search_path_enter(); /* as_owner.c: the caller's
										 * search_path is not ours */
	if (SPI_execute_with_args(
							  "SELECT t.relid::oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relowner, "
							  "       t.key_prefix, t.dirty_set, t.format, t.key_columns::text[], "
							  "       ARRAY(SELECT format_type(a.atttypid, a.atttypmod) FROM unnest(t.key_columns) WITH ORDINALITY k(n, o) "
							  "              JOIN pg_attribute a ON a.attrelid = t.relid AND a.attname = k.n ORDER BY k.o), "
							  "       t.columns::text[], "
							  "       ARRAY(SELECT format_type(a.atttypid, a.atttypmod) FROM unnest(t.columns) WITH ORDINALITY k(n, o) "
							  "              JOIN pg_attribute a ON a.attrelid = t.relid AND a.attname = k.n ORDER BY k.o), "
							  "       ARRAY(SELECT x = ANY (coalesce(t.counters, '{}')) FROM unnest(t.columns) WITH ORDINALITY k(x, o) ORDER BY k.o), "
							  "       (extract(epoch FROM coalesce(t.flush_interval, '1 s')) * 1000)::bigint, "
							  "       coalesce(t.batch_size, 5000), coalesce(t.on_missing, 'ignore'), "
							  "       ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = t.relid AND a.attnum > 0 AND NOT a.attisdropped), "
							  "       ARRAY(SELECT pg_catalog.quote_ident(tn.nspname) || '.' || pg_catalog.quote_ident(ty.typname) "
							  "               FROM pg_catalog.unnest(t.key_columns) WITH ORDINALITY k(n, o) "
							  "              JOIN pg_catalog.pg_attribute a ON a.attrelid = t.relid AND a.attname = k.n "
							  "              JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid "
							  "              JOIN pg_catalog.pg_namespace tn ON tn.oid = ty.typnamespace ORDER BY k.o), "
							  "       ARRAY(SELECT pg_catalog.quote_ident(tn.nspname) || '.' || pg_catalog.quote_ident(ty.typname) "
							  "               FROM pg_catalog.unnest(t.columns) WITH ORDINALITY k(n, o) "
							  "              JOIN pg_catalog.pg_attribute a ON a.attrelid = t.relid AND a.attname = k.n "
							  "              JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid "
							  "              JOIN pg_catalog.pg_namespace tn ON tn.oid = ty.typnamespace ORDER BY k.o), "
							  "       ARRAY(SELECT a.attgenerated = '' AND a.attidentity <> 'a' "
							  "               FROM pg_catalog.unnest(t.columns) WITH ORDINALITY k(n, o) "
							  "              JOIN pg_catalog.pg_attribute a ON a.attrelid = t.relid AND a.attname = k.n ORDER BY k.o) "
							  "  FROM redis_sync.tables t JOIN pg_class c ON c.oid = t.relid "
							  "  JOIN pg_namespace n ON n.oid = c.relnamespace "
							  " WHERE t.policy = 'write_behind' AND t.dirty_set IS NOT NULL "
							  "   AND ($1 = 0 OR t.relid = $1) ORDER BY 1",
							  1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read redis_sync.tables");
	rs_search_path_leave(nestlevel);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;
		MemoryContext spi = MemoryContextSwitchTo(outer);
		WbTable    *t = palloc0(sizeof(WbTable));
		char	   *fmt;
		int			n2;
		ArrayType  *carr;
		Datum	   *celems;
		bool	   *cnulls;
		int			cn;

		t->relid = DatumGetObjectId(SPI_getbinval(tup, td, 1, &isnull));
		t->qname = TextDatumGetCString(SPI_getbinval(tup, td, 2, &isnull));
		t->owner = DatumGetObjectId(SPI_getbinval(tup, td, 3, &isnull));
		t->prefix = TextDatumGetCString(SPI_getbinval(tup, td, 4, &isnull));
		t->dirty = TextDatumGetCString(SPI_getbinval(tup, td, 5, &isnull));
		fmt = TextDatumGetCString(SPI_getbinval(tup, td, 6, &isnull));
		t->format = strcmp(fmt, "hash") == 0 ? WB_FORMAT_HASH :
			strcmp(fmt, "json") == 0 ? WB_FORMAT_JSON : WB_FORMAT_STRING;
		t->keys = rs_text_array(DatumGetArrayTypeP(SPI_getbinval(tup, td, 7, &isnull)), &t->nkeys);
		t->keytypes = rs_text_array(DatumGetArrayTypeP(SPI_getbinval(tup, td, 8, &isnull)), &n2);
		t->cols = rs_text_array(DatumGetArrayTypeP(SPI_getbinval(tup, td, 9, &isnull)), &t->ncols);
		t->coltypes = rs_text_array(DatumGetArrayTypeP(SPI_getbinval(tup, td, 10, &isnull)), &n2);
		carr = DatumGetArrayTypeP(SPI_getbinval(tup, td, 11, &isnull));
		deconstruct_array(carr, BOOLOID, 1, true, TYPALIGN_CHAR, &celems, &cnulls, &cn);
		t->counter = palloc0(sizeof(bool) * Max(cn, 1));
		for (int c = 0; c < cn; c++)
		{
			t->counter[c] = DatumGetBool(celems[c]);
			if (t->counter[c])
				t->ncounters++;
		}
		t->interval_ms = DatumGetInt64(SPI_getbinval(tup, td, 12, &isnull));
		t->batch = DatumGetInt32(SPI_getbinval(tup, td, 13, &isnull));
		t->delete_missing = strcmp(TextDatumGetCString(SPI_getbinval(tup, td, 14, &isnull)), "delete") == 0;
		t->allcols = rs_text_array(DatumGetArrayTypeP(SPI_getbinval(tup, td, 15, &isnull)), &t->nallcols);
		t->keybase = rs_text_array(DatumGetArrayTypeP(SPI_getbinval(tup, td, 16, &isnull)), &n2);
		t->colbase = rs_text_array(DatumGetArrayTypeP(SPI_getbinval(tup, td, 17, &isnull)), &n2);
		carr = DatumGetArrayTypeP(SPI_getbinval(tup, td, 18, &isnull));
		deconstruct_array(carr, BOOLOID, 1, true, TYPALIGN_CHAR, &celems, &cnulls, &cn);
		t->writable = palloc0(sizeof(bool) * Max(cn, 1));
		for (int c = 0; c < cn; c++)
			t->writable[c] = DatumGetBool(celems[c]);
		t->processing = rs_companion_key(t->dirty, strlen(t->dirty), ":rs_processing");
		result = lappend(result, t);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return result;
}

/*
 * The worker's cache of every write-behind table, so an idle round costs no
 * query.  Any relcache invalidation (or a full reset) marks it stale: the
 * functions that change redis_sync.tables invalidate the relcache of the
 * table, DDL on a table invalidates it, and a table made write-behind sends
 * one for a relation the cache does not know yet, so every relid counts.
 * Schema and type renames change the quoted names it holds without a
 * relcache invalidation: pg_namespace and pg_type changes count too.
 * Invalidations are processed when a transaction starts, that is before
 * each round reads the cache; the callback only flags.  The list stays
 * valid until the next wb_tables_cached() call (its memory is reset there).
 */
static MemoryContext wb_cache_cxt = NULL;
static List *wb_cache = NIL;
static bool wb_cache_valid = false;
static bool wb_cache_registered = false;

/* loads restarted because an invalidation arrived mid-load, at most */
#define WB_CACHE_LOAD_RETRIES 3

/* invalidations seen (wb_config_check_current) */
static uint64 wb_inval_count = 0;

static void
wb_cache_inval(Datum arg, Oid relid)
{
	wb_cache_valid = false;
	wb_inval_count++;
}

static void
wb_cache_inval_syscache(Datum arg, int cacheid, uint32 hashvalue)
{
	wb_cache_valid = false;
	wb_inval_count++;
}

/*
 * What the drain learnt of a table's sizes (drain.c: its values' replies,
 * its members' length, the caps a dropped page or claim set): kept across
 * a reload of the cache, which any relcache invalidation in the database
 * causes (an autoanalyze, a temporary table).  Forgotten, the first claim
 * after each reload asked for a whole batch again, and Redis dropped it
 * again under a limit on client output (review helper-107).
 */
typedef struct WbSizeHints
{
	Oid			relid;
	WbSizes		sizes;
} WbSizeHints;

static WbSizeHints *
size_hints_save(int *n)
{
	WbSizeHints *h = palloc(sizeof(WbSizeHints) * Max(list_length(wb_cache), 1));
	ListCell   *lc;

	*n = 0;
	foreach(lc, wb_cache)
	{
		WbTable    *t = lfirst(lc);

		h[*n].relid = t->relid;
		h[*n].sizes = t->sizes;
		(*n)++;
	}
	return h;
}

static void
size_hints_restore(const WbSizeHints *h, int n)
{
	ListCell   *lc;

	foreach(lc, wb_cache)
	{
		WbTable    *t = lfirst(lc);

		for (int i = 0; i < n; i++)
			if (h[i].relid == t->relid)
			{
				t->sizes = h[i].sizes;
				break;
			}
	}
}

List *
wb_tables_cached(void)
{
	WbSizeHints *hints = NULL;
	int			nhints = 0;

	if (!wb_cache_registered)
	{
		CacheRegisterRelcacheCallback(wb_cache_inval, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, wb_cache_inval_syscache, (Datum) 0);
		CacheRegisterSyscacheCallback(TYPEOID, wb_cache_inval_syscache, (Datum) 0);
		wb_cache_registered = true;
	}
	if (wb_cache_cxt == NULL)
		wb_cache_cxt = AllocSetContextCreate(TopMemoryContext, "redis_sync write-behind tables",
											 ALLOCSET_SMALL_SIZES);
	/* an invalidation during the load (any catalog read) loads again */
	for (int i = 0; i < WB_CACHE_LOAD_RETRIES && !wb_cache_valid; i++)
	{
		MemoryContext old;
		uint64		gen = wb_inval_count;
		ListCell   *lc;

		if (hints == NULL)
			hints = size_hints_save(&nhints);
		MemoryContextReset(wb_cache_cxt);
		wb_cache = NIL;
		wb_cache_valid = true;
		old = MemoryContextSwitchTo(wb_cache_cxt);

		/*
		 * a snapshot of its own, taken after the invalidations processed so
		 * far: the round's (SPI read_only uses it) may predate the commit
		 * whose invalidation arrived during the previous load
		 */
		PushActiveSnapshot(GetLatestSnapshot());
		wb_cache = wb_load_tables(InvalidOid);
		PopActiveSnapshot();
		MemoryContextSwitchTo(old);
		foreach(lc, wb_cache)
			((WbTable *) lfirst(lc))->checked_gen = gen;
		size_hints_restore(hints, nhints);
	}
	if (hints != NULL)
		pfree(hints);
	/* still flagged: use this load, and load again next round */
	return wb_cache;
}

static bool
same_strings(char **a, char **b, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return true;
}

/*
 * Do a and b (loaded at different times) write a batch the same way?  The
 * prefix, batch size and on_missing are not compared: the batch was claimed
 * and read under a's, and is applied consistently with them; nor is the
 * list of all the table's columns (only the count of unknown fields uses
 * it: an ADD COLUMN needs no retry).
 */
static bool
wb_table_same(const WbTable *a, const WbTable *b)
{
	if (a->relid != b->relid || a->owner != b->owner || a->format != b->format ||
		a->nkeys != b->nkeys || a->ncols != b->ncols ||
		a->ncounters != b->ncounters || strcmp(a->qname, b->qname) != 0)
		return false;
	if (!same_strings(a->keys, b->keys, a->nkeys) ||
		!same_strings(a->keytypes, b->keytypes, a->nkeys) ||
		!same_strings(a->keybase, b->keybase, a->nkeys) ||
		!same_strings(a->cols, b->cols, a->ncols) ||
		!same_strings(a->coltypes, b->coltypes, a->ncols) ||
		!same_strings(a->colbase, b->colbase, a->ncols))
		return false;
	for (int c = 0; c < a->ncols; c++)
		if (a->counter[c] != b->counter[c] || a->writable[c] != b->writable[c])
			return false;
	return true;
}

/*
 * At the start of a batch's transaction: is t, loaded when the round began,
 * still the table's configuration?  One drain round runs many batches, in
 * a transaction each, and the next ones are claimed and decoded while one
 * is written; DDL that commits between two of them (RENAME or DROP COLUMN,
 * a table rename, ALTER TYPE) used to leave the rest of the round writing
 * with names that no longer exist, and every later member became a dead
 * letter.  The table's lock is taken first (it processes the invalidations
 * that arrived, and DDL on the table waits until the batch commits); when
 * any invalidation arrived since t was loaded, the configuration is read
 * again (in a snapshot taken after the lock), and if it writes differently
 * now the batch fails with a transient error: it is rolled back, its
 * members stay in the processing set, and the next round (with the
 * configuration loaded again) drains them first.
 */
void
wb_config_check_current(WbTable *t)
{
	List	   *now;
	bool		same;
	uint64		gen;

	LockRelationOid(t->relid, RowExclusiveLock);

	/*
	 * the invalidations processed up to the lock: one processed during the
	 * load below (its snapshot may predate it) is checked at the next batch
	 */
	gen = wb_inval_count;
	if (t->checked_gen == gen)
		return;
	/* a snapshot taken after the lock: the batch's own predates the DDL */
	PushActiveSnapshot(GetTransactionSnapshot());
	now = wb_load_tables(t->relid);
	PopActiveSnapshot();
	same = now != NIL && wb_table_same(t, linitial(now));

	/*
	 * A batch of a table whose dirty set changed (write_behind() called again
	 * with another one, or no longer write-behind) is applied as claimed:
	 * rolled back, its members would stay in a processing set no round drains
	 * any more.
	 */
	if (!same && now != NIL && strcmp(t->dirty, ((WbTable *) linitial(now))->dirty) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("the write-behind configuration of %s changed during its drain", t->qname),
				 errdetail("The batch was rolled back; its members are drained again with the new configuration.")));
	t->checked_gen = gen;
}
