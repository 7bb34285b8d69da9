/*-------------------------------------------------------------------------
 *
 * claim.c
 *		Which table owns a key prefix, across every PostgreSQL database
 *		and server that share one Redis database.
 *
 * A claim is a field of the Redis hash redis_sync:claims:
 *		"p:<key prefix>"  every key starting with the prefix
 *		"k:<key>"         one key (a write-behind dirty set, its processing set)
 * whose value is "<server system identifier>/<database OID>/<table OID>",
 * a tab, and a description of the holder for error messages.  Claims
 * overlap when one prefix starts with the other, a key starts with a
 * prefix, or two keys are equal.
 *
 * _config_write() calls rs_claim_table() after it wrote the table's rows of
 * redis_sync.tables: the table's claims are checked and recorded in one
 * Lua script (atomic in Redis, so two databases syncing overlapping
 * prefixes at the same moment cannot both succeed).  An overlapping claim
 * of a table of this very database that no longer has that prefix in
 * redis_sync.tables (a rolled-back sync, a dropped table, a re-created
 * extension) is stale and taken over; any other overlapping claim is an
 * ERROR naming its holder.  At pre-commit, the claims of every table whose
 * configuration changed are reduced to those its committed configuration
 * needs (unsync releases them all).
 *
 * When Redis cannot be reached a sync still succeeds (eventual consistency
 * works without Redis) with a WARNING: the prefix is then protected only
 * within this database until the claim is recorded, by the next
 * write_through()/write_behind() call, by claim_prefixes() (rs_claim_all:
 * the 0.1 -> 0.2 upgrade calls it) or by the background worker, which
 * claims its database's tables when it first reaches Redis and again
 * whenever Redis restarted empty.
 *
 * Claims of other holders that are gone are released or taken over too:
 * DROP EXTENSION releases every claim of its database when it commits
 * (object access hook; a WARNING when Redis cannot be reached), and a claim
 * of a database of this server that no longer exists (DROP DATABASE) is
 * stale like a dropped table's.  Claims of other servers, and of a database
 * that dropped the extension while Redis was unreachable, stay until they
 * are removed by hand.
 *
 * The namespace redis_sync: is reserved for the extension's own keys (this
 * hash, the in-flight markers): no prefix or dirty set may overlap it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_database.h"
#include "commands/extension.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/event_trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

#include "claim.h"
#include "encode.h"
#include "identity.h"
#include "lifecycle.h"
#include "redis_client.h"
#include "subxact.h"

/*
 * A claim looks up only the fields that can overlap its own instead of
 * reading them all (issue 18: setting up many tables was quadratic): the
 * prefixes of a value are equality probes (HGET), the fields starting with
 * it (prefixes and keys: "[pk]:<value>*") one HSCAN with a glob MATCH,
 * which Redis filters in C.  Both read the
 * hash itself, the only record: claims written by an older build, or set or
 * deleted by hand, are seen as they are.
 */
static RedisScript claim_script = REDIS_SCRIPT("redis_sync_claim_prefix",
											   "if redis.replicate_commands then redis.replicate_commands() end\n"
											   "local H, me = KEYS[1], ARGV[1]\n"
											   "local function other(c, val)\n"
											   "  val = val or redis.call('HGET', H, c)\n"
											   "  if val and string.match(val, '^[^\\t]*') ~= me then return {'conflict', c, val} end\n"
											   "end\n"
											   "local function glob(s) return (string.gsub(s, '[%*%?%[%]\\\\]', '\\\\%0')) end\n"
											   "local function conflict(f)\n"
											   "  local t, v = string.sub(f, 1, 1), string.sub(f, 3)\n"
											   "  for i = 1, #v do\n"
											   "    local c = other('p:' .. string.sub(v, 1, i))\n"
											   "    if c then return c end\n"
											   "  end\n"
											   "  if t ~= 'p' then return other(f) end\n"
											   "  local cur = '0'\n"
											   "  repeat\n"
											   "    local r = redis.call('HSCAN', H, cur, 'MATCH', '[pk]:' .. glob(v) .. '*', 'COUNT', 1000)\n"
											   "    cur = r[1]\n"
											   "    for j = 1, #r[2], 2 do\n"
											   "      local c = other(r[2][j], r[2][j + 1])\n"
											   "      if c then return c end\n"
											   "    end\n"
											   "  until cur == '0'\n"
											   "end\n"
											   "for i = 3, #ARGV do\n"
											   "  local c = conflict(ARGV[i])\n"
											   "  if c then return c end\n"
											   "end\n"
											   "for i = 3, #ARGV do redis.call('HSET', H, ARGV[i], me .. '\\t' .. ARGV[2]) end\n"
											   "return {'ok'}\n");

/*
 * Drop claims but those kept, in one HGETALL of the hash whatever the
 * number of holders (one call per table read the whole hash per table: the
 * worker's claims of 1,000 tables after a Redis restart cost 0.8 s of Redis
 * time).  A claim goes when its holder id (the value up to the tab) is one
 * of ARGV[3 .. 2 + ARGV[2]] (tables whose configuration changed), or begins
 * with ARGV[1] when that is not empty (every table of a database that
 * dropped the extension), and the pair of its field and holder id is not
 * among the pairs that follow.
 */
static RedisScript release_script = REDIS_SCRIPT("redis_sync_release_claims",
												 "local db, nh = ARGV[1], tonumber(ARGV[2])\n"
												 "local mine, keep = {}, {}\n"
												 "for i = 3, nh + 2 do mine[ARGV[i]] = true end\n"
												 "for j = nh + 3, #ARGV, 2 do keep[ARGV[j] .. '\\t' .. ARGV[j + 1]] = true end\n"
												 "local all = redis.call('HGETALL', KEYS[1])\n"
												 "local n = 0\n"
												 "for j = 1, #all, 2 do\n"
												 "  local holder = string.match(all[j + 1], '^[^\\t]*')\n"
												 "  if (mine[holder] or (db ~= '' and string.sub(holder, 1, #db) == db))\n"
												 "     and not keep[all[j] .. '\\t' .. holder] then\n"
												 "    redis.call('HDEL', KEYS[1], all[j]); n = n + 1\n"
												 "  end\n"
												 "end\n"
												 "return n\n");

