/*-------------------------------------------------------------------------
 *
 * redis_client.c
 *		The Redis client of redis_sync: one cached connection per backend,
 *		pipelines, Lua scripts, and waits that never hang the backend.
 *
 * Every exchange with Redis is a pipeline: the caller queues any number of
 * commands (encoded here as RESP into one buffer), then one exec sends the
 * buffer and reads all replies, interleaving writes and reads so a pipeline
 * of many thousands of commands streams without filling either socket
 * buffer.  One exec is one round trip; redis_round_trips counts them.
 *
 * hiredis 0.14 is used in non-blocking mode for connecting and for parsing
 * replies; all waiting happens here, on a WaitEventSet holding the socket,
 * the process latch and postmaster death, so query cancel, statement_timeout
 * and postmaster death interrupt a stuck Redis (the approach of
 * postgres_fdw's connection.c for libpq).  redis_sync.connect_timeout bounds
 * connecting; redis_sync.command_timeout bounds how long an exec may wait
 * without Redis making progress.
 *
 * Connection lifetime: the connection is made on first use and kept for the
 * life of the backend.  It is dropped and remade when redis_sync.redis_url
 * changes, when a failure or an interrupt left it in an unknown state (the
 * "busy" flag is still set at the next use), and when the socket turns out
 * to be readable while idle (Redis closed it, or restarted).  Replies are
 * copied into palloc'd RedisValues in the pipeline's memory context, so an
 * ERROR never leaks hiredis objects.
 *
 * Scripts go out as EVALSHA; a NOSCRIPT reply makes exec resend just those
 * commands as EVAL in a second round trip (scripts must be idempotent).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "access/xact.h"
#include "common/cryptohash.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "redis_client.h"
#include "redis_sync.h"
#include "redis_url.h"
#include "shmem.h"

typedef struct PipelineCmd
{
	size_t		off;			/* start of the encoded command in buf */
	size_t		len;
	RedisScript *script;		/* EVALSHA of this script, or NULL */
	size_t		rest_off;		/* for scripts: where numkeys begins */
	int			nargs;			/* for scripts: argument count after sha */
	int			slot;			/* cluster slot of the first key, or -1 */
} PipelineCmd;

typedef struct PipelineMerge
{
	int			first;			/* first physical command */
	int			n;				/* physical commands merged */
	RedisMergeFn fn;
	void	   *arg;
} PipelineMerge;

struct RedisPipeline
{
	PipelineMerge *merges;		/* logical replies of several commands */
	int			nmerges;
	int			maxmerges;
	int			merged_away;	/* physical commands minus logical replies */
	RedisValue *lreplies;		/* logical replies, built on first use */
	int			target_master;	/* keyless commands go there (cluster), -1 any */
	MemoryContext cxt;
	StringInfoData buf;
	PipelineCmd *cmds;
	int			ncmds;
	int			maxcmds;
	RedisValue *replies;		/* ncmds entries after exec */
	bool		executed;
	bool		bypass_circuit;	/* probes and admin commands try anyway */
};

uint64		redis_round_trips = 0;

/* the cached connection */
static redisContext *conn = NULL;
static WaitEventSet *conn_wes = NULL;
static int	conn_sock_pos = -1;
static char *conn_url = NULL;	/* URL it was made from (TopMemoryContext) */
static char *conn_password_file = NULL;	/* and the password file setting */
static char conn_display[300];
static bool conn_busy = false;	/* an exchange is in flight */
static bool callbacks_registered = false;

static void disconnect_internal(void);

/* ----------------------------------------------------------------
 * Failures
 * ---------------------------------------------------------------- */

static bool
set_failure(RedisFailure *f, int sqlstate, const char *msg, const char *detail)
{
	f->sqlstate = sqlstate;
	f->message = pstrdup(msg);
	f->detail = detail ? pstrdup(detail) : NULL;
	return false;
}

void
redis_report_failure(int elevel, RedisFailure *f)
{
	ereport(elevel,
			(errcode(f->sqlstate),
			 errmsg("%s", f->message),
			 f->detail ? errdetail("%s", f->detail) : 0));
}

/* ----------------------------------------------------------------
 * Waiting on the socket
 * ---------------------------------------------------------------- */

/*
 * Wait until the socket is ready for events, or the deadline passes (returns
 * 0).  Interrupts are serviced; postmaster death exits the process.
 */
