/*-------------------------------------------------------------------------
 *
 * rowsec.h
 *		Checks of the write-behind helpers' input (rowsec.c): row-level
 *		security of hset()/hincrby() and the text the drain takes from
 *		Redis.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_ROWSEC_H
#define RS_ROWSEC_H

#include "postgres.h"

#include "redis_value.h"

/*
 * hset()/hincrby(): ERROR unless the current user could make this change
 * itself with UPDATE under the table's row-level security policies (a row
 * that does not exist is refused: the drain would insert it as the owner).
 * op is "set" (value), "del" (the column becomes NULL) or "incr" (value
 * unknown until the drain: the row must be one the user may update).
 * Nothing to do when no policy applies.
 */
extern void rs_rls_check_write(Oid relid, int nkeys, char **keys, char **keyvals,
							   const char *column, const char *op, const char *value);

/*
 * Write-behind input from Redis: NULL when the dirty set member and every
 * string of the claimed value are valid text in the database encoding
 * without NUL bytes; else the problem, and *clean_member and *clean_value
 * get printable copies (bad bytes as \xNN) for the dead letter.
 */
extern char *rs_wb_input_problem(RedisValue *member, RedisValue *value,
								 char **clean_member, RedisValue **clean_value);

#endif							/* RS_ROWSEC_H */
