/*-------------------------------------------------------------------------
 *
 * wb_overlap.c
 *		The overlapped write-behind drain: batches of one table flow through
 *		claim, read, apply and acknowledge with Redis and PostgreSQL working
 *		at the same time (the steps of one batch are drain.c's).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "drain.h"
#include "wb_internal.h"

/* ----------------------------------------------------------------
 * The overlapped drain
 *
 * Redis and PostgreSQL work at the same time: while batch A is applied
 * and committed, Redis already acknowledges the batch before it (X),
 * reads the values of the next one (B) and claims the one after (C), all
 * in one pipeline sent before A's transaction begins and read after it
 * commits (redis_pipeline_send/receive).  Of B's values, that pipeline
 * reads as many as wait unread safely (drain.c's read pages); the rest are
 * read after A's commit.  A member can be in several
 * batches at once (made dirty again and claimed again before the first
 * batch was acknowledged); the processing set holds it once, so X's
 * acknowledgement leaves out every member that A or B (the batches
 * claimed and not yet acknowledged) also hold: the last batch holding a
 * member removes it.  The acknowledgement runs in Redis before C's claim
 * (same pipeline, in order), so C's claim of a member X held moves it
 * back into the processing set after X's SREM.  If anything fails
 * (the apply, Redis, the worker), the members of X, A, B and C are all
 * still in the processing set and are recovered, as after a crash.
 * ---------------------------------------------------------------- */

static Batch *
batch_new(WbTable *t, MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "redis_sync write-behind batch",
											  ALLOCSET_DEFAULT_SIZES);
	Batch	   *b = MemoryContextAllocZero(cxt, sizeof(Batch));

	b->cxt = cxt;
	b->t = t;
	b->started = GetCurrentTimestamp();
	return b;
}

/* b's members: a copy of the claim's reply i of p (p may go first) */
static void
batch_set_members(Batch *b, RedisPipeline *p, int i)
{
	RedisValue *r;
	MemoryContext old;
	int			n;

	r = wb_claim_reply_members(b->t, p, i, false);
	n = r->type == RV_ARRAY ? r->nelem : 0;
	old = MemoryContextSwitchTo(b->cxt);
	b->members = palloc0(sizeof(RedisValue));
	b->members->type = RV_ARRAY;
	b->members->nelem = n;
	b->members->elems = palloc0(sizeof(RedisValue) * Max(n, 1));
	for (int k = 0; k < n; k++)
	{
		RedisValue *m = &b->members->elems[k];

		m->type = RV_STRING;
		m->len = r->elems[k].len;
		m->str = palloc(m->len + 1);
		memcpy(m->str, r->elems[k].str, m->len);
		m->str[m->len] = '\0';
	}
	b->nm = n;
	b->rd = wb_reads_begin(b->t, b->members, b);
	/* p has just been read: the connection b was claimed on */
	wb_batch_read_on(b);
	MemoryContextSwitchTo(old);
	/* claimed afresh: a new drain of each member, counted */
	for (int k = 0; k < n; k++)
		wb_unacked_set(b->t, &b->members->elems[k], false);
}

/*
 * decode b from its values: the first page of its reads has just run (in a
 * pipeline in b's memory), the others are read now (each checked to come
 * from the Redis process b was claimed on, wb_reads_collect)
 */
static void
batch_decode(Batch *b)
{
	MemoryContext old = MemoryContextSwitchTo(b->cxt);
	RedisValue *r;

	wb_reads_collect(b->t, b->rd);
	wb_reads_finish(b->t, b->rd);
	r = wb_reads_result(b->t, b->rd);

	b->ms = palloc0(sizeof(Member) * Max(b->nm, 1));
	b->abs_idx = palloc(sizeof(int) * Max(b->nm, 1));
	b->inc_idx = palloc(sizeof(int) * Max(b->nm, 1));
	b->del_idx = palloc(sizeof(int) * Max(b->nm, 1));
	for (int i = 0; i < b->nm; i++)
		wb_sort_member(b, r, i);
	rs_stats_add(b->t->relid, RS_C_CLAIMED, b->nm);
	rs_stats_add(b->t->relid, RS_C_UNKNOWN_FIELDS, b->unknown);
	MemoryContextSwitchTo(old);
}

