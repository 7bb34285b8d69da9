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
-- SELECT only: DELETE would let any role LOCK the table in ACCESS EXCLUSIVE
-- mode, and every drain batch reads it; discard_dead_letters() deletes as
-- the superuser after its own owner check
GRANT SELECT ON dead_letters TO PUBLIC;
CREATE OR REPLACE FUNCTION discard_dead_letters(tbl regclass DEFAULT NULL, member text DEFAULT NULL)
RETURNS bigint
LANGUAGE C CALLED ON NULL INPUT
AS 'MODULE_PATHNAME', 'redis_sync_discard_dead_letters';

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

-- [crash] columns dropped, renamed or retyped
-- the columns one collected DDL command dropped, renamed or retyped (ddl.c)
CREATE FUNCTION _column_changes(cmd pg_ddl_command)
RETURNS TABLE(action text, old_name text, new_name text)
LANGUAGE C
AS 'MODULE_PATHNAME', 'redis_sync_column_changes';
REVOKE EXECUTE ON FUNCTION _column_changes(pg_ddl_command) FROM PUBLIC;

-- The configuration follows a DROP, RENAME or type change of a synced
-- column (called by _on_ddl_end, in the DDL's transaction).  A dropped
-- column is no longer written; a renamed one is written under its new name;
-- the table's cached keys are removed at commit either way (their fields
-- or values were written for the old column) and refilled by writes,
-- read-through and warm().  Dropping a key column, or the last synced
-- column, unsyncs the table.  Write-behind configurations are left alone.
CREATE FUNCTION _follow_column(tbl regclass, action text, old_name text, new_name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    cfg   record;
    kcols name[];
    cols  name[];
BEGIN
    IF tbl IS NULL OR old_name IS NULL OR action IS NULL OR action NOT IN ('add', 'drop', 'rename', 'type')
       OR (action = 'rename' AND new_name IS NULL) THEN
        RAISE EXCEPTION 'invalid column change % of table %: % -> %', action, tbl, old_name, new_name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR cfg IN SELECT * FROM redis_sync.tables t
                WHERE t.relid = tbl ORDER BY t.policy LOOP
        -- an invalidate table's get() caches a hash of every column the table
        -- has: a column added (with its default), dropped, renamed or retyped
        -- makes the cached hashes wrong (a hit would return NULL, or the old
        -- value), so they are removed at commit
        IF cfg.policy = 'invalidate' AND NOT old_name::name = ANY (cfg.key_columns) THEN
            RAISE NOTICE 'column "%" of invalidate table % changed (%): its cached rows are removed at commit', old_name, tbl, action;
            PERFORM redis_sync._purge_at_commit(tbl, cfg.key_prefix);
            CONTINUE;
        END IF;
        CONTINUE WHEN action = 'add';
        CONTINUE WHEN NOT (old_name::name = ANY (cfg.key_columns) OR old_name::name = ANY (cfg.columns));
        kcols := cfg.key_columns;
        cols := cfg.columns;
        IF cfg.policy = 'write_behind' THEN
            -- Redis holds the newer data: nothing is purged; the drain writes
            -- the renamed column, and no longer a dropped one
            IF action = 'drop' AND old_name::name = ANY (kcols) THEN
                RAISE WARNING 'table % is no longer synced write-behind: its key column "%" was dropped', tbl, old_name
                    USING HINT = 'Call redis_sync.write_behind() to sync it again.';
                PERFORM redis_sync._config_delete(tbl, 'write_behind');
                CONTINUE;
            ELSIF action = 'drop' THEN
                -- every dropped column goes (one ALTER TABLE may drop several)
                cols := ARRAY(SELECT u.c FROM unnest(cols) WITH ORDINALITY u(c, o)
                      WHERE EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = u.c
                                                                AND a.attnum > 0 AND NOT a.attisdropped)
                      ORDER BY u.o)::name[];
                IF cardinality(cols) = 0 THEN
                    RAISE WARNING 'table % is no longer synced write-behind: its last write-behind column "%" was dropped', tbl, old_name
                        USING HINT = 'Call redis_sync.write_behind() to sync it again.';
                    PERFORM redis_sync._config_delete(tbl, 'write_behind');
                    CONTINUE;
                END IF;
                RAISE NOTICE 'write-behind column "%" of table % was dropped: the drain no longer writes it', old_name, tbl
                    USING DETAIL = 'Fields of that name in Redis are ignored and counted in stats.unknown_fields.';
            ELSIF action = 'rename' THEN
                kcols := array_replace(kcols, old_name::name, new_name::name);
                cols := array_replace(cols, old_name::name, new_name::name);
                RAISE NOTICE 'write-behind column "%" of table % was renamed to "%": the drain writes the hash field "%" into it',
                             old_name, tbl, new_name, new_name
                    USING HINT = 'Applications must write the new field name.';
            ELSE
                RAISE NOTICE 'the type of write-behind column "%" of table % changed', old_name, tbl;
                CONTINUE;
            END IF;
            PERFORM redis_sync._config_write(tbl, cfg.policy, cfg.key_prefix, kcols, cols, cfg.format,
                                             cfg.ttl, cfg.consistency, cfg.delivery, cfg.dirty_set,
                                             cfg.flush_interval, cfg.batch_size, cfg.on_missing,
                                             CASE WHEN action = 'drop' THEN ARRAY(SELECT u.c FROM unnest(cfg.counters) WITH ORDINALITY u(c, o)
                                            WHERE EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = u.c
                                                                                      AND a.attnum > 0 AND NOT a.attisdropped)
                                            ORDER BY u.o)::name[]
                                                  ELSE array_replace(cfg.counters, old_name::name, new_name::name) END);
            CONTINUE;
        END IF;
        IF action = 'drop' THEN
            cols := ARRAY(SELECT u.c FROM unnest(cols) WITH ORDINALITY u(c, o)
                      WHERE EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = u.c
                                                                AND a.attnum > 0 AND NOT a.attisdropped)
                      ORDER BY u.o)::name[];
            IF old_name::name = ANY (kcols) OR cardinality(cols) = 0 THEN
                RAISE WARNING 'table % is no longer synced: its column "%" was dropped', tbl, old_name
                    USING DETAIL = 'The column was a key column or the last synced column; the table''s keys are removed from Redis at commit.',
                          HINT = 'Call redis_sync.write_through() or redis_sync.invalidate() to sync it again.';
                PERFORM redis_sync.unsync(tbl, true);
                RETURN;
            END IF;
            RAISE NOTICE 'synced column "%" of table % was dropped: it is no longer written to Redis', old_name, tbl
                USING DETAIL = 'The table''s cached keys are removed at commit.';
        ELSIF action = 'rename' THEN
            kcols := array_replace(kcols, old_name::name, new_name::name);
            cols := array_replace(cols, old_name::name, new_name::name);
            RAISE NOTICE 'synced column "%" of table % was renamed to "%": Redis follows the new name', old_name, tbl, new_name
                USING DETAIL = 'The table''s cached keys are removed at commit.';
        ELSE
            RAISE NOTICE 'the type of synced column "%" of table % changed', old_name, tbl
                USING DETAIL = 'The table''s cached keys are removed at commit.';
        END IF;
        IF kcols IS DISTINCT FROM cfg.key_columns OR cols IS DISTINCT FROM cfg.columns THEN
            PERFORM redis_sync._config_write(tbl, cfg.policy, cfg.key_prefix, kcols, cols, cfg.format,
                                             cfg.ttl, cfg.consistency, cfg.delivery, cfg.dirty_set,
                                             cfg.flush_interval, cfg.batch_size, cfg.on_missing, cfg.counters);
        END IF;
        PERFORM redis_sync._purge_at_commit(tbl, cfg.key_prefix);
    END LOOP;
END
$fn$;
REVOKE EXECUTE ON FUNCTION _follow_column(regclass, text, text, text) FROM PUBLIC;

-- [lifecycle] worker restarts, DROP TABLE purge, partitions attached and detached

-- this database's worker restarts (worker_stats shows them per database,
-- through _database_stats(): the view is defined in the cluster section)
CREATE FUNCTION _worker_restarts()
RETURNS bigint
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_worker_restarts';

-- queue the removal of a dropped table's keys (delivered by the worker)
CREATE FUNCTION _purge_dropped(tbl oid, key_prefix text)
RETURNS void
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_purge_dropped';
REVOKE EXECUTE ON FUNCTION _purge_dropped(oid, text) FROM PUBLIC;

-- partitions a ddl_command_end command created and tables it attached partitions
-- to (true), or tables it detached partitions from (false)
CREATE FUNCTION _ddl_partitions(cmd pg_ddl_command, attached boolean)
RETURNS oid[]
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_ddl_partitions';
REVOKE EXECUTE ON FUNCTION _ddl_partitions(pg_ddl_command, boolean) FROM PUBLIC;

-- the partitions a ddl_command_end command attached (true) or detached
-- (DETACH PARTITION, also FINALIZE): the table's partitions then against
-- those _on_trigger_change found at the command's start (lifecycle.c)
CREATE FUNCTION _ddl_partition_moves(cmd pg_ddl_command, attached boolean)
RETURNS oid[]
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_ddl_partition_moves';
REVOKE EXECUTE ON FUNCTION _ddl_partition_moves(pg_ddl_command, boolean) FROM PUBLIC;

-- the keys of the rows of a partition detached from a synced table go at
-- commit, as if its rows were deleted (called by _on_ddl_end; lifecycle.c)
CREATE FUNCTION _purge_detached(part oid, root oid)
RETURNS bigint
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_purge_detached';
REVOKE EXECUTE ON FUNCTION _purge_detached(oid, oid) FROM PUBLIC;

