/*-------------------------------------------------------------------------
 *
 * ddl.c
 *		What an ALTER TABLE did to the columns of a table, for the DDL event
 *		trigger that keeps the sync configuration in step with the table.
 *
 * redis_sync._column_changes(pg_ddl_command) reads one command collected by
 * pg_event_trigger_ddl_commands() and returns a row per column it dropped,
 * renamed or changed the type of.  PL/pgSQL cannot look inside a
 * pg_ddl_command; redis_sync._on_ddl_end() passes it here and then updates
 * the configuration (see _follow_column in the upgrade script).
 *
 * redis_sync._on_trigger_change(), an event trigger at the start of ALTER
 * TABLE, ALTER TRIGGER and DROP TRIGGER, refuses to let a role that does not
 * own a synced (write-through or invalidate) table disable, re-enable,
 * rename or drop the
 * triggers the extension keeps on it and on its partitions: a partition may
 * have another owner, who could otherwise stop the writes to its rows (also
 * those its parent's owner makes) from reaching Redis.  At the start of an
 * ALTER TABLE ... ATTACH / DETACH PARTITION it also has the table's
 * partitions remembered (lifecycle.c), for the event trigger at its end.
 *
 * redis_sync._drop_partition_triggers(tbl) is unsync()'s drop of the
 * triggers it keeps on tbl's partitions, which may belong to other roles.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/dependency.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "nodes/makefuncs.h"
#include "tcop/deparse_utility.h"
#include "utils/builtins.h"

#include "as_owner.h"
#include "lifecycle.h"

PG_FUNCTION_INFO_V1(redis_sync_column_changes);

static void
put(ReturnSetInfo *rsinfo, const char *action, const char *old_name, const char *new_name)
{
	Datum		values[3];
	bool		nulls[3] = {false, old_name == NULL, new_name == NULL};

	values[0] = CStringGetTextDatum(action);
	values[1] = old_name ? CStringGetTextDatum(old_name) : (Datum) 0;
	values[2] = new_name ? CStringGetTextDatum(new_name) : (Datum) 0;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * _column_changes(cmd pg_ddl_command)
 *		RETURNS TABLE(action text, old_name text, new_name text)
 * action: 'add', 'drop', 'rename' (new_name set) or 'type'; and
 * 'unlogged' (no names) for SET UNLOGGED, which _on_ddl_end refuses on a
 * write-through or invalidate table, and 'inherit' for INHERIT (new_name:
 * the new parent's OID), which it refuses when a synced table is, or is
 * above, the new parent.
 */
Datum
redis_sync_column_changes(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	CollectedCommand *cmd;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0))
		return (Datum) 0;
	cmd = (CollectedCommand *) PG_GETARG_POINTER(0);

	if (cmd->type == SCT_AlterTable)
	{
		ListCell   *lc;

		foreach(lc, cmd->d.alterTable.subcmds)
		{
			CollectedATSubcmd *sub = lfirst(lc);
			AlterTableCmd *at;

			if (sub->parsetree == NULL || !IsA(sub->parsetree, AlterTableCmd))
				continue;
			at = (AlterTableCmd *) sub->parsetree;
			if (at->subtype == AT_SetUnLogged)
			{
				put(rsinfo, "unlogged", NULL, NULL);
				continue;
			}
			if (at->subtype == AT_AddInherit)
			{
				/*
				 * the parent as the command resolved it (the subcommand's
				 * address): its name would be looked up again in the search
				 * path of the event trigger, not the command's
				 */
				Oid			parent = sub->address.classId == RelationRelationId ?
				sub->address.objectId : InvalidOid;

				put(rsinfo, "inherit", NULL,
					OidIsValid(parent) ? psprintf("%u", parent) : NULL);
				continue;
			}
			if ((at->subtype == AT_AddColumn || at->subtype == AT_AddColumnRecurse) &&
				at->def != NULL && IsA(at->def, ColumnDef))
			{
				put(rsinfo, "add", ((ColumnDef *) at->def)->colname, NULL);
				continue;
			}
			if (at->name == NULL)
				continue;
			if (at->subtype == AT_DropColumn)
				put(rsinfo, "drop", at->name, NULL);
			else if (at->subtype == AT_AlterColumnType)
				put(rsinfo, "type", at->name, NULL);
		}
	}
	else if (cmd->type == SCT_Simple && cmd->parsetree != NULL &&
			 IsA(cmd->parsetree, RenameStmt))
	{
		RenameStmt *rs = (RenameStmt *) cmd->parsetree;

		if (rs->renameType == OBJECT_COLUMN && rs->subname && rs->newname)
			put(rsinfo, "rename", rs->subname, rs->newname);
	}
	return (Datum) 0;
}

