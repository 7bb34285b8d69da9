/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The redis_sync background worker.
 *
 * One worker per database that has the extension, started by the launcher
 * (launcher.c) once recovery has finished (so it never runs on a hot
 * standby, and starts on promotion), started again by the launcher after
 * a crash and after a SIGTERM that is not a server shutdown
 * (worker_stats.worker_restarts counts them).  Everything it does concerns
 * its own database: its outbox, its tables, its in-flight markers (their
 * key names the database), its slot of shared memory (latch, circuit
 * breaker, flush handshake, pause).  It sleeps on its
 * latch; a commit that queued outbox entries sets the latch (shmem.c), so
 * delivery starts within milliseconds; otherwise it wakes every
 * redis_sync.naptime.  Each round (worker_round), each step in its own
 * transactions (xact_step.c):
 *
 *	1. check_extension: at most once a second, is the extension still in the
 *	   database?  If not the worker exits (unless CREATE EXTENSION raced).
 *	2. probe_step: INFO server and persistence at most once a second or
 *	   while the circuit is open (a Redis still loading its dataset counts
 *	   as unreachable); a success closes the circuit breaker.  After the
 *	   first success and after Redis restarted (a changed run_id), the key
 *	   prefix claims are recorded again (claim.c); after a restart, with
 *	   redis_sync.rewarm_on_restart, the keys Redis brought back are pushed
 *	   again from their rows, every write-through table is re-warmed and
 *	   every write-behind key re-seeded (wb_counters.c); that work stays
 *	   pending in shared memory until it succeeds (restart_step).
 *	3. deliver_all: the outbox, batch by batch (rs_outbox_deliver_loop in
 *	   outbox.c), each batch one round trip and one transaction;
 *	4. marker_sweep_round: the in-flight markers, every
 *	   redis_sync.marker_sweep_interval or when asked: a marker whose
 *	   transaction committed is removed; one whose transaction aborted or
 *	   died in a crash has its rows pushed again from the table (warm.c),
 *	   then is removed; one whose repairs keep failing is set aside;
 *	5. rs_warm_round: background warms (warm.c), bounded in time; looked
 *	   at when warm() queued one, while one is in progress, and otherwise
 *	   once per naptime (retries): not at every commit that woke us;
 *	6. drain_step: the write-behind tables that are due, or all of them when
 *	   flush() asks (wb_schedule.c, drain.c).
 *
 * Steps 3-6 run only while Redis answers.
 * Failures back off exponentially (from 100 ms up to
 * redis_sync.retry_max_backoff) and show in redis_sync.stats.  Errors are
 * caught per round: the transaction is aborted, the error logged and
 * counted, and the loop goes on.  When the extension is not in the
 * database (the launcher probing a database, or DROP EXTENSION) the worker
 * exits and the launcher does not start it again until CREATE EXTENSION.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "as_owner.h"
#include "claim.h"
#include "drain.h"
#include "identity.h"
#include "marker_sweep.h"
#include "outbox.h"
#include "redis_sync.h"
#include "shmem.h"
#include "warm.h"
#include "xact_step.h"

PGDLLEXPORT void redis_sync_worker_main(Datum arg);

#define BACKOFF_MIN_MS 100
#define RS_WORKER_RESTART_SECONDS 1

/*
 * Settings (rs_worker_init); retry_max_backoff is also read by outbox.c and
 * wb_schedule.c (declared in redis_sync.h).
 */
int			rs_retry_max_backoff_ms = 2000;
static int	rs_naptime_ms = 1000;
static bool rs_rewarm_on_restart = true;
static int	rs_marker_sweep_ms = 5000;
static int	rs_shutdown_drain_ms = 5000;
static int	rs_outbox_coalesce_ms = 5;

static MemoryContext round_cxt = NULL;
static TimestampTz last_probe = 0;
static bool claims_gone = false;	/* probe() found the claims hash gone */
static bool claims_recorded = false;	/* this worker recorded its tables'
										 * claims */
static bool redis_loading = false;	/* probe() saw Redis loading (logged) */
static TimestampTz restart_retry_at = 0;	/* after a failed restart step */
static int	restart_backoff_ms = 0;
static TimestampTz last_sweep = 0;
static TimestampTz delivery_started = 0;	/* the last round's delivery */
static uint64 changes_at_delivery = 0;	/* waker_changes then */
static bool outbox_read = false;	/* this round read the outbox */
static uint64 changes_before = 0;	/* ... at the delivery before */
static TimestampTz last_warm = 0;	/* the last look at the warm queue */
static bool warm_busy = true;	/* it had work: look again next round */
static int	backoff_ms = 0;
static TimestampTz retry_at = 0;	/* after a failure: no Redis work before
									 * this */
static TimestampTz ext_checked_at = 0;	/* when the extension was last seen */
static TimestampTz drain_due = 0;	/* when a write-behind table is next due */
static volatile sig_atomic_t got_sigterm = false;

/* the final round at SIGTERM has begun (its deadline bounds it) */
static volatile sig_atomic_t in_final_round = false;
static bool extension_gone = false; /* DROP EXTENSION: exit for good */
static char my_dbname[NAMEDATALEN]; /* for messages outside transactions */

/*
 * The restart's work done so far (this worker, since the run_id it last saw
 * change): the tables refreshed and re-warmed, and the write-behind
 * re-seed.  A retry does only the rest, so that one table that keeps
 * failing (its writers still open, its code failing) holds up neither the
 * others nor the re-seed, and the ones done are not pushed again at every
 * retry.  In TopMemoryContext.
 */
static List *restart_refreshed_rels = NIL;	/* refreshed (filled or not) */
static List *restart_done_rels = NIL;	/* refreshed and filled */
static List *restart_reseeded_rels = NIL;	/* write-behind tables re-seeded */
static bool restart_timed_out = false;	/* a table ran into warm_timeout */
static int64 restart_slow_ms = 0;	/* the longest a failed table's step ran */

/*
 * How far the refresh pass got when it failed as a whole (Redis stopped
 * answering in the middle of it): the retry takes it up there instead of
 * scanning and pushing again what was done (refresh_tables).  Its arrays in
 * TopMemoryContext.
 */
static RsRefreshResume refresh_resume = {NULL, 0, NULL, NULL, NULL, NULL, NULL, {-1, "0", 0}};

