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
 * redis_sync._purge_detached(part, root) removes at commit the keys of the
 * rows of part, a partition just detached from root's tree: they are no
 * longer rows of the synced table (pg_partman's retention detaches old
 * partitions, then drops them).  Each row's key goes as a DELETE of it
 * would (the change buffer, pushed at commit with a version, or the
 * outbox).  rs_lifecycle_drop_start() does the same for DROP TABLE
 * of a partition and DROP SCHEMA ... CASCADE of a schema holding one, and
 * rs_lifecycle_drop_owned_start() for DROP OWNED of a role owning one (or
 * its schema), from the event trigger at the start of the DROP, while its
 * rows can still be read.
 *
 * redis_sync._ddl_partition_moves(command, attached) returns the partitions
 * an ATTACH PARTITION attached or a DETACH PARTITION detached: the table's
 * partitions at the command's end against those rs_lifecycle_alter_start()
 * found at its start (the event trigger _on_trigger_change).
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

#include "access/genam.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "catalog/objectaddress.h"
#include "catalog/partition.h"
#include "catalog/pg_am_d.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/event_trigger.h"
#include "commands/tablecmds.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "storage/lmgr.h"
#include "tcop/deparse_utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "allowlist.h"
#include "capture.h"
#include "config.h"
#include "encode.h"
#include "lifecycle.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(redis_sync_purge_dropped);
PG_FUNCTION_INFO_V1(redis_sync_ddl_partitions);
PG_FUNCTION_INFO_V1(redis_sync_purge_detached);
PG_FUNCTION_INFO_V1(redis_sync_ddl_partition_moves);

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

	PG_RETURN_ARRAYTYPE_P(rs_oid_array(oids));
}

/*
 * The partitions of a table an ALTER TABLE ... ATTACH / DETACH PARTITION
 * (or DETACH ... FINALIZE) is about to change, read at the command's start
 * (rs_lifecycle_alter_start) under the lock the command takes: its end
 * compares them with the partitions then (redis_sync._ddl_partition_moves).
 * The subcommand collected for the end names the partition but does not
 * carry its address, and the name could only be resolved again with the
 * event trigger's search_path, not the caller's.  Static (the lists in
 * TopMemoryContext): a DETACH ... CONCURRENTLY ends in another transaction
 * than the one it began in.  One entry per table, the newest replacing an
 * older one (left by a command that failed); the oldest goes when full.
 */
typedef struct PartitionsBefore
{
	Oid			parent;
	List	   *children;		/* its partitions, pending detaches included */
} PartitionsBefore;

#define PARTITIONS_BEFORE_MAX 8
static PartitionsBefore partitions_before[PARTITIONS_BEFORE_MAX];
static int	n_partitions_before = 0;

/* an ATTACH or DETACH PARTITION subcommand (FINALIZE too) */
static bool
is_partition_move(Node *n)
{
	AlterTableCmd *at = (AlterTableCmd *) n;

	return at != NULL && IsA(at, AlterTableCmd) &&
		(at->subtype == AT_AttachPartition ||
		 at->subtype == AT_DetachPartition ||
		 at->subtype == AT_DetachPartitionFinalize);
}

static List *
partitions_now(Oid parent)
{
	return find_inheritance_children_extended(parent, false, NoLock, NULL, NULL);
}

/*
 * The lookup's callback: only the relation's owner may lock it here, as the
 * command itself checks (with the same error) before it takes its lock,
 * whatever the relation is (a view, say, which the command then refuses).
 */
static void
lock_if_owner(const RangeVar *rv, Oid relid, Oid oldrelid, void *arg)
{
	char		relkind;

	if (!OidIsValid(relid))
		return;
	relkind = get_rel_relkind(relid);
	if (relkind == '\0')
		return;
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, get_relkind_objtype(relkind), rv->relname);
}

/*
 * At the start of an ALTER TABLE (the event trigger _on_trigger_change): if
 * it attaches or detaches a partition, take the lock the command takes on
 * the table (so no other command attaches or detaches one until it ends)
 * and remember the table's partitions.
 */