/*
 * _type_text_changed(cmd pg_ddl_command) RETURNS boolean
 *
 * true when an ALTER TYPE changes the text form of existing values of the
 * type: an enum value renamed, or a composite type's attributes added,
 * dropped, retyped or renamed (the json format names attributes).  Adding
 * an enum value or renaming the type changes no value.
 *
 * A table's (or foreign table's) row type is a composite type too: an ALTER
 * TABLE that adds, drops or retypes a column of it, or renames one, changes
 * the text of the values of columns of that row type in other tables just
 * as ALTER TYPE ... ADD/DROP/RENAME ATTRIBUTE does.  The caller purges only
 * the synced tables with a column over the changed type, so an ALTER TABLE
 * of a table whose row type no synced table uses removes nothing.  The same
 * holds for a view's row type (CREATE OR REPLACE VIEW adding columns,
 * ALTER VIEW ... RENAME COLUMN).
 */
static bool
alter_table_changes_rowtype(AlterTableStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *sub = lfirst_node(AlterTableCmd, lc);

		switch (sub->subtype)
		{
			case AT_AddColumn:
			case AT_AddColumnRecurse:
			case AT_DropColumn:
			case AT_DropColumnRecurse:
			case AT_AlterColumnType:
				return true;
			default:
				break;
		}
	}
	return false;
}

PG_FUNCTION_INFO_V1(redis_sync_type_text_changed);

Datum
redis_sync_type_text_changed(PG_FUNCTION_ARGS)
{
	CollectedCommand *cmd = (CollectedCommand *) PG_GETARG_POINTER(0);
	Node	   *pt = cmd->parsetree;

	if (pt == NULL)
		PG_RETURN_BOOL(false);
	if (IsA(pt, AlterEnumStmt))
		PG_RETURN_BOOL(((AlterEnumStmt *) pt)->oldVal != NULL);
	if (IsA(pt, AlterTableStmt))
	{
		AlterTableStmt *stmt = (AlterTableStmt *) pt;

		if (stmt->objtype == OBJECT_TYPE)
			PG_RETURN_BOOL(true);
		if (stmt->objtype == OBJECT_TABLE || stmt->objtype == OBJECT_FOREIGN_TABLE)
			PG_RETURN_BOOL(alter_table_changes_rowtype(stmt));
		PG_RETURN_BOOL(false);
	}
	if (IsA(pt, RenameStmt))
	{
		RenameStmt *rs = (RenameStmt *) pt;

		PG_RETURN_BOOL(rs->renameType == OBJECT_ATTRIBUTE ||
					   (rs->renameType == OBJECT_COLUMN &&
						(rs->relationType == OBJECT_TABLE ||
						 rs->relationType == OBJECT_FOREIGN_TABLE ||
						 rs->relationType == OBJECT_VIEW)));
	}
	/* CREATE OR REPLACE VIEW may add columns to the view's row type */
	if (IsA(pt, ViewStmt))
		PG_RETURN_BOOL(((ViewStmt *) pt)->replace);
	PG_RETURN_BOOL(false);
}

/* ---------------------------------------------------------------------
 * The guard of the extension's triggers
 * ---------------------------------------------------------------------
 */

/* the triggers write_through() and invalidate() create */
static bool
is_own_trigger(const char *name)
{
	return name != NULL &&
		(strcmp(name, "redis_sync_capture") == 0 ||
		 strcmp(name, "redis_sync_truncate") == 0 ||
		 strcmp(name, "redis_sync_truncate_partition") == 0);
}

/*
 * What an ALTER TABLE subcommand does to the extension's triggers, as the
 * words of the command ("DISABLE TRIGGER ALL"), or NULL when it leaves them
 * alone.  *stops is set when they stop firing in ordinary sessions (DISABLE,
 * ENABLE REPLICA).
 */
static const char *
trigger_subcommand(AlterTableCmd *cmd, bool *stops)
{
	*stops = false;
	switch (cmd->subtype)
	{
		case AT_EnableTrig:
			return is_own_trigger(cmd->name) ? "ENABLE TRIGGER" : NULL;
		case AT_EnableAlwaysTrig:
			return is_own_trigger(cmd->name) ? "ENABLE ALWAYS TRIGGER" : NULL;
		case AT_EnableReplicaTrig:
			*stops = is_own_trigger(cmd->name);
			return *stops ? "ENABLE REPLICA TRIGGER" : NULL;
		case AT_DisableTrig:
			*stops = is_own_trigger(cmd->name);
			return *stops ? "DISABLE TRIGGER" : NULL;
		case AT_EnableTrigAll:
			return "ENABLE TRIGGER ALL";
		case AT_EnableTrigUser:
			return "ENABLE TRIGGER USER";
		case AT_DisableTrigAll:
			*stops = true;
			return "DISABLE TRIGGER ALL";
		case AT_DisableTrigUser:
			*stops = true;
			return "DISABLE TRIGGER USER";
		default:
			return NULL;
	}
}

