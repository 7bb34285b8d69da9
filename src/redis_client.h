/*-------------------------------------------------------------------------
 *
 * redis_client.h
 *		The Redis client: one cached connection per backend (one per node
 *		on a Redis Cluster), pipelines, scripts, and replies copied into
 *		palloc'd memory.
 *
 *-------------------------------------------------------------------------
 */
#ifndef REDIS_CLIENT_H
#define REDIS_CLIENT_H

#include "postgres.h"

#include "redis_value.h"

/*
 * A Lua script run with EVALSHA, falling back to EVAL when the server does
 * not know it (NOSCRIPT).  Declare scripts as static variables with
 * REDIS_SCRIPT; the SHA1 is computed on first use.
 */
typedef struct RedisScript
{
	const char *name;
	const char *body;
	char		sha1[41];
} RedisScript;

#define REDIS_SCRIPT(name, body) { (name), (body), "" }

typedef struct RedisPipeline RedisPipeline;

/* a pipeline lives in its own memory context under CurrentMemoryContext */
extern RedisPipeline *redis_pipeline_create(void);
extern void redis_pipeline_free(RedisPipeline *p);
extern int	redis_pipeline_length(RedisPipeline *p);

/* the memory the pipeline and its replies live in (freed with it) */
extern MemoryContext redis_pipeline_memory(RedisPipeline *p);

/* try Redis even while the circuit breaker is open (probes, admin) */
extern void redis_pipeline_bypass_circuit(RedisPipeline *p);

/* queue one command; argvlen may be NULL for NUL-terminated arguments */
extern void redis_pipeline_append(RedisPipeline *p, int argc,
								  const char **argv, const size_t *argvlen);

/* queue n commands "cmd <prefix><keys[i]>" (keys: RV_STRING values) */
extern void redis_pipeline_append_prefixed(RedisPipeline *p, const char *cmd,
										   const char *prefix,
										   const RedisValue *keys, int n);

/* queue EVALSHA script nkeys argv... (argv = keys then arguments) */
extern void redis_pipeline_append_script(RedisPipeline *p, RedisScript *script,
										 int nkeys, int argc,
										 const char **argv, const size_t *argvlen);

/*
 * Send every queued command and read every reply in one round trip.
 * exec raises an ERROR on failure; try_exec returns false and fills *failure
 * (query cancel and postmaster death still interrupt both).
 */
extern void redis_pipeline_exec(RedisPipeline *p);
extern bool redis_pipeline_try_exec(RedisPipeline *p, RedisFailure *failure);
extern RedisValue *redis_pipeline_reply(RedisPipeline *p, int i);

/*
 * Start sending what is queued so far (a bulk push: Redis applies the first
 * commands while the caller encodes the next), and return whether any of it
 * may have reached Redis.  Waits only when more than a megabyte is queued
 * that the socket did not take (a query cancel can then interrupt it).  Only
 * on a single Redis already connected over plain TCP; otherwise nothing is
 * sent before the exec.  The exec that follows sends the rest and reads
 * every reply, with the same failures as without streaming; nothing else
 * may use Redis in between.
 */
extern bool redis_pipeline_stream(RedisPipeline *p);

/* did the stream's connection fail? (the exec then reports that failure) */
extern bool redis_pipeline_stream_failed(RedisPipeline *p);

/*
 * Send now, read later, so Redis works while the caller does something
 * else: send writes the commands and returns; receive reads the replies
 * (ERROR on failure, as exec).  One pipeline at a time may be sent; any
 * other exec before the receive reads its replies first (into its own
 * memory), so the connection stays in step.  When the pipeline cannot be
 * sent alone (a Redis Cluster, another pipeline already sent, no
 * connection yet), send executes it at once, and receive only checks it.
 * An ERROR between the two drops the connection: the outcome of the
 * commands sent is then unknown.
 */
extern void redis_pipeline_send(RedisPipeline *p);
extern void redis_pipeline_receive(RedisPipeline *p);

/*
 * The same, returning false and filling *failure instead of raising an
 * ERROR (query cancel and postmaster death still interrupt both).  A
 * pipeline try_send could not send alone is executed at once, and its
 * failure returned there; try_receive then only confirms it.
 */
extern bool redis_pipeline_try_send(RedisPipeline *p, RedisFailure *failure);
extern bool redis_pipeline_try_receive(RedisPipeline *p, RedisFailure *failure);

