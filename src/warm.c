/*-------------------------------------------------------------------------
 *
 * warm.c
 *		Writing the table's committed rows to Redis: cache warming (warm(),
 *		the background warm that write_through() schedules, re-warming after
 *		Redis lost its data), and pushing named rows again (resync, repair of
 *		keys pushed by transactions that did not commit, get()'s populate).
 *
 * Two ways to write a row, chosen by what the write may replace.
 *
 * Filling (warm, background warm, re-warm) takes no row locks and writes
 * nothing to the table.  A batch of rows is read with a plain snapshot, in
 * key order, and handed to the fill script, which writes a key only when
 * Redis has neither the key nor its version key, and then stores the lowest
 * possible version ("0...0") beside it.  That cannot lose against a
 * concurrent writer of the row, whatever the fill read:
 *
 *	- a push that reached Redis before the fill left a version key: the fill
 *	  leaves the key alone;
 *	- a push that reaches Redis after the fill carries a real version, newer
 *	  than "0...0": it overwrites the filled value (an outbox delivery too).
 *
 * (The one exception is a delete whose tombstone expires,
 * redis_sync.tombstone_ttl, between the fill's read and its write of the
 * same batch.)  Eviction can remove a newer write's key together with its
 * version after the fill's read: once Redis has evicted keys (INFO stats
 * evicted_keys is not 0), keys missing with their version are settled like
 * the half-there keys below instead of filled.  Keys with both are kept by pushes and left alone; resync()
 * repairs a cached value that differs.
 *
 * Keys found half there -- a version without data (a tombstone: the row
 * was deleted, or the keys purged by TRUNCATE or unsync(purge); or data
 * deleted or evicted) or data without a version -- are not decided by the
 * fill, whose snapshot may predate the write that left them.  They are
 * "settled" (rs_push_named): the version V is taken first, then the fill waits
 * until every transaction holding a write lock on the table has ended, then
 * reads the rows with a new snapshot, still without row locks, and pushes
 * them fenced with V.  Any write whose version is not newer than V was in
 * progress when V was taken (a push happens at pre-commit, under the write
 * lock), so the new snapshot shows its outcome; any later write carries a
 * newer version and wins.  (Under REPEATABLE READ the snapshot cannot be
 * renewed, and warm() pushes those keys the locked way, see warm_push.c.)
 * A table whose keys are mostly half there (tombstones) has its next
 * batches settled whole, without the fill (settled batches,
 * rs_fill_next_batch).
 *
 * Pushing named rows (resync, repair, get(), and settling keys a fill
 * found half there) is warm_push.c's.
 *
 * Background warms (the queue, _warm_schedule(), the worker's round and
 * warm() itself) are in warm_queue.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "as_owner.h"
#include "cluster.h"
#include "fence.h"
#include "shmem.h"
#include "warm.h"


/*
 * The fill script.  KEYS: data key, version key, per row.  ARGV[1]: the
 * version to store ("0...0"); then per row: op ('H' or 'S'), ttl in ms, and
 * for 'H' the number of fields followed by field, value pairs (NULL columns
 * left out), for 'S' the string.  Returns one status per row: 0 written, 1
 * left alone (both keys there, or a row whose synced columns are all NULL,
 * which has no data key), 2 half there (data
 * without version or version without data: the caller pushes it locked),
 * or missing with its version while Redis has evicted keys (INFO stats
 * evicted_keys is not 0): the pair may have been evicted after the fill's
 * snapshot together with a newer write, so the caller settles it too.
 * Only absent keys are written, so no write can meet a key of another type.
 */
