/*-------------------------------------------------------------------------
 *
 * capture.h
 *		The per-transaction change buffer filled by the capture trigger.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_CAPTURE_H
#define RS_CAPTURE_H

#include "postgres.h"

#include "access/htup.h"
#include "utils/rel.h"

#include "change.h"
#include "encode.h"

/* the changes of the current transaction, in capture order (*n of them) */
extern Change *rs_capture_changes(int *n);

/* true once the buffer overflowed and captures go straight to the outbox */
extern bool rs_capture_overflowed(void);

/*
 * Called by the write-behind drain while it writes into a table: changes of
 * that table (root) whose configuration has the drained keys' prefix are
 * not captured, so the drain's own rows are not echoed back over the keys
 * they came from.  Everything else (other tables changed by triggers or
 * cascades, policies of the table under another prefix) is pushed.
 * InvalidOid ends the suppression; prefix must outlive it.
 */
extern void rs_capture_suppress(Oid relid, const char *prefix);

/*
 * Pre-commit of an overflowed transaction: write what is still buffered to
 * the outbox (needs an active snapshot) and empty the buffer.
 */
extern void rs_capture_spill_rest(void);

/* version of the buffered changes of an overflowed transaction */
extern const char *rs_capture_overflow_version(void);

/* forget the buffer (end of transaction) */
extern void rs_capture_reset(void);

/*
 * A row of rel that leaves cfg's table without a DELETE (its partition is
 * detached or dropped): its key goes at commit, as a DELETE's would
 */
extern void rs_capture_row_gone(SyncConfig *cfg, Relation rel, HeapTuple tup);

/* queue removal of every key under prefix at commit */
extern void rs_capture_purge(Oid relid, const char *prefix, bool strict, bool async);

/*
 * The purge of a TRUNCATE of cfg's table: every key under its prefix, or
 * only its fields of them when the hashes hold write-behind fields too
 */
extern void rs_capture_truncate(SyncConfig *cfg);
extern const char *rs_capture_purge_buffered(const char *prefix);

/* redis_sync.max_buffer_bytes, in kB */
extern int	rs_max_buffer_kb;

/* its setting and the savepoint callback (from _PG_init) */
extern void rs_capture_init(void);

/* before images are encoded for this many changes of a transaction, at most */
#define RS_EXACT_REPAIR_CHANGES 2000

/* rows captured by this backend (session_stats) */
extern uint64 rs_capture_count(void);

#endif							/* RS_CAPTURE_H */
