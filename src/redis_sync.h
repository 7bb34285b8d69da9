/*-------------------------------------------------------------------------
 *
 * redis_sync.h
 *		Settings and entry points shared by the modules of redis_sync.
 *
 * Each module owns one job and exports only what other modules call; the
 * module headers (redis_url.h, redis_client.h, ...) declare those calls.
 * This header holds the GUC variables defined in redis_sync.c and the
 * per-module init functions that _PG_init calls.
 *
 *-------------------------------------------------------------------------
 */
#ifndef REDIS_SYNC_H
#define REDIS_SYNC_H

#include "postgres.h"

/*
 * GUC variables.  Each is defined with its setting by one module's init
 * function: redis_client.c (redis_url, password file, timeouts),
 * circuit.c (circuit_*), launcher.c (database, max_workers); the others
 * are still defined in redis_sync.c (see define_write_path_gucs() and
 * define_worker_gucs() there).
 */
extern char *rs_redis_url;
extern int	rs_connect_timeout_ms;
extern int	rs_command_timeout_ms;
extern char *rs_database;
extern char *rs_password_file;
extern int	rs_max_buffer_kb;
extern int	rs_chunk_size;
extern int	rs_tombstone_ttl_ms;
extern char *rs_version_suffix;
extern int	rs_naptime_ms;
extern int	rs_retry_max_backoff_ms;
extern bool rs_rewarm_on_restart;
extern int	rs_outbox_batch;
extern int	rs_marker_sweep_ms;
extern int	rs_circuit_failures_threshold;
extern int	rs_circuit_cooldown_ms;
extern bool rs_debug_crash_after_push;
extern int	rs_flush_timeout_ms;
extern int	rs_drain_timeout_ms;
extern int	rs_shutdown_drain_ms;

extern int	rs_max_workers;

/* true when loaded through shared_preload_libraries */
extern bool rs_preloaded;

/* error out, with a hint, when a feature needs the preloaded library */
extern void rs_require_preload(const char *feature);

/* wake the background worker (no-op when it is not running) */
extern void rs_worker_wake(void);

/* launcher (launcher.c): settings, registration, hooks */
extern void rs_launcher_init(void);

/* a worker may run in dbid: preloaded and allowed by redis_sync.database */
extern bool rs_database_served(Oid dbid);


/* module init hooks called from _PG_init */
extern void redis_client_init(void);
extern void rs_capture_init(void);
extern void rs_publish_init(void);

#endif							/* REDIS_SYNC_H */
