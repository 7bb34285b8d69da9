/*-------------------------------------------------------------------------
 *
 * wb_internal.h
 *		Write-behind internals shared by the drain's files: a table's
 *		configuration (WbTable), a claimed member (Member), and the functions
 *		the drain round, the scheduler, re-seeding and the SQL API call in
 *		each other.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_WB_INTERNAL_H
#define RS_WB_INTERNAL_H

#include "postgres.h"

#include "fmgr.h"
#include "nodes/pg_list.h"
#include "lib/stringinfo.h"
#include "utils/elog.h"

#include "as_owner.h"
#include "redis_client.h"

#include "redis_sync.h"
#include "shmem.h"

/*
 * A table's format (redis_sync.tables.format): the values of WbTable.format,
 * and the format argument the write-behind Lua scripts take.
 */
#define WB_FORMAT_HASH		'h' /* 'hash': a hash, one field per column */
#define WB_FORMAT_JSON		'j' /* 'json': a JSON object of the columns */
#define WB_FORMAT_STRING	's' /* 'string': one column, the value as is */
#define WB_ARG_HASH			"h"
#define WB_ARG_JSON			"j"
#define WB_ARG_STRING		"s"

/* what the drain learnt of a table's sizes (drain.c) */
typedef struct WbSizes
{
	size_t		read_largest;	/* the largest value reply of its last batch
								 * (the read pages; 0: none yet) */
	int			read_cap;		/* the most members a read page holds after
								 * one failed (0: no cap) */
	size_t		member_largest; /* the longest member of the last full claim
								 * (0: none yet) */
	int			claim_cap;		/* the most members a claim asks for after one
								 * failed (0: no cap) */
} WbSizes;

typedef struct WbTable
{
	Oid			relid;
	char	   *qname;			/* quoted schema.table */
	Oid			owner;
	char	   *prefix;
	char	   *dirty;
	char	   *processing;
	char		format;			/* WB_FORMAT_* */
	int			nkeys;
	char	  **keys;
	char	  **keytypes;		/* format_type, for casts */
	int			ncols;
	char	  **cols;
	char	  **coltypes;
	bool	   *counter;
	int			ncounters;
	int64		interval_ms;
	int			batch;
	bool		delete_missing;
	char	  **allcols;		/* every column of the table */
	int			nallcols;
	char	  **keybase;		/* key types, schema.typname: no typmod, so
								 * casts never truncate or pad (format_type's
								 * "character" and "bit" would mean length 1) */
	char	  **colbase;		/* column types, the same way */
	bool	   *writable;		/* false: generated or GENERATED ALWAYS
								 * identity */
	bool		keyinfo_set;	/* the two below are known (wb_key_info) */
	bool		keys_exact;		/* equal keys always have equal text */
	bool		key_any_ok;		/* first key: "= ANY (text[]::type[])" */
	bool		key_int;		/* one key, an integer: members sort in C */
	Oid		   *keybin;			/* nkeys: the key column's type when its
								 * values are passed as that type (a by-value
								 * built-in type without typmod, converted in
								 * C), else InvalidOid: text */
	Oid		   *colbin;			/* ncols: the same for the columns (hash and
								 * string formats) */
	char		scan_cursor[24];	/* the dirty set's SSCAN cursor (drain.c) */
	WbSizes		sizes;			/* what the drain learnt of its sizes: kept
								 * across a reload of the cache (wb_config.c) */
	int			claim_asked;	/* the members the last claim asked for */
	uint64		checked_gen;	/* wb_config_check_current: the invalidation
								 * count it was last known current at */
} WbTable;

typedef struct Member
{
	char	   *member;
	char	   *key;			/* prefix || member: wb_member_key() */
	int			state;			/* 1 present, 0 missing, -1 Redis error */
	bool		seeded;
	char	  **keyvals;		/* nkeys */
	Datum	   *keyd;			/* nkeys: the key values of the keybin
								 * columns, from wb_check_member_keys */
	char	  **vals;			/* ncols, NULL = SQL NULL (when present) */
	bool	   *present;		/* ncols: the value names the column */
	char	   *json;			/* json format: object of the present columns */
	RedisValue *value;			/* the claimed value, for dead letters */
	char	   *problem;		/* set: goes to dead letters */
	char	   *problem_state;
	bool		increment;		/* counters applied as increments */
	int64	   *read;			/* counter values read from Redis */
	bool		applied;
	bool		reapplied;		/* its batch committed, not acknowledged: not
								 * counted again (wb_unacked_*) */
	bool		deleted;		/* on_missing = delete: its row deleted (or
								 * absent) */
	bool		returned;		/* increment: the row after the write, below */
	char	  **after;			/* ncols, text */
	int64	   *totals;			/* ncounters */
} Member;

#define SEED_SUFFIX ":rs_seeded"

/* wb_config.c */
extern List *wb_load_tables(Oid relid);

/* every write-behind table, cached across rounds (the worker); in a transaction */
extern List *wb_tables_cached(void);
extern void wb_config_check_current(WbTable *t);

