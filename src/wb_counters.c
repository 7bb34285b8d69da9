/*-------------------------------------------------------------------------
 *
 * wb_counters.c
 *		Write-behind counters and re-seeding: the correction of counter keys
 *		Redis recreated from nothing (correct_script) and the re-seeding of
 *		every write-behind key from its table after Redis lost its data
 *		(seed_script).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "drain.h"
#include "encode.h"
#include "wb_internal.h"
#include "xact_step.h"

/*
 * correct unseeded counters: KEYS = key, seedkey, ...; ARGV = format, then
 * per key: n, (field, delta)*, m, (field, value)* -- counters are
 * incremented by the table's previous value, other fields Redis lacks are
 * filled from the table.
 *
 * A key whose seed marker is already there was corrected (or seeded) after
 * this batch read it as unseeded: an overlapped batch that held the same
 * member, whose read went out before the earlier batch's correction
 * (wb_overlap.c).  Its value read then still counted from nothing, so the
 * table has just been given increments it already had, and correcting
 * again would add the table's value to Redis a second time.  The script
 * then changes nothing and fails; the drain rolls the batch back and drains
 * its members again, reading them seeded.
 */
#define CORRECT_SEEDED_ERROR "redis_sync: counter key seeded after it was read"
static RedisScript correct_script = REDIS_SCRIPT("redis_sync_correct",
												 "for k = 2, #KEYS, 2 do\n"
												 "  if redis.call('EXISTS', KEYS[k]) == 1 then\n"
												 "    return redis.error_reply('" CORRECT_SEEDED_ERROR " (' .. KEYS[k - 1] .. ')')\n"
												 "  end\n"
												 "end\n"
												 "local p = 2\n"
												 "for k = 1, #KEYS, 2 do\n"
												 "  local n = tonumber(ARGV[p]); p = p + 1\n"
												 "  for i = 1, n do\n"
												 "    if ARGV[1] == 'h' then redis.call('HINCRBY', KEYS[k], ARGV[p], ARGV[p + 1])\n"
												 "    else redis.call('INCRBY', KEYS[k], ARGV[p + 1]) end\n"
												 "    p = p + 2\n"
												 "  end\n"
												 "  local m = tonumber(ARGV[p]); p = p + 1\n"
												 "  for i = 1, m do\n"
												 "    redis.call('HSETNX', KEYS[k], ARGV[p], ARGV[p + 1])\n"
												 "    p = p + 2\n"
												 "  end\n"
												 "  redis.call('SET', KEYS[k + 1], '1')\n"
												 "end\n"
												 "return #KEYS / 2\n");

/* seed keys that do not exist: KEYS = key, seedkey, ...; ARGV = format, then per key n, (field, value)* */
static RedisScript seed_script = REDIS_SCRIPT("redis_sync_seed",
											  "local p = 2\n"
											  "local seeded = 0\n"
											  "for k = 1, #KEYS, 2 do\n"
											  "  local n = tonumber(ARGV[p]); p = p + 1\n"
											  "  if redis.call('EXISTS', KEYS[k]) == 0 then\n"
											  "    if ARGV[1] == 'h' then\n"
											  "      if n > 0 then redis.call('HSET', KEYS[k], unpack(ARGV, p, p + 2 * n - 1)) end\n"
											  "    elseif n > 0 then\n"
											  "      redis.call('SET', KEYS[k], ARGV[p + 1])\n"
											  "    end\n"
											  "    redis.call('SET', KEYS[k + 1], '1')\n"
											  "    seeded = seeded + 1\n"
											  "  end\n"
											  "  p = p + 2 * n\n"
											  "end\n"
											  "return seeded\n");


/*
 * Queue a script whose keys come in (key, companion key) pairs, each pair
 * with its own run of arguments (args[argstart[k]] up to the next pair's)
 * after one shared first argument, args[0].  On a cluster the pairs are in
 * different slots: one call per pair (a key and its companion share a
 * slot), merged into one reply, the sum of the calls' integer replies.
 */
static void
sum_merge(RedisValue *parts, int nparts, void *arg, RedisValue *out)
{
	memset(out, 0, sizeof(*out));
	out->type = RV_INTEGER;
	for (int i = 0; i < nparts; i++)
	{
		if (parts[i].type == RV_ERROR)
		{
			*out = parts[i];
			return;
		}
		if (parts[i].type == RV_INTEGER)
			out->integer += parts[i].integer;
	}
}