/*
 * The claims of many tables at once (rs_claim_all: the worker after a
 * Redis restart, claim_prefixes()): the hash is read once (HGETALL) and
 * indexed in the script, where one claim script per table read it once per
 * table, so 1,000 tables cost 0.25 s of Redis time and more the more claims
 * there were.  The overlap rules are the claim script's: a field conflicts
 * with a claim of another holder on a prefix of its value, on itself (a
 * key), or (a prefix) on any field whose value starts with it: under[v]
 * is the first field whose value starts with v, for each prefix v of the
 * batch (only the lengths those have are looked at, so a call costs one
 * lookup per claim and length, not per character: 42,000 claims of other
 * servers made a call 0.5 s when every prefix of every claim was indexed),
 * under2[v] one of another holder (a field is looked at only when its
 * value starts like one of the batch's, to the shortest of their lengths);
 * equality probes and the holders of those fields are HGETs, as in the
 * claim script.  A call reads the hash's fields once (HKEYS): about 30 ms
 * of Redis time at 42,000 claims, where one table's claim took 17 ms.  ARGV: for each table, its holder id, description,
 * number of fields and fields.  A table without a conflict is recorded
 * (and indexed, so the tables after it see it); the reply lists the
 * 1-based positions of the tables that met one, which the caller claims
 * one by one (stale claims taken over, errors named).
 */
static RedisScript claim_many_script = REDIS_SCRIPT("redis_sync_claim_many",
													"if redis.replicate_commands then redis.replicate_commands() end\n"
													"local H = KEYS[1]\n"
													"local want, lens, lenlist = {}, {}, {}\n"
													"local i = 1\n"
													"while i <= #ARGV do\n"
													"  for j = i + 3, i + 2 + tonumber(ARGV[i + 2]) do\n"
													"    if string.sub(ARGV[j], 1, 1) == 'p' then\n"
													"      local v = string.sub(ARGV[j], 3)\n"
													"      want[v] = true\n"
													"      lens[#v] = true\n"
													"    end\n"
													"  end\n"
													"  i = i + 3 + tonumber(ARGV[i + 2])\n"
													"end\n"
													"local lmin, stems = math.huge, {}\n"
													"for l in pairs(lens) do lenlist[#lenlist + 1] = l; lmin = math.min(lmin, l) end\n"
													"for v in pairs(want) do stems[string.sub(v, 1, lmin)] = true end\n"
													"local hold, under, under2 = {}, {}, {}\n"
													"local function index(f, h)\n"
													"  if not stems[string.sub(f, 3, 2 + lmin)] then return end\n"
													"  for _, l in ipairs(lenlist) do\n"
													"    if l <= #f - 2 then\n"
													"      local s = string.sub(f, 3, 2 + l)\n"
													"      if want[s] then\n"
													"        h = h or string.match(redis.call('HGET', H, f), '^[^\\t]*')\n"
													"        hold[f] = h\n"
													"        local u = under[s]\n"
													"        if not u then under[s] = f\n"
													"        elseif not under2[s] and hold[u] ~= h then under2[s] = f end\n"
													"      end\n"
													"    end\n"
													"  end\n"
													"end\n"
													"for _, f in ipairs(redis.call('HKEYS', H)) do index(f) end\n"
													"local function other(f, me)\n"
													"  local val = redis.call('HGET', H, f)\n"
													"  return val and string.match(val, '^[^\\t]*') ~= me\n"
													"end\n"
													"local function conflict(f, me)\n"
													"  local t, v = string.sub(f, 1, 1), string.sub(f, 3)\n"
													"  for k = 1, #v do\n"
													"    if other('p:' .. string.sub(v, 1, k), me) then return true end\n"
													"  end\n"
													"  if t ~= 'p' then return other(f, me) end\n"
													"  local u = under[v]\n"
													"  return u ~= nil and (hold[u] ~= me or under2[v] ~= nil)\n"
													"end\n"
													"local refused, n = {}, 0\n"
													"i = 1\n"
													"while i <= #ARGV do\n"
													"  local me, desc, nf = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])\n"
													"  local ok = true\n"
													"  n = n + 1\n"
													"  for j = i + 3, i + 2 + nf do\n"
													"    if conflict(ARGV[j], me) then ok = false; break end\n"
													"  end\n"
													"  if ok then\n"
													"    for j = i + 3, i + 2 + nf do\n"
													"      redis.call('HSET', H, ARGV[j], me .. '\\t' .. desc)\n"
													"      index(ARGV[j], me)\n"
													"    end\n"
													"  else\n"
													"    refused[#refused + 1] = n\n"
													"  end\n"
													"  i = i + 3 + nf\n"
													"end\n"
													"return refused\n");

/* take over one stale claim: only if it still has the value we judged stale */
static RedisScript takeover_script = REDIS_SCRIPT("redis_sync_takeover_prefix",
												  "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then\n"
												  "  return redis.call('HDEL', KEYS[1], ARGV[1])\n"
												  "end\n"
												  "return 0\n");

/* tables whose claims are reduced at pre-commit (in TopTransactionContext) */
static List *pending_relids = NIL;
static bool callback_registered = false;

static char *
holder_id(Oid relid)
{
	return psprintf(UINT64_FORMAT "/%u/%u", GetSystemIdentifier(), MyDatabaseId, relid);
}