static int
wait_socket(int events, TimestampTz deadline)
{
	for (;;)
	{
		WaitEvent	ev;
		long		ms;
		int			n;

		ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (ms <= 0 && GetCurrentTimestamp() >= deadline)
			return 0;

		ModifyWaitEvent(conn_wes, conn_sock_pos, events, NULL);
		n = WaitEventSetWait(conn_wes, ms, &ev, 1, PG_WAIT_EXTENSION);
		if (n == 0)
			continue;			/* timeout: loop re-checks the deadline */
		if (ev.events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		if (ev.events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
			return ev.events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE);
	}
}

static TimestampTz
deadline_after(int ms)
{
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
}

/* ----------------------------------------------------------------
 * Replies
 * ---------------------------------------------------------------- */

static void
copy_reply(redisReply *r, RedisValue *out)
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
				copy_reply(r->element[i], &out->elems[i]);
			break;
		default:
			out->type = RV_NIL;
			break;
	}
}

/* ----------------------------------------------------------------
 * The wire exchange on the current connection
 * ---------------------------------------------------------------- */

/*
 * Send len bytes of buf and read n replies into out[0..n-1] (allocated by the
 * caller, filled in CurrentMemoryContext).  On failure the connection is
 * dropped and false returned.
 */
static bool
exchange(const char *buf, size_t len, int n, RedisValue *out, RedisFailure *f)
{
	size_t		written = 0;
	int			got = 0;
	TimestampTz deadline = deadline_after(rs_command_timeout_ms);
	int			fd = conn->fd;

	conn_busy = true;
	while (got < n)
	{
		bool		progress = false;
		int			ready;

		/* hand out replies already parsed */
		while (got < n)
		{
			void	   *r = NULL;

			if (redisGetReplyFromReader(conn, &r) != REDIS_OK)
			{
				char		detail[256];

				strlcpy(detail, conn->errstr, sizeof(detail));
				disconnect_internal();
				return set_failure(f, ERRCODE_PROTOCOL_VIOLATION,
								   psprintf("invalid reply from Redis at %s", conn_display),
								   detail);
			}
			if (r == NULL)
				break;
			copy_reply((redisReply *) r, &out[got++]);
			freeReplyObject(r);
			progress = true;
		}
		if (got == n)
			break;

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

				disconnect_internal();
				return set_failure(f, ERRCODE_CONNECTION_FAILURE,
								   psprintf("lost connection to Redis at %s", conn_display),
								   detail);
			}
		}

		if (progress)
		{
			deadline = deadline_after(rs_command_timeout_ms);
			if (written < len)
				continue;
		}

		ready = wait_socket(WL_SOCKET_READABLE | (written < len ? WL_SOCKET_WRITEABLE : 0),
							deadline);
		if (ready == 0)
		{
			disconnect_internal();
			return set_failure(f, ERRCODE_CONNECTION_FAILURE,
							   psprintf("Redis at %s did not answer within %d ms",
										conn_display, rs_command_timeout_ms),
							   "The connection was closed; the outcome of the commands sent is unknown.");
		}
		if (ready & WL_SOCKET_READABLE)
		{
			if (redisBufferRead(conn) != REDIS_OK)
			{
				char		detail[256];

				if (conn->err == REDIS_ERR_EOF)
					strlcpy(detail, "The server closed the connection.", sizeof(detail));
				else
					strlcpy(detail, conn->errstr, sizeof(detail));
				disconnect_internal();
				return set_failure(f, ERRCODE_CONNECTION_FAILURE,
								   psprintf("lost connection to Redis at %s", conn_display),
								   detail);
			}
		}
	}
	conn_busy = false;
	redis_round_trips++;
	rs_stats_round_trip();
	return true;
}

/* ----------------------------------------------------------------
 * RESP encoding
 * ---------------------------------------------------------------- */

/* "<c><n>\r\n" without going through vsnprintf: this runs per argument */
static void
append_header(StringInfo buf, char c, uint64 n)
{
	char		tmp[24];
	int			len;

	tmp[0] = c;
	len = pg_ulltoa_n(n, tmp + 1) + 1;
	tmp[len++] = '\r';
	tmp[len++] = '\n';
	appendBinaryStringInfo(buf, tmp, len);
}

