/*-------------------------------------------------------------------------
 *
 * warm_queue.c
 *		Background warms and the warm() entry point: the queue
 *		redis_sync._warm_queue, _warm_schedule(), the worker's warm round.
 *		The filling itself (how a batch of rows is written without row
 *		locks) is warm.c's.
 *
 * Background warms: write_through() calls _warm_schedule(), which records
 * the table in redis_sync._warm_queue (shown by the view
 * redis_sync.warming) and wakes the worker at commit.  Each worker round
 * calls rs_warm_round(), which fills batches of the oldest queued table,
 * one transaction per batch, for a bounded time, keeping the position (the
 * last key) in the queue row so that a restart resumes where it stopped.
 * The batches run as the table's owner, in restricted mode, with a fixed
 * search_path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "allowlist.h"
#include "as_owner.h"
#include "drain.h"
#include "encode.h"
#include "shmem.h"
#include "warm.h"
#include "xact_step.h"

PG_FUNCTION_INFO_V1(redis_sync_warm);
PG_FUNCTION_INFO_V1(redis_sync_warm_schedule);
PG_FUNCTION_INFO_V1(redis_sync_unsynced_note);
PG_FUNCTION_INFO_V1(redis_sync_unsynced_claim);

/* rows per batch of a background warm */
#define WARM_BATCH 10000
/* a worker round spends at most this long warming before it looks at the outbox again */
#define WARM_ROUND_MS 250
/* after a failed batch, the entry waits at most this long before it is retried */
#define WARM_RETRY_MAX_MS 60000

int			rs_warm_timeout_ms = 60000;

static bool wake_at_commit = false;
static bool xact_callback_registered = false;

/* ---------------------------------------------------------------------
 * Background warms
 * ---------------------------------------------------------------------
 */

static void
warm_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && wake_at_commit)
		rs_worker_request_warm();
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		wake_at_commit = false;
}

/* false while the installed SQL objects predate the queue (0.1, not yet updated) */
static bool
queue_exists(void)
{
	Oid			nsp = get_namespace_oid("redis_sync", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("_warm_queue", nsp));
}

/*
 * run sql with the bootstrap superuser's rights (the queue is not writable
 * by others), restricted and with search_path pg_catalog, pg_temp so the
 * caller's operators never resolve in it (as_owner.c)
 */
static void
queue_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls)
{
	(void) rs_exec_as_superuser(sql, nargs, types, values, nulls, 0,
								"update redis_sync._warm_queue");
}

/*
 * Table relid is synced write-through anew (_config_write, holding its
 * lock): the finished warms of an earlier sync, of the table and of its
 * partitions (queued under their own relid, attached then), are over;
 * before, a partition's showed in redis_sync.warming again.  Only finished
 * rows: an unfinished one may be the worker's, which holds the table's
 * lock while it updates it.  The partitions are listed without locks (the
 * root's lock is held; locking them here, before anything locks the root,
 * as pg_partition_tree() does, would invert the order of TRUNCATE or
 * DETACH, which lock the root first).
 */
void
rs_warm_queue_forget(Oid relid)
{
	Oid			types[1] = {OIDARRAYOID};
	Datum		values[1];

	if (!queue_exists())
		return;
	values[0] = PointerGetDatum(rs_oid_array(find_all_inheritors(relid, NoLock, NULL)));
	queue_exec("DELETE FROM redis_sync._warm_queue q "
			   " WHERE q.finished_at IS NOT NULL "
			   "   AND q.relid::pg_catalog.oid = ANY ($1)",
			   1, types, values, NULL);
}

/*
 * _warm_schedule(tbl regclass, run boolean, repair boolean) RETURNS boolean:
 * queue a background warm of a write-through table (false: the table is
 * empty, nothing queued).  run = false cancels a queued warm instead.
 *
 * repair = true (an unsync without purge left keys under the table's prefix,
 * _unsynced_claim()) queues a repair instead, even of an empty table and
 * with run = false: the worker runs resync(), which rewrites the keys that
 * differ from their row and deletes those without one; a fill would keep
 * them.  A queued repair not yet finished is neither cancelled nor turned
 * into a fill by a later call.
 */
