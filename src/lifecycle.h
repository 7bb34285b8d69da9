/*-------------------------------------------------------------------------
 *
 * lifecycle.h
 *		DROP commands that touch a synced table's keys, and partitions
 *		attached or detached, at their start (lifecycle.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_LIFECYCLE_H
#define RS_LIFECYCLE_H

#include "postgres.h"

#include "nodes/parsenodes.h"

/*
 * At the start of DROP TABLE and DROP SCHEMA: the keys of the rows of a
 * synced table's partitions the command drops go at commit; of DROP INDEX
 * CONCURRENTLY: the index behind a synced table's key may not go
 */
extern void rs_lifecycle_drop_start(DropStmt *stmt);

/* at the start of DROP OWNED: the same for the partitions it drops */
extern void rs_lifecycle_drop_owned_start(DropOwnedStmt *stmt);

/*
 * At the start of ALTER TABLE ... ATTACH / DETACH PARTITION: the table's
 * partitions, for redis_sync._ddl_partition_moves() at its end
 */
extern void rs_lifecycle_alter_start(AlterTableStmt *stmt);

#endif							/* RS_LIFECYCLE_H */