/*
 * The synced (write-through or invalidate) tables relid belongs to (itself,
 * a partitioned table above it or a table in its partition tree): the
 * command "what" on relid's extension triggers is refused unless the
 * current user has the privileges of each one's owner (the owner's own
 * choice, and what the extension's functions do: they run as the table's
 * owner or, in the event triggers, as the extension's owner).  The owner
 * stopping them gets a WARNING.
 */
static void
check_trigger_change(Oid relid, const char *what, bool stops)
{
	Datum		arg[1] = {ObjectIdGetDatum(relid)};
	Oid			argtype[1] = {OIDOID};
	uint64		i;

	if (!OidIsValid(relid))
		return;
	SPI_connect();
	if (SPI_execute_with_args("SELECT t.relid::pg_catalog.regclass::pg_catalog.text, "
							  "       pg_catalog.pg_get_userbyid(c.relowner)::pg_catalog.text, "
							  "       pg_catalog.pg_has_role(c.relowner, 'USAGE') "
							  "  FROM redis_sync.tables t "
							  "  JOIN pg_catalog.pg_class c ON c.oid = t.relid "
							  " WHERE t.policy OPERATOR(pg_catalog.<>) 'write_behind' "
							  "   AND t.relid::pg_catalog.oid IN "
							  "       (SELECT a.relid FROM pg_catalog.pg_partition_ancestors($1) a "
							  "        UNION SELECT p.relid FROM pg_catalog.pg_partition_tree($1) p) "
							  " ORDER BY 3, 1",
							  1, argtype, arg, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the synced tables of relation %u", relid);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *synced = SPI_getvalue(tup, desc, 1);
		char	   *owner = SPI_getvalue(tup, desc, 2);
		bool		isnull;
		bool		may = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
		char	   *rel = DatumGetCString(DirectFunctionCall1(regclassout, ObjectIdGetDatum(relid)));

		if (!may)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("cannot %s on %s: table %s is synced to Redis", what, rel, synced),
					 errdetail("Only the owner of %s (role \"%s\") may disable, enable, rename or drop the "
							   "triggers redis_sync keeps on it and on its partitions: without them "
							   "the writes to its rows would not reach Redis, and the cache would go stale.",
							   synced, owner),
					 errhint("Have the table's owner do it, or call redis_sync.unsync() on %s first.",
							 synced)));
		if (stops)
			ereport(WARNING,
					(errmsg("the writes to the rows of %s are no longer pushed to Redis", rel),
					 errdetail("%s of %s stops the triggers redis_sync keeps on synced table %s: "
							   "its cache goes stale.", what, rel, synced),
					 errhint("Enable the triggers again, then call redis_sync.resync() on %s "
							 "(redis_sync.verify() shows the drift).", synced)));
	}
	SPI_finish();
}

PG_FUNCTION_INFO_V1(redis_sync_on_trigger_change);

/*
 * redis_sync._on_trigger_change(), the event trigger at the start of ALTER
 * TABLE, ALTER FOREIGN TABLE, ALTER TRIGGER (RENAME) and DROP TRIGGER.  The relation is resolved
 * without a lock here; the command locks it right after, and a concurrent
 * rename in between only means the check looked at the table the name meant
 * a moment before.
 */
