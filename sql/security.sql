-- security (issue 11): every attack of the review, run as a plain role.
-- Roles: sec_owner owns tables (not a superuser), sec_user is anyone,
-- sec_hidden / sec_visible meet a row-level security policy.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE ROLE sec_owner;
CREATE ROLE sec_user;
CREATE ROLE sec_hidden;
CREATE ROLE sec_visible;
CREATE SCHEMA sec AUTHORIZATION sec_owner;
GRANT USAGE ON SCHEMA sec TO sec_user, sec_hidden, sec_visible;
CREATE SCHEMA sec_evil AUTHORIZATION sec_user;
RESET client_min_messages;

-- 1. what PUBLIC may execute (everything else: superusers and granted roles)
SELECT p.oid::regprocedure AS public_function
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'redis_sync'
 WHERE EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
 ORDER BY p.oid::regprocedure::text;
-- and what is not
SELECT p.oid::regprocedure AS admin_function
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'redis_sync'
 WHERE NOT EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                    WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
 ORDER BY p.oid::regprocedure::text;

-- a victim: a superuser's table, synced, readable by sec_user
CREATE TABLE sec.victim (id int PRIMARY KEY, v text);
GRANT SELECT ON sec.victim TO sec_user;
SELECT redis_sync.write_through('sec.victim', key_prefix => 'sec:victim:');
INSERT INTO sec.victim VALUES (1, 'one'), (2, 'two');
SELECT redis_sync.command('SET', 'other:app:key', 'not ours');

SET ROLE sec_user;
-- 2. any role emptied Redis through _purge_at_commit
SELECT rs_error($$SELECT redis_sync._purge_at_commit('pg_class', '')$$);
SELECT rs_error($$SELECT redis_sync._purge_at_commit('sec.victim', 'sec:victim:')$$);
-- admin-only functions
SELECT rs_error($$SELECT redis_sync.command('FLUSHDB')$$);
SELECT rs_error($$SELECT redis_sync.worker_pause()$$);
SELECT rs_error($$SELECT redis_sync.worker_resume()$$);
SELECT rs_error($$SELECT redis_sync.stats_reset()$$);
SELECT rs_error($$SELECT redis_sync.deliver_outbox()$$);
SELECT rs_error($$SELECT redis_sync.flush()$$);
SELECT rs_error($$SELECT redis_sync.flush('sec.victim')$$);
-- statistics: the views and the functions behind them answer the same roles
SELECT rs_error($$SELECT count(*) FROM redis_sync.stats$$);
SELECT rs_error($$SELECT count(*) FROM redis_sync._table_stats()$$);
SELECT rs_error($$SELECT count(*) FROM redis_sync._global_stats()$$);
-- reading keys of tables one does not own
SELECT rs_error($$SELECT * FROM redis_sync._fetch('{other:app:key}', false)$$);
SELECT rs_error($$SELECT * FROM redis_sync._scan('')$$);
SELECT rs_error($$SELECT * FROM redis_sync._push_keys('sec.victim', '{sec:victim:1}')$$);
SELECT rs_error($$SELECT * FROM redis_sync.verify('sec.victim')$$);
SELECT rs_error($$SELECT redis_sync.warm('sec.victim')$$);
SELECT rs_error($$SELECT redis_sync.unsync('sec.victim', purge => true)$$);
SELECT rs_error($$SELECT redis_sync._config_delete('sec.victim', 'write_through')$$);
SELECT rs_error($$SELECT * FROM redis_sync._dirty_members('sec.victim')$$);
-- 3. _config_write: checks everything itself
CREATE TABLE sec_evil.mine (id int PRIMARY KEY, n int);
SELECT rs_error($$SELECT redis_sync._config_write('sec.victim', 'write_through', 'x:', '{id}', '{v}', 'hash',
                  NULL, 'eventual', 'sync', NULL, NULL, NULL, NULL, NULL)$$);
SELECT rs_error($$SELECT redis_sync._config_write('sec_evil.mine', 'write_behind', 'mine:', '{id}', '{n}', 'hash',
                  NULL, 'eventual', 'sync', NULL, '1 s', 10, 'ignore', '{}')$$);
SELECT rs_error($$SELECT redis_sync._config_write('sec_evil.mine', 'write_through', 'mine:', '{id}', '{n,NULL}', 'hash',
                  NULL, 'eventual', 'sync', NULL, NULL, NULL, NULL, NULL)$$);
