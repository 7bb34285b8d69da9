/*-------------------------------------------------------------------------
 *
 * shmem.c
 *		Shared memory of redis_sync: the worker's latch, the circuit breaker,
 *		and statistics (redis_sync.stats).
 *
 * Statistics are counters per synced table (keyed by database and table
 * OID, at most RS_MAX_TABLES entries) plus a few global ones.  Backends
 * accumulate their per-table deltas locally and add them under one
 * exclusive LWLock acquisition at transaction end, so a commit costs one
 * lock, not one per row.  Counters live as long as the server: a restart
 * resets them (documented), and redis_sync.stats_reset() zeroes them.
 *
 * The circuit breaker counts consecutive connection-level failures to
 * Redis across all backends.  At redis_sync.circuit_failures it opens:
 * for redis_sync.circuit_cooldown backends do not try Redis at all (eventual
 * tables queue to the outbox at once, strict ones fail at once), while the
 * worker keeps probing; the first success anywhere closes it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "redis_sync.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(redis_sync_table_stats);
PG_FUNCTION_INFO_V1(redis_sync_global_stats);
PG_FUNCTION_INFO_V1(redis_sync_worker_restarts);
PG_FUNCTION_INFO_V1(redis_sync_worker_cluster);
PG_FUNCTION_INFO_V1(redis_sync_stats_reset);
PG_FUNCTION_INFO_V1(redis_sync_worker_pause);
PG_FUNCTION_INFO_V1(redis_sync_worker_resume);

#define RS_MAX_TABLES 1024
#define RS_ERRLEN 256

typedef struct TableStatsKey
{
	Oid			dbid;
	Oid			relid;
} TableStatsKey;

typedef struct TableStats
{
	TableStatsKey key;
	int64		counters[RS_NUM_COUNTERS];
	double		drain_lag;		/* seconds, write-behind */
	char		last_error[RS_ERRLEN];
	TimestampTz last_error_at;
} TableStats;

typedef struct RsShared
{
	LWLock	   *lock;
	slock_t		mutex;			/* protects the fields below */
	Latch	   *worker_latch;
	int			worker_pid;
	TimestampTz worker_started_at;
	char		run_id[48];
	uint64		flush_requested;	/* flush() generations asked for */
	uint64		flush_done;		/* generations the worker completed */
	int64		flush_applied;	/* rows applied by the last forced round */
	int			flush_failed;	/* tables that round could not drain */
	bool		flush_unreachable;	/* Redis could not be reached for it */
	bool		sweep_requested;	/* check in-flight markers at once */
	bool		pause_requested;
	bool		paused;			/* the worker acknowledged the pause */
	/* circuit breaker */
	int			failures;
	bool		open;
	TimestampTz opened_at;
	TimestampTz changed_at;
	char		last_error[RS_ERRLEN];
	TimestampTz last_error_at;
	/* global counters */
	TimestampTz incarnation;	/* set each time shared memory is (re)made */
	pg_atomic_uint64 round_trips;
	pg_atomic_uint64 worker_rounds;
	pg_atomic_uint64 circuit_opens;
	pg_atomic_uint64 worker_restarts;	/* workers started after the first */
	TimestampTz reset_at;
	char		cluster[2048];	/* Redis Cluster as the worker sees it (JSON), "" */
} RsShared;

static RsShared *rs_shared = NULL;
static HTAB *rs_tables = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* local deltas, flushed at transaction end */
typedef struct LocalStats
{
	Oid			relid;
	int64		counters[RS_NUM_COUNTERS];
	char	   *error;
	bool		has_lag;
	double		lag;
} LocalStats;

#define MAX_LOCAL 32
static LocalStats local[MAX_LOCAL];
static int	nlocal = 0;

static Size
rs_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(RsShared)),
					hash_estimate_size(RS_MAX_TABLES, sizeof(TableStats)));
}

static void
rs_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(rs_shmem_size());
	RequestNamedLWLockTranche("redis_sync", 1);
}

