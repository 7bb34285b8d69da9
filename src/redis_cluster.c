/*-------------------------------------------------------------------------
 *
 * redis_cluster.c
 *		The client's Redis Cluster side: is the server a cluster, one
 *		connection per node, loading the slot map, and executing a pipeline
 *		across the nodes (redis_sync.cluster_nodes() and worker_stats.cluster
 *		show what it sees).
 *
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
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "funcapi.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "cluster.h"
#include "redis_client_int.h"
#include "redis_sync.h"
#include "shmem.h"

/* is the server of the cached connection a cluster node? -1 not known yet */
static int	cluster_state = -1;
static bool cluster_redis7 = false; /* scripts may be flagged
									 * allow-cross-slot-keys */
static bool server_redis7 = false;	/* INFO said Redis 7 or later (a single
									 * Redis too): scripts may be flagged */
static TimestampTz detect_failed_at = 0;
static TimestampTz map_loaded_at = 0;
static uint64 node_conn_generations = 0;	/* node handshakes made */

static bool refresh_map(RedisFailure *f);

/* -1: not known yet (not asked since the settings changed), 0: no, 1: yes */
int
redis_cluster_state(void)
{
	return cluster_state;
}

/* the connection settings changed: ask again what the server is */
void
redis_cluster_reset(void)
{
	cluster_state = -1;
	rs_cluster_forget_map();
}

/* INFO cluster on the seed connection: is it a cluster node? */
bool
redis_cluster_detect(RedisFailure *f)
{
	const char *argv[1] = {"INFO"};
	StringInfoData buf;
	RedisValue	v;

	initStringInfo(&buf);
	redis_resp_encode_command(&buf, 1, argv, NULL);
	if (!redis_conn_exchange(redis_client_seed_conn(), buf.data, buf.len, 1, &v, f))
	{
		detect_failed_at = GetCurrentTimestamp();
		return false;
	}
	redis_round_trips--;		/* like the handshake, not a workload round
								 * trip */
	if (v.type == RV_ERROR)
	{
		/*
		 * INFO forbidden (a Redis 7 ACL user without @dangerous) or renamed:
		 * CLUSTER INFO, which such a user may run, tells a cluster node (a
		 * single Redis refuses it).  The version is not known then: per-slot
		 * apply calls, which every version runs.
		 */
		const char *cargv[2] = {"CLUSTER", "INFO"};

		resetStringInfo(&buf);
		redis_resp_encode_command(&buf, 2, cargv, NULL);
		if (!redis_conn_exchange(redis_client_seed_conn(), buf.data, buf.len, 1, &v, f))
		{
			detect_failed_at = GetCurrentTimestamp();
			return false;
		}
		redis_round_trips--;
		cluster_state = (v.type == RV_STRING && strstr(v.str, "cluster_state:") != NULL) ? 1 : 0;
		cluster_redis7 = false;
		server_redis7 = false;
		if (cluster_state == 1)
			rs_cluster_forget_map();
		return true;
	}
	/* INFO answered: cluster_enabled:1 says a cluster node */
	cluster_state = (v.type == RV_STRING && rs_cluster_info_enabled(v.str)) ? 1 : 0;
	{
		const char *ver = v.type == RV_STRING ? strstr(v.str, "redis_version:") : NULL;

		server_redis7 = ver != NULL && atoi(ver + 14) >= 7;
	}
	if (cluster_state == 1)
	{
		cluster_redis7 = server_redis7;
		rs_cluster_forget_map();
	}
	return true;
}

/*
 * Scripts may declare flags (a shebang line, Redis 7): the server is known
 * (INFO answered since the settings last changed) to be Redis 7 or later.
 * False when not known yet or when INFO is forbidden.
 */
bool
redis_server_script_flags(void)
{
	return cluster_state >= 0 && server_redis7;
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

	if (cluster_state >= 0 && !redis_client_settings_changed())
		return cluster_state == 1;
	/* not known yet: ask, unless Redis failed to answer in the last second */
	if ((detect_failed_at != 0 &&
		 !TimestampDifferenceExceeds(detect_failed_at, GetCurrentTimestamp(), 1000)) ||
		(!redis_conn_is_connected(redis_client_seed_conn()) && rs_circuit_is_open()))
		return cluster_state == 1;
	if (!redis_client_ensure_connection(&f))
	{
		detect_failed_at = GetCurrentTimestamp();
		return cluster_state == 1;
	}
	if (cluster_state < 0 && !redis_cluster_detect(&f))
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
	if (!redis_conn_establish(c, f))
		return false;
	/* which handshake this is: redis_cluster_conn_marks() */
	rs_cluster_nodes[i].conn_generation = ++node_conn_generations;
	return true;
}

