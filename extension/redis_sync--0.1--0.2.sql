/* redis_sync--0.1--0.2.sql: upgrade redis_sync 0.1 to 0.2 (wave 2: hardening) */

\echo Use "ALTER EXTENSION redis_sync UPDATE TO '0.2'" to load this file. \quit

-- A fresh CREATE EXTENSION runs redis_sync--0.1.sql and then this script, so
-- an installed 0.1 that is updated and a fresh 0.2 have the same objects (the
-- upgrade regress suite checks it).  Keep each change in the section of its
-- topic; functions that several topics change are redefined once, in the
-- shared section at the end, and edited in place there.

-- =====================================================================
-- security: who may call what, identities, row-level security, prefix claims (issue 11)
-- =====================================================================

-- Every function decides who may call it.  Functions executable by PUBLIC
-- check ownership of the table themselves (C); the rest are for superusers
-- and roles granted EXECUTE.  README "Security model" lists them all.

-- statistics: monitoring roles (pg_monitor) and superusers; the views and the
-- functions behind them answer the same roles
REVOKE EXECUTE ON FUNCTION _table_stats() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION _global_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _table_stats() TO pg_monitor;
GRANT EXECUTE ON FUNCTION _global_stats() TO pg_monitor;
GRANT SELECT ON stats, worker_stats TO pg_monitor;

-- verify() and resync() run with their caller's rights: their helpers check
-- that the caller owns the table, or the synced tables the keys belong to
GRANT EXECUTE ON FUNCTION _fetch(text[], boolean) TO PUBLIC;
GRANT EXECUTE ON FUNCTION _scan(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION _push_keys(regclass, text[]) TO PUBLIC;
GRANT EXECUTE ON FUNCTION _verify_batch(text[], jsonb[], boolean, boolean, text[], text[]) TO PUBLIC;

-- members of a write-behind table's dirty and processing sets (its owner)
CREATE FUNCTION _dirty_members(tbl regclass)
RETURNS SETOF text
LANGUAGE C CALLED ON NULL INPUT
AS 'MODULE_PATHNAME', 'redis_sync_dirty_members';

-- a table's owner may flush it and handle its dead letters
GRANT EXECUTE ON FUNCTION flush(regclass) TO PUBLIC;
GRANT EXECUTE ON FUNCTION retry_dead_letters(regclass) TO PUBLIC;
GRANT EXECUTE ON FUNCTION discard_dead_letters(regclass, text) TO PUBLIC;

-- dead letters hold row contents: each role sees (and discards) those of the
-- tables it owns; superusers and the worker see all
ALTER TABLE dead_letters ENABLE ROW LEVEL SECURITY;
CREATE POLICY dead_letters_owner ON dead_letters
    USING (pg_catalog.pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c
                                    WHERE c.oid OPERATOR(pg_catalog.=) relid::pg_catalog.oid), 'USAGE'));
GRANT SELECT, DELETE ON dead_letters TO PUBLIC;

-- record the key prefix claims of the synced tables the caller owns (all for
-- superusers) in Redis: after an upgrade from 0.1, or after Redis lost them;
-- a conflict is a WARNING naming both tables
CREATE FUNCTION claim_prefixes()
RETURNS bigint
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_claim_prefixes';
COMMENT ON FUNCTION claim_prefixes() IS
'record the key prefix claims of the synced tables the caller owns in Redis; returns tables claimed';

-- tables synced by 0.1 have no claim yet (a warning when Redis is unreachable)
DO $claim$
BEGIN
    PERFORM claim_prefixes();
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'could not claim the key prefixes of synced tables: %', SQLERRM
        USING HINT = 'Call redis_sync.claim_prefixes() once Redis is reachable.';
END
$claim$;

COMMENT ON FUNCTION flush(regclass) IS
'deliver what is queued for a table (or all tables: superusers) now, in this session; returns entries delivered';

-- (end of section)

-- =====================================================================
-- robustness: DDL, drops, restores, loading without preload (issue 12)
-- =====================================================================

-- (end of section)

-- =====================================================================
-- correctness: encoding, keys, companion keys, eviction (issue 13)
-- =====================================================================

-- (end of section)

-- =====================================================================
-- write-behind: partial upserts, never erasing (issue 13)
-- =====================================================================

-- (end of section)

