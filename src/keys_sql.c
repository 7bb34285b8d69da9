/*-------------------------------------------------------------------------
 *
 * keys_sql.c
 *		Keys for SQL: pushing the current state of given keys (_push_keys,
 *		behind resync()), and the key rules (escape_key, version_key,
 *		_companion_key), so that SQL never re-implements them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/inval.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "as_owner.h"
#include "drain.h"
#include "fence.h"
#include "subxact.h"
#include "warm.h"
#include "xact_step.h"

PG_FUNCTION_INFO_V1(redis_sync_push_keys);
PG_FUNCTION_INFO_V1(redis_sync_escape_key);
PG_FUNCTION_INFO_V1(redis_sync_companion_key);
PG_FUNCTION_INFO_V1(redis_sync_version_key);

/* whether reading a value of typid can run code other than the core's */
static bool
input_runs_user_code(Oid typid)
{
	return typid >= FirstNormalObjectId || get_typtype(typid) == TYPTYPE_DOMAIN;
}

/* the key values' input and output, as canonical_key_values() checks them */
static bool
key_values_round_trip(SyncConfig *cfg, char **kv, RsCanonicalSave *repin)
{
	for (int k = 0; k < cfg->nkeys; k++)
	{
		Oid			infn;
		Oid			ioparam;
		int32		typmod = rs_key_typmod(cfg->relid, cfg->keys[k].attnum);
		Datum		d;
		char	   *out;

		getTypeInputInfo(cfg->keys[k].typid, &infn, &ioparam);
		d = OidInputFunctionCall(infn, kv[k], ioparam, typmod);
		/* the output of reg* values under the pinned path (repin: it is off) */
		if (repin)
			rs_canonical_path_push(repin);
		out = OutputFunctionCall(&cfg->keys[k].out, d);
		if (repin)
			rs_canonical_path_pop(repin);
		if (strcmp(out, kv[k]) != 0)
			return false;
	}
	return true;
}

/*
 * true when every key value is the canonical text of a value of its column
 * (so some row can have exactly this key).  A value the input refuses (a
 * data exception, a domain's constraint) is no such value.  Anything else --
 * a cancel, a statement timeout (the worker's warm_timeout), an error of the
 * system -- is no verdict on the key: it goes on up (a key taken for one no
 * row can have would be deleted).  When a key column's input can run code
 * other than the core's (a domain's CHECK, an extension's type), it runs in
 * a subtransaction, so that its error is caught safely, whatever that code
 * had acquired; the core's input functions only raise.
 */
