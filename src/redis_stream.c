/*-------------------------------------------------------------------------
 *
 * redis_stream.c
 *		Streaming a pipeline: its commands are written to the socket as
 *		they are queued, waiting only when far ahead of Redis, the replies
 *		that have come are read as it goes, and its exec sends the rest and
 *		reads the other replies.
 *
 * A bulk push (publish.c) queues one apply call per chunk and streams each
 * as soon as it is encoded, so Redis applies one chunk while the backend
 * encodes the next.  Only on a single Redis already connected over plain
 * TCP; otherwise nothing is written before the exec, which then works as
 * for any pipeline (redis_client.c).  The bytes sent are dropped from the
 * buffer when no NOSCRIPT retry can need them, and a stream more than
 * STREAM_BACKLOG_BYTES ahead of the socket waits for it: a push holds a few
 * chunks, not the whole push (tests/t/372_stream_backlog: 2.6 MB for a
 * 40 MB push, 72.7 MB before).  Between the first byte written and
 * the exec the connection is busy: nothing else may use it, and an ERROR
 * in between drops it.  A connection that fails while streaming is
 * reported by the exec, with the failure the exec would have met itself.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <sys/socket.h>

#include "killfence.h"
#include "redis_client.h"
#include "redis_client_int.h"
#include "redis_conn.h"
#include "redis_conn_int.h"
#include "redis_sync.h"

/* sent bytes are dropped from a pipeline's buffer past this many */
#define STREAM_TRIM_BYTES (64 * 1024)
/* unsent bytes a stream may hold before it waits for the socket */
#define STREAM_BACKLOG_BYTES (1024 * 1024)

/*
 * Write what the socket takes now of buf[*written..len), without waiting
 * (plain TCP; over TLS nothing is written here, the exchange sends it all).
 * Leaves the connection busy: the caller finishes with redis_conn_exchange
 * on the rest, and nothing else may use the connection in between.  False
 * when the connection failed (dropped, *f filled).
 */
