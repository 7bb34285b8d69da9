/*-------------------------------------------------------------------------
 *
 * outbox.c
 *		Delivering redis_sync.outbox: changes committed but not yet
 *		confirmed by Redis; deliver_outbox() and flush().
 *
 * Entries are written by outbox_write.c in the transaction whose changes
 * they carry, with the version stamped at the writer's pre-commit, so a
 * delivery is the same fenced write the transaction would have made and can
 * be repeated any number of times.
 *
 * Delivery takes committed entries in id order (FOR UPDATE SKIP LOCKED, so
 * concurrent deliverers do not collide), keeps the newest (version, seq)
 * entry per key, sends them through the apply script in one pipeline, and
 * deletes every entry it read only after Redis confirmed the writes.  Older
 * entries of a key are dropped: the newer one, fenced, supersedes them.
 *
 * Delivery is four steps: read_entries (lock a batch), coalesce (newest
 * entry per key), push (one pipeline of fenced writes) and settle (delete
 * what Redis confirmed by its row, locked since the read; back off the
 * rest).  A delivery of 2,000 entries or more goes in four batches or
 * more whose pushes overlap: while Redis applies one, the next is read
 * and the one before settled (rs_outbox_deliver).
 *
 * The read and the delete go straight to the table (read_direct: a scan of
 * the primary key locking each row as FOR UPDATE SKIP LOCKED would;
 * delete_direct: by the locked row), without the executor, whose start-up
 * was most of a small delivery's cost; they run no user code.  An outbox
 * not of the extension's shape (rules, inheritance children, another
 * primary key, ...) is read and deleted through SQL instead, as the
 * bootstrap superuser with a fixed search_path (as_owner.c), like the
 * bookkeeping of refused entries.
 *
 * flush() then pushes, without locking or settling, the entries another
 * deliverer holds (push_held), so that it returns with every change
 * committed before it in Redis.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_am_d.h"
#include "catalog/pg_index.h"
#include "catalog/pg_opfamily_d.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "fence.h"
#include "outbox.h"
#include "outbox_int.h"
#include "redis_sync.h"
#include "shmem.h"
#include "xact_step.h"

PG_FUNCTION_INFO_V1(redis_sync_deliver_outbox);
PG_FUNCTION_INFO_V1(redis_sync_flush);

static int	rs_outbox_batch = 10000;	/* redis_sync.outbox_batch */
static int	rs_flush_timeout_ms = 60000;	/* redis_sync.flush_timeout */
static bool rs_debug_outbox_read_sql = false;	/* redis_sync.debug_outbox_read_sql */

/* ----------------------------------------------------------------
 * Delivery
 * ---------------------------------------------------------------- */

typedef struct Entry
{
	int64		id;
	ItemPointerData tid;		/* the row, locked by this transaction */
	Oid			relid;
	char	   *key;
	char		op;
	char		version[RS_VERSION_LEN + 1];
	int64		seq;
	int64		ttl_ms;
	RowImage	img;
	const char *bad;			/* malformed: set aside with this error */
} Entry;

typedef struct KeySlot
{
	char	   *key;			/* hash key (pointer to string) */
	int			entry;			/* index of the newest entry */
} KeySlot;

/*
 * Decode a jsonb payload into a RowImage.  NULL when it is malformed (a
 * hand-edited or corrupted entry): the caller sets the entry aside with an
 * error instead of failing every delivery behind it.
 */
static const char *
payload_to_image(char op, Jsonb *jb, RowImage *img)
{
	memset(img, 0, sizeof(*img));
	img->op = op;
	if (op == RS_OP_STRING)
	{
		JsonbValue	v;

		if (jb == NULL || !JB_ROOT_IS_SCALAR(jb) ||
			!JsonbExtractScalar(&jb->root, &v) || v.type != jbvString)
			return "malformed outbox payload: a string value must be a JSON string";
		img->str = pnstrdup(v.val.string.val, v.val.string.len);
	}
	else if (op == RS_OP_HASH)
	{
		JsonbIterator *it;
		JsonbValue	v;
		JsonbIteratorToken tok;
		int			max = 16;

		if (jb == NULL || !JB_ROOT_IS_OBJECT(jb))
			return "malformed outbox payload: a hash must be a JSON object";
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
				if (v.type != jbvString && v.type != jbvNull)
					return "malformed outbox payload: hash values must be strings or null";
				img->values[img->nfields] = v.type == jbvString ?
					pnstrdup(v.val.string.val, v.val.string.len) : NULL;
				img->nfields++;
			}
		}
	}
	else if (op != RS_OP_DELETE)
		return "malformed outbox entry: unknown op";
	return NULL;
}

/*
 * A purge's payload into the image of what it makes of each key: NULL, a
 * delete; an object of fields, each null, the delete of those fields only
 * (RS_OP_FIELDS: the write-through fields of hashes that hold write-behind
 * fields too).  NULL, or the error of a malformed payload.
 */
static const char *
purge_payload_to_image(Jsonb *jb, RowImage *img)
{
	if (jb == NULL)
	{
		memset(img, 0, sizeof(*img));
		img->op = RS_OP_DELETE;
		return NULL;
	}
	if (payload_to_image(RS_OP_HASH, jb, img) != NULL)
		return "malformed outbox payload: a purge's fields must be a JSON object";
	for (int i = 0; i < img->nfields; i++)
		if (img->values[i] != NULL)
			return "malformed outbox payload: a purge's fields must be null";
	img->op = RS_OP_FIELDS;
	return NULL;
}

/*
 * One delivery batch, from reading the entries to settling them.  Entries,
 * the key table and the per-entry outcome live in the batch's memory
 * context, a child of the caller's deleted at the batch's end (SPI memory
 * ends with spi_end()); everything else in SPI memory.
 */
typedef struct Delivery
{
	MemoryContext caller;		/* the batch's context */
	Oid			outbox;			/* redis_sync.outbox, locked by the read */
	RsAsOwner  *ao;				/* as the bootstrap superuser, once SQL runs
								 * (shared by the batches of one call) */
	int			n;				/* entries read */
	Entry	   *entries;
	HTAB	   *byKey;			/* key -> newest entry (KeySlot) */
	bool	   *failed;			/* per entry: stays queued */
	char	  **errors;			/* per failed entry: why */
	bool		peek;			/* read without locking */
	int64		after;			/* read only entries with id > after */
} Delivery;

/*
 * Before a statement of the delivery: become the bootstrap superuser with a
 * fixed search_path (once per batch).  The direct read and delete run no
 * SQL and no user code, and check no privilege, so they need not.
 */
static void
sql_as_owner(Delivery *d)
{
	if (!d->ao->active)
		become_owner(d->ao);
}

/*
 * The statements of every delivery, planned once per process (the worker
 * runs them in every round: parsing and planning them each time cost more
 * than the rest of a small batch).  Generic plans: the parameters do not
 * change the best plan (the primary key in id order).
 */
static SPIPlanPtr read_plan = NULL;
static SPIPlanPtr peek_plan = NULL;
static SPIPlanPtr delete_plan = NULL;

static SPIPlanPtr
kept_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare_cursor(sql, nargs, types, CURSOR_OPT_GENERIC_PLAN);

		if (p == NULL)
			elog(ERROR, "redis_sync: could not prepare an outbox statement: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		*plan = p;
	}
	return *plan;
}

/* an entry's columns, in the order of the SQL read's target list */
typedef enum ReadCol
{
	RC_ID, RC_KEY, RC_OP, RC_PAYLOAD, RC_TTL, RC_VERSION, RC_SEQ, RC_RELID,
	RC_XID, RC_NEXT_ATTEMPT, RC_COUNT
} ReadCol;

