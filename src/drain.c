/*-------------------------------------------------------------------------
 *
 * drain.c
 *		Write-behind: the worker drains Redis dirty sets into tables.
 *
 * Protocol (applications): change the cached value (a hash at
 * key_prefix || member, or a string, or a JSON string), then SADD the member
 * (the key values joined with ':') to the table's dirty set.  Values are
 * absolute state, field by field.
 *
 * The drain claims nothing under a Redis maxmemory-policy that can evict its
 * keys (see "Eviction guard").
 *
 * Each batch of a table, in its own transaction:
 *
 *	1. claim: one Lua script moves up to batch_size members from the dirty set
 *	   to the table's processing set and returns them; pipelines then
 *	   read each member's value and whether the extension seeded it, in
 *	   pages Redis may hold unread (see "Reading the claimed values").
 *	   Members left in the processing set by a crash are claimed first
 *	   (recovery, one batch at a time), so a crash between claim and
 *	   acknowledgement loses nothing.  Otherwise these Redis steps of the
 *	   neighbouring batches overlap a batch's apply (wb_drain_overlapped in
 *	   wb_overlap.c).
 *	2. apply: set-based, per set of fields present (usually one per batch):
 *	   UPDATE ... FROM unnest(...) of the rows that exist, in the present
 *	   columns only, then INSERT ... ON CONFLICT of the members it did not
 *	   update (column defaults for the rest; wb_apply.c), so an absent
 *	   field never erases a column and
 *	   a NOT NULL column outside `columns` never blocks an update.  Each
 *	   field is converted by its column type's input function (no typmod:
 *	   the assignment refuses overlong values), with the table owner's
 *	   rights; capture is suppressed for this table's keys under the drained
 *	   prefix only (the drain's own rows are not echoed back; triggers and
 *	   other policies are pushed as usual).  NULL is written only for the
 *	   NULL marker (a value of one NUL byte) or a JSON null.  If the
 *	   statement fails, the batch is retried row by row in subtransactions:
 *	   rows that fail for a permanent reason go to redis_sync.dead_letters,
 *	   the rest commit; a transient error (serialization failure, deadlock,
 *	   lock or statement timeout) aborts the batch, which is retried later.
 *	3. counters: a counter key the extension did not seed was created from
 *	   nothing after Redis lost its data.  Its value is applied as an
 *	   increment on top of the table, and before commit, still holding the
 *	   row locks, the key is corrected in Redis by HINCRBY/INCRBY of the
 *	   table's previous value and marked seeded, in one script.  Whether the
 *	   commit then succeeds or not, the next drain sees a seeded key holding
 *	   the true total, so the increment is never applied twice.
 *	4. acknowledge: after commit, SREM the members from the processing set.
 *	   A member made dirty again meanwhile is in the dirty set and is drained
 *	   next round; repeated writes to one key between rounds are one row
 *	   write.
 *
 * Only the worker drains (redis_sync.flush() asks it to and waits), so no
 * two drains of one table overlap.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "capture.h"
#include "cluster.h"
#include "drain.h"
#include "redis_client.h"
#include "reply_limit.h"
#include "rowsec.h"
#include "subxact.h"
#include "wb_internal.h"
#include "xact_step.h"

/*
 * claim: KEYS = dirty set, processing set (one slot: the processing set is
 * the dirty set's companion key); ARGV = n, recover, cursor.  Moves up to n
 * members (a few more when a hash bucket holds more) from the dirty set to
 * the processing set and returns {members, cursor} (recover: up to n
 * members already in the processing set, left by a crash, and cursor 0).
 * Their values are read by the caller, page by page (wb_reads_queue).
 *
 * The members are taken with SSCAN from the cursor the previous claim
 * returned (kept in WbTable.scan_cursor; SCAN's guarantee holds across the
 * removals), then SREM and SADD: SPOP with a count removes its members one
 * at a time and cost Redis about 10 us per member on the shared bench
 * machine (issue 18: 9.7 ms of a 1,000-member claim), SSCAN + SREM about
 * 1.  SSCAN may return a member twice: duplicates are dropped.  A claim
 * that started mid-set goes on from the start once it reaches the end, so a
 * claim returning fewer than n members (which ends the table's drain for
 * the round) has scanned the whole set: every member present throughout
 * was claimed, as flush() expects.
 */
static RedisScript claim_script = REDIS_SCRIPT("redis_sync_claim_members",
											   "local n = tonumber(ARGV[1])\n"
											   "if ARGV[2] == '1' then return {redis.call('SRANDMEMBER', KEYS[2], n), '0'} end\n"
											   "local cursor = ARGV[3]\n"
											   "local wrapped = cursor == '0'\n"
											   "local got, seen = {}, {}\n"
											   "while true do\n"
											   "  local r = redis.call('SSCAN', KEYS[1], cursor, 'COUNT', n - #got)\n"
											   "  cursor = r[1]\n"
											   "  for _, m in ipairs(r[2]) do\n"
											   "    if not seen[m] then seen[m] = true; got[#got + 1] = m end\n"
											   "  end\n"
											   "  if #got >= n then break end\n"
											   "  if cursor == '0' then\n"
											   "    if wrapped then break end\n"
											   "    wrapped = true\n"
											   "  end\n"
											   "end\n"
											   "for s = 1, #got, 1000 do\n"
											   "  local e = math.min(s + 999, #got)\n"
											   "  redis.call('SREM', KEYS[1], unpack(got, s, e))\n"
											   "  redis.call('SADD', KEYS[2], unpack(got, s, e))\n"
											   "end\n"
											   "return {got, cursor}\n");

