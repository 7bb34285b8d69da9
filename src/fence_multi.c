/*-------------------------------------------------------------------------
 *
 * fence_multi.c
 *		A bulk pre-commit push as MULTI ... EXEC: the apply script's writes
 *		without its per-key Lua (issue 18).
 *
 * Redis spends most of a bulk push through the apply script (fence.c) in
 * its per-key redis.call(): ~12 us of Redis CPU per row of a 100k-row
 * UPDATE, where the same HSETs and one MSET of version keys, sent as plain
 * commands, take ~3.4.  The script's version check is not needed for a
 * pre-commit push: the transaction holds the row locks of its keys, so its
 * version is the newest any of them will ever have committed; an older
 * write arriving later finds the version key this push sets and is
 * refused.  The one thing the check still did, refusing this very push when
 * it arrives late, is done by killfence.c: a connection whose push has an
 * unknown outcome is killed before anything else is sent to that Redis.
 *
 * One call is one chunk: MULTI, the marker (HSET) and the markers to clear
 * (HDEL), one UNLINK of the deleted keys, per op the script's other writes
 * (HSET and HDEL of a hash, SET of a string; PEXPIRE and SET ... PX of the
 * version with a TTL, SET ... PX of a tombstone), one MSET of the other
 * version keys, EXEC.
 * Its replies merge into the apply script's reply, {applied, (index,
 * error)*, 0}, so callers read both alike.  A command Redis refuses at
 * queueing (out of memory, say) aborts the whole chunk: EXECABORT, an error
 * reply for the call.  A key Redis refuses at EXEC (a string where a hash
 * is, WRONGTYPE) fails that key only, as in the script; its version key is
 * still set, which an equal-version retry from the outbox meets as the
 * script does (equal versions are applied).
 *
 * Used by publish.c for pre-commit pushes on a single Redis, when
 * redis_sync.bulk_multi is on and killfence.c has registered the
 * connection: bulk pushes (100k rows: 2.7 us of Redis CPU per row instead
 * of 12) and single rows alike (19-28 us of Redis CPU per transaction
 * instead of 36-43 for the apply-one script, under pgbench).  Despite the
 * GUC's name, size does not matter.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fence.h"

/* one queued command: which op it writes (-1: marker, versions) */
typedef struct MultiMap
{
	int			ncmds;			/* commands between MULTI and EXEC */
	int		   *op;				/* op of each */
	int			nops;
} MultiMap;

typedef struct MultiBuild
{
	RedisPipeline *p;
	MultiMap   *map;
	int			maxcmds;
	const char **argv;			/* scratch, maxargs */
	int			maxargs;
} MultiBuild;

static void
scratch(MultiBuild *b, int n)
{
	if (n > b->maxargs)
	{
		b->maxargs = Max(n, b->maxargs * 2);
		b->argv = b->argv ? repalloc(b->argv, sizeof(char *) * b->maxargs) :
			palloc(sizeof(char *) * b->maxargs);
	}
}

static void
queue(MultiBuild *b, int op, int argc)
{
	MultiMap   *m = b->map;

	redis_pipeline_append(b->p, argc, b->argv, NULL);
	if (m->ncmds == b->maxcmds)
	{
		b->maxcmds *= 2;
		m->op = repalloc(m->op, sizeof(int) * b->maxcmds);
	}
	m->op[m->ncmds++] = op;
}

/*
 * The apply script's writes of op i, but for a delete's UNLINK (the
 * caller's, one for the chunk).
 */
static void
queue_op(MultiBuild *b, FenceOp *o, int i, const char **mset, int *nm)
{
	RowImage   *img = o->img;
	const char *vkey = rs_version_key_str(o->key, strlen(o->key));
	char		ttl[24];

	/*
	 * A purge's field delete needs the script (whether the hash outlived it
	 * decides its version's lifetime): pushes with purges never come here
	 * (publish.c).
	 */
	Assert(img->op != RS_OP_FIELDS);
	if (img->op == RS_OP_HASH)
	{
		int			n = 2;

		scratch(b, 2 + 2 * img->nfields);
		b->argv[0] = "HSET";
		b->argv[1] = o->key;
		for (int f = 0; f < img->nfields; f++)
			if (img->values[f])
			{
				b->argv[n++] = img->fields[f];
				b->argv[n++] = img->values[f];
			}
		if (n > 2)
			queue(b, i, n);
		if (n < 2 + 2 * img->nfields)
		{
			n = 2;
			b->argv[0] = "HDEL";
			for (int f = 0; f < img->nfields; f++)
				if (!img->values[f])
					b->argv[n++] = img->fields[f];
			queue(b, i, n);
		}
	}
	else if (img->op == RS_OP_STRING)
	{
		scratch(b, 3);
		b->argv[0] = "SET";
		b->argv[1] = o->key;
		b->argv[2] = img->str;
		queue(b, i, 3);
	}
	/* else a delete: unlinked first */

	/* the version: a tombstone, with the key's TTL, or in the MSET */
	scratch(b, 5);
	if (img->op == RS_OP_DELETE && rs_tombstone_ttl_ms > 0)
		snprintf(ttl, sizeof(ttl), "%d", rs_tombstone_ttl_ms);
	else if (img->op != RS_OP_DELETE && o->ttl_ms != 0)
	{
		snprintf(ttl, sizeof(ttl), INT64_FORMAT, o->ttl_ms);
		b->argv[0] = "PEXPIRE";
		b->argv[1] = o->key;
		b->argv[2] = ttl;
		queue(b, -1, 3);
	}
	else
	{
		mset[(*nm)++] = vkey;
		mset[(*nm)++] = o->version;
		return;
	}
	b->argv[0] = "SET";
	b->argv[1] = vkey;
	b->argv[2] = o->version;
	b->argv[3] = "PX";
	b->argv[4] = ttl;
	queue(b, -1, 5);
}

