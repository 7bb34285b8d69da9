-- warming: write_through() on a table that has rows fills its cache in the
-- background (the worker, in batches); warm() and the background warm take
-- no row locks and write only keys Redis does not have
CREATE FUNCTION wait_warmed(tbl regclass) RETURNS text LANGUAGE plpgsql AS $$
DECLARE deadline timestamptz := clock_timestamp() + interval '60 s';
BEGIN
  WHILE coalesce((SELECT state FROM redis_sync.warming WHERE "table" = tbl), 'none') <> 'done' LOOP
    IF clock_timestamp() > deadline THEN RAISE EXCEPTION 'table % was not warmed in time', tbl; END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
  RETURN 'done';
END $$;
CREATE TABLE wm (id int PRIMARY KEY, v text, n int);
INSERT INTO wm SELECT g, 'v' || g, CASE WHEN g % 10 <> 0 THEN g END FROM generate_series(1, 25000) g;
SELECT redis_sync.stats_reset();
-- returns at once; the warm is queued for the worker
SELECT redis_sync.write_through('wm', key_prefix => 'wm:');
SELECT state IN ('queued', 'running', 'done') AS listed, rows_estimate IS NULL OR rows_estimate > 0 AS estimate_sane
  FROM redis_sync.warming WHERE "table" = 'wm'::regclass;
SELECT wait_warmed('wm');
SELECT state, rows_done, keys_filled, attempts, last_error, started_at <= finished_at AS timed
  FROM redis_sync.warming WHERE "table" = 'wm'::regclass;