static const struct
{
	const char *name;
	Oid			type;
	AttrNumber	attno;			/* in the table the extension creates */
}			read_cols[RC_COUNT] =

{
	{"id", INT8OID, 1}, {"redis_key", TEXTOID, 3}, {"op", CHAROID, 4}, {"payload", JSONBOID, 5},
	{"ttl_ms", INT8OID, 6}, {"version", TEXTOID, 7}, {"seq", INT8OID, 8}, {"relid", OIDOID, 2},
	{"xid", XID8OID, 9}, {"next_attempt_at", TIMESTAMPTZOID, 12}
};

/* fill e from the columns of its row (values[c], nulls[c] in ReadCol order) */
static void
fill_entry(Entry *e, const Datum *values, const bool *nulls, ItemPointer tid)
{
	e->id = DatumGetInt64(values[RC_ID]);
	e->key = TextDatumGetCString(values[RC_KEY]);
	e->op = DatumGetChar(values[RC_OP]);
	e->ttl_ms = DatumGetInt64(values[RC_TTL]);
	strlcpy(e->version, TextDatumGetCString(values[RC_VERSION]), sizeof(e->version));
	e->seq = DatumGetInt64(values[RC_SEQ]);
	e->relid = DatumGetObjectId(values[RC_RELID]);
	ItemPointerCopy(tid, &e->tid);
	if (e->op != 'T')
		e->bad = payload_to_image(e->op, nulls[RC_PAYLOAD] ? NULL : DatumGetJsonbP(values[RC_PAYLOAD]),
								  &e->img);
	else
		e->bad = purge_payload_to_image(nulls[RC_PAYLOAD] ? NULL : DatumGetJsonbP(values[RC_PAYLOAD]),
										&e->img);
}

/* room for n entries (in the caller's memory), zeroed */
static void
alloc_entries(Delivery *d, int n)
{
	MemoryContext old = MemoryContextSwitchTo(d->caller);

	d->entries = palloc0(sizeof(Entry) * n);
	d->failed = palloc0(sizeof(bool) * n);
	d->errors = palloc0(sizeof(char *) * n);
	MemoryContextSwitchTo(old);
}

/* room for n entries where there was room for old_n, the first old_n kept */
static void
grow_entries(Delivery *d, int old_n, int n)
{
	d->entries = repalloc(d->entries, sizeof(Entry) * n);
	d->failed = repalloc(d->failed, sizeof(bool) * n);
	d->errors = repalloc(d->errors, sizeof(char *) * n);
	memset(d->entries + old_n, 0, sizeof(Entry) * (n - old_n));
	memset(d->failed + old_n, 0, sizeof(bool) * (n - old_n));
	memset(d->errors + old_n, 0, sizeof(char *) * (n - old_n));
}

/*
 * Whether the row in slot passes the read's WHERE clause: stamped (version
 * not empty), of relid (unless InvalidOid), due (with due_only), and not
 * written by this transaction (top, when it has an xid).
 */
static bool
entry_wanted(TupleTableSlot *slot, const int *attno, Oid relid, bool due_only,
			 FullTransactionId top)
{
	bool		isnull;
	Datum		v;

	v = slot_getattr(slot, attno[RC_VERSION], &isnull);
	if (isnull || VARSIZE_ANY_EXHDR(DatumGetTextPP(v)) == 0)
		return false;
	if (OidIsValid(relid))
	{
		v = slot_getattr(slot, attno[RC_RELID], &isnull);
		if (isnull || DatumGetObjectId(v) != relid)
			return false;
	}
	if (due_only)
	{
		v = slot_getattr(slot, attno[RC_NEXT_ATTEMPT], &isnull);
		if (!isnull && DatumGetTimestampTz(v) > GetCurrentTimestamp())
			return false;
	}
	if (FullTransactionIdIsValid(top))
	{
		v = slot_getattr(slot, attno[RC_XID], &isnull);
		if (isnull || FullTransactionIdEquals(DatumGetFullTransactionId(v), top))
			return false;
	}
	return true;
}

/*
 * The primary key of the outbox, opened, when it is the extension's: a
 * btree on id alone, ascending, of the integer operator family, valid.
 * NULL otherwise.
 */
static Relation
open_id_index(Relation rel, int id_attno)
{
	Oid			indexid = RelationGetPrimaryKeyIndex(rel);
	Relation	idx;

	if (!OidIsValid(indexid))
		return NULL;
	idx = index_open(indexid, RowShareLock);
	if (idx->rd_rel->relam != BTREE_AM_OID || idx->rd_index->indnkeyatts != 1 ||
		idx->rd_index->indkey.values[0] != id_attno || !idx->rd_index->indisvalid ||
		idx->rd_opfamily[0] != INTEGER_BTREE_FAM_OID || idx->rd_indoption[0] != 0 ||
		!heap_attisnull(idx->rd_indextuple, Anum_pg_index_indexprs, NULL) ||
		!heap_attisnull(idx->rd_indextuple, Anum_pg_index_indpred, NULL))
	{
		index_close(idx, RowShareLock);
		return NULL;
	}
	return idx;
}

/*
 * The outbox and its primary key, opened for the direct read when they are
 * the extension's: no rules or inheritance children, a heap, the columns
 * the read needs of their types (attno: where they are).  NULL otherwise.
 */
static Relation
direct_open(Delivery *d, int *attno, Relation *idx)
{
	Relation	rel;
	TupleDesc	td;

	if (!OidIsValid(d->outbox))
		return NULL;
	rel = table_open(d->outbox, RowExclusiveLock);
	td = RelationGetDescr(rel);
	if (rel->rd_rules != NULL || rel->rd_rel->relhassubclass ||
		rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relam != HEAP_TABLE_AM_OID)
	{
		table_close(rel, RowExclusiveLock);
		return NULL;
	}
	for (int c = 0; c < RC_COUNT; c++)
	{
		AttrNumber	a = InvalidAttrNumber;

		/* where the extension creates it, else wherever it is */
		if (read_cols[c].attno <= td->natts &&
			!TupleDescAttr(td, read_cols[c].attno - 1)->attisdropped &&
			strcmp(NameStr(TupleDescAttr(td, read_cols[c].attno - 1)->attname), read_cols[c].name) == 0)
			a = read_cols[c].attno;
		for (int i = 0; a == InvalidAttrNumber && i < td->natts; i++)
			if (!TupleDescAttr(td, i)->attisdropped &&
				strcmp(NameStr(TupleDescAttr(td, i)->attname), read_cols[c].name) == 0)
				a = i + 1;
		if (a == InvalidAttrNumber || TupleDescAttr(td, a - 1)->atttypid != read_cols[c].type)
		{
			table_close(rel, RowExclusiveLock);
			return NULL;
		}
		attno[c] = a;
	}
	if ((*idx = open_id_index(rel, attno[RC_ID])) == NULL)
	{
		table_close(rel, RowExclusiveLock);
		return NULL;
	}
	return rel;
}

/*
 * Lock the entry in slot as FOR UPDATE SKIP LOCKED would, into locked.
 * False when it is to be skipped: another transaction holds it, this one
 * changed it, it is gone, or its newest version no longer passes.
 */