/*
 * A cap (of a page's or a claim's members) after one more success: four
 * times larger, gone (0) once it would reach a quarter of batch_size
 */
static int
cap_relaxed(int cap, int batch)
{
	if (cap <= 0 || cap >= batch / 4)
		return 0;
	return cap * 4;
}

/*
 * The members of claim reply i of p ({members, cursor}); the cursor is
 * kept for the table's next claim.  ERROR on an error reply.  The longest
 * member sizes the next claims (claim_count), and a claim that came back
 * relaxes a cap a failed one set.
 */
RedisValue *
wb_claim_reply_members(WbTable *t, RedisPipeline *p, int i, bool recover)
{
	RedisValue *r;
	RedisValue *m;

	redis_check_reply(p, i, "a write-behind claim");
	r = redis_pipeline_reply(p, i);
	if (r->type != RV_ARRAY || r->nelem != 2 || r->elems[1].type != RV_STRING ||
		r->elems[1].str == NULL || r->elems[1].len >= sizeof(t->scan_cursor))
		elog(ERROR, "redis_sync: unexpected reply to a write-behind claim");
	if (!recover)
		memcpy(t->scan_cursor, r->elems[1].str, r->elems[1].len + 1);
	m = &r->elems[0];
	if (m->type == RV_ARRAY)
	{
		size_t		longest = 0;

		for (int k = 0; k < m->nelem; k++)
			longest = Max(longest, m->elems[k].len);

		/*
		 * a full claim is a sample of the whole set (SSCAN's order): its
		 * longest member stands for the set's; a short one (the end of the
		 * set) may not, and only raises it
		 */
		if (m->nelem >= t->claim_asked)
			t->sizes.member_largest = longest;
		else
			t->sizes.member_largest = Max(t->sizes.member_largest, longest);
		if (m->nelem > 0)
			t->sizes.claim_cap = cap_relaxed(t->sizes.claim_cap, t->batch);
	}
	return m;
}

/* ----------------------------------------------------------------
 * Reading the claimed values, page by page
 *
 * Redis closes a client whose replies wait unread beyond its
 * client-output-buffer-limit (or evicts it under maxmemory-clients).  A
 * batch's values read in one pipeline were 5 MB for 5,000 hashes of 1 kB
 * (a batch of the default size), and the overlapped drain leaves the next
 * batch's replies unread while it applies a batch: under a 1 MB limit every
 * attempt was dropped and no row was ever drained (the members went back to
 * the processing set, and the next attempt was the same;
 * tests/t/374_wb_drain_client_limit).  So a batch's values are read in
 * pages of at most WB_READ_PAGE_BYTES of replies: the first page of a batch
 * by the largest reply of the table's previous batch (one member for a
 * table whose values were never read), the next ones by the largest reply
 * of the page before.  The overlapped drain sends the first page of the next
 * batch with the apply of a batch (none when one value alone exceeds the
 * page) and reads the rest after the commit, a page per round trip.
 * Values of up to about 100 bytes (the usual ones) fit a whole batch of the
 * default size in one page.  A Redis that limits no client's replies (its
 * defaults; read_page_bytes asks) has its batches read in one page, as
 * before.
 *
 * A page that fails anyway (a few values much larger than those before
 * them) caps the table's pages at a quarter of its members, so the retries
 * get through; each batch read whole raises the cap fourfold again
 * (wb_reads_failed).  A value Redis cannot send at all (its one reply
 * passes the limit) goes to the dead letters rather than stopping the
 * table (read_unreadable).
 * ---------------------------------------------------------------- */

#define WB_READ_PAGE_BYTES (512 * 1024)

/* a value Redis closed the connection on is too large to read at this size */
#define WB_READ_HUGE_BYTES (64 * 1024)

/*
 * The bytes of replies a page may hold: none of the above is needed when
 * Redis limits no client's replies (its defaults), and paging cost a drain
 * of 1 kB values a fifth of its speed there (the reads after the commit no
 * longer overlap an apply).  reply_limit.c asks Redis: SIZE_MAX when it
 * limits nothing, else WB_READ_PAGE_BYTES or half its limit if smaller;
 * also when it does not say.
 */
static size_t
read_page_bytes(void)
{
	return rs_reply_page_bytes(WB_READ_PAGE_BYTES);
}

/*
 * A page of r failed (Redis dropped the connection, or any failure with the
 * page's replies pending): t's pages read a quarter of its members at most
 * until batches read whole relax the cap, and Redis is asked for its limits
 * again.  A page of one member sets no cap (it cannot help).
 */
void
wb_reads_failed(WbTable *t, WbReads *r)
{
	int			n = r->queued - r->done;

	rs_reply_limit_forget();
	if (n > 1)
		t->sizes.read_cap = Max(1, n / 4);
}

/* about the bytes of v on the wire: what Redis buffers until it is read */
static size_t
reply_bytes(const RedisValue *v)
{
	size_t		n = 16;

	if (v->type == RV_ARRAY)
		for (int i = 0; i < v->nelem; i++)
			n += reply_bytes(&v->elems[i]);
	else if (v->type != RV_INTEGER && v->type != RV_NIL)
		n += v->len;
	return n;
}

