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
#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "xact_step.h"

void
rs_xact_begin(const char *activity)
{
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (activity != NULL)
		pgstat_report_activity(STATE_RUNNING, activity);
}

void
rs_xact_commit(MemoryContext cxt)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (cxt != NULL)
		MemoryContextSwitchTo(cxt);
}
