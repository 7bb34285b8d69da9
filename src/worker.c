/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The redis_sync background worker.
 *
 * One worker per database that has the extension, started by the launcher
 * (launcher.c) once recovery has finished (so it never runs on a hot
 * standby, and starts on promotion), started again by the launcher after
 * a crash and after a SIGTERM that is not a server shutdown
 * (worker_stats.worker_restarts counts them).  Everything it does concerns
 * its own database: its outbox, its tables, its in-flight markers (their
 * key names the database), its slot of shared memory (latch, circuit
 * breaker, flush handshake, pause).  It sleeps on its
 * latch; a commit that queued outbox entries sets the latch (shmem.c), so
 * delivery starts within milliseconds; otherwise it wakes every
 * redis_sync.naptime.  Each round, in its own transactions:
 *
 *	1. probes Redis (INFO server) at most once a second or while the circuit
 *	   is open; a success closes the circuit breaker.  A changed run_id
 *	   means Redis restarted; with redis_sync.rewarm_on_restart the worker
 *	   re-warms every write-through table of its database.
 *	2. delivers the outbox, batch by batch (outbox.c), each batch one round
 *	   trip and one transaction;
 *	3. sweeps the in-flight markers: a marker whose transaction committed is
 *	   removed; one whose transaction aborted or died in a crash has its rows
 *	   pushed again from the table (warm.c), then is removed.
 *
 * Failures back off exponentially (from 100 ms up to
 * redis_sync.retry_max_backoff) and show in redis_sync.stats.  Errors are
 * caught per round: the transaction is aborted, the error logged and
 * counted, and the loop goes on.  When the extension is not in the
 * database (the launcher probing a database, or DROP EXTENSION) the worker
 * exits and the launcher does not start it again until CREATE EXTENSION.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/twophase.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "claim.h"
#include "drain.h"
#include "cluster.h"
#include "fence.h"
#include "outbox.h"
#include "redis_client.h"
#include "redis_sync.h"
#include "shmem.h"
#include "warm.h"
#include "xact_step.h"

PGDLLEXPORT void redis_sync_worker_main(Datum arg);

#define BACKOFF_MIN_MS 100
#define RS_WORKER_RESTART_SECONDS 1

static MemoryContext round_cxt = NULL;
static TimestampTz last_probe = 0;
static bool claims_recorded = false;	/* this worker recorded its tables' claims */
static bool redis_restarted = false;	/* probe() saw a new run_id */
static TimestampTz last_sweep = 0;
static int	backoff_ms = 0;
static TimestampTz retry_at = 0;	/* after a failure: no Redis work before this */
static TimestampTz ext_checked_at = 0;	/* when the extension was last seen */
static TimestampTz drain_due = 0;	/* when a write-behind table is next due */
static volatile sig_atomic_t got_sigterm = false;
static bool extension_gone = false;	/* DROP EXTENSION: exit for good */
static char my_dbname[NAMEDATALEN];	/* for messages outside transactions */

static void
worker_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	got_sigterm = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/* commit, and keep allocating in the round's context */
static void
commit_round_txn(void)
{
	CommitTransactionCommand();
	MemoryContextSwitchTo(round_cxt);
}

static bool
extension_ready(void)
{
	return OidIsValid(get_extension_oid("redis_sync", true));
}

