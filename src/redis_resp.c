/*-------------------------------------------------------------------------
 *
 * redis_resp.c
 *		RESP, the Redis protocol, as this client speaks it: commands written
 *		as arrays of bulk strings (redis_resp_*(), used for every command
 *		of every pipeline) and replies parsed by hiredis's reader copied
 *		into RedisValues in the caller's memory context.
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

void
redis_conn_copy_reply(redisReply *r, RedisValue *out)
{
	memset(out, 0, sizeof(*out));
	switch (r->type)
	{
		case REDIS_REPLY_STRING:
		case REDIS_REPLY_STATUS:
		case REDIS_REPLY_ERROR:
			out->type = r->type == REDIS_REPLY_STRING ? RV_STRING :
				r->type == REDIS_REPLY_STATUS ? RV_STATUS : RV_ERROR;
			out->len = r->len;
			out->str = palloc(r->len + 1);
			memcpy(out->str, r->str, r->len);
			out->str[r->len] = '\0';
			break;
		case REDIS_REPLY_INTEGER:
			out->type = RV_INTEGER;
			out->integer = r->integer;
			break;
		case REDIS_REPLY_ARRAY:
			out->type = RV_ARRAY;
			out->nelem = (int) r->elements;
			out->elems = r->elements ? palloc(sizeof(RedisValue) * r->elements) : NULL;
			for (size_t i = 0; i < r->elements; i++)
				redis_conn_copy_reply(r->element[i], &out->elems[i]);
			break;
		default:
			out->type = RV_NIL;
			break;
	}
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
