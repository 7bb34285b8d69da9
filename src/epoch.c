/*-------------------------------------------------------------------------
 *
 * epoch.c
 *		The server epoch: the middle part of every version (encode.c).
 *
 * A version is the WAL timeline, this epoch and the WAL insert position at
 * pre-commit.  The insert position alone is not monotonic: a push happens
 * before the commit record is flushed, and a crash (a backend killed, a
 * power loss) loses the WAL not yet on disk, so after recovery the insert
 * position restarts below versions that Redis may already hold for writes
 * that never committed.  The epoch goes up each time shared memory is
 * initialised (postmaster start, and its reinitialisation after a backend
 * crashed), so every version of an incarnation is above every version of
 * the earlier ones, whatever WAL they lost.
 *
 * The epoch is stored in $PGDATA/redis_sync.epoch, written durably (a
 * temporary file, fsync, durable_rename) before any version of the new
 * incarnation exists.  The next epoch is max(stored + 1, now in seconds
 * since 1970): stored + 1 makes it grow on this cluster whatever the clock
 * does; the clock makes a cluster without the file (a new one, restored
 * from a dump, or made by pg_upgrade) start above the epochs of the
 * cluster it replaces, and above every 0.1 version (24 hex digits: the
 * epoch faces the upper 32 bits of its WAL position; a 0.1 version would
 * need more than 6 EB of WAL to reach an epoch of 2024 or later).
 *
 * With shared_preload_libraries, the postmaster advances the epoch in
 * shmem_startup_hook (errors there are only logged: the postmaster must
 * not die of them).  Without it (or if that failed), the first backend
 * that needs a version does, in a small struct it allocates in the shared
 * memory slack under AddinShmemInitLock; the struct is gone after a crash
 * restart, so the next incarnation advances again.  A failure to record
 * the epoch is an ERROR for the write that needed a version: a version
 * that could repeat an earlier incarnation's is never used.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "encode.h"

#define EPOCH_FILE "redis_sync.epoch"
#define EPOCH_TMP "redis_sync.epoch.tmp"

typedef struct RsEpochShared
{
	uint32		epoch;			/* 0: not recorded yet */
} RsEpochShared;

static RsEpochShared *epoch_shared = NULL;
static uint32 my_epoch = 0;		/* backends: the incarnation's epoch */

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * Read the number stored in file (0 when there is no file; a stored 0 is
 * corrupt unless zero_ok); false on failure (reported at elevel).  Also
 * identity.c's timeline base floor.
 */
bool
rs_file_read_uint32(const char *file, uint32 *stored, bool zero_ok, int elevel)
{
	int			fd;
	char		buf[32];
	int			n;
	char	   *end;
	unsigned long v;

	*stored = 0;
	fd = OpenTransientFile(file, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		if (errno == ENOENT)
			return true;
		ereport(elevel,
				(errcode_for_file_access(),
				 errmsg("redis_sync: could not open file \"%s\": %m", file)));
		return false;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0)
	{
		int			save = errno;

		CloseTransientFile(fd);
		errno = save;
		ereport(elevel,
				(errcode_for_file_access(),
				 errmsg("redis_sync: could not read file \"%s\": %m", file)));
		return false;
	}
	CloseTransientFile(fd);
	buf[n] = '\0';
	errno = 0;
	v = strtoul(buf, &end, 10);
	if (errno != 0 || end == buf || (*end != '\n' && *end != '\0') || (v == 0 && !zero_ok) ||
		v >= PG_UINT32_MAX)
	{
		ereport(elevel,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("redis_sync: file \"%s\" is corrupt", file),
				 errhint("Remove the file after flushing the synced keys from Redis; they are rewritten by warm().")));
		return false;
	}
	*stored = (uint32) v;
	return true;
}

/*
 * Store v in file durably (a temporary file tmp, fsync, durable_rename);
 * false on failure (reported at elevel)
 */
bool
rs_file_write_uint32(const char *file, const char *tmp, uint32 v, int elevel)
{
	int			fd;
	char		buf[32];
	int			len = snprintf(buf, sizeof(buf), "%u\n", v);

	fd = OpenTransientFile(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
	{
		ereport(elevel,
				(errcode_for_file_access(),
				 errmsg("redis_sync: could not create file \"%s\": %m", tmp)));
		return false;
	}
	errno = 0;
	if (write(fd, buf, len) != len)
	{
		int			save = errno ? errno : ENOSPC;

		CloseTransientFile(fd);
		errno = save;
		ereport(elevel,
				(errcode_for_file_access(),
				 errmsg("redis_sync: could not write file \"%s\": %m", tmp)));
		return false;
	}
	if (pg_fsync(fd) != 0)
	{
		int			save = errno;

		CloseTransientFile(fd);
		errno = save;
		ereport(elevel,
				(errcode_for_file_access(),
				 errmsg("redis_sync: could not fsync file \"%s\": %m", tmp)));
		return false;
	}
	if (CloseTransientFile(fd) != 0)
	{
		ereport(elevel,
				(errcode_for_file_access(),
				 errmsg("redis_sync: could not close file \"%s\": %m", tmp)));
		return false;
	}
	/* fsyncs the file and the data directory */
	return durable_rename(tmp, file, elevel) == 0;
}

/* the next epoch, recorded durably; 0 on failure (reported at elevel) */
static uint32
epoch_advance(int elevel)
{
	uint32		stored;
	uint32		next;
	time_t		now = time(NULL);

	if (!rs_file_read_uint32(EPOCH_FILE, &stored, false, elevel))
		return 0;
	next = stored + 1;
	if (now > 0 && (uint64) now < PG_UINT32_MAX && (uint32) now > next)
		next = (uint32) now;
	if (!rs_file_write_uint32(EPOCH_FILE, EPOCH_TMP, next, elevel))
		return 0;
	return next;
}

static void
epoch_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(RsEpochShared)));
}

static void
epoch_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	epoch_shared = ShmemInitStruct("redis_sync epoch", sizeof(RsEpochShared), &found);
	if (!found)
	{
		epoch_shared->epoch = 0;
		/* the postmaster, at start and at each reinitialisation after a crash */
		if (!IsUnderPostmaster)
			epoch_shared->epoch = epoch_advance(LOG);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* from _PG_init, when preloading */
void
rs_epoch_preload_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = epoch_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = epoch_shmem_startup;
}

/* this incarnation's epoch, recorded first if nobody did yet */
uint32
rs_epoch(void)
{
	if (my_epoch != 0)
		return my_epoch;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	if (epoch_shared == NULL)
	{
		bool		found;

		/* not preloaded: in the shared memory slack, once per incarnation */
		epoch_shared = ShmemInitStruct("redis_sync epoch", sizeof(RsEpochShared), &found);
		if (!found)
			epoch_shared->epoch = 0;
	}
	if (epoch_shared->epoch == 0)
		epoch_shared->epoch = epoch_advance(ERROR); /* ERROR releases the lock */
	my_epoch = epoch_shared->epoch;
	LWLockRelease(AddinShmemInitLock);
	if (my_epoch == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("redis_sync: could not record the server epoch")));
	return my_epoch;
}
