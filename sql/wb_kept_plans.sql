-- wb_kept_plans: the drain keeps the plans of its UPDATE and INSERT across
-- batches (wb_apply.c); what changes on the table between two drains (a
-- row-level security policy, a trigger, a column's type) applies to the
-- next one, and a table whose key index cannot answer the key's equality
-- is still drained
\set SHOW_CONTEXT never
CREATE ROLE kp_owner;
CREATE TABLE kp (id int PRIMARY KEY, n int, note text);
ALTER TABLE kp OWNER TO kp_owner;
SELECT redis_sync.write_behind('kp', flush_interval => '1 h', key_prefix => 'kp:', columns => '{n,note}');
-- an INSERT, then an UPDATE: each statement's plan is made once and kept
SELECT redis_sync.command('HSET', 'kp:1', 'n', '1', 'note', 'a'), redis_sync.command('HSET', 'kp:2', 'n', '2', 'note', 'b');
SELECT redis_sync.command('SADD', 'kp:dirty', '1', '2');
SELECT redis_sync.flush('kp');
SELECT redis_sync.command('HSET', 'kp:1', 'n', '500'), redis_sync.command('SADD', 'kp:dirty', '1');
SELECT redis_sync.flush('kp');
SELECT * FROM kp ORDER BY id;

-- a policy the owner is held to, created after the plans were kept: a
-- value it forbids goes to dead letters, the others are written
ALTER TABLE kp ENABLE ROW LEVEL SECURITY;
ALTER TABLE kp FORCE ROW LEVEL SECURITY;
CREATE POLICY sel ON kp FOR SELECT USING (true);
CREATE POLICY ins ON kp FOR INSERT WITH CHECK (n < 100);
CREATE POLICY upd ON kp FOR UPDATE USING (true) WITH CHECK (n < 100);
SELECT redis_sync.command('HSET', 'kp:1', 'n', '1000'), redis_sync.command('HSET', 'kp:2', 'n', '20'),
       redis_sync.command('HSET', 'kp:3', 'n', '3000'), redis_sync.command('HSET', 'kp:4', 'n', '4');
SELECT redis_sync.command('SADD', 'kp:dirty', '1', '2', '3', '4');
SELECT redis_sync.flush('kp');
SELECT * FROM kp ORDER BY id;
SELECT member, sqlstate FROM redis_sync.dead_letters WHERE relid = 'kp'::regclass ORDER BY member;
SELECT redis_sync.discard_dead_letters('kp');
DROP POLICY sel ON kp;
DROP POLICY ins ON kp;
DROP POLICY upd ON kp;
ALTER TABLE kp NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;

-- a trigger created after the plans were kept fires on the next drain
CREATE FUNCTION kp_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.note := coalesce(NEW.note, '') || '+trigger'; RETURN NEW; END $$;
CREATE TRIGGER kp_note BEFORE UPDATE ON kp FOR EACH ROW EXECUTE FUNCTION kp_note();
SELECT redis_sync.command('HSET', 'kp:2', 'n', '21'), redis_sync.command('SADD', 'kp:dirty', '2');
SELECT redis_sync.flush('kp');
SELECT * FROM kp ORDER BY id;

-- a column's type changes: the next drain writes the new type
ALTER TABLE kp ALTER COLUMN n TYPE bigint;
SELECT redis_sync.command('HSET', 'kp:4', 'n', '9000000000'), redis_sync.command('SADD', 'kp:dirty', '4');
SELECT redis_sync.flush('kp');
SELECT * FROM kp ORDER BY id;
SELECT redis_sync.unsync('kp');
DROP TABLE kp;
DROP FUNCTION kp_note();
DROP ROLE kp_owner;

-- the key's only unique index has another collation than the column: no
-- index answers "k = member", so no kept plan is used (a nested loop
-- would read the table once per member); the batch is still written
CREATE TABLE kpc (k text COLLATE "C" NOT NULL, v int);
CREATE UNIQUE INDEX kpc_k ON kpc (k COLLATE "POSIX");
SELECT redis_sync.write_behind('kpc', flush_interval => '1 h', key_prefix => 'kpc:', dirty_set => 'kpc-dirty',
                               key_columns => '{k}');
SELECT redis_sync.command('HSET', 'kpc:a', 'v', '1'), redis_sync.command('HSET', 'kpc:b', 'v', '2');
SELECT redis_sync.command('SADD', 'kpc-dirty', 'a', 'b');
SELECT redis_sync.flush('kpc');
SELECT redis_sync.command('HSET', 'kpc:a', 'v', '10'), redis_sync.command('SADD', 'kpc-dirty', 'a');
SELECT redis_sync.flush('kpc');
SELECT * FROM kpc ORDER BY k;
SELECT redis_sync.unsync('kpc');
DROP TABLE kpc;
SELECT redis_sync.command('DEL', 'kp:1', 'kp:2', 'kp:3', 'kp:4', 'kpc:a', 'kpc:b');
