/*-------------------------------------------------------------------------
 *
 * launcher.c
 *		The redis_sync launcher: one background worker per database that
 *		has the extension.
 *
 * This file owns the launcher process, redis_sync.max_workers and the
 * signal from CREATE EXTENSION.  The redis_sync.database allow-list is
 * allowlist.c; the ProcessUtility hook that keeps workers out of the way of
 * DROP/ALTER DATABASE is launcher_hold.c.  The per-database state the
 * workers and backends share lives in RsDbSlot (shmem.h); the workers are
 * worker.c.
 *
 * The launcher is a static background worker (shared_preload_libraries),
 * started once recovery has finished and connected to no database.  It
 * keeps a slot per database that wants a worker and starts a dynamic
 * worker for it, at most redis_sync.max_workers at a time:
 *
 *	- discovery: at start, and every RS_SCAN_MS, it reads pg_database; each
 *	  database it has not looked at yet (connections allowed, not a
 *	  template, allowed by redis_sync.database) gets a worker "probing":
 *	  the worker connects, finds the extension or not, and exits at once
 *	  when it is not there.  A database where CREATE EXTENSION (or ALTER
 *	  EXTENSION UPDATE) commits signals the launcher itself: the install
 *	  script calls _launcher_notify(), which at commit takes a slot for the
 *	  database and sets the launcher's latch, so the worker starts within
 *	  milliseconds.
 *	- a worker that exits (error, pg_terminate_backend()) is started again
 *	  after RS_RESTART_MS while its database still wants one; a worker that
 *	  finds the extension dropped clears "want" and exits for good.
 *	- DROP DATABASE, ALTER DATABASE (RENAME, SET TABLESPACE) and CREATE
 *	  DATABASE ... TEMPLATE fail while another process is connected to the
 *	  database; the hook (launcher_hold.c) asks the database's worker to
 *	  exit and waits for it (at most RS_HOLD_WAIT_MS) before the command
 *	  runs, and the worker is not started again until the command is
 *	  over.
 *	- a database left without a worker (max_workers reached, or
 *	  max_worker_processes) is logged once and shown in worker_stats.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "postmaster/postmaster.h"
#include "storage/ipc.h"
#include "storage/spin.h"
#include "tcop/utility.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "allowlist.h"
#include "launcher.h"
#include "shmem.h"

PGDLLEXPORT void redis_sync_launcher_main(Datum arg);

PG_FUNCTION_INFO_V1(redis_sync_launcher_notify);

#define RS_SCAN_MS 10000		/* pg_database is read again this often */
#define RS_RESTART_MS 1000		/* a worker that exited starts again after
								 * this */

int			rs_max_workers = 4;

/* ----------------------------------------------------------------
 * CREATE EXTENSION: signal the launcher at commit
 * ---------------------------------------------------------------- */

static bool notify_at_commit = false;
static bool pause_at_commit = false;	/* worker_pause() in the same
										 * transaction */
static char notify_dbname[NAMEDATALEN]; /* for the commit callback's message */
static bool notify_callback_registered = false;

static void
notify_xact_callback(XactEvent event, void *arg)
{
	if (!notify_at_commit)
		return;
	if (event == XACT_EVENT_COMMIT)
	{
		RsDbSlot   *slot;
		bool		pause;

		notify_at_commit = false;
		slot = rs_slot_acquire(MyDatabaseId, false);	/* sets want */
		pause = pause_at_commit;
		pause_at_commit = false;
		if (slot == NULL)
		{
			ereport(WARNING,
					(errmsg("no redis_sync worker slot is free for database \"%s\"",
							notify_dbname),
					 errhint("Raise redis_sync.max_workers (restart), or once places are free run SELECT redis_sync._launcher_notify() in the database.")));
			return;
		}
		if (pause)
		{
			SpinLockAcquire(&slot->mutex);
			slot->pause_requested = true;
			SpinLockRelease(&slot->mutex);
		}
		rs_launcher_wake();
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		notify_at_commit = false;
		pause_at_commit = false;
	}
}

