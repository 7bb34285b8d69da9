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
#include "utils/guc.h"
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
