/*-------------------------------------------------------------------------
 *
 * publish.c
 *		Send a transaction's changes to Redis at pre-commit, or queue them
 *		in the outbox; repair pushes that outlive their transaction.
 *
 * Ordering and delivery guarantees (see also fence.c):
 *
 * - Nothing is sent before commit.  The capture trigger only buffers; this
 *   module acts at XACT_EVENT_PRE_COMMIT, after deferred triggers and before
 *   the commit record, while the transaction still holds its row locks.  A
 *   transaction that rolls back (or a savepoint rolled back, see capture.c)
 *   sends nothing.
 *
 * - One round trip.  The buffer is coalesced (the newest state per key
 *   wins, by the command that made it: coalesce()) and
 *   sent as one pipeline of apply-script calls, redis_sync.chunk_size keys
 *   per call.  Each call is atomic in Redis; a transaction of more keys than
 *   one chunk is applied chunk by chunk (readers may see some chunks before
 *   others), still in one round trip.  Each chunk goes out as soon as it
 *   is encoded (redis_pipeline_stream), so Redis applies one chunk while
 *   the next is encoded; replies are read as they come (redis_stream.c).  Ahead
 *   of Redis by more than a megabyte, the stream waits for the socket: a
 *   push holds a few chunks in memory, not all of them (redis_stream.c).
 *   TRUNCATE and unsync(purge) send their deletes first, a SCAN page per
 *   round trip (rs_purge_send).
 *
 * - Never stale.  Every write carries the version taken here (timeline,
 *   server epoch and WAL insert position at pre-commit, encode.c); the
 *   script ignores writes older than what the key has seen.  A writer of the same key after us waits for our row
 *   locks, hence for our commit, hence gets a larger version.
 *
 * - Failure.  If Redis cannot be reached or fails the push: a strict table
 *   raises an ERROR and the transaction rolls back; otherwise the changes
 *   go to redis_sync.outbox in this same transaction, and commit.  Async
 *   tables, prepared transactions and transactions that outgrew
 *   redis_sync.max_buffer_bytes always go through the outbox.
 *
 * - A push that outlives its transaction.  A transaction can still fail
 *   after its push (serialization failure at commit, a later pre-commit
 *   error, a crash).  On abort, while the row locks are still held, the
 *   committed state of every pushed key (its row before this transaction,
 *   encoded at capture, or a delete) is pushed again with a newer
 *   version, but for the keys of a call Redis refused whole, which it left
 *   as they were (note_outcomes).  For crashes, and for a push that timed out (it may land
 *   later), each push also records an in-flight marker in Redis naming the
 *   transaction and its rows; markers of committed transactions are
 *   removed by the next push of the same backend (markers.c keeps the
 *   backend's side), and the background worker repairs the rows of markers
 *   whose transaction did not commit.  A crash can lose the WAL a pushed
 *   version counted (it is flushed only with the commit record): the server
 *   epoch, larger after the restart, keeps the repair's version and every
 *   later one above it (epoch.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_am_d.h"
#include "common/hashfn.h"
#include "funcapi.h"
#include "storage/bufmgr.h"
#include "utils/guc.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "capture.h"
#include "fence.h"
#include "killfence.h"
#include "markers.h"
#include "outbox.h"
#include "publish.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(redis_sync_session_stats);

uint64		rs_stat_pushed = 0;
uint64		rs_stat_chunks = 0;
static uint64 rs_stat_queued = 0;
uint64		rs_stat_repaired = 0;

/* one key after coalescing */
typedef struct Pending
{
	Change	   *last;			/* gives the final state: the newest */
	Change	   *first;			/* its before image is the committed state:
								 * the oldest (since a purge) */
	bool		dropped;		/* superseded by a later purge */
} Pending;

/*
 * A key pushed at pre-commit, for the repair after an abort.  Apart from
 * Pending, which every change of a large transaction has one of (an
 * overflowed one's, whose changes all go to the outbox, too): the image is
 * needed for the sync group's keys only.
 */
typedef enum PushOutcome
{
	PUSH_UNKNOWN = 0,			/* may have landed, marker or not */
	PUSH_TAKEN,					/* its call applied, with its in-flight marker */
	PUSH_REFUSED				/* its call was refused whole: nothing landed */
} PushOutcome;

typedef struct PushedKey
{
	Change	   *last;
	RowImage	repair;			/* committed state (repair_exactly) */
	PushOutcome outcome;		/* what Redis did with its call */
} PushedKey;

/* the key of pending[pos] (rs_key_index_slot) */
static const char *
pending_key_of(void *arg, int32 pos)
{
	return ((Pending *) arg)[pos].last->key;
}

/* state of the current transaction, reset at its end */
static PushedKey *pushed_keys = NULL;	/* pushed before commit (may be
										 * unsure) */
static int	npushed = 0;
static bool push_maybe_landed = false;
static bool push_timed_out = false; /* the push's outcome is unknown */
static bool repair_exactly = true;	/* repair images were encoded */

bool		rs_bulk_multi = true;

/* transactions of more keys are repaired through the worker */
#define RS_EXACT_REPAIR_KEYS 1000

/* a chunk ends once the keys its in-flight marker names pass this (send_push) */
#define MARKER_MAX_BYTES (32 * 1024)
static bool purge_pushed = false;
static bool wrote_outbox = false;

static void
reset_state(void)
{
	pushed_keys = NULL;
	npushed = 0;
	push_maybe_landed = false;
	push_timed_out = false;
	repair_exactly = true;
	rs_markers_end_transaction(false);
	purge_pushed = false;
	wrote_outbox = false;
	rs_capture_reset();
}

