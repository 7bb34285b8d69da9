/*-------------------------------------------------------------------------
 *
 * redis_sync.c
 *		Module entry point of redis_sync: _PG_init and the settings not yet
 *		moved to their modules.
 *
 * redis_sync keeps Redis and PostgreSQL tables in step with PostgreSQL as the
 * coordinator.  _PG_init only calls each module's init function (which
 * defines that module's settings and hooks); the work lives in the modules,
 * listed from the entry points down to the client and shared memory (the
 * README's "Development" section draws the dependencies):
 *
 *	entry points (SQL functions, triggers, transaction callbacks, workers)
 *		redis_sync.c	_PG_init, settings of other modules (see below)
 *		command.c		redis_sync.command() and redis_sync.parse_url()
 *		admin.c			writes to redis_sync.tables on behalf of table owners
 *		readthrough.c	redis_sync.get()
 *		verify.c		verify() and resync() helpers
 *		keys_sql.c		resync's repair (_push_keys), key functions for SQL
 *		lifecycle.c		event-trigger helpers: DROP TABLE purge, partitions
 *		ddl.c			what an ALTER TABLE did to columns
 *		capture.c		the capture trigger and per-transaction buffer
 *		publish.c		pre-commit push, outbox fallback, abort repair
 *		markers.c		a backend's in-flight markers
 *		launcher.c		the launcher: one worker per database with the extension
 *		worker.c		the background worker of one database
 *		marker_sweep.c	the worker's sweep of in-flight markers
 *		xact_step.c		one worker step in its own transaction with a snapshot
 *	the work they share
 *		outbox.c		writing and delivering redis_sync.outbox; flush()
 *		drain.c			write-behind: one batch (claim, apply, acknowledge)
 *		wb_schedule.c	write-behind: which table is due, backoff, the drain round
 *		wb_config.c		write-behind: the tables' configuration
 *		wb_decode.c		write-behind: claimed values into column values
 *		wb_apply.c		write-behind: applying a batch; dead letters
 *		wb_counters.c	write-behind: counter correction and re-seeding
 *		wb_api.c		write-behind SQL API: hincrby(), hset(), retry
 *		warm.c			lock-free fill: warm, re-warm
 *		warm_push.c		pushing named rows: resync, repair, populate, settling
 *		warm_queue.c	warm(), the background warm queue and its round
 *		fence.c			the version-fenced apply script
 *		fence_cluster.c	fenced pushes on a cluster: a call per slot or node
 *		encode.c		rows as Redis keys, hashes, JSON; versions
 *		epoch.c			the server epoch in versions (grows at each restart)
 *		canonical.c		the canonical settings values are written and read under
 *		decode.c		a cached value back into a row
 *		config.c		cache of redis_sync.tables per relation
 *		claim.c			key prefix claims in Redis
 *		rowsec.c		row-level security of hset()/hincrby(); input checks
 *		subxact.c		a step in a subtransaction, its error returned
 *		as_owner.c		running as another role: restricted, fixed search_path
 *	the Redis client
 *		redis_client.c	the cached connection, pipelines, scripts
 *		redis_cluster.c	the same pipelines on a Redis Cluster: routing by node
 *		cluster.c		Redis Cluster slot map, node table, hash slots
 *		redis_conn.c	one connection (RedisConn): connect, non-blocking waits
 *		redis_conn_many.c	exchanges with several connections at once
 *		redis_tls.c		TLS (rediss://) with OpenSSL and the tls_* settings
 *		redis_url.c		parsing redis_sync.redis_url
 *	shared memory (one header, shmem.h)
 *		stats.c			counters and the stats SQL functions
 *		circuit.c		the circuit breaker of a database
 *		worker_signal.c	wake-up, flush handshake, sweep, pause between
 *						backends and the worker of a database
 *		shmem.c			the segment and its per-database slots
 *
 * The invariants the code keeps, and the module that keeps each, are in
 * redis_sync.h.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "allowlist.h"
#include "encode.h"
#include "launcher.h"
#include "redis_sync.h"
#include "shmem.h"

PG_MODULE_MAGIC;

int			rs_max_buffer_kb = 65536;
int			rs_chunk_size = 1000;
int			rs_tombstone_ttl_ms = 86400000;
char	   *rs_version_suffix = NULL;
int			rs_naptime_ms = 1000;
int			rs_retry_max_backoff_ms = 2000;
bool		rs_rewarm_on_restart = true;
int			rs_outbox_batch = 10000;
int			rs_marker_sweep_ms = 5000;
bool		rs_debug_crash_after_push = false;
int			rs_flush_timeout_ms = 60000;
int			rs_drain_timeout_ms = 60000;
int			rs_shutdown_drain_ms = 5000;

void		_PG_init(void);

/*
 * Settings of the write path: capture.c (max_buffer_bytes), publish.c
 * (chunk_size, also read by outbox.c, warm.c and verify.c;
 * debug_crash_after_push), fence.c (tombstone_ttl), encode.c
 * (version_key_suffix).  They belong in those modules' init functions;
 * they stay here until those files move them (other engineers own them).
 */
