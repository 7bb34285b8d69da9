/*-------------------------------------------------------------------------
 *
 * shmem.h
 *		Shared memory of redis_sync: the segment and its per-database slots
 *		(shmem.c), and the modules that keep their state there: counters
 *		(stats.c), the circuit breaker (circuit.c), and the signals between
 *		backends and the worker (worker_signal.c).  One header for the four:
 *		they share RsDbSlot, and callers see one shared-memory layer.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_SHMEM_H
#define RS_SHMEM_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/spin.h"

typedef enum RsCounter
{
	RS_C_CAPTURED,
	RS_C_PUSHED,
	RS_C_PUSH_FAILURES,
	RS_C_QUEUED,
	RS_C_DELIVERED,
	RS_C_DELIVERY_FAILURES,
	RS_C_REPAIRED,
	RS_C_WARMED,
	RS_C_CLAIMED,
	RS_C_APPLIED,
	RS_C_BATCHES,
	RS_C_DEAD,
	RS_C_WB_RETRIES,
	RS_C_UNKNOWN_FIELDS,
	RS_C_HITS,
	RS_C_MISSES,
	RS_NUM_COUNTERS
} RsCounter;

#define RS_ERRLEN 256

/*
 * Per-database state: one slot per database that has, or wants, a worker
 * (launcher.c assigns them; redis_sync.max_workers + RS_EXTRA_SLOTS of
 * them).  Everything the single worker of 0.1 kept server-wide is here:
 * latch, flush handshake, pause, circuit breaker, Redis run_id, counters.
 * mutex protects every field except the atomics; dbid is also read
 * unlocked to find a database's slot (an Oid is read atomically).
 */
#define RS_EXTRA_SLOTS 32

/*
 * A table owner whose code ended a worker (it went on past twice a step's
 * time limit after the cancel): the next workers run none of its code
 * before until.  Each repeat doubles the hold (worker.c).
 */
#define RS_QUARANTINE_ROLES 8
typedef struct RsQuarantine
{
	Oid			role;
	TimestampTz until;
	int			offenses;
} RsQuarantine;

typedef struct RsDbSlot
{
	slock_t		mutex;
	Oid			dbid;			/* InvalidOid: free */
	uint32		generation;		/* bumped at each (re)use of the slot */
	/* launcher state (launcher.c) */
	bool		want;			/* a worker should run in this database */
	bool		probing;		/* worker started to check for the extension */
	bool		hold;			/* DROP/ALTER DATABASE: worker stopped, not
								 * restarted */
	int			hold_pid;		/* the backend holding it */
	TimestampTz hold_until;		/* safety bound of the hold */
	bool		no_worker;		/* wanted, but redis_sync.max_workers is
								 * reached */
	char		no_worker_reason[64];
	uint64		notifies;		/* CREATE EXTENSION commits seen */
	uint64		worker_starts;	/* workers attached to this slot */
	/* the worker */
	Latch	   *worker_latch;
	int			worker_pid;
	int			last_waker;		/* pid of the last backend that woke it */
	uint64		waker_changes;	/* wake-ups by another backend than the one
								 * before (outbox coalescing, worker.c) */
	pg_atomic_uint32 outbox_wake_due;	/* 1: a commit signalled the worker
										 * since it last read the outbox
										 * (worker_signal.c) */
	TimestampTz worker_started_at;
	char		run_id[48];
	bool		restart_pending;	/* Redis restarted: claims, re-warm and
									 * re-seed still to do (worker.c) */
	uint64		flush_requested;	/* flush() generations asked for */
	uint64		flush_done;		/* generations the worker completed */
	int64		flush_applied;	/* rows applied by the last forced round */
	int			flush_failed;	/* tables that round could not drain */
	RsQuarantine quarantine[RS_QUARANTINE_ROLES];	/* worker.c */
	bool		flush_unreachable;	/* Redis could not be reached for it */
	bool		sweep_requested;	/* check in-flight markers at once */
	bool		warm_requested; /* warm() queued a background warm */
	bool		pause_requested;
	bool		paused;			/* the worker acknowledged the pause */
	/* circuit breaker of this database's backends and worker */
	int			failures;
	bool		open;
	TimestampTz opened_at;
	TimestampTz changed_at;
	char		last_error[RS_ERRLEN];
	TimestampTz last_error_at;
	/* counters */
	pg_atomic_uint64 round_trips;
	pg_atomic_uint64 worker_rounds;
	pg_atomic_uint64 circuit_opens;
} RsDbSlot;

