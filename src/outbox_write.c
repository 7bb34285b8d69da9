/*-------------------------------------------------------------------------
 *
 * outbox_write.c
 *		Writing redis_sync.outbox: changes committed but not yet confirmed
 *		by Redis, as rows of the transaction that made them.
 *
 * Entries are written in the transaction whose changes they carry, so they
 * exist if and only if it commits: when a push fails in eventual
 * consistency, for async delivery, for prepared transactions, and for
 * transactions that outgrew redis_sync.max_buffer_bytes.  Each entry holds
 * the key, the state to write (jsonb: hash fields, a string, or nothing
 * for a delete), and the version stamped at the writer's pre-commit, so a
 * delivery (outbox.c) is the same fenced write the transaction would have
 * made and can be repeated any number of times.
 *
 * Rows go straight into the heap (one multi-insert per slice) and the
 * indexes (write_direct), in slices of 1,000, filled as the column
 * defaults would fill them: the writer of a synced table needs no
 * privilege on the outbox and no user code runs on it.  An outbox not of
 * the extension's shape (a column added, triggers, row security, rules, a
 * constraint or default other than the extension's, an index that runs
 * code) is written through SQL instead, which applies them: one row a
 * plain INSERT ... VALUES, more an INSERT ... SELECT from arrays, as the
 * bootstrap superuser with a fixed search_path (as_owner.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "executor/executor.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "outbox.h"
#include "outbox_int.h"

static SPIPlanPtr insert_plan = NULL;	/* many rows: from arrays */
static SPIPlanPtr insert_one_plan = NULL;	/* one row: plain VALUES, cheap to
											 * run */

static void outbox_write_slice(Change **changes, int n, const char *version, int64 seq);

/* redis_sync.outbox's OID, InvalidOid when the extension's schema or table is missing */
Oid
rs_outbox_relid(void)
{
	Oid			nsp = get_namespace_oid("redis_sync", true);

	return OidIsValid(nsp) ? get_relname_relid("outbox", nsp) : InvalidOid;
}

bool
rs_outbox_exists(void)
{
	return OidIsValid(rs_outbox_relid());
}

/*
 * How many entries the outbox holds (-1 when there is none): read as the
 * bootstrap superuser, for DROP EXTENSION's warning (launcher_hold.c).
 */
int64
rs_outbox_count(void)
{
	RsAsOwner	ao = {0};
	bool		snap;
	int64		n = -1;

	if (!rs_outbox_exists())
		return -1;
	spi_begin(&snap);
	become_owner(&ao);
	PG_TRY();
	{
		bool		isnull;

		if (SPI_execute("SELECT pg_catalog.count(*) FROM redis_sync.outbox", true, 1) == SPI_OK_SELECT &&
			SPI_processed == 1)
			n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	PG_FINALLY();
	{
		rs_as_owner_leave(&ao);
	}
	PG_END_TRY();
	spi_end(snap);
	return n;
}

/*
 * The memory of the slice being written: each entry's payload (jsonb
 * building: ~3.5 kB) and key, until the slice is in the table.  One context
 * per transaction, emptied after each slice, whose first block (sized for
 * the first call's slice) stays: a spill writes 1,000 entries per call,
 * and a context made and deleted per call gave its blocks back to the
 * system each time, to be faulted in again by the next slice.  Gone with
 * TopTransactionContext (slice_cxt_gone resets the pointer).
 */
static MemoryContext slice_cxt = NULL;
static MemoryContextCallback slice_cxt_cb;

static void
slice_cxt_gone(void *arg)
{
	slice_cxt = NULL;
}

static MemoryContext
slice_context(int n)
{
	Size		first = Min((Size) n, (Size) 1000) * 4096;

	if (slice_cxt == NULL)
	{
		slice_cxt = AllocSetContextCreate(TopTransactionContext, "redis_sync outbox slice",
										  first, first, ALLOCSET_DEFAULT_MAXSIZE);
		slice_cxt_cb.func = slice_cxt_gone;
		slice_cxt_cb.arg = NULL;
		MemoryContextRegisterResetCallback(TopTransactionContext, &slice_cxt_cb);
	}
	return slice_cxt;
}

/* write in slices, so a large transaction's buffer is not copied all at once */
void
rs_outbox_write(Change **changes, int n, const char *version, int64 seq)
{
	MemoryContext cxt;
	MemoryContext old;

	if (n == 0)
		return;
	if (n == 1)
	{
		outbox_write_slice(changes, 1, version, seq);
		return;
	}
	cxt = slice_context(n);
	old = MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		/*
		 * 1,000 a slice: each entry's jsonb input leaves ~3.5 kB until the
		 * reset
		 */
		for (int s = 0; s < n; s += 1000)
		{
			outbox_write_slice(changes + s, Min(1000, n - s), version, seq);
			MemoryContextReset(cxt);
		}
	}
	PG_FINALLY();
	{
		MemoryContextSwitchTo(old);
	}
	PG_END_TRY();
}

