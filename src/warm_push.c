/*-------------------------------------------------------------------------
 *
 * warm_push.c
 *		Pushing the current state of named rows: resync, repair of keys
 *		pushed by transactions that did not commit (in-flight markers),
 *		get()'s populate, and settling the keys a fill found half there.
 *		(Filling without locks is warm.c's.)
 *
 * Pushing named rows (resync, repair, get()) overwrites, so it locks: rows
 * are read with SELECT ... FOR SHARE, which waits for any transaction still
 * writing them (one that already pushed at pre-commit but has not committed
 * yet) and keeps later writers out until we are done.  The version is taken
 * after the locks are held, so it is newer than every committed write of
 * those rows and older than every later one: the push can never overwrite a
 * newer value.  The locks are held only for one batch: each batch runs in a
 * subtransaction that is rolled back after the push, which releases its row
 * locks (nothing else was written in it).  A key whose row is missing
 * becomes a fenced delete.  A concurrent INSERT of that very key that has
 * pushed but not yet committed could be hidden by that delete for a moment;
 * the inserter's value is restored by the next change or warm of the key
 * (documented limitation of repairs).
 *
 * Settling (rs_push_named, locked = false) takes the version first, waits
 * for the table's writers (wait_for_writers) and reads with a new snapshot
 * without row locks; see warm.c's header for why that is safe.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/xact.h"
#include "catalog/pg_inherits.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "as_owner.h"
#include "change.h"
#include "fence.h"
#include "shmem.h"
#include "warm.h"
#include "xact_step.h"

/* the worker waits at most this long for transactions writing a table (see wait_for_writers) */
#define WARM_WRITERS_WAIT_MS 2000

/*
 * What a key Redis refuses to write (rs_fence_check_applied) makes of a
 * push: nothing (get()'s populate: a miss), an ERROR (resync(), marker
 * repairs), an ERROR when refused for memory and otherwise a WARNING (the
 * worker's refresh after a Redis restart, fills settling keys).
 */
typedef enum PushCheck
{
	PUSH_UNCHECKED,
	PUSH_CHECKED,
	PUSH_CHECK_OOM
} PushCheck;

typedef struct KeySeen
{
	char	   *key;			/* hash key: must be first */
} KeySeen;

/*
 * The rows of one batch of push_named(): the Redis keys asked for, each
 * with its key values (canonical text), and the fenced pushes made of them.
 */
typedef struct NamedBatch
{
	SyncConfig *cfg;			/* the cache's configuration (encoding) */
	Relation	rel;
	List	   *keys;			/* Redis keys asked for */
	List	   *vals;			/* per key: List of key value strings */
	FenceOp    *ops;			/* pushes and deletes */
	int			nops;
	int			maxops;
	struct HTAB *seen;			/* keys of the rows read (KeySeen) */
} NamedBatch;

/* the queries of push_named(): the same rows, read three ways */
typedef struct NamedQueries
{
	const char *plain;			/* no row locks */
	const char *locked;			/* FOR SHARE */
	const char *skip_locked;	/* FOR SHARE SKIP LOCKED */
	int			nkeys;
	Oid		   *types;
} NamedQueries;

/*
 * Run one of the queries for the keys whose values are vals (one text
 * array per key column); SPI is connected.
 */
