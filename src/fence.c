/*-------------------------------------------------------------------------
 *
 * fence.c
 *		Version-fenced writes: the Lua script every push goes through.
 *
 * Beside each data key K, Redis holds a version key ("{K}" plus
 * redis_sync.version_key_suffix, in K's cluster slot) with the version of
 * the last write applied to K.  The apply script writes K only when the
 * incoming version is not older than the stored one, and then stores the
 * new version; a delete leaves the version key behind as a tombstone (for
 * redis_sync.tombstone_ttl), so a late write of an older row cannot bring a
 * deleted row back.  Equal versions are applied: they can only be replays
 * of the same transaction's final state.
 *
 * Versions come from the WAL insert position at pre-commit (encode.c).  Two
 * transactions that write the same key conflict on the row or on the unique
 * index of the key columns, so the second reaches pre-commit only after the
 * first committed, and its version is larger.  Hence, whatever order pushes,
 * retries and outbox deliveries reach Redis in, the newest committed state
 * of a key wins.
 *
 * Eviction (maxmemory with an allkeys-* policy) can remove a version key
 * and keep its data key.  Such a key may hold a value newer than the write
 * at hand, so the script drops it (a miss is never stale) and fences it at
 * the pusher's current WAL position (the "floor", newer than any write
 * still in flight from before).  A data key evicted together with its
 * version is indistinguishable from a key never written; the script watches
 * Redis's evicted_keys counter (INFO stats) in a hash beside the in-flight
 * markers, and when it moved, records the floor there: from then on a write
 * older than the floor does not create a key missing with its version.
 * Both are counted in that hash (fields dropped, skipped).
 *
 * Lua's unpack() is limited to a few thousand values, so MGET and MSET go
 * in slices of 1000.  Each key is applied with redis.pcall: a key Redis refuses (say, a string where
 * a hash is expected) is reported in the reply, {applied, index, error,
 * index, error, ...}, and does not stop the other keys of the call.
 *
 * The script also records an "in-flight" marker (which keys a transaction
 * pushed before its commit record) and removes markers of transactions
 * known to be finished; see publish.c.
 *
 * On a Redis Cluster a push becomes one call per slot or node:
 * fence_cluster.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "miscadmin.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"

#include "cluster.h"
#include "fence.h"
#include "redis_sync.h"

#define APPLY_BODY \
"if redis.replicate_commands then redis.replicate_commands() end\n" \
"local tomb = tonumber(ARGV[1])\n" \
"if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], ARGV[2], ARGV[3]) end\n" \
"local floor = ARGV[5]\n" \
"-- eviction watch: KEYS[2] holds the evicted_keys count last seen and the\n" \
"-- pusher's WAL position when it last changed (efloor).  A key missing with\n" \
"-- its version may have been evicted with it: a write from before efloor\n" \
"-- could be older than the evicted value, so it does not create the key.\n" \
"-- Read only when a call meets such a key (INFO is not free).\n" \
"local efloor = nil\n" \
"local function eviction_floor()\n" \
"  if efloor == nil then\n" \
"    -- INFO renamed or forbidden by an ACL: no watch (keys evicted with\n" \
"    -- their version are then treated as never written)\n" \
"    local ok, info = pcall(redis.call, 'INFO', 'stats')\n" \
"    local ev = ok and type(info) == 'string' and string.match(info, 'evicted_keys:(%d+)') or nil\n" \
"    local seen = redis.call('HGET', KEYS[2], 'seen')\n" \
"    efloor = redis.call('HGET', KEYS[2], 'floor')\n" \
"    if ev and seen ~= ev then\n" \
"      if seen or ev ~= '0' then efloor = floor; redis.call('HSET', KEYS[2], 'floor', floor) end\n" \
"      redis.call('HSET', KEYS[2], 'seen', ev)\n" \
"    end\n" \
"  end\n" \
"  return efloor\n" \
"end\n" \
"local p = 6\n" \
"for i = 1, tonumber(ARGV[4]) do redis.call('HDEL', KEYS[1], ARGV[p]); p = p + 1 end\n" \
"local result = {0}\n" \
"if #KEYS < 4 then result[2] = 0; return result end\n" \
"local vkeys = {}\n" \
"for k = 4, #KEYS, 2 do vkeys[#vkeys + 1] = KEYS[k] end\n" \
"local curs = {}\n" \
"if xslot then\n" \
"  -- keys of several slots: no multi-key command may span them\n" \
"  for i = 1, #vkeys do curs[i] = redis.call('GET', vkeys[i]) end\n" \
"else\n" \
"for s = 1, #vkeys, 1000 do\n" \
"  local part = redis.call('MGET', unpack(vkeys, s, math.min(s + 999, #vkeys)))\n" \
"  for i = 1, #part do curs[s + i - 1] = part[i] end\n" \
"end\n" \
"end\n" \
"local mset = {}\n" \
"local applied = 0\n" \
"local evicted = 0\n" \
"local skipped = 0\n" \
"local idx = 0\n" \
"for k = 3, #KEYS, 2 do\n" \
"  local op, v, ttl = ARGV[p], ARGV[p + 1], tonumber(ARGV[p + 2])\n" \
"  p = p + 3\n" \
"  local n, nd, start = 0, 0, p\n" \
"  if op == 'H' then\n" \
"    n = tonumber(ARGV[p]); start = p + 1\n" \
"    nd = tonumber(ARGV[p + 1 + 2 * n])\n" \
"    p = p + 2 + 2 * n + nd\n" \
"  elseif op == 'S' then\n" \
"    p = p + 1\n" \
"  end\n" \
"  local cur = curs[idx + 1]\n" \
"  local key = KEYS[k]\n" \
"  if not cur and redis.call('EXISTS', key) == 1 then\n" \
"    -- the version was evicted (or lost) but the key was kept: it may hold\n" \
"    -- a newer value than this write.  Missing is never stale: drop the\n" \
"    -- key, and fence it at the pusher's current WAL position, which no\n" \
"    -- write still in flight from before can pass.\n" \
"    redis.call('UNLINK', key)\n" \
"    if tomb > 0 then redis.call('SET', KEYS[k + 1], floor, 'PX', tomb)\n" \
"    else mset[#mset + 1] = KEYS[k + 1]; mset[#mset + 1] = floor end\n" \
"    evicted = evicted + 1\n" \
"  elseif not cur and eviction_floor() and v <= efloor then\n" \
"    skipped = skipped + 1\n" \
"  elseif not cur or cur <= v then\n" \
"    local r\n" \
"    if op == 'H' then\n" \
"      if n > 0 then r = redis.pcall('HSET', key, unpack(ARGV, start, start + 2 * n - 1)) end\n" \
"      if nd > 0 and not (type(r) == 'table' and r.err) then\n" \
"        r = redis.pcall('HDEL', key, unpack(ARGV, start + 2 * n + 1, start + 2 * n + nd))\n" \
"      end\n" \
"    elseif op == 'S' then\n" \
"      r = redis.pcall('SET', key, ARGV[start])\n" \
"    else\n" \
"      r = redis.pcall('UNLINK', key)\n" \
"    end\n" \
"    if type(r) == 'table' and r.err then\n" \
"      result[#result + 1] = idx\n" \
"      result[#result + 1] = r.err\n" \
"    else\n" \
"      applied = applied + 1\n" \
"      if op == 'D' then\n" \
"        if tomb > 0 then redis.call('SET', KEYS[k + 1], v, 'PX', tomb)\n" \
"        else mset[#mset + 1] = KEYS[k + 1]; mset[#mset + 1] = v end\n" \
"      elseif ttl > 0 then\n" \
"        redis.call('PEXPIRE', key, ttl)\n" \
"        redis.call('SET', KEYS[k + 1], v, 'PX', ttl)\n" \
"      else\n" \
"        mset[#mset + 1] = KEYS[k + 1]; mset[#mset + 1] = v\n" \
"      end\n" \
"    end\n" \
"  end\n" \
"  idx = idx + 1\n" \
"end\n" \
"if xslot then\n" \
"  for s = 1, #mset, 2 do redis.call('SET', mset[s], mset[s + 1]) end\n" \
"else\n" \
"for s = 1, #mset, 1000 do redis.call('MSET', unpack(mset, s, math.min(s + 999, #mset))) end\n" \
"end\n" \
"if evicted > 0 then redis.call('HINCRBY', KEYS[2], 'dropped', evicted) end\n" \
"if skipped > 0 then redis.call('HINCRBY', KEYS[2], 'skipped', skipped) end\n" \
"result[1] = applied\n" \
"result[#result + 1] = evicted\n" \
"return result\n"

static RedisScript apply_script = REDIS_SCRIPT("redis_sync_apply",
"local xslot = false\n" APPLY_BODY);

/*
 * Redis 7 cluster: one call per node touches the keys of several slots of
 * that node.  Declared keys must still share a slot (CROSSSLOT otherwise):
 * only the marker and the eviction watch are declared, the data and version
 * keys come first in ARGV (their count first) and are made KEYS[3..] again.
 */
