/*-------------------------------------------------------------------------
 *
 * change.c
 *		The compact encoding of a buffered change (change.h): how capture.c
 *		writes a change's images into its arena, and how publish.c and
 *		outbox_write.c read them back; and the order of two changes of one
 *		log (rs_change_newer), which both coalescing and a spill follow.
 *
 * Layout of a change in the arena (Change.key points to its start):
 *   the key, NUL-terminated
 *   what the row became, an image:
 *     'D'                       a delete
 *     'S' text NUL              a string (JSON)
 *     'H' value NUL ...         a hash without NULLs: one value per column
 *                               of the change's configuration, in order
 *     'h' bitmap value NUL ...  a hash with NULLs: the bitmap has a bit set
 *                               for each NULL column, (ncols + 7) / 8 bytes,
 *                               values follow for the other columns
 *   the row before:
 *     'N'                       none (no row: a repair deletes; or not a
 *                               synchronous write-through change)
 *     'K'                       not kept (past RS_EXACT_REPAIR_CHANGES)
 *     'B' image                 the row before, as above
 * Field names are not stored: they are the configuration's column names
 * (Change.cfg, kept until transaction end by config.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "change.h"
#include "encode.h"

static Size image_size_nulls(const RowImage *img);

/* bytes of img in the layout (see the file header) */
Size
rs_change_image_size(const RowImage *img)
{
	Size		n = 1;

	if (img->op == RS_OP_STRING)
		return n + strlen(img->str) + 1;
	if (img->op != RS_OP_HASH)
		return n;
	for (int i = 0; i < img->nfields; i++)
		if (img->values[i] == NULL)
			return image_size_nulls(img);
	for (int i = 0; i < img->nfields; i++)
		n += strlen(img->values[i]) + 1;
	return n;
}

static Size
image_size_nulls(const RowImage *img)
{
	Size		n = 1 + (img->nfields + 7) / 8;

	for (int i = 0; i < img->nfields; i++)
		if (img->values[i])
			n += strlen(img->values[i]) + 1;
	return n;
}

/* write img at p (rs_change_image_size(img) bytes); returns the end */
char *
rs_change_image_write(char *p, const RowImage *img)
{
	bool		nulls = false;

	if (img->op == RS_OP_STRING)
	{
		Size		len = strlen(img->str) + 1;

		*p++ = 'S';
		memcpy(p, img->str, len);
		return p + len;
	}
	if (img->op != RS_OP_HASH)
	{
		*p++ = 'D';
		return p;
	}
	for (int i = 0; i < img->nfields && !nulls; i++)
		nulls = img->values[i] == NULL;
	*p++ = nulls ? 'h' : 'H';
	if (nulls)
	{
		Size		nb = (img->nfields + 7) / 8;

		memset(p, 0, nb);
		for (int i = 0; i < img->nfields; i++)
			if (img->values[i] == NULL)
				p[i / 8] |= (char) (1 << (i % 8));
		p += nb;
	}
	for (int i = 0; i < img->nfields; i++)
		if (img->values[i])
		{
			Size		len = strlen(img->values[i]) + 1;

			memcpy(p, img->values[i], len);
			p += len;
		}
	return p;
}

/* read the image at p into img (strings point into the buffer); returns its end */
static const char *
image_read(const char *p, const SyncConfig *cfg, RowImage *img)
{
	const char *bitmap = NULL;
	char		tag = *p++;
	char	  **arr;

	memset(img, 0, sizeof(*img));
	switch (tag)
	{
		case 'D':
			img->op = RS_OP_DELETE;
			return p;
		case 'S':
			img->op = RS_OP_STRING;
			img->str = (char *) p;
			return p + strlen(p) + 1;
		case 'h':
			bitmap = p;
			p += (cfg->ncols + 7) / 8;
			/* FALLTHROUGH */
		case 'H':
			break;
		default:
			elog(ERROR, "redis_sync: corrupt change buffer (image tag %d)", tag);
	}
	img->op = RS_OP_HASH;
	img->nfields = cfg->ncols;
	arr = palloc(sizeof(char *) * 2 * Max(cfg->ncols, 1));
	img->fields = arr;
	img->values = arr + cfg->ncols;
	for (int i = 0; i < cfg->ncols; i++)
	{
		img->fields[i] = cfg->cols[i].name;
		if (bitmap && (bitmap[i / 8] & (1 << (i % 8))))
			img->values[i] = NULL;
		else
		{
			img->values[i] = (char *) p;
			p += strlen(p) + 1;
		}
	}
	return p;
}

