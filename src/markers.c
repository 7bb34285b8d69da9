/*-------------------------------------------------------------------------
 *
 * markers.c
 *		A backend's side of the in-flight markers (publish.c's pushes).
 *
 * Each push records, in the same fenced script call (fence.c), a marker
 * field naming the transaction and its rows in the database's marker hash.
 * Once the transaction committed its markers are useless: their fields are
 * kept here (up to MAX_PENDING_CLEARS; the worker sweeps the rest) and the
 * backend's next push removes them.  An aborted transaction's markers are
 * removed by the repair that restores its keys (publish.c), or left for the
 * worker, which repairs the rows of markers whose transaction did not
 * commit (worker.c sweeps, warm.c repairs; fence.c owns the marker hash
 * names and the Lua that writes and clears fields).  On a Redis Cluster,
 * fence_cluster.c notes the slots each field went to; the note of a field
 * no push of this backend will clear goes when its transaction ends.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "fence.h"
#include "markers.h"
#include "shmem.h"

/* committed transactions' fields kept for the next push, at most */
#define MAX_PENDING_CLEARS 1000

static List *txn_markers = NIL; /* fields this transaction wrote */
static List *markers_to_clear = NIL;	/* in TopMemoryContext */

char *
rs_marker_new_field(int chunk)
{
	FullTransactionId fxid = GetTopFullTransactionIdIfAny();
	char	   *field;
	char	   *p;
	int64		inc = rs_incarnation();
	MemoryContext oldcxt;

	/*
	 * xid:pid:chunk:incarnation.  The incarnation of shared memory tells the
	 * worker whether the xid could have been handed out again by crash
	 * recovery (see worker.c).  Written without psprintf: this runs per push.
	 */
	field = MemoryContextAlloc(TopTransactionContext, 4 * (MAXINT8LEN + 1));
	p = field;
	p += pg_ulltoa_n(U64FromFullTransactionId(fxid), p);
	*p++ = ':';
	p += pg_ltoa(MyProcPid, p);
	*p++ = ':';
	p += pg_ltoa(chunk, p);
	*p++ = ':';
	p += pg_lltoa(inc, p);
	*p = '\0';
	oldcxt = MemoryContextSwitchTo(TopTransactionContext);
	txn_markers = lappend(txn_markers, field);
	MemoryContextSwitchTo(oldcxt);
	return field;
}

List *
rs_markers_of_transaction(void)
{
	return txn_markers;
}

List *
rs_markers_to_clear(void)
{
	return markers_to_clear;
}

void
rs_markers_cleared(void)
{
	list_free_deep(markers_to_clear);
	markers_to_clear = NIL;
}

void
rs_markers_end_transaction(bool committed)
{
	ListCell   *lc;

	foreach(lc, txn_markers)
	{
		/*
		 * A marker no push of this backend will clear: fence_cluster.c's note
		 * of its slots would stay for the life of the backend, up to its cap,
		 * and then the markers of later commits would go unremembered and be
		 * left to the worker's sweep (helper-112).
		 */
		if (!committed || list_length(markers_to_clear) >= MAX_PENDING_CLEARS)
			rs_fence_forget_marker(lfirst(lc));
		else
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			markers_to_clear = lappend(markers_to_clear, pstrdup(lfirst(lc)));
			MemoryContextSwitchTo(old);
		}
	}
	txn_markers = NIL;			/* its memory goes with the transaction */
}