static void
rs_shmem_startup(void)
{
	bool		found;
	HASHCTL		ctl;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	rs_shared = ShmemInitStruct("redis_sync", sizeof(RsShared), &found);
	if (!found)
	{
		memset(rs_shared, 0, sizeof(RsShared));
		rs_shared->lock = &(GetNamedLWLockTranche("redis_sync"))->lock;
		SpinLockInit(&rs_shared->mutex);
		pg_atomic_init_u64(&rs_shared->round_trips, 0);
		pg_atomic_init_u64(&rs_shared->worker_rounds, 0);
		pg_atomic_init_u64(&rs_shared->circuit_opens, 0);
		pg_atomic_init_u64(&rs_shared->worker_restarts, 0);
		rs_shared->reset_at = GetCurrentTimestamp();
	}
	/* a crash restart remakes shared memory: a new incarnation */
	if (!found)
		rs_shared->incarnation = GetCurrentTimestamp();
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(TableStatsKey);
	ctl.entrysize = sizeof(TableStats);
	rs_tables = ShmemInitHash("redis_sync table stats", RS_MAX_TABLES, RS_MAX_TABLES,
							  &ctl, HASH_ELEM | HASH_BLOBS);
	LWLockRelease(AddinShmemInitLock);
}

void
rs_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = rs_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = rs_shmem_startup;
}

int64
rs_incarnation(void)
{
	return rs_shared ? (int64) rs_shared->incarnation : 0;
}

/* rows applied to relid (all tables when InvalidOid) since the counters started */
int64
rs_stats_applied(Oid relid)
{
	HASH_SEQ_STATUS status;
	TableStats *t;
	int64		n = 0;

	if (rs_shared == NULL)
		return 0;
	LWLockAcquire(rs_shared->lock, LW_SHARED);
	hash_seq_init(&status, rs_tables);
	while ((t = hash_seq_search(&status)) != NULL)
		if (t->key.dbid == MyDatabaseId && (relid == InvalidOid || t->key.relid == relid))
			n += t->counters[RS_C_APPLIED];
	LWLockRelease(rs_shared->lock);
	return n;
}

bool
rs_shmem_ready(void)
{
	return rs_shared != NULL;
}

/* ----------------------------------------------------------------
 * Statistics
 * ---------------------------------------------------------------- */

static LocalStats *
local_for(Oid relid)
{
	for (int i = 0; i < nlocal; i++)
		if (local[i].relid == relid)
			return &local[i];
	if (nlocal == MAX_LOCAL)
		rs_stats_flush();
	memset(&local[nlocal], 0, sizeof(LocalStats));
	local[nlocal].relid = relid;
	return &local[nlocal++];
}

void
rs_stats_add(Oid relid, RsCounter c, int64 n)
{
	if (rs_shared == NULL || n == 0)
		return;
	local_for(relid)->counters[c] += n;
}

void
rs_stats_set_lag(Oid relid, double seconds)
{
	LocalStats *l;

	if (rs_shared == NULL)
		return;
	l = local_for(relid);
	l->has_lag = true;
	l->lag = seconds;
}

void
rs_stats_error(Oid relid, const char *msg)
{
	LocalStats *l;

	if (rs_shared == NULL)
		return;
	l = local_for(relid);
	if (l->error)
		pfree(l->error);
	l->error = MemoryContextStrdup(TopMemoryContext, msg);
}

void
rs_stats_flush(void)
{
	TimestampTz now;

	if (rs_shared == NULL || nlocal == 0)
		return;
	now = GetCurrentTimestamp();
	LWLockAcquire(rs_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < nlocal; i++)
	{
		TableStatsKey key;
		TableStats *t;
		bool		found;

		key.dbid = MyDatabaseId;
		key.relid = local[i].relid;
		t = hash_search(rs_tables, &key, HASH_ENTER_NULL, &found);
		if (t == NULL)
			continue;			/* table full: counted nowhere */
		if (!found)
		{
			memset(((char *) t) + sizeof(TableStatsKey), 0, sizeof(TableStats) - sizeof(TableStatsKey));
		}
		for (int c = 0; c < RS_NUM_COUNTERS; c++)
			t->counters[c] += local[i].counters[c];
		if (local[i].has_lag)
			t->drain_lag = local[i].lag;
		if (local[i].error)
		{
			strlcpy(t->last_error, local[i].error, RS_ERRLEN);
			t->last_error_at = now;
		}
	}
	LWLockRelease(rs_shared->lock);
	for (int i = 0; i < nlocal; i++)
		if (local[i].error)
			pfree(local[i].error);
	nlocal = 0;
}

