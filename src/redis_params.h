/*-------------------------------------------------------------------------
 *
 * redis_params.h
 *		What a connection to Redis is made from (RedisConnParams): host,
 *		port or socket, database, credentials and the TLS settings.
 *		Shared by the connection (redis_conn.h) and TLS (redis_tls.h), so
 *		TLS does not depend on the connection's header.
 *
 *-------------------------------------------------------------------------
 */
#ifndef REDIS_PARAMS_H
#define REDIS_PARAMS_H

#include "postgres.h"

typedef enum RedisTlsVerify
{
	RS_TLS_VERIFY_NONE,			/* no verification at all (unsafe) */
	RS_TLS_VERIFY_CA,			/* certificate chain only */
	RS_TLS_VERIFY_FULL			/* chain and host name or IP address */
} RedisTlsVerify;

typedef struct RedisConnParams
{
	char	   *host;			/* TCP host name or address; NULL for unix */
	int			port;			/* TCP port */
	char	   *socket_path;	/* unix socket path; NULL for TCP */
	int			db;				/* SELECT index; 0 sends no SELECT */
	char	   *user;			/* ACL user, or NULL */
	char	   *password;		/* AUTH password, or NULL */
	char	   *display;		/* safe to print; NULL: made from host:port */

	bool		tls;			/* rediss:// */
	char	   *tls_ca_file;	/* NULL or "": the system trust store */
	char	   *tls_cert_file;	/* client certificate, or NULL */
	char	   *tls_key_file;	/* its private key, or NULL */
	RedisTlsVerify tls_verify;
	char	   *tls_server_name;	/* SNI and name to verify; NULL: host */
} RedisConnParams;

#endif							/* REDIS_PARAMS_H */
