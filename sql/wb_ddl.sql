-- wb_ddl: a write-behind configuration follows RENAME and DROP of its
-- columns (nothing is purged: Redis holds the newer data); later members
-- drain instead of being dead-lettered
CREATE TABLE wbd (id int PRIMARY KEY, views bigint NOT NULL DEFAULT 0, likes int, note text);
SELECT redis_sync.write_behind('wbd', key_prefix => 'wbd:', columns => '{views,likes,note}',
                               counters => '{views}', flush_interval => '1 h');
ALTER TABLE wbd RENAME COLUMN likes TO hearts;
ALTER TABLE wbd DROP COLUMN note;
ALTER TABLE wbd RENAME COLUMN views TO seen;
SELECT key_columns, columns, counters FROM redis_sync.tables WHERE relid = 'wbd'::regclass;
SELECT redis_sync.command('HSET', 'wbd:1', 'seen', '5', 'hearts', '3', 'note', 'gone'),
       redis_sync.command('SADD', 'wbd:dirty', '1');
SELECT redis_sync.flush('wbd');
SELECT * FROM wbd;
SELECT count(*) AS dead_letters FROM redis_sync.dead_letters WHERE relid = 'wbd'::regclass;
-- dropping the last write-behind column ends write-behind for the table
ALTER TABLE wbd DROP COLUMN seen, DROP COLUMN hearts;
SELECT count(*) AS configs FROM redis_sync.tables WHERE relid = 'wbd'::regclass;
SELECT redis_sync.command('DEL', 'wbd:1', 'wbd:dirty');
DROP TABLE wbd;
