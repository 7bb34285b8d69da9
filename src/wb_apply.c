/*-------------------------------------------------------------------------
 *
 * wb_apply.c
 *		Write-behind: writing a batch of decoded members into their table in
 *		set-based statements (UPDATE of the rows that exist, INSERT of the
 *		others) whose plans are kept across batches, row by row in
 *		subtransactions when the batch fails, and the dead letters of the
 *		members that cannot be written.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tupmacs.h"
#include "executor/spi.h"
#include "nodes/params.h"
#include "nodes/plannodes.h"
#include "pgstat.h"
#include "tcop/dest.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "subxact.h"
#include "wb_internal.h"

/*
 * SPI_execute_with_args with enable_seqscan off while the statement runs
 * (restored after it, or by the abort of the (sub)transaction).  A batch
 * names 1,000 rows of a table that may hold millions; with the members'
 * keys as a parameter the planner prices 1,000 index probes as random
 * reads and prefers to scan (and hash) the whole table for every batch:
 * issue 18's profile had 80% of the drain there.  Statements the table's
 * triggers run during the write are planned under the same setting.
 */
int
wb_execute_by_index(const char *sql, int nargs, Oid *types, Datum *args, bool read_only)
{
	int			level = NewGUCNestLevel();
	int			ret;

	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	ret = SPI_execute_with_args(sql, nargs, types, args, NULL, read_only, 0);
	AtEOXact_GUC(true, level);
	return ret;
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
/*
 * u: the members, one row each, numbered, in key order (then ", " or " ");
 * by_ord: the caller passes them sorted by key already (their numbers are
 * then in key order, and a function scan is in the order of its ordinality:
 * no sort)
 */
static void
sql_members(StringInfo sql, WbTable *t, const bool *present, const char *then, bool by_ord)
{
	int			argno = 1;

	appendStringInfoString(sql, "WITH u AS (SELECT x.*");
	if (t->format == WB_FORMAT_JSON)
		appendStringInfo(sql, ", pg_catalog.json_populate_record(NULL::%s, x.j) AS r", t->qname);
	appendStringInfoString(sql, " FROM ROWS FROM (");
	for (int i = 0; i < t->nkeys; i++)
		appendStringInfo(sql, "%spg_catalog.unnest($%d::%s[])", i ? ", " : "", argno++,
						 OidIsValid(t->keybin[i]) ? t->keybase[i] : "pg_catalog.text");
	if (t->format == WB_FORMAT_JSON)
		appendStringInfo(sql, ", pg_catalog.unnest($%d::pg_catalog.json[])", argno++);
	else
		for (int c = 0; c < t->ncols; c++)
			if (present[c])
				appendStringInfo(sql, ", pg_catalog.unnest($%d::%s[])", argno++,
								 OidIsValid(t->colbin[c]) ? t->colbase[c] : "pg_catalog.text");
	appendStringInfoString(sql, ") WITH ORDINALITY AS x(");
	for (int i = 0; i < t->nkeys; i++)
		appendStringInfo(sql, "%sk%d", i ? ", " : "", i);
	if (t->format == WB_FORMAT_JSON)
		appendStringInfoString(sql, ", j");
	else
		for (int c = 0; c < t->ncols; c++)
			if (present[c])
				appendStringInfo(sql, ", c%d", c);
	/* members arrive in hash order (SSCAN): rows are locked in key order */
	appendStringInfoString(sql, ", ord) ORDER BY ");
	if (by_ord)
		appendStringInfoString(sql, "x.ord");
	for (int i = 0; !by_ord && i < t->nkeys; i++)
		appendStringInfo(sql, "%sx.k%d::%s", i ? ", " : "", i, t->keybase[i]);
	appendStringInfo(sql, ")%s", then);
}

/* increments: the row's columns as text (v<c>) and its counters (n<c>) */
static void
sql_returned_values(StringInfo sql, WbTable *t)
{
	for (int c = 0; c < t->ncols; c++)
		appendStringInfo(sql, ", t.%s::pg_catalog.text AS v%d", quote_identifier(t->cols[c]), c);
	for (int c = 0; c < t->ncols; c++)
		if (t->counter[c])
			appendStringInfo(sql, ", t.%s::pg_catalog.int8 AS n%d", quote_identifier(t->cols[c]), c);
}

/* upd: the rows that exist, in the present columns only (or just locked) */
static void
sql_update(StringInfo sql, WbTable *t, const bool *present, int npresent, bool increment,
		   const char *match, bool standalone)
{
	if (npresent > 0)
	{
		bool		first = true;

		appendStringInfo(sql, "%sUPDATE %s AS t SET ", standalone ? "" : "upd AS (", t->qname);
		for (int c = 0; c < t->ncols; c++)
		{
			const char *q = quote_identifier(t->cols[c]);
			char	   *expr;

			if (!present[c])
				continue;
			expr = t->format == WB_FORMAT_JSON ? psprintf("(u.r).%s", q) : psprintf("u.c%d::%s", c, t->colbase[c]);
			if (increment && t->counter[c])
				appendStringInfo(sql, "%s%s = COALESCE(t.%s, 0) + %s", first ? "" : ", ", q, q, expr);
			else
				appendStringInfo(sql, "%s%s = %s", first ? "" : ", ", q, expr);
			first = false;
		}
		appendStringInfo(sql, " FROM u WHERE %s RETURNING u.ord", match);
		if (increment)
			sql_returned_values(sql, t);
		if (standalone)
			return;
	}
	else
	{
		/* nothing to write: lock the rows (their values still come back) */
		appendStringInfoString(sql, "upd AS (SELECT u.ord");
		if (increment)
			sql_returned_values(sql, t);
		appendStringInfo(sql, " FROM %s AS t, u WHERE %s FOR UPDATE OF t", t->qname, match);
	}
	appendStringInfoString(sql, "), ");
}

/* ins: the others, in key order; ON CONFLICT for a row inserted meanwhile */
static void
sql_insert(StringInfo sql, WbTable *t, const bool *present, int npresent, bool increment,
		   bool standalone)
{
	appendStringInfo(sql, "%sINSERT INTO %s AS t (", standalone ? "" : "ins AS (", t->qname);
	for (int i = 0; i < t->nkeys; i++)
		appendStringInfo(sql, "%s%s", i ? ", " : "", quote_identifier(t->keys[i]));
	for (int c = 0; c < t->ncols; c++)
		if (present[c])
			appendStringInfo(sql, ", %s", quote_identifier(t->cols[c]));

	/*
	 * the member names the row's key: a key that is a GENERATED ALWAYS
	 * identity column takes it, as one GENERATED BY DEFAULT does (without
	 * this every new row of such a table was a dead letter, "cannot insert a
	 * non-DEFAULT value"); no other column written is an identity column
	 * (wb_config.c leaves them out), and the clause does nothing on a table
	 * without one
	 */
	appendStringInfoString(sql, ") OVERRIDING SYSTEM VALUE SELECT ");
	for (int i = 0; i < t->nkeys; i++)
		appendStringInfo(sql, "%su.k%d::%s", i ? ", " : "", i, t->keybase[i]);
	for (int c = 0; c < t->ncols; c++)
		if (present[c])
		{
			if (t->format == WB_FORMAT_JSON)
				appendStringInfo(sql, ", (u.r).%s", quote_identifier(t->cols[c]));
			else
				appendStringInfo(sql, ", u.c%d::%s", c, t->colbase[c]);
		}
	/* members arrive in hash order (SSCAN): insert them in key order */
	appendStringInfo(sql, " FROM u%s ORDER BY 1",
					 standalone ? "" : " WHERE NOT EXISTS (SELECT 1 FROM upd WHERE upd.ord = u.ord)");
	for (int i = 1; i < t->nkeys; i++)
		appendStringInfo(sql, ", %d", i + 1);
	appendStringInfoString(sql, " ON CONFLICT (");
	for (int i = 0; i < t->nkeys; i++)
		appendStringInfo(sql, "%s%s", i ? ", " : "", quote_identifier(t->keys[i]));
	if (npresent == 0)
		appendStringInfoString(sql, ") DO NOTHING");
	else
	{
		bool		first = true;

		appendStringInfoString(sql, ") DO UPDATE SET ");
		for (int c = 0; c < t->ncols; c++)
		{
			const char *q = quote_identifier(t->cols[c]);

			if (!present[c])
				continue;
			if (increment && t->counter[c])
				appendStringInfo(sql, "%s%s = COALESCE(t.%s, 0) + EXCLUDED.%s", first ? "" : ", ", q, q, q);
			else
				appendStringInfo(sql, "%s%s = EXCLUDED.%s", first ? "" : ", ", q, q);
			first = false;
		}

		/*
		 * a row inserted meanwhile whose key equals the member's but is
		 * spelled otherwise (see check_member_rows) is another key's row
		 */
		appendStringInfoString(sql, " WHERE ROW(");
		for (int i = 0; i < t->nkeys; i++)
			appendStringInfo(sql, "%st.%s", i ? ", " : "", quote_identifier(t->keys[i]));
		appendStringInfoString(sql, ")::pg_catalog.text OPERATOR(pg_catalog.=) ROW(");
		for (int i = 0; i < t->nkeys; i++)
			appendStringInfo(sql, "%sEXCLUDED.%s", i ? ", " : "", quote_identifier(t->keys[i]));
		appendStringInfoString(sql, ")::pg_catalog.text COLLATE \"C\"");
	}
	if (standalone)
		return;
	appendStringInfoString(sql, " RETURNING ");
	for (int i = 0; i < t->nkeys; i++)
		appendStringInfo(sql, "%st.%s AS rk%d", i ? ", " : "", quote_identifier(t->keys[i]), i);
	if (increment)
		sql_returned_values(sql, t);
	appendStringInfoString(sql, ") ");
}

/* the rows after the write, by member number (increments only) */
static void
sql_result(StringInfo sql, WbTable *t, bool increment)
{
	StringInfoData cols;

	if (!increment)
	{
		appendStringInfoString(sql, "SELECT NULL::pg_catalog.int8 WHERE false");
		return;
	}
	initStringInfo(&cols);
	for (int c = 0; c < t->ncols; c++)
		appendStringInfo(&cols, ", v%d", c);
	for (int c = 0; c < t->ncols; c++)
		if (t->counter[c])
			appendStringInfo(&cols, ", n%d", c);
	appendStringInfo(sql, "SELECT ord%s FROM upd UNION ALL SELECT u.ord%s FROM ins JOIN u ON ",
					 cols.data, cols.data);
	for (int i = 0; i < t->nkeys; i++)
		appendStringInfo(sql, "%sins.rk%d = u.k%d::%s", i ? " AND " : "", i, i, t->keybase[i]);
}

/*
 * The statements of one shape.  Absolute values with fields to write (the
 * usual case) take two statements: the UPDATE of the rows that exist, and,
 * only when it did not find them all, the INSERT of the members it did not
 * update (their numbers come back from the UPDATE); the same rows as the
 * one statement below (a CTE UPDATE and an INSERT of what it did not
 * return) without the cost of joining the two when every row exists: about
 * a sixth of the statement's time in a 5,000-row batch (issue 18).
 * Increments (whose rows come back from both parts) and lock-only shapes
 * keep the one statement.
 */
typedef struct ApplySql
{
	char	   *full;			/* one statement: UPDATE + INSERT in CTEs */
	char	   *update;			/* or: UPDATE ... RETURNING u.ord */
	char	   *update_sorted;	/* the same, members passed in key order */
	char	   *insert;			/* then: INSERT of the members not updated */
	char	   *update_kept;	/* update, update_sorted without "= ANY" (a */
	char	   *update_sorted_kept; /* kept generic plan, see kept_plan) */
	char	   *update_keyed;	/* or, one integer key: see sql_update_keyed */
} ApplySql;

/*
 * A table with one integer key whose members come sorted by key (key_int):
 * the UPDATE of the rows that exist without joining the members at all.
 * The rows are found by "key = ANY (keys)", an index scan in key order, and
 * each row's values are picked from the parameter arrays at the position
 * of its key among the sorted keys (width_bucket, a binary search); each
 * row's key comes back, and names its member (update_keyed_allowed says
 * when it is the member's key).  The join of update_sorted costs, per row,
 * a function scan of the members through a tuple store, a rescan of the
 * index scan, and the copy of the member's row for a concurrent update's
 * recheck: about 3,500 of the worker's instructions per drained row
 * (callgrind, 5,000-row batches).
 */
static void
sql_update_keyed(StringInfo sql, WbTable *t, const bool *present)
{
	const char *key = quote_identifier(t->keys[0]);
	int			argno = 2;
	bool		first = true;

	appendStringInfo(sql, "UPDATE %s AS t SET ", t->qname);
	for (int c = 0; c < t->ncols; c++)
	{
		if (!present[c])
			continue;
		appendStringInfo(sql, "%s%s = ($%d::%s[])[pg_catalog.width_bucket(t.%s, $1::%s[])]",
						 first ? "" : ", ", quote_identifier(t->cols[c]), argno++,
						 OidIsValid(t->colbin[c]) ? t->colbase[c] : "pg_catalog.text",
						 key, t->keybase[0]);
		if (!OidIsValid(t->colbin[c]))
			appendStringInfo(sql, "::%s", t->colbase[c]);
		first = false;
	}
	appendStringInfo(sql, " WHERE t.%s OPERATOR(pg_catalog.=) ANY ($1::%s[]) RETURNING t.%s",
					 key, t->keybase[0], key);
}

static ApplySql *
apply_sql(WbTable *t, const bool *present, bool increment)
{
	ApplySql   *a = palloc0(sizeof(ApplySql));
	StringInfoData sql;
	StringInfoData match;
	char	   *plain;
	int			npresent = 0;

	for (int c = 0; c < t->ncols; c++)
		if (present[c])
			npresent++;
	initStringInfo(&match);
	for (int i = 0; i < t->nkeys; i++)
		appendStringInfo(&match, "%st.%s = u.k%d::%s", i ? " AND " : "",
						 quote_identifier(t->keys[i]), i, t->keybase[i]);

	/*
	 * The same rows as an index condition on the (first) key column: a join
	 * with the members alone lets the planner hash the whole table for every
	 * batch (seq scan of a 100,000-row table to update 1,000 rows, 80% of the
	 * drain's time in issue 18's profile); "= ANY (keys)" makes it probe the
	 * key's index once per member.  For the statements planned per batch
	 * only: the kept generic UPDATE (update_kept) is a nested loop of index
	 * probes without it (see kept_plan).
	 */
	wb_key_info(t);
	plain = pstrdup(match.data);
	if (t->key_any_ok && OidIsValid(t->keybin[0]))
		appendStringInfo(&match, " AND t.%s OPERATOR(pg_catalog.=) ANY ($1::%s[])",
						 quote_identifier(t->keys[0]), t->keybase[0]);
	else if (t->key_any_ok)
		appendStringInfo(&match, " AND t.%s OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]::%s[])",
						 quote_identifier(t->keys[0]), t->keybase[0]);

	initStringInfo(&sql);
	if (!increment && npresent > 0)
	{
		sql_members(&sql, t, present, " ", false);
		sql_update(&sql, t, present, npresent, false, match.data, true);
		a->update = sql.data;
		initStringInfo(&sql);
		sql_members(&sql, t, present, " ", false);
		sql_update(&sql, t, present, npresent, false, plain, true);
		a->update_kept = sql.data;
		if (t->key_int)
		{
			initStringInfo(&sql);
			sql_members(&sql, t, present, " ", true);
			sql_update(&sql, t, present, npresent, false, match.data, true);
			a->update_sorted = sql.data;
			initStringInfo(&sql);
			sql_members(&sql, t, present, " ", true);
			sql_update(&sql, t, present, npresent, false, plain, true);
			a->update_sorted_kept = sql.data;
			if (t->format != WB_FORMAT_JSON)
			{
				initStringInfo(&sql);
				sql_update_keyed(&sql, t, present);
				a->update_keyed = sql.data;
			}
		}
		initStringInfo(&sql);
		sql_members(&sql, t, present, " ", false);
		sql_insert(&sql, t, present, npresent, false, true);
		a->insert = sql.data;
		return a;
	}
	sql_members(&sql, t, present, ", ", false);
	sql_update(&sql, t, present, npresent, increment, match.data, false);
	sql_insert(&sql, t, present, npresent, increment, false);
	sql_result(&sql, t, increment);
	a->full = sql.data;
	return a;
}

/*
 * A text[] of vals[0..n) (NULL: SQL NULL), built in place: one allocation
 * instead of a text datum per value copied again into the array (the
 * layout is construct_md_array's: 4-byte headers, int alignment).
 */
static ArrayType *
text_array(char **vals, int n)
{
	size_t	   *lens = palloc(sizeof(size_t) * Max(n, 1));
	Size		nbytes = 0;
	Size		total;
	bool		hasnulls = false;
	int32		dataoffset = 0;
	ArrayType  *a;
	char	   *p;
	bits8	   *bitmap;

	if (n == 0)
		return construct_empty_array(TEXTOID);
	for (int r = 0; r < n; r++)
	{
		if (vals[r] == NULL)
		{
			hasnulls = true;
			continue;
		}
		lens[r] = strlen(vals[r]);
		nbytes = att_align_nominal(nbytes + VARHDRSZ + lens[r], TYPALIGN_INT);
		if (!AllocSizeIsValid(nbytes))
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("array size exceeds the maximum allowed (%d)",
							(int) MaxAllocSize)));
	}
	if (hasnulls)
	{
		dataoffset = ARR_OVERHEAD_WITHNULLS(1, n);
		total = dataoffset + nbytes;
	}
	else
		total = ARR_OVERHEAD_NONULLS(1) + nbytes;
	if (!AllocSizeIsValid(total))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("array size exceeds the maximum allowed (%d)",
						(int) MaxAllocSize)));
	a = (ArrayType *) palloc0(total);
	SET_VARSIZE(a, total);
	a->ndim = 1;
	a->dataoffset = dataoffset;
	a->elemtype = TEXTOID;
	ARR_DIMS(a)[0] = n;
	ARR_LBOUND(a)[0] = 1;
	p = ARR_DATA_PTR(a);
	bitmap = ARR_NULLBITMAP(a);
	for (int r = 0; r < n; r++)
	{
		if (vals[r] == NULL)
			continue;
		if (bitmap)
			bitmap[r / 8] |= 1 << (r % 8);
		SET_VARSIZE(p, VARHDRSZ + lens[r]);
		memcpy(VARDATA(p), vals[r], lens[r]);
		p += att_align_nominal(VARHDRSZ + lens[r], TYPALIGN_INT);
	}
	pfree(lens);
	return a;
}