static RedisScript fill_script = REDIS_SCRIPT("redis_sync_fill",
											  "local zero = ARGV[1]\n"
											  "local p = 2\n"
											  "local result = {}\n"
											  "local vkeys, done = {}, {}\n"
											  "-- Redis has evicted keys (maxmemory): a key missing with its version may\n"
											  "-- have been evicted after this fill's snapshot was taken, together with a\n"
											  "-- newer write's value; such keys are settled by the caller, fenced\n"
											  "local ok, info = pcall(redis.call, 'INFO', 'stats')\n"
											  "local ev = ok and type(info) == 'string' and string.match(info, 'evicted_keys:(%d+)') or nil\n"
											  "local evicting = ev ~= nil and ev ~= '0'\n"
											  "for k = 1, #KEYS, 2 do\n"
											  "  local op, ttl = ARGV[p], tonumber(ARGV[p + 1])\n"
											  "  local n, start = 1, p + 2\n"
											  "  if op == 'H' then\n"
											  "    n = tonumber(ARGV[p + 2]); start = p + 3; p = p + 3 + 2 * n\n"
											  "  else\n"
											  "    p = p + 3\n"
											  "  end\n"
											  "  -- one EXISTS for both keys: 0 neither, 1 half there, 2 both\n"
											  "  -- (a key written earlier in this call counts as both: its version is queued)\n"
											  "  local has = 2\n"
											  "  if n > 0 and not done[KEYS[k]] then\n"
											  "    has = redis.call('EXISTS', KEYS[k], KEYS[k + 1])\n"
											  "  end\n"
											  "  local r = 1\n"
											  "  if has == 1 then\n"
											  "    r = 2\n"
											  "  elseif has == 0 and evicting then\n"
											  "    r = 2\n"
											  "  elseif has == 0 then\n"
											  "    if op == 'H' then\n"
											  "      redis.call('HSET', KEYS[k], unpack(ARGV, start, start + 2 * n - 1))\n"
											  "    else\n"
											  "      redis.call('SET', KEYS[k], ARGV[start])\n"
											  "    end\n"
											  "    if ttl > 0 then\n"
											  "      redis.call('PEXPIRE', KEYS[k], ttl)\n"
											  "      redis.call('SET', KEYS[k + 1], zero, 'PX', ttl)\n"
											  "    else\n"
											  "      vkeys[#vkeys + 1] = KEYS[k + 1]\n"
											  "      vkeys[#vkeys + 1] = zero\n"
											  "      if #vkeys >= 1000 then -- well inside Lua's stack for unpack\n"
											  "        redis.call('MSET', unpack(vkeys))\n"
											  "        vkeys = {}\n"
											  "      end\n"
											  "    end\n"
											  "    done[KEYS[k]] = true\n"
											  "    r = 0\n"
											  "  end\n"
											  "  result[#result + 1] = r\n"
											  "end\n"
											  "if #vkeys > 0 then\n"
											  "  redis.call('MSET', unpack(vkeys))\n"
											  "end\n"
											  "return result\n");

/* "k1", "k2" quoted, comma separated */
char *
rs_warm_key_list(SyncConfig *cfg)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < cfg->nkeys; i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "", quote_identifier(cfg->keys[i].name));
	return buf.data;
}

/*
 * The configuration that says what the cache holds for a table.  An
 * invalidate table pushes only deletes; what get() caches for it is the hash
 * of all its current columns (resolved here, at each call, so that adding,
 * dropping or renaming a column never breaks the table's writes).
 */
SyncConfig *
rs_cache_config(SyncConfig *cfg)
{
	SyncConfig *enc;
	Relation	rel;
	TupleDesc	td;

	if (cfg->policy != RS_POLICY_INVALIDATE)
		return cfg;
	enc = palloc(sizeof(SyncConfig));
	memcpy(enc, cfg, sizeof(SyncConfig));
	enc->policy = RS_POLICY_WRITE_THROUGH;
	enc->format = RS_FORMAT_HASH;
	enc->json_desc = NULL;
	rel = relation_open(cfg->relid, AccessShareLock);
	td = RelationGetDescr(rel);
	enc->cols = palloc0(sizeof(SyncColumn) * Max(td->natts, 1));
	enc->ncols = 0;
	for (int i = 0; i < td->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(td, i);
		SyncColumn *c = &enc->cols[enc->ncols];
		Oid			outfn;
		bool		isvarlena;

		if (att->attisdropped)
			continue;
		c->attnum = att->attnum;
		c->name = pstrdup(NameStr(att->attname));
		c->typid = att->atttypid;
		getTypeOutputInfo(att->atttypid, &outfn, &isvarlena);
		fmgr_info(outfn, &c->out);
		enc->ncols++;
	}
	relation_close(rel, AccessShareLock);
	return enc;
}

