/*-------------------------------------------------------------------------
 *
 * xact_step.c
 *		One step of the worker in its own transaction with a snapshot
 *		(xact_step.h).  Errors are the caller's: an error between begin and
 *		commit propagates, and the caller's handler aborts the transaction
 *		(AbortCurrentTransaction releases the snapshot too).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "as_owner.h"
#include "xact_step.h"

void
rs_xact_begin(const char *activity)
{
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (activity != NULL)
		pgstat_report_activity(STATE_RUNNING, activity);
}

/*
 * The same, for a step whose commit may be lost in a crash without loss:
 * its commit does not wait for its WAL to be flushed (synchronous_commit
 * off for this transaction only), so it does not add a WAL flush of its own
 * to the writers' (issue 18).  The outbox delivery is such a step: a lost
 * commit only brings back the entries it delivered (or the attempts it
 * counted), and delivering an entry again is idempotent, as every write
 * carries its version and Redis ignores a write older than the key's
 * (fence.c).  The write-behind drain is not: it acknowledges claimed
 * members in Redis after its commit.
 */
void
rs_xact_begin_relaxed(const char *activity)
{
	rs_xact_begin(activity);
	(void) set_config_option("synchronous_commit", "off", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
}

void
rs_xact_commit(MemoryContext cxt)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (cxt != NULL)
		MemoryContextSwitchTo(cxt);
}

/* when the step's timer was armed (0: not armed), and for how long */
static TimestampTz step_armed_at = 0;
static int	step_armed_ms = 0;

/* the armed step's code went on after the cancel (rs_step_timeout_check) */
static bool step_cancel_caught = false;

/* a step is under way (armed, with or without a limit); SIGTERM cancelled it */
static volatile sig_atomic_t step_running = false;
static volatile sig_atomic_t step_shutdown_cancel = false;

/* a SIGTERM came before the final round: every step from now on is cancelled */
static volatile sig_atomic_t shutdown_requested = false;

/*
 * The timer's cancel is an error a table's code can catch and go on from
 * (PL/pgSQL: EXCEPTION WHEN query_canceled): a trigger that does so, and
 * sleeps again, held the worker, and every other table's delivery and
 * drain with it, for as long as it liked.  So the worker's steps have a
 * second stage: at twice the step's time (one second more at least), if
 * the code still running runs on behalf of a table owner that is not a
 * superuser (rs_as_owner_untrusted_role: whatever SECURITY DEFINER function
 * it is in now), the worker ends itself (ProcDiePending: a FATAL error,
 * which no code can catch), and worker.c keeps that owner's code from
 * running in the worker for a while (rs_step_overrun_role, as_owner.c's
 * quarantine).  tests/t/295_worker_cancel_caught, 297.
 */
static TimeoutId overrun_timeout = MAX_TIMEOUTS;
static volatile sig_atomic_t overrun_fired = false;
static volatile Oid overrun_role = InvalidOid;

static void
step_overrun_handler(void)
{
	Oid			role = rs_as_owner_untrusted_role();

	if (OidIsValid(role))
	{
		overrun_role = role;
		overrun_fired = true;
		ProcDiePending = true;
		InterruptPending = true;
	}
	SetLatch(MyLatch);
}

Oid
rs_step_overrun_role(int *ms)
{
	*ms = step_armed_ms;
	return overrun_fired ? overrun_role : InvalidOid;
}

void
rs_step_timeout_arm(int ms)
{
	step_shutdown_cancel = false;
	step_running = true;
	if (shutdown_requested)
	{
		step_shutdown_cancel = true;
		QueryCancelPending = true;
		InterruptPending = true;
	}
	if (ms <= 0)
		return;
	step_armed_at = GetCurrentTimestamp();
	step_armed_ms = ms;
	step_cancel_caught = false;
	enable_timeout_after(STATEMENT_TIMEOUT, ms);
	if (IsBackgroundWorker)
	{
		if (overrun_timeout == MAX_TIMEOUTS)
			overrun_timeout = RegisterTimeout(USER_TIMEOUT, step_overrun_handler);
		enable_timeout_after(overrun_timeout, (int) Min((int64) ms + Max(ms, 1000), (int64) PG_INT32_MAX));
	}
}

bool
rs_step_timeout_expired(void)
{
	return step_armed_at != 0 &&
		TimestampDifferenceExceeds(step_armed_at, GetCurrentTimestamp(), step_armed_ms);
}

void
rs_step_hold_owner(Oid owner, int64 held_ms)
{
	if (step_cancel_caught && OidIsValid(owner) && !superuser_arg(owner))
		rs_as_owner_quarantine(owner,
							   TimestampTzPlusMilliseconds(GetCurrentTimestamp(), held_ms / 2));
}

void
rs_step_timeout_check(void)
{
	if (rs_step_timeout_expired())
		step_cancel_caught = true;
	if (step_cancel_caught)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("canceling statement due to statement timeout")));
}

void
rs_step_timeout_disarm(void)
{
	if (step_armed_at != 0 && get_timeout_active(STATEMENT_TIMEOUT))
		disable_timeout(STATEMENT_TIMEOUT, false);
	if (overrun_timeout != MAX_TIMEOUTS && get_timeout_active(overrun_timeout))
		disable_timeout(overrun_timeout, false);
	step_armed_at = 0;
	step_running = false;

	/*
	 * A SIGTERM's cancel that came as the step ended is not left for the code
	 * after it: outside a step the worker has no handler for it (in its main
	 * loop, an ERROR ends it, without its final round).
	 */
	if (step_shutdown_cancel)
		QueryCancelPending = false;
}

void
rs_step_cancel_at_shutdown(void)
{
	shutdown_requested = true;
	if (!step_running)
		return;
	step_shutdown_cancel = true;
	QueryCancelPending = true;
	InterruptPending = true;
}

int64
rs_step_elapsed_ms(void)
{
	if (step_armed_at == 0)
		return 0;
	return (GetCurrentTimestamp() - step_armed_at) / 1000;
}

ErrorData *
rs_step_catch(MemoryContext cxt, const char *what, const char *setting, bool *timed_out)
{
	bool		expired = rs_step_timeout_expired();
	int			ms = step_armed_ms;
	ErrorData  *edata;

	rs_step_timeout_disarm();
	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	MemoryContextSwitchTo(cxt);
	*timed_out = expired && edata->sqlerrcode == ERRCODE_QUERY_CANCELED;
	if (*timed_out)
		edata->message = psprintf("%s took longer than %s (%d ms) and was cancelled",
								  what, setting, ms);
	else if (rs_step_stopped_at_shutdown(edata))
		edata->message = psprintf("%s was cancelled at shutdown", what);
	return edata;
}

void
rs_step_shutdown_final(void)
{
	shutdown_requested = false;
	step_shutdown_cancel = false;
}

bool
rs_step_stopped_at_shutdown(const ErrorData *edata)
{
	return step_shutdown_cancel && edata->sqlerrcode == ERRCODE_QUERY_CANCELED;
}