/*
 * An array of type typid (by value: keybin, colbin) of vals[0..n) (NULL:
 * SQL NULL), each converted by the type's input function (wb_bin_datum:
 * the cast from text the statement would apply, without the text).  An
 * invalid value is an ERROR, as it was in the statement.
 */
static ArrayType *
bin_array(Oid typid, char **vals, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *nulls = NULL;
	int16		typlen;
	bool		byval;
	char		align;
	Oid			infn,
				ioparam;
	FmgrInfo	in;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(typid, &typlen, &byval, &align);
	getTypeInputInfo(typid, &infn, &ioparam);
	fmgr_info(infn, &in);
	for (int r = 0; r < n; r++)
	{
		if (vals[r] == NULL)
		{
			if (nulls == NULL)
				nulls = palloc0(sizeof(bool) * n);
			nulls[r] = true;
			elems[r] = (Datum) 0;
			continue;
		}
		elems[r] = wb_bin_datum(typid, &in, ioparam, vals[r]);
	}
	if (n == 0)
		return construct_empty_array(typid);
	return construct_md_array(elems, nulls, 1, dims, lbs, typid, typlen, byval, align);
}

/* the array type of typid, a keybin or colbin type */
static Oid
bin_array_type(Oid typid)
{
	Oid			arr = get_array_type(typid);

	if (!OidIsValid(arr))
		elog(ERROR, "redis_sync: type %u has no array type", typid);
	return arr;
}

