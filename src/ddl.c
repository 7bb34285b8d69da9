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
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "tcop/deparse_utility.h"
#include "utils/builtins.h"

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
 * write-through or invalidate table.
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
