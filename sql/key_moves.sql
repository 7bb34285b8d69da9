-- rows whose key columns change: each key ends with the row that holds it
-- at commit, whatever order the rows moved in (a deferrable unique key lets
-- a statement move a row onto a key another row leaves later)
SET client_min_messages = warning;
CREATE TABLE km (id int PRIMARY KEY DEFERRABLE INITIALLY IMMEDIATE, v text);
INSERT INTO km SELECT g, 'row ' || g FROM generate_series(1, 50) g;
SELECT redis_sync.write_through('km', key_prefix => 'km:', warm => false);
SELECT redis_sync.warm('km');
CREATE FUNCTION pg_temp.cached(k text) RETURNS text LANGUAGE sql
  AS $$ SELECT redis_sync.command('HGET', k, 'v') #>> '{}' $$;

-- every row one key up, in one statement (rows moved in ascending order)
UPDATE km SET id = id + 1;
SELECT count(*) AS problems FROM redis_sync.verify('km');
SELECT pg_temp.cached('km:1') IS NULL AS km1_gone, pg_temp.cached('km:2') AS km2,
       pg_temp.cached('km:51') AS km51;

-- a swap
UPDATE km SET id = CASE id WHEN 2 THEN 3 ELSE 2 END WHERE id IN (2, 3);
SELECT pg_temp.cached('km:2') AS km2, pg_temp.cached('km:3') AS km3;
SELECT count(*) AS problems FROM redis_sync.verify('km');

-- the same, through the script (bulk_multi off) and in separate statements
-- of one transaction, the constraint deferred to commit
SET redis_sync.bulk_multi = off;
BEGIN;
SET CONSTRAINTS ALL DEFERRED;
UPDATE km SET id = 100 WHERE id = 2;
UPDATE km SET id = 2 WHERE id = 3;
UPDATE km SET id = 3 WHERE id = 100;
COMMIT;
RESET redis_sync.bulk_multi;
SELECT pg_temp.cached('km:2') AS km2, pg_temp.cached('km:3') AS km3,
       pg_temp.cached('km:100') IS NULL AS km100_gone;
SELECT count(*) AS problems FROM redis_sync.verify('km');

-- a row that moves away, comes back, and moves again: the last move wins
BEGIN;
UPDATE km SET id = 200 WHERE id = 10;
UPDATE km SET id = 10 WHERE id = 200;
UPDATE km SET id = 201 WHERE id = 10;
COMMIT;
SELECT pg_temp.cached('km:10') IS NULL AS km10_gone, pg_temp.cached('km:201') AS km201;
-- a real DELETE of a key a moved row held still deletes it
BEGIN;
SET CONSTRAINTS ALL DEFERRED;
UPDATE km SET id = 20 WHERE id = 21;
UPDATE km SET id = 21 WHERE id = 20 AND v = 'row 19';
DELETE FROM km WHERE id = 20;
COMMIT;
SELECT count(*) AS problems FROM redis_sync.verify('km');

SELECT redis_sync.unsync('km');
DROP TABLE km;

-- the row that holds a key is followed through every version of it: an
-- UPDATE of columns that are not synced (or that sets them to their values)
-- makes a new tuple without a change, and the row moving away later must
-- still delete the key (it was left stale)
CREATE TABLE km2 (id int PRIMARY KEY, v text, other text);
INSERT INTO km2 SELECT g, 'row ' || g, 'o' FROM generate_series(1, 9) g;
SELECT redis_sync.write_through('km2', key_prefix => 'km2:', columns => '{id,v}', warm => false);
SELECT redis_sync.warm('km2');
BEGIN;
UPDATE km2 SET v = 'new 1' WHERE id = 1;
UPDATE km2 SET other = 'x' WHERE id = 1;
UPDATE km2 SET id = 10 WHERE id = 1;
COMMIT;
SELECT pg_temp.cached('km2:1') IS NULL AS km2_1_gone, pg_temp.cached('km2:10') AS km2_10;
BEGIN;
UPDATE km2 SET v = 'new 2' WHERE id = 2;
UPDATE km2 SET v = 'new 2' WHERE id = 2;
UPDATE km2 SET id = 20 WHERE id = 2;
COMMIT;
SELECT pg_temp.cached('km2:2') IS NULL AS km2_2_gone, pg_temp.cached('km2:20') AS km2_20;
-- the same before a DELETE
BEGIN;
UPDATE km2 SET v = 'new 3' WHERE id = 3;
UPDATE km2 SET other = 'y' WHERE id = 3;
DELETE FROM km2 WHERE id = 3;
COMMIT;
SELECT pg_temp.cached('km2:3') IS NULL AS km2_3_gone;
-- versions made and rolled back in a savepoint in between
BEGIN;
UPDATE km2 SET v = 'new 4' WHERE id = 4;
SAVEPOINT s;
UPDATE km2 SET other = 'z' WHERE id = 4;
ROLLBACK TO SAVEPOINT s;
UPDATE km2 SET other = 'w' WHERE id = 4;
UPDATE km2 SET id = 40 WHERE id = 4;
COMMIT;
SELECT pg_temp.cached('km2:4') IS NULL AS km2_4_gone, pg_temp.cached('km2:40') AS km2_40;
-- the table rewritten in between (its tuples all move)
BEGIN;
UPDATE km2 SET v = 'new 5' WHERE id = 5;
ALTER TABLE km2 ALTER COLUMN other TYPE varchar(10) USING other || '!';
UPDATE km2 SET id = 50 WHERE id = 5;
COMMIT;
BEGIN;
UPDATE km2 SET v = 'new 6' WHERE id = 6;
CLUSTER km2 USING km2_pkey;
UPDATE km2 SET id = 60 WHERE id = 6;
COMMIT;
SELECT pg_temp.cached('km2:5') IS NULL AS km2_5_gone, pg_temp.cached('km2:6') IS NULL AS km2_6_gone;
SELECT * FROM redis_sync.verify('km2');
SELECT redis_sync.unsync('km2');
DROP TABLE km2;

-- a row that takes a key before the row holding it is deleted (deferred
-- key): the key stays the new row's (it was deleted, missing from the cache)
CREATE TABLE km3 (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, v text);
INSERT INTO km3 SELECT g, 'row ' || g FROM generate_series(1, 5) g;
SELECT redis_sync.write_through('km3', key_prefix => 'km3:', warm => false);
SELECT redis_sync.warm('km3');
BEGIN;
INSERT INTO km3 VALUES (1, 'replacement');
DELETE FROM km3 WHERE id = 1 AND v = 'row 1';
UPDATE km3 SET id = 2 WHERE id = 3;
DELETE FROM km3 WHERE id = 2 AND v = 'row 2';
COMMIT;
SELECT pg_temp.cached('km3:1') AS km3_1, pg_temp.cached('km3:2') AS km3_2,
       pg_temp.cached('km3:3') IS NULL AS km3_3_gone;
SELECT * FROM redis_sync.verify('km3');
SELECT redis_sync.unsync('km3');
DROP TABLE km3;
