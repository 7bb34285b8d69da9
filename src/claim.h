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
/* its indexes (claim.c), in its hash slot: field names; "<holder id>\t<field>" */

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

#endif							/* RS_CLAIM_H */