/* the statement's parameters for the members listed in idx[0..n); returns their number */
static int
apply_args(WbTable *t, Member *ms, int *idx, int n, Oid *types, Datum *args)
{
	const bool *present = ms[idx[0]].present;
	int			nargs = t->nkeys;
	char	  **col = palloc(sizeof(char *) * n);

	for (int k = 0; k < t->nkeys; k++)
	{
		if (OidIsValid(t->keybin[k]))
		{
			/* the key values as the key check converted them */
			Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
			int16		typlen;
			bool		byval;
			char		align;

			get_typlenbyvalalign(t->keybin[k], &typlen, &byval, &align);
			for (int r = 0; r < n; r++)
				elems[r] = ms[idx[r]].keyd[k];
			types[k] = bin_array_type(t->keybin[k]);
			args[k] = PointerGetDatum(n == 0 ? construct_empty_array(t->keybin[k]) :
									  construct_array(elems, n, t->keybin[k], typlen, byval, align));
			pfree(elems);
			continue;
		}
		for (int r = 0; r < n; r++)
			col[r] = ms[idx[r]].keyvals[k];
		types[k] = TEXTARRAYOID;
		args[k] = PointerGetDatum(text_array(col, n));
	}
	if (t->format == WB_FORMAT_JSON)
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
			if (OidIsValid(t->colbin[c]))
			{
				types[nargs] = bin_array_type(t->colbin[c]);
				args[nargs++] = PointerGetDatum(bin_array(t->colbin[c], col, n));
				continue;
			}
			types[nargs] = TEXTARRAYOID;
			args[nargs++] = PointerGetDatum(text_array(col, n));
		}
	pfree(col);
	return nargs;
}

