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
-- array bounds inside composites (and arrays of them) survive both formats:
-- json stores such a composite as a JSON string of its text
UPDATE rt SET cp = ROW(1, 'a:b', '[2:3]={5,6}') WHERE id = 1;
UPDATE rt_j SET cp = ROW(1, 'a:b', '[2:3]={5,6}') WHERE id = 1;
UPDATE rt_j SET cpa = ARRAY[ROW(1, 'x', '[0:0]={7}')::rt_pair, NULL] WHERE id = 2;
SELECT (redis_sync.get(NULL::rt, '1')).cp AS hash_nested, (redis_sync.get(NULL::rt_j, '1')).cp AS json_nested,
       (redis_sync.get(NULL::rt_j, '2')).cpa AS json_nested_in_array;
SELECT (redis_sync.command('GET', 'rtj:1') #>> '{}')::jsonb -> 'cp' AS json_nested_as_text,
       (redis_sync.command('GET', 'rtj:2') #>> '{}')::jsonb -> 'cpa' AS json_array_as_text,
       (redis_sync.command('GET', 'rtj:2') #>> '{}')::jsonb -> 'cp' AS plain_composite_object;
SELECT rr.id, redis_sync.get(NULL::rt_j, rr.id::text)::text = rr::text AS json_exact FROM rt_j rr ORDER BY rr.id;
SELECT * FROM redis_sync.verify('rt_j');
-- a cold cache: get() populates, and reads back the same
SELECT redis_sync.command('DEL', 'rt:1', 'rtj:1');
SELECT redis_sync.get(NULL::rt, '1')::text = rr::text AS miss_exact FROM rt rr WHERE id = 1;
SELECT redis_sync.get(NULL::rt, '1')::text = rr::text AS hit_exact FROM rt rr WHERE id = 1;
SELECT redis_sync.get(NULL::rt_j, '1')::text = rr::text AS json_hit_exact FROM rt_j rr WHERE id = 1;

-- json inside arrays and composites: JSON null and SQL NULL stay apart
CREATE TYPE rt_nj AS (j jsonb, k json, z int[]);
CREATE TABLE rt_n (id int PRIMARY KEY, c rt_nj, a jsonb[], ca rt_nj[], k json);
SELECT redis_sync.write_through('rt_n', key_prefix => 'rtn:', format => 'json');
INSERT INTO rt_n VALUES
 (1, ROW('null', 'null', '{1}'), ARRAY['null'::jsonb, NULL, '{"a": null}'],
     ARRAY[ROW('null', NULL, '{3}')::rt_nj], '{"b" :  1, "a": null}'),
 (2, ROW(NULL, NULL, NULL), ARRAY[NULL, '1'::jsonb], ARRAY[ROW('{"x": null}', '[1, null]', '{}')::rt_nj], 'null'),
 (3, ROW('{"x": null}', '[1,null]', '[0:0]={1}'), '{}', '{}', NULL);
SELECT id, redis_sync.command('GET', 'rtn:' || id) #>> '{}' AS cached FROM rt_n ORDER BY id;
SELECT rr.id, redis_sync.get(NULL::rt_n, rr.id::text)::text = rr::text AS exact,
       (redis_sync.get(NULL::rt_n, rr.id::text)).a[1] IS NULL AS a1_sql_null,
       ((redis_sync.get(NULL::rt_n, rr.id::text)).c).j IS NULL AS cj_sql_null
  FROM rt_n rr ORDER BY rr.id;
SELECT * FROM redis_sync.verify('rt_n');

-- write-behind takes back what the json and hash formats wrote, exactly
CREATE TABLE rt_nwb (LIKE rt_n INCLUDING ALL);
SELECT redis_sync.write_behind('rt_nwb', key_prefix => 'rtnwb:', format => 'json', flush_interval => '1 h');
CREATE TABLE rt_jwb (LIKE rt INCLUDING ALL);
SELECT redis_sync.write_behind('rt_jwb', key_prefix => 'rtjwb:', format => 'json', flush_interval => '1 h');
CREATE TABLE rt_hwb (LIKE rt INCLUDING ALL);
SELECT redis_sync.write_behind('rt_hwb', key_prefix => 'rthwb:', flush_interval => '1 h');
SELECT count(*) AS copied FROM rt_n,
       LATERAL redis_sync.command('SET', 'rtnwb:' || id, redis_sync.command('GET', 'rtn:' || id) #>> '{}') s,
       LATERAL redis_sync.command('SADD', 'rtnwb:dirty', id::text) a;
SELECT count(*) AS copied FROM rt_j,
       LATERAL redis_sync.command('SET', 'rtjwb:' || id, redis_sync.command('GET', 'rtj:' || id) #>> '{}') s,
       LATERAL redis_sync.command('SADD', 'rtjwb:dirty', id::text) a;
SELECT count(*) AS copied FROM rt,
       LATERAL redis_sync.command(VARIADIC ARRAY['HSET', 'rthwb:' || id]
           || ARRAY(SELECT jsonb_array_elements_text(redis_sync.command('HGETALL', 'rt:' || id)))) s,
       LATERAL redis_sync.command('SADD', 'rthwb:dirty', id::text) a;
SELECT redis_sync.flush();
SELECT relid, member, error FROM redis_sync.dead_letters WHERE relid IN ('rt_nwb'::regclass, 'rt_jwb'::regclass, 'rt_hwb'::regclass);
-- (JSON null in a json or jsonb column itself writes SQL NULL: the drain's
-- NULL rule, see the README; inside arrays and composites it is exact)
CREATE FUNCTION rt_col(r anyelement, col name) RETURNS text LANGUAGE plpgsql AS $$
DECLARE v text;
BEGIN
    EXECUTE format('SELECT ($1).%I::text', col) INTO v USING r;
    RETURN v;
END $$;
CREATE FUNCTION rt_diff(tbl regclass, other regclass) RETURNS TABLE (id int, col name) LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT o.id, a.attname FROM %s o LEFT JOIN %s w ON w.id = o.id, pg_attribute a '
        ' WHERE a.attrelid = %L::regclass AND a.attnum > 0 AND NOT a.attisdropped '
        '   AND rt_col(o, a.attname) IS DISTINCT FROM rt_col(w, a.attname) ORDER BY 1, 2', tbl, other, tbl);
END $$;
SELECT * FROM rt_diff('rt_n', 'rt_nwb');
-- numbers are read digit for digit (-0 keeps its sign), json text verbatim
SELECT * FROM rt_diff('rt_j', 'rt_jwb');
SELECT * FROM rt_diff('rt', 'rt_hwb');
SELECT o.id, w::text = o::text AS hash_drain_exact FROM rt o LEFT JOIN rt_hwb w USING (id) ORDER BY 1;

-- the string format, one column at a time through every type family: the
-- canonical text of each value is drained back into the table exactly
SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'; SET IntervalStyle = 'postgres';
SET extra_float_digits = 1; SET bytea_output = 'hex';
CREATE TABLE rt_swb (LIKE rt INCLUDING ALL);
INSERT INTO rt_swb (id) SELECT id FROM rt;
\o /dev/null
\set ECHO none
SELECT q.stmt
  FROM pg_attribute a,
       LATERAL (VALUES (1, format('SELECT redis_sync.write_behind(%L, key_prefix => %L, format => %L, columns => %L, flush_interval => %L)',
                                  'rt_swb', 'rts:', 'string', ARRAY[a.attname], '1 h')),
                       (2, format('SELECT count(*) FROM rt r0, LATERAL redis_sync.command(%L, %L || r0.id, r0.%I::text) s0, '
                                  'LATERAL redis_sync.command(%L, %L, r0.id::text) d0 WHERE r0.%I::text IS NOT NULL', 'SET', 'rts:',
                                  a.attname, 'SADD', 'rts:dirty', a.attname)),
                       (3, 'SELECT redis_sync.flush()')) q(n, stmt)
 WHERE a.attrelid = 'rt_swb'::regclass AND a.attnum > 1 AND NOT a.attisdropped
 ORDER BY a.attnum, q.n \gexec
\o
\set ECHO all
RESET DateStyle; RESET TimeZone; RESET IntervalStyle; RESET extra_float_digits; RESET bytea_output;
SELECT member, error FROM redis_sync.dead_letters WHERE relid = 'rt_swb'::regclass;
SELECT o.id, w::text = o::text AS string_drain_exact FROM rt o LEFT JOIN rt_swb w USING (id) ORDER BY 1;
SELECT * FROM rt_diff('rt', 'rt_swb');
-- verify() of the string format: a column every row has, freshly written
SELECT redis_sync.write_behind('rt_swb', key_prefix => 'rts:', format => 'string', columns => '{f8}', flush_interval => '1 h');
SELECT count(*) AS written FROM rt, LATERAL redis_sync.command('SET', 'rts:' || id, f8::text) s;
SELECT * FROM redis_sync.verify('rt_swb');
UPDATE rt_swb SET f8 = 2 WHERE id = 2;
SELECT key, problem FROM redis_sync.verify('rt_swb');

-- 20 MB of text: hash and json write-through (get(), verify()), and the
-- string format drained back
CREATE TABLE rt_big (id int PRIMARY KEY, t text);
CREATE TABLE rt_bigj (LIKE rt_big INCLUDING ALL);
CREATE TABLE rt_bigwb (LIKE rt_big INCLUDING ALL);
SELECT redis_sync.write_through('rt_big', key_prefix => 'big:');
SELECT redis_sync.write_through('rt_bigj', key_prefix => 'bigj:', format => 'json');
SELECT redis_sync.write_behind('rt_bigwb', key_prefix => 'bigwb:', format => 'string', flush_interval => '1 h');
INSERT INTO rt_big VALUES (1, repeat(E'ab\\"ü😀\n', 20 * 1024 * 1024 / 10));
INSERT INTO rt_bigj SELECT * FROM rt_big;
SELECT octet_length(t) AS bytes FROM rt_big;
SELECT redis_sync.get(NULL::rt_big, '1') = b AS hash_exact, redis_sync.get(NULL::rt_bigj, '1') = b AS json_exact
  FROM rt_big b;
SELECT * FROM redis_sync.verify('rt_big');
SELECT * FROM redis_sync.verify('rt_bigj');
SELECT redis_sync.command('SET', 'bigwb:1', t) AS set, redis_sync.command('SADD', 'bigwb:dirty', '1') AS sadd FROM rt_big;
SELECT redis_sync.flush();
SELECT w.t = b.t AS drained_exact FROM rt_big b JOIN rt_bigwb w USING (id);
SELECT * FROM redis_sync.verify('rt_bigwb');
DROP TABLE rt_n, rt_nwb, rt_jwb, rt_hwb, rt_swb, rt_big, rt_bigj, rt_bigwb;
DROP FUNCTION rt_diff, rt_col;
DROP TYPE rt_nj;

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