-- =====================================================================
-- warming and read-through (issue 13)
-- =====================================================================

-- (end of section)

-- =====================================================================
-- shared: functions redefined by several topics (edit in place)
-- =====================================================================

CREATE OR REPLACE FUNCTION _sync(tbl regclass, p_policy text, p_key_prefix text,
                      p_key_columns text[], p_columns text[], p_format text,
                      p_ttl interval, p_consistency text, p_delivery text,
                      p_dirty_set text DEFAULT NULL, p_flush_interval interval DEFAULT NULL,
                      p_batch_size int DEFAULT NULL, p_on_missing text DEFAULT NULL,
                      p_counters text[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
AS $fn$
DECLARE
    rel          record;
    kcols        name[];
    cols         name[];
    prefix       text;
    fmt          text := lower(p_format);
    cons         text := lower(p_consistency);
    deliv        text := lower(p_delivery);
    c            text;
    att          record;
    other        record;
    part         regclass;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT cl.oid, cl.relkind, cl.relname, n.nspname, cl.relowner, cl.relispartition
      INTO rel
      FROM pg_class cl JOIN pg_namespace n ON n.oid = cl.relnamespace
     WHERE cl.oid = tbl;

    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '"%" is not a table', tbl
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = format('It is a %s.', CASE rel.relkind WHEN 'v' THEN 'view'
                      WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table'
                      WHEN 'S' THEN 'sequence' WHEN 'i' THEN 'index' ELSE 'relation of kind ' || rel.relkind::text END),
                  HINT = 'Only ordinary and partitioned tables can be synced.';
    END IF;
    IF rel.relispartition THEN
        RAISE EXCEPTION 'table "%" is a partition', tbl
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Sync the partitioned table instead; its partitions are included.';
    END IF;
    IF NOT pg_has_role(current_user, rel.relowner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', tbl USING ERRCODE = 'insufficient_privilege';
    END IF;

    IF p_policy = 'write_behind' THEN
        IF fmt IS NULL OR fmt NOT IN ('hash', 'json', 'string') THEN
            RAISE EXCEPTION 'unsupported format "%"', p_format
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Use hash, json or string.';
        END IF;
    ELSIF fmt IS NULL OR fmt NOT IN ('hash', 'json') THEN
        RAISE EXCEPTION 'unsupported format "%"', p_format
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use hash or json.';
    END IF;
    IF cons IS NULL OR cons NOT IN ('strict', 'eventual') THEN
        RAISE EXCEPTION 'unsupported consistency "%"', p_consistency
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use strict or eventual.';
    END IF;
    IF deliv IS NULL OR deliv NOT IN ('sync', 'async') THEN
        RAISE EXCEPTION 'unsupported delivery "%"', p_delivery
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use sync or async.';
    END IF;
    IF deliv = 'async' AND current_database() <> coalesce(current_setting('redis_sync.database', true), 'postgres') THEN
        RAISE EXCEPTION 'async delivery needs the table to be in database "%", where the background worker runs',
                        coalesce(current_setting('redis_sync.database', true), 'postgres')
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF deliv = 'async' AND cons = 'strict' THEN
        RAISE EXCEPTION 'consistency "strict" cannot be combined with delivery "async"'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Async delivery happens after commit, so it cannot fail the transaction.';
    END IF;
    IF p_ttl IS NOT NULL AND p_ttl <= '0'::interval THEN
        RAISE EXCEPTION 'ttl must be positive, not %', p_ttl
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass NULL for keys that never expire.';
    END IF;

    -- key columns: the primary key unless given; must match a unique index
    IF p_key_columns IS NULL THEN
        SELECT array_agg(a.attname ORDER BY k.ord) INTO kcols
          FROM pg_index i
          CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = tbl AND i.indisprimary AND k.ord <= i.indnkeyatts;
        IF kcols IS NULL THEN
            RAISE EXCEPTION 'table % has no primary key', tbl
                USING ERRCODE = 'invalid_table_definition',
                      HINT = 'Add a primary key, or pass key_columns naming the columns of a unique index.';
        END IF;
    ELSE
        IF cardinality(p_key_columns) = 0 THEN
            RAISE EXCEPTION 'key_columns must not be empty' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOREACH c IN ARRAY p_key_columns LOOP
            SELECT a.attname, a.attnotnull, a.atttypid, t.typcategory INTO att
              FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
             WHERE a.attrelid = tbl AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'column "%" of table % does not exist', c, tbl
                    USING ERRCODE = 'undefined_column';
            END IF;
            IF NOT att.attnotnull THEN
                RAISE EXCEPTION 'key column "%" of table % is nullable', c, tbl
                    USING ERRCODE = 'invalid_table_definition',
                          HINT = 'Key columns must be NOT NULL.';
            END IF;
            kcols := kcols || att.attname;
        END LOOP;
        IF (SELECT count(DISTINCT x) FROM unnest(kcols) x) <> cardinality(kcols) THEN
            RAISE EXCEPTION 'key_columns lists a column twice' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF NOT EXISTS (
            SELECT 1 FROM pg_index i
             WHERE i.indrelid = tbl AND i.indisunique AND i.indpred IS NULL
               AND i.indexprs IS NULL AND i.indnkeyatts = cardinality(kcols)
               AND (SELECT array_agg(a.attname ORDER BY a.attname)
                      FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                      JOIN pg_attribute a ON a.attrelid = tbl AND a.attnum = k.attnum
                     WHERE k.ord <= i.indnkeyatts)
                   = (SELECT array_agg(x ORDER BY x) FROM unnest(kcols) x))
        THEN
            RAISE EXCEPTION 'key_columns of table % do not match a primary key or unique index', tbl
                USING ERRCODE = 'invalid_table_definition',
                      DETAIL = 'redis_sync relies on that index to order concurrent writers of one key.',
                      HINT = 'Create a unique index on exactly these columns.';
        END IF;
    END IF;
    FOR att IN
        SELECT a.attname, t.typname, t.typcategory, t.typtype
          FROM unnest(kcols) x
          JOIN pg_attribute a ON a.attrelid = tbl AND a.attname = x
          JOIN pg_type t ON t.oid = a.atttypid
    LOOP
        IF att.typcategory = 'A' OR att.typtype IN ('c', 'p') OR att.typname IN ('json', 'jsonb', 'xml', 'bytea') THEN
            RAISE EXCEPTION 'key column "%" has unsupported type %', att.attname, att.typname
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'Key columns must be scalar types such as integer, text, uuid or date.';
        END IF;
    END LOOP;

    -- synced columns: all unless given
    IF p_columns IS NULL THEN
        SELECT array_agg(a.attname ORDER BY a.attnum) INTO cols
          FROM pg_attribute a
         WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
           AND (p_policy <> 'write_behind' OR a.attname <> ALL (kcols));
        IF cols IS NULL THEN
            RAISE EXCEPTION 'table % has no column besides its key', tbl
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    ELSE
        IF cardinality(p_columns) = 0 THEN
            RAISE EXCEPTION 'columns must not be empty' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOREACH c IN ARRAY p_columns LOOP
            IF NOT EXISTS (SELECT 1 FROM pg_attribute a
                            WHERE a.attrelid = tbl AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped) THEN
                RAISE EXCEPTION 'column "%" of table % does not exist', c, tbl
                    USING ERRCODE = 'undefined_column';
            END IF;
            IF c = ANY (cols) THEN
                RAISE EXCEPTION 'column "%" is listed twice', c USING ERRCODE = 'invalid_parameter_value';
            END IF;
            cols := cols || c::name;
        END LOOP;
    END IF;
    IF p_policy = 'invalidate' THEN
        cols := '{}';
    END IF;
    IF p_policy = 'write_behind' THEN
        IF cols && kcols THEN
            RAISE EXCEPTION 'write-behind columns must not include key columns'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'The key comes from the dirty set member, not from the cached value.';
        END IF;
        IF fmt = 'string' AND cardinality(cols) <> 1 THEN
            RAISE EXCEPTION 'format "string" needs exactly one column, not %', cardinality(cols)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass columns => ''{the_column}''.';
        END IF;
        IF p_flush_interval IS NULL OR p_flush_interval <= '0'::interval THEN
            RAISE EXCEPTION 'flush_interval must be positive' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF p_batch_size IS NULL OR p_batch_size NOT BETWEEN 1 AND 100000 THEN
            RAISE EXCEPTION 'batch_size must be between 1 and 100000, not %', p_batch_size
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF p_on_missing IS NULL OR lower(p_on_missing) NOT IN ('ignore', 'delete') THEN
            RAISE EXCEPTION 'unsupported on_missing "%"', p_on_missing
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Use ignore or delete.';
        END IF;
        IF p_dirty_set = '' THEN
            RAISE EXCEPTION 'dirty_set must not be empty' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOREACH c IN ARRAY coalesce(p_counters, '{}') LOOP
            IF NOT c = ANY (cols) THEN
                RAISE EXCEPTION 'counter "%" is not one of the write-behind columns', c
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF (SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = c)
               NOT IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype) THEN
                RAISE EXCEPTION 'counter "%" must be an integer column', c
                    USING ERRCODE = 'datatype_mismatch',
                          DETAIL = 'Redis increments integers (HINCRBY, INCRBY).';
            END IF;
        END LOOP;
        IF fmt = 'json' AND cardinality(coalesce(p_counters, '{}')) > 0 THEN
            RAISE EXCEPTION 'counters need format "hash" or "string"'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Redis cannot increment a field inside a JSON string atomically.';
        END IF;
        IF current_database() <> coalesce(current_setting('redis_sync.database', true), 'postgres') THEN
            RAISE EXCEPTION 'write-behind tables must be in database "%", where the background worker runs',
                            coalesce(current_setting('redis_sync.database', true), 'postgres')
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Set redis_sync.database in postgresql.conf and restart, or sync a table of that database.';
        END IF;
    END IF;

    prefix := coalesce(p_key_prefix, rel.nspname || '.' || rel.relname || ':');
    IF prefix = '' THEN
        RAISE EXCEPTION 'key_prefix must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT t.relid, t.key_prefix INTO other
      FROM redis_sync.tables t
     WHERE t.relid <> tbl AND (starts_with(t.key_prefix, prefix) OR starts_with(prefix, t.key_prefix)
                               OR (p_policy = 'write_behind' AND t.dirty_set = coalesce(p_dirty_set, prefix || 'dirty')))
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'key prefix "%" overlaps prefix "%" of table %', prefix, other.key_prefix, other.relid
            USING ERRCODE = 'duplicate_object',
                  DETAIL = 'Two tables whose keys share a prefix would overwrite and purge each other''s keys.';
    END IF;

    IF p_policy = 'write_behind' THEN
        PERFORM redis_sync._config_write(tbl, p_policy, prefix, kcols, cols, fmt, NULL, 'eventual', 'sync',
                                         coalesce(p_dirty_set, prefix || 'dirty'), p_flush_interval,
                                         p_batch_size, lower(p_on_missing), coalesce(p_counters, '{}')::name[]);
        RETURN;
    END IF;

    -- write-through and invalidate exclude each other: the new call wins
    PERFORM redis_sync._config_delete(tbl, CASE p_policy WHEN 'write_through' THEN 'invalidate' ELSE 'write_through' END);
    PERFORM redis_sync._config_write(tbl, p_policy, prefix, kcols, cols,
                                     CASE WHEN p_policy = 'invalidate' THEN 'hash' ELSE fmt END,
                                     p_ttl, cons, deliv, NULL, NULL, NULL, NULL, NULL);

    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'redis_sync_capture') THEN
        EXECUTE format('DROP TRIGGER redis_sync_capture ON %s', tbl);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'redis_sync_truncate') THEN
        EXECUTE format('DROP TRIGGER redis_sync_truncate ON %s', tbl);
    END IF;
    EXECUTE format('CREATE TRIGGER redis_sync_capture AFTER INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION redis_sync.capture()', tbl);
    EXECUTE format('CREATE TRIGGER redis_sync_truncate AFTER TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION redis_sync.capture()', tbl);
    IF rel.relkind = 'p' THEN
        -- truncating one partition cannot tell which keys are its own
        FOR part IN SELECT p.relid FROM pg_partition_tree(tbl) p WHERE p.relid <> tbl AND p.isleaf LOOP
            EXECUTE format('DROP TRIGGER IF EXISTS redis_sync_truncate_partition ON %s', part);
            EXECUTE format('CREATE TRIGGER redis_sync_truncate_partition BEFORE TRUNCATE ON %s '
                           'FOR EACH STATEMENT EXECUTE FUNCTION redis_sync.capture(%L)', part, tbl::oid::text);
        END LOOP;
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION unsync(tbl regclass, purge boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    cfg   record;
    found boolean := false;
    part  regclass;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = tbl), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', tbl USING ERRCODE = 'insufficient_privilege';
    END IF;
    FOR cfg IN SELECT * FROM redis_sync.tables WHERE relid = tbl LOOP
        found := true;
        IF purge THEN
            PERFORM redis_sync._purge_at_commit(tbl, cfg.key_prefix);
        END IF;
        PERFORM redis_sync._config_delete(tbl, cfg.policy);
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'redis_sync_capture') THEN
        EXECUTE format('DROP TRIGGER redis_sync_capture ON %s', tbl);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'redis_sync_truncate') THEN
        EXECUTE format('DROP TRIGGER redis_sync_truncate ON %s', tbl);
    END IF;
    FOR part IN SELECT p.relid FROM pg_partition_tree(tbl) p
                 JOIN pg_trigger t ON t.tgrelid = p.relid AND t.tgname = 'redis_sync_truncate_partition'
                WHERE p.relid <> tbl LOOP
        EXECUTE format('DROP TRIGGER redis_sync_truncate_partition ON %s', part);
    END LOOP;
    IF NOT found THEN
        RAISE NOTICE 'table % is not synced', tbl;
    END IF;
    RETURN found;