static char *
holder_description(Oid relid)
{
	char	   *nsp = get_namespace_name(get_rel_namespace(relid));
	char	   *rel = get_rel_name(relid);

	return psprintf("table %s of database \"%s\" on server " UINT64_FORMAT,
					quote_qualified_identifier(nsp ? nsp : "?", rel ? rel : "?"),
					get_database_name(MyDatabaseId), GetSystemIdentifier());
}

/* a dirty set that may not be claimed (fields_of()'s ERROR) */
static bool
dirty_set_refused(const char *dirty)
{
	return dirty != NULL && dirty[0] == '{';
}

/*
 * The claim fields of one row of redis_sync.tables, appended to fields, as
 * they are (check_local() reads other tables' rows with them)
 */
static List *
row_fields(List *fields, const char *prefix, const char *dirty)
{
	fields = lappend(fields, psprintf("p:%s", prefix));
	if (dirty)
	{
		fields = lappend(fields, psprintf("k:%s", dirty));
		fields = lappend(fields, psprintf("k:%s", rs_companion_key(dirty, strlen(dirty), ":rs_processing")));
	}
	return fields;
}

/* the same for a row this table claims: its dirty set must be claimable */
static List *
fields_of(List *fields, const char *prefix, const char *dirty)
{
	/* like a prefix: a dirty set must not be able to meet a companion key */
	if (dirty_set_refused(dirty))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("dirty_set must not begin with \"{\""),
				 errdetail("Version, seed and processing keys begin with \"{\"; a dirty set must not be able to meet them.")));
	return row_fields(fields, prefix, dirty);
}

/* the claim fields a table needs now, from redis_sync.tables: as this
 * transaction sees it, or (latest) as committed now */
static List *
claim_fields_snapshot(Oid relid, bool latest)
{
	Oid			types[1] = {OIDOID};
	Datum		args[1];
	List	   *fields = NIL;
	MemoryContext outer = CurrentMemoryContext;

	args[0] = ObjectIdGetDatum(relid);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	{
		const char *sql = "SELECT key_prefix, dirty_set FROM redis_sync.tables "
		" WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass";
		int			ret;

		if (latest)
		{
			/*
			 * what is committed now, not what this transaction's snapshot
			 * shows
			 */
			SPIPlanPtr	plan = SPI_prepare(sql, 1, types);

			if (plan == NULL)
				elog(ERROR, "redis_sync: could not prepare a query of redis_sync.tables");
			ret = SPI_execute_snapshot(plan, args, NULL, GetLatestSnapshot(), InvalidSnapshot,
									   true, false, 0);
		}
		else
			ret = SPI_execute_with_args(sql, 1, types, args, NULL, false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "redis_sync: could not read redis_sync.tables");
	}
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *prefix = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *dirty = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		MemoryContext spi = MemoryContextSwitchTo(outer);

		fields = fields_of(fields, prefix, dirty);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return fields;
}


static List *
claim_fields(Oid relid)
{
	return claim_fields_snapshot(relid, false);
}

static bool
starts_with(const char *s, const char *p)
{
	return strncmp(s, p, strlen(p)) == 0;
}

/* would check_reserved() refuse this field? */
static bool
reserved_violation(const char *field)
{
	const char *v = field + 2;

	if (field[0] == 'p')
		return v[0] == '{' || starts_with(v, RS_RESERVED_NAMESPACE) ||
			starts_with(RS_RESERVED_NAMESPACE, v);
	return starts_with(v, RS_RESERVED_NAMESPACE);
}

/* the reserved namespace: no prefix or key of a table may overlap it */
static void
check_reserved(const char *field)
{
	const char *v = field + 2;
	bool		bad;

	/*
	 * Companion keys (version, seed, processing) begin with "{": a prefix
	 * that does too would let row keys meet other tables' companion keys.
	 * _sync() says so first; this also covers _config_write() called directly
	 * (it is executable by every table owner).
	 */
	if (field[0] == 'p' && v[0] == '{')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key_prefix must not begin with \"{\""),
				 errdetail("Version, seed and processing keys begin with \"{\"; row keys must not be able to meet them.")));
	if (field[0] == 'p')
		bad = starts_with(v, RS_RESERVED_NAMESPACE) || starts_with(RS_RESERVED_NAMESPACE, v);
	else
		bad = starts_with(v, RS_RESERVED_NAMESPACE);
	if (bad)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s \"%s\" overlaps the namespace \"%s\" reserved for redis_sync's own keys",
						field[0] == 'p' ? "key prefix" : "key", v, RS_RESERVED_NAMESPACE)));
}

/*
 * is holder (a claim value) a table of this database that no longer needs
 * field, or of a database of this server that is gone?
 */
static bool
claim_is_stale(const char *value, const char *field)
{
	uint64		sysid;
	Oid			dboid;
	Oid			relid;
	ListCell   *lc;

	if (sscanf(value, UINT64_FORMAT "/%u/%u", &sysid, &dboid, &relid) != 3)
		return false;
	if (sysid != GetSystemIdentifier())
		return false;
	/* a database of this server that was dropped (its OID could be reused) */
	if (dboid != MyDatabaseId)
		return !SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(dboid));

	/*
	 * The latest committed configuration: a holder that committed after our
	 * snapshot was taken (we waited for it in lock_configuration(), admin.c)
	 * is not stale, whatever the isolation level.
	 */
	foreach(lc, claim_fields_snapshot(relid, true))
		if (strcmp(lfirst(lc), field) == 0)
		return false;
	return true;
}

/* the same overlap test as the Lua script, for the check within this database */
static bool
fields_overlap(const char *a, const char *b)
{
	const char *va = a + 2;
	const char *vb = b + 2;

	if (a[0] == 'p' && b[0] == 'p')
		return starts_with(va, vb) || starts_with(vb, va);
	if (a[0] == 'p')
		return starts_with(vb, va);
	if (b[0] == 'p')
		return starts_with(va, vb);
	return strcmp(va, vb) == 0;
}

