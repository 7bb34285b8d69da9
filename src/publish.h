/*-------------------------------------------------------------------------
 *
 * publish.h
 *		Commit-time publication of a transaction's changes.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_PUBLISH_H
#define RS_PUBLISH_H

#include "postgres.h"

/* redis_sync.debug_crash_after_push; the commit callback (from _PG_init) */
extern bool rs_debug_crash_after_push;
extern void rs_publish_init(void);

/* count changes capture.c wrote straight to the outbox (session_stats) */
extern void rs_publish_count_queued(int n);

/* backend-local counters for redis_sync.session_stats() */
extern uint64 rs_stat_pushed;
extern uint64 rs_stat_chunks;
extern uint64 rs_stat_repaired;

#endif							/* RS_PUBLISH_H */
