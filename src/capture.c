/*-------------------------------------------------------------------------
 *
 * capture.c
 *		The capture trigger and the per-transaction change buffer.
 *
 * redis_sync.capture() is an AFTER ROW trigger for INSERT, UPDATE and
 * DELETE, and an AFTER STATEMENT trigger for TRUNCATE.  It sends nothing to
 * Redis: it appends what the row became to a buffer owned by the current
 * transaction, which publish.c turns into one pipelined round trip at
 * pre-commit.  Coalescing (last state per key wins) happens there.
 *
 * Savepoints: the buffer is a log; each subtransaction remembers the log's
 * length when it started, and a rolled-back subtransaction truncates the log
 * back to it, so ROLLBACK TO SAVEPOINT discards exactly its own captures.
 *
 * Memory: the buffer lives in a context under TopTransactionContext and is
 * bounded by redis_sync.max_buffer_bytes.  Past the bound the transaction
 * "overflows": the buffer so far stays in memory (publish.c writes it to the
 * outbox at pre-commit, versioned as of the overflow) and every later
 * capture is written straight to redis_sync.outbox with the WAL position
 * of its capture as version (in the current subtransaction, so rollbacks
 * still apply).
 *
 * Interface: publish.c reads the buffer through rs_capture_changes() and
 * rs_capture_overflowed() and forgets it with rs_capture_reset(); the
 * write-behind drain switches off the echo of its own rows with
 * rs_capture_suppress(); rows queued after an overflow are counted with
 * publish.c's rs_publish_count_queued().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "as_owner.h"
#include "capture.h"
#include "claim.h"
#include "outbox.h"
#include "publish.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(redis_sync_capture);
PG_FUNCTION_INFO_V1(redis_sync_purge_at_commit);

static Change *rs_changes = NULL;
static int	rs_nchanges = 0;
static bool rs_overflowed = false;
static Oid	rs_suppress_relid = InvalidOid;
static const char *rs_suppress_prefix = NULL;
static uint64 rs_stat_captured = 0;

static int	max_changes = 0;
static MemoryContext buffer_cxt = NULL;
static MemoryContext overflow_cxt = NULL;	/* per-capture scratch after
											 * overflow */
static int64 overflow_seq = 0;
static int	nbefore = 0;		/* before images encoded this transaction */
static char overflow_version[RS_VERSION_LEN + 1];

/* log length at the start of each open subtransaction */
typedef struct SubxactMark
{
	SubTransactionId subid;
	int			nchanges;
	struct SubxactMark *next;
} SubxactMark;

static SubxactMark *marks = NULL;

void
rs_capture_reset(void)
{
	/* memory goes with TopTransactionContext */
	rs_changes = NULL;
	rs_nchanges = 0;
	max_changes = 0;
	buffer_cxt = NULL;
	overflow_cxt = NULL;
	rs_overflowed = false;
	overflow_seq = 0;
	nbefore = 0;
	marks = NULL;
}

static void
capture_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	SubxactMark *m;

	switch (event)
	{
		case SUBXACT_EVENT_START_SUB:
			m = MemoryContextAlloc(TopTransactionContext, sizeof(SubxactMark));
			m->subid = mySubid;
			m->nchanges = rs_nchanges;
			m->next = marks;
			marks = m;
			break;
		case SUBXACT_EVENT_ABORT_SUB:
		case SUBXACT_EVENT_COMMIT_SUB:
			/* subtransactions end innermost first: the top mark is ours */
			while (marks && marks->subid >= mySubid)
			{
				m = marks;
				if (event == SUBXACT_EVENT_ABORT_SUB && m->subid == mySubid &&
					m->nchanges < rs_nchanges)
					rs_nchanges = m->nchanges;
				marks = m->next;
				pfree(m);
			}
			break;
		default:
			break;
	}
}

static Change *
new_change(void)
{
	if (buffer_cxt == NULL)
	{
		buffer_cxt = AllocSetContextCreate(TopTransactionContext,
										   "redis_sync change buffer",
										   ALLOCSET_DEFAULT_SIZES);
		max_changes = 64;
		rs_changes = MemoryContextAlloc(buffer_cxt, sizeof(Change) * max_changes);
	}
	if (rs_nchanges == max_changes)
	{
		max_changes *= 2;
		rs_changes = repalloc_huge(rs_changes, sizeof(Change) * max_changes);
	}
	return &rs_changes[rs_nchanges++];
}

static void
fill_common(Change *c, SyncConfig *cfg)
{
	c->root_relid = cfg->root_relid;
	c->policy = cfg->policy;
	c->strict = cfg->strict;
	c->async = cfg->async;
	c->ttl_ms = cfg->ttl_ms;
}

