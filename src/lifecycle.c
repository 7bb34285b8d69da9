/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *		Helpers of the event triggers that follow a synced table's life:
 *		DROP TABLE and partitions attached or detached.
 *
 * redis_sync._purge_dropped(relid, prefix) queues the removal of every key
 * under a dropped table's prefix; the worker delivers it like a TRUNCATE of
 * an async table (a DROP never waits for Redis, and commits while Redis is
 * down).  Where no worker delivers the outbox (the library is not preloaded,
 * or a database redis_sync.database leaves out) the purge is pushed at
 * commit instead, falling back to the outbox as eventual tables do.
 *
 * redis_sync._ddl_partitions(command, attached) reads a command collected
 * by a ddl_command_end event trigger and returns the partitions it created
 * (CREATE TABLE ... PARTITION OF) and the partitioned tables it attached a
 * partition to (ALTER TABLE ... ATTACH PARTITION), or, with attached =
 * false, the partitioned tables it detached a partition from.  The event trigger needs to
 * tell these apart from any other ALTER TABLE of a partition: a restore
 * (pg_restore, psql < dump) adds constraints to partitions after the
 * configuration was restored, and a guard created then would collide with
 * the dump's own CREATE TRIGGER of that guard.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "tcop/deparse_utility.h"
#include "utils/builtins.h"

#include "allowlist.h"
#include "capture.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(redis_sync_purge_dropped);
PG_FUNCTION_INFO_V1(redis_sync_ddl_partitions);

/* true in the database the worker delivers the outbox of */
static bool
worker_database(void)
{
	return rs_database_served(MyDatabaseId);
}

/* redis_sync._purge_dropped(tbl oid, key_prefix text) */
Datum
redis_sync_purge_dropped(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *prefix = text_to_cstring(PG_GETARG_TEXT_PP(1));

	if (prefix[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key_prefix must not be empty")));
	rs_capture_purge(relid, prefix, false, rs_preloaded && worker_database());
	PG_RETURN_VOID();
}

/* redis_sync._ddl_partitions(cmd pg_ddl_command, attached boolean) RETURNS oid[] */
Datum
redis_sync_ddl_partitions(PG_FUNCTION_ARGS)
{
	CollectedCommand *cmd = (CollectedCommand *) PG_GETARG_POINTER(0);
	bool		attached = PG_GETARG_BOOL(1);
	List	   *oids = NIL;
	ListCell   *lc;
	Datum	   *elems;
	int			n = 0;

	if (cmd == NULL)
		PG_RETURN_NULL();
	if (cmd->type == SCT_Simple && attached && cmd->parsetree != NULL &&
		IsA(cmd->parsetree, CreateStmt) &&
		((CreateStmt *) cmd->parsetree)->partbound != NULL &&
		cmd->d.simple.address.classId == RelationRelationId)
		oids = lappend_oid(oids, cmd->d.simple.address.objectId);
	else if (cmd->type == SCT_AlterTable)
	{
		foreach(lc, cmd->d.alterTable.subcmds)
		{
			CollectedATSubcmd *sub = lfirst(lc);
			AlterTableCmd *at = (AlterTableCmd *) sub->parsetree;
			bool		match;

			if (at == NULL || !IsA(at, AlterTableCmd))
				continue;
			if (attached)
				match = at->subtype == AT_AttachPartition;
			else
				match = at->subtype == AT_DetachPartition ||
					at->subtype == AT_DetachPartitionFinalize;

			/*
			 * The subcommand does not carry the partition's address, and its
			 * name would have to be resolved with the caller's search_path:
			 * the table altered (the partitioned table) is returned instead.
			 */
			if (match && OidIsValid(cmd->d.alterTable.objectId) &&
				cmd->d.alterTable.classId == RelationRelationId &&
				!list_member_oid(oids, cmd->d.alterTable.objectId))
				oids = lappend_oid(oids, cmd->d.alterTable.objectId);
		}
	}

	elems = palloc(sizeof(Datum) * Max(list_length(oids), 1));
	foreach(lc, oids)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
}
