/*-------------------------------------------------------------------------
 *
 * wb_api.c
 *		Write-behind SQL API: redis_sync.hincrby(), hset(),
 *		retry_dead_letters() and discard_dead_letters().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_authid_d.h"
#include "common/int.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "as_owner.h"
#include "encode.h"
#include "rowsec.h"
#include "wb_internal.h"

/* ----------------------------------------------------------------
 * Application helpers: hincrby, hset; dead-letter retry
 * ---------------------------------------------------------------- */

PG_FUNCTION_INFO_V1(redis_sync_hincrby);
PG_FUNCTION_INFO_V1(redis_sync_hset);
PG_FUNCTION_INFO_V1(redis_sync_retry_dead_letters);
PG_FUNCTION_INFO_V1(redis_sync_discard_dead_letters);

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
	List	   *l = wb_load_tables(relid);

	if (l == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not synced write-behind", get_rel_name(relid)),
				 errhint("Call redis_sync.write_behind() first.")));
	return linitial(l);
}

/*
 * The value hincrby() will leave in Redis: the counter's current value there
 * plus delta, as text; NULL when Redis does not hold it (or it is not an
 * integer, or the sum overflows: Redis refuses the increment then).  Read
 * just before the increment: a concurrent one may land in between.
 */
static char *
counter_next_value(WbTable *t, Member *m, const char *column, const char *delta)
{
	char	   *key = psprintf("%s%s", t->prefix, m->member);
	const char *argv[3];
	RedisPipeline *p = redis_pipeline_create();
	RedisValue *v;
	char	   *next = NULL;
	int64		cur;
	int64		d;
	int64		sum;

	if (t->format == WB_FORMAT_HASH)
	{
		argv[0] = "HGET";
		argv[1] = key;
		argv[2] = column;
		redis_pipeline_append(p, 3, argv, NULL);
	}
	else
	{
		argv[0] = "GET";
		argv[1] = key;
		redis_pipeline_append(p, 2, argv, NULL);
	}
	redis_pipeline_exec(p);
	redis_check_reply(p, 0, argv[0]);
	v = redis_pipeline_reply(p, 0);
	if (v->type == RV_STRING && v->str != NULL &&
		wb_parse_int64(v->str, &cur) && wb_parse_int64(delta, &d) &&
		!pg_add_s64_overflow(cur, d, &sum))
		next = psprintf(INT64_FORMAT, sum);
	redis_pipeline_free(p);
	return next;
}

/*
 * May the caller make this change?  The drain will write the value into the
 * table as its owner, so the caller needs INSERT and UPDATE (and SELECT on
 * the column for hincrby(), which returns the new value), and row-level
 * security must allow it.  Returns the column's index; fills m's key values.
 */
static int
touch_check(Oid relid, WbTable *t, Member *m, const char *column, const char *op,
			const char *value)
{
	int			col = -1;

	if (t->format == WB_FORMAT_JSON)
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
	/* the drain ignores such fields: the value would stay in Redis alone */
	if (!t->writable[col])
		ereport(ERROR,
				(errcode(ERRCODE_GENERATED_ALWAYS),
				 errmsg("column \"%s\" of table %s is a generated or GENERATED ALWAYS identity column", column, t->qname),
				 errdetail("The write-behind drain never writes such a column: the value would stay in Redis and never reach the table.")));
	if (!wb_split_member(t, m))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key \"%s\" is not %d escaped key values separated by ':'", m->member, t->nkeys),
				 errhint("Escape '\\' and ':' inside a key value with a backslash.")));
	/* hincrby() returns the column's new value: reading it needs SELECT on it */
	if (strcmp(op, "incr") == 0 &&
		pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK &&
		pg_attribute_aclcheck(relid, get_attnum(relid, column), GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for column \"%s\" of table %s", column, t->qname),
				 errdetail("redis_sync.hincrby() returns the new value, so it needs SELECT on the column.")));

	/*
	 * row-level security: only a change the caller could make itself
	 * (rowsec.c).  hincrby()'s new value is the one Redis will hold: its
	 * current value plus the delta, tried as an UPDATE to that value (or,
	 * when Redis lacks the key, which is then seeded from the row, the row's
	 * value plus the delta).  Probing with the counter unchanged let a WITH
	 * CHECK on it go untried (tests/t/331).
	 */
	if (strcmp(op, "incr") == 0 && rs_rls_applies(relid))
	{
		char	   *next = counter_next_value(t, m, column, value);

		if (next != NULL)
		{
			op = "set";
			value = next;
		}
	}
	rs_rls_check_write(relid, t->nkeys, t->keys, m->keyvals, column, op, value);
	return col;
}

