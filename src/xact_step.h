/*-------------------------------------------------------------------------
 *
 * xact_step.h
 *		"Run this in a transaction with a snapshot": the one sequence the
 *		background worker and the write-behind drain use for each step of a
 *		round that reads or writes the database.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_XACT_STEP_H
#define RS_XACT_STEP_H

#include "postgres.h"

#include "utils/palloc.h"

/*
 * Start a transaction and push a fresh snapshot as the active one.
 * activity, if not NULL, is what pg_stat_activity shows for the step.
 * Outside a transaction only (the worker between steps).
 */
extern void rs_xact_begin(const char *activity);

/*
 * rs_xact_begin() for a step whose commit may be lost in a crash without
 * loss (it is only repeated): the commit does not wait for a WAL flush.
 */
extern void rs_xact_begin_relaxed(const char *activity);

/*
 * Pop the snapshot rs_xact_begin() pushed and commit; then allocate in cxt
 * (commit leaves CurrentMemoryContext pointing at TopMemoryContext).
 */
extern void rs_xact_commit(MemoryContext cxt);

#endif							/* RS_XACT_STEP_H */