/*
 * Does another row than the one leaving a key hold it?  held is the key's
 * newest change so far, which gave the key a row (an INSERT or UPDATE);
 * leaving, a newer change of the key (coalesce()'s order), deletes the row it names or moves it
 * to another key.  A deferrable unique key lets a row take a key before
 * the row that holds it leaves (UPDATE ... SET id = id + 1, a swap, an
 * INSERT before the DELETE of the row it replaces): then the key stays the
 * row's that took it.
 *
 * The rows are the same when held's tuple became leaving's: an UPDATE that
 * changes no synced column makes a new tuple of the row without a change,
 * so the tuples are compared along held's update chain (each version's
 * t_ctid names the next, every one made by this transaction).  Unless the
 * answer is sure (one relation, never rewritten since the changes, a heap,
 * the chain intact up to its live end), the rows are taken as the same:
 * the key is deleted, which at worst leaves it missing, never stale.
 * *rel caches the relation opened last (closed by the caller).
 */
static bool
other_row_holds(Change *held, Change *leaving, Relation *rel)
{
	ItemPointerData cur = held->row_tid;
	TransactionId prior = InvalidTransactionId;

	if (held->row_relid != leaving->row_relid || held->row_node != leaving->row_node ||
		ItemPointerEquals(&held->row_tid, &leaving->row_tid))
		return false;
	if (*rel != NULL && RelationGetRelid(*rel) != held->row_relid)
	{
		table_close(*rel, NoLock);
		*rel = NULL;
	}
	if (*rel == NULL)
		*rel = try_table_open(held->row_relid, AccessShareLock);
	if (*rel == NULL || (*rel)->rd_rel->relam != HEAP_TABLE_AM_OID ||
		(*rel)->rd_node.relNode != held->row_node)
		return false;

	for (;;)
	{
		HeapTupleData tup;
		Buffer		buf;
		HeapTupleHeader h;
		TransactionId updater = InvalidTransactionId;
		bool		live;
		bool		next = false;

		if (ItemPointerEquals(&cur, &leaving->row_tid))
			return false;		/* held's row is the one leaving */
		tup.t_self = cur;
		if (!heap_fetch(*rel, SnapshotAny, &tup, &buf, true))
		{
			if (BufferIsValid(buf))
				ReleaseBuffer(buf);
			return false;
		}
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		h = tup.t_data;
		if (TransactionIdIsValid(prior) &&
			!TransactionIdEquals(prior, HeapTupleHeaderGetXmin(h)))
			live = false;		/* not the next version: unsure */
		else if ((h->t_infomask & HEAP_XMAX_INVALID) || HeapTupleHeaderIsOnlyLocked(h))
			live = true;
		else
		{
			updater = HeapTupleHeaderGetUpdateXid(h);
			if (TransactionIdIsCurrentTransactionId(updater))
			{
				/* updated by us: on to the next version (none: deleted) */
				live = false;
				next = !ItemPointerEquals(&tup.t_self, &h->t_ctid) &&
					!ItemPointerIndicatesMovedPartitions(&h->t_ctid);
				cur = h->t_ctid;
			}
			else
				live = TransactionIdDidAbort(updater);	/* a rolled back
														 * subtransaction's */
		}
		LockBuffer(buf, BUFFER_LOCK_UNLOCK);
		ReleaseBuffer(buf);
		if (live)
			return true;		/* the row holding the key is not leaving */
		if (!next)
			return false;
		prior = updater;
	}
}

/* transactions of at most this many changes coalesce without a hash table */
#define COALESCE_SCAN_MAX 8

/*
 * Coalesce the change log; purges returned separately, in order.  The log
 * is taken in the order its changes were made (rs_change_newer): a key's
 * last change is its newest, and its first the oldest, whose before image
 * is the committed state an abort restores; a purge drops the older changes
 * of its table.
 */
static Pending *
coalesce(int *npending, List **purges)
{
	int			nchanges;
	Change	   *changes = rs_capture_changes(&nchanges);
	Pending    *pending = palloc0(sizeof(Pending) * Max(nchanges, 1));
	Change	  **bytime = NULL;
	int			n = 0;
	RsKeyIndex	byKey = {0};
	Relation	rel = NULL;

	/*
	 * Almost always the log order: an AFTER trigger's nested statement that
	 * changed a row again logged the newer change first.
	 */
	for (int i = 1; i < nchanges && bytime == NULL; i++)
		if (rs_change_newer(&changes[i - 1], &changes[i]))
		{
			bytime = palloc(sizeof(Change *) * nchanges);
			for (int j = 0; j < nchanges; j++)
				bytime[j] = &changes[j];
			qsort(bytime, nchanges, sizeof(Change *), rs_change_cmp_age);
		}

	/* a few changes (the common case) are matched by a scan: no hash table */
	if (nchanges > COALESCE_SCAN_MAX)
		rs_key_index_init(&byKey, nchanges);
	*purges = NIL;

	for (int i = 0; i < nchanges; i++)
	{
		Change	   *c = bytime ? bytime[i] : &changes[i];
		int			idx = -1;

		if (c->kind == RS_CHANGE_PURGE)
		{
			for (int j = 0; j < n; j++)
				if (pending[j].last->root_relid == c->root_relid)
					pending[j].dropped = true;
			*purges = lappend(*purges, c);
			continue;
		}
		if (byKey.slots)
		{
			int32	   *slot = rs_key_index_slot(&byKey, c->key, pending_key_of, pending);

			if (*slot < 0 || pending[*slot].dropped)
				*slot = n;
			else
				idx = *slot;
		}
		else
		{
			/*
			 * the last entry of the key: an earlier one was dropped by a
			 * purge
			 */
			for (int j = n - 1; j >= 0; j--)
				if (strcmp(pending[j].last->key, c->key) == 0)
				{
					if (!pending[j].dropped)
						idx = j;
					break;
				}
		}
		if (idx < 0)
		{
			pending[n].first = c;
			pending[n].last = c;
			n++;
		}
		else if (c->deletes && !pending[idx].last->deletes &&
				 other_row_holds(pending[idx].last, c, &rel))
		{
			/*
			 * A row left a key that another row of this transaction already
			 * took (a deferrable unique key: UPDATE ... SET id = id + 1, a
			 * swap, or an INSERT before the DELETE of the row it replaces):
			 * the key stays that row's.
			 */
		}
		else
			pending[idx].last = c;
	}
	if (byKey.slots)
		rs_key_index_free(&byKey);
	if (rel != NULL)
		table_close(rel, NoLock);
	*npending = n;
	return pending;
}

