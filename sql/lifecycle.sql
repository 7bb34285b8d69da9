-- a synced table's life: DROP TABLE purges its keys and its queued changes;
-- partitions created, attached and detached get and lose their TRUNCATE guard
\set SHOW_CONTEXT never
SELECT redis_sync.worker_pause();
SELECT redis_sync.deliver_outbox() >= 0 AS earlier_drained;

CREATE TABLE lc_drop (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('lc_drop', key_prefix => 'lcd:');
INSERT INTO lc_drop SELECT g, 'v' || g FROM generate_series(1, 5) g;
CREATE TABLE lc_async (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('lc_async', key_prefix => 'lca:', delivery => 'async');
INSERT INTO lc_async VALUES (1, 'queued'), (2, 'queued');
SELECT redis_sync.command('EXISTS', 'lcd:1', 'lcd:2', 'lcd:3', 'lcd:4', 'lcd:5') AS cached,
       (SELECT count(*) FROM redis_sync.outbox WHERE redis_key LIKE 'lca:%') AS queued;

-- a DROP that rolls back changes nothing
BEGIN;
DROP TABLE lc_drop, lc_async;
ROLLBACK;
SELECT count(*) AS configs FROM redis_sync.tables WHERE relid IN ('lc_drop'::regclass, 'lc_async'::regclass);
SELECT redis_key, op FROM redis_sync.outbox ORDER BY id;

-- DROP: the queued changes go, a purge of each prefix is queued for the worker
DROP TABLE lc_drop, lc_async;
SELECT redis_key, op, payload FROM redis_sync.outbox ORDER BY redis_key;
SELECT count(*) AS configs FROM redis_sync.tables WHERE key_prefix IN ('lcd:', 'lca:');
SELECT redis_sync.deliver_outbox();
SELECT redis_sync.command('EXISTS', 'lcd:1', 'lcd:2', 'lcd:3', 'lcd:4', 'lcd:5', 'lca:1', 'lca:2') AS left_in_redis;

-- DML and DROP in one transaction: the rows never reach Redis, the purge does
CREATE TABLE lc_tx (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('lc_tx', key_prefix => 'lct:');
INSERT INTO lc_tx VALUES (1, 'before');
BEGIN;
UPDATE lc_tx SET v = 'in tx';
INSERT INTO lc_tx VALUES (2, 'in tx');
DROP TABLE lc_tx;
COMMIT;
SELECT redis_key, op FROM redis_sync.outbox ORDER BY id;
SELECT redis_sync.deliver_outbox();
SELECT redis_sync.command('EXISTS', 'lct:1', 'lct:2') AS left_in_redis;

-- partitions: created, attached, sub-partitioned leaves get the guard
CREATE TABLE lc_part (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE lc_part_1 PARTITION OF lc_part FOR VALUES FROM (0) TO (100);
SELECT redis_sync.write_through('lc_part', key_prefix => 'lcp:');
CREATE TABLE lc_part_2 PARTITION OF lc_part FOR VALUES FROM (100) TO (200);
CREATE TABLE lc_part_3 (id int NOT NULL, v text);
ALTER TABLE lc_part ATTACH PARTITION lc_part_3 FOR VALUES FROM (200) TO (300);
CREATE TABLE lc_sub PARTITION OF lc_part FOR VALUES FROM (300) TO (400) PARTITION BY RANGE (id);
CREATE TABLE lc_sub_1 PARTITION OF lc_sub FOR VALUES FROM (300) TO (400);
SELECT tgrelid::regclass AS guarded FROM pg_trigger
 WHERE tgname = 'redis_sync_truncate_partition' ORDER BY tgrelid::regclass::text;
SELECT rs_error('TRUNCATE lc_part_3');

-- rows in every partition; one attached with its columns in another order
-- (and a dropped column): keys are made from column names, not positions
CREATE TABLE lc_part_4 (v text, gone int, id int NOT NULL);
ALTER TABLE lc_part_4 DROP COLUMN gone;
ALTER TABLE lc_part ATTACH PARTITION lc_part_4 FOR VALUES FROM (400) TO (500);
CREATE TABLE lc_part_5 PARTITION OF lc_part FOR VALUES FROM (500) TO (600);
INSERT INTO lc_part VALUES (1, 'a'), (101, 'b'), (201, 'c'), (301, 'd'), (401, 'e'), (402, 'e2'), (501, 'f');
SELECT redis_sync.command('EXISTS', 'lcp:1', 'lcp:101', 'lcp:201', 'lcp:301', 'lcp:401', 'lcp:402', 'lcp:501') AS cached;

-- a detach that rolls back leaves the keys
BEGIN;
ALTER TABLE lc_part DETACH PARTITION lc_part_3;
ROLLBACK;
SELECT redis_sync.command('EXISTS', 'lcp:201') AS kept;

-- detached: the keys of its rows go at commit (they are no longer rows of
-- lc_part; pg_partman's retention detaches, then drops: tests/t/334), the
-- guard goes, the table can be truncated.  A trigger of the guard's name on
-- another table is its owner's: a detach leaves it (and it still fires)
CREATE TABLE lc_other (id int PRIMARY KEY, v text);
INSERT INTO lc_other VALUES (201, 'not a partition');
CREATE FUNCTION lc_other_truncate() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN RAISE NOTICE 'lc_other truncated'; RETURN NULL; END $$;
CREATE TRIGGER redis_sync_truncate_partition BEFORE TRUNCATE ON lc_other
  FOR EACH STATEMENT EXECUTE FUNCTION lc_other_truncate();
ALTER TABLE lc_part DETACH PARTITION lc_part_3;
ALTER TABLE lc_part DETACH PARTITION lc_sub;
ALTER TABLE lc_part DETACH PARTITION lc_part_4;
ALTER TABLE lc_part DETACH PARTITION lc_part_5 CONCURRENTLY;
SELECT redis_sync.command('EXISTS', 'lcp:201') AS detached,
       redis_sync.command('EXISTS', 'lcp:301') AS detached_sub,
       redis_sync.command('EXISTS', 'lcp:401', 'lcp:402') AS detached_reordered,
       redis_sync.command('EXISTS', 'lcp:501') AS detached_concurrently,
       redis_sync.command('EXISTS', 'lcp:1', 'lcp:101') AS still_attached;
SELECT count(*) AS stale FROM redis_sync.verify('lc_part');
SELECT count(*) AS own_trigger_kept FROM pg_trigger
 WHERE tgrelid = 'lc_other'::regclass AND tgname = 'redis_sync_truncate_partition';
TRUNCATE lc_other;
DROP TABLE lc_other;
DROP FUNCTION lc_other_truncate();
-- a detached table's rows are its own: written now, not pushed
UPDATE lc_part_3 SET v = 'after detach';
SELECT redis_sync.command('EXISTS', 'lcp:201') AS not_pushed;
-- DROP TABLE of an attached partition: the keys of its rows go too
DROP TABLE lc_part_1;
SELECT redis_sync.command('EXISTS', 'lcp:1') AS dropped_partition,
       redis_sync.command('EXISTS', 'lcp:101') AS other_partition;
SELECT count(*) AS stale FROM redis_sync.verify('lc_part');
-- so does DROP SCHEMA ... CASCADE of a schema holding a partition (not the table)
CREATE SCHEMA lc_old;
CREATE TABLE lc_old.lc_part_6 PARTITION OF lc_part FOR VALUES FROM (600) TO (700);
INSERT INTO lc_part VALUES (601, 'g');
SELECT redis_sync.command('EXISTS', 'lcp:601') AS cached;
DROP SCHEMA lc_old CASCADE;
SELECT redis_sync.command('EXISTS', 'lcp:601') AS dropped_with_schema,
       redis_sync.command('EXISTS', 'lcp:101') AS other_partition;
-- a partition whose guard its owner dropped, named through the search_path
-- (the command's, not the event trigger's): its keys go all the same
-- (before, only partitions still carrying the guard lost them).  The table
-- of that name in public is a decoy: through the command's search_path the
-- name means lc_s's
CREATE SCHEMA lc_s;
CREATE TABLE lc_s.lc_part_7 PARTITION OF lc_part FOR VALUES FROM (700) TO (800);
CREATE TABLE lc_part_7 (id int PRIMARY KEY, v text);
INSERT INTO lc_part_7 VALUES (701, 'public''s');
INSERT INTO lc_part VALUES (701, 'h');
SELECT redis_sync.command('EXISTS', 'lcp:701') AS cached;
DROP TRIGGER redis_sync_truncate_partition ON lc_s.lc_part_7;
SET search_path = lc_s, public;
ALTER TABLE lc_part DETACH PARTITION lc_part_7;
RESET search_path;
SELECT redis_sync.command('EXISTS', 'lcp:701') AS detached_unguarded,
       redis_sync.command('EXISTS', 'lcp:101') AS other_partition;
SELECT count(*) AS stale FROM redis_sync.verify('lc_part');
-- ATTACH of a table with rows (public's lc_part_7): they are the synced
-- table's rows now, warmed in the background as write_through() warms a
-- table (the worker is paused here: warm() does what it would; before, they
-- were left out: verify() found them missing)
ALTER TABLE lc_part ATTACH PARTITION lc_part_7 FOR VALUES FROM (700) TO (800);
SELECT "table", state, rows_estimate FROM redis_sync.warming WHERE "table" = 'lc_part_7'::regclass;
SELECT redis_sync.warm('lc_part_7') AS warmed;
SELECT redis_sync.command('HGET', 'lcp:701', 'v') AS attached_row;
SELECT count(*) AS stale FROM redis_sync.verify('lc_part');
-- DETACH and ATTACH again in one transaction: the keys go at commit and the
-- partition is queued to be warmed again
BEGIN;
ALTER TABLE lc_part DETACH PARTITION lc_part_7;
ALTER TABLE lc_part ATTACH PARTITION lc_part_7 FOR VALUES FROM (700) TO (800);
COMMIT;
SELECT redis_sync.command('EXISTS', 'lcp:701') AS purged,
       (SELECT state FROM redis_sync.warming WHERE "table" = 'lc_part_7'::regclass) AS warm;
SELECT redis_sync.warm('lc_part_7') AS warmed;
SELECT count(*) AS stale FROM redis_sync.verify('lc_part');
ALTER TABLE lc_part DETACH PARTITION lc_part_7;
DROP SCHEMA lc_s CASCADE;
DROP TABLE lc_part_7;
DROP TABLE lc_part_4, lc_part_5;
SELECT tgrelid::regclass AS guarded FROM pg_trigger
 WHERE tgname = 'redis_sync_truncate_partition' ORDER BY tgrelid::regclass::text;
TRUNCATE lc_part_3;
TRUNCATE lc_sub;

-- other ALTER TABLEs of a partition leave its triggers alone (a restore adds
-- constraints after the configuration; the dump creates the guard itself)
DROP TRIGGER redis_sync_truncate_partition ON lc_part_2;
ALTER TABLE lc_part_2 ADD CONSTRAINT lc_part_2_v CHECK (v <> '');
SELECT count(*) AS guard_recreated FROM pg_trigger
 WHERE tgrelid = 'lc_part_2'::regclass AND tgname = 'redis_sync_truncate_partition';
DO $$ BEGIN
  EXECUTE format('CREATE TRIGGER redis_sync_truncate_partition BEFORE TRUNCATE ON lc_part_2 '
                 'FOR EACH STATEMENT EXECUTE FUNCTION redis_sync.capture(%L)', 'lc_part'::regclass::oid::text);
END $$;
SELECT rs_error('TRUNCATE lc_part_2');

DROP TABLE lc_part, lc_part_3, lc_sub;
SELECT redis_key, op FROM redis_sync.outbox ORDER BY id;
SELECT redis_sync.deliver_outbox();

-- worker_stats counts worker restarts
SELECT worker_restarts >= 0 AS has_restarts FROM redis_sync.worker_stats;
SELECT redis_sync.worker_resume();