/* ERROR if reply i is a Redis error reply; what names the operation */
extern void redis_check_reply(RedisPipeline *p, int i, const char *what);

/* raise a failure filled by try_exec as an ERROR (or at elevel) */
extern void redis_client_report(int elevel, RedisFailure *f);

/* PING, bypassing the circuit breaker; a success closes it */
extern bool redis_probe(void);

/* "host:port" of the configured server, never the password */
extern const char *redis_server_display(void);

/*
 * Redis Cluster (cluster.c, routing here).  redis_cluster_mode() is true when
 * the configured server is a cluster node (connects to find out; false when
 * Redis cannot be reached and was never reached under this URL).
 */
extern bool redis_cluster_mode(void);

/* this backend's view of the cluster as JSON (NULL on a single Redis) */
extern char *redis_cluster_state_json(void);

/*
 * Redis 7 cluster: scripts flagged allow-cross-slot-keys may touch keys of
 * several slots on one node.  redis_cluster_node_of_slot() gives the node
 * owning a slot in this backend's map (-1: none or map not loaded).
 */
extern bool redis_cluster_cross_slot_scripts(void);
extern bool redis_server_script_flags(void);
extern int	redis_cluster_node_of_slot(int slot);

/*
 * A fallback for the command just appended: when the cluster redirects it
 * (MOVED, ASK, TRYAGAIN, CROSSSLOT: a multi-slot call whose slots are no
 * longer on one node), fn runs it another way (say, split by slot, in its
 * own pipeline) and returns the reply it would have given, allocated in
 * cxt; or NULL with *f filled.
 */
typedef RedisValue *(*RedisFallbackFn) (void *arg, MemoryContext cxt, RedisFailure *f);
extern void redis_pipeline_set_fallback(RedisPipeline *p, RedisFallbackFn fn, void *arg);

/* masters of the cluster's current map (1 on a single Redis) */
extern int	redis_cluster_nmasters(void);
extern int	redis_cluster_nmasters_fresh(void);
extern char *redis_cluster_masters_signature(void);

/*
 * Which Redis process each cluster node's connection is on (generation of
 * its handshake, run_id): redis_cluster_conn_marks() notes it, and
 * redis_cluster_conn_marks_changed() says whether a node has since been
 * reconnected to another process (restarted) or to one whose run_id is
 * unknown.
 */
typedef struct RedisNodeConnMark
{
	uint64		generation;		/* 0: not connected then */
	char		run_id[41];		/* "": unknown */
} RedisNodeConnMark;

extern RedisNodeConnMark *redis_cluster_conn_marks(int *n);
extern bool redis_cluster_conn_marks_changed(const RedisNodeConnMark *marks, int n);

/* send the pipeline's keyless commands (SCAN, INFO) to master i */
extern void redis_pipeline_target_master(RedisPipeline *p, int master);

/*
 * Logical replies: the commands queued since begin (several per-slot calls
 * of one multi-slot operation) give one reply, built by fn from their
 * replies (in the pipeline's memory context).  redis_pipeline_length() and
 * redis_pipeline_reply() count logical replies.
 */
typedef void (*RedisMergeFn) (RedisValue *parts, int nparts, void *arg, RedisValue *out);
extern int	redis_pipeline_merge_begin(RedisPipeline *p);
extern void redis_pipeline_merge_end(RedisPipeline *p, int begin, RedisMergeFn fn, void *arg);

/*
 * The pipeline may only be sent on the connection of this generation
 * (redis_client_conn()): one made since (the old one was found closed) fails
 * its exec as a lost connection, with nothing sent.  For a MULTI push, whose
 * connection killfence.c registered (fence_multi.c).
 */
extern void redis_pipeline_only_on(RedisPipeline *p, uint64 generation);

/*
 * The generation of the cached connection (it counts the connections made):
 * replies read under one generation and a later command sent under another
 * may have come from two Redis processes (a restart in between).
 */
extern uint64 redis_connection_generation(void);

/* the run_id of the Redis process the cached connection is on, or NULL */
extern const char *redis_connection_run_id(void);

/* round trips made by this backend, for statistics (counted by redis_conn.c) */
extern uint64 redis_round_trips;

#endif							/* REDIS_CLIENT_H */
