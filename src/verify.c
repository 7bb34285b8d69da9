/*-------------------------------------------------------------------------
 *
 * verify.c
 *		Helpers behind redis_sync.verify() and redis_sync.resync():
 *		comparing a table with Redis exactly as its rows are pushed
 *		(_verify_table), fetching many cached values in one round trip,
 *		listing the keys under a prefix.  Pushing the current state of given
 *		keys and the key rules for SQL are keys_sql.c's.
 *
 * verify() and resync() themselves are SQL (extension script); these
 * functions give them Redis access without one round trip per row.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_operator.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"
#include "utils/tuplesort.h"

#include "as_owner.h"
#include "claim.h"
#include "fence.h"

PG_FUNCTION_INFO_V1(redis_sync_fetch);
PG_FUNCTION_INFO_V1(redis_sync_scan);
PG_FUNCTION_INFO_V1(redis_sync_verify_table);

static Datum display_reply(RedisValue *v);

/* the values of keys[0 .. n-1]: one HGETALL (hash) or GET each, one round trip */
static RedisPipeline *
read_values(char **keys, int n, bool hash)
{
	RedisPipeline *p = redis_pipeline_create();

	for (int i = 0; i < n; i++)
	{
		const char *argv[2] = {hash ? "HGETALL" : "GET", keys[i]};

		redis_pipeline_append(p, 2, argv, NULL);
	}
	redis_pipeline_exec(p);
	return p;
}

/* a read_values() reply of a key Redis does not have */
static inline bool
reply_missing(RedisValue *v)
{
	return v->type == RV_NIL || (v->type == RV_ARRAY && v->nelem == 0);
}

/* keys _fetch reads per round trip */
#define FETCH_BATCH 1000

/*
 * _fetch(keys text[], hash boolean) RETURNS TABLE(key text, value jsonb):
 * one row per existing key; a hash as an object of its fields, a string as
 * its JSON if it parses, else as a JSON string.  FETCH_BATCH keys a round
 * trip, each batch's replies and their jsonb in a context reset after it
 * (in the context of the call, about 5 kB a key lasted until it returned:
 * 100,000 keys, 481 MB).
 */
Datum
redis_sync_fetch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			n;
	char	  **keys = rs_text_array(PG_GETARG_ARRAYTYPE_P(0), &n);
	bool		hash = PG_GETARG_BOOL(1);
	MemoryContext batch_cxt;

	rs_require_key_access(keys, n, false);	/* claim.c */

	InitMaterializedSRF(fcinfo, 0);
	batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "redis_sync fetch batch",
									  ALLOCSET_DEFAULT_SIZES);
	for (int b = 0; b < n; b += FETCH_BATCH)
	{
		int			nb = Min(FETCH_BATCH, n - b);
		MemoryContext old = MemoryContextSwitchTo(batch_cxt);
		RedisPipeline *p = read_values(keys + b, nb, hash);

		for (int i = 0; i < nb; i++)
		{
			RedisValue *v = redis_pipeline_reply(p, i);
			Datum		values[2];
			bool		nulls[2] = {false, false};

			if (reply_missing(v))
				continue;
			values[0] = CStringGetTextDatum(keys[b + i]);
			values[1] = display_reply(v);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
		redis_pipeline_free(p);
		MemoryContextSwitchTo(old);
		MemoryContextReset(batch_cxt);
		CHECK_FOR_INTERRUPTS();
	}
	MemoryContextDelete(batch_cxt);
	return (Datum) 0;
}