static void
restart_progress_reset(void)
{
	list_free(restart_refreshed_rels);
	restart_refreshed_rels = NIL;
	list_free(restart_done_rels);
	restart_done_rels = NIL;
	list_free(restart_reseeded_rels);
	restart_reseeded_rels = NIL;
	refresh_resume.cxt = TopMemoryContext;
	rs_refresh_resume_reset(&refresh_resume);
}

/*
 * The run_id of the Redis whose restart work is done, kept across server
 * restarts in $PGDATA/redis_sync.run_id.<database oid>: the run_id the
 * worker compares with lives in shared memory, lost with the server, and a
 * Redis that restarted from an older snapshot while the server was down
 * (a host rebooted, a power loss) would otherwise go unnoticed, its older
 * values cached for good.  saved_run_id: the file's content (read at the
 * first probe; "" when there is none).
 */
static char saved_run_id[48];
static bool saved_run_id_known = false;
static char current_run_id[48];

static void
run_id_file(char *path, size_t len, bool tmp)
{
	snprintf(path, len, "redis_sync.run_id.%u%s", MyDatabaseId, tmp ? ".tmp" : "");
}

static void
saved_run_id_read(void)
{
	char		path[MAXPGPATH];
	int			fd;
	int			n;

	saved_run_id[0] = '\0';
	saved_run_id_known = true;
	run_id_file(path, sizeof(path), false);
	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		if (errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("redis_sync worker: could not open file \"%s\": %m", path)));
		return;
	}
	n = read(fd, saved_run_id, sizeof(saved_run_id) - 1);
	CloseTransientFile(fd);
	saved_run_id[Max(n, 0)] = '\0';
	saved_run_id[strcspn(saved_run_id, "\r\n")] = '\0';
}

static void
saved_run_id_write(const char *run_id)
{
	char		path[MAXPGPATH];
	char		tmp[MAXPGPATH];
	int			fd;
	int			len = strlen(run_id);

	run_id_file(path, sizeof(path), false);
	run_id_file(tmp, sizeof(tmp), true);
	fd = OpenTransientFile(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0 || write(fd, run_id, len) != len || pg_fsync(fd) != 0)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("redis_sync worker: could not write file \"%s\": %m", tmp)));
		if (fd >= 0)
			CloseTransientFile(fd);
	}
	else if (CloseTransientFile(fd) == 0)
		(void) durable_rename(tmp, path, LOG);
	/* tried once per run_id (a failure is logged, not repeated every second) */
	strlcpy(saved_run_id, run_id, sizeof(saved_run_id));
}

/*
 * A Redis restart probe() saw (while_down: while the server was down, told
 * by the saved run_id): its work starts over (restart_step), and the log
 * says what will be done.
 */
static void
restart_seen(const char *run_id, const char *was, bool while_down)
{
	restart_progress_reset();
	ereport(LOG,
			(errmsg(while_down ?
					"redis_sync worker: Redis at %s restarted while the server was down (run_id %s, was %s)" :
					"redis_sync worker: Redis at %s restarted (run_id %s, was %s)",
					redis_server_display(), run_id, was),
			 rs_rewarm_on_restart ?
			 errdetail("Refreshing the cached keys and re-warming every write-through table.") :
			 errhint("redis_sync.rewarm_on_restart is off; run redis_sync.resync() to repair and redis_sync.warm() to repopulate the cache.")));
}

static void
worker_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	got_sigterm = true;
	/* the step under way stops now; the final round drains what it can */
	if (!in_final_round)
		rs_step_cancel_at_shutdown();
	SetLatch(MyLatch);
	errno = save_errno;
}

bool
rs_worker_stopping(void)
{
	return got_sigterm && !in_final_round;
}

/* commit, and keep allocating in the round's context */
static void
commit_round_txn(void)
{
	CommitTransactionCommand();
	MemoryContextSwitchTo(round_cxt);
}

static bool
extension_ready(void)
{
	return OidIsValid(get_extension_oid("redis_sync", true));
}

/*
 * INFO server and persistence: false when Redis cannot be reached or is
 * still loading its dataset (it answers INFO then, and refuses most other
 * commands with LOADING: the claims, re-warm and re-seed after a restart
 * would all fail, tests/t/216); a new run_id marks the restart's work as
 * pending (rs_redis_run_id_changed).
 */
static bool
probe(void)
{
	RedisPipeline *p = redis_pipeline_create();
	const char *argv_server[2] = {"INFO", "server"};
	const char *argv_persistence[2] = {"INFO", "persistence"};
	const char *argv_claims[2] = {"EXISTS", RS_CLAIMS_KEY};
	RedisFailure f;
	RedisValue *v;
	char	   *rid;

	redis_pipeline_bypass_circuit(p);
	redis_pipeline_append(p, 2, argv_server, NULL);
	redis_pipeline_append(p, 2, argv_persistence, NULL);
	redis_pipeline_append(p, 2, argv_claims, NULL);
	if (!redis_pipeline_try_exec(p, &f))
	{
		ereport(LOG,
				(errmsg("redis_sync worker: %s", f.message),
				 f.detail ? errdetail("%s", f.detail) : 0));
		redis_pipeline_free(p);
		return false;
	}
	v = redis_pipeline_reply(p, 1);
	if (v->type == RV_STRING && strstr(v->str, "\nloading:1") != NULL)
	{
		if (!redis_loading)
			ereport(LOG,
					(errmsg("redis_sync worker: Redis at %s is loading its dataset; waiting for it",
							redis_server_display())));
		redis_loading = true;
		redis_pipeline_free(p);
		return false;
	}
	redis_loading = false;
	v = redis_pipeline_reply(p, 0);
	rid = v->type == RV_STRING ? strstr(v->str, "run_id:") : NULL;
	if (rid)
	{
		char		run_id[48];
		char		previous[48];
		int			n = 0;

		rid += 7;
		while (rid[n] && rid[n] != '\r' && rid[n] != '\n' && n < 47)
			n++;
		memcpy(run_id, rid, n);
		run_id[n] = '\0';
		strlcpy(current_run_id, run_id, sizeof(current_run_id));
		if (!saved_run_id_known)
			saved_run_id_read();
		if (rs_redis_run_id_changed(run_id, previous, sizeof(previous)))
			restart_seen(run_id, previous, false);
		else if (previous[0] == '\0' && saved_run_id[0] != '\0' &&
				 strcmp(saved_run_id, run_id) != 0)
		{
			/*
			 * the first probe since the server started: Redis restarted
			 * meanwhile
			 */
			rs_redis_restart_set_pending();
			restart_seen(run_id, saved_run_id, true);
		}
	}

	/*
	 * The claims hash gone while Redis did not restart: evicted
	 * (write-through tables allow allkeys-* policies, which evict it like any
	 * key) or deleted.  Until the claims are back a table of another database
	 * or server could claim an overlapping prefix, write into this database's
	 * keys and purge them: record them again (probe_step).
	 */
	v = redis_pipeline_reply(p, 2);
	if (v->type == RV_INTEGER && v->integer == 0 && claims_recorded)
	{
		claims_recorded = false;
		claims_gone = true;
	}
	redis_pipeline_free(p);
	return true;
}

