/*-------------------------------------------------------------------------
 *
 * fence_cluster.c
 *		Version-fenced writes on a Redis Cluster: one apply call per hash
 *		slot, or on Redis 7 per node, merged into one logical reply.
 *
 * The apply script itself and the arguments of one call are fence.c's; this
 * file sorts the ops of a push into calls, keeps the per-slot in-flight
 * markers and eviction watches, and maps refused keys back to the caller's
 * order.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "cluster.h"
#include "fence.h"

/* ----------------------------------------------------------------
 * Redis Cluster: one apply call per hash slot
 *
 * A script may only touch keys of one slot, so on a cluster the ops of one
 * call are grouped by slot (a key and its version key share one through
 * their hash tag) and each group is its own apply call, with the marker
 * hash and the eviction watch of that slot ("<key>:{<tag>}", the tag
 * hashing to the slot).  The calls give one logical reply, as one call
 * would (the pipeline merges them), with the positions of refused keys
 * mapped back to the caller's order.  A transaction's marker is written
 * per slot group, each listing the rows of its group; the fields a marker
 * was written under are remembered here (by field) so that clears can find
 * their slots.
 * ---------------------------------------------------------------- */

typedef struct FenceMergeArg
{
	int			ngroups;		/* apply calls; further parts are HDELs of
								 * clears */
	int		  **orig;			/* per group: op position -> caller's position */
} FenceMergeArg;

typedef struct MarkerSlots
{
	char		field[NAMEDATALEN * 2];
	int			nslots;
	int		   *slots;			/* TopMemoryContext */
} MarkerSlots;

static HTAB *marker_slots = NULL;

#define MAX_REMEMBERED_MARKERS 10000

char *
rs_marker_key_for_slot(int slot)
{
	return rs_slot_key(rs_marker_key(), slot);
}

char *
rs_slot_key(const char *base, int slot)
{
	return psprintf("%s:{%s}", base, rs_cluster_slot_tag(slot));
}

static char *
evicted_key_for_slot(int slot)
{
	return rs_slot_key(rs_evicted_key(), slot);
}

static void
fence_merge(RedisValue *parts, int nparts, void *arg, RedisValue *out)
{
	FenceMergeArg *a = arg;
	int64		applied = 0,
				evicted = 0;
	int			nfail = 0;
	int			maxfail = 0;

	for (int g = 0; g < a->ngroups; g++)
	{
		if (parts[g].type == RV_ERROR || parts[g].type != RV_ARRAY || parts[g].nelem < 2)
		{
			*out = parts[g];
			return;
		}
		maxfail += parts[g].nelem / 2;
	}
	memset(out, 0, sizeof(*out));
	out->type = RV_ARRAY;
	out->elems = palloc0(sizeof(RedisValue) * (2 + 2 * maxfail));
	for (int g = 0; g < a->ngroups; g++)
	{
		RedisValue *r = &parts[g];

		applied += r->elems[0].integer;
		if (r->nelem % 2 == 0)
			evicted += r->elems[r->nelem - 1].integer;
		for (int i = 1; i + 1 < r->nelem; i += 2)
		{
			RedisValue *iv = &out->elems[1 + 2 * nfail];

			iv->type = RV_INTEGER;
			iv->integer = a->orig[g][r->elems[i].integer];
			out->elems[2 + 2 * nfail] = r->elems[i + 1];
			nfail++;
		}
	}
	out->elems[0].type = RV_INTEGER;
	out->elems[0].integer = applied;
	out->elems[1 + 2 * nfail].type = RV_INTEGER;
	out->elems[1 + 2 * nfail].integer = evicted;
	out->nelem = 2 + 2 * nfail;
}

static void
fence_merge_empty(RedisValue *parts, int nparts, void *arg, RedisValue *out)
{
	for (int i = 0; i < nparts; i++)
		if (parts[i].type == RV_ERROR && strncmp(parts[i].str, "NOSCRIPT", 8) != 0)
		{
			*out = parts[i];
			return;
		}
	memset(out, 0, sizeof(*out));
	out->type = RV_ARRAY;
	out->nelem = 2;
	out->elems = palloc0(sizeof(RedisValue) * 2);
	out->elems[0].type = RV_INTEGER;
	out->elems[1].type = RV_INTEGER;
}