/*
 * The members held by batches a and b, as an open-addressing hash set (a
 * sort and a binary search per member cost the worker 3-4% of a drain's
 * CPU in issue 18's profile).
 */
typedef struct HeldSet
{
	RedisValue **slot;
	uint32		mask;
} HeldSet;

static uint32
member_hash(const RedisValue *m)
{
	return hash_bytes((const unsigned char *) m->str, (int) m->len);
}

static bool
member_eq(const RedisValue *x, const RedisValue *y)
{
	return x->len == y->len && memcmp(x->str, y->str, x->len) == 0;
}

static void
held_add(HeldSet *h, Batch *b)
{
	for (int i = 0; b && i < b->nm; i++)
	{
		RedisValue *m = &b->members->elems[i];
		uint32		k = member_hash(m) & h->mask;

		while (h->slot[k] != NULL && !member_eq(h->slot[k], m))
			k = (k + 1) & h->mask;
		h->slot[k] = m;
	}
}

static bool
held_contains(const HeldSet *h, const RedisValue *m)
{
	uint32		k = member_hash(m) & h->mask;

	while (h->slot[k] != NULL)
	{
		if (member_eq(h->slot[k], m))
			return true;
		k = (k + 1) & h->mask;
	}
	return false;
}

/* the set of the members batches a and b hold (either may be NULL); their count */
static int
held_build(HeldSet *h, Batch *a, Batch *b)
{
	int			nh = (a ? a->nm : 0) + (b ? b->nm : 0);
	uint32		size = 16;

	while (size < (uint32) nh * 2)
		size <<= 1;
	h->slot = palloc0(sizeof(RedisValue *) * size);
	h->mask = size - 1;
	held_add(h, a);
	held_add(h, b);
	return nh;
}

/*
 * Queue x's acknowledgement on p: SREM of its members from the processing
 * set, but for those batches a and b (claimed, not acknowledged; either
 * may be NULL) also hold.
 */
static void
append_ack(RedisPipeline *p, Batch *x, Batch *a, Batch *b)
{
	HeldSet		held;
	int			nh = held_build(&held, a, b);
	const char **argv = palloc(sizeof(char *) * (x->nm + 2));
	size_t	   *argvlen = palloc(sizeof(size_t) * (x->nm + 2));
	int			n = 2;

	argv[0] = "SREM";
	argvlen[0] = 4;
	argv[1] = x->t->processing;
	argvlen[1] = strlen(x->t->processing);
	for (int i = 0; i < x->nm; i++)
	{
		RedisValue *m = &x->members->elems[i];

		if (nh > 0 && held_contains(&held, m))
			continue;
		argv[n] = m->str;
		argvlen[n++] = m->len;
	}
	if (n > 2)
		redis_pipeline_append(p, n, argv, argvlen);
	pfree(held.slot);
	pfree(argv);
	pfree(argvlen);
}

/*
 * x's members but for those batches a and b (claimed afresh, not
 * acknowledged; either may be NULL) also hold, for wb_unacked_set(): x just
 * committed, or was just acknowledged (append_ack() left those out)
 */
static void
unacked_mark(Batch *x, Batch *a, Batch *b, bool committed)
{
	HeldSet		held;
	int			nh = held_build(&held, a, b);

	for (int i = 0; i < x->nm; i++)
		if (nh == 0 || !held_contains(&held, &x->members->elems[i]))
			wb_unacked_set(x->t, &x->members->elems[i], committed);
	pfree(held.slot);
}

/*
 * The first batch: its claim, then its reads together with the next
 * batch's claim (*bp, when the first was full).  NULL: nothing to drain.
 */
