-- large batches and chunks: Lua's unpack() limit must not break claims,
-- MGET or MSET (they go in slices of 1000)
CREATE TABLE big_wb (id int PRIMARY KEY, n int);
SELECT redis_sync.write_behind('big_wb', key_prefix => 'bigwb:', flush_interval => '1 h', batch_size => 20000);
SELECT redis_sync.command('EVAL',
  'for i = 1, 12000 do redis.call(''HSET'', ''bigwb:'' .. i, ''n'', i); redis.call(''SADD'', ''bigwb:dirty'', i) end return 1', '0');
SELECT redis_sync.flush('big_wb');
SELECT count(*), sum(n) FROM big_wb;
SELECT redis_sync.command('SCARD', 'bigwb:dirty'), redis_sync.command('SCARD', '{bigwb:dirty}:rs_processing');

CREATE TABLE big_wt (id int PRIMARY KEY, v int);
SELECT redis_sync.write_through('big_wt', key_prefix => 'bigwt:');
SET redis_sync.chunk_size = 20000;
INSERT INTO big_wt SELECT g, g FROM generate_series(1, 12000) g;
UPDATE big_wt SET v = v + 1;
DELETE FROM big_wt WHERE id > 11000;
RESET redis_sync.chunk_size;
SELECT count(*) FROM redis_sync.verify('big_wt');
SELECT redis_sync.command('HGET', 'bigwt:12', 'v'), redis_sync.command('EXISTS', 'bigwt:11500');

-- a drain that fails is reported by flush(), and retried (here the dirty
-- set is not a set)
SELECT redis_sync.command('SET', 'bigwb:dirty', 'not a set');
\set VERBOSITY terse
-- (its DETAIL, the table's last_error, names Redis's port)
SELECT redis_sync.flush('big_wb');
\set VERBOSITY default
SELECT drain_retries > 0 AS retried, last_error IS NOT NULL AS has_error
  FROM redis_sync.stats WHERE "table" = 'big_wb'::regclass;
-- flush() of another table does not warn about big_wb's failing drain
-- (the forced round retries big_wb and fails again); flush() of every
-- table does
CREATE TABLE ok_wb (id int PRIMARY KEY, n int);
SELECT redis_sync.write_behind('ok_wb', key_prefix => 'okwb:', flush_interval => '1 h');
SELECT redis_sync.command('HSET', 'okwb:1', 'n', '5'), redis_sync.command('SADD', 'okwb:dirty', '1');
SELECT redis_sync.flush('ok_wb');
SELECT * FROM ok_wb;
SELECT redis_sync.flush();
SELECT redis_sync.command('DEL', 'bigwb:dirty');
SELECT redis_sync.flush('big_wb');
DROP TABLE big_wb, big_wt, ok_wb;