/*
 * The committed state of a key, for the repair after an abort: the before
 * image of its oldest change (not always the first logged: coalesce()),
 * encoded at capture (capture.c), or a delete when the key had no row.
 * False when the image was not kept.
 */
static bool
prepare_repair(Pending *pk, RowImage *repair)
{
	return rs_change_before(pk->first, repair);
}

/*
 * Whether a chunk whose in-flight marker names n keys so far (ident) may
 * take one more.  The worker's sweep reads a marker in one reply: a chunk
 * ends early once its keys' identities pass MARKER_MAX_BYTES, so that a
 * Redis limiting a client's replies (client-output-buffer-limit normal) lets
 * the sweep read it whatever chunk_size and the keys' length (helper-109:
 * under 1 MB, chunks of 100,000 integer keys left markers of 1.7 MB, which
 * no sweep could read, unrepaired while the limit held).
 */
static bool
chunk_has_room(StringInfo ident, int n, int chunk_size)
{
	return n < chunk_size && (n == 0 || ident->len < MARKER_MAX_BYTES);
}

/* the identity of the n-th key of a marker (ident, opened with '[') */
static void
marker_add(StringInfo ident, int n, const Change *c)
{
	if (n > 0)
		appendStringInfoChar(ident, ',');
	rs_change_append_identity(ident, c);
}

/*
 * Encode the chunk of keys[] that starts at keys[first] into the pipeline,
 * its ops and images in ops[] and imgs[] (filled from their start), and
 * return how many keys it took: at most chunk_size, fewer once its marker
 * names MARKER_MAX_BYTES of identities.  clears go with it.
 */
static int
append_chunk(RedisPipeline *p, Pending **keys, int first, int nkeys, int chunk_size,
			 int chunkno, FenceOp *ops, RowImage *imgs, List *clears,
			 const char *version, bool multi)
{
	StringInfoData ident;
	char	   *field = rs_marker_new_field(chunkno);
	int			n;

	initStringInfo(&ident);
	appendStringInfoChar(&ident, '[');
	for (n = 0; first + n < nkeys && chunk_has_room(&ident, n, chunk_size); n++)
	{
		Pending    *pk = keys[first + n];

		ops[n].key = pk->last->key;
		ops[n].version = version;
		ops[n].ttl_ms = pk->last->ttl_ms;
		rs_change_after(pk->last, &imgs[n]);
		ops[n].img = &imgs[n];
		marker_add(&ident, n, pk->last);
	}
	appendStringInfoChar(&ident, ']');
	if (multi)
		rs_fence_append_multi(p, ops, n, field, ident.data, clears);
	else
		rs_fence_append(p, ops, n, field, ident.data, clears);
	rs_stat_chunks++;
	return n;
}

/*
 * Send the chunks sent so far while the next is encoded (the last goes with
 * the exec).  From the first byte sent, an ERROR before the exec leaves a
 * push that may land: the abort repairs it.  False when the connection
 * failed under them: the exec reports it, the rest need not be encoded.
 */
static bool
stream_chunks(RedisPipeline *p)
{
	bool		landed = push_maybe_landed;
	bool		timed_out = push_timed_out;
	bool		streamed;

	/*
	 * Set first: the stream may wait for the socket and be cancelled there,
	 * which leaves the outcome unknown, as below
	 */
	push_maybe_landed = true;
	push_timed_out = true;
	streamed = redis_pipeline_stream(p);

	/* a timeout, say: the outcome of the chunks sent is unknown */
	if (redis_pipeline_stream_failed(p))
		return false;
	push_timed_out = timed_out;
	if (!streamed)
		push_maybe_landed = landed;
	return true;
}

/*
 * Encode and send the sync group's pipeline (MULTI/EXEC chunks when multi),
 * and read every reply: redis_pipeline_try_exec()'s result.  ends[c] is set
 * to the end of call c's keys (keys[] past its last), *ncalls to the calls
 * encoded.
 */