static void
conflict_error(const char *mine, const char *theirs, const char *holder)
{
	ereport(ERROR,
			(errcode(ERRCODE_DUPLICATE_OBJECT),
			 errmsg("%s \"%s\" overlaps %s \"%s\" claimed by %s",
					mine[0] == 'p' ? "key prefix" : "key", mine + 2,
					theirs[0] == 'p' ? "key prefix" : "key", theirs + 2, holder),
			 errdetail("Two tables whose keys share a prefix would overwrite and purge each other's keys."),
			 errhint("Choose another key_prefix or dirty_set, or unsync the other table.")));
}

/* the strings v starts with, v included, as a text[] */
static Datum
prefixes_of(const char *v)
{
	int			n = strlen(v);
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 1; i <= n; i++)
		elems[i - 1] = PointerGetDatum(cstring_to_text_with_len(v, i));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * Within this database, without Redis: every other synced table.  Only the
 * configurations whose prefix or dirty set starts with one of our values
 * (index ranges) or is one of their prefixes (equality probes) can overlap
 * (a companion key begins with '{', which no prefix does: check_reserved()
 * came first, and equal companions mean equal dirty sets); each candidate's
 * fields are then tested exactly, as before.
 */
static void
check_local(Oid relid, List *fields)
{
	Oid			types[3] = {OIDOID, TEXTOID, TEXTARRAYOID};
	Datum		args[3];
	SPIPlanPtr	plan;
	ListCell   *fc;

	args[0] = ObjectIdGetDatum(relid);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	plan = SPI_prepare("SELECT t.relid::pg_catalog.oid, t.key_prefix, t.dirty_set FROM redis_sync.tables t "
					   " WHERE t.relid OPERATOR(pg_catalog.<>) $1::pg_catalog.regclass "
					   "   AND pg_catalog.starts_with(t.key_prefix, $2) "
					   "UNION ALL SELECT t.relid::pg_catalog.oid, t.key_prefix, t.dirty_set FROM redis_sync.tables t "
					   " WHERE t.relid OPERATOR(pg_catalog.<>) $1::pg_catalog.regclass "
					   "   AND t.key_prefix OPERATOR(pg_catalog.=) ANY ($3) "
					   "UNION ALL SELECT t.relid::pg_catalog.oid, t.key_prefix, t.dirty_set FROM redis_sync.tables t "
					   " WHERE t.relid OPERATOR(pg_catalog.<>) $1::pg_catalog.regclass "
					   "   AND pg_catalog.starts_with(t.dirty_set, $2) "
					   "UNION ALL SELECT t.relid::pg_catalog.oid, t.key_prefix, t.dirty_set FROM redis_sync.tables t "
					   " WHERE t.relid OPERATOR(pg_catalog.<>) $1::pg_catalog.regclass "
					   "   AND t.dirty_set OPERATOR(pg_catalog.=) ANY ($3)",
					   3, types);
	if (plan == NULL)
		elog(ERROR, "redis_sync: could not prepare a query of redis_sync.tables");
	foreach(fc, fields)
	{
		const char *v = (const char *) lfirst(fc) + 2;

		args[1] = CStringGetTextDatum(v);
		args[2] = prefixes_of(v);
		if (SPI_execute_plan(plan, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "redis_sync: could not read redis_sync.tables");
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	td = SPI_tuptable->tupdesc;
			bool		isnull;
			Oid			other = DatumGetObjectId(SPI_getbinval(tup, td, 1, &isnull));
			ListCell   *tc;

			foreach(tc, row_fields(NIL, SPI_getvalue(tup, td, 2), SPI_getvalue(tup, td, 3)))
			{
				ListCell   *mc;

				foreach(mc, fields)
					if (fields_overlap(lfirst(mc), lfirst(tc)))
					conflict_error(lfirst(mc), lfirst(tc), holder_description(other));
			}
		}
	}
	SPI_finish();
}

/*
 * At pre-commit, each table whose configuration changed keeps the claims
 * its committed configuration needs (computed now, so a savepoint rolled
 * back after an unsync or a sync counts as it should) and releases the rest.
 */
static void
claim_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_PRE_COMMIT && pending_relids != NIL)
	{
		List	   *relids = pending_relids;
		List	   *holders = NIL;
		List	   *keep = NIL; /* pairs of field and holder id */
		const char **argv;
		int			na = 0;
		RedisPipeline *p;
		RedisFailure failure;
		ListCell   *lc;

		pending_relids = NIL;
		/* see every change of this transaction, whatever snapshot is active */
		CommandCounterIncrement();

		/*
		 * The extension dropped after a sync or an unsync of this
		 * transaction: no configuration to read (redis_sync.tables is gone);
		 * every claim of the database is released once it commits
		 * (drop_xact_callback)
		 */
		if (!OidIsValid(get_extension_oid("redis_sync", true)))
			return;
		PushActiveSnapshot(GetTransactionSnapshot());
		foreach(lc, relids)
		{
			Oid			relid = lfirst_oid(lc);
			char	   *me = holder_id(relid);
			ListCell   *kc;

			holders = lappend(holders, me);
			foreach(kc, claim_fields(relid))
			{
				keep = lappend(keep, lfirst(kc));
				keep = lappend(keep, me);
			}
		}
		PopActiveSnapshot();
		argv = palloc(sizeof(char *) * (3 + list_length(holders) + list_length(keep)));
		argv[na++] = RS_CLAIMS_KEY;
		argv[na++] = "";
		argv[na++] = psprintf("%d", list_length(holders));
		foreach(lc, holders)
			argv[na++] = lfirst(lc);
		foreach(lc, keep)
			argv[na++] = lfirst(lc);
		p = redis_pipeline_create();
		redis_pipeline_append_script(p, &release_script, 1, na, argv, NULL);
		if (!redis_pipeline_try_exec(p, &failure))
			ereport(WARNING,
					(errmsg("could not release redis_sync key prefix claims: %s", failure.message),
					 errhint("A claim left behind by a table of this database is taken over by the next table that needs it.")));
		redis_pipeline_free(p);
	}
	else if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
			 event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
			 event == XACT_EVENT_PREPARE)
		pending_relids = NIL;
}