/* redis_sync_scan's SCAN page: one row per key */
static void
scan_page_rows(char **keys, int n, void *arg)
{
	ReturnSetInfo *rsinfo = arg;

	for (int i = 0; i < n; i++)
	{
		Datum		values[1];
		bool		nulls[1] = {false};

		values[0] = CStringGetTextDatum(keys[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		/* the tuplestore has a copy; this one would last until _scan returns */
		pfree(DatumGetPointer(values[0]));
	}
}

/* _scan(prefix text) RETURNS SETOF text: every data key under prefix */
Datum
redis_sync_scan(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *prefix = text_to_cstring(PG_GETARG_TEXT_PP(0));

	rs_require_key_access(&prefix, 1, true);	/* claim.c */

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	rs_scan_prefix_pages(prefix, scan_page_rows, rsinfo);
	return (Datum) 0;
}

/* ----------------------------------------------------------------
 * verify(): one policy of one table
 * ---------------------------------------------------------------- */

typedef struct KeySlot
{
	char	   *key;
} KeySlot;

static SyncColumn *
resolve(Oid relid, ArrayType *names, int *n)
{
	char	  **cols;
	SyncColumn *out;

	{
		Datum	   *elems;
		bool	   *nulls;

		deconstruct_array(names, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR, &elems, &nulls, n);
		cols = palloc(sizeof(char *) * Max(*n, 1));
		for (int i = 0; i < *n; i++)
			cols[i] = pstrdup(NameStr(*DatumGetName(elems[i])));
	}
	out = palloc0(sizeof(SyncColumn) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
	{
		Oid			outfn;
		bool		isvarlena;

		out[i].name = cols[i];
		out[i].attnum = get_attnum(relid, cols[i]);
		if (out[i].attnum == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of synced table \"%s\" does not exist",
							cols[i], get_rel_name(relid))));
		out[i].typid = get_atttype(relid, out[i].attnum);
		getTypeOutputInfo(out[i].typid, &outfn, &isvarlena);
		fmgr_info(outfn, &out[i].out);
	}
	return out;
}

/*
 * Redis replies as jsonb, for display (_fetch, verify): a hash as an object
 * of its fields, a string as its JSON if it parses as an object or array,
 * else as a JSON string, an error as {"error": message}.
 */
static Datum
display_hash(int n, char **fields, char **values)
{
	StringInfoData json;
	bool		first = true;

	initStringInfo(&json);
	appendStringInfoChar(&json, '{');
	for (int i = 0; i < n; i++)
	{
		if (values[i] == NULL)
			continue;
		if (!first)
			appendStringInfoChar(&json, ',');
		first = false;
		escape_json(&json, fields[i]);
		appendStringInfoChar(&json, ':');
		escape_json(&json, values[i]);
	}
	appendStringInfoChar(&json, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data));
}

/* a string as jsonb: its JSON if it parses as an object or array, else a JSON string */
static Datum
display_string(const char *str, bool *parsed)
{
	MemoryContext cxt = CurrentMemoryContext;
	StringInfoData json;
	Datum		d = (Datum) 0;

	*parsed = false;
	if (str[0] == '{' || str[0] == '[')
	{
		PG_TRY();
		{
			d = DirectFunctionCall1(jsonb_in, CStringGetDatum(str));
			*parsed = true;
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			FlushErrorState();
		}
		PG_END_TRY();
	}
	if (*parsed)
		return d;
	initStringInfo(&json);
	escape_json(&json, str);
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data));
}

static Datum
display_reply(RedisValue *v)
{
	bool		parsed;

	if (v->type == RV_ERROR)
	{
		StringInfoData json;

		initStringInfo(&json);
		appendStringInfoString(&json, "{\"error\":");
		escape_json(&json, v->str);
		appendStringInfoChar(&json, '}');
		return DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data));
	}
	if (v->type == RV_ARRAY)
	{
		int			n = v->nelem / 2;
		char	  **f = palloc(sizeof(char *) * Max(n, 1));
		char	  **x = palloc(sizeof(char *) * Max(n, 1));

		for (int i = 0; i < n; i++)
		{
			f[i] = v->elems[2 * i].str;
			x[i] = v->elems[2 * i + 1].str;
		}
		return display_hash(n, f, x);
	}
	return display_string(v->str ? v->str : "", &parsed);
}