/*
 * Record again the key prefix claims of every synced table of this
 * database (claim.c).  They live in Redis: a Redis restarted empty (or a
 * failover to an empty replica) has lost them, and until they are back a
 * table of another database or server could claim an overlapping prefix,
 * write into this database's keys and purge them (TRUNCATE).  Done when the
 * worker first reaches Redis and after every restart, before the re-warm.
 * A claim that another holder took meanwhile is logged, not fatal.
 */
static void
reclaim_all(void)
{
	int64		n;

	rs_xact_begin("redis_sync: recording key prefix claims");
	rs_identity_worker_check();
	n = rs_claim_all(true);

	/* said when this database had claims to lose */
	if (claims_gone && n > 0)
		ereport(LOG,
				(errmsg("redis_sync worker: the key prefix claims were gone from Redis at %s; recorded those of %lld tables again",
						redis_server_display(), (long long) n),
				 errdetail("Redis evicted the hash %s (a maxmemory-policy of allkeys-*) or it was deleted.",
						   RS_CLAIMS_KEY)));
	claims_gone = false;
	rs_xact_commit(round_cxt);
}

/*
 * One table's part of the work after a Redis restart (fill, re-seed: fn,
 * in transactions of its own; NULL: nothing to do), bounded by
 * warm_timeout, as the table's code runs as its owner (key domains, casts,
 * policies): done, the table joins *done (in TopMemoryContext); failed or
 * timed out, it is logged ("<what> table N after the Redis restart
 * failed"), counted in *failed and left for the retry (restart_step).
 * False when Redis could not be reached: the other tables would fail the
 * same way.
 */
static bool
restart_table_step(Oid relid, void (*fn) (Oid), const char *what, List **done, int *failed)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool reachable = true;

	PG_TRY();
	{
		MemoryContext old;

		rs_step_timeout_arm(rs_warm_timeout_ms);
		if (fn != NULL)
			fn(relid);
		rs_step_timeout_check();	/* a cancel caught by the table's code */
		rs_step_timeout_disarm();
		old = MemoryContextSwitchTo(TopMemoryContext);
		*done = lappend_oid(*done, relid);
		MemoryContextSwitchTo(old);
	}
	PG_CATCH();
	{
		bool		timed_out;
		int64		ran = rs_step_elapsed_ms();
		ErrorData  *edata = rs_step_catch(cxt, "it", "redis_sync.warm_timeout", &timed_out);

		if (timed_out)
			restart_timed_out = true;
		restart_slow_ms = Max(restart_slow_ms, ran);
		ereport(LOG,
				(errmsg("redis_sync worker: %s table %u after the Redis restart failed: %s",
						what, relid, edata->message),
				 edata->detail ? errdetail("%s", edata->detail) : 0));
		(*failed)++;
		reachable = edata->sqlerrcode != ERRCODE_CONNECTION_FAILURE &&
			edata->sqlerrcode != ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION;
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return reachable;
}

/*
 * After a Redis restart, for every write-through and invalidate table of
 * this database: push again the keys Redis brought back
 * (rs_refresh_cached_keys: they may be older than the table), then fill the
 * missing ones (write-through).  First the refresh of every table, in one
 * SCAN pass of Redis, then the fills: a fill adds keys that every pass
 * after it would visit, and a pass per table made the work after a restart
 * grow with the square of the tables (100 tables of 1,000 rows, restarted
 * empty: 9,905 SCAN pages, 5.3 s of Redis time; a pass before any fill
 * scans an empty Redis).  A table whose refresh or fill fails is logged and
 * left for the retry (restart_step); the others go on.  Returns the tables
 * that failed.
 */
static int	refresh_tables(List *rels);
static void fill_table(Oid relid);

static int
rewarm_all(void)
{
	int			failed = 0;
	List	   *rels = NIL;
	List	   *policies = NIL;
	List	   *refresh = NIL;
	ListCell   *lc;
	ListCell   *pc;

	rs_xact_begin(NULL);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	if (SPI_execute("SELECT relid::oid, policy = 'write_through' FROM redis_sync.tables "
					" WHERE policy IN ('write_through', 'invalidate') ORDER BY 1",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read redis_sync.tables");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		MemoryContext spi = MemoryContextSwitchTo(round_cxt);

		rels = lappend_oid(rels, DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
																SPI_tuptable->tupdesc, 1, &isnull)));
		policies = lappend_int(policies, DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
																	SPI_tuptable->tupdesc, 2, &isnull)));
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	rs_xact_commit(round_cxt);

	foreach(lc, rels)
	{
		if (!list_member_oid(restart_refreshed_rels, lfirst_oid(lc)))
			refresh = lappend_oid(refresh, lfirst_oid(lc));
	}
	if (refresh != NIL)
	{
		failed = refresh_tables(refresh);
		if (failed < 0)
			return list_length(refresh);
	}

	forboth(lc, rels, pc, policies)
	{
		Oid			relid = lfirst_oid(lc);

		if (list_member_oid(restart_done_rels, relid) ||
			!list_member_oid(restart_refreshed_rels, relid))
			continue;
		/* at shutdown the next worker goes on (pending in shared memory) */
		if (rs_worker_stopping())
		{
			failed++;
			break;
		}
		/* invalidate tables: refreshed, nothing to fill */
		if (!restart_table_step(relid, lfirst_int(pc) ? fill_table : NULL, "re-warming",
								&restart_done_rels, &failed))
			break;
	}
	return failed;
}

