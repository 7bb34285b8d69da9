/*-------------------------------------------------------------------------
 *
 * redis_tls.c
 *		TLS to Redis (rediss://) with OpenSSL: the redis_sync.tls_* settings,
 *		the client context of one connection (trust store, client
 *		certificate, verification mode, SNI) and the non-blocking handshake,
 *		read and write steps.
 *
 * hiredis 0.14 has no TLS, so the connection (redis_conn.c) owns the socket
 * and hands its bytes to OpenSSL here; hiredis only parses replies.  Every
 * step here is non-blocking and reports the socket event it needs next
 * (OpenSSL's SSL_ERROR_WANT_READ / WANT_WRITE); redis_conn.c waits for it on
 * the connection's WaitEventSet, so query cancel, statement_timeout,
 * postmaster death and the connect and command timeouts hold during the
 * handshake and every TLS read and write exactly as over plain TCP.
 *
 * Verification (redis_sync.tls_verify): full checks the chain against the
 * trust store (redis_sync.tls_ca_file, or the system store) and that the
 * certificate names the host (or IP address) of the URL, or
 * redis_sync.tls_server_name when set; ca checks the chain only; none checks
 * nothing.  Renegotiation is refused.
 *
 * Messages name the file, the host and OpenSSL's reason, never a password
 * or key material.  OpenSSL's error queue is per thread and shared with the
 * server's own TLS code, so it is cleared before every call and drained
 * after a failure.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "redis_tls.h"

char	   *rs_tls_ca_file = NULL;
char	   *rs_tls_cert_file = NULL;
char	   *rs_tls_key_file = NULL;
int			rs_tls_verify = RS_TLS_VERIFY_FULL;
char	   *rs_tls_server_name = NULL;

static const struct config_enum_entry tls_verify_options[] = {
	{"full", RS_TLS_VERIFY_FULL, false},
	{"ca", RS_TLS_VERIFY_CA, false},
	{"none", RS_TLS_VERIFY_NONE, false},
	{NULL, 0, false}
};

struct RedisTls
{
	SSL_CTX    *ctx;
	SSL		   *ssl;
	const char *display;		/* the connection's, for messages */
	char	   *verify_name;	/* name or address checked (full), or NULL */
	RedisTlsVerify verify;
	bool		handshake_done;
};

