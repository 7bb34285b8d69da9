-- logical-replication subscribers apply changes with session_replication_role
-- = replica, which skips ordinary triggers: without replica => true such
-- changes are not pushed; with it the capture triggers fire ALWAYS
CREATE TABLE rp (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('rp', key_prefix => 'rp:');
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'rp'::regclass ORDER BY 1;
SET session_replication_role = replica;
INSERT INTO rp VALUES (1, 'a');
SELECT redis_sync.command('EXISTS', 'rp:1');
RESET session_replication_role;
SELECT redis_sync.write_through('rp', key_prefix => 'rp:', replica => true, warm => false);
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'rp'::regclass ORDER BY 1;
SET session_replication_role = replica;
UPDATE rp SET v = 'b' WHERE id = 1;
INSERT INTO rp VALUES (2, 'c'), (3, 'd');
DELETE FROM rp WHERE id = 3;
SELECT redis_sync.command('HGET', 'rp:1', 'v'), redis_sync.command('HGET', 'rp:2', 'v'),
       redis_sync.command('EXISTS', 'rp:3');
-- rolled back: nothing pushed, as always
BEGIN; UPDATE rp SET v = 'rolled back'; ROLLBACK;
SELECT redis_sync.command('HGET', 'rp:1', 'v');
TRUNCATE rp;
SELECT redis_sync.command('EXISTS', 'rp:1'), redis_sync.command('EXISTS', 'rp:2');
RESET session_replication_role;
-- origin sessions are unaffected
INSERT INTO rp VALUES (4, 'e');
SELECT redis_sync.command('HGET', 'rp:4', 'v');
-- syncing again without replica => true turns it off
SELECT redis_sync.write_through('rp', key_prefix => 'rp:', warm => false);
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'rp'::regclass ORDER BY 1;

-- invalidate tables
CREATE TABLE rpi (id int PRIMARY KEY, v text);
SELECT redis_sync.invalidate('rpi', key_prefix => 'rpi:', replica => true);
INSERT INTO rpi VALUES (1, 'a');
SELECT (redis_sync.get(NULL::rpi, '1')).v;
SET session_replication_role = replica;
UPDATE rpi SET v = 'b';
SELECT redis_sync.command('EXISTS', 'rpi:1');
RESET session_replication_role;

-- partitioned tables: partitions, including ones created later, follow
CREATE TABLE rpp (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE rpp1 PARTITION OF rpp FOR VALUES FROM (0) TO (100);
SELECT redis_sync.write_through('rpp', key_prefix => 'rpp:', replica => true);
CREATE TABLE rpp2 PARTITION OF rpp FOR VALUES FROM (100) TO (200);
SELECT tgrelid::regclass, tgname, tgenabled FROM pg_trigger
 WHERE tgrelid IN (SELECT relid FROM pg_partition_tree('rpp')) AND tgname LIKE 'redis\_sync\_%'
 ORDER BY 1, 2;
SET session_replication_role = replica;
INSERT INTO rpp VALUES (1, 'x'), (150, 'y');
SELECT redis_sync.command('HGET', 'rpp:1', 'v'), redis_sync.command('HGET', 'rpp:150', 'v');
-- truncating one partition is refused, as in any session (see README)
TRUNCATE rpp2;
TRUNCATE rpp;
SELECT redis_sync.command('EXISTS', 'rpp:1'), redis_sync.command('EXISTS', 'rpp:150');
RESET session_replication_role;

SELECT redis_sync.unsync(t, purge => true) FROM unnest(ARRAY['rp', 'rpi', 'rpp']::regclass[]) t;
DROP TABLE rp, rpi, rpp;