/* the row of an SPI result's first column (a whole-row composite) */
void
rs_row_from_composite(HeapTuple spitup, TupleDesc spidesc, Oid relid, HeapTupleData *tup)
{
	bool		isnull;
	Datum		d = SPI_getbinval(spitup, spidesc, 1, &isnull);
	HeapTupleHeader hdr = DatumGetHeapTupleHeader(d);

	tup->t_len = HeapTupleHeaderGetDatumLength(hdr);
	ItemPointerSetInvalid(&tup->t_self);
	tup->t_tableOid = relid;
	tup->t_data = hdr;
}

/*
 * The arguments of one row for the fill script: ttl is the table's, written
 * once per chunk; the row's field count goes in *num (12 bytes of the
 * caller's), as psprintf's 128 bytes a row cost a fill 9% of its backend
 * time, most of it in page faults.
 */
static void
fill_args(const char **argv, size_t *lens, int *argc, RowImage *img, const char *ttl,
		  size_t ttllen, char *num)
{
	argv[*argc] = img->op == RS_OP_HASH ? "H" : "S";
	lens[(*argc)++] = 1;
	argv[*argc] = ttl;
	lens[(*argc)++] = ttllen;
	if (img->op == RS_OP_HASH)
	{
		int			nset = 0;

		for (int f = 0; f < img->nfields; f++)
			if (img->values[f])
				nset++;
		argv[*argc] = num;
		lens[(*argc)++] = pg_ltoa(nset, num);
		for (int f = 0; f < img->nfields; f++)
			if (img->values[f])
			{
				argv[*argc] = img->fields[f];
				lens[(*argc)++] = strlen(img->fields[f]);
				argv[*argc] = img->values[f];
				lens[(*argc)++] = strlen(img->values[f]);
			}
	}
	else
	{
		argv[*argc] = img->str;
		lens[(*argc)++] = strlen(img->str);
	}
}

/* the encoded rows of one fill batch, in the order they are sent */
typedef struct FillBatch
{
	uint64		nrows;
	char	  **keys;
	char	 ***keyvals;		/* key columns' text of each row */
	RowImage   *imgs;
	bool		cluster;		/* ordered by hash slot */
} FillBatch;

/* room for the encoded rows of one SPI result */
static void
init_fill_batch(FillBatch *b, uint64 nrows)
{
	b->nrows = nrows;
	b->keys = palloc(sizeof(char *) * Max(nrows, 1));
	b->keyvals = palloc(sizeof(char **) * Max(nrows, 1));
	b->imgs = palloc(sizeof(RowImage) * Max(nrows, 1));
	b->cluster = false;
}

/* encode rows [s, e) of one SPI result (column 1: the row) */
static void
encode_fill_rows(FillBatch *b, SyncConfig *enc, TupleDesc reldesc, SPITupleTable *tt,
				 uint64 s, uint64 e)
{
	for (uint64 i = s; i < e; i++)
	{
		HeapTupleData tup;

		rs_row_from_composite(tt->vals[i], tt->tupdesc, enc->relid, &tup);
		b->keys[i] = rs_encode_key(enc, reldesc, &tup, &b->keyvals[i]);
		rs_encode_row(enc, reldesc, &tup, &b->imgs[i]);
	}
}

/*
 * On a Redis Cluster a script call may only touch one hash slot: the rows
 * are ordered by slot and a chunk ends where the slot changes.
 */
