/*-------------------------------------------------------------------------
 *
 * command.c
 *		SQL-callable windows into Redis: redis_sync.command() runs one
 *		command and returns its reply as jsonb; redis_sync.parse_url()
 *		shows how a URL would be understood, without connecting.
 *
 * command() is for administrators and tests: the install script revokes
 * EXECUTE from PUBLIC.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "redis_client.h"
#include "redis_url.h"

PG_FUNCTION_INFO_V1(redis_sync_command);
PG_FUNCTION_INFO_V1(redis_sync_parse_url);

static void
reply_to_json(StringInfo out, RedisValue *v)
{
	switch (v->type)
	{
		case RV_STRING:
		case RV_STATUS:
		case RV_ERROR:
			if (!pg_verifymbstr(v->str, (int) v->len, true) || memchr(v->str, '\0', v->len))
				ereport(ERROR,
						(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
						 errmsg("Redis reply is not valid text in the database encoding"),
						 errhint("Binary values cannot be returned as jsonb.")));
			escape_json(out, v->str);
			break;
		case RV_INTEGER:
			appendStringInfo(out, INT64_FORMAT, v->integer);
			break;
		case RV_NIL:
			appendStringInfoString(out, "null");
			break;
		case RV_ARRAY:
			appendStringInfoChar(out, '[');
			for (int i = 0; i < v->nelem; i++)
			{
				if (i > 0)
					appendStringInfoString(out, ", ");
				reply_to_json(out, &v->elems[i]);
			}
			appendStringInfoChar(out, ']');
			break;
	}
}

/*
 * redis_sync.command(VARIADIC args text[]) RETURNS jsonb
 */
Datum
redis_sync_command(PG_FUNCTION_ARGS)
{
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	const char **argv;
	size_t	   *argvlen;
	RedisPipeline *p;
	RedisValue *v;
	StringInfoData out;
	Datum		result;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("Redis command must not be NULL")));
	arr = PG_GETARG_ARRAYTYPE_P(0);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("Redis command must be a one-dimensional array")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("Redis command is empty"),
				 errhint("Pass the command name and its arguments, as in redis_sync.command('GET', 'key').")));

	argv = palloc(sizeof(char *) * n);
	argvlen = palloc(sizeof(size_t) * n);
	for (int i = 0; i < n; i++)
	{
		text	   *t;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument %d of the Redis command is NULL", i + 1)));
		t = DatumGetTextPP(elems[i]);
		argv[i] = VARDATA_ANY(t);
		argvlen[i] = VARSIZE_ANY_EXHDR(t);
	}

	p = redis_pipeline_create();
	redis_pipeline_bypass_circuit(p);
	redis_pipeline_append(p, n, argv, argvlen);
	redis_pipeline_exec(p);
	v = redis_pipeline_reply(p, 0);
	if (v->type == RV_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("Redis returned an error for %s",
						pnstrdup(argv[0], Min(argvlen[0], 64))),
				 errdetail("%s", v->str)));

	initStringInfo(&out);
	reply_to_json(&out, v);
	result = DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data));
	redis_pipeline_free(p);
	PG_RETURN_DATUM(result);
}

/*
 * redis_sync.parse_url(url text,
 *     OUT host text, OUT port int, OUT socket text, OUT db int,
 *     OUT username text, OUT has_password bool[, OUT tls bool])
 */
Datum
redis_sync_parse_url(PG_FUNCTION_ARGS)
{
	char	   *url = text_to_cstring(PG_GETARG_TEXT_PP(0));
	RedisEndpoint ep;
	TupleDesc	tupdesc;
	Datum		values[7];
	bool		nulls[7] = {0};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	redis_parse_url_or_error(url, &ep);

	if (ep.host)
	{
		values[0] = CStringGetTextDatum(ep.host);
		values[1] = Int32GetDatum(ep.port);
		nulls[2] = true;
	}
	else
	{
		nulls[0] = nulls[1] = true;
		values[2] = CStringGetTextDatum(ep.socket_path);
	}
	values[3] = Int32GetDatum(ep.db);
	if (ep.user)
		values[4] = CStringGetTextDatum(ep.user);
	else
		nulls[4] = true;
	values[5] = BoolGetDatum(ep.password != NULL);
	/* 0.1's definition has no tls column; 0.2's has */
	values[6] = BoolGetDatum(ep.tls);
	Assert(tupdesc->natts == 6 || tupdesc->natts == 7);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
