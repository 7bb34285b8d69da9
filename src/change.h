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

#include "encode.h"

#define RS_CHANGE_ROW		'R' /* a row became after (or was deleted) */
#define RS_CHANGE_PURGE		'P' /* every key under prefix goes away */

typedef struct Change
{
	char		kind;			/* RS_CHANGE_* */
	Oid			root_relid;
	char		policy;
	bool		strict;
	bool		async;
	int64		ttl_ms;
	char	   *key;			/* RS_CHANGE_ROW: the Redis key */
	char	  **keyvals;		/* the key columns' text, naming the row for
								 * repairs */
	int			nkeys;
	RowImage	after;

	/*
	 * The row before this change, encoded at capture time with the descriptor
	 * and configuration it was read with (a later ALTER in the same
	 * transaction cannot change how it decodes): restored if the push
	 * outlives an aborted transaction.  NULL: there was no row (repair is a
	 * delete), or before_skipped.
	 */
	RowImage   *before;
	bool		before_skipped; /* not encoded (transaction too large) */
	char	   *prefix;			/* RS_CHANGE_PURGE */
} Change;

#endif							/* RS_CHANGE_H */
