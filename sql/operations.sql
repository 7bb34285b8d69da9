-- read-through get(), verify(), resync()
\set SHOW_CONTEXT never
CREATE TABLE ops (id int PRIMARY KEY, name text, price numeric(8,2), secret text);
SELECT redis_sync.write_through('ops', key_prefix => 'ops:', columns => '{id,name,price}');
INSERT INTO ops VALUES (1, 'one', 1.5, 's1'), (2, 'two', 2, 's2'), (3, 'three', NULL, 's3');
SELECT redis_sync.stats_reset();

-- hit: the cached row, decoded through the column types (unsynced columns are NULL)
SELECT * FROM redis_sync.get(NULL::ops, '1');
-- miss: read the table, populate the cache, return the row
SELECT redis_sync.command('DEL', 'ops:2');
SELECT * FROM redis_sync.get(NULL::ops, '2');
SELECT h('ops:2');
-- a missing row is NULL
SELECT * FROM redis_sync.get(NULL::ops, '999');
SELECT redis_sync.get(NULL::ops, '999') IS NULL AS is_null;
SELECT hits, misses FROM redis_sync.stats WHERE "table" = 'ops'::regclass;
-- errors
SELECT redis_sync.get(NULL::ops, '1', '2');
SELECT redis_sync.get(NULL::ops, NULL);
SELECT redis_sync.get(1, '1');
CREATE TABLE ops_plain (id int PRIMARY KEY);
SELECT redis_sync.get(NULL::ops_plain, '1');

-- json format and composite keys
CREATE TABLE ops_json (a text, b int, v jsonb, PRIMARY KEY (a, b));
SELECT redis_sync.write_through('ops_json', key_prefix => 'oj:', format => 'json');
INSERT INTO ops_json VALUES ('x', 1, '{"k": [1, 2]}');
SELECT * FROM redis_sync.get(NULL::ops_json, 'x', '1');
SELECT redis_sync.command('DEL', 'oj:x:1');
SELECT * FROM redis_sync.get(NULL::ops_json, 'x', '1');
SELECT redis_sync.command('GET', 'oj:x:1');

-- warm pushes every row
SELECT redis_sync.command('DEL', 'ops:1', 'ops:2', 'ops:3');
SELECT redis_sync.warm('ops');
SELECT h('ops:1'), h('ops:3');

-- verify: nothing to report when in step
SELECT * FROM redis_sync.verify('ops');
-- inject each kind of difference
SELECT redis_sync.command('DEL', 'ops:1');                       -- missing in cache
SELECT redis_sync.command('HSET', 'ops:2', 'price', '99.00');    -- different value
SELECT redis_sync.command('HSET', 'ops:7', 'name', 'ghost');     -- extra in cache
SELECT redis_sync.command('HSET', 'ops:3', 'view_count', '5');   -- a field outside the synced columns is fine
SELECT * FROM redis_sync.verify('ops') ORDER BY key;
SELECT count(*) FROM redis_sync.verify('ops', sample => 3);   -- a sample never looks for extra keys
SELECT * FROM redis_sync.verify('ops', sample => 0);
-- resync repairs them; verify is then empty
SELECT redis_sync.resync('ops');
SELECT * FROM redis_sync.verify('ops');
SELECT h('ops:1'), h('ops:2'), redis_sync.command('EXISTS', 'ops:7');
-- a hash's fields are matched by name, in whatever order they were written;
-- a NULL column has no field, and a column's field must be there
SELECT redis_sync.command('DEL', 'ops:1');
SELECT redis_sync.command('HSET', 'ops:1', 'price', '1.50', 'name', 'one', 'id', '1');
SELECT redis_sync.command('HSET', 'ops:3', 'price', '0.00');
SELECT redis_sync.command('HDEL', 'ops:2', 'name');
SELECT key, problem FROM redis_sync.verify('ops') ORDER BY key;
SELECT redis_sync.resync('ops');
-- names and values compare byte for byte: a field "name\0x" is not the
-- column name, and a value with a NUL byte is not the row's
SELECT redis_sync.command('EVAL', $l$redis.call('HSET', 'ops:1', 'name\0x', 'junk') return 1$l$, '0');
SELECT redis_sync.command('EVAL', $l$redis.call('HSET', 'ops:2', 'name\0x', 'two', 'name', 'WRONG') return 1$l$, '0');
SELECT redis_sync.command('EVAL', $l$redis.call('HSET', 'ops:3', 'name', 'three\0garbage') return 1$l$, '0');
SELECT key, problem FROM redis_sync.verify('ops') ORDER BY key;
SELECT redis_sync.resync('ops');
SELECT key, problem FROM redis_sync.verify('ops') ORDER BY key;
-- the same with more than 64 synced columns
DO $$ BEGIN
  EXECUTE 'CREATE TABLE ops_wide (id int PRIMARY KEY, '
          || (SELECT string_agg(format('c%s text', g), ', ') FROM generate_series(1, 70) g) || ')';
