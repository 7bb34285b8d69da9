-- write-behind: the worker drains Redis dirty sets into tables
-- (flush_interval is an hour so only redis_sync.flush() drains: the output is deterministic)
\set SHOW_CONTEXT never
CREATE TABLE product_stats (id int PRIMARY KEY, view_count bigint NOT NULL DEFAULT 0,
                            likes int CHECK (likes >= 0), note text);
SELECT redis_sync.write_behind('product_stats', flush_interval => '1 h', key_prefix => 'stats:', columns => '{view_count,likes}');
SELECT relid, policy, key_prefix, dirty_set, key_columns, columns, format, flush_interval, batch_size, on_missing
  FROM redis_sync.tables WHERE relid = 'product_stats'::regclass;

-- the view-counter scenario: two HINCRBY + SADD, then flush
SELECT redis_sync.command('HINCRBY', 'stats:42', 'view_count', '1');
SELECT redis_sync.command('SADD', 'stats:dirty', '42');
SELECT redis_sync.command('HINCRBY', 'stats:42', 'view_count', '1');
SELECT redis_sync.command('SADD', 'stats:dirty', '42');
SELECT redis_sync.flush('product_stats');
SELECT * FROM product_stats;
SELECT redis_sync.command('SCARD', 'stats:dirty'), redis_sync.command('SCARD', '{stats:dirty}:rs_processing');

-- coalescing: three HSETs of one key between drains are one row write
SELECT redis_sync.stats_reset();
SELECT redis_sync.command('HSET', 'stats:42', 'likes', '1');
SELECT redis_sync.command('SADD', 'stats:dirty', '42');
SELECT redis_sync.command('HSET', 'stats:42', 'likes', '2');
SELECT redis_sync.command('SADD', 'stats:dirty', '42');
SELECT redis_sync.command('HSET', 'stats:42', 'likes', '3');
SELECT redis_sync.command('SADD', 'stats:dirty', '42');
SELECT redis_sync.flush('product_stats');
SELECT claimed, applied, batches FROM redis_sync.stats WHERE "table" = 'product_stats'::regclass;
SELECT likes FROM product_stats WHERE id = 42;

-- an absent field leaves its column as it is; unknown fields are ignored and counted
SELECT redis_sync.command('HDEL', 'stats:42', 'likes');
SELECT redis_sync.command('HSET', 'stats:42', 'color', 'red');
SELECT redis_sync.command('SADD', 'stats:dirty', '42');
SELECT redis_sync.flush('product_stats');
SELECT id, view_count, likes FROM product_stats WHERE id = 42;
SELECT unknown_fields FROM redis_sync.stats WHERE "table" = 'product_stats'::regclass;

-- bad values go to dead letters; good rows of the same batch are applied
SELECT redis_sync.command('HSET', 'stats:1', 'view_count', '10');
SELECT redis_sync.command('HSET', 'stats:2', 'view_count', 'not a number');
SELECT redis_sync.command('HSET', 'stats:3', 'view_count', '30', 'likes', '-1');
SELECT redis_sync.command('HSET', 'stats:4', 'likes', '4');
SELECT redis_sync.command('HSET', 'stats:5', 'view_count', '99999999999999999999');
SELECT redis_sync.command('SADD', 'stats:dirty', '1', '2', '3', '4', '5', 'x');
SELECT redis_sync.command('SET', 'stats:x', 'a string, not a hash');
SELECT redis_sync.flush('product_stats');
SELECT id, view_count, likes FROM product_stats ORDER BY id;
SELECT relid, redis_key, member, raw_value, error, sqlstate, attempts
  FROM redis_sync.dead_letters ORDER BY member;
SELECT dead FROM redis_sync.stats WHERE "table" = 'product_stats'::regclass;
-- a dead letter seen again counts an attempt; fixed in Redis, a retry applies it
SELECT redis_sync.command('SADD', 'stats:dirty', '2');
SELECT redis_sync.flush('product_stats');
SELECT member, attempts FROM redis_sync.dead_letters WHERE member = '2';
SELECT redis_sync.command('HSET', 'stats:2', 'view_count', '20');
SELECT redis_sync.retry_dead_letters('product_stats');
SELECT redis_sync.flush('product_stats');
SELECT id, view_count FROM product_stats WHERE id = 2;
SELECT member FROM redis_sync.dead_letters ORDER BY member;
SELECT redis_sync.discard_dead_letters('product_stats', 'x');
SELECT redis_sync.discard_dead_letters('product_stats');
SELECT count(*) FROM redis_sync.dead_letters;

-- on_missing: a dirty member whose hash is gone
SELECT redis_sync.command('SADD', 'stats:dirty', '1');
SELECT redis_sync.command('DEL', 'stats:1');
SELECT redis_sync.flush('product_stats');
SELECT count(*) FROM product_stats WHERE id = 1;           -- ignore: the row stays
SELECT redis_sync.write_behind('product_stats', flush_interval => '1 h', key_prefix => 'stats:', columns => '{view_count,likes}',
                               on_missing => 'delete');
