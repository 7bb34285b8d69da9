/*-------------------------------------------------------------------------
 *
 * encode.h
 *		Row encoding: Redis keys, hash fields, JSON values, versions.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RS_ENCODE_H
#define RS_ENCODE_H

#include "postgres.h"

#include "access/htup.h"
#include "lib/stringinfo.h"
#include "utils/array.h"

#include "config.h"

/* what one key should become in Redis */
#define RS_OP_HASH		'H'		/* HSET fields, HDEL the NULL ones */
#define RS_OP_STRING	'S'		/* SET the string value */
#define RS_OP_DELETE	'D'		/* DEL (leaving a tombstone version) */

typedef struct RowImage
{
	char		op;				/* RS_OP_* */
	int			nfields;		/* RS_OP_HASH */
	char	  **fields;
	char	  **values;			/* NULL entry: field is absent (SQL NULL) */
	char	   *str;			/* RS_OP_STRING */
} RowImage;

/* versions are 24 hex digits: timeline, then WAL insert position */
#define RS_VERSION_LEN 24

extern void rs_version_now(char *buf);

/*
 * prefix || key values joined by ':'; with keyvals, also returns the key
 * columns' text values (cfg->nkeys of them)
 */
extern char *rs_encode_key(SyncConfig *cfg, TupleDesc td, HeapTuple tup, char ***keyvals);

/* append the JSON array [relid, "key value", ...] naming a row, for repairs */
extern void rs_append_key_identity(StringInfo buf, Oid relid, char **keyvals, int nkeys);

/* the row as the configured format wants it (a delete for invalidate) */
extern void rs_encode_row(SyncConfig *cfg, TupleDesc td, HeapTuple tup, RowImage *img);

/* true when an UPDATE changed a key column */
extern bool rs_key_changed(SyncConfig *cfg, TupleDesc td, HeapTuple oldtup, HeapTuple newtup);

/* true when an UPDATE changed a synced column (any column for invalidate) */
extern bool rs_synced_columns_changed(SyncConfig *cfg, TupleDesc td,
									  HeapTuple oldtup, HeapTuple newtup);

/* key || suffix in key's cluster slot (version, seed and processing keys) */
extern char *rs_companion_key(const char *key, size_t len, const char *suffix);

/* name of the key holding the version of key */
extern char *rs_version_key_str(const char *key, size_t len);

/* JSON text of an image for the outbox payload column (NULL for deletes) */
extern char *rs_image_to_json(RowImage *img);

/*
 * A hash table keyed by C strings (the key field is a char * at the start
 * of each entry), in CurrentMemoryContext.
 */
extern struct HTAB *rs_string_hash_create(const char *name, long nelem, Size entrysize);

/* the elements of a text[] as C strings (NULL elements stay NULL) */
extern char **rs_text_array(ArrayType *arr, int *n);


#endif							/* RS_ENCODE_H */