-- whether trigger tg is the guard redis_sync gives each partition of a
-- synced table: redis_sync_truncate_partition, BEFORE TRUNCATE FOR EACH
-- STATEMENT, calling capture() with one argument, not a clone.  The
-- argument (the synced table's OID when the guard was made) is not
-- compared: a restored dump gives the table another OID, and capture()
-- finds the table from the partition anyway.  One definition for
-- _on_ddl_end (attach and detach) and _drop_partition_triggers (ddl.c)
CREATE FUNCTION _is_partition_guard(tg oid)
RETURNS boolean
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT EXISTS (
        SELECT 1 FROM pg_catalog.pg_trigger t
         WHERE t.oid = tg
           AND t.tgname = 'redis_sync_truncate_partition'
           AND t.tgfoid = 'redis_sync.capture()'::pg_catalog.regprocedure
           AND t.tgtype = 34   -- BEFORE TRUNCATE, per statement
           AND t.tgparentid = 0 AND t.tgnargs = 1)
$fn$;
REVOKE EXECUTE ON FUNCTION _is_partition_guard(oid) FROM PUBLIC;

-- the plain tables among parts and under them: each one that is a plain
-- table, and the leaves of each partitioned one (pg_partition_tree() of a
-- plain table that is no longer a partition is empty, so each part is
-- taken itself too).  The partitions an ATTACH or DETACH moved
-- (_ddl_partition_moves), for _on_ddl_end's warm and purge
CREATE FUNCTION _leaves(parts oid[])
RETURNS SETOF oid
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT DISTINCT l.relid
      FROM pg_catalog.unnest(parts) p(oid)
      CROSS JOIN LATERAL (SELECT p.oid AS relid
                          UNION
                          SELECT x.relid::oid FROM pg_catalog.pg_partition_tree(p.oid) x) l
      JOIN pg_catalog.pg_class cl ON cl.oid = l.relid AND cl.relkind = 'r'
$fn$;
REVOKE EXECUTE ON FUNCTION _leaves(oid[]) FROM PUBLIC;

-- give partition part of the synced table root its guard, the shape
-- _is_partition_guard() recognises; ENABLE ALWAYS when root's own TRUNCATE
-- trigger is (write_through(..., replica => true)).  With the caller's
-- rights (CREATE TRIGGER checks them): _sync() for the table's owner,
-- _on_ddl_end for a partition created or attached later
CREATE FUNCTION _partition_guard_add(part regclass, root regclass)
RETURNS void
LANGUAGE plpgsql STRICT
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    EXECUTE format('CREATE TRIGGER redis_sync_truncate_partition BEFORE TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION redis_sync.capture(%L)', part, root::oid::text);
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = root AND tgname = 'redis_sync_truncate'
                                          AND tgenabled = 'A') THEN
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER redis_sync_truncate_partition', part);
    END IF;
END
$fn$;

-- the policies tbl is synced with, for messages ("write-through and
-- invalidate"); cached_only: not write-behind
CREATE FUNCTION _policy_names(tbl regclass, cached_only boolean)
RETURNS text
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT pg_catalog.string_agg(DISTINCT pg_catalog.replace(t.policy, '_', '-'), ' and ')
      FROM redis_sync.tables t
     WHERE t.relid = tbl AND (NOT cached_only OR t.policy <> 'write_behind')
$fn$;
REVOKE EXECUTE ON FUNCTION _policy_names(regclass, boolean) FROM PUBLIC;

-- (end of section)

-- =====================================================================
-- correctness: encoding, keys, companion keys, eviction (issue 13)
-- =====================================================================

-- Keys: key values are escaped ('\' and ':' get a backslash) and joined by
-- ':'; companion keys (version, seed, processing) begin with '{', which no
-- row key can, since prefixes must not.  One definition, in C (encode.c);
-- SQL uses these functions, the claim script (drain.c) the same rule in Lua.
CREATE FUNCTION escape_key(VARIADIC key_values text[])
RETURNS text
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'redis_sync_escape_key';
COMMENT ON FUNCTION escape_key(text[]) IS
    'The key values escaped and joined as in a Redis key (without the prefix), e.g. a write-behind dirty set member';

CREATE FUNCTION _companion_key(key text, suffix text)
RETURNS text
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'redis_sync_companion_key';

CREATE FUNCTION version_key(key text)
RETURNS text
LANGUAGE C STRICT STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'redis_sync_version_key';
COMMENT ON FUNCTION version_key(text) IS
    'The Redis key holding the version of a cached key (redis_sync.version_key_suffix)';

-- verify(): one policy of one table, compared exactly as pushed
CREATE FUNCTION _verify_table(tbl regclass, policy text, sample int, pending text[],
                              check_extra boolean,
                              OUT key text, OUT problem text, OUT table_value jsonb, OUT cache_value jsonb)
RETURNS SETOF record
LANGUAGE C CALLED ON NULL INPUT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'redis_sync_verify_table';
-- executable by PUBLIC: it checks that the caller owns the table (verify() runs as its caller)

-- 0.1 allowed prefixes beginning with '{': their keys can meet companion keys
DO $do$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT relid::regclass AS tbl, policy, key_prefix FROM redis_sync.tables
              WHERE key_prefix LIKE '{%' LOOP
        RAISE WARNING 'key prefix "%" of table % (%) begins with "{"', t.key_prefix, t.tbl, t.policy
            USING DETAIL = 'Row keys under it can coincide with version keys.',
                  HINT = 'Sync the table again with a key_prefix that does not begin with "{" (then warm it).';
    END LOOP;
END
$do$;

-- A dirty set must never be a row key: with a text key, the row 'dirty' of a
-- table under prefix p: would be cached at p:dirty, the default dirty set.
-- The key values of the row whose key under (prefix, key_columns) would be
-- k, or NULL when no row's key can be k: k is not the prefix followed by the
-- escaped canonical text of a value of each key column (the test the drain
-- applies to members).
CREATE FUNCTION _key_row_values(k text, tbl regclass, prefix text, kcols name[])
RETURNS text[]
LANGUAGE plpgsql STRICT
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET TimeZone = 'UTC' SET IntervalStyle = 'postgres'
SET extra_float_digits = 1 SET bytea_output = 'hex' SET lc_monetary = 'C'
AS $fn$
DECLARE
    rest text;
    vals text[] := '{}';
    cur  text := '';
    ch   text;
    i    int := 1;
    typ  text;
    typid  oid;
    typmod int;
    same boolean;
BEGIN
    IF NOT starts_with(k, prefix) THEN
        RETURN NULL;
    END IF;
    rest := substr(k, length(prefix) + 1);
    WHILE i <= length(rest) LOOP
        ch := substr(rest, i, 1);
        -- E'\\', not '\': the body is parsed under the session's
        -- standard_conforming_strings (tests/t/285)
        IF ch = E'\\' THEN
            ch := substr(rest, i + 1, 1);
            IF ch NOT IN (E'\\', ':') THEN
                RETURN NULL;            -- an unknown or dangling escape
            END IF;
            cur := cur || ch;
            i := i + 2;
        ELSIF ch = ':' THEN
            vals := vals || cur;
            cur := '';
            i := i + 1;
        ELSE
            cur := cur || ch;
            i := i + 1;
        END IF;
    END LOOP;
    vals := vals || cur;
    IF cardinality(vals) <> cardinality(kcols) THEN
        RETURN NULL;
    END IF;
    FOR i IN 1 .. cardinality(kcols) LOOP
        SELECT a.atttypid, a.atttypmod INTO typid, typmod
          FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = kcols[i] AND NOT a.attisdropped;
        IF typid IS NULL THEN
            RETURN NULL;
        END IF;
        -- a domain's base type: its checks are the table owner's code, which
        -- this caller must not run (a domain value is then only "possible")
        WHILE (SELECT t.typtype = 'd' FROM pg_type t WHERE t.oid = typid) LOOP
            SELECT t.typbasetype, t.typtypmod INTO typid, typmod FROM pg_type t WHERE t.oid = typid;
        END LOOP;
        typ := format_type(typid, typmod);
        BEGIN
            -- the input function with the typmod, then the output function
            EXECUTE format('SELECT pg_catalog.format(''%%s'', %L::%s) = %L', vals[i], typ, vals[i]) INTO same;
        EXCEPTION WHEN OTHERS THEN
            RETURN NULL;
        END;
        IF NOT same THEN
            RETURN NULL;
        END IF;
    END LOOP;
    RETURN vals;
END
$fn$;

-- 0.1 (and 0.2 before this check) could pair such a dirty set with such a
-- key: keep the configuration, warn
DO $do$
DECLARE
    d record;
    t record;
    v text[];
BEGIN
    FOR d IN SELECT relid::regclass AS tbl, dirty_set FROM redis_sync.tables WHERE dirty_set IS NOT NULL LOOP
        FOR t IN SELECT relid::regclass AS tbl, policy, key_prefix, key_columns FROM redis_sync.tables LOOP
            v := redis_sync._key_row_values(d.dirty_set, t.tbl, t.key_prefix, t.key_columns);
            IF v IS NOT NULL THEN
                RAISE WARNING 'dirty set "%" of table % is the key of the row (%) of table % (%)',
                              d.dirty_set, d.tbl, array_to_string(v, ', '), t.tbl, t.policy
                    USING DETAIL = 'Such a row would be cached over the dirty set.',
                          HINT = format('Call redis_sync.write_behind(%L, ...) again with a dirty_set that does not begin with "%s" (drain the old set first: redis_sync.flush()).',
                                        d.tbl::text, t.key_prefix);
            END IF;
        END LOOP;
    END LOOP;
END
$do$;

-- ALTER TYPE that changes the text of existing values (an enum value
-- renamed, a composite's attributes changed): keys and values cached from
-- columns of that type, or of arrays, domains, ranges or composites over
-- it, are written under the old text and no write replaces them (a renamed
-- key value leaves its old key behind).  They are removed at commit, like
-- after a synced column's type change; writes, get() and warm() refill.
CREATE FUNCTION _type_text_changed(cmd pg_ddl_command)
RETURNS boolean
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_type_text_changed';
REVOKE EXECUTE ON FUNCTION _type_text_changed(pg_ddl_command) FROM PUBLIC;

CREATE FUNCTION _on_type_change()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    cfg record;
BEGIN
    FOR cfg IN
        WITH RECURSIVE changed(typ) AS (
            SELECT CASE WHEN c.classid = 'pg_catalog.pg_type'::pg_catalog.regclass THEN c.objid
                        ELSE (SELECT cl.reltype FROM pg_catalog.pg_class cl WHERE cl.oid = c.objid) END
              FROM pg_catalog.pg_event_trigger_ddl_commands() c
             WHERE c.classid IN ('pg_catalog.pg_type'::pg_catalog.regclass, 'pg_catalog.pg_class'::pg_catalog.regclass)
               AND redis_sync._type_text_changed(c.command)
            UNION
            -- arrays, domains, ranges over a changed type; row types with an
            -- attribute of one
            SELECT x.typ
              FROM changed ch
             CROSS JOIN LATERAL (
                SELECT d.objid AS typ FROM pg_catalog.pg_depend d
                 WHERE d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.refobjid = ch.typ
                   AND d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass
                UNION
                SELECT cl.reltype FROM pg_catalog.pg_depend d
                  JOIN pg_catalog.pg_class cl ON cl.oid = d.objid
                 WHERE d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.refobjid = ch.typ
                   AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid > 0
                   AND cl.reltype <> 0
                UNION
                -- an ALTER TABLE of an inheritance parent changes its
                -- children's row types as well
                SELECT cl.reltype FROM pg_catalog.pg_type ty
                  JOIN pg_catalog.pg_inherits i ON i.inhparent = ty.typrelid
                  JOIN pg_catalog.pg_class cl ON cl.oid = i.inhrelid
                 WHERE ty.oid = ch.typ AND ty.typrelid <> 0 AND cl.reltype <> 0) x
        )
        SELECT DISTINCT t.relid, t.key_prefix
          FROM redis_sync.tables t
          JOIN pg_catalog.pg_attribute a ON a.attrelid = t.relid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE t.policy IN ('write_through', 'invalidate')
           AND a.atttypid IN (SELECT typ FROM changed)
    LOOP
        RAISE NOTICE 'a type of table % changed the text of its values: the table''s cached keys are removed at commit', cfg.relid
            USING HINT = 'Writes, get() and warm() fill the cache again.';
        PERFORM redis_sync._purge_at_commit(cfg.relid, cfg.key_prefix);
    END LOOP;
END
$fn$;

-- The valid unique indexes of tbl on exactly the columns kcols (no
-- predicate, no expressions), and whether each is deferrable: what a key
-- needs (write_through(), write_behind(), the guards of DROP INDEX and of a
-- deferrable constraint added later)
CREATE FUNCTION _key_indexes(tbl oid, kcols name[])
RETURNS TABLE(indexrelid oid, is_deferrable boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT i.indexrelid, NOT i.indimmediate
      FROM pg_index i
     WHERE i.indrelid = tbl AND i.indisunique AND i.indisvalid AND i.indpred IS NULL
       AND i.indexprs IS NULL AND i.indnkeyatts = cardinality(kcols)
       AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text COLLATE "C")
              FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
              JOIN pg_attribute a ON a.attrelid = tbl AND a.attnum = k.attnum
             WHERE k.ord <= i.indnkeyatts)
           = (SELECT array_agg(x::text ORDER BY x::text COLLATE "C") FROM unnest(kcols) x)
$fn$;

-- The synced tables whose key_columns idx backs still have another valid
-- unique index on them, else an error.  DROP INDEX CONCURRENTLY of the index
-- behind a synced table's key_columns is checked before it starts
-- (lifecycle.c, from _on_drop_start):
-- it makes the index dead in committed transactions of its own before
-- sql_drop fires, so _on_sql_drop's unsync would come too late
CREATE FUNCTION _key_index_check(idx oid)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    cfg record;
BEGIN
    FOR cfg IN
        SELECT DISTINCT t.relid, t.key_columns
          FROM redis_sync.tables t
          JOIN pg_index ix ON ix.indexrelid = idx AND ix.indrelid = t.relid
         WHERE NOT EXISTS (SELECT 1 FROM redis_sync._key_indexes(t.relid, t.key_columns) k
                            WHERE k.indexrelid <> idx)
    LOOP
        RAISE EXCEPTION 'key_columns of table % would no longer match a primary key or unique index', cfg.relid
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = format('The table is synced with key_columns %s: two rows sharing those values '
                                  'would share one Redis key.', cfg.key_columns),
                  HINT = 'Create the new unique index before dropping the old one (or replace a primary key '
                         'in one ALTER TABLE), or unsync the table first with redis_sync.unsync().';
    END LOOP;
    RETURN true;
END
$fn$;
REVOKE EXECUTE ON FUNCTION _key_index_check(oid) FROM PUBLIC;

-- ALTER TABLE too: a table's row type is a composite type, and adding,
-- dropping, retyping or renaming its columns changes the text of values of
-- that row type held in other (synced) tables' columns (and of its
-- inheritance children's row types); a view's row type likewise (CREATE OR
-- REPLACE VIEW, ALTER VIEW ... RENAME COLUMN)
-- _on_ddl_end also for CREATE SCHEMA (its CREATE TABLE subcommands: a
-- partition created there got no guard, a child of a synced table was not
-- refused) and foreign tables (a foreign inheritance child)
DROP EVENT TRIGGER redis_sync_ddl_end;
CREATE EVENT TRIGGER redis_sync_ddl_end ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'CREATE SCHEMA', 'CREATE FOREIGN TABLE', 'ALTER FOREIGN TABLE')
    EXECUTE FUNCTION _on_ddl_end();

CREATE EVENT TRIGGER redis_sync_type_change ON ddl_command_end
    WHEN TAG IN ('ALTER TYPE', 'ALTER TABLE', 'ALTER FOREIGN TABLE', 'CREATE VIEW', 'ALTER VIEW')
    EXECUTE FUNCTION _on_type_change();

-- DROP EXTENSION releases the database's key prefix claims (claim.c, an
-- object access hook): a session that never used the library (no
-- shared_preload_libraries) loads it before the drop.  DROP TABLE of a
-- synced table's partition removes the keys of its rows, DROP INDEX
-- CONCURRENTLY of the index behind a key is refused (lifecycle.c)
CREATE FUNCTION _on_drop_start()
RETURNS event_trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'redis_sync_on_drop_start';
REVOKE EXECUTE ON FUNCTION _on_drop_start() FROM PUBLIC;