/* INFO server: -1 when Redis cannot be reached, 1 when it restarted, else 0 */
static int
probe(void)
{
	RedisPipeline *p = redis_pipeline_create();
	const char *argv[2] = {"INFO", "server"};
	RedisFailure f;
	int			result = 0;

	redis_pipeline_bypass_circuit(p);
	redis_pipeline_append(p, 2, argv, NULL);
	if (!redis_pipeline_try_exec(p, &f))
	{
		ereport(LOG,
				(errmsg("redis_sync worker: %s", f.message),
				 f.detail ? errdetail("%s", f.detail) : 0));
		redis_pipeline_free(p);
		return -1;
	}
	{
		RedisValue *v = redis_pipeline_reply(p, 0);
		char	   *rid = v->type == RV_STRING ? strstr(v->str, "run_id:") : NULL;

		if (rid)
		{
			char		run_id[48];
			char		previous[48];
			int			n = 0;

			rid += 7;
			while (rid[n] && rid[n] != '\r' && rid[n] != '\n' && n < 47)
				n++;
			memcpy(run_id, rid, n);
			run_id[n] = '\0';
			if (rs_redis_run_id_changed(run_id, previous, sizeof(previous)))
			{
				redis_restarted = true;
				ereport(LOG,
						(errmsg("redis_sync worker: Redis at %s restarted (run_id %s, was %s)",
								redis_server_display(), run_id, previous),
						 rs_rewarm_on_restart ?
						 errdetail("Re-warming every write-through table.") :
						 errhint("redis_sync.rewarm_on_restart is off; run redis_sync.warm() to repopulate the cache.")));
				result = rs_rewarm_on_restart ? 1 : 0;
			}
		}
	}
	redis_pipeline_free(p);
	return result;
}

/*
 * Record again the key prefix claims of every synced table of this
 * database (claim.c).  They live in Redis: a Redis restarted empty (or a
 * failover to an empty replica) has lost them, and until they are back a
 * table of another database or server could claim an overlapping prefix,
 * write into this database's keys and purge them (TRUNCATE).  Done when the
 * worker first reaches Redis and after every restart, before the re-warm.
 * A claim that another holder took meanwhile is logged, not fatal.
 */
static void
reclaim_all(void)
{
	rs_xact_begin("redis_sync: recording key prefix claims");
	(void) rs_claim_all(true);
	rs_xact_commit(round_cxt);
}

/* re-warm every write-through table of this database */
static void
rewarm_all(void)
{
	List	   *rels = NIL;
	ListCell   *lc;

	rs_xact_begin(NULL);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	if (SPI_execute("SELECT relid::oid FROM redis_sync.tables WHERE policy = 'write_through' ORDER BY 1",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read redis_sync.tables");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		MemoryContext spi = MemoryContextSwitchTo(round_cxt);

		rels = lappend_oid(rels, DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
																 SPI_tuptable->tupdesc, 1, &isnull)));
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	rs_xact_commit(round_cxt);

	foreach(lc, rels)
	{
		int64		n;

		rs_xact_begin("redis_sync: re-warming after a Redis restart");
		n = rs_push_current(lfirst_oid(lc), NIL, 10000);
		rs_stats_flush();
		rs_xact_commit(round_cxt);
		ereport(LOG,
				(errmsg("redis_sync worker: re-warmed %lld keys of table %u",
						(long long) n, lfirst_oid(lc))));
	}
}

/* an entry Redis refused stays queued with its error: say so in the log */
static void
log_refusal(const RedisFailure *f)
{
	ereport(LOG,
			(errmsg("redis_sync worker: %s", f->message),
			 f->detail ? errdetail("%s", f->detail) : 0));
}

/*
 * Deliver the outbox until a short batch shows it empty (or the worker is
 * paused), each batch in its own transaction; false on a Redis failure.
 */
static bool
deliver_all(void)
{
	RsDeliveryRules rules = {0};
	RsDeliveryOutcome out;

	rules.relid = InvalidOid;
	rules.max = PG_INT64_MAX;
	rules.due_only = true;
	rules.batch_xacts = true;
	rules.stop_on_short = true;
	rules.stop = rs_worker_pause_check;
	rules.on_refusal = log_refusal;
	rules.activity = "redis_sync: delivering the outbox";
	rules.cxt = round_cxt;
	rs_outbox_deliver_loop(&rules, &out);
	if (out.failed)
	{
		ereport(LOG,
				(errmsg("redis_sync worker: could not deliver the outbox: %s", out.failure.message),
				 out.failure.detail ? errdetail("%s", out.failure.detail) : 0));
		rs_stats_error(InvalidOid, out.failure.message);
		rs_stats_flush();
		return false;
	}
	return true;
}

