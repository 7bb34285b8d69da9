/*-------------------------------------------------------------------------
 *
 * capture.c
 *		The capture trigger and the per-transaction change buffer.
 *
 * redis_sync.capture() is an AFTER ROW trigger for INSERT, UPDATE and
 * DELETE, and an AFTER STATEMENT trigger for TRUNCATE.  It sends nothing to
 * Redis: it appends what the row became to a buffer owned by the current
 * transaction, which publish.c turns into one pipelined round trip at
 * pre-commit.  Coalescing (the newest state per key wins: by the command
 * that made it, the log is not always in that order, see change.h)
 * happens there.
 *
 * Savepoints: the buffer is a log; each subtransaction remembers the log's
 * length when it started, and a rolled-back subtransaction truncates the log
 * back to it, so ROLLBACK TO SAVEPOINT discards exactly its own captures.
 *
 * Memory: each change is stored once, encoded, in an arena of blocks (the
 * layout below) with a 56-byte entry in the log (Change): about 1.1 times
 * what the change sends to Redis plus that entry, instead of a C structure,
 * a RowImage and a palloc'd string per key value, field and value (6 times
 * as much for rows of 100 bytes).  The before image, needed only for the
 * exact repair after an abort, is encoded for the first
 * RS_EXACT_REPAIR_CHANGES changes of a transaction only.
 *
 * The buffer lives in a context under TopTransactionContext and is
 * bounded by redis_sync.max_buffer_bytes, together with PostgreSQL's queue
 * of AFTER trigger events still to fire (one per changed row until the
 * capture trigger has seen it).  Past the bound the transaction overflows,
 * and everything it changes goes through redis_sync.outbox:
 * - outside subtransactions, the buffer is spilled: written to the outbox
 *   now, one entry per key (its newest change), in one multi-row INSERT per
 *   1,000 entries, versioned as of the spill, and emptied; buffering goes on, and the rest is written the same
 *   way at pre-commit (rs_capture_spill_rest());
 * - inside a subtransaction (a later ROLLBACK TO SAVEPOINT must drop the
 *   outbox rows of its own changes only), the buffer so far stays in memory
 *   (written at pre-commit, versioned as of the overflow) and every later
 *   capture is written straight to the outbox with the WAL position of its
 *   capture as version, in the current subtransaction.
 *
 * Interface: publish.c reads the buffer through rs_capture_changes() and
 * rs_capture_overflowed() and forgets it with rs_capture_reset(); the
 * write-behind drain switches off the echo of its own rows with
 * rs_capture_suppress(); rows queued after an overflow are counted with
 * publish.c's rs_publish_count_queued().
 *
 * The layout of a change in the arena is change.c's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_am_d.h"
#include "commands/trigger.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "as_owner.h"
#include "capture.h"
#include "claim.h"
#include "outbox.h"
#include "publish.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(redis_sync_capture);
PG_FUNCTION_INFO_V1(redis_sync_purge_at_commit);

static Change *rs_changes = NULL;
static int	rs_nchanges = 0;
static bool rs_overflowed = false;	/* per-row mode: captures go straight to
									 * the outbox */
static bool rs_spilled = false; /* buffered changes were written to the
								 * outbox: the rest follows at pre-commit */
static Oid	rs_suppress_relid = InvalidOid;
static const char *rs_suppress_prefix = NULL;
static uint64 rs_stat_captured = 0;

static int	max_changes = 0;
static MemoryContext buffer_cxt = NULL;
static MemoryContext scratch_cxt = NULL;	/* per-capture encoding scratch */
static MemoryContext record_cxt = NULL; /* buffered records of their own
										 * block; emptied by a spill */
static char *arena_next = NULL; /* free space of the current arena block */
static Size arena_free = 0;
static Size arena_block = 0;	/* size of the next arena block */

/*
 * The arena's blocks, in buffer_cxt, kept for the buffer's next fill after
 * a spill: freed and allocated again, the memory of the first fill was not
 * given back to the system in time to be reused for the second, and a
 * 1,000,000-row UPDATE's peak grew by 17 MB over the first fill's (issue
 * 18's memory bound).  Block i holds arena_sizes[i] bytes; arena_cur is the
 * one being filled, arena_in_use the bytes of blocks 0..arena_cur,
 * arena_total of all.
 */
