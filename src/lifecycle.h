/*-------------------------------------------------------------------------
 *
 * lifecycle.h
 *		A synced table's partitions leaving it (lifecycle.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_LIFECYCLE_H
#define RS_LIFECYCLE_H

#include "postgres.h"

#include "nodes/parsenodes.h"

/*
 * At the start of DROP TABLE and DROP SCHEMA: the keys of the rows of a
 * synced table's partitions the command drops go at commit
 */
extern void rs_lifecycle_drop_partitions(DropStmt *stmt);

#endif							/* RS_LIFECYCLE_H */