/*
 * rewarm_all()'s refresh of the tables rels not refreshed yet, in one pass
 * (rs_refresh_cached_keys), one transaction: the tables refreshed join
 * restart_refreshed_rels, the others are logged.  Returns the tables that
 * failed, -1 when the whole pass did (Redis unreachable, an error outside
 * any table's part: logged).  A pass that failed as a whole is taken up by
 * the retry after its last page whose keys were all pushed
 * (refresh_resume): a command timing out in the middle of the pass (Redis
 * stalled past command_timeout on a loaded machine) cost the pages and the
 * pushes done so far once more (bench 4b: 227 SCAN calls instead of 200).
 */
/* a table whose own part of the refresh failed: logged, retried alone */
static void
table_refresh_failed(RsRefresh *t)
{
	if (t->timed_out)
		restart_timed_out = true;
	ereport(LOG,
			(errmsg("redis_sync worker: refreshing table %u after the Redis restart failed: %s",
					t->relid, t->error->message),
			 t->error->detail ? errdetail("%s", t->error->detail) : 0));
}

static int
refresh_tables(List *rels)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			ntabs = list_length(rels);
	RsRefresh  *tabs = palloc0(sizeof(RsRefresh) * ntabs);
	int			failed = 0;

	for (int i = 0; i < ntabs; i++)
		tabs[i].relid = list_nth_oid(rels, i);
	PG_TRY();
	{
		rs_xact_begin("redis_sync: refreshing cached keys after a Redis restart");

		/*
		 * no snapshot held across the pass: each part reads with a snapshot
		 * of its own (keys_sql.c), so the pass, however long, holds back
		 * vacuum's horizon only while a part runs (tests/t/268)
		 */
		PopActiveSnapshot();
		/* the tables' failures are kept in cxt, past the commit */
		MemoryContextSwitchTo(cxt);
		refresh_resume.cxt = TopMemoryContext;
		rs_refresh_cached_keys(tabs, ntabs, rs_warm_timeout_ms, &refresh_resume);
		PushActiveSnapshot(GetTransactionSnapshot());
		rs_stats_flush();
		rs_xact_commit(cxt);
	}
	PG_CATCH();
	{
		bool		timed_out;
		ErrorData  *edata = rs_step_catch(cxt, "it", "redis_sync.warm_timeout", &timed_out);

		ereport(LOG,
				(errmsg("redis_sync worker: refreshing %d tables after the Redis restart failed: %s",
						ntabs, edata->message),
				 edata->detail ? errdetail("%s", edata->detail) : 0,
				 refresh_resume.pos.master >= 0 ?
				 errhint("The retry takes the pass up after the last keys it pushed.") : 0));
		FreeErrorData(edata);
		/* the tables that had failed on their own: they stay out of the retry */
		for (int i = 0; i < ntabs; i++)
			if (tabs[i].error != NULL)
				table_refresh_failed(&tabs[i]);
		return -1;
	}
	PG_END_TRY();
	rs_refresh_resume_reset(&refresh_resume);

	for (int i = 0; i < ntabs; i++)
	{
		Oid			relid = tabs[i].relid;
		MemoryContext old;

		if (tabs[i].error != NULL)
		{
			table_refresh_failed(&tabs[i]);
			failed++;
			continue;
		}
		if (tabs[i].n < 0)
			ereport(LOG,
					(errmsg("redis_sync worker: the cached keys of table %u were not refreshed after the Redis restart",
							relid),
					 errdetail("The table is also write-behind over the same hashes, or row-level security applies to its owner."),
					 errhint("Keys brought back from Redis persistence can be older than the table: check them with redis_sync.verify().")));
		else if (tabs[i].n > 0)
			ereport(LOG,
					(errmsg("redis_sync worker: refreshed %lld cached keys of table %u after the Redis restart",
							(long long) tabs[i].n, relid)));
		old = MemoryContextSwitchTo(TopMemoryContext);
		restart_refreshed_rels = lappend_oid(restart_refreshed_rels, relid);
		MemoryContextSwitchTo(old);
	}
	return failed;
}

/* rewarm_all()'s fill of one write-through table, refreshed */
static void
fill_table(Oid relid)
{
	int64		n;

	rs_xact_begin("redis_sync: re-warming after a Redis restart");
	n = rs_push_current(relid, NIL, 10000);
	rs_stats_flush();
	rs_xact_commit(round_cxt);
	ereport(LOG,
			(errmsg("redis_sync worker: re-warmed %lld keys of table %u",
					(long long) n, relid)));
}

/*
 * The re-seed of every write-behind table not re-seeded yet, each in its own
 * transaction and bounded by warm_timeout (reading a table runs its code as
 * its owner: policies, casts of its column types): a table that fails or
 * runs into the timeout is logged and left for the retry (restart_step),
 * and holds up neither the worker nor the other tables.  Returns the tables
 * that failed.
 */
static int
reseed_all(void)
{
	List	   *rels = rs_drain_reseed_relids();
	ListCell   *lc;
	int			failed = 0;

	foreach(lc, rels)
	{
		Oid			relid = lfirst_oid(lc);

		if (list_member_oid(restart_reseeded_rels, relid))
			continue;
		if (rs_worker_stopping())
		{
			failed++;
			break;
		}
		if (!restart_table_step(relid, rs_drain_reseed_one, "re-seeding the write-behind keys of",
								&restart_reseeded_rels, &failed))
			break;
	}
	return failed;
}

/*
 * The work after a Redis restart (pending in shared memory until done):
 * the key prefix claims again, then (redis_sync.rewarm_on_restart) the
 * refresh and re-warm of write-through tables and the re-seeding of
 * write-behind keys.  A failure (a table's writers still open, Redis
 * refusing) is logged and what is left is retried with backoff (up to a
 * minute), without holding up the outbox and the drains meanwhile: a table
 * that fails holds up neither the other tables nor the re-seed, and the
 * tables done are not refreshed again at each retry (restart_done_rels).
 */