/* a jsonb string of s; false when too long for one (jsonb_in reports it) */
static bool
jsonb_string(JsonbValue *v, char *s)
{
	size_t		len = strlen(s);

	if (len > JENTRY_OFFLENMASK)
		return false;
	v->type = jbvString;
	v->val.string.val = s;
	v->val.string.len = (int) len;
	return true;
}

/*
 * The payload of an image, built as jsonb_in builds it from
 * rs_image_to_json()'s text (the same pushJsonbValue() calls, keys sorted
 * and unique), without printing and parsing that text: a fifth of an
 * async single-row commit's outbox write.  NULL when a string is too long
 * for jsonb: then the text goes through jsonb_in, which reports it.
 */
static Jsonb *
image_to_jsonb(RowImage *img)
{
	JsonbParseState *state = NULL;
	JsonbValue	v;

	if (img->op == RS_OP_STRING)
		return jsonb_string(&v, img->str) ? JsonbValueToJsonb(&v) : NULL;
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < img->nfields; i++)
	{
		if (!jsonb_string(&v, img->fields[i]))
			return NULL;
		(void) pushJsonbValue(&state, WJB_KEY, &v);
		if (img->values[i] == NULL)
			v.type = jbvNull;
		else if (!jsonb_string(&v, img->values[i]))
			return NULL;
		(void) pushJsonbValue(&state, WJB_VALUE, &v);
	}
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

/*
 * The outbox columns of a change: its Redis key, op ('T': a purge of the
 * prefix in key) and payload; false when the payload is NULL.  A purge's
 * payload is NULL (every key under the prefix goes) or, for a purge of the
 * write-through fields only (RS_OP_FIELDS), the object of those fields,
 * each null: what a hash image of them, all NULL, would be.
 */
static bool
change_columns(Change *c, Datum *key, Datum *op, Datum *payload)
{
	RowImage	after;
	char	   *json;
	Jsonb	   *jb;

	*key = CStringGetTextDatum(c->key);
	*payload = (Datum) 0;
	if (c->kind == RS_CHANGE_PURGE)
	{
		*op = CharGetDatum('T');
		rs_change_purge_image(c, &after);
		if (after.op != RS_OP_FIELDS)
			return false;
		after.op = RS_OP_HASH;
		after.values = palloc0(sizeof(char *) * Max(after.nfields, 1));
	}
	else
	{
		rs_change_after(c, &after);
		*op = CharGetDatum(after.op);
	}
	if (after.op == RS_OP_DELETE)
		return false;
	if ((jb = image_to_jsonb(&after)) != NULL)
	{
		*payload = JsonbPGetDatum(jb);
		return true;
	}
	json = rs_image_to_json(&after);
	*payload = DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
	return true;
}

/*
 * The columns of redis_sync.outbox, in the order of OutboxCol, with their
 * types: the direct write (write_direct) fills every one of them.
 */
typedef enum OutboxCol
{
	OC_ID, OC_RELID, OC_KEY, OC_OP, OC_PAYLOAD, OC_TTL, OC_VERSION, OC_SEQ,
	OC_XID, OC_ENQUEUED, OC_ATTEMPTS, OC_NEXT_ATTEMPT, OC_LAST_ERROR, OC_COUNT
} OutboxCol;

static const struct
{
	const char *name;
	Oid			type;
	bool		nullable;		/* the direct write may leave it NULL */
}			outbox_cols[OC_COUNT] =

{
	{"id", INT8OID, false}, {"relid", OIDOID, false}, {"redis_key", TEXTOID, false},
	{"op", CHAROID, false}, {"payload", JSONBOID, true}, {"ttl_ms", INT8OID, false},
	{"version", TEXTOID, false}, {"seq", INT8OID, false}, {"xid", XID8OID, false},
	{"enqueued_at", TIMESTAMPTZOID, false}, {"attempts", INT4OID, false},
	{"next_attempt_at", TIMESTAMPTZOID, true}, {"last_error", TEXTOID, true}
};