/* one row change: key becomes newtup (NULL: deleted); oldtup is the row before */
static void
capture_row(SyncConfig *cfg, Relation rel, HeapTuple keytup, HeapTuple newtup,
			HeapTuple oldtup)
{
	TupleDesc	td = RelationGetDescr(rel);
	MemoryContext old;
	Change		tmp;
	Change	   *c;

	rs_stat_captured++;
	rs_stats_add(cfg->root_relid, RS_C_CAPTURED, 1);
	memset(&tmp, 0, sizeof(tmp));
	tmp.kind = RS_CHANGE_ROW;
	fill_common(&tmp, cfg);

	if (rs_overflowed)
	{
		char		version[RS_VERSION_LEN + 1];

		/*
		 * Straight to the outbox, in the current subtransaction.  The row is
		 * locked by now, so the WAL position is already newer than every
		 * committed write of it, and older than any later one (which waits
		 * for our commit): a valid version, without waiting for pre-commit.
		 */
		rs_version_now(version);
		if (overflow_cxt == NULL)
			overflow_cxt = AllocSetContextCreate(TopTransactionContext,
												 "redis_sync overflow scratch",
												 ALLOCSET_DEFAULT_SIZES);
		old = MemoryContextSwitchTo(overflow_cxt);
		tmp.key = rs_encode_key(cfg, td, keytup, NULL);
		rs_encode_row(cfg, td, newtup, &tmp.after);
		rs_outbox_write_changes(&tmp, 1, version, ++overflow_seq);
		MemoryContextSwitchTo(old);
		MemoryContextReset(overflow_cxt);
		rs_publish_count_queued(1);
		rs_stats_add(cfg->root_relid, RS_C_QUEUED, 1);
		return;
	}

	c = new_change();
	old = MemoryContextSwitchTo(buffer_cxt);
	*c = tmp;
	c->key = rs_encode_key(cfg, td, keytup, &c->keyvals);
	c->nkeys = cfg->nkeys;
	rs_encode_row(cfg, td, newtup, &c->after);

	/*
	 * The state before, to restore if the push outlives the transaction.
	 * Encoded now, with the descriptor and configuration the tuple belongs
	 * to: an ALTER TABLE later in the transaction may change both.  Large
	 * transactions are repaired through the worker instead (publish.c).
	 */
	if (oldtup && cfg->policy == RS_POLICY_WRITE_THROUGH && !cfg->async)
	{
		if (nbefore < RS_EXACT_REPAIR_CHANGES)
		{
			c->before = palloc0(sizeof(RowImage));
			rs_encode_row(cfg, td, oldtup, c->before);
			nbefore++;
		}
		else
			c->before_skipped = true;
	}
	MemoryContextSwitchTo(old);

	/* what the buffer really holds, allocation overhead included */
	if (MemoryContextMemAllocated(buffer_cxt, false) > (Size) rs_max_buffer_kb * 1024)
	{
		/* the buffered changes all precede this point: they get this version */
		rs_overflowed = true;
		rs_version_now(overflow_version);
	}
}

Change *
rs_capture_changes(int *n)
{
	*n = rs_nchanges;
	return rs_changes;
}

uint64
rs_capture_count(void)
{
	return rs_stat_captured;
}

bool
rs_capture_overflowed(void)
{
	return rs_overflowed;
}

void
rs_capture_suppress(Oid relid, const char *prefix)
{
	rs_suppress_relid = relid;
	rs_suppress_prefix = prefix;
}

const char *
rs_capture_overflow_version(void)
{
	return overflow_version;
}

void
rs_capture_purge(Oid relid, const char *prefix, bool strict, bool async)
{
	Change		tmp;
	Change	   *c;

	memset(&tmp, 0, sizeof(tmp));
	tmp.kind = RS_CHANGE_PURGE;
	tmp.root_relid = relid;
	tmp.policy = RS_POLICY_WRITE_THROUGH;
	tmp.strict = strict;
	tmp.async = async;
	tmp.prefix = (char *) prefix;
	if (rs_overflowed)
	{
		char		version[RS_VERSION_LEN + 1];

		/* keep the order: after an overflow everything goes to the outbox */
		rs_version_now(version);
		rs_outbox_write_changes(&tmp, 1, version, ++overflow_seq);
		return;
	}
	c = new_change();
	*c = tmp;
	c->prefix = MemoryContextStrdup(buffer_cxt, prefix);
}

