/*-------------------------------------------------------------------------
 *
 * encode.c
 *		How a row becomes Redis data: keys, hash fields, JSON, versions.
 *
 * The canonical form (README, "Encoding"): every text below is produced by
 * the type's output function under fixed settings (rs_canonical_enter:
 * dates, time zone, intervals, floats, bytea, lc_monetary and a search path
 * of pg_catalog alone for reg* names; for reading back, array_nulls on and
 * xmloption content), so no session setting changes a key or a value.  The
 * settings themselves are canonical.c's; decoding a cached value back into
 * a row is decode.c's.
 *
 * Keys are key_prefix followed by the key columns' canonical text, each
 * with '\\' and ':' escaped by a backslash, joined by ':'.  The hash format
 * has one field per synced column holding its canonical text; a NULL column
 * is an absent field.  The json format is the JSON object of the synced
 * columns as to_json() renders each (row_to_json's output), except that an
 * SQL NULL json/jsonb column is left out (so that JSON null stays
 * distinguishable) and an array or composite value that holds, at any
 * depth, an array whose lower bounds are not all 1 (JSON arrays have no
 * bounds) or a nested json/jsonb JSON null (to_json writes null for SQL NULL
 * too) is a JSON string of its canonical text.  Everything
 * is passed to Redis as argv (length-counted), never spliced into command
 * text.
 *
 * Companion keys (version, seed, processing) begin with '{', which no row
 * key can (prefixes must not), see rs_companion_key.
 *
 * Versions fence every write (fence.c's scripts; publish.c takes one at
 * pre-commit): 8 hex digits of the WAL
 * timeline (plus the database's timeline base, identity.c: a cluster made
 * by pg_upgrade starts again at timeline 1), 8 of the server epoch (epoch.c: it grows at every start and
 * crash restart) and 16 of the WAL insert position, so they compare as
 * strings and grow across restarts, crashes that lose unflushed WAL (the
 * insert position then restarts lower) and promotions (a new timeline).
 * 0.1's versions had no epoch (24 digits): since the epoch is at least the
 * server's start time in seconds, every 32-digit version of a timeline
 * compares above them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xlog.h"
#include "common/hashfn.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/float.h"
#include "utils/fmgroids.h"
#include "utils/guc_tables.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonfuncs.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "encode.h"
#include "identity.h"
#include "redis_client.h"

void
rs_version_now(char *buf)
{
	rs_version_at(buf, GetXLogInsertRecPtr());
}

/* the version of WAL position lsn (this timeline and epoch) */
void
rs_version_at(char *buf, XLogRecPtr lsn)
{
	TimeLineID	tli = RecoveryInProgress() ? 0 :
	GetWALInsertionTimeLine() + rs_identity_timeline_base();
	uint32		epoch = rs_epoch();
	static const char hex[] = "0123456789ABCDEF";

	/* "%08X%08X%016llX", without snprintf: every push takes two versions */
	StaticAssertStmt(RS_VERSION_LEN == 32, "a version is 32 hex digits");
	for (int i = 0; i < 4; i++)
	{
		uint8		t = (uint8) (tli >> (8 * i));
		uint8		e = (uint8) (epoch >> (8 * i));

		buf[7 - 2 * i] = hex[t & 0xF];
		buf[6 - 2 * i] = hex[t >> 4];
		buf[15 - 2 * i] = hex[e & 0xF];
		buf[14 - 2 * i] = hex[e >> 4];
	}
	for (int i = 0; i < 8; i++)
	{
		uint8		l = (uint8) (lsn >> (8 * i));

		buf[31 - 2 * i] = hex[l & 0xF];
		buf[30 - 2 * i] = hex[l >> 4];
	}
	buf[32] = '\0';
}

void
rs_version_decrement(char *v)
{
	for (int i = (int) strlen(v) - 1; i >= 0; i--)
	{
		if (v[i] != '0')
		{
			v[i] = v[i] == 'A' || v[i] == 'a' ? '9' : v[i] - 1;
			break;
		}
		v[i] = 'F';
	}
}

