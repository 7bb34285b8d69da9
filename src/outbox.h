/*-------------------------------------------------------------------------
 *
 * outbox.h
 *		The durable outbox: writing entries and delivering them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_OUTBOX_H
#define RS_OUTBOX_H

#include "postgres.h"

#include "change.h"
#include "redis_client.h"

/* insert changes as outbox rows of the current (sub)transaction */
extern void rs_outbox_write(Change **changes, int n, const char *version, int64 seq);
extern void rs_outbox_write_changes(Change *change, int n, const char *version, int64 seq);

/* false once the extension was dropped (in this transaction, too) */
extern Oid	rs_outbox_relid(void);

/* send a purge's fenced deletes, page by page (outbox.c) */
extern bool rs_purge_send(Oid relid, const char *prefix, RowImage *img, const char *version,
						  int64 seq, int64 id, List **clears, bool *sent,
						  RedisFailure *failure);
extern bool rs_outbox_exists(void);

/* entries queued in the outbox, -1 without one (outbox_write.c) */
extern int64 rs_outbox_count(void);


/*
 * Deliver up to max committed entries with an id above *after (of relid, or
 * all when InvalidOid; with due_only, skipping entries still backing off),
 * raising *after to the last id read, in one pipelined round trip
 * (plus SCANs for purges).  Returns the number of entries removed; on a Redis failure
 * returns -1 and fills *failure, leaving the entries in place.
 */
extern int64 rs_outbox_deliver(int max, Oid relid, bool due_only, int64 *after,
							   RedisFailure *failure, int *nrefused);

/*
 * The delivery loop: batches of rs_outbox_deliver() until a stop rule holds.
 * The worker and the SQL functions (deliver_outbox(), flush()) differ only
 * in these rules.
 */
typedef struct RsDeliveryRules
{
	Oid			relid;			/* InvalidOid: every table */
	int64		max;			/* entries at most */
	bool		due_only;		/* skip entries still backing off (a refusal
								 * turns this on for the following batches) */
	bool		batch_xacts;	/* each batch in its own transaction with a
								 * snapshot (the worker, outside one); else in
								 * the caller's, CommandCounterIncrement
								 * between batches */
	bool		stop_on_short;	/* a batch shorter than asked ends the loop
								 * (else only an empty one) */
	bool		(*stop) (void); /* after each batch; true ends (NULL: none) */
	void		(*on_refusal) (const RedisFailure *f);	/* in the batch's
														 * transaction */
	const char *activity;		/* batch_xacts: pg_stat_activity's text */
	MemoryContext cxt;			/* batch_xacts: where the caller allocates
								 * after each commit */
} RsDeliveryRules;

typedef struct RsDeliveryOutcome
{
	int64		delivered;		/* entries removed */
	int			refused;		/* entries Redis refused (they stay queued) */
	RedisFailure last_refusal;
	bool		failed;			/* a Redis failure ended the loop */
	RedisFailure failure;
} RsDeliveryOutcome;

/* failures and refusals are copied into the caller's memory (rules->cxt) */
extern void rs_outbox_deliver_loop(const RsDeliveryRules *rules, RsDeliveryOutcome *out);

/* redis_sync.outbox_batch and flush_timeout (from _PG_init) */
extern void rs_outbox_init(void);

#endif							/* RS_OUTBOX_H */