void
rs_stats_round_trip(void)
{
	if (rs_shared)
		pg_atomic_fetch_add_u64(&rs_shared->round_trips, 1);
}

void
rs_stats_worker_round(void)
{
	if (rs_shared)
		pg_atomic_fetch_add_u64(&rs_shared->worker_rounds, 1);
}

/* ----------------------------------------------------------------
 * Circuit breaker
 * ---------------------------------------------------------------- */

bool
rs_circuit_is_open(void)
{
	bool		open;
	TimestampTz opened;

	if (rs_shared == NULL)
		return false;
	SpinLockAcquire(&rs_shared->mutex);
	open = rs_shared->open;
	opened = rs_shared->opened_at;
	SpinLockRelease(&rs_shared->mutex);
	if (!open)
		return false;
	/* after the cool-down one caller may try again (half-open) */
	if (TimestampDifferenceExceeds(opened, GetCurrentTimestamp(), rs_circuit_cooldown_ms))
	{
		SpinLockAcquire(&rs_shared->mutex);
		rs_shared->opened_at = GetCurrentTimestamp();	/* others keep waiting */
		SpinLockRelease(&rs_shared->mutex);
		return false;
	}
	return true;
}

void
rs_circuit_success(void)
{
	if (rs_shared == NULL)
		return;
	/* unlocked peek: the common case is a closed circuit with no failures */
	if (rs_shared->failures == 0 && !rs_shared->open)
		return;
	SpinLockAcquire(&rs_shared->mutex);
	rs_shared->failures = 0;
	if (rs_shared->open)
	{
		rs_shared->open = false;
		rs_shared->changed_at = GetCurrentTimestamp();
	}
	SpinLockRelease(&rs_shared->mutex);
}

void
rs_circuit_failure(const char *msg)
{
	TimestampTz now;
	bool		opened = false;

	if (rs_shared == NULL)
		return;
	now = GetCurrentTimestamp();
	SpinLockAcquire(&rs_shared->mutex);
	rs_shared->failures++;
	strlcpy(rs_shared->last_error, msg, RS_ERRLEN);
	rs_shared->last_error_at = now;
	if (!rs_shared->open && rs_circuit_failures_threshold > 0 &&
		rs_shared->failures >= rs_circuit_failures_threshold)
	{
		rs_shared->open = true;
		rs_shared->opened_at = now;
		rs_shared->changed_at = now;
		opened = true;
	}
	else if (rs_shared->open)
		rs_shared->opened_at = now;
	SpinLockRelease(&rs_shared->mutex);
	if (opened)
		pg_atomic_fetch_add_u64(&rs_shared->circuit_opens, 1);
}

TimestampTz
rs_circuit_opened_at(void)
{
	TimestampTz t;

	if (rs_shared == NULL)
		return 0;
	SpinLockAcquire(&rs_shared->mutex);
	t = rs_shared->changed_at;
	SpinLockRelease(&rs_shared->mutex);
	return t;
}

int
rs_circuit_failures(void)
{
	int			n;

	if (rs_shared == NULL)
		return 0;
	SpinLockAcquire(&rs_shared->mutex);
	n = rs_shared->failures;
	SpinLockRelease(&rs_shared->mutex);
	return n;
}

/* ----------------------------------------------------------------
 * Worker latch
 * ---------------------------------------------------------------- */

void
rs_worker_register_latch(void)
{
	bool		restart;

	SpinLockAcquire(&rs_shared->mutex);
	restart = rs_shared->worker_started_at != 0;
	rs_shared->worker_latch = MyLatch;
	rs_shared->worker_pid = MyProcPid;
	rs_shared->worker_started_at = GetCurrentTimestamp();
	SpinLockRelease(&rs_shared->mutex);
	if (restart)
		pg_atomic_fetch_add_u64(&rs_shared->worker_restarts, 1);
}

void
rs_worker_unregister_latch(void)
{
	if (rs_shared == NULL)
		return;
	SpinLockAcquire(&rs_shared->mutex);
	if (rs_shared->worker_pid == MyProcPid)
	{
		rs_shared->worker_latch = NULL;
		rs_shared->worker_pid = 0;
	}
	SpinLockRelease(&rs_shared->mutex);
}