/* the typmod of a table's column (keys given as text are cast with it) */
int32
rs_key_typmod(Oid relid, AttrNumber attnum)
{
	Oid			typid;
	int32		typmod;
	Oid			coll;

	get_atttypetypmodcoll(relid, attnum, &typid, &typmod, &coll);
	return typmod;
}

/*
 * An alias for the table's whole-row reference in generated SQL that no
 * column of relid is named ("SELECT t FROM tbl t" reads a column named t)
 */
char *
rs_row_alias(Oid relid)
{
	char	   *alias = pstrdup("rs_row");

	while (get_attnum(relid, alias) != InvalidAttrNumber)
		alias = psprintf("%s_", alias);
	return alias;
}

/* ----------------------------------------------------------------
 * Keys
 * ---------------------------------------------------------------- */

void
rs_key_escape(StringInfo buf, const char *val)
{
	for (const char *c = val; *c; c++)
	{
		if (*c == '\\' || *c == ':')
			appendStringInfoChar(buf, '\\');
		appendStringInfoChar(buf, *c);
	}
}

char *
rs_key_build(const char *prefix, char **vals, int n)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, prefix);
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ':');
		rs_key_escape(&buf, vals[i]);
	}
	return buf.data;
}

/*
 * Split s into exactly n unescaped values; NULL when s is not the escaped
 * form of n values (wrong count, a dangling or unknown escape).  Every
 * valid s has exactly one parse, and rs_key_build gives s back.
 */
char **
rs_key_split(const char *s, int n)
{
	char	  **vals = palloc(sizeof(char *) * Max(n, 1));
	char	   *out = palloc(strlen(s) + 1);
	int			k = 0;

	vals[0] = out;
	for (const char *c = s;; c++)
	{
		if (*c == '\0')
			break;
		if (*c == '\\')
		{
			c++;
			if (*c != '\\' && *c != ':')
				return NULL;
			*out++ = *c;
		}
		else if (*c == ':')
		{
			*out++ = '\0';
			if (++k >= n)
				return NULL;
			vals[k] = out;
		}
		else
			*out++ = *c;
	}
	*out = '\0';
	return k == n - 1 ? vals : NULL;
}

static char *
column_text(SyncColumn *col, TupleDesc td, HeapTuple tup, bool *isnull)
{
	Datum		d = heap_getattr(tup, col->attnum, td, isnull);

	if (*isnull)
		return NULL;
	return OutputFunctionCall(&col->out, d);
}

static char *
encode_key(SyncConfig *cfg, TupleDesc td, HeapTuple tup, char ***keyvals)
{
	char	  **vals = palloc(sizeof(char *) * cfg->nkeys);
	size_t	   *lens = palloc(sizeof(size_t) * cfg->nkeys);
	size_t		plen = strlen(cfg->prefix);
	size_t		total = plen + cfg->nkeys;
	char	   *key,
			   *p;

	/* one exact allocation: this runs for every captured row */
	for (int i = 0; i < cfg->nkeys; i++)
	{
		bool		isnull;

		vals[i] = column_text(&cfg->keys[i], td, tup, &isnull);
		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("key column \"%s\" of a synced row is NULL", cfg->keys[i].name)));
		lens[i] = strlen(vals[i]);
		for (const char *c = vals[i]; *c; c++)
			if (*c == '\\' || *c == ':')
				lens[i]++;
		total += lens[i];
	}
	key = p = palloc(total);
	memcpy(p, cfg->prefix, plen);
	p += plen;
	for (int i = 0; i < cfg->nkeys; i++)
	{
		if (i > 0)
			*p++ = ':';
		for (const char *c = vals[i]; *c; c++)
		{
			if (*c == '\\' || *c == ':')
				*p++ = '\\';
			*p++ = *c;
		}
	}
	*p = '\0';
	pfree(lens);
	if (keyvals)
		*keyvals = vals;
	else
		pfree(vals);
	return key;
}