CREATE EVENT TRIGGER redis_sync_drop_start ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA', 'DROP OWNED', 'DROP TABLE', 'DROP INDEX')
    EXECUTE FUNCTION _on_drop_start();

-- The triggers the extension keeps on a synced (write-through or invalidate)
-- table and its partitions: ALTER TABLE ... DISABLE / ENABLE [REPLICA |
-- ALWAYS] TRIGGER (named, ALL or USER), ALTER TRIGGER ... RENAME and DROP
-- TRIGGER of them are refused
-- to a role without the synced table's owner's privileges, such as the
-- owner of one of its partitions (ddl.c).  The owner itself, and the
-- extension's functions (run as that owner, or as the extension's owner in
-- its event triggers), may; a DISABLE by the owner gets a WARNING.
CREATE FUNCTION _on_trigger_change()
RETURNS event_trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'redis_sync_on_trigger_change';
REVOKE EXECUTE ON FUNCTION _on_trigger_change() FROM PUBLIC;

CREATE EVENT TRIGGER redis_sync_trigger_guard ON ddl_command_start
    WHEN TAG IN ('ALTER TABLE', 'ALTER FOREIGN TABLE', 'ALTER TRIGGER', 'DROP TRIGGER')
    EXECUTE FUNCTION _on_trigger_change();

-- (end of section)

-- =====================================================================
-- write-behind: partial upserts, never erasing (issue 13)
-- =====================================================================

