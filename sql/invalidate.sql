-- invalidate (cache-aside): every committed change deletes the cached row
CREATE TABLE inv (id int PRIMARY KEY, body text, n int);
SELECT redis_sync.invalidate('inv', key_prefix => 'inv:');
SELECT policy, key_prefix, key_columns, columns, consistency FROM redis_sync.tables WHERE relid = 'inv'::regclass;
INSERT INTO inv VALUES (1, 'one', 1), (2, 'two', 2);
-- a reader populated the cache
SELECT redis_sync.command('SET', 'inv:1', 'cached one');
SELECT redis_sync.command('SET', 'inv:2', 'cached two');
UPDATE inv SET n = 10 WHERE id = 1;
SELECT redis_sync.command('EXISTS', 'inv:1'), redis_sync.command('EXISTS', 'inv:2');
-- rollback deletes nothing
SELECT redis_sync.command('SET', 'inv:1', 'cached again');
BEGIN; UPDATE inv SET n = 11 WHERE id = 1; ROLLBACK;
SELECT redis_sync.command('GET', 'inv:1');
-- an UPDATE that changes nothing deletes nothing
UPDATE inv SET n = n WHERE id = 1;
SELECT redis_sync.command('GET', 'inv:1');
-- key change deletes both keys
SELECT redis_sync.command('SET', 'inv:3', 'stale three');
UPDATE inv SET id = 3 WHERE id = 2;
SELECT redis_sync.command('EXISTS', 'inv:2'), redis_sync.command('EXISTS', 'inv:3');
DELETE FROM inv WHERE id = 1;
SELECT redis_sync.command('EXISTS', 'inv:1');
-- a late populate older than the invalidation is fenced out by the tombstone
SELECT redis_sync.command('EXISTS', '{inv:1}:rs_version');
TRUNCATE inv;
-- switching to write_through replaces the invalidate policy
SELECT redis_sync.write_through('inv', key_prefix => 'inv:');
SELECT policy FROM redis_sync.tables WHERE relid = 'inv'::regclass;
INSERT INTO inv VALUES (5, 'five', 5);
SELECT redis_sync.command('HGET', 'inv:5', 'body');
SELECT redis_sync.invalidate('inv', key_prefix => 'inv:');
SELECT policy FROM redis_sync.tables WHERE relid = 'inv'::regclass;
UPDATE inv SET n = 6;
SELECT redis_sync.command('EXISTS', 'inv:5');
DROP TABLE inv;