/*
 * The row of m's key, its columns as text (NULL: no such row), to seed a
 * key Redis does not have; read as the owner: hset()/hincrby() need no
 * SELECT.
 */
static char **
touch_seed_row(WbTable *t, Member *m)
{
	StringInfoData sql;
	Oid		   *types = palloc(sizeof(Oid) * t->nkeys);
	Datum	   *args = palloc(sizeof(Datum) * t->nkeys);
	char	  **seed = NULL;
	RsAsOwner	saved;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	for (int c = 0; c < t->ncols; c++)
		appendStringInfo(&sql, "%s::text, ", quote_identifier(t->cols[c]));
	/* last column: is the row's key spelled exactly as the given key values? */
	appendStringInfoString(&sql, "ROW(");
	for (int k = 0; k < t->nkeys; k++)
		appendStringInfo(&sql, "%s%s", k ? ", " : "", quote_identifier(t->keys[k]));
	appendStringInfoString(&sql, ")::pg_catalog.text OPERATOR(pg_catalog.=) ROW(");
	for (int k = 0; k < t->nkeys; k++)
		appendStringInfo(&sql, "%s$%d::pg_catalog.text", k ? ", " : "", k + 1);
	appendStringInfoString(&sql, ")::pg_catalog.text COLLATE \"C\"");
	appendStringInfo(&sql, " FROM %s WHERE (", t->qname);
	for (int k = 0; k < t->nkeys; k++)
		appendStringInfo(&sql, "%s%s", k ? ", " : "", quote_identifier(t->keys[k]));
	appendStringInfoString(&sql, ") = (");
	for (int k = 0; k < t->nkeys; k++)
	{
		appendStringInfo(&sql, "%s$%d::pg_catalog.text::%s", k ? ", " : "", k + 1, t->keybase[k]);
		types[k] = TEXTOID;
		args[k] = CStringGetTextDatum(m->keyvals[k]);
	}
	appendStringInfoChar(&sql, ')');
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	rs_as_owner_enter(&saved, t->owner);
	if (SPI_execute_with_args(sql.data, t->nkeys, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read the row to seed");
	rs_as_owner_leave(&saved);
	if (SPI_processed == 1)
	{
		MemoryContext spi;
		bool		isnull;

		/*
		 * an equal key spelled otherwise (numeric 1.00 for the row 1.0, a
		 * case-insensitive 'abc' for 'ABC') is another key: its drain would
		 * be a dead letter (check_member_rows), so refuse it now
		 */
		if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, t->ncols + 1, &isnull)) || isnull)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("key \"%s\" names a row of table %s whose key is spelled otherwise", m->member, t->qname),
					 errdetail("A row's key is the canonical text of its key values, as the row holds them."),
					 errhint("Use the key the row has (its key columns' text, escaped).")));
		spi = MemoryContextSwitchTo(TopTransactionContext);
		seed = palloc0(sizeof(char *) * t->ncols);
		for (int c = 0; c < t->ncols; c++)
		{
			char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, c + 1);

			seed[c] = v ? pstrdup(v) : NULL;
		}
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return seed;
}

