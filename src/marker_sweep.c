/*-------------------------------------------------------------------------
 *
 * marker_sweep.c
 *		The worker's sweep of in-flight markers (fence.c writes them): a
 *		marker whose transaction committed is removed; one whose transaction
 *		aborted or died in a crash has its rows pushed again from the table
 *		(warm.c), then is removed; one whose repairs keep failing (or crash
 *		the worker) is set aside in <marker key>:failed for an operator.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "cluster.h"
#include "fence.h"
#include "marker_sweep.h"
#include "reply_limit.h"
#include "shmem.h"
#include "subxact.h"
#include "warm.h"
#include "xact_step.h"

/* repairs of one marker that may not finish before it is set aside */
#define MAX_MARKER_ATTEMPTS 3

static int64 marker_attempt(const char *mkey, const char *field, const char *by);

#define count_marker_attempt(mkey, field) marker_attempt((mkey), (field), "1")
/* best effort: Redis may be the reason the repair failed */
#define uncount_marker_attempt(mkey, field) ((void) marker_attempt((mkey), (field), "-1"))

typedef struct RepairArg
{
	const char *value;			/* the marker's value: the rows to repair */
	int64		n;				/* keys repaired */
} RepairArg;

/*
 * The repair reads its rows FOR SHARE (warm_push.c), which waits for a
 * transaction writing one of them.  One about to commit (it pushed at
 * pre-commit) ends within moments; one left open (an idle session that
 * updated the row) would hold the worker, and with it every delivery and
 * drain of the database, for as long as it stays open.  So a lock is
 * waited for at most this long (or the worker's lock_timeout, if shorter):
 * the marker is then left for the next sweep (tests/t/269), and such a
 * marker costs the worker this long once per sweep (marker_sweep_interval,
 * 5 s by default).
 */
#define REPAIR_LOCK_WAIT_MS 200

/*
 * The rest of the table's code the repair runs as its owner (the policies
 * of a table that forces row security, its key types' functions) is bounded
 * as the background warm's batches are: by redis_sync.warm_timeout.  A
 * repair cancelled by it counts as one of the marker's attempts (after
 * MAX_MARKER_ATTEMPTS it is set aside) and is not tried again before ten
 * times the timeout (an hour at most), so such a table holds the worker, and
 * every delivery and drain of the database, that long once per ten times
 * it, as a table whose warm runs into the timeout does (tests/t/286).
 * Holds live in the worker's memory: a restarted worker tries at once.
 */
typedef struct RepairHold
{
	char	   *field;			/* the marker's field */
	TimestampTz until;
} RepairHold;

static List *repair_holds = NIL;	/* of RepairHold, in TopMemoryContext */

static RepairHold *
repair_hold_find(const char *field)
{
	ListCell   *lc;

	foreach(lc, repair_holds)
	{
		RepairHold *h = lfirst(lc);

		if (strcmp(h->field, field) == 0)
			return h;
	}
	return NULL;
}

static void
repair_hold_drop(const char *field)
{
	RepairHold *h = repair_hold_find(field);

	if (h == NULL)
		return;
	repair_holds = list_delete_ptr(repair_holds, h);
	pfree(h->field);
	pfree(h);
}

/* is the repair of this marker held back after a timeout? */
static bool
repair_held(const char *field)
{
	RepairHold *h = repair_hold_find(field);

	if (h == NULL)
		return false;
	if (GetCurrentTimestamp() < h->until)
		return true;
	repair_hold_drop(field);
	return false;
}

static int
repair_hold_ms(void)
{
	return (int) Min((int64) rs_warm_timeout_ms * 10, (int64) 3600 * 1000);
}

/*
 * Hold the repair of this marker back for ms.  The holds that ran out go
 * first: the marker of one may have gone meanwhile without a repair (an
 * operator's HDEL, a Redis restarted empty), and its hold would stay.
 */
static void
repair_hold_set(const char *field, int64 ms)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	TimestampTz now = GetCurrentTimestamp();
	RepairHold *h;
	ListCell   *lc;

	foreach(lc, repair_holds)
	{
		h = lfirst(lc);
		if (h->until <= now)
		{
			repair_holds = foreach_delete_current(repair_holds, lc);
			pfree(h->field);
			pfree(h);
		}
	}
	h = repair_hold_find(field);
	if (h == NULL)
	{
		h = palloc(sizeof(RepairHold));
		h->field = pstrdup(field);
		repair_holds = lappend(repair_holds, h);
	}
	h->until = TimestampTzPlusMilliseconds(now, ms);
	MemoryContextSwitchTo(old);
}

