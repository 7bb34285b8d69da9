/*-------------------------------------------------------------------------
 *
 * identity.h
 *		The system and timeline base this database's versions and claims
 *		belong to, kept across pg_upgrade (identity.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_IDENTITY_H
#define RS_IDENTITY_H

#include "postgres.h"

extern uint32 rs_identity_timeline_base(void);
extern void rs_identity_adopt_claims(void);
extern void rs_identity_drop(Oid relid);
extern bool rs_identity_worker_due(void);
extern void rs_identity_worker_check(void);

#endif							/* RS_IDENTITY_H */
