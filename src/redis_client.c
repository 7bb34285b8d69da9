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
 * buffer.  One exec is one round trip; redis_conn.c counts them in
 * redis_round_trips.
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
 * When the server is a Redis Cluster node, exec hands the pipeline to
 * redis_cluster.c (routing by hash slot, one connection per node); what the
 * two files share is in redis_client_int.h.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/cryptohash.h"
#include "funcapi.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/resowner.h"

#include "cluster.h"
#include "killfence.h"
#include "redis_client_int.h"
#include "redis_sync.h"
#include "redis_tls.h"
#include "redis_url.h"
#include "shmem.h"

/* connection settings (redis_client_init) */
char	   *rs_redis_url = NULL;
char	   *rs_password_file = NULL;
int			rs_connect_timeout_ms = 1000;
int			rs_command_timeout_ms = 1000;
int			rs_reply_spin_us = 50;

/*
 * The pipeline sent by redis_pipeline_send() whose replies are still on
 * the connection (NULL: none), and the connection it was sent on
 * (conn_generation counts the connections establish() made).
 */
static RedisPipeline *pending = NULL;
static uint64 pending_generation = 0;
static uint64 conn_generation = 0;

/* the cached connection, made from the settings in conn_settings */
static RedisConn *conn = NULL;
static char *conn_settings = NULL;	/* redis_conn_settings_key(),
									 * TopMemoryContext */

/* ----------------------------------------------------------------
 * Failures
 * ---------------------------------------------------------------- */

void
redis_client_report(int elevel, RedisFailure *f)
{
	ereport(elevel,
			(errcode(f->sqlstate),
			 errmsg("%s", f->message),
			 f->detail ? errdetail("%s", f->detail) : 0));
}

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

/*
 * The connection settings as they were when redis_client_settings_changed()
 * last found them equal to the connection's (TopMemoryContext copies): an
 * exec whose settings still compare equal, string by string, needs no
 * settings key built (a psprintf per push, issue 18).
 */
#define RS_NUM_CONN_STRINGS 6
static char *seen_strings[RS_NUM_CONN_STRINGS];
static int	seen_verify = -1;
static bool seen_valid = false;

static void
conn_strings(const char **s)
{
	s[0] = rs_redis_url;
	s[1] = rs_password_file;
	s[2] = rs_tls_ca_file;
	s[3] = rs_tls_cert_file;
	s[4] = rs_tls_key_file;
	s[5] = rs_tls_server_name;
}

/* are the settings what they were when last found unchanged? */
static bool
settings_as_seen(void)
{
	const char *cur[RS_NUM_CONN_STRINGS];

	if (!seen_valid || seen_verify != rs_tls_verify)
		return false;
	conn_strings(cur);
	for (int i = 0; i < RS_NUM_CONN_STRINGS; i++)
	{
		const char *a = cur[i] ? cur[i] : "";

		if (strcmp(a, seen_strings[i]) != 0)
			return false;
	}
	return true;
}

static void
remember_settings(void)
{
	const char *cur[RS_NUM_CONN_STRINGS];

	conn_strings(cur);
	for (int i = 0; i < RS_NUM_CONN_STRINGS; i++)
	{
		if (seen_strings[i])
			pfree(seen_strings[i]);
		seen_strings[i] = MemoryContextStrdup(TopMemoryContext, cur[i] ? cur[i] : "");
	}
	seen_verify = rs_tls_verify;
	seen_valid = true;
}

/* was the cached connection made from the current settings? (every exec asks) */
bool
redis_client_settings_changed(void)
{
	char	   *key;
	bool		changed;

	if (conn_settings != NULL && settings_as_seen())
		return false;
	key = redis_conn_settings_key();
	changed = conn_settings == NULL || strcmp(conn_settings, key) != 0;
	pfree(key);
	if (!changed)
		remember_settings();
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
		redis_cluster_reset();
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
		conn_generation++;
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
	seen_valid = false;			/* compared again at the next exec */
	return true;
}