/*
 * A repair that failed otherwise after running long (the table's code
 * slept a little less than warm_timeout, then raised a lock not available
 * or a serialization failure: neither counted as an attempt) held the
 * worker that long, and was tried again at the next sweep: it waits ten
 * times what it ran (tests/t/293).  A lock wait alone (REPAIR_LOCK_WAIT_MS)
 * waits no longer than a sweep interval does by default.
 */
static void
repair_hold_after(const char *field, int64 ran)
{
	if (ran > 0)
		repair_hold_set(field, Min(ran * 10, (int64) 3600 * 1000));
}

/*
 * The tables a marker's value names ([[<table OID>, <key value>...], ...]),
 * as hold keys "t:<OID>": a repair that ran into warm_timeout holds its
 * tables too, so the other markers of a table whose code blocks wait
 * without being tried (a sweep that met twelve of them ran into the
 * timeout twelve times in a row, holding the worker for their sum:
 * tests/t/291).  Key values are JSON strings, skipped whole.
 */
static List *
marker_tables(const char *value)
{
	List	   *tables = NIL;
	int			depth = 0;
	bool		in_string = false;

	for (const char *c = value; *c; c++)
	{
		if (in_string)
		{
			if (*c == '\\' && c[1] != '\0')
				c++;
			else if (*c == '"')
				in_string = false;
		}
		else if (*c == '"')
			in_string = true;
		else if (*c == '[' && ++depth == 2)
		{
			char	   *end;
			unsigned long oid = strtoul(c + 1, &end, 10);

			if (end != c + 1)
				tables = lappend(tables, psprintf("t:%lu", oid));
		}
		else if (*c == ']')
			depth--;
	}
	return tables;
}

static bool
tables_held(List *tables)
{
	ListCell   *lc;

	foreach(lc, tables)
		if (repair_held(lfirst(lc)))
		return true;
	return false;
}