static bool
send_push(RedisPipeline *p, Pending **keys, int nkeys, List *clears, const char *version,
		  bool multi, int *ends, int *ncalls, RedisFailure *failure)
{
	/*
	 * A MULTI chunk is encoded into the pipeline's buffer and needs nothing
	 * else after: its images, identities and version key names live in
	 * chunk_cxt, reset per chunk, so a bulk push encodes every chunk in the
	 * same few pages instead of touching new memory for each row (issue 18).
	 * The script path keeps them, each chunk in its own slots: on a Redis
	 * Cluster its fallback encodes the ops again after the exec
	 * (fence_cluster.c).
	 */
	MemoryContext caller_cxt = CurrentMemoryContext;
	MemoryContext chunk_cxt = multi ?
	AllocSetContextCreate(caller_cxt, "redis_sync push chunk", ALLOCSET_DEFAULT_SIZES) :
	caller_cxt;
	int			chunk_size = rs_chunk_size; /* read once */
	int			nslots = multi ? Min(chunk_size, nkeys) : nkeys;
	FenceOp    *ops = palloc(sizeof(FenceOp) * Max(nslots, 1));
	RowImage   *imgs = palloc(sizeof(RowImage) * Max(nslots, 1));
	int			chunk = 0;
	bool		ok;

	for (int s = 0, n = 0; s < nkeys; s += n)
	{
		int			o = multi ? 0 : s;	/* this chunk's first slot */

		MemoryContextSwitchTo(chunk_cxt);
		n = append_chunk(p, keys, s, nkeys, chunk_size, chunk, ops + o, imgs + o,
						 clears, version, multi);
		ends[chunk++] = s + n;
		*ncalls = chunk;
		MemoryContextSwitchTo(caller_cxt);
		if (multi)
			MemoryContextReset(chunk_cxt);
		clears = NIL;
		if (s + n < nkeys && !stream_chunks(p))
			break;
	}

	/*
	 * Chunks already streamed: an ERROR (a query cancel) in the wait below
	 * leaves their outcome unknown, as it does for a push not streamed, whose
	 * abort leaves the repair to the in-flight markers rather than wait on a
	 * stuck Redis again.
	 */
	push_timed_out = push_maybe_landed;
	ok = redis_pipeline_try_exec(p, failure);
	if (multi)
		MemoryContextDelete(chunk_cxt);
	pfree(ops);
	pfree(imgs);
	return ok;
}

/*
 * Send the deletes of the transaction's purges (TRUNCATE, unsync(purge)),
 * each a page at a time (rs_purge_send), before its other changes: they
 * precede every surviving change of their table (a delete of each key, or
 * of the write-through fields only), just below the transaction's version:
 * the rows it wrote after the TRUNCATE carry that version, and a delete
 * whose reply timed out may reach Redis after the outbox delivered them
 * (outbox.c purge_version, TAP 228).  *clears go with the first call.
 * False, with *failure filled, when Redis could not be reached (the deletes
 * sent so far stay applied, purge_pushed says whether there are any; the
 * rest is not sent) or refused a delete (the others were sent).
 */
static bool
push_purges(List *purges, const char *version, List **clears, RedisFailure *failure)
{
	ListCell   *lc;
	bool		any_sent = false;
	bool		ok;

	foreach(lc, purges)
	{
		Change	   *c = lfirst(lc);
		RowImage	del;
		bool		sent;

		rs_change_purge_image(c, &del);

		/*
		 * From here on the deletes may reach Redis, whatever ends the push:
		 * an ERROR (a cancel in a wait for the replies) as well as a failed
		 * reply.
		 */
		purge_pushed = true;
		ok = rs_purge_send(c->root_relid, c->key, &del, version,
						   PG_INT64_MAX, PG_INT64_MAX, clears, &sent, failure);
		/* returned: whether a delete was sent is known */
		any_sent |= sent;
		purge_pushed = any_sent;
		if (!ok)
			return false;
	}
	return true;
}

/*
 * Whether an apply call's error reply says Redis took nothing of it: out of
 * memory at the script's first write, its in-flight marker (after which a
 * script is never refused for memory), or a MULTI ... EXEC that Redis
 * discarded (a command refused at queueing, or EXEC refused for memory).
 */
static bool
refused_whole(const RedisValue *v)
{
	const char *err = v->str;

	if (v->type != RV_ERROR || err == NULL)
		return false;
	if (err[0] == '-')
		err++;
	return strncmp(err, "OOM", 3) == 0 || strncmp(err, "EXECABORT", 9) == 0;
}

/*
 * Record what Redis did with each call of the push whose replies were all
 * read (ends: send_push's), for the repair after an abort: a call refused
 * whole left its keys as they were, committed and without a marker, and
 * they are not repaired; a call applied left its marker, which the worker
 * repairs from.  On a Redis Cluster a chunk may go as several calls (one
 * per slot or node, fence_cluster.c): the outcomes stay unknown.
 */
static void
note_outcomes(RedisPipeline *p, const int *ends, int ncalls)
{
	if (redis_cluster_mode() || redis_pipeline_length(p) != ncalls)
		return;
	for (int c = 0, first = 0; c < ncalls; first = ends[c++])
	{
		RedisValue *v = redis_pipeline_reply(p, c);
		PushOutcome o = v->type != RV_ERROR ? PUSH_TAKEN :
		refused_whole(v) ? PUSH_REFUSED : PUSH_UNKNOWN;

		for (int i = first; i < ends[c]; i++)
			pushed_keys[i].outcome = o;
	}
}

/*
 * Push the sync group: the purges' deletes first (push_purges), then the
 * changes in one pipeline.  Returns false with *failure filled when Redis
 * could not be reached or rejected the push.
 */
