/*-------------------------------------------------------------------------
 *
 * worker_signal.c
 *		How backends and the worker of a database signal each other through
 *		its slot (shmem.c): wake-up, the flush() handshake, the in-flight
 *		marker sweep request, pause/resume, and Redis's run_id.
 *
 * A backend never waits for the worker without a bound (invariant "no
 * unbounded wait" in redis_sync.h): rs_flush_via_worker() gives up at its
 * timeout, at once when the worker is missing, paused or cannot reach
 * Redis, and worker_pause() returns false at its timeout.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "pgstat.h"
#include "storage/spin.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "launcher.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(redis_sync_worker_pause);
PG_FUNCTION_INFO_V1(redis_sync_worker_resume);

/* count a wake-up by this backend (see rs_worker_waker_changes); the latch */
static Latch *
note_waker(RsDbSlot *sl)
{
	Latch	   *latch;

	SpinLockAcquire(&sl->mutex);
	latch = sl->worker_latch;
	if (sl->last_waker != MyProcPid)
	{
		sl->last_waker = MyProcPid;
		sl->waker_changes++;
	}
	SpinLockRelease(&sl->mutex);
	return latch;
}

void
rs_worker_wake(void)
{
	Latch	   *latch;

	if (!rs_shmem_ready())
		return;
	latch = note_waker(rs_my_slot());
	if (latch)
		SetLatch(latch);
}

/*
 * A commit queued outbox entries: wake the worker unless a wake-up is
 * already due.  outbox_wake_due is 1 from the first such commit until the
 * worker starts reading the outbox (rs_worker_outbox_reading), so the
 * commits in between signal nobody: one signal per delivery at most.  That
 * matters while the worker sleeps without delivering (paused, or backing
 * off while Redis fails): every commit signalled it, a kill() waking
 * another process at the moment the committing backend waits for its own
 * WAL flush, and it woke only to sleep again.  No wake-up is lost: this
 * commit is visible before the exchange (a full barrier) reads the flag,
 * the worker clears the flag before it takes the snapshot its delivery
 * reads, and a signal consumed by something else waiting on the worker's
 * latch is made good after the round (rs_worker_outbox_resignal).
 */
void
rs_worker_wake_outbox(void)
{
	RsDbSlot   *sl;
	Latch	   *latch;

	if (!rs_shmem_ready())
		return;
	sl = rs_my_slot();
	latch = note_waker(sl);
	if (pg_atomic_exchange_u32(&sl->outbox_wake_due, 1) == 0 && latch)
		SetLatch(latch);
}

/* worker: about to read the outbox; commits from now on signal again */
void
rs_worker_outbox_reading(void)
{
	RsDbSlot   *sl = rs_worker_slot();

	if (sl == NULL)
		return;
	pg_atomic_write_u32(&sl->outbox_wake_due, 0);
	pg_memory_barrier();
}

/*
 * worker, after a round that read the outbox: a commit that signalled since
 * then may have had its signal consumed in the round.  The worker's latch is
 * not only its own: PostgreSQL's lock waits (ProcSleep) wait on it and reset
 * it, so a commit that signalled while, say, the write-behind drain waited
 * for a row lock woke nobody, and every commit after it found the flag set
 * and signalled nobody either (review helper-90).  Set the latch again: the
 * next round reads the outbox at once, as it would have on that signal.
 * Only after a round that cleared the flag: a paused or backing-off worker
 * leaves it set and must not spin on it.
 */
void
rs_worker_outbox_resignal(void)
{
	RsDbSlot   *sl = rs_worker_slot();

	pg_memory_barrier();
	if (sl != NULL && pg_atomic_read_u32(&sl->outbox_wake_due) != 0)
		SetLatch(MyLatch);
}

/*
 * Wake-ups from a backend other than the one before: commits of several
 * sessions in quick succession (the worker's outbox coalescing).  One
 * client committing over and over never counts.
 */
uint64
rs_worker_waker_changes(void)
{
	RsDbSlot   *sl = rs_my_slot();
	uint64		n;

	SpinLockAcquire(&sl->mutex);
	n = sl->waker_changes;
	SpinLockRelease(&sl->mutex);
	return n;
}

/* worker: the flush generation to serve (0: none pending) */
uint64
rs_flush_pending(void)
{
	RsDbSlot   *sl = rs_my_slot();
	uint64		req;

	SpinLockAcquire(&sl->mutex);
	req = sl->flush_requested > sl->flush_done ? sl->flush_requested : 0;
	SpinLockRelease(&sl->mutex);
	return req;
}

void
rs_flush_completed(uint64 generation, int64 applied, int failed)
{
	RsDbSlot   *sl = rs_my_slot();

	SpinLockAcquire(&sl->mutex);
	if (generation > sl->flush_done)
	{
		sl->flush_done = generation;
		sl->flush_applied = applied;
		sl->flush_failed = failed;
		sl->flush_unreachable = false;
	}
	SpinLockRelease(&sl->mutex);
}

/*
 * worker: the round could not reach Redis; flush() callers waiting for
 * generations up to this one get an error at once instead of waiting for
 * redis_sync.flush_timeout.
 */