static bool
canonical_key_values(SyncConfig *cfg, char **kv)
{
	RsCanonicalSave save;
	volatile bool ok = true;
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	bool		subxact = false;

	for (int k = 0; k < cfg->nkeys && !subxact; k++)
		subxact = input_runs_user_code(cfg->keys[k].typid);

	rs_canonical_enter(&save);
	if (subxact)
	{
		/*
		 * The table's code runs without the pinned search path (a CHECK
		 * function's own SET search_path would not apply under it): as in any
		 * session of the owner's, restricted (keys_to_rows).
		 */
		rs_canonical_path_pop(&save);
		PG_TRY();
		{
			BeginInternalSubTransaction(NULL);
		}
		PG_CATCH();
		{
			/* the pin is off already: leave the canonical section without it */
			save.path_pushed = false;
			rs_canonical_exit(&save);
			PG_RE_THROW();
		}
		PG_END_TRY();
		MemoryContextSwitchTo(cxt);
	}
	PG_TRY();
	{
		ok = key_values_round_trip(cfg, kv, subxact ? &save : NULL);
		if (subxact)
		{
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
	}
	PG_CATCH();
	{
		ErrorData  *ed;
		int			category;

		MemoryContextSwitchTo(cxt);
		ed = CopyErrorData();
		category = ERRCODE_TO_CATEGORY(ed->sqlerrcode);
		if (subxact)
		{
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
		if (category != ERRCODE_DATA_EXCEPTION &&
			category != ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION)
		{
			if (subxact)
				rs_canonical_path_push(&save);
			rs_canonical_exit(&save);
			if (subxact)
				ReThrowError(ed);
			FreeErrorData(ed);
			PG_RE_THROW();
		}
		FreeErrorData(ed);
		FlushErrorState();
		ok = false;
	}
	PG_END_TRY();
	if (subxact)
		rs_canonical_path_push(&save);
	rs_canonical_exit(&save);
	return ok;
}

/* fenced deletes of keys no row can have */
static void
delete_keys(Oid relid, List *keys)
{
	RedisPipeline *p = redis_pipeline_create();
	FenceOp    *ops = palloc(sizeof(FenceOp) * list_length(keys));
	RowImage   *del = palloc0(sizeof(RowImage));
	char		version[RS_VERSION_LEN + 1];
	ListCell   *lc;
	int			n = 0;

	del->op = RS_OP_DELETE;
	rs_version_now(version);
	foreach(lc, keys)
	{
		ops[n].key = lfirst(lc);
		ops[n].img = del;
		ops[n].version = version;
		ops[n].ttl_ms = 0;
		n++;
	}
	for (int s = 0; s < n; s += rs_chunk_size)
		rs_fence_append(p, ops + s, Min(rs_chunk_size, n - s), NULL, NULL, NIL);
	redis_pipeline_exec(p);
	for (int i = 0; i < redis_pipeline_length(p); i++)
		redis_check_reply(p, i, "a resync");
	rs_fence_check_applied(p, relid, false, false);
	redis_pipeline_free(p);
}

/*
 * The keys of cfg's table among keys (each starting with its prefix): the
 * (key, key values) pairs a row could have, and the rest (no row can have
 * them) in *junk.  Reading the key values into the key columns' types runs
 * the table's code (a domain's CHECK): as the owner, restricted, as get()
 * does (readthrough.c), never as a superuser calling resync() nor as the
 * worker refreshing the keys after a Redis restart.
 */
static List *
keys_to_rows(SyncConfig *cfg, char **keys, int n, List **junk)
{
	List	   *volatile pairs = NIL;
	List	   *volatile bad = NIL;
	size_t		plen = strlen(cfg->prefix);
	RsAsOwner	ao;

	rs_as_owner_enter(&ao, rs_rel_owner(cfg->relid));
	PG_TRY();
	{
		for (int i = 0; i < n; i++)
		{
			char	  **kv;
			List	   *vals = NIL;

			if (keys[i] == NULL || strncmp(keys[i], cfg->prefix, plen) != 0)
				continue;
			kv = rs_key_split(keys[i] + plen, cfg->nkeys);
			if (kv == NULL || !canonical_key_values(cfg, kv))
			{
				/* no row can have this key */
				bad = lappend(bad, keys[i]);
				continue;
			}
			for (int k = 0; k < cfg->nkeys; k++)
				vals = lappend(vals, kv[k]);
			pairs = lappend(pairs, list_make2(keys[i], vals));
		}
	}
	PG_FINALLY();
	{
		rs_as_owner_leave(&ao);
	}
	PG_END_TRY();
	*junk = bad;
	return pairs;
}

/* whether relid is also write-behind over the same hashes (one prefix) */
static bool
shares_hashes_with_write_behind(SyncConfig *cfg)
{
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		args[2];
	bool		shared;

	args[0] = ObjectIdGetDatum(cfg->relid);
	args[1] = CStringGetTextDatum(cfg->prefix);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	if (SPI_execute_with_args("SELECT 1 FROM redis_sync.tables "
							  " WHERE relid OPERATOR(pg_catalog.=) $1 "
							  "   AND policy OPERATOR(pg_catalog.=) 'write_behind' "
							  "   AND key_prefix OPERATOR(pg_catalog.=) $2",
							  2, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read redis_sync.tables");
	shared = SPI_processed > 0;
	SPI_finish();
	return shared;
}

/*
 * After Redis restarted (the worker saw a new run_id): push again, from its
 * row, every key Redis has under the prefix of a write-through or
 * invalidate table, and delete those whose row is gone.  A Redis that
 * restarted from persistence may hold older values than the table: an RDB
 * snapshot (Redis's default) or an AOF written every second brings back the
 * dataset of some moment before the restart, with the versions of that
 * moment, which the fence cannot tell from current ones; so can a failover
 * to a replica that lagged.  The rows are read as rs_push_named()'s
 * "settled" way reads them (the version first, then the table's writers
 * waited for, no row locks), so a write committed meanwhile wins.  Keys no
 * row can have are left alone (resync() removes them), and so are the keys
 * of a table that is also write-behind over the same hashes (skipped): a
 * key without a row there can hold a write-behind insert not yet drained.
 *
 * Every table in one SCAN pass (rs_scan_prefixes_pages), each page's keys
 * handed to the table whose prefix they start with.  A pass visits the
 * whole keyspace whatever it matches, so a pass per table cost Redis a pass
 * per table: 100 tables of 1,000 rows restarted from an RDB scanned 20,000
 * pages (13 s of Redis time) where one pass scans 200.
 */
typedef struct RefreshState
{
	RsRefresh  *tabs;			/* the caller's */
	int			ntabs;
	SyncConfig **cfgs;			/* per tab; NULL: left out */
	char	  **prefix;			/* per tab, as the pass began */
	int		   *order;			/* tab indexes by prefix, strcmp order */
	char	  **sorted;			/* their prefixes, in that order */
	int			nsorted;
	int			timeout_ms;
	int64	   *spent_us;		/* per tab, the time its parts took */
	MemoryContext errcxt;		/* where failures are copied */
	char	 ***pend;			/* per tab, its keys waiting (in cxt) */
	int		   *npend;
	int		   *cap;
	int			total;			/* keys waiting, of all tabs */
	int			pending_max;	/* pushed when total reaches it */
	Size		bytes;			/* of the keys waiting */
	MemoryContext cxt;			/* reset after each flush */
	MemoryContext part_cxt;		/* a tab's push, reset after it */
	RsScanPos	scan_pos;		/* the scan's, after the page it gave */
	RsRefreshResume *resume;	/* the caller's; NULL: none */
} RefreshState;

static int
prefix_cmp(const void *a, const void *b, void *arg)
{
	char	  **prefix = (char **) arg;

	return strcmp(prefix[*(const int *) a], prefix[*(const int *) b]);
}

/*
 * The tab whose prefix key starts with, or -1.  Prefixes of this database's
 * write-through and invalidate tables do not overlap (claim.c): a prefix of
 * key is then the greatest prefix not after key, as every string between
 * a prefix and a key beginning with it begins with it too.
 */
static int
tab_of_key(RefreshState *st, const char *key)
{
	int			lo = 0;
	int			hi = st->nsorted - 1;
	int			found = -1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (strcmp(st->sorted[mid], key) <= 0)
		{
			found = mid;
			lo = mid + 1;
		}
		else
			hi = mid - 1;
	}
	if (found < 0 ||
		strncmp(key, st->sorted[found], strlen(st->sorted[found])) != 0)
		return -1;
	return st->order[found];
}

/* whether a table is refreshed, and why not */
typedef enum RefreshAdmit
{
	REFRESH_YES,
	REFRESH_GONE,				/* no longer write-through or invalidate */
	REFRESH_SKIPPED				/* shares its hashes with write-behind, or RLS */
} RefreshAdmit;

/* whether relid is refreshed, its config in *cfg */
static RefreshAdmit
refresh_excluded(Oid relid, SyncConfig **cfg)
{
	*cfg = rs_config_get(relid);
	if (!(*cfg)->synced ||
		((*cfg)->policy != RS_POLICY_WRITE_THROUGH && (*cfg)->policy != RS_POLICY_INVALIDATE))
		return REFRESH_GONE;
	if (shares_hashes_with_write_behind(*cfg) ||
		check_enable_rls(relid, rs_rel_owner(relid), true) == RLS_ENABLED)
		return REFRESH_SKIPPED;
	return REFRESH_YES;
}

/*
 * Run fn(st, i, arg) for tab i in a subtransaction of its own with the
 * step's timeout armed for what is left of the tab's timeout_ms (its parts
 * together are bounded, as one table's refresh was before it was split
 * into parts: tests/t/264); a failure is kept in tabs[i].error (the tab is left
 * out from then on) and the pass goes on, except when Redis cannot be
 * reached (the others would fail the same way): that ERROR propagates.
 */
typedef struct RefreshGuard
{
	RefreshState *st;
	int			i;
	void		(*fn) (RefreshState *, int, void *);
	void	   *arg;
	int64		left;			/* ms of its warm_timeout left; 0: none */
	bool		used_up;		/* cancelled before it began */
	bool		stopping;		/* not begun: the worker is stopping */
	bool		expired;		/* set on failure: its timer had fired */
} RefreshGuard;

static void
refresh_guarded_run(void *arg)
{
	RefreshGuard *g = arg;

	/*
	 * The pass is one transaction, its snapshot taken when it began: a
	 * configuration changed since (unsynced, synced again under another
	 * prefix) would be read as it was then, and cached as current past the
	 * pass (config.c reloads an entry when its invalidation arrives, with the
	 * active snapshot).  Each part reads what is committed now (the latest
	 * snapshot, whatever the isolation level).  The snapshot is popped by the
	 * subtransaction's abort when fn fails.
	 */
	if (g->stopping)
		ereport(ERROR,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("the worker is stopping")));
	if (g->used_up)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("canceling statement due to statement timeout")));
	AcceptInvalidationMessages();
	PushActiveSnapshot(GetLatestSnapshot());
	rs_step_timeout_arm((int) g->left);
	g->fn(g->st, g->i, g->arg);
	rs_step_timeout_check();	/* a cancel caught by the table's code */
	rs_step_timeout_disarm();
	PopActiveSnapshot();
}

