/*-------------------------------------------------------------------------
 *
 * subxact.c
 *		The "subtransaction, copy the error, roll back" pattern, once: run a
 *		piece of work so that its failure is reported to the caller (who
 *		decides whether to warn, skip or re-throw) without aborting the
 *		transaction.  Used by claim.c (rs_claim_all), rowsec.c (probe),
 *		wb_decode.c (member key checks), marker_sweep.c (repairs) and
 *		keys_sql.c (the parts of the refresh after a Redis restart).
 *
 * It also holds the two classifiers of caught errors, transient (re-throw,
 * the round retries later) or permanent (the caller gives up on the item).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "subxact.h"

ErrorData *
rs_subxact_try(RsSubxactFn fn, void *arg, bool keep)
{
	return rs_subxact_try_ext(fn, arg, keep, CurrentMemoryContext, NULL);
}

ErrorData *
rs_subxact_try_ext(RsSubxactFn fn, void *arg, bool keep,
				   MemoryContext errcxt, RsSubxactFn on_error)
{
	MemoryContext outer = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile error = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(outer);
	PG_TRY();
	{
		fn(arg);
		if (keep)
			ReleaseCurrentSubTransaction();
		else
			RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(outer);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		if (on_error)
			on_error(arg);
		MemoryContextSwitchTo(errcxt);
		error = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(outer);
		CurrentResourceOwner = owner;
	}
	PG_END_TRY();
	return error;
}

/*
 * The marker sweep (marker_sweep.c): a repair that fails with a permanent
 * error sets its marker aside, and a set-aside marker is not repaired again
 * without an operator (its keys may stay stale until then), while retrying
 * a transient one costs only a later round (and a marker is set aside
 * anyway after MAX_MARKER_ATTEMPTS).  So it errs on the side of retrying:
 * whole classes.  The repair talks to Redis, so every connection exception
 * (class 08, which the client uses for an unreachable or timed-out Redis)
 * is transient, as are transaction rollbacks (class 40: serialization
 * failure, deadlock), insufficient resources (class 53), operator
 * intervention (class 57: query cancel, shutdown) and a lock not available.
 */
bool
rs_error_transient_sweep(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_CONNECTION_EXCEPTION:	/* Redis unreachable, timed out */
		case ERRCODE_TRANSACTION_ROLLBACK:	/* serialization failure, deadlock */
		case ERRCODE_INSUFFICIENT_RESOURCES:
		case ERRCODE_OPERATOR_INTERVENTION: /* query cancel */
			return true;
		default:
			return sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;
	}
}

/*
 * The write-behind drain (wb_apply.c, wb_decode.c): a member that fails
 * with a permanent error goes to the dead letters and the rest of the batch
 * is applied; a transient error re-throws and the whole batch is retried.
 * Calling a member's error transient when it is not would hold the table's
 * drain back at every round (one bad row blocking every other), so the set
 * is a list of the conditions known to pass: conflicts with other
 * transactions (serialization failure, deadlock, lock not available), a
 * cancel (redis_sync.drain_timeout, shutdown: query canceled, admin
 * shutdown, cannot connect now), a lost connection, and exhausted resources
 * (out of memory, disk full, too many connections).  No Redis call runs
 * inside the drain's subtransactions, so Redis errors need no entry.
 */
bool
rs_error_transient_drain(int sqlerrcode)
{
	switch (sqlerrcode)
	{
		case ERRCODE_T_R_SERIALIZATION_FAILURE:
		case ERRCODE_T_R_DEADLOCK_DETECTED:
		case ERRCODE_LOCK_NOT_AVAILABLE:
		case ERRCODE_QUERY_CANCELED:
		case ERRCODE_ADMIN_SHUTDOWN:
		case ERRCODE_CANNOT_CONNECT_NOW:
		case ERRCODE_CONNECTION_FAILURE:
		case ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION:
		case ERRCODE_OUT_OF_MEMORY:
		case ERRCODE_DISK_FULL:
		case ERRCODE_TOO_MANY_CONNECTIONS:
			return true;
		default:
			return false;
	}
}

ErrorData *
rs_subxact_try_drain(RsSubxactFn fn, void *arg)
{
	ErrorData  *error = rs_subxact_try(fn, arg, true);

	if (error != NULL && rs_error_transient_drain(error->sqlerrcode))
		ReThrowError(error);
	return error;
}
