/*-------------------------------------------------------------------------
 *
 * redis_url.h
 *		Parsing of redis_sync.redis_url into a connection endpoint.
 *
 *-------------------------------------------------------------------------
 */
#ifndef REDIS_URL_H
#define REDIS_URL_H

typedef struct RedisEndpoint
{
	char	   *host;			/* TCP host name or address, NULL for unix */
	int			port;			/* TCP port */
	char	   *socket_path;	/* unix socket path, NULL for TCP */
	int			db;				/* SELECT index */
	char	   *user;			/* ACL user name, or NULL */
	char	   *password;		/* AUTH password, or NULL */
	char	   *display;		/* "host:port" or "unix:/path": safe to print */
	bool		tls;			/* rediss:// */
} RedisEndpoint;

/*
 * Parse url into *ep (allocated in CurrentMemoryContext).  On failure returns
 * false and sets *err (and *detail, possibly NULL) to a message that never
 * contains the password.
 */
extern bool redis_parse_url(const char *url, RedisEndpoint *ep,
							char **err, char **detail);

/* split "scheme://auth@h1:p1,h2:p2/db" into one URL per host (cluster seeds) */
extern int	redis_url_split_seeds(const char *url, char ***urls);

/* same, but ereport(ERROR) on failure */
extern void redis_parse_url_or_error(const char *url, RedisEndpoint *ep);

#endif							/* REDIS_URL_H */
