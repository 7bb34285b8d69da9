/*-------------------------------------------------------------------------
 *
 * circuit.c
 *		The circuit breaker of a database: stop trying a Redis that is down.
 *
 * The circuit breaker counts consecutive connection-level failures to
 * Redis across the backends and the worker of one database.  At redis_sync.circuit_failures it opens:
 * for redis_sync.circuit_cooldown backends do not try Redis at all (eventual
 * tables queue to the outbox at once, strict ones fail at once), while the
 * worker keeps probing; the first success anywhere closes it.  Its state
 * lives in the database's slot (shmem.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "port/atomics.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "shmem.h"

static int	rs_circuit_failures_threshold = 3;
static int	rs_circuit_cooldown_ms = 5000;

/* from _PG_init: the circuit breaker's settings */
void
rs_circuit_init(void)
{
	DefineCustomIntVariable("redis_sync.circuit_failures",
							"Consecutive connection failures that open the circuit breaker (0 disables it).",
							NULL,
							&rs_circuit_failures_threshold,
							3, 0, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("redis_sync.circuit_cooldown",
							"How long an open circuit breaker keeps backends from trying Redis.",
							"The background worker keeps probing and closes the circuit as soon as Redis answers.",
							&rs_circuit_cooldown_ms,
							5000, 10, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}

/* ----------------------------------------------------------------
 * Circuit breaker (of this database)
 * ---------------------------------------------------------------- */

bool
rs_circuit_is_open(void)
{
	RsDbSlot   *sl;
	bool		open;
	TimestampTz opened;

	if (!rs_shmem_ready())
		return false;
	sl = rs_my_slot();
	SpinLockAcquire(&sl->mutex);
	open = sl->open;
	opened = sl->opened_at;
	SpinLockRelease(&sl->mutex);
	if (!open)
		return false;
	/* after the cool-down one caller may try again (half-open) */
	if (TimestampDifferenceExceeds(opened, GetCurrentTimestamp(), rs_circuit_cooldown_ms))
	{
		SpinLockAcquire(&sl->mutex);
		sl->opened_at = GetCurrentTimestamp();	/* others keep waiting */
		SpinLockRelease(&sl->mutex);
		return false;
	}
	return true;
}

void
rs_circuit_success(void)
{
	RsDbSlot   *sl;

	if (!rs_shmem_ready())
		return;
	sl = rs_my_slot();
	/* unlocked peek: the common case is a closed circuit with no failures */
	if (sl->failures == 0 && !sl->open)
		return;
	SpinLockAcquire(&sl->mutex);
	sl->failures = 0;
	if (sl->open)
	{
		sl->open = false;
		sl->changed_at = GetCurrentTimestamp();
	}
	SpinLockRelease(&sl->mutex);
}

void
rs_circuit_failure(const char *msg)
{
	RsDbSlot   *sl;
	TimestampTz now;
	bool		opened = false;

	if (!rs_shmem_ready())
		return;
	sl = rs_my_slot();
	now = GetCurrentTimestamp();
	SpinLockAcquire(&sl->mutex);
	sl->failures++;
	strlcpy(sl->last_error, msg, RS_ERRLEN);
	sl->last_error_at = now;
	if (!sl->open && rs_circuit_failures_threshold > 0 &&
		sl->failures >= rs_circuit_failures_threshold)
	{
		sl->open = true;
		sl->opened_at = now;
		sl->changed_at = now;
		opened = true;
	}
	else if (sl->open)
		sl->opened_at = now;
	SpinLockRelease(&sl->mutex);
	if (opened)
		pg_atomic_fetch_add_u64(&sl->circuit_opens, 1);
}

int
rs_circuit_failures(void)
{
	RsDbSlot   *sl;
	int			n;

	if (!rs_shmem_ready())
		return 0;
	sl = rs_my_slot();
	SpinLockAcquire(&sl->mutex);
	n = sl->failures;
	SpinLockRelease(&sl->mutex);
	return n;
}

/* the circuit breaker's state, without taking the half-open turn */
bool
rs_circuit_open_peek(void)
{
	RsDbSlot   *sl = rs_my_slot();
	bool		open;

	SpinLockAcquire(&sl->mutex);
	open = sl->open;
	SpinLockRelease(&sl->mutex);
	return open;
}


/* the last connection error seen in this database ("" when none) */
void
rs_circuit_last_error(char *buf, size_t len)
{
	RsDbSlot   *sl = rs_my_slot();

	SpinLockAcquire(&sl->mutex);
	strlcpy(buf, sl->last_error, len);
	SpinLockRelease(&sl->mutex);
}