/* repairs of one marker that may not finish before it is set aside */
#define MAX_MARKER_ATTEMPTS 3

/* an error worth retrying later rather than setting a marker aside */
static bool
transient_error(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_CONNECTION_EXCEPTION:	/* Redis unreachable, timed out */
		case ERRCODE_TRANSACTION_ROLLBACK:	/* serialization failure, deadlock */
		case ERRCODE_INSUFFICIENT_RESOURCES:
		case ERRCODE_OPERATOR_INTERVENTION: /* query cancel */
			return true;
		default:
			return sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;
	}
}

static int64 marker_attempt(const char *mkey, const char *field, const char *by);

#define count_marker_attempt(mkey, field) marker_attempt((mkey), (field), "1")
/* best effort: Redis may be the reason the repair failed */
#define uncount_marker_attempt(mkey, field) ((void) marker_attempt((mkey), (field), "-1"))

/*
 * Repair the rows of one marker in a subtransaction.  A marker that makes
 * the repair fail (a malformed marker, a table it cannot read) is not
 * retried at every round: false, and the caller sets it aside.
 */
static bool
repair_marker_guarded(const char *mkey, const char *field, const char *value)
{
	MemoryContext outer = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	bool		ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(outer);
	PG_TRY();
	{
		int64		n = rs_repair_marker(value);

		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(outer);
		CurrentResourceOwner = owner;
		ereport(LOG,
				(errmsg("redis_sync worker: repaired %lld keys pushed by transaction %llu, which did not commit",
						(long long) n, (unsigned long long) strtoull(field, NULL, 10))));
	}
	PG_CATCH();
	{
		ErrorData  *ed;

		MemoryContextSwitchTo(outer);
		ed = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(outer);
		CurrentResourceOwner = owner;
		if (transient_error(ed->sqlerrcode))
		{
			/* Redis down, a lock or serialization conflict: the round retries */
			uncount_marker_attempt(mkey, field);
			ReThrowError(ed);
		}
		ereport(LOG,
				(errmsg("redis_sync worker: could not repair the keys of in-flight marker %s, set aside in %s:failed: %s",
						field, mkey, ed->message)));
		rs_stats_error(InvalidOid, ed->message);
		rs_stats_add(InvalidOid, RS_C_DELIVERY_FAILURES, 1);
		FreeErrorData(ed);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * Count one more repair attempt of a marker in <marker key>:attempts, before
 * the repair (by "1"), or take one back (by "-1"): a marker whose repair
 * crashes the worker must not crash it again at every restart.  The count
 * is removed with the marker.  Returns the count, -1 when Redis failed.
 */
static int64
marker_attempt(const char *mkey, const char *field, const char *by)
{
	RedisPipeline *p = redis_pipeline_create();
	char	   *key = psprintf("%s:attempts", mkey);
	const char *argv[4] = {"HINCRBY", key, field, by};
	RedisFailure f;
	RedisValue *v;
	int64		n;

	redis_pipeline_append(p, 4, argv, NULL);
	if (!redis_pipeline_try_exec(p, &f))
		return -1;
	v = redis_pipeline_reply(p, 0);
	n = v->type == RV_INTEGER ? v->integer : -1;
	redis_pipeline_free(p);
	return n;
}

/* remove markers of committed transactions; repair those that did not commit */
static bool
sweep_marker_key(const char *mkey)
{
	char	   *cursor = "0";
	List	   *done = NIL;
	List	   *set_aside = NIL;	/* (field, value) of markers that failed */

	do
	{
		RedisPipeline *p = redis_pipeline_create();
		const char *argv[6] = {"HSCAN", mkey, cursor, "COUNT", "1000", NULL};
		RedisValue *v;
		RedisFailure f;

		redis_pipeline_append(p, 5, argv, NULL);
		if (!redis_pipeline_try_exec(p, &f))
			return false;
		v = redis_pipeline_reply(p, 0);
		if (v->type != RV_ARRAY || v->nelem != 2)
			return false;
		cursor = pstrdup(v->elems[0].str);
		for (int i = 0; i + 1 < v->elems[1].nelem; i += 2)
		{
			char	   *field = v->elems[1].elems[i].str;
			char	   *value = v->elems[1].elems[i + 1].str;
			uint64		fxid = strtoull(field, NULL, 10);
			TransactionId xid = (TransactionId) (fxid & 0xFFFFFFFF);
			bool		committed;

			if (!TransactionIdIsNormal(xid))
			{
				done = lappend(done, pstrdup(field));
				continue;
			}
			/*
			 * A marker written before shared memory was last made (server
			 * start or crash restart) may name an
			 * xid that crash recovery handed out again (the transaction's
			 * WAL was never flushed): its commit status says nothing, so
			 * repair.  A transaction too old to look up is repaired too:
			 * repairing is always safe.
			 */
			{
				const char *last = strrchr(field, ':');
				int64		started = last ? strtoll(last + 1, NULL, 10) : 0;

				if (started == rs_incarnation())
				{
					if (TransactionIdIsInProgress(xid))
						continue;
					committed = U64FromFullTransactionId(ReadNextFullTransactionId()) - fxid < (uint64) 1 << 31 &&
						!TransactionIdPrecedes(xid, ShmemVariableCache->oldestClogXid) &&
						TransactionIdDidCommit(xid);
				}
				else
					committed = false;
			}
			if (!committed)
			{
				int64		attempt = count_marker_attempt(mkey, field);

				if (attempt < 0)
					return false;	/* Redis failed: try again next round */
				if (attempt > MAX_MARKER_ATTEMPTS)
				{
					ereport(LOG,
							(errmsg("redis_sync worker: in-flight marker %s set aside in %s:failed: %d earlier repairs of it did not finish",
									field, mkey, MAX_MARKER_ATTEMPTS),
							 errdetail("The worker stopped or crashed while repairing it.")));
					rs_stats_error(InvalidOid, "an in-flight marker was set aside: its repairs did not finish");
					rs_stats_add(InvalidOid, RS_C_DELIVERY_FAILURES, 1);
					set_aside = lappend(set_aside, list_make2(pstrdup(field), pstrdup(value)));
				}
				else if (!repair_marker_guarded(mkey, field, value))
					set_aside = lappend(set_aside, list_make2(pstrdup(field), pstrdup(value)));
			}
			done = lappend(done, pstrdup(field));
		}
		redis_pipeline_free(p);
	} while (strcmp(cursor, "0") != 0);

	/* failed markers move to <marker key>:failed, for an operator to look at */
	if (set_aside != NIL)
	{
		RedisPipeline *p = redis_pipeline_create();
		char	   *failed_key = psprintf("%s:failed", mkey);
		ListCell   *lc;
		RedisFailure f;

		foreach(lc, set_aside)
		{
			List	   *fv = lfirst(lc);
			const char *argv[4] = {"HSET", failed_key, linitial(fv), lsecond(fv)};

			redis_pipeline_append(p, 4, argv, NULL);
		}
		if (!redis_pipeline_try_exec(p, &f))
			return false;
		redis_pipeline_free(p);
	}
	if (done != NIL)
	{
		RedisPipeline *p = redis_pipeline_create();
		int			n = list_length(done) + 2;
		const char **argv = palloc(sizeof(char *) * n);
		ListCell   *lc;
		int			i = 2;
		RedisFailure f;

		argv[0] = "HDEL";
		argv[1] = mkey;
		foreach(lc, done)
			argv[i++] = lfirst(lc);
		redis_pipeline_append(p, n, argv, NULL);
		/* and their attempt counts (most have none) */
		argv[1] = psprintf("%s:attempts", mkey);
		redis_pipeline_append(p, n, argv, NULL);
		if (!redis_pipeline_try_exec(p, &f))
			return false;
		redis_pipeline_free(p);
	}
	return true;
}

/*
 * Every in-flight marker hash: one per database on a single Redis; on a
 * cluster "<marker key>:{<tag>}" in some slot (fence.c): on Redis 7, the
 * lowest slot of each master, swept every round; a marker elsewhere (older
 * Redis, a call split by slot after a redirection, slots that moved) is
 * found by a SCAN on every master, every 12th round (and the first).
 */
static bool
sweep_markers(void)
{
	static int	rounds = 0;
	int			nmasters;
	char	   *pattern;

	if (!redis_cluster_mode())
		return sweep_marker_key(rs_marker_key());
	nmasters = redis_cluster_nmasters();
	if (rounds++ % 12 != 0)
	{
		int		   *masters;
		int			n = rs_cluster_masters(&masters);

		for (int m = 0; m < n; m++)
		{
			int			first = rs_cluster_first_slot(masters[m]);

			if (first >= 0 && !sweep_marker_key(rs_marker_key_for_slot(first)))
				return false;
		}
		return true;
	}
	pattern = psprintf("%s:{*}", rs_marker_key());
	for (int m = 0; m < nmasters; m++)
	{
		char	   *cursor = "0";

		do
		{
			RedisPipeline *p = redis_pipeline_create();
			const char *argv[8] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000", "TYPE", "hash"};
			RedisValue *v;
			RedisFailure f;

			redis_pipeline_target_master(p, m);
			redis_pipeline_append(p, 8, argv, NULL);
			if (!redis_pipeline_try_exec(p, &f))
				return false;
			v = redis_pipeline_reply(p, 0);
			if (v->type != RV_ARRAY || v->nelem != 2)
				return false;
			cursor = pstrdup(v->elems[0].str);
			for (int i = 0; i < v->elems[1].nelem; i++)
				if (!sweep_marker_key(pstrdup(v->elems[1].elems[i].str)))
					return false;
			redis_pipeline_free(p);
		} while (strcmp(cursor, "0") != 0);
	}
	return true;
}

static bool
marker_sweep_round(void)
{
	bool		ok;

	rs_xact_begin("redis_sync: sweeping in-flight markers");
	ok = sweep_markers();
	rs_stats_flush();
	rs_xact_commit(round_cxt);
	return ok;
}

static uint64
slot_notifies(void)
{
	RsDbSlot   *slot = rs_worker_slot();
	uint64		n;

	SpinLockAcquire(&slot->mutex);
	n = slot->notifies;
	SpinLockRelease(&slot->mutex);
	return n;
}

/*
 * The extension is not in this database: clear the slot's "want" so the
 * launcher does not start a worker again, unless a CREATE EXTENSION
 * committed after notifies was read (then look again).  True: exit.
 */
static bool
slot_give_up(uint64 notifies)
{
	RsDbSlot   *slot = rs_worker_slot();
	bool		give_up;

	SpinLockAcquire(&slot->mutex);
	give_up = slot->notifies == notifies;
	if (give_up)
		slot->want = false;
	SpinLockRelease(&slot->mutex);
	return give_up;
}

static bool
slot_wanted(void)
{
	RsDbSlot   *slot = rs_worker_slot();
	bool		want;

	SpinLockAcquire(&slot->mutex);
	want = slot->want;
	SpinLockRelease(&slot->mutex);
	return want;
}

/* the launcher or DROP DATABASE wants this worker gone for now */
static bool
slot_stop_requested(bool *held)
{
	RsDbSlot   *slot = rs_worker_slot();
	bool		stop;

	SpinLockAcquire(&slot->mutex);
	*held = slot->hold;
	stop = slot->hold || !slot->want || slot->dbid != MyDatabaseId;
	SpinLockRelease(&slot->mutex);
	return stop;
}

/* one round; returns how long to sleep */
static long
worker_round(void)
{
	bool		ready;
	TimestampTz now = GetCurrentTimestamp();
	bool		ok = true;

	/* checking the catalog every round would cost a transaction per commit */
	if (ext_checked_at == 0 || TimestampDifferenceExceeds(ext_checked_at, now, 1000))
	{
		uint64		notifies = slot_notifies();

		StartTransactionCommand();
		ready = extension_ready();
		commit_round_txn();
		if (!ready)
		{
			/* exit, unless CREATE EXTENSION committed since the look */
			extension_gone = slot_give_up(notifies);
			return extension_gone ? 0 : 10;
		}
		ext_checked_at = now;
	}

	/* after a failure, commits waking us must not turn backoff into a busy loop */
	if (retry_at != 0 && now < retry_at && rs_flush_pending() == 0)
		return Max(1, TimestampDifferenceMilliseconds(now, retry_at));
	retry_at = 0;
	rs_stats_worker_round();
	if (rs_worker_pause_check())
		return rs_naptime_ms;

	/* probe at most once a second, and always while the circuit is open */
	if (last_probe == 0 || rs_circuit_is_open() ||
		TimestampDifferenceExceeds(last_probe, now, 1000))
	{
		int			r = probe();

		last_probe = now;
		/* worker_stats.cluster: the map as this worker sees it (kept while Redis fails) */
		if (r >= 0)
			rs_stats_set_cluster(redis_cluster_state_json());
		if (r >= 0 && (!claims_recorded || redis_restarted))
		{
			redis_restarted = false;
			reclaim_all();
			claims_recorded = true;
		}
		if (r < 0)
			ok = false;
		if (r > 0)
		{
			rewarm_all();
			rs_drain_reseed_all();
		}
	}
	if (ok)
		ok = deliver_all();
	if (ok && (last_sweep == 0 || rs_worker_sweep_requested() ||
			   TimestampDifferenceExceeds(last_sweep, now, rs_marker_sweep_ms)))
	{
		last_sweep = now;
		ok = marker_sweep_round();
	}
	if (ok)
		rs_warm_round();		/* background warms (warm.c), bounded in time */

	if (ok)
	{
		uint64		gen = rs_flush_pending();

		/*
		 * Write-behind tables are looked at when one is due, when flush()
		 * asks, and at least every naptime (new tables) -- not at every
		 * commit that woke us for the outbox.
		 */
		if (gen != 0 || drain_due == 0 || now >= drain_due)
		{
			TimestampTz next_due;
			int64		applied;
			int			failed;

			applied = rs_drain_round(gen != 0, 0, &next_due, &failed);
			if (gen != 0)
				rs_flush_completed(gen, applied, failed);
			drain_due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), rs_naptime_ms);
			if (next_due != 0 && next_due < drain_due)
				drain_due = next_due;
		}
		backoff_ms = 0;
		return Max(1, Min(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), drain_due),
						  rs_naptime_ms));
	}
	/* Redis could not be reached: a waiting flush() must not wait it out */
	{
		uint64		gen = rs_flush_pending();

		if (gen != 0)
			rs_flush_unreachable(gen);
	}
	backoff_ms = backoff_ms == 0 ? BACKOFF_MIN_MS : Min(backoff_ms * 2, rs_retry_max_backoff_ms);
	retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), backoff_ms);
	return backoff_ms;
}