/* before the rollback: whether the timer fired, then no cancel left armed */
static void
refresh_guarded_failed(void *arg)
{
	RefreshGuard *g = arg;

	g->expired = g->used_up || rs_step_timeout_expired();
	rs_step_timeout_disarm();
}

static void
refresh_guarded(RefreshState *st, int i, void (*fn) (RefreshState *, int, void *), void *arg)
{
	TimestampTz start = GetCurrentTimestamp();
	RefreshGuard g;
	ErrorData  *edata;

	g.st = st;
	g.i = i;
	g.fn = fn;
	g.arg = arg;
	g.left = st->timeout_ms > 0 ? st->timeout_ms - st->spent_us[i] / 1000 : 0;
	/* its time used up by the parts before: cancelled without a 1 ms timer */
	g.used_up = st->timeout_ms > 0 && g.left <= 0;
	g.expired = false;
	/* at shutdown the next worker goes on (worker.c; never in a backend) */
	g.stopping = rs_worker_stopping();

	edata = rs_subxact_try_ext(refresh_guarded_run, &g, true, st->errcxt,
							   refresh_guarded_failed);
	/* nor the catalog's: no xmin held between parts (worker.c) */
	InvalidateCatalogSnapshot();
	st->spent_us[i] += GetCurrentTimestamp() - start;
	if (edata == NULL)
		return;
	if (edata->sqlerrcode == ERRCODE_CONNECTION_FAILURE ||
		edata->sqlerrcode == ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION)
		ReThrowError(edata);
	st->tabs[i].timed_out = g.expired && edata->sqlerrcode == ERRCODE_QUERY_CANCELED;
	if (st->tabs[i].timed_out)
		edata->message = MemoryContextStrdup(st->errcxt,
											 psprintf("its refresh took longer than redis_sync.warm_timeout (%d ms) and was cancelled",
													  st->timeout_ms));
	else if (rs_step_stopped_at_shutdown(edata))
		edata->message = MemoryContextStrdup(st->errcxt, "its refresh was cancelled at shutdown");
	st->tabs[i].error = edata;
	st->cfgs[i] = NULL;
}