static bool
lock_entry(Relation rel, TupleTableSlot *slot, TupleTableSlot *locked, Snapshot snapshot,
		   CommandId cid, const int *attno, Oid relid, bool due_only, FullTransactionId top)
{
	int			lockflags = IsolationUsesXactSnapshot() ? 0 : TUPLE_LOCK_FLAG_FIND_LAST_VERSION;
	TM_FailureData tmfd;
	TM_Result	res;

	res = table_tuple_lock(rel, &slot->tts_tid, snapshot, locked, cid,
						   LockTupleExclusive, LockWaitSkip, lockflags, &tmfd);
	switch (res)
	{
		case TM_Ok:
			/* updated since the snapshot: the newest version must pass too */
			return !tmfd.traversed || entry_wanted(locked, attno, relid, due_only, top);
		case TM_WouldBlock:
		case TM_SelfModified:
			return false;
		case TM_Updated:
		case TM_Deleted:
			if (IsolationUsesXactSnapshot())
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not serialize access due to concurrent update")));
			if (res == TM_Deleted)
				return false;
			break;
		default:
			break;
	}
	elog(ERROR, "redis_sync: unexpected result of locking an outbox entry: %d", res);
	return false;
}

/*
 * Step 1, without SQL: what the read statement of read_entries() does, as
 * the executor would run its plan (Limit, LockRows, an index scan of the
 * primary key), without the executor's start-up, which was most of the
 * cost of a one-entry delivery.  The snapshot is taken as SPI takes it for
 * a statement (a new command, the transaction snapshot); each row passing
 * the WHERE clause is locked (FOR UPDATE SKIP LOCKED: a row another
 * transaction holds is skipped), and a row updated since the snapshot is
 * locked in its newest version and checked again, as the executor's
 * EvalPlanQual recheck does.  Returns -1 when the outbox is not the
 * extension's (direct_open): then the statement runs.  Only entries with
 * an id above d->after are read.  A peek (d->peek) locks nothing and reads
 * them whoever holds them.
 */
