/*-------------------------------------------------------------------------
 *
 * as_owner.h
 *		Running code with rights other than the caller's, the way
 *		PostgreSQL's maintenance commands (VACUUM, REFRESH MATERIALIZED
 *		VIEW) do it: as a given role, in SECURITY_RESTRICTED_OPERATION,
 *		with search_path fixed to "pg_catalog, pg_temp".
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_AS_OWNER_H
#define RS_AS_OWNER_H

#include "postgres.h"

#include "datatype/timestamp.h"

typedef struct RsAsOwner
{
	Oid			save_uid;
	int			save_sec;
	int			save_nestlevel;
	Oid			save_untrusted_role;
	bool		active;
} RsAsOwner;

/*
 * Become role (restricted, fixed search_path) until rs_as_owner_leave().
 * Call leave on every path out, errors included (PG_FINALLY):
 *
 *		rs_as_owner_enter(&ao, rs_rel_owner(relid));
 *		PG_TRY(); { ... } PG_FINALLY(); { rs_as_owner_leave(&ao); } PG_END_TRY();
 *
 * Nested use is fine: each level saves and restores its own state.
 */
extern void rs_as_owner_enter(RsAsOwner *ao, Oid role);
extern void rs_as_owner_leave(RsAsOwner *ao);

/*
 * Only fix search_path (no change of identity), for the extension's own
 * queries run in the caller's session (wb_config.c's write-behind
 * configuration load; config.c schema-qualifies every name instead): the
 * caller may be a SECURITY DEFINER function whose search_path includes a
 * schema a less privileged role controls.
 */
extern int	rs_search_path_enter(void);
extern void rs_search_path_leave(int nestlevel);

/*
 * The worker (xact_step.c, worker.c): the role on whose behalf the code
 * running now runs, when a step's overrun may stop it by ending the worker:
 * the outermost role rs_as_owner_enter() became that is not a superuser
 * (InvalidOid when there is none).  Not GetUserId(): a table's code can
 * call a SECURITY DEFINER function of another role, or nest an entry of a
 * superuser (get() of a superuser's table), and spend its time there; the
 * table's owner is still the one responsible.  And the roles (up to
 * RS_QUARANTINE_ROLES) whose code the worker does not run until a time,
 * after their code outlived a step's timeout and its cancel:
 * rs_as_owner_enter() refuses each with
 * ERRCODE_LOCK_NOT_AVAILABLE (the steps retry that later, as they do a lock
 * they could not get).
 */
extern Oid	rs_as_owner_untrusted_role(void);
extern void rs_as_owner_quarantine(Oid role, TimestampTz until);

/*
 * The entry of role in q (RS_QUARANTINE_ROLES of them, shmem.h): its own,
 * else a free one (no role, or a hold that ended before free_before), else
 * the one whose hold ends first, taken over with until and offenses reset.
 * worker.c's slot (free_before 0: ended holds keep their offenses) and the
 * worker's own copy here.
 */
extern struct RsQuarantine *rs_quarantine_entry(struct RsQuarantine *q, Oid role,
												TimestampTz free_before);

/*
 * Run one statement on the extension's own tables (which hold no user code)
 * through SPI as the bootstrap superuser, restricted, with the fixed
 * search_path; returns SPI_processed.  An ERROR "could not <what>" unless
 * SPI returns expect (any success when expect is 0).  admin.c's writes to
 * redis_sync.tables, warm_queue.c's to _warm_queue, wb_api.c's
 * discard_dead_letters().
 */
extern int64 rs_exec_as_superuser(const char *sql, int nargs, Oid *types, Datum *values,
								  const char *nulls, int expect, const char *what);

/* the owner of a relation (ERROR when it does not exist) */
extern Oid	rs_rel_owner(Oid relid);

/* ERROR unless the current user owns the relation (or is a member of its owner) */
extern void rs_require_owner(Oid relid);

/* true when row-level security applies to the current user on relid */
extern bool rs_rls_applies(Oid relid);

#endif							/* RS_AS_OWNER_H */