static void
append_pair_script(RedisPipeline *p, RedisScript *script, const char **keys, int nkeys,
				   const char **args, int na, const int *argstart)
{
	const char **argv = palloc(sizeof(char *) * (nkeys + na));
	int			nargv = 0;

	if (redis_cluster_mode())
	{
		int			begin = redis_pipeline_merge_begin(p);

		for (int k = 0; k < nkeys / 2; k++)
		{
			int			end = k + 1 < nkeys / 2 ? argstart[k + 1] : na;

			nargv = 0;
			argv[nargv++] = keys[2 * k];
			argv[nargv++] = keys[2 * k + 1];
			argv[nargv++] = args[0];
			for (int a = argstart[k]; a < end; a++)
				argv[nargv++] = args[a];
			redis_pipeline_append_script(p, script, 2, nargv, argv, NULL);
		}
		redis_pipeline_merge_end(p, begin, sum_merge, NULL);
		return;
	}
	for (int i = 0; i < nkeys; i++)
		argv[nargv++] = keys[i];
	for (int i = 0; i < na; i++)
		argv[nargv++] = args[i];
	redis_pipeline_append_script(p, script, nkeys, nargv, argv, NULL);
}

/*
 * Note the connection b's values were just read on (its generation and its
 * Redis's run_id), for wb_correct_counters.
 */
void
wb_batch_read_on(Batch *b)
{
	const char *run_id = redis_connection_run_id();

	b->read_generation = redis_connection_generation();
	strlcpy(b->read_run_id, run_id ? run_id : "", sizeof(b->read_run_id));
	b->read_nodes = NULL;
	b->read_nnodes = 0;
	if (redis_cluster_mode())
		b->read_nodes = redis_cluster_conn_marks(&b->read_nnodes);
}

/*
 * Another page of b's values has just been read: on a cluster, a node
 * connected for it that was not at the first page is marked too (node
 * indexes are stable; a node new to the table is added), so its restart
 * before the correction is seen.  On a single Redis the first page's
 * connection stands: a reconnection after it, to another process, is a
 * change whatever the later pages read.
 */
void
wb_batch_read_more(Batch *b)
{
	RedisNodeConnMark *now;
	int			n;

	if (!redis_cluster_mode() || b->read_nodes == NULL)
		return;
	now = redis_cluster_conn_marks(&n);
	if (n > b->read_nnodes)
	{
		b->read_nodes = repalloc(b->read_nodes, sizeof(RedisNodeConnMark) * n);
		memset(b->read_nodes + b->read_nnodes, 0,
			   sizeof(RedisNodeConnMark) * (n - b->read_nnodes));
		b->read_nnodes = n;
	}
	for (int i = 0; i < n; i++)
		if (b->read_nodes[i].generation == 0 && now[i].generation != 0)
			b->read_nodes[i] = now[i];
	pfree(now);
}

/*
 * Is the connection now on another Redis process than the one b's values
 * were first read from (for the correction just made, or a later page of
 * the values, drain.c)?  On a single Redis: the connection changed and
 * its run_id differs (or either is unknown).  On a cluster each node has
 * its own connection: any node connected at the read that has been
 * connected again since, to another process or one whose run_id is unknown
 * (a master restarted empty under the batch, tests/t/359).
 */
bool
wb_batch_read_changed(Batch *b)
{
	const char *run_id;

	if (redis_cluster_mode())
		return b->read_nodes != NULL &&
			redis_cluster_conn_marks_changed(b->read_nodes, b->read_nnodes);
	run_id = redis_connection_run_id();
	return redis_connection_generation() != b->read_generation &&
		(run_id == NULL || b->read_run_id[0] == '\0' || strcmp(run_id, b->read_run_id) != 0);
}