/* EXEC's replies as the apply script's: {applied, (index, error)*, 0} */
static void
multi_merge(RedisValue *parts, int nparts, void *arg, RedisValue *out)
{
	MultiMap   *m = arg;
	RedisValue *exec = &parts[nparts - 1];
	int			nerr = 0;
	int			last = -1;

	memset(out, 0, sizeof(*out));
	if (exec->type != RV_ARRAY || exec->nelem != m->ncmds)
	{
		/* aborted: the first refusal says why (OOM, say), else EXEC's */
		for (int i = 0; i < nparts; i++)
			if (parts[i].type == RV_ERROR)
			{
				*out = parts[i];
				return;
			}
		out->type = RV_ERROR;
		out->str = psprintf("redis_sync: unexpected reply to EXEC of a bulk push (%d commands)", m->ncmds);
		out->len = strlen(out->str);
		return;
	}
	/* sized by the refusals (usually none): not 2 + 2 * nops zeroed values */
	for (int c = 0; c < m->ncmds; c++)
		if (exec->elems[c].type == RV_ERROR)
			nerr++;
	out->type = RV_ARRAY;
	out->elems = palloc0(sizeof(RedisValue) * (2 + 2 * Min(nerr, m->nops)));
	nerr = 0;
	for (int c = 0; c < m->ncmds; c++)
	{
		RedisValue *r = &exec->elems[c];

		if (r->type != RV_ERROR)
			continue;
		if (m->op[c] < 0)
		{
			/* a marker or version write refused: the call fails */
			*out = *r;
			return;
		}
		if (m->op[c] == last)
			continue;			/* HSET and HDEL of one key: once */
		last = m->op[c];
		out->elems[1 + 2 * nerr].type = RV_INTEGER;
		out->elems[1 + 2 * nerr].integer = m->op[c];
		out->elems[2 + 2 * nerr] = *r;
		nerr++;
	}
	out->elems[0].type = RV_INTEGER;
	out->elems[0].integer = m->nops - nerr;
	out->elems[1 + 2 * nerr].type = RV_INTEGER;
	out->elems[1 + 2 * nerr].integer = 0;
	out->nelem = 2 + 2 * nerr;
}

void
rs_fence_append_multi(RedisPipeline *p, FenceOp *ops, int nops,
					  const char *marker_field, const char *marker_value, List *clears)
{
	MultiBuild	b = {0};
	const char **mset = palloc(sizeof(char *) * (1 + 2 * Max(nops, 1)));
	int			nm = 1;
	int			nu = 1;
	int			begin = redis_pipeline_merge_begin(p);
	ListCell   *lc;
	int			nclear = list_length(clears);

	b.p = p;
	/* read by multi_merge() after the exec: in the pipeline's memory */
	b.map = MemoryContextAllocZero(redis_pipeline_memory(p), sizeof(MultiMap));
	b.maxcmds = 16 + 2 * nops;
	b.map->op = MemoryContextAlloc(redis_pipeline_memory(p), sizeof(int) * b.maxcmds);
	b.map->nops = nops;
	scratch(&b, 4);

	b.argv[0] = "MULTI";
	redis_pipeline_append(p, 1, b.argv, NULL);
	if (marker_field)
	{
		b.argv[0] = "HSET";
		b.argv[1] = rs_marker_key();
		b.argv[2] = marker_field;
		b.argv[3] = marker_value;
		queue(&b, -1, 4);
	}
	if (nclear > 0)
	{
		int			n = 2;

		scratch(&b, 2 + nclear);
		b.argv[0] = "HDEL";
		b.argv[1] = rs_marker_key();
		foreach(lc, clears)
			b.argv[n++] = lfirst(lc);
		queue(&b, -1, n);
	}

	/*
	 * The chunk's deletes in one UNLINK, first: a command per key cost Redis
	 * about as much in its parsing and its QUEUED reply as the unlink itself.
	 * A push names each key once (publish.c coalesces them) and a data key is
	 * never a version key (encode.c; a prefix cannot begin with '{'), so
	 * where the chunk unlinks them changes nothing; first, as each delete's
	 * UNLINK came before its tombstone (and before the MSET), in case a table
	 * configured by 0.1 breaks that rule (helper-110).  It refuses no key
	 * (any type goes), so a refusal fails the call.
	 */
	scratch(&b, 1 + nops);
	b.argv[0] = "UNLINK";
	for (int i = 0; i < nops; i++)
		if (ops[i].img->op == RS_OP_DELETE)
			b.argv[nu++] = ops[i].key;
	if (nu > 1)
		queue(&b, -1, nu);

	mset[0] = "MSET";
	for (int i = 0; i < nops; i++)
		queue_op(&b, &ops[i], i, mset, &nm);
	if (nm > 1)
	{
		scratch(&b, nm);
		memcpy(b.argv, mset, sizeof(char *) * nm);
		queue(&b, -1, nm);
	}
	b.argv[0] = "EXEC";
	redis_pipeline_append(p, 1, b.argv, NULL);
	redis_pipeline_merge_end(p, begin, multi_merge, b.map);
}
