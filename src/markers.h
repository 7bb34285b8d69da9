/*-------------------------------------------------------------------------
 *
 * markers.h
 *		A backend's in-flight markers: the fields it writes beside a push
 *		and removes once their transaction committed.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_MARKERS_H
#define RS_MARKERS_H

#include "postgres.h"

#include "nodes/pg_list.h"

/*
 * The marker field of chunk number chunk of the current transaction's push
 * ("<full xid>:<pid>:<chunk>:<shared memory incarnation>"), remembered as
 * written by this transaction.
 */
extern char *rs_marker_new_field(int chunk);

/* the marker fields the current transaction wrote (TopTransactionContext) */
extern List *rs_markers_of_transaction(void);

/*
 * Fields of committed transactions whose markers are still to be removed:
 * the next push carries them (fence.c's clears).  rs_markers_cleared() once
 * a push carrying them succeeded.
 */
extern List *rs_markers_to_clear(void);
extern void rs_markers_cleared(void);

/* end of transaction: committed (its markers are to be cleared) or not */
extern void rs_markers_end_transaction(bool committed);

#endif							/* RS_MARKERS_H */
