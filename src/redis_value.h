/*-------------------------------------------------------------------------
 *
 * redis_value.h
 *		What an exchange with Redis gives back: reply values (RedisValue)
 *		and failures below the protocol (RedisFailure).  Shared by the
 *		connection (redis_conn.c), the client (redis_client.c) and the
 *		cluster map (cluster.c), so none of the lower two depends on the
 *		client's header.
 *
 *-------------------------------------------------------------------------
 */
#ifndef REDIS_VALUE_H
#define REDIS_VALUE_H

#include "postgres.h"

typedef enum RedisValueType
{
	RV_STRING,					/* bulk string */
	RV_STATUS,					/* simple string, e.g. OK */
	RV_ERROR,					/* error reply; str holds Redis's text */
	RV_INTEGER,
	RV_NIL,
	RV_ARRAY
} RedisValueType;

typedef struct RedisValue
{
	RedisValueType type;
	int64		integer;		/* RV_INTEGER */
	char	   *str;			/* RV_STRING/STATUS/ERROR, NUL-terminated */
	size_t		len;
	int			nelem;			/* RV_ARRAY */
	struct RedisValue *elems;
} RedisValue;

/*
 * A failure below the Redis protocol: could not connect, timed out, the
 * connection broke.  Redis error replies are not failures; they come back as
 * RV_ERROR values.
 */
typedef struct RedisFailure
{
	int			sqlstate;
	char	   *message;
	char	   *detail;
} RedisFailure;

/* fill *f (message and detail copied); returns false, for "return ..." */
static inline bool
redis_failure_set(RedisFailure *f, int sqlstate, const char *msg, const char *detail)
{
	f->sqlstate = sqlstate;
	f->message = pstrdup(msg);
	f->detail = detail ? pstrdup(detail) : NULL;
	return false;
}

/*
 * Copy f's message and detail into cxt: a failure built in memory that ends
 * first (a pipeline's, a page's, SPI's) for a caller that keeps it.
 */
static inline void
redis_failure_copy(RedisFailure *f, MemoryContext cxt)
{
	f->message = MemoryContextStrdup(cxt, f->message ? f->message : "unknown failure");
	f->detail = f->detail ? MemoryContextStrdup(cxt, f->detail) : NULL;
}

#endif							/* REDIS_VALUE_H */
