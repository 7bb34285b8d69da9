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
 *	   to the table's processing set and returns, in the same round trip,
 *	   each member's value and whether the extension seeded it.  Members left
 *	   in the processing set by a crash are claimed first (recovery), so a
 *	   crash between claim and acknowledgement loses nothing.
 *	2. apply: one set-based statement per set of fields present (usually one
 *	   per batch): UPDATE ... FROM unnest(...) of the rows that exist, in the
 *	   present columns only, and INSERT ... ON CONFLICT of the others (column
 *	   defaults for the rest), so an absent field never erases a column and
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

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "common/jsonapi.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "capture.h"
#include "as_owner.h"
#include "utils/timeout.h"

#include "drain.h"
#include "encode.h"
#include "redis_client.h"
#include "redis_sync.h"
#include "shmem.h"

typedef struct WbTable
{
	Oid			relid;
	char	   *qname;			/* quoted schema.table */
	Oid			owner;
	char	   *prefix;
	char	   *dirty;
	char	   *processing;
	char		format;			/* h, j, s */
	int			nkeys;
	char	  **keys;
	char	  **keytypes;		/* format_type, for casts */
	int			ncols;
	char	  **cols;
	char	  **coltypes;
	bool	   *counter;
	int			ncounters;
	int64		interval_ms;
	int			batch;
	bool		delete_missing;
	char	  **allcols;		/* every column of the table */
	int			nallcols;
	char	  **keybase;		/* key types, schema.typname: no typmod, so casts never
								 * truncate or pad (format_type's "character" and "bit"
								 * would mean length 1) */
	char	  **colbase;		/* column types, the same way */
	bool	   *writable;		/* false: generated or GENERATED ALWAYS identity */
} WbTable;

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

static RedisScript claim_script = REDIS_SCRIPT("redis_sync_claim",
/* rs_companion_key (encode.c), the same rule */
"local function companion(k, suffix)\n"
"  local o = string.find(k, '{', 1, true)\n"
"  if o then\n"
"    local c = string.find(k, '}', o + 1, true)\n"
"    if c and c > o + 1 then return '{' .. string.sub(k, o + 1, c - 1) .. '}' .. k .. suffix end\n"
"  end\n"
"  if string.find(k, '}', 1, true) then return '{}' .. k .. suffix end\n"
"  return '{' .. k .. '}' .. suffix\n"
"end\n"
"local n = tonumber(ARGV[1])\n"
"local members\n"
"if ARGV[5] == '1' then\n"
"  members = redis.call('SRANDMEMBER', KEYS[2], n)\n"
"else\n"
"  members = redis.call('SPOP', KEYS[1], n)\n"
"  for s = 1, #members, 1000 do\n"
"    redis.call('SADD', KEYS[2], unpack(members, s, math.min(s + 999, #members)))\n"
"  end\n"
"end\n"
/* on a cluster the members' keys are in other slots: the caller reads them */
"if ARGV[6] == '1' then return members end\n"
"local out = {}\n"
"for _, m in ipairs(members) do\n"
"  local key = ARGV[2] .. m\n"
"  local ok, val\n"
"  if ARGV[3] == 'h' then ok, val = pcall(redis.call, 'HGETALL', key)\n"
"  else ok, val = pcall(redis.call, 'GET', key) end\n"
"  local state, seeded = 1, 0\n"
"  if not ok then\n"
"    state = -1\n"
"    val = type(val) == 'table' and val.err or tostring(val)\n"
"  elseif val == false or (type(val) == 'table' and #val == 0) then\n"
"    state = 0\n"
"    val = ''\n"
"  end\n"
"  if ARGV[4] ~= '' and redis.call('EXISTS', companion(key, ARGV[4])) == 1 then seeded = 1 end\n"
"  out[#out + 1] = m\n"
"  out[#out + 1] = state\n"
"  out[#out + 1] = seeded\n"
"  out[#out + 1] = val\n"
"end\n"
"return out\n");

/*
 * correct unseeded counters: KEYS = key, seedkey, ...; ARGV = format, then
 * per key: n, (field, delta)*, m, (field, value)* -- counters are
 * incremented by the table's previous value, other fields Redis lacks are
 * filled from the table.
 */