static void
read_named(const NamedQueries *q, Relation rel, const char *sql, List *vals)
{
	Datum	   *values = palloc(sizeof(Datum) * q->nkeys);
	int			nb = list_length(vals);

	for (int i = 0; i < q->nkeys; i++)
	{
		Datum	   *elems = palloc(sizeof(Datum) * nb);
		ListCell   *lc;
		int			j = 0;

		foreach(lc, vals)
			elems[j++] = CStringGetTextDatum(list_nth((List *) lfirst(lc), i));
		values[i] = PointerGetDatum(construct_array(elems, nb, TEXTOID, -1, false, TYPALIGN_INT));
	}
	if (SPI_execute_with_args(sql, q->nkeys, q->types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read table \"%s\"", RelationGetRelationName(rel));
}

/*
 * The Redis key of row i of an SPI result (column 1: the row), and (img not
 * NULL) its encoded value.
 */
static char *
row_key(NamedBatch *b, SPITupleTable *tt, uint64 i, RowImage *img)
{
	HeapTupleData tup;
	char	   *key;

	rs_row_from_composite(tt->vals[i], tt->tupdesc, b->cfg->relid, &tup);
	key = rs_encode_key(b->cfg, RelationGetDescr(b->rel), &tup, NULL);
	if (img)
		rs_encode_row(b->cfg, RelationGetDescr(b->rel), &tup, img);
	return key;
}

/* Add the rows of an SPI result to the batch's pushes */
static void
add_rows(NamedBatch *b, SPITupleTable *tt, uint64 nrows)
{
	for (uint64 i = 0; i < nrows; i++)
	{
		RowImage   *img = palloc(sizeof(RowImage));
		FenceOp    *op;

		Assert(b->nops < b->maxops);
		op = &b->ops[b->nops++];

		op->key = row_key(b, tt, i, img);
		op->img = img;
		op->ttl_ms = b->cfg->ttl_ms;
		(void) hash_search(b->seen, &op->key, HASH_ENTER, NULL);
	}
}

/* Add a fenced delete of key to the batch */
static void
add_delete(NamedBatch *b, char *key)
{
	RowImage   *del = palloc0(sizeof(RowImage));
	FenceOp    *op;

	Assert(b->nops < b->maxops);
	op = &b->ops[b->nops++];
	del->op = RS_OP_DELETE;
	op->key = key;
	op->img = del;
	op->ttl_ms = 0;
}

/*
 * A key Redis refused to write for lack of memory keeps what Redis had: an
 * older snapshot's row after a restart (the worker's refresh), a value
 * resync() found different, a rolled-back transaction's (a marker repair).
 * Its row is deleted from it instead (rs_image_drop_row: the table's
 * fields of a hash, the application's own fields stay), fenced with the
 * push's version: a miss, never an older value.  A delete's first write
 * needs no memory, and each call of them starts with one that needs none
 * (rs_fence_append_restore), so Redis at its maxmemory runs them.  Only a
 * key of the table's type is touched (a key the application wrote with
 * another type is refused for good otherwise, and stays); a hash that
 * holds the table's write-behind fields too stays as it is, as publish.c's
 * drop_refused_keys leaves it (those fields are Redis's newer data, for the
 * drain).  The push still fails: the caller tries again once Redis has
 * memory.  Best effort: returns whether they were all deleted.
 */
static bool
drop_refused_for_memory(NamedBatch *b, RedisPipeline *p)
{
	int		   *pos;
	int			n;
	const char *type = b->cfg->format == RS_FORMAT_JSON ? "string" : "hash";
	FenceOp    *dels;
	RowImage   *del;
	RedisPipeline *q;
	RedisFailure f;
	int			ndel = 0;
	int			nnone = 0;
	bool		ok;

	if (b->cfg->wb_shared)
		return false;
	n = rs_fence_refused_for_memory(p, rs_chunk_size, b->nops, &pos);
	if (n == 0)
		return false;

	/* their types: a key of another type is not the table's to delete */
	q = redis_pipeline_create();
	for (int i = 0; i < n; i++)
	{
		const char *argv[2] = {"TYPE", b->ops[pos[i]].key};

		redis_pipeline_append(q, 2, argv, NULL);
	}
	if (!redis_pipeline_try_exec(q, &f))
		return false;
	dels = palloc(sizeof(FenceOp) * n);
	del = palloc(sizeof(RowImage));
	rs_image_drop_row(b->cfg, del);
	for (int i = 0; i < n; i++)
	{
		RedisValue *t = redis_pipeline_reply(q, i);

		if (t->type != RV_ERROR && t->str != NULL && strcmp(t->str, "none") == 0)
			nnone++;			/* a miss already: nothing to delete */
		if (t->type == RV_ERROR || t->str == NULL || strcmp(t->str, type) != 0)
			continue;
		dels[ndel].key = b->ops[pos[i]].key;
		dels[ndel].version = b->ops[pos[i]].version;
		dels[ndel].ttl_ms = 0;
		dels[ndel].img = del;
		ndel++;
	}
	redis_pipeline_free(q);
	if (ndel == 0)
		return nnone == n;
	q = redis_pipeline_create();
	for (int s = 0; s < ndel; s += rs_chunk_size)
		rs_fence_append_restore(q, dels + s, Min(rs_chunk_size, ndel - s));
	ok = redis_pipeline_try_exec(q, &f) && rs_fence_replies_ok(q, &f);
	redis_pipeline_free(q);
	return ok && ndel + nnone == n;
}

/*
 * Push the batch's rows and deletes, all with one version: the given one,
 * or (NULL) the WAL position now, after the rows were read (and locked).
 * check: what a key Redis refused (out of memory, say) makes of the push
 * (PushCheck).
 */
static int64
push_ops(NamedBatch *b, const char *given_version, PushCheck check)
{
	RedisPipeline *p;
	char		version[RS_VERSION_LEN + 1];

	if (b->nops == 0)
		return 0;
	if (given_version)
		strlcpy(version, given_version, sizeof(version));
	else
		rs_version_now(version);	/* after FOR SHARE: see file header */
	for (int i = 0; i < b->nops; i++)
		b->ops[i].version = version;
	p = redis_pipeline_create();
	for (int s = 0; s < b->nops; s += rs_chunk_size)
		rs_fence_append(p, b->ops + s, Min(rs_chunk_size, b->nops - s), NULL, NULL, NIL);
	redis_pipeline_exec(p);
	for (int i = 0; i < redis_pipeline_length(p); i++)
		redis_check_reply(p, i, "a cache warm");
	if (check != PUSH_UNCHECKED)
		rs_fence_check_applied(p, b->cfg->relid, check == PUSH_CHECK_OOM,
							   drop_refused_for_memory(b, p));
	redis_pipeline_free(p);
	return b->nops;
}

/*
 * Read the batch's rows and push them; a key asked for whose row is missing
 * becomes a fenced delete.
 *
 * how: the query to read with.  With skip_locked, a row another transaction
 * is writing (or has locked FOR UPDATE) is not read, and this batch holds
 * its other rows' locks only while they are pushed, never while it waits:
 * a FOR SHARE of the whole batch took the rows' locks in the order of its
 * plan, one by one, waiting for each, so a transaction that wrote one row
 * of the batch and then another, in the other order, waited for us while we
 * waited for it, and PostgreSQL cancelled one of the two (a deadlock, found
 * by a chaos run of resync() beside UPDATEs of 5,000 rows).  With skip_locked
 * or locked, the keys not read are read again without locks, with a newer
 * snapshot: those whose rows exist are returned in *contended (the caller
 * pushes them one at a time, waiting for their writers, holding no other
 * lock: push_contended), the others are deletes.  That also finds a row its
 * writer deleted and inserted again while a FOR SHARE waited for it: the
 * wait's statement, whose snapshot predates the insert, found no row, and
 * its key was deleted (a miss until the row's next change).  With plain
 * (the settled way), the keys not read are deletes.
 *
 * Runs in a subtransaction that is always rolled back: that releases the
 * FOR SHARE row locks of the batch.
 */
static int64
batch_in_subxact(NamedBatch *b, const NamedQueries *q, const char *how,
				 const char *version, PushCheck check, List **contended)
{
	MemoryContext outer = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	int64		pushed = 0;

	b->ops = NULL;
	b->nops = 0;
	b->seen = rs_string_hash_create("redis_sync pushed keys", list_length(b->keys), sizeof(KeySeen));
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(outer);
	PG_TRY();
	{
		List	   *left_keys = NIL;
		List	   *left_vals = NIL;
		ListCell   *kc;
		ListCell   *vc;
		MemoryContext spi;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "redis_sync: SPI_connect failed");
		read_named(q, b->rel, how, b->vals);
		spi = MemoryContextSwitchTo(outer);

		/*
		 * Every row read, and a delete for every key asked for: a row's key
		 * can differ from the one asked for that found it (numeric 1.00 and
		 * 1.0 are equal, their keys are not), and then both are pushed
		 */
		b->maxops = SPI_processed + list_length(b->keys);
		b->ops = palloc(sizeof(FenceOp) * b->maxops);
		add_rows(b, SPI_tuptable, SPI_processed);
		forboth(kc, b->keys, vc, b->vals)
		{
			char	   *k = lfirst(kc);

			if (hash_search(b->seen, &k, HASH_FIND, NULL) == NULL)
			{
				left_keys = lappend(left_keys, k);
				left_vals = lappend(left_vals, lfirst(vc));
			}
		}
		if (left_keys != NIL && how != q->plain)
		{
			struct HTAB *exists;

			/*
			 * Skipped (locked), missing, or (FOR SHARE) deleted and inserted
			 * again by the transaction we waited for, whose new row the
			 * read's snapshot, older than its commit, did not show: which
			 * rows exist now?
			 */
			MemoryContextSwitchTo(spi);
			read_named(q, b->rel, q->plain, left_vals);
			MemoryContextSwitchTo(outer);
			exists = rs_string_hash_create("redis_sync contended keys", SPI_processed + 1, sizeof(KeySeen));
			for (uint64 i = 0; i < SPI_processed; i++)
			{
				char	   *k = row_key(b, SPI_tuptable, i, NULL);

				(void) hash_search(exists, &k, HASH_ENTER, NULL);
			}
			forboth(kc, left_keys, vc, left_vals)
			{
				char	   *k = lfirst(kc);

				if (hash_search(exists, &k, HASH_FIND, NULL) != NULL)
					*contended = lappend(*contended, list_make2(k, lfirst(vc)));
				else
					add_delete(b, k);
			}
			hash_destroy(exists);
		}
		else
		{
			foreach(kc, left_keys)
				add_delete(b, lfirst(kc));
		}
		pushed = push_ops(b, version, check);
		MemoryContextSwitchTo(spi);
		SPI_finish();
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
	hash_destroy(b->seen);
	b->seen = NULL;
	return pushed;
}

/* the times a key whose row exists may be read FOR SHARE without finding it */
#define PUSH_NAMED_TRIES 3

/*
 * Push the rows of the keys a locked batch did not read although they exist
 * (a List of (key, List of key values)): wait for the first one's writer,
 * alone (holding no other row lock), then read the others again with SKIP
 * LOCKED, which pushes those whose writers have ended meanwhile; and so on.
 * A key waited for that is still not read although its row exists (deleted
 * and inserted again, each time) is tried PUSH_NAMED_TRIES times, then left
 * to the writers that keep changing it: each of them pushes its row when it
 * commits, with a newer version than any read here.
 */
static int64
push_contended(NamedBatch *b, const NamedQueries *q, List *contended, PushCheck check)
{
	int64		total = 0;
	int			tries = 0;		/* of the first key */

	while (contended != NIL)
	{
		List	   *first = linitial(contended);
		List	   *rest = list_delete_first(contended);
		List	   *again = NIL;
		ListCell   *lc;

		b->keys = list_make1(linitial(first));
		b->vals = list_make1(lsecond(first));
		total += batch_in_subxact(b, q, q->locked, NULL, check, &again);
		contended = NIL;
		if (rest != NIL)
		{
			b->keys = NIL;
			b->vals = NIL;
			foreach(lc, rest)
			{
				b->keys = lappend(b->keys, linitial((List *) lfirst(lc)));
				b->vals = lappend(b->vals, lsecond((List *) lfirst(lc)));
			}
			total += batch_in_subxact(b, q, q->skip_locked, NULL, check, &contended);
		}
		if (again != NIL && ++tries < PUSH_NAMED_TRIES)
			contended = lcons(linitial(again), contended);
		else
		{
			if (again != NIL)
				elog(DEBUG1, "redis_sync: key \"%s\" left to its writers", (char *) linitial(first));
			tries = 0;
		}
	}
	return total;
}

/* the transactions holding a write lock on the table or one of its partitions */
static List *
table_writers(Oid relid)
{
	List	   *vxids = NIL;
	ListCell   *lc;

	foreach(lc, find_all_inheritors(relid, NoLock, NULL))
	{
		LOCKTAG		tag;
		VirtualTransactionId *conflicts;

		SET_LOCKTAG_RELATION(tag, MyDatabaseId, lfirst_oid(lc));
		conflicts = GetLockConflicts(&tag, ShareLock, NULL);
		for (; VirtualTransactionIdIsValid(*conflicts); conflicts++)
		{
			VirtualTransactionId *v = palloc(sizeof(VirtualTransactionId));

			*v = *conflicts;
			vxids = lappend(vxids, v);
		}
	}
	return vxids;
}

bool
rs_table_has_writers(Oid relid)
{
	return table_writers(relid) != NIL;
}

/*
 * Wait until every transaction holding a write lock on the table or one of
 * its partitions when we started has ended.  A session waits as long as it
 * takes (cancellable); the worker, which also delivers the outbox, waits at
 * most WARM_WRITERS_WAIT_MS and then fails the batch, which is retried with
 * backoff (redis_sync.warming shows why).
 */
static void
wait_for_writers(Oid relid)
{
	List	   *vxids = table_writers(relid);
	ListCell   *lc;
	TimestampTz deadline;

	if (vxids == NIL)
		return;
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), WARM_WRITERS_WAIT_MS);
	foreach(lc, vxids)
	{
		VirtualTransactionId *v = lfirst(lc);

		if (!IsBackgroundWorker)
		{
			(void) VirtualXactLock(*v, true);
			continue;
		}
		while (!VirtualXactLock(*v, false))
		{
			if (GetCurrentTimestamp() >= deadline)
			{
				SetLatch(MyLatch);	/* a commit's wake-up may have been
									 * consumed */
				ereport(ERROR,
						(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
						 errmsg("transactions writing table \"%s\" are still open", get_rel_name(relid)),
						 errdetail("Keys found with a version but no value, or a value but no version, are filled once the transactions writing the table when the batch began have ended; the batch is retried.")));
			}
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	if (IsBackgroundWorker)
		SetLatch(MyLatch);		/* a commit's wake-up may have been consumed */
}

/*
 * Push the rows named by keys: a List of (redis key, List of key-value
 * strings) pairs.  A missing row becomes a fenced delete.
 *
 * locked: each batch is read FOR SHARE and pushed with the version taken
 * after the locks (see the file header).  A batch of more than one key
 * skips the rows it would wait for and pushes them one at a time afterwards
 * (see batch_in_subxact): it never waits while it holds row locks.
 *
 * Otherwise ("settled", for keys a fill found half there): take the version
 * V first, then wait until every transaction that holds a write lock on the
 * table (or a partition) has ended, then read the rows with a new snapshot,
 * without row locks, and push them with V.  A write that pushed a version
 * not newer than V was in progress when V was taken (it pushes at
 * pre-commit, holding its lock), so it has ended and the snapshot shows its
 * outcome; a write that pushes later carries a newer version and wins.  No
 * row is locked and nothing is written to the table.  It needs a snapshot
 * newer than the wait, so a transaction-snapshot isolation level (REPEATABLE
 * READ, SERIALIZABLE) uses the locked way instead.
 */
static int64
push_named(Oid relid, List *keys, int batch_size, bool locked, PushCheck check)
{
	SyncConfig *cfg = rs_config_get(relid);
	NamedQueries q;
	NamedBatch	b;
	char	   *kl;
	const char *qrel;
	StringInfoData sql;
	int64		total = 0;
	ListCell   *lc;
	char	   *alias;
	int			nest;
	char		version[RS_VERSION_LEN + 1];
	MemoryContext batch_cxt;
	MemoryContext outer;

	if (!cfg->synced || (cfg->policy != RS_POLICY_WRITE_THROUGH && cfg->policy != RS_POLICY_INVALIDATE))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not synced write-through", get_rel_name(relid))));
	memset(&b, 0, sizeof(b));
	b.cfg = rs_cache_config(cfg);
	b.rel = relation_open(relid, AccessShareLock);
	/* key values are canonical text: cast them back under the same settings */
	nest = rs_canonical_gucs_push();
	kl = rs_warm_key_list(cfg);
	alias = rs_row_alias(relid);
	qrel = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(b.rel)),
									  RelationGetRelationName(b.rel));
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s, %s FROM %s %s WHERE (%s) IN (SELECT * FROM unnest(",
					 alias, kl, qrel, alias, kl);
	q.nkeys = cfg->nkeys;
	q.types = palloc(sizeof(Oid) * cfg->nkeys);
	for (int i = 0; i < cfg->nkeys; i++)
	{
		appendStringInfo(&sql, "%s$%d::pg_catalog.text[]::%s[]", i ? ", " : "", i + 1,
						 format_type_be_qualified(cfg->keys[i].typid));
		q.types[i] = TEXTARRAYOID;
	}
	appendStringInfoString(&sql, "))");
	q.plain = sql.data;
	q.locked = psprintf("%s FOR SHARE", sql.data);
	q.skip_locked = psprintf("%s FOR SHARE SKIP LOCKED", sql.data);
	if (!locked && IsolationUsesXactSnapshot())
		locked = true;
	if (!locked)
	{
		rs_version_now(version);
		wait_for_writers(relid);
	}

	/*
	 * Each batch's lists and encoded rows in a context of its own, reset
	 * after the batch: the worker's refresh after a Redis restart pushes
	 * every key of a table, and kept them all until its transaction ended
	 * (memory in proportion to the table's cached data).
	 */
	batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "redis_sync push batch",
									  ALLOCSET_DEFAULT_SIZES);
	outer = MemoryContextSwitchTo(batch_cxt);
	foreach(lc, keys)
	{
		List	   *pair = lfirst(lc);

		b.keys = lappend(b.keys, linitial(pair));
		b.vals = lappend(b.vals, lsecond(pair));
		if (list_length(b.keys) >= batch_size || lnext(keys, lc) == NULL)
		{
			List	   *contended = NIL;

			if (!locked)
				total += batch_in_subxact(&b, &q, q.plain, version, check, NULL);
			else
				total += batch_in_subxact(&b, &q, list_length(b.keys) == 1 ? q.locked : q.skip_locked,
										  NULL, check, &contended);
			if (contended != NIL)
				total += push_contended(&b, &q, contended, check);
			b.keys = NIL;
			b.vals = NIL;
			MemoryContextReset(batch_cxt);
		}
	}
	MemoryContextSwitchTo(outer);
	MemoryContextDelete(batch_cxt);
	rs_canonical_gucs_pop(nest);
	relation_close(b.rel, AccessShareLock);
	return total;
}