static void
append_bulk(StringInfo buf, const char *s, size_t len)
{
	append_header(buf, '$', len);
	appendBinaryStringInfo(buf, s, (int) len);
	appendBinaryStringInfo(buf, "\r\n", 2);
}

static void
encode_command(StringInfo buf, int argc, const char **argv, const size_t *argvlen)
{
	append_header(buf, '*', argc);
	for (int i = 0; i < argc; i++)
		append_bulk(buf, argv[i], argvlen ? argvlen[i] : strlen(argv[i]));
}

/* ----------------------------------------------------------------
 * Connecting
 * ---------------------------------------------------------------- */

static void
disconnect_internal(void)
{
	if (conn_wes)
	{
		FreeWaitEventSet(conn_wes);
		conn_wes = NULL;
	}
	if (conn)
	{
		redisFree(conn);
		conn = NULL;
	}
	conn_busy = false;
}

void
redis_disconnect(void)
{
	disconnect_internal();
}

static void
rs_xact_callback(XactEvent event, void *arg)
{
	/* an ERROR or cancel mid-exchange leaves the protocol state unknown */
	if ((event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT) && conn_busy)
		disconnect_internal();
}

const char *
redis_server_display(void)
{
	RedisEndpoint ep;
	char	   *err,
			   *detail;

	if (!redis_parse_url(rs_redis_url, &ep, &err, &detail))
		return "(invalid redis_sync.redis_url)";
	return ep.display;
}

/* was the cached connection made from the current settings? (every exec asks) */
static bool
connection_settings_changed(void)
{
	const char *pf = rs_password_file ? rs_password_file : "";

	return conn_url == NULL || strcmp(conn_url, rs_redis_url) != 0 ||
		conn_password_file == NULL || strcmp(conn_password_file, pf) != 0;
}

/* true when the idle connection has something to read: EOF or junk */
static bool
idle_connection_is_stale(void)
{
	struct pollfd pfd;

	if (conn->err)
		return true;
	pfd.fd = conn->fd;
	pfd.events = POLLIN;
	pfd.revents = 0;
	if (poll(&pfd, 1, 0) != 0)
		return true;
	return false;
}

static bool
connect_failure(RedisFailure *f, const char *detail)
{
	char	   *d = detail ? pstrdup(detail) : NULL;

	disconnect_internal();
	return set_failure(f, ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
					   psprintf("could not connect to Redis at %s", conn_display), d);
}

/* the first line of path, or NULL with *f filled */
static char *
read_password_file(const char *path, RedisFailure *f)
{
	FILE	   *fp = AllocateFile(path, "r");
	char		line[1024];
	size_t		len;

	if (fp == NULL)
	{
		set_failure(f, ERRCODE_CONFIG_FILE_ERROR,
					psprintf("could not open redis_sync.redis_password_file \"%s\": %s",
							 path, strerror(errno)), NULL);
		return NULL;
	}
	if (fgets(line, sizeof(line), fp) == NULL)
		line[0] = '\0';
	FreeFile(fp);
	len = strlen(line);
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		line[--len] = '\0';
	return pstrdup(line);
}