/* at SIGTERM: deliver and drain once more, within a bounded time */
static void
final_round(void)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), rs_shutdown_drain_ms);
	TimestampTz next_due;
	bool		ready;

	if (rs_shutdown_drain_ms == 0)
		return;
	StartTransactionCommand();
	ready = extension_ready();
	commit_round_txn();
	if (!ready || rs_worker_pause_check())
		return;
	PG_TRY();
	{
		int64		n;
		int			failed;

		(void) deliver_all();
		n = rs_drain_round(true, deadline, &next_due, &failed);
		ereport(LOG,
				(errmsg("redis_sync worker: final drain at shutdown applied %lld rows", (long long) n)));
	}
	PG_CATCH();
	{
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
	}
	PG_END_TRY();
}

/*
 * Entry point of a worker started by the launcher: bgw_main_arg is its slot,
 * bgw_extra the database OID and the slot's generation.
 */
void
redis_sync_worker_main(Datum arg)
{
	int			slotno = DatumGetInt32(arg);
	Oid			dbid;
	uint32		generation;
	bool		probing;
	bool		held = false;

	memcpy(&dbid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	memcpy(&generation, MyBgworkerEntry->bgw_extra + sizeof(Oid), sizeof(uint32));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, worker_sigterm);
	BackgroundWorkerUnblockSignals();

	/* the slot may have been given up (DROP DATABASE) while we started */
	if (!rs_worker_attach(slotno, dbid, generation))
		proc_exit(0);
	before_shmem_exit((pg_on_exit_callback) rs_worker_unregister_latch, (Datum) 0);
	BackgroundWorkerInitializeConnectionByOid(dbid, InvalidOid, 0);
	/* nothing the worker runs may resolve names through a user's schema */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	pgstat_report_appname("redis_sync worker");

	round_cxt = AllocSetContextCreate(TopMemoryContext, "redis_sync worker round",
									  ALLOCSET_DEFAULT_SIZES);

	/* is the extension here?  (the launcher probes databases this way) */
	for (;;)
	{
		uint64		notifies = slot_notifies();
		bool		ready;

		StartTransactionCommand();
		ready = extension_ready();
		if (my_dbname[0] == '\0')
		{
			char	   *name = get_database_name(MyDatabaseId);

			strlcpy(my_dbname, name ? name : "?", sizeof(my_dbname));
		}
		commit_round_txn();
		if (ready)
			break;
		if (slot_give_up(notifies))
			proc_exit(0);
	}
	{
		RsDbSlot   *slot = rs_worker_slot();

		SpinLockAcquire(&slot->mutex);
		probing = slot->probing;
		slot->probing = false;
		SpinLockRelease(&slot->mutex);
	}
	ext_checked_at = GetCurrentTimestamp();
	ereport(LOG,
			(errmsg("redis_sync worker started in database \"%s\"", my_dbname),
			 probing ? errdetail("The launcher found the extension in the database.") : 0));

	for (;;)
	{
		long		sleep_ms = rs_naptime_ms;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		if (extension_gone)
		{
			ereport(LOG,
					(errmsg("redis_sync worker in database \"%s\" exiting: the extension was dropped",
							my_dbname)));
			proc_exit(0);
		}
		if (got_sigterm || slot_stop_requested(&held))
		{
			MemoryContextSwitchTo(round_cxt);
			/* a database about to be dropped or moved: no final drain */
			(void) slot_stop_requested(&held);
			if (!held)
				final_round();

			/*
			 * A SIGTERM outside a server shutdown (pg_terminate_backend())
			 * must not stop async delivery, outbox repair and write-behind
			 * until the next restart: the launcher starts a new worker after
			 * RS_WORKER_RESTART_SECONDS while the database wants one (not
			 * during DROP/ALTER DATABASE, nor after DROP EXTENSION).
			 */
			ereport(LOG,
					(errmsg("redis_sync worker shutting down"),
					 held ? errdetail("ALTER or DROP DATABASE is waiting for it.") :
					 !slot_wanted() ? errdetail("redis_sync.database no longer lists the database.") :
					 errdetail("A new worker starts within %d second(s) unless the server is shutting down.",
							   RS_WORKER_RESTART_SECONDS)));
			proc_exit(1);
		}
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		old = MemoryContextSwitchTo(round_cxt);
		PG_TRY();
		{
			sleep_ms = worker_round();
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(round_cxt);
			edata = CopyErrorData();
			FlushErrorState();
			AbortCurrentTransaction();
			ereport(LOG,
					(errmsg("redis_sync worker: %s", edata->message),
					 edata->detail ? errdetail("%s", edata->detail) : 0));
			backoff_ms = backoff_ms == 0 ? BACKOFF_MIN_MS : Min(backoff_ms * 2, rs_retry_max_backoff_ms);
			sleep_ms = backoff_ms;
			/* a flush() waiting for this round learns it failed (see the log) */
			{
				uint64		gen = rs_flush_pending();

				if (gen != 0)
					rs_flush_completed(gen, 0, 1);
			}
		}
		PG_END_TRY();
		MemoryContextSwitchTo(old);
		MemoryContextReset(round_cxt);

		pgstat_report_activity(STATE_IDLE, NULL);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