/*
 * The defaults the direct write stands in for (the columns an INSERT of the
 * SQL path leaves out), as deparsed; NULL: none (id: a nextval() of the
 * sequence write_direct() draws from, see default_is_seq()).  The
 * extension's CHECK constraint, the only one, likewise.
 */
static const char *const outbox_defaults[OC_COUNT] = {
	[OC_ID] = "nextval()",
	[OC_XID] = "pg_current_xact_id()",
	[OC_ENQUEUED] = "clock_timestamp()",
	[OC_ATTEMPTS] = "0",
};
#define OUTBOX_CHECK "(op = ANY (ARRAY['H'::\"char\", 'S'::\"char\", 'D'::\"char\", 'T'::\"char\"]))"

/* remember bin in *seen (in TopMemoryContext) */
static void
remember(char **seen, const char *bin)
{
	if (*seen != NULL)
		pfree(*seen);
	*seen = MemoryContextStrdup(TopMemoryContext, bin);
}

/*
 * Whether the stored expression bin (adbin, ccbin) deparses to expected.
 * The last one that did is remembered in *seen: each commit then compares
 * strings only.
 */
static bool
expr_is(const char *bin, const char *expected, Relation rel, char **seen)
{
	char	   *deparsed;
	bool		ok;

	if (*seen != NULL && strcmp(*seen, bin) == 0)
		return true;
	deparsed = deparse_expression(stringToNode(bin),
								  deparse_context_for(RelationGetRelationName(rel),
													  RelationGetRelid(rel)),
								  false, false);
	ok = strcmp(deparsed, expected) == 0;
	pfree(deparsed);
	if (ok)
		remember(seen, bin);
	return ok;
}

/* whether the default bin is nextval(seqid), remembered as expr_is() does */
static bool
default_is_seq(const char *bin, Oid seqid, char **seen)
{
	Node	   *n;
	FuncExpr   *f;
	Const	   *k;

	if (*seen != NULL && strcmp(*seen, bin) == 0)
		return true;
	n = stringToNode(bin);
	if (!IsA(n, FuncExpr))
		return false;
	f = (FuncExpr *) n;
	if (f->funcid != F_NEXTVAL || list_length(f->args) != 1 || !IsA(linitial(f->args), Const))
		return false;
	k = linitial_node(Const, f->args);
	if (k->consttype != REGCLASSOID || k->constisnull ||
		DatumGetObjectId(k->constvalue) != seqid)
		return false;
	remember(seen, bin);
	return true;
}

/*
 * Whether the constraints, defaults and rules of the outbox are the
 * extension's (attno as outbox_shape() found it): a CHECK or NOT NULL
 * constraint added, a default changed or added on a column the direct
 * write fills, or a rule would all be skipped by it.
 */
static bool
outbox_rules_intact(Relation rel, const int *attno, Oid seqid)
{
	static char *seen_check = NULL;
	static char *seen_default[OC_COUNT];
	TupleDesc	td = RelationGetDescr(rel);
	TupleConstr *constr = td->constr;

	if (rel->rd_rules != NULL || constr == NULL || constr->num_check != 1 ||
		!constr->check[0].ccvalid || constr->has_generated_stored ||
		!expr_is(constr->check[0].ccbin, OUTBOX_CHECK, rel, &seen_check))
		return false;
	for (int c = 0; c < OC_COUNT; c++)
	{
		if (outbox_cols[c].nullable && TupleDescAttr(td, attno[c])->attnotnull)
			return false;
		if (outbox_defaults[c] != NULL || c == OC_NEXT_ATTEMPT || c == OC_LAST_ERROR)
		{
			const char *bin = NULL;

			for (int k = 0; k < constr->num_defval; k++)
				if (constr->defval[k].adnum == attno[c] + 1)
					bin = constr->defval[k].adbin;
			if ((bin == NULL) != (outbox_defaults[c] == NULL))
				return false;
			if (bin != NULL && !(c == OC_ID ? default_is_seq(bin, seqid, &seen_default[c]) :
								 expr_is(bin, outbox_defaults[c], rel, &seen_default[c])))
				return false;
		}
	}
	return true;
}

