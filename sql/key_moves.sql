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