Datum
redis_sync_warm_schedule(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	Oid			types2[2] = {OIDOID, BOOLOID};
	Datum		values2[2];
	char	   *qrel;
	char	   *sql;
	bool		run = PG_GETARG_BOOL(1);
	bool		repair = PG_NARGS() > 2 && PG_GETARG_BOOL(2);
	bool		has_rows = false;
	bool		isnull;

	if (get_rel_name(relid) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (!pg_class_ownercheck(relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s", get_rel_name(relid))));

	/* an empty table has nothing to warm (its writers push every row) */
	qrel = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
	sql = psprintf("SELECT EXISTS (SELECT FROM %s)", qrel);
	if (repair)
		has_rows = true;		/* stale keys to delete even without rows */
	else if (run)
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "redis_sync: SPI_connect failed");
		if (SPI_execute(sql, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "redis_sync: could not read table %s", qrel);
		has_rows = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		SPI_finish();
	}
	if (!has_rows)
	{
		queue_exec("DELETE FROM redis_sync._warm_queue "
				   " WHERE relid = $1 AND NOT (repair AND finished_at IS NULL)",
				   1, types, values, NULL);
		PG_RETURN_BOOL(false);
	}

	/*
	 * A new request starts over, except that a retry still waited for (after
	 * a failed batch; one that ran into warm_timeout waits longest) stays:
	 * calling write_through() again must not make the worker run a blocking
	 * table's code again at once.
	 */
	values2[0] = values[0];
	values2[1] = BoolGetDatum(repair);
	queue_exec("INSERT INTO redis_sync._warm_queue AS q (relid, requested_at, repair, rows_estimate) "
			   "SELECT $1, pg_catalog.clock_timestamp(), $2, "
			   "       (SELECT pg_catalog.sum(c.reltuples) FILTER (WHERE c.reltuples > 0)::bigint "
			   "          FROM pg_catalog.pg_class c "
			   "         WHERE c.oid = $1 "
			   "            OR c.oid IN (SELECT p.relid FROM pg_catalog.pg_partition_tree($1) p)) "
			   "ON CONFLICT (relid) DO UPDATE SET "
			   "  requested_at = EXCLUDED.requested_at, rows_estimate = EXCLUDED.rows_estimate, "
			   "  repair = EXCLUDED.repair OR (q.repair AND q.finished_at IS NULL), "
			   "  started_at = NULL, finished_at = NULL, rows_done = 0, keys_filled = 0, "
			   "  last_key = NULL, "
			   "  attempts = CASE WHEN q.retry_at > pg_catalog.clock_timestamp() THEN q.attempts ELSE 0 END, "
			   "  last_error = CASE WHEN q.retry_at > pg_catalog.clock_timestamp() THEN q.last_error END, "
			   "  last_error_at = CASE WHEN q.retry_at > pg_catalog.clock_timestamp() THEN q.last_error_at END, "
			   "  retry_at = CASE WHEN q.retry_at > pg_catalog.clock_timestamp() THEN q.retry_at END",
			   2, types2, values2, NULL);

	if (!rs_database_served(MyDatabaseId))
		ereport(NOTICE,
				(errmsg("no redis_sync worker runs in database \"%s\", so the cache of table %s is not warmed in the background",
						get_database_name(MyDatabaseId), get_rel_name(relid)),
				 errhint("Call redis_sync.warm('%s') to fill it.", qrel)));
	else
	{
		if (!xact_callback_registered)
		{
			RegisterXactCallback(warm_xact_callback, NULL);
			xact_callback_registered = true;
		}
		wake_at_commit = true;
	}
	PG_RETURN_BOOL(true);
}

/* one queued warm, as the worker read it */
typedef struct WarmEntry
{
	Oid			relid;
	Datum		requested_at;	/* timestamptz: identifies this request */
	List	   *last;			/* key values (text) to resume after */
	int			attempts;
	bool		repair;			/* resync() instead of a fill */
	Oid			owner;			/* the table's, once a batch ran */
} WarmEntry;

/*
 * Whether the last batch of the warm of settle_relid (requested at
 * settle_requested_at) left its fill cursor settling the next batches
 * (rs_fill_next_batch): a round fills one batch, with a cursor of its own.
 * The worker's memory: after a restart the next batch finds out again.
 */
static Oid	settle_relid = InvalidOid;
static Datum settle_requested_at = 0;
static bool settle_next = false;
static int	settled_next = 0;

/* the oldest queued warm that is due; false when there is none */
static bool
next_entry(WarmEntry *e)
{
	MemoryContext outer = CurrentMemoryContext;
	bool		found = false;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	if (SPI_execute("SELECT relid::pg_catalog.oid, requested_at, last_key, attempts, repair "
					"  FROM redis_sync._warm_queue "
					" WHERE finished_at IS NULL "
					"   AND (retry_at IS NULL OR retry_at <= pg_catalog.clock_timestamp()) "
					" ORDER BY requested_at LIMIT 1", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read redis_sync._warm_queue");
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		last;
		MemoryContext spi = MemoryContextSwitchTo(outer);

		found = true;
		e->relid = DatumGetObjectId(SPI_getbinval(tup, td, 1, &isnull));
		e->requested_at = SPI_getbinval(tup, td, 2, &isnull);	/* by value */
		last = SPI_getbinval(tup, td, 3, &isnull);
		e->last = NIL;
		if (!isnull)
		{
			int			n;
			char	  **vals = rs_text_array(DatumGetArrayTypeP(last), &n);

			for (int i = 0; i < n; i++)
				e->last = lappend(e->last, vals[i]);
		}
		e->attempts = DatumGetInt32(SPI_getbinval(tup, td, 4, &isnull));
		e->repair = DatumGetBool(SPI_getbinval(tup, td, 5, &isnull));
		e->owner = InvalidOid;
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return found;
}

/* record one batch's progress (or the end) of this request */
static void
record_progress(WarmEntry *e, int64 rows, int64 written, bool done)
{
	Oid			types[5] = {OIDOID, TIMESTAMPTZOID, INT8OID, INT8OID, TEXTARRAYOID};
	Datum		values[5];
	char		nulls[5] = "     ";
	int			n = list_length(e->last);

	values[0] = ObjectIdGetDatum(e->relid);
	values[1] = e->requested_at;
	values[2] = Int64GetDatum(rows);
	values[3] = Int64GetDatum(written);
	if (done || n == 0)
	{
		values[4] = (Datum) 0;
		nulls[4] = 'n';
	}
	else
	{
		Datum	   *elems = palloc(sizeof(Datum) * n);
		ListCell   *lc;

		foreach(lc, e->last)
			elems[foreach_current_index(lc)] = CStringGetTextDatum(lfirst(lc));
		values[4] = PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
	}
	queue_exec(psprintf("UPDATE redis_sync._warm_queue SET "
						"  started_at = COALESCE(started_at, pg_catalog.clock_timestamp()), "
						"  rows_done = rows_done + $3, keys_filled = keys_filled + $4, last_key = $5, "
						"  attempts = 0, retry_at = NULL, last_error = NULL, last_error_at = NULL%s "
						" WHERE relid = $1 AND requested_at = $2",
						done ? ", finished_at = pg_catalog.clock_timestamp(), repair = false" : ""),
			   5, types, values, nulls);
}

/*
 * a batch failed: keep the message, retry later with backoff; one that ran
 * into redis_sync.warm_timeout waits ten times the timeout at least, so
 * that a table whose code holds the worker holds it a small part of the
 * time only
 */
static void
record_failure(WarmEntry *e, const char *message, bool timed_out, int64 ran)
{
	Oid			types[4] = {OIDOID, TIMESTAMPTZOID, TEXTOID, INT8OID};
	Datum		values[4];
	int64		delay = Min((int64) 1000 << Min(e->attempts, 10), WARM_RETRY_MAX_MS);

	if (timed_out)
		delay = Max(delay, Min((int64) rs_warm_timeout_ms * 10, (int64) 3600 * 1000));
	/* one that failed otherwise after running long: ten times what it ran */
	delay = Max(delay, Min(ran * 10, (int64) 3600 * 1000));

	/* its code went on after the cancel: its owner's other tables wait too */
	rs_step_hold_owner(e->owner, delay);

	values[0] = ObjectIdGetDatum(e->relid);
	values[1] = e->requested_at;
	values[2] = CStringGetTextDatum(message);
	values[3] = Int64GetDatum(delay);
	queue_exec("UPDATE redis_sync._warm_queue SET attempts = attempts + 1, "
			   "  last_error = $3, last_error_at = pg_catalog.clock_timestamp(), "
			   "  retry_at = pg_catalog.clock_timestamp() + $4 * interval '1 ms' "
			   " WHERE relid = $1 AND requested_at = $2",
			   4, types, values, NULL);
}

/*
 * redis_sync.resync(relid) through SPI, as the current user: rewrites the
 * keys that differ from their row, deletes those without one; returns the
 * number of keys repaired
 */
static int64
run_resync(Oid relid)
{
	Oid			types[1] = {REGCLASSOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	bool		isnull;
	int64		n;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	if (SPI_execute_with_args("SELECT redis_sync.resync($1)", 1, types, values, NULL, false, 1)
		!= SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "redis_sync: could not repair the cache of table %u", relid);
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return isnull ? 0 : n;
}

/*
 * One batch of a queued warm, in the current transaction, as the table's
 * owner.  Returns false when the request is finished (or dropped).
 */
static bool
warm_entry_batch(WarmEntry *e)
{
	Relation	rel = try_relation_open(e->relid, AccessShareLock);
	SyncConfig *cfg;
	FillCursor	fc;
	HeapTuple	ctup;
	Oid			owner;
	RsAsOwner	ao;
	volatile int64 n = 0;
	bool		done;
	Oid			types[2] = {OIDOID, TIMESTAMPTZOID};
	Datum		values[2] = {ObjectIdGetDatum(e->relid), e->requested_at};

	if (rel != NULL)
		cfg = rs_config_get(e->relid);
	if (rel == NULL || !cfg->synced || cfg->policy != RS_POLICY_WRITE_THROUGH)
	{
		/* dropped or unsynced since: forget the request */
		if (rel != NULL)
			relation_close(rel, AccessShareLock);
		queue_exec("DELETE FROM redis_sync._warm_queue WHERE relid = $1 AND requested_at = $2",
				   2, types, values, NULL);
		return false;
	}
	ctup = SearchSysCache1(RELOID, ObjectIdGetDatum(e->relid));
	if (!HeapTupleIsValid(ctup))
		elog(ERROR, "cache lookup failed for relation %u", e->relid);
	owner = ((Form_pg_class) GETSTRUCT(ctup))->relowner;
	ReleaseSysCache(ctup);
	e->owner = owner;			/* for record_failure */

	if (e->repair)
	{
		int64		repaired = 0;

		pgstat_report_activity(STATE_RUNNING, "redis_sync: repairing a table's cache");
		/* resync() as the owner (verify() is the owner's; it reads as them) */
		rs_as_owner_enter(&ao, owner);
		PG_TRY();
		{
			repaired = run_resync(e->relid);
		}
		PG_FINALLY();
		{
			rs_as_owner_leave(&ao);
		}
		PG_END_TRY();
		e->last = NIL;
		record_progress(e, 0, repaired, true);
		relation_close(rel, AccessShareLock);
		ereport(LOG,
				(errmsg("redis_sync worker: repaired the cache of table %s (%lld keys)",
						quote_qualified_identifier(get_namespace_name(get_rel_namespace(e->relid)),
												   get_rel_name(e->relid)),
						(long long) repaired),
				 errdetail("An unsync without purge had left keys under its prefix.")));
		return false;
	}

	pgstat_report_activity(STATE_RUNNING, "redis_sync: warming a table");
	rs_fill_cursor_init(&fc, e->relid, cfg, e->last);
	if (settle_next && e->last != NIL && settle_relid == e->relid &&
		settle_requested_at == e->requested_at)
	{
		fc.settle = true;
		fc.settled = settled_next;
	}
	settle_relid = InvalidOid;	/* until this batch is done */

	/* the table's code (types, casts) runs with its owner's rights only */
	rs_as_owner_enter(&ao, owner);
	PG_TRY();
	{
		n = rs_fill_next_batch(&fc, rel, WARM_BATCH);
	}
	PG_FINALLY();
	{
		rs_as_owner_leave(&ao);
	}
	PG_END_TRY();

	done = n < WARM_BATCH;
	e->last = fc.last;
	settle_relid = e->relid;
	settle_requested_at = e->requested_at;
	settle_next = fc.settle;
	settled_next = fc.settled;
	record_progress(e, fc.rows, fc.written, done);
	rs_stats_add(e->relid, RS_C_WARMED, fc.rows);
	rs_stats_flush();
	relation_close(rel, AccessShareLock);
	if (done)
		ereport(LOG,
				(errmsg("redis_sync worker: warmed table %s",
						quote_qualified_identifier(get_namespace_name(get_rel_namespace(e->relid)),
												   get_rel_name(e->relid)))));
	return !done;
}

/*
 * the message a failed repair leaves in the queue (redis_sync.warming):
 * what it was, and that warm() in a session does it too (a table too large
 * to resync() within redis_sync.warm_timeout never finishes in the worker,
 * each retry starting over)
 */
static const char *
repair_failure_message(Oid relid, const char *message)
{
	char	   *name = get_rel_name(relid);
	char	   *qrel;

	if (name == NULL)
		return message;			/* dropped since */
	qrel = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), name);
	return psprintf("repair of the keys an unsync without purge left (resync()) failed: %s; "
					"redis_sync.warm('%s') in a session repairs them",
					message, qrel);
}

bool
rs_warm_round(void)
{
	MemoryContext outer = CurrentMemoryContext;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), WARM_ROUND_MS);
	bool		did_work = false;

	for (;;)
	{
		WarmEntry	e;
		bool		found;

		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		found = queue_exists() && next_entry(&e);
		if (found)
		{
			PG_TRY();
			{
				rs_step_timeout_arm(rs_warm_timeout_ms);	/* redis_sync.warm_timeout */
				(void) warm_entry_batch(&e);
				rs_step_timeout_check();	/* a cancel caught by the table's
											 * code */
				rs_step_timeout_disarm();
			}
			PG_CATCH();
			{
				bool		timed_out;
				int64		ran = rs_step_elapsed_ms();
				ErrorData  *edata = rs_step_catch(outer, "a batch", "redis_sync.warm_timeout",
												  &timed_out);

				/*
				 * cancelled at shutdown: not the table's failure (no retry
				 * delay, no last_error); the next worker goes on
				 */
				if (rs_step_stopped_at_shutdown(edata))
				{
					ereport(LOG,
							(errmsg("redis_sync worker: warming table %u stopped: %s", e.relid, edata->message)));
					FreeErrorData(edata);
					return false;
				}
				ereport(LOG,
						(errmsg("redis_sync worker: could not warm table %u: %s", e.relid, edata->message),
						 edata->detail ? errdetail("%s", edata->detail) : 0));
				StartTransactionCommand();
				PushActiveSnapshot(GetTransactionSnapshot());
				record_failure(&e, e.repair ? repair_failure_message(e.relid, edata->message)
							   : edata->message, timed_out, ran);
				rs_stats_error(e.relid, edata->message);
				rs_stats_flush();
				PopActiveSnapshot();
				CommitTransactionCommand();
				MemoryContextSwitchTo(outer);
				return false;	/* it waits for its retry time */
			}
			PG_END_TRY();
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
		MemoryContextSwitchTo(outer);
		if (!found)
			return did_work;
		did_work = true;
		if (rs_worker_stopping())
			return true;
		if (GetCurrentTimestamp() >= deadline)
		{
			/*
			 * more may be queued: come back right after the next look at the
			 * outbox
			 */
			SetLatch(MyLatch);
			return true;
		}
		CHECK_FOR_INTERRUPTS();
	}
}

/* redis_sync.warm(tbl regclass, batch_size int) RETURNS bigint */
Datum
redis_sync_warm(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	int			batch = PG_GETARG_INT32(1);
	int64		n;
	int64		written;
	Oid			types[3] = {OIDOID, INT8OID, INT8OID};
	Datum		values[3];

	if (batch <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be positive")));
	if (!pg_class_ownercheck(relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s", get_rel_name(relid))));
	rs_check_no_own_writes(relid, "warm");
	n = rs_fill_table(relid, batch, &written);
	rs_stats_flush();
	/* a queued background warm of the table is done too */
	if (!queue_exists())
		PG_RETURN_INT64(n);
	values[0] = ObjectIdGetDatum(relid);

	/*
	 * a queued repair (an unsync without purge left keys under the prefix):
	 * the fill kept the stale keys, resync() replaces or deletes them
	 */
	if (rs_exec_as_superuser("SELECT FROM redis_sync._warm_queue "
							 " WHERE relid = $1 AND repair AND finished_at IS NULL",
							 1, types, values, NULL, SPI_OK_SELECT,
							 "read redis_sync._warm_queue") > 0)
		written += run_resync(relid);

	values[1] = Int64GetDatum(n);
	values[2] = Int64GetDatum(written);
	queue_exec("UPDATE redis_sync._warm_queue SET started_at = COALESCE(started_at, pg_catalog.now()), "
			   "  finished_at = pg_catalog.clock_timestamp(), rows_done = $2, keys_filled = $3, "
			   "  last_key = NULL, retry_at = NULL, repair = false "
			   " WHERE relid = $1 AND finished_at IS NULL",
			   3, types, values, NULL);
	PG_RETURN_INT64(n);
}

/*
 * _unsynced_note(tbl regclass, prefix text) RETURNS void: unsync() without
 * purge of tbl, before its configuration is deleted, remembers the prefix
 * whose keys it leaves in Redis (redis_sync._unsynced_prefixes), when the
 * table is synced write-through or invalidate on it.
 */
Datum
redis_sync_unsynced_note(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		values[2] = {ObjectIdGetDatum(relid), PG_GETARG_DATUM(1)};

	rs_require_owner(relid);
	(void) rs_exec_as_superuser("INSERT INTO redis_sync._unsynced_prefixes (key_prefix, relid) "
								"SELECT $2, $1 WHERE EXISTS (SELECT FROM redis_sync.tables t "
								"  WHERE t.relid::pg_catalog.oid = $1 AND t.key_prefix = $2 "
								"    AND t.policy IN ('write_through', 'invalidate')) "
								"ON CONFLICT (key_prefix) DO UPDATE SET relid = EXCLUDED.relid, "
								"  unsynced_at = EXCLUDED.unsynced_at",
								2, types, values, NULL, 0,
								"update redis_sync._unsynced_prefixes");
	PG_RETURN_VOID();
}

/*
 * _unsynced_claim(tbl regclass) RETURNS boolean: tbl was just synced
 * write-through or invalidate; true when an unsync without purge left keys
 * under a prefix overlapping its prefix (one starts with the other), or
 * when a repair queued for it has not run yet, which the caller then
 * repairs.  The remembered prefixes that tbl's covers are
 * forgotten; a shorter one stays, for the keys outside tbl's prefix.
 */
Datum
redis_sync_unsynced_claim(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	int64		hit;

	rs_require_owner(relid);
	hit = rs_exec_as_superuser("SELECT FROM redis_sync._unsynced_prefixes u, redis_sync.tables t "
							   " WHERE t.relid::pg_catalog.oid = $1 "
							   "   AND t.policy IN ('write_through', 'invalidate') "
							   "   AND (pg_catalog.starts_with(u.key_prefix, t.key_prefix) "
							   "        OR pg_catalog.starts_with(t.key_prefix, u.key_prefix))",
							   1, types, values, NULL, SPI_OK_SELECT,
							   "read redis_sync._unsynced_prefixes");

	/*
	 * a repair queued by an earlier write_through() that has not run yet (the
	 * record is gone): invalidate() now, whose call the worker's repair would
	 * ignore, must purge instead
	 */
	if (hit == 0)
		hit = rs_exec_as_superuser("SELECT FROM redis_sync._warm_queue "
								   " WHERE relid::pg_catalog.oid = $1 AND repair AND finished_at IS NULL",
								   1, types, values, NULL, SPI_OK_SELECT,
								   "read redis_sync._warm_queue");
	if (hit > 0)
		(void) rs_exec_as_superuser("DELETE FROM redis_sync._unsynced_prefixes u "
									" USING redis_sync.tables t "
									" WHERE t.relid::pg_catalog.oid = $1 "
									"   AND t.policy IN ('write_through', 'invalidate') "
									"   AND pg_catalog.starts_with(u.key_prefix, t.key_prefix)",
									1, types, values, NULL, 0,
									"update redis_sync._unsynced_prefixes");
	PG_RETURN_BOOL(hit > 0);
}

void
rs_warm_init(void)
{
	DefineCustomIntVariable("redis_sync.warm_timeout",
							"Longest time one batch of a background warm may run in the worker (0: no limit).",
							"A batch still running then (a slow policy or type, a lock wait) is cancelled "
							"and retried later, after ten times this at least.",
							&rs_warm_timeout_ms,
							60000, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}
