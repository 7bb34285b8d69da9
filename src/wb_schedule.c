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
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "capture.h"
#include "drain.h"
#include "wb_internal.h"
#include "xact_step.h"

/* per-table schedule, kept across rounds (a hash table: no limit on tables) */
typedef struct Schedule
{
	Oid			relid;			/* hash key */
	TimestampTz next;
	int			failures;		/* consecutive failed rounds, for backoff */
	TimestampTz hold;			/* after a drain_timeout: not before, not even
								 * for flush() */
	uint64		seen;			/* the last round that listed the table */
} Schedule;

static HTAB *schedules = NULL;
static uint64 schedule_round = 0;

static Schedule *
schedule_for(Oid relid)
{
	Schedule   *s;
	bool		found;

	if (schedules == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(Schedule);
		schedules = hash_create("redis_sync write-behind schedule", 256, &ctl,
								HASH_ELEM | HASH_BLOBS);
	}
	s = hash_search(schedules, &relid, HASH_ENTER, &found);
	if (!found)
	{
		s->next = 0;
		s->failures = 0;
		s->hold = 0;
	}
	s->seen = schedule_round;
	return s;
}

/* forget the tables no longer write-behind (when they are many) */
static void
schedule_prune(int ntables)
{
	HASH_SEQ_STATUS it;
	Schedule   *s;

	if (schedules == NULL || hash_get_num_entries(schedules) <= 2 * (long) ntables + 64)
		return;
	hash_seq_init(&it, schedules);
	while ((s = hash_seq_search(&it)) != NULL)
		if (s->seen != schedule_round)
			(void) hash_search(schedules, &s->relid, HASH_REMOVE, NULL);
}

/*
 * Which of the due tables have anything to drain?  One pipeline for all of
 * them: EXISTS of the dirty set and its processing set (one slot, so one
 * command on a cluster too).  An idle worker with a thousand write-behind
 * tables thus makes one round trip per flush_interval instead of two per
 * table (issue 18: 2.6% of a core for 300 tables, polled one by one).
 * busy[i] for due[i]; on any failure every table counts as busy, and the
 * claims report the error.
 */
static void
poll_due(WbTable **due, int n, bool *busy)
{
	MemoryContext outer = CurrentMemoryContext;
	RedisPipeline *p = NULL;

	for (int i = 0; i < n; i++)
		busy[i] = true;
	if (n == 0)
		return;
	PG_TRY();
	{
		p = redis_pipeline_create();
		for (int i = 0; i < n; i++)
		{
			const char *argv[3] = {"EXISTS", due[i]->dirty, due[i]->processing};

			redis_pipeline_append(p, 3, argv, NULL);
		}
		redis_pipeline_exec(p);
		for (int i = 0; i < n; i++)
		{
			RedisValue *v = redis_pipeline_reply(p, i);

			busy[i] = !(v->type == RV_INTEGER && v->integer == 0);
		}
		redis_pipeline_free(p);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(outer);
		FlushErrorState();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(outer);
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

/* the deadline of the round under way (0: none; the final round's) */
static TimestampTz round_deadline = 0;

int
rs_drain_step_ms(void)
{
	long		left;

	if (round_deadline == 0)
		return rs_drain_timeout_ms;
	left = Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), round_deadline), 1);
	return rs_drain_timeout_ms > 0 ? (int) Min(left, (long) rs_drain_timeout_ms) : (int) left;
}

bool
rs_drain_go_on(TimestampTz deadline)
{
	return (deadline == 0 || GetCurrentTimestamp() < deadline) && !rs_worker_stopping();
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
	} while (claimed > 0 && claimed == t->claim_asked && rs_drain_go_on(deadline));
	if (!recover_only && rs_drain_go_on(deadline))
	{
		wb_drain_overlapped(t, deadline, total);
		MemoryContextSwitchTo(outer);
	}
}

/*
 * A table's drain failed: the batch is rolled back (its members stay in the
 * processing set and are drained first next time), counted, logged, and
 * the table backs off.  False: not a failure (a batch cancelled at
 * shutdown or at the final round's deadline), the round is cut short and
 * answers no flush().
 */
