/* redis_sync--0.1.sql: install script of redis_sync 0.1 */

\echo Use "CREATE EXTENSION redis_sync" to load this file. \quit

-- Applications may use the schema (get, hincrby, hset, the stats views);
-- everything that reads other tables' data or talks to Redis freely is
-- revoked from PUBLIC below, and the outbox and dead letters (row contents)
-- are readable by superusers only.
GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;

-- ---------------------------------------------------------------------
-- Raw access to Redis (administrators and tests)
-- ---------------------------------------------------------------------

CREATE FUNCTION command(VARIADIC args text[])
RETURNS jsonb
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'redis_sync_command';

COMMENT ON FUNCTION command(text[]) IS
'run one Redis command and return its reply as jsonb (superusers and granted roles only)';

REVOKE EXECUTE ON FUNCTION command(text[]) FROM PUBLIC;

CREATE FUNCTION parse_url(url text,
                          OUT host text, OUT port int, OUT socket text,
                          OUT db int, OUT username text, OUT has_password bool)
RETURNS record
LANGUAGE C STRICT IMMUTABLE
AS 'MODULE_PATHNAME', 'redis_sync_parse_url';

COMMENT ON FUNCTION parse_url(text) IS
'show how a redis_sync.redis_url value is understood, without connecting';

-- ---------------------------------------------------------------------
-- Configuration: one row per synced table and policy
-- ---------------------------------------------------------------------

CREATE TABLE tables (
    relid        regclass NOT NULL,
    policy       text NOT NULL CHECK (policy IN ('write_through', 'invalidate', 'write_behind')),
    key_prefix   text NOT NULL CHECK (key_prefix <> ''),
    key_columns  name[] NOT NULL,
    columns      name[] NOT NULL,
    format       text NOT NULL CHECK (format IN ('hash', 'json', 'string')),
    ttl          interval CHECK (ttl > '0'::interval),
    consistency  text NOT NULL DEFAULT 'eventual' CHECK (consistency IN ('strict', 'eventual')),
    delivery     text NOT NULL DEFAULT 'sync' CHECK (delivery IN ('sync', 'async')),
    -- write-behind only
    dirty_set      text,
    flush_interval interval CHECK (flush_interval > '0'::interval),
    batch_size     int CHECK (batch_size BETWEEN 1 AND 100000),
    on_missing     text CHECK (on_missing IN ('ignore', 'delete')),
    counters       name[],
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (relid, policy)
);

COMMENT ON TABLE tables IS 'redis_sync: which tables are synced to Redis, and how';
SELECT pg_catalog.pg_extension_config_dump('tables', '');
GRANT SELECT ON tables TO PUBLIC;

-- ---------------------------------------------------------------------
-- Outbox: committed changes waiting for delivery to Redis
-- ---------------------------------------------------------------------

CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    relid           oid NOT NULL,
    redis_key       text NOT NULL,
    op              "char" NOT NULL CHECK (op IN ('H', 'S', 'D', 'T')),
    payload         jsonb,
    ttl_ms          bigint NOT NULL DEFAULT 0,
    version         text NOT NULL,
    seq             bigint NOT NULL DEFAULT 0,
    xid             xid8 NOT NULL DEFAULT pg_current_xact_id(),
    enqueued_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    last_error      text
);
-- a queue: vacuum it often
ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
                        autovacuum_vacuum_cost_delay = 0);

COMMENT ON TABLE outbox IS 'redis_sync: changes committed but not yet confirmed by Redis';

-- ---------------------------------------------------------------------
-- Dead letters: write-behind values the table refused
-- ---------------------------------------------------------------------

CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    relid       regclass NOT NULL,
    redis_key   text NOT NULL,
    member      text NOT NULL,
    raw_value   jsonb,
    error       text NOT NULL,
    sqlstate    text NOT NULL,
    attempts    int NOT NULL DEFAULT 1,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (relid, member)
);
COMMENT ON TABLE dead_letters IS 'redis_sync: write-behind values that could not be applied, with the error';

-- ---------------------------------------------------------------------
-- Capture trigger and internal helpers (C)
-- ---------------------------------------------------------------------

CREATE FUNCTION capture()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'redis_sync_capture';

-- writes or removes a row of redis_sync.tables; checks that the caller owns
-- the table, then writes with the extension owner's rights
CREATE FUNCTION _config_write(tbl regclass, policy text, key_prefix text,
                              key_columns name[], columns name[], format text,
                              ttl interval, consistency text, delivery text,
                              dirty_set text, flush_interval interval, batch_size int,
                              on_missing text, counters name[])
