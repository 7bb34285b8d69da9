# The worker's refresh after a Redis restart (keys_sql.c
# rs_refresh_cached_keys) pushes every cached key of a table again from its
# row, 1,000 rows per batch (warm_push.c rs_push_named).  Its memory must
# not grow with the table's data: each batch's encoded rows are freed after
# the batch, as the background warm's are (warm.c, its batch context).
#
# Found by the wave 2l review: rs_push_named kept every batch's query,
# lists and encoded rows until the end of the transaction, so the refresh of
# a table held all of its cached data in the worker at once (a table whose
# cache is larger than the machine's memory got the worker killed, and
# with it every session of the server).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('refresh_memory', redis => $redis,
	extra_conf => "shared_buffers = 16MB\n");

# an invalidate table of 60,000 rows of 2,000 bytes (120 MB), every row
# cached (the keys stand for what get() cached; their values do not matter,
# the refresh pushes each row again): the refresh is the restart's only work
# for an invalidate table (no re-warm, whose batches read 10,000 rows each)
$node->safe_psql('postgres', q{
CREATE TABLE big (id int PRIMARY KEY, v text);
INSERT INTO big SELECT g, repeat(md5(g::text), 62) || g FROM generate_series(1, 60000) g;
SELECT redis_sync.invalidate('big', key_prefix => 'big:');
});
$redis->cli('EVAL', "for i = 1, 60000 do redis.call('HSET', 'big:' .. i, 'v', 'cached'); "
	  . "redis.call('SET', '{big:' .. i .. '}:rs_version', '00000000000000000000000000000001') end", '0');
ok($redis->cli('DBSIZE') >= 120000, 'the rows are cached, with their versions');
is($redis->cli('SAVE'), 'OK', 'snapshot taken');
my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE application_name = 'redis_sync worker' OR backend_type LIKE 'redis_sync worker%' LIMIT 1});
ok($pid =~ /^\d+$/, "the worker's pid ($pid)");
my $before = RedisSync::Test::vmhwm_kb($pid);

$redis->stop;
$redis->start;
is($redis->cli('HGET', 'big:1', 'v'), 'cached', 'Redis is back with the snapshot');
ok(defined RedisSync::Compare::wait_for(sub { $node->log_contains('refreshed \d+ cached keys of table \d+') }, 180),
	'the refresh ended');
is(length($redis->cli('HGET', 'big:2', 'v')), 1985, 'the refresh pushed the rows again');
my $after = RedisSync::Test::vmhwm_kb($pid);
my $grew_mb = int(($after - $before) / 1024);
note("worker peak resident memory: $before kB before the refresh, $after kB after (+$grew_mb MB)");
cmp_ok($grew_mb, '<', 60, 'the refresh of 120 MB of cached values did not grow the worker by as much');

done_testing();
