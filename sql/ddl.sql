-- ddl: generated SQL that no column name can break, and DDL inside a
-- transaction with DML on a synced table (issue 12)

-- columns named like the aliases the generated SQL uses
CREATE TABLE alias_h (id int PRIMARY KEY, t int, x text, u int, v text, e int, k text, f int, s int, o int, "T" int);
SELECT redis_sync.write_through('alias_h', key_prefix => 'ah:');
INSERT INTO alias_h VALUES (1, 10, 'x1', 1, 'v1', 1, 'k1', 1, 1, 1, 1), (2, 20, 'x2', 2, 'v2', 2, 'k2', 2, 2, 2, 2);
SELECT h('ah:1');
-- get() after a miss reads the row back (this crashed the server with a column t)
SELECT redis_sync.command('DEL', 'ah:1');
SELECT * FROM redis_sync.get(NULL::alias_h, '1');
SELECT h('ah:1');
-- and after a hit
SELECT * FROM redis_sync.get(NULL::alias_h, '1');
SELECT * FROM redis_sync.verify('alias_h');
SELECT redis_sync.command('DEL', 'ah:2');
SELECT key, problem FROM redis_sync.verify('alias_h');
SELECT redis_sync.resync('alias_h');
SELECT redis_sync.warm('alias_h');
SELECT * FROM redis_sync.verify('alias_h');
UPDATE alias_h SET t = 11 WHERE id = 1;
SELECT h('ah:1') ->> 't';

-- json format: verify() compared the column x instead of the row
CREATE TABLE alias_j (id int PRIMARY KEY, x int, t text);
SELECT redis_sync.write_through('alias_j', key_prefix => 'aj:', format => 'json');
INSERT INTO alias_j VALUES (1, 5, 'five');
SELECT redis_sync.command('GET', 'aj:1')::jsonb;
SELECT * FROM redis_sync.verify('alias_j');
SELECT redis_sync.command('DEL', 'aj:1');
SELECT * FROM redis_sync.get(NULL::alias_j, '1');
SELECT redis_sync.warm('alias_j');
SELECT * FROM redis_sync.verify('alias_j');
DROP TABLE alias_h, alias_j;

-- ALTER COLUMN TYPE in the transaction of an UPDATE (this segfaulted: the
-- old row was decoded with the new descriptor)
CREATE TABLE ddl_t (id int PRIMARY KEY, a int, b text, c numeric);
SELECT redis_sync.write_through('ddl_t', key_prefix => 'dt:');
INSERT INTO ddl_t SELECT g, g, 'b' || g, g + 0.5 FROM generate_series(1, 3) g;
BEGIN;
UPDATE ddl_t SET a = a + 10, c = c + 1 WHERE id = 1;
ALTER TABLE ddl_t ALTER COLUMN c TYPE int USING c::int;
UPDATE ddl_t SET a = a + 100 WHERE id = 2;
COMMIT;
-- the keys were written for the old type: removed at commit
SELECT redis_sync.command('EXISTS', 'dt:1'), redis_sync.command('EXISTS', 'dt:2');
UPDATE ddl_t SET a = 7 WHERE id = 1;
SELECT h('dt:1');
SELECT redis_sync.warm('ddl_t');
SELECT * FROM redis_sync.verify('ddl_t');
-- the same, rolled back: nothing changes
BEGIN;
UPDATE ddl_t SET a = 8 WHERE id = 1;
ALTER TABLE ddl_t ALTER COLUMN a TYPE bigint;
ROLLBACK;
SELECT h('dt:1');

-- DROP COLUMN in the transaction of an UPDATE: the COMMIT failed
BEGIN;
UPDATE ddl_t SET b = 'changed' WHERE id = 2;
ALTER TABLE ddl_t DROP COLUMN b;
COMMIT;
SELECT key_columns, columns FROM redis_sync.tables WHERE relid = 'ddl_t'::regclass;
-- later writes work and no longer write the field
UPDATE ddl_t SET a = 9 WHERE id = 3;
SELECT h('dt:3');
SELECT redis_sync.warm('ddl_t');
SELECT * FROM redis_sync.verify('ddl_t');

