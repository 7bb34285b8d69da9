/*-------------------------------------------------------------------------
 *
 * outbox_int.h
 *		Inside the outbox: what its write side (outbox_write.c) and its
 *		deliver side (outbox.c) share.  Other modules use outbox.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_OUTBOX_INT_H
#define RS_OUTBOX_INT_H

#include "postgres.h"

#include "catalog/pg_authid.h"
#include "executor/spi.h"
#include "utils/snapmgr.h"

#include "as_owner.h"

/* run SPI on the extension's own tables (no user code) as the bootstrap superuser */
static inline void
become_owner(RsAsOwner *ao)
{
	rs_as_owner_enter(ao, BOOTSTRAP_SUPERUSERID);
}

static inline void
spi_begin(bool *pushed_snapshot)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "redis_sync: SPI_connect failed");
	*pushed_snapshot = false;
	if (!ActiveSnapshotSet())
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		*pushed_snapshot = true;
	}
}

static inline void
spi_end(bool pushed_snapshot)
{
	if (pushed_snapshot)
		PopActiveSnapshot();
	SPI_finish();
}

#endif							/* RS_OUTBOX_INT_H */