Datum
redis_sync_on_trigger_change(PG_FUNCTION_ARGS)
{
	EventTriggerData *trig;
	Node	   *pt;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		PG_RETURN_NULL();
	trig = (EventTriggerData *) fcinfo->context;
	pt = trig->parsetree;
	if (pt == NULL)
		PG_RETURN_NULL();

	if (IsA(pt, AlterTableStmt))
	{
		AlterTableStmt *stmt = (AlterTableStmt *) pt;
		ListCell   *lc;

		if (stmt->objtype != OBJECT_TABLE && stmt->objtype != OBJECT_FOREIGN_TABLE)
			PG_RETURN_NULL();
		/* the partitions before it attaches or detaches one */
		rs_lifecycle_alter_start(stmt);
		foreach(lc, stmt->cmds)
		{
			AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);
			bool		stops;
			const char *what = trigger_subcommand(cmd, &stops);

			if (what == NULL)
				continue;
			check_trigger_change(RangeVarGetRelid(stmt->relation, NoLock, true),
								 cmd->name ? psprintf("%s %s", what, quote_identifier(cmd->name)) : what,
								 stops);
		}
	}
	else if (IsA(pt, RenameStmt) && ((RenameStmt *) pt)->renameType == OBJECT_TRIGGER)
	{
		/* a renamed trigger would be out of reach of the checks by name */
		RenameStmt *rs = (RenameStmt *) pt;

		if (is_own_trigger(rs->subname) && rs->relation != NULL)
			check_trigger_change(RangeVarGetRelid(rs->relation, NoLock, true),
								 psprintf("RENAME TRIGGER %s", quote_identifier(rs->subname)),
								 false);
	}
	else if (IsA(pt, DropStmt) && ((DropStmt *) pt)->removeType == OBJECT_TRIGGER)
	{
		ListCell   *lc;

		foreach(lc, ((DropStmt *) pt)->objects)
		{
			List	   *names = lfirst(lc);
			int			n = list_length(names);
			const char *tgname;

			if (n < 2)
				continue;
			tgname = strVal(llast(names));
			if (!is_own_trigger(tgname))
				continue;
			check_trigger_change(RangeVarGetRelid(makeRangeVarFromNameList(list_truncate(list_copy(names), n - 1)),
												  NoLock, true),
								 psprintf("DROP TRIGGER %s", quote_identifier(tgname)),
								 false);
		}
	}
	PG_RETURN_NULL();
}

PG_FUNCTION_INFO_V1(redis_sync_drop_partition_triggers);

/*
 * redis_sync._drop_partition_triggers(tbl regclass), for unsync(): drop the
 * redis_sync_truncate_partition trigger of every partition below tbl.  The
 * owner of tbl may unsync it, but a partition may belong to another role (a
 * superuser attached it after the sync, and the DDL event trigger gave it
 * the trigger): dropping a trigger on it needs its owner's rights, where the
 * clones of tbl's row triggers go with tbl's own without any.  So, once the
 * caller is known to own tbl, the drops run as the bootstrap superuser
 * (restricted, fixed search_path), and only of the extension's own trigger:
 * of that name, on a partition of tbl, of the guard's shape
 * (_is_partition_guard: its argument, tbl's OID when it was made, is not
 * compared, a restored dump gives tbl another one), dropped by its OID.
 * Returns how many were dropped.
 */
Datum
redis_sync_drop_partition_triggers(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Datum		arg[1] = {ObjectIdGetDatum(relid)};
	Oid			argtype[1] = {OIDOID};
	MemoryContext caller = CurrentMemoryContext;
	RsAsOwner	ao;
	List	   *triggers = NIL;
	ListCell   *lc;
	int			n;

	rs_require_owner(relid);
	rs_as_owner_enter(&ao, BOOTSTRAP_SUPERUSERID);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "redis_sync: SPI_connect failed");

		/* the guard's shape: one definition, _is_partition_guard (SQL) */
		if (SPI_execute_with_args("SELECT t.oid "
								  "  FROM pg_catalog.pg_partition_tree($1) p "
								  "  JOIN pg_catalog.pg_trigger t ON t.tgrelid = p.relid "
								  " WHERE p.relid OPERATOR(pg_catalog.<>) $1 "
								  "   AND t.tgname OPERATOR(pg_catalog.=) 'redis_sync_truncate_partition' "
								  "   AND redis_sync._is_partition_guard(t.oid) "
								  " ORDER BY p.level, p.relid",
								  1, argtype, arg, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "redis_sync: could not read the partition triggers of relation %u", relid);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			Oid			tg = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
															SPI_tuptable->tupdesc, 1, &isnull));
			MemoryContext old = MemoryContextSwitchTo(caller);

			triggers = lappend_oid(triggers, tg);
			MemoryContextSwitchTo(old);
		}
		SPI_finish();

		/*
		 * By the trigger's OID, not by its partition's name: a rename in
		 * between cannot point the drop at another table
		 */
		foreach(lc, triggers)
		{
			ObjectAddress obj;

			ObjectAddressSet(obj, TriggerRelationId, lfirst_oid(lc));
			performDeletion(&obj, DROP_RESTRICT, 0);
		}
	}
	PG_FINALLY();
	{
		rs_as_owner_leave(&ao);
	}
	PG_END_TRY();
	n = list_length(triggers);
	list_free(triggers);
	PG_RETURN_INT32(n);
}
