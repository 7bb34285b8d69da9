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
#include "access/xlogdefs.h"
#include "lib/stringinfo.h"
#include "utils/array.h"

#include "config.h"

/* what one key should become in Redis */
#define RS_OP_HASH		'H'		/* HSET fields, HDEL the NULL ones */
#define RS_OP_STRING	'S'		/* SET the string value */
#define RS_OP_DELETE	'D'		/* DEL (leaving a tombstone version) */
#define RS_OP_FIELDS	'F'		/* HDEL the fields, keep the rest of the hash
								 * (a purge of the write-through fields of
								 * hashes shared with write-behind) */

typedef struct RowImage
{
	char		op;				/* RS_OP_* */
	int			nfields;		/* RS_OP_HASH, RS_OP_FIELDS */
	char	  **fields;
	char	  **values;			/* NULL entry: field is absent (SQL NULL) */
	char	   *str;			/* RS_OP_STRING */
} RowImage;

/*
 * The canonical text form.  Every value and key is produced, and decoded,
 * with these settings, whatever the session has: DateStyle ISO, YMD;
 * IntervalStyle postgres; TimeZone UTC; extra_float_digits 1 (shortest
 * exact); bytea_output hex.  rs_canonical_enter/exit switch the variables
 * behind those settings directly (cheap: used for every captured row; exit
 * must be reached, use PG_FINALLY); rs_canonical_gucs_push/pop set them as
 * GUCs (for SQL the extension runs, e.g. casts of key values).
 */
typedef struct RsCanonicalSave
{
	bool		active;
	int			datestyle;
	int			dateorder;
	int			intervalstyle;
	int			float_digits;
	int			bytea_out;
	bool		array_nulls;
	int			xmloption;
	struct pg_tz *tz;
	char	   *monetary;		/* lc_monetary, when it was not "C" */
	bool		path_pushed;	/* search_path pinned to pg_catalog */
} RsCanonicalSave;

extern void rs_canonical_enter(RsCanonicalSave *save);
extern void rs_canonical_exit(RsCanonicalSave *save);
extern void rs_canonical_path_pop(RsCanonicalSave *save);
extern void rs_canonical_path_push(RsCanonicalSave *save);
extern int	rs_canonical_gucs_push(void);
extern void rs_canonical_gucs_pop(int nestlevel);

/*
 * Keys: prefix, then each key value with '\' and ':' escaped by a
 * backslash, joined by ':'.  rs_key_split parses such a suffix back into
 * exactly n values (NULL when it is not the escaped form of n values).
 */
extern void rs_key_escape(StringInfo buf, const char *val);
extern char *rs_key_build(const char *prefix, char **vals, int n);
extern char **rs_key_split(const char *s, int n);

/*
 * versions are 32 hex digits: WAL timeline (8), server epoch (8, epoch.c),
 * WAL insert position (16); they compare as strings.  0.1 wrote 24 digits
 * (no epoch): every 32-digit version of a timeline is above them.
 */
#define RS_VERSION_LEN 32

extern void rs_version_now(char *buf);
extern void rs_version_at(char *buf, XLogRecPtr lsn);

/* v made one less in place (hex digits, as a version ends in its WAL position) */
extern void rs_version_decrement(char *v);

/* epoch.c */
extern uint32 rs_epoch(void);
extern void rs_epoch_preload_init(void);
extern bool rs_file_read_uint32(const char *file, uint32 *stored, bool zero_ok, int elevel);
extern bool rs_file_write_uint32(const char *file, const char *tmp, uint32 v, int elevel);

/*
 * prefix || escaped key values joined by ':'; with keyvals, also returns
 * the key columns' canonical text values (cfg->nkeys of them)
 */
extern char *rs_encode_key(SyncConfig *cfg, TupleDesc td, HeapTuple tup, char ***keyvals);

/* append the JSON array [relid, "key value", ...] naming a row, for repairs */
extern void rs_append_key_identity(StringInfo buf, Oid relid, char **keyvals, int nkeys);

