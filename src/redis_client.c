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
 * The connection itself -- connecting, the handshake, the interruptible
 * waits (query cancel, statement_timeout, postmaster death,
 * redis_sync.connect_timeout and command_timeout) -- is a RedisConn
 * (redis_conn.c); this file keeps one cached instance made from the
 * connection settings.
 *
 * Connection lifetime: the connection is made on first use and kept for the
 * life of the backend.  It is dropped and remade when redis_sync.redis_url
 * changes, when a failure or an interrupt left it in an unknown state (the
 * "busy" flag is still set at the next use), and when the socket turns out
 * to be readable while idle (Redis closed it, or restarted).  Replies are
 * copied into palloc'd RedisValues in the pipeline's memory context.
 *
 * Scripts go out as EVALSHA; a NOSCRIPT reply makes exec resend just those
 * commands as EVAL in a second round trip (scripts must be idempotent).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "common/cryptohash.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "redis_client.h"
#include "cluster.h"
#include "redis_conn.h"
#include "redis_sync.h"
#include "redis_tls.h"
#include "redis_url.h"
#include "shmem.h"

/* connection settings (redis_client_init) */
char	   *rs_redis_url = NULL;
char	   *rs_password_file = NULL;
int			rs_connect_timeout_ms = 1000;
int			rs_command_timeout_ms = 1000;

typedef struct PipelineCmd
{
	size_t		off;			/* start of the encoded command in buf */
	size_t		len;
	RedisScript *script;		/* EVALSHA of this script, or NULL */
	size_t		rest_off;		/* for scripts: where numkeys begins */
	int			nargs;			/* for scripts: argument count after sha */
	int			slot;			/* cluster slot of the first key, or -1 */
	RedisFallbackFn fallback;	/* cluster: run it another way when redirected */
	void	   *fallback_arg;
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


/* the cached connection, made from the settings in conn_settings */
static RedisConn *conn = NULL;
static char *conn_settings = NULL;	/* redis_conn_settings_key(), TopMemoryContext */

/* is the server of the cached connection a cluster node? -1 not known yet */
static int	cluster_state = -1;
static bool cluster_redis7 = false;	/* scripts may be flagged allow-cross-slot-keys */
static TimestampTz detect_failed_at = 0;
static TimestampTz map_loaded_at = 0;

static bool cluster_exec(RedisPipeline *p, RedisFailure *f);
static bool refresh_map(RedisFailure *f);
static bool detect_cluster(RedisFailure *f);

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

static void
redis_report_failure(int elevel, RedisFailure *f)
{
	ereport(elevel,
			(errcode(f->sqlstate),
			 errmsg("%s", f->message),
			 f->detail ? errdetail("%s", f->detail) : 0));
}

/* ----------------------------------------------------------------
 * RESP encoding
 * ---------------------------------------------------------------- */

/* ----------------------------------------------------------------
 * Connecting
 * ---------------------------------------------------------------- */

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
	char	   *key = redis_conn_settings_key();
	bool		changed = conn_settings == NULL || strcmp(conn_settings, key) != 0;

	pfree(key);
	return changed;
}

/*
 * Make the cached connection from the current settings.  The RedisConn is
 * remade each time, so a changed password file or URL is picked up.
 */
static bool
establish(RedisFailure *f)
{
	RedisConnParams params;
	char	   *key = redis_conn_settings_key();

	char	  **seeds;
	int			nseeds;
	bool		ok = false;

	if (!redis_conn_params_from_settings(&params, f))
		return false;
	if (conn_settings == NULL || strcmp(conn_settings, key) != 0)
	{
		/* other settings: what the server is will be asked again */
		cluster_state = -1;
		rs_cluster_forget_map();
	}
	/* cluster seeds (host1:port1,host2:port2): the first that answers */
	nseeds = redis_url_split_seeds(rs_redis_url, &seeds);
	for (int i = 0; i < nseeds && !ok; i++)
	{
		if (i > 0)
		{
			RedisEndpoint ep;
			char	   *err,
					   *detail;

			if (!redis_parse_url(seeds[i], &ep, &err, &detail))
				break;
			params.host = ep.host;
			params.port = ep.port;
			params.display = ep.display;
		}
		if (conn)
		{
			redis_conn_free(conn);
			conn = NULL;
		}
		conn = redis_conn_create(&params);
		ok = redis_conn_establish(conn, f);
	}
	if (params.password)
		explicit_bzero(params.password, strlen(params.password));
	if (!ok)
	{
		/* SELECT n on a cluster node: say so plainly */
		if (f->detail && strstr(f->detail, "SELECT is not allowed in cluster mode"))
		{
			f->sqlstate = ERRCODE_INVALID_PARAMETER_VALUE;
			f->message = psprintf("redis_sync.redis_url names database %d, but Redis at %s is a Redis Cluster node",
								  params.db, redis_conn_display(conn));
			f->detail = pstrdup("Redis Cluster has only database 0: end the URL with /0 or no database.");
		}
		return false;
	}
	if (conn_settings)
		pfree(conn_settings);
	conn_settings = MemoryContextStrdup(TopMemoryContext, key);
	return true;
}