END
$fn$;

CREATE OR REPLACE FUNCTION _on_sql_drop()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    DELETE FROM redis_sync.tables t
     USING pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0
       AND t.relid::oid = d.objid;
END
$fn$;

CREATE OR REPLACE FUNCTION _on_ddl_end()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    part regclass;
    root regclass;
BEGIN
    FOR part, root IN
        SELECT c.objid::regclass, t.relid
          FROM pg_event_trigger_ddl_commands() c
          JOIN pg_class cl ON cl.oid = c.objid AND cl.relispartition
          CROSS JOIN LATERAL pg_partition_ancestors(c.objid) a
          JOIN redis_sync.tables t ON t.relid = a.relid AND t.policy <> 'write_behind'
         WHERE c.classid = 'pg_class'::regclass AND c.objsubid = 0 AND cl.relkind = 'r'
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = part
                                                 AND tgname = 'redis_sync_truncate_partition') THEN
            EXECUTE format('CREATE TRIGGER redis_sync_truncate_partition BEFORE TRUNCATE ON %s '
                           'FOR EACH STATEMENT EXECUTE FUNCTION redis_sync.capture(%L)', part, root::oid::text);
        END IF;
    END LOOP;
END
$fn$;

CREATE OR REPLACE FUNCTION _verify_batch(ks text[], vs jsonb[], is_hash boolean, is_wb boolean,
                              cols text[], pending text[])