static void
put_result(ReturnSetInfo *rsinfo, const char *key, const char *problem, Datum tv, bool tv_null,
		   Datum cv, bool cv_null)
{
	Datum		values[4];
	bool		nulls[4] = {false, false, tv_null, cv_null};

	values[0] = CStringGetTextDatum(key);
	values[1] = CStringGetTextDatum(problem);
	values[2] = tv;
	values[3] = cv;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * A cached field's value (NULL: absent) and the row's agree: byte for byte,
 * its length too (a value holding a NUL byte is not the row's, which
 * holds none)
 */
static bool
field_matches(const RedisValue *cached, const char *value)
{
	if ((cached == NULL || cached->str == NULL) != (value == NULL))
		return false;
	return value == NULL ||
		(cached->len == strlen(value) && memcmp(cached->str, value, cached->len) == 0);
}

/* a reply's field name is the column's: its length too (see above) */
static bool
field_named(const RedisValue *name, const char *column)
{
	return name->str != NULL && name->len == strlen(column) &&
		memcmp(name->str, column, name->len) == 0;
}

/*
 * The fields of a row's hash (HGETALL reply v: field, value, ...) against
 * its image: each column has its value, a NULL column no field (fields of
 * no column, a write-behind table's over the same hash, say, do not
 * count).  A row of a few columns is matched by a walk of the reply from
 * where the column's field usually is (Redis keeps a small hash in the
 * order it was written, the image's); a dynahash per row, its memory
 * context made and its blocks faulted in each time, was most of verify()
 * and resync() of 1,000,000 rows.  Wide rows still get a hash table.
 */
#define MATCH_BY_WALK 64

static bool
hash_matches(RowImage *img, RedisValue *v)
{
	int			npairs = v->nelem / 2;
	HTAB	   *h;
	bool		same = true;

	if (npairs <= MATCH_BY_WALK && img->nfields <= MATCH_BY_WALK)
	{
		for (int i = 0; i < img->nfields; i++)
		{
			const RedisValue *cached = NULL;

			for (int k = 0; k < npairs; k++)
			{
				int			j = (i + k) % npairs;

				if (field_named(&v->elems[2 * j], img->fields[i]))
				{
					cached = &v->elems[2 * j + 1];
					break;
				}
			}
			if (!field_matches(cached, img->values[i]))
				return false;
		}
		return true;
	}
	h = rs_string_hash_create("redis_sync verify fields", npairs + 1,
							  sizeof(KeySlot) + sizeof(RedisValue *));
	for (int i = 0; i + 1 < v->nelem; i += 2)
	{
		KeySlot    *s;

		/* a name holding a NUL byte names no column */
		if (v->elems[i].str == NULL || v->elems[i].len != strlen(v->elems[i].str))
			continue;
		s = hash_search(h, &v->elems[i].str, HASH_ENTER, NULL);
		s->key = v->elems[i].str;
		*(RedisValue **) (s + 1) = &v->elems[i + 1];
	}
	for (int i = 0; i < img->nfields && same; i++)
	{
		KeySlot    *s = hash_search(h, &img->fields[i], HASH_FIND, NULL);

		same = field_matches(s ? *(RedisValue **) (s + 1) : NULL, img->values[i]);
	}
	hash_destroy(h);
	return same;
}

static bool
image_empty(RowImage *img)
{
	if (img->op == RS_OP_HASH)
	{
		for (int i = 0; i < img->nfields; i++)
			if (img->values[i])
				return false;
		return true;
	}
	return img->op == RS_OP_STRING && img->str == NULL;
}

static Datum
display_image(RowImage *img)
{
	bool		parsed;

	if (img->op == RS_OP_HASH)
		return display_hash(img->nfields, img->fields, img->values);
	return display_string(img->str ? img->str : "", &parsed);
}

/* where verify_rows reports and what it compares against */
typedef struct VerifyScan
{
	ReturnSetInfo *rsinfo;
	SyncConfig *cfg;
	char		fmt;
	bool		is_wb;
	HTAB	   *pending;		/* keys the caller says are pending */
	char	   *dirty;			/* write-behind: the dirty set, or NULL */
	char	   *processing;		/* and its processing set */
	Tuplesortstate *rowkeys;	/* every row's key; NULL: extra keys are not
								 * checked */
	MemoryContext outer;
} VerifyScan;

/*
 * Which of keys (those with want[i]) are pending: named by the caller, or
 * members of the write-behind table's dirty or processing set, whose values
 * the drain has not written to the table yet.  Redis is asked about the
 * keys that differ only, two SISMEMBER a key in one round trip: reading the
 * sets whole (SMEMBERS) blocked Redis and held every member in the backend,
 * however many (500,000: 0.5 s, 61 MB).
 */
static bool *
pending_keys(VerifyScan *vs, char **keys, const bool *want, int n)
{
	bool	   *out = palloc0(sizeof(bool) * Max(n, 1));
	size_t		plen = strlen(vs->cfg->prefix);
	RedisPipeline *p;
	int			j = 0;

	for (int i = 0; i < n; i++)
		if (want[i] && hash_search(vs->pending, &keys[i], HASH_FIND, NULL))
			out[i] = true;
	if (vs->dirty == NULL)
		return out;
	p = redis_pipeline_create();
	for (int i = 0; i < n; i++)
	{
		if (!want[i] || out[i] || strncmp(keys[i], vs->cfg->prefix, plen) != 0)
			continue;
		{
			const char *argv[3] = {"SISMEMBER", vs->dirty, keys[i] + plen};

			redis_pipeline_append(p, 3, argv, NULL);
			argv[1] = vs->processing;
			redis_pipeline_append(p, 3, argv, NULL);
		}
	}
	if (redis_pipeline_length(p) > 0)
		redis_pipeline_exec(p);
	for (int i = 0; i < n; i++)
	{
		if (!want[i] || out[i] || strncmp(keys[i], vs->cfg->prefix, plen) != 0)
			continue;
		for (int t = 0; t < 2; t++)
		{
			RedisValue *v;

			redis_check_reply(p, j, "SISMEMBER of the dirty set");
			v = redis_pipeline_reply(p, j++);
			if (v->type == RV_INTEGER && v->integer == 1)
				out[i] = true;
		}
	}
	redis_pipeline_free(p);
	return out;
}

/* compare one batch of rows with Redis */
static void
verify_batch(VerifyScan *vs, char **keys, RowImage *imgs, int n)
{
	ReturnSetInfo *rsinfo = vs->rsinfo;
	char		fmt = vs->fmt;
	bool		is_wb = vs->is_wb;
	RedisPipeline *p = read_values(keys, n, fmt == 'h');
	bool	   *differ = palloc0(sizeof(bool) * Max(n, 1));
	bool	   *pending;

	for (int i = 0; i < n; i++)
	{
		RedisValue *v = redis_pipeline_reply(p, i);
		RowImage   *img = &imgs[i];
		bool		missing = reply_missing(v);
		bool		same;

		if (missing)
			continue;
		if (v->type == RV_ERROR)
			same = false;
		else if (fmt == 'h')
			same = v->type == RV_ARRAY && hash_matches(img, v);
		else if (v->type != RV_STRING || img->str == NULL)
			same = false;
		else if (fmt == 'j' && is_wb)
		{
			/* the application wrote this JSON: compare meaning, not spelling */
			bool		p1,
						p2;
			Datum		a = display_string(img->str, &p1);
			Datum		b = display_string(v->str, &p2);

			same = p1 && p2 && DatumGetBool(DirectFunctionCall2(jsonb_eq, a, b));
		}
		else
			same = strcmp(v->str, img->str) == 0;
		differ[i] = !same;
	}
	pending = pending_keys(vs, keys, differ, n);
	for (int i = 0; i < n; i++)
	{
		RedisValue *v = redis_pipeline_reply(p, i);
		RowImage   *img = &imgs[i];

		if (v->type == RV_NIL || (v->type == RV_ARRAY && v->nelem == 0))
		{
			/* a row without a synced value has no key: consistent */
			if (is_wb || image_empty(img))
				continue;
			put_result(rsinfo, keys[i], "missing in cache", display_image(img), false, (Datum) 0, true);
			continue;
		}
		if (!differ[i])
			continue;
		put_result(rsinfo, keys[i], pending[i] ? "pending" : "different value",
				   display_image(img), false, display_reply(v), false);
	}
	redis_pipeline_free(p);
}

/*
 * _verify_table(tbl regclass, policy text, sample int, pending text[],
 * check_extra boolean) RETURNS TABLE(key, problem, table_value, cache_value):
 * every row (or a random sample) encoded exactly as it is pushed, compared
 * with Redis byte for byte; then (check_extra, no sample) the keys under
 * the prefix that no row has.
 */
/* the keys verify() knows are pending (not reported as differences) */
static HTAB *
pending_key_set(char **pend, int npend)
{
	HTAB	   *pending = rs_string_hash_create("redis_sync pending keys", npend, sizeof(KeySlot));

	for (int i = 0; i < npend; i++)
	{
		KeySlot    *s;

		if (pend[i] == NULL)
			continue;
		s = hash_search(pending, &pend[i], HASH_ENTER, NULL);
		s->key = pend[i];
	}
	return pending;
}

/*
 * The configuration of one policy of the table, from redis_sync.tables
 * (SPI connected), allocated in outer: cfg, its format code ('h', 'j' or
 * 's') and its dirty set (NULL: none).
 */
static void
load_policy_config(Oid relid, const char *policy, MemoryContext outer, SyncConfig *cfg,
				   char *fmt, char **dirty)
{
	Oid			argtypes[2] = {OIDOID, TEXTOID};
	Datum		args[2];
	HeapTuple	tup;
	TupleDesc	td;
	bool		isnull;
	MemoryContext spi;
	char	   *f;
	Datum		d;

	memset(cfg, 0, sizeof(*cfg));
	*dirty = NULL;
	args[0] = ObjectIdGetDatum(relid);
	args[1] = CStringGetTextDatum(policy);
	if (SPI_execute_with_args("SELECT key_prefix, key_columns, columns, format, dirty_set "
							  "  FROM redis_sync.tables WHERE relid = $1 AND policy = $2",
							  2, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "redis_sync: could not read redis_sync.tables");
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not synced %s", get_rel_name(relid), policy)));
	tup = SPI_tuptable->vals[0];
	td = SPI_tuptable->tupdesc;
	spi = MemoryContextSwitchTo(outer);
	cfg->relid = cfg->root_relid = relid;
	cfg->synced = true;
	cfg->policy = RS_POLICY_WRITE_THROUGH;	/* encode the row, never a delete */
	cfg->prefix = TextDatumGetCString(SPI_getbinval(tup, td, 1, &isnull));
	cfg->keys = resolve(relid, DatumGetArrayTypePCopy(SPI_getbinval(tup, td, 2, &isnull)), &cfg->nkeys);
	cfg->cols = resolve(relid, DatumGetArrayTypePCopy(SPI_getbinval(tup, td, 3, &isnull)), &cfg->ncols);
	f = TextDatumGetCString(SPI_getbinval(tup, td, 4, &isnull));
	*fmt = f[0];
	cfg->format = *fmt == 'h' ? RS_FORMAT_HASH : RS_FORMAT_JSON;
	if (*fmt == 'j')
	{
		TupleDesc	jd = CreateTemplateTupleDesc(cfg->ncols);

		for (int i = 0; i < cfg->ncols; i++)
			TupleDescInitEntry(jd, (AttrNumber) (i + 1), cfg->cols[i].name,
							   cfg->cols[i].typid, -1, 0);
		cfg->json_desc = BlessTupleDesc(jd);
	}
	d = SPI_getbinval(tup, td, 5, &isnull);
	if (!isnull)
		*dirty = TextDatumGetCString(d);
	MemoryContextSwitchTo(spi);
}

/* encode one batch of rows (SPI result, column 1: the row) as pushed */
static void
encode_verify_batch(VerifyScan *vs, Relation rel, SPITupleTable *tt, uint64 n, char **keys,
					RowImage *imgs)
{
	TupleDesc	reldesc = RelationGetDescr(rel);
	SyncConfig *cfg = vs->cfg;

	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull);
		HeapTupleHeader hdr = DatumGetHeapTupleHeader(d);
		HeapTupleData tup;

		tup.t_len = HeapTupleHeaderGetDatumLength(hdr);
		ItemPointerSetInvalid(&tup.t_self);
		tup.t_tableOid = RelationGetRelid(rel);
		tup.t_data = hdr;
		keys[i] = rs_encode_key(cfg, reldesc, &tup, NULL);
		if (vs->fmt == 's')
		{
			/* write-behind string: the one column's text */
			Datum		c = heap_getattr(&tup, cfg->cols[0].attnum, reldesc, &isnull);

			imgs[i].op = RS_OP_STRING;
			imgs[i].str = isnull ? NULL : rs_canonical_output(&cfg->cols[0].out, c);
		}
		else
			rs_encode_row(cfg, reldesc, &tup, &imgs[i]);
		if (vs->rowkeys)
			tuplesort_putdatum(vs->rowkeys, CStringGetTextDatum(keys[i]), false);
	}
}