static char **arena_blocks = NULL;
static Size *arena_sizes = NULL;
static int	arena_nblocks = 0;
static int	arena_maxblocks = 0;
static int	arena_cur = -1;
static Size arena_in_use = 0;
static Size arena_total = 0;
static int64 overflow_seq = 0;
static int	nbefore = 0;		/* before images encoded this transaction */
static int	last_depth = 0;		/* trigger depth of the previous capture */
static char overflow_version[RS_VERSION_LEN + 1];

/* log length at the start of each open subtransaction */
typedef struct SubxactMark
{
	SubTransactionId subid;
	int			nchanges;
	struct SubxactMark *next;
} SubxactMark;

static SubxactMark *marks = NULL;

static void check_bound(void);
static void spill(const char *version, int64 seq);

void
rs_capture_reset(void)
{
	/* memory goes with TopTransactionContext */
	rs_changes = NULL;
	rs_nchanges = 0;
	max_changes = 0;
	buffer_cxt = NULL;
	scratch_cxt = NULL;
	record_cxt = NULL;
	arena_next = NULL;
	arena_free = 0;
	arena_block = 0;
	arena_blocks = NULL;
	arena_sizes = NULL;
	arena_nblocks = 0;
	arena_maxblocks = 0;
	arena_cur = -1;
	arena_in_use = 0;
	arena_total = 0;
	rs_overflowed = false;
	rs_spilled = false;
	overflow_seq = 0;
	nbefore = 0;
	last_depth = 0;
	marks = NULL;
}

static void
capture_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	SubxactMark *m;

	switch (event)
	{
		case SUBXACT_EVENT_START_SUB:
			m = MemoryContextAlloc(TopTransactionContext, sizeof(SubxactMark));
			m->subid = mySubid;
			m->nchanges = rs_nchanges;
			m->next = marks;
			marks = m;
			break;
		case SUBXACT_EVENT_ABORT_SUB:
		case SUBXACT_EVENT_COMMIT_SUB:
			/* subtransactions end innermost first: the top mark is ours */
			while (marks && marks->subid >= mySubid)
			{
				m = marks;
				if (event == SUBXACT_EVENT_ABORT_SUB && m->subid == mySubid &&
					m->nchanges < rs_nchanges)
					rs_nchanges = m->nchanges;
				marks = m->next;
				pfree(m);
			}
			break;
		default:
			break;
	}
}

static void
ensure_buffer(void)
{
	if (buffer_cxt == NULL)
	{
		buffer_cxt = AllocSetContextCreate(TopTransactionContext,
										   "redis_sync change buffer",
										   ALLOCSET_DEFAULT_SIZES);
		record_cxt = AllocSetContextCreate(buffer_cxt,
										   "redis_sync change buffer records",
										   ALLOCSET_SMALL_SIZES);
		max_changes = 64;
		rs_changes = MemoryContextAlloc(buffer_cxt, sizeof(Change) * max_changes);
		arena_block = 4096;
		arena_maxblocks = 16;
		arena_blocks = MemoryContextAlloc(buffer_cxt, sizeof(char *) * arena_maxblocks);
		arena_sizes = MemoryContextAlloc(buffer_cxt, sizeof(Size) * arena_maxblocks);
		arena_nblocks = 0;
		arena_cur = -1;
		arena_in_use = 0;
		arena_total = 0;
	}
}

#define INDEX_GROWTH_MAX ((int) (1024 * 1024 / sizeof(Change)))

static Change *
new_change(void)
{
	ensure_buffer();
	if (rs_nchanges == max_changes)
	{
		/* doubling, then 1 MB at a time: the bound is checked between */
		max_changes += Min(max_changes, INDEX_GROWTH_MAX);
		rs_changes = repalloc_huge(rs_changes, sizeof(Change) * max_changes);
	}
	return &rs_changes[rs_nchanges++];
}

/* size bytes of the arena: blocks of 4 kB doubling to 1 MB, never moved */
#define ARENA_BLOCK_MAX (1024 * 1024)

