-- changes captured out of the order they were made: a user's AFTER trigger
-- that changes the row again runs a nested statement whose own AFTER events
-- (redis_sync's capture of the newer row) fire at its end, before the
-- capture of the outer event (triggers fire in name order: "a_*" before
-- "redis_sync_capture").  Each change carries the command that made its row
-- version and the newest command wins a key, not the last change logged.
SET client_min_messages = warning;
CREATE TABLE tord (id int PRIMARY KEY, v text, touched int NOT NULL DEFAULT 0);
INSERT INTO tord SELECT g, 'row ' || g, 0 FROM generate_series(1, 20) g;
SELECT redis_sync.write_through('tord', key_prefix => 'tord:', warm => false);
SELECT redis_sync.warm('tord');
CREATE FUNCTION pg_temp.cached(k text, f text) RETURNS text LANGUAGE sql
  AS $$ SELECT redis_sync.command('HGET', k, f) #>> '{}' $$;

-- an AFTER UPDATE trigger counting the row's updates (a WHEN clause keeps it
-- from firing for its own UPDATE)
CREATE FUNCTION tord_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE tord SET touched = touched + 1 WHERE id = NEW.id;
  RETURN NULL;
END $$;
CREATE TRIGGER a_touch AFTER UPDATE ON tord
  FOR EACH ROW WHEN (pg_trigger_depth() < 1) EXECUTE FUNCTION tord_touch();
UPDATE tord SET v = 'one' WHERE id = 1;
SELECT pg_temp.cached('tord:1', 'v') AS v, pg_temp.cached('tord:1', 'touched') AS touched;
UPDATE tord SET v = 'many' WHERE id BETWEEN 2 AND 10;
SELECT * FROM redis_sync.verify('tord');
-- the same trigger after the capture (its name sorts last): already right
CREATE TRIGGER z_touch AFTER UPDATE ON tord
  FOR EACH ROW WHEN (pg_trigger_depth() < 1) EXECUTE FUNCTION tord_touch();
UPDATE tord SET v = 'both' WHERE id = 2;
SELECT pg_temp.cached('tord:2', 'v') AS v, pg_temp.cached('tord:2', 'touched') AS touched;
DROP TRIGGER z_touch ON tord;
-- a transaction of several statements, the row changed again later
BEGIN;
UPDATE tord SET v = 'first' WHERE id = 3;
UPDATE tord SET v = 'second' WHERE id = 3;
UPDATE tord SET touched = 100 WHERE id = 4;
COMMIT;
SELECT * FROM redis_sync.verify('tord');
DROP TRIGGER a_touch ON tord;

-- the nested statement deletes the row: the key goes
CREATE FUNCTION tord_reap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM tord WHERE id = NEW.id;
  RETURN NULL;
END $$;
CREATE TRIGGER a_reap AFTER UPDATE ON tord
  FOR EACH ROW WHEN (NEW.v = 'reap') EXECUTE FUNCTION tord_reap();
UPDATE tord SET v = 'reap' WHERE id IN (5, 6);
SELECT redis_sync.command('EXISTS', 'tord:5') AS key5, redis_sync.command('EXISTS', 'tord:6') AS key6;
DROP TRIGGER a_reap ON tord;

-- the nested statement moves the row to another key: the old key goes
CREATE FUNCTION tord_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE tord SET id = id + 1000 WHERE id = NEW.id;
  RETURN NULL;
END $$;
CREATE TRIGGER a_move AFTER UPDATE ON tord
  FOR EACH ROW WHEN (NEW.v = 'move' AND pg_trigger_depth() < 1) EXECUTE FUNCTION tord_move();
UPDATE tord SET v = 'move' WHERE id = 7;
SELECT redis_sync.command('EXISTS', 'tord:7') AS key7, pg_temp.cached('tord:1007', 'v') AS v1007;
DROP TRIGGER a_move ON tord;

-- an AFTER INSERT trigger that fills in the new row
CREATE FUNCTION tord_fill() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE tord SET v = 'filled ' || NEW.id WHERE id = NEW.id;
  RETURN NULL;
END $$;
CREATE TRIGGER a_fill AFTER INSERT ON tord FOR EACH ROW EXECUTE FUNCTION tord_fill();
INSERT INTO tord (id) VALUES (30), (31);
SELECT pg_temp.cached('tord:30', 'v') AS v30, pg_temp.cached('tord:31', 'v') AS v31;
DROP TRIGGER a_fill ON tord;
SELECT * FROM redis_sync.verify('tord');