static void
restart_step(TimestampTz now)
{
	MemoryContext cxt = CurrentMemoryContext;

	if (restart_retry_at != 0 && now < restart_retry_at)
		return;
	PG_TRY();
	{
		reclaim_all();
		claims_recorded = true;
		if (rs_rewarm_on_restart)
		{
			int			failed = rewarm_all();

			failed += reseed_all();
			if (failed > 0 && rs_worker_stopping())
				ereport(ERROR,
						(errcode(ERRCODE_ADMIN_SHUTDOWN),
						 errmsg("the worker is stopping"),
						 errdetail("The next worker goes on with the tables left.")));
			if (failed > 0)
				ereport(ERROR,
						(errmsg("%d tables could not be refreshed", failed),
						 errdetail("See the log lines before; the others are done.")));
		}
		rs_redis_restart_done();
		restart_progress_reset();
		restart_retry_at = 0;
		restart_backoff_ms = 0;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(cxt);
		restart_backoff_ms = restart_backoff_ms == 0 ? 1000 : Min(restart_backoff_ms * 2, 60000);

		/*
		 * a table whose code ran into warm_timeout: as the background warm
		 * waits
		 */
		if (restart_timed_out)
			restart_backoff_ms = Max(restart_backoff_ms,
									 (int) Min((int64) rs_warm_timeout_ms * 10, (int64) 3600 * 1000));
		/* one that failed otherwise after running long: ten times what it ran */
		restart_backoff_ms = Max(restart_backoff_ms, (int) Min(restart_slow_ms * 10, (int64) 3600 * 1000));
		restart_timed_out = false;
		restart_slow_ms = 0;
		restart_retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), restart_backoff_ms);
		ereport(LOG,
				(errmsg("redis_sync worker: the work after the Redis restart failed, retrying in %d ms: %s",
						restart_backoff_ms, edata->message),
				 edata->detail ? errdetail("%s", edata->detail) : 0));
		FreeErrorData(edata);
	}
	PG_END_TRY();
}

/* an entry Redis refused stays queued with its error: say so in the log */
static void
log_refusal(const RedisFailure *f)
{
	ereport(LOG,
			(errmsg("redis_sync worker: %s", f->message),
			 f->detail ? errdetail("%s", f->detail) : 0));
}

/* the final round's deadline for its delivery (0: none) */
static TimestampTz deliver_deadline = 0;

/*
 * Between two batches of a delivery: the worker paused, or stopping (the
 * final round delivers what is left), or past the final round's deadline
 * (a large outbox held a fast shutdown for as long as its delivery took,
 * past shutdown_drain_timeout; what is left is delivered after the restart)
 */
static bool
deliver_stop(void)
{
	return rs_worker_pause_check() || rs_worker_stopping() ||
		(deliver_deadline != 0 && GetCurrentTimestamp() >= deliver_deadline);
}

/*
 * Deliver the outbox until a short batch shows it empty (or the worker is
 * paused or stopping), each batch in its own transaction; false on a Redis
 * failure.
 */
static bool
deliver_all(void)
{
	RsDeliveryRules rules = {0};
	RsDeliveryOutcome out;

	rs_worker_outbox_reading();
	outbox_read = true;
	delivery_started = GetCurrentTimestamp();
	changes_at_delivery = rs_worker_waker_changes();

	rules.relid = InvalidOid;
	rules.max = PG_INT64_MAX;
	rules.due_only = true;
	rules.batch_xacts = true;
	rules.stop_on_short = true;
	rules.stop = deliver_stop;
	rules.on_refusal = log_refusal;
	rules.activity = "redis_sync: delivering the outbox";
	rules.cxt = round_cxt;
	rs_outbox_deliver_loop(&rules, &out);
	if (out.failed)
	{
		ereport(LOG,
				(errmsg("redis_sync worker: could not deliver the outbox: %s", out.failure.message),
				 out.failure.detail ? errdetail("%s", out.failure.detail) : 0));
		rs_stats_error(InvalidOid, out.failure.message);
		rs_stats_flush();
		return false;
	}
	return true;
}

static bool
marker_sweep_round(void)
{
	bool		ok;

	rs_xact_begin("redis_sync: sweeping in-flight markers");
	ok = rs_sweep_markers();
	rs_stats_flush();
	rs_xact_commit(round_cxt);
	return ok;
}

static uint64
slot_notifies(void)
{
	RsDbSlot   *slot = rs_worker_slot();
	uint64		n;

	SpinLockAcquire(&slot->mutex);
	n = slot->notifies;
	SpinLockRelease(&slot->mutex);
	return n;
}

/*
 * The extension is not in this database: clear the slot's "want" so the
 * launcher does not start a worker again, unless a CREATE EXTENSION
 * committed after notifies was read (then look again).  True: exit.
 */
static bool
slot_give_up(uint64 notifies)
{
	RsDbSlot   *slot = rs_worker_slot();
	bool		give_up;

	SpinLockAcquire(&slot->mutex);
	give_up = slot->notifies == notifies;
	if (give_up)
		slot->want = false;
	SpinLockRelease(&slot->mutex);
	return give_up;
}

static bool
slot_wanted(void)
{
	RsDbSlot   *slot = rs_worker_slot();
	bool		want;

	SpinLockAcquire(&slot->mutex);
	want = slot->want;
	SpinLockRelease(&slot->mutex);
	return want;
}

/* the launcher or DROP DATABASE wants this worker gone for now */
static bool
slot_stop_requested(bool *held)
{
	RsDbSlot   *slot = rs_worker_slot();
	bool		stop;

	SpinLockAcquire(&slot->mutex);
	*held = slot->hold;
	stop = slot->hold || !slot->want || slot->dbid != MyDatabaseId;
	SpinLockRelease(&slot->mutex);
	return stop;
}

/*
 * Is the extension still in the database?  Looked at once a second
 * (checking the catalog every round would cost a transaction per commit).
 * -1: go on with the round; else the wait before the next round (0: exit).
 */
static int
check_extension(TimestampTz now)
{
	uint64		notifies;
	bool		ready;

	if (ext_checked_at != 0 && !TimestampDifferenceExceeds(ext_checked_at, now, 1000))
		return -1;
	notifies = slot_notifies();
	StartTransactionCommand();
	ready = extension_ready();
	commit_round_txn();
	if (!ready)
	{
		/* exit, unless CREATE EXTENSION committed since the look */
		extension_gone = slot_give_up(notifies);
		return extension_gone ? 0 : 10;
	}
	ext_checked_at = now;
	return -1;
}

/*
 * Probe Redis at most once a second, and always while the circuit is open;
 * after the first success record the key prefix claims, and after a Redis
 * restart do the restart's work (restart_step).  False when Redis cannot be
 * reached or is loading.
 */
