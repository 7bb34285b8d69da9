/*-------------------------------------------------------------------------
 *
 * wb_decode.c
 *		Write-behind: a claimed member turned into column values (hash,
 *		string and JSON formats, the NULL marker), and the checks that a member
 *		names exactly the row whose key it is.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "encode.h"
#include "subxact.h"
#include "wb_internal.h"

bool
wb_parse_int64(const char *s, int64 *out)
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

/* split member into its nkeys escaped key values (rs_key_split, encode.h) */
bool
wb_split_member(WbTable *t, Member *m)
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
		if (OidIsValid(t->keybin[k]))
			m->keyd[k] = d;
	}
	return true;
}

/*
 * s as a plain integer: an optional '-' and 1 to maxdigits digits (so it
 * cannot overflow the type maxdigits is chosen for), without leading zeros
 * when canonical ("0" itself, never "-0"): then int2in/int4in/int8in would
 * give the same value, and, canonical, int2out/int4out/int8out the same
 * text.  False for anything else (the input function decides then).
 */
static bool
plain_int(const char *s, int maxdigits, bool canonical, int64 *out)
{
	const char *p = s;
	bool		neg = false;
	int64		v = 0;
	int			nd = 0;

	if (*p == '-')
	{
		neg = true;
		p++;
	}
	if (canonical && *p == '0' && (neg || p[1] != '\0'))
		return false;
	for (; *p >= '0' && *p <= '9'; p++)
	{
		if (++nd > maxdigits)
			return false;
		v = v * 10 + (*p - '0');
	}
	if (*p != '\0' || nd == 0)
		return false;
	*out = neg ? -v : v;
	return true;
}

/* the digits an int2, int4 or int8 always holds (0: another type) */
static int
int_digits(Oid typid)
{
	switch (typid)
	{
		case INT2OID:
			return 4;
		case INT4OID:
			return 9;
		case INT8OID:
			return 18;
		default:
			return 0;
	}
}

static Datum
int_datum(Oid typid, int64 v)
{
	switch (typid)
	{
		case INT2OID:
			return Int16GetDatum((int16) v);
		case INT4OID:
			return Int32GetDatum((int32) v);
		default:
			return Int64GetDatum(v);
	}
}

/*
 * Is every key value of m a plain canonical integer of its integer key
 * column (keyd set)?  False: member_key_canonical decides, through the
 * input and output functions.
 */
static bool
member_key_plain(WbTable *t, Member *m)
{
	for (int k = 0; k < t->nkeys; k++)
	{
		int			nd = int_digits(t->keybin[k]);
		int64		v;

		if (nd == 0 || !plain_int(m->keyvals[k], nd, true, &v))
			return false;
		m->keyd[k] = int_datum(t->keybin[k], v);
	}
	return true;
}

/* the integer key of a key_int table's member (its keyd, set by wb_check_member_keys) */
int64
wb_member_int_key(WbTable *t, Member *m)
{
	switch (t->keybin[0])
	{
		case INT2OID:
			return DatumGetInt16(m->keyd[0]);
		case INT4OID:
			return DatumGetInt32(m->keyd[0]);
		default:
			return DatumGetInt64(m->keyd[0]);
	}
}

/*
 * The value s of a keybin/colbin column of type typid, as that type:
 * its input function's result (in: the function, ioparam its argument;
 * typmod -1, as the cast from text does), for a plain integer without the
 * function call.
 */
Datum
wb_bin_datum(Oid typid, FmgrInfo *in, Oid ioparam, const char *s)
{
	int			nd = int_digits(typid);
	int64		v;

	if (nd > 0 && plain_int(s, nd, false, &v))
		return int_datum(typid, v);
	return InputFunctionCall(in, (char *) s, ioparam, -1);
}