static char *
arena_alloc(Size size)
{
	char	   *p;

	ensure_buffer();
	if (size > arena_free && size > arena_block / 4)
	{
		/* a large record gets its own block; the current one stays in use */
		return MemoryContextAllocHuge(record_cxt, size);
	}
	while (size > arena_free)
	{
		/* the next block: one kept from before a spill, or a new one */
		if (arena_cur + 1 == arena_nblocks)
		{
			if (arena_nblocks == arena_maxblocks)
			{
				arena_maxblocks *= 2;
				arena_blocks = repalloc(arena_blocks, sizeof(char *) * arena_maxblocks);
				arena_sizes = repalloc(arena_sizes, sizeof(Size) * arena_maxblocks);
			}
			arena_blocks[arena_nblocks] = MemoryContextAlloc(buffer_cxt, arena_block);
			arena_sizes[arena_nblocks++] = arena_block;
			arena_total += arena_block;
			arena_block = Min(arena_block * 2, ARENA_BLOCK_MAX);
		}
		arena_cur++;
		arena_next = arena_blocks[arena_cur];
		arena_free = arena_sizes[arena_cur];
		arena_in_use += arena_sizes[arena_cur];
	}
	p = arena_next;
	arena_next += size;
	arena_free -= size;
	return p;
}

static void
fill_common(Change *c, SyncConfig *cfg)
{
	c->root_relid = cfg->root_relid;
	c->policy = cfg->policy;
	c->strict = cfg->strict;
	c->async = cfg->async;
	c->ttl_ms = cfg->ttl_ms;
	c->cfg = cfg;
}

/*
 * The command that made tup (made: an INSERT's or UPDATE's new tuple), or
 * that deleted it.  The change log is not in command order: an AFTER
 * trigger that changes the row again runs a nested statement whose own
 * AFTER events (this capture of the newer row version) fire at its end,
 * before the capture of the outer event, and coalescing must keep the newer
 * version (rs_change_newer).  The tuple is the one in the table (the
 * trigger fetched it by its TID), made or deleted by this transaction: its
 * command ids are ours, a combo command id (the tuple was made and then
 * updated or deleted again in this transaction) resolves through the
 * backend's combo id map.  A tuple of another table access method is a
 * copy whose header says nothing (a formed tuple's datum length lies where
 * a heap tuple's xmin does): the command current at capture stands in for
 * it, which keeps the log order (no better than before) for such rows.
 */
static CommandId
change_command(Relation rel, HeapTuple tup, bool made)
{
	HeapTupleHeader h = tup->t_data;

	if (rel->rd_rel->relam == HEAP_TABLE_AM_OID && h != NULL &&
		!(h->t_infomask & HEAP_MOVED))
	{
		if (made && TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetRawXmin(h)))
			return HeapTupleHeaderGetCmin(h);
		if (!made && !(h->t_infomask & HEAP_XMAX_INVALID) &&
			!HEAP_XMAX_IS_LOCKED_ONLY(h->t_infomask) &&
			TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetUpdateXid(h)))
			return HeapTupleHeaderGetCmax(h);
	}
	return GetCurrentCommandId(false);
}

