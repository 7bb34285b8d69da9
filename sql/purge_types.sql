-- purge_types: TRUNCATE and purges remove a table's rows from Redis (hashes
-- and strings under its prefix), never the dirty set that the same table's
-- write-behind policy keeps under that prefix (pending values would be lost);
-- nor, on a TRUNCATE, that policy's fields of the hashes (pt:1 keeps n)
SELECT redis_sync.worker_pause();
CREATE TABLE pt (id int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0);
SELECT redis_sync.write_through('pt', key_prefix => 'pt:', columns => '{v}', warm => false);
SELECT redis_sync.write_behind('pt', key_prefix => 'pt:', dirty_set => 'pt:dirty',
                               columns => '{n}', flush_interval => '1 h');
INSERT INTO pt VALUES (1, 'a'), (2, 'b');
SELECT redis_sync.command('HSET', 'pt:1', 'n', '5'), redis_sync.command('SADD', 'pt:dirty', '1');
SELECT redis_sync.command('SET', 'pt:x', 'a string row');
TRUNCATE pt;
SELECT redis_sync.command('EXISTS', 'pt:1') AS hash_row, redis_sync.command('EXISTS', 'pt:2') AS hash_row2,
       redis_sync.command('EXISTS', 'pt:x') AS string_row,
       redis_sync.command('SMEMBERS', 'pt:dirty') AS dirty_set_kept;
SELECT redis_sync.worker_resume();
-- a dirty set can never be a companion key (they begin with "{"), also when
-- _config_write() is called directly
SELECT rs_error($$SELECT redis_sync.write_behind('pt', key_prefix => 'pt:', columns => '{n}',
                                                  dirty_set => '{pt:1}:rs_version')$$);
SELECT rs_error($$SELECT redis_sync._config_write('pt', 'write_behind', 'pt:', '{id}', '{n}', 'hash',
                  NULL, 'eventual', 'sync', '{pt:1}:rs_version', '1 h', 1000, 'ignore', '{}')$$);
SELECT dirty_set FROM redis_sync.tables WHERE relid = 'pt'::regclass AND policy = 'write_behind';
SELECT redis_sync.unsync('pt', purge => true);
SELECT redis_sync.command('DEL', 'pt:dirty');
DROP TABLE pt;

-- one table, write-through for some columns and write-behind for others over
-- one hash: TRUNCATE removes the write-through policy's fields only (HDEL,
-- fenced by the purge's version), never the write-behind fields, the keys
-- only the application wrote or the dirty set.  Sync, then async delivery.
SELECT redis_sync.worker_pause();
CREATE TABLE pm (id int PRIMARY KEY, name text, price numeric, views bigint NOT NULL DEFAULT 0);
SELECT redis_sync.write_through('pm', key_prefix => 'pm:', columns => '{id,name,price}', warm => false);
SELECT redis_sync.write_behind('pm', key_prefix => 'pm:', columns => '{views}', flush_interval => '1 h');
INSERT INTO pm VALUES (1, 'one', 1.5), (2, 'two', 2.5), (3, 'three', 3.5);
SELECT redis_sync.command('GET', redis_sync.version_key('pm:1')) AS v1,
       redis_sync.command('GET', redis_sync.version_key('pm:2')) AS v2 \gset
-- write-behind fields not drained yet, and a key only the application wrote
SELECT redis_sync.command('HINCRBY', 'pm:1', 'views', '7'), redis_sync.command('SADD', 'pm:dirty', '1');
SELECT redis_sync.command('HSET', 'pm:9', 'views', '4', 'note', 'app'), redis_sync.command('SADD', 'pm:dirty', '9');
TRUNCATE pm;
SELECT k, redis_sync.command('HGETALL', k) AS hash,
       redis_sync.command('GET', redis_sync.version_key(k)) > :'v2' AS fenced
  FROM unnest('{pm:1,pm:2,pm:3,pm:9}'::text[]) k ORDER BY k;
SELECT redis_sync.command('SISMEMBER', 'pm:dirty', '1') AS dirty1, redis_sync.command('SISMEMBER', 'pm:dirty', '9') AS dirty9;
-- an older write of a truncated row, delivered late, brings no write-through
-- field back: neither over the kept write-behind fields nor on a key now gone
INSERT INTO redis_sync.outbox (relid, redis_key, op, payload, version)
  VALUES ('pm'::regclass, 'pm:1', 'H', '{"id": "1", "name": "one", "price": "1.5"}', :'v1'),
         ('pm'::regclass, 'pm:2', 'H', '{"id": "2", "name": "two", "price": "2.5"}', :'v2');