/* make sure a usable connection exists */
static bool
ensure_connection(RedisFailure *f)
{
	if (redis_conn_is_connected(conn))
	{
		if (redis_conn_is_stale(conn) || connection_settings_changed())
			redis_conn_disconnect(conn);
	}
	if (!redis_conn_is_connected(conn))
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

	redis_resp_encode_command(&p->buf, argc, argv, argvlen);
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
	redis_resp_append_header(&p->buf, '*', argc + 3);
	redis_resp_append_bulk(&p->buf, "EVALSHA", 7);
	redis_resp_append_bulk(&p->buf, script->sha1, 40);
	c->rest_off = p->buf.len;
	redis_resp_append_bulk(&p->buf, nk, pg_ltoa(nkeys, nk));
	for (int i = 0; i < argc; i++)
		redis_resp_append_bulk(&p->buf, argv[i], argvlen ? argvlen[i] : strlen(argv[i]));
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
			redis_resp_append_header(&buf, '*', c->nargs + 2);
			redis_resp_append_bulk(&buf, "EVAL", 4);
			redis_resp_append_bulk(&buf, c->script->body, strlen(c->script->body));
			appendBinaryStringInfo(&buf, p->buf.data + c->rest_off,
								   (int) (c->off + c->len - c->rest_off));
			idx[n++] = i;
		}
	}
	if (n == 0)
		return true;
	out = palloc(sizeof(RedisValue) * n);
	if (!redis_conn_exchange(conn, buf.data, buf.len, n, out, f))
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
	if (!redis_conn_is_connected(conn) && !p->bypass_circuit && rs_circuit_is_open())
	{
		MemoryContextSwitchTo(old);
		set_failure(f, ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
					psprintf("Redis at %s is not being tried: the circuit breaker is open",
							 redis_server_display()),
					psprintf("%d consecutive connection failures; the background worker probes Redis and closes the circuit when it answers.",
							 rs_circuit_failures()));
		return false;
	}
	/* on a cluster the seed connection may be down while the nodes are not */
	if (cluster_state == 1 && !connection_settings_changed())
		ok = true;
	else
		ok = ensure_connection(f);
	if (ok && cluster_state < 0)
		ok = detect_cluster(f);
	if (ok && cluster_state == 1)
		ok = cluster_exec(p, f);
	else
	{
		if (ok && p->ncmds > 0)
			ok = redis_conn_exchange(conn, p->buf.data, p->buf.len, p->ncmds, p->replies, f);
		if (ok)
			ok = retry_noscript(p, f);
	}
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
				 errmsg("Redis at %s returned an error for %s",
						conn ? redis_conn_display(conn) : redis_server_display(), what),
				 errdetail("%s", v->str)));
}

/*
 * From _PG_init: the connection settings (nothing in shared memory;
 * connections are per backend).  redis_url and the password file are
 * visible to superusers only and accept any text: a GUC check failure
 * would echo the value, password included, into the log.
 */
