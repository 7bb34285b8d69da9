/*-------------------------------------------------------------------------
 *
 * change.h
 *		One change to push to Redis (Change): a row's new state under its
 *		key, or a purge of every key under a prefix.  capture.c buffers
 *		them, publish.c pushes them, outbox_write.c writes them to the
 *		outbox; the type lives here so the outbox does not depend on the
 *		capture trigger's header.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_CHANGE_H
#define RS_CHANGE_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "storage/itemptr.h"

#include "config.h"
#include "encode.h"

#define RS_CHANGE_ROW		'R' /* a row became after (or was deleted) */
#define RS_CHANGE_PURGE		'P' /* every key under prefix goes away */

/*
 * One buffered change: a small fixed entry of the transaction's change log.
 * What the row became, the key columns and the row before are not kept as
 * C structures but encoded once, compactly, in the capture buffer's arena
 * (change.c has the layout and defines the accessors below): read them
 * through rs_change_after(), rs_change_before() and
 * rs_change_append_identity().  Everything a Change points to lives until
 * the end of the transaction.
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
								 * end by config.c); RS_CHANGE_PURGE: NULL
								 * (every key under the prefix goes), or the
								 * write-through configuration whose fields
								 * alone go (wb_shared: the hashes hold
								 * write-behind fields too) */
	char	   *key;			/* RS_CHANGE_ROW: the Redis key, followed in
								 * the arena by the encoded images;
								 * RS_CHANGE_PURGE: the prefix */

	/*
	 * RS_CHANGE_ROW: which row (its relation, the relation's file then, and
	 * the tuple: the new one, or the deleted one), and whether the row leaves
	 * the key (a DELETE, or an UPDATE of the key columns).  A row's later
	 * tuples are found from this one by its update chain (publish.c).
	 */
	Oid			row_relid;
	Oid			row_node;
	ItemPointerData row_tid;
	bool		deletes;

	/*
	 * The command that made the state the change carries: RS_CHANGE_ROW, the
	 * command that made its tuple (an INSERT's or UPDATE's new tuple), or
	 * that deleted it (a DELETE, or the row leaving its key);
	 * RS_CHANGE_PURGE, the command current when it was captured.  The log is
	 * not in this order: a nested statement run by an AFTER trigger fires its
	 * own events before the outer event's capture (rs_change_newer).
	 */
	CommandId	cid;
} Change;

/*
 * Is a newer than b?  Two changes of one transaction's log (the same array:
 * their addresses give the log order): the one made by the later command,
 * or logged later by the same command.  Coalescing (publish.c) and a spill
 * (capture.c) both keep a key's newest change by this order.
 */
extern bool rs_change_newer(const Change *a, const Change *b);

/* the same as a qsort comparator of Change pointers: oldest first */
extern int	rs_change_cmp_age(const void *a, const void *b);

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

/*
 * What a purge (RS_CHANGE_PURGE) makes of each key under its prefix: a
 * delete, or the delete of its configuration's fields (RS_OP_FIELDS).
 */
extern void rs_change_purge_image(const Change *c, RowImage *img);

/*
 * What removes a row's cached value from its key and nothing else: of a
 * write-through table's hash, the configuration's fields (RS_OP_FIELDS:
 * fields the application or the write-behind policy keeps in the same hash
 * stay); a JSON string, or an invalidate table's key (get() caches every
 * column), whole (RS_OP_DELETE).  The drops of keys Redis refused to write
 * for memory, and the large abort repair.
 */
extern void rs_image_drop_row(const SyncConfig *cfg, RowImage *img);

/* append the JSON array [relid, "key value", ...] naming the change's row */
extern void rs_change_append_identity(StringInfo buf, const Change *c);

/* for capture.c, which lays records out: an image's size and its writer */
extern Size rs_change_image_size(const RowImage *img);
extern char *rs_change_image_write(char *p, const RowImage *img);

#endif							/* RS_CHANGE_H */