/*
 * worker_pause() (pause) or worker_resume() in a transaction that will
 * signal the launcher at commit (CREATE EXTENSION): until then the
 * database has no slot of its own (the pause went to the slot of databases
 * without a worker, and the worker started at commit did not see it), or
 * one a probing worker may give up before the commit.  The slot the commit
 * takes is paused.
 */
void
rs_launcher_pause_at_commit(bool pause)
{
	if (notify_at_commit)
		pause_at_commit = pause;
}

/*
 * _launcher_notify(): called by the install and update scripts; at commit
 * the launcher starts a worker for this database.
 */
Datum
redis_sync_launcher_notify(PG_FUNCTION_ARGS)
{
	if (!rs_preloaded || !rs_shmem_ready() || !rs_database_served(MyDatabaseId))
		PG_RETURN_VOID();

	/*
	 * A template (template1 with the extension, so new databases get it) gets
	 * no worker: its connection would make CREATE DATABASE fail with "source
	 * database is being accessed by other users".  The launcher's scan leaves
	 * templates out the same way.
	 */
	{
		HeapTuple	tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(MyDatabaseId));
		bool		skip = true;

		if (HeapTupleIsValid(tup))
		{
			Form_pg_database d = (Form_pg_database) GETSTRUCT(tup);

			skip = d->datistemplate || !d->datallowconn;
			ReleaseSysCache(tup);
		}
		if (skip)
			PG_RETURN_VOID();
	}
	if (!notify_callback_registered)
	{
		RegisterXactCallback(notify_xact_callback, NULL);
		notify_callback_registered = true;
	}
	strlcpy(notify_dbname, get_database_name(MyDatabaseId), sizeof(notify_dbname));
	notify_at_commit = true;
	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------
 * The launcher process
 * ---------------------------------------------------------------- */

typedef struct LauncherSlot
{
	BackgroundWorkerHandle *handle;
	uint32		generation;
	TimestampTz start_after;
	bool		logged_no_worker;
} LauncherSlot;

static LauncherSlot *lslots = NULL;
static List *seen_dbs = NIL;	/* databases probed or given a slot */
static volatile sig_atomic_t launcher_sigterm = false;

