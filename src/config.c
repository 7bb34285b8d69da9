/*-------------------------------------------------------------------------
 *
 * config.c
 *		The per-backend cache of redis_sync.tables.
 *
 * Capture triggers look up their relation's configuration here on every row,
 * so it is cached in a hash table keyed by relation OID (a partition gets
 * its own entry that resolves column names to its own attribute numbers and
 * points at its root table's settings).  Entries are loaded with SPI from
 * redis_sync.tables and dropped on relcache invalidation of the relation:
 * the functions that change redis_sync.tables invalidate the relcache of the
 * table and its partitions, so every backend reloads before its next row.
 *
 * Entries live in their own memory context under CacheMemoryContext; an
 * invalidated entry is only marked, replaced at the next lookup, and its
 * memory freed at the end of the transaction: the transaction's buffered
 * changes point into it (field names, key prefixes).
 *
 * Invalidations arrive whenever the backend reads catalogs, which includes
 * the SPI query that loads an entry (ANALYZE and autovacuum send them all
 * the time).  An entry being loaded has no configuration yet: the callback
 * only flags it and the load is repeated.  The callback never allocates,
 * frees or dereferences anything but the hash entries.
 *
 * The load runs in the writer's session, whatever its search_path: the
 * query names every object, operator and cast with its schema.
 *
 * A write-through table that is also write-behind under the same prefix,
 * both in the hash format, shares its hashes with the write-behind fields
 * (wb_shared): its TRUNCATE removes only its own fields (capture.c).
 *
 * A synced column the configuration names but the table no longer has (the
 * DDL event trigger normally updates the configuration, see ddl.c) is
 * skipped with a WARNING rather than failing every write.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "config.h"

typedef struct ConfigEntry
{
	Oid			relid;			/* hash key */
	SyncConfig *cfg;			/* NULL while the entry loads */
	MemoryContext cxt;			/* holds cfg and everything it points to */
	bool		loading;		/* load_config() is running for this entry */
	Oid			loading_root;	/* while loading: the root table */
	bool		inval_during_load;	/* a relevant invalidation arrived
									 * meanwhile */
} ConfigEntry;

/* loads restarted because an invalidation arrived mid-load, at most */
#define MAX_LOAD_RETRIES 3

static HTAB *config_cache = NULL;

/*
 * Contexts of invalidated entries.  Changes buffered by the current
 * transaction point into them (field names, prefixes), so they are freed
 * only at transaction end, by rs_config_release_retired().
 */
static List *retired = NIL;		/* in TopMemoryContext */

/*
 * Relcache invalidation (relid) or full cache reset (InvalidOid).  It can
 * arrive at any moment a backend processes invalidation messages, including
 * during the SPI query of load_config() (ANALYZE, autovacuum and any DDL
 * send them): an entry being loaded has no cfg yet, so it is only flagged,
 * and rs_config_get() loads it again.  Nothing here allocates or errors.
 */
static void
config_inval_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	ConfigEntry *e;

	if (config_cache == NULL)
		return;
	hash_seq_init(&status, config_cache);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		if (e->loading || e->cfg == NULL)
		{
			if (relid == InvalidOid || relid == e->relid || relid == e->loading_root)
				e->inval_during_load = true;
			continue;
		}
		if (relid == InvalidOid || e->relid == relid ||
			e->cfg->root_relid == relid)
			e->cfg->valid = false;
	}
}

static void
rs_config_init(void)
{
	HASHCTL		ctl;

	if (config_cache)
		return;
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(ConfigEntry);
	ctl.hcxt = CacheMemoryContext;
	config_cache = hash_create("redis_sync config cache", 64, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	CacheRegisterRelcacheCallback(config_inval_callback, (Datum) 0);
}

/* "table \"name\"" for a message; with its OID once it is gone (dropped meanwhile) */
static const char *
table_label(Oid relid)
{
	char	   *name = get_rel_name(relid);

	return name ? psprintf("table \"%s\"", name) : psprintf("table with OID %u", relid);
}

static void
resolve_columns(Oid relid, Datum names_datum, int *n, SyncColumn **out, const char *what)
{
	ArrayType  *arr = DatumGetArrayTypeP(names_datum);
	Datum	   *elems;
	bool	   *nulls;
	int			cnt;

	bool		is_key = strcmp(what, "key") == 0;
	int			kept = 0;

	deconstruct_array(arr, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR, &elems, &nulls, &cnt);
	*out = palloc0(sizeof(SyncColumn) * Max(cnt, 1));
	for (int i = 0; i < cnt; i++)
	{
		char	   *name = NameStr(*DatumGetName(elems[i]));
		AttrNumber	attnum = get_attnum(relid, name);
		Oid			typid;
		Oid			outfn;
		bool		isvarlena;

		if (attnum == InvalidAttrNumber && !is_key)
		{
			/*
			 * The DDL event trigger follows drops and renames; this is only
			 * reached when it did not run (event triggers disabled, a
			 * configuration restored out of step).  Writes must not fail: the
			 * field is no longer written.
			 */
			ereport(WARNING,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("synced column \"%s\" of %s does not exist, it is not written to Redis",
							name, table_label(relid)),
					 errhint("Call redis_sync.write_through() again to update the configuration.")));
			continue;
		}
		if (attnum == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("%s column \"%s\" of synced %s does not exist",
							what, name, table_label(relid)),
					 errhint("Call redis_sync.write_through() again to update the configuration, or redis_sync.unsync().")));
		typid = get_atttype(relid, attnum);
		getTypeOutputInfo(typid, &outfn, &isvarlena);
		(*out)[kept].attnum = attnum;
		(*out)[kept].name = pstrdup(name);
		(*out)[kept].typid = typid;
		fmgr_info_cxt(outfn, &(*out)[kept].out, CurrentMemoryContext);
		kept++;
	}
	*n = kept;
}