/*
 * Map the outbox's attributes to OutboxCol (attno[c], 0-based); false when
 * the table is not exactly the one the extension created (a column added,
 * missing or of another type, triggers, row security, rules, constraints or
 * defaults other than the extension's): then the rows go through SQL, which
 * applies whatever was added.
 */
static bool
outbox_shape(Relation rel, int *attno, Oid seqid)
{
	TupleDesc	td = RelationGetDescr(rel);
	int			found = 0;

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->trigdesc != NULL ||
		rel->rd_rel->relrowsecurity)
		return false;
	for (int c = 0; c < OC_COUNT; c++)
		attno[c] = -1;
	for (int i = 0; i < td->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(td, i);
		int			c;

		if (att->attisdropped)
			continue;
		for (c = 0; c < OC_COUNT; c++)
			if (strcmp(NameStr(att->attname), outbox_cols[c].name) == 0)
				break;
		if (c == OC_COUNT || att->atttypid != outbox_cols[c].type || attno[c] >= 0)
			return false;
		attno[c] = i;
		found++;
	}
	return found == OC_COUNT && outbox_rules_intact(rel, attno, seqid);
}

/*
 * The last outbox_shape() that found the outbox of the extension's shape,
 * kept until an invalidation of the outbox (or its sequence) in the
 * relation cache: every ALTER TABLE, trigger, rule, policy or index of the
 * outbox sends one.  Checking the shape at every commit was a tenth of an
 * async single-row commit's outbox write.
 */
static struct
{
	bool		valid;
	Oid			relid;
	Oid			seqid;
	int			attno[OC_COUNT];
} shape_cache;
static uint64 shape_invals = 0; /* invalidations seen, to spot one during a
								 * check */
static bool shape_cb_registered = false;

static void
shape_inval(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == shape_cache.relid || relid == shape_cache.seqid)
	{
		shape_cache.valid = false;

		shape_invals++;
	}
}

/*
 * outbox_shape() of rel (locked), from the cache when nothing changed since;
 * *seqid: the sequence of its ids.  Only a positive result is kept.
 */
static bool
outbox_shape_cached(Relation rel, int *attno, Oid *seqid)
{
	Oid			relid = RelationGetRelid(rel);
	uint64		invals = shape_invals;

	if (!shape_cb_registered)
	{
		CacheRegisterRelcacheCallback(shape_inval, (Datum) 0);
		shape_cb_registered = true;
	}
	if (shape_cache.valid && shape_cache.relid == relid)
	{
		memcpy(attno, shape_cache.attno, sizeof(shape_cache.attno));
		*seqid = shape_cache.seqid;

		return true;
	}
	*seqid = get_relname_relid("outbox_id_seq", RelationGetNamespace(rel));
	if (!OidIsValid(*seqid) || !outbox_shape(rel, attno, *seqid))
		return false;
	/* an invalidation during the check: check again next time */
	if (invals == shape_invals)
	{
		shape_cache.relid = relid;
		shape_cache.seqid = *seqid;

		memcpy(shape_cache.attno, attno, sizeof(shape_cache.attno));
		shape_cache.valid = true;
	}
	return true;
}

/*
 * The outbox row of change c in slot, as the column defaults would fill it
 * (id from the table's sequence seqid, the clock, no attempt yet); attno:
 * the columns' positions (outbox_shape_cached)
 */
