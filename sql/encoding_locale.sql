-- encoding_locale: money and reg* values do not depend on lc_monetary or
-- search_path; two sessions with different settings write identical bytes,
-- get() and verify() are exact under odd reader settings
CREATE SCHEMA enc_s1;
CREATE SCHEMA enc_s2;
CREATE TABLE enc_s1.thing (id int);
CREATE TABLE enc_s2.thing (id int);
CREATE TYPE enc_s1.color AS ENUM ('red');
CREATE FUNCTION enc_s1.fn(int) RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE TYPE enc_mr AS (m money, c regclass);
CREATE TABLE enc_loc (id int PRIMARY KEY, m money, c regclass, t regtype, p regproc,
                      pp regprocedure, ns regnamespace, ca regclass[], cm enc_mr);
SELECT redis_sync.write_through('enc_loc', key_prefix => 'loc:');
CREATE TABLE enc_locj (LIKE enc_loc INCLUDING ALL);
SELECT redis_sync.write_through('enc_locj', key_prefix => 'locj:', format => 'json');

-- writer 1: a German money locale, search_path showing schema 1
SET lc_monetary = 'de_DE.utf8';
SET search_path = enc_s1, public;
INSERT INTO enc_loc VALUES (1, 1234.56, 'thing', 'color', 'fn', 'fn(int)', 'enc_s1',
                            ARRAY['thing', 'enc_s2.thing', 'pg_class']::regclass[],
                            ROW(-7.5, 'thing'));
INSERT INTO enc_locj SELECT * FROM enc_loc;
SELECT 1234.56::money AS session_money_text;
SELECT h('loc:1') AS canonical;
SELECT redis_sync.command('GET', 'locj:1') AS canonical_json;
SELECT h('loc:1') AS v1 \gset
SELECT redis_sync.command('GET', 'locj:1') AS j1 \gset

-- writer 2, another session: C money locale, schema 2 first
\c
SET lc_monetary = 'C';
SET search_path = enc_s2, public;
UPDATE enc_loc SET m = 0; UPDATE enc_loc SET m = 1234.56;
UPDATE enc_locj SET m = 0; UPDATE enc_locj SET m = 1234.56;
SELECT h('loc:1') = :'v1'::jsonb AS hash_identical;
SELECT redis_sync.command('GET', 'locj:1') = :'j1'::jsonb AS json_identical;

-- readers with odd settings get the same OIDs and amounts back
SET lc_monetary = 'de_DE.utf8';
SET search_path = enc_s2, public;
SELECT (g).m = t.m AS money_exact, (g).c = t.c AS regclass_same_oid, (g).t = t.t AS regtype_same_oid,
       (g).p = t.p AS regproc_same_oid, (g).pp = t.pp AS regprocedure_same_oid,
       (g).ns = t.ns AS ns_same_oid, (g).ca = t.ca AS array_same_oids, (g).cm = t.cm AS composite_same
  FROM (SELECT redis_sync.get(NULL::enc_loc, '1') AS g) s, enc_loc t;
SELECT (g).m = t.m AS money_exact, (g).c = t.c AS regclass_same_oid, (g).ca = t.ca AS array_same_oids,
       (g).cm = t.cm AS composite_same
  FROM (SELECT redis_sync.get(NULL::enc_locj, '1') AS g) s, enc_locj t;
SELECT * FROM redis_sync.verify('enc_loc');
SELECT * FROM redis_sync.verify('enc_locj');
SELECT redis_sync.resync('enc_loc') AS repaired;
-- the session's own settings are back after each encoding
SELECT 1234.56::money AS session_money_text, 'enc_s2.thing'::regclass AS session_regclass;
RESET lc_monetary;
RESET search_path;

-- a domain check that sets lc_monetary while get() decodes under the
-- canonical settings: no crash, the value exact; the decode runs as the
-- owner, restricted, so the setting does not outlive it (set_inside: C)
CREATE DOMAIN enc_sneaky AS money CHECK (set_config('lc_monetary', 'de_DE.utf8', false) IS NOT NULL);
CREATE TABLE enc_sn (id int PRIMARY KEY, m enc_sneaky);
SELECT redis_sync.write_through('enc_sn', key_prefix => 'sn:');
INSERT INTO enc_sn VALUES (1, 12.5);
RESET lc_monetary;
SELECT (redis_sync.get(NULL::enc_sn, '1')).m = m AS sneaky_exact, current_setting('lc_monetary') AS set_inside
  FROM enc_sn;
RESET lc_monetary;
SELECT h('sn:1') AS sneaky_canonical;
DROP TABLE enc_sn;
DROP DOMAIN enc_sneaky;

DROP TABLE enc_loc, enc_locj;
DROP TYPE enc_mr;
SET client_min_messages = warning;
DROP SCHEMA enc_s1, enc_s2 CASCADE;
RESET client_min_messages;