/* skip the image at p without decoding it */
static const char *
image_skip(const char *p, const SyncConfig *cfg)
{
	int			nvals = cfg->ncols;

	switch (*p++)
	{
		case 'D':
			return p;
		case 'S':
			return p + strlen(p) + 1;
		case 'h':
			for (int i = 0; i < cfg->ncols; i++)
				if (p[i / 8] & (1 << (i % 8)))
					nvals--;
			p += (cfg->ncols + 7) / 8;
			break;
		case 'H':
			break;
		default:
			elog(ERROR, "redis_sync: corrupt change buffer (image tag %d)", p[-1]);
	}
	for (int i = 0; i < nvals; i++)
		p += strlen(p) + 1;
	return p;
}

void
rs_change_after(const Change *c, RowImage *img)
{
	Assert(c->kind == RS_CHANGE_ROW);
	(void) image_read(c->key + strlen(c->key) + 1, c->cfg, img);
}

bool
rs_change_before(const Change *c, RowImage *img)
{
	const char *p;

	Assert(c->kind == RS_CHANGE_ROW);
	p = image_skip(c->key + strlen(c->key) + 1, c->cfg);
	memset(img, 0, sizeof(*img));
	img->op = RS_OP_DELETE;
	if (*p == 'K')
		return false;
	if (*p == 'B')
		(void) image_read(p + 1, c->cfg, img);
	return true;
}

/* the delete of cfg's fields of a hash (RS_OP_FIELDS) */
static void
fields_image(const SyncConfig *cfg, RowImage *img)
{
	memset(img, 0, sizeof(*img));
	img->op = RS_OP_FIELDS;
	img->nfields = cfg->ncols;
	img->fields = palloc(sizeof(char *) * Max(cfg->ncols, 1));
	for (int i = 0; i < cfg->ncols; i++)
		img->fields[i] = cfg->cols[i].name;
}

void
rs_change_purge_image(const Change *c, RowImage *img)
{
	Assert(c->kind == RS_CHANGE_PURGE);
	memset(img, 0, sizeof(*img));
	img->op = RS_OP_DELETE;
	if (c->cfg != NULL)
		fields_image(c->cfg, img);
}

void
rs_image_drop_row(const SyncConfig *cfg, RowImage *img)
{
	memset(img, 0, sizeof(*img));
	img->op = RS_OP_DELETE;

	/*
	 * Only a write-through table names its fields: an invalidate table's
	 * configuration lists none, while get() caches every column of the row
	 * (an RS_OP_FIELDS of no field deleted nothing, helper-117)
	 */
	if (cfg->format != RS_FORMAT_JSON && cfg->policy == RS_POLICY_WRITE_THROUGH &&
		cfg->ncols > 0)
		fields_image(cfg, img);
}

bool
rs_change_newer(const Change *a, const Change *b)
{
	if (a->cid != b->cid)
		return a->cid > b->cid;
	return a > b;
}

int
rs_change_cmp_age(const void *a, const void *b)
{
	const Change *ca = *(const Change *const *) a;
	const Change *cb = *(const Change *const *) b;

	if (ca == cb)
		return 0;
	return rs_change_newer(ca, cb) ? 1 : -1;
}

void
rs_change_append_identity(StringInfo buf, const Change *c)
{
	char	  **vals = rs_key_split(c->key + strlen(c->cfg->prefix), c->cfg->nkeys);

	if (vals == NULL)
		elog(ERROR, "redis_sync: corrupt change buffer (key \"%s\")", c->key);
	rs_append_key_identity(buf, c->root_relid, vals, c->cfg->nkeys);
	pfree(vals);
}
