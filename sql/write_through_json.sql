-- write-through, json format: SET key row_to_json(synced columns)
CREATE TABLE wj (id int, sku text, price numeric, tags text[], meta jsonb, hidden text,
                 PRIMARY KEY (id, sku));
SELECT redis_sync.write_through('wj', key_prefix => 'wj:', format => 'json',
                                columns => '{id,sku,price,tags,meta}');
INSERT INTO wj VALUES (1, 'A', 9.5, '{red,blue}', '{"x": 1}', 'h'), (2, 'B', NULL, NULL, NULL, 'h');
SELECT redis_sync.command('GET', 'wj:1:A'), redis_sync.command('GET', 'wj:2:B');
SELECT (redis_sync.command('GET', 'wj:1:A') #>> '{}')::jsonb ->> 'price' AS price;
UPDATE wj SET price = 10 WHERE id = 1;
SELECT redis_sync.command('GET', 'wj:1:A');
UPDATE wj SET hidden = 'x';                        -- not a synced column
SELECT pushed AS p0 FROM redis_sync.session_stats() \gset
UPDATE wj SET hidden = 'y';
SELECT pushed - :p0 AS pushed FROM redis_sync.session_stats();
UPDATE wj SET sku = 'C' WHERE id = 2;              -- key change
SELECT redis_sync.command('EXISTS', 'wj:2:B'), redis_sync.command('GET', 'wj:2:C');
BEGIN;
DELETE FROM wj WHERE id = 1;
ROLLBACK;
SELECT redis_sync.command('EXISTS', 'wj:1:A');
DELETE FROM wj WHERE id = 1;
SELECT redis_sync.command('EXISTS', 'wj:1:A');
-- ttl with json
SELECT redis_sync.write_through('wj', key_prefix => 'wj:', format => 'json', ttl => '10 s');
UPDATE wj SET price = 3;
SELECT redis_sync.command('PTTL', 'wj:2:C')::bigint BETWEEN 1 AND 10000 AS ttl_set;
TRUNCATE wj;
SELECT redis_sync.command('KEYS', 'wj:*');
DROP TABLE wj;