SELECT redis_sync.deliver_outbox();
SELECT redis_sync.command('HGETALL', 'pm:1') AS pm1, redis_sync.command('EXISTS', 'pm:2') AS pm2;
-- the drain re-inserts the dirty truncated rows, as for a write-behind table,
-- without a dead letter; later writes are pushed over the kept fields
SELECT redis_sync.worker_resume();
SELECT redis_sync.flush('pm');
SELECT * FROM pm ORDER BY id;
SELECT count(*) AS dead_letters FROM redis_sync.dead_letters WHERE relid = 'pm'::regclass;
UPDATE pm SET name = 'back' WHERE id = 1;
INSERT INTO pm VALUES (2, 'new', 2);
SELECT redis_sync.command('HGETALL', 'pm:1') AS pm1, redis_sync.command('HGETALL', 'pm:2') AS pm2;
-- async: the purge waits in the outbox; fields the application writes after
-- the TRUNCATE committed survive its delivery, and an older change of the
-- batch is delivered as the purge's field delete
SELECT redis_sync.worker_pause();
SELECT redis_sync.write_through('pm', key_prefix => 'pm:', columns => '{id,name,price}', warm => false,
                                delivery => 'async');
UPDATE pm SET price = 9 WHERE id = 1;
SELECT redis_sync.command('GET', redis_sync.version_key('pm:1')) AS v1 \gset
TRUNCATE pm;
SELECT redis_key, op, payload FROM redis_sync.outbox WHERE relid = 'pm'::regclass ORDER BY id;
SELECT redis_sync.command('HINCRBY', 'pm:2', 'views', '3'), redis_sync.command('SADD', 'pm:dirty', '2');
SELECT redis_sync.deliver_outbox();
SELECT k, redis_sync.command('HGETALL', k) AS hash FROM unnest('{pm:1,pm:2,pm:9}'::text[]) k ORDER BY k;
INSERT INTO redis_sync.outbox (relid, redis_key, op, payload, version)
  VALUES ('pm'::regclass, 'pm:1', 'H', '{"id": "1", "name": "back", "price": "9"}', :'v1');
SELECT redis_sync.deliver_outbox();
SELECT redis_sync.command('HGETALL', 'pm:1') AS pm1;
-- a purge whose payload is not an object of null fields is never sent: it
-- stays queued with its error
INSERT INTO redis_sync.outbox (relid, redis_key, op, payload, version)
  VALUES ('pm'::regclass, 'pm:', 'T', '{"name": "x"}', '000000000000000000000001'),
         ('pm'::regclass, 'pm:', 'T', '["name"]', '000000000000000000000001');
SELECT redis_sync.deliver_outbox();
SELECT op, payload, attempts, last_error FROM redis_sync.outbox WHERE relid = 'pm'::regclass ORDER BY id;
DELETE FROM redis_sync.outbox WHERE relid = 'pm'::regclass;
SELECT redis_sync.command('HGETALL', 'pm:2') AS pm2;
SELECT redis_sync.worker_resume();
SELECT redis_sync.flush('pm');
SELECT * FROM pm ORDER BY id;
SELECT count(*) AS dead_letters FROM redis_sync.dead_letters WHERE relid = 'pm'::regclass;
-- unsync(purge => true) ends both policies: every key goes, as for a
-- write-behind table
SELECT redis_sync.unsync('pm', purge => true);
SELECT k, redis_sync.command('EXISTS', k) AS exists FROM unnest('{pm:1,pm:2,pm:9}'::text[]) k ORDER BY k;
SELECT redis_sync.command('DEL', 'pm:dirty');
DROP TABLE pm;

-- syncing again under a new prefix removes the keys under the old one
CREATE TABLE pf (id int PRIMARY KEY, v text);
INSERT INTO pf VALUES (1, 'a');
SELECT redis_sync.write_through('pf', key_prefix => 'pf1:', warm => false);
UPDATE pf SET v = 'b';
SELECT redis_sync.command('EXISTS', 'pf1:1') AS old_key_before;
SELECT redis_sync.write_through('pf', key_prefix => 'pf2:', warm => false);
UPDATE pf SET v = 'c';
SELECT redis_sync.command('EXISTS', 'pf1:1') AS old_key_after, redis_sync.command('HGET', 'pf2:1', 'v') AS new_key;
SELECT redis_sync.unsync('pf', purge => true);
DROP TABLE pf;