static bool
push(Pending **keys, int nkeys, List *purges, const char *version, RedisFailure *failure)
{
	RedisPipeline *p;
	bool		ok;
	KfMode		mode = KF_SCRIPT;
	List	   *clears = rs_markers_to_clear();
	int		   *ends;
	int			ncalls = 0;

	if (purges != NIL && !push_purges(purges, version, &clears, failure))
		return false;
	if (nkeys == 0)
	{
		/* the piggy-backed clears are done, unless no call carried them */
		if (clears == NIL)
			rs_markers_cleared();
		return true;
	}

	/*
	 * MULTI/EXEC instead of the apply script, when the connection is
	 * registered (fence_multi.c, killfence.c).  A Redis that cannot be
	 * reached fails the push here, before anything is sent.
	 */
	if (rs_bulk_multi)
		mode = rs_killfence_begin(failure);
	if (mode == KF_FAILED)
		return false;
	p = redis_pipeline_create();
	ends = palloc(sizeof(int) * nkeys);
	if (mode == KF_MULTI)
	{
		/* on the registered connection only: its kill is what fences it */
		redis_pipeline_only_on(p, rs_killfence_generation());
		PG_TRY();
		{
			ok = send_push(p, keys, nkeys, clears, version, true, ends, &ncalls, failure);
		}
		PG_CATCH();
		{
			/*
			 * An ERROR (a cancel in the wait): abandon the connection now.
			 * The abort makes the transaction's rows writable before its
			 * callbacks run, and a writer of them must find the connection
			 * abandoned (killfence.c).
			 */
			rs_killfence_end(false);
			PG_RE_THROW();
		}
		PG_END_TRY();
		/* every reply read, or the connection is abandoned (killfence.c) */
		rs_killfence_end(ok);
	}
	else
		ok = send_push(p, keys, nkeys, clears, version, false, ends, &ncalls, failure);
	/* a failure to connect sent nothing; any other failure may have landed */
	if (ok || failure->sqlstate != ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION)
		push_maybe_landed = true;
	push_timed_out = !ok && failure->sqlstate == ERRCODE_CONNECTION_FAILURE;
	if (ok)
	{
		note_outcomes(p, ends, ncalls);
		ok = rs_fence_replies_ok(p, failure);
	}
	pfree(ends);
	if (ok)
	{
		/* the piggy-backed clears are done */
		rs_markers_cleared();
		rs_stat_pushed += nkeys;
		for (int i = 0; i < nkeys; i++)
			rs_stats_add(keys[i]->last->root_relid, RS_C_PUSHED, 1);
		if (rs_debug_crash_after_push && nkeys > 0)
			elog(PANIC, "redis_sync.debug_crash_after_push: crashing after the push, before the commit record");
	}
	redis_pipeline_free(p);
	return ok;
}

/* where each coalesced change of a committing transaction goes */
typedef struct CommitPlan
{
	Pending   **sync_keys;		/* pushed now */
	int			nsync;
	List	   *purges_sync;
	Change	  **outbox;			/* queued in the outbox, in this order */
	int			noutbox;
	bool		any_strict;		/* a push failure rolls the transaction back */
} CommitPlan;

/*
 * Sort the coalesced changes: async tables, prepared transactions and
 * transactions that overflowed the buffer go to the outbox, the rest is
 * pushed.  Purges are queued before row changes so the worker orders them
 * alike.
 */
static void
plan_commit(CommitPlan *plan, Pending *pending, int npending, List *purges, bool prepare,
			bool overflowed)
{
	List	   *purges_outbox = NIL;
	ListCell   *lc;

	memset(plan, 0, sizeof(*plan));
	plan->sync_keys = palloc(sizeof(Pending *) * Max(npending, 1));
	plan->outbox = palloc(sizeof(Change *) * (npending + list_length(purges) + 1));

	foreach(lc, purges)
	{
		Change	   *c = lfirst(lc);

		if (prepare || overflowed || c->async)
			purges_outbox = lappend(purges_outbox, c);
		else
		{
			plan->purges_sync = lappend(plan->purges_sync, c);
			plan->any_strict |= c->strict;
		}
	}
	foreach(lc, purges_outbox)
		plan->outbox[plan->noutbox++] = lfirst(lc);

	for (int i = 0; i < npending; i++)
	{
		Pending    *pk = &pending[i];

		if (pk->dropped)
			continue;
		if (prepare || overflowed || pk->last->async)
			plan->outbox[plan->noutbox++] = pk->last;
		else
		{
			plan->sync_keys[plan->nsync++] = pk;
			plan->any_strict |= pk->last->strict;
		}
	}
}

/*
 * Redis answered but refused the push for memory (maxmemory reached under
 * noeviction): the keys it did not take still hold an older value,
 * which readers would get after the commit returns, until the worker
 * delivers the outbox entries queued for them (tests/t/365).  Drop them,
 * fenced with this transaction's version: a delete needs no memory, this
 * transaction still holds the rows' locks (nothing newer can be there), and
 * the queued entries carry the same version, which the fence applies.  Of a
 * hash, only the table's fields go (rs_image_drop_row: fields the
 * application keeps there stay); a hash shared with write-behind fields is
 * left alone (their drain may be pending).  Best effort: a failure only
 * leaves what was there.
 */
/*
 * The image that drops a row of cfg from its key (rs_image_drop_row), one
 * for the keys of one configuration in a row (the abort's and the drop's
 * keys come table by table).
 */
typedef struct DropImages
{
	const SyncConfig *cfg;
	RowImage   *img;
} DropImages;

static RowImage *
drop_image(DropImages *d, const SyncConfig *cfg)
{
	if (d->img == NULL || d->cfg != cfg)
	{
		d->img = palloc0(sizeof(RowImage));
		d->img->op = RS_OP_DELETE;
		d->cfg = cfg;
		if (cfg != NULL)
			rs_image_drop_row(cfg, d->img);
	}
	return d->img;
}