/* refresh_guarded's part at the start: whether tab i takes part */
static void
refresh_admit(RefreshState *st, int i, void *arg)
{
	RefreshAdmit why = refresh_excluded(st->tabs[i].relid, &st->cfgs[i]);

	if (why != REFRESH_YES)
	{
		st->tabs[i].n = why == REFRESH_SKIPPED ? -1 : 0;
		st->cfgs[i] = NULL;
	}
}

/* refresh_guarded's part of a page: tab i's keys of it, pushed again */
typedef struct RefreshPart
{
	char	  **keys;
	int			n;
} RefreshPart;

static void
refresh_part(RefreshState *st, int i, void *arg)
{
	RefreshPart *part = arg;
	SyncConfig *cfg = st->cfgs[i];
	SyncConfig *now;
	List	   *junk;
	List	   *pairs;

	/* unsynced, synced again or changed since the pass began */
	if (refresh_excluded(st->tabs[i].relid, &now) != REFRESH_YES ||
		now->policy != cfg->policy || strcmp(now->prefix, cfg->prefix) != 0)
	{
		st->cfgs[i] = NULL;
		return;
	}
	pairs = keys_to_rows(now, part->keys, part->n, &junk);
	if (pairs != NIL)
		st->tabs[i].n += rs_push_current_settled(st->tabs[i].relid, pairs, 1000);
}