/* every row (or a random sample), 1000 at a time, compared with Redis */
static void
verify_rows(VerifyScan *vs, Relation rel, bool sampled, int sample)
{
	StringInfoData sql;
	Portal		portal;
	MemoryContext batch_cxt;
	char	   *alias = rs_row_alias(RelationGetRelid(rel));
	Oid			owner = rs_rel_owner(RelationGetRelid(rel));
	RsAsOwner	ao;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s FROM %s %s", alias,
					 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												RelationGetRelationName(rel)), alias);
	if (sampled)
		appendStringInfo(&sql, " ORDER BY random() LIMIT %d", sample);
	portal = SPI_cursor_open_with_args(NULL, sql.data, 0, NULL, NULL, NULL, true, 0);
	batch_cxt = AllocSetContextCreate(vs->outer, "redis_sync verify batch", ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		char	  **keys;
		RowImage   *imgs;
		uint64		n;
		SPITupleTable *tt;

		SPI_cursor_fetch(portal, true, 1000);
		n = SPI_processed;
		tt = SPI_tuptable;
		if (n == 0)
			break;
		MemoryContextSwitchTo(batch_cxt);
		keys = palloc(sizeof(char *) * n);
		imgs = palloc0(sizeof(RowImage) * n);

		/*
		 * the rows are read with the caller's rights (its row-level
		 * security); encoding them runs the table's code (output functions,
		 * casts to json of its types): as the owner, restricted, never as the
		 * caller (a superuser verifying another role's table)
		 */
		rs_as_owner_enter(&ao, owner);
		PG_TRY();
		{
			encode_verify_batch(vs, rel, tt, n, keys, imgs);
		}
		PG_FINALLY();
		{
			rs_as_owner_leave(&ao);
		}
		PG_END_TRY();
		verify_batch(vs, keys, imgs, n);
		MemoryContextSwitchTo(vs->outer);
		MemoryContextReset(batch_cxt);
		SPI_freetuptable(tt);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
}

