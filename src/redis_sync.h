/*-------------------------------------------------------------------------
 *
 * redis_sync.h
 *		Settings shared by the modules of redis_sync, and the invariants
 *		they keep.
 *
 * Each module owns one job and exports only what other modules call; the
 * module headers (redis_client.h, shmem.h, ...) declare those calls.  This
 * header holds the GUC variables modules of several layers read and the
 * init functions _PG_init calls that have no other header.
 *
 * Invariants, with the module that keeps each (the README's "Guarantees"
 * section lists the tests that prove them):
 *
 * 1. Only committed data reaches Redis.  capture.c only buffers; publish.c
 *    pushes at pre-commit and, when the transaction then aborts, pushes the
 *    committed state again with a newer version; after a crash between
 *    push and commit, worker.c repairs the keys named by in-flight markers
 *    (publish.c sets them, warm.c repairs).  outbox.c delivers only rows of
 *    committed transactions.
 *
 * 2. Never stale.  Every write carries a version (encode.c: WAL insert
 *    position and timeline) and goes through fence.c's script, which
 *    ignores a write older than the version stored beside the key and
 *    leaves tombstones for deletes; publish.c pushes while the transaction
 *    holds its row locks; warm.c fills only keys with neither data nor
 *    version, at the lowest version, so a concurrent writer always wins.
 *
 * 3. Nothing committed is lost.  'strict' tables: publish.c fails the
 *    commit when Redis fails.  'eventual' ones: publish.c (and capture.c
 *    on overflow) writes the changes to redis_sync.outbox in the same
 *    transaction and outbox.c delivers them (worker.c, woken at commit
 *    through worker_signal.c); after Redis restarts empty, worker.c
 *    re-warms (warm.c) and re-seeds (drain.c).  Write-behind (drain.c)
 *    claims dirty keys into a processing set and removes them from it only
 *    after the batch that applied them committed.
 *
 * 4. Counters never go backwards.  Write-behind counter columns (drain.c):
 *    a counter key without its seeded marker is added to the table's value,
 *    never drained over it, and Redis is corrected before the commit.
 *    Statistics (stats.c): counters only add, until redis_sync.stats_reset()
 *    or a server restart.
 *
 * 5. No unbounded wait.  Every wait on a Redis socket is a WaitEventSet
 *    that also wakes on the latch (cancel, statement_timeout, termination)
 *    and exits on postmaster death, bounded by connect_timeout and
 *    command_timeout (redis_conn.c; redis_cluster.c for the cluster's
 *    retries); circuit.c stops backends from trying a Redis that is down;
 *    a backend waits for the worker only up to a timeout (worker_signal.c:
 *    flush(), worker_pause()); the launcher's hold on DROP DATABASE is
 *    bounded (launcher_hold.c).
 *
 * 6. The Redis password never leaves the process.  redis_sync.redis_url
 *    and the password file setting are superuser-only and accept any text
 *    (a GUC check failure would echo the value into the log; redis_client.c
 *    defines them); every message names the server as host:port from the
 *    parsed URL (redis_url.c, redis_conn.c); the handshake buffer that held
 *    it is zeroed (redis_conn.c); parse_url() shows has_password only
 *    (command.c).
 *
 * 7. Every exchange with Redis is a pipeline: one exec is one round trip,
 *    whatever the number of commands (redis_client.c; on a cluster one
 *    exchange per node at once, redis_cluster.c), and is counted
 *    (redis_conn.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef REDIS_SYNC_H
#define REDIS_SYNC_H

#include "postgres.h"

/*
 * GUC variables read across layers.  Each is defined with its setting by
 * the init function of the module that owns it: redis_client.c (redis_url,
 * password file, timeouts; read by redis_conn.c and redis_cluster.c too)
 * and worker.c (retry_max_backoff; read by outbox.c and wb_schedule.c
 * too).  A setting read by one module, or by modules of one layer, is
 * declared in its module's header (capture.h, fence.h, encode.h, drain.h,
 * publish.h, launcher.h) or kept static.
 */
extern char *rs_redis_url;
extern int	rs_connect_timeout_ms;
extern int	rs_command_timeout_ms;
extern int	rs_reply_spin_us;
extern char *rs_password_file;
extern int	rs_retry_max_backoff_ms;

/*
 * Module init functions called from _PG_init (each defines its module's
 * settings and hooks) without a module header of their own; the others are
 * in their modules' headers (shmem.h, launcher.h, allowlist.h, capture.h,
 * publish.h, fence.h, encode.h, outbox.h, drain.h).
 */
extern void redis_client_init(void);
extern void rs_worker_init(void);

#endif							/* REDIS_SYNC_H */