static void
remember(Oid relid)
{
	MemoryContext old;

	if (!callback_registered)
	{
		RegisterXactCallback(claim_xact_callback, NULL);
		callback_registered = true;
	}
	if (list_member_oid(pending_relids, relid))
		return;
	old = MemoryContextSwitchTo(TopTransactionContext);
	pending_relids = lappend_oid(pending_relids, relid);
	MemoryContextSwitchTo(old);
}

void
rs_claim_table(Oid relid)
{
	List	   *fields = claim_fields(relid);
	ListCell   *lc;
	char	   *me = holder_id(relid);
	char	   *desc = holder_description(relid);

	/* a cluster made by pg_upgrade: the old identity's claims are ours */
	rs_identity_adopt_claims();
	remember(relid);
	if (fields == NIL)
		return;					/* unsync: released at pre-commit */
	foreach(lc, fields)
		check_reserved(lfirst(lc));
	check_local(relid, fields);

	/* in Redis: a stale claim of this database is taken over, then retried */
	for (int attempt = 0; attempt < 100; attempt++)
	{
		RedisPipeline *p = redis_pipeline_create();
		RedisFailure failure;
		const char **argv = palloc(sizeof(char *) * (list_length(fields) + 3));
		int			na = 0;
		RedisValue *v;
		char	   *field;
		char	   *value;
		const char *tab;

		argv[na++] = RS_CLAIMS_KEY;
		argv[na++] = me;
		argv[na++] = desc;
		foreach(lc, fields)
			argv[na++] = lfirst(lc);
		redis_pipeline_append_script(p, &claim_script, 1, na, argv, NULL);
		if (!redis_pipeline_try_exec(p, &failure))
		{
			ereport(WARNING,
					(errmsg("could not record the claim of key prefix \"%s\" in Redis: %s",
							((char *) linitial(fields)) + 2, failure.message),
					 errdetail("Until it is recorded, only tables of this database are kept from using an overlapping prefix."),
					 errhint("Call the sync function again once Redis is reachable.")));
			redis_pipeline_free(p);
			return;
		}
		redis_check_reply(p, 0, "a key prefix claim");
		v = redis_pipeline_reply(p, 0);
		if (v->type != RV_ARRAY || v->nelem < 1)
			elog(ERROR, "redis_sync: unexpected reply to a key prefix claim");
		if (strcmp(v->elems[0].str, "ok") == 0)
		{
			redis_pipeline_free(p);
			return;
		}
		field = pstrdup(v->elems[1].str);
		value = pstrdup(v->elems[2].str);
		redis_pipeline_free(p);

		if (claim_is_stale(value, field))
		{
			const char *targv[3];

			p = redis_pipeline_create();
			targv[0] = RS_CLAIMS_KEY;
			targv[1] = field;
			targv[2] = value;
			redis_pipeline_append_script(p, &takeover_script, 1, 3, targv, NULL);
			redis_pipeline_exec(p);
			redis_check_reply(p, 0, "a key prefix claim");
			redis_pipeline_free(p);
			continue;
		}
		/* the overlapping field of ours, for the message */
		foreach(lc, fields)
			if (fields_overlap(lfirst(lc), field))
			break;
		tab = strchr(value, '\t');
		conflict_error(lc ? lfirst(lc) : linitial(fields), field, tab ? tab + 1 : value);
	}
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("could not record the claim of key prefix \"%s\": too many concurrent changes",
					((char *) linitial(fields)) + 2)));
}

void
rs_claim_check_purge(Oid relid, const char *prefix)
{
	ListCell   *lc;
	char	   *want = psprintf("p:%s", prefix);

	foreach(lc, claim_fields(relid))
		if (strcmp(lfirst(lc), want) == 0)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("key prefix \"%s\" is not a prefix of table %s", prefix, get_rel_name(relid)),
			 errdetail("Only the keys under a table's own key prefix can be purged.")));
}

void
rs_require_key_access(char **keys, int n, bool prefix)
{
	List	   *fields = NIL;
	MemoryContext outer = CurrentMemoryContext;

	for (int i = 0; i < n; i++)
		if (keys[i] == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("Redis keys must not be NULL")));
	if (superuser())
		return;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	if (SPI_execute("SELECT DISTINCT t.relid::pg_catalog.oid FROM redis_sync.tables t "
					"  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.relid "
					" WHERE pg_catalog.pg_has_role(c.relowner, 'USAGE')",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read redis_sync.tables");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		MemoryContext spi = MemoryContextSwitchTo(outer);

		fields = list_concat(fields, claim_fields(relid));
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	for (int i = 0; i < n; i++)
	{
		char	   *want;
		bool		ok = false;
		ListCell   *lc;

		want = psprintf("%c:%s", prefix ? 'p' : 'k', keys[i]);
		foreach(lc, fields)
		{
			const char *f = lfirst(lc);

			/* a key under an owned prefix, or an owned dirty set */
			if (f[0] == 'p' ? starts_with(want + 2, f + 2) : (!prefix && strcmp(f, want) == 0))
				ok = true;
		}
		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for Redis %s \"%s\"", prefix ? "key prefix" : "key", keys[i]),
					 errdetail("Only the keys of synced tables the current user owns can be read.")));
	}
}