bool
rs_worker_running(void)
{
	bool		running;

	if (rs_shared == NULL)
		return false;
	SpinLockAcquire(&rs_shared->mutex);
	running = rs_shared->worker_latch != NULL;
	SpinLockRelease(&rs_shared->mutex);
	return running;
}

void
rs_worker_wake(void)
{
	Latch	   *latch;

	if (rs_shared == NULL)
		return;
	SpinLockAcquire(&rs_shared->mutex);
	latch = rs_shared->worker_latch;
	SpinLockRelease(&rs_shared->mutex);
	if (latch)
		SetLatch(latch);
}

/* worker: the flush generation to serve (0: none pending) */
uint64
rs_flush_pending(void)
{
	uint64		req;

	SpinLockAcquire(&rs_shared->mutex);
	req = rs_shared->flush_requested > rs_shared->flush_done ? rs_shared->flush_requested : 0;
	SpinLockRelease(&rs_shared->mutex);
	return req;
}

void
rs_flush_completed(uint64 generation, int64 applied, int failed)
{
	SpinLockAcquire(&rs_shared->mutex);
	if (generation > rs_shared->flush_done)
	{
		rs_shared->flush_done = generation;
		rs_shared->flush_applied = applied;
		rs_shared->flush_failed = failed;
		rs_shared->flush_unreachable = false;
	}
	SpinLockRelease(&rs_shared->mutex);
}

/*
 * worker: the round could not reach Redis; flush() callers waiting for
 * generations up to this one get an error at once instead of waiting for
 * redis_sync.flush_timeout.
 */
void
rs_flush_unreachable(uint64 generation)
{
	SpinLockAcquire(&rs_shared->mutex);
	if (generation > rs_shared->flush_done)
	{
		rs_shared->flush_done = generation;
		rs_shared->flush_applied = 0;
		rs_shared->flush_failed = 0;
		rs_shared->flush_unreachable = true;
	}
	SpinLockRelease(&rs_shared->mutex);
}

/* the circuit breaker's state, without taking the half-open turn */
static bool
circuit_open_peek(void)
{
	bool		open;

	SpinLockAcquire(&rs_shared->mutex);
	open = rs_shared->open;
	SpinLockRelease(&rs_shared->mutex);
	return open;
}

static void
report_unreachable(void)
{
	char		msg[RS_ERRLEN];

	SpinLockAcquire(&rs_shared->mutex);
	strlcpy(msg, rs_shared->last_error, sizeof(msg));
	SpinLockRelease(&rs_shared->mutex);
	ereport(ERROR,
			(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
			 errmsg("could not drain write-behind tables: Redis is unreachable"),
			 msg[0] ? errdetail("Last connection error: %s", msg) : 0,
			 errhint("The values stay in Redis and are drained when it answers again; see redis_sync.worker_stats.")));
}

/*
 * Ask the worker for a forced drain round and wait for it; returns the rows
 * it applied.  ERROR when the worker is not running or does not answer in
 * timeout_ms.
 */
int64
rs_flush_via_worker(Oid relid, int timeout_ms)
{
	uint64		mine;
	int64		before = rs_stats_applied(relid);
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	rs_require_preload("redis_sync.flush() of write-behind tables");

	/*
	 * The caller probed Redis while the circuit was open (deliver_now()):
	 * still open means Redis did not answer just now.  Waiting for the
	 * worker would only wait for it to fail the same way.
	 */
	if (circuit_open_peek())
		report_unreachable();
	SpinLockAcquire(&rs_shared->mutex);
	mine = ++rs_shared->flush_requested;
	SpinLockRelease(&rs_shared->mutex);
	for (;;)
	{
		bool		done;
		bool		running;
		bool		paused;
		bool		unreachable;

		rs_worker_wake();
		SpinLockAcquire(&rs_shared->mutex);
		done = rs_shared->flush_done >= mine;
		running = rs_shared->worker_latch != NULL;
		paused = rs_shared->pause_requested;
		unreachable = rs_shared->flush_unreachable;
		SpinLockRelease(&rs_shared->mutex);
		if (done && unreachable)
			report_unreachable();
		if (done)
		{
			int			failed;

			SpinLockAcquire(&rs_shared->mutex);
			failed = rs_shared->flush_failed;
			SpinLockRelease(&rs_shared->mutex);
			if (failed > 0)
				ereport(WARNING,
						(errmsg("%d write-behind tables could not be drained; they are retried", failed),
						 errhint("See last_error in redis_sync.stats and the server log.")));
			return rs_stats_applied(relid) - before;
		}
		/* a worker that is (re)starting gets a few seconds to appear */
		if (!running && TimestampDifferenceExceeds(deadline - (int64) timeout_ms * 1000,
												   GetCurrentTimestamp(), Min(timeout_ms, 10000)))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the redis_sync background worker is not running"),
					 errhint("Check the server log; the worker runs in database \"%s\".", rs_database)));
		if (paused)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the redis_sync background worker is paused"),
					 errhint("Call redis_sync.worker_resume().")));
		/* Redis went away while we waited: the worker cannot drain */
		if (circuit_open_peek())
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

