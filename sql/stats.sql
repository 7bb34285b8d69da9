-- redis_sync.stats and worker_stats; async delivery through the worker
SELECT redis_sync.stats_reset();
CREATE TABLE st (id int PRIMARY KEY, v int);
SELECT redis_sync.write_through('st', key_prefix => 'st:');
INSERT INTO st SELECT g, g FROM generate_series(1, 10) g;
UPDATE st SET v = v + 1 WHERE id <= 5;
BEGIN;
UPDATE st SET v = 0;
ROLLBACK;
-- 10 + 5 + 10 captured (a rolled-back capture still counts), 15 pushed
SELECT "table", policy, captured, pushed, push_failures, queued, delivered, outbox_depth, last_error
  FROM redis_sync.stats WHERE "table" = 'st'::regclass;
-- the worker probes Redis once the extension exists
DO $$
DECLARE deadline timestamptz := clock_timestamp() + interval '30 s';
BEGIN
  WHILE (SELECT redis_run_id IS NULL FROM redis_sync.worker_stats) LOOP
    IF clock_timestamp() > deadline THEN RAISE EXCEPTION 'worker did not probe Redis in time'; END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
END $$;
SELECT round_trips > 0 AS round_trips, worker_running,
       circuit, connection_failures, redis_run_id IS NOT NULL AS knows_run_id
  FROM redis_sync.worker_stats;

-- a push Redis refuses is counted, with its error
SELECT redis_sync.worker_pause();
SELECT redis_sync.command('SET', 'st:1', 'not a hash');
UPDATE st SET v = 100 WHERE id = 1;
SELECT pushed, push_failures, queued, outbox_depth, outbox_oldest_age IS NOT NULL AS has_age,
       last_error, last_error_at IS NOT NULL AS has_time
  FROM redis_sync.stats WHERE "table" = 'st'::regclass;
SELECT redis_sync.command('DEL', 'st:1');
SELECT redis_sync.flush('st');
SELECT delivered, outbox_depth FROM redis_sync.stats WHERE "table" = 'st'::regclass;

-- async delivery: the commit only queues; the worker, woken at commit, delivers
CREATE TABLE st_async (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('st_async', key_prefix => 'sa:', delivery => 'async');
INSERT INTO st_async SELECT g, 'v' || g FROM generate_series(1, 50) g;
SELECT queued, pushed, outbox_depth FROM redis_sync.stats WHERE "table" = 'st_async'::regclass;
SELECT redis_sync.command('EXISTS', 'sa:1');
SELECT redis_sync.worker_resume();
DO $$
DECLARE deadline timestamptz := clock_timestamp() + interval '30 s';
BEGIN
  WHILE EXISTS (SELECT 1 FROM redis_sync.outbox) LOOP
    IF clock_timestamp() > deadline THEN RAISE EXCEPTION 'outbox not delivered in time'; END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
END $$;
SELECT delivered, outbox_depth FROM redis_sync.stats WHERE "table" = 'st_async'::regclass;
SELECT redis_sync.command('HGET', 'sa:1', 'v'), redis_sync.command('HGET', 'sa:50', 'v');
-- later changes are delivered too
UPDATE st_async SET v = 'changed' WHERE id = 7;
DO $$
DECLARE deadline timestamptz := clock_timestamp() + interval '30 s';
BEGIN
  WHILE redis_sync.command('HGET', 'sa:7', 'v') #>> '{}' <> 'changed' LOOP
    IF clock_timestamp() > deadline THEN RAISE EXCEPTION 'change not delivered in time'; END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
END $$;
SELECT redis_sync.command('HGET', 'sa:7', 'v');

-- warm pushes every row again
SELECT redis_sync.command('DEL', 'st:3');
SELECT redis_sync.warm('st');
SELECT redis_sync.command('HGET', 'st:3', 'v');
SELECT warmed FROM redis_sync.stats WHERE "table" = 'st'::regclass;
SELECT redis_sync.warm('st', batch_size => 3);
SELECT redis_sync.warm('st', batch_size => 0);
CREATE TABLE st_plain (id int PRIMARY KEY);
SELECT redis_sync.warm('st_plain');

-- reset
SELECT redis_sync.stats_reset();
SELECT count(*) FILTER (WHERE captured + pushed + queued + delivered + warmed > 0) AS nonzero
  FROM redis_sync.stats;
SELECT round_trips < 100 AS reset_round_trips FROM redis_sync.worker_stats;
DROP TABLE st, st_async, st_plain;
