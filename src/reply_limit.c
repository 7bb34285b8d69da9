/*-------------------------------------------------------------------------
 *
 * reply_limit.c
 *		What Redis lets one client's unread replies grow to, asked once per
 *		connection: the write-behind drain's pages and claims and the
 *		marker sweep's pages are sized by it.
 *
 * Redis closes a client whose replies wait unread beyond its
 * client-output-buffer-limit of the normal class, and evicts the largest
 * clients when their memory passes maxmemory-clients.  Neither is set by
 * default, and reading in pages where nothing needs them costs speed, so
 * Redis is asked (CONFIG GET) once per connection (again after a failure
 * dropped it): nothing limited, or the limit it says; a Redis that does not
 * say (CONFIG refused or renamed, as managed services do) counts as limited.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "redis_client.h"
#include "reply_limit.h"

static uint64 asked_generation = 0; /* asked on this connection (0: ask) */
static bool limited = true;		/* a limit, or Redis did not say */
static size_t limit_bytes = 0;	/* the smaller of its hard and soft limits (0:
								 * none said) */

/* one size of a "normal <hard> <soft> <seconds>" class in the value v */
static bool
parse_normal_limit(const char *v, unsigned long long *hard, unsigned long long *soft)
{
	const char *n = strstr(v, "normal ");
	char	   *end;

	if (n == NULL)
		return false;
	n += strlen("normal ");
	*hard = strtoull(n, &end, 10);
	if (end == n || *end != ' ')
		return false;
	n = end + 1;
	*soft = strtoull(n, &end, 10);
	return end != n;
}

/* ask Redis; false when it could not be asked (asked again next time) */
static bool
ask(void)
{
	RedisPipeline *p;
	RedisFailure f;
	const char *argv[3] = {"CONFIG", "GET", NULL};
	RedisValue *obuf,
			   *mmc;
	unsigned long long hard,
				soft;

	if (asked_generation != 0 && asked_generation == redis_connection_generation())
		return true;
	p = redis_pipeline_create();
	argv[2] = "client-output-buffer-limit";
	redis_pipeline_append(p, 3, argv, NULL);
	argv[2] = "maxmemory-clients";
	redis_pipeline_append(p, 3, argv, NULL);
	if (!redis_pipeline_try_exec(p, &f))
	{
		redis_pipeline_free(p);
		return false;
	}
	limited = true;
	limit_bytes = 0;
	obuf = redis_pipeline_reply(p, 0);
	mmc = redis_pipeline_reply(p, 1);
	if (obuf->type == RV_ARRAY && obuf->nelem == 2 && obuf->elems[1].type == RV_STRING &&
		parse_normal_limit(obuf->elems[1].str, &hard, &soft))
	{
		/* a Redis before 7.0 has no maxmemory-clients: an empty reply */
		bool		mmc_none = mmc->type == RV_ARRAY &&
		(mmc->nelem == 0 ||
		 (mmc->nelem == 2 && mmc->elems[1].type == RV_STRING &&
		  strcmp(mmc->elems[1].str, "0") == 0));

		if (hard == 0 && soft == 0 && mmc_none)
			limited = false;
		else
		{
			if (hard > 0)
				limit_bytes = (size_t) hard;
			if (soft > 0)
				limit_bytes = limit_bytes > 0 ? Min(limit_bytes, (size_t) soft) : (size_t) soft;
		}
	}
	redis_pipeline_free(p);
	asked_generation = redis_connection_generation();
	return true;
}

size_t
rs_reply_page_bytes(size_t page)
{
	size_t		bytes = page;

	if (!ask())
		return page;
	if (!limited)
		return SIZE_MAX;
	if (limit_bytes > 0)
		bytes = Min(bytes, limit_bytes / 2);
	return Max(bytes, 16 * 1024);
}

size_t
rs_reply_limit_bytes(void)
{
	return limit_bytes;
}

/* ask Redis again at the next call (a failure may have been its limit) */
void
rs_reply_limit_forget(void)
{
	asked_generation = 0;
}