static RedisScript correct_script = REDIS_SCRIPT("redis_sync_correct",
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

#define SEED_SUFFIX ":rs_seeded"

/* ----------------------------------------------------------------
 * Configuration
 * ---------------------------------------------------------------- */

/* load write-behind tables (all, or relid); in a transaction */
static List *
load_tables(Oid relid)
{
	MemoryContext outer = CurrentMemoryContext;
	List	   *result = NIL;
	Oid			types[1] = {OIDOID};
	Datum		values[1];
	int			nestlevel;

	values[0] = ObjectIdGetDatum(relid);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	nestlevel = rs_search_path_enter();	/* as_owner.c: the caller's search_path is not ours */
	if (SPI_execute_with_args(
							  "SELECT t.relid::oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relowner, "
							  "       t.key_prefix, t.dirty_set, t.format, t.key_columns::text[], "
							  "       ARRAY(SELECT format_type(a.atttypid, a.atttypmod) FROM unnest(t.key_columns) WITH ORDINALITY k(n, o) "
							  "              JOIN pg_attribute a ON a.attrelid = t.relid AND a.attname = k.n ORDER BY k.o), "
							  "       t.columns::text[], "
							  "       ARRAY(SELECT format_type(a.atttypid, a.atttypmod) FROM unnest(t.columns) WITH ORDINALITY k(n, o) "
							  "              JOIN pg_attribute a ON a.attrelid = t.relid AND a.attname = k.n ORDER BY k.o), "
							  "       ARRAY(SELECT x = ANY (coalesce(t.counters, '{}')) FROM unnest(t.columns) WITH ORDINALITY k(x, o) ORDER BY k.o), "
							  "       (extract(epoch FROM t.flush_interval) * 1000)::bigint, t.batch_size, t.on_missing, "
							  "       ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = t.relid AND a.attnum > 0 AND NOT a.attisdropped), "
							  "       ARRAY(SELECT pg_catalog.quote_ident(tn.nspname) || '.' || pg_catalog.quote_ident(ty.typname) "
							  "               FROM pg_catalog.unnest(t.key_columns) WITH ORDINALITY k(n, o) "
							  "              JOIN pg_catalog.pg_attribute a ON a.attrelid = t.relid AND a.attname = k.n "
							  "              JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid "
							  "              JOIN pg_catalog.pg_namespace tn ON tn.oid = ty.typnamespace ORDER BY k.o), "
							  "       ARRAY(SELECT pg_catalog.quote_ident(tn.nspname) || '.' || pg_catalog.quote_ident(ty.typname) "
							  "               FROM pg_catalog.unnest(t.columns) WITH ORDINALITY k(n, o) "
							  "              JOIN pg_catalog.pg_attribute a ON a.attrelid = t.relid AND a.attname = k.n "
							  "              JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid "
							  "              JOIN pg_catalog.pg_namespace tn ON tn.oid = ty.typnamespace ORDER BY k.o), "
							  "       ARRAY(SELECT a.attgenerated = '' AND a.attidentity <> 'a' "
							  "               FROM pg_catalog.unnest(t.columns) WITH ORDINALITY k(n, o) "
							  "              JOIN pg_catalog.pg_attribute a ON a.attrelid = t.relid AND a.attname = k.n ORDER BY k.o) "
							  "  FROM redis_sync.tables t JOIN pg_class c ON c.oid = t.relid "
							  "  JOIN pg_namespace n ON n.oid = c.relnamespace "
							  " WHERE t.policy = 'write_behind' AND ($1 = 0 OR t.relid = $1) ORDER BY 1",
							  1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read redis_sync.tables");
	rs_search_path_leave(nestlevel);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;
		MemoryContext spi = MemoryContextSwitchTo(outer);
		WbTable    *t = palloc0(sizeof(WbTable));
		char	   *fmt;
		int			n2;
		ArrayType  *carr;
		Datum	   *celems;
		bool	   *cnulls;
		int			cn;

		t->relid = DatumGetObjectId(SPI_getbinval(tup, td, 1, &isnull));
		t->qname = TextDatumGetCString(SPI_getbinval(tup, td, 2, &isnull));
		t->owner = DatumGetObjectId(SPI_getbinval(tup, td, 3, &isnull));
		t->prefix = TextDatumGetCString(SPI_getbinval(tup, td, 4, &isnull));
		t->dirty = TextDatumGetCString(SPI_getbinval(tup, td, 5, &isnull));
		fmt = TextDatumGetCString(SPI_getbinval(tup, td, 6, &isnull));
		t->format = fmt[0];
		t->keys = rs_text_array(DatumGetArrayTypeP(SPI_getbinval(tup, td, 7, &isnull)), &t->nkeys);
		t->keytypes = rs_text_array(DatumGetArrayTypeP(SPI_getbinval(tup, td, 8, &isnull)), &n2);
		t->cols = rs_text_array(DatumGetArrayTypeP(SPI_getbinval(tup, td, 9, &isnull)), &t->ncols);
		t->coltypes = rs_text_array(DatumGetArrayTypeP(SPI_getbinval(tup, td, 10, &isnull)), &n2);
		carr = DatumGetArrayTypeP(SPI_getbinval(tup, td, 11, &isnull));
		deconstruct_array(carr, BOOLOID, 1, true, TYPALIGN_CHAR, &celems, &cnulls, &cn);
		t->counter = palloc0(sizeof(bool) * Max(cn, 1));
		for (int c = 0; c < cn; c++)
		{
			t->counter[c] = DatumGetBool(celems[c]);
			if (t->counter[c])
				t->ncounters++;
		}
		t->interval_ms = DatumGetInt64(SPI_getbinval(tup, td, 12, &isnull));
		t->batch = DatumGetInt32(SPI_getbinval(tup, td, 13, &isnull));
		t->delete_missing = strcmp(TextDatumGetCString(SPI_getbinval(tup, td, 14, &isnull)), "delete") == 0;
		t->allcols = rs_text_array(DatumGetArrayTypeP(SPI_getbinval(tup, td, 15, &isnull)), &t->nallcols);
		t->keybase = rs_text_array(DatumGetArrayTypeP(SPI_getbinval(tup, td, 16, &isnull)), &n2);
		t->colbase = rs_text_array(DatumGetArrayTypeP(SPI_getbinval(tup, td, 17, &isnull)), &n2);
		carr = DatumGetArrayTypeP(SPI_getbinval(tup, td, 18, &isnull));
		deconstruct_array(carr, BOOLOID, 1, true, TYPALIGN_CHAR, &celems, &cnulls, &cn);
		t->writable = palloc0(sizeof(bool) * Max(cn, 1));
		for (int c = 0; c < cn; c++)
			t->writable[c] = DatumGetBool(celems[c]);
		t->processing = rs_companion_key(t->dirty, strlen(t->dirty), ":rs_processing");
		result = lappend(result, t);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return result;
}

/* ----------------------------------------------------------------
 * One batch
 * ---------------------------------------------------------------- */

typedef struct Member
{
	char	   *member;
	char	   *key;
	int			state;			/* 1 present, 0 missing, -1 Redis error */
	bool		seeded;
	char	  **keyvals;		/* nkeys */
	char	  **vals;			/* ncols, NULL = SQL NULL (when present) */
	bool	   *present;		/* ncols: the value names the column */
	char	   *json;			/* json format: object of the present columns */
	RedisValue *value;			/* the claimed value, for dead letters */
	char	   *problem;		/* set: goes to dead letters */
	char	   *problem_state;
	bool		increment;		/* counters applied as increments */
	int64	   *read;			/* counter values read from Redis */
	bool		applied;
	bool		returned;		/* increment: the row after the write, below */
	char	  **after;			/* ncols, text */
	int64	   *totals;			/* ncounters */
} Member;

static bool
parse_int64(const char *s, int64 *out)
{
	char	   *end;
	long long	v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0')
		return false;
	*out = (int64) v;
	return true;
}

/*
 * redis_sync.drain_timeout: the worker runs no client statements, so no
 * statement_timeout applies; the batch arms the same timer itself.
 */
static TimestampTz drain_armed_at = 0;

static void
drain_timeout_arm(void)
{
	if (rs_drain_timeout_ms <= 0)
		return;
	drain_armed_at = GetCurrentTimestamp();
	enable_timeout_after(STATEMENT_TIMEOUT, rs_drain_timeout_ms);
}

/* did the armed timer run out (a query-cancel error is then its doing)? */
static bool
drain_timeout_expired(void)
{
	return drain_armed_at != 0 &&
		TimestampDifferenceExceeds(drain_armed_at, GetCurrentTimestamp(), rs_drain_timeout_ms);
}

static void
drain_timeout_disarm(void)
{
	if (drain_armed_at != 0 && get_timeout_active(STATEMENT_TIMEOUT))
		disable_timeout(STATEMENT_TIMEOUT, false);
	drain_armed_at = 0;
}

static bool
is_transient(int sqlerrcode)
{
	switch (sqlerrcode)
	{
		case ERRCODE_T_R_SERIALIZATION_FAILURE:
		case ERRCODE_T_R_DEADLOCK_DETECTED:
		case ERRCODE_LOCK_NOT_AVAILABLE:
		case ERRCODE_QUERY_CANCELED:
		case ERRCODE_ADMIN_SHUTDOWN:
		case ERRCODE_CANNOT_CONNECT_NOW:
		case ERRCODE_CONNECTION_FAILURE:
		case ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION:
		case ERRCODE_OUT_OF_MEMORY:
		case ERRCODE_DISK_FULL:
		case ERRCODE_TOO_MANY_CONNECTIONS:
			return true;
		default:
			return false;
	}
}

/* split member into its nkeys escaped key values (rs_key_split, encode.h) */
static bool
split_member(WbTable *t, Member *m)
{
	m->keyvals = rs_key_split(m->member, t->nkeys);
	return m->keyvals != NULL;
}

/* the input and output functions of a table's key columns, looked up once per batch */
typedef struct KeyIO
{
	FmgrInfo	in;
	FmgrInfo	out;
	Oid			ioparam;
	int32		typmod;
} KeyIO;

static KeyIO *
key_io(WbTable *t)
{
	KeyIO	   *io = palloc(sizeof(KeyIO) * Max(t->nkeys, 1));

	for (int k = 0; k < t->nkeys; k++)
	{
		AttrNumber	attnum = get_attnum(t->relid, t->keys[k]);
		Oid			typid,
					coll,
					infn,
					outfn;
		bool		varlena;

		get_atttypetypmodcoll(t->relid, attnum, &typid, &io[k].typmod, &coll);
		getTypeInputInfo(typid, &infn, &io[k].ioparam);
		getTypeOutputInfo(typid, &outfn, &varlena);
		fmgr_info(infn, &io[k].in);
		fmgr_info(outfn, &io[k].out);
	}
	return io;
}

/*
 * Is every key value of the member in the canonical form, the text its
 * type's output function gives back for it (so "042" or "abcdef" for a
 * varchar(3) key never names a row whose key is written otherwise)?
 */
static bool
member_key_canonical(WbTable *t, KeyIO *io, Member *m)
{
	for (int k = 0; k < t->nkeys; k++)
	{
		Datum		d = InputFunctionCall(&io[k].in, m->keyvals[k], io[k].ioparam, io[k].typmod);

		if (strcmp(OutputFunctionCall(&io[k].out, d), m->keyvals[k]) != 0)
			return false;
	}
	return true;
}

static void check_member_rows(WbTable *t, Member *ms, int *idx, int *n);

static void
key_problem(Member *m, const char *why, const char *state)
{
	m->problem = psprintf("dirty set member \"%s\" is not the key of a row: %s", m->member, why);
	m->problem_state = pstrdup(state);
}

/*
 * Drop the members of idx[0..*n) whose key values are not canonical (see
 * member_key_canonical) from idx, as dead letters.  In the transaction of
 * the batch, canonical settings in force; one subtransaction for the
 * batch, one per member only when some value is not even valid input.
 */
static void
check_member_keys(WbTable *t, Member *ms, int *idx, int *n)
{
	MemoryContext outer = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	bool		failed = false;
	int			kept = 0;
	KeyIO	   *io;

	if (*n == 0)
		return;
	io = key_io(t);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(outer);
	PG_TRY();
	{
		for (int i = 0; i < *n; i++)
			if (!member_key_canonical(t, io, &ms[idx[i]]))
				key_problem(&ms[idx[i]], "its key values are not in the canonical form", "22023");
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *ed;

		MemoryContextSwitchTo(outer);
		ed = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(outer);
		CurrentResourceOwner = owner;
		/* a cancel (redis_sync.drain_timeout) is no member's fault */
		if (is_transient(ed->sqlerrcode))
			ReThrowError(ed);
		failed = true;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(outer);
	CurrentResourceOwner = owner;
	for (int i = 0; failed && i < *n; i++)
	{
		Member	   *m = &ms[idx[i]];

		m->problem = NULL;
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(outer);
		PG_TRY();
		{
			if (!member_key_canonical(t, io, m))
				key_problem(m, "its key values are not in the canonical form", "22023");
			ReleaseCurrentSubTransaction();
		}
		PG_CATCH();
		{
			ErrorData  *ed;

			MemoryContextSwitchTo(outer);
			ed = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(outer);
			CurrentResourceOwner = owner;
			if (is_transient(ed->sqlerrcode))
				ReThrowError(ed);
			key_problem(m, ed->message, unpack_sql_state(ed->sqlerrcode));
		}
		PG_END_TRY();
		MemoryContextSwitchTo(outer);
		CurrentResourceOwner = owner;
	}
	for (int i = 0; i < *n; i++)
		if (ms[idx[i]].problem == NULL)
			idx[kept++] = idx[i];
	*n = kept;
	check_member_rows(t, ms, idx, n);
}

/*
 * Does a member name a row whose key equals its key values but is written
 * otherwise?  Equality is the key's unique index's: numeric 1.00 = 1.0,
 * interval '30 days' = '1 mon', float -0 = 0, 'abc' = 'ABC' under a
 * case-insensitive collation.  The row's key is the canonical text of the
 * row's values (nk:1.0), so such a member (nk:1.00) is another key, and
 * writing (or deleting) the row from it would let two keys feed one row:
 * dead letter.  Members here have canonical key values (valid input).
 */
static void
check_member_rows(WbTable *t, Member *ms, int *idx, int *n)
{
	StringInfoData sql;
	Oid		   *types;
	Datum	   *args;
	int			kept = 0;

	if (*n == 0)
		return;
	types = palloc(sizeof(Oid) * t->nkeys);
	args = palloc(sizeof(Datum) * t->nkeys);
	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT x.ord FROM ROWS FROM (");
	for (int k = 0; k < t->nkeys; k++)
		appendStringInfo(&sql, "%spg_catalog.unnest($%d::pg_catalog.text[])", k ? ", " : "", k + 1);
	appendStringInfoString(&sql, ") WITH ORDINALITY AS x(");
	for (int k = 0; k < t->nkeys; k++)
		appendStringInfo(&sql, "k%d, ", k);
	appendStringInfo(&sql, "ord) JOIN %s AS t ON ", t->qname);
	for (int k = 0; k < t->nkeys; k++)
		appendStringInfo(&sql, "%st.%s = x.k%d::%s", k ? " AND " : "",
						 quote_identifier(t->keys[k]), k, t->keybase[k]);
	appendStringInfoString(&sql, " WHERE ROW(");
	for (int k = 0; k < t->nkeys; k++)
		appendStringInfo(&sql, "%st.%s", k ? ", " : "", quote_identifier(t->keys[k]));
	appendStringInfoString(&sql, ")::pg_catalog.text OPERATOR(pg_catalog.<>) ROW(");
	for (int k = 0; k < t->nkeys; k++)
		appendStringInfo(&sql, "%sx.k%d::%s", k ? ", " : "", k, t->keybase[k]);
	appendStringInfoString(&sql, ")::pg_catalog.text COLLATE \"C\"");
	for (int k = 0; k < t->nkeys; k++)
	{
		Datum	   *elems = palloc(sizeof(Datum) * *n);

		for (int i = 0; i < *n; i++)
			elems[i] = CStringGetTextDatum(ms[idx[i]].keyvals[k]);
		types[k] = TEXTARRAYOID;
		args[k] = PointerGetDatum(construct_array(elems, *n, TEXTOID, -1, false, TYPALIGN_INT));
	}
	if (SPI_execute_with_args(sql.data, t->nkeys, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: write-behind key check failed");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int64		ord = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull));

		if (!isnull && ord >= 1 && ord <= *n)
			key_problem(&ms[idx[ord - 1]],
						"a row with an equal key exists, whose key is written otherwise (its key is the row's canonical text)",
						"23505");
	}
	for (int i = 0; i < *n; i++)
		if (ms[idx[i]].problem == NULL)
			idx[kept++] = idx[i];
	*n = kept;
}

static void
json_append_pair(StringInfo buf, bool *first, const char *k, const char *v)
{
	if (!*first)
		appendStringInfoChar(buf, ',');
	*first = false;
	escape_json(buf, k);
	appendStringInfoChar(buf, ':');
	if (v)
		escape_json(buf, v);
	else
		appendStringInfoString(buf, "null");
}

/*
 * A hash field (or string value) of exactly one NUL byte is SQL NULL: no
 * text value of any type can contain a NUL byte, so the marker is never a
 * value.  A field the hash does not have leaves its column unchanged.
 */
static bool
is_null_marker(RedisValue *v)
{
	return v->str != NULL && v->len == 1 && v->str[0] == '\0';
}

/* a string value for column c; false (and m->problem) if it holds a NUL byte */
static bool
take_value(WbTable *t, Member *m, int c, RedisValue *v)
{
	m->present[c] = true;
	if (is_null_marker(v))
	{
		m->vals[c] = NULL;
		return true;
	}
	if (v->str == NULL || strlen(v->str) != v->len)
	{
		m->problem = psprintf("the value of column \"%s\" contains a NUL byte", t->cols[c]);
		m->problem_state = pstrdup("22021");
		return false;
	}
	m->vals[c] = v->str;
	return true;
}

/* turn the claimed value into column values */
static void
decode_value(WbTable *t, Member *m, RedisValue *v, int64 *unknown)
{
	m->vals = palloc0(sizeof(char *) * t->ncols);
	m->present = palloc0(sizeof(bool) * t->ncols);
	m->value = v;
	if (t->format == 'h')
	{
		for (int i = 0; i + 1 < v->nelem; i += 2)
		{
			char	   *f = v->elems[i].str;
			bool		known = false;

			for (int c = 0; c < t->ncols; c++)
				if (strcmp(t->cols[c], f) == 0)
				{
					known = true;
					/* generated and GENERATED ALWAYS columns are never written */
					if (t->writable[c] && !take_value(t, m, c, &v->elems[i + 1]))
						return;
				}
			if (!known)
			{
				for (int c = 0; c < t->nallcols && !known; c++)
					known = strcmp(t->allcols[c], f) == 0;
				if (!known)
					(*unknown)++;
			}
		}
	}
	else if (t->format == 's')
	{
		if (t->writable[0])
			take_value(t, m, 0, v);
	}
	else
	{
		/* json: an object of columns */
		List	   *fields = NIL;
		bool		is_object = false;
		bool		parsed = false;
		MemoryContext cxt = CurrentMemoryContext;

		if (v->str == NULL || strlen(v->str) != v->len)
		{
			m->problem = pstrdup("the JSON value contains a NUL byte");
			m->problem_state = pstrdup("22021");
			return;
		}
		PG_TRY();
		{
			fields = rs_json_top_fields(v->str, v->len, &is_object);
			parsed = true;
		}
		PG_CATCH();
		{
			ErrorData  *ed;

			MemoryContextSwitchTo(cxt);
			ed = CopyErrorData();
			FlushErrorState();
			m->problem = psprintf("invalid JSON value: %s", ed->message);
			m->problem_state = pstrdup(unpack_sql_state(ed->sqlerrcode));
		}
		PG_END_TRY();
		if (parsed && !is_object)
		{
			m->problem = pstrdup("the JSON value is not an object");
			m->problem_state = pstrdup("22023");
		}
		else if (parsed)
		{
			StringInfoData obj;
			bool		first = true;

			/*
			 * The object of the present columns, each value as the
			 * application wrote it (numbers digit for digit, json columns
			 * verbatim), goes to json_populate_record(), which takes back
			 * what row_to_json() wrote: arrays, composites, json values (a
			 * JSON string stays a string), typmods enforced.  vals[] keeps
			 * the scalar text.  A repeated name: the last one wins.
			 */
			initStringInfo(&obj);
			appendStringInfoChar(&obj, '{');
			for (int c = 0; c < t->ncols; c++)
			{
				RsJsonField *found = NULL;
				ListCell   *lc;

				if (!t->writable[c])
					continue;
				foreach(lc, fields)
				{
					RsJsonField *f = lfirst(lc);

					if (strcmp(f->name, t->cols[c]) == 0)
						found = f;
				}
				if (found == NULL)
					continue;
				m->present[c] = true;
				if (!first)
					appendStringInfoChar(&obj, ',');
				first = false;
				escape_json(&obj, t->cols[c]);
				appendStringInfoChar(&obj, ':');
				appendBinaryStringInfo(&obj, found->start, found->len);
				if (found->type == JSON_TOKEN_NULL)
					m->vals[c] = NULL;
				else if (found->type == JSON_TOKEN_OBJECT_START || found->type == JSON_TOKEN_ARRAY_START)
					m->vals[c] = pnstrdup(found->start, found->len);
				else
					m->vals[c] = found->scalar;
			}
			appendStringInfoChar(&obj, '}');
			m->json = obj.data;
		}
	}
}

/* the claimed value as JSON, for a dead letter (built only when needed) */
static char *
raw_json(WbTable *t, RedisValue *v)
{
	StringInfoData raw;
	bool		first = true;

	if (v == NULL)
		return "null";
	initStringInfo(&raw);
	appendStringInfoChar(&raw, '{');
	if (t->format == 'h' && v->type == RV_ARRAY)
	{
		for (int i = 0; i + 1 < v->nelem; i += 2)
			json_append_pair(&raw, &first, v->elems[i].str, v->elems[i + 1].str);
	}
	else if (v->type == RV_STRING)
		json_append_pair(&raw, &first, t->format == 's' ? t->cols[0] : "json", v->str);
	appendStringInfoChar(&raw, '}');
	return raw.data;
}

/*
 * The write of members that name the same columns (shape: ms[idx[0]].present),
 * as one statement: UPDATE the rows that exist, in the present columns only,
 * then INSERT the others (column defaults for the rest; ON CONFLICT for a
 * row inserted meanwhile).  A NOT NULL column outside the hash therefore
 * never blocks an update.  Values are cast to the column's type without its
 * typmod, so the assignment to the column checks the length (varchar, char,
 * bit) and refuses instead of truncating; key values are compared the same
 * way, so a member never lands on a row whose key it is not.  Counters of
 * unseeded keys (increment) are added to the table's value, and the rows
 * after the write are returned for the Redis correction.
 */
static char *
apply_sql(WbTable *t, const bool *present, bool increment)
{
	StringInfoData sql;
	StringInfoData match;
	int			argno = 1;
	int			npresent = 0;

	for (int c = 0; c < t->ncols; c++)
		if (present[c])
			npresent++;

	/* u: the members, one row each, numbered */
	initStringInfo(&sql);
	appendStringInfoString(&sql, "WITH u AS (SELECT x.*");
	if (t->format == 'j')
		appendStringInfo(&sql, ", pg_catalog.json_populate_record(NULL::%s, x.j) AS r", t->qname);
	appendStringInfoString(&sql, " FROM ROWS FROM (");
	for (int i = 0; i < t->nkeys; i++)
		appendStringInfo(&sql, "%spg_catalog.unnest($%d::pg_catalog.text[])", i ? ", " : "", argno++);
	if (t->format == 'j')
		appendStringInfo(&sql, ", pg_catalog.unnest($%d::pg_catalog.json[])", argno++);
	else
		for (int c = 0; c < t->ncols; c++)
			if (present[c])
				appendStringInfo(&sql, ", pg_catalog.unnest($%d::pg_catalog.text[])", argno++);
	appendStringInfoString(&sql, ") WITH ORDINALITY AS x(");
	for (int i = 0; i < t->nkeys; i++)
		appendStringInfo(&sql, "%sk%d", i ? ", " : "", i);
	if (t->format == 'j')
		appendStringInfoString(&sql, ", j");
	else
		for (int c = 0; c < t->ncols; c++)
			if (present[c])
				appendStringInfo(&sql, ", c%d", c);
	/* members arrive in random order (SPOP): rows are locked in key order */
	appendStringInfoString(&sql, ", ord) ORDER BY ");
	for (int i = 0; i < t->nkeys; i++)
		appendStringInfo(&sql, "%sx.k%d::%s", i ? ", " : "", i, t->keybase[i]);
	appendStringInfoString(&sql, "), ");

	initStringInfo(&match);
	for (int i = 0; i < t->nkeys; i++)
		appendStringInfo(&match, "%st.%s = u.k%d::%s", i ? " AND " : "",
						 quote_identifier(t->keys[i]), i, t->keybase[i]);

	/* upd: the rows that exist */
	if (npresent > 0)
	{
		bool		first = true;

		appendStringInfo(&sql, "upd AS (UPDATE %s AS t SET ", t->qname);
		for (int c = 0; c < t->ncols; c++)
		{
			const char *q = quote_identifier(t->cols[c]);
			char	   *expr;

			if (!present[c])
				continue;
			expr = t->format == 'j' ? psprintf("(u.r).%s", q) : psprintf("u.c%d::%s", c, t->colbase[c]);
			if (increment && t->counter[c])
				appendStringInfo(&sql, "%s%s = COALESCE(t.%s, 0) + %s", first ? "" : ", ", q, q, expr);
			else
				appendStringInfo(&sql, "%s%s = %s", first ? "" : ", ", q, expr);
			first = false;
		}
		appendStringInfo(&sql, " FROM u WHERE %s RETURNING u.ord", match.data);
	}
	else
		appendStringInfo(&sql, "upd AS (SELECT u.ord FROM %s AS t, u WHERE %s FOR UPDATE OF t",
						 t->qname, match.data);
	if (increment)
	{
		for (int c = 0; c < t->ncols; c++)
			appendStringInfo(&sql, ", t.%s::pg_catalog.text AS v%d", quote_identifier(t->cols[c]), c);
		for (int c = 0; c < t->ncols; c++)
			if (t->counter[c])
				appendStringInfo(&sql, ", t.%s::pg_catalog.int8 AS n%d", quote_identifier(t->cols[c]), c);
	}
	appendStringInfoString(&sql, "), ");

	/* ins: the others */
	appendStringInfo(&sql, "ins AS (INSERT INTO %s AS t (", t->qname);
	for (int i = 0; i < t->nkeys; i++)
		appendStringInfo(&sql, "%s%s", i ? ", " : "", quote_identifier(t->keys[i]));
	for (int c = 0; c < t->ncols; c++)
		if (present[c])
			appendStringInfo(&sql, ", %s", quote_identifier(t->cols[c]));
	appendStringInfoString(&sql, ") SELECT ");
	for (int i = 0; i < t->nkeys; i++)
		appendStringInfo(&sql, "%su.k%d::%s", i ? ", " : "", i, t->keybase[i]);
	for (int c = 0; c < t->ncols; c++)
		if (present[c])
		{
			if (t->format == 'j')
				appendStringInfo(&sql, ", (u.r).%s", quote_identifier(t->cols[c]));
			else
				appendStringInfo(&sql, ", u.c%d::%s", c, t->colbase[c]);
		}
	/* members arrive in random order (SPOP): insert them in key order */
	appendStringInfoString(&sql, " FROM u WHERE NOT EXISTS (SELECT 1 FROM upd WHERE upd.ord = u.ord) ORDER BY 1");
	for (int i = 1; i < t->nkeys; i++)
		appendStringInfo(&sql, ", %d", i + 1);
	appendStringInfoString(&sql, " ON CONFLICT (");
	for (int i = 0; i < t->nkeys; i++)
		appendStringInfo(&sql, "%s%s", i ? ", " : "", quote_identifier(t->keys[i]));
	if (npresent == 0)
		appendStringInfoString(&sql, ") DO NOTHING");
	else
	{
		bool		first = true;

		appendStringInfoString(&sql, ") DO UPDATE SET ");
		for (int c = 0; c < t->ncols; c++)
		{
			const char *q = quote_identifier(t->cols[c]);

			if (!present[c])
				continue;
			if (increment && t->counter[c])
				appendStringInfo(&sql, "%s%s = COALESCE(t.%s, 0) + EXCLUDED.%s", first ? "" : ", ", q, q, q);
			else
				appendStringInfo(&sql, "%s%s = EXCLUDED.%s", first ? "" : ", ", q, q);
			first = false;
		}
		/*
		 * a row inserted meanwhile whose key equals the member's but is
		 * spelled otherwise (see check_member_rows) is another key's row
		 */
		appendStringInfoString(&sql, " WHERE ROW(");
		for (int i = 0; i < t->nkeys; i++)
			appendStringInfo(&sql, "%st.%s", i ? ", " : "", quote_identifier(t->keys[i]));
		appendStringInfoString(&sql, ")::pg_catalog.text OPERATOR(pg_catalog.=) ROW(");
		for (int i = 0; i < t->nkeys; i++)
			appendStringInfo(&sql, "%sEXCLUDED.%s", i ? ", " : "", quote_identifier(t->keys[i]));
		appendStringInfoString(&sql, ")::pg_catalog.text COLLATE \"C\"");
	}
	appendStringInfoString(&sql, " RETURNING ");
	for (int i = 0; i < t->nkeys; i++)
		appendStringInfo(&sql, "%st.%s AS rk%d", i ? ", " : "", quote_identifier(t->keys[i]), i);
	if (increment)
	{
		for (int c = 0; c < t->ncols; c++)
			appendStringInfo(&sql, ", t.%s::pg_catalog.text AS v%d", quote_identifier(t->cols[c]), c);
		for (int c = 0; c < t->ncols; c++)
			if (t->counter[c])
				appendStringInfo(&sql, ", t.%s::pg_catalog.int8 AS n%d", quote_identifier(t->cols[c]), c);
	}
	appendStringInfoString(&sql, ") ");

	/* the rows after the write, by member number (increments only) */
	if (!increment)
		appendStringInfoString(&sql, "SELECT NULL::pg_catalog.int8 WHERE false");
	else
	{
		StringInfoData cols;

		initStringInfo(&cols);
		for (int c = 0; c < t->ncols; c++)
			appendStringInfo(&cols, ", v%d", c);
		for (int c = 0; c < t->ncols; c++)
			if (t->counter[c])
				appendStringInfo(&cols, ", n%d", c);
		appendStringInfo(&sql, "SELECT ord%s FROM upd UNION ALL SELECT u.ord%s FROM ins JOIN u ON ",
						 cols.data, cols.data);
		for (int i = 0; i < t->nkeys; i++)
			appendStringInfo(&sql, "%sins.rk%d = u.k%d::%s", i ? " AND " : "", i, i, t->keybase[i]);
	}
	return sql.data;
}

static ArrayType *
text_array(char **vals, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *nulls = palloc0(sizeof(bool) * Max(n, 1));
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int r = 0; r < n; r++)
	{
		if (vals[r] == NULL)
			nulls[r] = true;
		else
			elems[r] = CStringGetTextDatum(vals[r]);
	}
	return construct_md_array(elems, nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT);
}

/* run the write for the members listed in idx[0..n) */
static void
run_apply(WbTable *t, Member *ms, int *idx, int n, bool increment, const char *sql)
{
	const bool *present = ms[idx[0]].present;
	int			nargs = t->nkeys;
	Oid		   *types = palloc(sizeof(Oid) * (t->nkeys + t->ncols + 1));
	Datum	   *args = palloc(sizeof(Datum) * (t->nkeys + t->ncols + 1));
	char	  **col = palloc(sizeof(char *) * n);
	int			ret;

	for (int k = 0; k < t->nkeys; k++)
	{
		for (int r = 0; r < n; r++)
			col[r] = ms[idx[r]].keyvals[k];
		types[k] = TEXTARRAYOID;
		args[k] = PointerGetDatum(text_array(col, n));
	}
	if (t->format == 'j')
	{
		Datum	   *elems = palloc(sizeof(Datum) * n);

		for (int r = 0; r < n; r++)
			elems[r] = CStringGetTextDatum(ms[idx[r]].json);
		types[nargs] = JSONARRAYOID;
		args[nargs++] = PointerGetDatum(construct_array(elems, n, JSONOID, -1, false, TYPALIGN_INT));
	}
	else
		for (int c = 0; c < t->ncols; c++)
		{
			if (!present[c])
				continue;
			for (int r = 0; r < n; r++)
				col[r] = ms[idx[r]].vals[c];
			types[nargs] = TEXTARRAYOID;
			args[nargs++] = PointerGetDatum(text_array(col, n));
		}
	ret = SPI_execute_with_args(sql, nargs, types, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: write-behind apply failed: %s", SPI_result_code_string(ret));
	if (increment)
	{
		TupleDesc	td = SPI_tuptable->tupdesc;

		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			bool		isnull;
			int64		ord = DatumGetInt64(SPI_getbinval(tup, td, 1, &isnull));
			Member	   *m;
			int			ci = 0;

			if (isnull || ord < 1 || ord > n)
				continue;
			m = &ms[idx[ord - 1]];
			m->returned = true;
			m->after = palloc(sizeof(char *) * t->ncols);
			m->totals = palloc0(sizeof(int64) * Max(t->ncounters, 1));
			for (int c = 0; c < t->ncols; c++)
				m->after[c] = SPI_getvalue(tup, td, c + 2);
			for (int c = 0; c < t->ncols; c++)
				if (t->counter[c])
				{
					Datum		d = SPI_getbinval(tup, td, t->ncols + 2 + ci, &isnull);

					m->totals[ci++] = isnull ? 0 : DatumGetInt64(d);
				}
		}
	}
}

/*
 * Run the write for idx[0..n) in a subtransaction.  NULL on success; the
 * error of a permanent failure (the subtransaction is rolled back); a
 * transient error is re-thrown so the whole batch is retried later.
 */
static ErrorData *
try_apply(WbTable *t, Member *ms, int *idx, int n, bool increment, const char *sql)
{
	MemoryContext outer = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *result = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(outer);
	PG_TRY();
	{
		run_apply(t, ms, idx, n, increment, sql);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(outer);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(outer);
		result = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(outer);
		CurrentResourceOwner = owner;
		if (is_transient(result->sqlerrcode))
			ReThrowError(result);
	}
	PG_END_TRY();
	return result;
}

/*
 * Apply members idx[0..n) of one shape: all at once; on failure one by one,
 * sending permanent failures to dead letters.  Transient errors are
 * re-thrown.
 */
static void
apply_shape(WbTable *t, Member *ms, int *idx, int n, bool increment)
{
	char	   *sql;

	if (n == 0)
		return;
	sql = apply_sql(t, ms[idx[0]].present, increment);

	/* the happy path: the whole group in one statement */
	if (try_apply(t, ms, idx, n, increment, sql) == NULL)
	{
		for (int r = 0; r < n; r++)
			ms[idx[r]].applied = true;
		return;
	}

	/* the failure path: row by row */
	for (int r = 0; r < n; r++)
	{
		ErrorData  *ed = try_apply(t, ms, &idx[r], 1, increment, sql);

		if (ed == NULL)
			ms[idx[r]].applied = true;
		else
		{
			ms[idx[r]].problem = ed->message;
			ms[idx[r]].problem_state = pstrdup(unpack_sql_state(ed->sqlerrcode));
			ms[idx[r]].returned = false;
		}
	}
}

/*
 * Apply members idx[0..n), grouped by the set of columns they name (usually
 * one group: every hash of a table has the same fields).
 */
static void
apply_group(WbTable *t, Member *ms, int *idx, int n, bool increment)
{
	bool	   *done = palloc0(sizeof(bool) * Max(n, 1));
	int		   *shape = palloc(sizeof(int) * Max(n, 1));

	for (int r = 0; r < n; r++)
	{
		int			ns = 0;

		if (done[r])
			continue;
		for (int q = r; q < n; q++)
			if (!done[q] &&
				memcmp(ms[idx[q]].present, ms[idx[r]].present, sizeof(bool) * t->ncols) == 0)
			{
				shape[ns++] = idx[q];
				done[q] = true;
			}
		apply_shape(t, ms, shape, ns, increment);
	}
}

/* run as the table owner, restricted, fixed search_path (as_owner.c) */
typedef RsAsOwner AsOwner;

static void
become(AsOwner *saved, Oid role)
{
	rs_as_owner_enter(saved, role);
}

static void
unbecome(AsOwner *saved)
{
	rs_as_owner_leave(saved);
}

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

/* the Redis correction of unseeded counter keys (before commit) */
static void
correct_counters(WbTable *t, Member *ms, int nm)
{
	RedisPipeline *p;
	int			nkeys = 0;
	int			na = 0;
	const char **keys;
	const char **args;

	int		   *argstart = palloc(sizeof(int) * Max(nm, 1));

	keys = palloc(sizeof(char *) * 2 * Max(nm, 1));
	args = palloc(sizeof(char *) * (1 + nm * (2 + 2 * t->ncols)));
	args[na++] = t->format == 'h' ? "h" : "s";
	for (int i = 0; i < nm; i++)
	{
		Member	   *m = &ms[i];
		int			ci = 0;
		int			mpos;
		int			nfill = 0;

		if (!m->increment || !m->applied || !m->returned)
			continue;
		argstart[nkeys / 2] = na;
		keys[nkeys++] = m->key;
		keys[nkeys++] = rs_companion_key(m->key, strlen(m->key), SEED_SUFFIX);
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
		if (t->format == 'h')
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
}

static void
record_dead_letters(WbTable *t, Member *ms, int nm)
{
	for (int i = 0; i < nm; i++)
	{
		Member	   *m = &ms[i];
		Oid			types[7] = {OIDOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
		Datum		values[7];

		if (m->problem == NULL)
			continue;
		values[0] = ObjectIdGetDatum(t->relid);
		values[1] = CStringGetTextDatum(m->key);
		values[2] = CStringGetTextDatum(m->member);
		values[3] = CStringGetTextDatum(raw_json(t, m->value));
		values[4] = CStringGetTextDatum(m->problem);
		values[5] = CStringGetTextDatum(m->problem_state ? m->problem_state : "XX000");
		values[6] = (Datum) 0;
		if (SPI_execute_with_args("INSERT INTO redis_sync.dead_letters AS d "
								  "  (relid, redis_key, member, raw_value, error, sqlstate) "
								  "VALUES ($1, $2, $3, $4::jsonb, $5, $6) "
								  "ON CONFLICT (relid, member) DO UPDATE SET "
								  "  raw_value = EXCLUDED.raw_value, error = EXCLUDED.error, "
								  "  sqlstate = EXCLUDED.sqlstate, attempts = d.attempts + 1, last_seen = now()",
								  6, types, values, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "redis_sync: could not record a dead letter");
		rs_stats_add(t->relid, RS_C_DEAD, 1);
	}
}

/*
 * Redis Cluster: the claim script moved the members (the dirty and
 * processing sets share a slot) and returned them; their keys are in other
 * slots, so they are read here, in one pipeline over every node, into the
 * reply the script gives on a single Redis: member, state, seeded, value.
 */
static RedisValue *
claim_read_members(WbTable *t, RedisValue *members)
{
	RedisPipeline *p;
	RedisValue *out = palloc0(sizeof(RedisValue));
	int			nm = members->type == RV_ARRAY ? members->nelem : 0;
	bool		seeds = t->ncounters > 0;

	out->type = RV_ARRAY;
	out->nelem = 4 * nm;
	out->elems = palloc0(sizeof(RedisValue) * Max(out->nelem, 1));
	if (nm == 0)
		return out;
	p = redis_pipeline_create();
	for (int i = 0; i < nm; i++)
	{
		char	   *key = psprintf("%s%s", t->prefix, members->elems[i].str);
		const char *argv[2] = {t->format == 'h' ? "HGETALL" : "GET", key};

		redis_pipeline_append(p, 2, argv, NULL);
		if (seeds)
		{
			argv[0] = "EXISTS";
			argv[1] = rs_companion_key(key, strlen(key), SEED_SUFFIX);
			redis_pipeline_append(p, 2, argv, NULL);
		}
	}
	redis_pipeline_exec(p);
	for (int i = 0; i < nm; i++)
	{
		RedisValue *v = redis_pipeline_reply(p, seeds ? 2 * i : i);
		RedisValue *o = &out->elems[4 * i];

		o[0] = members->elems[i];
		o[1].type = RV_INTEGER;
		o[2].type = RV_INTEGER;
		if (seeds)
		{
			RedisValue *e = redis_pipeline_reply(p, 2 * i + 1);

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
	/* the values stay in p's memory context, a child of the caller's */
	return out;
}

/*
 * Claim, apply and acknowledge one batch.  Returns the number of members
 * claimed (0: nothing to do); *applied gets rows written.
 */
static int
drain_batch(WbTable *t, bool recover, int64 *applied)
{
	RedisPipeline *p;
	const char *argv[8];
	RedisValue *r;
	int			nm;
	Member	   *ms;
	int		   *abs_idx,
			   *inc_idx,
			   *del_idx;
	int			nabs = 0,
				ninc = 0,
				ndel = 0;
	int64		unknown = 0;
	TimestampTz started = GetCurrentTimestamp();
	AsOwner		saved;
	char		batch[16];

	*applied = 0;
	snprintf(batch, sizeof(batch), "%d", t->batch);
	argv[0] = t->dirty;
	argv[1] = t->processing;
	argv[2] = batch;
	argv[3] = t->prefix;
	argv[4] = t->format == 'h' ? "h" : t->format == 'j' ? "j" : "s";
	argv[5] = t->ncounters > 0 ? SEED_SUFFIX : "";
	argv[6] = recover ? "1" : "0";
	argv[7] = redis_cluster_mode() ? "1" : "0";
	p = redis_pipeline_create();
	redis_pipeline_append_script(p, &claim_script, 2, 8, argv, NULL);
	redis_pipeline_exec(p);
	redis_check_reply(p, 0, "a write-behind claim");
	r = redis_pipeline_reply(p, 0);
	if (argv[7][0] == '1')
		r = claim_read_members(t, r);
	nm = r->nelem / 4;
	if (nm == 0)
		return 0;

	ms = palloc0(sizeof(Member) * nm);
	abs_idx = palloc(sizeof(int) * nm);
	inc_idx = palloc(sizeof(int) * nm);
	del_idx = palloc(sizeof(int) * nm);
	for (int i = 0; i < nm; i++)
	{
		Member	   *m = &ms[i];
		RedisValue *v = &r->elems[4 * i + 3];

		m->member = r->elems[4 * i].str;
		m->key = psprintf("%s%s", t->prefix, m->member);
		m->state = (int) r->elems[4 * i + 1].integer;
		m->seeded = r->elems[4 * i + 2].integer == 1;
		/* bytes the database cannot hold: dead letter (rowsec.c) */
		if ((m->problem = rs_wb_input_problem(&r->elems[4 * i], v, &m->member, &m->value)) != NULL)
		{
			m->problem_state = pstrdup("22021");
			m->key = psprintf("%s%s", t->prefix, m->member);
			continue;
		}
		if (!split_member(t, m))
		{
			m->problem = psprintf("dirty set member \"%s\" is not %d escaped key values separated by ':'",
								  m->member, t->nkeys);
			m->problem_state = pstrdup("22023");
			continue;
		}
		if (m->state < 0)
		{
			m->problem = psprintf("Redis could not read the value: %s", v->str);
			m->problem_state = pstrdup("38000");
			continue;
		}
		if (m->state == 0)
		{
			if (t->delete_missing)
				del_idx[ndel++] = i;
			continue;
		}
		decode_value(t, m, v, &unknown);
		if (m->problem)
			continue;
		if (t->ncounters > 0 && !m->seeded)
		{
			int			ci = 0;
			bool		bad = false;

			m->increment = true;
			m->read = palloc0(sizeof(int64) * t->ncounters);
			for (int c = 0; c < t->ncols; c++)
			{
				if (!t->counter[c])
					continue;
				/* a counter the key does not have adds nothing */
				if (!m->present[c])
					m->read[ci] = 0;
				else if (m->vals[c] == NULL || !parse_int64(m->vals[c], &m->read[ci]))
					bad = true;
				ci++;
			}
			if (bad)
			{
				m->problem = pstrdup("a counter field is not an integer");
				m->problem_state = pstrdup("22P02");
				continue;
			}
			inc_idx[ninc++] = i;
		}
		else
			abs_idx[nabs++] = i;
	}
	rs_stats_add(t->relid, RS_C_CLAIMED, nm);
	rs_stats_add(t->relid, RS_C_UNKNOWN_FIELDS, unknown);

	/* apply in one transaction, cancelled after redis_sync.drain_timeout */
	StartTransactionCommand();
	drain_timeout_arm();
	(void) rs_canonical_gucs_push();	/* key and value casts: canonical form; popped at commit */
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	/* the rows written into this table are not echoed to the keys they came from */
	rs_capture_suppress(t->relid, t->prefix);
	become(&saved, t->owner);
	PG_TRY();
	{
		/*
		 * each member must name exactly the row whose key it is (the key
		 * types' input functions are the table's code: run as its owner)
		 */
		check_member_keys(t, ms, abs_idx, &nabs);
		check_member_keys(t, ms, inc_idx, &ninc);
		check_member_keys(t, ms, del_idx, &ndel);
		apply_group(t, ms, abs_idx, nabs, false);
		apply_group(t, ms, inc_idx, ninc, true);
		if (ndel > 0)
		{
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
				Datum	   *elems = palloc(sizeof(Datum) * ndel);

				for (int d = 0; d < ndel; d++)
					elems[d] = CStringGetTextDatum(ms[del_idx[d]].keyvals[k]);
				appendStringInfo(&sql, "%s$%d::pg_catalog.text[]::%s[]", k ? ", " : "", k + 1, t->keybase[k]);
				types[k] = TEXTARRAYOID;
				args[k] = PointerGetDatum(construct_array(elems, ndel, TEXTOID, -1, false, TYPALIGN_INT));
			}
			appendStringInfoString(&sql, "))");
			if (SPI_execute_with_args(sql.data, t->nkeys, types, args, NULL, false, 0) != SPI_OK_DELETE)
				elog(ERROR, "redis_sync: write-behind delete failed");
			*applied += SPI_processed;
		}
		unbecome(&saved);
		rs_capture_suppress(InvalidOid, NULL);
	}
	PG_CATCH();
	{
		unbecome(&saved);
		rs_capture_suppress(InvalidOid, NULL);
		PG_RE_THROW();
	}
	PG_END_TRY();

	record_dead_letters(t, ms, nm);
	{
		/* applied keys are no longer dead */
		Datum	   *done = palloc(sizeof(Datum) * nm);
		int			nd = 0;

		for (int i = 0; i < nm; i++)
			if (ms[i].applied)
			{
				done[nd++] = CStringGetTextDatum(ms[i].member);
				(*applied)++;
			}
		if (nd > 0)
		{
			Oid			types[2] = {OIDOID, TEXTARRAYOID};
			Datum		args[2];

			args[0] = ObjectIdGetDatum(t->relid);
			/* the usual case is a table without dead letters: one index probe */
			SPI_execute_with_args("SELECT 1 FROM redis_sync.dead_letters WHERE relid = $1 LIMIT 1",
								  1, types, args, NULL, true, 1);
			if (SPI_processed > 0)
			{
				args[1] = PointerGetDatum(construct_array(done, nd, TEXTOID, -1, false, TYPALIGN_INT));
				SPI_execute_with_args("DELETE FROM redis_sync.dead_letters WHERE relid = $1 AND member = ANY ($2)",
									  2, types, args, NULL, false, 0);
			}
		}
	}
	/* unseeded counters: correct Redis while the row locks are held */
	correct_counters(t, ms, nm);
	SPI_finish();
	rs_stats_add(t->relid, RS_C_APPLIED, *applied);
	rs_stats_add(t->relid, RS_C_BATCHES, 1);
	rs_stats_set_lag(t->relid, (double) (GetCurrentTimestamp() - started) / 1000000.0);
	rs_stats_flush();
	PopActiveSnapshot();
	CommitTransactionCommand();	/* deferred triggers run here: still timed */
	drain_timeout_disarm();

	/* acknowledge: only now may the members leave the processing set */
	{
		const char **sargv = palloc(sizeof(char *) * (nm + 2));
		RedisPipeline *ack = redis_pipeline_create();

		sargv[0] = "SREM";
		sargv[1] = t->processing;
		for (int i = 0; i < nm; i++)
			sargv[i + 2] = ms[i].member;
		redis_pipeline_append(ack, nm + 2, sargv, NULL);
		redis_pipeline_exec(ack);
		redis_pipeline_free(ack);
	}
	redis_pipeline_free(p);
	return nm;
}

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
	/* servers that hide INFO fields: CONFIG GET (renamed or forbidden on some) */
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

int64
rs_drain_round(bool force, TimestampTz deadline, TimestampTz *next_due, int *failed)
{
	List	   *tables;
	ListCell   *lc;
	int64		total = 0;
	MemoryContext outer = CurrentMemoryContext;

	*next_due = 0;
	*failed = 0;
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	MemoryContextSwitchTo(outer);
	tables = load_tables(InvalidOid);
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(outer);

	/* nothing is claimed under a policy that can evict write-behind keys */
	if (tables != NIL && !eviction_check())
	{
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
		MemoryContextSwitchTo(outer);
		*next_due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), EVICTION_CHECK_MS);
		return 0;
	}

	foreach(lc, tables)
	{
		WbTable    *t = lfirst(lc);
		Schedule   *s = schedule_for(t->relid);
		TimestampTz now = GetCurrentTimestamp();
		int64		applied;
		int			claimed;

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
		 * timeout) must not hold up the others: the batch is rolled back
		 * (its members stay in the processing set and are drained first
		 * next time), counted, and the table backs off.
		 */
		PG_TRY();
		{
			/* leftovers of a crash first, then the dirty set */
			do
			{
				claimed = drain_batch(t, true, &applied);
				MemoryContextSwitchTo(outer);
				total += applied;
			} while (claimed == t->batch && (deadline == 0 || GetCurrentTimestamp() < deadline));
			while (!recover_only)
			{
				claimed = drain_batch(t, false, &applied);
				MemoryContextSwitchTo(outer);
				total += applied;
				CHECK_FOR_INTERRUPTS();
				if (claimed < t->batch || (deadline != 0 && GetCurrentTimestamp() >= deadline))
					break;
			}
			s->failures = 0;
			s->next = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), t->interval_ms);
		}
		PG_CATCH();
		{
			ErrorData  *ed;
			int64		backoff;
			bool		timed_out = drain_timeout_expired();

			drain_timeout_disarm();
			MemoryContextSwitchTo(outer);
			ed = CopyErrorData();
			FlushErrorState();
			AbortCurrentTransaction();
			MemoryContextSwitchTo(outer);
			rs_capture_suppress(InvalidOid, NULL);
			if (ed->sqlerrcode == ERRCODE_QUERY_CANCELED && timed_out)
				ed->message = psprintf("a batch took longer than redis_sync.drain_timeout (%d ms) and was cancelled",
									   rs_drain_timeout_ms);
			(*failed)++;
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
		PG_END_TRY();
		if (*next_due == 0 || s->next < *next_due)
			*next_due = s->next;
	}
	return total;
}

/* seed one table's keys from its rows, never overwriting an existing key */
static int64
reseed_table(WbTable *t)
{
	int64		seeded = 0;
	StringInfoData sql;
	AsOwner		saved;
	MemoryContext outer = CurrentMemoryContext;

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
	become(&saved, t->owner);	/* reading the table runs its code: as its owner */
	{
		Portal		portal = SPI_cursor_open_with_args(NULL, sql.data, 0, NULL, NULL, NULL, true, 0);

		for (;;)
		{
			RedisPipeline *p;
			int			na = 0;
			int			nk = 0;
			uint64		n;
			const char **keys;
			const char **args;
			int		   *argstart;

			SPI_cursor_fetch(portal, true, 1000);
			n = SPI_processed;
			if (n == 0)
				break;
			argstart = palloc(sizeof(int) * n);

			keys = palloc(sizeof(char *) * 2 * n);
			args = palloc(sizeof(char *) * (1 + n * (1 + 2 * t->ncols)));
			args[na++] = t->format == 'h' ? "h" : "s";
			for (uint64 i = 0; i < n; i++)
			{
				HeapTuple	tup = SPI_tuptable->vals[i];
				char	   *key = psprintf("%s%s", t->prefix, SPI_getvalue(tup, SPI_tuptable->tupdesc, 1));
				int			nf = 0;
				int			npos;

				argstart[nk / 2] = na;
				keys[nk++] = key;
				keys[nk++] = rs_companion_key(key, strlen(key), SEED_SUFFIX);
				npos = na++;
				if (t->format == 'j')
				{
					StringInfoData js;
					bool		first = true;

					initStringInfo(&js);
					appendStringInfoChar(&js, '{');
					for (int c = 0; c < t->ncols; c++)
						json_append_pair(&js, &first, t->cols[c], SPI_getvalue(tup, SPI_tuptable->tupdesc, c + 2));
					appendStringInfoChar(&js, '}');
					args[na++] = "json";
					args[na++] = js.data;
					nf = 1;
				}
				else
				{
					for (int c = 0; c < t->ncols; c++)
					{
						char	   *v = SPI_getvalue(tup, SPI_tuptable->tupdesc, c + 2);

						if (v == NULL)
							continue;
						args[na++] = t->cols[c];
						args[na++] = v;
						nf++;
					}
				}
				args[npos] = psprintf("%d", nf);
			}
			p = redis_pipeline_create();
			/* json is written as a plain string by the seed script */
			if (t->format == 'j')
				args[0] = "s";
			append_pair_script(p, &seed_script, keys, nk, args, na, argstart);
			redis_pipeline_exec(p);
			redis_check_reply(p, 0, "a write-behind re-seed");
			seeded += redis_pipeline_reply(p, 0)->integer;
			redis_pipeline_free(p);
		}
		SPI_cursor_close(portal);
	}
	unbecome(&saved);
	SPI_finish();
	MemoryContextSwitchTo(outer);
	return seeded;
}

void
rs_drain_reseed_all(void)
{
	List	   *tables;
	ListCell   *lc;
	MemoryContext outer = CurrentMemoryContext;

	StartTransactionCommand();
	(void) rs_canonical_gucs_push();	/* popped at commit */
	PushActiveSnapshot(GetTransactionSnapshot());
	MemoryContextSwitchTo(outer);
	tables = load_tables(InvalidOid);
	foreach(lc, tables)
	{
		WbTable    *t = lfirst(lc);
		int64		n = reseed_table(t);

		ereport(LOG,
				(errmsg("redis_sync worker: re-seeded %lld write-behind keys of %s",
						(long long) n, t->qname)));
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(outer);
}

/* ----------------------------------------------------------------
 * Application helpers: hincrby, hset; dead-letter retry
 * ---------------------------------------------------------------- */

PG_FUNCTION_INFO_V1(redis_sync_hincrby);
PG_FUNCTION_INFO_V1(redis_sync_hset);
PG_FUNCTION_INFO_V1(redis_sync_retry_dead_letters);

/* change one field and mark the key dirty; seed from the table when missing */
static RedisScript touch_script = REDIS_SCRIPT("redis_sync_touch",
"local fmt, col, op, val, member, seedk = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]\n"
"local n = tonumber(ARGV[7])\n"
"if redis.call('EXISTS', KEYS[1]) == 0 then\n"
"  if n > 0 then\n"
"    if fmt == 'h' then redis.call('HSET', KEYS[1], unpack(ARGV, 8, 7 + 2 * n))\n"
"    else redis.call('SET', KEYS[1], ARGV[9]) end\n"
"  end\n"
"  if seedk ~= '' then redis.call('SET', seedk, '1') end\n"
"end\n"
"local result = 0\n"
"if op == 'incr' then\n"
"  if fmt == 'h' then result = redis.call('HINCRBY', KEYS[1], col, val)\n"
"  else result = redis.call('INCRBY', KEYS[1], val) end\n"
"elseif op == 'set' then\n"
"  if fmt == 'h' then redis.call('HSET', KEYS[1], col, val) else redis.call('SET', KEYS[1], val) end\n"
"else\n"
"  if fmt == 'h' then redis.call('HSET', KEYS[1], col, '\\0') else redis.call('SET', KEYS[1], '\\0') end\n"
"end\n"
"if KEYS[2] then redis.call('SADD', KEYS[2], member) end\n"
"return result\n");

static WbTable *
wb_table_or_error(Oid relid)
{
	List	   *l = load_tables(relid);

	if (l == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not synced write-behind", get_rel_name(relid)),
				 errhint("Call redis_sync.write_behind() first.")));
	return linitial(l);
}

static int64
touch(Oid relid, const char *member, const char *column, const char *op, const char *value)
{
	WbTable    *t;
	Member		m;
	int			col = -1;
	StringInfoData sql;
	Oid		   *types;
	Datum	   *args;
	const char **argv;
	int			na = 0;
	RedisPipeline *p;
	int64		result;
	char	  **seed = NULL;
	bool		row_found = false;
	AsOwner		saved;

	/* the drain will write this value into the table: the caller must be allowed to */
	if (pg_class_aclcheck(relid, GetUserId(), ACL_UPDATE) != ACLCHECK_OK ||
		pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", get_rel_name(relid)),
				 errdetail("redis_sync.hincrby() and hset() need INSERT and UPDATE on the table.")));
	t = wb_table_or_error(relid);

	if (t->format == 'j')
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("redis_sync.hincrby() and hset() need format \"hash\" or \"string\"")));
	for (int c = 0; c < t->ncols; c++)
		if (strcmp(t->cols[c], column) == 0)
			col = c;
	if (col < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" is not a write-behind column of table %s", column, t->qname)));
	memset(&m, 0, sizeof(m));
	m.member = (char *) member;
	if (!split_member(t, &m))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key \"%s\" is not %d escaped key values separated by ':'", member, t->nkeys),
				 errhint("Escape '\\' and ':' inside a key value with a backslash.")));
	/* hincrby() returns the column's new value: reading it needs SELECT on it */
	if (strcmp(op, "incr") == 0 &&
		pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK &&
		pg_attribute_aclcheck(relid, get_attnum(relid, column), GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for column \"%s\" of table %s", column, t->qname),
				 errdetail("redis_sync.hincrby() returns the new value, so it needs SELECT on the column.")));
	/* row-level security: only a change the caller could make itself (rowsec.c) */
	rs_rls_check_write(relid, t->nkeys, t->keys, m.keyvals, column, op, value);

	/* the row, to seed a key Redis does not have */
	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	for (int c = 0; c < t->ncols; c++)
		appendStringInfo(&sql, "%s%s::text", c ? ", " : "", quote_identifier(t->cols[c]));
	appendStringInfo(&sql, " FROM %s WHERE (", t->qname);
	for (int k = 0; k < t->nkeys; k++)
		appendStringInfo(&sql, "%s%s", k ? ", " : "", quote_identifier(t->keys[k]));
	appendStringInfoString(&sql, ") = (");
	types = palloc(sizeof(Oid) * t->nkeys);
	args = palloc(sizeof(Datum) * t->nkeys);
	for (int k = 0; k < t->nkeys; k++)
	{
		appendStringInfo(&sql, "%s$%d::pg_catalog.text::%s", k ? ", " : "", k + 1, t->keybase[k]);
		types[k] = TEXTOID;
		args[k] = CStringGetTextDatum(m.keyvals[k]);
	}
	appendStringInfoChar(&sql, ')');
	/* last column: is the row's key spelled exactly as the given key values? */
	{
		StringInfoData cmp;

		initStringInfo(&cmp);
		appendStringInfoString(&cmp, "ROW(");
		for (int k = 0; k < t->nkeys; k++)
			appendStringInfo(&cmp, "%s%s", k ? ", " : "", quote_identifier(t->keys[k]));
		appendStringInfoString(&cmp, ")::pg_catalog.text OPERATOR(pg_catalog.=) ROW(");
		for (int k = 0; k < t->nkeys; k++)
			appendStringInfo(&cmp, "%s$%d::pg_catalog.text", k ? ", " : "", k + 1);
		appendStringInfoString(&cmp, ")::pg_catalog.text COLLATE \"C\"");
		sql.data[0] = '\0';
		sql.len = 0;
		appendStringInfo(&sql, "SELECT ");
		for (int c = 0; c < t->ncols; c++)
			appendStringInfo(&sql, "%s::text, ", quote_identifier(t->cols[c]));
		appendStringInfo(&sql, "%s FROM %s WHERE (", cmp.data, t->qname);
		for (int k = 0; k < t->nkeys; k++)
			appendStringInfo(&sql, "%s%s", k ? ", " : "", quote_identifier(t->keys[k]));
		appendStringInfoString(&sql, ") = (");
		for (int k = 0; k < t->nkeys; k++)
			appendStringInfo(&sql, "%s$%d::pg_catalog.text::%s", k ? ", " : "", k + 1, t->keybase[k]);
		appendStringInfoChar(&sql, ')');
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	/* the seed is read as the owner: hset()/hincrby() need no SELECT */
	become(&saved, t->owner);
	if (SPI_execute_with_args(sql.data, t->nkeys, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read the row to seed");
	unbecome(&saved);
	if (SPI_processed == 1)
	{
		MemoryContext spi;
		bool		isnull;

		/*
		 * an equal key spelled otherwise (numeric 1.00 for the row 1.0, a
		 * case-insensitive 'abc' for 'ABC') is another key: its drain
		 * would be a dead letter (check_member_rows), so refuse it now
		 */
		if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, t->ncols + 1, &isnull)) || isnull)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("key \"%s\" names a row of table %s whose key is spelled otherwise", member, t->qname),
					 errdetail("A row's key is the canonical text of its key values, as the row holds them."),
					 errhint("Use the key the row has (its key columns' text, escaped).")));
		spi = MemoryContextSwitchTo(TopTransactionContext);
		row_found = true;
		seed = palloc0(sizeof(char *) * t->ncols);
		for (int c = 0; c < t->ncols; c++)
		{
			char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, c + 1);

			seed[c] = v ? pstrdup(v) : NULL;
		}
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();

	argv = palloc(sizeof(char *) * (9 + 2 * t->ncols));
	argv[na++] = psprintf("%s%s", t->prefix, member);
	argv[na++] = t->dirty;
	argv[na++] = t->format == 'h' ? "h" : "s";
	argv[na++] = column;
	argv[na++] = op;
	argv[na++] = value ? value : "";
	argv[na++] = member;
	argv[na++] = t->ncounters > 0 ? rs_companion_key(argv[0], strlen(argv[0]), SEED_SUFFIX) : "";
	{
		int			npos = na++;
		int			nf = 0;

		if (row_found)
			for (int c = 0; c < t->ncols; c++)
			{
				if (seed[c] == NULL)
					continue;
				argv[na++] = t->cols[c];
				argv[na++] = seed[c];
				nf++;
			}
		argv[npos] = psprintf("%d", nf);
	}
	p = redis_pipeline_create();
	if (redis_cluster_mode())
	{
		/*
		 * The dirty set is in another slot: change the key, then (next round
		 * trip, so a drain never claims the member before the change) mark it.
		 */
		const char *sargv[3] = {"SADD", argv[1], member};

		argv[1] = argv[0];
		redis_pipeline_append_script(p, &touch_script, 1, na - 1, argv + 1, NULL);
		redis_pipeline_exec(p);
		redis_check_reply(p, 0, op);
		result = redis_pipeline_reply(p, 0)->integer;
		redis_pipeline_free(p);
		p = redis_pipeline_create();
		redis_pipeline_append(p, 3, sargv, NULL);
		redis_pipeline_exec(p);
		redis_check_reply(p, 0, "SADD");
		redis_pipeline_free(p);
		return result;
	}
	redis_pipeline_append_script(p, &touch_script, 2, na, argv, NULL);
	redis_pipeline_exec(p);
	redis_check_reply(p, 0, op);
	result = redis_pipeline_reply(p, 0)->integer;
	redis_pipeline_free(p);
	return result;
}

