/*-------------------------------------------------------------------------
 *
 * rowsec.c
 *		Row-level security for the write-behind helpers hset()/hincrby().
 *
 * The drain applies write-behind values as the table owner, so a change a
 * caller makes through hset()/hincrby() must be one the caller could have
 * made itself.  When row-level security applies to the caller, the change
 * is tried as the caller, in a subtransaction that is always rolled back:
 *	- UPDATE of the row (the new value for hset(); for hincrby() the value
 *	  Redis will hold, or the row's value plus the delta): the UPDATE and
 *	  SELECT policies' USING clauses and the UPDATE WITH CHECK apply;
 *	- when that updates nothing and the row exists (read as the owner), a
 *	  policy hides it from the caller: refused;
 *	- when the row does not exist: refused.  The drain would insert it as
 *	  the owner, with column defaults evaluated as the owner, which is not
 *	  a row the caller could insert; the caller INSERTs it first.
 * The probe's triggers run as the caller and its effects (captured
 * changes included) are rolled back with the subtransaction.  A probe
 * that fails for any reason refuses the change: its policies were not
 * checked.
 *
 * It also checks what the drain takes from Redis before it reaches a table
 * (rs_wb_input_problem): Redis strings are bytes, a text column is not.
 * A value that is not valid in the database encoding, or holds a NUL byte
 * (which the text input functions would silently cut), is refused, except
 * the value that is exactly one NUL byte, the NULL marker of drain.c; the
 * drain dead-letters it with a printable copy and applies the rest.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "as_owner.h"
#include "rowsec.h"
#include "subxact.h"

static char *
qualified_type(Oid relid, const char *column)
{
	AttrNumber	att = get_attnum(relid, column);

	if (att <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of table %s does not exist", column, get_rel_name(relid))));
	return format_type_be_qualified(get_atttype(relid, att));
}

typedef struct ProbeArgs
{
	const char *sql;
	int			nargs;
	Oid		   *types;
	Datum	   *args;
	uint64		n;
} ProbeArgs;

static void
probe_cb(void *arg)
{
	ProbeArgs  *pa = arg;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	if (SPI_execute_with_args(pa->sql, pa->nargs, pa->types, pa->args, NULL, false, 0) < 0)
		elog(ERROR, "redis_sync: row-level security probe failed");
	pa->n = SPI_processed;
	SPI_finish();
}

/* run sql in a subtransaction that is rolled back; rows processed, or the error */
static uint64
probe(const char *sql, int nargs, Oid *types, Datum *args, ErrorData **error)
{
	ProbeArgs	pa = {sql, nargs, types, args, 0};

	*error = rs_subxact_try(probe_cb, &pa, false);
	return *error ? 0 : pa.n;
}

/*
 * The caller's UPDATE probe failed: the change is refused.  For a reason
 * other than privileges too: the policies were not checked, and taking it
 * as one the drain would dead-letter let a caller make the probe fail at
 * will (lock_timeout while another session of its own holds a SHARE lock on
 * the table, a cancel) and have the drain apply, as the owner, a change its
 * policies forbid (tests/t/328).
 */
static void
refuse(const char *qname, ErrorData *error)
{
	if (error->sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s", error->message),
				 errdetail("Row-level security applies to table %s, so the change was tried as the current user, "
						   "as UPDATE ... WHERE on the key (which needs SELECT on the key columns).", qname)));
	ereport(ERROR,
			(errcode(error->sqlerrcode),
			 errmsg("%s", error->message),
			 errdetail("Row-level security applies to table %s, so the change was tried as the current user, "
					   "as UPDATE ... WHERE on the key, and it failed: the change was not made.", qname),
			 errhint("Try again once the UPDATE can run.")));
}

/* whether the row WHERE where (its key values args) exists, read as the table owner */
static bool
row_exists_as_owner(Oid relid, const char *qname, const char *where, int nkeys, Oid *types, Datum *args)
{
	RsAsOwner	ao;
	StringInfoData sql;
	volatile bool exists = false;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT 1 FROM %s WHERE %s", qname, where);
	rs_as_owner_enter(&ao, rs_rel_owner(relid));
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "redis_sync: SPI_connect failed");
		if (SPI_execute_with_args(sql.data, nkeys, types, args, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "redis_sync: could not read table %s", qname);
		exists = SPI_processed > 0;
		SPI_finish();
	}
	PG_FINALLY();
	{
		rs_as_owner_leave(&ao);
	}
	PG_END_TRY();
	return exists;
}