/* the rows after the write (increments): by member number, from SPI_tuptable */
static void
apply_returned(WbTable *t, Member *ms, int *idx, int n)
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

/*
 * The UPDATE's RETURNING u.ord goes straight into a flag per member: no
 * tuple is copied into SPI_tuptable for the usual batch, in which every
 * member's row exists.
 */
typedef struct OrdReceiver
{
	DestReceiver pub;
	bool	   *updated;
	int			n;
	/* update_keyed: the rows' keys come back instead */
	const int64 *keys;			/* the members' keys, ascending */
	Oid			keytype;
	uint64		nflagged;		/* members flagged */
	bool		stray;			/* a key no member (or a flagged one) has */
} OrdReceiver;

static bool
ord_receive(TupleTableSlot *slot, DestReceiver *self)
{
	OrdReceiver *r = (OrdReceiver *) self;
	bool		isnull;
	Datum		d = slot_getattr(slot, 1, &isnull);
	int64		key;
	int			lo = 0,
				hi;

	if (r->keys == NULL)
	{
		if (!isnull && DatumGetInt64(d) >= 1 && DatumGetInt64(d) <= r->n)
			r->updated[DatumGetInt64(d) - 1] = true;
		return true;
	}
	if (isnull)
	{
		r->stray = true;
		return true;
	}
	key = r->keytype == INT2OID ? DatumGetInt16(d) :
		r->keytype == INT4OID ? DatumGetInt32(d) : DatumGetInt64(d);
	hi = r->n - 1;
	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (r->keys[mid] == key)
		{
			if (r->updated[mid])
				break;
			r->updated[mid] = true;
			r->nflagged++;
			return true;
		}
		if (r->keys[mid] < key)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	r->stray = true;
	return true;
}