static bool
probe_step(TimestampTz now)
{
	if (last_probe != 0 && !rs_circuit_is_open() &&
		!TimestampDifferenceExceeds(last_probe, now, 1000))
		return true;
	last_probe = now;
	if (!probe())
		return false;

	/*
	 * worker_stats.cluster: the map as this worker sees it (kept while Redis
	 * fails)
	 */
	rs_stats_set_cluster(redis_cluster_state_json());
	if (rs_redis_restart_pending())
		restart_step(now);
	else if (!claims_recorded)
	{
		reclaim_all();
		claims_recorded = true;
	}

	/*
	 * the restart's work is done for this run_id: remember it across server
	 * restarts
	 */
	if (current_run_id[0] != '\0' && !rs_redis_restart_pending() &&
		strcmp(saved_run_id, current_run_id) != 0)
		saved_run_id_write(current_run_id);
	return true;
}

/*
 * Drain the write-behind tables when one is due, when flush() asks, and at
 * least every naptime (new tables) -- not at every commit that woke us for
 * the outbox.  Returns the wait before the next round.
 */
static int
drain_step(TimestampTz now)
{
	uint64		gen = rs_flush_pending();

	if (gen != 0 || drain_due == 0 || now >= drain_due)
	{
		TimestampTz next_due;
		int64		applied;
		int			failed;
		bool		cut_short;

		applied = rs_drain_round(gen != 0, 0, &next_due, &failed, &cut_short);

		/*
		 * a table stopped at drain_timeout: the next round (right after the
		 * outbox's delivery) goes on with it, and the flush() waits for it
		 */
		if (gen != 0 && !cut_short)
			rs_flush_completed(gen, applied, failed);
		drain_due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), rs_naptime_ms);
		if (cut_short)
			drain_due = GetCurrentTimestamp();
		else if (next_due != 0 && next_due < drain_due)
			drain_due = next_due;
	}
	return Max(1, Min(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), drain_due),
					  rs_naptime_ms));
}

/*
 * The flush() generation pending when this round began: the only one a
 * failed round may answer.  A flush() asked for during a round that then
 * fails (a delivery that timed out, say) was never drained by it; it stays
 * pending, and the next round, which a pending flush() starts at once even
 * during backoff, drains it or fails it on its own account.
 */
static uint64 round_flush_gen = 0;

/* Redis could not be reached: back off; a waiting flush() must not wait it out */
static int
round_failed(void)
{
	if (round_flush_gen != 0)
		rs_flush_unreachable(round_flush_gen);
	backoff_ms = backoff_ms == 0 ? BACKOFF_MIN_MS : Min(backoff_ms * 2, rs_retry_max_backoff_ms);
	retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), backoff_ms);
	return backoff_ms;
}

/* one round; returns how long to sleep */
static long
worker_round(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int			wait_ms;
	bool		ok;

	round_flush_gen = rs_flush_pending();
	if ((wait_ms = check_extension(now)) >= 0)
		return wait_ms;

	/*
	 * after a failure, commits waking us must not turn backoff into a busy
	 * loop
	 */
	if (retry_at != 0 && now < retry_at && rs_flush_pending() == 0)
		return Max(1, TimestampDifferenceMilliseconds(now, retry_at));
	retry_at = 0;
	rs_stats_worker_round();
	if (rs_worker_pause_check())
		return rs_naptime_ms;

	ok = probe_step(now);
	if (ok && rs_identity_worker_due())
	{
		/* a promotion since the last round: its timeline, recorded */
		rs_xact_begin("redis_sync: recording this database's identity");
		rs_identity_worker_check();
		rs_xact_commit(round_cxt);
	}
	if (ok)
		ok = deliver_all();
	if (ok && (last_sweep == 0 || rs_worker_sweep_requested() ||
			   TimestampDifferenceExceeds(last_sweep, now, rs_marker_sweep_ms)))
	{
		last_sweep = now;
		ok = marker_sweep_round();
	}
	if (ok && (warm_busy || rs_worker_warm_requested() ||
			   TimestampDifferenceExceeds(last_warm, now, rs_naptime_ms)))
	{
		/* background warms (warm.c), bounded in time */
		last_warm = now;
		warm_busy = rs_warm_round();
	}
	if (ok)
	{
		backoff_ms = 0;
		return drain_step(now);
	}
	return round_failed();
}

/* at SIGTERM: deliver and drain once more, within a bounded time */
static void
final_round(void)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), rs_shutdown_drain_ms);
	TimestampTz next_due;
	bool		ready;
	uint64		gen = rs_flush_pending();

	in_final_round = true;
	rs_step_shutdown_final();
	if (rs_shutdown_drain_ms == 0)
		return;
	StartTransactionCommand();
	ready = extension_ready();
	commit_round_txn();
	if (!ready || rs_worker_pause_check())
		return;
	PG_TRY();
	{
		int64		n;
		int			failed;
		bool		cut_short;

		deliver_deadline = deadline;
		(void) deliver_all();
		n = rs_drain_round(true, deadline, &next_due, &failed, &cut_short);
		/* a flush() the round cut by the SIGTERM left waiting: all drained */
		if (gen != 0 && !cut_short && failed == 0)
			rs_flush_completed(gen, n, 0);
		ereport(LOG,
				(errmsg("redis_sync worker: final drain at shutdown applied %lld rows", (long long) n),
				 cut_short ? errdetail("It stopped at redis_sync.shutdown_drain_timeout; the keys left stay dirty in Redis and are drained after the restart.") : 0));
	}
	PG_CATCH();
	{
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
	}
	PG_END_TRY();
}

/*
 * Wait until the extension is in the database (the launcher probes
 * databases this way), exiting when the slot is given up; returns whether
 * the launcher started this worker to probe.
 */
static bool
wait_for_extension(void)
{
	RsDbSlot   *slot;
	bool		probing;

	for (;;)
	{
		uint64		notifies = slot_notifies();
		bool		ready;

		StartTransactionCommand();
		ready = extension_ready();
		if (my_dbname[0] == '\0')
		{
			char	   *name = get_database_name(MyDatabaseId);

			strlcpy(my_dbname, name ? name : "?", sizeof(my_dbname));
		}
		commit_round_txn();
		if (ready)
			break;
		if (slot_give_up(notifies))
			proc_exit(0);
	}
	slot = rs_worker_slot();
	SpinLockAcquire(&slot->mutex);
	probing = slot->probing;
	slot->probing = false;
	SpinLockRelease(&slot->mutex);
	return probing;
}