void
rs_rls_check_write(Oid relid, int nkeys, char **keys, char **keyvals,
				   const char *column, const char *op, const char *value)
{
	char	   *qname;
	StringInfoData where;
	StringInfoData sql;
	Oid		   *types;
	Datum	   *args;
	char	   *coltype;
	ErrorData  *error;
	uint64		n;

	if (!rs_rls_applies(relid))
		return;
	qname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									   get_rel_name(relid));
	coltype = qualified_type(relid, column);
	types = palloc(sizeof(Oid) * (nkeys + 1));
	args = palloc(sizeof(Datum) * (nkeys + 1));
	initStringInfo(&where);
	appendStringInfoString(&where, "ROW(");
	for (int k = 0; k < nkeys; k++)
		appendStringInfo(&where, "%s%s", k ? ", " : "", quote_identifier(keys[k]));
	appendStringInfoString(&where, ") OPERATOR(pg_catalog.=) ROW(");
	for (int k = 0; k < nkeys; k++)
	{
		appendStringInfo(&where, "%s$%d::pg_catalog.text::%s", k ? ", " : "", k + 1,
						 qualified_type(relid, keys[k]));
		types[k] = TEXTOID;
		args[k] = CStringGetTextDatum(keyvals[k]);
	}
	appendStringInfoChar(&where, ')');
	types[nkeys] = TEXTOID;
	args[nkeys] = CStringGetTextDatum(value ? value : "");

	/* 1. UPDATE as the caller */
	initStringInfo(&sql);
	appendStringInfo(&sql, "UPDATE %s SET %s = ", qname, quote_identifier(column));
	if (strcmp(op, "set") == 0)
		appendStringInfo(&sql, "$%d::pg_catalog.text::%s", nkeys + 1, coltype);
	else if (strcmp(op, "del") == 0)
		appendStringInfoString(&sql, "NULL");
	else
		appendStringInfo(&sql, "%s OPERATOR(pg_catalog.+) $%d::pg_catalog.text::%s",
						 quote_identifier(column), nkeys + 1, coltype);
	appendStringInfo(&sql, " WHERE %s", where.data);
	n = probe(sql.data, nkeys + 1, types, args, &error);
	if (error)
		refuse(qname, error);
	if (n > 0)
		return;

	/* 2. nothing updated: hidden from the caller, or missing? */
	if (row_exists_as_owner(relid, qname, where.data, nkeys, types, args))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("row-level security of table %s does not let the current user update this row", qname),
				 errdetail("The row exists, but the policies hide it from the current user or forbid updating it.")));

	/*
	 * 3. a new row.  The drain inserts it as the table owner, so column
	 * defaults (owner = current_user, say) would be evaluated as the owner,
	 * not as the caller its policies judge: a row the caller could not insert
	 * itself.  Under row-level security new rows come from INSERT.
	 */
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("row-level security of table %s: redis_sync.hset() and hincrby() do not create rows for the current user", qname),
			 errdetail("The write-behind drain inserts missing rows as the table owner, with column defaults evaluated as the owner."),
			 errhint("INSERT the row first; then hset() and hincrby() may change it.")));
}

/* NULL when s is valid text; else what is wrong with it */
static const char *
text_problem(const char *s, size_t len)
{
	size_t		i;

	/*
	 * The usual value first: ASCII without a NUL byte, valid in every server
	 * encoding (all are ASCII-safe), checked here in one pass (three strings
	 * per drained member: the member, a field, its value)
	 */
	for (i = 0; i < len; i++)
		if (s[i] == '\0' || IS_HIGHBIT_SET(s[i]))
			break;
	if (i == len)
		return NULL;
	if (memchr(s, '\0', len) != NULL)
		return "contains a NUL byte";
	if (!pg_verify_mbstr(GetDatabaseEncoding(), s, (int) len, true))
		return psprintf("is not valid in the database encoding %s", GetDatabaseEncodingName());
	return NULL;
}

/* a printable copy: valid characters as they are, other bytes as \xNN */
static char *
printable(const char *s, size_t len)
{
	StringInfoData buf;
	size_t		i = 0;

	initStringInfo(&buf);
	while (i < len)
	{
		int			l = pg_encoding_mblen(GetDatabaseEncoding(), s + i);

		if (s[i] != '\0' && i + l <= len &&
			pg_verify_mbstr(GetDatabaseEncoding(), s + i, l, true))
		{
			appendBinaryStringInfo(&buf, s + i, l);
			i += l;
		}
		else
		{
			appendStringInfo(&buf, "\\x%02x", (unsigned char) s[i]);
			i++;
		}
	}
	return buf.data;
}

static RedisValue *
clean_copy(RedisValue *v)
{
	RedisValue *c = palloc(sizeof(RedisValue));

	*c = *v;
	if (v->type == RV_STRING || v->type == RV_STATUS || v->type == RV_ERROR)
	{
		c->str = printable(v->str, v->len);
		c->len = strlen(c->str);
	}
	else if (v->type == RV_ARRAY)
	{
		c->elems = palloc(sizeof(RedisValue) * Max(v->nelem, 1));
		for (int i = 0; i < v->nelem; i++)
			c->elems[i] = *clean_copy(&v->elems[i]);
	}
	return c;
}

/* the one-NUL-byte value is the documented NULL marker (drain.c), not a NUL inside text */
static bool
is_null_marker(const RedisValue *v)
{
	return v->len == 1 && v->str[0] == '\0';
}

char *
rs_wb_input_problem(RedisValue *member, RedisValue *value,
					char **clean_member, RedisValue **clean_value)
{
	char	   *problem = NULL;
	const char *p;

	if (member->type == RV_STRING && (p = text_problem(member->str, member->len)) != NULL)
		problem = psprintf("the dirty set member %s", p);
	else if (value->type == RV_STRING && !is_null_marker(value) &&
			 (p = text_problem(value->str, value->len)) != NULL)
		problem = psprintf("the value %s", p);
	else if (value->type == RV_ARRAY)
	{
		for (int i = 0; i < value->nelem && problem == NULL; i++)
		{
			RedisValue *e = &value->elems[i];

			if (e->type == RV_STRING && !(i % 2 == 1 && is_null_marker(e)) &&
				(p = text_problem(e->str, e->len)) != NULL)
				problem = i % 2 == 0 ? psprintf("a field name %s", p) :
					psprintf("the value of field \"%s\" %s",
							 printable(value->elems[i - 1].str, value->elems[i - 1].len), p);
		}
	}
	if (problem)
	{
		*clean_member = printable(member->str, member->len);
		*clean_value = clean_copy(value);
	}
	return problem;
}