static void
ord_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
}

static void
ord_shutdown(DestReceiver *self)
{
}

/* ----------------------------------------------------------------
 * Kept plans
 *
 * A batch's UPDATE and INSERT are the same statements batch after batch:
 * planning them afresh for every batch, with the members' arrays folded
 * into the plan as constants, cost the worker about 5% of a drain's CPU
 * (issue 18's profile: the planner estimates "= ANY" of a 5,000-element
 * constant element by element).  Their plans are kept instead, generic
 * (the members are parameters), in the plan cache, which re-plans them
 * after any change of the table (DDL, a new policy, another owner or
 * row_security setting).  The generic plan of the UPDATE estimates the
 * members at a handful of rows, so it probes the key's index once per
 * member from a nested loop; the "= ANY" index condition (apply_sql) is
 * then not needed, and left out: with it the planner builds a hash of the
 * rows it found instead.  A kept plan that would scan a table whole
 * (no index answers the key equality) is not used: that statement is
 * then planned for every batch as before.
 *
 * The worker alone drains, so the plans are the worker's: at most
 * KEPT_PLANS, the most recently used first, each found by its text.
 * ---------------------------------------------------------------- */

#define KEPT_PLANS 64

typedef struct KeptPlan
{
	char	   *sql;
	int			nargs;
	Oid		   *types;
	SPIPlanPtr	plan;
	bool		key_order;		/* must scan its target in key order
								 * (update_keyed; checked at every use) */
	bool		checked;		/* usable is known */
	bool		usable;			/* false: would scan a table whole */
} KeptPlan;

static List *kept_plans = NIL;	/* of KeptPlan, in TopMemoryContext */