END $$;
SELECT redis_sync.write_through('ops_wide', key_prefix => 'ow:');
INSERT INTO ops_wide (id, c1, c70) VALUES (1, 'a', 'z'), (2, 'b', NULL), (3, 'c', NULL);
SELECT * FROM redis_sync.verify('ops_wide');
SELECT redis_sync.command('HSET', 'ow:1', 'c70', 'changed');
SELECT redis_sync.command('HSET', 'ow:2', 'c5', 'x');
SELECT redis_sync.command('HSET', 'ow:3', 'other', 'x');
SELECT key, problem FROM redis_sync.verify('ops_wide') ORDER BY key;
SELECT redis_sync.unsync('ops_wide', purge => true);
DROP TABLE ops_wide;
-- json tables too
SELECT redis_sync.command('SET', 'oj:x:1', '{"a": "x", "b": 1, "v": {"k": "changed"}}');
SELECT key, problem FROM redis_sync.verify('ops_json');
SELECT redis_sync.resync('ops_json');
SELECT * FROM redis_sync.verify('ops_json');

-- write-behind: dirty keys not yet applied are pending, not errors
CREATE TABLE ops_wb (id int PRIMARY KEY, n int);
INSERT INTO ops_wb VALUES (1, 1), (2, 2);
SELECT redis_sync.write_behind('ops_wb', key_prefix => 'ow:', flush_interval => '1 h');
SELECT redis_sync.command('HSET', 'ow:1', 'n', '1');
SELECT redis_sync.command('HSET', 'ow:2', 'n', '20');
SELECT redis_sync.command('SADD', 'ow:dirty', '2');
SELECT redis_sync.command('HSET', 'ow:3', 'n', '3');
SELECT redis_sync.command('SADD', 'ow:dirty', '3');
SELECT * FROM redis_sync.verify('ops_wb') ORDER BY key;
SELECT redis_sync.flush('ops_wb');
SELECT * FROM redis_sync.verify('ops_wb') ORDER BY key;
SELECT redis_sync.resync('ops_wb');
CREATE TABLE ops_inv (id int PRIMARY KEY);
SELECT redis_sync.invalidate('ops_inv');
SELECT * FROM redis_sync.verify('ops_inv');

DROP TABLE ops, ops_plain, ops_json, ops_wb, ops_inv;

-- a key value equal by the column's = but not by its text (numeric 1.00 and
-- 1.0): the row is pushed under its own key, the key asked for is deleted,
-- and the row's key stays (a repair sized its pushes by the keys asked for,
-- and wrote past them: crashes, and the row's key deleted)
CREATE TABLE ops_num (id numeric PRIMARY KEY, v int);
SELECT redis_sync.write_through('ops_num', key_prefix => 'onum:');
INSERT INTO ops_num SELECT (g || '.0')::numeric, g FROM generate_series(1, 3000) g;
SELECT redis_sync.command('HSET', 'onum:1.00', 'id', '1.00', 'v', '1');
SELECT key, problem FROM redis_sync.verify('ops_num');
SELECT redis_sync.resync('ops_num');
SELECT count(*) AS differences FROM redis_sync.verify('ops_num');
SELECT redis_sync.command('EXISTS', 'onum:1.0') AS row_key, redis_sync.command('EXISTS', 'onum:1.00') AS stray;
-- 3,000 keys in batches of 1,000, each naming a row under another key
SELECT redis_sync._push_keys('ops_num', array_agg('onum:' || g || '.00')) FROM generate_series(1, 3000) g;
SELECT count(*) AS differences FROM redis_sync.verify('ops_num');
-- get() of such a key: the row, and its key left in place
SELECT (redis_sync.get(NULL::ops_num, '3.00')).v;
SELECT redis_sync.command('EXISTS', 'onum:3.0') AS row_key;
SELECT count(*) AS differences FROM redis_sync.verify('ops_num');
-- repairs read the rows as they are now: not under a transaction snapshot
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT redis_sync.resync('ops_num');
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT redis_sync._push_keys('ops_num', '{onum:1.0}');
ROLLBACK;
SELECT redis_sync.unsync('ops_num', purge => true);
DROP TABLE ops_num;
