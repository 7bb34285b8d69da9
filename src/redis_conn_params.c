/*-------------------------------------------------------------------------
 *
 * redis_conn_params.c
 *		The parameters of a connection from the settings: redis_sync.redis_url
 *		(parsed by redis_url.c), redis_sync.redis_password_file and the
 *		redis_sync.tls_* settings (redis_tls.c); and the key that tells a
 *		cached connection its settings changed.
 *
 * The only code of the connection that reads the connection settings
 * (redis_conn.h): a RedisConn connects with the RedisConnParams it was made
 * with.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "storage/fd.h"

#include "redis_conn.h"
#include "redis_sync.h"
#include "redis_tls.h"
#include "redis_url.h"

/* the first line of path, or NULL with *f filled */
static char *
read_password_file(const char *path, RedisFailure *f)
{
	FILE	   *fp = AllocateFile(path, "r");
	char		line[1024];
	size_t		len;

	if (fp == NULL)
	{
		redis_failure_set(f, ERRCODE_CONFIG_FILE_ERROR,
						  psprintf("could not open redis_sync.redis_password_file \"%s\": %s",
								   path, strerror(errno)), NULL);
		return NULL;
	}
	if (fgets(line, sizeof(line), fp) == NULL)
		line[0] = '\0';
	FreeFile(fp);
	len = strlen(line);
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		line[--len] = '\0';
	return pstrdup(line);
}

bool
redis_conn_params_from_settings(RedisConnParams *p, RedisFailure *f)
{
	RedisEndpoint ep;
	char	   *err,
			   *detail;

	memset(p, 0, sizeof(*p));

	/*
	 * The detail of a parse error quotes parts of the URL (a bad port), and a
	 * password with an unencoded '/' ends the authority early: its "port" is
	 * the password.  The setting is visible to superusers only, and every
	 * session (any role) and the log get this error: say what is wrong
	 * without quoting it (tests/t/330); parse_url() gives the detail.
	 */
	if (!redis_parse_url(rs_redis_url, &ep, &err, &detail))
		return redis_failure_set(f, ERRCODE_INVALID_PARAMETER_VALUE,
								 psprintf("%s (in redis_sync.redis_url)", err),
								 "The setting is not shown: it may hold the password. "
								 "A superuser sees what is wrong with "
								 "SELECT * FROM redis_sync.parse_url(current_setting('redis_sync.redis_url')).");
	p->host = ep.host;
	p->port = ep.port;
	p->socket_path = ep.socket_path;
	p->db = ep.db;
	p->user = ep.user;
	p->password = ep.password;
	p->display = ep.display;
	if (rs_password_file && rs_password_file[0] != '\0')
	{
		p->password = read_password_file(rs_password_file, f);
		if (p->password == NULL)
			return false;
	}
	p->tls = ep.tls;
	p->tls_ca_file = rs_tls_ca_file;
	p->tls_cert_file = rs_tls_cert_file;
	p->tls_key_file = rs_tls_key_file;
	p->tls_verify = (RedisTlsVerify) rs_tls_verify;
	p->tls_server_name = rs_tls_server_name;
	return true;
}

char *
redis_conn_settings_key(void)
{
	StringInfoData key;

	initStringInfo(&key);
	appendStringInfoString(&key, rs_redis_url ? rs_redis_url : "");
	appendStringInfoChar(&key, '\x01');
	appendStringInfoString(&key, rs_password_file ? rs_password_file : "");
	appendStringInfo(&key, "\x01%s\x01%s\x01%s\x01%d\x01%s",
					 rs_tls_ca_file ? rs_tls_ca_file : "",
					 rs_tls_cert_file ? rs_tls_cert_file : "",
					 rs_tls_key_file ? rs_tls_key_file : "",
					 rs_tls_verify,
					 rs_tls_server_name ? rs_tls_server_name : "");
	return key.data;
}