void
rs_flush_unreachable(uint64 generation)
{
	RsDbSlot   *sl = rs_my_slot();

	SpinLockAcquire(&sl->mutex);
	if (generation > sl->flush_done)
	{
		sl->flush_done = generation;
		sl->flush_applied = 0;
		sl->flush_failed = 0;
		sl->flush_unreachable = true;
	}
	SpinLockRelease(&sl->mutex);
}

static void
report_unreachable(void)
{
	char		msg[RS_ERRLEN];

	rs_circuit_last_error(msg, sizeof(msg));
	ereport(ERROR,
			(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
			 errmsg("could not drain write-behind tables: Redis is unreachable"),
			 msg[0] ? errdetail("Last connection error: %s", msg) : 0,
			 errhint("The values stay in Redis and are drained when it answers again; see redis_sync.worker_stats.")));
}

/*
 * flush(tbl): the forced round's failures are tbl's concern only when tbl
 * is among them (its drain_retries grew while flush() waited); another
 * table's failed drain is that table's owner's to see.
 */
static void
warn_table_failed(Oid relid, int64 retries_before)
{
	char		msg[RS_ERRLEN];
	char	   *name;

	if (rs_stats_counter(relid, RS_C_WB_RETRIES) == retries_before)
		return;
	rs_stats_last_error(relid, msg, sizeof(msg));
	name = get_rel_name(relid);
	ereport(WARNING,
			(errmsg("write-behind table \"%s\" could not be drained; it is retried",
					name ? name : "?"),
			 msg[0] ? errdetail("%s", msg) : 0,
			 errhint("See last_error in redis_sync.stats and the server log.")));
}

/*
 * Ask this database's worker for a forced drain round and wait for it;
 * returns the rows it applied.  ERROR when the worker is not running or
 * does not answer in timeout_ms.
 */
int64
rs_flush_via_worker(Oid relid, int timeout_ms)
{
	RsDbSlot   *sl;
	uint64		mine;
	int64		before = rs_stats_applied(relid);
	int64		retries_before = rs_stats_counter(relid, RS_C_WB_RETRIES);
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	rs_require_preload("redis_sync.flush() of write-behind tables");
	sl = rs_my_slot();

	/*
	 * The caller probed Redis while the circuit was open (deliver_now()):
	 * still open means Redis did not answer just now.  Waiting for the worker
	 * would only wait for it to fail the same way.
	 */
	if (rs_circuit_open_peek())
		report_unreachable();
	SpinLockAcquire(&sl->mutex);
	mine = ++sl->flush_requested;
	SpinLockRelease(&sl->mutex);
	for (;;)
	{
		bool		done;
		bool		running;
		bool		paused;
		bool		unreachable;

		/* the launcher may have given this database a slot meanwhile */
		if (sl == rs_nodb_slot() && rs_my_slot() != sl)
		{
			sl = rs_my_slot();
			SpinLockAcquire(&sl->mutex);
			mine = ++sl->flush_requested;
			SpinLockRelease(&sl->mutex);
		}
		rs_worker_wake();
		SpinLockAcquire(&sl->mutex);
		done = sl->flush_done >= mine;
		running = sl->worker_latch != NULL;
		paused = sl->pause_requested;
		unreachable = sl->flush_unreachable;
		SpinLockRelease(&sl->mutex);
		if (done && unreachable)
			report_unreachable();
		if (done)
		{
			int			failed;

			SpinLockAcquire(&sl->mutex);
			failed = sl->flush_failed;
			SpinLockRelease(&sl->mutex);
			if (OidIsValid(relid))
				warn_table_failed(relid, retries_before);
			else if (failed > 0)
				ereport(WARNING,
						(errmsg("%d write-behind tables could not be drained; they are retried", failed),
						 errhint("See last_error in redis_sync.stats and the server log.")));
			return rs_stats_applied(relid) - before;
		}
		/* a database left without a worker: say so at once */
		if (!running && sl != rs_nodb_slot())
		{
			bool		no_worker;
			char		reason[64];

			SpinLockAcquire(&sl->mutex);
			no_worker = sl->no_worker;
			strlcpy(reason, sl->no_worker_reason, sizeof(reason));
			SpinLockRelease(&sl->mutex);
			if (no_worker)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("no redis_sync background worker runs in database \"%s\": %s",
								get_database_name(MyDatabaseId), reason),
						 errhint("Raise redis_sync.max_workers (and max_worker_processes), or stop the worker of a database that does not need one.")));
		}
		/* a worker that is (re)starting gets a few seconds to appear */
		if (!running && TimestampDifferenceExceeds(deadline - (int64) timeout_ms * 1000,
												   GetCurrentTimestamp(), Min(timeout_ms, 10000)))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("no redis_sync background worker is running in database \"%s\"",
							get_database_name(MyDatabaseId)),
					 errhint("Check redis_sync.worker_stats and the server log (redis_sync.max_workers, redis_sync.database).")));
		if (paused)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the redis_sync background worker is paused"),
					 errhint("Call redis_sync.worker_resume().")));
		/* Redis went away while we waited: the worker cannot drain */
		if (rs_circuit_open_peek())
			report_unreachable();
		if (GetCurrentTimestamp() >= deadline)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("timed out waiting for the redis_sync worker to drain write-behind tables")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 5, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * A request flag of this database's slot (the bool at offset off in
 * RsDbSlot): set it and wake the worker; or, in the worker, read and clear it.
 */
