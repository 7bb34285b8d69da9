/*-------------------------------------------------------------------------
 *
 * wb_schedule.c
 *		Write-behind scheduler: which table is due (flush_interval, backoff
 *		after a failure), the eviction guard, and the drain round over every
 *		write-behind table of the database.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "capture.h"
#include "drain.h"
#include "wb_internal.h"
#include "xact_step.h"

/* per-table schedule, kept across rounds */
typedef struct Schedule
{
	Oid			relid;
	TimestampTz next;
	int			failures;		/* consecutive failed rounds, for backoff */
} Schedule;

#define MAX_SCHEDULE 256
static Schedule schedule[MAX_SCHEDULE];
static int	nschedule = 0;

static Schedule *
schedule_for(Oid relid)
{
	for (int i = 0; i < nschedule; i++)
		if (schedule[i].relid == relid)
			return &schedule[i];
	if (nschedule == MAX_SCHEDULE)
		nschedule = 0;			/* forget: everything becomes due */
	schedule[nschedule].relid = relid;
	schedule[nschedule].next = 0;
	schedule[nschedule].failures = 0;
	return &schedule[nschedule++];
}

/* ----------------------------------------------------------------
 * Eviction guard
 *
 * Redis is the only copy of write-behind data until it is drained, and
 * counters depend on the {K}:rs_seeded marker: under a policy that can evict
 * keys without a TTL (allkeys-*) an evicted key loses writes and an evicted
 * marker makes a drain add a counter twice.  Like job queues built on Redis,
 * the drain requires a policy that cannot evict them: noeviction, a
 * volatile-* policy (write-behind keys have no TTL), or no maxmemory.  The
 * policy is read with INFO memory (CONFIG GET when INFO is unavailable) when
 * the worker connects and every few seconds; under any other policy, or when
 * neither command answers, nothing is claimed, and the reason is in the log
 * and in last_error of redis_sync.stats.
 * ---------------------------------------------------------------- */

#define EVICTION_CHECK_MS 2000

static TimestampTz eviction_checked_at = 0;
static char *eviction_problem = NULL;	/* in TopMemoryContext; NULL: safe */
static bool eviction_logged = false;