/*
 * Each table's keys wait until pending_max keys of all tables are pending,
 * then every table's are pushed: SCAN's pages hold keys of many tables in
 * hash order (a page of 100 tables' keys has about 10 of each), and a push
 * has a cost of its own (a subtransaction, the query, the wait for writers,
 * a script call: about 0.4 ms).  pending_max is REFRESH_PER_TABLE keys per
 * table, at least REFRESH_PENDING and at most REFRESH_PENDING_MAX (about 6
 * MB of keys of 60 bytes): with 5,000 for 1,000 tables of 100 cached rows
 * each part held 5 keys, and the refresh of their 100,000 keys took 20,000
 * pushes.  The worker holds pending_max keys at most, and at most about
 * REFRESH_PENDING_BYTES of them, however many are cached.
 */
#define REFRESH_PENDING 5000
#define REFRESH_PER_TABLE 100
#define REFRESH_PENDING_MAX 100000

/*
 * The keys waiting are pushed too when their bytes reach this: a count
 * alone bounds the memory only for short keys, and keys of long values
 * (2 kB each: 100,000 keys held 200 MB, and the part's pairs as much
 * again) grew the worker with the number of tables (tests/t/290).
 */
#define REFRESH_PENDING_BYTES (8 * 1024 * 1024)

static void refresh_progress_save(RefreshState *st);

/* every table's pending keys pushed, the pending memory freed */
static void
refresh_flush(RefreshState *st)
{
	for (int i = 0; i < st->ntabs; i++)
	{
		RefreshPart part;

		if (st->npend[i] == 0)
			continue;
		part.keys = st->pend[i];
		part.n = st->npend[i];
		if (st->cfgs[i] != NULL)
		{
			/*
			 * what the push builds from the keys (keys_to_rows' pairs) freed
			 * after it: the caller's context lasts the whole pass
			 */
			MemoryContext old = MemoryContextSwitchTo(st->part_cxt);

			refresh_guarded(st, i, refresh_part, &part);
			MemoryContextSwitchTo(old);
			MemoryContextReset(st->part_cxt);
		}
		st->pend[i] = NULL;
		st->npend[i] = 0;
		st->cap[i] = 0;
	}
	st->total = 0;
	st->bytes = 0;
	MemoryContextReset(st->cxt);
	/* every page so far is done: a failure from here on resumes after it */
	refresh_progress_save(st);
}

