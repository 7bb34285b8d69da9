/*-------------------------------------------------------------------------
 *
 * shmem.h
 *		Shared memory of redis_sync: worker latch, circuit breaker, stats.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_SHMEM_H
#define RS_SHMEM_H

#include "postgres.h"

#include "datatype/timestamp.h"

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

extern void rs_shmem_init(void);	/* from _PG_init */
extern bool rs_shmem_ready(void);

/* changes whenever shared memory is made anew (server start, crash restart) */
extern int64 rs_incarnation(void);

extern int64 rs_stats_applied(Oid relid);

/* per-table counters; accumulated locally, flushed at transaction end */
extern void rs_stats_add(Oid relid, RsCounter c, int64 n);
extern void rs_stats_error(Oid relid, const char *msg);
extern void rs_stats_flush(void);
extern void rs_stats_set_lag(Oid relid, double seconds);

/* global counters */
extern void rs_stats_round_trip(void);
extern void rs_stats_worker_round(void);
extern void rs_stats_set_cluster(const char *json);

/* circuit breaker */
extern bool rs_circuit_is_open(void);
extern void rs_circuit_success(void);
extern void rs_circuit_failure(const char *msg);
extern TimestampTz rs_circuit_opened_at(void);
extern int	rs_circuit_failures(void);

/* worker wake-up and identity */
extern void rs_worker_register_latch(void);
extern void rs_worker_unregister_latch(void);
extern bool rs_worker_running(void);

/* flush(): forced drain rounds served by the worker */
extern uint64 rs_flush_pending(void);
extern void rs_flush_completed(uint64 generation, int64 applied, int failed);
extern void rs_flush_unreachable(uint64 generation);
extern int64 rs_flush_via_worker(Oid relid, int timeout_ms);

/* ask the worker to check in-flight markers now (after an aborted bulk push) */
extern void rs_worker_request_sweep(void);
extern bool rs_worker_sweep_requested(void);

/* the worker calls this at safe points: true while paused by worker_pause() */
extern bool rs_worker_pause_check(void);

/* Redis identity seen by the worker (run_id), for restart detection */
extern bool rs_redis_run_id_changed(const char *run_id, char *previous, size_t len);

#endif							/* RS_SHMEM_H */