List *
rs_partition_ancestors(Oid relid)
{
	List	   *up = NIL;

	while (get_rel_relispartition(relid))
	{
		relid = get_partition_parent(relid, true);
		up = lappend_oid(up, relid);
	}
	return up;
}

/* the table in redis_sync.tables for relid: its topmost partition ancestor */
static Oid
root_of(Oid relid)
{
	List	   *up = rs_partition_ancestors(relid);

	return up != NIL ? llast_oid(up) : relid;
}

/* build a config for relid; runs SPI as the caller (SELECT on tables is public) */
static SyncConfig *
load_config(Oid relid, Oid root)
{
	SyncConfig *cfg = palloc0(sizeof(SyncConfig));
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1];
	int			ret;
	Oid			nsp = get_namespace_oid("redis_sync", true);
	MemoryContext target = CurrentMemoryContext;

	cfg->relid = relid;
	cfg->valid = true;

	/*
	 * extension dropped (maybe earlier in this transaction): nothing is
	 * synced
	 */
	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("tables", nsp)))
		return cfg;

	cfg->root_relid = root;

	values[0] = ObjectIdGetDatum(root);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");

	/*
	 * Runs in the writer's session, with its search_path (which may hold a
	 * planted operator, maybe under a SECURITY DEFINER function): every name,
	 * operator and cast below is schema-qualified, so that path is never
	 * searched.  That alone is the defence (regress suite security,
	 * "planted_function_calls"); setting search_path too, as before, cost a
	 * GUC nest level per load and added nothing.
	 *
	 * It reads with a snapshot of its own, taken after the invalidations
	 * processed so far: the entry outlives the transaction, and the caller's
	 * snapshot (a REPEATABLE READ transaction's, or one taken before a lock
	 * wait that processed the change's invalidation: the worker's warm) may
	 * predate the change (tests/t/310, 311).
	 */
	PushActiveSnapshot(GetLatestSnapshot());
	ret = SPI_execute_with_args("SELECT t.policy, t.key_prefix, t.key_columns, t.columns, t.format, "
								"       (pg_catalog.extract('epoch', t.ttl) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8, "
								"       t.consistency, t.delivery, "
								"       EXISTS (SELECT FROM redis_sync.tables w "
								"                WHERE w.relid OPERATOR(pg_catalog.=) t.relid "
								"                  AND w.policy OPERATOR(pg_catalog.=) 'write_behind' "
								"                  AND w.key_prefix OPERATOR(pg_catalog.=) t.key_prefix "
								"                  AND w.format OPERATOR(pg_catalog.=) 'hash') "
								"  FROM redis_sync.tables t "
								" WHERE t.relid OPERATOR(pg_catalog.=) $1 "
								"   AND t.policy OPERATOR(pg_catalog.=) ANY ('{write_through,invalidate}'::pg_catalog.text[])",
								1, argtypes, values, NULL, true, 1);
	PopActiveSnapshot();
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read redis_sync.tables");
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;
		MemoryContext spicxt = MemoryContextSwitchTo(target);
		char	   *policy = TextDatumGetCString(SPI_getbinval(tup, td, 1, &isnull));
		char	   *format = TextDatumGetCString(SPI_getbinval(tup, td, 5, &isnull));
		Datum		ttl;

		cfg->synced = true;
		cfg->policy = strcmp(policy, "invalidate") == 0 ? RS_POLICY_INVALIDATE : RS_POLICY_WRITE_THROUGH;
		cfg->prefix = TextDatumGetCString(SPI_getbinval(tup, td, 2, &isnull));
		resolve_columns(relid, SPI_getbinval(tup, td, 3, &isnull), &cfg->nkeys, &cfg->keys, "key");
		resolve_columns(relid, SPI_getbinval(tup, td, 4, &isnull), &cfg->ncols, &cfg->cols, "synced");
		cfg->format = strcmp(format, "json") == 0 ? RS_FORMAT_JSON : RS_FORMAT_HASH;
		ttl = SPI_getbinval(tup, td, 6, &isnull);
		cfg->ttl_ms = isnull ? 0 : DatumGetInt64(ttl);
		cfg->strict = strcmp(TextDatumGetCString(SPI_getbinval(tup, td, 7, &isnull)), "strict") == 0;
		cfg->async = strcmp(TextDatumGetCString(SPI_getbinval(tup, td, 8, &isnull)), "async") == 0;
		cfg->wb_shared = cfg->policy == RS_POLICY_WRITE_THROUGH && cfg->format == RS_FORMAT_HASH &&
			DatumGetBool(SPI_getbinval(tup, td, 9, &isnull));
		if (cfg->format == RS_FORMAT_JSON)
		{
			TupleDesc	jd = CreateTemplateTupleDesc(cfg->ncols);

			for (int i = 0; i < cfg->ncols; i++)
				TupleDescInitEntry(jd, (AttrNumber) (i + 1), cfg->cols[i].name,
								   cfg->cols[i].typid, -1, 0);
			cfg->json_desc = BlessTupleDesc(jd);
		}
		MemoryContextSwitchTo(spicxt);
	}
	SPI_finish();
	return cfg;
}