/* the table OIDs query returns (its first column), in the caller's memory */
static List *
synced_relids(const char *query)
{
	List	   *rels = NIL;
	MemoryContext outer = CurrentMemoryContext;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	if (SPI_execute(query, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read redis_sync.tables");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		MemoryContext spi = MemoryContextSwitchTo(outer);

		rels = lappend_oid(rels, DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
																SPI_tuptable->tupdesc, 1, &isnull)));
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return rels;
}

static void
claim_table_cb(void *arg)
{
	rs_claim_table(*(Oid *) arg);
}

/* tables a batch claim script call takes (bounds the script's run in Redis) */
#define CLAIM_BATCH 250

/* one table's claims, for claim_batched() */
typedef struct ClaimGroup
{
	Oid			relid;
	List	   *fields;
	bool		plain;			/* no field the per-table path refuses */
} ClaimGroup;

/*
 * The claims of every table the current user may claim (as rs_claim_all's
 * list), from one query, in OID order.
 */
static List *
claim_groups(void)
{
	List	   *groups = NIL;
	ClaimGroup *g = NULL;
	MemoryContext outer = CurrentMemoryContext;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	if (SPI_execute("SELECT t.relid::pg_catalog.oid, t.key_prefix, t.dirty_set FROM redis_sync.tables t "
					"  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.relid "
					" WHERE pg_catalog.pg_has_role(c.relowner, 'USAGE') ORDER BY 1",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read redis_sync.tables");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(tup, td, 1, &isnull));
		char	   *prefix = SPI_getvalue(tup, td, 2);
		char	   *dirty = SPI_getvalue(tup, td, 3);
		MemoryContext spi = MemoryContextSwitchTo(outer);

		if (g == NULL || g->relid != relid)
		{
			g = palloc0(sizeof(ClaimGroup));
			g->relid = relid;
			g->plain = true;
			groups = lappend(groups, g);
		}
		if (prefix == NULL || dirty_set_refused(dirty))
			g->plain = false;
		else
			g->fields = fields_of(g->fields, prefix, dirty);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return groups;
}

/*
 * Claim the tables in batches (claim_many_script): the OIDs of those the
 * batches did not record (a conflict, a field the per-table path refuses,
 * Redis failing) are returned, for rs_claim_table one by one.  *n counts
 * the tables recorded.
 */
static List *
claim_batched(List *groups, int64 *n)
{
	List	   *rest = NIL;
	int			ngroups = list_length(groups);

	for (int first = 0; first < ngroups; first += CLAIM_BATCH)
	{
		int			last = Min(first + CLAIM_BATCH, ngroups);
		List	   *sent = NIL;
		List	   *args = NIL;
		const char **argv;
		int			na = 0;
		RedisPipeline *p;
		RedisFailure failure;
		RedisValue *v;
		ListCell   *lc;
		bool	   *refused;

		for (int i = first; i < last; i++)
		{
			ClaimGroup *g = list_nth(groups, i);
			bool		plain = g->plain && g->fields != NIL;

			foreach(lc, g->fields)
				if (reserved_violation(lfirst(lc)))
				plain = false;
			if (!plain)
			{
				/* the per-table path's error to give */
				rest = lappend_oid(rest, g->relid);
				continue;
			}
			sent = lappend_oid(sent, g->relid);
			args = lappend(args, holder_id(g->relid));
			args = lappend(args, holder_description(g->relid));
			args = lappend(args, psprintf("%d", list_length(g->fields)));
			args = list_concat(args, g->fields);
		}
		if (sent == NIL)
			continue;
		argv = palloc(sizeof(char *) * (list_length(args) + 1));
		argv[na++] = RS_CLAIMS_KEY;
		foreach(lc, args)
			argv[na++] = lfirst(lc);
		p = redis_pipeline_create();
		redis_pipeline_append_script(p, &claim_many_script, 1, na, argv, NULL);
		if (!redis_pipeline_try_exec(p, &failure))
		{
			/* the per-table path warns as it does when Redis fails */
			redis_pipeline_free(p);
			rest = list_concat(rest, sent);
			for (int i = last; i < ngroups; i++)
				rest = lappend_oid(rest, ((ClaimGroup *) list_nth(groups, i))->relid);
			break;
		}
		v = redis_pipeline_reply(p, 0);
		if (v->type == RV_ERROR)
		{
			/*
			 * Redis refused the call (out of memory, say), perhaps after some
			 * of its claims were recorded: the per-table path claims them
			 * again (the same values) and names Redis's reason per table
			 */
			redis_pipeline_free(p);
			rest = list_concat(rest, sent);
			continue;
		}
		if (v->type != RV_ARRAY)
			elog(ERROR, "redis_sync: unexpected reply to a key prefix claim");
		refused = palloc0(sizeof(bool) * list_length(sent));
		for (int i = 0; i < v->nelem; i++)
		{
			int64		pos = v->elems[i].integer;

			if (v->elems[i].type != RV_INTEGER || pos < 1 || pos > list_length(sent))
				elog(ERROR, "redis_sync: unexpected reply to a key prefix claim");
			refused[pos - 1] = true;
		}
		foreach(lc, sent)
		{
			if (refused[foreach_current_index(lc)])
				rest = lappend_oid(rest, lfirst_oid(lc));
			else
			{
				/* as rs_claim_table: reduced to the committed needs at commit */
				remember(lfirst_oid(lc));
				(*n)++;
			}
		}
		redis_pipeline_free(p);
	}
	return rest;
}

int64
rs_claim_all(bool worker)
{
	List	   *rels;
	ListCell   *lc;
	int64		n = 0;
	Oid			nsp = get_namespace_oid("redis_sync", true);

	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("tables", nsp)))
		return 0;				/* the extension is not installed (yet) */
	rs_identity_adopt_claims();

	/*
	 * Most tables in batches; those a batch did not record one by one, with
	 * the local check, stale claims taken over and their errors
	 */
	rels = claim_batched(claim_groups(), &n);
	foreach(lc, rels)
	{
		Oid			relid = lfirst_oid(lc);

		ErrorData  *ed = rs_subxact_try(claim_table_cb, &relid, true);

		if (ed == NULL)
		{
			n++;
			continue;
		}

		/*
		 * Only a conflict (another holder of an overlapping prefix) is what
		 * the hint says; any other failure (Redis out of memory refusing the
		 * claim, say) gives Redis's reason instead.
		 */
		if (worker && ed->sqlerrcode == ERRCODE_DUPLICATE_OBJECT)
			ereport(WARNING,
					(errcode(ed->sqlerrcode),
					 errmsg("redis_sync worker: could not record the key prefix claim of table %u again: %s",
							relid, ed->message),
					 errhint("Another database or server synced an overlapping prefix while Redis had lost the claims; unsync one of them.")));
		else if (worker)
			ereport(WARNING,
					(errcode(ed->sqlerrcode),
					 errmsg("redis_sync worker: could not record the key prefix claim of table %u again: %s",
							relid, ed->message),
					 ed->detail ? errdetail("%s", ed->detail) : 0));
		else
			ereport(WARNING,
					(errcode(ed->sqlerrcode),
					 errmsg("could not claim the key prefix of table %s: %s",
							get_rel_name(relid) ? get_rel_name(relid) : "?", ed->message),
					 ed->detail ? errdetail("%s", ed->detail) : 0));
	}
	return n;
}

