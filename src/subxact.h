/*-------------------------------------------------------------------------
 *
 * subxact.h
 *		Run a function in an internal subtransaction and catch its error.
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

#endif							/* RS_SUBXACT_H */
