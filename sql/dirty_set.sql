-- dirty_set: no dirty set can be a row key.  With a text key, the row 'dirty'
-- of a table under prefix p: would be cached at p:dirty, the default dirty
-- set: such configurations are refused, whichever is synced first.
CREATE TABLE ds_prod (id text PRIMARY KEY, name text, views int NOT NULL DEFAULT 0);
SELECT redis_sync.write_through('ds_prod', key_prefix => 'prod:', columns => '{id,name}');
-- the default dirty set prod:dirty would be the key of row 'dirty'
SELECT rs_error($$SELECT redis_sync.write_behind('ds_prod', key_prefix => 'prod:', columns => '{views}', flush_interval => '1 h')$$);
\set VERBOSITY verbose
\set SHOW_CONTEXT never
SELECT redis_sync.write_behind('ds_prod', key_prefix => 'prod:', columns => '{views}', flush_interval => '1 h');
\set VERBOSITY default
-- a dirty set outside the prefix is fine
SELECT redis_sync.write_behind('ds_prod', key_prefix => 'prod:', columns => '{views}', flush_interval => '1 h',
                               dirty_set => 'prod-dirty');
-- so a row keyed 'dirty' is cached without touching the dirty set
INSERT INTO ds_prod VALUES ('dirty', 'a row named dirty', 0), ('p1', 'lamp', 0);
SELECT redis_sync.command('SADD', 'prod-dirty', 'p1');
SELECT redis_sync.command('HSET', 'prod:p1', 'views', '3');
SELECT redis_sync.command('TYPE', 'prod:dirty') AS row_key_type, redis_sync.command('TYPE', 'prod-dirty') AS dirty_set_type;
SELECT redis_sync.flush('ds_prod');
SELECT id, name, views FROM ds_prod ORDER BY id;

-- write-behind first, with a text key: refused at write_behind()
CREATE TABLE ds_sess (id text PRIMARY KEY, data text);
SELECT rs_error($$SELECT redis_sync.write_behind('ds_sess', key_prefix => 'sess:', flush_interval => '1 h')$$);
-- a key type that cannot spell the dirty set keeps the default
CREATE TABLE ds_counts (id int PRIMARY KEY, n int);
SELECT redis_sync.write_behind('ds_counts', key_prefix => 'cnt:', flush_interval => '1 h');
SELECT dirty_set FROM redis_sync.tables WHERE relid = 'ds_counts'::regclass;
-- varchar(3) cannot hold 'dirty' (the drain refuses overlong members too),
-- char(5) can
CREATE TABLE ds_vc (id varchar(3) PRIMARY KEY, n int);
SELECT redis_sync.write_behind('ds_vc', key_prefix => 'vc:', flush_interval => '1 h');
CREATE TABLE ds_ch (id char(5) PRIMARY KEY, n int);
SELECT rs_error($$SELECT redis_sync.write_behind('ds_ch', key_prefix => 'ch:', flush_interval => '1 h')$$);
-- a domain key: its check is not run by the caller (the table owner's code);
-- the base type decides, so 'dirty' is possible and refused
CREATE FUNCTION ds_spy(text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'domain check ran for %', $1; RETURN true; END $$;
CREATE DOMAIN ds_dom AS text CHECK (ds_spy(VALUE));
CREATE TABLE ds_d (id ds_dom PRIMARY KEY, n int);
SELECT rs_error($$SELECT redis_sync.write_behind('ds_d', key_prefix => 'dd:', flush_interval => '1 h')$$);
DROP TABLE ds_d;
DROP DOMAIN ds_dom;
DROP FUNCTION ds_spy;
-- composite keys: 'a:b' under prefix k: is the row ('a', 'b'); escapes count
CREATE TABLE ds_two (a text, b text, n int, PRIMARY KEY (a, b));
SELECT rs_error($$SELECT redis_sync.write_behind('ds_two', key_prefix => 'two:', dirty_set => 'two:x:y', flush_interval => '1 h')$$);
SELECT redis_sync.write_behind('ds_two', key_prefix => 'two:', flush_interval => '1 h');
SELECT rs_error($$SELECT redis_sync.write_behind('ds_two', key_prefix => 'two:', dirty_set => 'two:x\:y\\:z', flush_interval => '1 h')$$);
SELECT redis_sync.write_behind('ds_two', key_prefix => 'two:', dirty_set => 'two:x\y:z', flush_interval => '1 h');

-- another table's dirty set under a new table's prefix: refused when the
-- new table is synced, either policy
CREATE TABLE ds_other (id text PRIMARY KEY, v text);
SELECT rs_error($$SELECT redis_sync.write_through('ds_other', key_prefix => 'prod-')$$);
SELECT rs_error($$SELECT redis_sync.invalidate('ds_other', key_prefix => 'prod-')$$);
SELECT redis_sync.write_through('ds_other', key_prefix => 'oth:');
SELECT rs_error($$SELECT redis_sync.write_behind('ds_counts', key_prefix => 'cnt:', dirty_set => 'oth:cnt', flush_interval => '1 h')$$);

SELECT redis_sync.unsync(t) FROM unnest(ARRAY['ds_prod', 'ds_counts', 'ds_vc', 'ds_two', 'ds_other']::regclass[]) t;
DROP TABLE ds_prod, ds_sess, ds_counts, ds_vc, ds_ch, ds_two, ds_other;