char *
rs_encode_key(SyncConfig *cfg, TupleDesc td, HeapTuple tup, char ***keyvals)
{
	RsCanonicalSave save;
	char	   *key;

	rs_canonical_enter(&save);
	PG_TRY();
	{
		key = encode_key(cfg, td, tup, keyvals);
	}
	PG_FINALLY();
	{
		rs_canonical_exit(&save);
	}
	PG_END_TRY();
	return key;
}

void
rs_append_key_identity(StringInfo buf, Oid relid, char **keyvals, int nkeys)
{
	/* without appendStringInfo's snprintf: this runs for every push */
	enlargeStringInfo(buf, 12);
	buf->data[buf->len++] = '[';
	buf->len += pg_ultoa_n(relid, buf->data + buf->len);
	buf->data[buf->len] = '\0';
	for (int i = 0; i < nkeys; i++)
	{
		appendStringInfoChar(buf, ',');
		escape_json(buf, keyvals[i]);
	}
	appendStringInfoChar(buf, ']');
}

/* to_json() of one type, set up once per type (in TopMemoryContext) */
typedef struct ToJsonEntry
{
	Oid			typid;
	FmgrInfo	fn;
	bool		is_json;		/* json or jsonb, or a domain over one */
	bool		is_array;		/* an array type, or a domain over one */
	bool		nested;			/* an array or composite that may hold what
								 * JSON cannot say (see value_needs_text) */
} ToJsonEntry;

static HTAB *to_json_cache = NULL;
static bool type_may_need_text(Oid typid, int depth);
static bool to_json_cache_stale = false;

/* a type changed (or an OID may be reused): forget every entry at next use */
static void
to_json_type_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	to_json_cache_stale = true;
}