RETURNS TABLE(key text, problem text, table_value jsonb, cache_value jsonb)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT u.k, CASE WHEN u.k = ANY (pending) THEN 'pending'
                     WHEN f.value IS NULL THEN 'missing in cache'
                     ELSE 'different value' END,
           u.v, f.value
      FROM unnest(ks, vs) u(k, v)
      LEFT JOIN redis_sync._fetch(ks, is_hash) f ON f.key = u.k
     WHERE (f.value IS NULL AND NOT is_wb)
        OR (f.value IS NOT NULL AND u.v IS DISTINCT FROM
            CASE WHEN is_hash THEN (SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}')
                                      FROM jsonb_each(f.value) e WHERE e.key = ANY (cols))
                 ELSE f.value END)
$$;

CREATE OR REPLACE FUNCTION verify(tbl regclass, sample int DEFAULT NULL)
RETURNS TABLE(key text, problem text, table_value jsonb, cache_value jsonb)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    cfg      record;
    keyexpr  text;
    valexpr  text;
    cols     text[];
    is_hash  boolean;
    is_wb    boolean;
    pending  text[] := '{}';
    ks       text[] := '{}';
    vs       jsonb[] := '{}';
    r        record;
    src      text;
BEGIN
    IF sample IS NOT NULL AND sample <= 0 THEN
        RAISE EXCEPTION 'sample must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tbl IS NOT NULL AND NOT pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = tbl), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', tbl USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM redis_sync.tables t WHERE t.relid = tbl AND t.policy <> 'invalidate') THEN
        RAISE EXCEPTION 'table % is not synced write-through or write-behind', tbl
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'An invalidate table''s cache is filled by readers; there is nothing to compare.';
    END IF;

    FOR cfg IN SELECT * FROM redis_sync.tables t
                WHERE t.relid = tbl AND t.policy <> 'invalidate' ORDER BY t.policy DESC
    LOOP
        is_wb := cfg.policy = 'write_behind';
        is_hash := cfg.format = 'hash';
        cols := cfg.columns::text[];
        SELECT format('%L || %s', cfg.key_prefix,
                      string_agg(format('t.%I::text', k), ' || '':'' || ' ORDER BY o))
          INTO keyexpr FROM unnest(cfg.key_columns) WITH ORDINALITY u(k, o);
        IF is_hash THEN
            SELECT format('jsonb_strip_nulls(jsonb_build_object(%s))',
                          string_agg(format('%L, t.%I::text', c, c), ', ' ORDER BY o))
              INTO valexpr FROM unnest(cols) WITH ORDINALITY u(c, o);
        ELSIF cfg.format = 'string' THEN
            valexpr := format('to_jsonb(t.%I::text)', cols[1]);
        ELSE
            SELECT format('(SELECT to_jsonb(x) FROM (SELECT %s) x)',
                          string_agg(format('t.%I', c), ', ' ORDER BY o))
              INTO valexpr FROM unnest(cols) WITH ORDINALITY u(c, o);
        END IF;
        IF is_wb THEN
            SELECT coalesce(array_agg(DISTINCT cfg.key_prefix || m), '{}') INTO pending
              FROM redis_sync._dirty_members(tbl) m;
        END IF;

        src := format('SELECT %s AS k, %s AS v FROM %s t', keyexpr, valexpr, tbl);
        IF sample IS NOT NULL THEN
            src := src || format(' ORDER BY random() LIMIT %s', sample);
        END IF;
        ks := '{}';
        vs := '{}';
        FOR r IN EXECUTE src LOOP
            ks := ks || r.k;
            vs := vs || r.v;
            IF cardinality(ks) >= 1000 THEN
                RETURN QUERY SELECT * FROM redis_sync._verify_batch(ks, vs, is_hash, is_wb, cols, pending);
                ks := '{}';
                vs := '{}';
            END IF;
        END LOOP;
        IF cardinality(ks) > 0 THEN
            RETURN QUERY SELECT * FROM redis_sync._verify_batch(ks, vs, is_hash, is_wb, cols, pending);
        END IF;

        -- keys in Redis without a row (only for a full check; once per table)
        IF sample IS NULL AND NOT (cfg.policy = 'write_behind'
                                   AND EXISTS (SELECT 1 FROM redis_sync.tables t2
                                                WHERE t2.relid = tbl AND t2.policy = 'write_through')) THEN
            RETURN QUERY EXECUTE format(
                'SELECT s.k, CASE WHEN s.k = ANY ($2) THEN %L ELSE %L END, NULL::jsonb, f.value
                   FROM redis_sync._scan($1) s(k)
                   LEFT JOIN (SELECT %s AS k FROM %s t) t USING (k)
                   LEFT JOIN LATERAL redis_sync._fetch(ARRAY[s.k], $3) f ON true
                  WHERE t.k IS NULL AND s.k <> $4
                    AND s.k NOT LIKE %L',
                'pending', 'extra in cache', keyexpr, tbl, '%:rs\_%')
                USING cfg.key_prefix, pending, is_hash, coalesce(cfg.dirty_set, '');
        END IF;
    END LOOP;
END
$fn$;

CREATE OR REPLACE FUNCTION resync(tbl regclass)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    ks text[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM redis_sync.tables t WHERE t.relid = tbl AND t.policy = 'write_through') THEN
        RAISE EXCEPTION 'resync repairs write-through tables, and % is not one', tbl
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'For write-behind tables Redis holds the newer data: use redis_sync.flush().';
    END IF;
    SELECT array_agg(DISTINCT v.key) INTO ks
      FROM redis_sync.verify(tbl) v
     WHERE v.problem IN ('missing in cache', 'different value', 'extra in cache');
    IF ks IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM redis_sync._push_keys(tbl, ks);
    RETURN cardinality(ks);
END
$fn$;
