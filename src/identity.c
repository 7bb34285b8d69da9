/*-------------------------------------------------------------------------
 *
 * identity.c
 *		Who this database was: the server (system identifier) it ran on and
 *		the timeline base of its versions, kept across pg_upgrade.
 *
 * pg_upgrade makes a new cluster: a new system identifier and WAL timeline
 * 1, whatever timeline the old cluster had reached (a promoted standby runs
 * on 2 or more).  A version begins with the timeline (encode.c), so every
 * version of the upgraded cluster compared below the ones the old cluster
 * left in Redis: fenced writes (async delivery, repairs, read-through fills)
 * were refused as older and their keys stayed stale for good.  And the key
 * prefix claims (claim.c) name the old system identifier: write_through()
 * of the database's own tables failed on them, unsync() left them behind.
 *
 * redis_sync._identity (one row, an extension table that is not dumped:
 * pg_upgrade carries it, a dump and restore makes a new one) holds the
 * system identifier and database the row was written on, the timeline base
 * and the highest timeline the database's worker saw there.  The timeline
 * part of a version is base + WAL timeline.  When the row names another
 * system (the cluster was made by pg_upgrade), the base in force is the
 * row's base + its highest timeline, so the new cluster's versions begin at
 * or above the old ones (an equal timeline part is ordered by the epoch,
 * which a cluster made by pg_upgrade starts at the clock, above the old
 * cluster's).  Every backend works that out from the row as it is; the
 * worker then rewrites the row to the new system (the same base), and the
 * old identity's claims of this database in Redis to the new one
 * (rs_identity_adopt_claims; write_through() and unsync() do that too).
 * A larger base is always safe (versions only need to grow), so a copy of
 * a database made by CREATE DATABASE ... TEMPLATE, whose row names the
 * template, keeps its base, and adopts no claims.
 *
 * Backends read the row once (directly, without SQL) and keep the base
 * until the table is dropped (DROP EXTENSION); the worker records a new
 * timeline (a promotion) in the row at its next round.  The worker's
 * changes of the row keep its base in force.  A row the extension script
 * makes starts at the cluster's floor (FLOOR_FILE): the highest base a
 * database of the cluster used.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid_d.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "as_owner.h"
#include "claim.h"
#include "cluster.h"
#include "encode.h"
#include "fence.h"
#include "identity.h"
#include "redis_client.h"

PG_FUNCTION_INFO_V1(redis_sync_identity_now);

/* the row, as read */
typedef struct IdentityRow
{
	bool		found;
	char		sysid[MAXINT8LEN + 2];	/* unsigned decimal */
	Oid			database;
	int32		base;
	int32		max_timeline;
} IdentityRow;

/*
 * The highest base any database of this cluster used, in the data
 * directory: a row made later (CREATE EXTENSION again, in this or another
 * database) starts there, not at 0, because Redis may still hold that
 * database's keys with versions of that base.
 */
#define FLOOR_FILE "redis_sync.timeline_base"
#define FLOOR_TMP "redis_sync.timeline_base.tmp"

static bool base_loaded = false;
static Oid	base_relid = InvalidOid;	/* the row's table, for invalidation */
static bool callback_registered = false;
static uint32 base_in_force = 0;
static bool claims_adopted = false;
static TimeLineID checked_timeline = 0; /* the worker's: row up to date */

/* this server's system identifier as the row spells it */
static void
my_sysid(char *buf)
{
	snprintf(buf, MAXINT8LEN + 2, UINT64_FORMAT, GetSystemIdentifier());
}

static TimeLineID
my_timeline(void)
{
	return RecoveryInProgress() ? 0 : GetWALInsertionTimeLine();
}

/* redis_sync._identity, or InvalidOid (0.1's objects: not there yet) */
static Oid
identity_relid(void)
{
	Oid			nsp = get_namespace_oid("redis_sync", true);

	return OidIsValid(nsp) ? get_relname_relid("_identity", nsp) : InvalidOid;
}

/*
 * Read the row (as committed now) into row.  With SnapshotSelf, not an MVCC
 * snapshot: a SERIALIZABLE transaction's first version (at pre-commit) read
 * it under predicate locking, which failed a doomed transaction before its
 * push instead of after it (isolation write_through_serializable) and left
 * SIRead locks on the table.  The worker's changes keep the base in force,
 * so either version of a row it is updating gives the same base.
 */