-- stats per policy: a table synced with two policies (write-through for some
-- columns, write-behind for others) has one row per policy, each with the
-- counters of its own path (0.1 showed the table's counters on both rows).
CREATE OR REPLACE VIEW stats AS
SELECT t.relid AS "table",
       t.policy,
       CASE WHEN wb THEN 0 ELSE coalesce(s.captured, 0) END AS captured,
       CASE WHEN wb THEN 0 ELSE coalesce(s.pushed, 0) END AS pushed,
       CASE WHEN wb THEN 0 ELSE coalesce(s.push_failures, 0) END AS push_failures,
       CASE WHEN wb THEN 0 ELSE coalesce(s.queued, 0) END AS queued,
       CASE WHEN wb THEN 0 ELSE coalesce(s.delivered, 0) END AS delivered,
       CASE WHEN wb THEN 0 ELSE coalesce(s.delivery_failures, 0) END AS delivery_failures,
       CASE WHEN wb THEN 0 ELSE coalesce(s.repaired, 0) END AS repaired,
       CASE WHEN wb THEN 0 ELSE coalesce(s.warmed, 0) END AS warmed,
       CASE WHEN wb THEN 0 ELSE coalesce(o.depth, 0) END AS outbox_depth,
       CASE WHEN wb THEN NULL ELSE o.oldest_age END AS outbox_oldest_age,
       CASE WHEN wb THEN coalesce(s.claimed, 0) ELSE 0 END AS claimed,
       CASE WHEN wb THEN coalesce(s.applied, 0) ELSE 0 END AS applied,
       CASE WHEN wb THEN coalesce(s.batches, 0) ELSE 0 END AS batches,
       CASE WHEN wb THEN coalesce(s.dead, 0) ELSE 0 END AS dead,
       CASE WHEN wb THEN coalesce(s.drain_retries, 0) ELSE 0 END AS drain_retries,
       CASE WHEN wb THEN coalesce(s.unknown_fields, 0) ELSE 0 END AS unknown_fields,
       CASE WHEN wb THEN s.drain_lag * interval '1 second' END AS drain_lag,
       CASE WHEN wb THEN 0 ELSE coalesce(s.hits, 0) END AS hits,
       CASE WHEN wb THEN 0 ELSE coalesce(s.misses, 0) END AS misses,
       s.last_error,
       s.last_error_at
  FROM redis_sync.tables t
  CROSS JOIN LATERAL (SELECT t.policy = 'write_behind' AS wb) p
  LEFT JOIN redis_sync._table_stats() s ON s.relid = t.relid::oid
  LEFT JOIN (SELECT relid, count(*) AS depth, now() - min(enqueued_at) AS oldest_age
               FROM redis_sync.outbox GROUP BY relid) o ON o.relid = t.relid::oid;
COMMENT ON VIEW stats IS 'redis_sync: activity per synced table and policy since the server started or stats_reset()';

-- The drain overlaps Redis and PostgreSQL (issue 18): larger batches pay
-- off (bench 'drain', --quick: 5,000-member batches 1.10 of the 1,000-key
-- random-batch upsert, 1,000-member batches 0.68, same machine, one after
-- the other).  Tables configured before keep their batch_size.
CREATE OR REPLACE FUNCTION write_behind(tbl regclass,
                             key_prefix text DEFAULT NULL,
                             dirty_set text DEFAULT NULL,
                             key_columns text[] DEFAULT NULL,
                             columns text[] DEFAULT NULL,
                             format text DEFAULT 'hash',
                             flush_interval interval DEFAULT '1 s',
                             batch_size int DEFAULT 5000,
                             on_missing text DEFAULT 'ignore',
                             counters text[] DEFAULT NULL)
RETURNS void
LANGUAGE sql
AS $$ SELECT redis_sync._sync(tbl, 'write_behind', key_prefix, key_columns, columns,
                              format, NULL, 'eventual', 'sync', dirty_set, flush_interval,
                              batch_size, on_missing, counters) $$;

-- (end of section)

-- =====================================================================
-- warming and read-through (issue 13)
-- =====================================================================

-- Background warms that write_through() schedules: one row per table,
-- worked through by the worker in batches (warm.c).  last_key holds row
-- contents (key values), so the table is not readable by PUBLIC; the view
-- redis_sync.warming shows the progress without it.
CREATE TABLE _warm_queue (
    relid          regclass PRIMARY KEY,
    requested_at   timestamptz NOT NULL,
    -- repair (resync()) instead of fill: the prefix held keys an unsync
    -- without purge left, stale since (redis_sync._unsynced_prefixes)
    repair         boolean NOT NULL DEFAULT false,
    rows_estimate  bigint,
    started_at     timestamptz,
    finished_at    timestamptz,
    rows_done      bigint NOT NULL DEFAULT 0,
    keys_filled    bigint NOT NULL DEFAULT 0,
    last_key       text[],
    attempts       int NOT NULL DEFAULT 0,
    retry_at       timestamptz,
    last_error     text,
    last_error_at  timestamptz
);
COMMENT ON TABLE _warm_queue IS 'redis_sync: background cache warms (internal; see redis_sync.warming)';

CREATE VIEW warming WITH (security_barrier) AS
SELECT q.relid AS "table",
       CASE WHEN q.finished_at IS NOT NULL THEN 'done'
            WHEN q.last_error IS NOT NULL THEN 'retrying'
            WHEN q.started_at IS NOT NULL THEN 'running'
            ELSE 'queued' END AS state,
       q.rows_done,
       q.rows_estimate,
       q.keys_filled,
       q.requested_at,
       q.started_at,
       q.finished_at,
       q.attempts,
       q.last_error,
       q.last_error_at
  FROM redis_sync._warm_queue q
 -- a write-through table, or a partition of one attached later
 WHERE EXISTS (SELECT 1 FROM redis_sync.tables t
                WHERE t.policy = 'write_through'
                  AND (t.relid = q.relid
                       OR t.relid IN (SELECT a.relid FROM pg_catalog.pg_partition_ancestors(q.relid) a)))
   -- row counts and errors of a table: its owner's (a partition's, and its
   -- synced table's owner's too), and monitoring roles'
   AND (pg_catalog.pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = q.relid), 'USAGE')
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_partition_ancestors(q.relid) a
                     JOIN pg_catalog.pg_class c ON c.oid = a.relid
                     JOIN redis_sync.tables t ON t.relid = a.relid
                    WHERE pg_catalog.pg_has_role(c.relowner, 'USAGE'))
        OR pg_catalog.pg_has_role('pg_monitor', 'USAGE'));
COMMENT ON VIEW warming IS 'redis_sync: progress of the cache warms that write_through() started in the background (rows of the tables the caller owns, all rows for pg_monitor)';
GRANT SELECT ON warming TO PUBLIC;

-- queue a background warm (C: checks that the caller owns the table, then
-- writes the queue with the bootstrap superuser's rights; false for an
-- empty table, which has nothing to warm); run = false cancels one
-- repair => true queues a repair (resync()) even when run is false or the
-- table is empty
CREATE FUNCTION _warm_schedule(tbl regclass, run boolean, repair boolean DEFAULT false)
RETURNS boolean
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_warm_schedule';