/* SIGTERM, or the launcher asked this worker to stop: exit (after a final round) */
static void
shut_down(bool held)
{
	MemoryContextSwitchTo(round_cxt);
	/* a database about to be dropped or moved: no final drain */
	(void) slot_stop_requested(&held);
	if (!held)
		final_round();

	/*
	 * A SIGTERM outside a server shutdown (pg_terminate_backend()) must not
	 * stop async delivery, outbox repair and write-behind until the next
	 * restart: the launcher starts a new worker after
	 * RS_WORKER_RESTART_SECONDS while the database wants one (not during
	 * DROP/ALTER DATABASE, nor after DROP EXTENSION).
	 */
	ereport(LOG,
			(errmsg("redis_sync worker shutting down"),
			 held ? errdetail("ALTER or DROP DATABASE is waiting for it.") :
			 !slot_wanted() ? errdetail("redis_sync.database no longer lists the database.") :
			 errdetail("A new worker starts within %d second(s) unless the server is shutting down.",
					   RS_WORKER_RESTART_SECONDS)));
	proc_exit(1);
}

/*
 * When several sessions commit async changes at once, let them collect for
 * a moment before the next delivery.  Each delivery is a transaction, a
 * round trip and WAL of its own: one per commit costs the worker more CPU
 * than the commits themselves, and on a busy server that CPU is the
 * clients'.  Engaged when, between the start of the previous delivery and
 * the end of this one, the worker was woken by commits of other backends
 * than the one before at least COALESCE_MIN_CHANGES times (shmem's
 * waker_changes, counted at every wake-up, worker_signal.c): commits of
 * several sessions arriving faster than one delivery per commit.  Then the
 * next delivery starts no sooner than redis_sync.outbox_coalesce after this
 * one began.
 * A single session committing over and over never engages it (delaying
 * its deliveries by 5 ms cost a single client throughput on 2 cores,
 * bench/ section 1; pace_wait() bounds its deliveries to one per ms
 * instead), nor do sessions committing now and then (each commit is
 * delivered before the next arrives).  The wait ignores the latch; a
 * SIGTERM waits it out.
 */
#define COALESCE_MIN_CHANGES 2

static void
coalesce_wait(void)
{
	uint64		changes;
	bool		coalescing;
	long		wait_ms;

	if (rs_outbox_coalesce_ms == 0 || delivery_started == 0)
		return;
	changes = rs_worker_waker_changes();
	coalescing = changes - changes_before >= COALESCE_MIN_CHANGES;
	changes_before = changes_at_delivery;
	if (!coalescing)
		return;
	wait_ms = rs_outbox_coalesce_ms -
		TimestampDifferenceMilliseconds(delivery_started, GetCurrentTimestamp());
	if (wait_ms > 0 && !got_sigterm)
		(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, wait_ms, PG_WAIT_EXTENSION);
}

/*
 * A single session committing faster than one delivery per
 * RS_PACE_MS: deliver its commits together, at most one delivery per
 * RS_PACE_MS.  Every delivery is a transaction, a round trip to Redis and
 * WAL of its own; at one per commit the worker's CPU, on a small machine
 * the writer's too, went into those rather than into the changes.  Woken
 * by a commit less than RS_PACE_MS after the previous delivery began, the
 * worker waits for the rest of that interval, so the commit reaches Redis
 * at most RS_PACE_MS later than it would have: commits further apart than
 * that are delivered at once, as before (bench/ section 4 keeps the lag
 * under its targets).  Not while flush() waits or at shutdown; off with
 * redis_sync.outbox_coalesce = 0, as coalescing is.
 */
#define RS_PACE_MS 1

static void
pace_wait(void)
{
	long		wait_us;
	long		secs;
	int			usecs;

	if (rs_outbox_coalesce_ms == 0 || delivery_started == 0 || got_sigterm ||
		rs_flush_pending() != 0)
		return;
	TimestampDifference(delivery_started, GetCurrentTimestamp(), &secs, &usecs);
	if (secs > 0)
		return;
	wait_us = Min(rs_outbox_coalesce_ms, RS_PACE_MS) * 1000L - usecs;
	if (wait_us > 0)
		pg_usleep(wait_us);
}

/* one round, its errors caught: logged, backed off; returns how long to sleep */
static long
guarded_round(void)
{
	long		sleep_ms = rs_naptime_ms;
	MemoryContext old = MemoryContextSwitchTo(round_cxt);

	round_flush_gen = 0;
	PG_TRY();
	{
		sleep_ms = worker_round();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(round_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(LOG,
				(errmsg("redis_sync worker: %s", edata->message),
				 edata->detail ? errdetail("%s", edata->detail) : 0));
		backoff_ms = backoff_ms == 0 ? BACKOFF_MIN_MS : Min(backoff_ms * 2, rs_retry_max_backoff_ms);
		sleep_ms = backoff_ms;

		/*
		 * a flush() waiting for this round learns it failed (see the log);
		 * not when the SIGTERM cut it (a cancelled marker repair): the final
		 * round or the next worker answers
		 */
		if (round_flush_gen != 0 && !rs_worker_stopping())
			rs_flush_completed(round_flush_gen, 0, 1);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	MemoryContextReset(round_cxt);
	return sleep_ms;
}

/*
 * Entry point of a worker started by the launcher: bgw_main_arg is its slot,
 * bgw_extra the database OID and the slot's generation.
 */
/*
 * At the worker's exit: a step whose code went on past twice its time
 * limit after its cancel ended it (xact_step.c).  The next workers run no
 * code of that table owner (as_owner.c) for ten times the limit (ten seconds
 * at least), doubled at each repeat (an hour at most): its tables' work fails meanwhile and is
 * retried, like a lock it could not get, and every other table's goes on.
 * The slot keeps RS_QUARANTINE_ROLES owners: with one, two owners'
 * code took turns ending the worker, each let go by the other's hold
 * (tests/t/297_worker_overrun_definer).  When every entry is taken, the one
 * whose hold ends first is replaced.
 */
static void
worker_exit_overrun(int code, Datum arg)
{
	int			ms;
	Oid			role = rs_step_overrun_role(&ms);
	int64		hold_ms;
	int			offenses;
	RsDbSlot   *slot = rs_worker_slot();
	RsQuarantine *q;

	if (!OidIsValid(role) || slot == NULL)
		return;
	SpinLockAcquire(&slot->mutex);
	q = rs_quarantine_entry(slot->quarantine, role, 0);
	offenses = ++q->offenses;
	/* a step armed with what was left of a budget can have had 1 ms */
	hold_ms = (int64) Max(ms, 1000) * 10;
	for (int i = 1; i < offenses && hold_ms < 3600 * 1000; i++)
		hold_ms *= 2;
	hold_ms = Min(hold_ms, (int64) 3600 * 1000);
	q->until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), hold_ms);
	SpinLockRelease(&slot->mutex);
	ereport(LOG,
			(errmsg("redis_sync worker: code run as role %u went on past twice its step's time limit (%d ms) after the cancel; the worker ends, and the next one runs no code of that role for %d s",
					role, ms, (int) (hold_ms / 1000)),
			 offenses > 1 ? errdetail("It did so %d times: each doubles the hold.", offenses) : 0,
			 errhint("Look for a trigger, policy or type function of that role's synced tables that catches query_canceled.")));
}

