/*-------------------------------------------------------------------------
 *
 * shmem.c
 *		The shared memory segment of redis_sync and its per-database slots.
 *
 * One struct (RsShared) holds one slot per database that has, or wants, a
 * worker (RsDbSlot in shmem.h; launcher.c assigns them) plus the slot of
 * databases without a worker (nodb).  A backend or worker finds its
 * database's slot with rs_my_slot(); a worker takes its slot over with
 * rs_worker_attach() and gives it back with rs_worker_unregister_latch().
 *
 * What lives in a slot is read and written by the modules that own it:
 *		stats.c			counters, the stats SQL functions
 *		circuit.c		the circuit breaker
 *		worker_signal.c	wake-up, flush handshake, sweep, pause, run_id
 *		launcher.c		want/probing, which database has a worker
 *		launcher_hold.c	hold (DROP/ALTER DATABASE)
 *
 * It also knows whether the library was preloaded (rs_preloaded, set by
 * _PG_init) and refuses what needs the preload (rs_require_preload()):
 * shared memory exists only then, and every layer asks.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/proc.h"

#include "killfence.h"
#include "shmem.h"

/*
 * Server-wide part.  The per-database part (worker latch, circuit breaker,
 * flush handshake, pause, counters) lives in RsDbSlot (shmem.h), one per
 * database that has, or wants, a worker: rs_shared->slots[nslots], managed
 * by the launcher (launcher.c).  Backends of a database without a slot use
 * rs_shared->nodb, which never has a worker.
 */
typedef struct RsShared
{
	slock_t		mutex;			/* protects slot allocation and the fields
								 * below */
	Latch	   *launcher_latch;
	int			launcher_pid;
	TimestampTz incarnation;	/* set each time shared memory is (re)made */
	int			nslots;
	RsDbSlot	nodb;
	RsDbSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} RsShared;

bool		rs_preloaded = false;

static RsShared *rs_shared = NULL;
static int	shmem_max_workers = 0;	/* redis_sync.max_workers at _PG_init */
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static int
slot_count(void)
{
	return shmem_max_workers + RS_EXTRA_SLOTS;
}

static Size
rs_shmem_size(void)
{
	return add_size(add_size(offsetof(RsShared, slots),
							 mul_size(slot_count(), sizeof(RsDbSlot))),
					rs_killfence_shmem_size());
}

static void
rs_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(rs_shmem_size());
}

static void
slot_init(RsDbSlot *slot)
{
	memset(slot, 0, sizeof(RsDbSlot));
	SpinLockInit(&slot->mutex);
	pg_atomic_init_u64(&slot->round_trips, 0);
	pg_atomic_init_u64(&slot->worker_rounds, 0);
	pg_atomic_init_u64(&slot->circuit_opens, 0);
	pg_atomic_init_u32(&slot->outbox_wake_due, 0);
}

static void
rs_shmem_startup(void)
{
	bool		found;

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
		SpinLockInit(&rs_shared->mutex);
		rs_shared->nslots = slot_count();
		slot_init(&rs_shared->nodb);
		for (int i = 0; i < rs_shared->nslots; i++)
			slot_init(&rs_shared->slots[i]);
		/* a crash restart remakes shared memory: a new incarnation */
		rs_shared->incarnation = GetCurrentTimestamp();
	}
	rs_killfence_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

void
rs_require_preload(const char *feature)
{
	if (!rs_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s requires redis_sync to be loaded via shared_preload_libraries", feature),
				 errhint("Add redis_sync to shared_preload_libraries in postgresql.conf and restart the server.")));
}

void
rs_shmem_init(int max_workers)
{
	shmem_max_workers = max_workers;
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

static RsDbSlot *worker_slot = NULL;	/* set in a worker by
										 * rs_worker_attach() */
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

/*
 * this process's database's slot, or the slot of databases without a
 * worker; NULL when shared memory is not set up (not preloaded)
 */
RsDbSlot *
rs_my_slot(void)
{
	RsDbSlot   *slot;

	if (rs_shared == NULL)
		return NULL;
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

/* the slot shared by the databases that have no slot of their own */
RsDbSlot *
rs_nodb_slot(void)
{
	return rs_shared ? &rs_shared->nodb : NULL;
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

bool
rs_shmem_ready(void)
{
	return rs_shared != NULL;
}

/* ----------------------------------------------------------------
 * The worker of a database takes its slot over
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