SyncConfig *
rs_config_get(Oid relid)
{
	ConfigEntry *e;
	bool		found;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext volatile cxt = NULL;
	SyncConfig *volatile cfg = NULL;
	MemoryContext old;

	rs_config_init();
	e = hash_search(config_cache, &relid, HASH_ENTER, &found);
	if (found && e->cfg != NULL && !e->loading && e->cfg->valid)
		return e->cfg;
	if (found && e->loading)
	{
		/*
		 * Asked again while this very entry loads (a nested capture during
		 * the load's query): load a private copy, freed at transaction end.
		 */
		MemoryContext priv = AllocSetContextCreate(CacheMemoryContext, "redis_sync config",
												   ALLOCSET_SMALL_SIZES);
		SyncConfig *copy;

		old = MemoryContextSwitchTo(TopMemoryContext);
		retired = lappend(retired, priv);
		MemoryContextSwitchTo(priv);
		copy = load_config(relid, root_of(relid));
		MemoryContextSwitchTo(old);
		copy->valid = false;
		return copy;
	}
	if (found && e->cxt != NULL)
	{
		/* the transaction's buffered changes may point into it */
		old = MemoryContextSwitchTo(TopMemoryContext);
		retired = lappend(retired, e->cxt);
		MemoryContextSwitchTo(old);
	}
	e->cfg = NULL;
	e->cxt = NULL;
	e->loading = true;
	e->loading_root = InvalidOid;

	/*
	 * An invalidation processed during the load (its SPI query reads
	 * catalogs) may mean that what was read is already out of date: load
	 * again.  After a few tries use the result once and reload next time. The
	 * entry pointer stays valid: dynahash never moves entries, and the
	 * callback never removes them.
	 */
	PG_TRY();
	{
		for (int attempt = 0;; attempt++)
		{
			e->inval_during_load = false;
			e->loading_root = root_of(relid);
			cxt = AllocSetContextCreate(CacheMemoryContext, "redis_sync config",
										ALLOCSET_SMALL_SIZES);
			MemoryContextSwitchTo(cxt);
			cfg = load_config(relid, e->loading_root);
			MemoryContextSwitchTo(caller);
			if (!e->inval_during_load)
				break;
			if (attempt + 1 >= MAX_LOAD_RETRIES)
			{
				cfg->valid = false;
				break;
			}
			/* nothing points into the discarded load yet */
			MemoryContextDelete(cxt);
			cxt = NULL;
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		e->loading = false;
		hash_search(config_cache, &relid, HASH_REMOVE, NULL);
		if (cxt)
			MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	e->cfg = cfg;
	e->cxt = cxt;
	e->loading = false;
	return cfg;
}

SyncConfig *
rs_config_build(Oid relid, Oid root)
{
	return load_config(relid, root);
}

void
rs_config_release_retired(void)
{
	ListCell   *lc;

	foreach(lc, retired)
		MemoryContextDelete((MemoryContext) lfirst(lc));
	list_free(retired);
	retired = NIL;
}