-- RENAME COLUMN: the field follows the column
BEGIN;
UPDATE ddl_t SET a = 10 WHERE id = 3;
ALTER TABLE ddl_t RENAME COLUMN a TO a2;
UPDATE ddl_t SET a2 = 11 WHERE id = 2;
COMMIT;
SELECT key_columns, columns FROM redis_sync.tables WHERE relid = 'ddl_t'::regclass;
SELECT h('dt:2');
UPDATE ddl_t SET a2 = 12 WHERE id = 3;
SELECT h('dt:3');
SELECT * FROM redis_sync.get(NULL::ddl_t, '1');
SELECT redis_sync.warm('ddl_t');
SELECT * FROM redis_sync.verify('ddl_t');
-- renaming the key column
ALTER TABLE ddl_t RENAME COLUMN id TO ident;
SELECT key_columns, columns FROM redis_sync.tables WHERE relid = 'ddl_t'::regclass;
INSERT INTO ddl_t VALUES (4, 4, 4);
SELECT h('dt:4');
-- a column that is not synced: nothing happens, the cache stays
ALTER TABLE ddl_t ADD COLUMN extra int;
SELECT redis_sync.write_through('ddl_t', key_prefix => 'dt:', columns => ARRAY['ident', 'a2']);
SELECT redis_sync.warm('ddl_t');
ALTER TABLE ddl_t DROP COLUMN extra;
SELECT redis_sync.command('EXISTS', 'dt:4');
-- dropping the index behind key_columns is refused (TAP 313); dropping the key column unsyncs the table
ALTER TABLE ddl_t DROP CONSTRAINT ddl_t_pkey;
ALTER TABLE ddl_t DROP COLUMN ident;
SELECT count(*) FROM redis_sync.tables WHERE relid = 'ddl_t'::regclass;
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'ddl_t'::regclass;
UPDATE ddl_t SET a2 = 0;
DROP TABLE ddl_t;

-- a configuration that names a missing column (the event trigger did not
-- run): writes go on, without that field
CREATE TABLE ddl_m (id int PRIMARY KEY, a int, b int);
SELECT redis_sync.write_through('ddl_m', key_prefix => 'dm:');
ALTER EVENT TRIGGER redis_sync_sql_drop DISABLE;
ALTER TABLE ddl_m DROP COLUMN b;
ALTER EVENT TRIGGER redis_sync_sql_drop ENABLE;
INSERT INTO ddl_m VALUES (1, 1);
SELECT h('dm:1');
DROP TABLE ddl_m;

-- DROP EXTENSION in the transaction of writes commits (sync and async)
CREATE TABLE ddl_x (id int PRIMARY KEY, v int);
CREATE TABLE ddl_y (id int PRIMARY KEY, v int);
SELECT redis_sync.write_through('ddl_x', key_prefix => 'dx:');
SELECT redis_sync.write_through('ddl_y', key_prefix => 'dy:', delivery => 'async');
INSERT INTO ddl_x VALUES (1, 1);
-- and warns about the outbox entries it discards (one, committed while the
-- worker is paused)
SELECT redis_sync.flush() >= 0 AS flushed;
SELECT redis_sync.worker_pause();
INSERT INTO ddl_y VALUES (2, 2);
SET client_min_messages = warning;
BEGIN;
UPDATE ddl_x SET v = 2;
INSERT INTO ddl_y VALUES (1, 1);
DROP EXTENSION redis_sync CASCADE;
COMMIT;
SELECT count(*) FROM pg_extension WHERE extname = 'redis_sync';
SELECT * FROM ddl_x;
UPDATE ddl_x SET v = 3;
CREATE EXTENSION redis_sync;
RESET client_min_messages;
-- the pause may outlive a DROP EXTENSION followed at once by CREATE (README)
SELECT redis_sync.worker_resume();
-- a new configuration works
SELECT redis_sync.write_through('ddl_x', key_prefix => 'dx:');
UPDATE ddl_x SET v = 4;
SELECT h('dx:1');
DROP TABLE ddl_x, ddl_y;
-- the purges DROP TABLE queued are the new worker's (CREATE EXTENSION above
-- started it): wait for them, so the count below is the session's own
DO $$
BEGIN
  FOR i IN 1..3000 LOOP
    EXIT WHEN NOT EXISTS (SELECT 1 FROM redis_sync.outbox);
    PERFORM pg_sleep(0.01);
  END LOOP;
END
$$;