/* the reads of r's members from .. from + n - 1 on p, at the page's place */
static void
queue_reads(RedisPipeline *p, WbTable *t, WbReads *r, int from, int n)
{
	const char *cmd = t->format == WB_FORMAT_HASH ? "HGETALL" : "GET";
	StringInfoData key;
	size_t		plen = strlen(t->prefix);

	r->page = p;
	r->first = redis_pipeline_length(p);
	r->queued = from + n;
	if (n == 0)
		return;
	if (t->ncounters == 0)
	{
		/* the usual table: its values only, in one loop */
		redis_pipeline_append_prefixed(p, cmd, t->prefix, r->members->elems + from, n);
		return;
	}
	initStringInfo(&key);
	appendBinaryStringInfo(&key, t->prefix, plen);
	for (int i = from; i < from + n; i++)
	{
		const char *argv[2] = {cmd, NULL};
		size_t		argvlen[2];

		/* the key: the prefix, then the member (one buffer for them all) */
		key.len = plen;
		appendBinaryStringInfo(&key, r->members->elems[i].str, r->members->elems[i].len);
		argv[1] = key.data;
		argvlen[0] = strlen(cmd);
		argvlen[1] = key.len;
		redis_pipeline_append(p, 2, argv, argvlen);
		argv[0] = "EXISTS";
		argv[1] = rs_companion_key(key.data, key.len, SEED_SUFFIX);
		redis_pipeline_append(p, 2, argv, NULL);
	}
	pfree(key.data);
}

/*
 * did Redis close the connection (rather than time out, or refuse it)?  The
 * details redis_conn.c, redis_conn_many.c and redis_tls.c give: over TLS
 * a Redis that sends close_notify says so (review helper-103)
 */
static bool
closed_by_server(const RedisFailure *f)
{
	static const char *const closed[] = {
		"The server closed the connection.",
		"The server closed the TLS connection.",
		"Connection reset by peer",
		"Broken pipe",
	};

	if (f->sqlstate != ERRCODE_CONNECTION_FAILURE || f->detail == NULL)
		return false;
	for (int i = 0; i < lengthof(closed); i++)
		if (strstr(f->detail, closed[i]) != NULL)
			return true;
	return false;
}

/*
 * an error reply of a Redis not ready to answer: restarting, failing over
 * (the errors a cluster exec retries, rs_cluster_retryable_error), or busy
 * in a script
 */
static bool
not_ready_reply(const RedisValue *v)
{
	if (v == NULL || v->type != RV_ERROR || v->str == NULL)
		return false;
	return rs_cluster_retryable_error(v->str) || strncmp(v->str, "BUSY", 4) == 0;
}

/*
 * The page of one member r->done, whose read Redis answered by closing the
 * connection (*f): read it once more, on a new connection.  Closed again,
 * Redis says it limits client replies (read_page_bytes), and the key holds
 * half that limit or more (MEMORY USAGE; WB_READ_HUGE_BYTES when Redis
 * does not say its limit), it is a value Redis cannot send to this client
 * at all: its read becomes an error reply, so the member goes to the dead
 * letters, and the rest of the table drains (it held the table: claimed
 * first by every recovery and failing it).  True when the page is settled
 * (read, or the error set); false with *f the failure to raise.  A retry
 * Redis answers "not ready" (LOADING after a restart, say) is a failure,
 * not a value.
 */
static bool
read_unreadable(WbTable *t, WbReads *r, RedisFailure *f)
{
	int			i = r->done;
	RedisPipeline *p = redis_pipeline_create();
	RedisValue *err;
	RedisValue *u;
	StringInfoData key;
	const char *argv[5];
	size_t		argvlen[5];
	size_t		threshold;

	queue_reads(p, t, r, i, 1);
	if (redis_pipeline_try_exec(p, f))
	{
		RedisValue *v = redis_pipeline_reply(p, r->first);

		if (!not_ready_reply(v))
			return true;		/* read: collected as usual */
		redis_failure_set(f, ERRCODE_CONNECTION_FAILURE,
						  psprintf("Redis at %s is not ready to answer", redis_server_display()),
						  pstrdup(v->str));
		return false;
	}
	if (!closed_by_server(f))
		return false;

	/* does Redis limit client replies at all, and at what? */
	if (read_page_bytes() == SIZE_MAX)
		return false;
	threshold = rs_reply_limit_bytes() > 0 ? rs_reply_limit_bytes() / 2 : WB_READ_HUGE_BYTES;

	/* the key, with its length (a member may hold any byte) */
	initStringInfo(&key);
	appendStringInfoString(&key, t->prefix);
	appendBinaryStringInfo(&key, r->members->elems[i].str, r->members->elems[i].len);
	argv[0] = "MEMORY";
	argv[1] = "USAGE";
	argv[2] = key.data;
	argv[3] = "SAMPLES";
	argv[4] = "0";
	for (int k = 0; k < 5; k++)
		argvlen[k] = k == 2 ? (size_t) key.len : strlen(argv[k]);
	p = redis_pipeline_create();
	redis_pipeline_append(p, 5, argv, argvlen);
	{
		RedisFailure f2;

		if (!redis_pipeline_try_exec(p, &f2))
			return false;
	}
	u = redis_pipeline_reply(p, 0);
	if (u->type != RV_INTEGER || u->integer < 0 || (size_t) u->integer < threshold)
		return false;
	err = palloc0(sizeof(RedisValue));
	err->type = RV_ERROR;
	err->str = psprintf("Redis closed the connection at each of two reads of the key (%lld bytes by MEMORY USAGE): "
						"its reply is larger than Redis lets a client's replies wait "
						"(client-output-buffer-limit normal, maxmemory-clients)",
						(long long) u->integer);
	err->len = strlen(err->str);
	/* (the key is not logged: its bytes may not be valid text) */
	ereport(LOG,
			(errmsg("redis_sync worker: a value of %s is too large for Redis to send; its member goes to the dead letters",
					t->qname)));
	r->vals[i] = err;
	if (r->seeds)
	{
		r->seeds[i] = palloc0(sizeof(RedisValue));
		r->seeds[i]->type = RV_INTEGER;
	}
	r->done = r->queued;
	r->page = NULL;
	return true;
}