void
rs_worker_request_sweep(void)
{
	if (rs_shared == NULL)
		return;
	SpinLockAcquire(&rs_shared->mutex);
	rs_shared->sweep_requested = true;
	SpinLockRelease(&rs_shared->mutex);
	rs_worker_wake();
}

bool
rs_worker_sweep_requested(void)
{
	bool		r;

	SpinLockAcquire(&rs_shared->mutex);
	r = rs_shared->sweep_requested;
	rs_shared->sweep_requested = false;
	SpinLockRelease(&rs_shared->mutex);
	return r;
}

bool
rs_worker_pause_check(void)
{
	bool		paused;

	SpinLockAcquire(&rs_shared->mutex);
	paused = rs_shared->paused = rs_shared->pause_requested;
	SpinLockRelease(&rs_shared->mutex);
	return paused;
}

bool
rs_redis_run_id_changed(const char *run_id, char *previous, size_t len)
{
	bool		changed;

	SpinLockAcquire(&rs_shared->mutex);
	strlcpy(previous, rs_shared->run_id, len);
	changed = rs_shared->run_id[0] != '\0' && strcmp(rs_shared->run_id, run_id) != 0;
	strlcpy(rs_shared->run_id, run_id, sizeof(rs_shared->run_id));
	SpinLockRelease(&rs_shared->mutex);
	return changed;
}

/* ----------------------------------------------------------------
 * SQL functions behind redis_sync.stats
 * ---------------------------------------------------------------- */

static void
require_shmem(void)
{
	rs_require_preload("redis_sync.stats");
}

/* _table_stats(): one row per table of this database */
Datum
redis_sync_table_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASH_SEQ_STATUS status;
	TableStats *t;

	require_shmem();
	InitMaterializedSRF(fcinfo, 0);
	LWLockAcquire(rs_shared->lock, LW_SHARED);
	hash_seq_init(&status, rs_tables);
	while ((t = hash_seq_search(&status)) != NULL)
	{
		Datum		values[RS_NUM_COUNTERS + 4];
		bool		nulls[RS_NUM_COUNTERS + 4] = {0};
		int			k = 0;

		if (t->key.dbid != MyDatabaseId)
			continue;
		values[k++] = ObjectIdGetDatum(t->key.relid);
		for (int c = 0; c < RS_NUM_COUNTERS; c++)
			values[k++] = Int64GetDatum(t->counters[c]);
		values[k] = Float8GetDatum(t->drain_lag);
		nulls[k++] = t->counters[RS_C_CLAIMED] == 0;
		values[k] = CStringGetTextDatum(t->last_error);
		nulls[k++] = t->last_error[0] == '\0';
		values[k] = TimestampTzGetDatum(t->last_error_at);
		nulls[k++] = t->last_error_at == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(rs_shared->lock);
	return (Datum) 0;
}