static void
order_fill_batch_by_slot(FillBatch *b)
{
	uint64		nrows = b->nrows;
	int		   *slot = palloc(sizeof(int) * nrows);
	uint64	   *order = palloc(sizeof(uint64) * nrows);
	uint64	   *pos = palloc0(sizeof(uint64) * (RS_CLUSTER_SLOTS + 1));
	char	  **k2 = palloc(sizeof(char *) * nrows);
	char	 ***kv2 = palloc(sizeof(char **) * nrows);
	RowImage   *im2 = palloc(sizeof(RowImage) * nrows);

	for (uint64 i = 0; i < nrows; i++)
	{
		slot[i] = redis_key_slot(b->keys[i], strlen(b->keys[i]));
		pos[slot[i] + 1]++;
	}
	for (int sl = 0; sl < RS_CLUSTER_SLOTS; sl++)
		pos[sl + 1] += pos[sl];
	for (uint64 i = 0; i < nrows; i++)
		order[pos[slot[i]]++] = i;
	for (uint64 i = 0; i < nrows; i++)
	{
		k2[i] = b->keys[order[i]];
		kv2[i] = b->keyvals[order[i]];
		im2[i] = b->imgs[order[i]];
	}
	b->keys = k2;
	b->keyvals = kv2;
	b->imgs = im2;
	b->cluster = true;
}

/*
 * Append the fill script call for the rows [s, e) (on a cluster up to where
 * the slot changes); returns where it stopped.
 */
static uint64
append_fill_chunk(RedisPipeline *p, FillBatch *b, uint64 s, uint64 e, const char *zero,
				  int64 ttl_ms)
{
	int			max = 1;
	int			argc = 0;
	int			nkeys = 0;
	const char **argv;
	size_t	   *lens;
	char		ttl[MAXINT8LEN + 1];
	size_t		ttllen = pg_lltoa(ttl_ms, ttl);
	char	   *nums;

	if (b->cluster)
	{
		int			sl = redis_key_slot(b->keys[s], strlen(b->keys[s]));

		for (uint64 i = s + 1; i < e; i++)
			if (redis_key_slot(b->keys[i], strlen(b->keys[i])) != sl)
			{
				e = i;
				break;
			}
	}
	for (uint64 i = s; i < e; i++)
		max += 2 + 3 + (b->imgs[i].op == RS_OP_HASH ? 2 * b->imgs[i].nfields : 1);
	argv = palloc(sizeof(char *) * max);
	lens = palloc(sizeof(size_t) * max);
	for (uint64 i = s; i < e; i++)
	{
		size_t		klen = strlen(b->keys[i]);
		char	   *vkey = rs_version_key_str(b->keys[i], klen);

		argv[argc] = b->keys[i];
		lens[argc++] = klen;
		argv[argc] = vkey;
		lens[argc++] = strlen(vkey);
		nkeys += 2;
	}
	argv[argc] = zero;
	lens[argc++] = RS_VERSION_LEN;
	nums = palloc(12 * (e - s));
	for (uint64 i = s; i < e; i++)
		fill_args(argv, lens, &argc, &b->imgs[i], ttl, ttllen, nums + 12 * (i - s));
	redis_pipeline_append_script(p, &fill_script, nkeys, argc, argv, lens);
	return e;
}

/*
 * The fill script's replies, one integer per row: 0 written, 2 found half
 * there (added to *repush), anything else left alone.  Returns the keys
 * written.
 */
static int64
collect_fill_replies(RedisPipeline *p, FillBatch *b, int nkeys, List **repush)
{
	int64		written = 0;
	uint64		idx = 0;

	for (int c = 0; c < redis_pipeline_length(p); c++)
	{
		RedisValue *v;

		redis_check_reply(p, c, "a cache fill");
		v = redis_pipeline_reply(p, c);
		if (v->type != RV_ARRAY)
			elog(ERROR, "redis_sync: unexpected reply of the fill script");
		for (int j = 0; j < v->nelem; j++, idx++)
		{
			if (idx >= b->nrows)
				elog(ERROR, "redis_sync: unexpected reply of the fill script");
			if (v->elems[j].integer == 0)
				written++;
			else if (v->elems[j].integer == 2)
			{
				List	   *vals = NIL;

				for (int k = 0; k < nkeys; k++)
					vals = lappend(vals, b->keyvals[idx][k]);
				*repush = lappend(*repush, list_make2(b->keys[idx], vals));
			}
		}
	}
	return written;
}