/* run page p of r (queued by wb_reads_queue); collected by the caller */
static void
reads_exec(WbTable *t, WbReads *r, RedisPipeline *p)
{
	RedisFailure f;

	if (redis_pipeline_try_exec(p, &f))
		return;
	if (r->queued - r->done == 1 && closed_by_server(&f) && read_unreadable(t, r, &f))
		return;
	wb_reads_failed(t, r);
	redis_client_report(ERROR, &f);
}

/* the reads of members (a claim's reply), none queued yet; b: its batch */
WbReads *
wb_reads_begin(WbTable *t, RedisValue *members, Batch *b)
{
	WbReads    *r = palloc0(sizeof(WbReads));

	r->members = members;
	r->nm = members->type == RV_ARRAY ? members->nelem : 0;
	r->vals = palloc0(sizeof(RedisValue *) * Max(r->nm, 1));
	if (t->ncounters > 0)
		r->seeds = palloc0(sizeof(RedisValue *) * Max(r->nm, 1));
	r->batch = b;
	return r;
}

/*
 * How many of r's members the next page reads: as many as
 * WB_READ_PAGE_BYTES holds at the largest reply of the page before (of the
 * previous batch for the first page), one at least (overlapped: none; the
 * page's replies then wait unread through an apply).  By the page before,
 * not the largest of the batch so far: one value of 600 kB made every
 * later page of the batch, and of the next batch, one member of 100 bytes
 * (5,000 round trips and 5,000 pipelines of 8 kB for the batch, review
 * helper-102).
 */
static int
read_page_members(WbTable *t, WbReads *r, bool overlapped)
{
	size_t		largest = r->last_largest > 0 ? r->last_largest : t->sizes.read_largest;
	int			left = r->nm - r->queued;
	size_t		budget = left > 0 ? read_page_bytes() : 0;
	size_t		n;

	if (budget == SIZE_MAX)
		n = left;				/* Redis limits no client: one page */
	else if (largest == 0)
		n = overlapped ? 0 : 1;
	else
	{
		n = budget / largest;
		if (!overlapped)
			n = Max(n, 1);
	}
	if (t->sizes.read_cap > 0)
		n = Min(n, (size_t) t->sizes.read_cap);
	return (int) Min((size_t) left, n);
}

/*
 * Queue the reads of r's next page on p (overlapped: a page that waits
 * unread through an apply, possibly empty) -- on a cluster over every node,
 * the members' keys being in other slots than the sets -- with, for tables
 * with counters, whether the extension seeded each key.  Collected by
 * wb_reads_collect once p has run.  A member changed again between the
 * claim and the read is also back in the dirty set: the newer value is
 * applied now and again next round (values are absolute state; counters
 * are corrected from the value read).
 */
void
wb_reads_queue(RedisPipeline *p, WbTable *t, WbReads *r, bool overlapped)
{
	queue_reads(p, t, r, r->queued, read_page_members(t, r, overlapped));
}

/* note the replies of the page queued last (its pipeline has run) */
void
wb_reads_collect(WbTable *t, WbReads *r)
{
	bool		seeds = r->seeds != NULL;
	size_t		page_largest = 0;

	for (int i = r->done; i < r->queued; i++)
	{
		int			k = r->first + (seeds ? 2 : 1) * (i - r->done);

		r->vals[i] = redis_pipeline_reply(r->page, k);
		if (seeds)
			r->seeds[i] = redis_pipeline_reply(r->page, k + 1);
		page_largest = Max(page_largest, reply_bytes(r->vals[i]));
	}
	if (page_largest > 0)
	{
		r->last_largest = page_largest;
		r->largest = Max(r->largest, page_largest);
	}
	r->done = r->queued;
	r->page = NULL;

	/*
	 * Read on another Redis process than the one the batch was claimed on (it
	 * restarted, perhaps empty or still loading): the batch is drained again,
	 * rather than take absent values for deleted keys (on_missing 'delete'
	 * then deleted the rows).  Pages may each connect anew; so could the
	 * reads after a claim.  On a cluster, the nodes this page connected to
	 * are noted first.
	 */
	if (r->batch)
	{
		wb_batch_read_more(r->batch);
		if (wb_batch_read_changed(r->batch))
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("redis_sync: Redis at %s restarted while a write-behind batch was read",
							redis_server_display()),
					 errdetail("The batch was claimed on another Redis process than the one its values came from; it is drained again.")));
	}
}

/*
 * Read the pages not read yet, one round trip each; their pipelines (the
 * values live in their memory) are made in the current memory context.
 * Then the table's next batch starts paging by this one's largest reply,
 * and a cap on its pages is relaxed.
 */
void
wb_reads_finish(WbTable *t, WbReads *r)
{
	while (r->done < r->nm)
	{
		RedisPipeline *p = redis_pipeline_create();

		wb_reads_queue(p, t, r, false);
		reads_exec(t, r, p);
		wb_reads_collect(t, r);
	}
	if (r->nm > 0 && r->largest > 0)
		t->sizes.read_largest = r->largest;

	/*
	 * A batch read whole relaxes a cap, unless one of its values took a
	 * quarter of a page: one such value per batch among small ones failed a
	 * page every few batches, the cap relaxed between (review helper-103)
	 */
	if (t->sizes.read_cap > 0 && r->nm > 0)
	{
		size_t		budget = read_page_bytes();

		if (budget == SIZE_MAX || r->largest < budget / 4)
			t->sizes.read_cap = cap_relaxed(t->sizes.read_cap, t->batch);
	}
}