RETURNS void
LANGUAGE C CALLED ON NULL INPUT
AS 'MODULE_PATHNAME', 'redis_sync_config_write';

CREATE FUNCTION _config_delete(tbl regclass, policy text)
RETURNS bigint
LANGUAGE C CALLED ON NULL INPUT
AS 'MODULE_PATHNAME', 'redis_sync_config_delete';

-- queue removal of every key under key_prefix at commit (SCAN + UNLINK)
CREATE FUNCTION _purge_at_commit(tbl regclass, key_prefix text)
RETURNS void
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_purge_at_commit';

-- deliver queued outbox entries now; returns the number delivered
CREATE FUNCTION deliver_outbox(max_entries int DEFAULT 10000)
RETURNS bigint
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_deliver_outbox';
REVOKE EXECUTE ON FUNCTION deliver_outbox(int) FROM PUBLIC;

-- counters of this session (round trips, keys pushed, ...)
CREATE FUNCTION session_stats(OUT captured bigint, OUT pushed bigint,
                              OUT round_trips bigint, OUT chunks bigint,
                              OUT queued bigint, OUT repaired bigint)
RETURNS record
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_session_stats';

-- ---------------------------------------------------------------------
-- Syncing tables
-- ---------------------------------------------------------------------

CREATE FUNCTION _sync(tbl regclass, p_policy text, p_key_prefix text,
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

CREATE FUNCTION write_through(tbl regclass,
                              key_prefix text DEFAULT NULL,
                              key_columns text[] DEFAULT NULL,
                              columns text[] DEFAULT NULL,
                              format text DEFAULT 'hash',
                              ttl interval DEFAULT NULL,
                              consistency text DEFAULT 'eventual',
                              delivery text DEFAULT 'sync')
RETURNS void
LANGUAGE sql
AS $$ SELECT redis_sync._sync(tbl, 'write_through', key_prefix, key_columns, columns,
                              format, ttl, consistency, delivery) $$;

COMMENT ON FUNCTION write_through(regclass, text, text[], text[], text, interval, text, text) IS
'push every committed change of a table to Redis at commit';

CREATE FUNCTION invalidate(tbl regclass,
                           key_prefix text DEFAULT NULL,
                           key_columns text[] DEFAULT NULL,
                           consistency text DEFAULT 'eventual',
                           delivery text DEFAULT 'sync')
RETURNS void
LANGUAGE sql
AS $$ SELECT redis_sync._sync(tbl, 'invalidate', key_prefix, key_columns, NULL,
                              'hash', NULL, consistency, delivery) $$;

COMMENT ON FUNCTION invalidate(regclass, text, text[], text, text) IS
'delete the cached row from Redis whenever a committed change touches it';

CREATE FUNCTION write_behind(tbl regclass,
                             key_prefix text DEFAULT NULL,
                             dirty_set text DEFAULT NULL,
                             key_columns text[] DEFAULT NULL,
                             columns text[] DEFAULT NULL,
                             format text DEFAULT 'hash',
                             flush_interval interval DEFAULT '1 s',
                             batch_size int DEFAULT 1000,
                             on_missing text DEFAULT 'ignore',
                             counters text[] DEFAULT NULL)
RETURNS void
LANGUAGE sql
AS $$ SELECT redis_sync._sync(tbl, 'write_behind', key_prefix, key_columns, columns,
                              format, NULL, 'eventual', 'sync', dirty_set, flush_interval,
                              batch_size, on_missing, counters) $$;

COMMENT ON FUNCTION write_behind(regclass, text, text, text[], text[], text, interval, int, text, text[]) IS
'drain keys that applications mark dirty in Redis into the table, in batches';

CREATE FUNCTION unsync(tbl regclass, purge boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    cfg   record;
    found boolean := false;
    part  regclass;
BEGIN
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

COMMENT ON FUNCTION unsync(regclass, boolean) IS
'stop syncing a table; with purge => true also delete its keys from Redis at commit';

-- ---------------------------------------------------------------------
-- Event triggers: keep the configuration in step with DDL
-- ---------------------------------------------------------------------

-- a dropped table is no longer synced
CREATE FUNCTION _on_sql_drop()
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

-- a partition created or attached later gets the TRUNCATE guard
CREATE FUNCTION _on_ddl_end()
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

CREATE EVENT TRIGGER redis_sync_sql_drop ON sql_drop
    EXECUTE FUNCTION _on_sql_drop();
CREATE EVENT TRIGGER redis_sync_ddl_end ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
    EXECUTE FUNCTION _on_ddl_end();

-- ---------------------------------------------------------------------
-- Operations: flush, warm, statistics
-- ---------------------------------------------------------------------

CREATE FUNCTION flush(tbl regclass DEFAULT NULL)
RETURNS bigint
LANGUAGE C CALLED ON NULL INPUT
AS 'MODULE_PATHNAME', 'redis_sync_flush';
COMMENT ON FUNCTION flush(regclass) IS
'deliver what is queued for a table (or all tables) now, in this session; returns entries delivered';
REVOKE EXECUTE ON FUNCTION flush(regclass) FROM PUBLIC;

CREATE FUNCTION warm(tbl regclass, batch_size int DEFAULT 10000)
RETURNS bigint
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_warm';
COMMENT ON FUNCTION warm(regclass, int) IS
'push every row of a write-through table to Redis, fenced, in batches; returns rows pushed';

CREATE FUNCTION _table_stats(
    OUT relid oid, OUT captured bigint, OUT pushed bigint, OUT push_failures bigint,
    OUT queued bigint, OUT delivered bigint, OUT delivery_failures bigint,
    OUT repaired bigint, OUT warmed bigint, OUT claimed bigint, OUT applied bigint,
    OUT batches bigint, OUT dead bigint, OUT drain_retries bigint, OUT unknown_fields bigint,
    OUT hits bigint, OUT misses bigint, OUT drain_lag float8,
    OUT last_error text, OUT last_error_at timestamptz)
RETURNS SETOF record
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_table_stats';

CREATE FUNCTION _global_stats(
    OUT round_trips bigint, OUT worker_rounds bigint, OUT worker_running boolean,
    OUT worker_pid int, OUT circuit text, OUT circuit_changed_at timestamptz,
    OUT connection_failures int, OUT circuit_opens bigint,
    OUT last_error text, OUT last_error_at timestamptz, OUT redis_run_id text,
    OUT stats_reset_at timestamptz)
RETURNS record
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_global_stats';

CREATE FUNCTION stats_reset()
RETURNS void
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_stats_reset';
COMMENT ON FUNCTION stats_reset() IS 'zero the counters of redis_sync.stats';
REVOKE EXECUTE ON FUNCTION stats_reset() FROM PUBLIC;

-- per synced table; outbox depth and age come from the outbox itself
CREATE VIEW stats AS
SELECT t.relid AS "table",
       t.policy,
       coalesce(s.captured, 0) AS captured,
       coalesce(s.pushed, 0) AS pushed,
       coalesce(s.push_failures, 0) AS push_failures,
       coalesce(s.queued, 0) AS queued,
       coalesce(s.delivered, 0) AS delivered,
       coalesce(s.delivery_failures, 0) AS delivery_failures,
       coalesce(s.repaired, 0) AS repaired,
       coalesce(s.warmed, 0) AS warmed,
       coalesce(o.depth, 0) AS outbox_depth,
       o.oldest_age AS outbox_oldest_age,
       coalesce(s.claimed, 0) AS claimed,
       coalesce(s.applied, 0) AS applied,
       coalesce(s.batches, 0) AS batches,
       coalesce(s.dead, 0) AS dead,
       coalesce(s.drain_retries, 0) AS drain_retries,
       coalesce(s.unknown_fields, 0) AS unknown_fields,
       s.drain_lag * interval '1 second' AS drain_lag,
       coalesce(s.hits, 0) AS hits,
       coalesce(s.misses, 0) AS misses,
       s.last_error,
       s.last_error_at
  FROM redis_sync.tables t
  LEFT JOIN redis_sync._table_stats() s ON s.relid = t.relid::oid
  LEFT JOIN (SELECT relid, count(*) AS depth, now() - min(enqueued_at) AS oldest_age
               FROM redis_sync.outbox GROUP BY relid) o ON o.relid = t.relid::oid;
COMMENT ON VIEW stats IS 'redis_sync: activity per synced table since the server started or stats_reset()';

CREATE VIEW worker_stats AS
SELECT g.*,
       (SELECT count(*) FROM redis_sync.outbox) AS outbox_depth,
       (SELECT now() - min(enqueued_at) FROM redis_sync.outbox) AS outbox_oldest_age
  FROM redis_sync._global_stats() g;
COMMENT ON VIEW worker_stats IS 'redis_sync: worker, circuit breaker and global counters';

CREATE FUNCTION worker_pause(timeout_ms int DEFAULT 10000)
RETURNS boolean
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_worker_pause';
COMMENT ON FUNCTION worker_pause(int) IS
'stop the background worker from delivering (until worker_resume() or a restart); waits until it is idle';
REVOKE EXECUTE ON FUNCTION worker_pause(int) FROM PUBLIC;

CREATE FUNCTION worker_resume()
RETURNS void
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_worker_resume';
REVOKE EXECUTE ON FUNCTION worker_resume() FROM PUBLIC;

-- ---------------------------------------------------------------------
-- Write-behind: application helpers and dead letters
-- ---------------------------------------------------------------------

CREATE FUNCTION hincrby(tbl regclass, key text, "column" text, delta bigint)
RETURNS bigint
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_hincrby';
COMMENT ON FUNCTION hincrby(regclass, text, text, bigint) IS
'add delta to a write-behind counter in Redis and mark the key dirty, seeding it from the table when Redis lost it';

CREATE FUNCTION hset(tbl regclass, key text, "column" text, value text)
RETURNS void
LANGUAGE C CALLED ON NULL INPUT
AS 'MODULE_PATHNAME', 'redis_sync_hset';
COMMENT ON FUNCTION hset(regclass, text, text, text) IS
'set a write-behind field in Redis and mark the key dirty, seeding it from the table when Redis lost it';

CREATE FUNCTION retry_dead_letters(tbl regclass DEFAULT NULL)
RETURNS bigint
LANGUAGE C CALLED ON NULL INPUT
AS 'MODULE_PATHNAME', 'redis_sync_retry_dead_letters';
COMMENT ON FUNCTION retry_dead_letters(regclass) IS
'mark dead-lettered keys dirty again so the next drain retries them; returns how many';
REVOKE EXECUTE ON FUNCTION retry_dead_letters(regclass) FROM PUBLIC;

CREATE FUNCTION discard_dead_letters(tbl regclass DEFAULT NULL, member text DEFAULT NULL)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH d AS (DELETE FROM redis_sync.dead_letters
                WHERE (tbl IS NULL OR relid = tbl) AND (discard_dead_letters.member IS NULL
                                                        OR dead_letters.member = discard_dead_letters.member)
               RETURNING 1)
    SELECT count(*) FROM d
$$;
COMMENT ON FUNCTION discard_dead_letters(regclass, text) IS
'forget dead letters (of a table, or one member); returns how many';
REVOKE EXECUTE ON FUNCTION discard_dead_letters(regclass, text) FROM PUBLIC;

-- ---------------------------------------------------------------------
-- Read-through, verify, resync
-- ---------------------------------------------------------------------

CREATE FUNCTION get(row_type anyelement, VARIADIC key text[])
RETURNS anyelement
LANGUAGE C CALLED ON NULL INPUT
AS 'MODULE_PATHNAME', 'redis_sync_get';
COMMENT ON FUNCTION get(anyelement, text[]) IS
'read-through: the cached row, else the table''s row (populating the cache, fenced); NULL when there is none';

CREATE FUNCTION _fetch(keys text[], hash boolean, OUT key text, OUT value jsonb)
RETURNS SETOF record
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_fetch';
REVOKE EXECUTE ON FUNCTION _fetch(text[], boolean) FROM PUBLIC;

CREATE FUNCTION _scan(prefix text, OUT key text)
RETURNS SETOF text
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_scan';
REVOKE EXECUTE ON FUNCTION _scan(text) FROM PUBLIC;

CREATE FUNCTION _push_keys(tbl regclass, keys text[])
RETURNS bigint
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_push_keys';
REVOKE EXECUTE ON FUNCTION _push_keys(regclass, text[]) FROM PUBLIC;

-- one batch of verify(): expected values vs what Redis holds (one round trip)
CREATE FUNCTION _verify_batch(ks text[], vs jsonb[], is_hash boolean, is_wb boolean,
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
REVOKE EXECUTE ON FUNCTION _verify_batch(text[], jsonb[], boolean, boolean, text[], text[]) FROM PUBLIC;

CREATE FUNCTION verify(tbl regclass, sample int DEFAULT NULL)
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
            SELECT coalesce(array_agg(cfg.key_prefix || m), '{}') INTO pending
              FROM (SELECT jsonb_array_elements_text(redis_sync.command('SMEMBERS', cfg.dirty_set)) m
                    UNION
                    SELECT jsonb_array_elements_text(redis_sync.command('SMEMBERS',
                               CASE WHEN cfg.dirty_set ~ '\{[^}]+\}' THEN cfg.dirty_set || ':rs_processing'
                                    ELSE '{' || cfg.dirty_set || '}:rs_processing' END))) s;
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
COMMENT ON FUNCTION verify(regclass, int) IS
'compare a table with its Redis keys: missing in cache, extra in cache, different value (pending for write-behind)';

CREATE FUNCTION resync(tbl regclass)
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
COMMENT ON FUNCTION resync(regclass) IS
'repair every difference verify() finds in a write-through table, fenced; returns keys repaired';
