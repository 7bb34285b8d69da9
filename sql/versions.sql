-- versions: 32 hex digits, WAL timeline (8), server epoch (8, the file
-- redis_sync.epoch in the data directory, advanced at each start and crash
-- restart), WAL insert position at pre-commit (16); compared as strings
CREATE TABLE ver (id int PRIMARY KEY, v text);
SELECT redis_sync.write_through('ver', key_prefix => 'ver:');
INSERT INTO ver VALUES (1, 'a');
SELECT redis_sync.command('GET', redis_sync.version_key('ver:1')) #>> '{}' AS v1 \gset
SELECT :'v1' ~ '^[0-9A-F]{32}$' AS format,
       substr(:'v1', 1, 8) = lpad(upper(to_hex(timeline_id)), 8, '0') AS timeline
  FROM pg_control_checkpoint();
SELECT substr(:'v1', 9, 8) = lpad(upper(to_hex(pg_read_file('redis_sync.epoch')::text::bigint)), 8, '0') AS epoch,
       pg_read_file('redis_sync.epoch')::text::bigint >= 1700000000 AS epoch_at_least_start_time;
SELECT ('x' || substr(:'v1', 17, 8))::bit(32)::bigint * 4294967296 + ('x' || substr(:'v1', 25, 8))::bit(32)::bigint
       <= pg_current_wal_insert_lsn() - '0/0'::pg_lsn AS position;
-- a later write: a larger version
UPDATE ver SET v = 'b' WHERE id = 1;
SELECT redis_sync.command('GET', redis_sync.version_key('ver:1')) #>> '{}' > :'v1' AS newer;
-- a 0.1 version (24 digits: timeline and position, no epoch), even one of a
-- cluster that wrote 4 PB of WAL, is older than every new version
SELECT redis_sync.command('SET', redis_sync.version_key('ver:1'), '00000001000FFFFFFFFFFFFF');
UPDATE ver SET v = 'c' WHERE id = 1;
SELECT redis_sync.command('HGET', 'ver:1', 'v') #>> '{}' AS value,
       length(redis_sync.command('GET', redis_sync.version_key('ver:1')) #>> '{}') AS version_length;
SELECT redis_sync.unsync('ver', purge => true);
DROP TABLE ver;
