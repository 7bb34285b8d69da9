-- roundtrip: every type family survives table -> Redis -> get() unchanged,
-- and verify() reports nothing, in the hash and json formats
CREATE TYPE rt_mood AS ENUM ('sad', 'ok', 'happy:yes');
CREATE DOMAIN rt_posint AS int CHECK (VALUE > 0);
CREATE TYPE rt_pair AS (x int, y text, z int[]);
CREATE DOMAIN rt_jdom AS jsonb;
CREATE TABLE rt (
    id int PRIMARY KEY,
    i2 int2, i4 int, i8 int8, num numeric, num_t numeric(10, 3),
    f4 real, f8 float8,
    t text, vc varchar(5), ch char(4), bt bit(5), vb varbit,
    by bytea,
    d date, ts timestamp, tstz timestamptz, tm time, tmtz timetz, iv interval,
    u uuid, ip inet, cid cidr, mac macaddr,
    j json, jb jsonb, jd rt_jdom,
    ai int[], at text[], a2 int[], ats timestamptz[],
    cp rt_pair, cpa rt_pair[],
    en rt_mood, dm rt_posint,
    r int4range, rts tstzrange, mr int4multirange,
    b bool, x xml, pt point,
    "odd name" text, "a:b{c}" text, "Ünï ""q""" int
);
CREATE TABLE rt_j (LIKE rt INCLUDING ALL);
SELECT redis_sync.write_through('rt', key_prefix => 'rt:');
SELECT redis_sync.write_through('rt_j', key_prefix => 'rtj:', format => 'json');
INSERT INTO rt VALUES
 (1, -32768, 2147483647, -9223372036854775808, 'NaN', 1.5,
  '-0', '-0', E'tab\there "quoted" \\ back\nnewline ünï 😀', 'abc', 'ab', B'10101', B'1',
  '\x00ff10', '4713-01-01 BC', 'infinity', '-infinity', '24:00:00', '23:59:59.999999+14:59', '-178000000 years',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '::ffff:1.2.3.4/96', '10.0.0.0/8', '08:00:2b:01:02:03',
  '{"b": 1,  "a": [1, 2.50, null]}', 'null', '"text"',
  '[0:2]={1,NULL,3}', '{NULL,"",NULL,"a,b"}', '{{1,2},{3,4}}', '{infinity,2024-01-01 00:00:00+00}',
  ROW(1, 'a:b', '{5,6}'), ARRAY[ROW(NULL, NULL, NULL)::rt_pair, ROW(2, '', '{}')::rt_pair],
  'happy:yes', 7,
  'empty', '[2024-01-01 00:00+00,infinity)', '{[1,3),[5,7)}',
  false, '<a b="1">x &amp; y</a>', '(1.5,-0)',
  'sp ace', '{}', 42),
 (2, 0, 0, 0, 'Infinity', '-0.000', 'NaN', 'Infinity', '', '', '', B'00000', B'', '\x', '2024-02-29',
  '2000-01-01 00:00:00.000001', '1970-01-01 00:00:00+00', '00:00', '00:00+00', '0',
  '00000000-0000-0000-0000-000000000000', '0.0.0.0', '::/0', 'ff:ff:ff:ff:ff:ff',
  '[]', '{}', '[]', '{}', '{}', '{}', '{}', ROW(NULL, NULL, NULL), '{}', 'sad', 1,
  '[1,2]', 'empty', '{}', true, '', '(0,0)', NULL, NULL, NULL);
INSERT INTO rt (id, i2, i4, i8, num, f4, f8, iv, ai, at)
VALUES (3, 1, -1, 1, '-Infinity', 3.4028235e38, 1e-308, '1 year 2 mons -3 days -04:05:06.7',
        '[-5:-5]={1}', '{{NULL}}');
INSERT INTO rt (id, num, f4, f8, t, d, ts, tstz, jb)
VALUES (4, 0.1 + 0.2, 0.1, 0.1 + 0.2, repeat('x', 100000), '-infinity', '0044-03-15 12:00 BC',
        '0044-03-15 12:00+01 BC', 'null');
INSERT INTO rt_j SELECT * FROM rt;
-- odd reader settings do not matter
SET DateStyle = 'SQL, DMY'; SET TimeZone = 'Pacific/Chatham'; SET IntervalStyle = 'sql_standard';
SET extra_float_digits = -15; SET bytea_output = 'escape';
SELECT rr.id, redis_sync.get(NULL::rt, rr.id::text)::text = rr::text AS hash_exact,
       redis_sync.get(NULL::rt_j, rr.id::text)::text = rr::text AS json_exact
  FROM rt rr ORDER BY rr.id;