/*
 * A sort of keys in byte order (the C collation), within work_mem, spilling
 * to temporary files beyond it: the keys of every row, and those SCAN found,
 * whatever their number (a hash of the rows' keys took about 100 bytes a
 * row, a gigabyte for ten million).
 */
static Tuplesortstate *
key_sort_begin(void)
{
	return tuplesort_begin_datum(TEXTOID, TextLessOperator, C_COLLATION_OID, false,
								 work_mem, NULL, TUPLESORT_NONE);
}

/* the order key_sort_begin sorts in: the bytes, then the length */
static int
key_cmp(text *a, text *b)
{
	int			la = VARSIZE_ANY_EXHDR(a);
	int			lb = VARSIZE_ANY_EXHDR(b);
	int			c = memcmp(VARDATA_ANY(a), VARDATA_ANY(b), Min(la, lb));

	return c != 0 ? c : (la > lb) - (la < lb);
}

typedef struct ExtraScan
{
	VerifyScan *vs;
	const char *dirty;			/* the table's dirty set, not a row key */
	Tuplesortstate *found;		/* the keys SCAN returned */
} ExtraScan;

/* report_extra_keys's SCAN page: sort its keys with the others */
static void
extra_keys_page(char **keys, int n, void *arg)
{
	ExtraScan  *es = arg;

	for (int i = 0; i < n; i++)
	{
		Datum		k;

		if (es->dirty != NULL && strcmp(keys[i], es->dirty) == 0)
			continue;

		/*
		 * the sort keeps a copy; this one is in the caller's context, which
		 * lasts the whole verify(): it would hold every key SCAN returns
		 */
		k = CStringGetTextDatum(keys[i]);
		tuplesort_putdatum(es->found, k, false);
		pfree(DatumGetPointer(k));
	}
}