void
rs_lifecycle_alter_start(AlterTableStmt *stmt)
{
	ListCell   *lc;
	bool		moves = false;
	Oid			parent;
	List	   *now;
	MemoryContext old;
	int			i;

	foreach(lc, stmt->cmds)
		moves = moves || is_partition_move(lfirst(lc));
	if (!moves)
		return;

	/*
	 * Nothing to remember, nor to lock, unless the name means a partitioned
	 * table the caller owns, not a system catalog (the command then fails on
	 * its own).  The lookup under the lock checks ownership again: the name
	 * may mean another relation by then.
	 */
	parent = RangeVarGetRelid(stmt->relation, NoLock, true);
	if (!OidIsValid(parent) || get_rel_relkind(parent) != RELKIND_PARTITIONED_TABLE ||
		IsCatalogRelationOid(parent) || !pg_class_ownercheck(parent, GetUserId()))
		return;
	parent = RangeVarGetRelidExtended(stmt->relation, AlterTableGetLockLevel(stmt->cmds),
									  RVR_MISSING_OK, lock_if_owner, NULL);
	if (!OidIsValid(parent) || get_rel_relkind(parent) != RELKIND_PARTITIONED_TABLE)
		return;

	for (i = 0; i < n_partitions_before; i++)
		if (partitions_before[i].parent == parent)
			break;
	if (i == n_partitions_before && n_partitions_before == PARTITIONS_BEFORE_MAX)
		i = 0;
	if (i < n_partitions_before)
	{
		/* this table's older entry, or the oldest: out */
		list_free(partitions_before[i].children);
		memmove(&partitions_before[i], &partitions_before[i + 1],
				sizeof(PartitionsBefore) * (n_partitions_before - i - 1));
		n_partitions_before--;
	}
	now = partitions_now(parent);
	old = MemoryContextSwitchTo(TopMemoryContext);
	partitions_before[n_partitions_before].children = list_copy(now);
	MemoryContextSwitchTo(old);
	list_free(now);
	partitions_before[n_partitions_before].parent = parent;
	n_partitions_before++;
}

/*
 * redis_sync._ddl_partition_moves(cmd pg_ddl_command, attached boolean)
 * RETURNS oid[]: the partitions an ALTER TABLE collected at ddl_command_end
 * attached to its table (attached), or detached from it, against the
 * partitions rs_lifecycle_alter_start() found at its start.
 */
Datum
redis_sync_ddl_partition_moves(PG_FUNCTION_ARGS)
{
	CollectedCommand *cmd = (CollectedCommand *) PG_GETARG_POINTER(0);
	bool		attached = PG_GETARG_BOOL(1);
	List	   *oids = NIL;
	ListCell   *lc;

	if (cmd->type == SCT_AlterTable &&
		cmd->d.alterTable.classId == RelationRelationId)
	{
		Oid			parent = cmd->d.alterTable.objectId;
		bool		moves = false;
		bool		found = false;

		foreach(lc, cmd->d.alterTable.subcmds)
			moves = moves || is_partition_move(((CollectedATSubcmd *) lfirst(lc))->parsetree);
		for (int i = n_partitions_before - 1; moves && i >= 0; i--)
		{
			List	   *before = partitions_before[i].children;
			List	   *now;

			if (partitions_before[i].parent != parent)
				continue;
			now = partitions_now(parent);
			oids = attached ? list_difference_oid(now, before) : list_difference_oid(before, now);
			found = true;
			break;
		}

		/*
		 * Not read at the start: the table's name meant another relation then
		 * (renamed meanwhile).  Said once per command (the detached call
		 * comes second).
		 */
		if (moves && !found && !attached && rs_config_get(parent)->synced)
			ereport(WARNING,
					(errmsg("redis_sync could not tell which partitions this command moved in or out of table %s",
							get_rel_name(parent)),
					 errdetail("Its partitions were not read when the command started: its name meant another relation then."),
					 errhint("Call redis_sync.resync() on the synced table: a detached partition's rows may still have keys, an attached one's rows none.")));
	}

	PG_RETURN_ARRAYTYPE_P(rs_oid_array(oids));
}

/*
 * Queue the removal of the keys of every row of leaf, a plain table whose
 * rows leave root's synced tree (cfg: leaf's columns under root's
 * settings).  Read with a snapshot taken now, which sees this transaction's
 * own earlier changes and every committed one: the caller holds a lock
 * that keeps writers out of leaf from here to commit.  No row-level
 * security: the keys of every row go, whoever may read it.
 */