PG_FUNCTION_INFO_V1(redis_sync_claim_prefixes);

/* redis_sync.claim_prefixes() RETURNS bigint */
Datum
redis_sync_claim_prefixes(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(rs_claim_all(false));
}

/* ---------------------------------------------------------------------
 * DROP EXTENSION: the database's claims are released when it commits
 * ---------------------------------------------------------------------
 */

static object_access_hook_type prev_object_access = NULL;
static bool release_database_at_commit = false;
static bool drop_callback_registered = false;

/* decided at pre-commit, done once the commit is durable */
static bool release_database_now = false;
static char release_database_name[NAMEDATALEN];

/* the extension the transaction dropped first */
static Oid	dropped_extension = InvalidOid;

/* created again: the claims its configuration needs (field, holder id pairs) */
static MemoryContext release_cxt = NULL;
static List *release_keep = NIL;

/*
 * The extension was dropped and created again in this transaction: the
 * claims its new configuration needs, as (field, holder id) pairs, in
 * release_cxt.  The others (tables the new configuration no longer syncs)
 * are released with the rest after the commit.
 */
static void
collect_kept_claims(void)
{
	List	   *rels;
	ListCell   *lc;

	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	rels = synced_relids("SELECT DISTINCT relid::pg_catalog.oid FROM redis_sync.tables");
	foreach(lc, rels)
	{
		Oid			relid = lfirst_oid(lc);
		List	   *fields = claim_fields(relid);
		char	   *holder = holder_id(relid);
		ListCell   *fc;
		MemoryContext old = MemoryContextSwitchTo(release_cxt);

		foreach(fc, fields)
		{
			release_keep = lappend(release_keep, pstrdup(lfirst(fc)));
			release_keep = lappend(release_keep, pstrdup(holder));
		}
		MemoryContextSwitchTo(old);
	}
	PopActiveSnapshot();
}

static void
reset_release(void)
{
	release_database_at_commit = false;
	release_database_now = false;
	dropped_extension = InvalidOid;
	release_keep = NIL;
	if (release_cxt)
		MemoryContextReset(release_cxt);
}

static void
release_warning(const char *why)
{
	ereport(WARNING,
			(errmsg("could not release the key prefix claims of database \"%s\": %s",
					release_database_name, why),
			 errdetail("Their prefixes stay claimed in Redis (hash %s, holder " UINT64_FORMAT "/%u/...).",
					   RS_CLAIMS_KEY, GetSystemIdentifier(), MyDatabaseId),
			 errhint("Remove them with HDEL %s <field> once Redis is reachable, or create the extension here again.",
					 RS_CLAIMS_KEY)));
}

/*
 * After the commit of a transaction that dropped the extension, and did not
 * create it again: remove every claim of this database.  The extension's
 * tables are gone, so the holder id's database part is all there is to go
 * by; no SQL runs.  Not at pre-commit: the transaction can still fail after
 * the pre-commit callbacks (a serialization failure is detected after them,
 * a later callback can raise an error), and the extension and its syncs
 * would then be left without their claims.  After the commit record no
 * error may escape: a failure is a WARNING, as is Redis being unreachable.
 */
static void
release_database_claims(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	const char *why = NULL;

	PG_TRY();
	{
		RedisPipeline *p;
		RedisFailure failure;
		const char **argv = palloc(sizeof(char *) * (list_length(release_keep) + 3));
		int			na = 0;
		ListCell   *lc;

		argv[na++] = RS_CLAIMS_KEY;
		argv[na++] = psprintf(UINT64_FORMAT "/%u/", GetSystemIdentifier(), MyDatabaseId);
		argv[na++] = "0";
		foreach(lc, release_keep)
			argv[na++] = lfirst(lc);
		p = redis_pipeline_create();
		redis_pipeline_append_script(p, &release_script, 1, na, argv, NULL);
		if (!redis_pipeline_try_exec(p, &failure))
			why = failure.message;
		else if (redis_pipeline_reply(p, 0)->type == RV_ERROR)
			why = pstrdup(redis_pipeline_reply(p, 0)->str);
		redis_pipeline_free(p);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		why = edata->message;
	}
	PG_END_TRY();
	if (why != NULL)
		release_warning(why);
}