void
redis_tls_define_gucs(void)
{
	DefineCustomStringVariable("redis_sync.tls_ca_file",
							   "File of trusted CA certificates (PEM) for verifying Redis's TLS certificate.",
							   "Empty: the system trust store.  Used by rediss:// URLs.",
							   &rs_tls_ca_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("redis_sync.tls_cert_file",
							   "Client certificate (PEM) presented to Redis over TLS.",
							   "For servers that demand one (tls-auth-clients yes); needs redis_sync.tls_key_file.",
							   &rs_tls_cert_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("redis_sync.tls_key_file",
							   "Private key (PEM, unencrypted) of redis_sync.tls_cert_file.",
							   NULL,
							   &rs_tls_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomEnumVariable("redis_sync.tls_verify",
							 "How Redis's TLS certificate is verified: full (chain and host name), ca (chain only) or none (unsafe).",
							 NULL,
							 &rs_tls_verify,
							 RS_TLS_VERIFY_FULL,
							 tls_verify_options,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("redis_sync.tls_server_name",
							   "Server name sent (SNI) and verified over TLS instead of the URL's host.",
							   "For connecting by IP address to a server whose certificate holds a name.",
							   &rs_tls_server_name,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
}

/* ----------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------- */

static bool
tls_failure(RedisFailure *f, int sqlstate, char *msg, char *detail)
{
	f->sqlstate = sqlstate;
	f->message = msg;
	f->detail = detail;
	return false;
}

/* OpenSSL's reason for the last failure, draining the error queue */
static char *
ssl_reason(void)
{
	unsigned long e = ERR_get_error();
	unsigned long last = e;
	const char *r;

	/* the first error is the root cause; drain the rest */
	while (last != 0)
		last = ERR_get_error();
	if (e == 0)
		return pstrdup("no further information from OpenSSL");
	r = ERR_reason_error_string(e);
	if (r)
		return pstrdup(r);
	return psprintf("OpenSSL error code %lu", e);
}

/* check the file can be opened for reading, for a plain error message */
static bool
check_readable(const char *setting, const char *path, RedisFailure *f)
{
	FILE	   *fp = AllocateFile(path, "r");

	if (fp == NULL)
	{
		int			save = errno;

		return tls_failure(f, ERRCODE_CONFIG_FILE_ERROR,
						   psprintf("could not read %s \"%s\": %s", setting, path, strerror(save)),
						   NULL);
	}
	FreeFile(fp);
	return true;
}

/*
 * The rule of libpq (and of the server's ssl_key_file): a private key
 * readable by others is refused.
 */
static bool
check_key_permissions(const char *path, RedisFailure *f)
{
	struct stat st;

	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return tls_failure(f, ERRCODE_CONFIG_FILE_ERROR,
						   psprintf("redis_sync.tls_key_file \"%s\" is not a regular file", path),
						   NULL);

	/*
	 * libpq's test exactly: root may grant its group read access, any other
	 * owner (the server's OS user or not) may not grant group or world any
	 * access.  Testing "owned by us" instead of "not owned by root" would
	 * accept a world-readable key owned by some third user.
	 */
	if ((st.st_uid == 0 && (st.st_mode & (S_IWGRP | S_IXGRP | S_IRWXO))) ||
		(st.st_uid != 0 && (st.st_mode & (S_IRWXG | S_IRWXO))))
		return tls_failure(f, ERRCODE_CONFIG_FILE_ERROR,
						   psprintf("redis_sync.tls_key_file \"%s\" has group or world access", path),
						   pstrdup("The file must have permissions u=rw (0600) or less if owned by the database user, or u=rw,g=r (0640) or less if owned by root."));
	return true;
}

/* an encrypted key would make OpenSSL prompt on the terminal: refuse */
static int
no_passphrase_cb(char *buf, int size, int rwflag, void *userdata)
{
	if (size > 0)
		buf[0] = '\0';
	return 0;
}

static bool
is_ip_address(const char *s)
{
	unsigned char tmp[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, tmp) == 1 || inet_pton(AF_INET6, s, tmp) == 1;
}

/* ----------------------------------------------------------------
 * Setup
 * ---------------------------------------------------------------- */

static bool
setup_ctx(RedisTls *t, const RedisConnParams *p, RedisFailure *f)
{
	const char *ca = p->tls_ca_file && p->tls_ca_file[0] ? p->tls_ca_file : NULL;
	const char *cert = p->tls_cert_file && p->tls_cert_file[0] ? p->tls_cert_file : NULL;
	const char *key = p->tls_key_file && p->tls_key_file[0] ? p->tls_key_file : NULL;

	ERR_clear_error();
	t->ctx = SSL_CTX_new(TLS_client_method());
	if (t->ctx == NULL)
		return tls_failure(f, ERRCODE_OUT_OF_MEMORY,
						   pstrdup("could not create a TLS context for Redis"), ssl_reason());
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
					 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_default_passwd_cb(t->ctx, no_passphrase_cb);

	if (p->tls_verify != RS_TLS_VERIFY_NONE)
	{
		if (ca)
		{
			if (!check_readable("redis_sync.tls_ca_file", ca, f))
				return false;
			if (SSL_CTX_load_verify_locations(t->ctx, ca, NULL) != 1)
				return tls_failure(f, ERRCODE_CONFIG_FILE_ERROR,
								   psprintf("could not load redis_sync.tls_ca_file \"%s\"", ca),
								   psprintf("OpenSSL: %s.", ssl_reason()));
		}
		else if (SSL_CTX_set_default_verify_paths(t->ctx) != 1)
			return tls_failure(f, ERRCODE_CONFIG_FILE_ERROR,
							   pstrdup("could not load the system trust store for TLS to Redis"),
							   psprintf("OpenSSL: %s.  Set redis_sync.tls_ca_file.", ssl_reason()));
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
	}
	else
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);

	if (cert || key)
	{
		if (!cert || !key)
			return tls_failure(f, ERRCODE_CONFIG_FILE_ERROR,
							   pstrdup(cert ? "redis_sync.tls_cert_file is set but redis_sync.tls_key_file is not" :
									   "redis_sync.tls_key_file is set but redis_sync.tls_cert_file is not"),
							   pstrdup("A client certificate needs both its certificate and its private key."));
		if (!check_readable("redis_sync.tls_cert_file", cert, f) ||
			!check_readable("redis_sync.tls_key_file", key, f))
			return false;
		if (!check_key_permissions(key, f))
			return false;
		if (SSL_CTX_use_certificate_chain_file(t->ctx, cert) != 1)
			return tls_failure(f, ERRCODE_CONFIG_FILE_ERROR,
							   psprintf("could not load redis_sync.tls_cert_file \"%s\"", cert),
							   psprintf("OpenSSL: %s.", ssl_reason()));
		ERR_clear_error();
		if (SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1)
		{
			if (ERR_GET_REASON(ERR_peek_error()) == X509_R_KEY_VALUES_MISMATCH)
				return tls_failure(f, ERRCODE_CONFIG_FILE_ERROR,
								   psprintf("redis_sync.tls_key_file \"%s\" does not match redis_sync.tls_cert_file \"%s\"",
											key, cert),
								   psprintf("OpenSSL: %s.", ssl_reason()));
			return tls_failure(f, ERRCODE_CONFIG_FILE_ERROR,
							   psprintf("could not load redis_sync.tls_key_file \"%s\"", key),
							   psprintf("OpenSSL: %s.  The key must be in PEM form and not protected by a passphrase.",
										ssl_reason()));
		}
		if (SSL_CTX_check_private_key(t->ctx) != 1)
			return tls_failure(f, ERRCODE_CONFIG_FILE_ERROR,
							   psprintf("redis_sync.tls_key_file \"%s\" does not match redis_sync.tls_cert_file \"%s\"",
										key, cert),
							   psprintf("OpenSSL: %s.", ssl_reason()));
	}
	return true;
}

RedisTls *
redis_tls_create(int fd, const RedisConnParams *p, const char *display,
				 RedisFailure *f)
{
	RedisTls   *t = MemoryContextAllocZero(TopMemoryContext, sizeof(RedisTls));
	const char *name;

	t->display = display;
	t->verify = p->tls_verify;
	if (!setup_ctx(t, p, f))
	{
		redis_tls_free(t);
		return NULL;
	}

	ERR_clear_error();
	t->ssl = SSL_new(t->ctx);
	if (t->ssl == NULL || SSL_set_fd(t->ssl, fd) != 1)
	{
		tls_failure(f, ERRCODE_OUT_OF_MEMORY,
					pstrdup("could not create a TLS session for Redis"), ssl_reason());
		redis_tls_free(t);
		return NULL;
	}
	SSL_set_connect_state(t->ssl);

	name = p->tls_server_name && p->tls_server_name[0] ? p->tls_server_name : p->host;
	if (name && name[0])
	{
		bool		ip = is_ip_address(name);

		/* SNI carries host names only */
		if (!ip)
			SSL_set_tlsext_host_name(t->ssl, name);
		if (t->verify == RS_TLS_VERIFY_FULL)
		{
			X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
			int			ok;

			X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name) :
				X509_VERIFY_PARAM_set1_host(vp, name, 0);
			if (ok != 1)
			{
				tls_failure(f, ERRCODE_INVALID_PARAMETER_VALUE,
							psprintf("could not set the name \"%s\" to verify in Redis's TLS certificate", name),
							ssl_reason());
				redis_tls_free(t);
				return NULL;
			}
			t->verify_name = MemoryContextStrdup(TopMemoryContext, name);
		}
	}
	return t;
}

void
redis_tls_free(RedisTls *t)
{
	if (t == NULL)
		return;
	if (t->ssl)
		SSL_free(t->ssl);
	if (t->ctx)
		SSL_CTX_free(t->ctx);
	if (t->verify_name)
		pfree(t->verify_name);
	pfree(t);
	ERR_clear_error();
}

/* ----------------------------------------------------------------
 * Handshake, reads, writes
 * ---------------------------------------------------------------- */

/* the detail of a failed handshake or I/O call (err from SSL_get_error) */
static char *
io_failure_detail(RedisTls *t, int err, int ret)
{
	long		vr;

	if (!t->handshake_done && t->verify != RS_TLS_VERIFY_NONE &&
		(vr = SSL_get_verify_result(t->ssl)) != X509_V_OK)
	{
		ERR_clear_error();
		if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH)
			return psprintf("The server's TLS certificate does not match the name \"%s\" (host name mismatch).  "
							"Set redis_sync.tls_server_name to a name the certificate holds, "
							"or redis_sync.tls_verify = ca to check the chain only.",
							t->verify_name ? t->verify_name : "");
		return psprintf("TLS certificate verification failed: %s.",
						X509_verify_cert_error_string(vr));
	}
	if (err == SSL_ERROR_ZERO_RETURN)
		return pstrdup("The server closed the TLS connection.");
	if (err == SSL_ERROR_SYSCALL)
	{
		int			save = errno;

		if (ERR_peek_error() != 0)
			return psprintf("TLS error: %s.", ssl_reason());
		if (ret == 0 || save == 0)
			return pstrdup(t->handshake_done ? "The server closed the connection." :
						   "The server closed the connection during the TLS handshake.");
		if (!t->handshake_done)
			return psprintf("The connection failed during the TLS handshake: %s.  Does the server accept TLS on this port?",
							strerror(save));
		return psprintf("TLS: %s.", strerror(save));
	}
	{
		unsigned long e = ERR_peek_error();
		char	   *reason = ssl_reason();

#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
		/* OpenSSL 3 reports a peer that hangs up without close_notify so */
		if (ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
			return pstrdup(t->handshake_done ? "The server closed the connection." :
						   "The server closed the connection during the TLS handshake.  Does the server accept TLS on this port?");
#endif
		if (ERR_GET_REASON(e) == SSL_R_WRONG_VERSION_NUMBER ||
			ERR_GET_REASON(e) == SSL_R_PACKET_LENGTH_TOO_LONG)
			return psprintf("TLS error: %s.  Does the server accept TLS on this port?", reason);
		return psprintf("TLS error: %s.", reason);
	}
}

int
redis_tls_handshake_step(RedisTls *t, RedisFailure *f)
{
	int			r,
				err;
	char	   *detail;

	ERR_clear_error();
	errno = 0;
	r = SSL_do_handshake(t->ssl);
	if (r == 1)
	{
		t->handshake_done = true;
		return 0;
	}
	err = SSL_get_error(t->ssl, r);
	if (err == SSL_ERROR_WANT_READ)
		return WL_SOCKET_READABLE;
	if (err == SSL_ERROR_WANT_WRITE)
		return WL_SOCKET_WRITEABLE;
	/* the detail first: it reads errno, which psprintf may change */
	detail = io_failure_detail(t, err, r);
	tls_failure(f, ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
				psprintf("could not establish a TLS connection to Redis at %s", t->display),
				detail);
	return -1;
}

/*
 * The outcome of an SSL_read or SSL_write that returned r: bytes moved
 * (r > 0), 0 with *want set when OpenSSL must wait for the socket (either
 * direction: a read may need to write during renegotiation and the other
 * way round), or -1 with f filled when the connection is lost.
 */
static ssize_t
io_outcome(RedisTls *t, int r, int *want, RedisFailure *f)
{
	int			err;
	char	   *detail;

	if (r > 0)
		return r;
	err = SSL_get_error(t->ssl, r);
	if (err == SSL_ERROR_WANT_READ)
	{
		*want = WL_SOCKET_READABLE;
		return 0;
	}
	if (err == SSL_ERROR_WANT_WRITE)
	{
		*want = WL_SOCKET_WRITEABLE;
		return 0;
	}
	/* the detail first: it reads errno, which psprintf may change */
	detail = io_failure_detail(t, err, r);
	tls_failure(f, ERRCODE_CONNECTION_FAILURE,
				psprintf("lost connection to Redis at %s", t->display), detail);
	return -1;
}

ssize_t
redis_tls_read(RedisTls *t, char *buf, size_t len, int *want, RedisFailure *f)
{
	ERR_clear_error();
	errno = 0;
	return io_outcome(t, SSL_read(t->ssl, buf, (int) Min(len, (size_t) INT_MAX)), want, f);
}

ssize_t
redis_tls_write(RedisTls *t, const char *buf, size_t len, int *want, RedisFailure *f)
{
	ERR_clear_error();
	errno = 0;
	return io_outcome(t, SSL_write(t->ssl, buf, (int) Min(len, (size_t) (1 << 30))), want, f);
}

bool
redis_tls_idle_stale(RedisTls *t)
{
	char		b;
	int			r;

	if (SSL_pending(t->ssl) > 0)
		return true;
	ERR_clear_error();
	r = SSL_read(t->ssl, &b, 1);
	if (r > 0)
		return true;			/* unsolicited data: junk */
	if (SSL_get_error(t->ssl, r) == SSL_ERROR_WANT_READ)
	{
		/* housekeeping records only (session tickets); still usable */
		return SSL_pending(t->ssl) > 0;
	}
	ERR_clear_error();
	return true;
}

const char *
redis_tls_describe(RedisTls *t)
{
	return psprintf("%s %s", SSL_get_version(t->ssl), SSL_get_cipher_name(t->ssl));
}