/* run the touch script (argv: key, dirty set, its arguments); returns its reply */
static int64
touch_push(const char **argv, int na, const char *member, const char *op)
{
	RedisPipeline *p = redis_pipeline_create();
	RedisFailure failure = {0};
	int64		result;

	if (redis_cluster_mode())
	{
		/*
		 * The dirty set is in another slot: change the key, then (next round
		 * trip, so a drain never claims the member before the change) mark
		 * it.
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
		if (!redis_pipeline_try_exec(p, &failure) ||
			redis_pipeline_reply(p, 0)->type == RV_ERROR)
		{
			/*
			 * The change is in Redis already and cannot be taken back (other
			 * sessions may have changed the key since): say so, and how to
			 * mark it, rather than let a retry apply it twice.
			 */
			RedisValue *v = failure.message ? NULL : redis_pipeline_reply(p, 0);

			ereport(ERROR,
					(errcode(failure.message ? failure.sqlstate : ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("%s was applied to Redis key \"%s\", but the key could not be marked dirty",
							strcmp(op, "incr") == 0 ? "hincrby()" : "hset()", argv[1]),
					 errdetail("SADD %s %s failed: %s", sargv[1], member,
							   failure.message ? failure.message : v->str),
					 errhint("The change reaches the table only once the member is in the dirty set: run SADD %s %s (do not repeat the change).",
							 sargv[1], member)));
		}
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

/* change one field and mark the key dirty; seed it from the table when Redis lacks it */
static int64
touch(Oid relid, const char *member, const char *column, const char *op, const char *value)
{
	WbTable    *t;
	Member		m;
	const char **argv;
	int			na = 0;
	int			npos;
	int			nf = 0;
	char	  **seed;

	/*
	 * the drain will write this value into the table: the caller must be
	 * allowed to
	 */
	if (pg_class_aclcheck(relid, GetUserId(), ACL_UPDATE) != ACLCHECK_OK ||
		pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", get_rel_name(relid)),
				 errdetail("redis_sync.hincrby() and hset() need INSERT and UPDATE on the table.")));
	t = wb_table_or_error(relid);
	memset(&m, 0, sizeof(m));
	m.member = (char *) member;
	(void) touch_check(relid, t, &m, column, op, value);
	seed = touch_seed_row(t, &m);

	argv = palloc(sizeof(char *) * (9 + 2 * t->ncols));
	argv[na++] = psprintf("%s%s", t->prefix, member);
	argv[na++] = t->dirty;
	argv[na++] = t->format == WB_FORMAT_HASH ? WB_ARG_HASH : WB_ARG_STRING;
	argv[na++] = column;
	argv[na++] = op;
	argv[na++] = value ? value : "";
	argv[na++] = member;
	argv[na++] = t->ncounters > 0 ? rs_companion_key(argv[0], strlen(argv[0]), SEED_SUFFIX) : "";
	npos = na++;
	for (int c = 0; seed != NULL && c < t->ncols; c++)
	{
		if (seed[c] == NULL)
			continue;
		argv[na++] = t->cols[c];
		argv[na++] = seed[c];
		nf++;
	}
	argv[npos] = psprintf("%d", nf);
	return touch_push(argv, na, member, op);
}

/* redis_sync.hincrby(tbl, key, column, delta) RETURNS bigint */
Datum
redis_sync_hincrby(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *member = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *column = text_to_cstring(PG_GETARG_TEXT_PP(2));
	int64		delta = PG_GETARG_INT64(3);
	int			nest = rs_canonical_gucs_push();	/* the member's key values
													 * are canonical text */
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
	nest = rs_canonical_gucs_push();	/* the member's key values are
										 * canonical text */
	if (PG_ARGISNULL(3))
		touch(relid, member, column, "del", NULL);
	else
		touch(relid, member, column, "set", text_to_cstring(PG_GETARG_TEXT_PP(3)));
	rs_canonical_gucs_pop(nest);
	PG_RETURN_VOID();
}

/* dead letters put back in the dirty set per SADD (one round trip each) */
#define RETRY_BATCH 1000

/*
 * redis_sync.retry_dead_letters(tbl DEFAULT NULL) RETURNS bigint
 *
 * The members go back RETRY_BATCH at a time: one SADD of every member of a
 * table held them all in the backend and blocked Redis as long as their
 * number (500,000: 64 MB, and an SADD of 0.9 s, past the client's timeout).
 */
Datum
redis_sync_retry_dead_letters(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_ARGISNULL(0) ? InvalidOid : PG_GETARG_OID(0);
	List	   *tables;
	ListCell   *lc;
	int64		total = 0;

	if (OidIsValid(relid))
		rs_require_owner(relid);	/* without a table: the dead letters the
									 * caller can see */
	tables = wb_load_tables(relid);

	foreach(lc, tables)
	{
		WbTable    *t = lfirst(lc);
		Oid			types[1] = {OIDOID};
		Datum		args[1];
		const char *argv[RETRY_BATCH + 2];
		Portal		portal;
		MemoryContext batch_cxt;

		args[0] = ObjectIdGetDatum(t->relid);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "redis_sync: SPI_connect failed");
		portal = SPI_cursor_open_with_args(NULL,
										   "SELECT member FROM redis_sync.dead_letters "
										   " WHERE relid::pg_catalog.oid OPERATOR(pg_catalog.=) $1",
										   1, types, args, NULL, true, 0);
		batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "redis_sync retry dead letters",
										  ALLOCSET_DEFAULT_SIZES);
		argv[0] = "SADD";
		argv[1] = t->dirty;
		for (;;)
		{
			uint64		n;
			RedisPipeline *p;
			MemoryContext old;

			SPI_cursor_fetch(portal, true, RETRY_BATCH);
			n = SPI_processed;
			if (n == 0)
				break;
			old = MemoryContextSwitchTo(batch_cxt);
			for (uint64 i = 0; i < n; i++)
				argv[i + 2] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
			p = redis_pipeline_create();
			redis_pipeline_append(p, (int) n + 2, argv, NULL);
			redis_pipeline_exec(p);
			redis_check_reply(p, 0, "SADD");
			redis_pipeline_free(p);
			MemoryContextSwitchTo(old);
			MemoryContextReset(batch_cxt);
			SPI_freetuptable(SPI_tuptable);
			total += n;
			CHECK_FOR_INTERRUPTS();
		}
		SPI_cursor_close(portal);
		SPI_finish();
	}
	rs_worker_wake();
	PG_RETURN_INT64(total);
}

