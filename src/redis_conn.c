/*-------------------------------------------------------------------------
 *
 * redis_conn.c
 *		One connection to one Redis server (RedisConn): connecting, the
 *		AUTH/SELECT/CLIENT SETNAME handshake, the wire exchange with waits
 *		that never hang the backend, the idle-staleness check, disconnect.
 *
 * hiredis 0.14 is used in non-blocking mode for connecting and for parsing
 * replies (its redisReader); all waiting happens here, on a WaitEventSet per
 * connection holding the socket, the process latch and postmaster death, so
 * query cancel, statement_timeout and postmaster death interrupt a stuck
 * Redis (the approach of postgres_fdw's connection.c for libpq).
 * redis_sync.connect_timeout bounds connecting; redis_sync.command_timeout
 * bounds how long an exchange may wait without Redis making progress.
 *
 * An exchange sends one buffer and reads n replies, interleaving writes and
 * reads so a pipeline of many thousands of commands streams without filling
 * either socket buffer.
 *
 * TLS (rediss://, params.tls): after the TCP connect, redis_tls.c runs the
 * handshake step by step, each step naming the socket event it waits for
 * (OpenSSL's want-read / want-write), within the same connect deadline.
 * An exchange then writes through SSL_write and reads through SSL_read,
 * feeding the decrypted bytes to hiredis's reader; it reads on every round
 * (OpenSSL may hold decrypted bytes the socket no longer signals) and waits
 * only when neither direction made progress, on the events OpenSSL asked
 * for.  The AUTH/SELECT/CLIENT SETNAME handshake is bounded by
 * connect_timeout, so a plain-text client aimed at a TLS port fails within
 * it.
 *
 * Every RedisConn is on a list; at transaction abort a connection whose
 * exchange was interrupted ("busy") is dropped, as its protocol state is
 * unknown.  Replies are copied into palloc'd RedisValues, so an ERROR never
 * leaks hiredis objects.
 *
 * Exchanges with several connections at once (a Redis Cluster's nodes) are
 * in redis_conn_many.c; what the two files share is in redis_conn_int.h.
 * The parameters are made from the settings in redis_conn_params.c.
 *
 * The RESP writer and the copy of parsed replies are in redis_resp.c.
 * This file counts round trips (redis_round_trips, and the database's
 * counter in shared memory).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <poll.h>
#include <sched.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "killfence.h"
#include "redis_conn_int.h"
#include "redis_sync.h"
#include "shmem.h"

uint64		redis_round_trips = 0;	/* exchanges of this backend */

static RedisConn *all_conns = NULL;
static bool callbacks_registered = false;

static char *
dup_or_null(const char *s)
{
	return s ? MemoryContextStrdup(TopMemoryContext, s) : NULL;
}

static void
free_if(char *s)
{
	if (s)
		pfree(s);
}

static void
rs_conn_xact_callback(XactEvent event, void *arg)
{
	/* an ERROR or cancel mid-exchange leaves the protocol state unknown */
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		for (RedisConn *c = all_conns; c != NULL; c = c->next)
			if (c->busy)
				redis_conn_disconnect(c);
	}
}

RedisConn *
redis_conn_create(const RedisConnParams *p)
{
	RedisConn  *c = MemoryContextAllocZero(TopMemoryContext, sizeof(RedisConn));

	c->params.host = dup_or_null(p->host);
	c->params.port = p->port;
	c->params.socket_path = dup_or_null(p->socket_path);
	c->params.db = p->db;
	c->params.user = dup_or_null(p->user);
	c->params.password = dup_or_null(p->password);
	c->params.tls = p->tls;
	c->params.tls_ca_file = dup_or_null(p->tls_ca_file);
	c->params.tls_cert_file = dup_or_null(p->tls_cert_file);
	c->params.tls_key_file = dup_or_null(p->tls_key_file);
	c->params.tls_verify = p->tls_verify;
	c->params.tls_server_name = dup_or_null(p->tls_server_name);
	if (p->display)
		c->display = dup_or_null(p->display);
	else if (p->socket_path)
		c->display = MemoryContextStrdup(TopMemoryContext,
										 psprintf("unix:%s", p->socket_path));
	else if (p->host && strchr(p->host, ':'))
		c->display = MemoryContextStrdup(TopMemoryContext,
										 psprintf("[%s]:%d", p->host, p->port));
	else
		c->display = MemoryContextStrdup(TopMemoryContext,
										 psprintf("%s:%d", p->host ? p->host : "", p->port));
	c->params.display = c->display;
	c->sock_pos = -1;

	if (!callbacks_registered)
	{
		RegisterXactCallback(rs_conn_xact_callback, NULL);
		callbacks_registered = true;
	}
	c->next = all_conns;
	all_conns = c;
	return c;
}

