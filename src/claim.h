/*-------------------------------------------------------------------------
 *
 * claim.h
 *		Key prefix ownership across every database and server that share
 *		one Redis database.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_CLAIM_H
#define RS_CLAIM_H

#include "postgres.h"

/* the namespace of redis_sync's own keys; no prefix or dirty set may overlap it */
#define RS_RESERVED_NAMESPACE "redis_sync:"
/* the hash of claims: field "p:<prefix>" or "k:<key>", value "<holder id>\t<description>" */
#define RS_CLAIMS_KEY "redis_sync:claims"

/*
 * After redis_sync.tables changed for relid (in this transaction): check the
 * table's prefixes and dirty sets against every other table of this
 * database and, in Redis, of every database and server, and record them.
 * ERROR naming the holder on an overlap.  Claims the table no longer needs
 * are released when the transaction commits.
 */
extern void rs_claim_table(Oid relid);

/* ERROR unless prefix is a key prefix redis_sync.tables holds for relid */
extern void rs_claim_check_purge(Oid relid, const char *prefix);


/*
 * ERROR unless the current user may read these Redis keys (or, with
 * prefix, every key under that prefix): superusers may; others only keys
 * under the prefixes, and the dirty sets, of synced tables they own.
 */
extern void rs_require_key_access(char **keys, int n, bool prefix);

/*
 * Claim the prefixes of every synced table of this database (only those the
 * current user owns, unless superuser): at the worker's first contact with
 * Redis, after Redis lost its data, after an upgrade from 0.1.  A conflict
 * is a WARNING naming both tables (worded as the background worker's
 * message), not an ERROR.  Returns the number of tables claimed.  Needs a
 * transaction.
 */
extern int64 rs_claim_all(bool worker);

/*
 * redis_sync.allowed_key_prefixes (superusers only; empty: any prefix): when
 * set, a key prefix or dirty set configured by a role that is not a
 * superuser must begin with one of its entries, so that a role that may
 * create a table cannot take (read through _fetch()/get(), overwrite,
 * purge) Redis keys of applications outside them.  ERROR otherwise; what
 * names the value ("key prefix", "dirty set").  rs_claim_init() defines the
 * setting (from _PG_init).
 */
extern char *rs_allowed_key_prefixes;
extern void rs_claim_check_allowed(const char *what, const char *value);
extern void rs_claim_init(void);

#endif							/* RS_CLAIM_H */
