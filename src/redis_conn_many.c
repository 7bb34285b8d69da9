/*-------------------------------------------------------------------------
 *
 * redis_conn_many.c
 *		Exchanges with several connections at once (one per Redis Cluster
 *		node): every buffer is sent and every reply read in one wait loop,
 *		so a pipeline split across nodes costs one round trip of wall time.
 *
 * The waits are those of one connection (redis_conn.c): a WaitEventSet over
 * the sockets in flight, the latch and postmaster death, bounded by
 * redis_sync.command_timeout without progress.  TLS connections, and a
 * single exchange, go one at a time through redis_conn_exchange().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pgstat.h"
#include "utils/timestamp.h"

#include "redis_conn_int.h"
#include "redis_sync.h"
#include "shmem.h"

/* one exchange fails: drop its connection */
static void
many_fail(RedisExchange *x, int sqlstate, char *msg, const char *detail)
{
	x->active = false;
	x->ok = false;
	redis_failure_set(&x->f, sqlstate, msg, detail);	/* copies detail first */
	redis_conn_disconnect(x->conn);
}

/* parse what was read, send what the socket takes; true when bytes moved */
static bool
many_step(RedisExchange *x)
{
	RedisConn  *c = x->conn;
	bool		progress = false;

	while (x->got < x->n)
	{
		void	   *r = NULL;

		if (redisGetReplyFromReader(c->ctx, &r) != REDIS_OK)
		{
			many_fail(x, ERRCODE_PROTOCOL_VIOLATION,
					  psprintf("invalid reply from Redis at %s", c->display), c->ctx->errstr);
			return true;
		}
		if (r == NULL)
			break;
		x->out[x->got++] = *(RedisValue *) r;
		progress = true;
	}
	if (x->got == x->n)
	{
		x->active = false;
		x->ok = true;
		c->busy = false;
		return true;
	}
	if (x->written < x->len)
	{
		ssize_t		k = send(c->ctx->fd, x->buf + x->written, x->len - x->written, MSG_NOSIGNAL);

		if (k > 0)
		{
			x->written += k;
			progress = true;
		}
		else if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		{
			many_fail(x, ERRCODE_CONNECTION_FAILURE,
					  psprintf("lost connection to Redis at %s", c->display), strerror(errno));
			return true;
		}
	}
	return progress;
}

/*
 * Reset each exchange for a new round; true when they must go one at a
 * time (a single one, or TLS, whose I/O is redis_conn_exchange's).
 */
static bool
many_begin(RedisExchange *x, int k)
{
	bool		sequential = (k == 1);

	for (int i = 0; i < k; i++)
	{
		Assert(x[i].conn->ctx != NULL);
		if (x[i].conn->params.tls)
			sequential = true;
		x[i].ok = false;
		x[i].written = 0;
		x[i].got = 0;
		x[i].active = x[i].n > 0;
		if (!x[i].active)
			x[i].ok = true;
	}
	return sequential;
}

/* one round trip each (TLS: its I/O is redis_conn_exchange's) */
static void
many_sequential(RedisExchange *x, int k)
{
	for (int i = 0; i < k; i++)
		if (x[i].active)
		{
			x[i].ok = redis_conn_exchange(x[i].conn, x[i].buf, x[i].len, x[i].n, x[i].out, &x[i].f);
			x[i].active = false;
		}
}

/* step every exchange in flight; true when bytes moved, *any: some still are */
static bool
many_step_all(RedisExchange *x, int k, bool *any)
{
	bool		progress = false;

	*any = false;
	for (int i = 0; i < k; i++)
		if (x[i].active)
		{
			if (many_step(&x[i]))
				progress = true;
			if (x[i].active)
				*any = true;
		}
	return progress;
}

/* nothing moved for command_timeout: every exchange in flight fails */
static void
many_time_out(RedisExchange *x, int k)
{
	for (int i = 0; i < k; i++)
		if (x[i].active)
			many_fail(&x[i], ERRCODE_CONNECTION_FAILURE,
					  psprintf("Redis at %s did not answer within %d ms",
							   x[i].conn->display, rs_command_timeout_ms),
					  "The connection was closed; the outcome of the commands sent is unknown.");
}

/*
 * Wait up to ms for the sockets of the exchanges in flight (or the latch:
 * interrupts), and read what arrived.  *wes is remade each time; the
 * caller frees the last one.
 */
static bool many_latch_seen = false;	/* set again after the exchange */

static void
many_wait(RedisExchange *x, int k, WaitEventSet *volatile *wes, long ms)
{
	WaitEvent	ev[8];
	int			nev;

	if (*wes)
		FreeWaitEventSet(*wes);
	*wes = CreateWaitEventSet(CurrentMemoryContext, k + 2);
	AddWaitEventToSet(*wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(*wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (int i = 0; i < k; i++)
		if (x[i].active)
			AddWaitEventToSet(*wes, WL_SOCKET_READABLE |
							  (x[i].written < x[i].len ? WL_SOCKET_WRITEABLE : 0),
							  x[i].conn->ctx->fd, NULL, &x[i]);
	nev = WaitEventSetWait(*wes, ms, ev, lengthof(ev), PG_WAIT_EXTENSION);
	for (int e = 0; e < nev; e++)
	{
		RedisExchange *xe = ev[e].user_data;

		if (ev[e].events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			many_latch_seen = true;
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		if (xe && xe->active && (ev[e].events & WL_SOCKET_READABLE))
		{
			RedisConn  *c = xe->conn;

			if (redisBufferRead(c->ctx) != REDIS_OK)
				many_fail(xe, ERRCODE_CONNECTION_FAILURE,
						  psprintf("lost connection to Redis at %s", c->display),
						  c->ctx->err == REDIS_ERR_EOF ?
						  "The server closed the connection." : c->ctx->errstr);
		}
	}
}

void
redis_conn_exchange_many(RedisExchange *x, int k)
{
	WaitEventSet *volatile wes = NULL;

	if (many_begin(x, k))
	{
		many_sequential(x, k);
		return;
	}

	for (int i = 0; i < k; i++)
		if (x[i].active)
			x[i].conn->busy = true;
	many_latch_seen = false;
	PG_TRY();
	{
		TimestampTz deadline = redis_conn_deadline_after(rs_command_timeout_ms);

		for (;;)
		{
			bool		any;
			bool		progress = many_step_all(x, k, &any);
			long		ms;

			if (!any)
				break;
			if (progress)
			{
				deadline = redis_conn_deadline_after(rs_command_timeout_ms);
				continue;		/* until nothing moves, then wait */
			}
			ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
			if (ms <= 0 && GetCurrentTimestamp() >= deadline)
			{
				many_time_out(x, k);
				break;
			}
			many_wait(x, k, &wes, ms);
		}
	}
	PG_FINALLY();
	{
		if (wes)
			FreeWaitEventSet(wes);
	}
	PG_END_TRY();
	/* a wake-up meant for the caller is not consumed here (see wait_socket) */
	if (many_latch_seen)
		SetLatch(MyLatch);
	redis_round_trips++;
	rs_stats_round_trip();
}