/* the pass's progress, in the caller's resume (refresh_flush) */
static void
refresh_progress_save(RefreshState *st)
{
	RsRefreshResume *r = st->resume;

	if (r == NULL || r->ntabs != st->ntabs)
		return;
	for (int i = 0; i < st->ntabs; i++)
	{
		r->n[i] = st->tabs[i].n;
		r->spent_us[i] = st->spent_us[i];
		r->failed[i] = st->tabs[i].error != NULL;
	}
	r->pos = st->scan_pos;
}

/* forget a pass's progress: the next one begins from the start */
void
rs_refresh_resume_reset(RsRefreshResume *resume)
{
	if (resume->ntabs > 0)
	{
		for (int i = 0; i < resume->ntabs; i++)
			if (resume->prefix[i] != NULL)
				pfree(resume->prefix[i]);
		pfree(resume->relids);
		pfree(resume->prefix);
		pfree(resume->n);
		pfree(resume->spent_us);
		pfree(resume->failed);
	}
	resume->ntabs = 0;
	resume->relids = NULL;
	resume->prefix = NULL;
	resume->n = NULL;
	resume->spent_us = NULL;
	resume->failed = NULL;
	resume->pos.master = -1;
}

/*
 * Whether resume is the progress of a pass over the same tables, admitted
 * with the same prefixes as now (a table added, left out or moved to
 * another prefix since: its keys on the pages before would be missed).
 */
static bool
refresh_resumable(RefreshState *st, RsRefreshResume *r)
{
	if (r == NULL || r->ntabs != st->ntabs || r->pos.master < 0)
		return false;
	for (int i = 0; i < st->ntabs; i++)
	{
		if (r->relids[i] != st->tabs[i].relid ||
			(r->prefix[i] == NULL) != (st->prefix[i] == NULL) ||
			(r->prefix[i] != NULL && strcmp(r->prefix[i], st->prefix[i]) != 0))
			return false;
	}
	return true;
}

/* a new pass: resume holds its tables, nothing done yet */
static void
refresh_progress_begin(RefreshState *st, RsRefreshResume *r)
{
	MemoryContext old;

	rs_refresh_resume_reset(r);
	old = MemoryContextSwitchTo(r->cxt);
	r->relids = palloc(sizeof(Oid) * st->ntabs);
	r->prefix = palloc0(sizeof(char *) * st->ntabs);
	r->n = palloc0(sizeof(int64) * st->ntabs);
	r->spent_us = palloc0(sizeof(int64) * st->ntabs);
	r->failed = palloc0(sizeof(bool) * st->ntabs);
	for (int i = 0; i < st->ntabs; i++)
	{
		r->relids[i] = st->tabs[i].relid;
		if (st->prefix[i] != NULL)
			r->prefix[i] = pstrdup(st->prefix[i]);
	}
	r->ntabs = st->ntabs;
	MemoryContextSwitchTo(old);
}

/* the pass's SCAN page: its keys added to their tables' */
static void
refresh_page(char **keys, int n, void *arg)
{
	RefreshState *st = arg;
	MemoryContext old = MemoryContextSwitchTo(st->cxt);

	for (int k = 0; k < n; k++)
	{
		int			i = tab_of_key(st, keys[k]);

		if (i < 0 || st->cfgs[i] == NULL)
			continue;
		if (st->npend[i] == st->cap[i])
		{
			st->cap[i] = Max(16, st->cap[i] * 2);
			st->pend[i] = st->pend[i] == NULL ? palloc(sizeof(char *) * st->cap[i]) :
				repalloc(st->pend[i], sizeof(char *) * st->cap[i]);
		}
		st->pend[i][st->npend[i]++] = pstrdup(keys[k]);
		st->total++;
		st->bytes += strlen(keys[k]) + 1;
	}
	MemoryContextSwitchTo(old);
	if (st->total >= st->pending_max || st->bytes >= REFRESH_PENDING_BYTES)
		refresh_flush(st);
}