/* the top-level elements of a JSON array, as [start, end) offsets */
static int
marker_elements(const char *s, int **starts, int **ends)
{
	int			n = 0,
				max = 16;
	int			depth = 0;
	bool		instr = false;
	int			start = -1;

	*starts = palloc(sizeof(int) * max);
	*ends = palloc(sizeof(int) * max);
	for (int i = 0; s[i]; i++)
	{
		char		c = s[i];

		if (instr)
		{
			if (c == '\\' && s[i + 1])
				i++;
			else if (c == '"')
				instr = false;
			continue;
		}
		if (c == '"')
			instr = true;
		if (depth == 1 && start < 0 && c != ',' && c != ' ' && c != ']')
			start = i;
		if (c == '[' || c == '{')
			depth++;
		else if (c == ']' || c == '}')
			depth--;
		if (depth == 1 && start >= 0 && (s[i + 1] == ',' || s[i + 1] == ']'))
		{
			if (n == max)
			{
				max *= 2;
				*starts = repalloc(*starts, sizeof(int) * max);
				*ends = repalloc(*ends, sizeof(int) * max);
			}
			(*starts)[n] = start;
			(*ends)[n] = i + 1;
			n++;
			start = -1;
		}
	}
	return n;
}

static void
remember_marker(const char *field, int *slots, int nslots)
{
	MarkerSlots *ms;
	bool		found;
	char		k[NAMEDATALEN * 2];

	if (marker_slots == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(k);
		ctl.entrysize = sizeof(MarkerSlots);
		marker_slots = hash_create("redis_sync marker slots", 256, &ctl, HASH_ELEM | HASH_STRINGS);
	}
	if (hash_get_num_entries(marker_slots) >= MAX_REMEMBERED_MARKERS)
		return;					/* the worker's sweep removes those markers */
	memset(k, 0, sizeof(k));
	strlcpy(k, field, sizeof(k));
	ms = hash_search(marker_slots, k, HASH_ENTER, &found);
	if (!found)
	{
		ms->nslots = 0;
		ms->slots = NULL;
	}
	ms->slots = ms->slots ?
		repalloc(ms->slots, sizeof(int) * (ms->nslots + nslots)) :
		MemoryContextAlloc(TopMemoryContext, sizeof(int) * nslots);
	memcpy(ms->slots + ms->nslots, slots, sizeof(int) * nslots);
	ms->nslots += nslots;
}

/* the note of a marker field, or NULL */
static MarkerSlots *
marker_note(const char *field)
{
	char		k[NAMEDATALEN * 2];

	if (marker_slots == NULL)
		return NULL;
	memset(k, 0, sizeof(k));
	strlcpy(k, field, sizeof(k));
	return hash_search(marker_slots, k, HASH_FIND, NULL);
}

static void
drop_note(MarkerSlots *ms)
{
	/* NULL if remember_marker's allocation failed after the entry was made */
	if (ms->slots != NULL)
		pfree(ms->slots);
	hash_search(marker_slots, ms->field, HASH_REMOVE, NULL);
}

void
rs_fence_forget_marker(const char *field)
{
	MarkerSlots *ms = marker_note(field);

	if (ms != NULL)
		drop_note(ms);
}

/* a per-node call to run again split by slot when the cluster redirects it */
typedef struct FenceFallback
{
	FenceOp    *ops;
	int			nops;
	const char *marker_field;
	const char *marker_value;	/* the group's rows, or NULL */
	bool		lead;			/* see fence_append_grouped */
} FenceFallback;

static void fence_append_grouped(RedisPipeline *p, FenceOp *ops, int nops,
								 const char *marker_field, const char *marker_value,
								 List *clears, bool by_node, bool lead);

static RedisValue *
fence_fallback(void *arg, MemoryContext cxt, RedisFailure *f)
{
	FenceFallback *fb = arg;
	MemoryContext old = MemoryContextSwitchTo(cxt);
	RedisPipeline *p = redis_pipeline_create();
	RedisValue *v = NULL;

	fence_append_grouped(p, fb->ops, fb->nops, fb->marker_field, fb->marker_value, NIL, false,
						 fb->lead);
	if (redis_pipeline_try_exec(p, f))
		v = redis_pipeline_reply(p, 0);
	/* p stays: the reply lives in it, under cxt */
	MemoryContextSwitchTo(old);
	return v;
}

void
rs_fence_append_cluster(RedisPipeline *p, FenceOp *ops, int nops,
						const char *marker_field, const char *marker_value, List *clears)
{
	fence_append_grouped(p, ops, nops, marker_field, marker_value, clears,
						 redis_cluster_cross_slot_scripts(), false);
}

/*
 * Per slot, never per node: the per-node script declares its flags
 * (allow-cross-slot-keys), and Redis 7 refuses a script with flags that may
 * write at its start when over maxmemory, whatever its first write; only a
 * script without flags is refused at its first write.  (A refused per-node
 * call would be run again per slot by its fallback, after a round trip and
 * the loss of the slot map.)
 */