SELECT redis_sync.command('SADD', 'stats:dirty', '1');
SELECT redis_sync.flush('product_stats');
SELECT count(*) FROM product_stats WHERE id = 1;           -- delete: the row goes

-- the drain's writes are not echoed by triggers, and run as the table owner
SELECT redis_sync.command('HGETALL', 'stats:42');

-- hincrby seeds a key Redis lost from the table, so a counter never restarts at zero
SELECT redis_sync.write_behind('product_stats', flush_interval => '1 h', key_prefix => 'stats:', columns => '{view_count,likes}',
                               counters => '{view_count}');
UPDATE product_stats SET view_count = 97, likes = 5 WHERE id = 42;
SELECT redis_sync.command('DEL', 'stats:42');
SELECT redis_sync.hincrby('product_stats', '42', 'view_count', 1);
SELECT redis_sync.command('HGETALL', 'stats:42');
SELECT redis_sync.flush('product_stats');
SELECT view_count, likes FROM product_stats WHERE id = 42;
SELECT redis_sync.hset('product_stats', '42', 'likes', '6');
SELECT redis_sync.hset('product_stats', '42', 'likes', NULL);
-- hset(NULL) writes the NULL marker, a field of one NUL byte
SELECT redis_sync.command('HGET', 'stats:42', 'view_count'), redis_sync.command('HSTRLEN', 'stats:42', 'likes');
SELECT redis_sync.flush('product_stats');
SELECT view_count, likes FROM product_stats WHERE id = 42;
-- a counter key created from nothing (Redis lost it) is applied as an increment
SELECT redis_sync.command('DEL', 'stats:42', '{stats:42}:rs_seeded');
SELECT redis_sync.command('HINCRBY', 'stats:42', 'view_count', '1');
SELECT redis_sync.command('HINCRBY', 'stats:42', 'view_count', '1');
SELECT redis_sync.command('HINCRBY', 'stats:42', 'view_count', '1');
SELECT redis_sync.command('SADD', 'stats:dirty', '42');
SELECT redis_sync.flush('product_stats');
SELECT view_count FROM product_stats WHERE id = 42;
SELECT redis_sync.command('HGET', 'stats:42', 'view_count');
SELECT redis_sync.hincrby('product_stats', '42', 'likes', 1);
SELECT redis_sync.hincrby('product_stats', '42', 'nope', 1);
SELECT redis_sync.hincrby('product_stats', '42:1', 'view_count', 1);

-- composite keys: the member is the key values joined with ':'
CREATE TABLE tenant_counts (tenant text, day date, hits int, PRIMARY KEY (tenant, day));
SELECT redis_sync.write_behind('tenant_counts', flush_interval => '1 h', key_prefix => 'tc:');
SELECT redis_sync.command('HSET', 'tc:acme:2026-01-02', 'hits', '5');
SELECT redis_sync.command('SADD', 'tc:dirty', 'acme:2026-01-02', 'only-one-part');
SELECT redis_sync.command('HSET', 'tc:only-one-part', 'hits', '1');
SELECT redis_sync.flush('tenant_counts');
SELECT * FROM tenant_counts;
SELECT member, error FROM redis_sync.dead_letters;
SELECT redis_sync.discard_dead_letters();

-- string format: one column, as in INCR viewcount:42 + SADD dirty-wb_products 42
CREATE TABLE views (id int PRIMARY KEY, n bigint);
SELECT redis_sync.write_behind('views', flush_interval => '1 h', key_prefix => 'viewcount:', dirty_set => 'dirty-wb_products',
                               format => 'string', columns => '{n}');
SELECT redis_sync.command('INCR', 'viewcount:42');
SELECT redis_sync.command('INCR', 'viewcount:42');
SELECT redis_sync.command('SADD', 'dirty-wb_products', '42');
SELECT redis_sync.flush('views');
SELECT * FROM views;

-- json format: the key holds a JSON object of the columns
CREATE TABLE sessions (sid text PRIMARY KEY, user_id int, data jsonb, seen timestamptz);
SELECT redis_sync.write_behind('sessions', flush_interval => '1 h', key_prefix => 'sess:', format => 'json',
                               dirty_set => 'sess-dirty');  -- text keys: outside the prefix
SELECT redis_sync.command('SET', 'sess:abc', '{"user_id": 7, "data": {"cart": [1, 2]}, "seen": "2026-01-01 10:00:00+00"}');
SELECT redis_sync.command('SET', 'sess:bad', '{not json');
SELECT redis_sync.command('SADD', 'sess-dirty', 'abc', 'bad');
SELECT redis_sync.flush('sessions');
SELECT sid, user_id, data, seen AT TIME ZONE 'UTC' AS seen FROM sessions;
SELECT member, sqlstate FROM redis_sync.dead_letters;
SELECT redis_sync.discard_dead_letters();