/* wb_decode.c */
extern bool wb_parse_int64(const char *s, int64 *out);
extern bool wb_split_member(WbTable *t, Member *m);
extern void wb_check_member_keys(WbTable *t, Member *ms, int *idx, int *n);
extern void wb_key_info(WbTable *t);
extern int64 wb_member_int_key(WbTable *t, Member *m);
extern Datum wb_bin_datum(Oid typid, FmgrInfo *in, Oid ioparam, const char *s);
extern void wb_json_append_pair(StringInfo buf, bool *first, const char *k, const char *v);
extern void wb_decode_value(WbTable *t, Member *m, RedisValue *v, int64 *unknown);
extern char *wb_raw_json(WbTable *t, RedisValue *v);

/* wb_apply.c */
extern int	wb_execute_by_index(const char *sql, int nargs, Oid *types, Datum *args,
								bool read_only);
extern void wb_apply_group(WbTable *t, Member *ms, int *idx, int n, bool increment);
extern void wb_record_dead_letters(WbTable *t, Member *ms, int nm);

/* the reads of a batch's values, page by page (drain.c) */
typedef struct WbReads
{
	RedisValue *members;		/* the claim's reply */
	int			nm;
	int			queued;			/* members whose reads are queued */
	int			done;			/* ... and read */
	RedisPipeline *page;		/* the page queued last, until collected */
	int			first;			/* its first read */
	RedisValue **vals;			/* nm: each member's value */
	RedisValue **seeds;			/* nm, tables with counters: EXISTS of its
								 * seed key */
	size_t		largest;		/* the largest value reply so far */
	size_t		last_largest;	/* ... of the page read last */
	struct Batch *batch;		/* the batch they are read for */
} WbReads;

/* one batch: the claimed members, sorted by what the apply step does with them */
typedef struct Batch
{
	WbTable    *t;
	RedisPipeline *claim;		/* the claimed members live in its memory */
	MemoryContext reads;		/* their values live in it */
	int			nm;
	Member	   *ms;
	int		   *abs_idx;		/* absolute values */
	int		   *inc_idx;		/* counters of unseeded keys: increments */
	int		   *del_idx;		/* keys Redis no longer has (on_missing
								 * delete) */
	int			nabs;
	int			ninc;
	int			ndel;
	int64		unknown;		/* hash fields that name no column */
	int64		applied;		/* rows written */
	uint64		read_generation;	/* the connection its values were read on
									 * (redis_connection_generation) */
	char		read_run_id[48];	/* and its Redis's run_id ("": unknown) */
	RedisNodeConnMark *read_nodes;	/* on a cluster: every node's connection
									 * then (redis_cluster_conn_marks) */
	int			read_nnodes;
	/* the overlapped drain (wb_drain_overlapped) */
	MemoryContext cxt;			/* everything of the batch */
	RedisValue *members;		/* the claim's reply, copied */
	WbReads    *rd;				/* the reads of their values */
	TimestampTz started;		/* claimed at */
} Batch;

/* wb_counters.c: the correction of a batch's unseeded counters */
extern void wb_batch_read_on(Batch *b);
extern void wb_batch_read_more(Batch *b);
extern bool wb_batch_read_changed(Batch *b);
extern void wb_correct_counters(Batch *b);

/* drain.c: one batch's steps, and the sequential drain of one batch */
extern void wb_append_claim(RedisPipeline *p, WbTable *t, bool recover);
extern RedisValue *wb_claim_reply_members(WbTable *t, RedisPipeline *p, int i, bool recover);

extern WbReads *wb_reads_begin(WbTable *t, RedisValue *members, struct Batch *b);
extern void wb_reads_queue(RedisPipeline *p, WbTable *t, WbReads *r, bool overlapped);
extern void wb_reads_collect(WbTable *t, WbReads *r);
extern void wb_reads_finish(WbTable *t, WbReads *r);
extern void wb_reads_failed(WbTable *t, WbReads *r);
extern void wb_claim_failed(WbTable *t, const RedisFailure *f);
extern void wb_claim_exec(RedisPipeline *p, WbTable *t);
extern RedisValue *wb_reads_result(WbTable *t, WbReads *r);
extern void wb_sort_member(Batch *b, RedisValue *r, int i);
extern const char *wb_member_key(WbTable *t, Member *m);
extern void wb_apply_batch(Batch *b, TimestampTz started);

/*
 * The members of t's batches that committed and are not acknowledged yet
 * (drain.c): a recovery that applies them again does not count them again
 */
extern void wb_unacked_set(WbTable *t, const RedisValue *m, bool committed);
extern bool wb_unacked_has(WbTable *t, const RedisValue *m);
extern int	wb_drain_batch(WbTable *t, bool recover, int64 *applied);

/* wb_overlap.c */
extern void wb_drain_overlapped(WbTable *t, TimestampTz deadline, int64 *total);

#endif							/* RS_WB_INTERNAL_H */
