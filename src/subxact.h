/*-------------------------------------------------------------------------
 *
 * subxact.h
 *		Run a function in an internal subtransaction and catch its error;
 *		which caught errors are transient.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_SUBXACT_H
#define RS_SUBXACT_H

#include "postgres.h"

/*
 * Run fn(arg) in an internal subtransaction.  On success the subtransaction
 * is committed (keep) or rolled back (!keep) and NULL is returned; on an
 * ERROR it is rolled back and the error, copied into the caller's memory
 * context, is returned instead of thrown.  The caller's memory context and
 * resource owner are restored either way.
 */
typedef void (*RsSubxactFn) (void *arg);

extern ErrorData *rs_subxact_try(RsSubxactFn fn, void *arg, bool keep);

/*
 * The same, with the error copied into errcxt rather than the caller's
 * memory context, and on_error(arg) called first when fn fails, before the
 * error is copied and the subtransaction rolled back (e.g. to disarm a timer
 * whose cancel must not reach the rollback or what follows it).
 */
extern ErrorData *rs_subxact_try_ext(RsSubxactFn fn, void *arg, bool keep,
									 MemoryContext errcxt, RsSubxactFn on_error);

/*
 * Is an error caught by rs_subxact_try() worth retrying later, rather than
 * giving up on what failed?  Two sets, for two costs of giving up
 * (subxact.c says why each is what it is):
 *	- the worker's marker sweep (marker_sweep.c): whole SQLSTATE classes;
 *	- the write-behind drain (wb_apply.c, wb_decode.c): a list of codes.
 */
extern bool rs_error_transient_sweep(int sqlerrcode);
extern bool rs_error_transient_drain(int sqlerrcode);

/*
 * The write-behind drain's way to run a write (wb_apply.c, drain.c):
 * rs_subxact_try(fn, arg, keep), a transient error (rs_error_transient_drain)
 * re-thrown so that the whole batch is retried later; NULL on success, else
 * the error of a permanent failure, the subtransaction rolled back.
 */
extern ErrorData *rs_subxact_try_drain(RsSubxactFn fn, void *arg);

#endif							/* RS_SUBXACT_H */