void
redis_conn_free(RedisConn *c)
{
	RedisConn **pp;

	if (c == NULL)
		return;
	redis_conn_disconnect(c);
	for (pp = &all_conns; *pp != NULL; pp = &(*pp)->next)
	{
		if (*pp == c)
		{
			*pp = c->next;
			break;
		}
	}
	free_if(c->params.host);
	free_if(c->client_addr);
	free_if(c->params.socket_path);
	free_if(c->params.user);
	if (c->params.password)
	{
		explicit_bzero(c->params.password, strlen(c->params.password));
		pfree(c->params.password);
	}
	free_if(c->params.tls_ca_file);
	free_if(c->params.tls_cert_file);
	free_if(c->params.tls_key_file);
	free_if(c->params.tls_server_name);
	free_if(c->display);
	pfree(c);
}

const char *
redis_conn_display(RedisConn *c)
{
	return c->display;
}

const RedisConnParams *
redis_conn_params(RedisConn *c)
{
	return &c->params;
}

bool
redis_conn_is_connected(RedisConn *c)
{
	return c != NULL && c->ctx != NULL;
}

/* ----------------------------------------------------------------
 * Waiting on the socket
 * ---------------------------------------------------------------- */

/*
 * Wait until the socket is ready for events, or the deadline passes (returns
 * 0).  Interrupts are serviced; postmaster death exits the process.  A latch
 * set meanwhile is set again on the way out: it may be meant for the caller
 * (a commit waking the worker to deliver what it queued), and a wake-up
 * consumed here would leave that delivery to the next naptime.
 */