/*
 * redis_sync.discard_dead_letters(tbl DEFAULT NULL, member DEFAULT NULL)
 * RETURNS bigint: forget the dead letters of tbl (of every table the caller
 * owns, or is a member of the owner of, when NULL; every table for
 * superusers), or only member's.
 *
 * Deleted as the bootstrap superuser, with the owner check made here: PUBLIC
 * has only SELECT on redis_sync.dead_letters (row-level security shows each
 * role its own).  DELETE, which this function needed before, also let any
 * role LOCK the table in ACCESS EXCLUSIVE mode, and every drain batch of
 * every table reads it: one open transaction held all the database's
 * write-behind drains (tests/t/299).
 */
Datum
redis_sync_discard_dead_letters(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_ARGISNULL(0) ? InvalidOid : PG_GETARG_OID(0);
	Oid			caller = GetUserId();
	Oid			types[4] = {OIDOID, TEXTOID, BOOLOID, OIDOID};
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	int64		n;

	/* a superuser may name a dropped table's OID (its orphaned letters) */
	if (OidIsValid(relid) && !superuser())
		rs_require_owner(relid);
	args[0] = ObjectIdGetDatum(relid);
	if (PG_ARGISNULL(1))
		nulls[1] = 'n';
	else
		args[1] = PG_GETARG_DATUM(1);
	args[2] = BoolGetDatum(superuser());
	args[3] = ObjectIdGetDatum(caller);

	n = rs_exec_as_superuser("DELETE FROM redis_sync.dead_letters l"
							 "  WHERE ($1 OPERATOR(pg_catalog.=) 0::pg_catalog.oid"
							 "         OR l.relid::pg_catalog.oid OPERATOR(pg_catalog.=) $1)"
							 "    AND ($2 IS NULL OR l.member OPERATOR(pg_catalog.=) $2)"
							 "    AND ($3 OR pg_catalog.pg_has_role($4,"
							 "          (SELECT c.relowner FROM pg_catalog.pg_class c"
							 "            WHERE c.oid OPERATOR(pg_catalog.=) l.relid::pg_catalog.oid), 'USAGE'))",
							 4, types, args, nulls, SPI_OK_DELETE,
							 "delete from redis_sync.dead_letters");
	PG_RETURN_INT64(n);
}