int64
rs_push_named(Oid relid, List *keys, int batch_size, bool locked)
{
	return push_named(relid, keys, batch_size, locked, PUSH_CHECK_OOM);
}

static int64
push_current(Oid relid, List *keys, int batch_size, bool locked, PushCheck check)
{
	int64		n;

	if (keys == NIL)
	{
		int64		written;

		return rs_fill_table(relid, batch_size, &written);
	}
	n = push_named(relid, keys, batch_size, locked, check);
	rs_stats_add(relid, RS_C_WARMED, n);
	return n;
}

/*
 * Reading the table runs its code (casts, output functions, policies): do it
 * as the table owner, restricted, with a fixed search_path (as_owner.c),
 * whoever asked (get(), warm(), resync(), the worker's repairs).
 */
static int64
push_current_as_owner(Oid relid, List *keys, int batch_size, bool locked, PushCheck check)
{
	RsAsOwner	ao;
	volatile int64 n = 0;

	rs_as_owner_enter(&ao, rs_rel_owner(relid));
	PG_TRY();
	{
		n = push_current(relid, keys, batch_size, locked, check);
	}
	PG_FINALLY();
	{
		rs_as_owner_leave(&ao);
	}
	PG_END_TRY();
	return n;
}

int64
rs_push_current(Oid relid, List *keys, int batch_size)
{
	return push_current_as_owner(relid, keys, batch_size, true, PUSH_CHECKED);
}