void
redis_client_init(void)
{
	DefineCustomStringVariable("redis_sync.redis_url",
							   "URL of the Redis server.",
							   "redis://[user[:password]@]host[:port][/db] or unix:///path/to/redis.sock[?db=N].",
							   &rs_redis_url,
							   "redis://127.0.0.1:6379/0",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("redis_sync.redis_password_file",
							   "File whose first line is the Redis password (overrides a password in the URL).",
							   "PostgreSQL logs a changed setting's value on reload; a file keeps the password out of the log.",
							   &rs_password_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	redis_tls_define_gucs();

	DefineCustomIntVariable("redis_sync.connect_timeout",
							"Longest wait for a connection to Redis.",
							NULL,
							&rs_connect_timeout_ms,
							1000, 1, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("redis_sync.command_timeout",
							"Longest wait for Redis to make progress on a pipeline of commands.",
							"When it passes, the connection is closed and the outcome is treated as unknown.",
							&rs_command_timeout_ms,
							1000, 1, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
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
 *
 * The map and the node table are cluster.c's; the connections are here,
 * one RedisConn per node, made from the same settings as the seed
 * connection with the node's address.  An exec on a cluster:
 *
 *	1. routes every command by its slot (keyless commands: the pipeline's
 *	   target master, else the first master) to the node owning it;
 *	2. sends every node's sub-pipeline at once and reads all replies
 *	   (redis_conn_exchange_many: one round trip of wall time);
 *	3. retries, in further rounds, the commands that were not run: MOVED
 *	   (the map is reloaded), ASK (this command once more, to the named
 *	   node, after ASKING), NOSCRIPT (as EVAL), TRYAGAIN and CLUSTERDOWN,
 *	   and slots with no owner or whose node could not be connected to
 *	   (after a backoff, within redis_sync.command_timeout; then the exec
 *	   fails and the caller's failure rules apply).  A connection lost with
 *	   commands in flight fails the exec at once: their outcome is unknown.
 * ---------------------------------------------------------------- */

static bool
set_failure_cluster(RedisFailure *f, int sqlstate, const char *msg, const char *detail)
{
	return set_failure(f, sqlstate, msg, detail);
}

/* INFO cluster on the seed connection: is it a cluster node? */
static bool
detect_cluster(RedisFailure *f)
{
	const char *argv[1] = {"INFO"};
	StringInfoData buf;
	RedisValue	v;

	initStringInfo(&buf);
	redis_resp_encode_command(&buf, 1, argv, NULL);
	if (!redis_conn_exchange(conn, buf.data, buf.len, 1, &v, f))
	{
		detect_failed_at = GetCurrentTimestamp();
		return false;
	}
	redis_round_trips--;		/* like the handshake, not a workload round trip */
	/* INFO renamed or forbidden: not a cluster as far as we can tell */
	cluster_state = (v.type == RV_STRING && rs_cluster_info_enabled(v.str)) ? 1 : 0;
	if (cluster_state == 1)
	{
		const char *ver = strstr(v.str, "redis_version:");

		cluster_redis7 = ver != NULL && atoi(ver + 14) >= 7;
		rs_cluster_forget_map();
	}
	return true;
}

bool
redis_cluster_cross_slot_scripts(void)
{
	return redis_cluster_mode() && cluster_redis7;
}

int
redis_cluster_node_of_slot(int slot)
{
	RedisFailure f;

	if (!rs_cluster_map_loaded() && !refresh_map(&f))
		return -1;
	return rs_cluster_owner[slot];
}

void
redis_pipeline_set_fallback(RedisPipeline *p, RedisFallbackFn fn, void *arg)
{
	Assert(p->ncmds > 0);
	p->cmds[p->ncmds - 1].fallback = fn;
	p->cmds[p->ncmds - 1].fallback_arg = arg;
}

bool
redis_cluster_mode(void)
{
	RedisFailure f;

	if (cluster_state >= 0 && !connection_settings_changed())
		return cluster_state == 1;
	/* not known yet: ask, unless Redis failed to answer in the last second */
	if ((detect_failed_at != 0 &&
		 !TimestampDifferenceExceeds(detect_failed_at, GetCurrentTimestamp(), 1000)) ||
		(!redis_conn_is_connected(conn) && rs_circuit_is_open()))
		return cluster_state == 1;
	if (!ensure_connection(&f))
	{
		detect_failed_at = GetCurrentTimestamp();
		return cluster_state == 1;
	}
	if (cluster_state < 0 && !detect_cluster(&f))
		return false;
	return cluster_state == 1;
}

/* the connection of node i, connected; false with *f filled */
static bool
node_connection(int i, RedisFailure *f)
{
	ClusterNode *n = &rs_cluster_nodes[i];
	RedisConn  *c = (RedisConn *) n->conn;

	if (c && redis_conn_is_connected(c) && redis_conn_is_stale(c))
		redis_conn_disconnect(c);
	if (c && redis_conn_is_connected(c))
		return true;
	if (c == NULL)
	{
		RedisConnParams params;

		if (!redis_conn_params_from_settings(&params, f))
			return false;
		params.host = n->host;
		params.port = n->port;
		params.socket_path = NULL;
		params.display = n->display;
		c = redis_conn_create(&params);
		if (params.password)
			explicit_bzero(params.password, strlen(params.password));
		n->conn = c;
	}
	return redis_conn_establish(c, f);
}

/* forget every node connection (settings changed) */
static void
drop_node_connections(void)
{
	for (int i = 0; i < rs_cluster_nnodes; i++)
		if (rs_cluster_nodes[i].conn)
		{
			redis_conn_free((RedisConn *) rs_cluster_nodes[i].conn);
			rs_cluster_nodes[i].conn = NULL;
		}
}

/* CLUSTER SLOTS on one connection; true when the map was loaded */
static bool
load_map_from(RedisConn *c, RedisFailure *f)
{
	const char *argv[2] = {"CLUSTER", "SLOTS"};
	StringInfoData buf;
	RedisValue	v;
	char	   *err;

	initStringInfo(&buf);
	redis_resp_encode_command(&buf, 2, argv, NULL);
	if (!redis_conn_exchange(c, buf.data, buf.len, 1, &v, f))
		return false;
	redis_round_trips--;
	if (v.type == RV_ERROR)
		return set_failure_cluster(f, ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
								   psprintf("Redis at %s did not give its cluster slot map",
											redis_conn_display(c)), v.str);
	if (!rs_cluster_load_slots(&v, redis_conn_params(c)->host, &err))
		return set_failure_cluster(f, ERRCODE_PROTOCOL_VIOLATION,
								   psprintf("Redis at %s gave an unreadable cluster slot map",
											redis_conn_display(c)), err);
	map_loaded_at = GetCurrentTimestamp();
	return true;
}

/*
 * Reload the slot map: from a connected master first, then any node, then
 * the seeds.
 */
static bool
refresh_map(RedisFailure *f)
{
	static char *map_settings = NULL;
	char	   *key = redis_conn_settings_key();

	if (map_settings == NULL || strcmp(map_settings, key) != 0)
	{
		drop_node_connections();
		if (map_settings)
			pfree(map_settings);
		map_settings = MemoryContextStrdup(TopMemoryContext, key);
	}
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < rs_cluster_nnodes; i++)
		{
			ClusterNode *n = &rs_cluster_nodes[i];
			RedisConn  *c = (RedisConn *) n->conn;

			/* pass 0: live connections to masters; pass 1: every node */
			if (pass == 0 && !(n->master && c && redis_conn_is_connected(c)))
				continue;
			if (pass == 1 && !node_connection(i, f))
				continue;
			if (load_map_from((RedisConn *) n->conn, f))
				return true;
		}
	if (ensure_connection(f) && load_map_from(conn, f))
		return true;
	return false;
}

int
redis_cluster_nmasters(void)
{
	RedisFailure f;
	int		   *idx;
	int			n;

	if (!redis_cluster_mode())
		return 1;
	if (!rs_cluster_map_loaded() && !refresh_map(&f))
		redis_report_failure(ERROR, &f);
	n = rs_cluster_masters(&idx);
	return Max(n, 1);
}

/* back off before retrying commands the cluster could not run yet */
static void
cluster_backoff(int attempt)
{
	long		ms = Min(500, 20L << Min(attempt, 5));

	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, ms,
					 PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

typedef struct CmdRoute
{
	int			node;			/* where it goes this round */
	int			ask_node;		/* ASK: once to this node, after ASKING */
	bool		eval;			/* NOSCRIPT: send as EVAL */
	bool		done;
	int			pos;			/* reply position in its node's buffer */
} CmdRoute;

/*
 * One cluster_exec() call: rounds of route, send and settle until every
 * command has its final reply.
 */
typedef struct ClusterExec
{
	RedisPipeline *p;
	CmdRoute   *r;				/* one per command */
	int			left;			/* commands without their final reply */
	bool		need_refresh;	/* reload the slot map before the next round */
	char	   *last_problem;	/* why commands had to wait (for the error) */
	/* this round */
	int			nn;				/* nodes in the map */
	StringInfoData *bufs;		/* per node: the commands it gets */
	int		   *counts;			/* per node: how many */
	RedisValue **outs;			/* per node: their replies */
	bool		retry_later;	/* some commands wait for the cluster */
	bool		sent;			/* something went out this round */
} ClusterExec;

/* route: each pending command into its node's buffer (ASKING first after ASK) */
static void
cluster_route(ClusterExec *e)
{
	RedisPipeline *p = e->p;
	CmdRoute   *r = e->r;
	int		   *masters;
	int			nmasters;

	e->nn = rs_cluster_nnodes;
	nmasters = rs_cluster_masters(&masters);
	e->bufs = palloc0(sizeof(StringInfoData) * e->nn);
	e->counts = palloc0(sizeof(int) * e->nn);
	e->retry_later = false;
	e->sent = false;

	for (int i = 0; i < p->ncmds; i++)
	{
		PipelineCmd *c = &p->cmds[i];
		StringInfo	buf;
		int			node;

		if (r[i].done)
			continue;
		if (r[i].ask_node >= 0)
			node = r[i].ask_node;
		else if (c->slot >= 0)
			node = rs_cluster_owner[c->slot];
		else if (p->target_master >= 0 && p->target_master < nmasters)
			node = masters[p->target_master];
		else
			node = nmasters > 0 ? masters[0] : -1;
		r[i].node = node;
		if (node < 0)
		{
			/* a slot without an owner: as CLUSTERDOWN */
			e->retry_later = true;
			e->last_problem = psprintf("hash slot %d has no owner in the cluster's slot map", c->slot);
			continue;
		}
		buf = &e->bufs[node];
		if (buf->data == NULL)
			initStringInfo(buf);
		if (r[i].ask_node >= 0)
		{
			const char *asking[1] = {"ASKING"};

			redis_resp_encode_command(buf, 1, asking, NULL);
			e->counts[node]++;
		}
		if (r[i].eval)
		{
			redis_resp_append_header(buf, '*', c->nargs + 2);
			redis_resp_append_bulk(buf, "EVAL", 4);
			redis_resp_append_bulk(buf, c->script->body, strlen(c->script->body));
			appendBinaryStringInfo(buf, p->buf.data + c->rest_off,
								   (int) (c->off + c->len - c->rest_off));
		}
		else
			appendBinaryStringInfo(buf, p->buf.data + c->off, (int) c->len);
		r[i].pos = e->counts[node]++;
	}
}

/*
 * send: connect the nodes involved (the commands of one that cannot be
 * reached wait for the next round) and exchange with all of them at once.
 * false when a connection was lost with commands in flight: their outcome
 * is unknown.
 */
static bool
cluster_send(ClusterExec *e, RedisFailure *f)
{
	int			nn = e->nn;
	RedisExchange *x = palloc0(sizeof(RedisExchange) * Max(nn, 1));
	int		   *xnode = palloc(sizeof(int) * Max(nn, 1));
	int			nx = 0;

	e->outs = palloc0(sizeof(RedisValue *) * Max(nn, 1));
	for (int node = 0; node < nn; node++)
	{
		RedisFailure cf;

		if (e->counts[node] == 0)
			continue;
		if (!node_connection(node, &cf))
		{
			e->retry_later = true;
			e->need_refresh = true;
			e->last_problem = cf.message;
			for (int i = 0; i < e->p->ncmds; i++)
				if (!e->r[i].done && e->r[i].node == node)
					e->r[i].node = -1;
			continue;
		}
		e->outs[node] = palloc0(sizeof(RedisValue) * e->counts[node]);
		x[nx].conn = (RedisConn *) rs_cluster_nodes[node].conn;
		x[nx].buf = e->bufs[node].data;
		x[nx].len = e->bufs[node].len;
		x[nx].n = e->counts[node];
		x[nx].out = e->outs[node];
		xnode[nx] = node;
		nx++;
	}
	if (nx == 0)
		return true;
	redis_conn_exchange_many(x, nx);
	for (int j = 0; j < nx; j++)
	{
		rs_cluster_nodes[xnode[j]].round_trips++;
		if (!x[j].ok)
		{
			/* commands in flight on a lost connection: outcome unknown */
			*f = x[j].f;
			rs_cluster_forget_map();
			return false;
		}
	}
	e->sent = true;
	return true;
}

/*
 * settle: take each reply as final, or note why its command goes again
 * (MOVED, ASK, a retryable cluster error, NOSCRIPT), or run the command's
 * fallback (a multi-slot call the cluster no longer runs as one).  false
 * when a fallback failed (f says why).
 */
static bool
cluster_settle(ClusterExec *e, RedisFailure *f)
{
	RedisPipeline *p = e->p;
	CmdRoute   *r = e->r;

	for (int i = 0; i < p->ncmds; i++)
	{
		RedisValue *v;
		bool		ask;
		int			slot,
					port;
		char	   *host;

		if (r[i].done || r[i].node < 0)
			continue;
		v = &e->outs[r[i].node][r[i].pos];
		r[i].ask_node = -1;
		if (v->type == RV_ERROR && p->cmds[i].fallback &&
			!(strncmp(v->str, "NOSCRIPT", 8) == 0 && !r[i].eval))
		{
			/* a multi-slot call the cluster no longer runs as one */
			RedisValue *fv;

			if (strncmp(v->str, "MOVED ", 6) == 0 || strncmp(v->str, "ASK ", 4) == 0)
			{
				rs_cluster_nodes[r[i].node].redirections++;
				rs_cluster_redirections++;
			}
			rs_cluster_forget_map();
			fv = p->cmds[i].fallback(p->cmds[i].fallback_arg, p->cxt, f);
			if (fv == NULL)
				return false;
			p->replies[i] = *fv;
			r[i].done = true;
			e->left--;
			continue;
		}
		if (v->type == RV_ERROR && rs_cluster_parse_redirect(v->str, &ask, &slot, &host, &port))
		{
			int			to = rs_cluster_node_index(host[0] ? host : rs_cluster_nodes[r[i].node].host,
												   port, true);

			rs_cluster_nodes[r[i].node].redirections++;
			rs_cluster_redirections++;
			if (ask)
				r[i].ask_node = to;
			else
			{
				rs_cluster_owner[slot] = to;
				e->need_refresh = true;
			}
			continue;
		}
		if (v->type == RV_ERROR && rs_cluster_retryable_error(v->str))
		{
			e->retry_later = true;
			e->last_problem = pstrdup(v->str);
			continue;
		}
		if (v->type == RV_ERROR && p->cmds[i].script && !r[i].eval &&
			strncmp(v->str, "NOSCRIPT", 8) == 0)
		{
			r[i].eval = true;
			continue;
		}
		p->replies[i] = *v;
		r[i].done = true;
		e->left--;
	}
	return true;
}

/*
 * exec on a Redis Cluster: rounds of route, send and settle, with the slot
 * map reloaded when a node moved slots or went away, until every command
 * has its final reply, at most redis_sync.command_timeout of waiting for
 * the cluster (and 64 rounds).
 */
static bool
cluster_exec(RedisPipeline *p, RedisFailure *f)
{
	ClusterExec e = {0};
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), rs_command_timeout_ms);
	int			attempt = 0;

	if (connection_settings_changed())
	{
		/* new settings: the next exec starts over (detection, map) */
		cluster_state = -1;
		drop_node_connections();
		rs_cluster_forget_map();
		return set_failure(f, ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
						   "the Redis connection settings changed", NULL);
	}
	e.p = p;
	e.r = palloc0(sizeof(CmdRoute) * Max(p->ncmds, 1));
	e.left = p->ncmds;
	e.need_refresh = !rs_cluster_map_loaded();
	for (int i = 0; i < p->ncmds; i++)
		e.r[i].ask_node = -1;

	while (e.left > 0)
	{
		if (e.need_refresh)
		{
			if (!refresh_map(f))
			{
				if (GetCurrentTimestamp() >= deadline)
					return false;
				cluster_backoff(attempt++);
				continue;
			}
			e.need_refresh = false;
		}
		cluster_route(&e);
		if (!cluster_send(&e, f) || !cluster_settle(&e, f))
			return false;
		if (e.left == 0)
			break;
		if (++attempt > 64 || (e.retry_later && GetCurrentTimestamp() >= deadline))
			return set_failure(f, ERRCODE_CONNECTION_FAILURE,
							   psprintf("Redis Cluster at %s could not run %d of the commands within %d ms",
										redis_server_display(), e.left, rs_command_timeout_ms),
							   e.last_problem ? e.last_problem : "Too many redirections.");
		if (e.retry_later || !e.sent)
		{
			e.need_refresh = true;
			cluster_backoff(attempt);
		}
	}
	return true;
}

/* ----------------------------------------------------------------
 * What this backend sees of the cluster (redis_sync.cluster_nodes())
 * ---------------------------------------------------------------- */

PG_FUNCTION_INFO_V1(redis_sync_cluster_nodes);

/*
 * redis_sync.cluster_nodes(OUT node text, OUT role text, OUT slots int,
 *     OUT connected bool, OUT round_trips bigint, OUT redirections bigint)
 * The calling backend's view: its slot map (loaded on demand) and its
 * per-node counters.  No rows on a single Redis.
 */
Datum
redis_sync_cluster_nodes(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RedisFailure f;

	InitMaterializedSRF(fcinfo, 0);
	if (!redis_cluster_mode())
		PG_RETURN_VOID();
	if (!rs_cluster_map_loaded() && !refresh_map(&f))
		redis_report_failure(ERROR, &f);
	for (int i = 0; i < rs_cluster_nnodes; i++)
	{
		ClusterNode *n = &rs_cluster_nodes[i];
		Datum		values[6];
		bool		nulls[6] = {0};

		values[0] = CStringGetTextDatum(n->display);
		values[1] = CStringGetTextDatum(n->master ? "master" : "replica");
		values[2] = Int32GetDatum(n->nslots);
		values[3] = BoolGetDatum(n->conn && redis_conn_is_connected((RedisConn *) n->conn));
		values[4] = Int64GetDatum((int64) n->round_trips);
		values[5] = Int64GetDatum((int64) n->redirections);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}

/*
 * {"masters": n, "replicas": n, "slots_covered": n, "map_loads": n,
 *  "redirections": n, "nodes": [{"node", "role", "slots", "connected"}...]}
 * -- this backend's view; NULL on a single Redis.  Loads the map if needed.
 */
char *
redis_cluster_state_json(void)
{
	StringInfoData js;
	RedisFailure f;
	int			masters = 0,
				replicas = 0,
				covered = 0;

	if (!redis_cluster_mode())
		return NULL;
	/* the worker asks every second: its map is at most 5 s old */
	if ((!rs_cluster_map_loaded() ||
		 TimestampDifferenceExceeds(map_loaded_at, GetCurrentTimestamp(), 5000)) &&
		!refresh_map(&f))
		return psprintf("{\"error\": \"%s\"}", "the slot map could not be loaded");
	for (int s = 0; s < RS_CLUSTER_SLOTS; s++)
		if (rs_cluster_owner[s] >= 0)
			covered++;
	for (int i = 0; i < rs_cluster_nnodes; i++)
	{
		if (rs_cluster_nodes[i].master)
			masters++;
		else
			replicas++;
	}
	initStringInfo(&js);
	appendStringInfo(&js, "{\"masters\": %d, \"replicas\": %d, \"slots_covered\": %d, "
					 "\"map_loads\": " UINT64_FORMAT ", \"redirections\": " UINT64_FORMAT ", \"nodes\": [",
					 masters, replicas, covered, rs_cluster_refreshes, rs_cluster_redirections);
	for (int i = 0; i < rs_cluster_nnodes && js.len < 1700; i++)
	{
		ClusterNode *n = &rs_cluster_nodes[i];

		appendStringInfo(&js, "%s{\"node\": ", i ? ", " : "");
		escape_json(&js, n->display);
		appendStringInfo(&js, ", \"role\": \"%s\", \"slots\": %d, \"connected\": %s, "
						 "\"round_trips\": " UINT64_FORMAT ", \"redirections\": " UINT64_FORMAT "}",
						 n->master ? "master" : "replica", n->nslots,
						 n->conn && redis_conn_is_connected((RedisConn *) n->conn) ? "true" : "false",
						 n->round_trips, n->redirections);
	}
	appendStringInfoString(&js, "]}");
	return js.data;
}