-- a TRUNCATE after such changes drops them; rows inserted after it stay
CREATE TRIGGER a_touch AFTER UPDATE ON tord
  FOR EACH ROW WHEN (pg_trigger_depth() < 1) EXECUTE FUNCTION tord_touch();
BEGIN;
UPDATE tord SET v = 'gone' WHERE id = 8;
TRUNCATE tord;
INSERT INTO tord VALUES (8, 'back', 0), (9, 'new', 0);
UPDATE tord SET v = 'back again' WHERE id = 8;
COMMIT;
SELECT pg_temp.cached('tord:8', 'v') AS v8, pg_temp.cached('tord:8', 'touched') AS touched8,
       redis_sync.command('EXISTS', 'tord:1') AS key1;
SELECT * FROM redis_sync.verify('tord');
DROP TRIGGER a_touch ON tord;
SELECT redis_sync.unsync('tord');
DROP TABLE tord;
DROP FUNCTION tord_touch(), tord_reap(), tord_move(), tord_fill();

-- a partitioned table: the nested statement moves the row to another
-- partition and key (a DELETE in one, an INSERT in the other, both newer
-- than the outer change): the old key goes
CREATE TABLE tpart (id int, part int, v text, PRIMARY KEY (id, part)) PARTITION BY LIST (part);
CREATE TABLE tpart_1 PARTITION OF tpart FOR VALUES IN (1);
CREATE TABLE tpart_2 PARTITION OF tpart FOR VALUES IN (2);
INSERT INTO tpart SELECT g, 1, 'row ' || g FROM generate_series(1, 5) g;
SELECT redis_sync.write_through('tpart', key_prefix => 'tpart:', warm => false);
SELECT redis_sync.warm('tpart');
CREATE FUNCTION tpart_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE tpart SET part = 2, v = NEW.v || ' moved' WHERE id = NEW.id AND part = 1;
  RETURN NULL;
END $$;
CREATE TRIGGER a_move AFTER UPDATE ON tpart
  FOR EACH ROW WHEN (pg_trigger_depth() < 1) EXECUTE FUNCTION tpart_move();
UPDATE tpart SET v = 'outer' WHERE id IN (1, 2);
SELECT redis_sync.command('EXISTS', 'tpart:1:1') AS key_1_1, pg_temp.cached('tpart:1:2', 'v') AS v_1_2;
SELECT * FROM redis_sync.verify('tpart');
SELECT redis_sync.unsync('tpart');
DROP TABLE tpart;
DROP FUNCTION tpart_move();

-- a spill (past redis_sync.max_buffer_bytes, outside subtransactions) writes
-- one outbox entry per key, the newest: entries of one spill share their
-- version, and two deliverers taking two entries of one key could land the
-- older last (the worker is paused: this session delivers)
SELECT redis_sync.worker_pause();
CREATE TABLE tspill (id int PRIMARY KEY, v text, touched int NOT NULL DEFAULT 0);
CREATE TABLE tspill_filler (id int PRIMARY KEY, note text);
INSERT INTO tspill SELECT g, 'row ' || g, 0 FROM generate_series(1, 10) g;
INSERT INTO tspill_filler SELECT g, 'filler ' || g FROM generate_series(1, 3000) g;
SELECT redis_sync.write_through('tspill', key_prefix => 'tspill:', warm => false);
SELECT redis_sync.warm('tspill');
SELECT redis_sync.write_through('tspill_filler', key_prefix => 'tspf:', warm => false);
CREATE FUNCTION tspill_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE tspill SET touched = touched + 1 WHERE id = NEW.id;
  RETURN NULL;
END $$;
CREATE TRIGGER a_touch AFTER UPDATE ON tspill
  FOR EACH ROW WHEN (pg_trigger_depth() < 1) EXECUTE FUNCTION tspill_touch();
SET redis_sync.max_buffer_bytes = '64kB';
BEGIN;
UPDATE tspill_filler SET note = note || '!';
UPDATE tspill SET v = 'spilled' WHERE id = 1;
UPDATE tspill SET v = 'twice' WHERE id = 2;
UPDATE tspill SET v = 'twice again' WHERE id = 2;
COMMIT;
RESET redis_sync.max_buffer_bytes;
SELECT count(*) > 0 AS spilled, count(*) = count(DISTINCT (redis_key, version, seq)) AS one_entry_per_key
  FROM redis_sync.outbox WHERE relid IN ('tspill'::regclass, 'tspill_filler'::regclass);