static RedisScript apply_xslot_script = REDIS_SCRIPT("redis_sync_apply_xslot",
"#!lua flags=allow-cross-slot-keys\n"
"local nk = tonumber(ARGV[1])\n"
"local K, A = {KEYS[1], KEYS[2]}, {}\n"
"for i = 2, nk + 1 do K[#K + 1] = ARGV[i] end\n"
"for i = nk + 2, #ARGV do A[#A + 1] = ARGV[i] end\n"
"local KEYS, ARGV = K, A\n"
"local xslot = true\n"
APPLY_BODY);

const char *
rs_evicted_key(void)
{
	static char buf[96];

	if (buf[0] == '\0')
		snprintf(buf, sizeof(buf), "redis_sync:evicted:" UINT64_FORMAT ":%u",
				 GetSystemIdentifier(), MyDatabaseId);
	return buf;
}

const char *
rs_marker_key(void)
{
	static char buf[96];

	if (buf[0] == '\0')
		snprintf(buf, sizeof(buf), "redis_sync:inflight:" UINT64_FORMAT ":%u",
				 GetSystemIdentifier(), MyDatabaseId);
	return buf;
}

typedef struct ArgBuf
{
	int			n;
	int			max;
	const char **argv;
	size_t	   *len;
} ArgBuf;

