/*-------------------------------------------------------------------------
 *
 * stats.c
 *		Statistics of redis_sync: per-table and per-database counters and the
 *		SQL functions behind redis_sync.stats and redis_sync.worker_stats.
 *
 * Per-table counters (keyed by database and table OID, at most
 * RS_MAX_TABLES entries) live in a shared hash table of this module.
 * Backends accumulate their per-table deltas locally and add them under one
 * exclusive LWLock acquisition at transaction end, so a commit costs one
 * lock, not one per row.  Counters only grow (invariant "counters never go
 * backwards" in redis_sync.h): they live as long as the server; a restart
 * resets them (documented), and redis_sync.stats_reset() zeroes them.
 *
 * Per-database counters (round trips, worker rounds, circuit opens) are
 * atomics in the database's slot (shmem.c); this module reads the rest of
 * a slot (worker, circuit breaker) to build the worker_stats rows.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "allowlist.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(redis_sync_table_stats);
PG_FUNCTION_INFO_V1(redis_sync_global_stats);
PG_FUNCTION_INFO_V1(redis_sync_worker_restarts);
PG_FUNCTION_INFO_V1(redis_sync_worker_cluster);
PG_FUNCTION_INFO_V1(redis_sync_stats_reset);
PG_FUNCTION_INFO_V1(redis_sync_database_stats);

#define RS_MAX_TABLES 1024

typedef struct TableStatsKey
{
	Oid			dbid;
	Oid			relid;
} TableStatsKey;

typedef struct TableStats
{
	TableStatsKey key;
	int64		counters[RS_NUM_COUNTERS];
	double		drain_lag;		/* seconds, write-behind */
	char		last_error[RS_ERRLEN];
	TimestampTz last_error_at;
} TableStats;

/* server-wide part of the statistics */
typedef struct RsStatsShared
{
	LWLock	   *lock;			/* protects the table hash */
	slock_t		mutex;			/* protects the fields below */
	TimestampTz reset_at;
	char		cluster[2048];	/* Redis Cluster as the worker sees it (JSON),
								 * "" */
} RsStatsShared;

static RsStatsShared *rs_stats_shared = NULL;
static HTAB *rs_tables = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

typedef struct LocalStats
{
	Oid			relid;
	int64		counters[RS_NUM_COUNTERS];
	char	   *error;
	bool		has_lag;
	double		lag;
} LocalStats;

#define MAX_LOCAL 32
static LocalStats local[MAX_LOCAL];
static int	nlocal = 0;


static Size
stats_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(RsStatsShared)),
					hash_estimate_size(RS_MAX_TABLES, sizeof(TableStats)));
}

static void
stats_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(stats_shmem_size());
	RequestNamedLWLockTranche("redis_sync", 1);
}

static void
stats_shmem_startup(void)
{
	bool		found;
	HASHCTL		ctl;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	rs_stats_shared = ShmemInitStruct("redis_sync stats", sizeof(RsStatsShared), &found);
	if (!found)
	{
		memset(rs_stats_shared, 0, sizeof(RsStatsShared));
		rs_stats_shared->lock = &(GetNamedLWLockTranche("redis_sync"))->lock;
		SpinLockInit(&rs_stats_shared->mutex);
		rs_stats_shared->reset_at = GetCurrentTimestamp();
	}
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(TableStatsKey);
	ctl.entrysize = sizeof(TableStats);
	rs_tables = ShmemInitHash("redis_sync table stats", RS_MAX_TABLES, RS_MAX_TABLES,
							  &ctl, HASH_ELEM | HASH_BLOBS);
	LWLockRelease(AddinShmemInitLock);
}

/* from _PG_init (preloaded only): the shared table of counters */
void
rs_stats_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = stats_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = stats_shmem_startup;
}

/* counter c of relid (all tables when InvalidOid) since the counters started */
int64
rs_stats_counter(Oid relid, RsCounter c)
{
	HASH_SEQ_STATUS status;
	TableStats *t;
	int64		n = 0;

	if (rs_stats_shared == NULL)
		return 0;
	LWLockAcquire(rs_stats_shared->lock, LW_SHARED);
	hash_seq_init(&status, rs_tables);
	while ((t = hash_seq_search(&status)) != NULL)
		if (t->key.dbid == MyDatabaseId && (relid == InvalidOid || t->key.relid == relid))
			n += t->counters[c];
	LWLockRelease(rs_stats_shared->lock);
	return n;
}

