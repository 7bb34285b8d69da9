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
 * An unfenced (MULTI/EXEC) push of this backend: begin names and
 * identifies the connection when it has not been, and registers it as in
 * flight; false when this push must go through the apply script instead
 * (a cluster, an old or restricted Redis, an abandoned connection not yet
 * killed, a full registry).  end(true): every reply was read; end(false):
 * the outcome is unknown, and the connection is abandoned (killed before
 * anyone sends anything else to that Redis).
 */
extern bool rs_killfence_begin(void);
extern void rs_killfence_end(bool confirmed);
extern bool rs_killfence_in_flight(void);

#endif							/* RS_KILLFENCE_H */
