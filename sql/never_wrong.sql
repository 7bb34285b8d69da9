-- Adversarial review of issue 13: reader settings and DDL that must not make
-- get() or the drain return values the table does not hold.
SET client_min_messages = notice;

-- array_nulls = off reads an unquoted NULL array element as the string
-- "NULL": get() and the drain decode under the canonical settings, so a NULL
-- element stays NULL and the string "NULL" stays a string
CREATE TABLE nw_arr (id int PRIMARY KEY, a text[]);
SELECT redis_sync.write_through('nw_arr', key_prefix => 'nw_arr:', warm => false);
INSERT INTO nw_arr VALUES (1, ARRAY['x', NULL, 'NULL']);
SELECT redis_sync.command('HGET', 'nw_arr:1', 'a');
SET array_nulls = off;
SELECT a, a[2] IS NULL AS null_element, a[3] = 'NULL' AS string_element
  FROM redis_sync.get(NULL::nw_arr, '1');
SELECT count(*) FROM redis_sync.verify('nw_arr');
-- json format: arrays with bounds travel as strings of their text
CREATE TABLE nw_arrj (id int PRIMARY KEY, a text[]);
SELECT redis_sync.write_through('nw_arrj', key_prefix => 'nw_arrj:', format => 'json', warm => false);
RESET array_nulls;
INSERT INTO nw_arrj VALUES (1, '[0:2]={x,NULL,NULL}'::text[]);
UPDATE nw_arrj SET a[2] = 'NULL';
SET array_nulls = off;
SELECT redis_sync.command('GET', 'nw_arrj:1');
SELECT a, a[1] IS NULL AS null_element, a[0] = 'x' AS first
  FROM redis_sync.get(NULL::nw_arrj, '1');
-- write-behind: flush() drains in this session, whose array_nulls is off
CREATE TABLE nw_wb (id int PRIMARY KEY, a text[]);
SELECT redis_sync.write_behind('nw_wb', key_prefix => 'nw_wb:', dirty_set => 'nw_wb-dirty', flush_interval => '1 h');
INSERT INTO nw_wb VALUES (1, NULL);
SELECT redis_sync.command('HSET', 'nw_wb:1', 'a', '{y,NULL,"NULL"}');
SELECT redis_sync.command('SADD', 'nw_wb-dirty', '1');
SELECT redis_sync.flush('nw_wb');
SELECT a, a[2] IS NULL AS null_element, a[3] = 'NULL' AS string_element FROM nw_wb;
RESET array_nulls;
-- xmloption = document refuses xml content that is not a document: get()
-- and the drain read xml under xmloption = content, which takes both
CREATE TABLE nw_xml (id int PRIMARY KEY, x xml);
SELECT redis_sync.write_through('nw_xml', key_prefix => 'nw_xml:', warm => false);
INSERT INTO nw_xml VALUES (1, 'abc<a/>'), (2, '<!DOCTYPE a><a/>');
SET xmloption = document;
SELECT id, x::text FROM redis_sync.get(NULL::nw_xml, '1');
SELECT id, x::text FROM redis_sync.get(NULL::nw_xml, '2');
RESET xmloption;
SELECT redis_sync.unsync('nw_xml', purge => true);
DROP TABLE nw_xml;

-- invalidate: get() caches a hash of every column.  A column added with a
-- default, renamed or retyped (USING) would make a hit return NULL or the
-- old value: the cached rows are removed at commit of such DDL
CREATE TABLE nw_inv (id int PRIMARY KEY, a text);
SELECT redis_sync.invalidate('nw_inv', key_prefix => 'nw_inv:');
INSERT INTO nw_inv VALUES (1, 'a');
SELECT * FROM redis_sync.get(NULL::nw_inv, '1');
SELECT redis_sync.command('EXISTS', 'nw_inv:1');
ALTER TABLE nw_inv ADD COLUMN c int DEFAULT 7;
SELECT redis_sync.command('EXISTS', 'nw_inv:1');
SELECT * FROM redis_sync.get(NULL::nw_inv, '1');
SELECT * FROM redis_sync.get(NULL::nw_inv, '1');
ALTER TABLE nw_inv RENAME COLUMN a TO a2;
SELECT * FROM redis_sync.get(NULL::nw_inv, '1');
ALTER TABLE nw_inv ALTER COLUMN c TYPE text USING (c * 2)::text;
SELECT * FROM redis_sync.get(NULL::nw_inv, '1');
SELECT * FROM redis_sync.get(NULL::nw_inv, '1');
-- a column dropped: the next miss caches the remaining ones
ALTER TABLE nw_inv DROP COLUMN c;
SELECT redis_sync.command('EXISTS', 'nw_inv:1');
SELECT * FROM redis_sync.get(NULL::nw_inv, '1');
-- a rolled-back ADD COLUMN removes nothing
BEGIN;
ALTER TABLE nw_inv ADD COLUMN d int DEFAULT 1;
ROLLBACK;
SELECT redis_sync.command('EXISTS', 'nw_inv:1');
-- write-through: adding a column changes nothing cached (it is not synced)
CREATE TABLE nw_wt (id int PRIMARY KEY, a text);
SELECT redis_sync.write_through('nw_wt', key_prefix => 'nw_wt:', warm => false);
INSERT INTO nw_wt VALUES (1, 'a');
ALTER TABLE nw_wt ADD COLUMN c int DEFAULT 7;
SELECT redis_sync.command('HGETALL', 'nw_wt:1');

SELECT redis_sync.unsync(t, purge => true) FROM unnest('{nw_arr,nw_arrj,nw_wb,nw_inv,nw_wt}'::regclass[]) t;
DROP TABLE nw_arr, nw_arrj, nw_wb, nw_inv, nw_wt;

