/*-------------------------------------------------------------------------
 *
 * config.h
 *		Per-relation sync configuration, cached per backend.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_CONFIG_H
#define RS_CONFIG_H

#include "postgres.h"

#include "access/attnum.h"
#include "access/tupdesc.h"
#include "fmgr.h"
#include "nodes/pg_list.h"

#define RS_POLICY_WRITE_THROUGH	'W'
#define RS_POLICY_INVALIDATE	'I'

#define RS_FORMAT_HASH	'h'
#define RS_FORMAT_JSON	'j'

typedef struct SyncColumn
{
	AttrNumber	attnum;			/* in the relation the trigger fired on */
	char	   *name;
	Oid			typid;
	FmgrInfo	out;			/* type output function */
} SyncColumn;

typedef struct SyncConfig
{
	Oid			relid;			/* relation (table or partition) */
	Oid			root_relid;		/* the table in redis_sync.tables */
	bool		synced;			/* false: cached "not synced" */
	char		policy;			/* RS_POLICY_* */
	char	   *prefix;
	int			nkeys;
	SyncColumn *keys;
	int			ncols;
	SyncColumn *cols;
	char		format;			/* RS_FORMAT_* */
	int64		ttl_ms;			/* 0: no expiry */
	bool		strict;
	bool		async;
	bool		wb_shared;		/* write-through hashes that hold the table's
								 * write-behind fields too (the same prefix) */
	TupleDesc	json_desc;		/* blessed descriptor of cols, for json */
	bool		valid;
} SyncConfig;

/* config of rel (table or partition); synced == false when not synced */
extern SyncConfig *rs_config_get(Oid relid);

/*
 * config of relid under root's settings, whatever relid's place now (a
 * partition just detached from root): built in the current memory context,
 * not cached
 */
extern SyncConfig *rs_config_build(Oid relid, Oid root);

/*
 * relid's partition ancestors, nearest first (NIL for a table that is no
 * partition).  Walked up one parent at a time, also past a partition pending
 * detach (a DETACH ... CONCURRENTLY cancelled in its second phase, until
 * FINALIZE), which is still its table's partition, its rows still cached:
 * get_partition_ancestors() stops there, and returns nothing for such a
 * partition itself (tests/t/349).
 */
extern List *rs_partition_ancestors(Oid relid);

/* free configurations invalidated during the transaction (at its end) */
extern void rs_config_release_retired(void);

#endif							/* RS_CONFIG_H */