static void
launcher_sigterm_handler(SIGNAL_ARGS)
{
	int			save_errno = errno;

	launcher_sigterm = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * Register the launcher (from _PG_init, shared_preload_libraries); not in a
 * server pg_upgrade runs (binary upgrade mode): its databases are being
 * restored, and workers would push, deliver and drain from them before the
 * upgrade is done.
 */
static void
launcher_register(void)
{
	BackgroundWorker worker;

	if (IsBinaryUpgrade)
		return;
	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	strlcpy(worker.bgw_library_name, "redis_sync", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "redis_sync_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "redis_sync launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "redis_sync launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/* start the worker of slot i; false when no background worker slot is free */
static bool
start_worker(int i, Oid dbid, uint32 generation)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "redis_sync", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "redis_sync_worker_main", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "redis_sync worker for database %u", dbid);
	strlcpy(worker.bgw_type, "redis_sync worker", BGW_MAXLEN);
	worker.bgw_main_arg = Int32GetDatum(i);
	memcpy(worker.bgw_extra, &dbid, sizeof(Oid));
	memcpy(worker.bgw_extra + sizeof(Oid), &generation, sizeof(uint32));
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		return false;
	lslots[i].handle = handle;
	lslots[i].generation = generation;
	return true;
}

/*
 * Read pg_database: databases not seen before get a slot and a probing
 * worker; slots of databases that are gone (or no longer allowed) end.
 */
static void
scan_databases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	List	   *now_dbs = NIL;
	List	   *allowed = NIL;
	MemoryContext cxt = CurrentMemoryContext;
	int			n = rs_nslots();
	Oid		   *before_db = palloc(sizeof(Oid) * n);
	uint32	   *before_gen = palloc(sizeof(uint32) * n);

	/*
	 * Only slots that existed before pg_database was read may be ended: a
	 * CREATE DATABASE + CREATE EXTENSION that commits meanwhile takes a slot
	 * for a database this read does not show.
	 */
	for (int i = 0; i < n; i++)
	{
		RsDbSlot   *slot = rs_slot(i);

		SpinLockAcquire(&slot->mutex);
		before_db[i] = slot->dbid;
		before_gen[i] = slot->generation;
		SpinLockRelease(&slot->mutex);
	}

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database d = (Form_pg_database) GETSTRUCT(tup);
		MemoryContext old = MemoryContextSwitchTo(cxt);

		now_dbs = lappend_oid(now_dbs, d->oid);
		if (d->datallowconn && !d->datistemplate && !database_is_invalid_form(d) &&
			rs_database_name_allowed(NameStr(d->datname)))
			allowed = lappend_oid(allowed, d->oid);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);

	/* slots of databases gone or no longer allowed */
	for (int i = 0; i < n; i++)
	{
		RsDbSlot   *slot = rs_slot(i);

		if (!OidIsValid(before_db[i]) || list_member_oid(allowed, before_db[i]))
			continue;
		SpinLockAcquire(&slot->mutex);
		if (slot->dbid == before_db[i] && slot->generation == before_gen[i])
			slot->want = false;
		SpinLockRelease(&slot->mutex);
	}
	pfree(before_db);
	pfree(before_gen);
	/* forget dropped and disallowed databases (an OID may come back) */
	{
		List	   *keep = NIL;
		ListCell   *lc;
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		/* (a database allowed again later is probed again) */
		foreach(lc, seen_dbs)
			if (list_member_oid(allowed, lfirst_oid(lc)))
			keep = lappend_oid(keep, lfirst_oid(lc));
		list_free(seen_dbs);
		seen_dbs = keep;
		/* new databases: probe */
		foreach(lc, allowed)
		{
			Oid			dbid = lfirst_oid(lc);
			RsDbSlot   *slot;

			if (list_member_oid(seen_dbs, dbid))
				continue;
			if (rs_slot_for_db(dbid) == NULL)
			{
				slot = rs_slot_acquire(dbid, true); /* want, probing */
				if (slot == NULL)
					break;		/* all slots taken: try at the next scan */
			}
			seen_dbs = lappend_oid(seen_dbs, dbid);
		}
		MemoryContextSwitchTo(old);
	}
	list_free(now_dbs);
	list_free(allowed);
}

/* a database's name for the log (the launcher is outside transactions) */
static char *
db_name(Oid dbid)
{
	char	   *name;
	MemoryContext cxt = CurrentMemoryContext;

	StartTransactionCommand();
	name = get_database_name(dbid);
	MemoryContextSwitchTo(cxt);
	name = name ? pstrdup(name) : psprintf("%u", dbid);
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return name;
}

/* a slot as the launcher reads it each round */
typedef struct SlotView
{
	Oid			dbid;			/* InvalidOid: a free slot */
	uint32		generation;
	bool		want;
	bool		hold;
	bool		alive;			/* a worker runs, or is about to */
	bool		probing;
} SlotView;

/* forget the workers that stopped (started again after RS_RESTART_MS); how many run */
static int
reap_workers(TimestampTz now)
{
	int			running = 0;

	for (int i = 0; i < rs_nslots(); i++)
	{
		RsDbSlot   *slot = rs_slot(i);
		pid_t		pid;

		if (lslots[i].handle != NULL &&
			GetBackgroundWorkerPid(lslots[i].handle, &pid) == BGWH_STOPPED)
		{
			pfree(lslots[i].handle);
			lslots[i].handle = NULL;
			lslots[i].start_after = TimestampTzPlusMilliseconds(now, RS_RESTART_MS);
		}
		if (lslots[i].handle != NULL || slot->worker_pid != 0)
			running++;
	}
	return running;
}

