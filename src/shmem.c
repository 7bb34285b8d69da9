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
 * Everything else is per database (RsDbSlot in shmem.h, one slot per
 * database with a worker; launcher.c assigns them): a backend or worker
 * finds its database's slot with my_slot().
 *
 * The circuit breaker counts consecutive connection-level failures to
 * Redis across the backends and the worker of one database.  At redis_sync.circuit_failures it opens:
 * for redis_sync.circuit_cooldown backends do not try Redis at all (eventual
 * tables queue to the outbox at once, strict ones fail at once), while the
 * worker keeps probing; the first success anywhere closes it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/dbcommands.h"
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
PG_FUNCTION_INFO_V1(redis_sync_database_stats);

#define RS_MAX_TABLES 1024

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

/*
 * Server-wide part.  The per-database part (worker latch, circuit breaker,
 * flush handshake, pause, counters) lives in RsDbSlot (shmem.h), one per
 * database that has, or wants, a worker: rs_shared->slots[nslots], managed
 * by the launcher (launcher.c).  Backends of a database without a slot use
 * rs_shared->nodb, which never has a worker.
 */
typedef struct RsShared
{
	LWLock	   *lock;
	slock_t		mutex;			/* protects slot allocation and the fields below */
	Latch	   *launcher_latch;
	int			launcher_pid;
	TimestampTz incarnation;	/* set each time shared memory is (re)made */
	TimestampTz reset_at;
	char		cluster[2048];	/* Redis Cluster as the worker sees it (JSON), "" */
	int			nslots;
	RsDbSlot	nodb;
	RsDbSlot	slots[FLEXIBLE_ARRAY_MEMBER];
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

static int
slot_count(void)
{
	return rs_max_workers + RS_EXTRA_SLOTS;
}

static Size
rs_shmem_size(void)
{
	return add_size(MAXALIGN(add_size(offsetof(RsShared, slots),
									  mul_size(slot_count(), sizeof(RsDbSlot)))),
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
slot_init(RsDbSlot *slot)
{
	memset(slot, 0, sizeof(RsDbSlot));
	SpinLockInit(&slot->mutex);
	pg_atomic_init_u64(&slot->round_trips, 0);
	pg_atomic_init_u64(&slot->worker_rounds, 0);
	pg_atomic_init_u64(&slot->circuit_opens, 0);
}

static void
rs_shmem_startup(void)
{
	bool		found;
	HASHCTL		ctl;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	rs_shared = ShmemInitStruct("redis_sync",
								add_size(offsetof(RsShared, slots),
										 mul_size(slot_count(), sizeof(RsDbSlot))),
								&found);
	if (!found)
	{
		memset(rs_shared, 0, offsetof(RsShared, slots));
		rs_shared->lock = &(GetNamedLWLockTranche("redis_sync"))->lock;
		SpinLockInit(&rs_shared->mutex);
		rs_shared->nslots = slot_count();
		slot_init(&rs_shared->nodb);
		for (int i = 0; i < rs_shared->nslots; i++)
			slot_init(&rs_shared->slots[i]);
		rs_shared->reset_at = GetCurrentTimestamp();
		/* a crash restart remakes shared memory: a new incarnation */
		rs_shared->incarnation = GetCurrentTimestamp();
	}
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

/* ----------------------------------------------------------------
 * Database slots
 * ---------------------------------------------------------------- */

static RsDbSlot *worker_slot = NULL;	/* set in a worker by rs_worker_attach() */
static int	cached_slot = -1;

int
rs_nslots(void)
{
	return rs_shared ? rs_shared->nslots : 0;
}

RsDbSlot *
rs_slot(int i)
{
	return &rs_shared->slots[i];
}

/* the slot of a database, NULL when it has none (unlocked look-up) */
RsDbSlot *
rs_slot_for_db(Oid dbid)
{
	if (rs_shared == NULL || !OidIsValid(dbid))
		return NULL;
	for (int i = 0; i < rs_shared->nslots; i++)
		if (rs_shared->slots[i].dbid == dbid)
			return &rs_shared->slots[i];
	return NULL;
}

/*
 * The slot of dbid, taking a free one if it has none; NULL when all are
 * taken.  "want" is set under the locks, so the launcher cannot free the
 * slot between the look-up and the request (a CREATE EXTENSION's signal
 * would be lost): notify (CREATE EXTENSION committed) also counts in
 * notifies; a probe marks a newly taken slot probing and leaves an
 * existing one alone.
 */
RsDbSlot *
rs_slot_acquire(Oid dbid, bool probe)
{
	RsDbSlot   *slot;
	RsDbSlot   *free_slot = NULL;

	SpinLockAcquire(&rs_shared->mutex);
	for (int i = 0; i < rs_shared->nslots; i++)
	{
		if (rs_shared->slots[i].dbid == dbid)
		{
			slot = &rs_shared->slots[i];
			if (!probe)
			{
				SpinLockAcquire(&slot->mutex);
				slot->want = true;
				slot->notifies++;
				slot->probing = false;	/* the extension is there */
				SpinLockRelease(&slot->mutex);
			}
			SpinLockRelease(&rs_shared->mutex);
			return slot;
		}
		if (free_slot == NULL && !OidIsValid(rs_shared->slots[i].dbid))
			free_slot = &rs_shared->slots[i];
	}
	slot = free_slot;
	if (slot != NULL)
	{
		/* the mutex stays as it is: a backend may still look at the slot */
		uint32		generation;

		SpinLockAcquire(&slot->mutex);
		generation = slot->generation + 1;
		memset(((char *) slot) + offsetof(RsDbSlot, generation), 0,
			   offsetof(RsDbSlot, round_trips) - offsetof(RsDbSlot, generation));
		slot->generation = generation;
		slot->dbid = dbid;
		slot->want = true;
		if (probe)
			slot->probing = true;
		else
			slot->notifies++;
		SpinLockRelease(&slot->mutex);
		pg_atomic_write_u64(&slot->round_trips, 0);
		pg_atomic_write_u64(&slot->worker_rounds, 0);
		pg_atomic_write_u64(&slot->circuit_opens, 0);
	}
	SpinLockRelease(&rs_shared->mutex);
	return slot;
}

/*
 * End a slot nobody wants any more (launcher); false when it was wanted
 * again (CREATE EXTENSION), held, reused or has a worker meanwhile.
 */
bool
rs_slot_free(RsDbSlot *slot, uint32 generation)
{
	bool		freed;

	SpinLockAcquire(&rs_shared->mutex);
	SpinLockAcquire(&slot->mutex);
	freed = OidIsValid(slot->dbid) && slot->generation == generation &&
		!slot->want && !slot->hold && slot->worker_pid == 0;
	if (freed)
	{
		slot->dbid = InvalidOid;
		slot->worker_latch = NULL;
	}
	SpinLockRelease(&slot->mutex);
	SpinLockRelease(&rs_shared->mutex);
	return freed;
}

/* this process's database's slot, or the slot of databases without a worker */
static RsDbSlot *
my_slot(void)
{
	RsDbSlot   *slot;

	if (worker_slot != NULL)
		return worker_slot;
	if (cached_slot >= 0 && OidIsValid(MyDatabaseId) &&
		rs_shared->slots[cached_slot].dbid == MyDatabaseId)
		return &rs_shared->slots[cached_slot];
	slot = rs_slot_for_db(MyDatabaseId);
	if (slot == NULL)
		return &rs_shared->nodb;
	cached_slot = slot - rs_shared->slots;
	return slot;
}

void
rs_launcher_set_latch(bool attach)
{
	SpinLockAcquire(&rs_shared->mutex);
	rs_shared->launcher_latch = attach ? MyLatch : NULL;
	rs_shared->launcher_pid = attach ? MyProcPid : 0;
	SpinLockRelease(&rs_shared->mutex);
}

void
rs_launcher_wake(void)
{
	Latch	   *latch;

	if (rs_shared == NULL)
		return;
	SpinLockAcquire(&rs_shared->mutex);
	latch = rs_shared->launcher_latch;
	SpinLockRelease(&rs_shared->mutex);
	if (latch)
		SetLatch(latch);
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
		pg_atomic_fetch_add_u64(&my_slot()->round_trips, 1);
}

void
rs_stats_worker_round(void)
{
	if (rs_shared)
		pg_atomic_fetch_add_u64(&my_slot()->worker_rounds, 1);
}

/* ----------------------------------------------------------------
 * Circuit breaker (of this database)
 * ---------------------------------------------------------------- */

bool
rs_circuit_is_open(void)
{
	RsDbSlot   *sl;
	bool		open;
	TimestampTz opened;

	if (rs_shared == NULL)
		return false;
	sl = my_slot();
	SpinLockAcquire(&sl->mutex);
	open = sl->open;
	opened = sl->opened_at;
	SpinLockRelease(&sl->mutex);
	if (!open)
		return false;
	/* after the cool-down one caller may try again (half-open) */
	if (TimestampDifferenceExceeds(opened, GetCurrentTimestamp(), rs_circuit_cooldown_ms))
	{
		SpinLockAcquire(&sl->mutex);
		sl->opened_at = GetCurrentTimestamp();	/* others keep waiting */
		SpinLockRelease(&sl->mutex);
		return false;
	}
	return true;
}

void
rs_circuit_success(void)
{
	RsDbSlot   *sl;

	if (rs_shared == NULL)
		return;
	sl = my_slot();
	/* unlocked peek: the common case is a closed circuit with no failures */
	if (sl->failures == 0 && !sl->open)
		return;
	SpinLockAcquire(&sl->mutex);
	sl->failures = 0;
	if (sl->open)
	{
		sl->open = false;
		sl->changed_at = GetCurrentTimestamp();
	}
	SpinLockRelease(&sl->mutex);
}

void
rs_circuit_failure(const char *msg)
{
	RsDbSlot   *sl;
	TimestampTz now;
	bool		opened = false;

	if (rs_shared == NULL)
		return;
	sl = my_slot();
	now = GetCurrentTimestamp();
	SpinLockAcquire(&sl->mutex);
	sl->failures++;
	strlcpy(sl->last_error, msg, RS_ERRLEN);
	sl->last_error_at = now;
	if (!sl->open && rs_circuit_failures_threshold > 0 &&
		sl->failures >= rs_circuit_failures_threshold)
	{
		sl->open = true;
		sl->opened_at = now;
		sl->changed_at = now;
		opened = true;
	}
	else if (sl->open)
		sl->opened_at = now;
	SpinLockRelease(&sl->mutex);
	if (opened)
		pg_atomic_fetch_add_u64(&sl->circuit_opens, 1);
}

TimestampTz
rs_circuit_opened_at(void)
{
	RsDbSlot   *sl;
	TimestampTz t;

	if (rs_shared == NULL)
		return 0;
	sl = my_slot();
	SpinLockAcquire(&sl->mutex);
	t = sl->changed_at;
	SpinLockRelease(&sl->mutex);
	return t;
}

int
rs_circuit_failures(void)
{
	RsDbSlot   *sl;
	int			n;

	if (rs_shared == NULL)
		return 0;
	sl = my_slot();
	SpinLockAcquire(&sl->mutex);
	n = sl->failures;
	SpinLockRelease(&sl->mutex);
	return n;
}

/* ----------------------------------------------------------------
 * The worker of a database: latch and identity
 * ---------------------------------------------------------------- */

/*
 * A worker started by the launcher for slot slotno takes it over; false
 * when the slot was given to another database meanwhile or is held (DROP
 * DATABASE), and the worker must exit.
 */
bool
rs_worker_attach(int slotno, Oid dbid, uint32 generation)
{
	RsDbSlot   *sl;

	if (rs_shared == NULL || slotno < 0 || slotno >= rs_shared->nslots)
		return false;
	sl = &rs_shared->slots[slotno];
	SpinLockAcquire(&sl->mutex);
	if (sl->dbid != dbid || sl->generation != generation || sl->hold ||
		(sl->worker_pid != 0 && sl->worker_pid != MyProcPid))
	{
		SpinLockRelease(&sl->mutex);
		return false;
	}
	sl->worker_latch = MyLatch;
	sl->worker_pid = MyProcPid;
	sl->worker_started_at = GetCurrentTimestamp();
	sl->worker_starts++;
	SpinLockRelease(&sl->mutex);
	worker_slot = sl;
	return true;
}

RsDbSlot *
rs_worker_slot(void)
{
	return worker_slot;
}

void
rs_worker_unregister_latch(void)
{
	RsDbSlot   *sl = worker_slot;

	if (rs_shared == NULL || sl == NULL)
		return;
	SpinLockAcquire(&sl->mutex);
	if (sl->worker_pid == MyProcPid)
	{
		sl->worker_latch = NULL;
		sl->worker_pid = 0;
		sl->paused = false;
	}
	SpinLockRelease(&sl->mutex);
	rs_launcher_wake();
}

bool
rs_worker_running(void)
{
	RsDbSlot   *sl;
	bool		running;

	if (rs_shared == NULL)
		return false;
	sl = my_slot();
	SpinLockAcquire(&sl->mutex);
	running = sl->worker_latch != NULL;
	SpinLockRelease(&sl->mutex);
	return running;
}

void
rs_worker_wake(void)
{
	RsDbSlot   *sl;
	Latch	   *latch;

	if (rs_shared == NULL)
		return;
	sl = my_slot();
	SpinLockAcquire(&sl->mutex);
	latch = sl->worker_latch;
	SpinLockRelease(&sl->mutex);
	if (latch)
		SetLatch(latch);
}

/* worker: the flush generation to serve (0: none pending) */
uint64
rs_flush_pending(void)
{
	RsDbSlot   *sl = my_slot();
	uint64		req;

	SpinLockAcquire(&sl->mutex);
	req = sl->flush_requested > sl->flush_done ? sl->flush_requested : 0;
	SpinLockRelease(&sl->mutex);
	return req;
}

void
rs_flush_completed(uint64 generation, int64 applied, int failed)
{
	RsDbSlot   *sl = my_slot();

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
	RsDbSlot   *sl = my_slot();

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

/* the circuit breaker's state, without taking the half-open turn */
static bool
circuit_open_peek(void)
{
	RsDbSlot   *sl = my_slot();
	bool		open;

	SpinLockAcquire(&sl->mutex);
	open = sl->open;
	SpinLockRelease(&sl->mutex);
	return open;
}

static void
report_unreachable(void)
{
	RsDbSlot   *sl = my_slot();
	char		msg[RS_ERRLEN];

	SpinLockAcquire(&sl->mutex);
	strlcpy(msg, sl->last_error, sizeof(msg));
	SpinLockRelease(&sl->mutex);
	ereport(ERROR,
			(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
			 errmsg("could not drain write-behind tables: Redis is unreachable"),
			 msg[0] ? errdetail("Last connection error: %s", msg) : 0,
			 errhint("The values stay in Redis and are drained when it answers again; see redis_sync.worker_stats.")));
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
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	rs_require_preload("redis_sync.flush() of write-behind tables");
	sl = my_slot();

	/*
	 * The caller probed Redis while the circuit was open (deliver_now()):
	 * still open means Redis did not answer just now.  Waiting for the
	 * worker would only wait for it to fail the same way.
	 */
	if (circuit_open_peek())
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
		if (sl == &rs_shared->nodb && my_slot() != sl)
		{
			sl = my_slot();
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
			if (failed > 0)
				ereport(WARNING,
						(errmsg("%d write-behind tables could not be drained; they are retried", failed),
						 errhint("See last_error in redis_sync.stats and the server log.")));
			return rs_stats_applied(relid) - before;
		}
		/* a database left without a worker: say so at once */
		if (!running && sl != &rs_shared->nodb)
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
	RsDbSlot   *sl;

	if (rs_shared == NULL)
		return;
	sl = my_slot();
	SpinLockAcquire(&sl->mutex);
	sl->sweep_requested = true;
	SpinLockRelease(&sl->mutex);
	rs_worker_wake();
}

bool
rs_worker_sweep_requested(void)
{
	RsDbSlot   *sl = my_slot();
	bool		r;

	SpinLockAcquire(&sl->mutex);
	r = sl->sweep_requested;
	sl->sweep_requested = false;
	SpinLockRelease(&sl->mutex);
	return r;
}

bool
rs_worker_pause_check(void)
{
	RsDbSlot   *sl = my_slot();
	bool		paused;

	SpinLockAcquire(&sl->mutex);
	paused = sl->paused = sl->pause_requested;
	SpinLockRelease(&sl->mutex);
	return paused;
}

bool
rs_redis_run_id_changed(const char *run_id, char *previous, size_t len)
{
	RsDbSlot   *sl = my_slot();
	bool		changed;

	SpinLockAcquire(&sl->mutex);
	strlcpy(previous, sl->run_id, len);
	changed = sl->run_id[0] != '\0' && strcmp(sl->run_id, run_id) != 0;
	strlcpy(sl->run_id, run_id, sizeof(sl->run_id));
	SpinLockRelease(&sl->mutex);
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

/* the 12 columns of _global_stats() for one database's slot (a copy) */
static void
slot_row(RsDbSlot *sl, Datum *values, bool *nulls)
{
	RsDbSlot	s;

	SpinLockAcquire(&sl->mutex);
	memcpy(&s, sl, sizeof(RsDbSlot));
	SpinLockRelease(&sl->mutex);

	values[0] = Int64GetDatum((int64) pg_atomic_read_u64(&sl->round_trips));
	values[1] = Int64GetDatum((int64) pg_atomic_read_u64(&sl->worker_rounds));
	values[2] = BoolGetDatum(s.worker_latch != NULL && !s.pause_requested);
	values[3] = Int32GetDatum(s.worker_pid);
	nulls[3] = s.worker_pid == 0;
	values[4] = CStringGetTextDatum(s.open ? "open" : "closed");
	values[5] = TimestampTzGetDatum(s.changed_at);
	nulls[5] = s.changed_at == 0;
	values[6] = Int32GetDatum(s.failures);
	values[7] = Int64GetDatum((int64) pg_atomic_read_u64(&sl->circuit_opens));
	values[8] = CStringGetTextDatum(s.last_error);
	nulls[8] = s.last_error[0] == '\0';
	values[9] = TimestampTzGetDatum(s.last_error_at);
	nulls[9] = s.last_error_at == 0;
	values[10] = CStringGetTextDatum(s.run_id);
	nulls[10] = s.run_id[0] == '\0';
	SpinLockAcquire(&rs_shared->mutex);
	values[11] = TimestampTzGetDatum(rs_shared->reset_at);
	SpinLockRelease(&rs_shared->mutex);
}

static int64
slot_restarts(RsDbSlot *sl)
{
	uint64		n;

	SpinLockAcquire(&sl->mutex);
	n = sl->worker_starts;
	SpinLockRelease(&sl->mutex);
	return n > 1 ? (int64) (n - 1) : 0;
}

/* what the worker of a database is doing, for worker_stats.worker_state */
static const char *
slot_state(RsDbSlot *sl, char *buf, size_t len)
{
	RsDbSlot	s;

	SpinLockAcquire(&sl->mutex);
	memcpy(&s, sl, sizeof(RsDbSlot));
	SpinLockRelease(&sl->mutex);
	if (sl == &rs_shared->nodb)
		return rs_database_served(MyDatabaseId) ? "no worker yet" : "not in redis_sync.database";
	if (s.hold)
		return "stopped for ALTER/DROP DATABASE";
	if (s.worker_latch != NULL)
		return s.pause_requested ? "paused" : "running";
	if (s.no_worker)
	{
		snprintf(buf, len, "no worker: %s", s.no_worker_reason);
		return buf;
	}
	return s.want ? "starting" : "stopping";
}

/* _global_stats(): one row, this database's worker */
Datum
redis_sync_global_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[12];
	bool		nulls[12] = {0};

	require_shmem();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	slot_row(my_slot(), values, nulls);
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

/*
 * _database_stats(): one row per database with the extension that the
 * launcher knows of (and always one for the current database), its
 * worker and circuit breaker: the columns of _global_stats(), then datid,
 * database, worker_restarts, worker_state.
 */
Datum
redis_sync_database_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		mine_seen = false;

	require_shmem();
	InitMaterializedSRF(fcinfo, 0);
	for (int i = -1; i < rs_shared->nslots; i++)
	{
		RsDbSlot   *sl;
		Oid			dbid;
		bool		probing;
		Datum		values[16];
		bool		nulls[16] = {0};
		char		buf[96];
		char	   *name;
		NameData	dbname;

		if (i < 0)
		{
			/* the current database, when it has no slot */
			if (my_slot() != &rs_shared->nodb)
				continue;
			sl = &rs_shared->nodb;
			dbid = MyDatabaseId;
			probing = false;
		}
		else
		{
			sl = &rs_shared->slots[i];
			SpinLockAcquire(&sl->mutex);
			dbid = sl->dbid;
			probing = sl->probing;
			SpinLockRelease(&sl->mutex);
			if (!OidIsValid(dbid) || (probing && dbid != MyDatabaseId))
				continue;
		}
		name = get_database_name(dbid);
		if (name == NULL)
			continue;			/* dropped meanwhile */
		mine_seen |= dbid == MyDatabaseId;
		slot_row(sl, values, nulls);
		values[12] = ObjectIdGetDatum(dbid);
		namestrcpy(&dbname, name);
		values[13] = NameGetDatum(&dbname);
		values[14] = Int64GetDatum(slot_restarts(sl));
		values[15] = CStringGetTextDatum(slot_state(sl, buf, sizeof(buf)));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	(void) mine_seen;
	return (Datum) 0;
}

/* _worker_restarts(): workers of this database started after the first */
Datum
redis_sync_worker_restarts(PG_FUNCTION_ARGS)
{
	require_shmem();
	PG_RETURN_INT64(slot_restarts(my_slot()));
}

/* stats_reset(): every database's counters */
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
	for (int i = -1; i < rs_shared->nslots; i++)
	{
		RsDbSlot   *sl = i < 0 ? &rs_shared->nodb : &rs_shared->slots[i];

		pg_atomic_write_u64(&sl->round_trips, 0);
		pg_atomic_write_u64(&sl->worker_rounds, 0);
		pg_atomic_write_u64(&sl->circuit_opens, 0);
		SpinLockAcquire(&sl->mutex);
		sl->worker_starts = sl->worker_pid != 0 ? 1 : 0;
		sl->last_error[0] = '\0';
		sl->last_error_at = 0;
		SpinLockRelease(&sl->mutex);
	}
	SpinLockAcquire(&rs_shared->mutex);
	rs_shared->reset_at = GetCurrentTimestamp();
	SpinLockRelease(&rs_shared->mutex);
	LWLockRelease(rs_shared->lock);
	nlocal = 0;
	PG_RETURN_VOID();
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
	sl = my_slot();
	SpinLockAcquire(&sl->mutex);
	sl->pause_requested = true;
	SpinLockRelease(&sl->mutex);
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
	sl = my_slot();
	SpinLockAcquire(&sl->mutex);
	sl->pause_requested = false;
	sl->paused = false;
	SpinLockRelease(&sl->mutex);
	rs_worker_wake();
	PG_RETURN_VOID();
}
