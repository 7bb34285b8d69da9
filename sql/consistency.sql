-- strict vs eventual, async delivery, two-phase commit, buffer overflow
\set SHOW_CONTEXT never
-- keep the background worker out of the way while we inspect the outbox
SELECT redis_sync.worker_pause();
-- earlier suites' DROP TABLE purges may still be queued (the worker starts late)
SELECT redis_sync.deliver_outbox() >= 0 AS earlier_drained;
CREATE TABLE c_strict (id int PRIMARY KEY, v text);
CREATE TABLE c_event (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('c_strict', key_prefix => 'cs:', consistency => 'strict');
SELECT redis_sync.write_through('c_event', key_prefix => 'ce:');

-- make Redis reject the push: the key holds a string where a hash is expected
-- (with a version key: a key without one is taken for a value whose version
-- was evicted, and dropped)
SELECT redis_sync.command('SET', 'cs:1', 'not a hash');
SELECT redis_sync.command('SET', 'ce:1', 'not a hash');
SELECT redis_sync.command('SET', '{cs:1}:rs_version', '000000000000000000000000');
SELECT redis_sync.command('SET', '{ce:1}:rs_version', '000000000000000000000000');

-- strict: the commit fails and the table is unchanged
INSERT INTO c_strict VALUES (1, 'one');
SELECT count(*) FROM c_strict;
-- with a TRUNCATE of a table none of whose keys are cached, the purge sends
-- no delete: the rollback does not warn that one was sent
CREATE TABLE c_empty (id int PRIMARY KEY);
SELECT redis_sync.write_through('c_empty', key_prefix => 'cempty:');
SELECT redis_sync.command('SET', 'cs:1', 'not a hash'),
       redis_sync.command('SET', '{cs:1}:rs_version', '000000000000000000000000');
BEGIN;
TRUNCATE c_empty;
INSERT INTO c_strict VALUES (1, 'one');
COMMIT;
SELECT redis_sync.unsync('c_empty');
DROP TABLE c_empty;
-- eventual: the commit succeeds and the key waits in the outbox
INSERT INTO c_event VALUES (1, 'one');
SELECT relid::regclass, redis_key, op, payload, ttl_ms, length(version) AS version_len
  FROM redis_sync.outbox ORDER BY id;
-- once Redis accepts it again, delivery pushes the committed row
SELECT redis_sync.command('DEL', 'ce:1');
SELECT redis_sync.deliver_outbox();
SELECT redis_sync.command('HGETALL', 'ce:1'), count(*) AS outbox_left FROM redis_sync.outbox;
-- a failed delivery keeps the entry
SELECT redis_sync.command('SET', 'ce:1', 'not a hash');
BEGIN;
SELECT redis_sync.command('DEL', 'wrong');  -- keep the transaction alive
UPDATE c_event SET v = 'two' WHERE id = 1;
COMMIT;
SELECT rs_error($$SELECT redis_sync.deliver_outbox()$$);
SELECT count(*) AS outbox_left FROM redis_sync.outbox;
SELECT redis_sync.command('DEL', 'ce:1');
SELECT redis_sync.deliver_outbox();
SELECT redis_sync.command('HGETALL', 'ce:1');
-- a replayed older entry can never overwrite a newer value
INSERT INTO redis_sync.outbox (relid, redis_key, op, payload, version)
  VALUES ('c_event'::regclass, 'ce:1', 'H', '{"id": "1", "v": "ancient"}', '000000000000000000000001');
SELECT redis_sync.deliver_outbox();
SELECT redis_sync.command('HGET', 'ce:1', 'v');

-- async delivery: the transaction does no network I/O; the outbox carries it
CREATE TABLE c_async (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('c_async', key_prefix => 'ca:', delivery => 'async');
INSERT INTO c_async VALUES (1, 'a'), (2, 'b');
UPDATE c_async SET v = 'bb' WHERE id = 2;
SELECT redis_sync.command('EXISTS', 'ca:1');
SELECT redis_key, op, payload FROM redis_sync.outbox ORDER BY id;
-- the rows are written without SQL, filled as the column defaults would be
SELECT count(DISTINCT xid) AS writers,
       max(xid::text) = (SELECT xmin::text FROM c_async WHERE id = 2) AS last_writer_xid,
       count(*) AS entries,
       bool_and(attempts = 0 AND next_attempt_at IS NULL AND last_error IS NULL
                AND enqueued_at <= clock_timestamp()) AS fresh
  FROM redis_sync.outbox;
-- an outbox not of the extension's shape (a column added) is written through
-- SQL, which applies what was added; a dropped column is skipped
ALTER TABLE redis_sync.outbox ADD COLUMN note text;
ALTER TABLE redis_sync.outbox ALTER COLUMN note SET DEFAULT 'via SQL';
UPDATE c_async SET v = 'a2' WHERE id = 1;
SELECT redis_key, payload ->> 'v' AS v, note FROM redis_sync.outbox ORDER BY id;
ALTER TABLE redis_sync.outbox DROP COLUMN note;
UPDATE c_async SET v = 'a3' WHERE id = 1;
SELECT redis_key, payload ->> 'v' AS v FROM redis_sync.outbox ORDER BY id;
-- so are constraints, defaults and rules added to it: the commit applies them
\set VERBOSITY terse
ALTER TABLE redis_sync.outbox ADD CONSTRAINT outbox_not_ca2 CHECK (redis_key <> 'ca:2') NOT VALID;
UPDATE c_async SET v = 'refused' WHERE id = 2;
ALTER TABLE redis_sync.outbox DROP CONSTRAINT outbox_not_ca2;
ALTER TABLE redis_sync.outbox ALTER COLUMN payload SET NOT NULL;
DELETE FROM c_async WHERE id = 2;
ALTER TABLE redis_sync.outbox ALTER COLUMN payload DROP NOT NULL;
\set VERBOSITY default
ALTER TABLE redis_sync.outbox ALTER COLUMN next_attempt_at SET DEFAULT '-infinity';
UPDATE c_async SET v = 'a4' WHERE id = 1;
ALTER TABLE redis_sync.outbox ALTER COLUMN next_attempt_at DROP DEFAULT;
CREATE TABLE c_outbox_log (k text);
CREATE RULE c_outbox_log AS ON INSERT TO redis_sync.outbox
  DO ALSO INSERT INTO c_outbox_log VALUES (NEW.redis_key);
UPDATE c_async SET v = 'a5' WHERE id = 1;
DROP RULE c_outbox_log ON redis_sync.outbox;
SELECT k AS logged_by_rule FROM c_outbox_log;
SELECT redis_key, payload ->> 'v' AS v, next_attempt_at FROM redis_sync.outbox ORDER BY id;
SELECT v FROM c_async ORDER BY id;
-- a rule on the outbox's deletes applies to those of the delivery
CREATE RULE c_outbox_log AS ON DELETE TO redis_sync.outbox
  DO ALSO INSERT INTO c_outbox_log VALUES ('delivered ' || OLD.redis_key);
SELECT redis_sync.deliver_outbox();       -- two keys, newest state each
DROP RULE c_outbox_log ON redis_sync.outbox;
SELECT k AS logged_by_rule, count(*) FROM c_outbox_log GROUP BY k ORDER BY k;
DROP TABLE c_outbox_log;
SELECT redis_sync.command('HGET', 'ca:1', 'v'), redis_sync.command('HGET', 'ca:2', 'v');
-- entries of an inheritance child of the outbox are deleted from the child,
-- not at their position in the outbox (both entries are at (0,1))
VACUUM FULL redis_sync.outbox;
CREATE TABLE c_outbox_child () INHERITS (redis_sync.outbox);
UPDATE c_async SET v = 'a6' WHERE id = 1;
INSERT INTO c_outbox_child (id, relid, redis_key, op, payload, version)
  VALUES (1, 'c_async'::regclass, 'ca:9', 'H', '{"id": "9", "v": "child"}', '000000000000000000000002');
SELECT redis_sync.deliver_outbox(1);
SELECT tableoid::regclass, redis_key FROM redis_sync.outbox ORDER BY id;
SELECT redis_sync.deliver_outbox();
DROP TABLE c_outbox_child;
SELECT redis_sync.command('HGET', 'ca:1', 'v'), redis_sync.command('HGET', 'ca:9', 'v');
-- a publication of the outbox's deletes needs its replica identity, as a
-- DELETE statement does: delivery fails rather than publish deletes without
-- a key
SET client_min_messages = error;
CREATE PUBLICATION c_outbox_pub FOR TABLE redis_sync.outbox;
RESET client_min_messages;
ALTER TABLE redis_sync.outbox REPLICA IDENTITY NOTHING;
UPDATE c_async SET v = 'a7' WHERE id = 1;
SELECT rs_error($$SELECT redis_sync.deliver_outbox()$$);
ALTER TABLE redis_sync.outbox REPLICA IDENTITY DEFAULT;
SELECT redis_sync.deliver_outbox();
DROP PUBLICATION c_outbox_pub;
SELECT redis_sync.command('HGET', 'ca:1', 'v');

-- two-phase commit: nothing is pushed at PREPARE; COMMIT PREPARED delivers via the outbox
BEGIN;
INSERT INTO c_event VALUES (10, 'prepared');
PREPARE TRANSACTION 'rs_2pc_commit';
SELECT redis_sync.command('EXISTS', 'ce:10'), count(*) AS visible_in_outbox FROM redis_sync.outbox;
COMMIT PREPARED 'rs_2pc_commit';
SELECT redis_key FROM redis_sync.outbox;
SELECT redis_sync.deliver_outbox();
SELECT redis_sync.command('HGET', 'ce:10', 'v');
BEGIN;
INSERT INTO c_event VALUES (11, 'rolled back');
PREPARE TRANSACTION 'rs_2pc_rollback';
ROLLBACK PREPARED 'rs_2pc_rollback';
SELECT count(*) FROM redis_sync.outbox;
SELECT redis_sync.command('EXISTS', 'ce:11');

-- a transaction larger than redis_sync.max_buffer_bytes goes through the outbox
SET redis_sync.max_buffer_bytes = '64kB';
SELECT pushed AS p0 FROM redis_sync.session_stats() \gset
BEGIN;
INSERT INTO c_event SELECT g, 'bulk ' || g FROM generate_series(100, 2099) g;
SAVEPOINT s;
UPDATE c_event SET v = 'rolled back' WHERE id BETWEEN 100 AND 2099;
ROLLBACK TO SAVEPOINT s;
UPDATE c_event SET v = 'last' WHERE id = 2099;
COMMIT;
RESET redis_sync.max_buffer_bytes;
SELECT pushed - :p0 AS pushed_directly FROM redis_sync.session_stats();
SELECT count(DISTINCT redis_key) AS keys, count(*) FILTER (WHERE version = '') AS unstamped
  FROM redis_sync.outbox;
SELECT redis_sync.command('EXISTS', 'ce:100');
SELECT redis_sync.deliver_outbox() >= 2000 AS delivered;
SELECT count(*) FROM redis_sync.outbox;
SELECT redis_sync.command('HGET', 'ce:100', 'v'), redis_sync.command('HGET', 'ce:2099', 'v');
SELECT count(*) AS mismatches
  FROM c_event t
 WHERE redis_sync.command('HGET', 'ce:' || t.id, 'v') #>> '{}' IS DISTINCT FROM t.v;
-- a delivery in the transaction that queued them leaves its entries alone:
-- they may yet roll back
SET redis_sync.max_buffer_bytes = '64kB';
BEGIN;
INSERT INTO c_event SELECT g, 'never committed' FROM generate_series(3000, 4999) g;
SELECT count(*) > 0 AS queued FROM redis_sync.outbox;
SELECT redis_sync.deliver_outbox() AS delivered_in_xact, redis_sync.flush('c_event') AS flushed_in_xact;
ROLLBACK;
RESET redis_sync.max_buffer_bytes;
SELECT redis_sync.command('EXISTS', 'ce:3000') AS uncommitted_in_redis, count(*) AS outbox_left
  FROM redis_sync.outbox;

-- deliver_outbox is for administrators
CREATE ROLE rs_nobody;
SET ROLE rs_nobody;
SELECT redis_sync.deliver_outbox();
RESET ROLE;
DROP ROLE rs_nobody;

-- one key Redis refuses does not hold back the others
BEGIN;
UPDATE c_event SET v = 'poison' WHERE id = 100;
UPDATE c_event SET v = 'fine' WHERE id = 101;
SELECT redis_sync.command('SET', 'ce:100', 'not a hash');
COMMIT;
SELECT redis_key, attempts FROM redis_sync.outbox ORDER BY redis_key;
SELECT rs_error($$SELECT redis_sync.deliver_outbox()$$);
SELECT redis_key, attempts, last_error IS NOT NULL AS has_error, next_attempt_at > now() AS backing_off
  FROM redis_sync.outbox ORDER BY redis_key;
SELECT redis_sync.command('HGET', 'ce:101', 'v');
SELECT redis_sync.command('DEL', 'ce:100');
SELECT redis_sync.deliver_outbox();
SELECT redis_sync.command('HGET', 'ce:100', 'v');

-- the payload is the row's jsonb as jsonb_in builds it from its JSON text
-- (built directly, without printing and parsing): same value, same size,
-- every character kept, a NULL column a JSON null
CREATE TABLE c_json (id int PRIMARY KEY, v text, w text);
SELECT redis_sync.write_through('c_json', key_prefix => 'cj:', delivery => 'async');
INSERT INTO c_json VALUES (1, E'quote " backslash \\ newline \n tab \t \u00e9 \u2603 ctrl \x01 end', NULL);
CREATE TEMP TABLE c_json_ref AS
  SELECT id, payload::text::jsonb AS parsed FROM redis_sync.outbox WHERE redis_key = 'cj:1';
SELECT payload = parsed AS same_value,
       pg_column_size(payload) = pg_column_size(parsed) AS same_size,
       payload ->> 'v' = (SELECT v FROM c_json) AS v_kept,
       payload -> 'w' = 'null'::jsonb AS w_null, payload ->> 'id' AS id
  FROM redis_sync.outbox JOIN c_json_ref USING (id);
SELECT redis_sync.deliver_outbox();
SELECT redis_sync.command('HGET', 'cj:1', 'v') = to_jsonb((SELECT v FROM c_json)) AS cached_kept;

-- a delivery of 2,000 entries or more overlaps its batches (Redis applies
-- one while the next is read and the one before settled): entries refused
-- in any batch stay queued, once each, and the others are all delivered
CREATE TABLE c_many (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('c_many', key_prefix => 'cm:', delivery => 'async');
SELECT i, redis_sync.command('SET', 'cm:' || i, 'not a hash') AS set,
       redis_sync.command('SET', '{cm:' || i || '}:rs_version', '000000000000000000000000') AS version
  FROM unnest(ARRAY[10, 3000, 5999]) i;   -- in the first, second and third batch
INSERT INTO c_many SELECT g, 'v' || g FROM generate_series(1, 6000) g;
SELECT redis_sync.deliver_outbox() AS delivered;
SELECT redis_key, attempts, last_error IS NOT NULL AS has_error, next_attempt_at IS NOT NULL AS backs_off
  FROM redis_sync.outbox ORDER BY id;
SELECT count(*) AS cached FROM c_many
 WHERE id NOT IN (10, 3000, 5999) AND redis_sync.command('HGET', 'cm:' || id, 'v') = to_jsonb(v);
SELECT redis_sync.command('DEL', 'cm:' || i) FROM unnest(ARRAY[10, 3000, 5999]) i;
UPDATE redis_sync.outbox SET next_attempt_at = NULL;
SELECT redis_sync.deliver_outbox() AS delivered;
SELECT count(*) AS cached FROM c_many
 WHERE redis_sync.command('HGET', 'cm:' || id, 'v') = to_jsonb(v);

SELECT redis_sync.worker_resume();
DROP TABLE c_strict, c_event, c_async, c_json, c_many;
