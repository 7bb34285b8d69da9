/*-------------------------------------------------------------------------
 *
 * outbox.h
 *		The durable outbox: writing entries and delivering them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_OUTBOX_H
#define RS_OUTBOX_H

#include "postgres.h"

#include "capture.h"
#include "redis_client.h"

/* insert changes as outbox rows of the current (sub)transaction */
extern void rs_outbox_write(Change **changes, int n, const char *version, int64 seq);
extern void rs_outbox_write_changes(Change *change, int n, const char *version, int64 seq);

/* false once the extension was dropped (in this transaction, too) */
extern bool rs_outbox_exists(void);


/*
 * Deliver up to max committed entries (of relid, or all when InvalidOid; with
 * due_only, skipping entries still backing off) in one pipelined round trip
 * (plus SCANs for purges).  Returns the number of entries removed; on a Redis failure
 * returns -1 and fills *failure, leaving the entries in place.
 */
extern int64 rs_outbox_deliver(int max, Oid relid, bool due_only, RedisFailure *failure,
							   int *nrefused);

#endif							/* RS_OUTBOX_H */
