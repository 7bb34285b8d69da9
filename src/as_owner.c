/*-------------------------------------------------------------------------
 *
 * as_owner.c
 *		The one place where redis_sync switches identity.
 *
 * Code that runs with rights other than the caller's (the populate of
 * get(), warm, resync, marker repair, re-warm, re-seed, the write-behind
 * drain, writes to the extension's own tables) goes through
 * rs_as_owner_enter()/rs_as_owner_leave().  Like VACUUM and REFRESH
 * MATERIALIZED VIEW it:
 *	- becomes the given role (the table owner for anything that evaluates
 *	  table-specific code: input and output functions, casts, domain
 *	  checks, triggers, policies; the bootstrap superuser for the
 *	  extension's own tables, which hold no user code);
 *	- sets SECURITY_RESTRICTED_OPERATION, so that code cannot change the
 *	  session (SET ROLE, temporary objects, LISTEN, ...);
 *	- fixes search_path to "pg_catalog, pg_temp" in a new GUC nest level,
 *	  so that no object planted in a schema the caller controls is found
 *	  (an exact-match function there would win over pg_catalog's
 *	  polymorphic one, whatever the order of the path).
 *
 * It also holds the small ownership and row-level-security checks that the
 * SQL-callable functions share.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "as_owner.h"
#include "shmem.h"

/*
 * The outermost role rs_as_owner_enter() became that is not a superuser, and
 * the transaction nest level it did so at.  An error that skips
 * rs_as_owner_leave() (a caller without PG_FINALLY) must not leave it set:
 * the abort of that (sub)transaction clears it (untrusted_abort), as it
 * restores the user id; a stale one made the worker blame, and end itself
 * for, an owner whose code was not running (tests/t/298).
 */
static Oid	untrusted_role = InvalidOid;
static int	untrusted_level = 0;
static bool callbacks_registered = false;

/* the worker: roles whose code it runs not before a time (worker.c) */
static RsQuarantine held[RS_QUARANTINE_ROLES];

static void
untrusted_xact_abort(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		untrusted_role = InvalidOid;
}

static void
untrusted_subxact_abort(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && OidIsValid(untrusted_role) &&
		untrusted_level >= GetCurrentTransactionNestLevel())
		untrusted_role = InvalidOid;
}

Oid
rs_as_owner_untrusted_role(void)
{
	return untrusted_role;
}

RsQuarantine *
rs_quarantine_entry(RsQuarantine *q, Oid role, TimestampTz free_before)
{
	RsQuarantine *use = NULL;

	for (int i = 0; i < RS_QUARANTINE_ROLES; i++)
		if (q[i].role == role)
			return &q[i];
	for (int i = 0; i < RS_QUARANTINE_ROLES; i++)
	{
		bool		free = !OidIsValid(q[i].role) || q[i].until <= free_before;

		if (free)
		{
			use = &q[i];
			break;
		}
		if (use == NULL || q[i].until < use->until)
			use = &q[i];
	}
	use->role = role;
	use->until = 0;
	use->offenses = 0;
	return use;
}

void
rs_as_owner_quarantine(Oid role, TimestampTz until)
{
	RsQuarantine *e = rs_quarantine_entry(held, role, GetCurrentTimestamp());

	e->until = Max(e->until, until);
}

/* ERROR when the worker runs no code of role now (rs_as_owner_quarantine) */
static void
check_held(Oid role)
{
	for (int i = 0; i < RS_QUARANTINE_ROLES; i++)
	{
		if (held[i].role != role)
			continue;
		if (GetCurrentTimestamp() < held[i].until)
			ereport(ERROR,
					(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
					 errmsg("redis_sync worker: the code of role \"%s\" is not run until %s",
							GetUserNameFromId(role, true) ? GetUserNameFromId(role, true) : "?",
							timestamptz_to_str(held[i].until)),
					 errdetail("Code of that role (a trigger, a policy, a type's function of one of its tables) ran past a step's time limit: its tables' work waits, so that it cannot hold the worker."),
					 errhint("Its tables' work waits until then; see the log for the step.")));
		held[i].role = InvalidOid;
	}
}

void
rs_as_owner_enter(RsAsOwner *ao, Oid role)
{
	Assert(OidIsValid(role));
	check_held(role);
	GetUserIdAndSecContext(&ao->save_uid, &ao->save_sec);
	ao->save_untrusted_role = untrusted_role;
	if (!OidIsValid(untrusted_role) && !superuser_arg(role))
	{
		if (!callbacks_registered)
		{
			RegisterXactCallback(untrusted_xact_abort, NULL);
			RegisterSubXactCallback(untrusted_subxact_abort, NULL);
			callbacks_registered = true;
		}
		untrusted_role = role;
		untrusted_level = GetCurrentTransactionNestLevel();
	}
	SetUserIdAndSecContext(role, ao->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	ao->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	ao->active = true;
}

void
rs_as_owner_leave(RsAsOwner *ao)
{
	if (!ao->active)
		return;
	ao->active = false;
	AtEOXact_GUC(false, ao->save_nestlevel);
	SetUserIdAndSecContext(ao->save_uid, ao->save_sec);
	untrusted_role = ao->save_untrusted_role;
}

int
rs_search_path_enter(void)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

void
rs_search_path_leave(int nestlevel)
{
	AtEOXact_GUC(false, nestlevel);
}

int64
rs_exec_as_superuser(const char *sql, int nargs, Oid *types, Datum *values,
					 const char *nulls, int expect, const char *what)
{
	RsAsOwner	ao;
	int64		n = 0;

	rs_as_owner_enter(&ao, BOOTSTRAP_SUPERUSERID);
	PG_TRY();
	{
		int			ret;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "redis_sync: SPI_connect failed");
		ret = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);
		if (expect != 0 ? ret != expect : ret < 0)
			elog(ERROR, "redis_sync: could not %s: %s", what, SPI_result_code_string(ret));
		n = (int64) SPI_processed;
		SPI_finish();
	}
	PG_FINALLY();
	{
		rs_as_owner_leave(&ao);
	}
	PG_END_TRY();
	return n;
}

Oid
rs_rel_owner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

void
rs_require_owner(Oid relid)
{
	(void) rs_rel_owner(relid); /* exists? */
	if (!pg_class_ownercheck(relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s", get_rel_name(relid))));
}

bool
rs_rls_applies(Oid relid)
{
	return check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED;
}