/* one row change: key becomes newtup (NULL: deleted); oldtup is the row before */
static void
capture_row(SyncConfig *cfg, Relation rel, HeapTuple keytup, HeapTuple newtup,
			HeapTuple oldtup)
{
	TupleDesc	td = RelationGetDescr(rel);
	MemoryContext old;
	Change		tmp;
	char	   *key;
	RowImage	after;
	RowImage	before;
	char		before_tag = 'N';
	Size		keylen;
	Size		size;
	char	   *rec;
	char	   *p;

	rs_stat_captured++;
	rs_stats_add(cfg->root_relid, RS_C_CAPTURED, 1);
	memset(&tmp, 0, sizeof(tmp));
	tmp.kind = RS_CHANGE_ROW;
	fill_common(&tmp, cfg);
	tmp.row_relid = RelationGetRelid(rel);
	tmp.row_node = rel->rd_node.relNode;
	tmp.row_tid = (newtup ? newtup : keytup)->t_self;
	tmp.deletes = newtup == NULL;
	tmp.cid = change_command(rel, newtup ? newtup : keytup, newtup != NULL);

	/* encode in the scratch context, then store the result once, compactly */
	if (scratch_cxt == NULL)
		scratch_cxt = AllocSetContextCreate(TopTransactionContext,
											"redis_sync capture scratch",
											ALLOCSET_DEFAULT_SIZES);
	MemoryContextReset(scratch_cxt);
	old = MemoryContextSwitchTo(scratch_cxt);

	/*
	 * The state before, to restore if the push outlives the transaction.
	 * Encoded now, with the descriptor and configuration the tuple belongs
	 * to: an ALTER TABLE later in the transaction may change both.  Large
	 * transactions are repaired through the worker instead (publish.c).
	 * Changes queued straight to the outbox need none.
	 */
	if (!rs_overflowed && !rs_spilled && oldtup &&
		cfg->policy == RS_POLICY_WRITE_THROUGH && !cfg->async)
	{
		if (nbefore < RS_EXACT_REPAIR_CHANGES)
		{
			before_tag = 'B';
			nbefore++;
		}
		else
			before_tag = 'K';
	}
	key = rs_encode_change(cfg, td, keytup, newtup, &after,
						   oldtup, before_tag == 'B' ? &before : NULL);
	keylen = strlen(key) + 1;
	size = keylen + rs_change_image_size(&after) + 1 + (before_tag == 'B' ? rs_change_image_size(&before) : 0);
	rec = rs_overflowed ? palloc(size) : arena_alloc(size);
	memcpy(rec, key, keylen);
	p = rs_change_image_write(rec + keylen, &after);
	*p++ = before_tag;
	if (before_tag == 'B')
		p = rs_change_image_write(p, &before);
	Assert(p == rec + size);
	tmp.key = rec;

	if (rs_overflowed)
	{
		char		version[RS_VERSION_LEN + 1];

		/*
		 * Straight to the outbox, in the current subtransaction.  The row is
		 * locked by now, so the WAL position is already newer than every
		 * committed write of it, and older than any later one (which waits
		 * for our commit): a valid version, without waiting for pre-commit.
		 */
		rs_version_now(version);
		rs_outbox_write_changes(&tmp, 1, version, ++overflow_seq);
		MemoryContextSwitchTo(old);
		MemoryContextReset(scratch_cxt);
		rs_publish_count_queued(1);
		rs_stats_add(cfg->root_relid, RS_C_QUEUED, 1);
		return;
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(scratch_cxt);
	*new_change() = tmp;

	check_bound();
}

void
rs_capture_row_gone(SyncConfig *cfg, Relation rel, HeapTuple tup)
{
	capture_row(cfg, rel, tup, NULL, tup);
}

/*
 * Bytes of PostgreSQL's queue of AFTER trigger events still to fire (every
 * captured row has one until it fires; fired chunks are freed).
 */
static Size
trigger_queue_bytes(void)
{
	for (MemoryContext c = TopTransactionContext->firstchild; c != NULL; c = c->nextchild)
		if (strcmp(c->name, "AfterTriggerEvents") == 0)
			return MemoryContextMemAllocated(c, false);
	return 0;
}

/* pg_trigger_depth(): how many triggers this capture runs nested in */
static int
trigger_depth(void)
{
	LOCAL_FCINFO(fcinfo, 0);

	InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
	return DatumGetInt32(pg_trigger_depth(fcinfo));
}

/*
 * What the buffer really holds, allocation overhead included; after a spill,
 * less the arena blocks and change log entries kept for reuse and not
 * filled again yet.
 */
static Size
buffer_held(void)
{
	Size		held;

	if (buffer_cxt == NULL)
		return 0;
	held = MemoryContextMemAllocated(buffer_cxt, true);
	if (rs_spilled)
	{
		Size		kept = sizeof(Change) * (Size) (max_changes - rs_nchanges) +
		(arena_total - arena_in_use);

		held = held > kept ? held - kept : 0;
	}
	return held;
}

/*
 * Keep the buffer, and the trigger events that will fill it, within
 * redis_sync.max_buffer_bytes.  Past the bound (and once the buffer holds an
 * eighth of it, so a large queue alone does not spill change by change):
 * outside subtransactions the buffer is written to the outbox now and
 * emptied (spill); inside one, where a later ROLLBACK TO SAVEPOINT must
 * still drop outbox rows of its own changes only, the buffer stays and
 * later changes go straight to the outbox (per-row mode).
 *
 * A spill waits while this capture runs inside another trigger (in a
 * statement a trigger ran: depth 2 or more), as long as the buffer alone
 * stays within the bound: the capture of the outer event that fired that
 * trigger is still to come, with an older row version than the nested
 * statement's (rs_change_newer).  In the same spill the newer version wins
 * the key; spilled apart, the older one would be written later, with a
 * newer version, and win.  Past the bound too, a spill waits while the
 * captures go deeper (this one runs nested deeper than the previous one):
 * when the whole statement runs in a trigger (of an unsynced table, say),
 * every capture is at depth 2 or more, and the depth alone does not tell a
 * nested statement's capture from the outer rows'.  A spill then comes at
 * the next capture that is not deeper, at most one per level of nesting
 * later.  Per-row mode waits the same way: a trigger with an exception
 * block runs its statement in a subtransaction, and the outer row's
 * capture, outside it, spills both versions together instead.
 */
static void
check_bound(void)
{
	Size		bound = (Size) rs_max_buffer_kb * 1024;

	/* what the buffer holds now (buffer_held) */
	Size		held = buffer_held();
	Size		queue;
	int			depth = trigger_depth();
	bool		deeper = depth > last_depth;

	last_depth = depth;
	if (held < bound / 8)
		return;
	queue = trigger_queue_bytes();
	if (held + queue <= bound)
		return;
	if (deeper || (held <= bound && depth > 1))
		return;
	if (marks == NULL)
	{
		char		version[RS_VERSION_LEN + 1];

		/* every buffered change precedes this point: this version is valid */
		rs_version_now(version);
		spill(version, ++overflow_seq);
		rs_spilled = true;
	}
	else
	{
		/*
		 * The buffered changes all precede this point: they get the version
		 * just below it.  Not this version itself: the changes queued from
		 * now on take the WAL position of their capture, and with nothing
		 * written to WAL in between (an unlogged table) the first of them had
		 * this very version; the fence applies equal versions, so a buffered
		 * change of the same key, delivered after it, would have replaced the
		 * newer value.  Every committed write of the buffered rows is older
		 * still (its commit record lies between).
		 */
		rs_overflowed = true;
		rs_version_now(overflow_version);
		rs_version_decrement(overflow_version);
	}
}

/* the change at position i of a spill, oldest first (bytime when sorted) */
#define SPILL_CHANGE(i) (bytime ? bytime[(i)] : &rs_changes[(i)])

/* the key of the spill's change at pos (rs_key_index_slot; arg: bytime) */
static const char *
spill_key_of(void *arg, int32 pos)
{
	Change	  **bytime = arg;

	return SPILL_CHANGE(pos)->key;
}

/* a spill writes its entries to the outbox this many at a time */
#define SPILL_SLICE 1000

static void
spill_slice_flush(Change **slice, int *nslice, const char *version, int64 seq)
{
	if (*nslice == 0)
		return;
	rs_outbox_write(slice, *nslice, version, seq);
	for (int i = 0; i < *nslice; i++)
		rs_stats_add(slice[i]->root_relid, RS_C_QUEUED, 1);
	rs_publish_count_queued(*nslice);
	*nslice = 0;
}

static void
spill_slice_add(Change **slice, int *nslice, Change *c, const char *version, int64 seq)
{
	slice[(*nslice)++] = c;
	if (*nslice == SPILL_SLICE)
		spill_slice_flush(slice, nslice, version, seq);
}

/*
 * Write the buffered changes to the outbox, in the current transaction, and
 * empty the buffer.  One entry per key, its newest change (rs_change_newer):
 * the entries of a spill share version and seq, and two deliverers (the
 * worker, a flush()) taking two entries of one key apiece could land the
 * older last, the fence applying equal versions.  Purges go first, as at
 * pre-commit (delivery applies a batch's purges before its other entries),
 * and a change older than a purge of its table is dropped: with an equal
 * version the purge's tombstone would not keep it out.  Not the key moves
 * of coalescing (publish.c): a row that took a key another row of this
 * transaction left later leaves it deleted, missing from the cache.
 */
static void
spill(const char *version, int64 seq)
{
	MemoryContext old;
	Change	  **bytime;
	int		   *purge_at;
	int			npurged = 0;
	Change	   *slice[SPILL_SLICE];
	int			nslice = 0;
	RsKeyIndex	seen;

	if (rs_nchanges == 0)
		return;
	if (!rs_outbox_exists())
	{
		/* DROP EXTENSION earlier in this transaction: nothing to queue into */
		ereport(WARNING,
				(errmsg("redis_sync was dropped in this transaction: %d queued changes are discarded", rs_nchanges),
				 errdetail("The cached keys they were for may be stale.")));
	}
	else
	{
		if (scratch_cxt == NULL)
			scratch_cxt = AllocSetContextCreate(TopTransactionContext,
												"redis_sync capture scratch",
												ALLOCSET_DEFAULT_SIZES);
		old = MemoryContextSwitchTo(scratch_cxt);

		/*
		 * Oldest first: log order unless a trigger's statement came between
		 * (then sorted into bytime; in log order the buffer is read as it is:
		 * a spill comes with the buffer full, and every array of one entry
		 * per change adds to the memory it holds).
		 */
		bytime = NULL;
		for (int i = 0; i < rs_nchanges; i++)
		{
			if (rs_changes[i].kind == RS_CHANGE_PURGE)
				npurged++;
			if (i > 0 && bytime == NULL && rs_change_newer(&rs_changes[i - 1], &rs_changes[i]))
			{
				bytime = palloc_extended(sizeof(Change *) * rs_nchanges, MCXT_ALLOC_HUGE);
				for (int j = 0; j < rs_nchanges; j++)
					bytime[j] = &rs_changes[j];
				qsort(bytime, rs_nchanges, sizeof(Change *), rs_change_cmp_age);
			}
		}
		purge_at = palloc(sizeof(int) * Max(npurged, 1));
		npurged = 0;
		for (int i = 0; i < rs_nchanges; i++)
			if (SPILL_CHANGE(i)->kind == RS_CHANGE_PURGE)
				purge_at[npurged++] = i;

		/* the purges first, oldest first */
		for (int p = 0; p < npurged; p++)
			spill_slice_add(slice, &nslice, SPILL_CHANGE(purge_at[p]), version, seq);

		/*
		 * Then the rows, newest first: a key's first change is its newest,
		 * and a change older than a purge of its table is dropped.  Written a
		 * slice at a time, without an array of the whole spill.
		 */
		rs_key_index_init(&seen, rs_nchanges);
		for (int i = rs_nchanges - 1; i >= 0; i--)
		{
			Change	   *c = SPILL_CHANGE(i);
			bool		dropped = false;
			int32	   *slot;

			if (c->kind == RS_CHANGE_PURGE)
				continue;
			for (int p = npurged - 1; p >= 0 && purge_at[p] > i && !dropped; p--)
				dropped = SPILL_CHANGE(purge_at[p])->root_relid == c->root_relid;
			if (dropped)
				continue;
			slot = rs_key_index_slot(&seen, c->key, spill_key_of, bytime);
			if (*slot < 0)
			{
				*slot = i;
				spill_slice_add(slice, &nslice, c, version, seq);
			}
		}
		spill_slice_flush(slice, &nslice, version, seq);
		MemoryContextSwitchTo(old);
		MemoryContextReset(scratch_cxt);
	}
	/* the change log and the arena's blocks are kept for the next fill */
	rs_nchanges = 0;
	if (record_cxt != NULL)
		MemoryContextReset(record_cxt);
	arena_cur = -1;
	arena_next = NULL;
	arena_free = 0;
	arena_in_use = 0;
}

/*
 * Pre-commit of a transaction that outgrew its buffer (publish.c): the rest
 * of the buffer goes to the outbox as it was logged.  In per-row mode it
 * precedes every change queued since, so it takes the version of the moment
 * per-row mode began; after spills only, a version of now.
 */
void
rs_capture_spill_rest(void)
{
	char		version[RS_VERSION_LEN + 1];

	if (rs_overflowed)
		spill(overflow_version, 0);
	else
	{
		rs_version_now(version);
		spill(version, ++overflow_seq);
	}
}

Change *
rs_capture_changes(int *n)
{
	*n = rs_nchanges;
	return rs_changes;
}

uint64
rs_capture_count(void)
{
	return rs_stat_captured;
}

bool
rs_capture_overflowed(void)
{
	return rs_overflowed || rs_spilled;
}

void
rs_capture_suppress(Oid relid, const char *prefix)
{
	rs_suppress_relid = relid;
	rs_suppress_prefix = prefix;
}

const char *
rs_capture_overflow_version(void)
{
	return overflow_version;
}

/*
 * Queue a purge of prefix: of every key under it (fields_of NULL), or of the
 * fields of fields_of's columns only (RS_OP_FIELDS).
 */
static void
capture_purge(Oid relid, const char *prefix, bool strict, bool async, SyncConfig *fields_of)
{
	Change		tmp;
	Change	   *c;

	memset(&tmp, 0, sizeof(tmp));
	tmp.kind = RS_CHANGE_PURGE;
	tmp.root_relid = relid;
	tmp.policy = RS_POLICY_WRITE_THROUGH;
	tmp.strict = strict;
	tmp.async = async;
	tmp.key = (char *) prefix;
	tmp.cfg = fields_of;

	/*
	 * The command current now, at or after the TRUNCATE's (or the purge
	 * call's): it drops every change older, and changes made by triggers that
	 * the TRUNCATE fired before this one (the names sort before
	 * redis_sync_truncate): their keys go missing from the cache, never
	 * stale.
	 */
	tmp.cid = GetCurrentCommandId(false);
	if (rs_overflowed)
	{
		char		version[RS_VERSION_LEN + 1];

		/* keep the order: after an overflow everything goes to the outbox */
		rs_version_now(version);
		rs_outbox_write_changes(&tmp, 1, version, ++overflow_seq);
		return;
	}
	c = new_change();
	*c = tmp;
	c->key = MemoryContextStrdup(record_cxt, prefix);
}

void
rs_capture_purge(Oid relid, const char *prefix, bool strict, bool async)
{
	capture_purge(relid, prefix, strict, async, NULL);
}

/*
 * A TRUNCATE removes what the table's write-through policy owns.  When its
 * hashes hold the fields of the table's write-behind policy too (the same
 * prefix, wb_shared), those are Redis's newer data, which a TRUNCATE of a
 * write-behind table leaves alone: only the write-through fields go
 * (HDEL, fenced with the purge's version, fence.c), and the write-behind
 * fields, the keys only the application wrote and the dirty set stay for
 * the drain.  The configuration is kept until transaction end (config.c).
 */
void
rs_capture_truncate(SyncConfig *cfg)
{
	capture_purge(cfg->root_relid, cfg->prefix, cfg->strict, cfg->async,
				  cfg->wb_shared ? cfg : NULL);
}

/*
 * The prefix of a purge this transaction holds for the worker to deliver
 * (async, still buffered) that overlaps prefix, or NULL.  Purges already
 * spilled are in the outbox table.
 */
const char *
rs_capture_purge_buffered(const char *prefix)
{
	size_t		plen = strlen(prefix);

	for (int i = 0; i < rs_nchanges; i++)
	{
		Change	   *c = &rs_changes[i];
		size_t		klen;

		if (c->kind != RS_CHANGE_PURGE || !c->async || c->key == NULL)
			continue;
		klen = strlen(c->key);
		if (strncmp(c->key, prefix, Min(klen, plen)) == 0)
			return c->key;
	}
	return NULL;
}

/*
 * redis_sync.capture(): the trigger.  With one argument (a root table OID)
 * it is the BEFORE TRUNCATE guard on partitions of a synced table.
 */
Datum
redis_sync_capture(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	SyncConfig *cfg;
	TriggerEvent ev;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("redis_sync.capture() must be called as a trigger")));
	rel = td->tg_relation;
	ev = td->tg_event;

	if (td->tg_trigger->tgnargs == 1)
	{
		Oid			root;

		/*
		 * The argument is the synced table's OID when the guard was made; a
		 * restored dump gives the table another one.  The configuration of a
		 * partition is its root's: not synced (detached, unsynced) means the
		 * guard is stale and guards nothing.
		 */
		cfg = rs_config_get(RelationGetRelid(rel));
		if (!rel->rd_rel->relispartition || !cfg->synced)
			return PointerGetDatum(NULL);
		root = cfg->root_relid;

		/*
		 * TRUNCATE of the partitioned table truncates its partitions too,
		 * holding the table's AccessExclusiveLock; the table's own trigger
		 * purges every key.  Alone, a partition cannot be truncated.
		 */
		if (CheckRelationOidLockedByMe(root, AccessExclusiveLock, false))
		{
			cfg = rs_config_get(root);
			if (cfg->synced)
				rs_capture_truncate(cfg);
			return PointerGetDatum(NULL);
		}
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot truncate partition \"%s\" of synced table \"%s\"",
						RelationGetRelationName(rel), get_rel_name(root)),
				 errdetail("redis_sync cannot tell which cached keys belong to one partition."),
				 errhint("TRUNCATE the partitioned table, or DELETE the partition's rows.")));
	}

	if (!TRIGGER_FIRED_AFTER(ev))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("redis_sync.capture() must be an AFTER trigger")));

	cfg = rs_config_get(RelationGetRelid(rel));
	if (!cfg->synced)
		return PointerGetDatum(NULL);

	/* a write-behind drain's own rows: no echo over the keys they came from */
	if (OidIsValid(rs_suppress_relid) && cfg->root_relid == rs_suppress_relid &&
		strcmp(cfg->prefix, rs_suppress_prefix) == 0)
		return PointerGetDatum(NULL);

	if (TRIGGER_FIRED_BY_TRUNCATE(ev))
	{
		rs_capture_truncate(cfg);
		return PointerGetDatum(NULL);
	}
	if (!TRIGGER_FIRED_FOR_ROW(ev))
		return PointerGetDatum(NULL);

	if (TRIGGER_FIRED_BY_INSERT(ev))
		capture_row(cfg, rel, td->tg_trigtuple, td->tg_trigtuple, NULL);
	else if (TRIGGER_FIRED_BY_DELETE(ev))
		capture_row(cfg, rel, td->tg_trigtuple, NULL, td->tg_trigtuple);
	else if (TRIGGER_FIRED_BY_UPDATE(ev))
	{
		HeapTuple	oldtup = td->tg_trigtuple;
		HeapTuple	newtup = td->tg_newtuple;

		if (rs_key_changed(cfg, RelationGetDescr(rel), oldtup, newtup))
		{
			capture_row(cfg, rel, oldtup, NULL, oldtup);
			capture_row(cfg, rel, newtup, newtup, NULL);
		}
		else if (rs_synced_columns_changed(cfg, RelationGetDescr(rel), oldtup, newtup))
			capture_row(cfg, rel, newtup, newtup, oldtup);
	}
	return PointerGetDatum(NULL);
}

/* redis_sync._purge_at_commit(tbl, prefix) */
Datum
redis_sync_purge_at_commit(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *prefix = text_to_cstring(PG_GETARG_TEXT_PP(1));

	rs_require_owner(relid);	/* as_owner.c */
	rs_claim_check_purge(relid, prefix);	/* claim.c: the table's own prefix
											 * only */
	rs_capture_purge(relid, prefix, false, false);
	PG_RETURN_VOID();
}

int			rs_max_buffer_kb = 65536;	/* redis_sync.max_buffer_bytes */

/* the buffer's setting and the savepoint callback (from _PG_init) */
void
rs_capture_init(void)
{
	DefineCustomIntVariable("redis_sync.max_buffer_bytes",
							"Memory one transaction may use to buffer changes before it overflows to the outbox.",
							NULL,
							&rs_max_buffer_kb,
							65536, 64, MAX_KILOBYTES,
							PGC_USERSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	RegisterSubXactCallback(capture_subxact_callback, NULL);
}