static bool
table_failed(WbTable *t, Schedule *s, MemoryContext outer)
{
	int64		ran = rs_step_elapsed_ms(); /* the failed batch's, before the
											 * catch disarms */
	bool		timed_out;
	ErrorData  *ed = rs_step_catch(outer, "a batch",
								   round_deadline != 0 ? "the time left of redis_sync.shutdown_drain_timeout" :
								   "redis_sync.drain_timeout", &timed_out);
	int64		backoff;
	int64		held;
	const char *reason = ed->message;

	rs_capture_suppress(InvalidOid, NULL);

	/*
	 * Cancelled at shutdown, or at the final round's deadline: not a failure
	 * of the table (no backoff, no retry nor error counted); the final round
	 * takes it up, or the next worker
	 */
	if (rs_step_stopped_at_shutdown(ed) || (timed_out && round_deadline != 0))
	{
		ereport(LOG,
				(errmsg("redis_sync worker: draining %s stopped: %s", t->qname, ed->message)));
		MemoryContextSwitchTo(outer);
		FreeErrorData(ed);
		return false;
	}
	s->failures++;
	backoff = Min((int64) t->interval_ms << Min(s->failures, 16), (int64) rs_retry_max_backoff_ms);

	/*
	 * A batch that ran into drain_timeout held the worker (and with it every
	 * other table's delivery and drain) that long: the table waits ten times
	 * the timeout at least, flush() or not, so that a table whose code blocks
	 * (a trigger, a lock its owner holds) holds the worker a small part of
	 * the time only.  So does a batch that failed otherwise after running
	 * long, ten times what it ran: a trigger that sleeps a little less than
	 * the timeout and then raises an error the drain retries (a serialization
	 * failure, a lock not available) was retried after the usual backoff
	 * (retry_max_backoff, 2 s) and held the worker nearly all the time
	 * (tests/t/292).
	 */
	held = Min(timed_out ? (int64) rs_drain_timeout_ms * 10 : ran * 10, (int64) 3600 * 1000);
	backoff = Max(backoff, held);
	s->next = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), Max(backoff, 100));
	s->hold = held >= backoff ? s->next : 0;

	/*
	 * The DETAIL goes with it: for an error Redis returned (a correction
	 * refused with "OOM command not allowed" while Redis is full), the
	 * message only says that Redis returned one, and the log and last_error
	 * (which flush() shows) had no reason
	 * (tests/t/343_wb_counters_redis_full)
	 */
	if (ed->detail)
		reason = psprintf("%s: %s", ed->message, ed->detail);
	ereport(LOG,
			(errmsg("redis_sync worker: draining %s failed, retrying in %lld ms: %s",
					t->qname, (long long) backoff, reason)));
	StartTransactionCommand();

	/*
	 * Its code went on after the cancel: every other table of its owner waits
	 * too.  Held per table, an owner of a few tables whose code catches the
	 * cancel kept the worker busy most of the time (tests/t/299).  Not for a
	 * plain timeout: a role allowed to lock one table (UPDATE on it) then
	 * held all its owner's tables, for good, as the table ran again at the
	 * hold's end (tests/t/301).
	 */
	if (s->hold != 0)
		rs_step_hold_owner(t->owner, held);
	rs_stats_add(t->relid, RS_C_WB_RETRIES, 1);
	rs_stats_error(t->relid, reason);
	rs_stats_flush();
	CommitTransactionCommand();
	MemoryContextSwitchTo(outer);
	FreeErrorData(ed);
	return true;
}

/*
 * The end of one table's drain in a round without a deadline (the final
 * round at shutdown has one, which bounds it whole): drain_timeout after it
 * began.  Each batch is bounded by drain_timeout, but a table drained batch
 * after batch until a short one: a table whose code (its owner's triggers,
 * a type's function) takes a little less than the timeout per batch, or any
 * large backlog, held the worker, and every other table's delivery and
 * drain, for as many batches as its dirty set holds (tests/t/289).  Stopped
 * there, it goes on in the next round, after the outbox is delivered; the
 * batches it had claimed are still applied, so a table holds a round for
 * three times the timeout at most.
 */
static TimestampTz
table_deadline(TimestampTz started, TimestampTz deadline)
{
	if (deadline != 0 || rs_drain_timeout_ms <= 0)
		return deadline;
	return TimestampTzPlusMilliseconds(started, rs_drain_timeout_ms);
}