/* redis_sync.hincrby(tbl, key, column, delta) RETURNS bigint */
Datum
redis_sync_hincrby(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *member = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *column = text_to_cstring(PG_GETARG_TEXT_PP(2));
	int64		delta = PG_GETARG_INT64(3);
	int			nest = rs_canonical_gucs_push();	/* the member's key values are canonical text */
	int64		result = touch(relid, member, column, "incr", psprintf(INT64_FORMAT, delta));

	rs_canonical_gucs_pop(nest);
	PG_RETURN_INT64(result);
}

/* redis_sync.hset(tbl, key, column, value) */
Datum
redis_sync_hset(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *member;
	char	   *column;
	int			nest;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table, key and column must not be NULL")));
	relid = PG_GETARG_OID(0);
	member = text_to_cstring(PG_GETARG_TEXT_PP(1));
	column = text_to_cstring(PG_GETARG_TEXT_PP(2));
	nest = rs_canonical_gucs_push();	/* the member's key values are canonical text */
	if (PG_ARGISNULL(3))
		touch(relid, member, column, "del", NULL);
	else
		touch(relid, member, column, "set", text_to_cstring(PG_GETARG_TEXT_PP(3)));
	rs_canonical_gucs_pop(nest);
	PG_RETURN_VOID();
}