void
rs_refresh_cached_keys(RsRefresh *tabs, int ntabs, int timeout_ms, RsRefreshResume *resume)
{
	RefreshState st;

	st.tabs = tabs;
	st.ntabs = ntabs;
	st.cfgs = palloc0(sizeof(SyncConfig *) * ntabs);
	st.prefix = palloc0(sizeof(char *) * ntabs);
	st.pend = palloc0(sizeof(char **) * ntabs);
	st.npend = palloc0(sizeof(int) * ntabs);
	st.cap = palloc0(sizeof(int) * ntabs);
	st.total = 0;
	st.bytes = 0;
	st.pending_max = Min(Max(REFRESH_PENDING, ntabs * REFRESH_PER_TABLE),
						 REFRESH_PENDING_MAX);
	st.order = palloc(sizeof(int) * ntabs);
	st.nsorted = 0;
	st.timeout_ms = timeout_ms;
	st.spent_us = palloc0(sizeof(int64) * ntabs);
	st.errcxt = CurrentMemoryContext;
	st.resume = NULL;
	st.scan_pos.master = -1;
	for (int i = 0; i < ntabs; i++)
	{
		tabs[i].n = 0;
		tabs[i].error = NULL;
		tabs[i].timed_out = false;
		refresh_guarded(&st, i, refresh_admit, NULL);
		if (st.cfgs[i] != NULL)
		{
			st.prefix[i] = pstrdup(st.cfgs[i]->prefix);
			st.order[st.nsorted++] = i;
		}
	}
	if (st.nsorted == 0)
		return;

	/*
	 * An earlier attempt over the same tables failed as a whole (Redis
	 * stopped answering): taken up after the last page whose keys were all
	 * pushed, with what each table had done.  A table whose own part failed
	 * then stays out (logged then; retried in a pass of its own).
	 */
	if (resume != NULL && refresh_resumable(&st, resume))
	{
		for (int i = 0; i < ntabs; i++)
		{
			if (st.cfgs[i] == NULL)
				continue;
			tabs[i].n = resume->n[i];
			st.spent_us[i] = resume->spent_us[i];
			if (resume->failed[i])
			{
				ErrorData  *e = palloc0(sizeof(ErrorData));

				e->elevel = ERROR;
				e->sqlerrcode = ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
				e->message = pstrdup("its refresh failed in an earlier attempt of the pass (see the log then)");
				tabs[i].error = e;
				st.cfgs[i] = NULL;
			}
		}
		st.scan_pos = resume->pos;
		ereport(DEBUG1,
				(errmsg("redis_sync: the refresh of %d tables resumes where its previous attempt left off",
						ntabs)));
	}
	else if (resume != NULL)
		refresh_progress_begin(&st, resume);
	st.resume = resume;
	qsort_arg(st.order, st.nsorted, sizeof(int), prefix_cmp, st.prefix);
	st.sorted = palloc(sizeof(char *) * st.nsorted);
	for (int i = 0; i < st.nsorted; i++)
		st.sorted[i] = st.prefix[st.order[i]];

	/*
	 * Page by page, as SCAN returns them, pushed pending_max keys at a time
	 * (refresh_page).  The prefixes and configs were read at the start: a
	 * table changed since is left out (refresh_part).
	 */
	st.cxt = AllocSetContextCreate(CurrentMemoryContext, "redis_sync refresh keys",
								   ALLOCSET_DEFAULT_SIZES);
	st.part_cxt = AllocSetContextCreate(CurrentMemoryContext, "redis_sync refresh part",
										ALLOCSET_DEFAULT_SIZES);
	rs_scan_prefixes_pages(st.sorted, st.nsorted, &st.scan_pos, refresh_page, &st);
	refresh_flush(&st);
	MemoryContextDelete(st.part_cxt);
	MemoryContextDelete(st.cxt);
}