static void
repair_marker_cb(void *arg)
{
	RepairArg  *r = (RepairArg *) arg;

	/* restored at the subtransaction's end, on error or not */
	if (LockTimeout <= 0 || LockTimeout > REPAIR_LOCK_WAIT_MS)
		(void) set_config_option("lock_timeout", CppAsString2(REPAIR_LOCK_WAIT_MS),
								 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	rs_step_timeout_arm(rs_warm_timeout_ms);	/* redis_sync.warm_timeout */
	r->n = rs_repair_marker(r->value);
	rs_step_timeout_check();	/* a cancel caught by the table's code */
	rs_step_timeout_disarm();
}

typedef enum RepairOutcome
{
	REPAIR_DONE,
	REPAIR_FAILED,				/* set it aside */
	REPAIR_DEFERRED				/* its rows are locked, or its code ran into
								 * warm_timeout: a later sweep's */
} RepairOutcome;

/*
 * Repair the rows of one marker in a subtransaction.  A marker that makes
 * the repair fail (a malformed marker, a table it cannot read) is not
 * retried at every round: REPAIR_FAILED, and the caller sets it aside.
 */
static RepairOutcome
repair_marker_guarded(const char *mkey, const char *field, const char *value)
{
	RepairArg	r = {value, 0};
	ErrorData  *ed = rs_subxact_try(repair_marker_cb, &r, true);
	bool		timed_out;
	int64		ran = rs_step_elapsed_ms();

	timed_out = ed != NULL && ed->sqlerrcode == ERRCODE_QUERY_CANCELED &&
		rs_step_timeout_expired();
	rs_step_timeout_disarm();
	if (ed == NULL)
	{
		ereport(LOG,
				(errmsg("redis_sync worker: repaired %lld keys pushed by transaction %llu, which did not commit",
						(long long) r.n, (unsigned long long) strtoull(field, NULL, 10))));
		repair_hold_drop(field);
		return REPAIR_DONE;
	}
	if (ed->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
	{
		/* not an attempt: a set-aside marker waits for an operator */
		uncount_marker_attempt(mkey, field);
		repair_hold_after(field, ran);
		ereport(LOG,
				(errmsg("redis_sync worker: the repair of in-flight marker %s waits for a transaction that holds a lock on its rows",
						field),
				 errdetail("%s", ed->message),
				 errhint("The next sweep tries again. Until then its keys can hold what the transaction that did not commit pushed.")));
		FreeErrorData(ed);
		return REPAIR_DEFERRED;
	}
	if (timed_out)
	{
		/*
		 * counted as an attempt; held back so it does not hold every sweep,
		 * and its tables' other markers with it
		 */
		ListCell   *lc;

		repair_hold_set(field, repair_hold_ms());
		foreach(lc, marker_tables(value))
			repair_hold_set(lfirst(lc), repair_hold_ms());
		ereport(LOG,
				(errmsg("redis_sync worker: the repair of in-flight marker %s took longer than redis_sync.warm_timeout (%d ms) and was cancelled",
						field, rs_warm_timeout_ms),
				 errdetail("The table's own code (a row security policy, a type's function) ran that long as its owner."),
				 errhint("It is tried again in %d s; after %d attempts it is set aside in %s:failed. Until then its keys can hold what the transaction that did not commit pushed.",
						 repair_hold_ms() / 1000, MAX_MARKER_ATTEMPTS, mkey)));
		rs_stats_error(InvalidOid, "the repair of an in-flight marker ran into redis_sync.warm_timeout");
		FreeErrorData(ed);
		return REPAIR_DEFERRED;
	}
	if (rs_error_transient_sweep(ed->sqlerrcode))
	{
		/* Redis down, a lock or serialization conflict: the round retries */
		uncount_marker_attempt(mkey, field);
		repair_hold_after(field, ran);
		ReThrowError(ed);
	}
	ereport(LOG,
			(errmsg("redis_sync worker: could not repair the keys of in-flight marker %s, set aside in %s:failed: %s",
					field, mkey, ed->message)));
	rs_stats_error(InvalidOid, ed->message);
	rs_stats_add(InvalidOid, RS_C_DELIVERY_FAILURES, 1);
	FreeErrorData(ed);
	return REPAIR_FAILED;
}

/*
 * Count one more repair attempt of a marker in <marker key>:attempts, before
 * the repair (by "1"), or take one back (by "-1"): a marker whose repair
 * crashes the worker must not crash it again at every restart.  The count
 * is removed with the marker.  Returns the count, -1 when Redis failed.
 */
static int64
marker_attempt(const char *mkey, const char *field, const char *by)
{
	RedisPipeline *p = redis_pipeline_create();
	char	   *key = psprintf("%s:attempts", mkey);
	const char *argv[4] = {"HINCRBY", key, field, by};
	RedisFailure f;
	RedisValue *v;
	int64		n;

	redis_pipeline_append(p, 4, argv, NULL);
	if (!redis_pipeline_try_exec(p, &f))
		return -1;
	v = redis_pipeline_reply(p, 0);
	n = v->type == RV_INTEGER ? v->integer : -1;
	redis_pipeline_free(p);
	return n;
}

/*
 * Did the transaction of marker field commit?  1 yes, 0 no (or unknown:
 * repair), -1 still in progress (leave the marker).
 */
static int
marker_committed(const char *field)
{
	uint64		fxid = strtoull(field, NULL, 10);
	TransactionId xid = (TransactionId) (fxid & 0xFFFFFFFF);
	const char *last = strrchr(field, ':');
	int64		started = last ? strtoll(last + 1, NULL, 10) : 0;

	/*
	 * A marker written before shared memory was last made (server start or
	 * crash restart) may name an xid that crash recovery handed out again
	 * (the transaction's WAL was never flushed): its commit status says
	 * nothing, so repair.  A transaction too old to look up is repaired too:
	 * repairing is always safe.
	 */
	if (started != rs_incarnation())
		return 0;
	if (TransactionIdIsInProgress(xid))
		return -1;
	return U64FromFullTransactionId(ReadNextFullTransactionId()) - fxid < (uint64) 1 << 31 &&
		!TransactionIdPrecedes(xid, ShmemVariableCache->oldestClogXid) &&
		TransactionIdDidCommit(xid) ? 1 : 0;
}

/*
 * Repair the keys of a marker whose transaction did not commit, or set it
 * aside (appended to *set_aside) when its repairs keep failing, or leave it
 * for the next sweep (*deferred) when its rows stay locked; false when
 * Redis failed (try again next round).
 */
static bool
repair_or_set_aside(const char *mkey, const char *field, const char *value, List **set_aside,
					bool *deferred)
{
	int64		attempt;

	*deferred = false;
	if (repair_held(field) || tables_held(marker_tables(value)))
	{
		*deferred = true;
		return true;
	}
	attempt = count_marker_attempt(mkey, field);
	if (attempt < 0)
		return false;
	if (attempt > MAX_MARKER_ATTEMPTS)
	{
		ereport(LOG,
				(errmsg("redis_sync worker: in-flight marker %s set aside in %s:failed: %d earlier repairs of it did not finish",
						field, mkey, MAX_MARKER_ATTEMPTS),
				 errdetail("The worker stopped or crashed while repairing it, or its repairs ran into redis_sync.warm_timeout.")));
		rs_stats_error(InvalidOid, "an in-flight marker was set aside: its repairs did not finish");
		rs_stats_add(InvalidOid, RS_C_DELIVERY_FAILURES, 1);
		*set_aside = lappend(*set_aside, list_make2(pstrdup(field), pstrdup(value)));
		repair_hold_drop(field);
	}
	else
	{
		RepairOutcome r = repair_marker_guarded(mkey, field, value);

		if (r == REPAIR_FAILED)
			*set_aside = lappend(*set_aside, list_make2(pstrdup(field), pstrdup(value)));
		*deferred = r == REPAIR_DEFERRED;
	}
	return true;
}

/* failed markers move to <marker key>:failed, for an operator to look at */
static bool
move_to_failed(const char *mkey, List *set_aside)
{
	RedisPipeline *p = redis_pipeline_create();
	char	   *failed_key = psprintf("%s:failed", mkey);
	ListCell   *lc;
	RedisFailure f;

	foreach(lc, set_aside)
	{
		List	   *fv = lfirst(lc);
		const char *argv[4] = {"HSET", failed_key, linitial(fv), lsecond(fv)};

		redis_pipeline_append(p, 4, argv, NULL);
	}
	if (!redis_pipeline_try_exec(p, &f))
		return false;
	redis_pipeline_free(p);
	return true;
}

/* remove the markers swept (and their attempt counts; most have none) */
static bool
remove_markers(const char *mkey, List *done)
{
	RedisPipeline *p = redis_pipeline_create();
	int			n = list_length(done) + 2;
	const char **argv = palloc(sizeof(char *) * n);
	ListCell   *lc;
	int			i = 2;
	RedisFailure f;

	argv[0] = "HDEL";
	argv[1] = mkey;
	foreach(lc, done)
		argv[i++] = lfirst(lc);
	redis_pipeline_append(p, n, argv, NULL);
	argv[1] = psprintf("%s:attempts", mkey);
	redis_pipeline_append(p, n, argv, NULL);
	if (!redis_pipeline_try_exec(p, &f))
		return false;
	redis_pipeline_free(p);
	return true;
}

/*
 * How many fields the sweep asks HSCAN for per page.  A marker's value names
 * the keys of one pushed chunk (about 20 kB for 1,000 keys of 20 bytes), so
 * a fixed COUNT of 1,000 made replies of up to 20 MB: more than a Redis that
 * limits a client's memory (client-output-buffer-limit normal,
 * maxmemory-clients) lets one client have.  Redis then dropped the worker's
 * connection at every sweep, the sweep never got through the hash, and the
 * keys an aborted strict transaction had pushed stayed in Redis unrepaired
 * for as long as the limit held, write-behind drains and warms of the
 * database waiting with them (review helper-101).  So the first page asks
 * for one field, and each next one for as many as SWEEP_PAGE_BYTES holds at
 * the size of the largest field seen so far: 1,000 for the markers of
 * single-row pushes, about a dozen for chunks of 1,000 keys.  COUNT is a
 * hint (HSCAN returns whole buckets, and a small hash in one reply: at most
 * 128 fields of 64 bytes), so a page may be somewhat larger.
 */
#define SWEEP_PAGE_BYTES (256 * 1024)
#define SWEEP_PAGE_FIELDS 1000

static int
sweep_page_fields(size_t largest)
{
	/* under a limit smaller than 1 MB, a quarter of it (reply_limit.c) */
	size_t		bytes = Min(SWEEP_PAGE_BYTES, rs_reply_page_bytes(2 * SWEEP_PAGE_BYTES) / 2);

	if (largest == 0)
		return 1;
	return (int) Max(1, Min(SWEEP_PAGE_FIELDS, bytes / largest));
}

/* remove markers of committed transactions; repair those that did not commit */
static bool
sweep_marker_key(const char *mkey)
{
	char	   *cursor = "0";
	List	   *done = NIL;
	List	   *set_aside = NIL;	/* (field, value) of markers that failed */
	size_t		largest = 0;	/* the largest field and value seen */

	do
	{
		RedisPipeline *p = redis_pipeline_create();
		char		count[16];
		const char *argv[6] = {"HSCAN", mkey, cursor, "COUNT", count, NULL};
		RedisValue *v;
		RedisFailure f;

		snprintf(count, sizeof(count), "%d", sweep_page_fields(largest));
		redis_pipeline_append(p, 5, argv, NULL);
		if (!redis_pipeline_try_exec(p, &f))
			return false;
		v = redis_pipeline_reply(p, 0);
		if (v->type != RV_ARRAY || v->nelem != 2)
			return false;
		cursor = pstrdup(v->elems[0].str);
		for (int i = 0; i + 1 < v->elems[1].nelem; i += 2)
		{
			char	   *field = v->elems[1].elems[i].str;
			char	   *value = v->elems[1].elems[i + 1].str;
			TransactionId xid = (TransactionId) (strtoull(field, NULL, 10) & 0xFFFFFFFF);

			largest = Max(largest, v->elems[1].elems[i].len + v->elems[1].elems[i + 1].len);

			if (TransactionIdIsNormal(xid))
			{
				int			committed = marker_committed(field);
				bool		deferred;

				if (committed < 0)
					continue;
				if (committed == 0 &&
					!repair_or_set_aside(mkey, field, value, &set_aside, &deferred))
					return false;	/* Redis failed: try again next round */
				if (committed == 0 && deferred)
					continue;	/* kept for the next sweep */
			}
			done = lappend(done, pstrdup(field));
		}
		redis_pipeline_free(p);

		/*
		 * This page's markers go now, not after the whole hash: a connection
		 * lost further on left every marker repaired so far in place, each
		 * counted as a repair that did not finish, so that a few such rounds
		 * (CLIENT KILL, a restart) set markers aside as failed (helper-111).
		 * HSCAN still returns every field present throughout.
		 */
		if (set_aside != NIL && !move_to_failed(mkey, set_aside))
			return false;
		if (done != NIL && !remove_markers(mkey, done))
			return false;
		set_aside = NIL;
		done = NIL;
	} while (strcmp(cursor, "0") != 0);

	return true;
}

/*
 * Every in-flight marker hash: one per database on a single Redis; on a
 * cluster "<marker key>:{<tag>}" in some slot, the tag of that slot
 * (fence_cluster.c rs_marker_key_for_slot): on Redis 7, the lowest slot of
 * each master, swept every round; a marker elsewhere (older Redis, a call
 * split by slot after a redirection, slots that moved) is found every 12th
 * round (and the first) by asking whether the marker hash of each of the
 * 16,384 slots exists, one pipeline per master: about 3 ms of Redis
 * time per master whatever the keyspace holds.  It was a SCAN of every
 * master, a pass over the whole keyspace (about 1.2 s of Redis time per
 * 1,000,000 keys, measured on a 3-master cluster) every minute by default.
 * Slots without an owner in the map are left for a later round.
 */
bool
rs_sweep_markers(void)
{
	static int	rounds = 0;
	int		   *masters;
	int			nm;
	int			failed = 0;

	if (!redis_cluster_mode())
		return sweep_marker_key(rs_marker_key());
	(void) redis_cluster_nmasters();	/* the map, loaded */
	nm = rs_cluster_masters(&masters);

	/*
	 * A master that cannot be reached (cluster-require-full-coverage no: the
	 * others serve their slots) fails the sweep, after the other masters'
	 * markers are swept.  A second master failing ends it: the cluster is
	 * down (CLUSTERDOWN everywhere), and each master would cost a
	 * command_timeout.
	 */
	if (rounds++ % 12 != 0)
	{
		for (int m = 0; m < nm && failed < 2; m++)
		{
			int			first = rs_cluster_first_slot(masters[m]);

			if (first >= 0 && !sweep_marker_key(rs_marker_key_for_slot(first)))
				failed++;
		}
		return failed == 0;
	}

	/* one pipeline per master: one that fails leaves the others' to do */
	for (int m = 0; m < nm && failed < 2; m++)
	{
		RedisPipeline *p = redis_pipeline_create();
		RedisFailure f;
		int		   *slots = palloc(sizeof(int) * RS_CLUSTER_SLOTS);
		int			n = 0;
		bool		ok = true;

		for (int s = 0; s < RS_CLUSTER_SLOTS; s++)
		{
			const char *argv[2] = {"EXISTS", NULL};

			if (rs_cluster_owner[s] != masters[m])
				continue;
			argv[1] = rs_marker_key_for_slot(s);
			redis_pipeline_append(p, 2, argv, NULL);
			slots[n++] = s;
		}
		if (n > 0 && !redis_pipeline_try_exec(p, &f))
			ok = false;
		for (int i = 0; ok && i < n; i++)
		{
			RedisValue *v = redis_pipeline_reply(p, i);

			if (v->type != RV_INTEGER ||
				(v->integer > 0 && !sweep_marker_key(rs_marker_key_for_slot(slots[i]))))
				ok = false;
		}
		if (!ok)
			failed++;
		redis_pipeline_free(p);
		pfree(slots);
	}
	return failed == 0;
}
