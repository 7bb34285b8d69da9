-- bulk pre-commit pushes as MULTI/EXEC (fence_multi.c, issue 18): the same
-- writes as the apply script, key for key, version for version
SET client_min_messages = warning;
CREATE FUNCTION pg_temp.execs() RETURNS bigint LANGUAGE sql AS $$
  SELECT coalesce(substring(redis_sync.command('INFO', 'commandstats') #>> '{}'
                            FROM 'cmdstat_exec:calls=(\d+)')::bigint, 0) $$;
CREATE FUNCTION pg_temp.evals() RETURNS bigint LANGUAGE sql AS $$
  SELECT coalesce(substring(redis_sync.command('INFO', 'commandstats') #>> '{}'
                            FROM 'cmdstat_evalsha:calls=(\d+)')::bigint, 0) +
         coalesce(substring(redis_sync.command('INFO', 'commandstats') #>> '{}'
                            FROM 'cmdstat_eval:calls=(\d+)')::bigint, 0) $$;
-- every key under a prefix (and its version key) as text, prefix stripped:
-- type, value, whether it has a TTL
CREATE FUNCTION pg_temp.dump(prefix text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
  k text;
  t text;
  v text;
BEGIN
  FOR k IN SELECT jsonb_array_elements_text(redis_sync.command('KEYS', prefix || '*')) ORDER BY 1 LOOP
    t := redis_sync.command('TYPE', k) #>> '{}';
    IF t = 'hash' THEN
      SELECT string_agg(f || '=' || (redis_sync.command('HGET', k, f) #>> '{}'), ',' ORDER BY f) INTO v
        FROM jsonb_array_elements_text(redis_sync.command('HKEYS', k)) f;
    ELSE
      v := redis_sync.command('GET', k) #>> '{}';
    END IF;
    RETURN NEXT substr(k, length(prefix) + 1) || ' ' || t || ' ' || coalesce(v, '-') ||
      ' ttl=' || ((redis_sync.command('PTTL', k) #>> '{}')::bigint > 0);
  END LOOP;
  FOR k IN SELECT jsonb_array_elements_text(redis_sync.command('KEYS', '{' || prefix || '*')) ORDER BY 1 LOOP
    RETURN NEXT 'version ' || substr(k, length(prefix) + 2) || ' ' ||
      ((redis_sync.command('GET', k) #>> '{}') IS NOT NULL) ||
      ' ttl=' || ((redis_sync.command('PTTL', k) #>> '{}')::bigint > 0);
  END LOOP;
END $$;

-- each kind of table twice: m (MULTI) and f (the apply script)
DO $$
DECLARE
  s text;
BEGIN
  FOREACH s IN ARRAY ARRAY['m', 'f'] LOOP
    EXECUTE format('CREATE TABLE %I (id int PRIMARY KEY, v int, note text)', s || '_h');
    EXECUTE format('CREATE TABLE %I (id int PRIMARY KEY, v int, note text)', s || '_j');
    EXECUTE format('CREATE TABLE %I (id int PRIMARY KEY, v int)', s || '_t');
    EXECUTE format('CREATE TABLE %I (id int PRIMARY KEY, v int)', s || '_i');
    PERFORM redis_sync.write_through((s || '_h')::regclass, key_prefix => s || 'h:');
    PERFORM redis_sync.write_through((s || '_j')::regclass, key_prefix => s || 'j:', format => 'json');
    PERFORM redis_sync.write_through((s || '_t')::regclass, key_prefix => s || 't:', ttl => '1 hour');
    PERFORM redis_sync.invalidate((s || '_i')::regclass, key_prefix => s || 'i:');
  END LOOP;
END $$;

-- the same statements on both; each transaction pushes >= 32 keys
CREATE FUNCTION pg_temp.run(s text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('INSERT INTO %I SELECT g, g, CASE WHEN g %% 4 = 0 THEN NULL ELSE $1 || g END
                    FROM generate_series(1, 100) g', s || '_h') USING 'row ';
  EXECUTE format('INSERT INTO %I SELECT g, g, $1 || g FROM generate_series(1, 50) g', s || '_j') USING 'j';
  EXECUTE format('INSERT INTO %I SELECT g, g FROM generate_series(1, 40) g', s || '_t');
  EXECUTE format('INSERT INTO %I SELECT g, g FROM generate_series(1, 40) g', s || '_i');
END $$;

SELECT pg_temp.execs() AS x0, pg_temp.evals() AS e0 \gset
BEGIN;
SELECT pg_temp.run('m');
COMMIT;
SELECT pg_temp.execs() - :x0 > 0 AS multi_used, pg_temp.evals() - :e0 AS scripts;
SET redis_sync.bulk_multi = off;
SELECT pg_temp.execs() AS x0 \gset
BEGIN;
SELECT pg_temp.run('f');
COMMIT;
SELECT pg_temp.execs() - :x0 AS multi_when_off;
RESET redis_sync.bulk_multi;

-- updates (NULLs set and cleared), deletes, a key written twice and one
-- deleted and inserted again in one transaction
CREATE FUNCTION pg_temp.run2(s text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('UPDATE %I SET v = v + 1, note = CASE WHEN id %% 3 = 0 THEN NULL ELSE $1 || id END', s || '_h')
    USING 'upd ';
  EXECUTE format('UPDATE %I SET v = -v WHERE id <= 5', s || '_h');
  EXECUTE format('DELETE FROM %I WHERE id %% 7 = 0', s || '_h');
  EXECUTE format('DELETE FROM %I WHERE id = 10', s || '_h');
  EXECUTE format('INSERT INTO %I VALUES (10, 1000, $1)', s || '_h') USING 'again';
  EXECUTE format('UPDATE %I SET note = NULL', s || '_j');
  EXECUTE format('UPDATE %I SET v = v + 1', s || '_t');
  EXECUTE format('DELETE FROM %I WHERE id > 35', s || '_t');
  EXECUTE format('UPDATE %I SET v = v + 1', s || '_i');
END $$;
BEGIN;
SELECT pg_temp.run2('m');
COMMIT;
SET redis_sync.bulk_multi = off;
BEGIN;
SELECT pg_temp.run2('f');
COMMIT;
RESET redis_sync.bulk_multi;

-- the two caches agree, key for key, and each with its table
SELECT s, count(*) FROM (SELECT 'h' s, pg_temp.dump('mh:') UNION ALL SELECT 'j', pg_temp.dump('mj:')
  UNION ALL SELECT 't', pg_temp.dump('mt:')
  UNION ALL SELECT 'i', pg_temp.dump('mi:')) d GROUP BY s ORDER BY s;
(SELECT 'h', pg_temp.dump('mh:') EXCEPT SELECT 'h', pg_temp.dump('fh:'))
UNION ALL (SELECT 'h', pg_temp.dump('fh:') EXCEPT SELECT 'h', pg_temp.dump('mh:'))
UNION ALL (SELECT 'j', pg_temp.dump('mj:') EXCEPT SELECT 'j', pg_temp.dump('fj:'))
UNION ALL (SELECT 'j', pg_temp.dump('fj:') EXCEPT SELECT 'j', pg_temp.dump('mj:'))
UNION ALL (SELECT 't', pg_temp.dump('mt:') EXCEPT SELECT 't', pg_temp.dump('ft:'))
UNION ALL (SELECT 't', pg_temp.dump('ft:') EXCEPT SELECT 't', pg_temp.dump('mt:'))
UNION ALL (SELECT 'i', pg_temp.dump('mi:') EXCEPT SELECT 'i', pg_temp.dump('fi:'))
UNION ALL (SELECT 'i', pg_temp.dump('fi:') EXCEPT SELECT 'i', pg_temp.dump('mi:'));
SELECT pg_temp.dump('mh:') LIMIT 6;
SELECT t, count(*) FROM unnest(ARRAY['m_h', 'm_j', 'm_t', 'f_h', 'f_j', 'f_t']) t,
       LATERAL redis_sync.verify(t::regclass) GROUP BY t ORDER BY t;

-- the versions written by MULTI fence older writes as the script's do: an
-- outbox entry older than the cached version is not applied
SELECT redis_sync.command('GET', redis_sync.version_key('mh:1')) #>> '{}' >
       repeat('0', 32) AS version_set;

-- a key Redis refuses (a string where the hash is): that key fails, the
-- others of its chunk are applied, the transaction of a strict table rolls
-- back (the abort puts the committed state back)
CREATE TABLE m_strict (id int PRIMARY KEY, v int);
INSERT INTO m_strict SELECT g, g FROM generate_series(1, 40) g;
-- (no background warm: it could replace the string below by the row)
SELECT redis_sync.write_through('m_strict', key_prefix => 'mst:', consistency => 'strict', warm => false);
SELECT redis_sync.command('SET', 'mst:5', 'not a hash');
SELECT pg_temp.execs() AS x0 \gset
-- (the abort's repair meets the same refusal: its WARNING, sent after the
-- ERROR, may reach psql first; not shown)
SET client_min_messages = error;
UPDATE m_strict SET v = v + 100;
SET client_min_messages = warning;
SELECT pg_temp.execs() - :x0 > 0 AS multi_used;
SELECT count(*) AS rolled_back FROM m_strict WHERE v > 100;
SELECT redis_sync.command('HGET', 'mst:6', 'v') #>> '{}' AS restored, redis_sync.command('GET', 'mst:5') #>> '{}' AS refused;
SELECT redis_sync.command('DEL', 'mst:5');
UPDATE m_strict SET v = v + 100;
SELECT count(*) AS problems FROM redis_sync.verify('m_strict');

-- one key: MULTI as well (with bulk_multi off, the apply-one script:
-- sql/apply_one)
SELECT pg_temp.execs() AS x0 \gset
UPDATE m_h SET v = v + 1 WHERE id = 1;
SELECT pg_temp.execs() - :x0 AS multi_used;

-- a chunk's deletes go as one UNLINK, next to the same chunk's other
-- writes: 30 rows deleted and 20 updated in one transaction (one chunk)
CREATE FUNCTION pg_temp.unlinks() RETURNS bigint LANGUAGE sql AS $$
  SELECT coalesce(substring(redis_sync.command('INFO', 'commandstats') #>> '{}'
                            FROM 'cmdstat_unlink:calls=(\d+)')::bigint, 0) $$;
CREATE TABLE m_del (id int PRIMARY KEY, v int);
INSERT INTO m_del SELECT g, g FROM generate_series(1, 50) g;
SELECT redis_sync.write_through('m_del', key_prefix => 'mdel:', warm => false);
SELECT redis_sync.warm('m_del');
SELECT pg_temp.execs() AS x0, pg_temp.unlinks() AS u0 \gset
BEGIN;
DELETE FROM m_del WHERE id % 5 <> 0 AND id <= 37;
UPDATE m_del SET v = v + 100;
COMMIT;
SELECT pg_temp.execs() - :x0 AS execs, pg_temp.unlinks() - :u0 AS unlinks;
SELECT count(*) AS rows_left,
       count(*) FILTER (WHERE (redis_sync.command('HGET', 'mdel:' || id, 'v') #>> '{}')::int = v) AS cached
  FROM m_del;
SELECT count(*) AS deleted_keys_left FROM generate_series(1, 50) g
 WHERE NOT EXISTS (SELECT FROM m_del WHERE id = g)
   AND redis_sync.command('EXISTS', 'mdel:' || g) #>> '{}' <> '0';
SELECT count(*) AS tombstones FROM generate_series(1, 50) g
 WHERE NOT EXISTS (SELECT FROM m_del WHERE id = g)
   AND (redis_sync.command('PTTL', redis_sync.version_key('mdel:' || g)) #>> '{}')::bigint > 0;
SELECT count(*) AS problems FROM redis_sync.verify('m_del');

-- a TRUNCATE and >= 32 new rows in one transaction, Redis's script cache
-- empty (a restart, SCRIPT FLUSH): the purge goes through the script and is
-- resent as EVAL after NOSCRIPT.  Had it shared the rows' pipeline, it would
-- have been resent after their MULTI chunks and deleted their rows; its
-- deletes go first, in round trips of their own whose replies (and resends)
-- are read before the rows are sent, so the rows then go as MULTI chunks.
CREATE TABLE m_purge (id int PRIMARY KEY, v int);
INSERT INTO m_purge SELECT g, g FROM generate_series(1, 40) g;
SELECT redis_sync.write_through('m_purge', key_prefix => 'mpu:', warm => false);
SELECT redis_sync.warm('m_purge');
SELECT redis_sync.command('SCRIPT', 'FLUSH') #>> '{}' AS flushed;
SELECT pg_temp.execs() AS x0 \gset
BEGIN;
TRUNCATE m_purge;
INSERT INTO m_purge SELECT g, g + 1000 FROM generate_series(1, 40) g;
COMMIT;
SELECT pg_temp.execs() - :x0 AS multi_used;
SELECT redis_sync.command('HGET', 'mpu:1', 'v') #>> '{}' AS v1;
SELECT count(*) AS problems FROM redis_sync.verify('m_purge');

-- superuser only: a user cannot turn the unfenced path back on where an
-- administrator turned it off
CREATE ROLE rs_bulk_multi_user;
SET ROLE rs_bulk_multi_user;
SET redis_sync.bulk_multi = on;
RESET ROLE;
DROP ROLE rs_bulk_multi_user;

-- the connection is named after the backend, the system, its timeline,
-- this server and its run
SELECT redis_sync.command('CLIENT', 'INFO') #>> '{}' ~ ('name=redis_sync:' || pg_backend_pid() || ':[0-9a-f]+:[0-9]+:[0-9a-f]+-[0-9]+:[0-9]+ ')
  AS named;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['m_h', 'm_j', 'm_t', 'm_i', 'f_h', 'f_j', 'f_t', 'f_i', 'm_strict', 'm_purge', 'm_del'] LOOP
    PERFORM redis_sync.unsync(t::regclass);
    EXECUTE format('DROP TABLE %I', t);
  END LOOP;
END $$;
