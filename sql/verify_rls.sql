-- verify_rls: under row-level security that applies to the caller (FORCE ROW
-- LEVEL SECURITY for the owner), verify() must not report the keys of rows
-- the caller cannot see as extra, and resync() must not delete them
SET client_min_messages = warning;
DROP ROLE IF EXISTS rs_rlsv_owner;
RESET client_min_messages;
CREATE ROLE rs_rlsv_owner;
CREATE TABLE vr_t (id int PRIMARY KEY, hidden bool NOT NULL, v text);
ALTER TABLE vr_t OWNER TO rs_rlsv_owner;
SELECT redis_sync.write_through('vr_t', key_prefix => 'vr:');
INSERT INTO vr_t VALUES (1, false, 'seen'), (2, true, 'hidden from the owner'), (3, true, 'hidden too');
ALTER TABLE vr_t ENABLE ROW LEVEL SECURITY;
ALTER TABLE vr_t FORCE ROW LEVEL SECURITY;
CREATE POLICY vr_sel ON vr_t FOR SELECT USING (NOT hidden);
-- a key no row has at all
SELECT redis_sync.command('HSET', 'vr:99', 'v', 'stale');

SET ROLE rs_rlsv_owner;
SELECT count(*) AS visible_rows FROM vr_t;
-- the owner: no extra reported (a WARNING says why), nothing to repair
SELECT * FROM redis_sync.verify('vr_t');
SELECT redis_sync.resync('vr_t') AS repaired;
-- a visible row's difference is still found; its repair is refused (repairs
-- read and lock rows as the owner, whom the policies restrict)
RESET ROLE;
SELECT redis_sync.command('HSET', 'vr:1', 'v', 'wrong');
SET ROLE rs_rlsv_owner;
SELECT key, problem FROM redis_sync.verify('vr_t');
\set SHOW_CONTEXT never
SELECT redis_sync.resync('vr_t') AS repaired;
RESET ROLE;
-- a superuser sees every row: it finds the extra key, and its repair is
-- refused too (it would read as the owner)
SELECT key, problem FROM redis_sync.verify('vr_t') ORDER BY key;
SELECT rs_error('SELECT redis_sync.resync(''vr_t'')');
-- every key is still there
SELECT k, redis_sync.command('HGET', k, 'v') AS v FROM unnest(ARRAY['vr:1', 'vr:2', 'vr:3', 'vr:99']) k;

-- without FORCE the owner bypasses its policies: the repair is exact
ALTER TABLE vr_t NO FORCE ROW LEVEL SECURITY;
SET ROLE rs_rlsv_owner;
SELECT key, problem FROM redis_sync.verify('vr_t') ORDER BY key;
SELECT redis_sync.resync('vr_t') AS repaired;
RESET ROLE;
SELECT k, redis_sync.command('HGET', k, 'v') AS v FROM unnest(ARRAY['vr:1', 'vr:2', 'vr:3', 'vr:99']) k;
SELECT * FROM redis_sync.verify('vr_t');

SELECT redis_sync.unsync('vr_t');
DROP TABLE vr_t;
DROP ROLE rs_rlsv_owner;
