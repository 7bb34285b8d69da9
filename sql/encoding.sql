-- encoding: keys and values are the same whatever the writer's or reader's
-- DateStyle, TimeZone, IntervalStyle, bytea_output and extra_float_digits
CREATE TABLE enc_ev (d date PRIMARY KEY, ts timestamptz, t timestamp, iv interval,
                     b bytea, f float8, r real, n numeric);
SELECT redis_sync.write_through('enc_ev', key_prefix => 'ev:');
CREATE TABLE enc_evj (d date PRIMARY KEY, ts timestamptz, iv interval, b bytea, f float8);
SELECT redis_sync.write_through('enc_evj', key_prefix => 'evj:', format => 'json');

-- writer 1: defaults
INSERT INTO enc_ev VALUES ('2024-02-03', '2024-02-03 12:34:56.789+01', '2024-02-03 01:02:03',
                           '1 year 2 mons -3 days 04:05:06.5', '\x00ff', 0.1 + 0.2, 0.1, 1.50);
INSERT INTO enc_evj VALUES ('2024-02-03', '2024-02-03 12:34:56.789+01', '-1 day +02:00', '\xdead', 1e-300);
SELECT redis_sync.command('KEYS', 'ev:*') AS keys;
SELECT h('ev:2024-02-03') AS canonical;
SELECT redis_sync.command('GET', 'evj:2024-02-03') AS canonical_json;
SELECT h('ev:2024-02-03') AS v1 \gset
SELECT redis_sync.command('GET', 'evj:2024-02-03') AS j1 \gset

-- writer 2: every setting different; rewrites the same values
SET DateStyle = 'German, DMY';
SET TimeZone = 'America/New_York';
SET IntervalStyle = 'sql_standard';
SET bytea_output = 'escape';
SET extra_float_digits = 0;
UPDATE enc_ev SET ts = ts + '0 s', f = f + 0, b = b || '', r = r + 0;  -- same values: no change
UPDATE enc_ev SET n = 1.50, iv = iv WHERE d = '03.02.2024';
UPDATE enc_ev SET f = f * 1 WHERE d = '03.02.2024';
-- force a push with the same values under these settings
UPDATE enc_ev SET n = 2; UPDATE enc_ev SET n = 1.50;
UPDATE enc_evj SET f = 1; UPDATE enc_evj SET f = 1e-300;
SELECT redis_sync.command('KEYS', 'ev:*') AS keys;
SELECT h('ev:2024-02-03') = :'v1'::jsonb AS hash_identical;
SELECT redis_sync.command('GET', 'evj:2024-02-03') = :'j1'::jsonb AS json_identical;

-- a key written under German DateStyle: still one key, ISO
INSERT INTO enc_ev (d, f) VALUES ('04.02.2024', 0.30000000000000004);
SELECT redis_sync.command('KEYS', 'ev:*') AS keys_sorted \gset
SELECT array(SELECT jsonb_array_elements_text(:'keys_sorted'::jsonb) ORDER BY 1) AS keys;
SELECT h('ev:2024-02-04') ->> 'f' AS exact_float;

-- get() under these odd reader settings: exact, read back as the table holds it
SELECT (g).d = t.d AND (g).ts = t.ts AND (g).t = t.t AND (g).iv::text = t.iv::text
       AND (g).b = t.b AND (g).f = t.f AND (g).r = t.r AND (g).n::text = t.n::text AS get_exact
  FROM (SELECT redis_sync.get(NULL::enc_ev, '03.02.2024') AS g) s, enc_ev t WHERE t.d = '2024-02-03';
SELECT (g).f = t.f AS get_exact_float FROM (SELECT redis_sync.get(NULL::enc_ev, '04.02.2024') AS g) s,
       enc_ev t WHERE t.d = '2024-02-04';
SELECT (g).ts = t.ts AND (g).iv = t.iv AND (g).b = t.b AND (g).f = t.f AS get_json_exact
  FROM (SELECT redis_sync.get(NULL::enc_evj, '03.02.2024') AS g) s, enc_evj t;
SET DateStyle = 'SQL, MDY';
SELECT (redis_sync.get(NULL::enc_ev, '02/04/2024')).d = '2024-02-04'::date AS mdy_reader;
-- verify() under the odd settings: nothing to report
SELECT * FROM redis_sync.verify('enc_ev');
SELECT * FROM redis_sync.verify('enc_evj');
RESET DateStyle; RESET TimeZone; RESET IntervalStyle; RESET bytea_output; RESET extra_float_digits;
SELECT * FROM redis_sync.verify('enc_ev');
SELECT redis_sync.resync('enc_ev') AS repaired;

-- a second session with other settings writes the same row: identical bytes
SELECT h('ev:2024-02-03') AS v2 \gset
\c
SET DateStyle = 'Postgres, DMY'; SET TimeZone = 'Asia/Kolkata'; SET IntervalStyle = 'iso_8601';
SET bytea_output = 'escape'; SET extra_float_digits = -3;
UPDATE enc_ev SET n = 3 WHERE d = '2024-02-03'; UPDATE enc_ev SET n = 1.50 WHERE d = '2024-02-03';
SELECT h('ev:2024-02-03') = :'v2'::jsonb AS other_session_identical;
\c

-- bool, char(n), inet, xml: verify() compares what was pushed, resync repairs nothing
CREATE TABLE enc_misc (id int PRIMARY KEY, b bool, c char(5), i inet, x xml, m money);
SELECT redis_sync.write_through('enc_misc', key_prefix => 'misc:', columns => '{b,c,i,x,m}');
INSERT INTO enc_misc VALUES (1, true, 'ab', '10.0.0.1/8', '<a>x</a>', 12.5), (2, NULL, NULL, NULL, NULL, NULL);
SELECT h('misc:1') AS misc;
SELECT * FROM redis_sync.verify('enc_misc');
SELECT redis_sync.resync('enc_misc') AS repaired;
-- a row whose synced columns are all NULL has no key, and is consistent
SELECT redis_sync.command('EXISTS', 'misc:2') AS all_null_key;
SELECT (redis_sync.get(NULL::enc_misc, '2')).id AS all_null_get;
-- a real difference is still found, and repaired
SELECT redis_sync.command('HSET', 'misc:1', 'c', 'zz');
SELECT redis_sync.command('HSET', 'misc:2', 'b', 't');
SELECT key, problem FROM redis_sync.verify('enc_misc') ORDER BY key;
SELECT redis_sync.resync('enc_misc') AS repaired;
SELECT * FROM redis_sync.verify('enc_misc');

DROP TABLE enc_ev, enc_evj, enc_misc;