/* redis_sync.retry_dead_letters(tbl DEFAULT NULL) RETURNS bigint */
Datum
redis_sync_retry_dead_letters(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_ARGISNULL(0) ? InvalidOid : PG_GETARG_OID(0);
	List	   *tables;
	ListCell   *lc;
	int64		total = 0;

	if (OidIsValid(relid))
		rs_require_owner(relid);	/* without a table: the dead letters the caller can see */
	tables = load_tables(relid);

	foreach(lc, tables)
	{
		WbTable    *t = lfirst(lc);
		Oid			types[1] = {OIDOID};
		Datum		args[1];
		const char **argv;
		RedisPipeline *p;
		uint64		n;

		args[0] = ObjectIdGetDatum(t->relid);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "redis_sync: SPI_connect failed");
		if (SPI_execute_with_args("SELECT member FROM redis_sync.dead_letters "
								  " WHERE relid::pg_catalog.oid OPERATOR(pg_catalog.=) $1",
								  1, types, args, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "redis_sync: could not read redis_sync.dead_letters");
		n = SPI_processed;
		if (n > 0)
		{
			argv = palloc(sizeof(char *) * (n + 2));
			argv[0] = "SADD";
			argv[1] = t->dirty;
			for (uint64 i = 0; i < n; i++)
				argv[i + 2] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
			p = redis_pipeline_create();
			redis_pipeline_append(p, (int) n + 2, argv, NULL);
			redis_pipeline_exec(p);
			redis_check_reply(p, 0, "SADD");
			redis_pipeline_free(p);
			total += n;
		}
		SPI_finish();
	}
	rs_worker_wake();
	PG_RETURN_INT64(total);
}
