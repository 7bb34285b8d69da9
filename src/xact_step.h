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

/*
 * A step's time limit.  The worker runs no client statements, so no
 * statement_timeout applies: a step that runs a table's code (a policy
 * function, a lock its owner holds) arms the same timer itself, so that it
 * cannot hold the worker, and with it every other table, for longer than
 * ms (0 or less: no limit).  expired says whether the armed timer ran out
 * (a query-cancel error is then its doing); disarm stops it.  One step at a
 * time.
 */
extern void rs_step_timeout_arm(int ms);
extern bool rs_step_timeout_expired(void);
extern void rs_step_timeout_disarm(void);

/*
 * At the end of a step that did not fail, before its work commits: the
 * cancel's ERROR when it ran past its limit.  Code that caught the cancel
 * (PL/pgSQL EXCEPTION WHEN query_canceled) and returned before the second
 * stage had its step committed as a success, and run again at the next
 * round: never rolled back nor backed off (tests/t/299).
 */
extern void rs_step_timeout_check(void);

/*
 * After a failed step whose table is held back held_ms: if the step failed
 * in rs_step_timeout_check() (its code went on after the cancel, rather than
 * being cancelled: a lock wait, slow code), the worker holds every table of
 * owner (not a superuser) for half that (as_owner.c), so that the owner's
 * other tables have their turn before that one runs again (wb_schedule.c,
 * warm_queue.c; tests/t/299, 301).  In a transaction.
 */
extern void rs_step_hold_owner(Oid owner, int64 held_ms);

/*
 * From the worker's SIGTERM handler (signal-safe): cancel the step under
 * way, if any (between arm and disarm, with or without a limit), as a
 * statement is cancelled.  A fast shutdown waited for a slow batch up to
 * drain_timeout (a minute by default), past shutdown_drain_timeout; the
 * cancelled step is rolled back and retried by a later worker, as after any
 * cancel.  rs_step_catch() then says "cancelled at shutdown".
 */
extern void rs_step_cancel_at_shutdown(void);

/*
 * The SIGTERM is sticky: every step armed after it, until the final round
 * begins (rs_step_shutdown_final), is cancelled at once (a SIGTERM between
 * two steps, during a claim or a Redis round trip, left the next step its
 * whole drain_timeout).  rs_step_stopped_at_shutdown: the error of the step
 * that failed (rs_step_catch's, or a subtransaction's) is the cancel of a
 * SIGTERM; its failure is not the table's (no backoff nor hold: the final
 * round or the next worker takes the table up).
 */
extern void rs_step_shutdown_final(void);
extern bool rs_step_stopped_at_shutdown(const ErrorData *edata);

/* how long the armed step has run so far, in ms (0: none armed) */
extern int64 rs_step_elapsed_ms(void);

/*
 * In the worker, when a step's code went on past twice its time despite
 * the cancel, the worker ends itself (FATAL); at its exit, the role whose
 * code that was (InvalidOid: none) and the step's time (*ms).
 */
extern Oid	rs_step_overrun_role(int *ms);

/*
 * In the PG_CATCH of a step armed so: the error, copied into cxt (current
 * afterwards), the timer disarmed, the transaction aborted.  When the
 * step's own timer cancelled it, *timed_out, and the message says so:
 * "<what> took longer than <setting> (<ms> ms) and was cancelled".
 */
extern ErrorData *rs_step_catch(MemoryContext cxt, const char *what, const char *setting,
								bool *timed_out);

#endif							/* RS_XACT_STEP_H */
