/*-------------------------------------------------------------------------
 *
 * launcher.h
 *		The launcher (launcher.c) and its DROP/ALTER DATABASE hook
 *		(launcher_hold.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_LAUNCHER_H
#define RS_LAUNCHER_H

#include "postgres.h"

/* redis_sync.max_workers (shmem.c sizes its slots with it) */
extern int	rs_max_workers;

/* redis_sync.max_workers; the launcher when preloaded (from _PG_init) */
extern void rs_launcher_init(void);

/*
 * worker_pause()/worker_resume() in the transaction of CREATE EXTENSION:
 * the database's slot is taken at commit, so the pause is set on it then
 */
extern void rs_launcher_pause_at_commit(bool pause);

/* install the ProcessUtility hook (from rs_launcher_init) */
extern void rs_launcher_hold_init(void);

#endif							/* RS_LAUNCHER_H */
