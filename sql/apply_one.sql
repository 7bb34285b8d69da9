-- the pre-commit push of one key (fence.c's apply-one script, issue 18):
-- each of its paths does what the general apply script does.  Pushes go as
-- MULTI/EXEC where they can (redis_sync.bulk_multi, sql/bulk_multi); the
-- script is what the rest get (bulk_multi off, Redis before 6.2, an ACL)
SET redis_sync.bulk_multi = off;
CREATE TABLE a1 (id int PRIMARY KEY, v int, note text);
SELECT redis_sync.write_through('a1', key_prefix => 'a1:');
SELECT 'redis_sync:inflight:' || system_identifier || ':' || d.oid AS mkey,
       'redis_sync:evicted:' || system_identifier || ':' || d.oid AS ekey
  FROM pg_control_system(), pg_database d WHERE d.datname = current_database() \gset
CREATE FUNCTION pg_temp.ver(k text) RETURNS text LANGUAGE sql
  AS $$ SELECT redis_sync.command('GET', redis_sync.version_key(k)) #>> '{}' $$;
CREATE FUNCTION pg_temp.counter(ekey text, f text) RETURNS bigint LANGUAGE sql
  AS $$ SELECT coalesce((redis_sync.command('HGET', ekey, f) #>> '{}')::bigint, 0) $$;

-- a hash without NULLs, then with one: its field is deleted
INSERT INTO a1 VALUES (1, 1, 'one');
SELECT h('a1:1');
SELECT pg_temp.ver('a1:1') AS v1 \gset
UPDATE a1 SET note = NULL WHERE id = 1;
SELECT h('a1:1'), pg_temp.ver('a1:1') > :'v1' AS newer_version;
-- the transactions of this session left one marker (each push clears the
-- one before)
SELECT count(*) AS my_markers
  FROM jsonb_array_elements_text(redis_sync.command('HKEYS', :'mkey')) f
 WHERE split_part(f, ':', 2)::int = pg_backend_pid();

-- a newer version in Redis: the push is ignored, the version stays
SELECT redis_sync.command('SET', redis_sync.version_key('a1:1'), repeat('F', 32));
UPDATE a1 SET v = 2 WHERE id = 1;
SELECT h('a1:1'), pg_temp.ver('a1:1') = repeat('F', 32) AS version_kept;
SELECT redis_sync.command('SET', redis_sync.version_key('a1:1'), repeat('0', 32));

-- the version lost, the key kept: the key is dropped (a miss, never stale),
-- fenced with a version, and counted
SELECT pg_temp.counter(:'ekey', 'dropped') AS d0 \gset
SELECT redis_sync.command('DEL', redis_sync.version_key('a1:1'));
UPDATE a1 SET v = 3 WHERE id = 1;
SELECT redis_sync.command('EXISTS', 'a1:1') AS key_exists,
       pg_temp.ver('a1:1') > repeat('0', 32) AS fenced,
       pg_temp.counter(:'ekey', 'dropped') - :d0 AS dropped;
-- the next write creates it
UPDATE a1 SET v = 4 WHERE id = 1;
SELECT h('a1:1');

-- key and version both missing: written, unless the eviction watch holds a
-- floor the write is not newer than (it is skipped and counted)
SELECT redis_sync.command('DEL', 'a1:1', redis_sync.version_key('a1:1'));
UPDATE a1 SET v = 5 WHERE id = 1;
SELECT h('a1:1');
SELECT pg_temp.counter(:'ekey', 'skipped') AS s0 \gset
SELECT redis_sync.command('HGET', :'ekey', 'floor') #>> '{}' IS NULL AS no_floor_before;
SELECT redis_sync.command('HSET', :'ekey', 'floor', repeat('F', 32));
SELECT redis_sync.command('DEL', 'a1:1', redis_sync.version_key('a1:1'));
UPDATE a1 SET v = 6 WHERE id = 1;
SELECT redis_sync.command('EXISTS', 'a1:1', redis_sync.version_key('a1:1')) AS keys_exist,
       pg_temp.counter(:'ekey', 'skipped') - :s0 AS skipped;
SELECT redis_sync.command('HDEL', :'ekey', 'floor');
UPDATE a1 SET v = 7 WHERE id = 1;
SELECT h('a1:1');

-- a delete: the key goes, a tombstone version with the tombstone TTL stays;
-- also for a key missing with its version (no eviction watch: nothing is
-- created but the tombstone)
DELETE FROM a1 WHERE id = 1;
SELECT redis_sync.command('EXISTS', 'a1:1') AS key_exists,
       (redis_sync.command('PTTL', redis_sync.version_key('a1:1')))::bigint
         BETWEEN 1 AND 86400000 AS tombstone_ttl;
INSERT INTO a1 VALUES (2, 2, 'two');
SELECT redis_sync.command('DEL', 'a1:2', redis_sync.version_key('a1:2'));
SELECT redis_sync.command('HSET', :'ekey', 'floor', repeat('F', 32));
DELETE FROM a1 WHERE id = 2;
SELECT redis_sync.command('HDEL', :'ekey', 'floor');
SELECT redis_sync.command('EXISTS', 'a1:2') AS key_exists,
       (redis_sync.command('PTTL', redis_sync.version_key('a1:2')))::bigint
         BETWEEN 1 AND 86400000 AS tombstone_ttl;

-- a hash of no field (its only column NULL): nothing set, the field deleted
CREATE TABLE a1c (id int PRIMARY KEY, note text);
SELECT redis_sync.write_through('a1c', key_prefix => 'a1c:', columns => '{note}');
INSERT INTO a1c VALUES (1, NULL);
SELECT redis_sync.command('EXISTS', 'a1c:1') AS key_exists, pg_temp.ver('a1c:1') IS NOT NULL AS versioned;
UPDATE a1c SET note = 'x' WHERE id = 1;
SELECT h('a1c:1');
UPDATE a1c SET note = NULL WHERE id = 1;
SELECT redis_sync.command('EXISTS', 'a1c:1') AS key_exists;

-- values at the msgpack string boundaries (fixstr below 32 bytes, str16 to
-- 65,535, str32 above), and an empty one
CREATE TABLE a1b (id int PRIMARY KEY, t text);
SELECT redis_sync.write_through('a1b', key_prefix => 'a1b:');
INSERT INTO a1b VALUES (1, '');
INSERT INTO a1b VALUES (2, repeat('x', 31));
INSERT INTO a1b VALUES (3, repeat('y', 32));
INSERT INTO a1b VALUES (4, repeat('z', 65535));
INSERT INTO a1b VALUES (5, repeat('w', 65536));
UPDATE a1b SET t = repeat('é', 40000) WHERE id = 1;
SELECT id, length(redis_sync.command('HGET', 'a1b:' || id, 't') #>> '{}') AS cached_length,
       length(t) AS length
  FROM a1b ORDER BY id;
SELECT count(*) AS differences FROM redis_sync.verify('a1b');

-- a string (json) with a TTL: key and version expire together
CREATE TABLE a1j (id int PRIMARY KEY, v int);
SELECT redis_sync.write_through('a1j', key_prefix => 'a1j:', format => 'json', ttl => interval '1 hour');
INSERT INTO a1j VALUES (1, 1);
SELECT redis_sync.command('GET', 'a1j:1') #>> '{}' AS json,
       (redis_sync.command('PTTL', 'a1j:1'))::bigint BETWEEN 1 AND 3600000 AS key_ttl,
       (redis_sync.command('PTTL', redis_sync.version_key('a1j:1')))::bigint BETWEEN 1 AND 3600000 AS version_ttl;

-- a key Redis refuses (a string where a hash belongs): a strict table rolls
-- back with Redis's error, an eventual one queues the change
CREATE TABLE a1s (id int PRIMARY KEY, v int);
SELECT redis_sync.write_through('a1s', key_prefix => 'a1s:', consistency => 'strict');
INSERT INTO a1s VALUES (1, 1);
SELECT redis_sync.command('SET', 'a1s:1', 'not a hash');
-- (the abort's repair meets the same refusal: its WARNING, sent after the
-- ERROR, may reach psql first; not shown)
SET client_min_messages = error;
UPDATE a1s SET v = 2 WHERE id = 1;
RESET client_min_messages;
SELECT v FROM a1s;
SELECT redis_sync.worker_pause();
SELECT queued AS q0 FROM redis_sync.session_stats() \gset
INSERT INTO a1 VALUES (3, 3, 'three');
SELECT redis_sync.command('DEL', 'a1:3');
SELECT redis_sync.command('SET', 'a1:3', 'not a hash');
UPDATE a1 SET v = 4 WHERE id = 3;
SELECT queued - :q0 AS queued FROM redis_sync.session_stats();
SELECT count(*) AS outbox_entries FROM redis_sync.outbox WHERE relid = 'a1'::regclass;
SELECT redis_sync.command('DEL', 'a1:3');
SELECT redis_sync.worker_resume();

-- a version key of another type (a hash): treated as missing, as the apply
-- script's MGET does, not refused -- a strict table's single-row write goes
-- through and the key is dropped and fenced (never stale)
INSERT INTO a1s VALUES (2, 1);
SELECT redis_sync.command('DEL', redis_sync.version_key('a1s:2'));
SELECT redis_sync.command('HSET', redis_sync.version_key('a1s:2'), 'not', 'a version');
UPDATE a1s SET v = 2 WHERE id = 2;
SELECT v FROM a1s WHERE id = 2;
SELECT redis_sync.command('EXISTS', 'a1s:2') AS key_exists,
       redis_sync.command('TYPE', redis_sync.version_key('a1s:2')) #>> '{}' AS version_type;
UPDATE a1s SET v = 3 WHERE id = 2;
SELECT h('a1s:2');

-- a row larger than Redis's smallest proto-max-bulk-len (1 MB) in all, each
-- value smaller: the general script (one argument per value), not one
-- msgpack argument Redis would refuse as a protocol error
SELECT redis_sync.command('CONFIG', 'GET', 'proto-max-bulk-len') ->> 1 AS bulk_len \gset
SELECT redis_sync.command('CONFIG', 'SET', 'proto-max-bulk-len', '1048576');
CREATE TABLE a1g (id int PRIMARY KEY, a text, b text);
SELECT redis_sync.write_through('a1g', key_prefix => 'a1g:', consistency => 'strict');
INSERT INTO a1g VALUES (1, repeat('a', 600000), repeat('b', 600000));
SELECT redis_sync.command('CONFIG', 'SET', 'proto-max-bulk-len', :'bulk_len');
SELECT id, length(redis_sync.command('HGET', 'a1g:1', 'a') #>> '{}') AS a,
       length(redis_sync.command('HGET', 'a1g:1', 'b') #>> '{}') AS b
  FROM a1g;

SELECT redis_sync.unsync('a1', purge => true);
SELECT redis_sync.unsync('a1b', purge => true);
SELECT redis_sync.unsync('a1c', purge => true);
SELECT redis_sync.unsync('a1j', purge => true);
SELECT redis_sync.unsync('a1s', purge => true);
SELECT redis_sync.unsync('a1g', purge => true);
DROP TABLE a1, a1b, a1c, a1j, a1s, a1g;

-- a delete that finds its key without a version removes it, as it would
-- anyway, and is not counted as dropped (no eviction happened): a row's
-- DELETE (this script) and a dropped write-behind table's purge of the keys
-- it never versioned (the general script), which counted every one of them
CREATE TABLE a1d (id int PRIMARY KEY, v int);
SELECT redis_sync.write_through('a1d', key_prefix => 'a1d:');
INSERT INTO a1d VALUES (1, 1);
SELECT pg_temp.counter(:'ekey', 'dropped') AS d0 \gset
SELECT redis_sync.command('DEL', redis_sync.version_key('a1d:1'));
DELETE FROM a1d WHERE id = 1;
SELECT redis_sync.command('EXISTS', 'a1d:1') AS key_exists,
       pg_temp.ver('a1d:1') IS NOT NULL AS fenced,
       pg_temp.counter(:'ekey', 'dropped') - :d0 AS dropped;
CREATE TABLE a1w (id int PRIMARY KEY, n int);
SELECT redis_sync.write_behind('a1w', key_prefix => 'a1w:', flush_interval => '1 h');
SELECT count(redis_sync.command('HSET', 'a1w:' || g, 'n', g::text)) FROM generate_series(1, 1500) g;
DROP TABLE a1w;
-- (the worker may deliver the purge before flush() does)
SELECT redis_sync.flush() >= 0 AS flushed;
SELECT redis_sync.command('EXISTS', 'a1w:1', 'a1w:1500') AS keys_left,
       pg_temp.counter(:'ekey', 'dropped') - :d0 AS dropped;
SELECT redis_sync.unsync('a1d', purge => true);
DROP TABLE a1d;
