/*-------------------------------------------------------------------------
 *
 * redis_url.c
 *		Parse redis_sync.redis_url into a RedisEndpoint.
 *
 * Accepted forms:
 *		redis://[user[:password]@]host[:port][/db]
 *		rediss://... (the same, over TLS)
 *		redis://[user[:password]@][ipv6-address]:port/db
 *		unix:///path/to/redis.sock[?db=N[&user=U][&password=P]]
 *
 * User and password may be percent-encoded.  Error texts name the part that
 * is wrong but never repeat the URL, because it may hold a password.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "lib/stringinfo.h"

#include "redis_url.h"

#define URL_HINT "Use redis://[user[:password]@]host[:port][/db] or unix:///path/to/redis.sock[?db=N]."

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * percent-decode [s, s+len); NULL when an escape is malformed, or is %00:
 * a password or user name is kept as a C string, and a NUL would cut it
 * short without a word
 */
static char *
url_decode(const char *s, size_t len)
{
	StringInfoData buf;
	size_t		i;

	initStringInfo(&buf);
	for (i = 0; i < len; i++)
	{
		if (s[i] == '%')
		{
			int			hi,
						lo;

			if (i + 2 >= len)
				return NULL;
			hi = hexval(s[i + 1]);
			lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0 || hi * 16 + lo == 0)
				return NULL;
			appendStringInfoChar(&buf, (char) (hi * 16 + lo));
			i += 2;
		}
		else
			appendStringInfoChar(&buf, s[i]);
	}
	return buf.data;
}

/* parse a decimal integer in [min, max] from [s, s+len) */
static bool
parse_int_range(const char *s, size_t len, long min, long max, int *out)
{
	long		v = 0;
	size_t		i;

	if (len == 0 || len > 10)
		return false;
	for (i = 0; i < len; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v < min || v > max)
		return false;
	*out = (int) v;
	return true;
}

static bool
fail(char **err, char **detail, const char *e, const char *d)
{
	*err = pstrdup(e);
	*detail = d ? pstrdup(d) : NULL;
	return false;
}

/* user[:password] from [s, s+len) */
static bool
parse_userinfo(const char *s, size_t len, RedisEndpoint *ep,
			   char **err, char **detail)
{
	const char *colon = memchr(s, ':', len);
	size_t		ulen = colon ? (size_t) (colon - s) : len;

	if (ulen > 0)
	{
		ep->user = url_decode(s, ulen);
		if (ep->user == NULL)
			return fail(err, detail, "invalid Redis URL: malformed percent-escape in the user name", NULL);
	}
	if (colon)
	{
		ep->password = url_decode(colon + 1, len - ulen - 1);
		if (ep->password == NULL)
			return fail(err, detail, "invalid Redis URL: malformed percent-escape in the password", NULL);
	}
	return true;
}

static bool
parse_tcp(const char *p, RedisEndpoint *ep, char **err, char **detail)
{
	const char *end = p + strlen(p);
	const char *slash = strchr(p, '/');
	const char *at;
	const char *hostport_end = slash ? slash : end;
	const char *host,
			   *host_end,
			   *port_s = NULL;

	if (strchr(p, '?') || strchr(p, '#'))
		return fail(err, detail, "invalid Redis URL: query strings are not supported in redis:// URLs",
					"Put the database number in the path, as in redis://host:6379/2.");

	/* userinfo is everything before the last '@' of the authority */
	at = NULL;
	for (const char *q = p; q < hostport_end; q++)
		if (*q == '@')
			at = q;
	if (at)
	{
		if (!parse_userinfo(p, at - p, ep, err, detail))
			return false;
		p = at + 1;
	}

	host = p;
	if (*host == '[')
	{
		const char *rb = memchr(host, ']', hostport_end - host);

		if (rb == NULL)
			return fail(err, detail, "invalid Redis URL: unterminated \"[\" in IPv6 host", NULL);
		ep->host = pnstrdup(host + 1, rb - host - 1);
		host_end = rb + 1;
		if (host_end < hostport_end)
		{
			if (*host_end != ':')
				return fail(err, detail, "invalid Redis URL: expected \":\" after the IPv6 address", NULL);
			port_s = host_end + 1;
		}
	}
	else
	{
		const char *colon = memchr(host, ':', hostport_end - host);

		host_end = colon ? colon : hostport_end;
		ep->host = pnstrdup(host, host_end - host);
		if (colon)
			port_s = colon + 1;
	}
	if (ep->host[0] == '\0')
		return fail(err, detail, "invalid Redis URL: host name is empty", NULL);

	ep->port = 6379;
	if (port_s != NULL)
	{
		if (!parse_int_range(port_s, hostport_end - port_s, 1, 65535, &ep->port))
		{
			char	   *d = psprintf("The port \"%s\" is not a number between 1 and 65535.",
									 pnstrdup(port_s, hostport_end - port_s));

			return fail(err, detail, "invalid Redis URL: bad port", d);
		}
	}

	ep->db = 0;
	if (slash && slash[1] != '\0')
	{
		if (!parse_int_range(slash + 1, end - slash - 1, 0, INT_MAX, &ep->db))
		{
			char	   *d = psprintf("The database \"%s\" is not a non-negative integer.", slash + 1);

			return fail(err, detail, "invalid Redis URL: bad database number", d);
		}
	}

	if (strchr(ep->host, ':'))
		ep->display = psprintf("[%s]:%d", ep->host, ep->port);
	else
		ep->display = psprintf("%s:%d", ep->host, ep->port);
	return true;
}