/* the row as the configured format wants it (a delete for invalidate) */
extern void rs_encode_row(SyncConfig *cfg, TupleDesc td, HeapTuple tup, RowImage *img);

/*
 * A captured change in one switch to the canonical settings: returns the key
 * of keytup, fills after with newtup's image (NULL: deleted) and, when before
 * is not NULL, before with oldtup's
 */
extern char *rs_encode_change(SyncConfig *cfg, TupleDesc td, HeapTuple keytup,
							  HeapTuple newtup, RowImage *after,
							  HeapTuple oldtup, RowImage *before);

/* true when an UPDATE changed a key column */
extern bool rs_key_changed(SyncConfig *cfg, TupleDesc td, HeapTuple oldtup, HeapTuple newtup);

/* true when an UPDATE changed a synced column (any column for invalidate) */
extern bool rs_synced_columns_changed(SyncConfig *cfg, TupleDesc td,
									  HeapTuple oldtup, HeapTuple newtup);

/*
 * The companion key of key (version, seed, processing keys): always begins
 * with '{', which no row key can (prefixes must not), and stays in key's
 * Redis Cluster slot where the slot allows:
 *   key without '{'...'}' tag and without '}':  {key}suffix
 *   key with a hash tag T:                      {T}key suffix
 *   any other key:                              {}key suffix
 * The claim script in drain.c has the same rule in Lua; SQL calls
 * redis_sync._companion_key().
 */
extern char *rs_companion_key(const char *key, size_t len, const char *suffix);

/* name of the key holding the version of key */
extern char *rs_version_key_str(const char *key, size_t len);

/* the typmod of column attnum of relid (to cast key values given as text) */
extern int32 rs_key_typmod(Oid relid, AttrNumber attnum);

/* an alias for relid's whole-row reference that no column of it is named */
extern char *rs_row_alias(Oid relid);

/* canonical text of one datum (not NULL) */
extern char *rs_canonical_output(FmgrInfo *out, Datum d);

/*
 * A cached value (HGETALL reply or JSON string) as a row of rowtype, the
 * table's row type: synced columns decoded exactly by their input
 * functions under the canonical settings, the others NULL.
 */
struct RedisValue;
extern Datum rs_decode_row(SyncConfig *cfg, Oid rowtype, struct RedisValue *v);

/* one top-level field of a JSON object (rs_json_top_fields) */
typedef struct RsJsonField
{
	char	   *name;
	char	   *start;			/* raw text of the value */
	int			len;
	int			type;			/* JsonTokenType of its first token */
	char	   *scalar;			/* de-escaped, for scalars */
} RsJsonField;
extern List *rs_json_top_fields(char *str, int len, bool *is_object);

/* JSON text of an image for the outbox payload column (NULL for deletes) */
extern char *rs_image_to_json(RowImage *img);

/*
 * A hash table keyed by C strings (the key field is a char * at the start
 * of each entry), in CurrentMemoryContext.
 */
extern struct HTAB *rs_string_hash_create(const char *name, long nelem, Size entrysize);

/* string keys to int32 positions, compactly (encode.c) */
typedef struct RsKeyIndex
{
	int32	   *slots;
	uint32		mask;
} RsKeyIndex;
typedef const char *(*RsKeyOfFn) (void *arg, int32 pos);
extern void rs_key_index_init(RsKeyIndex *ki, int n);
extern int32 *rs_key_index_slot(RsKeyIndex *ki, const char *key, RsKeyOfFn key_of, void *arg);
extern void rs_key_index_free(RsKeyIndex *ki);

/* the elements of a text[] as C strings (NULL elements stay NULL) */
extern char **rs_text_array(ArrayType *arr, int *n);

/* a List of OIDs as an oid[] (empty for NIL) */
extern ArrayType *rs_oid_array(List *oids);


/* redis_sync.version_key_suffix, defined by rs_encode_init() (from _PG_init) */
extern char *rs_version_suffix;
extern void rs_encode_init(void);

#endif							/* RS_ENCODE_H */