static int
wait_socket(RedisConn *c, int events, TimestampTz deadline)
{
	bool		latch_seen = false;
	int			result = 0;

	for (;;)
	{
		WaitEvent	ev;
		long		ms;
		int			n;

		ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (ms <= 0 && GetCurrentTimestamp() >= deadline)
			break;

		ModifyWaitEvent(c->wes, c->sock_pos, events, NULL);
		n = WaitEventSetWait(c->wes, ms, &ev, 1, PG_WAIT_EXTENSION);
		if (n == 0)
			continue;			/* timeout: loop re-checks the deadline */
		if (ev.events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			latch_seen = true;
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		if (ev.events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
		{
			result = ev.events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE);
			break;
		}
	}
	if (latch_seen)
		SetLatch(MyLatch);
	return result;
}

/*
 * Poll the socket for readability for up to rs_reply_spin_us before the
 * caller sleeps on it: a reply from a Redis on the same machine usually
 * comes within tens of microseconds, and going to sleep and being woken
 * costs the backend more than that (issue 18).  True when readable.
 *
 * Only while synchronous_commit is off: measured on 2 cores (bench section
 * 1, single-row pushes), polling gave 1.23x the throughput at 1 client and
 * 1.07x at 4 with it off, but 0.9x at 1 client with it on, where the
 * commit's own WAL flush follows the push.  Without the sched_yield() the
 * gain with it off was gone too.
 *
 * Only in sessions, where a client waits for the reply: the background
 * worker (whose own commits run with synchronous_commit off) delivers for
 * nobody in particular, and its polling took CPU from the sessions whose
 * commits it delivers: with polling off for it, async delivery of a single
 * session's UPDATEs cost the worker 26-30 us of CPU per change instead of
 * 32-56 (2 cores, pgbench -c 1, synchronous_commit off, alternating runs).
 */
static bool
spin_readable(int fd)
{
	struct pollfd pfd;
	instr_time	start,
				now;

	if (rs_reply_spin_us <= 0 || synchronous_commit != SYNCHRONOUS_COMMIT_OFF ||
		MyBackendType != B_BACKEND)
		return false;
	pfd.fd = fd;
	pfd.events = POLLIN;
	INSTR_TIME_SET_CURRENT(start);
	for (;;)
	{
		pfd.revents = 0;
		if (poll(&pfd, 1, 0) != 0)
			return true;
		/* let a runnable process (Redis itself, on a busy machine) go first */
		sched_yield();
		INSTR_TIME_SET_CURRENT(now);
		INSTR_TIME_SUBTRACT(now, start);
		if (INSTR_TIME_GET_MICROSEC(now) >= rs_reply_spin_us)
			return false;
	}
}

TimestampTz
redis_conn_deadline_after(int ms)
{
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
}

/* ----------------------------------------------------------------
 * The wire exchange
 * ---------------------------------------------------------------- */

/* hand out the replies the reader has parsed; false on a protocol error */
static bool
take_replies(RedisConn *c, int n, int *got, RedisValue *out, bool *progress,
			 RedisFailure *f)
{
	while (*got < n)
	{
		void	   *r = NULL;

		if (redisGetReplyFromReader(c->ctx, &r) != REDIS_OK)
		{
			char		detail[256];

			strlcpy(detail, c->ctx->errstr, sizeof(detail));
			redis_conn_disconnect(c);
			return redis_failure_set(f, ERRCODE_PROTOCOL_VIOLATION,
									 psprintf("invalid reply from Redis at %s", c->display),
									 detail);
		}
		if (r == NULL)
			break;
		out[(*got)++] = *(RedisValue *) r;
		*progress = true;
	}
	return true;
}

/*
 * One round of TLS I/O: write what OpenSSL takes, read one chunk.  Sets
 * *progress when bytes moved and adds to *want the socket events OpenSSL
 * waits for.  False on failure (connection dropped, *f filled).
 */
static bool
tls_io(RedisConn *c, const char *buf, size_t len, size_t *written,
	   bool *progress, int *want, RedisFailure *f)
{
	char		rb[16384];
	ssize_t		k;
	int			w = 0;

	if (*written < len)
	{
		k = redis_tls_write(c->tls, buf + *written, len - *written, &w, f);
		if (k < 0)
		{
			redis_conn_disconnect(c);
			return false;
		}
		if (k > 0)
		{
			*written += k;
			*progress = true;
		}
		else
			*want |= w;
	}

	/* read even without a readiness report: OpenSSL may hold decrypted bytes */
	w = 0;
	k = redis_tls_read(c->tls, rb, sizeof(rb), &w, f);
	if (k < 0)
	{
		redis_conn_disconnect(c);
		return false;
	}
	if (k > 0)
	{
		if (redisReaderFeed(c->ctx->reader, rb, k) != REDIS_OK)
		{
			redis_conn_disconnect(c);
			return redis_failure_set(f, ERRCODE_PROTOCOL_VIOLATION,
									 psprintf("invalid reply from Redis at %s", c->display),
									 "The reply parser ran out of memory.");
		}
		*progress = true;
	}
	else
		*want |= w;
	return true;
}

/* no progress for timeout_ms: the connection is dropped, its outcome unknown */
static bool
timed_out(RedisConn *c, int timeout_ms, RedisFailure *f)
{
	redis_conn_disconnect(c);
	return redis_failure_set(f, ERRCODE_CONNECTION_FAILURE,
							 psprintf("Redis at %s did not answer within %d ms",
									  c->display, timeout_ms),
							 "The connection was closed; the outcome of the commands sent is unknown.");
}

/*
 * Send len bytes of buf and read n replies; timeout_ms bounds each wait
 * without progress.
 */
static bool
exchange_internal(RedisConn *c, const char *buf, size_t len, int n,
				  RedisValue *out, RedisFailure *f, int timeout_ms)
{
	size_t		written = 0;
	int			got = 0;
	TimestampTz deadline = redis_conn_deadline_after(timeout_ms);
	int			fd = c->ctx->fd;
	bool		send_only = out == NULL;	/* redis_conn_send() */

	c->busy = true;
	while (send_only ? written < len : got < n)
	{
		bool		progress = false;
		int			ready;
		int			want = 0;

		/* hand out replies already parsed */
		if (!take_replies(c, n, &got, out, &progress, f))
			return false;
		if (got == n && !send_only)
			break;

		if (c->tls)
		{
			if (!tls_io(c, buf, len, &written, &progress, &want, f))
				return false;
			if (progress)
			{
				deadline = redis_conn_deadline_after(timeout_ms);
				continue;
			}
		}
		else
		{
			/* push out what the socket will take */
			if (written < len)
			{
				ssize_t		k = send(fd, buf + written, len - written, MSG_NOSIGNAL);

				if (k > 0)
				{
					written += k;
					progress = true;
				}
				else if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				{
					char	   *detail = pstrdup(strerror(errno));

					redis_conn_disconnect(c);
					return redis_failure_set(f, ERRCODE_CONNECTION_FAILURE,
											 psprintf("lost connection to Redis at %s", c->display),
											 detail);
				}
			}

			if (progress)
			{
				deadline = redis_conn_deadline_after(timeout_ms);
				if (written < len || send_only)
					continue;
			}
			want = WL_SOCKET_READABLE | (written < len ? WL_SOCKET_WRITEABLE : 0);
		}

		if (want == WL_SOCKET_READABLE && spin_readable(fd))
			ready = WL_SOCKET_READABLE;
		else
			ready = wait_socket(c, want, deadline);
		if (ready == 0)
			return timed_out(c, timeout_ms, f);
		if (!c->tls && (ready & WL_SOCKET_READABLE))
		{
			if (redisBufferRead(c->ctx) != REDIS_OK)
			{
				char		detail[256];

				if (c->ctx->err == REDIS_ERR_EOF)
					strlcpy(detail, "The server closed the connection.", sizeof(detail));
				else
					strlcpy(detail, c->ctx->errstr, sizeof(detail));
				redis_conn_disconnect(c);
				return redis_failure_set(f, ERRCODE_CONNECTION_FAILURE,
										 psprintf("lost connection to Redis at %s", c->display),
										 detail);
			}
		}
	}
	if (send_only)
		return true;			/* still busy: the replies are to be read */
	c->busy = false;
	c->last_done = GetCurrentTimestamp();
	rs_stats_round_trip();
	return true;
}

bool
redis_conn_wait_writable(RedisConn *c, TimestampTz deadline, RedisFailure *f)
{
	Assert(c->ctx != NULL && c->tls == NULL);
	if (wait_socket(c, WL_SOCKET_WRITEABLE, deadline) != 0)
		return true;
	return timed_out(c, rs_command_timeout_ms, f);
}

bool
redis_conn_read_some(RedisConn *c, int n, int *got, RedisValue *out, RedisFailure *f)
{
	bool		progress = false;
	char		buf[16384];

	Assert(c->ctx != NULL && c->tls == NULL);
	for (;;)
	{
		ssize_t		k;

		/* parsed as read: a backlog in the parser costs quadratic time */
		if (!take_replies(c, n, got, out, &progress, f))
			return false;
		if (*got >= n)
			return true;
		k = recv(c->ctx->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (k > 0)
		{
			if (redisReaderFeed(c->ctx->reader, buf, k) != REDIS_OK)
			{
				char		detail[256];

				strlcpy(detail, c->ctx->reader->errstr, sizeof(detail));
				redis_conn_disconnect(c);
				return redis_failure_set(f, ERRCODE_PROTOCOL_VIOLATION,
										 psprintf("invalid reply from Redis at %s", c->display),
										 detail);
			}
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		{
			char	   *detail = pstrdup(k == 0 ? "The server closed the connection." : strerror(errno));

			redis_conn_disconnect(c);
			return redis_failure_set(f, ERRCODE_CONNECTION_FAILURE,
									 psprintf("lost connection to Redis at %s", c->display),
									 detail);
		}
	}
}

/*
 * Send len bytes of buf without reading the replies: the caller reads them
 * later with redis_conn_exchange(c, NULL, 0, n, ...), and meanwhile
 * nothing else may use the connection.  The connection stays busy until
 * then, so an ERROR in between drops it (at transaction abort, or as stale
 * at its next use).
 */
bool
redis_conn_send(RedisConn *c, const char *buf, size_t len, RedisFailure *f)
{
	Assert(c->ctx != NULL);
	return exchange_internal(c, buf, len, 0, NULL, f, rs_command_timeout_ms);
}

bool
redis_conn_exchange(RedisConn *c, const char *buf, size_t len, int n,
					RedisValue *out, RedisFailure *f)
{
	Assert(c->ctx != NULL);
	if (!exchange_internal(c, buf, len, n, out, f, rs_command_timeout_ms))
		return false;
	redis_round_trips++;
	return true;
}

/* ----------------------------------------------------------------
 * Connecting
 * ---------------------------------------------------------------- */

void
redis_conn_disconnect(RedisConn *c)
{
	if (c->wes)
	{
		FreeWaitEventSet(c->wes);
		c->wes = NULL;
	}
	if (c->tls)
	{
		redis_tls_free(c->tls);
		c->tls = NULL;
	}
	if (c->ctx)
	{
		redisFree(c->ctx);
		c->ctx = NULL;
	}
	c->sock_pos = -1;
	c->busy = false;
	c->last_done = 0;
}

/*
 * A connection that completed an exchange this recently is not polled: the
 * poll() is a system call per push (issue 18), and a close by Redis
 * (restart, CLIENT KILL, its idle timeout of at least a second) within this
 * window after an answer is no likelier than one just after the poll.  Either
 * way the exchange then fails as "lost connection", like any close racing a
 * push.
 */
#define RS_IDLE_CHECK_AFTER_US 1000

bool
redis_conn_is_stale(RedisConn *c)
{
	struct pollfd pfd;

	if (c->ctx == NULL)
		return false;
	if (c->busy || c->ctx->err)
		return true;
	if (c->last_done != 0 && !c->tls &&
		GetCurrentTimestamp() - c->last_done < RS_IDLE_CHECK_AFTER_US)
		return false;
	pfd.fd = c->ctx->fd;
	pfd.events = POLLIN;
	pfd.revents = 0;
	if (poll(&pfd, 1, 0) != 0)
	{
		/* over TLS that may be a session ticket, not the end */
		if (c->tls && pfd.revents == POLLIN)
			return redis_tls_idle_stale(c->tls);
		return true;
	}
	return false;
}

static bool
connect_failure(RedisConn *c, RedisFailure *f, const char *detail)
{
	char	   *d = detail ? pstrdup(detail) : NULL;

	redis_conn_disconnect(c);
	return redis_failure_set(f, ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
							 psprintf("could not connect to Redis at %s", c->display), d);
}

/*
 * Open the socket without blocking and wait (up to connect_timeout, whose
 * deadline is returned for the TLS handshake) for the connect to finish.
 */
static bool
conn_open_socket(RedisConn *c, TimestampTz *deadline, RedisFailure *f)
{
	RedisConnParams *p = &c->params;

	if (p->socket_path)
		c->ctx = redisConnectUnixNonBlock(p->socket_path);
	else
		c->ctx = redisConnectNonBlock(p->host, p->port);
	if (c->ctx == NULL)
		return connect_failure(c, f, "out of memory");
	if (c->ctx->err)
		return connect_failure(c, f, c->ctx->errstr);
	redis_conn_value_replies(c->ctx);

	/*
	 * Until AUTH, SELECT and CLIENT SETNAME have been answered, the socket is
	 * not a usable connection: an ERROR (cancel, statement_timeout) thrown
	 * from a wait below -- the TCP connect or, over TLS, a handshake that a
	 * stopped server leaves hanging -- must not leave it looking connected,
	 * or the next use would send commands unauthenticated and to database 0.
	 * "busy" makes the abort callback and redis_conn_is_stale() drop it.
	 */
	c->busy = true;

	c->wes = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(c->wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	/* no postmaster to watch in single-user mode (epoll_ctl would fail) */
	if (IsUnderPostmaster)
		AddWaitEventToSet(c->wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	c->sock_pos = AddWaitEventToSet(c->wes, WL_SOCKET_WRITEABLE, c->ctx->fd, NULL, NULL);

	/* finish the non-blocking connect */
	*deadline = redis_conn_deadline_after(rs_connect_timeout_ms);
	if (wait_socket(c, WL_SOCKET_WRITEABLE, *deadline) == 0)
		return connect_failure(c, f, psprintf("timed out after %d ms", rs_connect_timeout_ms));
	{
		int			soerr = 0;
		socklen_t	slen = sizeof(soerr);

		if (getsockopt(c->ctx->fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) < 0)
			soerr = errno;
		if (soerr != 0)
			return connect_failure(c, f, strerror(soerr));
	}
	return true;
}

/* TLS handshake, within the same connect deadline */
static bool
conn_start_tls(RedisConn *c, TimestampTz deadline, RedisFailure *f)
{
	int			ev;

	c->tls = redis_tls_create(c->ctx->fd, &c->params, c->display, f);
	if (c->tls == NULL)
	{
		redis_conn_disconnect(c);
		return false;
	}
	while ((ev = redis_tls_handshake_step(c->tls, f)) != 0)
	{
		if (ev < 0)
		{
			redis_conn_disconnect(c);
			return false;
		}
		if (wait_socket(c, ev, deadline) == 0)
		{
			redis_conn_disconnect(c);
			return redis_failure_set(f, ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
									 psprintf("could not establish a TLS connection to Redis at %s", c->display),
									 psprintf("The TLS handshake timed out after %d ms (redis_sync.connect_timeout).  Does the server accept TLS on this port?",
											  rs_connect_timeout_ms));
		}
	}
	elog(DEBUG1, "redis_sync: TLS connection to Redis at %s: %s",
		 c->display, redis_tls_describe(c->tls));
	return true;
}

/* AUTH (with a password), SELECT (db other than 0), CLIENT SETNAME; their count */
static int
encode_handshake(const RedisConnParams *p, StringInfo hs)
{
	int			nhs = 0;

	if (p->password)
	{
		if (p->user)
		{
			const char *argv[3] = {"AUTH", p->user, p->password};

			redis_resp_encode_command(hs, 3, argv, NULL);
		}
		else
		{
			const char *argv[2] = {"AUTH", p->password};

			redis_resp_encode_command(hs, 2, argv, NULL);
		}
		nhs++;
	}
	if (p->db != 0)
	{
		char		dbs[16];
		const char *argv[2] = {"SELECT", dbs};

		snprintf(dbs, sizeof(dbs), "%d", p->db);
		redis_resp_encode_command(hs, 2, argv, NULL);
		nhs++;
	}
	{
		char		name[160];
		const char *argv[3] = {"CLIENT", "SETNAME", name};

		/* the pid, then what tells killfence.c which server run made it */
		snprintf(name, sizeof(name), "redis_sync:%d:%s", MyProcPid,
				 rs_killfence_name_suffix());
		redis_resp_encode_command(hs, 3, argv, NULL);
		nhs++;
	}
	{
		/*
		 * may this connection's user kill and list connections (killfence.c)?
		 * An ACL is per user: another user's connection to the same Redis may
		 * be allowed (no client has this id)
		 */
		const char *kill[4] = {"CLIENT", "KILL", "ID", "9223372036854775807"};
		const char *list[4] = {"CLIENT", "LIST", "ID", "9223372036854775807"};

		redis_resp_encode_command(hs, 4, kill, NULL);
		redis_resp_encode_command(hs, 4, list, NULL);
		nhs += 2;
	}
	{
		/* the newest timeline of this system pushing here (killfence.c) */
		const char *argv[2] = {"GET", rs_killfence_timeline_key()};

		redis_resp_encode_command(hs, 2, argv, NULL);
		nhs++;
	}
	{
		/* which Redis process this is (killfence.c): INFO's run_id */
		const char *argv[2] = {"INFO", "server"};

		redis_resp_encode_command(hs, 2, argv, NULL);
		nhs++;
	}
	{
		/* last: its id and address (killfence.c); refused before 6.2 */
		const char *argv[2] = {"CLIENT", "INFO"};

		redis_resp_encode_command(hs, 2, argv, NULL);
		nhs++;
	}
	return nhs;
}

/*
 * The handshake exchange failed (exchange reported it): make it a connect
 * failure.  Its timeout is connect_timeout: a plain-text client talking to
 * a TLS-only port gets no answer, or is hung up on.
 */
static void
handshake_exchange_failed(RedisConn *c, RedisFailure *f)
{
	RedisConnParams *p = &c->params;
	char	   *why = f->detail ? psprintf("%s: %s", f->message, f->detail) : f->message;
	const char *hint = "";
	size_t		wl = strlen(why);

	f->sqlstate = ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION;
	f->message = psprintf("could not connect to Redis at %s", c->display);

	if (!p->tls)
		hint = "  If the server accepts only TLS, use a rediss:// URL.";
	else if (!(p->tls_cert_file && p->tls_cert_file[0]))
		hint = "  If the server demands client certificates (tls-auth-clients), set redis_sync.tls_cert_file and redis_sync.tls_key_file.";
	f->detail = psprintf("The connection handshake (AUTH, SELECT, CLIENT SETNAME) failed: %s%s%s", why,
						 (wl > 0 && why[wl - 1] != '.') ? "." : "", hint);
}

/*
 * handshake: AUTH, SELECT, CLIENT SETNAME in one round trip.  The buffer
 * that held the password is zeroed whatever happens.
 */
static bool
conn_handshake(RedisConn *c, RedisFailure *f)
{
	RedisConnParams *p = &c->params;
	StringInfoData hs;
	int			nhs;
	RedisValue *hsr;

	initStringInfo(&hs);
	nhs = encode_handshake(p, &hs);
	hsr = palloc(sizeof(RedisValue) * nhs);
	if (!exchange_internal(c, hs.data, hs.len, nhs, hsr, f, rs_connect_timeout_ms))
	{
		handshake_exchange_failed(c, f);
		explicit_bzero(hs.data, hs.len);
		return false;
	}
	explicit_bzero(hs.data, hs.len);
	c->client_id = 0;
	c->kill_allowed = hsr[nhs - 5].type == RV_INTEGER && hsr[nhs - 4].type == RV_STRING;
	c->newest_tli = hsr[nhs - 3].type == RV_STRING ? strtoul(hsr[nhs - 3].str, NULL, 10) : 0;
	c->run_id[0] = '\0';
	if (hsr[nhs - 2].type == RV_STRING)
	{
		char	   *r = strstr(hsr[nhs - 2].str, "run_id:");

		if (r && strspn(r + 7, "0123456789abcdef") == 40)
			strlcpy(c->run_id, r + 7, 41);
	}
	if (c->client_addr)
		pfree(c->client_addr);
	c->client_addr = NULL;
	if (hsr[nhs - 1].type == RV_STRING)
	{
		char	   *id = strstr(hsr[nhs - 1].str, "id=");
		char	   *addr = strstr(hsr[nhs - 1].str, " addr=");

		if (id == hsr[nhs - 1].str && addr)
		{
			c->client_id = strtoll(id + 3, NULL, 10);
			addr += 6;
			c->client_addr = MemoryContextStrdup(TopMemoryContext, addr);
			c->client_addr[strcspn(c->client_addr, " \r\n")] = '\0';
		}
	}
	/* killfence.c's five may be refused */
	for (int i = 0; i < nhs - 5; i++)
	{
		if (hsr[i].type == RV_ERROR)
		{
			bool		auth = p->password && i == 0;
			char	   *d = pstrdup(hsr[i].str);

			redis_conn_disconnect(c);
			return redis_failure_set(f, auth ? ERRCODE_INVALID_PASSWORD :
									 ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
									 psprintf(auth ? "could not authenticate to Redis at %s" :
											  "could not set up the connection to Redis at %s",
											  c->display), d);
		}
	}
	c->busy = false;
	return true;
}

bool
redis_conn_establish(RedisConn *c, RedisFailure *f)
{
	TimestampTz deadline = 0;

	if (c->ctx)
		redis_conn_disconnect(c);
	if (!conn_open_socket(c, &deadline, f))
		return false;
	if (c->params.tls && !conn_start_tls(c, deadline, f))
		return false;
	return conn_handshake(c, f);
}

/*
 * The connection's CLIENT ID and address as Redis sees them, and the newest
 * timeline of this system that pushed there, asked at the handshake
 * (killfence.c); 0 when Redis did not say (before 6.2, an ACL).
 */
bool
redis_conn_kill_allowed(RedisConn *c)
{
	return c->ctx && c->kill_allowed;
}

const char *
redis_conn_run_id(RedisConn *c)
{
	return c->ctx && c->run_id[0] ? c->run_id : NULL;
}

int64
redis_conn_client_id(RedisConn *c, const char **addr, uint32 *newest_tli)
{
	*addr = c->client_addr;
	*newest_tli = c->newest_tli;
	return c->ctx && c->client_addr ? c->client_id : 0;
}