/* the holds earlier workers of this database left (worker_exit_overrun) */
static void
quarantine_from_slot(void)
{
	RsDbSlot   *slot = rs_worker_slot();
	RsQuarantine held[RS_QUARANTINE_ROLES];
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&slot->mutex);
	memcpy(held, slot->quarantine, sizeof(held));
	SpinLockRelease(&slot->mutex);
	for (int i = 0; i < RS_QUARANTINE_ROLES; i++)
	{
		if (!OidIsValid(held[i].role) || now >= held[i].until)
			continue;
		rs_as_owner_quarantine(held[i].role, held[i].until);
		StartTransactionCommand();
		ereport(LOG,
				(errmsg("redis_sync worker: runs no code of role \"%s\" until %s",
						GetUserNameFromId(held[i].role, true) ? GetUserNameFromId(held[i].role, true) : "?",
						timestamptz_to_str(held[i].until)),
				 errdetail("Its code ended the worker before: it went on past a step's time limit after the cancel.")));
		CommitTransactionCommand();
	}
}

void
redis_sync_worker_main(Datum arg)
{
	int			slotno = DatumGetInt32(arg);
	Oid			dbid;
	uint32		generation;
	bool		probing;
	bool		held = false;

	memcpy(&dbid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	memcpy(&generation, MyBgworkerEntry->bgw_extra + sizeof(Oid), sizeof(uint32));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, worker_sigterm);
	BackgroundWorkerUnblockSignals();

	/* the slot may have been given up (DROP DATABASE) while we started */
	if (!rs_worker_attach(slotno, dbid, generation))
		proc_exit(0);
	before_shmem_exit((pg_on_exit_callback) rs_worker_unregister_latch, (Datum) 0);
	before_shmem_exit(worker_exit_overrun, (Datum) 0);
	BackgroundWorkerInitializeConnectionByOid(dbid, InvalidOid, 0);
	/* nothing the worker runs may resolve names through a user's schema */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * Like autovacuum, the worker does its work READ COMMITTED and
	 * read-write, whatever the database or its role sets as the default of
	 * client sessions (ALTER DATABASE ... SET): read-only made every drain
	 * fail and be retried forever, and REPEATABLE READ or SERIALIZABLE held
	 * one snapshot, and with it vacuum's horizon, across each transaction
	 * (the restart refresh's pass, a drain's batches), besides SSI's cost.
	 * worker_pause() is the way to stop the worker writing.
	 * tests/t/278_worker_session_defaults.
	 */
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * The drain writes tables as any client does, with their triggers and
	 * foreign keys, and as the table owner under the policies that apply to
	 * the owner (FORCE ROW LEVEL SECURITY).  Set for the database or the
	 * role, session_replication_role = replica skipped both triggers and
	 * foreign keys (a row whose parent did not exist was inserted instead of
	 * being dead-lettered), and row_security = off (pg_dump's setting) made
	 * every change drained into such a table a dead letter.
	 * tests/t/283_worker_session_roles.
	 */
	SetConfigOption("session_replication_role", "origin", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("row_security", "on", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * The worker catches the errors of its work (a row the drain cannot write
	 * becomes a dead letter, a failed round is retried): exit_on_error = on
	 * made each of them FATAL, and the worker, started again, met the same
	 * row and exited again, draining nothing more.
	 * tests/t/284_worker_exit_on_error.
	 */
	SetConfigOption("exit_on_error", "off", PGC_SUSET, PGC_S_OVERRIDE);
	pgstat_report_appname("redis_sync worker");
	quarantine_from_slot();

	round_cxt = AllocSetContextCreate(TopMemoryContext, "redis_sync worker round",
									  ALLOCSET_DEFAULT_SIZES);
	probing = wait_for_extension();
	ext_checked_at = GetCurrentTimestamp();
	ereport(LOG,
			(errmsg("redis_sync worker started in database \"%s\"", my_dbname),
			 probing ? errdetail("The launcher found the extension in the database.") : 0));

	for (;;)
	{
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		if (extension_gone)
		{
			ereport(LOG,
					(errmsg("redis_sync worker in database \"%s\" exiting: the extension was dropped",
							my_dbname)));
			proc_exit(0);
		}
		if (got_sigterm || slot_stop_requested(&held))
			shut_down(held);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		outbox_read = false;
		sleep_ms = guarded_round();
		if (outbox_read)
			rs_worker_outbox_resignal();
		pgstat_report_activity(STATE_IDLE, NULL);
		coalesce_wait();
		if (WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					  sleep_ms, PG_WAIT_EXTENSION) & WL_LATCH_SET)
			pace_wait();
		ResetLatch(MyLatch);
	}
}

/* ----------------------------------------------------------------
 * Settings (from _PG_init)
 * ---------------------------------------------------------------- */

void
rs_worker_init(void)
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

	DefineCustomIntVariable("redis_sync.marker_sweep_interval",
							"How often the worker checks in-flight markers left by transactions that did not commit.",
							NULL,
							&rs_marker_sweep_ms,
							5000, 10, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("redis_sync.outbox_coalesce",
							"Shortest interval between two outbox deliveries of the background worker while several sessions commit async changes at once.",
							"A single session's commits are delivered within 1 ms (at most one delivery per ms); 0 delivers at every wake-up.",
							&rs_outbox_coalesce_ms,
							5, 0, 1000,
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