/*
 * Fill the rows of one SPI result (column 1: the row; columns 2..: the key
 * columns) into Redis.  Returns the keys written; *repush gets the keys
 * found half there, as (redis key, List of key values) pairs for
 * rs_push_named().
 */
static int64
fill_rows(SyncConfig *enc, TupleDesc reldesc, SPITupleTable *tt, uint64 nrows,
		  List **repush)
{
	RedisPipeline *p = redis_pipeline_create();
	FillBatch	b;
	char		zero[RS_VERSION_LEN + 1];
	int64		written;

	/*
	 * Read once: encoding runs the table's code (casts to json), which may
	 * set redis_sync.chunk_size; a chunk must end where its encoding did
	 */
	uint64		chunk = Max(rs_chunk_size, 1);

	memset(zero, '0', RS_VERSION_LEN);
	zero[RS_VERSION_LEN] = '\0';
	init_fill_batch(&b, nrows);
	if (redis_cluster_mode() && nrows > 1)
	{
		/* one script call per chunk and slot, all in one round trip */
		encode_fill_rows(&b, enc, reldesc, tt, 0, nrows);
		order_fill_batch_by_slot(&b);
		for (uint64 s = 0; s < nrows;)
			s = append_fill_chunk(p, &b, s, Min(nrows, s + chunk), zero, enc->ttl_ms);
	}
	else
	{
		/*
		 * One script call per chunk, each sent as soon as it is encoded
		 * (redis_pipeline_stream), so Redis fills one chunk while the next is
		 * encoded; the exec sends the last and reads every reply.
		 */
		for (uint64 s = 0; s < nrows;)
		{
			uint64		e = Min(nrows, s + chunk);

			encode_fill_rows(&b, enc, reldesc, tt, s, e);
			s = append_fill_chunk(p, &b, s, e, zero, enc->ttl_ms);
			if (s < nrows)
			{
				(void) redis_pipeline_stream(p);
				/* the exec reports the failure */
				if (redis_pipeline_stream_failed(p))
					break;
			}
		}
	}
	if (nrows > 0)
		redis_pipeline_exec(p);
	written = collect_fill_replies(p, &b, enc->nkeys, repush);
	redis_pipeline_free(p);
	return written;
}

/*
 * Push the rows of one SPI result (column 1: the row) fenced with version,
 * taken before the table's writers were waited for and the rows read (the
 * settled way, rs_fill_next_batch).  Returns the keys pushed.
 */
static int64
settle_rows(SyncConfig *enc, TupleDesc reldesc, SPITupleTable *tt, uint64 nrows,
			const char *version)
{
	RedisPipeline *p = redis_pipeline_create();
	FillBatch	b;
	FenceOp    *ops = palloc(sizeof(FenceOp) * Max(nrows, 1));
	bool		stream = !redis_cluster_mode();

	/* read once, as fill_rows() does */
	uint64		chunk = Max(rs_chunk_size, 1);

	init_fill_batch(&b, nrows);
	for (uint64 s = 0; s < nrows;)
	{
		uint64		e = Min(nrows, s + chunk);

		encode_fill_rows(&b, enc, reldesc, tt, s, e);
		for (uint64 i = s; i < e; i++)
		{
			ops[i].key = b.keys[i];
			ops[i].version = version;
			ops[i].ttl_ms = enc->ttl_ms;
			ops[i].img = &b.imgs[i];
		}
		rs_fence_append(p, ops + s, e - s, NULL, NULL, NIL);
		s = e;
		if (s < nrows && stream)
		{
			(void) redis_pipeline_stream(p);
			/* the exec reports the failure */
			if (redis_pipeline_stream_failed(p))
				break;
		}
	}
	if (nrows > 0)
	{
		redis_pipeline_exec(p);
		for (int i = 0; i < redis_pipeline_length(p); i++)
			redis_check_reply(p, i, "a cache warm");
		rs_fence_check_applied(p, enc->relid, true, false);
	}
	redis_pipeline_free(p);
	return (int64) nrows;
}