static void
drop_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_PRE_COMMIT && release_database_at_commit)
	{
		Oid			now = get_extension_oid("redis_sync", true);

		release_database_at_commit = false;
		if (now == dropped_extension)
			return;				/* the drop was rolled back to a savepoint */
		/* created again: the claims its configuration needs stay */
		release_keep = NIL;
		if (OidIsValid(now))
			collect_kept_claims();
		strlcpy(release_database_name, get_database_name(MyDatabaseId), NAMEDATALEN);
		release_database_now = true;
	}
	else if (event == XACT_EVENT_PRE_PREPARE && release_database_at_commit)
	{
		/*
		 * COMMIT PREPARED runs no callback of this transaction's: nothing
		 * releases the claims then.  Say so now, rather than leave them
		 * behind silently.
		 */
		Oid			now = get_extension_oid("redis_sync", true);

		release_database_at_commit = false;
		if (now == dropped_extension || OidIsValid(now))
			return;
		ereport(WARNING,
				(errmsg("a prepared transaction does not release the key prefix claims of database \"%s\"",
						get_database_name(MyDatabaseId)),
				 errdetail("Once it commits, their prefixes stay claimed in Redis (hash %s, holder " UINT64_FORMAT "/%u/...).",
						   RS_CLAIMS_KEY, GetSystemIdentifier(), MyDatabaseId),
				 errhint("After COMMIT PREPARED, remove them with HDEL %s <field>, or commit the DROP EXTENSION without PREPARE TRANSACTION.",
						 RS_CLAIMS_KEY)));
	}
	else if (event == XACT_EVENT_COMMIT && release_database_now)
	{
		release_database_now = false;
		release_database_claims();
		reset_release();
	}
	else if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
			 event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
			 event == XACT_EVENT_PREPARE)
		reset_release();
}

PG_FUNCTION_INFO_V1(redis_sync_on_drop_start);

/*
 * redis_sync._on_drop_start(), the event trigger at the start of DROP
 * EXTENSION, DROP SCHEMA, DROP OWNED, DROP TABLE and DROP INDEX.  Being called makes
 * sure the library is loaded, so that the object access hook below sees
 * the extension dropped even in a session that never used it (without
 * shared_preload_libraries, the library loads when first used).  DROP
 * TABLE of a synced table's partition, and DROP OWNED of one, has its
 * rows' keys removed, DROP
 * INDEX CONCURRENTLY of a key's index is refused (lifecycle.c).
 */
Datum
redis_sync_on_drop_start(PG_FUNCTION_ARGS)
{
	if (CALLED_AS_EVENT_TRIGGER(fcinfo))
	{
		EventTriggerData *trig = (EventTriggerData *) fcinfo->context;

		if (trig->parsetree != NULL && IsA(trig->parsetree, DropStmt))
			rs_lifecycle_drop_start((DropStmt *) trig->parsetree);
		else if (trig->parsetree != NULL && IsA(trig->parsetree, DropOwnedStmt))
			rs_lifecycle_drop_owned_start((DropOwnedStmt *) trig->parsetree);
	}
	PG_RETURN_NULL();
}

static void
claim_object_access(ObjectAccessType access, Oid classId, Oid objectId, int subId, void *arg)
{
	if (prev_object_access)
		prev_object_access(access, classId, objectId, subId, arg);
	/* the identity table: its base kept in the cluster's floor (identity.c) */
	if (access == OAT_DROP && classId == RelationRelationId && subId == 0)
		rs_identity_drop(objectId);
	if (access != OAT_DROP || classId != ExtensionRelationId || !IsTransactionState() ||
		objectId != get_extension_oid("redis_sync", true))
		return;
	if (!drop_callback_registered)
	{
		RegisterXactCallback(drop_xact_callback, NULL);
		release_cxt = AllocSetContextCreate(TopMemoryContext, "redis_sync claims release",
											ALLOCSET_SMALL_SIZES);
		drop_callback_registered = true;
	}
	if (!release_database_at_commit)
		dropped_extension = objectId;
	release_database_at_commit = true;
}

/* ---------------------------------------------------------------------
 * redis_sync.allowed_key_prefixes: the keyspace non-superusers may take
 * ---------------------------------------------------------------------
 */

char	   *rs_allowed_key_prefixes = NULL;

void
rs_claim_check_allowed(const char *what, const char *value)
{
	char	   *raw;
	List	   *allowed;
	ListCell   *lc;

	if (rs_allowed_key_prefixes == NULL || rs_allowed_key_prefixes[0] == '\0' || superuser())
		return;
	raw = pstrdup(rs_allowed_key_prefixes);
	if (!SplitGUCList(raw, ',', &allowed))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid list syntax in redis_sync.allowed_key_prefixes")));
	foreach(lc, allowed)
	{
		if (starts_with(value, lfirst(lc)))
			return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s \"%s\" is outside the key prefixes this role may use", what, value),
			 errdetail("redis_sync.allowed_key_prefixes is \"%s\".", rs_allowed_key_prefixes),
			 errhint("A superuser decides which Redis keys other roles may take (redis_sync.allowed_key_prefixes).")));
}

void
rs_claim_init(void)
{
	DefineCustomStringVariable("redis_sync.allowed_key_prefixes",
							   "Key prefixes (comma-separated) under which roles other than superusers may sync tables (empty: any).",
							   "Every key_prefix and dirty_set a non-superuser configures must begin with one of them. "
							   "Only superusers may set it (per role: ALTER ROLE ... SET).",
							   &rs_allowed_key_prefixes,
							   "",
							   PGC_SUSET,
							   GUC_LIST_INPUT,
							   NULL, NULL, NULL);
	prev_object_access = object_access_hook;
	object_access_hook = claim_object_access;
}
