/*-------------------------------------------------------------------------
 *
 * redis_tls.h
 *		TLS for connections to Redis (rediss://) with OpenSSL: the
 *		redis_sync.tls_* settings, the client context (trust store, client
 *		certificate, verification), and non-blocking handshake, read and
 *		write steps.  Waiting is the caller's (redis_conn.c): each step says
 *		which socket event it needs next.
 *
 *-------------------------------------------------------------------------
 */
#ifndef REDIS_TLS_H
#define REDIS_TLS_H

#include "postgres.h"

#include "redis_params.h"
#include "redis_value.h"

/* GUC variables */
extern char *rs_tls_ca_file;
extern char *rs_tls_cert_file;
extern char *rs_tls_key_file;
extern int	rs_tls_verify;		/* RedisTlsVerify */
extern char *rs_tls_server_name;

/* define the redis_sync.tls_* settings (from _PG_init) */
extern void redis_tls_define_gucs(void);

typedef struct RedisTls RedisTls;

/*
 * A TLS session over the connected socket fd, set up from p (files loaded,
 * verification and SNI configured; nothing sent yet).  NULL with *f filled
 * when a file cannot be read or is not a valid certificate or key.
 */
extern RedisTls *redis_tls_create(int fd, const RedisConnParams *p,
								  const char *display, RedisFailure *f);
extern void redis_tls_free(RedisTls *t);

/*
 * One step of the handshake: 0 when it is complete, WL_SOCKET_READABLE or
 * WL_SOCKET_WRITEABLE when it must wait for that, -1 on failure (*f filled,
 * naming a certificate or host-name verification failure plainly).
 */
extern int	redis_tls_handshake_step(RedisTls *t, RedisFailure *f);

/*
 * Read up to len bytes: > 0 bytes read; 0 when it must wait (*want set to
 * WL_SOCKET_READABLE or WL_SOCKET_WRITEABLE); -1 on failure or EOF (*f
 * filled).
 */
extern ssize_t redis_tls_read(RedisTls *t, char *buf, size_t len, int *want,
							  RedisFailure *f);

/* write up to len bytes; same conventions as redis_tls_read */
extern ssize_t redis_tls_write(RedisTls *t, const char *buf, size_t len,
							   int *want, RedisFailure *f);

/*
 * On an idle connection whose socket is readable: true when that is EOF,
 * an alert or application data (the connection must be dropped), false when
 * it was only TLS housekeeping (a session ticket).
 */
extern bool redis_tls_idle_stale(RedisTls *t);

/* "TLSv1.3 TLS_AES_256_GCM_SHA384" and the like, for messages */
extern const char *redis_tls_describe(RedisTls *t);

#endif							/* REDIS_TLS_H */
