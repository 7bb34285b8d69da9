/*-------------------------------------------------------------------------
 *
 * drain.h
 *		Write-behind: draining Redis dirty sets into tables.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_DRAIN_H
#define RS_DRAIN_H

#include "postgres.h"

#include "datatype/timestamp.h"

/*
 * One drain round of every write-behind table that is due (all of them with
 * force), each batch in its own transaction; must run outside a transaction
 * (the worker).  deadline bounds the round (0: none).  Returns rows applied;
 * *next_due is set to when the next table is due, *failed to the number of
 * tables whose drain failed (they are retried later).
 */
extern int64 rs_drain_round(bool force, TimestampTz deadline, TimestampTz *next_due,
							int *failed);

/* after a Redis restart: seed every write-behind key from its table */
extern void rs_drain_reseed_all(void);

/*
 * redis_sync.drain_timeout (also read by wb_schedule.c), defined by
 * rs_drain_init() (from _PG_init)
 */
extern int	rs_drain_timeout_ms;
extern void rs_drain_init(void);

#endif							/* RS_DRAIN_H */