static void
read_row(IdentityRow *row)
{
	Oid			relid = identity_relid();
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;

	memset(row, 0, sizeof(*row));
	if (!OidIsValid(relid))
		return;
	rel = table_open(relid, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	scan = table_beginscan(rel, SnapshotSelf, 0, NULL);
	if (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		TupleDesc	td = RelationGetDescr(rel);
		bool		isnull[4];
		Datum		v[4];
		const char *names[4] = {"system_identifier", "database", "timeline_base", "max_timeline"};

		for (int c = 0; c < 4; c++)
		{
			int			attno = InvalidAttrNumber;

			for (int i = 0; i < td->natts; i++)
				if (!TupleDescAttr(td, i)->attisdropped &&
					strcmp(NameStr(TupleDescAttr(td, i)->attname), names[c]) == 0)
					attno = i + 1;
			isnull[c] = true;
			if (attno != InvalidAttrNumber)
				v[c] = slot_getattr(slot, attno, &isnull[c]);
		}
		if (!isnull[0] && !isnull[1] && !isnull[2] && !isnull[3])
		{
			row->found = true;
			text_to_cstring_buffer(DatumGetTextPP(v[0]), row->sysid, sizeof(row->sysid));
			row->database = DatumGetObjectId(v[1]);
			row->base = Max(DatumGetInt32(v[2]), 0);
			row->max_timeline = Max(DatumGetInt32(v[3]), 0);
		}
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);
}

/* the floor (0 when unknown: a read failure is only logged) */
static uint32
floor_read(void)
{
	uint32		v;

	return rs_file_read_uint32(FLOOR_FILE, &v, true, WARNING) ? v : 0;
}

/* raise the floor to base (a failure is only logged) */
static void
floor_raise(uint32 base)
{
	uint32		stored;

	if (base == 0)
		return;
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	if (rs_file_read_uint32(FLOOR_FILE, &stored, true, WARNING) && base > stored)
		(void) rs_file_write_uint32(FLOOR_FILE, FLOOR_TMP, base, WARNING);
	LWLockRelease(AddinShmemInitLock);
}

/* the table was dropped (DROP EXTENSION) or changed: read the row again */
static void
identity_relcache_cb(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == base_relid)
		base_loaded = false;
}

/*
 * The base in force for a row: see the file header.  Without a row (a
 * superuser deleted it) the cluster's floor, as for a row made anew: at
 * least the base any backend of the cluster used, which Redis may hold
 * versions of (it was 0, and every version then compared below them).
 */
static uint32
base_of(const IdentityRow *row)
{
	char		me[MAXINT8LEN + 2];

	if (!row->found)
		return floor_read();
	my_sysid(me);
	if (strcmp(row->sysid, me) == 0)
		return (uint32) row->base;
	return (uint32) row->base + (uint32) row->max_timeline;
}

/*
 * redis_sync._identity is being dropped (DROP EXTENSION, or the table
 * itself): raise the cluster's floor to the row's base in force first, so
 * that a row made later (CREATE EXTENSION again) starts at or above it.
 * Without this, a database pg_upgrade'd whose row nothing had read yet (no
 * version computed, the worker not yet through: Redis out of reach) lost
 * its base: the floor of the new cluster was still 0, and the versions of
 * the extension created again compared below the old cluster's in Redis.
 */
void
rs_identity_drop(Oid relid)
{
	IdentityRow row;

	if (!IsTransactionState() || !OidIsValid(relid) || relid != identity_relid())
		return;
	read_row(&row);
	floor_raise(base_of(&row));
}

/*
 * The timeline base of this database's versions (encode.c adds it to the
 * WAL timeline).  Read once per backend, in a transaction (again after
 * the table's invalidation); outside one, the base read last.
 */
uint32
rs_identity_timeline_base(void)
{
	IdentityRow row;

	if (base_loaded)
		return base_in_force;

	/*
	 * Outside a transaction (an abort callback's repair): the base read last,
	 * also after an invalidation asked for a new read (0 before the first
	 * read: no push of this backend took a version before it).
	 */
	if (!IsTransactionState() || !OidIsValid(MyDatabaseId))
		return base_in_force;
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(identity_relcache_cb, (Datum) 0);
		callback_registered = true;
	}
	base_relid = identity_relid();
	read_row(&row);
	base_in_force = base_of(&row);
	base_loaded = true;
	floor_raise(base_in_force);
	return base_in_force;
}

/*
 * Rewrite the claims this database made under another system identifier
 * (the cluster it was pg_upgrade'd from) to this one, in one script: each
 * claim whose holder begins with "<old>/<database>/" keeps its table and
 * fields, and its description names this server.
 */