static void
request(size_t off)
{
	RsDbSlot   *sl;

	if (!rs_shmem_ready())
		return;
	sl = rs_my_slot();
	SpinLockAcquire(&sl->mutex);
	*(bool *) ((char *) sl + off) = true;
	SpinLockRelease(&sl->mutex);
	rs_worker_wake();
}

static bool
take_request(size_t off)
{
	RsDbSlot   *sl = rs_my_slot();
	bool	   *flag = (bool *) ((char *) sl + off);
	bool		r;

	SpinLockAcquire(&sl->mutex);
	r = *flag;
	*flag = false;
	SpinLockRelease(&sl->mutex);
	return r;
}

void
rs_worker_request_sweep(void)
{
	request(offsetof(RsDbSlot, sweep_requested));
}

bool
rs_worker_sweep_requested(void)
{
	return take_request(offsetof(RsDbSlot, sweep_requested));
}

/* a background warm was queued: the worker looks at the queue next round */
void
rs_worker_request_warm(void)
{
	request(offsetof(RsDbSlot, warm_requested));
}

bool
rs_worker_warm_requested(void)
{
	return take_request(offsetof(RsDbSlot, warm_requested));
}

bool
rs_worker_pause_check(void)
{
	RsDbSlot   *sl = rs_my_slot();
	bool		paused;

	SpinLockAcquire(&sl->mutex);
	paused = sl->paused = sl->pause_requested;
	SpinLockRelease(&sl->mutex);
	return paused;
}

bool
rs_redis_run_id_changed(const char *run_id, char *previous, size_t len)
{
	RsDbSlot   *sl = rs_my_slot();
	bool		changed;

	SpinLockAcquire(&sl->mutex);
	strlcpy(previous, sl->run_id, len);
	changed = sl->run_id[0] != '\0' && strcmp(sl->run_id, run_id) != 0;
	strlcpy(sl->run_id, run_id, sizeof(sl->run_id));
	if (changed)
		sl->restart_pending = true;
	SpinLockRelease(&sl->mutex);
	return changed;
}

/*
 * Whether the work after a Redis restart is still to do.  In shared memory,
 * beside the run_id it follows: a worker that dies before it is done (or
 * fails) leaves it to the next, which would not see the run_id change again.
 */
bool
rs_redis_restart_pending(void)
{
	RsDbSlot   *sl = rs_my_slot();
	bool		pending;

	SpinLockAcquire(&sl->mutex);
	pending = sl->restart_pending;
	SpinLockRelease(&sl->mutex);
	return pending;
}

static void
set_restart_pending(bool pending)
{
	RsDbSlot   *sl = rs_my_slot();

	SpinLockAcquire(&sl->mutex);
	sl->restart_pending = pending;
	SpinLockRelease(&sl->mutex);
}

void
rs_redis_restart_done(void)
{
	set_restart_pending(false);
}

/* a restart the run_id in shared memory cannot show (it happened while the server was down) */
void
rs_redis_restart_set_pending(void)
{
	set_restart_pending(true);
}

static void
require_shmem(void)
{
	rs_require_preload("redis_sync.stats");
}

/*
 * worker_pause(timeout_ms int) RETURNS boolean: ask this database's worker
 * to stop delivering and wait (up to the timeout) until it has finished
 * what it was doing.  Returns true once it is idle (or not running).  The
 * pause lasts until worker_resume(), a server restart, or the end of the
 * database's worker slot (DROP EXTENSION).
 */
Datum
redis_sync_worker_pause(PG_FUNCTION_ARGS)
{
	int			timeout_ms = PG_GETARG_INT32(0);
	TimestampTz deadline;
	RsDbSlot   *sl;

	require_shmem();
	sl = rs_my_slot();
	SpinLockAcquire(&sl->mutex);
	sl->pause_requested = true;
	SpinLockRelease(&sl->mutex);
	rs_launcher_pause_at_commit(true);
	rs_worker_wake();
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	for (;;)
	{
		bool		done;

		SpinLockAcquire(&sl->mutex);
		done = sl->paused || sl->worker_latch == NULL;
		SpinLockRelease(&sl->mutex);
		if (done)
			PG_RETURN_BOOL(true);
		if (GetCurrentTimestamp() >= deadline)
			PG_RETURN_BOOL(false);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* worker_resume() */
Datum
redis_sync_worker_resume(PG_FUNCTION_ARGS)
{
	RsDbSlot   *sl;

	require_shmem();
	sl = rs_my_slot();
	SpinLockAcquire(&sl->mutex);
	sl->pause_requested = false;
	sl->paused = false;
	SpinLockRelease(&sl->mutex);
	rs_launcher_pause_at_commit(false);
	rs_worker_wake();
	PG_RETURN_VOID();
}
