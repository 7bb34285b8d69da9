-- every function of the extension called with NULL in each argument, and
-- with out-of-range values (low and high) in all of them: errors are fine,
-- a crash is not.  Each call runs in a subtransaction that is rolled back,
-- so calls that succeed change nothing.  Expected: no internal error
-- (XX000: an unchecked argument), and the server did not restart.
\set SHOW_CONTEXT never
-- a column named t: generated SQL must not mistake it for a whole-row alias
CREATE TABLE fz (id int PRIMARY KEY, n int, t text);
INSERT INTO fz VALUES (1, 1, 'a');
SELECT redis_sync.write_through('fz', key_prefix => 'fz:');
CREATE TABLE fz_wb (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0, t text);
SELECT redis_sync.write_behind('fz_wb', key_prefix => 'fzwb:', flush_interval => '1 h', counters => '{n}');
SELECT pg_postmaster_start_time() AS started \gset
CREATE TEMP TABLE fz_results (fn regprocedure, variant text, sqlstate text, message text);

DO $fz$
DECLARE
    f        record;
    v        text;
    pos      int;
    exprs    text[];
    ty       regtype;
    e        text;
    sql      text;
    st       text;
    msg      text;
    wb       boolean;
BEGIN
    FOR f IN
        SELECT p.oid, p.proname, p.proargtypes::regtype[] AS types, p.pronargs, p.provariadic <> 0 AS variadic
          FROM pg_proc p
          JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
          JOIN pg_extension x ON x.oid = d.refobjid AND x.extname = 'redis_sync'
         WHERE p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
         ORDER BY p.proname, p.oid
    LOOP
        wb := f.proname IN ('hincrby', 'hset', 'retry_dead_letters', 'discard_dead_letters', '_dirty_members');
        FOREACH v IN ARRAY ARRAY['low', 'high'] || (SELECT coalesce(array_agg('null ' || g), '{}')
                                                    FROM generate_series(1, f.pronargs) g)
        LOOP
            exprs := '{}';
            FOR pos IN 1 .. f.pronargs LOOP
                ty := f.types[pos - 1];
                IF v = 'null ' || pos THEN
                    e := CASE WHEN ty = 'anyelement'::regtype THEN 'NULL::integer'
                              ELSE format('NULL::%s', ty) END;
                ELSE
                    e := CASE ty
                        WHEN 'regclass'::regtype THEN CASE WHEN wb THEN '''fz_wb''::regclass' ELSE '''fz''::regclass' END
                        WHEN 'text'::regtype THEN CASE v WHEN 'low' THEN '''''' ELSE quote_literal(repeat('x', 10000)) END
                        WHEN 'text[]'::regtype THEN CASE v WHEN 'low' THEN '''{}''::text[]' ELSE '''{fz:1,x,""}''::text[]' END
                        WHEN 'name[]'::regtype THEN CASE v WHEN 'low' THEN '''{}''::name[]' ELSE '''{id,n,t,id}''::name[]' END
                        WHEN 'jsonb[]'::regtype THEN CASE v WHEN 'low' THEN '''{}''::jsonb[]' ELSE 'ARRAY[''{}''::jsonb, ''null'']' END
                        WHEN 'integer'::regtype THEN CASE v WHEN 'low' THEN '(-2147483648)' ELSE '2147483647' END
                        WHEN 'bigint'::regtype THEN CASE v WHEN 'low' THEN '(-9223372036854775808)::bigint' ELSE '9223372036854775807::bigint' END
                        WHEN 'interval'::regtype THEN CASE v WHEN 'low' THEN '''-1 s''::interval' ELSE '''178000000 years''::interval' END
                        WHEN 'boolean'::regtype THEN CASE v WHEN 'low' THEN 'false' ELSE 'true' END
                        WHEN 'anyelement'::regtype THEN 'NULL::fz'
                        ELSE format('NULL::%s', ty) END;
                END IF;
                IF f.variadic AND pos = f.pronargs THEN
                    e := 'VARIADIC ' || e;
                END IF;
                exprs := exprs || e;
            END LOOP;
            sql := format('SELECT * FROM redis_sync.%I(%s)', f.proname, array_to_string(exprs, ', '));
            BEGIN
                EXECUTE sql;
                RAISE EXCEPTION 'roll back' USING ERRCODE = 'RS000';
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
            END;
            IF f.proname = 'worker_pause' THEN
                PERFORM redis_sync.worker_resume();
            END IF;
            INSERT INTO fz_results VALUES (f.oid, v, CASE st WHEN 'RS000' THEN 'ok' ELSE st END, msg);
        END LOOP;
    END LOOP;
END
$fz$;

-- every function, every argument
SELECT count(*) > 0 AS some_calls,
       count(*) = (SELECT sum(p.pronargs + 2)
                     FROM pg_proc p
                     JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
                     JOIN pg_extension x ON x.oid = d.refobjid AND x.extname = 'redis_sync'
                    WHERE p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)) AS every_function_every_argument
  FROM fz_results;
-- internal errors: none
SELECT fn, variant, message FROM fz_results WHERE sqlstate = 'XX000' ORDER BY fn::text, variant;
-- the server did not restart
SELECT pg_postmaster_start_time() = :'started' AS same_server;
SELECT redis_sync.unsync('fz');
SELECT redis_sync.unsync('fz_wb');
DROP TABLE fz, fz_wb;
