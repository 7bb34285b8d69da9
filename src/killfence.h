/*-------------------------------------------------------------------------
 *
 * killfence.h
 *		Connections whose pushes may still run in Redis, and their kill
 *		before anything else is sent (killfence.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_KILLFENCE_H
#define RS_KILLFENCE_H

#include "postgres.h"

#include "redis_conn.h"
#include "redis_value.h"

/* shared memory (shmem.c) */
extern Size rs_killfence_shmem_size(void);
extern void rs_killfence_shmem_init(void);

/*
 * Before anything is sent on a single Redis connection (generation: the
 * client's connection counter): kill the connections of earlier server
 * incarnations once, and every connection whose unfenced push was
 * abandoned.  False with *f filled when that could not be done; nothing may
 * be sent then.  rs_killfence_needed() is the cheap test: false when there
 * is nothing to do.
 */
extern bool rs_killfence_needed(RedisConn *conn, uint64 generation);
extern bool rs_killfence_gate(RedisConn *conn, uint64 generation, RedisFailure *f);

/*
 * An unfenced (MULTI/EXEC) push of this backend: begin connects, kills what
 * must be killed, and registers the connection as in flight (KF_MULTI);
 * KF_SCRIPT: this push goes through the apply script instead (a cluster,
 * an old or restricted Redis, an abandoned connection not yet killed, a
 * full registry, the circuit breaker open); KF_FAILED: Redis could not be
 * reached (*f filled, nothing of the push was sent).  end(true): every
 * reply was read; end(false): the outcome is unknown, and the connection
 * is abandoned (killed before anyone sends anything else to that Redis).
 */
typedef enum KfMode
{
	KF_SCRIPT,
	KF_MULTI,
	KF_FAILED
} KfMode;

extern KfMode rs_killfence_begin(RedisFailure *f);

/* the client connection generation registered by begin (KF_MULTI) */
extern uint64 rs_killfence_generation(void);
extern void rs_killfence_end(bool confirmed);
extern bool rs_killfence_in_flight(void);

/* what follows "redis_sync:<pid>:" in a connection's name */
extern const char *rs_killfence_name_suffix(void);

/* the key holding the newest timeline of this system that pushed there */
extern const char *rs_killfence_timeline_key(void);

#endif							/* RS_KILLFENCE_H */
