/*-------------------------------------------------------------------------
 *
 * redis_conn_int.h
 *		Inside a Redis connection: what redis_conn.c (one connection) and
 *		redis_conn_many.c (several at once) share.  Other modules use
 *		redis_conn.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef REDIS_CONN_INT_H
#define REDIS_CONN_INT_H

#include "postgres.h"

#include <hiredis/hiredis.h>

#include "datatype/timestamp.h"
#include "storage/latch.h"

#include "redis_conn.h"
#include "redis_tls.h"

struct RedisConn
{
	RedisConnParams params;		/* deep copy, TopMemoryContext */
	char	   *display;
	redisContext *ctx;			/* NULL when disconnected */
	WaitEventSet *wes;
	int			sock_pos;
	RedisTls   *tls;			/* TLS session (rediss://), or NULL */
	bool		busy;			/* an exchange or the connect is in flight */
	TimestampTz last_done;		/* when the last exchange completed */
	int64		client_id;		/* CLIENT INFO at the handshake, 0: unknown */
	char	   *client_addr;	/* its addr= (TopMemoryContext), or NULL */
	uint32		newest_tli;		/* killfence.c's timeline key then, 0: none */
	char		run_id[41];		/* INFO server's run_id, "" when not known */
	bool		kill_allowed;	/* CLIENT KILL and CLIENT LIST answered (not
								 * refused by an ACL) at the handshake */
	struct RedisConn *next;		/* all connections, for the abort callback */
};

extern TimestampTz redis_conn_deadline_after(int ms);
extern void redis_conn_value_replies(redisContext *ctx);

#endif							/* REDIS_CONN_INT_H */