-- configuration errors
SELECT redis_sync.write_behind('views', flush_interval => '1 h', format => 'string', columns => '{id,n}');
SELECT redis_sync.write_behind('sessions', flush_interval => '1 h', key_prefix => 'sess:', format => 'string');
SELECT redis_sync.write_behind('tenant_counts', flush_interval => '1 h', key_prefix => 'tc:', columns => '{tenant,hits}');
SELECT redis_sync.write_behind('views', key_prefix => 'viewcount:', flush_interval => '0 s');
SELECT redis_sync.write_behind('views', flush_interval => '1 h', key_prefix => 'viewcount:', batch_size => 0);
SELECT redis_sync.write_behind('views', flush_interval => '1 h', key_prefix => 'viewcount:', on_missing => 'explode');
SELECT redis_sync.write_behind('sessions', flush_interval => '1 h', key_prefix => 'sess:', format => 'json', counters => '{user_id}');
SELECT redis_sync.write_behind('sessions', flush_interval => '1 h', key_prefix => 'sess:', counters => '{data}');
SELECT redis_sync.write_behind('sessions', flush_interval => '1 h', key_prefix => 'sess:', counters => '{nope}');
SELECT redis_sync.write_behind('sessions', flush_interval => '1 h', key_prefix => 'other:', dirty_set => 'dirty-wb_products');
SELECT redis_sync.hincrby('sessions', 'abc', 'user_id', 1);
CREATE TABLE not_wb (id int PRIMARY KEY, n int);
SELECT redis_sync.hincrby('not_wb', '1', 'n', 1);

-- one table, write-through for some columns and write-behind for others
CREATE TABLE wb_products (id int PRIMARY KEY, name text, price numeric, view_count bigint DEFAULT 0);
SELECT redis_sync.write_through('wb_products', key_prefix => 'p:', columns => '{id,name,price}');
SELECT redis_sync.write_behind('wb_products', flush_interval => '1 h', key_prefix => 'p:', columns => '{view_count}');
SELECT policy, columns FROM redis_sync.tables WHERE relid = 'wb_products'::regclass ORDER BY policy;
INSERT INTO wb_products VALUES (1, 'widget', 10, 0);
SELECT redis_sync.command('HINCRBY', 'p:1', 'view_count', '5');
SELECT redis_sync.command('SADD', 'p:dirty', '1');
SELECT pushed AS p0 FROM redis_sync.stats WHERE "table" = 'wb_products'::regclass AND policy = 'write_through' \gset
SELECT redis_sync.flush('wb_products');
SELECT * FROM wb_products;
-- the drain's write was not pushed back (no echo)
SELECT pushed - :p0 AS echoed FROM redis_sync.stats WHERE "table" = 'wb_products'::regclass AND policy = 'write_through';
UPDATE wb_products SET price = 11 WHERE id = 1;
SELECT redis_sync.command('HGETALL', 'p:1');

SELECT redis_sync.unsync('wb_products');
SELECT count(*) FROM redis_sync.tables WHERE relid = 'wb_products'::regclass;

-- write_behind() again with another dirty set: refused while the old one
-- holds keys the new drain would never read; accepted once they are drained
CREATE TABLE wb_moved (id int PRIMARY KEY, v int);
SELECT redis_sync.write_behind('wb_moved', flush_interval => '1 h', key_prefix => 'mv:', dirty_set => 'mv-old');
SELECT redis_sync.command('HSET', 'mv:1', 'v', '7'), redis_sync.command('SADD', 'mv-old', '1');
SELECT redis_sync.write_behind('wb_moved', flush_interval => '1 h', key_prefix => 'mv:', dirty_set => 'mv-new');
SELECT dirty_set FROM redis_sync.tables WHERE relid = 'wb_moved'::regclass;
SELECT redis_sync.flush('wb_moved');
SELECT redis_sync.write_behind('wb_moved', flush_interval => '1 h', key_prefix => 'mv:', dirty_set => 'mv-new');
SELECT dirty_set FROM redis_sync.tables WHERE relid = 'wb_moved'::regclass;
SELECT * FROM wb_moved;
-- the same dirty set again needs no check
SELECT redis_sync.command('HSET', 'mv:2', 'v', '8'), redis_sync.command('SADD', 'mv-new', '2');
SELECT redis_sync.write_behind('wb_moved', flush_interval => '1 h', key_prefix => 'mv:', dirty_set => 'mv-new', batch_size => 10);
SELECT redis_sync.flush('wb_moved');
SELECT * FROM wb_moved ORDER BY id;
SELECT redis_sync.unsync('wb_moved');
DROP TABLE product_stats, tenant_counts, views, sessions, not_wb, wb_products, wb_moved;