/*
 * The Redis correction of b's unseeded counter keys (before commit).
 *
 * A correction sent to another Redis process than the one b's values were
 * read from (Redis restarted empty in between) created the key there at the
 * table's previous value alone and set its marker, while the batch committed
 * that value plus the increments it had read; the re-seed then left the key
 * alone and the key's next drain, absolute, set the counter back
 * (tests/t/342_wb_counter_correct_restart).  So when the connection changed
 * since the read and its run_id differs (or either is unknown: a Redis user
 * without INFO), the batch is rolled back instead.  What the correction did
 * is right for the table's value before the batch on the old Redis (the
 * members are still in its processing set and are drained again, read as
 * seeded) as on a new one (they were lost with its data, as increments Redis
 * loses before their drain are).  A new connection to the same Redis (its
 * idle timeout closed the old one) goes on.  On a cluster each node has
 * a connection of its own, each checked (wb_batch_read_changed).
 */
void
wb_correct_counters(Batch *b)
{
	WbTable    *t = b->t;
	Member	   *ms = b->ms;
	int			nm = b->nm;

	RedisPipeline *p;
	int			nkeys = 0;
	int			na = 0;
	const char **keys;
	const char **args;

	int		   *argstart = palloc(sizeof(int) * Max(nm, 1));

	keys = palloc(sizeof(char *) * 2 * Max(nm, 1));
	args = palloc(sizeof(char *) * (1 + nm * (2 + 2 * t->ncols)));
	args[na++] = t->format == WB_FORMAT_HASH ? WB_ARG_HASH : WB_ARG_STRING;
	for (int i = 0; i < nm; i++)
	{
		Member	   *m = &ms[i];
		int			ci = 0;
		int			mpos;
		int			nfill = 0;
		const char *key;

		if (!m->increment || !m->applied || !m->returned)
			continue;
		argstart[nkeys / 2] = na;
		key = wb_member_key(t, m);
		keys[nkeys++] = key;
		keys[nkeys++] = rs_companion_key(key, strlen(key), SEED_SUFFIX);
		args[na++] = psprintf("%d", t->ncounters);
		for (int c = 0; c < t->ncols; c++)
		{
			if (!t->counter[c])
				continue;
			/* delta = new total - value read = previous table value */
			args[na++] = t->cols[c];
			args[na++] = psprintf(INT64_FORMAT, m->totals[ci] - m->read[ci]);
			ci++;
		}
		/* fields Redis lacks are filled from the table */
		mpos = na++;
		if (t->format == WB_FORMAT_HASH)
			for (int c = 0; c < t->ncols; c++)
			{
				if (t->counter[c] || m->present[c] || m->after[c] == NULL)
					continue;
				args[na++] = t->cols[c];
				args[na++] = m->after[c];
				nfill++;
			}
		args[mpos] = psprintf("%d", nfill);
	}
	if (nkeys == 0)
		return;
	p = redis_pipeline_create();
	append_pair_script(p, &correct_script, keys, nkeys, args, na, argstart);
	redis_pipeline_exec(p);
	redis_check_reply(p, 0, "a counter correction");
	redis_pipeline_free(p);
	if (wb_batch_read_changed(b))
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("redis_sync: the connection to Redis changed during a write-behind batch of table %s with counters",
						t->qname),
				 errdetail("Its counter correction went to another Redis process than the one its values were read from (Redis restarted), or to one whose run_id is not known; the batch is rolled back and its members still in Redis are drained again.")));
}

/* the arguments of the seed script for one row: n, then (field, value)* */
static void
seed_row_args(WbTable *t, HeapTuple tup, TupleDesc td, const char **args, int *na)
{
	int			nf = 0;
	int			npos = (*na)++;

	if (t->format == WB_FORMAT_JSON)
	{
		StringInfoData js;
		bool		first = true;

		initStringInfo(&js);
		appendStringInfoChar(&js, '{');
		for (int c = 0; c < t->ncols; c++)
			wb_json_append_pair(&js, &first, t->cols[c], SPI_getvalue(tup, td, c + 2));
		appendStringInfoChar(&js, '}');
		args[(*na)++] = "json";
		args[(*na)++] = js.data;
		nf = 1;
	}
	else
	{
		for (int c = 0; c < t->ncols; c++)
		{
			char	   *v = SPI_getvalue(tup, td, c + 2);

			if (v == NULL)
				continue;
			args[(*na)++] = t->cols[c];
			args[(*na)++] = v;
			nf++;
		}
	}
	args[npos] = psprintf("%d", nf);
}