SELECT rs_error($$SELECT redis_sync._config_write('sec_evil.mine', 'write_through', 'mine:', '{NULL}', '{n}', 'hash',
                  NULL, 'eventual', 'sync', NULL, NULL, NULL, NULL, NULL)$$);
SELECT rs_error($$SELECT redis_sync._config_write('sec_evil.mine', 'write_through', 'mine:', '{id}', '{nope}', 'hash',
                  NULL, 'eventual', 'sync', NULL, NULL, NULL, NULL, NULL)$$);
-- nor write_through()'s checks of the key and the delivery: a key no unique
-- index backs (two rows could share it), a key type a key cannot hold,
-- strict with async
CREATE TABLE sec_evil.mine2 (id int PRIMARY KEY, n int NOT NULL, a int[] NOT NULL UNIQUE);
SELECT rs_error($$SELECT redis_sync._config_write('sec_evil.mine2', 'write_through', 'mine2:', '{n}', '{id}', 'hash',
                  NULL, 'eventual', 'sync', NULL, NULL, NULL, NULL, NULL)$$);
SELECT rs_error($$SELECT redis_sync._config_write('sec_evil.mine2', 'write_through', 'mine2:', '{a}', '{id}', 'hash',
                  NULL, 'eventual', 'sync', NULL, NULL, NULL, NULL, NULL)$$);
SELECT rs_error($$SELECT redis_sync._config_write('sec_evil.mine2', 'write_through', 'mine2:', '{id}', '{n}', 'hash',
                  NULL, 'strict', 'async', NULL, NULL, NULL, NULL, NULL)$$);
DROP TABLE sec_evil.mine2;
-- the prefix-overlap check cannot be bypassed either
SELECT regexp_replace(rs_error($$SELECT redis_sync._config_write('sec_evil.mine', 'write_through', 'sec:', '{id}', '{n}', 'hash',
                  NULL, 'eventual', 'sync', NULL, NULL, NULL, NULL, NULL)$$), 'server [0-9]+', 'server N');
SELECT rs_error($$SELECT redis_sync._config_write('sec_evil.mine', 'write_through', 'redis_sync:', '{id}', '{n}', 'hash',
                  NULL, 'eventual', 'sync', NULL, NULL, NULL, NULL, NULL)$$);
SELECT rs_error($$SELECT redis_sync.write_through('sec_evil.mine', key_prefix => 'r')$$);
-- temporary tables cannot be synced
CREATE TEMP TABLE tmp_sync (id int PRIMARY KEY, v text);
SELECT rs_error($$SELECT redis_sync.write_through('tmp_sync', key_prefix => 'sec:victim:')$$);
SELECT rs_error($$SELECT redis_sync.write_through('tmp_sync', key_prefix => 'tmp:')$$);
DROP TABLE tmp_sync;
-- capture() cannot be pointed at another table from one's own trigger: the
-- guard ignores its argument and acts only for a synced ancestor (none here)
CREATE TABLE sec_evil.decoy (id int);
DO $$ BEGIN EXECUTE format('CREATE TRIGGER t BEFORE TRUNCATE ON sec_evil.decoy FOR EACH STATEMENT '
                           'EXECUTE FUNCTION redis_sync.capture(%L)', 'sec.victim'::regclass::oid::text); END $$;
SELECT regexp_replace(rs_error($$TRUNCATE sec_evil.decoy$$), 'capture\([0-9]+\)', 'capture(OID)') AS error;
RESET ROLE;
-- Redis kept every key
SELECT redis_sync.command('GET', 'other:app:key'), redis_sync.command('EXISTS', 'sec:victim:1');

-- 4. get() populated as the owner under the caller's search_path: a planted
-- unnest() (an exact match beats pg_catalog.unnest(anyarray)) ran as superuser
CREATE TABLE sec.trace (who text, superuser bool);
GRANT INSERT ON sec.trace TO PUBLIC;
SET ROLE sec_user;
CREATE FUNCTION sec_evil.unnest(integer[]) RETURNS SETOF integer LANGUAGE sql AS
$$ INSERT INTO sec.trace SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
   SELECT x FROM pg_catalog.unnest($1) x $$;
CREATE FUNCTION sec_evil.unnest(text[]) RETURNS SETOF text LANGUAGE sql AS
$$ INSERT INTO sec.trace SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
   SELECT x FROM pg_catalog.unnest($1) x $$;
