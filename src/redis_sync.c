/*-------------------------------------------------------------------------
 *
 * redis_sync.c
 *		Module entry point of redis_sync: _PG_init, which hands each module
 *		its settings and hooks.
 *
 * redis_sync keeps Redis and PostgreSQL tables in step with PostgreSQL as the
 * coordinator.  _PG_init only calls each module's init function (which
 * defines that module's settings and hooks); the work lives in the modules,
 * listed from the entry points down to the client and shared memory (the
 * README's "Development" section draws the dependencies):
 *
 *	entry points (SQL functions, triggers, transaction callbacks, workers)
 *		redis_sync.c	_PG_init: each module's init, in order
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
 *		launcher_hold.c	DROP/ALTER DATABASE: the database's worker steps aside
 *		worker.c		the background worker of one database
 *		marker_sweep.c	the worker's sweep of in-flight markers
 *		xact_step.c		one worker step in its own transaction with a snapshot
 *	the work they share
 *		outbox.c		delivering redis_sync.outbox; flush()
 *		outbox_write.c	writing redis_sync.outbox in the writer's transaction
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
 *		redis_conn_params.c	a connection's parameters from the settings
 *		redis_conn_many.c	exchanges with several connections at once
 *		redis_tls.c		TLS (rediss://) with OpenSSL and the tls_* settings
 *		redis_url.c		parsing redis_sync.redis_url
 *	shared memory (one header, shmem.h), and what every layer may ask
 *		stats.c			counters and the stats SQL functions
 *		circuit.c		the circuit breaker of a database
 *		worker_signal.c	wake-up, flush handshake, sweep, pause between
 *						backends and the worker of a database
 *		shmem.c			the segment and its per-database slots; rs_preloaded
 *		allowlist.c		redis_sync.database: where a worker may run
 *
 * The invariants the code keeps, and the module that keeps each, are in
 * redis_sync.h.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/guc.h"

#include "allowlist.h"
#include "capture.h"
#include "claim.h"
#include "drain.h"
#include "fence.h"
#include "launcher.h"
#include "outbox.h"
#include "publish.h"
#include "redis_sync.h"
#include "shmem.h"
#include "warm.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

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
	rs_capture_init();			/* max_buffer_bytes; savepoint callback */
	rs_publish_init();			/* debug_crash_after_push; commit callback */
	rs_fence_init();			/* chunk_size, tombstone_ttl */
	rs_encode_init();			/* version_key_suffix */
	rs_outbox_init();			/* outbox_batch, flush_timeout */
	rs_claim_init();			/* allowed_key_prefixes */
	rs_drain_init();			/* drain_timeout */
	rs_warm_init();				/* warm_timeout */
	rs_worker_init();			/* naptime, retry_max_backoff,
								 * rewarm_on_restart, marker_sweep_interval,
								 * shutdown_drain_timeout */
	MarkGUCPrefixReserved("redis_sync");

	if (rs_preloaded)
	{
		rs_shmem_init(rs_max_workers);
		rs_stats_init();
		rs_epoch_preload_init();
	}
}