/* seed the keys of the n rows just fetched (SPI_tuptable); returns keys seeded */
static int64
seed_fetched(WbTable *t, uint64 n)
{
	RedisPipeline *p;
	int			na = 0;
	int			nk = 0;
	const char **keys = palloc(sizeof(char *) * 2 * n);
	const char **args = palloc(sizeof(char *) * (1 + n * (1 + 2 * t->ncols)));
	int		   *argstart = palloc(sizeof(int) * n);
	int64		seeded;

	/* json is written as a plain string by the seed script */
	args[na++] = t->format == WB_FORMAT_HASH ? WB_ARG_HASH : WB_ARG_STRING;
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		char	   *key = psprintf("%s%s", t->prefix, SPI_getvalue(tup, SPI_tuptable->tupdesc, 1));

		argstart[nk / 2] = na;
		keys[nk++] = key;
		keys[nk++] = rs_companion_key(key, strlen(key), SEED_SUFFIX);
		seed_row_args(t, tup, SPI_tuptable->tupdesc, args, &na);
	}
	p = redis_pipeline_create();
	append_pair_script(p, &seed_script, keys, nk, args, na, argstart);
	redis_pipeline_exec(p);
	redis_check_reply(p, 0, "a write-behind re-seed");
	seeded = redis_pipeline_reply(p, 0)->integer;
	redis_pipeline_free(p);
	return seeded;
}

/* seed one table's keys from its rows, never overwriting an existing key */
static int64
reseed_table(WbTable *t)
{
	int64		seeded = 0;
	StringInfoData sql;
	RsAsOwner	saved;
	MemoryContext outer = CurrentMemoryContext;
	Portal		portal;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	appendStringInfoString(&sql, "redis_sync.escape_key(");
	for (int i = 0; i < t->nkeys; i++)
		appendStringInfo(&sql, "%s%s::text", i ? ", " : "", quote_identifier(t->keys[i]));
	appendStringInfoChar(&sql, ')');
	for (int c = 0; c < t->ncols; c++)
		appendStringInfo(&sql, ", %s::text", quote_identifier(t->cols[c]));
	appendStringInfo(&sql, " FROM %s", t->qname);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	rs_as_owner_enter(&saved, t->owner);	/* reading the table runs its
											 * code: as its owner */
	PG_TRY();
	{
		portal = SPI_cursor_open_with_args(NULL, sql.data, 0, NULL, NULL, NULL, true, 0);
		for (;;)
		{
			SPI_cursor_fetch(portal, true, 1000);
			if (SPI_processed == 0)
				break;
			seeded += seed_fetched(t, SPI_processed);
		}
		SPI_cursor_close(portal);
	}
	PG_FINALLY();
	{
		rs_as_owner_leave(&saved);
	}
	PG_END_TRY();
	SPI_finish();
	MemoryContextSwitchTo(outer);
	return seeded;
}

/*
 * The write-behind tables to re-seed after a Redis restart (their OIDs, in
 * the caller's memory context), read in a transaction of its own.
 */
List *
rs_drain_reseed_relids(void)
{
	MemoryContext outer = CurrentMemoryContext;
	List	   *relids = NIL;
	ListCell   *lc;

	rs_xact_begin(NULL);
	MemoryContextSwitchTo(outer);
	foreach(lc, wb_load_tables(InvalidOid))
		relids = lappend_oid(relids, ((WbTable *) lfirst(lc))->relid);
	rs_xact_commit(outer);
	return relids;
}

/*
 * Re-seed one write-behind table (none if it is no longer one) in a
 * transaction of its own, so that a table whose code fails or runs into the
 * caller's timeout holds up no other (worker.c, reseed_all).
 */
void
rs_drain_reseed_one(Oid relid)
{
	List	   *tables;
	ListCell   *lc;
	MemoryContext outer = CurrentMemoryContext;

	rs_xact_begin("redis_sync: re-seeding write-behind keys after a Redis restart");
	(void) rs_canonical_gucs_push();	/* popped at commit */
	MemoryContextSwitchTo(outer);
	tables = wb_load_tables(relid);
	foreach(lc, tables)
	{
		WbTable    *t = lfirst(lc);
		int64		n = reseed_table(t);

		ereport(LOG,
				(errmsg("redis_sync worker: re-seeded %lld write-behind keys of %s",
						(long long) n, t->qname)));
	}
	rs_xact_commit(outer);
}