static ToJsonEntry *
to_json_for(Oid typid)
{
	ToJsonEntry *e;
	bool		found;
	static bool callback_registered = false;

	if (!callback_registered)
	{
		CacheRegisterSyscacheCallback(TYPEOID, to_json_type_changed, (Datum) 0);
		callback_registered = true;
	}
	if (to_json_cache_stale && to_json_cache != NULL)
	{
		hash_destroy(to_json_cache);	/* the FmgrInfos' extra memory stays:
										 * small, rare */
		to_json_cache = NULL;
	}
	to_json_cache_stale = false;
	if (to_json_cache == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(ToJsonEntry);
		ctl.hcxt = TopMemoryContext;
		to_json_cache = hash_create("redis_sync to_json", 64, &ctl,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	e = hash_search(to_json_cache, &typid, HASH_ENTER, &found);
	if (!found)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		Oid			base = getBaseType(typid);

		PG_TRY();
		{
			fmgr_info(F_TO_JSON, &e->fn);
			e->fn.fn_expr = (Node *) makeFuncExpr(F_TO_JSON, JSONOID,
												  list_make1(makeNullConst(typid, -1, InvalidOid)),
												  InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
			e->is_json = base == JSONOID || base == JSONBOID;
			e->is_array = OidIsValid(get_element_type(base));
			e->nested = (e->is_array || get_typtype(base) == TYPTYPE_COMPOSITE) &&
				type_may_need_text(base, 0);
		}
		PG_CATCH();
		{
			hash_search(to_json_cache, &typid, HASH_REMOVE, NULL);
			PG_RE_THROW();
		}
		PG_END_TRY();
		MemoryContextSwitchTo(old);
	}
	return e;
}

/* true when some dimension of the array does not start at 1 */
static bool
array_has_bounds(Datum d)
{
	ArrayType  *a = DatumGetArrayTypeP(d);
	int		   *lb = ARR_LBOUND(a);

	for (int i = 0; i < ARR_NDIM(a); i++)
		if (lb[i] != 1)
			return true;
	return false;
}

/*
 * Can a value of this type (an array, a composite, or json inside one of
 * them) hold something to_json() cannot say exactly: an array whose lower
 * bounds are not all 1, or a json/jsonb JSON null inside an array or a
 * composite (to_json writes null for it and for SQL NULL alike)?
 */
static bool
type_may_need_text(Oid typid, int depth)
{
	Oid			base = getBaseType(typid);
	bool		result = false;

	check_stack_depth();
	if (base == JSONOID || base == JSONBOID)
		return depth > 0;
	if (OidIsValid(get_element_type(base)))
		return true;
	if (get_typtype(base) == TYPTYPE_COMPOSITE)
	{
		TupleDesc	td = lookup_rowtype_tupdesc(base, -1);

		for (int i = 0; i < td->natts && !result; i++)
		{
			Form_pg_attribute att = TupleDescAttr(td, i);

			if (!att->attisdropped && type_may_need_text(att->atttypid, depth + 1))
				result = true;
		}
		ReleaseTupleDesc(td);
	}
	return result;
}

/* is the JSON text (json's or jsonb's canonical output) the literal null? */
static bool
json_is_null_literal(Oid base, Datum d)
{
	if (base == JSONBOID)
	{
		Jsonb	   *jb = DatumGetJsonbP(d);
		JsonbValue	v;

		return JB_ROOT_IS_SCALAR(jb) && JsonbExtractScalar(&jb->root, &v) && v.type == jbvNull;
	}
	else
	{
		text	   *t = DatumGetTextPP(d);
		const char *p = VARDATA_ANY(t);
		int			len = VARSIZE_ANY_EXHDR(t);

		while (len > 0 && isspace((unsigned char) *p))
			p++, len--;
		while (len > 0 && isspace((unsigned char) p[len - 1]))
			len--;
		return len == 4 && memcmp(p, "null", 4) == 0;
	}
}

/*
 * Does this non-NULL value (of an array or composite type) hold, at any
 * depth, an array with bounds or a nested JSON null?  Then the json format
 * stores it as a JSON string of its canonical text, which its input
 * function (get(), the drain) takes back exactly.
 */
static bool
value_needs_text(Oid typid, Datum d, int depth)
{
	Oid			base = getBaseType(typid);
	Oid			elem;

	check_stack_depth();
	if (base == JSONOID || base == JSONBOID)
		return depth > 0 && json_is_null_literal(base, d);
	elem = get_element_type(base);
	if (OidIsValid(elem))
	{
		ArrayType  *a = DatumGetArrayTypeP(d);
		int16		elmlen;
		bool		elmbyval;
		char		elmalign;
		Datum	   *elems;
		bool	   *enulls;
		int			n;

		if (array_has_bounds(PointerGetDatum(a)))
			return true;
		if (!type_may_need_text(elem, depth + 1))
			return false;
		get_typlenbyvalalign(elem, &elmlen, &elmbyval, &elmalign);
		deconstruct_array(a, elem, elmlen, elmbyval, elmalign, &elems, &enulls, &n);
		for (int i = 0; i < n; i++)
			if (!enulls[i] && value_needs_text(elem, elems[i], depth + 1))
				return true;
		return false;
	}
	if (get_typtype(base) == TYPTYPE_COMPOSITE)
	{
		HeapTupleHeader hdr = DatumGetHeapTupleHeader(d);
		TupleDesc	td = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(hdr),
												HeapTupleHeaderGetTypMod(hdr));
		HeapTupleData tup;
		bool		result = false;

		tup.t_len = HeapTupleHeaderGetDatumLength(hdr);
		ItemPointerSetInvalid(&tup.t_self);
		tup.t_tableOid = InvalidOid;
		tup.t_data = hdr;
		for (int i = 0; i < td->natts && !result; i++)
		{
			Form_pg_attribute att = TupleDescAttr(td, i);
			bool		isnull;
			Datum		v;

			if (att->attisdropped || !type_may_need_text(att->atttypid, depth + 1))
				continue;
			v = heap_getattr(&tup, i + 1, td, &isnull);
			if (!isnull && value_needs_text(att->atttypid, v, depth + 1))
				result = true;
		}
		ReleaseTupleDesc(td);
		return result;
	}
	return false;
}

/* the json format: see the file header */
static char *
encode_json(SyncConfig *cfg, TupleDesc td, HeapTuple tup)
{
	StringInfoData buf;
	bool		first = true;
	Datum	   *values = palloc(sizeof(Datum) * cfg->ncols);
	bool	   *nulls = palloc(sizeof(bool) * cfg->ncols);
	bool		plain = cfg->json_desc != NULL;

	/*
	 * Usually row_to_json gives exactly the canonical form, and fastest; a
	 * NULL json column or an array with bounds needs the column-wise path.
	 */
	for (int i = 0; i < cfg->ncols && plain; i++)
	{
		ToJsonEntry *e = to_json_for(cfg->cols[i].typid);

		values[i] = heap_getattr(tup, cfg->cols[i].attnum, td, &nulls[i]);
		if (nulls[i] ? e->is_json : (e->nested && value_needs_text(cfg->cols[i].typid, values[i], 0)))
			plain = false;
	}
	if (plain)
	{
		HeapTuple	sub = heap_form_tuple(cfg->json_desc, values, nulls);
		Datum		json = DirectFunctionCall1(row_to_json, HeapTupleGetDatum(sub));

		heap_freetuple(sub);
		return text_to_cstring(DatumGetTextPP(json));
	}

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < cfg->ncols; i++)
	{
		SyncColumn *col = &cfg->cols[i];
		bool		isnull;
		Datum		d = heap_getattr(tup, col->attnum, td, &isnull);
		ToJsonEntry *e = to_json_for(col->typid);

		if (isnull && e->is_json)
			continue;			/* absent: SQL NULL; present null: JSON null */
		if (!first)
			appendStringInfoChar(&buf, ',');
		first = false;
		escape_json(&buf, col->name);
		appendStringInfoChar(&buf, ':');
		if (isnull)
			appendStringInfoString(&buf, "null");
		else if (e->nested && value_needs_text(col->typid, d, 0))
			escape_json(&buf, OutputFunctionCall(&col->out, d));
		else
		{
			text	   *j = DatumGetTextPP(FunctionCall1(&e->fn, d));

			appendBinaryStringInfo(&buf, VARDATA_ANY(j), VARSIZE_ANY_EXHDR(j));
		}
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

static void encode_row(SyncConfig *cfg, TupleDesc td, HeapTuple tup, RowImage *img);

char *
rs_encode_change(SyncConfig *cfg, TupleDesc td, HeapTuple keytup, HeapTuple newtup,
				 RowImage *after, HeapTuple oldtup, RowImage *before)
{
	RsCanonicalSave save;
	char	   *key;

	/*
	 * one switch to the canonical settings for all three (~500 instructions
	 * each)
	 */
	rs_canonical_enter(&save);
	PG_TRY();
	{
		key = encode_key(cfg, td, keytup, NULL);
		encode_row(cfg, td, newtup, after);
		if (before)
			encode_row(cfg, td, oldtup, before);
	}
	PG_FINALLY();
	{
		rs_canonical_exit(&save);
	}
	PG_END_TRY();
	return key;
}

void
rs_encode_row(SyncConfig *cfg, TupleDesc td, HeapTuple tup, RowImage *img)
{
	RsCanonicalSave save;

	rs_canonical_enter(&save);
	PG_TRY();
	{
		encode_row(cfg, td, tup, img);
	}
	PG_FINALLY();
	{
		rs_canonical_exit(&save);
	}
	PG_END_TRY();
}

static void
encode_row(SyncConfig *cfg, TupleDesc td, HeapTuple tup, RowImage *img)
{
	memset(img, 0, sizeof(*img));
	if (cfg->policy == RS_POLICY_INVALIDATE || tup == NULL)
	{
		img->op = RS_OP_DELETE;
		return;
	}
	if (cfg->format == RS_FORMAT_HASH)
	{
		img->op = RS_OP_HASH;
		img->nfields = cfg->ncols;
		img->fields = palloc(sizeof(char *) * cfg->ncols);
		img->values = palloc(sizeof(char *) * cfg->ncols);
		for (int i = 0; i < cfg->ncols; i++)
		{
			bool		isnull;

			img->fields[i] = cfg->cols[i].name;
			img->values[i] = column_text(&cfg->cols[i], td, tup, &isnull);
		}
	}
	else
	{
		img->op = RS_OP_STRING;
		img->str = encode_json(cfg, td, tup);
	}
}

static bool
columns_differ(SyncColumn *col, TupleDesc td, HeapTuple a, HeapTuple b)
{
	bool		na,
				nb;
	Datum		da = heap_getattr(a, col->attnum, td, &na);
	Datum		db = heap_getattr(b, col->attnum, td, &nb);
	Form_pg_attribute att = TupleDescAttr(td, col->attnum - 1);

	if (na || nb)
		return na != nb;
	return !datumIsEqual(da, db, att->attbyval, att->attlen);
}

bool
rs_key_changed(SyncConfig *cfg, TupleDesc td, HeapTuple oldtup, HeapTuple newtup)
{
	for (int i = 0; i < cfg->nkeys; i++)
		if (columns_differ(&cfg->keys[i], td, oldtup, newtup))
			return true;
	return false;
}

bool
rs_synced_columns_changed(SyncConfig *cfg, TupleDesc td, HeapTuple oldtup, HeapTuple newtup)
{
	if (cfg->policy == RS_POLICY_INVALIDATE)
	{
		for (int i = 0; i < td->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(td, i);
			SyncColumn	c;

			if (att->attisdropped)
				continue;
			c.attnum = att->attnum;
			if (columns_differ(&c, td, oldtup, newtup))
				return true;
		}
		return false;
	}
	for (int i = 0; i < cfg->ncols; i++)
		if (columns_differ(&cfg->cols[i], td, oldtup, newtup))
			return true;
	return false;
}

/*
 * The companion key of key (see encode.h).  Injective: a companion is
 * "{}" + suffix (key ""), "{X}" + suffix with X free of '}' (form 1),
 * "{T}" + key + suffix with key non-empty (form 2), or "{}" + key + suffix
 * with key non-empty (form 3); the first '}' and the length tell them apart.
 */
char *
rs_companion_key(const char *key, size_t len, const char *suffix)
{
	size_t		slen = strlen(suffix);
	const char *open = memchr(key, '{', len);
	const char *tag = NULL;
	size_t		taglen = 0;
	char	   *out;
	char	   *p;

	if (open)
	{
		size_t		start = open - key + 1;
		const char *close = memchr(key + start, '}', len - start);

		if (close != NULL && close > key + start)
		{
			tag = key + start;
			taglen = close - tag;
		}
	}

	/*
	 * exactly the bytes needed: this runs for every key of a push (a
	 * StringInfo's 1 kB each cost a 100,000-row push 8% of its backend time,
	 * most of it in page faults)
	 */
	out = palloc(len + taglen + slen + 4);
	p = out;
	*p++ = '{';
	if (tag)
	{
		memcpy(p, tag, taglen);
		p += taglen;
		*p++ = '}';
		memcpy(p, key, len);
		p += len;
	}
	else if (memchr(key, '}', len) == NULL)
	{
		memcpy(p, key, len);
		p += len;
		*p++ = '}';
	}
	else
	{
		*p++ = '}';
		memcpy(p, key, len);
		p += len;
	}
	memcpy(p, suffix, slen);
	p[slen] = '\0';
	return out;
}

char *
rs_version_key_str(const char *key, size_t len)
{
	return rs_companion_key(key, len, rs_version_suffix);
}

char *
rs_image_to_json(RowImage *img)
{
	StringInfoData buf;
	char	   *result;

	if (img->op == RS_OP_DELETE)
		return NULL;
	initStringInfo(&buf);
	if (img->op == RS_OP_STRING)
	{
		escape_json(&buf, img->str);
		result = pnstrdup(buf.data, buf.len);
		pfree(buf.data);
		return result;
	}
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < img->nfields; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		escape_json(&buf, img->fields[i]);
		appendStringInfoChar(&buf, ':');
		if (img->values[i])
			escape_json(&buf, img->values[i]);
		else
			appendStringInfoString(&buf, "null");
	}
	appendStringInfoChar(&buf, '}');

	/*
	 * keep only what is used: this runs for every change a large transaction
	 * queues
	 */
	result = pnstrdup(buf.data, buf.len);
	pfree(buf.data);
	return result;
}

static uint32
string_key_hash(const void *key, Size keysize)
{
	const char *s = *(const char *const *) key;

	return string_hash(s, strlen(s) + 1);
}

static int
string_key_match(const void *a, const void *b, Size keysize)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

HTAB *
rs_string_hash_create(const char *name, long nelem, Size entrysize)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(char *);
	ctl.entrysize = entrysize;
	ctl.hash = string_key_hash;
	ctl.match = string_key_match;
	ctl.hcxt = CurrentMemoryContext;
	return hash_create(name, Max(nelem, 16), &ctl,
					   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

/*
 * An index of up to n distinct string keys to the int32 positions of the
 * things that hold them (open addressing, at most two thirds full, -1 for
 * an empty slot; the keys themselves stay where they are, read back through
 * key_of).  Four bytes a slot where a dynahash entry costs about fifty: the
 * spill of a full change buffer and the pre-commit coalescing of a large
 * transaction index every change (issue 18's memory bound: a 1,000,000-row
 * UPDATE peaked about 20 MB above it with a dynahash).
 */
void
rs_key_index_init(RsKeyIndex *ki, int n)
{
	uint64		cap = 16;

	while (cap < (uint64) Max(n, 1) * 3 / 2)
		cap <<= 1;
	ki->mask = (uint32) (cap - 1);
	ki->slots = palloc_extended(sizeof(int32) * cap, MCXT_ALLOC_HUGE);
	memset(ki->slots, 0xff, sizeof(int32) * cap);
}

/*
 * key's slot: the position of what holds key, or -1 when no position was
 * stored for it yet (store one there; at most n keys in all)
 */
int32 *
rs_key_index_slot(RsKeyIndex *ki, const char *key, RsKeyOfFn key_of, void *arg)
{
	uint32		h = hash_bytes((const unsigned char *) key, strlen(key)) & ki->mask;

	for (;;)
	{
		int32	   *s = &ki->slots[h];

		if (*s < 0 || strcmp(key_of(arg, *s), key) == 0)
			return s;
		h = (h + 1) & ki->mask;
	}
}

void
rs_key_index_free(RsKeyIndex *ki)
{
	pfree(ki->slots);
	ki->slots = NULL;
}

/* the elements of a text[] as C strings (NULL elements stay NULL) */
char **
rs_text_array(ArrayType *arr, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	char	  **out;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, n);
	out = palloc(sizeof(char *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		out[i] = nulls[i] ? NULL : TextDatumGetCString(elems[i]);
	return out;
}

/* a List of OIDs as an oid[] (empty for NIL) */
ArrayType *
rs_oid_array(List *oids)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(oids), 1));
	ListCell   *lc;
	int			n = 0;

	foreach(lc, oids)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	return construct_array(elems, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT);
}

/* ----------------------------------------------------------------
 * Settings (from _PG_init)
 * ---------------------------------------------------------------- */

char	   *rs_version_suffix = NULL;

void
rs_encode_init(void)
{
	DefineCustomStringVariable("redis_sync.version_key_suffix",
							   "Suffix of the Redis key that holds a cached key's version.",
							   "The version of key K is kept at {K} followed by this suffix.",
							   &rs_version_suffix,
							   ":rs_version",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
}
