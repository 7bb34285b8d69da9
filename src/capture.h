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

#include "encode.h"

#define RS_CHANGE_ROW		'R' /* a row became after (or was deleted) */
#define RS_CHANGE_PURGE		'P' /* every key under prefix goes away */

/*
 * One buffered change: a small fixed entry of the transaction's change log.
 * What the row became, the key columns and the row before are not kept as
 * C structures but encoded once, compactly, in the buffer's arena (capture.c
 * has the layout): read them through rs_change_after(), rs_change_before()
 * and rs_change_append_identity().  Everything a Change points to lives
 * until the end of the transaction.
 */
typedef struct Change
{
	char		kind;			/* RS_CHANGE_* */
	char		policy;
	bool		strict;
	bool		async;
	Oid			root_relid;
	int64		ttl_ms;
	SyncConfig *cfg;			/* RS_CHANGE_ROW: the configuration the images
								 * were encoded with (kept until transaction
								 * end by config.c) */
	char	   *key;			/* RS_CHANGE_ROW: the Redis key, followed in
								 * the arena by the encoded images;
								 * RS_CHANGE_PURGE: the prefix */
} Change;

/*
 * What the row became, as a RowImage whose strings point into the buffer
 * (its arrays are allocated in CurrentMemoryContext).
 */
extern void rs_change_after(const Change *c, RowImage *img);

/*
 * The row before the change, encoded at capture time with the descriptor and
 * configuration it was read with (a later ALTER in the same transaction
 * cannot change how it decodes): restored if the push outlives an aborted
 * transaction.  A delete image when there was no row (or the change keeps no
 * before image: not a synchronous write-through change); false when it was
 * not kept because the transaction was too large (RS_EXACT_REPAIR_CHANGES).
 */
extern bool rs_change_before(const Change *c, RowImage *img);

/* append the JSON array [relid, "key value", ...] naming the change's row */
extern void rs_change_append_identity(StringInfo buf, const Change *c);

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

/* queue removal of every key under prefix at commit */
extern void rs_capture_purge(Oid relid, const char *prefix, bool strict, bool async);

extern void rs_capture_init(void);

/* before images are encoded for this many changes of a transaction, at most */
#define RS_EXACT_REPAIR_CHANGES 2000

/* rows captured by this backend (session_stats) */
extern uint64 rs_capture_count(void);

#endif							/* RS_CAPTURE_H */