static Batch *
overlap_first(WbTable *t, TimestampTz deadline, MemoryContext outer, Batch **bp,
			  bool *claiming)
{
	Batch	   *a,
			   *b = NULL;
	RedisPipeline *p;
	RedisFailure f;
	int			claim_at = 0;

	/* the first batch: its claim, then its reads with the next claim */
	a = batch_new(t, outer);
	MemoryContextSwitchTo(a->cxt);
	p = redis_pipeline_create();
	wb_append_claim(p, t, false);
	wb_claim_exec(p, t);
	batch_set_members(a, p, 0);
	redis_pipeline_free(p);
	if (a->nm == 0)
	{
		MemoryContextSwitchTo(outer);
		MemoryContextDelete(a->cxt);
		return NULL;
	}
	*claiming = a->nm >= t->claim_asked && rs_drain_go_on(deadline);
	p = redis_pipeline_create();
	wb_reads_queue(p, t, a->rd, false);
	if (*claiming)
	{
		b = batch_new(t, outer);
		claim_at = redis_pipeline_length(p);
		wb_append_claim(p, t, false);
	}
	if (!redis_pipeline_try_exec(p, &f))
	{
		wb_reads_failed(t, a->rd);
		if (b)
			wb_claim_failed(t, &f);
		redis_client_report(ERROR, &f);
	}
	MemoryContextSwitchTo(outer);
	batch_decode(a);
	if (b)
	{
		batch_set_members(b, p, claim_at);
		*claiming = b->nm >= t->claim_asked;
	}
	*bp = b;
	return a;
}

/*
 * Drain the dirty set of t, batch after batch, until a short batch or the
 * deadline (then the batches already claimed are still applied), with
 * Redis's work for the batches around each one overlapped with its apply
 * (see above).  Adds the rows applied to *total as it goes.
 */
void
wb_drain_overlapped(WbTable *t, TimestampTz deadline, int64 *total)
{
	MemoryContext outer = CurrentMemoryContext;
	Batch	   *x = NULL,
			   *a,
			   *b = NULL;
	RedisPipeline *p;
	RedisFailure f;
	bool		claiming;
	int			claim_at = 0;

	a = overlap_first(t, deadline, outer, &b, &claiming);
	if (a == NULL)
		return;

	while (a != NULL)
	{
		Batch	   *c = NULL;

		if (b && b->nm == 0)
		{
			MemoryContextDelete(b->cxt);
			b = NULL;
		}

		/*
		 * one pipeline: ack X, read B, claim C; sent now, read after A
		 * commits
		 */
		MemoryContextSwitchTo(b ? b->cxt : outer);
		p = redis_pipeline_create();
		MemoryContextSwitchTo(outer);
		if (x)
			append_ack(p, x, a, b);
		if (b)
			wb_reads_queue(p, t, b->rd, true);
		if (b && claiming && rs_drain_go_on(deadline))
		{
			c = batch_new(t, outer);
			claim_at = redis_pipeline_length(p);
			wb_append_claim(p, t, false);
		}
		redis_pipeline_send(p);

		MemoryContextSwitchTo(a->cxt);
		wb_apply_batch(a, a->started);
		MemoryContextSwitchTo(outer);
		unacked_mark(a, b, NULL, true);
		*total += a->applied;

		if (!redis_pipeline_try_receive(p, &f))
		{
			if (b)
				wb_reads_failed(t, b->rd);
			if (c)
				wb_claim_failed(t, &f);
			redis_client_report(ERROR, &f);
		}
		if (x)
		{
			/* acknowledged (but for the members a or b holds) */
			unacked_mark(x, a, b, false);
			MemoryContextDelete(x->cxt);
			x = NULL;
		}
		if (b)
			batch_decode(b);
		else
			redis_pipeline_free(p);
		if (c)
		{
			batch_set_members(c, p, claim_at);
			claiming = c->nm >= t->claim_asked;
		}
		x = a;
		a = b;
		b = c;
		CHECK_FOR_INTERRUPTS();
	}

	/* the last batch's acknowledgement */
	p = redis_pipeline_create();
	append_ack(p, x, NULL, NULL);
	if (redis_pipeline_length(p) > 0)
		redis_pipeline_exec(p);
	redis_pipeline_free(p);
	unacked_mark(x, NULL, NULL, false);
	MemoryContextDelete(x->cxt);
}
