/*-------------------------------------------------------------------------
 *
 * encode.c
 *		How a row becomes Redis data: keys, hash fields, JSON, versions.
 *
 * Keys are key_prefix followed by the key columns' text output joined by
 * ':'.  The hash format has one field per synced column holding the
 * column's text output; a NULL column is an absent field.  The json format
 * is row_to_json of the synced columns.  Everything is passed to Redis as
 * argv (length-counted), never spliced into command text.
 *
 * Versions fence every write (see publish.c): 8 hex digits of the WAL
 * timeline and 16 of the WAL insert position, so they compare as strings
 * and grow across restarts and promotions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xlog.h"
#include "common/hashfn.h"
#include "funcapi.h"
#include "utils/hsearch.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "encode.h"
#include "redis_sync.h"

void
rs_version_now(char *buf)
{
	TimeLineID	tli = RecoveryInProgress() ? 0 : GetWALInsertionTimeLine();
	XLogRecPtr	lsn = GetXLogInsertRecPtr();

	snprintf(buf, RS_VERSION_LEN + 1, "%08X%016llX", tli, (unsigned long long) lsn);
}

static char *
column_text(SyncColumn *col, TupleDesc td, HeapTuple tup, bool *isnull)
{
	Datum		d = heap_getattr(tup, col->attnum, td, isnull);

	if (*isnull)
		return NULL;
	return OutputFunctionCall(&col->out, d);
}

char *
rs_encode_key(SyncConfig *cfg, TupleDesc td, HeapTuple tup, char ***keyvals)
{
	char	  **vals = palloc(sizeof(char *) * cfg->nkeys);
	size_t	   *lens = palloc(sizeof(size_t) * cfg->nkeys);
	size_t		plen = strlen(cfg->prefix);
	size_t		total = plen + cfg->nkeys;
	char	   *key,
			   *p;

	/* one exact allocation: this runs for every captured row */
	for (int i = 0; i < cfg->nkeys; i++)
	{
		bool		isnull;

		vals[i] = column_text(&cfg->keys[i], td, tup, &isnull);
		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("key column \"%s\" of a synced row is NULL", cfg->keys[i].name)));
		lens[i] = strlen(vals[i]);
		total += lens[i];
	}
	key = p = palloc(total);
	memcpy(p, cfg->prefix, plen);
	p += plen;
	for (int i = 0; i < cfg->nkeys; i++)
	{
		if (i > 0)
			*p++ = ':';
		memcpy(p, vals[i], lens[i]);
		p += lens[i];
	}
	*p = '\0';
	pfree(lens);
	if (keyvals)
		*keyvals = vals;
	else
		pfree(vals);
	return key;
}

void
rs_append_key_identity(StringInfo buf, Oid relid, char **keyvals, int nkeys)
{
	appendStringInfo(buf, "[%u", relid);
	for (int i = 0; i < nkeys; i++)
	{
		appendStringInfoChar(buf, ',');
		escape_json(buf, keyvals[i]);
	}
	appendStringInfoChar(buf, ']');
}

void
rs_encode_row(SyncConfig *cfg, TupleDesc td, HeapTuple tup, RowImage *img)
{
	memset(img, 0, sizeof(*img));
	if (cfg->policy == RS_POLICY_INVALIDATE || tup == NULL)
	{
		img->op = RS_OP_DELETE;
		return;
	}
	if (cfg->format == RS_FORMAT_HASH)
	{
		img->op = RS_OP_HASH;
		img->nfields = cfg->ncols;
		img->fields = palloc(sizeof(char *) * cfg->ncols);
		img->values = palloc(sizeof(char *) * cfg->ncols);
		for (int i = 0; i < cfg->ncols; i++)
		{
			bool		isnull;

			img->fields[i] = cfg->cols[i].name;
			img->values[i] = column_text(&cfg->cols[i], td, tup, &isnull);
		}
	}
	else
	{
		Datum	   *values = palloc(sizeof(Datum) * cfg->ncols);
		bool	   *nulls = palloc(sizeof(bool) * cfg->ncols);
		HeapTuple	sub;
		Datum		json;

		for (int i = 0; i < cfg->ncols; i++)
			values[i] = heap_getattr(tup, cfg->cols[i].attnum, td, &nulls[i]);
		sub = heap_form_tuple(cfg->json_desc, values, nulls);
		json = DirectFunctionCall1(row_to_json, HeapTupleGetDatum(sub));
		img->op = RS_OP_STRING;
		img->str = text_to_cstring(DatumGetTextPP(json));
	}
}