void
rs_fence_append_restore_cluster(RedisPipeline *p, FenceOp *ops, int nops)
{
	fence_append_grouped(p, ops, nops, NULL, NULL, NIL, false, true);
}

/* the ops of one push sorted into apply calls, by hash slot or by node */
typedef struct FenceGroups
{
	bool		by_node;		/* groups are nodes (else slots) */
	int		   *slot;			/* per op: its hash slot */
	int		   *group;			/* per op: its group (slot or node) */
	int		   *order;			/* op positions sorted by group, stable */
	int		   *count;			/* per group: its ops */
	int			ngroupkeys;		/* size of count */
	int			ngroups;		/* groups with ops: the apply calls */
} FenceGroups;

/* the in-flight marker's rows: one JSON array element per op */
typedef struct MarkerRows
{
	const char *value;			/* the whole array, or NULL (no marker) */
	int		   *start;			/* per op: its element, [start, end) */
	int		   *end;
} MarkerRows;

/*
 * Each op's slot and group.  By node only if every slot has an owner in the
 * map; a slot without one makes the whole push go by slot.
 */
static void
fence_group_keys(FenceGroups *fg, FenceOp *ops, int nops, bool by_node)
{
	fg->slot = palloc(sizeof(int) * Max(nops, 1));
	fg->group = palloc(sizeof(int) * Max(nops, 1));
	fg->ngroupkeys = RS_CLUSTER_SLOTS;
	for (int i = 0; i < nops; i++)
	{
		fg->slot[i] = redis_key_slot(ops[i].key, strlen(ops[i].key));
		fg->group[i] = fg->slot[i];
	}
	if (by_node)
	{
		fg->ngroupkeys = 0;
		for (int i = 0; i < nops && by_node; i++)
		{
			fg->group[i] = redis_cluster_node_of_slot(fg->slot[i]);
			if (fg->group[i] < 0)
				by_node = false;	/* a slot without owner: by slot */
			fg->ngroupkeys = Max(fg->ngroupkeys, fg->group[i] + 1);
		}
		if (!by_node)
		{
			fg->ngroupkeys = RS_CLUSTER_SLOTS;
			for (int i = 0; i < nops; i++)
				fg->group[i] = fg->slot[i];
		}
	}
	fg->by_node = by_node;
}

/* counting sort by group, stable: a group keeps the caller's order */
static void
fence_sort_groups(FenceGroups *fg, int nops)
{
	int		   *pos = palloc(sizeof(int) * Max(fg->ngroupkeys, 1));
	int			acc = 0;

	fg->count = palloc0(sizeof(int) * Max(fg->ngroupkeys, 1));
	fg->order = palloc(sizeof(int) * Max(nops, 1));
	fg->ngroups = 0;
	for (int i = 0; i < nops; i++)
		fg->count[fg->group[i]]++;
	for (int g = 0; g < fg->ngroupkeys; g++)
	{
		pos[g] = acc;
		acc += fg->count[g];
		if (fg->count[g] > 0)
			fg->ngroups++;
	}
	for (int i = 0; i < nops; i++)
		fg->order[pos[fg->group[i]]++] = i;
	pfree(pos);
}

/*
 * Queue the apply call of the group starting at sorted position *i (and
 * advance *i past it): its ops, the marker listing their rows, and on Redis 7
 * per node the fallback that runs it again split by slot.  Returns the slot
 * holding the group's marker and eviction watch: per node, the node's lowest
 * slot (the worker finds it without a SCAN); per slot, the slot.
 */
static int
fence_append_group(RedisPipeline *p, FenceGroups *fg, int *i,
				   FenceOp *ops, int nops, const char *marker_field,
				   MarkerRows *mr, int **orig, bool lead)
{
	int			gk = fg->group[fg->order[*i]];
	int			first_slot = fg->by_node ? rs_cluster_first_slot(gk) : fg->slot[fg->order[*i]];
	int			n = 0;
	FenceOp    *gops = palloc(sizeof(FenceOp) * fg->count[gk]);
	StringInfoData mv;

	initStringInfo(&mv);
	appendStringInfoChar(&mv, '[');
	*orig = palloc(sizeof(int) * fg->count[gk]);
	while (*i < nops && fg->group[fg->order[*i]] == gk)
	{
		int			o = fg->order[*i];

		gops[n] = ops[o];
		(*orig)[n] = o;
		if (mr->value)
		{
			if (n > 0)
				appendStringInfoChar(&mv, ',');
			appendBinaryStringInfo(&mv, mr->value + mr->start[o], mr->end[o] - mr->start[o]);
		}
		n++;
		(*i)++;
	}
	appendStringInfoChar(&mv, ']');
	rs_fence_append_call(p, fg->by_node, gops, n, rs_marker_key_for_slot(first_slot),
						 evicted_key_for_slot(first_slot),
						 marker_field, mr->value ? mv.data : NULL,
						 lead ? list_make1(pstrdup(RS_FENCE_NO_FIELD)) : NIL);
	if (fg->by_node)
	{
		FenceFallback *fb = palloc(sizeof(FenceFallback));

		fb->ops = gops;
		fb->nops = n;
		fb->lead = lead;
		fb->marker_field = marker_field ? pstrdup(marker_field) : NULL;
		fb->marker_value = mr->value ? mv.data : NULL;
		redis_pipeline_set_fallback(p, fence_fallback, fb);
	}
	return first_slot;
}

