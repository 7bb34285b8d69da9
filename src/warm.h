/*-------------------------------------------------------------------------
 *
 * warm.h
 *		Writing the table's rows to Redis: warm, background warm, resync,
 *		repair.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_WARM_H
#define RS_WARM_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "access/htup.h"
#include "access/tupdesc.h"
#include "utils/elog.h"
#include "utils/relcache.h"

#include "config.h"
#include "fence.h"

/*
 * keys == NIL: fill the cache with every row of a write-through table,
 * without row locks, writing only keys Redis does not have (see warm.c);
 * returns the rows read.  Otherwise push the current state of the rows
 * named by keys (a List of (redis key, List of key-value strings) pairs; a
 * missing row becomes a fenced delete), each batch read FOR SHARE in a
 * subtransaction that is rolled back after the push; returns the keys
 * pushed.  Write-through and invalidate tables.  A key Redis refuses (out
 * of memory, a string where a hash is expected) is an ERROR, except in
 * rs_push_current_populate (get()'s populate, one row), which leaves it a
 * miss, and in rs_push_current_settled (the refresh after a Redis restart),
 * where only a refusal for memory is (others are a WARNING).
 */
extern int64 rs_push_current(Oid relid, List *keys, int batch_size);

/* whether the current transaction has written relid or a partition of it */
extern bool rs_xact_wrote_table(Oid relid);

/* ERROR when the current transaction has written relid (warm(), resync()) */
extern void rs_check_no_own_writes(Oid relid, const char *what);
extern int64 rs_push_current_populate(Oid relid, List *keys);
extern int64 rs_push_current_settled(Oid relid, List *keys, int batch_size);

/*
 * The worker after a Redis restart: push again every cached key of the
 * write-through and invalidate tables tabs[0 .. ntabs-1] (relid set by the
 * caller), in one SCAN pass of Redis.  Each table's part of a page runs in a
 * subtransaction of its own, its parts together bounded by timeout_ms
 * (redis_sync.warm_timeout): a table that fails is left out for the rest of
 * the pass, with its failure in error (in the caller's memory context) and
 * timed_out set when the timeout cancelled it; the others go on.  A failure
 * to reach Redis raises the ERROR.  n: the keys pushed or deleted, -1 when
 * the table is skipped (also write-behind over the same hashes, or row-level
 * security applies to its owner).
 */
typedef struct RsRefresh
{
	Oid			relid;
	int64		n;
	ErrorData  *error;
	bool		timed_out;
} RsRefresh;

/*
 * How far a pass got that failed as a whole (Redis stopped answering), so
 * that the next attempt over the same tables takes it up after the last
 * page whose keys were all pushed, not from the beginning: the tables of
 * the pass and their prefixes (NULL: not refreshed), each table's keys
 * pushed and time spent so far, whether its own part failed, and the scan's
 * position.  The caller's, in cxt (memory that outlives the attempt);
 * ntabs 0: nothing to take up.
 */
typedef struct RsRefreshResume
{
	MemoryContext cxt;
	int			ntabs;
	Oid		   *relids;
	char	  **prefix;
	int64	   *n;
	int64	   *spent_us;
	bool	   *failed;
	RsScanPos	pos;
} RsRefreshResume;

extern void rs_refresh_cached_keys(RsRefresh *tabs, int ntabs, int timeout_ms,
								   RsRefreshResume *resume);
extern void rs_refresh_resume_reset(RsRefreshResume *resume);

/*
 * What the cache holds for a table: cfg itself, or for an invalidate table
 * (which pushes only deletes) a copy describing the hash of all its current
 * columns that get() caches.
 */
extern SyncConfig *rs_cache_config(SyncConfig *cfg);

/* repair the rows named by an in-flight marker value (JSON) */
extern int64 rs_repair_marker(const char *json);

/*
 * Worker: fill batches of the queued background warms for a bounded time,
 * one transaction per batch; sets the worker's latch when more is queued.
 * Returns whether it warmed a batch (look again next round).
 * Errors are recorded in the queue entry (retried with backoff), not
 * thrown.
 */
extern bool rs_warm_round(void);

/* relid synced write-through anew: forget its (and its partitions') finished warms */
extern void rs_warm_queue_forget(Oid relid);

/*
 * redis_sync.warm_timeout: longest time one batch of a background warm may
 * run in the worker (the table's code: policies, types, lock waits).
 * rs_warm_init() defines it (from _PG_init).
 */
extern int	rs_warm_timeout_ms;
extern void rs_warm_init(void);

/*
 * Filling, for warm_queue.c: a cursor over the table in key order, filled
 * batch by batch without row locks (see warm.c); rs_fill_table fills every
 * row and returns the rows read, *written the keys written.
 */
/* where a fill is, and what it needs to read the next batch */
typedef struct FillCursor
{
	Oid			relid;
	SyncConfig *enc;
	char	   *qrel;			/* quoted, qualified table name */
	char	   *kl;				/* quoted key columns, comma separated */
	List	   *last;			/* key values (text) of the last row read, NIL
								 * at the start */
	int64		rows;			/* rows read so far */
	int64		written;		/* keys written so far (filled or pushed
								 * locked) */
	bool		settle;			/* most keys are found half there: push the
								 * batches settled (rs_fill_next_batch) */
	int			settled;		/* batches settled since the last filled */
} FillCursor;

extern void rs_fill_cursor_init(FillCursor *fc, Oid relid, SyncConfig *cfg, List *last);
extern int64 rs_fill_next_batch(FillCursor *fc, Relation rel, int batch_size);
extern int64 rs_fill_table(Oid relid, int batch_size, int64 *written);

/*
 * Shared by warm.c and warm_push.c: the quoted key columns, comma
 * separated; a row read as a composite (SPI column 1) as a heap tuple of
 * relid; and pushing named rows (warm_push.c), locked (FOR SHARE batches)
 * or settled (version first, then the writers waited for, no row locks);
 * a key Redis refuses for memory is an ERROR, another refusal a WARNING.
 */
extern char *rs_warm_key_list(SyncConfig *cfg);
extern void rs_row_from_composite(HeapTuple spitup, TupleDesc spidesc, Oid relid,
								  HeapTupleData *tup);
extern int64 rs_push_named(Oid relid, List *keys, int batch_size, bool locked);

/* whether a transaction holds a write lock on the table (or a partition) */
extern bool rs_table_has_writers(Oid relid);

#endif							/* RS_WARM_H */
