-- launcher: one worker per database with the extension; worker_stats has a
-- row per database (this one first)
DROP DATABASE IF EXISTS rs_launcher_db;   -- left by an interrupted run
CREATE DATABASE rs_launcher_db;
\c rs_launcher_db
CREATE EXTENSION redis_sync;
\c regression
-- the second database gets its own worker (CREATE EXTENSION signals the launcher)
DO $$
DECLARE
  deadline timestamptz := clock_timestamp() + interval '60 s';
BEGIN
  -- running, and connected: a worker's pid is in its slot before
  -- pg_stat_activity shows its database (the check below reads both)
  WHILE (SELECT count(DISTINCT w.worker_pid)
           FROM redis_sync.worker_stats w
           JOIN pg_stat_activity a ON a.pid = w.worker_pid AND a.datname = w.database
          WHERE w.worker_running AND w.database IN ('regression', 'rs_launcher_db')) < 2 LOOP
    IF clock_timestamp() > deadline THEN
      RAISE EXCEPTION 'no worker in rs_launcher_db: %',
        (SELECT string_agg(database || ' ' || worker_state, ', ') FROM redis_sync.worker_stats);
    END IF;
    PERFORM pg_sleep(0.01);
    PERFORM pg_stat_clear_snapshot();   -- pg_stat_activity is read once per transaction
  END LOOP;
END
$$;
SELECT database, worker_running, worker_state, circuit,
       outbox_depth IS NOT NULL AS outbox_of_this_database
  FROM redis_sync.worker_stats
 WHERE database IN ('regression', 'rs_launcher_db');
-- two workers, two processes, each connected to its own database
SELECT count(DISTINCT worker_pid) AS workers,
       count(DISTINCT a.datname) AS databases
  FROM redis_sync.worker_stats w
  JOIN pg_stat_activity a ON a.pid = w.worker_pid AND a.datname = w.database
 WHERE w.database IN ('regression', 'rs_launcher_db');
-- the view's first row is this database's (0.1's single-row queries keep working)
SELECT database FROM redis_sync.worker_stats LIMIT 1;
-- DROP DATABASE stops that worker first: it is not refused for "being
-- accessed by other users", and does not wait for it
SELECT clock_timestamp() AS t0 \gset
DROP DATABASE rs_launcher_db;
SELECT clock_timestamp() - :'t0'::timestamptz < interval '4 s' AS drop_was_quick;
DO $$
DECLARE
  deadline timestamptz := clock_timestamp() + interval '30 s';
BEGIN
  WHILE EXISTS (SELECT 1 FROM redis_sync.worker_stats WHERE database = 'rs_launcher_db') LOOP
    IF clock_timestamp() > deadline THEN
      RAISE EXCEPTION 'the dropped database still has a row';
    END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
END
$$;
SELECT database, worker_running FROM redis_sync.worker_stats WHERE database = 'regression';
-- worker_pause() in the transaction of CREATE EXTENSION keeps the worker
-- that commit starts paused (it went to the slot of databases without a
-- worker, and the new worker delivered right away)
DROP DATABASE IF EXISTS rs_launcher_pause;
CREATE DATABASE rs_launcher_pause;
\c rs_launcher_pause
SET client_min_messages = warning;
BEGIN;
CREATE EXTENSION redis_sync;
SELECT redis_sync.worker_pause();
COMMIT;
DO $$
DECLARE
  deadline timestamptz := clock_timestamp() + interval '60 s';
BEGIN
  WHILE NOT EXISTS (SELECT 1 FROM redis_sync.worker_stats
                     WHERE database = current_database() AND worker_pid IS NOT NULL) LOOP
    IF clock_timestamp() > deadline THEN
      RAISE EXCEPTION 'no worker in rs_launcher_pause';
    END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
END
$$;
SELECT worker_running, worker_state FROM redis_sync.worker_stats WHERE database = current_database();
CREATE TABLE lp (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('lp', key_prefix => 'rs_launcher_pause_lp:', delivery => 'async', warm => false);
INSERT INTO lp VALUES (1, 'a');
SELECT pg_sleep(1);
SELECT count(*) AS still_queued FROM redis_sync.outbox;
SELECT redis_sync.command('EXISTS', 'rs_launcher_pause_lp:1') AS cached;
SELECT redis_sync.worker_resume();
DO $$
DECLARE
  deadline timestamptz := clock_timestamp() + interval '30 s';
BEGIN
  WHILE EXISTS (SELECT 1 FROM redis_sync.outbox) LOOP
    IF clock_timestamp() > deadline THEN
      RAISE EXCEPTION 'the resumed worker did not deliver';
    END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
END
$$;
SELECT redis_sync.command('HGET', 'rs_launcher_pause_lp:1', 'v') AS cached;
SELECT redis_sync.unsync('lp', purge => true);
\c regression
DROP DATABASE rs_launcher_pause;