static int64
rows_leave(Relation leaf, SyncConfig *cfg)
{
	Snapshot	snap;
	TableScanDesc scan;
	HeapTuple	tup;
	int64		n = 0;

	CommandCounterIncrement();
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(leaf, snap, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		CHECK_FOR_INTERRUPTS();
		rs_capture_row_gone(cfg, leaf, tup);
		n++;
	}
	table_endscan(scan);
	UnregisterSnapshot(snap);
	return n;
}

/* rows_leave() for a leaf of root's tree, if root is synced write-through or invalidate */
static int64
leaf_rows_leave(Oid leafid, Oid root)
{
	Relation	leaf;
	SyncConfig *cfg;
	int64		n = 0;

	leaf = try_table_open(leafid, AccessShareLock);
	if (leaf == NULL)
		return 0;
	if (leaf->rd_rel->relkind == RELKIND_RELATION &&
		leaf->rd_rel->relam == HEAP_TABLE_AM_OID)
	{
		/* the buffered changes point to it until the transaction ends */
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

		cfg = rs_config_build(leafid, root);
		MemoryContextSwitchTo(old);
		if (cfg->synced)
			n = rows_leave(leaf, cfg);
	}
	table_close(leaf, NoLock);
	return n;
}

/*
 * redis_sync._purge_detached(part oid, root oid) RETURNS bigint: called by
 * the ddl_command_end event trigger for each leaf that carries the
 * partition guard but no longer has a synced ancestor, with the root of
 * the table the command detached a partition from.  Acts only when this
 * transaction holds the lock of a detach on the leaf or an ancestor of it
 * (a guard left behind some other way is only dropped by the caller).
 */
Datum
redis_sync_purge_detached(PG_FUNCTION_ARGS)
{
	Oid			part = PG_GETARG_OID(0);
	Oid			root = PG_GETARG_OID(1);
	bool		detaching;
	List	   *up;
	ListCell   *lc;

	if (!OidIsValid(part) || !OidIsValid(root) || !get_rel_name(part))
		PG_RETURN_INT64(0);
	/* still in a synced tree: its rows are still the synced table's */
	if (rs_config_get(part)->synced)
		PG_RETURN_INT64(0);
	detaching = CheckRelationOidLockedByMe(part, ShareUpdateExclusiveLock, true);
	up = rs_partition_ancestors(part);
	foreach(lc, up)
		detaching = detaching || CheckRelationOidLockedByMe(lfirst_oid(lc), ShareUpdateExclusiveLock, true);
	if (!detaching)
		PG_RETURN_INT64(0);

	/*
	 * A detach CONCURRENTLY holds a lock that lets writers into the partition
	 * itself go on: wait for those that began while the partition was still
	 * the table's (their captures are pushed at their commit, with an older
	 * version than the deletes of this one); later ones are not captured (the
	 * partition has left the table and its triggers).  After a plain detach
	 * this lock is held already.
	 */
	LockRelationOid(part, ShareLock);
	PG_RETURN_INT64(leaf_rows_leave(part, root));
}

/*
 * The partitions among cands, of a synced (write-through or invalidate)
 * table that the command does not drop: the keys of their rows (of every
 * leaf under them) go at commit, while those rows can still be read.  A
 * partition whose synced table, or a partition above it, is dropped too
 * is left alone (the table's whole prefix is purged; the partition above
 * does it).  The locks are the DROP's own, in its order (the parent, then
 * the partition): no writer changes the rows between this read and the
 * drop.
 */
static void
partitions_leave(List *cands, List *named, List *schemas)
{
	ListCell   *lc;

	foreach(lc, cands)
	{
		Oid			relid = lfirst_oid(lc);
		SyncConfig *cfg;
		Oid			root;
		List	   *up;
		ListCell   *lc2;
		bool		covered = false;

		if (!get_rel_relispartition(relid))
			continue;
		cfg = rs_config_get(relid);
		if (!cfg->synced)
			continue;
		root = cfg->root_relid;
		up = rs_partition_ancestors(relid);
		foreach(lc2, up)
			covered = covered || list_member_oid(named, lfirst_oid(lc2)) ||
			list_member_oid(schemas, get_rel_namespace(lfirst_oid(lc2)));
		if (covered)
			continue;
		LockRelationOid(linitial_oid(up), AccessExclusiveLock);
		LockRelationOid(relid, AccessExclusiveLock);
		/* dropped or detached meanwhile: DROP decides alone */
		if (!get_rel_name(relid) || !rs_config_get(relid)->synced)
			continue;
		foreach(lc2, find_all_inheritors(relid, AccessExclusiveLock, NULL))
			leaf_rows_leave(lfirst_oid(lc2), root);
	}
}

