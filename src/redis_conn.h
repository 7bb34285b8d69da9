/*-------------------------------------------------------------------------
 *
 * redis_conn.h
 *		One connection to one Redis server: connect (with the AUTH, SELECT,
 *		CLIENT SETNAME handshake), exchange a buffer of commands for their
 *		replies with interruptible waits, idle-staleness check, disconnect.
 *
 * A RedisConn carries everything needed to (re)connect -- host, port or
 * socket, database, credentials and the TLS settings -- as fields of the
 * object, so several connections (one per cluster node, say) can exist side
 * by side with the same or different parameters.  The I/O code never reads
 * the connection GUCs; only redis_conn_params_from_settings() does.  The
 * timeouts (redis_sync.connect_timeout and command_timeout) are read at the
 * time of each wait, as they are per-statement settings.
 *
 *-------------------------------------------------------------------------
 */
#ifndef REDIS_CONN_H
#define REDIS_CONN_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"

#include "redis_params.h"
#include "redis_value.h"

typedef struct RedisConn RedisConn;

/*
 * Fill *p from redis_sync.redis_url, redis_sync.redis_password_file and the
 * redis_sync.tls_* settings (allocated in CurrentMemoryContext).  Returns
 * false with *f filled (sqlstate ERRCODE_INVALID_PARAMETER_VALUE for a bad
 * URL, ERRCODE_CONFIG_FILE_ERROR for an unreadable password file).
 */
extern bool redis_conn_params_from_settings(RedisConnParams *p, RedisFailure *f);

/*
 * A string that changes whenever a setting that
 * redis_conn_params_from_settings() reads changes (palloc'd): compare it to
 * decide whether a cached connection must be remade after a reload.
 */
extern char *redis_conn_settings_key(void);

/*
 * A new, unconnected connection with a deep copy of *p, allocated in
 * TopMemoryContext.  Free it with redis_conn_free().
 */
extern RedisConn *redis_conn_create(const RedisConnParams *p);
extern void redis_conn_free(RedisConn *c);

/*
 * Connect (within redis_sync.connect_timeout, TLS handshake included) and
 * run the AUTH/SELECT/CLIENT SETNAME handshake.  False with *f filled on
 * failure; the connection is then left disconnected.  Interrupts (cancel,
 * statement_timeout) and postmaster death are serviced while waiting.
 */
extern bool redis_conn_establish(RedisConn *c, RedisFailure *f);

/*
 * Send len bytes of buf and read n replies into out[0..n-1] (allocated by
 * the caller, filled in CurrentMemoryContext).  Counts one round trip.  On
 * failure the connection is dropped and false returned with *f filled.  An
 * ERROR (cancel, statement_timeout) thrown from the wait leaves the
 * connection "busy"; it is dropped at transaction abort.
 */
extern bool redis_conn_exchange(RedisConn *c, const char *buf, size_t len,
								int n, RedisValue *out, RedisFailure *f);

/*
 * Send without reading: the n replies are read later by
 * redis_conn_exchange(c, NULL, 0, n, out, f), and nothing else may use the
 * connection in between (redis_pipeline_send() in redis_client.c).
 */
extern bool redis_conn_send(RedisConn *c, const char *buf, size_t len, RedisFailure *f);

/*
 * Write now what the socket takes of buf[*written..len) without waiting;
 * the rest and the replies go with redis_conn_exchange(c, buf + *written,
 * len - *written, n, ...).  Nothing over TLS.  Nothing else may use the
 * connection in between (redis_pipeline_stream() in redis_stream.c).
 */
extern bool redis_conn_send_some(RedisConn *c, const char *buf, size_t len,
								 size_t *written, RedisFailure *f);

/*
 * Wait until the socket takes more (plain TCP); replies that come meanwhile
 * wait in the socket for redis_conn_read_some().  False when deadline passed
 * first (the connection dropped, *f filled: redis_sync.command_timeout
 * passed without progress); interrupts are served while it waits.
 */
extern bool redis_conn_wait_writable(RedisConn *c, TimestampTz deadline, RedisFailure *f);

/*
 * Read and parse, without waiting, what has come of the replies to commands
 * already sent on a connection a stream holds (plain TCP): up to n replies,
 * into out[*got..n), *got advanced.  Redis holds the replies a client has
 * not read against its client-output-buffer-limit; read as they come, a
 * stream's stay about a chunk's.  False when the connection failed
 * (dropped, *f filled).
 */
extern bool redis_conn_read_some(RedisConn *c, int n, int *got, RedisValue *out,
								 RedisFailure *f);

/*
 * Several exchanges on different connections at once (Redis Cluster: one
 * sub-pipeline per node), in one round trip of wall time: every buffer is
 * sent and every reply read on one wait over all the sockets.  Each entry
 * gets ok and, when not ok, f (its connection dropped), as with
 * redis_conn_exchange().  Counts one round trip.  Every connection must be
 * connected.  TLS connections are exchanged one after the other.
 */
typedef struct RedisExchange
{
	RedisConn  *conn;
	const char *buf;
	size_t		len;
	int			n;
	RedisValue *out;
	bool		ok;				/* result */
	RedisFailure f;				/* when not ok */
	size_t		written;		/* private */
	int			got;			/* private */
	bool		active;			/* private */
} RedisExchange;

extern void redis_conn_exchange_many(RedisExchange *x, int k);

/* is it connected? */
extern bool redis_conn_is_connected(RedisConn *c);

/*
 * Should this connected connection be dropped before its next use?  True
 * when an exchange was interrupted (busy), it failed, or the idle socket has
 * something to read (Redis closed it or restarted).
 */
extern bool redis_conn_is_stale(RedisConn *c);

/* close the socket (idempotent); the object stays usable for establish */
extern void redis_conn_disconnect(RedisConn *c);

/* "host:port" or "unix:/path", never the password */
extern const char *redis_conn_display(RedisConn *c);

/*
 * CLIENT ID and address of the connection, and the newest timeline in
 * killfence.c's key (handshake); 0 when unknown
 */
extern int64 redis_conn_client_id(RedisConn *c, const char **addr, uint32 *newest_tli);

/* the Redis process's run_id (INFO server at the handshake), or NULL */
extern const char *redis_conn_run_id(RedisConn *c);

/* whether this connection's user may run CLIENT KILL and CLIENT LIST */
extern bool redis_conn_kill_allowed(RedisConn *c);

/* the parameters it connects with (read only) */
extern const RedisConnParams *redis_conn_params(RedisConn *c);

/* RESP encoding (one writer for the client and the handshake) */
extern void redis_resp_append_header(StringInfo buf, char c, uint64 n);
extern void redis_resp_append_bulk(StringInfo buf, const char *s, size_t len);
extern void redis_resp_encode_command(StringInfo buf, int argc,
									  const char **argv, const size_t *argvlen);

/* round trips made by this backend (also declared in redis_client.h) */
extern uint64 redis_round_trips;

#endif							/* REDIS_CONN_H */
