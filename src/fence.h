/*-------------------------------------------------------------------------
 *
 * fence.h
 *		Version-fenced writes to Redis: the apply script and its arguments.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_FENCE_H
#define RS_FENCE_H

#include "postgres.h"

#include "nodes/pg_list.h"

#include "encode.h"
#include "redis_client.h"

typedef struct FenceOp
{
	const char *key;
	const char *version;		/* RS_VERSION_LEN hex digits */
	int64		ttl_ms;
	RowImage   *img;
} FenceOp;

/*
 * Queue one EVALSHA applying ops atomically, each only if its version is not
 * older than the one stored beside the key.  marker_field/value (may be
 * NULL) record the keys of an in-flight transaction; clears are marker
 * fields of finished transactions to remove.
 */
extern void rs_fence_append(RedisPipeline *p, FenceOp *ops, int nops,
							const char *marker_field, const char *marker_value,
							List *clears);

/*
 * The same for ops that restore keys (an abort's repair), without a marker
 * or clears, so that Redis over its maxmemory still applies them.  Redis
 * refuses a script for memory only at its first write, when that write may
 * need memory, and then at each next one: a restore's first write, an
 * HSET, was refused key by key.  Each call starts with the HDEL of
 * RS_FENCE_NO_FIELD from its marker hash instead, which needs no memory and
 * changes nothing; Redis then runs the rest.
 */
extern void rs_fence_append_restore(RedisPipeline *p, FenceOp *ops, int nops);

/* a field no in-flight marker has */
#define RS_FENCE_NO_FIELD ""

/*
 * The parts rs_fence_append() is made of, for fence_cluster.c: one apply
 * call (xslot: the Redis 7 variant whose keys span the slots of one node)
 * with its marker hash and eviction watch; a push split per slot or node.
 */
extern void rs_fence_append_call(RedisPipeline *p, bool xslot, FenceOp *ops, int nops,
								 const char *marker_key, const char *evicted_key,
								 const char *marker_field, const char *marker_value,
								 List *clears);
extern void rs_fence_append_cluster(RedisPipeline *p, FenceOp *ops, int nops,
									const char *marker_field, const char *marker_value,
									List *clears);
extern void rs_fence_append_restore_cluster(RedisPipeline *p, FenceOp *ops, int nops);

/*
 * The same writes as one MULTI ... EXEC, without the version check: only
 * for a pre-commit push on a single Redis whose connection killfence.c
 * registered (fence_multi.c).  Its merged reply reads as the script's.
 */
extern void rs_fence_append_multi(RedisPipeline *p, FenceOp *ops, int nops,
								  const char *marker_field, const char *marker_value,
								  List *clears);

/*
 * Keys of one apply call that Redis refused: returns their count (or -1 for
 * a malformed reply) with their positions in the call and Redis's errors.
 */
extern int	rs_fence_failures(RedisValue *reply, int **indexes, char ***errors);

/* every reply of a pipeline of apply calls applied; else false, *f filled */
extern bool rs_fence_replies_ok(RedisPipeline *p, RedisFailure *f);

/*
 * The same, or ERROR naming table relid (resync, refresh, repairs); with
 * oom_only, keys refused for another reason than memory are a WARNING.
 */
extern void rs_fence_check_applied(RedisPipeline *p, Oid relid, bool oom_only,
								   bool oom_dropped);

/*
 * The positions of the keys Redis refused to write for lack of memory in p,
 * a pipeline of apply calls of per_call ops each (the last may have fewer),
 * nops in all: their count, and their positions in the ops appended, in
 * *pos.
 */
extern int	rs_fence_refused_for_memory(RedisPipeline *p, int per_call, int nops, int **pos);

/* the counter of keys dropped because their version key was missing */
extern const char *rs_evicted_key(void);

/* the hash holding in-flight markers of this database */
extern const char *rs_marker_key(void);

/* the same under another system identifier (decimal): pg_upgrade's old one */
extern char *rs_marker_key_of(const char *sysid);

/* on a cluster: the marker hash of one hash slot */
extern char *rs_marker_key_for_slot(int slot);

/*
 * on a cluster: forget the slots a marker field was written to, when no
 * push of this backend will clear it (its transaction did not commit, or
 * more committed ones wait than markers.c keeps): the worker sweeps it
 */
extern void rs_fence_forget_marker(const char *field);

/* on a cluster: the key of base in one hash slot, "<base>:{<slot's tag>}" */
extern char *rs_slot_key(const char *base, int slot);

/* every data key under prefix, page by page (SCAN): fn gets each SCAN page's keys (valid during the call) */
typedef void (*RsScanPageFn) (char **keys, int n, void *arg);
extern void rs_scan_prefix_pages(const char *prefix, RsScanPageFn fn, void *arg);

/*
 * Where a scan is: the master (its index in the cluster's map; 0 on a single
 * Redis) whose keys the next page reads, and its cursor there ("0": its
 * first page).  master -1: the scan has not begun; nmasters: it is done.
 * sig_hash tells the map it was taken on (a cursor means nothing on
 * another node).
 */
typedef struct RsScanPos
{
	int			master;
	char		cursor[32];
	uint32		sig_hash;
} RsScanPos;

/*
 * the same for n prefixes in one pass: fn gets every key under their common
 * beginning.  pos (NULL: none) is where to begin (a scan that failed there
 * is taken up again at that point, on the same map), and is set before
 * each call of fn to the position after the page fn gets.
 */
extern void rs_scan_prefixes_pages(char **prefixes, int n, RsScanPos *pos,
								   RsScanPageFn fn, void *arg);

/*
 * The same, returning false with *failure filled when Redis fails a SCAN or
 * fn returns false (having filled *failure)
 */
typedef bool (*RsScanPageTryFn) (char **keys, int n, void *arg, RedisFailure *failure);
extern bool rs_scan_prefix_pages_try(const char *prefix, RsScanPageTryFn fn, void *arg,
									 RedisFailure *failure);

/*
 * redis_sync.chunk_size (keys applied by one script call; also read by the
 * pushes of publish.c, outbox.c, warm.c, warm_push.c and keys_sql.c) and
 * redis_sync.tombstone_ttl, defined by rs_fence_init() (from _PG_init)
 */
extern int	rs_chunk_size;
extern int	rs_tombstone_ttl_ms;
extern void rs_fence_init(void);

#endif							/* RS_FENCE_H */