static bool
columns_differ(SyncColumn *col, TupleDesc td, HeapTuple a, HeapTuple b)
{
	bool		na,
				nb;
	Datum		da = heap_getattr(a, col->attnum, td, &na);
	Datum		db = heap_getattr(b, col->attnum, td, &nb);
	Form_pg_attribute att = TupleDescAttr(td, col->attnum - 1);

	if (na || nb)
		return na != nb;
	return !datumIsEqual(da, db, att->attbyval, att->attlen);
}

bool
rs_key_changed(SyncConfig *cfg, TupleDesc td, HeapTuple oldtup, HeapTuple newtup)
{
	for (int i = 0; i < cfg->nkeys; i++)
		if (columns_differ(&cfg->keys[i], td, oldtup, newtup))
			return true;
	return false;
}

bool
rs_synced_columns_changed(SyncConfig *cfg, TupleDesc td, HeapTuple oldtup, HeapTuple newtup)
{
	if (cfg->policy == RS_POLICY_INVALIDATE)
	{
		for (int i = 0; i < td->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(td, i);
			SyncColumn	c;

			if (att->attisdropped)
				continue;
			c.attnum = att->attnum;
			if (columns_differ(&c, td, oldtup, newtup))
				return true;
		}
		return false;
	}
	for (int i = 0; i < cfg->ncols; i++)
		if (columns_differ(&cfg->cols[i], td, oldtup, newtup))
			return true;
	return false;
}

/*
 * key followed by suffix, kept in key's Redis Cluster slot: the key is
 * wrapped in a {hash tag} unless it already has one
 */
char *
rs_companion_key(const char *key, size_t len, const char *suffix)
{
	size_t		slen = strlen(suffix);
	char	   *out = palloc(len + slen + 3);
	const char *open = memchr(key, '{', len);
	bool		has_tag = false;
	char	   *p = out;

	if (open)
	{
		size_t		start = open - key + 1;
		const char *close = memchr(key + start, '}', len - start);

		has_tag = close != NULL && close > key + start;
	}
	if (!has_tag)
		*p++ = '{';
	memcpy(p, key, len);
	p += len;
	if (!has_tag)
		*p++ = '}';
	memcpy(p, suffix, slen);
	p[slen] = '\0';
	return out;
}

char *
rs_version_key_str(const char *key, size_t len)
{
	return rs_companion_key(key, len, rs_version_suffix);
}

char *
rs_image_to_json(RowImage *img)
{
	StringInfoData buf;
	char	   *result;

	if (img->op == RS_OP_DELETE)
		return NULL;
	initStringInfo(&buf);
	if (img->op == RS_OP_STRING)
	{
		escape_json(&buf, img->str);
		result = pnstrdup(buf.data, buf.len);
		pfree(buf.data);
		return result;
	}
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < img->nfields; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		escape_json(&buf, img->fields[i]);
		appendStringInfoChar(&buf, ':');
		if (img->values[i])
			escape_json(&buf, img->values[i]);
		else
			appendStringInfoString(&buf, "null");
	}
	appendStringInfoChar(&buf, '}');
	/* keep only what is used: this runs for every change a large transaction queues */
	result = pnstrdup(buf.data, buf.len);
	pfree(buf.data);
	return result;
}

static uint32
string_key_hash(const void *key, Size keysize)
{
	const char *s = *(const char *const *) key;

	return string_hash(s, strlen(s) + 1);
}

static int
string_key_match(const void *a, const void *b, Size keysize)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

HTAB *
rs_string_hash_create(const char *name, long nelem, Size entrysize)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(char *);
	ctl.entrysize = entrysize;
	ctl.hash = string_key_hash;
	ctl.match = string_key_match;
	ctl.hcxt = CurrentMemoryContext;
	return hash_create(name, Max(nelem, 16), &ctl,
					   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

/* the elements of a text[] as C strings (NULL elements stay NULL) */
char **
rs_text_array(ArrayType *arr, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	char	  **out;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, n);
	out = palloc(sizeof(char *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		out[i] = nulls[i] ? NULL : TextDatumGetCString(elems[i]);
	return out;
}