void
rs_fill_cursor_init(FillCursor *fc, Oid relid, SyncConfig *cfg, List *last)
{
	fc->relid = relid;
	fc->enc = rs_cache_config(cfg);
	fc->qrel = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
										  get_rel_name(relid));
	fc->kl = rs_warm_key_list(cfg);
	fc->last = last;
	fc->rows = 0;
	fc->written = 0;
	fc->settle = false;
	fc->settled = 0;
}

/*
 * Whether the table and each of its partitions are logged: a writer of a
 * logged table writes WAL for its rows, so a version it takes is newer than
 * one taken before it began; an unlogged table's writer can take the same
 * (helper-114), which the fence applies either way.
 */
static bool
all_logged(Oid relid)
{
	ListCell   *lc;

	foreach(lc, find_all_inheritors(relid, NoLock, NULL))
	{
		if (get_rel_persistence(lfirst_oid(lc)) != RELPERSISTENCE_PERMANENT)
			return false;
	}
	return true;
}

/*
 * Whether a batch the cursor would settle is settled now, with *version
 * (RS_VERSION_LEN + 1 bytes) taken: the read after it takes a snapshot
 * newer than the version, and no transaction writing the table was in
 * progress when it was taken (one that takes its lock later pushes a newer
 * version).  While one is, the batch is filled instead, which waits for it
 * only if it meets a key half there: a batch never waits longer than a fill
 * would (the worker gives up after a while, and a long transaction writing
 * another part of the table would hold every settled batch).  The look-ups
 * are allocated in cxt, the batch's.
 */
static bool
batch_settles(Oid relid, MemoryContext cxt, char *version)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	bool		settles;

	rs_version_now(version);
	settles = all_logged(relid) && !rs_table_has_writers(relid);
	MemoryContextSwitchTo(old);
	return settles;
}

/*
 * Fill the next batch of up to batch_size rows, in key order, without row
 * locks; keys found half there are settled (rs_push_named).  Returns the rows read
 * (fewer than batch_size: the table is done).  fc->last is allocated in the
 * caller's memory context.
 *
 * Once a batch found most of its keys half there (the tombstones a TRUNCATE
 * or unsync(purge) left, say), the next batches are pushed settled at once
 * (fc->settle) while no transaction is writing the table: the version
 * first, then the batch read with a new snapshot and pushed fenced with
 * that version, as rs_push_named() settles keys (see the file header).
 * That skips the fill script, which would find the keys half there again,
 * and the second read of their rows.  Not under REPEATABLE READ, whose
 * snapshot cannot be renewed, nor for an unlogged table (all_logged).
 * After SETTLED_RUN settled batches one is filled again, which decides for
 * the next ones: where the tombstones end, the fill leaves the keys cached
 * alone (a settled batch would write them again, and a TTL table's keys
 * would live longer).
 */
#define SETTLED_RUN 7

