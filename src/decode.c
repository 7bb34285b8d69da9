/*-------------------------------------------------------------------------
 *
 * decode.c
 *		How a cached value becomes a row again (get(), verify, the
 *		write-behind drain): an HGETALL reply or a JSON string decoded into
 *		the table's row type by the columns' input functions under the
 *		canonical settings (canonical.c), the inverse of encode.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xlog.h"
#include "common/hashfn.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/jsonfuncs.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "encode.h"
#include "redis_client.h"

/* ----------------------------------------------------------------
 * Decoding a cached value (get())
 * ---------------------------------------------------------------- */

/* one top-level field of a cached JSON object: RsJsonField (encode.h) */
typedef RsJsonField TopField;

typedef struct TopFieldState
{
	JsonLexContext *lex;
	List	   *fields;
	TopField   *cur;
	bool		is_object;
} TopFieldState;

static void
top_object_start(void *state)
{
	TopFieldState *s = state;

	if (s->lex->lex_level == 0)
		s->is_object = true;
}

static void
top_field_start(void *state, char *fname, bool isnull)
{
	TopFieldState *s = state;

	if (s->lex->lex_level != 1)
		return;
	s->cur = palloc0(sizeof(TopField));
	s->cur->name = fname;
	s->cur->start = s->lex->token_start;
	s->cur->type = s->lex->token_type;
}

static void
top_scalar(void *state, char *token, JsonTokenType tokentype)
{
	TopFieldState *s = state;

	if (s->lex->lex_level == 1 && s->cur)
		s->cur->scalar = token;
}

static void
top_field_end(void *state, char *fname, bool isnull)
{
	TopFieldState *s = state;

	if (s->lex->lex_level != 1 || s->cur == NULL)
		return;
	s->cur->len = s->lex->prev_token_terminator - s->cur->start;
	s->fields = lappend(s->fields, s->cur);
	s->cur = NULL;
}

/*
 * The top-level fields of a JSON text, in order, each with its raw text
 * (numbers exactly as written, objects and arrays verbatim) and, for
 * scalars, the de-escaped value.  Raises the JSON parser's error on invalid
 * JSON; *is_object is false when the text is not an object.
 */
List *
rs_json_top_fields(char *str, int len, bool *is_object)
{
	TopFieldState st;
	JsonSemAction sem;
	JsonLexContext *lex = makeJsonLexContextCstringLen(str, len, GetDatabaseEncoding(), true);

	memset(&st, 0, sizeof(st));
	memset(&sem, 0, sizeof(sem));
	st.lex = lex;
	sem.semstate = &st;
	sem.object_start = top_object_start;
	sem.object_field_start = top_field_start;
	sem.object_field_end = top_field_end;
	sem.scalar = top_scalar;
	pg_parse_json_or_ereport(lex, &sem);
	*is_object = st.is_object;
	return st.fields;
}

typedef struct FieldSlot
{
	char	   *name;
	int			idx;
} FieldSlot;

static Datum
input_value(Form_pg_attribute att, char *str)
{
	Oid			infn;
	Oid			ioparam;
	FmgrInfo	fi;

	getTypeInputInfo(att->atttypid, &infn, &ioparam);
	fmgr_info(infn, &fi);
	return InputFunctionCall(&fi, str, ioparam, att->atttypmod);
}

/* a hash reply's fields by name: idx is the value's element */
static void
index_hash_fields(HTAB *byname, RedisValue *v)
{
	for (int i = 0; i + 1 < v->nelem; i += 2)
	{
		FieldSlot  *slot = hash_search(byname, &v->elems[i].str, HASH_ENTER, NULL);

		slot->name = v->elems[i].str;
		slot->idx = i + 1;
	}
}

/* a JSON object's top-level fields by name: idx is the field's position */
static TopField **
index_json_fields(SyncConfig *cfg, HTAB *byname, RedisValue *v)
{
	bool		is_object;
	List	   *list = rs_json_top_fields(v->str, v->len, &is_object);
	TopField  **fields;
	ListCell   *lc;

	if (!is_object)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("cached value of table \"%s\" is not a JSON object", get_rel_name(cfg->relid))));
	fields = palloc(sizeof(TopField *) * Max(list_length(list), 1));
	foreach(lc, list)
	{
		TopField   *f = lfirst(lc);
		FieldSlot  *slot = hash_search(byname, &f->name, HASH_ENTER, NULL);

		fields[foreach_current_index(lc)] = f;
		slot->name = f->name;
		slot->idx = foreach_current_index(lc);	/* a repeated name: the last
												 * wins */
	}
	return fields;
}

/*
 * One column from its JSON field: json/jsonb verbatim, scalars by the input
 * function, composites and arrays appended to *structured (a JSON object
 * for json_populate_record) and their attribute index to *structured_cols.
 */