static bool
establish(RedisFailure *f)
{
	RedisEndpoint ep;
	char	   *err,
			   *detail;
	TimestampTz deadline;
	MemoryContext old;
	StringInfoData hs;
	int			nhs = 0;
	RedisValue *hsr;

	if (!redis_parse_url(rs_redis_url, &ep, &err, &detail))
		return set_failure(f, ERRCODE_INVALID_PARAMETER_VALUE,
						   psprintf("%s (in redis_sync.redis_url)", err), detail);
	strlcpy(conn_display, ep.display, sizeof(conn_display));
	if (rs_password_file && rs_password_file[0] != '\0')
	{
		ep.password = read_password_file(rs_password_file, f);
		if (ep.password == NULL)
			return false;
	}

	if (!callbacks_registered)
	{
		RegisterXactCallback(rs_xact_callback, NULL);
		callbacks_registered = true;
	}

	if (ep.socket_path)
		conn = redisConnectUnixNonBlock(ep.socket_path);
	else
		conn = redisConnectNonBlock(ep.host, ep.port);
	if (conn == NULL)
		return connect_failure(f, "out of memory");
	if (conn->err)
		return connect_failure(f, conn->errstr);

	conn_wes = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(conn_wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(conn_wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	conn_sock_pos = AddWaitEventToSet(conn_wes, WL_SOCKET_WRITEABLE, conn->fd, NULL, NULL);

	/* finish the non-blocking connect */
	deadline = deadline_after(rs_connect_timeout_ms);
	if (wait_socket(WL_SOCKET_WRITEABLE, deadline) == 0)
		return connect_failure(f, psprintf("timed out after %d ms", rs_connect_timeout_ms));
	{
		int			soerr = 0;
		socklen_t	slen = sizeof(soerr);

		if (getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) < 0)
			soerr = errno;
		if (soerr != 0)
			return connect_failure(f, strerror(soerr));
	}

	/* handshake: AUTH, SELECT, CLIENT SETNAME in one round trip */
	initStringInfo(&hs);
	if (ep.password)
	{
		if (ep.user)
		{
			const char *argv[3] = {"AUTH", ep.user, ep.password};

			encode_command(&hs, 3, argv, NULL);
		}
		else
		{
			const char *argv[2] = {"AUTH", ep.password};

			encode_command(&hs, 2, argv, NULL);
		}
		nhs++;
	}
	if (ep.db != 0)
	{
		char		dbs[16];
		const char *argv[2] = {"SELECT", dbs};

		snprintf(dbs, sizeof(dbs), "%d", ep.db);
		encode_command(&hs, 2, argv, NULL);
		nhs++;
	}
	{
		char		name[64];
		const char *argv[3] = {"CLIENT", "SETNAME", name};

		snprintf(name, sizeof(name), "redis_sync:%d", MyProcPid);
		encode_command(&hs, 3, argv, NULL);
		nhs++;
	}
	hsr = palloc(sizeof(RedisValue) * nhs);
	if (!exchange(hs.data, hs.len, nhs, hsr, f))
	{
		/* exchange reported the failure; make it a connect failure */
		char	   *why = f->message;

		f->sqlstate = ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION;
		f->message = psprintf("could not connect to Redis at %s", conn_display);
		f->detail = psprintf("The connection handshake (AUTH, SELECT, CLIENT SETNAME) failed: %s", why);
		return false;
	}
	redis_round_trips--;		/* the handshake is not a workload round trip */
	for (int i = 0; i < nhs; i++)
	{
		if (hsr[i].type == RV_ERROR)
		{
			bool		auth = ep.password && i == 0;
			char	   *d = pstrdup(hsr[i].str);

			disconnect_internal();
			return set_failure(f, auth ? ERRCODE_INVALID_PASSWORD :
							   ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
							   psprintf(auth ? "could not authenticate to Redis at %s" :
										"could not set up the connection to Redis at %s",
										conn_display), d);
		}
	}

	old = MemoryContextSwitchTo(TopMemoryContext);
	if (conn_url)
		pfree(conn_url);
	if (conn_password_file)
		pfree(conn_password_file);
	conn_url = pstrdup(rs_redis_url);
	conn_password_file = pstrdup(rs_password_file ? rs_password_file : "");
	MemoryContextSwitchTo(old);
	return true;
}

/* make sure a usable connection exists */
static bool
ensure_connection(RedisFailure *f)
{
	if (conn != NULL)
	{
		if (conn_busy || connection_settings_changed() || idle_connection_is_stale())
			disconnect_internal();
	}
	if (conn == NULL)
		return establish(f);
	return true;
}

/* ----------------------------------------------------------------
 * Pipelines
 * ---------------------------------------------------------------- */

RedisPipeline *
redis_pipeline_create(void)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "redis_sync pipeline",
											  ALLOCSET_DEFAULT_SIZES);
	RedisPipeline *p = MemoryContextAllocZero(cxt, sizeof(RedisPipeline));
	MemoryContext old = MemoryContextSwitchTo(cxt);

	p->cxt = cxt;
	p->target_master = -1;
	initStringInfo(&p->buf);
	p->maxcmds = 16;
	p->cmds = palloc(sizeof(PipelineCmd) * p->maxcmds);
	MemoryContextSwitchTo(old);
	return p;
}

void
redis_pipeline_free(RedisPipeline *p)
{
	MemoryContextDelete(p->cxt);
}

void
redis_pipeline_bypass_circuit(RedisPipeline *p)
{
	p->bypass_circuit = true;
}

int
redis_pipeline_length(RedisPipeline *p)
{
	return p->ncmds - p->merged_away;
}