/*
 * The values read (wb_reads_finish), in the claim's reply shape: member,
 * state, seeded, value.  The values stay in the pages' memory.
 */
RedisValue *
wb_reads_result(WbTable *t, WbReads *r)
{
	RedisValue *out = palloc0(sizeof(RedisValue));
	int			nm = r->nm;

	Assert(r->done == nm);
	out->type = RV_ARRAY;
	out->nelem = 4 * nm;
	out->elems = palloc0(sizeof(RedisValue) * Max(out->nelem, 1));
	for (int i = 0; i < nm; i++)
	{
		RedisValue *v = r->vals[i];
		RedisValue *o = &out->elems[4 * i];

		o[0] = r->members->elems[i];
		o[1].type = RV_INTEGER;
		o[2].type = RV_INTEGER;
		if (r->seeds)
		{
			RedisValue *e = r->seeds[i];

			o[2].integer = e->type == RV_INTEGER && e->integer == 1 ? 1 : 0;
		}
		if (v->type == RV_ERROR)
		{
			o[1].integer = -1;
			o[3] = *v;
			o[3].type = RV_STRING;
		}
		else if (v->type == RV_NIL || (v->type == RV_ARRAY && v->nelem == 0))
		{
			o[1].integer = 0;
			o[3].type = RV_STRING;
			o[3].str = "";
		}
		else
		{
			o[1].integer = 1;
			o[3] = *v;
		}
	}
	return out;
}

/*
 * How many members the next claim of t asks for.  Its reply holds their
 * names, which Redis buffers like any reply (and the overlapped drain
 * leaves it unread beside a page of reads while it applies a batch): under
 * a limit on client output (read_page_bytes), members as long as the
 * table's longest must fit a quarter of the limit (half a page when Redis
 * does not say it), and after a claim Redis dropped the connection on
 * (wb_claim_failed), a quarter of that claim until claims come back again.
 * Without either, batch_size.
 */
static int
claim_count(WbTable *t)
{
	int			n = t->batch;

	if (t->sizes.claim_cap > 0)
		n = Min(n, t->sizes.claim_cap);
	if (t->sizes.member_largest > 0 && n > 1)
	{
		size_t		budget = read_page_bytes();

		if (budget != SIZE_MAX)
		{
			/*
			 * a quarter of the limit: the overlapped drain leaves a claim's
			 * reply unread beside a page of reads (half of it at most)
			 */
			budget = rs_reply_limit_bytes() > 0 ? rs_reply_limit_bytes() / 4 : budget / 2;
			n = (int) Min((size_t) n, Max(budget / (t->sizes.member_largest + 16), 1));
		}
	}
	return n;
}

/*
 * A claim failed (f): if Redis closed the connection, its reply may have
 * passed the client's output limit, so the next claims (recovery first:
 * the members it moved are in the processing set) ask for a quarter as
 * many; Redis is asked for its limits again.  The members of a claim of one
 * fit no page: nothing to cap.
 */
void
wb_claim_failed(WbTable *t, const RedisFailure *f)
{
	if (!closed_by_server(f))
		return;
	rs_reply_limit_forget();
	if (t->claim_asked > 1)
		t->sizes.claim_cap = Max(1, t->claim_asked / 4);
}

/* exec p, whose last command is a claim of t: a failure may cap t's claims */
void
wb_claim_exec(RedisPipeline *p, WbTable *t)
{
	RedisFailure f;

	if (!redis_pipeline_try_exec(p, &f))
	{
		wb_claim_failed(t, &f);
		redis_client_report(ERROR, &f);
	}
}

/*
 * queue the claim of up to claim_count() members (recover: of crash
 * leftovers); t->claim_asked says how many, against which a claim's reply
 * tells a full batch from the last
 */
void
wb_append_claim(RedisPipeline *p, WbTable *t, bool recover)
{
	const char *argv[5];
	char		batch[16];

	t->claim_asked = claim_count(t);
	snprintf(batch, sizeof(batch), "%d", t->claim_asked);
	argv[0] = t->dirty;
	argv[1] = t->processing;
	argv[2] = batch;
	argv[3] = recover ? "1" : "0";
	argv[4] = t->scan_cursor[0] ? t->scan_cursor : "0";
	redis_pipeline_append_script(p, &claim_script, 2, 5, argv, NULL);
}

/*
 * Step 1, claim: move up to batch_size members to the processing set and
 * read their values; recover: the members a crash left there instead.
 * Returns the claim script's reply shape: member, state, seeded, value.
 */