-- Key prefixes that unsync() without purge left in Redis: the keys under
-- them stay while the table's writes push nothing, so they go stale.  A
-- later write_through() or invalidate() on an overlapping prefix repairs
-- them (write-through: its background warm runs resync(); invalidate: the
-- prefix is purged at commit) and forgets the rows its prefix covers.
-- Not readable by PUBLIC (prefixes of other owners' tables); written by
-- the SECURITY DEFINER helpers below only.
CREATE TABLE _unsynced_prefixes (
    key_prefix  text PRIMARY KEY,
    relid       oid NOT NULL,           -- the table unsynced (informative)
    unsynced_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE _unsynced_prefixes IS 'redis_sync: key prefixes whose keys an unsync() without purge left in Redis (internal)';

-- unsync(tbl) without purge: remember the table's prefix (called before its
-- configuration is deleted; only a write-through or invalidate prefix the
-- table is synced on).  C: checks that the caller owns the table, then
-- writes _unsynced_prefixes with the bootstrap superuser's rights.
CREATE FUNCTION _unsynced_note(tbl regclass, prefix text)
RETURNS void
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_unsynced_note';

-- write_through()/invalidate() of tbl (after its configuration is written):
-- true when an unsync without purge left keys under a prefix overlapping the
-- table's; the rows whose prefix the table's covers are forgotten (a shorter
-- one, which covers keys outside the table's prefix too, stays for them).
-- C, owner checked, as _unsynced_note.
CREATE FUNCTION _unsynced_claim(tbl regclass)
RETURNS boolean
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_unsynced_claim';

-- capture triggers that fire under session_replication_role = replica
-- (ENABLE ALWAYS), so a logical-replication subscriber keeps Redis in step
CREATE FUNCTION _capture_always(tbl regclass, always boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    trg record;
BEGIN
    FOR trg IN
        SELECT t.tgrelid::regclass AS rel, t.tgname
          FROM (SELECT tbl AS relid, 0 AS level
                UNION
                SELECT p.relid, p.level FROM pg_partition_tree(tbl) p) p
          JOIN pg_trigger t ON t.tgrelid = p.relid
         WHERE t.tgname IN ('redis_sync_capture', 'redis_sync_truncate', 'redis_sync_truncate_partition')
           AND t.tgenabled <> CASE WHEN always THEN 'A' ELSE 'O' END
         ORDER BY p.level, t.tgrelid::oid, t.tgname
    LOOP
        EXECUTE format('ALTER TABLE %s ENABLE %s TRIGGER %I',
                       trg.rel, CASE WHEN always THEN 'ALWAYS' ELSE '' END, trg.tgname);
    END LOOP;
END
$fn$;

DROP FUNCTION write_through(regclass, text, text[], text[], text, interval, text, text);
CREATE FUNCTION write_through(tbl regclass,
                              key_prefix text DEFAULT NULL,
                              key_columns text[] DEFAULT NULL,
                              columns text[] DEFAULT NULL,
                              format text DEFAULT 'hash',
                              ttl interval DEFAULT NULL,
                              consistency text DEFAULT 'eventual',
                              delivery text DEFAULT 'sync',
                              warm boolean DEFAULT true,
                              replica boolean DEFAULT false)
RETURNS void
LANGUAGE sql
AS $$
    SELECT redis_sync._sync(tbl, 'write_through', key_prefix, key_columns, columns,
                            format, ttl, consistency, delivery);
    SELECT redis_sync._capture_always(tbl, coalesce(replica, false));
    SELECT redis_sync._warm_schedule(tbl, coalesce(warm, false), redis_sync._unsynced_claim(tbl));
$$;
COMMENT ON FUNCTION write_through(regclass, text, text[], text[], text, interval, text, text, boolean, boolean) IS
'push every committed change of a table to Redis at commit; the rows it already has are warmed in the background';

COMMENT ON FUNCTION warm(regclass, int) IS
'fill the cache of a write-through table with the rows Redis lacks, fenced, without row locks, in batches; returns rows read';

DROP FUNCTION invalidate(regclass, text, text[], text, text);
CREATE FUNCTION invalidate(tbl regclass,
                           key_prefix text DEFAULT NULL,
                           key_columns text[] DEFAULT NULL,
                           consistency text DEFAULT 'eventual',
                           delivery text DEFAULT 'sync',
                           replica boolean DEFAULT false)
RETURNS void
LANGUAGE sql
AS $$
    SELECT redis_sync._sync(tbl, 'invalidate', key_prefix, key_columns, NULL,
                            'hash', NULL, consistency, delivery);
    SELECT redis_sync._capture_always(tbl, coalesce(replica, false));
    -- keys an unsync without purge left under the prefix are stale: they go
    SELECT redis_sync._purge_at_commit(tbl, t.key_prefix)
      FROM (SELECT redis_sync._unsynced_claim(tbl) AS hit) c, redis_sync.tables t
     WHERE c.hit AND t.relid = tbl AND t.policy = 'invalidate';
$$;
COMMENT ON FUNCTION invalidate(regclass, text, text[], text, text, boolean) IS
'delete the cached row from Redis whenever a committed change touches it';

-- (end of section)

-- =====================================================================
-- launcher: one worker per database (issue 14)
-- =====================================================================

-- A launcher keeps one worker per database that has the extension.  The
-- install and update scripts signal it: at commit it starts this
-- database's worker (without the signal it would find the database at its
-- next look at pg_database, within 10 s).
CREATE FUNCTION _launcher_notify()
RETURNS void
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_launcher_notify';
REVOKE EXECUTE ON FUNCTION _launcher_notify() FROM PUBLIC;
SELECT redis_sync._launcher_notify();

-- true when a worker may run in this database (redis_sync.database, an
-- optional allow-list since 0.2); async and write-behind tables need one
CREATE FUNCTION _database_served()
RETURNS boolean
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_database_served';

-- one row per database with a worker (or wanting one): _global_stats()'s
-- columns, then the database and its worker's restarts and state
CREATE FUNCTION _database_stats(
    OUT round_trips bigint, OUT worker_rounds bigint, OUT worker_running boolean,
    OUT worker_pid int, OUT circuit text, OUT circuit_changed_at timestamptz,
    OUT connection_failures int, OUT circuit_opens bigint,
    OUT last_error text, OUT last_error_at timestamptz, OUT redis_run_id text,
    OUT stats_reset_at timestamptz, OUT datid oid, OUT database name,
    OUT worker_restarts bigint, OUT worker_state text)
RETURNS SETOF record
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_database_stats';
REVOKE EXECUTE ON FUNCTION _database_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _database_stats() TO pg_monitor;

-- worker_stats (one row per database, from _database_stats()) is defined
-- once, in the cluster section, which appends its last column

-- (end of section)

-- =====================================================================
-- TLS (issue 15)
-- =====================================================================

-- parse_url() also says whether the URL asks for TLS (rediss://)
DROP FUNCTION parse_url(text);
CREATE FUNCTION parse_url(url text,
                          OUT host text, OUT port int, OUT socket text,
                          OUT db int, OUT username text, OUT has_password bool,
                          OUT tls bool)
RETURNS record
LANGUAGE C STRICT IMMUTABLE
AS 'MODULE_PATHNAME', 'redis_sync_parse_url';

COMMENT ON FUNCTION parse_url(text) IS
'show how a redis_sync.redis_url value is understood, without connecting';

-- (end of section)

-- =====================================================================
-- Redis Cluster (issue 16)
-- =====================================================================

-- the calling backend's view of the cluster: its slot map and per-node
-- round trips and redirections (no rows on a single Redis)
CREATE FUNCTION cluster_nodes(OUT node text, OUT role text, OUT slots int,
                              OUT connected bool, OUT round_trips bigint,
                              OUT redirections bigint)
RETURNS SETOF record LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'redis_sync_cluster_nodes';
COMMENT ON FUNCTION cluster_nodes() IS 'redis_sync: Redis Cluster nodes as this session sees them, with its round trips and redirections per node';
REVOKE ALL ON FUNCTION cluster_nodes() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cluster_nodes() TO pg_monitor;

-- worker_stats' last column is cluster (jsonb, NULL on a single Redis): the
-- Redis Cluster as the workers see it -- masters, replicas, slots covered,
-- map loads, redirections, nodes.
CREATE FUNCTION _worker_cluster()
RETURNS text
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_worker_cluster';
REVOKE EXECUTE ON FUNCTION _worker_cluster() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _worker_cluster() TO pg_monitor;

-- worker_stats, defined once for 0.2 (0.1's columns first, then appended
-- ones, so CREATE OR REPLACE keeps the view's grants and the views of
-- monitoring tools built on it): one row per database (this one first);
-- worker_restarts (lifecycle), database and worker_state (launcher), cluster.
-- The outbox columns are this database's (another database's outbox cannot
-- be read from here).
CREATE OR REPLACE VIEW worker_stats AS
SELECT g.round_trips, g.worker_rounds, g.worker_running, g.worker_pid, g.circuit,
       g.circuit_changed_at, g.connection_failures, g.circuit_opens, g.last_error,
       g.last_error_at, g.redis_run_id, g.stats_reset_at,
       CASE WHEN g.database OPERATOR(pg_catalog.=) pg_catalog.current_database()
            THEN (SELECT pg_catalog.count(*) FROM redis_sync.outbox) END AS outbox_depth,
       CASE WHEN g.database OPERATOR(pg_catalog.=) pg_catalog.current_database()
            THEN (SELECT pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.min(enqueued_at)
                    FROM redis_sync.outbox) END AS outbox_oldest_age,
       g.worker_restarts,
       g.database,
       g.worker_state,
       redis_sync._worker_cluster()::jsonb AS cluster
  FROM redis_sync._database_stats() g
 ORDER BY g.database OPERATOR(pg_catalog.<>) pg_catalog.current_database(), g.database;
COMMENT ON VIEW worker_stats IS 'redis_sync: per database, its worker, circuit breaker and counters (this database first); cluster: the Redis Cluster as the workers see it';

-- (end of section)

-- =====================================================================
-- speed: setup (issue 18)
-- =====================================================================

-- _sync() and the prefix claims (claim.c) look up the configurations whose
-- key prefix or dirty set starts with a given string (an index range) or is
-- one of its prefixes (equality probes), instead of reading every row: setting
-- up many tables is no longer quadratic.  text_pattern_ops: starts_with()
-- uses the index whatever the database's collation.
CREATE INDEX tables_key_prefix ON tables (key_prefix text_pattern_ops);
CREATE INDEX tables_dirty_set ON tables (dirty_set text_pattern_ops);

-- (end of section)

-- =====================================================================
-- shared: functions redefined by several topics (edit in place)
-- =====================================================================

-- one value check of _sync: unless ok is true, invalid_parameter_value with
-- message, its '%' replaced by given ('<NULL>' for NULL, as RAISE prints
-- it), and hint when not NULL.  _sync runs with its caller's rights, so
-- PUBLIC keeps EXECUTE: the function reads nothing and only raises.
CREATE FUNCTION _check_value(ok boolean, message text, given text, hint text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF ok IS TRUE THEN
        RETURN;
    END IF;
    message := replace(coalesce(message, 'invalid value'), '%', coalesce(given, '<NULL>'));
    IF hint IS NULL THEN
        RAISE EXCEPTION USING MESSAGE = message, ERRCODE = 'invalid_parameter_value';
    END IF;
    RAISE EXCEPTION USING MESSAGE = message, ERRCODE = 'invalid_parameter_value', HINT = hint;
END
$fn$;
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
        PERFORM redis_sync._check_value(fmt IN ('hash', 'json', 'string'), 'unsupported format "%"', p_format,
                                        'Use hash, json or string.');
    ELSE
        PERFORM redis_sync._check_value(fmt IN ('hash', 'json'), 'unsupported format "%"', p_format,
                                        'Use hash or json.');
    END IF;
    PERFORM redis_sync._check_value(cons IN ('strict', 'eventual'), 'unsupported consistency "%"', p_consistency,
                                    'Use strict or eventual.');
    PERFORM redis_sync._check_value(deliv IN ('sync', 'async'), 'unsupported delivery "%"', p_delivery,
                                    'Use sync or async.');
    IF deliv = 'async' AND NOT redis_sync._database_served() THEN
        RAISE EXCEPTION 'async delivery needs a redis_sync worker, and redis_sync.database does not list database "%"',
                        current_database()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Add the database to redis_sync.database (or empty it) and reload.';
    END IF;
    IF deliv = 'async' AND cons = 'strict' THEN
        RAISE EXCEPTION 'consistency "strict" cannot be combined with delivery "async"'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Async delivery happens after commit, so it cannot fail the transaction.';
    END IF;
    PERFORM redis_sync._check_value(p_ttl IS NULL OR p_ttl > '0'::interval, 'ttl must be positive, not %', p_ttl::text,
                                    'Pass NULL for keys that never expire.');

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
        -- a valid index only (_key_indexes): a CREATE UNIQUE INDEX
        -- CONCURRENTLY that failed on duplicates leaves an invalid one, not
        -- enforced
        IF NOT EXISTS (SELECT 1 FROM redis_sync._key_indexes(tbl, kcols))
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
    -- (a write-behind key whose unique index is deferrable: refused by
    -- _config_write, admin.c)

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
        PERFORM redis_sync._check_value(p_flush_interval > '0'::interval, 'flush_interval must be positive', NULL);
        PERFORM redis_sync._check_value(p_batch_size BETWEEN 1 AND 100000, 'batch_size must be between 1 and 100000, not %',
                                        p_batch_size::text);
        PERFORM redis_sync._check_value(lower(p_on_missing) IN ('ignore', 'delete'), 'unsupported on_missing "%"',
                                        p_on_missing, 'Use ignore or delete.');
        IF p_dirty_set = '' THEN
            RAISE EXCEPTION 'dirty_set must not be empty' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF starts_with(p_dirty_set, '{') THEN
            RAISE EXCEPTION 'dirty_set must not begin with "{"' USING ERRCODE = 'invalid_parameter_value',
                DETAIL = 'Version, seed and processing keys begin with "{"; a dirty set must not be able to meet them.';
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
        IF NOT redis_sync._database_served() THEN
            RAISE EXCEPTION 'write-behind tables need a redis_sync worker, and redis_sync.database does not list database "%"',
                            current_database()
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Add the database to redis_sync.database (or empty it) and reload.';
        END IF;
    END IF;

    prefix := coalesce(p_key_prefix, rel.nspname || '.' || rel.relname || ':');
    IF prefix = '' THEN
        RAISE EXCEPTION 'key_prefix must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF starts_with(prefix, '{') THEN
        RAISE EXCEPTION 'key_prefix must not begin with "{"' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'Version, seed and processing keys begin with "{"; row keys must not be able to meet them.',
            HINT = 'Put a hash tag after a first character, e.g. ''app:{users}:''.';
    END IF;
    -- the prefixes that start with this one (an index range), the prefixes
    -- this one starts with (equality probes), the same dirty set
    SELECT o.relid, o.key_prefix INTO other
      FROM (SELECT t.relid, t.key_prefix FROM redis_sync.tables t
             WHERE t.relid <> tbl AND starts_with(t.key_prefix, prefix)
            UNION ALL
            SELECT t.relid, t.key_prefix FROM redis_sync.tables t
             WHERE t.relid <> tbl AND t.key_prefix = ANY (ARRAY(SELECT left(prefix, n) FROM generate_series(1, length(prefix)) n))
            UNION ALL
            SELECT t.relid, t.key_prefix FROM redis_sync.tables t
             WHERE t.relid <> tbl AND p_policy = 'write_behind'
               AND t.dirty_set = coalesce(p_dirty_set, prefix || 'dirty')) o
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'key prefix "%" overlaps prefix "%" of table %', prefix, other.key_prefix, other.relid
            USING ERRCODE = 'duplicate_object',
                  DETAIL = 'Two tables whose keys share a prefix would overwrite and purge each other''s keys.';
    END IF;
    -- no dirty set may be a row key (issue 13): the new dirty set against
    -- every configuration's keys, the new keys against every dirty set.  A
    -- row key starts with its prefix, so only the dirty sets under the new
    -- prefix (an index range) and the configurations whose prefix the new
    -- dirty set starts with (equality probes) can pair up; the pairs of two
    -- other configurations were checked when the later of them was synced.
    FOR other IN
        SELECT t.dirty_set, t.relid AS d_rel, tbl AS k_rel, prefix AS key_prefix, kcols AS key_columns
          FROM redis_sync.tables t
         WHERE starts_with(t.dirty_set, prefix) AND NOT (t.relid = tbl AND t.policy = p_policy)
        UNION ALL
        SELECT coalesce(p_dirty_set, prefix || 'dirty'), tbl, t.relid, t.key_prefix, t.key_columns
          FROM redis_sync.tables t
         WHERE p_policy = 'write_behind' AND NOT (t.relid = tbl AND t.policy = p_policy)
           AND t.key_prefix = ANY (ARRAY(SELECT left(coalesce(p_dirty_set, prefix || 'dirty'), n)
                                           FROM generate_series(1, length(coalesce(p_dirty_set, prefix || 'dirty'))) n))
        UNION ALL
        SELECT coalesce(p_dirty_set, prefix || 'dirty'), tbl, tbl, prefix, kcols WHERE p_policy = 'write_behind'
    LOOP
        c := array_to_string(redis_sync._key_row_values(other.dirty_set, other.k_rel, other.key_prefix, other.key_columns), ', ');
        IF c IS NOT NULL THEN
            RAISE EXCEPTION 'dirty set "%" of table % would be the key of the row (%) of table %',
                            other.dirty_set, other.d_rel::regclass, c, other.k_rel::regclass
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'That row would be cached over the dirty set.',
                      HINT = format('Pass a dirty_set that does not begin with the key prefix "%s".', other.key_prefix);
        END IF;
    END LOOP;

    IF p_policy = 'write_behind' THEN
        PERFORM redis_sync._config_write(tbl, p_policy, prefix, kcols, cols, fmt, NULL, 'eventual', 'sync',
                                         coalesce(p_dirty_set, prefix || 'dirty'), p_flush_interval,
                                         p_batch_size, lower(p_on_missing), coalesce(p_counters, '{}')::name[]);
        RETURN;
    END IF;

    -- a new key prefix: the keys cached under the old one would never be
    -- written again (stale), so they go at commit
    FOR other IN SELECT t.key_prefix FROM redis_sync.tables t
                  WHERE t.relid = tbl AND t.policy IN ('write_through', 'invalidate')
                    AND t.key_prefix <> prefix
    LOOP
        RAISE NOTICE 'the keys of table % under its old prefix "%" are removed at commit', tbl, other.key_prefix;
        PERFORM redis_sync._purge_at_commit(tbl, other.key_prefix);
    END LOOP;

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
            PERFORM redis_sync._partition_guard_add(part, tbl);
        END LOOP;
    END IF;
END
$fn$;

-- unsync()'s drop of the triggers on tbl's partitions, some perhaps owned by
-- other roles (src/ddl.c): for the owner of tbl
CREATE FUNCTION _drop_partition_triggers(tbl regclass)
RETURNS int
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'redis_sync_drop_partition_triggers';
COMMENT ON FUNCTION _drop_partition_triggers(regclass) IS
'redis_sync internal: unsync()''s drop of its triggers on the partitions of a table (for its owner)';

CREATE OR REPLACE FUNCTION unsync(tbl regclass, purge boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    cfg   record;
    found boolean := false;
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
        ELSE
            -- the keys stay and go stale: the next sync on the prefix repairs them
            PERFORM redis_sync._unsynced_note(tbl, cfg.key_prefix);
        END IF;
        PERFORM redis_sync._config_delete(tbl, cfg.policy);
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'redis_sync_capture') THEN
        EXECUTE format('DROP TRIGGER redis_sync_capture ON %s', tbl);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'redis_sync_truncate') THEN
        EXECUTE format('DROP TRIGGER redis_sync_truncate ON %s', tbl);
    END IF;
    -- a partition may belong to another role: dropped as the extension
    PERFORM redis_sync._drop_partition_triggers(tbl);
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
DECLARE
    col record;
    cfg record;
BEGIN
    -- a dropped table's queued changes are moot; its keys go (through the worker)
    FOR cfg IN SELECT DISTINCT t.relid::oid AS relid, t.key_prefix
                 FROM redis_sync.tables t
                 JOIN pg_event_trigger_dropped_objects() d
                   ON d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND t.relid::oid = d.objid
    LOOP
        DELETE FROM redis_sync.outbox o WHERE o.relid = cfg.relid;
        PERFORM redis_sync._purge_dropped(cfg.relid, cfg.key_prefix);
    END LOOP;
    DELETE FROM redis_sync.tables t
     USING pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0
       AND t.relid::oid = d.objid;
    DELETE FROM redis_sync._warm_queue q
     USING pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0
       AND q.relid::oid = d.objid;
    -- ALTER TABLE ... DROP COLUMN of a synced column: the configuration follows
    FOR col IN
        SELECT DISTINCT d.objid::regclass AS tbl, d.address_names[3] AS name
          FROM pg_event_trigger_dropped_objects() d
         WHERE d.classid = 'pg_class'::regclass AND d.objsubid > 0
           AND d.object_type = 'table column'
           AND EXISTS (SELECT 1 FROM redis_sync.tables t WHERE t.relid::oid = d.objid)
    LOOP
        PERFORM redis_sync._follow_column(col.tbl, 'drop', col.name, NULL);
    END LOOP;
    -- the unique index behind a synced table's key_columns: without one two
    -- rows could share one Redis key, and the cache would hold whichever was
    -- written or read through last.  A table that lost it is no longer
    -- synced, as when its key column is dropped (_follow_column): refusing
    -- the drop made pg_restore --clean fail (it drops a table's primary key
    -- before the table; tests/t/351).  A dropped index's table is no longer
    -- in the catalogs, so every synced table is checked, only when an index
    -- or constraint was dropped.  DROP INDEX CONCURRENTLY is refused before
    -- it starts instead (_key_index_check, ddl.c).
    IF EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() d
                WHERE d.object_type IN ('index', 'table constraint')) THEN
        FOR cfg IN
            SELECT t.relid, bool_or(t.policy = 'write_behind') AS wb, bool_or(t.policy <> 'write_behind') AS wt
              FROM redis_sync.tables t
             WHERE NOT EXISTS (SELECT 1 FROM redis_sync._key_indexes(t.relid, t.key_columns))
             GROUP BY t.relid
        LOOP
            IF cfg.wb THEN
                RAISE WARNING 'table % is no longer synced write-behind: no unique index backs its key_columns any more', cfg.relid::regclass
                    USING DETAIL = 'Two rows could share one Redis key. The keys in Redis are left as they are: they may hold writes not drained yet.',
                          HINT = 'Create a unique index on the key columns, then call redis_sync.write_behind() to sync it again.';
                PERFORM redis_sync._config_delete(cfg.relid, 'write_behind');
            END IF;
            IF cfg.wt THEN
                RAISE WARNING 'table % is no longer synced: no unique index backs its key_columns any more', cfg.relid::regclass
                    USING DETAIL = 'Two rows could share one Redis key; the table''s keys are removed from Redis at commit.',
                          HINT = 'Create a unique index on the key columns, then call redis_sync.write_through() or redis_sync.invalidate() to sync it again.';
                PERFORM redis_sync.unsync(cfg.relid, true);
            END IF;
        END LOOP;
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION _on_ddl_end()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    part     regclass;
    root     regclass;
    roots    regclass[];
    cmd      record;
    attached oid[] := '{}';
    detached oid[] := '{}';
    parts_in  oid[] := '{}';
    parts_out oid[] := '{}';
    ch       record;
BEGIN
    -- dropped, renamed, retyped synced columns: the configuration follows
    FOR ch IN
        SELECT DISTINCT c.objid::regclass AS tbl, x.action, x.old_name, x.new_name
          FROM pg_event_trigger_ddl_commands() c
         CROSS JOIN LATERAL redis_sync._column_changes(c.command) x
         WHERE c.classid = 'pg_class'::regclass AND x.action NOT IN ('unlogged', 'inherit')
           AND EXISTS (SELECT 1 FROM redis_sync.tables t WHERE t.relid::oid = c.objid)
    LOOP
        PERFORM redis_sync._follow_column(ch.tbl, ch.action, ch.old_name, ch.new_name);
    END LOOP;
    -- SET UNLOGGED of a write-through or invalidate table or of one of its
    -- partitions: a crash empties an unlogged table without firing any
    -- trigger, and Redis would keep its rows' keys (stale); write_through()
    -- refuses such a table, and so does this
    FOR ch IN
        SELECT DISTINCT c.objid::regclass AS tbl, t.relid AS root
          FROM pg_event_trigger_ddl_commands() c
         CROSS JOIN LATERAL redis_sync._column_changes(c.command) x
          JOIN redis_sync.tables t
            ON t.relid::oid = coalesce(pg_partition_root(c.objid), c.objid::regclass)::oid
           AND t.policy <> 'write_behind'
         WHERE c.classid = 'pg_class'::regclass AND x.action = 'unlogged'
    LOOP
        RAISE EXCEPTION 'table % cannot be unlogged while %', ch.tbl,
                        CASE WHEN ch.tbl::oid = ch.root::oid THEN 'it' ELSE 'its table ' || ch.root::text END
                        || ' is synced ' || redis_sync._policy_names(ch.root, true)
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'A crash empties an unlogged table without firing any trigger, and Redis would keep the keys of its rows.',
                  HINT = 'Unsync the table first with redis_sync.unsync(), or keep it logged.';
    END LOOP;
    -- a table made an inheritance child of a synced table, or of a table
    -- below one (CREATE TABLE ... INHERITS, ALTER TABLE ... INHERIT, also
    -- inside CREATE SCHEMA and of foreign tables): every read of the synced
    -- table returns the child's rows too, but a write to them fires only the
    -- child's triggers, so their keys would go stale for good, and a
    -- write-behind drain's UPDATE and DELETE would reach them while its
    -- INSERT does not; write_through(), invalidate() and write_behind()
    -- refuse a table with inheritance children, and so does this.  Only the
    -- parents the command adds count (INHERIT names one)
    FOR ch IN
        WITH RECURSIVE added(child, parent) AS (
            SELECT c.objid, i.inhparent
              FROM pg_event_trigger_ddl_commands() c
              JOIN pg_inherits i ON i.inhrelid = c.objid
             WHERE c.classid = 'pg_class'::regclass AND c.objsubid = 0
               AND c.command_tag IN ('CREATE TABLE', 'CREATE FOREIGN TABLE')
            UNION
            SELECT c.objid, x.new_name::oid
              FROM pg_event_trigger_ddl_commands() c
             CROSS JOIN LATERAL redis_sync._column_changes(c.command) x
             WHERE c.classid = 'pg_class'::regclass AND c.objsubid = 0
               AND x.action = 'inherit' AND x.new_name IS NOT NULL
        ), up(child, anc) AS (
            SELECT child, parent FROM added
            UNION
            SELECT up.child, i.inhparent FROM up JOIN pg_inherits i ON i.inhrelid = up.anc
        )
        SELECT DISTINCT up.child::regclass AS tbl, up.anc::regclass AS parent
          FROM up
          JOIN pg_class p ON p.oid = up.anc AND p.relkind = 'r'
          JOIN redis_sync.tables t ON t.relid::oid = up.anc
    LOOP
        RAISE EXCEPTION 'table % cannot inherit from % while it is synced %', ch.tbl, ch.parent,
                        redis_sync._policy_names(ch.parent, false)
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Every read of the synced table returns the rows of its inheritance children, but a write to them fires only the child''s triggers: their keys would go stale.',
                  HINT = 'Unsync the table first with redis_sync.unsync(), or use declarative partitioning.';
    END LOOP;
    -- a DEFERRABLE unique constraint added on a write-behind table's key
    -- columns: the drain's INSERT ... ON CONFLICT on those columns then fails
    -- ("does not support deferrable unique constraints"), every new row a
    -- dead letter; write_behind() refuses such a table, and so does this
    FOR ch IN
        SELECT DISTINCT t.relid, t.key_columns
          FROM redis_sync.tables t
          JOIN pg_event_trigger_ddl_commands() c
            ON c.classid = 'pg_class'::regclass AND c.objid = t.relid::oid
         WHERE t.policy = 'write_behind'
           AND EXISTS (SELECT 1 FROM redis_sync._key_indexes(t.relid, t.key_columns) k WHERE k.is_deferrable)
    LOOP
        RAISE EXCEPTION 'the key of write-behind table % cannot have a deferrable unique constraint', ch.relid
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = format('The drain inserts new rows with INSERT ... ON CONFLICT on the key columns %s, '
                                  'and ON CONFLICT does not support deferrable unique constraints as arbiters.',
                                  ch.key_columns),
                  HINT = 'Make the constraint NOT DEFERRABLE, or unsync the table first with redis_sync.unsync().';
    END LOOP;
    -- only commands that attach or detach partitions: any other ALTER TABLE of
    -- a partition (a restore adds its constraints after the configuration)
    -- must not create a guard the dump creates itself
    FOR cmd IN SELECT c.command FROM pg_event_trigger_ddl_commands() c
                WHERE c.classid = 'pg_class'::regclass AND c.objsubid = 0
    LOOP
        attached := attached || redis_sync._ddl_partitions(cmd.command, true);
        detached := detached || redis_sync._ddl_partitions(cmd.command, false);
        parts_in := parts_in || redis_sync._ddl_partition_moves(cmd.command, true);
        parts_out := parts_out || redis_sync._ddl_partition_moves(cmd.command, false);
    END LOOP;
    IF cardinality(attached) = 0 AND cardinality(detached) = 0 THEN
        RETURN;
    END IF;
    FOR part, root IN
        SELECT DISTINCT l.relid, t.relid
          FROM unnest(attached) x(oid)
          CROSS JOIN LATERAL pg_partition_tree(x.oid) l
          JOIN pg_class cl ON cl.oid = l.relid AND cl.relkind = 'r'
          CROSS JOIN LATERAL pg_partition_ancestors(l.relid) a
          JOIN redis_sync.tables t ON t.relid = a.relid AND t.policy <> 'write_behind'
    LOOP
        -- an unlogged partition (created or attached): see SET UNLOGGED above
        IF (SELECT relpersistence FROM pg_class WHERE oid = part) = 'u' THEN
            RAISE EXCEPTION 'unlogged table % cannot be a partition of % while it is synced %', part, root,
                            redis_sync._policy_names(root, true)
                USING ERRCODE = 'feature_not_supported',
                      DETAIL = 'A crash empties an unlogged table without firing any trigger, and Redis would keep the keys of its rows.',
                      HINT = 'Make the table logged first (ALTER TABLE ... SET LOGGED).';
        END IF;
        -- a trigger of the guard's name that is not the guard (a partition's
        -- owner may create one first) would leave the partition unguarded
        IF EXISTS (SELECT 1 FROM pg_trigger
                    WHERE tgrelid = part AND tgname = 'redis_sync_truncate_partition'
                      AND NOT redis_sync._is_partition_guard(oid)) THEN
            RAISE EXCEPTION 'table % has a trigger named redis_sync_truncate_partition that redis_sync did not create', part
                USING ERRCODE = 'duplicate_object',
                      DETAIL = format('As a partition of %s, which is synced to Redis, it needs that trigger to purge its rows'' keys when it is truncated.', root),
                      HINT = 'Drop or rename that trigger first.';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = part
                                                 AND tgname = 'redis_sync_truncate_partition') THEN
            PERFORM redis_sync._partition_guard_add(part, root);
        END IF;
    END LOOP;
    -- the rows of a partition attached to a write-through table are the
    -- table's rows now: each leaf with rows is warmed in the background, as
    -- write_through() warms a table (the ATTACH stays as quick as without
    -- redis_sync; before 0.2 they were left out of the cache)
    FOR part IN
        SELECT l.relid
          FROM redis_sync._leaves(parts_in) l(relid)
         WHERE EXISTS (SELECT 1 FROM pg_partition_ancestors(l.relid) a
                         JOIN redis_sync.tables t ON t.relid = a.relid AND t.policy = 'write_through')
    LOOP
        PERFORM redis_sync._warm_schedule(part, true, false);
    END LOOP;
    -- a detached partition is no longer part of a synced table: the keys of
    -- its rows go at commit (pg_partman's retention detaches, then drops),
    -- and its guard goes.  The synced tables partitions were detached from
    -- (found once for the command)
    roots := ARRAY(SELECT DISTINCT t.relid
                     FROM unnest(detached) x(oid)
                     CROSS JOIN LATERAL pg_partition_ancestors(x.oid) a
                     JOIN redis_sync.tables t ON t.relid = a.relid AND t.policy <> 'write_behind');
    -- The leaves of the partitions the command detached, whether or not they
    -- carry their guard (its owner may have dropped it).  A trigger of the
    -- guard's name that is not one (another function, event, ...) is its
    -- table owner's and stays; so is every trigger on a table the command
    -- did not detach (before 0.2 every detach from a synced table dropped
    -- each trigger of that name in the database, waiting for its table's
    -- lock, and purged the keys of that table's rows)
    FOR part IN
        SELECT l.relid
          FROM redis_sync._leaves(parts_out) l(relid)
         WHERE NOT EXISTS (SELECT 1 FROM pg_partition_ancestors(l.relid) a
                             JOIN redis_sync.tables t ON t.relid = a.relid AND t.policy <> 'write_behind')
           -- pg_partition_ancestors() stops at a partition pending detach (a
           -- DETACH ... CONCURRENTLY cancelled): it is still the table's
           -- partition, its rows still cached, until FINALIZE
           AND NOT EXISTS (SELECT 1 FROM pg_inherits i
                            WHERE i.inhrelid = l.relid AND i.inhdetachpending)
    LOOP
        FOREACH root IN ARRAY roots LOOP
            PERFORM redis_sync._purge_detached(part, root);
        END LOOP;
        IF EXISTS (SELECT 1 FROM pg_trigger tg
                    WHERE tg.tgrelid = part AND tg.tgname = 'redis_sync_truncate_partition'
                      AND redis_sync._is_partition_guard(tg.oid)) THEN
            EXECUTE format('DROP TRIGGER redis_sync_truncate_partition ON %s', part);
        END IF;
    END LOOP;
END
$fn$;

-- verify() compares in C now (_verify_table): 0.1's batch helper is gone
DROP FUNCTION _verify_batch(text[], jsonb[], boolean, boolean, text[], text[]);

CREATE OR REPLACE FUNCTION verify(tbl regclass, sample int DEFAULT NULL)
RETURNS TABLE(key text, problem text, table_value jsonb, cache_value jsonb)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- the canonical settings (README, "Encoding"), whatever the caller's are
SET datestyle = 'ISO, YMD'
SET intervalstyle = 'postgres'
SET timezone = 'UTC'
SET extra_float_digits = 1
SET bytea_output = 'hex'
AS $fn$
DECLARE
    cfg      record;
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
        -- _verify_table looks a differing write-behind key up in the dirty
        -- and processing sets (pending); reading them whole here (SMEMBERS,
        -- an array of every member) blocked Redis and grew with the backlog.
        -- Keys in Redis without a row: once per table
        RETURN QUERY SELECT * FROM redis_sync._verify_table(tbl, cfg.policy, sample, '{}',
            NOT (cfg.policy = 'write_behind'
                 AND EXISTS (SELECT 1 FROM redis_sync.tables t2
                              WHERE t2.relid = tbl AND t2.policy = 'write_through')));
    END LOOP;
END
$fn$;

CREATE OR REPLACE FUNCTION resync(tbl regclass)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET datestyle = 'ISO, YMD'
SET intervalstyle = 'postgres'
SET timezone = 'UTC'
SET extra_float_digits = 1
SET bytea_output = 'hex'
AS $fn$
DECLARE
    ks text[] := '{}';
    k  text;
    n  bigint := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM redis_sync.tables t WHERE t.relid = tbl AND t.policy = 'write_through') THEN
        RAISE EXCEPTION 'resync repairs write-through tables, and % is not one', tbl
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'For write-behind tables Redis holds the newer data: use redis_sync.flush().';
    END IF;
    -- its repairs read the rows as they are now (_push_keys): a snapshot
    -- older than a committed INSERT made its key look extra, and deleted it
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'resync() cannot run in a % transaction',
                        pg_catalog.upper(pg_catalog.current_setting('transaction_isolation'))
            USING ERRCODE = 'invalid_transaction_state',
                  HINT = 'Run it in a READ COMMITTED transaction.';
    END IF;
    -- verify() has compared every row before the first push (its result is
    -- a tuplestore); the keys are pushed 10,000 at a time, so that memory
    -- does not grow with their number (one array of them all, and one push,
    -- held about 350 bytes a key)
    FOR k IN SELECT DISTINCT v.key
               FROM redis_sync.verify(tbl) v
              WHERE v.problem IN ('missing in cache', 'different value', 'extra in cache')
    LOOP
        ks := ks || k;
        IF cardinality(ks) >= 10000 THEN
            PERFORM redis_sync._push_keys(tbl, ks);
            n := n + cardinality(ks);
            ks := '{}';
        END IF;
    END LOOP;
    IF cardinality(ks) > 0 THEN
        PERFORM redis_sync._push_keys(tbl, ks);
        n := n + cardinality(ks);
    END IF;
    RETURN n;
END
$fn$;

-- ---------------------------------------------------------------------
-- Configurations 0.1 accepted that lose write-behind values.  0.2 refuses
-- them when a policy is configured (admin.c, refuse_unsafe_sharing), not
-- when it was configured before: the update names them, once.
-- ---------------------------------------------------------------------
DO $upgrade$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT s.relid::pg_catalog.regclass AS tbl, s.policy, s.key_prefix AS s_prefix,
               b.key_prefix AS b_prefix,
               CASE WHEN s.key_prefix OPERATOR(pg_catalog.<>) b.key_prefix THEN 'overlap'
                    WHEN s.policy OPERATOR(pg_catalog.=) 'invalidate' THEN 'invalidate'
                    WHEN s.format OPERATOR(pg_catalog.<>) 'hash' OR b.format OPERATOR(pg_catalog.<>) 'hash' THEN 'format'
                    WHEN s.ttl IS NOT NULL THEN 'ttl' ELSE 'columns' END AS reason,
               (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(c), ', ' ORDER BY c)
                  FROM pg_catalog.unnest(s.columns) c
                 WHERE c OPERATOR(pg_catalog.=) ANY (b.columns)
                   AND c OPERATOR(pg_catalog.<>) ALL (s.key_columns)) AS cols
          FROM redis_sync.tables s
          JOIN redis_sync.tables b ON b.relid OPERATOR(pg_catalog.=) s.relid
                                  AND b.policy OPERATOR(pg_catalog.=) 'write_behind'
                                  AND (pg_catalog.starts_with(b.key_prefix, s.key_prefix)
                                       OR pg_catalog.starts_with(s.key_prefix, b.key_prefix))
         WHERE s.policy OPERATOR(pg_catalog.=) ANY ('{write_through,invalidate}')
         ORDER BY 1
    LOOP
        CONTINUE WHEN r.reason OPERATOR(pg_catalog.=) 'columns' AND r.cols IS NULL;
        RAISE WARNING 'table % is % under key prefix "%" and write-behind under "%", which loses write-behind values',
                      r.tbl, pg_catalog.replace(r.policy, '_', '-'), r.s_prefix, r.b_prefix
            USING DETAIL = CASE r.reason
                    WHEN 'overlap' THEN 'The prefixes overlap: one policy''s key of a row can be the other''s key of another row, and a TRUNCATE of the shorter prefix removes the other''s keys.'
                    WHEN 'invalidate' THEN 'An invalidation deletes the whole hash, with the write-behind fields the drain has not read yet.'
                    WHEN 'format' THEN 'A JSON string under the same key replaces the hash that holds the write-behind fields.'
                    WHEN 'ttl' THEN 'The TTL expires the whole hash, with the write-behind fields the drain has not read yet.'
                    ELSE 'Columns both policies write (' OPERATOR(pg_catalog.||) r.cols OPERATOR(pg_catalog.||) ') have the value the application wrote to Redis overwritten by a push, or removed by a TRUNCATE, before the drain reads it.' END,
                  HINT = 'redis_sync 0.2 refuses it when either policy is configured again. ' OPERATOR(pg_catalog.||) CASE r.reason
                    WHEN 'overlap' THEN 'Use the same key_prefix for both, or prefixes neither of which begins the other.'
                    WHEN 'invalidate' THEN 'Give one of the policies another key_prefix, or use write_through() with the columns write-behind does not write.'
                    WHEN 'format' THEN 'Use format => ''hash'', or another key_prefix.'
                    WHEN 'ttl' THEN 'Drop the ttl, or give one of the policies another key_prefix.'
                    ELSE 'List in write_through(columns => ...) only the columns write-behind does not write.' END;
    END LOOP;
