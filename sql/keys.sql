-- keys: escaped composite key values, companion keys no row key can reach
CREATE TABLE k_mk (a text, b text, v int, PRIMARY KEY (a, b));
SELECT redis_sync.write_through('k_mk', key_prefix => 'mk:');
INSERT INTO k_mk VALUES ('x:y', 'z', 1), ('x', 'y:z', 2), ('x\', ':z', 3), ('x\:', 'z', 4),
                        ('{t}', 'rs_version', 5), ('a{}b{c}', '}', 6), ('', '', 7);
SELECT k, h(k) ->> 'v' AS v
  FROM jsonb_array_elements_text(redis_sync.command('KEYS', 'mk:*')) k ORDER BY 1;
-- escape_key gives the same form; get() takes the raw values
SELECT redis_sync.escape_key('x:y', 'z'), redis_sync.escape_key('x\', ':z');
-- a two-dimensional array is refused (it was flattened), a NULL key is no key
SELECT rs_error($$SELECT redis_sync.escape_key(VARIADIC ARRAY[['a', 'b'], ['c', 'd']])$$);
SELECT redis_sync._key_row_values(NULL, 'pg_class', 'x:', '{k}') IS NULL AS null_key;
SELECT (redis_sync.get(NULL::k_mk, 'x:y', 'z')).v AS v1, (redis_sync.get(NULL::k_mk, 'x', 'y:z')).v AS v2,
       (redis_sync.get(NULL::k_mk, 'x\', ':z')).v AS v3, (redis_sync.get(NULL::k_mk, '', '')).v AS v7;
-- companion keys: one rule, begins with '{'
SELECT redis_sync.version_key('mk:x\:y:z'), redis_sync.version_key('mk:{t}:rs_version'),
       redis_sync._companion_key('app:{t}:1', ':rs_version'), redis_sync._companion_key('a{}b{c}', ':s'),
       redis_sync._companion_key('a}b', ':s');
SELECT redis_sync.command('EXISTS', redis_sync.version_key('mk:x\:y:z'), redis_sync.version_key('mk:x:y\:z'),
                          redis_sync.version_key('mk:{t}:rs_version'), redis_sync.version_key('mk::')) AS version_keys;
SELECT * FROM redis_sync.verify('k_mk');
UPDATE k_mk SET v = v + 10;
SELECT (redis_sync.get(NULL::k_mk, '{t}', 'rs_version')).v AS v5;
SELECT * FROM redis_sync.verify('k_mk');
-- a key no row can have is extra, and resync deletes it
SELECT redis_sync.command('HSET', 'mk:junk', 'v', '1'), redis_sync.command('HSET', 'mk:x:y:z', 'v', '1');
SELECT key, problem FROM redis_sync.verify('k_mk') ORDER BY key;
SELECT redis_sync.resync('k_mk') AS repaired;
SELECT * FROM redis_sync.verify('k_mk');
-- a key column whose input runs user code (a domain's CHECK in PL/pgSQL that
-- reads a catalog and raises for odd values): resync() reads each key's
-- values in a subtransaction, so the refused one (kd:3) is deleted as junk
-- and the session goes on cleanly (it failed with "improper call to
-- spi_printtup" when the error was caught without one); kd:2 stays
CREATE FUNCTION k_even(int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM count(*) FROM pg_catalog.pg_class WHERE relname = 'k_dom';
    IF $1 % 2 = 1 THEN
        RAISE EXCEPTION 'odd' USING ERRCODE = 'check_violation';
    END IF;
    RETURN true;
END $$;
CREATE DOMAIN k_evenint AS int CHECK (k_even(VALUE));
CREATE TABLE k_dom (id k_evenint PRIMARY KEY, v int);
INSERT INTO k_dom VALUES (2, 20);
SELECT redis_sync.write_through('k_dom', key_prefix => 'kd:', warm => false);
SELECT redis_sync.warm('k_dom');
SELECT redis_sync.command('HSET', 'kd:3', 'v', '1');
SELECT redis_sync.resync('k_dom') AS repaired;
SELECT redis_sync.command('HGET', 'kd:2', 'v') AS kd2, redis_sync.command('EXISTS', 'kd:3') AS kd3;
SELECT * FROM redis_sync.verify('k_dom');
SELECT redis_sync.unsync('k_dom', purge => true);
DROP TABLE k_dom;
DROP DOMAIN k_evenint;
DROP FUNCTION k_even(int);
-- the CHECK function sets its own search_path (as a function a constraint
-- calls should): it applies, the canonical pg_catalog-only path being pinned
-- for the output of reg* values only (resync() failed with 'relation
-- "k_allowed" does not exist', wave 2l review 2)
CREATE TABLE k_allowed (v int);
INSERT INTO k_allowed VALUES (2), (4);
CREATE FUNCTION k_listed(int) RETURNS boolean LANGUAGE plpgsql SET search_path = public AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM k_allowed WHERE v = $1);
END $$;
CREATE DOMAIN k_listedint AS int CHECK (k_listed(VALUE));
CREATE TABLE k_dom2 (id k_listedint PRIMARY KEY, v int);
INSERT INTO k_dom2 VALUES (2, 20);
SELECT redis_sync.write_through('k_dom2', key_prefix => 'kl:', warm => false);
SELECT redis_sync.warm('k_dom2');
SELECT redis_sync.command('HSET', 'kl:3', 'v', '1');
SELECT redis_sync.resync('k_dom2') AS repaired;
SELECT redis_sync.command('HGET', 'kl:2', 'v') AS kl2, redis_sync.command('EXISTS', 'kl:3') AS kl3;
SELECT * FROM redis_sync.verify('k_dom2');
SELECT redis_sync.unsync('k_dom2', purge => true);
-- get() of a cached row whose column is of that domain: decoded without the
-- pinned path too (it failed the same way)
CREATE TABLE k_val (id int PRIMARY KEY, v k_listedint);
INSERT INTO k_val VALUES (1, 4);
SELECT redis_sync.write_through('k_val', key_prefix => 'kv:', warm => false);
SELECT redis_sync.warm('k_val');
SELECT redis_sync.command('HGET', 'kv:1', 'v') AS cached;
SELECT * FROM redis_sync.get(NULL::k_val, '1');
SELECT redis_sync.unsync('k_val', purge => true);
DROP TABLE k_val;
DROP TABLE k_dom2;
DROP DOMAIN k_listedint;
DROP FUNCTION k_listed(int);
DROP TABLE k_allowed;
-- TRUNCATE removes every key of the table, including values ending in the suffix
TRUNCATE k_mk;
SELECT redis_sync.command('KEYS', 'mk:*') AS after_truncate;
SELECT * FROM redis_sync.verify('k_mk');

-- single key column whose values end in the version suffix or look like companions
CREATE TABLE k_one (k text PRIMARY KEY, v int);
SELECT redis_sync.write_through('k_one', key_prefix => 'one:{tag}:');
INSERT INTO k_one VALUES ('y', 1), ('y:rs_version', 2), ('{y}:rs_version', 3), ('{y}', 4);
SELECT k FROM jsonb_array_elements_text(redis_sync.command('KEYS', 'one:*')) k ORDER BY 1;
SELECT k FROM jsonb_array_elements_text(redis_sync.command('KEYS', '{tag}*')) k ORDER BY 1;
SELECT * FROM redis_sync.verify('k_one');
UPDATE k_one SET v = v + 1;
SELECT k, h(k) ->> 'v' AS v FROM jsonb_array_elements_text(redis_sync.command('KEYS', 'one:*')) k ORDER BY 1;
TRUNCATE k_one;
SELECT redis_sync.command('KEYS', 'one:*') AS after_truncate;

-- prefixes: not empty, not beginning with '{'
SELECT rs_error($$SELECT redis_sync.write_through('k_one', key_prefix => '')$$);
SELECT rs_error($$SELECT redis_sync.write_through('k_one', key_prefix => '{k}:')$$);
SELECT rs_error($$SELECT redis_sync.write_behind('k_one', key_prefix => '{wb', flush_interval => '1 h')$$);

-- write-behind: members are escaped key values; each parses to one row
CREATE TABLE k_wb (a text, b int, hits int, PRIMARY KEY (a, b));
SELECT redis_sync.write_behind('k_wb', key_prefix => 'kwb:', flush_interval => '1 h');
SELECT redis_sync.command('HSET', 'kwb:p\:q:1', 'hits', '5'),
       redis_sync.command('HSET', 'kwb:p\\:2', 'hits', '6'),
       redis_sync.command('HSET', 'kwb:p:q:1', 'hits', '7');
SELECT redis_sync.command('SADD', 'kwb:dirty', 'p\:q:1', 'p\\:2', 'p:q:1', 'bad\escape:1');
SELECT redis_sync.flush();
SELECT * FROM k_wb ORDER BY a, b;
SELECT member, error FROM redis_sync.dead_letters WHERE relid = 'k_wb'::regclass ORDER BY member;
SELECT redis_sync.discard_dead_letters();
SELECT * FROM redis_sync.verify('k_wb');
-- a member names exactly one row: not canonical or not valid input is a dead letter
CREATE TABLE k_vc (code varchar(3), n int, hits int, PRIMARY KEY (code, n));
INSERT INTO k_vc VALUES ('abc', 42, 1);
SELECT redis_sync.write_behind('k_vc', key_prefix => 'kvc:', flush_interval => '1 h');
SELECT redis_sync.command('HSET', 'kvc:abcdef:42', 'hits', '100'), redis_sync.command('HSET', 'kvc:abc:042', 'hits', '200'),
       redis_sync.command('HSET', 'kvc:abc:x', 'hits', '300'), redis_sync.command('HSET', 'kvc:abc:42', 'hits', '7');
SELECT redis_sync.command('SADD', 'kvc:dirty', 'abcdef:42', 'abc:042', 'abc:x', 'abc:42');
SELECT redis_sync.flush();
SELECT * FROM k_vc;
SELECT member, sqlstate, error FROM redis_sync.dead_letters WHERE relid = 'k_vc'::regclass ORDER BY member;
SELECT redis_sync.discard_dead_letters('k_vc');
DROP TABLE k_vc;

-- the claim script (Lua) finds the seed markers C wrote: same companion rule
-- for plain, hash-tagged and '}'-containing keys (a mismatch would add the
-- counter twice: 100 -> 201)
CREATE TABLE k_cnt (k text PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO k_cnt VALUES ('plain', 100), ('a}b', 100), ('{x}', 100);
SELECT redis_sync.write_behind('k_cnt', key_prefix => 'cnt:{grp}:', flush_interval => '1 h', dirty_set => 'cnt-dirty:{grp}',
                               counters => '{n}');
CREATE TABLE k_cnt2 (k text PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO k_cnt2 VALUES ('plain', 100), ('a}b', 100);
SELECT redis_sync.write_behind('k_cnt2', key_prefix => 'cnt2:', flush_interval => '1 h', dirty_set => 'cnt2-dirty',
                               counters => '{n}');
SELECT redis_sync.hincrby('k_cnt', redis_sync.escape_key(k), 'n', 1) FROM k_cnt ORDER BY k;
SELECT redis_sync.hincrby('k_cnt2', redis_sync.escape_key(k), 'n', 1) FROM k_cnt2 ORDER BY k;
SELECT redis_sync.command('EXISTS', redis_sync._companion_key('cnt:{grp}:a}b', ':rs_seeded'),
                          redis_sync._companion_key('cnt2:a}b', ':rs_seeded'),
                          redis_sync._companion_key('cnt2:plain', ':rs_seeded')) AS markers;
SELECT redis_sync.flush();
SELECT k, n FROM k_cnt UNION ALL SELECT k, n FROM k_cnt2 ORDER BY 1, 2;
DROP TABLE k_mk, k_one, k_wb, k_cnt, k_cnt2;
