-- upgrade: installing 0.1 and updating gives the same objects as a fresh
-- install of the default version (functions with their bodies, settings,
-- privileges and security; tables, columns, constraints, views, triggers,
-- event triggers).  Runs last: it drops and recreates the extension.
SET client_min_messages = warning;
CREATE TEMP TABLE rs_snap(phase text, kind text, name text, detail text);
CREATE FUNCTION pg_temp.rs_snapshot(phase text) RETURNS void LANGUAGE sql AS $$
  INSERT INTO rs_snap
  SELECT phase, 'function', p.oid::regprocedure::text,
         concat_ws(' | ', md5(p.prosrc), p.prorettype::regtype::text, p.prosecdef,
                   p.provolatile, p.proisstrict, p.proconfig::text, p.proacl::text,
                   pg_get_function_arguments(p.oid))
    FROM pg_proc p WHERE p.pronamespace = 'redis_sync'::regnamespace
  UNION ALL
  SELECT phase, 'relation', c.relname,
         concat_ws(' | ', c.relkind, c.relacl::text, c.reloptions::text,
                   CASE WHEN c.relkind = 'v' THEN md5(pg_get_viewdef(c.oid)) END)
    FROM pg_class c WHERE c.relnamespace = 'redis_sync'::regnamespace
  UNION ALL
  SELECT phase, 'column', c.relname || '.' || a.attname,
         concat_ws(' | ', a.attnum, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   pg_get_expr(d.adbin, d.adrelid), a.attacl::text)
    FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
   WHERE c.relnamespace = 'redis_sync'::regnamespace
  UNION ALL
  SELECT phase, 'constraint', conrelid::regclass::text || '.' || conname, pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = 'redis_sync'::regnamespace
  UNION ALL
  SELECT phase, 'trigger', tgrelid::regclass::text || '.' || tgname, pg_get_triggerdef(oid)
    FROM pg_trigger WHERE tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'redis_sync'::regnamespace)
  UNION ALL
  SELECT phase, 'event trigger', evtname, concat_ws(' | ', evtevent, evtfoid::regproc::text, evttags::text, evtenabled)
    FROM pg_event_trigger
   WHERE evtfoid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'redis_sync'::regnamespace)
  UNION ALL
  SELECT phase, 'schema', nspname, nspacl::text FROM pg_namespace WHERE nspname = 'redis_sync'
  UNION ALL
  SELECT phase, 'extension config', unnest(extconfig)::regclass::text, NULL
    FROM pg_extension WHERE extname = 'redis_sync'
$$;

DROP EXTENSION IF EXISTS redis_sync CASCADE;
CREATE EXTENSION redis_sync VERSION '0.1';
ALTER EXTENSION redis_sync UPDATE;
SELECT pg_temp.rs_snapshot('updated');
SELECT extversion FROM pg_extension WHERE extname = 'redis_sync';
DROP EXTENSION redis_sync CASCADE;
CREATE EXTENSION redis_sync;
SELECT pg_temp.rs_snapshot('fresh');
SELECT extversion FROM pg_extension WHERE extname = 'redis_sync';
RESET client_min_messages;

-- objects that differ (none)
(SELECT kind, name, detail FROM rs_snap WHERE phase = 'updated'
 EXCEPT SELECT kind, name, detail FROM rs_snap WHERE phase = 'fresh')
UNION ALL
(SELECT kind, name, detail FROM rs_snap WHERE phase = 'fresh'
 EXCEPT SELECT kind, name, detail FROM rs_snap WHERE phase = 'updated')
ORDER BY 1, 2;
-- and the snapshot is not empty
SELECT kind, count(*) > 0 AS present FROM rs_snap WHERE phase = 'fresh' GROUP BY kind ORDER BY kind;

-- configurations 0.1 accepted that 0.2 refuses (they lose write-behind
-- values): the update names each, once; configured again, it is refused
DROP EXTENSION redis_sync CASCADE;
CREATE EXTENSION redis_sync VERSION '0.1';
CREATE TABLE up_inv (id int PRIMARY KEY, n int, label text);
CREATE TABLE up_cols (id int PRIMARY KEY, n int, label text);
CREATE TABLE up_ok (id int PRIMARY KEY, n int, label text);
INSERT INTO redis_sync.tables (relid, policy, key_prefix, key_columns, columns, format, dirty_set)
VALUES ('up_inv', 'write_behind', 'upi:', '{id}', '{n}', 'hash', 'upi:dirty'),
       ('up_inv', 'invalidate', 'upi:', '{id}', '{id,n,label}', 'hash', NULL),
       ('up_cols', 'write_behind', 'upc:', '{id}', '{n}', 'hash', 'upc:dirty'),
       ('up_cols', 'write_through', 'upc:', '{id}', '{id,n,label}', 'hash', NULL),
       ('up_ok', 'write_behind', 'upo:', '{id}', '{n}', 'hash', 'upo:dirty'),
       ('up_ok', 'write_through', 'upo:', '{id}', '{id,label}', 'hash', NULL);
ALTER EXTENSION redis_sync UPDATE;
\set VERBOSITY terse
SELECT redis_sync.write_through('up_cols', key_prefix => 'upc:', warm => false);
\set VERBOSITY default
DELETE FROM redis_sync.tables WHERE relid IN ('up_inv'::regclass, 'up_cols'::regclass, 'up_ok'::regclass);
DROP TABLE up_inv, up_cols, up_ok;
DROP EXTENSION redis_sync CASCADE;
CREATE EXTENSION redis_sync;
