/*-------------------------------------------------------------------------
 *
 * canonical.c
 *		The canonical settings every key and value is produced and decoded
 *		under, whatever the session has (README, "Encoding"): DateStyle
 *		ISO, YMD; IntervalStyle postgres; TimeZone UTC; extra_float_digits
 *		1; bytea_output hex; lc_monetary C; a search path of pg_catalog
 *		alone for reg* names (and, for reading back, array_nulls on and
 *		xmloption content).  rs_canonical_enter/exit switch the variables
 *		behind them directly (per captured row); rs_canonical_gucs_push/pop
 *		set them as GUCs (for SQL the extension runs).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "common/hashfn.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/bytea.h"
#include "utils/float.h"
#include "utils/guc_tables.h"
#include "utils/pg_locale.h"
#include "utils/xml.h"

#include "encode.h"
#include "redis_client.h"

/* ----------------------------------------------------------------
 * Canonical settings
 * ---------------------------------------------------------------- */

static int	canonical_depth = 0;
static pg_tz *utc_tz = NULL;

/*
 * lc_monetary's boot value, "C": the string the canonical form points
 * locale_monetary at.  The GUC machinery never frees its boot value, so a
 * SET of lc_monetary that runs inside the encoding (a domain's check
 * calling set_config()) cannot free a string it does not own.
 */
static char *
monetary_c(void)
{
	static char *boot = NULL;

	if (boot == NULL)
	{
		struct config_generic **vars = get_guc_variables();
		int			n = GetNumConfigOptions();

		for (int i = 0; i < n; i++)
			if (vars[i]->vartype == PGC_STRING && strcmp(vars[i]->name, "lc_monetary") == 0)
			{
				struct config_string *conf = (struct config_string *) vars[i];

				if (conf->variable == &locale_monetary && conf->boot_val != NULL &&
					strcmp(conf->boot_val, "C") == 0)
					boot = unconstify(char *, conf->boot_val);
				break;
			}
		if (boot == NULL)
			elog(ERROR, "redis_sync: lc_monetary has no boot value \"C\"");
	}
	return boot;
}

/* pg_catalog as the whole search path (an override: no GUC machinery) */
static void
push_catalog_path(void)
{
	OverrideSearchPath path;

	path.schemas = list_make1_oid(PG_CATALOG_NAMESPACE);
	path.addCatalog = false;
	path.addTemp = false;
	path.generation = 0;
	PushOverrideSearchPath(&path);
	list_free(path.schemas);
}

void
rs_canonical_enter(RsCanonicalSave *save)
{
	char	   *monetary = monetary_c();	/* may fail: before any change */

	save->active = canonical_depth++ == 0;
	if (!save->active)
		return;
	if (utc_tz == NULL)
	{
		utc_tz = pg_tzset("UTC");
		if (utc_tz == NULL)
			elog(ERROR, "redis_sync: time zone \"UTC\" is not available");
	}
	save->datestyle = DateStyle;
	save->dateorder = DateOrder;
	save->intervalstyle = IntervalStyle;
	save->float_digits = extra_float_digits;
	save->bytea_out = bytea_output;
	save->array_nulls = Array_nulls;
	save->xmloption = xmloption;
	save->tz = session_timezone;
	DateStyle = USE_ISO_DATES;
	DateOrder = DATEORDER_YMD;
	IntervalStyle = INTSTYLE_POSTGRES;
	extra_float_digits = 1;
	bytea_output = BYTEA_OUTPUT_HEX;
	Array_nulls = true;			/* array input: NULL is a NULL element */
	xmloption = XMLOPTION_CONTENT;	/* xml input: documents and fragments */
	session_timezone = utc_tz;

	/*
	 * money: the C locale's conventions ("$1,234.56"); cash_out reads
	 * localeconv() through a cache that the assign hook invalidates.  Only
	 * swapped when the session's lc_monetary is not C already, so the cache
	 * stays valid in the usual case.
	 */
	save->monetary = NULL;
	if (locale_monetary == NULL || strcmp(locale_monetary, "C") != 0)
	{
		save->monetary = locale_monetary;
		locale_monetary = monetary;
		assign_locale_monetary(locale_monetary, NULL);
	}

	/*
	 * reg* types: output functions qualify every name that is not visible, so
	 * with pg_catalog as the whole path a name is schema-qualified unless it
	 * lives in pg_catalog, and reads back to the same OID in any session.  An
	 * override path: no GUC machinery per row.
	 */
	push_catalog_path();
	save->path_pushed = true;
}

/*
 * The pinned search path off and on again, at the same transaction nest
 * level, around code of the table's that reads values (a domain's CHECK
 * function, whose own SET search_path an override path would defeat): only
 * the output of reg* values needs the pin.  No-ops when this save did not
 * pin it (nested in another canonical section).
 */
void
rs_canonical_path_pop(RsCanonicalSave *save)
{
	if (save->active && save->path_pushed)
		PopOverrideSearchPath();
}

void
rs_canonical_path_push(RsCanonicalSave *save)
{
	if (save->active && save->path_pushed)
		push_catalog_path();
}

void
rs_canonical_exit(RsCanonicalSave *save)
{
	canonical_depth--;
	if (!save->active)
		return;
	DateStyle = save->datestyle;
	DateOrder = save->dateorder;
	IntervalStyle = save->intervalstyle;
	extra_float_digits = save->float_digits;
	bytea_output = save->bytea_out;
	Array_nulls = save->array_nulls;
	xmloption = save->xmloption;
	session_timezone = save->tz;
	/* restored unless a SET inside changed it (the GUC stack owns that) */
	if (save->monetary != NULL && locale_monetary == monetary_c())
	{
		locale_monetary = save->monetary;
		assign_locale_monetary(locale_monetary, NULL);
	}
	if (save->path_pushed)
		PopOverrideSearchPath();
}

/* the canonical settings as GUCs, for SQL the extension runs */
int
rs_canonical_gucs_push(void)
{
	int			nest = NewGUCNestLevel();

	(void) set_config_option("datestyle", "ISO, YMD", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("intervalstyle", "postgres", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("timezone", "UTC", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("extra_float_digits", "1", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("bytea_output", "hex", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("lc_monetary", "C", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* array input: an unquoted NULL element is NULL, as the output means it */
	(void) set_config_option("array_nulls", "on", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* xml input: content accepts every value xml_out writes (documents too) */
	(void) set_config_option("xmloption", "content", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* the SQL run under these is schema-qualified; reg* output as above */
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

void
rs_canonical_gucs_pop(int nestlevel)
{
	AtEOXact_GUC(true, nestlevel);
}

char *
rs_canonical_output(FmgrInfo *out, Datum d)
{
	RsCanonicalSave save;
	char	   *result;

	rs_canonical_enter(&save);
	PG_TRY();
	{
		result = OutputFunctionCall(out, d);
	}
	PG_FINALLY();
	{
		rs_canonical_exit(&save);
	}
	PG_END_TRY();
	return result;
}