/* value of "name:" in an INFO reply, or NULL */
static char *
info_field(const char *info, const char *name)
{
	size_t		len = strlen(name);
	const char *p = info;

	while (p && *p)
	{
		if (strncmp(p, name, len) == 0 && p[len] == ':')
		{
			const char *v = p + len + 1;
			size_t		n = strcspn(v, "\r\n");

			return pnstrdup(v, n);
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NULL;
}

/* NULL when write-behind keys cannot be evicted, else why not */
static char *
eviction_policy_problem(void)
{
	RedisPipeline *p = redis_pipeline_create();
	const char *info[2] = {"INFO", "memory"};
	const char *cfg1[3] = {"CONFIG", "GET", "maxmemory-policy"};
	const char *cfg2[3] = {"CONFIG", "GET", "maxmemory"};
	RedisValue *v;
	char	   *policy = NULL;
	char	   *maxmemory = NULL;

	redis_pipeline_append(p, 2, info, NULL);
	redis_pipeline_append(p, 3, cfg1, NULL);
	redis_pipeline_append(p, 3, cfg2, NULL);
	redis_pipeline_exec(p);
	v = redis_pipeline_reply(p, 0);
	if (v->type == RV_STRING && v->str)
	{
		policy = info_field(v->str, "maxmemory_policy");
		maxmemory = info_field(v->str, "maxmemory");
	}

	/*
	 * servers that hide INFO fields: CONFIG GET (renamed or forbidden on
	 * some)
	 */
	v = redis_pipeline_reply(p, 1);
	if (policy == NULL && v->type == RV_ARRAY && v->nelem == 2 && v->elems[1].str)
		policy = pstrdup(v->elems[1].str);
	v = redis_pipeline_reply(p, 2);
	if (maxmemory == NULL && v->type == RV_ARRAY && v->nelem == 2 && v->elems[1].str)
		maxmemory = pstrdup(v->elems[1].str);
	redis_pipeline_free(p);

	if (policy == NULL)
		return pstrdup("write-behind drain refused: cannot read Redis's maxmemory-policy "
					   "(INFO memory and CONFIG GET both failed); write-behind needs a policy "
					   "that cannot evict its keys (noeviction or volatile-*)");
	if (strncmp(policy, "allkeys-", 8) == 0 && maxmemory != NULL && strcmp(maxmemory, "0") != 0)
		return psprintf("write-behind drain refused: Redis maxmemory-policy is %s, which can evict "
						"write-behind keys and their markers (lost writes, counters added twice); "
						"use noeviction or a volatile-* policy", policy);
	return NULL;
}

/* true when draining is allowed; re-reads the policy every few seconds */
static bool
eviction_check(void)
{
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext outer = CurrentMemoryContext;

	if (eviction_checked_at != 0 &&
		!TimestampDifferenceExceeds(eviction_checked_at, now, EVICTION_CHECK_MS))
		return eviction_problem == NULL;
	PG_TRY();
	{
		char	   *problem = eviction_policy_problem();

		if (eviction_problem)
			pfree(eviction_problem);
		eviction_problem = problem ? MemoryContextStrdup(TopMemoryContext, problem) : NULL;
		eviction_checked_at = now;
	}
	PG_CATCH();
	{
		/* Redis unreachable: the claims report it; keep the last verdict */
		MemoryContextSwitchTo(outer);
		FlushErrorState();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(outer);
	if (eviction_problem && !eviction_logged)
		ereport(LOG,
				(errmsg("redis_sync worker: %s", eviction_problem),
				 errhint("Set maxmemory-policy to noeviction (CONFIG SET maxmemory-policy noeviction); draining resumes by itself.")));
	else if (eviction_problem == NULL && eviction_logged)
		ereport(LOG, (errmsg("redis_sync worker: Redis maxmemory-policy allows write-behind again, draining resumes")));
	eviction_logged = eviction_problem != NULL;
	return eviction_problem == NULL;
}

/* every table is refused while the eviction policy is unsafe */
static void
refuse_all(List *tables, int *failed)
{
	ListCell   *lc;

	StartTransactionCommand();
	foreach(lc, tables)
	{
		WbTable    *t = lfirst(lc);

		rs_stats_add(t->relid, RS_C_WB_RETRIES, 1);
		rs_stats_error(t->relid, eviction_problem);
		(*failed)++;
	}
	rs_stats_flush();
	CommitTransactionCommand();
}

/*
 * Drain one table: the leftovers of a crash first, then (unless
 * recover_only) the dirty set, batch after batch until a short batch or the
 * deadline.  Adds the rows applied to *total (as it goes: a later batch
 * may fail).
 */
static void
drain_table(WbTable *t, bool recover_only, TimestampTz deadline, MemoryContext outer,
			int64 *total)
{
	int64		applied;
	int			claimed;

	do
	{
		claimed = wb_drain_batch(t, true, &applied);
		MemoryContextSwitchTo(outer);
		*total += applied;
	} while (claimed == t->batch && (deadline == 0 || GetCurrentTimestamp() < deadline));
	while (!recover_only)
	{
		claimed = wb_drain_batch(t, false, &applied);
		MemoryContextSwitchTo(outer);
		*total += applied;
		CHECK_FOR_INTERRUPTS();
		if (claimed < t->batch || (deadline != 0 && GetCurrentTimestamp() >= deadline))
			break;
	}
}

/*
 * A table's drain failed: the batch is rolled back (its members stay in the
 * processing set and are drained first next time), counted, logged, and
 * the table backs off.
 */
static void
table_failed(WbTable *t, Schedule *s, MemoryContext outer)
{
	ErrorData  *ed;
	int64		backoff;
	bool		timed_out = wb_drain_timeout_expired();

	wb_drain_timeout_disarm();
	MemoryContextSwitchTo(outer);
	ed = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	MemoryContextSwitchTo(outer);
	rs_capture_suppress(InvalidOid, NULL);
	if (ed->sqlerrcode == ERRCODE_QUERY_CANCELED && timed_out)
		ed->message = psprintf("a batch took longer than redis_sync.drain_timeout (%d ms) and was cancelled",
							   rs_drain_timeout_ms);
	s->failures++;
	backoff = Min((int64) t->interval_ms << Min(s->failures, 16), (int64) rs_retry_max_backoff_ms);
	s->next = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), Max(backoff, 100));
	ereport(LOG,
			(errmsg("redis_sync worker: draining %s failed, retrying in %lld ms: %s",
					t->qname, (long long) backoff, ed->message)));
	StartTransactionCommand();
	rs_stats_add(t->relid, RS_C_WB_RETRIES, 1);
	rs_stats_error(t->relid, ed->message);
	rs_stats_flush();
	CommitTransactionCommand();
	MemoryContextSwitchTo(outer);
	FreeErrorData(ed);
}

int64
rs_drain_round(bool force, TimestampTz deadline, TimestampTz *next_due, int *failed)
{
	List	   *tables;
	ListCell   *lc;
	int64		total = 0;
	MemoryContext outer = CurrentMemoryContext;

	*next_due = 0;
	*failed = 0;
	rs_xact_begin(NULL);
	tables = wb_tables_cached();
	rs_xact_commit(outer);

	/* nothing is claimed under a policy that can evict write-behind keys */
	if (tables != NIL && !eviction_check())
	{
		refuse_all(tables, failed);
		MemoryContextSwitchTo(outer);
		*next_due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), EVICTION_CHECK_MS);
		return 0;
	}

	foreach(lc, tables)
	{
		WbTable    *t = lfirst(lc);
		Schedule   *s = schedule_for(t->relid);
		TimestampTz now = GetCurrentTimestamp();

		/* first sight (worker start, new table): only crash leftovers now */
		bool		recover_only = !force && s->next == 0;

		if (!force && !recover_only && s->next > now)
		{
			if (*next_due == 0 || s->next < *next_due)
				*next_due = s->next;
			continue;
		}
		pgstat_report_activity(STATE_RUNNING, "redis_sync: draining write-behind keys");

		/*
		 * One table's failure (Redis down, a serialization failure, a lock
		 * timeout) must not hold up the others.
		 */
		PG_TRY();
		{
			drain_table(t, recover_only, deadline, outer, &total);
			s->failures = 0;
			s->next = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), t->interval_ms);
		}
		PG_CATCH();
		{
			table_failed(t, s, outer);
			(*failed)++;
		}
		PG_END_TRY();
		if (*next_due == 0 || s->next < *next_due)
			*next_due = s->next;
	}
	return total;
}