/*
 * get()'s populate: the same, but a key Redis refuses (out of memory) is
 * left as it was, a miss, and get() returns the row all the same.
 */
int64
rs_push_current_populate(Oid relid, List *keys)
{
	return push_current_as_owner(relid, keys, 1, true, PUSH_UNCHECKED);
}

/*
 * The same for keys whose rows are pushed the "settled" way (rs_push_named
 * with locked = false): no row locks; the worker's refresh of the keys a
 * restarted Redis brought back (rs_refresh_cached_keys).
 */
int64
rs_push_current_settled(Oid relid, List *keys, int batch_size)
{
	return push_current_as_owner(relid, keys, batch_size, false, PUSH_CHECK_OOM);
}

/*
 * Whether the current transaction has written relid or one of its
 * partitions: the statistics kept for the open transaction (and its open
 * subtransactions) count every INSERT, UPDATE, DELETE and TRUNCATE of a
 * relation; writes rolled back to a savepoint are no longer counted there.
 * Without track_counts there are no such counts: then any write of the
 * transaction (an XID) counts.
 */
bool
rs_xact_wrote_table(Oid relid)
{
	List	   *rels;
	ListCell   *lc;

	if (!TransactionIdIsValid(GetTopTransactionIdIfAny()))
		return false;
	if (!pgstat_track_counts)
		return true;
	rels = find_all_inheritors(relid, AccessShareLock, NULL);
	foreach(lc, rels)
	{
		PgStat_TableStatus *ts = find_tabstat_entry(lfirst_oid(lc));

		for (PgStat_TableXactStatus *x = ts ? ts->trans : NULL; x != NULL; x = x->upper)
			if (x->tuples_inserted > 0 || x->tuples_updated > 0 ||
				x->tuples_deleted > 0 || x->truncdropped)
				return true;
	}
	return false;
}