static void
fill_slot(TupleTableSlot *slot, Change *c, const int *attno, Oid seqid,
		  Datum version_d, int64 seq, Datum xid_d)
{
	Datum	   *v = slot->tts_values;
	bool	   *isnull = slot->tts_isnull;

	memset(isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	for (int k = 0; k < OC_COUNT; k++)
		isnull[attno[k]] = false;
	v[attno[OC_ID]] = Int64GetDatum(nextval_internal(seqid, false));
	v[attno[OC_RELID]] = ObjectIdGetDatum(c->root_relid);
	isnull[attno[OC_PAYLOAD]] = !change_columns(c, &v[attno[OC_KEY]], &v[attno[OC_OP]],
												&v[attno[OC_PAYLOAD]]);
	v[attno[OC_TTL]] = Int64GetDatum(c->ttl_ms);
	v[attno[OC_VERSION]] = version_d;
	v[attno[OC_SEQ]] = Int64GetDatum(seq);
	v[attno[OC_XID]] = xid_d;
	v[attno[OC_ENQUEUED]] = TimestampTzGetDatum(GetCurrentTimestamp());
	v[attno[OC_ATTEMPTS]] = Int32GetDatum(0);
	isnull[attno[OC_NEXT_ATTEMPT]] = true;
	isnull[attno[OC_LAST_ERROR]] = true;
	ExecStoreVirtualTuple(slot);
}

/*
 * Insert the rows straight into the heap and its indexes, as the column
 * defaults would fill them (id from the table's sequence, xid of the top
 * transaction, enqueued_at the clock, no attempt yet): one INSERT through
 * SPI cost more than the rest of an async commit (executor start-up, the
 * CHECK constraint's expression rebuilt each time, a switch of user and
 * search_path).  No user code runs: the outbox has no triggers (else
 * outbox_shape() sends the rows through SQL).  False when the table's
 * shape is not the expected one; nothing was written then.
 */
static bool
write_direct(Change **changes, int n, const char *version, int64 seq)
{
	Oid			relid = rs_outbox_relid();
	Oid			seqid;
	Relation	rel;
	int			attno[OC_COUNT];
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot **slots;
	TupleDesc	desc;
	CommandId	cid;
	Datum		version_d;
	Datum		xid_d;
	bool		snap = false;

	if (!OidIsValid(relid))
		return false;
	rel = table_open(relid, RowExclusiveLock);
	if (!outbox_shape_cached(rel, attno, &seqid))
	{
		table_close(rel, RowExclusiveLock);
		return false;
	}
	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	/* an index on expressions, partial or of exclusion runs code: SQL */
	for (int i = 0; i < rri->ri_NumIndices; i++)
	{
		IndexInfo  *ii = rri->ri_IndexRelationInfo[i];

		if (ii->ii_Expressions != NIL || ii->ii_Predicate != NIL || ii->ii_ExclusionOps != NULL)
		{
			ExecCloseIndices(rri);
			FreeExecutorState(estate);
			table_close(rel, RowExclusiveLock);
			return false;
		}
	}

	/*
	 * The slots share one copy of the descriptor, which is not reference
	 * counted.  A slot of the relation's own descriptor pins it in the
	 * resource owner, whose table of a thousand pins of one pointer made each
	 * pin cost a probe per pin held: 18% of a DETACH queueing the removal of
	 * 1,000,000 keys went there.
	 */
	desc = CreateTupleDescCopy(RelationGetDescr(rel));
	slots = palloc(sizeof(TupleTableSlot *) * n);
	for (int i = 0; i < n; i++)
		slots[i] = MakeSingleTupleTableSlot(desc, table_slot_callbacks(rel));
	cid = GetCurrentCommandId(true);
	/* TOAST of a large payload reads its table's index */
	if (!ActiveSnapshotSet())
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		snap = true;
	}
	version_d = CStringGetTextDatum(version);
	xid_d = FullTransactionIdGetDatum(GetTopFullTransactionId());

	for (int i = 0; i < n; i++)
		fill_slot(slots[i], changes[i], attno, seqid, version_d, seq, xid_d);

	/*
	 * More than one row (a spill's slice, an async commit of several): one
	 * multi-insert, as COPY does, filling each heap page under one lock and
	 * one WAL record; then the index entries, row by row.  A 300,000-row
	 * UPDATE spilled whole took 0.67-0.90x the time of row-by-row inserts (4
	 * alternating rounds), both with the slice's memory kept mapped
	 * (slice_context()), and 0.61x that of the build before either (medians);
	 * without the kept memory the 1,000 materialised rows cost more in page
	 * faults than the multi-insert saved.
	 */
	if (n == 1)
		table_tuple_insert(rel, slots[0], cid, 0, NULL);
	else
		table_multi_insert(rel, slots, n, cid, 0, NULL);
	for (int i = 0; i < n; i++)
	{
		if (rri->ri_NumIndices > 0)
			(void) ExecInsertIndexTuples(rri, slots[i], estate, false, false, NULL, NIL);
		ResetPerTupleExprContext(estate);
		ExecDropSingleTupleTableSlot(slots[i]);
	}
	pfree(slots);
	FreeTupleDesc(desc);
	if (snap)
		PopActiveSnapshot();
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
	/* later statements of the transaction see the rows, as after an INSERT */
	CommandCounterIncrement();
	return true;
}