/* rows applied to relid (all tables when InvalidOid) since the counters started */
int64
rs_stats_applied(Oid relid)
{
	return rs_stats_counter(relid, RS_C_APPLIED);
}

/* relid's last error into buf ("" when none) */
void
rs_stats_last_error(Oid relid, char *buf, size_t len)
{
	TableStatsKey key;
	TableStats *t;

	buf[0] = '\0';
	if (rs_stats_shared == NULL)
		return;
	key.dbid = MyDatabaseId;
	key.relid = relid;
	LWLockAcquire(rs_stats_shared->lock, LW_SHARED);
	t = hash_search(rs_tables, &key, HASH_FIND, NULL);
	if (t != NULL)
		strlcpy(buf, t->last_error, len);
	LWLockRelease(rs_stats_shared->lock);
}

/* ----------------------------------------------------------------
 * Statistics
 * ---------------------------------------------------------------- */

static LocalStats *
local_for(Oid relid)
{
	for (int i = 0; i < nlocal; i++)
		if (local[i].relid == relid)
			return &local[i];
	if (nlocal == MAX_LOCAL)
		rs_stats_flush();
	memset(&local[nlocal], 0, sizeof(LocalStats));
	local[nlocal].relid = relid;
	return &local[nlocal++];
}

void
rs_stats_add(Oid relid, RsCounter c, int64 n)
{
	if (rs_stats_shared == NULL || n == 0)
		return;
	local_for(relid)->counters[c] += n;
}

void
rs_stats_set_lag(Oid relid, double seconds)
{
	LocalStats *l;

	if (rs_stats_shared == NULL)
		return;
	l = local_for(relid);
	l->has_lag = true;
	l->lag = seconds;
}

void
rs_stats_error(Oid relid, const char *msg)
{
	LocalStats *l;

	if (rs_stats_shared == NULL)
		return;
	l = local_for(relid);
	if (l->error)
		pfree(l->error);
	l->error = MemoryContextStrdup(TopMemoryContext, msg);
}

void
rs_stats_flush(void)
{
	TimestampTz now;

	if (rs_stats_shared == NULL || nlocal == 0)
		return;
	now = GetCurrentTimestamp();
	LWLockAcquire(rs_stats_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < nlocal; i++)
	{
		TableStatsKey key;
		TableStats *t;
		bool		found;

		key.dbid = MyDatabaseId;
		key.relid = local[i].relid;
		t = hash_search(rs_tables, &key, HASH_ENTER_NULL, &found);
		if (t == NULL)
			continue;			/* table full: counted nowhere */
		if (!found)
		{
			memset(((char *) t) + sizeof(TableStatsKey), 0, sizeof(TableStats) - sizeof(TableStatsKey));
		}
		for (int c = 0; c < RS_NUM_COUNTERS; c++)
			t->counters[c] += local[i].counters[c];
		if (local[i].has_lag)
			t->drain_lag = local[i].lag;
		if (local[i].error)
		{
			strlcpy(t->last_error, local[i].error, RS_ERRLEN);
			t->last_error_at = now;
		}
	}
	LWLockRelease(rs_stats_shared->lock);
	for (int i = 0; i < nlocal; i++)
		if (local[i].error)
			pfree(local[i].error);
	nlocal = 0;
}

void
rs_stats_round_trip(void)
{
	if (rs_shmem_ready())
		pg_atomic_fetch_add_u64(&rs_my_slot()->round_trips, 1);
}

void
rs_stats_worker_round(void)
{
	if (rs_shmem_ready())
		pg_atomic_fetch_add_u64(&rs_my_slot()->worker_rounds, 1);
}

/* ----------------------------------------------------------------
 * SQL functions behind redis_sync.stats
 * ---------------------------------------------------------------- */

static void
require_shmem(void)
{
	rs_require_preload("redis_sync.stats");
}

