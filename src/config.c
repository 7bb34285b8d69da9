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
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "as_owner.h"
#include "config.h"

typedef struct ConfigEntry
{
	Oid			relid;			/* hash key */
	SyncConfig *cfg;
	MemoryContext cxt;			/* holds cfg and everything it points to */
} ConfigEntry;

static HTAB *config_cache = NULL;

/*
 * Contexts of invalidated entries.  Changes buffered by the current
 * transaction point into them (field names, prefixes), so they are freed
 * only at transaction end, by rs_config_release_retired().
 */
static List *retired = NIL;			/* in TopMemoryContext */

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
		if (relid == InvalidOid || e->relid == relid ||
			(e->cfg && e->cfg->root_relid == relid))
			e->cfg->valid = false;
	}
}

void
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

static void
resolve_columns(Oid relid, Datum names_datum, int *n, SyncColumn **out, const char *what)
{
	ArrayType  *arr = DatumGetArrayTypeP(names_datum);
	Datum	   *elems;
	bool	   *nulls;
	int			cnt;

	deconstruct_array(arr, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR, &elems, &nulls, &cnt);
	*n = cnt;
	*out = palloc0(sizeof(SyncColumn) * Max(cnt, 1));
	for (int i = 0; i < cnt; i++)
	{
		char	   *name = NameStr(*DatumGetName(elems[i]));
		AttrNumber	attnum = get_attnum(relid, name);
		Oid			typid;
		Oid			outfn;
		bool		isvarlena;

		if (attnum == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("%s column \"%s\" of synced table \"%s\" does not exist",
							what, name, get_rel_name(relid)),
					 errhint("Call redis_sync.write_through() again to update the configuration, or redis_sync.unsync().")));
		typid = get_atttype(relid, attnum);
		getTypeOutputInfo(typid, &outfn, &isvarlena);
		(*out)[i].attnum = attnum;
		(*out)[i].name = pstrdup(name);
		(*out)[i].typid = typid;
		fmgr_info_cxt(outfn, &(*out)[i].out, CurrentMemoryContext);
	}
}

/* build a config for relid; runs SPI as the caller (SELECT on tables is public) */
static SyncConfig *
load_config(Oid relid)
{
	SyncConfig *cfg = palloc0(sizeof(SyncConfig));
	Oid			root = relid;
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1];
	int			ret;
	Oid			nsp = get_namespace_oid("redis_sync", true);
	MemoryContext target = CurrentMemoryContext;
	int			nestlevel;

	cfg->relid = relid;
	cfg->valid = true;
	if (!OidIsValid(nsp))
		return cfg;				/* extension dropped: nothing is synced */

	if (get_rel_relispartition(relid))
	{
		List	   *anc = get_partition_ancestors(relid);

		root = llast_oid(anc);
	}
	cfg->root_relid = root;

	values[0] = ObjectIdGetDatum(root);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	nestlevel = rs_search_path_enter();	/* as_owner.c */
	ret = SPI_execute_with_args("SELECT policy, key_prefix, key_columns, columns, format, "
								"       (extract(epoch FROM ttl) * 1000)::bigint, consistency, delivery "
								"  FROM redis_sync.tables "
								" WHERE relid = $1 AND policy IN ('write_through', 'invalidate')",
								1, argtypes, values, NULL, true, 1);
	rs_search_path_leave(nestlevel);
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
	MemoryContext cxt;
	MemoryContext old;

	rs_config_init();
	e = hash_search(config_cache, &relid, HASH_ENTER, &found);
	if (found && e->cfg->valid)
		return e->cfg;
	if (found)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		retired = lappend(retired, e->cxt);
		MemoryContextSwitchTo(old);
	}
	e->cfg = NULL;
	e->cxt = NULL;

	cxt = AllocSetContextCreate(CacheMemoryContext, "redis_sync config",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		e->cfg = load_config(relid);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(old);
		hash_search(config_cache, &relid, HASH_REMOVE, NULL);
		MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	e->cxt = cxt;
	return e->cfg;
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
