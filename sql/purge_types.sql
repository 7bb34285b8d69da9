-- purge_types: TRUNCATE and purges remove a table's rows from Redis (hashes
-- and strings under its prefix), never the dirty set that the same table's
-- write-behind policy keeps under that prefix (pending values would be lost)
SELECT redis_sync.worker_pause();
CREATE TABLE pt (id int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0);
SELECT redis_sync.write_through('pt', key_prefix => 'pt:', columns => '{v}', warm => false);
SELECT redis_sync.write_behind('pt', key_prefix => 'pt:', dirty_set => 'pt:dirty',
                               columns => '{n}', flush_interval => '1 h');
INSERT INTO pt VALUES (1, 'a'), (2, 'b');
SELECT redis_sync.command('HSET', 'pt:1', 'n', '5'), redis_sync.command('SADD', 'pt:dirty', '1');
SELECT redis_sync.command('SET', 'pt:x', 'a string row');
TRUNCATE pt;
SELECT redis_sync.command('EXISTS', 'pt:1') AS hash_row, redis_sync.command('EXISTS', 'pt:2') AS hash_row2,
       redis_sync.command('EXISTS', 'pt:x') AS string_row,
       redis_sync.command('SMEMBERS', 'pt:dirty') AS dirty_set_kept;
SELECT redis_sync.worker_resume();
-- a dirty set can never be a companion key (they begin with "{"), also when
-- _config_write() is called directly
SELECT rs_error($$SELECT redis_sync.write_behind('pt', key_prefix => 'pt:', columns => '{n}',
                                                  dirty_set => '{pt:1}:rs_version')$$);
SELECT rs_error($$SELECT redis_sync._config_write('pt', 'write_behind', 'pt:', '{id}', '{n}', 'hash',
                  NULL, 'eventual', 'sync', '{pt:1}:rs_version', '1 h', 1000, 'ignore', '{}')$$);
SELECT dirty_set FROM redis_sync.tables WHERE relid = 'pt'::regclass AND policy = 'write_behind';
SELECT redis_sync.unsync('pt', purge => true);
SELECT redis_sync.command('DEL', 'pt:dirty');
DROP TABLE pt;

-- syncing again under a new prefix removes the keys under the old one
CREATE TABLE pf (id int PRIMARY KEY, v text);
INSERT INTO pf VALUES (1, 'a');
SELECT redis_sync.write_through('pf', key_prefix => 'pf1:', warm => false);
UPDATE pf SET v = 'b';
SELECT redis_sync.command('EXISTS', 'pf1:1') AS old_key_before;
SELECT redis_sync.write_through('pf', key_prefix => 'pf2:', warm => false);
UPDATE pf SET v = 'c';
SELECT redis_sync.command('EXISTS', 'pf1:1') AS old_key_after, redis_sync.command('HGET', 'pf2:1', 'v') AS new_key;
SELECT redis_sync.unsync('pf', purge => true);
DROP TABLE pf;