void
redis_pipeline_target_master(RedisPipeline *p, int master)
{
	p->target_master = master;
}

int
redis_pipeline_merge_begin(RedisPipeline *p)
{
	return p->ncmds;
}

void
redis_pipeline_merge_end(RedisPipeline *p, int begin, RedisMergeFn fn, void *arg)
{
	PipelineMerge *m;

	Assert(begin <= p->ncmds);
	if (p->nmerges == p->maxmerges)
	{
		p->maxmerges = p->maxmerges ? p->maxmerges * 2 : 8;
		p->merges = p->merges ?
			repalloc(p->merges, sizeof(PipelineMerge) * p->maxmerges) :
			MemoryContextAlloc(p->cxt, sizeof(PipelineMerge) * p->maxmerges);
	}
	m = &p->merges[p->nmerges++];
	m->first = begin;
	m->n = p->ncmds - begin;
	m->fn = fn;
	m->arg = arg;
	/* no command queued gives one reply all the same: an empty array */
	p->merged_away += m->n - 1;
}

/* build the logical replies from the physical ones, merges in order */
static void
build_logical_replies(RedisPipeline *p)
{
	MemoryContext old = MemoryContextSwitchTo(p->cxt);
	int			nl = redis_pipeline_length(p);
	int			phys = 0;
	int			l = 0;

	p->lreplies = palloc0(sizeof(RedisValue) * Max(nl, 1));
	for (int m = 0; m <= p->nmerges; m++)
	{
		int			upto = m < p->nmerges ? p->merges[m].first : p->ncmds;

		while (phys < upto)
			p->lreplies[l++] = p->replies[phys++];
		if (m < p->nmerges)
		{
			PipelineMerge *mg = &p->merges[m];

			mg->fn(p->replies + mg->first, mg->n, mg->arg, &p->lreplies[l++]);
			phys += mg->n;
		}
	}
	Assert(l == nl);
	MemoryContextSwitchTo(old);
}

/* the slot of a plain command's key: argv[1] except for keyless commands */
static int
command_slot(int argc, const char **argv, const size_t *argvlen)
{
	static const char *const keyless[] = {
		"PING", "INFO", "SCAN", "CLUSTER", "CONFIG", "CLIENT", "SCRIPT",
		"FLUSHDB", "FLUSHALL", "DBSIZE", "AUTH", "SELECT", "ASKING", "READONLY",
		"HELLO", "ECHO", "TIME", "COMMAND", "MEMORY", "LASTSAVE", "ROLE",
		"SLOWLOG", "LATENCY", "WAIT", "RANDOMKEY", "KEYS", "ACL", "DEBUG",
		"FUNCTION", "FCALL", "FCALL_RO", "PUBLISH", "SWAPDB", "MULTI", "EXEC",
		"DISCARD", "QUIT", "RESET", "BGSAVE", "SAVE", "SHUTDOWN", "MONITOR",
		"SUBSCRIBE", "PSUBSCRIBE", "OBJECT", "READWRITE", "FAILOVER", "REPLICAOF",
		"SLAVEOF", "LOLWUT", "MODULE", "PUBSUB", "SYNC", "PSYNC"
	};
	size_t		l0;

	if (argc < 2)
		return -1;
	l0 = argvlen ? argvlen[0] : strlen(argv[0]);
	for (int i = 0; i < lengthof(keyless); i++)
		if (strlen(keyless[i]) == l0 && pg_strncasecmp(argv[0], keyless[i], l0) == 0)
			return -1;
	if ((l0 == 4 && pg_strncasecmp(argv[0], "EVAL", 4) == 0) ||
		(l0 == 7 && pg_strncasecmp(argv[0], "EVALSHA", 7) == 0) ||
		(l0 == 7 && pg_strncasecmp(argv[0], "EVAL_RO", 7) == 0) ||
		(l0 == 10 && pg_strncasecmp(argv[0], "EVALSHA_RO", 10) == 0))
	{
		if (argc < 4 || atoi(argv[2]) <= 0)
			return -1;
		return redis_key_slot(argv[3], argvlen ? argvlen[3] : strlen(argv[3]));
	}
	return redis_key_slot(argv[1], argvlen ? argvlen[1] : strlen(argv[1]));
}