/* _global_stats(): one row */
Datum
redis_sync_global_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[12];
	bool		nulls[12] = {0};
	RsShared	s;

	require_shmem();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	SpinLockAcquire(&rs_shared->mutex);
	memcpy(&s, rs_shared, sizeof(RsShared));
	SpinLockRelease(&rs_shared->mutex);

	values[0] = Int64GetDatum((int64) pg_atomic_read_u64(&rs_shared->round_trips));
	values[1] = Int64GetDatum((int64) pg_atomic_read_u64(&rs_shared->worker_rounds));
	values[2] = BoolGetDatum(s.worker_latch != NULL);
	values[3] = Int32GetDatum(s.worker_pid);
	nulls[3] = s.worker_pid == 0;
	values[4] = CStringGetTextDatum(s.open ? "open" : "closed");
	if (s.pause_requested)
		values[2] = BoolGetDatum(false);
	values[5] = TimestampTzGetDatum(s.changed_at);
	nulls[5] = s.changed_at == 0;
	values[6] = Int32GetDatum(s.failures);
	values[7] = Int64GetDatum((int64) pg_atomic_read_u64(&rs_shared->circuit_opens));
	values[8] = CStringGetTextDatum(s.last_error);
	nulls[8] = s.last_error[0] == '\0';
	values[9] = TimestampTzGetDatum(s.last_error_at);
	nulls[9] = s.last_error_at == 0;
	values[10] = CStringGetTextDatum(s.run_id);
	nulls[10] = s.run_id[0] == '\0';
	values[11] = TimestampTzGetDatum(s.reset_at);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* the worker publishes what it sees of a Redis Cluster ("" on a single Redis) */
void
rs_stats_set_cluster(const char *json)
{
	if (rs_shared == NULL)
		return;
	SpinLockAcquire(&rs_shared->mutex);
	strlcpy(rs_shared->cluster, json ? json : "", sizeof(rs_shared->cluster));
	SpinLockRelease(&rs_shared->mutex);
}

/* _worker_cluster(): that JSON, or NULL */
Datum
redis_sync_worker_cluster(PG_FUNCTION_ARGS)
{
	char		buf[2048];

	if (rs_shared == NULL)
		PG_RETURN_NULL();
	SpinLockAcquire(&rs_shared->mutex);
	memcpy(buf, rs_shared->cluster, sizeof(buf));
	SpinLockRelease(&rs_shared->mutex);
	if (buf[0] == '\0')
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(buf));
}

/* _worker_restarts(): workers started after the first since shared memory was made */
Datum
redis_sync_worker_restarts(PG_FUNCTION_ARGS)
{
	require_shmem();
	PG_RETURN_INT64((int64) pg_atomic_read_u64(&rs_shared->worker_restarts));
}

/* stats_reset() */
Datum
redis_sync_stats_reset(PG_FUNCTION_ARGS)
{
	HASH_SEQ_STATUS status;
	TableStats *t;

	require_shmem();
	LWLockAcquire(rs_shared->lock, LW_EXCLUSIVE);
	hash_seq_init(&status, rs_tables);
	while ((t = hash_seq_search(&status)) != NULL)
		hash_search(rs_tables, &t->key, HASH_REMOVE, NULL);
	pg_atomic_write_u64(&rs_shared->round_trips, 0);
	pg_atomic_write_u64(&rs_shared->worker_rounds, 0);
	pg_atomic_write_u64(&rs_shared->circuit_opens, 0);
	pg_atomic_write_u64(&rs_shared->worker_restarts, 0);
	SpinLockAcquire(&rs_shared->mutex);
	rs_shared->last_error[0] = '\0';
	rs_shared->last_error_at = 0;
	rs_shared->reset_at = GetCurrentTimestamp();
	SpinLockRelease(&rs_shared->mutex);
	LWLockRelease(rs_shared->lock);
	nlocal = 0;
	PG_RETURN_VOID();
}

/*
 * worker_pause(timeout_ms int) RETURNS boolean: ask the worker to stop
 * delivering and wait (up to the timeout) until it has finished what it was
 * doing.  Returns true once it is idle (or not running).  The pause lasts
 * until worker_resume() or a server restart.
 */
Datum
redis_sync_worker_pause(PG_FUNCTION_ARGS)
{
	int			timeout_ms = PG_GETARG_INT32(0);
	TimestampTz deadline;

	require_shmem();
	SpinLockAcquire(&rs_shared->mutex);
	rs_shared->pause_requested = true;
	SpinLockRelease(&rs_shared->mutex);
	rs_worker_wake();
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	for (;;)
	{
		bool		done;

		SpinLockAcquire(&rs_shared->mutex);
		done = rs_shared->paused || rs_shared->worker_latch == NULL;
		SpinLockRelease(&rs_shared->mutex);
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
	require_shmem();
	SpinLockAcquire(&rs_shared->mutex);
	rs_shared->pause_requested = false;
	rs_shared->paused = false;
	SpinLockRelease(&rs_shared->mutex);
	rs_worker_wake();
	PG_RETURN_VOID();
}