/* *next_due: the earliest of the times it was and next (0: none yet) */
static void
note_next(TimestampTz *next_due, TimestampTz next)
{
	if (*next_due == 0 || next < *next_due)
		*next_due = next;
}

/*
 * The tables of a round that are due now (with force, all but those held
 * back after a failure); the time the others are due is noted in *next_due.
 */
static WbTable **
due_tables(List *tables, bool force, TimestampTz now, TimestampTz *next_due, int *ndue)
{
	WbTable   **due = palloc(sizeof(WbTable *) * Max(list_length(tables), 1));
	ListCell   *lc;

	*ndue = 0;
	foreach(lc, tables)
	{
		WbTable    *t = lfirst(lc);
		Schedule   *s = schedule_for(t->relid);

		/* first sight (worker start, new table): only crash leftovers now */
		bool		recover_only = !force && s->next == 0;

		if ((!force && !recover_only && s->next > now) || s->hold > now)
		{
			note_next(next_due, s->next);
			continue;
		}
		due[(*ndue)++] = t;
	}
	return due;
}

/*
 * Drain one due table that has work.  One table's failure (Redis down, a
 * serialization failure, a lock timeout) must not hold up the others: it is
 * counted in *failed and the table backs off (table_failed).
 */
static void
drain_due(WbTable *t, Schedule *s, bool recover_only, TimestampTz deadline,
		  MemoryContext outer, int64 *total, int *failed, bool *cut_short)
{
	TimestampTz started = GetCurrentTimestamp();

	pgstat_report_activity(STATE_RUNNING, "redis_sync: draining write-behind keys");
	PG_TRY();
	{
		TimestampTz end = table_deadline(started, deadline);

		drain_table(t, recover_only, end, outer, total);

		/*
		 * stopped by drain_timeout, the final round's deadline or a SIGTERM,
		 * not by a short batch: maybe more
		 */
		if (!rs_drain_go_on(end))
			*cut_short = true;
		s->failures = 0;
		s->hold = 0;

		/*
		 * flush_interval from the start of this drain, not its end: a key
		 * made dirty just after the drain passed it waits one interval, not
		 * one interval plus the drain (issue 18: the lag p99 at 5,000
		 * writes/s exceeded the interval by the drain's time).  A drain
		 * longer than the interval is followed by the next one at once.
		 */
		s->next = TimestampTzPlusMilliseconds(started, t->interval_ms);
	}
	PG_CATCH();
	{
		if (table_failed(t, s, outer))
			(*failed)++;
		else
			*cut_short = true;	/* cancelled at shutdown: not drained */
	}
	PG_END_TRY();
}

int64
rs_drain_round(bool force, TimestampTz deadline, TimestampTz *next_due, int *failed,
			   bool *cut_short)
{
	List	   *tables;
	int64		total = 0;
	MemoryContext outer = CurrentMemoryContext;
	TimestampTz now = GetCurrentTimestamp();
	WbTable   **due;
	bool	   *busy;
	int			ndue;

	*next_due = 0;
	*failed = 0;
	*cut_short = false;
	round_deadline = deadline;
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

	/* the due tables, then one round trip to learn which have work */
	schedule_round++;
	due = due_tables(tables, force, now, next_due, &ndue);
	schedule_prune(list_length(tables));
	busy = palloc(sizeof(bool) * Max(ndue, 1));
	poll_due(due, ndue, busy);

	for (int i = 0; i < ndue; i++)
	{
		WbTable    *t = due[i];
		Schedule   *s = schedule_for(t->relid);

		/*
		 * At shutdown, stop before the next table: the round under way when
		 * the SIGTERM came (the final round follows), and the final round at
		 * its deadline.  Each due table ran a batch before, past
		 * shutdown_drain_timeout.
		 */
		if (busy[i] && !rs_drain_go_on(deadline))
		{
			*cut_short = true;
			note_next(next_due, s->next);
			continue;
		}
		if (busy[i])
			drain_due(t, s, !force && s->next == 0, deadline, outer,
					  &total, failed, cut_short);
		else
		{
			/* nothing dirty, nothing left by a crash */
			s->failures = 0;
			s->next = TimestampTzPlusMilliseconds(now, t->interval_ms);
		}
		note_next(next_due, s->next);
	}
	return total;
}