/*
 * redis_sync.capture(): the trigger.  With one argument (a root table OID)
 * it is the BEFORE TRUNCATE guard on partitions of a synced table.
 */
Datum
redis_sync_capture(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	SyncConfig *cfg;
	TriggerEvent ev;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("redis_sync.capture() must be called as a trigger")));
	rel = td->tg_relation;
	ev = td->tg_event;

	if (td->tg_trigger->tgnargs == 1)
	{
		Oid			root;

		/*
		 * The argument is the synced table's OID when the guard was made; a
		 * restored dump gives the table another one.  The configuration of a
		 * partition is its root's: not synced (detached, unsynced) means the
		 * guard is stale and guards nothing.
		 */
		cfg = rs_config_get(RelationGetRelid(rel));
		if (!rel->rd_rel->relispartition || !cfg->synced)
			return PointerGetDatum(NULL);
		root = cfg->root_relid;

		/*
		 * TRUNCATE of the partitioned table truncates its partitions too,
		 * holding the table's AccessExclusiveLock; the table's own trigger
		 * purges every key.  Alone, a partition cannot be truncated.
		 */
		if (CheckRelationOidLockedByMe(root, AccessExclusiveLock, false))
		{
			cfg = rs_config_get(root);
			if (cfg->synced)
				rs_capture_purge(cfg->root_relid, cfg->prefix, cfg->strict, cfg->async);
			return PointerGetDatum(NULL);
		}
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot truncate partition \"%s\" of synced table \"%s\"",
						RelationGetRelationName(rel), get_rel_name(root)),
				 errdetail("redis_sync cannot tell which cached keys belong to one partition."),
				 errhint("TRUNCATE the partitioned table, or DELETE the partition's rows.")));
	}

	if (!TRIGGER_FIRED_AFTER(ev))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("redis_sync.capture() must be an AFTER trigger")));

	cfg = rs_config_get(RelationGetRelid(rel));
	if (!cfg->synced)
		return PointerGetDatum(NULL);

	/* a write-behind drain's own rows: no echo over the keys they came from */
	if (OidIsValid(rs_suppress_relid) && cfg->root_relid == rs_suppress_relid &&
		strcmp(cfg->prefix, rs_suppress_prefix) == 0)
		return PointerGetDatum(NULL);

	if (TRIGGER_FIRED_BY_TRUNCATE(ev))
	{
		rs_capture_purge(cfg->root_relid, cfg->prefix, cfg->strict, cfg->async);
		return PointerGetDatum(NULL);
	}
	if (!TRIGGER_FIRED_FOR_ROW(ev))
		return PointerGetDatum(NULL);

	if (TRIGGER_FIRED_BY_INSERT(ev))
		capture_row(cfg, rel, td->tg_trigtuple, td->tg_trigtuple, NULL);
	else if (TRIGGER_FIRED_BY_DELETE(ev))
		capture_row(cfg, rel, td->tg_trigtuple, NULL, td->tg_trigtuple);
	else if (TRIGGER_FIRED_BY_UPDATE(ev))
	{
		HeapTuple	oldtup = td->tg_trigtuple;
		HeapTuple	newtup = td->tg_newtuple;

		if (rs_key_changed(cfg, RelationGetDescr(rel), oldtup, newtup))
		{
			capture_row(cfg, rel, oldtup, NULL, oldtup);
			capture_row(cfg, rel, newtup, newtup, NULL);
		}
		else if (rs_synced_columns_changed(cfg, RelationGetDescr(rel), oldtup, newtup))
			capture_row(cfg, rel, newtup, newtup, oldtup);
	}
	return PointerGetDatum(NULL);
}

/* redis_sync._purge_at_commit(tbl, prefix) */
Datum
redis_sync_purge_at_commit(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *prefix = text_to_cstring(PG_GETARG_TEXT_PP(1));

	rs_require_owner(relid);	/* as_owner.c */
	rs_claim_check_purge(relid, prefix);	/* claim.c: the table's own prefix
											 * only */
	rs_capture_purge(relid, prefix, false, false);
	PG_RETURN_VOID();
}

int			rs_max_buffer_kb = 65536;	/* redis_sync.max_buffer_bytes */

/* the buffer's setting and the savepoint callback (from _PG_init) */
void
rs_capture_init(void)
{
	DefineCustomIntVariable("redis_sync.max_buffer_bytes",
							"Memory one transaction may use to buffer changes before it overflows to the outbox.",
							NULL,
							&rs_max_buffer_kb,
							65536, 64, MAX_KILOBYTES,
							PGC_USERSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	RegisterSubXactCallback(capture_subxact_callback, NULL);
}
