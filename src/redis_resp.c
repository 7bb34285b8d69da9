/*-------------------------------------------------------------------------
 *
 * redis_resp.c
 *		RESP, the Redis protocol, as this client speaks it: commands written
 *		as arrays of bulk strings (redis_resp_*(), used for every command
 *		of every pipeline) and replies parsed by hiredis's reader into
 *		RedisValues in the caller's memory context.
 *
 * The writer runs per argument of every command, so it writes in place
 * without vsnprintf (issue 18).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"

#include "redis_conn_int.h"

/* ----------------------------------------------------------------
 * Replies
 * ---------------------------------------------------------------- */

/*
 * hiredis's reader builds RedisValues itself, in the memory context current
 * while it parses (the exchange's: the pipeline's memory), instead of
 * malloc'd redisReply trees that were copied and freed reply by reply
 * (about 8% of the write-behind drain's instructions, issue 18: each
 * claimed member's HGETALL is a reply).  An element goes straight into its
 * array; a reply is then copied by value (RedisValue) to its place.  A
 * reply is never freed on its own: its memory context is.  A reply still
 * incomplete when an exchange fails is left to the reader, whose connection
 * is dropped (freeObject does nothing).
 */
static RedisValue *
reply_value(const redisReadTask *task)
{
	RedisValue *v;

	if (task->parent != NULL)
		v = &((RedisValue *) task->parent->obj)->elems[task->idx];
	else
		v = palloc(sizeof(RedisValue));
	memset(v, 0, sizeof(*v));
	return v;
}

/* shared texts of the commonest status replies (see reply_string) */
static char status_queued[] = "QUEUED";
static char status_ok[] = "OK";

static void *
reply_string(const redisReadTask *task, char *str, size_t len)
{
	RedisValue *v = reply_value(task);

	v->type = task->type == REDIS_REPLY_ERROR ? RV_ERROR :
		task->type == REDIS_REPLY_STATUS ? RV_STATUS : RV_STRING;
	v->len = len;

	/*
	 * The status of every command queued in a MULTI, and of most writes, is
	 * shared, not copied (a bulk push gets one per row, issue 18). Replies
	 * are never written to.
	 */
	if (v->type == RV_STATUS && len == 6 && memcmp(str, "QUEUED", 6) == 0)
		v->str = status_queued;
	else if (v->type == RV_STATUS && len == 2 && memcmp(str, "OK", 2) == 0)
		v->str = status_ok;
	else
	{
		v->str = palloc(len + 1);
		memcpy(v->str, str, len);
		v->str[len] = '\0';
	}
	return v;
}

#if HIREDIS_MAJOR >= 1
static void *
reply_array(const redisReadTask *task, size_t n)
#else
static void *
reply_array(const redisReadTask *task, int n)
#endif
{
	RedisValue *v = reply_value(task);

	v->type = RV_ARRAY;
	v->nelem = (int) n;
	v->elems = n > 0 ? palloc(sizeof(RedisValue) * n) : NULL;
	return v;
}

static void *
reply_integer(const redisReadTask *task, long long value)
{
	RedisValue *v = reply_value(task);

	v->type = RV_INTEGER;
	v->integer = value;
	return v;
}

static void *
reply_nil(const redisReadTask *task)
{
	RedisValue *v = reply_value(task);

	v->type = RV_NIL;
	return v;
}

#if HIREDIS_MAJOR >= 1
/* RESP3 only (never asked for): as the text of the double, and 0 or 1 */
static void *
reply_double(const redisReadTask *task, double value, char *str, size_t len)
{
	return reply_string(task, str, len);
}

static void *
reply_bool(const redisReadTask *task, int value)
{
	return reply_integer(task, value != 0);
}
#endif

static void
reply_free(void *reply)
{
}

static redisReplyObjectFunctions reply_functions = {
	.createString = reply_string,
	.createArray = reply_array,
	.createInteger = reply_integer,
#if HIREDIS_MAJOR >= 1
	.createDouble = reply_double,
	.createBool = reply_bool,
#endif
	.createNil = reply_nil,
	.freeObject = reply_free,
};

/* make the context's reader build RedisValues (see above) */
void
redis_conn_value_replies(redisContext *ctx)
{
	ctx->reader->fn = &reply_functions;
}

/* ----------------------------------------------------------------
 * RESP encoding
 * ---------------------------------------------------------------- */

/*
 * RESP: the header of an array ('*') or bulk string ('$') of n, without
 * going through vsnprintf: this runs per argument
 */
void
redis_resp_append_header(StringInfo buf, char c, uint64 n)
{
	char		tmp[24];
	int			len;

	tmp[0] = c;
	len = pg_ulltoa_n(n, tmp + 1) + 1;
	tmp[len++] = '\r';
	tmp[len++] = '\n';
	appendBinaryStringInfo(buf, tmp, len);
}

/*
 * RESP: one bulk string, written in place after one enlargeStringInfo (this
 * runs per argument of every command: three appends cost a push ~300
 * instructions per argument, issue 18)
 */
void
redis_resp_append_bulk(StringInfo buf, const char *s, size_t len)
{
	char	   *p;

	/* '$', at most 20 digits, CRLF, the bytes, CRLF */
	enlargeStringInfo(buf, (int) len + 25);
	p = buf->data + buf->len;
	*p++ = '$';
	p += pg_ulltoa_n(len, p);
	*p++ = '\r';
	*p++ = '\n';
	memcpy(p, s, len);
	p += len;
	*p++ = '\r';
	*p++ = '\n';
	*p = '\0';
	buf->len = p - buf->data;
}

/* RESP: one command, an array of bulk strings; argvlen may be NULL */
void
redis_resp_encode_command(StringInfo buf, int argc, const char **argv,
						  const size_t *argvlen)
{
	redis_resp_append_header(buf, '*', argc);
	for (int i = 0; i < argc; i++)
		redis_resp_append_bulk(buf, argv[i], argvlen ? argvlen[i] : strlen(argv[i]));
}
