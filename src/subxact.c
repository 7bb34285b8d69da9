/*-------------------------------------------------------------------------
 *
 * subxact.c
 *		The "subtransaction, copy the error, roll back" pattern, once: run a
 *		piece of work so that its failure is reported to the caller (who
 *		decides whether to warn, skip or re-throw) without aborting the
 *		transaction.  Used by claim.c (rs_claim_all) and rowsec.c (probe).
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
		MemoryContextSwitchTo(outer);
		error = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(outer);
		CurrentResourceOwner = owner;
	}
	PG_END_TRY();
	return error;
}