/* _table_stats(): one row per table of this database */
Datum
redis_sync_table_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASH_SEQ_STATUS status;
	TableStats *t;

	require_shmem();
	InitMaterializedSRF(fcinfo, 0);
	LWLockAcquire(rs_stats_shared->lock, LW_SHARED);
	hash_seq_init(&status, rs_tables);
	while ((t = hash_seq_search(&status)) != NULL)
	{
		Datum		values[RS_NUM_COUNTERS + 4];
		bool		nulls[RS_NUM_COUNTERS + 4] = {0};
		int			k = 0;

		if (t->key.dbid != MyDatabaseId)
			continue;
		values[k++] = ObjectIdGetDatum(t->key.relid);
		for (int c = 0; c < RS_NUM_COUNTERS; c++)
			values[k++] = Int64GetDatum(t->counters[c]);
		values[k] = Float8GetDatum(t->drain_lag);
		nulls[k++] = t->counters[RS_C_CLAIMED] == 0;
		values[k] = CStringGetTextDatum(t->last_error);
		nulls[k++] = t->last_error[0] == '\0';
		values[k] = TimestampTzGetDatum(t->last_error_at);
		nulls[k++] = t->last_error_at == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(rs_stats_shared->lock);
	return (Datum) 0;
}

/* the 12 columns of _global_stats() for one database's slot (a copy) */
static void
slot_row(RsDbSlot *sl, Datum *values, bool *nulls)
{
	RsDbSlot	s;

	SpinLockAcquire(&sl->mutex);
	memcpy(&s, sl, sizeof(RsDbSlot));
	SpinLockRelease(&sl->mutex);

	values[0] = Int64GetDatum((int64) pg_atomic_read_u64(&sl->round_trips));
	values[1] = Int64GetDatum((int64) pg_atomic_read_u64(&sl->worker_rounds));
	values[2] = BoolGetDatum(s.worker_latch != NULL && !s.pause_requested);
	values[3] = Int32GetDatum(s.worker_pid);
	nulls[3] = s.worker_pid == 0;
	values[4] = CStringGetTextDatum(s.open ? "open" : "closed");
	values[5] = TimestampTzGetDatum(s.changed_at);
	nulls[5] = s.changed_at == 0;
	values[6] = Int32GetDatum(s.failures);
	values[7] = Int64GetDatum((int64) pg_atomic_read_u64(&sl->circuit_opens));
	values[8] = CStringGetTextDatum(s.last_error);
	nulls[8] = s.last_error[0] == '\0';
	values[9] = TimestampTzGetDatum(s.last_error_at);
	nulls[9] = s.last_error_at == 0;
	values[10] = CStringGetTextDatum(s.run_id);
	nulls[10] = s.run_id[0] == '\0';
	SpinLockAcquire(&rs_stats_shared->mutex);
	values[11] = TimestampTzGetDatum(rs_stats_shared->reset_at);
	SpinLockRelease(&rs_stats_shared->mutex);
}

static int64
slot_restarts(RsDbSlot *sl)
{
	uint64		n;

	SpinLockAcquire(&sl->mutex);
	n = sl->worker_starts;
	SpinLockRelease(&sl->mutex);
	return n > 1 ? (int64) (n - 1) : 0;
}

/* what the worker of a database is doing, for worker_stats.worker_state */
static const char *
slot_state(RsDbSlot *sl, char *buf, size_t len)
{
	RsDbSlot	s;

	SpinLockAcquire(&sl->mutex);
	memcpy(&s, sl, sizeof(RsDbSlot));
	SpinLockRelease(&sl->mutex);
	if (sl == rs_nodb_slot())
		return rs_database_served(MyDatabaseId) ? "no worker yet" : "not in redis_sync.database";
	if (s.hold)
		return "stopped for ALTER/DROP DATABASE";
	if (s.worker_latch != NULL)
		return s.pause_requested ? "paused" : "running";
	if (s.no_worker)
	{
		snprintf(buf, len, "no worker: %s", s.no_worker_reason);
		return buf;
	}
	return s.want ? "starting" : "stopping";
}