static bool
parse_unix(const char *p, RedisEndpoint *ep, char **err, char **detail)
{
	const char *q = strchr(p, '?');
	size_t		plen = q ? (size_t) (q - p) : strlen(p);

	if (plen == 0 || p[0] != '/')
		return fail(err, detail, "invalid Redis URL: unix socket path must be absolute",
					"Write three slashes, as in unix:///run/redis/redis.sock.");
	ep->socket_path = pnstrdup(p, plen);
	ep->db = 0;
	ep->display = psprintf("unix:%s", ep->socket_path);

	if (q)
	{
		const char *s = q + 1;

		while (*s)
		{
			const char *amp = strchr(s, '&');
			size_t		len = amp ? (size_t) (amp - s) : strlen(s);
			const char *eq = memchr(s, '=', len);
			size_t		klen;
			const char *v;
			size_t		vlen;

			if (eq == NULL)
				return fail(err, detail, "invalid Redis URL: query parameter without \"=\"", NULL);
			klen = eq - s;
			v = eq + 1;
			vlen = len - klen - 1;
			if (klen == 2 && strncmp(s, "db", 2) == 0)
			{
				if (!parse_int_range(v, vlen, 0, INT_MAX, &ep->db))
				{
					char	   *d = psprintf("The database \"%s\" is not a non-negative integer.",
											 pnstrdup(v, vlen));

					return fail(err, detail, "invalid Redis URL: bad database number", d);
				}
			}
			else if (klen == 4 && strncmp(s, "user", 4) == 0)
			{
				ep->user = url_decode(v, vlen);
				if (ep->user == NULL)
					return fail(err, detail, "invalid Redis URL: malformed percent-escape in the user name", NULL);
			}
			else if (klen == 8 && strncmp(s, "password", 8) == 0)
			{
				ep->password = url_decode(v, vlen);
				if (ep->password == NULL)
					return fail(err, detail, "invalid Redis URL: malformed percent-escape in the password", NULL);
			}
			else
			{
				char	   *d = psprintf("Unknown parameter \"%s\"; known ones are db, user and password.",
										 pnstrdup(s, klen));

				return fail(err, detail, "invalid Redis URL: unknown query parameter", d);
			}
			s += len;
			if (*s == '&')
				s++;
		}
	}
	return true;
}

/*
 * Redis Cluster seeds: "redis://[userinfo@]host1:port1,host2:port2[/db]" is
 * expanded into one URL per host, each with the same scheme, user info and
 * path.  Returns the number of URLs (1 for a URL without a comma in its host
 * part); *urls palloc'd.
 */
int
redis_url_split_seeds(const char *url, char ***urls)
{
	const char *sep = url ? strstr(url, "://") : NULL;
	const char *auth,
			   *end,
			   *at,
			   *h;
	int			n = 1;
	int			i = 0;

	*urls = NULL;
	if (sep == NULL || strncmp(url, "unix://", 7) == 0)
		goto one;
	auth = sep + 3;
	end = auth + strcspn(auth, "/?");
	at = NULL;
	for (const char *c = auth; c < end; c++)
		if (*c == '@')
			at = c;
	h = at ? at + 1 : auth;
	for (const char *c = h; c < end; c++)
		if (*c == ',')
			n++;
	if (n == 1)
		goto one;
	*urls = palloc(sizeof(char *) * n);
	{
		int			plen = (int) (h - url); /* scheme and user info */

		while (h <= end && i < n)
		{
			const char *c = h;

			while (c < end && *c != ',')
				c++;
			(*urls)[i++] = psprintf("%.*s%.*s%s", plen, url, (int) (c - h), h, end);
			h = c + 1;
		}
	}
	return n;
one:
	*urls = palloc(sizeof(char *));
	(*urls)[0] = pstrdup(url ? url : "");
	return 1;
}

bool
redis_parse_url(const char *url, RedisEndpoint *ep, char **err, char **detail)
{
	memset(ep, 0, sizeof(*ep));
	*err = NULL;
	*detail = NULL;

	if (url == NULL || url[0] == '\0')
		return fail(err, detail, "invalid Redis URL: the URL is empty", NULL);
	{
		/* cluster seeds: every one must parse; the endpoint is the first */
		char	  **seeds;
		int			nseeds = redis_url_split_seeds(url, &seeds);

		if (nseeds > 1)
		{
			for (int i = nseeds - 1; i >= 0; i--)
				if (!redis_parse_url(seeds[i], ep, err, detail))
					return false;
			return true;
		}
	}
	if (strncmp(url, "redis://", 8) == 0)
		return parse_tcp(url + 8, ep, err, detail);
	if (strncmp(url, "unix://", 7) == 0)
		return parse_unix(url + 7, ep, err, detail);
	if (strncmp(url, "rediss://", 9) == 0)
	{
		ep->tls = true;
		return parse_tcp(url + 9, ep, err, detail);
	}
	{
		const char *sep = strstr(url, "://");
		char	   *d;

		if (sep)
			d = psprintf("The scheme \"%s\" is not supported.", pnstrdup(url, Min(sep - url, 32)));
		else
			d = pstrdup("The URL has no scheme.");
		return fail(err, detail, "invalid Redis URL: unsupported scheme", d);
	}
}

void
redis_parse_url_or_error(const char *url, RedisEndpoint *ep)
{
	char	   *err,
			   *detail;

	if (!redis_parse_url(url, ep, &err, &detail))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", err),
				 detail ? errdetail("%s", detail) : 0,
				 errhint(URL_HINT)));
}