static RedisScript adopt_script = REDIS_SCRIPT("redis_sync_adopt_claims",
											   "local old, new = ARGV[1], ARGV[2]\n"
											   "local olds, news = ' on server ' .. ARGV[3], ' on server ' .. ARGV[4]\n"
											   "local all = redis.call('HGETALL', KEYS[1])\n"
											   "local n = 0\n"
											   "for j = 1, #all, 2 do\n"
											   "  local v = all[j + 1]\n"
											   "  if string.sub(v, 1, #old) == old then\n"
											   "    local rest = string.sub(v, #old + 1)\n"
											   "    if string.sub(rest, -#olds) == olds then\n"
											   "      rest = string.sub(rest, 1, #rest - #olds) .. news\n"
											   "    end\n"
											   "    redis.call('HSET', KEYS[1], all[j], new .. rest)\n"
											   "    n = n + 1\n"
											   "  end\n"
											   "end\n"
											   "return n\n");

/* adopt the claims of row's identity; false (failure filled) if Redis failed */
static bool
adopt_claims(const IdentityRow *row, RedisFailure *failure)
{
	char		me[MAXINT8LEN + 2];
	const char *argv[5];
	RedisPipeline *p;
	bool		ok;

	my_sysid(me);
	argv[0] = RS_CLAIMS_KEY;
	argv[1] = psprintf("%s/%u/", row->sysid, MyDatabaseId);
	argv[2] = psprintf("%s/%u/", me, MyDatabaseId);
	argv[3] = row->sysid;
	argv[4] = me;
	p = redis_pipeline_create();
	redis_pipeline_append_script(p, &adopt_script, 1, 5, argv, NULL);
	ok = redis_pipeline_try_exec(p, failure);
	if (ok)
		redis_check_reply(p, 0, "the adoption of key prefix claims");
	redis_pipeline_free(p);
	return ok;
}

/*
 * The in-flight markers (fence.c) of this database are kept in a hash named
 * after the system identifier (redis_sync:inflight:<system>:<database>, on
 * a cluster one per slot: "<that>:{<tag>}"), so after pg_upgrade the
 * worker's sweep no longer sees the markers the old cluster left (a
 * transaction that pushed and then did not commit, not yet repaired): its
 * keys would keep the values that never committed.  The worker moves them
 * into this system's hash, with those set aside (":failed"); the repair
 * attempts counted (":attempts") are dropped.  A moved marker names an
 * earlier server run, so the sweep repairs its keys (marker_sweep.c),
 * which is always safe.
 */
static RedisScript adopt_markers_script = REDIS_SCRIPT("redis_sync_adopt_markers",
													   "local n = 0\n"
													   "for i = 1, 3, 2 do\n"
													   "  local all = redis.call('HGETALL', KEYS[i])\n"
													   "  for j = 1, #all, 2 do\n"
													   "    redis.call('HSETNX', KEYS[i + 1], all[j], all[j + 1])\n"
													   "    n = n + 1\n"
													   "  end\n"
													   "  redis.call('DEL', KEYS[i])\n"
													   "end\n"
													   "redis.call('DEL', KEYS[5])\n"
													   "return n\n");

/* queue the move of the markers from hash old to hash new (one slot) */
static void
append_adopt_markers(RedisPipeline *p, const char *old, const char *new)
{
	const char *argv[5];

	argv[0] = old;
	argv[1] = new;
	argv[2] = psprintf("%s:failed", old);
	argv[3] = psprintf("%s:failed", new);
	argv[4] = psprintf("%s:attempts", old);
	redis_pipeline_append_script(p, &adopt_markers_script, 5, 5, argv, NULL);
}

/* adopt the in-flight markers of row's identity; false (failure filled) if Redis failed */
static bool
adopt_markers(const IdentityRow *row, RedisFailure *failure)
{
	char	   *old = rs_marker_key_of(row->sysid);
	RedisPipeline *p = redis_pipeline_create();
	int			n = 0;
	bool		ok;

	if (!redis_cluster_mode())
	{
		append_adopt_markers(p, old, rs_marker_key());
		n = 1;
	}
	else
	{
		/* every slot: a one-time cost of a few ms of Redis time per master */
		for (int s = 0; s < RS_CLUSTER_SLOTS; s++, n++)
			append_adopt_markers(p, rs_slot_key(old, s), rs_marker_key_for_slot(s));
	}
	ok = redis_pipeline_try_exec(p, failure);
	for (int i = 0; ok && i < n; i++)
		redis_check_reply(p, i, "the adoption of in-flight markers");
	redis_pipeline_free(p);
	return ok;
}

/*
 * Before a claim is checked or released (claim.c): when this database was
 * pg_upgrade'd and the worker has not yet adopted the old identity's
 * claims, adopt them now (once per backend; nothing when Redis cannot be
 * reached, the claim then says so itself).
 */