-- ALTER TYPE changing the text of values: an enum value renamed leaves the
-- old key (and old values in arrays, domains, composites) behind: the
-- cached keys of tables using the type are removed at commit.  Adding an
-- enum value changes nothing cached.
CREATE TYPE nw_mood AS ENUM ('sad', 'ok');
CREATE TYPE nw_pair AS (m nw_mood, n int);
CREATE DOMAIN nw_moods AS nw_mood[];
CREATE TABLE nw_em (m nw_mood PRIMARY KEY, v text);
SELECT redis_sync.write_through('nw_em', key_prefix => 'nw_em:', warm => false);
CREATE TABLE nw_ep (id int PRIMARY KEY, p nw_pair, ms nw_moods);
SELECT redis_sync.write_through('nw_ep', key_prefix => 'nw_ep:', format => 'json', warm => false);
CREATE TABLE nw_eo (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('nw_eo', key_prefix => 'nw_eo:', warm => false);
INSERT INTO nw_em VALUES ('sad', 'x'), ('ok', 'y');
INSERT INTO nw_ep VALUES (1, '(sad,1)', '{sad,ok}');
INSERT INTO nw_eo VALUES (1, 'o');
ALTER TYPE nw_mood ADD VALUE 'meh';
SELECT redis_sync.command('EXISTS', 'nw_em:sad', 'nw_em:ok', 'nw_ep:1', 'nw_eo:1');
ALTER TYPE nw_mood RENAME VALUE 'sad' TO 'happy';
SELECT redis_sync.command('EXISTS', 'nw_em:sad', 'nw_em:ok', 'nw_ep:1', 'nw_eo:1');
UPDATE nw_em SET v = v || '!';
SELECT * FROM redis_sync.verify('nw_em');
SELECT * FROM redis_sync.get(NULL::nw_ep, '1');
SELECT * FROM redis_sync.verify('nw_ep');
-- a composite's attribute renamed: the json format names it
ALTER TYPE nw_pair RENAME ATTRIBUTE n TO n2;
SELECT redis_sync.command('EXISTS', 'nw_ep:1');
SELECT * FROM redis_sync.get(NULL::nw_ep, '1');
SELECT redis_sync.command('GET', 'nw_ep:1');
SELECT redis_sync.unsync(t, purge => true) FROM unnest('{nw_em,nw_ep,nw_eo}'::regclass[]) t;
DROP TABLE nw_em, nw_ep, nw_eo;
DROP DOMAIN nw_moods;
DROP TYPE nw_pair;
DROP TYPE nw_mood;

-- write-behind members whose key values equal an existing row's key but are
-- written otherwise (numeric scale, interval units, float -0): the row's key
-- is its canonical text (nw_nk:1.0), so such a member is another key and
-- would let two keys feed one row: dead letters, the row untouched
CREATE TABLE nw_nk (k numeric, i interval, f float8, n int, PRIMARY KEY (k, i, f));
SELECT redis_sync.write_behind('nw_nk', key_prefix => 'nw_nk:', dirty_set => 'nw_nk-dirty',
                               flush_interval => '1 h', on_missing => 'delete');
INSERT INTO nw_nk VALUES (1.0, '1 mon', 0, 1);
SELECT redis_sync.escape_key('1.0', '1 mon', '0') AS row_key;
SELECT redis_sync.command('HSET', 'nw_nk:' || redis_sync.escape_key('1.00', '1 mon', '0'), 'n', '70');
SELECT redis_sync.command('HSET', 'nw_nk:' || redis_sync.escape_key('1.0', '30 days', '0'), 'n', '71');
SELECT redis_sync.command('HSET', 'nw_nk:' || redis_sync.escape_key('1.0', '1 mon', '-0'), 'n', '72');
SELECT redis_sync.command('HSET', 'nw_nk:' || redis_sync.escape_key('2.0', '1 mon', '0'), 'n', '2');
SELECT redis_sync.command('SADD', 'nw_nk-dirty', redis_sync.escape_key('1.00', '1 mon', '0'),
                          redis_sync.escape_key('1.0', '30 days', '0'), redis_sync.escape_key('1.0', '1 mon', '-0'),
                          redis_sync.escape_key('2.0', '1 mon', '0'));
SELECT redis_sync.flush('nw_nk');
SELECT * FROM nw_nk ORDER BY k;
SELECT member, error, sqlstate FROM redis_sync.dead_letters WHERE relid = 'nw_nk'::regclass ORDER BY member;
-- a member whose key is gone does not delete the equal row either (on_missing => delete)
SELECT redis_sync.discard_dead_letters('nw_nk');
SELECT redis_sync.command('SADD', 'nw_nk-dirty', redis_sync.escape_key('1.000', '1 mon', '0'));
SELECT redis_sync.flush('nw_nk');
SELECT * FROM nw_nk ORDER BY k;
SELECT member, sqlstate FROM redis_sync.dead_letters WHERE relid = 'nw_nk'::regclass ORDER BY member;
SELECT redis_sync.discard_dead_letters('nw_nk');
-- hset()/hincrby() refuse such a key at once (the drain would dead-letter it)
SELECT redis_sync.hset('nw_nk', redis_sync.escape_key('1.00', '1 mon', '0'), 'n', '9');
SELECT redis_sync.hincrby('nw_nk', redis_sync.escape_key('1.0', '1 mon', '-0'), 'n', 1);
SELECT redis_sync.hincrby('nw_nk', redis_sync.escape_key('1.0', '1 mon', '0'), 'n', 1);
SELECT redis_sync.unsync('nw_nk');
DROP TABLE nw_nk;