-- the columns one by one, for a readable failure
SELECT rr.id, c.key AS col
  FROM rt rr, jsonb_each(to_jsonb(rr)) c,
       LATERAL (SELECT to_jsonb(redis_sync.get(NULL::rt, rr.id::text)) -> c.key AS h,
                       to_jsonb(redis_sync.get(NULL::rt_j, rr.id::text)) -> c.key AS j) g
 WHERE g.h IS DISTINCT FROM c.value OR g.j IS DISTINCT FROM c.value ORDER BY 1, 2;
SELECT * FROM redis_sync.verify('rt');
SELECT * FROM redis_sync.verify('rt_j');
RESET DateStyle; RESET TimeZone; RESET IntervalStyle; RESET extra_float_digits; RESET bytea_output;
-- json format: JSON null in a json column stays JSON null, SQL NULL is absent,
-- arrays whose bounds are not 1 are strings of their text
SELECT (redis_sync.command('GET', 'rtj:1') #>> '{}')::jsonb -> 'jb' AS jsonb_null,
       (redis_sync.command('GET', 'rtj:3') #>> '{}')::jsonb ? 'jb' AS sql_null_present,
       (redis_sync.command('GET', 'rtj:1') #>> '{}')::jsonb -> 'ai' AS bounded_array,
       (redis_sync.command('GET', 'rtj:2') #>> '{}')::jsonb -> 'a2' AS plain_array;
SELECT (redis_sync.get(NULL::rt_j, '1')).jb IS NOT NULL AS jsonb_null_not_sql_null,
       (redis_sync.get(NULL::rt_j, '3')).jb IS NULL AS sql_null,
       (redis_sync.get(NULL::rt, '1')).j::text AS json_verbatim_hash,
       (redis_sync.get(NULL::rt_j, '1')).j::text AS json_verbatim_json;
-- the hash format keeps array bounds inside composites too; the json format
-- cannot (documented: a composite is a JSON object, its arrays JSON arrays)
UPDATE rt SET cp = ROW(1, 'a:b', '[2:3]={5,6}') WHERE id = 1;
UPDATE rt_j SET cp = ROW(1, 'a:b', '[2:3]={5,6}') WHERE id = 1;
SELECT (redis_sync.get(NULL::rt, '1')).cp AS hash_nested, (redis_sync.get(NULL::rt_j, '1')).cp AS json_nested;
-- a cold cache: get() populates, and reads back the same
SELECT redis_sync.command('DEL', 'rt:1', 'rtj:1');
SELECT redis_sync.get(NULL::rt, '1')::text = rr::text AS miss_exact FROM rt rr WHERE id = 1;
SELECT redis_sync.get(NULL::rt, '1')::text = rr::text AS hit_exact FROM rt rr WHERE id = 1;
SELECT redis_sync.get(NULL::rt_j, '1')::text = rr::text AS json_hit_exact FROM rt_j rr WHERE id = 1;

-- 500 columns
DO $$ BEGIN
EXECUTE (SELECT format('CREATE TABLE rt_wide (id int PRIMARY KEY, %s)',
                       string_agg(format('c%s numeric', g), ', ')) FROM generate_series(1, 500) g);
END $$;
SELECT redis_sync.write_through('rt_wide', key_prefix => 'wide:');
DO $$ BEGIN
EXECUTE (SELECT format('INSERT INTO rt_wide VALUES (1, %s), (2, %s)', string_agg(format('%s.5', g), ', '),
                       string_agg(CASE WHEN g % 2 = 0 THEN 'NULL' ELSE g::text END, ', '))
           FROM generate_series(1, 500) g);
END $$;
SELECT jsonb_array_length(redis_sync.command('HGETALL', 'wide:1')) / 2 AS fields;
SELECT redis_sync.get(NULL::rt_wide, id::text)::text = rr::text AS wide_exact FROM rt_wide rr ORDER BY id;
SELECT * FROM redis_sync.verify('rt_wide');
UPDATE rt_wide SET c250 = 0;
SELECT redis_sync.command('HSET', 'wide:2', 'c499', '1');
SELECT key, problem FROM redis_sync.verify('rt_wide');
SELECT redis_sync.resync('rt_wide') AS repaired;
SELECT * FROM redis_sync.verify('rt_wide');
SELECT redis_sync.write_through('rt_wide', key_prefix => 'widej:', format => 'json');
SELECT redis_sync.warm('rt_wide') AS warmed;
SELECT redis_sync.get(NULL::rt_wide, id::text)::text = rr::text AS wide_json_exact FROM rt_wide rr ORDER BY id;
SELECT * FROM redis_sync.verify('rt_wide');

DROP TABLE rt, rt_j, rt_wide;
DROP TYPE rt_pair, rt_mood;
DROP DOMAIN rt_posint, rt_jdom;