/* does the plan tree read some table whole (a sequential scan)? */
static bool
plan_scans_whole(Plan *plan)
{
	ListCell   *lc;

	if (plan == NULL)
		return false;
	switch (nodeTag(plan))
	{
		case T_SeqScan:
		case T_SampleScan:
		case T_TidRangeScan:
			return true;
		case T_SubqueryScan:
			if (plan_scans_whole(((SubqueryScan *) plan)->subplan))
				return true;
			break;
		case T_Append:
			foreach(lc, ((Append *) plan)->appendplans)
			{
				if (plan_scans_whole(lfirst(lc)))
					return true;
			}
			break;
		case T_MergeAppend:
			foreach(lc, ((MergeAppend *) plan)->mergeplans)
			{
				if (plan_scans_whole(lfirst(lc)))
					return true;
			}
			break;
		default:
			break;
	}
	return plan_scans_whole(plan->lefttree) || plan_scans_whole(plan->righttree);
}

/*
 * Does the plan modify one table, reading it with an index scan (forward:
 * in key order, so rows are locked in key order) and nothing else?
 */
static bool
plan_in_key_order(PlannedStmt *ps)
{
	ModifyTable *mt;
	IndexScan  *scan;

	if (!IsA(ps->planTree, ModifyTable))
		return false;
	mt = (ModifyTable *) ps->planTree;
	if (list_length(mt->resultRelations) != 1 || mt->plan.lefttree == NULL ||
		!IsA(mt->plan.lefttree, IndexScan))
		return false;
	scan = (IndexScan *) mt->plan.lefttree;
	return scan->scan.scanrelid == (Index) linitial_int(mt->resultRelations) &&
		scan->indexorderdir != BackwardScanDirection;
}

/*
 * Is the generic plan of a kept statement one that probes an index (and,
 * key_order, see plan_in_key_order)?
 */
static bool
kept_plan_usable(SPIPlanPtr plan, bool key_order)
{
	CachedPlan *cp = SPI_plan_get_cached_plan(plan);
	bool		usable = cp != NULL;
	ListCell   *lc;

	if (cp == NULL)
		return false;
	if (key_order && list_length(cp->stmt_list) != 1)
		usable = false;
	foreach(lc, cp->stmt_list)
	{
		PlannedStmt *ps = lfirst_node(PlannedStmt, lc);

		if (plan_scans_whole(ps->planTree) || (key_order && !plan_in_key_order(ps)))
			usable = false;
	}
	ReleaseCachedPlan(cp, CurrentResourceOwner);
	return usable;
}

/*
 * k's plan if it is to be used, else NULL (checked once, at first use; a
 * key_order plan at every use: the plan cache may have planned it again)
 */
static SPIPlanPtr
kept_plan_checked(KeptPlan *k)
{
	if (!k->checked || k->key_order)
	{
		k->usable = kept_plan_usable(k->plan, k->key_order);
		k->checked = true;
	}
	return k->usable ? k->plan : NULL;
}

/*
 * The kept generic plan of sql (its parameters nargs of types), prepared at
 * first use; NULL when it is not to be used.  Call with enable_seqscan off
 * (the statement is planned now).
 */