/*
 * report keys no row has, with their values (one round trip); what it
 * allocates (the replies, their jsonb, about 4 kB a key) goes in cxt, which
 * the caller resets: in the context of the call it lasted until verify()
 * returned (200,000 extra keys: 763 MB)
 */
static void
report_extra_batch(VerifyScan *vs, char **extra, int nextra, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	RedisPipeline *p;
	bool	   *all = palloc(sizeof(bool) * nextra);
	bool	   *pending;

	memset(all, true, sizeof(bool) * nextra);
	pending = pending_keys(vs, extra, all, nextra);
	p = read_values(extra, nextra, vs->fmt == 'h');
	for (int i = 0; i < nextra; i++)
	{
		RedisValue *v = redis_pipeline_reply(p, i);
		char	   *k = extra[i];
		bool		gone = reply_missing(v);

		put_result(vs->rsinfo, k, pending[i] ? "pending" : "extra in cache",
				   (Datum) 0, true, gone ? (Datum) 0 : display_reply(v), gone);
	}
	redis_pipeline_free(p);
	MemoryContextSwitchTo(old);
}

/* keys reported per round trip */
#define EXTRA_BATCH 1000

/*
 * keys in Redis that no row has (companion keys never match the prefix):
 * the keys SCAN returns, a page at a time, and the rows' keys are sorted
 * (within work_mem each), then merged; the extra ones are reported in key
 * order, EXTRA_BATCH at a time
 */