END
$upgrade$;

-- =====================================================================
-- the identity of this database across pg_upgrade (identity.c)
-- =====================================================================

-- The system this database runs on, the timeline base of its versions and
-- the highest timeline its worker saw: a cluster made by pg_upgrade starts
-- again at timeline 1 under a new system identifier, and takes over from
-- this row (versions above the old cluster's, its key prefix claims).  Not
-- dumped: pg_upgrade carries it, a restore from a dump is a new identity.
CREATE TABLE _identity (
    one               bool PRIMARY KEY DEFAULT true CHECK (one),
    system_identifier text NOT NULL,
    database          oid NOT NULL,
    timeline_base     int NOT NULL DEFAULT 0 CHECK (timeline_base >= 0),
    max_timeline      int NOT NULL CHECK (max_timeline >= 0)
);
COMMENT ON TABLE _identity IS 'redis_sync: the system and timeline base of this database''s versions (internal)';

CREATE FUNCTION _identity_now(OUT system_identifier text, OUT database oid, OUT timeline_base int,
                              OUT timeline int)
RETURNS record
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'redis_sync_identity_now';
REVOKE EXECUTE ON FUNCTION _identity_now() FROM PUBLIC;

INSERT INTO _identity (system_identifier, database, timeline_base, max_timeline)
SELECT i.system_identifier, i.database, i.timeline_base, i.timeline FROM redis_sync._identity_now() i;
