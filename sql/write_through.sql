-- write-through, hash format: committed changes reach Redis at commit
CREATE TABLE wt (id int PRIMARY KEY, name text, price numeric(10,2), note text, secret text);
SELECT redis_sync.write_through('wt', key_prefix => 'wt:', columns => '{id,name,price,note}');
SELECT relid, policy, key_prefix, key_columns, columns, format, ttl, consistency, delivery
  FROM redis_sync.tables WHERE relid = 'wt'::regclass;


-- insert, NULL = absent field
INSERT INTO wt VALUES (1, 'widget', 10, NULL, 's1'), (2, 'gadget', 20.5, 'x', 's2');
SELECT h('wt:1'), h('wt:2');
-- update; the secret column is not synced
UPDATE wt SET price = 11 WHERE id = 1;
SELECT h('wt:1');
SELECT captured AS c0, pushed AS p0 FROM redis_sync.session_stats() \gset
UPDATE wt SET secret = 'changed' WHERE id = 1;   -- no synced column changed: nothing captured
SELECT captured - :c0 AS captured, pushed - :p0 AS pushed FROM redis_sync.session_stats();
-- setting a column to NULL removes the field
UPDATE wt SET note = NULL WHERE id = 2;
SELECT h('wt:2');
-- three updates of one row in one transaction become one push
SELECT captured AS c0, pushed AS p0 FROM redis_sync.session_stats() \gset
BEGIN;
UPDATE wt SET price = 12 WHERE id = 1;
UPDATE wt SET price = 13 WHERE id = 1;
UPDATE wt SET price = 14 WHERE id = 1;
SELECT h('wt:1');                          -- nothing sent before commit
COMMIT;
SELECT captured - :c0 AS captured, pushed - :p0 AS pushed FROM redis_sync.session_stats();
SELECT h('wt:1');
-- rollback pushes nothing
BEGIN;
UPDATE wt SET price = 99 WHERE id = 1;
INSERT INTO wt VALUES (3, 'ghost', 1, NULL, NULL);
ROLLBACK;
SELECT h('wt:1'), redis_sync.command('EXISTS', 'wt:3');
-- ROLLBACK TO SAVEPOINT discards exactly its own changes
BEGIN;
UPDATE wt SET price = 20 WHERE id = 1;
SAVEPOINT s1;
UPDATE wt SET price = 21 WHERE id = 1;
INSERT INTO wt VALUES (4, 'in savepoint', 4, NULL, NULL);
ROLLBACK TO SAVEPOINT s1;
INSERT INTO wt VALUES (5, 'after savepoint', 5, NULL, NULL);
SAVEPOINT s2;
UPDATE wt SET name = 'released' WHERE id = 5;
RELEASE SAVEPOINT s2;
COMMIT;
SELECT h('wt:1'), redis_sync.command('EXISTS', 'wt:4'), h('wt:5');
-- an exception block is a subtransaction too
DO $$
BEGIN
  UPDATE wt SET price = 30 WHERE id = 1;
  BEGIN
    UPDATE wt SET price = 31 WHERE id = 1;
    RAISE EXCEPTION 'boom';
  EXCEPTION WHEN OTHERS THEN NULL;
  END;
END $$;
SELECT h('wt:1') ->> 'price' AS price;
-- key change: the old key goes, the new one appears
UPDATE wt SET id = 6 WHERE id = 5;
SELECT redis_sync.command('EXISTS', 'wt:5'), h('wt:6');
-- delete
DELETE FROM wt WHERE id = 6;
SELECT redis_sync.command('EXISTS', 'wt:6');
-- the version key stays behind as a tombstone, with a TTL
SELECT redis_sync.command('EXISTS', '{wt:6}:rs_version'),
       redis_sync.command('PTTL', '{wt:6}:rs_version')::bigint > 0 AS tombstone_expires;
-- upsert
INSERT INTO wt VALUES (2, 'upserted', 22, NULL, NULL)
  ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, price = EXCLUDED.price;
INSERT INTO wt VALUES (7, 'new via upsert', 7, NULL, NULL)
  ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name;
SELECT h('wt:2'), h('wt:7');
-- MERGE (PostgreSQL 15): its INSERT, UPDATE and DELETE actions are pushed
-- like the statements
INSERT INTO wt VALUES (3, 'to delete', 3, NULL, NULL) ON CONFLICT (id) DO NOTHING;
MERGE INTO wt t
USING (VALUES (2, 'merged', 'u'), (3, NULL, 'd'), (4, 'merge-new', 'i')) AS s(id, name, op) ON t.id = s.id
 WHEN MATCHED AND s.op = 'd' THEN DELETE
 WHEN MATCHED THEN UPDATE SET name = s.name
 WHEN NOT MATCHED THEN INSERT (id, name, price) VALUES (s.id, s.name, 44);