int64
rs_fill_next_batch(FillCursor *fc, Relation rel, int batch_size)
{
	MemoryContext outer = CurrentMemoryContext;
	MemoryContext batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "redis_sync fill batch",
													ALLOCSET_DEFAULT_SIZES);
	SyncConfig *cfg = fc->enc;
	StringInfoData sql;
	Oid		   *types = palloc(sizeof(Oid) * cfg->nkeys);
	Datum	   *values = palloc(sizeof(Datum) * cfg->nkeys);
	List	   *repush = NIL;
	List	   *newlast = NIL;
	uint64		nrows;
	int64		written;
	char	   *alias;
	int			nest;
	bool		settle = fc->settle && fc->settled < SETTLED_RUN && !IsolationUsesXactSnapshot();
	char		version[RS_VERSION_LEN + 1];

	/*
	 * key values are canonical text: read and cast them under the same
	 * settings
	 */
	nest = rs_canonical_gucs_push();
	initStringInfo(&sql);

	/*
	 * an alias no column can shadow ("SELECT t FROM tbl t" would read a
	 * column t)
	 */
	alias = rs_row_alias(fc->relid);
	appendStringInfo(&sql, "SELECT %s, %s FROM %s %s", alias, fc->kl, fc->qrel, alias);
	if (fc->last != NIL)
	{
		ListCell   *lc;

		appendStringInfo(&sql, " WHERE (%s) > (", fc->kl);
		foreach(lc, fc->last)
		{
			int			i = foreach_current_index(lc);

			appendStringInfo(&sql, "%s$%d::pg_catalog.text::%s", i ? ", " : "", i + 1,
							 format_type_be_qualified(cfg->keys[i].typid));
			types[i] = TEXTOID;
			values[i] = CStringGetTextDatum(lfirst(lc));
		}
		appendStringInfoChar(&sql, ')');
	}
	appendStringInfo(&sql, " ORDER BY %s LIMIT %d", fc->kl, batch_size);

	if (settle)
		settle = batch_settles(fc->relid, batch_cxt, version);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	if (SPI_execute_with_args(sql.data, fc->last ? cfg->nkeys : 0, types, values, NULL,
							  false, 0) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read table \"%s\"", RelationGetRelationName(rel));
	nrows = SPI_processed;
	{
		MemoryContext spi = MemoryContextSwitchTo(batch_cxt);

		if (settle)
			written = settle_rows(cfg, RelationGetDescr(rel), SPI_tuptable, nrows, version);
		else
			written = fill_rows(cfg, RelationGetDescr(rel), SPI_tuptable, nrows, &repush);
		MemoryContextSwitchTo(outer);
		if (nrows > 0)
		{
			HeapTuple	last = SPI_tuptable->vals[nrows - 1];

			for (int i = 0; i < cfg->nkeys; i++)
				newlast = lappend(newlast, SPI_getvalue(last, SPI_tuptable->tupdesc, i + 2));
		}
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();

	/* filled: most keys half there, the next batches go settled */
	if (settle)
		fc->settled++;
	else
	{
		fc->settle = (uint64) list_length(repush) * 2 > nrows;
		fc->settled = 0;
	}
	/* outside the SPI connection: rs_push_named() opens its own */
	if (repush != NIL)
	{
		MemoryContextSwitchTo(batch_cxt);
		written += rs_push_named(fc->relid, repush, batch_size, false);
		MemoryContextSwitchTo(outer);
	}
	MemoryContextDelete(batch_cxt);
	rs_canonical_gucs_pop(nest);
	if (nrows > 0)
		fc->last = newlast;
	fc->rows += nrows;
	fc->written += written;
	return (int64) nrows;
}

static SyncConfig *
warmable_config(Oid relid)
{
	SyncConfig *cfg = rs_config_get(relid);

	if (!cfg->synced || cfg->policy != RS_POLICY_WRITE_THROUGH)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not synced write-through", get_rel_name(relid))));
	return cfg;
}

/*
 * fill every row of the table; returns rows read, *written keys written.
 * Reading and encoding the rows runs the table's code (casts to json of its
 * types, policies): as the owner, restricted, whoever called warm() (a
 * superuser may warm any table).
 */
int64
rs_fill_table(Oid relid, int batch_size, int64 *written)
{
	SyncConfig *cfg = warmable_config(relid);
	Relation	rel = relation_open(relid, AccessShareLock);
	FillCursor	fc;
	RsAsOwner	ao;

	rs_fill_cursor_init(&fc, relid, cfg, NIL);
	rs_as_owner_enter(&ao, rs_rel_owner(relid));
	PG_TRY();
	{
		for (;;)
		{
			int64		n = rs_fill_next_batch(&fc, rel, batch_size);

			rs_stats_add(relid, RS_C_WARMED, n);
			CHECK_FOR_INTERRUPTS();
			if (n < batch_size)
				break;
		}
	}
	PG_FINALLY();
	{
		rs_as_owner_leave(&ao);
	}
	PG_END_TRY();
	relation_close(rel, AccessShareLock);
	*written = fc.written;
	return fc.rows;
}