static void
drop_refused_keys(Pending **keys, int nkeys, const char *version)
{
	RedisPipeline *p;
	FenceOp    *ops;
	int			nops = 0;
	DropImages	drops = {NULL, NULL};
	RedisFailure failure;

	if (nkeys == 0)
		return;
	ops = palloc(sizeof(FenceOp) * nkeys);
	for (int i = 0; i < nkeys; i++)
	{
		Change	   *c = keys[i]->last;

		if (c->cfg != NULL && c->cfg->wb_shared)
			continue;
		/* a refused call's key changes now, without a marker: see the abort */
		if (pushed_keys[i].outcome == PUSH_REFUSED)
			pushed_keys[i].outcome = PUSH_UNKNOWN;
		ops[nops].key = c->key;
		ops[nops].version = version;
		ops[nops].ttl_ms = c->ttl_ms;
		ops[nops].img = drop_image(&drops, c->cfg);
		nops++;
	}
	if (nops == 0)
		return;
	p = redis_pipeline_create();
	for (int s = 0; s < nops; s += rs_chunk_size)
		rs_fence_append(p, ops + s, Min(rs_chunk_size, nops - s), NULL, NULL, NIL);
	if (!redis_pipeline_try_exec(p, &failure) || !rs_fence_replies_ok(p, &failure))
		ereport(DEBUG1,
				(errmsg("redis_sync: could not drop the %d keys Redis refused", nops),
				 errdetail("%s", failure.message)));
	redis_pipeline_free(p);
	pfree(ops);
}

/*
 * Push the sync group.  On failure a strict table raises the ERROR that
 * rolls the transaction back; otherwise the same changes join the outbox
 * part of the plan.
 */
static void
push_sync_group(CommitPlan *plan, const char *version)
{
	RedisFailure failure;
	Pending   **sync_keys = plan->sync_keys;
	int			nsync = plan->nsync;
	ListCell   *lc;

	/*
	 * The committed states were encoded at capture: an abort cannot read
	 * catalogs.  A large transaction does without them: if it aborts after
	 * its push, its keys are deleted (never stale, just missing) and the
	 * worker pushes their committed state from the in-flight markers.
	 */
	pushed_keys = palloc0(sizeof(PushedKey) * Max(nsync, 1));
	for (int i = 0; i < nsync; i++)
		pushed_keys[i].last = sync_keys[i]->last;
	npushed = nsync;
	repair_exactly = nsync <= RS_EXACT_REPAIR_KEYS;
	for (int i = 0; i < nsync && repair_exactly; i++)
		if (sync_keys[i]->last->policy == RS_POLICY_WRITE_THROUGH)
			repair_exactly = prepare_repair(sync_keys[i], &pushed_keys[i].repair);

	if (push(sync_keys, nsync, plan->purges_sync, version, &failure))
		return;

	for (int i = 0; i < nsync; i++)
		rs_stats_add(sync_keys[i]->last->root_relid, RS_C_PUSH_FAILURES, 1);
	if (nsync > 0)
	{
		rs_stats_error(sync_keys[0]->last->root_relid, failure.message);
		rs_stats_flush();		/* survives the ERROR below */
	}
	if (plan->any_strict)
		ereport(ERROR,
				(errcode(failure.sqlstate),
				 errmsg("could not push changes to Redis: %s", failure.message),
				 failure.detail ? errdetail("%s", failure.detail) : 0,
				 errhint("A table synced with consistency \"strict\" is involved, so the transaction was rolled back.")));
	/* eventual: no older value stays readable while Redis is full */
	if (failure.sqlstate == ERRCODE_EXTERNAL_ROUTINE_EXCEPTION &&
		failure.detail != NULL && strstr(failure.detail, "OOM ") != NULL)
		drop_refused_keys(sync_keys, nsync, version);
	/* eventual: the same changes, in the outbox, in this transaction */
	foreach(lc, plan->purges_sync)
		plan->outbox[plan->noutbox++] = lfirst(lc);
	for (int i = 0; i < nsync; i++)
		plan->outbox[plan->noutbox++] = sync_keys[i]->last;
	ereport(DEBUG1,
			(errmsg("redis_sync: push failed, %d changes queued in the outbox", nsync),
			 errdetail("%s", failure.message)));
}

/* write the outbox part of the plan (SPI: needs the active snapshot) */
static void
queue_outbox(CommitPlan *plan, const char *version, bool overflowed)
{
	int			noutbox = plan->noutbox;

	if (noutbox > 0 && !rs_outbox_exists())
	{
		/* DROP EXTENSION earlier in this transaction: nothing to queue into */
		ereport(WARNING,
				(errmsg("redis_sync was dropped in this transaction: %d queued changes are discarded", noutbox),
				 errdetail("The cached keys they were for may be stale.")));
		noutbox = 0;
	}
	if (noutbox > 0)
	{
		for (int i = 0; i < noutbox; i++)
			rs_stats_add(plan->outbox[i]->root_relid, RS_C_QUEUED, 1);

		/*
		 * after an overflow, the buffered changes precede the ones written
		 * since
		 */
		rs_outbox_write(plan->outbox, noutbox,
						overflowed ? rs_capture_overflow_version() : version, 0);
		rs_stat_queued += noutbox;
		wrote_outbox = true;
	}
	if (overflowed)
		wrote_outbox = true;
}

static void
pre_commit(bool prepare)
{
	Pending    *pending;
	int			npending;
	List	   *purges;
	CommitPlan	plan;
	char		version[RS_VERSION_LEN + 1];
	MemoryContext old;
	bool		pushed_snapshot = false;
	bool		overflowed = rs_capture_overflowed();
	int			nchanges;

	(void) rs_capture_changes(&nchanges);
	if (nchanges == 0 && !overflowed)
		return;

	/* no configuration look-up here: the changes carry what they need */
	old = MemoryContextSwitchTo(TopTransactionContext);

	/*
	 * A transaction that outgrew its buffer: the rest goes to the outbox as
	 * it was logged, without coalescing it here first (capture.c).
	 */
	if (overflowed && nchanges > 0)
	{
		if (!ActiveSnapshotSet())
		{
			PushActiveSnapshot(GetTransactionSnapshot());
			pushed_snapshot = true;
		}
		rs_capture_spill_rest();
	}
	rs_version_now(version);
	pending = coalesce(&npending, &purges);
	plan_commit(&plan, pending, npending, purges, prepare, overflowed);
	if (plan.nsync > 0 || plan.purges_sync != NIL)
		push_sync_group(&plan, version);

	/*
	 * Writing the outbox runs SPI, which needs a snapshot; at pre-commit none
	 * may be active.  A transaction that only pushes takes none.
	 */
	if (plan.noutbox > 0 && !ActiveSnapshotSet())
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		pushed_snapshot = true;
	}
	queue_outbox(&plan, version, overflowed);
	MemoryContextSwitchTo(old);
	if (pushed_snapshot)
		PopActiveSnapshot();
}