RESET ROLE;
SELECT redis_sync.command('DEL', 'sec:victim:1');
SET ROLE sec_user;
SET search_path = sec_evil, public;
SELECT * FROM redis_sync.get(NULL::sec.victim, '1');
RESET search_path;
RESET ROLE;
SELECT h('sec:victim:1');
SELECT count(*) AS planted_function_calls FROM sec.trace;
-- the capture trigger loads the configuration in the writer's session: a
-- SECURITY DEFINER function without its own search_path must not lend its
-- rights to an operator planted in the caller's path
SET ROLE sec_user;
CREATE FUNCTION sec_evil.eq(regclass, oid) RETURNS boolean LANGUAGE sql AS
$$ INSERT INTO sec.trace SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
   SELECT $1::oid OPERATOR(pg_catalog.=) $2 $$;
CREATE OPERATOR sec_evil.= (LEFTARG = regclass, RIGHTARG = oid, FUNCTION = sec_evil.eq);
RESET ROLE;
CREATE FUNCTION sec.definer_insert(i int) RETURNS void LANGUAGE sql SECURITY DEFINER AS
$$ INSERT INTO sec.victim VALUES (i, 'by definer') $$;
GRANT EXECUTE ON FUNCTION sec.definer_insert(int) TO sec_user;
SELECT redis_sync.write_through('sec.victim', key_prefix => 'sec:victim:');   -- reload the configuration
SET ROLE sec_user;
SET search_path = sec_evil, public;
SELECT sec.definer_insert(3);
RESET search_path;
RESET ROLE;
SELECT h('sec:victim:3');
SELECT count(*) AS planted_function_calls FROM sec.trace;