/* _global_stats(): one row, this database's worker */
Datum
redis_sync_global_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[12];
	bool		nulls[12] = {0};

	require_shmem();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	slot_row(rs_my_slot(), values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* the worker publishes what it sees of a Redis Cluster ("" on a single Redis) */
void
rs_stats_set_cluster(const char *json)
{
	if (rs_stats_shared == NULL)
		return;
	SpinLockAcquire(&rs_stats_shared->mutex);
	strlcpy(rs_stats_shared->cluster, json ? json : "", sizeof(rs_stats_shared->cluster));
	SpinLockRelease(&rs_stats_shared->mutex);
}

/* _worker_cluster(): that JSON, or NULL */
Datum
redis_sync_worker_cluster(PG_FUNCTION_ARGS)
{
	char		buf[2048];

	if (rs_stats_shared == NULL)
		PG_RETURN_NULL();
	SpinLockAcquire(&rs_stats_shared->mutex);
	memcpy(buf, rs_stats_shared->cluster, sizeof(buf));
	SpinLockRelease(&rs_stats_shared->mutex);
	if (buf[0] == '\0')
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(buf));
}

/*
 * _database_stats(): one row per database with the extension that the
 * launcher knows of (and always one for the current database), its
 * worker and circuit breaker: the columns of _global_stats(), then datid,
 * database, worker_restarts, worker_state.
 */
Datum
redis_sync_database_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		mine_seen = false;

	require_shmem();
	InitMaterializedSRF(fcinfo, 0);
	for (int i = -1; i < rs_nslots(); i++)
	{
		RsDbSlot   *sl;
		Oid			dbid;
		bool		probing;
		Datum		values[16];
		bool		nulls[16] = {0};
		char		buf[96];
		char	   *name;
		NameData	dbname;

		if (i < 0)
		{
			/* the current database, when it has no slot */
			if (rs_my_slot() != rs_nodb_slot())
				continue;
			sl = rs_nodb_slot();
			dbid = MyDatabaseId;
			probing = false;
		}
		else
		{
			sl = rs_slot(i);
			SpinLockAcquire(&sl->mutex);
			dbid = sl->dbid;
			probing = sl->probing;
			SpinLockRelease(&sl->mutex);
			if (!OidIsValid(dbid) || (probing && dbid != MyDatabaseId))
				continue;
		}
		name = get_database_name(dbid);
		if (name == NULL)
			continue;			/* dropped meanwhile */
		mine_seen |= dbid == MyDatabaseId;
		slot_row(sl, values, nulls);
		values[12] = ObjectIdGetDatum(dbid);
		namestrcpy(&dbname, name);
		values[13] = NameGetDatum(&dbname);
		values[14] = Int64GetDatum(slot_restarts(sl));
		values[15] = CStringGetTextDatum(slot_state(sl, buf, sizeof(buf)));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	(void) mine_seen;
	return (Datum) 0;
}

/* _worker_restarts(): workers of this database started after the first */
Datum
redis_sync_worker_restarts(PG_FUNCTION_ARGS)
{
	require_shmem();
	PG_RETURN_INT64(slot_restarts(rs_my_slot()));
}

/* stats_reset(): every database's counters */
Datum
redis_sync_stats_reset(PG_FUNCTION_ARGS)
{
	HASH_SEQ_STATUS status;
	TableStats *t;

	require_shmem();
	LWLockAcquire(rs_stats_shared->lock, LW_EXCLUSIVE);
	hash_seq_init(&status, rs_tables);
	while ((t = hash_seq_search(&status)) != NULL)
		hash_search(rs_tables, &t->key, HASH_REMOVE, NULL);
	for (int i = -1; i < rs_nslots(); i++)
	{
		RsDbSlot   *sl = i < 0 ? rs_nodb_slot() : rs_slot(i);

		pg_atomic_write_u64(&sl->round_trips, 0);
		pg_atomic_write_u64(&sl->worker_rounds, 0);
		pg_atomic_write_u64(&sl->circuit_opens, 0);
		SpinLockAcquire(&sl->mutex);
		sl->worker_starts = sl->worker_pid != 0 ? 1 : 0;
		sl->last_error[0] = '\0';
		sl->last_error_at = 0;
		SpinLockRelease(&sl->mutex);
	}
	SpinLockAcquire(&rs_stats_shared->mutex);
	rs_stats_shared->reset_at = GetCurrentTimestamp();
	SpinLockRelease(&rs_stats_shared->mutex);
	LWLockRelease(rs_stats_shared->lock);
	nlocal = 0;
	PG_RETURN_VOID();
}