/*
 * The deletes of a large transaction's abort repair, of keys whose push
 * outcome is unknown (note_outcomes), each call with an in-flight marker of
 * its own naming its keys, so that the worker pushes their committed state
 * (marker_sweep.c: the transaction did not commit).  Such a key may be
 * without a marker of the push: without one of their own the deletes could
 * leave it missing until a resync() (helper-111).  changes[i] is the change
 * ops[i] deletes the key of.  Chunk numbers above the push's: a field of
 * the push is not overwritten.
 */
static void
append_marked_deletes(RedisPipeline *p, FenceOp *ops, Change **changes, int nops)
{
	StringInfoData ident;
	int			chunk = 1 << 30;

	initStringInfo(&ident);
	for (int s = 0, n = 0; s < nops; s += n)
	{
		resetStringInfo(&ident);
		appendStringInfoChar(&ident, '[');
		for (n = 0; s + n < nops && chunk_has_room(&ident, n, rs_chunk_size); n++)
			marker_add(&ident, n, changes[s + n]);
		appendStringInfoChar(&ident, ']');
		rs_fence_append(p, ops + s, n, rs_marker_new_field(chunk++), pstrdup(ident.data), NIL);
	}
	pfree(ident.data);
}

/*
 * Send the abort's repair of nops keys: ops are their committed images
 * (exact) or deletes, whose keys changes[] name; clears, the transaction's
 * markers, go with it (exact only).  Deletes: the first ntaken are of keys
 * whose call Redis applied with its marker, the worker's to repair, and go
 * without one (a delete's first write, its UNLINK, needs no memory, so they
 * land even while Redis is at its maxmemory); the rest carry markers of
 * their own.
 */
static void
send_repair(FenceOp *ops, Change **changes, int nops, int ntaken, List *clears, bool exact)
{
	RedisPipeline *p = redis_pipeline_create();
	RedisFailure failure;

	/*
	 * The markers may go only with the repair of every key they name.  One
	 * apply call on a single Redis clears them in the script that repairs the
	 * keys (atomic; and its first write, the HDEL, needs no memory, so Redis
	 * at its maxmemory still runs the rest).  Several calls (more keys than
	 * redis_sync.chunk_size) or a Redis Cluster (where the clears are
	 * commands of their own): the clears follow once every call has applied
	 * every key.  Clearing them in the first call left the keys of a later
	 * call that Redis refused (out of memory: the push itself had taken Redis
	 * over maxmemory) with the rolled-back transaction's values and no marker
	 * for the worker to repair them from.
	 */
	bool		one_call = nops <= rs_chunk_size && !redis_cluster_mode();

	if (nops == 0)
		rs_fence_append(p, ops, 0, NULL, NULL, clears);
	for (int s = 0; s < (exact ? nops : ntaken); s += rs_chunk_size)
	{
		int			n = Min(rs_chunk_size, (exact ? nops : ntaken) - s);

		/*
		 * The images of a call without the clears go so that Redis over its
		 * maxmemory still restores them: its first write would be an image's
		 * HSET, which Redis refused, key after key, leaving the rolled-back
		 * values until it had memory again (helper-113).  The images replace
		 * the rolled-back values, about the memory those took.
		 */
		if (exact && one_call && clears != NIL)
			rs_fence_append(p, ops + s, n, NULL, NULL, clears);
		else if (exact)
			rs_fence_append_restore(p, ops + s, n);
		else
			rs_fence_append(p, ops + s, n, NULL, NULL, NIL);
	}
	if (!exact)
		append_marked_deletes(p, ops + ntaken, changes + ntaken, nops - ntaken);
	if (redis_pipeline_try_exec(p, &failure) && rs_fence_replies_ok(p, &failure))
	{
		rs_stat_repaired += nops;
		for (int i = 0; i < nops; i++)
			rs_stats_add(changes[i]->root_relid, RS_C_REPAIRED, 1);
		if (!one_call && nops > 0 && clears != NIL)
		{
			/* best effort: a marker left behind is swept by the worker */
			RedisPipeline *c = redis_pipeline_create();

			rs_fence_append(c, ops, 0, NULL, NULL, clears);
			(void) redis_pipeline_try_exec(c, &failure);
			redis_pipeline_free(c);
		}
	}
	else
		ereport(WARNING,
				(errmsg("could not restore %d Redis keys after the transaction rolled back", nops),
				 errdetail("%s", failure.message),
				 errhint("The background worker repairs them from the in-flight marker once Redis answers.")));
	redis_pipeline_free(p);
}