/* read slot i; a hold that timed out, or whose backend went away, ends */
static void
read_slot(int i, TimestampTz now, SlotView *v)
{
	RsDbSlot   *slot = rs_slot(i);
	int			hold_pid;

	SpinLockAcquire(&slot->mutex);
	v->dbid = slot->dbid;
	v->generation = slot->generation;
	v->want = slot->want;
	v->probing = slot->probing;
	v->hold = slot->hold;
	hold_pid = slot->hold_pid;
	v->alive = slot->worker_pid != 0;
	/* a hold whose backend went away without releasing it */
	if (v->hold && now >= slot->hold_until)
		slot->hold = v->hold = false;
	SpinLockRelease(&slot->mutex);
	if (v->hold && kill(hold_pid, 0) != 0 && errno == ESRCH)
	{
		SpinLockAcquire(&slot->mutex);
		if (slot->hold_pid == hold_pid)
			slot->hold = v->hold = false;
		SpinLockRelease(&slot->mutex);
	}
	if (lslots[i].handle != NULL && lslots[i].generation != v->generation)
		v->alive = true;		/* the worker of an earlier use of the slot */
	v->alive |= lslots[i].handle != NULL;
}

/*
 * Slot i's database no longer wants a worker (disallowed, dropped): stop
 * the worker, then free the slot.  Returns how soon to look again.
 */
static long
retire_slot(int i, uint32 generation, bool alive)
{
	RsDbSlot   *slot = rs_slot(i);

	if (alive)
	{
		/* the worker exits (it checks want) */
		pid_t		pid = 0;

		if (lslots[i].handle != NULL)
			TerminateBackgroundWorker(lslots[i].handle);
		else if ((pid = slot->worker_pid) != 0)
			(void) kill(pid, SIGTERM);
		return 100;
	}
	/* unless wanted again meanwhile (CREATE EXTENSION) */
	if (rs_slot_free(slot, generation))
	{
		lslots[i].logged_no_worker = false;
		lslots[i].start_after = 0;
	}
	return RS_SCAN_MS;
}

static void
set_no_worker(RsDbSlot *slot, bool no_worker, const char *reason)
{
	SpinLockAcquire(&slot->mutex);
	slot->no_worker = no_worker;
	if (reason)
		strlcpy(slot->no_worker_reason, reason, sizeof(slot->no_worker_reason));
	SpinLockRelease(&slot->mutex);
}

/*
 * Slot i wants a worker and has none: start one, or say (once) why not.
 * Returns how soon to look again.
 */
static long
start_slot_worker(int i, const SlotView *v, TimestampTz now, int *running)
{
	RsDbSlot   *slot = rs_slot(i);

	if (*running >= rs_max_workers)
	{
		set_no_worker(slot, true, "redis_sync.max_workers reached");
		if (!lslots[i].logged_no_worker && !v->probing)
			ereport(LOG,
					(errmsg("redis_sync launcher: no worker for database \"%s\": redis_sync.max_workers (%d) reached",
							db_name(v->dbid), rs_max_workers),
					 errhint("Raise redis_sync.max_workers (and max_worker_processes) and restart the server.")));
		lslots[i].logged_no_worker = !v->probing;
		return RS_SCAN_MS;
	}
	if (!start_worker(i, v->dbid, v->generation))
	{
		set_no_worker(slot, true, "max_worker_processes reached");
		/* a probe (the extension may not be there) is not worth a line */
		if (!lslots[i].logged_no_worker && !v->probing)
			ereport(LOG,
					(errmsg("redis_sync launcher: could not start a worker for database \"%s\": no background worker slot is free",
							db_name(v->dbid)),
					 errhint("Raise max_worker_processes and restart the server.")));
		lslots[i].logged_no_worker = !v->probing;
		lslots[i].start_after = TimestampTzPlusMilliseconds(now, RS_RESTART_MS);
		return RS_RESTART_MS;
	}
	set_no_worker(slot, false, NULL);
	lslots[i].logged_no_worker = false;
	(*running)++;
	return RS_SCAN_MS;
}