-- the queries redis_sync runs with raised rights ignore the caller's
-- search_path (an operator of the caller's must not run as superuser)
CREATE FUNCTION public.rs_hijack(text, text) RETURNS boolean
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked'; END $$;
CREATE OPERATOR public.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = public.rs_hijack);
-- an entry no delivery takes (empty version), so the filter runs on it
INSERT INTO redis_sync.outbox (relid, redis_key, op, version) VALUES ('pg_class'::regclass, 'never', 'D', '');
SET search_path = public, pg_catalog;
SELECT redis_sync.deliver_outbox(10);
RESET search_path;
DELETE FROM redis_sync.outbox WHERE redis_key = 'never';
DROP OPERATOR public.<> (text, text);
DROP FUNCTION public.rs_hijack(text, text);

-- inheritance (not partitioning): every read of a parent returns its
-- children's rows, but writes to them fire only the children's triggers
-- (and a write-behind drain's UPDATE reached them, its INSERT did not).
-- A synced table may not have inheritance children, nor be given one
CREATE TABLE inh_p (id int PRIMARY KEY, v int);
CREATE TABLE inh_c (id int PRIMARY KEY, v int) INHERITS (inh_p);
SELECT redis_sync.write_through('inh_p', key_prefix => 'inh:');
SELECT redis_sync.invalidate('inh_p', key_prefix => 'inh:');
SELECT redis_sync.write_behind('inh_p', key_prefix => 'inhwb:');
DROP TABLE inh_c;
SELECT redis_sync.write_through('inh_p', key_prefix => 'inh:');
CREATE TABLE inh_c (id int PRIMARY KEY, v int) INHERITS (inh_p);
CREATE TABLE inh_c (id int PRIMARY KEY, v int);
ALTER TABLE inh_c INHERIT inh_p;
CREATE SCHEMA inh_s CREATE TABLE inh_sc (id int PRIMARY KEY, v int) INHERITS (public.inh_p);
SELECT redis_sync.unsync('inh_p');
SELECT redis_sync.write_behind('inh_p', key_prefix => 'inhwb:');
ALTER TABLE inh_c INHERIT inh_p;
SELECT redis_sync.unsync('inh_p');
-- the synced table may itself inherit (its own triggers fire for its rows),
-- and a child may be given a parent that no synced table is above
CREATE TABLE inh_top (id int, v int);
ALTER TABLE inh_p INHERIT inh_top;
SELECT redis_sync.write_through('inh_p', key_prefix => 'inh:');
ALTER TABLE inh_c INHERIT inh_top;
SELECT redis_sync.unsync('inh_p');
-- partitions are no such children: one created inside CREATE SCHEMA gets its
-- TRUNCATE guard too
CREATE TABLE inh_parts (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
SELECT redis_sync.write_through('inh_parts', key_prefix => 'inhp:');
CREATE TABLE inh_parts_1 PARTITION OF inh_parts FOR VALUES FROM (0) TO (10);
CREATE SCHEMA inh_s CREATE TABLE inh_parts_2 PARTITION OF public.inh_parts FOR VALUES FROM (10) TO (20);
SELECT tgrelid::regclass, tgname FROM pg_trigger
 WHERE tgrelid IN ('inh_parts_1'::regclass, 'inh_s.inh_parts_2'::regclass) ORDER BY 1, 2;
-- a trigger of the guard's name that redis_sync did not make (cloned from a
-- partitioned partition to its new partitions) is refused: the partition
-- would have no guard
CREATE TABLE inh_parts_3 PARTITION OF inh_parts FOR VALUES FROM (20) TO (30) PARTITION BY RANGE (id);
DO $$ BEGIN
  EXECUTE format('CREATE TRIGGER redis_sync_truncate_partition AFTER UPDATE ON inh_parts_3 '
                 'FOR EACH ROW EXECUTE FUNCTION redis_sync.capture(%L)', 'inh_parts'::regclass::oid::text);
END $$;
CREATE TABLE inh_parts_3a PARTITION OF inh_parts_3 FOR VALUES FROM (20) TO (25);
-- and unsync() drops the guards only (the clone belongs to that trigger)
SELECT redis_sync._drop_partition_triggers('inh_parts');
DROP TRIGGER redis_sync_truncate_partition ON inh_parts_3;
CREATE TABLE inh_parts_3a PARTITION OF inh_parts_3 FOR VALUES FROM (20) TO (25);
SELECT tgrelid::regclass, tgname FROM pg_trigger WHERE tgrelid = 'inh_parts_3a'::regclass ORDER BY 1, 2;
SELECT redis_sync.unsync('inh_parts');
DROP TABLE inh_c, inh_p, inh_top, inh_parts;
DROP SCHEMA inh_s;
