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
#include "nodes/pg_list.h"

/*
 * One drain round of every write-behind table that is due (all of them with
 * force), each batch in its own transaction; must run outside a transaction
 * (the worker).  deadline bounds the round (0: none; then drain_timeout
 * bounds each table's drain in it).  Returns rows applied; *next_due is set to when
 * the next table is due, *failed to the number of tables whose drain failed
 * (they are retried later), *cut_short to whether a table's drain stopped at
 * drain_timeout with members perhaps left (the next round goes on).
 */
extern int64 rs_drain_round(bool force, TimestampTz deadline, TimestampTz *next_due,
							int *failed, bool *cut_short);

/*
 * worker.c: a SIGTERM arrived and the final round has not begun.  The round
 * under way stops before its next batch or table; the final round
 * (shutdown_drain_timeout) follows.
 */
extern bool rs_worker_stopping(void);

/*
 * Whether a drain may claim another batch or start another table: before
 * deadline (0: none), and not stopping
 */
extern bool rs_drain_go_on(TimestampTz deadline);

/*
 * The limit of one drain batch: drain_timeout, and in the final round at
 * shutdown no later than its deadline (a batch under way there ran up to
 * drain_timeout past shutdown_drain_timeout)
 */
extern int	rs_drain_step_ms(void);

/*
 * After a Redis restart: the write-behind tables, and the seed of one
 * table's keys from its rows (each in a transaction of its own)
 */
extern List *rs_drain_reseed_relids(void);
extern void rs_drain_reseed_one(Oid relid);

/*
 * redis_sync.drain_timeout (also read by wb_schedule.c), defined by
 * rs_drain_init() (from _PG_init)
 */
extern int	rs_drain_timeout_ms;
extern void rs_drain_init(void);

#endif							/* RS_DRAIN_H */
