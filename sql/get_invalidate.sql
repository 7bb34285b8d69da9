-- get() on an invalidate table: a miss reads the row FOR SHARE and caches it
-- (a hash of all its columns) with a fenced version, so a write committed
-- after the read always invalidates it again.  The configuration lists no
-- columns: what is cached follows the table's columns at each miss.
CREATE TABLE gi (id int PRIMARY KEY, body text, n int);
SELECT redis_sync.invalidate('gi', key_prefix => 'gi:');
SELECT columns FROM redis_sync.tables WHERE relid = 'gi'::regclass;
INSERT INTO gi VALUES (1, 'one', 1), (2, NULL, 2);
SELECT redis_sync.stats_reset();
-- writes cache nothing
SELECT redis_sync.command('EXISTS', 'gi:1');
-- a miss: the table's row, now cached
SELECT * FROM redis_sync.get(NULL::gi, '1');
SELECT redis_sync.command('HGETALL', 'gi:1');
SELECT length(redis_sync.command('GET', '{gi:1}:rs_version') #>> '{}') AS version_length;
-- a hit
SELECT * FROM redis_sync.get(NULL::gi, '1');
SELECT hits, misses FROM redis_sync.stats WHERE "table" = 'gi'::regclass;
-- a write invalidates again
UPDATE gi SET body = 'uno' WHERE id = 1;
SELECT redis_sync.command('EXISTS', 'gi:1');
-- the next miss caches the new row, although the invalidation left a tombstone
SELECT * FROM redis_sync.get(NULL::gi, '1');
SELECT redis_sync.command('HGET', 'gi:1', 'body');
-- a populate never replaces a newer write: with a newer version stored (after
-- the INSERT's own push: a pre-commit push sets its version), the key stays away
INSERT INTO gi VALUES (9, 'nine', 9);
SELECT redis_sync.command('SET', '{gi:9}:rs_version', 'FFFFFFFFFFFFFFFFFFFFFFFF');
SELECT * FROM redis_sync.get(NULL::gi, '9');
SELECT redis_sync.command('EXISTS', 'gi:9');
SELECT redis_sync.command('DEL', '{gi:9}:rs_version');
-- NULL columns come back NULL
SELECT * FROM redis_sync.get(NULL::gi, '2');
SELECT * FROM redis_sync.get(NULL::gi, '2');
SELECT redis_sync.command('HGETALL', 'gi:2');
-- no row: NULL, nothing cached
SELECT * FROM redis_sync.get(NULL::gi, '3');
SELECT redis_sync.command('EXISTS', 'gi:3');
-- a delete invalidates
DELETE FROM gi WHERE id = 1;
SELECT redis_sync.command('EXISTS', 'gi:1');
SELECT * FROM redis_sync.get(NULL::gi, '1');
-- a key change invalidates both keys
SELECT * FROM redis_sync.get(NULL::gi, '2');
UPDATE gi SET id = 4 WHERE id = 2;
SELECT redis_sync.command('EXISTS', 'gi:2'), redis_sync.command('EXISTS', 'gi:4');
SELECT * FROM redis_sync.get(NULL::gi, '4');
-- the cache is cleared with the table
TRUNCATE gi;
SELECT redis_sync.command('EXISTS', 'gi:4');
SELECT * FROM redis_sync.get(NULL::gi, '4');
-- the cached hash holds the columns the table has at the miss: a column
-- added later is cached from the next miss on
ALTER TABLE gi ADD COLUMN extra text DEFAULT 'x';
INSERT INTO gi VALUES (5, 'five', 5);
SELECT * FROM redis_sync.get(NULL::gi, '5');
SELECT * FROM redis_sync.get(NULL::gi, '5');
SELECT redis_sync.command('HGET', 'gi:5', 'extra');
-- dropping or renaming columns never breaks writes or reads
ALTER TABLE gi DROP COLUMN n;
ALTER TABLE gi RENAME COLUMN body TO text_body;
UPDATE gi SET text_body = 'cinq' WHERE id = 5;
SELECT redis_sync.command('EXISTS', 'gi:5');
SELECT * FROM redis_sync.get(NULL::gi, '5');
SELECT * FROM redis_sync.get(NULL::gi, '5');
SELECT redis_sync.command('HGETALL', 'gi:5');
SELECT redis_sync.unsync('gi', purge => true);
DROP TABLE gi;