static SPIPlanPtr
kept_plan(const char *sql, int nargs, const Oid *types, bool key_order)
{
	ListCell   *lc;
	KeptPlan   *k;
	MemoryContext old;
	SPIPlanPtr	plan;

	foreach(lc, kept_plans)
	{
		k = lfirst(lc);
		if (k->nargs == nargs && strcmp(k->sql, sql) == 0 &&
			memcmp(k->types, types, sizeof(Oid) * nargs) == 0)
		{
			/* the most recently used first */
			if (foreach_current_index(lc) > 0)
			{
				old = MemoryContextSwitchTo(TopMemoryContext);
				kept_plans = list_delete_cell(kept_plans, lc);
				kept_plans = lcons(k, kept_plans);
				MemoryContextSwitchTo(old);
			}
			return kept_plan_checked(k);
		}
	}

	plan = SPI_prepare_cursor(sql, nargs, (Oid *) types, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "redis_sync: could not prepare a write-behind statement: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "redis_sync: could not keep a write-behind plan");

	/* the oldest goes */
	if (list_length(kept_plans) >= KEPT_PLANS)
	{
		k = llast(kept_plans);
		kept_plans = list_delete_last(kept_plans);
		SPI_freeplan(k->plan);
		pfree(k->sql);
		pfree(k->types);
		pfree(k);
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	k = palloc0(sizeof(KeptPlan));
	k->sql = pstrdup(sql);
	k->nargs = nargs;
	k->types = palloc(sizeof(Oid) * Max(nargs, 1));
	memcpy(k->types, types, sizeof(Oid) * nargs);
	k->plan = plan;
	k->key_order = key_order;
	kept_plans = lcons(k, kept_plans);
	MemoryContextSwitchTo(old);
	return kept_plan_checked(k);
}

/*
 * Run a write-behind statement with enable_seqscan off (see
 * wb_execute_by_index): the kept plan of kept_sql when there is one
 * (kept_sql may be NULL; key_order: see KeptPlan), else sql planned now
 * (sql NULL: nothing is run, 0 is returned); the RETURNING rows go to dest
 * (NULL: SPI_tuptable).
 */
static int
execute_write(const char *kept_sql, bool key_order, const char *sql, int nargs, Oid *types,
			  Datum *args, DestReceiver *dest)
{
	SPIExecuteOptions opts;
	ParamListInfo params = makeParamList(nargs);
	SPIPlanPtr	plan = NULL;
	bool		kept = false;
	int			level;
	int			ret;

	for (int i = 0; i < nargs; i++)
	{
		params->params[i].value = args[i];
		params->params[i].isnull = false;
		params->params[i].pflags = PARAM_FLAG_CONST;
		params->params[i].ptype = types[i];
	}
	memset(&opts, 0, sizeof(opts));
	opts.params = params;
	opts.dest = dest;

	level = NewGUCNestLevel();
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (kept_sql)
		plan = kept_plan(kept_sql, nargs, types, key_order);
	kept = plan != NULL;
	if (!kept && sql == NULL)
	{
		AtEOXact_GUC(true, level);
		return 0;
	}
	if (!kept)
	{
		plan = SPI_prepare(sql, nargs, types);
		if (plan == NULL)
			elog(ERROR, "redis_sync: could not prepare a write-behind statement: %s",
				 SPI_result_code_string(SPI_result));
	}
	ret = SPI_execute_plan_extended(plan, &opts);
	if (!kept)
		SPI_freeplan(plan);
	AtEOXact_GUC(true, level);
	return ret;
}

/* a receiver marking in updated[0..n) the members the UPDATE wrote */
static void
ord_receiver_init(OrdReceiver *r, bool *updated, int n)
{
	memset(r, 0, sizeof(*r));
	r->pub.receiveSlot = ord_receive;
	r->pub.rStartup = ord_startup;
	r->pub.rShutdown = ord_shutdown;
	r->pub.rDestroy = ord_shutdown;
	r->pub.mydest = DestNone;
	r->updated = updated;
	r->n = n;
}

/* run the UPDATE, marking the members it updated */
static int
execute_update(const char *kept_sql, const char *sql, int nargs, Oid *types, Datum *args,
			   bool *updated, int n)
{
	OrdReceiver r;

	ord_receiver_init(&r, updated, n);
	return execute_write(kept_sql, false, sql, nargs, types, args, &r.pub);
}

/*
 * May update_keyed write this table (the members sorted by key)?  Only
 * when a row's key after the UPDATE is the key it was found by, and the
 * statement alone modifies it: no BEFORE UPDATE row trigger (which could
 * change the key), no stored generated column (which could be the key), no
 * rule, no inheritance child or partition.  The lock the UPDATE takes
 * anyway, taken now, keeps triggers and rules from being added before it
 * runs.
 */
static bool
update_keyed_allowed(WbTable *t)
{
	Relation	rel = try_table_open(t->relid, RowExclusiveLock);
	bool		ok;

	if (rel == NULL)
		return false;
	ok = rel->rd_rel->relkind == RELKIND_RELATION && !rel->rd_rel->relhassubclass &&
		rel->rd_rules == NULL &&
		!(rel->trigdesc && rel->trigdesc->trig_update_before_row) &&
		!(rel->rd_att->constr && rel->rd_att->constr->has_generated_stored);
	table_close(rel, NoLock);
	return ok;
}

/*
 * Run update_keyed for the members idx[0..n) (sorted by key), marking the
 * members it updated; 0 when its kept plan is not to be used (nothing was
 * run).
 */
static int
execute_update_keyed(WbTable *t, Member *ms, int *idx, int n, const char *sql,
					 int nargs, Oid *types, Datum *args, bool *updated)
{
	OrdReceiver r;
	int64	   *keys = palloc(sizeof(int64) * n);
	int			ret;

	for (int i = 0; i < n; i++)
		keys[i] = wb_member_int_key(t, &ms[idx[i]]);
	ord_receiver_init(&r, updated, n);
	r.keys = keys;
	r.keytype = t->keybin[0];
	ret = execute_write(sql, true, NULL, nargs, types, args, &r.pub);
	/* every row found is one member's (update_keyed_allowed) */
	if (ret != 0 && (r.stray || r.nflagged != SPI_processed))
		elog(ERROR, "redis_sync: the rows a write-behind update wrote do not match its members' keys");
	pfree(keys);
	return ret;
}

/* the INSERT of the members the UPDATE did not update */
static void
apply_inserts(WbTable *t, Member *ms, int *idx, int n, const char *sql,
			  Oid *types, Datum *args, const bool *updated)
{
	int		   *rest = palloc(sizeof(int) * n);
	int			nrest = 0;
	int			nargs;
	int			ret;

	for (int r = 0; r < n; r++)
		if (!updated[r])
			rest[nrest++] = idx[r];
	if (nrest == 0)
		return;
	nargs = apply_args(t, ms, rest, nrest, types, args);
	ret = execute_write(sql, false, sql, nargs, types, args, NULL);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "redis_sync: write-behind apply failed: %s", SPI_result_code_string(ret));
}

/* a member and its integer key, for sort_int_keys */
typedef struct IntKey
{
	int64		key;
	int			idx;
} IntKey;

/* sort_int_keys_qsort(): qsort with the comparison inlined (lib/sort_template.h) */
#define ST_SORT sort_int_keys_qsort
#define ST_ELEMENT_TYPE IntKey
#define ST_COMPARE(a, b) ((a)->key < (b)->key ? -1 : (a)->key > (b)->key ? 1 : 0)
#define ST_SCOPE static
#define ST_DECLARE
#define ST_DEFINE
#include "lib/sort_template.h"

/*
 * idx[0..n) in the order of their integer key (keyd, set by
 * wb_check_member_keys), in a new array.  Cheaper than the statement's
 * sort (about 4% of a batch's CPU).
 */
static int *
sort_int_keys(WbTable *t, Member *ms, int *idx, int n)
{
	IntKey	   *k = palloc(sizeof(IntKey) * n);
	int		   *sorted;

	for (int r = 0; r < n; r++)
	{
		k[r].key = wb_member_int_key(t, &ms[idx[r]]);
		k[r].idx = idx[r];
	}
	sort_int_keys_qsort(k, n);
	sorted = palloc(sizeof(int) * n);
	for (int r = 0; r < n; r++)
		sorted[r] = k[r].idx;
	pfree(k);
	return sorted;
}

/* run the write for the members listed in idx[0..n) */
static void
run_apply(WbTable *t, Member *ms, int *idx, int n, bool increment, const ApplySql *a)
{
	Oid		   *types = palloc(sizeof(Oid) * (t->nkeys + t->ncols + 1));
	Datum	   *args = palloc(sizeof(Datum) * (t->nkeys + t->ncols + 1));
	int		   *sorted = a->update_sorted ? sort_int_keys(t, ms, idx, n) : NULL;
	int			nargs;
	int			ret;

	if (sorted)
		idx = sorted;
	nargs = apply_args(t, ms, idx, n, types, args);
	if (a->update)
	{
		bool	   *updated = palloc0(sizeof(bool) * n);

		/*
		 * update_keyed when it may (a single member, as when a batch is
		 * retried member by member, takes the join)
		 */
		ret = 0;
		if (sorted && a->update_keyed && n > 1 && update_keyed_allowed(t))
			ret = execute_update_keyed(t, ms, idx, n, a->update_keyed, nargs, types, args,
									   updated);
		if (ret == 0)
			ret = execute_update(sorted ? a->update_sorted_kept : a->update_kept,
								 sorted ? a->update_sorted : a->update, nargs, types, args,
								 updated, n);
		if (ret != SPI_OK_UPDATE_RETURNING && ret != SPI_OK_UPDATE)
			elog(ERROR, "redis_sync: write-behind apply failed: %s", SPI_result_code_string(ret));
		if (SPI_processed < (uint64) n)
			apply_inserts(t, ms, idx, n, a->insert, types, args, updated);
		return;
	}
	ret = wb_execute_by_index(a->full, nargs, types, args, false);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: write-behind apply failed: %s", SPI_result_code_string(ret));
	if (increment)
		apply_returned(t, ms, idx, n);
}

/* run_apply()'s arguments, for rs_subxact_try_drain() */
typedef struct ApplyArgs
{
	WbTable    *t;
	Member	   *ms;
	int		   *idx;
	int			n;
	bool		increment;
	const ApplySql *sql;
} ApplyArgs;

static void
run_apply_args(void *arg)
{
	ApplyArgs  *a = arg;

	run_apply(a->t, a->ms, a->idx, a->n, a->increment, a->sql);
}

/*
 * Run the write for idx[0..n) in a subtransaction.  NULL on success; the
 * error of a permanent failure (the subtransaction is rolled back); a
 * transient error is re-thrown so the whole batch is retried later.
 */
static ErrorData *
try_apply(WbTable *t, Member *ms, int *idx, int n, bool increment, const ApplySql *sql)
{
	ApplyArgs	a = {t, ms, idx, n, increment, sql};

	return rs_subxact_try_drain(run_apply_args, &a);
}

/*
 * Apply members idx[0..n) of one shape: all at once; on failure one by one,
 * sending permanent failures to dead letters.  Transient errors are
 * re-thrown.
 */
static void
apply_shape(WbTable *t, Member *ms, int *idx, int n, bool increment)
{
	ApplySql   *sql;

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
void
wb_apply_group(WbTable *t, Member *ms, int *idx, int n, bool increment)
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

void
wb_record_dead_letters(WbTable *t, Member *ms, int nm)
{
	for (int i = 0; i < nm; i++)
	{
		Member	   *m = &ms[i];
		Oid			types[7] = {OIDOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
		Datum		values[7];

		if (m->problem == NULL)
			continue;
		values[0] = ObjectIdGetDatum(t->relid);
		values[1] = CStringGetTextDatum(wb_member_key(t, m));
		values[2] = CStringGetTextDatum(m->member);
		values[3] = CStringGetTextDatum(wb_raw_json(t, m->value));
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
		if (!m->reapplied)
			rs_stats_add(t->relid, RS_C_DEAD, 1);
	}
}