/*
 * warm() and resync() read the table in the caller's transaction and push
 * what they read at once: rows the transaction itself wrote, not committed
 * yet, reached Redis and stayed there after a ROLLBACK (found by an
 * adversarial review, tests/t/336).  Refuse them in a transaction that has
 * written the table; rows written only to other tables do not matter.
 */
void
rs_check_no_own_writes(Oid relid, const char *what)
{
	if (rs_xact_wrote_table(relid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("cannot %s table \"%s\" in a transaction that has written it", what,
						get_rel_name(relid)),
				 errdetail("%s() pushes the rows it reads to Redis at once: rows this transaction wrote could still be rolled back, and would stay in Redis.", what),
				 errhint("Commit first (the commit pushes the transaction's own changes), then call %s().", what)));
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
	if (SPI_execute_with_args("SELECT (e.e OPERATOR(pg_catalog.->>) 0)::pg_catalog.oid, "
							  "       ARRAY(SELECT a.v FROM pg_catalog.jsonb_array_elements_text(e.e) WITH ORDINALITY a(v, o) "
							  "              WHERE a.o OPERATOR(pg_catalog.>) 1 ORDER BY a.o) "
							  "  FROM pg_catalog.jsonb_array_elements($1::pg_catalog.jsonb) e(e)",
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

		/*
		 * Past the step's limit (the worker's repair, marker_sweep.c): stop
		 * before the next table.  Code of the table before that caught the
		 * cancel would otherwise leave the next table's owner running at the
		 * second stage, and held for it.
		 */
		rs_step_timeout_check();
		if (get_rel_name(relid) == NULL)
			continue;			/* table dropped since */
		cfg = rs_config_get(relid);
		if (!cfg->synced || cfg->policy != RS_POLICY_WRITE_THROUGH)
			continue;
		foreach(lc, (List *) list_nth(perrel, r))
		{
			List	   *vals = lfirst(lc);
			ListCell   *vc;
			char	  **kv = palloc(sizeof(char *) * Max(list_length(vals), 1));

			foreach(vc, vals)
				kv[foreach_current_index(vc)] = lfirst(vc);
			pairs = lappend(pairs, list_make2(rs_key_build(cfg->prefix, kv, list_length(vals)), vals));
		}
		total += rs_push_current(relid, pairs, 1000);
		rs_stats_add(relid, RS_C_REPAIRED, list_length(pairs));
	}
	return total;
}
