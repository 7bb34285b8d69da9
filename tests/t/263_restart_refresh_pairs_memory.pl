# The worker's refresh after a Redis restart (keys_sql.c
# rs_refresh_cached_keys) hands the keys of one SCAN pass to their tables
# and pushes them REFRESH_PENDING at a time.  Its memory must not grow with
# the number of cached keys: what each push builds from its keys (the
# (key, key values) pairs of keys_to_rows, the split key values) must be
# freed after the push, as the per-table pass freed each page's.
#
# Found by the wave 2o review (rev3): refresh_guarded ran each table's part
# in the caller's memory context, which during the SCAN is the worker's
# round context, kept until the pass ends: every cached key's pairs stayed
# in the worker (about 200 bytes a key: 100 MB per 500,000 cached keys).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RedisSync::Test;
use RedisSync::Compare;
use Test::More;

my $redis = RedisSync::Test::start_redis();
my $node  = RedisSync::Test::new_node('refresh_pairs_memory', redis => $redis,
	extra_conf => "shared_buffers = 16MB\n");

my $n = 400000;
# an invalidate table of small rows, every row cached
$node->safe_psql('postgres', qq{
CREATE TABLE small (id int PRIMARY KEY, v text);
INSERT INTO small SELECT g, 'x' FROM generate_series(1, $n) g;
SELECT redis_sync.invalidate('small', key_prefix => 'small:');
});
$redis->cli('EVAL', "for i = 1, $n do redis.call('HSET', 'small:' .. i, 'v', 'cached'); "
	  . "redis.call('SET', '{small:' .. i .. '}:rs_version', '00000000000000000000000000000001') end", '0');
ok($redis->cli('DBSIZE') >= 2 * $n, 'the rows are cached, with their versions');
is($redis->cli('SAVE'), 'OK', 'snapshot taken');
my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type LIKE 'redis_sync worker%' LIMIT 1});
ok($pid =~ /^\d+$/, "the worker's pid ($pid)");
my $before = RedisSync::Test::vmhwm_kb($pid);

$redis->stop;
$redis->start;
ok(defined RedisSync::Compare::wait_for(sub { $node->log_contains('refreshed \d+ cached keys of table \d+') }, 300),
	'the refresh ended');
is($redis->cli('HGET', 'small:2', 'v'), 'x', 'the refresh pushed the rows again');
my $after = RedisSync::Test::vmhwm_kb($pid);
my $grew_mb = int(($after - $before) / 1024);
diag("worker peak resident memory: $before kB before the refresh, $after kB after (+$grew_mb MB)");
cmp_ok($grew_mb, '<', 40, "the refresh of $n cached keys did not grow the worker with them");

done_testing();