SELECT h('wt:2'), redis_sync.command('EXISTS', 'wt:3') AS wt3_exists, h('wt:4');
DELETE FROM wt WHERE id = 4;
-- a push writes only its own fields: other fields of the hash stay
SELECT redis_sync.command('HSET', 'wt:7', 'view_count', '42');
UPDATE wt SET price = 8 WHERE id = 7;
SELECT h('wt:7');
-- TRUNCATE removes every key of the table (and nothing else)
SELECT redis_sync.command('SET', 'other:1', 'keep');
TRUNCATE wt;
SELECT redis_sync.command('KEYS', 'wt:*'), redis_sync.command('GET', 'other:1');
-- rows inserted after a TRUNCATE in the same transaction survive it
BEGIN;
INSERT INTO wt VALUES (8, 'before truncate', 8, NULL, NULL);
TRUNCATE wt;
INSERT INTO wt VALUES (9, 'after truncate', 9, NULL, NULL);
COMMIT;
SELECT redis_sync.command('KEYS', 'wt:*');

-- the apply script is sent as EVALSHA; after SCRIPT FLUSH the NOSCRIPT reply
-- makes the client resend it as EVAL, and the push still lands
SELECT redis_sync.command('SCRIPT', 'FLUSH');
UPDATE wt SET name = 'after script flush' WHERE id = 9;
SELECT h('wt:9') ->> 'name' AS name;

-- the configuration cache may be invalidated mid-transaction (ANALYZE, DDL,
-- another session): the buffered changes stay intact and the commit works
BEGIN;
UPDATE wt SET name = 'before analyze' WHERE id = 9;
ANALYZE wt;
SELECT redis_sync.write_through('wt', key_prefix => 'wt:', columns => '{id,name,price,note}');
UPDATE wt SET price = 90 WHERE id = 9;
COMMIT;
SELECT h('wt:9');

-- composite keys, joined with ':'
CREATE TABLE wt_comp (tenant text, item int, qty int, PRIMARY KEY (tenant, item));
SELECT redis_sync.write_through('wt_comp', key_prefix => 'comp:');
INSERT INTO wt_comp VALUES ('acme', 1, 5), ('acme', 2, 7);
SELECT h('comp:acme:1'), h('comp:acme:2');
UPDATE wt_comp SET item = 3 WHERE tenant = 'acme' AND item = 2;
SELECT redis_sync.command('EXISTS', 'comp:acme:2'), h('comp:acme:3');

-- key_columns naming a unique index, default prefix schema.table:
CREATE TABLE wt_uniq (id int PRIMARY KEY, code text NOT NULL UNIQUE, label text);
SELECT redis_sync.write_through('wt_uniq', key_columns => '{code}');
INSERT INTO wt_uniq VALUES (1, 'A-1', 'first');
SELECT h('public.wt_uniq:A-1');

-- keys and values are binary-safe: spaces, quotes, newlines, unicode
INSERT INTO wt_comp VALUES (E'we\nird "t" é', 1, 1);
SELECT h(E'comp:we\nird "t" é:1');

-- TTL is applied in the same round trip
CREATE TABLE wt_ttl (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('wt_ttl', key_prefix => 'ttl:', ttl => '30 min');
INSERT INTO wt_ttl VALUES (1, 'expires');
SELECT redis_sync.command('PTTL', 'ttl:1')::bigint BETWEEN 1 AND 1800000 AS ttl_set;

-- calling write_through again updates the settings
SELECT redis_sync.write_through('wt_ttl', key_prefix => 'ttl2:', ttl => '1 hour');
SELECT key_prefix, ttl FROM redis_sync.tables WHERE relid = 'wt_ttl'::regclass;
UPDATE wt_ttl SET v = 'moved' WHERE id = 1;
SELECT h('ttl2:1');

-- partitioned tables: partitions included
CREATE TABLE wt_part (id int, region text, v int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE wt_part_eu PARTITION OF wt_part FOR VALUES IN ('eu');
SELECT redis_sync.write_through('wt_part', key_prefix => 'part:');
CREATE TABLE wt_part_us PARTITION OF wt_part FOR VALUES IN ('us');
INSERT INTO wt_part VALUES (1, 'eu', 10), (2, 'us', 20);
UPDATE wt_part SET region = 'us' WHERE id = 1;     -- moves across partitions
SELECT redis_sync.command('EXISTS', 'part:1:eu'), h('part:1:us'), h('part:2:us');
TRUNCATE wt_part_eu;                                -- one partition: refused
TRUNCATE wt_part_us;                                -- also one created after syncing
TRUNCATE wt_part;
SELECT redis_sync.command('KEYS', 'part:*');

-- unsync: triggers go, keys stay unless purge => true
SELECT redis_sync.unsync('wt_comp');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'wt_comp'::regclass;
INSERT INTO wt_comp VALUES ('acme', 9, 9);
SELECT redis_sync.command('EXISTS', 'comp:acme:9'), redis_sync.command('EXISTS', 'comp:acme:1');
SELECT redis_sync.unsync('wt_comp');
SELECT redis_sync.unsync('wt_uniq', purge => true);
SELECT redis_sync.command('KEYS', 'public.wt_uniq:*');

-- dropping a synced table removes its configuration
DROP TABLE wt, wt_comp, wt_uniq, wt_ttl, wt_part;
SELECT count(*) FROM redis_sync.tables;
