/*-------------------------------------------------------------------------
 *
 * launcher_hold.c
 *		The ProcessUtility hook that keeps a database's redis_sync worker
 *		out of the way of DROP DATABASE, ALTER DATABASE (RENAME, SET
 *		TABLESPACE) and CREATE DATABASE ... TEMPLATE; it also wakes the
 *		worker after COMMIT PREPARED (what the prepared transaction queued
 *		in the outbox is delivered at once, as at a commit), and warns when
 *		DROP EXTENSION redis_sync discards queued outbox entries.
 *
 * Those commands fail while another process is connected to the database.
 * The hook asks the database's worker to exit and waits for it (at most
 * RS_HOLD_WAIT_MS) before the command runs; the slot is "held" meanwhile
 * (RsDbSlot.hold, shmem.h), so the launcher (launcher.c) does not start the
 * worker again until the command is over.  A hold whose backend vanished
 * ends after RS_HOLD_MAX_MS (the launcher checks).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/utility.h"
#include "utils/acl.h"

#include "launcher.h"
#include "outbox.h"
#include "shmem.h"

#define RS_HOLD_WAIT_MS 5000	/* DROP DATABASE waits this long for the
								 * worker */
#define RS_HOLD_MAX_MS 600000	/* a hold whose backend vanished ends after
								 * this */

static ProcessUtility_hook_type prev_process_utility = NULL;

/* ----------------------------------------------------------------
 * DROP / ALTER / CREATE DATABASE: keep the worker out of the way
 * ---------------------------------------------------------------- */

/*
 * The slot this backend holds (at most one at a time): released when the
 * command ends, fails, is cancelled during the wait, or the backend exits
 * (FATAL, pg_terminate_backend()), so a worker is never left stopped.
 */
static RsDbSlot *held_slot = NULL;
static Oid	held_dbid = InvalidOid;
static bool hold_exit_registered = false;

static void release_database(RsDbSlot *slot, Oid dbid, bool dropped);

static void
release_hold_at_exit(int code, Datum arg)
{
	if (held_slot != NULL)
		release_database(held_slot, held_dbid, false);
}

/*
 * Ask the worker of dbid to exit and keep it from being started again;
 * wait (bounded) until it is gone.  The slot held is in held_slot.
 */
static void
hold_database(Oid dbid)
{
	RsDbSlot   *slot = rs_slot_for_db(dbid);
	TimestampTz deadline;
	int			pid;

	if (slot == NULL || held_slot != NULL)
		return;
	if (!hold_exit_registered)
	{
		before_shmem_exit(release_hold_at_exit, (Datum) 0);
		hold_exit_registered = true;
	}
	SpinLockAcquire(&slot->mutex);
	if (slot->dbid != dbid)
	{
		SpinLockRelease(&slot->mutex);
		return;
	}
	slot->hold = true;
	slot->hold_pid = MyProcPid;
	slot->hold_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), RS_HOLD_MAX_MS);
	pid = slot->worker_pid;
	SpinLockRelease(&slot->mutex);
	held_slot = slot;
	held_dbid = dbid;
	if (pid != 0)
		(void) kill(pid, SIGTERM);
	rs_launcher_wake();

	/*
	 * Wait until the worker has left the process array, not only cleared
	 * worker_pid (it does that at the start of its exit): DROP DATABASE WITH
	 * (FORCE) checks the right to signal every process still in the database,
	 * and a plain owner may not signal the worker.
	 */
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), RS_HOLD_WAIT_MS);
	for (;;)
	{
		int			last_pid = pid;

		SpinLockAcquire(&slot->mutex);
		pid = slot->dbid == dbid ? slot->worker_pid : 0;
		SpinLockRelease(&slot->mutex);
		if (pid == 0 && last_pid != 0 && BackendPidGetProc(last_pid) != NULL)
			pid = last_pid;		/* exiting, still in the process array */
		if (pid == 0 || GetCurrentTimestamp() >= deadline)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* the command is over: the worker may start again (dropped: the slot ends) */
static void
release_database(RsDbSlot *slot, Oid dbid, bool dropped)
{
	if (slot == held_slot)
	{
		held_slot = NULL;
		held_dbid = InvalidOid;
	}
	SpinLockAcquire(&slot->mutex);
	if (slot->dbid == dbid && slot->hold_pid == MyProcPid)
	{
		slot->hold = false;
		slot->hold_pid = 0;
		if (dropped)
			slot->want = false;
	}
	SpinLockRelease(&slot->mutex);
	rs_launcher_wake();
}

static bool
has_option(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
		if (strcmp(((DefElem *) lfirst(lc))->defname, name) == 0)
		return true;
	return false;
}

/* the template of CREATE DATABASE (template1 when none is named) */
static Oid
template_of(CreatedbStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->options)
	{
		DefElem    *d = lfirst(lc);

		if (strcmp(d->defname, "template") == 0 && d->arg != NULL)
			return get_database_oid(defGetString(d), true);
	}
	return get_database_oid("template1", true);
}