static void
arg_add(ArgBuf *a, const char *s, size_t len)
{
	if (a->n == a->max)
	{
		a->max = a->max ? a->max * 2 : 64;
		a->argv = a->argv ? repalloc(a->argv, sizeof(char *) * a->max) : palloc(sizeof(char *) * a->max);
		a->len = a->len ? repalloc(a->len, sizeof(size_t) * a->max) : palloc(sizeof(size_t) * a->max);
	}
	a->argv[a->n] = s;
	a->len[a->n] = len;
	a->n++;
}

static void
arg_str(ArgBuf *a, const char *s)
{
	arg_add(a, s, strlen(s));
}

static void
arg_int(ArgBuf *a, int64 v)
{
	char	   *buf = palloc(MAXINT8LEN + 1);

	arg_add(a, buf, pg_lltoa(v, buf));
}

/* one op's keys (data key, version key) and arguments */
static void
fence_op_args(ArgBuf *keys, ArgBuf *args, FenceOp *op)
{
	size_t		klen = strlen(op->key);

	arg_add(keys, op->key, klen);
	arg_str(keys, rs_version_key_str(op->key, klen));

	arg_add(args, op->img->op == RS_OP_HASH ? "H" : op->img->op == RS_OP_STRING ? "S" : "D", 1);
	arg_str(args, op->version);
	arg_int(args, op->ttl_ms);
	if (op->img->op == RS_OP_HASH)
	{
		int			nset = 0,
					ndel = 0;

		for (int f = 0; f < op->img->nfields; f++)
			if (op->img->values[f])
				nset++;
		arg_int(args, nset);
		for (int f = 0; f < op->img->nfields; f++)
			if (op->img->values[f])
			{
				arg_str(args, op->img->fields[f]);
				arg_str(args, op->img->values[f]);
			}
		ndel = op->img->nfields - nset;
		arg_int(args, ndel);
		for (int f = 0; f < op->img->nfields; f++)
			if (!op->img->values[f])
				arg_str(args, op->img->fields[f]);
	}
	else if (op->img->op == RS_OP_STRING)
		arg_str(args, op->img->str);
}

void
rs_fence_append(RedisPipeline *p, FenceOp *ops, int nops,
				const char *marker_field, const char *marker_value, List *clears)
{
	if (redis_cluster_mode())
		rs_fence_append_cluster(p, ops, nops, marker_field, marker_value, clears);
	else
		rs_fence_append_call(p, false, ops, nops, rs_marker_key(), rs_evicted_key(),
							 marker_field, marker_value, clears);
}

/*
 * Queue one apply call of ops (xslot: the Redis 7 cross-slot variant, keys
 * of one node), its in-flight marker and clears in marker_key, its eviction
 * watch in evicted_key.
 */