static RedisValue *
claim(Batch *b, bool recover)
{
	RedisValue *members;
	WbReads    *r;
	MemoryContext old;

	b->claim = redis_pipeline_create();
	wb_append_claim(b->claim, b->t, recover);
	wb_claim_exec(b->claim, b->t);
	members = wb_claim_reply_members(b->t, b->claim, 0, recover);
	/* the values' pages, in a context of their own (freed by the caller) */
	b->reads = AllocSetContextCreate(CurrentMemoryContext, "redis_sync write-behind reads",
									 ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(b->reads);
	/* the connection the batch was claimed on: its values come from there */
	wb_batch_read_on(b);
	r = wb_reads_begin(b->t, members, b);
	wb_reads_finish(b->t, r);
	MemoryContextSwitchTo(old);
	return wb_reads_result(b->t, r);
}

/*
 * An unseeded counter key: its counters are applied as increments (the
 * values read are kept for the correction).  False (and m->problem) when a
 * counter field is not an integer.
 */
static bool
read_increments(WbTable *t, Member *m)
{
	int			ci = 0;

	m->increment = true;
	m->read = palloc0(sizeof(int64) * t->ncounters);
	for (int c = 0; c < t->ncols; c++)
	{
		if (!t->counter[c])
			continue;
		/* a counter the key does not have adds nothing */
		if (!m->present[c])
			m->read[ci] = 0;
		else if (m->vals[c] == NULL || !wb_parse_int64(m->vals[c], &m->read[ci]))
		{
			m->problem = pstrdup("a counter field is not an integer");
			m->problem_state = pstrdup("22P02");
			return false;
		}
		ci++;
	}
	return true;
}

/* the member's Redis key, made when first needed (dead letters, counters) */
const char *
wb_member_key(WbTable *t, Member *m)
{
	if (m->key == NULL)
		m->key = psprintf("%s%s", t->prefix, m->member);
	return m->key;
}

/* decode claimed member i (r: the claim's reply) and sort it into b's lists */
void
wb_sort_member(Batch *b, RedisValue *r, int i)
{
	WbTable    *t = b->t;
	Member	   *m = &b->ms[i];
	RedisValue *v = &r->elems[4 * i + 3];

	m->member = r->elems[4 * i].str;
	m->state = (int) r->elems[4 * i + 1].integer;
	m->seeded = r->elems[4 * i + 2].integer == 1;
	/* bytes the database cannot hold: dead letter (rowsec.c) */
	if ((m->problem = rs_wb_input_problem(&r->elems[4 * i], v, &m->member, &m->value)) != NULL)
	{
		m->problem_state = pstrdup("22021");
		return;
	}
	if (!wb_split_member(t, m))
	{
		m->problem = psprintf("dirty set member \"%s\" is not %d escaped key values separated by ':'",
							  m->member, t->nkeys);
		m->problem_state = pstrdup("22023");
		return;
	}
	if (m->state < 0)
	{
		m->problem = psprintf("Redis could not read the value: %s", v->str);
		m->problem_state = pstrdup("38000");
		return;
	}
	if (m->state == 0)
	{
		if (t->delete_missing)
			b->del_idx[b->ndel++] = i;
		return;
	}
	wb_decode_value(t, m, v, &b->unknown);
	if (m->problem)
		return;
	if (t->ncounters > 0 && !m->seeded)
	{
		if (read_increments(t, m))
			b->inc_idx[b->ninc++] = i;
	}
	else
		b->abs_idx[b->nabs++] = i;
}

/*
 * DELETE the rows of members idx[0..n) (keys Redis no longer has); returns
 * the rows deleted.
 */
static uint64
delete_rows(Batch *b, int *idx, int n)
{
	WbTable    *t = b->t;
	StringInfoData sql;
	Oid		   *types = palloc(sizeof(Oid) * t->nkeys);
	Datum	   *args = palloc(sizeof(Datum) * t->nkeys);

	initStringInfo(&sql);
	appendStringInfo(&sql, "DELETE FROM %s WHERE (", t->qname);
	for (int k = 0; k < t->nkeys; k++)
		appendStringInfo(&sql, "%s%s", k ? ", " : "", quote_identifier(t->keys[k]));
	appendStringInfoString(&sql, ") IN (SELECT * FROM unnest(");
	for (int k = 0; k < t->nkeys; k++)
	{
		Datum	   *elems = palloc(sizeof(Datum) * n);

		for (int d = 0; d < n; d++)
			elems[d] = CStringGetTextDatum(b->ms[idx[d]].keyvals[k]);
		appendStringInfo(&sql, "%s$%d::pg_catalog.text[]::%s[]", k ? ", " : "", k + 1, t->keybase[k]);
		types[k] = TEXTARRAYOID;
		args[k] = PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
	}
	appendStringInfoString(&sql, "))");
	if (SPI_execute_with_args(sql.data, t->nkeys, types, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "redis_sync: write-behind delete failed");
	return SPI_processed;
}

/* delete_rows()'s arguments and result, for rs_subxact_try_drain() */
typedef struct DeleteArgs
{
	Batch	   *b;
	int		   *idx;
	int			n;
	uint64		deleted;
} DeleteArgs;

static void
delete_rows_args(void *arg)
{
	DeleteArgs *d = arg;

	d->deleted = delete_rows(d->b, d->idx, d->n);
}

/*
 * delete_rows() in a subtransaction: NULL on success (*deleted: the rows),
 * else the error of a permanent failure (rolled back); a transient error is
 * re-thrown so the whole batch is retried later, as for the writes.
 */
static ErrorData *
try_delete_rows(Batch *b, int *idx, int n, uint64 *deleted)
{
	DeleteArgs	d = {b, idx, n, 0};
	ErrorData  *error = rs_subxact_try_drain(delete_rows_args, &d);

	*deleted = d.deleted;
	return error;
}

/*
 * The rows of keys Redis no longer has (on_missing = delete): all at once;
 * when that fails for a permanent reason (another table's foreign key still
 * references a row, a trigger refuses), member by member, each failure a
 * dead letter, as for the writes.  Before, one such row failed the whole
 * batch, which was retried forever and held its other members.
 */
static void
delete_missing(Batch *b)
{
	uint64		deleted = 0;

	if (b->ndel == 0)
		return;
	if (try_delete_rows(b, b->del_idx, b->ndel, &deleted) == NULL)
	{
		b->applied += deleted;
		for (int d = 0; d < b->ndel; d++)
			b->ms[b->del_idx[d]].deleted = true;
		return;
	}
	for (int d = 0; d < b->ndel; d++)
	{
		Member	   *m = &b->ms[b->del_idx[d]];
		ErrorData  *ed = try_delete_rows(b, &b->del_idx[d], 1, &deleted);

		if (ed == NULL)
		{
			b->applied += deleted;
			m->deleted = true;
		}
		else
		{
			m->problem = ed->message;
			m->problem_state = pstrdup(unpack_sql_state(ed->sqlerrcode));
		}
	}
}

/* the table's writes, as its owner, without echoing them to their own keys */
static void
write_rows(Batch *b)
{
	WbTable    *t = b->t;
	RsAsOwner	saved;

	/*
	 * the rows written into this table are not echoed to the keys they came
	 * from
	 */
	rs_capture_suppress(t->relid, t->prefix);
	rs_as_owner_enter(&saved, t->owner);
	PG_TRY();
	{
		/*
		 * each member must name exactly the row whose key it is (the key
		 * types' input functions are the table's code: run as its owner)
		 */
		wb_check_member_keys(t, b->ms, b->abs_idx, &b->nabs);
		wb_check_member_keys(t, b->ms, b->inc_idx, &b->ninc);
		wb_check_member_keys(t, b->ms, b->del_idx, &b->ndel);
		wb_apply_group(t, b->ms, b->abs_idx, b->nabs, false);
		wb_apply_group(t, b->ms, b->inc_idx, b->ninc, true);
		delete_missing(b);
		rs_as_owner_leave(&saved);
		rs_capture_suppress(InvalidOid, NULL);
	}
	PG_CATCH();
	{
		rs_as_owner_leave(&saved);
		rs_capture_suppress(InvalidOid, NULL);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * applied keys are no longer dead, nor are deleted ones (on_missing =
 * delete: the value that failed is gone with its row); counts the applied
 * rows (delete_missing counted the deleted ones)
 */
static void
forget_dead_letters(Batch *b)
{
	Datum	   *done;
	int			nd = 0;
	Oid			types[2] = {OIDOID, TEXTARRAYOID};
	Datum		args[2];

	for (int i = 0; i < b->nm; i++)
	{
		if (b->ms[i].applied)
			b->applied++;
		if (b->ms[i].applied || b->ms[i].deleted)
			nd++;
	}
	if (nd == 0)
		return;
	args[0] = ObjectIdGetDatum(b->t->relid);
	/* the usual case is a table without dead letters: one index probe */
	SPI_execute_with_args("SELECT 1 FROM redis_sync.dead_letters WHERE relid = $1 LIMIT 1",
						  1, types, args, NULL, true, 1);
	if (SPI_processed > 0)
	{
		/* the members' text only now */
		done = palloc(sizeof(Datum) * b->nm);
		nd = 0;
		for (int i = 0; i < b->nm; i++)
			if (b->ms[i].applied || b->ms[i].deleted)
				done[nd++] = CStringGetTextDatum(b->ms[i].member);
		args[1] = PointerGetDatum(construct_array(done, nd, TEXTOID, -1, false, TYPALIGN_INT));
		SPI_execute_with_args("DELETE FROM redis_sync.dead_letters WHERE relid = $1 AND member = ANY ($2)",
							  2, types, args, NULL, false, 0);
	}
}

/*
 * Steps 2 and 3, apply: write the rows, record dead letters, correct
 * unseeded counters in Redis while the row locks are held, commit; in one
 * transaction, cancelled after redis_sync.drain_timeout.
 */
void
wb_apply_batch(Batch *b, TimestampTz started)
{
	WbTable    *t = b->t;
	int64		again = 0;		/* rows of members applied before (their batch
								 * committed, not acknowledged) */
	int			nagain = 0;

	rs_xact_begin(NULL);
	rs_step_timeout_arm(rs_drain_step_ms());	/* redis_sync.drain_timeout */
	(void) rs_canonical_gucs_push();	/* key and value casts: canonical
										 * form; popped at commit */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	/* DDL that committed since the round loaded t: retried, not dead letters */
	wb_config_check_current(t);

	/*
	 * The table's deferred constraints and constraint triggers (a DEFERRABLE
	 * INITIALLY DEFERRED foreign key) are checked at the end of each
	 * statement: the writes run as the owner in a security-restricted
	 * operation, where PostgreSQL refuses to queue a trigger for commit
	 * ("cannot fire deferred trigger within security-restricted operation":
	 * every member of such a table was a dead letter), and a violation found
	 * at commit would fail the whole batch instead of the one member.
	 */
	if (SPI_execute("SET CONSTRAINTS ALL IMMEDIATE", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "redis_sync: SET CONSTRAINTS failed");
	write_rows(b);
	wb_record_dead_letters(t, b->ms, b->nm);
	forget_dead_letters(b);
	/* unseeded counters: correct Redis while the row locks are held */
	wb_correct_counters(b);
	SPI_finish();
	for (int i = 0; i < b->nm; i++)
	{
		if (!b->ms[i].reapplied)
			continue;
		nagain++;
		if (b->ms[i].applied)
			again++;
	}
	rs_stats_add(t->relid, RS_C_APPLIED, b->applied - again);
	if (nagain < b->nm)
		rs_stats_add(t->relid, RS_C_BATCHES, 1);
	rs_stats_set_lag(t->relid, (double) (GetCurrentTimestamp() - started) / 1000000.0);
	rs_stats_flush();
	rs_step_timeout_check();	/* a cancel caught by the table's code */
	rs_xact_commit(NULL);		/* deferred triggers run here: still timed */
	rs_step_timeout_disarm();
}

/* ----------------------------------------------------------------
 * Committed, not acknowledged
 *
 * A batch whose commit succeeded and whose acknowledgement failed (Redis
 * unreachable, or past command_timeout, right after the commit) stays in
 * the processing set, and the next round's recovery applies it again
 * (absolute state: the same rows).  Its members are remembered here, in the
 * worker, from the commit until their acknowledgement succeeds or a fresh
 * claim takes them again, so that the recovery counts them in no
 * statistic: claimed, applied, batches, dead and unknown_fields count a
 * drain once.  A member is known by its table and a 64-bit hash of its
 * bytes.  The worker's memory only: a batch recovered by the next worker
 * (this one ended between the commit and the acknowledgement) is counted
 * again.
 * ---------------------------------------------------------------- */

typedef struct UnackedKey
{
	uint64		relid;			/* an Oid: no padding in the key */
	uint64		hash;
} UnackedKey;

static HTAB *unacked = NULL;

static void
unacked_key(UnackedKey *k, WbTable *t, const RedisValue *m)
{
	k->relid = t->relid;
	k->hash = hash_bytes_extended((const unsigned char *) m->str, (int) m->len, 0);
}

/* committed: m's batch committed (remember it); else acknowledged or claimed afresh */
void
wb_unacked_set(WbTable *t, const RedisValue *m, bool committed)
{
	UnackedKey	k;

	if (unacked == NULL)
	{
		HASHCTL		ctl;

		if (!committed)
			return;
		ctl.keysize = sizeof(UnackedKey);
		ctl.entrysize = sizeof(UnackedKey);
		ctl.hcxt = TopMemoryContext;
		unacked = hash_create("redis_sync unacknowledged members", 1024, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	unacked_key(&k, t, m);
	(void) hash_search(unacked, &k, committed ? HASH_ENTER : HASH_REMOVE, NULL);
}

bool
wb_unacked_has(WbTable *t, const RedisValue *m)
{
	UnackedKey	k;

	if (unacked == NULL || hash_get_num_entries(unacked) == 0)
		return false;
	unacked_key(&k, t, m);
	return hash_search(unacked, &k, HASH_FIND, NULL) != NULL;
}

/*
 * Step 4, acknowledge: only after the commit may the members leave the
 * processing set.  r: the claim's reply shape (wb_reads_result), whose
 * members are the bytes Redis holds: a member that is not valid text has
 * only a printable copy in b->ms (for its dead letter), which SREM would
 * not find, and a recovery batch made only of such members, claimed again
 * and again, never ended the worker's recovery loop.
 */
static void
acknowledge(Batch *b, RedisValue *r)
{
	const char **sargv = palloc(sizeof(char *) * (b->nm + 2));
	size_t	   *sargvlen = palloc(sizeof(size_t) * (b->nm + 2));
	RedisPipeline *ack = redis_pipeline_create();

	sargv[0] = "SREM";
	sargvlen[0] = 4;
	sargv[1] = b->t->processing;
	sargvlen[1] = strlen(b->t->processing);
	for (int i = 0; i < b->nm; i++)
	{
		sargv[i + 2] = r->elems[4 * i].str;
		sargvlen[i + 2] = r->elems[4 * i].len;
	}
	redis_pipeline_append(ack, b->nm + 2, sargv, sargvlen);
	redis_pipeline_exec(ack);
	redis_pipeline_free(ack);
}

/*
 * Claim, apply and acknowledge one batch.  Returns the number of members
 * claimed (0: nothing to do); *applied gets rows written.
 */
int
wb_drain_batch(WbTable *t, bool recover, int64 *applied)
{
	Batch		b = {0};
	RedisValue *r;
	TimestampTz started = GetCurrentTimestamp();
	int			nagain = 0;

	*applied = 0;
	b.t = t;
	r = claim(&b, recover);
	b.nm = r->nelem / 4;
	if (b.nm == 0)
	{
		MemoryContextDelete(b.reads);
		redis_pipeline_free(b.claim);
		return 0;
	}

	b.ms = palloc0(sizeof(Member) * b.nm);
	b.abs_idx = palloc(sizeof(int) * b.nm);
	b.inc_idx = palloc(sizeof(int) * b.nm);
	b.del_idx = palloc(sizeof(int) * b.nm);
	for (int i = 0; i < b.nm; i++)
	{
		int64		unknown = b.unknown;

		wb_sort_member(&b, r, i);
		/* claimed again by a recovery: counted at its first claim */
		if (wb_unacked_has(t, &r->elems[4 * i]))
		{
			b.ms[i].reapplied = true;
			b.unknown = unknown;
			nagain++;
		}
	}
	rs_stats_add(t->relid, RS_C_CLAIMED, b.nm - nagain);
	rs_stats_add(t->relid, RS_C_UNKNOWN_FIELDS, b.unknown);

	wb_apply_batch(&b, started);
	*applied = b.applied;
	for (int i = 0; i < b.nm; i++)
		wb_unacked_set(t, &r->elems[4 * i], true);
	acknowledge(&b, r);
	for (int i = 0; i < b.nm; i++)
		wb_unacked_set(t, &r->elems[4 * i], false);
	if (b.reads)
		MemoryContextDelete(b.reads);
	redis_pipeline_free(b.claim);
	return b.nm;
}

/* ----------------------------------------------------------------
 * Settings (from _PG_init)
 * ---------------------------------------------------------------- */

int			rs_drain_timeout_ms = 60000;

void
rs_drain_init(void)
{
	DefineCustomIntVariable("redis_sync.drain_timeout",
							"Longest time one write-behind batch may take to apply (0: no limit).",
							"A batch still running then (a slow trigger, a lock wait) is cancelled, "
							"counted in drain_retries and retried later; a table drained that long "
							"in a round goes on in the next one.",
							&rs_drain_timeout_ms,
							60000, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}