/* run one of the outbox INSERTs (7 parameters), prepared once per backend */
static void
execute_insert(SPIPlanPtr *plan, const char *sql, Oid *types, Datum *args, const char *nulls)
{
	int			ret;

	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, 7, types);

		if (p == NULL)
			elog(ERROR, "redis_sync: could not prepare outbox insert: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		*plan = p;
	}
	ret = SPI_execute_plan(*plan, args, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "redis_sync: could not write to redis_sync.outbox: %s",
			 SPI_result_code_string(ret));
}

/* the common case (one row per commit): a plain INSERT ... VALUES */
static void
write_one(Change *c, const char *version, int64 seq)
{
	Datum		args[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Oid			types[7] = {OIDOID, TEXTOID, CHAROID, JSONBOID, INT8OID, TEXTOID, INT8OID};
	RsAsOwner	saved_ao;
	bool		snap;

	args[0] = ObjectIdGetDatum(c->root_relid);
	if (!change_columns(c, &args[1], &args[2], &args[3]))
		nulls[3] = 'n';
	args[4] = Int64GetDatum(c->ttl_ms);
	args[5] = CStringGetTextDatum(version);
	args[6] = Int64GetDatum(seq);

	become_owner(&saved_ao);
	spi_begin(&snap);
	execute_insert(&insert_one_plan,
				   "INSERT INTO redis_sync.outbox "
				   "(relid, redis_key, op, payload, ttl_ms, version, seq) "
				   "VALUES ($1, $2, $3, $4, $5, $6, $7)",
				   types, args, nulls);
	spi_end(snap);
	rs_as_owner_leave(&saved_ao);
}

static void
outbox_write_slice(Change **changes, int n, const char *version, int64 seq)
{
	Datum	   *relids,
			   *keys,
			   *ops,
			   *payloads,
			   *ttls;
	bool	   *pnulls;
	int			dims[1];
	int			lbs[1] = {1};
	Datum		args[7];
	RsAsOwner	saved_ao;
	bool		snap;
	Oid			types[7] = {OIDARRAYOID, TEXTARRAYOID, 1002 /* char[] */ , 3807 /* jsonb[] */ ,
	INT8ARRAYOID, TEXTOID, INT8OID};

	if (n == 0)
		return;
	if (write_direct(changes, n, version, seq))
		return;
	if (n == 1)
	{
		write_one(changes[0], version, seq);
		return;
	}
	relids = palloc(sizeof(Datum) * n);
	keys = palloc(sizeof(Datum) * n);
	ops = palloc(sizeof(Datum) * n);
	payloads = palloc(sizeof(Datum) * n);
	pnulls = palloc(sizeof(bool) * n);
	ttls = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		Change	   *c = changes[i];

		relids[i] = ObjectIdGetDatum(c->root_relid);
		pnulls[i] = !change_columns(c, &keys[i], &ops[i], &payloads[i]);
		ttls[i] = Int64GetDatum(c->ttl_ms);
	}
	dims[0] = n;
	args[0] = PointerGetDatum(construct_array(relids, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
	args[1] = PointerGetDatum(construct_array(keys, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_array(ops, n, CHAROID, 1, true, TYPALIGN_CHAR));
	args[3] = PointerGetDatum(construct_md_array(payloads, pnulls, 1, dims, lbs, JSONBOID, -1, false, TYPALIGN_INT));
	args[4] = PointerGetDatum(construct_array(ttls, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[5] = CStringGetTextDatum(version);
	args[6] = Int64GetDatum(seq);

	become_owner(&saved_ao);
	spi_begin(&snap);
	execute_insert(&insert_plan,
				   "INSERT INTO redis_sync.outbox "
				   "(relid, redis_key, op, payload, ttl_ms, version, seq) "
				   "SELECT u.r, u.k, u.o, u.p, u.t, $6, $7 "
				   "  FROM unnest($1, $2, $3, $4, $5) AS u(r, k, o, p, t)",
				   types, args, NULL);
	spi_end(snap);
	rs_as_owner_leave(&saved_ao);
}

void
rs_outbox_write_changes(Change *change, int n, const char *version, int64 seq)
{
	Change	  **arr = palloc(sizeof(Change *) * n);

	for (int i = 0; i < n; i++)
		arr[i] = &change[i];
	rs_outbox_write(arr, n, version, seq);
}