/* the tables and partitioned tables of schema nsp */
static List *
schema_tables(Oid nsp)
{
	Relation	cls = table_open(RelationRelationId, AccessShareLock);
	SysScanDesc scan = systable_beginscan(cls, InvalidOid, false, NULL, 0, NULL);
	HeapTuple	tup;
	List	   *out = NIL;

	while ((tup = systable_getnext(scan)) != NULL)
	{
		Form_pg_class c = (Form_pg_class) GETSTRUCT(tup);

		if (c->relnamespace == nsp && c->relispartition &&
			(c->relkind == RELKIND_RELATION || c->relkind == RELKIND_PARTITIONED_TABLE))
			out = lappend_oid(out, c->oid);
	}
	systable_endscan(scan);
	table_close(cls, AccessShareLock);
	return out;
}

/*
 * DROP INDEX CONCURRENTLY commits the index's invalidation in transactions
 * of its own before the last one drops it, and sql_drop fires only in that
 * last one: _on_sql_drop's unsync of a table whose key lost its index would
 * come after the index is dead, no longer enforcing uniqueness.  So the
 * indexes such a command names are checked before anything is done:
 * redis_sync._key_index_check() refuses the drop of the last valid unique
 * index behind a synced table's key_columns.  It is called without an
 * EXECUTE check (it is revoked from PUBLIC, and a table owner that is no
 * superuser must be able to drop indexes): the function is SECURITY
 * DEFINER and only raises an error.
 */
static void
check_drop_index_concurrently(DropStmt *stmt)
{
	Oid			argtypes[1] = {OIDOID};
	Oid			check = InvalidOid;
	ListCell   *lc;

	foreach(lc, stmt->objects)
	{
		RangeVar   *rv = makeRangeVarFromNameList((List *) lfirst(lc));
		Oid			idx = RangeVarGetRelid(rv, NoLock, true);

		if (!OidIsValid(idx))
			continue;			/* DROP itself reports it (or IF EXISTS) */
		if (!OidIsValid(check))
			check = LookupFuncName(list_make2(makeString("redis_sync"),
											  makeString("_key_index_check")),
								   1, argtypes, false);
		(void) OidFunctionCall1(check, ObjectIdGetDatum(idx));
	}
}

/*
 * May the current user DROP TABLE relid?  PostgreSQL's rule
 * (RangeVarCallbackForDropRelation): the owner of the table or of its
 * schema.  Before, the schema's owner (owning neither the partition nor the
 * synced table) dropped a partition and its rows' keys stayed.
 */
static bool
may_drop_table(Oid relid)
{
	Oid			nsp = get_rel_namespace(relid);

	return pg_class_ownercheck(relid, GetUserId()) ||
		(OidIsValid(nsp) && pg_namespace_ownercheck(nsp, GetUserId()));
}

/*
 * At the start of DROP TABLE and DROP SCHEMA ... CASCADE: the partitions of
 * synced tables the command drops (named, or in a dropped schema) take
 * their rows' keys with them.  Only for a caller who may drop the table
 * (may_drop_table) or owns the schema (else the DROP fails on its own: no
 * lock is taken for it).  At the
 * start of DROP INDEX CONCURRENTLY: check_drop_index_concurrently().
 */