-- a table shares its write-behind hashes only with a write-through policy of
-- format hash, without a ttl, over columns write-behind does not write: an
-- invalidation or a TTL removes the whole hash, a JSON string replaces it,
-- and a push or TRUNCATE's field delete of a column both write loses the
-- value the application wrote before the drain read it (wave 2l review)
CREATE TABLE px (id int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0);
SELECT redis_sync.write_behind('px', key_prefix => 'px:', columns => '{n}', flush_interval => '1 h');
SELECT rs_error($$SELECT redis_sync.write_through('px', key_prefix => 'px:', warm => false)$$);
SELECT rs_error($$SELECT redis_sync.write_through('px', key_prefix => 'px:', columns => '{v}', ttl => '1 hour', warm => false)$$);
SELECT rs_error($$SELECT redis_sync.write_through('px', key_prefix => 'px:', columns => '{v}', format => 'json', warm => false)$$);
SELECT rs_error($$SELECT redis_sync.invalidate('px', key_prefix => 'px:')$$);
SELECT redis_sync.write_through('px', key_prefix => 'px:', columns => '{id,v}', warm => false);
-- write-behind configured second, over a written-through column
SELECT rs_error($$SELECT redis_sync.write_behind('px', key_prefix => 'px:', columns => '{n,v}', flush_interval => '1 h')$$);
SELECT policy, key_prefix, columns, ttl FROM redis_sync.tables WHERE relid = 'px'::regclass ORDER BY policy;
-- under another prefix nothing is shared: a ttl is fine
SELECT redis_sync.write_through('px', key_prefix => 'px2:', ttl => '1 hour', warm => false);
-- nor under prefixes that overlap: a key of one policy can be another row's
-- key of the other (px: row 12 and px:1 row 2 both have px:12), a JSON
-- string with a TTL then replacing the write-behind hash (wave 2l review 2)
SELECT rs_error($$SELECT redis_sync.write_through('px', key_prefix => 'px:1', format => 'json', ttl => '1 hour', warm => false)$$);
SELECT rs_error($$SELECT redis_sync.invalidate('px', key_prefix => 'px:1')$$);
SELECT rs_error($$SELECT redis_sync.write_through('px', key_prefix => 'p', warm => false)$$);
SELECT policy, key_prefix FROM redis_sync.tables WHERE relid = 'px'::regclass ORDER BY policy;
SELECT redis_sync.unsync('px');
DROP TABLE px;

-- a purge's page of whole-key deletes of one version: keys whose version is
-- present and not newer are deleted in one UNLINK and keep a tombstone with
-- the tombstone TTL; a key with a newer version stays; a key without one
-- (only the application wrote it) between them is deleted too
CREATE TABLE pd (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('pd', key_prefix => 'pd:', warm => false);
INSERT INTO pd SELECT g, 'r' || g FROM generate_series(1, 40) g;
SELECT redis_sync.command('GET', redis_sync.version_key('pd:1')) AS pdv1 \gset
SELECT redis_sync.command('SET', 'pd:app', 'only the application wrote this');
SELECT redis_sync.command('SET', redis_sync.version_key('pd:7'), '9' || repeat('0', 31));
TRUNCATE pd;
SELECT count(*) FILTER (WHERE redis_sync.command('EXISTS', 'pd:' || g) = '1') AS kept,
       count(*) FILTER (WHERE redis_sync.command('GET', redis_sync.version_key('pd:' || g)) > :'pdv1'
                          AND redis_sync.command('PTTL', redis_sync.version_key('pd:' || g))::bigint > 0) AS tombstones
  FROM generate_series(1, 40) g;
SELECT redis_sync.command('EXISTS', 'pd:7') AS newer_kept, redis_sync.command('EXISTS', 'pd:app') AS app_key;
-- an older write delivered late does not bring a row back
INSERT INTO redis_sync.outbox (relid, redis_key, op, payload, version)
  VALUES ('pd'::regclass, 'pd:1', 'H', '{"id": "1", "v": "r1"}', :'pdv1');
SELECT redis_sync.deliver_outbox();
SELECT redis_sync.command('EXISTS', 'pd:1') AS pd1;
SELECT redis_sync.unsync('pd', purge => true);
SELECT redis_sync.command('DEL', 'pd:7', redis_sync.version_key('pd:7'));
DROP TABLE pd;
