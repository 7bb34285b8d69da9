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

extern void rs_publish_init(void);

/* count changes capture.c wrote straight to the outbox (session_stats) */
extern void rs_publish_count_queued(int n);

/* backend-local counters for redis_sync.session_stats() */
extern uint64 rs_stat_pushed;
extern uint64 rs_stat_chunks;
extern uint64 rs_stat_repaired;

#endif							/* RS_PUBLISH_H */
