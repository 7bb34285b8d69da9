-- wb_keyed: a table with one integer key is drained by an UPDATE that finds
-- its rows by "key = ANY (keys)" and picks each row's values at its key's
-- position among the sorted keys (wb_apply.c, update_keyed), with the key
-- and the values of built-in by-value types passed as their types,
-- converted in C by their input functions (wb_decode.c); what it writes, and
-- what goes to dead letters, is what the join of the members wrote
\set SHOW_CONTEXT never
CREATE TABLE wk (id int PRIMARY KEY, n bigint, s smallint, flag bool, d date, f float8,
                 name varchar(3), note text);
INSERT INTO wk SELECT g, 0, 0, false, '2000-01-01', 0, 'r' || g, 'row ' || g FROM generate_series(1, 6) g;
SELECT redis_sync.write_behind('wk', flush_interval => '1 h', key_prefix => 'wk:');
-- existing rows, new rows, and members that cannot be written, in one batch
SELECT redis_sync.command('HSET', 'wk:1', 'n', '9000000000', 's', '-7', 'flag', 'true', 'd', '2026-01-02',
                          'f', '1.5', 'name', 'one', 'note', 'first'),
       redis_sync.command('HSET', 'wk:2', 'n', '-42', 'flag', 'f', 'f', '-0.25e3'),
       redis_sync.command('HSET', 'wk:3', 'n', 'abc'),
       redis_sync.command('HSET', 'wk:4', 'name', 'four'),
       redis_sync.command('HSET', 'wk:5', 's', '40000'),
       redis_sync.command('HSET', 'wk:6', 'n', ' 0012 ', 's', '+3', 'd', 'epoch'),
       redis_sync.command('HSET', 'wk:9', 'n', '9', 'name', 'new', 'note', 'inserted'),
       redis_sync.command('HSET', 'wk:-3', 'n', '-3'),
       redis_sync.command('HSET', 'wk:007', 'n', '7'),
       redis_sync.command('HSET', 'wk:-0', 'n', '0'),
       redis_sync.command('HSET', 'wk:+8', 'n', '8'),
       redis_sync.command('HSET', 'wk:2147483648', 'n', '1');
SELECT redis_sync.command('SADD', 'wk:dirty', '1', '2', '3', '4', '5', '6', '9', '-3', '007', '-0', '+8', '2147483648');
SELECT redis_sync.flush('wk');
SELECT * FROM wk ORDER BY id;
SELECT member, sqlstate, error FROM redis_sync.dead_letters WHERE relid = 'wk'::regclass ORDER BY member;
SELECT redis_sync.discard_dead_letters('wk');
-- the NULL marker writes NULL into a column passed as its type and into text
SELECT redis_sync.hset('wk', '1', 'n', NULL), redis_sync.hset('wk', '1', 'note', NULL),
       redis_sync.hset('wk', '2', 'n', '2');
SELECT redis_sync.flush('wk');
SELECT id, n, note FROM wk WHERE id IN (1, 2) ORDER BY id;

-- many keys, far apart and negative: each value lands on its own row
INSERT INTO wk (id, n) SELECT g * 37 - 5000, 0 FROM generate_series(1, 300) g;
SELECT count(*) FROM (
  SELECT redis_sync.command('HSET', 'wk:' || (g * 37 - 5000), 'n', (g * 37 - 5000)::text || '0'),
         redis_sync.command('SADD', 'wk:dirty', (g * 37 - 5000)::text)
    FROM generate_series(1, 300) g) s;
SELECT redis_sync.flush('wk');
SELECT count(*) AS rows_written FROM wk WHERE id NOT IN (1, 2, 4, 5, 6, 9, -3) AND n = id * 10;

-- a trigger that changes the key as the row is updated: the members'
-- rows are each written once, no member is inserted again
CREATE FUNCTION wk_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.id BETWEEN 1 AND 2 THEN NEW.id := NEW.id + 1000; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER wk_move BEFORE UPDATE ON wk FOR EACH ROW EXECUTE FUNCTION wk_move();
SELECT redis_sync.command('HSET', 'wk:1', 'n', '101'), redis_sync.command('HSET', 'wk:2', 'n', '102'),
       redis_sync.command('HSET', 'wk:9', 'n', '109');
SELECT redis_sync.command('SADD', 'wk:dirty', '1', '2', '9');
SELECT redis_sync.flush('wk');
SELECT id, n FROM wk WHERE id IN (1, 2, 9, 1001, 1002) ORDER BY id;
DROP TRIGGER wk_move ON wk;
DROP FUNCTION wk_move();
SELECT redis_sync.unsync('wk', purge => true);
DROP TABLE wk;

-- smallint and bigint keys
CREATE TABLE wk2 (id smallint PRIMARY KEY, v int);
CREATE TABLE wk8 (id bigint PRIMARY KEY, v int);
INSERT INTO wk2 VALUES (-2, 0), (5, 0);
INSERT INTO wk8 VALUES (-9000000000, 0), (9000000000, 0);
SELECT redis_sync.write_behind('wk2', flush_interval => '1 h', key_prefix => 'wk2:');
SELECT redis_sync.write_behind('wk8', flush_interval => '1 h', key_prefix => 'wk8:');
SELECT redis_sync.command('HSET', 'wk2:-2', 'v', '1'), redis_sync.command('HSET', 'wk2:5', 'v', '2'),
       redis_sync.command('HSET', 'wk2:7', 'v', '3'), redis_sync.command('HSET', 'wk2:99999', 'v', '4'),
       redis_sync.command('HSET', 'wk8:-9000000000', 'v', '5'), redis_sync.command('HSET', 'wk8:9000000000', 'v', '6'),
       redis_sync.command('HSET', 'wk8:12345678901234567890', 'v', '7');
SELECT redis_sync.command('SADD', 'wk2:dirty', '-2', '5', '7', '99999'),
       redis_sync.command('SADD', 'wk8:dirty', '-9000000000', '9000000000', '12345678901234567890');
SELECT redis_sync.flush('wk2') >= 0 AS flushed;
SELECT redis_sync.flush('wk8') >= 0 AS flushed;
SELECT * FROM wk2 ORDER BY id;
SELECT * FROM wk8 ORDER BY id;
SELECT member, sqlstate, error FROM redis_sync.dead_letters WHERE relid IN ('wk2'::regclass, 'wk8'::regclass) ORDER BY member;
SELECT redis_sync.discard_dead_letters();
SELECT redis_sync.unsync('wk2', purge => true), redis_sync.unsync('wk8', purge => true);
DROP TABLE wk2, wk8;