void
rs_lifecycle_drop_start(DropStmt *stmt)
{
	List	   *named = NIL;
	List	   *schemas = NIL;
	List	   *cands = NIL;
	ListCell   *lc;

	if (stmt->removeType == OBJECT_INDEX && stmt->concurrent)
		check_drop_index_concurrently(stmt);
	else if (stmt->removeType == OBJECT_TABLE)
	{
		foreach(lc, stmt->objects)
		{
			RangeVar   *rv = makeRangeVarFromNameList((List *) lfirst(lc));
			Oid			relid = RangeVarGetRelid(rv, NoLock, true);

			if (OidIsValid(relid))
				named = lappend_oid(named, relid);
			if (OidIsValid(relid) && may_drop_table(relid))
				cands = lappend_oid(cands, relid);
		}
	}
	else if (stmt->removeType == OBJECT_SCHEMA && stmt->behavior == DROP_CASCADE)
	{
		foreach(lc, stmt->objects)
		{
			Oid			nsp = get_namespace_oid(strVal(lfirst(lc)), true);

			if (OidIsValid(nsp) && pg_namespace_ownercheck(nsp, GetUserId()))
				schemas = lappend_oid(schemas, nsp);
		}
		foreach(lc, schemas)
			cands = list_concat(cands, schema_tables(lfirst_oid(lc)));
	}
	partitions_leave(cands, named, schemas);
}

/*
 * The tables and partitioned tables owned by one of roles (relowner), and
 * the schemas owned by one of them (nspowner), of the current database:
 * what DROP OWNED drops (shdepDropOwned() reads pg_shdepend; a relation's
 * owner is recorded there unless it is the bootstrap superuser, whose
 * objects DROP OWNED refuses to drop).
 */
static void
owned_by(List *roles, List **rels, List **nsps)
{
	Relation	cat;
	SysScanDesc scan;
	HeapTuple	tup;

	cat = table_open(RelationRelationId, AccessShareLock);
	scan = systable_beginscan(cat, InvalidOid, false, NULL, 0, NULL);
	while ((tup = systable_getnext(scan)) != NULL)
	{
		Form_pg_class c = (Form_pg_class) GETSTRUCT(tup);

		if ((c->relkind == RELKIND_RELATION || c->relkind == RELKIND_PARTITIONED_TABLE) &&
			list_member_oid(roles, c->relowner))
			*rels = lappend_oid(*rels, c->oid);
	}
	systable_endscan(scan);
	table_close(cat, AccessShareLock);

	cat = table_open(NamespaceRelationId, AccessShareLock);
	scan = systable_beginscan(cat, InvalidOid, false, NULL, 0, NULL);
	while ((tup = systable_getnext(scan)) != NULL)
	{
		Form_pg_namespace n = (Form_pg_namespace) GETSTRUCT(tup);

		if (list_member_oid(roles, n->nspowner))
			*nsps = lappend_oid(*nsps, n->oid);
	}
	systable_endscan(scan);
	table_close(cat, AccessShareLock);
}

/*
 * At the start of DROP OWNED: the partitions of synced tables it drops
 * take their rows' keys with them, as with DROP TABLE.  It drops the
 * tables the roles own (a partition owned by another role than its synced
 * table's) and the schemas they own, with CASCADE everything in them (with
 * RESTRICT such a schema holds only the roles' own tables, or the command
 * fails).  Only for a caller who has the privileges of every role named,
 * as DropOwnedObjects() requires (else the command fails on its own: no
 * catalog is read and no lock taken for it); a role that does not exist
 * fails it too, and so does the bootstrap superuser (whose every synced
 * partition would be locked and read before the command fails).
 */
void
rs_lifecycle_drop_owned_start(DropOwnedStmt *stmt)
{
	List	   *roles = NIL;
	List	   *named = NIL;
	List	   *schemas = NIL;
	List	   *cands = NIL;
	ListCell   *lc;

	foreach(lc, stmt->roles)
	{
		Oid			role = get_rolespec_oid(lfirst(lc), true);

		/* the bootstrap superuser's objects: DROP OWNED refuses them */
		if (!OidIsValid(role) || IsPinnedObject(AuthIdRelationId, role) ||
			!has_privs_of_role(GetUserId(), role))
			return;
		roles = lappend_oid(roles, role);
	}
	owned_by(roles, &named, &schemas);
	if (stmt->behavior != DROP_CASCADE)
		schemas = NIL;
	foreach(lc, named)
	{
		if (get_rel_relispartition(lfirst_oid(lc)))
			cands = lappend_oid(cands, lfirst_oid(lc));
	}
	foreach(lc, schemas)
		cands = list_concat(cands, schema_tables(lfirst_oid(lc)));
	partitions_leave(cands, named, schemas);
}