size_t
redis_pipeline_bytes(RedisPipeline *p)
{
	return p->buf.len;
}

static PipelineCmd *
new_cmd(RedisPipeline *p)
{
	PipelineCmd *c;

	if (p->executed)
		elog(ERROR, "redis_sync: pipeline already executed");
	if (p->ncmds == p->maxcmds)
	{
		p->maxcmds *= 2;
		p->cmds = repalloc(p->cmds, sizeof(PipelineCmd) * p->maxcmds);
	}
	c = &p->cmds[p->ncmds++];
	memset(c, 0, sizeof(*c));
	c->off = p->buf.len;
	c->slot = -1;
	return c;
}

void
redis_pipeline_append(RedisPipeline *p, int argc, const char **argv, const size_t *argvlen)
{
	MemoryContext old = MemoryContextSwitchTo(p->cxt);
	PipelineCmd *c = new_cmd(p);

	encode_command(&p->buf, argc, argv, argvlen);
	c->len = p->buf.len - c->off;
	c->slot = command_slot(argc, argv, argvlen);
	MemoryContextSwitchTo(old);
}

/* hex SHA1 of the script body, computed once */
static void
script_sha1(RedisScript *s)
{
	pg_cryptohash_ctx *ctx;
	uint8		digest[20];
	ResourceOwner saved = CurrentResourceOwner;
	ResourceOwner tmp = NULL;

	if (s->sha1[0] != '\0')
		return;
	/* the OpenSSL implementation tracks its state in a resource owner */
	if (CurrentResourceOwner == NULL)
		CurrentResourceOwner = tmp = ResourceOwnerCreate(NULL, "redis_sync sha1");
	ctx = pg_cryptohash_create(PG_SHA1);
	if (ctx == NULL ||
		pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) s->body, strlen(s->body)) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "redis_sync: could not compute SHA1 of script %s", s->name);
	pg_cryptohash_free(ctx);
	if (tmp)
	{
		CurrentResourceOwner = saved;
		ResourceOwnerRelease(tmp, RESOURCE_RELEASE_BEFORE_LOCKS, false, true);
		ResourceOwnerDelete(tmp);
	}
	for (int i = 0; i < 20; i++)
		snprintf(s->sha1 + i * 2, 3, "%02x", digest[i]);
}

void
redis_pipeline_append_script(RedisPipeline *p, RedisScript *script, int nkeys,
							 int argc, const char **argv, const size_t *argvlen)
{
	MemoryContext old;
	PipelineCmd *c;
	char		nk[16];

	script_sha1(script);
	old = MemoryContextSwitchTo(p->cxt);
	c = new_cmd(p);
	c->script = script;
	c->nargs = argc + 1;
	append_header(&p->buf, '*', argc + 3);
	append_bulk(&p->buf, "EVALSHA", 7);
	append_bulk(&p->buf, script->sha1, 40);
	c->rest_off = p->buf.len;
	append_bulk(&p->buf, nk, pg_ltoa(nkeys, nk));
	for (int i = 0; i < argc; i++)
		append_bulk(&p->buf, argv[i], argvlen ? argvlen[i] : strlen(argv[i]));
	c->len = p->buf.len - c->off;
	if (nkeys > 0)
		c->slot = redis_key_slot(argv[0], argvlen ? argvlen[0] : strlen(argv[0]));
	MemoryContextSwitchTo(old);
}

/* resend commands that got NOSCRIPT as EVAL; one more round trip */
static bool
retry_noscript(RedisPipeline *p, RedisFailure *f)
{
	StringInfoData buf;
	int		   *idx;
	int			n = 0;
	RedisValue *out;

	idx = palloc(sizeof(int) * p->ncmds);
	initStringInfo(&buf);
	for (int i = 0; i < p->ncmds; i++)
	{
		PipelineCmd *c = &p->cmds[i];

		if (c->script && p->replies[i].type == RV_ERROR &&
			strncmp(p->replies[i].str, "NOSCRIPT", 8) == 0)
		{
			append_header(&buf, '*', c->nargs + 2);
			append_bulk(&buf, "EVAL", 4);
			append_bulk(&buf, c->script->body, strlen(c->script->body));
			appendBinaryStringInfo(&buf, p->buf.data + c->rest_off,
								   (int) (c->off + c->len - c->rest_off));
			idx[n++] = i;
		}
	}
	if (n == 0)
		return true;
	out = palloc(sizeof(RedisValue) * n);
	if (!exchange(buf.data, buf.len, n, out, f))
		return false;
	for (int j = 0; j < n; j++)
		p->replies[idx[j]] = out[j];
	return true;
}