SELECT redis_key, payload FROM redis_sync.outbox WHERE relid = 'tspill'::regclass ORDER BY redis_key;
SELECT redis_sync.deliver_outbox(100000) > 0 AS delivered;
SELECT pg_temp.cached('tspill:1', 'v') AS v1, pg_temp.cached('tspill:1', 'touched') AS touched1,
       pg_temp.cached('tspill:2', 'touched') AS touched2;
SELECT * FROM redis_sync.verify('tspill');
SELECT count(*) AS filler_differences FROM redis_sync.verify('tspill_filler');
-- every row of a large UPDATE touched by the trigger, spilled many times:
-- a spill waits for the trigger's statement to end (the outer row's capture
-- follows the nested one's), so no key is spilled before its outer change
INSERT INTO tspill SELECT g, 'row ' || g, 0 FROM generate_series(11, 3000) g;
SET redis_sync.max_buffer_bytes = '64kB';
UPDATE tspill SET v = 'bulk ' || id;
RESET redis_sync.max_buffer_bytes;
SELECT count(DISTINCT seq) > 2 AS several_spills,
       count(*) = count(DISTINCT (redis_key, version, seq)) AS one_entry_per_key
  FROM redis_sync.outbox WHERE relid = 'tspill'::regclass;
SELECT redis_sync.deliver_outbox(100000) > 0 AS delivered;
SELECT * FROM redis_sync.verify('tspill') LIMIT 3;
-- the same UPDATE run by a trigger of an unsynced table: every capture runs
-- inside a trigger (the outer rows' at depth 2, the touches' at 3), and a
-- spill must still wait for the outer row's capture after a nested one
CREATE TABLE tspill_cmd (n int);
CREATE FUNCTION tspill_cmd_run() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE tspill SET v = 'by trigger ' || id || ' ' || NEW.n;
  RETURN NULL;
END $$;
CREATE TRIGGER tspill_cmd_run AFTER INSERT ON tspill_cmd
  FOR EACH ROW EXECUTE FUNCTION tspill_cmd_run();
DROP TRIGGER a_touch ON tspill;
CREATE TRIGGER a_touch AFTER UPDATE ON tspill
  FOR EACH ROW WHEN (OLD.touched = NEW.touched) EXECUTE FUNCTION tspill_touch();
SET redis_sync.max_buffer_bytes = '64kB';
INSERT INTO tspill_cmd VALUES (1);
RESET redis_sync.max_buffer_bytes;
SELECT count(DISTINCT seq) > 2 AS several_spills,
       count(*) = count(DISTINCT (redis_key, version, seq)) AS one_entry_per_key
  FROM redis_sync.outbox WHERE relid = 'tspill'::regclass;
SELECT redis_sync.deliver_outbox(100000) > 0 AS delivered;
SELECT count(*) AS differences FROM redis_sync.verify('tspill');
DROP TABLE tspill_cmd;
DROP FUNCTION tspill_cmd_run();
-- the touch trigger with an exception block: its statement runs in a
-- subtransaction, where a buffer past the bound turns to per-row mode (each
-- later change to the outbox with a version of its own, the outer row's
-- after the newer nested one); the same wait keeps the buffer until the
-- outer row's capture, outside the subtransaction, which spills
CREATE OR REPLACE FUNCTION tspill_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  BEGIN
    UPDATE tspill SET touched = touched + 1 WHERE id = NEW.id;
  EXCEPTION WHEN others THEN RAISE;
  END;
  RETURN NULL;
END $$;
SET redis_sync.max_buffer_bytes = '64kB';
UPDATE tspill SET v = 'in subtransactions ' || id;
RESET redis_sync.max_buffer_bytes;
SELECT count(DISTINCT seq) > 2 AS several_spills,
       count(*) = count(DISTINCT redis_key) AS spilled_not_per_row
  FROM redis_sync.outbox WHERE relid = 'tspill'::regclass;
SELECT redis_sync.deliver_outbox(100000) > 0 AS delivered;
SELECT count(*) AS differences FROM redis_sync.verify('tspill');
SELECT redis_sync.unsync('tspill');
SELECT redis_sync.unsync('tspill_filler');
DROP TABLE tspill, tspill_filler;
DROP FUNCTION tspill_touch();
SELECT redis_sync.worker_resume();