static void
decode_json_column(SyncColumn *col, Form_pg_attribute att, TopField *f, Datum *value,
				   bool *isnull, StringInfo structured, List **structured_cols)
{
	Oid			base = getBaseType(att->atttypid);

	if (base == JSONOID || base == JSONBOID)
	{
		/* the JSON itself, verbatim (JSON null included) */
		*value = input_value(att, pnstrdup(f->start, f->len));
		*isnull = false;
	}
	else if (f->type == JSON_TOKEN_NULL)
		return;
	else if (f->type == JSON_TOKEN_OBJECT_START || f->type == JSON_TOKEN_ARRAY_START)
	{
		/* composites and arrays: json_populate_record, below */
		appendStringInfoChar(structured, structured->len ? ',' : '{');
		escape_json(structured, col->name);
		appendStringInfoChar(structured, ':');
		appendBinaryStringInfo(structured, f->start, f->len);
		*structured_cols = lappend_int(*structured_cols, col->attnum - 1);
	}
	else
	{
		*value = input_value(att, f->scalar);
		*isnull = false;
	}
}

/*
 * The composite and array columns: json_populate_record(NULL::rowtype,
 * structured) decodes them exactly as the JSON functions do.
 */
static void
populate_structured(Oid rowtype, TupleDesc td, StringInfo structured, List *structured_cols,
					Datum *values, bool *nulls)
{
	FmgrInfo	fi;

	LOCAL_FCINFO(fcinfo, 3);
	Datum		rec;
	HeapTupleHeader hdr;
	HeapTupleData tup;
	ListCell   *lc;

	appendStringInfoChar(structured, '}');
	fmgr_info(F_JSON_POPULATE_RECORD, &fi);
	fi.fn_expr = (Node *) makeFuncExpr(F_JSON_POPULATE_RECORD, rowtype,
									   list_make3(makeNullConst(rowtype, -1, InvalidOid),
												  makeNullConst(JSONOID, -1, InvalidOid),
												  makeBoolConst(false, false)),
									   InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	InitFunctionCallInfoData(*fcinfo, &fi, 3, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = (Datum) 0;
	fcinfo->args[0].isnull = true;
	fcinfo->args[1].value = CStringGetTextDatum(structured->data);
	fcinfo->args[1].isnull = false;
	fcinfo->args[2].value = BoolGetDatum(false);
	fcinfo->args[2].isnull = false;
	rec = FunctionCallInvoke(fcinfo);
	if (fcinfo->isnull)
		elog(ERROR, "redis_sync: json_populate_record returned NULL");
	hdr = DatumGetHeapTupleHeader(rec);
	tup.t_len = HeapTupleHeaderGetDatumLength(hdr);
	ItemPointerSetInvalid(&tup.t_self);
	tup.t_tableOid = InvalidOid;
	tup.t_data = hdr;
	foreach(lc, structured_cols)
	{
		int			a = lfirst_int(lc);

		values[a] = heap_getattr(&tup, a + 1, td, &nulls[a]);
	}
}

static Datum
decode_row(SyncConfig *cfg, Oid rowtype, RedisValue *v)
{
	TupleDesc	td = lookup_rowtype_tupdesc_copy(rowtype, -1);
	Datum	   *values = palloc0(sizeof(Datum) * td->natts);
	bool	   *nulls = palloc(sizeof(bool) * td->natts);
	HTAB	   *byname = rs_string_hash_create("redis_sync cached fields", cfg->ncols, sizeof(FieldSlot));
	TopField  **fields = NULL;
	StringInfoData structured;
	List	   *structured_cols = NIL;

	memset(nulls, true, sizeof(bool) * td->natts);
	if (v->type == RV_ARRAY)
		index_hash_fields(byname, v);
	else
		fields = index_json_fields(cfg, byname, v);

	initStringInfo(&structured);
	for (int c = 0; c < cfg->ncols; c++)
	{
		SyncColumn *col = &cfg->cols[c];
		Form_pg_attribute att = TupleDescAttr(td, col->attnum - 1);
		FieldSlot  *slot = hash_search(byname, &col->name, HASH_FIND, NULL);
		int			a = col->attnum - 1;

		if (slot == NULL || att->attisdropped)
			continue;			/* absent: NULL */
		if (v->type == RV_ARRAY)
		{
			values[a] = input_value(att, v->elems[slot->idx].str);
			nulls[a] = false;
		}
		else
			decode_json_column(col, att, fields[slot->idx], &values[a], &nulls[a],
							   &structured, &structured_cols);
	}
	if (structured_cols != NIL)
		populate_structured(rowtype, td, &structured, structured_cols, values, nulls);
	return heap_copy_tuple_as_datum(heap_form_tuple(td, values, nulls), td);
}

Datum
rs_decode_row(SyncConfig *cfg, Oid rowtype, RedisValue *v)
{
	RsCanonicalSave save;
	Datum		result;

	rs_canonical_enter(&save);

	/*
	 * Input only: the pg_catalog-only path pinned for the output of reg*
	 * values is not needed (the caller's path is the owner's "pg_catalog,
	 * pg_temp": a canonical name reads back to the same object), and would
	 * override the SET search_path of a domain's CHECK function.
	 */
	rs_canonical_path_pop(&save);
	PG_TRY();
	{
		result = decode_row(cfg, rowtype, v);
	}
	PG_FINALLY();
	{
		rs_canonical_path_push(&save);
		rs_canonical_exit(&save);
	}
	PG_END_TRY();
	return result;
}