SELECT warmed FROM redis_sync.stats WHERE "table" = 'wm'::regclass;
-- the table was not written: no row was locked
SELECT count(*) AS locked_rows FROM wm WHERE xmax <> '0'::xid;
SELECT * FROM redis_sync.verify('wm');
SELECT redis_sync.command('HGETALL', 'wm:20');
-- a filled key carries the lowest version: every later push replaces it
SELECT redis_sync.command('GET', '{wm:7}:rs_version');
UPDATE wm SET v = 'changed' WHERE id = 7;
SELECT redis_sync.command('HGET', 'wm:7', 'v');
-- warm(): keys with data and version are left alone (a differing value is
-- resync()'s job), missing keys are filled, keys half there are settled;
-- data found without its version is dropped by the eviction-safe fence
-- (missing is never stale) and refilled by resync()
SELECT redis_sync.command('DEL', 'wm:1');                        -- version left behind
SELECT redis_sync.command('DEL', 'wm:2', '{wm:2}:rs_version');   -- both gone
SELECT redis_sync.command('DEL', '{wm:3}:rs_version');           -- data without version
SELECT redis_sync.command('HSET', 'wm:4', 'v', 'drifted');
SELECT redis_sync.warm('wm', batch_size => 1000);
SELECT redis_sync.command('HGET', 'wm:1', 'v') AS wm1, redis_sync.command('HGET', 'wm:2', 'v') AS wm2,
       redis_sync.command('EXISTS', '{wm:3}:rs_version') AS wm3_version, redis_sync.command('HGET', 'wm:4', 'v') AS wm4;
-- keys found half there were settled without row locks too
SELECT count(*) AS locked_rows FROM wm WHERE xmax <> '0'::xid;
SELECT key, problem FROM redis_sync.verify('wm');
SELECT redis_sync.resync('wm');
SELECT * FROM redis_sync.verify('wm');

-- warm => false: nothing queued, nothing cached (and a queued warm is cancelled)
CREATE TABLE wm_off (id int PRIMARY KEY, v text);
INSERT INTO wm_off VALUES (1, 'a'), (2, 'b');
SELECT redis_sync.worker_pause();
SELECT redis_sync.write_through('wm_off', key_prefix => 'wo:');
SELECT state FROM redis_sync.warming WHERE "table" = 'wm_off'::regclass;
SELECT redis_sync.write_through('wm_off', key_prefix => 'wo:', warm => false);
SELECT redis_sync.worker_resume();
SELECT count(*) FROM redis_sync.warming WHERE "table" = 'wm_off'::regclass;
SELECT redis_sync.command('EXISTS', 'wo:1');
-- an empty table queues nothing either (its writers push every row)
CREATE TABLE wm_empty (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('wm_empty', key_prefix => 'we:');
SELECT count(*) FROM redis_sync.warming WHERE "table" = 'wm_empty'::regclass;
-- syncing again queues a new warm, which finds the filled keys in place
SELECT redis_sync.warm('wm_off');
SELECT redis_sync.write_through('wm_off', key_prefix => 'wo:');
SELECT wait_warmed('wm_off');
SELECT rows_done, keys_filled FROM redis_sync.warming WHERE "table" = 'wm_off'::regclass;

-- ttl: filled keys and their versions expire like pushed ones
CREATE TABLE wm_ttl (id int PRIMARY KEY, v text);
INSERT INTO wm_ttl VALUES (1, 'a');
SELECT redis_sync.write_through('wm_ttl', key_prefix => 'wt:', ttl => '1 hour', warm => false);
SELECT redis_sync.warm('wm_ttl');
SELECT (redis_sync.command('PTTL', 'wt:1'))::text::bigint BETWEEN 1 AND 3600000 AS data_expires,
       (redis_sync.command('PTTL', '{wt:1}:rs_version'))::text::bigint BETWEEN 1 AND 3600000 AS version_expires;
-- json format and composite keys
CREATE TABLE wm_json (a text, b int, v jsonb, PRIMARY KEY (a, b));
INSERT INTO wm_json VALUES ('x', 1, '{"k": 1}'), ('x', 2, NULL), ('y', 1, '[1]');
SELECT redis_sync.write_through('wm_json', key_prefix => 'wj:', format => 'json', warm => false);
SELECT redis_sync.warm('wm_json', batch_size => 1);
SELECT redis_sync.command('GET', 'wj:x:1'), redis_sync.command('GET', 'wj:y:1');
SELECT * FROM redis_sync.verify('wm_json');

-- odd names: quoted schema, table and key column; partitioned; replica
CREATE SCHEMA "s p";
CREATE TABLE "s p"."Odd ""T""" ("k ey" text PRIMARY KEY, v int) PARTITION BY LIST ("k ey");
CREATE TABLE "s p"."Odd part" PARTITION OF "s p"."Odd ""T""" DEFAULT;
INSERT INTO "s p"."Odd ""T""" VALUES ('a:b', 1), ('it''s', 2), ('{x}', 3);
SELECT redis_sync.write_through('"s p"."Odd ""T"""', key_prefix => 'odd:', replica => true);
SELECT wait_warmed('"s p"."Odd ""T"""');
SELECT rows_done, keys_filled, rows_estimate IS NULL OR rows_estimate >= 0 AS estimate_sane
  FROM redis_sync.warming WHERE "table" = '"s p"."Odd ""T"""'::regclass;
SELECT redis_sync.command('HGET', 'odd:it''s', 'v'), redis_sync.command('HGET', 'odd:{x}', 'v');
SELECT * FROM redis_sync.verify('"s p"."Odd ""T"""');
SELECT redis_sync.unsync('"s p"."Odd ""T"""', purge => true);
DROP SCHEMA "s p" CASCADE;

-- only the owner may queue a warm; the view shows other roles nothing of
-- tables they do not own, the queue is not readable
CREATE ROLE rs_warm_other;
SET ROLE rs_warm_other;
SELECT redis_sync._warm_schedule('wm', true);
SELECT count(*) > 0 AS sees_progress FROM redis_sync.warming;
SELECT * FROM redis_sync._warm_queue;
RESET ROLE;
DROP ROLE rs_warm_other;

-- a queued warm of a table unsynced or dropped meanwhile is forgotten
SELECT redis_sync.worker_pause();
SELECT redis_sync.write_through('wm_off', key_prefix => 'wo:');
DROP TABLE wm_off;
SELECT redis_sync.worker_resume();
DO $$
DECLARE deadline timestamptz := clock_timestamp() + interval '60 s';
BEGIN
  WHILE EXISTS (SELECT 1 FROM redis_sync.warming WHERE state <> 'done') LOOP
    IF clock_timestamp() > deadline THEN RAISE EXCEPTION 'queue not emptied in time'; END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
END $$;
-- the view lists synced tables only; dropping a table removes its entry
SELECT "table"::text, state FROM redis_sync.warming ORDER BY 1;
SELECT count(*) FROM redis_sync.warming w WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = w."table");

-- syncing a table again forgets the finished warms of its earlier sync,
-- of partitions attached then too (queued under their own name): before,
-- one showed in warming again
CREATE TABLE wm_p (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE wm_p1 PARTITION OF wm_p FOR VALUES FROM (0) TO (100);
SELECT redis_sync.write_through('wm_p', key_prefix => 'wp:');
CREATE TABLE wm_p2 (id int PRIMARY KEY, v text);
INSERT INTO wm_p2 VALUES (150, 'x');
ALTER TABLE wm_p ATTACH PARTITION wm_p2 FOR VALUES FROM (100) TO (200);
SELECT wait_warmed('wm_p2');
SELECT "table"::text, state, rows_done FROM redis_sync.warming WHERE "table" = 'wm_p2'::regclass;
SELECT redis_sync.unsync('wm_p', purge => true);
SELECT redis_sync.write_through('wm_p', key_prefix => 'wp:', warm => false);
SELECT count(*) AS queued FROM redis_sync._warm_queue WHERE relid = 'wm_p2'::regclass;
SELECT count(*) AS shown FROM redis_sync.warming WHERE "table" = 'wm_p2'::regclass;
SELECT redis_sync.unsync('wm_p', purge => true);
DROP TABLE wm_p;

-- warm() sends each chunk of a batch as soon as it is encoded: a row that
-- cannot be encoded stops the warm with its error after earlier chunks
-- went to Redis; the session's next command to Redis works, the chunks
-- sent are filled, and a warm after the fix fills the rest
CREATE TYPE wm_mood AS ENUM ('calm', 'bad');
CREATE FUNCTION wm_mood_json(m wm_mood) RETURNS json LANGUAGE plpgsql AS
$$ BEGIN
  IF m = 'bad' AND current_setting('wm.fail', true) = 'on' THEN RAISE EXCEPTION 'mood % has no json', m; END IF;
  RETURN to_json(m::text);
END $$;
CREATE CAST (wm_mood AS json) WITH FUNCTION wm_mood_json(wm_mood);
CREATE TABLE wm_chunks (id int PRIMARY KEY, m wm_mood);
INSERT INTO wm_chunks SELECT g, CASE WHEN g = 2500 THEN 'bad' ELSE 'calm' END::wm_mood FROM generate_series(1, 3000) g;
SELECT redis_sync.write_through('wm_chunks', key_prefix => 'wc:', format => 'json', warm => false);
SET wm.fail = on;
SELECT redis_sync.warm('wm_chunks');
SELECT redis_sync.command('PING');
SELECT redis_sync.command('GET', 'wc:1') AS first_chunk, redis_sync.command('EXISTS', 'wc:2500') AS bad_row;
RESET wm.fail;
SELECT redis_sync.warm('wm_chunks');
SELECT redis_sync.command('GET', 'wc:2500');
SELECT count(*) FROM redis_sync.verify('wm_chunks');
-- the table's code may set redis_sync.chunk_size while a chunk is encoded
-- (row 10, in the first chunk): the chunk ends where its encoding did
-- (before, the backend crashed on the rows past it, never encoded)
UPDATE wm_chunks SET m = 'bad' WHERE id = 10;
CREATE OR REPLACE FUNCTION wm_mood_json(m wm_mood) RETURNS json LANGUAGE plpgsql AS
$$ BEGIN
  IF m = 'bad' AND current_setting('wm.act', true) = 'grow' THEN
    PERFORM set_config('redis_sync.chunk_size', '100000', false);
  ELSIF m = 'bad' AND current_setting('wm.act', true) = 'ping' THEN
    PERFORM redis_sync.command('PING');
  END IF;
  RETURN to_json(m::text);
END $$;
SELECT redis_sync.command('DEL', 'wc:1', 'wc:2500', 'wc:3000');
SET wm.act = grow;
SELECT redis_sync.warm('wm_chunks');
RESET wm.act;
RESET redis_sync.chunk_size;
SELECT count(*) FROM redis_sync.verify('wm_chunks');
-- code that uses the connection while chunks stream (row 2500, in the
-- third chunk: command() finds the connection busy and opens another)
-- fails the warm: the rest is never sent on the new connection, where it
-- would start mid-command and its replies answer nobody
SELECT redis_sync.command('DEL', 'wc:1', 'wc:2500', 'wc:3000');
SET wm.act = ping;
DO $$ BEGIN PERFORM redis_sync.warm('wm_chunks');
EXCEPTION WHEN connection_failure THEN RAISE NOTICE 'warm failed: %', SQLSTATE; END $$;
RESET wm.act;
SELECT redis_sync.command('PING');
CREATE OR REPLACE FUNCTION wm_mood_json(m wm_mood) RETURNS json LANGUAGE sql AS $$ SELECT to_json(m::text) $$;
SELECT redis_sync.warm('wm_chunks');
SELECT count(*) FROM redis_sync.verify('wm_chunks');
SELECT redis_sync.unsync('wm_chunks', purge => true);
DROP TABLE wm_chunks;
DROP CAST (wm_mood AS json);
DROP FUNCTION wm_mood_json(wm_mood);
DROP TYPE wm_mood;

-- a warm over the tombstones of unsync(purge): once a batch found most of
-- its keys half there, the next batches are pushed settled at once, one
-- round trip each instead of the fill's and the settle's (20 before: 10
-- batches of 10; 12 now, the ninth filled again to decide for the tenth);
-- a row changed after the purge is pushed as it is now
CREATE TABLE wm_tomb (id int PRIMARY KEY, v text);
INSERT INTO wm_tomb SELECT g, 'v' || g FROM generate_series(1, 100) g;
SELECT redis_sync.write_through('wm_tomb', key_prefix => 'wm_tomb:', warm => false);
SELECT redis_sync.warm('wm_tomb');
SELECT redis_sync.unsync('wm_tomb', purge => true);
SELECT redis_sync.write_through('wm_tomb', key_prefix => 'wm_tomb:', warm => false);
UPDATE wm_tomb SET v = 'changed' WHERE id = 55;
DELETE FROM wm_tomb WHERE id = 56;
SELECT round_trips AS rt0 FROM redis_sync.session_stats() \gset
SELECT redis_sync.warm('wm_tomb', batch_size => 10);
SELECT round_trips - :rt0 AS round_trips FROM redis_sync.session_stats();
SELECT redis_sync.command('HGET', 'wm_tomb:55', 'v') AS changed,
       redis_sync.command('EXISTS', 'wm_tomb:56') AS deleted,
       redis_sync.command('HGET', 'wm_tomb:100', 'v') AS last;
SELECT count(*) FROM redis_sync.verify('wm_tomb');
SELECT redis_sync.unsync('wm_tomb', purge => true);
DROP TABLE wm_tomb;

-- after 7 settled batches one is filled again, and decides for the next:
-- where the tombstones end (rows 1-20 here), the keys a fill cached keep
-- its lowest version (the settled batches 2-8 wrote rows 11-80 again)
CREATE TABLE wm_part (id int PRIMARY KEY, v text);
INSERT INTO wm_part SELECT g, 'v' || g FROM generate_series(1, 200) g;
SELECT redis_sync.write_through('wm_part', key_prefix => 'wm_part:', warm => false);
SELECT redis_sync.warm('wm_part');
SELECT count(redis_sync.command('DEL', 'wm_part:' || g)),
       count(redis_sync.command('SET', chr(123) || 'wm_part:' || g || chr(125) || ':rs_version',
                                repeat('0', 31) || '1'))
  FROM generate_series(1, 20) g;
SELECT redis_sync.warm('wm_part', batch_size => 10);
SELECT g, btrim(redis_sync.command('GET', chr(123) || 'wm_part:' || g || chr(125) || ':rs_version')::text, '"')
          ~ '^0+$' AS lowest_version
  FROM unnest(ARRAY[5, 50, 80, 85, 150]) g;
SELECT count(*) FROM redis_sync.verify('wm_part');
SELECT redis_sync.unsync('wm_part', purge => true);
DROP TABLE wm_part;

SELECT redis_sync.unsync(t, purge => true) FROM unnest(ARRAY['wm', 'wm_empty', 'wm_ttl', 'wm_json']::regclass[]) t;
DROP TABLE wm, wm_empty, wm_ttl, wm_json;
DROP FUNCTION wait_warmed(regclass);