-- 5. a non-superuser owner uses the whole public API on its own tables
SET ROLE sec_owner;
CREATE TABLE sec.owned (id int PRIMARY KEY, v text);
INSERT INTO sec.owned VALUES (1, 'a'), (2, 'b');
SELECT redis_sync.write_through('sec.owned', key_prefix => 'sec:owned:');
SELECT redis_sync.warm('sec.owned');
SELECT * FROM redis_sync.verify('sec.owned');
RESET ROLE;
SELECT redis_sync.command('HSET', 'sec:owned:1', 'v', 'stale');
SELECT redis_sync.command('SET', 'sec:owned:99', 'extra');
SET ROLE sec_owner;
SELECT key, problem FROM redis_sync.verify('sec.owned') ORDER BY key;
SELECT redis_sync.resync('sec.owned');
SELECT * FROM redis_sync.verify('sec.owned');
SELECT redis_sync.flush('sec.owned');
SELECT redis_sync.invalidate('sec.owned', key_prefix => 'sec:owned:');
SELECT redis_sync.unsync('sec.owned', purge => true);
-- write-behind and dead letters on its own table
CREATE TABLE sec.counts (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0, note text);
SELECT redis_sync.write_behind('sec.counts', key_prefix => 'sec:counts:', flush_interval => '1 h', counters => '{n}');
SELECT * FROM redis_sync._dirty_members('sec.counts');
SELECT redis_sync.hset('sec.counts', '1', 'note', 'hello');
SELECT redis_sync.hincrby('sec.counts', '1', 'n', 5);
SELECT * FROM redis_sync._dirty_members('sec.counts');
SELECT redis_sync.flush('sec.counts');
SELECT * FROM sec.counts;
SELECT redis_sync.retry_dead_letters('sec.counts'), redis_sync.discard_dead_letters('sec.counts');
SELECT count(*) FROM redis_sync.dead_letters;
-- hset() needs INSERT and UPDATE, not SELECT; hincrby() returns the value, so SELECT on the column too
GRANT INSERT, UPDATE ON sec.counts TO sec_user;
RESET ROLE;
SET ROLE sec_user;
SELECT redis_sync.hset('sec.counts', '2', 'note', 'from user');
SELECT rs_error($$SELECT redis_sync.hincrby('sec.counts', '2', 'n', 1)$$);
SELECT rs_error($$SELECT redis_sync.unsync('sec.counts')$$);
SELECT rs_error($$SELECT redis_sync.retry_dead_letters('sec.counts')$$);
-- dead letters: another owner's table is refused by name; the table itself
-- is read-only to every role (no lock that could hold the worker's drains)
SELECT rs_error($$SELECT redis_sync.discard_dead_letters('sec.counts')$$);
SELECT redis_sync.discard_dead_letters();
SELECT rs_error($$DELETE FROM redis_sync.dead_letters$$);
SELECT rs_error($$LOCK TABLE redis_sync.dead_letters IN ACCESS EXCLUSIVE MODE$$);
SELECT rs_error($$LOCK TABLE redis_sync.dead_letters IN SHARE MODE$$);
RESET ROLE;
-- an owner's discard_dead_letters() forgets its own tables' only
INSERT INTO redis_sync.dead_letters (relid, redis_key, member, error, sqlstate)
VALUES ('sec.counts', 'sec:counts:9', '9', 'test', '22000'), ('sec.victim', 'sec:victim:9', '9', 'test', '22000');
SET ROLE sec_owner;
SELECT relid, member FROM redis_sync.dead_letters;
SELECT redis_sync.discard_dead_letters();
RESET ROLE;
SELECT relid, member FROM redis_sync.dead_letters;
SELECT redis_sync.discard_dead_letters('sec.victim', '8'), redis_sync.discard_dead_letters('sec.victim', '9');
-- a superuser may name a dropped table's OID (its orphaned letters)
CREATE TABLE sec.gone (id int PRIMARY KEY);
INSERT INTO redis_sync.dead_letters (relid, redis_key, member, error, sqlstate)
VALUES ('sec.gone', 'sec:gone:1', '1', 'test', '22000');
SELECT 'sec.gone'::regclass::oid AS gone_oid \gset
DROP TABLE sec.gone;
SELECT redis_sync.discard_dead_letters(:gone_oid::regclass);
SELECT count(*) AS left FROM redis_sync.dead_letters WHERE relid::oid = :gone_oid;
GRANT SELECT (n) ON sec.counts TO sec_user;
SET ROLE sec_user;
SELECT redis_sync.hincrby('sec.counts', '2', 'n', 1);
RESET ROLE;
SELECT redis_sync.flush('sec.counts');
SELECT * FROM sec.counts ORDER BY id;
-- pg_monitor members read the statistics
GRANT pg_monitor TO sec_user;
SET ROLE sec_user;
SELECT count(*) > 0 AS stats_visible FROM redis_sync.stats;
SELECT worker_running IS NOT NULL AS worker_stats_visible FROM redis_sync.worker_stats;
RESET ROLE;
REVOKE pg_monitor FROM sec_user;

-- 6. row-level security: get() and hset() as the hidden and as the visible role
CREATE TABLE sec.rls (id int PRIMARY KEY, who name NOT NULL, v text);
ALTER TABLE sec.rls ENABLE ROW LEVEL SECURITY;
CREATE POLICY sel ON sec.rls FOR SELECT USING (who = current_user);
CREATE POLICY upd ON sec.rls FOR UPDATE USING (who = current_user) WITH CHECK (who = current_user);
CREATE POLICY ins ON sec.rls FOR INSERT WITH CHECK (who = current_user);
GRANT SELECT, INSERT, UPDATE ON sec.rls TO sec_hidden, sec_visible;
INSERT INTO sec.rls VALUES (1, 'sec_visible', 'visible only to sec_visible');
SELECT redis_sync.write_through('sec.rls', key_prefix => 'sec:rls:', warm => false);
SELECT redis_sync.command('DEL', 'sec:rls:1');
SET ROLE sec_hidden;
SELECT * FROM sec.rls;
SELECT redis_sync.get(NULL::sec.rls, '1') IS NULL AS not_returned;   -- a miss
RESET ROLE;
SELECT redis_sync.command('EXISTS', 'sec:rls:1') AS cached_for_hidden;
SET ROLE sec_hidden;
SELECT redis_sync.get(NULL::sec.rls, '1') IS NULL AS not_returned;   -- a miss again
SET ROLE sec_visible;
SELECT * FROM redis_sync.get(NULL::sec.rls, '1');   -- a miss: returned and cached
RESET ROLE;
SELECT h('sec:rls:1');
SET ROLE sec_hidden;
SELECT redis_sync.get(NULL::sec.rls, '1') IS NULL AS not_returned;   -- a hit
SET ROLE sec_visible;
SELECT * FROM redis_sync.get(NULL::sec.rls, '1');   -- a hit
RESET ROLE;
-- hset(): write-behind through the same policies
CREATE TABLE sec.rls_wb (id int PRIMARY KEY, who name NOT NULL DEFAULT current_user, v text);
ALTER TABLE sec.rls_wb ENABLE ROW LEVEL SECURITY;
CREATE POLICY sel ON sec.rls_wb FOR SELECT USING (who = current_user);
CREATE POLICY upd ON sec.rls_wb FOR UPDATE USING (who = current_user) WITH CHECK (who = current_user);
CREATE POLICY ins ON sec.rls_wb FOR INSERT WITH CHECK (who = current_user AND id < 100);
GRANT INSERT, UPDATE ON sec.rls_wb TO sec_hidden, sec_visible;
INSERT INTO sec.rls_wb VALUES (1, 'sec_visible', 'v1');
SELECT redis_sync.write_behind('sec.rls_wb', key_prefix => 'sec:rlswb:', columns => '{v}', flush_interval => '1 h');
-- under row-level security the change is tried as the caller: UPDATE ... WHERE id needs SELECT (id)
SET ROLE sec_hidden;
SELECT rs_error($$SELECT redis_sync.hset('sec.rls_wb', '3', 'v', 'no SELECT on the key')$$);
RESET ROLE;
GRANT SELECT (id) ON sec.rls_wb TO sec_hidden, sec_visible;
SET ROLE sec_hidden;
SELECT rs_error($$SELECT redis_sync.hset('sec.rls_wb', '1', 'v', 'overwritten by hidden')$$);
SELECT rs_error($$SELECT redis_sync.hset('sec.rls_wb', '100', 'v', 'a row the policy forbids')$$);
-- a new row: not through hset() (the drain would insert it with the
-- owner's defaults, who = the owner); INSERT it first, then hset() it
SELECT rs_error($$SELECT redis_sync.hset('sec.rls_wb', '2', 'v', 'a new row of my own')$$);
INSERT INTO sec.rls_wb (id, v) VALUES (2, 'inserted');
SELECT redis_sync.hset('sec.rls_wb', '2', 'v', 'a new row of my own');
SET ROLE sec_visible;
SELECT redis_sync.hset('sec.rls_wb', '1', 'v', 'changed by visible');
RESET ROLE;
SELECT redis_sync.command('SMEMBERS', 'sec:rlswb:dirty') @> '["1", "2"]' AS both_dirty,
       jsonb_array_length(redis_sync.command('SMEMBERS', 'sec:rlswb:dirty')) AS members;
SELECT redis_sync.flush('sec.rls_wb');
SELECT id, v FROM sec.rls_wb ORDER BY id;

-- 7. prefix claims: one claimed by a table of another server is refused,
-- naming it; a stale claim of this database is taken over; unsync releases
SELECT redis_sync.command('HSET', 'redis_sync:claims', 'p:elsewhere:',
       E'1/2/3\ttable public.t of database "other" on server 1');
CREATE TABLE sec.claimer (id int PRIMARY KEY, v text);
SELECT rs_error($$SELECT redis_sync.write_through('sec.claimer', key_prefix => 'elsewhere:x:')$$);
SELECT rs_error($$SELECT redis_sync.write_through('sec.claimer', key_prefix => 'else')$$);
SELECT redis_sync.write_through('sec.claimer', key_prefix => 'sec:claimer:');
SELECT redis_sync.command('HEXISTS', 'redis_sync:claims', 'p:sec:claimer:') AS claimed;
SELECT redis_sync.unsync('sec.claimer');
SELECT redis_sync.command('HEXISTS', 'redis_sync:claims', 'p:sec:claimer:') AS still_claimed;
-- an unsync rolled back to a savepoint keeps the claim
SELECT redis_sync.write_through('sec.claimer', key_prefix => 'sec:claimer:');
BEGIN;
SAVEPOINT s;
SELECT redis_sync.unsync('sec.claimer');
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT redis_sync.command('HEXISTS', 'redis_sync:claims', 'p:sec:claimer:') AS kept;
SELECT redis_sync.unsync('sec.claimer');
-- a rolled-back sync leaves a stale claim; the next table of this database takes it over
BEGIN;
SELECT redis_sync.write_through('sec.claimer', key_prefix => 'sec:stale:');
ROLLBACK;
SELECT redis_sync.command('HEXISTS', 'redis_sync:claims', 'p:sec:stale:') AS stale_claim_left;
CREATE TABLE sec.claimer2 (id int PRIMARY KEY);
SELECT redis_sync.write_through('sec.claimer2', key_prefix => 'sec:stale:');
-- Redis lost the claims (or the table was synced by 0.1): claim_prefixes() records them again
SELECT redis_sync.command('HDEL', 'redis_sync:claims', 'p:sec:stale:');
SELECT redis_sync.claim_prefixes() > 0 AS claimed, redis_sync.command('HEXISTS', 'redis_sync:claims', 'p:sec:stale:') AS again;
-- meanwhile another server took it: a warning names the holder, nothing is overwritten
SELECT redis_sync.command('HSET', 'redis_sync:claims', 'p:sec:stale:',
       E'1/2/3\ttable public.t of database "other" on server 1');
SELECT redis_sync.claim_prefixes() > 0 AS claimed_others;
SELECT redis_sync.command('HGET', 'redis_sync:claims', 'p:sec:stale:') #>> '{}' ~ '^1/2/3' AS still_theirs;
SELECT redis_sync.command('HDEL', 'redis_sync:claims', 'p:sec:stale:');
SELECT redis_sync.unsync('sec.claimer2');
SELECT redis_sync.command('HDEL', 'redis_sync:claims', 'p:elsewhere:');

-- 8. a table owner's code that the worker runs in its background warm (a
-- policy, a lock wait) cannot hold the worker: redis_sync.warm_timeout
-- cancels the batch, and other tables' changes are delivered meanwhile
ALTER SYSTEM SET redis_sync.warm_timeout = '1s';
ALTER SYSTEM SET redis_sync.drain_timeout = '1s';
SELECT pg_reload_conf();
SELECT pg_sleep(0.3);
CREATE TABLE sec.async_victim (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('sec.async_victim', key_prefix => 'sec:async:', delivery => 'async');
SET ROLE sec_owner;
CREATE FUNCTION sec.stall() RETURNS boolean LANGUAGE sql AS
$$ SELECT CASE WHEN current_setting('application_name') = ''   -- the worker's
               THEN pg_sleep(30) IS NOT NULL ELSE true END $$;
CREATE TABLE sec.stalling (id int PRIMARY KEY, v text);
INSERT INTO sec.stalling VALUES (1, 'x');
ALTER TABLE sec.stalling ENABLE ROW LEVEL SECURITY;
ALTER TABLE sec.stalling FORCE ROW LEVEL SECURITY;
CREATE POLICY stall ON sec.stalling USING (sec.stall());
SELECT redis_sync.write_through('sec.stalling', key_prefix => 'sec:stalling:');
RESET ROLE;
SELECT pg_sleep(0.5);   -- the worker is in the table's policy now
INSERT INTO sec.async_victim VALUES (1, 'delivered');
DO $$ BEGIN
  FOR i IN 1..100 LOOP
    EXIT WHEN redis_sync.command('EXISTS', 'sec:async:1')::text = '1'
          AND (SELECT state FROM redis_sync.warming WHERE "table" = 'sec.stalling'::regclass) = 'retrying';
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;
SELECT h('sec:async:1');
SELECT state, attempts > 0 AS retried, last_error FROM redis_sync.warming WHERE "table" = 'sec.stalling'::regclass;
-- warming shows each role its own tables' warms only: a cheap function of
-- another role in the query's WHERE must not see the other rows (the view is
-- a security barrier)
SET ROLE sec_user;
CREATE FUNCTION sec_evil.peek(t regclass, e text) RETURNS boolean LANGUAGE plpgsql COST 0.0001 AS
$$ BEGIN RAISE NOTICE 'saw the warm of % (%)', t, e; RETURN true; END $$;
SELECT count(*) FROM redis_sync.warming WHERE sec_evil.peek("table", last_error);
RESET ROLE;
-- calling write_through() again does not make the worker try at once
SET ROLE sec_owner;
SELECT redis_sync.write_through('sec.stalling', key_prefix => 'sec:stalling:');
RESET ROLE;
SELECT w.state, q.attempts AS tries_so_far, q.retry_at > now() + interval '5 s' AS waits
  FROM redis_sync.warming w JOIN redis_sync._warm_queue q ON q.relid = w."table"
 WHERE w."table" = 'sec.stalling'::regclass;
SELECT redis_sync.unsync('sec.stalling');
-- the same for a write-behind table whose trigger blocks in the drain: after
-- a drain_timeout it waits, flush() or not (its error: the timeout, or the
-- hold of its owner's code when a step before caught its cancel)
SET ROLE sec_owner;
CREATE TABLE sec.stalling_wb (id int PRIMARY KEY, n int);
CREATE FUNCTION sec.stall_trg() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM sec.stall(); RETURN NEW; END $$;
CREATE TRIGGER stall BEFORE INSERT OR UPDATE ON sec.stalling_wb FOR EACH ROW EXECUTE FUNCTION sec.stall_trg();
SELECT redis_sync.write_behind('sec.stalling_wb', key_prefix => 'sec:stallwb:', flush_interval => '1 h');
SELECT redis_sync.hset('sec.stalling_wb', '1', 'n', '5');
SET client_min_messages = error;
SELECT redis_sync.flush('sec.stalling_wb');
SELECT redis_sync.flush('sec.stalling_wb');
SELECT redis_sync.flush('sec.stalling_wb');
RESET client_min_messages;
RESET ROLE;
SELECT drain_retries >= 1 AS retried,
       last_error ~ '^(a batch took longer than redis_sync.drain_timeout \(1000 ms\) and was cancelled|redis_sync worker: the code of role "sec_owner" is not run until .*)$' AS waits
  FROM redis_sync.stats WHERE "table" = 'sec.stalling_wb'::regclass;
SELECT count(*) AS applied FROM sec.stalling_wb;
SELECT redis_sync.unsync('sec.stalling_wb');
SELECT redis_sync.unsync('sec.async_victim', purge => true);
ALTER SYSTEM RESET redis_sync.warm_timeout;
ALTER SYSTEM RESET redis_sync.drain_timeout;
SELECT pg_reload_conf();

-- 9. the keyspace a plain role may take.  Any prefix that no other table
-- claims is free, an application's own keys under it included: the owner
-- of a table synced there reads them (_fetch(), _scan()) and purges them.
-- redis_sync.allowed_key_prefixes (superusers only) confines non-superusers.
SELECT redis_sync.command('SET', 'app:session:1', 'secret of the application');
SET ROLE sec_user;
CREATE TABLE sec_evil.taker (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('sec_evil.taker', key_prefix => 'app:', warm => false);
SELECT * FROM redis_sync._fetch('{app:session:1}', false);
SELECT redis_sync.unsync('sec_evil.taker');
RESET ROLE;
SET redis_sync.allowed_key_prefixes = 'tenant:a:, "tenant:b,c:"';
SET ROLE sec_user;
SELECT rs_error($$SET redis_sync.allowed_key_prefixes = ''$$);
SELECT rs_error($$SELECT redis_sync.write_through('sec_evil.taker', key_prefix => 'app:', warm => false)$$);
SELECT redis_sync.write_through('sec_evil.taker', key_prefix => 'tenant:a:taker:', warm => false);
SELECT redis_sync.unsync('sec_evil.taker');
SELECT rs_error($$SELECT redis_sync.write_behind('sec_evil.taker', key_prefix => 'tenant:b,c:taker:', dirty_set => 'app:dirty')$$);
SELECT redis_sync.write_behind('sec_evil.taker', key_prefix => 'tenant:b,c:taker:', dirty_set => 'tenant:a:dirty');
SELECT redis_sync.unsync('sec_evil.taker');
RESET ROLE;
-- superusers are not confined
SELECT redis_sync.write_through('sec_evil.taker', key_prefix => 'app:t:', warm => false);
SELECT redis_sync.unsync('sec_evil.taker');
RESET redis_sync.allowed_key_prefixes;
SELECT redis_sync.command('GET', 'app:session:1');
SELECT redis_sync.command('DEL', 'app:session:1');

-- 10. get() decodes a table's values with the table's code (the domain
-- checks of its key and columns): as the owner, never as the caller.  A
-- superuser's plain SELECT of a plain role's table runs none of that role's
-- code; its get() must not either.
TRUNCATE sec.trace;
SET ROLE sec_owner;
CREATE FUNCTION sec.mark(int) RETURNS boolean LANGUAGE sql AS
$$ INSERT INTO sec.trace SELECT current_user, (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user);
   SELECT true $$;
CREATE DOMAIN sec.marked AS int CHECK (sec.mark(VALUE));
CREATE TABLE sec.domained (id sec.marked PRIMARY KEY, v sec.marked);
INSERT INTO sec.domained VALUES (1, 10);
SELECT redis_sync.write_through('sec.domained', key_prefix => 'sec:domained:', warm => false);
RESET ROLE;
TRUNCATE sec.trace;
SELECT * FROM sec.domained;
SELECT * FROM redis_sync.get(NULL::sec.domained, '1');   -- a miss
SELECT * FROM redis_sync.get(NULL::sec.domained, '1');   -- a hit
SELECT DISTINCT who, superuser FROM sec.trace ORDER BY 1;
SELECT redis_sync.unsync('sec.domained', purge => true);
-- verify() encodes the rows it reads as they are pushed: a cast to json of
-- the owner's type is the owner's code too
SET ROLE sec_owner;
CREATE TYPE sec.mood AS ENUM ('calm', 'cross');
CREATE FUNCTION sec.mood_json(sec.mood) RETURNS json LANGUAGE sql AS
$$ SELECT pg_catalog.to_json($1::text) FROM (SELECT sec.mark(1)) m $$;
CREATE CAST (sec.mood AS json) WITH FUNCTION sec.mood_json(sec.mood);
CREATE TABLE sec.moods (id int PRIMARY KEY, m sec.mood);
INSERT INTO sec.moods VALUES (1, 'calm');
SELECT redis_sync.write_through('sec.moods', key_prefix => 'sec:moods:', format => 'json', warm => false);
SELECT redis_sync.warm('sec.moods');
RESET ROLE;
TRUNCATE sec.trace;
SELECT * FROM redis_sync.verify('sec.moods');
SELECT DISTINCT who, superuser FROM sec.trace ORDER BY 1;
-- and warm() (a superuser may warm any table) fills as the owner
SELECT redis_sync.command('DEL', 'sec:moods:1', '{sec:moods:1}:rs_version');
TRUNCATE sec.trace;
SELECT redis_sync.warm('sec.moods');
SELECT DISTINCT who, superuser FROM sec.trace ORDER BY 1;
SELECT redis_sync.unsync('sec.moods', purge => true);

-- unsync() by the owner of a partitioned table one of whose partitions
-- another role owns (a superuser attached it after the sync): the trigger
-- the extension keeps on that partition goes too; no one else may drop it
CREATE TABLE sec.parts (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
CREATE TABLE sec.parts_a PARTITION OF sec.parts FOR VALUES FROM (0) TO (100);
ALTER TABLE sec.parts OWNER TO sec_owner;
ALTER TABLE sec.parts_a OWNER TO sec_owner;
SET ROLE sec_owner;
SELECT redis_sync.write_through('sec.parts', key_prefix => 'sec:parts:');
RESET ROLE;
CREATE TABLE sec."parts ""b""" (id int PRIMARY KEY, v int);
ALTER TABLE sec."parts ""b""" OWNER TO sec_user;
ALTER TABLE sec.parts ATTACH PARTITION sec."parts ""b""" FOR VALUES FROM (100) TO (200);
SELECT tgrelid::regclass, tgname FROM pg_trigger
 WHERE tgname LIKE 'redis\_sync\_%' AND tgrelid::regclass::text LIKE 'sec.%parts%' ORDER BY 1, 2;
SET ROLE sec_user;
SELECT redis_sync._drop_partition_triggers('sec.parts');
SELECT redis_sync.unsync('sec.parts');
SET ROLE sec_owner;
INSERT INTO sec.parts VALUES (1, 1), (150, 2);
-- what the helper drops, and that it does not depend on the session's
-- standard_conforming_strings (a bytea literal did)
SET standard_conforming_strings = off;
SELECT redis_sync._drop_partition_triggers('sec.parts');
SELECT tgrelid::regclass, tgname FROM pg_trigger
 WHERE left(tgname, 11) = 'redis_sync_' AND tgrelid::regclass::text LIKE 'sec.%parts%' ORDER BY 1, 2;
SELECT redis_sync.unsync('sec.parts', purge => true);
RESET standard_conforming_strings;
RESET ROLE;
SELECT tgrelid::regclass, tgname FROM pg_trigger
 WHERE tgname LIKE 'redis\_sync\_%' AND tgrelid::regclass::text LIKE 'sec.%parts%' ORDER BY 1, 2;
SELECT redis_sync._drop_partition_triggers(NULL);
DROP TABLE sec.parts;

-- cleanup
SELECT redis_sync.unsync('sec.victim');
SELECT redis_sync.unsync('sec.rls');
SELECT redis_sync.unsync('sec.rls_wb');
SELECT redis_sync.unsync('sec.counts');
SET client_min_messages = warning;
DROP SCHEMA sec CASCADE;
DROP SCHEMA sec_evil CASCADE;
DROP OWNED BY sec_owner, sec_user, sec_hidden, sec_visible;
DROP ROLE sec_owner, sec_user, sec_hidden, sec_visible;
RESET client_min_messages;