static void
report_extra_keys(VerifyScan *vs, const char *dirty)
{
	ExtraScan	es;
	MemoryContext batch_cxt = AllocSetContextCreate(CurrentMemoryContext,
													"redis_sync verify extra keys",
													ALLOCSET_DEFAULT_SIZES);
	char	  **extra = palloc(sizeof(char *) * EXTRA_BATCH);
	int			nextra = 0;
	text	   *row = NULL;
	text	   *prev = NULL;
	bool		rows_left = true;
	Datum		d;
	bool		isnull;

	es.vs = vs;
	es.dirty = dirty;
	es.found = key_sort_begin();
	rs_scan_prefix_pages(vs->cfg->prefix, extra_keys_page, &es);
	tuplesort_performsort(es.found);
	tuplesort_performsort(vs->rowkeys);

	while (tuplesort_getdatum(es.found, true, &d, &isnull, NULL))
	{
		text	   *k = DatumGetTextPP(d);

		/* SCAN may return a key twice */
		if (prev != NULL && key_cmp(k, prev) == 0)
		{
			pfree(k);
			continue;
		}
		/* the rows' keys before this one have no key in Redis: verified */
		while (rows_left && (row == NULL || key_cmp(row, k) < 0))
		{
			if (row != NULL)
				pfree(row);
			row = NULL;
			if (tuplesort_getdatum(vs->rowkeys, true, &d, &isnull, NULL))
				row = DatumGetTextPP(d);
			else
				rows_left = false;
		}
		if (row == NULL || key_cmp(row, k) != 0)
		{
			MemoryContext old = MemoryContextSwitchTo(batch_cxt);

			extra[nextra++] = text_to_cstring(k);
			MemoryContextSwitchTo(old);
			if (nextra == EXTRA_BATCH)
			{
				report_extra_batch(vs, extra, nextra, batch_cxt);
				MemoryContextReset(batch_cxt);
				nextra = 0;
			}
		}
		if (prev != NULL)
			pfree(prev);
		prev = k;
		CHECK_FOR_INTERRUPTS();
	}
	if (nextra > 0)
		report_extra_batch(vs, extra, nextra, batch_cxt);
	tuplesort_end(es.found);
	MemoryContextDelete(batch_cxt);
}