/*
 * The connection of every node as it is now (its handshake's generation and
 * Redis's run_id), palloc'd, *n entries: for a caller that must know whether
 * a later exchange with a node went to the Redis process an earlier one
 * did (wb_counters.c).  A node not connected has generation 0.
 */
RedisNodeConnMark *
redis_cluster_conn_marks(int *n)
{
	RedisNodeConnMark *m = palloc0(sizeof(RedisNodeConnMark) * Max(rs_cluster_nnodes, 1));

	for (int i = 0; i < rs_cluster_nnodes; i++)
	{
		RedisConn  *c = (RedisConn *) rs_cluster_nodes[i].conn;
		const char *run_id = c ? redis_conn_run_id(c) : NULL;

		if (c == NULL || !redis_conn_is_connected(c))
			continue;
		m[i].generation = rs_cluster_nodes[i].conn_generation;
		strlcpy(m[i].run_id, run_id ? run_id : "", sizeof(m[i].run_id));
	}
	*n = rs_cluster_nnodes;
	return m;
}

/*
 * Did a node connected in marks (redis_cluster_conn_marks) connect again
 * since, to another Redis process (its run_id differs) or to one whose
 * run_id is unknown?  The node restarted meanwhile, perhaps empty.  A new
 * connection to the same process (an idle timeout closed the old one) is
 * no change.  Node indexes are stable: a node is never removed from the
 * table.
 */
bool
redis_cluster_conn_marks_changed(const RedisNodeConnMark *marks, int n)
{
	for (int i = 0; i < n && i < rs_cluster_nnodes; i++)
	{
		RedisConn  *c = (RedisConn *) rs_cluster_nodes[i].conn;
		const char *run_id;

		if (marks[i].generation == 0 || c == NULL ||
			rs_cluster_nodes[i].conn_generation == marks[i].generation)
			continue;
		run_id = redis_conn_run_id(c);
		if (run_id == NULL || marks[i].run_id[0] == '\0' || strcmp(run_id, marks[i].run_id) != 0)
			return true;
	}
	return false;
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
	const char *sargv[2] = {"CLUSTER", "SLOTS"};
	const char *nargv[2] = {"CLUSTER", "NODES"};
	StringInfoData buf;
	RedisValue	v[2];
	char	   *err;

	/*
	 * CLUSTER NODES in the same round trip: it gives the masters that own no
	 * slot yet, which CLUSTER SLOTS leaves out (below).
	 */
	initStringInfo(&buf);
	redis_resp_encode_command(&buf, 2, sargv, NULL);
	redis_resp_encode_command(&buf, 2, nargv, NULL);
	if (!redis_conn_exchange(c, buf.data, buf.len, 2, v, f))
		return false;
	redis_round_trips--;
	if (v[0].type == RV_ERROR)
		return redis_failure_set(f, ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
								 psprintf("Redis at %s did not give its cluster slot map",
										  redis_conn_display(c)), v[0].str);

	/*
	 * no slot at all: a node that is in no cluster (yet, or any more: a node
	 * removed by del-node resets itself and keeps running).  Its CLUSTER
	 * NODES would then make it the one master of the map: the next node is
	 * asked instead.
	 */
	if (v[0].type == RV_ARRAY && v[0].nelem == 0)
		return redis_failure_set(f, ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
								 psprintf("Redis at %s gave an empty cluster slot map",
										  redis_conn_display(c)),
								 "The node is in no cluster, or in one with no slot assigned.");
	if (!rs_cluster_load_slots(&v[0], redis_conn_params(c)->host, &err))
		return redis_failure_set(f, ERRCODE_PROTOCOL_VIOLATION,
								 psprintf("Redis at %s gave an unreadable cluster slot map",
										  redis_conn_display(c)), err);
	map_loaded_at = GetCurrentTimestamp();

	/*
	 * the masters that own no slot yet: a scan of every master must visit a
	 * new master importing its first slot (the keys it already holds).  Best
	 * effort: a node or ACL that refuses CLUSTER NODES (an error reply)
	 * leaves the map as CLUSTER SLOTS gave it.
	 */
	if (v[1].type == RV_STRING && v[1].str != NULL)
		rs_cluster_add_slotless_masters(v[1].str, redis_conn_params(c)->host);

	/*
	 * nodes that left the cluster (or its old address): close their
	 * connections
	 */
	for (int i = 0; i < rs_cluster_nnodes; i++)
		if (!rs_cluster_nodes[i].in_map && rs_cluster_nodes[i].conn &&
			rs_cluster_nodes[i].conn != (void *) c)
		{
			redis_conn_free((RedisConn *) rs_cluster_nodes[i].conn);
			rs_cluster_nodes[i].conn = NULL;
		}
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
	if (redis_client_ensure_connection(f) && load_map_from(redis_client_seed_conn(), f))
		return true;
	return false;
}

