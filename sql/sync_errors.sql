-- precise errors for every bad configuration
\set SHOW_CONTEXT never
CREATE TABLE e_nopk (a int, b text);
CREATE TABLE e_ok (id int PRIMARY KEY, code text, v text, arr int[], nn text NOT NULL);
CREATE UNIQUE INDEX ON e_ok (nn);
CREATE VIEW e_view AS SELECT * FROM e_ok;
CREATE MATERIALIZED VIEW e_mview AS SELECT * FROM e_ok;
CREATE SEQUENCE e_seq;
CREATE TABLE e_part (id int PRIMARY KEY) PARTITION BY RANGE (id);
CREATE TABLE e_part_1 PARTITION OF e_part FOR VALUES FROM (0) TO (10);
CREATE TABLE e_arrpk (k int[] PRIMARY KEY);

SELECT redis_sync.write_through('e_nopk');
SELECT redis_sync.write_through('e_view');
SELECT redis_sync.write_through('e_mview');
SELECT redis_sync.write_through('e_seq');
SELECT redis_sync.write_through('e_part_1');
SELECT redis_sync.write_through('no_such_table');
SELECT redis_sync.write_through(NULL);
SELECT redis_sync.write_through('e_ok', key_columns => '{nope}');
SELECT redis_sync.write_through('e_ok', key_columns => '{code}');          -- nullable
SELECT redis_sync.write_through('e_ok', key_columns => '{id,nn}');         -- no unique index on both
SELECT redis_sync.write_through('e_ok', key_columns => '{}');
SELECT redis_sync.write_through('e_ok', columns => '{id,nope}');
SELECT redis_sync.write_through('e_ok', columns => '{id,id}');
SELECT redis_sync.write_through('e_ok', columns => '{}');
SELECT redis_sync.write_through('e_ok', format => 'xml');
SELECT redis_sync.write_through('e_ok', format => NULL);
SELECT redis_sync.write_through('e_ok', consistency => 'sometimes');
SELECT redis_sync.write_through('e_ok', delivery => 'later');
SELECT redis_sync.write_through('e_ok', delivery => 'async', consistency => 'strict');
SELECT redis_sync.write_through('e_ok', ttl => '-1 s');
SELECT redis_sync.write_through('e_ok', ttl => '0 s');
SELECT redis_sync.write_through('e_ok', key_prefix => '');
SELECT redis_sync.write_through('e_arrpk');
SELECT redis_sync.invalidate('e_nopk');
-- a unique NOT NULL column works as the key
SELECT redis_sync.write_through('e_ok', key_columns => '{nn}', key_prefix => 'eok:');
-- overlapping prefixes of two tables are refused
CREATE TABLE e_other (id int PRIMARY KEY);
SELECT redis_sync.write_through('e_other', key_prefix => 'eok:');
SELECT redis_sync.write_through('e_other', key_prefix => 'eok:x:');
SELECT redis_sync.write_through('e_other', key_prefix => 'eo');
SELECT redis_sync.write_through('e_other', key_prefix => 'other:');

-- only the owner (or a superuser) may sync or unsync
CREATE ROLE rs_intruder;
GRANT USAGE ON SCHEMA redis_sync TO rs_intruder;
GRANT ALL ON e_nopk, e_ok TO rs_intruder;
SET ROLE rs_intruder;
SELECT redis_sync.write_through('e_ok');
SELECT redis_sync.unsync('e_ok');
SELECT redis_sync._config_write('e_ok', 'write_through', 'x:', '{id}', '{id}', 'hash', NULL, 'eventual', 'sync', NULL, NULL, NULL, NULL, NULL);
SELECT redis_sync._config_delete('e_ok', 'write_through');
-- but writing to a synced table needs no privilege on redis_sync's tables
INSERT INTO e_ok VALUES (1, 'c', 'v', NULL, 'n1');
SELECT count(*) FROM redis_sync.outbox;   -- row contents: superusers only
RESET ROLE;
SELECT redis_sync.command('HGET', 'eok:n1', 'v');
-- the table's owner may
CREATE ROLE rs_owner;
GRANT USAGE ON SCHEMA redis_sync TO rs_owner;
ALTER TABLE e_nopk OWNER TO rs_owner;
SET ROLE rs_owner;
SELECT redis_sync.write_through('e_nopk', key_columns => '{a}');
ALTER TABLE e_nopk ALTER a SET NOT NULL;
RESET ROLE;
CREATE UNIQUE INDEX ON e_nopk (a);
SET ROLE rs_owner;
SELECT redis_sync.write_through('e_nopk', key_columns => '{a}', key_prefix => 'nopk:');
INSERT INTO e_nopk VALUES (1, 'b');
SELECT redis_sync.unsync('e_nopk');
RESET ROLE;
SELECT redis_sync.command('HGET', 'nopk:1', 'b');

-- a renamed synced column: the configuration follows it, writes go on
ALTER TABLE e_ok RENAME v TO v2;
INSERT INTO e_ok VALUES (2, 'c', 'v', NULL, 'n2');
SELECT redis_sync.command('HGET', 'eok:n2', 'v2');

DROP TABLE e_nopk, e_ok CASCADE;
DROP TABLE e_other, e_part, e_arrpk;
DROP SEQUENCE e_seq;
REVOKE USAGE ON SCHEMA redis_sync FROM rs_intruder, rs_owner;
DROP ROLE rs_intruder;
DROP ROLE rs_owner;