bool
redis_pipeline_try_exec(RedisPipeline *p, RedisFailure *f)
{
	MemoryContext old;
	bool		ok;

	if (p->executed)
		elog(ERROR, "redis_sync: pipeline already executed");
	old = MemoryContextSwitchTo(p->cxt);
	p->replies = palloc0(sizeof(RedisValue) * Max(p->ncmds, 1));
	if (conn == NULL && !p->bypass_circuit && rs_circuit_is_open())
	{
		MemoryContextSwitchTo(old);
		set_failure(f, ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
					psprintf("Redis at %s is not being tried: the circuit breaker is open",
							 redis_server_display()),
					psprintf("%d consecutive connection failures; the background worker probes Redis and closes the circuit when it answers.",
							 rs_circuit_failures()));
		return false;
	}
	ok = ensure_connection(f);
	if (ok && p->ncmds > 0)
		ok = exchange(p->buf.data, p->buf.len, p->ncmds, p->replies, f);
	if (ok)
		ok = retry_noscript(p, f);
	MemoryContextSwitchTo(old);
	if (!ok)
	{
		/*
		 * The failure was built in the pipeline's context; callers keep it
		 * after redis_pipeline_free(): copy it to theirs.
		 */
		f->message = pstrdup(f->message);
		f->detail = f->detail ? pstrdup(f->detail) : NULL;
	}
	p->executed = ok;
	if (ok)
		rs_circuit_success();
	else if (f->sqlstate != ERRCODE_INVALID_PARAMETER_VALUE)
		rs_circuit_failure(f->message);
	return ok;
}

void
redis_pipeline_exec(RedisPipeline *p)
{
	RedisFailure f;

	if (!redis_pipeline_try_exec(p, &f))
		redis_report_failure(ERROR, &f);
}

RedisValue *
redis_pipeline_reply(RedisPipeline *p, int i)
{
	Assert(p->executed && i >= 0 && i < redis_pipeline_length(p));
	if (p->nmerges == 0)
		return &p->replies[i];
	if (p->lreplies == NULL)
		build_logical_replies(p);
	return &p->lreplies[i];
}

void
redis_check_reply(RedisPipeline *p, int i, const char *what)
{
	RedisValue *v = redis_pipeline_reply(p, i);

	if (v->type == RV_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("Redis at %s returned an error for %s", conn_display, what),
				 errdetail("%s", v->str)));
}

/* ----------------------------------------------------------------
 * Cluster hash slots (CRC16-CCITT/XMODEM, as Redis Cluster uses)
 * ---------------------------------------------------------------- */

static uint16
crc16(const char *buf, size_t len)
{
	uint16		crc = 0;

	for (size_t i = 0; i < len; i++)
	{
		crc ^= (uint16) ((unsigned char) buf[i]) << 8;
		for (int b = 0; b < 8; b++)
			crc = (crc & 0x8000) ? (uint16) ((crc << 1) ^ 0x1021) : (uint16) (crc << 1);
	}
	return crc;
}

uint16
redis_key_slot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len);

	if (open)
	{
		size_t		start = open - key + 1;
		const char *close = memchr(key + start, '}', len - start);

		if (close && close > key + start)
			return crc16(key + start, close - (key + start)) & 16383;
	}
	return crc16(key, len) & 16383;
}

void
redis_client_init(void)
{
	/* nothing to set up in shared memory; connections are per backend */
}

/* PING, even while the circuit breaker is open; true when Redis answered */
bool
redis_probe(void)
{
	RedisPipeline *p = redis_pipeline_create();
	const char *argv[1] = {"PING"};
	RedisFailure f;
	bool		ok;

	p->bypass_circuit = true;
	redis_pipeline_append(p, 1, argv, NULL);
	ok = redis_pipeline_try_exec(p, &f);
	redis_pipeline_free(p);
	return ok;
}

/* ----------------------------------------------------------------
 * Redis Cluster routing
 * ---------------------------------------------------------------- */

bool
redis_cluster_mode(void)
{
	return false;
}

int
redis_cluster_nmasters(void)
{
	return 1;
}