void
rs_identity_adopt_claims(void)
{
	IdentityRow row;
	char		me[MAXINT8LEN + 2];
	RedisFailure failure;

	if (claims_adopted)
		return;
	read_row(&row);
	my_sysid(me);
	if (!row.found || strcmp(row.sysid, me) == 0 || row.database != MyDatabaseId)
	{
		claims_adopted = true;
		return;
	}
	if (adopt_claims(&row, &failure))
		claims_adopted = true;
}

/* run one statement of the worker's bookkeeping as the bootstrap superuser */
static void
write_row(const char *sql, int nargs, Oid *types, Datum *args)
{
	RsAsOwner	ao = {0};

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	rs_as_owner_enter(&ao, BOOTSTRAP_SUPERUSERID);
	if (SPI_execute_with_args(sql, nargs, types, args, NULL, false, 0) < 0)
		elog(ERROR, "redis_sync: could not write redis_sync._identity");
	rs_as_owner_leave(&ao);
	SPI_finish();
}

/*
 * The worker, in a transaction, when it first reaches Redis and whenever
 * the timeline changed since: an empty table gets this server's row; a row
 * of another system (pg_upgrade) has its claims adopted, then names this
 * system with the base in force; a row of another database (a template's)
 * names this one; a newer timeline (a promotion) is recorded.
 */
bool
rs_identity_worker_due(void)
{
	TimeLineID	tli = my_timeline();

	return tli != 0 && tli != checked_timeline;
}

void
rs_identity_worker_check(void)
{
	IdentityRow row;
	char		me[MAXINT8LEN + 2];
	TimeLineID	tli = my_timeline();
	Oid			types[4] = {TEXTOID, OIDOID, INT4OID, INT4OID};
	Datum		args[4];
	RedisFailure failure;

	if (!rs_identity_worker_due() || !OidIsValid(identity_relid()))
		return;
	read_row(&row);
	my_sysid(me);
	args[0] = CStringGetTextDatum(me);
	args[1] = ObjectIdGetDatum(MyDatabaseId);
	args[2] = Int32GetDatum((int32) base_of(&row));
	args[3] = Int32GetDatum((int32) Max((int64) tli, (int64) row.max_timeline));
	if (!row.found)
		write_row("INSERT INTO redis_sync._identity "
				  "(system_identifier, database, timeline_base, max_timeline) "
				  "VALUES ($1, $2, $3, $4)", 4, types, args);
	else if (strcmp(row.sysid, me) != 0)
	{
		/*
		 * claims and in-flight markers (for the sweep to repair) first: the
		 * row no longer names the old system after
		 */
		if (row.database == MyDatabaseId)
		{
			const char *what = "key prefix claims";
			bool		ok = adopt_claims(&row, &failure);

			if (ok)
			{
				what = "in-flight markers";
				ok = adopt_markers(&row, &failure);
			}
			if (!ok)
			{
				ereport(WARNING,
						(errmsg("redis_sync worker: could not adopt the %s of system %s: %s",
								what, row.sysid, failure.message),
						 errdetail("This database was upgraded from that system (pg_upgrade)."),
						 errhint("The worker tries again at its next round.")));
				return;
			}
		}
		args[3] = Int32GetDatum((int32) tli);
		write_row("UPDATE redis_sync._identity SET system_identifier = $1, database = $2, "
				  "timeline_base = $3, max_timeline = $4", 4, types, args);
		floor_raise(base_of(&row));
		ereport(LOG,
				(errmsg("redis_sync worker: this database was upgraded from system %s; its versions continue above that system's",
						row.sysid),
				 errdetail("Versions now begin at timeline %u (base %u).", base_of(&row) + tli, base_of(&row))));
	}
	else if (row.database != MyDatabaseId || (int64) tli > (int64) row.max_timeline)
		write_row("UPDATE redis_sync._identity SET database = $2, max_timeline = $4",
				  4, types, args);
	checked_timeline = tli;
	claims_adopted = true;
}

/*
 * redis_sync._identity_now(): this server's row, for the extension script
 * that creates the table: its base is the floor
 */
Datum
redis_sync_identity_now(PG_FUNCTION_ARGS)
{
	TupleDesc	td;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	char		me[MAXINT8LEN + 2];

	if (get_call_result_type(fcinfo, NULL, &td) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "redis_sync: _identity_now() must return a record");
	my_sysid(me);
	values[0] = CStringGetTextDatum(me);
	values[1] = ObjectIdGetDatum(MyDatabaseId);
	values[2] = Int32GetDatum((int32) Min(floor_read(), (uint32) PG_INT32_MAX));
	values[3] = Int32GetDatum((int32) my_timeline());
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(td), values, nulls)));
}