/* ---- shmem.c: the segment and its slots ---- */

/* true when loaded through shared_preload_libraries (set by _PG_init) */
extern bool rs_preloaded;

/* error out, with a hint, when a feature needs the preloaded library */
extern void rs_require_preload(const char *feature);

/* launcher interface (launcher.c) */
extern int	rs_nslots(void);
extern RsDbSlot *rs_slot(int i);
extern RsDbSlot *rs_slot_for_db(Oid dbid);
extern RsDbSlot *rs_slot_acquire(Oid dbid, bool probe); /* NULL: all slots in
														 * use */
extern bool rs_slot_free(RsDbSlot *slot, uint32 generation);
extern void rs_launcher_set_latch(bool attach);
extern void rs_launcher_wake(void);

/* the worker of a slot */
extern bool rs_worker_attach(int slotno, Oid dbid, uint32 generation);
extern RsDbSlot *rs_worker_slot(void);
extern void rs_worker_unregister_latch(void);

/* this process's database's slot (NULL without shared memory) */
extern RsDbSlot *rs_my_slot(void);

/* the slot shared by databases that have none of their own */
extern RsDbSlot *rs_nodb_slot(void);

/* from _PG_init: one slot per worker (redis_sync.max_workers) and spares */
extern void rs_shmem_init(int max_workers);
extern bool rs_shmem_ready(void);

/* changes whenever shared memory is made anew (server start, crash restart) */
extern int64 rs_incarnation(void);

/* ---- stats.c: counters ---- */

extern void rs_stats_init(void);	/* from _PG_init */
extern int64 rs_stats_applied(Oid relid);
extern int64 rs_stats_counter(Oid relid, RsCounter c);
extern void rs_stats_last_error(Oid relid, char *buf, size_t len);

/* per-table counters; accumulated locally, flushed at transaction end */
extern void rs_stats_add(Oid relid, RsCounter c, int64 n);
extern void rs_stats_error(Oid relid, const char *msg);
extern void rs_stats_flush(void);
extern void rs_stats_set_lag(Oid relid, double seconds);

/* global counters */
extern void rs_stats_round_trip(void);
extern void rs_stats_worker_round(void);
extern void rs_stats_set_cluster(const char *json);

/* ---- circuit.c: the circuit breaker ---- */
extern void rs_circuit_init(void);	/* from _PG_init: its settings */
extern bool rs_circuit_is_open(void);
extern void rs_circuit_success(void);
extern void rs_circuit_failure(const char *msg);
extern int	rs_circuit_failures(void);
extern bool rs_circuit_open_peek(void);
extern void rs_circuit_last_error(char *buf, size_t len);

/* ---- worker_signal.c: backends and the worker of a database ---- */

/* wake this database's worker (no-op when it is not running) */
extern void rs_worker_wake(void);

/* a commit queued outbox entries: wake it unless a wake-up is already due */
extern void rs_worker_wake_outbox(void);

/* worker: before it reads the outbox; after a round that read it */
extern void rs_worker_outbox_reading(void);
extern void rs_worker_outbox_resignal(void);

/* worker: how many wake-ups came from another backend than the one before */
extern uint64 rs_worker_waker_changes(void);

/* flush(): forced drain rounds served by the worker */
extern uint64 rs_flush_pending(void);
extern void rs_flush_completed(uint64 generation, int64 applied, int failed);
extern void rs_flush_unreachable(uint64 generation);
extern int64 rs_flush_via_worker(Oid relid, int timeout_ms);

/* ask the worker to check in-flight markers now (after an aborted bulk push) */
extern void rs_worker_request_sweep(void);
extern bool rs_worker_sweep_requested(void);
extern void rs_worker_request_warm(void);
extern bool rs_worker_warm_requested(void);

/* the worker calls this at safe points: true while paused by worker_pause() */
extern bool rs_worker_pause_check(void);

/* Redis identity seen by the worker (run_id), for restart detection */
extern bool rs_redis_run_id_changed(const char *run_id, char *previous, size_t len);
extern bool rs_redis_restart_pending(void);
extern void rs_redis_restart_done(void);
extern void rs_redis_restart_set_pending(void);

#endif							/* RS_SHMEM_H */