/*
 * _verify_table(tbl regclass, policy text, sample int, pending text[],
 * check_extra boolean) RETURNS TABLE(key, problem, table_value, cache_value):
 * every row (or a random sample) encoded exactly as it is pushed, compared
 * with Redis byte for byte; then (check_extra, no sample) the keys under
 * the prefix that no row has.
 */
Datum
redis_sync_verify_table(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			relid;
	char	   *policy;
	bool		sampled = !PG_ARGISNULL(2);
	int			sample = sampled ? PG_GETARG_INT32(2) : 0;
	int			npend;
	char	  **pend;
	bool		check_extra;
	SyncConfig	cfg;
	char	   *dirty;
	Relation	rel;
	VerifyScan	vs;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(3) || PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table, policy, pending and check_extra must not be NULL")));
	relid = PG_GETARG_OID(0);
	policy = text_to_cstring(PG_GETARG_TEXT_PP(1));
	pend = rs_text_array(PG_GETARG_ARRAYTYPE_P(3), &npend);
	check_extra = PG_GETARG_BOOL(4);
	if (sampled && sample <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sample must be positive")));

	/*
	 * verify() runs with its caller's rights: only the table's owner compares
	 * it
	 */
	rs_require_owner(relid);

	InitMaterializedSRF(fcinfo, 0);
	memset(&vs, 0, sizeof(vs));
	vs.rsinfo = rsinfo;
	vs.cfg = &cfg;
	vs.is_wb = strcmp(policy, "write_behind") == 0;
	vs.outer = CurrentMemoryContext;
	vs.pending = pending_key_set(pend, npend);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	load_policy_config(relid, policy, vs.outer, &cfg, &vs.fmt, &dirty);
	if (vs.is_wb && dirty != NULL)
	{
		vs.dirty = dirty;
		vs.processing = MemoryContextStrdup(vs.outer,
											rs_companion_key(dirty, strlen(dirty), ":rs_processing"));
	}

	rel = relation_open(relid, AccessShareLock);

	/*
	 * Row-level security that applies to the caller (FORCE ROW LEVEL SECURITY
	 * for the owner) hides rows: their keys would look extra, and resync()
	 * would delete them.  Extra keys are then not checked.
	 */
	if (check_extra && !sampled && check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED)
	{
		ereport(WARNING,
				(errmsg("row-level security hides rows of table \"%s\" from role \"%s\": keys without a visible row are not checked",
						RelationGetRelationName(rel), GetUserNameFromId(GetUserId(), false)),
				 errdetail("They could belong to rows this role cannot see; verify() does not report them as extra and resync() does not delete them."),
				 errhint("Run verify() or resync() as a role that bypasses row-level security (a superuser, or a role with BYPASSRLS) to check them.")));
		check_extra = false;
	}
	if (check_extra && !sampled)
	{
		MemoryContext spi = MemoryContextSwitchTo(vs.outer);

		vs.rowkeys = key_sort_begin();
		MemoryContextSwitchTo(spi);
	}
	verify_rows(&vs, rel, sampled, sample);
	SPI_finish();
	relation_close(rel, AccessShareLock);

	if (vs.rowkeys)
	{
		report_extra_keys(&vs, dirty);
		tuplesort_end(vs.rowkeys);
	}
	return (Datum) 0;
}