static int
read_direct(Delivery *d, int max, Oid relid, bool due_only)
{
	Relation	rel;
	Relation	idx;
	int			attno[RC_COUNT];
	IndexScanDesc scan;
	ScanKeyData key;
	TupleTableSlot *slot;
	TupleTableSlot *locked;
	Snapshot	snapshot;
	CommandId	cid;
	FullTransactionId top = GetTopFullTransactionIdIfAny();
	int			n = 0;
	int			room = Min(max, 16);

	if ((rel = direct_open(d, attno, &idx)) == NULL)
		return -1;

	/*
	 * As SPI runs a statement: a new command, a new snapshot (read
	 * committed).  A peek reads with the latest snapshot even under
	 * REPEATABLE READ: flush() pushes what was committed before it, not
	 * before its transaction's snapshot (it locks nothing, so nothing it
	 * reads can fail to serialize).
	 */
	PushActiveSnapshot(d->peek ? GetLatestSnapshot() : GetTransactionSnapshot());
	CommandCounterIncrement();
	UpdateActiveSnapshotCommandId();
	snapshot = GetActiveSnapshot();
	cid = GetCurrentCommandId(true);

	alloc_entries(d, room);
	slot = table_slot_create(rel, NULL);
	locked = table_slot_create(rel, NULL);
	/* from the entry after the last one this loop read */
	ScanKeyInit(&key, 1, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(d->after));
	scan = index_beginscan(rel, idx, snapshot, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	while (n < max && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		TupleTableSlot *entry = d->peek ? slot : locked;
		Datum		values[RC_COUNT];
		bool		nulls[RC_COUNT];
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		if (!entry_wanted(slot, attno, relid, due_only, top))
			continue;
		if (!d->peek &&
			!lock_entry(rel, slot, locked, snapshot, cid, attno, relid, due_only, top))
			continue;
		for (int c = 0; c < RC_COUNT; c++)
			values[c] = slot_getattr(entry, attno[c], &nulls[c]);
		if (n == room)
		{
			grow_entries(d, room, Min(max, room * 2));
			room = Min(max, room * 2);
		}
		old = MemoryContextSwitchTo(d->caller);
		fill_entry(&d->entries[n++], values, nulls, &entry->tts_tid);
		MemoryContextSwitchTo(old);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(locked);
	ExecDropSingleTupleTableSlot(slot);
	PopActiveSnapshot();
	index_close(idx, NoLock);
	table_close(rel, NoLock);
	return n;
}

/* the read of read_entries(): from id > $4; a peek locks nothing */
#define READ_SQL(more, lock) \
"SELECT id, redis_key, op, payload, ttl_ms, version, seq, relid, ctid " \
"  FROM redis_sync.outbox WHERE version <> '' " \
"   AND ($2 = 0 OR relid = $2) " \
"   AND (NOT $3 OR next_attempt_at IS NULL OR next_attempt_at <= pg_catalog.clock_timestamp()) " \
"   AND (pg_catalog.pg_current_xact_id_if_assigned() IS NULL " \
"        OR xid OPERATOR(pg_catalog.<>) pg_catalog.pg_current_xact_id_if_assigned()) " \
more " ORDER BY id LIMIT $1" lock

/*
 * Step 1: read up to max committed entries, oldest first, locking them (SKIP
 * LOCKED: concurrent deliverers take disjoint sets).  Not the entries of
 * this very transaction (written when it outgrew its buffer): a flush() in
 * it would push changes that may yet roll back.  Returns the count.
 */
static int
read_entries(Delivery *d, int max, Oid relid, bool due_only)
{
	Oid			types[4] = {INT4OID, OIDOID, BOOLOID, INT8OID};
	Datum		args[4];
	int			guc_level;
	SPIPlanPtr	plan;
	MemoryContext old;

	args[0] = Int32GetDatum(max);
	args[1] = ObjectIdGetDatum(relid);
	args[2] = BoolGetDatum(due_only);
	args[3] = Int64GetDatum(d->after);

	/*
	 * The delete that settles the delivery needs RowExclusiveLock: take it
	 * before the read takes its weaker locks on the table and its index.
	 * Upgrading later deadlocked with REINDEX or anything else that takes a
	 * ShareLock on the table (granted after the read's lock) and then waits
	 * for the index.
	 */
	d->outbox = rs_outbox_relid();
	if (OidIsValid(d->outbox))
		LockRelationOid(d->outbox, RowExclusiveLock);

	if (!rs_debug_outbox_read_sql && (d->n = read_direct(d, max, relid, due_only)) >= 0)
		return d->n;

	/*
	 * A queue table is mostly dead tuples between vacuums; a sequential scan
	 * would read them all each time.  The primary key in id order skips them
	 * (and marks them dead in the index as it goes).
	 */
	sql_as_owner(d);
	guc_level = NewGUCNestLevel();
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	if (d->peek)
		plan = kept_plan(&peek_plan, READ_SQL("AND id > $4", ""), 4, types);
	else
		plan = kept_plan(&read_plan, READ_SQL("AND id > $4", " FOR UPDATE SKIP LOCKED"), 4, types);
	if ((d->peek ?
		 SPI_execute_snapshot(plan, args, NULL, GetLatestSnapshot(), InvalidSnapshot,
							  true, false, 0) :
		 SPI_execute_plan(plan, args, NULL, false, 0)) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read redis_sync.outbox");
	AtEOXact_GUC(true, guc_level);
	d->n = (int) SPI_processed;
	if (d->n == 0)
		return 0;

	alloc_entries(d, d->n);
	old = MemoryContextSwitchTo(d->caller);
	for (int i = 0; i < d->n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		Datum		values[RC_COUNT];
		bool		nulls[RC_COUNT] = {0};
		bool		isnull;

		/* the target list: columns RC_ID .. RC_RELID, then ctid */
		for (int c = RC_ID; c <= RC_RELID; c++)
			values[c] = SPI_getbinval(tup, td, c + 1, &nulls[c]);
		fill_entry(&d->entries[i], values, nulls,
				   (ItemPointer) DatumGetPointer(SPI_getbinval(tup, td, RC_RELID + 2, &isnull)));
	}
	MemoryContextSwitchTo(old);
	return d->n;
}

/*
 * Step 2: the newest (version, seq, id) entry of every key.  Purges and
 * malformed entries are not coalesced.
 */
static void
coalesce(Delivery *d)
{
	MemoryContext old = MemoryContextSwitchTo(d->caller);

	d->byKey = rs_string_hash_create("redis_sync outbox keys", d->n, sizeof(KeySlot));
	MemoryContextSwitchTo(old);
	for (int i = 0; i < d->n; i++)
	{
		Entry	   *e = &d->entries[i];
		KeySlot    *slot;
		bool		found;

		if (e->op == 'T' || e->bad)
			continue;
		slot = hash_search(d->byKey, &e->key, HASH_ENTER, &found);
		if (!found)
		{
			slot->key = e->key;
			slot->entry = i;
		}
		else
		{
			Entry	   *cur = &d->entries[slot->entry];
			int			c = strcmp(e->version, cur->version);

			if (c > 0 || (c == 0 && e->seq > cur->seq) ||
				(c == 0 && e->seq == cur->seq && e->id > cur->id))
				slot->entry = i;
		}
	}
}

/* the fenced writes of one batch, and which entry each came from */
typedef struct DeliveryOps
{
	FenceOp    *ops;
	int		   *op_entry;		/* ops[o] came from entries[op_entry[o]] */
	int			nops;
	int			maxops;
} DeliveryOps;

static void
add_op(DeliveryOps *o, int entry, const char *key, const char *version,
	   int64 ttl_ms, RowImage *img)
{
	if (o->nops == o->maxops)
	{
		o->maxops *= 2;
		o->ops = repalloc(o->ops, sizeof(FenceOp) * o->maxops);
		o->op_entry = repalloc(o->op_entry, sizeof(int) * o->maxops);
	}
	o->ops[o->nops].key = key;
	o->ops[o->nops].version = version;
	o->ops[o->nops].ttl_ms = ttl_ms;
	o->ops[o->nops].img = img;
	o->op_entry[o->nops++] = entry;
}

/*
 * The version a purge deletes with: just below its own (hex digits, one
 * less), so that it never removes what its own transaction wrote after the
 * TRUNCATE.  Those keys carry the purge's version, and the fence applies
 * equal versions: a purge delivered again after them (pushed by flush()
 * while its holder had it, or by a deliverer that read it in an earlier
 * batch), or a delete of the pre-commit push whose reply timed out and
 * that reached Redis after the outbox delivered them (TAP 228), removed
 * them for good.  Nothing else can hold a version between the two: the
 * TRUNCATE's lock kept every other writer of the table out.
 */
static char *
purge_version(const char *version)
{
	char	   *v = pstrdup(version);

	rs_version_decrement(v);
	return v;
}

/* a purge on its way: what each page of its deletes needs */
typedef struct PurgeSend
{
	const char *version;		/* the deletes' version */
	RowImage   *img;			/* a delete: of whole keys, or of some fields */
	List	  **clears;			/* marker fields, sent with the first call */
	bool	   *sent;			/* set once a delete was sent */
	MemoryContext cxt;			/* one page's commands, reset after it */
	MemoryContext home;			/* rs_purge_send's caller's: for refused */
	RedisFailure refused;		/* the first page Redis refused, if any */
	bool		any_refused;
} PurgeSend;

/*
 * Send one page's fenced deletes, redis_sync.chunk_size keys per call, in one
 * pipeline, and read its replies: false, with *failure filled in the
 * caller's memory, when Redis could not be reached (nothing after it is
 * sent).  A page Redis refused (a delete of some keys) is noted in
 * ps->refused and the next pages go on: each retry of the purge applies
 * everything else, and stops at nothing.
 */
static bool
purge_page(char **keys, int n, void *arg, RedisFailure *failure)
{
	PurgeSend  *ps = arg;
	MemoryContext caller = MemoryContextSwitchTo(ps->cxt);
	RedisPipeline *p = redis_pipeline_create();
	FenceOp    *ops = palloc(sizeof(FenceOp) * n);
	bool		ok;

	for (int i = 0; i < n; i++)
	{
		ops[i].key = keys[i];
		ops[i].version = ps->version;
		ops[i].ttl_ms = 0;
		ops[i].img = ps->img;
	}
	for (int s = 0; s < n; s += rs_chunk_size)
	{
		rs_fence_append(p, ops + s, Min(rs_chunk_size, n - s), NULL, NULL, *ps->clears);
		*ps->clears = NIL;
	}
	ok = redis_pipeline_try_exec(p, failure);
	/* a failure to connect sent nothing */
	if (ok || failure->sqlstate != ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION)
		*ps->sent = true;
	if (ok && !rs_fence_replies_ok(p, failure) && !ps->any_refused)
	{
		ps->any_refused = true;
		ps->refused = *failure;
		/* not caller: purge_queued_keys calls in SPI memory */
		redis_failure_copy(&ps->refused, ps->home);
	}
	redis_pipeline_free(p);
	MemoryContextSwitchTo(caller);
	if (!ok)
		redis_failure_copy(failure, caller);
	MemoryContextReset(ps->cxt);
	return ok;
}

/*
 * The keys of relid's queued entries under prefix that precede the purge
 * (version, seq, id below its; not this transaction's), whoever holds them,
 * to page_fn 1,000 at a time: false when it returns false.  See
 * rs_purge_send.
 */
static bool
purge_queued_keys(Oid relid, const char *prefix, const char *version, int64 seq, int64 id,
				  PurgeSend *ps, RedisFailure *failure)
{
	RsAsOwner	ao = {0};
	bool		snap;
	bool		ok = true;
	Oid			types[4] = {OIDOID, TEXTOID, INT8OID, INT8OID};
	Datum		args[4];
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext keys_cxt = AllocSetContextCreate(caller, "redis_sync purge queued keys",
												   ALLOCSET_DEFAULT_SIZES);
	size_t		plen = strlen(prefix);
	static SPIPlanPtr plan = NULL;

	args[0] = ObjectIdGetDatum(relid);
	args[1] = CStringGetTextDatum(version);
	args[2] = Int64GetDatum(seq);
	args[3] = Int64GetDatum(id);
	spi_begin(&snap);
	/* a read-only cursor reads with the active snapshot: a new one */
	PushActiveSnapshot(GetLatestSnapshot());
	become_owner(&ao);
	PG_TRY();
	{
		Portal		portal;

		portal = SPI_cursor_open(NULL,
								 kept_plan(&plan,
										   "SELECT DISTINCT redis_key FROM redis_sync.outbox "
										   " WHERE relid OPERATOR(pg_catalog.=) $1 AND op OPERATOR(pg_catalog.<>) 'T' "
										   "   AND (version OPERATOR(pg_catalog.=) '' "
										   "        OR (version COLLATE \"C\", seq, id) OPERATOR(pg_catalog.<) ($2 COLLATE \"C\", $3, $4)) "
										   "   AND (pg_catalog.pg_current_xact_id_if_assigned() IS NULL "
										   "        OR xid OPERATOR(pg_catalog.<>) pg_catalog.pg_current_xact_id_if_assigned())",
										   4, types),
								 args, NULL, true);
		while (ok)
		{
			char	  **keys;
			int			n = 0;

			SPI_cursor_fetch(portal, true, 1000);
			if (SPI_processed == 0)
				break;
			keys = MemoryContextAlloc(keys_cxt, sizeof(char *) * SPI_processed);
			for (uint64 r = 0; r < SPI_processed; r++)
			{
				bool		isnull;
				Datum		v = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull);
				MemoryContext old;
				char	   *k;

				if (isnull)
					continue;
				old = MemoryContextSwitchTo(keys_cxt);
				k = TextDatumGetCString(v);
				MemoryContextSwitchTo(old);
				if (strncmp(k, prefix, plen) == 0)
					keys[n++] = k;
			}
			SPI_freetuptable(SPI_tuptable);
			if (n > 0)
				ok = purge_page(keys, n, ps, failure);
			MemoryContextReset(keys_cxt);
		}
		SPI_cursor_close(portal);
	}
	PG_FINALLY();
	{
		rs_as_owner_leave(&ao);
	}
	PG_END_TRY();
	PopActiveSnapshot();
	if (!ok)
		redis_failure_copy(failure, caller);
	spi_end(snap);
	MemoryContextDelete(keys_cxt);
	return ok;
}

/*
 * Send the fenced deletes of a purge of prefix (a TRUNCATE, unsync(purge)):
 * of every key under it in Redis (SCAN), and of the keys of the queued
 * entries of relid that precede the purge (version, seq, id below its; not
 * this transaction's), whoever holds them.  A deliverer may hold such an
 * entry, read before the purge, and push it after: when its key was missing
 * from Redis (evicted, never cached) SCAN does not find it, and only the
 * tombstone the purge's delete leaves keeps the truncated row from coming
 * back.  The pre-commit push of a TRUNCATE passes the largest seq and id:
 * every queued entry of the table is older (its writer committed before the
 * TRUNCATE's lock was granted).  The entries are read with a new snapshot:
 * under REPEATABLE READ or SERIALIZABLE the transaction's own was taken
 * before the TRUNCATE waited for its lock, and missed the entries committed
 * in between (specs/outbox_purge_snapshot).
 *
 * The queued entries are read, and their keys deleted, before the SCAN: an
 * entry a deliverer pushes and settles meanwhile is either in that read (its
 * key gets a fenced delete, which it cannot pass) or was pushed before it,
 * so before the SCAN began, which then finds its key.  Read after the SCAN,
 * an entry of a key missing from Redis pushed during the SCAN, after the
 * SCAN passed its slot, and settled before the read, was in neither: its
 * truncated row stayed cached (TAP 229).
 *
 * Each delete is img (of the whole key, or of some fields) just below the
 * purge's version (purge_version).
 * They go a page at a time (1,000 queued keys, or a SCAN page), each page's
 * pipeline read before the next is sent: memory holds one page, whatever the
 * number of keys (it held them all, about 300 bytes a key).  A key may be
 * deleted twice (SCAN returns some twice; a queued entry's key is often
 * cached too): a fenced delete at the same version is harmless.  *clears go
 * with the first call.
 *
 * False, with *failure filled, when Redis could not be reached (the pages
 * before it were applied, the rest was not sent) or refused a delete (every
 * other page was sent: the first refusal is reported).  *sent says whether
 * any delete was sent (from the first on, an ERROR, a cancel in a wait, may
 * leave deletes applied too).
 */
bool
rs_purge_send(Oid relid, const char *prefix, RowImage *img, const char *version,
			  int64 seq, int64 id, List **clears, bool *sent, RedisFailure *failure)
{
	PurgeSend	ps;
	bool		ok;

	ps.version = purge_version(version);
	ps.img = img;
	ps.clears = clears;
	ps.sent = sent;
	ps.any_refused = false;
	ps.home = CurrentMemoryContext;
	*sent = false;
	ps.cxt = AllocSetContextCreate(CurrentMemoryContext, "redis_sync purge page",
								   ALLOCSET_DEFAULT_SIZES);
	ok = !OidIsValid(rs_outbox_relid()) ||
		purge_queued_keys(relid, prefix, version, seq, id, &ps, failure);
	if (ok)
		ok = rs_scan_prefix_pages_try(prefix, purge_page, &ps, failure);
	MemoryContextDelete(ps.cxt);
	if (ok && ps.any_refused)
	{
		*failure = ps.refused;
		return false;
	}
	return ok;
}

/* whether entry a precedes entry b: (version, seq, id) */
static bool
entry_older(const Entry *a, const Entry *b)
{
	int			c = strcmp(a->version, b->version);

	return c < 0 || (c == 0 && (a->seq < b->seq || (a->seq == b->seq && a->id < b->id)));
}


static void
fail_entry(Delivery *d, int i, const char *error)
{
	d->failed[i] = true;
	d->errors[i] = MemoryContextStrdup(d->caller, error);
}

/*
 * Step 3a: purges first (a fenced delete of every key under the prefix,
 * found by SCAN, or of the write-through fields of each, RS_OP_FIELDS; the
 * newest purge of a table's prefix only), sent here, page by page
 * (rs_purge_send; a purge that fails is failed, and its deletes sent so far
 * stay applied, fenced below its version), then the ops of the
 * newest entry of every key.  A key's newest entry
 * older than a purge of its prefix in the batch goes as the purge's delete
 * with the purge's version: the purge's SCAN does not see a key missing from Redis
 * (evicted, never cached), so no tombstone keeps the older entry from
 * bringing the truncated row back.
 */
static void
build_ops(Delivery *d, DeliveryOps *o)
{
	int		   *purges = palloc(sizeof(int) * d->n);
	char	  **purge_ver = palloc(sizeof(char *) * d->n);
	int			npurges = 0;
	HTAB	   *newest = NULL;
	List	   *no_clears = NIL;
	bool		sent;
	RedisFailure f;

	o->maxops = d->n + 1;
	o->nops = 0;
	o->ops = palloc(sizeof(FenceOp) * o->maxops);
	o->op_entry = palloc(sizeof(int) * o->maxops);

	/*
	 * The newest purge of each table and prefix in the batch: it deletes
	 * everything an older one would (every key under the prefix, below a
	 * higher version, and the keys of a superset of the queued entries), so
	 * the older ones send nothing.  Each purge costs a SCAN and a read of the
	 * outbox (rs_purge_keys); a backlog of a table truncated again and again
	 * paid them once per TRUNCATE.  A purge of the write-through fields only
	 * does not stand for an older purge of whole keys (nor the other way):
	 * they are told apart by their kind.
	 */
	for (int i = 0; i < d->n; i++)
	{
		Entry	   *e = &d->entries[i];
		char	   *tag;
		KeySlot    *slot;
		bool		found;

		if (e->op != 'T' || e->bad)
			continue;
		if (newest == NULL)
			newest = rs_string_hash_create("redis_sync outbox purges", 16, sizeof(KeySlot));
		tag = psprintf("%u:%c:%s", e->relid, e->img.op, e->key);
		slot = hash_search(newest, &tag, HASH_ENTER, &found);
		if (!found || entry_older(&d->entries[slot->entry], e))
		{
			slot->key = tag;
			slot->entry = i;
		}
	}
	for (int i = 0; i < d->n; i++)
	{
		Entry	   *e = &d->entries[i];
		char	   *tag;

		if (e->op != 'T' || e->bad)
			continue;
		tag = psprintf("%u:%c:%s", e->relid, e->img.op, e->key);
		if (((KeySlot *) hash_search(newest, &tag, HASH_FIND, NULL))->entry != i)
			continue;
		purges[npurges] = i;
		purge_ver[npurges] = purge_version(e->version);

		/*
		 * its deletes go now, page by page, before the batch's other writes
		 * (and after those of the batch in flight, on the same connections)
		 */
		if (!rs_purge_send(e->relid, e->key, &e->img, e->version,
						   e->seq, e->id, &no_clears, &sent, &f))
			fail_entry(d, i, f.detail ? psprintf("%s: %s", f.message, f.detail) : f.message);
		npurges++;
	}
	for (int i = 0; i < d->n; i++)
	{
		Entry	   *e = &d->entries[i];
		KeySlot    *slot;
		int			after = -1;

		if (e->op == 'T' || e->bad)
			continue;
		slot = hash_search(d->byKey, &e->key, HASH_FIND, NULL);
		if (slot->entry != i)
			continue;
		/* the newest purge of the key's prefix that follows the entry */
		for (int p = 0; p < npurges; p++)
		{
			Entry	   *pe = &d->entries[purges[p]];

			if (strncmp(e->key, pe->key, strlen(pe->key)) == 0 && entry_older(e, pe) &&
				(after < 0 || entry_older(&d->entries[purges[after]], pe)))
				after = p;
		}
		if (after >= 0)
			add_op(o, i, e->key, purge_ver[after], 0, &d->entries[purges[after]].img);
		else
			add_op(o, i, e->key, e->version, e->ttl_ms, &e->img);
	}
	if (newest != NULL)
		hash_destroy(newest);
}

/* a batch's push: its ops and the pipeline of their apply calls */
typedef struct Push
{
	DeliveryOps o;
	RedisPipeline *p;
	int		   *call_start;		/* first op of each call */
	int			ncalls;
} Push;

/*
 * Step 3b: the ops in chunks of redis_sync.chunk_size through the apply
 * script, in one pipeline (not sent yet).
 */
static void
push_build(Delivery *d, Push *ps)
{
	build_ops(d, &ps->o);
	ps->p = redis_pipeline_create();
	ps->call_start = palloc(sizeof(int) * (ps->o.nops / Max(rs_chunk_size, 1) + 2));
	ps->ncalls = 0;
	for (int s = 0; s < ps->o.nops; s += rs_chunk_size)
	{
		ps->call_start[ps->ncalls++] = s;
		rs_fence_append(ps->p, ps->o.ops + s, Min(rs_chunk_size, ps->o.nops - s), NULL, NULL, NIL);
	}
}

/*
 * Step 3c: the push's outcome (ok: its replies were read; else *failure
 * says why).  On a Redis failure every entry failed and false is returned;
 * otherwise a key Redis refused marks its entries failed (superseded
 * entries follow the fate of their key's newest entry).  Frees the
 * pipeline.
 */
static bool
push_finish(Delivery *d, Push *ps, bool ok, RedisFailure *failure)
{
	DeliveryOps *o = &ps->o;

	if (!ok)
	{
		for (int i = 0; i < d->n; i++)
			fail_entry(d, i, failure->message);
		redis_pipeline_free(ps->p);
		return false;
	}

	for (int c = 0; c < ps->ncalls; c++)
	{
		RedisValue *v = redis_pipeline_reply(ps->p, c);
		int		   *idx;
		char	  **errs;
		int			nfail = v->type == RV_ERROR ? -1 : rs_fence_failures(v, &idx, &errs);

		if (nfail < 0)
		{
			int			end = c + 1 < ps->ncalls ? ps->call_start[c + 1] : o->nops;

			for (int k = ps->call_start[c]; k < end; k++)
				fail_entry(d, o->op_entry[k], v->type == RV_ERROR ? v->str : "malformed reply");
			continue;
		}
		for (int f = 0; f < nfail; f++)
			fail_entry(d, o->op_entry[ps->call_start[c] + idx[f]], errs[f]);
	}
	redis_pipeline_free(ps->p);

	for (int i = 0; i < d->n; i++)
	{
		KeySlot    *slot;

		if (d->entries[i].op == 'T' || d->failed[i] || d->entries[i].bad)
			continue;
		slot = hash_search(d->byKey, &d->entries[i].key, HASH_FIND, NULL);
		if (d->failed[slot->entry])
		{
			d->failed[i] = true;
			d->errors[i] = d->errors[slot->entry];
		}
	}

	/*
	 * Malformed entries are never sent: they stay queued with their error,
	 * counted as refused, and back off like refused entries, so they cannot
	 * hold up the entries behind them.
	 */
	for (int i = 0; i < d->n; i++)
		if (d->entries[i].bad)
			fail_entry(d, i, d->entries[i].bad);
	return true;
}

/* Step 3: push, in one round trip */
static bool
push(Delivery *d, RedisFailure *failure)
{
	Push		ps;

	push_build(d, &ps);
	return push_finish(d, &ps, redis_pipeline_try_exec(ps.p, failure), failure);
}

/*
 * Remove the delivered entries by their row (read_entries locked them, so
 * they are still there, unchanged): a DELETE statement's start-up and index
 * scan cost more than the rest of a small batch's settling.  False when the
 * outbox has triggers or rules (none of the extension's), or is not a heap:
 * then a DELETE runs them; and when it has inheritance children, whose
 * entries the read returned too (a ctid of one is not a row of the outbox).
 */
static bool
delete_direct(Delivery *d)
{
	Relation	rel;

	if (!OidIsValid(d->outbox))
		return false;
	rel = table_open(d->outbox, RowExclusiveLock);
	if (rel->trigdesc != NULL || rel->rd_rules != NULL || rel->rd_rel->relhassubclass ||
		rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relam != HEAP_TABLE_AM_OID)
	{
		table_close(rel, RowExclusiveLock);
		return false;
	}
	/* a publication of deletes needs a replica identity, as for a DELETE */
	CheckCmdReplicaIdentity(rel, CMD_DELETE);
	/* the lock taken by the read is this command's: delete in the next */
	CommandCounterIncrement();
	for (int i = 0; i < d->n; i++)
		if (!d->failed[i])
			simple_heap_delete(rel, &d->entries[i].tid);
	table_close(rel, NoLock);
	return true;
}

/*
 * Step 4: delete the entries Redis confirmed, record an attempt (error,
 * backoff) on the others, count both.  Returns how many stay queued.
 */
static int
settle(Delivery *d)
{
	Datum	   *done = palloc(sizeof(Datum) * d->n);
	Datum	   *kept = palloc(sizeof(Datum) * d->n);
	Datum	   *kept_err = palloc(sizeof(Datum) * d->n);
	int			ndone = 0;
	int			retained = 0;

	for (int i = 0; i < d->n; i++)
	{
		if (d->failed[i])
		{
			kept[retained] = Int64GetDatum(d->entries[i].id);
			kept_err[retained] = CStringGetTextDatum(d->errors[i]);
			retained++;
			rs_stats_add(d->entries[i].relid, RS_C_DELIVERY_FAILURES, 1);
			rs_stats_error(d->entries[i].relid, d->errors[i]);
		}
		else
		{
			done[ndone++] = Int64GetDatum(d->entries[i].id);
			rs_stats_add(d->entries[i].relid, RS_C_DELIVERED, 1);
		}
	}
	if (ndone > 0 && !delete_direct(d))
	{
		Oid			dtypes[1] = {INT8ARRAYOID};
		Datum		dargs[1];

		sql_as_owner(d);
		dargs[0] = PointerGetDatum(construct_array(done, ndone, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		if (SPI_execute_plan(kept_plan(&delete_plan,
									   "DELETE FROM redis_sync.outbox WHERE id = ANY ($1)",
									   1, dtypes),
							 dargs, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "redis_sync: could not remove delivered outbox entries");
	}
	if (retained > 0)
	{
		Oid			utypes[3] = {INT8ARRAYOID, TEXTARRAYOID, INT4OID};
		Datum		uargs[3];

		uargs[0] = PointerGetDatum(construct_array(kept, retained, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		uargs[1] = PointerGetDatum(construct_array(kept_err, retained, TEXTOID, -1, false, TYPALIGN_INT));
		uargs[2] = Int32GetDatum(rs_retry_max_backoff_ms);
		sql_as_owner(d);
		if (SPI_execute_with_args("UPDATE redis_sync.outbox o "
								  "   SET attempts = o.attempts + 1, last_error = u.err, "
								  "       next_attempt_at = pg_catalog.clock_timestamp() + "
								  "         least(100 * 2 ^ least(o.attempts, 20), $3) * interval '1 ms' "
								  "  FROM unnest($1, $2) AS u(id, err) WHERE o.id OPERATOR(pg_catalog.=) u.id",
								  3, utypes, uargs, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "redis_sync: could not record failed outbox deliveries");
	}
	return retained;
}

/*
 * A batch of a delivery between its read and its settling.  Each has a
 * memory context of its own (d.caller), deleted once it is settled: a
 * caller that delivers batch after batch in one transaction (flush(),
 * deliver_outbox()) kept every batch's entries until it returned, about 1.3
 * kB per entry of a 200-character row (a 412 MB peak for 280,000).
 */
typedef struct Flight
{
	Delivery	d;
	Push		ps;
	RedisFailure f;				/* why its push failed */
} Flight;

/* a delivery of at least twice this many entries overlaps its batches */
#define OVERLAP_MIN_BATCH 1000

/*
 * Step 4 for a flight whose push ended (ok, or failed with fl->f): settle
 * it, add its counts, note the first refusal, free it.
 */
static void
land(Flight *fl, bool ok, int64 *delivered, int *retained, char **detail)
{
	MemoryContext old = MemoryContextSwitchTo(fl->d.caller);
	int			r;

	(void) push_finish(&fl->d, &fl->ps, ok, &fl->f);
	r = settle(&fl->d);
	MemoryContextSwitchTo(old);
	*retained += r;
	*delivered += fl->d.n - r;
	for (int i = 0; r > 0 && *detail == NULL && i < fl->d.n; i++)
		if (fl->d.failed[i] && fl->d.errors[i])
			*detail = psprintf("%s (key %s)", fl->d.errors[i], fl->d.entries[i].key);
	MemoryContextDelete(fl->d.caller);
}

/*
 * Deliver up to max entries, in batches whose pushes overlap: while Redis
 * applies one batch, the next is read and the one before settled.  Redis
 * spends about as long on a batch as the deliverer does on reading and
 * settling it, and each used to wait for the other.  A batch is sent only
 * once the replies of the one before are read (one pipeline in flight on
 * the connection), so Redis applies them in order; a purge's first round
 * trip reads the batch in flight first.  Batches are what calling this
 * with a smaller max would deliver, one after the other: an entry's key may
 * be pushed in two batches, fenced by its versions as ever.  When a push
 * fails, the batch read after it is neither sent nor settled: its entries
 * stay queued untouched.
 */
int64
rs_outbox_deliver(int max, Oid relid, bool due_only, int64 *after,
				  RedisFailure *failure, int *nrefused)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext spi;
	RsAsOwner	ao = {0};
	int			batch = max >= 2 * OVERLAP_MIN_BATCH ? Max(OVERLAP_MIN_BATCH, max / 4) : max;
	int			nread = 0;
	int64		delivered = 0;
	int			retained = 0;
	char	   *detail = NULL;
	bool		ok = true;
	Flight	   *prev = NULL;
	bool		snap;

	*nrefused = 0;
	spi_begin(&snap);
	spi = CurrentMemoryContext;
	while (ok && nread < max)
	{
		MemoryContext cxt = AllocSetContextCreate(caller, "redis_sync outbox batch",
												  ALLOCSET_DEFAULT_SIZES);
		Flight	   *cur = MemoryContextAllocZero(cxt, sizeof(Flight));
		int			n;

		cur->d.caller = cxt;
		cur->d.ao = &ao;
		cur->d.after = *after;
		MemoryContextSwitchTo(cxt);
		n = read_entries(&cur->d, Min(batch, max - nread), relid, due_only);
		/* (a statement of SPI returns to SPI's memory) */
		MemoryContextSwitchTo(cxt);
		if (n > 0)
		{
			for (int i = 0; i < n; i++)
				*after = Max(*after, cur->d.entries[i].id);
			coalesce(&cur->d);
			push_build(&cur->d, &cur->ps);
		}
		MemoryContextSwitchTo(spi);
		if (n == 0)
		{
			MemoryContextDelete(cxt);
			break;
		}
		nread += n;
		if (prev != NULL && !redis_pipeline_try_receive(prev->ps.p, &prev->f))
		{
			*failure = prev->f;
			ok = false;
			land(prev, false, &delivered, &retained, &detail);
			prev = NULL;
			/* not sent: its entries stay queued as they are */
			redis_pipeline_free(cur->ps.p);
			MemoryContextDelete(cxt);
			break;
		}
		if (!redis_pipeline_try_send(cur->ps.p, &cur->f))
		{
			*failure = cur->f;
			ok = false;
			land(cur, false, &delivered, &retained, &detail);
			cur = NULL;
		}
		/* the batch before is settled while Redis applies this one */
		if (prev != NULL)
			land(prev, true, &delivered, &retained, &detail);
		prev = cur;
		CHECK_FOR_INTERRUPTS();
	}
	if (prev != NULL)
	{
		bool		landed = redis_pipeline_try_receive(prev->ps.p, &prev->f);

		if (!landed)
		{
			*failure = prev->f;
			ok = false;
		}
		land(prev, landed, &delivered, &retained, &detail);
	}

	if (ok && retained > 0)
	{
		*nrefused = retained;
		failure->sqlstate = ERRCODE_EXTERNAL_ROUTINE_EXCEPTION;
		failure->message = psprintf("Redis refused %d outbox entries", retained);
		failure->detail = detail;
	}
	/* the failure was built in SPI memory: the caller keeps it */
	if (!ok || retained > 0)
		redis_failure_copy(failure, caller);
	spi_end(snap);
	rs_as_owner_leave(&ao);
	return ok ? delivered : -1;
}

/*
 * Push, without settling, the entries of relid (every table: InvalidOid)
 * that are still queued after this session's own delivery: those another
 * deliverer holds (the worker, another session) and may not have pushed
 * yet.  flush() runs it so that what was committed before it is in Redis
 * when it returns, without waiting for the holder: two flush() calls
 * waiting for each other's commit would wait out their timeout.  A second
 * push of an entry is harmless (its write carries its version; an older
 * one is refused, fence.c; a purge deletes below its own version,
 * build_ops); the holder settles the entry.  Entries Redis refuses are
 * pushed again too (queued with their error, held or not, they are read
 * here) and refused again: their holder, or the next delivery, records the
 * attempt; this push neither warns nor counts them.  ERROR when Redis
 * cannot be reached.
 */
static void
push_held(Oid relid)
{
	int64		after = 0;

	for (;;)
	{
		Delivery	d = {0};
		RsAsOwner	ao = {0};
		RedisFailure f = {0};
		MemoryContext caller = CurrentMemoryContext;
		bool		snap;
		bool		ok;
		int			n;

		d.caller = AllocSetContextCreate(caller, "redis_sync outbox peek", ALLOCSET_DEFAULT_SIZES);
		d.ao = &ao;
		d.peek = true;
		d.after = after;
		spi_begin(&snap);
		n = read_entries(&d, rs_outbox_batch, relid, false);
		ok = true;
		if (n > 0)
		{
			coalesce(&d);
			ok = push(&d, &f);
			for (int i = 0; i < n; i++)
				after = Max(after, d.entries[i].id);
			hash_destroy(d.byKey);
			if (!ok)
				redis_failure_copy(&f, caller);
		}
		spi_end(snap);
		rs_as_owner_leave(&ao);
		MemoryContextDelete(d.caller);
		if (!ok)
			ereport(ERROR,
					(errcode(f.sqlstate),
					 errmsg("could not deliver the outbox: %s", f.message),
					 f.detail ? errdetail("%s", f.detail) : 0));
		if (n < rs_outbox_batch)
			return;
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Deliver everything queued (for relid, or all when InvalidOid).  ERROR when
 * Redis cannot be reached; entries Redis refuses stay queued (with their
 * error and a retry time) and a WARNING says so.
 */
static int64
deliver_now(Oid relid, int64 max)
{
	RsDeliveryRules rules = {0};
	RsDeliveryOutcome out;

	/* an explicit delivery tries Redis even while the circuit is open */
	if (rs_circuit_is_open())
		(void) redis_probe();

	rules.relid = relid;
	rules.max = max;
	rules.cxt = CurrentMemoryContext;
	rs_outbox_deliver_loop(&rules, &out);
	if (out.failed)
		ereport(ERROR,
				(errcode(out.failure.sqlstate),
				 errmsg("could not deliver the outbox: %s", out.failure.message),
				 out.failure.detail ? errdetail("%s", out.failure.detail) : 0));
	if (out.refused > 0)
		ereport(WARNING,
				(errmsg("Redis refused %d outbox entries; they stay queued and are retried", out.refused),
				 out.last_refusal.detail ? errdetail("%s", out.last_refusal.detail) : 0,
				 errhint("See redis_sync.outbox.last_error.")));
	return out.delivered;
}

/* f, copied into cxt (it lives in the batch's transaction) */
static void
keep_failure(RedisFailure *dst, const RedisFailure *f, MemoryContext cxt)
{
	dst->sqlstate = f->sqlstate;
	dst->message = f->message ? MemoryContextStrdup(cxt, f->message) : NULL;
	dst->detail = f->detail ? MemoryContextStrdup(cxt, f->detail) : NULL;
}

void
rs_outbox_deliver_loop(const RsDeliveryRules *rules, RsDeliveryOutcome *out)
{
	bool		due_only = rules->due_only;
	MemoryContext cxt = rules->cxt ? rules->cxt : CurrentMemoryContext;

	/*
	 * Each batch reads on from the last entry the one before read (read, not
	 * delivered: refused or failed entries are not read again in this loop,
	 * as due_only has them skipped).  Starting from the first entry each time
	 * walked the index past every entry the loop had deleted, and past those
	 * another deliverer held.  An entry committed meanwhile with a lower id
	 * (ids are taken before commit) is left to the next loop: the worker's
	 * next round, which its commit wakes; a flush() pushes only what was
	 * committed before it began, which its first batch already sees.
	 */
	int64		after = PG_INT64_MIN;

	memset(out, 0, sizeof(*out));
	while (out->delivered < rules->max)
	{
		RedisFailure f = {0};
		int			nref = 0;
		int			want = (int) Min(rules->max - out->delivered, rs_outbox_batch);
		int64		n;

		if (rules->batch_xacts)
			rs_xact_begin_relaxed(rules->activity); /* redelivery is harmless */
		n = rs_outbox_deliver(want, rules->relid, due_only, &after, &f, &nref);
		if (nref > 0)
		{
			/* refused entries now wait for their retry time: skip them */
			out->refused += nref;
			keep_failure(&out->last_refusal, &f, cxt);
			due_only = true;
			if (rules->on_refusal)
				rules->on_refusal(&f);
		}
		if (n < 0)
			keep_failure(&out->failure, &f, cxt);
		rs_stats_flush();
		if (rules->batch_xacts)
			rs_xact_commit(cxt);
		else
			CommandCounterIncrement();
		if (n < 0)
		{
			out->failed = true;
			return;
		}
		out->delivered += n;
		if (rules->stop_on_short ? n < want : (n == 0 && nref == 0))
			return;
		if (rules->stop && rules->stop())
			return;
		CHECK_FOR_INTERRUPTS();
	}
}

/* redis_sync.deliver_outbox(max_entries int) RETURNS bigint */
Datum
redis_sync_deliver_outbox(PG_FUNCTION_ARGS)
{
	int			max = PG_GETARG_INT32(0);

	if (max <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_entries must be positive")));
	PG_RETURN_INT64(deliver_now(InvalidOid, max));
}

/*
 * redis_sync.flush(tbl regclass DEFAULT NULL) RETURNS bigint: deliver what
 * the outbox holds for tbl (or every table) now, in this session.
 */
Datum
redis_sync_flush(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_ARGISNULL(0) ? InvalidOid : PG_GETARG_OID(0);
	int64		n;
	bool		has_wb;
	Oid			types[1] = {OIDOID};
	Datum		args[1];

	/* a table's owner may flush it; every table at once is for superusers */
	if (OidIsValid(relid))
		rs_require_owner(relid);
	else if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to flush every table"),
				 errhint("Pass the table to flush; its owner may.")));
	n = deliver_now(relid, PG_INT64_MAX);
	push_held(relid);

	/* write-behind tables are drained by the worker: ask it and wait */
	args[0] = ObjectIdGetDatum(relid);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	if (SPI_execute_with_args("SELECT 1 FROM redis_sync.tables WHERE policy OPERATOR(pg_catalog.=) 'write_behind' "
							  "   AND ($1 OPERATOR(pg_catalog.=) 0::pg_catalog.oid "
							  "        OR relid::pg_catalog.oid OPERATOR(pg_catalog.=) $1) LIMIT 1",
							  1, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read redis_sync.tables");
	has_wb = SPI_processed > 0;
	SPI_finish();
	if (has_wb)
		n += rs_flush_via_worker(relid, rs_flush_timeout_ms);
	PG_RETURN_INT64(n);
}

/* redis_sync.outbox_batch, flush_timeout, debug_outbox_read_sql (from _PG_init) */
void
rs_outbox_init(void)
{
	DefineCustomBoolVariable("redis_sync.debug_outbox_read_sql",
							 "For testing only: deliveries read the outbox through SQL.",
							 "A delivery reads and locks its entries by a scan of the primary key, or runs the SELECT ... FOR UPDATE SKIP LOCKED statement when the outbox is not the extension's; this runs the statement always.",
							 &rs_debug_outbox_read_sql,
							 false,
							 PGC_SUSET,
							 GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("redis_sync.outbox_batch",
							"Outbox entries delivered per round trip.",
							NULL,
							&rs_outbox_batch,
							10000, 1, 1000000,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("redis_sync.flush_timeout",
							"Longest wait of redis_sync.flush() for the worker to drain write-behind tables.",
							NULL,
							&rs_flush_timeout_ms,
							60000, 10, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}