static void
define_write_path_gucs(void)
{
	DefineCustomIntVariable("redis_sync.max_buffer_bytes",
							"Memory one transaction may use to buffer changes before it overflows to the outbox.",
							NULL,
							&rs_max_buffer_kb,
							65536, 64, MAX_KILOBYTES,
							PGC_USERSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("redis_sync.chunk_size",
							"Keys applied by one atomic script call in Redis.",
							"A transaction with more keys is applied in several atomic chunks, all in one round trip.",
							&rs_chunk_size,
							1000, 1, 100000,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("redis_sync.tombstone_ttl",
							"How long Redis remembers the version of a deleted key.",
							"A write older than the delete that arrives within this time is ignored; 0 keeps tombstones forever.",
							&rs_tombstone_ttl_ms,
							86400000, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("redis_sync.version_key_suffix",
							   "Suffix of the Redis key that holds a cached key's version.",
							   "The version of key K is kept at {K} followed by this suffix.",
							   &rs_version_suffix,
							   ":rs_version",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("redis_sync.debug_crash_after_push",
							 "For testing only: crash the server right after a pre-commit push reached Redis.",
							 "Simulates a crash between the push and the commit record; the worker must repair the keys.",
							 &rs_debug_crash_after_push,
							 false,
							 PGC_SUSET,
							 GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);
}

/*
 * Settings of the background worker: worker.c (naptime, retry_max_backoff,
 * also read by outbox.c and drain.c; rewarm_on_restart,
 * marker_sweep_interval, shutdown_drain_timeout), outbox.c (outbox_batch,
 * flush_timeout), drain.c (drain_timeout).  Same note as above.
 */
static void
define_worker_gucs(void)
{
	DefineCustomIntVariable("redis_sync.naptime",
							"Longest sleep of the background worker between rounds.",
							"A commit that queues outbox entries wakes the worker at once.",
							&rs_naptime_ms,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("redis_sync.retry_max_backoff",
							"Longest wait of the background worker between retries after a failure.",
							"Retries back off exponentially from 100 ms up to this value.",
							&rs_retry_max_backoff_ms,
							2000, 100, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("redis_sync.rewarm_on_restart",
							 "Re-warm write-through tables when Redis restarted (its run_id changed).",
							 NULL,
							 &rs_rewarm_on_restart,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("redis_sync.outbox_batch",
							"Outbox entries delivered per round trip.",
							NULL,
							&rs_outbox_batch,
							10000, 1, 1000000,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("redis_sync.marker_sweep_interval",
							"How often the worker checks in-flight markers left by transactions that did not commit.",
							NULL,
							&rs_marker_sweep_ms,
							5000, 10, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("redis_sync.flush_timeout",
							"Longest wait of redis_sync.flush() for the worker to drain write-behind tables.",
							NULL,
							&rs_flush_timeout_ms,
							60000, 10, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("redis_sync.drain_timeout",
							"Longest time one write-behind batch may take to apply (0: no limit).",
							"A batch still running then (a slow trigger, a lock wait) is cancelled, "
							"counted in drain_retries and retried later.",
							&rs_drain_timeout_ms,
							60000, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("redis_sync.shutdown_drain_timeout",
							"Time the worker spends on a final drain of write-behind tables at shutdown.",
							NULL,
							&rs_shutdown_drain_ms,
							5000, 0, 600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}

/*
 * Each module defines its own settings and hooks in its init function;
 * this only calls them, settings first (MarkGUCPrefixReserved must come
 * after every redis_sync.* setting), then hooks and shared memory.
 */
void
_PG_init(void)
{
	rs_preloaded = process_shared_preload_libraries_in_progress;

	redis_client_init();		/* redis_url, password file, TLS, timeouts */
	rs_circuit_init();			/* circuit_failures, circuit_cooldown */
	rs_allowlist_init();		/* database */
	rs_launcher_init();			/* max_workers; the launcher, its hook */
	define_write_path_gucs();
	define_worker_gucs();
	MarkGUCPrefixReserved("redis_sync");

	rs_capture_init();
	rs_publish_init();
	if (rs_preloaded)
	{
		rs_shmem_init(rs_max_workers);
		rs_stats_init();
		rs_epoch_preload_init();
	}
}
