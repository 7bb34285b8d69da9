/*-------------------------------------------------------------------------
 *
 * redis_client_int.h
 *		Inside the Redis client: what redis_client.c (pipelines, the cached
 *		connection) and redis_cluster.c (the same pipelines on a Redis
 *		Cluster) share.  Not for other modules: they use redis_client.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef REDIS_CLIENT_INT_H
#define REDIS_CLIENT_INT_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "redis_client.h"
#include "redis_conn.h"

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
	int			nreplies;		/* replies read by a stream before the exec */
	int			maxreplies;		/* room in replies while streaming */
	bool		executed;
	bool		bypass_circuit; /* probes and admin commands try anyway */
	bool		sent;			/* redis_pipeline_send(): replies not read */
	bool		send_failed;	/* reading them failed: send_failure */
	RedisFailure send_failure;
	bool		stream_started; /* redis_pipeline_stream() took the connection */
	size_t		streamed;		/* bytes of buf written by
								 * redis_pipeline_stream() */
	uint64		stream_generation;	/* of the connection they went to */
	bool		has_scripts;	/* an EVALSHA is queued (NOSCRIPT may resend
								 * it) */
	bool		buf_trimmed;	/* sent bytes dropped from buf: the commands'
								 * offsets no longer point into it */
	bool		stream_off;		/* not streamed: exec sends it all */
	bool		stream_failed;	/* the connection failed: stream_failure */
	RedisFailure stream_failure;
	uint64		only_generation;	/* sent on that connection only (0: any) */
};

/* redis_client.c */
extern bool redis_client_settings_changed(void);
extern bool redis_client_ensure_connection(RedisFailure *f);
extern RedisConn *redis_client_seed_conn(void);

/* redis_client.c, for redis_stream.c */
extern RedisConn *redis_client_conn(uint64 *generation);
extern void redis_client_collect_pending(void);
extern bool redis_client_retry_noscript(RedisPipeline *p, RedisFailure *f);

/* redis_stream.c */
extern bool redis_pipeline_exec_streamed(RedisPipeline *p, RedisFailure *f);

/* redis_cluster.c */
extern int	redis_cluster_state(void);
extern void redis_cluster_reset(void);
extern bool redis_cluster_detect(RedisFailure *f);
extern bool redis_cluster_exec(RedisPipeline *p, RedisFailure *f);

#endif							/* REDIS_CLIENT_INT_H */