/* start, restart, count and end the workers of the slots; how soon to look again */
static long
manage_slots(void)
{
	TimestampTz now = GetCurrentTimestamp();
	long		sleep_ms = RS_SCAN_MS;
	int			running = reap_workers(now);

	for (int i = 0; i < rs_nslots(); i++)
	{
		SlotView	v;

		read_slot(i, now, &v);
		if (!OidIsValid(v.dbid))
			continue;
		if (!v.want && !v.hold)
			sleep_ms = Min(sleep_ms, retire_slot(i, v.generation, v.alive));
		else if (v.hold)
			sleep_ms = Min(sleep_ms, 1000);
		else if (v.alive)
			continue;
		else if (now < lslots[i].start_after)
			sleep_ms = Min(sleep_ms, Max(1, TimestampDifferenceMilliseconds(now, lslots[i].start_after)));
		else
			sleep_ms = Min(sleep_ms, start_slot_worker(i, &v, now, &running));
	}
	return sleep_ms;
}

static void
launcher_detach(int code, Datum arg)
{
	rs_launcher_set_latch(false);
}

void
redis_sync_launcher_main(Datum arg)
{
	TimestampTz next_scan = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, launcher_sigterm_handler);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("redis_sync launcher");

	lslots = MemoryContextAllocZero(TopMemoryContext, sizeof(LauncherSlot) * rs_nslots());
	rs_launcher_set_latch(true);
	before_shmem_exit(launcher_detach, (Datum) 0);
	ereport(LOG,
			(errmsg("redis_sync launcher started"),
			 errdetail("At most %d workers, one per database with the extension.", rs_max_workers)));
	if (rs_max_workers + 1 > max_worker_processes)
		ereport(WARNING,
				(errmsg("redis_sync.max_workers (%d) and the launcher need more background workers than max_worker_processes (%d)",
						rs_max_workers, max_worker_processes),
				 errhint("Raise max_worker_processes to at least %d, plus what parallel query and replication use.",
						 rs_max_workers + 1)));

	while (!launcher_sigterm)
	{
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			next_scan = 0;		/* redis_sync.database may have changed */
		}
		if (GetCurrentTimestamp() >= next_scan)
		{
			scan_databases();
			next_scan = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), RS_SCAN_MS);
		}
		sleep_ms = manage_slots();
		sleep_ms = Min(sleep_ms, Max(1, TimestampDifferenceMilliseconds(GetCurrentTimestamp(), next_scan)));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}

	/*
	 * Exit 1: a launcher that exits 0 is never started again by the
	 * postmaster, and a SIGTERM outside a server shutdown (a superuser's
	 * pg_terminate_backend()) must not leave the databases' workers without
	 * anyone to restart them.  At shutdown nothing is restarted anyway.
	 */
	proc_exit(1);
}

/* ----------------------------------------------------------------
 * Initialisation (from _PG_init)
 * ---------------------------------------------------------------- */

void
rs_launcher_init(void)
{
	/* PGC_POSTMASTER only when preloaded: without a launcher it sizes nothing */
	DefineCustomIntVariable("redis_sync.max_workers",
							"Most redis_sync workers running at once, one per database with the extension.",
							"Each takes a background worker slot of max_worker_processes; the launcher takes one more.",
							&rs_max_workers,
							4, 1, MAX_BACKENDS,
							rs_preloaded ? PGC_POSTMASTER : PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	if (!rs_preloaded)
		return;
	launcher_register();
	rs_launcher_hold_init();
}
