# Redis restarts from an older snapshot (RDB, its default persistence; an
# AOF written every second; a failover to a replica that lagged): the keys
# it brings back hold the values, and the versions, of that moment, which
# the fence cannot tell from current ones.  After the restart the worker
# pushes every key Redis has under a write-through or invalidate table's
# prefix again from its row, and deletes those whose row is gone, before it
# fills the missing ones (worker.c restart_step, keys_sql.c
# rs_refresh_cached_keys).
#
# Found by the wave 2k soak: before, the re-warm only filled missing keys,
# so a row updated after the snapshot stayed cached with its old value and a
# deleted row was cached again until its next change or resync().
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use Test::More;
use Time::HiRes qw(sleep);

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('old_snapshot', redis => $redis);

$node->safe_psql('postgres', q{
CREATE TABLE w (id int PRIMARY KEY, v text);
INSERT INTO w SELECT g, 'old ' || g FROM generate_series(1, 3000) g;
SELECT redis_sync.write_through('w', key_prefix => 'w:', warm => false);
SELECT redis_sync.warm('w');
CREATE TABLE inv (id int PRIMARY KEY, v text);
INSERT INTO inv VALUES (1, 'old');
SELECT redis_sync.invalidate('inv', key_prefix => 'inv:');
SELECT redis_sync.get(NULL::inv, '1');
CREATE TABLE mixed (id int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0);
INSERT INTO mixed VALUES (1, 'old');
SELECT redis_sync.write_through('mixed', key_prefix => 'mx:', columns => '{v}', warm => false);
SELECT redis_sync.write_behind('mixed', key_prefix => 'mx:', dirty_set => 'mx-dirty',
                               columns => '{n}', flush_interval => '1 h');
SELECT redis_sync.warm('mixed');
});
is($redis->cli('HGET', 'inv:1', 'v'), 'old', 'the invalidate table\'s row is cached by get()');
is($redis->cli('SAVE'), 'OK', 'snapshot taken (SAVE)');

$node->safe_psql('postgres', q{
UPDATE w SET v = 'new ' || id WHERE id <= 1000;
DELETE FROM w WHERE id > 2500;
INSERT INTO w VALUES (5000, 'inserted after the snapshot');
UPDATE inv SET v = 'new';
SELECT redis_sync.get(NULL::inv, '1');
});
is($node->safe_psql('postgres', q{SELECT count(*) FROM redis_sync.verify('w')}), '0',
	'cache == table before the restart');
is($redis->cli('HGET', 'inv:1', 'v'), 'new', 'the invalidate table\'s key re-read by get()');

my $old_run_id = $node->safe_psql('postgres', 'SELECT redis_run_id FROM redis_sync.worker_stats LIMIT 1');
# paused, the worker does not probe Redis: the snapshot's state is seen
# before the refresh, whatever the timing (it raced the worker in CI)
is($node->safe_psql('postgres', 'SELECT redis_sync.worker_pause()'), 't', 'worker paused');
$redis->stop;
$redis->start;
is($redis->cli('HGET', 'w:1', 'v'), 'old 1', 'Redis is back with the snapshot\'s older value');
is($redis->cli('EXISTS', 'w:3000'), '1', '... and with a deleted row\'s key');
$node->safe_psql('postgres', 'SELECT redis_sync.worker_resume()');

my $deadline = time + 60;
my $ok = 0;
while (time < $deadline)
{
	if ($node->log_contains('re-warmed \d+ keys of table \d+')
		&& $node->safe_psql('postgres', 'SELECT count(*) FROM redis_sync.verify(\'w\')') eq '0')
	{
		$ok = 1;
		last;
	}
	sleep 0.2;
}
ok($node->safe_psql('postgres', 'SELECT redis_run_id FROM redis_sync.worker_stats LIMIT 1') ne $old_run_id,
	'the worker saw the restart');
ok($ok, 'write-through: no stale or deleted row cached after the restart')
  or diag($node->safe_psql('postgres', q{SELECT string_agg(key || ' ' || problem, ', ' ORDER BY key) FROM redis_sync.verify('w')}));
is($redis->cli('HGET', 'w:1', 'v'), 'new 1', 'an updated row has its new value');
is($redis->cli('EXISTS', 'w:3000'), '0', 'a deleted row\'s key is gone');
is($redis->cli('HGET', 'w:5000', 'v'), 'inserted after the snapshot', 'a row missing from the snapshot is filled');
ok($node->log_contains('refreshed \d+ cached keys of table'), 'the refresh is logged');

# invalidate: the key get() cached is refreshed too
$deadline = time + 30;
while (time < $deadline && $redis->cli('HGET', 'inv:1', 'v') ne 'new') { sleep 0.1; }
is($redis->cli('HGET', 'inv:1', 'v'), 'new', 'invalidate: the cached key holds the row again');

# a table also write-behind over the same hashes is not refreshed (a key
# without a row there can be a write-behind insert not drained yet): said so
ok($node->log_contains('the cached keys of table \d+ were not refreshed after the Redis restart'),
	'the write-through + write-behind table is skipped, with a LOG');
is($redis->cli('HGET', 'mx:1', 'v'), 'old', 'its key as the snapshot had it');

done_testing();