bool
redis_conn_send_some(RedisConn *c, const char *buf, size_t len, size_t *written,
					 RedisFailure *f)
{
	Assert(c->ctx != NULL);
	if (c->tls)
		return true;
	c->busy = true;
	while (*written < len)
	{
		ssize_t		k = send(c->ctx->fd, buf + *written, len - *written,
							 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (k > 0)
			*written += k;
		else if (k < 0 && errno == EINTR)
			continue;
		else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		else
		{
			char	   *detail = pstrdup(k < 0 ? strerror(errno) : "send() wrote nothing");

			redis_conn_disconnect(c);
			return redis_failure_set(f, ERRCODE_CONNECTION_FAILURE,
									 psprintf("lost connection to Redis at %s", c->display),
									 detail);
		}
	}
	return true;
}

/*
 * Read the replies that have come, into the pipeline's memory (its replies
 * array, grown as commands are queued; the exec reads the rest).  Redis
 * holds what a client has not read against its client-output-buffer-limit
 * and maxmemory-clients: read only at the exec, the replies of a push of
 * 600,000 rows in MULTI/EXEC chunks (a QUEUED per command, 7.8 MB) passed a
 * 1 MB limit, and Redis dropped the connection
 * (tests/t/377_push_client_limit).  Parsed as they are read: a backlog in
 * the parser costs time quadratic in its size (hiredis moves the rest of
 * its buffer down per kilobyte parsed).
 */
static bool
read_replies(RedisPipeline *p, RedisConn *conn, RedisFailure *f)
{
	MemoryContext old;
	bool		ok;

	if (conn->tls || p->nreplies >= p->ncmds)
		return true;
	old = MemoryContextSwitchTo(p->cxt);
	if (p->maxreplies < p->ncmds)
	{
		/* by half: the exec's repalloc trims it to ncmds */
		int			n = Max(p->ncmds, Max(p->maxreplies + p->maxreplies / 2, 64));

		p->replies = p->replies ? repalloc(p->replies, sizeof(RedisValue) * n) :
			palloc(sizeof(RedisValue) * n);
		p->maxreplies = n;
	}
	ok = redis_conn_read_some(conn, p->ncmds, &p->nreplies, p->replies, f);
	MemoryContextSwitchTo(old);
	return ok;
}

bool
redis_pipeline_stream(RedisPipeline *p)
{
	RedisFailure f;
	uint64		generation;
	RedisConn  *conn = redis_client_conn(&generation);
	bool		ok;

	if (p->executed || p->sent || p->stream_off || p->stream_failed)
		return p->streamed > 0 || p->stream_failed || p->buf_trimmed;
	if (!p->stream_started)
	{
		/* the connection must be ours alone until the exec */
		redis_client_collect_pending();
		conn = redis_client_conn(&generation);
		if (p->ncmds == 0 || redis_cluster_state() != 0 || !redis_conn_is_connected(conn) ||
			redis_conn_is_stale(conn) || redis_client_settings_changed() ||
			rs_killfence_needed(conn, generation) ||
			(p->only_generation != 0 && p->only_generation != generation))
		{
			/* the exec kills abandoned connections first (killfence.c) */
			p->stream_off = true;
			return false;
		}
		p->stream_started = true;
		p->stream_generation = generation;
	}
	if (!redis_conn_is_connected(conn) || generation != p->stream_generation)
	{
		/*
		 * Code run between two calls (a table's cast to json, say, calling
		 * command()) found the connection busy and replaced it: the rest must
		 * not go to the new connection, where it would start in the middle of
		 * a command and its replies would answer nobody.
		 */
		ok = redis_failure_set(&f, ERRCODE_CONNECTION_FAILURE,
							   psprintf("lost connection to Redis at %s", redis_server_display()),
							   "The connection was used or closed while the commands were being sent; the outcome of those sent is unknown.");
	}
	else
		ok = redis_conn_send_some(conn, p->buf.data, p->buf.len, &p->streamed, &f) &&
			read_replies(p, conn, &f);

	/*
	 * Encoding is faster than Redis applies: past STREAM_BACKLOG_BYTES the
	 * socket did not take, wait until it takes enough, rather than let the
	 * buffer grow to the whole push; the replies that came meanwhile are read
	 * after each wait (not woken for: that would wake the backend per reply
	 * packet, on the cores Redis needs).
	 */
	if (ok && !conn->tls && p->buf.len - p->streamed > STREAM_BACKLOG_BYTES)
	{
		/* command_timeout counts from the last progress, as in an exchange */
		TimestampTz deadline = redis_conn_deadline_after(rs_command_timeout_ms);

		while (ok && p->buf.len - p->streamed > STREAM_BACKLOG_BYTES)
		{
			size_t		before = p->streamed;
			int			got = p->nreplies;

			ok = redis_conn_wait_writable(conn, deadline, &f) &&
				redis_conn_send_some(conn, p->buf.data, p->buf.len, &p->streamed, &f) &&
				read_replies(p, conn, &f);
			if (p->streamed > before || p->nreplies > got)
				deadline = redis_conn_deadline_after(rs_command_timeout_ms);
		}
	}
	if (!ok)
	{
		MemoryContext old = MemoryContextSwitchTo(p->cxt);

		p->stream_failed = true;
		p->stream_failure.sqlstate = f.sqlstate;
		p->stream_failure.message = pstrdup(f.message);
		p->stream_failure.detail = f.detail ? pstrdup(f.detail) : NULL;
		MemoryContextSwitchTo(old);
	}
	else if (!p->has_scripts && p->streamed >= STREAM_TRIM_BYTES &&
			 p->streamed >= p->buf.len / 2)
	{
		/*
		 * Bytes sent are read again only by a NOSCRIPT retry, and this
		 * pipeline has no script: drop them, so a bulk push's buffer stays
		 * about a chunk long instead of holding the whole push (its growth
		 * and first touch of each page cost a 100,000-row push about a fifth
		 * of the backend's time at commit, issue 18).  Moving the unsent rest
		 * costs at most what was sent.
		 */
		size_t		rest = p->buf.len - p->streamed;

		memmove(p->buf.data, p->buf.data + p->streamed, rest);
		p->buf.len = (int) rest;
		p->buf.data[rest] = '\0';
		p->streamed = 0;
		p->buf_trimmed = true;
	}
	return p->streamed > 0 || p->stream_failed || p->buf_trimmed;
}

bool
redis_pipeline_stream_failed(RedisPipeline *p)
{
	return p->stream_failed;
}

/* the exec of a pipeline streamed: the rest, then every reply */
bool
redis_pipeline_exec_streamed(RedisPipeline *p, RedisFailure *f)
{
	uint64		generation;
	RedisConn  *conn = redis_client_conn(&generation);

	if (p->stream_failed)
	{
		*f = p->stream_failure;
		return false;
	}
	if (!redis_conn_is_connected(conn) || p->stream_generation != generation)
		return redis_failure_set(f, ERRCODE_CONNECTION_FAILURE,
								 psprintf("lost connection to Redis at %s", redis_server_display()),
								 "The connection was closed; the outcome of the commands sent is unknown.");
	if (!redis_conn_exchange(conn, p->buf.data + p->streamed, p->buf.len - p->streamed,
							 p->ncmds - p->nreplies, p->replies + p->nreplies, f))
		return false;
	return redis_client_retry_noscript(p, f);
}