/* the number of masters of the map; reload: of a map loaded now */
static int
nmasters(bool reload)
{
	RedisFailure f;
	int		   *idx;
	int			n;

	if (!redis_cluster_mode())
		return 1;
	if ((reload || !rs_cluster_map_loaded()) && !refresh_map(&f))
		redis_client_report(ERROR, &f);
	n = rs_cluster_masters(&idx);
	return Max(n, 1);
}

int
redis_cluster_nmasters(void)
{
	return nmasters(false);
}

/*
 * The masters of the slot map as it is now, as a string to compare: a SCAN
 * of every master (rs_scan_prefix_pages) starts over when they changed
 * under it.  Empty on a single Redis.
 */
char *
redis_cluster_masters_signature(void)
{
	StringInfoData s;
	int		   *idx;
	int			n;

	initStringInfo(&s);
	if (!redis_cluster_mode())
		return s.data;
	n = rs_cluster_masters(&idx);
	for (int i = 0; i < n; i++)
		appendStringInfo(&s, "%s:%d,", rs_cluster_nodes[idx[i]].host, rs_cluster_nodes[idx[i]].port);
	pfree(idx);
	return s.data;
}

/*
 * The number of masters, from a slot map reloaded now: for the callers that
 * visit every master (a SCAN of a prefix), which no redirection would tell
 * of a master added since this session loaded its map (a scale-out: add-node
 * and a reshard to it) -- a map kept from before would leave that master's
 * keys out.
 */
int
redis_cluster_nmasters_fresh(void)
{
	return nmasters(true);
}

/* back off before retrying commands the cluster could not run yet */
static void
cluster_backoff(int attempt)
{
	long		ms = Min(500, 20L << Min(attempt, 5));
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
	bool		latch_seen = false;

	for (;;)
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);
		int			rc;

		if (left <= 0)
			break;
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, left,
					   PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			latch_seen = true;
		}
		CHECK_FOR_INTERRUPTS();
	}

	/*
	 * The latch is also the worker's wake-up (a commit to deliver, a flush()
	 * request): one that arrived during the backoff is set again for the
	 * worker's own wait, not consumed here.
	 */
	if (latch_seen)
		SetLatch(MyLatch);
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
 * fallback on any other error (a multi-slot call the cluster no longer runs
 * as one; one Redis refused whole for memory, which fence_cluster.c's
 * per-slot fallback turns into refusals key by key: do not narrow this to
 * redirections without looking there).  false when a fallback failed (f
 * says why).
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
 * the cluster.
 */
bool
redis_cluster_exec(RedisPipeline *p, RedisFailure *f)
{
	ClusterExec e = {0};
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), rs_command_timeout_ms);
	int			attempt = 0;

	if (redis_client_settings_changed())
	{
		/* new settings: the next exec starts over (detection, map) */
		cluster_state = -1;
		drop_node_connections();
		rs_cluster_forget_map();
		return redis_failure_set(f, ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
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

		/*
		 * Redirected round after round: nodes that disagree on the map for a
		 * moment (a failover or a reshard's last step propagating) send a
		 * command back and forth.  After three quick rounds, back off like
		 * TRYAGAIN, within the same deadline, rather than give up after a few
		 * milliseconds of immediate retries.
		 */
		attempt++;
		if ((e.retry_later || attempt > 3) && GetCurrentTimestamp() >= deadline)
			return redis_failure_set(f, ERRCODE_CONNECTION_FAILURE,
									 psprintf("Redis Cluster at %s could not run %d of the commands within %d ms",
											  redis_server_display(), e.left, rs_command_timeout_ms),
									 e.last_problem ? e.last_problem : "Too many redirections.");
		if (e.retry_later || !e.sent || attempt > 3)
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
		redis_client_report(ERROR, &f);
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