/* after an abort, restore the committed state of every key we pushed */
static void
repair_after_abort(void)
{
	char		version[RS_VERSION_LEN + 1];
	FenceOp    *ops;
	Change	  **changes;
	int			nops = 0;
	int			ntaken = 0;
	List	   *clears = NIL;
	ListCell   *lc;
	DropImages	drops = {NULL, NULL};

	if (npushed == 0)
		return;

	/*
	 * The version of our abort record, not of WAL now: the abort ended the
	 * transaction in the proc array before these callbacks run, so a writer
	 * of the same rows may already have come and pushed.  Its WAL, and so its
	 * version, follows our abort record; ours, from before it, loses to it
	 * whatever the order they reach Redis in.  Our push's version (from
	 * pre-commit) is not newer than this one.
	 */
	if (!XLogRecPtrIsInvalid(ProcLastRecPtr))
		rs_version_at(version, ProcLastRecPtr);
	else
		rs_version_now(version);
	ops = palloc(sizeof(FenceOp) * npushed);
	changes = palloc(sizeof(Change *) * npushed);

	/*
	 * The keys whose call Redis took first, then those of unknown outcome; a
	 * call Redis refused whole left its keys as they were (note_outcomes).
	 */
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < npushed; i++)
		{
			PushedKey  *pk = &pushed_keys[i];

			if (pk->last->policy != RS_POLICY_WRITE_THROUGH)
				continue;		/* a deleted cache entry is never stale */
			if (pk->outcome != (pass == 0 ? PUSH_TAKEN : PUSH_UNKNOWN))
				continue;
			ops[nops].key = pk->last->key;
			ops[nops].version = version;
			ops[nops].ttl_ms = pk->last->ttl_ms;

			/*
			 * Without images, the row's fields go (rs_image_drop_row): fields
			 * the application keeps in the row's hash, and the write-behind
			 * fields of a hash shared with that policy (not yet drained: the
			 * table does not have them), stay.  Deleting the whole key lost
			 * them.
			 */
			ops[nops].img = repair_exactly ? &pk->repair : drop_image(&drops, pk->last->cfg);
			changes[nops] = pk->last;
			nops++;
			if (pass == 0)
				ntaken++;
		}

	/*
	 * Without exact images the markers stay, and the worker re-pushes from
	 * them; the deletes of keys they may not name leave markers of their own
	 * (the worker is asked to sweep after the deletes were sent, so that it
	 * finds the markers at once).
	 */
	if (repair_exactly)
		foreach(lc, rs_markers_of_transaction())
			clears = lappend(clears, lfirst(lc));
	if (nops > 0 || clears != NIL)
		send_repair(ops, changes, nops, ntaken, clears, repair_exactly);
	if (!repair_exactly)
		rs_worker_request_sweep();
}

static void
publish_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			pre_commit(false);
			break;
		case XACT_EVENT_PRE_PREPARE:
			pre_commit(true);
			break;
		case XACT_EVENT_COMMIT:
			rs_markers_end_transaction(true);
			if (wrote_outbox)
				rs_worker_wake_outbox();
			reset_state();
			rs_stats_flush();
			rs_config_release_retired();
			break;
		case XACT_EVENT_ABORT:
			/* an ERROR in the wait of an unfenced push: see killfence.c */
			if (rs_killfence_in_flight())
				rs_killfence_end(false);

			/*
			 * The purge's deletes left tombstones newer than the rows the
			 * table keeps (versions beside the write-behind fields of a table
			 * synced both ways, which warm() leaves alone), and no repair
			 * writes those rows back: warn even when the push's outcome is
			 * unknown (a cancel in its wait, a timeout), which skips the
			 * repair below.
			 */
			if (purge_pushed)
				ereport(WARNING,
						(errmsg("a TRUNCATE or purge was sent to Redis but its transaction rolled back"),
						 errhint("Run redis_sync.warm() on the affected tables to repopulate the cache; redis_sync.resync() for a table that is also write-behind under the same prefix.")));

			/*
			 * A push that timed out may still land; its in-flight marker
			 * lands with it, and the worker repairs from that.  Trying now
			 * would only wait on the same stuck Redis a second time.
			 */
			if (push_maybe_landed && !push_timed_out)
				repair_after_abort();
			reset_state();
			rs_stats_flush();
			rs_config_release_retired();
			break;
		case XACT_EVENT_PREPARE:
			reset_state();
			rs_config_release_retired();
			break;
		default:
			break;
	}
}

/* capture.c queued n changes straight into the outbox (after an overflow) */
void
rs_publish_count_queued(int n)
{
	rs_stat_queued += n;
}

bool		rs_debug_crash_after_push = false;

/* redis_sync.debug_crash_after_push and the commit callback (from _PG_init) */
void
rs_publish_init(void)
{
	DefineCustomBoolVariable("redis_sync.debug_crash_after_push",
							 "For testing only: crash the server right after a pre-commit push reached Redis.",
							 "Simulates a crash between the push and the commit record; the worker must repair the keys.",
							 &rs_debug_crash_after_push,
							 false,
							 PGC_SUSET,
							 GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("redis_sync.bulk_multi",
							 "Sends pre-commit pushes of many keys as MULTI/EXEC instead of the apply script.",
							 "Only on a single Redis 6.2 or later that allows CLIENT INFO, CLIENT LIST and CLIENT KILL; about 3x less Redis CPU per row.",
							 &rs_bulk_multi,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	RegisterXactCallback(publish_xact_callback, NULL);
}

/* redis_sync.session_stats() */
Datum
redis_sync_session_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[6];
	bool		nulls[6] = {0};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = Int64GetDatum((int64) rs_capture_count());
	values[1] = Int64GetDatum((int64) rs_stat_pushed);
	values[2] = Int64GetDatum((int64) redis_round_trips);
	values[3] = Int64GetDatum((int64) rs_stat_chunks);
	values[4] = Int64GetDatum((int64) rs_stat_queued);
	values[5] = Int64GetDatum((int64) rs_stat_repaired);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