/*
 * Clears: HDEL from the marker hash of every slot the field was written
 * to, if that slot's node is in this push anyway (or the push has no
 * keys); a marker on another node is left to the worker's sweep, which
 * removes the markers of committed transactions -- a commit then
 * reaches no more nodes than its own keys are on.
 */
static void
fence_append_clears(RedisPipeline *p, List *clears, int nops,
					const bool *node_used, int nnodes)
{
	ListCell   *lc;

	foreach(lc, clears)
	{
		const char *field = lfirst(lc);
		MarkerSlots *ms = marker_note(field);

		if (ms == NULL)
			continue;
		for (int j = 0; j < ms->nslots; j++)
		{
			int			owner = redis_cluster_node_of_slot(ms->slots[j]);
			const char *argv[3] = {"HDEL", rs_marker_key_for_slot(ms->slots[j]), field};

			if (nops > 0 && !(owner >= 0 && owner < nnodes && node_used[owner]))
				continue;
			redis_pipeline_append(p, 3, argv, NULL);
		}
		drop_note(ms);
	}
}

/*
 * Group the ops by hash slot, or (Redis 7: scripts flagged
 * allow-cross-slot-keys) by the node owning their slots, one apply call per
 * group; the marker and the eviction watch of a group live in the slot of
 * its first key.  A per-node call that fails whole is run again split by
 * slot (fence_fallback; redis_cluster.c runs it on any error reply but
 * NOSCRIPT): the cluster redirected it (its slots moved meanwhile), or Redis
 * refused it for memory before it started (a script with flags, as the
 * per-node one has, is refused at its start when Redis is over maxmemory),
 * where the per-slot calls, without flags, report the keys Redis refused
 * one by one (warm_push.c drops those).  lead: each call starts with an
 * HDEL that needs no memory (rs_fence_append_restore).
 */
static void
fence_append_grouped(RedisPipeline *p, FenceOp *ops, int nops,
					 const char *marker_field, const char *marker_value, List *clears,
					 bool by_node, bool lead)
{
	FenceGroups fg;
	MarkerRows	mr = {marker_value, NULL, NULL};
	FenceMergeArg *ma = palloc0(sizeof(FenceMergeArg));
	int		   *gslots;
	bool	   *node_used;
	int			nnodes;
	int			begin = redis_pipeline_merge_begin(p);

	if (marker_value && marker_elements(marker_value, &mr.start, &mr.end) != nops)
		elog(ERROR, "redis_sync: in-flight marker does not list one row per key");

	fence_group_keys(&fg, ops, nops, by_node);
	fence_sort_groups(&fg, nops);

	ma->ngroups = fg.ngroups;
	ma->orig = palloc(sizeof(int *) * Max(ma->ngroups, 1));
	gslots = palloc(sizeof(int) * Max(ma->ngroups, 1));
	(void) redis_cluster_node_of_slot(0);	/* the map, loaded: nodes known */
	nnodes = rs_cluster_nnodes;
	node_used = palloc0(sizeof(bool) * Max(nnodes, 1));
	for (int i = 0, g = 0; i < nops; g++)
	{
		int			owner;

		gslots[g] = fence_append_group(p, &fg, &i, ops, nops, marker_field, &mr, &ma->orig[g],
									   lead);
		owner = redis_cluster_node_of_slot(gslots[g]);
		if (owner >= 0 && owner < nnodes)
			node_used[owner] = true;
	}
	if (marker_field && ma->ngroups > 0)
		remember_marker(marker_field, gslots, ma->ngroups);

	fence_append_clears(p, clears, nops, node_used, nnodes);
	if (ma->ngroups == 0)
	{
		/* nothing to apply: one reply all the same, {0, 0} */
		const char *argv[1] = {"PING"};

		if (redis_pipeline_merge_begin(p) == begin)
			redis_pipeline_append(p, 1, argv, NULL);
		redis_pipeline_merge_end(p, begin, fence_merge_empty, NULL);
		return;
	}
	redis_pipeline_merge_end(p, begin, fence_merge, ma);
}