void
rs_fence_append_call(RedisPipeline *p, bool xslot, FenceOp *ops, int nops,
					 const char *marker_key, const char *evicted_key,
					 const char *marker_field, const char *marker_value, List *clears)
{
	ArgBuf		keys = {0};
	ArgBuf		args = {0};
	ArgBuf		all = {0};
	ListCell   *lc;

	arg_str(&keys, marker_key);
	arg_str(&keys, evicted_key);
	arg_int(&args, (int64) rs_tombstone_ttl_ms);
	arg_str(&args, marker_field ? marker_field : "");
	arg_str(&args, marker_value ? marker_value : "");
	arg_int(&args, list_length(clears));
	{
		char	   *floor = palloc(RS_VERSION_LEN + 1);

		rs_version_now(floor);
		arg_str(&args, floor);
	}
	foreach(lc, clears)
		arg_str(&args, (char *) lfirst(lc));

	for (int i = 0; i < nops; i++)
		fence_op_args(&keys, &args, &ops[i]);

	if (xslot)
	{
		/* declared: marker and eviction watch; then the data keys' count and keys */
		arg_add(&all, keys.argv[0], keys.len[0]);
		arg_add(&all, keys.argv[1], keys.len[1]);
		arg_int(&all, keys.n - 2);
		for (int i = 2; i < keys.n; i++)
			arg_add(&all, keys.argv[i], keys.len[i]);
		for (int i = 0; i < args.n; i++)
			arg_add(&all, args.argv[i], args.len[i]);
		redis_pipeline_append_script(p, &apply_xslot_script, 2, all.n, all.argv, all.len);
		return;
	}
	for (int i = 0; i < keys.n; i++)
		arg_add(&all, keys.argv[i], keys.len[i]);
	for (int i = 0; i < args.n; i++)
		arg_add(&all, args.argv[i], args.len[i]);
	redis_pipeline_append_script(p, &apply_script, keys.n, all.n, all.argv, all.len);
}

int
rs_fence_failures(RedisValue *reply, int **indexes, char ***errors)
{
	int			n = 0;

	*indexes = NULL;
	*errors = NULL;
	if (reply->type != RV_ARRAY || reply->nelem < 1)
		return -1;

	/*
	 * {applied, (index, error)*, evicted}: keys dropped because their
	 * version was gone are logged (and counted in Redis, rs_evicted_key()).
	 */
	if (reply->nelem % 2 == 0 && reply->elems[reply->nelem - 1].type == RV_INTEGER &&
		reply->elems[reply->nelem - 1].integer > 0)
		ereport(LOG,
				(errmsg("redis_sync: dropped %lld cached keys whose version key was missing",
						(long long) reply->elems[reply->nelem - 1].integer),
				 errdetail("Redis evicted or lost their version keys; a cached value without its version might be newer than the write, so the key was deleted (a miss, never a stale value)."),
				 errhint("Use maxmemory-policy noeviction or volatile-*, or give Redis more memory.")));
	if (reply->nelem > 2)
	{
		*indexes = palloc(sizeof(int) * reply->nelem / 2);
		*errors = palloc(sizeof(char *) * reply->nelem / 2);
		for (int i = 1; i + 1 < reply->nelem; i += 2)
		{
			(*indexes)[n] = (int) reply->elems[i].integer;
			(*errors)[n] = reply->elems[i + 1].str ? reply->elems[i + 1].str : "error";
			n++;
		}
	}
	return n;
}

/* glob-escape s for SCAN MATCH */
static char *
glob_escape(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (; *s; s++)
	{
		if (strchr("*?[]\\", *s))
			appendStringInfoChar(&buf, '\\');
		appendStringInfoChar(&buf, *s);
	}
	appendStringInfoChar(&buf, '*');
	return buf.data;
}

/*
 * Every data key under prefix: the hashes and strings (SCAN ... TYPE, one
 * pass per type).  Other types under the prefix are not the table's rows:
 * the dirty set of a write-behind table (stats:dirty under stats:) must
 * survive a TRUNCATE or purge of the same table's write-through keys.
 */
List *
rs_scan_prefix(const char *prefix)
{
	static const char *const types[] = {"hash", "string"};
	List	   *keys = NIL;
	char	   *pattern = glob_escape(prefix);
	/* on a cluster, every master's keys (SCAN is per node) */
	int			nmasters = redis_cluster_nmasters();

	for (int m = 0; m < nmasters; m++)
	for (int t = 0; t < lengthof(types); t++)
	{
		char	   *cursor = pstrdup("0");

		do
		{
			RedisPipeline *p = redis_pipeline_create();
			const char *argv[8] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000",
			"TYPE", types[t]};
			RedisValue *v;

			redis_pipeline_target_master(p, m);
			redis_pipeline_append(p, 8, argv, NULL);
			redis_pipeline_exec(p);
			redis_check_reply(p, 0, "SCAN");
			v = redis_pipeline_reply(p, 0);
			if (v->type != RV_ARRAY || v->nelem != 2)
				elog(ERROR, "redis_sync: unexpected SCAN reply");
			cursor = pstrdup(v->elems[0].str);
			for (int i = 0; i < v->elems[1].nelem; i++)
			{
				RedisValue *k = &v->elems[1].elems[i];

				/* companion keys begin with '{', prefixes never: all are row keys */
				keys = lappend(keys, pstrdup(k->str));
			}
			redis_pipeline_free(p);
		} while (strcmp(cursor, "0") != 0);
	}
	return keys;
}