/*
 * _push_keys(tbl regclass, keys text[]) RETURNS bigint: push the current
 * state of the rows behind the given Redis keys of a write-through table
 * (a key without a row is deleted), fenced.
 */
Datum
redis_sync_push_keys(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	int			n;
	char	  **keys = rs_text_array(PG_GETARG_ARRAYTYPE_P(1), &n);
	SyncConfig *cfg = rs_config_get(relid);
	List	   *pairs;
	List	   *junk;

	if (!pg_class_ownercheck(relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s", get_rel_name(relid))));
	if (!cfg->synced || cfg->policy != RS_POLICY_WRITE_THROUGH)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not synced write-through", get_rel_name(relid))));
	rs_check_no_own_writes(relid, "resync");
	/* see resync(): a key whose row the snapshot does not show is deleted */
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("cannot repair the keys of table \"%s\" in a %s transaction",
						get_rel_name(relid), XactIsoLevel == XACT_SERIALIZABLE ? "SERIALIZABLE" : "REPEATABLE READ"),
				 errdetail("Repairs read the rows as they are now; a row committed after the transaction's snapshot would look deleted, and its key be removed."),
				 errhint("Run it in a READ COMMITTED transaction.")));

	/*
	 * Repairs read and lock the rows as the owner (as_owner.c); under row
	 * security that applies to it, rows hidden from it (or that no UPDATE
	 * policy lets it lock) would look deleted, and their keys be removed.
	 */
	if (n > 0 && check_enable_rls(relid, rs_rel_owner(relid), true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot repair the keys of table \"%s\": row-level security applies to its owner",
						get_rel_name(relid)),
				 errdetail("Repairs read and lock the rows as the owner (FORCE ROW LEVEL SECURITY); the keys of rows the policies hide from it would be deleted."),
				 errhint("Use warm() to fill missing keys, or repair while the table has NO FORCE ROW LEVEL SECURITY.")));
	/* a key no row can have is deleted */
	pairs = keys_to_rows(cfg, keys, n, &junk);
	if (junk != NIL)
		delete_keys(relid, junk);
	if (pairs == NIL)
		PG_RETURN_INT64(list_length(junk));
	PG_RETURN_INT64(rs_push_current(relid, pairs, 1000) + list_length(junk));
}

/* escape_key(VARIADIC vals text[]): the key values escaped and joined (a dirty set member) */
Datum
redis_sync_escape_key(PG_FUNCTION_ARGS)
{
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
	int			n;
	char	  **vals;

	/* VARIADIC ARRAY[...] of several dimensions: not a list of values */
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("escape_key takes a one-dimensional array of key values")));
	vals = rs_text_array(arr, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("escape_key needs at least one key value")));
	for (int i = 0; i < n; i++)
		if (vals[i] == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("key values must not be NULL")));
	PG_RETURN_TEXT_P(cstring_to_text(rs_key_build("", vals, n)));
}

/* _companion_key(key text, suffix text): rs_companion_key, for SQL */
Datum
redis_sync_companion_key(PG_FUNCTION_ARGS)
{
	text	   *key = PG_GETARG_TEXT_PP(0);
	char	   *suffix = text_to_cstring(PG_GETARG_TEXT_PP(1));

	PG_RETURN_TEXT_P(cstring_to_text(rs_companion_key(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key), suffix)));
}

/* version_key(key text): the key holding key's version */
Datum
redis_sync_version_key(PG_FUNCTION_ARGS)
{
	text	   *key = PG_GETARG_TEXT_PP(0);

	PG_RETURN_TEXT_P(cstring_to_text(rs_version_key_str(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key))));
}