/* make sure a usable connection exists */
bool
redis_client_ensure_connection(RedisFailure *f)
{
	if (redis_conn_is_connected(conn))
	{
		if (redis_conn_is_stale(conn) || redis_client_settings_changed())
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

MemoryContext
redis_pipeline_memory(RedisPipeline *p)
{
	return p->cxt;
}

void
redis_pipeline_only_on(RedisPipeline *p, uint64 generation)
{
	p->only_generation = generation;
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

/*
 * Commands without a key, in ASCII order of their names: the drain appends
 * thousands of commands a batch, so this is a binary search.
 */
static const char *const keyless[] = {
	"ACL", "ASKING", "AUTH", "BGSAVE", "CLIENT", "CLUSTER", "COMMAND", "CONFIG",
	"DBSIZE", "DEBUG", "DISCARD", "ECHO", "EXEC", "FAILOVER", "FCALL", "FCALL_RO",
	"FLUSHALL", "FLUSHDB", "FUNCTION", "HELLO", "INFO", "KEYS", "LASTSAVE",
	"LATENCY", "LOLWUT", "MEMORY", "MODULE", "MONITOR", "MULTI", "OBJECT",
	"PING", "PSUBSCRIBE", "PSYNC", "PUBLISH", "PUBSUB", "QUIT", "RANDOMKEY",
	"READONLY", "READWRITE", "REPLICAOF", "RESET", "ROLE", "SAVE", "SCAN",
	"SCRIPT", "SELECT", "SHUTDOWN", "SLAVEOF", "SLOWLOG", "SUBSCRIBE",
	"SWAPDB", "SYNC", "TIME", "WAIT"
};

/* compare a command name (len bytes, any case) with an upper-case name */
static int
command_name_cmp(const char *cmd, size_t len, const char *name)
{
	size_t		i;

	for (i = 0; i < len && name[i] != '\0'; i++)
	{
		unsigned char a = (unsigned char) pg_toupper((unsigned char) cmd[i]);
		unsigned char b = (unsigned char) name[i];

		if (a != b)
			return a < b ? -1 : 1;
	}
	if (i < len)
		return 1;
	return name[i] == '\0' ? 0 : -1;
}

static bool
command_keyless(const char *cmd, size_t len)
{
	int			lo = 0,
				hi = lengthof(keyless) - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		int			c = command_name_cmp(cmd, len, keyless[mid]);

		if (c == 0)
			return true;
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return false;
}

/*
 * the slot of a plain command's key: argv[1] except for keyless commands,
 * scripts and MEMORY USAGE
 */
static int
command_slot(int argc, const char **argv, const size_t *argvlen)
{
	size_t		l0;

	if (argc < 2)
		return -1;
	l0 = argvlen ? argvlen[0] : strlen(argv[0]);
	/* MEMORY USAGE key (the drain's size probe, drain.c) */
	if (argc >= 3 && l0 == 6 && pg_strncasecmp(argv[0], "MEMORY", 6) == 0 &&
		(argvlen ? argvlen[1] : strlen(argv[1])) == 5 &&
		pg_strncasecmp(argv[1], "USAGE", 5) == 0)
		return redis_key_slot(argv[2], argvlen ? argvlen[2] : strlen(argv[2]));
	if (command_keyless(argv[0], l0))
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
	/* routing by slot: not on a single Redis (known to be one) */
	if (redis_cluster_state() != 0)
		c->slot = command_slot(argc, argv, argvlen);
	MemoryContextSwitchTo(old);
}

/*
 * Queue n commands "cmd <prefix><key i>", one key each (a write-behind
 * batch's reads: issue 18, a generic append per claimed member cost the
 * worker about 700 instructions): the same bytes and routing as n
 * redis_pipeline_append() calls, written in one loop on a single Redis.
 */
void
redis_pipeline_append_prefixed(RedisPipeline *p, const char *cmd, const char *prefix,
							   const RedisValue *keys, int n)
{
	size_t		clen = strlen(cmd);
	size_t		plen = strlen(prefix);
	StringInfoData head;
	MemoryContext old;

	if (redis_cluster_state() != 0)
	{
		/* routed by each key's slot: the generic append */
		StringInfoData key;

		initStringInfo(&key);
		for (int i = 0; i < n; i++)
		{
			const char *argv[2];
			size_t		argvlen[2];

			resetStringInfo(&key);
			appendBinaryStringInfo(&key, prefix, plen);
			appendBinaryStringInfo(&key, keys[i].str, keys[i].len);
			argv[0] = cmd;
			argvlen[0] = clen;
			argv[1] = key.data;
			argvlen[1] = key.len;
			redis_pipeline_append(p, 2, argv, argvlen);
		}
		pfree(key.data);
		return;
	}
	old = MemoryContextSwitchTo(p->cxt);
	/* "*2", then cmd as a bulk string: the same for every command */
	initStringInfo(&head);
	redis_resp_append_header(&head, '*', 2);
	redis_resp_append_bulk(&head, cmd, clen);
	for (int i = 0; i < n; i++)
	{
		PipelineCmd *c = new_cmd(p);
		size_t		klen = plen + keys[i].len;
		char	   *w;

		/* the head, '$', at most 20 digits, CRLF, the key, CRLF */
		enlargeStringInfo(&p->buf, (int) (head.len + klen + 25));
		w = p->buf.data + p->buf.len;
		memcpy(w, head.data, head.len);
		w += head.len;
		*w++ = '$';
		w += pg_ulltoa_n(klen, w);
		*w++ = '\r';
		*w++ = '\n';
		memcpy(w, prefix, plen);
		w += plen;
		memcpy(w, keys[i].str, keys[i].len);
		w += keys[i].len;
		*w++ = '\r';
		*w++ = '\n';
		*w = '\0';
		p->buf.len = w - p->buf.data;
		c->len = p->buf.len - c->off;
	}
	pfree(head.data);
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
	p->has_scripts = true;
	c->nargs = argc + 1;
	redis_resp_append_header(&p->buf, '*', argc + 3);
	redis_resp_append_bulk(&p->buf, "EVALSHA", 7);
	redis_resp_append_bulk(&p->buf, script->sha1, 40);
	c->rest_off = p->buf.len;
	redis_resp_append_bulk(&p->buf, nk, pg_ltoa(nkeys, nk));
	for (int i = 0; i < argc; i++)
		redis_resp_append_bulk(&p->buf, argv[i], argvlen ? argvlen[i] : strlen(argv[i]));
	c->len = p->buf.len - c->off;
	/* routing by slot: not on a single Redis (a CRC per push, issue 18) */
	if (nkeys > 0 && redis_cluster_state() != 0)
		c->slot = redis_key_slot(argv[0], argvlen ? argvlen[0] : strlen(argv[0]));
	MemoryContextSwitchTo(old);
}

/* resend commands that got NOSCRIPT as EVAL; one more round trip */
static bool
retry_noscript(RedisPipeline *p, RedisFailure *f)
{
	StringInfoData buf = {0};
	int		   *idx = NULL;
	int			n = 0;
	RedisValue *out;

	/* nothing to resend: no walk over every command of a bulk push */
	if (!p->has_scripts)
		return true;
	for (int i = 0; i < p->ncmds; i++)
	{
		PipelineCmd *c = &p->cmds[i];

		if (c->script && p->replies[i].type == RV_ERROR &&
			strncmp(p->replies[i].str, "NOSCRIPT", 8) == 0)
		{
			/* allocated only when needed: every exec passes here */
			if (idx == NULL)
			{
				idx = palloc(sizeof(int) * p->ncmds);
				initStringInfo(&buf);
			}
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

/*
 * Read the replies of the pending pipeline (into its memory), so the
 * connection is free again; a failure is kept in the pipeline for its
 * receive.
 */
static void
collect_pending(void)
{
	RedisPipeline *p = pending;
	MemoryContext old;
	RedisFailure f;
	bool		ok;

	if (p == NULL)
		return;
	pending = NULL;
	old = MemoryContextSwitchTo(p->cxt);
	if (!redis_conn_is_connected(conn) || pending_generation != conn_generation)
		ok = redis_failure_set(&f, ERRCODE_CONNECTION_FAILURE,
							   psprintf("lost connection to Redis at %s", redis_server_display()),
							   "The connection was closed; the outcome of the commands sent is unknown.");
	else
	{
		ok = redis_conn_exchange(conn, NULL, 0, p->ncmds, p->replies, &f);
		if (ok)
			ok = retry_noscript(p, &f);
	}
	if (!ok)
	{
		p->send_failed = true;
		p->send_failure = f;
	}
	p->executed = ok;
	MemoryContextSwitchTo(old);
}

/* a pending pipeline freed unread: its replies stay unread, so the connection
 * (still busy) is dropped at its next use */
static void
pending_freed(void *arg)
{
	if (pending == (RedisPipeline *) arg)
		pending = NULL;
}

bool
redis_pipeline_try_send(RedisPipeline *p, RedisFailure *f)
{
	MemoryContextCallback *cb;

	if (p->executed || p->sent)
		elog(ERROR, "redis_sync: pipeline already executed");
	collect_pending();

	/*
	 * Alone on a single Redis already connected, or exec it now (clusters
	 * route per node, and exec connects and reports failures)
	 */
	if (p->ncmds == 0 || redis_cluster_state() != 0 || !redis_conn_is_connected(conn) ||
		redis_conn_is_stale(conn) || redis_client_settings_changed() ||
		(p->only_generation != 0 && p->only_generation != conn_generation))
		return redis_pipeline_try_exec(p, f);
	p->replies = MemoryContextAllocZero(p->cxt, sizeof(RedisValue) * p->ncmds);
	if ((rs_killfence_needed(conn, conn_generation) && !rs_killfence_gate(conn, conn_generation, f)) ||
		!redis_conn_send(conn, p->buf.data, p->buf.len, f))
	{
		/* dropped: some commands may have run; exec sends them all again */
		rs_circuit_failure(f->message);
		return false;
	}
	p->sent = true;
	pending = p;
	pending_generation = conn_generation;
	cb = MemoryContextAlloc(p->cxt, sizeof(MemoryContextCallback));
	cb->func = pending_freed;
	cb->arg = p;
	MemoryContextRegisterResetCallback(p->cxt, cb);
	return true;
}

bool
redis_pipeline_try_receive(RedisPipeline *p, RedisFailure *f)
{
	if (!p->sent)
	{
		Assert(p->executed);
		return true;
	}
	if (pending == p)
		collect_pending();
	p->sent = false;
	if (p->send_failed)
	{
		/* built in the pipeline's memory: the caller keeps it after free */
		*f = p->send_failure;
		redis_failure_copy(f, CurrentMemoryContext);
		p->send_failed = false;
		rs_circuit_failure(f->message);
		return false;
	}
	rs_circuit_success();
	return true;
}

void
redis_pipeline_send(RedisPipeline *p)
{
	RedisFailure f;

	if (!redis_pipeline_try_send(p, &f))
		redis_client_report(ERROR, &f);
}

void
redis_pipeline_receive(RedisPipeline *p)
{
	RedisFailure f;

	if (!redis_pipeline_try_receive(p, &f))
		redis_client_report(ERROR, &f);
}

uint64
redis_connection_generation(void)
{
	return conn_generation;
}

const char *
redis_connection_run_id(void)
{
	return conn ? redis_conn_run_id(conn) : NULL;
}

/* for redis_stream.c: the cached connection and its generation */
RedisConn *
redis_client_conn(uint64 *generation)
{
	*generation = conn_generation;
	return conn;
}

/* for redis_stream.c: the pending pipeline's replies, the NOSCRIPT retry */
void
redis_client_collect_pending(void)
{
	collect_pending();
}

bool
redis_client_retry_noscript(RedisPipeline *p, RedisFailure *f)
{
	return retry_noscript(p, f);
}

/* the exec of a pipeline not streamed: connect if need be, send, read */
static bool
exec_connected(RedisPipeline *p, RedisFailure *f)
{
	bool		ok;

	/* on a cluster the seed connection may be down while the nodes are not */
	if (redis_cluster_state() == 1 && !redis_client_settings_changed())
		ok = true;
	else
		ok = redis_client_ensure_connection(f);
	if (ok && redis_cluster_state() < 0)
		ok = redis_cluster_detect(f);

	/*
	 * A MULTI push on another connection than the one registered (the
	 * registered one was found closed and replaced since), or no longer on a
	 * single Redis: its outcome could not be fenced, so nothing is sent
	 */
	if (ok && p->only_generation != 0 &&
		(p->only_generation != conn_generation || redis_cluster_state() != 0))
		ok = redis_failure_set(f, ERRCODE_CONNECTION_FAILURE,
							   psprintf("lost connection to Redis at %s", redis_server_display()),
							   "The connection a bulk push was registered on was closed before the push was sent; nothing was sent.");
	if (ok && redis_cluster_state() == 1)
		return redis_cluster_exec(p, f);
	/* connections whose pushes may still run are closed first (killfence.c) */
	if (ok && p->ncmds > 0 && rs_killfence_needed(conn, conn_generation))
		ok = rs_killfence_gate(conn, conn_generation, f);
	if (ok && p->ncmds > 0)
		ok = redis_conn_exchange(conn, p->buf.data, p->buf.len, p->ncmds, p->replies, f);
	if (ok)
		ok = retry_noscript(p, f);
	return ok;
}

bool
redis_pipeline_try_exec(RedisPipeline *p, RedisFailure *f)
{
	MemoryContext old;
	bool		ok;

	if (p->executed)
		elog(ERROR, "redis_sync: pipeline already executed");
	/* the replies of a pipeline sent earlier come first */
	collect_pending();
	old = MemoryContextSwitchTo(p->cxt);
	if (p->nreplies > 0)
	{
		/* a stream read these already */
		p->replies = repalloc(p->replies, sizeof(RedisValue) * p->ncmds);
		memset(p->replies + p->nreplies, 0, sizeof(RedisValue) * (p->ncmds - p->nreplies));
	}
	else
		p->replies = palloc0(sizeof(RedisValue) * Max(p->ncmds, 1));
	if (p->stream_started)
		ok = redis_pipeline_exec_streamed(p, f);
	else if (!redis_conn_is_connected(conn) && !p->bypass_circuit && rs_circuit_is_open())
	{
		MemoryContextSwitchTo(old);
		redis_failure_set(f, ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
						  psprintf("Redis at %s is not being tried: the circuit breaker is open",
								   redis_server_display()),
						  psprintf("%d consecutive connection failures; the background worker probes Redis and closes the circuit when it answers.",
								   rs_circuit_failures()));
		return false;
	}
	else
		ok = exec_connected(p, f);
	MemoryContextSwitchTo(old);
	if (!ok)
	{
		/*
		 * The failure was built in the pipeline's context; callers keep it
		 * after redis_pipeline_free(): copy it to theirs.
		 */
		redis_failure_copy(f, CurrentMemoryContext);
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
		redis_client_report(ERROR, &f);
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

	DefineCustomIntVariable("redis_sync.reply_spin",
							"Microseconds to poll for a reply before sleeping on the socket.",
							NULL,
							&rs_reply_spin_us,
							50, 0, 1000,
							PGC_USERSET,
							0,
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

/* the cached (seed) connection, for the cluster side (redis_cluster.c) */
RedisConn *
redis_client_seed_conn(void)
{
	return conn;
}
