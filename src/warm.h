/*-------------------------------------------------------------------------
 *
 * warm.h
 *		Pushing the current committed state of rows: warm, resync, repair.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_WARM_H
#define RS_WARM_H

#include "postgres.h"

#include "nodes/pg_list.h"

/*
 * Push the current state of every row of a synced table (keys == NIL), or of
 * the rows named by keys (a List of Lists of key-value strings; a missing row
 * becomes a fenced delete).  Works in batches of batch_size rows, each read
 * FOR SHARE in a subtransaction that is rolled back after the push, so row
 * locks are held only for one batch.  Returns the number of keys pushed.
 */
extern int64 rs_push_current(Oid relid, List *keys, int batch_size);

/* repair the rows named by an in-flight marker value (JSON) */
extern int64 rs_repair_marker(const char *json);

#endif							/* RS_WARM_H */