static void
key_problem(Member *m, const char *why, const char *state)
{
	m->problem = psprintf("dirty set member \"%s\" is not the key of a row: %s", m->member, why);
	m->problem_state = pstrdup(state);
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
	if (wb_execute_by_index(sql.data, t->nkeys, types, args, true) != SPI_OK_SELECT)
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

/*
 * Types whose values the apply passes as themselves instead of text
 * (keybin, colbin): built-in, by value, each converted from text by its
 * input function in C (wb_bin_datum) as the cast in the statement did, but
 * without the text datum, its copy and the cast per row.
 */
static Oid
bin_type(Oid typid, int32 typmod)
{
	switch (typid)
	{
		case BOOLOID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
		case FLOAT4OID:
		case FLOAT8OID:
		case DATEOID:
			break;
		default:
			return InvalidOid;
	}
	return typmod < 0 && get_typbyval(typid) ? typid : InvalidOid;
}

/*
 * What the key columns' types allow (once per cached table, in a
 * transaction): keys_exact when key equality is identity of the canonical
 * text (integers, oid, uuid, bool, text and varchar under a deterministic
 * collation), so check_member_rows can find nothing and is skipped;
 * key_any_ok when the first key column takes "= ANY (text[]::type[])" (a
 * plain base or enum type, not an array or a domain), the index condition
 * of the apply (wb_apply.c); keybin and colbin (see bin_type).
 */
void
wb_key_info(WbTable *t)
{
	bool		exact = true;
	MemoryContext cxt = GetMemoryChunkContext(t);

	if (t->keyinfo_set)
		return;
	t->keybin = MemoryContextAllocZero(cxt, sizeof(Oid) * Max(t->nkeys, 1));
	t->colbin = MemoryContextAllocZero(cxt, sizeof(Oid) * Max(t->ncols, 1));
	for (int c = 0; c < t->ncols && t->format != WB_FORMAT_JSON; c++)
	{
		Oid			typid,
					coll;
		int32		typmod;

		get_atttypetypmodcoll(t->relid, get_attnum(t->relid, t->cols[c]), &typid, &typmod, &coll);
		t->colbin[c] = bin_type(typid, -1);
	}
	for (int k = 0; k < t->nkeys; k++)
	{
		AttrNumber	attnum = get_attnum(t->relid, t->keys[k]);
		Oid			typid,
					coll;
		int32		typmod;
		char		typtype;

		get_atttypetypmodcoll(t->relid, attnum, &typid, &typmod, &coll);
		t->keybin[k] = bin_type(typid, typmod);
		switch (typid)
		{
			case INT2OID:
			case INT4OID:
			case INT8OID:
			case OIDOID:
			case UUIDOID:
			case BOOLOID:
				break;
			case TEXTOID:
			case VARCHAROID:
				if (!OidIsValid(coll) || !get_collation_isdeterministic(coll))
					exact = false;
				break;
			default:
				exact = false;
		}
		if (k == 0)
		{
			typtype = get_typtype(typid);
			t->key_any_ok = (typtype == TYPTYPE_BASE || typtype == TYPTYPE_ENUM) &&
				!OidIsValid(get_element_type(typid));
		}
	}
	t->keys_exact = exact;
	t->key_int = false;
	if (t->nkeys == 1)
	{
		Oid			typid = get_atttype(t->relid, get_attnum(t->relid, t->keys[0]));

		t->key_int = typid == INT2OID || typid == INT4OID || typid == INT8OID;
	}
	t->keyinfo_set = true;
}

/* the arguments of check_keys_cb: members ms[idx[0..n)] of table t */
typedef struct CheckKeysArg
{
	WbTable    *t;
	KeyIO	   *io;
	Member	   *ms;
	int		   *idx;
	int			n;
} CheckKeysArg;

static void
check_keys_cb(void *arg)
{
	CheckKeysArg *a = (CheckKeysArg *) arg;

	for (int i = 0; i < a->n; i++)
		if (!member_key_canonical(a->t, a->io, &a->ms[a->idx[i]]))
			key_problem(&a->ms[a->idx[i]], "its key values are not in the canonical form", "22023");
}

/* the members idx[0..n) through the input and output functions */
static void
check_keys_by_functions(WbTable *t, Member *ms, int *idx, int n)
{
	CheckKeysArg arg;
	ErrorData  *ed;

	arg.t = t;
	arg.io = key_io(t);
	arg.ms = ms;
	arg.idx = idx;
	arg.n = n;
	ed = rs_subxact_try(check_keys_cb, &arg, true);
	/* a cancel (redis_sync.drain_timeout) is no member's fault */
	if (ed != NULL && rs_error_transient_drain(ed->sqlerrcode))
		ReThrowError(ed);
	for (int i = 0; ed != NULL && i < n; i++)
	{
		Member	   *m = &ms[idx[i]];
		ErrorData  *med;

		m->problem = NULL;
		arg.idx = &idx[i];
		arg.n = 1;
		med = rs_subxact_try(check_keys_cb, &arg, true);
		if (med != NULL && rs_error_transient_drain(med->sqlerrcode))
			ReThrowError(med);
		if (med != NULL)
			key_problem(m, med->message, unpack_sql_state(med->sqlerrcode));
	}
}

/*
 * Drop the members of idx[0..*n) whose key values are not canonical (see
 * member_key_canonical) from idx, as dead letters, and set each kept
 * member's keyd.  In the transaction of the batch, canonical settings in
 * force; one subtransaction for the batch, one per member only when some
 * value is not even valid input.  Plain canonical integers of integer key
 * columns (member_key_plain) need no function call and no subtransaction:
 * the input and output functions would accept them and give them back
 * unchanged.
 */
void
wb_check_member_keys(WbTable *t, Member *ms, int *idx, int *n)
{
	int		   *slow;
	int			nslow = 0;
	int			kept = 0;
	Datum	   *keyd;

	if (*n == 0)
		return;
	wb_key_info(t);
	slow = palloc(sizeof(int) * *n);
	keyd = palloc0(sizeof(Datum) * *n * t->nkeys);
	for (int i = 0; i < *n; i++)
	{
		Member	   *m = &ms[idx[i]];

		m->keyd = &keyd[i * t->nkeys];
		if (!member_key_plain(t, m))
			slow[nslow++] = idx[i];
	}
	if (nslow > 0)
		check_keys_by_functions(t, ms, slow, nslow);
	pfree(slow);
	for (int i = 0; i < *n; i++)
		if (ms[idx[i]].problem == NULL)
			idx[kept++] = idx[i];
	*n = kept;
	if (!t->keys_exact)
		check_member_rows(t, ms, idx, n);
}

void
wb_json_append_pair(StringInfo buf, bool *first, const char *k, const char *v)
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

/* a hash: one field per column; fields that name no column are counted */
static void
decode_hash(WbTable *t, Member *m, RedisValue *v, int64 *unknown)
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

/*
 * The object of the present columns, each value as the application wrote
 * it (numbers digit for digit, json columns verbatim), goes to
 * json_populate_record(), which takes back what row_to_json() wrote:
 * arrays, composites, json values (a JSON string stays a string), typmods
 * enforced.  vals[] keeps the scalar text.  A repeated name: the last one
 * wins.
 */
static void
json_present_columns(WbTable *t, Member *m, List *fields)
{
	StringInfoData obj;
	bool		first = true;

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

/* json: keys that name no column of the table are counted, as in a hash */
static void
count_unknown_json(WbTable *t, List *fields, int64 *unknown)
{
	ListCell   *lc;

	foreach(lc, fields)
	{
		RsJsonField *f = lfirst(lc);
		bool		known = false;

		for (int c = 0; c < t->nallcols && !known; c++)
			known = strcmp(t->allcols[c], f->name) == 0;
		if (!known)
			(*unknown)++;
	}
}

/* json: an object of columns */
static void
decode_json(WbTable *t, Member *m, RedisValue *v, int64 *unknown)
{
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
		json_present_columns(t, m, fields);
		count_unknown_json(t, fields, unknown);
	}
}

/* turn the claimed value into column values */
void
wb_decode_value(WbTable *t, Member *m, RedisValue *v, int64 *unknown)
{
	/* one allocation for both (per drained member) */
	m->vals = palloc0((sizeof(char *) + sizeof(bool)) * Max(t->ncols, 1));
	m->present = (bool *) (m->vals + Max(t->ncols, 1));
	m->value = v;
	if (t->format == WB_FORMAT_HASH)
		decode_hash(t, m, v, unknown);
	else if (t->format == WB_FORMAT_STRING)
	{
		if (t->writable[0])
			take_value(t, m, 0, v);
	}
	else
		decode_json(t, m, v, unknown);
}

/* the claimed value as JSON, for a dead letter (built only when needed) */
char *
wb_raw_json(WbTable *t, RedisValue *v)
{
	StringInfoData raw;
	bool		first = true;

	if (v == NULL)
		return "null";
	initStringInfo(&raw);
	appendStringInfoChar(&raw, '{');
	if (t->format == WB_FORMAT_HASH && v->type == RV_ARRAY)
	{
		for (int i = 0; i + 1 < v->nelem; i += 2)
			wb_json_append_pair(&raw, &first, v->elems[i].str, v->elems[i + 1].str);
	}
	else if (v->type == RV_STRING)
		wb_json_append_pair(&raw, &first, t->format == WB_FORMAT_STRING ? t->cols[0] : "json", v->str);
	appendStringInfoChar(&raw, '}');
	return raw.data;
}