/*
 * Would the command get past its own checks?  The worker is only asked to
 * step aside for a command that can run: a role that does not own the
 * database (DROP DATABASE of another's database, a cancelled or timed-out
 * attempt in a loop) must not be able to stop another database's worker,
 * and DROP / ALTER ... SET TABLESPACE / CREATE DATABASE in a transaction
 * block fail before they look at the database.
 */
static bool
may_hold(Oid dbid, bool top_level_only, ProcessUtilityContext context)
{
	if (top_level_only &&
		(context != PROCESS_UTILITY_TOPLEVEL || IsTransactionBlock() || IsSubTransaction()))
		return false;
	return pg_database_ownercheck(dbid, GetUserId());
}

/*
 * DROP EXTENSION redis_sync: the outbox entries it discards (its changes
 * never reach Redis); -1 for any other statement.
 */
static int64
dropped_outbox_entries(Node *parsetree)
{
	DropStmt   *ds;
	ListCell   *lc;

	if (!IsA(parsetree, DropStmt))
		return -1;
	ds = (DropStmt *) parsetree;
	if (ds->removeType != OBJECT_EXTENSION)
		return -1;
	foreach(lc, ds->objects)
	{
		Node	   *o = lfirst(lc);

		if (IsA(o, String) && strcmp(strVal(o), "redis_sync") == 0)
			return rs_outbox_count();
	}
	return -1;
}

static void
rs_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				   ProcessUtilityContext context, ParamListInfo params,
				   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	Oid			dbid = InvalidOid;
	bool		dropping = false;
	bool		top_level_only = true;
	bool		holding = false;
	int64		discarded;

	if (rs_shmem_ready() && held_slot == NULL)
	{
		switch (nodeTag(parsetree))
		{
			case T_DropdbStmt:
				dbid = get_database_oid(((DropdbStmt *) parsetree)->dbname, true);
				dropping = true;
				break;
			case T_RenameStmt:
				if (((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
					dbid = get_database_oid(((RenameStmt *) parsetree)->subname, true);
				top_level_only = false;
				break;
			case T_AlterDatabaseStmt:
				/* only SET TABLESPACE needs the database to itself */
				if (has_option(((AlterDatabaseStmt *) parsetree)->options, "tablespace"))
					dbid = get_database_oid(((AlterDatabaseStmt *) parsetree)->dbname, true);
				break;
			case T_CreatedbStmt:
				dbid = template_of((CreatedbStmt *) parsetree);
				break;
			default:
				break;
		}
		holding = OidIsValid(dbid) && dbid != MyDatabaseId &&
			rs_slot_for_db(dbid) != NULL && may_hold(dbid, top_level_only, context);
	}

	discarded = dropped_outbox_entries(parsetree);
	PG_TRY();
	{
		/* inside: a cancel while waiting for the worker releases the hold */
		if (holding)
			hold_database(dbid);
		if (prev_process_utility)
			prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
								 queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
									queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		if (holding && held_slot != NULL)
			release_database(held_slot, held_dbid, false);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (holding && held_slot != NULL)
		release_database(held_slot, held_dbid, dropping);
	if (discarded > 0)
		ereport(WARNING,
				(errmsg("redis_sync was dropped: %lld queued outbox entries are discarded",
						(long long) discarded),
				 errdetail("Their changes never reached Redis: the cached keys they were for may be stale."),
				 errhint("Once the tables are synced again, run redis_sync.resync() on them.")));

	/*
	 * COMMIT PREPARED commits what another session queued: that session's
	 * commit callback, which wakes the worker for outbox entries, ran at
	 * PREPARE.  The entries are visible now (the commit is done); wake the
	 * worker here, or they wait for its naptime.  As a commit does: no signal
	 * while one is already due (worker_signal.c), so a transaction manager
	 * committing prepared transactions in a stream signals the worker once
	 * per delivery, not once per COMMIT PREPARED.
	 */
	if (IsA(parsetree, TransactionStmt) &&
		((TransactionStmt *) parsetree)->kind == TRANS_STMT_COMMIT_PREPARED)
		rs_worker_wake_outbox();
}

/* install the hook (from rs_launcher_init, when preloaded) */
void
rs_launcher_hold_init(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = rs_process_utility;
}
